//! Scale: networks of growing size at a constant network-wide load, then one network under a rising load until its
//! latency degrades (the capacity of this machine). Each step is one case; its figures come from its record and from
//! what the runner process and the machine spent while it ran.

use std::time::Duration;

use serde::Serialize;

use super::figures::{median, CaseFigures, Delivered};
use super::matrices::{self, Stage};
use super::usage::Spent;
use super::{between, Plan, Runner};
use crate::events::Micros;
use crate::results::{CaseStatus, CouldNotRun};

/// A delivery later than this is missed, as the `delivery` check's default deadline says.
const DEADLINE: Duration = Duration::from_secs(10);
/// A step delivering less than this is broken: the network no longer carries the load.
const FULL: f64 = 0.999;

#[derive(Debug, Serialize)]
pub struct Scale {
    /// Network-wide messages a second of the size steps.
    pub rate: f64,
    pub steps: Vec<Step>,
    /// Where a step broke (errored, or did not deliver), when one did.
    pub broke_at: Option<usize>,
    pub curve: Option<Curve>,
}

/// One network size at the constant load.
#[derive(Debug, Serialize)]
pub struct Step {
    pub peers: usize,
    /// The case's verdict line.
    pub verdict: String,
    pub passed: bool,
    pub delivered: Option<Delivered>,
    /// Every peer listening until every edge connected, then first `subscribe` until every mesh formed.
    pub connect_ms: Option<f64>,
    pub mesh_ms: Option<f64>,
    /// The case's start until every peer listened.
    pub start_ms: Option<f64>,
    /// Median and highest peak resident memory of a rust and of a go peer, MiB.
    pub rust_peer_mib: Option<(f64, f64)>,
    pub go_peer_mib: Option<(f64, f64)>,
    pub events_per_s: Option<f64>,
    /// Harness lag of the events that arrived during the time line (first publish to first `stop`).
    pub lag_p50_ms: Option<f64>,
    pub lag_p99_ms: Option<f64>,
    /// Harness lag p99 of every event of the case: the peers' first events wait while the runner starts the
    /// others (it takes in their output once every peer is started).
    pub lag_p99_all_ms: Option<f64>,
    /// The runner process and the machine over the run of this one case.
    pub spent: Spent,
}

/// One network under stages of rising load.
#[derive(Debug, Serialize)]
pub struct Curve {
    pub peers: usize,
    pub stages: Vec<CurveStage>,
    /// The highest rate that was still delivered in full with a p99 latency not degraded.
    pub capacity: Option<f64>,
    pub spent: Spent,
}

#[derive(Debug, Serialize)]
pub struct CurveStage {
    pub rate: f64,
    pub delivered: Delivered,
    /// Harness lag p99 of what arrived during the stage.
    pub lag_p99_ms: Option<f64>,
    pub degraded: bool,
}

pub(super) async fn measure(runner: &Runner<'_>, plan: &Plan, problems: &mut Vec<String>) -> Result<Scale, CouldNotRun> {
    let mut scale = Scale {
        rate: plan.load.rate,
        steps: Vec::new(),
        broke_at: None,
        curve: None,
    };
    let mut sizes = plan.scale_peers.clone();
    while let Some(n) = (!sizes.is_empty()).then(|| sizes.remove(0)) {
        let ran = runner
            .run_yaml(&format!("scale-{n}"), &matrices::scale(n, plan.load, plan.drain))
            .await?;
        problems.extend(ran.problems.iter().cloned());
        let step = match ran.only_case() {
            Ok(kept) => {
                let status = ran.results.cases[0].status();
                step(n, &kept.figures, ran.results.cases[0].verdict_line(), status, ran.spent)
            }
            Err(e) => {
                problems.push(format!("scale at {n} peers: {e}"));
                scale.broke_at = Some(n);
                break;
            }
        };
        let broke = step.delivered.and_then(|d| d.ratio()).is_none_or(|r| r < FULL);
        scale.steps.push(step);
        if broke {
            scale.broke_at = Some(n);
            break;
        }
        // Beyond the planned sizes, twice the last one while it holds.
        if sizes.is_empty() && plan.beyond && n * 2 <= plan.max_peers {
            sizes.push(n * 2);
        }
    }
    if plan.curve_peers >= 2 {
        scale.curve = curve(runner, plan, problems).await?;
    }
    Ok(scale)
}

