//! A network's `roles:` (what its peers do besides gossipsub: answer requests, serve or ask AutoNAT, map ports
//! through a UPnP gateway) and `gateway:` (the UPnP gateway emulator of the case network), as written in YAML.
//!
//! `roles:` maps an implementation's name (`go`: every peer of it) or a peer's name (`go-2`) to its [`Roles`]. A
//! peer's own entry wins over its implementation's role by role: each role it names (`request_response`,
//! `autonat`, `port_mapping`, `swarm`) replaces that role of the implementation's entry whole, and the roles it does not
//! name are the implementation's ([`resolve`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// The roles of one implementation or peer. Absent roles: the peer does not have them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// Answers requests on the request-response protocol (and may send them: `request` steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_response: Option<RequestResponseRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autonat: Option<AutonatRoles>,
    /// Maps its listening port through a UPnP gateway (the network's `gateway:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_mapping: Option<PortMappingRole>,
    /// Settings of the peer's swarm, for staging (an implementation without them refuses the case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<SwarmSettings>,
}

impl Roles {
    pub fn is_empty(&self) -> bool {
        *self == Roles::default()
    }

    /// `self`'s roles, with `over`'s replacing them role by role.
    pub fn overridden_by(&self, over: &Roles) -> Roles {
        Roles {
            request_response: over.request_response.clone().or_else(|| self.request_response.clone()),
            autonat: over.autonat.clone().or_else(|| self.autonat.clone()),
            port_mapping: over.port_mapping.clone().or_else(|| self.port_mapping.clone()),
            swarm: over.swarm.clone().or_else(|| self.swarm.clone()),
        }
    }

    /// The peer's AutoNAT role for one version, if any.
    pub fn autonat(&self, version: AutonatVersion) -> Option<AutonatRole> {
        let a = self.autonat.as_ref()?;
        match version {
            AutonatVersion::V1 => a.v1,
            AutonatVersion::V2 => a.v2,
        }
    }
}

/// `request_response: {response_delay: 200ms, response_size: 64, failure: drop}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestResponseRole {
    /// How long the peer waits after reading a request before answering.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Duration::is_zero")]
    pub response_delay: Duration,
    /// Payload bytes of its answers; absent: as many as the request carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_size: Option<u64>,
    /// Fails on purpose instead of answering (a negative control); absent: it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// How a responder fails on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// Reads the request, then drops the stream without answering.
    Drop,
    /// Reads the request and never answers.
    Stall,
}

/// `autonat: {v1: server, v2: client, throttle: {peer_max: 100, global_max: 1000, period: 100ms}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AutonatRoles {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v1: Option<AutonatRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v2: Option<AutonatRole>,
    /// A server's throttling of dial requests; absent fields: the library's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutonatRole {
    /// Answers dial requests by dialing the client back.
    Server,
    /// Asks servers to dial it back and concludes its reachability.
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

/// An AutoNAT protocol version, as a matrix writes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutonatVersion {
    #[default]
    V1,
    V2,
}

impl AutonatVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            AutonatVersion::V1 => "v1",
            AutonatVersion::V2 => "v2",
        }
    }
}

/// A server's throttle: how many dial requests one peer (`peer_max`) and all peers (`global_max`) may make per
/// `period`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_max: Option<u32>,
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub period: Option<Duration>,
}

/// `port_mapping: {deadline: 30s}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortMappingRole {
    /// How long after its start the peer looks for a gateway before it gives up (`port_mapping_failed`).
    #[serde(default = "default_deadline", with = "humantime_serde")]
    pub deadline: Duration,
}

impl Default for PortMappingRole {
    fn default() -> Self {
        Self { deadline: default_deadline() }
    }
}

fn default_deadline() -> Duration {
    Duration::from_secs(30)
}

/// `swarm: {handler_queue: 1}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmSettings {
    /// How many events the behaviour may queue for one connection's handler before it waits for room (rust-libp2p's
    /// `notify_handler_buffer_size`, 32 by default); a small queue makes the peer behave as one behind on its
    /// connections. At least 1; absent: the library's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_queue: Option<std::num::NonZeroU32>,
}

/// `gateway: {quirk: {window: 200ms, answer: none}}`: the case network gets a UPnP Internet Gateway Device
/// emulator (absent: none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// Misbehave as some home routers do; absent: answer every search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quirk: Option<GatewayQuirk>,
}

