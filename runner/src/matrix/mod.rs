//! The matrix file: what the user asks for, as written in YAML (docs/matrix.md). This module holds its model, the
//! plain serde data of a file, and [`Matrix::load`], the entry point.
//!
//! Parsing is strict (unknown keys are errors) and every error names the file, line and column. Semantic checks
//! that serde cannot do (unknown implementation names, impossible counts) happen in [`Matrix::load`] too (`validate`),
//! using the spans that serde-saphyr records; the versions a matrix may ask for are in `versions`.

mod axis;
pub mod checks;
pub mod roles;
pub mod timeline;
pub mod resolve;
mod validate;
mod versions;

pub use axis::Axis;
pub use roles::{Gateway, Roles};
pub use timeline::Action;
pub use versions::{check_version, oldest_line, VersionValue};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;


/// A matrix as loaded from a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub implementations: Vec<Spanned<Implementation>>,
    /// Checks for every network, unless a network overrides one. Absent: every check with its defaults.
    #[serde(default)]
    pub checks: Option<checks::Settings>,
    pub networks: Vec<Spanned<Network>>,
    /// Keep only the cases that match one of these rules (absent: every case).
    #[serde(default)]
    pub include: Vec<Spanned<Rule>>,
    /// Then drop the cases that match any of these rules.
    #[serde(default)]
    pub exclude: Vec<Spanned<Rule>>,
    /// Checks known to fail in some cases, each with its upstream reference.
    #[serde(default)]
    pub known_issues: Vec<Spanned<KnownIssue>>,
    /// What the registries said, once loaded: `latest` and `newest: N` resolved, companions derived.
    #[serde(skip)]
    pub releases: resolve::Resolved,
}

/// Selects cases: axis name (`transport`, `network`, an implementation's name for its version, ...) to the values
/// it matches. A case matches when every axis named has one of the values.
pub type Rule = BTreeMap<String, Axis<String>>;

/// The axes a rule may name besides the implementations' names.
pub const RULE_AXES: &[&str] = &[
    "network",
    "transport",
    "security",
    "muxer",
    "dial",
    "topology",
];

/// Whether a case, by its axis values, matches a rule. On a version axis (an implementation's name), a release line
/// matches each of its releases: `0.54` matches `=0.54.1`, `v0.38` matches `v0.38.2`, so that rules keep matching
/// the versions `latest` and `newest: N` resolve to.
pub fn rule_matches(rule: &Rule, axes: &BTreeMap<String, String>) -> bool {
    rule.iter().all(|(axis, Axis(values))| {
        let version_axis = !RULE_AXES.contains(&axis.as_str());
        axes.get(axis).is_some_and(|v| {
            let v = v.trim_start_matches('=');
            values.iter().any(|x| {
                let x = x.trim_start_matches('=');
                x == v || (version_axis && v.strip_prefix(x).is_some_and(|rest| rest.starts_with('.')))
            })
        })
    })
}

/// A check expected to fail for a known reason. It then reports as skipped with the reference; when it passes
/// instead, it fails the case, so that the known issue gets closed.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KnownIssue {
    /// Where the issue is tracked: `rust-libp2p#6047`, a URL.
    pub reference: String,
    /// The check it makes fail.
    pub check: String,
    /// The cases it affects (absent: every case).
    #[serde(default)]
    pub cases: Option<Rule>,
    #[serde(default)]
    pub note: Option<String>,
    /// The failure depends on timing and does not show on every run: a pass is then no sign of a fix, and stays a
    /// pass (saying the issue did not show) instead of failing as "no longer reproduces".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub intermittent: bool,
    /// A consequence of other known issues: the failure counts as known only in a case where one of the checks
    /// named here failed as known too (duplicate connections, then lost messages). Alone, it is a failure like any
    /// other; a pass stays a pass, since the cause may not have shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follows: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Implementation {
    /// How cases and peers refer to it (`rust`, `go`, `rust-rc`, …).
    pub name: String,
    pub language: Language,
    /// Library versions to build; a list makes the implementation an axis. Absent: the version in the tree.
    /// rust: a libp2p release (`0.54` … `0.57`, or exact `=0.55.0`); go: a go-libp2p module version (`v0.38.2` …);
    /// either: `latest` or `{newest: N}`, resolved from the registry when the matrix is loaded.
    #[serde(default)]
    pub version: Option<Axis<VersionValue>>,
    /// A local checkout to build against instead of the released library (a release candidate): rust-libp2p,
    /// applied as `[patch.crates-io]`; go-libp2p, applied with a `replace` directive. Relative to the matrix file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Exact versions of sub-libraries. rust: crate name to version (`libp2p-gossipsub: 0.47.0`, applied with
    /// `cargo update --precise`); go: `go-libp2p-pubsub` and `go-yamux` to module versions. go-libp2p-pubsub may
    /// be `latest`, `{newest: N}` or a list: an axis of its own.
    #[serde(default)]
    pub pins: BTreeMap<String, Axis<VersionValue>>,
    /// The pins that are axes (a list or a request as written): their value names the case.
    #[serde(skip)]
    pub pin_axes: std::collections::BTreeSet<String>,
    /// With `language: image`: the local image to run (nothing is pulled; build or load it first).
    #[serde(default)]
    pub image: Option<String>,
    /// With `language: image`: whether `meshgate run` probes the image against the peer contract before its cases
    /// (default true; `false` for a test double that does not speak all of it on purpose).
    #[serde(default = "yes")]
    pub probe: bool,
    /// Security protocols and muxers this implementation's peers offer, in preference order, instead of the
    /// network's single `security` / `muxer` value (TCP only; QUIC has its own).
    #[serde(default)]
    pub offer: Option<Offer>,
}

