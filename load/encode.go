package load

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// RunInfo is the first line of a results file: the run's metadata.
type RunInfo struct {
	// Format identifies the file; always "ratelab-results/1".
	Format string    `json:"format"`
	Start  time.Time `json:"start"`
	// Model is "closed" or "open".
	Model string `json:"model"`
	// TargetRPS is the open model's (or the throughput timer's) target in
	// requests per second; 0 when the run was not paced.
	TargetRPS float64 `json:"target_rps,omitempty"`
	Threads   int     `json:"threads,omitempty"`
	// Schedule describes the rate or stages as the user gave them.
	Schedule string `json:"schedule,omitempty"`
	Name     string `json:"name,omitempty"`
	// Segment is the run's segment "K/N" (see Segment), empty for a
	// whole run; TargetRPS is then the segment's share of the target.
	Segment string `json:"segment,omitempty"`
}

// ResultsFormat is RunInfo.Format of the files this package writes.
const ResultsFormat = "ratelab-results/1"

// Encoder writes a results file: a RunInfo line, then one JSON Result per
// line. It buffers; call Flush at the end. The zero Encoder is not usable;
// NewEncoder makes one. It is safe for concurrent use, so it can be a run's
// Sink directly.
type Encoder struct {
	mu      sync.Mutex
	bw      *bufio.Writer
	enc     *json.Encoder
	started bool
	err     error
}

// NewEncoder returns an encoder writing to w. Call WriteInfo first; a
// result encoded before it gets an empty RunInfo line.
func NewEncoder(w io.Writer) *Encoder {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &Encoder{bw: bw, enc: json.NewEncoder(bw)}
}

// WriteInfo writes the run's metadata line. It must come before any result.
func (e *Encoder) WriteInfo(info RunInfo) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return errors.New("write results header: results already written")
	}
	return e.writeInfo(info)
}

func (e *Encoder) writeInfo(info RunInfo) error {
	e.started = true
	info.Format = ResultsFormat
	if err := e.enc.Encode(info); err != nil && e.err == nil {
		e.err = fmt.Errorf("write results header: %w", err)
	}
	return e.err
}

// Encode writes one result. After the first write error it keeps
// returning that error.
func (e *Encoder) Encode(r *Result) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.started {
		e.writeInfo(RunInfo{})
	}
	if e.err == nil {
		if err := e.enc.Encode(r); err != nil {
			e.err = fmt.Errorf("write result: %w", err)
		}
	}
	return e.err
}

// Flush writes buffered results and returns the first error seen.
func (e *Encoder) Flush() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		if err := e.bw.Flush(); err != nil {
			e.err = fmt.Errorf("flush results: %w", err)
		}
	}
	return e.err
}

// Decoder reads a results file written by Encoder. The zero Decoder is not
// usable; NewDecoder makes one. It is not safe for concurrent use.
type Decoder struct {
	dec  *json.Decoder
	info RunInfo
	line int
}

// NewDecoder reads the RunInfo line of r and returns a decoder for the
// results that follow.
func NewDecoder(r io.Reader) (*Decoder, error) {
	d := &Decoder{dec: json.NewDecoder(bufio.NewReaderSize(r, 64<<10)), line: 1}
	if err := d.dec.Decode(&d.info); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("results: empty file")
		}
		return nil, fmt.Errorf("results: read header: %w", err)
	}
	if d.info.Format != ResultsFormat {
		return nil, fmt.Errorf("results: not a ratelab results file (format %q, want %q)", d.info.Format, ResultsFormat)
	}
	return d, nil
}

// Info returns the run's metadata from the first line.
func (d *Decoder) Info() RunInfo { return d.info }

// Decode reads the next result into r. It returns io.EOF at the end.
func (d *Decoder) Decode(r *Result) error {
	*r = Result{}
	d.line++
	if err := d.dec.Decode(r); err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("results: record %d: %w", d.line, err)
	}
	return nil
}
