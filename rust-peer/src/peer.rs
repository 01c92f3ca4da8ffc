//! The event loop: one `tokio::select!` over swarm events, stdin command lines, the timers
//! that sample stream counts and meshes, and the responses that wait for their delay.

mod roles;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use futures::{stream::FuturesUnordered, StreamExt};
use libp2p::{
    core::ConnectedPoint,
    gossipsub::{self, IdentTopic, TopicHash},
    identify,
    identity::Keypair,
    multiaddr::Protocol,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        ConnectionId, DialError, SwarmEvent,
    },
    Multiaddr, PeerId, Swarm,
};
use tokio::{sync::mpsc, time::MissedTickBehavior};

use contract::commands::{self, Command, CommandLine, DialMode};

use crate::{
    behaviour::{Behaviour, BehaviourEvent},
    compat,
    config::{Config, Stack},
    events::{now_us, Direction, Emitter, Event},
    hold, payload,
    streams::{without_p2p, StreamCounts, StreamRegistry},
    transport,
};

/// How often meshes are compared with what was last reported. Mesh changes happen in the
/// heartbeat without an event, so they have to be polled: a fraction of the default heartbeat
/// (1 s), and no more often, since every poll wakes the runtime of each of hundreds of peers.
const MESH_POLL: Duration = Duration::from_millis(200);

/// Connections are kept until told otherwise: the experiments observe connections, and an
/// idle timeout would close them behind the runner's back.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// How long `stop` waits for connections to close before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Process exit status once the peer is done.
pub type ExitStatus = i32;

/// Exit status for a peer that stopped because it could not run (not a contract status).
const EXIT_FAILURE: ExitStatus = 1;

struct Connection {
    remote: PeerId,
    counts: Option<Arc<StreamCounts>>,
    /// Last (inbound, outbound) reported, to report changes only once.
    reported: Option<(usize, usize)>,
}

struct Peer {
    swarm: Swarm<Behaviour>,
    emitter: Emitter,
    registry: StreamRegistry,
    listen_addrs: BTreeSet<Multiaddr>,
    connections: BTreeMap<ConnectionId, Connection>,
    meshes: BTreeMap<TopicHash, Vec<PeerId>>,
    /// Opens held streams (libp2p-stream).
    streams: libp2p_stream::Control,
    /// Events from tasks off the loop (held streams that failed to open).
    task_events: mpsc::UnboundedSender<Event>,
    /// The `cmd_id` of the `dial` that started each outgoing connection still being set up,
    /// for the error if it fails.
    dials: HashMap<ConnectionId, Option<String>>,
    config: Config,
    /// Requests sent, until answered or failed.
    outbound: roles::OutboundRequests,
    /// Answers waiting for `response_delay_ms`.
    responses: FuturesUnordered<roles::DelayedResponse>,
    /// Requests never to be answered (`failure: stall`), kept so that their streams stay open.
    stalled: Vec<libp2p::request_response::ResponseChannel<commands::Response>>,
}

enum Flow {
    Continue,
    Stop,
}

/// Builds the host, reports `started`, and runs until `stop` or end of input.
pub async fn run(
    config: Config,
    stack: Stack,
    keypair: Keypair,
    emitter: Emitter,
    input: mpsc::Receiver<std::io::Result<String>>,
) -> ExitStatus {
    let registry = StreamRegistry::new();
    let listen = listen_addr(&stack, config.listen_port);
    let swarm = match build_swarm(&config, stack, &keypair, &registry) {
        Ok(swarm) => swarm,
        Err(e) => {
            tracing::error!("cannot build the host: {e}");
            return EXIT_FAILURE;
        }
    };
    emitter.emit(Event::Started {
        implementation: "rust-libp2p".into(),
        versions: crate::versions(),
        features: Some(compat::features().into_iter().map(str::to_owned).collect()),
        contract_version: Some(contract::VERSION),
    });

    let mut streams = swarm.behaviour().stream.new_control();
    if let Err(e) = hold::accept(&mut streams) {
        tracing::error!("cannot accept {}: {e}", hold::PROTOCOL);
        return EXIT_FAILURE;
    }
    let (task_events, task_events_rx) = mpsc::unbounded_channel();
    let mut peer = Peer {
        swarm,
        emitter,
        registry,
        listen_addrs: BTreeSet::new(),
        connections: BTreeMap::new(),
        meshes: BTreeMap::new(),
        streams,
        task_events,
        dials: HashMap::new(),
        config: config.clone(),
        outbound: HashMap::new(),
        responses: FuturesUnordered::new(),
        stalled: Vec::new(),
    };
    // Topics are joined only on `subscribe`; gossipsub needs no preparation for them.
    tracing::info!(topics = ?config.gossipsub.topics, "topics of this run");
    if let Err(e) = peer.swarm.listen_on(listen.clone()) {
        peer.emitter.emit(Event::error(
            None,
            None,
            format!("cannot listen on {listen}: {}", chain(&e)),
        ));
        return EXIT_FAILURE;
    }
    peer.run(config.streams_interval(), task_events_rx, input).await;
    0
}

