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
        let mut child = Command::new(env!("CARGO_BIN_EXE_meshgate"))
            .current_dir(root())
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
                if owner.and_then(|o| o.split(':').nth(1)) == Some(pid.as_str()) {
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

/// Namespaces of a run (`ip netns list`).
fn namespaces_of(run: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("mg-{run}-")))
        .map(str::to_owned)
        .collect()
}

/// Whether the process `host:pid:start-time` still runs (not a zombie), as `pgrep` would list it.
fn alive(peer: &str) -> bool {
    let mut parts = peer.rsplitn(3, ':');
    let (Some(start), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let listed = Command::new("pgrep")
        .args(["-f", "--", "-peer-"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l == pid));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return false;
    };
    let fields: Vec<&str> = after.split(' ').collect();
    listed && fields.get(19) == Some(&start) && fields.first() != Some(&"Z")
}

/// Nothing of the run remains: no namespace, no link naming it, no peer process, no state file.
fn assert_nothing_left(w: &Watched) {
    let run = w.run_id();
    assert_eq!(namespaces_of(&run), Vec::<String>::new(), "namespaces left");
    let links = Command::new("ip").args(["link"]).output().map(|o| o.stdout);
    let links = String::from_utf8_lossy(&links.unwrap_or_default()).into_owned();
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
    let out = tempfile::tempdir().unwrap();
    let mut w = Watched::start(&["matrices/smoke.yaml", "--backend", "local"], out.path());
    let code = w.wait();
    let err = w.stderr();
    assert_eq!(code, Some(0), "stderr:\n{err}");
    assert!(err.contains("meshgate: PASSED 2 case(s)"), "{err}");
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
}

#[test]
fn a_peer_that_unsubscribes_fails_delivery_with_its_name_on_the_local_backend() {
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
}

#[test]
fn smoke_matrix_passes_on_loopback() {
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
    assert!(err.contains("meshgate: PASSED 2 case(s)"), "{err}");
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
    assert!(err.contains("meshgate: PASSED 1 case(s)"), "{err}");
}

#[test]
fn ctrl_c_mid_run_leaves_nothing_behind_on_the_local_backend() {
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
fn leftovers_of_a_killed_local_run_are_removed_by_the_next_run() {
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
