package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"
)

// holdProtocol carries streams that are opened and then held open, so that
// stream counts rise (docs/peer-contract.md, `open_streams`).
const holdProtocol protocol.ID = "/meshgate/hold/1.0.0"

// acceptHeldStreams registers the handler that holds every inbound hold
// stream open until the remote ends it.
func acceptHeldStreams(h host.Host) {
	h.SetStreamHandler(holdProtocol, holdStream)
}

// holdStream reads (and discards) until the remote closes or resets the
// stream, and only then ends its own side: the peer never closes first.
func holdStream(s network.Stream) {
	if _, err := io.Copy(io.Discard, s); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// openStreamsArgs checks an `open_streams` command.
func openStreamsArgs(cmd command) (peer.ID, int, error) {
	if cmd.Peer == "" || cmd.Count == nil {
		return "", 0, errors.New("open_streams needs peer and count")
	}
	if *cmd.Count < 0 {
		return "", 0, fmt.Errorf("open_streams count must not be negative, got %d", *cmd.Count)
	}
	id, err := peer.Decode(cmd.Peer)
	if err != nil {
		return "", 0, err
	}
	return id, *cmd.Count, nil
}

// openStreams opens count hold streams to a connected peer in the background
// and holds each open until the peer stops. Failures are reported once per
// distinct error text, with how many streams failed that way.
//
// The streams are opened with Network().NewStream and negotiated eagerly:
// host.NewStream negotiates lazily, on the first write, once identify has
// listed the protocol, and a stream that writes nothing would then never
// finish negotiating (the remote resets it after its negotiation timeout).
func (p *Peer) openStreams(cmd command) error {
	id, count, err := openStreamsArgs(cmd)
	if err != nil {
		return err
	}
	if p.host.Network().Connectedness(id) != network.Connected {
		return fmt.Errorf("not connected to %s", id)
	}
	go func() {
		failures := make(map[string]int)
		for range count {
			if err := p.openHeldStream(id); err != nil {
				if p.ctx.Err() != nil {
					return
				}
				failures[err.Error()]++
			}
		}
		texts := make([]string, 0, len(failures))
		for text := range failures {
			texts = append(texts, text)
		}
		sort.Strings(texts)
		for _, text := range texts {
			p.out.Error("open_streams", cmd.CmdID, fmt.Errorf("%s (%d of %d streams)", text, failures[text], count))
		}
	}()
	return nil
}

// negotiationTimeout bounds opening and negotiating one stream, as
// go-libp2p's host bounds its own (DefaultNegotiationTimeout).
const negotiationTimeout = 10 * time.Second

func (p *Peer) openHeldStream(id peer.ID) error {
	ctx, cancel := context.WithTimeout(p.ctx, negotiationTimeout)
	defer cancel()
	s, err := p.host.Network().NewStream(network.WithNoDial(ctx, "open_streams"), id)
	if err != nil {
		return err
	}
	// SelectProtoOrFail does not watch the context: a deadline bounds it.
	if deadline, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(deadline)
	}
	if err := msmux.SelectProtoOrFail(holdProtocol, s); err != nil {
		_ = s.Reset()
		return err
	}
	_ = s.SetDeadline(time.Time{})
	if err := s.SetProtocol(holdProtocol); err != nil {
		_ = s.Reset()
		return err
	}
	go holdStream(s)
	return nil
}
