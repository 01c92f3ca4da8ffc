//! Backends run peers somewhere and hand the runner their stdin, stdout, stderr and exit. The runner knows nothing
//! else of where a peer lives: Docker containers ([`docker`]), Docker swarm services ([`swarm`]) and plain processes
//! ([`local`]) implement [`Backend`], and a backend for Kubernetes would implement it and nothing more
//! (docs/scale-out.md).

pub mod docker;
mod hostrules;
mod lines;
pub mod local;
pub mod netfault;
mod session;
mod netns;
mod owner;
pub mod pipes;
pub mod sockets;
pub mod swarm;

use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use session::{clean_up, docker_for, new_run_id, prepare_images, BackendChoice};

use crate::images::Recipe;
use crate::matrix::Limits;
use contract::config::PeerConfig;

/// What the backend needs to start one peer.
pub struct PeerLaunch {
    /// Name in the case (`rust-1`).
    pub name: String,
    pub recipe: Recipe,
    /// The peer configuration (`MESHGATE_PEER_CONFIG` of the peer contract). A backend may change the listen
    /// port, e.g. when peers share one address.
    pub config: PeerConfig,
    /// What the peer may use; the backend enforces it from outside the peer where it can.
    pub limits: Limits,
    /// Cancelled when the case is interrupted: a start still waiting on the engine gives up.
    pub cancel: CancellationToken,
}

/// What the backend needs to start a participant of a case that is not a peer (the UPnP gateway emulator): it
/// runs on the case's network at the backend's [`Backend::participant_address`], confined like the peers.
pub struct ParticipantLaunch {
    /// Its name in the case (`upnp-gateway`), which names its files and its lines in the record.
    pub name: &'static str,
    pub recipe: Recipe,
    /// The one variable that holds its whole configuration, and its value.
    pub config: (&'static str, String),
    /// The port others reach it on (the gateway's HTTP port).
    pub port: u16,
    pub limits: Limits,
    pub cancel: CancellationToken,
}

/// What a peer produces, in order within each stream, as the backend sees it.
#[derive(Debug)]
pub enum Output {
    Stdout(String),
    /// A line of the file `events_path` names (docs/peer-contract.md §1): the peer's events, read apart from
    /// stdout. Which of two streams' lines came first is not known, so each stream's lines are numbered apart.
    EventsFile(String),
    Stderr(String),
    /// The process ended.
    Exited(Exit),
}

/// How a peer's process ended, as far as the backend could learn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exit {
    /// The exit status (128 + signal when a signal ended it); `None` when it could not be learned.
    pub code: Option<i64>,
    /// The kernel killed it for going over its memory limit.
    pub oom_killed: bool,
    /// The most memory it used, where the backend could measure it.
    pub peak_memory_bytes: Option<u64>,
    /// The memory limit the backend gave it; `None` when it could give none.
    pub memory_limit_bytes: Option<u64>,
}

/// A started peer.
pub struct PeerProcess {
    /// Backend-specific handle (container id).
    pub id: String,
    /// Where other peers reach it (address and listen port).
    pub address: SocketAddr,
    /// The peer's process id on this machine, where the backend can know it: the kernel's view of its
    /// connections is read through it.
    pub pid: Option<u32>,
    /// The address the runner's control connection comes from, where the peer serves the contract on a control
    /// port (the swarm backend): that connection is no libp2p connection, and the kernel's view leaves it out.
    pub controller: Option<std::net::IpAddr>,
    pub stdin: std::pin::Pin<Box<dyn AsyncWrite + Send>>,
    pub output: mpsc::Receiver<Output>,
}

/// Where a case's peers run. One value per run; `case` arguments are the case's index in the run.
pub trait Backend: Send + Sync {
    /// Makes what every image of the run needs (built once per content hash).
    fn prepare(
        &self,
        recipe: &Recipe,
        binary: &std::path::Path,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// Whether `prepare` has nothing to do for this recipe (so the binary need not be built at all).
    fn prepared(&self, recipe: &Recipe) -> impl std::future::Future<Output = bool> + Send;
    /// Creates the isolated network of a case.
    fn create_network(
        &self,
        case: usize,
        case_name: &str,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// How many `start_peer` calls of one case may run at once. One everywhere for now: starting Docker peers
    /// six at a time made the start a burst that saturated two cores, and small cases' failures of time then
    /// turned inconclusive (see `checks::host`).
    fn starts_at_once(&self) -> usize {
        1
    }
    fn start_peer(
        &self,
        case: usize,
        launch: PeerLaunch,
    ) -> impl std::future::Future<Output = anyhow::Result<PeerProcess>> + Send;
    /// Why participants that are not peers (the UPnP gateway) cannot run here, if they cannot: a case with one is
    /// then skipped with the reason.
    fn cannot_run_participants(&self) -> Option<String>;
    /// The fixed address of the case's participant on the case's network (after `create_network`), which no peer
    /// of the case has.
    fn participant_address(&self, case: usize) -> anyhow::Result<Ipv4Addr>;
    /// Starts a participant on the case's network at [`Backend::participant_address`]; it is removed with the
    /// case, and swept as a leftover of a run that died, like the peers.
    fn start_participant(
        &self,
        case: usize,
        launch: ParticipantLaunch,
    ) -> impl std::future::Future<Output = anyhow::Result<PeerProcess>> + Send;
    /// Cuts a running peer off from its case's network, as if its cable were pulled: the process runs on, its
    /// connections stall.
    fn isolate(
        &self,
        case: usize,
        id: &str,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// Ends a peer at once (after it failed to stop, or as a fault). What is needed to restart it stays: its
    /// `Exited` still comes on its output channel.
    fn kill(&self, id: &str) -> impl std::future::Future<Output = ()> + Send;
    /// Starts a peer that was killed (`kill`) again: the same container or binary, the same configuration (so the
    /// same identity seed and listen port) and the same address, so that the others can dial it where they knew
    /// it. The returned process has a fresh stdin and output channel; its output starts with what the new process
    /// writes (nothing of the earlier life is replayed).
    fn restart_peer(
        &self,
        case: usize,
        id: &str,
        cancel: CancellationToken,
    ) -> impl std::future::Future<Output = anyhow::Result<PeerProcess>> + Send;
    /// Freezes a running peer: not killed, its sockets stay open, it runs nothing until `resume`; a peer that hangs
    /// without closing anything, which its remotes must notice by themselves.
    fn pause(&self, id: &str) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// Lets a paused peer run on from where it stood.
    fn resume(&self, id: &str) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// Why a killed peer cannot be restarted in place here, if it cannot, so that a case that would restart one is
    /// refused before it starts.
    fn cannot_restart(&self) -> Option<String> {
        None
    }
    /// Why peers cannot be paused here, if they cannot (e.g. no writable cgroup for the freezer on the local
    /// backend), so that a case that would pause one is refused before it starts.
    fn cannot_pause(&self) -> Option<String>;
    /// The network namespace in which faults of this peer are applied from outside (`/proc/<pid>/ns/net` of its
    /// process on this machine), or why there is none here (peers sharing the host's loopback; an engine on
    /// another machine). Faults applied there reach this peer alone, whatever runs inside it.
    fn netns(&self, process: &PeerProcess) -> Result<std::path::PathBuf, String>;
    /// Removes everything of one case.
    fn remove_case(
        &self,
        case: usize,
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// Removes what runs that died left behind (objects of live runs stay); returns how many objects.
    fn remove_stale(&self) -> impl std::future::Future<Output = anyhow::Result<usize>> + Send;
    /// Removes everything of this run; safe to call more than once.
    fn remove_run(&self) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}
