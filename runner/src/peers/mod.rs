//! Drives the peers of one case through the script every case follows: start, connect, subscribe, warm up,
//! publish (with the case's incidents), drain, stop. Everything the peers say is recorded, in arrival order,
//! for the checks; nothing here judges.

pub mod config;
mod world;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, Output, PeerLaunch, PeerProcess};
use crate::cases::Case;
use crate::events::{now_micros, Command, CommandLine, Line, Observation, Recorded};
use crate::images::Recipes;
use crate::matrix::{Action, DialMode};
use crate::progress::Progress;
use crate::results::PeerReport;
use config::dial_addr;
use contract::commands::DialMode as Dial;
use world::World;

/// How long peers get to start, and to exit after `stop`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The peer id of identity seed 0 (docs/peer-contract.md), which no peer of a case has: `dial: wrong-peer-id`.
const SEED_0_PEER_ID: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
/// Longest a write of one command to a peer may take: a peer reads its commands at once.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the kernel's TCP connections of every peer are read.
const SOCKET_SAMPLING: Duration = Duration::from_millis(500);

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

/// A check failed while the case ran, and the run was asked to stop there.
#[derive(Debug, thiserror::Error)]
#[error("stopped at the first failure (--fail-fast): {0}")]
struct FailFast(String);

struct Peer {
    name: String,
    process: Option<PeerProcess>,
    image: String,
    stdout_lines: u64,
    /// It stopped reading its stdin: it gets no more commands.
    deaf: bool,
    /// Its kernel view could not be read (recorded once).
    sockets_unavailable: bool,
    events_log: std::fs::File,
    stderr_log: std::fs::File,
}

