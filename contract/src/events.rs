//! What a peer says on stdout, one JSON object per line and nothing else (contract section 3).
//!
//! Every line carries the envelope [`EventLine`]: when (`ts`), who (`peer`, the local peer id) and the event.
//! Readers ignore fields they do not know, so that events can gain optional fields without breaking anyone.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::commands::AutonatVersion;
use crate::Micros;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventLine {
    /// When it happened.
    pub ts: Micros,
    /// The local peer id.
    pub peer: String,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The first line, once the configuration is read and the host is built.
    Started {
        /// `rust-libp2p`, `go-libp2p`, ...
        implementation: String,
        /// Library name to version, as compiled in (where the implementation can know it).
        #[serde(default)]
        versions: BTreeMap<String, String>,
        /// The optional features (`features.rs`) this peer can do, sorted; absent: not said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        features: Option<Vec<String>>,
        /// The contract revision the peer speaks (contract::VERSION); absent: before revisions were said (0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contract_version: Option<u32>,
    },
    /// The listen addresses changed; the whole set.
    Listening { addrs: Vec<String> },
    /// A connection is established.
    ConnectionOpened {
        remote: String,
        /// Unique within the peer, of any form.
        conn_id: String,
        direction: Direction,
        remote_addr: String,
        /// What the connection negotiated (`noise`, `tls`; QUIC: `tls`), read from it; absent: not said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        security: Option<String>,
        /// (`yamux`, `mplex`; QUIC: `quic-v1`), read from the connection; absent: not said.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        muxer: Option<String>,
    },
    /// A connection is closed.
    ConnectionClosed {
        remote: String,
        conn_id: String,
        direction: Direction,
        remote_addr: String,
        /// The library's text, or null.
        reason: Option<String>,
    },
    /// The first identify of every connection and every identify push received.
    Identify {
        remote: String,
        /// Null when the library does not say.
        conn_id: Option<String>,
        agent_version: String,
        protocol_version: String,
        /// The complete list, sorted; never a difference.
        protocols: Vec<String>,
        #[serde(default)]
        listen_addrs: Vec<String>,
    },
    /// A remote peer announced a subscription.
    Subscribed { remote: String, topic: String },
    /// A remote peer announced an unsubscription.
    Unsubscribed { remote: String, topic: String },
    /// The local mesh of a topic changed; the whole mesh, sorted.
    Mesh { topic: String, peers: Vec<String> },
    /// A message from another peer was delivered to the application.
    Message {
        topic: String,
        id: String,
        /// The originating peer.
        source: String,
        /// The peer that forwarded it, where known.
        from: Option<String>,
        /// Payload bytes.
        size: u64,
        /// From the payload: when the publisher sent it.
        sent_us: Micros,
    },
    /// A `publish` command succeeded.
    Published {
        topic: String,
        id: String,
        /// The real payload length.
        size: u64,
    },
    /// Open streams of one connection: for every connection every `streams_interval_ms`, and on every change.
    Streams {
        remote: String,
        conn_id: String,
        inbound: u32,
        outbound: u32,
    },
    /// A command or an event could not be handled.
    Error {
        /// The command that failed, or null for errors that answer no command.
        cmd: Option<String>,
        /// That command's `cmd_id`, or null.
        #[serde(default)]
        cmd_id: Option<String>,
        /// The library's own error text.
        message: String,
    },
    /// Something asked for cannot be done by this implementation or version.
    Unsupported {
        feature: String,
        reason: String,
        /// The command it answers; null at start.
        #[serde(default)]
        cmd_id: Option<String>,
    },
    /// A `request` command's request went out (contract revision 2).
    RequestSent { remote: String, id: String, size: u64 },
    /// The answer to a request this peer sent.
    ResponseReceived {
        remote: String,
        id: String,
        size: u64,
        /// From `request_sent` to the response.
        latency_us: Micros,
    },
    /// A request this peer sent failed.
    RequestFailed {
        remote: String,
        id: String,
        /// The library's own error text.
        error: String,
    },
    /// This peer read a request (and answers it as its `config.request_response` says).
    RequestReceived { remote: String, id: String, size: u64 },
    /// An AutoNAT client concluded its reachability (contract revision 2): every conclusion, also an unchanged one.
    Reachability {
        version: AutonatVersion,
        status: ReachabilityStatus,
        /// The server whose answer decided it, where the library says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
        /// The address tested, where the library says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
    /// An AutoNAT server handled or refused a dial request.
    AutonatRequest {
        remote: String,
        version: AutonatVersion,
        outcome: AutonatOutcome,
        /// The library's text for a refusal or a failed dial-back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// NAT port mapping found a gateway (contract revision 2).
    GatewayFound {
        /// How the library names it: its description URL or address.
        gateway: String,
        /// The external address it reported, where known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_addr: Option<String>,
    },
    /// A port mapping exists on the gateway.
    PortMapped {
        /// `tcp` or `udp`.
        protocol: String,
        internal_port: u16,
        external_port: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_addr: Option<String>,
    },
    /// Finding a gateway or mapping a port failed.
    PortMappingFailed {
        /// The library's own error text.
        error: String,
    },
    /// After `stop`, just before exit.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReachabilityStatus {
    Public,
    Private,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AutonatOutcome {
    /// The server dialed the client back and reached it.
    DialedBack,
    /// The server dialed back and failed.
    DialBackFailed,
    /// The server refused the request (throttled, no address, not connected, ...).
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Event {
    /// Every event's name, as on the wire.
    pub const NAMES: &[&str] = &[
        "started",
        "listening",
        "connection_opened",
        "connection_closed",
        "identify",
        "subscribed",
        "unsubscribed",
        "mesh",
        "message",
        "published",
        "streams",
        "error",
        "unsupported",
        "request_sent",
        "response_received",
        "request_failed",
        "request_received",
        "reachability",
        "autonat_request",
        "gateway_found",
        "port_mapped",
        "port_mapping_failed",
        "stopped",
    ];

    /// An error answering the command `cmd` (with its `cmd_id`, where it had one), or of no command.
    pub fn error(cmd: Option<&str>, cmd_id: Option<&str>, message: impl ToString) -> Self {
        Event::Error {
            cmd: cmd.map(str::to_owned),
            cmd_id: cmd_id.map(str::to_owned),
            message: message.to_string(),
        }
    }
}

impl EventLine {
    /// The line as written, without its newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events are strings, integers, lists and maps")
    }
}