fn step(peers: usize, f: &CaseFigures, verdict: String, status: CaseStatus, spent: Spent) -> Step {
    let memory = |language: &str| {
        let peaks = f.peak_memory.get(language)?;
        let mib: Vec<f64> = peaks.iter().map(|&b| b as f64 / (1 << 20) as f64).collect();
        Some((median(mib.iter().copied())?, mib.iter().copied().fold(0.0, f64::max)))
    };
    Step {
        peers,
        verdict,
        passed: matches!(status, CaseStatus::Passed | CaseStatus::Known),
        delivered: Some(f.delivered_all(DEADLINE)),
        start_ms: between(Some(f.started), f.listening),
        connect_ms: between(f.listening, f.connected),
        mesh_ms: between(f.first_subscribe, f.meshed),
        rust_peer_mib: memory("rust"),
        go_peer_mib: memory("go"),
        events_per_s: f.events_per_s(),
        lag_p50_ms: f.first_publish.and_then(|from| f.lag_ms(50.0, from, f.first_stop.unwrap_or(Micros::MAX))),
        lag_p99_ms: f.first_publish.and_then(|from| f.lag_ms(99.0, from, f.first_stop.unwrap_or(Micros::MAX))),
        lag_p99_all_ms: f.lag_ms(99.0, Micros::MIN, Micros::MAX),
        spent,
    }
}

async fn curve(runner: &Runner<'_>, plan: &Plan, problems: &mut Vec<String>) -> Result<Option<Curve>, CouldNotRun> {
    let n = plan.curve_peers;
    let yaml = matrices::load_curve(n, &plan.curve, plan.drain);
    let ran = runner.run_yaml(&format!("load-{n}"), &yaml).await?;
    problems.extend(ran.problems.iter().cloned());
    let kept = match ran.only_case() {
        Ok(k) => k,
        Err(e) => {
            problems.push(format!("load curve at {n} peers: {e}"));
            return Ok(None);
        }
    };
    let Some(start) = kept.figures.first_publish else {
        problems.push(format!("load curve at {n} peers: nothing was published"));
        return Ok(None);
    };
    let stages = stages(&kept.figures, start, &plan.curve);
    Ok(Some(Curve {
        peers: n,
        capacity: stages.iter().take_while(|s| !s.degraded).last().map(|s| s.rate),
        stages,
        spent: ran.spent,
    }))
}

/// Each stage's deliveries (of the messages published within it) and lag; a stage is degraded when it no longer
/// delivers in full or its p99 latency is over four times the first stage's (and over half a second).
fn stages(f: &CaseFigures, start: Micros, plan: &[Stage]) -> Vec<CurveStage> {
    let us = |d: Duration| d.as_micros() as Micros;
    let mut out: Vec<CurveStage> = Vec::new();
    for (i, stage) in plan.iter().enumerate() {
        let from = start + us(stage.at);
        let to = plan.get(i + 1).map_or(Micros::MAX, |next| start + us(next.at));
        let delivered = f.delivered(from, to, DEADLINE);
        let base = out.first().and_then(|s| s.delivered.p99_ms).or(delivered.p99_ms);
        let p99 = delivered.p99_ms.unwrap_or(f64::INFINITY);
        let slow = base.is_some_and(|b| p99 > (4.0 * b).max(500.0));
        out.push(CurveStage {
            rate: stage.load.rate,
            degraded: delivered.ratio().is_none_or(|r| r < FULL) || slow,
            lag_p99_ms: f.lag_ms(99.0, from, to),
            delivered,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stored::tests::stored;
    use crate::testkit::Kit;

    #[test]
    fn a_stage_is_degraded_when_its_latency_grows_or_deliveries_go_missing() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let s = Duration::from_secs(1);
        let plan = matrices::stages(&[10.0, 20.0, 40.0], s, s);
        let mut record = Vec::new();
        // A message per stage from rust-1 (stages start at 0, 2 s and 4 s after publishing began at 1 s):
        // delivered after 10 ms, then 30 ms, then 900 ms.
        for (k, latency) in [(0, 10_000), (1, 30_000), (2, 900_000)] {
            let sent = 1_000_000 + k * 2_000_000;
            record.extend(kit.publish(sent - 100, "rust-1", &format!("m{k}")));
            record.push(kit.message(sent + latency, "go-1", "rust-1", &format!("m{k}"), sent));
        }
        for p in ["rust-1", "go-1"] {
            record.push(kit.subscribe(0, p, crate::testkit::TOPIC));
        }
        let f = CaseFigures::read(&stored(&kit), &record);
        let stages = stages(&f, 1_000_000 - 100, &plan);
        let degraded: Vec<bool> = stages.iter().map(|s| s.degraded).collect();
        assert_eq!(degraded, [false, false, true]);
        assert_eq!(stages[1].delivered.p99_ms, Some(30.0));
        assert_eq!(stages.iter().take_while(|s| !s.degraded).last().map(|s| s.rate), Some(20.0));
    }
}
