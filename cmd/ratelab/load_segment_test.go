package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"ratelab/load"
)

// runWithEnv runs ratelab args with the environment vars.
func runWithEnv(vars map[string]string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	env := &environ{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(k string) string { return vars[k] }}
	code := run(context.Background(), env, args)
	return code, out.String(), errOut.String()
}

func TestLoadSegmentFlagErrors(t *testing.T) {
	url := loadServer(t, func(int64) bool { return false })
	base := []string{"load", "--url", url + "/x", "--rate", "10/s", "--duration", "100ms", "--progress", "0"}
	flow := filepath.Join(t.TempDir(), "flow.yaml")
	if err := os.WriteFile(flow, []byte("threads: 1\nloops: 1\nsteps:\n  - request: {url: "+url+"/x}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		args []string
		vars map[string]string
		want string
	}{
		{[]string{"--segment", "4/3"}, nil, "--segment: segment 4/3: want K/N with 1 ≤ K ≤ N"},
		{[]string{"--segment", "half"}, nil, `--segment: segment "half": want K/N`},
		{[]string{"--segment", "1/3", "--segment-of", "3"}, nil, "not both"},
		{[]string{"--segment-of", "3"}, nil, `JOB_COMPLETION_INDEX is "", want 0 to 2`},
		{[]string{"--segment-of", "3"}, map[string]string{"JOB_COMPLETION_INDEX": "3"}, `JOB_COMPLETION_INDEX is "3", want 0 to 2`},
		{[]string{"--segment-of", "-1"}, nil, "want a number of segments"},
		{[]string{"--start-at", "soon"}, nil, "want an RFC 3339 time"},
		{[]string{"--start-at", past}, nil, "past: the test would start late"},
		{[]string{"--segment", "1/2", "--threads", "2", "--loops", "1", "--rate", "", "--throughput", "60/m",
			"--throughput-mode", "all-threads"}, nil, "cannot split a Constant Throughput Timer"},
	} {
		code, _, errOut := runWithEnv(tc.vars, append(slices.Clone(base), tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
	code, _, errOut := runWithEnv(nil, "load", flow, "--segment", "1/2", "--progress", "0")
	if code == 0 || !strings.Contains(errOut, "a flow (a YAML flow, or a JMeter plan without --fix) cannot be run in segments") {
		t.Errorf("flow in segments: exit %d, stderr %q", code, errOut)
	}
	soon := time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	code, _, errOut = runWithEnv(nil, "load", flow, "--start-at", soon, "--progress", "0")
	if code == 0 || !strings.Contains(errOut, "cannot be run in segments") {
		t.Errorf("flow with --start-at: exit %d, stderr %q", code, errOut)
	}
}

// TestLoadResultsToStdout: --results - writes the stream to standard
// output, which ratelab report reads back, and the summary to standard
// error; the stream names the segment.
func TestLoadResultsToStdout(t *testing.T) {
	url := loadServer(t, func(int64) bool { return false })
	code, out, errOut := runWithEnv(map[string]string{"JOB_COMPLETION_INDEX": "1"}, "load", "--url", url+"/x",
		"--rate", "100/s", "--loops", "9", "--progress", "0", "--results", "-", "--segment-of", "3")
	if code != 0 || !strings.Contains(errOut, "Requests") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	dec, err := load.NewDecoder(strings.NewReader(out))
	if err != nil {
		t.Fatalf("standard output is no results stream: %v\n%s", err, out)
	}
	if info := dec.Info(); info.Segment != "2/3" || math.Abs(info.TargetRPS-100.0/3) > 1e-9 {
		t.Errorf("run info %+v: want segment 2/3, target 33.3/s", info)
	}
	var iters []int
	for {
		var r load.Result
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		iters = append(iters, r.Iteration)
	}
	slices.Sort(iters)
	if !slices.Equal(iters, []int{1, 4, 7}) {
		t.Errorf("segment 2/3 of 9 arrivals sent iterations %v, want 1, 4, 7", iters)
	}
}

// kubeJob is the part of a Kubernetes Job manifest the test reads.
type kubeJob struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Spec       struct {
		CompletionMode string `yaml:"completionMode"`
		Completions    int    `yaml:"completions"`
		Parallelism    int    `yaml:"parallelism"`
		Template       struct {
			Spec struct {
				RestartPolicy string `yaml:"restartPolicy"`
				Containers    []struct {
					Command []string `yaml:"command"`
					Args    []string `yaml:"args"`
					Env     []struct {
						Name  string `yaml:"name"`
						Value string `yaml:"value"`
					} `yaml:"env"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// TestKubernetesJobManifest reads deploy/kubernetes/load-job.yaml and
// checks it against the CLI: an Indexed Job whose pods all run `ratelab
// load` with flags that exist and parse (Kubernetes' $(VAR) expanded from
// the container's env), whose --segment-of equals its completions and
// parallelism, and whose pods 0 … N−1 get segments 1/N … N/N, which
// together take every arrival of the run exactly once.
func TestKubernetesJobManifest(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "load-job.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var job kubeJob
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&job); err != nil {
		t.Fatal(err)
	}
	if job.APIVersion != "batch/v1" || job.Kind != "Job" || job.Spec.CompletionMode != "Indexed" {
		t.Fatalf("want an Indexed batch/v1 Job: %s %s %s", job.APIVersion, job.Kind, job.Spec.CompletionMode)
	}
	n := job.Spec.Completions
	if n < 2 || job.Spec.Parallelism != n {
		t.Errorf("completions %d, parallelism %d: want one pod per segment, all at once", n, job.Spec.Parallelism)
	}
	if rp := job.Spec.Template.Spec.RestartPolicy; rp != "Never" {
		t.Errorf("restartPolicy %q: a restarted pod would run its segment twice", rp)
	}
	if len(job.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(job.Spec.Template.Spec.Containers))
	}
	c := job.Spec.Template.Spec.Containers[0]
	if len(c.Command) != 1 || c.Command[0] != "ratelab" || len(c.Args) == 0 || c.Args[0] != "load" {
		t.Fatalf("command %v args %v: want ratelab load …", c.Command, c.Args)
	}
	vars := map[string]string{}
	for _, e := range c.Env {
		vars[e.Name] = e.Value
		if e.Value == "" {
			vars[e.Name] = "from-a-secret"
		}
	}
	dollar := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	args := make([]string, len(c.Args)-1)
	for i, a := range c.Args[1:] {
		args[i] = dollar.ReplaceAllStringFunc(a, func(m string) string {
			name := m[2 : len(m)-1]
			v, ok := vars[name]
			if !ok {
				t.Errorf("argument %q names $(%s), which the container's env does not set", a, name)
			}
			return v
		})
	}
	startAt, err := time.Parse(time.RFC3339, vars["START_AT"])
	if err != nil {
		t.Fatalf("START_AT %q: %v", vars["START_AT"], err)
	}
	var sum int
	const arrivals = 1000
	for i := range n {
		vars["JOB_COMPLETION_INDEX"] = strconv.Itoa(i)
		var errOut bytes.Buffer
		env := &environ{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &errOut, getenv: func(k string) string { return vars[k] }}
		var f loadFlags
		fs := newFlagSet(env, "load", "load", "")
		f.define(fs, env)
		file, set, err := parseLoadArgs(fs, args)
		if err != nil || file != "" {
			t.Fatalf("the Job's arguments do not parse as ratelab load's flags: %v %q\n%s", err, file, errOut.String())
		}
		if f.clientID == "" || f.clientSecret == "" {
			t.Errorf("the client's id and secret are not in the env the flags read (RATELAB_CLIENT_ID, RATELAB_CLIENT_SECRET)")
		}
		s, _, err := f.scenario(env, "", set)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Workload.Validate(); err != nil {
			t.Fatal(err)
		}
		if f.resultsOut != "-" {
			t.Errorf("--results %q: the pods write their stream to standard output (kubectl logs)", f.resultsOut)
		}
		seg, at, err := f.runSegment(env, startAt.Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if seg != (load.Segment{K: i + 1, N: n}) || !at.Equal(startAt) {
			t.Errorf("pod %d: segment %v at %v, want %d/%d at %v", i, seg, at, i+1, n, startAt)
		}
		sum += seg.Count(arrivals)
	}
	if sum != arrivals {
		t.Errorf("the %d pods' segments take %d of %d arrivals", n, sum, arrivals)
	}
}
