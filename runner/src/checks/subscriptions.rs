//! `subscriptions`: every subscriber of a topic is seen as subscribed by every peer connected to it, and nobody
//! sees an unsubscribe its sender did not ask for. A peer that "forgets" a remote's subscription (as go-libp2p-pubsub
//! can when a second connection replaces the first stream) stops sending it messages without any error.
//!
//! What is expected comes from the runner's own record of the subscribe and unsubscribe commands it sent, never
//! from what peers claim. Leaving is scoped: a peer told to disconnect from X is excused for the pair with X only,
//! and one told to unsubscribe from T for T only ([`Leaving`], shared with `mesh`).

use std::collections::{BTreeMap, BTreeSet};


use super::evidence::count;
use super::{clock, Check, Context};
use crate::events::{Command, Fault, Micros, Observation, PeerEvent, Recorded};
pub use crate::matrix::checks::subscriptions::Settings;
use crate::peers::Pending;
use crate::results::CheckResult;

pub const NAME: &str = "subscriptions";

/// An `unsubscribed` whose connection closes within this is explained by the closing: libraries report the
/// remote leaving the topic as the connection goes, sometimes just before the `connection_closed` event.
const CLOSING_GRACE_US: Micros = 1_000_000;

/// Who was told to leave what, from the runner's record of its own commands and of what it did to peers. Scoped:
/// leaving one pair or one topic excuses that pair or that topic only.
#[derive(Default)]
pub(super) struct Leaving {
    /// (peer, topic) -> its subscribe (`true`) and unsubscribe (`false`) commands, in order.
    topic_commands: BTreeMap<(String, String), Vec<(Micros, bool)>>,
    /// Every disconnect command: when, who was told, and the peer id it named (`None`: every peer).
    disconnects: Vec<(Micros, String, Option<String>)>,
    /// When a peer was told to stop, exited, was killed or cut off, until the time line restarted it: then it is
    /// gone from every pair.
    gone: BTreeMap<String, Vec<(Micros, Option<Micros>)>>,
    /// When the time line restarted each peer.
    restarts: BTreeMap<String, Vec<Micros>>,
}

impl Leaving {
    /// Takes in a record; true when it was a command or incident that changes who is expected where.
    pub fn observe(&mut self, rec: &Recorded) -> bool {
        match &rec.what {
            Observation::Command { command, .. } => {
                match &command.command {
                    Command::Subscribe { topic } | Command::Unsubscribe { topic } => {
                        let joins = matches!(command.command, Command::Subscribe { .. });
                        self.topic_commands
                            .entry((rec.peer.clone(), topic.clone()))
                            .or_default()
                            .push((rec.at, joins));
                    }
                    Command::Disconnect { peer } => {
                        self.disconnects.push((rec.at, rec.peer.clone(), peer.clone()))
                    }
                    Command::Stop => self.leaves(&rec.peer, rec.at),
                    _ => return false,
                }
                true
            }
            Observation::Fault {
                fault: Fault::Kill, ..
            } => {
                // Its subscriptions died with its process: after a restart it subscribes anew, and is expected to
                // be seen doing so.
                for ((peer, _), cmds) in self.topic_commands.iter_mut() {
                    if peer == &rec.peer && cmds.last().is_some_and(|(_, on)| *on) {
                        cmds.push((rec.at, false));
                    }
                }
                self.leaves(&rec.peer, rec.at);
                true
            }
            Observation::Incident { .. } | Observation::Exited { .. } | Observation::Killed { .. } => {
                self.leaves(&rec.peer, rec.at);
                true
            }
            Observation::Fault {
                fault: Fault::Restart,
                ..
            } => {
                if let Some((_, end @ None)) = self.gone.get_mut(&rec.peer).and_then(|g| g.last_mut()) {
                    *end = Some(rec.at);
                }
                self.restarts.entry(rec.peer.clone()).or_default().push(rec.at);
                true
            }
            _ => false,
        }
    }

