//! What one stored case says of itself, read from its record's time stamps: when its peers listened, connected as
//! the topology says and formed meshes, when its scenario ended, what was delivered how fast, how far the runner
//! lagged behind the peers, and how much memory each peer used. The runner's clock (`at`) times the milestones; a
//! peer's own clock (`ts`) times what happened inside it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::events::{Command, Micros, Observation, PeerEvent, Recorded};
use crate::matrix::Language;
use crate::stored::StoredCase;

/// The figures of one case.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaseFigures {
    /// When the runner began the case (before its network was made).
    pub started: Micros,
    /// When everything of it was removed (the runner's duration of the case ends there).
    pub ended: Micros,
    /// Every peer had said where it listens.
    pub listening: Option<Micros>,
    /// Both ends of every topology edge reported a connection to the other.
    pub connected: Option<Micros>,
    /// Every peer on an edge had a non-empty mesh in every topic.
    pub meshed: Option<Micros>,
    pub first_subscribe: Option<Micros>,
    /// The first publish command: the time line's start.
    pub first_publish: Option<Micros>,
    /// The last command of the scenario (the `stop`s excepted).
    pub last_step: Option<Micros>,
    /// The first `stop`: the end of the drain.
    pub first_stop: Option<Micros>,
    /// The last peer's exit.
    pub last_exit: Option<Micros>,
    /// Every message published: its id and the publisher's time stamp.
    pub published: Vec<(String, Micros)>,
    /// Every first delivery of a message to a peer: when it was sent, and after how long it arrived.
    pub deliveries: Vec<Delivery>,
    /// Peers that subscribed (and so are expected to receive every other peer's messages).
    pub subscribers: usize,
    /// (arrival, lag) of every peer event: the runner's arrival time minus the peer's own time stamp.
    pub lag_us: Vec<(Micros, Micros)>,
    /// Peer events taken in, and over how long (first to last observation).
    pub events: usize,
    pub span_us: Micros,
    /// The most memory each rust and go peer used, as measured on its exit.
    pub peak_memory: BTreeMap<&'static str, Vec<u64>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delivery {
    pub sent_us: Micros,
    pub latency_us: Micros,
}

impl CaseFigures {
    pub fn read(stored: &StoredCase, record: &[Recorded]) -> Self {
        let case = &stored.case;
        let index: HashMap<&str, usize> =
            case.peers.iter().enumerate().map(|(i, p)| (p.name.as_str(), i)).collect();
        let n = case.peers.len();
        let linked: Vec<bool> =
            (0..n).map(|i| case.edges.iter().any(|&(a, b)| a == i || b == i)).collect();
        let topics = case.gossipsub.topics.len();
        let mut f = CaseFigures {
            started: stored.started_us,
            ended: stored.started_us + stored.duration_ms as Micros * 1000,
            ..Default::default()
        };
        let mut ids: Vec<Option<String>> = vec![None; n];
        let mut listening = vec![false; n];
        // Open connections of each peer: (connection id, remote peer id).
        let mut conns: Vec<BTreeSet<(String, String)>> = vec![BTreeSet::new(); n];
        let mut meshes: Vec<BTreeSet<String>> = vec![BTreeSet::new(); n];
        let mut subscribed = vec![false; n];
        let mut received: BTreeSet<(usize, String)> = BTreeSet::new();
        for rec in record {
            let Some(&i) = index.get(rec.peer.as_str()) else {
                continue;
            };
            match &rec.what {
                Observation::Event { line } => {
                    ids[i].get_or_insert_with(|| line.peer.clone());
                    f.lag_us.push((rec.at, rec.at - line.ts));
                    f.events += 1;
                    match &line.event {
                        PeerEvent::Listening { .. } if !listening[i] => {
                            listening[i] = true;
                            if f.listening.is_none() && listening.iter().all(|&l| l) {
                                f.listening = Some(rec.at);
                            }
                        }
                        PeerEvent::ConnectionOpened { remote, conn_id, .. } => {
                            conns[i].insert((conn_id.clone(), remote.clone()));
                            if f.connected.is_none() && all_connected(&case.edges, &ids, &conns) {
                                f.connected = Some(rec.at);
                            }
                        }
                        PeerEvent::ConnectionClosed { remote, conn_id, .. } => {
                            conns[i].remove(&(conn_id.clone(), remote.clone()));
                        }
                        PeerEvent::Mesh { topic, peers } => {
                            match peers.is_empty() {
                                true => meshes[i].remove(topic),
                                false => meshes[i].insert(topic.clone()),
                            };
                            let whole = (0..n).all(|p| !linked[p] || meshes[p].len() >= topics);
                            if f.meshed.is_none() && whole {
                                f.meshed = Some(rec.at);
                            }
                        }
                        PeerEvent::Published { id, .. } => f.published.push((id.clone(), line.ts)),
                        PeerEvent::Message { id, sent_us, .. } => {
                            if received.insert((i, id.clone())) {
                                f.deliveries.push(Delivery {
                                    sent_us: *sent_us,
                                    latency_us: line.ts - sent_us,
                                });
                            }
                        }
                        _ => {}
                    }
                }
                Observation::Command { command, .. } => match &command.command {
                    Command::Stop => {
                        f.first_stop.get_or_insert(rec.at);
                    }
                    other => {
                        if matches!(other, Command::Subscribe { .. }) {
                            subscribed[i] = true;
                            f.first_subscribe.get_or_insert(rec.at);
                        }
                        if matches!(other, Command::Publish { .. }) {
                            f.first_publish.get_or_insert(rec.at);
                        }
                        f.last_step = Some(rec.at);
                    }
                },
                Observation::Exited { peak_memory_bytes, .. } => {
                    f.last_exit = Some(f.last_exit.map_or(rec.at, |e| e.max(rec.at)));
                    if let Some(peak) = peak_memory_bytes {
                        let language = match case.peers[i].language {
                            Language::Rust => "rust",
                            Language::Go => "go",
                            Language::Image => "image",
                        };
                        f.peak_memory.entry(language).or_default().push(*peak);
                    }
                }
                _ => {}
            }
        }
        f.subscribers = subscribed.iter().filter(|&&s| s).count();
        if let (Some(first), Some(last)) = (record.first(), record.last()) {
            f.span_us = last.at - first.at;
        }
        f
    }

