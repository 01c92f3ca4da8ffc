//! `meshgate probe`: does an implementation speak the peer contract (docs/peer-contract.md)? In the manner of
//! quic-interop-runner's compliance check, one peer is started alone on the backend the runs use and taken through
//! the basics, then two of it exchange one gossipsub message and one request. Each step ends passed, failed or
//! skipped, with its reason; a step is skipped (neither passed nor failed) when what it tests is a role the
//! implementation does not list in `started.features`:
//!
//! | step | passes when | skipped when |
//! | --- | --- | --- |
//! | `started` | the first line on its event stream (stdout, or the events file) is `started`, with `implementation` and `versions` (its `contract_version` is noted) |  |
//! | `listening` | the next event is `listening`, with the listen port among its addresses |  |
//! | `unknown-command` | an unknown command is answered with an `error` naming it and its `cmd_id` |  |
//! | `malformed-line` | a line that is not JSON is answered with an `error` whose `cmd` and `cmd_id` are null |  |
//! | `stop` | `stop` gives `stopped` and exit status 0 (of every peer the probe started normally) |  |
//! | `require` | a configuration requiring `meshgate-probe-reserved` (a separate start) gives `unsupported` naming it and exit status 3 |  |
//! | `roles` | two more starts: asked every revision 2 role it lists (request-response, AutoNAT v1/v2 server and client, port mapping), it starts and listens; asked the first role it does not list, it gives `unsupported` naming it and exit status 3 (a half is left out, and said so, when it lists no role or every role) | it says a contract revision before 2 (such peers ignore the roles' configuration) |
//! | `connect` | one peer dials the other's listen address; both report the connection (directions, negotiation) |  |
//! | `subscribe` | both subscribe to a topic; each reports the other's subscription |  |
//! | `message` | one publishes a message; the other reports it (id, source, size and `sent_us` from the payload) |  |
//! | `request-response` | the second requests 64 bytes of the first (`request`, id `p10`): `request_sent`, then `response_received` of 64 bytes there, `request_received` at the first | it does not list `request-response` (the pair is configured with the role only when it does) |
//! | `events` | every line on stdout and in the events file, of every start, is a contract event |  |
//!
//! `meshgate run` probes every `language: image` implementation of a matrix before its cases ([`probe_images`]).

pub mod peer;
mod prober;
mod report;

pub use prober::probe;
pub use report::{Report, Step, Verdict};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use tokio_util::sync::CancellationToken;

use crate::backend::local::{LocalBackend, LocalNet};
use crate::backend::{Backend, BackendChoice};
use crate::cases::{self, BuildSpec, Case};
use crate::images::Recipes;
use crate::matrix::{Language, Matrix};
use crate::progress::Progress;
use crate::results::CouldNotRun;

/// Every step, in the order the table lists them.
pub const STEPS: [&str; 12] = [
    "started",
    "listening",
    "unknown-command",
    "malformed-line",
    "stop",
    "require",
    "roles",
    "connect",
    "subscribe",
    "message",
    "request-response",
    "events",
];

/// The command no peer knows, and its `cmd_id`.
pub const UNKNOWN_COMMAND: &str = "meshgate-probe-unknown";
/// The topic the pair subscribes to.
const TOPIC: &str = "meshgate";

/// What to probe, from the command line: `rust`, `go` (built as runs build them), or a local image.
pub fn target_spec(target: &str) -> BuildSpec {
    let (language, image) = match target {
        "rust" => (Language::Rust, None),
        "go" => (Language::Go, None),
        image => (Language::Image, Some(image.to_owned())),
    };
    BuildSpec {
        language,
        version: None,
        path: None,
        pins: BTreeMap::new(),
        image,
        companions: BTreeMap::new(),
    }
}

/// The case the probe's peers come from: two peers of the implementation on the runs' defaults (tcp, noise, yamux,
/// identity seeds 1 and 2), the second dialing the first, made by the matrix language itself so that their
/// configurations and addresses are those a run would give them.
pub fn probe_case(spec: &BuildSpec) -> anyhow::Result<Case> {
    let language = match spec.language {
        Language::Rust => "rust",
        Language::Go => "go",
        Language::Image => "image",
    };
    // JSON strings are YAML flow scalars.
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let mut implementation = format!("{{name: probe, language: {language}");
    if let Some(v) = &spec.version {
        implementation.push_str(&format!(", version: {}", quote(v)));
    }
    if let Some(image) = &spec.image {
        implementation.push_str(&format!(", image: {}", quote(image)));
    }
    implementation.push('}');
    let yaml = format!(
        "name: probe\nimplementations:\n  - {implementation}\nnetworks:\n  - name: probe\n    peers: {{probe: 2}}\n    topology: {{edges: [[probe-2, probe-1]]}}\n    gossipsub: {{topics: [{TOPIC}]}}\n"
    );
    let matrix = Matrix::parse(Path::new("(probe)"), &yaml).map_err(|e| anyhow!("{e}"))?;
    let mut case = cases::expand(&matrix)
        .into_iter()
        .next()
        .context("the probe's matrix has no case")?;
    for p in &mut case.peers {
        // What the caller builds (a run's image, with its variables), so that its recipe is found.
        p.build = spec.clone();
    }
    Ok(case)
}


