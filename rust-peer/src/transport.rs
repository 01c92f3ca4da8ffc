//! The transport, built by hand (rather than with `SwarmBuilder`) so that the stream muxer of
//! every connection can be wrapped for stream counting and what it negotiated recorded. Only the
//! configured transport exists.

use std::time::Duration;

use libp2p::{
    core::{
        muxing::{StreamMuxer, StreamMuxerBox},
        transport::{timeout::TransportTimeout, Boxed},
        upgrade::Version,
        ConnectedPoint,
    },
    identity::Keypair,
    noise, quic, tcp, tls, yamux, PeerId, Transport,
};

use crate::{
    config::{Security, Stack},
    negotiated::{Labeled, Labels, RecordMuxer, SecurityChoice, SecurityUpgrade},
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
        Stack::Tcp(securities) => {
            // The configured order is the order of preference: multistream-select proposes the
            // offers in it as dialer and, as listener, takes the first proposal it has.
            let mut offers = Vec::with_capacity(securities.len());
            for security in securities {
                offers.push(match security {
                    Security::Noise => SecurityUpgrade::Noise(noise::Config::new(keypair)?),
                    Security::Tls => SecurityUpgrade::Tls(tls::Config::new(keypair)?),
                });
            }
            let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                .upgrade(Version::V1)
                .authenticate(SecurityChoice::new(offers))
                // Called as the security upgrade completes, in the same poll: it takes the
                // security protocol that upgrade recorded (see negotiated.rs).
                .multiplex_ext(|peer: &PeerId, _: &ConnectedPoint| {
                    RecordMuxer::after_security(yamux::Config::default(), peer)
                });
            counted(tcp, registry)
        }
        Stack::Quic => counted(
            quic::tokio::Transport::new(quic::Config::new(keypair))
                .map(|(peer, connection), _| (peer, Labeled::new(connection, Labels::quic()))),
            registry,
        ),
    })
}

/// Wraps each connection's muxer in a [`crate::streams::CountingMuxer`] (which also keeps what
/// the connection negotiated) and boxes the result.
fn counted<T, M>(transport: T, registry: &StreamRegistry) -> PeerTransport
where
    T: Transport<Output = (PeerId, Labeled<M>)> + Send + Unpin + 'static,
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
            let Labeled { inner, labels } = muxer;
            (
                peer,
                StreamMuxerBox::new(registry.wrap(peer, &endpoint, inner, labels)),
            )
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use libp2p::{
        swarm::{dummy, SwarmEvent},
        Swarm,
    };

    use super::*;
    use crate::negotiated::Labels;

    fn swarm(offers: Vec<Security>) -> (Swarm<dummy::Behaviour>, StreamRegistry) {
        let keypair = Keypair::generate_ed25519();
        let registry = StreamRegistry::new();
        let transport = build(Stack::Tcp(offers), &keypair, &registry).expect("transport");
        let swarm = Swarm::new(
            transport,
            dummy::Behaviour,
            keypair.public().to_peer_id(),
            libp2p::swarm::Config::with_tokio_executor()
                .with_idle_connection_timeout(Duration::from_secs(30)),
        );
        (swarm, registry)
    }

    /// Connects a dialer and a listener with these offers; what each end recorded.
    async fn negotiate(dialer: Vec<Security>, listener: Vec<Security>) -> (Labels, Labels) {
        let (mut dialer, dialer_registry) = swarm(dialer);
        let (mut listener, listener_registry) = swarm(listener);
        listener
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
            .expect("listen");
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = listener.select_next_some().await {
                break address;
            }
        };
        dialer.dial(addr).expect("dial");
        let (mut out, mut inbound) = (None, None);
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while out.is_none() || inbound.is_none() {
            tokio::select! {
                event = dialer.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                        let counts = dialer_registry.claim(peer_id, &endpoint).expect("filed");
                        out = Some(counts.labels().clone());
                    }
                    SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial: {error}"),
                    _ => {}
                },
                event = listener.select_next_some() => {
                    if let SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } = event {
                        let counts = listener_registry.claim(peer_id, &endpoint).expect("filed");
                        inbound = Some(counts.labels().clone());
                    }
                },
                () = &mut deadline => panic!("no connection within 10 s"),
            }
        }
        (out.expect("dialer"), inbound.expect("listener"))
    }

    #[tokio::test]
    async fn both_ends_record_the_dialers_first_choice_the_listener_has() {
        use Security::{Noise, Tls};
        for (dialer, listener, security) in [
            (vec![Noise, Tls], vec![Tls, Noise], "noise"),
            (vec![Tls, Noise], vec![Noise, Tls], "tls"),
            (vec![Tls, Noise], vec![Noise], "noise"),
            (vec![Tls], vec![Noise, Tls], "tls"),
        ] {
            let what = format!("{dialer:?} dialing {listener:?}");
            let want = Labels {
                security: security.into(),
                muxer: "yamux".into(),
            };
            let (out, inbound) = negotiate(dialer, listener).await;
            assert_eq!(out, want, "dialer, {what}");
            assert_eq!(inbound, want, "listener, {what}");
        }
    }
}
