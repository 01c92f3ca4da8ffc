//! `meshgate report --issue`: a failing case of a real run written as an upstream issue, and the matrix it gives
//! run again, failing the same check. Needs a Docker engine (or the local backend) and builds the peers at the
//! exact versions the first run's peers reported.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{check, results_of, root, stderr};

fn meshgate(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("meshgate runs")
}

fn run(matrix: &Path, out: &Path) -> Output {
    meshgate(&["run".as_ref(), matrix.as_os_str(), "--out".as_ref(), out.as_os_str()])
}

#[test]
fn an_issue_from_duplicate_connections_reads_like_one_and_its_matrix_fails_the_same_check() {
    let first = tempfile::tempdir().unwrap();
    let o = run(Path::new("runner/tests/matrices/duplicate-connections.yaml"), first.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let ran = results_of(first.path());
    let case = &ran["cases"][0];
    assert_eq!(check(case, "connections")["status"], "failed", "{case:#}");
    let versions = |peer: usize| case["peers"][peer]["versions"].as_object().unwrap().clone();
    let (rust, go) = (versions(0), versions(1));
    let libp2p = rust["libp2p"].as_str().unwrap();

    // The issue, by a part of the case's name.
    let issues = tempfile::tempdir().unwrap();
    let results = first.path().join("results.json");
    let o = meshgate(&[
        "report".as_ref(),
        results.as_os_str(),
        "--issue".as_ref(),
        "noise+yamux / pair".as_ref(),
        "--out".as_ref(),
        issues.path().as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let body = String::from_utf8(o.stdout).unwrap();
    // `issue-<case>-connections.<ext>`, the case as the run named it; one of each.
    let file = |ext: &str| {
        let written: Vec<_> = std::fs::read_dir(issues.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        assert_eq!(written.len(), 1, "one .{ext} written: {written:?}");
        let name = written[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("issue-rust") && name.ends_with(&format!("-connections.{ext}")), "{name}");
        written[0].clone()
    };
    assert_eq!(std::fs::read_to_string(file("md")).unwrap(), body, "printed as written");
    let title = body.lines().next().unwrap();
    assert!(
        title.starts_with(&format!("# connections: rust-libp2p {libp2p} peers keep duplicate connections to go-libp2p v0."))
            && title.contains("when one dials the other 3 times, each time a new connection (tcp+noise+yamux)"),
        "{title}"
    );
    // Exact versions: the rust sub-crates and go modules that matter, as the peers reported them.
    for (name, version) in [
        ("libp2p-gossipsub", &rust["libp2p-gossipsub"]),
        ("libp2p-swarm", &rust["libp2p-swarm"]),
        ("libp2p-yamux", &rust["libp2p-yamux"]),
        ("github.com/libp2p/go-libp2p-pubsub", &go["github.com/libp2p/go-libp2p-pubsub"]),
        ("github.com/libp2p/go-yamux/v5", &go["github.com/libp2p/go-yamux/v5"]),
    ] {
        let version = version.as_str().unwrap_or_else(|| panic!("{name} reported"));
        assert!(body.contains(&format!("`{name}` {version}")), "{name} {version} in:\n{body}");
    }
    for part in [
        "## Reproduce",
        "## Failure and evidence",
        "`connections` failed: rust-1 (rust-libp2p",
        "  connection 1 outbound opened",
        "## Time line around the first failure",
        ">>> connections fails here",
        "rust-1 <- {\"cmd\":\"dial\"",
        "## stderr of rust-1 and go-1 near it",
        "rust-1 | ",
    ] {
        assert!(body.contains(part), "{part:?} in:\n{body}");
    }
    let matrix = std::fs::read_to_string(file("yaml")).unwrap();
    assert!(body.contains(&format!("```yaml\n{}", matrix.trim_end())), "the matrix is in the body:\n{body}");
    let parsed: serde_json::Value = serde_saphyr::from_str(&matrix).unwrap();
    let imps = parsed["implementations"].as_array().unwrap();
    assert_eq!(imps[0]["version"], format!("={libp2p}"), "{matrix}");
    assert_eq!(imps[0]["pins"]["libp2p-gossipsub"], rust["libp2p-gossipsub"], "{matrix}");
    assert_eq!(imps[1]["version"], go["github.com/libp2p/go-libp2p"], "{matrix}");
    assert_eq!(imps[1]["pins"]["go-yamux"], go["github.com/libp2p/go-yamux/v5"], "{matrix}");
    assert!(parsed.get("known_issues").is_none() && parsed.get("include").is_none(), "{matrix}");

    // The matrix is the case alone, and running it fails the same check between the same peers.
    let o = meshgate(&["list".as_ref(), file("yaml").as_os_str()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let listed = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [format!("rust-{libp2p} x go-{} / tcp+noise+yamux / pair", go["github.com/libp2p/go-libp2p"].as_str().unwrap())]
    );
    let again = tempfile::tempdir().unwrap();
    let o = run(&file("yaml"), again.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let rerun = results_of(again.path());
    let case2 = &rerun["cases"][0];
    let connections = check(case2, "connections");
    assert_eq!(connections["status"], "failed", "{case2:#}");
    let message = connections["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("rust-1 (rust-libp2p {libp2p}) held 3 connections to go-1 (go-libp2p v0.")),
        "{message}"
    );
    for i in 0..2 {
        assert_eq!(case2["peers"][i]["peer_id"], case["peers"][i]["peer_id"], "the same identities");
        assert_eq!(case2["peers"][i]["versions"], case["peers"][i]["versions"], "the same versions");
    }

    // Not the run's folder, or no such case: exit 2, saying what was expected.
    let alone = tempfile::tempdir().unwrap();
    std::fs::copy(&results, alone.path().join("results.json")).unwrap();
    let o = meshgate(&[
        "report".as_ref(),
        alone.path().join("results.json").as_os_str(),
        "--issue".as_ref(),
        "pair".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is missing what the run kept of case `rust x go / tcp+noise+yamux / pair`"), "{}", stderr(&o));
    let o = meshgate(&["report".as_ref(), results.as_os_str(), "--issue".as_ref(), "mixed-9".as_ref()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no case of this run is named `mixed-9`")
            && stderr(&o).contains("rust x go / tcp+noise+yamux / pair (000-"),
        "{}",
        stderr(&o)
    );
}
