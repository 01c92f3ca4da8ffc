//! The `meshgate` command. Exit codes (`results::Outcome`): 0 something was judged and every case passed, was known
//! or skipped; 1 a case failed, was inconclusive or errored while other checks were judged; 2 nothing was judged, or
//! the run could not be carried out (bad matrix, no engine, interrupted, a panic), or it passed but something of it
//! could not be removed. Whatever
//! clean-up could not remove is printed, one `meshgate: clean-up: could not remove ...` line per object, on every
//! exit path.
//!
//! Test hook: `MESHGATE_TEST_PANIC=after-start` panics the runner once the first peers of a case started (read in
//! `run::test_panic_hook` alone), for the end-to-end test of clean-up after a panic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use meshgate::backend::local::LocalNet;
use meshgate::judge::overrides::Override;
use meshgate::backend::{self, BackendChoice};
use meshgate::results::CouldNotRun;
use meshgate::run::{self, RunOptions};
use meshgate::{cases, results::RunResults};

#[derive(Parser)]
#[command(
    name = "meshgate",
    version,
    about = "Cross-language libp2p interoperability suite"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every case of a matrix and write results.json and junit.xml.
    Run {
        /// The matrix file (YAML).
        matrix: PathBuf,
        /// Folder for results, reports and peer logs.
        #[arg(long, default_value = "reports/latest")]
        out: PathBuf,
        /// Only run cases whose name contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Longest a case may take (e.g. 90s, 5m).
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        case_timeout: Duration,
        /// Cases run at once, each on its own network.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        /// Where the peers run: Docker containers, or processes on this machine (auto: Docker when an engine
        /// answers, else local).
        #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
        backend: BackendChoice,
        /// How local peers are connected (auto: a network namespace each when root with iproute2, else loopback).
        #[arg(long, value_enum, default_value_t = LocalNet::Auto)]
        local_net: LocalNet,
        /// Stop each case at the first check failure seen while it runs (the verdict still judges the record).
        #[arg(long)]
        fail_fast: bool,
        /// Longest the whole run may take (e.g. 45m); then it stops like on Ctrl-C, with partial results.
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
        /// Run each case this many times; a check whose verdicts differ between attempts is reported flaky.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        repeat: u32,
    },
    /// Find the first release where a case goes bad: binary search over the releases between --good and --bad
    /// (from the registry), running the case at each step; when the implementation builds from a local git
    /// checkout (`path:`), over its commits instead; for rust-libp2p, then over the sub-crate releases inside the
    /// newer of the two releases named. Writes bisect.json and bisect.md into --out.
    /// Exits 0 when it named a release or commit, 2 when it could not.
    Bisect {
        matrix: PathBuf,
        /// Text in the name of the one case to run (the implementation's version left out), e.g. quirky-router.
        #[arg(long)]
        case: String,
        /// The implementation whose version varies (its name in the matrix).
        #[arg(long = "impl")]
        implementation: String,
        /// A release where the case passes (with a local checkout: a commit, tag or branch).
        #[arg(long)]
        good: String,
        /// A release (or commit) where it fails (may be older than --good: then the fix is found).
        #[arg(long)]
        bad: String,
        /// Attempts per step: a step that fails in any attempt is bad.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        repeat: u32,
        #[arg(long, default_value = "reports/bisect")]
        out: PathBuf,
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        case_timeout: Duration,
        #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
        backend: BackendChoice,
    },
    /// Build (or find) the peer images a matrix needs, without running anything.
    Build {
        matrix: PathBuf,
        /// Folder for the build logs.
        #[arg(long, default_value = "reports/build")]
        out: PathBuf,
        /// Builds at once (independent images build in parallel).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
    },
    /// Print the cases of a matrix without running anything.
    List { matrix: PathBuf },
    /// Judge a run (or one case of it) again from what it recorded, without running anything, and write
    /// results.json and the reports anew. Exits like `run`: 0 passed, 1 failed, 2 nothing judged or not judgeable.
    Judge {
        /// A run's folder (the --out of `meshgate run`) or one of its case folders (cases/NNN-...).
        path: PathBuf,
        /// Change a check setting before judging, as the matrix would write it: delivery.deadline=2s,
        /// streams=off. Repeatable.
        #[arg(long = "set", value_name = "CHECK.FIELD=VALUE")]
        set: Vec<Override>,
        /// Where to write results.json and the reports; by default PATH itself.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Render the reports again from a results.json; with --issue, write one failing case as an upstream issue
    /// instead (issue-<case>-<check>.md, printed too, and issue-<case>-<check>.yaml, a matrix that runs it alone).
    Report {
        results: PathBuf,
        /// Where to write them; by default beside the results file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The case to write an issue about: its name, its folder (000 or 000-...), or a part of its name only it
        /// has. Needs the run's folder (cases/ beside results.json), not results.json alone.
        #[arg(long, value_name = "CASE")]
        issue: Option<String>,
    },
    /// List the verdicts that changed between two results.json (new failures, fixed, other changes).
    /// Exits 1 when there are new failures or newly flaky checks.
    Diff { old: PathBuf, new: PathBuf },
    /// Check that an implementation speaks the peer contract (docs/peer-contract.md): one peer alone, then two.
    /// Prints a table of steps; exits 0 when every step passed, 1 when one failed, 2 when it could not run.
    Probe {
        /// `rust` or `go` (built as a run builds them), or a local image for a `language: image` peer.
        target: String,
        /// Folder for the peers' output and probe.json.
        #[arg(long, default_value = "reports/probe")]
        out: PathBuf,
        /// Where the peers run (auto: Docker when an engine answers, else local; images need Docker).
        #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
        backend: BackendChoice,
        /// How local peers are connected.
        #[arg(long, value_enum, default_value_t = LocalNet::Auto)]
        local_net: LocalNet,
    },
    /// Measure the runner on this machine: per-case overhead against bare containers, time to a verdict of the
    /// smoke matrix, networks of 25 to 200 peers and a load curve, detection latency (docs/benchmarks.md).
    /// Writes bench.json and bench.md to --out and prints the tables; exits 0 when it ran, 2 when it could not.
    Bench {
        /// Folder for bench.json and bench.md.
        #[arg(long, default_value = "reports/bench")]
        out: PathBuf,
        /// Small sizes and one repeat: a minute or two.
        #[arg(long)]
        quick: bool,
        /// Only this part.
        #[arg(long, value_enum)]
        only: Option<meshgate::bench::Part>,
        /// Repeats of the small parts (default 3, 1 with --quick).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
        repeat: Option<u32>,
        /// The largest scale network; beyond 200 peers the size doubles while the network holds.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(2..=5000))]
        max_peers: u64,
        /// Keep the generated matrices and every run's output in OUT/runs.
        #[arg(long)]
        keep: bool,
    },
    /// Report what a run needs on this machine (engine, toolchains, namespaces, disk) and what is missing.
    Doctor,
    /// Remove every container and network meshgate left on the engine, every local peer and namespace, and every
    /// run's event pipes.
    Clean,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESHGATE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // The threads that take in the peers' output go first on a saturated host, where permitted (`priority`;
        // `meshgate doctor` says whether it is).
        .on_thread_start(|| {
            let _ = meshgate::priority::raise_this_thread();
        })
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshgate: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    ExitCode::from(rt.block_on(dispatch(cli.command)))
}

