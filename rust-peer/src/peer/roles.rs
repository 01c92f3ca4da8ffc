//! The roles of contract revision 2 in the event loop: request-response (requester and
//! responder) and AutoNAT v1 and v2 (client and server), their commands and their events.

use std::{pin::Pin, time::Instant};

use contract::{
    commands::{AutonatVersion, Request, Response},
    config::ResponderFailure,
    events::{AutonatOutcome, ReachabilityStatus},
    features,
};
use futures::Future;
use libp2p::{
    autonat::{
        self,
        v1::{
            InboundProbeError, InboundProbeEvent, NatStatus, OutboundProbeError,
            OutboundProbeEvent, ResponseError,
        },
    },
    request_response::{self, OutboundRequestId, ResponseChannel},
    Multiaddr, PeerId,
};

use super::{chain, Peer};
use crate::{compat, events::Event};

/// An answer waiting for `response_delay_ms`.
pub type DelayedResponse =
    Pin<Box<dyn Future<Output = (ResponseChannel<Response>, Response)> + Send>>;

/// A request this peer sent and has no outcome for yet.
pub struct Outbound {
    id: String,
    remote: PeerId,
    sent: Instant,
}

/// `size` bytes of ASCII filler.
fn filler(size: u64) -> String {
    "x".repeat(usize::try_from(size).unwrap_or(usize::MAX))
}

fn parse_peer(peer: &str) -> Result<PeerId, String> {
    peer.parse()
        .map_err(|e| format!("invalid peer id {peer}: {e}"))
}

fn parse_addr(addr: &str) -> Result<Multiaddr, String> {
    addr.parse()
        .map_err(|e| format!("invalid multiaddr {addr}: {e}"))
}

impl Peer {
    /// `request`: lets request-response dial the peer itself when not connected, as an
    /// application that knows the peer only by address does (several of these back to back are
    /// what rust-libp2p#5996 is about; they are neither serialized nor dialed here).
    pub(super) fn request(
        &mut self,
        peer: &str,
        addr: Option<&str>,
        id: String,
        size: u64,
    ) -> Result<(), String> {
        let remote = parse_peer(peer)?;
        let addr = addr.map(parse_addr).transpose()?;
        let Some(behaviour) = self.swarm.behaviour_mut().request_response.as_mut() else {
            return Err("no request-response role configured (config.request_response)".into());
        };
        if let Some(addr) = addr {
            compat::add_request_address(behaviour, &remote, addr);
        }
        let request_id = behaviour.send_request(
            &remote,
            Request {
                id: id.clone(),
                payload: filler(size),
            },
        );
        self.outbound.insert(
            request_id,
            Outbound {
                id: id.clone(),
                remote,
                sent: Instant::now(),
            },
        );
        self.emitter.emit(Event::RequestSent {
            remote: remote.to_string(),
            id,
            size,
        });
        Ok(())
    }

