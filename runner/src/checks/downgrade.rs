//! `no-protocol-downgrade`: once a peer has advertised a protocol to another (in identify or an identify push),
//! it must keep advertising it. A peer that drops `/meshsub/1.1.0` mid-connection silently leaves gossipsub.

use std::collections::{BTreeMap, BTreeSet};


use super::evidence::{count, seconds};
use super::{clock, Check, Context};
use crate::events::{Command, Micros, Observation, PeerEvent, Recorded};
pub use crate::matrix::checks::downgrade::Settings;
use crate::peers::Pending;
use crate::results::CheckResult;

pub const NAME: &str = "no-protocol-downgrade";

/// How long a connection may stay open without an identify before the check says it could not judge it: identify
/// runs right after a connection is established, so a few seconds is plenty.
const SETTLE_US: Micros = 3_000_000;

/// What one identify said, kept for evidence.
#[derive(Debug, Clone)]
struct Seen {
    at: Micros,
    conn_id: Option<String>,
    agent: String,
    protocols: Vec<String>,
}

#[derive(Debug)]
struct Downgrade {
    observer: String,
    remote: String,
    lost: Vec<String>,
    before: Seen,
    after: Seen,
}

/// One connection as its holder reported it.
struct Span {
    opened: Micros,
    closed: Option<Micros>,
}

pub struct NoProtocolDowngrade {
    patterns: Vec<glob::Pattern>,
    /// (observer name, remote peer id) -> watched protocols advertised so far, and the identify that last did.
    advertised: BTreeMap<(String, String), (BTreeSet<String>, Seen)>,
    downgrades: Vec<Downgrade>,
    identifies: usize,
    /// (observer, remote id, connection id or none) -> identify messages on it: the first is the exchange, the
    /// rest are pushes.
    per_conn: BTreeMap<(String, String, Option<String>), usize>,
    /// Identifies whose library does not say the connection: (observer, remote id) -> when.
    unattributed: BTreeMap<(String, String), Vec<Micros>>,
    /// (observer, remote id, connection id) -> the connection, to find those nobody identified.
    conns: BTreeMap<(String, String, String), Span>,
    /// When each peer was told to stop or went away: its connections are not judged beyond.
    ended: BTreeMap<String, Micros>,
    last: Micros,
    /// (when, peer) of every `drop_protocol` command.
    dropped: Vec<(Micros, String)>,
}

impl NoProtocolDowngrade {
    pub fn new(settings: Settings) -> Self {
        // Patterns are validated when the matrix is loaded; an invalid one here matches nothing.
        let patterns = settings
            .protocols
            .iter()
            .filter_map(|p| glob::Pattern::new(p).ok())
            .collect();
        Self {
            patterns,
            advertised: BTreeMap::new(),
            downgrades: Vec::new(),
            identifies: 0,
            per_conn: BTreeMap::new(),
            unattributed: BTreeMap::new(),
            conns: BTreeMap::new(),
            ended: BTreeMap::new(),
            last: 0,
            dropped: Vec::new(),
        }
    }

    fn watched(&self, protocol: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(protocol))
    }
}

