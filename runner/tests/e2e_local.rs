//! End to end on the local backend: the `meshgate` binary runs real rust-libp2p and go-libp2p peers as processes
//! on this machine (`--backend local`), in network namespaces when the tests run as root, else on loopback. The
//! verdicts must be those of the Docker backend (tests/e2e.rs), and a run must leave no process, namespace or
//! link behind, however it ends.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::root;

/// Every run of the local backend sweeps the leftovers of runs that died, whoever started them: a test that
/// leaves leftovers on purpose, or looks for them, would race with the other tests' runs. The tests of this file
/// take turns.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The cache the runner uses (images::cache_dir), where the local backend keeps a state file per run.
fn state_dir() -> PathBuf {
    common::cache().join("local")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A running `meshgate run --backend local ...`, watched from outside: its stderr, and what its state file says
/// (run id, peer processes) while it exists.
struct Watched {
    child: Child,
    stderr: Arc<Mutex<String>>,
    run: Arc<Mutex<Option<String>>>,
    /// `host:pid:start-time` of every peer the run started.
    peers: Arc<Mutex<Vec<String>>>,
}

impl Watched {
    fn start(args: &[&str], out: &Path) -> Self {
        Self::start_with(args, out, &[])
    }

    fn start_with(args: &[&str], out: &Path, env: &[(&str, &std::ffi::OsStr)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshgate"))
            .current_dir(root())
            .envs(env.iter().copied())
            .arg("run")
            .args(args)
            .arg("--out")
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("meshgate runs");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (run, peers) = (Arc::new(Mutex::new(None)), Arc::new(Mutex::new(Vec::new())));
        let pid = child.id().to_string();
        let (run_w, peers_w) = (run.clone(), peers.clone());
        // The state file lives as long as the run: poll it for the run id and every peer it records.
        std::thread::spawn(move || loop {
            for entry in std::fs::read_dir(state_dir())
                .into_iter()
                .flatten()
                .flatten()
            {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let owner = text.lines().find_map(|l| l.strip_prefix("owner "));
                // `<boot id>:<pid namespace>:<pid>:<start>` (or the old `host:pid:start`).
                if owner.and_then(|o| o.rsplit(':').nth(1)) == Some(pid.as_str()) {
                    *run_w.lock().unwrap() = Some(entry.file_name().to_string_lossy().into_owned());
                    let mut peers = peers_w.lock().unwrap();
                    for p in text.lines().filter_map(|l| l.strip_prefix("peer ")) {
                        if !peers.iter().any(|q| q == p) {
                            peers.push(p.to_owned());
                        }
                    }
                }
            }
            if Arc::strong_count(&run_w) == 1 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        });
        Watched {
            child,
            stderr,
            run,
            peers,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_for_stderr(&self, marker: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr().contains(marker) {
            assert!(
                Instant::now() < deadline,
                "no {marker:?} on stderr within {within:?}; saw:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the exit (and the last of stderr); returns the exit code.
    fn wait(&mut self) -> Option<i32> {
        let code = self.child.wait().unwrap().code();
        std::thread::sleep(Duration::from_millis(300));
        code
    }

    fn run_id(&self) -> String {
        self.run
            .lock()
            .unwrap()
            .clone()
            .expect("the run wrote its state file")
    }

    fn peers(&self) -> Vec<String> {
        self.peers.lock().unwrap().clone()
    }
}

/// Runs a tool the leak assertions rely on, and fails the test when it cannot: a missing `ip` or `pgrep` must
/// never read as "nothing left". `ok` lists the exit codes that are answers (pgrep: 1 is "no such process").
fn tool_in(path: Option<&std::ffi::OsStr>, name: &str, args: &[&str], ok: &[i32]) -> Vec<u8> {
    let mut c = Command::new(name);
    c.args(args);
    if let Some(p) = path {
        c.env("PATH", p);
    }
    let out = c.output().unwrap_or_else(|e| {
        panic!("cannot run `{name}`, which the leak assertions need ({e}): install it")
    });
    assert!(
        out.status.code().is_some_and(|c| ok.contains(&c)),
        "`{name} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn tool(name: &str, args: &[&str], ok: &[i32]) -> Vec<u8> {
    tool_in(None, name, args, ok)
}

/// Namespaces whose name starts with `prefix` (`ip netns list`).
fn namespaces_in(path: Option<&std::ffi::OsStr>, prefix: &str) -> Vec<String> {
    String::from_utf8_lossy(&tool_in(path, "ip", &["netns", "list"], &[0]))
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Namespaces of a run.
fn namespaces_of(run: &str) -> Vec<String> {
    namespaces_in(None, &format!("mg-{run}-"))
}

/// Whether the process `<...>:pid:start-time` still runs (not a zombie), as `pgrep` would list it.
fn alive(peer: &str) -> bool {
    alive_in(None, peer)
}

fn alive_in(path: Option<&std::ffi::OsStr>, peer: &str) -> bool {
    let mut parts = peer.rsplitn(3, ':');
    let (Some(start), Some(pid)) = (parts.next(), parts.next()) else {
        panic!("not a process identity: {peer}");
    };
    let listed = String::from_utf8_lossy(&tool_in(path, "pgrep", &["-f", "--", "-peer-"], &[0, 1]))
        .lines()
        .any(|l| l == pid);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return false;
    };
    let fields: Vec<&str> = after.split(' ').collect();
    listed && fields.get(19) == Some(&start) && fields.first() != Some(&"Z")
}

#[test]
fn the_leak_assertions_fail_when_their_tools_are_missing() {
    let _turn = turn();
    let empty = tempfile::tempdir().unwrap();
    let path = Some(empty.path().as_os_str());
    for (what, probe) in [
        (
            "ip",
            Box::new(move || drop(namespaces_in(path, "mg-")))
                as Box<dyn Fn() + std::panic::RefUnwindSafe>,
        ),
        (
            "pgrep",
            Box::new(move || {
                let _ = alive_in(path, "b:1:1:1");
            }),
        ),
    ] {
        let caught = std::panic::catch_unwind(&*probe);
        assert!(
            caught.is_err(),
            "without `{what}`, the assertion must fail, not report nothing left"
        );
    }
}

/// Nothing of the run remains: no namespace, no link naming it, no peer process, no state file.
fn assert_nothing_left(w: &Watched) {
    let run = w.run_id();
    assert_eq!(namespaces_of(&run), Vec::<String>::new(), "namespaces left");
    let links = String::from_utf8_lossy(&tool("ip", &["link"], &[0])).into_owned();
    assert!(!links.contains(&run), "links left: {links}");
    let peers = w.peers();
    assert!(!peers.is_empty(), "the run recorded its peers");
    let left: Vec<&String> = peers.iter().filter(|p| alive(p)).collect();
    assert!(left.is_empty(), "peer processes left: {left:?}");
    assert!(!state_dir().join(&run).exists(), "state file left");
}

fn junit(out: &Path) -> String {
    std::fs::read_to_string(out.join("junit.xml")).unwrap()
}

#[test]
fn smoke_matrix_passes_on_the_local_backend_and_leaves_nothing() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let mut w = Watched::start(&["matrices/smoke.yaml", "--backend", "local"], out.path());
    let code = w.wait();
    let err = w.stderr();
    assert_eq!(code, Some(0), "stderr:\n{err}");
    assert!(err.contains("meshgate: PASSED 2 cases"), "{err}");
    let mode = if is_root() {
        "each in its own network namespace"
    } else {
        "on 127.0.0.1"
    };
    assert!(err.contains(mode), "{err}");

    let xml = junit(out.path());
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(doc.root_element().attribute("failures"), Some("0"));
    assert_eq!(doc.root_element().attribute("errors"), Some("0"));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    for case in results["cases"].as_array().unwrap() {
        let delivery = case["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "delivery")
            .unwrap();
        // 4 peers x 10 messages, each to 3 others.
        assert!(
            delivery["evidence"][0]
                .as_str()
                .unwrap()
                .contains("120 of 120 deliveries"),
            "{delivery}"
        );
        let versions: Vec<&str> = case["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["library"].as_str().unwrap())
            .collect();
        assert_eq!(
            versions,
            ["rust-libp2p", "rust-libp2p", "go-libp2p", "go-libp2p"]
        );
    }
    if is_root() {
        // Peers dialled each other on the case's private segment.
        let record = std::fs::read_to_string(
            out.path()
                .join(results["cases"][0]["logs"].as_str().unwrap())
                .join("record.jsonl"),
        )
        .unwrap();
        assert!(record.contains("/ip4/10.213.0.3/tcp/4001/p2p/"), "{record}");
    }
    assert_nothing_left(&w);
    common::assert_judged_again_alike(out.path(), code, &err);
    judging_again_with_other_settings_or_formats(out.path(), &results);
}

/// `meshgate judge` over a passing smoke run: a tighter deadline fails delivery alone, one case folder is judged
/// by itself, and what this meshgate cannot read is refused.
fn judging_again_with_other_settings_or_formats(run: &Path, results: &serde_json::Value) {
    let strict = tempfile::tempdir().unwrap();
    let o = common::judge(&[
        run.as_os_str(),
        "--set".as_ref(),
        "delivery.deadline=1ms".as_ref(),
        "--out".as_ref(),
        strict.path().as_os_str(),
    ]);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("meshgate: FAILED rust x go / tcp+noise+yamux / mixed-4 [delivery]: "),
        "{err}"
    );
    let judged = common::results_of(strict.path());
    for (case, before) in judged["cases"]
        .as_array()
        .unwrap()
        .iter()
        .zip(results["cases"].as_array().unwrap())
    {
        for (check, was) in case["checks"]
            .as_array()
            .unwrap()
            .iter()
            .zip(before["checks"].as_array().unwrap())
        {
            let expected = if check["name"] == "delivery" {
                "failed"
            } else {
                was["status"].as_str().unwrap()
            };
            assert_eq!(check["status"], expected, "{check:#}");
        }
        // Its logs are named where they are, from the other folder.
        let logs = std::path::PathBuf::from(case["logs"].as_str().unwrap());
        assert!(
            logs.is_absolute() && logs.join("record.jsonl").is_file(),
            "{logs:?}"
        );
    }
    assert_eq!(
        common::results_of(run),
        *results,
        "the run's own results stay as they were"
    );

    let case = run.join(results["cases"][0]["logs"].as_str().unwrap());
    let alone = tempfile::tempdir().unwrap();
    let o = common::judge(&[case.as_os_str(), "--out".as_ref(), alone.path().as_os_str()]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.starts_with("rust x go / tcp+noise+yamux / mixed-4: pass ("),
        "{stdout}"
    );
    let judged = common::results_of(alone.path());
    assert_eq!(judged["cases"][0]["checks"], results["cases"][0]["checks"]);
    assert_eq!(judged["cases"].as_array().unwrap().len(), 1);
    assert!(alone.path().join("junit.xml").is_file());

    // A case.json, then a record, of a format this meshgate does not know; a folder with neither.
    let copy = tempfile::tempdir().unwrap();
    for file in ["case.json", "record.jsonl"] {
        std::fs::copy(case.join(file), copy.path().join(file)).unwrap();
    }
    let text = std::fs::read_to_string(copy.path().join("case.json")).unwrap();
    std::fs::write(
        copy.path().join("case.json"),
        // Whatever format this meshgate writes, 99 is one it does not know.
        text.replacen(&format!("\"format\": {}", meshgate::stored::FORMAT), "\"format\": 99", 1),
    )
    .unwrap();
    let o = common::judge(&[copy.path().as_os_str()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("case.json is of format 99; this meshgate"),
        "{}",
        common::stderr(&o)
    );
    std::fs::write(copy.path().join("case.json"), text).unwrap();
    let record = std::fs::read_to_string(copy.path().join("record.jsonl")).unwrap();
    let (_, observations) = record.split_once('\n').unwrap();
    std::fs::write(copy.path().join("record.jsonl"), observations).unwrap();
    let o = common::judge(&[copy.path().as_os_str()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("record.jsonl names no format"),
        "{}",
        common::stderr(&o)
    );
    let empty = tempfile::tempdir().unwrap();
    let o = common::judge(&[empty.path().as_os_str()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::stderr(&o).contains("neither a case folder"),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn a_peer_that_unsubscribes_fails_delivery_with_its_name_on_the_local_backend() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let mut w = Watched::start(
        &[
            "runner/tests/matrices/unsubscribe.yaml",
            "--backend",
            "local",
        ],
        out.path(),
    );
    let code = w.wait();
    common::assert_unsubscribe_verdict(code, &w.stderr(), out.path());
    assert_nothing_left(&w);
    common::assert_judged_again_alike(out.path(), code, &w.stderr());
}

#[test]
fn the_faults_matrix_passes_in_namespaces_on_the_local_backend_and_leaves_nothing() {
    let _turn = turn();
    assert!(is_root(), "faults are made in the peers' namespaces: these tests need root");
    let out = tempfile::tempdir().unwrap();
    let mut w = Watched::start(
        &["matrices/faults.yaml", "--backend", "local", "--local-net", "netns"],
        out.path(),
    );
    let code = w.wait();
    let err = w.stderr();
    assert_eq!(code, Some(0), "stderr:\n{err}");
    assert!(err.contains("meshgate: PASSED 5 cases"), "{err}");
    let results = common::results_of(out.path());
    for case in results["cases"].as_array().unwrap() {
        let record = std::fs::read_to_string(out.path().join(case["logs"].as_str().unwrap()).join("record.jsonl")).unwrap();
        assert!(record.contains(r#""kind":"fault""#), "{} recorded no fault", case["name"]);
    }
    assert_nothing_left(&w);
    common::assert_judged_again_alike(out.path(), code, &err);
}

#[test]
fn network_faults_on_loopback_skip_their_case_with_the_reason() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let mut w = Watched::start(
        &[
            "matrices/faults.yaml",
            "--backend",
            "local",
            "--local-net",
            "loopback",
            "--filter",
            "partition",
        ],
        out.path(),
    );
    let code = w.wait();
    let err = w.stderr();
    assert_eq!(code, Some(2), "a run that judged nothing: {err}");
    let headline = err.lines().last().unwrap_or_default();
    assert!(
        headline.starts_with("meshgate: NOTHING JUDGED: 1 case skipped (network faults cannot be made to rust-1: ")
            && headline.contains("loopback"),
        "{headline}"
    );
    assert_nothing_left(&w);
}

#[test]
fn smoke_matrix_passes_on_loopback() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let mut w = Watched::start(
        &[
            "matrices/smoke.yaml",
            "--backend",
            "local",
            "--local-net",
            "loopback",
        ],
        out.path(),
    );
    let code = w.wait();
    let err = w.stderr();
    assert_eq!(code, Some(0), "stderr:\n{err}");
    assert!(err.contains("meshgate: PASSED 2 cases"), "{err}");
    assert!(err.contains("on 127.0.0.1, each on its own port"), "{err}");
    let record = std::fs::read_to_string(
        out.path()
            .join("cases/000-rust_x_go_tcp_noise_yamux_mixed-4/record.jsonl"),
    )
    .unwrap();
    assert!(record.contains("\"/ip4/127.0.0.1/tcp/"), "{record}");
    assert_nothing_left(&w);
}

#[test]
fn without_a_docker_engine_auto_runs_locally() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshgate"));
    child
        .current_dir(root())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["run", "matrices/smoke.yaml", "--filter", "quic", "--out"])
        .arg(out.path());
    let o = child.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "stderr:\n{err}");
    assert!(
        err.contains("no Docker engine answers, so the local backend runs this"),
        "{err}"
    );
    assert!(err.contains("meshgate: PASSED 1 case"), "{err}");
}

#[test]
fn ctrl_c_mid_run_leaves_nothing_behind_on_the_local_backend() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let mut w = Watched::start(&["matrices/smoke.yaml", "--backend", "local"], out.path());
    w.wait_for_stderr("[1/2]", Duration::from_secs(900));
    std::thread::sleep(Duration::from_secs(3));
    let peers = w.peers();
    assert_eq!(peers.iter().filter(|p| alive(p)).count(), 4, "{peers:?}");
    if is_root() {
        assert_eq!(namespaces_of(&w.run_id()).len(), 5, "a hub and 4 peers");
    }
    let status = Command::new("kill")
        .args(["-INT", &w.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        w.wait(),
        Some(2),
        "an interrupted run could not be carried out"
    );
    assert!(w.stderr().contains("interrupted"), "{}", w.stderr());
    assert_nothing_left(&w);
}

#[test]
fn ctrl_c_while_faults_are_in_force_leaves_nothing_behind() {
    let _turn = turn();
    assert!(is_root(), "faults are made in the peers' namespaces: this test needs root");
    let out = tempfile::tempdir().unwrap();
    let mut w = Watched::start(
        &["runner/tests/matrices/faults-held.yaml", "--backend", "local", "--local-net", "netns"],
        out.path(),
    );
    w.wait_for_stderr("[1/1]", Duration::from_secs(900));
    // The shaping is in force once the shaped peer's namespace holds meshgate's rules.
    let shaped = || {
        namespaces_of(&w.run_id())
            .iter()
            .filter(|ns| ns.ends_with("-rust-1"))
            .any(|ns| String::from_utf8_lossy(&tool("ip", &["netns", "exec", ns, "iptables", "-S"], &[0, 1])).contains("MESHGATE"))
    };
    let since = std::time::Instant::now();
    while !shaped() {
        assert!(since.elapsed() < Duration::from_secs(60), "the shaping never came: {}", w.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let status = Command::new("kill")
        .args(["-INT", &w.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(w.wait(), Some(2), "an interrupted run could not be carried out");
    // The frozen peer was thawed and stopped, the shaped one's rules and delay lines went with the run.
    assert_nothing_left(&w);
}

#[test]
fn leftovers_of_a_killed_local_run_are_removed_by_the_next_run() {
    let _turn = turn();
    let out = tempfile::tempdir().unwrap();
    let mut w = Watched::start(&["matrices/smoke.yaml", "--backend", "local"], out.path());
    w.wait_for_stderr("[1/2]", Duration::from_secs(900));
    std::thread::sleep(Duration::from_secs(3));
    // SIGKILL: no clean-up is possible; the namespaces and the state file stay.
    w.child.kill().unwrap();
    w.wait();
    let run = w.run_id();
    assert!(state_dir().join(&run).exists());
    if is_root() {
        assert!(
            !namespaces_of(&run).is_empty(),
            "a killed run leaves its namespaces"
        );
    }

    let next = tempfile::tempdir().unwrap();
    let mut n = Watched::start(
        &[
            "runner/tests/matrices/unsubscribe.yaml",
            "--backend",
            "local",
        ],
        next.path(),
    );
    assert_eq!(n.wait(), Some(1), "{}", n.stderr());
    assert!(
        n.stderr().contains("by earlier runs that died"),
        "{}",
        n.stderr()
    );
    assert_nothing_left(&w);
    assert_nothing_left(&n);
}

/// A directory holding an `ip` that fails to delete the namespaces of case 0's peers p1 and p2 (and runs the real
/// one for everything else), to see how a run reports what it could not remove.
fn failing_ip() -> tempfile::TempDir {
    let real = String::from_utf8(tool("sh", &["-c", "command -v ip"], &[0])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ip = dir.path().join("ip");
    std::fs::write(
        &ip,
        format!(
            "#!/bin/sh\nif [ \"$1 $2\" = \"netns del\" ]; then case $3 in *-c0-p1-*|*-c0-p2-*) echo \"Cannot remove $3: simulated\" >&2; exit 1;; esac; fi\nexec {} \"$@\"\n",
            real.trim()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ip, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut p = dir.as_os_str().to_owned();
    p.push(":");
    p.push(std::env::var_os("PATH").unwrap_or_default());
    p
}

/// Asserts that stderr names both namespaces that could not go, each on its own clean-up line, that they alone
/// are left (everything else of the run went), and then removes them.
fn assert_each_unremoved_namespace_reported(w: &Watched) {
    let run = w.run_id();
    let err = w.stderr();
    let mut left = namespaces_of(&run);
    left.sort();
    assert_eq!(
        left.len(),
        2,
        "only the two undeletable namespaces stay: {left:?}\n{err}"
    );
    for (ns, peer) in left.iter().zip(["-c0-p1-", "-c0-p2-"]) {
        assert!(ns.contains(peer), "{left:?}");
        assert!(
            err.lines().any(|l| l.starts_with(&format!(
                "meshgate: clean-up: could not remove namespace {ns}: "
            ))),
            "{ns} reported: {err}"
        );
    }
    let left_peers: Vec<String> = w.peers().into_iter().filter(|p| alive(p)).collect();
    assert!(left_peers.is_empty(), "peer processes left: {left_peers:?}");
    assert!(
        state_dir().join(&run).exists(),
        "the state file stays while something of the run does, for the next start"
    );
    for ns in &left {
        tool("ip", &["netns", "del", ns], &[0]);
    }
    let _ = std::fs::remove_file(state_dir().join(&run));
}

#[test]
fn a_passing_run_whose_clean_up_fails_names_every_namespace_left_and_exits_2() {
    let _turn = turn();
    // A test that passed without its namespaces would be a false pass: without root it fails, saying why.
    assert!(is_root(), "this test needs root: it runs peers in network namespaces");
    let fake = failing_ip();
    let out = tempfile::tempdir().unwrap();
    let path = path_with(fake.path());
    let mut w = Watched::start_with(
        &[
            "matrices/smoke.yaml",
            "--filter",
            "quic",
            "--backend",
            "local",
            "--local-net",
            "netns",
        ],
        out.path(),
        &[("PATH", &path)],
    );
    let code = w.wait();
    let err = w.stderr();
    assert!(err.contains("meshgate: PASSED 1 case"), "{err}");
    assert_eq!(
        code,
        Some(2),
        "the checks passed, the clean-up did not: {err}"
    );
    assert_each_unremoved_namespace_reported(&w);
}

#[test]
fn an_interrupted_run_reports_what_its_clean_up_could_not_remove() {
    let _turn = turn();
    // A test that passed without its namespaces would be a false pass: without root it fails, saying why.
    assert!(is_root(), "this test needs root: it runs peers in network namespaces");
    let fake = failing_ip();
    let out = tempfile::tempdir().unwrap();
    let path = path_with(fake.path());
    let mut w = Watched::start_with(
        &[
            "matrices/smoke.yaml",
            "--backend",
            "local",
            "--local-net",
            "netns",
        ],
        out.path(),
        &[("PATH", &path)],
    );
    w.wait_for_stderr("[1/2]", Duration::from_secs(900));
    std::thread::sleep(Duration::from_secs(3));
    let status = Command::new("kill")
        .args(["-INT", &w.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(w.wait(), Some(2));
    assert!(w.stderr().contains("interrupted"), "{}", w.stderr());
    assert_each_unremoved_namespace_reported(&w);
}
