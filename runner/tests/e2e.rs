//! End to end: the `meshgate` binary against a real Docker engine, with real rust-libp2p and go-libp2p peers.
//! These tests need a reachable engine (bin/test starts one) and fail without it: every run passes
//! `--backend docker` ([`meshgate_run`]), so that none quietly runs on the local backend instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{results_of, root, stderr, wait_for_stderr};

fn meshgate() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meshgate"));
    c.current_dir(root());
    c
}

/// `meshgate run --backend docker`: the Docker backend or an error, never the local backend.
fn meshgate_run() -> Command {
    let mut c = meshgate();
    c.args(["run", "--backend", "docker"]);
    c
}

fn run(matrix: &str, out: &Path) -> Output {
    meshgate_run()
        .args([matrix, "--out"])
        .arg(out)
        .output()
        .expect("meshgate runs")
}

/// The pid an owner label names: `<boot id>:<pid namespace>:<pid>:<start>` (or the old `host:pid:start`).
fn owner_pid(owner: &str) -> Option<u32> {
    owner.rsplit(':').nth(1)?.parse().ok()
}

/// Containers and networks on the engine whose owner label names this process id, and its peers' event pipes.
fn objects_owned_by(pid: u32) -> Vec<String> {
    let mut found = engine_objects_owned_by(pid);
    // The peers' event pipes: a directory per run, naming its owner.
    for dir in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        let name = dir.file_name().to_string_lossy().into_owned();
        let owner = std::fs::read_to_string(dir.path().join("owner")).unwrap_or_default();
        if name.starts_with("meshgate-pipes-") && owner_pid(owner.trim()) == Some(pid) {
            found.push(dir.path().display().to_string());
        }
    }
    found
}

/// Containers and networks on the engine whose owner label names this process id.
fn engine_objects_owned_by(pid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for args in [
        &[
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.Label \"io.meshgate.owner\"}}",
        ][..],
        &[
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Label \"io.meshgate.owner\"}}",
        ][..],
    ] {
        let out = Command::new("docker")
            .args(args)
            .output()
            .expect("docker client");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((name, owner)) = line.split_once(' ') {
                if owner_pid(owner) == Some(pid) {
                    found.push(name.to_owned());
                }
            }
        }
    }
    found
}


#[test]
fn smoke_matrix_passes_with_a_junit_report_naming_implementations_and_checks() {
    let out = tempfile::tempdir().unwrap();
    let o = run("matrices/smoke.yaml", out.path());
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(&o));
    assert!(
        stderr(&o).contains("meshgate: PASSED 2 cases, 18 checks judged"),
        "{}",
        stderr(&o)
    );

    // Read the JUnit file with a parser of its own, not the library that wrote it.
    let xml = std::fs::read_to_string(out.path().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let top = doc.root_element();
    assert_eq!(top.attribute("tests"), Some("18"));
    assert_eq!(top.attribute("failures"), Some("0"));
    assert_eq!(top.attribute("errors"), Some("0"));
    let suites: Vec<_> = top
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    let names: Vec<_> = suites
        .iter()
        .map(|s| s.attribute("name").unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "rust x go / tcp+noise+yamux / mixed-4",
            "rust x go / quic-v1 / mixed-4"
        ]
    );
    for suite in &suites {
        let cases: Vec<_> = suite
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .map(|n| n.attribute("name").unwrap())
            .collect();
        assert_eq!(
            cases,
            [
                "connectivity",
                "no-protocol-downgrade",
                "delivery",
                "subscriptions",
                "mesh",
                "connections",
                "streams",
                "commands",
                "liveness"
            ]
        );
        let prop = |name: &str| {
            suite
                .descendants()
                .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
                .and_then(|n| n.attribute("value"))
        };
        assert!(
            prop("peer.rust-1")
                .unwrap()
                .starts_with("rust-libp2p 0.57."),
            "{:?}",
            prop("peer.rust-1")
        );
        assert!(
            prop("peer.go-2").unwrap().starts_with("go-libp2p v0."),
            "{:?}",
            prop("peer.go-2")
        );
        assert_eq!(prop("implementations"), Some("rust,go"));
    }

    // The results file is the source of truth; every peer's events and stderr are kept beside it.
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    for case in results["cases"].as_array().unwrap() {
        let logs = out.path().join(case["logs"].as_str().unwrap());
        for peer in ["rust-1", "rust-2", "go-1", "go-2"] {
            let events =
                std::fs::read_to_string(logs.join(format!("{peer}.events.jsonl"))).unwrap();
            assert!(events.lines().count() > 10, "{peer} said little: {events}");
            assert!(logs.join(format!("{peer}.stderr")).exists());
        }
        let delivery = case["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "delivery")
            .expect("delivery judged");
        // 4 peers x 10 messages, each to 3 others.
        assert!(
            delivery["evidence"][0]
                .as_str()
                .unwrap()
                .contains("120 of 120 deliveries"),
            "{delivery}"
        );
    }
}

