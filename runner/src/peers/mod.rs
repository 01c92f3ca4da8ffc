//! Carries out a case's scenario (`crate::scenario`): the setup (start, connect, subscribe, warm up), the time
//! line from the start of publishing (publishes, commands, faults), the drain, the stop. What the peers say comes in
//! through `ingest` and is taken into the record by `recorder`, whose listeners (the world's model, the live checks)
//! see it as it arrives; nothing here judges.

pub mod config;
mod drain;
pub use drain::Pending;
mod faults;
mod host;
pub use faults::tools_missing;
mod ingest;
mod kernel_view;
mod participants;
pub use participants::{external_ip, has_gateway};
mod recorder;
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, Output, PeerLaunch, PeerProcess};
use crate::cases::Case;
use crate::events::{now_micros, Command, CommandLine, Micros, Observation, PeerEvent, Recorded};
use crate::images::Recipes;
use crate::matrix::timeline::{Action, Condition, StepDial, Via};
use crate::matrix::DialMode;
use crate::scenario::{Phase, Scenario, Timed, What, When};
use crate::progress::Progress;
use crate::results::PeerReport;
use config::dial_addr;
use contract::commands::DialMode as Dial;
use ingest::PeerOutput;
use kernel_view::KernelView;
use recorder::{FailFast, Recorder};
use world::World;

/// How long peers get to start, and to exit after `stop`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Host samples (one a second) in a row that must show a machine keeping up before the time line starts, and the
/// longest wait for them.
const SETTLE_SAMPLES: usize = 2;
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// The longest the script may take after the warm-up: waiting for the host, every step of the time line (a step
/// after a condition waits at most a warm-up more), the drain, and a margin for the engine's calls.
fn script_bound(scenario: &Scenario, warmup: Duration) -> Duration {
    let mut span = Duration::ZERO;
    let mut conditional = Duration::ZERO;
    for t in &scenario.timeline {
        match &t.when {
            When::At(d) => span = span.max(*d),
            When::After { plus, .. } => conditional += warmup + *plus,
        }
    }
    SETTLE_LIMIT + span + conditional + scenario.drain + Duration::from_secs(120)
}

/// How long the engine may take to report the exits of `n` peers that said they stopped, all exiting at once.
fn exit_grace(n: usize) -> Duration {
    Duration::from_secs(30) + Duration::from_millis(150) * n as u32
}
/// The peer id of identity seed 0 (docs/peer-contract.md), which no peer of a case has: `dial: wrong-peer-id`.
const SEED_0_PEER_ID: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
/// Longest a write of one command to a peer may take: a peer reads its commands at once.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often, at most, the checks are asked during the drain whether they still wait: what they say is computed
/// over the whole record.
const DRAIN_POLL_US: Micros = 100_000;
/// Arrivals taken in at most after the one that woke the driver, before it looks at its tick and deadline again.
const INBOX_BATCH: usize = 256;
/// Output of peer (or participant) `.0`, taken off its stream at `.1`.
type Arrival = (usize, Micros, Output);

/// Moves one process's output to the inbox, stamping each piece as it comes.
async fn forward(i: usize, mut output: mpsc::Receiver<Output>, inbox: mpsc::UnboundedSender<Arrival>) {
    while let Some(o) = output.recv().await {
        if inbox.send((i, now_micros(), o)).is_err() {
            break;
        }
    }
}

/// Runs the runner's own work on what it took in (taking lines in, looking over the record: up to hundreds of
/// milliseconds at 200 peers) at the normal priority (`priority`), and with the runtime told, so that the tasks
/// waiting on this thread (the peers' output pumps, which stamp their lines) move to another meanwhile instead of
/// waiting, late, behind it.
fn working<T>(work: impl FnOnce() -> T) -> T {
    let work = || crate::priority::normal_while(work);
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// How often the live checks and the faults in force are looked at: failures are announced within this.
const TICK: Duration = Duration::from_millis(500);
/// Edges of the topology dialed at once during the warm-up. A few hundred handshakes at the same instant (a
/// 200-peer network has 600 edges) made dials time out on two cores: the harness's burst, not the libraries'
/// doing. An edge stops counting once both ends report it, its dials failed, or [`DIAL_PATIENCE`] passed.
const DIALS_IN_FLIGHT: usize = 32;
const DIAL_PATIENCE: Duration = Duration::from_secs(10);

/// What running a case produced.
pub struct CaseRecord {
    pub record: Vec<Recorded>,
    pub peers: Vec<PeerReport>,
    /// The case could not be carried out (peers did not start, the engine failed, ...).
    pub error: Option<String>,
    /// A peer said it cannot do what the case needs.
    pub unsupported: Option<String>,
    /// The script stopped at the first failure (`--fail-fast`); the record is complete up to there.
    pub stopped_early: Option<String>,
    /// Failures the checks saw while the case ran, with when they were seen.
    pub live_failures: Vec<(crate::events::Micros, String)>,
    /// What the runner changed to run the case at all.
    pub notes: Vec<String>,
}

/// A wait ran out of time. During the warm-up that is the network's verdict, not the runner's failure.
#[derive(Debug, thiserror::Error)]
#[error("timed out waiting for {0}")]
struct TimedOut(String);

/// A check as the driver sees it while a case runs: it is shown every observation as it arrives and says when the
/// case already fails (for progress lines and `--fail-fast`). The checks implement it; the driver knows no check.
pub trait Watch: Send {
    fn name(&self) -> &'static str;
    fn observe(&mut self, rec: &Recorded);
    /// Why the case already fails at `now`, if it does.
    fn failing(&self, case: &Case, peers: &[PeerReport], now: crate::events::Micros) -> Option<String>;
    /// Once the time line is done: what the check still waits for at `now` before its verdict is settled.
    fn pending(&self, case: &Case, peers: &[PeerReport], now: crate::events::Micros) -> Option<Pending>;
}

/// Awaits an engine call, unless the case is cancelled first (a hung engine must not outlive the case).
async fn bounded<T>(
    cancel: CancellationToken,
    call: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        r = call => r,
        _ = cancel.cancelled() => bail!("interrupted"),
    }
}

