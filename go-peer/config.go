package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// configEnv names the environment variable that carries the whole configuration.
const configEnv = "MESHGATE_PEER_CONFIG"

// Config is the peer configuration of docs/peer-contract.md §1. Pointers mark
// fields whose absence means "the library's default" or must be detected.
type Config struct {
	Seed              *uint64          `json:"seed"`
	ListenPort        *int             `json:"listen_port"`
	Transport         string           `json:"transport"`
	Security          string           `json:"security"`
	Muxer             string           `json:"muxer"`
	Offer             *OfferConfig     `json:"offer"`
	Gossipsub         *GossipsubConfig `json:"gossipsub"`
	StreamsIntervalMs *int             `json:"streams_interval_ms"`
	// Require names features (as `started.features` does) the peer must have;
	// each it lacks is `unsupported` and exit status 3 (missingFeatures).
	Require []string `json:"require"`
	// Contract revision 2 roles; absent: off (autonat: the library's defaults).
	RequestResponse *RequestResponseConfig `json:"request_response,omitempty"`
	Autonat         *AutonatConfig         `json:"autonat,omitempty"`
	PortMapping     *PortMappingConfig     `json:"port_mapping,omitempty"`
	// ControlPort serves the contract on this TCP port instead of stdin and
	// stdout (control.go); absent: stdin and stdout.
	ControlPort *int `json:"control_port,omitempty"`
	// EventsPath is a file (the runner's named pipe) that events are written
	// to instead of stdout; commands still come from stdin. Absent: stdout.
	EventsPath *string `json:"events_path,omitempty"`
	// Swarm holds rust-libp2p swarm settings this peer cannot apply
	// (checkSupported refuses them rather than ignore them).
	Swarm *SwarmConfig `json:"swarm,omitempty"`
}

// SwarmConfig is `config.swarm`.
type SwarmConfig struct {
	HandlerQueue *int `json:"handler_queue,omitempty"`
}

// RequestResponseConfig is how this peer answers requests (reqresp.go).
type RequestResponseConfig struct {
	ResponseDelayMs *int64 `json:"response_delay_ms,omitempty"`
	// ResponseSize is the answer's payload bytes; absent: the request's.
	ResponseSize *int `json:"response_size,omitempty"`
	// Failure is "drop" or "stall"; absent: answer.
	Failure string `json:"failure,omitempty"`
}

// AutonatConfig holds the AutoNAT roles (autonat.go): each of v1 and v2 is
// "server", "client" or "both".
type AutonatConfig struct {
	V1                string `json:"v1,omitempty"`
	V2                string `json:"v2,omitempty"`
	ThrottlePeerMax   *int   `json:"throttle_peer_max,omitempty"`
	ThrottleGlobalMax *int   `json:"throttle_global_max,omitempty"`
	ThrottlePeriodMs  *int64 `json:"throttle_period_ms,omitempty"`
}

// PortMappingConfig turns on NAT port mapping (portmap.go).
type PortMappingConfig struct {
	DeadlineMs *int64 `json:"deadline_ms,omitempty"`
}

// OfferConfig lists, each in order of preference, the security protocols and
// muxers the peer offers (as dialer) and accepts (as listener). A list given
// replaces the single `security` / `muxer` value; either may be absent.
type OfferConfig struct {
	Security []string `json:"security"`
	Muxer    []string `json:"muxer"`
}

// GossipsubConfig holds the gossipsub knobs the runner may set.
type GossipsubConfig struct {
	Topics          []string `json:"topics"`
	D               *int     `json:"d"`
	DLo             *int     `json:"d_lo"`
	DHi             *int     `json:"d_hi"`
	HeartbeatMs     *int     `json:"heartbeat_ms"`
	MaxTransmitSize *int     `json:"max_transmit_size"`
	// MessageID is "default" (source + seqno, also when absent) or "content-sha256".
	MessageID string `json:"message_id"`
}

// Message-id functions of the `gossipsub.message_id` field.
const (
	messageIDDefault       = "default"
	messageIDContentSHA256 = "content-sha256"
)

// UnsupportedError is a valid configuration value this implementation cannot
// honour: the contract wants an `unsupported` event and exit status 3 for it,
// not a configuration error.
type UnsupportedError struct {
	Feature string
	Reason  string
}

func (e *UnsupportedError) Error() string { return e.Feature + ": " + e.Reason }

