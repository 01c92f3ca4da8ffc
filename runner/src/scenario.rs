//! A case's scenario: what the driver does, as plain data built from the case alone (no backend, no clock), so
//! that what a case will do is tested without running it. The setup is carried out phase by phase; then the time
//! line (the network's publishing, its incidents and its `timeline` steps) runs from the start of publishing,
//! each step when its time comes or its condition holds; then the drain.

use std::time::Duration;

use crate::cases::Case;
use crate::matrix::timeline::{Action, Condition, Rejoin, Step, Via};

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Carried out one after the other, before publishing starts.
    pub setup: Vec<Phase>,
    /// From the start of publishing, in order of their times; steps after a condition wait for it.
    pub timeline: Vec<Timed>,
    /// The longest wait after the time line, for what the checks still wait for.
    pub drain: Duration,
}

/// The setup every case goes through (the default scenario's first part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Every peer started and listening (or exited).
    Start,
    /// Dials along the topology's edges; waits for them within the warm-up.
    Connect,
    /// Every peer subscribes to every topic; waits for subscriptions and meshes within the warm-up.
    Subscribe,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timed {
    pub when: When,
    pub what: What,
    /// The peer is expected to answer with an `error`.
    pub expect_error: bool,
    pub rejoin: Rejoin,
    pub origin: Origin,
}

/// When a timed step runs.
#[derive(Debug, Clone, PartialEq)]
pub enum When {
    /// This long after publishing started.
    At(Duration),
    /// This long after the condition first held (counted from the start of publishing at the earliest).
    After { condition: Condition, plus: Duration },
}

#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// One message: `id` is unique in the case.
    Publish {
        peer: usize,
        topic: String,
        id: String,
        size: u32,
    },
    /// One request on the request-response protocol: `id` (`<requester>/r<N>`) is unique in the case.
    Request {
        peer: usize,
        to: usize,
        id: String,
        size: u64,
        via: Via,
    },
    /// A step made to one peer: a command it is sent, or a fault made to it from outside.
    Peer { peer: usize, action: Action },
    /// A step made to the network: partition, heal.
    Network(Action),
}

/// Where a timed step comes from, for its label and for `after: {step: NAME}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// The network's `publish` settings.
    Publishing,
    /// The n-th incident (from 1).
    Incident(usize),
    /// The n-th time line step (from 1), its name, and which repetition (from 1) of how many.
    Step {
        index: usize,
        name: Option<String>,
        repetition: u32,
        of: u32,
    },
}

impl Origin {
    /// `time line step 3 (split, 2 of 5)`, for notes and the record.
    pub fn label(&self) -> String {
        match self {
            Origin::Publishing => "publishing".into(),
            Origin::Incident(n) => format!("incident {n}"),
            Origin::Step {
                index,
                name,
                repetition,
                of,
            } => {
                let mut extra = Vec::new();
                if let Some(n) = name {
                    extra.push(n.clone());
                }
                if *of > 1 {
                    extra.push(format!("{repetition} of {of}"));
                }
                match extra.is_empty() {
                    true => format!("time line step {index}"),
                    false => format!("time line step {index} ({})", extra.join(", ")),
                }
            }
        }
    }

    /// The name of the step it repeats, if it has one.
    pub fn step_name(&self) -> Option<&str> {
        match self {
            Origin::Step { name, .. } => name.as_deref(),
            _ => None,
        }
    }
}

impl Scenario {
    /// The case's scenario: the default setup, then its publishing, incidents and time line, then the drain.
    pub fn of(case: &Case) -> Scenario {
        let mut timeline = publishing(case);
        let mut requests = vec![0; case.peers.len()];
        for (n, inc) in case.incidents.iter().enumerate() {
            timeline.extend(expand(case, &inc.as_step(), Origin::Incident(n + 1), &mut requests));
        }
        for (n, step) in case.timeline.iter().enumerate() {
            let of = step.times.unwrap_or(1);
            for repetition in 1..=of {
                let origin = Origin::Step {
                    index: n + 1,
                    name: step.name.clone(),
                    repetition,
                    of,
                };
                let offset = step.every.unwrap_or_default() * (repetition - 1);
                timeline.extend(
                    expand(case, step, origin, &mut requests)
                        .into_iter()
                        .map(|t| t.later(offset)),
                );
            }
        }
        // Timed steps in order of their times; steps after a condition keep their order after them.
        timeline.sort_by_key(|t| match t.when {
            When::At(d) => (0, d),
            When::After { .. } => (1, Duration::ZERO),
        });
        Scenario {
            setup: vec![Phase::Start, Phase::Connect, Phase::Subscribe],
            timeline,
            drain: case.drain,
        }
    }

    /// How many timed steps carry out repetitions of the step named `name`.
    pub fn count_of(&self, name: &str) -> usize {
        self.timeline
            .iter()
            .filter(|t| t.origin.step_name() == Some(name))
            .count()
    }

