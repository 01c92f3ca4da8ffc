//! `connections`: a peer holds at most N connections to another at once, once simultaneous dials have had time to
//! settle. Duplicate connections are where gossipsub between implementations quietly breaks (rust-libp2p#6047).
//!
//! What peers report is checked against the kernel: over TCP, the runner samples each peer process's established
//! sockets, and a peer whose reported connections differ from them for longer than the settling time fails too.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::evidence::count;
use super::{clock, Check, Context};
use crate::events::{Direction, Micros, Observation, PeerEvent, Recorded};
use crate::matrix::Transport;
use crate::results::CheckResult;

pub const NAME: &str = "connections";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Most connections a peer may hold to one other peer at once.
    #[serde(default = "default_max")]
    pub max_per_pair: usize,
    /// How long an excess may last before it counts (simultaneous dials resolve themselves within this).
    #[serde(default = "default_settle", with = "humantime_serde")]
    pub settle: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_per_pair: default_max(),
            settle: default_settle(),
        }
    }
}

fn default_max() -> usize {
    1
}

/// `10.0.0.2:4001` for `/ip4/10.0.0.2/tcp/4001[/p2p/…]`; `None` for anything not TCP.
fn tcp_socket_addr(multiaddr: &str) -> Option<SocketAddr> {
    let parts: Vec<&str> = multiaddr.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "ip6", ip, "tcp", port, ..] => {
            Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
        }
        _ => None,
    }
}

fn default_settle() -> Duration {
    Duration::from_secs(3)
}

#[derive(Debug, Clone)]
struct Conn {
    id: String,
    direction: Direction,
    opened: Micros,
    closed: Option<Micros>,
}

/// A time a peer held too many connections to another.
struct Excess {
    holder: String,
    remote: String,
    since: Micros,
    until: Option<Micros>,
    peak: usize,
    conns: Vec<Conn>,
}

/// A time a peer's reported TCP connections differed from the kernel's.
#[derive(Debug, Clone)]
struct Misreport {
    peer: String,
    since: Micros,
    until: Option<Micros>,
    /// Per remote end whose counts differ: (connections the peer reports open to it, sockets the kernel holds).
    diffs: BTreeMap<SocketAddr, (usize, usize)>,
}

/// How many times each remote end occurs: connections are compared as multisets, since N connections from one
/// dialer to one listener share the listener's address and all N count.
fn tally(addrs: impl IntoIterator<Item = SocketAddr>) -> BTreeMap<SocketAddr, usize> {
    let mut counts = BTreeMap::new();
    for a in addrs {
        *counts.entry(a).or_insert(0) += 1;
    }
    counts
}

pub struct Connections {
    settings: Settings,
    /// Per peer: the remote ends of its reported open TCP connections, by connection id.
    reported: BTreeMap<String, BTreeMap<String, SocketAddr>>,
    /// (peer, remote end) -> the remote peer id a connection to it was reported with, to name it.
    remote_of: BTreeMap<(String, SocketAddr), String>,
    /// Per peer: the kernel's established remote ends, one per socket, from the runner's latest sample.
    kernel: BTreeMap<String, Vec<SocketAddr>>,
    /// Peers the kernel was sampled for at least once, and peers the runner said it cannot sample (why).
    sampled: BTreeSet<String>,
    unavailable: BTreeMap<String, String>,
    misreporting: BTreeMap<String, Misreport>,
    misreports: Vec<Misreport>,
    stopped: BTreeSet<String>,
    kernel_samples: usize,
    /// (holder name, remote peer id) -> every connection, open or closed.
    pairs: BTreeMap<(String, String), Vec<Conn>>,
    /// (holder, remote) -> the excess going on now.
    ongoing: BTreeMap<(String, String), Excess>,
    excesses: Vec<Excess>,
    last: Micros,
}

