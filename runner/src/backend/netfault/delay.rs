//! The delay line: latency, jitter and rate for a kernel without netem. An iptables rule hands the packets to an
//! NFQUEUE; a thread of this process holds each one until its release time and then accepts it. Verdicts go out in
//! release order, not arrival order, which is how jitter reorders.
//!
//! The thread lives in the peer's namespace (`setns` moves only the calling thread), so queue numbers are the
//! namespace's own. It is a thread, not a process, so it cannot outlive the runner. If it dies, its netlink socket
//! closes, the kernel drops what it held, and the rule (without `--queue-bypass`) drops what comes next: the fault
//! fails closed, and [`DelayLine::death`] says why.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use rand::{Rng as _, SeedableRng as _};

/// First queue number tried; the next ones are tried when another delay line of the namespace holds it.
const QUEUE_BASE: u16 = 0x4d47;
const QUEUE_TRIES: u16 = 64;
/// How many packets the kernel keeps for us before it drops new ones (its default, 1024, is a few hundred
/// milliseconds of a busy link).
const QUEUE_MAX_LEN: u32 = 16_384;
/// Bytes of each packet copied to us: an IPv4 header, though nothing reads it.
const COPY_RANGE: u16 = 20;
/// nfq gives no file descriptor to poll, so the loop polls the socket at this period: the releases' precision.
const TICK: Duration = Duration::from_millis(1);
/// With a rate, a packet that would wait longer than this for the link is dropped, as a full qdisc drops it:
/// an unbounded queue would only turn overload into ever-growing latency.
pub const RATE_BACKLOG_LIMIT: Duration = Duration::from_millis(500);

/// What the delay line does to each packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub latency: Duration,
    pub jitter: Duration,
    pub rate_bits_per_sec: Option<u64>,
}

/// Release times, packet after packet. Pure, so it is tested without a kernel.
#[derive(Debug)]
pub struct Schedule {
    params: Params,
    /// Release time of the previous packet: with a rate, the link is busy until then.
    previous: Option<Instant>,
}

impl Schedule {
    pub fn new(params: Params) -> Self {
        Self {
            params,
            previous: None,
        }
    }

    /// When a packet of `len` bytes that arrived at `arrival` goes out, or `None` when the rate's backlog is full
    /// and it is dropped. `jitter` is the draw in [-1, 1]: the delay is latency + jitter * max jitter, never below
    /// zero. With a rate, the packet also leaves no earlier than the previous release plus its own serialisation
    /// time, which keeps a rate-limited link in order.
    pub fn release(&mut self, arrival: Instant, len: usize, jitter: f64) -> Option<Instant> {
        let p = &self.params;
        let delay = p.latency.as_secs_f64() + jitter.clamp(-1.0, 1.0) * p.jitter.as_secs_f64();
        let mut at = arrival + Duration::from_secs_f64(delay.max(0.0));
        if let Some(rate) = p.rate_bits_per_sec.filter(|r| *r > 0) {
            let serialise = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
            if let Some(prev) = self.previous {
                let earliest = prev + serialise;
                if earliest > at {
                    if earliest - at > RATE_BACKLOG_LIMIT {
                        return None;
                    }
                    at = earliest;
                }
            }
        }
        self.previous = Some(self.previous.map_or(at, |p| p.max(at)));
        Some(at)
    }
}

