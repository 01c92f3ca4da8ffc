//! The local backend: peers run as plain processes on this machine, for a newcomer without Docker.
//!
//! As root, with iproute2, every peer gets its own network namespace on a case-private bridge (see [`netns`]), so
//! that peers are as isolated from the host and from each other's cases as containers are. Otherwise peers share
//! the loopback interface, each on its own port. Leftovers are found by name (`mg-<run>-...` namespaces) and by a
//! state file per run under `<cache>/local/`, which names the run's owner and every peer process it started.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::lines::LineBuffer;
use super::netns;
pub use super::owner::Unremoved;
use super::owner::{judge, owner_of, running_pid, Verdict, GRACE, HEARTBEAT};
use super::{Backend, Exit, Output, ParticipantLaunch, PeerLaunch, PeerProcess};
use crate::images::{cache_dir, Recipe};
use crate::matrix::Limits;
use contract::config::PeerConfig;

/// How the local backend connects peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LocalNet {
    /// Network namespaces when this process may make them, else loopback.
    Auto,
    /// A network namespace per peer (root and iproute2 needed).
    Netns,
    /// Every peer on 127.0.0.1, each on its own port.
    Loopback,
}

pub struct LocalBackend {
    run_id: String,
    /// Peers run in namespaces (else on loopback).
    netns: bool,
    /// Why namespaces are not used, when they are not.
    why_loopback: Option<String>,
    binaries: Mutex<HashMap<String, PathBuf>>,
    peers: Mutex<HashMap<String, Running>>,
    /// Peers started per case, which numbers them.
    started: Mutex<HashMap<usize, usize>>,
    /// Loopback ports handed out in this run; not reused, so no peer meets another's lingering connections.
    ports: Mutex<HashSet<u16>>,
    /// Peers give up root for [`PEER_UID`] (meshgate runs as root); else they run as meshgate's own user.
    drop_root: bool,
    /// Where each peer's cgroup goes, or why peers get none.
    cgroups: Result<Cgroups, String>,
    /// Binaries placed where [`PEER_UID`] can run them, by their cached path.
    runnable: Mutex<HashMap<PathBuf, PathBuf>>,
}

struct Running {
    case: usize,
    kill: CancellationToken,
    /// Cancelled once the process has been reaped.
    exited: CancellationToken,
    spawn: Arc<Spawn>,
}

/// What starting a peer (again) needs: the same binary and configuration, in the same namespace (named by the
/// peer's id) or on the same loopback port.
struct Spawn {
    name: String,
    binary: PathBuf,
    config: PeerConfig,
    limits: Limits,
    address: SocketAddr,
}

impl LocalBackend {
    /// Records the run's owner, then decides how peers are connected.
    pub async fn connect(run_id: &str, net: LocalNet) -> anyhow::Result<Self> {
        let owner = owner_of(std::process::id()).unwrap_or_default();
        let state = state_file(run_id);
        if let Some(dir) = state.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // The owner is on record before the run makes anything, so that nothing of it is ever ownerless; written
        // aside and renamed, so that another run's clean-up never reads it half-written and thinks it ownerless.
        let partial = state.with_file_name(format!(".{run_id}.partial"));
        std::fs::write(&partial, format!("owner {owner}\n"))
            .and_then(|()| std::fs::rename(&partial, &state))
            .with_context(|| format!("cannot write {}", state.display()))?;
        // Owners out of sight of the next run (another pid namespace sharing the cache) are judged by this
        // file's age: it is refreshed while the run lives.
        tokio::spawn(heartbeat(state.clone()));
        let probe = format!("{}probe", netns::prefix(run_id, None));
        let why_loopback = match net {
            LocalNet::Loopback => Some("--local-net loopback".to_owned()),
            LocalNet::Netns => {
                netns::usable(&probe)
                    .await
                    .context("cannot make network namespaces (--local-net netns)")?;
                None
            }
            LocalNet::Auto => netns::usable(&probe).await.err().map(|e| format!("{e:#}")),
        };
        let drop_root = is_root();
        Ok(Self {
            run_id: run_id.to_owned(),
            netns: why_loopback.is_none(),
            why_loopback,
            binaries: Mutex::default(),
            peers: Mutex::default(),
            started: Mutex::default(),
            ports: Mutex::default(),
            drop_root,
            cgroups: Cgroups::make(run_id),
            runnable: Mutex::default(),
        })
    }

    /// How peers are confined, for [`describe`](Self::describe).
    fn confinement(&self) -> String {
        let user = if self.drop_root {
            format!("as uid {PEER_UID}")
        } else {
            "as this user".to_owned()
        };
        match &self.cgroups {
            Ok(c) => format!(
                "{user}, each in a cgroup {} with memory and pids limits",
                c.describe()
            ),
            Err(why) => format!("{user}, without memory or pids limits ({why})"),
        }
    }

