//! The Docker backend: every peer in its own container, every case on its own internal bridge network.
//!
//! Every object carries labels naming the run and its owner process, so that a run removes exactly its own, and
//! the next run can tell leftovers of a dead run from objects of a live one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{LazyLock, Mutex};

use anyhow::{anyhow, bail, Context as _};
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, HostConfig, NetworkCreateRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, BuildImageOptionsBuilder, CreateContainerOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::lines::LineBuffer;
use super::owner::{
    evidence_says_alive, judge, owner_of, parse_rfc3339, unix_now, Evidence, Unremoved, Verdict,
};
use super::{Backend, Output, PeerLaunch, PeerProcess};
use crate::images::Recipe;

pub const LABEL_RUN: &str = "io.meshgate.run";
/// `<boot id>:<pid namespace>:<pid>:<start time>` of the process that owns the run ([`super::owner`]).
pub const LABEL_OWNER: &str = "io.meshgate.owner";
pub const LABEL_CASE: &str = "io.meshgate.case";
pub const LABEL_HASH: &str = "io.meshgate.recipe-hash";

/// Runs for which this process reached an engine: only they can have left objects there.
static CONNECTED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

/// Containers and networks, as listed.
#[derive(Default)]
struct Labelled {
    containers: Vec<bollard::models::ContainerSummary>,
    networks: Vec<bollard::models::Network>,
}

pub struct DockerBackend {
    api: Docker,
    run_id: String,
    owner: String,
}

