package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestEmitterLines(t *testing.T) {
	var buf bytes.Buffer
	out := newEmitter(&buf, "12D3KooWSelf")
	out.Emit("published", publishedEvent{Topic: "t", ID: "x", Size: 3})
	out.Emit("stopped", nil)
	out.Error("", errors.New("boom"))
	out.Emit("connection_closed", connectionClosedEvent{connectionOpenedEvent: connectionOpenedEvent{Remote: "r", ConnID: "c", Direction: "inbound", RemoteAddr: "/ip4/1.2.3.4/tcp/1"}})
	out.Close()
	out.Emit("published", publishedEvent{Topic: "late"})

	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 lines, got %d: %q", len(lines), buf.String())
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
	if _, ok := events[2]["cmd"]; !ok {
		t.Fatal("error event must carry cmd:null")
	}
	if ev := events[3]; ev["conn_id"] != "c" || ev["direction"] != "inbound" || ev["reason"] != nil {
		t.Fatalf("connection_closed: %v", ev)
	}
	if _, ok := events[3]["reason"]; !ok {
		t.Fatal("connection_closed must carry reason:null")
	}
}
