package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

func spawn(n uint64) outcome {
	var counter uint64
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(int(n))
	for i := uint64(0); i < n; i++ {
		go func() {
			atomic.AddUint64(&counter, 1)
			wg.Done()
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	return expect(el, n, "counter", atomic.LoadUint64(&counter), n)
}

func skynet(c chan<- uint64, num, size uint64) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan uint64, skynetDiv)
	sub := size / skynetDiv
	for i := uint64(0); i < skynetDiv; i++ {
		go skynet(rc, num+i*sub, sub)
	}
	var sum uint64
	for i := 0; i < skynetDiv; i++ {
		sum += <-rc
	}
	c <- sum
}

func skynetMain(leaves uint64) outcome {
	for n := leaves; n > 1; n /= skynetDiv {
		if n%skynetDiv != 0 {
			return outcome{units: leaves, err: fmt.Sprintf("skynet: bad size %d", leaves)}
		}
	}
	t0 := time.Now()
	c := make(chan uint64, 1)
	go skynet(c, 0, leaves)
	sum := <-c
	el := time.Since(t0)
	fmt.Println(sum)
	return expect(el, 1, "sum", sum, leaves*(leaves-1)/2)
}

func pingpong(n uint64) outcome {
	ping := make(chan uint64)
	pong := make(chan uint64)
	res := make(chan uint64)
	t0 := time.Now()
	go func() {
		for v := range ping {
			pong <- v
		}
		close(pong)
	}()
	go func() {
		var sum uint64
		for i := uint64(0); i < n; i++ {
			ping <- i
			sum += <-pong
		}
		close(ping)
		res <- sum
	}()
	sum := <-res
	el := time.Since(t0)
	return expect(el, n, "sum", sum, triangle(n))
}

func ring(laps uint64) outcome {
	hops := laps * ringNodes
	chans := make([]chan uint64, ringNodes)
	for i := range chans {
		chans[i] = make(chan uint64)
	}
	done := make(chan uint64, 1)
	var wg sync.WaitGroup
	wg.Add(ringNodes)
	for i := 0; i < ringNodes; i++ {
		in, out := chans[i], chans[(i+1)%ringNodes]
		go func(i int) {
			defer wg.Done()
			for v := range in {
				if v == 0 {
					done <- uint64(i)
					break
				}
				out <- v - 1
			}
			// Closing our outgoing channel shuts the ring down behind us.
			close(out)
		}(i)
	}
	t0 := time.Now()
	chans[0] <- hops
	last := <-done
	el := time.Since(t0)
	wg.Wait()
	return expect(el, hops, "final node", last, hops%ringNodes)
}

func fanin(size uint64) outcome {
	per, total := split(size, faninProducers)
	c := make(chan uint64, faninCap)
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(faninProducers)
	for p := 0; p < faninProducers; p++ {
		go func() {
			defer wg.Done()
			for v := uint64(0); v < per; v++ {
				c <- v
			}
		}()
	}
	go func() {
		wg.Wait()
		close(c)
	}()
	var count, sum uint64
	for v := range c {
		count++
		sum += v
	}
	el := time.Since(t0)
	return expect(el, total, "(count,sum)", [2]uint64{count, sum},
		[2]uint64{total, faninProducers * triangle(per)})
}

