package load

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// DataMode says how threads share the rows of a DataSet, as JMeter's CSV
// Data Set Config does with its sharing mode.
type DataMode int

const (
	// DataShared gives every thread the next row of one cursor that all
	// threads share (JMeter's "All threads"): each row goes to one thread
	// until the file recycles.
	DataShared DataMode = iota
	// DataPerThread gives every thread its own cursor from the first row
	// (JMeter's "Current thread").
	DataPerThread
)

// ParseDataMode reads "shared" or "per-thread".
func ParseDataMode(s string) (DataMode, error) {
	switch s {
	case "", "shared":
		return DataShared, nil
	case "per-thread":
		return DataPerThread, nil
	}
	return 0, fmt.Errorf("data mode %q: want shared or per-thread", s)
}

// String returns the mode as ParseDataMode reads it.
func (m DataMode) String() string {
	if m == DataPerThread {
		return "per-thread"
	}
	return "shared"
}

// DataSet is a CSV file's rows, read once, with a cursor per the mode. A
// thread takes one row per iteration; at the end of the file the cursor
// recycles to the first row. The zero DataSet has no rows: Next returns
// nil. It is safe for concurrent use.
type DataSet struct {
	columns Columns
	names   []string
	rows    [][]string
	mode    DataMode

	mu       sync.Mutex
	shared   int
	byThread map[int]int
}

// ReadDataFile reads a CSV file whose first line names the columns.
func ReadDataFile(path string, mode DataMode) (*DataSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open data: %w", err)
	}
	defer f.Close()
	d, err := ReadData(f, mode)
	if err != nil {
		return nil, fmt.Errorf("data %s: %w", path, err)
	}
	return d, nil
}

// ReadData reads CSV whose first line names the columns. Every row needs
// the header's number of fields.
func ReadData(r io.Reader, mode DataMode) (*DataSet, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty CSV: the first line must name the columns")
		}
		return nil, fmt.Errorf("read header: %w", err)
	}
	d := &DataSet{columns: make(Columns, len(header)), mode: mode, byThread: map[int]int{}}
	for i, name := range header {
		name = strings.TrimSpace(strings.TrimPrefix(name, "\ufeff"))
		if name == "" {
			return nil, fmt.Errorf("column %d has no name", i+1)
		}
		if _, dup := d.columns[name]; dup {
			return nil, fmt.Errorf("column %q appears twice", name)
		}
		d.columns[name] = i
		d.names = append(d.names, name)
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read row: %w", err)
		}
		d.rows = append(d.rows, rec)
	}
	if len(d.rows) == 0 {
		return nil, errors.New("no data rows after the header")
	}
	return d, nil
}

// Columns returns the column index for template compilation.
func (d *DataSet) Columns() Columns {
	if d == nil {
		return nil
	}
	return d.columns
}

// Len returns the number of data rows.
func (d *DataSet) Len() int {
	if d == nil {
		return 0
	}
	return len(d.rows)
}

// Next returns the row for thread's next iteration, advancing the shared
// cursor or the thread's own one, recycling at the end of the file.
func (d *DataSet) Next(thread int) []string {
	if d == nil || len(d.rows) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var i int
	if d.mode == DataPerThread {
		i = d.byThread[thread]
		d.byThread[thread] = (i + 1) % len(d.rows)
	} else {
		i = d.shared
		d.shared = (i + 1) % len(d.rows)
	}
	return d.rows[i]
}
