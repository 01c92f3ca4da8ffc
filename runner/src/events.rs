//! What peers tell the runner (the events of docs/peer-contract.md), and the per-case record of them.
//!
//! The record also holds what the runner itself sees of a peer from outside (stderr lines, exit), so that
//! checks judge from one time-ordered stream.

use serde::{Deserialize, Serialize};

pub use contract::commands::{Command, CommandLine};
pub use contract::events::{Direction, Event as PeerEvent, EventLine};
pub use contract::participant::{ParticipantEvent, ParticipantLine};
pub use contract::Micros;

/// What one stdout line of a peer is, judged against the contract's types and schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A contract event; `unknown_fields` names fields beyond the contract this runner knows (a newer peer).
    Event {
        line: EventLine,
        unknown_fields: Vec<String>,
    },
    /// An event this runner does not know (a newer peer's): recorded, not judged.
    UnknownEvent { name: String },
    /// Not an event: why, in the schema's words.
    Violation(String),
}

impl Line {
    pub fn parse(text: &str) -> Line {
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return Line::Violation(format!("not JSON: {e}")),
        };
        let Some(name) = value.get("event").and_then(serde_json::Value::as_str) else {
            return Line::Violation("no string field `event` naming the event".into());
        };
        let schema = events_schema();
        // The event's own schema says which field is wrong; the whole `oneOf` would only say "none matched".
        let Some(validator) = schema.by_event.get(name) else {
            return Line::UnknownEvent {
                name: name.to_owned(),
            };
        };
        if let Some(e) = validator.iter_errors(&value).next() {
            let at = e.instance_path().to_string();
            return Line::Violation(match at.as_str() {
                "" => e.to_string(),
                at => format!("{e} (at {at})"),
            });
        }
        let unknown_fields = contract::schema::unknown_fields(&schema.schema, &value);
        match serde_json::from_value(value) {
            Ok(line) => Line::Event { line, unknown_fields },
            // The schema and the types come from one source; should they still part, say where.
            Err(e) => Line::Violation(format!("passes the schema but not the contract types: {e}")),
        }
    }
}

/// One stdout line of a participant that is not a peer (the UPnP gateway), judged against
/// docs/contract/participant-events.schema.json: the line, or why it is not one.
pub fn parse_participant_line(text: &str) -> Result<ParticipantLine, String> {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let validator = SCHEMA.get_or_init(|| {
        jsonschema::validator_for(contract::schema::participant_events().as_value())
            .expect("the generated schema is valid")
    });
    if let Some(e) = validator.iter_errors(&value).next() {
        let at = e.instance_path().to_string();
        return Err(match at.as_str() {
            "" => e.to_string(),
            at => format!("{e} (at {at})"),
        });
    }
    serde_json::from_value(value).map_err(|e| format!("passes the schema but not the contract types: {e}"))
}

struct EventsSchema {
    schema: schemars::Schema,
    /// For each event (the schema's variants, so also what an unknown event is): the envelope and that event's fields, without the other variants.
    by_event: std::collections::BTreeMap<String, jsonschema::Validator>,
}

/// The events schema, generated from the contract's types once per process.
fn events_schema() -> &'static EventsSchema {
    static SCHEMA: std::sync::OnceLock<EventsSchema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema = contract::schema::events();
        let root = schema.as_value();
        let mut by_event = std::collections::BTreeMap::new();
        for variant in root["oneOf"].as_array().into_iter().flatten() {
            let Some(name) = variant["properties"]["event"]["const"].as_str() else {
                continue;
            };
            // `allOf` of one: its errors are the variant's own, where `oneOf` says only that none matched.
            let mut one = root.clone();
            if let Some(o) = one.as_object_mut() {
                o.remove("oneOf");
                o.insert("allOf".into(), serde_json::Value::Array(vec![variant.clone()]));
            }
            let v = jsonschema::validator_for(&one).expect("the generated schema is valid");
            by_event.insert(name.to_owned(), v);
        }
        EventsSchema { schema, by_event }
    })
}

