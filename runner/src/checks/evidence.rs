//! The context of a failure, for a maintainer who files an upstream issue without rerunning: exact versions of the
//! peers involved, the last identify each got from the other, their connections and streams at that moment, the
//! time line of their events around it, and their stderr from that window.

use std::collections::BTreeMap;

use super::{clock, Context};
use crate::events::{Command, Micros, Observation, PeerEvent, Recorded};
use crate::results::{CheckResult, Status};

/// How far before and after the failure's moment the time line and stderr reach.
pub const BEFORE_US: Micros = 3_000_000;
pub const AFTER_US: Micros = 1_000_000;
pub const MAX_EVENTS: usize = 40;
pub const MAX_STDERR: usize = 20;

/// Appends the context to every failed check that says when and whom.
pub fn attach(record: &[Recorded], ctx: &Context, results: &mut [CheckResult]) {
    for r in results.iter_mut().filter(|r| r.status == Status::Failed) {
        if let (Some(at), false) = (r.at_us, r.involved.is_empty()) {
            let lines = around(record, ctx, &r.involved, at);
            r.evidence.extend(lines);
        }
    }
}

/// What the involved peers did around a failure, taken from the record: the evidence's context, and the issue
/// body's time line and stderr (`meshgate report --issue`), so that both say the same.
pub struct Window {
    /// Versions, last identify, connections and streams of the involved peers at the moment, one line each.
    pub state: Vec<String>,
    /// Their events, the commands sent to them and the faults made to them, by time, in the window.
    pub timeline: Vec<(Micros, String)>,
    /// Their stderr lines in the window: (when, peer, line).
    pub stderr: Vec<(Micros, String, String)>,
}

