//! A network's time line (`timeline:`): steps at offsets from the start of publishing or after a condition,
//! optionally repeated, each a command to a peer or a fault made from outside. `incidents:` are time line steps
//! written the older way (`at`, `peer`, `action`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::roles::{AutonatVersion, Roles};

/// One step of a time line, as written in the matrix.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What later steps call it (`after: {step: NAME}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// From the start of publishing, or with `after`, from when the condition held (default 0s).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub at: Option<Duration>,
    /// Waits for this before counting `at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Condition>,
    /// Repeats the step this often ...
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub every: Option<Duration>,
    /// ... this many times in all (default 1; with `every`, default 1 too: say how many).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// The peer a peer step is made to (by name, `go-2`); partitions and heals name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(rename = "do")]
    pub action: Action,
    /// After a restart, resume or heal: what the runner replays so the peer rejoins (default: its dials along the
    /// topology and its subscriptions).
    #[serde(default, skip_serializing_if = "Rejoin::is_replay")]
    pub rejoin: Rejoin,
    /// The peer is expected to answer this step's command with an `error` (it is then not a failure).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expect_error: bool,
}

/// What a step waits for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Condition {
    /// Every edge of the topology connected, both ends reporting it.
    Connected,
    /// Every running peer has a mesh in every topic.
    Meshed,
    /// The named earlier step was carried out (its last repetition).
    Step(String),
    /// A peer received this many gossipsub messages since publishing started.
    Received { peer: String, messages: u32 },
}

/// What a step does. The checks are not told: they see what the runner recorded of it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Leave a topic while still expected to receive on it.
    Unsubscribe(String),
    /// Join a topic.
    Subscribe(String),
    /// Close connections to one peer (by name) or to all (`all`).
    Disconnect(String),
    /// Dial another peer.
    Dial(DialStep),
    /// A burst of messages from the peer, at its own rate and size.
    Publish(Burst),
    /// Cut the peer off from the network (its container's network link goes away); it runs on, unreachable.
    CutOff,
    /// Open streams to another peer and never close them.
    OpenStreams { to: String, count: u32 },
    /// Stop supporting a protocol (a staged downgrade: the next identify push lacks it).
    DropProtocol(String),
    /// Split the network into groups that cannot reach each other (peers in no group keep every link).
    Partition(Vec<Vec<String>>),
    /// Undo every partition.
    Heal,
    /// Slow, lossy or narrow traffic of the peer, or of its link with one other peer.
    Shape(Shape),
    /// Undo every shaping of the peer.
    Unshape,
    /// SIGKILL the peer.
    Kill,
    /// Start a killed peer again: same identity, same address, same image.
    Restart,
    /// Freeze the peer (not killed: its sockets stay open, it answers nothing).
    Pause,
    /// Thaw a paused peer.
    Resume,
    /// Requests on the request-response protocol to another peer, `count` of them sent back to back at once.
    Request(RequestStep),
    /// Ask an AutoNAT server to dial the peer back.
    AutonatProbe(ProbeStep),
}

/// `request: {to: go-1, count: 5, size: 64, via: address}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestStep {
    /// The responder, by name.
    pub to: String,
    /// Requests sent back to back at the same instant, each with its own id.
    #[serde(default = "one")]
    pub count: u32,
    /// Payload bytes of each request.
    #[serde(default = "request_size")]
    pub size: u64,
    #[serde(default = "Via::connection")]
    pub via: Via,
}

/// `autonat-probe: {server: rust-1, version: v1, vanish: true, via: address}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeStep {
    /// The AutoNAT server asked, by name.
    pub server: String,
    #[serde(default)]
    pub version: AutonatVersion,
    /// v1 only: send the dial request and drop the connection at once, without waiting for the answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vanish: bool,
    #[serde(default = "Via::address")]
    pub via: Via,
}

/// How a step reaches the other peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    /// Over a connection the peer is expected to hold already (the command names the peer only).
    Connection,
    /// The command also gives the other peer's address: the library dials it by itself when not connected.
    Address,
}

impl Via {
    fn connection() -> Via {
        Via::Connection
    }
    fn address() -> Via {
        Via::Address
    }
}

fn one() -> u32 {
    1
}

fn request_size() -> u64 {
    64
}

/// `dial: {to: go-1, mode: new}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DialStep {
    pub to: String,
    #[serde(default)]
    pub mode: StepDial,
}

