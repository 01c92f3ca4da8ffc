//! A whole run: matrix -> cases -> images -> each case on the backend -> checks -> results -> reports.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::backend::docker::DockerBackend;
use crate::backend::local::{LocalBackend, LocalNet};
use crate::backend::swarm::SwarmBackend;
use crate::backend::{prepare_images, Backend, BackendChoice};
use crate::checks;
use crate::cases::{self, Case};
use crate::events::now_micros;
use crate::judge;
use crate::stored::{self, StoredCase};
use crate::matrix::Matrix;
use crate::peers::Driver;
use crate::images::Recipes;
use crate::progress::Progress;
use crate::reports;
use crate::results::{CaseResult, CouldNotRun, MatrixRef, RunResults};

#[derive(Clone)]
pub struct RunOptions {
    pub matrix: PathBuf,
    pub out: PathBuf,
    /// Only cases whose name contains this.
    pub filter: Option<String>,
    /// Longest a case may take, all phases included.
    pub case_timeout: Duration,
    /// Cases run at once.
    pub jobs: usize,
    pub backend: BackendChoice,
    pub local_net: LocalNet,
    /// Stop a case at the first check failure seen while it runs.
    pub fail_fast: bool,
    /// Attempts per case; a check whose verdicts differ between attempts is flaky.
    pub repeat: u32,
}

pub async fn run(
    opts: &RunOptions,
    run_id: &str,
    cancel: CancellationToken,
) -> Result<RunResults, CouldNotRun> {
    let started_us = now_micros();
    let started = Instant::now();
    let (matrix, mut cases) = cases::load(&opts.matrix).map_err(|e| CouldNotRun(e.into()))?;
    announce_releases(&matrix);
    if let Some(f) = &opts.filter {
        cases.retain(|c| c.name.contains(f.as_str()));
        if cases.is_empty() {
            return Err(CouldNotRun(anyhow::anyhow!(
                "no case of {} matches --filter {f:?}",
                opts.matrix.display()
            )));
        }
    }
    run_loaded(opts, run_id, cancel, &matrix, cases, started_us, started).await
}

/// Runs cases already loaded and selected (`bisect` changes the matrix before) as `run` runs a matrix's.
pub async fn run_cases_of(
    opts: &RunOptions,
    run_id: &str,
    cancel: CancellationToken,
    matrix: &Matrix,
    cases: Vec<Case>,
) -> Result<RunResults, CouldNotRun> {
    run_loaded(opts, run_id, cancel, matrix, cases, now_micros(), Instant::now()).await
}

async fn run_loaded(
    opts: &RunOptions,
    run_id: &str,
    cancel: CancellationToken,
    matrix: &Matrix,
    cases: Vec<Case>,
    started_us: crate::events::Micros,
    started: Instant,
) -> Result<RunResults, CouldNotRun> {
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))
        .map_err(CouldNotRun)?;

    if opts.backend == BackendChoice::Swarm {
        let largest = cases.iter().map(|c| c.peers.len()).max().unwrap_or(0);
        let backend = SwarmBackend::connect(run_id, largest)
            .await
            .map_err(CouldNotRun)?;
        eprintln!("meshgate: {}", backend.describe());
        return run_cases(&backend, &matrix, cases, opts, cancel, started_us, started).await;
    }
    let docker = crate::backend::docker_for(opts.backend, run_id)
        .await
        .map_err(CouldNotRun)?;
    if let Some(backend) = docker {
        return run_cases(&backend, matrix, cases, opts, cancel, started_us, started).await;
    }
    let backend = LocalBackend::connect(run_id, opts.local_net)
        .await
        .map_err(CouldNotRun)?;
    let why = match opts.backend {
        BackendChoice::Auto => "no Docker engine answers, so the local backend runs this: ",
        _ => "",
    };
    eprintln!("meshgate: {why}{}", backend.describe());
    run_cases(&backend, matrix, cases, opts, cancel, started_us, started).await
}

/// Says on stderr what `latest` and `newest: N` stood for (and whether the registry answered), and what could not
/// be derived.
pub fn announce_releases(matrix: &Matrix) {
    for r in &matrix.releases.resolutions {
        eprintln!("meshgate: {}", r.line());
    }
    for w in &matrix.releases.warnings {
        eprintln!("meshgate: warning: {w}");
    }
}

