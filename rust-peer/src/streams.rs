//! Counting of open substreams per connection.
//!
//! rust-libp2p has no public per-connection stream counter, so the stream muxer is wrapped
//! (the way libp2p-metrics wraps it for bandwidth) and every substream it hands out carries a
//! guard that decrements the counter when the substream is dropped.
//!
//! The muxer is created inside the transport, before the swarm has assigned a `ConnectionId`.
//! The transport therefore files each connection's counters under (peer id, remote address) in
//! a [`StreamRegistry`], and the event loop claims them in `SwarmEvent::ConnectionEstablished`,
//! which carries the same peer id and endpoint. The counters also carry what the connection
//! negotiated ([`Labels`]), for `connection_opened`.

use std::{
    collections::{HashMap, VecDeque},
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, Weak,
    },
    task::{Context, Poll},
};

use futures::{
    io::{IoSlice, IoSliceMut},
    ready, AsyncRead, AsyncWrite,
};
use libp2p::{
    core::{
        muxing::{StreamMuxer, StreamMuxerEvent},
        ConnectedPoint,
    },
    multiaddr::Protocol,
    Multiaddr, PeerId,
};
use tokio::sync::Notify;

use crate::negotiated::Labels;

/// Open substreams of one connection, by direction, and what the connection negotiated.
#[derive(Debug)]
pub struct StreamCounts {
    inbound: AtomicUsize,
    outbound: AtomicUsize,
    /// Wakes the event loop so that a change is reported at once, not at the next sample.
    changed: Arc<Notify>,
    labels: Labels,
}

impl StreamCounts {
    fn new(changed: Arc<Notify>, labels: Labels) -> Self {
        Self {
            inbound: AtomicUsize::new(0),
            outbound: AtomicUsize::new(0),
            changed,
            labels,
        }
    }

    /// The security protocol and muxer the connection's upgrade selected.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// Current (inbound, outbound) counts.
    pub fn get(&self) -> (usize, usize) {
        (
            self.inbound.load(Ordering::Acquire),
            self.outbound.load(Ordering::Acquire),
        )
    }

    fn counter(&self, direction: Direction) -> &AtomicUsize {
        match direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }

    fn open(self: &Arc<Self>, direction: Direction) -> OpenGuard {
        self.counter(direction).fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
        OpenGuard {
            counts: Arc::clone(self),
            direction,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Inbound,
    Outbound,
}

/// Held by a substream; its drop is the substream's close as far as counting goes.
#[derive(Debug)]
struct OpenGuard {
    counts: Arc<StreamCounts>,
    direction: Direction,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.counts
            .counter(self.direction)
            .fetch_sub(1, Ordering::AcqRel);
        self.counts.changed.notify_one();
    }
}

type ConnectionKey = (PeerId, Multiaddr);

/// Hands counters from the transport (which builds muxers) to the event loop (which knows
/// connection ids).
#[derive(Debug, Clone)]
pub struct StreamRegistry {
    /// Several connections can share a key (dial mode `new` to the same address, QUIC
    /// connections over one UDP 4-tuple), so each key holds a queue in order of creation.
    /// Entries are weak: a connection that dies before it is established (or is denied) must
    /// not keep its counters alive nor be claimed by a later connection.
    pending: Arc<Mutex<HashMap<ConnectionKey, VecDeque<Weak<StreamCounts>>>>>,
    changed: Arc<Notify>,
}

impl StreamRegistry {
    pub fn new() -> Self {
        Self {
            pending: Arc::default(),
            changed: Arc::new(Notify::new()),
        }
    }

    /// Notified whenever any substream is opened or dropped.
    pub fn changed(&self) -> Arc<Notify> {
        Arc::clone(&self.changed)
    }

    /// Wraps a freshly upgraded connection's muxer and files its counters for
    /// [`StreamRegistry::claim`].
    pub fn wrap<M>(
        &self,
        peer: PeerId,
        endpoint: &ConnectedPoint,
        muxer: M,
        labels: Labels,
    ) -> CountingMuxer<M> {
        let counts = Arc::new(StreamCounts::new(Arc::clone(&self.changed), labels));
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .entry(key(peer, endpoint))
            .or_default()
            .push_back(Arc::downgrade(&counts));
        CountingMuxer {
            inner: muxer,
            counts,
        }
    }

    /// Takes the counters of the oldest live connection filed under this peer and endpoint.
    pub fn claim(&self, peer: PeerId, endpoint: &ConnectedPoint) -> Option<Arc<StreamCounts>> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let claimed = pending.get_mut(&key(peer, endpoint)).and_then(|queue| {
            std::iter::from_fn(|| queue.pop_front()).find_map(|weak| weak.upgrade())
        });
        // Also forget connections that died unclaimed, under any key.
        pending.retain(|_, queue| {
            queue.retain(|weak| weak.strong_count() > 0);
            !queue.is_empty()
        });
        claimed
    }
}

impl Default for StreamRegistry {
    fn default() -> Self {
        Self::new()
    }
}

fn key(peer: PeerId, endpoint: &ConnectedPoint) -> ConnectionKey {
    (peer, without_p2p(endpoint.get_remote_address()))
}

/// The swarm may or may not have appended `/p2p/<peer>` to a dialed address; compare without it.
pub fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    let mut addr = addr.clone();
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

/// A [`StreamMuxer`] whose substreams are counted while they are alive.
#[pin_project::pin_project]
pub struct CountingMuxer<M> {
    #[pin]
    inner: M,
    counts: Arc<StreamCounts>,
}

