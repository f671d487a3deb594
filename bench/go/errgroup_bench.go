// errgroup_bench.go - the Go twin of bench/eg_bench.c, against
// golang.org/x/sync/errgroup, for bench/compare.
//
// Build (GOPATH mode, offline, with Debian's golang-golang-x-sync-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o eg_bench_go errgroup_bench.go
//
// Usage: eg_bench_go [--json] [--quick] [--reps N] [--list] [BENCH...]
//
// Benchmarks carry the C program's names and units: group3, tasks1000,
// limit2, cancelN (N goroutines blocked on <-ctx.Done() plus one failing),
// fanout and overshoot, mem (RSS per blocked goroutine). The method is the
// C program's: one untimed warm-up sample, then reps timed samples, each a
// batch of operations divided by its size; min and median over samples.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

var jsonOut bool

var errFail = errors.New("fail")

// report sorts samples and prints their minimum and median.
func report(name, unit, what string, s []float64) {
	sort.Float64s(s)
	n := len(s)
	median := s[n/2]
	if n%2 == 0 {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	if jsonOut {
		fmt.Printf("{\"name\":\"%s\",\"unit\":\"%s\",\"min\":%.1f,\"median\":%.1f,\"samples\":%d}\n",
			name, unit, s[0], median, n)
	} else {
		fmt.Printf("%-18s min %12.1f  median %12.1f  %-9s %s\n", name, s[0], median, unit, what)
	}
}

// runGroups times `groups` groups of `tasks` no-op tasks, each with the
// given limit (-1: none).
func runGroups(groups, tasks, limit int) time.Duration {
	t0 := time.Now()
	for i := 0; i < groups; i++ {
		g, _ := errgroup.WithContext(context.Background())
		if limit >= 0 {
			g.SetLimit(limit)
		}
		for j := 0; j < tasks; j++ {
			g.Go(func() error { return nil })
		}
		if err := g.Wait(); err != nil {
			panic(err)
		}
	}
	return time.Since(t0)
}

func benchGroups(name, what string, reps, groups, tasks, limit int, perTask bool) {
	ops := float64(groups)
	unit := "ns/group"
	if perTask {
		ops *= float64(tasks)
		unit = "ns/task"
	}
	runGroups(groups, tasks, limit)
	s := make([]float64, reps)
	for r := range s {
		s[r] = float64(runGroups(groups, tasks, limit).Nanoseconds()) / ops
	}
	report(name, unit, what, s)
}

// runCancel times one group: n goroutines bump a counter and block on
// <-ctx.Done(); one more yields until all n did, then fails.
func runCancel(n int) time.Duration {
	var blocked int32
	t0 := time.Now()
	g, ctx := errgroup.WithContext(context.Background())
	for i := 0; i < n; i++ {
		g.Go(func() error {
			atomic.AddInt32(&blocked, 1)
			<-ctx.Done()
			return nil
		})
	}
	g.Go(func() error {
		for atomic.LoadInt32(&blocked) < int32(n) {
			runtime.Gosched()
		}
		return errFail
	})
	err := g.Wait()
	dt := time.Since(t0)
	if err != errFail {
		panic("cancel: Wait returned " + fmt.Sprint(err))
	}
	return dt
}

func benchCancel(name string, n, reps int) {
	runCancel(n)
	s := make([]float64, reps)
	for r := range s {
		s[r] = float64(runCancel(n).Nanoseconds())
	}
	report(name, "ns/group", fmt.Sprintf("%d blocked on <-ctx.Done() + 1 failing, whole group", n), s)
}

// sleepTask sleeps ms, returning early with ctx's error; after a full
// sleep it returns result.
func sleepTask(ctx context.Context, ms int, result error) func() error {
	return func() error {
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return result
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func benchFanout(reps int) {
	total := make([]float64, reps)
	over := make([]float64, reps)
	for r := -1; r < reps; r++ {
		t0 := time.Now()
		g, ctx := errgroup.WithContext(context.Background())
		g.Go(sleepTask(ctx, 30, nil))
		g.Go(sleepTask(ctx, 10, errFail))
		g.Go(sleepTask(ctx, 20, nil))
		err := g.Wait()
		dt := time.Since(t0)
		if err != errFail {
			panic("fanout: Wait returned " + fmt.Sprint(err))
		}
		if r >= 0 {
			total[r] = float64(dt.Nanoseconds())
			over[r] = float64((dt - 10*time.Millisecond).Nanoseconds())
		}
	}
	report("fanout", "ns", "sleeps 30/10/20 ms, 10 ms fails: start to Wait", total)
	report("overshoot", "ns", "fanout minus the 10 ms of the failing task", over)
}

// benchBlocked is benchCancel for large n: few rounds (one for a
// million), then the peak RSS of the process (VmHWM).
func benchBlocked(name string, n, reps int) {
	if n >= 1000000 {
		reps = 1
	} else if n >= 100000 && reps > 3 {
		reps = 3
	} else if reps > 7 {
		reps = 7
	}
	s := make([]float64, reps)
	for r := range s {
		s[r] = float64(runCancel(n).Nanoseconds())
	}
	report(name, "ns/group", fmt.Sprintf("%d blocked on <-ctx.Done() + 1 failing, start to Wait", n), s)
	report(name+"_rss", "KiB", "peak RSS of the process", []float64{float64(peakRSSKiB())})
}

func peakRSSKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return -1
}

func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return -1
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return -1
	}
	return pages * int64(os.Getpagesize())
}