    /// Deliveries expected of the messages sent in `[from, to)` (publisher's clock): every other subscriber
    /// receives each; and how many of them arrived within `deadline`, with their latencies.
    pub fn delivered(&self, from: Micros, to: Micros, deadline: Duration) -> Delivered {
        let expected = self
            .published
            .iter()
            .filter(|(_, ts)| (from..to).contains(ts))
            .count()
            * self.subscribers.saturating_sub(1);
        let mut latencies: Vec<Micros> = self
            .deliveries
            .iter()
            .filter(|d| (from..to).contains(&d.sent_us))
            .map(|d| d.latency_us)
            .collect();
        latencies.sort_unstable();
        let within = latencies.partition_point(|&l| l <= deadline.as_micros() as Micros);
        Delivered {
            expected,
            within,
            p50_ms: percentile(&latencies, 50.0).map(ms),
            p99_ms: percentile(&latencies, 99.0).map(ms),
        }
    }

    /// All the case's deliveries (see [`Self::delivered`]).
    pub fn delivered_all(&self, deadline: Duration) -> Delivered {
        self.delivered(Micros::MIN, Micros::MAX, deadline)
    }

    /// Harness lag percentile, ms, of the events that arrived in `[from, to)`.
    pub fn lag_ms(&self, p: f64, from: Micros, to: Micros) -> Option<f64> {
        let mut lag: Vec<Micros> =
            self.lag_us.iter().filter(|(at, _)| (from..to).contains(at)).map(|&(_, l)| l).collect();
        lag.sort_unstable();
        percentile(&lag, p).map(ms)
    }

    /// Peer events taken in per second, over the case's record.
    pub fn events_per_s(&self) -> Option<f64> {
        (self.span_us > 0).then(|| self.events as f64 / (self.span_us as f64 / 1e6))
    }
}

/// Deliveries of some messages: how many were expected, how many arrived within the deadline, how fast.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Delivered {
    pub expected: usize,
    pub within: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Delivered {
    pub fn ratio(&self) -> Option<f64> {
        (self.expected > 0).then(|| self.within as f64 / self.expected as f64)
    }
}

fn all_connected(
    edges: &[(usize, usize)],
    ids: &[Option<String>],
    conns: &[BTreeSet<(String, String)>],
) -> bool {
    let sees = |a: usize, b: usize| {
        ids[b]
            .as_ref()
            .is_some_and(|id| conns[a].iter().any(|(_, r)| r == id))
    };
    edges.iter().all(|&(a, b)| sees(a, b) && sees(b, a))
}

