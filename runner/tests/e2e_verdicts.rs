//! End to end, on a real Docker engine with real peers: verdicts a release gate can trust. A network that breaks is
//! a verdict, a step a peer cannot do is local (a case no peer can run judges nothing: tests/e2e.rs), `dial: new` is judged where it can be exercised, negotiation is
//! read from both ends, and a peer that stops reading cannot hang a case. These tests need an engine (bin/test
//! starts one) and fail without it: every run is `--backend docker`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{check, results_of, root, stderr};

fn run(matrix: &str, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .current_dir(root())
        .args(["run", matrix, "--backend", "docker", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .expect("meshgate runs")
}


fn case<'a>(r: &'a Value, contains: &str) -> &'a Value {
    r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().contains(contains))
        .unwrap_or_else(|| panic!("no case with {contains:?}"))
}

// rust-libp2p#6047 (duplicate connections) is matrices/incidents/e-duplicate-connections-6047.yaml, asserted in
// tests/e2e_incidents.rs.

#[test]
fn an_edge_that_never_connects_fails_connectivity_naming_both_peers() {
    let out = tempfile::tempdir().unwrap();
    let o = run("runner/tests/matrices/never-connects.yaml", out.path(), &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let r = results_of(out.path());
    let pair = case(&r, "pair");
    assert!(pair["error"].is_null(), "a broken network is a verdict: {pair:#}");
    let c = check(pair, "connectivity");
    assert_eq!(c["status"], "failed", "{c:#}");
    let m = c["message"].as_str().unwrap();
    assert!(m.contains("rust-1 (rust-libp2p") && m.contains("go-1 (go-libp2p") && m.contains("never connected"), "{m}");
    // The dial's own error is the evidence.
    assert!(
        c["evidence"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().contains("dial failed")),
        "{c:#}"
    );
}

#[test]
fn disagreeing_preference_orders_negotiate_the_dialers_first_shared_choice() {
    let out = tempfile::tempdir().unwrap();
    let o = run("runner/tests/matrices/offers.yaml", out.path(), &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let r = results_of(out.path());
    let c = check(&r["cases"][0], "connectivity");
    assert_eq!(c["status"], "passed", "{c:#}");
    let coverage = c["coverage"].as_str().unwrap();
    assert!(coverage.contains("6 of 6 edge(s) connected"), "{coverage}");
    assert!(!coverage.contains("not reported"), "both implementations report: {coverage}");

    // What each end reported, read from the record: the dialer's first choice.
    let logs = out.path().join(r["cases"][0]["logs"].as_str().unwrap());
    let opened = |peer: &str| -> Vec<Value> {
        std::fs::read_to_string(logs.join(format!("{peer}.events.jsonl")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["event"] == "connection_opened")
            .collect()
    };
    let rust1 = opened("rust-1");
    assert!(!rust1.is_empty());
    assert!(rust1.iter().filter(|e| e["direction"] == "outbound").all(|e| e["security"] == "tls"), "{rust1:?}");
    let go1 = opened("go-1");
    let go_outbound: Vec<_> = go1.iter().filter(|e| e["direction"] == "outbound").collect();
    assert!(!go_outbound.is_empty() && go_outbound.iter().all(|e| e["security"] == "noise"), "{go1:?}");
    assert!(go1.iter().all(|e| e["muxer"] == "yamux"), "{go1:?}");
}

#[test]
fn a_peer_that_stops_reading_its_commands_cannot_hang_the_case() {
    // The deaf peer, built here from source as a FROM scratch image: nothing is pulled.
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("runner/tests/deaf-peer");
    let built = Command::new("go")
        .current_dir(&src)
        .env("CGO_ENABLED", "0")
        .args(["build", "-o"])
        .arg(dir.path().join("deaf"))
        .arg(".")
        .status()
        .expect("go");
    assert!(built.success());
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY deaf /deaf\nENTRYPOINT [\"/deaf\"]\n").unwrap();
    let image = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", "meshgate-test-deaf:latest"])
        .arg(dir.path())
        .output()
        .expect("docker");
    assert!(image.status.success(), "{}", String::from_utf8_lossy(&image.stderr));

    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let o = run("runner/tests/matrices/deaf.yaml", out.path(), &["--case-timeout", "20s"]);
    let took = started.elapsed();
    let err = stderr(&o);
    // 20,000 messages every 2 ms would take 40 s and more; the case timeout ends it, with the peer's stop and kill.
    assert!(took < Duration::from_secs(75), "took {took:?}: {err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    let r = results_of(out.path());
    let pair = case(&r, "pair");
    assert!(
        pair["error"].as_str().unwrap_or_default().contains("--case-timeout"),
        "reported as a timeout: {pair:#}"
    );
    let commands = check(pair, "commands");
    assert_eq!(commands["status"], "failed", "{commands:#}");
    let m = commands["message"].as_str().unwrap();
    assert!(m.starts_with("deaf-1") && m.contains("stopped reading its commands"), "{m}");
}

#[test]
fn a_case_cut_by_its_timeout_still_tells_its_peers_to_stop_and_judges_their_clean_exits() {
    let out = tempfile::tempdir().unwrap();
    // 30 s of publishing cut at 12 s: the peers are connected and publishing when the stop comes.
    let o = run("runner/tests/matrices/long-pair.yaml", out.path(), &["--case-timeout", "12s"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "an errored case beside checks judged: {err}");
    let r = results_of(out.path());
    let pair = case(&r, "pair");
    assert!(pair["error"].as_str().unwrap_or_default().contains("--case-timeout"), "{pair:#}");
    // Each peer read its stop and exited of its own accord: no kill, no "did not exit".
    let l = check(pair, "liveness");
    assert_eq!(l["status"], "passed", "{l:#}");
    let record = std::fs::read_to_string(
        out.path().join(pair["logs"].as_str().unwrap()).join("record.jsonl"),
    )
    .unwrap();
    let exits: Vec<Value> = record
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "exited" || v["kind"] == "undelivered" || v["kind"] == "killed")
        .collect();
    assert_eq!(exits.len(), 2, "{exits:#?}");
    assert!(exits.iter().all(|e| e["kind"] == "exited" && e["code"] == 0 && e["expected"] == true), "{exits:#?}");
}