/// Probes every prebuilt image (`language: image`) the run's recipes hold, once each, before the cases, unless
/// the matrix says `probe: false` for every implementation that names it: returns the images that failed, with the
/// failed steps, for their cases to be errored with. The probes' peers use case indices from `first_index` on
/// (after the run's cases) and write to `<out>/probes/<image>/`.
pub async fn probe_images<B: Backend>(
    backend: &B,
    matrix: &Matrix,
    recipes: &Recipes,
    first_index: usize,
    out: &Path,
    progress: &Progress,
    cancel: &CancellationToken,
) -> BTreeMap<BuildSpec, String> {
    let mut failed = BTreeMap::new();
    let probed = |image: &String| {
        matrix
            .implementations
            .iter()
            .any(|i| i.value.image.as_ref() == Some(image) && i.value.probe)
    };
    let images = recipes
        .iter()
        .filter(|(spec, _)| spec.image.as_ref().is_some_and(probed));
    for (k, (spec, recipe)) in images.enumerate() {
        if cancel.is_cancelled() {
            break;
        }
        let label = recipe.label();
        progress.status(format!("probing {label}"));
        let dir = out.join("probes").join(crate::stored::slug(&recipe.image_tag()));
        let report = match probe_case(spec) {
            Ok(case) => probe(backend, &case, recipe, first_index + k, &dir, cancel).await,
            Err(e) => Err(e),
        };
        match report {
            Ok(report) if report.passed() => {
                progress.line(format!(
                    "{} (peers' output in {})",
                    report.headline(),
                    dir.display()
                ));
            }
            Ok(report) => {
                progress.line(format!(
                    "{} (peers' output in {})",
                    report.headline(),
                    dir.display()
                ));
                failed.insert(spec.clone(), report.failures());
            }
            Err(e) => {
                progress.line(format!(
                    "the probe of {label} could not be carried out: {e:#}"
                ));
                failed.insert(
                    spec.clone(),
                    format!("the probe could not be carried out: {e:#}"),
                );
            }
        }
    }
    failed
}

/// What `meshgate probe` is given.
pub struct ProbeOptions {
    /// `rust`, `go`, or a local image.
    pub target: String,
    /// Where the peers' output and `probe.json` go.
    pub out: PathBuf,
    pub backend: BackendChoice,
    pub local_net: LocalNet,
}

/// `meshgate probe`: builds (or finds) the target as a run would, on the backend a run would take, and probes it.
pub async fn command(
    opts: &ProbeOptions,
    run_id: &str,
    cancel: &CancellationToken,
) -> Result<Report, CouldNotRun> {
    let spec = target_spec(&opts.target);
    let case = probe_case(&spec).map_err(CouldNotRun)?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))
        .map_err(CouldNotRun)?;
    if opts.backend == BackendChoice::Swarm {
        let backend = crate::backend::swarm::SwarmBackend::connect(run_id, case.peers.len())
            .await
            .map_err(CouldNotRun)?;
        eprintln!("meshgate: {}", backend.describe());
        return on_backend(&backend, &spec, &case, opts, cancel).await;
    }
    let docker = crate::backend::docker_for(opts.backend, run_id)
        .await
        .map_err(CouldNotRun)?;
    if let Some(backend) = docker {
        return on_backend(&backend, &spec, &case, opts, cancel).await;
    }
    if spec.image.is_some() {
        return Err(CouldNotRun(anyhow!(
            "image {} runs on the Docker backend only, and no Docker engine is used",
            opts.target
        )));
    }
    let backend = LocalBackend::connect(run_id, opts.local_net)
        .await
        .map_err(CouldNotRun)?;
    eprintln!("meshgate: {}", backend.describe());
    on_backend(&backend, &spec, &case, opts, cancel).await
}

