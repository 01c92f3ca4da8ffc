package main

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// listenAddr is the one address the configured transport listens on.
func listenAddr(cfg *Config) string {
	if cfg.Transport == "quic-v1" {
		return fmt.Sprintf("/ip4/0.0.0.0/udp/%d/quic-v1", *cfg.ListenPort)
	}
	return fmt.Sprintf("/ip4/0.0.0.0/tcp/%d", *cfg.ListenPort)
}

// hostOptions enables exactly what the configuration names, and switches off
// everything that would trim connections, limit resources or dial on its own:
// the runner must see the library's protocol behaviour, not its policies.
func hostOptions(cfg *Config, priv crypto.PrivKey, out *Emitter) ([]libp2p.Option, error) {
	limiter := rcmgr.NewFixedLimiter(rcmgr.InfiniteLimits)
	rm, err := rcmgr.NewResourceManager(limiter)
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}

	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings(listenAddr(cfg)),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(connmgr.NullConnMgr{}),
		libp2p.DisableRelay(),
		// A static reachability stops the AutoNAT client from probing peers.
		libp2p.ForceReachabilityPrivate(),
		// Black-hole detection could refuse dials the runner asked for.
		libp2p.UDPBlackHoleSuccessCounter(nil),
		libp2p.IPv6BlackHoleSuccessCounter(nil),
		libp2p.DisableMetrics(),
		libp2p.Ping(true),
		// The default agent is this module's path and version, which a
		// -trimpath build leaves empty; name the library instead.
		libp2p.UserAgent(userAgent()),
	}

	switch cfg.Transport {
	case "tcp":
		opts = append(opts, libp2p.Transport(tcp.NewTCPTransport))
		// The order of Security options is the order of preference: a dialer
		// proposes them in it, a listener takes the first proposal it has.
		for _, security := range cfg.securityOffers() {
			switch security {
			case "noise":
				opts = append(opts, libp2p.Security(noise.ID, noise.New))
			case "tls":
				opts = append(opts, libp2p.Security(libp2ptls.ID, libp2ptls.New))
			}
		}
	case "quic-v1":
		opts = append(opts, libp2p.Transport(libp2pquic.NewTransport))
		// QUIC secures itself with TLS 1.3 and never uses the upgrader; naming
		// TLS here only keeps go-libp2p from adding its default security list.
		opts = append(opts, libp2p.Security(libp2ptls.ID, libp2ptls.New))
	}
	// yamux is the only muxer left in go-libp2p (checkSupported rejects mplex
	// in any offer), so the muxer preference is yamux alone.
	opts = append(opts, libp2p.Muxer(yamux.ID, yamux.DefaultTransport))
	if m := cfg.PortMapping; m != nil {
		// libp2p.NATPortMap() is NATManager(basichost.NewNATManager); this
		// constructor wraps that one (a second NATManager option is refused).
		deadline := defaultMappingDeadline
		if m.DeadlineMs != nil {
			deadline = time.Duration(*m.DeadlineMs) * time.Millisecond
		}
		opts = append(opts, libp2p.NATManager(natManagerFor(out, deadline)))
	}
	return opts, nil
}

func buildHost(cfg *Config, priv crypto.PrivKey, out *Emitter) (host.Host, error) {
	opts, err := hostOptions(cfg, priv, out)
	if err != nil {
		return nil, err
	}
	return libp2p.New(opts...)
}
