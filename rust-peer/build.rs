//! Records the versions of the libp2p crates this peer is compiled with, for the `started`
//! event. They are read from the Cargo.lock found by walking up from the manifest directory;
//! without one, the versions are simply left empty.

use std::{env, fs, path::PathBuf};

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
                        versions.push((name, version));
                    }
                }
            }
        }
    }
    let joined: Vec<String> = versions.iter().map(|(n, v)| format!("{n}={v}")).collect();
    println!(
        "cargo:rustc-env=MESHGATE_LIBP2P_VERSIONS={}",
        joined.join(",")
    );
}
