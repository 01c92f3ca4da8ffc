package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// loopbackAddr is a test peer's loopback listen address.
func (p *testPeer) loopbackAddr() string {
	p.t.Helper()
	listening := p.waitFor("listening", nil)
	for _, s := range strings_(listening["addrs"]) {
		if strings.HasPrefix(s, "/ip4/127.0.0.1/") {
			return s
		}
	}
	p.t.Fatalf("no loopback listen address in %v", listening)
	return ""
}

// codecHost is a plain go-libp2p host that speaks the request-response
// protocol exactly as rust-libp2p's json codec frames it: the whole stream up
// to the writer's half-close, read to EOF, with no other framing.
func codecHost(t *testing.T, seed int) host.Host {
	t.Helper()
	cfg, err := parseConfig(`{"seed":1,"listen_port":0,"transport":"tcp","security":"noise","muxer":"yamux"}`)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := identityFromSeed(uint64(seed))
	h, err := buildHost(cfg, priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestRequestFramingAgainstJSONCodec: the go peer answers a request framed as
// the json codec frames it, and its own requests are framed so.
func TestRequestFramingAgainstJSONCodec(t *testing.T) {
	p := startTestPeerConfig(t, 40, "tcp", "", `"request_response":{"response_size":5}`)
	addr, err := ma.NewMultiaddr(p.loopbackAddr())
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.Decode(p.id)
	h := codecHost(t, 41)

	// The codec host asks: write the JSON, half-close, read to EOF.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{addr}}); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, id, requestResponseProtocol)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(s, `{"id":"codec-1","payload":"abc"}`); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("reading the response to EOF: %v", err)
	}
	var res wireMessage
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("the response %q is not one JSON object: %v", raw, err)
	}
	if res.ID != "codec-1" || res.Payload != "....." {
		t.Fatalf("response %q", raw)
	}
	got := p.waitFor("request_received", field("id", "codec-1"))
	if got["remote"] != h.ID().String() || got["size"] != float64(3) {
		t.Fatalf("request_received %v", got)
	}

	// The go peer asks the codec host, which reads to EOF and answers so.
	requests := make(chan []byte, 1)
	h.SetStreamHandler(requestResponseProtocol, func(s network.Stream) {
		raw, err := io.ReadAll(s)
		if err != nil {
			s.Reset()
			return
		}
		requests <- raw
		var req wireMessage
		json.Unmarshal(raw, &req)
		io.WriteString(s, fmt.Sprintf(`{"id":%q,"payload":"xy"}`, req.ID))
		s.Close()
	})
	p.send(fmt.Sprintf(`{"cmd":"request","cmd_id":"c1","peer":"%s","id":"go-1","size":4}`, h.ID()))
	p.waitFor("request_sent", field("id", "go-1"))
	received := p.waitFor("response_received", field("id", "go-1"))
	if received["size"] != float64(2) || received["remote"] != h.ID().String() {
		t.Fatalf("response_received %v", received)
	}
	if raw := <-requests; string(raw) != `{"id":"go-1","payload":"...."}` {
		t.Fatalf("the go peer's request on the wire: %q", raw)
	}
}

// TestRequestResponseBetweenGoPeers: answered (dialing by address), delayed,
// dropped and stalled responders, with concurrent requests.
func TestRequestResponseBetweenGoPeers(t *testing.T) {
	defer func(d time.Duration) { requestTimeout = d }(requestTimeout)
	requestTimeout = 2 * time.Second

	client := startTestPeerConfig(t, 50, "tcp", "", `"request_response":{}`)
	for _, tc := range []struct {
		name, responder string
		check           func(t *testing.T, id string, server *testPeer, sent map[string]any)
	}{
		{"answered", `{}`, func(t *testing.T, id string, server *testPeer, sent map[string]any) {
			ev := client.waitFor("response_received", field("id", id))
			if ev["size"] != float64(100) || ev["remote"] != server.id {
				t.Fatalf("%v", ev)
			}
		}},
		{"delayed", `{"response_delay_ms":300,"response_size":7}`, func(t *testing.T, id string, server *testPeer, sent map[string]any) {
			ev := client.waitFor("response_received", field("id", id))
			if ev["size"] != float64(7) || ev["latency_us"].(float64) < 300_000 {
				t.Fatalf("%v", ev)
			}
		}},
		{"drop", `{"failure":"drop"}`, func(t *testing.T, id string, server *testPeer, sent map[string]any) {
			ev := client.waitFor("request_failed", field("id", id))
			if ev["error"] == "" || ev["remote"] != server.id {
				t.Fatalf("%v", ev)
			}
		}},
		{"stall", `{"failure":"stall"}`, func(t *testing.T, id string, server *testPeer, sent map[string]any) {
			ev := client.waitFor("request_failed", field("id", id))
			if waited := time.Duration(ev["ts"].(float64)-sent["ts"].(float64)) * time.Microsecond; waited < requestTimeout/2 {
				t.Fatalf("a stalled request failed after %v, before its timeout: %v", waited, ev)
			}
			if !strings.Contains(ev["error"].(string), "deadline") && !strings.Contains(ev["error"].(string), "timeout") {
				t.Fatalf("%v", ev)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server := startTestPeerConfig(t, 51+len(tc.name), "tcp", "", `"request_response":`+tc.responder)
			addr := server.loopbackAddr()
			// Two at once, before any connection: the first dials, the second
			// joins the dial (host.NewStream).
			for i := range 2 {
				client.send(fmt.Sprintf(`{"cmd":"request","cmd_id":"c%s%d","peer":"%s","addr":"%s","id":"%s-%d","size":100}`,
					tc.name, i, server.id, addr, tc.name, i))
			}
			for i := range 2 {
				id := fmt.Sprintf("%s-%d", tc.name, i)
				sent := client.waitFor("request_sent", field("id", id))
				got := server.waitFor("request_received", field("id", id))
				if got["size"] != float64(100) || got["remote"] != client.id {
					t.Fatalf("request_received %v", got)
				}
				tc.check(t, id, server, sent)
			}
		})
	}
}

// TestRequestToUnreachablePeer: request_sent at once, then request_failed
// with the library's dial error.
func TestRequestToUnreachablePeer(t *testing.T) {
	client := startTestPeerConfig(t, 80, "tcp", "", `"request_response":{}`)
	nobody := codecHost(t, 81) // a real id, closed before the request
	id := nobody.ID().String()
	addr := nobody.Addrs()[0].String()
	nobody.Close()
	client.send(fmt.Sprintf(`{"cmd":"request","cmd_id":"c1","peer":"%s","addr":"%s","id":"u1","size":8}`, id, addr))
	client.waitFor("request_sent", field("id", "u1"))
	ev := client.waitFor("request_failed", field("id", "u1"))
	if !strings.Contains(ev["error"].(string), "dial") {
		t.Fatalf("%v", ev)
	}
}
