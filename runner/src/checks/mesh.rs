//! `mesh`: after a warm-up, each peer's gossipsub mesh for each topic holds at least D_lo peers, or all its
//! connected subscribers when there are fewer, and stays so. A mesh below that forwards messages by luck.
//!
//! Meshes are also symmetric: gossipsub links are grafted and pruned in pairs, so when A keeps B in its mesh for a
//! topic past a few heartbeats, B keeps A. A one-sided link is one that A forwards on and B ignores.
//!
//! Leaving is scoped ([`Leaving`]): a peer told to disconnect from X is excused for the pair with X only, and one
//! told to unsubscribe from T for T only.

use std::collections::{BTreeMap, BTreeSet};


use super::evidence::{count, seconds};
use super::outages::Outages;
use super::subscriptions::Leaving;
use super::{clock, Check, Context};
use crate::events::{Fault, Micros, Observation, PeerEvent, Recorded};
pub use crate::matrix::checks::mesh::Settings;
use crate::peers::Pending;
use crate::results::CheckResult;

pub const NAME: &str = "mesh";

/// D_lo when the matrix leaves it to the library: 5 in rust-libp2p (`mesh_n_low`) and go-libp2p-pubsub (`Dlo`).
const LIBRARY_D_LO: usize = 5;
/// D_hi likewise: 12 in both (`mesh_n_high`, `Dhi`). A peer whose mesh is full refuses new grafts.
const LIBRARY_D_HI: usize = 12;
/// The heartbeat likewise: 1 s in both.
const LIBRARY_HEARTBEAT_US: Micros = 1_000_000;
/// Steps closer together than this are taken in before the meshes are looked at again: at 200 peers the record
/// holds tens of thousands of steps, and looking at every mesh after each one made the replay take minutes. Far
/// below every settling time (seconds), so no spell that counts is missed or cut short by more than this.
const LOOK_EVERY_US: Micros = 20_000;

/// What a peer reported that shapes its meshes, in the order it happened.
#[derive(Debug, Clone)]
enum Step {
    Opened {
        remote: String,
        conn: String,
    },
    Closed {
        remote: String,
        conn: String,
    },
    Remote {
        remote: String,
        topic: String,
        subscribed: bool,
    },
    Mesh {
        topic: String,
        peers: BTreeSet<String>,
    },
    /// A command or incident: who is expected where may have changed.
    Leaving,
    /// The time line killed the peer: its process's connections and meshes went with it.
    Killed,
}

/// One peer's state during the replay.
#[derive(Default)]
struct PeerState {
    /// Remote id -> open connections, and since when at least one has been open.
    conns: BTreeMap<String, (BTreeSet<String>, Micros)>,
    remote_topics: BTreeSet<(String, String)>,
    meshes: BTreeMap<String, BTreeSet<String>>,
    /// Topics it reported a mesh for at all.
    reported: BTreeSet<String>,
}

impl PeerState {
    fn connected_since(&self, remote: &str) -> Option<Micros> {
        self.conns
            .get(remote)
            .filter(|(open, _)| !open.is_empty())
            .map(|(_, since)| *since)
    }
}

/// A condition that holds from `start` (judged from `from`), with what it looked like at its worst.
#[derive(Debug, Clone)]
struct Spell<I> {
    start: Micros,
    from: Micros,
    worst: I,
}

/// A condition that held for longer than allowed: (judged from, until, worst).
type Lasting<I> = (Micros, Micros, I);

/// Opens, keeps and closes spells of keys that are bad at `now`; closed spells longer than `allowed` are kept.
fn track<K: Ord + Clone, I: Clone>(
    ongoing: &mut BTreeMap<K, Spell<I>>,
    bad: BTreeMap<K, (Micros, I)>,
    now: Micros,
    allowed: Micros,
    worse: impl Fn(&I, &I) -> bool,
    lasting: &mut Vec<(K, Lasting<I>)>,
) {
    let ended: Vec<K> = ongoing
        .keys()
        .filter(|k| !bad.contains_key(*k))
        .cloned()
        .collect();
    for k in ended {
        if let Some(s) = ongoing.remove(&k) {
            close(k, s, now, allowed, lasting);
        }
    }
    for (k, (from, info)) in bad {
        let s = ongoing.entry(k).or_insert_with(|| Spell {
            start: now,
            from,
            worst: info.clone(),
        });
        s.from = from;
        if worse(&info, &s.worst) {
            s.worst = info;
        }
    }
}

