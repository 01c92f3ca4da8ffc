//go:build !gopubsub_pre016

package main

import (
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// The peer hooks of go-libp2p-pubsub v0.16 and later. Older releases name them
// AddPeer and RemovePeer (compat_pubsub_pre016.go).

func (m *meshTracker) OnNewOutboundStream(peer.ID, protocol.ID) {}

// OnClosedOutboundStream is where the router forgets a peer.
func (m *meshTracker) OnClosedOutboundStream(p peer.ID) { m.forget(p) }
