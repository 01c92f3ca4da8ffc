//! `delivery`: every message published reaches every other subscriber of its topic, within a deadline.
//! Expectations come from the runner's publish commands and the matrix, never from what peers claim.

use std::collections::{BTreeMap, BTreeSet};


use super::evidence::{count, seconds};
use super::outages::Outages;
use super::{clock, Check, Context};
use crate::events::{Command, CommandLine, Micros, Observation, PeerEvent, Recorded, Sent};
pub use crate::matrix::checks::delivery::Settings;
use crate::results::CheckResult;

pub const NAME: &str = "delivery";

struct Publication {
    publisher: String,
    topic: String,
    /// When the peer said it published; `None` when it never did.
    at: Option<Micros>,
    commanded_at: Micros,
}

pub struct Delivery {
    deadline_us: Micros,
    gap_us: Micros,
    /// By message id, in publication order.
    publications: Vec<(String, Publication)>,
    publish_errors: BTreeMap<String, Vec<String>>,
    sent: Sent,
    /// (receiver, message id) -> delivery time.
    received: BTreeMap<(String, String), Micros>,
    last_delivery: BTreeMap<String, Micros>,
    recovery_us: Micros,
    /// The time line's faults: nothing is expected across them.
    outages: Outages,
}

impl Delivery {
    pub fn new(settings: Settings) -> Self {
        Self {
            deadline_us: settings.deadline.as_micros() as Micros,
            gap_us: settings.gap.as_micros() as Micros,
            publications: Vec::new(),
            publish_errors: BTreeMap::new(),
            sent: Sent::default(),
            received: BTreeMap::new(),
            last_delivery: BTreeMap::new(),
            recovery_us: settings.recovery.as_micros() as Micros,
            outages: Outages::default(),
        }
    }

    /// Whether a fault of the time line excuses `subscriber` missing a message of `publisher` published at `at`.
    fn excused(&self, publisher: &str, subscriber: &str, at: Micros) -> bool {
        self.outages
            .excusing(publisher, subscriber, at, at + self.deadline_us, self.recovery_us)
            .is_some()
    }

    /// For each end of an outage: how long until a message crossed it again (published after the end, received
    /// across it), or that none did within the recovery.
    fn recoveries(&self, ctx: &Context) -> Vec<String> {
        let published: BTreeMap<&str, (&str, Micros)> = self
            .publications
            .iter()
            .filter_map(|(id, p)| Some((id.as_str(), (p.publisher.as_str(), p.at?))))
            .collect();
        self.outages
            .ends()
            .into_iter()
            .map(|(end, what)| {
                let healed = self.outages.healed_at(end);
                let across = |publisher: &str, receiver: &str| {
                    if healed.is_empty() {
                        self.outages.came_back_at(publisher, end) || self.outages.came_back_at(receiver, end)
                    } else {
                        let k = if publisher <= receiver {
                            (publisher.to_owned(), receiver.to_owned())
                        } else {
                            (receiver.to_owned(), publisher.to_owned())
                        };
                        healed.contains(&k)
                    }
                };
                let first = self
                    .received
                    .iter()
                    .filter_map(|((receiver, id), &at)| {
                        let (publisher, sent) = published.get(id.as_str())?;
                        (sent >= &end && at >= end && across(publisher, receiver)).then_some(at)
                    })
                    .min();
                let ended = if healed.is_empty() {
                    format!("{} came back", ctx.describe(&what))
                } else {
                    format!("{what} healed")
                };
                match first {
                    Some(at) => format!(
                        "recovery: {ended} at {}; first delivery across it {} later",
                        clock(end),
                        seconds(at - end)
                    ),
                    None => format!("recovery: {ended} at {}; no delivery across it afterwards", clock(end)),
                }
            })
            .collect()
    }
}

/// What became of one expected delivery.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Within the deadline, after this latency.
    Delivered(Micros),
    /// Not expected: a fault of the time line kept the pair apart.
    Excused,
    /// Not (yet) arrived, and its deadline is still ahead: the case waits for it.
    Due(Micros),
    Missed,
}

