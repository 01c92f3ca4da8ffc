//! `connectivity`: the warm-up formed the network the case asked for. Every topology edge connects before
//! publishing starts, and every connection negotiated what the two ends offered: the dialer's first choice of
//! security protocol and muxer that the listener also offers (multistream-select), as each end reports it. A
//! network that never forms is a verdict on the peers, not the runner's failure.
//!
//! Dials of the time line are judged too: within `redial_within` of a dial (of both ends dialing each other at
//! once, of the later one), the pair holds a connection that both ends report open. Two simultaneous dials that
//! lose both connections (n0-computer/iroh#2307's failure) fail here, whatever errors the dials were expected to
//! get. A dial an outage of either peer meets (a partition, a kill, a pause) is not judged.

use std::collections::{BTreeMap, BTreeSet};


use super::outages::Outages;
use super::{Check, Context};
use crate::events::{Command, CommandLine, Direction, Micros, Observation, PeerEvent, Recorded, Sent};
pub use crate::matrix::checks::connectivity::Settings;
use crate::peers::Pending;
use crate::results::CheckResult;

pub const NAME: &str = "connectivity";

/// One end of a connection as its peer reported it.
struct End {
    peer: String,
    remote: String,
    conn_id: String,
    direction: Direction,
    security: Option<String>,
    muxer: Option<String>,
    at: Micros,
    closed: Option<Micros>,
}

/// The dials of one pair at one moment (indices into `redials`), and when the pair must hold a connection.
struct Moment {
    dials: Vec<usize>,
    remote_name: String,
    dialer_id: String,
    deadline: Micros,
}

/// A dial of the time line: who dialed whom (a peer id), when, and what its answer was.
struct Redial {
    dialer: String,
    remote: String,
    at: Micros,
    cmd_id: Option<String>,
}

#[derive(Default)]
pub struct Connectivity {
    ends: Vec<End>,
    started: BTreeSet<String>,
    /// The end of the warm-up: the first publish command, else the first stop.
    warmup_end: Option<Micros>,
    first_stop: Option<Micros>,
    /// Per peer name: the errors its dials got (`cmd` dial).
    dial_errors: BTreeMap<String, Vec<String>>,
    /// Dials sent after the warm-up, and the errors answering them by (peer, cmd_id).
    redials: Vec<Redial>,
    redial_errors: BTreeMap<(String, String), String>,
    outages: Outages,
    sent: Sent,
    settings: Settings,
}

impl Connectivity {
    pub fn new(settings: Settings) -> Self {
        Self { settings, ..Self::default() }
    }
}

impl Connectivity {
    /// Whether `peer` reports a connection to `remote` (a peer id) open at `t`, opened at or after `since`.
    fn open_at(&self, peer: &str, remote: &str, since: Micros, t: Micros) -> bool {
        self.ends
            .iter()
            .any(|e| e.peer == peer && e.remote == remote && e.at >= since && e.at <= t && e.closed.is_none_or(|c| c > t))
    }

    /// The time line's dials, grouped into moments: the dials of one pair within a second of each other are one
    /// simultaneous dial, due `redial_within` after its last dial.
    fn moments(&self, ctx: &Context) -> Vec<Moment> {
        let within = self.settings.redial_within.as_micros() as Micros;
        let name_of_id = |id: &str| ctx.peers.iter().position(|p| p.peer_id.as_deref() == Some(id)).map(|i| ctx.case.peers[i].name.clone());
        let id_of_name = |n: &str| ctx.case.peers.iter().position(|p| p.name == n).and_then(|i| ctx.peers.get(i)).and_then(|p| p.peer_id.clone());
        let mut used = vec![false; self.redials.len()];
        let mut moments = Vec::new();
        for i in 0..self.redials.len() {
            if used[i] {
                continue;
            }
            let first = &self.redials[i];
            let Some(remote_name) = name_of_id(&first.remote) else { continue };
            // The pair's dials of this moment, from either end.
            let mut moment = vec![i];
            for (j, d) in self.redials.iter().enumerate().skip(i + 1) {
                let same_pair = (d.dialer == first.dialer && d.remote == first.remote)
                    || (d.dialer == remote_name && id_of_name(&first.dialer).as_deref() == Some(d.remote.as_str()));
                if !used[j] && same_pair && d.at - first.at <= 1_000_000 {
                    moment.push(j);
                }
            }
            moment.iter().for_each(|&j| used[j] = true);
            let last = moment.iter().map(|&j| self.redials[j].at).max().unwrap_or(first.at);
            let Some(dialer_id) = id_of_name(&first.dialer) else { continue };
            moments.push(Moment { dials: moment, remote_name, dialer_id, deadline: last + within });
        }
        moments
    }

