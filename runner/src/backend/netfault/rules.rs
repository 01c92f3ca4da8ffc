//! The iptables side of the faults: argument lists (pure, so they are unit-tested) and running them inside a
//! namespace with `nsenter`. Every rule lives in a chain of our own, named `MESHGATE-...`; the built-in chains only
//! get jumps to them, so undoing is "delete the jumps, flush, delete the chains" and leftovers are easy to spot.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

/// Every chain meshgate makes starts with this.
pub const CHAIN_PREFIX: &str = "MESHGATE-";

/// A built-in chain of the filter table that we jump from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Traffic to the peer.
    Input,
    /// Traffic from the peer.
    Output,
}

impl Hook {
    pub fn chain(self) -> &'static str {
        match self {
            Hook::Input => "INPUT",
            Hook::Output => "OUTPUT",
        }
    }

    /// The address option that names the remote end of the traffic on this hook.
    fn remote_opt(self) -> &'static str {
        match self {
            Hook::Input => "-s",
            Hook::Output => "-d",
        }
    }

    /// Loopback is never the network the faults are about: a peer's traffic with itself stays untouched.
    fn not_loopback(self) -> [&'static str; 3] {
        match self {
            Hook::Input => ["!", "-i", "lo"],
            Hook::Output => ["!", "-o", "lo"],
        }
    }

    fn short(self) -> &'static str {
        match self {
            Hook::Input => "IN",
            Hook::Output => "OUT",
        }
    }
}

/// Name of a fault's chain. `id` is unique in this process and the pid keeps two runners apart; the kernel limits
/// names to 28 characters, which `MESHGATE-S4194304-4294967295-OUT` would exceed, so ids wrap at a million.
pub fn chain_name(kind: char, id: u64, hook: Option<Hook>) -> String {
    let id = id % 1_000_000;
    let pid = std::process::id();
    match hook {
        Some(h) => format!("{CHAIN_PREFIX}{kind}{pid}-{id}-{}", h.short()),
        None => format!("{CHAIN_PREFIX}{kind}{pid}-{id}"),
    }
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The rules of a partition chain: drop whatever comes from or goes to an unreachable address. One chain serves
/// both hooks (on INPUT only `-s` can match, on OUTPUT only `-d`).
pub fn partition_rules(chain: &str, unreachable: &[Ipv4Addr]) -> Vec<Vec<String>> {
    let mut rules = Vec::new();
    for a in unreachable {
        let a = a.to_string();
        rules.push(owned(&["-A", chain, "-s", &a, "-j", "DROP"]));
        rules.push(owned(&["-A", chain, "-d", &a, "-j", "DROP"]));
    }
    rules
}

/// The rules of a refusing chain: refuse every TCP connection attempt (a SYN, answered with a reset) and every UDP
/// flow to `port` that the peer did not start (conntrack: NEW, answered port-unreachable), so that nobody reaches it
/// while its own dials and their answers pass. Refused rather than dropped: a dial to the peer (an AutoNAT
/// dial-back) fails at once instead of after the kernel's minutes of SYN retries, and the verdict does not depend on
/// how long the case lasts.
pub fn refuse_rules(chain: &str, port: u16) -> Vec<Vec<String>> {
    let port = port.to_string();
    vec![
        owned(&["-A", chain, "-p", "tcp", "--syn", "-j", "REJECT", "--reject-with", "tcp-reset"]),
        owned(&[
            "-A", chain, "-p", "udp", "--dport", &port, "-m", "conntrack", "--ctstate", "NEW", "-j", "REJECT",
            "--reject-with", "icmp-port-unreachable",
        ]),
    ]
}

/// The rules of a shape chain for one hook: random loss, then the delay line's queue. A link's chain ends by
/// accepting, so that its traffic is shaped by the link alone and not again by a whole-peer shape further down.
pub fn shape_rules(
    chain: &str,
    loss_percent: f64,
    queue: Option<u16>,
    link: bool,
) -> Vec<Vec<String>> {
    let mut rules = Vec::new();
    if loss_percent > 0.0 {
        let p = format!("{}", (loss_percent / 100.0).min(1.0));
        rules.push(owned(&[
            "-A",
            chain,
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &p,
            "-j",
            "DROP",
        ]));
    }
    if let Some(q) = queue {
        // No --queue-bypass: without a delay line listening, the kernel drops what it would queue (fail closed).
        rules.push(owned(&[
            "-A",
            chain,
            "-j",
            "NFQUEUE",
            "--queue-num",
            &q.to_string(),
        ]));
    }
    if link {
        rules.push(owned(&["-A", chain, "-j", "ACCEPT"]));
    }
    rules
}

/// The match part of a jump from `hook` to `chain` (without `-A`/`-I`/`-D` and the hook name), so the same words
/// add and delete it.
pub fn jump_spec(hook: Hook, chain: &str, remote: Option<Ipv4Addr>) -> Vec<String> {
    let mut spec = owned(&hook.not_loopback());
    if let Some(r) = remote {
        spec.push(hook.remote_opt().to_owned());
        spec.push(r.to_string());
    }
    spec.extend(owned(&["-j", chain]));
    spec
}

/// Where a new jump goes in a hook, given that hook's rules as `iptables -S` prints them. Partitions come first
/// (nothing shaped may slip past them: a queue's ACCEPT verdict ends the table); then links, so that they take
/// their traffic before a whole-peer shape; whole-peer shapes are appended (`None`).
pub fn jump_position(kind: Kind, listing: &str) -> Option<usize> {
    let count = |k: char| {
        listing
            .lines()
            .filter(|l| l.contains(&format!("-j {CHAIN_PREFIX}{k}")))
            .count()
    };
    match kind {
        Kind::Partition | Kind::Refuse => Some(1),
        Kind::Link => Some(1 + count(Kind::Partition.letter())),
        Kind::Whole => None,
    }
}

/// What a jump is for: decides its place in the hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Partition,
    /// New inbound connections refused (a `private` peer).
    Refuse,
    /// A shape of the traffic with one remote address.
    Link,
    /// A shape of all the peer's traffic.
    Whole,
}

