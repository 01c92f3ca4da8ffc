//! Records the versions of the libp2p crates this peer is compiled with, for the `started`
//! event (`+local` after a crate built from a local checkout). They are read from the Cargo.lock found by walking up from the manifest directory;
//! without one, the versions are simply left empty.
//!
//! The same source builds against libp2p 0.54 to 0.57 (see images/rust/build). From the libp2p
//! version in Cargo.lock this also sets `libp2p_lt_0_55`, `libp2p_lt_0_56` and `libp2p_lt_0_57`
//! for the few places, all in `src/compat.rs`, where their APIs differ. Without a lock, or with
//! an unparsable version, none is set: the newest API is assumed.

use std::{env, fs, path::PathBuf};

/// Minor versions of libp2p 0.x that get a `libp2p_lt_0_<minor>` cfg when built against an
/// older one.
const BOUNDARIES: &[u64] = &[55, 56, 57];

const CRATES: &[&str] = &[
    "libp2p",
    "libp2p-core",
    "libp2p-swarm",
    "libp2p-gossipsub",
    "libp2p-identify",
    "libp2p-ping",
    "libp2p-tcp",
    "libp2p-quic",
    "libp2p-noise",
    "libp2p-tls",
    "libp2p-yamux",
    "libp2p-stream",
    // The revision 2 roles: which of these decides incidents (request-response 0.28.0 or 0.28.1).
    "libp2p-request-response",
    "libp2p-autonat",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let lock = manifest_dir
        .ancestors()
        .map(|dir| dir.join("Cargo.lock"))
        .find(|path| path.is_file());
    let mut versions = Vec::new();
    if let Some(lock) = lock {
        println!("cargo:rerun-if-changed={}", lock.display());
        if let Ok(text) = fs::read_to_string(&lock) {
            for package in text.split("[[package]]") {
                let field = |key: &str| {
                    package.lines().find_map(|line| {
                        let value = line.strip_prefix(key)?.trim().strip_prefix('=')?.trim();
                        Some(value.trim_matches('"').to_owned())
                    })
                };
                if let (Some(name), Some(version)) = (field("name"), field("version")) {
                    let first = !versions.iter().any(|(n, _): &(String, String)| *n == name);
                    if CRATES.contains(&name.as_str()) && first {
                        // No source: a path dependency, a local checkout's crate ([patch.crates-io] in
                        // images/rust/build), marked as the go peer marks a replaced module.
                        let local = if field("source").is_none() { "+local" } else { "" };
                        versions.push((name, format!("{version}{local}")));
                    }
                }
            }
        }
    }
    for minor in BOUNDARIES {
        println!("cargo::rustc-check-cfg=cfg(libp2p_lt_0_{minor})");
    }
    let libp2p = versions.iter().find(|(name, _)| name == "libp2p");
    if let Some(minor) = libp2p.and_then(|(_, version)| minor_of_0x(version)) {
        for boundary in BOUNDARIES.iter().filter(|&&boundary| minor < boundary) {
            println!("cargo:rustc-cfg=libp2p_lt_0_{boundary}");
        }
    }
    let joined: Vec<String> = versions.iter().map(|(n, v)| format!("{n}={v}")).collect();
    println!(
        "cargo:rustc-env=MESHGATE_LIBP2P_VERSIONS={}",
        joined.join(",")
    );
}

/// The minor version of a `0.x.y` version.
fn minor_of_0x(version: &str) -> Option<u64> {
    let mut parts = version.split('.');
    if parts.next()? != "0" {
        return None;
    }
    parts.next()?.parse().ok()
}
