package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// TestPortMappingWithoutGateway: with no gateway to find (none answers SSDP
// or NAT-PMP here), go-libp2p's NAT manager discovers nothing, and the peer
// says so once its deadline passes.
func TestPortMappingWithoutGateway(t *testing.T) {
	p := startTestPeerConfig(t, 70, "tcp", "", `"port_mapping":{"deadline_ms":700}`)
	started := p.waitFor("listening", nil)
	ev := p.waitFor("port_mapping_failed", nil)
	if waited := time.Duration(ev["ts"].(float64)-started["ts"].(float64)) * time.Microsecond; waited < 600*time.Millisecond {
		t.Fatalf("port_mapping_failed after %v, before the deadline", waited)
	}
	if !strings.Contains(ev["error"].(string), "no NAT found") {
		t.Fatalf("%v", ev)
	}
	for _, seen := range p.seen {
		if seen["event"] == "gateway_found" || seen["event"] == "port_mapped" {
			t.Fatalf("%v without a gateway", seen)
		}
	}
}

// TestPortMappedEvent: a mapping of a listen address, tcp and QUIC.
func TestPortMappedEvent(t *testing.T) {
	for _, tc := range []struct{ listen, ext, want string }{
		{"/ip4/0.0.0.0/tcp/4001", "/ip4/10.217.0.1/tcp/41234", "tcp 4001 41234"},
		{"/ip4/0.0.0.0/udp/4001/quic-v1", "/ip4/10.217.0.1/udp/5000/quic-v1", "udp 4001 5000"},
	} {
		ev, err := portMapped(ma.StringCast(tc.listen), ma.StringCast(tc.ext))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join([]string{ev.Protocol, strconv.Itoa(ev.InternalPort), strconv.Itoa(ev.ExternalPort)}, " "); got != tc.want || ev.ExternalAddr != tc.ext {
			t.Fatalf("%s -> %s: %+v", tc.listen, tc.ext, ev)
		}
	}
	if _, err := portMapped(ma.StringCast("/ip4/0.0.0.0/tcp/4001"), ma.StringCast("/ip4/10.217.0.1/udp/4001")); err == nil {
		t.Fatal("a mapping that changes the transport passed")
	}
}

// TestPortMappingLibraryError: go-libp2p's NAT manager gives up discovery
// after its 10 s bound; its own error text is port_mapping_failed, before the
// deadline (where the release lets its log be caught).
func TestPortMappingLibraryError(t *testing.T) {
	if !natLogCaptured {
		t.Skip("this go-libp2p release's log cannot be caught")
	}
	if testing.Short() {
		t.Skip("waits for go-libp2p's 10 s discovery bound")
	}
	p := startTestPeerConfig(t, 71, "tcp", "", `"port_mapping":{"deadline_ms":20000}`)
	started := p.waitForWithin("port_mapping_failed", 15*time.Second)
	if !strings.Contains(started["error"].(string), "no NAT found") || strings.Contains(started["error"].(string), "within") {
		t.Fatalf("not the library's text: %v", started)
	}
}
