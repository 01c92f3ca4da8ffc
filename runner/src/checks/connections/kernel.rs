//! The `connections` check's cross-check against the kernel: over TCP, the runner reads each peer process's
//! established sockets (`Observation::Sockets`), and a peer whose reported connections differ from them for longer
//! than the settling time fails the check.
//!
//! Reads are rationed (`peers::kernel_view`), so a disagreement is judged only at reads: it counts when two reads
//! more than the settling time apart both show it, with nothing in between that agreed. A late read then delays the
//! evidence but cannot make a brief disagreement look long.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::NAME;
use crate::checks::evidence::count;
use crate::checks::{clock, Context};
use crate::events::{Fault, Micros, Observation, PeerEvent, Recorded};
use crate::matrix::Transport;
use crate::results::CheckResult;

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

/// A time a peer's reported TCP connections differed from the kernel's.
#[derive(Debug, Clone)]
pub(super) struct Misreport {
    peer: String,
    /// The first read that showed it, and the last.
    since: Micros,
    last_seen: Micros,
    /// When the peer and the kernel agreed again.
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

/// What the peers reported of their TCP connections, against the kernel's sockets.
pub(super) struct KernelCheck {
    /// How long a disagreement may last before it counts.
    settle: Duration,
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
    /// Addresses of the case's participants that are not peers (the UPnP gateway, from where it said it
    /// listens): a peer's HTTP connections to it are no libp2p connections and are not compared.
    participants: BTreeSet<std::net::IpAddr>,
}

impl KernelCheck {
    pub(super) fn new(settle: Duration) -> Self {
        Self {
            settle,
            reported: BTreeMap::new(),
            remote_of: BTreeMap::new(),
            kernel: BTreeMap::new(),
            sampled: BTreeSet::new(),
            unavailable: BTreeMap::new(),
            misreporting: BTreeMap::new(),
            misreports: Vec::new(),
            stopped: BTreeSet::new(),
            kernel_samples: 0,
            participants: BTreeSet::new(),
        }
    }

    pub(super) fn observe(&mut self, rec: &Recorded) {
        let line = match &rec.what {
            Observation::Sockets { established } => {
                // A peer that said `stopped` is no longer compared.
                if self.kernel.contains_key(&rec.peer) || !self.stopped.contains(&rec.peer) {
                    self.kernel_samples += 1;
                    self.sampled.insert(rec.peer.clone());
                    // Every socket counts, duplicates included.
                    let participants = &self.participants;
                    self.kernel.insert(
                        rec.peer.clone(),
                        established
                            .iter()
                            .filter_map(|a| a.parse::<SocketAddr>().ok())
                            .filter(|a| !participants.contains(&a.ip()))
                            .collect(),
                    );
                    self.judge_read(&rec.peer.clone(), rec.at);
                }
                return;
            }
            Observation::SocketsUnavailable { reason } => {
                self.unavailable
                    .entry(rec.peer.clone())
                    .or_insert_with(|| reason.clone());
                return;
            }
            Observation::Participant { line } => {
                if let crate::events::ParticipantEvent::Listening { addrs } = &line.event {
                    // `http://10.216.7.254:5000/rootDesc.xml`
                    self.participants.extend(addrs.iter().filter_map(|a| {
                        let host = a.strip_prefix("http://")?.split(['/', ':']).next()?;
                        host.parse::<std::net::IpAddr>().ok()
                    }));
                }
                return;
            }
            Observation::Event { line } => line,
            // The killed process's connections died with it; its restarted process is compared afresh.
            Observation::Fault {
                fault: Fault::Kill, ..
            } => {
                self.reported.remove(&rec.peer);
                self.end_misreport(&rec.peer.clone(), rec.at);
                self.kernel.remove(&rec.peer);
                return;
            }
            _ => return,
        };
        match &line.event {
            PeerEvent::ConnectionOpened {
                remote,
                conn_id,
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
                    self.agreed_again(&rec.peer, line.ts);
                }
            }
            PeerEvent::ConnectionClosed { conn_id, .. } => {
                let was_reported = self
                    .reported
                    .get_mut(&rec.peer)
                    .and_then(|r| r.remove(conn_id))
                    .is_some();
                if was_reported {
                    self.agreed_again(&rec.peer, line.ts);
                }
            }
            PeerEvent::Stopped => {
                self.stopped.insert(rec.peer.clone());
                // From here the peer tears connections down; the kernel lags behind on purpose.
                self.end_misreport(&rec.peer.clone(), line.ts);
                self.kernel.remove(&rec.peer);
            }
            _ => {}
        }
    }

