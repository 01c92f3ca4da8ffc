//! What peers tell the runner (the events of docs/peer-contract.md), and the per-case record of them.
//!
//! The record also holds what the runner itself sees of a peer from outside (stderr lines, exit), so that
//! checks judge from one time-ordered stream.

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch, the contract's time unit.
pub type Micros = i64;

/// One event line of the peer contract, minus the envelope (`ts`, `peer`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PeerEvent {
    Started {
        implementation: String,
        #[serde(default)]
        versions: std::collections::BTreeMap<String, String>,
        /// The optional features the peer can do (`dial-mode-new`, `drop-protocol`, ...); absent: not said.
        #[serde(default)]
        features: Option<Vec<String>>,
    },
    Listening {
        addrs: Vec<String>,
    },
    ConnectionOpened {
        remote: String,
        conn_id: String,
        direction: Direction,
        remote_addr: String,
        /// What the connection negotiated (`noise`, `tls`; `yamux`, `mplex`; QUIC: `tls`, `quic-v1`), where said.
        #[serde(default)]
        security: Option<String>,
        #[serde(default)]
        muxer: Option<String>,
    },
    ConnectionClosed {
        remote: String,
        conn_id: String,
        direction: Direction,
        remote_addr: String,
        reason: Option<String>,
    },
    Identify {
        remote: String,
        conn_id: Option<String>,
        agent_version: String,
        protocol_version: String,
        protocols: Vec<String>,
        #[serde(default)]
        listen_addrs: Vec<String>,
    },
    Subscribed {
        remote: String,
        topic: String,
    },
    Unsubscribed {
        remote: String,
        topic: String,
    },
    Mesh {
        topic: String,
        peers: Vec<String>,
    },
    Message {
        topic: String,
        id: String,
        source: String,
        from: Option<String>,
        size: u64,
        sent_us: Micros,
    },
    Published {
        topic: String,
        id: String,
        size: u64,
    },
    Streams {
        remote: String,
        conn_id: String,
        inbound: u32,
        outbound: u32,
    },
    Error {
        cmd: Option<String>,
        /// The `cmd_id` of the command this answers; absent for errors of the library's own activity.
        #[serde(default)]
        cmd_id: Option<String>,
        message: String,
    },
    Unsupported {
        feature: String,
        reason: String,
        /// The `cmd_id` of the command this answers; absent when the peer cannot run at all (at start).
        #[serde(default)]
        cmd_id: Option<String>,
    },
    Stopped {},
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

/// The envelope every event line carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    pub ts: Micros,
    pub peer: String,
    #[serde(flatten)]
    pub event: PeerEvent,
}

impl EventLine {
    /// Parses one stdout line of a peer. The error says what was expected, for the runner to report with the
    /// peer's name and line number.
    pub fn parse(line: &str) -> Result<Self, String> {
        serde_json::from_str(line)
            .map_err(|e| format!("expected a peer-contract event object: {e}"))
    }
}

/// What happened to a peer, as recorded by the runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observation {
    /// An event the peer reported on stdout.
    Event { line: EventLine },
    /// A line the peer wrote to stderr.
    Stderr { line: String },
    /// A stdout line that is not a contract event.
    Malformed {
        line_no: u64,
        line: String,
        error: String,
    },
    /// The runner sent this command (the exact line); `expect_error` when the case expects the peer to answer it
    /// with an `error` (a dial that may lose a simultaneous-dial race, a publish from a peer cut off).
    Command {
        json: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        expect_error: bool,
    },
    /// The peer's process ended; `expected` when the runner had told it to stop.
    Exited {
        code: Option<i64>,
        expected: bool,
        /// The kernel killed it for going over its memory limit.
        #[serde(default)]
        oom_killed: bool,
        /// The most memory it used, where the backend could measure it.
        #[serde(default)]
        peak_memory_bytes: Option<u64>,
        /// The memory limit the backend gave it, when it could give one.
        #[serde(default)]
        memory_limit_bytes: Option<u64>,
    },
    /// The runner killed the peer.
    Killed { reason: String },
    /// The runner did something to the peer from outside (an incident that is not a command).
    Incident { what: String },
    /// A command could not be handed to the peer: it stopped reading its stdin.
    Undelivered { cmd_id: String, reason: String },
    /// The kernel's established TCP connections of the peer's process (remote `ip:port`, sorted, one entry per
    /// socket: two sockets to one listener are listed twice), sampled by the runner; recorded when they change.
    Sockets { established: Vec<String> },
    /// The runner cannot read the kernel's connections of this peer (`reason` says why); recorded once per peer,
    /// so that a check that compares with the kernel says it did not, rather than passing silently.
    SocketsUnavailable { reason: String },
}

