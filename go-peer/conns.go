package main

import (
	"slices"
	"strings"
	"sync"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// connTracker announces connections and remembers the ones announced, so that
// the stream sampler reports only connections the runner has heard of, and a
// connection seen both by the notifiee and by the startup snapshot is
// announced once.
type connTracker struct {
	out   *Emitter
	mu    sync.Mutex
	conns map[string]network.Conn
}

func newConnTracker(out *Emitter) *connTracker {
	return &connTracker{out: out, conns: make(map[string]network.Conn)}
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
	if _, known := t.conns[c.ID()]; known {
		return
	}
	t.conns[c.ID()] = c
	security, muxer := negotiated(c.ConnState())
	t.out.Emit("connection_opened", connectionOpenedEvent{connectionEvent: connFields(c), Security: security, Muxer: muxer})
}

func (t *connTracker) closed(c network.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, known := t.conns[c.ID()]; !known {
		return
	}
	delete(t.conns, c.ID())
	t.out.Emit("connection_closed", connectionClosedEvent{connectionEvent: connFields(c)})
}

// each calls f for every announced connection, in conn id order, holding the
// lock so no streams event can follow its connection_closed.
func (t *connTracker) each(f func(network.Conn)) {
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

func connFields(c network.Conn) connectionEvent {
	return connectionEvent{
		Remote:     c.RemotePeer().String(),
		ConnID:     c.ID(),
		Direction:  directionName(c.Stat().Direction),
		RemoteAddr: c.RemoteMultiaddr().String(),
	}
}

func directionName(d network.Direction) string {
	switch d {
	case network.DirInbound:
		return "inbound"
	case network.DirOutbound:
		return "outbound"
	}
	return "unknown"
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
