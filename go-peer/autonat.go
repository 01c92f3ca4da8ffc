package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/host/autonat"
	"github.com/libp2p/go-libp2p/p2p/host/autonat/pb"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"
	msmux "github.com/multiformats/go-multistream"
)

// AutoNAT roles of `config.autonat`.
const (
	roleServer = "server"
	roleClient = "client"
	roleBoth   = "both"
)

// Why go-libp2p cannot take the server roles, nor the v2 client, in a case
// network (every release v0.38 to v0.51): the contract's servers dial back
// private addresses, and the library has no public way to let them.
const (
	// p2p/host/autonat/dialpolicy.go: skipDial drops every address that is not
	// manet.IsPublicAddr unless dialPolicy.allowSelfDials, which no option sets
	// (only the package's own tests). Its MetricsTracer hooks
	// (OutgoingDialResponse, OutgoingDialRefused) do not name the client either.
	reasonV1Server = "go-libp2p's AutoNAT v1 service refuses to dial back private addresses (autonat/dialpolicy.go skipDial; allowSelfDials has no option) and reports no per-request outcome with the client's id"
	// p2p/protocol/autonatv2: allowPrivateAddrs (options.go) is unexported and
	// set only by the package's tests; server.go and the client skip every
	// address that is not manet.IsPublicAddr without it.
	reasonV2 = "go-libp2p's AutoNAT v2 accepts only public addresses (autonatv2 allowPrivateAddrs is unexported, set only by its tests)"
)

// checkSupported refuses the roles go-libp2p cannot do in a private network.
func (a *AutonatConfig) checkSupported() error {
	if a == nil {
		return nil
	}
	if a.V1 == roleServer || a.V1 == roleBoth {
		return &UnsupportedError{Feature: featureAutonatV1Server, Reason: reasonV1Server}
	}
	if a.V2 == roleServer || a.V2 == roleBoth {
		return &UnsupportedError{Feature: featureAutonatV2Server, Reason: reasonV2}
	}
	if a.V2 == roleClient {
		return &UnsupportedError{Feature: featureAutonatV2Client, Reason: reasonV2}
	}
	return nil
}

// asksV1 is whether this peer has the AutoNAT v1 client role.
func (c *Config) asksV1() bool {
	return c.Autonat != nil && (c.Autonat.V1 == roleClient || c.Autonat.V1 == roleBoth)
}

// autonatTimeout bounds one probe, as the library's own client does
// (autonat's streamTimeout, 60 s, is for the server's dial-back too).
const autonatTimeout = 60 * time.Second

// autonatProbe asks a server to dial this peer back (autonat.Client.DialBack)
// and reports the answer as `reachability`; with vanish, it sends the dial
// request and drops the connection without waiting (vanish).
func (p *Peer) autonatProbe(cmd command) error {
	if cmd.Server == "" || cmd.Version == "" {
		return errors.New("autonat_probe needs server and version")
	}
	switch cmd.Version {
	case "v1":
	case "v2":
		p.out.Unsupported(cmd.CmdID, featureAutonatV2Client, reasonV2)
		return nil
	default:
		return fmt.Errorf("unknown autonat version %q", cmd.Version)
	}
	if !p.cfg.asksV1() {
		return errors.New("autonat_probe v1 needs the autonat.v1 client role in the configuration")
	}
	server, err := p.knowPeer(cmd.Server, cmd.Addr)
	if err != nil {
		return err
	}
	go func() {
		ctx, cancel := context.WithTimeout(p.ctx, autonatTimeout)
		defer cancel()
		if cmd.Vanish {
			err = p.vanish(ctx, server)
		} else {
			err = p.dialBack(ctx, server)
		}
		if err != nil && p.ctx.Err() == nil {
			p.out.Error("autonat_probe", cmd.CmdID, err)
		}
	}()
	return nil
}

// knowPeer decodes a peer id and, with an address, adds it to the peerstore
// when the peer is not connected, so that the library's own dial finds it.
func (p *Peer) knowPeer(id, addr string) (peer.ID, error) {
	remote, err := peer.Decode(id)
	if err != nil {
		return "", err
	}
	if addr == "" {
		return remote, nil
	}
	a, err := ma.NewMultiaddr(addr)
	if err != nil {
		return "", err
	}
	if p.host.Network().Connectedness(remote) != network.Connected {
		p.host.Peerstore().AddAddr(remote, a, peerstore.TempAddrTTL)
	}
	return remote, nil
}

// dialBack is the library's v1 client: a DIAL with this host's addresses,
// then the server's DIAL_RESPONSE. OK is public, E_DIAL_ERROR private, and a
// refusal (or any other status) concludes nothing: unknown.
func (p *Peer) dialBack(ctx context.Context, server peer.ID) error {
	client := autonat.NewAutoNATClient(p.host, p.host.Addrs, nil)
	err := client.DialBack(ctx, server)
	var answer autonat.Error
	status := "public"
	switch {
	case err == nil:
	case errors.As(err, &answer) && answer.IsDialError():
		status = "private"
	case errors.As(err, &answer):
		status = "unknown"
	default:
		return err // no answer: the stream failed
	}
	// DialBack does not return the address the server reached.
	p.out.Emit("reachability", reachabilityEvent{Version: "v1", Status: status, Server: server.String()})
	return nil
}

// vanishSettle lets the muxer write the request before the connection is
// closed: go-yamux writes frames from its own send loop and drops the ones
// still queued when the session closes.
const vanishSettle = 10 * time.Millisecond

// vanish is a client that disappears mid-request (rust-libp2p#5570): it opens
// an AutoNAT v1 stream, writes a DIAL request as the library's client does
// (its pb types, length-delimited by pbio), and closes every connection to
// the server without reading the answer.
func (p *Peer) vanish(ctx context.Context, server peer.ID) error {
	s, err := p.host.Network().NewStream(ctx, server)
	if err != nil {
		return err
	}
	defer s.Reset() // after ClosePeer: frees the stream if anything failed before
	if deadline, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(deadline)
	}
	// Negotiated eagerly (as in hold.go), so the server's handler runs before
	// the connection goes.
	if err := msmux.SelectProtoOrFail(autonat.AutoNATProto, s); err != nil {
		return err
	}
	if err := pbio.NewDelimitedWriter(s).WriteMsg(dialRequest(p.host.ID(), p.host.Addrs())); err != nil {
		return err
	}
	_ = s.CloseWrite()
	time.Sleep(vanishSettle)
	return p.host.Network().ClosePeer(server)
}

// dialRequest is a v1 DIAL message, as autonat's newDialMessage (unexported) builds it.
func dialRequest(self peer.ID, addrs []ma.Multiaddr) *pb.Message {
	msg := &pb.Message{
		Type: pb.Message_DIAL.Enum(),
		Dial: &pb.Message_Dial{Peer: &pb.Message_PeerInfo{Id: []byte(self)}},
	}
	for _, a := range addrs {
		msg.Dial.Peer.Addrs = append(msg.Dial.Peer.Addrs, a.Bytes())
	}
	return msg
}
