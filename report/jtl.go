package report

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"ratelab/load"
)

// JTLHeader is the header line of JMeter's default CSV results format
// (jmeter.properties defaults, JMeter 5.6).
const JTLHeader = "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,failureMessage,bytes,sentBytes,grpThreads,allThreads,URL,Latency,IdleTime,Connect"

// JTLWriter writes results as JMeter's default CSV (a .jtl file), so that
// JMeter's dashboard generator (jmeter -g file.jtl -o dir) and other JTL
// tools can read ratelab's results. Create one with NewJTLWriter. It is
// safe for concurrent use: a run's workers can write to it directly (see
// Sink), each result on a line of its own. Output is buffered: call Flush
// at the end. After the first write error every call returns that error.
//
// Mapping: timeStamp is the send time (epoch ms); elapsed, Latency
// (time to first byte), IdleTime (the Retry-After wait before the request)
// and Connect are whole milliseconds; threadName is "Thread Group 1-N"
// (a flow's: its group's name and number, "Users 2-N");
// a network error gets JMeter's "Non HTTP response code/message" form;
// failureMessage is a flow's assertion failure, and a flow's transaction
// sample has an empty code and data type, as JMeter 2.13 writes them.
type JTLWriter struct {
	mu     sync.Mutex
	w      *bufio.Writer
	header bool
	line   []byte // reused for each line, under mu
	err    error  // the first write error
}

// NewJTLWriter returns a JTLWriter that writes to w, starting with the
// header line.
func NewJTLWriter(w io.Writer) *JTLWriter {
	return &JTLWriter{w: bufio.NewWriter(w)}
}

// Sink returns Write as a load.Sink; a write error is kept for Flush.
func (j *JTLWriter) Sink() load.Sink { return func(r *load.Result) { _ = j.Write(r) } }

// Write writes one result as a CSV line.
func (j *JTLWriter) Write(r *load.Result) error {
	if r.Parent != "" {
		// A sub-result (an embedded resource, a child of a parent
		// sample): JMeter's CSV results file writes its parent only,
		// whose time and outcome include it. The other sinks count it.
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	if err := j.writeHeader(); err != nil {
		return err
	}
	code, msg := strconv.Itoa(r.Status), http.StatusText(r.Status)
	dataType, failure := "text", r.Failure
	switch {
	case r.Transaction:
		// JMeter 2.13 writes a transaction's sample with an empty code and
		// data type, its counts as the message.
		code, msg, dataType, failure = "", r.Failure, "", ""
	case r.Status == 0:
		code, msg = "Non HTTP response code: "+errorClass(r.Error), "Non HTTP response message: "+r.Error
	}
	threads := strconv.Itoa(max(r.ActiveThreads, 0))

	b := j.line[:0]
	b = strconv.AppendInt(b, r.Start.UnixMilli(), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, r.Elapsed.Milliseconds(), 10)
	b = append(b, ',')
	b = appendCSV(b, r.Label)
	b = append(b, ',')
	b = appendCSV(b, code)
	b = append(b, ',')
	b = appendCSV(b, msg)
	b = append(b, ',')
	if r.Group != "" {
		// A flow's thread: "Group N-T" as JMeter names it.
		b = appendCSV(b, r.Group+" "+strconv.Itoa(max(r.GroupNum, 1))+"-"+strconv.Itoa(r.Thread))
	} else {
		b = append(b, "Thread Group 1-"...)
		b = strconv.AppendInt(b, int64(r.Thread), 10)
	}
	b = append(b, ',')
	b = append(b, dataType...)
	b = append(b, ',')
	b = strconv.AppendBool(b, r.Success())
	b = append(b, ',')
	b = appendCSV(b, failure) // an assertion's message; empty without one
	b = append(b, ',')
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, r.BytesOut, 10)
	b = append(b, ',')
	b = append(b, threads...)
	b = append(b, ',')
	b = append(b, threads...)
	b = append(b, ',')
	b = appendCSV(b, r.URL)
	b = append(b, ',')
	b = strconv.AppendInt(b, r.TTFB.Milliseconds(), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, r.Waited.Milliseconds(), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, r.Connect.Milliseconds(), 10)
	b = append(b, '\n')
	j.line = b
	if _, err := j.w.Write(b); err != nil {
		j.err = fmt.Errorf("write jtl: %w", err)
	}
	return j.err
}

// writeHeader writes the header line once, before the first result.
func (j *JTLWriter) writeHeader() error {
	if j.header {
		return nil
	}
	j.header = true
	if _, err := j.w.WriteString(JTLHeader + "\n"); err != nil {
		j.err = fmt.Errorf("write jtl: %w", err)
	}
	return j.err
}

// Flush writes any buffered data (and the header, if no result was
// written) to the underlying writer. It returns the first error of any
// Write or Flush.
func (j *JTLWriter) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	if err := j.writeHeader(); err != nil {
		return err
	}
	if err := j.w.Flush(); err != nil {
		j.err = fmt.Errorf("flush jtl: %w", err)
	}
	return j.err
}

// appendCSV appends a field quoted as JMeter's CSVSaveService quotes it:
// in double quotes, with quotes doubled, when it holds the delimiter, a
// quote, a carriage return or a line feed; as is otherwise.
func appendCSV(b []byte, s string) []byte {
	if !strings.ContainsAny(s, ",\"\r\n") {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, '"')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// errorClass names the kind of a network error for the JTL responseCode,
// as JMeter names the Java exception class.
func errorClass(msg string) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "timeout"), strings.Contains(m, "deadline exceeded"):
		return "timeout"
	case strings.Contains(m, "connection refused"):
		return "connection refused"
	case strings.Contains(m, "connection reset"):
		return "connection reset"
	case strings.Contains(m, "no such host"):
		return "unknown host"
	case strings.Contains(m, "canceled"):
		return "canceled"
	}
	return "error"
}