struct Peer {
    name: String,
    process: Option<PeerProcess>,
    image: String,
    /// It stopped reading its stdin: it gets no more commands.
    deaf: bool,
}

/// Carries out a case's scenario: the only part that acts. What the peers say comes in through `ingest`, is taken
/// into the record by `recorder` (whose listeners are the world's model and the live checks), and the driver waits
/// on the world for what it needs next.
pub struct Driver<'a, B: Backend> {
    backend: &'a B,
    case_index: usize,
    case: &'a Case,
    peers: Vec<Peer>,
    rec: Recorder<'a>,
    outputs: Vec<PeerOutput>,
    /// Every peer's and participant's output, stamped with when it arrived: a line waiting here while the
    /// checks take a look has arrived all the same, and its harness lag is the transport's, not the look's.
    /// Unbounded so that a long look never holds the stamping back (a bounded inbox filled in a second at 200
    /// peers, and every line after it was stamped late by the look's length); the backlog lives only as long as
    /// the look, and each process's own channel still bounds what its reader takes from the engine.
    inbox: mpsc::UnboundedReceiver<Arrival>,
    inbox_tx: mpsc::UnboundedSender<Arrival>,
    cancel: CancellationToken,
    dir: PathBuf,
    /// Ticks when the live checks and the faults are due for another look.
    ticker: tokio::time::Interval,
    /// Over TCP, the kernel's view of each peer's connections, read on a thread of its own; its reads arrive on
    /// `kernel_reads`.
    kernel: Option<KernelView>,
    kernel_reads: mpsc::UnboundedReceiver<(usize, Observation)>,
    commands_sent: u64,
    /// What the runner changed to run the case (an edge dialed the other way round, ...).
    notes: Vec<String>,
    /// (peer, topic) for every topic a peer was last told to subscribe to: what it rejoins after a restart.
    subscribed: BTreeSet<(usize, String)>,
    /// Network faults in force (and what the case holds in the peers' namespaces: multicast routes, refusals).
    in_force: Vec<faults::InForce>,
    /// The case's UPnP gateway emulator, once started.
    gateway: Option<participants::Participant>,
}

impl<'a, B: Backend> Driver<'a, B> {
    pub fn new(
        backend: &'a B,
        case_index: usize,
        case: &'a Case,
        dir: &Path,
        cancel: CancellationToken,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let (kernel_tx, kernel_reads) = mpsc::unbounded_channel();
        let mut peers = Vec::new();
        let mut outputs = Vec::new();
        for spec in &case.peers {
            peers.push(Peer {
                name: spec.name.clone(),
                process: None,
                image: String::new(),
                deaf: false,
            });
            outputs.push(PeerOutput::create(dir, &spec.name)?);
        }
        Ok(Self {
            backend,
            case_index,
            case,
            rec: Recorder::new(case.peers.iter().map(|p| p.name.clone()).collect()),
            peers,
            outputs,
            inbox,
            inbox_tx,
            cancel,
            dir: dir.to_owned(),
            ticker: {
                let mut i = tokio::time::interval(TICK);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                i
            },
            // QUIC runs over UDP, where the kernel keeps no connections to compare with.
            kernel: (case.transport == crate::matrix::Transport::Tcp).then(|| KernelView::start(kernel_tx)),
            kernel_reads,
            commands_sent: 0,
            notes: Vec::new(),
            subscribed: BTreeSet::new(),
            in_force: Vec::new(),
            gateway: None,
        })
    }

    /// What watches the case while it runs, where its failures are announced, and whether the first one stops
    /// the case.
    pub fn with_live(mut self, live: Vec<Box<dyn Watch>>, progress: &'a Progress, fail_fast: bool) -> Self {
        self.rec.with_live(live, progress, fail_fast);
        self.rec.sample_host(host::Sampler::start());
        self
    }

    /// Replaces the token that interrupts the script.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Runs the whole script. Always returns the record, with the reason when the script could not finish.
    pub async fn run(mut self, recipes: &Recipes) -> CaseRecord {
        let mut result = self.script(recipes).await;
        let mut stopped_early = None;
        if let Err(e) = &result {
            if let Some(f) = e.downcast_ref::<FailFast>() {
                stopped_early = Some(f.to_string());
                result = Ok(());
            }
        }
        // Whatever happened, faults are lifted and paused peers thawed, then peers still running are stopped, then
        // killed, so their exit is on record; the live checks look no more.
        self.rec.stop_watching();
        let undone = self.lift_all().await;
        self.resume_all().await;
        self.stop_all().await;
        self.stop_participants().await;
        let mut error = result.err().map(|e| format!("{e:#}"));
        if let Some(u) = undone {
            error.get_or_insert(u);
        }
        let unsupported = self.rec.world.unsupported.clone();
        if unsupported.is_some() {
            error = None;
        }
        if let Err(e) = self.write_record() {
            error.get_or_insert(format!("cannot write the record: {e}"));
        }
        self.notes.extend(beyond_the_contract(&self.rec.record));
        CaseRecord {
            notes: std::mem::take(&mut self.notes),
            stopped_early,
            live_failures: std::mem::take(&mut self.rec.live_failures),
            peers: self.peer_reports(),
            record: self.rec.record,
            error,
            unsupported,
        }
    }

