//! The configuration a peer gets at start (`MESHGATE_PEER_CONFIG`, section 1 of docs/peer-contract.md).

use contract::config::{self as wire, PeerConfig};

use crate::cases::{Case, LISTEN_PORT};
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
        streams_interval_ms: wire::DEFAULT_STREAMS_INTERVAL_MS,
        require: Vec::new(),
        request_response: None,
        autonat: None,
        port_mapping: None,
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
    fn addresses() {
        let kit = crate::testkit::Kit::new(&["rust-1", "go-1"]);
        assert_eq!(
            dial_addr(&kit.case, "10.1.0.2:4001".parse().unwrap(), "12D3"),
            "/ip4/10.1.0.2/tcp/4001/p2p/12D3"
        );
    }
}
