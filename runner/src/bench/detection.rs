//! Detection latency: from the moment a peer emits the event that breaks a check (rust-1's identify of go-1 after
//! go-1 stopped serving /meshsub/1.1.0: a protocol it advertised before is gone) to the moment the runner announced
//! `no-protocol-downgrade` failing, as the case kept it.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::figures::{median, ms};
use super::{matrices, Runner};
use crate::events::{Micros, PeerEvent, Recorded};
use crate::results::CouldNotRun;
use crate::stored::LiveFailure;

const CHECK: &str = "no-protocol-downgrade";
/// The protocols the check watches by default.
const WATCHED: &str = "/meshsub/";

#[derive(Debug, Serialize)]
pub struct Detection {
    pub repeats: usize,
    /// Medians: the event's own time stamp to the announcement, and its two parts: to the event's arrival in the
    /// runner, and from there to the announcement.
    pub latency_ms: Option<f64>,
    pub arrival_ms: Option<f64>,
    pub announce_ms: Option<f64>,
    /// The highest of the repeats.
    pub worst_ms: Option<f64>,
}

/// When the breaking event happened (peer's clock), arrived (runner's), and was announced.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Detected {
    ts: Micros,
    at: Micros,
    announced: Micros,
}

pub(super) async fn measure(
    runner: &Runner<'_>,
    repeat: u32,
    problems: &mut Vec<String>,
) -> Result<Option<Detection>, CouldNotRun> {
    let mut found = Vec::new();
    for r in 0..repeat {
        let ran = runner.run_yaml("detection", matrices::DETECTION).await?;
        problems.extend(ran.problems.iter().cloned());
        let seen = ran
            .only_case()
            .and_then(|k| detected(&k.record, &k.stored.live_failures).ok_or_else(|| {
                format!("no breaking identify, or no live `{CHECK}` failure announced after it")
            }));
        match seen {
            Ok(d) => found.push(d),
            Err(e) => problems.push(format!("detection, repeat {}: {e}", r + 1)),
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    let of = |f: &dyn Fn(&Detected) -> Micros| median(found.iter().map(|d| ms(f(d))));
    Ok(Some(Detection {
        repeats: found.len(),
        latency_ms: of(&|d| d.announced - d.ts),
        arrival_ms: of(&|d| d.at - d.ts),
        announce_ms: of(&|d| d.announced - d.at),
        worst_ms: found.iter().map(|d| ms(d.announced - d.ts)).reduce(f64::max),
    }))
}

/// The first identify in which an observer no longer sees a watched protocol the same remote advertised before,
/// and the first announcement of the check's failure at or after its arrival.
fn detected(record: &[Recorded], live: &[LiveFailure]) -> Option<Detected> {
    let mut advertised: HashMap<(&str, &str), BTreeSet<&str>> = HashMap::new();
    let breaking = record.iter().find_map(|rec| {
        let PeerEvent::Identify { remote, protocols, .. } = rec.event()? else {
            return None;
        };
        let now: BTreeSet<&str> =
            protocols.iter().map(String::as_str).filter(|p| p.starts_with(WATCHED)).collect();
        let before = advertised.entry((rec.peer.as_str(), remote.as_str())).or_default();
        let dropped = before.iter().any(|p| !now.contains(p));
        before.extend(now);
        let crate::events::Observation::Event { line } = &rec.what else { return None };
        dropped.then_some((line.ts, rec.at))
    })?;
    let (ts, at) = breaking;
    let announced = live
        .iter()
        .filter(|f| f.line.starts_with(&format!("[{CHECK}]")) && f.at >= at)
        .map(|f| f.at)
        .min()?;
    Some(Detected { ts, at, announced })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Kit;

    #[test]
    fn the_breaking_identify_and_its_announcement_are_found() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let full = ["/ipfs/id/1.0.0", "/meshsub/1.0.0", "/meshsub/1.1.0"];
        let mut pushed = kit.identify(3_000_000, "rust-1", "go-1", &["/ipfs/id/1.0.0", "/meshsub/1.0.0"]);
        pushed.at += 40_000;
        let record = vec![
            kit.identify(1_000_000, "rust-1", "go-1", &full),
            // Another observer's first identify lacks it too, but it never saw it: no downgrade.
            kit.identify(1_500_000, "go-1", "rust-1", &["/ipfs/id/1.0.0"]),
            pushed,
        ];
        let live = |at, check: &str| LiveFailure { at, line: format!("[{check}] go-1 stopped advertising") };
        let d = detected(&record, &[live(3_100_000, "delivery"), live(3_400_000, CHECK)]).unwrap();
        assert_eq!(d, Detected { ts: 3_000_000, at: 3_040_000, announced: 3_400_000 });
        assert_eq!(detected(&record, &[live(3_100_000, "delivery")]), None);
        assert_eq!(detected(&record[..2], &[live(3_400_000, CHECK)]), None);
    }
}