fn build_swarm(
    config: &Config,
    stack: Stack,
    keypair: &Keypair,
    registry: &StreamRegistry,
) -> Result<Swarm<Behaviour>, Box<dyn std::error::Error>> {
    let transport = transport::build(stack, keypair, registry)?;
    let behaviour = Behaviour::new(keypair, config)?;
    Ok(Swarm::new(
        transport,
        behaviour,
        keypair.public().to_peer_id(),
        config.swarm_config(IDLE_CONNECTION_TIMEOUT),
    ))
}

fn listen_addr(stack: &Stack, port: u16) -> Multiaddr {
    let addr = Multiaddr::empty().with(Protocol::Ip4([0, 0, 0, 0].into()));
    match stack {
        Stack::Tcp(_) => addr.with(Protocol::Tcp(port)),
        Stack::Quic => addr.with(Protocol::Udp(port)).with(Protocol::QuicV1),
    }
}

impl Peer {
    async fn run(
        &mut self,
        streams_interval: Duration,
        mut task_events: mpsc::UnboundedReceiver<Event>,
        mut input: mpsc::Receiver<std::io::Result<String>>,
    ) {
        let mut streams_tick = tokio::time::interval(streams_interval);
        streams_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut mesh_tick = tokio::time::interval(MESH_POLL);
        mesh_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let streams_changed = self.registry.changed();

        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                line = input.recv() => match line {
                    Some(Ok(line)) => {
                        if let Flow::Stop = self.on_line(&line) {
                            break;
                        }
                    }
                    None => {
                        tracing::info!("end of input, stopping");
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::error!("cannot read input, stopping: {e}");
                        break;
                    }
                },
                _ = streams_tick.tick() => self.report_streams(true),
                () = streams_changed.notified() => self.report_streams(false),
                _ = mesh_tick.tick() => self.report_meshes(),
                Some(event) = task_events.recv() => self.emitter.emit(event),
                Some((channel, response)) = self.responses.next() => self.respond(channel, response),
            }
        }
        self.shutdown().await;
    }

    /// Closes every connection (reporting the closes), then reports `stopped`.
    async fn shutdown(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        let grace = tokio::time::sleep(SHUTDOWN_GRACE);
        tokio::pin!(grace);
        while !self.connections.is_empty() {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                () = &mut grace => {
                    tracing::warn!(open = self.connections.len(), "connections still open at exit");
                    break;
                }
            }
        }
        self.emitter.emit(Event::Stopped);
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                if self.listen_addrs.insert(address) {
                    self.report_listening();
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                if self.listen_addrs.remove(&address) {
                    self.report_listening();
                }
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                if let Err(e) = reason {
                    tracing::warn!("listener closed: {e}");
                }
                let before = self.listen_addrs.len();
                for address in &addresses {
                    self.listen_addrs.remove(address);
                }
                if self.listen_addrs.len() != before {
                    self.report_listening();
                }
            }
            SwarmEvent::ListenerError { error, .. } => tracing::warn!("listener error: {error}"),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => self.on_connection_opened(peer_id, connection_id, &endpoint),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                cause,
                ..
            } => {
                self.connections.remove(&connection_id);
                let (direction, remote_addr) = describe(&endpoint);
                self.emitter.emit(Event::ConnectionClosed {
                    remote: peer_id.to_string(),
                    conn_id: connection_id.to_string(),
                    direction,
                    remote_addr,
                    reason: cause.map(|c| c.to_string()),
                });
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id,
                connection_id,
                error,
            } => {
                let message = chain(&error);
                tracing::warn!(peer = ?peer_id, "dial failed: {message}");
                // Only a `dial` command's failure is an error here; the dials the behaviours make
                // (request-response, AutoNAT) report through their own events.
                if let Some(cmd_id) = self.dials.remove(&connection_id) {
                    self.emitter
                        .emit(Event::error(Some("dial"), cmd_id.as_deref(), message));
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => tracing::warn!(%send_back_addr, "incoming connection failed: {error}"),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => {
                self.on_gossipsub(event);
                self.report_meshes();
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(event)) => {
                tracing::trace!(?event, "ping");
            }
            SwarmEvent::Behaviour(BehaviourEvent::RequestResponse(event)) => {
                self.on_request_response(event);
            }
            SwarmEvent::Behaviour(BehaviourEvent::AutonatV1(event)) => self.on_autonat_v1(event),
            SwarmEvent::Behaviour(BehaviourEvent::AutonatV2Client(event)) => {
                self.on_autonat_v2_client(event);
            }
            SwarmEvent::Behaviour(BehaviourEvent::AutonatV2Server(event)) => {
                self.on_autonat_v2_server(event);
            }
            other => tracing::debug!(event = ?other, "swarm event"),
        }
    }

    fn on_connection_opened(
        &mut self,
        peer: PeerId,
        connection_id: ConnectionId,
        endpoint: &ConnectedPoint,
    ) {
        self.dials.remove(&connection_id);
        let counts = self.registry.claim(peer, endpoint);
        if counts.is_none() {
            tracing::warn!(%peer, %connection_id, ?endpoint, "no stream counters for connection");
        }
        // Every upgraded connection is filed with its labels; "unknown" only if it was not.
        let (security, muxer) = counts.as_ref().map_or_else(
            || ("unknown".to_owned(), "unknown".to_owned()),
            |counts| {
                let labels = counts.labels();
                (labels.security.clone(), labels.muxer.clone())
            },
        );
        self.connections.insert(
            connection_id,
            Connection {
                remote: peer,
                counts,
                reported: None,
            },
        );
        let (direction, remote_addr) = describe(endpoint);
        self.emitter.emit(Event::ConnectionOpened {
            remote: peer.to_string(),
            conn_id: connection_id.to_string(),
            direction,
            remote_addr,
            security: Some(security),
            muxer: Some(muxer),
        });
        self.report_streams(false);
    }

    fn on_identify(&mut self, event: identify::Event) {
        match event {
            identify::Event::Received {
                connection_id,
                peer_id,
                info,
            } => {
                let mut protocols: Vec<String> =
                    info.protocols.iter().map(ToString::to_string).collect();
                protocols.sort();
                protocols.dedup();
                self.emitter.emit(Event::Identify {
                    remote: peer_id.to_string(),
                    conn_id: Some(connection_id.to_string()),
                    agent_version: info.agent_version,
                    protocol_version: info.protocol_version,
                    protocols,
                    listen_addrs: info.listen_addrs.iter().map(ToString::to_string).collect(),
                });
            }
            identify::Event::Error { peer_id, error, .. } => {
                tracing::warn!(%peer_id, "identify failed: {error}");
            }
            other => tracing::debug!(event = ?other, "identify"),
        }
    }

    fn on_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            } => match (payload::decode(&message.data), message.source) {
                (Ok(header), Some(source)) => self.emitter.emit(Event::Message {
                    topic: message.topic.into_string(),
                    id: header.id,
                    source: source.to_string(),
                    from: Some(propagation_source.to_string()),
                    size: message.data.len() as u64,
                    sent_us: header.sent_us as i64,
                }),
                // Strict validation rejects unsigned messages before they get here.
                (Ok(header), None) => self.emitter.emit(Event::error(
                    None,
                    None,
                    format!(
                        "message {} on {} from {propagation_source} has no source",
                        header.id, message.topic
                    ),
                )),
                (Err(e), _) => self.emitter.emit(Event::error(
                    None,
                    None,
                    format!(
                        "message on {} from {}: {e}",
                        message.topic, propagation_source
                    ),
                )),
            },
            gossipsub::Event::Subscribed { peer_id, topic, .. } => {
                self.emitter.emit(Event::Subscribed {
                    remote: peer_id.to_string(),
                    topic: topic.into_string(),
                });
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                self.emitter.emit(Event::Unsubscribed {
                    remote: peer_id.to_string(),
                    topic: topic.into_string(),
                });
            }
            gossipsub::Event::GossipsubNotSupported { peer_id } => {
                tracing::warn!(%peer_id, "peer does not support gossipsub");
            }
            // gossipsub before 0.48 (libp2p 0.55) has no other events.
            #[allow(unreachable_patterns)]
            other => tracing::debug!(event = ?other, "gossipsub"),
        }
    }

    fn on_line(&mut self, line: &str) -> Flow {
        if line.trim().is_empty() {
            return Flow::Continue;
        }
        let CommandLine { cmd_id, command } = match commands::parse(line) {
            Ok(request) => request,
            Err(e) => {
                self.emitter.emit(Event::error(
                    e.cmd.as_deref(),
                    e.cmd_id.as_deref(),
                    e.message,
                ));
                return Flow::Continue;
            }
        };
        let name = command.name();
        tracing::debug!(?command, ?cmd_id, "command");
        match self.execute(command, cmd_id.as_deref()) {
            Ok(flow) => flow,
            Err(message) => {
                self.emitter
                    .emit(Event::error(Some(name), cmd_id.as_deref(), message));
                Flow::Continue
            }
        }
    }

    fn execute(&mut self, command: Command, cmd_id: Option<&str>) -> Result<Flow, String> {
        match command {
            Command::Dial { addr, mode } => self.dial(&addr, mode, cmd_id)?,
            Command::Subscribe { topic } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&IdentTopic::new(topic))
                    .map_err(|e| e.to_string())?;
                self.report_meshes();
            }
            Command::Unsubscribe { topic } => {
                let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                if !compat::unsubscribe(gossipsub, &IdentTopic::new(topic.as_str()))? {
                    return Err(format!("not subscribed to topic {topic}"));
                }
                self.report_meshes();
            }
            Command::Publish { topic, id, size } => {
                let data = payload::encode(
                    &payload::Header {
                        id: id.clone(),
                        sent_us: now_us(),
                    },
                    usize::try_from(size).unwrap_or(usize::MAX),
                );
                let size = data.len() as u64;
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(IdentTopic::new(topic.as_str()), data)
                    .map_err(|e| e.to_string())?;
                self.emitter.emit(Event::Published { topic, id, size });
            }
            Command::Disconnect { peer: Some(peer) } => {
                let peer: PeerId = peer
                    .parse()
                    .map_err(|e| format!("invalid peer id {peer}: {e}"))?;
                self.swarm
                    .disconnect_peer_id(peer)
                    .map_err(|()| format!("not connected to {peer}"))?;
            }
            Command::Disconnect { peer: None } => {
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                for peer in peers {
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
            }
            Command::OpenStreams { peer, count } => {
                let peer: PeerId = peer
                    .parse()
                    .map_err(|e| format!("invalid peer id {peer}: {e}"))?;
                // libp2p-stream would dial a peer it has no connection to; this command must not.
                if !self.swarm.is_connected(&peer) {
                    return Err(format!("not connected to {peer}"));
                }
                hold::open(
                    self.streams.clone(),
                    peer,
                    count as usize,
                    cmd_id.map(str::to_owned),
                    self.task_events.clone(),
                );
            }
            Command::DropProtocol { protocol } => {
                // Each behaviour's connection handlers advertise the protocols it was built
                // with; rust-libp2p offers no way to withdraw one from a running swarm.
                tracing::info!(%protocol, "drop_protocol is unsupported");
                self.emitter.emit(Event::Unsupported {
                    feature: "drop-protocol".into(),
                    reason: format!(
                        "rust-libp2p cannot remove a protocol from a running behaviour; \
                         nothing changed for {protocol}"
                    ),
                    cmd_id: cmd_id.map(str::to_owned),
                });
            }
            Command::Request {
                peer,
                addr,
                id,
                size,
            } => self.request(&peer, addr.as_deref(), id, size)?,
            Command::AutonatProbe {
                server,
                addr,
                version,
                vanish,
            } => self.autonat_probe(&server, addr.as_deref(), version, vanish, cmd_id)?,
            Command::Stop => return Ok(Flow::Stop),
        }
        Ok(Flow::Continue)
    }

    fn dial(&mut self, addr: &str, mode: DialMode, cmd_id: Option<&str>) -> Result<(), String> {
        let addr: Multiaddr = addr
            .parse()
            .map_err(|e| format!("invalid multiaddr {addr}: {e}"))?;
        let Some(Protocol::P2p(peer)) = addr.iter().last() else {
            return Err(format!("{addr} does not end in /p2p/<peer id>"));
        };
        let opts = DialOpts::peer_id(peer).addresses(vec![addr]);
        let opts = match mode {
            DialMode::Dedup => opts.condition(PeerCondition::DisconnectedAndNotDialing),
            // A second TCP connection cannot share the first one's local port with the same
            // remote address, so a forced new connection also gets a fresh local port.
            DialMode::New => opts.condition(PeerCondition::Always).allocate_new_port(),
        };
        let opts = opts.build();
        let connection_id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                // Forgotten when the connection is established or fails.
                self.dials.insert(connection_id, cmd_id.map(str::to_owned));
                Ok(())
            }
            // `dedup` asked for nothing when a connection exists or is under way.
            Err(DialError::DialPeerConditionFalse(condition)) => {
                tracing::info!(%peer, ?condition, "already connected or dialing, not dialing");
                Ok(())
            }
            Err(e) => Err(chain(&e)),
        }
    }

    fn report_listening(&self) {
        self.emitter.emit(Event::Listening {
            addrs: self.listen_addrs.iter().map(ToString::to_string).collect(),
        });
    }

    /// Reports every connection's counts (`all`) or only those that changed since reported.
    fn report_streams(&mut self, all: bool) {
        for (id, connection) in &mut self.connections {
            let Some(counts) = &connection.counts else {
                continue;
            };
            let now = counts.get();
            if all || connection.reported != Some(now) {
                connection.reported = Some(now);
                self.emitter.emit(Event::Streams {
                    remote: connection.remote.to_string(),
                    conn_id: id.to_string(),
                    inbound: u32::try_from(now.0).unwrap_or(u32::MAX),
                    outbound: u32::try_from(now.1).unwrap_or(u32::MAX),
                });
            }
        }
    }

    /// Reports each topic whose mesh differs from the last report; a left topic has an empty
    /// mesh.
    fn report_meshes(&mut self) {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        // Compared as peer ids, written as text only on a change: base58 on every poll of every
        // peer was a visible share of an idle 100-peer network's CPU.
        let current: BTreeMap<TopicHash, Vec<PeerId>> = gossipsub
            .topics()
            .map(|topic| {
                let mut peers: Vec<PeerId> = gossipsub.mesh_peers(topic).copied().collect();
                peers.sort();
                (topic.clone(), peers)
            })
            .collect();
        let topics: BTreeSet<&TopicHash> = current.keys().chain(self.meshes.keys()).collect();
        for topic in topics {
            let now = current.get(topic).map_or(&[][..], Vec::as_slice);
            let before = self.meshes.get(topic).map_or(&[][..], Vec::as_slice);
            if now != before {
                let mut peers: Vec<String> = now.iter().map(ToString::to_string).collect();
                peers.sort();
                self.emitter.emit(Event::Mesh {
                    topic: topic.to_string(),
                    peers,
                });
            }
        }
        self.meshes = current;
    }
}

/// Direction and remote address (without `/p2p/…`) of a connection.
fn describe(endpoint: &ConnectedPoint) -> (Direction, String) {
    let direction = if endpoint.is_dialer() {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    (
        direction,
        without_p2p(endpoint.get_remote_address()).to_string(),
    )
}

/// An error with its sources, since some libp2p errors (e.g. `TransportError::Other`) print
/// nothing themselves and leave the cause to `source()`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::io;

    use libp2p::TransportError;

    use super::chain;

    #[test]
    fn error_text_includes_silent_sources() {
        let silent = TransportError::Other(io::Error::other("Address already in use"));
        assert_eq!(
            silent.to_string(),
            "",
            "libp2p still leaves this to source()"
        );
        assert_eq!(chain(&silent), "Address already in use");
        let plain = io::Error::other("boom");
        assert_eq!(chain(&plain), "boom");
    }
}