    /// Whether any step is a fault of this kind (`kill`, `shape`, ...).
    pub fn has(&self, pred: impl Fn(&Action) -> bool) -> bool {
        self.timeline.iter().any(|t| match &t.what {
            What::Peer { action, .. } | What::Network(action) => pred(action),
            What::Publish { .. } | What::Request { .. } => false,
        })
    }
}

impl Timed {
    fn later(mut self, by: Duration) -> Timed {
        match &mut self.when {
            When::At(d) => *d += by,
            When::After { plus, .. } => *plus += by,
        }
        self
    }
}

/// The network's own publishing: every publisher on every topic, spread over each interval so that publishers do
/// not all publish in the same instant.
fn publishing(case: &Case) -> Vec<Timed> {
    let publishers: Vec<usize> = case
        .publishers()
        .iter()
        .filter_map(|name| index_of(case, name))
        .collect();
    let slot = case.publish.interval / (publishers.len().max(1) as u32);
    let mut out = Vec::new();
    for seq in 0..case.publish.messages {
        for (k, &peer) in publishers.iter().enumerate() {
            for topic in &case.gossipsub.topics {
                out.push(Timed {
                    when: When::At(case.publish.interval * seq + slot * k as u32),
                    what: What::Publish {
                        peer,
                        topic: topic.clone(),
                        id: format!("{}/{topic}/{seq}", case.peers[peer].name),
                        size: case.publish.size,
                    },
                    expect_error: false,
                    rejoin: Rejoin::Replay,
                    origin: Origin::Publishing,
                });
            }
        }
    }
    out
}

/// One occurrence of a step (a burst becomes its messages, a `request` step its requests, numbered per requester
/// in `requests`).
fn expand(case: &Case, step: &Step, origin: Origin, requests: &mut [u32]) -> Vec<Timed> {
    let at = step.at.unwrap_or_default();
    let when = |plus: Duration| match &step.after {
        None => When::At(at + plus),
        Some(condition) => When::After {
            condition: condition.clone(),
            plus: at + plus,
        },
    };
    let timed = |when: When, what: What| Timed {
        when,
        what,
        expect_error: step.expect_error,
        rejoin: step.rejoin,
        origin: origin.clone(),
    };
    let peer = step.peer.as_deref().and_then(|p| index_of(case, p));
    match (&step.action, peer) {
        (Action::Publish(burst), Some(peer)) => {
            let topic = burst
                .topic
                .clone()
                .or_else(|| case.gossipsub.topics.first().cloned())
                .unwrap_or_default();
            let tag = match &origin {
                Origin::Step {
                    index, repetition, ..
                } => format!("s{index}.{repetition}"),
                Origin::Incident(n) => format!("i{n}"),
                Origin::Publishing => "p".into(),
            };
            (0..burst.messages)
                .map(|k| {
                    timed(
                        when(burst.interval * k),
                        What::Publish {
                            peer,
                            topic: topic.clone(),
                            id: format!("{}/{topic}/{tag}.{k}", case.peers[peer].name),
                            size: burst.size.unwrap_or(case.publish.size),
                        },
                    )
                })
                .collect()
        }
        (Action::Request(r), Some(peer)) => {
            let Some(to) = index_of(case, &r.to) else { return Vec::new() };
            // Back to back at the same instant: the time line carries out every step due before it looks again.
            (0..r.count)
                .map(|_| {
                    requests[peer] += 1;
                    timed(
                        when(Duration::ZERO),
                        What::Request {
                            peer,
                            to,
                            id: format!("{}/r{}", case.peers[peer].name, requests[peer]),
                            size: r.size,
                            via: r.via,
                        },
                    )
                })
                .collect()
        }
        (action, Some(peer)) => vec![timed(when(Duration::ZERO), What::Peer { peer, action: action.clone() })],
        (action, None) => vec![timed(when(Duration::ZERO), What::Network(action.clone()))],
    }
}

