//! The configuration a peer gets at start (`MESHGATE_PEER_CONFIG`, section 1 of docs/peer-contract.md).

use serde::Serialize;

use crate::cases::{Case, LISTEN_PORT};
use crate::matrix::{MessageId, Muxer, Security, Transport};

#[derive(Debug, Serialize)]
pub struct PeerConfig {
    pub seed: u64,
    pub listen_port: u16,
    pub transport: Transport,
    pub security: Security,
    pub muxer: Muxer,
    pub gossipsub: GossipsubConfig,
    pub streams_interval_ms: u64,
    /// Preference orders, sent only when the matrix gives the implementation an `offer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<Offer>,
    /// Features the peer must have (contract::config::PeerConfig::require); runs send none, `meshgate probe` one
    /// no peer has.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub require: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Offer {
    pub security: Vec<Security>,
    pub muxer: Vec<Muxer>,
}

#[derive(Debug, Serialize)]
pub struct GossipsubConfig {
    pub topics: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_lo: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d_hi: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_transmit_size: Option<u64>,
    /// Sent only when not the library default, so peers that predate the field keep working.
    #[serde(skip_serializing_if = "is_default")]
    pub message_id: MessageId,
}

fn is_default(m: &MessageId) -> bool {
    *m == MessageId::Default
}

impl PeerConfig {
    /// The configuration of the case's peer `i`.
    pub fn for_peer(case: &Case, i: usize) -> Self {
        let g = &case.gossipsub;
        let peer = &case.peers[i];
        let (security, muxer) = (case.security_offer(i), case.muxer_offer(i));
        PeerConfig {
            seed: peer.seed,
            listen_port: LISTEN_PORT,
            transport: case.transport,
            // The first choice, for peers that predate `offer`.
            security: security[0],
            muxer: muxer[0],
            offer: (peer.offer != crate::matrix::Offer::default()).then_some(Offer { security, muxer }),
            gossipsub: GossipsubConfig {
                topics: g.topics.clone(),
                d: g.d,
                d_lo: g.d_lo,
                d_hi: g.d_hi,
                heartbeat_ms: g.heartbeat.map(|h| h.as_millis() as u64),
                max_transmit_size: g.max_transmit_size,
                message_id: g.message_id,
            },
            streams_interval_ms: 1000,
            require: Vec::new(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("peer config serialises")
    }
}

/// The multiaddr other peers dial to reach a peer.
pub fn dial_addr(case: &Case, addr: std::net::SocketAddr, peer_id: &str) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => format!("/ip4/{v4}"),
        std::net::IpAddr::V6(v6) => format!("/ip6/{v6}"),
    };
    let port = addr.port();
    match case.transport {
        Transport::Tcp => format!("{ip}/tcp/{port}/p2p/{peer_id}"),
        Transport::QuicV1 => format!("{ip}/udp/{port}/quic-v1/p2p/{peer_id}"),
    }
}

/// A contract command line.
pub fn command(cmd: &str, cmd_id: &str, fields: serde_json::Value) -> String {
    let mut obj = serde_json::json!({ "cmd": cmd, "cmd_id": cmd_id });
    if let (Some(o), serde_json::Value::Object(f)) = (obj.as_object_mut(), fields) {
        o.extend(f);
    }
    obj.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases::label;

    #[test]
    fn config_matches_the_contract() {
        let kit = crate::checks::testkit::Kit::new(&["rust-1", "go-1"]);
        let json = PeerConfig::for_peer(&kit.case, 1).to_json();
        assert_eq!(
            json,
            r#"{"seed":2,"listen_port":4001,"transport":"tcp","security":"noise","muxer":"yamux","gossipsub":{"topics":["meshgate"]},"streams_interval_ms":1000}"#
        );
        assert_eq!(label(&Transport::QuicV1), "quic-v1");
    }

    #[test]
    fn content_message_ids_are_asked_for_only_when_chosen() {
        let mut kit = crate::checks::testkit::Kit::new(&["rust-1", "go-1"]);
        kit.case.gossipsub.message_id = MessageId::ContentSha256;
        let json = PeerConfig::for_peer(&kit.case, 0).to_json();
        assert!(json.contains(r#""message_id":"content-sha256""#), "{json}");
    }

    #[test]
    fn commands_and_addresses() {
        assert_eq!(
            command("subscribe", "c1", serde_json::json!({"topic": "t"})),
            r#"{"cmd":"subscribe","cmd_id":"c1","topic":"t"}"#
        );
        assert_eq!(
            command("stop", "c2", serde_json::json!({})),
            r#"{"cmd":"stop","cmd_id":"c2"}"#
        );
        let kit = crate::checks::testkit::Kit::new(&["rust-1", "go-1"]);
        assert_eq!(
            dial_addr(&kit.case, "10.1.0.2:4001".parse().unwrap(), "12D3"),
            "/ip4/10.1.0.2/tcp/4001/p2p/12D3"
        );
    }
}