    /// The binary to start: where it is built when [`PEER_UID`] can reach it, else a copy in the run's own
    /// directory (the cache usually lives under root's home, which nobody else may enter).
    fn runnable(&self, binary: &Path) -> anyhow::Result<PathBuf> {
        if !self.drop_root || reachable_by_anyone(binary) {
            return Ok(binary.to_owned());
        }
        let mut placed = self.runnable.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = placed.get(binary) {
            return Ok(p.clone());
        }
        let dir = run_dir(&self.run_id);
        if !dir.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let to = dir.join(binary.file_name().unwrap_or_default());
        if std::fs::hard_link(binary, &to).is_err() {
            std::fs::copy(binary, &to)
                .with_context(|| format!("cannot copy {} to {}", binary.display(), to.display()))?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} runnable", to.display()))?;
        placed.insert(binary.to_owned(), to.clone());
        Ok(to)
    }

    /// One line for the user: where the peers run.
    pub fn describe(&self) -> String {
        match &self.why_loopback {
            None => format!(
                "running the peers as local processes, each in its own network namespace ({}*, 10.213.0.0/16 per case, no route out), {}",
                netns::prefix(&self.run_id, None),
                self.confinement()
            ),
            Some(why) => format!(
                "running the peers as local processes on 127.0.0.1, each on its own port (no network namespaces: {why}), {}",
                self.confinement()
            ),
        }
    }

    /// A free port below the ephemeral range (so that no outgoing connection takes it before the peer listens),
    /// free for TCP and UDP on every interface, where the contract says peers listen.
    fn pick_port(&self) -> anyhow::Result<u16> {
        let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(32768);
        let range = 20000..ephemeral.clamp(20001, 32768);
        let len = range.len();
        let mut taken = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        // Concurrent runs start at different places.
        let start = (std::process::id() as usize * 7919 + taken.len()) % len;
        for port in range.clone().cycle().skip(start).take(len) {
            if !taken.contains(&port)
                && std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
                && std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
            {
                taken.insert(port);
                return Ok(port);
            }
        }
        bail!("no free port in {range:?}")
    }

    fn binary(&self, recipe: &Recipe) -> anyhow::Result<PathBuf> {
        self.binaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&recipe.hash)
            .cloned()
            .ok_or_else(|| anyhow!("no binary of the {} peer was prepared", recipe.label()))
    }

    /// Starts a peer's process, confined like every other (its own cgroup, uid [`PEER_UID`]), and pumps its output.
    fn spawn(&self, case: usize, id: String, spawn: Arc<Spawn>) -> anyhow::Result<PeerProcess> {
        let mut command = if self.netns {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", &id]);
            if self.drop_root {
                // Entering the namespace needs root: the peer gives it up inside, just before it starts.
                c.arg("setpriv").args(SETPRIV_ARGS).arg("--");
            }
            c.arg(&spawn.binary);
            c
        } else {
            let mut c = tokio::process::Command::new(&spawn.binary);
            if self.drop_root {
                // Without supplementary groups: the standard library drops them when root sets a uid.
                c.uid(PEER_UID).gid(PEER_GID);
            }
            c
        };
        let cgroup = match &self.cgroups {
            Ok(c) => Some(
                c.add_peer(&id, &spawn.limits)
                    .with_context(|| format!("cannot make the cgroup of {}", spawn.name))?,
            ),
            Err(_) => None,
        };
        if let Some(cg) = &cgroup {
            let procs = cg.procs_files()?;
            // SAFETY: between fork and exec the child only writes to descriptors opened here: no allocation, no
            // lock. Writing "0" to `cgroup.procs` moves the writer itself, so the peer is charged from its first
            // page on.
            unsafe {
                command.pre_exec(move || {
                    use std::io::Write;
                    for mut f in &procs {
                        f.write_all(b"0")?;
                    }
                    Ok(())
                });
            }
        }
        // Like a container: its own environment, `/` as working directory, and its own process group, so that a
        // Ctrl-C on the terminal reaches the runner (which stops peers in order), not the peers.
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("MESHGATE_PEER_CONFIG", spawn.config.to_json())
            .envs(spawn.limits.runtime_env().iter().filter_map(|kv| kv.split_once('=')))
            .current_dir("/")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {} ({})", spawn.name, spawn.binary.display()))?;
        let pid = child.id();
        if let Some(me) = pid.and_then(owner_of) {
            // On record before anything else, so that the next run can kill it if this one dies.
            record_peer(&self.run_id, &me)?;
        }
        let (stdin, stdout, stderr) =
            match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                (Some(i), Some(o), Some(e)) => (i, o, e),
                _ => bail!("{} started without its pipes", spawn.name),
            };
        let (kill, exited) = (CancellationToken::new(), CancellationToken::new());
        self.peers.lock().unwrap_or_else(|e| e.into_inner()).insert(
            id.clone(),
            Running {
                case,
                kill: kill.clone(),
                exited: exited.clone(),
                spawn: spawn.clone(),
            },
        );
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let (out, err) = (tx.clone(), tx.clone());
            let lines = async {
                tokio::join!(
                    forward(stdout, out, Output::Stdout),
                    forward(stderr, err, Output::Stderr)
                )
            };
            let status = async {
                tokio::select! {
                    s = child.wait() => s,
                    _ = kill.cancelled() => {
                        let _ = child.start_kill();
                        // A frozen process (cgroup v1) dies only once thawed.
                        if let Some(cg) = &cgroup {
                            cg.thaw();
                        }
                        child.wait().await
                    }
                }
            };
            // Every line first, then the exit: the protocol the driver expects of every backend.
            let (_, status) = tokio::join!(lines, status);
            let mut exit = Exit {
                code: status.ok().and_then(exit_code),
                ..Exit::default()
            };
            if let Some(cg) = cgroup {
                // The process is reaped: its cgroup holds its counters until removed.
                exit.oom_killed = cg.oom_killed();
                exit.peak_memory_bytes = cg.peak_memory();
                exit.memory_limit_bytes = Some(cg.memory_limit);
                cg.remove();
            }
            exited.cancel();
            let _ = tx.send(Output::Exited(exit)).await;
        });
        Ok(PeerProcess {
            id,
            address: spawn.address,
            pid,
            controller: None,
            stdin: Box::pin(stdin),
            output: rx,
        })
    }

    /// Freezes (`frozen`) or thaws a running peer's cgroup, and waits until the kernel says it is done.
    async fn freeze(&self, id: &str, frozen: bool) -> anyhow::Result<()> {
        if let Some(why) = self.cannot_pause() {
            bail!("cannot pause {id}: {why}");
        }
        let Ok(cgroups) = &self.cgroups else {
            unreachable!("cannot_pause says why peers have no cgroup")
        };
        if !self
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
        {
            bail!("no peer {id} runs in this run");
        }
        cgroups.freeze(id, frozen).await
    }

    /// Kills the peers `which` selects and waits until they are reaped.
    async fn kill_peers(&self, which: impl Fn(&Running) -> bool) {
        let doomed: Vec<Running> = {
            let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<String> = peers
                .iter()
                .filter(|(_, r)| which(r))
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| peers.remove(id)).collect()
        };
        for r in &doomed {
            r.kill.cancel();
        }
        for r in &doomed {
            let _ = tokio::time::timeout(REAP_TIMEOUT, r.exited.cancelled()).await;
        }
    }
}