    async fn script(&mut self, recipes: &Recipes) -> anyhow::Result<()> {
        let case = self.case;
        let backend = self.backend;
        // What the case holds in the peers' namespaces needs the tools faults are made with: else it is skipped.
        if let Some(why) = self.cannot_hold() {
            self.rec.world.unsupported.get_or_insert(why.clone());
            bail!("unsupported: {why}");
        }
        // Not raced against Ctrl-C: an engine that got the request creates the network even when the runner stops
        // waiting, after the case's clean-up has looked for it. The call is bounded by the backend's own timeout.
        let created = backend.create_network(self.case_index, &case.name).await;
        created?;
        if self.cancel.is_cancelled() {
            bail!("interrupted");
        }
        self.start_participants().await?;
        if let Some(u) = &self.rec.world.unsupported {
            bail!("unsupported: {u}");
        }
        let scenario = Scenario::of(case);
        // Connecting and subscribing share the warm-up: it starts with the first dial.
        let mut warmup_deadline = Instant::now() + case.warmup;
        for phase in &scenario.setup {
            match phase {
                Phase::Start => {
                    self.start_all(recipes).await?;
                    // A fault that cannot be made here skips the case: it is never judged without its faults.
                    if let Some(why) = self.cannot_make(&scenario) {
                        self.rec.world.unsupported.get_or_insert(why);
                    }
                    if let Some(u) = &self.rec.world.unsupported {
                        bail!("unsupported: {u}");
                    }
                }
                Phase::Connect => {
                    warmup_deadline = Instant::now() + case.warmup;
                    self.connect_all(warmup_deadline).await?;
                }
                Phase::Subscribe => self.subscribe_all(warmup_deadline).await?,
            }
        }
        // Everything after the warm-up has a length known in advance: a script still running well past it is a
        // fault of meshgate's, said as one (the case errors, naming where it was), never a wait for the case timeout.
        let bound = script_bound(&scenario, case.warmup);
        let phase = std::sync::Mutex::new("waiting for the host to keep up");
        let rest = async {
            self.settle_host().await?;
            *phase.lock().unwrap_or_else(|e| e.into_inner()) = "running the time line";
            tracing::debug!(case = %case.name, "time line");
            self.run_timeline(&scenario).await?;
            *phase.lock().unwrap_or_else(|e| e.into_inner()) = "draining";
            tracing::debug!(case = %case.name, "drain");
            self.drain(scenario.drain).await?;
            *phase.lock().unwrap_or_else(|e| e.into_inner()) = "taking the last look at the kernel's sockets";
            tracing::debug!(case = %case.name, "last look at the kernel's sockets");
            self.last_kernel_look().await;
            tracing::debug!(case = %case.name, "script done");
            anyhow::Ok(())
        };
        match tokio::time::timeout(bound, rest).await {
            Ok(r) => r,
            Err(_) => bail!(
                "harness fault: the case's script was still {} {} s after the warm-up, longer than its time line \
                 and drain can take; the peers were stopped there",
                phase.into_inner().unwrap_or_else(|e| e.into_inner()),
                bound.as_secs()
            ),
        }
    }

    /// Before the time line: lets the warm-up's burst pass (a large case's hundreds of handshakes, subscriptions
    /// and meshes at once saturate a small machine for some seconds), so that what the time line measures does
    /// not start on a machine that cannot keep up. Waits until the host keeps up for [`SETTLE_SAMPLES`] samples
    /// in a row, at most [`SETTLE_LIMIT`]; a wait of note is said in the case's notes.
    async fn settle_host(&mut self) -> anyhow::Result<()> {
        let start = Instant::now();
        let limit = start + SETTLE_LIMIT;
        loop {
            if self.rec.host_keeps_up(SETTLE_SAMPLES) != Some(false) {
                break;
            }
            if Instant::now() >= limit {
                self.notes.push(format!(
                    "the host was still saturated {} after the warm-up: the time line started anyway",
                    humantime::format_duration(SETTLE_LIMIT)
                ));
                return Ok(());
            }
            self.pump_until((Instant::now() + Duration::from_millis(200)).min(limit)).await?;
        }
        let waited = start.elapsed();
        tracing::debug!(waited_ms = waited.as_millis() as u64, "the host keeps up: the time line starts");
        if waited >= Duration::from_secs(2) {
            self.notes.push(format!(
                "the time line started {} s after the warm-up, once the host kept up again",
                waited.as_secs()
            ));
        }
        Ok(())
    }

