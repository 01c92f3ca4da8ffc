//! Network faults applied from outside a peer, inside the peer's own network namespace.
//!
//! Peers run from scratch images, with no tools and no capabilities, so everything is done from the host: the
//! host's `iptables` and `ip`/`tc`, run in the peer's namespace by `nsenter --net`, and a delay line of our own
//! (a thread of this process, see [`delay`]) for what netem would do on a kernel that has it. Nothing touches the
//! host's own namespace.
//!
//! What takes which path:
//! - partition: `DROP` rules for the unreachable addresses, both ways, in a chain `MESHGATE-P...`;
//! - loss: `-m statistic --mode random` `DROP` rules, per direction (so `Both` loses on the way there and back);
//! - latency, jitter and rate: the NFQUEUE delay line, one per direction, in both directions alike (no tbf: one
//!   path for every parameter; the line's rate queue drops past [`delay::RATE_BACKLOG_LIMIT`], as a qdisc would);
//! - duplication: not possible on this path ([`ShapeError::Unsupported`]).
//!
//! Several faults may hold one namespace at once, each in its own chains: partitions are evaluated first, then
//! link shapes (one remote address), then whole-peer shapes; a link's traffic is shaped by its link shape alone.
//! Only IPv4 (iptables) is shaped. Calls block (they run commands and wait for a thread); async callers wrap them
//! in `spawn_blocking`.

mod delay;
mod rules;

use std::fmt::Write as _;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{anyhow, Context as _};

use delay::{DelayLine, Params};
use rules::{Hook, Kind};

pub use rules::CHAIN_PREFIX;

/// Which of the peer's traffic a shape applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Traffic to the peer (its INPUT).
    To,
    /// Traffic from the peer (its OUTPUT).
    From,
    Both,
}

impl Direction {
    fn hooks(self) -> &'static [Hook] {
        match self {
            Direction::To => &[Hook::Input],
            Direction::From => &[Hook::Output],
            Direction::Both => &[Hook::Input, Hook::Output],
        }
    }
}

/// How to degrade a peer's traffic. Zero values mean "not this".
#[derive(Debug, Clone, PartialEq)]
pub struct Shaping {
    pub latency: Duration,
    /// Each packet's delay is latency plus a uniform draw in [-jitter, +jitter] (never below zero); packets
    /// overtake each other, as with netem.
    pub jitter: Duration,
    /// Share of packets dropped, 0 to 100, in each shaped direction.
    pub loss_percent: f64,
    pub rate_bits_per_sec: Option<u64>,
    /// The delay line cannot duplicate: anything but 0 is [`ShapeError::Unsupported`].
    pub duplicate_percent: f64,
    pub direction: Direction,
    /// Only the traffic with this address (a link), or all the peer's traffic.
    pub remote: Option<Ipv4Addr>,
}

impl Default for Shaping {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            loss_percent: 0.0,
            rate_bits_per_sec: None,
            duplicate_percent: 0.0,
            direction: Direction::Both,
            remote: None,
        }
    }
}

/// A network namespace, by a path that names it: `/proc/<pid>/ns/net` (for a container, its init's pid) or
/// `/run/netns/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    path: PathBuf,
}

impl Netns {
    pub fn of_pid(pid: u32) -> Self {
        Self {
            path: PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }

    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the namespace: the open file keeps it alive and keeps naming the same namespace even if the peer's
    /// pid ends and is reused, so undo always reaches the namespace the fault went into.
    fn pin(&self) -> anyhow::Result<Pinned> {
        let file = File::open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        // A wrong path (a peer sharing the host's network) must never put rules into the runner's own namespace.
        use std::os::unix::fs::MetadataExt as _;
        let own = std::fs::metadata("/proc/self/ns/net").context("cannot read /proc/self/ns/net")?;
        let target = file.metadata()?;
        if (own.dev(), own.ino()) == (target.dev(), target.ino()) {
            anyhow::bail!(
                "{} is the runner's own network namespace: faults are only made in a peer's own",
                self.path.display()
            );
        }
        let path = PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            file.as_raw_fd()
        ));
        Ok(Pinned {
            file,
            path,
            shown: self.path.clone(),
        })
    }
}

/// An open namespace and the path by which `nsenter` reaches that very one.
#[derive(Debug)]
struct Pinned {
    file: File,
    path: PathBuf,
    /// The path the caller gave, for messages.
    shown: PathBuf,
}