pub struct Driver<'a, B: Backend> {
    backend: &'a B,
    case_index: usize,
    case: &'a Case,
    peers: Vec<Peer>,
    world: World,
    record: Vec<Recorded>,
    inbox: mpsc::Receiver<(usize, Output)>,
    inbox_tx: mpsc::Sender<(usize, Output)>,
    cancel: CancellationToken,
    dir: PathBuf,
    /// Ticks when the kernel's view of the peers' connections is due for another look.
    sampler: tokio::time::Interval,
    /// The last kernel view recorded per peer, so that only changes are recorded.
    sockets: Vec<Option<Vec<String>>>,
    /// The case's checks, fed as observations arrive, so a failure is known while the case runs.
    live: Vec<Box<dyn Watch>>,
    live_failures: Vec<(crate::events::Micros, String)>,
    /// Checks already seen failing (each is announced once).
    announced: Vec<&'static str>,
    fail_fast: bool,
    progress: Option<&'a Progress>,
    commands_sent: u64,
    /// What the runner changed to run the case (an edge dialed the other way round, ...).
    notes: Vec<String>,
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
        let (inbox_tx, inbox) = mpsc::channel(4096);
        let mut peers = Vec::new();
        for spec in &case.peers {
            peers.push(Peer {
                name: spec.name.clone(),
                process: None,
                image: String::new(),
                stdout_lines: 0,
                deaf: false,
                sockets_unavailable: false,
                events_log: std::fs::File::create(dir.join(format!("{}.events.jsonl", spec.name)))?,
                stderr_log: std::fs::File::create(dir.join(format!("{}.stderr", spec.name)))?,
            });
        }
        Ok(Self {
            backend,
            case_index,
            case,
            world: World::new(case.peers.len()),
            peers,
            record: Vec::new(),
            inbox,
            inbox_tx,
            cancel,
            dir: dir.to_owned(),
            sampler: {
                let mut i = tokio::time::interval(SOCKET_SAMPLING);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                i
            },
            sockets: vec![None; case.peers.len()],
            live: Vec::new(),
            live_failures: Vec::new(),
            announced: Vec::new(),
            fail_fast: false,
            progress: None,
            commands_sent: 0,
            notes: Vec::new(),
        })
    }

    /// What watches the case while it runs, where its failures are announced, and whether the first one stops
    /// the case.
    pub fn with_live(mut self, live: Vec<Box<dyn Watch>>, progress: &'a Progress, fail_fast: bool) -> Self {
        self.live = live;
        self.progress = Some(progress);
        self.fail_fast = fail_fast;
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
        // Whatever happened, peers still running are stopped, then killed, so their exit is on record.
        self.stop_all().await;
        let mut error = result.err().map(|e| format!("{e:#}"));
        let unsupported = self.world.unsupported.clone();
        if unsupported.is_some() {
            error = None;
        }
        if let Err(e) = self.write_record() {
            error.get_or_insert(format!("cannot write the record: {e}"));
        }
        self.notes.extend(beyond_the_contract(&self.record));
        CaseRecord {
            notes: std::mem::take(&mut self.notes),
            stopped_early,
            live_failures: std::mem::take(&mut self.live_failures),
            peers: self.peer_reports(),
            record: self.record,
            error,
            unsupported,
        }
    }

    async fn script(&mut self, recipes: &Recipes) -> anyhow::Result<()> {
        let case = self.case;
        let backend = self.backend;
        bounded(self.cancel.clone(), backend.create_network(self.case_index, &case.name))
            .await?;

        // Start every peer, then wait until each has said who it is and where it lists, or has exited.
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
            let mut process =
                bounded(self.cancel.clone(), backend.start_peer(self.case_index, launch)).await?;
            let mut output = std::mem::replace(&mut process.output, mpsc::channel(1).1);
            let tx = self.inbox_tx.clone();
            tokio::spawn(async move {
                while let Some(o) = output.recv().await {
                    if tx.send((i, o)).await.is_err() {
                        break;
                    }
                }
            });
            self.peers[i].process = Some(process);
        }
        let n = case.peers.len();
        // From here on, what the network does is the peers' verdict: a wait that runs out goes on with what is
        // there, and the checks (connectivity, liveness, ...) say what it led to.
        let waited = self
            .wait_until(START_TIMEOUT, "every peer to start and listen", |w| {
                w.gave_up() || (0..n).all(|i| w.ready(i) || w.exited(i))
            })
            .await;
        self.go_on(waited)?;
        if let Some(u) = &self.world.unsupported {
            bail!("unsupported: {u}");
        }

        // Connect along the topology's edges.
        let warmup_deadline = Instant::now() + case.warmup;
        for (a, b, mode) in self.dial_plan() {
            if !self.world.ready(a) || !self.world.ready(b) {
                continue;
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
            for _ in 0..case.dials {
                let dial = Command::Dial {
                    addr: addr.clone(),
                    mode,
                };
                self.send(a, dial, doomed).await;
            }
            if racing {
                // The other end dials back at once: both dials are in flight together.
                let back = self.dial_addr_of(a);
                let dial = Command::Dial {
                    addr: back,
                    mode: Dial::Dedup,
                };
                self.send(b, dial, true).await;
            }
        }
        let edges = case.edges.clone();
        let waited = self
            .wait_until_instant(
                warmup_deadline,
                "every edge of the topology to connect",
                |w| {
                    edges.iter().all(|&(a, b)| {
                        !w.up(a) || !w.up(b) || (w.connected(a, b) && w.connected(b, a))
                    })
                },
            )
            .await;
        self.go_on(waited)?;

        // Subscribe everyone, then give meshes until the end of the warm-up to form.
        for i in 0..n {
            for topic in &case.gossipsub.topics {
                let topic = topic.clone();
                self.send(i, Command::Subscribe { topic }, false).await;
            }
        }
        let topics = case.gossipsub.topics.clone();
        let waited = self
            .wait_until_instant(warmup_deadline, "subscriptions and meshes to form", |w| {
                edges.iter().all(|&(a, b)| {
                    !w.up(a)
                        || !w.up(b)
                        || topics
                            .iter()
                            .all(|t| w.sees_subscribed(a, b, t) && w.sees_subscribed(b, a, t))
                }) && (0..n).all(|i| !w.up(i) || topics.iter().all(|t| w.mesh_size(i, t) > 0))
            })
            .await;
        self.go_on(waited)?;

        self.publish_phase().await?;
        self.pump_for(case.drain).await?;
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
            let can = |i: usize| self.world.may_do(i, contract::features::DIAL_MODE_NEW);
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

    fn dial_addr_of(&self, i: usize) -> String {
        let proc = self.peers[i].process.as_ref().expect("started");
        dial_addr(self.case, proc.address, self.world.peer_id(i).expect("ready"))
    }

    /// Publishes on every topic from every publisher at the case's rate, and fires incidents on time.
    async fn publish_phase(&mut self) -> anyhow::Result<()> {
        let case = self.case;
        enum Step<'c> {
            Publish {
                peer: usize,
                topic: &'c str,
                seq: u32,
            },
            Incident(&'c crate::matrix::Incident),
        }
        let publishers: Vec<usize> = case
            .publishers()
            .iter()
            .filter_map(|name| case.peers.iter().position(|p| &p.name == name))
            .collect();
        let mut steps: Vec<(Duration, Step)> = Vec::new();
        // Publishers are spread over each interval, so that they do not all publish in the same instant.
        let slot = case.publish.interval / (publishers.len().max(1) as u32);
        for seq in 0..case.publish.messages {
            for (k, &peer) in publishers.iter().enumerate() {
                for topic in &case.gossipsub.topics {
                    steps.push((
                        case.publish.interval * seq + slot * k as u32,
                        Step::Publish { peer, topic, seq },
                    ));
                }
            }
        }
        for inc in &case.incidents {
            steps.push((inc.at, Step::Incident(inc)));
        }
        steps.sort_by_key(|(at, _)| *at);

        // Peers an incident was made to: their publishes may fail (no peers left to publish to), as intended.
        let mut disturbed = vec![false; case.peers.len()];
        let start = Instant::now();
        for (at, step) in steps {
            self.pump_until(start + at).await?;
            match step {
                Step::Publish { peer, topic, seq } => {
                    let id = format!("{}/{}/{seq}", case.peers[peer].name, topic);
                    let size = case.publish.size;
                    let publish = Command::Publish {
                        topic: topic.to_owned(),
                        id,
                        size: size.into(),
                    };
                    self.send(peer, publish, disturbed[peer]).await;
                }
                Step::Incident(inc) => {
                    let peer = case
                        .peers
                        .iter()
                        .position(|p| p.name == inc.peer)
                        .expect("validated");
                    disturbed[peer] = true;
                    let index_of = |name: &str| {
                        case.peers
                            .iter()
                            .position(|p| p.name == name)
                            .expect("validated")
                    };
                    let peer_id = |i: usize| self.world.peer_id(i).unwrap_or_default().to_owned();
                    let command = match &inc.action {
                        Action::Unsubscribe(topic) => Command::Unsubscribe {
                            topic: topic.clone(),
                        },
                        Action::Disconnect(target) if target == "all" => Command::Disconnect { peer: None },
                        Action::Disconnect(target) => Command::Disconnect {
                            peer: Some(peer_id(index_of(target))),
                        },
                        Action::OpenStreams { to, count } => Command::OpenStreams {
                            peer: peer_id(index_of(to)),
                            count: *count,
                        },
                        Action::DropProtocol(protocol) => Command::DropProtocol {
                            protocol: protocol.clone(),
                        },
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
                            continue;
                        }
                    };
                    self.send(peer, command, inc.expect_error).await;
                }
            }
        }
        Ok(())
    }

    /// Sends `stop` to every running peer, waits for them to exit, and kills those that do not.
    async fn stop_all(&mut self) {
        for i in 0..self.peers.len() {
            if self.peers[i].process.is_some() && !self.world.exited(i) {
                self.world.stop_sent[i] = true;
                self.send(i, Command::Stop, false).await;
            }
        }
        let started: Vec<usize> = (0..self.peers.len())
            .filter(|&i| self.peers[i].process.is_some())
            .collect();
        let all_exited = |w: &World| started.iter().all(|&i| w.exited(i));
        // A cancelled run still waits for the exits: they belong in the record.
        let cancel = std::mem::replace(&mut self.cancel, CancellationToken::new());
        if self
            .wait_until(STOP_TIMEOUT, "peers to exit", all_exited)
            .await
            .is_err()
        {
            for &i in &started {
                if !self.world.exited(i) {
                    self.world.stop_sent[i] = true;
                    self.observe(
                        i,
                        Observation::Killed {
                            reason: format!(
                                "did not exit within {} s of stop",
                                STOP_TIMEOUT.as_secs()
                            ),
                        },
                    );
                    if let Some(id) = self.peers[i].process.as_ref().map(|p| p.id.clone()) {
                        self.backend.kill(&id).await;
                    }
                }
            }
            let _ = self
                .wait_until(Duration::from_secs(5), "killed peers to exit", all_exited)
                .await;
        }
        self.cancel = cancel;
    }

    /// Writes one command to a peer, with a `cmd_id` of its own, and records it. A write that does not finish
    /// (the peer stopped reading) is bounded: the command is recorded as undelivered and the peer gets no more.
    async fn send(&mut self, i: usize, command: Command, expect_error: bool) {
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
        if self.world.exited(i) || self.peers[i].deaf {
            return;
        }
        let Some(p) = self.peers[i].process.as_mut() else {
            return;
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
            self.observe(i, Observation::Undelivered { cmd_id, reason });
        }
    }

    /// Every sampling period: the kernel's view of connections, then the live checks.
    fn on_tick(&mut self) -> anyhow::Result<()> {
        self.sample_sockets();
        let peers = self.peer_reports();
        let now = now_micros();
        for check in &self.live {
            if self.announced.contains(&check.name()) {
                continue;
            }
            if let Some(message) = check.failing(self.case, &peers, now) {
                self.announced.push(check.name());
                let line = format!("[{}] {message}", check.name());
                if let Some(p) = self.progress {
                    p.line(format!("  {}: failing {line}", self.case.name));
                }
                self.live_failures.push((now, line.clone()));
                if self.fail_fast {
                    return Err(FailFast(line).into());
                }
            }
        }
        Ok(())
    }

    fn observe(&mut self, i: usize, what: Observation) {
        let rec = Recorded {
            at: now_micros(),
            peer: self.peers[i].name.clone(),
            what,
        };
        self.world.apply(i, &rec);
        for check in self.live.iter_mut() {
            check.observe(&rec);
        }
        self.record.push(rec);
    }

    /// Records each running peer's established TCP connections as the kernel sees them, when they changed. QUIC
    /// runs over UDP, where the kernel keeps no connections to compare with.
    fn sample_sockets(&mut self) {
        if self.case.transport != crate::matrix::Transport::Tcp {
            return;
        }
        for i in 0..self.peers.len() {
            let Some(process) = self.peers[i].process.as_ref() else {
                continue;
            };
            if self.world.exited(i) || self.peers[i].sockets_unavailable {
                continue;
            }
            let remotes = match process.pid {
                None => None,
                Some(pid) => crate::backend::sockets::established_remotes(pid),
            };
            let Some(remotes) = remotes else {
                let reason = match process.pid {
                    None => "the backend does not know the peer's process".to_owned(),
                    Some(pid) => format!("/proc/{pid}/net/tcp cannot be read"),
                };
                self.peers[i].sockets_unavailable = true;
                self.observe(i, Observation::SocketsUnavailable { reason });
                continue;
            };
            let established: Vec<String> = remotes.iter().map(|a| a.to_string()).collect();
            if self.sockets[i].as_ref() != Some(&established) {
                self.sockets[i] = Some(established.clone());
                self.observe(i, Observation::Sockets { established });
            }
        }
    }

    fn handle(&mut self, i: usize, output: Output) {
        let what = match output {
            Output::Stdout(line) => {
                let peer = &mut self.peers[i];
                peer.stdout_lines += 1;
                let _ = writeln!(peer.events_log, "{line}");
                let line_no = peer.stdout_lines;
                match Line::parse(&line) {
                    Line::Event {
                        line: event,
                        unknown_fields,
                    } => {
                        if !unknown_fields.is_empty() {
                            let what = format!("fields it does not know: {}", unknown_fields.join(", "));
                            self.observe(i, Observation::Unknown { line_no, line, what });
                        }
                        Observation::Event { line: event }
                    }
                    Line::UnknownEvent { name } => Observation::Unknown {
                        line_no,
                        line,
                        what: format!("an event it does not know: `{name}`"),
                    },
                    Line::Violation(error) => Observation::Malformed { line_no, line, error },
                }
            }
            Output::Stderr(line) => {
                let _ = writeln!(self.peers[i].stderr_log, "{line}");
                Observation::Stderr { line }
            }
            Output::Exited(exit) => Observation::Exited {
                code: exit.code,
                expected: self.world.stop_sent[i],
                oom_killed: exit.oom_killed,
                peak_memory_bytes: exit.peak_memory_bytes,
                memory_limit_bytes: exit.memory_limit_bytes,
            },
        };
        self.observe(i, what);
    }

    /// Handles the next thing to happen: a line from a peer, a sampling tick, or the deadline (then `true`).
    async fn step(&mut self, deadline: Instant) -> anyhow::Result<bool> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => bail!("interrupted"),
            msg = self.inbox.recv() => match msg {
                Some((i, o)) => self.handle(i, o),
                None => bail!("lost every peer's output"),
            },
            _ = self.sampler.tick() => self.on_tick()?,
            _ = tokio::time::sleep_until(deadline) => return Ok(true),
        }
        Ok(false)
    }

    async fn pump_until(&mut self, deadline: Instant) -> anyhow::Result<()> {
        while !self.step(deadline).await? {}
        Ok(())
    }

    async fn pump_for(&mut self, d: Duration) -> anyhow::Result<()> {
        self.pump_until(Instant::now() + d).await
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
        while !done(&self.world) {
            if self.step(deadline).await? {
                let state = self.world.describe_wait(&self.peer_names());
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
                let started = self.world.started[i].clone();
                PeerReport {
                    name: spec.name.clone(),
                    implementation: spec.implementation.clone(),
                    library: started.as_ref().map(|s| s.0.clone()),
                    versions: started.map(|s| s.1).unwrap_or_default(),
                    peer_id: self.world.peer_id(i).map(str::to_owned),
                    image: self.peers[i].image.clone(),
                    exit_code: self.world.exit_code[i],
                }
            })
            .collect()
    }

    fn write_record(&self) -> std::io::Result<()> {
        crate::stored::write_record(&self.dir, &self.record)
    }
}
/// One note per peer that wrote lines beyond the contract this runner knows (a newer peer's events or fields):
/// not failures, but a maintainer should know that part of what the peer said was not judged.
fn beyond_the_contract(record: &[Recorded]) -> Vec<String> {
    let mut by_peer: BTreeMap<&str, (usize, String)> = BTreeMap::new();
    let mut revisions: BTreeMap<&str, u32> = BTreeMap::new();
    for rec in record {
        match &rec.what {
            Observation::Unknown { line_no, what, .. } => {
                let seen = by_peer
                    .entry(&rec.peer)
                    .or_insert_with(|| (0, format!("line {line_no}: {what}")));
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
        assert!(n.contains("line 4: fields it does not know: hops"), "{n}");
        assert!(beyond_the_contract(&[]).is_empty());
    }
}