/// Runs the cases on one backend and writes the reports.
async fn run_cases<B: Backend>(
    backend: &B,
    matrix: &Matrix,
    cases: Vec<Case>,
    opts: &RunOptions,
    cancel: CancellationToken,
    started_us: crate::events::Micros,
    started: Instant,
) -> Result<RunResults, CouldNotRun> {
    let progress = Progress::new(cases.len());
    match backend.remove_stale().await {
        Ok(0) => {}
        Ok(n) => progress.line(format!(
            "removed {n} object(s) left on the engine by earlier runs that died"
        )),
        Err(e) => progress.line(format!(
            "warning: could not remove leftovers of earlier runs: {e:#}"
        )),
    }

    let (recipes, broken) =
        prepare_images(backend, &cases, &opts.out, &progress, &cancel, opts.jobs)
            .await
            .map_err(CouldNotRun)?;
    // Prebuilt images are probed before their cases; one that does not speak the contract errors its cases alone.
    let unfit = crate::probe::probe_images(
        backend,
        matrix,
        &recipes,
        cases.len(),
        &opts.out,
        &progress,
        &cancel,
    )
    .await;

    let versions = &matrix.releases.resolutions;
    let matrix = MatrixRef {
        name: matrix.name.clone(),
        file: opts.matrix.display().to_string(),
    };
    let mut results = RunResults {
        meshgate: env!("CARGO_PKG_VERSION").into(),
        matrix: matrix.clone(),
        started_us,
        duration_ms: 0,
        cases: Vec::new(),
        versions: versions.to_vec(),
    };
    // Cases run `jobs` at a time, each on its own network; results keep the matrix order.
    let total = cases.len();
    let (recipes, broken, unfit, progress, matrix) = (&recipes, &broken, &unfit, &progress, &matrix);
    let runs: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let cancel = cancel.clone();
            async move {
                if let Some(why) = &case.unsupported {
                    progress.line(format!("[{}/{total}] {}: skipped: {why}", i + 1, case.name));
                    progress.case_done();
                    return unsupported_case(i, case, why);
                }
                if let Some((label, why)) = case
                    .peers
                    .iter()
                    .find_map(|p| broken.get(&p.build).map(|why| (&p.implementation, why)))
                {
                    return unbuilt_case(i, case, label, why);
                }
                if let Some((label, why)) = case
                    .peers
                    .iter()
                    .find_map(|p| unfit.get(&p.build).map(|why| (&p.implementation, why)))
                {
                    let error = format!("the {label} image failed `meshgate probe`: {why}");
                    return errored_case(i, case, error);
                }
                progress.line(format!("[{}/{total}] {}", i + 1, case.name));
                // Attempts of a case run one after the other: they share the case's network name.
                let mut attempts = Vec::new();
                for attempt in 1..=opts.repeat.max(1) {
                    if attempt > 1 && cancel.is_cancelled() {
                        break;
                    }
                    attempts.push(
                        run_case(
                            backend,
                            matrix,
                            i,
                            case,
                            recipes,
                            opts,
                            attempt,
                            progress,
                            cancel.clone(),
                        )
                        .await,
                    );
                }
                let result = CaseResult::merge_attempts(attempts)
                    .unwrap_or_else(|| unbuilt_case(i, case, "no", "no attempt ran"));
                progress.line(format!(
                    "[{}/{total}] {}: {}",
                    i + 1,
                    case.name,
                    case_verdict_line(&result)
                ));
                progress.case_done();
                result
            }
        })
        .collect();
    let mut runs = futures_util::stream::iter(runs).buffered(opts.jobs.max(1));
    while let Some(result) = runs.next().await {
        results.cases.push(result);
    }
    progress.finish();
    results.duration_ms = started.elapsed().as_millis() as u64;
    reports::write_all(&results, &opts.out).map_err(CouldNotRun)?;
    if cancel.is_cancelled() {
        return Err(CouldNotRun(anyhow::anyhow!(
            "interrupted; partial results in {}",
            opts.out.display()
        )));
    }
    Ok(results)
}

/// `meshgate build`: the images a matrix needs, built or found; returns `label tag` lines.
pub async fn build(
    matrix: &Path,
    out: &Path,
    jobs: usize,
    cancel: &CancellationToken,
) -> Result<Vec<String>, CouldNotRun> {
    let (_, cases) = cases::load(matrix).map_err(|e| CouldNotRun(e.into()))?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create {}", out.display()))
        .map_err(CouldNotRun)?;
    let backend = DockerBackend::connect("build").await.map_err(CouldNotRun)?;
    let progress = Progress::new(0);
    let (recipes, broken) = prepare_images(&backend, &cases, out, &progress, cancel, jobs)
        .await
        .map_err(CouldNotRun)?;
    progress.finish();
    if let Some((spec, why)) = broken.iter().next() {
        return Err(CouldNotRun(anyhow::anyhow!(
            "{} of {} build(s) failed; first, {:?} {}: {why}",
            broken.len(),
            broken.len() + recipes.len(),
            spec.language,
            spec.version.as_deref().unwrap_or("(tree)")
        )));
    }
    Ok(recipes
        .values()
        .map(|r| format!("{}\t{}", r.label(), r.image_tag()))
        .collect())
}

/// A case whose peer could not be built: an error of that case alone, with the build's own words.
fn unbuilt_case(index: usize, case: &Case, implementation: &str, why: &str) -> CaseResult {
    errored_case(
        index,
        case,
        format!("the {implementation} peer could not be built: {why}"),
    )
}

