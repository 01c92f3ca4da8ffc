package main

import (
	"slices"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// connTracker announces connections and remembers the ones announced, so that
// the stream sampler reports only connections the runner has heard of, and a
// connection seen both by the notifiee and by the startup snapshot is
// announced once.
type connTracker struct {
	out   *Emitter
	mu    sync.Mutex
	conns map[string]trackedConn
	// dialing counts the `dial` commands in progress per peer (see direction).
	dialing map[peer.ID]int
}

// trackedConn is an announced connection and the direction it was announced
// with, which its connection_closed repeats. Its id and remote peer are kept
// as text: the swarm base58-encodes the peer id anew on every call, and the
// stream sampler needs both twenty times a second per connection.
type trackedConn struct {
	network.Conn
	id, remote string
	direction  string
}

func newConnTracker(out *Emitter) *connTracker {
	return &connTracker{out: out, conns: make(map[string]trackedConn), dialing: make(map[peer.ID]int)}
}

// notifiee hooks the tracker into the swarm. EvtPeerConnectednessChanged
// would only say when the first/last connection to a peer changes; the
// notifiee sees every connection with its id.
func (t *connTracker) notifiee() network.Notifiee {
	return &network.NotifyBundle{
		ConnectedF:    func(_ network.Network, c network.Conn) { t.opened(c) },
		DisconnectedF: func(_ network.Network, c network.Conn) { t.closed(c) },
	}
}

func (t *connTracker) opened(c network.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := c.ID()
	if _, known := t.conns[id]; known {
		return
	}
	tc := trackedConn{Conn: c, id: id, remote: c.RemotePeer().String(), direction: t.direction(c)}
	t.conns[id] = tc
	security, muxer := negotiated(c.ConnState())
	t.out.Emit("connection_opened", connectionOpenedEvent{connectionEvent: tc.fields(), Security: security, Muxer: muxer})
}

func (t *connTracker) closed(c network.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tc, known := t.conns[c.ID()]
	if !known {
		return
	}
	delete(t.conns, c.ID())
	t.out.Emit("connection_closed", connectionClosedEvent{connectionEvent: tc.fields()})
}

// dialingTo marks a `dial` to p in progress until the returned func is called.
func (t *connTracker) dialingTo(p peer.ID) (done func()) {
	t.mu.Lock()
	t.dialing[p]++
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.dialing[p]--; t.dialing[p] == 0 {
			delete(t.dialing, p)
		}
	}
}

// direction names who opened c; t.mu must be held. The contract knows only
// inbound and outbound. The swarm records one of them on every connection it
// adds (DirInbound from a listener, DirOutbound from a dial), but
// network.Conn may say DirUnknown. Then the dial record decides: this host
// dials only on a `dial` command (relay, peer exchange, AutoNAT probes and
// hole punching are off), so a connection to a peer it is dialing is its
// own, and any other was accepted.
func (t *connTracker) direction(c network.Conn) string {
	switch c.Stat().Direction {
	case network.DirInbound:
		return "inbound"
	case network.DirOutbound:
		return "outbound"
	}
	if t.dialing[c.RemotePeer()] > 0 {
		return "outbound"
	}
	return "inbound"
}

// each calls f for every announced connection, in conn id order, holding the
// lock so no streams event can follow its connection_closed.
func (t *connTracker) each(f func(trackedConn)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := make([]string, 0, len(t.conns))
	for id := range t.conns {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		f(t.conns[id])
	}
}

func (c trackedConn) fields() connectionEvent {
	return connectionEvent{
		Remote:     c.remote,
		ConnID:     c.id,
		Direction:  c.direction,
		RemoteAddr: c.RemoteMultiaddr().String(),
	}
}

// Protocol ids as negotiated, in the configuration's spelling.
var (
	securityNames = map[protocol.ID]string{"/noise": "noise", "/tls/1.0.0": "tls"}
	muxerNames    = map[protocol.ID]string{"/yamux/1.0.0": "yamux", "/mplex/6.7.0": "mplex"}
)

// negotiated names what a connection's upgrade selected (ConnState, not the
// configuration): the security protocol and the muxer, in the configuration's
// spelling, or the raw protocol id when it has none. QUIC connections carry
// no upgrader state: their security is TLS 1.3 and their streams are QUIC's.
func negotiated(state network.ConnectionState) (security, muxer string) {
	if strings.HasPrefix(state.Transport, "quic") && state.Security == "" && state.StreamMultiplexer == "" {
		return "tls", state.Transport
	}
	security, muxer = string(state.Security), string(state.StreamMultiplexer)
	if name, ok := securityNames[state.Security]; ok {
		security = name
	}
	if name, ok := muxerNames[state.StreamMultiplexer]; ok {
		muxer = name
	}
	return security, muxer
}