/// Why a shape could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    /// The machine cannot do this (not a mistake of the caller's): a case asking for it is skipped, with this reason.
    #[error("{0} cannot be made by meshgate's NFQUEUE delay line, which shapes traffic on every kernel")]
    Unsupported(&'static str),
    #[error("invalid shaping: {0}")]
    Invalid(String),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Makes `unreachable` unreachable from the namespace and the namespace from them, for TCP and UDP alike, until
/// [`Applied::undo`] (the heal).
pub fn partition(ns: &Netns, unreachable: &[Ipv4Addr]) -> anyhow::Result<Applied> {
    let list = unreachable
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut applied = Applied::new(ns, format!("partition from {list}"))?;
    let chain = rules::chain_name(Kind::Partition.letter(), applied.id, None);
    applied.chain(&chain, &rules::partition_rules(&chain, unreachable))?;
    for hook in [Hook::Input, Hook::Output] {
        applied.jump(hook, &chain, None, Kind::Partition)?;
    }
    Ok(applied)
}

/// Refuses new inbound connections to the namespace (TCP connection attempts, and UDP flows to `port` that it did
/// not start) until [`Applied::undo`]: what makes a peer `private`, reachable by nobody while it dials out freely
/// (an AutoNAT server's dial-back fails, as behind a NAT).
pub fn refuse_inbound(ns: &Netns, port: u16) -> anyhow::Result<Applied> {
    let mut applied = Applied::new(ns, format!("inbound connections refused (udp port {port}, every tcp port)"))?;
    let chain = rules::chain_name(Kind::Refuse.letter(), applied.id, None);
    applied.chain(&chain, &rules::refuse_rules(&chain, port))?;
    applied.jump(Hook::Input, &chain, None, Kind::Refuse)?;
    Ok(applied)
}

/// The multicast range, routed by [`multicast_route`].
pub const MULTICAST: &str = "224.0.0.0/4";

/// Where SSDP searches go: the multicast group and port of UPnP discovery.
pub const SSDP_GROUP: &str = "239.255.255.250";
pub const SSDP_PORT: u16 = 1900;

/// Routes multicast out of the interface that holds `address`, where the namespace has no route for SSDP's
/// group (a network without a default route), until [`Applied::undo`]. The searches then cross the case bridge by
/// the host rule of `backend::hostrules`.
pub fn multicast_route(ns: &Netns, address: Ipv4Addr) -> anyhow::Result<Applied> {
    let mut applied = Applied::new(ns, format!("route {MULTICAST}"))?;
    let listing = rules::run_in(&applied.ns.path, "ip", &["-o", "-4", "addr", "show"].map(String::from))?;
    let dev = interface_of(&listing, address).ok_or_else(|| {
        anyhow!("no interface holds {address} in {}", applied.ns.shown.display())
    })?;
    let get = rules::run_in(&applied.ns.path, "ip", &["route", "get", SSDP_GROUP].map(String::from));
    if get.is_err() {
        let args = ["route", "add", MULTICAST, "dev", &dev].map(String::from);
        rules::run_in(&applied.ns.path, "ip", &args)?;
        applied.routes.push(dev);
    }
    Ok(applied)
}

/// The interface of `ip -o -4 addr show` that holds `address` (`2: eth0    inet 10.216.4.2/22 ...`).
fn interface_of(listing: &str, address: Ipv4Addr) -> Option<String> {
    listing.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let dev = f.nth(1)?;
        let (_, cidr) = (f.next()?, f.next()?);
        let dev = dev.split('@').next()?;
        (cidr.split('/').next()? == address.to_string()).then(|| dev.to_owned())
    })
}

