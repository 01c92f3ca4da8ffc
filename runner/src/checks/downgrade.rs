//! `no-protocol-downgrade`: once a peer has advertised a protocol to another (in identify or an identify push),
//! it must keep advertising it. A peer that drops `/meshsub/1.1.0` mid-connection silently leaves gossipsub.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{clock, Check, Context};
use crate::events::{Micros, Observation, PeerEvent, Recorded};
use crate::results::CheckResult;

pub const NAME: &str = "no-protocol-downgrade";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Protocols watched, as glob patterns.
    #[serde(default = "default_protocols")]
    pub protocols: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            protocols: default_protocols(),
        }
    }
}

fn default_protocols() -> Vec<String> {
    vec!["/meshsub/*".into()]
}

/// What one identify said, kept for evidence.
#[derive(Debug, Clone)]
struct Seen {
    at: Micros,
    conn_id: Option<String>,
    agent: String,
    protocols: Vec<String>,
}

#[derive(Debug)]
struct Downgrade {
    observer: String,
    remote: String,
    lost: Vec<String>,
    before: Seen,
    after: Seen,
}

pub struct NoProtocolDowngrade {
    patterns: Vec<glob::Pattern>,
    /// (observer name, remote peer id) -> watched protocols advertised so far, and the identify that last did.
    advertised: BTreeMap<(String, String), (BTreeSet<String>, Seen)>,
    downgrades: Vec<Downgrade>,
    identifies: usize,
}

impl NoProtocolDowngrade {
    pub fn new(settings: Settings) -> Self {
        // Patterns are validated when the matrix is loaded; an invalid one here matches nothing.
        let patterns = settings
            .protocols
            .iter()
            .filter_map(|p| glob::Pattern::new(p).ok())
            .collect();
        Self {
            patterns,
            advertised: BTreeMap::new(),
            downgrades: Vec::new(),
            identifies: 0,
        }
    }

    fn watched(&self, protocol: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(protocol))
    }
}

impl Check for NoProtocolDowngrade {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, rec: &Recorded) {
        let Observation::Event { line } = &rec.what else {
            return;
        };
        let PeerEvent::Identify {
            remote,
            conn_id,
            agent_version,
            protocols,
            ..
        } = &line.event
        else {
            return;
        };
        self.identifies += 1;
        let now: BTreeSet<String> = protocols
            .iter()
            .filter(|p| self.watched(p))
            .cloned()
            .collect();
        let seen = Seen {
            at: line.ts,
            conn_id: conn_id.clone(),
            agent: agent_version.clone(),
            protocols: protocols.clone(),
        };
        let key = (rec.peer.clone(), remote.clone());
        match self.advertised.get_mut(&key) {
            None => {
                self.advertised.insert(key, (now, seen));
            }
            Some((so_far, last)) => {
                let lost: Vec<String> = so_far.difference(&now).cloned().collect();
                if !lost.is_empty() {
                    self.downgrades.push(Downgrade {
                        observer: rec.peer.clone(),
                        remote: remote.clone(),
                        lost,
                        before: last.clone(),
                        after: seen.clone(),
                    });
                }
                so_far.extend(now);
                *last = seen;
            }
        }
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let Some(first) = self.downgrades.first() else {
            return CheckResult::passed(
                NAME,
                vec![format!(
                    "{} identify message(s) over {} peer pair(s), no watched protocol lost",
                    self.identifies,
                    self.advertised.len()
                )],
            );
        };
        let mut evidence = Vec::new();
        for d in &self.downgrades {
            let remote = ctx.describe(&ctx.name_of(&d.remote));
            evidence.push(format!(
                "{remote} stopped advertising {} to {} at {}",
                d.lost.join(", "),
                ctx.describe(&d.observer),
                clock(d.after.at)
            ));
            for (label, s) in [("before", &d.before), ("after", &d.after)] {
                evidence.push(format!(
                    "  identify {label} at {} on connection {} (agent {}): {}",
                    clock(s.at),
                    s.conn_id.as_deref().unwrap_or("?"),
                    s.agent,
                    s.protocols.join(" ")
                ));
            }
        }
        let message = format!(
            "{} stopped advertising {} to {} at {} ({} downgrade(s) in all)",
            ctx.describe(&ctx.name_of(&first.remote)),
            first.lost.join(", "),
            ctx.describe(&first.observer),
            clock(first.after.at),
            self.downgrades.len()
        );
        CheckResult::failed(NAME, message, evidence)
            .at(first.after.at)
            .involving([ctx.name_of(&first.remote), first.observer.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testkit::Kit;
    use crate::results::Status;

    fn run(events: &[Recorded], kit: &Kit) -> CheckResult {
        let mut c = NoProtocolDowngrade::new(Settings::default());
        events.iter().for_each(|e| c.observe(e));
        c.verdict(&kit.context())
    }

    #[test]
    fn passes_when_protocols_stay() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.identify(
                10,
                "rust-1",
                "go-1",
                &["/ipfs/id/1.0.0", "/meshsub/1.1.0", "/meshsub/1.2.0"],
            ),
            kit.identify(
                20,
                "rust-1",
                "go-1",
                &["/ipfs/id/1.0.0", "/meshsub/1.1.0", "/meshsub/1.2.0", "/x/1"],
            ),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
    }

    #[test]
    fn fails_when_a_push_drops_meshsub() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.identify(10, "rust-1", "go-1", &["/ipfs/id/1.0.0", "/meshsub/1.1.0"]),
            kit.identify(2_000_000, "rust-1", "go-1", &["/ipfs/id/1.0.0"]),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        let msg = r.message.unwrap();
        assert!(msg.contains("go-1 (go-libp2p v0.51.0) stopped advertising /meshsub/1.1.0 to rust-1 (rust-libp2p 0.57.1)"), "{msg}");
        assert!(r
            .evidence
            .iter()
            .any(|l| l.contains("identify before") && l.contains("/meshsub/1.1.0")));
    }

    #[test]
    fn unwatched_protocols_may_come_and_go() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.identify(
                10,
                "go-1",
                "rust-1",
                &["/meshsub/1.1.0", "/ipfs/ping/1.0.0"],
            ),
            kit.identify(20, "go-1", "rust-1", &["/meshsub/1.1.0"]),
        ];
        assert_eq!(run(&ev, &kit).status, Status::Passed);
    }

    #[test]
    fn a_protocol_gained_later_is_watched_too() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.identify(10, "go-1", "rust-1", &["/ipfs/id/1.0.0"]),
            kit.identify(20, "go-1", "rust-1", &["/meshsub/1.1.0"]),
            kit.identify(30, "go-1", "rust-1", &["/ipfs/id/1.0.0"]),
        ];
        assert_eq!(run(&ev, &kit).status, Status::Failed);
    }
}
