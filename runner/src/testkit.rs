//! Recorded event sequences for check tests, written the way peers and the runner would record them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::checks::Context;
use crate::cases::{BuildSpec, Case, PeerSpec};
use crate::events::{Direction, EventLine, Micros, Observation, PeerEvent, Recorded};
use crate::matrix::{DialMode, Gossipsub, Language, Muxer, Publish, Security, Topology, Transport};
use crate::results::PeerReport;

pub const TOPIC: &str = "meshgate";

pub struct Kit {
    pub case: Case,
    pub peers: Vec<PeerReport>,
}

pub fn id(name: &str) -> String {
    format!("12D3KooW{name}")
}

impl Kit {
    /// `rust` rust peers and `go` go peers (`rust-1`, ..., `go-1`, ...): for messages that must stay short at scale.
    pub fn many(rust: usize, go: usize) -> Self {
        let names: Vec<String> = (1..=rust)
            .map(|i| format!("rust-{i}"))
            .chain((1..=go).map(|i| format!("go-{i}")))
            .collect();
        Kit::new(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Peers named `rust-N` are rust-libp2p 0.57.1, the others go-libp2p v0.51.0; all subscribe and publish.
    pub fn new(names: &[&str]) -> Self {
        let specs: Vec<PeerSpec> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let rust = n.starts_with("rust");
                PeerSpec {
                    name: n.to_string(),
                    implementation: if rust { "rust" } else { "go" }.into(),
                    language: if rust { Language::Rust } else { Language::Go },
                    build: BuildSpec {
                        language: if rust { Language::Rust } else { Language::Go },
                        version: None,
                        path: None,
                        pins: BTreeMap::new(),
                        image: None,
                        companions: Default::default(),
                    },
                    seed: i as u64 + 1,
                    offer: Default::default(),
                    roles: Default::default(),
                }
            })
            .collect();
        let peers = specs
            .iter()
            .map(|s| {
                let (library, key, version) = match s.language {
                    Language::Rust => ("rust-libp2p", "libp2p", "0.57.1"),
                    Language::Go | Language::Image => {
                        ("go-libp2p", "github.com/libp2p/go-libp2p", "v0.51.0")
                    }
                };
                PeerReport {
                    name: s.name.clone(),
                    implementation: s.implementation.clone(),
                    library: Some(library.into()),
                    versions: BTreeMap::from([(key.to_string(), version.to_string())]),
                    peer_id: Some(id(&s.name)),
                    image: "test".into(),
                    exit_code: Some(0),
                }
            })
            .collect();
        let case = Case {
            name: "rust x go / tcp+noise+yamux / test".into(),
            network: "test".into(),
            edges: vec![],
            peers: specs,
            topology: Topology::FullMesh,
            transport: Transport::Tcp,
            security: Security::Noise,
            muxer: Muxer::Yamux,
            dial: DialMode::Dedup,
            dials: 1,
            gossipsub: Gossipsub::default(),
            publish: Publish::default(),
            warmup: Duration::from_secs(1),
            drain: Duration::from_secs(1),
            incidents: vec![],
            timeline: vec![],
            limits: Default::default(),
            checks: Default::default(),
            known_issues: vec![],
            axes: BTreeMap::new(),
            gateway: None,
            private: vec![],
            unsupported: None,
        };
        Kit { case, peers }
    }

