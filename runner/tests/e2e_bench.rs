//! End to end, on a real Docker engine with real peers: `meshgate bench --quick` runs every part through the runner's
//! own run path and writes tables of measured numbers; without an engine it says it could not run (exit 2).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::{root, stderr};

fn bench(out: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .current_dir(root())
        .args(["bench", "--quick", "--out"])
        .arg(out)
        .envs(env.iter().copied())
        .output()
        .expect("meshgate runs")
}

/// The cells of the table row of `table` (a heading's text) whose first cell is `first`.
fn row(md: &str, table: &str, first: &str) -> Vec<String> {
    let section = md.split("\n## ").find(|s| s.starts_with(table)).unwrap_or_else(|| panic!("no {table}:\n{md}"));
    let line = section
        .lines()
        .find(|l| l.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no row {first} in {table}:\n{md}"));
    line.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect()
}

fn positive(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| x > 0.0)
}

#[test]
fn the_quick_bench_runs_every_part_and_its_tables_hold_measured_numbers() {
    let out = tempfile::tempdir().unwrap();
    let o = bench(out.path(), &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let md = std::fs::read_to_string(out.path().join("bench.md")).unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), md, "the tables are printed too");
    let b: Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("bench.json")).unwrap()).unwrap();

    // Overhead: both sizes, each against bare containers of the same run; every cell a number.
    let overhead = b["overhead"].as_array().unwrap();
    assert_eq!(overhead.len(), 2, "{b:#}");
    for size in ["2", "4"] {
        let cells = row(&md, "Per-case overhead", size);
        // A cell may add its parts in brackets: `253 (136 / 116)`.
        let numbers = cells.iter().all(|c| c.split(' ').next().is_some_and(|n| n.parse::<f64>().is_ok()));
        assert!(numbers, "{cells:?}\n{md}");
    }
    assert!(overhead.iter().all(|o| positive(&o["ratio"]) && positive(&o["bare_up_ms"])), "{b:#}");

    // Time to verdict: the smoke matrix passed, and its split has the peers' and the runner's phases.
    let verdict = &b["verdict"];
    assert!(verdict["headline"].as_str().unwrap().starts_with("PASSED"), "{verdict:#}");
    for phase in ["start", "warm-up", "scenario", "checks", "clean-up", "reports"] {
        let cells = row(&md, "Time to verdict", phase);
        assert!(cells[1].parse::<f64>().is_ok(), "{phase}: {cells:?}");
    }

    // Scale: the small networks delivered everything, with latencies, lag, memory and the runner's share.
    let steps = b["scale"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{b:#}");
    for s in steps {
        let d = &s["delivered"];
        assert!(d["expected"].as_u64().unwrap() > 0 && d["within"] == d["expected"], "{s:#}");
        for figure in [&d["p99_ms"], &s["lag_p99_ms"], &s["mesh_ms"], &s["spent"]["runner_cpu_share"]] {
            assert!(positive(figure), "{s:#}");
        }
        assert!(positive(&s["rust_peer_mib"][0]) && positive(&s["go_peer_mib"][0]), "{s:#}");
    }
    assert!(b["scale"]["broke_at"].is_null(), "{b:#}");
    let curve = b["scale"]["curve"]["stages"].as_array().unwrap();
    assert_eq!(curve.len(), 2, "{b:#}");

    // Detection: the downgrade was announced after its event, within a couple of the runner's looks.
    let latency = b["detection"]["latency_ms"].as_f64().unwrap();
    assert!(latency > 0.0 && latency < 3000.0, "{b:#}");
    assert!(b["problems"].as_array().unwrap().is_empty(), "{b:#}");
}

#[test]
fn without_an_engine_the_bench_could_not_run() {
    let out = tempfile::tempdir().unwrap();
    let o = bench(out.path(), &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("Docker engine"), "{err}");
    assert!(!out.path().join("bench.json").exists());
}