    /// Starts every peer, then waits until each has said who it is and where it listens, or has exited.
    async fn start_all(&mut self, recipes: &Recipes) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        let case = self.case;
        let backend = self.backend;
        let mut launches = Vec::with_capacity(case.peers.len());
        for (i, spec) in case.peers.iter().enumerate() {
            let recipe = recipes
                .get(&spec.build)
                .ok_or_else(|| anyhow!("no image for {}", spec.implementation))?
                .clone();
            self.peers[i].image = recipe.image_tag();
            let launch = PeerLaunch {
                name: spec.name.clone(),
                recipe,
                config: config::for_peer(case, i),
                limits: case.limits,
                cancel: self.cancel.clone(),
            };
            launches.push((i, launch));
        }
        // Several at once (the engine's calls overlap), taken in order, while what the started ones say is taken
        // into the record as it comes: a peer started early is never left writing into a pipe nobody reads.
        let case_index = self.case_index;
        let mut starting = futures_util::stream::iter(launches.into_iter().map(|(i, launch)| async move {
            (i, backend.start_peer(case_index, launch).await)
        }))
        .buffered(backend.starts_at_once().max(1));
        // Each start is bounded by the backend; this only keeps the loop's own wait finite.
        let far = Instant::now() + START_TIMEOUT * case.peers.len().max(1) as u32;
        loop {
            tokio::select! {
                biased;
                started = starting.next() => match started {
                    Some((i, process)) => {
                        self.attach(i, process?);
                        // At once, before it searches for a gateway or anyone dials it.
                        self.confine(i).await?;
                    }
                    None => break,
                },
                // `step` answers Ctrl-C too.
                timed_out = self.step(far) => if timed_out? {
                    bail!("starting {} peers did not end", case.peers.len());
                },
            }
        }
        let n = case.peers.len();
        // From here on, what the network does is the peers' verdict: a wait that runs out goes on with what is
        // there, and the checks (connectivity, liveness, ...) say what it led to.
        let waited = self
            .wait_until(START_TIMEOUT, "every peer to start and listen", |w| {
                w.gave_up() || (0..n).all(|i| w.ready(i) || w.exited(i))
            })
            .await;
        self.go_on(waited)
    }

    /// Takes a started process of peer `i`: its output goes to the inbox, tagged with the peer.
    fn attach(&mut self, i: usize, mut process: PeerProcess) {
        let output = std::mem::replace(&mut process.output, mpsc::channel(1).1);
        tokio::spawn(forward(i, output, self.inbox_tx.clone()));
        if let Some(k) = &self.kernel {
            if let Some(controller) = process.controller {
                k.not_a_peer(controller);
            }
            k.watch(i, process.pid);
        }
        self.peers[i].process = Some(process);
        self.peers[i].deaf = false;
    }

    /// Dials along the topology's edges, at most [`DIALS_IN_FLIGHT`] at once, and waits, within the warm-up, for
    /// both ends of each to report it.
    async fn connect_all(&mut self, warmup_deadline: Instant) -> anyhow::Result<()> {
        let case = self.case;
        let mut plan: std::collections::VecDeque<_> = self.dial_plan().into();
        // Edges dialed and not yet settled: (a, b, the dials' cmd_ids, when they were sent).
        let mut in_flight: Vec<(usize, usize, Vec<String>, Instant)> = Vec::new();
        loop {
            let world = &self.rec.world;
            in_flight.retain(|(a, b, ids, sent)| {
                !(world.connected(*a, *b) && world.connected(*b, *a)
                    || ids.iter().all(|id| world.command_failed(id))
                    || !world.up(*a)
                    || !world.up(*b)
                    || sent.elapsed() >= DIAL_PATIENCE)
            });
            // Past the warm-up every edge left is dialed at once: the checks judge what it led to.
            let room = match Instant::now() >= warmup_deadline {
                true => usize::MAX,
                false => DIALS_IN_FLIGHT.saturating_sub(in_flight.len()),
            };
            for _ in 0..room {
                let Some((a, b, mode)) = plan.pop_front() else { break };
                if let Some(ids) = self.dial_edge(a, b, mode).await {
                    in_flight.push((a, b, ids, Instant::now()));
                }
            }
            if plan.is_empty() {
                break;
            }
            // Until something arrives or a tick passes (a dial's patience is measured at ticks).
            let until = (Instant::now() + TICK).min(warmup_deadline.max(Instant::now()));
            self.step(until).await?;
        }
        let edges = case.edges.clone();
        let waited = self
            .wait_until_instant(
                warmup_deadline,
                "every edge of the topology to connect",
                |w| all_connected(w, &edges),
            )
            .await;
        self.go_on(waited)
    }

    /// Sends the dial (or dials) of one edge of the topology; `None` when an end is not ready to be dialed.
    async fn dial_edge(&mut self, a: usize, b: usize, mode: Dial) -> Option<Vec<String>> {
        let case = self.case;
        if !self.rec.world.ready(a) || !self.rec.world.ready(b) {
            return None;
        }
        let addr = match case.dial {
            DialMode::WrongPeerId => {
                let proc = self.peers[b].process.as_ref().expect("started");
                dial_addr(case, proc.address, SEED_0_PEER_ID)
            }
            _ => self.dial_addr_of(b),
        };
        // A simultaneous dial may lose its race: its error is expected.
        let racing = case.dial == DialMode::Simultaneous;
        // The negative control's dial must fail: that error is its point, judged by `connectivity`.
        let doomed = racing || case.dial == DialMode::WrongPeerId;
        let mut ids = Vec::new();
        for _ in 0..case.dials {
            let dial = Command::Dial {
                addr: addr.clone(),
                mode,
            };
            ids.push(self.send(a, dial, doomed).await);
        }
        if racing {
            // The other end dials back at once: both dials are in flight together.
            let back = self.dial_addr_of(a);
            let dial = Command::Dial {
                addr: back,
                mode: Dial::Dedup,
            };
            ids.push(self.send(b, dial, true).await);
        }
        Some(ids)
    }

    /// Subscribes everyone to every topic, then gives meshes until the end of the warm-up to form.
    async fn subscribe_all(&mut self, warmup_deadline: Instant) -> anyhow::Result<()> {
        let case = self.case;
        for i in 0..case.peers.len() {
            for topic in &case.gossipsub.topics {
                let topic = topic.clone();
                self.send(i, Command::Subscribe { topic }, false).await;
            }
        }
        let waited = self
            .wait_until_instant(warmup_deadline, "subscriptions and meshes to form", |w| {
                meshed(w, case)
            })
            .await;
        self.go_on(waited)
    }

    /// Carries out the time line from the start of publishing: each step when its time comes or its condition
    /// holds. Steps whose condition has not held by the time every other step is done get one warm-up more,
    /// then are recorded as not run, with why.
    async fn run_timeline(&mut self, scenario: &Scenario) -> anyhow::Result<()> {
        let case = self.case;
        let start = Instant::now();
        let received_before: Vec<u64> = (0..case.peers.len()).map(|i| self.rec.world.received(i)).collect();
        let mut timed: std::collections::VecDeque<&Timed> = scenario
            .timeline
            .iter()
            .filter(|t| matches!(t.when, When::At(_)))
            .collect();
        let mut waiting: Vec<&Timed> = scenario
            .timeline
            .iter()
            .filter(|t| matches!(t.when, When::After { .. }))
            .collect();
        // When each condition first held, and how many repetitions of each named step are done.
        let mut held: Vec<(Condition, Instant)> = Vec::new();
        let mut done: BTreeMap<String, usize> = BTreeMap::new();
        // Peers a step was made to: their publishes may fail (no peers left to publish to), as intended.
        let mut disturbed = vec![false; case.peers.len()];
        let mut last_progress = start;
        loop {
            let now = Instant::now();
            for t in &waiting {
                let When::After { condition, .. } = &t.when else { continue };
                if held.iter().all(|(c, _)| c != condition)
                    && self.holds(condition, scenario, &done, &received_before)
                {
                    held.push((condition.clone(), now));
                }
            }
            let due_of = |t: &Timed| match &t.when {
                When::At(d) => Some(start + *d),
                When::After { condition, plus } => held
                    .iter()
                    .find(|(c, _)| c == condition)
                    .map(|(_, at)| *at + *plus),
            };
            // The earliest step due now: the time-ordered queue's head, or a waiting step whose condition held.
            let head = timed.front().and_then(|t| due_of(t));
            let ready = waiting
                .iter()
                .enumerate()
                .filter_map(|(k, t)| due_of(t).map(|d| (d, k)))
                .min();
            let next = match (head, ready) {
                (Some(h), Some((r, k))) if r < h => Some((r, Some(k))),
                (Some(h), _) => Some((h, None)),
                (None, Some((r, k))) => Some((r, Some(k))),
                (None, None) => None,
            };
            match next {
                Some((due, which)) if due <= now => {
                    let t = match which {
                        Some(k) => waiting.remove(k),
                        None => timed.pop_front().expect("a head"),
                    };
                    self.carry_out(t, &mut disturbed).await?;
                    if let Some(name) = t.origin.step_name() {
                        *done.entry(name.to_owned()).or_default() += 1;
                    }
                    last_progress = Instant::now();
                }
                // One observation at a time until it is due: a waiting step's condition may hold before.
                Some((due, _)) => {
                    self.step(due).await?;
                }
                None if waiting.is_empty() => return Ok(()),
                None => {
                    // Only steps whose conditions have not held are left: they get one warm-up more.
                    let give_up = last_progress + case.warmup;
                    if now >= give_up {
                        for t in std::mem::take(&mut waiting) {
                            let When::After { condition, .. } = &t.when else { continue };
                            let peer = match &t.what {
                                What::Publish { peer, .. } | What::Request { peer, .. } | What::Peer { peer, .. } => *peer,
                                What::Network(_) => 0,
                            };
                            let reason = format!(
                                "its condition ({}) did not hold within {} of the step before",
                                describe_condition(condition),
                                humantime::format_duration(case.warmup)
                            );
                            self.observe(
                                peer,
                                Observation::NotRun {
                                    step: t.origin.label(),
                                    reason,
                                },
                            );
                        }
                        return Ok(());
                    }
                    // Conditions are looked at again after every observation.
                    self.step(give_up).await?;
                }
            }
        }
    }

    /// Whether a step's condition holds now.
    fn holds(
        &self,
        condition: &Condition,
        scenario: &Scenario,
        done: &BTreeMap<String, usize>,
        received_before: &[u64],
    ) -> bool {
        let case = self.case;
        match condition {
            Condition::Connected => all_connected(&self.rec.world, &case.edges),
            Condition::Meshed => meshed(&self.rec.world, case),
            Condition::Step(name) => done.get(name).copied().unwrap_or(0) >= scenario.count_of(name),
            Condition::Received { peer, messages } => case
                .peers
                .iter()
                .position(|p| &p.name == peer)
                .is_some_and(|i| self.rec.world.received(i) - received_before[i] >= u64::from(*messages)),
        }
    }

    /// Carries out one step of the time line.
    async fn carry_out(&mut self, t: &Timed, disturbed: &mut [bool]) -> anyhow::Result<()> {
        let (peer, action) = match &t.what {
            What::Publish {
                peer,
                topic,
                id,
                size,
            } => {
                // A peer that is down publishes nothing: nothing is expected of a message never sent.
                if self.rec.world.exited(*peer) || self.rec.world.paused[*peer] {
                    return Ok(());
                }
                let publish = Command::Publish {
                    topic: topic.clone(),
                    id: id.clone(),
                    size: (*size).into(),
                };
                self.send(*peer, publish, disturbed[*peer] || t.expect_error).await;
                return Ok(());
            }
            What::Request { peer, to, id, size, via } => return self.request(*peer, *to, id, *size, *via, t).await,
            What::Network(action) => return self.network_fault(action, t).await,
            What::Peer { peer, action } => (*peer, action),
        };
        disturbed[peer] = true;
        let command = match action {
            Action::Unsubscribe(topic) => Command::Unsubscribe {
                topic: topic.clone(),
            },
            Action::Subscribe(topic) => Command::Subscribe {
                topic: topic.clone(),
            },
            Action::Disconnect(target) if target == "all" => Command::Disconnect { peer: None },
            Action::Disconnect(target) | Action::OpenStreams { to: target, .. } => {
                let Some(id) = self.rec.world.peer_id(self.index_of(target)).map(str::to_owned) else {
                    return self.not_run(peer, t, format!("{target} never said its peer id"));
                };
                match action {
                    Action::OpenStreams { count, .. } => Command::OpenStreams { peer: id, count: *count },
                    _ => Command::Disconnect { peer: Some(id) },
                }
            }
            Action::Dial(d) => {
                let to = self.index_of(&d.to);
                if self.rec.world.peer_id(to).is_none() {
                    return self.not_run(peer, t, format!("{} never said its peer id", d.to));
                }
                let mode = match d.mode {
                    StepDial::Dedup => Dial::Dedup,
                    StepDial::New => Dial::New,
                };
                Command::Dial {
                    addr: self.dial_addr_of(to),
                    mode,
                }
            }
            Action::DropProtocol(protocol) => Command::DropProtocol {
                protocol: protocol.clone(),
            },
            Action::Publish(_) => unreachable!("a burst is its messages (scenario)"),
            Action::Request(_) => unreachable!("a request step is its requests (scenario)"),
            Action::AutonatProbe(p) => {
                let server = self.index_of(&p.server);
                let Some(id) = self.rec.world.peer_id(server).map(str::to_owned) else {
                    return self.not_run(peer, t, format!("{} never said its peer id", p.server));
                };
                Command::AutonatProbe {
                    server: id,
                    addr: (p.via == Via::Address).then(|| self.listen_addr_of(server)),
                    version: config::autonat_version_of(p.version),
                    vanish: p.vanish,
                }
            }
            Action::CutOff => {
                // Not a command to the peer: the backend pulls its cable.
                self.observe(
                    peer,
                    Observation::Incident {
                        what: "cut off from the network".into(),
                    },
                );
                let id = self.peers[peer]
                    .process
                    .as_ref()
                    .map(|p| p.id.clone())
                    .unwrap_or_default();
                let backend = self.backend;
                bounded(self.cancel.clone(), backend.isolate(self.case_index, &id)).await?;
                return Ok(());
            }
            fault => return self.peer_fault(peer, fault, t).await,
        };
        self.send(peer, command, t.expect_error).await;
        Ok(())
    }

    /// Sends one request of a `request` step; with `via: address` the command carries the responder's address, so
    /// that the requester's library dials it by itself.
    async fn request(&mut self, peer: usize, to: usize, id: &str, size: u64, via: Via, t: &Timed) -> anyhow::Result<()> {
        let name = &self.case.peers[peer].name;
        if self.rec.world.exited(peer) || self.rec.world.paused[peer] {
            return self.not_run(peer, t, format!("{name} is not running"));
        }
        let Some(remote) = self.rec.world.peer_id(to).map(str::to_owned) else {
            let to = self.case.peers[to].name.clone();
            return self.not_run(peer, t, format!("{to} never said its peer id"));
        };
        let command = Command::Request {
            peer: remote,
            addr: (via == Via::Address).then(|| self.listen_addr_of(to)),
            id: id.to_owned(),
            size,
        };
        self.send(peer, command, t.expect_error).await;
        Ok(())
    }

    /// Records that a step could not be carried out, and why.
    fn not_run(&mut self, peer: usize, t: &Timed, reason: String) -> anyhow::Result<()> {
        self.observe(
            peer,
            Observation::NotRun {
                step: t.origin.label(),
                reason,
            },
        );
        Ok(())
    }

    /// Who dials whom, in which mode. With `dial: new`, the end of an edge that can force a new connection dials
    /// it (peers announce `dial-mode-new` in `started`); where neither end can, the edge is dialed deduplicated
    /// and the case says so.
    fn dial_plan(&mut self) -> Vec<(usize, usize, contract::commands::DialMode)> {
        let case = self.case;
        let mut plan = Vec::new();
        for &(a, b) in &case.edges {
            if case.dial != DialMode::New {
                plan.push((a, b, Dial::Dedup));
                continue;
            }
            let can = |i: usize| self.rec.world.may_do(i, contract::features::DIAL_MODE_NEW);
            let (na, nb) = (&case.peers[a].name, &case.peers[b].name);
            if can(a) {
                plan.push((a, b, Dial::New));
            } else if can(b) {
                self.notes.push(format!(
                    "{nb} dials {na} (not the other way round): {na} cannot force a new connection"
                ));
                plan.push((b, a, Dial::New));
            } else {
                self.notes.push(format!(
                    "{na} dials {nb} deduplicated: neither can force a new connection"
                ));
                plan.push((a, b, Dial::Dedup));
            }
        }
        plan
    }

    /// A wait that ran out of time is not the runner's failure: the case goes on with what is there, and its notes
    /// say where each peer stood.
    fn go_on(&mut self, waited: anyhow::Result<()>) -> anyhow::Result<()> {
        match waited {
            Err(e) if e.is::<TimedOut>() => {
                self.notes.push(format!("the warm-up went on without: {e}"));
                Ok(())
            }
            other => other,
        }
    }

    fn listen_addr_of(&self, i: usize) -> String {
        let proc = self.peers[i].process.as_ref().expect("started");
        config::listen_addr(self.case, proc.address)
    }

    fn dial_addr_of(&self, i: usize) -> String {
        let proc = self.peers[i].process.as_ref().expect("started");
        dial_addr(self.case, proc.address, self.rec.world.peer_id(i).expect("ready"))
    }

    /// Thaws every paused peer, so that it can hear `stop`.
    async fn resume_all(&mut self) {
        for i in 0..self.peers.len() {
            if self.rec.world.paused[i] {
                if let Some(id) = self.peers[i].process.as_ref().map(|p| p.id.clone()) {
                    if let Err(e) = self.backend.resume(&id).await {
                        tracing::warn!("resuming {}: {e:#}", self.peers[i].name);
                    }
                }
                self.rec.world.paused[i] = false;
            }
        }
    }

    /// Sends `stop` to every running peer, waits for them to exit, and kills those that do not. A peer has
    /// `STOP_TIMEOUT` to say `stopped` (or exit); once it said so, its exit is the engine's to report, which takes
    /// longer when a large case's containers all exit at once (200 of them: about 15 s here), so it is given
    /// `exit_grace` more before it is killed.
    async fn stop_all(&mut self) {
        // A cancelled run still stops its peers and waits for the exits: they belong in the record. The stops are
        // written under a token of their own, or a write would end as "cancelled" before it began and the peer,
        // never told, would be killed for not stopping.
        let cancel = std::mem::replace(&mut self.cancel, CancellationToken::new());
        for i in 0..self.peers.len() {
            if self.peers[i].process.is_some() && !self.rec.world.exited(i) {
                self.rec.world.stop_sent[i] = true;
                self.send(i, Command::Stop, false).await;
            }
        }
        let started: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.peers[i].process.is_some())
            .collect();
        let all_exited = |w: &World| started.iter().all(|&i| w.exited(i));
        let all_stopping = |w: &World| started.iter().all(|&i| w.exited(i) || w.said_stopped(i));
        let _ = self.wait_until(STOP_TIMEOUT, "peers to stop", all_stopping).await;
        self.kill_running(&started, |w, i| !w.said_stopped(i), &format!("did not exit within {} s of stop", STOP_TIMEOUT.as_secs()))
            .await;
        let grace = exit_grace(started.len());
        if self.wait_until(grace, "peers to exit", all_exited).await.is_err() {
            let reason = format!("said it stopped, but did not exit within {} s more", grace.as_secs());
            self.kill_running(&started, |_, _| true, &reason).await;
            let _ = self
                .wait_until(Duration::from_secs(5), "killed peers to exit", all_exited)
                .await;
        }
        self.cancel = cancel;
    }

    /// Kills the peers of `started` still running that `which` picks, recording why.
    async fn kill_running(&mut self, started: &[usize], which: impl Fn(&World, usize) -> bool, reason: &str) {
        for &i in started {
            if self.rec.world.exited(i) || !which(&self.rec.world, i) {
                continue;
            }
            self.rec.world.stop_sent[i] = true;
            self.observe(i, Observation::Killed { reason: reason.to_owned() });
            if let Some(id) = self.peers[i].process.as_ref().map(|p| p.id.clone()) {
                self.backend.kill(&id).await;
            }
        }
    }

    /// Writes one command to a peer, with a `cmd_id` of its own, and records it. A write that does not finish
    /// (the peer stopped reading) is bounded: the command is recorded as undelivered and the peer gets no more.
    async fn send(&mut self, i: usize, command: Command, expect_error: bool) -> String {
        match &command {
            Command::Subscribe { topic } => {
                self.subscribed.insert((i, topic.clone()));
            }
            Command::Unsubscribe { topic } => {
                self.subscribed.remove(&(i, topic.clone()));
            }
            _ => {}
        }
        self.commands_sent += 1;
        let cmd_id = format!("c{}", self.commands_sent);
        let command = CommandLine {
            command,
            cmd_id: Some(cmd_id.clone()),
        };
        let line = command.to_json();
        self.observe(
            i,
            Observation::Command {
                command,
                expect_error,
            },
        );
        // A frozen peer reads nothing: a write would fill its pipe and make it look deaf.
        if self.rec.world.exited(i) || self.peers[i].deaf || self.rec.world.paused[i] {
            return cmd_id;
        }
        let Some(p) = self.peers[i].process.as_mut() else {
            return cmd_id;
        };
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        let write = async {
            p.stdin.write_all(&bytes).await?;
            p.stdin.flush().await
        };
        let undelivered = tokio::select! {
            r = tokio::time::timeout(WRITE_TIMEOUT, write) => match r {
                // A peer that is gone cannot read: its exit is on record already or will be.
                Ok(_) => None,
                Err(_) => Some(format!(
                    "stopped reading its commands: writing to its stdin did not finish within {} s",
                    WRITE_TIMEOUT.as_secs()
                )),
            },
            _ = self.cancel.cancelled() => Some("the case was cancelled while writing to the peer".to_owned()),
        };
        if let Some(reason) = undelivered {
            self.peers[i].deaf = true;
            self.observe(i, Observation::Undelivered { cmd_id: cmd_id.clone(), reason });
        }
        cmd_id
    }

    /// Every sampling period: the faults still work, the kernel's view of connections, then the live checks.
    fn on_tick(&mut self) -> anyhow::Result<()> {
        if let Some(why) = self.broken_fault() {
            bail!("{why}");
        }
        // Said once: the stop that follows still waits for everyone's exit.
        if let Some(why) = self.gateway.as_mut().and_then(|g| g.failed.take()) {
            bail!("{why}");
        }
        // The case folder's logs stay at most a tick behind what was read (for whoever watches them).
        for output in &mut self.outputs {
            output.flush();
        }
        let peers = self.peer_reports();
        working(|| self.rec.watch(self.case, &peers))?;
        Ok(())
    }

    fn observe(&mut self, i: usize, what: Observation) {
        self.rec.observe(i, what);
    }

    /// Before the peers stop: the kernel's view of every peer that reported a change since its last read, so a
    /// disagreement going on at the end is seen twice or not at all.
    async fn last_kernel_look(&mut self) {
        let Some(k) = &self.kernel else { return };
        k.settle().await;
        while let Ok((i, o)) = self.kernel_reads.try_recv() {
            self.observe(i, o);
        }
    }

    fn handle(&mut self, (i, at, output): Arrival) {
        if i == participants::PARTICIPANT {
            return self.handle_participant(at, output);
        }
        let stop_sent = self.rec.world.stop_sent[i];
        for o in self.outputs[i].observations(output, stop_sent) {
            if let Some(k) = &self.kernel {
                match &o {
                    Observation::Event { line }
                        if matches!(
                            line.event,
                            PeerEvent::ConnectionOpened { .. } | PeerEvent::ConnectionClosed { .. }
                        ) =>
                    {
                        k.changed(i)
                    }
                    Observation::Exited { .. } => k.forget(i),
                    _ => {}
                }
            }
            self.rec.observe_at(i, at, o);
        }
    }

    /// Handles the next thing to happen: a line from a peer, a sampling tick, or the deadline (then `true`). A
    /// deadline that has passed comes first: on a busy host the peers' lines may never stop coming long enough
    /// for it to be noticed otherwise (a 200-peer case once listened four minutes past its drain).
    async fn step(&mut self, deadline: Instant) -> anyhow::Result<bool> {
        if Instant::now() >= deadline {
            return Ok(true);
        }
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => bail!("interrupted"),
            msg = self.inbox.recv() => match msg {
                Some(arrival) => working(|| {
                    self.handle(arrival);
                    // What else arrived meanwhile is taken in one go: a wake-up (and a `select!`) per line costs
                    // the runner more than the line at 200 peers. Bounded, so a tick or the deadline is not
                    // held up by peers that never stop writing.
                    for _ in 0..INBOX_BATCH {
                        let Ok(arrival) = self.inbox.try_recv() else { break };
                        self.handle(arrival);
                    }
                }),
                None => bail!("lost every peer's output"),
            },
            Some((i, o)) = self.kernel_reads.recv() => self.observe(i, o),
            _ = self.ticker.tick() => self.on_tick()?,
            _ = tokio::time::sleep_until(deadline) => return Ok(true),
        }
        Ok(false)
    }

    async fn pump_until(&mut self, deadline: Instant) -> anyhow::Result<()> {
        while !self.step(deadline).await? {}
        Ok(())
    }

    /// Listens after the time line until no check waits for anything more, and at most `drain`; what the drain cut
    /// short is noted.
    async fn drain(&mut self, drain: Duration) -> anyhow::Result<()> {
        let drain_end = now_micros() + drain.as_micros() as Micros;
        loop {
            let now = now_micros();
            let peers = self.peer_reports();
            let asked = std::time::Instant::now();
            let pending = working(|| self.rec.pending(self.case, &peers, now));
            // Asking looks over the whole record: a large case is asked less often (see `recorder::LOOK_SHARE`).
            let poll = DRAIN_POLL_US.max((asked.elapsed() * recorder::LOOK_SHARE).as_micros() as Micros);
            tracing::debug!(
                pending = ?pending.iter().map(|(n, p)| format!("{n}: {} until {}", p.what, p.until)).collect::<Vec<_>>(),
                now,
                drain_end,
                asked_ms = asked.elapsed().as_millis() as u64,
                "drain"
            );
            let until = match drain::next(now, drain_end, &pending) {
                drain::Next::Listen(until) => until,
                drain::Next::Stop { cut } => {
                    if !cut.is_empty() {
                        self.notes.push(format!(
                            "the drain ({}) ended the case while checks still waited: {}",
                            humantime::format_duration(drain),
                            cut.join("; ")
                        ));
                    }
                    return Ok(());
                }
            };
            // Asked again when the wait is over, or after a poll period in which something arrived.
            let seen = self.rec.record.len();
            loop {
                let now = now_micros();
                let wake = until.min(now + poll);
                self.pump_until(Instant::now() + Duration::from_micros(wake.saturating_sub(now) as u64)).await?;
                tracing::trace!(until, wake, now = now_micros(), seen, recorded = self.rec.record.len(), "drain: listened");
                if now_micros() >= until || self.rec.record.len() != seen {
                    break;
                }
            }
        }
    }

    async fn wait_until(
        &mut self,
        within: Duration,
        what: &str,
        done: impl Fn(&World) -> bool,
    ) -> anyhow::Result<()> {
        self.wait_until_instant(Instant::now() + within, what, done)
            .await
    }

    /// Records output until `done` holds, or fails at the deadline naming what did not happen.
    async fn wait_until_instant(
        &mut self,
        deadline: Instant,
        what: &str,
        done: impl Fn(&World) -> bool,
    ) -> anyhow::Result<()> {
        while !done(&self.rec.world) {
            if self.step(deadline).await? {
                // What already arrived is looked at before the wait is called failed.
                for _ in 0..self.inbox.len() {
                    let Ok(arrival) = self.inbox.try_recv() else { break };
                    self.handle(arrival);
                }
                if done(&self.rec.world) {
                    break;
                }
                let state = self.rec.world.describe_wait(&self.peer_names());
                return Err(TimedOut(format!("{what}: {state}")).into());
            }
        }
        Ok(())
    }

    fn peer_names(&self) -> Vec<String> {
        self.peers.iter().map(|p| p.name.clone()).collect()
    }

    fn peer_reports(&self) -> Vec<PeerReport> {
        self.case
            .peers
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let started = self.rec.world.started[i].clone();
                PeerReport {
                    name: spec.name.clone(),
                    implementation: spec.implementation.clone(),
                    library: started.as_ref().map(|s| s.0.clone()),
                    versions: started.map(|s| s.1).unwrap_or_default(),
                    peer_id: self.rec.world.peer_id(i).map(str::to_owned),
                    image: self.peers[i].image.clone(),
                    exit_code: self.rec.world.exit_code[i],
                }
            })
            .collect()
    }

    fn write_record(&self) -> std::io::Result<()> {
        crate::stored::write_record(&self.dir, &self.rec.record)
    }
}
/// Whether both ends of every edge whose peers run report the connection.
fn all_connected(w: &World, edges: &[(usize, usize)]) -> bool {
    edges
        .iter()
        .all(|&(a, b)| !w.up(a) || !w.up(b) || (w.connected(a, b) && w.connected(b, a)))
}