async fn on_backend<B: Backend>(
    backend: &B,
    spec: &BuildSpec,
    case: &Case,
    opts: &ProbeOptions,
    cancel: &CancellationToken,
) -> Result<Report, CouldNotRun> {
    if let Err(e) = backend.remove_stale().await {
        eprintln!("meshgate: warning: could not remove leftovers of earlier runs: {e:#}");
    }
    let progress = Progress::new(0);
    let prepared = crate::backend::prepare_images(
        backend,
        std::slice::from_ref(case),
        &opts.out,
        &progress,
        cancel,
        1,
    )
    .await;
    progress.finish();
    let (recipes, broken) = prepared.map_err(CouldNotRun)?;
    if let Some(why) = broken.values().next() {
        return Err(CouldNotRun(anyhow!("{why}")));
    }
    let recipe = recipes
        .get(spec)
        .ok_or_else(|| CouldNotRun(anyhow!("no recipe for {}", opts.target)))?;
    let report = probe(backend, case, recipe, 0, &opts.out, cancel)
        .await
        .map_err(CouldNotRun)?;
    let json = serde_json::to_string_pretty(&report).expect("a report is strings and lists");
    let file = opts.out.join("probe.json");
    std::fs::write(&file, json + "\n")
        .with_context(|| format!("cannot write {}", file.display()))
        .map_err(CouldNotRun)?;
    Ok(report)
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::config as peer_config;

    #[test]
    fn the_probe_case_is_two_peers_of_the_target_the_second_dialing_the_first() {
        let spec = target_spec("my-peer:dev \"quoted\"");
        assert_eq!(spec.language, Language::Image);
        let case = probe_case(&spec).unwrap();
        let names: Vec<&str> = case.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["probe-1", "probe-2"]);
        assert_eq!(case.edges, [(1, 0)]);
        assert!(case.peers.iter().all(|p| p.build == spec));
        let config = peer_config::for_peer(&case, 1);
        assert_eq!(config.seed, 2);
        assert!(
            !config.to_json().contains("require"),
            "runs require nothing"
        );
        let go = probe_case(&target_spec("go")).unwrap();
        assert_eq!(go.peers[0].build.language, Language::Go);
        assert_eq!(go.peers[0].build.image, None);
    }

    #[test]
    fn a_required_feature_is_sent() {
        use contract::config::PeerConfig;
        use contract::features::PROBE_RESERVED;

        let case = probe_case(&target_spec("rust")).unwrap();
        let mut config = peer_config::for_peer(&case, 0);
        config.require = vec![PROBE_RESERVED.to_owned()];
        let sent: PeerConfig = serde_json::from_str(&config.to_json()).unwrap();
        assert_eq!(sent.require, [PROBE_RESERVED]);
    }

    fn report(verdict_of: impl Fn(&str) -> Verdict) -> Report {
        let mut report = Report {
            target: "image x:1".into(),
            image: "x:1".into(),
            implementation: Some("x-libp2p".into()),
            contract_version: Some(2),
            ..Default::default()
        };
        report.steps = STEPS
            .iter()
            .map(|&name| Step {
                name: name.into(),
                verdict: verdict_of(name),
                reason: format!("{name} reason"),
            })
            .collect();
        report
    }

    #[test]
    fn the_report_lists_every_step_and_names_the_failed_ones() {
        use Verdict::*;
        let report = report(|name| match name {
            "events" => Fail,
            "request-response" => Skip,
            _ => Pass,
        });
        assert!(!report.passed());
        assert_eq!(report.failures(), "events: events reason");
        assert_eq!(
            report.headline(),
            "probe of image x:1: FAILED 1 of 12 steps: events (1 skipped: request-response)"
        );
        let table = report.table();
        assert!(
            table.starts_with("meshgate probe image x:1: x:1, x-libp2p, contract version 2\n"),
            "{table}"
        );
        for name in STEPS {
            assert!(
                table
                    .lines()
                    .any(|l| l.starts_with(name) && l.contains(&format!("{name} reason"))),
                "{name}: {table}"
            );
        }
        assert!(
            table.contains("\nevents            FAIL     events reason\n"),
            "{table}"
        );
        assert!(
            table.contains("\nstarted           pass     started reason\n"),
            "{table}"
        );
        assert!(
            table.contains("\nrequest-response  skip     request-response reason\n"),
            "{table}"
        );
        assert!(table.contains("\nskip: not tried, because"), "{table}");
    }

    #[test]
    fn skips_are_no_passes_and_fail_nothing() {
        use Verdict::*;
        let report = report(|name| if name == "roles" { Skip } else { Pass });
        assert!(report.passed(), "nothing failed: exit status 0");
        assert_eq!(report.failures(), "");
        assert_eq!(
            report.headline(),
            "probe of image x:1: PASSED 11 of 12 steps (1 skipped: roles)"
        );
        let all = self::report(|_| Pass);
        assert_eq!(all.headline(), "probe of image x:1: PASSED 12 of 12 steps");
        assert!(!all.table().contains("skip"), "{}", all.table());
    }

    #[test]
    fn probe_json_says_the_verdict_and_passed_for_older_readers() {
        use Verdict::*;
        let report = report(|name| match name {
            "roles" => Skip,
            "events" => Fail,
            _ => Pass,
        });
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        let step = |name: &str| {
            json["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(
            step("roles"),
            serde_json::json!({"name": "roles", "passed": false, "verdict": "skip", "reason": "roles reason"})
        );
        assert_eq!(step("events")["verdict"], "fail");
        assert_eq!(step("events")["passed"], false);
        assert_eq!(step("started")["verdict"], "pass");
        assert_eq!(step("started")["passed"], true);
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        // A probe.json from before skips has `passed` only.
        let old: Step =
            serde_json::from_str(r#"{"name":"stop","passed":false,"reason":"no `stopped`"}"#).unwrap();
        assert_eq!(old.verdict, Fail);
        let old: Step = serde_json::from_str(r#"{"name":"stop","passed":true,"reason":"ok"}"#).unwrap();
        assert_eq!(old.verdict, Pass);
    }
}
