//! `meshgate doctor`: what a run needs on this machine, what is there, and how to get what is missing.

use std::path::Path;
use std::process::Command;

use crate::images::cache_dir;

/// One thing a run may need.
pub struct Finding {
    pub what: &'static str,
    /// What was found, or `None` when it is missing.
    pub found: Option<String>,
    /// How to get it, when missing.
    pub hint: &'static str,
    /// Whether runs cannot do without it (as opposed to one backend or feature needing it).
    pub required: bool,
}

/// Asks the machine. Never fails: a missing thing is a finding.
pub async fn examine() -> Vec<Finding> {
    let engine = docker().await;
    let gateway_cases = gateway(engine.is_some());
    let mut f = vec![
        Finding { what: "Docker engine", found: engine, hint: "bin/ensure-engine (root) installs Debian's docker.io and starts dockerd; without it, runs use --backend local", required: false },
        Finding { what: "cargo and rustc", found: output("rustc", &["-V"]), hint: "install Rust with rustup", required: true },
        Finding { what: "static glibc (crt-static rust peers)", found: Path::new("/usr/lib/x86_64-linux-gnu/libc.a").exists().then(|| "libc.a present".into()), hint: "apt-get install libc6-dev", required: true },
        Finding { what: "Go", found: output("go", &["version"]), hint: "install Go from go.dev, or Debian's golang", required: true },
        Finding { what: "network namespaces (local backend)", found: netns(), hint: "run as root with iproute2 (apt-get install iproute2); else local peers share loopback", required: false },
    ];
    // Which path shaping takes here: it runs a packet through a throwaway namespace, so off the async threads.
    let shaping = tokio::task::spawn_blocking(crate::backend::netfault::shaping_path)
        .await
        .ok();
    f.push(Finding {
        what: "network faults (partition, shape)",
        found: shaping.filter(|p| p.usable()).map(|p| p.describe()),
        hint: "run as root with iptables (Debian's iptables), util-linux's nsenter and a kernel with NFQUEUE; else cases with network faults are skipped",
        required: false,
    });
    f.push(Finding {
        what: "gateway cases (UPnP gateway emulator)",
        found: gateway_cases,
        hint: "the Docker backend (bin/ensure-engine), and root with iptables (a host rule lets SSDP multicast across the case bridge) and util-linux's nsenter; else cases with a `gateway:` are skipped",
        required: false,
    });
    f.push(Finding {
        what: "a TCP table per peer namespace (cheap kernel socket reads)",
        found: own_tcp_tables(),
        hint: "sysctl -w net.ipv4.tcp_child_ehash_entries=4096 (bin/ensure-engine does it as root); else each read of a peer's sockets walks the host's whole table, which costs the runner a share of a core at 100 peers",
        required: false,
    });
    f.push(Finding {
        what: "real-time priority for the runner's threads",
        found: crate::priority::permitted().ok().map(|()| "SCHED_RR permitted".into()),
        hint: "run as root (or with CAP_SYS_NICE, outside a cgroup without a real-time budget); else, on a host the peers saturate, the runner takes their lines in up to seconds late and the verdicts of time turn inconclusive sooner",
        required: false,
    });
    f.push(Finding {
        what: "swarm backend (--backend swarm)",
        found: swarm().await,
        hint: "an engine that manages a swarm: `docker swarm init` makes a one-node one (docs/scale-out.md); the other backends do without",
        required: false,
    });
    let cache = cache_dir();
    f.push(Finding {
        what: "free disk in the cache",
        found: free_disk(&cache),
        hint: "free space, or point MESHGATE_CACHE elsewhere",
        required: true,
    });
    f
}

async fn docker() -> Option<String> {
    let api = bollard::Docker::connect_with_local_defaults()
        .ok()?
        .negotiate_version()
        .await
        .ok()?;
    let v = api.version().await.ok()?;
    Some(format!(
        "Docker Engine {} (API {})",
        v.version.unwrap_or_default(),
        v.api_version.unwrap_or_default()
    ))
}

