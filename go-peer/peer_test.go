package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// testPeer runs the whole peer (run) in-process behind pipes.
type testPeer struct {
	t       *testing.T
	id      string
	schemas contractSchemas
	stdin   io.WriteCloser
	events  chan map[string]any
	seen    []map[string]any
	used    []bool
	exit    chan int
	// patience is how long waitFor waits; zero: 10 s.
	patience time.Duration
}

// waitForWithin is waitFor with no match, waiting up to d.
func (p *testPeer) waitForWithin(name string, d time.Duration) map[string]any {
	p.t.Helper()
	p.patience = d
	defer func() { p.patience = 0 }()
	return p.waitFor(name, nil)
}

func startTestPeer(t *testing.T, seed int, transport string) *testPeer {
	t.Helper()
	return startTestPeerWith(t, seed, transport, "")
}

// startTestPeerWith adds gossip, `"field":value` pairs, to the gossipsub configuration.
func startTestPeerWith(t *testing.T, seed int, transport, gossip string) *testPeer {
	t.Helper()
	return startTestPeerConfig(t, seed, transport, gossip, "")
}

// startTestPeerConfig also adds extra, `"field":value` pairs, to the configuration.
func startTestPeerConfig(t *testing.T, seed int, transport, gossip, extra string) *testPeer {
	t.Helper()
	if gossip != "" {
		gossip = "," + gossip
	}
	if extra != "" {
		extra = "," + extra
	}
	cfg := fmt.Sprintf(`{"seed":%d,"listen_port":0,"transport":%q,"security":"noise","muxer":"yamux",
		"gossipsub":{"topics":["meshgate"],"d":2,"d_lo":1,"d_hi":3,"heartbeat_ms":100%s},"streams_interval_ms":200%s}`, seed, transport, gossip, extra)
	schemas := contract(t)
	if err := schemas.check(kindConfig, cfg); err != nil {
		t.Fatalf("the test's configuration breaks the contract: %v", err)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	p := &testPeer{t: t, schemas: schemas, stdin: inW, events: make(chan map[string]any, 1024), exit: make(chan int, 1)}
	go func() {
		p.exit <- run(cfg, inR, outW, io.Discard)
		outW.Close()
	}()
	go func() {
		defer close(p.events)
		scanner := bufio.NewScanner(outR)
		for scanner.Scan() {
			// Every line the peer writes, whether a test waits for it or not.
			if err := schemas.check(kindEvent, scanner.Text()); err != nil {
				t.Errorf("the peer wrote a line the contract does not allow: %s\n%v", scanner.Text(), err)
			}
			var ev map[string]any
			if err := json.Unmarshal(scanner.Bytes(), &ev); err != nil {
				t.Errorf("stdout line is not an event: %q", scanner.Text())
				continue
			}
			p.events <- ev
		}
	}()
	// Stop the peer and read it to the end, so that the lines it writes while
	// stopping are checked too, while the test can still fail.
	t.Cleanup(func() {
		inW.Close()
		p.finish()
	})
	first := p.waitFor("started", nil)
	p.id = first["peer"].(string)
	if len(p.seen) != 1 {
		t.Fatalf("started is not the first event: %v", p.seen)
	}
	// The features go-libp2p has at every supported release, sorted; not
	// dial-mode-new, muxer-mplex nor the AutoNAT roles that refuse private addresses.
	want := []string{"autonat-v1-client", "autonat-v1-vanish", "drop-protocol", "muxer-yamux", "open-streams", "port-mapping",
		"request-response", "security-noise", "security-tls", "transport-quic-v1", "transport-tcp"}
	if got := strings_(first["features"]); !slices.Equal(got, want) {
		t.Fatalf("started features %v, want %v", got, want)
	}
	if first["contract_version"] != float64(contractVersion) {
		t.Fatalf("started contract_version %v, want %d", first["contract_version"], contractVersion)
	}
	return p
}

// send writes one command line, which must be one the contract allows.
func (p *testPeer) send(cmd string) {
	p.t.Helper()
	if err := p.schemas.check(kindCommand, cmd); err != nil {
		p.t.Fatalf("the test sends a command the contract does not allow: %s\n%v", cmd, err)
	}
	p.write(cmd)
}

// sendInvalid writes a line that is not a valid command, on purpose: the
// schema must reject it as the peer does.
func (p *testPeer) sendInvalid(line string) {
	p.t.Helper()
	if p.schemas.check(kindCommand, line) == nil {
		p.t.Fatalf("the commands schema accepts %s, meant to be invalid", line)
	}
	p.write(line)
}

func (p *testPeer) write(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatal(err)
	}
}

