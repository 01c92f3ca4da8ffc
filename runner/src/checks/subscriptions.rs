//! `subscriptions`: every subscriber of a topic is seen as subscribed by every peer connected to it, and nobody
//! sees an unsubscribe its sender did not ask for. A peer that "forgets" a remote's subscription (as go-libp2p-pubsub
//! can when a second connection replaces the first stream) stops sending it messages without any error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{clock, Check, Context};
use crate::events::{Micros, Observation, PeerEvent, Recorded};
use crate::results::CheckResult;

pub const NAME: &str = "subscriptions";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// How long after a subscriber subscribes (or connects) its connected peers have to announce it.
    #[serde(default = "default_within", with = "humantime_serde")]
    pub within: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            within: default_within(),
        }
    }
}

fn default_within() -> Duration {
    Duration::from_secs(3)
}

pub struct Subscriptions {
    within_us: Micros,
    /// (subscriber name, topic) -> when it was told to subscribe / unsubscribe.
    subscribed_at: BTreeMap<(String, String), Micros>,
    unsubscribed_at: BTreeMap<(String, String), Micros>,
    /// Peers told to stop or to disconnect: what others see of them afterwards is expected.
    left_at: BTreeMap<String, Micros>,
    /// (observer, remote id) -> open connection ids, and since when the pair has been connected.
    conns: BTreeMap<(String, String), (BTreeSet<String>, Micros)>,
    /// (observer, remote id, topic) -> when the observer first saw the subscription.
    seen: BTreeMap<(String, String, String), Micros>,
    unrequested: Vec<(Micros, String, String, String)>,
    last: Micros,
}

impl Subscriptions {
    pub fn new(settings: Settings) -> Self {
        Self {
            within_us: settings.within.as_micros() as Micros,
            subscribed_at: BTreeMap::new(),
            unsubscribed_at: BTreeMap::new(),
            left_at: BTreeMap::new(),
            conns: BTreeMap::new(),
            seen: BTreeMap::new(),
            unrequested: Vec::new(),
            last: 0,
        }
    }
}

