//! The per-case overhead: how long the runner takes to bring a case's peers up (from the case's start until every
//! peer listens and both ends of every topology edge report the connection) and to take them down (from the first
//! `stop` until everything is removed), against the bare cost of as many `FROM scratch` containers created,
//! started, waited for and removed through the same engine, measured right after each case.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use futures_util::StreamExt;
use serde::Serialize;

use super::figures::{median, ms};
use super::{between, matrices, Plan, Runner};
use crate::backend::docker::{DockerBackend, LABEL_RUN};
use crate::backend::Backend;
use crate::results::CouldNotRun;

/// The overhead at one network size: medians over the repeats, each ratio taken within one repeat.
#[derive(Debug, Serialize)]
pub struct Overhead {
    pub peers: usize,
    pub repeats: usize,
    /// Case start until every peer listened and every edge connected.
    pub setup_ms: Option<f64>,
    /// Of which: case start until every peer listened.
    pub listening_ms: Option<f64>,
    /// The last scenario step until everything was removed; it includes the matrix's drain.
    pub teardown_ms: Option<f64>,
    /// Of which: the first `stop` until everything was removed (the drain excluded).
    pub stop_remove_ms: Option<f64>,
    /// Of which: the peers' exits after `stop` (the last exit), and the removal of the containers and network.
    pub stop_ms: Option<f64>,
    pub remove_ms: Option<f64>,
    /// Bare containers: network made, each created and started.
    pub bare_up_ms: Option<f64>,
    /// Bare containers: each waited for, removed, and the network removed.
    pub bare_down_ms: Option<f64>,
    /// setup / bare up.
    pub setup_ratio: Option<f64>,
    /// stop-and-remove / bare down.
    pub teardown_ratio: Option<f64>,
    /// (setup + stop-and-remove) / (bare up + bare down).
    pub ratio: Option<f64>,
    /// The image the bare containers ran (a peer image, started without a configuration: it exits at once, 2).
    pub bare_image: Option<String>,
}

/// One repeat's figures.
#[derive(Default)]
struct Sample {
    setup: Option<f64>,
    listening: Option<f64>,
    teardown: Option<f64>,
    stop_remove: Option<f64>,
    stop: Option<f64>,
    remove: Option<f64>,
    bare: Option<Bare>,
}

#[derive(Clone, Copy)]
struct Bare {
    up_ms: f64,
    down_ms: f64,
}

pub(super) async fn measure(
    runner: &Runner<'_>,
    docker: &DockerBackend,
    plan: &Plan,
    problems: &mut Vec<String>,
) -> Result<Vec<Overhead>, CouldNotRun> {
    let mut all = Vec::new();
    for &n in &plan.overhead_peers {
        let mut samples = Vec::new();
        let mut image = None;
        for r in 0..plan.repeat {
            let ran = runner.run_yaml(&format!("overhead-{n}"), &matrices::overhead(n)).await?;
            problems.extend(ran.problems.iter().cloned());
            let kept = match ran.only_case() {
                Ok(k) => k,
                Err(e) => {
                    problems.push(format!("overhead at {n} peers: {e}"));
                    continue;
                }
            };
            let f = &kept.figures;
            let mut s = Sample {
                setup: between(Some(f.started), f.connected),
                listening: between(Some(f.started), f.listening),
                teardown: between(f.last_step, Some(f.ended)),
                stop_remove: between(f.first_stop, Some(f.ended)),
                stop: between(f.first_stop, f.last_exit),
                remove: ran.results.cases[0].phases.map(|p| p.clean_up_ms as f64),
                bare: None,
            };
            if s.setup.is_none() {
                problems.push(format!("overhead at {n} peers, repeat {}: not every edge connected", r + 1));
            }
            let tag = ran.results.cases.iter().flat_map(|c| &c.peers).map(|p| p.image.clone()).next();
            if let Some(tag) = tag {
                match bare(docker, &tag, n, 10_000 + n * 100 + r as usize).await {
                    Ok(b) => s.bare = Some(b),
                    Err(e) => problems.push(format!("bare containers at {n}: {e:#}")),
                }
                image = Some(tag);
            }
            samples.push(s);
        }
        all.push(summarise(n, &samples, image));
    }
    Ok(all)
}

fn summarise(peers: usize, samples: &[Sample], bare_image: Option<String>) -> Overhead {
    let med = |f: &dyn Fn(&Sample) -> Option<f64>| median(samples.iter().filter_map(f));
    let ratio = |a: Option<f64>, b: f64| a.map(|a| a / b);
    Overhead {
        peers,
        repeats: samples.len(),
        setup_ms: med(&|s| s.setup),
        listening_ms: med(&|s| s.listening),
        teardown_ms: med(&|s| s.teardown),
        stop_remove_ms: med(&|s| s.stop_remove),
        stop_ms: med(&|s| s.stop),
        remove_ms: med(&|s| s.remove),
        bare_up_ms: med(&|s| s.bare.map(|b| b.up_ms)),
        bare_down_ms: med(&|s| s.bare.map(|b| b.down_ms)),
        setup_ratio: med(&|s| ratio(s.setup, s.bare?.up_ms)),
        teardown_ratio: med(&|s| ratio(s.stop_remove, s.bare?.down_ms)),
        ratio: med(&|s| {
            let b = s.bare?;
            Some((s.setup? + s.stop_remove?) / (b.up_ms + b.down_ms))
        }),
        bare_image,
    }
}