impl<M> StreamMuxer for CountingMuxer<M>
where
    M: StreamMuxer,
{
    type Substream = CountedStream<M::Substream>;
    type Error = M::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.project();
        let inner = ready!(this.inner.poll_inbound(cx))?;
        Poll::Ready(Ok(CountedStream {
            inner,
            _guard: this.counts.open(Direction::Inbound),
        }))
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.project();
        let inner = ready!(this.inner.poll_outbound(cx))?;
        Poll::Ready(Ok(CountedStream {
            inner,
            _guard: this.counts.open(Direction::Outbound),
        }))
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

/// A substream that counts as open until it is dropped.
#[pin_project::pin_project]
pub struct CountedStream<S> {
    #[pin]
    inner: S,
    _guard: OpenGuard,
}

impl<S: AsyncRead> AsyncRead for CountedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_read(cx, buf)
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_read_vectored(cx, bufs)
    }
}

impl<S: AsyncWrite> AsyncWrite for CountedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use futures::{io::Cursor, task::noop_waker_ref};
    use libp2p::core::{transport::PortUse, Endpoint};

    use super::*;

    /// A muxer that yields the substreams it is given, as if the remote had opened or
    /// accepted them.
    struct FakeMuxer {
        inbound: VecDeque<Cursor<Vec<u8>>>,
        outbound: VecDeque<Cursor<Vec<u8>>>,
    }

    impl StreamMuxer for FakeMuxer {
        type Substream = Cursor<Vec<u8>>;
        type Error = io::Error;

        fn poll_inbound(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<Self::Substream, Self::Error>> {
            self.inbound
                .pop_front()
                .map_or(Poll::Pending, |s| Poll::Ready(Ok(s)))
        }

        fn poll_outbound(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<Self::Substream, Self::Error>> {
            self.outbound
                .pop_front()
                .map_or(Poll::Pending, |s| Poll::Ready(Ok(s)))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn poll(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
            Poll::Pending
        }
    }

    fn fake(inbound: usize, outbound: usize) -> FakeMuxer {
        let stream = || Cursor::new(b"data".to_vec());
        FakeMuxer {
            inbound: (0..inbound).map(|_| stream()).collect(),
            outbound: (0..outbound).map(|_| stream()).collect(),
        }
    }

    fn dialer(addr: &str) -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: addr.parse().expect("valid multiaddr"),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        }
    }

    fn labels(security: &str) -> Labels {
        Labels {
            security: security.into(),
            muxer: "yamux".into(),
        }
    }

    fn ready<T>(poll: Poll<Result<T, io::Error>>) -> T {
        match poll {
            Poll::Ready(Ok(value)) => value,
            Poll::Ready(Err(e)) => panic!("muxer failed: {e}"),
            Poll::Pending => panic!("muxer pending"),
        }
    }

    #[test]
    fn counts_open_substreams_until_dropped() {
        let registry = StreamRegistry::new();
        let peer = PeerId::random();
        let endpoint = dialer("/ip4/127.0.0.1/tcp/4001");
        let mut muxer = registry.wrap(peer, &endpoint, fake(2, 1), Labels::quic());
        let counts = registry.claim(peer, &endpoint).expect("counters filed");
        let mut cx = Context::from_waker(noop_waker_ref());

        let in1 = ready(Pin::new(&mut muxer).poll_inbound(&mut cx));
        let mut out1 = ready(Pin::new(&mut muxer).poll_outbound(&mut cx));
        let in2 = ready(Pin::new(&mut muxer).poll_inbound(&mut cx));
        assert_eq!(counts.get(), (2, 1));

        // Reading through the wrapper reaches the inner substream.
        let mut buf = [0u8; 4];
        let read = Pin::new(&mut out1).poll_read(&mut cx, &mut buf);
        assert!(matches!(read, Poll::Ready(Ok(4))));
        assert_eq!(&buf, b"data");

        drop(in1);
        assert_eq!(counts.get(), (1, 1));
        drop(out1);
        drop(in2);
        assert_eq!(counts.get(), (0, 0));
    }

    #[test]
    fn claims_in_order_and_skips_dead_connections() {
        let registry = StreamRegistry::new();
        let peer = PeerId::random();
        // Same address with and without /p2p must meet under one key.
        let plain = dialer("/ip4/127.0.0.1/tcp/4001");
        let with_p2p = dialer(&format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}"));

        let dead = registry.wrap(peer, &with_p2p, fake(0, 0), labels("noise"));
        let mut first = registry.wrap(peer, &plain, fake(1, 0), labels("tls"));
        let second = registry.wrap(peer, &with_p2p, fake(0, 0), labels("noise"));
        drop(dead);

        let mut cx = Context::from_waker(noop_waker_ref());
        let _stream = ready(Pin::new(&mut first).poll_inbound(&mut cx));

        let claimed_first = registry.claim(peer, &plain).expect("first connection");
        assert_eq!(claimed_first.get(), (1, 0));
        assert_eq!(claimed_first.labels(), &labels("tls"));
        let claimed_second = registry.claim(peer, &plain).expect("second connection");
        assert_eq!(claimed_second.get(), (0, 0));
        assert!(registry.claim(peer, &plain).is_none());
        drop(second);
        assert!(registry.claim(PeerId::random(), &plain).is_none());
        let pending = registry.pending.lock().expect("not poisoned");
        assert!(pending.is_empty(), "dead and claimed entries are forgotten");
    }
}