/// A packet waiting for its release; ordered by release time, then arrival.
struct Held {
    at: Instant,
    seq: u64,
    msg: nfq::Message,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Flags the owner sets and the thread reads.
#[derive(Default)]
struct Control {
    /// Undo: release what is held and end.
    stop: AtomicBool,
    /// Test hook: end as if it had failed, releasing nothing.
    kill: AtomicBool,
    /// Why the thread ended on its own, once it has.
    death: Mutex<Option<String>>,
}

/// A running delay line. Stopping it ([`DelayLine::stop`]) releases what it holds and joins the thread.
pub struct DelayLine {
    /// The queue number it listens on, in its namespace.
    pub queue: u16,
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl DelayLine {
    /// Starts a delay line in the namespace `ns` (an open `/proc/<pid>/ns/net` or `/run/netns/<name>`), and returns
    /// once its queue is bound, so that the caller can point a rule at it.
    pub fn start(ns: &File, params: Params, thread_name: &str) -> anyhow::Result<Self> {
        let ns = ns
            .try_clone()
            .context("cannot duplicate the namespace's descriptor")?;
        let control = Arc::new(Control::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let c = Arc::clone(&control);
        let thread = std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || {
                let queue = match open_in(&ns) {
                    Ok(q) => q,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                drop(ns);
                let (mut queue, num) = queue;
                let _ = ready_tx.send(Ok(num));
                if let Err(e) = run(&mut queue, params, &c) {
                    *c.death.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{e:#}"));
                }
                // Dropping the queue closes the socket: the kernel drops whatever it still holds for us.
            })
            .context("cannot start the delay line's thread")?;
        let queue = match ready_rx.recv() {
            Ok(Ok(q)) => q,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                bail!("the delay line's thread ended before binding its queue");
            }
        };
        Ok(Self {
            queue,
            control,
            thread: Some(thread),
        })
    }

    /// Why the delay line is no longer shaping, when it has died; `None` while it runs (or after a clean stop).
    pub fn death(&self) -> Option<String> {
        if let Some(why) = self
            .control
            .death
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Some(why);
        }
        let ended = self.thread.as_ref().is_some_and(JoinHandle::is_finished);
        (ended && !self.control.stop.load(Ordering::Relaxed))
            .then(|| "the delay line's thread ended unexpectedly (panic)".to_owned())
    }

    /// Test hook: the thread ends as if it had failed, so that fail-closed behaviour can be seen.
    pub fn kill(&self) {
        self.control.kill.store(true, Ordering::Relaxed);
    }

    /// Releases the held packets, ends the thread and waits for it. Idempotent.
    pub fn stop(&mut self) {
        self.control.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for DelayLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DelayLine(queue {})", self.queue)
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Enters the namespace (this thread only), opens a netlink queue there and binds the first free queue number.
fn open_in(ns: &File) -> anyhow::Result<(nfq::Queue, u16)> {
    // SAFETY: setns only reads the descriptor, which `ns` keeps open for the call.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error())
            .context("setns into the peer's network namespace");
    }
    let mut queue =
        nfq::Queue::open().context("cannot open an NFQUEUE netlink socket (nfnetlink_queue)")?;
    let mut bound = None;
    for num in QUEUE_BASE..QUEUE_BASE + QUEUE_TRIES {
        match queue.bind(num) {
            Ok(()) => {
                bound = Some(num);
                break;
            }
            // Another delay line of this namespace holds it: the kernel says EPERM when another socket owns the
            // queue, EBUSY when it is ours.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EBUSY)) => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot bind NFQUEUE {num}")),
        }
    }
    let num = bound.ok_or_else(|| {
        anyhow!(
            "NFQUEUE {QUEUE_BASE}..{} are all taken",
            QUEUE_BASE + QUEUE_TRIES
        )
    })?;
    // Verdicts need no payload, so only its first bytes come up; the kernel then adds the full length (which it
    // does not with a copy range of 0, metadata only), and the rate needs that length.
    queue
        .set_copy_range(num, COPY_RANGE)
        .context("set the queue's copy range")?;
    queue
        .set_queue_max_len(num, QUEUE_MAX_LEN)
        .context("set the queue's length")?;
    queue
        .set_fail_open(num, false)
        .context("make the queue fail closed")?;
    queue.set_nonblocking(true);
    Ok((queue, num))
}

/// The loop: take what arrived, release what is due, sleep until the next is due (at most a tick).
fn run(queue: &mut nfq::Queue, params: Params, control: &Control) -> anyhow::Result<()> {
    let mut schedule = Schedule::new(params);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed());
    let mut held: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        if control.kill.load(Ordering::Relaxed) {
            bail!("the delay line was killed (test hook)");
        }
        if control.stop.load(Ordering::Relaxed) {
            // The rules are gone by now: what is held goes out at once rather than being lost.
            while let Some(Reverse(h)) = held.pop() {
                accept(queue, h.msg)?;
            }
            return Ok(());
        }
        loop {
            match queue.recv() {
                Ok(msg) => {
                    let now = Instant::now();
                    let draw = if params.jitter.is_zero() {
                        0.0
                    } else {
                        rng.random_range(-1.0..=1.0)
                    };
                    match schedule.release(now, msg.get_original_len(), draw) {
                        Some(at) => {
                            seq += 1;
                            held.push(Reverse(Held { at, seq, msg }));
                        }
                        None => {
                            let mut msg = msg;
                            msg.set_verdict(nfq::Verdict::Drop);
                            queue.verdict(msg).context("NFQUEUE verdict")?;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("NFQUEUE receive"),
            }
        }
        let now = Instant::now();
        while held.peek().is_some_and(|Reverse(h)| h.at <= now) {
            let Some(Reverse(h)) = held.pop() else { break };
            accept(queue, h.msg)?;
        }
        let wait = held.peek().map_or(TICK, |Reverse(h)| {
            h.at.saturating_duration_since(Instant::now()).min(TICK)
        });
        std::thread::sleep(wait);
    }
}

fn accept(queue: &mut nfq::Queue, mut msg: nfq::Message) -> anyhow::Result<()> {
    msg.set_verdict(nfq::Verdict::Accept);
    queue.verdict(msg).context("NFQUEUE verdict")
}

/// Jitter need not be reproducible, only independent between delay lines.
fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn params(latency: u64, jitter: u64, rate: Option<u64>) -> Params {
        Params {
            latency: ms(latency),
            jitter: ms(jitter),
            rate_bits_per_sec: rate,
        }
    }

    #[test]
    fn latency_and_jitter_bound_the_release() {
        let t0 = Instant::now();
        let mut s = Schedule::new(params(200, 100, None));
        assert_eq!(s.release(t0, 100, 0.0), Some(t0 + ms(200)));
        assert_eq!(s.release(t0, 100, 1.0), Some(t0 + ms(300)));
        assert_eq!(s.release(t0, 100, -1.0), Some(t0 + ms(100)));
        // Out-of-range draws are clamped.
        assert_eq!(s.release(t0, 100, 5.0), Some(t0 + ms(300)));
    }

    #[test]
    fn jitter_larger_than_latency_clamps_at_zero_and_reorders() {
        let t0 = Instant::now();
        let mut s = Schedule::new(params(10, 50, None));
        assert_eq!(s.release(t0, 100, -1.0), Some(t0));
        let first = s.release(t0, 100, 1.0).unwrap();
        let second = s.release(t0 + ms(1), 100, -0.5).unwrap();
        assert!(second < first, "a later packet may leave first");
    }

    #[test]
    fn rate_spaces_packets_by_their_serialisation_time() {
        let t0 = Instant::now();
        // 1000 bytes at 800 kbit/s: 10 ms each.
        let mut s = Schedule::new(params(0, 0, Some(800_000)));
        assert_eq!(s.release(t0, 1000, 0.0), Some(t0));
        assert_eq!(s.release(t0, 1000, 0.0), Some(t0 + ms(10)));
        assert_eq!(s.release(t0, 1000, 0.0), Some(t0 + ms(20)));
        // An idle link sends at once.
        assert_eq!(s.release(t0 + ms(100), 1000, 0.0), Some(t0 + ms(100)));
    }

    #[test]
    fn rate_drops_past_the_backlog_limit() {
        let t0 = Instant::now();
        // 100 ms per packet: the seventh would wait 600 ms.
        let mut s = Schedule::new(params(0, 0, Some(80_000)));
        let released: Vec<_> = (0..7).map(|_| s.release(t0, 1000, 0.0)).collect();
        assert!(released[..6].iter().all(Option::is_some));
        assert_eq!(released[6], None);
    }

    #[test]
    fn rate_adds_to_latency() {
        let t0 = Instant::now();
        let mut s = Schedule::new(params(50, 0, Some(800_000)));
        assert_eq!(s.release(t0, 1000, 0.0), Some(t0 + ms(50)));
        assert_eq!(s.release(t0, 1000, 0.0), Some(t0 + ms(60)));
    }
}
