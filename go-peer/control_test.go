package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestControlPort drives a whole peer over its control port (docs/peer-contract.md
// §8): the events come over the connection, `started` first and `stopped` last,
// a command gets its answer there, nothing goes to stdout, stdin is never read,
// and no second controller is accepted.
func TestControlPort(t *testing.T) {
	port := freePort(t)
	cfg := fmt.Sprintf(`{"seed":5,"listen_port":0,"transport":"tcp","security":"noise","muxer":"yamux","control_port":%d}`, port)
	schemas := contract(t)
	if err := schemas.check(kindConfig, cfg); err != nil {
		t.Fatalf("the configuration breaks the contract: %v", err)
	}
	var stdout bytes.Buffer
	stdin, neverWritten := io.Pipe()
	defer neverWritten.Close()
	exit := make(chan int, 1)
	go func() { exit <- run(cfg, stdin, &stdout, io.Discard) }()

	conn := dialUntil(t, fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	defer conn.Close()
	lines := bufio.NewScanner(conn)
	next := func() map[string]any {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if !lines.Scan() {
			t.Fatalf("control connection ended: %v", lines.Err())
		}
		if err := schemas.check(kindEvent, lines.Text()); err != nil {
			t.Fatalf("not a contract event: %s\n%v", lines.Text(), err)
		}
		var ev map[string]any
		json.Unmarshal(lines.Bytes(), &ev)
		return ev
	}
	if ev := next(); ev["event"] != "started" {
		t.Fatalf("first line over the control port is %v, want started", ev)
	}
	if second, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		second.Close()
		t.Fatal("a second controller could connect")
	}
	fmt.Fprintln(conn, `{"cmd":"no-such-command","cmd_id":"c1"}`)
	for ev := next(); ev["event"] != "error" || ev["cmd_id"] != "c1"; ev = next() {
	}
	fmt.Fprintln(conn, `{"cmd":"stop"}`)
	for ev := next(); ev["event"] != "stopped"; ev = next() {
	}
	select {
	case code := <-exit:
		if code != exitOK {
			t.Fatalf("exit %d after stop", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit 10 s after stop")
	}
	if stdout.Len() != 0 {
		t.Fatalf("stdout is not silent with a control port: %q", stdout.String())
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// dialUntil connects once the peer listens (it reads its configuration first).
func dialUntil(t *testing.T, addr string, within time.Duration) net.Conn {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("no control port at %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEventsPath writes the events to the file events_path names, which the
// peer opens but never creates, and leaves stdout silent; commands still come
// from stdin.
func TestEventsPath(t *testing.T) {
	path := t.TempDir() + "/events"
	cfg := fmt.Sprintf(`{"seed":6,"listen_port":0,"transport":"tcp","security":"noise","muxer":"yamux","events_path":%q}`, path)
	if err := contract(t).check(kindConfig, cfg); err != nil {
		t.Fatalf("the configuration breaks the contract: %v", err)
	}
	if code := run(cfg, strings.NewReader(""), io.Discard, io.Discard); code != exitFailure {
		t.Fatalf("exit %d with no file at events_path, want %d: the peer must not create it", code, exitFailure)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if code := run(cfg, strings.NewReader(`{"cmd":"stop"}`+"\n"), &stdout, io.Discard); code != exitOK {
		t.Fatalf("exit %d after stop", code)
	}
	events, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(events)), "\n")
	if !strings.Contains(lines[0], `"event":"started"`) || !strings.Contains(lines[len(lines)-1], `"event":"stopped"`) {
		t.Fatalf("events_path holds %q, want started first and stopped last", events)
	}
	if stdout.Len() != 0 {
		t.Fatalf("stdout is not silent with events_path: %q", stdout.String())
	}
}