    /// Per remote end whose counts differ: (connections the peer reports, sockets the kernel's last read holds).
    fn diffs(&self, peer: &str) -> Option<BTreeMap<SocketAddr, (usize, usize)>> {
        let kernel = tally(self.kernel.get(peer)?.iter().copied());
        let reported = tally(
            self.reported
                .get(peer)
                .into_iter()
                .flat_map(|r| r.values().copied()),
        );
        Some(
            reported
                .keys()
                .chain(kernel.keys())
                .map(|a| {
                    let r = reported.get(a).copied().unwrap_or(0);
                    let k = kernel.get(a).copied().unwrap_or(0);
                    (*a, (r, k))
                })
                .filter(|(_, (r, k))| r != k)
                .collect(),
        )
    }

    /// A read of `peer`'s sockets at `now`: starts a disagreement, carries one on (the differences both reads
    /// show), or ends it.
    fn judge_read(&mut self, peer: &str, now: Micros) {
        let Some(diffs) = self.diffs(peer) else { return };
        if diffs.is_empty() {
            return self.end_misreport(peer, now);
        }
        if let Some(m) = self.misreporting.get_mut(peer) {
            let lasting: BTreeMap<SocketAddr, (usize, usize)> = m
                .diffs
                .iter()
                .filter(|(a, counts)| diffs.get(a) == Some(counts))
                .map(|(a, c)| (*a, *c))
                .collect();
            if !lasting.is_empty() {
                m.diffs = lasting;
                m.last_seen = now;
                return;
            }
            // Another disagreement than the one seen before: that one ended unseen, between the reads.
            self.end_misreport(peer, now);
        }
        self.misreporting.insert(
            peer.to_owned(),
            Misreport {
                peer: peer.to_owned(),
                since: now,
                last_seen: now,
                until: None,
                diffs,
            },
        );
    }

    /// A reported change at `now` that makes the peer agree with the kernel's last read ends a disagreement; a
    /// change never starts one, since the last read may be older than the change.
    fn agreed_again(&mut self, peer: &str, now: Micros) {
        if self.diffs(peer).is_some_and(|d| d.is_empty()) {
            self.end_misreport(peer, now);
        }
    }

    fn end_misreport(&mut self, peer: &str, now: Micros) {
        if let Some(mut m) = self.misreporting.remove(peer) {
            m.until = Some(now);
            if m.last_seen - m.since > self.settle_us() {
                self.misreports.push(m);
            }
        }
    }

    fn settle_us(&self) -> Micros {
        self.settle.as_micros() as Micros
    }

    /// What the kernel comparison covered, or why it could not be made, for the coverage line. `holders`: the peers
    /// that reported connections.
    pub(super) fn coverage(&self, ctx: &Context, holders: BTreeSet<&String>) -> String {
        if ctx.case.transport == Transport::QuicV1 {
            return "not cross-checked with the kernel: QUIC runs over UDP, the kernel keeps no connections to compare".into();
        }
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

    /// When each disagreement going on now can be proven lasting: by a read past its settling time, which the
    /// runner makes within about a second of it (`peers::kernel_view` reads a peer again 3.5 s after any change).
    pub(super) fn provable_at(&self) -> impl Iterator<Item = Micros> + '_ {
        let settle = self.settle_us();
        self.misreporting.values().map(move |m| m.since + settle + 1_000_000)
    }

    /// The disagreements that reads showed lasting beyond the settling time, one still going on at the end of the
    /// record included.
    pub(super) fn misreports(&self) -> Vec<&Misreport> {
        let mut misreports: Vec<&Misreport> = self.misreports.iter().collect();
        misreports.extend(
            self.misreporting
                .values()
                .filter(|m| m.last_seen - m.since > self.settle_us()),
        );
        misreports
    }

    /// One disagreement in one line: every address it concerns for the evidence, the first and how many more for
    /// the failure's message (`all: false`), which stays short however many peers the case has.
    pub(super) fn describe(&self, m: &Misreport, ctx: &Context, all: bool) -> String {
        let shown = if all { m.diffs.len() } else { 1 };
        let mut diffs: Vec<String> = m
            .diffs
            .iter()
            .take(shown)
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
        if m.diffs.len() > shown {
            diffs.push(format!("and {} more address(es)", m.diffs.len() - shown));
        }
        format!(
            "{} {}, for at least {:.1} s from {}",
            ctx.describe(&m.peer),
            diffs.join("; "),
            (m.last_seen - m.since) as f64 / 1e6,
            clock(m.since)
        )
    }