// finish reads the peer's stdout to its end (the peer has been told to
// stop), keeping the events not yet read in seen.
func (p *testPeer) finish() {
	p.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				return
			}
			p.seen = append(p.seen, ev)
			p.used = append(p.used, false)
		case <-timeout:
			p.t.Fatalf("%s: stdout still open 10 s after the peer was told to stop", p.id)
		}
	}
}

// waitFor returns the first not yet matched event named name that match
// accepts, whether already read or still to come: independent goroutines
// may emit in either order.
func (p *testPeer) waitFor(name string, match func(map[string]any) bool) map[string]any {
	p.t.Helper()
	accept := func(i int) bool {
		ev := p.seen[i]
		if p.used[i] || ev["event"] != name || (match != nil && !match(ev)) {
			return false
		}
		p.used[i] = true
		return true
	}
	for i := range p.seen {
		if accept(i) {
			return p.seen[i]
		}
	}
	patience := 10 * time.Second
	if p.patience > 0 {
		patience = p.patience
	}
	timeout := time.After(patience)
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				p.t.Fatalf("%s: stdout closed while waiting for %s", p.id, name)
			}
			p.seen = append(p.seen, ev)
			p.used = append(p.used, false)
			if accept(len(p.seen) - 1) {
				return ev
			}
		case <-timeout:
			var names []string
			for _, ev := range p.seen {
				names = append(names, ev["event"].(string))
			}
			p.t.Fatalf("%s: no %s event; saw %v", p.id, name, names)
		}
	}
}

func field(key, want string) func(map[string]any) bool {
	return func(ev map[string]any) bool { return ev[key] == want }
}

func strings_(v any) []string {
	var s []string
	for _, x := range v.([]any) {
		s = append(s, x.(string))
	}
	return s
}

// TestTwoPeersGossip drives two full peers over loopback: dial, identify,
// subscriptions, mesh, one message each way, streams, and stop.
func TestTwoPeersGossip(t *testing.T) {
	for _, transport := range []string{"tcp", "quic-v1"} {
		t.Run(transport, func(t *testing.T) { testTwoPeers(t, transport) })
	}
}

