package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// gossipParams applies the configured mesh degrees and heartbeat to the
// library defaults.
func gossipParams(g *GossipsubConfig) (pubsub.GossipSubParams, error) {
	p := pubsub.DefaultGossipSubParams()
	// Peer exchange must never dial: only the runner's `dial` opens connections.
	// Without connectors, PX records from a PRUNE are dropped.
	p.Connectors = 0
	p.MaxPendingConnections = 0
	if g == nil {
		return p, nil
	}
	if g.D != nil {
		p.D = *g.D
	}
	if g.DLo != nil {
		p.Dlo = *g.DLo
	}
	if g.DHi != nil {
		p.Dhi = *g.DHi
	}
	if g.HeartbeatMs != nil {
		p.HeartbeatInterval = time.Duration(*g.HeartbeatMs) * time.Millisecond
	}
	if !(p.Dlo <= p.D && p.D <= p.Dhi) {
		return p, fmt.Errorf("gossipsub degrees need d_lo <= d <= d_hi, got d_lo=%d d=%d d_hi=%d", p.Dlo, p.D, p.Dhi)
	}
	// The contract does not set D_out and D_score; the library requires
	// D_out < d_lo, D_out < d/2 and D_score <= d_hi, so shrink them with small meshes.
	p.Dscore = min(p.Dscore, p.Dhi)
	if p.D == 0 && p.Dlo == 0 && p.Dhi == 0 {
		p.Dout = 0 // the library's "no mesh" setting
		return p, nil
	}
	p.Dout = min(p.Dout, p.Dlo-1, p.D/2-1)
	if p.Dout < 0 {
		return p, &UnsupportedError{
			Feature: "gossipsub-mesh-degree",
			Reason:  fmt.Sprintf("go-libp2p-pubsub needs D_out >= 0 below d_lo and d/2, impossible with d_lo=%d d=%d", p.Dlo, p.D),
		}
	}
	return p, nil
}

// gossip owns the pubsub instance and the topics the peer has joined. Its
// topics map is used by the command goroutine only.
type gossip struct {
	ctx    context.Context
	ps     *pubsub.PubSub
	self   peer.ID
	out    *Emitter
	topics map[string]*joinedTopic
}

type joinedTopic struct {
	topic *pubsub.Topic
	sub   *pubsub.Subscription // nil while not subscribed
}

func newGossip(ctx context.Context, h host.Host, params pubsub.GossipSubParams, cfg *GossipsubConfig, tracer pubsub.RawTracer, out *Emitter) (*gossip, error) {
	opts := []pubsub.Option{
		pubsub.WithGossipSubParams(params),
		pubsub.WithRawTracer(tracer),
		// Strict signing and the default message id (source + seqno) are the
		// library defaults, as the contract requires.
	}
	if cfg != nil && cfg.MaxTransmitSize != nil {
		opts = append(opts, pubsub.WithMaxMessageSize(*cfg.MaxTransmitSize))
	}
	if cfg != nil && cfg.MessageID == messageIDContentSHA256 {
		opts = append(opts, pubsub.WithMessageIdFn(contentSHA256ID))
	}
	ps, err := pubsub.NewGossipSub(ctx, h, opts...)
	if err != nil {
		return nil, err
	}
	return &gossip{ctx: ctx, ps: ps, self: h.ID(), out: out, topics: make(map[string]*joinedTopic)}, nil
}

// contentSHA256ID is the `content-sha256` message id: the lowercase hex
// SHA-256 of the message data, as the rust peer computes it.
func contentSHA256ID(m *pb.Message) string {
	sum := sha256.Sum256(m.Data)
	return hex.EncodeToString(sum[:])
}

// join returns the topic handle, creating it on first use. go-libp2p-pubsub
// reports remote (un)subscriptions only for joined topics, so joining starts
// a watcher for them; joining alone does not subscribe.
func (g *gossip) join(name string) (*joinedTopic, error) {
	if jt, ok := g.topics[name]; ok {
		return jt, nil
	}
	t, err := g.ps.Join(name)
	if err != nil {
		return nil, err
	}
	handler, err := t.EventHandler()
	if err != nil {
		return nil, err
	}
	go g.watchPeers(name, handler)
	jt := &joinedTopic{topic: t}
	g.topics[name] = jt
	return jt, nil
}

// subscriptionBuffer is how many received messages wait for readMessages.
// go-libp2p-pubsub drops a message it cannot hand to a full subscription
// ("subscriber too slow"); at its default of 32, a burst of 50 publications on
// a busy host overflowed it while this peer wrote its events, and the runner
// saw messages missed that the network had delivered.
const subscriptionBuffer = 4096

func (g *gossip) subscribe(name string) error {
	jt, err := g.join(name)
	if err != nil {
		return err
	}
	if jt.sub != nil {
		return nil // already subscribed: nothing to announce
	}
	sub, err := jt.topic.Subscribe(pubsub.WithBufferSize(subscriptionBuffer))
	if err != nil {
		return err
	}
	jt.sub = sub
	go g.readMessages(name, sub)
	return nil
}

// unsubscribe cancels the subscription but keeps the topic joined, so remote
// subscription changes are still reported.
func (g *gossip) unsubscribe(name string) error {
	jt, ok := g.topics[name]
	if !ok || jt.sub == nil {
		return fmt.Errorf("not subscribed to %q", name)
	}
	jt.sub.Cancel()
	jt.sub = nil
	return nil
}

// publish sends one payload and returns its length.
func (g *gossip) publish(name, id string, size int) (int, error) {
	jt, err := g.join(name)
	if err != nil {
		return 0, err
	}
	data, err := encodePayload(id, time.Now().UnixMicro(), size)
	if err != nil {
		return 0, err
	}
	if err := jt.topic.Publish(g.ctx, data); err != nil {
		return 0, err
	}
	return len(data), nil
}

// watchPeers turns the topic's peer events into subscribed/unsubscribed.
func (g *gossip) watchPeers(name string, handler *pubsub.TopicEventHandler) {
	defer handler.Cancel()
	for {
		ev, err := handler.NextPeerEvent(g.ctx)
		if err != nil {
			return // the peer is stopping
		}
		kind := "subscribed"
		if ev.Type == pubsub.PeerLeave {
			kind = "unsubscribed"
		}
		g.out.Emit(kind, subscriptionEvent{Remote: ev.Peer.String(), Topic: name})
	}
}

// readMessages reports deliveries until the subscription is cancelled.
func (g *gossip) readMessages(name string, sub *pubsub.Subscription) {
	for {
		msg, err := sub.Next(g.ctx)
		if err != nil {
			if !errors.Is(err, pubsub.ErrSubscriptionCancelled) && g.ctx.Err() == nil {
				g.out.Error("", "", fmt.Errorf("topic %s: %w", name, err))
			}
			return
		}
		// go-libp2p-pubsub delivers our own publications too; `message` is for
		// remote deliveries only.
		if msg.ReceivedFrom == g.self {
			continue
		}
		hdr, err := decodePayload(msg.Data)
		if err != nil {
			g.out.Error("", "", fmt.Errorf("message on %s from %s: %w", name, msg.GetFrom(), err))
			continue
		}
		g.out.Emit("message", messageEvent{
			Topic:  name,
			ID:     hdr.ID,
			Source: msg.GetFrom().String(),
			From:   msg.ReceivedFrom.String(),
			Size:   len(msg.Data),
			SentUs: hdr.SentUs,
		})
	}
}
