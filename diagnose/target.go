package diagnose

import "ratelab/load"

// Target is the rate a workload aims at and how reports name it.
type Target struct {
	// RPS is the target in requests per second; 0 when the workload has
	// none (an unpaced closed model).
	RPS float64
	// Model is "open", "closed" or "closed, throughput MODE" (a closed
	// model paced by JMeter's Constant Throughput Timer).
	Model string
	// Schedule is the rate as the user gave it ("10/s"), "stages" for a
	// ramping schedule, or "" when there is none.
	Schedule string
}

// TargetOf returns the target of w when every iteration sends
// requestsPerIteration requests. An open schedule's rate counts
// iterations, so it is multiplied; a throughput timer paces samples, so
// it is not, except that in JMeter's default mode (ThisThread) every thread
// runs at the timer's rate and the threads' rates add.
func TargetOf(w *load.Workload, requestsPerIteration int) Target {
	switch {
	case len(w.Stages) > 0:
		var n float64
		for _, st := range w.Stages {
			n += (st.From + st.To) / 2 * st.Duration.Seconds()
		}
		return Target{RPS: n / w.Stages.Duration().Seconds() * float64(requestsPerIteration), Model: "open", Schedule: "stages"}
	case w.Rate.Count > 0:
		return Target{RPS: w.Rate.PerSecond() * float64(requestsPerIteration), Model: "open", Schedule: w.Rate.String()}
	case w.Throughput.Count > 0:
		rps := w.Throughput.PerSecond()
		if w.ThroughputMode == load.ThisThread {
			rps *= float64(max(w.Threads, 1))
		}
		return Target{RPS: rps, Model: "closed, throughput " + w.ThroughputMode.String(), Schedule: w.Throughput.String()}
	}
	return Target{Model: "closed"}
}