    pub fn context(&self) -> Context<'_> {
        Context {
            case: &self.case,
            peers: &self.peers,
        }
    }

    pub fn event(&self, ts: Micros, peer: &str, event: PeerEvent) -> Recorded {
        Recorded {
            at: ts,
            peer: peer.into(),
            what: Observation::Event {
                line: EventLine {
                    ts,
                    peer: id(peer),
                    event,
                },
            },
        }
    }

    pub fn identify(
        &self,
        ts: Micros,
        observer: &str,
        remote: &str,
        protocols: &[&str],
    ) -> Recorded {
        self.event(
            ts,
            observer,
            PeerEvent::Identify {
                remote: id(remote),
                conn_id: Some("1".into()),
                agent_version: "test/1".into(),
                protocol_version: "ipfs/0.1.0".into(),
                protocols: protocols.iter().map(|p| p.to_string()).collect(),
                listen_addrs: vec![],
            },
        )
    }

    /// The runner's publish command followed by the peer's `published`.
    pub fn publish(&self, ts: Micros, publisher: &str, msg: &str) -> [Recorded; 2] {
        [
            self.command(
                ts,
                publisher,
                &format!(r#"{{"cmd":"publish","topic":"{TOPIC}","id":"{msg}","size":64}}"#),
            ),
            self.event(
                ts + 100,
                publisher,
                PeerEvent::Published {
                    topic: TOPIC.into(),
                    id: msg.into(),
                    size: 64,
                },
            ),
        ]
    }

    pub fn message(
        &self,
        ts: Micros,
        receiver: &str,
        publisher: &str,
        msg: &str,
        sent: Micros,
    ) -> Recorded {
        self.event(
            ts,
            receiver,
            PeerEvent::Message {
                topic: TOPIC.into(),
                id: msg.into(),
                source: id(publisher),
                from: Some(id(publisher)),
                size: 64,
                sent_us: sent,
            },
        )
    }

    pub fn command(&self, ts: Micros, peer: &str, json: &str) -> Recorded {
        Recorded {
            at: ts,
            peer: peer.into(),
            what: Observation::Command {
                command: contract::commands::parse(json).expect("a command line"),
                expect_error: false,
            },
        }
    }

    pub fn stderr(&self, ts: Micros, peer: &str, line: &str) -> Recorded {
        Recorded {
            at: ts,
            peer: peer.into(),
            what: Observation::Stderr { line: line.into() },
        }
    }

    /// A fault of the time line made to `peer` at `ts`.
    pub fn fault(&self, ts: Micros, peer: &str, fault: crate::events::Fault) -> Recorded {
        Recorded {
            at: ts,
            peer: peer.into(),
            what: Observation::Fault {
                fault,
                step: "time line step 1".into(),
            },
        }
    }

    pub fn exited(&self, ts: Micros, peer: &str, code: Option<i64>, expected: bool) -> Recorded {
        Recorded {
            at: ts,
            peer: peer.into(),
            what: Observation::Exited {
                code,
                expected,
                oom_killed: false,
                peak_memory_bytes: None,
                memory_limit_bytes: None,
            },
        }
    }

    /// `holder` reports a connection `conn` to `remote` whose far end is `remote_addr`.
    pub fn opened_at(
        &self,
        ts: Micros,
        holder: &str,
        remote: &str,
        conn: &str,
        direction: Direction,
        remote_addr: &str,
    ) -> Recorded {
        self.event(
            ts,
            holder,
            PeerEvent::ConnectionOpened {
                remote: id(remote),
                conn_id: conn.into(),
                direction,
                remote_addr: remote_addr.into(),
                security: None,
                muxer: None,
            },
        )
    }

    /// An outbound connection `conn` from `holder` to `remote`, at a placeholder address.
    pub fn opened(&self, ts: Micros, holder: &str, remote: &str, conn: &str) -> Recorded {
        self.opened_at(
            ts,
            holder,
            remote,
            conn,
            Direction::Outbound,
            "/ip4/10.0.0.2/tcp/4001",
        )
    }

    pub fn closed(&self, ts: Micros, holder: &str, remote: &str, conn: &str) -> Recorded {
        self.event(
            ts,
            holder,
            PeerEvent::ConnectionClosed {
                remote: id(remote),
                conn_id: conn.into(),
                direction: Direction::Outbound,
                remote_addr: "/ip4/10.0.0.2/tcp/4001".into(),
                reason: None,
            },
        )
    }

    /// Both sides of one connection between `a` and `b`, connection id `1` on each.
    pub fn connect(&self, ts: Micros, a: &str, b: &str) -> [Recorded; 2] {
        [self.opened(ts, a, b, "1"), self.opened(ts, b, a, "1")]
    }

    /// Both sides of the connection `connect` opened, closed.
    pub fn disconnect_pair(&self, ts: Micros, a: &str, b: &str) -> [Recorded; 2] {
        [self.closed(ts, a, b, "1"), self.closed(ts, b, a, "1")]
    }

    pub fn subscribe(&self, ts: Micros, peer: &str, topic: &str) -> Recorded {
        self.command(
            ts,
            peer,
            &format!(r#"{{"cmd":"subscribe","topic":"{topic}"}}"#),
        )
    }

    pub fn unsubscribe(&self, ts: Micros, peer: &str, topic: &str) -> Recorded {
        self.command(
            ts,
            peer,
            &format!(r#"{{"cmd":"unsubscribe","topic":"{topic}"}}"#),
        )
    }

    /// The runner tells `peer` to disconnect from `from` (by peer id), or from everyone.
    pub fn disconnect(&self, ts: Micros, peer: &str, from: Option<&str>) -> Recorded {
        let json = match from {
            Some(f) => format!(r#"{{"cmd":"disconnect","peer":"{}"}}"#, id(f)),
            None => r#"{"cmd":"disconnect"}"#.to_string(),
        };
        self.command(ts, peer, &json)
    }

    /// `observer` reports that `remote` subscribed to (or, with `on` false, unsubscribed from) `topic`.
    pub fn remote_sub(
        &self,
        ts: Micros,
        observer: &str,
        remote: &str,
        topic: &str,
        on: bool,
    ) -> Recorded {
        let (remote, topic) = (id(remote), topic.to_string());
        let e = if on {
            PeerEvent::Subscribed { remote, topic }
        } else {
            PeerEvent::Unsubscribed { remote, topic }
        };
        self.event(ts, observer, e)
    }

    /// `peer`'s whole mesh for `topic`.
    pub fn mesh(&self, ts: Micros, peer: &str, topic: &str, members: &[&str]) -> Recorded {
        self.event(
            ts,
            peer,
            PeerEvent::Mesh {
                topic: topic.into(),
                peers: members.iter().map(|m| id(m)).collect(),
            },
        )
    }

    pub fn streams(
        &self,
        ts: Micros,
        peer: &str,
        remote: &str,
        conn: &str,
        inbound: u32,
        outbound: u32,
    ) -> Recorded {
        self.event(
            ts,
            peer,
            PeerEvent::Streams {
                remote: id(remote),
                conn_id: conn.into(),
                inbound,
                outbound,
            },
        )
    }

    pub fn stopped(&self, ts: Micros, peer: &str) -> Recorded {
        self.event(ts, peer, PeerEvent::Stopped)
    }

    /// The kernel's established sockets of `peer`, as the runner samples them.
    pub fn sockets(&self, at: Micros, peer: &str, established: &[&str]) -> Recorded {
        Recorded {
            at,
            peer: peer.into(),
            what: Observation::Sockets {
                established: established.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    pub fn sockets_unavailable(&self, at: Micros, peer: &str, reason: &str) -> Recorded {
        Recorded {
            at,
            peer: peer.into(),
            what: Observation::SocketsUnavailable {
                reason: reason.into(),
            },
        }
    }
}
