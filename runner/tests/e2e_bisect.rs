//! End to end, on a real Docker engine: `meshgate bisect` over the real rust-libp2p releases between a good and a bad
//! one, then inside the newer facade over its sub-crates' releases, on a real upstream fix
//! (matrices/regressions/gossipsub-mesh-degree-0-6100.yaml: a peer with gossipsub D = 0 never announces its
//! subscription to peers that connect later, and drops the topic's messages, up to libp2p-gossipsub 0.49.0; fixed in
//! 0.49.1 by rust-libp2p#6100, which libp2p 0.56.0 resolves to), read in reverse: the bad release is the older one,
//! so the search names the last bad release and the first good one after it, facade and crate alike.
//! And over the commits of a local rust-libp2p checkout, one of which breaks gossipsub.

use std::path::Path;
use std::process::Command;

mod common;
use common::{root, stderr};

/// One bisection at a time: each builds peers at its steps (a pinned release, a commit), and a build beside the
/// other's case would saturate the host and turn its failures of time inconclusive, that is skipped.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The versions the rust peer of a step's run reported being built with.
fn rust_versions(step_out: &Path) -> serde_json::Value {
    let run = common::results_of(step_out);
    let peers = run["cases"][0]["peers"].as_array().unwrap();
    let rust = peers.iter().find(|p| p["name"] == "rust-1").unwrap_or_else(|| panic!("no rust-1 in {run:#}"));
    rust["versions"].clone()
}

