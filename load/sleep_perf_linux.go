package load

import (
	"syscall"
	"time"
)

// sleepPrecise sleeps for d in the kernel (nanosleep), which wakes within
// the thread's timer slack (50 µs by default). Go's timers wake an idle
// process through epoll_wait, whose timeout is in whole milliseconds, so
// they can fire up to a millisecond late: too coarse for a schedule meant
// to be exact to the millisecond. It holds an OS thread for d, so callers
// use it only for the last stretch of a wait, from one goroutine.
func sleepPrecise(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for {
		var left syscall.Timespec
		if err := syscall.Nanosleep(&ts, &left); err != syscall.EINTR {
			return
		}
		ts = left // interrupted by a signal: sleep the rest
	}
}