/// The window around `at` (from [`BEFORE_US`] before to [`AFTER_US`] after) for the peers `involved`.
pub fn window(record: &[Recorded], ctx: &Context, involved: &[String], at: Micros) -> Window {
    let mut out = Vec::new();
    for name in involved {
        if let Some(p) = ctx.peers.iter().find(|p| &p.name == name) {
            let versions: Vec<String> =
                p.versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
            out.push(format!(
                "  {name}: {} [{}]",
                p.implementation_label(),
                versions.join(", ")
            ));
        }
    }
    let ids: BTreeMap<String, &String> = involved
        .iter()
        .filter_map(|n| {
            ctx.peers
                .iter()
                .find(|p| &p.name == n)?
                .peer_id
                .clone()
                .map(|id| (id, n))
        })
        .collect();
    let is_involved = |name: &str| involved.iter().any(|n| n == name);
    let until = at + AFTER_US;

    // Replayed up to the moment: connections, last stream counts, last identify between the involved.
    let mut open: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    let mut streams: BTreeMap<(String, String), (String, u32, u32)> = BTreeMap::new();
    let mut identify: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut timeline = Vec::new();
    let mut stderr = Vec::new();
    for rec in record.iter().filter(|r| is_involved(&r.peer)) {
        let t = rec.time();
        if t > until {
            break;
        }
        let in_window = t >= at - BEFORE_US;
        match &rec.what {
            Observation::Event { line } => {
                let name_of = |id: &str| {
                    ids.get(id)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| ctx.name_of(id))
                };
                let line_text = match &line.event {
                    PeerEvent::ConnectionOpened {
                        remote,
                        conn_id,
                        direction,
                        ..
                    } => {
                        open.entry((rec.peer.clone(), name_of(remote)))
                            .or_default()
                            .insert(conn_id.clone(), format!("{direction:?}").to_lowercase());
                        Some(format!(
                            "connection {conn_id} to {} opened ({direction:?})",
                            name_of(remote)
                        ))
                    }
                    PeerEvent::ConnectionClosed {
                        remote,
                        conn_id,
                        reason,
                        ..
                    } => {
                        if let Some(c) = open.get_mut(&(rec.peer.clone(), name_of(remote))) {
                            c.remove(conn_id);
                        }
                        Some(format!(
                            "connection {conn_id} to {} closed: {}",
                            name_of(remote),
                            reason.as_deref().unwrap_or("no reason given")
                        ))
                    }
                    PeerEvent::Streams {
                        remote,
                        conn_id,
                        inbound,
                        outbound,
                    } => {
                        streams.insert(
                            (rec.peer.clone(), conn_id.clone()),
                            (name_of(remote), *inbound, *outbound),
                        );
                        None
                    }
                    PeerEvent::Identify {
                        remote,
                        conn_id,
                        agent_version,
                        protocols,
                        ..
                    } => {
                        let text = format!(
                            "{} on connection {} (agent {agent_version}): {}",
                            clock(line.ts),
                            conn_id.as_deref().unwrap_or("?"),
                            protocols.join(" ")
                        );
                        identify.insert((rec.peer.clone(), name_of(remote)), text);
                        Some(format!(
                            "identify from {} ({} protocols)",
                            name_of(remote),
                            protocols.len()
                        ))
                    }
                    PeerEvent::Subscribed { remote, topic } => {
                        Some(format!("sees {} subscribe to {topic}", name_of(remote)))
                    }
                    PeerEvent::Unsubscribed { remote, topic } => {
                        Some(format!("sees {} unsubscribe from {topic}", name_of(remote)))
                    }
                    PeerEvent::Mesh { topic, peers } => Some(format!(
                        "mesh of {topic}: {}",
                        peers
                            .iter()
                            .map(|p| name_of(p))
                            .collect::<Vec<_>>()
                            .join(" ")
                    )),
                    PeerEvent::Error { cmd, message, .. } => Some(format!(
                        "error ({}): {message}",
                        cmd.as_deref().unwrap_or("-")
                    )),
                    PeerEvent::Unsupported {
                        feature, reason, ..
                    } => Some(format!("unsupported {feature}: {reason}")),
                    PeerEvent::Stopped => Some("stopped".into()),
                    // Messages and publications are the delivery check's own evidence; here they would drown the rest.
                    _ => None,
                };
                if let (true, Some(text)) = (in_window, line_text) {
                    timeline.push((t, format!("{} {text}", rec.peer)));
                }
            }
            Observation::Command { command, .. }
                if in_window && !matches!(command.command, Command::Publish { .. }) =>
            {
                timeline.push((t, format!("{} <- {}", rec.peer, command.to_json())));
            }
            Observation::Incident { what } if in_window => {
                timeline.push((t, format!("{} incident: {what}", rec.peer)))
            }
            Observation::Fault { fault, step } if in_window => {
                timeline.push((t, format!("{} {} ({step})", rec.peer, fault.describe())))
            }
            Observation::NotRun { step, reason } if in_window => {
                timeline.push((t, format!("{step} not run: {reason}")))
            }
            Observation::Exited { code, .. } if in_window => {
                timeline.push((t, format!("{} exited ({code:?})", rec.peer)))
            }
            Observation::Stderr { line } if in_window => {
                stderr.push((t, rec.peer.clone(), line.clone()))
            }
            _ => {}
        }
    }

    for ((observer, remote), text) in &identify {
        if is_involved(remote) {
            out.push(format!(
                "  last identify {observer} got from {remote}: {text}"
            ));
        }
    }
    for ((holder, remote), conns) in &open {
        if is_involved(remote) {
            let list: Vec<String> = conns
                .iter()
                .map(|(id, dir)| format!("{id} {dir}"))
                .collect();
            out.push(format!(
                "  {holder} -> {remote}: {} connection(s) open [{}]",
                conns.len(),
                list.join(", ")
            ));
        }
    }
    for ((peer, conn), (remote, inbound, outbound)) in &streams {
        let still_open = open
            .get(&(peer.clone(), remote.clone()))
            .is_some_and(|c| c.contains_key(conn));
        if still_open && is_involved(remote) {
            out.push(format!("  {peer} connection {conn} -> {remote}: {inbound} inbound, {outbound} outbound streams"));
        }
    }
    // Peers' clocks stamp their events; the runner's stamps its own: one order by time.
    timeline.sort_by_key(|(t, _)| *t);
    Window {
        state: out,
        timeline,
        stderr,
    }
}

