package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Exit statuses of docs/peer-contract.md §4.
const (
	exitOK          = 0
	exitFailure     = 1
	exitConfig      = 2
	exitUnsupported = 3
)

// Peer is one running go-libp2p host driven by the contract.
type Peer struct {
	cfg    *Config
	ctx    context.Context
	host   host.Host
	gossip *gossip
	conns  *connTracker
	out    *Emitter
}

// run is the whole peer: it reads the configuration, builds the host, serves
// commands from stdin (or the control port's connection) until `stop` or end
// of input, and returns the exit status.
func run(rawConfig string, stdin io.Reader, stdout io.Writer, stderr io.Writer) int {
	cfg, err := parseConfig(rawConfig)
	if err != nil {
		fmt.Fprintln(stderr, "configuration error:", err)
		return exitConfig
	}
	// With a control port, its one connection is stdin and stdout from here on.
	if cfg.ControlPort != nil {
		conn, err := acceptController(*cfg.ControlPort, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "control port:", err)
			return exitFailure
		}
		defer conn.Close()
		stdin, stdout = conn, conn
	} else if cfg.EventsPath != nil {
		// Opened, not created: the runner made the pipe and holds its reading end.
		events, err := os.OpenFile(*cfg.EventsPath, os.O_WRONLY, 0)
		if err != nil {
			fmt.Fprintln(stderr, "events_path:", err)
			return exitFailure
		}
		defer events.Close()
		stdout = events
	}
	priv, err := identityFromSeed(*cfg.Seed)
	if err != nil {
		fmt.Fprintln(stderr, "identity:", err)
		return exitFailure
	}
	self, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		fmt.Fprintln(stderr, "identity:", err)
		return exitFailure
	}
	out := newEmitter(stdout, self.String())

	// Required features come first: the runner asks for them to learn, before
	// anything else runs, whether this peer can take part at all.
	if missing := cfg.missingFeatures(); len(missing) > 0 {
		for _, u := range missing {
			fmt.Fprintln(stderr, "unsupported:", u)
			out.Unsupported("", u.Feature, u.Reason)
		}
		return exitUnsupported
	}

	params, err := gossipParams(cfg.Gossipsub)
	if err == nil {
		err = cfg.checkSupported()
	}
	var unsupported *UnsupportedError
	switch {
	case errors.As(err, &unsupported):
		fmt.Fprintln(stderr, "unsupported:", unsupported)
		out.Unsupported("", unsupported.Feature, unsupported.Reason)
		return exitUnsupported
	case err != nil:
		fmt.Fprintln(stderr, "configuration error:", err)
		return exitConfig
	}

	h, err := buildHost(cfg, priv, out)
	if err != nil {
		fmt.Fprintln(stderr, "building host:", err)
		return exitFailure
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Subscribe before `started` so no identify result is lost; the events
	// are read only once `started` is out.
	busSub, err := h.EventBus().Subscribe(busEvents)
	if err != nil {
		fmt.Fprintln(stderr, "event bus:", err)
		h.Close()
		return exitFailure
	}
	defer busSub.Close()

	// Gossipsub registers its protocols before `started`, so the first
	// identify a remote gets already lists them. The tracker queues mesh
	// changes until its writer starts below.
	mesh := newMeshTracker(ctx)
	g, err := newGossip(ctx, h, params, cfg.Gossipsub, mesh, out)
	if err != nil {
		fmt.Fprintln(stderr, "gossipsub:", err)
		h.Close()
		return exitFailure
	}

	// Like gossipsub's, the hold protocol is listed in the first identify.
	acceptHeldStreams(h)
	if cfg.RequestResponse != nil {
		serveRequests(ctx, h, cfg.RequestResponse, out)
	}

	out.Emit("started", startedEvent{
		Implementation:  "go-libp2p",
		Versions:        libraryVersions(),
		Features:        supportedFeatures(),
		ContractVersion: contractVersion,
	})

	conns := newConnTracker(out)
	h.Network().Notify(conns.notifiee())
	// A connection accepted before Notify is announced here; the tracker
	// ignores one it has already announced.
	for _, c := range h.Network().Conns() {
		conns.opened(c)
	}

	go mesh.run(out)
	// Joining the configured topics (not subscribing) lets remote
	// subscriptions be reported from the start.
	for _, t := range cfg.topics() {
		if _, err := g.join(t); err != nil {
			out.Error("", "", fmt.Errorf("joining topic %s: %w", t, err))
		}
	}

	go watchBus(ctx, h, busSub, out)
	go sampleStreams(ctx, conns, out, cfg.streamsInterval())

	p := &Peer{cfg: cfg, ctx: ctx, host: h, gossip: g, conns: conns, out: out}
	p.readCommands(stdin)

	// Stop: end pubsub and the watchers, then close every connection (each
	// reported as connection_closed), and only then write `stopped`.
	cancel()
	if err := h.Close(); err != nil {
		fmt.Fprintln(stderr, "closing host:", err)
	}
	out.Emit("stopped", nil)
	out.Close()
	return exitOK
}
