//! `connections`: a peer holds at most N connections to another at once, once simultaneous dials have had time to
//! settle. Duplicate connections are where gossipsub between implementations quietly breaks (rust-libp2p#6047).
//!
//! What peers report is checked against the kernel too (`kernel`): a peer whose reported TCP connections differ
//! from its process's established sockets for longer than the settling time fails.

mod kernel;

use std::collections::{BTreeMap, BTreeSet};


use super::evidence::count;
use super::{clock, Check, Context};
use crate::events::{Direction, Fault, Micros, Observation, PeerEvent, Recorded};
pub use crate::matrix::checks::connections::Settings;
use crate::peers::Pending;
use crate::results::CheckResult;
use kernel::KernelCheck;

pub const NAME: &str = "connections";

#[derive(Debug, Clone)]
struct Conn {
    id: String,
    direction: Direction,
    opened: Micros,
    closed: Option<Micros>,
    /// A connection to a process the time line killed, which its holder keeps until it notices (a QUIC idle
    /// timeout): not a duplicate of the connection to the restarted peer.
    stale: bool,
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

pub struct Connections {
    settings: Settings,
    /// What the peers report, against the kernel's sockets.
    kernel: KernelCheck,
    /// (holder name, remote peer id) -> every connection, open or closed.
    pairs: BTreeMap<(String, String), Vec<Conn>>,
    /// (holder, remote) -> the excess going on now.
    ongoing: BTreeMap<(String, String), Excess>,
    excesses: Vec<Excess>,
    last: Micros,
    /// Each peer's id, from its first event: to find the connections to a killed peer.
    ids: BTreeMap<String, String>,
}

impl Connections {
    pub fn new(settings: Settings) -> Self {
        Self {
            kernel: KernelCheck::new(settings.settle),
            settings,
            pairs: BTreeMap::new(),
            ongoing: BTreeMap::new(),
            excesses: Vec::new(),
            last: 0,
            ids: BTreeMap::new(),
        }
    }

    /// A peer killed at `at`: its own connections ended with its process; the others' connections to it are stale.
    fn killed(&mut self, peer: &str, at: Micros) {
        let id = self.ids.get(peer).cloned();
        let keys: Vec<(String, String)> = self
            .pairs
            .keys()
            .filter(|(holder, remote)| holder == peer || Some(remote) == id.as_ref())
            .cloned()
            .collect();
        for key in keys {
            for c in self.pairs.get_mut(&key).into_iter().flatten() {
                if c.closed.is_none() {
                    if key.0 == peer {
                        c.closed = Some(at);
                    } else {
                        c.stale = true;
                    }
                }
            }
            self.update(key, at);
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
            .filter(|c| c.closed.is_none() && !c.stale)
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
        self.kernel.observe(rec);
        if let Observation::Fault {
            fault: Fault::Kill, ..
        } = &rec.what
        {
            self.killed(&rec.peer, rec.at);
            return;
        }
        let Observation::Event { line } = &rec.what else {
            return;
        };
        self.ids.entry(rec.peer.clone()).or_insert_with(|| line.peer.clone());
        match &line.event {
            PeerEvent::ConnectionOpened {
                remote,
                conn_id,
                direction,
                ..
            } => {
                let key = (rec.peer.clone(), remote.clone());
                let conn = Conn {
                    id: conn_id.clone(),
                    direction: *direction,
                    opened: line.ts,
                    closed: None,
                    stale: false,
                };
                self.pairs.entry(key.clone()).or_default().push(conn);
                self.update(key, line.ts);
            }
            PeerEvent::ConnectionClosed {
                remote, conn_id, ..
            } => {
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
            PeerEvent::Stopped => {
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

    /// An excess, or a disagreement with the kernel, going on now: it fails once it outlasts the settling time.
    fn pending(&self, _: &Context, now: Micros) -> Option<Pending> {
        let settle = self.settle_us();
        let excesses = self.ongoing.values().map(|e| e.since + settle + 1);
        Pending::latest(now, excesses.chain(self.kernel.provable_at()), |n| {
            format!("{n} excess(es) or kernel disagreement(s) going on")
        })
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
            self.kernel
                .coverage(ctx, self.pairs.keys().map(|(h, _)| h).collect())
        );
        let misreports = self.kernel.misreports();
        if excesses.is_empty() {
            if let Some(failed) = self.kernel.failed(&misreports, ctx) {
                return failed.covering(coverage);
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
        let mut evidence: Vec<String> = misreports
            .iter()
            .map(|m| self.kernel.describe(m, ctx, true))
            .collect();
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
    use crate::testkit::Kit;
    use crate::results::Status;

    pub(super) fn run_with(settings: Settings, events: &[Recorded], kit: &Kit) -> CheckResult {
        let mut c = Connections::new(settings);
        events.iter().for_each(|e| c.observe(e));
        c.verdict(&kit.context())
    }

    pub(super) fn run(events: &[Recorded], kit: &Kit) -> CheckResult {
        run_with(Settings::default(), events, kit)
    }

    #[test]
    fn the_case_waits_until_an_excess_could_fail() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut c = Connections::new(Settings::default());
        c.observe(&kit.opened(1_000_000, "rust-1", "go-1", "1"));
        assert_eq!(c.pending(&kit.context(), 2_000_000), None);
        c.observe(&kit.opened(2_000_000, "rust-1", "go-1", "2"));
        assert_eq!(c.pending(&kit.context(), 2_500_000).map(|p| p.until), Some(5_000_001));
        c.observe(&kit.closed(2_600_000, "rust-1", "go-1", "2"));
        assert_eq!(c.pending(&kit.context(), 2_700_000), None);
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
            kit.sockets(9_000_000, "rust-1", &["10.0.0.2:4001"]),
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
    fn connections_to_a_killed_process_are_not_duplicates_of_the_new_ones() {
        use crate::events::Fault;
        let kit = Kit::new(&["rust-1", "go-1"]);
        let s = 1_000_000;
        let ev = [
            kit.opened(s, "rust-1", "go-1", "1"),
            kit.event(s, "go-1", crate::events::PeerEvent::Stopped),
            kit.fault(2 * s, "go-1", Fault::Kill),
            kit.fault(3 * s, "go-1", Fault::Restart),
            // rust-1 keeps the dead process's connection until it idles out, and holds the new one beside it.
            kit.opened(3 * s + 100_000, "rust-1", "go-1", "2"),
            kit.closed(12 * s, "rust-1", "go-1", "1"),
            kit.stopped(14 * s, "rust-1"),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
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