#[test]
fn a_peer_that_unsubscribes_mid_run_fails_delivery_with_its_name() {
    let out = tempfile::tempdir().unwrap();
    let o = run("runner/tests/matrices/unsubscribe.yaml", out.path());
    common::assert_unsubscribe_verdict(o.status.code(), &stderr(&o), out.path());
}

#[test]
fn duplicate_connections_from_rust_to_go_fail_connections_with_every_connection_listed() {
    let out = tempfile::tempdir().unwrap();
    let o = run(
        "runner/tests/matrices/duplicate-connections.yaml",
        out.path(),
    );
    assert_eq!(o.status.code(), Some(1), "stderr:\n{}", stderr(&o));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    let checks = results["cases"][0]["checks"].as_array().unwrap();
    let connections = checks.iter().find(|c| c["name"] == "connections").unwrap();
    assert_eq!(connections["status"], "failed", "{connections}");
    let message = connections["message"].as_str().unwrap();
    assert!(
        message.starts_with("rust-1 (rust-libp2p 0.57.")
            && message.contains("held 3 connections to go-1 (go-libp2p v0."),
        "{message}"
    );
    let listed = connections["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l.as_str().unwrap().contains("outbound opened"))
        .count();
    assert_eq!(listed, 3, "{connections}");
}

/// Runs the smoke matrix and sends `signal` (`INT`, `TERM`) once its first case has containers up; asserts the
/// run exits 2 and leaves nothing on the engine. Returns the output folder.
fn signal_mid_run(signal: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let mut child = meshgate_run()
        .args(["matrices/smoke.yaml", "--out"])
        .arg(out.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for_stderr(&mut child, "[1/2]", Duration::from_secs(900));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !objects_owned_by(pid).is_empty(),
        "the run had containers up when it got SIG{signal}"
    );
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(2), "a run stopped by SIG{signal} could not be carried out");
    assert_eq!(objects_owned_by(pid), Vec::<String>::new());
    out
}

#[test]
fn ctrl_c_mid_run_leaves_nothing_behind() {
    signal_mid_run("INT");
}

#[test]
fn leftovers_of_a_killed_run_are_removed_by_the_next_run() {
    let out = tempfile::tempdir().unwrap();
    let mut child = meshgate_run()
        .args(["matrices/smoke.yaml", "--out"])
        .arg(out.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for_stderr(&mut child, "[1/2]", Duration::from_secs(900));
    std::thread::sleep(Duration::from_secs(3));
    // SIGKILL: no clean-up is possible, the containers stay.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !objects_owned_by(pid).is_empty(),
        "a killed run leaves its containers"
    );

    let next = tempfile::tempdir().unwrap();
    let o = meshgate_run()
        .args(["runner/tests/matrices/unsubscribe.yaml", "--out"])
        .arg(next.path())
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("left on the engine by earlier runs that died"),
        "{}",
        stderr(&o)
    );
    assert_eq!(objects_owned_by(pid), Vec::<String>::new());
}

