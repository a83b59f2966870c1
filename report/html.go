package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"sync"
	"time"
)

// Colours of the status classes, shared by charts and legends.
const (
	color2xx    = "#2f9e5b"
	color3xx    = "#4c8bd6"
	color429    = "#f08c00"
	color4xx    = "#9c6ade"
	color5xx    = "#d64545"
	colorErrors = "#6b7280"
	colorP50    = "#2f7fd6"
	colorP90    = "#9c6ade"
	colorP99    = "#d64545"
	colorRetry  = "#1f2937"
	colorRemain = "#2f9e5b"
)

// legendItem is one entry of a chart's legend.
type legendItem struct {
	Name, Color string
	Dashed      bool
}

// htmlChart is one chart of the page.
type htmlChart struct {
	Title  string
	Note   string
	SVG    template.HTML
	Legend []legendItem
}

// htmlPage is the data of the page template.
type htmlPage struct {
	S        *Summary
	Title    string
	Start    string
	Statuses []statusRow
	Policies []policyRow
	Charts   []htmlChart
}

type statusRow struct {
	Code  string
	Count int64
	Share string
}

type policyRow struct {
	Name  string
	Count int64
	Share string
}

// WriteHTML writes a self-contained HTML report of s: the summary, the
// rate-limit findings and four charts over time (throughput by status
// class; 429s and Retry-After; latency percentiles; remaining quota) as
// inline SVG. The page loads nothing from anywhere: no scripts, no fonts,
// no images.
func WriteHTML(w io.Writer, s *Summary) error {
	p := htmlPage{S: s, Title: s.Title}
	if p.Title == "" {
		p.Title = "ratelab load test report"
	}
	if !s.Start.IsZero() {
		p.Start = s.Start.UTC().Format(time.RFC3339Nano)
	}
	for _, k := range statusKeys(s.StatusCounts) {
		p.Statuses = append(p.Statuses, statusRow{Code: k, Count: s.StatusCounts[k], Share: share(s.StatusCounts[k], s.Requests)})
	}
	for _, k := range policyKeys(s.RateLimit.ByPolicy) {
		p.Policies = append(p.Policies, policyRow{Name: k, Count: s.RateLimit.ByPolicy[k], Share: share(s.RateLimit.ByPolicy[k], s.RateLimit.Count429)})
	}
	p.Charts = charts(s.Timeline)
	if err := pageTemplate().Execute(w, p); err != nil {
		return fmt.Errorf("write html report: %w", err)
	}
	return nil
}

func share(n, of int64) string {
	if of == 0 {
		return "–"
	}
	return fpct(float64(n)/float64(of)) + "%"
}

// charts draws the four timeline charts.
func charts(tl []Second) []htmlChart {
	n := len(tl)
	col := func(f func(Second) float64) []float64 {
		ys := make([]float64, n)
		for i, r := range tl {
			ys[i] = f(r)
		}
		return ys
	}
	nan := math.NaN()
	var out []htmlChart

	// Throughput by status class.
	classes := []series{
		{"2xx", color2xx, col(func(r Second) float64 { return float64(r.C2xx) })},
		{"3xx", color3xx, col(func(r Second) float64 { return float64(r.C3xx) })},
		{"429", color429, col(func(r Second) float64 { return float64(r.C429) })},
		{"other 4xx", color4xx, col(func(r Second) float64 { return float64(r.C4xx - r.C429) })},
		{"5xx", color5xx, col(func(r Second) float64 { return float64(r.C5xx) })},
		{"errors", colorErrors, col(func(r Second) float64 { return float64(r.Errors) })},
	}
	c := newChart("throughput", "Throughput by status class", n)
	ax := newAxis(maxOf(series{ys: col(func(r Second) float64 { return float64(r.Requests) })}), "requests/s")
	c.axes(ax, nil)
	c.stacked(ax, classes)
	if n == 0 {
		c.empty("no requests")
	}
	out = append(out, htmlChart{Title: "Throughput by status class", Note: "requests sent in each second, stacked by outcome", SVG: template.HTML(c.String()), Legend: legend(classes)})

	// 429s and Retry-After.
	c429 := series{"429 responses", color429, col(func(r Second) float64 { return float64(r.C429) })}
	retry := series{"Retry-After (s)", colorRetry, col(func(r Second) float64 {
		if r.RetryAfterS == nil {
			return nan
		}
		return *r.RetryAfterS
	})}
	c = newChart("ratelimited", "429 responses and Retry-After", n)
	ax = newAxis(maxOf(c429), "429/s")
	rax := newAxis(maxOf(retry), "Retry-After s")
	c.axes(ax, &rax)
	c.bars(ax, c429)
	c.line(rax, retry, true)
	if maxOf(c429) == 0 {
		c.empty("no 429 responses")
	}
	out = append(out, htmlChart{Title: "429 responses and Retry-After", Note: "429s per second (bars, left axis) and the largest Retry-After seen in the second (dashed, right axis)", SVG: template.HTML(c.String()),
		Legend: []legendItem{{Name: c429.name, Color: c429.color}, {Name: retry.name, Color: retry.color, Dashed: true}}})

	// Latency percentiles.
	pct := func(f func(SecondLatency) float64) func(Second) float64 {
		return func(r Second) float64 {
			if r.Requests == 0 {
				return nan
			}
			return f(r.Latency)
		}
	}
	lat := []series{
		{"p50", colorP50, col(pct(func(l SecondLatency) float64 { return l.P50 }))},
		{"p90", colorP90, col(pct(func(l SecondLatency) float64 { return l.P90 }))},
		{"p99", colorP99, col(pct(func(l SecondLatency) float64 { return l.P99 }))},
	}
	c = newChart("latency", "Latency percentiles", n)
	ax = newAxis(maxOf(lat...), "ms")
	c.axes(ax, nil)
	for _, s := range lat {
		c.line(ax, s, false)
	}
	if n == 0 {
		c.empty("no requests")
	}
	out = append(out, htmlChart{Title: "Latency percentiles", Note: "milliseconds from the intended send time, of the requests sent in each second", SVG: template.HTML(c.String()), Legend: legend(lat)})

	// Remaining quota.
	rem := series{"remaining", colorRemain, col(func(r Second) float64 {
		if r.Remaining == nil {
			return nan
		}
		return float64(*r.Remaining)
	})}
	c = newChart("remaining", "Remaining quota", n)
	ax = newAxis(maxOf(rem), "remaining")
	c.axes(ax, nil)
	c.line(ax, rem, false)
	if !hasData(rem) {
		c.empty("no response advertised its remaining quota")
	}
	out = append(out, htmlChart{Title: "Remaining quota", Note: "the last remaining quota advertised in each second (RateLimit, X-RateLimit-Remaining…)", SVG: template.HTML(c.String()), Legend: legend([]series{rem})})
	return out
}