impl Check for NoProtocolDowngrade {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, rec: &Recorded) {
        self.last = self.last.max(rec.time());
        let ends = match &rec.what {
            Observation::Command { .. } => matches!(rec.command(), Some(Command::Stop)),
            Observation::Exited { .. } | Observation::Killed { .. } => true,
            Observation::Event { line } => matches!(line.event, PeerEvent::Stopped),
            _ => false,
        };
        if ends {
            self.ended.entry(rec.peer.clone()).or_insert(rec.time());
        }
        if let Some(Command::DropProtocol { .. }) = rec.command() {
            self.dropped.push((rec.at, rec.peer.clone()));
        }
        let Observation::Event { line } = &rec.what else {
            return;
        };
        match &line.event {
            PeerEvent::ConnectionOpened {
                remote, conn_id, ..
            } => {
                self.conns.insert(
                    (rec.peer.clone(), remote.clone(), conn_id.clone()),
                    Span {
                        opened: line.ts,
                        closed: None,
                    },
                );
                return;
            }
            PeerEvent::ConnectionClosed {
                remote, conn_id, ..
            } => {
                if let Some(c) =
                    self.conns
                        .get_mut(&(rec.peer.clone(), remote.clone(), conn_id.clone()))
                {
                    c.closed.get_or_insert(line.ts);
                }
                return;
            }
            _ => {}
        }
        let PeerEvent::Identify {
            remote,
            conn_id,
            agent_version,
            protocols,
            ..
        } = &line.event
        else {
            return;
        };
        self.identifies += 1;
        *self
            .per_conn
            .entry((rec.peer.clone(), remote.clone(), conn_id.clone()))
            .or_insert(0) += 1;
        if conn_id.is_none() {
            self.unattributed
                .entry((rec.peer.clone(), remote.clone()))
                .or_default()
                .push(line.ts);
        }
        let now: BTreeSet<String> = protocols
            .iter()
            .filter(|p| self.watched(p))
            .cloned()
            .collect();
        let seen = Seen {
            at: line.ts,
            conn_id: conn_id.clone(),
            agent: agent_version.clone(),
            protocols: protocols.clone(),
        };
        let key = (rec.peer.clone(), remote.clone());
        match self.advertised.get_mut(&key) {
            None => {
                self.advertised.insert(key, (now, seen));
            }
            Some((so_far, last)) => {
                let lost: Vec<String> = so_far.difference(&now).cloned().collect();
                if !lost.is_empty() {
                    self.downgrades.push(Downgrade {
                        observer: rec.peer.clone(),
                        remote: remote.clone(),
                        lost,
                        before: last.clone(),
                        after: seen.clone(),
                    });
                }
                so_far.extend(now);
                *last = seen;
            }
        }
    }

    /// A connection not identified yet within the settle time, and a protocol dropped on command that no downgrade
    /// shows yet: the identify push saying so is on its way.
    fn pending(&self, ctx: &Context, now: Micros) -> Option<Pending> {
        let unidentified = self
            .conns
            .iter()
            .filter(|((observer, remote, conn_id), span)| {
                span.closed.is_none()
                    && !self.ended.contains_key(observer)
                    && !self.per_conn.contains_key(&(observer.clone(), remote.clone(), Some(conn_id.clone())))
                    && !self.unattributed.contains_key(&(observer.clone(), remote.clone()))
            })
            .map(|(_, span)| span.opened + SETTLE_US + 1);
        let dropped = self
            .dropped
            .iter()
            .filter(|(at, peer)| !self.downgrades.iter().any(|d| d.after.at >= *at && ctx.name_of(&d.remote) == *peer))
            .map(|(at, _)| at + SETTLE_US);
        Pending::latest(now, unidentified.chain(dropped), |n| format!("{n} identify exchange(s) or push(es) to come"))
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let exchanges = self.per_conn.len();
        let pushes = self.identifies - exchanges;
        let unidentified = self.unidentified(ctx);
        let judged = self.conns.len();
        let coverage = format!(
            "{} identify exchanges over {} connected pair(s), {} push(es); {} of {} connection(s) identified",
            count(exchanges),
            count(self.advertised.len()),
            count(pushes),
            count(judged - unidentified.len()),
            count(judged)
        );
        let Some(first) = self.downgrades.first() else {
            let evidence = vec![format!(
                "{} identify message(s) over {} peer pair(s), no watched protocol lost",
                self.identifies,
                self.advertised.len()
            )];
            // No identify, or a connection nobody identified, is a downgrade that could not have been seen.
            if self.identifies == 0 {
                return CheckResult::inconclusive(
                    NAME,
                    "no peer reported any identify: no protocol list to judge".into(),
                    evidence,
                )
                .covering(coverage);
            }
            if let Some(first) = unidentified.first() {
                let more = match unidentified.len() {
                    1 => String::new(),
                    n => format!(" ({n} connections in all)"),
                };
                let mut evidence = evidence;
                evidence.extend(unidentified.iter().cloned());
                return CheckResult::inconclusive(NAME, format!("{first}{more}"), evidence)
                    .covering(coverage);
            }
            return CheckResult::passed(NAME, evidence).covering(coverage);
        };
        let mut evidence = Vec::new();
        for d in &self.downgrades {
            let remote = ctx.describe(&ctx.name_of(&d.remote));
            evidence.push(format!(
                "{remote} stopped advertising {} to {} at {}",
                d.lost.join(", "),
                ctx.describe(&d.observer),
                clock(d.after.at)
            ));
            for (label, s) in [("before", &d.before), ("after", &d.after)] {
                evidence.push(format!(
                    "  identify {label} at {} on connection {} (agent {}): {}",
                    clock(s.at),
                    s.conn_id.as_deref().unwrap_or("?"),
                    s.agent,
                    s.protocols.join(" ")
                ));
            }
        }
        let message = format!(
            "{} stopped advertising {} to {} at {} ({} downgrade(s) in all)",
            ctx.describe(&ctx.name_of(&first.remote)),
            first.lost.join(", "),
            ctx.describe(&first.observer),
            clock(first.after.at),
            self.downgrades.len()
        );
        CheckResult::failed(NAME, message, evidence)
            .at(first.after.at)
            .involving([ctx.name_of(&first.remote), first.observer.clone()])
            .covering(coverage)
    }
}