#[test]
fn bisect_names_the_release_and_the_gossipsub_release_that_fixed_6100() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    // The shipped matrix, with the bug as known issues on every case, as a matrix kept green would have them: a
    // bisection judges on the checks alone, so they must neither make 0.55.0 pass nor 0.56.0 fail ("no longer
    // reproduces").
    let matrix = out.path().join("m.yaml");
    let shipped = std::fs::read_to_string(root().join("matrices/regressions/gossipsub-mesh-degree-0-6100.yaml")).unwrap();
    let known = "known_issues:\n  - {reference: rust-libp2p#6100, check: subscriptions}\n  - {reference: rust-libp2p#6100, check: delivery}\n";
    std::fs::write(&matrix, shipped.replacen("networks:\n", &format!("{known}networks:\n"), 1)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .current_dir(root())
        .arg("bisect")
        .arg(&matrix)
        .args([
            "--case",
            "mesh-degree-0",
            "--impl",
            "rust",
            "--good",
            "0.56.0",
            "--bad",
            "0.54.1",
            "--backend",
            "docker",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    // The facade, then the crate and its release, in one line.
    assert!(
        err.contains(
            "meshgate: first bad release from 0.56.0 toward 0.54.1: 0.55.0 (the last good: 0.56.0); \
             inside libp2p 0.56.0: first good libp2p-gossipsub release 0.49.1 (the last bad: 0.49.0)"
        ),
        "{err}"
    );
    let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("bisect.json")).unwrap()).unwrap();
    assert_eq!(b["releases"], serde_json::json!(["0.56.0", "0.55.0", "0.54.1"]), "{b:#}");
    assert_eq!((b["first_bad"].as_str(), b["last_good"].as_str()), (Some("0.55.0"), Some("0.56.0")), "{b:#}");
    let steps = b["steps"].as_array().unwrap();
    // The facade's step: 0.55.0, bad, for what rust-1 never did (announce its subscription, take a message).
    assert_eq!(steps[0]["version"], "0.55.0", "{b:#}");
    assert_eq!(steps[0]["verdict"], "bad", "{b:#}");
    let why = steps[0]["why"].as_str().unwrap();
    assert!(why.starts_with("FAILED ") && why.contains("rust-1"), "{b:#}");
    assert!(why.contains("[subscriptions]") || why.contains("[delivery]"), "{b:#}");
    // The step's run is kept like any run: its peer was built at 0.55.0, with gossipsub 0.48.0.
    let v = rust_versions(&out.path().join("step-1-0.55.0"));
    assert_eq!((v["libp2p"].as_str(), v["libp2p-gossipsub"].as_str()), (Some("0.55.0"), Some("0.48.0")), "{v:#}");
    assert!(std::fs::read_to_string(out.path().join("bisect.md")).unwrap().contains("| 1 | 0.55.0 | bad |"));

    // Inside libp2p 0.56.0: gossipsub moves within ^0.49.0, request-response's line changed with the facade (0.28 to
    // 0.29) and is listed, not moved.
    let crates = &b["crates"];
    assert_eq!(crates["facade"], "0.56.0", "{b:#}");
    assert_eq!(crates["culprit"], "libp2p-gossipsub", "{b:#}");
    assert_eq!((crates["first"].as_str(), crates["last"].as_str()), (Some("0.49.1"), Some("0.49.0")), "{b:#}");
    let changed = crates["changed"].as_array().unwrap();
    let of = |name: &str| changed.iter().find(|r| r["crate"] == name).unwrap_or_else(|| panic!("{name} not changed: {b:#}"));
    let gossipsub = of("libp2p-gossipsub");
    assert_eq!(gossipsub["older"], "0.48.0", "{gossipsub:#}");
    let releases: Vec<&str> = gossipsub["releases"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(releases[..2], ["0.49.0", "0.49.1"], "{gossipsub:#}");
    let rr = of("libp2p-request-response");
    assert!(rr["older"].as_str().unwrap().starts_with("0.28."), "{rr:#}");
    assert_eq!(rr["releases"], serde_json::json!(["0.29.0"]), "{rr:#}");
    // Every step inside is 0.56.0 with pins; gossipsub pinned to 0.49.0 is bad whatever else is pinned with it,
    // gossipsub alone at 0.49.1 is good, and that step's peer was built with gossipsub 0.49.1 inside libp2p 0.56.0.
    let inside = &steps[1..];
    assert!(inside.iter().all(|s| s["version"] == "0.56.0" && s["pins"].as_object().is_some_and(|p| !p.is_empty())), "{b:#}");
    let gossipsub_at = |s: &serde_json::Value| s["pins"]["libp2p-gossipsub"].as_str().map(str::to_owned);
    for s in inside {
        if gossipsub_at(s).as_deref() == Some("0.49.0") {
            assert_eq!(s["verdict"], "bad", "{s:#}");
        }
    }
    let alone = |release: &str| {
        inside
            .iter()
            .find(|s| s["pins"].as_object().unwrap().len() == 1 && gossipsub_at(s).as_deref() == Some(release))
            .unwrap_or_else(|| panic!("no step with libp2p-gossipsub {release} alone: {b:#}"))
    };
    assert_eq!(alone("0.49.0")["verdict"], "bad", "{b:#}");
    let fixed = alone("0.49.1");
    assert_eq!(fixed["verdict"], "good", "{fixed:#}");
    let v = rust_versions(Path::new(fixed["out"].as_str().unwrap()));
    assert_eq!((v["libp2p"].as_str(), v["libp2p-gossipsub"].as_str()), (Some("0.56.0"), Some("0.49.1")), "{v:#}");
    let md = std::fs::read_to_string(out.path().join("bisect.md")).unwrap();
    assert!(md.contains("## Sub-crates of libp2p 0.56.0") && md.contains("with libp2p-gossipsub 0.49.1 | good |"), "{md}");
}

/// Runs git in `dir` with a fixed identity and fixed dates, so the same history has the same commit hashes on every
/// run (and the steps' builds are found again in the cache).
fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=meshgate", "-c", "user.email=meshgate@example.org", "-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// A rust-libp2p checkout holding libp2p-gossipsub 0.50.1 (what the tree's libp2p uses), in a git history of five
/// commits: the third lowers gossipsub's default largest message from 64 KiB to 1 KiB, the others are harmless.
/// The case publishes 2 KiB messages, so from that commit on the rust peer cannot send them nor take the go peer's.
#[test]
fn bisect_names_the_commit_of_a_local_checkout_that_broke_gossipsub() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = common::cache().join("test-checkouts").join("bisect-rust");
    let _ = std::fs::remove_dir_all(&dir);
    let checkout = dir.join("rust-libp2p");
    std::fs::create_dir_all(checkout.join("protocols")).unwrap();
    let registry = Path::new(&std::env::var("HOME").unwrap()).join(".cargo/registry/src");
    let index = std::fs::read_dir(&registry).unwrap().next().unwrap().unwrap().path();
    let gossipsub = checkout.join("protocols/gossipsub");
    let status = Command::new("cp").arg("-r").arg(index.join("libp2p-gossipsub-0.50.1")).arg(&gossipsub).status().unwrap();
    assert!(status.success());
    let status = Command::new("chmod").args(["-R", "u+w"]).arg(&gossipsub).status().unwrap();
    assert!(status.success());
    std::fs::write(checkout.join("Cargo.toml"), "[workspace]\nmembers = [\"protocols/gossipsub\"]\nresolver = \"2\"\n").unwrap();
    git(&checkout, &["init", "-q", "-b", "main"]);
    let commit = |subject: &str| {
        git(&checkout, &["add", "-A"]);
        git(&checkout, &["commit", "-q", "-m", subject]);
        git(&checkout, &["rev-parse", "HEAD"])
    };
    let good = commit("import libp2p-gossipsub 0.50.1");
    let notes = gossipsub.join("NOTES.md");
    std::fs::write(&notes, "Release notes.\n").unwrap();
    commit("gossipsub: start release notes");
    let protocol = gossipsub.join("src/protocol.rs");
    let source = std::fs::read_to_string(&protocol).unwrap();
    let (before, after) = ("default_max_transmit_size: 65536, // 64KB", "default_max_transmit_size: 1024, // 1KB");
    assert!(source.contains(before));
    std::fs::write(&protocol, source.replace(before, after)).unwrap();
    let culprit = commit("gossipsub: lower the default max transmit size");
    std::fs::write(&notes, "Release notes.\n\n- Smaller default transmit size.\n").unwrap();
    commit("gossipsub: note the transmit size");
    std::fs::write(&notes, "Release notes, 0.50.2.\n\n- Smaller default transmit size.\n").unwrap();
    commit("gossipsub: name the release");
    std::fs::write(
        dir.join("m.yaml"),
        "name: rust-checkout\nimplementations:\n  - {name: rust-rc, language: rust, path: rust-libp2p}\n  - {name: go, language: go}\n\
         networks:\n  - name: pair\n    peers: {rust-rc: 1, go: 1}\n    publish: {messages: 3, size: 2048}\n    drain: 2s\n",
    )
    .unwrap();
    // An edit in the work tree that is not committed: no step sees it, and it is left as it was.
    std::fs::write(&notes, "work in progress\n").unwrap();

    let out = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .args(["bisect"])
        .arg(dir.join("m.yaml"))
        .args(["--case", "pair", "--impl", "rust-rc", "--good", &good[..10], "--bad", "main", "--backend", "docker", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let short = &culprit[..12];
    assert!(
        err.contains(&format!("meshgate: first bad commit from {} toward main: {short} \"gossipsub: lower the default max transmit size\"", &good[..10])),
        "{err}"
    );
    let b: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("bisect.json")).unwrap()).unwrap();
    assert_eq!(b["over"], "commits", "{b:#}");
    assert_eq!(b["releases"].as_array().unwrap().len(), 5, "{b:#}");
    let steps = b["steps"].as_array().unwrap();
    let verdicts: Vec<(&str, &str)> =
        steps.iter().map(|s| (s["subject"].as_str().unwrap(), s["verdict"].as_str().unwrap())).collect();
    assert_eq!(
        verdicts,
        [("gossipsub: lower the default max transmit size", "bad"), ("gossipsub: start release notes", "good")],
        "{b:#}"
    );
    assert!(steps[0]["why"].as_str().unwrap().contains("delivery"), "{b:#}");
    // Each step ran the peer built from its commit: the checkout's gossipsub is what the rust peer reports.
    let step: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join(format!("step-1-{short}/results.json"))).unwrap()).unwrap();
    assert_eq!(step["cases"][0]["peers"][0]["versions"]["libp2p-gossipsub"], "0.50.1+local", "{step:#}");
    // The checkout is as it was: on main, with its uncommitted edit.
    assert_eq!(git(&checkout, &["rev-parse", "--abbrev-ref", "HEAD"]), "main");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "work in progress\n");
}
