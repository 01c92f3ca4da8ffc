//! What each connection negotiated (security protocol and stream muxer), recorded from the
//! upgrades themselves rather than copied from the configuration.
//!
//! Security: [`SecurityChoice`] offers the configured security upgrades in the configured order
//! (multistream-select: as dialer it proposes them in that order, as listener it takes the
//! first proposal it has) and knows which protocol was selected from the `Info` it is asked to
//! upgrade with. Muxer: [`RecordMuxer`] wraps the muxer upgrade the same way and labels the
//! muxer it outputs ([`Labeled`]); `transport.rs` files the labels with the connection's stream
//! counters, and the event loop reports them in `connection_opened`.
//!
//! The security result has to reach the muxer step, which only sees the secured stream behind
//! multistream-select's `Negotiated` (no access to the inner stream). `Builder::authenticate`
//! and `Authenticated::multiplex_ext` run in one `AndThen` future: the security upgrade's
//! future resolves and the `multiplex_ext` closure is called in the same `poll`, on the same
//! thread. So the security upgrade leaves `(remote peer, protocol)` in a thread-local slot as
//! it resolves, and the closure takes it out, checking the peer id.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{future::BoxFuture, AsyncRead, AsyncWrite, FutureExt, TryFutureExt};
use libp2p::{
    core::{
        muxing::{StreamMuxer, StreamMuxerEvent},
        upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo},
    },
    noise, tls, PeerId,
};

/// What one connection negotiated, in the configuration's spelling (`noise`, `tls`; `yamux`;
/// QUIC: `tls`, `quic-v1`), or the raw protocol id where there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub security: String,
    pub muxer: String,
}

impl Labels {
    /// QUIC has TLS 1.3 built in and its own streams; nothing is negotiated on top.
    pub fn quic() -> Self {
        Self {
            security: "tls".into(),
            muxer: "quic-v1".into(),
        }
    }
}

/// The configuration's name of a security protocol id (else the id itself).
pub fn security_name(protocol: &str) -> String {
    match protocol {
        "/noise" => "noise".into(),
        "/tls/1.0.0" => "tls".into(),
        other => other.into(),
    }
}

/// The configuration's name of a muxer protocol id (else the id itself).
pub fn muxer_name(protocol: &str) -> String {
    match protocol {
        "/yamux/1.0.0" => "yamux".into(),
        "/mplex/6.7.0" => "mplex".into(),
        other => other.into(),
    }
}

/// One security upgrade this peer can offer.
#[derive(Clone)]
pub enum SecurityUpgrade {
    Noise(noise::Config),
    Tls(tls::Config),
}

/// The secured stream of either security upgrade.
pub type Secured<C> = futures::future::Either<noise::Output<C>, tls::TlsStream<C>>;

/// Security upgrades in order of preference; remembers which one a connection selected.
#[derive(Clone)]
pub struct SecurityChoice {
    offers: Vec<SecurityUpgrade>,
}

impl SecurityChoice {
    pub fn new(offers: Vec<SecurityUpgrade>) -> Self {
        Self { offers }
    }
}

/// The `Info` of an upgrade whose protocol name is `protocol`.
fn info_of<U: UpgradeInfo>(upgrade: &U, protocol: &str) -> Option<U::Info> {
    upgrade
        .protocol_info()
        .into_iter()
        .find(|info| info.as_ref() == protocol)
}

impl UpgradeInfo for SecurityChoice {
    type Info = String;
    type InfoIter = Vec<String>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.offers
            .iter()
            .flat_map(|offer| -> Vec<String> {
                match offer {
                    SecurityUpgrade::Noise(config) => protocols(config),
                    SecurityUpgrade::Tls(config) => protocols(config),
                }
            })
            .collect()
    }
}

fn protocols<U: UpgradeInfo>(upgrade: &U) -> Vec<String> {
    upgrade
        .protocol_info()
        .into_iter()
        .map(|info| info.as_ref().to_owned())
        .collect()
}

type SecurityFuture<C> = BoxFuture<'static, Result<(PeerId, Secured<C>), io::Error>>;

impl SecurityChoice {
    /// Runs the offer that owns `protocol`, inbound or outbound, and records the selection.
    fn upgrade<C>(self, socket: C, protocol: String, inbound: bool) -> SecurityFuture<C>
    where
        C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let name = security_name(&protocol);
        for offer in self.offers {
            match offer {
                SecurityUpgrade::Noise(config) => {
                    if let Some(info) = info_of(&config, &protocol) {
                        let future = if inbound {
                            config.upgrade_inbound(socket, info)
                        } else {
                            config.upgrade_outbound(socket, info)
                        };
                        return future
                            .map_err(io::Error::other)
                            .map_ok(move |(peer, stream)| {
                                handoff::put(peer, name);
                                (peer, futures::future::Either::Left(stream))
                            })
                            .boxed();
                    }
                }
                SecurityUpgrade::Tls(config) => {
                    if let Some(info) = info_of(&config, &protocol) {
                        let future = if inbound {
                            config.upgrade_inbound(socket, info)
                        } else {
                            config.upgrade_outbound(socket, info)
                        };
                        return future
                            .map_err(io::Error::other)
                            .map_ok(move |(peer, stream)| {
                                handoff::put(peer, name);
                                (peer, futures::future::Either::Right(stream))
                            })
                            .boxed();
                    }
                }
            }
        }
        // multistream-select only selects a protocol from `protocol_info`.
        let error = io::Error::other(format!("negotiated {protocol}, which was not offered"));
        futures::future::ready(Err(error)).boxed()
    }
}

