//! End to end on the swarm backend: the `meshgate` binary runs the smoke matrix's real rust-libp2p and go-libp2p
//! peers as Docker swarm services on a one-node swarm (`--backend swarm`), talking to each over its control port
//! across the overlay network. The swarm is made by the test when the engine is in none, and left as it was found;
//! the run must pass as on the Docker backend and leave no service, container or network behind, whether it ends,
//! is interrupted (Ctrl-C), or is killed (then the next run removes what it left).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::{results_of, root, stderr, wait_for_stderr};

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
    /// Whether `docker swarm init` made the engine's `docker_gwbridge` (leaving the swarm keeps it).
    made_gwbridge: bool,
}

impl OneNodeSwarm {
    fn ensure() -> Self {
        match swarm_state().as_str() {
            "active" => Self { made: false, made_gwbridge: false },
            "inactive" => {
                let had_gwbridge = docker(&["network", "inspect", "docker_gwbridge"]).status.success();
                let mut out = docker(&["swarm", "init"]);
                // An engine with several addresses must be told which to advertise; one node needs none but its own.
                if !out.status.success() && stderr(&out).contains("advertise") {
                    out = docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
                }
                assert!(out.status.success(), "docker swarm init: {}", stderr(&out));
                Self { made: true, made_gwbridge: !had_gwbridge }
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
        if self.made_gwbridge {
            let out = docker(&["network", "rm", "docker_gwbridge"]);
            if !out.status.success() {
                eprintln!("docker network rm docker_gwbridge: {}", stderr(&out));
            }
        }
    }
}

/// The names of what the engine holds labelled by meshgate's run `pid` owns (containers, networks), and every
/// meshgate service (only the swarm backend makes services).
/// What a run left, once the engine's own bookkeeping caught up: a removed overlay is still listed for a moment
/// (the swarm's network state is eventually consistent), so this looks again for up to 10 s before it answers.
fn leftovers(pid: u32) -> Vec<String> {
    let mut left = listed(pid);
    for _ in 0..20 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        left = listed(pid);
    }
    left
}

fn listed(pid: u32) -> Vec<String> {
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

fn meshgate_run(args: &[&str], out: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .current_dir(root())
        .arg("run")
        .args(args)
        .args(["--backend", "swarm", "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("meshgate runs")
}


/// The meshgate services running now, by name.
fn services() -> Vec<String> {
    let out = docker(&["service", "ls", "--filter", "label=io.meshgate.run", "--format", "{{.Name}}"]);
    assert!(out.status.success(), "docker service ls: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn on_a_one_node_swarm_the_smoke_matrix_passes_over_control_ports_and_no_exit_path_leaves_anything() {
    let before = swarm_state();
    let swarm = OneNodeSwarm::ensure();
    smoke_passes_and_leaves_nothing();
    faults_are_made_on_this_node_and_restart_is_skipped();
    interrupted_run_leaves_nothing();
    killed_run_is_swept_by_the_next();
    drop(swarm);
    assert_eq!(swarm_state(), before, "the engine's swarm is not as the test found it");
}

fn smoke_passes_and_leaves_nothing() {
    let out = tempfile::tempdir().unwrap();
    let child = meshgate_run(&["matrices/smoke.yaml"], out.path());
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "stderr:\n{err}");
    assert!(err.contains("contract over control port"), "{err}");
    assert!(err.contains("meshgate: PASSED 2 cases, 18 checks judged"), "{err}");
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
    assert_eq!(logs.len(), 8, "a log per peer of 2 cases x 4 peers: {logs:?}");
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("controller connected from"),
            "{} does not show the runner connecting to its control port:\n{text}",
            log.display()
        );
    }
    assert_eq!(leftovers(pid), Vec::<String>::new(), "left on the engine after the run");
}

/// Ctrl-C while the peers run: exit 2, and the services, overlay and helper are gone.
fn interrupted_run_leaves_nothing() {
    let out = tempfile::tempdir().unwrap();
    let mut child = meshgate_run(&["matrices/smoke.yaml"], out.path());
    let pid = child.id();
    wait_for_stderr(&mut child, "[1/2]", Duration::from_secs(300));
    std::thread::sleep(Duration::from_secs(4));
    assert!(!services().is_empty(), "the run had no service up when it was interrupted");
    assert!(Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(2), "an interrupted run could not be carried out");
    assert_eq!(leftovers(pid), Vec::<String>::new(), "left on the engine after Ctrl-C");
}

/// A run killed outright leaves its objects; the next run finds their owner gone and removes them.
fn killed_run_is_swept_by_the_next() {
    let out = tempfile::tempdir().unwrap();
    let mut child = meshgate_run(&["matrices/smoke.yaml"], out.path());
    let pid = child.id();
    wait_for_stderr(&mut child, "[1/2]", Duration::from_secs(300));
    std::thread::sleep(Duration::from_secs(4));
    child.kill().unwrap();
    child.wait().unwrap();
    let left = leftovers(pid);
    assert!(left.iter().any(|n| services().contains(n)), "the killed run left no service: {left:?}");
    let next = tempfile::tempdir().unwrap();
    let o = meshgate_run(&["matrices/smoke.yaml", "--filter", "quic"], next.path())
        .wait_with_output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "stderr:\n{err}");
    assert!(err.contains("left on the engine by earlier runs that died"), "{err}");
    assert_eq!(leftovers(pid), Vec::<String>::new(), "the killed run's objects outlived the next run");
}

/// The faults matrix: partitions, shaping and pauses are made in the namespaces of tasks on this node, as on the
/// Docker backend; restart in place cannot be made on a swarm, and its case is skipped with the reason, never passed.
fn faults_are_made_on_this_node_and_restart_is_skipped() {
    let out = tempfile::tempdir().unwrap();
    let child = meshgate_run(&["matrices/faults.yaml"], out.path());
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "stderr:\n{err}");
    let results = results_of(out.path());
    for case in results["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let statuses: Vec<&str> = case["checks"].as_array().unwrap().iter().map(|c| c["status"].as_str().unwrap()).collect();
        if name.ends_with("/ restart") {
            assert!(statuses.iter().all(|s| *s == "skipped"), "{case:#}");
            assert!(case.to_string().contains("cannot restart a peer in place"), "{case:#}");
        } else {
            assert!(case["error"].is_null(), "{case:#}");
            assert!(statuses.contains(&"passed") && statuses.iter().all(|s| *s == "passed" || *s == "skipped"), "{case:#}");
        }
    }
    assert_eq!(leftovers(pid), Vec::<String>::new(), "left on the engine after the faults");
}