/// Shapes the namespace's traffic as `shaping` says, until [`Applied::undo`]. See the module's doc for the paths.
pub fn shape(ns: &Netns, shaping: &Shaping) -> Result<Applied, ShapeError> {
    validate(shaping)?;
    let mut applied = Applied::new(ns, describe_shaping(shaping))?;
    let delayed = !shaping.latency.is_zero()
        || !shaping.jitter.is_zero()
        || shaping.rate_bits_per_sec.is_some();
    let kind = if shaping.remote.is_some() {
        Kind::Link
    } else {
        Kind::Whole
    };
    for &hook in shaping.direction.hooks() {
        let queue = if delayed {
            let params = Params {
                latency: shaping.latency,
                jitter: shaping.jitter,
                rate_bits_per_sec: shaping.rate_bits_per_sec,
            };
            let name = match hook {
                Hook::Input => "mg-delay-in",
                Hook::Output => "mg-delay-out",
            };
            let line = DelayLine::start(&applied.ns.file, params, name).with_context(|| {
                format!(
                    "cannot start the delay line in {}",
                    applied.ns.shown.display()
                )
            })?;
            let q = line.queue;
            applied.lines.push(line);
            Some(q)
        } else {
            None
        };
        let chain = rules::chain_name(kind.letter(), applied.id, Some(hook));
        let chain_rules = rules::shape_rules(
            &chain,
            shaping.loss_percent,
            queue,
            shaping.remote.is_some(),
        );
        if chain_rules.is_empty() {
            continue;
        }
        applied.chain(&chain, &chain_rules)?;
        applied.jump(hook, &chain, shaping.remote, kind)?;
    }
    Ok(applied)
}

fn validate(s: &Shaping) -> Result<(), ShapeError> {
    if s.duplicate_percent != 0.0 {
        return Err(ShapeError::Unsupported("packet duplication"));
    }
    if !(0.0..=100.0).contains(&s.loss_percent) {
        return Err(ShapeError::Invalid(format!(
            "loss {}% is not within 0..=100",
            s.loss_percent
        )));
    }
    if s.rate_bits_per_sec == Some(0) {
        return Err(ShapeError::Invalid("a rate of 0 bit/s".into()));
    }
    Ok(())
}

fn describe_shaping(s: &Shaping) -> String {
    let mut d = match s.direction {
        Direction::To => "shape to peer:".to_owned(),
        Direction::From => "shape from peer:".to_owned(),
        Direction::Both => "shape both ways:".to_owned(),
    };
    if !s.latency.is_zero() || !s.jitter.is_zero() {
        let _ = write!(d, " latency {:?}", s.latency);
        if !s.jitter.is_zero() {
            let _ = write!(d, " ±{:?}", s.jitter);
        }
    }
    if s.loss_percent > 0.0 {
        let _ = write!(d, " loss {}%", s.loss_percent);
    }
    if let Some(r) = s.rate_bits_per_sec {
        let _ = write!(d, " rate {r} bit/s");
    }
    match s.remote {
        Some(r) => {
            let _ = write!(d, " (traffic with {r} only)");
        }
        None if d.ends_with(':') => d.push_str(" nothing"),
        None => {}
    }
    d
}

/// Ids keep the chains of two faults of this process apart.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fault in force. [`Applied::undo`] removes it; dropping it undoes it too, best effort.
#[derive(Debug)]
pub struct Applied {
    id: u64,
    ns: Pinned,
    what: String,
    /// Jumps added to built-in chains: (hook, rule spec), so `-D hook spec` removes each.
    jumps: Vec<(Hook, Vec<String>)>,
    /// Chains of ours, in the order they were made.
    chains: Vec<String>,
    lines: Vec<DelayLine>,
    /// Interfaces [`MULTICAST`] was routed out of.
    routes: Vec<String>,
}

