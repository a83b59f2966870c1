package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server process of a test's own, on a loopback
// port, with its files in a temporary directory, so that a test can kill,
// freeze and restart it without touching the shared Redis.
type RedisServer struct {
	t     testing.TB
	dir   string
	addr  string
	extra []string
	cmd   *exec.Cmd
}

// StartRedis starts a redis-server of the test's own with extra
// arguments, and kills it when the test ends. It skips the test when
// redis-server is not installed, unless services are Required.
func StartRedis(t testing.TB, extra ...string) *RedisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if Required() {
			t.Fatalf("redis-server is required but not installed: %v", err)
		}
		t.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &RedisServer{t: t, dir: t.TempDir(), addr: addr, extra: extra}
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// Addr returns the server's host:port.
func (s *RedisServer) Addr() string { return s.addr }

// URL returns the server's redis:// URL.
func (s *RedisServer) URL() string { return "redis://" + s.addr }

func (s *RedisServer) port() string { _, p, _ := net.SplitHostPort(s.addr); return p }

// Start runs redis-server (again, after Kill) and waits until it answers
// PING.
func (s *RedisServer) Start() {
	s.t.Helper()
	args := append([]string{"--port", s.port(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log")}, s.extra...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	c := goredis.NewClient(&goredis.Options{Addr: s.addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server on %s did not answer: %v\n%s", s.addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server (also a stopped one) and waits for it to exit.
func (s *RedisServer) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Signal sends sig to the server, e.g. SIGSTOP to freeze it.
func (s *RedisServer) Signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}
