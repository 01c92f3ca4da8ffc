package main

// supportedFeatures names the optional features of docs/peer-contract.md
// this peer can do, sorted, for `started`. They are the same at every
// go-libp2p release it builds against (v0.38 to v0.51): tcp with noise or
// tls and yamux, quic-v1, raw streams, RemoveStreamHandler, request-response
// on a stream handler, the AutoNAT v1 client (also vanishing) and NAT port
// mapping. Not listed: dial-mode-new (the swarm reuses an existing
// connection), muxer-mplex (go-libp2p dropped mplex), and the AutoNAT roles
// that refuse private addresses (autonat.go).
func supportedFeatures() []string {
	return []string{
		featureAutonatV1Client,
		featureAutonatV1Vanish,
		"drop-protocol",
		"muxer-yamux",
		"open-streams",
		featurePortMapping,
		featureRequestResponse,
		"security-noise",
		"security-tls",
		"transport-quic-v1",
		"transport-tcp",
	}
}

// Feature names of contract revision 2 (contract/src/features.rs).
const (
	featureRequestResponse = "request-response"
	featureAutonatV1Server = "autonat-v1-server"
	featureAutonatV1Client = "autonat-v1-client"
	featureAutonatV1Vanish = "autonat-v1-vanish"
	featureAutonatV2Server = "autonat-v2-server"
	featureAutonatV2Client = "autonat-v2-client"
	featurePortMapping     = "port-mapping"
	// featureSwarmHandlerQueue is never listed: only refused (config.swarm).
	featureSwarmHandlerQueue = "swarm-handler-queue"
)

// reasonSwarmHandlerQueue: go-libp2p's protocols write to their streams
// themselves; there is no swarm-wide queue of events from a behaviour to a
// connection's handler (rust-libp2p's notify_handler_buffer_size) to size.
const reasonSwarmHandlerQueue = "go-libp2p has no queue of events from a behaviour to a connection's handler to size (rust-libp2p's notify_handler_buffer_size): its protocols write to their streams themselves"

// probeReservedFeature is a feature name no peer has (contract/src/features.rs):
// a configuration requiring it must always be refused, which a compliance
// probe relies on.
const probeReservedFeature = "meshgate-probe-reserved"
