//! `mesh`: after a warm-up, each peer's gossipsub mesh for each topic holds at least D_lo peers, or all its
//! connected subscribers when there are fewer, and stays so. A mesh below that forwards messages by luck.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{clock, Check, Context};
use crate::events::{Micros, Observation, PeerEvent, Recorded};
use crate::results::CheckResult;

pub const NAME: &str = "mesh";

/// D_lo when the matrix leaves it to the library: 5 in rust-libp2p (`mesh_n_low`) and go-libp2p-pubsub (`Dlo`).
const LIBRARY_D_LO: usize = 5;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Time after a peer subscribes before its mesh is judged.
    #[serde(default = "default_warmup", with = "humantime_serde")]
    pub warmup: Duration,
    /// How long a mesh may stay too small (heartbeats repair meshes; this spans a few).
    #[serde(default = "default_settle", with = "humantime_serde")]
    pub settle: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            warmup: default_warmup(),
            settle: default_settle(),
        }
    }
}

fn default_warmup() -> Duration {
    Duration::from_secs(3)
}

fn default_settle() -> Duration {
    Duration::from_secs(3)
}

/// One peer's view of one topic at a moment.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Micros,
    mesh: usize,
    /// Remote peers connected to it that it sees subscribed to the topic.
    available: usize,
}

#[derive(Default)]
struct PeerState {
    subscribed: BTreeMap<String, Micros>,
    conns: BTreeMap<String, BTreeSet<String>>,
    remote_topics: BTreeSet<(String, String)>,
    meshes: BTreeMap<String, usize>,
    left: Option<Micros>,
}

pub struct Mesh {
    settings: Settings,
    peers: BTreeMap<String, PeerState>,
    /// (peer, topic) -> snapshots at every change.
    history: BTreeMap<(String, String), Vec<Snapshot>>,
    last: Micros,
}

impl Mesh {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            peers: BTreeMap::new(),
            history: BTreeMap::new(),
            last: 0,
        }
    }

    fn snapshot(&mut self, peer: &str, at: Micros) {
        let Some(state) = self.peers.get(peer) else {
            return;
        };
        for topic in state.subscribed.keys() {
            let available = state
                .remote_topics
                .iter()
                .filter(|(remote, t)| {
                    t == topic && state.conns.get(remote).is_some_and(|c| !c.is_empty())
                })
                .count();
            let mesh = state.meshes.get(topic).copied().unwrap_or(0);
            self.history
                .entry((peer.to_owned(), topic.clone()))
                .or_default()
                .push(Snapshot {
                    at,
                    mesh,
                    available,
                });
        }
    }
}