/// One observation of one peer, stamped with the runner's clock on arrival.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub at: Micros,
    /// The peer's name in the case (e.g. `rust-1`).
    pub peer: String,
    #[serde(flatten)]
    pub what: Observation,
}

impl Recorded {
    /// The peer's own event, if this is one.
    pub fn event(&self) -> Option<&PeerEvent> {
        match &self.what {
            Observation::Event { line } => Some(&line.event),
            _ => None,
        }
    }

    /// The best time of the observation: the peer's own timestamp for events, arrival time otherwise.
    pub fn time(&self) -> Micros {
        match &self.what {
            Observation::Event { line } => line.ts,
            _ => self.at,
        }
    }
}

/// The parts of a runner command (peer contract section 2) that checks look at.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Command {
    pub cmd: String,
    /// Unique in the case; a peer's `error` or `unsupported` for this command names it.
    #[serde(default)]
    pub cmd_id: Option<String>,
    #[serde(default)]
    pub topic: String,
    /// The message id of a `publish`.
    #[serde(default)]
    pub id: String,
    /// The remote peer id of a `disconnect` (absent: every peer) or `open_streams`.
    #[serde(default)]
    pub peer: Option<String>,
    /// The multiaddr of a `dial`, and its mode.
    #[serde(default)]
    pub addr: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    /// From the record, not the line: the case expects an `error` answer.
    #[serde(skip)]
    pub expect_error: bool,
}

impl Recorded {
    /// The command the runner sent, if this is one. Commands are recorded as the exact line sent, so they are
    /// parsed here, once for every check.
    pub fn command(&self) -> Option<Command> {
        match &self.what {
            Observation::Command { json, expect_error } => {
                let mut c: Command = serde_json::from_str(json).ok()?;
                c.expect_error = *expect_error;
                Some(c)
            }
            _ => None,
        }
    }
}

pub fn now_micros() -> Micros {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_micros() as Micros
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_contract_examples() {
        let l = EventLine::parse(
            r#"{"ts":1763701200510000,"peer":"12D3KooWA","event":"identify","remote":"12D3KooWB","conn_id":"3","agent_version":"rust-libp2p/0.47.0","protocol_version":"ipfs/0.1.0","protocols":["/ipfs/id/1.0.0","/meshsub/1.1.0"],"listen_addrs":["/ip4/10.88.0.3/tcp/4001"]}"#,
        )
        .unwrap();
        assert_eq!(l.ts, 1763701200510000);
        match l.event {
            PeerEvent::Identify {
                protocols, conn_id, ..
            } => {
                assert_eq!(protocols.len(), 2);
                assert_eq!(conn_id.as_deref(), Some("3"));
            }
            other => panic!("wrong event {other:?}"),
        }
        let s = EventLine::parse(r#"{"ts":1,"peer":"A","event":"stopped"}"#).unwrap();
        assert_eq!(s.event, PeerEvent::Stopped {});
    }

    #[test]
    fn exits_recorded_before_memory_was_measured_still_parse() {
        let r: Recorded = serde_json::from_str(
            r#"{"at":1,"peer":"go-1","kind":"exited","code":137,"expected":false}"#,
        )
        .unwrap();
        assert_eq!(
            r.what,
            Observation::Exited {
                code: Some(137),
                expected: false,
                oom_killed: false,
                peak_memory_bytes: None,
                memory_limit_bytes: None,
            }
        );
    }

    #[test]
    fn rejects_what_is_not_an_event() {
        assert!(EventLine::parse("hello").is_err());
        assert!(EventLine::parse(r#"{"ts":1,"peer":"A","event":"teleported"}"#).is_err());
        // A known event missing a required field.
        let e =
            EventLine::parse(r#"{"ts":1,"peer":"A","event":"message","topic":"t"}"#).unwrap_err();
        assert!(e.contains("missing field"), "{e}");
    }
}
