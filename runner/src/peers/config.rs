//! The configuration a peer gets at start (`MESHGATE_PEER_CONFIG`, section 1 of docs/peer-contract.md).

use contract::config::{self as wire, PeerConfig};

use crate::cases::{Case, LISTEN_PORT};
use contract::features;

use crate::matrix::roles::{AutonatRole, AutonatRoles, AutonatVersion, Failure, RequestResponseRole, Roles};
use crate::matrix::{MessageId, Muxer, Security, Transport};

/// The configuration of the case's peer `i`.
pub fn for_peer(case: &Case, i: usize) -> PeerConfig {
    let g = &case.gossipsub;
    let peer = &case.peers[i];
    let security: Vec<wire::Security> = case.security_offer(i).into_iter().map(security_of).collect();
    let muxer: Vec<wire::Muxer> = case.muxer_offer(i).into_iter().map(muxer_of).collect();
    PeerConfig {
        seed: peer.seed,
        listen_port: LISTEN_PORT,
        transport: transport_of(case.transport),
        // The first choice, for peers that predate `offer`.
        security: Some(security[0]),
        muxer: Some(muxer[0]),
        offer: (peer.offer != crate::matrix::Offer::default()).then_some(wire::Offer {
            security: Some(security),
            muxer: Some(muxer),
        }),
        gossipsub: wire::Gossipsub {
            topics: g.topics.clone(),
            d: g.d,
            d_lo: g.d_lo,
            d_hi: g.d_hi,
            heartbeat_ms: g.heartbeat.map(|h| h.as_millis() as u64),
            max_transmit_size: g.max_transmit_size,
            message_id: message_id_of(g.message_id),
        },
        streams_interval_ms: case.streams_interval().as_millis() as u64,
        require: required(&peer.roles),
        request_response: peer.roles.request_response.as_ref().map(request_response_of),
        autonat: peer.roles.autonat.as_ref().map(autonat_of),
        port_mapping: peer.roles.port_mapping.as_ref().map(|p| wire::PortMapping {
            deadline_ms: Some(millis(p.deadline)),
        }),
        // The backend sets it where it cannot give the peer a stdin (the swarm backend).
        control_port: None,
        // The backend sets it where it gives the peer a pipe for its events (the Docker backend).
        events_path: None,
        swarm: peer.roles.swarm.as_ref().map(|s| wire::Swarm {
            handler_queue: s.handler_queue.map(std::num::NonZeroU32::get),
        }),
    }
}

/// The feature of every role the peer has: a version without one answers `unsupported` at start, and the case is
/// skipped with its reason rather than run without the role.
fn required(roles: &Roles) -> Vec<String> {
    let mut require = Vec::new();
    if roles.request_response.is_some() {
        require.push(features::REQUEST_RESPONSE);
    }
    for (version, [server, client]) in [
        (AutonatVersion::V1, [features::AUTONAT_V1_SERVER, features::AUTONAT_V1_CLIENT]),
        (AutonatVersion::V2, [features::AUTONAT_V2_SERVER, features::AUTONAT_V2_CLIENT]),
    ] {
        if let Some(role) = roles.autonat(version) {
            if role.serves() {
                require.push(server);
            }
            if role.asks() {
                require.push(client);
            }
        }
    }
    if roles.port_mapping.is_some() {
        require.push(features::PORT_MAPPING);
    }
    require.into_iter().map(str::to_owned).collect()
}