/// Where a peer's binary lands in the cache; [`Recipe::binary`] builds it there (a test holds the two together).
fn cached_binary(recipe: &Recipe) -> PathBuf {
    cache_dir()
        .join("bin")
        .join(format!("{}-peer-{}", recipe.name(), &recipe.hash[..16]))
}

impl Backend for LocalBackend {
    /// A binary already in the cache is all a local peer needs.
    async fn prepared(&self, recipe: &Recipe) -> bool {
        // A prebuilt image has no binary to run here; `Recipe::binary` says so.
        if recipe.image.is_some() {
            return false;
        }
        let path = cached_binary(recipe);
        if !path.is_file() {
            return false;
        }
        self.binaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(recipe.hash.clone(), path);
        true
    }

    async fn prepare(&self, recipe: &Recipe, binary: &Path) -> anyhow::Result<()> {
        self.binaries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(recipe.hash.clone(), binary.to_owned());
        Ok(())
    }

    async fn create_network(&self, case: usize, _case_name: &str) -> anyhow::Result<()> {
        if self.netns {
            netns::add_hub(&netns::name(&self.run_id, case, "hub"))
                .await
                .with_context(|| format!("cannot create the network of case {case}"))?;
        }
        Ok(())
    }

    async fn start_peer(&self, case: usize, mut launch: PeerLaunch) -> anyhow::Result<PeerProcess> {
        let binary = self.runnable(&self.binary(&launch.recipe)?)?;
        let index = {
            let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
            let n = started.entry(case).or_default();
            *n += 1;
            *n - 1
        };
        let id = netns::name(
            &self.run_id,
            case,
            &format!("p{index}-{}", short_slug(&launch.name)),
        );
        let address = if self.netns {
            let ip = netns::address(index)?;
            netns::add_peer(&netns::name(&self.run_id, case, "hub"), &id, index, ip)
                .await
                .with_context(|| format!("cannot wire {} into its network", launch.name))?;
            SocketAddr::new(IpAddr::V4(ip), launch.config.listen_port)
        } else {
            launch.config.listen_port = self.pick_port()?;
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), launch.config.listen_port)
        };
        let spawn = Spawn {
            name: launch.name,
            binary,
            config: launch.config,
            limits: launch.limits,
            address,
        };
        self.spawn(case, id, Arc::new(spawn))
    }

    async fn restart_peer(
        &self,
        case: usize,
        id: &str,
        cancel: CancellationToken,
    ) -> anyhow::Result<PeerProcess> {
        let (spawn, exited) = {
            let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            let r = peers
                .get(id)
                .ok_or_else(|| anyhow!("no peer {id} was started in this run"))?;
            (r.spawn.clone(), r.exited.clone())
        };
        // The earlier life is reaped first: its cgroup, which the next one's takes the name of, goes with it.
        tokio::select! {
            _ = exited.cancelled() => {}
            _ = tokio::time::sleep(REAP_TIMEOUT) => {
                bail!("{} has not exited: kill it before restarting it", spawn.name)
            }
            _ = cancel.cancelled() => bail!("restarting {}: interrupted", spawn.name),
        }
        self.spawn(case, id.to_owned(), spawn)
    }

    async fn pause(&self, id: &str) -> anyhow::Result<()> {
        self.freeze(id, true).await
    }

    async fn resume(&self, id: &str) -> anyhow::Result<()> {
        self.freeze(id, false).await
    }

    /// Only a cgroup's freezer stops a peer unnoticed: SIGSTOP is seen by its parent and by a ptrace, and is not
    /// what the engine does.
    /// The gateway emulator is built as an image only; its cases need the Docker backend.
    fn cannot_run_participants(&self) -> Option<String> {
        Some("the UPnP gateway emulator runs on the Docker backend only (the local backend starts peers alone)".into())
    }

    fn participant_address(&self, _case: usize) -> anyhow::Result<std::net::Ipv4Addr> {
        anyhow::bail!("{}", self.cannot_run_participants().unwrap_or_default())
    }

    async fn start_participant(&self, _case: usize, _launch: ParticipantLaunch) -> anyhow::Result<PeerProcess> {
        anyhow::bail!("{}", self.cannot_run_participants().unwrap_or_default())
    }

    fn cannot_pause(&self) -> Option<String> {
        match &self.cgroups {
            Err(why) => Some(format!(
                "peers have no cgroup of their own, whose freezer would pause them ({why})"
            )),
            Ok(c) => c.freezer.as_ref().err().cloned(),
        }
    }

    fn netns(&self, process: &PeerProcess) -> Result<PathBuf, String> {
        if !self.netns {
            return Err("peers share the host's loopback: there is no namespace of their own to apply network faults in".into());
        }
        // Named by the peer's id; it outlives the peer's process, so that a restarted peer is found in it again.
        let named = Path::new(NETNS_DIR).join(&process.id);
        if named.exists() {
            return Ok(named);
        }
        match process
            .pid
            .map(|p| PathBuf::from(format!("/proc/{p}/ns/net")))
        {
            Some(p) if p.exists() => Ok(p),
            _ => Err(format!(
                "the namespace of {} is gone ({} does not exist)",
                process.id,
                named.display()
            )),
        }
    }

    async fn isolate(&self, _case: usize, id: &str) -> anyhow::Result<()> {
        if !self.netns {
            anyhow::bail!("peers on loopback cannot be cut off from each other: cutting a peer off needs network namespaces (root)");
        }
        // The peer's namespace is named by its id; its only link to the others is eth0.
        netns::link_down(id).await
    }

    async fn kill(&self, id: &str) {
        if let Some(r) = self.peers.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            r.kill.cancel();
        }
    }

    async fn remove_case(&self, case: usize) -> anyhow::Result<()> {
        self.kill_peers(|r| r.case == case).await;
        let mut errors = Vec::new();
        for ns in netns::list(&netns::prefix(&self.run_id, Some(case))).await? {
            if let Err(e) = netns::remove(&ns).await {
                errors.push(e);
            }
        }
        Unremoved::into_result(errors)
    }

    async fn remove_stale(&self) -> anyhow::Result<usize> {
        remove_stale_runs().await
    }

    async fn remove_run(&self) -> anyhow::Result<()> {
        self.kill_peers(|_| true).await;
        clean_up_run(&self.run_id).await
    }
}

