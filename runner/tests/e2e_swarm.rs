//! End to end on the swarm backend: the `meshgate` binary runs the smoke matrix's real rust-libp2p and go-libp2p
//! peers as Docker swarm services on a one-node swarm (`--backend swarm`), talking to each over its control port
//! across the overlay network. The swarm is made by the test when the engine is in none, and left as it was found;
//! the run must pass as on the Docker backend and leave no service, container or network behind.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{results_of, root, stderr};

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker client")
}

fn swarm_state() -> String {
    let out = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert!(out.status.success(), "docker info: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A one-node swarm for the test's length: made when the engine is in none, and left on drop only then.
struct OneNodeSwarm {
    made: bool,
}

impl OneNodeSwarm {
    fn ensure() -> Self {
        match swarm_state().as_str() {
            "active" => Self { made: false },
            "inactive" => {
                let mut out = docker(&["swarm", "init"]);
                // An engine with several addresses must be told which to advertise; one node needs none but its own.
                if !out.status.success() && stderr(&out).contains("advertise") {
                    out = docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
                }
                assert!(out.status.success(), "docker swarm init: {}", stderr(&out));
                Self { made: true }
            }
            other => panic!("the engine's swarm is {other}: neither in a swarm nor out of one"),
        }
    }
}

impl Drop for OneNodeSwarm {
    fn drop(&mut self) {
        if self.made {
            let out = docker(&["swarm", "leave", "--force"]);
            if !out.status.success() {
                eprintln!("docker swarm leave --force: {}", stderr(&out));
            }
        }
    }
}

/// The names of what the engine holds labelled by meshgate's run `pid` owns (containers, networks), and every
/// meshgate service (only the swarm backend makes services).
fn leftovers(pid: u32) -> Vec<String> {
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
        let out = docker(args);
        assert!(out.status.success(), "docker {args:?}: {}", stderr(&out));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((name, owner)) = line.split_once(' ') {
                if owner.rsplit(':').nth(1).and_then(|p| p.parse().ok()) == Some(pid) {
                    found.push(name.to_owned());
                }
            }
        }
    }
    let out = docker(&[
        "service",
        "ls",
        "--filter",
        "label=io.meshgate.run",
        "--format",
        "{{.Name}}",
    ]);
    assert!(out.status.success(), "docker service ls: {}", stderr(&out));
    found.extend(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned),
    );
    found
}

/// Every file of a run's output whose name ends so, recursively.
fn files_ending(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_ending(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

#[test]
fn smoke_matrix_passes_on_a_one_node_swarm_over_control_ports_and_leaves_nothing() {
    let before = swarm_state();
    let swarm = OneNodeSwarm::ensure();
    let out = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .current_dir(root())
        .args(["run", "matrices/smoke.yaml", "--backend", "swarm", "--out"])
        .arg(out.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("meshgate runs");
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    let left = leftovers(pid);
    drop(swarm);
    assert_eq!(
        swarm_state(),
        before,
        "the engine's swarm is not as the test found it"
    );

    assert_eq!(o.status.code(), Some(0), "stderr:\n{err}");
    assert!(err.contains("contract over control port"), "{err}");
    assert!(
        err.contains("meshgate: PASSED 2 cases, 18 checks judged"),
        "{err}"
    );
    let results = results_of(out.path());
    for case in results["cases"].as_array().unwrap() {
        assert!(case["error"].is_null(), "{case:#}");
        for check in case["checks"].as_array().unwrap() {
            assert_eq!(check["status"], "passed", "{check:#}");
        }
    }
    // Every peer took its commands and gave its events over its control port: each says in its log that the
    // runner connected there, and the events judged above came over nothing else (stdout is silent then).
    let logs = files_ending(out.path(), ".stderr");
    assert_eq!(
        logs.len(),
        8,
        "a log per peer of 2 cases x 4 peers: {logs:?}"
    );
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("controller connected from"),
            "{} does not show the runner connecting to its control port:\n{text}",
            log.display()
        );
    }
    assert_eq!(
        left,
        Vec::<String>::new(),
        "left on the engine after the run"
    );
}