/// How a dial step connects (the matrix's spelling, kept apart from the wire's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepDial {
    /// Connect unless already connected.
    #[default]
    Dedup,
    /// Always a new connection.
    New,
}

/// `publish: {messages: 20, interval: 50ms, size: 1024, topic: meshgate}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    pub messages: u32,
    #[serde(default = "burst_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Payload bytes (default: the network's `publish.size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// Default: the network's first topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

fn burst_interval() -> Duration {
    Duration::from_millis(100)
}

/// `shape: {latency: 300ms, jitter: 20ms, loss: 5, rate: 1mbit, direction: both, with: rust-1}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Shape {
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub latency: Option<Duration>,
    /// Each packet's delay varies by up to this either way, which reorders packets.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Duration>,
    /// Percent of packets dropped (0-100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Bandwidth: `512kbit`, `1mbit`, `1gbit`, or bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "rate")]
    pub rate: Option<u64>,
    /// Percent of packets sent twice (0-100), where the kernel path can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<f64>,
    #[serde(default)]
    pub direction: Direction,
    /// Only the link with this peer (by name); absent: all of the peer's traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<String>,
}

/// Which of a peer's traffic a shaping applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Packets arriving at the peer.
    To,
    /// Packets the peer sends.
    From,
    #[default]
    Both,
}

/// What the runner replays after a restart, resume or heal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rejoin {
    /// The peer's dials along the topology (both ways) and, after a restart, its subscriptions.
    #[default]
    Replay,
    /// Nothing: the peers must find each other again by themselves.
    None,
}

impl Rejoin {
    fn is_replay(&self) -> bool {
        *self == Rejoin::Replay
    }
}

impl Action {
    /// Whether the step is made to one peer (`peer:` required) or to the network (`peer:` refused).
    pub fn needs_peer(&self) -> bool {
        !matches!(self, Action::Partition(_) | Action::Heal)
    }

    /// Whether the step is a fault made from outside the peer (not a command it is sent).
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Action::CutOff
                | Action::Partition(_)
                | Action::Heal
                | Action::Shape(_)
                | Action::Unshape
                | Action::Kill
                | Action::Restart
                | Action::Pause
                | Action::Resume
        )
    }

    /// Its name as written in a matrix (`open-streams`).
    pub fn name(&self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => s,
            Ok(serde_json::Value::Object(o)) => o.keys().next().cloned().unwrap_or_default(),
            _ => String::new(),
        }
    }
}

impl Step {
    /// `at 2s: partition rust-1,go-1 | rust-2,go-2`, `after connected + 1s, every 2s x3: go-1 kill`: for reports.
    pub fn summary(&self) -> String {
        let at = humantime::format_duration(self.at.unwrap_or_default());
        let mut when = match &self.after {
            None => format!("at {at}"),
            Some(c) => {
                let c = match c {
                    Condition::Connected => "connected".to_owned(),
                    Condition::Meshed => "meshed".to_owned(),
                    Condition::Step(s) => format!("step {s}"),
                    Condition::Received { peer, messages } => format!("{peer} received {messages}"),
                };
                format!("after {c} + {at}")
            }
        };
        if let (Some(every), Some(times)) = (self.every, self.times) {
            when.push_str(&format!(", every {} x{times}", humantime::format_duration(every)));
        }
        let what = match &self.action {
            Action::Partition(groups) => format!(
                "partition {}",
                groups.iter().map(|g| g.join(",")).collect::<Vec<_>>().join(" | ")
            ),
            Action::Shape(shape) => format!("shape {shape}"),
            other => other.name(),
        };
        match &self.peer {
            Some(p) => format!("{when}: {p} {what}"),
            None => format!("{when}: {what}"),
        }
    }

