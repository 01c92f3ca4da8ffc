//! The Docker backend: every peer in its own container, every case on its own internal bridge network.
//!
//! Every object carries labels naming the run and its owner process, so that a run removes exactly its own, and
//! the next run can tell leftovers of a dead run from objects of a live one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use anyhow::{anyhow, bail, Context as _};
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, HostConfigLogConfig, Ipam, IpamConfig,
    NetworkCreateRequest, NetworkDisconnectRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CreateContainerOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::lines::LineBuffer;
use super::pipes::{self, Pipes};
use super::owner::{
    evidence_says_alive, judge, owner_of, parse_rfc3339, unix_now, Evidence, Unremoved, Verdict,
};
use super::{Backend, Exit, Output, ParticipantLaunch, PeerLaunch, PeerProcess};
use crate::images::Recipe;

pub const LABEL_RUN: &str = "io.meshgate.run";
/// `<boot id>:<pid namespace>:<pid>:<start time>` of the process that owns the run ([`super::owner`]).
pub const LABEL_OWNER: &str = "io.meshgate.owner";
pub const LABEL_CASE: &str = "io.meshgate.case";
pub const LABEL_HASH: &str = "io.meshgate.recipe-hash";

/// Runs for which this process reached an engine: only they can have left objects there.
static CONNECTED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

/// Services (of the swarm backend), containers and networks, as listed.
#[derive(Default)]
struct Labelled {
    services: Vec<bollard::models::Service>,
    containers: Vec<bollard::models::ContainerSummary>,
    networks: Vec<bollard::models::Network>,
}

pub struct DockerBackend {
    api: Docker,
    run_id: String,
    owner: String,
    /// The subnet of each case's network and how many peers were started in it, which numbers their addresses.
    cases: Mutex<HashMap<usize, CaseNet>>,
    /// Every container started in this run, by id: what restarting it needs.
    lives: Mutex<HashMap<String, Life>>,
    /// The named pipes the peers write their events to, made at the first peer's start where the engine sees
    /// them ([`DockerBackend::pipes`]).
    pipes: std::sync::OnceLock<Option<Pipes>>,
}

struct CaseNet {
    subnet: Ipv4Addr,
    started: usize,
}

/// A container's current life, and what its next one needs.
#[derive(Clone)]
struct Life {
    /// The container's name, for errors.
    name: String,
    network: String,
    /// Its fixed address on `network`, which a restart keeps.
    ip: Ipv4Addr,
    port: u16,
    memory_limit: u64,
    /// The named pipe its events come through (a peer's; a participant writes them to stdout).
    events: Option<PathBuf>,
    /// Cancelled once this life's exit is reported: the engine's exit status of a restarted container would be
    /// that of its next life.
    exited: CancellationToken,
}

