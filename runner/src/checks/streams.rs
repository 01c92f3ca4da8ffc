//! `streams`: open streams per connection stay below a limit. A peer that leaks streams runs into yamux's window of
//! 256 un-ACKed outbound streams, after which the remote resets new ones; this catches the leak long before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{clock, Check, Context};
use crate::events::{Micros, Observation, PeerEvent, Recorded};
use crate::results::CheckResult;

pub const NAME: &str = "streams";

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Most streams (inbound and outbound together) open on one connection at once.
    #[serde(default = "default_max")]
    pub max_per_connection: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_per_connection: default_max(),
        }
    }
}

fn default_max() -> u32 {
    64
}

#[derive(Debug, Clone, Default)]
struct Peak {
    remote: String,
    total: u32,
    inbound: u32,
    outbound: u32,
    at: Micros,
}

pub struct Streams {
    settings: Settings,
    /// (peer name, connection id) -> the highest count seen.
    peaks: BTreeMap<(String, String), Peak>,
}

impl Streams {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            peaks: BTreeMap::new(),
        }
    }
}

impl Check for Streams {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, rec: &Recorded) {
        let Observation::Event { line } = &rec.what else {
            return;
        };
        let PeerEvent::Streams {
            remote,
            conn_id,
            inbound,
            outbound,
        } = &line.event
        else {
            return;
        };
        let peak = self
            .peaks
            .entry((rec.peer.clone(), conn_id.clone()))
            .or_default();
        if inbound + outbound > peak.total || peak.remote.is_empty() {
            *peak = Peak {
                remote: remote.clone(),
                total: inbound + outbound,
                inbound: *inbound,
                outbound: *outbound,
                at: line.ts,
            };
        }
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let limit = self.settings.max_per_connection;
        let mut over: Vec<(&(String, String), &Peak)> =
            self.peaks.iter().filter(|(_, p)| p.total > limit).collect();
        // The peer that opened the streams leads (its outbound count), the side that accepted them follows.
        over.sort_by_key(|(_, p)| std::cmp::Reverse((p.outbound, p.total)));
        let highest = self.peaks.iter().max_by_key(|(_, p)| p.total);
        let describe = |(peer, conn): &(String, String), p: &Peak| {
            format!(
                "{} had {} streams open ({} inbound, {} outbound) on connection {conn} to {} at {}",
                ctx.describe(peer),
                p.total,
                p.inbound,
                p.outbound,
                ctx.describe(&ctx.name_of(&p.remote)),
                clock(p.at)
            )
        };
        let Some((key, peak)) = over.first() else {
            let summary = match highest {
                Some((key, p)) => format!(
                    "peak over {} connection(s): {}",
                    self.peaks.len(),
                    describe(key, p)
                ),
                None => "no stream counts reported".into(),
            };
            return CheckResult::passed(
                NAME,
                vec![summary, format!("limit {limit} per connection")],
            );
        };
        let evidence = over.iter().map(|(k, p)| describe(k, p)).collect();
        CheckResult::failed(
            NAME,
            format!("{} (limit {limit})", describe(key, peak)),
            evidence,
        )
        .at(peak.at)
        .involving([key.0.clone(), ctx.name_of(&peak.remote)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testkit::{id, Kit};
    use crate::results::Status;

    fn streams(
        kit: &Kit,
        ts: Micros,
        peer: &str,
        remote: &str,
        conn: &str,
        inbound: u32,
        outbound: u32,
    ) -> Recorded {
        kit.event(
            ts,
            peer,
            PeerEvent::Streams {
                remote: id(remote),
                conn_id: conn.into(),
                inbound,
                outbound,
            },
        )
    }

    fn run(events: &[Recorded], kit: &Kit) -> CheckResult {
        let mut c = Streams::new(Settings::default());
        events.iter().for_each(|e| c.observe(e));
        c.verdict(&kit.context())
    }

    #[test]
    fn few_streams_pass_and_report_the_peak() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            streams(&kit, 1, "rust-1", "go-1", "1", 2, 3),
            streams(&kit, 2, "rust-1", "go-1", "1", 1, 1),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed);
        assert!(
            r.evidence[0].contains("5 streams open (2 inbound, 3 outbound) on connection 1"),
            "{:?}",
            r.evidence
        );
    }

    #[test]
    fn a_leak_fails_naming_the_connection() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            streams(&kit, 1_000_000, "go-1", "rust-1", "c7", 1, 10),
            streams(&kit, 2_000_000, "go-1", "rust-1", "c7", 1, 90),
            streams(&kit, 3_000_000, "go-1", "rust-1", "c7", 1, 2),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        let msg = r.message.unwrap();
        assert!(msg.starts_with("go-1 (go-libp2p v0.51.0) had 91 streams open (1 inbound, 90 outbound) on connection c7 to rust-1"), "{msg}");
        assert!(msg.ends_with("(limit 64)"), "{msg}");
    }
}
