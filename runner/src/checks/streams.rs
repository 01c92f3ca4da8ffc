//! `streams`: open streams per connection stay below a limit. A peer that leaks streams runs into yamux's window of
//! 256 un-ACKed outbound streams, after which the remote resets new ones; this catches the leak long before.

use std::collections::{BTreeMap, BTreeSet};


use super::evidence::{count, seconds};
use super::{clock, Check, Context};
use crate::events::{Command, Micros, Observation, PeerEvent, Recorded};
pub use crate::matrix::checks::streams::Settings;
use crate::peers::Pending;
use crate::results::CheckResult;

pub const NAME: &str = "streams";

/// How long a connection may be held before its first stream count is due: a sampling period (the case's
/// `streams_interval`), and two seconds for a busy peer to get to it.
fn settle_us(case: &crate::cases::Case) -> Micros {
    sampling_us(case) + 2_000_000
}

fn sampling_us(case: &crate::cases::Case) -> Micros {
    case.streams_interval().as_micros() as Micros
}

#[derive(Debug, Clone, Default)]
struct Peak {
    remote: String,
    total: u32,
    inbound: u32,
    outbound: u32,
    at: Micros,
}

/// A connection as its holder reported it.
struct Held {
    remote: String,
    opened: Micros,
    closed: Option<Micros>,
}

pub struct Streams {
    settings: Settings,
    /// (peer name, connection id) -> the highest count seen.
    peaks: BTreeMap<(String, String), Peak>,
    /// (peer name, connection id) -> the connection, to find those never counted.
    held: BTreeMap<(String, String), Held>,
    /// When each peer was told to stop or went away: its counts are not expected beyond.
    ended: BTreeMap<String, Micros>,
    last: Micros,
    /// (when, peer) of every `open_streams` command, and when each peer last reported stream counts.
    opened: Vec<(Micros, String)>,
    last_count: BTreeMap<String, Micros>,
}

impl Streams {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            peaks: BTreeMap::new(),
            held: BTreeMap::new(),
            ended: BTreeMap::new(),
            last: 0,
            opened: Vec::new(),
            last_count: BTreeMap::new(),
        }
    }

    /// Connections held past the settle time whose holder never reported a stream count for them.
    fn uncounted(&self, settle_us: Micros) -> Vec<(&(String, String), &Held, Micros)> {
        self.held
            .iter()
            .filter(|(key, _)| !self.peaks.contains_key(*key))
            .filter_map(|(key, h)| {
                let end = [h.closed, self.ended.get(&key.0).copied()]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(self.last);
                (end - h.opened > settle_us).then_some((key, h, end - h.opened))
            })
            .collect()
    }
}

