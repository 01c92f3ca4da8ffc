//! `connections`: a peer holds at most N connections to another at once, once simultaneous dials have had time to
//! settle. Duplicate connections are where gossipsub between implementations quietly breaks (rust-libp2p#6047).
//!
//! What peers report is checked against the kernel: over TCP, the runner samples each peer process's established
//! sockets, and a peer whose reported connections differ from them for longer than the settling time fails too.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{clock, Check, Context};
use crate::events::{Direction, Micros, Observation, PeerEvent, Recorded};
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
    /// Reported open, but no established socket.
    phantom: BTreeSet<SocketAddr>,
    /// Established sockets the peer does not report.
    hidden: BTreeSet<SocketAddr>,
}

pub struct Connections {
    settings: Settings,
    /// Per peer: the remote ends of its reported open TCP connections, by connection id.
    reported: BTreeMap<String, BTreeMap<String, SocketAddr>>,
    /// Per peer: the kernel's established remote ends, from the runner's latest sample.
    kernel: BTreeMap<String, BTreeSet<SocketAddr>>,
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
            kernel: BTreeMap::new(),
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
        let reported: BTreeSet<SocketAddr> = self
            .reported
            .get(peer)
            .map(|r| r.values().copied().collect())
            .unwrap_or_default();
        let phantom: BTreeSet<SocketAddr> = reported.difference(kernel).copied().collect();
        let hidden: BTreeSet<SocketAddr> = kernel.difference(&reported).copied().collect();
        if phantom.is_empty() && hidden.is_empty() {
            self.end_misreport(peer, now);
        } else {
            let m = self
                .misreporting
                .entry(peer.to_owned())
                .or_insert_with(|| Misreport {
                    peer: peer.to_owned(),
                    since: now,
                    until: None,
                    phantom: BTreeSet::new(),
                    hidden: BTreeSet::new(),
                });
            m.phantom = phantom;
            m.hidden = hidden;
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
}

impl Check for Connections {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, rec: &Recorded) {
        self.last = self.last.max(rec.time());
        if let Observation::Sockets { established } = &rec.what {
            // A peer that said `stopped` is no longer compared.
            if self.kernel.contains_key(&rec.peer) || !self.stopped.contains(&rec.peer) {
                self.kernel_samples += 1;
                self.kernel.insert(
                    rec.peer.clone(),
                    established.iter().filter_map(|a| a.parse().ok()).collect(),
                );
                self.compare(&rec.peer.clone(), rec.at);
            }
            return;
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
        let pairs = self.pairs.len();
        let total: usize = self.pairs.values().map(Vec::len).sum();
        let mut misreports: Vec<&Misreport> = self.misreports.iter().collect();
        misreports.extend(
            self.misreporting
                .values()
                .filter(|m| self.last - m.since > self.settle_us()),
        );
        let describe_misreport = |m: &Misreport| {
            let list = |s: &BTreeSet<SocketAddr>| {
                s.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let mut parts = Vec::new();
            if !m.phantom.is_empty() {
                parts.push(format!(
                    "reports connections the kernel does not hold ({})",
                    list(&m.phantom)
                ));
            }
            if !m.hidden.is_empty() {
                parts.push(format!(
                    "holds TCP connections it does not report ({})",
                    list(&m.hidden)
                ));
            }
            format!(
                "{} {} for {:.1} s from {}",
                ctx.describe(&m.peer),
                parts.join(" and "),
                (m.until.unwrap_or(self.last) - m.since) as f64 / 1e6,
                clock(m.since)
            )
        };
        if excesses.is_empty() {
            if let Some(first) = misreports.first() {
                let evidence = misreports.iter().map(|m| describe_misreport(m)).collect();
                return CheckResult::failed(NAME, describe_misreport(first), evidence)
                    .at(first.since)
                    .involving([first.peer.clone()]);
            }
        }
        let kernel_note = match self.kernel_samples {
            0 => "no kernel view (not TCP, or the backend cannot see the processes)".to_owned(),
            n => format!(
                "the kernel's TCP connections matched what the peers reported ({n} samples)"
            ),
        };
        let Some(first) = excesses.first() else {
            return CheckResult::passed(
                NAME,
                vec![kernel_note, format!("{total} connection(s) over {pairs} peer pair(s), never more than {} per pair for longer than {} ms", self.settings.max_per_pair, self.settle_us() / 1000)],
            );
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testkit::{id, Kit};
    use crate::results::Status;

    fn opened(kit: &Kit, ts: Micros, holder: &str, remote: &str, conn: &str) -> Recorded {
        kit.event(
            ts,
            holder,
            PeerEvent::ConnectionOpened {
                remote: id(remote),
                conn_id: conn.into(),
                direction: Direction::Outbound,
                remote_addr: "/ip4/10.0.0.2/tcp/4001".into(),
                security: None,
                muxer: None,
            },
        )
    }

    fn closed(kit: &Kit, ts: Micros, holder: &str, remote: &str, conn: &str) -> Recorded {
        kit.event(
            ts,
            holder,
            PeerEvent::ConnectionClosed {
                remote: id(remote),
                conn_id: conn.into(),
                direction: Direction::Outbound,
                remote_addr: "/ip4/10.0.0.2/tcp/4001".into(),
                reason: None,
            },
        )
    }

    fn run(events: &[Recorded], kit: &Kit) -> CheckResult {
        let mut c = Connections::new(Settings::default());
        events.iter().for_each(|e| c.observe(e));
        c.verdict(&kit.context())
    }

    #[test]
    fn one_connection_per_pair_passes() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            opened(&kit, 1_000, "rust-1", "go-1", "1"),
            opened(&kit, 1_000, "go-1", "rust-1", "a"),
            kit.event(20_000_000, "rust-1", PeerEvent::Stopped {}),
        ];
        assert_eq!(run(&ev, &kit).status, Status::Passed);
    }

    #[test]
    fn a_simultaneous_dial_that_settles_passes() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            opened(&kit, 1_000, "rust-1", "go-1", "1"),
            opened(&kit, 2_000, "rust-1", "go-1", "2"),
            closed(&kit, 500_000, "rust-1", "go-1", "2"),
            kit.event(20_000_000, "rust-1", PeerEvent::Stopped {}),
        ];
        assert_eq!(run(&ev, &kit).status, Status::Passed);
    }

