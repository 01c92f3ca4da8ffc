//! End to end: `latest` and `newest: N` resolved from the real registries (crates.io's sparse index, the Go module
//! proxy), the cached resolution used when they do not answer (and said so), an error when nothing is cached; and a
//! run of a resolved go-libp2p on a real Docker engine, with what it stood for in results.json and junit.xml, and the
//! case whose pinned go-libp2p-pubsub would raise go-libp2p skipped, never built as something else.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{results_of, root, stderr};

fn meshgate(cache: Option<&Path>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meshgate"));
    c.current_dir(root());
    c.env_remove("MESHGATE_CRATES_INDEX").env_remove("MESHGATE_GOPROXY");
    if let Some(cache) = cache {
        c.env("MESHGATE_CACHE", cache);
    }
    c
}

/// An address nothing listens on: a registry that does not answer.
fn unreachable() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

fn offline(c: &mut Command) -> &mut Command {
    let closed = unreachable();
    c.env("MESHGATE_CRATES_INDEX", &closed).env("MESHGATE_GOPROXY", &closed)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The newest release of the `libp2p` crate, read from the index here with curl, independently of meshgate.
fn newest_libp2p() -> String {
    let out = Command::new("curl").args(["-sf", "https://index.crates.io/li/bp/libp2p"]).output().unwrap();
    assert!(out.status.success(), "curl cannot read the crates.io index");
    let mut newest: Option<(Vec<u64>, String)> = None;
    for line in stdout(&out).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let vers = v["vers"].as_str().unwrap().to_owned();
        if v["yanked"] == true || vers.contains('-') {
            continue;
        }
        let key: Vec<u64> = vers.split('.').map(|p| p.parse().unwrap()).collect();
        if newest.as_ref().is_none_or(|(k, _)| key > *k) {
            newest = Some((key, vers));
        }
    }
    newest.unwrap().1
}

#[test]
fn nightly_lists_the_newest_releases_online_and_the_cached_ones_offline() {
    let cache = tempfile::tempdir().unwrap();
    let nightly = root().join("matrices/nightly.yaml");
    let online = meshgate(Some(cache.path())).arg("list").arg(&nightly).output().unwrap();
    assert!(online.status.success(), "{}", stderr(&online));
    let text = stdout(&online);
    let rust = text.lines().find(|l| l.starts_with("# rust: newest: 4 = ")).unwrap_or_else(|| panic!("{text}"));
    assert!(rust.starts_with(&format!("# rust: newest: 4 = {}, ", newest_libp2p())), "{rust}");
    let go = text.lines().find(|l| l.starts_with("# go: newest: 2 = v")).unwrap_or_else(|| panic!("{text}"));
    let newest_go: Vec<u64> = go["# go: newest: 2 = v".len()..].split(',').next().unwrap().split('.').map(|p| p.parse().unwrap()).collect();
    assert!(newest_go >= vec![0, 52, 0], "{go}");
    assert!(!go.contains("cached") && !go.contains("OFFLINE"), "asked the registry: {go}");
    let cases = |t: &str| t.lines().filter(|l| !l.starts_with('#')).map(str::to_owned).collect::<Vec<_>>();
    assert!(cases(&text).iter().any(|c| c.contains(&format!("x go-v{}.{}.{}", newest_go[0], newest_go[1], newest_go[2]))));

    // Within the day, the cached resolution of the same registry, without asking again.
    let fresh = meshgate(Some(cache.path())).arg("list").arg(&nightly).output().unwrap();
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    assert!(stdout(&fresh).lines().filter(|l| l.starts_with("# ")).all(|l| l.contains("cached, fresh for a day")), "{}", stdout(&fresh));
    assert_eq!(cases(&stdout(&fresh)), cases(&text));

    // A registry that does not answer, days later: the cached resolution of any age, and it says so.
    for entry in std::fs::read_dir(cache.path().join("releases")).unwrap() {
        let path = entry.unwrap().path();
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["fetched_at"] = serde_json::json!(v["fetched_at"].as_u64().unwrap() - 3 * 86_400);
        std::fs::write(&path, v.to_string()).unwrap();
    }
    let stale = offline(&mut meshgate(Some(cache.path()))).arg("list").arg(&nightly).output().unwrap();
    assert!(stale.status.success(), "{}", stderr(&stale));
    let resolutions: Vec<String> = stdout(&stale).lines().filter(|l| l.starts_with("# ")).map(str::to_owned).collect();
    assert_eq!(resolutions.len(), 2, "{resolutions:?}");
    for l in &resolutions {
        assert!(l.contains("OFFLINE, the cached resolution: the registry did not answer: http://127.0.0.1:"), "{l}");
    }
    assert_eq!(cases(&stdout(&stale)), cases(&text), "the same cases as the last resolution");

    // Offline with nothing cached: the matrix cannot be loaded, exit 2, naming the file, line and registry.
    let empty = tempfile::tempdir().unwrap();
    let none = offline(&mut meshgate(Some(empty.path()))).arg("list").arg(&nightly).output().unwrap();
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
    let e = stderr(&none);
    assert!(e.contains("matrices/nightly.yaml:") && e.contains("implementation `rust`: cannot resolve its versions") && e.contains("nothing is cached"), "{e}");
}

