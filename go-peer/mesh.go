package main

import (
	"context"
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// meshTracker mirrors gossipsub's local mesh from its raw tracer calls. The
// mesh is not the set of subscribers (ListPeers), and the router keeps it
// private, so Graft/Prune and peer removal are the only faithful source.
//
// The router calls the tracer synchronously from its event loop; the tracker
// only updates its copy and queues the new mesh, and a separate goroutine
// (run) writes the events.
type meshTracker struct {
	ctx     context.Context
	mu      sync.Mutex
	meshes  map[string]map[peer.ID]struct{}
	updates chan meshEvent
}

var _ pubsub.RawTracer = (*meshTracker)(nil)

func newMeshTracker(ctx context.Context) *meshTracker {
	return &meshTracker{
		ctx:     ctx,
		meshes:  make(map[string]map[peer.ID]struct{}),
		updates: make(chan meshEvent, 4096),
	}
}

// run emits queued mesh changes until the tracker's context ends.
func (m *meshTracker) run(out *Emitter) {
	for {
		select {
		case ev := <-m.updates:
			out.Emit("mesh", ev)
		case <-m.ctx.Done():
			return
		}
	}
}

// changed queues the whole current mesh of topic; m.mu must be held.
func (m *meshTracker) changed(topic string) {
	peers := make([]string, 0, len(m.meshes[topic]))
	for p := range m.meshes[topic] {
		peers = append(peers, p.String())
	}
	slices.Sort(peers)
	// Never block the router once the peer is shutting down.
	select {
	case m.updates <- meshEvent{Topic: topic, Peers: peers}:
	case <-m.ctx.Done():
	}
}

func (m *meshTracker) Graft(p peer.ID, topic string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mesh, ok := m.meshes[topic]
	if !ok {
		mesh = make(map[peer.ID]struct{})
		m.meshes[topic] = mesh
	}
	if _, in := mesh[p]; in {
		return
	}
	mesh[p] = struct{}{}
	m.changed(topic)
}

func (m *meshTracker) Prune(p peer.ID, topic string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, in := m.meshes[topic][p]; !in {
		return
	}
	delete(m.meshes[topic], p)
	m.changed(topic)
}

// forget drops a peer the router forgot from every mesh: the router does so
// without a Prune call. The tracer hook that calls it is OnClosedOutboundStream
// (compat_pubsub.go), RemovePeer before go-libp2p-pubsub v0.16 (compat_pubsub_pre016.go).
func (m *meshTracker) forget(p peer.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	topics := make([]string, 0, len(m.meshes))
	for topic, mesh := range m.meshes {
		if _, in := mesh[p]; in {
			delete(mesh, p)
			topics = append(topics, topic)
		}
	}
	slices.Sort(topics)
	for _, topic := range topics {
		m.changed(topic)
	}
}

// Leave comes before the router prunes every mesh peer of the topic, and
// each Prune reports the shrinking mesh.
func (m *meshTracker) Leave(string) {}

// The remaining tracer hooks carry nothing about the mesh.

func (m *meshTracker) Join(string)                           {}
func (m *meshTracker) ValidateMessage(*pubsub.Message)       {}
func (m *meshTracker) DeliverMessage(*pubsub.Message)        {}
func (m *meshTracker) RejectMessage(*pubsub.Message, string) {}
func (m *meshTracker) DuplicateMessage(*pubsub.Message)      {}
func (m *meshTracker) ThrottlePeer(peer.ID)                  {}
func (m *meshTracker) RecvRPC(*pubsub.RPC)                   {}
func (m *meshTracker) SendRPC(*pubsub.RPC, peer.ID)          {}
func (m *meshTracker) DropRPC(*pubsub.RPC, peer.ID)          {}
func (m *meshTracker) UndeliverableMessage(*pubsub.Message)  {}

// SendRPCCompleted is a hook of go-libp2p-pubsub v0.19 and later; older releases never call it.
func (m *meshTracker) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
