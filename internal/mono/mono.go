// Package mono reads the monotonic clock as a number, for times kept in
// atomics: nanoseconds since the process started.
package mono

import "time"

var start = time.Now()

// Now is the monotonic time in nanoseconds since the process started; it
// is above 0 once any time has passed, so 0 can stand for "never".
func Now() int64 { return int64(time.Since(start)) }

// Since is the time elapsed since t, a value of Now.
func Since(t int64) time.Duration { return time.Duration(Now() - t) }
