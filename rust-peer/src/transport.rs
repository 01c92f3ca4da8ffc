//! The transport, built by hand (rather than with `SwarmBuilder`) so that the stream muxer of
//! every connection can be wrapped for stream counting. Only the configured transport exists.

use std::time::Duration;

use libp2p::{
    core::{
        muxing::{StreamMuxer, StreamMuxerBox},
        transport::{timeout::TransportTimeout, Boxed},
        upgrade::Version,
    },
    identity::Keypair,
    noise, quic, tcp, tls, yamux, PeerId, Transport,
};

use crate::{
    config::{Security, Stack},
    streams::StreamRegistry,
};

/// Upper bound for connection setup (TCP connect + security + muxer negotiation).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

pub type PeerTransport = Boxed<(PeerId, StreamMuxerBox)>;

pub fn build(
    stack: Stack,
    keypair: &Keypair,
    registry: &StreamRegistry,
) -> Result<PeerTransport, Box<dyn std::error::Error>> {
    Ok(match stack {
        Stack::Tcp(security) => {
            let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                .upgrade(Version::V1);
            match security {
                Security::Noise => counted(
                    tcp.authenticate(noise::Config::new(keypair)?)
                        .multiplex(yamux::Config::default()),
                    registry,
                ),
                Security::Tls => counted(
                    tcp.authenticate(tls::Config::new(keypair)?)
                        .multiplex(yamux::Config::default()),
                    registry,
                ),
            }
        }
        Stack::Quic => counted(
            quic::tokio::Transport::new(quic::Config::new(keypair)),
            registry,
        ),
    })
}

/// Wraps each connection's muxer in a [`crate::streams::CountingMuxer`] and boxes the result.
fn counted<T, M>(transport: T, registry: &StreamRegistry) -> PeerTransport
where
    T: Transport<Output = (PeerId, M)> + Send + Unpin + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
    M: StreamMuxer + Send + 'static,
    M::Substream: Send + 'static,
    M::Error: Send + Sync + 'static,
{
    let registry = registry.clone();
    TransportTimeout::new(transport, HANDSHAKE_TIMEOUT)
        .map(move |(peer, muxer), endpoint| {
            (
                peer,
                StreamMuxerBox::new(registry.wrap(peer, &endpoint, muxer)),
            )
        })
        .boxed()
}