impl Delivery {
    /// The one rule of what is expected: every message its publisher said it published, to every other subscriber
    /// of its topic, within the deadline, unless a fault of the time line excuses the pair. Judged as of `now`
    /// while the case runs; `None` judges the finished record, where nothing is due any more.
    fn expected<'a>(
        &'a self,
        ctx: &'a Context,
        now: Option<Micros>,
    ) -> impl Iterator<Item = (&'a str, &'a Publication, Micros, &'a str, Fate)> + 'a {
        self.publications.iter().flat_map(move |(id, p)| {
            p.at.into_iter().flat_map(move |published| {
                ctx.case
                    .subscribers(&p.topic)
                    .filter(move |s| s.name != p.publisher)
                    .map(move |sub| {
                        let due = published + self.deadline_us;
                        let fate = match self.received.get(&(sub.name.clone(), id.clone())) {
                            Some(&at) if at - published <= self.deadline_us => Fate::Delivered(at - published),
                            _ if self.excused(&p.publisher, &sub.name, published) => Fate::Excused,
                            _ if now.is_some_and(|n| n <= due) => Fate::Due(due),
                            _ => Fate::Missed,
                        };
                        (id.as_str(), p, published, sub.name.as_str(), fate)
                    })
            })
        })
    }

    /// Whether a publication its peer never confirmed is excused: a peer cut apart by the time line may have had
    /// nobody to publish to, and one killed just after it was asked may never have published.
    fn unpublished_excused(&self, p: &Publication) -> bool {
        self.outages
            .disturbs(&p.publisher, p.commanded_at, p.commanded_at + self.deadline_us, self.recovery_us)
    }
}

/// A subscriber that missed messages, for the report.
struct Miss<'a> {
    subscriber: &'a str,
    missed: Vec<(&'a str, &'a str, Micros)>,
    expected: usize,
}

