package main

import (
	"context"
	"slices"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"
)

// busEvents are the event-bus events the peer reports. Identify is complete
// for the first exchange and for every push: go-libp2p emits
// EvtPeerIdentificationCompleted for both, with the connection and the full
// protocol list of the message, so EvtPeerProtocolsUpdated (a diff) is not needed.
var busEvents = []any{
	new(event.EvtPeerIdentificationCompleted),
	new(event.EvtLocalAddressesUpdated),
}

// watchBus reports identify results and listen address changes until ctx ends.
func watchBus(ctx context.Context, h host.Host, sub event.Subscription, out *Emitter) {
	listening := reportListening(h, out, nil)
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			switch ev := e.(type) {
			case event.EvtPeerIdentificationCompleted:
				out.Emit("identify", identifyFields(ev))
			case event.EvtLocalAddressesUpdated:
				listening = reportListening(h, out, listening)
			}
		}
	}
}

// reportListening emits `listening` when the interface listen addresses
// differ from last, and returns the current set. The 0.0.0.0 listener is
// expanded to the interface addresses, which are what a remote can dial.
func reportListening(h host.Host, out *Emitter, last []string) []string {
	addrs, err := h.Network().InterfaceListenAddresses()
	if err != nil {
		out.Error("", "", err)
		return last
	}
	current := multiaddrStrings(addrs)
	slices.Sort(current)
	if last != nil && slices.Equal(current, last) {
		return last
	}
	out.Emit("listening", listeningEvent{Addrs: current})
	return current
}

func identifyFields(ev event.EvtPeerIdentificationCompleted) identifyEvent {
	protocols := make([]string, 0, len(ev.Protocols))
	for _, p := range ev.Protocols {
		protocols = append(protocols, string(p))
	}
	slices.Sort(protocols)
	fields := identifyEvent{
		Remote:          ev.Peer.String(),
		AgentVersion:    ev.AgentVersion,
		ProtocolVersion: ev.ProtocolVersion,
		Protocols:       protocols,
		ListenAddrs:     multiaddrStrings(ev.ListenAddrs),
	}
	if ev.Conn != nil {
		id := ev.Conn.ID()
		fields.ConnID = &id
	}
	return fields
}

func multiaddrStrings(addrs []ma.Multiaddr) []string {
	s := make([]string, 0, len(addrs))
	for _, a := range addrs {
		s = append(s, a.String())
	}
	return s
}
