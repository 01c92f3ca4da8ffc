//! The kernel's view of each peer's TCP connections, read on a thread of its own, off the path that ingests the
//! peers' output.
//!
//! Every read of a process's `/proc/<pid>/net/tcp` makes the kernel walk its whole established hash table (about
//! 5 ms here, however few sockets the namespace has), so reads are rationed, not repeated per peer per period: a
//! peer is read when it reports a connection change (to confirm it, once at once and once after the settling time,
//! which is what proves a disagreement lasted), plus a slow sweep over everyone for changes no peer reports. Reads
//! happen at most `READS_PER_SECOND` times a second whatever the number of peers; a backlog delays evidence, never
//! invents it, since the `connections` check counts a disagreement only between two reads that both show it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::events::Observation;

/// At most this many peers' sockets are read a second: about 5-10% of one core on this kind of machine.
const READS_PER_SECOND: u32 = 12;
/// After a reported change, when the peer is read: once soon, once past the `connections` check's default
/// settling time (3 s), so that a disagreement that lasts is seen twice, that far apart.
const FOLLOW_UPS: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(3_500)];
/// Each peer is read at least this often when nothing is reported (more peers than the rate allows stretch it).
const SWEEP: Duration = Duration::from_secs(5);

/// What the driver tells the reading thread.
enum Request {
    /// Peer `i` runs as process `pid` (new or restarted): its view is read afresh.
    Watch { peer: usize, pid: Option<u32> },
    /// Peer `i` is gone: no more reads.
    Forget { peer: usize },
    /// Peer `i` reported a connection opened or closed.
    Changed { peer: usize },
    /// Sockets to this address are no libp2p connection (a participant's HTTP server).
    NotAPeer(IpAddr),
    /// Reads every peer that reported a change since its last read or awaits a follow-up, then answers.
    Settle(std_mpsc::Sender<()>),
}

/// The driver's handle on the reading thread; the thread ends when this is dropped.
pub struct KernelView {
    requests: std_mpsc::Sender<Request>,
}

impl KernelView {
    /// Starts the reading thread; `(peer, observation)` pairs arrive on `out` when a view changes.
    pub fn start(out: mpsc::UnboundedSender<(usize, Observation)>) -> Self {
        let (requests, inbox) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("kernel-view".into())
            .spawn(move || Reader::new(out).run(inbox))
            .expect("a thread starts");
        Self { requests }
    }

    pub fn watch(&self, peer: usize, pid: Option<u32>) {
        let _ = self.requests.send(Request::Watch { peer, pid });
    }

    pub fn forget(&self, peer: usize) {
        let _ = self.requests.send(Request::Forget { peer });
    }

    pub fn changed(&self, peer: usize) {
        let _ = self.requests.send(Request::Changed { peer });
    }

    pub fn not_a_peer(&self, address: IpAddr) {
        let _ = self.requests.send(Request::NotAPeer(address));
    }

    /// Reads, at once, every peer whose last reported change has not been read yet or that awaits a follow-up:
    /// the last look before the peers are stopped. Waits on a blocking thread, not on the runtime.
    pub async fn settle(&self) {
        let (tx, rx) = std_mpsc::channel();
        if self.requests.send(Request::Settle(tx)).is_ok() {
            let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
        }
    }
}

/// One watched peer.
struct Watched {
    pid: Option<u32>,
    /// The last view read; `None` before the first.
    last: Option<Vec<String>>,
    /// Reads due for it (follow-ups of reported changes), soonest first.
    due: Vec<Instant>,
    /// A change was reported after its last read.
    dirty: bool,
    /// Its view cannot be read (said once).
    unavailable: bool,
}

struct Reader {
    out: mpsc::UnboundedSender<(usize, Observation)>,
    peers: BTreeMap<usize, Watched>,
    not_peers: Vec<IpAddr>,
    /// When the next read may happen at the earliest (the ration).
    next_read: Instant,
    /// When the sweep reads its next peer, and which.
    next_sweep: Instant,
    sweep_from: usize,
}

impl Reader {
    fn new(out: mpsc::UnboundedSender<(usize, Observation)>) -> Self {
        let now = Instant::now();
        Self {
            out,
            peers: BTreeMap::new(),
            not_peers: Vec::new(),
            next_read: now,
            next_sweep: now,
            sweep_from: 0,
        }
    }

    fn run(mut self, inbox: std_mpsc::Receiver<Request>) {
        loop {
            let wake = self.next_wake();
            let request = match wake.checked_duration_since(Instant::now()) {
                Some(wait) if !wait.is_zero() => inbox.recv_timeout(wait),
                _ => inbox.try_recv().map_err(|e| match e {
                    std_mpsc::TryRecvError::Empty => std_mpsc::RecvTimeoutError::Timeout,
                    std_mpsc::TryRecvError::Disconnected => std_mpsc::RecvTimeoutError::Disconnected,
                }),
            };
            match request {
                Ok(r) => self.take(r),
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                Err(std_mpsc::RecvTimeoutError::Timeout) => self.read_next(),
            }
            if self.out.is_closed() {
                return;
            }
        }
    }