    /// How many subscribe commands the runner sent.
    pub fn subscribes(&self) -> usize {
        self.topic_commands
            .values()
            .flatten()
            .filter(|(_, on)| *on)
            .count()
    }

    /// Every topic some peer was told to subscribe to.
    pub fn topics(&self) -> BTreeSet<&str> {
        self.topic_commands
            .keys()
            .map(|(_, t)| t.as_str())
            .collect()
    }

    fn leaves(&mut self, peer: &str, at: Micros) {
        let periods = self.gone.entry(peer.to_owned()).or_default();
        if periods.last().is_none_or(|(_, end)| end.is_some()) {
            periods.push((at, None));
        }
    }

    /// When `peer` next left every pair (told to stop, exited, killed, cut off) at or after `from`, or was gone
    /// already then.
    pub fn gone_after(&self, peer: &str, from: Micros) -> Option<Micros> {
        self.gone
            .get(peer)?
            .iter()
            .find(|(_, end)| end.is_none_or(|e| e > from))
            .map(|(start, _)| (*start).max(from))
    }

    /// Whether `peer` was restarted by the time line at most `within` before `at`: its remotes then drop what they
    /// held of its dead process (streams, and with them its subscriptions) while they learn of the new one.
    pub fn restarted_within(&self, peer: &str, at: Micros, within: Micros) -> bool {
        self.restarts
            .get(peer)
            .into_iter()
            .flatten()
            .any(|r| *r <= at && at - r <= within)
    }

    /// Whether `peer` is gone at `at` (and not restarted since).
    pub fn gone_by(&self, peer: &str, at: Micros) -> bool {
        self.gone
            .get(peer)
            .into_iter()
            .flatten()
            .any(|(start, end)| *start <= at && end.is_none_or(|e| e > at))
    }

    /// The times `peer` was told to be subscribed to `topic`: from a subscribe to the next unsubscribe (or on).
    pub fn intervals(&self, peer: &str, topic: &str) -> Vec<(Micros, Option<Micros>)> {
        let mut out: Vec<(Micros, Option<Micros>)> = Vec::new();
        for (at, on) in self
            .topic_commands
            .get(&(peer.to_owned(), topic.to_owned()))
            .into_iter()
            .flatten()
        {
            match (on, out.last_mut()) {
                (true, Some((_, None))) => {}
                (true, _) => out.push((*at, None)),
                (false, Some(last @ (_, None))) => last.1 = Some(*at),
                (false, _) => {}
            }
        }
        out
    }

    /// Since when `peer` is told to be subscribed to `topic` at `at`, if it is.
    pub fn subscribed_since(&self, peer: &str, topic: &str, at: Micros) -> Option<Micros> {
        self.intervals(peer, topic)
            .into_iter()
            .find(|(from, until)| *from <= at && until.is_none_or(|u| u > at))
            .map(|(from, _)| from)
    }

    /// Whether `peer`'s last command for `topic` by `at` was to unsubscribe.
    pub fn told_unsubscribed(&self, peer: &str, topic: &str, at: Micros) -> bool {
        self.topic_commands
            .get(&(peer.to_owned(), topic.to_owned()))
            .and_then(|cmds| cmds.iter().rfind(|(t, _)| *t <= at))
            .is_some_and(|(_, on)| !on)
    }

    /// The first disconnect at or after `from` that cuts the pair `a`–`b`: either told to disconnect from the
    /// other, or from every peer.
    pub fn cut(&self, ctx: &Context, a: &str, b: &str, from: Micros) -> Option<Micros> {
        self.disconnects
            .iter()
            .filter(|(at, _, _)| *at >= from)
            .filter(|(_, sender, target)| {
                let other = match sender.as_str() {
                    s if s == a => b,
                    s if s == b => a,
                    _ => return false,
                };
                target.as_ref().is_none_or(|id| ctx.name_of(id) == other)
            })
            .map(|(at, _, _)| *at)
            .min()
    }
}