impl DockerBackend {
    /// Connects to the local engine and agrees on an API version, or says plainly that there is none.
    pub async fn connect(run_id: &str) -> anyhow::Result<Self> {
        let hint = "start one (Debian: `apt-get install -y docker.io && dockerd &`), or let `bin/meshgate` do it";
        let api = Docker::connect_with_local_defaults()
            .map_err(|e| anyhow!("no Docker engine configured ({e}); {hint}"))?;
        let api = bounded(
            "asking the Docker engine its API version",
            CONNECT_TIMEOUT,
            None,
            api.negotiate_version(),
        )
        .await
        .map_err(|e| anyhow!("no Docker engine reachable ({e:#}); {hint}"))?;
        bounded(
            "pinging the Docker engine",
            CONNECT_TIMEOUT,
            None,
            api.ping(),
        )
        .await
        .map_err(|e| anyhow!("the Docker engine does not answer ({e:#}); {hint}"))?;
        CONNECTED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run_id.to_owned());
        Ok(Self {
            api,
            run_id: run_id.to_owned(),
            owner: owner_of(std::process::id()).unwrap_or_default(),
            cases: Mutex::default(),
            lives: Mutex::default(),
            pipes: std::sync::OnceLock::new(),
        })
    }

    /// The run's event pipes, made when first asked for; none where the engine cannot see them (the events then
    /// come through the attach stream, as from a peer that ignores `events_path`).
    fn pipes(&self) -> Option<&Pipes> {
        self.pipes
            .get_or_init(|| {
                let pipes = Pipes::new(&self.run_id, &self.owner)
                    .map_err(|e| tracing::warn!("no event pipes, events come through the attach stream: {e}"))
                    .ok()?;
                if pipes.seen_by_engine() {
                    return Some(pipes);
                }
                tracing::debug!("the engine does not see this runner's files: events come through the attach stream");
                let _ = pipes.remove();
                None
            })
            .as_ref()
    }

    /// The engine, for what measures it beside the runner (`meshgate bench`'s bare containers).
    pub fn api(&self) -> &Docker {
        &self.api
    }

    /// The labels of this run's objects (of a case, with `case`): what is labelled so is removed with the run.
    pub fn labels(&self, case: Option<usize>) -> HashMap<String, String> {
        let mut l = HashMap::from([
            (LABEL_RUN.to_string(), self.run_id.clone()),
            (LABEL_OWNER.to_string(), self.owner.clone()),
        ]);
        if let Some(c) = case {
            l.insert(LABEL_CASE.into(), c.to_string());
        }
        l
    }

    fn network_name(&self, case: usize) -> String {
        format!("meshgate-{}-c{case}", self.run_id)
    }

    /// Lists the services, containers and networks whose label matches `filter` (`key=value` or `key`).
    async fn list_labelled(&self, filter: String) -> anyhow::Result<Labelled> {
        let filters = HashMap::from([("label".to_string(), vec![filter])]);
        // Only a swarm manager has services; an engine in no swarm (the usual case) answers 503.
        let services = match self
            .api
            .list_services(Some(bollard::query_parameters::ListServicesOptions {
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await
        {
            Ok(s) => s,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 503, .. }) => Vec::new(),
            Err(e) => return Err(anyhow::Error::new(e).context("cannot list the engine's services")),
        };
        let containers = self
            .api
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .context("cannot list the engine's containers")?;
        let networks = self
            .api
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .context("cannot list the engine's networks")?;
        Ok(Labelled {
            services,
            containers,
            networks,
        })
    }

    /// Removes exactly the listed objects (not what appeared since), services first (their tasks' containers go
    /// with them), then containers: a network with endpoints cannot go. Goes through all of them, and names each
    /// one that could not be removed ([`Unremoved`]).
    async fn remove_objects(&self, objects: &Labelled) -> anyhow::Result<usize> {
        let (mut removed, mut errors) = (0, Vec::new());
        for svc in &objects.services {
            let Some(id) = &svc.id else { continue };
            let name = svc.spec.as_ref().and_then(|s| s.name.clone()).unwrap_or(id.clone());
            match self.api.delete_service(id).await {
                Ok(()) => removed += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => errors.push(anyhow::Error::new(e).context(format!("service {name}"))),
            }
        }
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        // The swarm removes the containers of the services just removed: removing them too would race it.
        let services: HashSet<&str> = objects.services.iter().filter_map(|s| s.id.as_deref()).collect();
        let doomed: Vec<(&str, String)> = objects
            .containers
            .iter()
            .filter(|c| {
                let service = c.labels.as_ref().and_then(|l| l.get("com.docker.swarm.service.id"));
                !service.is_some_and(|s| services.contains(s.as_str()))
            })
            .filter_map(|c| {
                let id = c.id.as_deref()?;
                let name = c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_else(|| id.to_owned());
                Some((id, name))
            })
            .collect();
        // A few at a time: hundreds removed at once from one network sometimes leave it an endpoint the engine
        // never lets go (moby#42119; seen after 200-peer cases), and the engine does them one by one anyway.
        let removals: Vec<_> = doomed
            .iter()
            .map(|(id, _)| {
                let (api, id, opts) = (self.api.clone(), id.to_string(), opts.clone());
                async move { api.remove_container(&id, Some(opts)).await }
            })
            .collect();
        let results: Vec<_> = futures_util::stream::iter(removals)
            .buffered(REMOVALS_AT_ONCE)
            .collect()
            .await;
        for ((_, name), r) in doomed.iter().zip(results) {
            match r {
                Ok(()) => removed += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => errors.push(anyhow::Error::new(e).context(format!("container {name}"))),
            }
        }
        for n in &objects.networks {
            let Some(id) = &n.id else { continue };
            // The network's host rule (a gateway case's) goes with it.
            let bridge = super::hostrules::bridge_of(id);
            if let Err(e) = tokio::task::spawn_blocking(move || super::hostrules::remove_ssdp(&bridge)).await? {
                errors.push(e.context(format!("network {}", n.name.clone().unwrap_or(id.clone()))));
            }
            // The engine lets endpoints go a moment after their containers (a swarm service's, or hundreds of
            // containers removed at once): until then the network has active endpoints.
            let mut tries = if objects.services.is_empty() { BRIDGE_NETWORK_TRIES } else { NETWORK_TRIES };
            let outcome = loop {
                tries -= 1;
                match self.api.remove_network(id).await {
                    Err(e) if tries > 0 && has_endpoints(&e) => {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await
                    }
                    r => break r,
                }
            };
            match outcome {
                Ok(()) => removed += 1,
                // A swarm overlay is listed a moment after its removal, and removing it again is a 500 "not found".
                Err(e) if is_not_found(&e) || network_gone(&e) => {}
                Err(e) => {
                    // Every container of ours on it is gone: an endpoint count the engine never lowers (moby#42119,
                    // seen after 200-peer cases) stays until the daemon restarts. No endpoint is left to delete: a
                    // forced disconnect by each container's name finds none.
                    let hint = if has_endpoints(&e) {
                        " (no container of meshgate's is left on it: the engine still counts an endpoint it no longer has, moby#42119; restarting the Docker daemon clears it)"
                    } else {
                        ""
                    };
                    errors.push(
                        anyhow::Error::new(e)
                            .context(format!("network {}{hint}", n.name.clone().unwrap_or(id.clone()))),
                    )
                }
            }
        }
        Unremoved::into_result(errors).map(|()| removed)
    }

    /// Removes containers and networks whose label matches `filter`, and for which `keep` says no.
    async fn remove_labelled(
        &self,
        filter: String,
        keep: impl Fn(&HashMap<String, String>) -> bool,
    ) -> anyhow::Result<usize> {
        let mut objects = self.list_labelled(filter).await?;
        objects
            .containers
            .retain(|c| !keep(&c.labels.clone().unwrap_or_default()));
        objects
            .networks
            .retain(|n| !keep(&n.labels.clone().unwrap_or_default()));
        objects
            .services
            .retain(|s| !keep(&s.spec.as_ref().and_then(|s| s.labels.clone()).unwrap_or_default()));
        self.remove_objects(&objects).await
    }

    /// Removes every object meshgate made on this engine, live runs or not (`meshgate clean`).
    pub async fn remove_all(&self) -> anyhow::Result<usize> {
        let sweep = self.remove_labelled(LABEL_RUN.into(), |_| false);
        bounded("removing every meshgate object", SWEEP_TIMEOUT, None, sweep).await
    }

    /// Whether this process connected to an engine for `run` (so that the run may have made objects there).
    pub fn connected_for(run_id: &str) -> bool {
        CONNECTED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(run_id)
    }

    /// The engine's clock (object times are by it), else ours.
    async fn engine_now(&self) -> i64 {
        self.api
            .info()
            .await
            .ok()
            .and_then(|i| i.system_time)
            .and_then(|t| parse_rfc3339(&t))
            .unwrap_or_else(unix_now)
    }

    /// What a run whose owner cannot be seen from here left, as evidence of its life (see [`super::owner`]).
    async fn evidence(&self, objects: &Labelled) -> Evidence {
        use bollard::models::ContainerSummaryStateEnum as S;
        let mut running = false;
        // Every object's creation, and every exited container's exit; `None` where a time is not known.
        let mut times: Vec<Option<i64>> = Vec::new();
        for c in &objects.containers {
            times.push(c.created);
            match (&c.state, &c.id) {
                (Some(S::EXITED | S::DEAD), Some(id)) => {
                    let finished = self
                        .api
                        .inspect_container(id, None)
                        .await
                        .ok()
                        .and_then(|i| i.state)
                        .and_then(|s| s.finished_at)
                        .and_then(|t| parse_rfc3339(&t));
                    times.push(finished);
                }
                // Running, starting, paused, restarting, or a state not known to us: alive.
                _ => running = true,
            }
        }
        for n in &objects.networks {
            times.push(n.created.as_deref().and_then(parse_rfc3339));
        }
        for s in &objects.services {
            times.push(s.created_at.as_deref().and_then(parse_rfc3339));
        }
        // An unknown time might be the newest: then the age is unknown, which counts as young.
        let newest = times
            .into_iter()
            .try_fold(i64::MIN, |m, t| t.map(|t| m.max(t)));
        Evidence { running, newest }
    }

    async fn image_exists(&self, tag: &str) -> bool {
        let what = format!("inspecting image {tag}");
        bounded(&what, INSPECT_TIMEOUT, None, self.api.inspect_image(tag))
            .await
            .is_ok()
    }
}

