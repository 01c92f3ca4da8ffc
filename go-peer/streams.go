package main

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// changePoll bounds how late a change in stream counts is reported. go-libp2p
// has no stream open/close notification, so counts are polled; every poll
// wakes the process, which across hundreds of idle peers on a few cores is a
// good part of their cost, so it stays well above the scheduler's scale.
const changePoll = 200 * time.Millisecond

type streamCount struct{ inbound, outbound int }

// sampleStreams emits `streams` for every connection each interval, and for a
// connection whose counts changed since its last report at the next poll.
func sampleStreams(ctx context.Context, conns *connTracker, out *Emitter, interval time.Duration) {
	poll := min(changePoll, interval)
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	last := make(map[string]streamCount)
	seen := make(map[string]bool)
	nextFull := time.Now()
	for {
		now := time.Now()
		full := !now.Before(nextFull)
		if full {
			nextFull = now.Add(interval)
		}
		clear(seen)
		conns.each(func(c trackedConn) {
			seen[c.id] = true
			n := countStreams(c)
			if prev, ok := last[c.id]; full || !ok || prev != n {
				last[c.id] = n
				out.Emit("streams", streamsEvent{
					Remote:   c.remote,
					ConnID:   c.id,
					Inbound:  n.inbound,
					Outbound: n.outbound,
				})
			}
		})
		for id := range last {
			if !seen[id] {
				delete(last, id)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// countStreams counts what the muxer holds open on c, by who opened it.
func countStreams(c network.Conn) streamCount {
	var n streamCount
	for _, s := range c.GetStreams() {
		switch s.Stat().Direction {
		case network.DirInbound:
			n.inbound++
		case network.DirOutbound:
			n.outbound++
		}
	}
	return n
}