func testTwoPeers(t *testing.T, transport string) {
	a := startTestPeer(t, 10, transport)
	b := startTestPeer(t, 11, transport)

	listening := a.waitFor("listening", nil)
	var addr string
	for _, s := range strings_(listening["addrs"]) {
		if strings.HasPrefix(s, "/ip4/127.0.0.1/") {
			addr = s
		}
	}
	if addr == "" {
		t.Fatalf("no loopback listen address in %v", listening)
	}

	a.send(`{"cmd":"subscribe","topic":"meshgate"}`)
	b.send(`{"cmd":"subscribe","topic":"meshgate"}`)
	b.send(fmt.Sprintf(`{"cmd":"dial","addr":"%s/p2p/%s","mode":"dedup"}`, addr, a.id))

	opened := b.waitFor("connection_opened", field("remote", a.id))
	if opened["direction"] != "outbound" {
		t.Fatalf("b's connection should be outbound: %v", opened)
	}
	inbound := a.waitFor("connection_opened", field("remote", b.id))
	if inbound["direction"] != "inbound" {
		t.Fatalf("a's connection should be inbound: %v", inbound)
	}
	security, muxer := "noise", "yamux"
	if transport == "quic-v1" {
		security, muxer = "tls", "quic-v1"
	}
	for _, ev := range []map[string]any{opened, inbound} {
		if ev["security"] != security || ev["muxer"] != muxer {
			t.Fatalf("connection negotiated %v/%v, want %s/%s: %v", ev["security"], ev["muxer"], security, muxer, ev)
		}
	}

	id := b.waitFor("identify", field("remote", a.id))
	if id["conn_id"] != opened["conn_id"] {
		t.Fatalf("identify conn_id %v, connection %v", id["conn_id"], opened["conn_id"])
	}
	protocols := strings_(id["protocols"])
	if !slices.IsSorted(protocols) || !slices.Contains(protocols, "/meshsub/1.1.0") || !slices.Contains(protocols, "/ipfs/id/1.0.0") {
		t.Fatalf("identify protocols %v", protocols)
	}

	b.waitFor("subscribed", func(ev map[string]any) bool { return ev["remote"] == a.id && ev["topic"] == "meshgate" })
	a.waitFor("mesh", func(ev map[string]any) bool { return slices.Equal(strings_(ev["peers"]), []string{b.id}) })
	b.waitFor("mesh", func(ev map[string]any) bool { return slices.Equal(strings_(ev["peers"]), []string{a.id}) })

	a.send(`{"cmd":"publish","topic":"meshgate","id":"a/0","size":300}`)
	if ev := a.waitFor("published", nil); ev["id"] != "a/0" || ev["size"] != 300.0 {
		t.Fatalf("published %v", ev)
	}
	msg := b.waitFor("message", nil)
	if msg["id"] != "a/0" || msg["source"] != a.id || msg["from"] != a.id || msg["size"] != 300.0 || msg["topic"] != "meshgate" {
		t.Fatalf("message %v", msg)
	}

	b.send(`{"cmd":"publish","topic":"meshgate","id":"b/0","size":64}`)
	if msg := a.waitFor("message", nil); msg["id"] != "b/0" || msg["source"] != b.id {
		t.Fatalf("message %v", msg)
	}

	// Both directions carry the gossipsub stream of each side.
	a.waitFor("streams", func(ev map[string]any) bool {
		return ev["conn_id"] == inbound["conn_id"] && ev["inbound"].(float64) >= 1 && ev["outbound"].(float64) >= 1
	})

	// Held streams raise the counts on both sides of the one connection.
	const held = 5
	b.send(fmt.Sprintf(`{"cmd":"open_streams","peer":%q,"count":%d}`, a.id, held))
	b.waitFor("streams", func(ev map[string]any) bool {
		return ev["conn_id"] == opened["conn_id"] && ev["outbound"].(float64) >= held
	})
	a.waitFor("streams", func(ev map[string]any) bool {
		return ev["conn_id"] == inbound["conn_id"] && ev["inbound"].(float64) >= held
	})
	b.send(`{"cmd":"open_streams","cmd_id":"c1","peer":"` + b.id + `","count":1}`)
	if ev := b.waitFor("error", nil); ev["cmd"] != "open_streams" || ev["cmd_id"] != "c1" || !strings.Contains(ev["message"].(string), "not connected") {
		t.Fatalf("open_streams to an unconnected peer: %v", ev)
	}

	b.send(`{"cmd":"dial","cmd_id":"c2","addr":"/ip4/127.0.0.1/tcp/1/p2p/` + a.id + `","mode":"new"}`)
	if ev := b.waitFor("unsupported", nil); ev["feature"] != "dial-mode-new" || ev["cmd_id"] != "c2" {
		t.Fatalf("unsupported %v", ev)
	}
	b.sendInvalid(`{"cmd":"frobnicate","cmd_id":"c3"}`)
	if ev := b.waitFor("error", nil); ev["cmd"] != "frobnicate" || ev["cmd_id"] != "c3" {
		t.Fatalf("error %v", ev)
	}
	// A field of the wrong type still answers with the command's cmd_id.
	b.sendInvalid(`{"cmd":"publish","cmd_id":"c4","topic":"meshgate","id":"x","size":"big"}`)
	if ev := b.waitFor("error", nil); ev["cmd"] != "publish" || ev["cmd_id"] != "c4" {
		t.Fatalf("error %v", ev)
	}
	if transport == "tcp" {
		// A dial that fails later answers with its cmd_id too.
		priv, _ := identityFromSeed(99)
		nobody, _ := peer.IDFromPrivateKey(priv)
		b.send(`{"cmd":"dial","cmd_id":"c5","addr":"/ip4/127.0.0.1/tcp/1/p2p/` + nobody.String() + `","mode":"dedup"}`)
		if ev := b.waitFor("error", field("cmd_id", "c5")); ev["cmd"] != "dial" {
			t.Fatalf("failed dial: %v", ev)
		}
	}
	for _, ev := range b.seen {
		if ev["event"] == "error" || ev["event"] == "unsupported" {
			if _, ok := ev["cmd_id"]; !ok {
				t.Fatalf("%s without cmd_id: %v", ev["event"], ev)
			}
		}
	}

	b.send(`{"cmd":"unsubscribe","topic":"meshgate"}`)
	a.waitFor("unsubscribed", field("remote", b.id))
	a.waitFor("mesh", func(ev map[string]any) bool { return len(ev["peers"].([]any)) == 0 })

	b.send(`{"cmd":"disconnect","peer":"` + a.id + `"}`)
	if ev := b.waitFor("connection_closed", field("remote", a.id)); ev["conn_id"] != opened["conn_id"] {
		t.Fatalf("closed %v, opened %v", ev, opened)
	}
	a.waitFor("connection_closed", field("remote", b.id))

	b.send(`{"cmd":"stop"}`)
	b.waitFor("stopped", nil)
	if code := <-b.exit; code != exitOK {
		t.Fatalf("b exit %d", code)
	}
	if ev, ok := <-b.events; ok {
		t.Fatalf("event after stopped: %v", ev)
	}

	// End of stdin stops a peer too.
	a.stdin.Close()
	a.waitFor("stopped", nil)
	if code := <-a.exit; code != exitOK {
		t.Fatalf("a exit %d", code)
	}

	// Between them the two peers wrote every event of the roles they had, each
	// checked against the contract as it was read (the revision 2 roles have
	// their own tests).
	a.finish()
	b.finish()
	for name := range eventBodies {
		if revision2Events[name] {
			continue
		}
		if !slices.ContainsFunc(append(slices.Clone(a.seen), b.seen...), func(ev map[string]any) bool { return ev["event"] == name }) {
			t.Errorf("no peer wrote a %s event", name)
		}
	}

	// Neither peer reports its own publication as a message.
	for _, p := range []*testPeer{a, b} {
		for _, ev := range p.seen {
			if ev["event"] == "message" && ev["source"] == p.id {
				t.Fatalf("%s reported its own message: %v", p.id, ev)
			}
		}
	}
}