impl Backend for DockerBackend {
    async fn prepared(&self, recipe: &Recipe) -> bool {
        self.image_exists(&recipe.image_tag()).await
    }

    /// Builds `FROM scratch` + the binary with the classic builder: no BuildKit, nothing pulled.
    async fn prepare(&self, recipe: &Recipe, binary: &Path) -> anyhow::Result<()> {
        let tag = recipe.image_tag();
        if self.image_exists(&tag).await {
            return Ok(());
        }
        let mut tar = tar::Builder::new(Vec::new());
        // The classic builder cannot read GNU sparse entries.
        tar.sparse(false);
        tar.append_path_with_name(recipe.dockerfile(), "Dockerfile")?;
        tar.append_path_with_name(binary, "peer")?;
        if let Some(name) = recipe.participant {
            // A participant's Dockerfile may copy its binary by its own name.
            tar.append_path_with_name(binary, name)?;
        }
        let context = tar.into_inner()?;
        let labels = HashMap::from([(LABEL_HASH.to_string(), recipe.hash.clone())]);
        let opts = BuildImageOptionsBuilder::default()
            .t(&tag)
            .rm(true)
            .forcerm(true)
            .labels(&labels)
            .build();
        let mut stream = self
            .api
            .build_image(opts, None, Some(bollard::body_full(context.into())));
        let build = async {
            while let Some(item) = stream.next().await {
                let info = item?;
                if let Some(detail) = info.error_detail {
                    bail!("{}", detail.message.unwrap_or_default());
                }
            }
            Ok(())
        };
        bounded(&format!("building image {tag}"), BUILD_TIMEOUT, None, build).await?;
        if !self.image_exists(&tag).await {
            bail!("building image {tag} ended without an image");
        }
        Ok(())
    }