async fn dispatch(command: Command) -> u8 {
    match command {
        Command::Run {
            matrix,
            out,
            filter,
            case_timeout,
            jobs,
            backend,
            local_net,
            fail_fast,
            repeat,
            timeout,
        } => {
            run_matrix(
                RunOptions {
                    matrix,
                    out,
                    filter,
                    case_timeout,
                    jobs: jobs.into(),
                    backend,
                    local_net,
                    fail_fast,
                    repeat,
                },
                timeout,
            )
            .await
        }
        Command::Bisect { matrix, case, implementation, good, bad, repeat, out, case_timeout, backend } => {
            let opts = meshgate::bisect::BisectOptions {
                run: RunOptions {
                    matrix,
                    out,
                    filter: None,
                    case_timeout,
                    jobs: 1,
                    backend,
                    local_net: LocalNet::Auto,
                    fail_fast: false,
                    repeat,
                },
                case,
                implementation,
                good,
                bad,
            };
            supervised(
                backend,
                None,
                "the bisection's peers",
                move |run_id, cancel| async move { meshgate::bisect::bisect(&opts, &run_id, cancel).await },
                |b: meshgate::bisect::Bisected| {
                    print!("{}", b.markdown());
                    eprintln!("meshgate: {}", b.headline());
                    if b.first_bad.is_some() && b.undecided.is_empty() { 0 } else { 2 }
                },
            )
            .await
        }
        Command::Build { matrix, out, jobs } => {
            let cancel = CancellationToken::new();
            let stop = cancel.clone();
            tokio::spawn(async move {
                interrupted().await;
                stop.cancel();
            });
            match run::build(&matrix, &out, jobs.into(), &cancel).await {
                Ok(images) => {
                    for image in images {
                        println!("{image}");
                    }
                    0
                }
                Err(e) => fail(e),
            }
        }
        Command::List { matrix } => match cases::load(&matrix) {
            Ok((m, cases)) => {
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                // What `latest` and `newest: N` stood for, first, as `#` lines (a case name never starts so).
                for r in &m.releases.resolutions {
                    let _ = writeln!(stdout, "# {}", r.line());
                }
                for w in &m.releases.warnings {
                    eprintln!("meshgate: warning: {w}");
                }
                for case in cases {
                    let line = match &case.unsupported {
                        Some(why) => format!("{}  # skipped: {why}", case.name),
                        None => case.name,
                    };
                    // A closed pipe (`| head`) ends the listing, not in a panic.
                    if writeln!(stdout, "{line}").is_err() {
                        break;
                    }
                }
                0
            }
            Err(e) => fail(e),
        },
        Command::Probe {
            target,
            out,
            backend,
            local_net,
        } => {
            probe(meshgate::probe::ProbeOptions {
                target,
                out,
                backend,
                local_net,
            })
            .await
        }
        Command::Bench {
            out,
            quick,
            only,
            repeat,
            max_peers,
            keep,
        } => {
            let opts = meshgate::bench::BenchOptions {
                out,
                quick,
                only,
                repeat,
                max_peers: max_peers as usize,
                keep,
            };
            bench(opts).await
        }
        Command::Doctor => {
            let (text, ok) = meshgate::doctor::render(&meshgate::doctor::examine().await);
            print!("{text}");
            if ok {
                0
            } else {
                2
            }
        }
        Command::Diff { old, new } => match (RunResults::read(&old), RunResults::read(&new)) {
            (Ok(old), Ok(new)) => {
                let diff = meshgate::reports::diff::Diff::between(&old, &new);
                print!("{}", diff.render());
                u8::from(diff.worse())
            }
            (Err(e), _) | (_, Err(e)) => fail(e),
        },
        Command::Judge { path, set, out } => {
            match meshgate::rejudge::judge(&path, &set, out.as_deref()) {
                Ok(judged) => {
                    use std::io::Write;
                    let mut stdout = std::io::stdout().lock();
                    for case in &judged.results.cases {
                        // A closed pipe ends the listing; the verdict still goes to stderr.
                        if writeln!(stdout, "{}: {}", case.name, case.verdict_line()).is_err() {
                            break;
                        }
                    }
                    eprintln!(
                        "meshgate: {} (reports in {})",
                        judged.results.headline(),
                        judged.out.display()
                    );
                    judged.results.outcome().exit_code() as u8
                }
                Err(e) => fail(e),
            }
        }
        Command::Report {
            results,
            out,
            issue: Some(case),
        } => {
            let dir =
                out.unwrap_or_else(|| results.parent().map(PathBuf::from).unwrap_or_default());
            match meshgate::issue::write(&results, &case, &dir) {
                Ok(w) => {
                    use std::io::Write;
                    // A closed pipe (`| head`) still leaves the files written.
                    let _ = std::io::stdout().lock().write_all(w.issue.body.as_bytes());
                    eprintln!(
                        "meshgate: issue about [{}] of {} written to {} (title: {}); reproduce it with `meshgate run {}`",
                        w.issue.check,
                        w.issue.case,
                        w.body_file.display(),
                        w.issue.title,
                        w.matrix_file.display()
                    );
                    0
                }
                Err(e) => fail(e),
            }
        }
        Command::Report {
            results,
            out,
            issue: None,
        } => {
            let dir =
                out.unwrap_or_else(|| results.parent().map(PathBuf::from).unwrap_or_default());
            match RunResults::read(&results)
                .and_then(|r| meshgate::reports::write_all(&r, &dir).map(|_| r))
            {
                Ok(r) => {
                    eprintln!(
                        "meshgate: reports written to {}; {}",
                        dir.display(),
                        r.headline()
                    );
                    0
                }
                Err(e) => fail(e),
            }
        }
        Command::Clean => {
            // Local leftovers go whether or not an engine answers; an engine that does not answer holds nothing.
            // The event pipes are this machine's files, whichever engine their peers ran on.
            let local = meshgate::backend::local::remove_all()
                .await
                .map(|n| n + meshgate::backend::pipes::remove_all());
            let docker = async {
                let backend = meshgate::backend::docker::DockerBackend::connect("clean").await?;
                backend.remove_all().await
            };
            match (docker.await, local) {
                (_, Err(e)) => fail(e),
                (Ok(n), Ok(l)) => {
                    eprintln!("meshgate: removed {n} container(s) and network(s), {l} local process(es), namespace(s), state file(s) and event pipe folder(s)");
                    0
                }
                (Err(e), Ok(l)) => {
                    eprintln!("meshgate: removed {l} local process(es), namespace(s), state file(s) and event pipe folder(s); no Docker engine to clean: {e:#}");
                    0
                }
            }
        }
    }
}