fn around(record: &[Recorded], ctx: &Context, involved: &[String], at: Micros) -> Vec<String> {
    let Window {
        state,
        timeline,
        stderr,
    } = window(record, ctx, involved, at);
    let mut out = vec![format!("context around {}:", clock(at))];
    out.extend(state);
    if !timeline.is_empty() {
        out.push(format!(
            "  time line ({} s before to {} s after):",
            BEFORE_US / 1_000_000,
            AFTER_US / 1_000_000
        ));
        let skip = timeline.len().saturating_sub(MAX_EVENTS);
        if skip > 0 {
            out.push(format!("    ({skip} earlier events left out)"));
        }
        out.extend(
            timeline
                .into_iter()
                .skip(skip)
                .map(|(t, text)| format!("    {} {text}", clock(t))),
        );
    }
    if !stderr.is_empty() {
        out.push("  stderr:".into());
        let skip = stderr.len().saturating_sub(MAX_STDERR);
        out.extend(
            stderr
                .into_iter()
                .skip(skip)
                .map(|(t, peer, line)| format!("    {} {peer} | {line}", clock(t))),
        );
    }
    out
}

/// `3,600` for 3600: the numbers of coverage lines, readable at a glance.
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `18 s`, `2.5 s`: a duration of microseconds for coverage lines.
pub fn seconds(us: Micros) -> String {
    let s = us as f64 / 1e6;
    if s >= 10.0 || s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{id, Kit};
    use crate::events::Direction;

    #[test]
    fn numbers_for_coverage_lines() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(3600), "3,600");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(seconds(18_400_000), "18 s");
        assert_eq!(seconds(2_500_000), "2.5 s");
        assert_eq!(seconds(3_000_000), "3 s");
    }

    #[test]
    fn context_names_versions_identify_connections_streams_and_stderr() {
        let kit = Kit::new(&["rust-1", "go-1", "go-2"]);
        let record = vec![
            kit.event(
                1_000_000,
                "rust-1",
                PeerEvent::ConnectionOpened {
                    remote: id("go-1"),
                    conn_id: "3".into(),
                    direction: Direction::Outbound,
                    remote_addr: "x".into(),
                    security: None,
                    muxer: None,
                },
            ),
            kit.identify(
                1_100_000,
                "rust-1",
                "go-1",
                &["/ipfs/id/1.0.0", "/meshsub/1.1.0"],
            ),
            kit.event(
                1_200_000,
                "rust-1",
                PeerEvent::Streams {
                    remote: id("go-1"),
                    conn_id: "3".into(),
                    inbound: 2,
                    outbound: 5,
                },
            ),
            kit.stderr(4_000_000, "go-1", "WARN pubsub: dropping peer"),
            kit.stderr(4_000_000, "go-2", "not involved"),
            kit.command(
                4_100_000,
                "go-1",
                r#"{"cmd":"unsubscribe","topic":"meshgate"}"#,
            ),
            kit.stderr(9_000_000, "go-1", "long after"),
        ];
        let mut results = vec![CheckResult::failed("delivery", "x".into(), vec![])
            .at(4_500_000)
            .involving(["go-1", "rust-1"])];
        attach(&record, &kit.context(), &mut results);
        let text = results[0].evidence.join("\n");
        assert!(text.contains("context around 00:00:04.500:"), "{text}");
        assert!(
            text.contains("  rust-1: rust-libp2p 0.57.1 [libp2p 0.57.1]"),
            "{text}"
        );
        assert!(
            text.contains("last identify rust-1 got from go-1: 00:00:01.100 on connection 1"),
            "{text}"
        );
        assert!(
            text.contains("rust-1 -> go-1: 1 connection(s) open [3 outbound]"),
            "{text}"
        );
        assert!(
            text.contains("rust-1 connection 3 -> go-1: 2 inbound, 5 outbound streams"),
            "{text}"
        );
        assert!(text.contains("go-1 <- {\"cmd\":\"unsubscribe\""), "{text}");
        assert!(text.contains("go-1 | WARN pubsub: dropping peer"), "{text}");
        assert!(
            !text.contains("not involved") && !text.contains("long after"),
            "{text}"
        );
    }
}
