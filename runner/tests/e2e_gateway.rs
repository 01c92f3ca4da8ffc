//! End to end, on a real Docker engine with real go peers: the UPnP gateway emulator as a participant of a case and
//! the `private` firewall. runner/tests/matrices/gateway.yaml runs once; every test reads its case from that run.
//! These tests need an engine (bin/ensure-engine starts one) and root (the SSDP redirect and the firewall are made
//! in the containers' namespaces), and fail without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

mod common;
use common::{check, results_of, root};

struct Run {
    out: PathBuf,
    code: Option<i32>,
    stderr: String,
    /// Every container the run had while it ran (`name run-id`), as the engine listed them.
    seen: Vec<String>,
}

/// The run of the gateway matrix, made once for every test of this file. While it runs, the engine is asked for
/// the containers whose owner is this runner, so that afterwards the run's own objects can be looked for by its id
/// (other runs may share the engine).
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = tempfile::tempdir().unwrap().keep();
        let child = Command::new(env!("CARGO_BIN_EXE_meshgate"))
            .current_dir(root())
            .args(["run", "runner/tests/matrices/gateway.yaml", "--backend", "docker", "--out"])
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("meshgate runs");
        let pid = format!(":{}:", child.id());
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut seen: Vec<String> = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let o = Command::new("docker")
                        .args(["ps", "-a", "--filter", "label=io.meshgate.owner", "--format"])
                        .arg(r#"{{.Names}} {{.Label "io.meshgate.run"}} {{.Label "io.meshgate.owner"}}"#)
                        .output()
                        .unwrap();
                    for l in String::from_utf8_lossy(&o.stdout).lines() {
                        let mut f = l.split(' ');
                        let (Some(name), Some(id), Some(owner)) = (f.next(), f.next(), f.next()) else { continue };
                        let line = format!("{name} {id}");
                        if owner.contains(&pid) && !seen.contains(&line) {
                            seen.push(line);
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                seen
            })
        };
        let o = child.wait_with_output().unwrap();
        done.store(true, Ordering::Relaxed);
        let seen = watcher.join().unwrap();
        Run { out, code: o.status.code(), stderr: String::from_utf8_lossy(&o.stderr).into_owned(), seen }
    })
}

/// The case of a network of the matrix, and its folder.
fn case(network: &str) -> (Value, PathBuf) {
    let r = run();
    let results = results_of(&r.out);
    let case = results["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().ends_with(&format!("/ {network}")))
        .unwrap_or_else(|| panic!("no case of network {network}: {}", r.stderr))
        .clone();
    let dir = r.out.join(case["logs"].as_str().unwrap());
    (case, dir)
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

/// The gateway's lines of one event in the record.
fn gateway_lines<'a>(rec: &'a [Value], event: &str) -> Vec<&'a Value> {
    rec.iter()
        .filter(|r| r["kind"] == "participant" && r["peer"] == "upnp-gateway" && r["line"]["event"] == event)
        .map(|r| &r["line"])
        .collect()
}

/// A peer's IPv4 address on the case network, from its `listening` event.
fn address_of(rec: &[Value], peer: &str) -> String {
    rec.iter()
        .filter(|r| r["kind"] == "event" && r["peer"] == peer && r["line"]["event"] == "listening")
        .flat_map(|r| r["line"]["addrs"].as_array().unwrap().iter())
        .filter_map(|a| a.as_str()?.strip_prefix("/ip4/")?.split('/').next())
        .find(|ip| !ip.starts_with("127."))
        .unwrap_or_else(|| panic!("{peer} said no address"))
        .to_owned()
}

fn sender_ip(from: &Value) -> &str {
    from.as_str().unwrap().rsplit_once(':').unwrap().0
}

