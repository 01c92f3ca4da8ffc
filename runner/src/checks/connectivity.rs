//! `connectivity`: the warm-up formed the network the case asked for. Every topology edge connects before
//! publishing starts, and every connection negotiated what the two ends offered: the dialer's first choice of
//! security protocol and muxer that the listener also offers (multistream-select), as each end reports it. A
//! network that never forms is a verdict on the peers, not the runner's failure.

use std::collections::{BTreeMap, BTreeSet};


use super::{Check, Context};
use crate::events::{Command, CommandLine, Direction, Micros, Observation, PeerEvent, Recorded, Sent};
pub use crate::matrix::checks::connectivity::Settings;
use crate::results::CheckResult;

pub const NAME: &str = "connectivity";

/// One end of a connection as its peer reported it.
struct End {
    peer: String,
    remote: String,
    direction: Direction,
    security: Option<String>,
    muxer: Option<String>,
    at: Micros,
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
    sent: Sent,
}

impl Connectivity {
    pub fn new(_: Settings) -> Self {
        Self::default()
    }
}

impl Check for Connectivity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn not_applicable(&self, case: &crate::cases::Case) -> Option<String> {
        super::no_edges(case)
    }

    fn observe(&mut self, rec: &Recorded) {
        if let Some(cmd) = rec.command() {
            match cmd {
                Command::Publish { .. } if self.warmup_end.is_none() => self.warmup_end = Some(rec.at),
                Command::Stop if self.first_stop.is_none() => self.first_stop = Some(rec.at),
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
                direction,
                security,
                muxer,
                ..
            } => self.ends.push(End {
                peer: rec.peer.clone(),
                remote: remote.clone(),
                direction: *direction,
                security: security.clone(),
                muxer: muxer.clone(),
                at: line.ts,
            }),
            PeerEvent::Error { cmd_id, message, .. }
                if matches!(
                    self.sent.get(&rec.peer, cmd_id.as_ref()),
                    Some((CommandLine { command: Command::Dial { .. }, .. }, _))
                ) =>
            {
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
        let mut failures: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();

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
            for (n, i) in [(na, a), (nb, b)] {
                if !self.started.contains(n.as_str()) {
                    evidence.push(format!("{} never reported `started`", ctx.describe(n)));
                } else if id_of(i).is_none() {
                    evidence.push(format!("{} never said its peer id", ctx.describe(n)));
                }
                for e in self.dial_errors.get(n.as_str()).into_iter().flatten() {
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
            ));
        }

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
                    ));
                }
            }
        }

        let mut coverage = format!(
            "{connected} of {} edge(s) connected within the warm-up; {reported} connection end(s) checked for the security and muxer negotiated",
            case.edges.len()
        );
        if !unreported.is_empty() {
            let names: Vec<&str> = unreported.iter().map(String::as_str).collect();
            coverage.push_str(&format!("; not reported by {}", names.join(", ")));
        }
        match failures.into_iter().next() {
            Some((message, evidence, involved)) => CheckResult::failed(NAME, message, evidence)
                .involving(involved)
                .covering(coverage),
            None if case.edges.is_empty() => {
                CheckResult::inconclusive(NAME, "the topology has no edge to connect".into(), vec![]).covering(coverage)
            }
            None => CheckResult::passed(NAME, vec![]).covering(coverage),
        }
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
    }
}