impl Check for Streams {
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
        if let Some(Command::OpenStreams { .. }) = rec.command() {
            self.opened.push((rec.at, rec.peer.clone()));
        }
        let Observation::Event { line } = &rec.what else {
            return;
        };
        match &line.event {
            PeerEvent::ConnectionOpened {
                remote, conn_id, ..
            } => {
                self.held.insert(
                    (rec.peer.clone(), conn_id.clone()),
                    Held {
                        remote: remote.clone(),
                        opened: line.ts,
                        closed: None,
                    },
                );
                return;
            }
            PeerEvent::ConnectionClosed { conn_id, .. } => {
                if let Some(h) = self.held.get_mut(&(rec.peer.clone(), conn_id.clone())) {
                    h.closed.get_or_insert(line.ts);
                }
                return;
            }
            _ => {}
        }
        let PeerEvent::Streams {
            remote,
            conn_id,
            inbound,
            outbound,
        } = &line.event
        else {
            return;
        };
        self.last_count.insert(rec.peer.clone(), line.ts);
        let peak = self
            .peaks
            .entry((rec.peer.clone(), conn_id.clone()))
            .or_default();
        if inbound + outbound > peak.total || peak.remote.is_empty() {
            *peak = Peak {
                remote: remote.clone(),
                total: inbound + outbound,
                inbound: *inbound,
                outbound: *outbound,
                at: line.ts,
            };
        }
    }

    /// A connection held for less than the settle time without a stream count yet, and streams opened on command
    /// that no count taken a sampling period later has shown yet.
    fn pending(&self, ctx: &Context, now: Micros) -> Option<Pending> {
        let (settle, sampling) = (settle_us(ctx.case), sampling_us(ctx.case));
        let uncounted = self
            .held
            .iter()
            .filter(|(key, h)| !self.peaks.contains_key(*key) && h.closed.is_none() && !self.ended.contains_key(&key.0))
            .map(|(_, h)| h.opened + settle + 1);
        let opened = self
            .opened
            .iter()
            .filter(|(at, peer)| self.last_count.get(peer).is_none_or(|c| *c < at + sampling))
            .map(|(at, _)| at + settle);
        Pending::latest(now, uncounted.chain(opened), |n| format!("{n} stream count(s) to come"))
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let limit = self.settings.max_per_connection;
        let mut over: Vec<(&(String, String), &Peak)> =
            self.peaks.iter().filter(|(_, p)| p.total > limit).collect();
        // The peer that opened the streams leads (its outbound count), the side that accepted them follows.
        over.sort_by_key(|(_, p)| std::cmp::Reverse((p.outbound, p.total)));
        let highest = self.peaks.iter().max_by_key(|(_, p)| p.total);
        let describe = |(peer, conn): &(String, String), p: &Peak| {
            format!(
                "{} had {} streams open ({} inbound, {} outbound) on connection {conn} to {} at {}",
                ctx.describe(peer),
                p.total,
                p.inbound,
                p.outbound,
                ctx.describe(&ctx.name_of(&p.remote)),
                clock(p.at)
            )
        };
        let uncounted = self.uncounted(settle_us(ctx.case));
        let peers: BTreeSet<&String> = self
            .held
            .keys()
            .chain(self.peaks.keys())
            .map(|(p, _)| p)
            .collect();
        let short: BTreeSet<&String> = uncounted.iter().map(|((p, _), _, _)| p).collect();
        let coverage = format!(
            "{} of {} peers reported stream counts on all their connections; {} connection(s) counted, peak {} (limit {limit})",
            count(peers.len() - short.len()),
            count(peers.len()),
            count(self.peaks.len()),
            highest.map(|(_, p)| p.total).unwrap_or(0)
        );
        let Some((key, peak)) = over.first() else {
            // Counts missing for a connection would hide exactly the leak this check is for.
            if self.peaks.is_empty() {
                return CheckResult::inconclusive(
                    NAME,
                    "no peer reported any stream count".into(),
                    vec![],
                )
                .covering(coverage);
            }
            if !uncounted.is_empty() {
                let lines: Vec<String> = uncounted
                    .iter()
                    .map(|((peer, conn), h, held)| {
                        format!(
                            "{} never reported stream counts for connection {conn} to {}, held {} from {}",
                            ctx.describe(peer),
                            ctx.describe(&ctx.name_of(&h.remote)),
                            seconds(*held),
                            clock(h.opened)
                        )
                    })
                    .collect();
                let more = match lines.len() {
                    1 => String::new(),
                    n => format!(" ({n} connections in all)"),
                };
                return CheckResult::inconclusive(NAME, format!("{}{more}", lines[0]), lines)
                    .covering(coverage);
            }
            let summary = match highest {
                Some((key, p)) => format!(
                    "peak over {} connection(s): {}",
                    self.peaks.len(),
                    describe(key, p)
                ),
                None => "no stream counts reported".into(),
            };
            return CheckResult::passed(
                NAME,
                vec![summary, format!("limit {limit} per connection")],
            )
            .covering(coverage);
        };
        let evidence = over.iter().map(|(k, p)| describe(k, p)).collect();
        CheckResult::failed(
            NAME,
            match over.len() {
                1 => format!("{} (limit {limit})", describe(key, peak)),
                n => format!("{} (limit {limit}; {n} connections over it)", describe(key, peak)),
            },
            evidence,
        )
        .at(peak.at)
        .involving([key.0.clone(), ctx.name_of(&peak.remote)])
        .covering(coverage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Kit;
    use crate::results::Status;

    fn run(events: &[Recorded], kit: &Kit) -> CheckResult {
        let mut c = Streams::new(Settings::default());
        events.iter().for_each(|e| c.observe(e));
        c.verdict(&kit.context())
    }

    #[test]
    fn few_streams_pass_and_report_the_peak() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.streams(1, "rust-1", "go-1", "1", 2, 3),
            kit.streams(2, "rust-1", "go-1", "1", 1, 1),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed);
        assert!(
            r.evidence[0].contains("5 streams open (2 inbound, 3 outbound) on connection 1"),
            "{:?}",
            r.evidence
        );
        assert_eq!(
            r.coverage.as_deref(),
            Some("1 of 1 peers reported stream counts on all their connections; 1 connection(s) counted, peak 5 (limit 64)")
        );
    }

    #[test]
    fn no_stream_counts_are_inconclusive() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let r = run(&[], &kit);
        assert_eq!(r.status, Status::Inconclusive);
        assert!(r
            .message
            .unwrap()
            .contains("no peer reported any stream count"));
    }

    #[test]
    fn a_connection_never_counted_is_inconclusive_naming_its_holder() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.opened(1_000_000, "rust-1", "go-1", "1"),
            kit.opened(1_000_000, "go-1", "rust-1", "c7"),
            kit.streams(1_500_000, "rust-1", "go-1", "1", 1, 1),
            // Held only briefly: not due yet.
            kit.opened(2_000_000, "rust-1", "go-1", "2"),
            kit.closed(3_000_000, "rust-1", "go-1", "2"),
            kit.stderr(9_000_000, "go-1", "later"),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Inconclusive, "{r:?}");
        let msg = r.message.unwrap();
        assert_eq!(msg, "go-1 (go-libp2p v0.51.0) never reported stream counts for connection c7 to rust-1 (rust-libp2p 0.57.1), held 8 s from 00:00:01.000");
        assert!(r
            .coverage
            .unwrap()
            .starts_with("1 of 2 peers reported stream counts on all their connections"));
        // Until it stopped: a peer told to stop early is not expected to count.
        let mut early = ev[..3].to_vec();
        early.push(kit.command(2_000_000, "go-1", r#"{"cmd":"stop"}"#));
        early.push(kit.stderr(9_000_000, "go-1", "later"));
        assert_eq!(run(&early, &kit).status, Status::Passed);
    }

    #[test]
    fn a_leak_fails_naming_the_connection() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.streams(1_000_000, "go-1", "rust-1", "c7", 1, 10),
            kit.streams(2_000_000, "go-1", "rust-1", "c7", 1, 90),
            kit.streams(3_000_000, "go-1", "rust-1", "c7", 1, 2),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert!(r.coverage.is_some());
        let msg = r.message.unwrap();
        assert!(msg.starts_with("go-1 (go-libp2p v0.51.0) had 91 streams open (1 inbound, 90 outbound) on connection c7 to rust-1"), "{msg}");
        assert!(msg.ends_with("(limit 64)"), "{msg}");
    }
}
