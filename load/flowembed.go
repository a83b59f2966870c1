package load

// Embedded resources: what JMeter's "Retrieve All Embedded Resources"
// (HTTPSampler.image_parser) fetches after an HTML response.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/html"
)

// Embedded makes a Request fetch the resources its HTML response embeds,
// as JMeter's "Retrieve All Embedded Resources" does: after a successful
// response whose Content-Type is HTML (or XHTML, XML), the URLs of img,
// script, embed, frame, iframe, bgsound and input type=image (src),
// link rel=stylesheet or icon (href), object (data), body, table, tr,
// td and th (background), resolved against the response URL and <base>,
// each once, in document order. Each is fetched with GET, the request's
// headers and the user's cookies, and delivered as a sub-result of the
// request (Result.Parent is the request's label, Label the resource's
// URL): each is a request sent, and counted so. The request's own
// sample lasts until the last resource is in, as JMeter's parent
// sample does, and fails when one of them failed.
type Embedded struct {
	// Match, when set, is a regular expression a resource's whole URL
	// must match to be fetched (HTTPSampler.embedded_url_re); Exclude one
	// it must not match (HTTPSampler.embedded_url_exclude_re).
	Match, Exclude string
	// Concurrent is how many resources are fetched at once
	// (HTTPSampler.concurrentDwn with its concurrentPool); 0 or 1 fetches
	// them one after the other.
	Concurrent int
}

// maxEmbedded bounds the resources fetched for one response.
const maxEmbedded = 1000

// cembedded is a compiled Embedded.
type cembedded struct {
	match, exclude *regexp.Regexp
	pool           int
}

func compileEmbedded(e *Embedded) (*cembedded, error) {
	c := &cembedded{pool: max(e.Concurrent, 1)}
	var err error
	if e.Match != "" {
		if c.match, err = regexp.Compile(`^(?:` + e.Match + `)$`); err != nil {
			return nil, fmt.Errorf("embedded match %q: %w", e.Match, err)
		}
	}
	if e.Exclude != "" {
		if c.exclude, err = regexp.Compile(`^(?:` + e.Exclude + `)$`); err != nil {
			return nil, fmt.Errorf("embedded exclude %q: %w", e.Exclude, err)
		}
	}
	return c, nil
}

// htmlTypes are the content types JMeter's HTML parser reads
// (htmlParser.types).
var htmlTypes = []string{"text/html", "application/xhtml+xml", "application/xml", "text/xml"}

// EmbeddedURLs returns the URLs of the resources the HTML page body
// embeds, resolved against base and the page's <base href>, without
// fragments, each once, in document order (see Embedded).
func EmbeddedURLs(body []byte, base *url.URL) []*url.URL {
	var out []*url.URL
	seen := map[string]bool{}
	add := func(ref string) {
		ref = strings.TrimSpace(ref)
		if ref == "" || len(out) >= maxEmbedded {
			return
		}
		u, err := base.Parse(ref)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return
		}
		u.Fragment, u.RawFragment = "", ""
		if s := u.String(); !seen[s] {
			seen[s] = true
			out = append(out, u)
		}
	}
	z := html.NewTokenizer(bytes.NewReader(body))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return out
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		name, more := z.TagName()
		attrs := map[string]string{}
		for more {
			var k, v []byte
			k, v, more = z.TagAttr()
			if _, dup := attrs[string(k)]; !dup {
				attrs[string(k)] = string(v)
			}
		}
		switch string(name) {
		case "base":
			if h, ok := attrs["href"]; ok {
				if u, err := base.Parse(strings.TrimSpace(h)); err == nil {
					base = u
				}
			}
		case "img", "script", "embed", "frame", "iframe", "bgsound":
			add(attrs["src"])
		case "input":
			if strings.EqualFold(attrs["type"], "image") {
				add(attrs["src"])
			}
		case "link":
			switch strings.ToLower(strings.TrimSpace(attrs["rel"])) {
			case "stylesheet", "icon", "shortcut icon":
				add(attrs["href"])
			}
		case "object":
			add(attrs["data"])
		case "body", "table", "tr", "td", "th":
			add(attrs["background"])
		}
	}
}