/// What happened to a peer, as recorded by the runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observation {
    /// An event the peer reported (on stdout, or in its events file).
    Event { line: EventLine },
    /// A line the peer wrote to stderr.
    Stderr { line: String },
    /// A line on an event stream that is not a contract event: a violation of the contract, `error` says why.
    Malformed {
        #[serde(default, skip_serializing_if = "Stream::is_stdout")]
        stream: Stream,
        line_no: u64,
        line: String,
        error: String,
    },
    /// An event line beyond the contract this runner knows (`what`: an unknown event, or unknown fields of a known
    /// one): a newer peer's, recorded and not judged, so that pinned older runners keep working with it.
    Unknown {
        #[serde(default, skip_serializing_if = "Stream::is_stdout")]
        stream: Stream,
        line_no: u64,
        line: String,
        what: String,
    },
    /// The runner sent this command; `expect_error` when the case expects the peer to answer it with an `error`
    /// (a dial that may lose a simultaneous-dial race, a publish from a peer cut off).
    Command {
        command: CommandLine,
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
    /// The runner made a fault of the time line to the peer from outside, as applied; `step` names the step.
    Fault { fault: Fault, step: String },
    /// A step of the time line was not carried out (`reason`: its condition never held, ...).
    NotRun { step: String, reason: String },
    /// A command could not be handed to the peer: it stopped reading its stdin.
    Undelivered { cmd_id: String, reason: String },
    /// The kernel's established TCP connections of the peer's process (remote `ip:port`, sorted, one entry per
    /// socket: two sockets to one listener are listed twice), sampled by the runner; recorded when they change.
    Sockets { established: Vec<String> },
    /// The runner cannot read the kernel's connections of this peer (`reason` says why); recorded once per peer,
    /// so that a check that compares with the kernel says it did not, rather than passing silently.
    SocketsUnavailable { reason: String },
    /// A line of a participant that is not a peer (the UPnP gateway; the record's `peer` is its name,
    /// `upnp-gateway`): what it did, as it says (docs/contract/participant-events.schema.json).
    Participant { line: ParticipantLine },
    /// A participant's stdout line that is not a participant event, `error` says why.
    ParticipantMalformed {
        line_no: u64,
        line: String,
        error: String,
    },
    /// A line a participant wrote to stderr.
    ParticipantStderr { line: String },
    /// A participant's process ended; `expected` when the runner had told it to stop. An unexpected end is an
    /// error of the case (the runner's own part broke), never a peer's failure.
    ParticipantExited { code: Option<i64>, expected: bool },
    /// The machine's CPU over one sampling interval, recorded under [`HOST`]: whether the host could keep up is
    /// judged from these (and the harness lag of the peers' lines), so that `judge` sees what the run saw.
    Host(HostSample),
}

/// The record's name for the machine the case ran on (its `peer` for [`Observation::Host`]).
pub const HOST: &str = "host";

/// What the runner measured of the whole machine over one interval (`/proc/stat`, `/proc/pressure/cpu`,
/// `/proc/loadavg`). Shares are in permille of all cores' time, so records from machines of any size compare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    /// When the interval ended (the sampler's clock: `Recorded.at` is when it reached the record).
    pub ts: Micros,
    pub interval_ms: u64,
    /// Online cores: what "all of the machine" means for the shares below.
    pub cores: u32,
    /// Time the cores ran tasks (user, nice, system, irq, softirq), of all cores' time.
    pub busy_permille: u32,
    /// Time the hypervisor ran something else while this machine had work: lost to it.
    pub steal_permille: u32,
    /// Tasks runnable at the end of the interval, the sampler itself not counted (`/proc/loadavg`).
    pub runnable: u32,
    /// Time at least one runnable task waited for a core (`/proc/pressure/cpu` `some`), where the kernel tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure_some_permille: Option<u32>,
    /// Time every non-idle task waited (`full`), where the kernel tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure_full_permille: Option<u32>,
}

/// All cores busy for this share of a sample: no core left idle for the runner to read the peers' output, nor
/// for a peer's timer to fire on time. Not 1000: the kernel's tick accounting and the sampler's own reads blur
/// the last few permille.
pub const BUSY_PERMILLE: u32 = 950;
/// ...and runnable tasks waiting for a core this share of the sample (PSI `some`): demand beyond the cores, not
/// only up to them (two peers spinning on two cores while nothing else wants one slows no one else down).
pub const PRESSURE_PERMILLE: u32 = 100;
/// A peer line reaching the runner this long after the peer stamped it means the runner (or the pipes between)
/// fell behind: ten times the 100 ms p99 meshgate aims at, and a whole gossipsub heartbeat.
pub const LAG_US: Micros = 1_000_000;

impl HostSample {
    /// All cores busy and tasks waiting for one: by PSI where the kernel has it, else by the run queue.
    pub fn cpu_saturated(&self) -> bool {
        let waiting = match self.pressure_some_permille {
            Some(p) => p >= PRESSURE_PERMILLE,
            None => self.runnable > self.cores,
        };
        self.busy_permille >= BUSY_PERMILLE && waiting
    }
}