// TestContentSHA256MessageID: with content-addressed message ids, a message
// is still delivered, and a second one with other data is too.
func TestContentSHA256MessageID(t *testing.T) {
	a := startTestPeerWith(t, 20, "tcp", `"message_id":"content-sha256"`)
	b := startTestPeerWith(t, 21, "tcp", `"message_id":"content-sha256"`)
	var addr string
	for _, s := range strings_(a.waitFor("listening", nil)["addrs"]) {
		if strings.HasPrefix(s, "/ip4/127.0.0.1/") {
			addr = s
		}
	}
	a.send(`{"cmd":"subscribe","topic":"meshgate"}`)
	b.send(`{"cmd":"subscribe","topic":"meshgate"}`)
	b.send(fmt.Sprintf(`{"cmd":"dial","addr":"%s/p2p/%s","mode":"dedup"}`, addr, a.id))
	a.waitFor("mesh", func(ev map[string]any) bool { return slices.Equal(strings_(ev["peers"]), []string{b.id}) })
	b.waitFor("mesh", func(ev map[string]any) bool { return slices.Equal(strings_(ev["peers"]), []string{a.id}) })
	for _, id := range []string{"a/0", "a/1"} {
		a.send(`{"cmd":"publish","topic":"meshgate","id":"` + id + `","size":100}`)
		if msg := b.waitFor("message", nil); msg["id"] != id || msg["source"] != a.id {
			t.Fatalf("message %v, want %s", msg, id)
		}
	}
	b.send(`{"cmd":"stop"}`)
	b.waitFor("stopped", nil)
	a.send(`{"cmd":"stop"}`)
	a.waitFor("stopped", nil)
}