// fetchEmbedded fetches the resources of the response w.resp holds (the
// request's parent sample res), delivers their results and extends res
// as JMeter's parent sample. It returns false when the run was
// interrupted.
func (u *user) fetchEmbedded(ctx context.Context, e *cembedded, res *Result) bool {
	w := u.w
	if !res.Success() || w.resp.url == nil {
		return true
	}
	ct := strings.ToLower(w.resp.header.Get("Content-Type"))
	isHTML := false
	for _, t := range htmlTypes {
		if strings.HasPrefix(ct, t) {
			isHTML = true
		}
	}
	if !isHTML {
		return true
	}
	var urls []*url.URL
	for _, r := range EmbeddedURLs(w.resp.body, w.resp.url) {
		s := r.String()
		if (e.match != nil && !e.match.MatchString(s)) || (e.exclude != nil && e.exclude.MatchString(s)) {
			continue
		}
		urls = append(urls, r)
	}
	if len(urls) == 0 {
		return true
	}
	header := w.resp.reqHeader.Clone()
	for _, h := range []string{"Content-Type", "Content-Length", "Cookie"} {
		header.Del(h)
	}
	subs := make([]*Result, len(urls))
	if e.pool <= 1 {
		for i, r := range urls {
			subs[i] = u.fetchOne(ctx, r, header, res)
		}
	} else {
		sem := make(chan struct{}, e.pool)
		var wg sync.WaitGroup
		for i, r := range urls {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				subs[i] = u.fetchOne(ctx, r, header, res)
			})
		}
		wg.Wait()
	}
	if ctx.Err() != nil {
		return false
	}
	end := res.Start.Add(res.Elapsed)
	failed := 0
	for _, s := range subs {
		if e := s.Start.Add(s.Elapsed); e.After(end) {
			end = e
		}
		if !s.Success() {
			failed++
		}
		s.Group, s.GroupNum, s.Parent = u.g.g.Name, u.g.num, res.Label
		w.deliver(s)
	}
	res.Elapsed = end.Sub(res.Start)
	if failed > 0 && res.Failure == "" {
		res.Failure = fmt.Sprintf("%d of %d embedded resources failed", failed, len(subs))
	}
	return true
}

// fetchOne fetches one embedded resource. It may run in a goroutine of
// its own: it touches none of the worker's buffers.
func (u *user) fetchOne(ctx context.Context, target *url.URL, header http.Header, parent *Result) *Result {
	w := u.w
	h := header.Clone()
	if w.jar != nil {
		if cs := w.jar.Cookies(target); len(cs) > 0 {
			var b strings.Builder
			for i, c := range cs {
				if i > 0 {
					b.WriteString("; ")
				}
				b.WriteString(c.Name + "=" + c.Value)
			}
			h.Set("Cookie", b.String())
		}
	}
	s := target.String()
	res := &Result{Seq: w.r.seq.Add(1) - 1, Remaining: -1, Thread: parent.Thread, Iteration: parent.Iteration,
		Label: s, Method: http.MethodGet, URL: s, ActiveThreads: parent.ActiveThreads}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s, nil)
	start := time.Now()
	res.Start, res.Intended = start, start
	if err != nil {
		res.Error = err.Error()
		return res
	}
	req.Header = h
	resp, err := w.r.cfg.Client.Do(req)
	if err != nil {
		res.Elapsed, res.Error = time.Since(start), err.Error()
		return res
	}
	res.TTFB = time.Since(start)
	res.Status = resp.StatusCode
	res.BytesIn, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	res.Elapsed = time.Since(start)
	if err != nil {
		res.Error = "read body: " + err.Error()
	}
	if w.jar != nil {
		if cs := resp.Cookies(); len(cs) > 0 {
			w.jar.SetCookies(target, cs)
		}
	}
	return res
}
