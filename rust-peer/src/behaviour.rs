//! The network behaviour: identify, gossipsub and ping, as in rust-libp2p's examples, and
//! libp2p-stream for the streams `open_streams` holds open.

use libp2p::{gossipsub, identify, identity::Keypair, ping, swarm::NetworkBehaviour};

use crate::config::{Config, ConfigError};

/// Looks like a real deployment to the remote side; the agent version stays the library's.
const IDENTIFY_PROTOCOL_VERSION: &str = "ipfs/0.1.0";

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub identify: identify::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub ping: ping::Behaviour,
    pub stream: libp2p_stream::Behaviour,
}

impl Behaviour {
    pub fn new(keypair: &Keypair, config: &Config) -> Result<Self, ConfigError> {
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(keypair.clone()),
            config.gossipsub_config()?,
        )
        .map_err(|e| ConfigError::new(format!("gossipsub: {e}")))?;
        Ok(Self {
            identify: identify::Behaviour::new(identify::Config::new(
                IDENTIFY_PROTOCOL_VERSION.into(),
                keypair.public(),
            )),
            gossipsub,
            ping: ping::Behaviour::default(),
            stream: libp2p_stream::Behaviour::new(),
        })
    }
}