impl Connections {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            reported: BTreeMap::new(),
            remote_of: BTreeMap::new(),
            kernel: BTreeMap::new(),
            sampled: BTreeSet::new(),
            unavailable: BTreeMap::new(),
            misreporting: BTreeMap::new(),
            misreports: Vec::new(),
            stopped: BTreeSet::new(),
            kernel_samples: 0,
            pairs: BTreeMap::new(),
            ongoing: BTreeMap::new(),
            excesses: Vec::new(),
            last: 0,
        }
    }

    /// Compares a peer's reported connections with the kernel's, after either changed at `now`.
    fn compare(&mut self, peer: &str, now: Micros) {
        let Some(kernel) = self.kernel.get(peer) else {
            return;
        };
        let kernel = tally(kernel.iter().copied());
        let reported = tally(
            self.reported
                .get(peer)
                .into_iter()
                .flat_map(|r| r.values().copied()),
        );
        let diffs: BTreeMap<SocketAddr, (usize, usize)> = reported
            .keys()
            .chain(kernel.keys())
            .map(|a| {
                let r = reported.get(a).copied().unwrap_or(0);
                let k = kernel.get(a).copied().unwrap_or(0);
                (*a, (r, k))
            })
            .filter(|(_, (r, k))| r != k)
            .collect();
        if diffs.is_empty() {
            self.end_misreport(peer, now);
        } else {
            let m = self
                .misreporting
                .entry(peer.to_owned())
                .or_insert_with(|| Misreport {
                    peer: peer.to_owned(),
                    since: now,
                    until: None,
                    diffs: BTreeMap::new(),
                });
            m.diffs = diffs;
        }
    }

    fn end_misreport(&mut self, peer: &str, now: Micros) {
        if let Some(mut m) = self.misreporting.remove(peer) {
            m.until = Some(now);
            if now - m.since > self.settle_us() {
                self.misreports.push(m);
            }
        }
    }

    fn settle_us(&self) -> Micros {
        self.settings.settle.as_micros() as Micros
    }

    /// Opens, grows or ends the excess of a pair after its connections changed at `now`.
    fn update(&mut self, key: (String, String), now: Micros) {
        let conns = &self.pairs[&key];
        let open: Vec<Conn> = conns
            .iter()
            .filter(|c| c.closed.is_none())
            .cloned()
            .collect();
        if open.len() > self.settings.max_per_pair {
            let e = self.ongoing.entry(key.clone()).or_insert_with(|| Excess {
                holder: key.0.clone(),
                remote: key.1.clone(),
                since: now,
                until: None,
                peak: 0,
                conns: Vec::new(),
            });
            if open.len() > e.peak {
                e.peak = open.len();
                e.conns = open;
            }
        } else if let Some(mut e) = self.ongoing.remove(&key) {
            e.until = Some(now);
            if now - e.since > self.settle_us() {
                self.excesses.push(e);
            }
        }
    }

    /// What the kernel comparison covered, or why it could not be made, for the coverage line.
    fn kernel_coverage(&self, ctx: &Context) -> String {
        if ctx.case.transport == Transport::QuicV1 {
            return "not cross-checked with the kernel: QUIC runs over UDP, the kernel keeps no connections to compare".into();
        }
        let holders: BTreeSet<&String> = self.pairs.keys().map(|(h, _)| h).collect();
        let (checked, missing): (Vec<&String>, Vec<&String>) =
            holders.iter().partition(|h| self.sampled.contains(**h));
        let why = |peer: &String| {
            self.unavailable
                .get(peer)
                .cloned()
                .unwrap_or_else(|| "the runner recorded no kernel sample of it".into())
        };
        let reasons: BTreeSet<String> = missing.iter().map(|p| why(p)).collect();
        // One reason for everyone is said once; otherwise each peer with its own.
        let missing_text = match reasons.len() {
            1 => reasons.into_iter().next().unwrap_or_default(),
            _ => missing
                .iter()
                .map(|p| format!("{p}: {}", why(p)))
                .collect::<Vec<_>>()
                .join("; "),
        };
        let checked_text = format!(
            "cross-checked with the kernel for {} of {} peers ({} samples)",
            checked.len(),
            holders.len(),
            count(self.kernel_samples)
        );
        match (checked.is_empty(), missing.is_empty()) {
            (_, true) => checked_text,
            (true, false) => format!("not cross-checked with the kernel: {missing_text}"),
            (false, false) => format!(
                "{checked_text}; not cross-checked with the kernel for {}: {missing_text}",
                missing
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl Check for Connections {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, rec: &Recorded) {
        self.last = self.last.max(rec.time());
        match &rec.what {
            Observation::Sockets { established } => {
                // A peer that said `stopped` is no longer compared.
                if self.kernel.contains_key(&rec.peer) || !self.stopped.contains(&rec.peer) {
                    self.kernel_samples += 1;
                    self.sampled.insert(rec.peer.clone());
                    // Every socket counts, duplicates included.
                    self.kernel.insert(
                        rec.peer.clone(),
                        established.iter().filter_map(|a| a.parse().ok()).collect(),
                    );
                    self.compare(&rec.peer.clone(), rec.at);
                }
                return;
            }
            Observation::SocketsUnavailable { reason } => {
                self.unavailable
                    .entry(rec.peer.clone())
                    .or_insert_with(|| reason.clone());
                return;
            }
            _ => {}
        }
        let Observation::Event { line } = &rec.what else {
            return;
        };
        if matches!(line.event, PeerEvent::Stopped {}) {
            self.stopped.insert(rec.peer.clone());
        }
        match &line.event {
            PeerEvent::ConnectionOpened {
                remote,
                conn_id,
                direction,
                remote_addr,
                ..
            } => {
                if let Some(addr) = tcp_socket_addr(remote_addr) {
                    self.reported
                        .entry(rec.peer.clone())
                        .or_default()
                        .insert(conn_id.clone(), addr);
                    self.remote_of
                        .insert((rec.peer.clone(), addr), remote.clone());
                    self.compare(&rec.peer, line.ts);
                }
                let key = (rec.peer.clone(), remote.clone());
                let conn = Conn {
                    id: conn_id.clone(),
                    direction: *direction,
                    opened: line.ts,
                    closed: None,
                };
                self.pairs.entry(key.clone()).or_default().push(conn);
                self.update(key, line.ts);
            }
            PeerEvent::ConnectionClosed {
                remote, conn_id, ..
            } => {
                if self
                    .reported
                    .get_mut(&rec.peer)
                    .and_then(|r| r.remove(conn_id))
                    .is_some()
                {
                    self.compare(&rec.peer, line.ts);
                }
                let key = (rec.peer.clone(), remote.clone());
                if let Some(c) = self.pairs.get_mut(&key).and_then(|cs| {
                    cs.iter_mut()
                        .find(|c| &c.id == conn_id && c.closed.is_none())
                }) {
                    c.closed = Some(line.ts);
                    self.update(key, line.ts);
                }
            }
            // Connections still open when the peer stops are not an excess of the run's steady state.
            PeerEvent::Stopped {} => {
                // From here the peer tears connections down; the kernel lags behind on purpose.
                self.end_misreport(&rec.peer.clone(), line.ts);
                self.kernel.remove(&rec.peer);
                let keys: Vec<_> = self
                    .ongoing
                    .keys()
                    .filter(|(holder, _)| holder == &rec.peer)
                    .cloned()
                    .collect();
                for key in keys {
                    if let Some(mut e) = self.ongoing.remove(&key) {
                        e.until = Some(line.ts);
                        if line.ts - e.since > self.settle_us() {
                            self.excesses.push(e);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let mut excesses: Vec<&Excess> = self.excesses.iter().collect();
        // An excess still going on when the record ends counts from its start to the end.
        excesses.extend(
            self.ongoing
                .values()
                .filter(|e| self.last - e.since > self.settle_us()),
        );
        // The peer that dialed the extra connections leads: it caused them (the other side only accepted).
        excesses.sort_by_key(|e| {
            (
                !e.conns.iter().any(|c| c.direction == Direction::Outbound),
                e.since,
            )
        });
        let views: usize = self.pairs.values().map(Vec::len).sum();
        let pairs: BTreeSet<(String, String)> = self
            .pairs
            .keys()
            .map(|(holder, remote)| {
                let remote = ctx.name_of(remote);
                if *holder < remote {
                    (holder.clone(), remote)
                } else {
                    (remote, holder.clone())
                }
            })
            .collect();
        let coverage = format!(
            "{} connection(s) reported over {} peer pair(s), at most {} per pair beyond {} ms; {}",
            count(views),
            count(pairs.len()),
            self.settings.max_per_pair,
            self.settle_us() / 1000,
            self.kernel_coverage(ctx)
        );
        let mut misreports: Vec<&Misreport> = self.misreports.iter().collect();
        misreports.extend(
            self.misreporting
                .values()
                .filter(|m| self.last - m.since > self.settle_us()),
        );
        let describe_misreport = |m: &Misreport| {
            let diffs: Vec<String> = m
                .diffs
                .iter()
                .map(|(addr, (reported, kernel))| {
                    let who = self
                        .remote_of
                        .get(&(m.peer.clone(), *addr))
                        .map(|id| format!(" ({})", ctx.name_of(id)))
                        .unwrap_or_default();
                    format!(
                        "reports {reported} connection(s) to {addr}{who} while the kernel holds {kernel}"
                    )
                })
                .collect();
            format!(
                "{} {}, for {:.1} s from {}",
                ctx.describe(&m.peer),
                diffs.join("; "),
                (m.until.unwrap_or(self.last) - m.since) as f64 / 1e6,
                clock(m.since)
            )
        };
        if excesses.is_empty() {
            if let Some(first) = misreports.first() {
                let evidence = misreports.iter().map(|m| describe_misreport(m)).collect();
                let remotes = first
                    .diffs
                    .keys()
                    .filter_map(|a| self.remote_of.get(&(first.peer.clone(), *a)))
                    .map(|id| ctx.name_of(id));
                return CheckResult::failed(NAME, describe_misreport(first), evidence)
                    .at(first.since)
                    .involving(std::iter::once(first.peer.clone()).chain(remotes))
                    .covering(coverage);
            }
        }
        let Some(first) = excesses.first() else {
            if self.pairs.is_empty() {
                return CheckResult::inconclusive(
                    NAME,
                    "no peer reported any connection: nothing to judge".into(),
                    vec![],
                )
                .covering(coverage);
            }
            return CheckResult::passed(
                NAME,
                vec![format!("{views} connection(s) over {} peer pair(s), never more than {} per pair for longer than {} ms", pairs.len(), self.settings.max_per_pair, self.settle_us() / 1000)],
            )
            .covering(coverage);
        };
        let describe = |e: &Excess| {
            let lasted = e.until.unwrap_or(self.last) - e.since;
            format!(
                "{} held {} connections to {} for {:.1} s from {} (limit {})",
                ctx.describe(&e.holder),
                e.peak,
                ctx.describe(&ctx.name_of(&e.remote)),
                lasted as f64 / 1e6,
                clock(e.since),
                self.settings.max_per_pair
            )
        };
        let mut evidence: Vec<String> = misreports.iter().map(|m| describe_misreport(m)).collect();
        for e in &excesses {
            evidence.push(describe(e));
            let end = e.until.unwrap_or(self.last);
            for c in &e.conns {
                evidence.push(format!(
                    "  connection {} {} opened {}, {:.1} s old{}",
                    c.id,
                    match c.direction {
                        Direction::Inbound => "inbound",
                        Direction::Outbound => "outbound",
                    },
                    clock(c.opened),
                    (c.closed.unwrap_or(end) - c.opened) as f64 / 1e6,
                    c.closed
                        .map(|t| format!(", closed {}", clock(t)))
                        .unwrap_or_default()
                ));
            }
        }
        let more = if excesses.len() > 1 {
            format!(" ({} pairs in all)", excesses.len())
        } else {
            String::new()
        };
        CheckResult::failed(NAME, format!("{}{more}", describe(first)), evidence)
            .at(first.since)
            .involving([first.holder.clone(), ctx.name_of(&first.remote)])
            .covering(coverage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testkit::Kit;
    use crate::results::Status;

    fn run_with(settings: Settings, events: &[Recorded], kit: &Kit) -> CheckResult {
        let mut c = Connections::new(settings);
        events.iter().for_each(|e| c.observe(e));
        c.verdict(&kit.context())
    }

    fn run(events: &[Recorded], kit: &Kit) -> CheckResult {
        run_with(Settings::default(), events, kit)
    }

    #[test]
    fn one_connection_per_pair_passes_and_says_what_it_judged() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.opened(1_000, "rust-1", "go-1", "1"),
            kit.opened(1_000, "go-1", "rust-1", "a"),
            kit.stopped(20_000_000, "rust-1"),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed);
        let coverage = r.coverage.unwrap();
        assert!(
            coverage.starts_with("2 connection(s) reported over 1 peer pair(s)"),
            "{coverage}"
        );
        assert!(
            coverage.contains(
                "not cross-checked with the kernel: the runner recorded no kernel sample of it"
            ),
            "{coverage}"
        );
    }

    #[test]
    fn no_connections_at_all_is_inconclusive() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let r = run(&[], &kit);
        assert_eq!(r.status, Status::Inconclusive);
        assert!(
            r.message
                .unwrap()
                .contains("no peer reported any connection"),
            "{:?}",
            r.coverage
        );
        // Kernel sockets alone are no connection report, but a hidden socket is still a failure.
        let ev = [
            kit.sockets(1_000_000, "rust-1", &["10.0.0.2:4001"]),
            kit.stderr(9_000_000, "rust-1", "later"),
        ];
        assert_eq!(run(&ev, &kit).status, Status::Failed);
    }

    #[test]
    fn a_simultaneous_dial_that_settles_passes() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.opened(1_000, "rust-1", "go-1", "1"),
            kit.opened(2_000, "rust-1", "go-1", "2"),
            kit.closed(500_000, "rust-1", "go-1", "2"),
            kit.stopped(20_000_000, "rust-1"),
        ];
        assert_eq!(run(&ev, &kit).status, Status::Passed);
    }

    #[test]
    fn lasting_duplicates_fail_with_every_connection() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.opened(1_000_000, "rust-1", "go-1", "1"),
            kit.opened(1_100_000, "rust-1", "go-1", "2"),
            kit.opened(1_200_000, "rust-1", "go-1", "3"),
            kit.stopped(9_100_000, "rust-1"),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        let msg = r.message.clone().unwrap();
        assert!(msg.starts_with("rust-1 (rust-libp2p 0.57.1) held 3 connections to go-1 (go-libp2p v0.51.0) for 8.0 s"), "{msg}");
        assert_eq!(
            r.evidence
                .iter()
                .filter(|l| l.contains("connection ") && l.contains("outbound opened"))
                .count(),
            3,
            "{:?}",
            r.evidence
        );
        assert!(r.coverage.is_some());
    }

    #[test]
    fn kernel_agreeing_with_the_peer_passes() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.sockets(500_000, "rust-1", &[]),
            kit.opened(1_000_000, "rust-1", "go-1", "1"),
            kit.sockets(1_200_000, "rust-1", &["10.0.0.2:4001"]),
            kit.stopped(20_000_000, "rust-1"),
            kit.sockets(20_500_000, "rust-1", &[]),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        let coverage = r.coverage.unwrap();
        assert!(
            coverage.ends_with("cross-checked with the kernel for 1 of 1 peers (2 samples)"),
            "{coverage}"
        );
    }

    #[test]
    fn a_peer_hiding_kernel_connections_fails() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.opened(1_000_000, "rust-1", "go-1", "1"),
            kit.sockets(1_200_000, "rust-1", &["10.0.0.2:4001", "10.0.0.2:4002"]),
            kit.stderr(9_000_000, "rust-1", "later"),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        let msg = r.message.unwrap();
        assert!(
            msg.starts_with("rust-1 (rust-libp2p 0.57.1) reports 0 connection(s) to 10.0.0.2:4002 while the kernel holds 1, for 7.8 s"),
            "{msg}"
        );
    }

    /// rust-libp2p#6047's duplicate seen from the dialer: both sockets have the listener's address. As a set they
    /// would be one, and a peer reporting one connection would agree with the kernel.
    #[test]
    fn two_sockets_to_one_listener_count_as_two() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let two = ["10.0.0.2:4001", "10.0.0.2:4001"];
        let ev = [
            kit.opened(1_000_000, "rust-1", "go-1", "1"),
            kit.sockets(1_200_000, "rust-1", &two),
            kit.stderr(9_000_000, "rust-1", "later"),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        let msg = r.message.unwrap();
        assert!(
            msg.starts_with("rust-1 (rust-libp2p 0.57.1) reports 1 connection(s) to 10.0.0.2:4001 (go-1) while the kernel holds 2, for 7.8 s from 00:00:01.200"),
            "{msg}"
        );
        assert_eq!(r.involved, vec!["rust-1", "go-1"]);

        // Both connections reported (and allowed): the kernel agrees.
        let ev = [
            kit.opened(1_000_000, "rust-1", "go-1", "1"),
            kit.opened(1_000_000, "rust-1", "go-1", "2"),
            kit.sockets(1_200_000, "rust-1", &two),
            kit.stderr(9_000_000, "rust-1", "later"),
        ];
        let settings = Settings {
            max_per_pair: 2,
            ..Settings::default()
        };
        let r = run_with(settings, &ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
    }

    #[test]
    fn a_brief_disagreement_with_the_kernel_passes() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.sockets(1_000_000, "rust-1", &["10.0.0.2:4001"]),
            kit.opened(1_500_000, "rust-1", "go-1", "1"),
            kit.stderr(9_000_000, "rust-1", "later"),
        ];
        assert_eq!(run(&ev, &kit).status, Status::Passed);
    }

    #[test]
    fn coverage_says_why_the_kernel_was_not_consulted() {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.opened(1_000_000, "rust-1", "go-1", "1"),
            kit.opened(1_000_000, "go-1", "rust-1", "1"),
            kit.sockets_unavailable(1_000_000, "rust-1", "/proc/41/fd: permission denied"),
            kit.sockets_unavailable(1_000_000, "go-1", "/proc/42/fd: permission denied"),
            kit.stderr(9_000_000, "rust-1", "later"),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed);
        let coverage = r.coverage.unwrap();
        assert!(
            coverage.ends_with("not cross-checked with the kernel: go-1: /proc/42/fd: permission denied; rust-1: /proc/41/fd: permission denied"),
            "{coverage}"
        );

        kit.case.transport = Transport::QuicV1;
        let coverage = run(&ev, &kit).coverage.unwrap();
        assert!(
            coverage.ends_with("not cross-checked with the kernel: QUIC runs over UDP, the kernel keeps no connections to compare"),
            "{coverage}"
        );
    }

    #[test]
    fn multiaddrs_to_sockets() {
        assert_eq!(
            tcp_socket_addr("/ip4/10.0.0.2/tcp/4001"),
            Some("10.0.0.2:4001".parse().unwrap())
        );
        assert_eq!(
            tcp_socket_addr("/ip4/10.0.0.2/tcp/4001/p2p/12D3"),
            Some("10.0.0.2:4001".parse().unwrap())
        );
        assert_eq!(tcp_socket_addr("/ip4/10.0.0.2/udp/4001/quic-v1"), None);
    }

    #[test]
    fn an_excess_still_open_at_the_end_counts() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.opened(1_000_000, "go-1", "rust-1", "a"),
            kit.opened(1_000_000, "go-1", "rust-1", "b"),
            kit.stderr(6_000_000, "go-1", "still here"),
        ];
        assert_eq!(run(&ev, &kit).status, Status::Failed);
    }
}
