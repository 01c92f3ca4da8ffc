//! The names of optional features (contract section 1): what `started.features` lists, what `unsupported.feature`
//! names and what `config.require` asks for. Settings are named `<setting>-<value>` (`transport-quic-v1`), so
//! that the same gap of two implementations is reported alike.

use crate::config::{Muxer, Security, Transport};

pub const DIAL_MODE_NEW: &str = "dial-mode-new";
pub const OPEN_STREAMS: &str = "open-streams";
pub const DROP_PROTOCOL: &str = "drop-protocol";
/// Contract revision 2: the roles of `config.request_response`, `config.autonat` and `config.port_mapping`.
pub const REQUEST_RESPONSE: &str = "request-response";
pub const AUTONAT_V1_SERVER: &str = "autonat-v1-server";
pub const AUTONAT_V1_CLIENT: &str = "autonat-v1-client";
/// `autonat_probe` with `vanish`: the dial request is sent and the connection dropped at once.
pub const AUTONAT_V1_VANISH: &str = "autonat-v1-vanish";
pub const AUTONAT_V2_SERVER: &str = "autonat-v2-server";
pub const AUTONAT_V2_CLIENT: &str = "autonat-v2-client";
pub const PORT_MAPPING: &str = "port-mapping";
/// Mesh degrees the library cannot accept; reported as `unsupported`, never listed by a peer.
pub const GOSSIPSUB_MESH_DEGREE: &str = "gossipsub-mesh-degree";
/// `config.swarm.handler_queue`; reported as `unsupported` by a peer whose library has no such setting, never
/// listed by a peer.
pub const SWARM_HANDLER_QUEUE: &str = "swarm-handler-queue";
/// Reserved for the compliance probe: no peer has it, so every peer must refuse a configuration that requires it
/// (`unsupported`, exit 3).
pub const PROBE_RESERVED: &str = "meshgate-probe-reserved";

pub fn transport(t: Transport) -> String {
    format!("transport-{}", t.as_str())
}

pub fn security(s: Security) -> String {
    format!("security-{}", s.as_str())
}

pub fn muxer(m: Muxer) -> String {
    format!("muxer-{}", m.as_str())
}
