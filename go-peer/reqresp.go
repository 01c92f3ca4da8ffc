package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// requestResponseProtocol is contract::config::REQUEST_RESPONSE_PROTOCOL. A
// request is the JSON of {"id","payload"} written as the whole stream up to
// the writer's half-close, the response likewise: rust-libp2p's `json` codec.
const requestResponseProtocol protocol.ID = "/meshgate/request-response/1.0.0"

// The json codec's limits (libp2p-request-response json.rs:
// request_size_maximum, response_size_maximum).
const (
	maxRequestSize  = 1 << 20
	maxResponseSize = 10 << 20
)

// requestTimeout bounds one request (and the responder's read of one): a
// stalled responder fails the request after it. A variable for the tests.
var requestTimeout = 30 * time.Second

// ResponderFailure values of `request_response.failure`.
const (
	failureDrop  = "drop"
	failureStall = "stall"
)

// wireMessage is a request or a response on the wire (contract::commands::Request / Response).
type wireMessage struct {
	ID      string `json:"id"`
	Payload string `json:"payload"`
}

// readMessage reads one message: the whole stream to the remote's half-close,
// at most limit bytes.
func readMessage(r io.Reader, limit int64) (wireMessage, error) {
	var m wireMessage
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return m, err
	}
	if int64(len(data)) > limit {
		return m, fmt.Errorf("message larger than %d bytes", limit)
	}
	err = json.Unmarshal(data, &m)
	return m, err
}

// writeMessage writes one message and half-closes, which ends it.
func writeMessage(s network.Stream, m wireMessage) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := s.Write(data); err != nil {
		return err
	}
	return s.CloseWrite()
}

// filler is size bytes of ASCII filler, a message's payload.
func filler(size int) string { return strings.Repeat(".", size) }

// responder answers requests as `config.request_response` says.
type responder struct {
	ctx context.Context
	cfg RequestResponseConfig
	out *Emitter
}

// serveRequests registers the request handler; one goroutine per stream (the host's).
func serveRequests(ctx context.Context, h interface {
	SetStreamHandler(protocol.ID, network.StreamHandler)
}, cfg *RequestResponseConfig, out *Emitter) {
	r := &responder{ctx: ctx, cfg: *cfg, out: out}
	h.SetStreamHandler(requestResponseProtocol, r.handle)
}

func (r *responder) handle(s network.Stream) {
	remote := s.Conn().RemotePeer().String()
	// The read is bounded, as rust-libp2p bounds its inbound streams.
	_ = s.SetReadDeadline(time.Now().Add(requestTimeout))
	req, err := readMessage(s, maxRequestSize)
	if err != nil {
		_ = s.Reset()
		return
	}
	_ = s.SetReadDeadline(time.Time{})
	r.out.Emit("request_received", requestEvent{Remote: remote, ID: req.ID, Size: len(req.Payload)})
	switch r.cfg.Failure {
	case failureDrop:
		_ = s.Reset()
		return
	case failureStall:
		// Held until the requester gives up (resets) or this peer stops.
		<-r.ctx.Done()
		_ = s.Reset()
		return
	}
	if r.cfg.ResponseDelayMs != nil {
		select {
		case <-time.After(time.Duration(*r.cfg.ResponseDelayMs) * time.Millisecond):
		case <-r.ctx.Done():
			_ = s.Reset()
			return
		}
	}
	size := len(req.Payload)
	if r.cfg.ResponseSize != nil {
		size = *r.cfg.ResponseSize
	}
	if err := writeMessage(s, wireMessage{ID: req.ID, Payload: filler(size)}); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// request sends one request in its own goroutine: request_sent at once (as
// the contract has it, before any dial), then response_received or request_failed.
func (p *Peer) request(cmd command) error {
	if cmd.Peer == "" || cmd.ID == "" || cmd.Size == nil {
		return fmt.Errorf("request needs peer, id and size")
	}
	if *cmd.Size < 0 || *cmd.Size > maxRequestSize {
		return fmt.Errorf("request size must be between 0 and %d, got %d", maxRequestSize, *cmd.Size)
	}
	if p.cfg.RequestResponse == nil {
		return fmt.Errorf("request needs request_response in the configuration")
	}
	remote, err := p.knowPeer(cmd.Peer, cmd.Addr)
	if err != nil {
		return err
	}
	req := wireMessage{ID: cmd.ID, Payload: filler(*cmd.Size)}
	sent := time.Now()
	p.out.Emit("request_sent", requestEvent{Remote: remote.String(), ID: req.ID, Size: len(req.Payload)})
	go func() {
		ctx, cancel := context.WithTimeout(p.ctx, requestTimeout)
		defer cancel()
		res, err := p.exchange(ctx, remote, req)
		if p.ctx.Err() != nil {
			return
		}
		if err != nil {
			p.out.Emit("request_failed", requestFailedEvent{Remote: remote.String(), ID: cmd.ID, Error: err.Error()})
			return
		}
		p.out.Emit("response_received", responseReceivedEvent{
			requestEvent: requestEvent{Remote: remote.String(), ID: res.ID, Size: len(res.Payload)},
			LatencyUs:    time.Since(sent).Microseconds(),
		})
	}()
	return nil
}

// exchange writes req on a new stream (host.NewStream dials when not
// connected), half-closes, and reads the response to EOF.
func (p *Peer) exchange(ctx context.Context, remote peer.ID, req wireMessage) (wireMessage, error) {
	s, err := p.host.NewStream(ctx, remote, requestResponseProtocol)
	if err != nil {
		return wireMessage{}, err
	}
	defer s.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(deadline)
	}
	if err := writeMessage(s, req); err != nil {
		_ = s.Reset()
		return wireMessage{}, err
	}
	res, err := readMessage(s, maxResponseSize)
	if err != nil {
		_ = s.Reset()
		return wireMessage{}, err
	}
	return res, nil
}
