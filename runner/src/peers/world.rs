//! What the runner knows of a case's network while it runs, built from the record, for deciding when a phase of
//! the script is done. Checks do not use it: they judge from the record itself.

use std::collections::{BTreeMap, BTreeSet};

use crate::events::{Observation, PeerEvent, Recorded};

pub struct World {
    /// Library and versions, from `started`.
    pub started: Vec<Option<(String, BTreeMap<String, String>)>>,
    peer_ids: Vec<Option<String>>,
    listening: Vec<bool>,
    /// Per peer: open connection id -> remote peer id.
    conns: Vec<BTreeMap<String, String>>,
    /// (observer, remote peer id, topic) for every subscription seen.
    subscriptions: BTreeSet<(usize, String, String)>,
    /// (peer, topic) -> mesh size.
    meshes: BTreeMap<(usize, String), usize>,
    pub stop_sent: Vec<bool>,
    /// The peer said `stopped`: what is left of its exit is the engine's to report.
    said_stopped: Vec<bool>,
    exited: Vec<bool>,
    pub exit_code: Vec<Option<i64>>,
    /// Why the case cannot run at all: a peer answered `unsupported` at start, before `started`.
    pub unsupported: Option<String>,
    /// The optional features each peer announced in `started` (`None`: not said).
    pub features: Vec<Option<Vec<String>>>,
    /// Gossipsub messages each peer received, in all.
    received: Vec<u64>,
    /// Paused by the runner (frozen, not exited).
    pub paused: Vec<bool>,
    /// The commands (`cmd_id`) a peer answered with an error.
    failed_commands: BTreeSet<String>,
}

impl World {
    pub fn new(n: usize) -> Self {
        Self {
            started: vec![None; n],
            peer_ids: vec![None; n],
            listening: vec![false; n],
            conns: vec![BTreeMap::new(); n],
            subscriptions: BTreeSet::new(),
            meshes: BTreeMap::new(),
            stop_sent: vec![false; n],
            said_stopped: vec![false; n],
            exited: vec![false; n],
            exit_code: vec![None; n],
            unsupported: None,
            features: vec![None; n],
            received: vec![0; n],
            paused: vec![false; n],
            failed_commands: BTreeSet::new(),
        }
    }

    /// Forgets what peer `i` knew and had before it was started again: a restarted process knows nothing.
    pub fn restarted(&mut self, i: usize) {
        self.listening[i] = false;
        self.exited[i] = false;
        self.exit_code[i] = None;
        self.stop_sent[i] = false;
        self.said_stopped[i] = false;
        self.conns[i].clear();
        self.subscriptions.retain(|(o, _, _)| *o != i);
        self.meshes.retain(|(p, _), _| *p != i);
        // What the others knew of it goes with their connections to the dead process: their `connection_closed`
        // events (or their idle timeouts) say so, not the runner.
    }

    /// Gossipsub messages peer `i` received, in all.
    pub fn received(&self, i: usize) -> u64 {
        self.received[i]
    }

    pub fn apply(&mut self, i: usize, rec: &Recorded) {
        match &rec.what {
            Observation::Event { line } => {
                if self.peer_ids[i].is_none() {
                    self.peer_ids[i] = Some(line.peer.clone());
                }
                match &line.event {
                    PeerEvent::Started {
                        implementation,
                        versions,
                        features,
                        ..
                    } => {
                        self.started[i] = Some((implementation.clone(), versions.clone()));
                        self.features[i] = features.clone();
                    }
                    PeerEvent::Listening { addrs } => self.listening[i] = !addrs.is_empty(),
                    PeerEvent::ConnectionOpened {
                        remote, conn_id, ..
                    } => {
                        self.conns[i].insert(conn_id.clone(), remote.clone());
                    }
                    PeerEvent::ConnectionClosed { conn_id, .. } => {
                        self.conns[i].remove(conn_id);
                    }
                    PeerEvent::Subscribed { remote, topic } => {
                        self.subscriptions
                            .insert((i, remote.clone(), topic.clone()));
                    }
                    PeerEvent::Unsubscribed { remote, topic } => {
                        self.subscriptions
                            .remove(&(i, remote.clone(), topic.clone()));
                    }
                    PeerEvent::Message { .. } => self.received[i] += 1,
                    PeerEvent::Stopped => self.said_stopped[i] = true,
                    PeerEvent::Error { cmd_id: Some(id), .. } => {
                        self.failed_commands.insert(id.clone());
                    }
                    PeerEvent::Mesh { topic, peers } => {
                        self.meshes.insert((i, topic.clone()), peers.len());
                    }
                    // Later answers mark one step as not exercised; the case goes on.
                    PeerEvent::Unsupported { feature, reason, cmd_id: None } if self.started[i].is_none() => {
                        self.unsupported.get_or_insert_with(|| {
                            format!("{} cannot do {feature}: {reason}", rec.peer)
                        });
                    }
                    _ => {}
                }
            }
            Observation::Exited { code, .. } => {
                self.exited[i] = true;
                self.exit_code[i] = *code;
            }
            _ => {}
        }
    }

