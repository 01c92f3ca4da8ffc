//! End to end, on a real Docker engine with real peers: the time line's faults, made from outside the peers, and
//! what the record and the checks make of them. `matrices/faults.yaml` runs once (each network is a case); every
//! test reads its case from that run. These tests need an engine (bin/test starts one) and root (faults are made in
//! the containers' namespaces), and fail without them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

mod common;
use common::{check, results_of, root, stderr};

/// The run of matrices/faults.yaml, made once for every test of this file.
fn run() -> &'static (PathBuf, Option<i32>, String) {
    static RUN: OnceLock<(PathBuf, Option<i32>, String)> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = tempfile::tempdir().unwrap().keep();
        let o = Command::new(env!("CARGO_BIN_EXE_meshgate"))
            .current_dir(root())
            .args(["run", "matrices/faults.yaml", "--backend", "docker", "--out"])
            .arg(&out)
            .output()
            .expect("meshgate runs");
        (out, o.status.code(), stderr(&o))
    })
}

/// The case of a network of the faults matrix, from results.json.
fn case(network: &str) -> (Value, PathBuf) {
    let (out, _, err) = run();
    let results = results_of(out);
    let case = results["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().ends_with(&format!("/ {network}")))
        .unwrap_or_else(|| panic!("no case of network {network}: {err}"))
        .clone();
    let dir = out.join(case["logs"].as_str().unwrap());
    (case, dir)
}


/// The case ran to its end and every check passed.
fn assert_passed(case: &Value) {
    assert!(case["error"].is_null(), "{case:#}");
    for c in case["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "passed", "{c:#}");
    }
}

/// Every record line of a case.
fn record(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("record.jsonl"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One gossipsub delivery: who published, who received, when it was sent and received (the peers' clocks, which
/// are the host's).
#[derive(Debug)]
struct Delivery {
    publisher: String,
    receiver: String,
    sent: i64,
    received: i64,
}

fn deliveries(rec: &[Value]) -> Vec<Delivery> {
    rec.iter()
        .filter(|r| r["kind"] == "event" && r["line"]["event"] == "message")
        .map(|r| Delivery {
            publisher: r["line"]["id"].as_str().unwrap().split('/').next().unwrap().to_owned(),
            receiver: r["peer"].as_str().unwrap().to_owned(),
            sent: r["line"]["sent_us"].as_i64().unwrap(),
            received: r["line"]["ts"].as_i64().unwrap(),
        })
        .collect()
}

fn median(mut v: Vec<i64>) -> i64 {
    assert!(!v.is_empty(), "no latency to take the median of");
    v.sort_unstable();
    v[v.len() / 2]
}

/// When each fault of a case was applied, by (peer, fault kind), in order.
fn faults(rec: &[Value]) -> BTreeMap<(String, String), Vec<i64>> {
    let mut out: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for r in rec.iter().filter(|r| r["kind"] == "fault") {
        out.entry((
            r["peer"].as_str().unwrap().to_owned(),
            r["fault"]["fault"].as_str().unwrap().to_owned(),
        ))
        .or_default()
        .push(r["at"].as_i64().unwrap());
    }
    out
}

/// Nothing of a run is left: no container, no network, no namespace rule (they went with the containers).
fn assert_nothing_left(out: &Path) {
    let o = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=io.meshgate.run"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let _ = out;
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "", "containers left behind");
    let o = Command::new("docker")
        .args(["network", "ls", "-q", "--filter", "label=io.meshgate.run"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "", "networks left behind");
}

#[test]
fn the_faults_matrix_passes_where_the_peers_recover_and_leaves_nothing() {
    let (out, code, err) = run();
    assert_eq!(*code, Some(0), "{err}");
    assert!(err.contains("PASSED 5 cases"), "{err}");
    assert_nothing_left(out);
    // Every case lists its faults among its JUnit properties.
    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let faults: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("property") && n.attribute("name") == Some("faults"))
        .filter_map(|n| n.attribute("value"))
        .collect();
    assert_eq!(faults.len(), 5, "one per case: {faults:?}");
    assert!(faults.iter().any(|f| f.contains("partition rust-1,go-1 | rust-2,go-2")), "{faults:?}");
    // The faults are in the record: judged again from a copy (the other tests read this run), the verdicts are
    // the run's.
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp").arg("-r").arg(out).arg(copy.path().join("run")).status().unwrap();
    assert!(status.success());
    let moved = err.replace(&out.display().to_string(), &copy.path().join("run").display().to_string());
    common::assert_judged_again_alike(&copy.path().join("run"), *code, &moved);
}

#[test]
fn latency_on_one_peer_shows_to_and_from_it_and_not_between_the_others() {
    let (case, dir) = case("latency");
    assert_passed(&case);
    let rec = record(&dir);
    assert_eq!(faults(&rec).get(&("go-1".into(), "shape".into())).map(Vec::len), Some(1));
    let d = deliveries(&rec);
    let shaped = |x: &Delivery| x.publisher == "go-1" || x.receiver == "go-1";
    let to_from: Vec<i64> = d.iter().filter(|x| shaped(x)).map(|x| x.received - x.sent).collect();
    let others: Vec<i64> = d.iter().filter(|x| !shaped(x)).map(|x| x.received - x.sent).collect();
    let (slow, fast) = (median(to_from), median(others));
    eprintln!("median latency to and from go-1: {slow} us; between the others: {fast} us");
    assert!(slow >= 300_000, "p50 to and from the shaped peer: {slow} us");
    assert!(fast < 150_000, "p50 between unshaped peers meshed directly: {fast} us");
    // The verdict reports the latency, and passes: the deadline was kept.
    let delivery = check(&case, "delivery");
    assert_eq!(delivery["status"], "passed", "{delivery:#}");
}

#[test]
fn loss_on_one_peer_is_recorded_and_reported() {
    let (case, dir) = case("loss");
    let rec = record(&dir);
    assert_eq!(faults(&rec).get(&("rust-1".into(), "shape".into())).map(Vec::len), Some(1));
    let d = deliveries(&rec);
    let shaped = |x: &Delivery| x.publisher == "rust-1" || x.receiver == "rust-1";
    let lossy: Vec<i64> = d.iter().filter(|x| shaped(x)).map(|x| x.received - x.sent).collect();
    let clean: Vec<i64> = d.iter().filter(|x| !shaped(x)).map(|x| x.received - x.sent).collect();
    let worst = |v: &[i64]| v.iter().copied().max().unwrap_or(0);
    eprintln!(
        "20% loss on rust-1: {} deliveries to or from it (worst {} us), {} between the others (worst {} us); delivery {}",
        lossy.len(),
        worst(&lossy),
        clean.len(),
        worst(&clean),
        check(&case, "delivery")["status"]
    );
    // Retransmission and gossip repair turn loss into latency: the worst delivery to or from the lossy peer is
    // later than the worst between the others, or the lost ones were missed and delivery fails naming it.
    let delivery = check(&case, "delivery");
    if delivery["status"] == "failed" {
        assert!(delivery["message"].as_str().unwrap().contains("rust-1"), "{delivery:#}");
    } else {
        assert_eq!(delivery["status"], "passed", "{delivery:#}");
        assert!(worst(&lossy) > worst(&clean), "loss left no trace: {lossy:?} vs {clean:?}");
    }
}

#[test]
fn a_partition_stops_delivery_across_it_and_the_heal_restores_it() {
    let (case, dir) = case("partition");
    assert_passed(&case);
    let rec = record(&dir);
    let f = faults(&rec);
    let split = f[&("rust-1".into(), "partition".into())][0];
    let heal = f[&("rust-1".into(), "heal".into())][0];
    assert!(heal - split >= 3_900_000, "healed {} us after the split", heal - split);
    let side = |p: &str| ["rust-1", "go-1"].contains(&p);
    let across: Vec<Delivery> = deliveries(&rec)
        .into_iter()
        .filter(|x| side(&x.publisher) != side(&x.receiver))
        .collect();
    // Nothing crosses while apart (the record's times are the host's clock, as the runner's marks are)...
    let during: Vec<&Delivery> = across
        .iter()
        .filter(|x| x.received > split + 200_000 && x.received < heal)
        .collect();
    assert!(during.is_empty(), "delivered across the partition: {during:?}");
    // ... and messages published after the heal cross again.
    assert!(
        across.iter().any(|x| x.sent > heal),
        "nothing published after the heal crossed"
    );
    let delivery = check(&case, "delivery");
    assert_eq!(delivery["status"], "passed", "{delivery:#}");
    let evidence = delivery["evidence"].to_string();
    assert!(
        evidence.contains("healed at") && evidence.contains("first delivery across it"),
        "the recovery time is reported: {evidence}"
    );
    // What the faults excused is said, even when gossip delivered everything after the heal within the deadline.
    assert!(evidence.contains("not expected across the time line's faults"), "{delivery:#}");
}

/// A killed and restarted peer comes back with the same peer id, reconnects, resubscribes and receives again.
fn assert_comes_back(peer: &str, rec: &[Value], case: &Value) {
    let f = faults(rec);
    let restarted = f[&(peer.into(), "restart".into())][0];
    assert!(f[&(peer.into(), "kill".into())][0] < restarted);
    let events = |pred: &dyn Fn(&Value) -> bool| -> Vec<&Value> {
        rec.iter()
            .filter(|r| r["kind"] == "event" && r["peer"] == peer && pred(&r["line"]))
            .collect()
    };
    let started = events(&|l| l["event"] == "started");
    assert_eq!(started.len(), 2, "{peer} started twice");
    assert_eq!(
        started[0]["line"]["peer"], started[1]["line"]["peer"],
        "{peer} came back with the same peer id"
    );
    let after = |v: Vec<&Value>| v.into_iter().filter(|r| r["at"].as_i64().unwrap() > restarted).count();
    assert!(after(events(&|l| l["event"] == "connection_opened")) > 0, "{peer} reconnected");
    assert!(after(events(&|l| l["event"] == "message")) > 0, "{peer} received again");
    let id = started[1]["line"]["peer"].clone();
    let resubscribed = rec
        .iter()
        .filter(|r| r["at"].as_i64().unwrap() > restarted)
        .any(|r| r["kind"] == "event" && r["line"]["event"] == "subscribed" && r["line"]["remote"] == id);
    assert!(resubscribed, "the others saw {peer} subscribe again");
    for name in ["liveness", "connections", "subscriptions", "delivery"] {
        assert_eq!(check(case, name)["status"], "passed", "{:#}", check(case, name));
    }
}

#[test]
fn a_killed_go_peer_and_a_killed_rust_peer_restart_with_their_identity_and_rejoin() {
    let (case, dir) = case("restart");
    assert_passed(&case);
    let rec = record(&dir);
    assert_comes_back("go-1", &rec, &case);
    assert_comes_back("rust-1", &rec, &case);
}

#[test]
fn paused_peers_resume_and_receive_again() {
    let (case, dir) = case("pause");
    assert_passed(&case);
    let rec = record(&dir);
    let f = faults(&rec);
    for peer in ["go-1", "rust-2"] {
        let paused = f[&(peer.into(), "pause".into())][0];
        let resumed = f[&(peer.into(), "resume".into())][0];
        assert!(resumed - paused >= 4_900_000);
        let said = |from: i64, to: i64| {
            rec.iter()
                .filter(|r| r["kind"] == "event" && r["peer"] == peer)
                .filter(|r| {
                    let ts = r["line"]["ts"].as_i64().unwrap();
                    ts > from && ts < to
                })
                .count()
        };
        // Frozen: not a line stamped while paused (a second after the pause, so that nothing in flight counts).
        assert_eq!(said(paused + 1_000_000, resumed - 100_000), 0, "{peer} spoke while paused");
        let received_after = deliveries(&rec)
            .iter()
            .filter(|d| d.receiver == peer && d.sent > resumed)
            .count();
        assert!(received_after > 0, "{peer} received nothing published after its resume");
    }
}
