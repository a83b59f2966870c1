package report

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"ratelab/internal/testenv"
	"ratelab/load"
)

// demoSummary is a deterministic 60-second run at 20 requests/s: a
// per-script limit with a quota of 100 runs out after 5 s, answers 429
// (Retry-After 1–3 s) until second 40, then the client backs off; latency
// climbs while it is limited; second 50 has network errors and 5xx.
func demoSummary() *Summary {
	a := NewAggregator(Config{Start: t0, TargetRPS: 20, Model: "open", Title: "PUT /api/v2/architect/scripts/{scriptId}"})
	seq := uint64(0)
	for sec := 0; sec < 60; sec++ {
		for k := 0; k < 20; k++ {
			at := t0.Add(time.Duration(sec)*time.Second + time.Duration(k)*50*time.Millisecond)
			r := &load.Result{Seq: seq, Thread: k%20 + 1, Intended: at, Start: at, Status: 200, Remaining: -1, Label: "PUT script"}
			r.Elapsed = time.Duration(8+(k*7+sec*3)%12) * time.Millisecond
			switch {
			case sec < 5:
				r.Remaining = int64(100 - int(seq) - 1)
			case sec < 40 && k%4 != 0:
				r.Status, r.Policy, r.Remaining = 429, "script-writes-per-script", 0
				r.RetryAfter = time.Duration(1+sec%3) * time.Second
				r.Elapsed = 2 * time.Millisecond
			case sec < 40:
				r.Remaining = 0
				r.Elapsed += time.Duration(sec) * time.Millisecond
			default:
				r.Remaining = int64(k % 5)
			}
			if sec == 50 && k < 3 {
				r.Status, r.Error, r.Remaining = 0, "context deadline exceeded", -1
			}
			if sec == 51 && k < 4 {
				r.Status = 503
			}
			if sec == 20 && k == 0 {
				// One request waited 300 ms for a free worker.
				r.Start = at.Add(300 * time.Millisecond)
			}
			a.Add(r)
			seq++
		}
	}
	a.SetDropped(1)
	return a.Summary()
}

func TestHTMLSelfContained(t *testing.T) {
	var b bytes.Buffer
	if err := WriteHTML(&b, demoSummary()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, banned := range []string{"<script", "<link", "src=", "url(", "@import", "https://"} {
		if strings.Contains(page, banned) {
			t.Errorf("page contains %q: it must load nothing", banned)
		}
	}
	// The only http:// is the SVG namespace, which is a name, not a fetch.
	if n, m := strings.Count(page, "http://"), strings.Count(page, `xmlns="http://www.w3.org/2000/svg"`); n != m {
		t.Errorf("page has %d http:// references besides the SVG namespace", n-m)
	}
	for _, want := range []string{`<svg id="throughput"`, `<svg id="ratelimited"`, `<svg id="latency"`, `<svg id="remaining"`,
		`<code>script-writes-per-script</code>`, "Retry-After", "1–3 s"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

func TestHTMLEscapes(t *testing.T) {
	s := fixtureSummary(t)
	s.Title = `<img src=x onerror=alert(1)>`
	s.RateLimit.ByPolicy = map[string]int64{`<b>"p"</b>`: 1}
	var b bytes.Buffer
	if err := WriteHTML(&b, s); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "<img") || strings.Contains(b.String(), "<b>") {
		t.Error("title or policy name not escaped")
	}
}

func TestHTMLEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := WriteHTML(&b, NewAggregator(Config{}).Summary()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "no requests") {
		t.Error("empty report does not say there were no requests")
	}
}

// chromium returns the path of a headless Chromium, skipping the test
// when there is none (failing under CI).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if testenv.Required() {
		t.Fatal("chromium is required (CI=true or RATELAB_REQUIRE_SERVICES=1) but not installed: apt-get install chromium")
	}
	t.Skip("chromium not installed (apt-get install chromium)")
	return ""
}

// runChromium runs headless Chromium on the page with extra arguments,
// without any network access, and returns its standard output.
func runChromium(t *testing.T, bin, page string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--proxy-server=127.0.0.1:9", "--user-data-dir=" + t.TempDir()}
	args = append(append(args, extra...), "file://"+page)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return stdout.Bytes()
}

// TestHTMLInChromium opens the report in headless Chromium and checks
// that every chart is in the rendered DOM with its data paths, and that a
// screenshot shows the charts' colours.
func TestHTMLInChromium(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var b bytes.Buffer
	if err := WriteHTML(&b, demoSummary()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	dom := string(runChromium(t, bin, page, "--dump-dom"))
	charts := regexp.MustCompile(`(?s)<svg id="([a-z]+)".*?</svg>`).FindAllStringSubmatch(dom, -1)
	got := map[string]string{}
	for _, c := range charts {
		got[c[1]] = c[0]
	}
	seriesPath := regexp.MustCompile(`<path class="series[^"]*" data-series="([^"]+)"[^>]* d="([^"]+)"`)
	want := map[string][]string{
		"throughput":  {"2xx", "429", "5xx", "errors"},
		"ratelimited": {"429 responses", "Retry-After (s)"},
		"latency":     {"p50", "p90", "p99"},
		"remaining":   {"remaining"},
	}
	for id, names := range want {
		svg, ok := got[id]
		if !ok {
			t.Errorf("chart %q not in the rendered DOM", id)
			continue
		}
		found := map[string]int{}
		for _, m := range seriesPath.FindAllStringSubmatch(svg, -1) {
			// Count the path's drawing commands: one or more per second.
			found[m[1]] = len(regexp.MustCompile(`[MLVHZh]`).FindAllString(m[2], -1))
		}
		for _, n := range names {
			if found[n] < 10 {
				t.Errorf("chart %q: series %q has %d path commands, want a drawn series", id, n, found[n])
			}
		}
	}

	shot := filepath.Join(dir, "shot.png")
	runChromium(t, bin, page, "--screenshot="+shot, "--window-size=1100,2600", "--hide-scrollbars")
	if out := os.Getenv("RATELAB_REPORT_SCREENSHOT"); out != "" {
		if raw, err := os.ReadFile(shot); err == nil {
			_ = os.WriteFile(out, raw, 0o644)
		}
	}
	fh, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer fh.Close()
	img, err := png.Decode(fh)
	if err != nil {
		t.Fatal(err)
	}
	for name, hex := range map[string]string{"2xx": color2xx, "429": color429} {
		if n := countColor(img, hex); n < 500 {
			t.Errorf("screenshot has %d pixels of the %s colour %s: chart not painted", n, name, hex)
		}
	}
}

// countColor counts the pixels within a small distance of colour hex.
func countColor(img image.Image, hex string) int {
	var want [3]int
	for i := range want {
		v := 0
		for _, c := range hex[1+2*i : 3+2*i] {
			v = v*16 + strings.IndexRune("0123456789abcdef", c)
		}
		want[i] = v
	}
	n := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			got := [3]int{int(r >> 8), int(g >> 8), int(b >> 8)}
			d := 0
			for i := range got {
				d += (got[i] - want[i]) * (got[i] - want[i])
			}
			if d < 3*24*24 {
				n++
			}
		}
	}
	return n
}
