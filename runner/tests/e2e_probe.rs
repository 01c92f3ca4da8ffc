//! End to end, on a real Docker engine: `meshgate probe` takes the real rust-libp2p and go-libp2p peers through every
//! step of the contract's basics, names the line of an image that writes something that is not an event, and keeps
//! `meshgate run` from running the cases of an image that fails it. Every command is `--backend docker`: these tests
//! fail without an engine (bin/test starts one).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

mod common;
use common::{results_of, root, stderr};

/// Every step of the probe, in the order its table lists them (meshgate::probe::STEPS).
const STEPS: [&str; 12] = [
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

/// The image whose program writes `hello` before it execs the go peer.
const CHATTY: &str = "meshgate-test-chatty:latest";
/// The same wrapper without the line, refusing required features itself: it speaks the contract.
const COMPLIANT: &str = "meshgate-test-compliant:latest";

fn meshgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meshgate"));
    c.current_dir(root());
    c
}

fn probe(target: &str, out: &Path) -> Output {
    meshgate()
        .args(["probe", target, "--backend", "docker", "--out"])
        .arg(out)
        .output()
        .expect("meshgate runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The table's row of a step: its verdict and reason.
fn row<'a>(table: &'a str, step: &str) -> (&'a str, &'a str) {
    table
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(step)?.strip_prefix(' ')?.trim_start();
            let (verdict, reason) = rest.split_once(' ')?;
            Some((verdict, reason.trim_start()))
        })
        .unwrap_or_else(|| panic!("no row for step {step} in:\n{table}"))
}

/// Every step is listed, in order, in the table and in probe.json, and passed; the `roles` step names the roles
/// the implementation lists and the one it was asked and refused.
fn assert_passes(target: &str, roles: &str, refused: &str) {
    let out = tempfile::tempdir().unwrap();
    let o = probe(target, out.path());
    let (table, err) = (stdout(&o), stderr(&o));
    for step in STEPS {
        let (verdict, reason) = row(&table, step);
        assert_eq!(verdict, "pass", "{step}: {reason}\n{table}\n{err}");
        assert!(!reason.is_empty(), "{step} says what it saw:\n{table}");
    }
    assert_eq!(o.status.code(), Some(0), "{table}\n{err}");
    assert!(
        err.contains(&format!("probe of {target}: PASSED 12 of 12 steps\n")),
        "{err}"
    );
    assert!(
        !table.contains("\nskip:"),
        "nothing skipped, nothing explained:\n{table}"
    );
    let (_, reason) = row(&table, "roles");
    assert!(
        reason.starts_with(&format!("it lists {roles}; started with all of them and listened; asked {refused}, which it does not list: `unsupported` {refused} (")),
        "{reason}"
    );
    assert!(reason.ends_with("), exit status 3"), "{reason}");
    let (_, reason) = row(&table, "request-response");
    assert!(
        reason.starts_with("probe-2 requested `p10` (64 bytes) of probe-1, which received it; the 64-byte response came after "),
        "{reason}"
    );
    let (_, reason) = row(&table, "stop");
    assert_eq!(
        reason,
        "`stopped`, exit status 0 (alone, roles, probe-1, probe-2)"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("probe.json")).unwrap())
            .unwrap();
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, STEPS, "{report:#}");
    for step in report["steps"].as_array().unwrap() {
        assert_eq!(step["verdict"], "pass", "{step:#}");
        assert_eq!(
            step["passed"], true,
            "older readers read `passed`: {step:#}"
        );
    }
    // The peers' own output is kept, one file per start.
    for peer in [
        "alone",
        "require",
        "roles",
        "roles-unlisted",
        "probe-1",
        "probe-2",
    ] {
        assert!(
            out.path().join(format!("{peer}.events.jsonl")).is_file(),
            "{peer}"
        );
    }
}

#[test]
fn the_rust_peer_passes_every_step_of_the_probe() {
    // rust-peer/README.md: no port mapping (libp2p-upnp refuses private gateways).
    assert_passes(
        "rust",
        "request-response, autonat-v1-server, autonat-v1-client, autonat-v2-server, autonat-v2-client",
        "port-mapping",
    );
}

#[test]
fn the_go_peer_passes_every_step_of_the_probe() {
    // go-peer/README.md: no AutoNAT server of either version, nor a v2 client.
    assert_passes(
        "go",
        "request-response, autonat-v1-client, port-mapping",
        "autonat-v1-server",
    );
}