// parseConfig decodes and validates the configuration. Unknown fields are
// ignored, like unknown command fields; unknown values are errors.
func parseConfig(raw string) (*Config, error) {
	if raw == "" {
		return nil, fmt.Errorf("%s is not set", configEnv)
	}
	var cfg Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", configEnv, err)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func (c *Config) validate() error {
	if c.Seed == nil {
		return errors.New("seed is required")
	}
	if c.ListenPort == nil {
		return errors.New("listen_port is required")
	}
	if *c.ListenPort < 0 || *c.ListenPort > 65535 {
		return fmt.Errorf("listen_port %d out of range", *c.ListenPort)
	}
	if c.ControlPort != nil && (*c.ControlPort < 0 || *c.ControlPort > 65535) {
		return fmt.Errorf("control_port %d out of range", *c.ControlPort)
	}
	if c.EventsPath != nil && *c.EventsPath == "" {
		return errors.New("events_path must name a file, got an empty string")
	}
	switch c.Transport {
	case "tcp", "quic-v1":
	case "":
		return errors.New("transport is required")
	default:
		return fmt.Errorf("unknown transport %q", c.Transport)
	}
	// security and muxer only matter for tcp, but a present value must still be known.
	switch c.Security {
	case "noise", "tls":
	case "":
		if c.Transport == "tcp" && (c.Offer == nil || c.Offer.Security == nil) {
			return errors.New("security is required for tcp")
		}
	default:
		return fmt.Errorf("unknown security %q", c.Security)
	}
	switch c.Muxer {
	case "yamux", "mplex":
	case "":
		if c.Transport == "tcp" && (c.Offer == nil || c.Offer.Muxer == nil) {
			return errors.New("muxer is required for tcp")
		}
	default:
		return fmt.Errorf("unknown muxer %q", c.Muxer)
	}
	if o := c.Offer; o != nil {
		if err := checkOffer("offer.security", o.Security, "noise", "tls"); err != nil {
			return err
		}
		if err := checkOffer("offer.muxer", o.Muxer, "yamux", "mplex"); err != nil {
			return err
		}
	}
	if c.StreamsIntervalMs != nil && *c.StreamsIntervalMs <= 0 {
		return fmt.Errorf("streams_interval_ms must be positive, got %d", *c.StreamsIntervalMs)
	}
	if g := c.Gossipsub; g != nil {
		for name, v := range map[string]*int{"d": g.D, "d_lo": g.DLo, "d_hi": g.DHi} {
			if v != nil && *v < 0 {
				return fmt.Errorf("gossipsub.%s must not be negative, got %d", name, *v)
			}
		}
		if g.HeartbeatMs != nil && *g.HeartbeatMs <= 0 {
			return fmt.Errorf("gossipsub.heartbeat_ms must be positive, got %d", *g.HeartbeatMs)
		}
		if g.MaxTransmitSize != nil && *g.MaxTransmitSize <= 0 {
			return fmt.Errorf("gossipsub.max_transmit_size must be positive, got %d", *g.MaxTransmitSize)
		}
		switch g.MessageID {
		case "", messageIDDefault, messageIDContentSHA256:
		default:
			return fmt.Errorf("unknown gossipsub.message_id %q", g.MessageID)
		}
		for _, t := range g.Topics {
			if t == "" {
				return errors.New("gossipsub.topics contains an empty topic")
			}
		}
	}
	return c.validateRoles()
}

// validateRoles checks the contract revision 2 roles.
func (c *Config) validateRoles() error {
	if r := c.RequestResponse; r != nil {
		if r.ResponseDelayMs != nil && *r.ResponseDelayMs < 0 {
			return fmt.Errorf("request_response.response_delay_ms must not be negative, got %d", *r.ResponseDelayMs)
		}
		if r.ResponseSize != nil && (*r.ResponseSize < 0 || *r.ResponseSize > maxRequestSize) {
			return fmt.Errorf("request_response.response_size must be between 0 and %d, got %d", maxRequestSize, *r.ResponseSize)
		}
		switch r.Failure {
		case "", failureDrop, failureStall:
		default:
			return fmt.Errorf("unknown request_response.failure %q", r.Failure)
		}
	}
	if a := c.Autonat; a != nil {
		for name, role := range map[string]string{"v1": a.V1, "v2": a.V2} {
			switch role {
			case "", roleServer, roleClient, roleBoth:
			default:
				return fmt.Errorf("unknown autonat.%s role %q", name, role)
			}
		}
		for name, v := range map[string]*int{"throttle_peer_max": a.ThrottlePeerMax, "throttle_global_max": a.ThrottleGlobalMax} {
			if v != nil && *v < 0 {
				return fmt.Errorf("autonat.%s must not be negative, got %d", name, *v)
			}
		}
		if a.ThrottlePeriodMs != nil && *a.ThrottlePeriodMs <= 0 {
			return fmt.Errorf("autonat.throttle_period_ms must be positive, got %d", *a.ThrottlePeriodMs)
		}
	}
	if m := c.PortMapping; m != nil && m.DeadlineMs != nil && *m.DeadlineMs <= 0 {
		return fmt.Errorf("port_mapping.deadline_ms must be positive, got %d", *m.DeadlineMs)
	}
	return nil
}