    fn take(&mut self, request: Request) {
        let now = Instant::now();
        match request {
            Request::Watch { peer, pid } => {
                self.peers.insert(
                    peer,
                    Watched {
                        pid,
                        last: None,
                        due: vec![now],
                        dirty: true,
                        unavailable: false,
                    },
                );
            }
            Request::Forget { peer } => {
                self.peers.remove(&peer);
            }
            Request::Changed { peer } => {
                if let Some(w) = self.peers.get_mut(&peer).filter(|w| !w.unavailable) {
                    w.dirty = true;
                    // A burst of changes shares its follow-ups: the last change of the burst sets them.
                    w.due = FOLLOW_UPS.iter().map(|d| now + *d).collect();
                }
            }
            Request::NotAPeer(address) => self.not_peers.push(address),
            Request::Settle(done) => {
                let dirty: Vec<usize> = self
                    .peers
                    .iter()
                    .filter(|(_, w)| w.dirty || !w.due.is_empty())
                    .map(|(i, _)| *i)
                    .collect();
                for peer in dirty {
                    self.read(peer);
                }
                let _ = done.send(());
            }
        }
    }

    /// When the next read is due: the earliest follow-up or the sweep, not before the ration allows.
    fn next_wake(&self) -> Instant {
        let follow_up = self.peers.values().filter_map(|w| w.due.first()).min().copied();
        let due = follow_up.map_or(self.next_sweep, |f| f.min(self.next_sweep));
        due.max(self.next_read)
    }

    /// Reads the peer whose follow-up is due first, or else the sweep's next peer.
    fn read_next(&mut self) {
        let now = Instant::now();
        if now < self.next_read {
            return;
        }
        let follow_up = self
            .peers
            .iter()
            .filter_map(|(i, w)| w.due.first().map(|d| (*d, *i)))
            .filter(|(d, _)| *d <= now)
            .min();
        if let Some((_, peer)) = follow_up {
            if let Some(w) = self.peers.get_mut(&peer) {
                w.due.remove(0);
            }
            self.read(peer);
        } else if now >= self.next_sweep {
            // A peer whose sockets cannot be read is not swept: it would only spend the ration.
            let next = self
                .peers
                .range(self.sweep_from..)
                .chain(self.peers.range(..self.sweep_from))
                .filter(|(_, w)| !w.unavailable)
                .map(|(i, _)| *i)
                .next();
            if let Some(peer) = next {
                self.sweep_from = peer + 1;
                self.read(peer);
            }
            // Everyone once per sweep, or as often as the ration allows.
            let n = self.peers.len().max(1) as u32;
            self.next_sweep = now + (SWEEP / n).max(Duration::from_secs(1) / READS_PER_SECOND);
        }
    }

    /// Reads one peer's established sockets and sends its view when it changed.
    fn read(&mut self, peer: usize) {
        self.next_read = Instant::now() + Duration::from_secs(1) / READS_PER_SECOND;
        let Some(w) = self.peers.get_mut(&peer) else {
            return;
        };
        w.dirty = false;
        if w.unavailable {
            return;
        }
        let Some(remotes) = w.pid.and_then(crate::backend::sockets::established_remotes) else {
            let reason = match w.pid {
                None => "the backend does not know the peer's process".to_owned(),
                Some(pid) => format!("/proc/{pid}/net/tcp cannot be read"),
            };
            w.unavailable = true;
            w.due.clear();
            let _ = self.out.send((peer, Observation::SocketsUnavailable { reason }));
            return;
        };
        let established: Vec<String> = remotes
            .iter()
            .filter(|a| !self.not_peers.contains(&a.ip()))
            .map(|a| a.to_string())
            .collect();
        // A change nobody reported (a hidden connection) is read again past the settling time, like a reported one.
        if w.last.as_ref() != Some(&established) {
            if w.last.is_some() && w.due.is_empty() {
                w.due.push(Instant::now() + FOLLOW_UPS[1]);
            }
            w.last = Some(established.clone());
        }
        // Sent even when unchanged: the `connections` check needs a second read to prove a disagreement lasted.
        let _ = self.out.send((peer, Observation::Sockets { established }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(rx: &mut mpsc::UnboundedReceiver<(usize, Observation)>, within: Duration) -> Option<(usize, Observation)> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Ok(o) = rx.try_recv() {
                return Some(o);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// This process's own sockets, read on the thread: a new connection shows in the read that follows a
    /// reported change, and a peer whose process is unknown is said to be unreadable, once.
    #[test]
    fn reads_follow_reported_changes() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let view = KernelView::start(tx);
        view.watch(0, Some(std::process::id()));
        view.watch(1, None);
        let mut first = BTreeMap::new();
        for _ in 0..2 {
            let (peer, o) = recv(&mut rx, Duration::from_secs(2)).expect("a first read of each peer");
            first.insert(peer, o);
        }
        assert!(matches!(first[&0], Observation::Sockets { .. }), "{first:?}");
        assert!(matches!(first[&1], Observation::SocketsUnavailable { .. }), "{first:?}");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let _server = listener.accept().unwrap();
        view.changed(0);
        let (peer, o) = recv(&mut rx, Duration::from_secs(2)).expect("the follow-up read");
        assert_eq!(peer, 0);
        let Observation::Sockets { established } = o else { panic!("{o:?}") };
        assert!(established.contains(&addr.to_string()), "{established:?}");
        drop(view);
    }

    /// However many peers are watched, reads keep to the ration.
    #[test]
    fn reads_are_rationed() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let view = KernelView::start(tx);
        for peer in 0..100 {
            view.watch(peer, Some(std::process::id()));
        }
        let window = Duration::from_millis(1_500);
        let start = Instant::now();
        let mut reads = 0;
        while start.elapsed() < window {
            if recv(&mut rx, Duration::from_millis(50)).is_some() {
                reads += 1;
            }
        }
        let most = (window.as_secs_f64() * f64::from(READS_PER_SECOND)).ceil() as u32 + 1;
        assert!(reads >= 5 && reads <= most, "{reads} reads in {window:?}, at most {most} allowed");
    }
}