/// Searches for different targets arriving within `window` of each other are answered as `answer` says
/// (go-libp2p#3138).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayQuirk {
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    #[serde(default)]
    pub answer: QuirkAnswer,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuirkAnswer {
    /// Answer only the first target of the overlap.
    First,
    /// Answer none of the overlapping searches.
    #[default]
    None,
}

/// A network's `roles:` as written: implementation or peer name to roles, each with where it is written.
pub type RolesMap = BTreeMap<String, Spanned<Roles>>;

/// The roles of the peer `peer` of implementation `implementation`: its implementation's entry, with its own
/// entry's roles replacing them role by role.
pub fn resolve(roles: &RolesMap, implementation: &str, peer: &str) -> Roles {
    let of = |key: &str| roles.get(key).map(|r| r.value.clone()).unwrap_or_default();
    of(implementation).overridden_by(&of(peer))
}

/// Every peer's roles in a network, by peer name.
pub fn resolved(net: &super::Network) -> BTreeMap<String, Roles> {
    net.peers
        .value
        .iter()
        .flat_map(|(imp, count)| (1..=*count).map(move |i| (imp, format!("{imp}-{i}"))))
        .map(|(imp, peer)| {
            let roles = resolve(&net.roles, imp, &peer);
            (peer, roles)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(yaml: &str) -> RolesMap {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn a_peer_entry_replaces_its_implementation_role_by_role() {
        let map = roles(
            "go: {request_response: {response_delay: 200ms}, autonat: {v1: client}}\n\
             go-2: {autonat: {v1: server, throttle: {peer_max: 100, period: 100ms}}, port_mapping: {}}\n",
        );
        let go1 = resolve(&map, "go", "go-1");
        assert_eq!(go1.request_response.as_ref().unwrap().response_delay, Duration::from_millis(200));
        assert_eq!(go1.autonat(AutonatVersion::V1), Some(AutonatRole::Client));
        assert_eq!(go1.port_mapping, None);
        let go2 = resolve(&map, "go", "go-2");
        // Its own autonat replaces the implementation's whole; request_response is the implementation's.
        assert_eq!(go2.autonat(AutonatVersion::V1), Some(AutonatRole::Server));
        assert_eq!(go2.autonat.as_ref().unwrap().throttle.as_ref().unwrap().peer_max, Some(100));
        assert_eq!(go2.request_response, go1.request_response);
        assert_eq!(go2.port_mapping.unwrap().deadline, Duration::from_secs(30));
        assert!(resolve(&map, "rust", "rust-1").is_empty());
    }

    #[test]
    fn unknown_fields_and_values_are_refused() {
        let e = serde_saphyr::from_str::<RolesMap>("go: {request_response: {delay: 1s}}\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `delay`"), "{e}");
        let e = serde_saphyr::from_str::<RolesMap>("go: {autonat: {v1: referee}}\n").unwrap_err();
        assert!(e.to_string().contains("referee"), "{e}");
        let e = serde_saphyr::from_str::<RolesMap>("go: {request_response: {failure: explode}}\n").unwrap_err();
        assert!(e.to_string().contains("explode"), "{e}");
        let e = serde_saphyr::from_str::<RolesMap>("rust: {swarm: {handler_queue: 0}}\n").unwrap_err();
        assert!(e.to_string().contains("nonzero"), "{e}");
        let e = serde_saphyr::from_str::<RolesMap>("rust: {swarm: {queue: 1}}\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `queue`"), "{e}");
    }

    #[test]
    fn roles_read_back_from_json_as_written() {
        let map = roles(
            "go: {request_response: {response_delay: 1s, response_size: 10, failure: stall}, \
             autonat: {v1: both, v2: client, throttle: {global_max: 5}}, port_mapping: {deadline: 5s}, \
             swarm: {handler_queue: 2}}\n",
        );
        let r = resolve(&map, "go", "go-1");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Roles>(&json).unwrap(), r, "{json}");
        let g: Gateway = serde_saphyr::from_str("quirk: {window: 200ms}\n").unwrap();
        assert_eq!(g.quirk.as_ref().unwrap().answer, QuirkAnswer::None);
        assert_eq!(serde_json::from_str::<Gateway>(&serde_json::to_string(&g).unwrap()).unwrap(), g);
    }
}