impl<C> InboundConnectionUpgrade<C> for SecurityChoice
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Secured<C>);
    type Error = io::Error;
    type Future = SecurityFuture<C>;

    fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
        self.upgrade(socket, info, true)
    }
}

impl<C> OutboundConnectionUpgrade<C> for SecurityChoice
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, Secured<C>);
    type Error = io::Error;
    type Future = SecurityFuture<C>;

    fn upgrade_outbound(self, socket: C, info: Self::Info) -> Self::Future {
        self.upgrade(socket, info, false)
    }
}

/// Hands the selected security protocol from the security upgrade to the muxer step of the same
/// connection (see the module documentation).
pub mod handoff {
    use std::cell::RefCell;

    use libp2p::PeerId;

    thread_local! {
        static SECURED: RefCell<Option<(PeerId, String)>> = const { RefCell::new(None) };
    }

    /// Called by the security upgrade as its future resolves.
    pub fn put(peer: PeerId, security: String) {
        SECURED.with(|slot| *slot.borrow_mut() = Some((peer, security)));
    }

    /// Called by the muxer step right after; `None` if nothing (or another peer's) was left.
    pub fn take(peer: &PeerId) -> Option<String> {
        SECURED.with(|slot| match slot.borrow_mut().take() {
            Some((secured, security)) if secured == *peer => Some(security),
            _ => None,
        })
    }
}

/// A muxer upgrade that labels the muxer it outputs with the connection's security protocol
/// (given) and the muxer protocol it was selected by.
#[derive(Clone)]
pub struct RecordMuxer<U> {
    inner: U,
    security: String,
}

impl<U> RecordMuxer<U> {
    /// For the muxer step of a connection to `peer`: takes what its security upgrade left.
    pub fn after_security(inner: U, peer: &PeerId) -> Self {
        let security = handoff::take(peer).unwrap_or_else(|| {
            tracing::warn!(%peer, "the security upgrade left no protocol for this connection");
            "unknown".into()
        });
        Self { inner, security }
    }
}

impl<U: UpgradeInfo> UpgradeInfo for RecordMuxer<U> {
    type Info = U::Info;
    type InfoIter = U::InfoIter;

    fn protocol_info(&self) -> Self::InfoIter {
        self.inner.protocol_info()
    }
}

impl<C, U> InboundConnectionUpgrade<C> for RecordMuxer<U>
where
    U: InboundConnectionUpgrade<C>,
    U::Future: Send + 'static,
    U::Output: 'static,
    U::Error: 'static,
{
    type Output = Labeled<U::Output>;
    type Error = U::Error;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
        let labels = Labels {
            security: self.security,
            muxer: muxer_name(info.as_ref()),
        };
        self.inner
            .upgrade_inbound(socket, info)
            .map_ok(move |inner| Labeled { inner, labels })
            .boxed()
    }
}

impl<C, U> OutboundConnectionUpgrade<C> for RecordMuxer<U>
where
    U: OutboundConnectionUpgrade<C>,
    U::Future: Send + 'static,
    U::Output: 'static,
    U::Error: 'static,
{
    type Output = Labeled<U::Output>;
    type Error = U::Error;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, info: Self::Info) -> Self::Future {
        let labels = Labels {
            security: self.security,
            muxer: muxer_name(info.as_ref()),
        };
        self.inner
            .upgrade_outbound(socket, info)
            .map_ok(move |inner| Labeled { inner, labels })
            .boxed()
    }
}

/// A stream muxer with what its connection negotiated.
#[pin_project::pin_project]
pub struct Labeled<M> {
    #[pin]
    pub inner: M,
    pub labels: Labels,
}

impl<M> Labeled<M> {
    pub fn new(inner: M, labels: Labels) -> Self {
        Self { inner, labels }
    }
}

impl<M: StreamMuxer> StreamMuxer for Labeled<M> {
    type Substream = M::Substream;
    type Error = M::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        self.project().inner.poll_inbound(cx)
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        self.project().inner.poll_outbound(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.project().inner.poll_close(cx)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        self.project().inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_the_configuration_spelling() {
        assert_eq!(security_name("/noise"), "noise");
        assert_eq!(security_name("/tls/1.0.0"), "tls");
        assert_eq!(security_name("/secio/1.0.0"), "/secio/1.0.0");
        assert_eq!(muxer_name("/yamux/1.0.0"), "yamux");
        assert_eq!(muxer_name("/mplex/6.7.0"), "mplex");
        assert_eq!(muxer_name("/spdy/3.1.0"), "/spdy/3.1.0");
    }

    #[test]
    fn offers_in_order() {
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let noise = || SecurityUpgrade::Noise(noise::Config::new(&keypair).unwrap());
        let tls = || SecurityUpgrade::Tls(tls::Config::new(&keypair).unwrap());
        assert_eq!(
            SecurityChoice::new(vec![tls(), noise()]).protocol_info(),
            vec!["/tls/1.0.0", "/noise"]
        );
        assert_eq!(
            SecurityChoice::new(vec![noise(), tls()]).protocol_info(),
            vec!["/noise", "/tls/1.0.0"]
        );
    }

    #[test]
    fn handoff_is_for_one_peer_once() {
        let (a, b) = (PeerId::random(), PeerId::random());
        handoff::put(a, "tls".into());
        assert_eq!(handoff::take(&b), None, "another peer's is not taken");
        assert_eq!(handoff::take(&a), None, "and it is gone");
        handoff::put(a, "noise".into());
        assert_eq!(handoff::take(&a).as_deref(), Some("noise"));
        assert_eq!(handoff::take(&a), None);
    }
}