impl Check for Delivery {
    fn name(&self) -> &'static str {
        NAME
    }

    /// A network that publishes nothing by design (`publish: {messages: 0}` and no publishing step) has no
    /// deliveries to judge: the check is left out of its cases, as checks of roles no peer has are.
    fn applies(&self, case: &crate::cases::Case) -> bool {
        !case.publishes_nothing()
    }

    fn observe(&mut self, rec: &Recorded) {
        if self.outages.observe(rec) {
            return;
        }
        match &rec.what {
            Observation::Command { command, .. } => {
                if let Command::Publish { topic, id, .. } = &command.command {
                    let p = Publication {
                        publisher: rec.peer.clone(),
                        topic: topic.clone(),
                        at: None,
                        commanded_at: rec.at,
                    };
                    self.publications.push((id.clone(), p));
                }
                self.sent.observe(rec);
            }
            Observation::Event { line } => match &line.event {
                PeerEvent::Published { id, .. } => {
                    if let Some((_, p)) = self
                        .publications
                        .iter_mut()
                        .find(|(i, p)| i == id && p.publisher == rec.peer)
                    {
                        p.at = Some(line.ts);
                    }
                }
                PeerEvent::Error { cmd_id, message, .. }
                    if matches!(
                        self.sent.get(&rec.peer, cmd_id.as_ref()),
                        Some((CommandLine { command: Command::Publish { .. }, .. }, _))
                    ) =>
                {
                    self.publish_errors
                        .entry(rec.peer.clone())
                        .or_default()
                        .push(message.clone());
                }
                PeerEvent::Message { id, .. } => {
                    self.received
                        .entry((rec.peer.clone(), id.clone()))
                        .or_insert(line.ts);
                    self.last_delivery.insert(rec.peer.clone(), line.ts);
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn failing(&self, ctx: &Context, now: Micros) -> Option<String> {
        let (id, p, _, sub, _) = self.expected(ctx, Some(now)).find(|e| e.4 == Fate::Missed)?;
        Some(format!(
            "{} did not receive {id} from {} within {} ms",
            ctx.describe(sub),
            ctx.describe(&p.publisher),
            self.deadline_us / 1000
        ))
    }

    /// Every expected delivery not yet arrived whose deadline is ahead, and every publication not yet confirmed
    /// that may still be.
    fn pending(&self, ctx: &Context, now: Micros) -> Option<crate::peers::Pending> {
        let deliveries = self.expected(ctx, Some(now)).filter_map(|e| match e.4 {
            Fate::Due(until) => Some(until),
            _ => None,
        });
        let publications = self
            .publications
            .iter()
            .filter(|(_, p)| p.at.is_none() && !self.unpublished_excused(p))
            .map(|(_, p)| p.commanded_at + self.deadline_us);
        crate::peers::Pending::latest(now, deliveries.chain(publications), |n| {
            format!("{n} deliveries or publications not yet due")
        })
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let implementation = |name: &str| {
            ctx.case
                .peers
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.implementation.clone())
                .unwrap_or_default()
        };
        let mut latencies = Vec::new();
        // (publisher implementation, subscriber implementation) -> (delivered latencies, expected).
        let mut pairs: BTreeMap<(String, String), (Vec<Micros>, usize)> = BTreeMap::new();
        let mut misses: BTreeMap<&str, Miss> = BTreeMap::new();
        let mut unpublished = Vec::new();
        let mut excused = 0usize;
        for (id, p) in &self.publications {
            if p.at.is_some() {
                continue;
            }
            if self.unpublished_excused(p) {
                excused += 1;
            } else {
                unpublished.push((p.publisher.as_str(), id.as_str(), p.commanded_at));
            }
        }
        for (id, p, published, sub, fate) in self.expected(ctx, None) {
            if fate == Fate::Excused {
                excused += 1;
                continue;
            }
            let miss = misses.entry(sub).or_insert_with(|| Miss {
                subscriber: sub,
                missed: vec![],
                expected: 0,
            });
            miss.expected += 1;
            let pair = pairs
                .entry((implementation(&p.publisher), implementation(sub)))
                .or_default();
            pair.1 += 1;
            match fate {
                Fate::Delivered(latency) => {
                    latencies.push(latency);
                    pair.0.push(latency);
                }
                _ => miss.missed.push((p.publisher.as_str(), id, published)),
            }
        }
        let subscribers = misses.len();
        misses.retain(|_, m| !m.missed.is_empty());
        let expected: usize = pairs.values().map(|(_, n)| n).sum();
        latencies.sort_unstable();
        let mut evidence = vec![format!(
            "{} message(s) published, {} of {expected} deliveries within {} ms; latency {}",
            self.publications.len() - unpublished.len(),
            latencies.len(),
            self.deadline_us / 1000,
            latency_summary(&latencies)
        )];
        if !self.outages.is_empty() {
            evidence.push(format!(
                "{excused} deliveries not expected across the time line's faults (their span and {} ms of recovery after each)",
                self.recovery_us / 1000
            ));
            evidence.extend(self.recoveries(ctx));
        }
        for ((from, to), (delivered, n)) in &mut pairs {
            delivered.sort_unstable();
            evidence.push(format!(
                "  {from} -> {to}: {} of {n} delivered ({:.1}%), latency {}",
                delivered.len(),
                100.0 * delivered.len() as f64 / (*n).max(1) as f64,
                latency_summary(delivered)
            ));
        }

        let mut coverage = format!(
            "{} message(s) published, {} deliveries expected, {} made within {} ms",
            count(self.publications.len() - unpublished.len()),
            count(expected),
            count(latencies.len()),
            self.deadline_us / 1000
        );
        if excused > 0 {
            coverage.push_str(&format!("; {} not expected across faults", count(excused)));
        }
        if misses.is_empty() && unpublished.is_empty() {
            // A green delivery must have watched a message travel: no publication, or nobody to deliver to, is
            // no verdict.
            let why = if self.publications.is_empty() {
                Some("nothing was published: no publish command was sent to any peer".to_owned())
            } else if expected == 0 {
                Some(format!(
                    "{} message(s) published, but no other subscriber was there to receive them",
                    self.publications.len()
                ))
            } else {
                None
            };
            return match why {
                Some(why) => CheckResult::inconclusive(NAME, why, evidence),
                None => CheckResult::passed(NAME, evidence),
            }
            .covering(coverage);
        }

        let mut headline = Vec::new();
        for (publisher, id, at) in &unpublished {
            let errors = self
                .publish_errors
                .get(*publisher)
                .map(|e| e.join("; "))
                .unwrap_or_else(|| "no `published` event".into());
            evidence.push(format!(
                "{} could not publish {id} (asked at {}): {errors}",
                ctx.describe(publisher),
                clock(*at)
            ));
        }
        if !unpublished.is_empty() {
            headline.push(format!(
                "{} message(s) could not be published",
                unpublished.len()
            ));
        }
        // The subscriber that missed most leads: the others often only missed what it could no longer send.
        let mut misses: Vec<&Miss> = misses.values().collect();
        misses.sort_by_key(|m| std::cmp::Reverse(m.missed.len()));
        let mut lines = Vec::new();
        for m in misses.iter().copied() {
            let publishers: BTreeSet<&str> = m.missed.iter().map(|(p, _, _)| *p).collect();
            let (_, first_id, first_at) = m.missed[0];
            let last = self.last_delivery.get(m.subscriber).copied();
            let from = from_publishers(&m.missed, ctx, implementation);
            // A gap: the messages missed after the last delivery span longer than the gap threshold.
            let after: Vec<Micros> = m
                .missed
                .iter()
                .map(|(_, _, t)| *t)
                .filter(|t| last.is_none_or(|l| *t > l))
                .collect();
            let span = match (after.first(), after.last()) {
                (Some(a), Some(b)) => b - a,
                _ => 0,
            };
            if span >= self.gap_us {
                let since = last
                    .map(|t| format!("at {}", clock(t)))
                    .unwrap_or_else(|| "from the start".into());
                lines.push(format!(
                    "{} stopped receiving {since} while publishing went on: missed {} of {} messages from {from}",
                    ctx.describe(m.subscriber),
                    m.missed.len(),
                    m.expected
                ));
            } else {
                let stopped = match last {
                    Some(t) => format!("last delivery at {}", clock(t)),
                    None => "received nothing".into(),
                };
                lines.push(format!(
                    "{} missed {} of {} messages from {from}; {stopped}",
                    ctx.describe(m.subscriber),
                    m.missed.len(),
                    m.expected
                ));
            }
            evidence.push(lines.last().cloned().unwrap_or_default());
            evidence.push(format!(
                "{} first missed {first_id} published at {}; missed: {}",
                m.subscriber,
                clock(first_at),
                m.missed
                    .iter()
                    .map(|(_, id, _)| *id)
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
            for publisher in publishers {
                let n = m.missed.iter().filter(|(p, _, _)| *p == publisher).count();
                evidence.push(format!("  {publisher} -> {}: {n} missed", m.subscriber));
            }
        }
        // One line at any size: the count, and the worst subscriber; every one of them is in the evidence.
        match lines.len() {
            0 => {}
            1 => headline.append(&mut lines),
            k => headline.push(format!("{k} of {subscribers} subscribers missed messages; worst {}", lines[0])),
        }
        // The failure's moment: the first message that did not arrive.
        let first = misses
            .iter()
            .map(|m| m.missed[0].2)
            .chain(unpublished.iter().map(|u| u.2))
            .min();
        let involved: Vec<String> = misses
            .first()
            .map(|m| {
                std::iter::once(m.subscriber.to_owned())
                    .chain(m.missed.iter().map(|(p, _, _)| p.to_string()))
                    .collect()
            })
            .unwrap_or_else(|| unpublished.iter().map(|u| u.0.to_owned()).collect());
        // Missing within the deadline is a failure of time, also for a message that never came: a peer starved of
        // CPU falls behind and gossip gives up on what it could not forward in time. A publish the library refused
        // comes with its reason.
        let result = CheckResult::failed(NAME, headline.join("; "), evidence);
        let result = match unpublished.is_empty() {
            true => result.timing(),
            false => result,
        }
        .involving(involved)
            .covering(coverage);
        match first {
            Some(t) => result.at(t),
            None => result,
        }
    }
}

/// Whom a subscriber missed messages from: the publishers by name when they are one or two, else how many and the
/// implementation most of the missed messages came from.
fn from_publishers(missed: &[(&str, &str, Micros)], ctx: &Context, implementation: impl Fn(&str) -> String) -> String {
    let publishers: BTreeSet<&str> = missed.iter().map(|(p, _, _)| *p).collect();
    if publishers.len() <= 2 {
        return publishers.iter().map(|p| ctx.describe(p)).collect::<Vec<_>>().join(", ");
    }
    let mut by_implementation: BTreeMap<String, usize> = BTreeMap::new();
    for (p, _, _) in missed {
        *by_implementation.entry(implementation(p)).or_default() += 1;
    }
    let (mostly, n) = by_implementation.iter().max_by_key(|(_, n)| **n).expect("a publisher");
    let share = if *n == missed.len() { "all" } else { "mostly" };
    format!("{} publishers, {share} {mostly}", publishers.len())
}

pub(super) fn latency_summary(sorted: &[Micros]) -> String {
    if sorted.is_empty() {
        return "n/a".into();
    }
    let pick =
        |q: f64| sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1];
    let ms = |us: Micros| format!("{:.1} ms", us as f64 / 1000.0);
    format!(
        "p50 {}, p99 {}, max {}",
        ms(pick(0.50)),
        ms(pick(0.99)),
        ms(sorted[sorted.len() - 1])
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Kit;
    use crate::results::Status;

    fn run(events: &[Recorded], kit: &Kit) -> CheckResult {
        let mut c = Delivery::new(Settings::default());
        events.iter().for_each(|e| c.observe(e));
        c.verdict(&kit.context())
    }

    #[test]
    fn passes_when_everyone_gets_everything() {
        let kit = Kit::new(&["rust-1", "go-1", "go-2"]);
        let mut ev = Vec::new();
        ev.extend(kit.publish(1_000, "rust-1", "rust-1/0"));
        ev.push(kit.message(3_000, "go-1", "rust-1", "rust-1/0", 1_100));
        ev.push(kit.message(4_000, "go-2", "rust-1", "rust-1/0", 1_100));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        assert!(
            r.evidence[0].contains("2 of 2 deliveries"),
            "{:?}",
            r.evidence
        );
        assert_eq!(
            r.coverage.as_deref(),
            Some("1 message(s) published, 2 deliveries expected, 2 made within 10000 ms")
        );
    }

    #[test]
    fn nothing_is_expected_across_a_partition_until_its_recovery_is_over() {
        use crate::events::Fault;
        let kit = Kit::new(&["rust-1", "go-1"]);
        let s = 1_000_000;
        let mut ev = vec![
            kit.fault(10 * s, "rust-1", Fault::Partition { from: vec!["go-1".into()] }),
            kit.fault(10 * s, "go-1", Fault::Partition { from: vec!["rust-1".into()] }),
            kit.fault(20 * s, "rust-1", Fault::Heal),
            kit.fault(20 * s, "go-1", Fault::Heal),
        ];
        // Missed while apart, and within the recovery after the heal: excused.
        ev.extend(kit.publish(15 * s, "rust-1", "rust-1/0"));
        ev.extend(kit.publish(25 * s, "rust-1", "rust-1/1"));
        // Delivered after the heal: the first delivery across it.
        ev.extend(kit.publish(27 * s, "rust-1", "rust-1/2"));
        ev.push(kit.message(28 * s, "go-1", "rust-1", "rust-1/2", 27 * s));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        assert!(r.coverage.as_deref().unwrap().ends_with("; 2 not expected across faults"), "{r:?}");
        assert!(
            r.evidence.iter().any(|e| e.contains("healed at 00:00:20.000; first delivery across it 8 s later")),
            "{:?}",
            r.evidence
        );
        // Once the recovery is over, a miss is a miss again.
        ev.extend(kit.publish(31 * s, "rust-1", "rust-1/3"));
        ev.push(kit.stderr(45 * s, "rust-1", "later"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        assert!(r.message.unwrap().contains("missed 1 of"));
    }

    #[test]
    fn a_publish_the_peer_was_killed_before_making_is_no_failure() {
        use crate::events::Fault;
        let kit = Kit::new(&["rust-1", "go-1"]);
        let s = 1_000_000;
        let mut ev = vec![
            kit.publish(s, "rust-1", "rust-1/0")[0].clone(),
            kit.fault(s + 50_000, "rust-1", Fault::Kill),
            kit.fault(5 * s, "rust-1", Fault::Restart),
        ];
        ev.extend(kit.publish(20 * s, "rust-1", "rust-1/1"));
        ev.push(kit.message(20 * s + 1_000, "go-1", "rust-1", "rust-1/1", 20 * s));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        // Asked long before the kill (beyond the deadline), and never published: a failure.
        let early = vec![
            kit.publish(s, "rust-1", "rust-1/0")[0].clone(),
            kit.fault(30 * s, "rust-1", Fault::Kill),
        ];
        let r = run(&early, &kit);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        assert!(r.message.unwrap().contains("could not be published"));
    }

    #[test]
    fn nothing_published_is_inconclusive() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let r = run(&[], &kit);
        assert_eq!(r.status, Status::Inconclusive);
        assert!(r.message.unwrap().contains("nothing was published"));
        // Deliveries without any publication the runner asked for judge nothing either.
        let r = run(&[kit.message(3_000, "go-1", "rust-1", "x", 1_000)], &kit);
        assert_eq!(r.status, Status::Inconclusive);
    }

    #[test]
    fn a_lonely_publisher_is_inconclusive() {
        let kit = Kit::new(&["rust-1"]);
        let r = run(&kit.publish(1_000, "rust-1", "rust-1/0"), &kit);
        assert_eq!(r.status, Status::Inconclusive);
        assert!(
            r.message.unwrap().contains("no other subscriber"),
            "{:?}",
            r.coverage
        );
    }

    #[test]
    fn names_the_subscriber_that_stopped_receiving() {
        let kit = Kit::new(&["rust-1", "go-1", "go-2"]);
        let mut ev = Vec::new();
        for i in 0..4 {
            let t = 1_000_000 * (i + 1);
            let id = format!("rust-1/{i}");
            ev.extend(kit.publish(t, "rust-1", &id));
            ev.push(kit.message(t + 5_000, "go-1", "rust-1", &id, t));
            if i < 2 {
                ev.push(kit.message(t + 5_000, "go-2", "rust-1", &id, t));
            }
        }
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert_eq!(
            r.coverage.as_deref(),
            Some("4 message(s) published, 8 deliveries expected, 6 made within 10000 ms")
        );
        let msg = r.message.unwrap();
        assert!(
            msg.starts_with(
                "go-2 (go-libp2p v0.51.0) stopped receiving at 00:00:02.005 while publishing went on: missed 2 of 4 messages from rust-1 (rust-libp2p 0.57.1)"
            ),
            "{msg}"
        );
        assert!(!msg.contains("go-1 "), "{msg}");
    }

    #[test]
    fn a_subscriber_cut_off_is_said_to_have_stopped_with_the_moment() {
        let kit = Kit::new(&["rust-1", "rust-2", "go-1"]);
        let mut ev = Vec::new();
        for i in 0..6 {
            let t = 1_000_000 * (i + 1);
            let id = format!("go-1/{i}");
            ev.extend(kit.publish(t, "go-1", &id));
            ev.push(kit.message(t + 2_000, "rust-1", "go-1", &id, t));
            if i < 2 {
                ev.push(kit.message(t + 3_000, "rust-2", "go-1", &id, t));
            }
        }
        let r = run(&ev, &kit);
        let msg = r.message.unwrap();
        assert!(
            msg.starts_with("rust-2 (rust-libp2p 0.57.1) stopped receiving at 00:00:02.003 while publishing went on: missed 4 of 6 messages from go-1"),
            "{msg}"
        );
        assert_eq!(
            r.at_us,
            Some(3_000_100),
            "the publication of the first message it missed"
        );
        assert!(r.evidence.contains(&"  go -> rust: 8 of 12 delivered (66.7%), latency p50 1.9 ms, p99 2.9 ms, max 2.9 ms".to_string()), "{:?}", r.evidence);
    }

    #[test]
    fn scattered_losses_are_misses_not_a_stop() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = Vec::new();
        for i in 0..6 {
            let t = 1_000_000 * (i + 1);
            let id = format!("rust-1/{i}");
            ev.extend(kit.publish(t, "rust-1", &id));
            if i != 1 && i != 3 {
                ev.push(kit.message(t + 5_000, "go-1", "rust-1", &id, t));
            }
        }
        let msg = run(&ev, &kit).message.unwrap();
        assert!(
            msg.starts_with("go-1 (go-libp2p v0.51.0) missed 2 of 6 messages from rust-1"),
            "{msg}"
        );
        assert!(msg.ends_with("last delivery at 00:00:06.005"), "{msg}");
    }

    #[test]
    fn late_delivery_is_a_miss() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = Vec::new();
        ev.extend(kit.publish(1_000, "rust-1", "rust-1/0"));
        ev.push(kit.message(11_000_000, "go-1", "rust-1", "rust-1/0", 1_100));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert!(r.timing, "a miss is a failure of time");
    }

    #[test]
    fn a_failed_publish_fails_with_the_library_error() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.command(
                1_000,
                "rust-1",
                r#"{"cmd":"publish","cmd_id":"c4","topic":"meshgate","id":"rust-1/0","size":64}"#,
            ),
            kit.event(
                1_100,
                "rust-1",
                PeerEvent::Error {
                    cmd: Some("publish".into()),
                    cmd_id: Some("c4".into()),
                    message: "NoPeersSubscribedToTopic".into(),
                },
            ),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert!(!r.timing, "the library said why");
        assert!(
            r.evidence
                .iter()
                .any(|l| l.contains("NoPeersSubscribedToTopic")),
            "{:?}",
            r.evidence
        );
    }

    #[test]
    fn while_running_only_overdue_messages_fail() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut c = Delivery::new(Settings::default());
        kit.publish(1_000_000, "rust-1", "rust-1/0")
            .iter()
            .for_each(|e| c.observe(e));
        assert_eq!(
            c.failing(&kit.context(), 2_000_000),
            None,
            "not overdue yet"
        );
        let late = c.failing(&kit.context(), 12_000_000).unwrap();
        assert!(
            late.starts_with("go-1 (go-libp2p v0.51.0) did not receive rust-1/0 from rust-1"),
            "{late}"
        );
    }

    #[test]
    fn the_case_waits_for_deliveries_until_they_arrive_or_are_overdue() {
        let kit = Kit::new(&["rust-1", "go-1", "go-2"]);
        let mut c = Delivery::new(Settings::default());
        let s = 1_000_000;
        kit.publish(s, "rust-1", "rust-1/0").iter().for_each(|e| c.observe(e));
        // Two deliveries due 10 s after the publication (the default deadline).
        let p = c.pending(&kit.context(), s + 5_000).unwrap();
        assert_eq!((p.until, p.what.as_str()), (11 * s + 100, "2 deliveries or publications not yet due"));
        c.observe(&kit.message(s + 3_000, "go-1", "rust-1", "rust-1/0", s));
        assert!(c.pending(&kit.context(), s + 5_000).unwrap().what.starts_with("1 "));
        // All arrived: nothing to wait for, the drain is not waited out.
        c.observe(&kit.message(s + 4_000, "go-2", "rust-1", "rust-1/0", s));
        assert_eq!(c.pending(&kit.context(), s + 5_000), None);
        // Overdue is no longer waited for: it is a miss.
        let mut late = Delivery::new(Settings::default());
        kit.publish(s, "rust-1", "rust-1/0").iter().for_each(|e| late.observe(e));
        assert_eq!(late.pending(&kit.context(), 12 * s), None);
        assert!(late.failing(&kit.context(), 12 * s).is_some());
        // A publish command not yet confirmed may still be published.
        let mut asked = Delivery::new(Settings::default());
        asked.observe(&kit.publish(s, "rust-1", "rust-1/0")[0]);
        assert_eq!(asked.pending(&kit.context(), 2 * s).map(|p| p.until), Some(11 * s));
    }

    #[test]
    fn at_any_size_the_message_is_one_line_with_counts_and_the_worst() {
        let kit = Kit::many(50, 50);
        let s = 1_000_000;
        let mut ev = Vec::new();
        for round in 0..2 {
            for p in 1..=50 {
                let (publisher, id) = (format!("rust-{p}"), format!("rust-{p}/{round}"));
                let at = (round * 50 + p) as Micros * 10_000 + s;
                ev.extend(kit.publish(at, &publisher, &id));
                for r in kit.case.peers.iter().map(|p| p.name.as_str()).filter(|r| *r != publisher) {
                    // go-34 receives nothing; go-1 to go-30 each miss the first round of rust-1.
                    let first_of_rust_1 = p == 1 && round == 0;
                    let n = r.strip_prefix("go-").and_then(|n| n.parse::<usize>().ok());
                    if r == "go-34" || (first_of_rust_1 && n.is_some_and(|n| n <= 30)) {
                        continue;
                    }
                    ev.push(kit.message(at + 2_000, r, &publisher, &id, at));
                }
            }
        }
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        let msg = r.message.unwrap();
        assert_eq!(
            msg,
            "31 of 100 subscribers missed messages; worst go-34 (go-libp2p v0.51.0) missed 100 of 100 messages from \
             50 publishers, all rust; received nothing"
        );
        assert!(msg.chars().count() <= crate::results::MAX_MESSAGE);
        // The complete list is the evidence: every subscriber that missed, and what.
        assert!(r.evidence.iter().any(|e| e.starts_with("go-29 (go-libp2p v0.51.0) missed 1 of 100 messages from rust-1")), "{:?}", r.evidence);
        assert!(r.evidence.iter().any(|e| e.starts_with("go-34 first missed rust-1/0")));
    }

    #[test]
    fn percentiles() {
        assert_eq!(
            latency_summary(&[1000, 2000, 3000, 4000]),
            "p50 2.0 ms, p99 4.0 ms, max 4.0 ms"
        );
        assert_eq!(latency_summary(&[]), "n/a");
    }
}