    /// Whether both ends of the moment's pair report a connection open at `t`.
    fn joined_at(&self, m: &Moment, t: Micros) -> bool {
        let first = &self.redials[m.dials[0]];
        // Any connection will do, also one the dial found already open (a deduplicated dial is a no-op).
        self.open_at(&first.dialer, &first.remote, 0, t) && self.open_at(&m.remote_name, &m.dialer_id, 0, t)
    }

    /// Each moment of the time line's dials judged at its deadline, unless the record ends before or an outage of
    /// either peer meets it. Returns how many moments were judged, and the failures.
    #[allow(clippy::type_complexity)]
    fn judge_redials(&self, ctx: &Context) -> (usize, Vec<Failure>) {
        let end = self.first_stop.unwrap_or(Micros::MAX);
        let (mut judged, mut failures) = (0, Vec::new());
        for m in self.moments(ctx) {
            let (moment, remote_name, deadline) = (&m.dials, &m.remote_name, m.deadline);
            let first = &self.redials[moment[0]];
            let since = first.at;
            if deadline > end || self.outages.disturbs(&first.dialer, since, deadline, 0) || self.outages.disturbs(&remote_name, since, deadline, 0) {
                continue;
            }
            judged += 1;
            if self.joined_at(&m, deadline) {
                continue;
            }
            let both = moment.iter().any(|&j| self.redials[j].dialer != first.dialer);
            let late = moment.iter().all(|&j| {
                let d = &self.redials[j];
                d.cmd_id.as_ref().and_then(|id| self.redial_errors.get(&(d.dialer.clone(), id.clone()))).is_none_or(|e| timed_out(e))
            });
            let evidence: Vec<String> = moment
                .iter()
                .map(|&j| {
                    let d = &self.redials[j];
                    match d.cmd_id.as_ref().and_then(|id| self.redial_errors.get(&(d.dialer.clone(), id.clone()))) {
                        Some(e) => format!("{}'s dial failed: {e}", d.dialer),
                        None => format!("{}'s dial was not answered with an error", d.dialer),
                    }
                })
                .collect();
            failures.push((
                format!(
                    "{} and {} held no connection {} s after {} at {}",
                    ctx.describe(&first.dialer),
                    ctx.describe(&remote_name),
                    self.settings.redial_within.as_secs_f64(),
                    if both { "dialing each other at once" } else { "a time-line dial" },
                    super::clock(since),
                ),
                evidence,
                vec![first.dialer.clone(), remote_name.clone()],
                late,
            ));
        }
        (judged, failures)
    }
}

/// One failure: the line, its evidence, the peers, and whether it is one of time (a connection that did not come in
/// time, or whose dial timed out) rather than one the libraries gave a reason for.
type Failure = (String, Vec<String>, Vec<String>, bool);

/// Whether a dial's error says it ran out of time (rust-libp2p's `Timeout`, Go's `i/o timeout` and `context deadline
/// exceeded`): what a machine that cannot keep up makes of a dial, unlike a refusal or a peer id mismatch.
fn timed_out(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("timeout") || e.contains("timed out") || e.contains("deadline exceeded")
}

