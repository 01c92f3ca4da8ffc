//! The case's participant that is not a peer, the UPnP gateway emulator (`images/upnp-gateway/`): started on the
//! case network before the peers, at the backend's fixed participant address, with multicast routed in its
//! namespace; its lines recorded under its name; stopped after the peers. An end the runner did not ask for is an
//! error of the case (the runner's own part broke), never a peer's failure.

use std::net::Ipv4Addr;

use anyhow::{anyhow, bail};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ingest::ParticipantOutput;
use super::{bounded, Driver, START_TIMEOUT, STOP_TIMEOUT, WRITE_TIMEOUT};
use crate::backend::netfault::{self, Applied, Netns};
use crate::backend::{Backend, Output, ParticipantLaunch, PeerProcess};
use crate::cases::Case;
use crate::events::{Observation, ParticipantEvent};
use crate::images::{gateway_recipe, GATEWAY};
use contract::participant::{GatewayConfig, Quirk, QuirkAnswer, GATEWAY_CONFIG_VAR};

/// The inbox index of the participant's output (peers have theirs from 0).
pub(super) const PARTICIPANT: usize = usize::MAX;

/// The gateway's HTTP port (descriptions and SOAP control), as home routers commonly use.
const HTTP_PORT: u16 = 5000;

/// The gateway's configuration from the case, without the addresses the backend gives: `None` when the case has
/// no gateway.
pub(super) fn gateway_quirk(case: &Case) -> Option<Option<Quirk>> {
    let g = case.gateway.as_ref()?;
    Some(g.quirk.as_ref().map(|q| Quirk {
        window_ms: u64::try_from(q.window.as_millis()).unwrap_or(u64::MAX),
        answer: match q.answer {
            crate::matrix::roles::QuirkAnswer::None => QuirkAnswer::None,
            crate::matrix::roles::QuirkAnswer::First => QuirkAnswer::First,
        },
    }))
}

/// Whether the case has a gateway emulator (its image is then built before the cases).
pub fn has_gateway(case: &Case) -> bool {
    gateway_quirk(case).is_some()
}

/// The peers whose inbound connections the runner's firewall refuses from their start.
pub(super) fn private_peers(case: &Case) -> Vec<usize> {
    case.private
        .iter()
        .filter_map(|name| case.peers.iter().position(|p| &p.name == name))
        .collect()
}

/// What the gateway reports as its external address: the case subnet's mirror in 10.224.0.0/13, a private range
/// beside the case networks' (10.216.0.0/13) that no case network takes, so never a public address nor one of
/// the case.
pub fn external_ip(address: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(address) + (8 << 16))
}

/// The running gateway.
pub(super) struct Participant {
    pub name: &'static str,
    pub process: Option<PeerProcess>,
    output: ParticipantOutput,
    /// Multicast routed in its namespace (it joins and answers on the case interface).
    route: Option<Applied>,
    stop_sent: bool,
    pub listening: bool,
    pub exited: bool,
    /// Why the case cannot go on: it ended without being told to.
    pub failed: Option<String>,
}

