package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func TestEmitterLines(t *testing.T) {
	var buf bytes.Buffer
	out := newEmitter(&buf, "12D3KooWSelf")
	out.Emit("published", publishedEvent{Topic: "t", ID: "x", Size: 3})
	out.Emit("stopped", nil)
	out.Error("", "", errors.New("boom"))
	out.Emit("connection_closed", connectionClosedEvent{connectionEvent: connectionEvent{Remote: "r", ConnID: "c", Direction: "inbound", RemoteAddr: "/ip4/1.2.3.4/tcp/1"}})
	out.Error("dial", "c7", errors.New("refused"))
	out.Unsupported("c8", "dial-mode-new", "no")
	out.Unsupported("", "muxer-mplex", "no")
	out.Close()
	out.Emit("published", publishedEvent{Topic: "late"})

	contract(t).checkLines(t, buf.String())
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 7 {
		t.Fatalf("want 7 lines, got %d: %q", len(lines), buf.String())
	}
	var events []map[string]any
	for _, l := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if ev["peer"] != "12D3KooWSelf" || ev["ts"].(float64) <= 0 {
			t.Fatalf("bad header in %q", l)
		}
		events = append(events, ev)
	}
	if ev := events[0]; ev["event"] != "published" || ev["topic"] != "t" || ev["size"] != 3.0 {
		t.Fatalf("published: %v", ev)
	}
	if ev := events[1]; ev["event"] != "stopped" || len(ev) != 3 {
		t.Fatalf("stopped: %v", ev)
	}
	if ev := events[2]; ev["event"] != "error" || ev["cmd"] != nil || ev["message"] != "boom" {
		t.Fatalf("error: %v", ev)
	}
	for _, key := range []string{"cmd", "cmd_id"} {
		if v, ok := events[2][key]; !ok || v != nil {
			t.Fatalf("error event must carry %s:null: %v", key, events[2])
		}
	}
	if ev := events[3]; ev["conn_id"] != "c" || ev["direction"] != "inbound" || ev["reason"] != nil {
		t.Fatalf("connection_closed: %v", ev)
	}
	if _, ok := events[3]["reason"]; !ok {
		t.Fatal("connection_closed must carry reason:null")
	}
	if ev := events[4]; ev["event"] != "error" || ev["cmd"] != "dial" || ev["cmd_id"] != "c7" {
		t.Fatalf("error answering a command: %v", ev)
	}
	if ev := events[5]; ev["event"] != "unsupported" || ev["feature"] != "dial-mode-new" || ev["cmd_id"] != "c8" {
		t.Fatalf("unsupported answering a command: %v", ev)
	}
	if v, ok := events[6]["cmd_id"]; !ok || v != nil {
		t.Fatalf("unsupported at start must carry cmd_id:null: %v", events[6])
	}
}

func TestNegotiatedNames(t *testing.T) {
	for _, tc := range []struct {
		state           network.ConnectionState
		security, muxer string
	}{
		{network.ConnectionState{Security: "/noise", StreamMultiplexer: "/yamux/1.0.0", Transport: "tcp"}, "noise", "yamux"},
		{network.ConnectionState{Security: "/tls/1.0.0", StreamMultiplexer: "/mplex/6.7.0", Transport: "tcp"}, "tls", "mplex"},
		{network.ConnectionState{Security: "/secio/1.0.0", StreamMultiplexer: "/spdy/3.1.0", Transport: "tcp"}, "/secio/1.0.0", "/spdy/3.1.0"},
		{network.ConnectionState{Transport: "quic-v1"}, "tls", "quic-v1"},
	} {
		if security, muxer := negotiated(tc.state); security != tc.security || muxer != tc.muxer {
			t.Errorf("%+v: got %s, %s; want %s, %s", tc.state, security, muxer, tc.security, tc.muxer)
		}
	}
}

// fakeConn is the part of a network.Conn the connection tracker reads.
type fakeConn struct {
	network.Conn
	id     string
	remote peer.ID
	dir    network.Direction
}

func (c fakeConn) ID() string                    { return c.id }
func (c fakeConn) RemotePeer() peer.ID           { return c.remote }
func (c fakeConn) RemoteMultiaddr() ma.Multiaddr { return ma.StringCast("/ip4/127.0.0.1/tcp/4001") }
func (c fakeConn) Stat() network.ConnStats {
	return network.ConnStats{Stats: network.Stats{Direction: c.dir}}
}
func (c fakeConn) ConnState() network.ConnectionState {
	return network.ConnectionState{Transport: "tcp"}
}
func (c fakeConn) GetStreams() []network.Stream { return nil }

// TestConnectionDirection: the contract has no "unknown" direction. The
// swarm's own record wins; without one, a connection to a peer being dialed
// is outbound and any other inbound, and connection_closed repeats what
// connection_opened said.
func TestConnectionDirection(t *testing.T) {
	var buf bytes.Buffer
	tracker := newConnTracker(newEmitter(&buf, "12D3KooWSelf"))
	priv, _ := identityFromSeed(7)
	remote, _ := peer.IDFromPrivateKey(priv)
	done := tracker.dialingTo(remote)
	for _, c := range []fakeConn{
		{id: "1", remote: remote, dir: network.DirInbound}, // the swarm's record wins
		{id: "2", remote: remote, dir: network.DirOutbound},
		{id: "3", remote: remote, dir: network.DirUnknown}, // during our dial: ours
	} {
		tracker.opened(c)
	}
	done()
	tracker.opened(fakeConn{id: "4", remote: remote, dir: network.DirUnknown}) // no dial: accepted
	tracker.closed(fakeConn{id: "3", remote: remote, dir: network.DirUnknown})
	tracker.closed(fakeConn{id: "4", remote: remote, dir: network.DirUnknown})

	schemas := contract(t)
	var got []string
	for _, line := range outputLines(buf.String()) {
		if err := schemas.check(kindEvent, line); err != nil {
			t.Errorf("%s: %v", line, err)
		}
		var ev connectionEvent
		var header eventHeader
		json.Unmarshal([]byte(line), &ev)
		json.Unmarshal([]byte(line), &header)
		got = append(got, header.Event+" "+ev.ConnID+" "+ev.Direction)
	}
	want := []string{
		"connection_opened 1 inbound",
		"connection_opened 2 outbound",
		"connection_opened 3 outbound",
		"connection_opened 4 inbound",
		"connection_closed 3 outbound",
		"connection_closed 4 inbound",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
