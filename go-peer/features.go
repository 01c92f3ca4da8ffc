package main

// supportedFeatures names the optional features of docs/peer-contract.md
// this peer can do, sorted, for `started`. They are the same at every
// go-libp2p release it builds against (v0.38 to v0.51): tcp with noise or
// tls and yamux, quic-v1, raw streams, and RemoveStreamHandler. Not listed:
// dial-mode-new (the swarm reuses an existing connection) and muxer-mplex
// (go-libp2p dropped mplex).
func supportedFeatures() []string {
	return []string{
		"drop-protocol",
		"muxer-yamux",
		"open-streams",
		"security-noise",
		"security-tls",
		"transport-quic-v1",
		"transport-tcp",
	}
}

// probeReservedFeature is a feature name no peer has (contract/src/features.rs):
// a configuration requiring it must always be refused, which a compliance
// probe relies on.
const probeReservedFeature = "meshgate-probe-reserved"