/// go-libp2p `latest` built and run on the real engine, with the Go module proxy unreachable: the cached
/// resolution (of the shared cache, from the list test or any run before) is used and said so on stderr, in
/// results.json and junit.xml; the peers report the go-libp2p they were built with; the v0.48.0 case, whose pinned
/// go-libp2p-pubsub v0.19.0 requires go-libp2p v0.51.0, is skipped and nothing of it is built.
#[test]
fn a_resolved_go_libp2p_runs_offline_and_a_raised_one_is_skipped() {
    // Make sure the shared cache holds a resolution: online first (fresh within the day: no question asked).
    let m = tempfile::tempdir().unwrap();
    let matrix = m.path().join("latest.yaml");
    std::fs::write(
        &matrix,
        "name: latest\nimplementations:\n  - {name: go, language: go, version: [latest, v0.48.0], pins: {go-libp2p-pubsub: v0.19.0}}\nnetworks:\n  - name: pair\n    peers: {go: 2}\n    publish: {messages: 5, interval: 100ms}\n",
    )
    .unwrap();
    let listed = meshgate(None).arg("list").arg(&matrix).output().unwrap();
    assert!(listed.status.success(), "{}", stderr(&listed));
    let text = stdout(&listed);
    let newest = text.lines().find_map(|l| l.strip_prefix("# go: latest = ")).unwrap_or_else(|| panic!("{text}"));
    let newest = newest.split(' ').next().unwrap().to_owned();
    assert!(
        text.contains("go-v0.48.0 / tcp+noise+yamux / pair  # skipped: go-1: go-libp2p-pubsub v0.19.0 requires go-libp2p v0.51.0 or newer"),
        "{text}"
    );

    let out = tempfile::tempdir().unwrap();
    let run = offline(&mut meshgate(None))
        .args(["run", "--backend", "docker", "--out"])
        .arg(out.path())
        .arg(&matrix)
        .output()
        .unwrap();
    let err = stderr(&run);
    assert_eq!(run.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("meshgate: go: latest = {newest} (github.com/libp2p/go-libp2p from ")) && err.contains("OFFLINE"), "{err}");
    let r = results_of(out.path());
    assert_eq!(r["versions"][0]["versions"][0], newest.as_str(), "{:#}", r["versions"]);
    assert!(r["versions"][0]["offline"].as_str().is_some_and(|w| w.contains("127.0.0.1")), "{:#}", r["versions"]);
    let cases = r["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0]["name"], format!("go-{newest} / tcp+noise+yamux / pair"));
    assert!(cases[0]["checks"].as_array().unwrap().iter().any(|c| c["name"] == "delivery" && c["status"] == "passed"), "{:#}", cases[0]);
    for peer in cases[0]["peers"].as_array().unwrap() {
        assert_eq!(peer["versions"]["github.com/libp2p/go-libp2p"], newest.as_str(), "built as resolved: {peer:#}");
        assert_eq!(peer["versions"]["github.com/libp2p/go-libp2p-pubsub"], "v0.19.0", "{peer:#}");
    }
    let skipped = &cases[1];
    assert!(skipped["peers"].as_array().unwrap().is_empty(), "never started: {skipped:#}");
    assert!(skipped["checks"].as_array().unwrap().iter().all(|c| c["status"] == "skipped"
        && c["message"].as_str().unwrap().contains("minimal version selection would build that, not the go-libp2p v0.48.0 asked for")), "{skipped:#}");
    assert!(!out.path().join("build-go-v0.48.0.log").exists(), "the skipped case's peer is never built");
    let junit = std::fs::read_to_string(out.path().join("junit.xml")).unwrap();
    assert!(junit.contains("name=\"resolved.go.github.com/libp2p/go-libp2p\"") && junit.contains("OFFLINE"), "{junit}");
}