impl Check for Mesh {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, rec: &Recorded) {
        self.last = self.last.max(rec.time());
        let state = self.peers.entry(rec.peer.clone()).or_default();
        match &rec.what {
            Observation::Command { .. } => {
                let Some(cmd) = rec.command() else {
                    return;
                };
                match cmd.cmd.as_str() {
                    "subscribe" => {
                        state.subscribed.entry(cmd.topic).or_insert(rec.at);
                    }
                    // What happens to a mesh after this was asked for.
                    "unsubscribe" | "disconnect" | "stop" => {
                        state.left.get_or_insert(rec.at);
                    }
                    _ => {}
                }
            }
            Observation::Incident { .. }
            | Observation::Exited { .. }
            | Observation::Killed { .. } => {
                state.left.get_or_insert(rec.at);
            }
            Observation::Event { line } => {
                match &line.event {
                    PeerEvent::ConnectionOpened {
                        remote, conn_id, ..
                    } => {
                        state
                            .conns
                            .entry(remote.clone())
                            .or_default()
                            .insert(conn_id.clone());
                    }
                    PeerEvent::ConnectionClosed {
                        remote, conn_id, ..
                    } => {
                        if let Some(c) = state.conns.get_mut(remote) {
                            c.remove(conn_id);
                        }
                    }
                    PeerEvent::Subscribed { remote, topic } => {
                        state.remote_topics.insert((remote.clone(), topic.clone()));
                    }
                    PeerEvent::Unsubscribed { remote, topic } => {
                        state.remote_topics.remove(&(remote.clone(), topic.clone()));
                    }
                    PeerEvent::Mesh { topic, peers } => {
                        state.meshes.insert(topic.clone(), peers.len());
                    }
                    _ => return,
                }
                let peer = rec.peer.clone();
                self.snapshot(&peer, line.ts);
            }
            _ => {}
        }
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let d_lo = ctx
            .case
            .gossipsub
            .d_lo
            .map(|d| d as usize)
            .unwrap_or(LIBRARY_D_LO);
        let (warmup, settle) = (
            self.settings.warmup.as_micros() as Micros,
            self.settings.settle.as_micros() as Micros,
        );
        // (since, until, peer, topic, worst snapshot)
        let mut short: Vec<(Micros, Micros, &str, &str, Snapshot)> = Vec::new();
        for ((peer, topic), snaps) in &self.history {
            let Some(state) = self.peers.get(peer) else {
                continue;
            };
            let Some(subscribed) = state.subscribed.get(topic) else {
                continue;
            };
            let from = subscribed + warmup;
            let until = state.left.unwrap_or(self.last);
            let mut deficit: Option<(Micros, Snapshot)> = None;
            let close = |start: Micros, end: Micros, worst: Snapshot, short: &mut Vec<_>| {
                let start = start.max(from);
                if end.min(until) - start > settle {
                    short.push((start, end.min(until), peer.as_str(), topic.as_str(), worst));
                }
            };
            for s in snaps {
                let wanted = d_lo.min(s.available);
                match (&mut deficit, s.mesh < wanted) {
                    (None, true) => deficit = Some((s.at, *s)),
                    (Some((_, worst)), true) if s.mesh < worst.mesh => *worst = *s,
                    (Some((start, worst)), false) => {
                        close(*start, s.at, *worst, &mut short);
                        deficit = None;
                    }
                    _ => {}
                }
            }
            if let Some((start, worst)) = deficit {
                close(start, until, worst, &mut short);
            }
        }
        short.sort_by_key(|s| s.0);
        let describe = |(since, until, peer, topic, worst): &(
            Micros,
            Micros,
            &str,
            &str,
            Snapshot,
        )| {
            format!(
                "{} kept {} peer(s) in its mesh for {topic} for {:.1} s from {} while {} connected subscriber(s) were available (D_lo {d_lo})",
                ctx.describe(peer),
                worst.mesh,
                (until - since) as f64 / 1e6,
                clock(*since),
                worst.available
            )
        };
        let Some(first) = short.first() else {
            return CheckResult::passed(NAME, vec![format!("{} mesh(es) held at least min(D_lo {d_lo}, connected subscribers) after the warm-up", self.history.len())]);
        };
        let more = if short.len() > 1 {
            format!(" ({} meshes in all)", short.len())
        } else {
            String::new()
        };
        CheckResult::failed(
            NAME,
            format!("{}{more}", describe(first)),
            short.iter().map(describe).collect(),
        )
        .at(first.0)
        .involving([first.2.to_owned()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testkit::{id, Kit, TOPIC};
    use crate::events::Direction;
    use crate::results::Status;

    fn setup(kit: &Kit) -> Vec<Recorded> {
        let mut ev = Vec::new();
        for (a, b) in [("rust-1", "go-1"), ("go-1", "rust-1")] {
            ev.push(kit.event(
                0,
                a,
                PeerEvent::ConnectionOpened {
                    remote: id(b),
                    conn_id: "1".into(),
                    direction: Direction::Outbound,
                    remote_addr: "x".into(),
                    security: None,
                    muxer: None,
                },
            ));
            ev.push(kit.command(
                10,
                a,
                &format!(r#"{{"cmd":"subscribe","topic":"{TOPIC}"}}"#),
            ));
            ev.push(kit.event(
                20,
                a,
                PeerEvent::Subscribed {
                    remote: id(b),
                    topic: TOPIC.into(),
                },
            ));
        }
        ev
    }

    fn mesh(kit: &Kit, ts: Micros, peer: &str, members: &[&str]) -> Recorded {
        kit.event(
            ts,
            peer,
            PeerEvent::Mesh {
                topic: TOPIC.into(),
                peers: members.iter().map(|m| id(m)).collect(),
            },
        )
    }

    fn run(events: &[Recorded], kit: &Kit) -> CheckResult {
        let mut c = Mesh::new(Settings::default());
        events.iter().for_each(|e| c.observe(e));
        c.verdict(&kit.context())
    }

    #[test]
    fn a_mesh_with_every_available_subscriber_passes() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = setup(&kit);
        ev.push(mesh(&kit, 700_000, "rust-1", &["go-1"]));
        ev.push(mesh(&kit, 700_000, "go-1", &["rust-1"]));
        ev.push(kit.stderr(20_000_000, "go-1", "end"));
        assert_eq!(run(&ev, &kit).status, Status::Passed);
    }

    #[test]
    fn an_empty_mesh_with_a_subscriber_available_fails() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = setup(&kit);
        ev.push(mesh(&kit, 700_000, "rust-1", &["go-1"]));
        ev.push(kit.stderr(20_000_000, "go-1", "end"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        let msg = r.message.unwrap();
        assert!(msg.starts_with("go-1 (go-libp2p v0.51.0) kept 0 peer(s) in its mesh for meshgate for 17.0 s from 00:00:03.000 while 1 connected subscriber(s) were available"), "{msg}");
    }

    #[test]
    fn a_short_dip_repaired_by_a_heartbeat_passes_and_leaving_ends_judgement() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = setup(&kit);
        ev.push(mesh(&kit, 700_000, "rust-1", &["go-1"]));
        ev.push(mesh(&kit, 700_000, "go-1", &["rust-1"]));
        ev.push(mesh(&kit, 5_000_000, "go-1", &[]));
        ev.push(mesh(&kit, 6_000_000, "go-1", &["rust-1"]));
        ev.push(kit.command(8_000_000, "go-1", r#"{"cmd":"stop"}"#));
        ev.push(mesh(&kit, 8_100_000, "go-1", &[]));
        ev.push(kit.stderr(20_000_000, "go-1", "end"));
        assert_eq!(run(&ev, &kit).status, Status::Passed);
    }
}