    #[test]
    fn lasting_duplicates_fail_with_every_connection() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            opened(&kit, 1_000_000, "rust-1", "go-1", "1"),
            opened(&kit, 1_100_000, "rust-1", "go-1", "2"),
            opened(&kit, 1_200_000, "rust-1", "go-1", "3"),
            kit.event(9_100_000, "rust-1", PeerEvent::Stopped {}),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        let msg = r.message.unwrap();
        assert!(msg.starts_with("rust-1 (rust-libp2p 0.57.1) held 3 connections to go-1 (go-libp2p v0.51.0) for 8.0 s"), "{msg}");
        assert_eq!(
            r.evidence
                .iter()
                .filter(|l| l.contains("connection "))
                .count(),
            3,
            "{:?}",
            r.evidence
        );
    }

    fn sockets(kit: &Kit, at: Micros, peer: &str, established: &[&str]) -> Recorded {
        let _ = kit;
        Recorded {
            at,
            peer: peer.into(),
            what: Observation::Sockets {
                established: established.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    #[test]
    fn kernel_agreeing_with_the_peer_passes() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            sockets(&kit, 500_000, "rust-1", &[]),
            opened(&kit, 1_000_000, "rust-1", "go-1", "1"),
            sockets(&kit, 1_200_000, "rust-1", &["10.0.0.2:4001"]),
            kit.event(20_000_000, "rust-1", PeerEvent::Stopped {}),
            sockets(&kit, 20_500_000, "rust-1", &[]),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        assert!(r.evidence[0].contains("matched"), "{:?}", r.evidence);
    }

    #[test]
    fn a_peer_hiding_kernel_connections_fails() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            opened(&kit, 1_000_000, "rust-1", "go-1", "1"),
            sockets(
                &kit,
                1_200_000,
                "rust-1",
                &[
                    "10.0.0.2:4001",
                    "10.0.0.2:4001".replace("4001", "4002").as_str(),
                ],
            ),
            kit.stderr(9_000_000, "rust-1", "later"),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        let msg = r.message.unwrap();
        assert!(msg.starts_with("rust-1 (rust-libp2p 0.57.1) holds TCP connections it does not report (10.0.0.2:4002)"), "{msg}");
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
            opened(&kit, 1_000_000, "go-1", "rust-1", "a"),
            opened(&kit, 1_000_000, "go-1", "rust-1", "b"),
            kit.stderr(6_000_000, "go-1", "still here"),
        ];
        assert_eq!(run(&ev, &kit).status, Status::Failed);
    }
}