    /// A subnet the runner chooses, so that every container can be given a fixed address, which it keeps when it
    /// is restarted (the engine would hand out whatever is free).
    async fn create_network(&self, case: usize, case_name: &str) -> anyhow::Result<()> {
        let mut labels = self.labels(Some(case));
        labels.insert("io.meshgate.case-name".into(), case_name.into());
        let create = |subnet: Ipv4Addr| {
            let req = NetworkCreateRequest {
                name: self.network_name(case),
                driver: Some("bridge".into()),
                // Internal: the peers reach each other and nothing else.
                internal: Some(true),
                labels: Some(labels.clone()),
                ipam: Some(Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(format!("{subnet}/{SUBNET_BITS}")),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let what = format!(
                "creating network {} on {subnet}/{SUBNET_BITS}",
                self.network_name(case)
            );
            async move {
                bounded(&what, CREATE_TIMEOUT, None, self.api.create_network(req))
                    .await
                    .map(|_| ())
            }
        };
        let subnet = first_free_subnet(subnet_candidates(&self.run_id, case), create).await?;
        self.cases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(case, CaseNet { subnet, started: 0 });
        Ok(())
    }

    async fn start_peer(&self, case: usize, launch: PeerLaunch) -> anyhow::Result<PeerProcess> {
        let ip = {
            let mut cases = self.cases.lock().unwrap_or_else(|e| e.into_inner());
            let net = cases
                .get_mut(&case)
                .ok_or_else(|| anyhow!("case {case} has no network: create it first"))?;
            net.started += 1;
            peer_address(net.subnet, net.started - 1)?
        };
        let events = self
            .pipes()
            .map(|p| p.make(&format!("c{case}-{}", launch.name)))
            .transpose()
            .map_err(|e| anyhow!("making the event pipe of {}: {e}", launch.name))?;
        let mut config = launch.config;
        config.events_path = events.as_ref().map(|_| pipes::IN_CONTAINER.into());
        let env = format!("MESHGATE_PEER_CONFIG={}", config.to_json());
        let port = config.listen_port;
        let container = Container {
            name: &launch.name,
            image: launch.recipe.image_tag(),
            env,
            ip,
            port,
            limits: launch.limits,
            events,
            cancel: &launch.cancel,
        };
        self.create_and_run(case, container).await
    }

    fn cannot_run_participants(&self) -> Option<String> {
        None
    }

    fn participant_address(&self, case: usize) -> anyhow::Result<Ipv4Addr> {
        let cases = self.cases.lock().unwrap_or_else(|e| e.into_inner());
        let net = cases
            .get(&case)
            .ok_or_else(|| anyhow!("case {case} has no network: create it first"))?;
        Ok(participant_address(net.subnet))
    }

    async fn start_participant(&self, case: usize, launch: ParticipantLaunch) -> anyhow::Result<PeerProcess> {
        let ip = self.participant_address(case)?;
        // Before any peer starts (a peer searches for its gateway as it starts): SSDP multicast across the bridge.
        let network = self
            .api
            .inspect_network(&self.network_name(case), None::<bollard::query_parameters::InspectNetworkOptions>)
            .await
            .context("inspecting the case network for its bridge")?;
        let bridge = super::hostrules::bridge_of(network.id.as_deref().unwrap_or_default());
        tokio::task::spawn_blocking(move || super::hostrules::allow_ssdp(&bridge)).await??;
        let (var, value) = launch.config;
        let container = Container {
            name: launch.name,
            image: launch.recipe.image_tag(),
            env: format!("{var}={value}"),
            ip,
            port: launch.port,
            limits: launch.limits,
            events: None,
            cancel: &launch.cancel,
        };
        self.create_and_run(case, container).await
    }

    async fn restart_peer(
        &self,
        _case: usize,
        id: &str,
        cancel: CancellationToken,
    ) -> anyhow::Result<PeerProcess> {
        let life = self
            .lives
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| anyhow!("no container {id} was started in this run"))?;
        // The earlier life's exit is reported first: its pump asks the engine for the exit status, which would
        // otherwise be this life's.
        tokio::select! {
            _ = life.exited.cancelled() => {}
            _ = tokio::time::sleep(WAIT_TIMEOUT + INSPECT_TIMEOUT) => {
                bail!("container {} has not exited: kill it before restarting it", life.name)
            }
            _ = cancel.cancelled() => bail!("restarting container {}: interrupted", life.name),
        }
        self.run_container(id, life, Some(&cancel)).await
    }

    async fn pause(&self, id: &str) -> anyhow::Result<()> {
        let what = format!("pausing container {id}");
        bounded(&what, PAUSE_TIMEOUT, None, self.api.pause_container(id)).await
    }

    async fn resume(&self, id: &str) -> anyhow::Result<()> {
        let what = format!("resuming container {id}");
        bounded(&what, PAUSE_TIMEOUT, None, self.api.unpause_container(id)).await
    }

    /// The engine pauses with the freezer cgroup, which every engine has.
    fn cannot_pause(&self) -> Option<String> {
        None
    }

    fn netns(&self, process: &PeerProcess) -> Result<PathBuf, String> {
        let short = &process.id[..process.id.len().min(12)];
        let pid = process
            .pid
            .ok_or_else(|| format!("the engine gave no process of container {short}"))?;
        // The engine's pid is a process here only when the engine runs on this machine, in this pid namespace:
        // then that process's cgroup names the container (whatever the cgroup driver).
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if !cgroup.contains(&process.id) {
            return Err(format!(
                "process {pid} of container {short} is not on this machine, or no longer runs (the Docker engine runs elsewhere, or in another pid namespace)"
            ));
        }
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        match path.try_exists() {
            Ok(true) => Ok(path),
            _ => Err(format!("{} cannot be seen from here", path.display())),
        }
    }

    async fn isolate(&self, case: usize, id: &str) -> anyhow::Result<()> {
        let network = self.network_name(case);
        let req = NetworkDisconnectRequest {
            container: id.to_owned(),
            force: Some(true),
        };
        let what = format!("disconnecting container {id} from network {network}");
        bounded(
            &what,
            DISCONNECT_TIMEOUT,
            None,
            self.api.disconnect_network(&network, req),
        )
        .await
    }

    async fn kill(&self, id: &str) {
        let opts = KillContainerOptionsBuilder::default()
            .signal("KILL")
            .build();
        // It may be gone already; either way it is not running afterwards, unless the engine does not answer.
        let what = format!("killing container {id}");
        match bounded(
            &what,
            KILL_TIMEOUT,
            None,
            self.api.kill_container(id, Some(opts)),
        )
        .await
        {
            Err(e)
                if !e
                    .chain()
                    .any(|c| c.downcast_ref().is_some_and(|e| is_not_found(e) || is_not_running(e))) =>
            {
                tracing::warn!("{e:#}")
            }
            _ => {}
        }
    }

    async fn remove_case(&self, case: usize) -> anyhow::Result<()> {
        let run = self.run_id.clone();
        let sweep = self.remove_labelled(format!("{LABEL_CASE}={case}"), |l| {
            l.get(LABEL_RUN) != Some(&run)
        });
        let what = format!("removing the containers and network of case {case}");
        bounded(&what, SWEEP_TIMEOUT, None, sweep).await?;
        Ok(())
    }

    async fn remove_run(&self) -> anyhow::Result<()> {
        let sweep = self.remove_labelled(format!("{LABEL_RUN}={}", self.run_id), |_| false);
        let what = format!(
            "removing the containers and networks of run {}",
            self.run_id
        );
        let swept = bounded(&what, SWEEP_TIMEOUT, None, sweep).await;
        // Whatever the engine kept (a network it will not let go), the pipes go.
        let pipes = pipes::remove_run(&self.run_id).map_err(|e| anyhow!("removing the peers' event pipes: {e}"));
        swept?;
        pipes
    }

    /// Removes what runs whose owner is gone left behind; objects of live runs stay. Runs are judged whole, by
    /// their owner where it can be seen from here, else by what they left ([`super::owner`] has the rule).
    async fn remove_stale(&self) -> anyhow::Result<usize> {
        let sweep = self.remove_stale_unbounded();
        bounded("removing what runs that died left", SWEEP_TIMEOUT, None, sweep).await
    }
}

/// One container of a case to create: a peer or a participant.
struct Container<'a> {
    /// Its name in the case (`rust-1`, `upnp-gateway`).
    name: &'a str,
    image: String,
    /// `VAR=value`: its configuration.
    env: String,
    ip: Ipv4Addr,
    port: u16,
    limits: crate::matrix::Limits,
    /// The host's end of the peer's event pipe, bind-mounted at [`pipes::IN_CONTAINER`].
    events: Option<PathBuf>,
    cancel: &'a CancellationToken,
}