/// The connections an observer holds to one remote, and the periods during which it held at least one.
#[derive(Default)]
struct Pair {
    open: BTreeSet<String>,
    periods: Vec<(Micros, Option<Micros>)>,
}

impl Pair {
    /// The connected period containing `at`, as (start, end).
    fn period_at(&self, at: Micros) -> Option<(Micros, Option<Micros>)> {
        self.periods
            .iter()
            .copied()
            .find(|(start, end)| *start <= at && end.is_none_or(|e| e > at))
    }
}

pub struct Subscriptions {
    within_us: Micros,
    leaving: Leaving,
    /// (observer, remote id) -> its connections to the remote.
    pairs: BTreeMap<(String, String), Pair>,
    /// (observer, remote id, topic) -> what the observer reported of the remote in the topic: subscribed (`true`)
    /// or unsubscribed, in order.
    views: BTreeMap<(String, String, String), Vec<(Micros, bool)>>,
    /// Every `unsubscribed` reported: (when, observer, remote id, topic).
    unsubscribes: Vec<(Micros, String, String, String)>,
    last: Micros,
}

impl Subscriptions {
    pub fn new(settings: Settings) -> Self {
        Self {
            within_us: settings.within.as_micros() as Micros,
            leaving: Leaving::default(),
            pairs: BTreeMap::new(),
            views: BTreeMap::new(),
            unsubscribes: Vec::new(),
            last: 0,
        }
    }

    /// Whether the observer's view of the remote in the topic at `at` is "subscribed", from a report made at or
    /// after `since` (so that it is news of this subscription, not of an earlier one).
    fn sees_subscribed(&self, key: &(String, String, String), since: Micros, at: Micros) -> bool {
        self.views
            .get(key)
            .and_then(|v| v.iter().rfind(|(t, _)| *t <= at))
            .is_some_and(|(t, on)| *on && *t >= since)
    }
}

/// One thing wrong: when, the line, who.
type Problem = (Micros, String, Vec<String>);

/// While the case runs, a problem is announced only once this long has passed since it: an `unsubscribed` may
/// still be explained by its connection closing (within [`CLOSING_GRACE_US`]), and a peer's report of that
/// closing may arrive a little after other peers' later events.
const SETTLE_US: Micros = CLOSING_GRACE_US + 1_000_000;

/// What the check found over what it observed.
struct Judged {
    problems: Vec<Problem>,
    /// How many of the problems are failures of time: subscriptions not seen within the window, and unsubscribes
    /// nobody asked for (see below).
    of_time: usize,
    expected: usize,
    seen: usize,
    judged_pairs: BTreeSet<(String, String)>,
    /// When what is not judged yet would be: a subscription due in a connected period still going on, an
    /// unsubscribe its connection's closing may still explain.
    pending: Vec<Micros>,
}

