//! End to end, through the backends' own API: a real go peer, built as runs build it, is killed and restarted (the
//! same identity at the same address, its output on a new channel only), paused and resumed, and found in its
//! network namespace from outside; once its case and run are removed nothing of it is left. On the Docker engine
//! and on the local backend in network namespaces: without an engine, root or iproute2 these tests fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use meshgate::backend::docker::{DockerBackend, LABEL_RUN};
use meshgate::backend::local::{LocalBackend, LocalNet};
use meshgate::backend::{new_run_id, Backend, Output, PeerLaunch, PeerProcess};
use meshgate::cases::BuildSpec;
use meshgate::images::{cache_dir, project_root, Recipe};
use meshgate::matrix::{Language, Limits};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// The go peer's recipe and binary, built once for every test of this file (the fastest peer to build).
async fn go_peer() -> &'static (Recipe, PathBuf) {
    static BUILT: tokio::sync::OnceCell<(Recipe, PathBuf)> = tokio::sync::OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let spec = BuildSpec {
                language: Language::Go,
                version: None,
                path: None,
                pins: Default::default(),
                image: None,
                companions: Default::default(),
            };
            let recipe = Recipe::load(&project_root(), &spec).unwrap();
            let log = std::env::temp_dir().join(format!(
                "meshgate-lifecycle-build-{}.log",
                std::process::id()
            ));
            let binary = recipe
                .binary(&cache_dir(), &log)
                .await
                .unwrap_or_else(|e| panic!("the go peer builds: {e:#}"));
            (recipe, binary)
        })
        .await
}

fn launch(recipe: &Recipe) -> PeerLaunch {
    PeerLaunch {
        name: "go-1".into(),
        recipe: recipe.clone(),
        config: serde_json::from_str(
            r#"{"seed":7,"listen_port":4001,"transport":"tcp","security":"noise","muxer":"yamux"}"#,
        )
        .unwrap(),
        limits: Limits::default(),
        cancel: CancellationToken::new(),
    }
}

/// The next thing the peer writes, within `within`; `None` when it wrote nothing by then.
async fn next(p: &mut PeerProcess, within: Duration) -> Option<Output> {
    tokio::time::timeout(within, p.output.recv())
        .await
        .ok()
        .flatten()
}

/// Reads until the event `event`, within 30 s; returns it and every event line read on the way.
async fn until_event(p: &mut PeerProcess, event: &str) -> (Value, Vec<String>) {
    let mut seen = Vec::new();
    loop {
        match next(p, Duration::from_secs(30)).await {
            // Events come on stdout or, where the backend gives the peer one, through its events file.
            Some(Output::Stdout(line) | Output::EventsFile(line)) => {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                seen.push(line);
                if v["event"] == event {
                    return (v, seen);
                }
            }
            Some(Output::Stderr(_)) => {}
            other => panic!("no {event} event: got {other:?} after {seen:#?}"),
        }
    }
}

/// Reads until the peer has been quiet for a second, so that what comes later is what it wrote later.
async fn drain(p: &mut PeerProcess) -> Vec<Output> {
    let mut read = Vec::new();
    while let Some(o) = next(p, Duration::from_secs(1)).await {
        assert!(!matches!(o, Output::Exited(_)), "the peer exited: {read:?}");
        read.push(o);
    }
    read
}