impl DockerBackend {
    /// Connects to the local engine and agrees on an API version, or says plainly that there is none.
    pub async fn connect(run_id: &str) -> anyhow::Result<Self> {
        let hint = "start one (Debian: `apt-get install -y docker.io && dockerd &`), or let `bin/meshgate` do it";
        let api = Docker::connect_with_local_defaults()
            .map_err(|e| anyhow!("no Docker engine configured ({e}); {hint}"))?;
        let api = api
            .negotiate_version()
            .await
            .map_err(|e| anyhow!("no Docker engine reachable ({e}); {hint}"))?;
        api.ping()
            .await
            .map_err(|e| anyhow!("the Docker engine does not answer ({e}); {hint}"))?;
        CONNECTED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run_id.to_owned());
        Ok(Self {
            api,
            run_id: run_id.to_owned(),
            owner: owner_of(std::process::id()).unwrap_or_default(),
        })
    }

    fn labels(&self, case: Option<usize>) -> HashMap<String, String> {
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

    /// Lists the containers and networks whose label matches `filter` (`key=value` or `key`).
    async fn list_labelled(&self, filter: String) -> anyhow::Result<Labelled> {
        let filters = HashMap::from([("label".to_string(), vec![filter])]);
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
            containers,
            networks,
        })
    }

    /// Removes exactly the listed objects (not what appeared since), containers first: a network with endpoints
    /// cannot go. Goes through all of them, and names each one that could not be removed ([`Unremoved`]).
    async fn remove_objects(&self, objects: &Labelled) -> anyhow::Result<usize> {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let doomed: Vec<(&str, String)> = objects
            .containers
            .iter()
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
        let results = futures_util::future::join_all(
            doomed
                .iter()
                .map(|(id, _)| self.api.remove_container(id, Some(opts.clone()))),
        )
        .await;
        let (mut removed, mut errors) = (0, Vec::new());
        for ((_, name), r) in doomed.iter().zip(results) {
            match r {
                Ok(()) => removed += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => errors.push(anyhow::Error::new(e).context(format!("container {name}"))),
            }
        }
        for n in &objects.networks {
            let Some(id) = &n.id else { continue };
            match self.api.remove_network(id).await {
                Ok(()) => removed += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => errors.push(
                    anyhow::Error::new(e)
                        .context(format!("network {}", n.name.clone().unwrap_or(id.clone()))),
                ),
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
        self.remove_objects(&objects).await
    }

    /// Removes every object meshgate made on this engine, live runs or not (`meshgate clean`).
    pub async fn remove_all(&self) -> anyhow::Result<usize> {
        self.remove_labelled(LABEL_RUN.into(), |_| false).await
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
        // An unknown time might be the newest: then the age is unknown, which counts as young.
        let newest = times
            .into_iter()
            .try_fold(i64::MIN, |m, t| t.map(|t| m.max(t)));
        Evidence { running, newest }
    }

    async fn image_exists(&self, tag: &str) -> bool {
        self.api.inspect_image(tag).await.is_ok()
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
        while let Some(item) = stream.next().await {
            let info = item.with_context(|| format!("building image {tag}"))?;
            if let Some(detail) = info.error_detail {
                bail!(
                    "building image {tag}: {}",
                    detail.message.unwrap_or_default()
                );
            }
        }
        if !self.image_exists(&tag).await {
            bail!("building image {tag} ended without an image");
        }
        Ok(())
    }

    async fn create_network(&self, case: usize, case_name: &str) -> anyhow::Result<()> {
        let mut labels = self.labels(Some(case));
        labels.insert("io.meshgate.case-name".into(), case_name.into());
        let req = NetworkCreateRequest {
            name: self.network_name(case),
            driver: Some("bridge".into()),
            // Internal: the peers reach each other and nothing else.
            internal: Some(true),
            labels: Some(labels),
            ..Default::default()
        };
        self.api
            .create_network(req)
            .await
            .with_context(|| format!("cannot create network {}", self.network_name(case)))?;
        Ok(())
    }

    async fn start_peer(&self, case: usize, launch: PeerLaunch) -> anyhow::Result<PeerProcess> {
        let name = format!("meshgate-{}-c{case}-{}", self.run_id, launch.name);
        let network = self.network_name(case);
        let body = ContainerCreateBody {
            image: Some(launch.recipe.image_tag()),
            env: Some(vec![format!(
                "MESHGATE_PEER_CONFIG={}",
                launch.config.to_json()
            )]),
            labels: Some(self.labels(Some(case))),
            open_stdin: Some(true),
            stdin_once: Some(false),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            host_config: Some(HostConfig {
                network_mode: Some(network.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .api
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .with_context(|| format!("cannot create container {name}"))?;
        let id = created.id;
        // Attach before start, so that not a byte of output is lost.
        let attach = AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .logs(true)
            .build();
        let io = self
            .api
            .attach_container(&id, Some(attach))
            .await
            .with_context(|| format!("cannot attach to {name}"))?;
        self.api
            .start_container(&id, None)
            .await
            .with_context(|| format!("cannot start container {name}"))?;
        let inspect = self.api.inspect_container(&id, None).await?;
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
        let address = inspect
            .network_settings
            .and_then(|s| s.networks)
            .and_then(|n| n.get(&network).cloned())
            .and_then(|e| e.ip_address)
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, launch.config.listen_port));
        let address = match (address, running) {
            (Some(a), _) => a,
            // It has exited already (say, `unsupported` at start): its output and exit status tell why.
            (None, false) => SocketAddr::new(IpAddr::from([0, 0, 0, 0]), launch.config.listen_port),
            (None, true) => bail!("container {name} has no address on {network}"),
        };

        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(pump_output(self.api.clone(), id.clone(), io.output, tx));
        Ok(PeerProcess {
            id,
            address,
            pid,
            stdin: io.input,
            output: rx,
        })
    }

    async fn isolate(&self, case: usize, id: &str) -> anyhow::Result<()> {
        let network = self.network_name(case);
        let req = NetworkDisconnectRequest {
            container: id.to_owned(),
            force: Some(true),
        };
        self.api
            .disconnect_network(&network, req)
            .await
            .with_context(|| format!("cannot disconnect {id} from {network}"))
    }

    async fn kill(&self, id: &str) {
        let opts = KillContainerOptionsBuilder::default()
            .signal("KILL")
            .build();
        // It may be gone already; either way it is not running afterwards.
        let _ = self.api.kill_container(id, Some(opts)).await;
    }

    async fn remove_case(&self, case: usize) -> anyhow::Result<()> {
        let run = self.run_id.clone();
        self.remove_labelled(format!("{LABEL_CASE}={case}"), |l| {
            l.get(LABEL_RUN) != Some(&run)
        })
        .await?;
        Ok(())
    }

    /// Removes what runs whose owner is gone left behind; objects of live runs stay. Runs are judged whole, by
    /// their owner where it can be seen from here, else by what they left ([`super::owner`] has the rule).
    async fn remove_stale(&self) -> anyhow::Result<usize> {
        let all = self.list_labelled(LABEL_RUN.into()).await?;
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
        Unremoved::into_result(errors).map(|()| removed)
    }

    async fn remove_run(&self) -> anyhow::Result<()> {
        self.remove_labelled(format!("{LABEL_RUN}={}", self.run_id), |_| false)
            .await?;
        Ok(())
    }
}

type OutputStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
>;

/// Splits the attached stream into lines per channel, then reports the exit status.
async fn pump_output(api: Docker, id: String, mut output: OutputStream, tx: mpsc::Sender<Output>) {
    let mut out = LineBuffer::default();
    let mut err = LineBuffer::default();
    while let Some(Ok(chunk)) = output.next().await {
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
    let code = match api.wait_container(&id, None).next().await {
        Some(Ok(r)) => Some(r.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
        _ => None,
    };
    let _ = tx.send(Output::Exited(code)).await;
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