// TestNegotiatedSecurity: with tls,noise offered on one peer and noise,tls
// on the other, a connection uses the dialer's first choice (the listener
// supports both), and both ends report the same security and muxer, read
// from the connection.
func TestNegotiatedSecurity(t *testing.T) {
	a := startTestPeerConfig(t, 40, "tcp", "", `"offer":{"security":["tls","noise"],"muxer":["yamux"]}`)
	b := startTestPeerConfig(t, 41, "tcp", "", `"offer":{"security":["noise","tls"]}`)
	// c offers noise alone: a, preferring tls, must settle for it.
	c := startTestPeerConfig(t, 42, "tcp", "", `"offer":{"security":["noise"]}`)
	loopback := func(p *testPeer) string {
		t.Helper()
		for _, s := range strings_(p.waitFor("listening", nil)["addrs"]) {
			if strings.HasPrefix(s, "/ip4/127.0.0.1/") {
				return s + "/p2p/" + p.id
			}
		}
		t.Fatalf("%s has no loopback address", p.id)
		return ""
	}
	addrA, addrB, addrC := loopback(a), loopback(b), loopback(c)
	for _, tc := range []struct {
		dialer, listener *testPeer
		addr, security   string
	}{
		{b, a, addrA, "noise"}, // b's first choice
		{a, b, addrB, "tls"},   // a's first choice
		{a, c, addrC, "noise"}, // a's second: c has only noise
	} {
		tc.dialer.send(`{"cmd":"dial","cmd_id":"d1","addr":"` + tc.addr + `","mode":"dedup"}`)
		out := tc.dialer.waitFor("connection_opened", field("remote", tc.listener.id))
		in := tc.listener.waitFor("connection_opened", field("remote", tc.dialer.id))
		if out["direction"] != "outbound" || in["direction"] != "inbound" {
			t.Fatalf("directions %v, %v", out, in)
		}
		for _, ev := range []map[string]any{out, in} {
			if ev["security"] != tc.security || ev["muxer"] != "yamux" {
				t.Fatalf("%s dialing %s: got %v/%v, want %s/yamux: %v", tc.dialer.id, tc.listener.id, ev["security"], ev["muxer"], tc.security, ev)
			}
		}
		tc.dialer.send(`{"cmd":"disconnect","peer":"` + tc.listener.id + `"}`)
		tc.dialer.waitFor("connection_closed", field("remote", tc.listener.id))
		tc.listener.waitFor("connection_closed", field("remote", tc.dialer.id))
	}
	for _, p := range []*testPeer{a, b, c} {
		p.send(`{"cmd":"stop"}`)
		p.waitFor("stopped", nil)
	}
}

// runAtStart runs the peer on cfg with no commands and returns its exit
// status and stdout, every line of which must be an event the contract
// allows. valid says whether the contract allows cfg, which is checked too.
func runAtStart(t *testing.T, cfg string, valid bool) (int, string) {
	t.Helper()
	schemas := contract(t)
	if err := schemas.check(kindConfig, cfg); (err == nil) != valid {
		t.Fatalf("config schema on %s: %v, want valid %v", cfg, err, valid)
	}
	var out strings.Builder
	code := run(cfg, strings.NewReader(""), &out, io.Discard)
	schemas.checkLines(t, out.String())
	return code, out.String()
}

func TestRunExitCodes(t *testing.T) {
	if code, _ := runAtStart(t, `{"seed":1}`, false); code != exitConfig {
		t.Fatalf("bad config: exit %d", code)
	}
	code, out := runAtStart(t, `{"seed":1,"listen_port":0,"transport":"tcp","security":"noise","muxer":"mplex"}`, true)
	if code != exitUnsupported || !strings.Contains(out, `"event":"unsupported","feature":"muxer-mplex"`) ||
		!strings.Contains(out, `"cmd_id":null`) {
		t.Fatalf("mplex: exit %d, stdout %q", code, out)
	}
	code, out = runAtStart(t, `{"seed":1,"listen_port":0,"transport":"tcp","security":"noise","muxer":"yamux","offer":{"muxer":["yamux","mplex"]}}`, true)
	if code != exitUnsupported || !strings.Contains(out, `"feature":"muxer-mplex"`) {
		t.Fatalf("mplex offered: exit %d, stdout %q", code, out)
	}
	if code, _ := runAtStart(t, `{"seed":1,"listen_port":0,"transport":"tcp","security":"noise","muxer":"yamux","offer":{"security":["ssl"]}}`, false); code != exitConfig {
		t.Fatalf("unknown offer: exit %d", code)
	}
}