fn close<K, I>(
    k: K,
    s: Spell<I>,
    end: Micros,
    allowed: Micros,
    lasting: &mut Vec<(K, Lasting<I>)>,
) {
    let start = s.start.max(s.from);
    if end - start > allowed {
        lasting.push((k, (start, end, s.worst)));
    }
}

/// A mesh too small at its worst: (its size, connected subscribers available).
type Short = (usize, usize);

pub struct Mesh {
    settings: Settings,
    leaving: Leaving,
    /// The time line's faults: a peer in one, or recovering from one, is not judged.
    outages: Outages,
    /// (time, peer, step), in arrival order; replayed in time order by the verdict.
    steps: Vec<(Micros, String, Step)>,
    last: Micros,
}

impl Mesh {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            leaving: Leaving::default(),
            outages: Outages::default(),
            steps: Vec::new(),
            last: 0,
        }
    }
}

/// What the replay found.
#[derive(Default)]
struct Findings {
    /// (peer, topic) kept too small.
    short: Vec<((String, String), Lasting<Short>)>,
    /// (A, B, topic): A kept B, B did not keep A.
    one_sided: Vec<((String, String, String), Lasting<()>)>,
    /// (peer, topic) -> the window judged (from, until).
    judged: BTreeMap<(String, String), (Micros, Micros)>,
    /// (peer, topic) judged while subscribers were available, without a single mesh report in the whole record.
    silent: BTreeSet<(String, String)>,
    /// (A, B, topic) links whose symmetry was judged.
    links: BTreeSet<(String, String, String)>,
    /// Per peer: whether its meshes are all full, and each time they became so.
    full: BTreeMap<String, (bool, Vec<Micros>)>,
    /// (peer, topic) short at the last moment replayed while its peer recovers from a fault: judged again after.
    recovering_short: BTreeSet<(String, String)>,
    /// When the spells going on at the end of the replay would count.
    pending: Vec<Micros>,
}