impl Subscriptions {
    /// Every problem over what was observed up to `now` (the end of the record, or later while the case runs),
    /// and what was judged.
    fn judge(&self, ctx: &Context, now: Micros) -> Judged {
        let leaving = &self.leaving;
        let mut problems: Vec<Problem> = Vec::new();
        let mut pending = Vec::new();
        let mut of_time = 0;

        // An unsubscribe seen while the pair stays connected must have been asked of the remote, for that topic.
        for (at, observer, remote_id, topic) in &self.unsubscribes {
            let remote = ctx.name_of(remote_id);
            let Some((start, end)) = self
                .pairs
                .get(&(observer.clone(), remote_id.clone()))
                .and_then(|p| p.period_at(*at))
            else {
                continue;
            };
            let closing = end.is_some_and(|e| e <= at + CLOSING_GRACE_US);
            let excused = closing
                || leaving.told_unsubscribed(&remote, topic, *at)
                || leaving.gone_by(&remote, *at)
                || leaving.gone_by(observer, *at)
                || leaving.restarted_within(&remote, *at, self.within_us)
                || leaving
                    .cut(ctx, observer, &remote, start)
                    .is_some_and(|d| d <= *at);
            if !excused && end.is_none() {
                pending.push(at + CLOSING_GRACE_US + 1);
            }
            if !excused {
                // A library drops a remote from its topics when their gossipsub stream dies (go-libp2p-pubsub
                // reports that as the remote leaving) and a stream dies when its negotiation or a write stalls past
                // the library's time limits (10 s for a substream's negotiation in rust-libp2p): on a host that
                // stalls for seconds that is the host's doing. On one that keeps up it stays a failure.
                of_time += 1;
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

        // Every subscription the runner asked for, in every period its subscriber was connected to an observer
        // long enough: the observer must see it within `within`.
        let (mut expected, mut seen) = (0usize, 0usize);
        let mut judged_pairs: BTreeSet<(String, String)> = BTreeSet::new();
        for ((observer, remote_id), pair) in &self.pairs {
            let remote = ctx.name_of(remote_id);
            for topic in leaving.topics() {
                for (subscribed, unsubscribed) in leaving.intervals(&remote, topic) {
                    for (connected, disconnected) in &pair.periods {
                        let start = subscribed.max(*connected);
                        let due = start + self.within_us;
                        let ended = [
                            unsubscribed,
                            *disconnected,
                            leaving.gone_after(observer, start),
                            leaving.gone_after(&remote, start),
                            leaving.cut(ctx, observer, &remote, *connected),
                        ]
                        .into_iter()
                        .flatten()
                        .min();
                        let end = ended.unwrap_or(now).min(now);
                        let key = (observer.clone(), remote_id.clone(), topic.to_owned());
                        // A period shorter than `within` can still show the subscription seen: that is judged;
                        // only an unseen one in a period too short to expect it is not.
                        let seen_in_time = self.sees_subscribed(&key, subscribed, due.min(end));
                        if end <= due && !seen_in_time {
                            if ended.is_none() {
                                pending.push(due + 1);
                            }
                            continue;
                        }
                        expected += 1;
                        judged_pairs.insert(if *observer < remote {
                            (observer.clone(), remote.clone())
                        } else {
                            (remote.clone(), observer.clone())
                        });
                        if seen_in_time {
                            seen += 1;
                            continue;
                        }
                        of_time += 1;
                        problems.push((
                            due,
                            format!(
                                "{} never saw {} subscribe to {topic} within {} ms (subscribed at {}, connected from {})",
                                ctx.describe(observer),
                                ctx.describe(&remote),
                                self.within_us / 1000,
                                clock(subscribed),
                                clock(*connected)
                            ),
                            vec![observer.clone(), remote.clone()],
                        ));
                    }
                }
            }
        }
        Judged {
            problems,
            of_time,
            expected,
            seen,
            judged_pairs,
            pending,
        }
    }
}


impl Check for Subscriptions {
    fn name(&self) -> &'static str {
        NAME
    }

    fn applies(&self, case: &crate::cases::Case) -> bool {
        super::has_edges(case)
    }

    fn observe(&mut self, rec: &Recorded) {
        self.last = self.last.max(rec.time());
        self.leaving.observe(rec);
        if let Observation::Fault {
            fault: Fault::Kill, ..
        } = &rec.what
        {
            // The killed process's connections ended with it; a restarted one reports its own.
            for ((observer, _), pair) in self.pairs.iter_mut() {
                if observer == &rec.peer && !pair.open.is_empty() {
                    pair.open.clear();
                    if let Some(last) = pair.periods.last_mut() {
                        last.1 = Some(rec.at);
                    }
                }
            }
            return;
        }
        let Observation::Event { line } = &rec.what else {
            return;
        };
        match &line.event {
            PeerEvent::ConnectionOpened {
                remote, conn_id, ..
            } => {
                let pair = self
                    .pairs
                    .entry((rec.peer.clone(), remote.clone()))
                    .or_default();
                if pair.open.is_empty() {
                    pair.periods.push((line.ts, None));
                }
                pair.open.insert(conn_id.clone());
            }
            PeerEvent::ConnectionClosed {
                remote, conn_id, ..
            } => {
                if let Some(pair) = self.pairs.get_mut(&(rec.peer.clone(), remote.clone())) {
                    if pair.open.remove(conn_id) && pair.open.is_empty() {
                        if let Some(last) = pair.periods.last_mut() {
                            last.1 = Some(line.ts);
                        }
                    }
                }
            }
            PeerEvent::Subscribed { remote, topic } | PeerEvent::Unsubscribed { remote, topic } => {
                let on = matches!(line.event, PeerEvent::Subscribed { .. });
                self.views
                    .entry((rec.peer.clone(), remote.clone(), topic.clone()))
                    .or_default()
                    .push((line.ts, on));
                if !on {
                    self.unsubscribes.push((
                        line.ts,
                        rec.peer.clone(),
                        remote.clone(),
                        topic.clone(),
                    ));
                }
            }
            _ => {}
        }
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let Judged {
            mut problems,
            of_time,
            expected,
            seen,
            judged_pairs,
            ..
        } = self.judge(ctx, self.last);
        let leaving = &self.leaving;
        let coverage = format!(
            "{} subscriptions expected over {} connected pair(s), {} seen within {} ms; {} unsubscribe(s) reported",
            count(expected),
            count(judged_pairs.len()),
            count(seen),
            self.within_us / 1000,
            count(self.unsubscribes.len())
        );

        problems.sort_by_key(|p| p.0);
        let Some((at, first, involved)) = problems.first() else {
            let why = match (leaving.subscribes(), expected) {
                (0, _) => Some("nothing subscribed: the runner sent no subscribe command".to_owned()),
                (n, 0) => Some(format!(
                    "{n} subscribe command(s) sent, but no subscriber stayed connected to another peer for {} ms: no subscription to expect",
                    self.within_us / 1000
                )),
                _ => None,
            };
            let evidence = vec![format!(
                "{} subscription(s) seen across {} connected pair(s)",
                seen,
                judged_pairs.len()
            )];
            return match why {
                Some(why) => CheckResult::inconclusive(NAME, why, evidence),
                None => CheckResult::passed(NAME, evidence),
            }
            .covering(coverage);
        };
        let more = if problems.len() > 1 {
            format!(" ({} problems in all)", problems.len())
        } else {
            String::new()
        };
        let result = CheckResult::failed(
            NAME,
            format!("{first}{more}"),
            problems.iter().map(|p| p.1.clone()).collect(),
        );
        match of_time == problems.len() {
            true => result.timing(),
            false => result,
        }
        .at(*at)
        .involving(involved.clone())
        .covering(coverage)
    }

    /// A subscription not seen yet in a connected period shorter than `within` so far, and an unsubscribe that
    /// the closing of its connection may still explain.
    fn pending(&self, ctx: &Context, now: Micros) -> Option<Pending> {
        let judged = self.judge(ctx, now.max(self.last));
        Pending::latest(now, judged.pending, |n| format!("{n} subscription(s) to be seen or unsubscribe(s) explained"))
    }

    /// Only problems that later observations can no longer excuse (see [`SETTLE_US`]).
    fn failing(&self, ctx: &Context, now: Micros) -> Option<String> {
        self.judge(ctx, self.last)
            .problems
            .into_iter()
            .filter(|(at, _, _)| at + SETTLE_US <= now)
            .min_by_key(|(at, _, _)| *at)
            .map(|(_, line, _)| line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Kit, TOPIC};
    use crate::results::Status;

    fn run(events: &[Recorded], kit: &Kit) -> CheckResult {
        let mut c = Subscriptions::new(Settings::default());
        events.iter().for_each(|e| c.observe(e));
        c.verdict(&kit.context())
    }

    /// rust-1 and go-1 connected, both subscribed to the topic, each seeing the other.
    fn subscribed_pair(kit: &Kit) -> Vec<Recorded> {
        let mut ev = kit.connect(0, "rust-1", "go-1").to_vec();
        ev.extend([
            kit.subscribe(10, "rust-1", TOPIC),
            kit.subscribe(10, "go-1", TOPIC),
            kit.remote_sub(20, "rust-1", "go-1", TOPIC, true),
            kit.remote_sub(20, "go-1", "rust-1", TOPIC, true),
        ]);
        ev
    }

    #[test]
    fn the_case_waits_for_a_subscription_until_it_is_due() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut c = Subscriptions::new(Settings::default());
        let mut ev = kit.connect(0, "rust-1", "go-1").to_vec();
        ev.extend([kit.subscribe(10, "rust-1", TOPIC), kit.subscribe(10, "go-1", TOPIC)]);
        ev.iter().for_each(|e| c.observe(e));
        // Neither has seen the other subscribe yet: both due 3 s after the subscriptions.
        let p = c.pending(&kit.context(), 1_000_000).unwrap();
        assert_eq!((p.until, p.what.starts_with("2 ")), (3_000_011, true), "{p:?}");
        c.observe(&kit.remote_sub(20, "rust-1", "go-1", TOPIC, true));
        c.observe(&kit.remote_sub(20, "go-1", "rust-1", TOPIC, true));
        assert_eq!(c.pending(&kit.context(), 1_000_000), None);
        // An unsubscribe nobody asked for waits for the closing that may still explain it.
        c.observe(&kit.remote_sub(5_000_000, "go-1", "rust-1", TOPIC, false));
        assert_eq!(c.pending(&kit.context(), 5_100_000).map(|p| p.until), Some(6_000_001));
    }

    #[test]
    fn seen_subscriptions_pass_and_say_what_was_judged() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = subscribed_pair(&kit);
        ev.push(kit.stderr(10_000_000, "rust-1", "later"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        assert_eq!(
            r.coverage.as_deref(),
            Some("2 subscriptions expected over 1 connected pair(s), 2 seen within 3000 ms; 0 unsubscribe(s) reported")
        );
    }

    #[test]
    fn nothing_subscribed_is_inconclusive() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let r = run(&[], &kit);
        assert_eq!(r.status, Status::Inconclusive);
        assert!(r.message.unwrap().starts_with("nothing subscribed"));
        // Subscribed, but never connected to anyone: nothing to expect either.
        let r = run(
            &[
                kit.subscribe(10, "rust-1", TOPIC),
                kit.stderr(10_000_000, "rust-1", "later"),
            ],
            &kit,
        );
        assert_eq!(r.status, Status::Inconclusive);
        assert!(r
            .message
            .unwrap()
            .contains("no subscriber stayed connected"));
    }

    #[test]
    fn an_unrequested_unsubscribe_fails() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = subscribed_pair(&kit);
        ev.push(kit.remote_sub(1_000_000, "go-1", "rust-1", TOPIC, false));
        ev.push(kit.stderr(10_000_000, "rust-1", "later"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert!(r.timing, "a dead stream drops a remote from its topics: a failure of time on a stalling host");
        assert!(r.message.unwrap().starts_with("go-1 (go-libp2p v0.51.0) saw rust-1 (rust-libp2p 0.57.1) unsubscribe from meshgate at 00:00:01.000, which it was never asked to do"));
    }

    #[test]
    fn an_unsubscribe_from_another_topic_excuses_nothing_here() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = subscribed_pair(&kit);
        ev.push(kit.unsubscribe(500_000, "rust-1", "other"));
        ev.push(kit.remote_sub(1_000_000, "go-1", "rust-1", TOPIC, false));
        ev.push(kit.stderr(10_000_000, "rust-1", "later"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        assert!(r.message.unwrap().contains("unsubscribe from meshgate"));

        // Asked for this topic: expected.
        let mut ev = subscribed_pair(&kit);
        ev.push(kit.unsubscribe(500_000, "rust-1", TOPIC));
        ev.push(kit.remote_sub(1_000_000, "go-1", "rust-1", TOPIC, false));
        ev.push(kit.stderr(10_000_000, "rust-1", "later"));
        assert_eq!(run(&ev, &kit).status, Status::Passed);
    }

    #[test]
    fn a_disconnect_from_one_peer_excuses_that_pair_only() {
        let kit = Kit::new(&["rust-1", "go-1", "go-2"]);
        let mut ev = kit.connect(0, "rust-1", "go-1").to_vec();
        ev.extend(kit.connect(0, "rust-1", "go-2"));
        for p in ["rust-1", "go-1", "go-2"] {
            ev.push(kit.subscribe(10, p, TOPIC));
        }
        for (a, b) in [("rust-1", "go-1"), ("rust-1", "go-2")] {
            ev.push(kit.remote_sub(20, a, b, TOPIC, true));
            ev.push(kit.remote_sub(20, b, a, TOPIC, true));
        }
        // rust-1 is told to leave go-1; go-1 sees it go while the connection is still up (for seconds: only the
        // disconnect explains it).
        ev.push(kit.disconnect(1_000_000, "rust-1", Some("go-1")));
        ev.push(kit.remote_sub(1_100_000, "go-1", "rust-1", TOPIC, false));
        ev.extend(kit.disconnect_pair(3_000_000, "rust-1", "go-1"));
        ev.push(kit.stderr(10_000_000, "rust-1", "later"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");

        // go-2 seeing rust-1 unsubscribe is not excused by rust-1 leaving go-1.
        ev.push(kit.remote_sub(2_000_000, "go-2", "rust-1", TOPIC, false));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        assert!(
            r.message.unwrap().starts_with(
                "go-2 (go-libp2p v0.51.0) saw rust-1 (rust-libp2p 0.57.1) unsubscribe from meshgate at 00:00:02.000"
            )
        );
    }

    #[test]
    fn a_subscription_never_announced_fails_and_asked_unsubscribes_pass() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = kit.connect(0, "rust-1", "go-1").to_vec();
        ev.extend([
            kit.subscribe(10, "rust-1", TOPIC),
            kit.subscribe(10, "go-1", TOPIC),
            kit.remote_sub(20, "go-1", "rust-1", TOPIC, true),
        ]);
        ev.push(kit.unsubscribe(5_000_000, "rust-1", TOPIC));
        ev.push(kit.remote_sub(5_100_000, "go-1", "rust-1", TOPIC, false));
        ev.push(kit.stderr(10_000_000, "rust-1", "later"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert!(r.timing, "a subscription not seen within the window is a failure of time");
        let msg = r.message.unwrap();
        assert!(msg.starts_with("rust-1 (rust-libp2p 0.57.1) never saw go-1 (go-libp2p v0.51.0) subscribe to meshgate within 3000 ms (subscribed at 00:00:00.000"), "{msg}");
        assert!(
            !msg.contains("problems in all"),
            "the asked-for unsubscribe is no problem: {msg}"
        );
        assert_eq!(
            r.coverage.as_deref(),
            Some("2 subscriptions expected over 1 connected pair(s), 1 seen within 3000 ms; 1 unsubscribe(s) reported")
        );
    }

    #[test]
    fn a_late_or_stale_sighting_is_no_sighting() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        // Seen only after `within`.
        let mut ev = kit.connect(0, "rust-1", "go-1").to_vec();
        ev.push(kit.subscribe(10, "go-1", TOPIC));
        ev.push(kit.remote_sub(4_000_000, "rust-1", "go-1", TOPIC, true));
        ev.push(kit.stderr(10_000_000, "rust-1", "later"));
        assert_eq!(run(&ev, &kit).status, Status::Failed);
        // Resubscribed after an asked-for unsubscribe: the old sighting is not news of the new subscription.
        let mut ev = kit.connect(0, "rust-1", "go-1").to_vec();
        ev.push(kit.subscribe(10, "go-1", TOPIC));
        ev.push(kit.remote_sub(20, "rust-1", "go-1", TOPIC, true));
        ev.push(kit.unsubscribe(1_000_000, "go-1", TOPIC));
        ev.push(kit.subscribe(2_000_000, "go-1", TOPIC));
        ev.push(kit.stderr(10_000_000, "rust-1", "later"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        assert!(r.message.unwrap().contains("subscribed at 00:00:02.000"));
    }

    #[test]
    fn a_connection_that_closes_explains_its_unsubscribe() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = subscribed_pair(&kit);
        ev.push(kit.remote_sub(5_000_000, "go-1", "rust-1", TOPIC, false));
        ev.extend(kit.disconnect_pair(5_300_000, "rust-1", "go-1"));
        ev.push(kit.stderr(10_000_000, "rust-1", "later"));
        assert_eq!(run(&ev, &kit).status, Status::Passed);
    }

    #[test]
    fn while_running_an_unsubscribe_is_not_announced_before_its_closing_could_explain_it() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut c = Subscriptions::new(Settings::default());
        let mut ev = subscribed_pair(&kit);
        ev.push(kit.remote_sub(5_000_000, "go-1", "rust-1", TOPIC, false));
        ev.iter().for_each(|e| c.observe(e));
        // Just after the unsubscribe, the connection may still close and explain it: nothing is certain yet.
        assert_eq!(c.failing(&kit.context(), 5_500_000), None);
        // The connection closes within the grace: nothing was ever wrong.
        kit.disconnect_pair(5_300_000, "rust-1", "go-1")
            .iter()
            .for_each(|e| c.observe(e));
        assert_eq!(c.failing(&kit.context(), 9_000_000), None);

        // Without the closing, the same unsubscribe is announced once it has settled.
        let mut c = Subscriptions::new(Settings::default());
        let mut ev = subscribed_pair(&kit);
        ev.push(kit.remote_sub(5_000_000, "go-1", "rust-1", TOPIC, false));
        ev.iter().for_each(|e| c.observe(e));
        let line = c.failing(&kit.context(), 5_000_000 + SETTLE_US).expect("settled");
        assert!(line.contains("never asked to do"), "{line}");
    }

    #[test]
    fn leaving_scopes() {
        let kit = Kit::new(&["rust-1", "go-1", "go-2"]);
        let mut l = Leaving::default();
        for r in [
            kit.subscribe(10, "go-1", TOPIC),
            kit.subscribe(10, "go-1", "other"),
            kit.unsubscribe(100, "go-1", "other"),
            kit.disconnect(200, "rust-1", Some("go-1")),
            kit.disconnect(300, "go-2", None),
        ] {
            assert!(l.observe(&r));
        }
        let ctx = kit.context();
        assert!(l.told_unsubscribed("go-1", "other", 150));
        assert!(!l.told_unsubscribed("go-1", TOPIC, 150));
        assert_eq!(l.subscribed_since("go-1", TOPIC, 150), Some(10));
        assert_eq!(l.subscribed_since("go-1", "other", 150), None);
        assert_eq!(l.cut(&ctx, "go-1", "rust-1", 0), Some(200));
        assert_eq!(
            l.cut(&ctx, "rust-1", "go-2", 0),
            Some(300),
            "go-2 left everyone"
        );
        assert_eq!(l.cut(&ctx, "rust-1", "go-1", 250), None, "a later period");
        assert_eq!(l.cut(&ctx, "go-1", "go-2", 0), Some(300));
        assert!(!l.gone_by("go-1", 1_000));
    }
}