impl Check for Connectivity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn applies(&self, case: &crate::cases::Case) -> bool {
        super::has_edges(case)
    }

    fn observe(&mut self, rec: &Recorded) {
        if self.outages.observe(rec) {
            return;
        }
        if let Some((line, _)) = rec.sent() {
            match &line.command {
                Command::Publish { .. } if self.warmup_end.is_none() => self.warmup_end = Some(rec.at),
                Command::Stop if self.first_stop.is_none() => self.first_stop = Some(rec.at),
                Command::Dial { addr, .. } if self.warmup_end.is_some() => {
                    if let Some(remote) = addr.rsplit("/p2p/").next().filter(|_| addr.contains("/p2p/")) {
                        self.redials.push(Redial {
                            dialer: rec.peer.clone(),
                            remote: remote.to_owned(),
                            at: rec.at,
                            cmd_id: line.cmd_id.clone(),
                        });
                    }
                }
                _ => {}
            }
            self.sent.observe(rec);
            return;
        }
        let Observation::Event { line } = &rec.what else {
            return;
        };
        match &line.event {
            PeerEvent::Started { .. } => {
                self.started.insert(rec.peer.clone());
            }
            PeerEvent::ConnectionOpened {
                remote,
                conn_id,
                direction,
                security,
                muxer,
                ..
            } => self.ends.push(End {
                peer: rec.peer.clone(),
                remote: remote.clone(),
                conn_id: conn_id.clone(),
                direction: *direction,
                security: security.clone(),
                muxer: muxer.clone(),
                at: line.ts,
                closed: None,
            }),
            PeerEvent::ConnectionClosed { remote, conn_id, .. } => {
                if let Some(e) = self
                    .ends
                    .iter_mut()
                    .rev()
                    .find(|e| e.peer == rec.peer && &e.remote == remote && &e.conn_id == conn_id && e.closed.is_none())
                {
                    e.closed = Some(line.ts);
                }
            }
            PeerEvent::Error { cmd_id, message, .. }
                if matches!(
                    self.sent.get(&rec.peer, cmd_id.as_ref()),
                    Some((CommandLine { command: Command::Dial { .. }, .. }, _))
                ) =>
            {
                if let Some(id) = cmd_id {
                    self.redial_errors.insert((rec.peer.clone(), id.clone()), message.clone());
                }
                let errors = self.dial_errors.entry(rec.peer.clone()).or_default();
                if !errors.contains(message) && errors.len() < 3 {
                    errors.push(message.clone());
                }
            }
            _ => {}
        }
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let case = ctx.case;
        let end = self.warmup_end.or(self.first_stop).unwrap_or(Micros::MAX);
        let index = |name: &str| case.peers.iter().position(|p| p.name == name);
        let id_of = |i: usize| ctx.peers.get(i).and_then(|p| p.peer_id.clone());
        let mut failures: Vec<Failure> = Vec::new();

        // Edges: a connection between the two ends, reported by either, before publishing started.
        let mut connected = 0;
        for &(a, b) in &case.edges {
            let (na, nb) = (&case.peers[a].name, &case.peers[b].name);
            let joined = |x: usize, y: usize| {
                id_of(y).is_some_and(|yid| {
                    self.ends.iter().any(|e| e.peer == case.peers[x].name && e.remote == yid && e.at <= end)
                })
            };
            // Both ends must report it: a dialer that rejects the handshake late (a wrong peer id) may leave the
            // listener with a connection that never was one.
            if joined(a, b) && joined(b, a) {
                connected += 1;
                continue;
            }
            let mut evidence = Vec::new();
            let mut late = true;
            for (n, i) in [(na, a), (nb, b)] {
                if !self.started.contains(n.as_str()) {
                    evidence.push(format!("{} never reported `started`", ctx.describe(n)));
                } else if id_of(i).is_none() {
                    evidence.push(format!("{} never said its peer id", ctx.describe(n)));
                }
                for e in self.dial_errors.get(n.as_str()).into_iter().flatten() {
                    late &= timed_out(e);
                    evidence.push(format!("{n}'s dial failed: {e}"));
                }
            }
            if evidence.is_empty() {
                evidence.push(format!("neither {na} nor {nb} reported a connection to the other"));
            }
            failures.push((
                format!(
                    "{} and {} never connected within the {} s warm-up",
                    ctx.describe(na),
                    ctx.describe(nb),
                    case.warmup.as_secs()
                ),
                evidence,
                vec![na.clone(), nb.clone()],
                late,
            ));
        }

        let (redials_judged, redial_failures) = self.judge_redials(ctx);
        failures.extend(redial_failures);

        // Negotiation: each end's report against what the two offers must give.
        let (mut reported, mut unreported) = (0, BTreeSet::new());
        for e in &self.ends {
            let (Some(me), Some(them)) = (index(&e.peer), ctx.peers.iter().position(|p| p.peer_id.as_deref() == Some(&e.remote))) else {
                continue;
            };
            let (dialer, listener) = match e.direction {
                Direction::Outbound => (me, them),
                Direction::Inbound => (them, me),
            };
            if e.security.is_none() && e.muxer.is_none() {
                unreported.insert(e.peer.clone());
                continue;
            }
            reported += 1;
            let (security, muxer) = case.expected_negotiation(dialer, listener);
            for (what, got, want) in [("security", &e.security, security), ("muxer", &e.muxer, muxer)] {
                if got.is_some() && *got != want {
                    let (dn, ln) = (&case.peers[dialer].name, &case.peers[listener].name);
                    let offers = |i: usize| {
                        let l: Vec<String> = if what == "security" {
                            case.security_offer(i).iter().map(crate::matrix::label).collect()
                        } else {
                            case.muxer_offer(i).iter().map(crate::matrix::label).collect()
                        };
                        l.join(", ")
                    };
                    failures.push((
                        format!(
                            "{} reports {what} {} on its {} connection with {}, expected {} ({dn} dialed offering [{}]; {ln} offers [{}])",
                            ctx.describe(&e.peer),
                            got.as_deref().unwrap_or("-"),
                            match e.direction { Direction::Outbound => "outbound", Direction::Inbound => "inbound" },
                            ctx.name_of(&e.remote),
                            want.as_deref().unwrap_or("nothing (they share none)"),
                            offers(dialer),
                            offers(listener),
                        ),
                        vec![],
                        vec![e.peer.clone(), ctx.name_of(&e.remote)],
                        false,
                    ));
                }
            }
        }

        let mut coverage = format!(
            "{connected} of {} edge(s) connected within the warm-up; {reported} connection end(s) checked for the security and muxer negotiated",
            case.edges.len()
        );
        if redials_judged > 0 {
            coverage.push_str(&format!("; {redials_judged} time-line dial(s) judged for a connection within {} s", self.settings.redial_within.as_secs_f64()));
        }
        if !unreported.is_empty() {
            let names: Vec<&str> = unreported.iter().map(String::as_str).collect();
            coverage.push_str(&format!("; not reported by {}", names.join(", ")));
        }
        let late = failures.iter().all(|f| f.3);
        let problems = failures.len();
        let others: Vec<String> = failures.iter().skip(1).map(|f| f.0.clone()).collect();
        match failures.into_iter().next() {
            Some((message, mut evidence, involved, _)) => {
                // The first problem leads; every other one is a line of the evidence.
                let more = if problems > 1 { format!(" ({problems} problems in all)") } else { String::new() };
                evidence.extend(others);
                let result = CheckResult::failed(NAME, format!("{message}{more}"), evidence);
                match late {
                    true => result.timing(),
                    false => result,
                }
                .involving(involved)
                .covering(coverage)
            }
            None if case.edges.is_empty() => {
                CheckResult::inconclusive(NAME, "the topology has no edge to connect".into(), vec![]).covering(coverage)
            }
            None => CheckResult::passed(NAME, vec![]).covering(coverage),
        }
    }

    /// A time-line dial whose pair holds no connection both ends report yet, before its deadline.
    fn pending(&self, ctx: &Context, now: Micros) -> Option<Pending> {
        let open = self
            .moments(ctx)
            .into_iter()
            .filter(|m| !self.joined_at(m, now))
            .map(|m| m.deadline + 1);
        Pending::latest(now, open, |n| format!("{n} time-line dial(s) to connect"))
    }

    /// Edges are judged once publishing starts: before, a missing connection may still come.
    fn failing(&self, ctx: &Context, now: Micros) -> Option<String> {
        let _ = now;
        self.warmup_end?;
        let v = self.verdict(ctx);
        (v.status == crate::results::Status::Failed).then(|| v.message.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{id, Kit};
    use crate::matrix::{Offer, Security};
    use crate::results::Status;

    #[test]
    fn a_hundred_edges_that_never_connected_fail_in_one_short_line() {
        let mut kit = Kit::many(60, 60);
        kit.case.edges = (0..119).map(|i| (i, i + 1)).collect();
        let r = {
            let mut c = Connectivity::new(Settings::default());
            c.observe(&kit.publish(1_000_000, "rust-1", "rust-1/0")[0]);
            c.verdict(&kit.context())
        };
        assert_eq!(r.status, Status::Failed);
        let msg = r.message.unwrap();
        assert_eq!(
            msg,
            "rust-1 (rust-libp2p 0.57.1) and rust-2 (rust-libp2p 0.57.1) never connected within the 1 s warm-up (119 problems in all)"
        );
        assert!(r.evidence.iter().any(|e| e.starts_with("go-59 (go-libp2p v0.51.0) and go-60")), "{:?}", r.evidence.len());
    }

    fn opened(kit: &Kit, ts: Micros, peer: &str, remote: &str, dir: Direction, security: &str) -> Recorded {
        kit.event(
            ts,
            peer,
            PeerEvent::ConnectionOpened {
                remote: id(remote),
                conn_id: "1".into(),
                direction: dir,
                remote_addr: "/ip4/10.0.0.1/tcp/4001".into(),
                security: Some(security.into()),
                muxer: Some("yamux".into()),
            },
        )
    }

    fn judge(kit: &Kit, record: &[Recorded]) -> CheckResult {
        let mut c = Connectivity::new(Settings::default());
        for r in record {
            c.observe(r);
        }
        c.verdict(&kit.context())
    }

    #[test]
    fn an_edge_that_never_connects_fails_naming_both_ends() {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        kit.case.edges = vec![(0, 1)];
        let record = vec![
            kit.command(0, "rust-1", r#"{"cmd":"dial","cmd_id":"c1","addr":"/ip4/10.0.0.3/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"}"#),
            kit.event(1, "rust-1", PeerEvent::Error { cmd: Some("dial".into()), cmd_id: Some("c1".into()), message: "peer id mismatch".into() }),
            kit.command(2_000, "rust-1", r#"{"cmd":"publish","cmd_id":"c2","topic":"meshgate","id":"x","size":1}"#),
            opened(&kit, 3_000, "rust-1", "go-1", Direction::Outbound, "noise"),
        ];
        let v = judge(&kit, &record);
        assert_eq!(v.status, Status::Failed, "{v:?}");
        let m = v.message.unwrap();
        assert!(m.contains("rust-1") && m.contains("go-1") && m.contains("never connected"), "{m}");
        assert!(v.evidence.iter().any(|e| e.contains("peer id mismatch")), "{:?}", v.evidence);
        assert_eq!(v.involved, vec!["rust-1", "go-1"]);
        assert!(!v.timing, "the dial said why: no failure of time");
        // Without a reason, or with a dial that timed out, it may be the machine that was slow.
        let v = judge(&kit, &[record[0].clone(), record[2].clone()]);
        assert!(v.status == Status::Failed && v.timing, "{v:?}");
        let timeout = kit.event(1, "rust-1", PeerEvent::Error { cmd: Some("dial".into()), cmd_id: Some("c1".into()), message: "Timeout has been reached".into() });
        let v = judge(&kit, &[record[0].clone(), timeout, record[2].clone()]);
        assert!(v.status == Status::Failed && v.timing, "{v:?}");
    }

    #[test]
    fn negotiation_must_be_the_dialers_first_shared_choice() {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        kit.case.edges = vec![(0, 1)];
        kit.case.peers[0].offer = Offer { security: Some(vec![Security::Tls, Security::Noise]), muxer: None };
        kit.case.peers[1].offer = Offer { security: Some(vec![Security::Noise, Security::Tls]), muxer: None };
        // rust-1 dials: tls is expected.
        let good = vec![
            opened(&kit, 1, "rust-1", "go-1", Direction::Outbound, "tls"),
            opened(&kit, 1, "go-1", "rust-1", Direction::Inbound, "tls"),
        ];
        let v = judge(&kit, &good);
        assert_eq!(v.status, Status::Passed, "{v:?}");
        assert!(v.coverage.as_deref().unwrap().contains("1 of 1 edge(s) connected"), "{v:?}");
        let bad = vec![
            opened(&kit, 1, "rust-1", "go-1", Direction::Outbound, "noise"),
            opened(&kit, 1, "go-1", "rust-1", Direction::Inbound, "noise"),
        ];
        let v = judge(&kit, &bad);
        assert_eq!(v.status, Status::Failed, "{v:?}");
        assert!(v.message.as_deref().unwrap().contains("expected tls"), "{v:?}");
        assert!(!v.timing, "a wrong negotiation is no failure of time");
    }

    fn closed(kit: &Kit, ts: Micros, peer: &str, remote: &str, conn_id: &str) -> Recorded {
        kit.event(
            ts,
            peer,
            PeerEvent::ConnectionClosed {
                remote: id(remote),
                conn_id: conn_id.into(),
                direction: Direction::Outbound,
                remote_addr: "/ip4/10.0.0.1/tcp/4001".into(),
                reason: None,
            },
        )
    }

    /// rust-1 and go-1 connect in the warm-up, are disconnected, and dial each other at once at 10 s.
    fn redial(kit: &Kit, after: Vec<Recorded>) -> Vec<Recorded> {
        let dial = |ts: Micros, peer: &str, to: &str, cmd_id: &str| {
            kit.command(
                ts,
                peer,
                &format!(r#"{{"cmd":"dial","cmd_id":"{cmd_id}","addr":"/ip4/10.0.0.3/tcp/4001/p2p/{}"}}"#, id(to)),
            )
        };
        let mut record = vec![
            opened(kit, 1_000, "rust-1", "go-1", Direction::Outbound, "noise"),
            opened(kit, 1_000, "go-1", "rust-1", Direction::Inbound, "noise"),
            kit.command(2_000_000, "rust-1", r#"{"cmd":"publish","cmd_id":"c2","topic":"meshgate","id":"x","size":1}"#),
            closed(kit, 9_000_000, "rust-1", "go-1", "1"),
            closed(kit, 9_000_000, "go-1", "rust-1", "1"),
            dial(10_000_000, "rust-1", "go-1", "c3"),
            dial(10_000_100, "go-1", "rust-1", "c4"),
        ];
        record.extend(after);
        record.push(kit.command(30_000_000, "rust-1", r#"{"cmd":"stop","cmd_id":"c9"}"#));
        record
    }

    #[test]
    fn simultaneous_dials_that_lose_both_connections_fail_with_both_errors() {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        kit.case.edges = vec![(0, 1)];
        let lost = redial(
            &kit,
            vec![
                kit.event(10_020_000, "rust-1", PeerEvent::Error { cmd: Some("dial".into()), cmd_id: Some("c3".into()), message: "Failed to negotiate transport protocol(s)".into() }),
                kit.event(10_020_000, "go-1", PeerEvent::Error { cmd: Some("dial".into()), cmd_id: Some("c4".into()), message: "all dials failed".into() }),
            ],
        );
        let v = judge(&kit, &lost);
        assert_eq!(v.status, Status::Failed, "{v:?}");
        let m = v.message.as_deref().unwrap();
        assert!(m.contains("held no connection 5 s after dialing each other at once"), "{m}");
        assert!(v.evidence.iter().any(|e| e.contains("rust-1's dial failed: Failed to negotiate")), "{:?}", v.evidence);
        assert!(v.evidence.iter().any(|e| e.contains("go-1's dial failed: all dials failed")), "{:?}", v.evidence);

        // One of the two connections survives (the other dial lost its race): the pair is connected.
        let mut one = redial(
            &kit,
            vec![
                kit.event(10_020_000, "go-1", PeerEvent::Error { cmd: Some("dial".into()), cmd_id: Some("c4".into()), message: "all dials failed".into() }),
                opened(&kit, 10_030_000, "rust-1", "go-1", Direction::Outbound, "noise"),
                opened(&kit, 10_030_000, "go-1", "rust-1", Direction::Inbound, "noise"),
            ],
        );
        let v = judge(&kit, &one);
        assert_eq!(v.status, Status::Passed, "{v:?}");
        assert!(v.coverage.as_deref().unwrap().contains("1 time-line dial(s) judged"), "{v:?}");

        // Reported by one end only is no connection.
        one.retain(|r| !(r.peer == "go-1" && r.at == 10_030_000));
        assert_eq!(judge(&kit, &one).status, Status::Failed);
    }
}
