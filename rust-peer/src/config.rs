//! The peer's configuration (the JSON in `MESHGATE_PEER_CONFIG`) and the identity it derives.

use std::{fmt, time::Duration};

use libp2p::{gossipsub, identity};

use contract::config::CONFIG_VAR;
#[cfg(test)]
use contract::config::DEFAULT_STREAMS_INTERVAL_MS;
pub use contract::config::{MessageId as MessageIdFn, Muxer, PeerConfig, Security, Transport};

/// The contract's configuration once validated: everything that would later fail on a bad value
/// has failed in [`Config::from_json`]. Unknown fields are ignored so that a newer runner can add
/// fields without breaking this peer; unknown *values* of known fields are errors.
#[derive(Debug, Clone)]
pub struct Config(PeerConfig);

impl std::ops::Deref for Config {
    type Target = PeerConfig;

    fn deref(&self) -> &PeerConfig {
        &self.0
    }
}

/// The `content-sha256` message id of some message data.
pub fn content_sha256_id(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    Sha256::digest(data)
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// What the transport is actually built from, once the configuration is resolved: for tcp,
/// the security protocols in order of preference (the muxer is yamux, the only one there is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stack {
    Tcp(Vec<Security>),
    Quic,
}

/// The configuration cannot be used at all: exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The configuration is valid but asks for something this implementation lacks: exit status 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub feature: String,
    pub reason: String,
}

