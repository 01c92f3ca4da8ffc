package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// command is any stdin line; each command reads the fields it needs and
// unknown fields are ignored.
type command struct {
	Cmd string `json:"cmd"`
	// CmdID is unique within the case; every error or unsupported event that
	// answers the command carries it.
	CmdID string `json:"cmd_id"`
	Addr  string `json:"addr"`
	// Mode is dial's "dedup" (also when absent) or "new".
	Mode  string `json:"mode"`
	Topic string `json:"topic"`
	ID    string `json:"id"`
	Size  *int   `json:"size"`
	Peer  string `json:"peer"`
	Count *int   `json:"count"`
	// Protocol is drop_protocol's protocol id.
	Protocol string `json:"protocol"`
	// autonat_probe's fields.
	Server  string `json:"server"`
	Version string `json:"version"`
	Vanish  bool   `json:"vanish"`
}

// maxCommandLine bounds one stdin line; commands are small.
const maxCommandLine = 1 << 20

// readCommands handles stdin in order until `stop` or end of input.
func (p *Peer) readCommands(r io.Reader) {
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64*1024), maxCommandLine)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line == "" {
			continue
		}
		var cmd command
		if err := json.Unmarshal([]byte(line), &cmd); err != nil {
			// A field of the wrong type: still answer with the command's
			// name and cmd_id where they can be read.
			name, id := commandNames(line)
			p.out.Error(name, id, fmt.Errorf("bad command line: %w", err))
			continue
		}
		if cmd.Cmd == "stop" {
			return
		}
		if err := p.handle(cmd); err != nil {
			p.out.Error(cmd.Cmd, cmd.CmdID, err)
		}
	}
	if err := scanner.Err(); err != nil {
		p.out.Error("", "", fmt.Errorf("reading stdin: %w", err))
	}
}

// commandNames reads `cmd` and `cmd_id` of a line that is not a valid
// command, where they are strings; otherwise they are empty.
func commandNames(line string) (cmd, cmdID string) {
	var fields map[string]any
	if json.Unmarshal([]byte(line), &fields) != nil {
		return "", ""
	}
	cmd, _ = fields["cmd"].(string)
	cmdID, _ = fields["cmd_id"].(string)
	return cmd, cmdID
}

func (p *Peer) handle(cmd command) error {
	switch cmd.Cmd {
	case "dial":
		return p.dial(cmd)
	case "subscribe":
		if cmd.Topic == "" {
			return errors.New("subscribe needs a topic")
		}
		return p.gossip.subscribe(cmd.Topic)
	case "unsubscribe":
		if cmd.Topic == "" {
			return errors.New("unsubscribe needs a topic")
		}
		return p.gossip.unsubscribe(cmd.Topic)
	case "publish":
		return p.publish(cmd)
	case "disconnect":
		return p.disconnect(cmd.Peer)
	case "open_streams":
		return p.openStreams(cmd)
	case "drop_protocol":
		return p.dropProtocol(cmd.Protocol)
	case "request":
		return p.request(cmd)
	case "autonat_probe":
		return p.autonatProbe(cmd)
	case "":
		return errors.New("command has no cmd field")
	default:
		return fmt.Errorf("unknown command %q", cmd.Cmd)
	}
}

// dial starts a connection and returns at once: like a rust-libp2p dial, the
// outcome is a connection_opened event or an error event, and later commands
// do not wait for it.
func (p *Peer) dial(cmd command) error {
	switch cmd.Mode {
	case "dedup", "": // the contract's default
	case "new":
		// The swarm hands back any existing connection (bestAcceptableConnToPeer
		// in swarm_dial.go, even with WithForceDirectDial once it is direct), and
		// adopting a transport-dialed connection (Swarm.addConn) is not public.
		p.out.Unsupported(cmd.CmdID, "dial-mode-new",
			"go-libp2p's swarm reuses an existing connection to the peer and offers no public way to force another")
		return nil
	default:
		return fmt.Errorf("unknown dial mode %q", cmd.Mode)
	}
	info, err := peer.AddrInfoFromString(cmd.Addr)
	if err != nil {
		return err
	}
	done := p.conns.dialingTo(info.ID)
	go func() {
		defer done()
		// host.Connect does nothing when connected and joins a dial in progress.
		if err := p.host.Connect(p.ctx, *info); err != nil && p.ctx.Err() == nil {
			p.out.Error("dial", cmd.CmdID, err)
		}
	}()
	return nil
}

func (p *Peer) publish(cmd command) error {
	if cmd.Topic == "" || cmd.ID == "" || cmd.Size == nil {
		return errors.New("publish needs topic, id and size")
	}
	if *cmd.Size < 0 {
		return fmt.Errorf("publish size must not be negative, got %d", *cmd.Size)
	}
	size, err := p.gossip.publish(cmd.Topic, cmd.ID, *cmd.Size)
	if err != nil {
		return err
	}
	p.out.Emit("published", publishedEvent{Topic: cmd.Topic, ID: cmd.ID, Size: size})
	return nil
}

// disconnect closes every connection to one peer, or every connection.
func (p *Peer) disconnect(remote string) error {
	if remote != "" {
		id, err := peer.Decode(remote)
		if err != nil {
			return err
		}
		return p.host.Network().ClosePeer(id)
	}
	var errs []error
	for _, c := range p.host.Network().Conns() {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// dropProtocol stops supporting one protocol. RemoveStreamHandler emits
// EvtLocalProtocolsUpdated, on which go-libp2p's identify service pushes the
// shorter list to every connected peer. Nothing registers it again: pubsub
// sets its handlers once, in NewPubSub.
func (p *Peer) dropProtocol(id string) error {
	if id == "" {
		return errors.New("drop_protocol needs a protocol")
	}
	if !slices.Contains(p.host.Mux().Protocols(), protocol.ID(id)) {
		return fmt.Errorf("protocol %s is not supported", id)
	}
	p.host.RemoveStreamHandler(protocol.ID(id))
	return nil
}