impl Mesh {
    /// Replays the steps up to `end`: the end of the record, or later while the case runs.
    fn replay(&self, ctx: &Context, end: Micros) -> Findings {
        let leaving = &self.leaving;
        let d_lo = ctx
            .case
            .gossipsub
            .d_lo
            .map(|d| d as usize)
            .unwrap_or(LIBRARY_D_LO);
        let d_hi = ctx
            .case
            .gossipsub
            .d_hi
            .map(|d| d as usize)
            .unwrap_or(LIBRARY_D_HI);
        let warmup = self.settings.warmup.as_micros() as Micros;
        let settle = self.settings.settle.as_micros() as Micros;
        // Grafts and prunes travel with heartbeats: a one-sided link is allowed a few of them.
        let heartbeat = ctx
            .case
            .gossipsub
            .heartbeat
            .map(|h| h.as_micros() as Micros)
            .unwrap_or(LIBRARY_HEARTBEAT_US);
        let symmetry_settle = settle.max(3 * heartbeat);
        let recovery = self.settings.recovery.as_micros() as Micros;
        let outages = &self.outages;
        let names: BTreeMap<&str, &str> = ctx
            .peers
            .iter()
            .filter_map(|p| Some((p.peer_id.as_deref()?, p.name.as_str())))
            .collect();
        let name_of = |id: &str| names.get(id).map_or_else(|| id.to_owned(), |n| (*n).to_owned());
        let id_of = |name: &str| {
            ctx.peers
                .iter()
                .find(|p| p.name == name)
                .and_then(|p| p.peer_id.clone())
        };
        let topics: Vec<String> = leaving.topics().into_iter().map(str::to_owned).collect();

        let mut steps: Vec<&(Micros, String, Step)> = self.steps.iter().collect();
        steps.sort_by_key(|(t, _, _)| *t);
        let mut state: BTreeMap<String, PeerState> = ctx
            .peers
            .iter()
            .map(|p| (p.name.clone(), PeerState::default()))
            .collect();
        let mut f = Findings::default();
        let mut short_now: BTreeMap<(String, String), Spell<Short>> = BTreeMap::new();
        let mut one_sided_now: BTreeMap<(String, String, String), Spell<()>> = BTreeMap::new();

        let mut evaluate = |state: &BTreeMap<String, PeerState>, now: Micros, f: &mut Findings| {
            // Whether `peer` is held to its mesh for `topic` at `now`, and since when it is subscribed.
            let held = |peer: &str, topic: &str| {
                leaving
                    .subscribed_since(peer, topic, now)
                    .filter(|_| !leaving.gone_by(peer, now))
            };
            // A peer in a fault of the time line, or recovering from one, is not judged, nor are its links.
            let recovering = |peer: &str| outages.disturbs(peer, now, now, recovery);
            // A remote counts for `peer` unless the pair was cut in this connected period.
            let cut = |a: &str, b: &str, since: Micros| {
                leaving.cut(ctx, a, b, since).is_some_and(|d| d <= now)
            };
            let mut short = BTreeMap::new();
            let mut one_sided = BTreeMap::new();
            f.recovering_short.clear();
            for (peer, st) in state {
                let in_fault = recovering(peer);
                let mut full = true;
                for topic in &topics {
                    let Some(since) = held(peer, topic) else {
                        continue;
                    };
                    let from = since + warmup;
                    let available = st
                        .remote_topics
                        .iter()
                        .filter(|(_, t)| t == topic)
                        .filter(|(r, _)| {
                            let name = name_of(r);
                            st.connected_since(r).is_some_and(|c| !cut(peer, &name, c))
                                && held(&name, topic).is_some()
                        })
                        .count();
                    let key = (peer.clone(), topic.clone());
                    let empty = BTreeSet::new();
                    let mesh = st.meshes.get(topic).unwrap_or(&empty);
                    // A mesh already as large as it must be is judged within the warm-up too: a short case still
                    // shows that it formed.
                    let formed = available > 0 && mesh.len() >= d_lo.min(available);
                    full &= formed;
                    if in_fault {
                        if mesh.len() < d_lo.min(available) {
                            f.recovering_short.insert(key);
                        }
                        continue;
                    }
                    if now >= from || formed {
                        let w = f.judged.entry(key.clone()).or_insert((from.min(now), now));
                        w.1 = now;
                        // Silent only if no mesh report comes at all: decided once the replay is over.
                        if now >= from && available > 0 {
                            f.silent.insert(key.clone());
                        }
                    }
                    if mesh.len() < d_lo.min(available) {
                        short.insert(key, (from, (mesh.len(), available)));
                    }
                    // Symmetry: every B that `peer` keeps must keep `peer`, while both are connected to each
                    // other in this period, both subscribed, and B's mesh has room for it.
                    let Some(own_id) = id_of(peer) else {
                        continue;
                    };
                    for b_id in mesh {
                        let b = name_of(b_id);
                        if recovering(&b) {
                            continue;
                        }
                        let (Some(b_since), Some(b_st)) = (held(&b, topic), state.get(&b)) else {
                            continue;
                        };
                        let (Some(a_conn), Some(b_conn)) =
                            (st.connected_since(b_id), b_st.connected_since(&own_id))
                        else {
                            continue;
                        };
                        if cut(peer, &b, a_conn) || cut(&b, peer, b_conn) {
                            continue;
                        }
                        let b_mesh = b_st.meshes.get(topic).unwrap_or(&empty);
                        if b_mesh.len() >= d_hi {
                            continue;
                        }
                        let from = since.max(b_since) + warmup;
                        let link = (peer.clone(), b.clone(), topic.clone());
                        if now >= from {
                            f.links.insert(link.clone());
                        }
                        if !b_mesh.contains(&own_id) {
                            one_sided.insert(link, (from, ()));
                        }
                    }
                }
                // When its meshes became full again, for the recovery after a fault.
                let was = f.full.entry(peer.clone()).or_insert((false, Vec::new()));
                if full && !was.0 {
                    was.1.push(now);
                }
                was.0 = full;
            }
            track(
                &mut short_now,
                short,
                now,
                settle,
                |a: &Short, b: &Short| a.0 < b.0,
                &mut f.short,
            );
            track(
                &mut one_sided_now,
                one_sided,
                now,
                symmetry_settle,
                |_, _| false,
                &mut f.one_sided,
            );
        };

        let mut looked_at: Option<Micros> = None;
        for (k, (at, peer, step)) in steps.iter().enumerate() {
            let st = state.entry(peer.clone()).or_default();
            match step {
                Step::Opened { remote, conn } => {
                    let e = st
                        .conns
                        .entry(remote.clone())
                        .or_insert_with(|| (BTreeSet::new(), *at));
                    if e.0.is_empty() {
                        e.1 = *at;
                    }
                    e.0.insert(conn.clone());
                }
                Step::Closed { remote, conn } => {
                    if let Some(e) = st.conns.get_mut(remote) {
                        e.0.remove(conn);
                    }
                }
                Step::Remote {
                    remote,
                    topic,
                    subscribed,
                } => {
                    let key = (remote.clone(), topic.clone());
                    if *subscribed {
                        st.remote_topics.insert(key);
                    } else {
                        st.remote_topics.remove(&key);
                    }
                }
                Step::Mesh { topic, peers } => {
                    st.reported.insert(topic.clone());
                    st.meshes.insert(topic.clone(), peers.clone());
                }
                Step::Leaving => {}
                Step::Killed => {
                    let reported = std::mem::take(&mut st.reported);
                    *st = PeerState {
                        reported,
                        ..Default::default()
                    };
                }
            }
            // Looked at after the last step of each stretch of steps closer together than `LOOK_EVERY_US`.
            let next = steps.get(k + 1).map(|(t, _, _)| *t);
            let first = *looked_at.get_or_insert(*at);
            if next.is_none_or(|t| t >= first + LOOK_EVERY_US) {
                evaluate(&state, *at, &mut f);
                looked_at = None;
            }
        }
        evaluate(&state, end, &mut f);
        f.silent
            .retain(|(peer, topic)| state.get(peer).is_none_or(|s| !s.reported.contains(topic)));
        // A spell going on counts once it outlasts its allowance; a short mesh of a recovering peer, once its
        // recovery and then the settle time are over.
        f.pending.extend(short_now.values().map(|s| s.start.max(s.from) + settle + 1));
        f.pending.extend(one_sided_now.values().map(|s| s.start.max(s.from) + symmetry_settle + 1));
        let recovered: Vec<Micros> = f
            .recovering_short
            .iter()
            .filter_map(|(peer, _)| outages.recovered_at(peer, end, recovery))
            .map(|t| t + settle + 1)
            .collect();
        f.pending.extend(recovered);
        for (k, s) in std::mem::take(&mut short_now) {
            close(k, s, end, settle, &mut f.short);
        }
        for (k, s) in std::mem::take(&mut one_sided_now) {
            close(k, s, end, symmetry_settle, &mut f.one_sided);
        }
        f
    }
}