impl Kind {
    /// The letter after `MESHGATE-` in this kind's chain names.
    pub fn letter(self) -> char {
        match self {
            Kind::Partition => 'P',
            Kind::Refuse => 'R',
            Kind::Link => 'L',
            Kind::Whole => 'W',
        }
    }
}

/// Runs `program args` inside the network namespace at `ns` (entered by `nsenter`, never in ours). The error
/// carries the command and its stderr.
pub fn run_in(ns: &Path, program: &str, args: &[String]) -> anyhow::Result<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .arg("--")
        .arg(program)
        .args(args)
        .output()
        .context("cannot run `nsenter` (util-linux)")?;
    if !out.status.success() {
        bail!(
            "`{program} {}` in {} failed: {}",
            args.join(" "),
            ns.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `iptables -w ARGS` in the namespace: `-w` waits for another writer instead of failing.
pub fn iptables(ns: &Path, args: &[String]) -> anyhow::Result<String> {
    let mut all = vec!["-w".to_owned()];
    all.extend_from_slice(args);
    run_in(ns, "iptables", &all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(rules: &[Vec<String>]) -> Vec<String> {
        rules.iter().map(|r| r.join(" ")).collect()
    }

    #[test]
    fn partition_drops_both_ways() {
        let rules = partition_rules("MESHGATE-P1-2", &[Ipv4Addr::new(10, 0, 0, 2)]);
        assert_eq!(
            joined(&rules),
            [
                "-A MESHGATE-P1-2 -s 10.0.0.2 -j DROP",
                "-A MESHGATE-P1-2 -d 10.0.0.2 -j DROP"
            ]
        );
    }

    #[test]
    fn shape_is_loss_then_queue_and_links_end_there() {
        let rules = shape_rules("C", 30.0, Some(7), true);
        assert_eq!(
            joined(&rules),
            [
                "-A C -m statistic --mode random --probability 0.3 -j DROP",
                "-A C -j NFQUEUE --queue-num 7",
                "-A C -j ACCEPT",
            ]
        );
        assert!(shape_rules("C", 0.0, None, false).is_empty());
        assert!(!joined(&shape_rules("C", 0.0, Some(1), false))[0].contains("bypass"));
    }

    #[test]
    fn jumps_skip_loopback_and_name_the_remote_by_hook() {
        let r = Some(Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(
            jump_spec(Hook::Input, "C", r).join(" "),
            "! -i lo -s 10.0.0.9 -j C"
        );
        assert_eq!(
            jump_spec(Hook::Output, "C", r).join(" "),
            "! -o lo -d 10.0.0.9 -j C"
        );
        assert_eq!(jump_spec(Hook::Output, "C", None).join(" "), "! -o lo -j C");
    }

    #[test]
    fn refusing_drops_connection_attempts_only() {
        assert_eq!(
            joined(&refuse_rules("MESHGATE-R1-3", 4001)),
            [
                "-A MESHGATE-R1-3 -p tcp --syn -j REJECT --reject-with tcp-reset",
                "-A MESHGATE-R1-3 -p udp --dport 4001 -m conntrack --ctstate NEW -j REJECT --reject-with icmp-port-unreachable",
            ]
        );
        assert_eq!(jump_position(Kind::Refuse, ""), Some(1));
    }

    #[test]
    fn partitions_first_then_links_then_whole_shapes() {
        let listing = "-P INPUT ACCEPT\n-A INPUT ! -i lo -j MESHGATE-P1-1\n-A INPUT ! -i lo -j MESHGATE-W1-2-IN\n";
        assert_eq!(jump_position(Kind::Partition, listing), Some(1));
        assert_eq!(jump_position(Kind::Link, listing), Some(2));
        assert_eq!(jump_position(Kind::Whole, listing), None);
    }

    #[test]
    fn chain_names_fit_the_kernel() {
        let name = chain_name('W', u64::MAX, Some(Hook::Output));
        assert!(name.starts_with("MESHGATE-W"));
        assert!(name.len() <= 28, "{name}");
    }
}