/// `started` and `listening` of a fresh life: its peer id, and the listen addresses it names.
async fn started(p: &mut PeerProcess) -> (String, Vec<String>, Vec<String>) {
    let (started, before) = until_event(p, "started").await;
    assert_eq!(
        before.len(),
        1,
        "`started` is the first event line: {before:#?}"
    );
    let (listening, mut lines) = until_event(p, "listening").await;
    lines.insert(0, before[0].clone());
    let addrs = listening["addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    (started["peer"].as_str().unwrap().to_owned(), addrs, lines)
}

/// Runs a command and returns its stdout; fails the test when it cannot run or fails.
fn run(program: &str, args: &[&str]) -> String {
    let o = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{program}`, which this test needs ({e}): install it")
        });
    assert!(
        o.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The IPv4 addresses `ip -4 addr` shows inside a namespace, entered from outside by its path.
fn addresses_in(netns: &Path) -> String {
    run(
        "nsenter",
        &[&format!("--net={}", netns.display()), "ip", "-4", "addr"],
    )
}

/// Kill, restart, pause, resume and the namespace, on one backend, for one peer of case 0; returns the pids of
/// both lives.
async fn lifecycle<B: Backend>(backend: &B) -> Vec<u32> {
    let (recipe, binary) = go_peer().await;
    backend.prepare(recipe, binary).await.unwrap();
    assert_eq!(backend.cannot_pause(), None, "this machine can pause peers");
    backend.create_network(0, "lifecycle").await.unwrap();
    let mut first = backend.start_peer(0, launch(recipe)).await.unwrap();
    let address = first.address;
    let (peer_id, addrs, _) = started(&mut first).await;
    let listen = format!("/ip4/{}/tcp/{}", address.ip(), address.port());
    assert!(addrs.contains(&listen), "{listen} in {addrs:?}");

    // Its namespace, entered from outside, holds its address.
    let ns = backend.netns(&first).unwrap();
    let shown = addresses_in(&ns);
    assert!(
        shown.contains(&format!("inet {}/", address.ip())),
        "{address} in:\n{shown}"
    );

    // Paused, it answers nothing: not even a command that every peer must answer at once (an `error`).
    drain(&mut first).await;
    backend.pause(&first.id).await.unwrap();
    first
        .stdin
        .write_all(b"{\"cmd\":\"meshgate-lifecycle-unknown\",\"cmd_id\":\"c1\"}\n")
        .await
        .unwrap();
    first.stdin.flush().await.unwrap();
    let meanwhile = next(&mut first, Duration::from_secs(3)).await;
    assert!(meanwhile.is_none(), "a paused peer wrote {meanwhile:?}");
    backend.resume(&first.id).await.unwrap();
    let (answer, _) = until_event(&mut first, "error").await;
    assert_eq!(answer["cmd_id"], "c1", "{answer}");
    assert_eq!(answer["cmd"], "meshgate-lifecycle-unknown", "{answer}");

    // Killed, paused as it is: the exit comes on its own channel, which then closes.
    drain(&mut first).await;
    backend.pause(&first.id).await.unwrap();
    backend.kill(&first.id).await;
    let exit = loop {
        match next(&mut first, Duration::from_secs(60)).await {
            Some(Output::Exited(e)) => break e,
            Some(_) => {}
            None => panic!("no Exited on the killed peer's channel"),
        }
    };
    assert_eq!(exit.code, Some(137), "SIGKILL: {exit:?}");

    // Restarted: the same identity at the same address, with nothing of the earlier life on the new channel.
    let mut second = backend
        .restart_peer(0, &first.id, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(second.address, address);
    assert_ne!(second.pid, first.pid, "a new process");
    let (again, addrs, mut lines) = started(&mut second).await;
    assert_eq!(again, peer_id, "the same identity");
    assert!(addrs.contains(&listen), "{listen} in {addrs:?}");
    lines.extend(
        drain(&mut second)
            .await
            .into_iter()
            .filter_map(|o| match o {
                Output::Stdout(l) | Output::EventsFile(l) => Some(l),
                _ => None,
            }),
    );
    assert!(
        !lines.iter().any(|l| l.contains("c1"))
            && lines.iter().filter(|l| l.contains("\"started\"")).count() == 1,
        "only the new life's output: {lines:#?}"
    );
    let old = tokio::time::timeout(Duration::from_secs(5), first.output.recv()).await;
    assert!(
        matches!(old, Ok(None)),
        "the old channel closes, with nothing of the new life: {old:?}"
    );
    let ns = backend.netns(&second).unwrap();
    let shown = addresses_in(&ns);
    assert!(
        shown.contains(&format!("inet {}/", address.ip())),
        "{address} in:\n{shown}"
    );
    // And it runs: it answers.
    second
        .stdin
        .write_all(b"{\"cmd\":\"meshgate-lifecycle-unknown\",\"cmd_id\":\"c2\"}\n")
        .await
        .unwrap();
    let (answer, _) = until_event(&mut second, "error").await;
    assert_eq!(answer["cmd_id"], "c2", "{answer}");

    // Removed while paused: nothing of it may be left for all that.
    backend.pause(&second.id).await.unwrap();
    backend.remove_case(0).await.unwrap();
    backend.remove_run().await.unwrap();
    [first.pid, second.pid].into_iter().flatten().collect()
}

/// Whether a process runs (not a zombie).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s.rfind(')').and_then(|i| s[i + 2..].chars().next());
        !matches!(state, Some('Z' | 'X'))
    })
}

#[tokio::test]
async fn a_docker_peer_is_killed_restarted_paused_and_resumed_in_place() {
    let run_id = new_run_id();
    let backend = DockerBackend::connect(&run_id).await.unwrap();
    let pids = lifecycle(&backend).await;
    let filter = format!("label={LABEL_RUN}={run_id}");
    let left = run("docker", &["ps", "-aq", "--filter", &filter]);
    assert_eq!(left.trim(), "", "containers of the run are left");
    let left = run("docker", &["network", "ls", "-q", "--filter", &filter]);
    assert_eq!(left.trim(), "", "networks of the run are left");
    assert!(!pids.iter().any(|&p| running(p)), "{pids:?}");
}

#[tokio::test]
async fn a_local_peer_is_killed_restarted_paused_and_resumed_in_its_namespace() {
    let run_id = new_run_id();
    let backend = LocalBackend::connect(&run_id, LocalNet::Netns)
        .await
        .unwrap_or_else(|e| {
            panic!("network namespaces are needed (run as root with iproute2): {e:#}")
        });
    let pids = lifecycle(&backend).await;
    let namespaces = run("ip", &["netns", "list"]);
    assert!(
        !namespaces.contains(&format!("mg-{run_id}-")),
        "namespaces of the run are left:\n{namespaces}"
    );
    let name = format!("meshgate-{run_id}");
    for hierarchy in ["", "memory", "pids", "freezer"] {
        let cgroup = Path::new("/sys/fs/cgroup").join(hierarchy).join(&name);
        assert!(!cgroup.exists(), "{} is left", cgroup.display());
    }
    assert!(
        !cache_dir().join("local").join(&run_id).exists(),
        "the state file is left"
    );
    assert!(!pids.iter().any(|&p| running(p)), "{pids:?}");
}

#[tokio::test]
async fn peers_on_loopback_have_no_namespace_for_faults() {
    let run_id = new_run_id();
    let backend = LocalBackend::connect(&run_id, LocalNet::Loopback)
        .await
        .unwrap();
    let (recipe, binary) = go_peer().await;
    backend.prepare(recipe, binary).await.unwrap();
    backend.create_network(0, "loopback").await.unwrap();
    let mut peer = backend.start_peer(0, launch(recipe)).await.unwrap();
    started(&mut peer).await;
    let why = backend.netns(&peer).unwrap_err();
    assert!(why.contains("share the host's loopback"), "{why}");
    // On loopback too, a restarted peer is back on its port.
    backend.kill(&peer.id).await;
    while !matches!(
        next(&mut peer, Duration::from_secs(60)).await,
        Some(Output::Exited(_)) | None
    ) {}
    let mut again = backend
        .restart_peer(0, &peer.id, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(again.address, peer.address);
    let (_, addrs, _) = started(&mut again).await;
    let listen = format!("/tcp/{}", peer.address.port());
    assert!(
        addrs.iter().any(|a| a.ends_with(&listen)),
        "{listen} in {addrs:?}"
    );
    backend.remove_run().await.unwrap();
}
