//! Participants of a case that are not libp2p peers (contract revision 2): programs the runner starts beside the
//! peers, such as the UPnP gateway emulator (`images/upnp-gateway/`). They have no peer id; they read a
//! configuration at start, take `stop` on stdin and say what they did on stdout as [`ParticipantLine`]s, so that
//! the record holds the evidence beside the peers' events.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Micros;

/// The environment variable that holds a gateway's whole configuration.
pub const GATEWAY_CONFIG_VAR: &str = "MESHGATE_GATEWAY_CONFIG";

/// The UPnP Internet Gateway Device emulator's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayConfig {
    /// Its own address on the case network: SSDP answers and the description URL point here.
    pub address: String,
    /// The port of its HTTP server (descriptions and SOAP control).
    pub http_port: u16,
    /// What it reports as its external address: a private address of the case, never a public one.
    pub external_ip: String,
    /// The UDP port it takes SSDP searches on; absent: 1900, the SSDP port (tests use another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssdp_port: Option<u16>,
    /// Misbehave as some home routers do; absent: answer every search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quirk: Option<Quirk>,
}

impl GatewayConfig {
    /// The SSDP port searches go to.
    pub const SSDP_PORT: u16 = 1900;

    pub fn ssdp_port(&self) -> u16 {
        self.ssdp_port.unwrap_or(Self::SSDP_PORT)
    }
}

/// Routers that mishandle concurrent discovery (go-libp2p#3138): searches for different targets arriving within
/// `window_ms` of each other are answered as `answer` says. Repeats of one target are not concurrent searches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Quirk {
    pub window_ms: u64,
    #[serde(default)]
    pub answer: QuirkAnswer,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QuirkAnswer {
    /// Answer none of the overlapping searches.
    #[default]
    None,
    /// Answer only the first target of the overlap.
    First,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ParticipantLine {
    pub ts: Micros,
    /// What kind of participant it is (`upnp-gateway`); the runner knows it by name.
    pub participant: String,
    #[serde(flatten)]
    pub event: ParticipantEvent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ParticipantEvent {
    /// The first line, once it serves.
    Started {
        implementation: String,
        #[serde(default)]
        versions: BTreeMap<String, String>,
        contract_version: u32,
    },
    /// Where it serves (`udp/239.255.255.250:1900`, `http://10.216.0.2:5000/rootDesc.xml`).
    Listening { addrs: Vec<String> },
    /// An SSDP M-SEARCH arrived.
    SsdpRequest {
        /// The sender's `ip:port`.
        from: String,
        /// The search target (`ST`).
        st: String,
    },
    /// It answered a search.
    SsdpResponse { to: String, st: String, location: String },
    /// It left a search unanswered on purpose (the quirk), or because it does not know the target.
    SsdpIgnored { from: String, st: String, reason: String },
    /// A SOAP control request and what it answered.
    SoapAction {
        from: String,
        /// The service type (`urn:schemas-upnp-org:service:WANIPConnection:1`).
        service: String,
        action: String,
        #[serde(default)]
        args: BTreeMap<String, String>,
        /// The output arguments of a success.
        #[serde(default)]
        result: BTreeMap<String, String>,
        /// The UPnP error of a failure (`718 ConflictInMappingEntry`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fault: Option<String>,
    },
    Error { message: String },
    /// After `stop`, just before exit.
    Stopped,
}

impl ParticipantEvent {
    /// Every event's name, as on the wire.
    pub const NAMES: &[&str] = &[
        "started",
        "listening",
        "ssdp_request",
        "ssdp_response",
        "ssdp_ignored",
        "soap_action",
        "error",
        "stopped",
    ];
}

impl ParticipantLine {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events are strings, integers and maps")
    }
}