/// Refreshes the state file's time while the run lives; stops once the file is gone (never makes it again).
async fn heartbeat(state: PathBuf) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let touched = std::fs::OpenOptions::new()
            .append(true)
            .open(&state)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        if touched.is_err() {
            return;
        }
    }
}

/// Lines of one pipe, then its last unterminated piece. Drains to the end even when nobody listens any more, so
/// the peer never blocks on a full pipe.
async fn forward(
    mut pipe: impl AsyncRead + Unpin,
    tx: mpsc::Sender<Output>,
    wrap: fn(String) -> Output,
) {
    let mut lines = LineBuffer::default();
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        for line in lines.push(&buf[..n]) {
            let _ = tx.send(wrap(line)).await;
        }
    }
    if let Some(line) = lines.finish() {
        let _ = tx.send(wrap(line)).await;
    }
}

/// The exit code, or 128 + the signal that ended the process, as a shell and Docker report it.
fn exit_code(status: std::process::ExitStatus) -> Option<i64> {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .map(i64::from)
        .or_else(|| status.signal().map(|s| 128 + i64::from(s)))
}

/// From killing a peer to its process reaped and its cgroup gone.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// Where `ip netns` keeps the namespaces it names.
const NETNS_DIR: &str = "/run/netns";
/// From writing a cgroup's freezer state to the kernel having frozen or thawed every process in it.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// The user and group local peers run as when meshgate runs as root: `nobody`, as in the containers.
const PEER_UID: u32 = 65534;
const PEER_GID: u32 = 65534;
/// `setpriv` (util-linux) drops root inside a peer's namespace, as `Command::uid` would outside one.
const SETPRIV_ARGS: &[&str] = &["--reuid=65534", "--regid=65534", "--clear-groups"];