impl Config {
    /// Parses and validates; everything that would later fail on a bad value fails here.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let config = Config(
            serde_json::from_str(json).map_err(|e| ConfigError(format!("{CONFIG_VAR}: {e}")))?,
        );
        if config.transport == Transport::Tcp {
            if config.security_offers().is_empty() {
                return Err(ConfigError(
                    "`security` is required for transport tcp".into(),
                ));
            }
            if config.muxer_offers().is_empty() {
                return Err(ConfigError("`muxer` is required for transport tcp".into()));
            }
        }
        let offer = config.offer.clone().unwrap_or_default();
        check_offer("offer.security", offer.security.as_deref())?;
        check_offer("offer.muxer", offer.muxer.as_deref())?;
        if config.streams_interval_ms == 0 {
            return Err(ConfigError("`streams_interval_ms` must be positive".into()));
        }
        config.gossipsub_config()?;
        if config.swarm.as_ref().and_then(|s| s.handler_queue) == Some(0) {
            return Err(ConfigError("`swarm.handler_queue` must be positive".into()));
        }
        Ok(config)
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let json =
            std::env::var(CONFIG_VAR).map_err(|e| ConfigError(format!("{CONFIG_VAR}: {e}")))?;
        Self::from_json(&json)
    }

    /// The security protocols to offer, in order of preference: `offer.security` when given,
    /// else the single `security`.
    pub fn security_offers(&self) -> Vec<Security> {
        match self.offer.as_ref().and_then(|o| o.security.as_ref()) {
            Some(list) => list.clone(),
            None => self.security.into_iter().collect(),
        }
    }

    /// The muxers to offer, in order of preference: `offer.muxer` when given, else `muxer`.
    pub fn muxer_offers(&self) -> Vec<Muxer> {
        match self.offer.as_ref().and_then(|o| o.muxer.as_ref()) {
            Some(list) => list.clone(),
            None => self.muxer.into_iter().collect(),
        }
    }

    /// The first feature that `require` names and this build lacks (`features`), if any: a name
    /// this peer does not know is lacking too, so that the probe's reserved name always is.
    pub fn lacking(&self, features: &[&str]) -> Option<Unsupported> {
        let missing = self
            .require
            .iter()
            .find(|f| !features.contains(&f.as_str()))?;
        Some(Unsupported {
            feature: missing.clone(),
            reason: format!(
                "the configuration requires `{missing}`, which this rust-libp2p {} peer does not have \
                 (it has: {})",
                crate::compat::libp2p_version(),
                features.join(", ")
            ),
        })
    }

    /// The first configured role this implementation cannot take, if any (checked at start, like
    /// `require`).
    pub fn unsupported_role(&self) -> Option<Unsupported> {
        // libp2p-upnp refuses a gateway whose external address is not global
        // (`Event::NonRoutableGateway`, `is_addr_global` in its tokio.rs) and has no option to
        // accept one; case networks, and the gateway they run, are private on purpose.
        self.port_mapping.as_ref()?;
        Some(Unsupported {
            feature: contract::features::PORT_MAPPING.into(),
            reason: format!(
                "rust-libp2p {}'s upnp behaviour refuses any gateway whose external address is not \
                 a global IP (NonRoutableGateway) and cannot be told otherwise; case networks are private",
                crate::compat::libp2p_version()
            ),
        })
    }

    /// Resolves the transport stack, or says what this implementation cannot do.
    pub fn stack(&self) -> Result<Stack, Unsupported> {
        match self.transport {
            Transport::QuicV1 => Ok(Stack::Quic),
            Transport::Tcp if self.muxer_offers().contains(&Muxer::Mplex) => Err(Unsupported {
                feature: "muxer-mplex".into(),
                reason: format!(
                    "rust-libp2p {} ships no mplex stream muxer (libp2p-mplex was deprecated and \
                     removed from libp2p in 0.52); only yamux is available over tcp",
                    crate::compat::libp2p_version()
                ),
            }),
            // `from_json` guarantees at least one security protocol for tcp.
            Transport::Tcp => Ok(Stack::Tcp(self.security_offers())),
        }
    }

    /// The swarm's configuration: `swarm.handler_queue` as its notify-handler buffer size (the
    /// same `swarm::Config` call in libp2p 0.54 to 0.57), the library's defaults otherwise.
    pub fn swarm_config(&self, idle_connection_timeout: Duration) -> libp2p::swarm::Config {
        let config = libp2p::swarm::Config::with_tokio_executor()
            .with_idle_connection_timeout(idle_connection_timeout);
        match self.swarm.as_ref().and_then(|s| s.handler_queue) {
            // `from_json` refused 0.
            Some(n) => config.with_notify_handler_buffer_size(
                std::num::NonZeroUsize::new(n as usize).expect("validated positive"),
            ),
            None => config,
        }
    }

    pub fn streams_interval(&self) -> Duration {
        Duration::from_millis(self.streams_interval_ms)
    }

    /// The gossipsub configuration: library defaults overridden by whatever was given, strict
    /// validation (signed messages required), the configured message-id function.
    pub fn gossipsub_config(&self) -> Result<gossipsub::Config, ConfigError> {
        let params = &self.gossipsub;
        let defaults = gossipsub::Config::default();
        let degree = |d: Option<u32>, default: usize| d.map_or(default, |d| d as usize);
        let d = degree(params.d, defaults.mesh_n());
        let d_lo = degree(params.d_lo, defaults.mesh_n_low());
        let d_hi = degree(params.d_hi, defaults.mesh_n_high());
        if !(d_lo <= d && d <= d_hi) {
            return Err(ConfigError(format!(
                "gossipsub: need d_lo <= d <= d_hi, got d={d} d_lo={d_lo} d_hi={d_hi}"
            )));
        }
        // d = 0 is allowed where the library allows it (d_lo 0 too): a peer that keeps no mesh
        // and takes messages by flood publishing alone, as bootstrappers do (rust-libp2p#6100:
        // before libp2p-gossipsub 0.49.1 such a peer never announced its subscriptions to peers
        // that connected later, and dropped every message of the topic).

        let mut builder = gossipsub::ConfigBuilder::default();
        builder
            .validation_mode(gossipsub::ValidationMode::Strict)
            .mesh_n(d)
            .mesh_n_low(d_lo)
            .mesh_n_high(d_hi)
            // D_out must stay <= D/2 and < D_lo (gossipsub spec); the default of 2 breaks small
            // meshes, which experiments do ask for, so shrink it only when it has to (to 0 with
            // d_lo 0, which the library allows: mesh_outbound_min <= mesh_n_low).
            .mesh_outbound_min(
                defaults
                    .mesh_outbound_min()
                    .min(d / 2)
                    .min(d_lo.saturating_sub(1)),
            );
        if let Some(ms) = params.heartbeat_ms {
            if ms == 0 {
                return Err(ConfigError(
                    "gossipsub: heartbeat_ms must be positive".into(),
                ));
            }
            builder.heartbeat_interval(Duration::from_millis(ms));
        }
        if let Some(size) = params.max_transmit_size {
            builder.max_transmit_size(usize::try_from(size).unwrap_or(usize::MAX));
        }
        if params.message_id == MessageIdFn::ContentSha256 {
            builder.message_id_fn(|m: &gossipsub::Message| {
                gossipsub::MessageId::from(content_sha256_id(&m.data))
            });
        }
        builder
            .build()
            .map_err(|e| ConfigError(format!("gossipsub: {e}")))
    }
}