impl Check for Subscriptions {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, rec: &Recorded) {
        self.last = self.last.max(rec.time());
        match &rec.what {
            Observation::Command { .. } => {
                let Some(cmd) = rec.command() else {
                    return;
                };
                match cmd.cmd.as_str() {
                    "subscribe" => {
                        self.subscribed_at
                            .entry((rec.peer.clone(), cmd.topic))
                            .or_insert(rec.at);
                    }
                    "unsubscribe" => {
                        self.unsubscribed_at
                            .entry((rec.peer.clone(), cmd.topic))
                            .or_insert(rec.at);
                    }
                    "stop" | "disconnect" => {
                        self.left_at.entry(rec.peer.clone()).or_insert(rec.at);
                    }
                    _ => {}
                }
            }
            Observation::Incident { .. }
            | Observation::Exited { .. }
            | Observation::Killed { .. } => {
                self.left_at.entry(rec.peer.clone()).or_insert(rec.at);
            }
            Observation::Event { line } => match &line.event {
                PeerEvent::ConnectionOpened {
                    remote, conn_id, ..
                } => {
                    let e = self
                        .conns
                        .entry((rec.peer.clone(), remote.clone()))
                        .or_insert((BTreeSet::new(), line.ts));
                    if e.0.is_empty() {
                        e.1 = line.ts;
                    }
                    e.0.insert(conn_id.clone());
                }
                PeerEvent::ConnectionClosed {
                    remote, conn_id, ..
                } => {
                    if let Some(e) = self.conns.get_mut(&(rec.peer.clone(), remote.clone())) {
                        e.0.remove(conn_id);
                    }
                }
                PeerEvent::Subscribed { remote, topic } => {
                    self.seen
                        .entry((rec.peer.clone(), remote.clone(), topic.clone()))
                        .or_insert(line.ts);
                }
                PeerEvent::Unsubscribed { remote, topic } => {
                    let connected = self
                        .conns
                        .get(&(rec.peer.clone(), remote.clone()))
                        .is_some_and(|c| !c.0.is_empty());
                    // `seen` keeps the first sighting: losing it again is the unrequested unsubscribe's business.
                    // Checked against the sender's commands once the name of the sender is known, in `verdict`.
                    if connected && !self.left_at.contains_key(&rec.peer) {
                        self.unrequested.push((
                            line.ts,
                            rec.peer.clone(),
                            remote.clone(),
                            topic.clone(),
                        ));
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let mut problems: Vec<(Micros, String, Vec<String>)> = Vec::new();
        for (at, observer, remote_id, topic) in &self.unrequested {
            let remote = ctx.name_of(remote_id);
            let asked = self
                .unsubscribed_at
                .get(&(remote.clone(), topic.clone()))
                .is_some_and(|t| t <= at);
            let left = self.left_at.get(&remote).is_some_and(|t| t <= at);
            if !asked && !left {
                problems.push((
                    *at,
                    format!(
                        "{} saw {} unsubscribe from {topic} at {}, which it was never asked to do",
                        ctx.describe(observer),
                        ctx.describe(&remote),
                        clock(*at)
                    ),
                    vec![observer.clone(), remote],
                ));
            }
        }
        // Every connected pair in which the remote subscribed: the observer must have seen it in time.
        for ((observer, remote_id), (_, connected_since)) in &self.conns {
            let remote = ctx.name_of(remote_id);
            for ((subscriber, topic), subscribed) in &self.subscribed_at {
                if subscriber != &remote {
                    continue;
                }
                let due = subscribed.max(connected_since) + self.within_us;
                let ended = [
                    self.left_at.get(observer),
                    self.left_at.get(&remote),
                    self.unsubscribed_at.get(&(remote.clone(), topic.clone())),
                ]
                .into_iter()
                .flatten()
                .min()
                .copied()
                .unwrap_or(self.last);
                let seen = self
                    .seen
                    .get(&(observer.clone(), remote_id.clone(), topic.clone()));
                if seen.is_none_or(|t| *t > due) && ended > due {
                    problems.push((
                        due,
                        format!(
                            "{} never saw {} subscribe to {topic} (subscribed at {})",
                            ctx.describe(observer),
                            ctx.describe(&remote),
                            clock(*subscribed)
                        ),
                        vec![observer.clone(), remote.clone()],
                    ));
                }
            }
        }
        problems.sort_by_key(|p| p.0);
        let Some((at, first, involved)) = problems.first() else {
            return CheckResult::passed(
                NAME,
                vec![format!(
                    "{} subscription(s) seen across {} connected pair(s)",
                    self.seen.len(),
                    self.conns.len()
                )],
            );
        };
        let more = if problems.len() > 1 {
            format!(" ({} problems in all)", problems.len())
        } else {
            String::new()
        };
        CheckResult::failed(
            NAME,
            format!("{first}{more}"),
            problems.iter().map(|p| p.1.clone()).collect(),
        )
        .at(*at)
        .involving(involved.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testkit::{id, Kit, TOPIC};
    use crate::events::Direction;
    use crate::results::Status;

    fn connect(kit: &Kit, ts: Micros, a: &str, b: &str) -> [Recorded; 2] {
        let open = |x: &str, y: &str| {
            kit.event(
                ts,
                x,
                PeerEvent::ConnectionOpened {
                    remote: id(y),
                    conn_id: "1".into(),
                    direction: Direction::Outbound,
                    remote_addr: "x".into(),
                    security: None,
                    muxer: None,
                },
            )
        };
        [open(a, b), open(b, a)]
    }

    fn run(events: &[Recorded], kit: &Kit) -> CheckResult {
        let mut c = Subscriptions::new(Settings::default());
        events.iter().for_each(|e| c.observe(e));
        c.verdict(&kit.context())
    }

    fn subscribe(kit: &Kit, ts: Micros, peer: &str) -> Recorded {
        kit.command(
            ts,
            peer,
            &format!(r#"{{"cmd":"subscribe","topic":"{TOPIC}"}}"#),
        )
    }

    fn seen(kit: &Kit, ts: Micros, observer: &str, remote: &str, sub: bool) -> Recorded {
        let (remote, topic) = (id(remote), TOPIC.to_string());
        let e = if sub {
            PeerEvent::Subscribed { remote, topic }
        } else {
            PeerEvent::Unsubscribed { remote, topic }
        };
        kit.event(ts, observer, e)
    }

    #[test]
    fn seen_subscriptions_pass() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = connect(&kit, 0, "rust-1", "go-1").to_vec();
        ev.extend([
            subscribe(&kit, 10, "rust-1"),
            subscribe(&kit, 10, "go-1"),
            seen(&kit, 20, "rust-1", "go-1", true),
            seen(&kit, 20, "go-1", "rust-1", true),
        ]);
        ev.push(kit.stderr(10_000_000, "rust-1", "later"));
        assert_eq!(run(&ev, &kit).status, Status::Passed);
    }

    #[test]
    fn a_forgotten_subscription_fails() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = connect(&kit, 0, "rust-1", "go-1").to_vec();
        ev.extend([
            subscribe(&kit, 10, "rust-1"),
            subscribe(&kit, 10, "go-1"),
            seen(&kit, 20, "rust-1", "go-1", true),
            seen(&kit, 20, "go-1", "rust-1", true),
        ]);
        ev.push(seen(&kit, 1_000_000, "go-1", "rust-1", false));
        ev.push(kit.stderr(10_000_000, "rust-1", "later"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert!(r.message.unwrap().starts_with("go-1 (go-libp2p v0.51.0) saw rust-1 (rust-libp2p 0.57.1) unsubscribe from meshgate at 00:00:01.000, which it was never asked to do"));
    }

    #[test]
    fn a_subscription_never_announced_fails_and_asked_unsubscribes_pass() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = connect(&kit, 0, "rust-1", "go-1").to_vec();
        ev.extend([
            subscribe(&kit, 10, "rust-1"),
            subscribe(&kit, 10, "go-1"),
            seen(&kit, 20, "go-1", "rust-1", true),
        ]);
        ev.push(kit.command(
            2_000_000,
            "rust-1",
            r#"{"cmd":"unsubscribe","topic":"meshgate"}"#,
        ));
        ev.push(seen(&kit, 2_100_000, "go-1", "rust-1", false));
        ev.push(kit.stderr(10_000_000, "rust-1", "later"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        let msg = r.message.unwrap();
        assert!(msg.starts_with("rust-1 (rust-libp2p 0.57.1) never saw go-1 (go-libp2p v0.51.0) subscribe to meshgate"), "{msg}");
        assert!(
            !msg.contains("problems in all"),
            "the asked-for unsubscribe is no problem: {msg}"
        );
    }
}