fn is_root() -> bool {
    // The effective uid is the second field of `Uid:`.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Whether any user may run `path`: every directory above it searchable, the file executable, by others.
fn reachable_by_anyone(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let others_x =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
    path.ancestors().all(others_x)
}

/// A run's own directory on this machine, outside the cache: the binaries its unprivileged peers run.
fn run_dir(run: &str) -> PathBuf {
    std::env::temp_dir().join(format!("meshgate-{run}"))
}

/// The cgroups of a run: a parent `meshgate-<run>` at the top of the hierarchy (v2) or of the memory and pids
/// hierarchies (v1), and one child per peer in it, with the peer's limits.
struct Cgroups {
    v2: bool,
    /// The run's parents: one for v2; memory, pids, then freezer (where there is one), for v1.
    parents: Vec<PathBuf>,
    /// The parent whose children's freezers pause peers (v2: `cgroup.freeze`, v1: `freezer.state`), or why
    /// there is none.
    freezer: Result<PathBuf, String>,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where a run's parent cgroups are, or would be: v2, then v1 memory, pids and freezer.
fn cgroup_parents(run: &str) -> [PathBuf; 4] {
    let root = Path::new(CGROUP_ROOT);
    let name = format!("meshgate-{run}");
    [
        root.join(&name),
        root.join("memory").join(&name),
        root.join("pids").join(&name),
        root.join("freezer").join(&name),
    ]
}

/// Lets whatever a cgroup froze run again (v2 and v1 alike; a file of the other version is not there): a frozen
/// process cannot die of SIGKILL under v1, so clean-up thaws before it kills.
fn thaw(dir: &Path) {
    for (file, value) in [("cgroup.freeze", "0"), ("freezer.state", "THAWED")] {
        let f = dir.join(file);
        if f.is_file() {
            let _ = std::fs::write(f, value);
        }
    }
}

fn write(path: &Path, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value)
        .with_context(|| format!("cannot write {value:?} to {}", path.display()))
}

fn read_counter(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat-keyed cgroup file (`memory.events`, `memory.oom_control`).
fn read_key(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

impl Cgroups {
    /// Makes the run's parent cgroups, or says why it cannot: what the kernel offers decides (v2 when
    /// `/sys/fs/cgroup` is the unified hierarchy, else the v1 memory and pids hierarchies).
    fn make(run: &str) -> Result<Self, String> {
        let root = Path::new(CGROUP_ROOT);
        let [v2, memory, pids, freezer] = cgroup_parents(run);
        let made = if let Ok(controllers) = std::fs::read_to_string(root.join("cgroup.controllers"))
        {
            let have: Vec<&str> = controllers.split_whitespace().collect();
            if !have.contains(&"memory") || !have.contains(&"pids") {
                return Err(format!(
                    "cgroup v2 offers no memory and pids controllers (it has: {})",
                    have.join(" ")
                ));
            }
            let parent = v2;
            (|| {
                let enable = root.join("cgroup.subtree_control");
                let enabled = std::fs::read_to_string(&enable).unwrap_or_default();
                if !(enabled.contains("memory") && enabled.contains("pids")) {
                    write(&enable, "+memory +pids")?;
                }
                std::fs::create_dir(&parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
                write(&parent.join("cgroup.subtree_control"), "+memory +pids")?;
                // Every cgroup but the root has `cgroup.freeze` since Linux 5.2.
                let freezer = if parent.join("cgroup.freeze").is_file() {
                    Ok(parent.clone())
                } else {
                    Err("this kernel's cgroup v2 has no freezer (cgroup.freeze, Linux 5.2)".into())
                };
                Ok(Self {
                    v2: true,
                    parents: vec![parent.clone()],
                    freezer,
                })
            })()
            .inspect_err(|_| {
                let _ = std::fs::remove_dir(&parent);
            })
        } else if root.join("memory/cgroup.procs").is_file()
            && root.join("pids/cgroup.procs").is_file()
        {
            (|| {
                for p in [&memory, &pids] {
                    std::fs::create_dir(p)
                        .with_context(|| format!("cannot create {}", p.display()))?;
                }
                let mut parents = vec![memory.clone(), pids.clone()];
                // The freezer is its own hierarchy under v1, and optional: without it peers just cannot pause.
                let freezer = if !root.join("freezer/cgroup.procs").is_file() {
                    Err(format!("no v1 freezer hierarchy under {CGROUP_ROOT}"))
                } else {
                    match std::fs::create_dir(&freezer) {
                        Ok(()) => {
                            parents.push(freezer.clone());
                            Ok(freezer.clone())
                        }
                        Err(e) => Err(format!("cannot create {}: {e}", freezer.display())),
                    }
                };
                Ok(Self {
                    v2: false,
                    parents,
                    freezer,
                })
            })()
            .inspect_err(|_| {
                for p in [&memory, &pids, &freezer] {
                    let _ = std::fs::remove_dir(p);
                }
            })
        } else {
            return Err(format!(
                "no cgroup v2, nor v1 memory and pids hierarchies, under {CGROUP_ROOT}"
            ));
        };
        made.map_err(|e: anyhow::Error| format!("{e:#}"))
    }

    fn describe(&self) -> String {
        let version = if self.v2 { "v2" } else { "v1" };
        format!("{version} under {}", self.parents[0].display())
    }

    /// Freezes or thaws the cgroup of peer `name`, and waits until every process in it is.
    async fn freeze(&self, name: &str, frozen: bool) -> anyhow::Result<()> {
        let parent = self.freezer.as_ref().map_err(|why| anyhow!("{why}"))?;
        let dir = parent.join(name);
        // v2 writes `cgroup.freeze` and reports in `cgroup.events`; v1 writes `freezer.state`, which reads
        // FREEZING until every task is frozen.
        let (file, value, done) = match (self.v2, frozen) {
            (true, true) => ("cgroup.freeze", "1", "frozen 1"),
            (true, false) => ("cgroup.freeze", "0", "frozen 0"),
            (false, true) => ("freezer.state", "FROZEN", "FROZEN"),
            (false, false) => ("freezer.state", "THAWED", "THAWED"),
        };
        write(&dir.join(file), value)?;
        let report = dir.join(if self.v2 { "cgroup.events" } else { file });
        let deadline = tokio::time::Instant::now() + FREEZE_TIMEOUT;
        loop {
            let now = std::fs::read_to_string(&report)
                .with_context(|| format!("cannot read {}", report.display()))?;
            if now.lines().any(|l| l.trim() == done) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "{} did not reach {done:?} within {}",
                    dir.display(),
                    humantime::format_duration(FREEZE_TIMEOUT)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A peer's cgroup (`name` is its namespace-safe id), with its limits written.
    fn add_peer(&self, name: &str, limits: &Limits) -> anyhow::Result<PeerCgroup> {
        let dirs: Vec<PathBuf> = self.parents.iter().map(|p| p.join(name)).collect();
        let cg = PeerCgroup {
            v2: self.v2,
            dirs,
            memory_limit: limits.memory.0,
        };
        for d in &cg.dirs {
            std::fs::create_dir(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let (mem, pids) = (&cg.dirs[0], if self.v2 { &cg.dirs[0] } else { &cg.dirs[1] });
        let bytes = limits.memory.0.to_string();
        let set = || -> anyhow::Result<()> {
            if self.v2 {
                write(&mem.join("memory.max"), &bytes)?;
                // No swap beyond the limit, where the kernel has swap accounting.
                if mem.join("memory.swap.max").exists() {
                    write(&mem.join("memory.swap.max"), "0")?;
                }
            } else {
                write(&mem.join("memory.limit_in_bytes"), &bytes)?;
                if mem.join("memory.memsw.limit_in_bytes").exists() {
                    write(&mem.join("memory.memsw.limit_in_bytes"), &bytes)?;
                }
            }
            write(&pids.join("pids.max"), &limits.pids.to_string())
        };
        set().inspect_err(|_| cg.remove())?;
        Ok(cg)
    }
}

/// One peer's cgroup; removed once the peer is reaped and its counters read.
struct PeerCgroup {
    v2: bool,
    /// Memory first; for v1 then pids.
    dirs: Vec<PathBuf>,
    memory_limit: u64,
}

impl PeerCgroup {
    /// `cgroup.procs` of each of its hierarchies, opened for the child to move itself in before it executes.
    fn procs_files(&self) -> anyhow::Result<Vec<std::fs::File>> {
        self.dirs
            .iter()
            .map(|d| {
                let f = d.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&f)
                    .with_context(|| format!("cannot open {}", f.display()))
            })
            .collect()
    }

    fn oom_killed(&self) -> bool {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        read_key(&self.dirs[0].join(file), key).is_some_and(|n| n > 0)
    }

    fn peak_memory(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        read_counter(&self.dirs[0].join(file))
    }

    fn thaw(&self) {
        for d in &self.dirs {
            thaw(d);
        }
    }

    fn remove(&self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Kills what is left in a run's cgroups, then removes them, children first. Returns how many went.
async fn remove_cgroups(run: &str) -> anyhow::Result<usize> {
    let mut removed = 0;
    for parent in cgroup_parents(run).iter().filter(|p| p.is_dir()) {
        let children: Vec<PathBuf> = std::fs::read_dir(parent)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        for dir in children.iter().chain([parent]) {
            let pids: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            netns::kill(&pids).await;
            match std::fs::remove_dir(dir) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot remove {}", dir.display()))
                }
            }
        }
    }
    Ok(removed)
}

/// Thaws every cgroup of a run, children first, so that SIGKILL reaches what they froze.
fn thaw_cgroups(run: &str) {
    for parent in cgroup_parents(run).iter().filter(|p| p.is_dir()) {
        for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                thaw(&e.path());
            }
        }
        thaw(parent);
    }
}

/// Run ids that have cgroups or a run directory on this machine.
fn runs_with_leftovers() -> Vec<String> {
    let mut runs = Vec::new();
    let root = Path::new(CGROUP_ROOT);
    for dir in [
        root.to_owned(),
        root.join("memory"),
        root.join("pids"),
        root.join("freezer"),
        std::env::temp_dir(),
    ] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(run) = name.strip_prefix("meshgate-") {
                if netns::run_of(&format!("mg-{run}-")).is_some() {
                    runs.push(run.to_owned());
                }
            }
        }
    }
    runs
}


fn state_dir() -> PathBuf {
    cache_dir().join("local")
}

fn state_file(run: &str) -> PathBuf {
    state_dir().join(run)
}

fn record_peer(run: &str, peer: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let path = state_file(run);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot record a peer in {}", path.display()))?;
    writeln!(f, "peer {peer}")
        .with_context(|| format!("cannot record a peer in {}", path.display()))
}

/// What a state file says: the run's owner and the peer processes it started.
#[derive(Default)]
struct RunState {
    owner: Option<String>,
    peers: Vec<String>,
    /// When the file last changed: its owner refreshes it while it lives.
    modified: Option<std::time::SystemTime>,
}

impl RunState {
    fn parse(text: &str) -> Self {
        let mut s = RunState::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("owner", o)) => s.owner = Some(o.to_owned()),
                Some(("peer", p)) => s.peers.push(p.to_owned()),
                _ => {}
            }
        }
        s
    }
}