/// What a peer offers in the handshake, in preference order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Vec<Security>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muxer: Option<Vec<Muxer>>,
}

fn yes() -> bool {
    true
}

/// The go sub-libraries a matrix may pin (`pins:`), besides go-libp2p itself (`version:`).
pub const GO_PINNABLE: &[&str] = &["go-libp2p-pubsub", "go-yamux"];

impl Implementation {
    /// The versions to build, `None` standing for the one in the tree (once resolved: requests are left out).
    pub fn versions(&self) -> Vec<Option<String>> {
        match &self.version {
            Some(Axis(v)) => v.iter().filter_map(|v| v.exact()).map(|v| Some(v.to_owned())).collect(),
            None => vec![None],
        }
    }

    /// Every combination of the pins' values (once resolved), the pins that are axes varying.
    pub fn pin_combinations(&self) -> Vec<BTreeMap<String, String>> {
        let mut combos = vec![BTreeMap::new()];
        for (name, Axis(values)) in &self.pins {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().filter_map(|v| v.exact()).map(move |v| {
                        let mut c = c.clone();
                        c.insert(name.clone(), v.to_owned());
                        c
                    })
                })
                .collect();
        }
        combos
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Language {
    Rust,
    Go,
    /// A prebuilt local image that speaks the peer contract: a third implementation (js, nim, a fork).
    Image,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    /// How many peers of each implementation, by implementation name.
    pub peers: Spanned<BTreeMap<String, u32>>,
    #[serde(default)]
    pub topology: Topology,
    #[serde(default = "Axis::tcp")]
    pub transport: Axis<Transport>,
    #[serde(default = "Axis::noise")]
    pub security: Axis<Security>,
    #[serde(default = "Axis::yamux")]
    pub muxer: Axis<Muxer>,
    /// `simultaneous` makes both ends of every edge dial each other at once.
    #[serde(default = "Axis::dedup")]
    pub dial: Axis<DialMode>,
    /// How many times each edge is dialed (with `dial: new`, that many connections).
    #[serde(default = "defaults::dials")]
    pub dials: u32,
    #[serde(default)]
    pub gossipsub: Gossipsub,
    #[serde(default = "defaults::publish")]
    pub publish: Spanned<Publish>,
    /// Longest wait for connections, subscriptions and meshes to form before publishing starts.
    #[serde(default = "defaults::warmup", with = "humantime_serde")]
    pub warmup: Duration,
    /// The longest wait after the time line: the case stops sooner once no check waits for anything more.
    #[serde(default = "defaults::drain", with = "humantime_serde")]
    pub drain: Duration,
    /// Things made to go wrong on purpose, at times relative to the start of publishing (time line steps written
    /// the older way).
    #[serde(default)]
    pub incidents: Vec<Spanned<Incident>>,
    /// Steps at offsets from the start of publishing or after conditions: commands to peers and faults.
    #[serde(default)]
    pub timeline: Vec<Spanned<timeline::Step>>,
    /// Overrides of the matrix-level check settings, check by check.
    #[serde(default)]
    pub checks: Option<checks::Settings>,
    /// What each peer of the network may use; absent keys take the defaults.
    #[serde(default)]
    pub limits: Limits,
    /// What peers do besides gossipsub, by implementation name or peer name (`roles::resolve`).
    #[serde(default)]
    pub roles: roles::RolesMap,
    /// A UPnP gateway emulator in the case network (absent: none).
    #[serde(default)]
    pub gateway: Option<Gateway>,
    /// Peers whose inbound connections the runner's firewall refuses from their start (by name): what AutoNAT
    /// clients must conclude about them.
    #[serde(default = "defaults::private")]
    pub private: Spanned<Vec<String>>,
}