/// A case that cannot be built as its matrix asks (`Case::unsupported`): every check skipped with the reason.
fn unsupported_case(index: usize, case: &Case, why: &str) -> CaseResult {
    CaseResult {
        checks: crate::checks::skip_all(&case.checks, why),
        error: None,
        ..errored_case(index, case, String::new())
    }
}

/// A case that was not run, for `error`.
fn errored_case(index: usize, case: &Case, error: String) -> CaseResult {
    CaseResult {
        name: case.name.clone(),
        network: case.network.clone(),
        properties: case.properties(),
        peers: Vec::new(),
        checks: Vec::new(),
        error: Some(error),
        duration_ms: 0,
        logs: format!("cases/{index:03}-{}", stored::slug(&case.name)),
        stopped_early: None,
        unexercised: Vec::new(),
        notes: Vec::new(),
        timeline: None,
        phases: None,
    }
}


#[allow(clippy::too_many_arguments)]
async fn run_case<B: Backend>(
    backend: &B,
    matrix: &MatrixRef,
    index: usize,
    case: &Case,
    recipes: &Recipes,
    opts: &RunOptions,
    attempt: u32,
    progress: &Progress,
    cancel: CancellationToken,
) -> CaseResult {
    let (out, timeout) = (opts.out.as_path(), opts.case_timeout);
    let (started, started_us) = (Instant::now(), now_micros());
    let logs = stored::attempt_logs(&format!("cases/{index:03}-{}", stored::slug(&case.name)), attempt);
    let dir = out.join(&logs);
    progress.status(format!("running {}", case.name));
    // How running the case went; kept beside its record, so that `meshgate judge` can judge it again as here.
    let mut stored = StoredCase {
        format: stored::FORMAT,
        matrix: matrix.clone(),
        case: case.clone(),
        attempt,
        logs,
        started_us,
        duration_ms: 0,
        peers: Vec::new(),
        unsupported: None,
        error: None,
        timed_out: None,
        stopped_early: None,
        notes: Vec::new(),
        live_failures: Vec::new(),
    };
    let driver = match Driver::new(backend, index, case, &dir, cancel.clone()) {
        Ok(d) => d,
        Err(e) => {
            stored.error = Some(format!("cannot prepare {}: {e:#}", dir.display()));
            return judge::case(&stored, &[]);
        }
    };
    // The case timeout cancels the driver's script, which then still stops its peers and keeps the record.
    let case_cancel = cancel.child_token();
    let timer = {
        let c = case_cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            c.cancel();
        })
    };
    let driver = driver
        .with_cancel(case_cancel)
        .with_live(checks::watchers(&case.checks), progress, opts.fail_fast);
    let record = tokio::select! {
        r = driver.run(recipes) => r,
        () = test_panic_hook(&dir) => unreachable!("the test hook panics"),
    };
    let timed_out = timer.is_finished() && !cancel.is_cancelled();
    timer.abort();
    let clean_up = Instant::now();
    if let Err(e) = backend.remove_case(index).await {
        progress.line(format!("warning: clean-up of {}: {e:#}", case.name));
    }
    let clean_up_ms = clean_up.elapsed().as_millis() as u64;

    stored.duration_ms = started.elapsed().as_millis() as u64;
    stored.peers = record.peers;
    stored.unsupported = record.unsupported;
    stored.error = record.error;
    stored.timed_out = timed_out.then_some(timeout);
    stored.stopped_early = record.stopped_early;
    stored.notes = record.notes;
    stored.live_failures = record
        .live_failures
        .into_iter()
        .map(|(at, line)| stored::LiveFailure { at, line })
        .collect();
    let judging = Instant::now();
    let mut result = judge::case(&stored, &record.record);
    result.phases = Some(crate::results::Phases {
        clean_up_ms,
        judge_ms: judging.elapsed().as_millis() as u64,
    });
    if let Err(e) = stored.write(&dir) {
        result.error.get_or_insert(format!("{e:#}"));
    }
    result
}

fn case_verdict_line(case: &CaseResult) -> String {
    case.verdict_line()
}



/// A test hook, read here and nowhere else: `MESHGATE_TEST_PANIC=after-start` makes the runner panic as soon as
/// the first peer of a case has started (has written an event), so that the end-to-end tests can show that a
/// panicking runner still removes everything and says why it failed. Without it, this never resolves.
async fn test_panic_hook(case_dir: &Path) {
    if std::env::var("MESHGATE_TEST_PANIC").as_deref() != Ok("after-start") {
        return std::future::pending().await;
    }
    loop {
        let started = std::fs::read_dir(case_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name().to_string_lossy().ends_with(".events.jsonl")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            });
        if started {
            panic!("MESHGATE_TEST_PANIC=after-start: the test hook panics the runner after the first peers started");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
}
