package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
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