#[test]
fn go_peers_map_their_port_on_the_gateway_and_the_gateway_confirms_it() {
    let (case, dir) = case("mapped");
    assert!(case["error"].is_null(), "{case:#}");
    for c in case["checks"].as_array().unwrap() {
        // Nothing is published: delivery is skipped; everything else, the gateway's sockets included, passes.
        let expected = if c["name"] == "delivery" { "skipped" } else { "passed" };
        assert_eq!(c["status"], expected, "{c:#}");
    }
    let nat = check(&case, "nat-mapping");
    assert_eq!(nat["coverage"], "2 peer(s) with the port_mapping role, 2 mapped", "{nat:#}");
    let rec = record(&dir);
    let searches = gateway_lines(&rec, "ssdp_request");
    let mappings: Vec<&Value> = gateway_lines(&rec, "soap_action")
        .into_iter()
        .filter(|l| l["action"] == "AddPortMapping" && l.get("fault").is_none_or(Value::is_null))
        .collect();
    for peer in ["go-1", "go-2"] {
        let ip = address_of(&rec, peer);
        // Searched by multicast, redirected to the gateway in the peer's namespace: it sees the peer's address.
        assert!(searches.iter().any(|s| sender_ip(&s["from"]) == ip), "no M-SEARCH from {peer} ({ip}): {searches:#?}");
        let m = mappings
            .iter()
            .find(|m| sender_ip(&m["from"]) == ip)
            .unwrap_or_else(|| panic!("no AddPortMapping from {peer} ({ip}): {mappings:#?}"));
        assert_eq!(m["args"]["NewInternalPort"], "4001", "{m:#}");
        assert_eq!(m["args"]["NewInternalClient"], ip.as_str(), "{m:#}");
        // The peer says the same mapping the gateway made.
        let said = rec
            .iter()
            .find(|r| r["peer"] == peer && r["line"]["event"] == "port_mapped" && r["line"]["protocol"] == "tcp")
            .unwrap_or_else(|| panic!("{peer} said no port_mapped"));
        assert_eq!(said["line"]["external_port"].to_string(), m["args"]["NewExternalPort"].as_str().unwrap(), "{said:#}");
    }
    // The gateway was told to stop and stopped, after the peers.
    assert!(rec.iter().any(|r| r["kind"] == "participant_exited" && r["expected"] == true), "the gateway's exit");
}

#[test]
fn a_private_peer_cannot_be_dialed_but_dials_out() {
    let (dialed, _) = case("dial-private");
    let c = check(&dialed, "connectivity");
    assert_eq!(c["status"], "failed", "{c:#}");
    assert!(
        {
            let m = c["message"].as_str().unwrap();
            m.starts_with("go-1 (go-libp2p v") && m.contains(") and go-2 (go-libp2p v") && m.contains(") never connected")
        },
        "{c:#}"
    );
    // Refused by the runner's firewall: the dial fails at once.
    assert!(c["evidence"].to_string().contains("connection refused"), "{c:#}");
    let (dials, _) = case("private-dials");
    assert_eq!(check(&dials, "connectivity")["status"], "passed", "{dials:#}");
    assert_eq!(check(&dials, "mesh")["status"], "passed", "{dials:#}");
    // No gateway, no role: nat-mapping is left out of these cases.
    for c in [&dialed, &dials] {
        assert!(c["checks"].as_array().unwrap().iter().all(|k| k["name"] != "nat-mapping"), "{c:#}");
    }
}

#[test]
fn the_run_fails_only_where_the_firewall_drops_the_dial_and_leaves_nothing() {
    let r = run();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("3 cases: 1 failed, 2 passed"), "{}", r.stderr);
    // The gateway ran as a container of the run, like the peers.
    assert!(r.seen.iter().any(|l| l.contains("-upnp-gateway ")), "{:?}", r.seen);
    let mut ids: Vec<&str> = r.seen.iter().filter_map(|l| l.split(' ').nth(1)).collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one run: {:?}", r.seen);
    let label = format!("label=io.meshgate.run={}", ids[0]);
    for what in [&["ps", "-aq", "--filter"][..], &["network", "ls", "-q", "--filter"][..]] {
        let o = Command::new("docker").args(what).arg(&label).output().unwrap();
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "", "{what:?} left behind");
    }
}