/// A preference list of `offer`, if given, must name something, each value once.
fn check_offer<T: PartialEq + fmt::Debug>(
    name: &str,
    list: Option<&[T]>,
) -> Result<(), ConfigError> {
    let Some(list) = list else {
        return Ok(());
    };
    if list.is_empty() {
        return Err(ConfigError(format!("`{name}` must not be empty")));
    }
    for (i, value) in list.iter().enumerate() {
        if list[..i].contains(value) {
            return Err(ConfigError(format!("`{name}` names {value:?} twice")));
        }
    }
    Ok(())
}

/// The Ed25519 identity of a seed: the secret is the seed's 8 little-endian bytes followed by
/// 24 zero bytes, so every implementation derives the same peer id from the same seed.
pub fn keypair(seed: u64) -> identity::Keypair {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&seed.to_le_bytes());
    identity::Keypair::ed25519_from_bytes(secret)
        .expect("every 32-byte string is a valid ed25519 secret key")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{
        "seed": 3, "listen_port": 4001, "transport": "tcp", "security": "noise", "muxer": "yamux",
        "gossipsub": {"topics": ["meshgate"], "d": 6, "d_lo": 5, "d_hi": 12,
                      "heartbeat_ms": 700, "max_transmit_size": 1048576},
        "streams_interval_ms": 250,
        "some_future_field": true
    }"#;

    #[test]
    fn parses_the_contract_example() {
        let config = Config::from_json(FULL).expect("valid config");
        assert_eq!(config.seed, 3);
        assert_eq!(config.listen_port, 4001);
        assert_eq!(config.stack(), Ok(Stack::Tcp(vec![Security::Noise])));
        assert_eq!(config.gossipsub.topics, vec!["meshgate".to_string()]);
        assert_eq!(config.streams_interval(), Duration::from_millis(250));
        let gs = config.gossipsub_config().expect("valid gossipsub config");
        assert_eq!((gs.mesh_n(), gs.mesh_n_low(), gs.mesh_n_high()), (6, 5, 12));
        assert_eq!(gs.heartbeat_interval(), Duration::from_millis(700));
        assert_eq!(gs.max_transmit_size(), 1048576);
        assert!(matches!(
            gs.validation_mode(),
            gossipsub::ValidationMode::Strict
        ));
    }

    #[test]
    fn quic_needs_neither_security_nor_muxer_and_defaults_apply() {
        let config = Config::from_json(r#"{"seed":1,"listen_port":0,"transport":"quic-v1"}"#)
            .expect("valid config");
        assert_eq!(config.stack(), Ok(Stack::Quic));
        assert_eq!(config.streams_interval_ms, DEFAULT_STREAMS_INTERVAL_MS);
        let gs = config.gossipsub_config().expect("valid gossipsub config");
        let defaults = gossipsub::Config::default();
        assert_eq!(gs.mesh_n(), defaults.mesh_n());
        assert_eq!(gs.heartbeat_interval(), defaults.heartbeat_interval());
    }

    #[test]
    fn small_meshes_are_accepted() {
        let config = Config::from_json(
            r#"{"seed":1,"listen_port":0,"transport":"quic-v1",
                "gossipsub":{"d":2,"d_lo":1,"d_hi":3}}"#,
        )
        .expect("valid config");
        let gs = config.gossipsub_config().expect("valid gossipsub config");
        assert_eq!((gs.mesh_n(), gs.mesh_n_low(), gs.mesh_n_high()), (2, 1, 3));
        assert_eq!(gs.mesh_outbound_min(), 0);
    }

    #[test]
    fn no_mesh_is_accepted() {
        // d = 0 needs d_lo = 0; d_hi may be 0 (what go-libp2p-pubsub takes) or more.
        for d_hi in [0, 12] {
            let config = Config::from_json(&format!(
                r#"{{"seed":1,"listen_port":0,"transport":"quic-v1",
                    "gossipsub":{{"d":0,"d_lo":0,"d_hi":{d_hi}}}}}"#
            ))
            .expect("valid config");
            let gs = config.gossipsub_config().expect("d = 0 is a valid gossipsub config");
            assert_eq!(
                (gs.mesh_n(), gs.mesh_n_low(), gs.mesh_n_high()),
                (0, 0, d_hi)
            );
            assert_eq!(gs.mesh_outbound_min(), 0);
        }
        // d = 0 with the library's d_lo (5) is out of order, and said so.
        let e = Config::from_json(
            r#"{"seed":1,"listen_port":0,"transport":"quic-v1","gossipsub":{"d":0}}"#,
        )
        .expect_err("d_lo 5 > d 0");
        assert!(e.0.contains("d_lo <= d <= d_hi"), "{}", e.0);
    }

    #[test]
    fn message_id_function() {
        let parse = |gossipsub: &str| {
            Config::from_json(&format!(
                r#"{{"seed":1,"listen_port":0,"transport":"quic-v1","gossipsub":{gossipsub}}}"#
            ))
        };
        assert_eq!(
            parse("{}").unwrap().gossipsub.message_id,
            MessageIdFn::Default
        );
        assert_eq!(
            parse(r#"{"message_id":"default"}"#)
                .unwrap()
                .gossipsub
                .message_id,
            MessageIdFn::Default
        );
        let config = parse(r#"{"message_id":"content-sha256"}"#).unwrap();
        assert_eq!(config.gossipsub.message_id, MessageIdFn::ContentSha256);
        config.gossipsub_config().expect("valid gossipsub config");
        assert!(parse(r#"{"message_id":"sha1"}"#).is_err());
        // The id both implementations must agree on.
        assert_eq!(
            content_sha256_id(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn required_features_it_lacks_are_unsupported() {
        let with = |require: &str| {
            Config::from_json(&format!(
                r#"{{"seed":1,"listen_port":0,"transport":"quic-v1","require":{require}}}"#
            ))
            .expect("valid config")
        };
        let features = crate::compat::features();
        assert!(with(r#"["transport-quic-v1","dial-mode-new"]"#)
            .lacking(&features)
            .is_none());
        let lacking = with(r#"["dial-mode-new","drop-protocol"]"#).lacking(&features);
        assert_eq!(lacking.expect("drop-protocol").feature, "drop-protocol");
        let reserved = with(&format!(r#"["{}"]"#, contract::features::PROBE_RESERVED));
        assert!(reserved.lacking(&features).is_some());
    }

    #[test]
    fn revision_2_roles() {
        let with = |roles: &str| {
            Config::from_json(&format!(
                r#"{{"seed":1,"listen_port":0,"transport":"quic-v1",{roles}}}"#
            ))
            .expect("valid config")
        };
        let config = with(
            r#""request_response":{"response_delay_ms":5,"failure":"stall"},
               "autonat":{"v1":"server","v2":"both","throttle_peer_max":100}"#,
        );
        assert!(config.unsupported_role().is_none());
        let rr = config.request_response.clone().expect("request_response");
        assert_eq!(rr.failure, Some(contract::config::ResponderFailure::Stall));
        let mapping = with(r#""port_mapping":{}"#).unsupported_role();
        assert_eq!(mapping.expect("port mapping").feature, "port-mapping");
        let features = crate::compat::features();
        for feature in ["request-response", "autonat-v1-server", "autonat-v1-client"] {
            let require = with(&format!(r#""require":["{feature}"]"#));
            assert!(require.lacking(&features).is_none(), "{feature}");
        }
        for feature in ["autonat-v1-vanish", "port-mapping"] {
            let require = with(&format!(r#""require":["{feature}"]"#));
            assert_eq!(require.lacking(&features).expect(feature).feature, feature);
        }
        assert!(Config::from_json(
            r#"{"seed":1,"listen_port":0,"transport":"quic-v1","request_response":{"failure":"explode"}}"#
        )
        .is_err());
    }

    #[test]
    fn swarm_handler_queue_must_be_positive() {
        let parse = |swarm: &str| {
            Config::from_json(&format!(
                r#"{{"seed":1,"listen_port":0,"transport":"quic-v1","swarm":{swarm}}}"#
            ))
        };
        let config = parse(r#"{"handler_queue":1}"#).expect("valid config");
        assert_eq!(config.swarm.as_ref().and_then(|s| s.handler_queue), Some(1));
        config.swarm_config(Duration::from_secs(1));
        let e = parse(r#"{"handler_queue":0}"#).expect_err("0 is refused");
        assert!(e.to_string().contains("swarm.handler_queue"), "{e}");
        assert!(parse("{}").expect("valid config").swarm.is_some());
    }

    #[test]
    fn mplex_is_unsupported_not_invalid() {
        let json =
            r#"{"seed":1,"listen_port":0,"transport":"tcp","security":"tls","muxer":"mplex"}"#;
        let config = Config::from_json(json).expect("valid config");
        let unsupported = config.stack().expect_err("mplex is not available");
        assert_eq!(unsupported.feature, "muxer-mplex");
    }

    #[test]
    fn offer_lists_replace_the_single_values() {
        let config = Config::from_json(
            r#"{"seed":1,"listen_port":0,"transport":"tcp","security":"tls","muxer":"yamux",
                "offer":{"security":["tls","noise"],"muxer":["yamux"]}}"#,
        )
        .expect("valid config");
        assert_eq!(
            config.stack(),
            Ok(Stack::Tcp(vec![Security::Tls, Security::Noise]))
        );
        // Either list may be absent; with it, the single value may be too.
        let config = Config::from_json(
            r#"{"seed":1,"listen_port":0,"transport":"tcp","muxer":"yamux",
                "offer":{"security":["noise","tls"]}}"#,
        )
        .expect("valid config");
        assert_eq!(
            config.stack(),
            Ok(Stack::Tcp(vec![Security::Noise, Security::Tls]))
        );
        assert_eq!(config.muxer_offers(), vec![Muxer::Yamux]);
        // mplex anywhere in the muxer offer cannot be honoured; quic ignores the offer.
        let config = Config::from_json(
            r#"{"seed":1,"listen_port":0,"transport":"tcp","security":"tls","muxer":"yamux",
                "offer":{"muxer":["yamux","mplex"]}}"#,
        )
        .expect("valid config");
        assert_eq!(config.stack().expect_err("mplex").feature, "muxer-mplex");
        let config = Config::from_json(
            r#"{"seed":1,"listen_port":0,"transport":"quic-v1","offer":{"muxer":["mplex"]}}"#,
        )
        .expect("valid config");
        assert_eq!(config.stack(), Ok(Stack::Quic));
        for bad in [
            r#"{"security":[]}"#,
            r#"{"security":["tls","tls"]}"#,
            r#"{"security":["plaintext"]}"#,
            r#"{"muxer":["spdy"]}"#,
            r#"{"security":"tls"}"#,
        ] {
            let json = format!(
                r#"{{"seed":1,"listen_port":0,"transport":"tcp","security":"tls","muxer":"yamux","offer":{bad}}}"#
            );
            assert!(
                Config::from_json(&json).is_err(),
                "offer {bad} was accepted"
            );
        }
    }

    #[test]
    fn rejects_bad_configs() {
        let bad = [
            ("not json", "{"),
            ("missing seed", r#"{"listen_port":0,"transport":"quic-v1"}"#),
            (
                "negative seed",
                r#"{"seed":-1,"listen_port":0,"transport":"quic-v1"}"#,
            ),
            (
                "port too large",
                r#"{"seed":1,"listen_port":70000,"transport":"quic-v1"}"#,
            ),
            (
                "unknown transport",
                r#"{"seed":1,"listen_port":0,"transport":"webrtc"}"#,
            ),
            (
                "unknown security",
                r#"{"seed":1,"listen_port":0,"transport":"tcp","security":"plaintext","muxer":"yamux"}"#,
            ),
            (
                "unknown muxer",
                r#"{"seed":1,"listen_port":0,"transport":"tcp","security":"noise","muxer":"spdy"}"#,
            ),
            (
                "tcp without security",
                r#"{"seed":1,"listen_port":0,"transport":"tcp","muxer":"yamux"}"#,
            ),
            (
                "zero streams interval",
                r#"{"seed":1,"listen_port":0,"transport":"quic-v1","streams_interval_ms":0}"#,
            ),
            (
                "d outside d_lo..d_hi",
                r#"{"seed":1,"listen_port":0,"transport":"quic-v1","gossipsub":{"d":3,"d_lo":4,"d_hi":12}}"#,
            ),
            (
                "zero heartbeat",
                r#"{"seed":1,"listen_port":0,"transport":"quic-v1","gossipsub":{"heartbeat_ms":0}}"#,
            ),
            (
                "unknown message_id",
                r#"{"seed":1,"listen_port":0,"transport":"quic-v1","gossipsub":{"message_id":"sha1"}}"#,
            ),
            (
                "non-numeric max_transmit_size",
                r#"{"seed":1,"listen_port":0,"transport":"quic-v1","gossipsub":{"max_transmit_size":"big"}}"#,
            ),
        ];
        for (what, json) in bad {
            assert!(Config::from_json(json).is_err(), "{what} was accepted");
        }
    }

    #[test]
    fn seeds_give_the_agreed_peer_ids() {
        // Values computed independently (Ed25519 public key of the seed, protobuf-encoded into an
        // identity multihash, base58) so the go peer can be checked against the same ids.
        let id = |seed| keypair(seed).public().to_peer_id().to_string();
        assert_eq!(
            id(0),
            "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
        );
        assert_eq!(
            id(1),
            "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X"
        );
        assert_ne!(id(2), id(1));
    }
}