impl Mesh {
    /// For each end of a fault of the time line: how long until the meshes of the peers it involved were full
    /// again (the slowest named), or that they were not by the end of the case.
    fn recoveries(&self, f: &Findings, ctx: &Context) -> Vec<String> {
        self.outages
            .ends()
            .into_iter()
            .map(|(end, what)| {
                let healed = self.outages.healed_at(end);
                let (ended, peers): (String, BTreeSet<String>) = if healed.is_empty() {
                    (format!("{} came back", ctx.describe(&what)), [what].into())
                } else {
                    (
                        format!("{what} healed"),
                        healed.into_iter().flat_map(|(a, b)| [a, b]).collect(),
                    )
                };
                let again = |p: &String| {
                    f.full
                        .get(p)
                        .and_then(|(_, times)| times.iter().find(|t| **t >= end).copied())
                };
                let slowest = peers.iter().map(|p| (again(p), p)).max_by_key(|(t, _)| t.map_or(Micros::MAX, |t| t));
                match slowest {
                    Some((Some(t), p)) => format!(
                        "recovery: {ended} at {}; meshes full again {} later (slowest: {p})",
                        clock(end),
                        seconds(t - end)
                    ),
                    Some((None, p)) => format!(
                        "recovery: {ended} at {}; the mesh of {p} was not full again by the end of the case",
                        clock(end)
                    ),
                    None => format!("recovery: {ended} at {}", clock(end)),
                }
            })
            .collect()
    }
}