#[test]
fn bad_matrix_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "name: bad\nimplementations:\n  - {name: rust, language: cobol}\nnetworks: []\n",
    )
    .unwrap();
    let o = meshgate_run().arg(&path).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("meshgate: {}:3:", path.display())),
        "{err}"
    );
    assert!(err.contains("cobol"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn fail_fast_stops_a_case_at_the_first_live_failure_and_still_judges_the_record() {
    let out = tempfile::tempdir().unwrap();
    let o = meshgate_run()
        .args([
            "runner/tests/matrices/duplicate-connections.yaml",
            "--fail-fast",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let results = results_of(out.path());
    let case = &results["cases"][0];
    assert!(
        case["error"].is_null(),
        "stopping early is a verdict, not an error: {case}"
    );
    // Whichever check saw the duplicates' damage first stopped the case: it was announced live, and it failed.
    let stopped = case["stopped_early"].as_str().expect("stopped early");
    let check = stopped
        .split('[')
        .nth(1)
        .and_then(|s| s.split(']').next())
        .expect("a check name");
    assert!(
        err.contains(&format!("failing [{check}]")),
        "announced while the case ran: {err}"
    );
    let verdict = case["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == check)
        .unwrap();
    assert_eq!(verdict["status"], "failed", "{verdict}");
    // The case did not run its script to the end: fewer messages than the full run publishes.
    let published = std::fs::read_to_string(
        out.path()
            .join(case["logs"].as_str().unwrap())
            .join("record.jsonl"),
    )
    .unwrap()
    .lines()
    .filter(|l| l.contains(r#"\"cmd\":\"publish\""#))
    .count();
    assert!(
        published < 40,
        "{published} publish commands: the case went on after the failure"
    );
}

/// A directory under meshgate's cache that stays the same between runs, so a checkout's build is reused.
fn cache_dir(name: &str) -> PathBuf {
    let dir = common::cache().join("test-checkouts").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies a tree, leaving the copy writable (the cargo registry and Go module cache are read-only).
fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn two_versions_of_each_over_two_transports_build_once_and_report_what_they_are() {
    let out = tempfile::tempdir().unwrap();
    let o = run("runner/tests/matrices/versions.yaml", out.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let results = results_of(out.path());
    let cases = results["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 8);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (rust, go) = name.split(" / ").next().unwrap().split_once(" x ").unwrap();
        let peers = case["peers"].as_array().unwrap();
        let rust_version = peers[0]["versions"]["libp2p"].as_str().unwrap();
        let go_version = peers[1]["versions"]["github.com/libp2p/go-libp2p"]
            .as_str()
            .unwrap();
        // Built as asked: the versions come from the peers themselves.
        assert!(
            rust_version.starts_with(&format!("{}.", rust.trim_start_matches("rust-"))),
            "{name}: {rust_version}"
        );
        assert_eq!(go_version, go.trim_start_matches("go-"), "{name}");
    }
    // Each of the four builds happened at most once, and a second run builds nothing.
    let builds = stderr(&o)
        .lines()
        .filter(|l| l.starts_with("building the"))
        .count();
    assert!(builds <= 4, "{}", stderr(&o));
    let again = tempfile::tempdir().unwrap();
    let o = meshgate_run()
        .args([
            "runner/tests/matrices/versions.yaml",
            "--filter",
            "rust-0.56 x go-v0.48.0 / tcp",
            "--out",
        ])
        .arg(again.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("building the"),
        "images are reused: {}",
        stderr(&o)
    );
}

#[test]
fn a_local_go_libp2p_checkout_is_built_and_run() {
    let gomodcache = String::from_utf8(
        Command::new("go")
            .args(["env", "GOMODCACHE"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let dir = cache_dir("go");
    copy_tree(
        &Path::new(gomodcache.trim()).join("github.com/libp2p/go-libp2p@v0.52.0"),
        &dir.join("go-libp2p"),
    );
    std::fs::write(
        dir.join("m.yaml"),
        "name: go-checkout\nimplementations:\n  - {name: rust, language: rust}\n  - {name: go-rc, language: go, path: go-libp2p}\n\
         networks:\n  - name: pair\n    peers: {rust: 1, go-rc: 1}\n    drain: 2s\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = run(dir.join("m.yaml").to_str().unwrap(), out.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let results = results_of(out.path());
    let go = &results["cases"][0]["peers"][1];
    assert_eq!(
        go["versions"]["github.com/libp2p/go-libp2p"], "v0.52.0+local",
        "{go}"
    );
}

#[test]
fn a_local_rust_libp2p_checkout_is_built_and_its_change_is_seen_by_the_go_peer() {
    let dir = cache_dir("rust");
    let registry = Path::new(&std::env::var("HOME").unwrap()).join(".cargo/registry/src");
    let index = std::fs::read_dir(&registry)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let checkout = dir.join("rust-libp2p");
    std::fs::create_dir_all(checkout.join("protocols")).unwrap();
    copy_tree(
        &index.join("libp2p-gossipsub-0.50.1"),
        &checkout.join("protocols/gossipsub"),
    );
    std::fs::write(
        checkout.join("Cargo.toml"),
        "[workspace]\nmembers = [\"protocols/gossipsub\"]\nresolver = \"2\"\n",
    )
    .unwrap();
    // The release candidate's change: gossipsub 1.3 under another protocol name, visible in identify.
    let protocol = checkout.join("protocols/gossipsub/src/protocol.rs");
    let source = std::fs::read_to_string(&protocol).unwrap();
    assert!(source.contains("\"/meshsub/1.3.0\""));
    std::fs::write(
        &protocol,
        source.replace("\"/meshsub/1.3.0\"", "\"/meshsub-rc/1.3.0\""),
    )
    .unwrap();
    std::fs::write(
        dir.join("m.yaml"),
        "name: rust-checkout\nimplementations:\n  - {name: rust-rc, language: rust, path: rust-libp2p}\n  - {name: go, language: go}\n\
         networks:\n  - name: pair\n    peers: {rust-rc: 1, go: 1}\n    drain: 2s\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = run(dir.join("m.yaml").to_str().unwrap(), out.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let results = results_of(out.path());
    let logs = out
        .path()
        .join(results["cases"][0]["logs"].as_str().unwrap());
    let seen_by_go = std::fs::read_to_string(logs.join("go-1.events.jsonl")).unwrap();
    assert!(
        seen_by_go.contains("/meshsub-rc/1.3.0"),
        "the go peer sees the checkout's protocols"
    );
}

#[test]
fn a_subscriber_cut_off_from_the_network_fails_delivery_with_the_moment_it_stopped() {
    let out = tempfile::tempdir().unwrap();
    let o = run("runner/tests/matrices/cut-off.yaml", out.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let xml = std::fs::read_to_string(out.path().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let failure = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .expect("a failure");
    assert_eq!(
        failure.parent().unwrap().attribute("name"),
        Some("delivery")
    );
    let message = failure.attribute("message").unwrap();
    // Others may have missed a message around the cut too: then the count comes first, and the worst leads after.
    let worst = message.split_once("; worst ").map_or(message, |(_, w)| w);
    assert!(
        worst.starts_with("rust-2 (rust-libp2p 0.57.")
            && message.contains(") stopped receiving at ")
            && message.contains("while publishing went on"),
        "the cut-off subscriber leads the message: {message}"
    );
    // The moment is on the time line, with the incident that caused it.
    let results = results_of(out.path());
    let marks = results["cases"][0]["timeline"]["marks"].as_array().unwrap();
    assert!(
        marks
            .iter()
            .any(|m| m["kind"] == "incident"
                && m["text"].as_str().unwrap().contains("rust-2: cut off")),
        "{marks:?}"
    );
    assert!(marks.iter().any(|m| m["kind"] == "failure"), "{marks:?}");
}

#[test]
fn a_peer_that_leaks_streams_fails_streams_naming_the_connection() {
    let out = tempfile::tempdir().unwrap();
    let o = run("runner/tests/matrices/stream-leak.yaml", out.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let results = results_of(out.path());
    let streams = results["cases"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "streams")
        .unwrap()
        .clone();
    assert_eq!(streams["status"], "failed", "{streams}");
    let message = streams["message"].as_str().unwrap();
    assert!(
        message.starts_with("rust-1 (rust-libp2p 0.57."),
        "the peer that opened them leads: {message}"
    );
    assert!(
        // `(limit 64)`, or `(limit 64; 2 connections over it)` when the other end's view of it counts too.
        message.contains("outbound) on connection") && message.contains("(limit 64"),
        "{message}"
    );
    // The accepting side is in the evidence too.
    assert!(
        streams["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("go-1 (go-libp2p")),
        "{streams}"
    );
}

#[test]
fn a_protocol_dropped_over_duplicate_connections_fails_no_protocol_downgrade() {
    let out = tempfile::tempdir().unwrap();
    let o = run("runner/tests/matrices/downgrade.yaml", out.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let results = results_of(out.path());
    let checks = results["cases"][0]["checks"].as_array().unwrap();
    let downgrade = checks
        .iter()
        .find(|c| c["name"] == "no-protocol-downgrade")
        .unwrap();
    assert_eq!(downgrade["status"], "failed", "{downgrade}");
    let message = downgrade["message"].as_str().unwrap();
    assert!(
        message.starts_with("go-1 (go-libp2p v0.")
            && message.contains("stopped advertising /meshsub/1.1.0 to rust-1 (rust-libp2p 0.57."),
        "{message}"
    );
    // The identify messages before and after are the evidence.
    let evidence = downgrade["evidence"].as_array().unwrap();
    assert!(
        evidence
            .iter()
            .any(|l| l.as_str().unwrap().contains("identify before")),
        "{downgrade}"
    );
    assert!(
        evidence
            .iter()
            .any(|l| l.as_str().unwrap().contains("identify after")),
        "{downgrade}"
    );
    let connections = checks.iter().find(|c| c["name"] == "connections").unwrap();
    assert_eq!(
        connections["status"], "failed",
        "three connections from rust-1 to go-1: {connections}"
    );
}

#[test]
fn a_third_implementation_joins_as_a_prebuilt_image() {
    // Any image that speaks the peer contract: here the go peer's, under a name of its own.
    let built = meshgate()
        .args(["build", "matrices/smoke.yaml", "--out"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    let listing = String::from_utf8(built.stdout).unwrap();
    let go_image = listing
        .lines()
        .find_map(|l| l.strip_prefix("go\t"))
        .expect("the go image")
        .trim();
    let tag = "meshgate-test/third-implementation:e2e";
    assert!(Command::new("docker")
        .args(["tag", go_image, tag])
        .status()
        .unwrap()
        .success());
    let dir = tempfile::tempdir().unwrap();
    let matrix = dir.path().join("third.yaml");
    std::fs::write(
        &matrix,
        format!(
            "name: third\nimplementations:\n  - {{name: rust, language: rust}}\n  - {{name: third, language: image, image: \"{tag}\"}}\n\
             networks:\n  - name: pair\n    peers: {{rust: 1, third: 2}}\n    drain: 2s\n"
        ),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = meshgate_run()
        .args([matrix.to_str().unwrap(), "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rmi", tag]).status();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let results = results_of(out.path());
    let peers = results["cases"][0]["peers"].as_array().unwrap();
    assert_eq!(peers[1]["image"], tag);
    assert_eq!(
        peers[1]["library"], "go-libp2p",
        "what the image says it is"
    );
}

#[test]
fn a_whole_run_timeout_stops_it_like_ctrl_c() {
    let out = tempfile::tempdir().unwrap();
    let child = meshgate_run()
        .args(["matrices/smoke.yaml", "--timeout", "4s", "--out"])
        .arg(out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("meshgate: timed out after 4s: stopping peers and cleaning up"),
        "{}",
        stderr(&o)
    );
    assert_eq!(objects_owned_by(pid), Vec::<String>::new());
    // Partial results are written and say why.
    let results = results_of(out.path());
    assert!(results["cases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["error"]
            .as_str()
            .is_some_and(|e| e.contains("interrupted"))));
}

#[test]
fn a_case_an_implementation_cannot_run_is_skipped_with_its_reason_and_judges_nothing() {
    let out = tempfile::tempdir().unwrap();
    let o = run("runner/tests/matrices/unsupported.yaml", out.path());
    // Nothing failed, and nothing was judged either: that is no pass.
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let headline = err.lines().rfind(|l| l.starts_with("meshgate: ")).unwrap_or_default();
    assert!(
        headline.contains("NOTHING JUDGED") && headline.contains("muxer-mplex"),
        "the headline says nothing was judged, and why: {err}"
    );
    let results = results_of(out.path());
    let checks = results["cases"][0]["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    for c in checks {
        assert_eq!(c["status"], "skipped", "{c}");
        assert!(
            c["message"].as_str().unwrap().contains("muxer-mplex"),
            "the peer's reason: {c}"
        );
    }
    let xml = std::fs::read_to_string(out.path().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(
        doc.root_element().attribute("skipped"),
        Some(checks.len().to_string().as_str())
    );
}

#[test]
fn without_an_engine_the_docker_suite_fails_rather_than_running_locally() {
    let out = tempfile::tempdir().unwrap();
    let o = meshgate_run()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["matrices/smoke.yaml", "--filter", "quic", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no Docker engine"), "{err}");
    assert!(!err.contains("local"), "never the local backend: {err}");
}

#[test]
fn sigterm_mid_run_leaves_nothing_behind_and_writes_partial_results() {
    let out = signal_mid_run("TERM");
    let results = results_of(out.path());
    assert!(
        results["cases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["error"]
                .as_str()
                .is_some_and(|e| e.contains("interrupted"))),
        "partial results say why: {results}"
    );
}

#[test]
fn a_panic_in_the_runner_is_reported_and_leaves_nothing_behind() {
    let out = tempfile::tempdir().unwrap();
    let child = meshgate_run()
        // The runner's test hook: it panics once the first peers of a case have started.
        .env("MESHGATE_TEST_PANIC", "after-start")
        .args(["matrices/smoke.yaml", "--out"])
        .arg(out.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("meshgate: internal error (a bug in meshgate)")
            && err.contains("MESHGATE_TEST_PANIC=after-start"),
        "the panic is reported: {err}"
    );
    assert!(!err.contains("clean-up: could not remove"), "{err}");
    // Peers had started (their events are on disk), and nothing of them remains.
    let started = std::fs::read_dir(out.path().join("cases"))
        .unwrap()
        .flatten()
        .flat_map(|case| std::fs::read_dir(case.path()).unwrap().flatten())
        .any(|f| {
            f.file_name().to_string_lossy().ends_with(".events.jsonl")
                && f.metadata().unwrap().len() > 0
        });
    assert!(started, "the panic came after peers started");
    assert_eq!(objects_owned_by(pid), Vec::<String>::new());
}

/// Runs the docker client; its stdout.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker client");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Names of the containers and networks labelled with `label` (`key=value`).
fn objects_labelled(label: &str) -> Vec<String> {
    let filter = format!("label={label}");
    let mut found: Vec<String> = Vec::new();
    for args in [
        &["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"][..],
        &[
            "network",
            "ls",
            "--filter",
            &filter,
            "--format",
            "{{.Name}}",
        ][..],
    ] {
        found.extend(docker(args).lines().map(str::to_owned));
    }
    found.sort();
    found
}

/// What a run killed in another CI container leaves: a labelled network, and a container on it that has exited
/// (a peer without its configuration exits at once).
fn leave_exited_objects(run: &str, owner: &str, image: &str) {
    let labels = [
        "--label".to_owned(),
        format!("io.meshgate.run={run}"),
        "--label".to_owned(),
        format!("io.meshgate.owner={owner}"),
        "--label".to_owned(),
        "io.meshgate.case=0".to_owned(),
    ];
    let network = format!("meshgate-{run}-c0");
    let mut args = vec!["network", "create", "--internal"];
    args.extend(labels.iter().map(String::as_str));
    args.push(&network);
    docker(&args);
    let name = format!("{network}-go-1");
    let mut args = vec!["run", "--name", &name, "--network", &network];
    args.extend(labels.iter().map(String::as_str));
    args.push(image);
    // It exits with the contract's configuration error; `docker run` says so with its status.
    let status = Command::new("docker").args(&args).output().unwrap().status;
    assert!(!status.success(), "the peer exits without a configuration");
}

#[test]
fn leftovers_of_another_pid_namespace_are_removed_when_exited_and_old_and_kept_while_running() {
    let built = meshgate()
        .args(["build", "matrices/smoke.yaml", "--out"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    let listing = String::from_utf8(built.stdout).unwrap();
    let image = listing
        .lines()
        .find_map(|l| l.strip_prefix("go\t"))
        .expect("the go image")
        .trim()
        .to_owned();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    // On this kernel, in a pid namespace that is not ours (no real namespace has inode 1): out of sight.
    let unseen_owner = format!("{}:1:4242:77", boot.trim());
    let tag = format!("{:x}", std::process::id());
    let (dead, young) = (format!("dead0{tag}"), format!("young0{tag}"));
    leave_exited_objects(&dead, &unseen_owner, &image);
    assert_eq!(
        objects_labelled(&format!("io.meshgate.run={dead}")).len(),
        2
    );
    // Older than the runner's grace period (2 minutes) for objects of owners it cannot see.
    std::thread::sleep(Duration::from_secs(130));
    leave_exited_objects(&young, &unseen_owner, &image);

    // A run in a pid namespace of its own, as another CI job sharing the engine would be: its start removes
    // the old exited leftovers, and keeps the young ones.
    let out = tempfile::tempdir().unwrap();
    let mut other = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_meshgate"))
        .args([
            "run",
            "--backend",
            "docker",
            // Long enough to be in its case all the while this test looks (a case ending removes its objects).
            "runner/tests/matrices/long-pair.yaml",
            "--repeat",
            "5",
            "--out",
        ])
        .arg(out.path())
        .current_dir(root())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Whatever the assertions say, the other job ends (interrupted, it removes its own) and no fixture stays.
    struct Tidy(Vec<String>, u32);
    impl Drop for Tidy {
        fn drop(&mut self) {
            if let Ok(o) = Command::new("pgrep")
                .args(["-P", &self.1.to_string()])
                .output()
            {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-INT", pid]).status();
                }
            }
            for run in &self.0 {
                for name in objects_labelled(&format!("io.meshgate.run={run}")) {
                    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
                    let _ = Command::new("docker")
                        .args(["network", "rm", &name])
                        .output();
                }
            }
        }
    }
    let _tidy = Tidy(vec![dead.clone(), young.clone()], other.id());
    let seen = wait_for_stderr(&mut other, "[1/1]", Duration::from_secs(900));
    assert!(
        seen.contains("left on the engine by earlier runs that died"),
        "{seen}"
    );
    assert_eq!(
        objects_labelled(&format!("io.meshgate.run={dead}")),
        Vec::<String>::new()
    );
    assert_eq!(
        objects_labelled(&format!("io.meshgate.run={young}")).len(),
        2
    );
    std::thread::sleep(Duration::from_secs(3));
    // The other job's run, as the engine labels it: its owner names its own pid namespace.
    let other_pid = docker(&[
        "ps",
        "--filter",
        "label=io.meshgate.owner",
        "--format",
        "{{.Label \"io.meshgate.run\"}} {{.Label \"io.meshgate.owner\"}}",
    ]);
    let child_pid = String::from_utf8(
        Command::new("pgrep")
            .args(["-P", &other.id().to_string()])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let ns = std::fs::read_link(format!("/proc/{child_pid}/ns/pid")).unwrap();
    let ns = ns.to_string_lossy();
    let ns = ns.trim_start_matches("pid:[").trim_end_matches(']');
    let other_run = other_pid
        .lines()
        .find_map(|l| {
            let (run, owner) = l.split_once(' ')?;
            (owner.split(':').nth(1) == Some(ns)).then(|| run.to_owned())
        })
        .unwrap_or_else(|| panic!("no running container of the other job: {other_pid}"));
    let live = objects_labelled(&format!("io.meshgate.run={other_run}"));
    assert!(!live.is_empty());

    // A run here cannot see the other job's runner; its running containers keep the run alive.
    let next = tempfile::tempdir().unwrap();
    let mut mine = meshgate_run()
        .args(["runner/tests/matrices/unsubscribe.yaml", "--out"])
        .arg(next.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_stderr(&mut mine, "[1/1]", Duration::from_secs(900));
    let still: Vec<String> = objects_labelled(&format!("io.meshgate.run={other_run}"));
    assert!(
        live.iter().all(|o| still.contains(o)),
        "the other job's objects stay: {live:?} then {still:?}"
    );
    assert_eq!(
        objects_labelled(&format!("io.meshgate.run={young}")).len(),
        2
    );

    for pid in [mine.id().to_string(), child_pid] {
        let _ = Command::new("kill").args(["-INT", &pid]).status();
    }
    assert_eq!(mine.wait().unwrap().code(), Some(2));
    other.wait().unwrap();
    assert_eq!(
        objects_labelled(&format!("io.meshgate.run={other_run}")),
        Vec::<String>::new(),
        "the other job removed its own when interrupted"
    );
}

/// `docker inspect` of one container, as JSON.
fn inspect(name: &str) -> serde_json::Value {
    let out = Command::new("docker")
        .args(["inspect", name])
        .output()
        .expect("docker client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

#[test]
fn peers_run_as_nobody_without_capabilities_on_a_read_only_root_within_their_limits() {
    let out = tempfile::tempdir().unwrap();
    let mut child = meshgate()
        .args([
            "run",
            "runner/tests/matrices/unsubscribe.yaml",
            "--backend",
            "docker",
            "--out",
        ])
        .arg(out.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for_stderr(&mut child, "[1/1]", Duration::from_secs(900));
    // The peers are up once every one of them runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let containers = loop {
        let peers: Vec<String> = engine_objects_owned_by(pid)
            .into_iter()
            .filter(|n| inspect(n)["State"]["Running"] == true)
            .filter(|n| ["rust-1", "go-1", "go-2"].iter().any(|p| n.ends_with(p)))
            .collect();
        if peers.len() == 3 {
            break peers;
        }
        assert!(
            Instant::now() < deadline,
            "the peers did not all run: {peers:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    for name in &containers {
        let c = inspect(name);
        let host = &c["HostConfig"];
        assert_eq!(c["Config"]["User"], "65534:65534", "{name}");
        assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]), "{name}");
        assert_eq!(host["CapAdd"], serde_json::Value::Null, "{name}");
        assert_eq!(host["Privileged"], false, "{name}");
        assert_eq!(host["ReadonlyRootfs"], true, "{name}");
        assert_eq!(
            host["SecurityOpt"],
            serde_json::json!(["no-new-privileges"]),
            "{name}"
        );
        assert_eq!(host["Memory"], 128 << 20, "{name}: the default limit");
        assert_eq!(host["MemorySwap"], 128 << 20, "{name}: no swap beyond it");
        assert_eq!(host["PidsLimit"], 128, "{name}");
        // What the kernel says of the peer's process: uid nobody, and no capability in any set.
        let peer_pid = c["State"]["Pid"].as_u64().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{peer_pid}/status")).unwrap();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(field("Uid:"), ["65534"; 4], "{name}");
        assert_eq!(field("Gid:"), ["65534"; 4], "{name}");
        for caps in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
            assert_eq!(field(caps), ["0000000000000000"], "{name} {caps}");
        }
        assert_eq!(field("NoNewPrivs:"), ["1"], "{name}");
    }
    // Confined, they still do everything the case asks: the verdict is the one without confinement.
    assert_eq!(child.wait().unwrap().code(), Some(1));
    let results = results_of(out.path());
    let failed: Vec<(&str, &str)> = results["cases"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "failed")
        .map(|c| (c["name"].as_str().unwrap(), c["message"].as_str().unwrap()))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "delivery", "{failed:?}");
    assert!(failed[0].1.starts_with("go-2 (go-libp2p v0."), "{failed:?}");
    let case = std::fs::read_dir(out.path().join("cases"))
        .unwrap()
        .next()
        .expect("the case's folder")
        .unwrap()
        .path();
    let record = std::fs::read_to_string(case.join("record.jsonl")).unwrap();
    let exits: Vec<serde_json::Value> = record
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["kind"] == "exited")
        .collect();
    assert_eq!(exits.len(), 3, "{record}");
    for e in &exits {
        assert_eq!(e["oom_killed"], false, "{e}");
        assert_eq!(e["memory_limit_bytes"], 128 << 20, "{e}");
        let peak = e["peak_memory_bytes"]
            .as_u64()
            .expect("a peak was measured");
        assert!(peak > 1 << 20 && peak < 128 << 20, "{e}");
    }
}

#[test]
fn a_peer_over_its_memory_limit_fails_liveness_out_of_memory() {
    let out = tempfile::tempdir().unwrap();
    let o = meshgate()
        .args([
            "run",
            "runner/tests/matrices/out-of-memory.yaml",
            "--backend",
            "docker",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let results = results_of(out.path());
    let liveness = results["cases"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "liveness")
        .unwrap()
        .clone();
    assert_eq!(liveness["status"], "failed", "{liveness}");
    let message = liveness["message"].as_str().unwrap();
    // The peak is the cgroup's high-water mark: at the limit, or a page or two below it (`24.0 MiB`).
    let peak = message
        .split(") was killed: out of memory (limit 24 MiB, peak ")
        .nth(1)
        .and_then(|rest| rest.split(" MiB) at ").next())
        .and_then(|mib| mib.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("an out-of-memory line with the limit and the peak: {message}"));
    assert!((23.0..=24.0).contains(&peak), "{message}");
}
