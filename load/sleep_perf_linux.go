package load

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// preciseClock sleeps on a timerfd read through Go's netpoller. Go's
// timers wake an idle process through epoll_wait, whose timeout is in
// whole milliseconds, so they can fire up to a millisecond late: too
// coarse for a schedule meant to be exact to the millisecond. A timerfd
// makes epoll_wait return at its expiry (within the timer slack, 50 µs by
// default), and the goroutine parks meanwhile, holding no thread (a
// nanosleep would hold one and keep sysmon polling every 20 µs). It is
// not safe for concurrent use: the open model's pacer owns one.
type preciseClock struct {
	f *os.File
}

// newPreciseClock returns a clock, or nil when the timerfd cannot be made
// (then sleeps fall back to Go's timers).
func newPreciseClock() *preciseClock {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil
	}
	return &preciseClock{f: os.NewFile(uintptr(fd), "timerfd")}
}

// sleep sleeps for d; a nil clock uses time.Sleep.
func (c *preciseClock) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	if c == nil {
		time.Sleep(d)
		return
	}
	sc, err := c.f.SyscallConn()
	if err != nil {
		time.Sleep(d)
		return
	}
	its := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	var serr error
	if err := sc.Control(func(fd uintptr) { serr = unix.TimerfdSettime(int(fd), 0, &its, nil) }); err != nil || serr != nil {
		time.Sleep(d)
		return
	}
	var buf [8]byte // the expiration count
	if _, err := c.f.Read(buf[:]); err != nil {
		time.Sleep(d)
	}
}

func (c *preciseClock) close() {
	if c != nil {
		c.f.Close()
	}
}
