package e2e_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"ratelab/internal/testenv"
)

// The policies of the replica test: an org-wide limit to flood through the
// proxy and a per-script write limit, nothing else (a policy file replaces
// the defaults).
const replicaPolicies = `policies:
  - name: org-requests
    rate: 400/s
    burst: 100
    scope: org
    classes: [all]
  - name: script-writes-per-script
    rate: 5/s
    burst: 10
    scope: org+script
    classes: [script-writes]
`

const (
	orgRate, orgBurst       = 400.0, 100.0
	scriptRate, scriptBurst = 5.0, 10.0
)

// ratelabBin is the real binary, built once for every test of the package.
var ratelabBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ratelab-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	ratelabBin = filepath.Join(dir, "ratelab")
	build := exec.Command("go", "build", "-o", ratelabBin, "ratelab/cmd/ratelab")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build ratelab:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is an output stream that tests read while a process writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a child process with its combined output kept for failures.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // valid once done is closed
}

// startProc starts path args… and stops it (SIGTERM, then SIGKILL after 10
// s) when the test ends.
func startProc(t *testing.T, name, path string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, p.out)
		}
	})
	return p
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process politely and waits for it.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	p.cmd.Process.Kill()
	<-p.done
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// replica is one `ratelab serve` process.
type replica struct {
	proc *proc
	url  string // http://127.0.0.1:PORT
}

var listenRE = regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`)

// startReplicas starts n `ratelab serve` processes at the same instant with
// the same arguments and waits until every one listens; a replica that
// exits before it listens fails the test.
func startReplicas(t *testing.T, n int, args ...string) []*replica {
	t.Helper()
	reps := make([]*replica, n)
	for i := range reps {
		reps[i] = &replica{proc: startProc(t, fmt.Sprintf("replica %d", i+1), ratelabBin,
			append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, r := range reps {
		for r.url == "" {
			if m := listenRE.FindStringSubmatch(r.proc.out.String()); m != nil {
				r.url = m[1]
				break
			}
			if r.proc.exited() {
				t.Fatalf("%s exited before listening (%v):\n%s", r.proc.name, r.proc.err, r.proc.out)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not listen within 30 s:\n%s", r.proc.name, r.proc.out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return reps
}

var nginxConf = template.Must(template.New("nginx").Parse(`
{{if .Root}}user root;{{end}}
worker_processes 1;
error_log {{.Dir}}/error.log warn;
pid {{.Dir}}/nginx.pid;
events { worker_connections 2048; }
http {
	# One line per request: its URI and the upstreams nginx tried, so that a
	# test can tell a request nginx retried on another replica ("a, b").
	log_format upstreams '$request_uri $upstream_addr';
	access_log {{.Dir}}/access.log upstreams;
	client_body_temp_path {{.Dir}}/body;
	proxy_temp_path {{.Dir}}/proxy;
	fastcgi_temp_path {{.Dir}}/fastcgi;
	uwsgi_temp_path {{.Dir}}/uwsgi;
	scgi_temp_path {{.Dir}}/scgi;
	upstream ratelab {
{{- range .Upstreams}}
		server {{.}} max_fails=1 fail_timeout=30s;
{{- end}}
		keepalive 64;
	}
	server {
		listen 127.0.0.1:{{.Port}};
		location / {
			proxy_pass http://ratelab;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_connect_timeout 1s;
		}
	}
}
`))

// nginxProxy is nginx in front of the replicas.
type nginxProxy struct {
	url string // base URL
	dir string // its prefix: access.log is there
}

// retried counts, by request URI, the requests nginx passed to more than
// one upstream: after an error from the first (a killed replica) it
// retries an idempotent request such as a PUT on the next, so a write the
// first replica committed before it died may be applied twice.
func (p *nginxProxy) retried(t *testing.T) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		uri, ups, ok := strings.Cut(line, " ")
		if ok && strings.Contains(ups, ",") {
			n[uri]++
		}
	}
	return n
}

// startNginx starts Debian's nginx on a free loopback port, balancing
// round robin over the replicas.
func startNginx(t *testing.T, reps []*replica) *nginxProxy {
	t.Helper()
	bin := testenv.Program(t, "nginx")
	dir := t.TempDir()
	var ups []string
	for _, r := range reps {
		ups = append(ups, strings.TrimPrefix(r.url, "http://"))
	}
	port := freePort(t)
	var conf bytes.Buffer
	if err := nginxConf.Execute(&conf, map[string]any{
		"Root": os.Getuid() == 0, "Dir": dir, "Upstreams": ups, "Port": port,
	}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, conf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "nginx", bin, "-p", dir, "-c", path, "-g", "daemon off;")
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, 10*time.Second, "nginx to listen", func() bool {
		if p.exited() {
			t.Fatalf("nginx exited (%v):\n%s", p.err, p.out)
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return &nginxProxy{url: base, dir: dir}
}

// waitFor polls ok every 20 ms until it holds, failing the test after
// timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