fn millis(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

fn request_response_of(r: &RequestResponseRole) -> wire::RequestResponse {
    wire::RequestResponse {
        response_delay_ms: (!r.response_delay.is_zero()).then(|| millis(r.response_delay)),
        response_size: r.response_size,
        failure: r.failure.map(|f| match f {
            Failure::Drop => wire::ResponderFailure::Drop,
            Failure::Stall => wire::ResponderFailure::Stall,
        }),
    }
}

fn autonat_of(a: &AutonatRoles) -> wire::Autonat {
    let throttle = a.throttle.clone().unwrap_or_default();
    wire::Autonat {
        v1: a.v1.map(autonat_role_of),
        v2: a.v2.map(autonat_role_of),
        throttle_peer_max: throttle.peer_max,
        throttle_global_max: throttle.global_max,
        throttle_period_ms: throttle.period.map(millis),
    }
}

fn autonat_role_of(r: AutonatRole) -> wire::AutonatRole {
    match r {
        AutonatRole::Server => wire::AutonatRole::Server,
        AutonatRole::Client => wire::AutonatRole::Client,
        AutonatRole::Both => wire::AutonatRole::Both,
    }
}

pub fn autonat_version_of(v: AutonatVersion) -> contract::commands::AutonatVersion {
    match v {
        AutonatVersion::V1 => contract::commands::AutonatVersion::V1,
        AutonatVersion::V2 => contract::commands::AutonatVersion::V2,
    }
}

// The matrix's YAML spellings and the contract's wire spellings are separate facts, mapped here one by one, so
// that renaming either never silently changes the other.

pub fn transport_of(t: Transport) -> wire::Transport {
    match t {
        Transport::Tcp => wire::Transport::Tcp,
        Transport::QuicV1 => wire::Transport::QuicV1,
    }
}

pub fn security_of(s: Security) -> wire::Security {
    match s {
        Security::Noise => wire::Security::Noise,
        Security::Tls => wire::Security::Tls,
    }
}

pub fn muxer_of(m: Muxer) -> wire::Muxer {
    match m {
        Muxer::Yamux => wire::Muxer::Yamux,
        Muxer::Mplex => wire::Muxer::Mplex,
    }
}

fn message_id_of(m: MessageId) -> wire::MessageId {
    match m {
        MessageId::Default => wire::MessageId::Default,
        MessageId::ContentSha256 => wire::MessageId::ContentSha256,
    }
}

/// The multiaddr other peers dial to reach a peer.
pub fn dial_addr(case: &Case, addr: std::net::SocketAddr, peer_id: &str) -> String {
    format!("{}/p2p/{peer_id}", listen_addr(case, addr))
}

/// A peer's address without its peer id: what `request` and `autonat_probe` carry beside the peer id.
pub fn listen_addr(case: &Case, addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => format!("/ip4/{v4}"),
        std::net::IpAddr::V6(v6) => format!("/ip6/{v6}"),
    };
    let port = addr.port();
    match case.transport {
        Transport::Tcp => format!("{ip}/tcp/{port}"),
        Transport::QuicV1 => format!("{ip}/udp/{port}/quic-v1"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::label;

    #[test]
    fn config_matches_the_contract() {
        let kit = crate::testkit::Kit::new(&["rust-1", "go-1"]);
        let json = for_peer(&kit.case, 1).to_json();
        assert_eq!(
            json,
            r#"{"seed":2,"listen_port":4001,"transport":"tcp","security":"noise","muxer":"yamux","gossipsub":{"topics":["meshgate"]},"streams_interval_ms":1000}"#
        );
        assert_eq!(label(&Transport::QuicV1), "quic-v1");
    }

    #[test]
    fn content_message_ids_are_asked_for_only_when_chosen() {
        let mut kit = crate::testkit::Kit::new(&["rust-1", "go-1"]);
        kit.case.gossipsub.message_id = MessageId::ContentSha256;
        let json = for_peer(&kit.case, 0).to_json();
        assert!(json.contains(r#""message_id":"content-sha256""#), "{json}");
    }

    #[test]
    fn roles_map_to_the_contract_and_require_their_features() {
        let m = crate::matrix::Matrix::parse(std::path::Path::new("m.yaml"), crate::matrix::tests::ROLES).unwrap();
        let case = &crate::cases::expand(&m)[0];
        let json = |i: usize| for_peer(case, i).to_json();
        // go-1: go's roles.
        let go1 = case.peers.iter().position(|p| p.name == "go-1").unwrap();
        let rust1 = case.peers.iter().position(|p| p.name == "rust-1").unwrap();
        assert_eq!(
            json(go1),
            r#"{"seed":2,"listen_port":4001,"transport":"tcp","security":"noise","muxer":"yamux","gossipsub":{"topics":["meshgate"]},"streams_interval_ms":1000,"require":["request-response","autonat-v1-client","port-mapping"],"request_response":{"response_delay_ms":50,"failure":"drop"},"autonat":{"v1":"client"},"port_mapping":{"deadline_ms":30000}}"#
        );
        assert_eq!(
            json(rust1),
            r#"{"seed":1,"listen_port":4001,"transport":"tcp","security":"noise","muxer":"yamux","gossipsub":{"topics":["meshgate"]},"streams_interval_ms":1000,"require":["request-response","autonat-v1-server"],"request_response":{},"autonat":{"v1":"server","throttle_peer_max":100,"throttle_global_max":1000,"throttle_period_ms":100},"swarm":{"handler_queue":1}}"#
        );
        let both = Roles {
            autonat: Some(AutonatRoles { v1: Some(AutonatRole::Both), v2: Some(AutonatRole::Server), throttle: None }),
            ..Default::default()
        };
        assert_eq!(required(&both), ["autonat-v1-server", "autonat-v1-client", "autonat-v2-server"]);
        // Every wire spelling is one the contract parses back.
        for i in 0..case.peers.len() {
            let back: PeerConfig = serde_json::from_str(&json(i)).unwrap();
            assert_eq!(back, for_peer(case, i));
        }
    }

    #[test]
    fn addresses() {
        let kit = crate::testkit::Kit::new(&["rust-1", "go-1"]);
        assert_eq!(
            dial_addr(&kit.case, "10.1.0.2:4001".parse().unwrap(), "12D3"),
            "/ip4/10.1.0.2/tcp/4001/p2p/12D3"
        );
        assert_eq!(listen_addr(&kit.case, "10.1.0.2:4001".parse().unwrap()), "/ip4/10.1.0.2/tcp/4001");
    }
}