    /// The failure of the first of `misreports`, with all of them as evidence; `None` when there is none.
    pub(super) fn failed(
        &self,
        misreports: &[&Misreport],
        ctx: &Context,
    ) -> Option<CheckResult> {
        let first = misreports.first()?;
        let evidence = misreports
            .iter()
            .map(|m| self.describe(m, ctx, true))
            .collect();
        let remotes = first
            .diffs
            .keys()
            .filter_map(|a| self.remote_of.get(&(first.peer.clone(), *a)))
            .map(|id| ctx.name_of(id));
        Some(
            CheckResult::failed(NAME, self.describe(first, ctx, false), evidence)
                .at(first.since)
                .involving(std::iter::once(first.peer.clone()).chain(remotes)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{run, run_with};
    use super::super::Settings;
    use super::*;
    use crate::testkit::Kit;
    use crate::results::Status;

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
            kit.sockets(9_000_000, "rust-1", &["10.0.0.2:4001", "10.0.0.2:4002"]),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        let msg = r.message.unwrap();
        assert!(
            msg.starts_with("rust-1 (rust-libp2p 0.57.1) reports 0 connection(s) to 10.0.0.2:4002 while the kernel holds 1, for at least 7.8 s"),
            "{msg}"
        );
    }

    #[test]
    fn a_peer_hiding_a_hundred_connections_fails_in_one_short_line() {
        let kit = Kit::many(60, 60);
        let hidden: Vec<String> = (0..119).map(|i| format!("10.0.{}.{}:4001", i / 200, i % 200 + 2)).collect();
        let ev = [
            kit.sockets(1_200_000, "rust-1", &hidden.iter().map(String::as_str).collect::<Vec<_>>()),
            kit.sockets(9_000_000, "rust-1", &hidden.iter().map(String::as_str).collect::<Vec<_>>()),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert_eq!(
            r.message.as_deref().unwrap(),
            "rust-1 (rust-libp2p 0.57.1) reports 0 connection(s) to 10.0.0.2:4001 while the kernel holds 1; \
             and 118 more address(es), for at least 7.8 s from 00:00:01.200"
        );
        // Every address is in the evidence.
        assert!(r.evidence[0].contains("10.0.0.120:4001"), "{:?}", r.evidence);
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
            kit.sockets(9_000_000, "rust-1", &two),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        let msg = r.message.unwrap();
        assert!(
            msg.starts_with("rust-1 (rust-libp2p 0.57.1) reports 1 connection(s) to 10.0.0.2:4001 (go-1) while the kernel holds 2, for at least 7.8 s from 00:00:01.200"),
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

    /// Reads far apart (rationed, or delayed) that each show a different passing disagreement prove nothing lasted:
    /// a disagreement counts only when two reads beyond the settling time both show it.
    #[test]
    fn one_read_proves_no_lasting_disagreement() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            // The peer reports a connection the kernel's last (old) read does not hold: the read is stale.
            kit.sockets(500_000, "rust-1", &[]),
            kit.opened(1_000_000, "rust-1", "go-1", "1"),
            // A read catches a connection in the middle of closing; the next, 8 s later, agrees.
            kit.sockets(9_000_000, "rust-1", &["10.0.0.2:4001", "10.0.0.2:4005"]),
            kit.sockets(17_000_000, "rust-1", &["10.0.0.2:4001"]),
            // Two reads, each with its own passing difference.
            kit.sockets(25_000_000, "rust-1", &["10.0.0.2:4001", "10.0.0.2:4006"]),
            kit.sockets(33_000_000, "rust-1", &["10.0.0.2:4001", "10.0.0.2:4007"]),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");

        // The same difference in two reads 3.5 s apart: it lasted.
        let ev = [
            kit.opened(1_000_000, "rust-1", "go-1", "1"),
            kit.sockets(1_200_000, "rust-1", &["10.0.0.2:4001", "10.0.0.2:4006"]),
            kit.sockets(4_700_000, "rust-1", &["10.0.0.2:4001", "10.0.0.2:4006", "10.0.0.2:4007"]),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        let msg = r.message.unwrap();
        assert!(msg.contains("to 10.0.0.2:4006 while the kernel holds 1, for at least 3.5 s from 00:00:01.200"), "{msg}");
        assert!(!msg.contains("4007"), "{msg}");
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
}