impl Applied {
    fn new(ns: &Netns, what: String) -> anyhow::Result<Self> {
        Ok(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            ns: ns.pin()?,
            what,
            jumps: Vec::new(),
            chains: Vec::new(),
            lines: Vec::new(),
            routes: Vec::new(),
        })
    }

    /// Makes a chain and fills it; remembered first, so a failure half way is undone.
    fn chain(&mut self, chain: &str, chain_rules: &[Vec<String>]) -> anyhow::Result<()> {
        rules::iptables(&self.ns.path, &["-N".into(), chain.into()])?;
        self.chains.push(chain.to_owned());
        for r in chain_rules {
            rules::iptables(&self.ns.path, r)?;
        }
        Ok(())
    }

    fn jump(
        &mut self,
        hook: Hook,
        chain: &str,
        remote: Option<Ipv4Addr>,
        kind: Kind,
    ) -> anyhow::Result<()> {
        let spec = rules::jump_spec(hook, chain, remote);
        let listing = rules::iptables(&self.ns.path, &["-S".into(), hook.chain().into()])?;
        let mut args = match rules::jump_position(kind, &listing) {
            Some(pos) => vec!["-I".to_owned(), hook.chain().to_owned(), pos.to_string()],
            None => vec!["-A".to_owned(), hook.chain().to_owned()],
        };
        args.extend(spec.iter().cloned());
        rules::iptables(&self.ns.path, &args)?;
        self.jumps.push((hook, spec));
        Ok(())
    }

    /// Removes everything this fault added to the namespace: jumps first (no packet is queued any more), then
    /// the chains, then the delay lines (which let out what they hold). Idempotent: what is gone is forgotten, and
    /// a failed undo can be retried.
    pub fn undo(&mut self) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        let ns = self.ns.path.clone();
        self.jumps.retain(|(hook, spec)| {
            let mut args = vec!["-D".to_owned(), hook.chain().to_owned()];
            args.extend(spec.iter().cloned());
            match rules::iptables(&ns, &args) {
                Ok(_) => false,
                Err(e) => {
                    errors.push(e);
                    true
                }
            }
        });
        // A chain still jumped to cannot be deleted: keep them all for a retry.
        if self.jumps.is_empty() {
            self.chains.retain(|chain| {
                let r = rules::iptables(&ns, &["-F".into(), chain.clone()])
                    .and_then(|_| rules::iptables(&ns, &["-X".into(), chain.clone()]));
                match r {
                    Ok(_) => false,
                    Err(e) => {
                        errors.push(e);
                        true
                    }
                }
            });
        }
        for mut line in self.lines.drain(..) {
            line.stop();
        }
        self.routes.retain(|dev| {
            let args = ["route", "del", MULTICAST, "dev", dev].map(String::from);
            match rules::run_in(&ns, "ip", &args) {
                Ok(_) => false,
                Err(e) => {
                    errors.push(e);
                    true
                }
            }
        });
        match errors.len() {
            0 => Ok(()),
            _ => {
                let all = errors
                    .iter()
                    .map(|e| format!("{e:#}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                Err(anyhow!(
                    "undoing {} in {}: {all}",
                    self.what,
                    self.ns.shown.display()
                ))
            }
        }
    }

    /// Whether the fault still holds as asked: an error says why a delay line died (its traffic is then dropped,
    /// never passed unshaped, and the case should fail).
    pub fn health(&self) -> Result<(), String> {
        for line in &self.lines {
            if let Some(why) = line.death() {
                return Err(format!(
                    "{} in {}: delay line died: {why}",
                    self.what,
                    self.ns.shown.display()
                ));
            }
        }
        Ok(())
    }

    /// What the fault is, for logs and reports.
    pub fn describe(&self) -> String {
        self.what.clone()
    }

    /// Test hook: makes the delay lines die as if they had failed, to see that the traffic stops (fail closed).
    #[doc(hidden)]
    pub fn kill_delay_lines_for_test(&self) {
        for line in &self.lines {
            line.kill();
        }
    }
}

impl Drop for Applied {
    fn drop(&mut self) {
        if let Err(e) = self.undo() {
            tracing::warn!("{e:#}");
        }
    }
}

/// Which shaping path this machine offers, for `meshgate doctor`: netem (not used by meshgate, but it is what a
/// reader expects) and the NFQUEUE delay line that [`shape`] uses.
#[derive(Debug, Clone)]
pub struct ShapingPath {
    /// `Ok` when `tc ... netem` works; else why not.
    pub netem: Result<(), String>,
    /// `Ok` when a packet went through an NFQUEUE delay line; else why not.
    pub nfqueue: Result<(), String>,
}

impl ShapingPath {
    /// Whether [`shape`] can work here.
    pub fn usable(&self) -> bool {
        self.nfqueue.is_ok()
    }

    /// One line for a person.
    pub fn describe(&self) -> String {
        let netem = match &self.netem {
            Ok(()) => "netem present".to_owned(),
            Err(e) => format!("no netem ({e})"),
        };
        match &self.nfqueue {
            Ok(()) => {
                format!("{netem}; shaping by meshgate's NFQUEUE delay line works (no duplication)")
            }
            Err(e) => format!("{netem}; NFQUEUE unusable, so no shaping: {e}"),
        }
    }
}

/// Tries both paths in a throwaway namespace of one thread, so nothing of the host's is touched. Blocks for up to
/// about a second.
pub fn shaping_path() -> ShapingPath {
    match std::thread::spawn(probe::run).join() {
        Ok(p) => p,
        Err(_) => {
            let e = "the probe panicked".to_owned();
            ShapingPath {
                netem: Err(e.clone()),
                nfqueue: Err(e),
            }
        }
    }
}

