//! A run's life on a backend: which backend, the id that names everything the run makes there, the images its
//! cases need, and the removal of all of it on every exit path.

use std::collections::BTreeMap;
use std::path::Path;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::docker::DockerBackend;
use super::local;
use super::Backend;
use crate::cases::{BuildSpec, Case};
use crate::events::now_micros;
use crate::images::{cache_dir, project_root, Recipe, Recipes};
use crate::progress::Progress;

/// Where the peers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// Docker when an engine answers, else local processes.
    Auto,
    /// A container per peer.
    Docker,
    /// A process per peer on this machine.
    Local,
    /// A Docker swarm service per peer, on an overlay network across the swarm's nodes (docs/scale-out.md).
    Swarm,
}

/// The Docker backend when the choice takes it: `Docker` insists (no engine is an error), `Auto` takes it when an
/// engine answers, `Local` and `Swarm` never.
pub async fn docker_for(choice: BackendChoice, run_id: &str) -> anyhow::Result<Option<DockerBackend>> {
    Ok(match choice {
        BackendChoice::Local | BackendChoice::Swarm => None,
        BackendChoice::Docker => Some(DockerBackend::connect(run_id).await?),
        BackendChoice::Auto => DockerBackend::connect(run_id)
            .await
            .inspect_err(|e| tracing::info!("no Docker engine: {e:#}"))
            .ok(),
    })
}

/// A unique, short run id; it names every object the run makes on the engine.
pub fn new_run_id() -> String {
    format!(
        "{:x}{:x}",
        now_micros() % 0x1_0000_0000,
        std::process::id() % 0x1000
    )
}

/// Builds (or finds) the image of every build the cases use. A build that fails is returned with its reason, and
/// fails only the cases that need it; an interruption or a broken engine fails the run.
pub async fn prepare_images<B: Backend>(
    backend: &B,
    cases: &[Case],
    out: &Path,
    progress: &Progress,
    cancel: &CancellationToken,
    jobs: usize,
) -> anyhow::Result<(Recipes, BTreeMap<BuildSpec, String>)> {
    let root = project_root();
    let cache = cache_dir();
    // A case that cannot be built as asked is skipped: nothing of it is built.
    let specs: std::collections::BTreeSet<BuildSpec> = cases
        .iter()
        .filter(|c| c.unsupported.is_none())
        .flat_map(|c| c.peers.iter().map(|p| p.build.clone()))
        .collect();
    // Independent builds run `jobs` at a time; each ends in its recipe, or in the reason it did not build.
    let builds = specs.into_iter().map(|spec| {
        let (root, cache) = (&root, &cache);
        async move {
            let recipe = match Recipe::load(root, &spec) {
                Ok(r) => r,
                Err(e) => return Ok((spec, Err(format!("{e:#}")))),
            };
            if !backend.prepared(&recipe).await {
                let log = out.join(format!("build-{}.log", recipe.label().replace(' ', "-")));
                progress.line(format!(
                    "building the {} peer ({}); its build log is {}",
                    recipe.label(),
                    recipe.image_tag(),
                    log.display()
                ));
                progress.status(format!("building the {} peer", recipe.label()));
                let what = format!("the {} peer", recipe.label());
                let binary = tokio::select! {
                    b = progress.while_building(&what, &log, recipe.binary(cache, &log)) => b,
                    _ = cancel.cancelled() => anyhow::bail!("interrupted while building the {} peer", recipe.label()),
                };
                match binary {
                    Ok(binary) => backend.prepare(&recipe, &binary).await?,
                    Err(e) => {
                        progress.line(format!("the {} peer did not build: {e:#}", recipe.label()));
                        return Ok((spec, Err(format!("{e:#}"))));
                    }
                }
            }
            anyhow::Ok((spec, Ok(recipe)))
        }
    });
    // The gateway emulator, once, when a case has one and the backend can run it.
    let gateway = async {
        if backend.cannot_run_participants().is_some() || !cases.iter().any(|c| c.gateway.is_some()) {
            return Ok(());
        }
        let recipe = match crate::images::gateway_recipe() {
            Ok(r) => r,
            Err(e) => {
                progress.line(format!("the {} has no recipe: {e}", crate::images::GATEWAY));
                return Ok(());
            }
        };
        if backend.prepared(&recipe).await {
            return Ok(());
        }
        let log = out.join(format!("build-{}.log", recipe.name()));
        progress.line(format!(
            "building the {} ({}); its build log is {}",
            recipe.what(),
            recipe.image_tag(),
            log.display()
        ));
        let what = format!("the {}", recipe.what());
        let binary = tokio::select! {
            b = progress.while_building(&what, &log, recipe.binary(&cache, &log)) => b,
            _ = cancel.cancelled() => anyhow::bail!("interrupted while building the {}", recipe.what()),
        };
        match binary {
            Ok(binary) => backend.prepare(&recipe, &binary).await,
            // Its cases error, saying the image was not built.
            Err(e) => {
                progress.line(format!("the {} did not build: {e:#}", recipe.what()));
                Ok(())
            }
        }
    };
    gateway.await?;
    let mut builds = futures_util::stream::iter(builds).buffer_unordered(jobs.max(1));
    let (mut recipes, mut broken) = (BTreeMap::new(), BTreeMap::new());
    while let Some(built) = builds.next().await {
        match built? {
            (spec, Ok(recipe)) => {
                recipes.insert(spec, recipe);
            }
            (spec, Err(why)) => {
                broken.insert(spec, why);
            }
        }
    }
    Ok((recipes, broken))
}

/// Removes everything the run made, whatever state the run ended in (`main` calls it on every path). It does not
/// need the run's backend value, which an aborted or panicked run no longer has. Returns every object that could
/// not be removed, one error each, each naming the object (`container ...`, `namespace ...`).
pub async fn clean_up(run_id: &str, choice: BackendChoice) -> Vec<anyhow::Error> {
    let mut errors = Vec::new();
    let split = |e: anyhow::Error, what: &str| match e.downcast::<local::Unremoved>() {
        Ok(u) => u.0,
        Err(e) => vec![e.context(what.to_owned())],
    };
    if choice != BackendChoice::Local {
        // An engine this run never reached cannot hold anything of it.
        let reached = DockerBackend::connected_for(run_id);
        match DockerBackend::connect(run_id).await {
            Ok(b) => {
                if let Err(e) = b.remove_run().await {
                    errors.extend(split(e, "the run's containers and networks"));
                }
            }
            Err(e) if reached => {
                errors.push(e.context("the run's containers and networks"));
            }
            Err(_) => {}
        }
    }
    if choice != BackendChoice::Docker {
        if let Err(e) = local::clean_up_run(run_id).await {
            errors.extend(split(e, "the run's local processes and namespaces"));
        }
    }
    errors
}