/// Builds the two test images once, FROM scratch: runner/tests/chatty-peer (a static Go program) in front of the
/// go peer's binary, taken from the go peer's image as a run builds it. Nothing is pulled.
fn images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let matrix = dir.path().join("go.yaml");
        std::fs::write(
            &matrix,
            "name: go\nimplementations:\n  - {name: go, language: go}\nnetworks:\n  - name: pair\n    peers: {go: 2}\n",
        )
        .unwrap();
        let built = meshgate()
            .arg("build")
            .arg(&matrix)
            .arg("--out")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(built.status.success(), "{}", stderr(&built));
        let go_image = stdout(&built)
            .lines()
            .find_map(|l| l.strip_prefix("go\t").map(str::to_owned))
            .expect("the go image");

        let docker = |args: &[&str]| {
            let o = Command::new("docker").args(args).output().expect("docker");
            assert!(o.status.success(), "docker {args:?}: {}", stderr(&o));
            String::from_utf8_lossy(&o.stdout).trim().to_owned()
        };
        let container = docker(&["create", &go_image]);
        let peer = dir.path().join("peer");
        docker(&["cp", &format!("{container}:/peer"), peer.to_str().unwrap()]);
        docker(&["rm", &container]);

        let wrapper = Command::new("go")
            .current_dir(root().join("runner/tests/chatty-peer"))
            .env("CGO_ENABLED", "0")
            .args(["build", "-o"])
            .arg(dir.path().join("wrapper"))
            .arg(".")
            .status()
            .expect("go");
        assert!(wrapper.success());
        for (tag, flag) in [(CHATTY, "--hello"), (COMPLIANT, "--require")] {
            std::fs::write(
                dir.path().join("Dockerfile"),
                format!("FROM scratch\nCOPY wrapper /wrapper\nCOPY peer /peer\nENTRYPOINT [\"/wrapper\", \"{flag}\"]\n"),
            )
            .unwrap();
            let o = Command::new("docker")
                .env("DOCKER_BUILDKIT", "0")
                .args(["build", "-q", "-t", tag])
                .arg(dir.path())
                .output()
                .expect("docker");
            assert!(o.status.success(), "{}", stderr(&o));
        }
    });
}

/// Where the chatty image's `hello` is: the events file when the backend gives one (the engine sees the runner's
/// files), stdout otherwise; either way the first line of the stream its events go to.
const HELLO_ON_AN_EVENT_STREAM: [&str; 2] = ["events file", "stdout"];

#[test]
fn an_image_that_writes_a_line_that_is_not_an_event_fails_the_probe_naming_the_line() {
    images();
    let out = tempfile::tempdir().unwrap();
    let o = probe(CHATTY, out.path());
    let (table, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{table}\n{err}");
    let (verdict, reason) = row(&table, "events");
    assert_eq!(verdict, "FAIL", "{table}");
    assert!(
        HELLO_ON_AN_EVENT_STREAM
            .iter()
            .any(|s| reason.contains(&format!("alone {s} line 1 `hello` is not a contract event"))),
        "{reason}"
    );
    let (verdict, reason) = row(&table, "started");
    assert_eq!(verdict, "FAIL", "{table}");
    assert!(
        HELLO_ON_AN_EVENT_STREAM
            .iter()
            .any(|s| reason.contains(&format!(
                "the first {s} line is not `started`: line 1 is `hello`"
            ))),
        "{reason}"
    );
    // The rest is the go peer's, and passes: the probe went on past the violation.
    for step in [
        "listening",
        "unknown-command",
        "malformed-line",
        "roles",
        "connect",
        "message",
        "request-response",
    ] {
        assert_eq!(row(&table, step).0, "pass", "{step}:\n{table}");
    }
    assert!(err.contains("FAILED"), "{err}");

    // Without the line, and with `require` honoured, the same peer passes every step: the probe is not failing
    // everything that wraps the go peer.
    let out = tempfile::tempdir().unwrap();
    let o = probe(COMPLIANT, out.path());
    let table = stdout(&o);
    for step in STEPS {
        assert_eq!(
            row(&table, step).0,
            "pass",
            "{step}:\n{table}\n{}",
            stderr(&o)
        );
    }
    assert_eq!(o.status.code(), Some(0), "{table}");
}

#[test]
fn a_run_errors_the_cases_of_an_image_that_fails_the_probe_and_runs_the_others() {
    images();
    let dir = tempfile::tempdir().unwrap();
    let matrix = dir.path().join("probed.yaml");
    std::fs::write(
        &matrix,
        format!(
            "name: probed\nimplementations:\n  - {{name: chatty, language: image, image: \"{CHATTY}\"}}\n  \
             - {{name: compliant, language: image, image: \"{COMPLIANT}\"}}\n  - {{name: go, language: go}}\n\
             networks:\n  - name: chatty-pair\n    peers: {{chatty: 1, go: 1}}\n    drain: 1s\n  \
             - name: compliant-pair\n    peers: {{compliant: 1, go: 1}}\n    drain: 1s\n"
        ),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = meshgate()
        .args(["run", "--backend", "docker"])
        .arg(&matrix)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let err = stderr(&o);
    // results.rs outcome(): checks were judged (the compliant pair) and a case errored, so exit 1.
    assert_eq!(o.status.code(), Some(1), "{err}");
    let results = results_of(out.path());
    let cases = results["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2, "{results:#}");
    let chatty = &cases[0];
    let error = chatty["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("the chatty image failed `meshgate probe`: "),
        "{chatty:#}"
    );
    assert!(
        HELLO_ON_AN_EVENT_STREAM
            .iter()
            .any(|s| error.contains(&format!(
                "events: alone {s} line 1 `hello` is not a contract event"
            ))),
        "{error}"
    );
    assert!(
        chatty["checks"].as_array().unwrap().is_empty(),
        "{chatty:#}"
    );
    assert!(
        chatty["peers"].as_array().unwrap().is_empty(),
        "not started: {chatty:#}"
    );
    let compliant = &cases[1];
    assert!(compliant["error"].is_null(), "{compliant:#}");
    for check in compliant["checks"].as_array().unwrap() {
        assert_eq!(check["status"], "passed", "{check:#}");
    }
    // The probes' peers wrote their output beside the cases.
    assert!(out.path().join("probes").is_dir());
    assert!(
        err.contains("probe of image meshgate-test-chatty:latest: FAILED"),
        "{err}"
    );
    assert!(
        err.contains("probe of image meshgate-test-compliant:latest: PASSED"),
        "{err}"
    );
}
