package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/libp2p/go-libp2p-pubsub/pb"
)

func TestParseConfigGood(t *testing.T) {
	cfg, err := parseConfig(`{"seed":3,"listen_port":4001,"transport":"tcp","security":"noise","muxer":"yamux",
		"gossipsub":{"topics":["meshgate"],"d":6,"d_lo":5,"d_hi":12,"heartbeat_ms":700,"max_transmit_size":1048576},
		"streams_interval_ms":250,"future_field":true}`)
	if err != nil {
		t.Fatal(err)
	}
	if *cfg.Seed != 3 || *cfg.ListenPort != 4001 || cfg.Transport != "tcp" || cfg.Security != "noise" || cfg.Muxer != "yamux" {
		t.Fatalf("unexpected config %+v", cfg)
	}
	if got := cfg.streamsInterval(); got != 250*time.Millisecond {
		t.Fatalf("streams interval %v", got)
	}
	if got := cfg.topics(); len(got) != 1 || got[0] != "meshgate" {
		t.Fatalf("topics %v", got)
	}
	if got := listenAddr(cfg); got != "/ip4/0.0.0.0/tcp/4001" {
		t.Fatalf("listen addr %s", got)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := parseConfig(`{"seed":18446744073709551615,"listen_port":4001,"transport":"quic-v1"}`)
	if err != nil {
		t.Fatal(err)
	}
	if *cfg.Seed != 1<<64-1 {
		t.Fatalf("seed %d", *cfg.Seed)
	}
	if cfg.streamsInterval() != time.Second || cfg.topics() != nil {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	if got := listenAddr(cfg); got != "/ip4/0.0.0.0/udp/4001/quic-v1" {
		t.Fatalf("listen addr %s", got)
	}
}

func TestParseConfigBad(t *testing.T) {
	for _, tc := range []struct{ name, raw, want string }{
		{"empty", ``, "not set"},
		{"not json", `{"seed":`, "parsing"},
		{"negative seed", `{"seed":-1,"listen_port":1,"transport":"tcp","security":"noise","muxer":"yamux"}`, "parsing"},
		{"no seed", `{"listen_port":1,"transport":"tcp","security":"noise","muxer":"yamux"}`, "seed"},
		{"no port", `{"seed":1,"transport":"tcp","security":"noise","muxer":"yamux"}`, "listen_port"},
		{"port range", `{"seed":1,"listen_port":70000,"transport":"tcp","security":"noise","muxer":"yamux"}`, "out of range"},
		{"transport", `{"seed":1,"listen_port":1,"transport":"ws","security":"noise","muxer":"yamux"}`, "unknown transport"},
		{"security", `{"seed":1,"listen_port":1,"transport":"tcp","security":"plaintext","muxer":"yamux"}`, "unknown security"},
		{"muxer", `{"seed":1,"listen_port":1,"transport":"tcp","security":"noise","muxer":"spdy"}`, "unknown muxer"},
		{"tcp needs security", `{"seed":1,"listen_port":1,"transport":"tcp","muxer":"yamux"}`, "security is required"},
		{"interval", `{"seed":1,"listen_port":1,"transport":"quic-v1","streams_interval_ms":0}`, "streams_interval_ms"},
		{"heartbeat", `{"seed":1,"listen_port":1,"transport":"quic-v1","gossipsub":{"heartbeat_ms":0}}`, "heartbeat_ms"},
		{"negative d", `{"seed":1,"listen_port":1,"transport":"quic-v1","gossipsub":{"d":-1}}`, "gossipsub.d"},
		{"type", `{"seed":"1","listen_port":1,"transport":"quic-v1"}`, "parsing"},
		{"message_id", `{"seed":1,"listen_port":1,"transport":"quic-v1","gossipsub":{"message_id":"sha1"}}`, "gossipsub.message_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.raw)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestParseConfigMessageID(t *testing.T) {
	for raw, want := range map[string]string{
		`{}`:                              "",
		`{"message_id":"default"}`:        messageIDDefault,
		`{"message_id":"content-sha256"}`: messageIDContentSHA256,
	} {
		cfg, err := parseConfig(`{"seed":1,"listen_port":1,"transport":"quic-v1","gossipsub":` + raw + `}`)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if cfg.Gossipsub.MessageID != want {
			t.Fatalf("%s: message_id %q, want %q", raw, cfg.Gossipsub.MessageID, want)
		}
	}
	// The id both implementations must agree on: lowercase hex SHA-256 of the data.
	if got := contentSHA256ID(&pb.Message{Data: []byte("abc")}); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("content-sha256 id %s", got)
	}
}

func TestParseConfigOffer(t *testing.T) {
	cfg, err := parseConfig(`{"seed":1,"listen_port":1,"transport":"tcp","security":"tls","muxer":"yamux",
		"offer":{"security":["tls","noise"],"muxer":["yamux"]}}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.securityOffers(); !slices.Equal(got, []string{"tls", "noise"}) {
		t.Fatalf("security offers %v", got)
	}
	if got := cfg.muxerOffers(); !slices.Equal(got, []string{"yamux"}) {
		t.Fatalf("muxer offers %v", got)
	}
	// Either list may be absent; the single value stands in for it. With an
	// offer, the single value may be absent too.
	cfg, err = parseConfig(`{"seed":1,"listen_port":1,"transport":"tcp","muxer":"yamux","offer":{"security":["noise","tls"]}}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.securityOffers(); !slices.Equal(got, []string{"noise", "tls"}) {
		t.Fatalf("security offers %v", got)
	}
	if got := cfg.muxerOffers(); !slices.Equal(got, []string{"yamux"}) {
		t.Fatalf("muxer offers %v", got)
	}
	cfg, err = parseConfig(`{"seed":1,"listen_port":1,"transport":"tcp","security":"noise","muxer":"yamux"}`)
	if err != nil || !slices.Equal(cfg.securityOffers(), []string{"noise"}) || !slices.Equal(cfg.muxerOffers(), []string{"yamux"}) {
		t.Fatalf("without offer: %v %v", cfg, err)
	}
	for _, tc := range []struct{ name, offer, want string }{
		{"unknown security", `{"security":["noise","plaintext"]}`, "unknown offer.security"},
		{"unknown muxer", `{"muxer":["spdy"]}`, "unknown offer.muxer"},
		{"empty", `{"security":[]}`, "must not be empty"},
		{"twice", `{"security":["tls","tls"]}`, "twice"},
		{"not a list", `{"security":"tls"}`, "parsing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(`{"seed":1,"listen_port":1,"transport":"tcp","security":"tls","muxer":"yamux","offer":` + tc.offer + `}`)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
	// mplex anywhere in the muxer offer cannot be honoured; over QUIC it is ignored.
	cfg, err = parseConfig(`{"seed":1,"listen_port":1,"transport":"tcp","security":"tls","muxer":"yamux","offer":{"muxer":["yamux","mplex"]}}`)
	if err != nil {
		t.Fatal(err)
	}
	var unsupported *UnsupportedError
	if err := cfg.checkSupported(); !errors.As(err, &unsupported) || unsupported.Feature != "muxer-mplex" {
		t.Fatalf("want muxer-mplex unsupported, got %v", err)
	}
	cfg.Transport = "quic-v1"
	if err := cfg.checkSupported(); err != nil {
		t.Fatalf("quic ignores the offer, got %v", err)
	}
}

func TestMplexUnsupportedOnlyOnTCP(t *testing.T) {
	cfg, err := parseConfig(`{"seed":1,"listen_port":1,"transport":"tcp","security":"tls","muxer":"mplex"}`)
	if err != nil {
		t.Fatal(err)
	}
	var unsupported *UnsupportedError
	if err := cfg.checkSupported(); !errors.As(err, &unsupported) || unsupported.Feature != "muxer-mplex" {
		t.Fatalf("want muxer-mplex unsupported, got %v", err)
	}
	cfg.Transport = "quic-v1"
	if err := cfg.checkSupported(); err != nil {
		t.Fatalf("quic ignores the muxer, got %v", err)
	}
}

func intp(v int) *int { return &v }

func TestGossipParams(t *testing.T) {
	p, err := gossipParams(&GossipsubConfig{D: intp(3), DLo: intp(2), DHi: intp(4), HeartbeatMs: intp(150)})
	if err != nil {
		t.Fatal(err)
	}
	if p.D != 3 || p.Dlo != 2 || p.Dhi != 4 || p.HeartbeatInterval != 150*time.Millisecond {
		t.Fatalf("params not applied: %+v", p)
	}
	if p.Dout != 0 || p.Dscore != 4 || p.Connectors != 0 {
		t.Fatalf("derived params wrong: Dout=%d Dscore=%d Connectors=%d", p.Dout, p.Dscore, p.Connectors)
	}

	p, err = gossipParams(nil)
	if err != nil || p.D != 6 || p.Dlo != 5 || p.Dhi != 12 || p.Dout != 2 {
		t.Fatalf("library defaults changed: %+v %v", p, err)
	}

	if _, err := gossipParams(&GossipsubConfig{D: intp(3)}); err == nil || !strings.Contains(err.Error(), "d_lo <= d <= d_hi") {
		t.Fatalf("want degree order error, got %v", err)
	}

	var unsupported *UnsupportedError
	if _, err := gossipParams(&GossipsubConfig{D: intp(1), DLo: intp(1), DHi: intp(1)}); !errors.As(err, &unsupported) {
		t.Fatalf("want unsupported for d=1, got %v", err)
	}
}