/// The engine's swarm, when it is a manager of one: what the swarm backend needs.
async fn swarm() -> Option<String> {
    let api = bollard::Docker::connect_with_local_defaults()
        .ok()?
        .negotiate_version()
        .await
        .ok()?;
    let swarm = api.info().await.ok()?.swarm?;
    (swarm.local_node_state == Some(bollard::models::LocalNodeState::ACTIVE) && swarm.control_available == Some(true))
        .then(|| format!("a manager of a swarm of {} node(s)", swarm.nodes.unwrap_or(0)))
}

/// Whether cases with a `gateway:` run here: the emulator runs on the Docker backend only; SSDP multicast crosses
/// the case bridge by a host iptables rule, and routes are made in the peers' namespaces with nsenter.
fn gateway(engine: bool) -> Option<String> {
    if !engine {
        return None;
    }
    match crate::peers::tools_missing() {
        None => Some("Docker backend; SSDP multicast let across the case bridge with iptables, routes with nsenter".into()),
        Some(_) => None,
    }
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd).args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn netns() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|euid| euid == "0"))?;
    let ip = output("ip", &["-V"])?;
    root.then(|| format!("root, {ip}"))
}

/// Whether new network namespaces get a TCP hash table of their own (`net.ipv4.tcp_child_ehash_entries`).
fn own_tcp_tables() -> Option<String> {
    let n: u64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_child_ehash_entries").ok()?.trim().parse().ok()?;
    (n > 0).then(|| format!("net.ipv4.tcp_child_ehash_entries = {n}"))
}

/// Free space where the cache lives (or would), from `df`, which knows every file system.
fn free_disk(dir: &Path) -> Option<String> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    let out = output("df", &["-Pk", &existing.display().to_string()])?;
    let avail_kb: u64 = out
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(format!(
        "{:.1} GiB free at {}",
        avail_kb as f64 / 1024.0 / 1024.0,
        dir.display()
    ))
}

/// The report, and whether a run can be carried out at all.
pub fn render(findings: &[Finding]) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    for f in findings {
        match &f.found {
            Some(v) => out.push_str(&format!("ok       {}: {v}\n", f.what)),
            None => {
                ok &= !f.required;
                let tag = if f.required { "MISSING" } else { "absent " };
                out.push_str(&format!("{tag}  {}: {}\n", f.what, f.hint));
            }
        }
    }
    (out, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn this_machine_has_what_the_tests_need() {
        let findings = examine().await;
        let (text, ok) = render(&findings);
        assert!(ok, "{text}");
        assert!(text.contains("ok       Go: go version"), "{text}");
        assert!(text.contains("GiB free at"), "{text}");
        assert!(
            text.contains("ok       gateway cases (UPnP gateway emulator): Docker backend; SSDP multicast let across the case bridge with iptables, routes with nsenter"),
            "{text}"
        );
        // Whether or not the kernel has netem, shaping takes the delay line, and doctor says whether it works.
        assert!(
            text.contains("ok       network faults (partition, shape): ")
                && text.contains("shaping by meshgate's NFQUEUE delay line works (no duplication)"),
            "{text}"
        );
    }

    #[test]
    fn gateway_cases_need_the_engine() {
        assert_eq!(gateway(false), None);
        let text = render(&[Finding { what: "gateway cases (UPnP gateway emulator)", found: gateway(false), hint: "the Docker backend", required: false }]);
        assert_eq!(text, ("absent   gateway cases (UPnP gateway emulator): the Docker backend\n".into(), true));
    }

    #[test]
    fn missing_required_things_fail() {
        let f = [Finding {
            what: "Go",
            found: None,
            hint: "install Go",
            required: true,
        }];
        let (text, ok) = render(&f);
        assert!(!ok);
        assert_eq!(text, "MISSING  Go: install Go\n");
    }
}
