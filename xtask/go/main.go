// Command peer-go is the Go (reference) implementation of the gmp benchmark
// workloads, driven by `cargo xtask bench`.
//
//	peer-go <workload> <size> <procs>
//
// It prints one line
//
//	RESULT name=<workload> runtime=go ns=<timed ns> units=<n> ok=1
//
// (ok=0 err=<reason> and exit status 1 when the self-check fails). Standard
// library only; build with GO111MODULE=off. The workload shapes must stay in
// sync with xtask/peers/src/lib.rs.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

const (
	ringNodes       = 1000
	faninProducers  = 1000
	faninCap        = 1024
	yieldTasks      = 1000
	mutexTasks      = 1000
	selectProducers = 4
	skynetDiv       = 10
	echoConns       = 100
	echoMsg         = 64
	sleeperSleep    = 10 * time.Millisecond
	hogSleep        = 1 * time.Millisecond
	hogCap          = 2 * time.Second
)

// outcome is what one workload run produced.
type outcome struct {
	elapsed time.Duration
	units   uint64
	err     string // empty when the self-check passed
}

func expect(elapsed time.Duration, units uint64, what string, got, want interface{}) outcome {
	o := outcome{elapsed: elapsed, units: units}
	if got != want {
		o.err = fmt.Sprintf("%s: got %v, want %v", what, got, want)
	}
	return o
}

// split divides size evenly over tasks: (per task, total units).
func split(size, tasks uint64) (uint64, uint64) {
	per := size / tasks
	if per == 0 {
		per = 1
	}
	return per, per * tasks
}

func triangle(n uint64) uint64 {
	if n == 0 {
		return 0
	}
	return n * (n - 1) / 2
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: %s <workload> <size> <procs>\n", os.Args[0])
	os.Exit(2)
}

func main() {
	if len(os.Args) != 4 {
		usage()
	}
	name := os.Args[1]
	size, err1 := strconv.ParseUint(os.Args[2], 10, 64)
	procs, err2 := strconv.Atoi(os.Args[3])
	if err1 != nil || err2 != nil || size == 0 || procs <= 0 {
		usage()
	}
	runtime.GOMAXPROCS(procs)

	var o outcome
	switch name {
	case "spawn":
		o = spawn(size)
	case "skynet":
		o = skynetMain(size)
	case "pingpong":
		o = pingpong(size)
	case "ring":
		o = ring(size)
	case "fanin":
		o = fanin(size)
	case "yield":
		o = yields(size)
	case "sleepers":
		o = sleepers(size)
	case "select":
		o = selectWorkload(size)
	case "mutex":
		o = mutex(size)
	case "echo":
		o = echo(size)
	case "hog-latency":
		o = hogLatency(procs)
	default:
		fmt.Fprintf(os.Stderr, "unknown workload %q\n", name)
		usage()
	}

	ns := o.elapsed.Nanoseconds()
	if o.err == "" {
		fmt.Printf("RESULT name=%s runtime=go ns=%d units=%d ok=1\n", name, ns, o.units)
		os.Exit(0)
	}
	fmt.Fprintf(os.Stderr, "go %s: check failed: %s\n", name, o.err)
	fmt.Printf("RESULT name=%s runtime=go ns=%d units=%d ok=0 err=%s\n",
		name, ns, o.units, strings.Join(strings.Fields(o.err), "_"))
	os.Exit(1)
}