// TestRequire: each required feature the peer lacks or does not know is an
// `unsupported` at start (once, cmd_id null), then exit 3 and nothing else;
// the probe's reserved name is always refused; features the peer has pass.
func TestRequire(t *testing.T) {
	if slices.Contains(supportedFeatures(), probeReservedFeature) {
		t.Fatalf("supportedFeatures lists %s, which no peer may have", probeReservedFeature)
	}
	unsupported := func(out string) (features []string) {
		t.Helper()
		for _, line := range outputLines(out) {
			var ev struct {
				eventHeader
				unsupportedEvent
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Event != "unsupported" || ev.CmdID != nil || ev.Reason == "" {
				t.Fatalf("want only unsupported events at start, got %s", line)
			}
			features = append(features, ev.Feature)
		}
		return features
	}

	// The compliance probe's configuration, as examples.jsonl has it.
	var probe string
	for _, ex := range examples(t) {
		if ex.kind == kindConfig && strings.Contains(ex.text, `"require":["`+probeReservedFeature+`"]`) {
			probe = ex.text
		}
	}
	if probe == "" {
		t.Fatalf("examples.jsonl has no configuration requiring only %s", probeReservedFeature)
	}
	code, out := runAtStart(t, probe, true)
	if got := unsupported(out); code != exitUnsupported || !slices.Equal(got, []string{probeReservedFeature}) {
		t.Fatalf("probe: exit %d, unsupported %v", code, got)
	}

	// Before any other check: mplex (itself unsupported) is not reported.
	code, out = runAtStart(t, `{"seed":1,"listen_port":0,"transport":"tcp","security":"noise","muxer":"mplex",
		"require":["transport-tcp","dial-mode-new","no-such-feature","dial-mode-new","gossipsub-mesh-degree","`+probeReservedFeature+`"]}`, true)
	want := []string{"dial-mode-new", "no-such-feature", "gossipsub-mesh-degree", probeReservedFeature}
	if got := unsupported(out); code != exitUnsupported || !slices.Equal(got, want) {
		t.Fatalf("exit %d, unsupported %v, want %v", code, got, want)
	}

	// Requiring everything the peer has starts it.
	have, _ := json.Marshal(supportedFeatures())
	p := startTestPeerConfig(t, 50, "tcp", "", `"require":`+string(have))
	p.send(`{"cmd":"stop","cmd_id":"c1"}`)
	p.waitFor("stopped", nil)
	if code := <-p.exit; code != exitOK {
		t.Fatalf("exit %d", code)
	}
}

// TestIdentifyPush checks that a protocol added after the first identify is
// reported as a new identify event with the complete list and the connection.
func TestIdentifyPush(t *testing.T) {
	cfg, err := parseConfig(`{"seed":20,"listen_port":0,"transport":"tcp","security":"tls","muxer":"yamux"}`)
	if err != nil {
		t.Fatal(err)
	}
	hosts := make([]interface{ Close() error }, 0, 2)
	t.Cleanup(func() {
		for _, h := range hosts {
			h.Close()
		}
	})
	privA, _ := identityFromSeed(20)
	privB, _ := identityFromSeed(21)
	a, err := buildHost(cfg, privA, nil)
	if err != nil {
		t.Fatal(err)
	}
	hosts = append(hosts, a)
	b, err := buildHost(cfg, privB, nil)
	if err != nil {
		t.Fatal(err)
	}
	hosts = append(hosts, b)

	sub, err := b.EventBus().Subscribe(busEvents)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pr, pw := io.Pipe()
	out := newEmitter(pw, b.ID().String())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go watchBus(ctx, b, sub, out)
	lines := bufio.NewScanner(pr)
	schemas := contract(t)
	next := func(name string, match func(identifyEvent) bool) identifyEvent {
		t.Helper()
		for lines.Scan() {
			if err := schemas.check(kindEvent, lines.Text()); err != nil {
				t.Fatalf("%s: %v", lines.Text(), err)
			}
			var ev struct {
				Event string `json:"event"`
				identifyEvent
			}
			if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Event == name && match(ev.identifyEvent) {
				return ev.identifyEvent
			}
		}
		t.Fatalf("no %s event", name)
		return identifyEvent{}
	}

	// One address, so one connection: dialing all of a's addresses can leave
	// two, and the push may then come over the other one.
	var loopback []ma.Multiaddr
	for _, addr := range a.Addrs() {
		if strings.HasPrefix(addr.String(), "/ip4/127.0.0.1/") {
			loopback = append(loopback, addr)
		}
	}
	if len(loopback) == 0 {
		t.Fatalf("no loopback address in %v", a.Addrs())
	}
	if err := b.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: loopback}); err != nil {
		t.Fatal(err)
	}
	first := next("identify", func(ev identifyEvent) bool { return ev.Remote == a.ID().String() })
	if first.ConnID == nil || slices.Contains(first.Protocols, "/meshgate/test/1.0.0") {
		t.Fatalf("first identify %+v", first)
	}

	a.SetStreamHandler("/meshgate/test/1.0.0", nil)
	pushed := next("identify", func(ev identifyEvent) bool { return slices.Contains(ev.Protocols, "/meshgate/test/1.0.0") })
	if pushed.ConnID == nil || *pushed.ConnID != *first.ConnID || !slices.IsSorted(pushed.Protocols) ||
		len(pushed.Protocols) != len(first.Protocols)+1 {
		t.Fatalf("pushed identify %+v (conn %v) after %+v (conn %v)", pushed, deref(pushed.ConnID), first, deref(first.ConnID))
	}
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// TestDropProtocol runs two full peers: drop_protocol on a makes b see an
// identify push for a without the protocol on the same connection.
func TestDropProtocol(t *testing.T) {
	a := startTestPeer(t, 30, "tcp")
	b := startTestPeer(t, 31, "tcp")
	listening := a.waitFor("listening", nil)
	var addr string
	for _, s := range strings_(listening["addrs"]) {
		if strings.HasPrefix(s, "/ip4/127.0.0.1/") {
			addr = s
		}
	}
	if addr == "" {
		t.Fatalf("no loopback listen address in %v", listening)
	}
	// Without a mode: dedup, the contract's default.
	b.send(fmt.Sprintf(`{"cmd":"dial","addr":"%s/p2p/%s"}`, addr, a.id))
	const dropped = "/meshsub/1.1.0"
	first := b.waitFor("identify", field("remote", a.id))
	before := strings_(first["protocols"])
	if !slices.Contains(before, dropped) {
		t.Fatalf("first identify lacks %s: %v", dropped, before)
	}

	a.send(`{"cmd":"drop_protocol","protocol":"` + dropped + `"}`)
	pushed := b.waitFor("identify", func(ev map[string]any) bool {
		return ev["remote"] == a.id && !slices.Contains(strings_(ev["protocols"]), dropped)
	})
	want := slices.DeleteFunc(slices.Clone(before), func(p string) bool { return p == dropped })
	if got := strings_(pushed["protocols"]); !slices.Equal(got, want) || pushed["conn_id"] != first["conn_id"] {
		t.Fatalf("pushed identify %v, want protocols %v on conn %v", pushed, want, first["conn_id"])
	}

	// Dropping it again is an error: a no longer has it.
	a.send(`{"cmd":"drop_protocol","protocol":"` + dropped + `"}`)
	if ev := a.waitFor("error", field("cmd", "drop_protocol")); !strings.Contains(ev["message"].(string), dropped) {
		t.Fatalf("second drop: %v", ev)
	}
	a.sendInvalid(`{"cmd":"drop_protocol"}`)
	a.waitFor("error", field("cmd", "drop_protocol"))

	// Nothing registers it again (pubsub sets its handlers once): no identify
	// for a that b reports before a's later subscription lists it.
	time.Sleep(500 * time.Millisecond)
	a.send(`{"cmd":"subscribe","topic":"meshgate"}`)
	b.waitFor("subscribed", func(ev map[string]any) bool { return ev["remote"] == a.id && ev["topic"] == "meshgate" })
	for i, ev := range b.seen {
		if ev["event"] == "identify" && ev["remote"] == a.id && slices.Contains(strings_(ev["protocols"]), dropped) && !b.used[i] {
			t.Fatalf("b saw %s again: %v", dropped, ev)
		}
	}
}
