//! `meshgate bench`: how fast and how far the runner goes on this machine, measured with the runner's own run path
//! (`run::run`) on matrices it writes, and read from what those runs keep (results.json, each case's case.json and
//! record). Four parts: the per-case overhead against bare containers (`overhead`), the time to a verdict of the
//! smoke matrix and its split (`verdict`), networks of growing size and a rising load (`scale`), and how soon a
//! breaking event is announced (`detection`). Machines like this one are shared and noisy: every time is a median
//! over repeats, and the overhead is a ratio to bare containers measured in the same run, never a lone absolute time.

mod detection;
mod figures;
mod matrices;
mod overhead;
mod report;
mod scale;
mod usage;
mod verdict;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::backend::docker::DockerBackend;
use crate::backend::BackendChoice;
use crate::backend::local::LocalNet;
use crate::events::Recorded;
use crate::results::{CouldNotRun, RunResults};
use crate::run::{self, RunOptions};
use crate::stored::{self, StoredCase};
use figures::CaseFigures;
use usage::{Spent, Usage};

pub use report::{render, BENCH_FILE};

/// The bench's parts, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Overhead,
    Verdict,
    Scale,
    Detection,
}

pub struct BenchOptions {
    /// Where bench.json and bench.md go.
    pub out: PathBuf,
    /// Small sizes and one repeat: the whole bench in a minute or two, for a test.
    pub quick: bool,
    pub only: Option<Part>,
    /// Repeats of the small parts (overhead, verdict, detection); the medians are over them.
    pub repeat: Option<u32>,
    /// The largest network the scale part runs; beyond 200 it doubles until a step breaks or this is reached.
    pub max_peers: usize,
    /// Keep the generated matrices and the runs' outputs in `<out>/runs` (else they go to a temporary folder,
    /// removed when the bench ends).
    pub keep: bool,
}

/// What the bench measured: bench.json.
#[derive(Debug, Serialize)]
pub struct Bench {
    pub meshgate: String,
    /// RFC 3339.
    pub started: String,
    pub duration_s: f64,
    pub quick: bool,
    pub repeat: u32,
    pub cores: usize,
    pub overhead: Vec<overhead::Overhead>,
    pub verdict: Option<verdict::Verdict>,
    pub scale: Option<scale::Scale>,
    pub detection: Option<detection::Detection>,
    /// What did not go as planned (a case that errored, a figure its record could not give), one line each.
    pub problems: Vec<String>,
}

/// The sizes each part runs at.
struct Plan {
    repeat: u32,
    overhead_peers: Vec<usize>,
    scale_peers: Vec<usize>,
    /// Doubling the largest network while it holds, up to `max_peers`.
    beyond: bool,
    max_peers: usize,
    load: matrices::Load,
    curve_peers: usize,
    curve: Vec<matrices::Stage>,
    /// Listening after the last publish, at most: a case stops as soon as nothing is due, and what the drain cuts
    /// counts as missed, so the full plan waits as long as a delivery may take (the `delivery` deadline): on a
    /// saturated host a 5 s drain cut deliveries still within it (one of 39,800 at 200 peers, a harness-made miss).
    drain: Duration,
}

impl Plan {
    fn of(opts: &BenchOptions) -> Self {
        let s = Duration::from_secs;
        let keep = |sizes: &[usize]| -> Vec<usize> {
            sizes.iter().copied().filter(|&n| n <= opts.max_peers.max(2)).collect()
        };
        if opts.quick {
            return Plan {
                repeat: opts.repeat.unwrap_or(1),
                overhead_peers: keep(&[2, 4]),
                scale_peers: keep(&[4, 8]),
                beyond: false,
                max_peers: opts.max_peers,
                load: matrices::Load { rate: 10.0, length: s(4) },
                curve_peers: 6.min(opts.max_peers),
                curve: matrices::stages(&[10.0, 40.0], s(3), s(1)),
                drain: s(2),
            };
        }
        Plan {
            repeat: opts.repeat.unwrap_or(3),
            overhead_peers: keep(&[2, 10, 50]),
            scale_peers: keep(&[25, 50, 100, 200]),
            beyond: true,
            max_peers: opts.max_peers,
            load: matrices::Load { rate: 10.0, length: s(20) },
            curve_peers: 100.min(opts.max_peers),
            curve: matrices::stages(&[10.0, 20.0, 40.0, 80.0], s(10), s(3)),
            drain: crate::matrix::checks::delivery::Settings::default().deadline,
        }
    }
}