impl NoProtocolDowngrade {
    /// Connections held past the settle time on which the holder never reported an identify, one line each.
    fn unidentified(&self, ctx: &Context) -> Vec<String> {
        let mut out = Vec::new();
        for ((observer, remote, conn_id), span) in &self.conns {
            let end = [span.closed, self.ended.get(observer).copied()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(self.last);
            if end - span.opened <= SETTLE_US {
                continue;
            }
            let on_it = self.per_conn.contains_key(&(
                observer.clone(),
                remote.clone(),
                Some(conn_id.clone()),
            ));
            // A library that does not name the connection: any identify from that remote while it was open.
            let unnamed = self
                .unattributed
                .get(&(observer.clone(), remote.clone()))
                .is_some_and(|ts| ts.iter().any(|t| *t >= span.opened && *t <= end));
            if !on_it && !unnamed {
                out.push(format!(
                    "{} got no identify from {} on connection {conn_id}, open {} from {}",
                    ctx.describe(observer),
                    ctx.describe(&ctx.name_of(remote)),
                    seconds(end - span.opened),
                    clock(span.opened)
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Kit;
    use crate::results::Status;

    fn run(events: &[Recorded], kit: &Kit) -> CheckResult {
        let mut c = NoProtocolDowngrade::new(Settings::default());
        events.iter().for_each(|e| c.observe(e));
        c.verdict(&kit.context())
    }

    #[test]
    fn passes_when_protocols_stay() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.identify(
                10,
                "rust-1",
                "go-1",
                &["/ipfs/id/1.0.0", "/meshsub/1.1.0", "/meshsub/1.2.0"],
            ),
            kit.identify(
                20,
                "rust-1",
                "go-1",
                &["/ipfs/id/1.0.0", "/meshsub/1.1.0", "/meshsub/1.2.0", "/x/1"],
            ),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        assert_eq!(
            r.coverage.as_deref(),
            Some("1 identify exchanges over 1 connected pair(s), 1 push(es); 0 of 0 connection(s) identified")
        );
    }

    #[test]
    fn no_identify_is_inconclusive() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let r = run(&[], &kit);
        assert_eq!(r.status, Status::Inconclusive);
        assert!(r.message.unwrap().contains("no peer reported any identify"));
    }

    #[test]
    fn a_connection_held_without_identify_is_inconclusive_naming_the_pair() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.opened(1_000_000, "rust-1", "go-1", "1"),
            kit.opened(1_000_000, "go-1", "rust-1", "7"),
            kit.identify(1_100_000, "rust-1", "go-1", &["/meshsub/1.1.0"]),
            kit.stderr(9_000_000, "go-1", "later"),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Inconclusive, "{r:?}");
        let msg = r.message.unwrap();
        assert!(
            msg.starts_with("go-1 (go-libp2p v0.51.0) got no identify from rust-1 (rust-libp2p 0.57.1) on connection 7, open 8 s from 00:00:01.000"),
            "{msg}"
        );
        assert!(r
            .coverage
            .unwrap()
            .contains("1 of 2 connection(s) identified"));

        // Once identified (a library that does not name the connection counts by time), it passes; a connection
        // closed before the settle time is not judged.
        let mut ev = ev.to_vec();
        ev.push(kit.event(
            2_000_000,
            "go-1",
            PeerEvent::Identify {
                remote: crate::testkit::id("rust-1"),
                conn_id: None,
                agent_version: "a".into(),
                protocol_version: "".into(),
                protocols: vec!["/meshsub/1.1.0".into()],
                listen_addrs: vec![],
            },
        ));
        ev.push(kit.opened(3_000_000, "go-1", "rust-1", "8"));
        ev.push(kit.closed(4_000_000, "go-1", "rust-1", "8"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
    }

    #[test]
    fn a_downgrade_fails_even_with_unidentified_connections() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.opened(0, "go-1", "rust-1", "7"),
            kit.identify(10, "rust-1", "go-1", &["/meshsub/1.1.0"]),
            kit.identify(2_000_000, "rust-1", "go-1", &["/ipfs/id/1.0.0"]),
            kit.stderr(9_000_000, "go-1", "later"),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert!(r.coverage.is_some());
    }

    #[test]
    fn fails_when_a_push_drops_meshsub() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.identify(10, "rust-1", "go-1", &["/ipfs/id/1.0.0", "/meshsub/1.1.0"]),
            kit.identify(2_000_000, "rust-1", "go-1", &["/ipfs/id/1.0.0"]),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        let msg = r.message.unwrap();
        assert!(msg.contains("go-1 (go-libp2p v0.51.0) stopped advertising /meshsub/1.1.0 to rust-1 (rust-libp2p 0.57.1)"), "{msg}");
        assert!(r
            .evidence
            .iter()
            .any(|l| l.contains("identify before") && l.contains("/meshsub/1.1.0")));
    }

    #[test]
    fn unwatched_protocols_may_come_and_go() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.identify(
                10,
                "go-1",
                "rust-1",
                &["/meshsub/1.1.0", "/ipfs/ping/1.0.0"],
            ),
            kit.identify(20, "go-1", "rust-1", &["/meshsub/1.1.0"]),
        ];
        assert_eq!(run(&ev, &kit).status, Status::Passed);
    }

    #[test]
    fn a_protocol_gained_later_is_watched_too() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.identify(10, "go-1", "rust-1", &["/ipfs/id/1.0.0"]),
            kit.identify(20, "go-1", "rust-1", &["/meshsub/1.1.0"]),
            kit.identify(30, "go-1", "rust-1", &["/ipfs/id/1.0.0"]),
        ];
        assert_eq!(run(&ev, &kit).status, Status::Failed);
    }
}
