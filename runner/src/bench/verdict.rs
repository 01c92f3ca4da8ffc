//! The time to a verdict: the smoke matrix end to end with a warm cache, and where that time goes. The peers'
//! phases come from each case's record, the runner's own steps after them from the case's `phases`, and the rest
//! from the run's results: medians over the repeats, phase by phase.

use std::path::Path;

use serde::Serialize;

use super::figures::median;
use super::{between, Ran, Runner};
use crate::results::CouldNotRun;

/// Each phase in ms, summed over the matrix's cases (they run one after the other).
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub repeats: usize,
    /// The run's verdict line, of the last repeat.
    pub headline: String,
    /// The whole run, from `run` being called to its reports written.
    pub total_ms: Option<f64>,
    /// (name, what it is, median ms), in the order they happen.
    pub phases: Vec<(String, String, Option<f64>)>,
}

/// The split's phases: name, what it covers.
const PHASES: &[(&str, &str)] = &[
    ("build check", "matrix read, engine reached, leftovers swept, images found by their hash"),
    ("start", "case network made, containers created and started, until every peer listens"),
    ("warm-up", "dials and subscriptions, until meshes form (or the warm-up ends)"),
    ("scenario", "the time line: first to last publish and incident"),
    ("waiting for deliveries", "the drain after the last step"),
    ("stop", "`stop` sent, the peers' exits awaited, the record kept"),
    ("clean-up", "the case's containers and network removed"),
    ("checks", "every check judging the record"),
    ("reports", "results.json, junit.xml, summary.md, index.html written"),
    ("other", "what no phase above covers"),
];

pub(super) async fn measure(
    runner: &Runner<'_>,
    smoke: &Path,
    repeat: u32,
    problems: &mut Vec<String>,
) -> Result<Option<Verdict>, CouldNotRun> {
    let mut splits: Vec<(f64, Vec<Option<f64>>)> = Vec::new();
    let mut headline = String::new();
    for _ in 0..repeat {
        let ran = runner.run("smoke", smoke).await?;
        problems.extend(ran.problems.iter().cloned());
        headline = ran.results.headline();
        splits.push((ran.spent.wall_s * 1000.0, split(&ran)));
    }
    if splits.is_empty() {
        return Ok(None);
    }
    Ok(Some(Verdict {
        repeats: splits.len(),
        headline,
        total_ms: median(splits.iter().map(|(t, _)| *t)),
        phases: PHASES
            .iter()
            .enumerate()
            .map(|(i, (name, what))| {
                (name.to_string(), what.to_string(), median(splits.iter().filter_map(|(_, s)| s[i])))
            })
            .collect(),
    }))
}

/// One run's phases, in the order of [`PHASES`].
fn split(ran: &Ran) -> Vec<Option<f64>> {
    let r = &ran.results;
    let total = ran.spent.wall_s * 1000.0;
    let sum = |f: &dyn Fn(&super::Kept) -> Option<f64>| -> Option<f64> {
        ran.cases.iter().map(f).sum::<Option<f64>>()
    };
    let build_check = ran
        .cases
        .first()
        .and_then(|k| between(Some(r.started_us), Some(k.stored.started_us)));
    let phases = |k: &super::Kept| {
        r.cases.iter().find(|c| c.logs == k.stored.logs).and_then(|c| c.phases)
    };
    let clean_up = sum(&|k| phases(k).map(|p| p.clean_up_ms as f64));
    let mut split = vec![
        build_check,
        sum(&|k| between(Some(k.figures.started), k.figures.listening)),
        sum(&|k| between(k.figures.listening, k.figures.first_publish)),
        sum(&|k| between(k.figures.first_publish, k.figures.last_step)),
        sum(&|k| between(k.figures.last_step, k.figures.first_stop)),
        // From the first `stop` to the end of the case, less its clean-up.
        sum(&|k| Some(between(k.figures.first_stop, Some(k.figures.ended))? - phases(k)?.clean_up_ms as f64)),
        clean_up,
        sum(&|k| phases(k).map(|p| p.judge_ms as f64)),
        // The results are complete, and timed, just before the reports are written.
        Some(total - r.duration_ms as f64),
    ];
    let known: f64 = split.iter().flatten().sum();
    split.push(split.iter().all(Option::is_some).then_some(total - known));
    split
}
