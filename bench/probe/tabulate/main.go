// Command tabulate reads the verbose output of the probe package's tests
// (go test -v ./probe/, any -count) and prints one Markdown table row per
// real-peer case: what the probe found in each run, as ranges over the
// runs, with the requests, time and share of 429s, and how many runs
// passed. bench/probe/cases.sh runs the tests and pipes them here.
//
// It reads the tests' "RESULT peer NAME: LIMIT | LIMIT; N requests in T s,
// 429 R (S %)" lines, where each LIMIT is "SCOPE ALGORITHM quota Q window
// Ws rate R/s burst B counts_rejected X confidence C start "S" delays D",
// and the "--- PASS/FAIL" lines of the tests and subtests that print them.
package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	resultRE  = regexp.MustCompile(`RESULT peer (.*?): (.*); (\d+) requests in ([\d.]+) s, 429 (\d+) \(([\d.]+) %\)$`)
	limitRE   = regexp.MustCompile(`^(.*) (token-bucket|fixed-window|sliding-window|concurrency|unknown) quota (\d+) window ([\d.e+-]+)s rate ([\d.e+-]+)/s burst (\d+) counts_rejected (\w+) confidence ([\d.]+) start "(.*)" delays (\w+)$`)
	verdictRE = regexp.MustCompile(`^\s*--- (PASS|FAIL): (\S+)`)
	switchRE  = regexp.MustCompile(`^=== (?:RUN|CONT|NAME|PAUSE)\s+(\S+)`)
	logRE     = regexp.MustCompile(`^\s+\S+_test\.go:\d+: RESULT peer`)
)

// span is the range of one number over the runs.
type span struct{ lo, hi float64 }

func (s *span) add(v float64) {
	if s.lo == 0 && s.hi == 0 {
		s.lo, s.hi = v, v
		return
	}
	s.lo, s.hi = math.Min(s.lo, v), math.Max(s.hi, v)
}

func (s span) String() string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }
	if f(s.lo) == f(s.hi) {
		return f(s.lo)
	}
	return f(s.lo) + "–" + f(s.hi)
}

// limitAgg gathers one limit (by its position in the report) over runs.
type limitAgg struct {
	kinds                     map[string]int // scope, family, start, counts_rejected
	quota, window, rate, conf span
}

type caseAgg struct {
	name                  string
	runs, passed          int
	limits                []*limitAgg
	counts                map[int]int // number of limits found → runs
	requests, secs, share span
}

func main() {
	cases, err := read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tabulate:", err)
		os.Exit(1)
	}
	fmt.Println("| case | passed | found (runs) | requests | time | 429 share |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, c := range cases {
		var found []string
		for i, l := range c.limits {
			var kinds []string
			for k, n := range l.kinds {
				kinds = append(kinds, fmt.Sprintf("%s [%d]", k, n))
			}
			sort.Strings(kinds)
			found = append(found, fmt.Sprintf("%d: %s; quota %s, window %s s, rate %s/s, confidence %s",
				i+1, strings.Join(kinds, " or "), l.quota, l.window, l.rate, l.conf))
		}
		if len(c.counts) > 1 {
			found = append(found, fmt.Sprintf("limits found per run: %v", c.counts))
		}
		fmt.Printf("| %s | %d of %d | %s | %s | %s s | %s %% |\n",
			c.name, c.passed, c.runs, strings.Join(found, "<br>"), c.requests, c.secs, c.share)
	}
}

// read parses the test output. A RESULT line belongs to the test whose
// name go test -v printed last ("=== RUN", "=== CONT", "=== NAME"), and
// that test's verdict ("--- PASS: NAME") says whether its run passed.
func read(r io.Reader) ([]*caseAgg, error) {
	byName := map[string]*caseAgg{}
	var order []*caseAgg
	pending := map[string][]*caseAgg{} // test name → its results not yet settled
	current := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := switchRE.FindStringSubmatch(line); m != nil {
			current = m[1]
			continue
		}
		if logRE.MatchString(line) {
			m := resultRE.FindStringSubmatch(line)
			if m == nil {
				return nil, fmt.Errorf("unreadable RESULT line: %q", line)
			}
			c := byName[m[1]]
			if c == nil {
				c = &caseAgg{name: m[1], counts: map[int]int{}}
				byName[m[1]] = c
				order = append(order, c)
			}
			c.runs++
			limits := strings.Split(m[2], " | ")
			c.counts[len(limits)]++
			for i, text := range limits {
				lm := limitRE.FindStringSubmatch(text)
				if lm == nil {
					return nil, fmt.Errorf("unreadable limit %q in %q", text, line)
				}
				for len(c.limits) <= i {
					c.limits = append(c.limits, &limitAgg{kinds: map[string]int{}})
				}
				l := c.limits[i]
				kind := lm[1] + " " + lm[2]
				if lm[9] != "" {
					kind += ", start " + lm[9]
				}
				if lm[7] != "null" {
					kind += ", counts 429s " + lm[7]
				}
				if lm[10] == "true" {
					kind += ", delays"
				}
				l.kinds[kind]++
				l.quota.add(num(lm[3]))
				l.window.add(num(lm[4]))
				l.rate.add(num(lm[5]))
				l.conf.add(num(lm[8]))
			}
			c.requests.add(num(m[3]))
			c.secs.add(num(m[4]))
			c.share.add(num(m[6]))
			pending[current] = append(pending[current], c)
			continue
		}
		if m := verdictRE.FindStringSubmatch(line); m != nil {
			for _, c := range pending[m[2]] {
				if m[1] == "PASS" {
					c.passed++
				}
			}
			delete(pending, m[2])
		}
	}
	return order, sc.Err()
}

func num(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}