impl DockerBackend {
    /// Creates a container of a case, labelled and confined, at its fixed address on the case's network, and
    /// starts it.
    async fn create_and_run(&self, case: usize, c: Container<'_>) -> anyhow::Result<PeerProcess> {
        let name = format!("meshgate-{}-c{case}-{}", self.run_id, c.name);
        let network = self.network_name(case);
        let cancel = Some(c.cancel);
        let memory = c.limits.memory.0;
        let ip = c.ip;
        let body = ContainerCreateBody {
            image: Some(c.image),
            env: Some([c.env].into_iter().chain(c.limits.runtime_env()).collect()),
            labels: Some(self.labels(Some(case))),
            open_stdin: Some(true),
            stdin_once: Some(false),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            // Confined: no root, no capability, nothing to write, no way to gain privileges, bounded memory and
            // processes. Faults that need privileges are applied from outside (see `isolate`).
            user: Some(PEER_USER.into()),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.clone(),
                    EndpointSettings {
                        ipam_config: Some(EndpointIpamConfig {
                            ipv4_address: Some(ip.to_string()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )])),
            }),
            host_config: Some(HostConfig {
                network_mode: Some(network.clone()),
                cap_drop: Some(vec!["ALL".into()]),
                readonly_rootfs: Some(true),
                security_opt: Some(vec!["no-new-privileges".into()]),
                memory: i64::try_from(memory).ok(),
                // Swap as large as the memory: none beyond the limit (Docker's default would double it).
                memory_swap: i64::try_from(memory).ok(),
                pids_limit: i64::try_from(c.limits.pids).ok(),
                // The runner takes every line from the attach stream and keeps it in the case folder: the
                // engine's own log (json-file by default) would encode and write each line a second time, which
                // at 200 peers is a good part of the engine's CPU.
                log_config: Some(HostConfigLogConfig { typ: Some("none".into()), config: None }),
                binds: c
                    .events
                    .as_ref()
                    .map(|p| vec![format!("{}:{}:rw", p.display(), pipes::IN_CONTAINER)]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = bounded(
            &format!("creating container {name}"),
            CREATE_TIMEOUT,
            cancel,
            self.api.create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            ),
        )
        .await?;
        let life = Life {
            name,
            network,
            ip,
            port: c.port,
            memory_limit: memory,
            events: c.events,
            exited: CancellationToken::new(),
        };
        self.run_container(&created.id, life, cancel).await
    }

    /// Attaches to a created or stopped container, starts it, and pumps its output. Attached before it starts,
    /// so that not a byte is lost; never with `logs`: the engine keeps none (a restarted peer's output starts anew).
    async fn run_container(
        &self,
        id: &str,
        mut life: Life,
        cancel: Option<&CancellationToken>,
    ) -> anyhow::Result<PeerProcess> {
        let name = life.name.clone();
        let attach = AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .logs(false)
            .build();
        // Open before the peer starts: it opens its end at once, and waits until the reading end is open.
        let events = life
            .events
            .as_deref()
            .map(pipes::open)
            .transpose()
            .map_err(|e| anyhow!("opening the event pipe of container {name}: {e}"))?;
        let io = bounded(
            &format!("attaching to container {name}"),
            ATTACH_TIMEOUT,
            cancel,
            self.api.attach_container(id, Some(attach)),
        )
        .await?;
        bounded(
            &format!("starting container {name}"),
            START_TIMEOUT,
            cancel,
            self.api.start_container(id, None),
        )
        .await?;
        let inspect = bounded(
            &format!("inspecting container {name}"),
            INSPECT_TIMEOUT,
            cancel,
            self.api.inspect_container(id, None),
        )
        .await?;
        let pid = inspect
            .state
            .as_ref()
            .and_then(|s| s.pid)
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p > 0);
        let running = inspect
            .state
            .as_ref()
            .and_then(|s| s.running)
            .unwrap_or(false);
        let ip = inspect
            .network_settings
            .and_then(|s| s.networks)
            .and_then(|n| n.get(&life.network).cloned())
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty());
        match (ip, running) {
            (Some(ip), _) if ip != life.ip.to_string() => bail!(
                "container {name} has address {ip} on {}, not its own {}",
                life.network,
                life.ip
            ),
            (Some(_), _) => {}
            // It has exited already (say, `unsupported` at start): its output and exit status tell why.
            (None, false) => {}
            (None, true) => bail!("container {name} has no address on {}", life.network),
        }
        let address = SocketAddr::new(IpAddr::V4(life.ip), life.port);
        life.exited = CancellationToken::new();
        let watch = Watch {
            api: self.api.clone(),
            id: id.to_owned(),
            name,
            pid,
            memory_limit: life.memory_limit,
            exited: life.exited.clone(),
        };
        self.lives
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), life);
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(pump_output(watch, io.output, events, tx));
        Ok(PeerProcess {
            id: id.to_owned(),
            address,
            pid,
            controller: None,
            stdin: io.input,
            output: rx,
        })
    }

    async fn remove_stale_unbounded(&self) -> anyhow::Result<usize> {
        let all = self.list_labelled(LABEL_RUN.into()).await?;
        // Host rules whose network is gone, whoever left them.
        let swept_rules = tokio::task::spawn_blocking(super::hostrules::sweep).await??;
        let mut runs: BTreeMap<String, Labelled> = BTreeMap::new();
        let run_of = |l: &Option<HashMap<String, String>>| {
            l.as_ref().and_then(|l| l.get(LABEL_RUN)).cloned()
        };
        let owner_of_run = |l: &Option<HashMap<String, String>>| {
            l.as_ref().and_then(|l| l.get(LABEL_OWNER)).cloned()
        };
        let mut owners: HashMap<String, String> = HashMap::new();
        for c in all.containers {
            let Some(run) = run_of(&c.labels) else {
                continue;
            };
            if let Some(o) = owner_of_run(&c.labels) {
                owners.entry(run.clone()).or_insert(o);
            }
            runs.entry(run).or_default().containers.push(c);
        }
        for n in all.networks {
            let Some(run) = run_of(&n.labels) else {
                continue;
            };
            if let Some(o) = owner_of_run(&n.labels) {
                owners.entry(run.clone()).or_insert(o);
            }
            runs.entry(run).or_default().networks.push(n);
        }
        for s in all.services {
            let labels = s.spec.as_ref().and_then(|spec| spec.labels.clone());
            let Some(run) = run_of(&labels) else {
                continue;
            };
            if let Some(o) = owner_of_run(&labels) {
                owners.entry(run.clone()).or_insert(o);
            }
            runs.entry(run).or_default().services.push(s);
        }
        let mut now = None;
        let (mut removed, mut errors) = (0, Vec::new());
        for (run, objects) in &runs {
            if *run == self.run_id {
                continue;
            }
            let dead = match judge(owners.get(run).map_or("", String::as_str)) {
                Verdict::Alive => false,
                Verdict::Dead => true,
                Verdict::Unseen => {
                    let now = match now {
                        Some(n) => n,
                        None => *now.insert(self.engine_now().await),
                    };
                    !evidence_says_alive(&self.evidence(objects).await, now)
                }
            };
            if dead {
                match self.remove_objects(objects).await {
                    Ok(n) => removed += n,
                    Err(e) => errors.extend(Unremoved::split(e)),
                }
            }
        }
        let swept_pipes = super::pipes::sweep_stale(&self.run_id);
        Unremoved::into_result(errors).map(|()| removed + swept_rules + swept_pipes)
    }

}

type OutputStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
>;

/// What the output pump needs to report a container's exit.
struct Watch {
    api: Docker,
    id: String,
    /// The container's name, for errors.
    name: String,
    /// Its process on this machine, through which its cgroup is found.
    pid: Option<u32>,
    memory_limit: u64,
    /// Cancelled once the exit is known, before it is sent (nobody may be reading any more).
    exited: CancellationToken,
}

/// A ticking interval whose ticks fall on the same instants in every task that asks for one with the same period
/// (multiples of it from the first call): the runtime then wakes once for all the peers' pumps, not once for each.
fn in_step(period: std::time::Duration) -> tokio::time::Interval {
    static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(tokio::time::Instant::now);
    let now = tokio::time::Instant::now();
    let next = period.as_nanos() * ((now - origin).as_nanos() / period.as_nanos() + 1);
    let mut interval = tokio::time::interval_at(origin + std::time::Duration::from_nanos(next as u64), period);
    // A late tick is skipped, not made up, so the instants stay on the grid.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    interval
}

/// Splits the attached stream into lines per channel, and the event pipe's into events file lines; then reports the
/// exit: status, whether the kernel killed it for memory, and the most memory it used.
async fn pump_output(
    watch: Watch,
    mut output: OutputStream,
    events: Option<std::fs::File>,
    tx: mpsc::Sender<Output>,
) {
    let mut out = LineBuffer::default();
    let mut err = LineBuffer::default();
    let mut piped = LineBuffer::default();
    let mut read = Vec::new();
    // The engine removes a container's cgroup as soon as it exits, so its peak is read while it runs.
    let mut peak = PeakMemory::find(&watch.id, watch.pid);
    let mut sampling = in_step(peak.interval());
    let mut reading = in_step(pipes::READ_EVERY);
    loop {
        let chunk = tokio::select! {
            chunk = output.next() => match chunk {
                Some(Ok(chunk)) => chunk,
                _ => break,
            },
            _ = reading.tick(), if events.is_some() => {
                read.clear();
                pipes::drain(events.as_ref().expect("read while open"), &mut read);
                for line in piped.push(&read) {
                    if tx.send(Output::EventsFile(line)).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            _ = sampling.tick() => {
                peak.sample();
                continue;
            }
        };
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
    peak.sample();
    // The attach stream ends when the container's process has ended, so every event it wrote is in the pipe.
    if let Some(rx) = &events {
        let mut rest = Vec::new();
        pipes::drain(rx, &mut rest);
        for line in piped.push(&rest).into_iter().chain(piped.finish()) {
            let _ = tx.send(Output::EventsFile(line)).await;
        }
    }
    if let Some(line) = out.finish() {
        let _ = tx.send(Output::Stdout(line)).await;
    }
    if let Some(line) = err.finish() {
        let _ = tx.send(Output::Stderr(line)).await;
    }
    let what = format!("waiting for container {} to exit", watch.name);
    let wait = async {
        watch
            .api
            .wait_container(&watch.id, None)
            .next()
            .await
            .transpose()
    };
    let code = match bounded(&what, WAIT_TIMEOUT, None, wait).await {
        Ok(Some(r)) => Some(r.status_code),
        Ok(None) => None,
        Err(e) => match e.downcast_ref::<bollard::errors::Error>() {
            Some(bollard::errors::Error::DockerContainerWaitError { code, .. }) => Some(*code),
            _ => {
                tracing::warn!("{e:#}");
                None
            }
        },
    };
    let what = format!("inspecting container {}", watch.name);
    let inspect_oom = || async {
        bounded(&what, INSPECT_TIMEOUT, None, watch.api.inspect_container(&watch.id, None))
            .await
            .map_err(|e| tracing::warn!("{e:#}"))
            .ok()
            .and_then(|i| i.state?.oom_killed)
            .unwrap_or(false)
    };
    let mut oom_killed = inspect_oom().await;
    // The engine learns of an OOM kill from an event of its own, which may come after the exit it already reported
    // (seen with Engine 20.10 on cgroup v1 under load): a SIGKILL's status is asked again for a moment.
    for _ in 0..OOM_EVENT_RETRIES {
        if oom_killed || code != Some(137) {
            break;
        }
        tokio::time::sleep(OOM_EVENT_WAIT).await;
        oom_killed = inspect_oom().await;
    }
    // Killed by the limit means its use reached the limit (the kernel kills when a charge would go over it), even
    // when the last sample was taken before the final climb.
    let peak_memory_bytes = match (peak.max, oom_killed) {
        (p, true) => Some(p.unwrap_or(0).max(watch.memory_limit)),
        (p, false) => p,
    };
    watch.exited.cancel();
    let _ = tx
        .send(Output::Exited(Exit {
            code,
            oom_killed,
            peak_memory_bytes,
            memory_limit_bytes: Some(watch.memory_limit),
        }))
        .await;
}

/// The most memory a container used, read from its cgroup: cgroup v2 `memory.peak` (or `memory.current` on kernels
/// before 5.19), cgroup v1 `memory.max_usage_in_bytes`.
pub(super) struct PeakMemory {
    /// Kept open: a read at offset 0 gives the value anew, without walking the cgroup tree's path at every sample.
    file: Option<std::fs::File>,
    /// Whether the file is a peak the kernel keeps (not `memory.current`).
    kept: bool,
    pub(super) max: Option<u64>,
}

impl PeakMemory {
    /// The cgroup file of the container, from its process's `/proc/<pid>/cgroup`, or where the engine puts
    /// containers by default (cgroupfs and systemd drivers).
    pub(super) fn find(id: &str, pid: Option<u32>) -> Self {
        let root = Path::new("/sys/fs/cgroup");
        let mut candidates = Vec::new();
        let listed = pid
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/cgroup")).ok())
            .unwrap_or_default();
        for line in listed.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let path = path.trim_start_matches('/');
            if controllers.is_empty() {
                candidates.push(root.join(path).join("memory.peak"));
                candidates.push(root.join(path).join("memory.current"));
            } else if controllers.split(',').any(|c| c == "memory") {
                candidates.push(
                    root.join("memory")
                        .join(path)
                        .join("memory.max_usage_in_bytes"),
                );
            }
        }
        for dir in [
            format!("docker/{id}"),
            format!("system.slice/docker-{id}.scope"),
        ] {
            candidates.push(root.join(&dir).join("memory.peak"));
            candidates.push(
                root.join("memory")
                    .join(&dir)
                    .join("memory.max_usage_in_bytes"),
            );
        }
        let (file, kept) = candidates
            .into_iter()
            .find_map(|f| {
                let kept = !f.ends_with("memory.current");
                Some((std::fs::File::open(f).ok()?, kept))
            })
            .map_or((None, false), |(f, k)| (Some(f), k));
        let mut peak = Self { file, kept, max: None };
        peak.sample();
        peak
    }

    /// How often to sample while the container runs.
    pub(super) fn interval(&self) -> std::time::Duration {
        if self.kept {
            PEAK_SAMPLING
        } else {
            MEMORY_SAMPLING
        }
    }

    pub(super) fn sample(&mut self) {
        use std::os::unix::fs::FileExt as _;
        let Some(file) = &self.file else { return };
        let mut buf = [0u8; 32];
        if let Some(v) = file
            .read_at(&mut buf, 0)
            .ok()
            .and_then(|n| std::str::from_utf8(&buf[..n]).ok()?.trim().parse::<u64>().ok())
        {
            self.max = Some(self.max.map_or(v, |m| m.max(v)));
        }
    }
}

/// The user peers run as: `nobody`, by number, since `FROM scratch` images have no /etc/passwd.
pub const PEER_USER: &str = "65534:65534";

/// How long each kind of engine call may take before the run gives up on it. Generous: a loaded engine is slow,
/// a hung one never answers.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
const CREATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
const START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
const ATTACH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
const INSPECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a SIGKILLed container's OOM flag is waited for: 10 looks 100 ms apart.
const OOM_EVENT_RETRIES: usize = 10;
const OOM_EVENT_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
const DISCONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
const KILL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Pausing or resuming a container: the engine freezes or thaws its cgroup.
const PAUSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// From the end of a container's output to the engine reporting its exit status.
const WAIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Building a `FROM scratch` image is copying one binary.
const BUILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// Removing every container and the network of a case (or of a run), which are removed side by side.
const SWEEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// How often a running container's memory use is read where the cgroup gives only the current use; a cgroup that
/// keeps its own peak is read less often (at 200 peers, reads four times a second were a twentieth of the runner).
const MEMORY_SAMPLING: std::time::Duration = std::time::Duration::from_millis(250);
const PEAK_SAMPLING: std::time::Duration = std::time::Duration::from_secs(1);

/// Case networks are /22 blocks of 10.216.0.0/13, a private range no other project is known to use: 512 of them,
/// each with room for 1020 peers (the bridge takes `.1`, the case's participant the last host).
const SUBNET_RANGE: Ipv4Addr = Ipv4Addr::new(10, 216, 0, 0);
const RANGE_BITS: u32 = 13;
const SUBNET_BITS: u32 = 22;
const SUBNETS: usize = 1 << (SUBNET_BITS - RANGE_BITS);

/// Every subnet a case's network may take, in the order to try them: from a place the run id and case decide, so
/// that the cases of a run start on different blocks, and concurrent runs rarely on the same one.
fn subnet_candidates(run_id: &str, case: usize) -> impl Iterator<Item = Ipv4Addr> {
    // FNV-1a: the same order for the same run everywhere.
    let hash = run_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let start = (hash as usize).wrapping_add(case);
    (0..SUBNETS).map(move |n| {
        let block = (start.wrapping_add(n) % SUBNETS) as u32;
        Ipv4Addr::from(u32::from(SUBNET_RANGE) + (block << (32 - SUBNET_BITS)))
    })
}

/// Creates a network on the first candidate the engine takes. One it refuses because another network holds an
/// overlapping subnet (another run's, or anyone's) is passed over; any other error ends the search.
async fn first_free_subnet<F, Fut>(
    candidates: impl Iterator<Item = Ipv4Addr>,
    mut create: F,
) -> anyhow::Result<Ipv4Addr>
where
    F: FnMut(Ipv4Addr) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut taken = 0;
    for subnet in candidates {
        match create(subnet).await {
            Ok(()) => return Ok(subnet),
            Err(e) if overlaps(&e) => taken += 1,
            Err(e) => return Err(e),
        }
    }
    bail!(
        "no free /{SUBNET_BITS} in {SUBNET_RANGE}/{RANGE_BITS} on this engine ({taken} taken by other networks)"
    )
}

/// Whether the engine refused a subnet because another network overlaps it ("Pool overlaps with other one on this
/// address space", "networks have overlapping IPv4").
pub(super) fn overlaps(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<bollard::errors::Error>(),
            Some(bollard::errors::Error::DockerResponseServerError { message, .. })
                if message.to_ascii_lowercase().contains("overlap")
        )
    })
}

