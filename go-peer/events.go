package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Emitter serializes events onto stdout, one JSON line each. Every goroutine
// writes through it, so lines never interleave.
type Emitter struct {
	mu     sync.Mutex
	w      io.Writer
	peer   string
	closed bool
}

func newEmitter(w io.Writer, peer string) *Emitter {
	return &Emitter{w: w, peer: peer}
}

type eventHeader struct {
	TS    int64  `json:"ts"`
	Peer  string `json:"peer"`
	Event string `json:"event"`
}

// Emit writes the header fields followed by the fields of body, a struct (or
// nil). Events after Close are dropped: `stopped` must be the last line.
func (e *Emitter) Emit(name string, body any) {
	line, err := encodeEvent(eventHeader{TS: time.Now().UnixMicro(), Peer: e.peer, Event: name}, body)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot encode %s event: %v\n", name, err)
		return
	}
	line = append(line, '\n')

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	if _, err := e.w.Write(line); err != nil {
		fmt.Fprintf(os.Stderr, "cannot write %s event: %v\n", name, err)
	}
}

// encodeEvent is one event line without its newline: the header fields, then
// those of body (a struct, or nil).
func encodeEvent(header eventHeader, body any) ([]byte, error) {
	line, err := json.Marshal(header)
	if err != nil || body == nil {
		return line, err
	}
	fields, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	// Splice `{"a":1}` into the header object, unless it has no fields.
	if len(fields) > 2 {
		line = append(line[:len(line)-1], ',')
		line = append(line, fields[1:]...)
	}
	return line, nil
}

// Close emits nothing further.
func (e *Emitter) Close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
}

// Error reports a failed command (cmd non-empty, with the command's cmd_id
// when it had one) or an event that could not be handled (both empty: null).
func (e *Emitter) Error(cmd, cmdID string, err error) {
	e.Emit("error", errorEvent{Cmd: nullable(cmd), CmdID: nullable(cmdID), Message: err.Error()})
}

// Unsupported reports a feature this peer cannot do, answering the command
// cmdID (empty: at start, null).
func (e *Emitter) Unsupported(cmdID, feature, reason string) {
	e.Emit("unsupported", unsupportedEvent{Feature: feature, Reason: reason, CmdID: nullable(cmdID)})
}

// nullable is nil for the empty string, so that it is written as null.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// The event bodies of docs/peer-contract.md §3; the header is added by Emit.

// contractVersion is the revision of the peer contract this peer speaks
// (contract::VERSION of contract/src/lib.rs), said in `started`.
const contractVersion = 2

type startedEvent struct {
	Implementation string            `json:"implementation"`
	Versions       map[string]string `json:"versions"`
	// Features are the optional features this build can do, sorted (features.go).
	Features        []string `json:"features"`
	ContractVersion int      `json:"contract_version"`
}

type listeningEvent struct {
	Addrs []string `json:"addrs"`
}

type connectionEvent struct {
	Remote     string `json:"remote"`
	ConnID     string `json:"conn_id"`
	Direction  string `json:"direction"`
	RemoteAddr string `json:"remote_addr"`
}

type connectionOpenedEvent struct {
	connectionEvent
	// What the connection negotiated, in the configuration's spelling
	// (noise, tls; yamux, mplex; QUIC: tls and quic-v1), else the protocol id.
	Security string `json:"security"`
	Muxer    string `json:"muxer"`
}

type connectionClosedEvent struct {
	connectionEvent
	// go-libp2p does not tell why a connection closed, so this stays null.
	Reason *string `json:"reason"`
}

type identifyEvent struct {
	Remote          string   `json:"remote"`
	ConnID          *string  `json:"conn_id"`
	AgentVersion    string   `json:"agent_version"`
	ProtocolVersion string   `json:"protocol_version"`
	Protocols       []string `json:"protocols"`
	ListenAddrs     []string `json:"listen_addrs"`
}

type subscriptionEvent struct {
	Remote string `json:"remote"`
	Topic  string `json:"topic"`
}

type meshEvent struct {
	Topic string   `json:"topic"`
	Peers []string `json:"peers"`
}

type messageEvent struct {
	Topic  string `json:"topic"`
	ID     string `json:"id"`
	Source string `json:"source"`
	From   string `json:"from"`
	Size   int    `json:"size"`
	SentUs int64  `json:"sent_us"`
}

type publishedEvent struct {
	Topic string `json:"topic"`
	ID    string `json:"id"`
	Size  int    `json:"size"`
}

type streamsEvent struct {
	Remote   string `json:"remote"`
	ConnID   string `json:"conn_id"`
	Inbound  int    `json:"inbound"`
	Outbound int    `json:"outbound"`
}

type errorEvent struct {
	Cmd     *string `json:"cmd"`
	CmdID   *string `json:"cmd_id"`
	Message string  `json:"message"`
}

type unsupportedEvent struct {
	Feature string  `json:"feature"`
	Reason  string  `json:"reason"`
	CmdID   *string `json:"cmd_id"`
}

// Contract revision 2: request-response (reqresp.go), AutoNAT (autonat.go),
// port mapping (portmap.go).

type requestEvent struct {
	Remote string `json:"remote"`
	ID     string `json:"id"`
	Size   int    `json:"size"`
}

type responseReceivedEvent struct {
	requestEvent
	LatencyUs int64 `json:"latency_us"`
}

type requestFailedEvent struct {
	Remote string `json:"remote"`
	ID     string `json:"id"`
	Error  string `json:"error"`
}

type reachabilityEvent struct {
	Version string `json:"version"`
	// Status is public, private or unknown.
	Status  string `json:"status"`
	Server  string `json:"server,omitempty"`
	Address string `json:"address,omitempty"`
}

type autonatRequestEvent struct {
	Remote  string `json:"remote"`
	Version string `json:"version"`
	// Outcome is dialed_back, dial_back_failed or refused.
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
}

type gatewayFoundEvent struct {
	Gateway      string `json:"gateway"`
	ExternalAddr string `json:"external_addr,omitempty"`
}

type portMappedEvent struct {
	Protocol     string `json:"protocol"`
	InternalPort int    `json:"internal_port"`
	ExternalPort int    `json:"external_port"`
	ExternalAddr string `json:"external_addr,omitempty"`
}

type portMappingFailedEvent struct {
	Error string `json:"error"`
}
