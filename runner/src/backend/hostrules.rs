//! The one rule meshgate puts in the host's firewall: SSDP multicast across a case's bridge. Docker drops traffic
//! on an internal network whose destination is outside its subnet (`DOCKER-ISOLATION-STAGE-1 ! -d <subnet> -i
//! br-X -j DROP`), multicast included, so UPnP discovery (M-SEARCH to 239.255.255.250:1900) cannot reach a case's
//! gateway emulator. An ACCEPT in `DOCKER-USER` (which Docker evaluates first and leaves to its users) for exactly
//! that group and port, in and out of the case's bridge, lets it through; nothing leaves the bridge. The rule is
//! made before the case's peers start (a peer searches as it starts), removed with the case's network, and rules
//! whose bridge is gone are swept at the next start, whatever ended the run that made them.

use std::process::Command;

use anyhow::{bail, Context};

use super::netfault::{SSDP_GROUP, SSDP_PORT};

const CHAIN: &str = "DOCKER-USER";
/// Marks meshgate's rules, so that a sweep touches no one else's.
const COMMENT: &str = "meshgate-ssdp";

/// The bridge device Docker makes for a network: `br-` and the first 12 characters of its id.
pub fn bridge_of(network_id: &str) -> String {
    format!("br-{}", &network_id[..network_id.len().min(12)])
}

/// The rule's match and target for `bridge`, as `iptables` arguments after the chain.
pub fn ssdp_spec(bridge: &str) -> Vec<String> {
    let port = SSDP_PORT.to_string();
    ["-i", bridge, "-o", bridge, "-d", SSDP_GROUP, "-p", "udp", "--dport", &port, "-m", "comment", "--comment", COMMENT, "-j", "ACCEPT"]
        .map(String::from)
        .to_vec()
}

fn iptables(args: &[String]) -> anyhow::Result<String> {
    let out = Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .context("running iptables on the host")?;
    if !out.status.success() {
        bail!("iptables {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Lets SSDP searches cross `bridge` (idempotent).
pub fn allow_ssdp(bridge: &str) -> anyhow::Result<()> {
    let spec = ssdp_spec(bridge);
    let mut check = vec!["-C".to_owned(), CHAIN.to_owned()];
    check.extend(spec.iter().cloned());
    if iptables(&check).is_ok() {
        return Ok(());
    }
    let mut insert = vec!["-I".to_owned(), CHAIN.to_owned(), "1".to_owned()];
    insert.extend(spec);
    iptables(&insert)
        .map(|_| ())
        .with_context(|| format!("letting SSDP multicast cross {bridge} (the {CHAIN} chain Docker keeps for its users)"))
}

/// Removes the rule of `bridge`, every copy of it; nothing to remove is no error.
pub fn remove_ssdp(bridge: &str) -> anyhow::Result<()> {
    let mut delete = vec!["-D".to_owned(), CHAIN.to_owned()];
    delete.extend(ssdp_spec(bridge));
    let mut check = delete.clone();
    check[0] = "-C".into();
    while iptables(&check).is_ok() {
        iptables(&delete)?;
    }
    Ok(())
}

/// Removes meshgate's rules whose bridge no longer exists (their network is gone: a run that died left them).
/// Returns how many went. A host without the chain (no Docker there) has none.
pub fn sweep() -> anyhow::Result<usize> {
    let Ok(listing) = iptables(&["-S".to_owned(), CHAIN.to_owned()]) else {
        return Ok(0);
    };
    let mut removed = 0;
    for bridge in stale(&listing, |b| std::path::Path::new("/sys/class/net").join(b).exists()) {
        remove_ssdp(&bridge)?;
        removed += 1;
    }
    Ok(removed)
}

/// The bridges of meshgate's rules in an `iptables -S` listing that `exists` says are gone.
fn stale(listing: &str, exists: impl Fn(&str) -> bool) -> Vec<String> {
    let mut bridges: Vec<String> = listing
        .lines()
        .filter(|l| l.contains(&format!("--comment {COMMENT}")))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.by_ref().find(|w| *w == "-i")?;
            words.next().map(str::to_owned)
        })
        .filter(|b| !exists(b))
        .collect();
    bridges.dedup();
    bridges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_names_only_the_group_port_and_bridge() {
        assert_eq!(bridge_of("0123456789abcdef0123"), "br-0123456789ab");
        assert_eq!(
            ssdp_spec("br-0123456789ab").join(" "),
            "-i br-0123456789ab -o br-0123456789ab -d 239.255.255.250 -p udp --dport 1900 -m comment --comment meshgate-ssdp -j ACCEPT"
        );
    }

    #[test]
    fn a_sweep_takes_only_meshgate_rules_of_bridges_that_are_gone() {
        let listing = "-N DOCKER-USER\n\
            -A DOCKER-USER -d 239.255.255.250/32 -i br-aaaaaaaaaaaa -o br-aaaaaaaaaaaa -p udp -m udp --dport 1900 -m comment --comment meshgate-ssdp -j ACCEPT\n\
            -A DOCKER-USER -d 239.255.255.250/32 -i br-bbbbbbbbbbbb -o br-bbbbbbbbbbbb -p udp -m udp --dport 1900 -m comment --comment meshgate-ssdp -j ACCEPT\n\
            -A DOCKER-USER -i br-cccccccccccc -j ACCEPT\n\
            -A DOCKER-USER -j RETURN\n";
        assert_eq!(stale(listing, |b| b == "br-aaaaaaaaaaaa"), vec!["br-bbbbbbbbbbbb"]);
    }
}