    /// Whether the command `cmd_id` was answered with an error.
    pub fn command_failed(&self, cmd_id: &str) -> bool {
        self.failed_commands.contains(cmd_id)
    }

    pub fn peer_id(&self, i: usize) -> Option<&str> {
        self.peer_ids[i].as_deref()
    }

    /// Whether peer `i` said who it is and where it listens, and still runs.
    pub fn ready(&self, i: usize) -> bool {
        self.started[i].is_some() && self.listening[i] && !self.exited[i]
    }

    /// Whether peer `a` has a connection to peer `b`.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.peer_ids[b]
            .as_ref()
            .is_some_and(|id| self.conns[a].values().any(|r| r == id))
    }

    /// Whether peer `a` has seen peer `b` subscribe to `topic`.
    pub fn sees_subscribed(&self, a: usize, b: usize, topic: &str) -> bool {
        self.peer_ids[b].as_ref().is_some_and(|id| {
            self.subscriptions
                .contains(&(a, id.clone(), topic.to_owned()))
        })
    }

    pub fn mesh_size(&self, i: usize, topic: &str) -> usize {
        self.meshes
            .get(&(i, topic.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Whether peer `i` said `stopped` (and has not been restarted since).
    pub fn said_stopped(&self, i: usize) -> bool {
        self.said_stopped[i]
    }

    pub fn exited(&self, i: usize) -> bool {
        self.exited[i]
    }

    /// Whether the case cannot run at all: a peer cannot do what it needs.
    pub fn gave_up(&self) -> bool {
        self.unsupported.is_some()
    }

    /// Whether peer `i` can be waited for: it started and has not exited.
    pub fn up(&self, i: usize) -> bool {
        self.started[i].is_some() && !self.exited[i]
    }

    /// Whether peer `i` said it can do `feature`; a peer that did not announce its features may.
    pub fn may_do(&self, i: usize, feature: &str) -> bool {
        self.features[i]
            .as_ref()
            .is_none_or(|f| f.iter().any(|x| x == feature))
    }

    /// Where each peer stands, for a timeout message.
    pub fn describe_wait(&self, names: &[String]) -> String {
        // A note is one readable line however large the case: the first peers, then how many more.
        const SHOWN: usize = 6;
        let mut said: Vec<String> = names
            .iter()
            .enumerate()
            .take(SHOWN)
            .map(|(i, name)| {
                let state = if self.started[i].is_none() {
                    "not started".to_owned()
                } else if !self.listening[i] {
                    "not listening".to_owned()
                } else {
                    let subs = self
                        .subscriptions
                        .iter()
                        .filter(|(o, _, _)| *o == i)
                        .count();
                    let meshes: usize = self
                        .meshes
                        .iter()
                        .filter(|((p, _), _)| *p == i)
                        .map(|(_, n)| n)
                        .sum();
                    format!(
                        "{} connection(s), {subs} subscription(s) seen, mesh {meshes}",
                        self.conns[i].len()
                    )
                };
                format!("{name} {state}")
            })
            .collect();
        if names.len() > SHOWN {
            said.push(format!("and {} more peers", names.len() - SHOWN));
        }
        said.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_described_in_one_short_line_at_any_size() {
        let names: Vec<String> = (1..=200).map(|i| format!("go-{i}")).collect();
        let said = World::new(200).describe_wait(&names);
        assert!(said.starts_with("go-1 not started; go-2 not started;"), "{said}");
        assert!(said.ends_with("go-6 not started; and 194 more peers"), "{said}");
        assert!(said.len() < 200, "{said}");
    }
}
