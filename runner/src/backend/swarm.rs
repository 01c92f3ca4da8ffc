//! The swarm backend: every peer a task of its own Docker swarm service (one replica, restart policy none), every
//! case on its own attachable overlay network, so that a case's peers may run on every node of the swarm.
//!
//! A task on another node has no stdin from the runner: each peer serves the contract on its control port
//! (`control_port`, docs/peer-contract.md §8), and the runner connects to it over the overlay from inside a small
//! helper container of the case on this node. The helper only lends its network namespace: the runner opens each
//! connection on a thread that entered that namespace (`setns`), and the socket stays there, so one helper serves
//! every peer of the case wherever it runs, and nothing is published on any node's ports. Stderr comes from the
//! engine's task logs. Objects carry the Docker backend's labels, and are removed and swept the same way
//! (`docker.rs` lists services beside containers and networks).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, EndpointSpec, EndpointSpecModeEnum, HostConfig, Ipam, IpamConfig, Limit,
    LocalNodeState, NetworkAttachmentConfig, NetworkCreateRequest, NetworkDisconnectRequest,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, Task, TaskSpec, TaskSpecContainerSpec,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectNetworkOptionsBuilder, KillContainerOptionsBuilder,
    ListTasksOptions, LogsOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::docker::{bounded, is_not_found, is_not_running, DockerBackend, PeakMemory, PEER_USER};
use super::lines::LineBuffer;
use super::{Backend, Exit, Output, ParticipantLaunch, PeerLaunch, PeerProcess};
use crate::images::Recipe;
use contract::config::CONFIG_VAR;

/// The port every peer serves the contract on (it listens on `cases::LISTEN_PORT` for libp2p).
pub const CONTROL_PORT: u16 = 4100;

/// Why a case with the UPnP gateway cannot run here.
const NO_PARTICIPANTS: &str = "the swarm backend runs no UPnP gateway: SSDP multicast does not cross overlay networks (run such cases on the docker backend)";
/// Why a peer cannot be restarted in place here.
const NO_RESTART: &str = "the swarm backend cannot restart a peer in place: a task that ended is not started again (restart policy none), and a new task would get a new container and address";

pub struct SwarmBackend {
    /// The engine of this node, a swarm manager: its images, labels and clean-up are the Docker backend's.
    docker: DockerBackend,
    run_id: String,
    /// This node's id in the swarm: a task here has a process the runner can see.
    node: String,
    /// The overlay's prefix length, fitting the largest case.
    prefix: u32,
    cases: Mutex<HashMap<usize, Arc<Overlay>>>,
    /// Every task started in this run, by service id.
    tasks: Mutex<HashMap<String, Placed>>,
}

/// A case's overlay network and the helper through whose namespace the runner reaches it.
struct Overlay {
    name: String,
    helper: tokio::sync::OnceCell<Helper>,
}

struct Helper {
    /// `/proc/<pid>/ns/net` of the helper, held open.
    netns: Arc<std::fs::File>,
    /// Its address on the overlay, where the control connections come from.
    ip: IpAddr,
}

/// Where a service's task runs.
#[derive(Clone)]
struct Placed {
    /// Its name, for errors.
    name: String,
    network: String,
    /// Its container on this node, if it runs here.
    local_container: Option<String>,
}

impl SwarmBackend {
    /// Connects to the engine, which must be a manager of an active swarm; `max_peers` is the largest case's
    /// peer count, which the overlays' subnets must hold.
    pub async fn connect(run_id: &str, max_peers: usize) -> anyhow::Result<Self> {
        let docker = DockerBackend::connect(run_id).await?;
        let info = bounded(
            "asking the engine about its swarm",
            INSPECT_TIMEOUT,
            None,
            docker.api().info(),
        )
        .await?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.local_node_state != Some(LocalNodeState::ACTIVE)
            || swarm.control_available != Some(true)
        {
            bail!(
                "the Docker engine is not a manager of an active swarm (state {}): `docker swarm init` makes a one-node swarm; see docs/scale-out.md",
                swarm.local_node_state.map_or("unknown".into(), |s| s.to_string())
            );
        }
        Ok(Self {
            docker,
            run_id: run_id.to_owned(),
            node: swarm.node_id.unwrap_or_default(),
            prefix: overlay_prefix(max_peers)?,
            cases: Mutex::default(),
            tasks: Mutex::default(),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "swarm backend: a service per peer on an attachable overlay (/{} per case), contract over control port {CONTROL_PORT}",
            self.prefix
        )
    }

    fn api(&self) -> &Docker {
        self.docker.api()
    }

    fn overlay(&self, case: usize) -> anyhow::Result<Arc<Overlay>> {
        self.cases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&case)
            .cloned()
            .ok_or_else(|| anyhow!("case {case} has no overlay network"))
    }