/// What each peer may use, enforced from outside the peer: a container's cgroup, or a local process's cgroup where
/// the machine has one to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory the peer may use (resident, page cache included); beyond it the kernel kills the peer.
    #[serde(default = "defaults::memory", deserialize_with = "memory_limit")]
    pub memory: Size,
    /// Processes and threads the peer may run at once.
    #[serde(default = "defaults::pids", deserialize_with = "at_least_one")]
    pub pids: u64,
    /// Threads each peer's runtime runs its tasks on (go's `GOMAXPROCS`, tokio's worker threads); `None`: the
    /// library's default, one per core. One models single-core nodes. (At 200 peers on two cores it did not make
    /// the network faster: docs/benchmarks.md.)
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "threads")]
    pub threads: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: defaults::memory(),
            pids: defaults::pids(),
            threads: None,
        }
    }
}

impl Limits {
    /// The environment that tells each implementation's runtime how many threads to run on: go reads
    /// `GOMAXPROCS` and tokio's multi-threaded runtime reads `TOKIO_WORKER_THREADS` (the rust peer takes 1 to mean
    /// its current-thread runtime), so no peer needs a setting of its own.
    pub fn runtime_env(&self) -> Vec<String> {
        self.threads
            .map(|n| vec![format!("GOMAXPROCS={n}"), format!("TOKIO_WORKER_THREADS={n}")])
            .unwrap_or_default()
    }
}

fn threads<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match u32::deserialize(d)? {
        0 => Err(serde::de::Error::custom(
            "0 threads leave a peer's runtime nothing to run on: expected at least 1",
        )),
        n => Ok(Some(n)),
    }
}

fn at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match u64::deserialize(d)? {
        0 => Err(serde::de::Error::custom(
            "a pids limit of 0 leaves a peer no process: expected at least 1",
        )),
        n => Ok(n),
    }
}

/// A number of bytes, written `512MiB`, `64 KiB`, `1GiB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

/// The least memory a peer may be given: the Docker engine refuses containers with less than 6 MiB.
pub const MIN_MEMORY: u64 = 6 << 20;

const UNITS: &[(&str, u64)] = &[
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

impl std::str::FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = (&t[..digits], t[digits..].trim_start());
        let expected = "expected a size like 256MiB (a whole number of B, KiB, MiB or GiB)";
        let n: u64 = number
            .parse()
            .map_err(|_| format!("size `{text}`: {expected}"))?;
        let scale = match unit {
            "" => 1,
            u => UNITS
                .iter()
                .find(|(name, _)| *name == u)
                .map(|(_, s)| *s)
                .ok_or_else(|| format!("size `{text}` has unit `{u}`: {expected}"))?,
        };
        n.checked_mul(scale)
            .map(Size)
            .ok_or_else(|| format!("size `{text}` is too large"))
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&format_bytes(self.0))
    }
}

/// Bytes for people, in the largest unit they reach: exact when it divides them (`256 MiB`), else to a tenth
/// (`7.9 MiB`).
pub fn format_bytes(bytes: u64) -> String {
    match UNITS.iter().find(|(_, scale)| bytes >= *scale) {
        Some(&(name, scale)) if bytes.is_multiple_of(scale) => format!("{} {name}", bytes / scale),
        Some(&(name, scale)) => format!("{:.1} {name}", bytes as f64 / scale as f64),
        None => "0 B".to_owned(),
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        let size = match Written::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a size like 256MiB (a whole number of B, KiB, MiB or GiB)",
            )
        })? {
            Written::Bytes(n) => Size(n),
            Written::Text(t) => t.parse().map_err(serde::de::Error::custom)?,
        };
        Ok(size)
    }
}

fn memory_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
    let size = Size::deserialize(d)?;
    if size.0 < MIN_MEMORY {
        return Err(serde::de::Error::custom(format!(
            "memory limit {size} is below {}, the least the Docker engine accepts",
            Size(MIN_MEMORY)
        )));
    }
    Ok(size)
}