/// `n` containers of `image` on an internal network of their own, labelled as the run's (so that the run's clean-up
/// removes them whatever happens): made and started one after the other as a case's peers are, then waited for
/// and removed all at once as a case's are. The image is a peer's, started without a configuration, so it exits
/// at once (status 2): what is timed is the engine's work, not the peer's.
async fn bare(docker: &DockerBackend, image: &str, n: usize, slot: usize) -> anyhow::Result<Bare> {
    let result = bare_unswept(docker, image, n, slot).await;
    if result.is_err() {
        // What a failed round left: its containers and network carry the slot as their case.
        let _ = docker.remove_case(slot).await;
    }
    result
}

async fn bare_unswept(docker: &DockerBackend, image: &str, n: usize, slot: usize) -> anyhow::Result<Bare> {
    let api = docker.api();
    let labels: HashMap<String, String> = docker.labels(Some(slot));
    let run = labels.get(LABEL_RUN).cloned().unwrap_or_default();
    let network = format!("meshgate-{run}-bare{slot}");
    let timeout = Duration::from_secs(120);
    let up = Instant::now();
    let net = NetworkCreateRequest {
        name: network.clone(),
        driver: Some("bridge".into()),
        internal: Some(true),
        labels: Some(labels.clone()),
        ..Default::default()
    };
    tokio::time::timeout(timeout, api.create_network(net))
        .await
        .context("creating a network timed out")??;
    let mut ids = Vec::new();
    for k in 0..n {
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            labels: Some(labels.clone()),
            user: Some("65534:65534".into()),
            host_config: Some(HostConfig {
                network_mode: Some(network.clone()),
                cap_drop: Some(vec!["ALL".into()]),
                readonly_rootfs: Some(true),
                security_opt: Some(vec!["no-new-privileges".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("{network}-{k}");
        let create = api.create_container(Some(CreateContainerOptionsBuilder::default().name(&name).build()), body);
        let id = tokio::time::timeout(timeout, create)
            .await
            .context("creating a container timed out")??
            .id;
        tokio::time::timeout(timeout, api.start_container(&id, None))
            .await
            .context("starting a container timed out")??;
        ids.push(id);
    }
    let up_ms = ms(up.elapsed().as_micros() as i64);
    let down = Instant::now();
    let waits = ids.iter().map(|id| async move {
        match api.wait_container(id, None).next().await {
            // A non-zero status comes as this error: the exit it waited for.
            Some(Ok(_)) | None | Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) => Ok(()),
            Some(Err(e)) => Err(anyhow::Error::new(e)),
        }
    });
    tokio::time::timeout(timeout, futures_util::future::try_join_all(waits))
        .await
        .context("waiting for the containers timed out")??;
    let opts = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
    let removals = ids.iter().map(|id| api.remove_container(id, Some(opts.clone())));
    tokio::time::timeout(timeout, futures_util::future::try_join_all(removals))
        .await
        .context("removing the containers timed out")??;
    tokio::time::timeout(timeout, api.remove_network(&network))
        .await
        .context("removing the network timed out")??;
    Ok(Bare {
        up_ms,
        down_ms: ms(down.elapsed().as_micros() as i64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_taken_within_a_repeat_then_their_median() {
        let sample = |setup, stop, up, down| Sample {
            setup: Some(setup),
            listening: Some(setup / 2.0),
            teardown: Some(stop + 1000.0),
            stop_remove: Some(stop),
            stop: Some(stop / 2.0),
            remove: Some(stop / 4.0),
            bare: Some(Bare { up_ms: up, down_ms: down }),
        };
        // A slow repeat (the machine busy) is slow for both: its ratio stays.
        let o = summarise(
            10,
            &[sample(200.0, 100.0, 100.0, 100.0), sample(2000.0, 1000.0, 1000.0, 1000.0), sample(300.0, 100.0, 100.0, 50.0)],
            None,
        );
        assert_eq!(o.setup_ratio, Some(2.0));
        assert_eq!(o.teardown_ratio, Some(1.0));
        assert_eq!(o.ratio, Some(1.5));
        assert_eq!(o.setup_ms, Some(300.0));
        let none = summarise(2, &[Sample { bare: None, ..sample(1.0, 1.0, 1.0, 1.0) }], None);
        assert_eq!((none.ratio, none.bare_up_ms), (None, None));
    }
}