fn index_of(case: &Case, name: &str) -> Option<usize> {
    case.peers.iter().position(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::timeline::Burst;
    use crate::matrix::Incident;
    use crate::testkit::Kit;

    fn step(yaml: &str) -> Step {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn the_default_scenario_is_the_fixed_script_of_old() {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        kit.case.publish.messages = 2;
        kit.case.publish.interval = Duration::from_millis(200);
        let s = Scenario::of(&kit.case);
        assert_eq!(s.setup, vec![Phase::Start, Phase::Connect, Phase::Subscribe]);
        assert_eq!(s.drain, kit.case.drain);
        let times: Vec<(Duration, &str)> = s
            .timeline
            .iter()
            .map(|t| match (&t.when, &t.what) {
                (When::At(d), What::Publish { id, .. }) => (*d, id.as_str()),
                other => panic!("{other:?}"),
            })
            .collect();
        // Two publishers spread over each 200 ms interval.
        assert_eq!(
            times,
            vec![
                (Duration::ZERO, "rust-1/meshgate/0"),
                (Duration::from_millis(100), "go-1/meshgate/0"),
                (Duration::from_millis(200), "rust-1/meshgate/1"),
                (Duration::from_millis(300), "go-1/meshgate/1"),
            ]
        );
    }

    #[test]
    fn incidents_and_steps_take_their_place_on_the_time_line() {
        let mut kit = Kit::new(&["rust-1", "go-1", "go-2"]);
        kit.case.publish.messages = 1;
        kit.case.incidents = vec![Incident {
            at: Duration::from_millis(150),
            peer: "go-2".into(),
            action: Action::Unsubscribe("meshgate".into()),
            expect_error: false,
        }];
        kit.case.timeline = vec![
            step("{at: 50ms, do: {partition: [[rust-1], [go-1, go-2]]}}"),
            step("{name: bounce, at: 1s, every: 2s, times: 3, peer: go-1, do: kill}"),
            step("{after: {step: bounce}, at: 500ms, peer: go-1, do: restart}"),
        ];
        let s = Scenario::of(&kit.case);
        let labels: Vec<String> = s
            .timeline
            .iter()
            .filter(|t| !matches!(t.what, What::Publish { .. }))
            .map(|t| format!("{:?} {}", t.when, t.origin.label()))
            .collect();
        assert_eq!(
            labels,
            vec![
                "At(50ms) time line step 1",
                "At(150ms) incident 1",
                "At(1s) time line step 2 (bounce, 1 of 3)",
                "At(3s) time line step 2 (bounce, 2 of 3)",
                "At(5s) time line step 2 (bounce, 3 of 3)",
                "After { condition: Step(\"bounce\"), plus: 500ms } time line step 3",
            ]
        );
        assert_eq!(s.count_of("bounce"), 3);
        assert!(s.has(|a| matches!(a, Action::Kill)));
        assert!(!s.has(|a| matches!(a, Action::Pause)));
        let partition = s.timeline.iter().find(|t| t.origin.label() == "time line step 1").unwrap();
        assert!(matches!(&partition.what, What::Network(Action::Partition(g)) if g.len() == 2));
    }

    #[test]
    fn a_burst_is_its_messages_with_ids_of_their_own() {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        kit.case.publish.messages = 0;
        kit.case.timeline = vec![Step {
            name: None,
            at: Some(Duration::from_secs(1)),
            after: Some(Condition::Meshed),
            every: Some(Duration::from_secs(10)),
            times: Some(2),
            peer: Some("go-1".into()),
            action: Action::Publish(Burst {
                messages: 3,
                interval: Duration::from_millis(50),
                size: Some(1024),
                topic: None,
            }),
            rejoin: Rejoin::Replay,
            expect_error: false,
        }];
        let s = Scenario::of(&kit.case);
        let got: Vec<(Duration, String, u32)> = s
            .timeline
            .iter()
            .map(|t| match (&t.when, &t.what) {
                (When::After { condition: Condition::Meshed, plus }, What::Publish { id, size, peer: 1, .. }) => {
                    (*plus, id.clone(), *size)
                }
                other => panic!("{other:?}"),
            })
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(
            got,
            vec![
                (ms(1000), "go-1/meshgate/s1.1.0".into(), 1024),
                (ms(1050), "go-1/meshgate/s1.1.1".into(), 1024),
                (ms(1100), "go-1/meshgate/s1.1.2".into(), 1024),
                (ms(11000), "go-1/meshgate/s1.2.0".into(), 1024),
                (ms(11050), "go-1/meshgate/s1.2.1".into(), 1024),
                (ms(11100), "go-1/meshgate/s1.2.2".into(), 1024),
            ]
        );
    }

    #[test]
    fn a_request_step_is_its_requests_at_one_instant_with_ids_unique_in_the_case() {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        kit.case.publish.messages = 0;
        kit.case.incidents = vec![];
        kit.case.timeline = vec![
            step("{at: 1s, peer: rust-1, do: {request: {to: go-1, count: 3, size: 10, via: address}}}"),
            step("{at: 2s, every: 1s, times: 2, peer: rust-1, do: {request: {to: go-1}}}"),
            step("{at: 2s, peer: go-1, do: {request: {to: rust-1}}}"),
            step("{at: 3s, peer: go-1, do: {autonat-probe: {server: rust-1, vanish: true}}}"),
        ];
        let s = Scenario::of(&kit.case);
        let got: Vec<String> = s
            .timeline
            .iter()
            .map(|t| match (&t.when, &t.what) {
                (When::At(d), What::Request { peer, to, id, size, via }) => {
                    format!("{d:?} {peer}->{to} {id} {size} {via:?}")
                }
                (When::At(d), What::Peer { peer, action }) => format!("{d:?} {peer} {}", action.name()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            vec![
                "1s 0->1 rust-1/r1 10 Address",
                "1s 0->1 rust-1/r2 10 Address",
                "1s 0->1 rust-1/r3 10 Address",
                "2s 0->1 rust-1/r4 64 Connection",
                "2s 1->0 go-1/r1 64 Connection",
                "3s 0->1 rust-1/r5 64 Connection",
                "3s 1 autonat-probe",
            ]
        );
    }
}
