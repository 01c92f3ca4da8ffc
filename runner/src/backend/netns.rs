//! The isolated networks of the local backend, made with iproute2 (`ip`).
//!
//! A case is one hub namespace holding a bridge; each peer is a namespace with one end of a veth pair, the other end
//! on the hub's bridge. Nothing of it lives in the root namespace: no interface, no route, no firewall rule, so
//! the peers reach each other and nothing else, and the host's firewall (Docker's `FORWARD DROP`) does not apply.
//! Namespace names start with `mg-<run>-`, so that leftovers are found by run.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{bail, Context as _};

/// Every namespace meshgate makes is named `mg-<run id>-...`.
const PREFIX: &str = "mg-";
const BRIDGE: &str = "br0";

/// Namespace name of a case's hub (`what` = `hub`) or of one of its peers.
pub fn name(run: &str, case: usize, what: &str) -> String {
    format!("{PREFIX}{run}-c{case}-{what}")
}

/// The name prefix of every namespace of a run, or of one case of it.
pub fn prefix(run: &str, case: Option<usize>) -> String {
    match case {
        Some(c) => format!("{PREFIX}{run}-c{c}-"),
        None => format!("{PREFIX}{run}-"),
    }
}

/// The run id a namespace name carries, when it is one of ours.
pub fn run_of(name: &str) -> Option<&str> {
    let (run, _) = name.strip_prefix(PREFIX)?.split_once('-')?;
    (!run.is_empty() && run.bytes().all(|b| b.is_ascii_hexdigit())).then_some(run)
}

/// The address of a case's `index`th peer: every case is its own segment, 10.213.0.0/16, so cases never meet.
pub fn address(index: usize) -> anyhow::Result<Ipv4Addr> {
    let host = index + 2;
    if host > 0xfffe {
        bail!("too many peers in one case for 10.213.0.0/16");
    }
    Ok(Ipv4Addr::new(10, 213, (host >> 8) as u8, host as u8))
}

/// Runs `ip ARGS`; the error carries its stderr.
async fn ip(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether this process may make network namespaces: root, iproute2, and a probe namespace that comes and goes.
pub async fn usable(probe: &str) -> anyhow::Result<()> {
    if !is_root() {
        bail!("not root");
    }
    ip(&["netns", "add", probe]).await?;
    ip(&["netns", "del", probe]).await?;
    Ok(())
}

fn is_root() -> bool {
    // The effective uid is the second field of `Uid:`.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// A case's hub: a namespace with an up bridge.
pub async fn add_hub(hub: &str) -> anyhow::Result<()> {
    ip(&["netns", "add", hub]).await?;
    ip(&["-n", hub, "link", "add", BRIDGE, "type", "bridge"]).await?;
    ip(&["-n", hub, "link", "set", BRIDGE, "up"]).await?;
    Ok(())
}

/// A peer's namespace: `lo` up, and `eth0` with `address`/16 wired to the hub's bridge. No default route.
pub async fn add_peer(hub: &str, ns: &str, index: usize, address: Ipv4Addr) -> anyhow::Result<()> {
    let port = format!("v{index}");
    let cidr = format!("{address}/16");
    ip(&["netns", "add", ns]).await?;
    // Both ends are made inside namespaces: nothing appears in the root namespace, even for a moment.
    ip(&[
        "-n", hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", ns,
    ])
    .await?;
    ip(&["-n", hub, "link", "set", &port, "master", BRIDGE, "up"]).await?;
    ip(&["-n", ns, "addr", "add", &cidr, "dev", "eth0"]).await?;
    ip(&["-n", ns, "link", "set", "eth0", "up"]).await?;
    ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
    Ok(())
}

/// Takes a peer's link to the hub down: the peer runs on, cut off from every other.
pub async fn link_down(ns: &str) -> anyhow::Result<()> {
    ip(&["-n", ns, "link", "set", "eth0", "down"])
        .await
        .map(|_| ())
}

/// Every namespace whose name starts with `prefix`. Without iproute2 there are none (nothing can have made them);
/// an `ip` that runs but fails is an error, not an empty list.
pub async fn list(prefix: &str) -> anyhow::Result<Vec<String>> {
    let out = match tokio::process::Command::new("ip")
        .args(["netns", "list"])
        .kill_on_drop(true)
        .output()
        .await
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context("cannot run `ip netns list` (iproute2)"),
        Ok(out) if !out.status.success() => bail!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
    };
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect())
}

/// Kills whatever runs in a namespace, then deletes it (with its links). Returns how many processes and
/// namespaces went: none when the namespace was gone already (its run removed it meanwhile). The error names
/// the namespace.
pub async fn remove(ns: &str) -> anyhow::Result<usize> {
    remove_one(ns)
        .await
        .with_context(|| format!("namespace {ns}"))
}

async fn remove_one(ns: &str) -> anyhow::Result<usize> {
    let pids: Vec<u32> = ip(&["netns", "pids", ns])
        .await
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    kill(&pids).await;
    // A namespace deleted while a process still holds it would live on, nameless, with its links.
    match ip(&["netns", "del", ns]).await {
        Ok(_) => Ok(pids.len() + 1),
        Err(_) if list(ns).await.is_ok_and(|l| !l.iter().any(|n| n == ns)) => Ok(pids.len()),
        Err(e) => Err(e),
    }
}

/// SIGKILLs processes and waits (briefly) until they are gone or zombies.
pub async fn kill(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = tokio::process::Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(u32::to_string))
        .kill_on_drop(true)
        .output()
        .await;
    for _ in 0..50 {
        if !pids.iter().any(|&p| running(p)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// Whether a process runs (not a zombie).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s.rfind(')').and_then(|i| s[i + 2..].chars().next());
        !matches!(state, Some('Z' | 'X'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_run() {
        let ns = name("1a2b3c", 4, "p0-rust-1");
        assert_eq!(ns, "mg-1a2b3c-c4-p0-rust-1");
        assert_eq!(run_of(&ns), Some("1a2b3c"));
        assert!(ns.starts_with(&prefix("1a2b3c", Some(4))));
        assert!(!ns.starts_with(&prefix("1a2b3c", Some(40))));
        assert_eq!(run_of("mg-probe"), None);
        assert_eq!(run_of("mg-xyz-c0-hub"), None);
        assert_eq!(run_of("other-1a-c0"), None);
    }

    #[test]
    fn addresses_stay_in_the_segment() {
        assert_eq!(address(0).unwrap(), Ipv4Addr::new(10, 213, 0, 2));
        assert_eq!(address(300).unwrap(), Ipv4Addr::new(10, 213, 1, 46));
        assert!(address(70_000).is_err());
    }
}
