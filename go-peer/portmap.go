package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	bhost "github.com/libp2p/go-libp2p/p2p/host/basic"
	ma "github.com/multiformats/go-multiaddr"
)

// The NAT manager's log line when discovery fails ("DiscoverNAT error:" with
// the error; basichost/natmgr.go), caught where the release allows (compat_natlog*.go).
const (
	natManagerLogger = "basichost"
	discoverNATError = "DiscoverNAT error:"
)

// natLogSink passes the caught discovery error to the running watcher; one
// per process (the log handler is set once), swapped by each watcher.
var natLogSink = &logSink{}

type logSink struct {
	mu sync.Mutex
	ch chan string
}

func (s *logSink) attach() chan string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ch = make(chan string, 1)
	return s.ch
}

func (s *logSink) report(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		select {
		case s.ch <- text:
		default:
		}
	}
}

// defaultMappingDeadline is `port_mapping.deadline_ms` when absent.
const defaultMappingDeadline = 30 * time.Second

// mappingPoll bounds how late a discovered gateway or a new mapping is
// reported: go-libp2p's NAT manager has no events, only HasDiscoveredNAT and
// GetMapping.
const mappingPoll = 100 * time.Millisecond

// observedNATManager is go-libp2p's own NAT manager (basichost.NewNATManager,
// what libp2p.NATPortMap installs), watched from outside: the host uses it
// unchanged through the embedded interface.
type observedNATManager struct {
	bhost.NATManager
	cancel context.CancelFunc
	done   chan struct{}
}

// natManagerFor is the libp2p.NATManager constructor that reports what the
// library's NAT manager finds, until deadline.
func natManagerFor(out *Emitter, deadline time.Duration) func(network.Network) bhost.NATManager {
	return func(n network.Network) bhost.NATManager {
		ctx, cancel := context.WithCancel(context.Background())
		m := &observedNATManager{NATManager: bhost.NewNATManager(n), cancel: cancel, done: make(chan struct{})}
		go m.watch(ctx, n, out, deadline)
		return m
	}
}

// Close stops the watcher, then the library's manager (which deletes its mappings).
func (m *observedNATManager) Close() error {
	m.cancel()
	<-m.done
	return m.NATManager.Close()
}

// watch emits gateway_found once the manager has discovered a NAT and
// port_mapped for each listen address it has a mapping for, or
// port_mapping_failed when nothing is mapped by the deadline.
func (m *observedNATManager) watch(ctx context.Context, n network.Network, out *Emitter, deadline time.Duration) {
	defer close(m.done)
	ticker := time.NewTicker(mappingPoll)
	defer ticker.Stop()
	expired := time.After(deadline)
	discoveryFailed := natLogSink.attach()
	found, failed := false, false
	mapped := make(map[string]bool)
	for {
		if !found && m.HasDiscoveredNAT() {
			found = true
			// go-libp2p names neither the device nor its description URL; its
			// external IP shows only in a mapping (below).
			out.Emit("gateway_found", gatewayFoundEvent{Gateway: "go-libp2p NAT manager (the library does not name the device)"})
		}
		for _, listen := range n.ListenAddresses() {
			ext := m.GetMapping(listen)
			if ext == nil || mapped[ext.String()] {
				continue
			}
			mapped[ext.String()] = true
			if ev, err := portMapped(listen, ext); err == nil {
				out.Emit("port_mapped", ev)
			} else {
				out.Error("", "", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case text := <-discoveryFailed:
			if !failed {
				failed = true
				out.Emit("port_mapping_failed", portMappingFailedEvent{Error: text})
			}
		case <-expired:
			expired = nil
			switch {
			case failed:
			case !found:
				failed = true
				out.Emit("port_mapping_failed", portMappingFailedEvent{Error: fmt.Sprintf("no NAT found within %v", deadline)})
			case len(mapped) == 0:
				failed = true
				out.Emit("port_mapping_failed", portMappingFailedEvent{Error: fmt.Sprintf("a NAT was found, but no port mapped within %v", deadline)})
			}
		case <-ticker.C:
		}
	}
}

// portMapped describes the mapping of a listen address to an external one.
func portMapped(listen, ext ma.Multiaddr) (portMappedEvent, error) {
	for _, proto := range []struct {
		code int
		name string
	}{{ma.P_TCP, "tcp"}, {ma.P_UDP, "udp"}} {
		in, err := listen.ValueForProtocol(proto.code)
		if err != nil {
			continue
		}
		out, err := ext.ValueForProtocol(proto.code)
		if err != nil {
			return portMappedEvent{}, fmt.Errorf("mapping %s to %s changes the transport", listen, ext)
		}
		inPort, _ := strconv.Atoi(in)
		outPort, _ := strconv.Atoi(out)
		return portMappedEvent{Protocol: proto.name, InternalPort: inPort, ExternalPort: outPort, ExternalAddr: ext.String()}, nil
	}
	return portMappedEvent{}, fmt.Errorf("mapped listen address %s is neither tcp nor udp", listen)
}
