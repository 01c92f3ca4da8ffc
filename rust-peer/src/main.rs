//! meshgate's rust-libp2p test peer: one libp2p host driven by JSON commands on stdin,
//! reporting JSON events on stdout (or both over a control port), as described in
//! docs/peer-contract.md.

mod behaviour;
mod compat;
mod config;
mod control;
mod dial_failures;
mod events;
mod hold;
mod negotiated;
mod payload;
mod peer;
mod streams;
mod transport;

use std::{collections::BTreeMap, process};

use contract::exit;
use tracing_subscriber::EnvFilter;

use crate::{
    config::Config,
    events::{Emitter, Event},
};

fn main() {
    exit_on_panic();
    runtime().block_on(run())
}

/// `TOKIO_WORKER_THREADS=1` (the runner's `limits.threads: 1`) runs every task on the main thread, as the swarm
/// already does: a multi-threaded runtime with one worker would still hand each wake-up between the swarm's thread
/// and the worker's, which at 100 peers on two cores is a third of an idle peer's CPU time. Any other value is read
/// by tokio's multi-threaded runtime itself, whose default is one worker per core.
fn runtime() -> tokio::runtime::Runtime {
    let one = std::env::var("TOKIO_WORKER_THREADS").is_ok_and(|n| n.trim() == "1");
    let mut builder = if one {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build().unwrap_or_else(|e| {
        eprintln!("rust-peer: cannot start the tokio runtime: {e}");
        process::exit(1)
    })
}

async fn run() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("rust-peer: invalid configuration: {e}");
            process::exit(exit::CONFIG_ERROR);
        }
    };
    // With a control port, its one connection is stdin and stdout from here on.
    let (input, output) = match config.control_port {
        None => (control::lines(std::io::stdin()), events_output(&config)),
        Some(port) => match control::accept(port) {
            Ok((read, write)) => (control::lines(read), Box::new(write) as _),
            Err(e) => {
                eprintln!("rust-peer: control port {port}: {e}");
                process::exit(1);
            }
        },
    };
    let keypair = config::keypair(config.seed);
    let emitter = Emitter::new(keypair.public().to_peer_id().to_string(), output);
    let stack = match config
        .lacking(&compat::features())
        .or_else(|| config.unsupported_role())
        .map_or_else(|| config.stack(), Err)
    {
        Ok(stack) => stack,
        Err(unsupported) => {
            tracing::error!(feature = %unsupported.feature, "{}", unsupported.reason);
            emitter.emit(Event::Unsupported {
                feature: unsupported.feature,
                reason: unsupported.reason,
                cmd_id: None,
            });
            process::exit(exit::UNSUPPORTED);
        }
    };

    let status = peer::run(config, stack, keypair, emitter, input).await;
    // Exit at once: the input's reader thread may still be blocked in a read. Events are
    // already flushed.
    process::exit(status);
}

/// Where events go without a control port: the file `events_path` names (the runner's named pipe; opened, not
/// created), else stdout.
fn events_output(config: &Config) -> Box<dyn std::io::Write + Send> {
    let Some(path) = &config.events_path else {
        return Box::new(std::io::stdout());
    };
    match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(file) => Box::new(file),
        Err(e) => {
            eprintln!("rust-peer: events_path {path}: {e}");
            process::exit(1);
        }
    }
}

/// A panic anywhere (a library's `expect`, as libp2p-autonat 0.13's "Peer is connected.") ends
/// the process with Rust's panic status, 101, after the standard hook has printed the message to
/// stderr. Without this, a panic of the swarm, which runs in `main`'s future, would unwind into
/// the runtime's drop, which waits for tokio's stdin reader, blocked in a read, so the process
/// would linger; and one in a connection task would be swallowed by tokio.
fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        process::exit(101);
    }));
}

/// Library versions compiled in, as found in Cargo.lock by build.rs (empty if it was not).
pub fn versions() -> BTreeMap<String, String> {
    env!("MESHGATE_LIBP2P_VERSIONS")
        .split(',')
        .filter_map(|entry| entry.split_once('='))
        .map(|(name, version)| (name.to_owned(), version.to_owned()))
        .collect()
}
