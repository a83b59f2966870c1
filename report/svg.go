package report

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// The charts are hand-written SVG: a handful of paths per chart, drawn on
// a per-second x axis. This keeps the page small and self-contained (no
// fonts to embed, no scripts), and lets the charts share one visual style
// with the page around them.

// Chart geometry, in SVG user units.
const (
	chartW      = 960
	chartH      = 270
	padLeft     = 64
	padRight    = 64
	padTop      = 28
	padBottom   = 34
	plotW       = chartW - padLeft - padRight
	plotH       = chartH - padTop - padBottom
	legendSwash = 12
)

// series is one data series of a chart. A NaN value is a gap.
type series struct {
	name  string
	color string
	ys    []float64
}

// axis maps data values onto the plot's vertical extent.
type axis struct {
	max   float64
	ticks []float64
	unit  string
}

func newAxis(dataMax float64, unit string) axis {
	top, step := niceScale(dataMax)
	a := axis{max: top, unit: unit}
	for v := 0.0; v <= top+step/2; v += step {
		a.ticks = append(a.ticks, v)
	}
	return a
}

// niceScale returns an axis top ≥ max and a tick step of 1, 2 or 5 × 10^k
// that divides it into at most five intervals.
func niceScale(max float64) (top, step float64) {
	if !(max > 0) || math.IsInf(max, 0) {
		return 1, 0.25
	}
	raw := max / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		step = m * mag
		if step >= raw {
			break
		}
	}
	return math.Ceil(max/step-1e-9) * step, step
}

func (a axis) y(v float64) float64 {
	return padTop + plotH - v/a.max*plotH
}

// svgChart builds one chart on n seconds of timeline.
type svgChart struct {
	b     strings.Builder
	n     int
	label string
}

func newChart(id, label string, n int) *svgChart {
	c := &svgChart{n: max(n, 1), label: label}
	fmt.Fprintf(&c.b, `<svg id="%s" class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		id, chartW, chartH, html.EscapeString(label))
	fmt.Fprintf(&c.b, `<title>%s</title>`, html.EscapeString(label))
	return c
}

// x returns the horizontal position of the start of second i.
func (c *svgChart) x(i float64) float64 {
	return padLeft + i/float64(c.n)*plotW
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// axes draws the grid, the left axis, an optional right axis and the time
// axis.
func (c *svgChart) axes(left axis, right *axis) {
	b := &c.b
	b.WriteString(`<g class="grid">`)
	for _, t := range left.ticks {
		y := left.y(t)
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%s" y2="%s"/>`, padLeft, padLeft+plotW, f1(y), f1(y))
	}
	b.WriteString(`</g><g class="axis">`)
	for _, t := range left.ticks {
		fmt.Fprintf(b, `<text x="%d" y="%s" text-anchor="end">%s</text>`, padLeft-6, f1(left.y(t)+4), tickLabel(t))
	}
	fmt.Fprintf(b, `<text class="unit" x="%d" y="%d" text-anchor="start">%s</text>`, 4, padTop-14, html.EscapeString(left.unit))
	if right != nil {
		for _, t := range right.ticks {
			fmt.Fprintf(b, `<text x="%d" y="%s" text-anchor="start">%s</text>`, padLeft+plotW+6, f1(right.y(t)+4), tickLabel(t))
		}
		fmt.Fprintf(b, `<text class="unit" x="%d" y="%d" text-anchor="end">%s</text>`, chartW-4, padTop-14, html.EscapeString(right.unit))
	}
	step := timeStep(c.n)
	for s := 0; s <= c.n; s += step {
		fmt.Fprintf(b, `<text x="%s" y="%d" text-anchor="middle">%s</text>`, f1(c.x(float64(s))), chartH-padBottom+16, timeLabel(s))
	}
	fmt.Fprintf(b, `<line class="base" x1="%d" x2="%d" y1="%d" y2="%d"/>`, padLeft, padLeft+plotW, padTop+plotH, padTop+plotH)
	b.WriteString(`</g>`)
}

// timeStep picks a tick interval in seconds giving at most about ten ticks.
func timeStep(n int) int {
	for _, s := range []int{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400} {
		if n/s <= 10 {
			return s
		}
	}
	return 21600
}