// checkOffer validates one preference list of `offer`: present means
// non-empty, every entry known and named once.
func checkOffer(name string, list []string, known ...string) error {
	if list == nil {
		return nil
	}
	if len(list) == 0 {
		return fmt.Errorf("%s must not be empty", name)
	}
	for i, v := range list {
		if !slices.Contains(known, v) {
			return fmt.Errorf("unknown %s entry %q", name, v)
		}
		if slices.Contains(list[:i], v) {
			return fmt.Errorf("%s names %q twice", name, v)
		}
	}
	return nil
}

// securityOffers is the security protocols to offer, in order of preference:
// `offer.security` when given, else the single `security`.
func (c *Config) securityOffers() []string {
	if c.Offer != nil && c.Offer.Security != nil {
		return c.Offer.Security
	}
	if c.Security == "" {
		return nil
	}
	return []string{c.Security}
}

// muxerOffers is the muxers to offer, in order of preference: `offer.muxer`
// when given, else the single `muxer`.
func (c *Config) muxerOffers() []string {
	if c.Offer != nil && c.Offer.Muxer != nil {
		return c.Offer.Muxer
	}
	if c.Muxer == "" {
		return nil
	}
	return []string{c.Muxer}
}

// checkSupported reports the configured values that go-libp2p cannot honour.
func (c *Config) checkSupported() error {
	// go-libp2p no longer has mplex; QUIC ignores the muxer setting.
	if c.Transport == "tcp" && slices.Contains(c.muxerOffers(), "mplex") {
		return &UnsupportedError{Feature: "muxer-mplex", Reason: "go-libp2p no longer ships the mplex stream muxer"}
	}
	if c.Swarm != nil && c.Swarm.HandlerQueue != nil {
		return &UnsupportedError{Feature: featureSwarmHandlerQueue, Reason: reasonSwarmHandlerQueue}
	}
	return c.Autonat.checkSupported()
}

// lacking says why go-libp2p cannot do a feature, where the peer knows.
var lacking = map[string]string{
	featureAutonatV1Server: reasonV1Server,
	featureAutonatV2Server: reasonV2,
	featureAutonatV2Client: reasonV2,
}

// missingFeatures is the required features this peer lacks, once each, in
// the order required. A name it does not know is one it lacks.
func (c *Config) missingFeatures() []*UnsupportedError {
	have := supportedFeatures()
	var missing []*UnsupportedError
	for i, f := range c.Require {
		if slices.Contains(c.Require[:i], f) {
			continue
		}
		switch {
		case f == probeReservedFeature:
			// Checked by name, not only by absence from `have`: the compliance
			// probe relies on every peer refusing it.
			missing = append(missing, &UnsupportedError{Feature: f, Reason: "reserved for the compliance probe: not a feature this peer (or any) has"})
		case lacking[f] != "":
			missing = append(missing, &UnsupportedError{Feature: f, Reason: lacking[f]})
		case !slices.Contains(have, f):
			missing = append(missing, &UnsupportedError{Feature: f, Reason: "required by the configuration, but not a feature this go-libp2p peer has"})
		}
	}
	return missing
}

// streamsInterval is the sampling period of `streams` events.
func (c *Config) streamsInterval() time.Duration {
	if c.StreamsIntervalMs == nil {
		return time.Second
	}
	return time.Duration(*c.StreamsIntervalMs) * time.Millisecond
}

// topics lists the gossipsub topics named in the configuration.
func (c *Config) topics() []string {
	if c.Gossipsub == nil {
		return nil
	}
	return c.Gossipsub.Topics
}