/// Microseconds to milliseconds.
pub fn ms(us: Micros) -> f64 {
    us as f64 / 1000.0
}

/// The nearest-rank percentile of sorted values.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of some values (the mean of the middle two for an even count); `None` of none.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(match v.len() % 2 {
        1 => v[mid],
        _ => (v[mid - 1] + v[mid]) / 2.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stored::tests::stored;
    use crate::testkit::{Kit, TOPIC};

    #[test]
    fn milestones_deliveries_lag_and_memory_come_from_the_record() {
        let mut kit = Kit::new(&["rust-1", "go-1", "go-2"]);
        kit.case.edges = vec![(0, 1), (1, 2)];
        let listen = |at, p: &str| {
            kit.event(at, p, PeerEvent::Listening { addrs: vec!["/ip4/10.0.0.2/tcp/4001".into()] })
        };
        let mut record = vec![listen(100, "rust-1"), listen(110, "go-1"), listen(120, "go-2")];
        record.extend(kit.connect(200, "rust-1", "go-1"));
        record.extend(kit.connect(300, "go-1", "go-2"));
        for (at, p) in [(400, "rust-1"), (401, "go-1"), (402, "go-2")] {
            record.push(kit.subscribe(at, p, TOPIC));
        }
        record.push(kit.mesh(500, "rust-1", TOPIC, &["go-1"]));
        record.push(kit.mesh(510, "go-1", TOPIC, &["rust-1", "go-2"]));
        record.push(kit.mesh(520, "go-2", TOPIC, &["go-1"]));
        record.extend(kit.publish(1_000, "rust-1", "m1"));
        // go-1 receives it after 2 ms, go-2 twice (the second is no delivery) and after 20 s: beyond the deadline.
        record.push(kit.message(3_000, "go-1", "rust-1", "m1", 1_000));
        let mut late = kit.message(20_001_000, "go-2", "rust-1", "m1", 1_000);
        late.at += 5_000;
        record.push(late.clone());
        record.push(late);
        record.push(kit.command(20_100_000, "rust-1", r#"{"cmd":"stop"}"#));
        record.push(Recorded {
            at: 20_200_000,
            peer: "go-1".into(),
            what: Observation::Exited {
                code: Some(0),
                expected: true,
                oom_killed: false,
                peak_memory_bytes: Some(9 << 20),
                memory_limit_bytes: None,
            },
        });
        let f = CaseFigures::read(&stored(&kit), &record);
        assert_eq!(f.listening, Some(120));
        assert_eq!(f.connected, Some(300));
        assert_eq!((f.first_subscribe, f.meshed), (Some(400), Some(520)));
        assert_eq!((f.first_publish, f.last_step), (Some(1_000), Some(1_000)));
        assert_eq!((f.first_stop, f.last_exit), (Some(20_100_000), Some(20_200_000)));
        assert_eq!(f.subscribers, 3);
        let d = f.delivered_all(Duration::from_secs(10));
        assert_eq!((d.expected, d.within), (2, 1));
        assert_eq!(d.ratio(), Some(0.5));
        assert_eq!(d.p50_ms, Some(2.0));
        assert_eq!(d.p99_ms, Some(20_000.0));
        // Messages sent later than the window count neither as expected nor as delivered.
        assert_eq!(f.delivered(2_000, 3_000, Duration::from_secs(10)).expected, 0);
        assert_eq!(f.lag_ms(99.0, Micros::MIN, Micros::MAX), Some(5.0));
        assert_eq!(f.lag_ms(99.0, 0, 20_000_000), Some(0.0));
        assert_eq!(f.peak_memory.get("go"), Some(&vec![9 << 20]));
        assert!(!f.peak_memory.contains_key("rust"));
    }

    #[test]
    fn an_edge_never_connected_leaves_the_milestone_unset() {
        let mut kit = Kit::new(&["rust-1", "go-1", "go-2"]);
        kit.case.edges = vec![(0, 1), (0, 2)];
        let record: Vec<Recorded> = kit.connect(200, "rust-1", "go-1").into();
        assert_eq!(CaseFigures::read(&stored(&kit), &record).connected, None);
    }

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median([]), None);
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
    }
}
