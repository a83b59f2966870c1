package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"ratelab/report"
)

// startProgress prints a progress line every interval until the returned
// function is called: a line rewritten in place (\r) on a terminal, plain
// lines otherwise.
func startProgress(w io.Writer, interval time.Duration, snap func() (report.Snapshot, bool)) (stop func()) {
	if interval <= 0 {
		return func() {}
	}
	tty := isTerminal(w)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprint(w, "\r\x1b[K")
				}
				return
			case <-t.C:
				s, ok := snap()
				if !ok {
					continue
				}
				if tty {
					fmt.Fprintf(w, "\r%s\x1b[K", report.ProgressLine(s))
				} else {
					fmt.Fprintln(w, report.ProgressLine(s))
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	file, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