/// Runs the bench; `Err` when it could not run at all (no engine, the peers do not build, interrupted).
pub async fn bench(
    opts: &BenchOptions,
    run_id: &str,
    cancel: CancellationToken,
) -> Result<Bench, CouldNotRun> {
    let began = Instant::now();
    let plan = Plan::of(opts);
    let work = match opts.keep {
        true => opts.out.join("runs"),
        false => std::env::temp_dir().join(format!("meshgate-bench-{run_id}")),
    };
    std::fs::create_dir_all(&work)
        .with_context(|| format!("cannot create {}", work.display()))
        .map_err(CouldNotRun)?;
    // Whatever way the bench ends, what it wrote to the temporary folder goes.
    let _work = (!opts.keep).then(|| RemovedOnDrop(work.clone()));
    let docker = DockerBackend::connect(run_id).await.map_err(CouldNotRun)?;
    let runner = Runner {
        run_id,
        cancel: &cancel,
        dir: work.clone(),
        runs: AtomicUsize::new(0),
    };
    // The images first, so that every part runs with a warm cache and no part is timed building.
    eprintln!("meshgate bench: building or finding the peer images");
    let smoke = crate::images::project_root().join("matrices/smoke.yaml");
    run::build(&smoke, &work.join("build"), 2, &cancel).await?;

    let mut bench = Bench {
        meshgate: env!("CARGO_PKG_VERSION").into(),
        started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        duration_s: 0.0,
        quick: opts.quick,
        repeat: plan.repeat,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        overhead: Vec::new(),
        verdict: None,
        scale: None,
        detection: None,
        problems: Vec::new(),
    };
    let wanted = |p: Part| opts.only.is_none_or(|o| o == p);
    if wanted(Part::Overhead) {
        bench.overhead = overhead::measure(&runner, &docker, &plan, &mut bench.problems).await?;
    }
    if wanted(Part::Verdict) {
        bench.verdict = verdict::measure(&runner, &smoke, plan.repeat, &mut bench.problems).await?;
    }
    if wanted(Part::Scale) {
        bench.scale = Some(scale::measure(&runner, &plan, &mut bench.problems).await?);
    }
    if wanted(Part::Detection) {
        bench.detection = detection::measure(&runner, plan.repeat, &mut bench.problems).await?;
    }
    bench.duration_s = began.elapsed().as_secs_f64();
    report::write(&bench, &opts.out).map_err(CouldNotRun)?;
    Ok(bench)
}

struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs generated matrices through the runner's own run path, one after another, under the bench's run id.
struct Runner<'a> {
    run_id: &'a str,
    cancel: &'a CancellationToken,
    /// Matrices and run outputs go here.
    dir: PathBuf,
    runs: AtomicUsize,
}

/// A finished run of a matrix: its results, every case it kept, and what the run cost.
struct Ran {
    results: RunResults,
    cases: Vec<Kept>,
    spent: Spent,
    /// The problems of its cases: errors, and cases that kept nothing to read.
    problems: Vec<String>,
}

/// A case as kept by the run, with the figures of its record.
struct Kept {
    stored: StoredCase,
    figures: CaseFigures,
    record: Vec<Recorded>,
}

impl Runner<'_> {
    /// Writes `yaml` as a matrix named `name` and runs it.
    async fn run_yaml(&self, name: &str, yaml: &str) -> Result<Ran, CouldNotRun> {
        let path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml)
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(CouldNotRun)?;
        self.run(name, &path).await
    }

    /// Runs a matrix file; its output goes to a folder of its own.
    async fn run(&self, name: &str, matrix: &Path) -> Result<Ran, CouldNotRun> {
        let n = self.runs.fetch_add(1, Ordering::Relaxed) + 1;
        let out = self.dir.join(format!("{n:02}-{name}"));
        let opts = RunOptions {
            matrix: matrix.to_owned(),
            out: out.clone(),
            filter: None,
            case_timeout: Duration::from_secs(600),
            jobs: 1,
            backend: BackendChoice::Docker,
            local_net: LocalNet::Auto,
            fail_fast: false,
            repeat: 1,
        };
        eprintln!("meshgate bench: running {name}");
        let usage = Usage::start();
        let results = run::run(&opts, self.run_id, self.cancel.clone()).await?;
        let spent = usage.since();
        let mut ran = Ran {
            cases: Vec::new(),
            spent,
            problems: Vec::new(),
            results,
        };
        for case in &ran.results.cases {
            if let Some(e) = &case.error {
                ran.problems.push(format!("{name}: {} errored: {e}", case.name));
            }
            let dir = out.join(&case.logs);
            let kept = StoredCase::read(&dir).and_then(|s| Ok((s, stored::read_record(&dir)?)));
            match kept {
                Ok((stored, record)) => ran.cases.push(Kept {
                    figures: CaseFigures::read(&stored, &record),
                    stored,
                    record,
                }),
                Err(e) => ran.problems.push(format!("{name}: {} kept nothing to read: {e:#}", case.name)),
            }
        }
        Ok(ran)
    }
}

impl Ran {
    /// The run's only case, or why there is none to measure.
    fn only_case(&self) -> Result<&Kept, String> {
        self.cases
            .first()
            .ok_or_else(|| self.problems.first().cloned().unwrap_or_else(|| "no case ran".into()))
    }
}

/// Milliseconds between two time stamps, when both are there.
fn between(from: Option<crate::events::Micros>, to: Option<crate::events::Micros>) -> Option<f64> {
    Some(figures::ms(to? - from?))
}