    fn placed(&self, id: &str) -> anyhow::Result<Placed> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| anyhow!("no service {id} was started in this run"))
    }

    /// The container of a task that runs on this node, for what only this node's engine can do to it.
    fn local_container(&self, id: &str, what: &str) -> anyhow::Result<String> {
        let placed = self.placed(id)?;
        placed.local_container.ok_or_else(|| {
            anyhow!("{what} {}: its task runs on another node of the swarm, which this engine cannot reach", placed.name)
        })
    }

    /// Starts the case's helper on its overlay (once): a container of a peer image told to serve the contract on
    /// its control port, to which nobody connects, so it waits there without starting a host; a peer that ignores
    /// `control_port` waits on its open stdin instead.
    async fn helper(
        &self,
        case: usize,
        overlay: &Overlay,
        launch: &PeerLaunch,
    ) -> anyhow::Result<(Arc<std::fs::File>, IpAddr)> {
        let helper = overlay
            .helper
            .get_or_try_init(|| async {
                let name = format!("meshgate-{}-c{case}-control", self.run_id);
                let mut config = launch.config.clone();
                config.control_port = Some(CONTROL_PORT);
                let body = ContainerCreateBody {
                    image: Some(self.image_id(&launch.recipe).await?),
                    env: Some(peer_env(&config, &launch.limits)?),
                    labels: Some(self.docker.labels(Some(case))),
                    open_stdin: Some(true),
                    stdin_once: Some(false),
                    user: Some(PEER_USER.into()),
                    host_config: Some(HostConfig {
                        network_mode: Some(overlay.name.clone()),
                        cap_drop: Some(vec!["ALL".into()]),
                        readonly_rootfs: Some(true),
                        security_opt: Some(vec!["no-new-privileges".into()]),
                        memory: Some(64 << 20),
                        pids_limit: Some(64),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let api = self.api();
                let cancel = Some(&launch.cancel);
                let created = bounded(
                    &format!("creating container {name}"),
                    CREATE_TIMEOUT,
                    cancel,
                    api.create_container(Some(CreateContainerOptionsBuilder::default().name(&name).build()), body),
                )
                .await?;
                bounded(&format!("starting container {name}"), START_TIMEOUT, cancel, api.start_container(&created.id, None))
                    .await?;
                let inspect = bounded(&format!("inspecting container {name}"), INSPECT_TIMEOUT, cancel, api.inspect_container(&created.id, None))
                    .await?;
                let pid = inspect
                    .state
                    .and_then(|s| s.pid)
                    .filter(|&p| p > 0)
                    .ok_or_else(|| anyhow!("container {name} does not run"))?;
                let ip = inspect
                    .network_settings
                    .and_then(|s| s.networks)
                    .and_then(|n| n.get(&overlay.name).cloned())
                    .and_then(|e| e.ip_address)
                    .and_then(|ip| ip.parse().ok())
                    .ok_or_else(|| anyhow!("container {name} has no address on {}", overlay.name))?;
                let path = format!("/proc/{pid}/ns/net");
                let netns = std::fs::File::open(&path).with_context(|| {
                    format!("cannot open {path} of container {name}: the runner reaches the overlay from inside it, which needs this machine's engine and root")
                })?;
                anyhow::Ok(Helper { netns: Arc::new(netns), ip })
            })
            .await?;
        Ok((helper.netns.clone(), helper.ip))
    }

    /// The image by its id (`sha256:...`, the same on every node that has the image): a task whose image is named by
    /// id is never pulled, where a name would send each node to a registry first (there is none).
    async fn image_id(&self, recipe: &Recipe) -> anyhow::Result<String> {
        let tag = recipe.image_tag();
        bounded(&format!("inspecting image {tag}"), INSPECT_TIMEOUT, None, self.api().inspect_image(&tag))
            .await?
            .id
            .ok_or_else(|| anyhow!("the engine gave image {tag} no id"))
    }

    /// The service's task once it has left the scheduler: running (or about to), or already ended.
    async fn placed_task(
        &self,
        service: &str,
        name: &str,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Task> {
        let deadline = tokio::time::Instant::now() + SCHEDULE_TIMEOUT;
        loop {
            if let Some(task) = self.task_of(service).await? {
                let state = task.status.as_ref().and_then(|s| s.state);
                let container = task
                    .status
                    .as_ref()
                    .and_then(|s| s.container_status.as_ref())
                    .and_then(|c| c.container_id.clone());
                match state {
                    Some(TaskState::REJECTED) => bail!(
                        "the swarm rejected the task of {name}: {}",
                        task_error(&task)
                    ),
                    Some(s) if ended(s) => return Ok(task),
                    Some(TaskState::RUNNING) if container.is_some() => return Ok(task),
                    _ => {}
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the task of {name} did not start within {}",
                    humantime::format_duration(SCHEDULE_TIMEOUT)
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = cancel.cancelled() => bail!("starting {name}: interrupted"),
            }
        }
    }

    async fn task_of(&self, service: &str) -> anyhow::Result<Option<Task>> {
        task_of(self.api(), service).await
    }

    /// The address of a task on its overlay: from its container when it runs here, else from the overlay's
    /// view of its services (`network inspect --verbose`).
    async fn task_address(&self, placed: &Placed, service_name: &str) -> anyhow::Result<Ipv4Addr> {
        if let Some(container) = &placed.local_container {
            let inspect = bounded(
                &format!("inspecting container {container}"),
                INSPECT_TIMEOUT,
                None,
                self.api().inspect_container(container, None),
            )
            .await?;
            return inspect
                .network_settings
                .and_then(|s| s.networks)
                .and_then(|n| n.get(&placed.network).cloned())
                .and_then(|e| e.ip_address)
                .and_then(|ip| ip.parse().ok())
                .ok_or_else(|| anyhow!("{} has no address on {}", placed.name, placed.network));
        }
        let inspect = bounded(
            &format!("inspecting network {}", placed.network),
            INSPECT_TIMEOUT,
            None,
            self.api().inspect_network(
                &placed.network,
                Some(
                    InspectNetworkOptionsBuilder::default()
                        .verbose(true)
                        .build(),
                ),
            ),
        )
        .await?;
        inspect
            .services
            .and_then(|s| s.get(service_name).cloned())
            .and_then(|s| {
                s.get("Tasks")?
                    .as_array()?
                    .iter()
                    .find_map(|t| t.get("EndpointIP")?.as_str()?.parse().ok())
            })
            .ok_or_else(|| {
                anyhow!(
                    "the overlay {} does not list an address of {}",
                    placed.network,
                    placed.name
                )
            })
    }
}

impl Backend for SwarmBackend {
    /// Images are built on this node; other nodes need them too (docs/scale-out.md says how).
    async fn prepared(&self, recipe: &Recipe) -> bool {
        self.docker.prepared(recipe).await
    }

    async fn prepare(&self, recipe: &Recipe, binary: &std::path::Path) -> anyhow::Result<()> {
        self.docker.prepare(recipe, binary).await
    }

    async fn create_network(&self, case: usize, case_name: &str) -> anyhow::Result<()> {
        let name = format!("meshgate-{}-c{case}", self.run_id);
        let mut labels = self.docker.labels(Some(case));
        labels.insert("io.meshgate.case-name".into(), case_name.into());
        let mut taken = 0;
        for subnet in subnet_candidates(&self.run_id, case, self.prefix) {
            let req = NetworkCreateRequest {
                name: name.clone(),
                driver: Some("overlay".into()),
                attachable: Some(true),
                // Like the Docker backend's case networks: the peers reach each other and nothing else.
                internal: Some(true),
                labels: Some(labels.clone()),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(format!("{subnet}/{}", self.prefix)),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let what = format!(
                "creating overlay network {name} on {subnet}/{}",
                self.prefix
            );
            match bounded(&what, CREATE_TIMEOUT, None, self.api().create_network(req)).await {
                Ok(_) => {
                    self.cases.lock().unwrap_or_else(|e| e.into_inner()).insert(
                        case,
                        Arc::new(Overlay {
                            name,
                            helper: tokio::sync::OnceCell::new(),
                        }),
                    );
                    return Ok(());
                }
                Err(e) if super::docker::overlaps(&e) => taken += 1,
                Err(e) => return Err(e),
            }
        }
        bail!(
            "no free /{} in {OVERLAY_RANGE}/{OVERLAY_RANGE_BITS} for an overlay ({taken} taken)",
            self.prefix
        )
    }

    async fn start_peer(&self, case: usize, launch: PeerLaunch) -> anyhow::Result<PeerProcess> {
        let overlay = self.overlay(case)?;
        let (netns, controller) = self.helper(case, &overlay, &launch).await?;
        let name = format!("meshgate-{}-c{case}-{}", self.run_id, launch.name);
        let mut config = launch.config.clone();
        config.control_port = Some(CONTROL_PORT);
        let labels = self.docker.labels(Some(case));
        let memory = launch.limits.memory.0;
        let spec = ServiceSpec {
            name: Some(name.clone()),
            labels: Some(labels.clone()),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(self.image_id(&launch.recipe).await?),
                    env: Some(peer_env(&config, &launch.limits)?),
                    // The task's container is labelled like the service, so that it is swept like the service.
                    labels: Some(labels),
                    user: Some(PEER_USER.into()),
                    read_only: Some(true),
                    capability_drop: Some(vec!["ALL".into()]),
                    ..Default::default()
                }),
                resources: Some(TaskSpecResources {
                    limits: Some(Limit {
                        memory_bytes: i64::try_from(memory).ok(),
                        pids: i64::try_from(launch.limits.pids).ok(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                // A peer that ends stays ended: its exit is what the checks judge.
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..Default::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(overlay.name.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            // No virtual IP per service: it would take a second address of the overlay for every peer.
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = bounded(
            &format!("creating service {name}"),
            CREATE_TIMEOUT,
            Some(&launch.cancel),
            self.api().create_service(spec, None),
        )
        .await?;
        let service = created
            .id
            .ok_or_else(|| anyhow!("the engine gave service {name} no id"))?;
        let task = self.placed_task(&service, &name, &launch.cancel).await?;
        let local = task.node_id.as_deref() == Some(self.node.as_str());
        let container = task
            .status
            .as_ref()
            .and_then(|s| s.container_status.as_ref())
            .and_then(|c| c.container_id.clone());
        let placed = Placed {
            name: name.clone(),
            network: overlay.name.clone(),
            local_container: container.filter(|_| local),
        };
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(service.clone(), placed.clone());
        let pid = if let Some(c) = &placed.local_container {
            self.api()
                .inspect_container(c, None)
                .await
                .ok()
                .and_then(|i| i.state?.pid)
                .and_then(|p| u32::try_from(p).ok())
                .filter(|&p| p > 0)
        } else {
            None
        };
        let running = task.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING);
        let (ip, control) = if running {
            let ip = self.task_address(&placed, &name).await?;
            let control = connect_control(
                self.api(),
                &service,
                netns,
                SocketAddr::new(IpAddr::V4(ip), CONTROL_PORT),
                &name,
                &launch.cancel,
            )
            .await?;
            (ip, control)
        } else {
            // It ended before it served anything (a configuration error): its log and exit say why.
            (Ipv4Addr::UNSPECIFIED, None)
        };
        let (stdin, reader): (std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>, _) =
            match control {
                Some(stream) => {
                    let (r, w) = stream.into_split();
                    (Box::pin(w), Some(r))
                }
                None => (Box::pin(tokio::io::sink()), None),
            };
        let (tx, rx) = mpsc::channel(1024);
        let watch = Watch {
            api: self.api().clone(),
            service: service.clone(),
            name,
            container: placed.local_container.clone(),
            pid,
            memory_limit: memory,
        };
        tokio::spawn(pump(watch, reader, tx));
        Ok(PeerProcess {
            id: service,
            address: SocketAddr::new(IpAddr::V4(ip), launch.config.listen_port),
            pid,
            controller: Some(controller),
            stdin,
            output: rx,
        })
    }

    fn cannot_run_participants(&self) -> Option<String> {
        Some(NO_PARTICIPANTS.into())
    }

    fn participant_address(&self, _case: usize) -> anyhow::Result<Ipv4Addr> {
        bail!(NO_PARTICIPANTS)
    }

    async fn start_participant(
        &self,
        _case: usize,
        _launch: ParticipantLaunch,
    ) -> anyhow::Result<PeerProcess> {
        bail!(NO_PARTICIPANTS)
    }

    async fn isolate(&self, _case: usize, id: &str) -> anyhow::Result<()> {
        let placed = self.placed(id)?;
        let container = self.local_container(id, "cutting off")?;
        let req = NetworkDisconnectRequest {
            container,
            force: Some(true),
        };
        let what = format!(
            "disconnecting {} from network {}",
            placed.name, placed.network
        );
        bounded(
            &what,
            CREATE_TIMEOUT,
            None,
            self.api().disconnect_network(&placed.network, req),
        )
        .await
    }

    /// Kills the task's container where it runs here; a task elsewhere is ended by removing its service.
    async fn kill(&self, id: &str) {
        let Ok(placed) = self.placed(id) else { return };
        let result = match &placed.local_container {
            Some(c) => {
                let opts = KillContainerOptionsBuilder::default()
                    .signal("KILL")
                    .build();
                bounded(
                    &format!("killing {}", placed.name),
                    KILL_TIMEOUT,
                    None,
                    self.api().kill_container(c, Some(opts)),
                )
                .await
            }
            None => {
                bounded(
                    &format!("removing service {}", placed.name),
                    KILL_TIMEOUT,
                    None,
                    self.api().delete_service(id),
                )
                .await
            }
        };
        if let Err(e) = result {
            if !e.chain().any(|c| {
                c.downcast_ref()
                    .is_some_and(|e| is_not_found(e) || is_not_running(e))
            }) {
                tracing::warn!("{e:#}");
            }
        }
    }

    async fn restart_peer(
        &self,
        _case: usize,
        _id: &str,
        _cancel: CancellationToken,
    ) -> anyhow::Result<PeerProcess> {
        bail!(NO_RESTART)
    }

    fn cannot_restart(&self) -> Option<String> {
        Some(NO_RESTART.into())
    }

    async fn pause(&self, id: &str) -> anyhow::Result<()> {
        let c = self.local_container(id, "pausing")?;
        bounded(
            &format!("pausing container {c}"),
            KILL_TIMEOUT,
            None,
            self.api().pause_container(&c),
        )
        .await
    }

    async fn resume(&self, id: &str) -> anyhow::Result<()> {
        let c = self.local_container(id, "resuming")?;
        bounded(
            &format!("resuming container {c}"),
            KILL_TIMEOUT,
            None,
            self.api().unpause_container(&c),
        )
        .await
    }

    /// Pausing goes to the engine of the task's node: it works for tasks on this node; for a task elsewhere `pause`
    /// fails naming it, and the case errors rather than going on unpaused.
    fn cannot_pause(&self) -> Option<String> {
        None
    }

    /// The task's namespace where it runs on this node (faults and the kernel's view work there); a task on
    /// another node has none here, and the faults of its case are skipped with that reason.
    fn netns(&self, process: &PeerProcess) -> Result<PathBuf, String> {
        let placed = self.placed(&process.id).map_err(|e| e.to_string())?;
        let container = placed.local_container.ok_or_else(|| {
            format!(
                "{} runs on another node of the swarm: its namespace cannot be entered from here",
                placed.name
            )
        })?;
        let pid = process
            .pid
            .ok_or_else(|| format!("the engine gave no process of {}", placed.name))?;
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if !cgroup.contains(&container) {
            return Err(format!(
                "process {pid} of {} no longer runs here",
                placed.name
            ));
        }
        Ok(PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    async fn remove_case(&self, case: usize) -> anyhow::Result<()> {
        // The helper's namespace, held open, would outlive its container.
        self.cases.lock().unwrap_or_else(|e| e.into_inner()).remove(&case);
        self.docker.remove_case(case).await
    }

    async fn remove_stale(&self) -> anyhow::Result<usize> {
        self.docker.remove_stale().await
    }

    async fn remove_run(&self) -> anyhow::Result<()> {
        self.docker.remove_run().await
    }
}

/// A peer's environment: its configuration, and the thread count its runtime is limited to.
fn peer_env(config: &contract::config::PeerConfig, limits: &crate::matrix::Limits) -> anyhow::Result<Vec<String>> {
    let config = format!("{CONFIG_VAR}={}", serde_json::to_string(config)?);
    Ok(std::iter::once(config).chain(limits.runtime_env()).collect())
}

/// The prefix length of an overlay that holds `peers` tasks, the helper, and the addresses the overlay takes for
/// itself (network, gateway, broadcast, one load-balancer endpoint per node, with room for 61 nodes): at least a
/// /24, Docker's default, which holds no more than 190 peers then.
fn overlay_prefix(peers: usize) -> anyhow::Result<u32> {
    let needed = peers + 1 + 3 + 61;
    let bits = usize::BITS - (needed - 1).leading_zeros();
    let prefix = 32u32.saturating_sub(bits).min(24);
    if prefix < LARGEST_OVERLAY {
        bail!("{peers} peers in one case need a /{prefix}, larger than the swarm backend's largest overlay (/{LARGEST_OVERLAY})");
    }
    Ok(prefix)
}

/// Overlays are blocks of 10.232.0.0/13 (the Docker backend's case networks are in 10.216.0.0/13, its gateways'
/// external addresses in 10.224.0.0/13), each at most a /16.
const OVERLAY_RANGE: Ipv4Addr = Ipv4Addr::new(10, 232, 0, 0);
const OVERLAY_RANGE_BITS: u32 = 13;
const LARGEST_OVERLAY: u32 = 16;

/// Every block of `/prefix` an overlay may take, from a place the run and case decide (as the Docker backend's).
fn subnet_candidates(run_id: &str, case: usize, prefix: u32) -> impl Iterator<Item = Ipv4Addr> {
    let hash = run_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let blocks = 1usize << (prefix - OVERLAY_RANGE_BITS);
    let start = (hash as usize).wrapping_add(case);
    (0..blocks).map(move |n| {
        let block = (start.wrapping_add(n) % blocks) as u32;
        Ipv4Addr::from(u32::from(OVERLAY_RANGE) + (block << (32 - prefix)))
    })
}

async fn task_of(api: &Docker, service: &str) -> anyhow::Result<Option<Task>> {
    let filters = HashMap::from([("service".to_string(), vec![service.to_owned()])]);
    let tasks = bounded(
        &format!("listing the tasks of service {service}"),
        INSPECT_TIMEOUT,
        None,
        api.list_tasks(Some(ListTasksOptions {
            filters: Some(filters),
        })),
    )
    .await?;
    // One replica, never restarted: one task (the newest, should the swarm have made another).
    Ok(tasks
        .into_iter()
        .max_by(|a, b| a.created_at.cmp(&b.created_at)))
}

fn ended(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::COMPLETE
            | TaskState::SHUTDOWN
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::ORPHANED
            | TaskState::REMOVE
    )
}

fn task_error(task: &Task) -> String {
    let status = task.status.as_ref();
    status
        .and_then(|s| s.err.clone())
        .or_else(|| status.and_then(|s| s.message.clone()))
        .unwrap_or_else(|| "no reason given".into())
}

/// Connects to a task's control port from inside the helper's namespace, trying until the peer listens (it reads
/// its configuration first). `None` when the task ended before it listened; an error when it never listened.
async fn connect_control(
    api: &Docker,
    service: &str,
    netns: Arc<std::fs::File>,
    addr: SocketAddr,
    name: &str,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<tokio::net::TcpStream>> {
    let deadline = tokio::time::Instant::now() + CONTROL_TIMEOUT;
    loop {
        match connect_in(netns.clone(), addr).await {
            Ok(stream) => {
                stream.set_nonblocking(true)?;
                return Ok(Some(tokio::net::TcpStream::from_std(stream)?));
            }
            Err(e) => {
                let state = task_of(api, service).await?.and_then(|t| t.status?.state);
                if state.is_some_and(ended) {
                    return Ok(None);
                }
                if tokio::time::Instant::now() > deadline {
                    bail!(
                        "{name} never opened its control port {addr} within {} ({e}): an image that serves the contract on stdin only cannot run on the swarm backend",
                        humantime::format_duration(CONTROL_TIMEOUT)
                    );
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = cancel.cancelled() => bail!("connecting to {name}: interrupted"),
        }
    }
}

/// Opens a TCP connection from inside `netns`, on a thread of its own: `setns` moves only the calling thread, and
/// the socket keeps the namespace it was made in. Not a pooled thread, which would stay in that namespace.
async fn connect_in(
    netns: Arc<std::fs::File>,
    addr: SocketAddr,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::AsRawFd;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        // SAFETY: setns only reads the descriptor, which `netns` keeps open for the call.
        let entered = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } == 0;
        let result = if entered {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        } else {
            Err(std::io::Error::last_os_error())
        };
        let _ = tx.send(result);
    });
    rx.await
        .unwrap_or_else(|_| Err(std::io::Error::other("the connecting thread ended")))
}

/// What the output pump needs to report a task's end.
struct Watch {
    api: Docker,
    service: String,
    name: String,
    /// Its container when it runs on this node: its cgroup gives the memory it used, its state an OOM kill.
    container: Option<String>,
    pid: Option<u32>,
    memory_limit: u64,
}

/// Events from the control connection as stdout lines and the task's log as stderr lines, then its exit once the
/// connection has ended and the swarm says the task ended.
async fn pump(
    watch: Watch,
    control: Option<tokio::net::tcp::OwnedReadHalf>,
    tx: mpsc::Sender<Output>,
) {
    let logs = {
        let (api, service, tx) = (watch.api.clone(), watch.service.clone(), tx.clone());
        tokio::spawn(async move { pump_logs(api, service, tx).await })
    };
    let mut peak = watch
        .container
        .as_deref()
        .map(|c| PeakMemory::find(c, watch.pid));
    if let Some(control) = control {
        let mut lines = BufReader::new(control).lines();
        // Without a cgroup to read here (the task runs on another node), there is nothing to sample.
        let mut sampling = tokio::time::interval(peak.as_ref().map_or(Duration::from_secs(1), PeakMemory::interval));
        sampling.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) => {
                        if tx.send(Output::Stdout(line)).await.is_err() {
                            logs.abort();
                            return;
                        }
                    }
                    // The end of the connection is the end of its stdout; a reset too.
                    _ => break,
                },
                _ = sampling.tick() => if let Some(p) = peak.as_mut() { p.sample() },
            }
        }
    }
    // The task's end, however long it takes: the driver kills a peer that does not stop.
    let task = loop {
        match task_of(&watch.api, &watch.service).await {
            Ok(Some(t)) if t.status.as_ref().and_then(|s| s.state).is_some_and(ended) => {
                break Some(t)
            }
            Ok(Some(_)) => {}
            // The service is gone (removed at the end of the case, or a kill on another node).
            Ok(None) => break None,
            Err(e) => tracing::warn!("{}: {e:#}", watch.name),
        }
        if let Some(p) = peak.as_mut() {
            p.sample();
        }
        tokio::time::sleep(POLL).await;
    };
    // What the task logged to its end (the engine ends the log stream once the task's container is gone, which
    // may be later than its exit).
    let abort = logs.abort_handle();
    if tokio::time::timeout(LOG_DRAIN, logs).await.is_err() {
        abort.abort();
    }
    let code = task
        .as_ref()
        .and_then(|t| t.status.as_ref()?.container_status.as_ref()?.exit_code);
    let oom_killed = match &watch.container {
        Some(c) => watch
            .api
            .inspect_container(c, None)
            .await
            .ok()
            .and_then(|i| i.state?.oom_killed)
            .unwrap_or(false),
        None => false,
    };
    let peak_memory_bytes = match (peak.and_then(|p| p.max), oom_killed) {
        (p, true) => Some(p.unwrap_or(0).max(watch.memory_limit)),
        (p, false) => p,
    };
    let _ = tx
        .send(Output::Exited(Exit {
            code,
            oom_killed,
            peak_memory_bytes,
            memory_limit_bytes: Some(watch.memory_limit),
        }))
        .await;
}

/// The task's log (stderr; stdout, silent with a control port, as stdout lines), followed wherever it runs.
async fn pump_logs(api: Docker, service: String, tx: mpsc::Sender<Output>) {
    let task = match task_of(&api, &service).await {
        Ok(Some(t)) => t,
        _ => return,
    };
    let Some(task_id) = task.id else { return };
    let opts = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        tail: "all".into(),
        ..Default::default()
    };
    let mut stream = api.task_logs(&task_id, Some(opts));
    let (mut out, mut err) = (LineBuffer::default(), LineBuffer::default());
    while let Some(Ok(chunk)) = stream.next().await {
        let (buf, stdout) = match &chunk {
            LogOutput::StdOut { .. } | LogOutput::Console { .. } => (&mut out, true),
            LogOutput::StdErr { .. } => (&mut err, false),
            LogOutput::StdIn { .. } => continue,
        };
        for line in buf.push(chunk.as_ref()) {
            let o = if stdout {
                Output::Stdout(line)
            } else {
                Output::Stderr(line)
            };
            if tx.send(o).await.is_err() {
                return;
            }
        }
    }
    if let Some(line) = out.finish() {
        let _ = tx.send(Output::Stdout(line)).await;
    }
    if let Some(line) = err.finish() {
        let _ = tx.send(Output::Stderr(line)).await;
    }
}

const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
const START_TIMEOUT: Duration = Duration::from_secs(60);
const INSPECT_TIMEOUT: Duration = Duration::from_secs(30);
const KILL_TIMEOUT: Duration = Duration::from_secs(30);
/// From a service's creation to its task running (the scheduler, and the node creating its container).
const SCHEDULE_TIMEOUT: Duration = Duration::from_secs(120);
/// From a task running to its peer listening on the control port.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a task's state is asked while the runner waits for it.
const POLL: Duration = Duration::from_millis(100);
/// How long a task's log may go on after the task ended.
const LOG_DRAIN: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_fit_the_largest_case() {
        assert_eq!(overlay_prefix(4).unwrap(), 24);
        assert_eq!(overlay_prefix(190).unwrap(), 24);
        // The example: a /24 does not hold 300 peers.
        assert_eq!(overlay_prefix(300).unwrap(), 23);
        assert_eq!(overlay_prefix(1000).unwrap(), 21);
        assert_eq!(overlay_prefix(5000).unwrap(), 19);
        assert!(overlay_prefix(70_000).is_err());
    }

    #[test]
    fn overlay_blocks_are_aligned_inside_the_range_and_each_tried_once() {
        for prefix in [24, 22] {
            let all: Vec<Ipv4Addr> = subnet_candidates("abc", 3, prefix).collect();
            assert_eq!(all.len(), 1 << (prefix - OVERLAY_RANGE_BITS));
            let unique: std::collections::HashSet<_> = all.iter().collect();
            assert_eq!(unique.len(), all.len());
            for s in all {
                let n = u32::from(s);
                assert_eq!(
                    n & ((1 << (32 - prefix)) - 1),
                    0,
                    "{s} is not a /{prefix} boundary"
                );
                assert_eq!(
                    n >> (32 - OVERLAY_RANGE_BITS),
                    u32::from(OVERLAY_RANGE) >> (32 - OVERLAY_RANGE_BITS)
                );
            }
        }
    }
}