/// The host number of a case's participant (the UPnP gateway): the last of the block before its broadcast.
const PARTICIPANT_HOST: u32 = (1 << (32 - SUBNET_BITS)) - 2;

/// The fixed address of a case's participant: the last host of its subnet, which no peer takes.
fn participant_address(subnet: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet) + PARTICIPANT_HOST)
}

/// The fixed address of a case's `index`th started peer: host `index + 2` of its subnet.
fn peer_address(subnet: Ipv4Addr, index: usize) -> anyhow::Result<Ipv4Addr> {
    let host = index + 2;
    // The last hosts of the block are the participant's and the broadcast.
    if host >= PARTICIPANT_HOST as usize {
        bail!("too many peers in one case for a /{SUBNET_BITS}");
    }
    Ok(Ipv4Addr::from(u32::from(subnet) + host as u32))
}

/// Runs one engine call bounded by `limit` and, when given, by `cancel`. Every error names the call and what it
/// was about (`what`: "creating container meshgate-...").
pub(super) async fn bounded<T, E>(
    what: &str,
    limit: std::time::Duration,
    cancel: Option<&tokio_util::sync::CancellationToken>,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: Into<anyhow::Error>,
{
    let cancelled = async {
        match cancel {
            Some(c) => c.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = tokio::time::timeout(limit, call) => match r {
            Ok(r) => r.map_err(|e| e.into().context(format!("{what} failed"))),
            Err(_) => Err(anyhow!(
                "{what}: the Docker engine did not answer within {}",
                humantime::format_duration(limit)
            )),
        },
        _ = cancelled => Err(anyhow!("{what}: interrupted")),
    }
}

/// 409 to a kill: the container has exited already, which is what the kill was for.
pub(super) fn is_not_running(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { status_code: 409, message } if message.contains("is not running")
    )
}

/// How often removing an overlay network is tried while its services' endpoints go (every 500 ms)...
const NETWORK_TRIES: u32 = 60;
/// Containers removed side by side.
const REMOVALS_AT_ONCE: usize = 16;
/// ...and a bridge network's, after its containers (a few seconds at most when hundreds were removed at once).
const BRIDGE_NETWORK_TRIES: u32 = 10;

/// The engine says the network it was asked to remove is not there (any status).
fn network_gone(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { message, .. } if message.starts_with("network ") && message.ends_with(" not found")
    )
}