func yields(size uint64) outcome {
	per, total := split(size, yieldTasks)
	var count uint64
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(yieldTasks)
	for t := 0; t < yieldTasks; t++ {
		go func() {
			for i := uint64(0); i < per; i++ {
				runtime.Gosched()
			}
			atomic.AddUint64(&count, per)
			wg.Done()
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	return expect(el, total, "yields", atomic.LoadUint64(&count), total)
}

func sleepers(n uint64) outcome {
	var early uint64
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(int(n))
	for i := uint64(0); i < n; i++ {
		go func() {
			s := time.Now()
			time.Sleep(sleeperSleep)
			if time.Since(s) < sleeperSleep {
				atomic.AddUint64(&early, 1)
			}
			wg.Done()
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	return expect(el, n, "woke early", atomic.LoadUint64(&early), uint64(0))
}

func selectWorkload(size uint64) outcome {
	per, total := split(size, selectProducers)
	var cs [selectProducers]chan uint64
	t0 := time.Now()
	for i := range cs {
		c := make(chan uint64)
		cs[i] = c
		go func() {
			for v := uint64(0); v < per; v++ {
				c <- v
			}
			close(c)
		}()
	}
	c0, c1, c2, c3 := cs[0], cs[1], cs[2], cs[3]
	var count, sum uint64
	open := selectProducers
	for open > 0 {
		var v uint64
		var ok bool
		select {
		case v, ok = <-c0:
			if !ok {
				c0 = nil
			}
		case v, ok = <-c1:
			if !ok {
				c1 = nil
			}
		case v, ok = <-c2:
			if !ok {
				c2 = nil
			}
		case v, ok = <-c3:
			if !ok {
				c3 = nil
			}
		}
		if !ok {
			open--
			continue
		}
		count++
		sum += v
	}
	el := time.Since(t0)
	return expect(el, total, "(count,sum)", [2]uint64{count, sum},
		[2]uint64{total, selectProducers * triangle(per)})
}

func mutex(size uint64) outcome {
	per, total := split(size, mutexTasks)
	var mu sync.Mutex
	var counter uint64
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(mutexTasks)
	for t := 0; t < mutexTasks; t++ {
		go func() {
			for i := uint64(0); i < per; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	mu.Lock()
	got := counter
	mu.Unlock()
	return expect(el, total, "counter", got, total)
}

func echoPattern(conn, round uint64) []byte {
	buf := make([]byte, echoMsg)
	for i := range buf {
		buf[i] = uint8(conn)*31 + uint8(round) + uint8(i)
	}
	return buf
}

func echo(size uint64) outcome {
	rounds, total := split(size, echoConns)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return outcome{err: "listen: " + err.Error()}
	}
	defer ln.Close()
	go func() {
		for i := 0; i < echoConns; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				buf := make([]byte, echoMsg)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}(c)
		}
	}()
	addr := ln.Addr().String()
	var bad, failed uint64
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(echoConns)
	for c := uint64(0); c < echoConns; c++ {
		go func(c uint64) {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr) // Go sets TCP_NODELAY by default
			if err != nil {
				atomic.AddUint64(&failed, 1)
				return
			}
			defer conn.Close()
			buf := make([]byte, echoMsg)
			for r := uint64(0); r < rounds; r++ {
				msg := echoPattern(c, r)
				if _, err := conn.Write(msg); err != nil {
					atomic.AddUint64(&failed, 1)
					return
				}
				if _, err := io.ReadFull(conn, buf); err != nil {
					atomic.AddUint64(&failed, 1)
					return
				}
				if !bytes.Equal(buf, msg) {
					atomic.AddUint64(&bad, 1)
				}
			}
		}(c)
	}
	wg.Wait()
	el := time.Since(t0)
	return expect(el, total, "(bad,failed)", [2]uint64{bad, failed}, [2]uint64{0, 0})
}

func hogLatency(procs int) outcome {
	var stop, started int32
	res := make(chan time.Duration, 1)
	watchdog := time.Now()
	go func() {
		for i := 0; i < procs; i++ {
			go func() {
				atomic.AddInt32(&started, 1)
				x := uint64(1)
				for atomic.LoadInt32(&stop) == 0 {
					for j := 0; j < 1000; j++ {
						x = x*6364136223846793005 + 1
					}
				}
				sink = x
			}()
		}
		for int(atomic.LoadInt32(&started))+1 < procs && atomic.LoadInt32(&stop) == 0 {
		}
		t0 := time.Now()
		time.Sleep(hogSleep)
		res <- time.Since(t0)
	}()
	// The watchdog is the main goroutine; in Go it is itself subject to the
	// hogs, but Go preempts them, so it fires if ever needed.
	select {
	case lat := <-res:
		atomic.StoreInt32(&stop, 1)
		return outcome{elapsed: lat, units: 1}
	case <-time.After(hogCap - time.Since(watchdog)):
		atomic.StoreInt32(&stop, 1)
		lat := <-res
		return outcome{elapsed: lat, units: 1, err: "never (>2 s cap)"}
	}
}

var sink uint64
