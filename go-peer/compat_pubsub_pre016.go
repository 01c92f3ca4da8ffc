//go:build gopubsub_pre016

package main

import (
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// The peer hooks of go-libp2p-pubsub before v0.16, which renamed them
// OnNewOutboundStream and OnClosedOutboundStream (compat_pubsub.go).

func (m *meshTracker) AddPeer(peer.ID, protocol.ID) {}

// RemovePeer is where the router forgets a peer.
func (m *meshTracker) RemovePeer(p peer.ID) { m.forget(p) }
