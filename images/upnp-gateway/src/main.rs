//! meshgate's UPnP Internet Gateway Device emulator: a participant of a case that go-libp2p's and rust-libp2p's
//! NAT port mapping discover over SSDP and map ports through over SOAP, saying on stdout what it was asked and
//! what it answered. See images/upnp-gateway/README.md.

mod device;
mod events;
mod http;
mod quirk;
mod soap;
mod ssdp;

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use contract::commands::{Command, CommandLine};
use contract::participant::{GatewayConfig, ParticipantEvent, GATEWAY_CONFIG_VAR};
use tokio::io::AsyncBufReadExt as _;

use crate::events::Events;

pub const IMPLEMENTATION: &str = "meshgate-upnp-gateway";
/// The SERVER header of SSDP replies and HTTP responses.
pub const SERVER: &str = concat!(
    "Linux UPnP/1.1 meshgate-upnp-gateway/",
    env!("CARGO_PKG_VERSION")
);

/// Exit status for a configuration it cannot run with.
const EXIT_BAD_CONFIG: i32 = 2;

/// The configuration, checked: addresses parsed.
struct Config {
    raw: GatewayConfig,
    address: Ipv4Addr,
    external_ip: Ipv4Addr,
}

fn config() -> Result<Config, String> {
    let text = std::env::var(GATEWAY_CONFIG_VAR)
        .map_err(|_| format!("{GATEWAY_CONFIG_VAR} is not set"))?;
    let raw: GatewayConfig =
        serde_json::from_str(&text).map_err(|e| format!("{GATEWAY_CONFIG_VAR}: {e}"))?;
    let address: Ipv4Addr = raw
        .address
        .parse()
        .map_err(|_| format!("address {:?} is not an IPv4 address", raw.address))?;
    let external_ip: Ipv4Addr = raw
        .external_ip
        .parse()
        .map_err(|_| format!("external_ip {:?} is not an IPv4 address", raw.external_ip))?;
    // A public address would make the peers announce an address of somebody else's.
    if !external_ip.is_private() {
        return Err(format!(
            "external_ip {external_ip} is not a private (RFC 1918) address"
        ));
    }
    if address.is_unspecified() || address.is_multicast() {
        return Err(format!("address {address} is not an interface address"));
    }
    if raw.http_port == 0 || raw.ssdp_port() == 0 {
        return Err("http_port and ssdp_port must not be 0".into());
    }
    if let Some(q) = &raw.quirk {
        // Answers are held for the window; goupnp gives up on a search after 2 s.
        if q.window_ms == 0 || q.window_ms >= 2000 {
            return Err(format!(
                "quirk.window_ms {} is not between 1 and 1999",
                q.window_ms
            ));
        }
    }
    Ok(Config {
        raw,
        address,
        external_ip,
    })
}

fn main() {
    let config = match config() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("upnp-gateway: bad configuration: {why}");
            std::process::exit(EXIT_BAD_CONFIG);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let status = runtime.block_on(run(config));
    // Exit at once: tokio's stdin reader may still be blocked in a read that would hold up shutdown.
    std::process::exit(status);
}

async fn run(config: Config) -> i32 {
    let events = Arc::new(Events::new());
    let ssdp_port = config.raw.ssdp_port();
    let ssdp_socket = match ssdp::bind(config.address, ssdp_port) {
        Ok(s) => s,
        Err(e) => {
            events.error(format!(
                "cannot take SSDP on udp/{}:{ssdp_port}: {e}",
                config.address
            ));
            return 1;
        }
    };
    let listener = match tokio::net::TcpListener::bind((config.address, config.raw.http_port)).await
    {
        Ok(l) => l,
        Err(e) => {
            events.error(format!(
                "cannot serve HTTP on {}:{}: {e}",
                config.address, config.raw.http_port
            ));
            return 1;
        }
    };
    let device = Arc::new(device::Device {
        address: config.address,
        http_port: config.raw.http_port,
    });
    events.emit(ParticipantEvent::Started {
        implementation: IMPLEMENTATION.into(),
        versions: [(
            IMPLEMENTATION.to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        )]
        .into(),
        contract_version: contract::VERSION,
    });
    events.emit(ParticipantEvent::Listening {
        addrs: vec![
            format!("udp/{}:{ssdp_port}", ssdp::MULTICAST),
            device.location(),
        ],
    });
    let state = Arc::new(http::State {
        device: device.clone(),
        gateway: Mutex::new(soap::Gateway::new(config.external_ip)),
        events: events.clone(),
    });
    let overlaps = config.raw.quirk.clone().map(quirk::Overlaps::new);
    let ssdp_task = tokio::spawn(ssdp::serve(ssdp_socket, device, events.clone(), overlaps));
    let http_task = tokio::spawn(http::serve(listener, state));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => match line {
                Ok(Some(line)) if line.trim().is_empty() => {}
                Ok(Some(line)) => match serde_json::from_str::<CommandLine>(&line) {
                    Ok(CommandLine { command: Command::Stop, .. }) => break,
                    Ok(other) => events.error(format!("not a gateway command: {}", other.to_json())),
                    Err(e) => events.error(format!("bad command line {line:?}: {e}")),
                },
                Ok(None) => break,
                Err(e) => {
                    events.error(format!("cannot read stdin: {e}"));
                    break;
                }
            },
            _ = term.recv() => break,
        }
    }
    ssdp_task.abort();
    http_task.abort();
    events.emit(ParticipantEvent::Stopped);
    0
}