func hasData(s series) bool {
	for _, v := range s.ys {
		if !math.IsNaN(v) {
			return true
		}
	}
	return false
}

// legend lists the series that have data (all of them when none has),
// so the legend names only what the chart shows.
func legend(ss []series) []legendItem {
	out := make([]legendItem, 0, len(ss))
	for _, s := range ss {
		if maxOf(s) > 0 {
			out = append(out, legendItem{Name: s.name, Color: s.color})
		}
	}
	if len(out) == 0 {
		for _, s := range ss {
			out = append(out, legendItem{Name: s.name, Color: s.color})
		}
	}
	return out
}

// pageTemplate is parsed on first use, not at start-up: every command of
// the one ratelab binary would pay for it otherwise (about 1,000
// allocations and the template parser's pages in its RSS).
var pageTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("page").Funcs(template.FuncMap{
		"ms":   fms,
		"sec":  fsec,
		"rate": frate,
		"pct":  fpct,
		"num":  fnum,
		"css":  func(s string) template.CSS { return template.CSS(s) },
		// ordinal turns a 0-based request index into the 1-based number people count.
		"ordinal": func(i *uint64) uint64 { return *i + 1 },
	}).Parse(pageHTML))
})

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; --card:#fff; --accent:#f08c00; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg); font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1040px; margin:0 auto; padding:24px 20px 48px; }
h1 { font-size:24px; margin:0 0 4px; }
h2 { font-size:18px; margin:32px 0 10px; }
.sub { color:var(--muted); margin:0 0 20px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(150px,1fr)); gap:12px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.card .k { color:var(--muted); font-size:13px; }
.card .v { font-size:22px; font-weight:600; font-variant-numeric:tabular-nums; }
.card.warn .v { color:var(--accent); }
table { border-collapse:collapse; background:var(--card); border:1px solid var(--line); border-radius:8px; width:100%; }
th, td { text-align:left; padding:7px 12px; border-bottom:1px solid var(--line); font-variant-numeric:tabular-nums; }
th { color:var(--muted); font-weight:500; width:34%; }
td.n, th.n { text-align:right; }
tr:last-child td, tr:last-child th { border-bottom:none; }
.two + .sub { margin-top:12px; }
.two { display:grid; grid-template-columns:1fr 1fr; gap:16px; }
@media (max-width:760px) { .two { grid-template-columns:1fr; } }
figure { margin:0 0 18px; background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 14px 8px; }
figcaption { font-weight:600; }
figcaption span { font-weight:400; color:var(--muted); font-size:13px; margin-left:8px; }
svg.chart { width:100%; height:auto; display:block; margin-top:6px; }
svg.chart .grid line { stroke:var(--line); stroke-width:1; }
svg.chart .axis text { fill:var(--muted); font-size:12px; font-family:inherit; }
svg.chart .axis .base { stroke:#9ca3af; stroke-width:1; }
svg.chart .area { stroke:none; opacity:.9; }
svg.chart .line { stroke-width:2; stroke-linecap:round; stroke-linejoin:round; }
svg.chart .empty { fill:var(--muted); font-size:14px; }
ul.legend { list-style:none; margin:4px 0 0; padding:0; display:flex; flex-wrap:wrap; gap:14px; font-size:13px; color:var(--muted); }
ul.legend i { display:inline-block; width:14px; height:10px; border-radius:2px; margin-right:6px; vertical-align:baseline; }
ul.legend i.dash { height:0; border-top:2px dashed; border-radius:0; vertical-align:middle; }
code { background:#eef2f7; padding:1px 5px; border-radius:4px; }
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p class="sub">{{with .Start}}started {{.}} · {{end}}{{with .S.Model}}{{.}} model · {{end}}{{sec .S.DurationS}} s</p>

<div class="cards">
<div class="card"><div class="k">Requests</div><div class="v">{{.S.Requests}}</div></div>
<div class="card"><div class="k">Achieved rate</div><div class="v">{{rate .S.AchievedRPS}}/s</div>{{with .S.TargetRPS}}<div class="k">target {{rate .}}/s</div>{{end}}</div>
<div class="card{{if .S.RateLimit.Count429}} warn{{end}}"><div class="k">429 Too Many Requests</div><div class="v">{{pct .S.RateLimit.Share429}}%</div><div class="k">{{.S.RateLimit.Count429}} responses</div></div>
<div class="card"><div class="k">p99 latency</div><div class="v">{{ms .S.Latency.P99}} ms</div><div class="k">p50 {{ms .S.Latency.P50}} ms</div></div>
<div class="card{{if .S.Errors}} warn{{end}}"><div class="k">Network errors</div><div class="v">{{.S.Errors}}</div>{{if .S.Dropped}}<div class="k">{{.S.Dropped}} dropped</div>{{end}}</div>
</div>

<h2>Rate limits</h2>
{{with .S.RateLimit}}<table id="ratelimits">
<tr><th>429 responses</th><td>{{if .Count429}}{{.Count429}} ({{pct .Share429}}% of requests){{else}}none{{end}}</td></tr>
{{if .First429Request}}<tr><th>First 429</th><td>request #{{ordinal .First429Request}}, {{sec .First429S}} s into the run</td></tr>{{end}}
{{if $.Policies}}<tr><th>By policy</th><td>{{range $i, $p := $.Policies}}{{if $i}}, {{end}}<code>{{$p.Name}}</code> {{$p.Count}} ({{$p.Share}}){{end}}</td></tr>{{else if .Count429}}<tr><th>By policy</th><td>no 429 named its policy</td></tr>{{end}}
{{with .RetryAfterS}}<tr><th>Retry-After</th><td>{{num .Min}}–{{num .Max}} s</td></tr>{{end}}
{{with .RecoveryS}}<tr><th>Recovery after a 429</th><td>{{.Count}}× to the next success: {{sec .Min}}–{{sec .Max}} s (mean {{sec .Mean}} s)</td></tr>{{end}}
{{if .Unrecovered}}<tr><th>At the end</th><td>still limited: no success after the last 429</td></tr>{{end}}
<tr><th>Last remaining quota</th><td>{{with .LastRemaining}}{{.}}{{else}}no response advertised it{{end}}</td></tr>
</table>{{end}}

<h2>Over time</h2>
{{range .Charts}}<figure>
<figcaption>{{.Title}}<span>{{.Note}}</span></figcaption>
{{.SVG}}
<ul class="legend">{{range .Legend}}<li><i{{if .Dashed}} class="dash" style="border-color:{{css .Color}}"{{else}} style="background:{{css .Color}}"{{end}}></i>{{.Name}}</li>{{end}}</ul>
</figure>
{{end}}

<h2>Summary</h2>
<div class="two">
<table id="statuses">
<tr><th>Status</th><th class="n">Requests</th><th class="n">Share</th></tr>
{{range .Statuses}}<tr><td>{{.Code}}</td><td class="n">{{.Count}}</td><td class="n">{{.Share}}</td></tr>
{{else}}<tr><td colspan="3">no requests</td></tr>{{end}}
</table>
<table id="latency">
<tr><th>ms</th><th class="n">latency</th><th class="n">service time</th></tr>
<tr><td>p50</td><td class="n">{{ms .S.Latency.P50}}</td><td class="n">{{ms .S.ServiceTime.P50}}</td></tr>
<tr><td>p90</td><td class="n">{{ms .S.Latency.P90}}</td><td class="n">{{ms .S.ServiceTime.P90}}</td></tr>
<tr><td>p99</td><td class="n">{{ms .S.Latency.P99}}</td><td class="n">{{ms .S.ServiceTime.P99}}</td></tr>
<tr><td>max</td><td class="n">{{ms .S.Latency.Max}}</td><td class="n">{{ms .S.ServiceTime.Max}}</td></tr>
</table>
</div>
<p class="sub">Latency counts from the intended send time, so time spent waiting for a free worker is included (no coordinated omission); service time counts from the actual send.</p>
</main>
</body>
</html>
`