/// The engine refused to remove a network that still has endpoints.
fn has_endpoints(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError { message, .. } if message.contains("active endpoints")
    )
}

pub(super) fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(message: &str) -> anyhow::Error {
        anyhow::Error::new(bollard::errors::Error::DockerResponseServerError {
            status_code: 403,
            message: message.into(),
        })
        .context("creating network x failed")
    }

    #[test]
    fn subnet_candidates_cover_the_range_once_from_a_place_per_run_and_case() {
        let all: Vec<Ipv4Addr> = subnet_candidates("1a2b", 0).collect();
        assert_eq!(all.len(), 512);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 512);
        for s in &all {
            let bits = u32::from(*s);
            assert_eq!(bits & 0x3ff, 0, "{s} is a /22");
            assert_eq!(
                bits >> 19,
                u32::from(SUBNET_RANGE) >> 19,
                "{s} in 10.216.0.0/13"
            );
        }
        // The same order for the same run; the next case starts on the next block, and wraps.
        assert_eq!(subnet_candidates("1a2b", 0).collect::<Vec<_>>(), all);
        let next: Vec<Ipv4Addr> = subnet_candidates("1a2b", 1).collect();
        assert_eq!(next[0], all[1]);
        assert_eq!(next[511], all[0]);
        assert_ne!(subnet_candidates("1a2c", 0).next(), Some(all[0]));
    }

    #[test]
    fn peers_get_hosts_from_two_on() {
        let subnet = Ipv4Addr::new(10, 216, 4, 0);
        assert_eq!(
            peer_address(subnet, 0).unwrap(),
            Ipv4Addr::new(10, 216, 4, 2)
        );
        assert_eq!(
            peer_address(subnet, 300).unwrap(),
            Ipv4Addr::new(10, 216, 5, 46)
        );
        assert_eq!(
            peer_address(subnet, 1019).unwrap(),
            Ipv4Addr::new(10, 216, 7, 253)
        );
        assert!(peer_address(subnet, 1020).is_err(), "the participant's address");
        assert_eq!(participant_address(subnet), Ipv4Addr::new(10, 216, 7, 254));
    }

    #[tokio::test]
    async fn a_subnet_another_network_holds_is_passed_over() {
        let candidates = || subnet_candidates("1a2b", 3);
        let expected: Vec<Ipv4Addr> = candidates().take(3).collect();
        let tried = Mutex::new(Vec::new());
        let got = first_free_subnet(candidates(), |s| {
            tried.lock().unwrap().push(s);
            let n = tried.lock().unwrap().len();
            async move {
                match n {
                    1 => Err(refused("Pool overlaps with other one on this address space")),
                    2 => Err(refused("cannot create network y: conflicts with network z: networks have overlapping IPv4")),
                    _ => Ok(()),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(got, expected[2]);
        assert_eq!(*tried.lock().unwrap(), expected);

        // Any other refusal ends the search at once.
        let mut calls = 0;
        let e = first_free_subnet(candidates(), |_| {
            calls += 1;
            async { Err(refused("permission denied")) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(format!("{e:#}").contains("permission denied"), "{e:#}");

        // Every block taken: said so, after trying each once.
        let mut calls = 0;
        let e = first_free_subnet(candidates(), |_| {
            calls += 1;
            async {
                Err(refused(
                    "Pool overlaps with other one on this address space",
                ))
            }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 512);
        assert_eq!(
            e.to_string(),
            "no free /22 in 10.216.0.0/13 on this engine (512 taken by other networks)"
        );
    }

    #[tokio::test]
    async fn a_hung_engine_call_times_out_naming_the_call() {
        let hung = std::future::pending::<Result<(), bollard::errors::Error>>();
        let e = bounded(
            "creating container meshgate-1-c0-go-1",
            std::time::Duration::from_millis(50),
            None,
            hung,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "creating container meshgate-1-c0-go-1: the Docker engine did not answer within 50ms"
        );
    }

    #[tokio::test]
    async fn a_cancelled_engine_call_returns_at_once() {
        let cancel = tokio_util::sync::CancellationToken::new();
        let hung = std::future::pending::<Result<(), bollard::errors::Error>>();
        let started = std::time::Instant::now();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            c.cancel();
        });
        let e = bounded("starting container x", CREATE_TIMEOUT, Some(&cancel), hung)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "starting container x: interrupted");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // An engine error keeps its cause, under the call's name.
        let failed = async { Err::<(), _>(anyhow!("no such image")) };
        let e = bounded("creating container y", CREATE_TIMEOUT, None, failed)
            .await
            .unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "creating container y failed: no such image"
        );
    }
}
