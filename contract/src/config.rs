//! The configuration a peer gets at start: one JSON object in [`CONFIG_VAR`] (contract section 1).
//!
//! Unknown fields are ignored by peers (a newer runner may send more); an unknown value of a known field is a
//! configuration error ([`crate::exit::CONFIG_ERROR`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The environment variable that holds the whole configuration.
pub const CONFIG_VAR: &str = "MESHGATE_PEER_CONFIG";

/// How often `streams` events are sampled when the configuration does not say.
pub const DEFAULT_STREAMS_INTERVAL_MS: u64 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PeerConfig {
    /// The identity: the Ed25519 key whose 32-byte secret seed is these 8 bytes little-endian, then 24 zero bytes.
    pub seed: u64,
    /// Listened on, on all IPv4 interfaces.
    pub listen_port: u16,
    /// The only transport enabled.
    pub transport: Transport,
    /// Required for `tcp`, ignored for `quic-v1`; with `offer.security`, its first entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    /// Required for `tcp`, ignored for `quic-v1`; with `offer.muxer`, its first entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muxer: Option<Muxer>,
    /// Preference orders that replace `security` / `muxer` for what the peer offers and accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<Offer>,
    #[serde(default)]
    pub gossipsub: Gossipsub,
    /// How often `streams` events are sampled; absent: 1000.
    #[serde(default = "default_streams_interval_ms")]
    pub streams_interval_ms: u64,
    /// Features (`features.rs` names) the peer must have: one it lacks or does not know is answered with
    /// `unsupported` and exit status 3, before anything else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<String>,
    /// The request-response role (protocol [`REQUEST_RESPONSE_PROTOCOL`]); absent: the peer neither serves nor
    /// sends requests. Contract revision 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_response: Option<RequestResponse>,
    /// AutoNAT roles; absent: the library's defaults, and no AutoNAT events. Contract revision 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autonat: Option<Autonat>,
    /// NAT port mapping through a UPnP Internet Gateway Device; absent: off. Contract revision 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mapping: Option<PortMapping>,
    /// Serve the contract on this TCP port (all IPv4 interfaces) instead of stdin and stdout: before anything
    /// else the peer accepts one connection there, then reads commands from it and writes events to it, as
    /// JSON lines; its end is the end of input. For peers another machine runs (no stdin from the runner).
    /// Absent: stdin and stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_port: Option<u16>,
    /// Write events to this file instead of stdout (without `control_port`): the peer opens it for writing, never
    /// creates it, and writes the same lines there; commands still come from stdin. The Docker backend gives each
    /// peer a named pipe of its own here, so that events skip the engine's attach stream. Absent: stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_path: Option<String>,
    /// Settings of the peer's swarm (its connection machinery) that staging needs; absent: the library's defaults.
    /// A peer whose library has no such setting answers `unsupported` at start
    /// ([`crate::features::SWARM_HANDLER_QUEUE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<Swarm>,
}

/// The request-response protocol every peer speaks: a request is one JSON object ([`crate::commands::Request`])
/// written as the whole stream up to the writer's half-close, the response likewise (rust-libp2p's `json` codec).
pub const REQUEST_RESPONSE_PROTOCOL: &str = "/meshgate/request-response/1.0.0";

/// How this peer answers requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RequestResponse {
    /// Wait this long after reading a request before answering; absent: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_delay_ms: Option<u64>,
    /// Answer with this many payload bytes; absent: as many as the request carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_size: Option<u64>,
    /// How the responder fails on purpose; absent: it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<ResponderFailure>,
}

/// A responder's deliberate failure, for negative controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ResponderFailure {
    /// Read the request, then drop the stream without answering.
    Drop,
    /// Read the request and never answer (the requester's timeout decides).
    Stall,
}

/// AutoNAT v1 and v2 roles. A version whose library cannot separate a role (rust-libp2p's v1 behaviour is client
/// and server at once) answers `unsupported` for the half it cannot leave out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Autonat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1: Option<AutonatRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v2: Option<AutonatRole>,
    /// Server: how many dial requests one peer may make per `throttle_period_ms`; absent: the library's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_peer_max: Option<u32>,
    /// Server: how many dial requests all peers together may make per `throttle_period_ms`; absent: the library's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_global_max: Option<u32>,
    /// Server: the throttle's window; absent: the library's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_period_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AutonatRole {
    /// Answers dial requests by dialing back (private addresses accepted: case networks are private).
    Server,
    /// Asks servers to dial it back and concludes its reachability from their answers.
    Client,
    Both,
}

impl AutonatRole {
    pub fn serves(self) -> bool {
        matches!(self, AutonatRole::Server | AutonatRole::Both)
    }
    pub fn asks(self) -> bool {
        matches!(self, AutonatRole::Client | AutonatRole::Both)
    }
}

/// NAT port mapping: go-libp2p's `NATPortMap`, rust-libp2p's `upnp` behaviour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PortMapping {
    /// How long after start a peer gives up finding a gateway and says `port_mapping_failed`; absent: 30000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// Swarm settings; absent fields: the library's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Swarm {
    /// How many events the behaviour may queue for one connection's handler before it must wait for room
    /// (rust-libp2p's `swarm::Config::with_notify_handler_buffer_size`); at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub handler_queue: Option<u32>,
}

fn default_streams_interval_ms() -> u64 {
    DEFAULT_STREAMS_INTERVAL_MS
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Offer {
    /// Security protocols in order of preference; not empty, no value twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Vec<Security>>,
    /// Muxers in order of preference; not empty, no value twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muxer: Option<Vec<Muxer>>,
}

/// Absent fields mean the library's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Gossipsub {
    /// Topics the peer subscribes to only when told to (`subscribe`); listed so that it may prepare them.
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_lo: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_hi: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
    /// The largest message in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_transmit_size: Option<u64>,
    /// Sent only when not the library's default, so that peers predating the field keep working.
    #[serde(default, skip_serializing_if = "MessageId::is_default")]
    pub message_id: MessageId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum Transport {
    #[serde(rename = "tcp")]
    Tcp,
    #[serde(rename = "quic-v1")]
    QuicV1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Noise,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Muxer {
    Yamux,
    Mplex,
}

/// The gossipsub message-id function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum MessageId {
    /// The library's: source peer id and sequence number.
    #[default]
    #[serde(rename = "default")]
    Default,
    /// The lowercase hex SHA-256 of the message data, the same in every implementation.
    #[serde(rename = "content-sha256")]
    ContentSha256,
}

impl MessageId {
    pub fn is_default(&self) -> bool {
        *self == MessageId::Default
    }
}

impl Transport {
    /// The configuration's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::QuicV1 => "quic-v1",
        }
    }
}

impl Security {
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Noise => "noise",
            Security::Tls => "tls",
        }
    }
}

impl Muxer {
    pub fn as_str(self) -> &'static str {
        match self {
            Muxer::Yamux => "yamux",
            Muxer::Mplex => "mplex",
        }
    }
}

impl PeerConfig {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a configuration is strings, integers and lists")
    }
}
