//! Remembers why the last dial to each peer failed. A behaviour's own dial (request-response's)
//! fails without a `SwarmEvent` (e.g. `DialPeerConditionFalse`) and request-response reports
//! only `OutboundFailure::DialFailure`, with no source; the `DialError` reaches behaviours alone,
//! as `FromSwarm::DialFailure`, so this one keeps its text for `request_failed`.

use std::{
    collections::HashMap,
    task::{Context, Poll},
};

use libp2p::{
    core::{transport::PortUse, Endpoint},
    swarm::{
        dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
        THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

use crate::peer::chain;

#[derive(Default)]
pub struct Behaviour {
    last: HashMap<PeerId, String>,
}

impl Behaviour {
    /// The text of the last failed dial to `peer`, if one failed.
    pub fn last(&self, peer: &PeerId) -> Option<&str> {
        self.last.get(peer).map(String::as_str)
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::DialFailure(failure) = event {
            if let Some(peer) = failure.peer_id {
                self.last.insert(peer, chain(failure.error));
            }
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