impl Check for Mesh {
    fn name(&self) -> &'static str {
        NAME
    }

    fn applies(&self, case: &crate::cases::Case) -> bool {
        super::has_edges(case)
    }

    fn observe(&mut self, rec: &Recorded) {
        self.last = self.last.max(rec.time());
        self.outages.observe(rec);
        if let Observation::Fault {
            fault: Fault::Kill, ..
        } = &rec.what
        {
            self.steps.push((rec.at, rec.peer.clone(), Step::Killed));
        }
        if self.leaving.observe(rec) {
            self.steps.push((rec.at, rec.peer.clone(), Step::Leaving));
            return;
        }
        let Observation::Event { line } = &rec.what else {
            return;
        };
        let step = match &line.event {
            PeerEvent::ConnectionOpened {
                remote, conn_id, ..
            } => Step::Opened {
                remote: remote.clone(),
                conn: conn_id.clone(),
            },
            PeerEvent::ConnectionClosed {
                remote, conn_id, ..
            } => Step::Closed {
                remote: remote.clone(),
                conn: conn_id.clone(),
            },
            PeerEvent::Subscribed { remote, topic } => Step::Remote {
                remote: remote.clone(),
                topic: topic.clone(),
                subscribed: true,
            },
            PeerEvent::Unsubscribed { remote, topic } => Step::Remote {
                remote: remote.clone(),
                topic: topic.clone(),
                subscribed: false,
            },
            PeerEvent::Mesh { topic, peers } => Step::Mesh {
                topic: topic.clone(),
                peers: peers.iter().cloned().collect(),
            },
            _ => return,
        };
        self.steps.push((line.ts, rec.peer.clone(), step));
    }

    /// A mesh short, or a link one-sided, now: it fails once it outlasts its settle time.
    fn pending(&self, ctx: &Context, now: Micros) -> Option<Pending> {
        let f = self.replay(ctx, now.max(self.last));
        Pending::latest(now, f.pending, |n| format!("{n} short mesh(es) or one-sided link(s) to settle"))
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let d_lo = ctx
            .case
            .gossipsub
            .d_lo
            .map(|d| d as usize)
            .unwrap_or(LIBRARY_D_LO);
        let f = self.replay(ctx, self.last);

        let peers: BTreeSet<&String> = f.judged.keys().map(|(p, _)| p).collect();
        let topics: BTreeSet<&String> = f.judged.keys().map(|(_, t)| t).collect();
        let span = match (
            f.judged.values().map(|w| w.0).min(),
            f.judged.values().map(|w| w.1).max(),
        ) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        };
        let coverage = format!(
            "meshes of {} peer(s) on {} topic(s) judged over {}; {} mesh link(s) checked for symmetry",
            count(peers.len()),
            count(topics.len()),
            seconds(span),
            count(f.links.len())
        );

        // (since, kind, line, involved): a mesh too small first when both start together.
        let mut problems: Vec<(Micros, u8, String, Vec<String>)> = Vec::new();
        for ((peer, topic), (since, until, (mesh, available))) in &f.short {
            problems.push((
                *since,
                0,
                format!(
                    "{} kept {mesh} peer(s) in its mesh for {topic} for {:.1} s from {} while {available} connected subscriber(s) were available (D_lo {d_lo})",
                    ctx.describe(peer),
                    (until - since) as f64 / 1e6,
                    clock(*since),
                ),
                vec![peer.clone()],
            ));
        }
        for ((a, b, topic), (since, until, ())) in &f.one_sided {
            problems.push((
                *since,
                1,
                format!(
                    "{} kept {} in its mesh for {topic} for {:.1} s from {} while {} did not keep {} (both connected and subscribed)",
                    ctx.describe(a),
                    ctx.describe(b),
                    (until - since) as f64 / 1e6,
                    clock(*since),
                    b,
                    a
                ),
                vec![a.clone(), b.clone()],
            ));
        }
        problems.sort_by_key(|p| (p.0, p.1));
        if let Some((at, _, first, involved)) = problems.first() {
            let more = if problems.len() > 1 {
                format!(" ({} problems in all)", problems.len())
            } else {
                String::new()
            };
            let mut evidence: Vec<String> = problems.iter().map(|p| p.2.clone()).collect();
            evidence.extend(self.recoveries(&f, ctx));
            // Every mesh problem is one that lasted longer than some heartbeats: a failure of time.
            return CheckResult::failed(NAME, format!("{first}{more}"), evidence)
            .timing()
            .at(*at)
            .involving(involved.clone())
            .covering(coverage);
        }

        let why = if self.leaving.subscribes() == 0 {
            Some("nothing subscribed: the runner sent no subscribe command".to_owned())
        } else if f.judged.is_empty() {
            Some(format!(
                "no peer stayed subscribed past the warm-up of {} ms",
                self.settings.warmup.as_millis()
            ))
        } else if !f.silent.is_empty() {
            let who: Vec<String> = f
                .silent
                .iter()
                .map(|(p, t)| format!("{} for {t}", ctx.describe(p)))
                .collect();
            Some(format!(
                "no mesh events where subscriptions were expected: {}",
                who.join(", ")
            ))
        } else {
            None
        };
        let mut evidence = vec![format!(
            "{} mesh(es) held at least min(D_lo {d_lo}, connected subscribers) after the warm-up, and every link was kept from both ends",
            f.judged.len()
        )];
        evidence.extend(self.recoveries(&f, ctx));
        match why {
            Some(why) => CheckResult::inconclusive(NAME, why, evidence),
            None => CheckResult::passed(NAME, evidence),
        }
        .covering(coverage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Kit, TOPIC};
    use crate::results::Status;

    /// Every pair of `names` connected, subscribed and seeing each other's subscription.
    fn setup_all(kit: &Kit, names: &[&str]) -> Vec<Recorded> {
        let mut ev = Vec::new();
        for a in names {
            ev.push(kit.subscribe(10, a, TOPIC));
        }
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                ev.extend(kit.connect(0, a, b));
                ev.push(kit.remote_sub(20, a, b, TOPIC, true));
                ev.push(kit.remote_sub(20, b, a, TOPIC, true));
            }
        }
        ev
    }

    fn setup(kit: &Kit) -> Vec<Recorded> {
        setup_all(kit, &["rust-1", "go-1"])
    }

    fn mesh(kit: &Kit, ts: Micros, peer: &str, members: &[&str]) -> Recorded {
        kit.mesh(ts, peer, TOPIC, members)
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
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        assert_eq!(
            r.coverage.as_deref(),
            Some("meshes of 2 peer(s) on 1 topic(s) judged over 19 s; 2 mesh link(s) checked for symmetry")
        );
    }

    #[test]
    fn a_mesh_that_formed_in_a_case_shorter_than_the_warm_up_is_judged() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = setup(&kit);
        ev.push(mesh(&kit, 700_000, "rust-1", &["go-1"]));
        ev.push(mesh(&kit, 700_000, "go-1", &["rust-1"]));
        // The case ends 2 s after the subscriptions, within the 3 s warm-up.
        ev.push(kit.stderr(2_000_000, "go-1", "end"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        // No mesh at all in that time: nothing to judge.
        let mut ev = setup(&kit);
        ev.push(kit.stderr(2_000_000, "go-1", "end"));
        assert_eq!(run(&ev, &kit).status, Status::Inconclusive);
    }

    #[test]
    fn nothing_subscribed_or_no_mesh_events_is_inconclusive() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let r = run(&[], &kit);
        assert_eq!(r.status, Status::Inconclusive);
        assert!(r.message.unwrap().starts_with("nothing subscribed"));

        // Subscribed with a subscriber available, but no mesh reported: briefly (no verdict on size), so silent.
        let mut ev = setup(&kit);
        ev.push(kit.stderr(4_000_000, "go-1", "end"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Inconclusive, "{r:?}");
        let msg = r.message.unwrap();
        assert!(
            msg.starts_with("no mesh events where subscriptions were expected: go-1 (go-libp2p v0.51.0) for meshgate, rust-1"),
            "{msg}"
        );
    }

    #[test]
    fn a_first_mesh_report_after_the_warmup_is_no_silence() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = setup(&kit);
        ev.push(mesh(&kit, 3_500_000, "rust-1", &["go-1"]));
        ev.push(mesh(&kit, 3_500_000, "go-1", &["rust-1"]));
        ev.push(kit.stderr(20_000_000, "go-1", "end"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
    }

    #[test]
    fn an_empty_mesh_with_a_subscriber_available_fails() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut ev = setup(&kit);
        ev.push(mesh(&kit, 700_000, "rust-1", &["go-1"]));
        ev.push(kit.stderr(20_000_000, "go-1", "end"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert!(r.coverage.is_some());
        assert!(r.timing, "a mesh short for longer than some heartbeats is a failure of time");
        let msg = r.message.unwrap();
        assert!(msg.starts_with("go-1 (go-libp2p v0.51.0) kept 0 peer(s) in its mesh for meshgate for 17.0 s from 00:00:03.000 while 1 connected subscriber(s) were available"), "{msg}");
    }

    #[test]
    fn the_case_waits_until_a_short_mesh_could_fail() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut c = Mesh::new(Settings::default());
        let mut ev = setup(&kit);
        ev.push(mesh(&kit, 700_000, "rust-1", &["go-1"]));
        ev.push(mesh(&kit, 700_000, "go-1", &["rust-1"]));
        ev.iter().for_each(|e| c.observe(e));
        assert_eq!(c.pending(&kit.context(), 5_000_000), None, "every mesh is full");
        // go-1's mesh empties at 5 s: a failure once it lasts beyond the 3 s settle time.
        c.observe(&mesh(&kit, 5_000_000, "go-1", &[]));
        let p = c.pending(&kit.context(), 5_500_000).unwrap();
        assert_eq!(p.until, 8_000_001, "{p:?}");
        assert_eq!(c.pending(&kit.context(), 8_000_001), None);
        // Repaired by a heartbeat: nothing to wait for.
        c.observe(&mesh(&kit, 6_000_000, "go-1", &["rust-1"]));
        assert_eq!(c.pending(&kit.context(), 6_500_000), None);
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

    /// Three peers, so that go-1 keeps a mesh of one (D_lo is 5, 2 available) while it ignores rust-1.
    fn three(kit: &Kit) -> Vec<Recorded> {
        let mut ev = setup_all(kit, &["rust-1", "go-1", "go-2"]);
        ev.push(mesh(kit, 700_000, "rust-1", &["go-1", "go-2"]));
        ev.push(mesh(kit, 700_000, "go-2", &["go-1", "rust-1"]));
        ev.push(mesh(kit, 700_000, "go-1", &["go-2", "rust-1"]));
        ev
    }

    #[test]
    fn a_lasting_one_sided_link_fails() {
        let kit = Kit::new(&["rust-1", "go-1", "go-2"]);
        let mut ev = three(&kit);
        // go-1 drops rust-1 and never takes it back; rust-1 keeps go-1. go-1's mesh (1) stays below 2 available,
        // which fails on its own: give go-1 D_lo 1 so only the asymmetry is judged.
        ev.push(mesh(&kit, 4_000_000, "go-1", &["go-2"]));
        ev.push(kit.stderr(20_000_000, "go-1", "end"));
        let mut kit = kit;
        kit.case.gossipsub.d_lo = Some(1);
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        let msg = r.message.unwrap();
        assert!(
            msg.starts_with("rust-1 (rust-libp2p 0.57.1) kept go-1 (go-libp2p v0.51.0) in its mesh for meshgate for 16.0 s from 00:00:04.000 while go-1 did not keep rust-1"),
            "{msg}"
        );
        assert_eq!(r.involved, vec!["rust-1", "go-1"]);
    }

    #[test]
    fn a_transient_one_sided_link_passes() {
        let mut kit = Kit::new(&["rust-1", "go-1", "go-2"]);
        kit.case.gossipsub.d_lo = Some(1);
        let mut ev = three(&kit);
        // go-1 prunes rust-1; rust-1 drops it a heartbeat later, then both graft again.
        ev.push(mesh(&kit, 4_000_000, "go-1", &["go-2"]));
        ev.push(mesh(&kit, 5_000_000, "rust-1", &["go-2"]));
        ev.push(mesh(&kit, 9_000_000, "rust-1", &["go-1", "go-2"]));
        ev.push(mesh(&kit, 10_500_000, "go-1", &["go-2", "rust-1"]));
        ev.push(kit.stderr(20_000_000, "go-1", "end"));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
    }

    #[test]
    fn a_full_mesh_may_refuse_and_a_disconnect_excuses_its_pair_only() {
        let mut kit = Kit::new(&["rust-1", "go-1", "go-2"]);
        kit.case.gossipsub.d_lo = Some(1);
        // go-1 at D_hi (2 here) may refuse rust-1's graft.
        kit.case.gossipsub.d_hi = Some(2);
        let mut ev = setup_all(&kit, &["rust-1", "go-1", "go-2"]);
        ev.push(mesh(&kit, 700_000, "rust-1", &["go-1", "go-2"]));
        ev.push(mesh(&kit, 700_000, "go-2", &["rust-1", "go-1"]));
        ev.push(mesh(&kit, 700_000, "go-1", &["go-2", "x"]));
        ev.push(kit.stderr(20_000_000, "go-1", "end"));
        assert_eq!(run(&ev, &kit).status, Status::Passed);

        // go-1 told to leave rust-1: their link is excused, the others are not.
        kit.case.gossipsub.d_hi = None;
        let mut ev = three(&kit);
        ev.push(kit.disconnect(4_000_000, "go-1", Some("rust-1")));
        ev.push(mesh(&kit, 4_100_000, "go-1", &["go-2"]));
        ev.push(kit.stderr(20_000_000, "go-1", "end"));
        assert_eq!(
            run(&ev, &kit).status,
            Status::Passed,
            "stays connected, but cut"
        );
        let mut one_sided = ev.clone();
        one_sided.push(mesh(&kit, 4_200_000, "go-2", &["rust-1"]));
        let r = run(&one_sided, &kit);
        assert_eq!(r.status, Status::Failed);
        assert!(r
            .message
            .unwrap()
            .starts_with("go-1 (go-libp2p v0.51.0) kept go-2 (go-libp2p v0.51.0) in its mesh"),);
        // Nor is go-1's mesh excused for go-2, who is still there.
        ev.push(mesh(&kit, 4_200_000, "go-1", &[]));
        ev.push(mesh(&kit, 4_200_000, "go-2", &["rust-1"]));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert!(
            r.message.unwrap().starts_with("go-1 (go-libp2p v0.51.0) kept 0 peer(s) in its mesh for meshgate for 15.8 s from 00:00:04.200 while 1 connected subscriber(s) were available"),
        );
    }

    #[test]
    fn an_unsubscribe_excuses_its_topic_only() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let other = "other";
        let mut ev = setup(&kit);
        ev.push(kit.subscribe(10, "rust-1", other));
        ev.push(kit.subscribe(10, "go-1", other));
        ev.push(kit.remote_sub(20, "rust-1", "go-1", other, true));
        ev.push(kit.remote_sub(20, "go-1", "rust-1", other, true));
        for t in [TOPIC, other] {
            ev.push(kit.mesh(700_000, "rust-1", t, &["go-1"]));
            ev.push(kit.mesh(700_000, "go-1", t, &["rust-1"]));
        }
        // go-1 leaves `other`: its empty mesh there is expected, and rust-1 no longer counts it.
        ev.push(kit.unsubscribe(5_000_000, "go-1", other));
        ev.push(kit.mesh(5_100_000, "go-1", other, &[]));
        ev.push(kit.stderr(20_000_000, "go-1", "end"));
        assert_eq!(run(&ev, &kit).status, Status::Passed);
        // ... but not in the topic it stayed in.
        ev.push(kit.mesh(5_100_000, "go-1", TOPIC, &[]));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert!(r
            .message
            .unwrap()
            .starts_with("go-1 (go-libp2p v0.51.0) kept 0 peer(s) in its mesh for meshgate"),);
    }
}