// benchMem: RSS added per goroutine while 1000 block on <-ctx.Done() at
// once, from a fresh process, as the C program measures its tasks.
func benchMem() {
	const n = 1000
	var blocked int32
	g, ctx := errgroup.WithContext(context.Background())
	runtime.GC()
	before := rssBytes()
	for i := 0; i < n; i++ {
		g.Go(func() error {
			atomic.AddInt32(&blocked, 1)
			<-ctx.Done()
			return nil
		})
	}
	for atomic.LoadInt32(&blocked) < n {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	after := rssBytes()
	g.Go(func() error { return errFail })
	g.Wait()
	if before < 0 || after < 0 {
		fmt.Fprintln(os.Stderr, "eg_bench_go: mem: cannot read /proc/self/statm")
		return
	}
	report("mem", "B/task", "RSS added per goroutine blocked, 1000 at once",
		[]float64{float64(after-before) / n})
}

var allBenches = []string{"mem", "group3", "tasks1000", "limit2", "cancel3",
	"cancel100", "cancel1000", "fanout"}

func runBench(name string, reps int, quick bool) {
	scale := 1
	if quick {
		scale = 4
	}
	switch {
	case name == "mem":
		benchMem()
	case name == "group3":
		benchGroups(name, "WithContext + 3 Go + Wait", reps, 2000/scale, 3, -1, false)
	case name == "tasks1000":
		benchGroups(name, "1000 no-op goroutines in one group", reps, 5, 1000, -1, true)
	case name == "limit2":
		benchGroups(name, "1000 no-op goroutines, SetLimit(2)", reps, 2, 1000, 2, true)
	case strings.HasPrefix(name, "blocked"):
		n, err := strconv.Atoi(name[len("blocked"):])
		if err != nil || n < 1 || n > 1000000 {
			unknown(name)
		}
		benchBlocked(name, n, reps)
	case strings.HasPrefix(name, "cancel"):
		n, err := strconv.Atoi(name[len("cancel"):])
		if err != nil || n < 1 || n > 100000 {
			unknown(name)
		}
		benchCancel(name, n, reps)
	case name == "fanout":
		benchFanout(reps)
	default:
		unknown(name)
	}
}

func unknown(name string) {
	fmt.Fprintf(os.Stderr, "eg_bench_go: unknown benchmark '%s'\nbenchmarks: %s (cancelN takes any N >= 1)\n",
		name, strings.Join(allBenches, " "))
	os.Exit(2)
}

func main() {
	flag.BoolVar(&jsonOut, "json", false, "one JSON object per result")
	quick := flag.Bool("quick", false, "smaller batches and fewer samples")
	reps := flag.Int("reps", 0, "timed samples per benchmark (default 15, quick 5)")
	list := flag.Bool("list", false, "list the benchmarks")
	flag.Parse()
	if *list {
		fmt.Println(strings.Join(allBenches, "\n"))
		return
	}
	if *reps <= 0 {
		*reps = 15
		if *quick {
			*reps = 5
		}
	}
	names := flag.Args()
	if len(names) == 0 {
		names = allBenches
	}
	// mem first: it needs a process with no goroutines parked yet.
	for _, n := range names {
		if n == "mem" {
			runBench(n, *reps, *quick)
		}
	}
	for _, n := range names {
		if n != "mem" {
			runBench(n, *reps, *quick)
		}
	}
}