    /// The rules serde cannot hold: names that must refer to peers, topics and earlier steps, and values that must
    /// make sense together. `named`: the names of the steps before this one.
    pub fn check(&self, peers: &[String], topics: &[String], named: &[String]) -> Result<(), String> {
        let known = |who: &str, role: &str| -> Result<(), String> {
            if peers.iter().any(|p| p == who) {
                Ok(())
            } else {
                Err(format!("{role} `{who}` is not a peer, expected one of: {}", peers.join(", ")))
            }
        };
        let topic = |t: &str| -> Result<(), String> {
            if topics.iter().any(|x| x == t) {
                Ok(())
            } else {
                Err(format!("topic `{t}` is not one of the network's topics: {}", topics.join(", ")))
            }
        };
        let action = self.action.name();
        let peer = match (&self.peer, self.action.needs_peer()) {
            (Some(p), true) => {
                known(p, "peer")?;
                p.as_str()
            }
            (None, true) => return Err(format!("`{action}` is made to a peer: expected `peer: NAME`")),
            (Some(_), false) => {
                return Err(format!("`{action}` is made to the network, not to one peer: expected no `peer`"))
            }
            (None, false) => "",
        };
        let other = |who: &str, role: &str| -> Result<(), String> {
            known(who, role)?;
            if who == peer {
                return Err(format!("`{action}` makes `{who}` act on itself, expected another peer"));
            }
            Ok(())
        };
        if let Some(name) = &self.name {
            if named.contains(name) {
                return Err(format!("a step named `{name}` comes earlier: expected names to be unique"));
            }
        }
        match &self.after {
            Some(Condition::Step(s)) if !named.contains(s) => {
                return Err(format!(
                    "`after: {{step: {s}}}` names no earlier step, expected one of: {}",
                    if named.is_empty() { "(no step before this one has a name)".into() } else { named.join(", ") }
                ))
            }
            Some(Condition::Received { peer, messages }) => {
                known(peer, "`received` peer")?;
                if *messages == 0 {
                    return Err("`received: {messages: 0}` holds at once: expected at least 1".into());
                }
            }
            _ => {}
        }
        match (self.every, self.times) {
            (Some(e), _) if e.is_zero() => return Err("`every: 0s` repeats in no time: expected a duration".into()),
            (Some(_), None) => return Err("`every` without `times`: expected how many times in all".into()),
            (None, Some(t)) if t > 1 => return Err(format!("`times: {t}` without `every`: expected how often")),
            (_, Some(0)) => return Err("`times: 0` never runs the step: expected at least 1".into()),
            _ => {}
        }
        if self.rejoin == Rejoin::None && !matches!(self.action, Action::Restart | Action::Resume | Action::Heal) {
            return Err(format!("`rejoin` applies to restart, resume and heal, not to `{action}`"));
        }
        match &self.action {
            Action::Subscribe(t) | Action::Unsubscribe(t) => topic(t)?,
            Action::Disconnect(target) if target == "all" => {}
            Action::Disconnect(target) => other(target, "`disconnect` target")?,
            Action::OpenStreams { to, .. } => other(to, "`open-streams` target")?,
            Action::Dial(d) => other(&d.to, "`dial` target")?,
            Action::Publish(b) => {
                if b.messages == 0 {
                    return Err("`publish: {messages: 0}` publishes nothing: expected at least 1".into());
                }
                if let Some(t) = &b.topic {
                    topic(t)?;
                }
            }
            Action::Partition(groups) => {
                if groups.len() < 2 || groups.iter().any(Vec::is_empty) {
                    return Err("`partition` needs at least two non-empty groups of peers: [[a, b], [c, d]]".into());
                }
                let mut seen: Vec<&String> = Vec::new();
                for p in groups.iter().flatten() {
                    known(p, "partition member")?;
                    if seen.contains(&p) {
                        return Err(format!("`{p}` is in two groups of the partition"));
                    }
                    seen.push(p);
                }
            }
            Action::Shape(s) => {
                if s.latency.is_none() && s.jitter.is_none() && s.loss.is_none() && s.rate.is_none() && s.duplicate.is_none() {
                    return Err("`shape` changes nothing: expected latency, jitter, loss, rate or duplicate".into());
                }
                for (what, v) in [("loss", s.loss), ("duplicate", s.duplicate)] {
                    if let Some(v) = v {
                        if !(0.0..=100.0).contains(&v) {
                            return Err(format!("`{what}: {v}` is not a percentage: expected 0 to 100"));
                        }
                    }
                }
                if let Some(w) = &s.with {
                    other(w, "`shape` link peer")?;
                }
            }
            Action::Request(r) => {
                other(&r.to, "`request` responder")?;
                if r.count == 0 {
                    return Err("`request: {count: 0}` sends nothing: expected at least 1".into());
                }
            }
            Action::AutonatProbe(p) => {
                other(&p.server, "`autonat-probe` server")?;
                if p.vanish && p.version != AutonatVersion::V1 {
                    return Err("`vanish` is a v1 probe's (the client drops the connection after its dial request): expected `version: v1`".into());
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The roles a step needs of its peers (`roles`: every peer's, resolved): a requester and its responder
    /// speak request-response, a probing client has the client role and its server the server role of that
    /// AutoNAT version.
    pub fn check_roles(&self, roles: &BTreeMap<String, Roles>) -> Result<(), String> {
        let of = |p: &str| roles.get(p).cloned().unwrap_or_default();
        let peer = self.peer.as_deref().unwrap_or_default();
        match &self.action {
            Action::Request(r) => {
                for (who, what) in [(peer, "requester"), (r.to.as_str(), "responder")] {
                    if of(who).request_response.is_none() {
                        return Err(format!(
                            "`request` {what} `{who}` has no request-response role: expected `roles: {{{who}: {{request_response: {{}}}}}}` (or on its implementation)"
                        ));
                    }
                }
            }
            Action::AutonatProbe(p) => {
                let v = p.version.as_str();
                if !of(peer).autonat(p.version).is_some_and(|r| r.asks()) {
                    return Err(format!(
                        "`autonat-probe` client `{peer}` has no AutoNAT {v} client role: expected `autonat: {{{v}: client}}` (or both) in its roles"
                    ));
                }
                if !of(&p.server).autonat(p.version).is_some_and(|r| r.serves()) {
                    return Err(format!(
                        "`autonat-probe` server `{}` has no AutoNAT {v} server role: expected `autonat: {{{v}: server}}` (or both) in its roles",
                        p.server
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Bits per second from `512kbit`, `1mbit`, `2gbit`, `800bit` or a plain number.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let factor: f64 = match unit.trim() {
        "" | "bit" | "bps" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        other => {
            return Err(format!(
                "unknown rate unit `{other}` in `{text}`, expected bit, kbit, mbit or gbit (per second)"
            ))
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a rate, expected e.g. 512kbit or 1mbit"))?;
    let bits = (n * factor).round();
    if !(1.0..=1e12).contains(&bits) {
        return Err(format!("rate `{text}` is out of range, expected 1bit to 1000gbit"));
    }
    Ok(bits as u64)
}

fn rate<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bits(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bits(0) => Err(serde::de::Error::custom("a rate of 0 passes nothing: expected at least 1 bit/s")),
        Raw::Bits(n) => Ok(Some(n)),
        Raw::Text(t) => parse_rate(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

/// A rate as people write it: `1mbit`, `512kbit`.
pub fn format_rate(bits: u64) -> String {
    for (unit, f) in [("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1_000)] {
        if bits >= f && bits.is_multiple_of(f) {
            return format!("{}{unit}", bits / f);
        }
    }
    format!("{bits}bit")
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(l) = self.latency {
            parts.push(format!("latency {}", humantime::format_duration(l)));
        }
        if let Some(j) = self.jitter {
            parts.push(format!("jitter {}", humantime::format_duration(j)));
        }
        if let Some(l) = self.loss {
            parts.push(format!("loss {l}%"));
        }
        if let Some(r) = self.rate {
            parts.push(format!("rate {}", format_rate(r)));
        }
        if let Some(d) = self.duplicate {
            parts.push(format!("duplicate {d}%"));
        }
        let dir = match self.direction {
            Direction::To => "to it",
            Direction::From => "from it",
            Direction::Both => "both ways",
        };
        write!(f, "{} ({dir}", parts.join(", "))?;
        if let Some(w) = &self.with {
            write!(f, ", link with {w} only")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_like_tc_writes_them() {
        assert_eq!(parse_rate("512kbit"), Ok(512_000));
        assert_eq!(parse_rate("1mbit"), Ok(1_000_000));
        assert_eq!(parse_rate("1.5Mbit"), Ok(1_500_000));
        assert_eq!(parse_rate("800"), Ok(800));
        assert!(parse_rate("1mb").unwrap_err().contains("unknown rate unit `mb`"));
        assert!(parse_rate("0bit").is_err());
        assert_eq!(format_rate(1_000_000), "1mbit");
        assert_eq!(format_rate(1_500_000), "1500kbit");
    }

    #[test]
    fn steps_are_checked_against_the_network() {
        let peers: Vec<String> = ["rust-1", "go-1", "go-2"].map(String::from).to_vec();
        let topics = vec!["meshgate".to_owned()];
        let check = |yaml: &str, named: &[&str]| {
            let step: Step = serde_saphyr::from_str(yaml).unwrap();
            let named: Vec<String> = named.iter().map(|s| s.to_string()).collect();
            step.check(&peers, &topics, &named)
        };
        assert_eq!(check("{at: 1s, do: {partition: [[rust-1], [go-1, go-2]]}}", &[]), Ok(()));
        assert_eq!(check("{peer: go-1, do: {shape: {latency: 300ms, with: rust-1}}}", &[]), Ok(()));
        let err = |yaml: &str, named: &[&str]| check(yaml, named).unwrap_err();
        assert!(err("{do: kill}", &[]).contains("`kill` is made to a peer: expected `peer: NAME`"));
        assert!(err("{peer: go-1, do: heal}", &[]).contains("made to the network"));
        assert!(err("{peer: go-9, do: kill}", &[]).contains("peer `go-9` is not a peer, expected one of: rust-1, go-1, go-2"));
        assert!(err("{do: {partition: [[rust-1], [rust-1, go-1]]}}", &[]).contains("`rust-1` is in two groups"));
        assert!(err("{do: {partition: [[rust-1, go-1]]}}", &[]).contains("at least two non-empty groups"));
        assert!(err("{peer: go-1, do: {shape: {direction: to}}}", &[]).contains("changes nothing"));
        assert!(err("{peer: go-1, do: {shape: {loss: 120}}}", &[]).contains("expected 0 to 100"));
        assert!(err("{peer: go-1, do: {shape: {latency: 1s, with: go-1}}}", &[]).contains("act on itself"));
        assert!(err("{peer: go-1, do: {unsubscribe: other}}", &[]).contains("topic `other`"));
        assert!(err("{after: {step: x}, peer: go-1, do: kill}", &["y"]).contains("names no earlier step, expected one of: y"));
        assert!(err("{name: y, peer: go-1, do: kill}", &["y"]).contains("comes earlier"));
        assert!(err("{every: 2s, peer: go-1, do: kill}", &[]).contains("without `times`"));
        assert!(err("{times: 3, peer: go-1, do: kill}", &[]).contains("without `every`"));
        assert!(err("{peer: go-1, do: kill, rejoin: none}", &[]).contains("`rejoin` applies to restart, resume and heal"));
        assert!(err("{after: {received: {peer: go-1, messages: 0}}, peer: go-1, do: kill}", &[]).contains("at least 1"));
    }

    #[test]
    fn steps_read_from_yaml() {
        let steps: Vec<Step> = serde_saphyr::from_str(
            "- {at: 2s, do: {partition: [[rust-1, go-1], [rust-2, go-2]]}}\n\
             - {name: cut, after: connected, peer: go-1, do: {shape: {latency: 300ms, loss: 20, rate: 1mbit, direction: to, with: rust-1}}}\n\
             - {after: {step: cut}, at: 1s, every: 2s, times: 3, peer: go-2, do: kill}\n\
             - {after: {received: {peer: go-1, messages: 10}}, peer: go-2, do: restart, rejoin: none}\n\
             - {peer: rust-1, do: {dial: {to: go-1, mode: new}}}\n\
             - {peer: rust-1, do: {publish: {messages: 20, interval: 50ms}}}\n",
        )
        .unwrap();
        assert_eq!(steps.len(), 6);
        assert_eq!(steps[0].action.name(), "partition");
        assert!(!steps[0].action.needs_peer());
        let Action::Shape(s) = &steps[1].action else { panic!() };
        assert_eq!(s.rate, Some(1_000_000));
        assert_eq!(s.direction, Direction::To);
        assert_eq!(s.to_string(), "latency 300ms, loss 20%, rate 1mbit (to it, link with rust-1 only)");
        assert_eq!(steps[2].after, Some(Condition::Step("cut".into())));
        assert_eq!(steps[3].rejoin, Rejoin::None);
        assert_eq!(steps[3].action.name(), "restart");
        let Action::Dial(d) = &steps[4].action else { panic!() };
        assert_eq!(d.mode, StepDial::New);
        let Action::Publish(b) = &steps[5].action else { panic!() };
        assert_eq!(b.interval, Duration::from_millis(50));
        // A step reads back from JSON as it was written (case.json keeps them).
        for s in &steps {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(&serde_json::from_str::<Step>(&json).unwrap(), s, "{json}");
        }
    }
}