/// Whether the ends of every edge see each other subscribed to every topic, and every running peer on an edge has a
/// mesh.
fn meshed(w: &World, case: &Case) -> bool {
    let topics = &case.gossipsub.topics;
    case.edges.iter().all(|&(a, b)| {
        !w.up(a)
            || !w.up(b)
            || topics
                .iter()
                .all(|t| w.sees_subscribed(a, b, t) && w.sees_subscribed(b, a, t))
    }) && (0..case.peers.len()).all(|i| {
        // A peer on no edge has no neighbour to mesh with (`edges: []`).
        let linked = case.edges.iter().any(|&(a, b)| a == i || b == i);
        !w.up(i) || !linked || topics.iter().all(|t| w.mesh_size(i, t) > 0)
    })
}

fn describe_condition(c: &Condition) -> String {
    match c {
        Condition::Connected => "every edge connected".into(),
        Condition::Meshed => "meshes formed".into(),
        Condition::Step(name) => format!("step `{name}` done"),
        Condition::Received { peer, messages } => format!("{peer} received {messages} message(s)"),
    }
}

/// One note per peer that wrote lines beyond the contract this runner knows (a newer peer's events or fields):
/// not failures, but a maintainer should know that part of what the peer said was not judged.
fn beyond_the_contract(record: &[Recorded]) -> Vec<String> {
    let mut by_peer: BTreeMap<&str, (usize, String)> = BTreeMap::new();
    let mut revisions: BTreeMap<&str, u32> = BTreeMap::new();
    for rec in record {
        match &rec.what {
            Observation::Unknown {
                stream,
                line_no,
                what,
                ..
            } => {
                let seen = by_peer
                    .entry(&rec.peer)
                    .or_insert_with(|| (0, format!("{stream} line {line_no}: {what}")));
                seen.0 += 1;
            }
            Observation::Event { line } => {
                if let crate::events::PeerEvent::Started {
                    contract_version: Some(v),
                    ..
                } = line.event
                {
                    revisions.insert(&rec.peer, v);
                }
            }
            _ => {}
        }
    }
    by_peer
        .into_iter()
        .map(|(peer, (n, first))| {
            let speaks = revisions
                .get(peer)
                .map(|v| format!(", it speaks revision {v}"))
                .unwrap_or_default();
            format!(
                "{peer} wrote {n} line(s) beyond the peer contract this runner knows (revision {}{speaks}), \
                 recorded but not judged; first, {first}",
                contract::VERSION
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Kit;

    #[test]
    fn lines_beyond_the_contract_are_noted_once_per_peer() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let unknown = |line_no| Recorded {
            at: 1,
            peer: "go-1".into(),
            what: Observation::Unknown {
                stream: crate::events::Stream::EventsFile,
                line_no,
                line: String::new(),
                what: "fields it does not know: hops".into(),
            },
        };
        let started = kit.event(
            0,
            "go-1",
            crate::events::PeerEvent::Started {
                implementation: "go-libp2p".into(),
                versions: Default::default(),
                features: None,
                contract_version: Some(contract::VERSION + 1),
            },
        );
        let notes = beyond_the_contract(&[started, unknown(4), unknown(9)]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        let n = &notes[0];
        assert!(n.starts_with("go-1 wrote 2 line(s) beyond the peer contract"), "{n}");
        assert!(n.contains(&format!("it speaks revision {}", contract::VERSION + 1)), "{n}");
        assert!(n.contains("events file line 4: fields it does not know: hops"), "{n}");
        assert!(beyond_the_contract(&[]).is_empty());
    }
}