/// A fault made to one peer from outside, as recorded. A partition is recorded once per peer it cuts, naming the
/// peers that peer can no longer reach, so that every check reads who was apart from whom from the record alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// No packet goes between the peer and these peers any more.
    Partition { from: Vec<String> },
    /// Every partition of the peer undone.
    Heal,
    /// Its traffic shaped (`with`: only its link with that peer).
    Shape {
        shape: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        with: Option<String>,
    },
    /// Every shaping of the peer undone.
    Unshape,
    /// SIGKILLed by the runner.
    Kill,
    /// Started again after a kill: the same identity and address.
    Restart,
    /// Frozen: it runs nothing, its sockets stay open.
    Pause,
    Resume,
}

impl Fault {
    /// `partitioned from go-1, go-2`, `killed`: for evidence lines and chart marks.
    pub fn describe(&self) -> String {
        match self {
            Fault::Partition { from } => format!("partitioned from {}", from.join(", ")),
            Fault::Heal => "partition healed".into(),
            Fault::Shape { shape, with: None } => format!("shaped: {shape}"),
            Fault::Shape { shape, with: Some(w) } => format!("link with {w} shaped: {shape}"),
            Fault::Unshape => "shaping undone".into(),
            Fault::Kill => "killed (SIGKILL)".into(),
            Fault::Restart => "restarted".into(),
            Fault::Pause => "paused".into(),
            Fault::Resume => "resumed".into(),
        }
    }
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

    /// A participant's own line, if this is one.
    pub fn participant(&self) -> Option<&ParticipantEvent> {
        match &self.what {
            Observation::Participant { line } => Some(&line.event),
            _ => None,
        }
    }

    /// The best time of the observation: the peer's (or participant's) own timestamp for its lines, arrival time
    /// otherwise.
    pub fn time(&self) -> Micros {
        match &self.what {
            Observation::Event { line } => line.ts,
            Observation::Participant { line } => line.ts,
            Observation::Host(sample) => sample.ts,
            _ => self.at,
        }
    }
}

impl Recorded {
    /// The command the runner sent, if this is one.
    pub fn command(&self) -> Option<&Command> {
        self.sent().map(|(line, _)| &line.command)
    }

    /// The command line the runner sent, if this is one, and whether the case expects an `error` answer.
    pub fn sent(&self) -> Option<(&CommandLine, bool)> {
        match &self.what {
            Observation::Command {
                command,
                expect_error,
            } => Some((command, *expect_error)),
            _ => None,
        }
    }
}

/// The commands sent to each peer by `cmd_id`, to tell which command an `error` or `unsupported` answers: the
/// answer's `cmd_id` names it, never the name the peer wrote.
#[derive(Debug, Default)]
pub struct Sent(std::collections::BTreeMap<(String, String), (CommandLine, bool)>);

impl Sent {
    /// Keeps `rec` if it is a command; says whether it was.
    pub fn observe(&mut self, rec: &Recorded) -> bool {
        let Some((line, expect_error)) = rec.sent() else {
            return false;
        };
        if let Some(id) = &line.cmd_id {
            self.0
                .insert((rec.peer.clone(), id.clone()), (line.clone(), expect_error));
        }
        true
    }

    /// The command `peer` was sent as `cmd_id`, and whether the case expects an `error` answer.
    pub fn get(&self, peer: &str, cmd_id: Option<&String>) -> Option<(&CommandLine, bool)> {
        let id = cmd_id?;
        self.0
            .get(&(peer.to_owned(), id.clone()))
            .map(|(line, expect)| (line, *expect))
    }
}

pub fn now_micros() -> Micros {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_micros() as Micros
}

/// The stream an event line came on, to name where a line is: `stdout line 3`, `events file line 1`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    #[default]
    Stdout,
    EventsFile,
}

impl Stream {
    pub fn is_stdout(&self) -> bool {
        *self == Stream::Stdout
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Stdout => "stdout",
            Stream::EventsFile => "events file",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str) -> EventLine {
        match Line::parse(text) {
            Line::Event { line, unknown_fields } if unknown_fields.is_empty() => line,
            other => panic!("not a plain event: {other:?}"),
        }
    }