func timeLabel(s int) string {
	if s < 60 {
		return strconv.Itoa(s) + "s"
	}
	if s < 3600 {
		return fmt.Sprintf("%d:%02d", s/60, s%60)
	}
	return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
}

func tickLabel(v float64) string {
	// Ticks are sums of float steps (0.1 × 3 = 0.30000000000000004):
	// round to a millionth before printing.
	if v >= 10000 {
		return strconv.FormatFloat(math.Round(v/1000*1e6)/1e6, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64)
}

// stacked draws the series as stacked step areas, one step per second.
func (c *svgChart) stacked(a axis, ss []series) {
	base := make([]float64, c.n)
	for _, s := range ss {
		top := make([]float64, c.n)
		any := false
		for i := range top {
			v := 0.0
			if i < len(s.ys) && !math.IsNaN(s.ys[i]) {
				v = s.ys[i]
			}
			top[i] = base[i] + v
			any = any || v > 0
		}
		if any {
			var d strings.Builder
			fmt.Fprintf(&d, "M%s %s", f1(c.x(0)), f1(a.y(top[0])))
			for i := range top {
				fmt.Fprintf(&d, "V%sH%s", f1(a.y(top[i])), f1(c.x(float64(i+1))))
			}
			for i := len(base) - 1; i >= 0; i-- {
				fmt.Fprintf(&d, "V%sH%s", f1(a.y(base[i])), f1(c.x(float64(i))))
			}
			d.WriteString("Z")
			fmt.Fprintf(&c.b, `<path class="series area" data-series="%s" fill="%s" d="%s"><title>%s</title></path>`,
				html.EscapeString(s.name), s.color, d.String(), html.EscapeString(s.name))
		}
		base = top
	}
}

// bars draws one series as bars, one per second.
func (c *svgChart) bars(a axis, s series) {
	var d strings.Builder
	w := c.x(1) - c.x(0)
	gap := math.Min(w*0.15, 2)
	for i, v := range s.ys {
		if math.IsNaN(v) || v <= 0 {
			continue
		}
		fmt.Fprintf(&d, "M%s %sV%sH%sV%sZ", f1(c.x(float64(i))+gap), f1(a.y(0)), f1(a.y(v)), f1(c.x(float64(i+1))-gap), f1(a.y(0)))
	}
	if d.Len() > 0 {
		fmt.Fprintf(&c.b, `<path class="series bars" data-series="%s" fill="%s" d="%s"><title>%s</title></path>`,
			html.EscapeString(s.name), s.color, d.String(), html.EscapeString(s.name))
	}
}

// line draws one series as a line through the middle of each second,
// broken at gaps (NaN). A point with no neighbour is drawn as a dot.
func (c *svgChart) line(a axis, s series, dashed bool) {
	var d strings.Builder
	open := false
	for i, v := range s.ys {
		if math.IsNaN(v) {
			open = false
			continue
		}
		x, y := f1(c.x(float64(i)+0.5)), f1(a.y(v))
		if !open {
			// "h0" makes a lone point visible thanks to the round line cap.
			fmt.Fprintf(&d, "M%s %sh0", x, y)
			open = true
			continue
		}
		fmt.Fprintf(&d, "L%s %s", x, y)
	}
	if d.Len() == 0 {
		return
	}
	dash := ""
	if dashed {
		dash = ` stroke-dasharray="6 4"`
	}
	fmt.Fprintf(&c.b, `<path class="series line" data-series="%s" fill="none" stroke="%s"%s d="%s"><title>%s</title></path>`,
		html.EscapeString(s.name), s.color, dash, d.String(), html.EscapeString(s.name))
}

// empty writes a note in the middle of a chart without data.
func (c *svgChart) empty(msg string) {
	fmt.Fprintf(&c.b, `<text class="empty" x="%d" y="%d" text-anchor="middle">%s</text>`, padLeft+plotW/2, padTop+plotH/2, html.EscapeString(msg))
}

func (c *svgChart) String() string { return c.b.String() + "</svg>" }

// maxOf returns the largest non-NaN value of the series, 0 when none.
func maxOf(ss ...series) float64 {
	m := 0.0
	for _, s := range ss {
		for _, v := range s.ys {
			if !math.IsNaN(v) && v > m {
				m = v
			}
		}
	}
	return m
}