fn fail(e: impl std::fmt::Display) -> u8 {
    eprintln!("meshgate: {e:#}");
    2
}

/// Runs `work` in its own task under a new run id, so that Ctrl-C, SIGTERM, the `timeout` and panics all end in
/// the same clean-up of whatever it made; `done` turns what it gave into the exit status. An interruption cancels
/// the work, which still stops its peers and keeps what it recorded; a second one aborts it.
async fn supervised<T: Send + 'static, F>(
    choice: BackendChoice,
    timeout: Option<Duration>,
    what: &str,
    work: impl FnOnce(String, CancellationToken) -> F,
    done: impl FnOnce(T) -> u8,
) -> u8
where
    F: std::future::Future<Output = Result<T, CouldNotRun>> + Send + 'static,
{
    let run_id = backend::new_run_id();
    let cancel = CancellationToken::new();
    let mut task = tokio::spawn(work(run_id.clone(), cancel.clone()));
    let stop = async {
        match timeout {
            Some(t) => tokio::select! {
                s = interrupted() => s.to_owned(),
                _ = tokio::time::sleep(t) => format!("timed out after {}", humantime::format_duration(t)),
            },
            None => interrupted().await.to_owned(),
        }
    };
    let outcome = tokio::select! {
        r = &mut task => r,
        signal = stop => {
            eprintln!("meshgate: {signal}: stopping {what} and cleaning up (again to force)");
            cancel.cancel();
            tokio::select! {
                r = &mut task => r,
                signal = interrupted() => {
                    eprintln!("meshgate: {signal} again: removing the peers without waiting for them");
                    task.abort();
                    Ok(Err(CouldNotRun(anyhow::anyhow!("interrupted"))))
                }
            }
        }
    };
    // Every path comes here (checks passed or failed, an error, Ctrl-C, SIGTERM, a timeout, a panic of the work):
    // remove whatever it made. Its own task, so that even a panic there is reported rather than fatal.
    let cleanup = match tokio::spawn({
        let run_id = run_id.clone();
        async move { backend::clean_up(&run_id, choice).await }
    })
    .await
    {
        Ok(errors) => errors,
        Err(e) => vec![anyhow::anyhow!(
            "what the run made: the clean-up itself failed (a bug in meshgate): {e}"
        )],
    };
    let code = match outcome {
        Ok(Ok(value)) => done(value),
        Ok(Err(e)) => fail(e),
        Err(e) if e.is_panic() => fail(format!("internal error (a bug in meshgate): {e}")),
        Err(e) => fail(e),
    };
    for e in &cleanup {
        eprintln!("meshgate: clean-up: could not remove {e:#}");
    }
    // Work that passed but left something behind could not be carried out cleanly; failed checks stay exit 1.
    if !cleanup.is_empty() && code == 0 {
        2
    } else {
        code
    }
}