impl<B: Backend> Driver<'_, B> {
    /// Starts the case's gateway, if it has one, and waits until it says where it listens.
    pub(super) async fn start_participants(&mut self) -> anyhow::Result<()> {
        let Some(quirk) = gateway_quirk(self.case) else {
            return Ok(());
        };
        if let Some(why) = self.backend.cannot_run_participants() {
            self.rec.world.unsupported.get_or_insert(why);
            return Ok(());
        }
        let recipe = gateway_recipe().map_err(|e| anyhow!("no recipe for the {GATEWAY}: {e}"))?;
        if !self.backend.prepared(&recipe).await {
            bail!("the {GATEWAY} image {} was not built", recipe.image_tag());
        }
        let address = self.backend.participant_address(self.case_index)?;
        if let Some(k) = &self.kernel {
            k.not_a_peer(address.into());
        }
        let config = GatewayConfig {
            address: address.to_string(),
            http_port: HTTP_PORT,
            external_ip: external_ip(address).to_string(),
            ssdp_port: None,
            quirk,
        };
        let config = serde_json::to_string(&config).expect("a configuration is JSON");
        let launch = ParticipantLaunch {
            name: GATEWAY,
            recipe,
            config: (GATEWAY_CONFIG_VAR, config),
            port: HTTP_PORT,
            limits: self.case.limits,
            cancel: self.cancel.clone(),
        };
        let mut process = bounded(
            self.cancel.clone(),
            self.backend.start_participant(self.case_index, launch),
        )
        .await?;
        let output = std::mem::replace(&mut process.output, mpsc::channel(1).1);
        tokio::spawn(super::forward(PARTICIPANT, output, self.inbox_tx.clone()));
        let ns = self.backend.netns(&process);
        self.gateway = Some(Participant {
            name: GATEWAY,
            process: Some(process),
            output: ParticipantOutput::create(&self.dir, GATEWAY)?,
            route: None,
            stop_sent: false,
            listening: false,
            exited: false,
            failed: None,
        });
        let ns = ns.map_err(|why| anyhow!("no network namespace of the {GATEWAY} to route multicast in: {why}"))?;
        let route = tokio::task::spawn_blocking(move || netfault::multicast_route(&Netns::at(ns), address))
            .await?
            .map_err(|e| anyhow!("routing multicast in the {GATEWAY}'s namespace: {e:#}"))?;
        if let Some(g) = self.gateway.as_mut() {
            g.route = Some(route);
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.gateway.as_ref().is_some_and(|g| g.listening || g.exited) {
            if self.step(deadline).await? {
                bail!("the {GATEWAY} did not say where it listens within {} s", START_TIMEOUT.as_secs());
            }
        }
        Ok(())
    }

    /// Takes in a piece of the participant's output.
    pub(super) fn handle_participant(&mut self, at: crate::events::Micros, output: Output) {
        let Some(g) = self.gateway.as_mut() else { return };
        let what = g.output.observation(output, g.stop_sent);
        match &what {
            Observation::Participant { line } => match &line.event {
                ParticipantEvent::Listening { .. } => g.listening = true,
                ParticipantEvent::Error { message } if !g.stop_sent => {
                    g.failed.get_or_insert(format!("the {} said: {message}", g.name));
                }
                _ => {}
            },
            Observation::ParticipantExited { code, expected } => {
                g.exited = true;
                if !expected {
                    g.failed.get_or_insert(format!(
                        "the {} exited before it was told to stop (exit code {})",
                        g.name,
                        code.map_or("unknown".into(), |c| c.to_string())
                    ));
                }
            }
            _ => {}
        }
        let name = g.name;
        self.rec.observe_participant(name, at, what);
    }

    /// The multicast route and, for a `private` peer, the refusal of inbound connections, in peer `i`'s namespace
    /// right after it started: kept in force like faults, so that they are made again after a restart and undone
    /// at the end.
    pub(super) async fn confine(&mut self, i: usize) -> anyhow::Result<()> {
        if self.gateway.is_some() {
            // SSDP searches reach the gateway through the host rule of the case bridge (backend::hostrules), made
            // before the peers start; the namespace needs at most a route for multicast.
            self.hold(i, super::faults::Kind::Multicast).await?;
        }
        if private_peers(self.case).contains(&i) {
            let port = self.peers[i].process.as_ref().map_or(0, |p| p.address.port());
            self.hold(i, super::faults::Kind::Refuse(port)).await?;
        }
        Ok(())
    }

    /// Stops the participant (after the peers): `stop`, its exit awaited, else killed. Its route goes with it.
    pub(super) async fn stop_participants(&mut self) {
        let Some(g) = self.gateway.as_mut() else { return };
        if let Some(mut route) = g.route.take() {
            let _ = tokio::task::spawn_blocking(move || route.undo()).await;
        }
        if g.exited {
            return;
        }
        g.stop_sent = true;
        let id = g.process.as_ref().map(|p| p.id.clone());
        if let Some(p) = g.process.as_mut() {
            let write = async {
                p.stdin.write_all(b"{\"cmd\":\"stop\"}\n").await?;
                p.stdin.flush().await
            };
            let _ = tokio::time::timeout(WRITE_TIMEOUT, write).await;
        }
        // A cancelled run still waits for the exit: it belongs in the record.
        let cancel = std::mem::replace(&mut self.cancel, tokio_util::sync::CancellationToken::new());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !self.gateway.as_ref().is_some_and(|g| g.exited) {
            match self.step(deadline).await {
                Ok(false) => {}
                _ => {
                    if let Some(id) = &id {
                        self.backend.kill(id).await;
                    }
                    let deadline = Instant::now() + std::time::Duration::from_secs(5);
                    while !self.gateway.as_ref().is_some_and(|g| g.exited) {
                        if !matches!(self.step(deadline).await, Ok(false)) {
                            break;
                        }
                    }
                    break;
                }
            }
        }
        self.cancel = cancel;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_external_address_is_private_and_outside_the_case_networks() {
        let ext = external_ip(Ipv4Addr::new(10, 216, 7, 254));
        assert_eq!(ext, Ipv4Addr::new(10, 224, 7, 254));
        assert_eq!(external_ip(Ipv4Addr::new(10, 223, 255, 254)), Ipv4Addr::new(10, 231, 255, 254));
        assert!(ext.is_private());
    }
}
