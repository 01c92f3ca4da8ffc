//! The differences between the libp2p releases this peer builds against (0.54 to 0.57), in one
//! place. build.rs sets `libp2p_lt_0_<minor>` from the libp2p version in Cargo.lock, and only
//! this module looks at those cfgs.

use libp2p::gossipsub::{self, IdentTopic};

/// The libp2p release compiled in, as found in Cargo.lock (`"unknown"` without one).
pub fn libp2p_version() -> String {
    crate::versions()
        .remove("libp2p")
        .unwrap_or_else(|| "unknown".into())
}

/// The optional features of docs/peer-contract.md this build can do, sorted, for `started`.
/// The same at libp2p 0.54 to 0.57: tcp with noise or tls and yamux, quic-v1, a new connection
/// on request (`PeerCondition::Always` with a new port), raw streams (libp2p-stream),
/// request-response (its `json` codec), AutoNAT v1 and v2 in both roles (libp2p-autonat has
/// `v1` and `v2` from 0.13, libp2p 0.54). Not `drop-protocol` (no behaviour can withdraw a
/// protocol while running), `muxer-mplex`, `autonat-v1-vanish` (the v1 client cannot drop a
/// connection between sending a dial request and its answer) nor `port-mapping` (see
/// `Config::unsupported_role`).
pub fn features() -> Vec<&'static str> {
    use contract::features::{
        AUTONAT_V1_CLIENT, AUTONAT_V1_SERVER, AUTONAT_V2_CLIENT, AUTONAT_V2_SERVER, DIAL_MODE_NEW,
        OPEN_STREAMS, REQUEST_RESPONSE,
    };
    vec![
        AUTONAT_V1_CLIENT,
        AUTONAT_V1_SERVER,
        AUTONAT_V2_CLIENT,
        AUTONAT_V2_SERVER,
        DIAL_MODE_NEW,
        "muxer-yamux",
        OPEN_STREAMS,
        REQUEST_RESPONSE,
        "security-noise",
        "security-tls",
        "transport-quic-v1",
        "transport-tcp",
    ]
}

/// Gives request-response an address to dial `peer` at. `Swarm::add_peer_address` reaches only
/// behaviours that keep addresses, which request-response up to 0.30 (libp2p 0.57) does not
/// (it ignores `FromSwarm::NewExternalAddrOfPeer`); its own, deprecated `add_address` is what
/// its `send_request` dials from in every release.
pub fn add_request_address(
    request_response: &mut crate::behaviour::RequestResponse,
    peer: &libp2p::PeerId,
    addr: libp2p::Multiaddr,
) {
    #[allow(deprecated)]
    request_response.add_address(peer, addr);
}

/// Leaves a gossipsub topic: `Ok(false)` if it was not joined.
///
/// gossipsub 0.47 (libp2p 0.54) returns `Result<bool, PublishError>`; later ones a `bool`.
pub fn unsubscribe(
    gossipsub: &mut gossipsub::Behaviour,
    topic: &IdentTopic,
) -> Result<bool, String> {
    #[cfg(libp2p_lt_0_55)]
    return gossipsub.unsubscribe(topic).map_err(|e| e.to_string());
    #[cfg(not(libp2p_lt_0_55))]
    Ok(gossipsub.unsubscribe(topic))
}

#[cfg(test)]
mod tests {
    #[test]
    fn features_are_sorted_and_known() {
        let features = super::features();
        let mut sorted = features.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(features, sorted);
        assert!(!features.contains(&"drop-protocol") && !features.contains(&"muxer-mplex"));
    }

    #[test]
    fn cfgs_match_the_compiled_version() {
        let version = super::libp2p_version();
        let minor: u64 = version
            .split('.')
            .nth(1)
            .and_then(|minor| minor.parse().ok())
            .unwrap_or_else(|| panic!("libp2p version {version} is not 0.x.y"));
        assert_eq!(cfg!(libp2p_lt_0_55), minor < 55, "libp2p {version}");
        assert_eq!(cfg!(libp2p_lt_0_56), minor < 56, "libp2p {version}");
        assert_eq!(cfg!(libp2p_lt_0_57), minor < 57, "libp2p {version}");
    }
}