/// Removes the processes, namespaces and state files of every run `doomed` picks (given the run's state, `None`
/// when namespaces of it exist without one). Returns how many of them went. Goes through every process and
/// namespace, and names each one that could not be removed ([`Unremoved`]); a run's state file stays while
/// anything of it does, so that the next start tries again.
async fn remove_runs(doomed: impl Fn(&str, Option<&RunState>) -> bool) -> anyhow::Result<usize> {
    // Namespaces first: a run records its state before it makes a namespace, so every namespace listed here either
    // has its state file in the listing below, or belongs to a run that is gone.
    let namespaces = netns::list("mg-").await?;
    let mut runs: HashMap<String, Option<RunState>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir(state_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Only files named like run ids are ours.
            if netns::run_of(&format!("mg-{name}-")).is_some() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let mut state = RunState::parse(&text);
                state.modified = e.metadata().and_then(|m| m.modified()).ok();
                runs.insert(name, Some(state));
            }
        }
    }
    for ns in &namespaces {
        if let Some(run) = netns::run_of(ns) {
            runs.entry(run.to_owned()).or_insert(None);
        }
    }
    for run in runs_with_leftovers() {
        runs.entry(run).or_insert(None);
    }
    let (mut removed, mut errors) = (0, Vec::new());
    for (run, state) in &runs {
        if !doomed(run, state.as_ref()) {
            continue;
        }
        let before = errors.len();
        // A paused peer (cgroup v1) would survive the SIGKILLs below.
        thaw_cgroups(run);
        if let Some(state) = state {
            let pids: Vec<u32> = state.peers.iter().filter_map(|p| running_pid(p)).collect();
            netns::kill(&pids).await;
            for &pid in &pids {
                if netns::running(pid) {
                    errors.push(anyhow!(
                        "process {pid} (a peer of run {run}): it survived SIGKILL"
                    ));
                } else {
                    removed += 1;
                }
            }
        }
        let prefix = netns::prefix(run, None);
        for ns in namespaces.iter().filter(|n| n.starts_with(&prefix)) {
            match netns::remove(ns).await {
                Ok(n) => removed += n,
                Err(e) => errors.push(e),
            }
        }
        if errors.len() > before {
            continue;
        }
        match remove_cgroups(run).await {
            Ok(n) => removed += n,
            Err(e) => errors.push(e),
        }
        match std::fs::remove_dir_all(run_dir(run)) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(
                anyhow::Error::new(e).context(format!("cannot remove {}", run_dir(run).display())),
            ),
        }
        if errors.len() > before {
            continue;
        }
        match std::fs::remove_file(state_file(run)) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(
                anyhow::Error::new(e).context(format!("state file {}", state_file(run).display())),
            ),
        }
    }
    Unremoved::into_result(errors).map(|()| removed)
}