    #[test]
    fn parses_contract_examples() {
        let l = event(
            r#"{"ts":1763701200510000,"peer":"12D3KooWA","event":"identify","remote":"12D3KooWB","conn_id":"3","agent_version":"rust-libp2p/0.47.0","protocol_version":"ipfs/0.1.0","protocols":["/ipfs/id/1.0.0","/meshsub/1.1.0"],"listen_addrs":["/ip4/10.88.0.3/tcp/4001"]}"#,
        );
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
        let s = event(r#"{"ts":1,"peer":"A","event":"stopped"}"#);
        assert_eq!(s.event, PeerEvent::Stopped);
    }

    #[test]
    fn what_is_beyond_the_contract_is_told_apart_from_what_breaks_it() {
        assert_eq!(
            Line::parse(r#"{"ts":1,"peer":"A","event":"teleported","to":"mars"}"#),
            Line::UnknownEvent {
                name: "teleported".into()
            }
        );
        match Line::parse(r#"{"ts":1,"peer":"A","event":"stopped","why":"told","extra":{"a":1}}"#) {
            Line::Event { line, unknown_fields } => {
                assert_eq!(line.event, PeerEvent::Stopped);
                assert_eq!(unknown_fields, ["extra", "why"]);
            }
            other => panic!("{other:?}"),
        }
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
    fn participant_lines_are_judged_against_their_schema_and_recorded_under_their_name() {
        let line = parse_participant_line(
            r#"{"ts":5,"participant":"upnp-gateway","event":"ssdp_request","from":"10.216.4.2:40000","st":"urn:schemas-upnp-org:device:InternetGatewayDevice:1"}"#,
        )
        .unwrap();
        assert!(matches!(&line.event, ParticipantEvent::SsdpRequest { st, .. } if st.ends_with("Device:1")));
        let missing = parse_participant_line(r#"{"ts":5,"participant":"upnp-gateway","event":"ssdp_request"}"#)
            .unwrap_err();
        assert!(missing.contains("ssdp_request"), "{missing}");
        assert!(parse_participant_line("hello").unwrap_err().starts_with("not JSON"));
        // The record format: `kind: participant`, the participant's name as `peer`, its line as it said it.
        let rec = Recorded {
            at: 7,
            peer: "upnp-gateway".into(),
            what: Observation::Participant { line: line.clone() },
        };
        let text = serde_json::to_string(&rec).unwrap();
        assert!(text.starts_with(r#"{"at":7,"peer":"upnp-gateway","kind":"participant","line":{"ts":5,"participant":"upnp-gateway","event":"ssdp_request""#), "{text}");
        let back: Recorded = serde_json::from_str(&text).unwrap();
        assert_eq!(back, rec);
        assert_eq!(back.time(), 5);
        assert!(back.event().is_none() && back.participant().is_some());
        let exit: Recorded = serde_json::from_str(
            r#"{"at":9,"peer":"upnp-gateway","kind":"participant_exited","code":0,"expected":true}"#,
        )
        .unwrap();
        assert_eq!(exit.what, Observation::ParticipantExited { code: Some(0), expected: true });
    }

    #[test]
    fn host_samples_are_recorded_under_the_host_s_name_with_their_own_time() {
        let rec = Recorded {
            at: 2_300_000,
            peer: HOST.into(),
            what: Observation::Host(HostSample {
                ts: 2_000_000,
                interval_ms: 1000,
                cores: 2,
                busy_permille: 990,
                steal_permille: 0,
                runnable: 3,
                pressure_some_permille: Some(400),
                pressure_full_permille: None,
            }),
        };
        let text = serde_json::to_string(&rec).unwrap();
        assert_eq!(
            text,
            r#"{"at":2300000,"peer":"host","kind":"host","ts":2000000,"interval_ms":1000,"cores":2,"busy_permille":990,"steal_permille":0,"runnable":3,"pressure_some_permille":400}"#
        );
        let back: Recorded = serde_json::from_str(&text).unwrap();
        assert_eq!(back, rec);
        assert_eq!(back.time(), 2_000_000);
        assert!(back.event().is_none() && back.participant().is_none());
    }

    #[test]
    fn violations_say_why_in_the_schema_s_words() {
        let violation = |text: &str| match Line::parse(text) {
            Line::Violation(why) => why,
            other => panic!("{text} was taken as {other:?}"),
        };
        assert!(violation("hello").starts_with("not JSON"));
        // A known event missing a required field, a wrong type, a value the contract does not know.
        let missing = violation(r#"{"ts":1,"peer":"A","event":"message","topic":"t"}"#);
        assert!(missing.contains("required"), "{missing}");
        let wrong = violation(r#"{"ts":"soon","peer":"A","event":"stopped"}"#);
        assert!(wrong.contains("/ts"), "{wrong}");
        let unknown = violation(
            r#"{"ts":1,"peer":"A","event":"connection_opened","remote":"B","conn_id":"1","direction":"unknown","remote_addr":"/ip4/1.2.3.4/tcp/1"}"#,
        );
        assert!(unknown.contains("/direction"), "{unknown}");
        assert!(violation(r#"{"ts":1,"peer":"A"}"#).contains("event"));
    }
}