mod probe {
    //! The probe behind [`super::shaping_path`].

    use std::net::UdpSocket;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context as _};

    use super::{rules, ShapingPath};

    /// Runs on a thread of its own: `unshare` gives this thread alone a new, empty namespace, which goes away with it.
    pub fn run() -> ShapingPath {
        // SAFETY: unshare takes no pointers.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            let e = format!(
                "cannot make a network namespace (root is needed): {}",
                std::io::Error::last_os_error()
            );
            return ShapingPath {
                netem: Err(e.clone()),
                nfqueue: Err(e),
            };
        }
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        let ns = PathBuf::from(format!("/proc/{}/task/{tid}/ns/net", std::process::id()));
        let lo_up =
            rules::run_in(&ns, "ip", &["link", "set", "lo", "up"].map(String::from)).map(|_| ());
        let netem = lo_up.and_then(|()| {
            let args =
                ["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"].map(String::from);
            rules::run_in(&ns, "tc", &args).map(|_| ())
        });
        let nfqueue = nfqueue(&ns);
        ShapingPath {
            netem: netem.map_err(|e| format!("{e:#}")),
            nfqueue: nfqueue.map_err(|e| format!("{e:#}")),
        }
    }

    /// A UDP packet to ourselves goes through a queue we bind and accept from.
    fn nfqueue(ns: &std::path::Path) -> anyhow::Result<()> {
        let mut queue = nfq::Queue::open().context("cannot open an NFQUEUE netlink socket")?;
        queue.bind(1).context("cannot bind NFQUEUE 1")?;
        queue.set_nonblocking(true);
        let sock = UdpSocket::bind("127.0.0.1:0").context("UDP socket in the probe namespace")?;
        let port = sock.local_addr()?.port().to_string();
        let rule = [
            "-A",
            "OUTPUT",
            "-p",
            "udp",
            "--dport",
            &port,
            "-j",
            "NFQUEUE",
            "--queue-num",
            "1",
        ];
        rules::iptables(ns, &rule.map(String::from))?;
        sock.send_to(b"meshgate", sock.local_addr()?)?;
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    msg.set_verdict(nfq::Verdict::Accept);
                    queue.verdict(msg)?;
                    break;
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => bail!("no packet reached the queue: {e}"),
            }
        }
        sock.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut buf = [0u8; 16];
        sock.recv(&mut buf)
            .context("the accepted packet did not arrive")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplication_is_unsupported_and_bad_values_are_invalid() {
        let dup = Shaping {
            duplicate_percent: 1.0,
            ..Shaping::default()
        };
        assert!(matches!(validate(&dup), Err(ShapeError::Unsupported(_))));
        let loss = Shaping {
            loss_percent: 120.0,
            ..Shaping::default()
        };
        assert!(matches!(validate(&loss), Err(ShapeError::Invalid(_))));
        assert!(validate(&Shaping {
            rate_bits_per_sec: Some(0),
            ..Shaping::default()
        })
        .is_err());
        assert!(validate(&Shaping::default()).is_ok());
    }

    #[test]
    fn descriptions_say_what_and_where() {
        let s = Shaping {
            latency: Duration::from_millis(200),
            jitter: Duration::from_millis(50),
            loss_percent: 5.0,
            direction: Direction::From,
            remote: Some(Ipv4Addr::new(10, 0, 0, 2)),
            ..Shaping::default()
        };
        assert_eq!(
            describe_shaping(&s),
            "shape from peer: latency 200ms ±50ms loss 5% (traffic with 10.0.0.2 only)"
        );
        assert_eq!(
            describe_shaping(&Shaping::default()),
            "shape both ways: nothing"
        );
    }

    #[test]
    fn the_interface_holding_an_address_is_found() {
        let listing = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                       52: eth0@if53    inet 10.216.4.2/22 brd 10.216.7.255 scope global eth0\\       valid_lft forever\n";
        assert_eq!(interface_of(listing, Ipv4Addr::new(10, 216, 4, 2)).as_deref(), Some("eth0"));
        assert_eq!(interface_of(listing, Ipv4Addr::new(10, 216, 4, 3)), None);
    }

    #[test]
    fn namespaces_of_pids() {
        assert_eq!(Netns::of_pid(42).path(), Path::new("/proc/42/ns/net"));
    }
}