impl serde::Serialize for Size {
    /// Exact (`512MiB`, else bytes), unlike Display's tenths, so that a stored case reads back the same.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match UNITS.iter().find(|(_, scale)| self.0 >= *scale && self.0.is_multiple_of(*scale)) {
            Some((name, scale)) => s.serialize_str(&format!("{}{name}", self.0 / scale)),
            None => s.serialize_u64(self.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Topology {
    /// Every peer dials every later peer.
    #[default]
    FullMesh,
    /// Peer i dials peer i+1, the last dials the first.
    Ring,
    /// The first peer is dialed by every other.
    Star,
    /// A ring (so that the network is connected), plus random edges until every peer has `degree` neighbours;
    /// the same seed gives the same network.
    Random { degree: usize, seed: u64 },
    /// Exactly these dials, by peer name: `[dialer, dialed]`.
    Edges(Vec<(String, String)>),
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Topology::FullMesh => f.write_str("full-mesh"),
            Topology::Ring => f.write_str("ring"),
            Topology::Star => f.write_str("star"),
            Topology::Random { degree, seed } => write!(f, "random-d{degree}-s{seed}"),
            Topology::Edges(e) => write!(f, "edges-{}", e.len()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Transport {
    #[serde(rename = "tcp")]
    Tcp,
    #[serde(rename = "quic-v1")]
    QuicV1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Security {
    Noise,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Muxer {
    Yamux,
    Mplex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DialMode {
    /// Connect unless already connected or dialing.
    Dedup,
    /// Always open a new connection.
    New,
    /// Both ends dial each other at the same moment (deduplicating).
    Simultaneous,
    /// A negative control: dial the listener's address with a peer id that is not the listener's (seed 0's, which
    /// no peer of a case has), so the security handshake must fail and the edge never connects.
    WrongPeerId,
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Gossipsub {
    #[serde(default = "defaults::topics")]
    pub topics: Vec<String>,
    pub d: Option<u32>,
    pub d_lo: Option<u32>,
    pub d_hi: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub heartbeat: Option<Duration>,
    pub max_transmit_size: Option<u64>,
    /// How message ids are made; both sides must agree for gossip (IHAVE/IWANT) to match across them.
    #[serde(default)]
    pub message_id: MessageId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageId {
    /// The library's: source peer id and sequence number.
    #[default]
    Default,
    /// Hex SHA-256 of the message data, the same in every implementation.
    ContentSha256,
}

impl Default for Gossipsub {
    fn default() -> Self {
        Self {
            topics: defaults::topics(),
            d: None,
            d_lo: None,
            d_hi: None,
            heartbeat: None,
            max_transmit_size: None,
            message_id: MessageId::Default,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// Messages each publishing peer publishes on each topic.
    #[serde(default = "defaults::messages")]
    pub messages: u32,
    #[serde(default = "defaults::interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Payload bytes.
    #[serde(default = "defaults::size")]
    pub size: u32,
    /// Peer names that publish (`rust-1`, `go-2`, …); absent: every peer.
    #[serde(default)]
    pub publishers: Option<Vec<String>>,
}

impl Default for Publish {
    fn default() -> Self {
        Self {
            messages: defaults::messages(),
            interval: defaults::interval(),
            size: defaults::size(),
            publishers: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    /// When, counted from the start of publishing.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// The peer it happens to, by name (`go-2`).
    pub peer: String,
    pub action: Action,
    /// The peer is expected to answer the incident's command with an `error` (it is then not a failure).
    #[serde(default)]
    pub expect_error: bool,
}

impl Incident {
    /// The time line step it is.
    pub fn as_step(&self) -> timeline::Step {
        timeline::Step {
            name: None,
            at: Some(self.at),
            after: None,
            every: None,
            times: None,
            peer: Some(self.peer.clone()),
            action: self.action.clone(),
            rejoin: Default::default(),
            expect_error: self.expect_error,
        }
    }
}

/// The YAML spelling of a settings enum value.
pub fn label<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Matrix {
    /// The checks of a network: the defaults, changed by the matrix's `checks` entries, then by the network's.
    pub fn checks_of(&self, net: &Network) -> checks::Settings {
        let top = self.checks.clone().unwrap_or_default();
        match &net.checks {
            Some(over) => top.overridden_by(over),
            None => top,
        }
    }
}

mod defaults {
    use std::time::Duration;

    pub fn publish() -> serde_saphyr::Spanned<super::Publish> {
        let unknown = serde_saphyr::Location::UNKNOWN;
        serde_saphyr::Spanned { value: Default::default(), referenced: unknown, defined: unknown }
    }

    pub fn private() -> serde_saphyr::Spanned<Vec<String>> {
        let unknown = serde_saphyr::Location::UNKNOWN;
        serde_saphyr::Spanned { value: Vec::new(), referenced: unknown, defined: unknown }
    }

    pub fn topics() -> Vec<String> {
        vec!["meshgate".into()]
    }
    pub fn dials() -> u32 {
        1
    }
    pub fn messages() -> u32 {
        5
    }
    pub fn interval() -> Duration {
        Duration::from_millis(200)
    }
    pub fn size() -> u32 {
        256
    }
    pub fn warmup() -> Duration {
        Duration::from_secs(20)
    }
    pub fn drain() -> Duration {
        Duration::from_secs(3)
    }
    pub fn memory() -> super::Size {
        super::Size(super::DEFAULT_MEMORY)
    }
    pub fn pids() -> u64 {
        super::DEFAULT_PIDS
    }
}

// The defaults, as measured on a 2-core 24 GiB machine (Docker, cgroup v1, peak `memory.max_usage_in_bytes` and
// `pids.current`): runner/tests/matrices/unsubscribe.yaml (3 peers, 128 B messages, the size of the repository's
// matrices) used 5-9 MiB per peer; a deliberately heavy 12-peer full mesh publishing 256 KiB messages 10 times a
// second from every peer peaked at 69-118 MiB; no peer ran more than 8 threads. 128 MiB is over 10x the usual
// and above the heaviest seen, and 200 peers at 128 MiB are 25 GiB: only if every peer of a run sat at its limit
// at once would they fill the machine. 128 pids is 16x the threads seen, and 200 peers at 128 stay below the
// kernel's default pid_max (32768), so that no runaway peer can exhaust the machine's processes. Heavier networks
// say so with `limits`.

/// Default memory limit of a peer.
pub const DEFAULT_MEMORY: u64 = 128 << 20;
/// Default pids limit of a peer (processes and threads).
pub const DEFAULT_PIDS: u64 = 128;

/// A matrix file could not be used. Displays as `file:line:column: what was expected`.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct MatrixError {
    pub file: PathBuf,
    pub location: Option<(u64, u64)>,
    pub message: String,
}

impl Matrix {
    /// Reads, parses and validates a matrix file.
    /// Reads a matrix and resolves its versions from this machine's registries (`resolve`).
    pub fn load(path: &Path) -> Result<Self, MatrixError> {
        Self::load_with(path, &crate::releases::Registries::from_env())
    }

    pub fn load_with(path: &Path, registries: &crate::releases::Registries) -> Result<Self, MatrixError> {
        let text = std::fs::read_to_string(path).map_err(|e| MatrixError {
            file: path.to_owned(),
            location: None,
            message: format!("cannot read the matrix file: {e}"),
        })?;
        let mut m = Self::parse(path, &text)?;
        m.resolve(path, registries)?;
        Ok(m)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, MatrixError> {
        let mut matrix: Matrix = serde_saphyr::from_str(text).map_err(|e| {
            let location = e.location().map(|l| (l.line(), l.column()));
            // serde-saphyr renders `error: line L column C: message` and a snippet; the location is ours to print.
            let rendered = e.to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let message = match (location, first.split_once(": ")) {
                (Some((l, c)), Some((prefix, rest)))
                    if prefix == format!("line {l} column {c}") =>
                {
                    rest.to_owned()
                }
                _ => first.to_owned(),
            };
            MatrixError {
                file: path.to_owned(),
                location,
                message,
            }
        })?;
        // Checkout paths are relative to the matrix file, wherever meshgate runs from.
        let base = path.parent().unwrap_or(Path::new("."));
        for imp in &mut matrix.implementations {
            // A pin written as a list or a request is an axis: its value names the case.
            let axes: Vec<String> = imp
                .value
                .pins
                .iter()
                .filter(|(_, Axis(v))| v.len() > 1 || v.iter().any(|v| v.exact().is_none()))
                .map(|(k, _)| k.clone())
                .collect();
            imp.value.pin_axes.extend(axes);
            if let Some(p) = &mut imp.value.path {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        matrix.validate(path)?;
        Ok(matrix)
    }


    pub fn implementation(&self, name: &str) -> Option<&Implementation> {
        self.implementations
            .iter()
            .map(|s| &s.value)
            .find(|i| i.name == name)
    }
}

/// The peer names of a network, in order: `<implementation>-<n>` counting from 1, implementations in the order the
/// matrix lists them in `peers`.
pub fn peer_names(net: &Network) -> Vec<String> {
    net.peers
        .value
        .iter()
        .flat_map(|(imp, count)| (1..=*count).map(move |i| format!("{imp}-{i}")))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
