//! Builds a case's [`Timeline`] from its record and verdicts, once, when the case is judged.

use std::collections::{BTreeMap, BTreeSet};

use crate::checks::Context;
use crate::events::{Command, Micros, Observation, PeerEvent, Recorded};
use crate::results::{CheckResult, Status};
use crate::timeline::{Mark, MarkKind, Timeline};

pub fn build(record: &[Recorded], ctx: &Context, checks: &[CheckResult]) -> Timeline {
    let start = record.iter().map(Recorded::time).min().unwrap_or_default();
    let end = record.iter().map(Recorded::time).max().unwrap_or(start);
    let ms = |t: Micros| ((t - start).max(0) / 1000) as u64;
    let seconds = ((end - start) / 1_000_000 + 1) as usize;
    let implementation = |name: &str| {
        ctx.case
            .peers
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.implementation.clone())
            .unwrap_or_else(|| name.to_owned())
    };

    let mut t = Timeline {
        start_us: start,
        end_us: end,
        ..Default::default()
    };
    let mut open: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut advertised: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rec in record {
        match &rec.what {
            Observation::Event { line } => match &line.event {
                PeerEvent::Message { source, .. } => {
                    let key = format!(
                        "{} -> {}",
                        implementation(&ctx.name_of(source)),
                        implementation(&rec.peer)
                    );
                    let buckets = t.deliveries.entry(key).or_insert_with(|| vec![0; seconds]);
                    let i = ((line.ts - start).max(0) / 1_000_000) as usize;
                    if let Some(b) = buckets.get_mut(i.min(seconds - 1)) {
                        *b += 1;
                    }
                }
                PeerEvent::ConnectionOpened {
                    remote, conn_id, ..
                }
                | PeerEvent::ConnectionClosed {
                    remote, conn_id, ..
                } => {
                    let key = format!("{} -> {}", rec.peer, ctx.name_of(remote));
                    let set = open.entry(key.clone()).or_default();
                    if matches!(line.event, PeerEvent::ConnectionOpened { .. }) {
                        set.insert(conn_id.clone());
                    } else {
                        set.remove(conn_id);
                    }
                    let n = set.len() as u32;
                    t.connections.entry(key).or_default().push((ms(line.ts), n));
                }
                PeerEvent::Streams {
                    remote,
                    conn_id,
                    inbound,
                    outbound,
                } => {
                    let key = format!("{} #{conn_id} -> {}", rec.peer, ctx.name_of(remote));
                    let series = t.streams.entry(key).or_default();
                    let n = inbound + outbound;
                    // Samples repeat every second; only changes make a line.
                    if series.last().map(|(_, last)| *last) != Some(n) {
                        series.push((ms(line.ts), n));
                    }
                }
                PeerEvent::Identify {
                    remote, protocols, ..
                } => {
                    let now: BTreeSet<String> = protocols.iter().cloned().collect();
                    let key = (rec.peer.clone(), remote.clone());
                    if let Some(before) = advertised.get(&key) {
                        let lost: Vec<&String> = before.difference(&now).collect();
                        let gained: Vec<&String> = now.difference(before).collect();
                        if !lost.is_empty() || !gained.is_empty() {
                            let change: Vec<String> = lost
                                .iter()
                                .map(|p| format!("-{p}"))
                                .chain(gained.iter().map(|p| format!("+{p}")))
                                .collect();
                            let text = format!(
                                "{} now advertises to {}: {}",
                                ctx.name_of(remote),
                                rec.peer,
                                change.join(" ")
                            );
                            t.marks.push(Mark {
                                at_ms: ms(line.ts),
                                kind: MarkKind::Identify,
                                text,
                            });
                        }
                    }
                    advertised.insert(key, now);
                }
                _ => {}
            },
            // Routine commands are the script; these are incidents.
            Observation::Command { command, .. }
                if matches!(command.command, Command::Unsubscribe { .. } | Command::Disconnect { .. }) =>
            {
                t.marks.push(Mark {
                    at_ms: ms(rec.at),
                    kind: MarkKind::Incident,
                    text: format!("{}: {}", rec.peer, command.to_json()),
                });
            }
            Observation::Fault { fault, step } => {
                // One mark per step: a partition is recorded once for each peer it cuts.
                let what = format!("{} {}", rec.peer, fault.describe());
                match t.marks.last_mut() {
                    Some(m) if m.kind == MarkKind::Fault && m.text.starts_with(&format!("{step}: ")) && ms(rec.at).saturating_sub(m.at_ms) < 1000 => {
                        m.text.push_str(&format!("; {what}"));
                    }
                    _ => t.marks.push(Mark {
                        at_ms: ms(rec.at),
                        kind: MarkKind::Fault,
                        text: format!("{step}: {what}"),
                    }),
                }
            }
            Observation::Incident { what } => {
                t.marks.push(Mark {
                    at_ms: ms(rec.at),
                    kind: MarkKind::Incident,
                    text: format!("{}: {what}", rec.peer),
                });
            }
            Observation::Exited {
                code,
                expected: false,
                ..
            } => {
                t.marks.push(Mark {
                    at_ms: ms(rec.at),
                    kind: MarkKind::Exit,
                    text: format!("{} exited ({code:?}) before stop", rec.peer),
                });
            }
            Observation::Killed { reason } => {
                t.marks.push(Mark {
                    at_ms: ms(rec.at),
                    kind: MarkKind::Exit,
                    text: format!("{} killed: {reason}", rec.peer),
                });
            }
            _ => {}
        }
    }
    for c in checks.iter().filter(|c| c.status == Status::Failed) {
        if let Some(at) = c.at_us {
            t.marks.push(Mark {
                at_ms: ms(at),
                kind: MarkKind::Failure,
                text: format!("{}: {}", c.name, c.message.as_deref().unwrap_or_default()),
            });
        }
    }
    t.marks.sort_by_key(|m| m.at_ms);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{id, Kit};
    use crate::events::{Direction, Fault};

    #[test]
    fn deliveries_connections_and_marks() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let fault = |at, peer: &str, fault| Recorded {
            at,
            peer: peer.into(),
            what: Observation::Fault {
                fault,
                step: "time line step 1".into(),
            },
        };
        let record = vec![
            kit.event(
                0,
                "rust-1",
                PeerEvent::ConnectionOpened {
                    remote: id("go-1"),
                    conn_id: "1".into(),
                    direction: Direction::Outbound,
                    remote_addr: "x".into(),
                    security: None,
                    muxer: None,
                },
            ),
            kit.identify(100_000, "rust-1", "go-1", &["/meshsub/1.1.0"]),
            kit.message(500_000, "go-1", "rust-1", "m0", 400_000),
            kit.message(1_500_000, "go-1", "rust-1", "m1", 1_400_000),
            kit.message(1_600_000, "go-1", "rust-1", "m2", 1_500_000),
            kit.identify(2_000_000, "rust-1", "go-1", &["/ipfs/id/1.0.0"]),
            kit.command(
                2_100_000,
                "go-1",
                r#"{"cmd":"unsubscribe","topic":"meshgate"}"#,
            ),
            // A partition recorded for each peer it cuts is one mark.
            fault(2_200_000, "rust-1", Fault::Partition { from: vec!["go-1".into()] }),
            fault(2_210_000, "go-1", Fault::Partition { from: vec!["rust-1".into()] }),
        ];
        let failed = CheckResult::failed("delivery", "go-1 missed".into(), vec![]).at(2_500_000);
        let t = build(&record, &kit.context(), &[failed]);
        assert_eq!(t.deliveries["rust -> go"], vec![1, 2, 0]);
        assert_eq!(t.connections["rust-1 -> go-1"], vec![(0, 1)]);
        let kinds: Vec<MarkKind> = t.marks.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            vec![MarkKind::Identify, MarkKind::Incident, MarkKind::Fault, MarkKind::Failure]
        );
        assert_eq!(
            t.marks[2].text,
            "time line step 1: rust-1 partitioned from go-1; go-1 partitioned from rust-1"
        );
        assert!(
            t.marks[0].text.contains("-/meshsub/1.1.0 +/ipfs/id/1.0.0"),
            "{:?}",
            t.marks[0]
        );
        assert_eq!(t.marks[2].at_ms, 2200);
        assert_eq!(t.marks[3].at_ms, 2500);
    }
}
