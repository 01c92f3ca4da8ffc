//! What the end-to-end suites share: where the project is, and the verdicts every backend must reach.

#![allow(dead_code)] // Each test binary uses its own part of it.

use std::path::{Path, PathBuf};

/// A finished command's stderr, as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A run's results.json, as JSON.
pub fn results_of(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

/// A case of a results.json, and its check of that name.
pub fn check<'a>(case: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    case["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {case:#}"))
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// meshgate's build cache (images::cache_dir).
pub fn cache() -> PathBuf {
    match std::env::var_os("MESHGATE_CACHE") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("meshgate"),
    }
}

/// The verdict of runner/tests/matrices/unsubscribe.yaml, on any backend: exit 1, and `delivery` alone fails,
/// naming go-2, the peer that left the topic, in stderr's one line and in the JUnit file.
pub fn assert_unsubscribe_verdict(code: Option<i32>, stderr: &str, out: &Path) {
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(
            "FAILED rust x go / tcp+noise+yamux / mixed-3 [delivery]: go-2 (go-libp2p v0."
        ),
        "{stderr}"
    );
    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(doc.root_element().attribute("failures"), Some("1"));
    let failure = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .expect("a failure element");
    assert_eq!(
        failure.parent().unwrap().attribute("name"),
        Some("delivery")
    );
    let message = failure.attribute("message").unwrap();
    assert!(message.starts_with("go-2 (go-libp2p v0."), "{message}");
    assert!(
        message.contains("rust-1 (rust-libp2p 0.57.") && message.contains("go-1 (go-libp2p"),
        "{message}"
    );
    assert!(
        !message.contains("rust-1 (rust-libp2p 0.57.1) missed"),
        "only go-2 missed messages: {message}"
    );
    // The other checks still pass: only delivery broke.
    let passed: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase") && !n.children().any(|c| c.has_tag_name("failure")))
        .map(|n| n.attribute("name").unwrap())
        .collect();
    assert_eq!(
        passed,
        [
            "connectivity",
            "no-protocol-downgrade",
            "subscriptions",
            "mesh",
            "connections",
            "streams",
            "commands",
            "liveness"
        ]
    );
}

/// `meshgate judge ARGS...`, from the project's root.
pub fn judge(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .current_dir(root())
        .arg("judge")
        .args(args)
        .output()
        .expect("meshgate runs")
}

/// What `meshgate judge` makes of a finished run's folder, unchanged, is what the run made of it: the same exit
/// code and headline, the same verdict of every check of every case, the same reports, written anew.
pub fn assert_judged_again_alike(out: &Path, code: Option<i32>, run_stderr: &str) {
    let ran = results_of(out);
    let reports = ["junit.xml", "summary.md", "index.html"];
    let before: Vec<String> = reports
        .iter()
        .map(|r| std::fs::read_to_string(out.join(r)).unwrap())
        .collect();
    for r in reports {
        std::fs::remove_file(out.join(r)).unwrap();
    }
    let o = judge(&[out.as_os_str()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), code, "{err}");
    let headline = err.lines().last().unwrap_or_default();
    assert!(
        headline.starts_with("meshgate: ") && run_stderr.lines().any(|l| l == headline),
        "the run's headline, the same: {headline:?}\nrun:\n{run_stderr}"
    );
    let again = results_of(out);
    let verdicts = |r: &serde_json::Value| -> Vec<(String, String, String, String, String)> {
        let mut v = Vec::new();
        for case in r["cases"].as_array().unwrap() {
            for check in case["checks"].as_array().unwrap() {
                let field = |k: &str| check[k].to_string();
                v.push((
                    case["name"].to_string(),
                    field("name"),
                    field("status"),
                    field("message"),
                    field("coverage"),
                ));
            }
        }
        v
    };
    assert!(!verdicts(&ran).is_empty(), "{ran:#}");
    assert_eq!(verdicts(&again), verdicts(&ran));
    assert_eq!(
        again["cases"], ran["cases"],
        "every case's result is the same"
    );
    for (r, before) in reports.iter().zip(before) {
        let after = std::fs::read_to_string(out.join(r))
            .unwrap_or_else(|e| panic!("{r} written again: {e}"));
        assert_eq!(after, before, "{r} is the same");
    }
}

/// Waits until the child's stderr has shown a line containing `marker`, returning what it read.
pub fn wait_for_stderr(child: &mut std::process::Child, marker: &str, within: std::time::Duration) -> String {
    use std::io::Read;
    let mut err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Keep draining after the test stops listening, so the run never writes into a closed pipe.
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    let deadline = std::time::Instant::now() + within;
    let mut seen = String::new();
    while !seen.contains(marker) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(s) => seen.push_str(&s),
            Err(_) => panic!("no {marker:?} on stderr within {within:?}; saw:\n{seen}"),
        }
    }
    seen
}
