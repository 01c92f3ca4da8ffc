//! The network behaviour: identify, gossipsub and ping, as in rust-libp2p's examples,
//! libp2p-stream for the streams `open_streams` holds open, and the roles of contract revision 2
//! (request-response, AutoNAT v1 and v2), each switched off by `Toggle` when not configured.

use std::time::Duration;

use contract::{
    commands::{Request, Response},
    config::{AutonatRole, ResponderFailure, REQUEST_RESPONSE_PROTOCOL},
};
use libp2p::{
    autonat, gossipsub, identify,
    identity::Keypair,
    ping, request_response,
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour},
    StreamProtocol,
};

use crate::{
    config::{Config, ConfigError},
    dial_failures,
};

/// Looks like a real deployment to the remote side; the agent version stays the library's.
const IDENTIFY_PROTOCOL_VERSION: &str = "ipfs/0.1.0";

/// Long enough for a real answer, short enough that a stalled responder ends in a recorded failure.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// request-response times out inbound streams after the same `request_timeout` as outbound
/// ones, which would close a stalled request's stream about when the requester gives up; a
/// responder that stalls on purpose waits longer, so that the requester's timeout decides.
const STALL_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// A client half that must not probe on its own: its first probe would come after this long.
const NEVER: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How soon a v1 client probes after start and again after `autonat_probe` adds a server (the
/// library probes on its own schedule; this is the schedule).
const V1_PROBE_INTERVAL: Duration = Duration::from_secs(2);

pub type RequestResponse = request_response::json::Behaviour<Request, Response>;

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub identify: identify::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub ping: ping::Behaviour,
    pub stream: libp2p_stream::Behaviour,
    pub request_response: Toggle<RequestResponse>,
    pub autonat_v1: Toggle<autonat::v1::Behaviour>,
    pub autonat_v2_client: Toggle<autonat::v2::client::Behaviour>,
    pub autonat_v2_server: Toggle<autonat::v2::server::Behaviour>,
    pub dial_failures: dial_failures::Behaviour,
}

impl Behaviour {
    pub fn new(keypair: &Keypair, config: &Config) -> Result<Self, ConfigError> {
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(keypair.clone()),
            config.gossipsub_config()?,
        )
        .map_err(|e| ConfigError::new(format!("gossipsub: {e}")))?;
        let autonat = config.autonat.clone().unwrap_or_default();
        let v2 = autonat.v2;
        Ok(Self {
            identify: identify::Behaviour::new(identify::Config::new(
                IDENTIFY_PROTOCOL_VERSION.into(),
                keypair.public(),
            )),
            gossipsub,
            ping: ping::Behaviour::default(),
            stream: libp2p_stream::Behaviour::new(),
            request_response: config
                .request_response
                .as_ref()
                .map(|responder| {
                    let timeout = match responder.failure {
                        Some(ResponderFailure::Stall) => STALL_TIMEOUT,
                        _ => REQUEST_TIMEOUT,
                    };
                    RequestResponse::new(
                        [(
                            StreamProtocol::new(REQUEST_RESPONSE_PROTOCOL),
                            request_response::ProtocolSupport::Full,
                        )],
                        request_response::Config::default().with_request_timeout(timeout),
                    )
                })
                .into(),
            autonat_v1: autonat
                .v1
                .map(|role| {
                    autonat::v1::Behaviour::new(
                        keypair.public().to_peer_id(),
                        autonat_v1_config(role, &autonat),
                    )
                })
                .into(),
            autonat_v2_client: v2
                .filter(|role| role.asks())
                .map(|_| autonat::v2::client::Behaviour::default())
                .into(),
            autonat_v2_server: v2
                .filter(|role| role.serves())
                .map(|_| autonat::v2::server::Behaviour::default())
                .into(),
            dial_failures: dial_failures::Behaviour::default(),
        })
    }
}

/// rust-libp2p's v1 behaviour is client and server at once; a half that is not configured is kept
/// from acting: a server alone never probes (no servers, connected peers not used, first probe
/// after a year), a client alone refuses every dial request (a global throttle of 0).
fn autonat_v1_config(
    role: AutonatRole,
    autonat: &contract::config::Autonat,
) -> autonat::v1::Config {
    let defaults = autonat::v1::Config::default();
    autonat::v1::Config {
        // Case networks are private on purpose.
        only_global_ips: false,
        // Servers are only the ones `autonat_probe` names.
        use_connected: false,
        boot_delay: if role.asks() {
            V1_PROBE_INTERVAL
        } else {
            NEVER
        },
        retry_interval: if role.asks() {
            V1_PROBE_INTERVAL
        } else {
            NEVER
        },
        // An `autonat_probe` may name the same server again at once.
        throttle_server_period: Duration::ZERO,
        throttle_clients_global_max: if role.serves() {
            autonat
                .throttle_global_max
                .map_or(defaults.throttle_clients_global_max, |n| n as usize)
        } else {
            0
        },
        throttle_clients_peer_max: autonat
            .throttle_peer_max
            .map_or(defaults.throttle_clients_peer_max, |n| n as usize),
        throttle_clients_period: autonat
            .throttle_period_ms
            .map_or(defaults.throttle_clients_period, Duration::from_millis),
        ..defaults
    }
}
