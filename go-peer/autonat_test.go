package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autonat"
	"github.com/libp2p/go-libp2p/p2p/host/autonat/pb"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"
)

// TestAutonatRolesGoCannotTake: the server roles and the v2 client are
// `unsupported` at start (exit 3), named by their feature.
func TestAutonatRolesGoCannotTake(t *testing.T) {
	for role, feature := range map[string]string{
		`{"v1":"server"}`: featureAutonatV1Server,
		`{"v1":"both"}`:   featureAutonatV1Server,
		`{"v2":"server"}`: featureAutonatV2Server,
		`{"v2":"client"}`: featureAutonatV2Client,
	} {
		code, out := runAtStart(t, `{"seed":1,"listen_port":0,"transport":"tcp","security":"noise","muxer":"yamux","autonat":`+role+`}`, true)
		if code != exitUnsupported || !strings.Contains(out, `"feature":"`+feature+`"`) {
			t.Errorf("autonat %s: exit %d, stdout %q", role, code, out)
		}
	}
}

// TestSwarmHandlerQueueRefused: go-libp2p has no handler queue to size, so a
// configuration that sets one is `unsupported` at start (exit 3) with the
// reason, not run as if it had been applied; `swarm` without it is not.
func TestSwarmHandlerQueueRefused(t *testing.T) {
	code, out := runAtStart(t, `{"seed":1,"listen_port":0,"transport":"tcp","security":"noise","muxer":"yamux","swarm":{"handler_queue":1}}`, true)
	if code != exitUnsupported || !strings.Contains(out, `"feature":"`+featureSwarmHandlerQueue+`"`) ||
		!strings.Contains(out, "notify_handler_buffer_size") {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	cfg, err := parseConfig(`{"seed":1,"listen_port":1,"transport":"tcp","security":"noise","muxer":"yamux","swarm":{}}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.checkSupported(); err != nil {
		t.Errorf("swarm without settings: %v", err)
	}
}

// TestAutonatProbeV1: the library's client asks go-libp2p's own v1 service,
// which refuses the loopback addresses it is given (dialpolicy.go): no
// conclusion, reported as unknown, from that server.
func TestAutonatProbeV1(t *testing.T) {
	server, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.EnableNATService(),
		libp2p.AutoNATServiceRateLimit(0, 0, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	client := startTestPeerConfig(t, 60, "tcp", "", `"autonat":{"v1":"client"}`)
	client.send(fmt.Sprintf(`{"cmd":"autonat_probe","cmd_id":"c1","server":"%s","addr":"%s","version":"v1"}`, server.ID(), server.Addrs()[0]))
	ev := client.waitFor("reachability", nil)
	if ev["version"] != "v1" || ev["status"] != "unknown" || ev["server"] != server.ID().String() {
		t.Fatalf("reachability %v", ev)
	}
	client.send(`{"cmd":"autonat_probe","cmd_id":"c2","server":"` + server.ID().String() + `","version":"v2"}`)
	if ev := client.waitFor("unsupported", field("cmd_id", "c2")); ev["feature"] != featureAutonatV2Client {
		t.Fatalf("v2 probe: %v", ev)
	}
}

// TestAutonatVanish: each vanishing probe delivers one DIAL request, as the
// library's client writes it, and then the connection is gone; dozens in a
// row leave no streams, connections or goroutines behind.
func TestAutonatVanish(t *testing.T) {
	server, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	var mu sync.Mutex
	var requests []*pb.Message
	closed := make(chan struct{}, 100)
	server.SetStreamHandler(autonat.AutoNATProto, func(s network.Stream) {
		var msg pb.Message
		if err := pbio.NewDelimitedReader(s, 4096).ReadMsg(&msg); err != nil {
			s.Reset()
			return
		}
		mu.Lock()
		requests = append(requests, &msg)
		mu.Unlock()
		// The client leaves without reading an answer: the stream ends.
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := s.Read(make([]byte, 1)); err != nil {
			closed <- struct{}{}
		}
		s.Reset()
	})
	client := startTestPeerConfig(t, 61, "tcp", "", `"autonat":{"v1":"client"}`)
	clientID, _ := peer.Decode(client.id)
	probe := func(i int) {
		client.send(fmt.Sprintf(`{"cmd":"autonat_probe","cmd_id":"v%d","server":"%s","addr":"%s","version":"v1","vanish":true}`, i, server.ID(), server.Addrs()[0]))
		client.waitFor("connection_closed", field("remote", server.ID().String()))
	}
	probe(0)
	time.Sleep(200 * time.Millisecond)
	goroutines := runtime.NumGoroutine()
	const rounds = 30
	for i := 1; i <= rounds; i++ {
		probe(i)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(requests)
		mu.Unlock()
		if n == rounds+1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(requests) != rounds+1 {
		t.Fatalf("%d DIAL requests arrived from %d vanishing probes", len(requests), rounds+1)
	}
	for _, msg := range requests {
		if msg.GetType() != pb.Message_DIAL || peer.ID(msg.GetDial().GetPeer().GetId()) != clientID || len(msg.GetDial().GetPeer().GetAddrs()) == 0 {
			t.Fatalf("not the library's DIAL request: %v", msg)
		}
		for _, raw := range msg.GetDial().GetPeer().GetAddrs() {
			if _, err := ma.NewMultiaddrBytes(raw); err != nil {
				t.Fatalf("address %x: %v", raw, err)
			}
		}
	}
	for range rounds + 1 {
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("a vanished client's stream stayed open at the server")
		}
	}
	for wait := time.Now().Add(2 * time.Second); len(server.Network().ConnsToPeer(clientID)) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(wait) {
			t.Fatalf("still connected: %v", server.Network().ConnsToPeer(clientID))
		}
	}
	time.Sleep(200 * time.Millisecond)
	if now := runtime.NumGoroutine(); now > goroutines+5 {
		t.Fatalf("goroutines rose from %d to %d over %d vanishing probes", goroutines, now, rounds)
	}
	if errs := slices.IndexFunc(client.seen, func(ev map[string]any) bool { return ev["event"] == "error" }); errs >= 0 {
		t.Fatalf("error: %v", client.seen[errs])
	}
}