    pub(super) fn on_request_response(
        &mut self,
        event: request_response::Event<Request, Response>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => self.on_request(peer, request, channel),
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some(outbound) = self.outbound.remove(&request_id) else {
                    tracing::warn!(%request_id, "response to no request of ours");
                    return;
                };
                if response.id != outbound.id {
                    tracing::warn!(sent = %outbound.id, answered = %response.id, "response names another request");
                }
                self.emitter.emit(Event::ResponseReceived {
                    remote: outbound.remote.to_string(),
                    id: outbound.id,
                    size: response.payload.len() as u64,
                    latency_us: i64::try_from(outbound.sent.elapsed().as_micros())
                        .unwrap_or(i64::MAX),
                });
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let Some(outbound) = self.outbound.remove(&request_id) else {
                    tracing::warn!(%peer, %request_id, "failure of no request of ours: {error}");
                    return;
                };
                let mut text = chain(&error);
                if let request_response::OutboundFailure::DialFailure = error {
                    let dial = self.swarm.behaviour().dial_failures.last(&outbound.remote);
                    if let Some(dial) = dial {
                        text = format!("{text}: {dial}");
                    }
                }
                self.emitter.emit(Event::RequestFailed {
                    remote: outbound.remote.to_string(),
                    id: outbound.id,
                    error: text,
                });
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::info!(%peer, "inbound request failed: {}", chain(&error));
            }
            request_response::Event::ResponseSent { peer, .. } => {
                tracing::debug!(%peer, "response sent");
            }
        }
    }

    /// Answers as `config.request_response` says: after `response_delay_ms`, with
    /// `response_size` bytes (default: the request's), or not at all (`failure`).
    fn on_request(&mut self, peer: PeerId, request: Request, channel: ResponseChannel<Response>) {
        self.emitter.emit(Event::RequestReceived {
            remote: peer.to_string(),
            id: request.id.clone(),
            size: request.payload.len() as u64,
        });
        let responder = self.config.request_response.clone().unwrap_or_default();
        match responder.failure {
            // Dropping the channel closes the stream without an answer.
            Some(ResponderFailure::Drop) => drop(channel),
            // Kept for the peer's lifetime: the requester's timeout decides.
            Some(ResponderFailure::Stall) => self.stalled.push(channel),
            None => {
                let size = responder
                    .response_size
                    .unwrap_or(request.payload.len() as u64);
                let response = Response {
                    id: request.id,
                    payload: filler(size),
                };
                let delay =
                    std::time::Duration::from_millis(responder.response_delay_ms.unwrap_or(0));
                self.responses.push(Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    (channel, response)
                }));
            }
        }
    }

    /// A delayed answer is due.
    pub(super) fn respond(&mut self, channel: ResponseChannel<Response>, response: Response) {
        let id = response.id.clone();
        if let Some(behaviour) = self.swarm.behaviour_mut().request_response.as_mut() {
            if behaviour.send_response(channel, response).is_err() {
                tracing::info!(%id, "the requester is gone, response not sent");
            }
        }
    }

    /// `autonat_probe`. v1: the server joins the client's servers (dialed at `addr` by the
    /// library when not connected) and the client probes on its schedule, every
    /// `behaviour::V1_PROBE_INTERVAL`. v2: the library has no probe on request.
    pub(super) fn autonat_probe(
        &mut self,
        server: &str,
        addr: Option<&str>,
        version: AutonatVersion,
        vanish: bool,
        cmd_id: Option<&str>,
    ) -> Result<(), String> {
        let server = parse_peer(server)?;
        let addr = addr.map(parse_addr).transpose()?;
        let unsupported = |feature: &str, reason: String| Event::Unsupported {
            feature: feature.into(),
            reason,
            cmd_id: cmd_id.map(str::to_owned),
        };
        match version {
            AutonatVersion::V1 if vanish => self.emitter.emit(unsupported(
                features::AUTONAT_V1_VANISH,
                "rust-libp2p's AutoNAT v1 client sends a dial request and keeps its connection \
                 until the answer; it offers no way to drop the connection in between"
                    .into(),
            )),
            AutonatVersion::V1 => {
                let asks = self
                    .config
                    .autonat
                    .as_ref()
                    .and_then(|a| a.v1)
                    .is_some_and(|r| r.asks());
                let Some(behaviour) = self.swarm.behaviour_mut().autonat_v1.as_mut() else {
                    return Err("no AutoNAT v1 role configured (config.autonat.v1)".into());
                };
                if !asks {
                    return Err("the AutoNAT v1 role is `server`: this peer does not probe".into());
                }
                behaviour.add_server(server, addr);
            }
            AutonatVersion::V2 => self.emitter.emit(unsupported(
                features::AUTONAT_V2_CLIENT,
                "rust-libp2p's AutoNAT v2 client has no probe on request: every 5 s it tests its \
                 address candidates with a connected server of its own choice"
                    .into(),
            )),
        }
        Ok(())
    }

    pub(super) fn on_autonat_v1(&mut self, event: autonat::v1::Event) {
        let reachability =
            |status, server: Option<PeerId>, address: Option<&Multiaddr>| Event::Reachability {
                version: AutonatVersion::V1,
                status,
                server: server.map(|s| s.to_string()),
                address: address.map(ToString::to_string),
            };
        let inbound = |remote: PeerId, outcome, reason: Option<String>| Event::AutonatRequest {
            remote: remote.to_string(),
            version: AutonatVersion::V1,
            outcome,
            reason,
        };
        match event {
            autonat::v1::Event::StatusChanged { new, .. } => {
                let event = match &new {
                    NatStatus::Public(address) => {
                        reachability(ReachabilityStatus::Public, None, Some(address))
                    }
                    NatStatus::Private => reachability(ReachabilityStatus::Private, None, None),
                    NatStatus::Unknown => reachability(ReachabilityStatus::Unknown, None, None),
                };
                self.emitter.emit(event);
            }
            autonat::v1::Event::OutboundProbe(OutboundProbeEvent::Response {
                peer,
                address,
                ..
            }) => {
                self.emitter.emit(reachability(
                    ReachabilityStatus::Public,
                    Some(peer),
                    Some(&address),
                ));
            }
            autonat::v1::Event::OutboundProbe(OutboundProbeEvent::Error {
                peer: Some(peer),
                error: OutboundProbeError::Response(ResponseError::DialError),
                ..
            }) => self
                .emitter
                .emit(reachability(ReachabilityStatus::Private, Some(peer), None)),
            autonat::v1::Event::OutboundProbe(OutboundProbeEvent::Error {
                peer: Some(peer),
                error,
                ..
            }) => self.emitter.emit(Event::error(
                Some("autonat_probe"),
                None,
                format!(
                    "AutoNAT v1 probe with {peer} failed: {}",
                    outbound_probe_error(&error)
                ),
            )),
            // No server or no address yet: the library tries again on its schedule.
            autonat::v1::Event::OutboundProbe(event) => tracing::debug!(?event, "autonat v1 probe"),
            autonat::v1::Event::InboundProbe(InboundProbeEvent::Request {
                peer,
                addresses,
                ..
            }) => {
                tracing::info!(%peer, ?addresses, "autonat v1 dial request");
            }
            autonat::v1::Event::InboundProbe(InboundProbeEvent::Response {
                peer, address, ..
            }) => {
                tracing::info!(%peer, %address, "autonat v1 dialed back");
                self.emitter
                    .emit(inbound(peer, AutonatOutcome::DialedBack, None));
            }
            autonat::v1::Event::InboundProbe(InboundProbeEvent::Error { peer, error, .. }) => {
                let (outcome, reason) = match error {
                    InboundProbeError::Response(ResponseError::DialError) => {
                        (AutonatOutcome::DialBackFailed, "DialError".to_owned())
                    }
                    InboundProbeError::Response(error) => {
                        (AutonatOutcome::Refused, format!("{error:?}"))
                    }
                    InboundProbeError::InboundRequest(error) => (
                        AutonatOutcome::Refused,
                        format!("inbound request failed: {}", chain(&error)),
                    ),
                };
                self.emitter.emit(inbound(peer, outcome, Some(reason)));
            }
        }
    }

    pub(super) fn on_autonat_v2_client(&mut self, event: autonat::v2::client::Event) {
        let status = match &event.result {
            Ok(()) => ReachabilityStatus::Public,
            Err(e) => {
                tracing::info!(server = %event.server, addr = %event.tested_addr, "not reachable: {e}");
                ReachabilityStatus::Private
            }
        };
        self.emitter.emit(Event::Reachability {
            version: AutonatVersion::V2,
            status,
            server: Some(event.server.to_string()),
            address: Some(event.tested_addr.to_string()),
        });
    }

    pub(super) fn on_autonat_v2_server(&mut self, event: autonat::v2::server::Event) {
        let (outcome, reason) = match &event.result {
            Ok(()) => (AutonatOutcome::DialedBack, None),
            Err(e) => (AutonatOutcome::DialBackFailed, Some(chain(e))),
        };
        tracing::info!(client = %event.client, addr = %event.tested_addr, ?outcome, "autonat v2 request");
        self.emitter.emit(Event::AutonatRequest {
            remote: event.client.to_string(),
            version: AutonatVersion::V2,
            outcome,
            reason,
        });
    }
}

fn outbound_probe_error(error: &OutboundProbeError) -> String {
    match error {
        OutboundProbeError::OutboundRequest(failure) => chain(failure),
        OutboundProbeError::Response(response) => format!("{response:?}"),
        other => format!("{other:?}"),
    }
}

/// The requests this peer sent, by the library's id.
pub type OutboundRequests = std::collections::HashMap<OutboundRequestId, Outbound>;