/// Whether a run is dead by its state file (`None`: namespaces without one, which have no owner). Its owner is
/// judged by [`judge`]; one out of sight (another pid namespace or kernel) lives while the file is younger than
/// [`GRACE`], which its heartbeat sees to.
fn stale(state: Option<&RunState>, now: std::time::SystemTime) -> bool {
    let Some(state) = state else { return true };
    match state.owner.as_deref().map_or(Verdict::Unseen, judge) {
        Verdict::Alive => false,
        Verdict::Dead => true,
        Verdict::Unseen => state
            .modified
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age >= GRACE),
    }
}

/// Removes what local runs whose owner is gone left behind; namespaces without a state file have no owner.
pub async fn remove_stale_runs() -> anyhow::Result<usize> {
    let now = std::time::SystemTime::now();
    remove_runs(|_, state| stale(state, now)).await
}

/// Removes everything of one run, whoever made it (`clean_up`, which may not have the run's backend).
pub async fn clean_up_run(run: &str) -> anyhow::Result<()> {
    remove_runs(|r, _| r == run).await.map(|_| ())
}

/// Removes everything every local run left, live or not (`meshgate clean`).
pub async fn remove_all() -> anyhow::Result<usize> {
    remove_runs(|_, _| true).await
}

/// A name-safe form of a peer name, short enough for a process or namespace name.
fn short_slug(name: &str) -> String {
    crate::stored::slug(name).chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cases::BuildSpec;
    use crate::matrix::Language;

    #[tokio::test]
    async fn the_cached_binary_is_where_recipes_build_it() {
        let recipe = Recipe::load(
            &crate::images::project_root(),
            &BuildSpec {
                language: Language::Go,
                version: None,
                path: None,
                pins: Default::default(),
                image: None,
                companions: Default::default(),
            },
        )
        .unwrap();
        let cache = tempfile::tempdir().unwrap();
        let expected = cache.path().join("bin").join(
            cached_binary(&recipe)
                .strip_prefix(cache_dir().join("bin"))
                .unwrap(),
        );
        std::fs::create_dir_all(expected.parent().unwrap()).unwrap();
        std::fs::write(&expected, "").unwrap();
        // An existing binary is returned as is, never rebuilt: the log is not even created.
        let log = cache.path().join("build.log");
        assert_eq!(recipe.binary(cache.path(), &log).await.unwrap(), expected);
        assert!(!log.exists());
    }

    #[test]
    fn state_files_name_owner_and_peers() {
        let s = RunState::parse("owner h:1:2\npeer h:3:4\npeer h:5:6\njunk\n");
        assert_eq!(s.owner.as_deref(), Some("h:1:2"));
        assert_eq!(s.peers, ["h:3:4", "h:5:6"]);
        assert_eq!(short_slug("rust 0.56/1"), "rust_0.56_1");
    }

    #[test]
    fn stale_runs_by_owner_and_heartbeat() {
        use std::time::SystemTime;
        let now = SystemTime::now();
        let state = |owner: &str, age: u64| RunState {
            owner: Some(owner.to_owned()),
            peers: Vec::new(),
            modified: Some(now - Duration::from_secs(age)),
        };
        let me = owner_of(std::process::id()).unwrap();
        let (boot, rest) = me.split_once(':').unwrap();
        let (_, pid_start) = rest.split_once(':').unwrap();
        // Seen from here: /proc decides, whatever the file's age.
        assert!(!stale(Some(&state(&me, 3600)), now));
        let reused = format!(
            "{boot}:{}:{}:1",
            rest.split(':').next().unwrap(),
            std::process::id()
        );
        assert!(stale(Some(&state(&reused, 0)), now));
        // Out of sight (another pid namespace): alive while the heartbeat is recent.
        let unseen = format!("{boot}:1:{pid_start}");
        assert!(!stale(Some(&state(&unseen, 5)), now));
        assert!(stale(Some(&state(&unseen, GRACE.as_secs() + 5)), now));
        // Old-format owners of other hosts likewise, no longer alive forever.
        assert!(!stale(Some(&state("old-ci-host:1:1", 5)), now));
        assert!(stale(
            Some(&state("old-ci-host:1:1", GRACE.as_secs() + 5)),
            now
        ));
        // Namespaces without a state file have no owner.
        assert!(stale(None, now));
        assert!(HEARTBEAT * 3 < GRACE);
    }

    #[test]
    fn loopback_ports_are_distinct_and_free() {
        let b = LocalBackend {
            run_id: "0".into(),
            netns: false,
            why_loopback: Some("test".into()),
            binaries: Mutex::default(),
            peers: Mutex::default(),
            started: Mutex::default(),
            ports: Mutex::default(),
            drop_root: false,
            cgroups: Err("test".into()),
            runnable: Mutex::default(),
        };
        let ports: HashSet<u16> = (0..20).map(|_| b.pick_port().unwrap()).collect();
        assert_eq!(ports.len(), 20);
        // Free when picked (checked by binding); binding again here would race with anything else on the machine.
        for p in ports {
            assert!((20000..32768).contains(&p), "{p}");
        }
    }

    #[test]
    fn exit_codes_like_docker() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            exit_code(std::process::ExitStatus::from_raw(3 << 8)),
            Some(3)
        );
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), Some(137));
    }
}