/// `meshgate run`: the matrix's cases, then the headline and the exit status of its outcome.
async fn run_matrix(opts: RunOptions, timeout: Option<Duration>) -> u8 {
    let (choice, out) = (opts.backend, opts.out.clone());
    supervised(
        choice,
        timeout,
        "peers",
        move |run_id, cancel| async move { run::run(&opts, &run_id, cancel).await },
        |results: RunResults| {
            eprintln!(
                "meshgate: {} (reports in {})",
                results.headline(),
                out.display()
            );
            results.outcome().exit_code() as u8
        },
    )
    .await
}

/// `meshgate probe`: the table on stdout, the headline on stderr; 0 every step passed, 1 a step failed.
async fn probe(opts: meshgate::probe::ProbeOptions) -> u8 {
    supervised(
        opts.backend,
        None,
        "the probe's peers",
        move |run_id, cancel| async move { meshgate::probe::command(&opts, &run_id, &cancel).await },
        |report: meshgate::probe::Report| {
            print!("{}", report.table());
            eprintln!("meshgate: {}", report.headline());
            u8::from(!report.passed())
        },
    )
    .await
}

/// `meshgate bench`: the tables on stdout; 0 when it ran (whatever the networks did), 2 when it could not.
async fn bench(opts: meshgate::bench::BenchOptions) -> u8 {
    let out = opts.out.clone();
    supervised(
        BackendChoice::Docker,
        None,
        "the bench",
        move |run_id, cancel| async move { meshgate::bench::bench(&opts, &run_id, cancel).await },
        |b: meshgate::bench::Bench| {
            print!("{}", meshgate::bench::render(&b));
            eprintln!(
                "meshgate: bench ran in {:.0} s; {} and bench.md in {}",
                b.duration_s,
                meshgate::bench::BENCH_FILE,
                out.display()
            );
            0
        },
    )
    .await
}

/// Resolves on Ctrl-C or SIGTERM, naming which.
async fn interrupted() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
    }
}
