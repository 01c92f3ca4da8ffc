//! The faults of the time line, as the driver makes them: kill, restart, pause and resume through the backend;
//! partitions and shaping inside the peers' own network namespaces ([`crate::backend::netfault`]). Every fault is
//! recorded as applied, kept while it lasts, and undone when it is lifted, when the case ends, or when the driver
//! is dropped (an interrupted or panicking case).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{anyhow, bail};

use super::{bounded, Driver, START_TIMEOUT, STOP_TIMEOUT};
use crate::backend::netfault::{self, Applied, Netns, Shaping};
use crate::backend::Backend;
use crate::events::{Command, Fault, Observation};
use crate::matrix::timeline::{self, Action, Rejoin};
use crate::scenario::{Scenario, Timed};
use contract::commands::DialMode as Dial;

/// A network fault in force: what it is, so that it can be made again in a restarted peer's new namespace, and
/// its handle, which undoes it.
pub(super) struct InForce {
    pub peer: usize,
    pub kind: Kind,
    pub applied: Option<Applied>,
}

/// Making one network fault, on a blocking thread.
type MakeFault = Box<dyn FnOnce() -> anyhow::Result<Applied> + Send>;

#[derive(Clone)]
pub(super) enum Kind {
    /// The peer drops every packet to and from these peers.
    Partition(Vec<usize>),
    Shape(timeline::Shape),
    /// SSDP searches sent to the case's gateway (`netfault::multicast_route`): not a fault, but made, kept and
    /// undone the same way.
    Multicast,
    /// New inbound connections to the peer refused (a `private` peer; its listen port): likewise.
    Refuse(u16),
}

impl<B: Backend> Driver<'_, B> {
    /// Why this case's faults cannot be made where it runs, if they cannot: asked once every peer has started, so
    /// that such a case is skipped with the reason instead of being judged without its faults.
    pub(super) fn cannot_make(&self, scenario: &Scenario) -> Option<String> {
        let case = self.case;
        if scenario.has(|a| matches!(a, Action::Pause)) {
            if let Some(why) = self.backend.cannot_pause() {
                return Some(format!("pause cannot be made here: {why}"));
            }
        }
        if scenario.has(|a| matches!(a, Action::Restart)) {
            if let Some(why) = self.backend.cannot_restart() {
                return Some(format!("restart cannot be made here: {why}"));
            }
        }
        let network = scenario.has(|a| matches!(a, Action::Partition(_) | Action::Shape(_)));
        if !network {
            return None;
        }
        if let Some(why) = tools_missing() {
            return Some(format!("network faults cannot be made here: {why}"));
        }
        let shapes: Vec<&timeline::Shape> = scenario
            .timeline
            .iter()
            .filter_map(|t| match &t.what {
                crate::scenario::What::Peer {
                    action: Action::Shape(s),
                    ..
                } => Some(s),
                _ => None,
            })
            .collect();
        if shapes.iter().any(|s| s.duplicate.is_some_and(|d| d > 0.0)) {
            return Some(
                "shape: duplication cannot be made on the NFQUEUE delay line meshgate shapes traffic with".into(),
            );
        }
        if !shapes.is_empty() {
            let path = shaping_path();
            if !path.usable() {
                return Some(format!("shaping cannot be made here: {}", path.describe()));
            }
        }
        for (i, p) in self.peers.iter().enumerate() {
            let Some(process) = p.process.as_ref() else { continue };
            if let Err(why) = self.backend.netns(process) {
                return Some(format!(
                    "network faults cannot be made to {}: {why}",
                    case.peers[i].name
                ));
            }
        }
        None
    }

    /// Why what a case holds in its peers' namespaces (multicast routes for its gateway, refusals for its
    /// `private` peers) cannot be made here, if it cannot.
    pub(super) fn cannot_hold(&self) -> Option<String> {
        let gateway = super::participants::gateway_quirk(self.case).is_some();
        let private = !super::participants::private_peers(self.case).is_empty();
        if !gateway && !private {
            return None;
        }
        if gateway {
            if let Some(why) = self.backend.cannot_run_participants() {
                return Some(why);
            }
        }
        let what = if gateway { "the gateway's multicast routes" } else { "`private`'s firewall" };
        tools_missing().map(|why| format!("{what} cannot be made here: {why}"))
    }

    /// A fault made to one peer.
    pub(super) async fn peer_fault(&mut self, peer: usize, action: &Action, t: &Timed) -> anyhow::Result<()> {
        let step = t.origin.label();
        let name = self.case.peers[peer].name.clone();
        let Some(id) = self.peers[peer].process.as_ref().map(|p| p.id.clone()) else {
            return self.not_run(peer, t, format!("{name} was never started"));
        };
        let backend = self.backend;
        match action {
            Action::Kill => {
                if self.rec.world.exited(peer) {
                    return self.not_run(peer, t, format!("{name} is not running"));
                }
                // Its exit is the runner's doing: expected, not a crash.
                self.rec.world.stop_sent[peer] = true;
                self.record_fault(peer, Fault::Kill, &step);
                bounded(self.cancel.clone(), async {
                    backend.kill(&id).await;
                    Ok(())
                })
                .await?;
                let waited = self
                    .wait_until(STOP_TIMEOUT, &format!("{name} to exit after SIGKILL"), |w| w.exited(peer))
                    .await;
                self.go_on(waited)?;
                // Its namespace went with it: what was made there is gone (its delay lines stop here), and is made
                // again after a restart, so its faults stay in force without their handles.
                let (mut mine, others): (Vec<InForce>, Vec<InForce>) =
                    std::mem::take(&mut self.in_force).into_iter().partition(|f| f.peer == peer);
                let _ = self.undo(&mut mine).await;
                self.in_force = others.into_iter().chain(mine).collect();
            }
            Action::Restart => {
                if !self.rec.world.exited(peer) {
                    return self.not_run(peer, t, format!("{name} is running: `restart` follows a `kill`"));
                }
                let process = bounded(
                    self.cancel.clone(),
                    backend.restart_peer(self.case_index, &id, self.cancel.clone()),
                )
                .await?;
                self.rec.world.restarted(peer);
                self.attach(peer, process);
                self.record_fault(peer, Fault::Restart, &step);
                let waited = self
                    .wait_until(START_TIMEOUT, &format!("{name} to start again"), |w| {
                        w.ready(peer) || w.exited(peer)
                    })
                    .await;
                self.go_on(waited)?;
                self.make_again(peer).await?;
                if t.rejoin == Rejoin::Replay && self.rec.world.ready(peer) {
                    self.rejoin(peer, None, true).await;
                }
            }
            Action::Pause => {
                if self.rec.world.exited(peer) || self.rec.world.paused[peer] {
                    return self.not_run(peer, t, format!("{name} is not running"));
                }
                bounded(self.cancel.clone(), backend.pause(&id)).await?;
                self.rec.world.paused[peer] = true;
                self.record_fault(peer, Fault::Pause, &step);
            }
            Action::Resume => {
                if !self.rec.world.paused[peer] {
                    return self.not_run(peer, t, format!("{name} is not paused"));
                }
                bounded(self.cancel.clone(), backend.resume(&id)).await?;
                self.rec.world.paused[peer] = false;
                self.record_fault(peer, Fault::Resume, &step);
                if t.rejoin == Rejoin::Replay {
                    self.rejoin(peer, None, false).await;
                }
            }
            Action::Shape(shape) => {
                let kind = Kind::Shape(shape.clone());
                let applied = self.make(peer, &kind).await?;
                self.in_force.push(InForce {
                    peer,
                    kind,
                    applied: Some(applied),
                });
                self.record_fault(
                    peer,
                    Fault::Shape {
                        shape: shape.to_string(),
                        with: shape.with.clone(),
                    },
                    &step,
                );
            }
            Action::Unshape => {
                let lifted = self.lift(|f| f.peer == peer && matches!(f.kind, Kind::Shape(_))).await?;
                if lifted.is_empty() {
                    return self.not_run(peer, t, format!("{name} is not shaped"));
                }
                self.record_fault(peer, Fault::Unshape, &step);
            }
            other => bail!("`{}` is not a fault made to a peer", other.name()),
        }
        Ok(())
    }

    /// A fault made to the network: partition, heal.
    pub(super) async fn network_fault(&mut self, action: &Action, t: &Timed) -> anyhow::Result<()> {
        let step = t.origin.label();
        let case = self.case;
        match action {
            Action::Partition(groups) => {
                let groups: Vec<Vec<usize>> = groups
                    .iter()
                    .map(|g| g.iter().map(|n| self.index_of(n)).collect())
                    .collect();
                // Every peer's rules at once (off the async threads): the partition starts at one moment.
                let mut jobs = Vec::new();
                for (k, group) in groups.iter().enumerate() {
                    let others: Vec<usize> = groups
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != k)
                        .flat_map(|(_, g)| g.iter().copied())
                        .collect();
                    for &peer in group {
                        let kind = Kind::Partition(others.clone());
                        let job = tokio::task::spawn_blocking(self.job(peer, &kind)?);
                        jobs.push((peer, kind, job));
                    }
                }
                for (peer, kind, job) in jobs {
                    let name = &case.peers[peer].name;
                    let applied = job
                        .await?
                        .map_err(|e| anyhow!("making a fault in {name}'s namespace: {e:#}"))?;
                    let Kind::Partition(others) = &kind else { unreachable!("a partition") };
                    let from = others.iter().map(|&o| case.peers[o].name.clone()).collect();
                    self.in_force.push(InForce {
                        peer,
                        kind,
                        applied: Some(applied),
                    });
                    self.record_fault(peer, Fault::Partition { from }, &step);
                }
            }
            Action::Heal => {
                let lifted = self.lift(|f| matches!(f.kind, Kind::Partition(_))).await?;
                if lifted.is_empty() {
                    return self.not_run(0, t, "no partition to heal".into());
                }
                let mut healed: Vec<usize> = lifted.iter().map(|f| f.peer).collect();
                healed.dedup();
                for &peer in &healed {
                    self.record_fault(peer, Fault::Heal, &step);
                }
                if t.rejoin == Rejoin::Replay {
                    // The edges that crossed the partition are dialed again.
                    for f in &lifted {
                        if let Kind::Partition(others) = &f.kind {
                            self.rejoin(f.peer, Some(others), false).await;
                        }
                    }
                }
            }
            other => bail!("`{}` is not a fault made to the network", other.name()),
        }
        Ok(())
    }

    /// Makes a network fault in a peer's namespace (the commands block: they run off the async threads).
    async fn make(&mut self, peer: usize, kind: &Kind) -> anyhow::Result<Applied> {
        let job = self.job(peer, kind)?;
        let name = self.case.peers[peer].name.clone();
        tokio::task::spawn_blocking(job)
            .await?
            .map_err(|e| anyhow!("making a fault in {name}'s namespace: {e:#}"))
    }

    /// What making a network fault in a peer's namespace takes, ready to run on a blocking thread.
    fn job(&self, peer: usize, kind: &Kind) -> anyhow::Result<MakeFault> {
        let name = &self.case.peers[peer].name;
        let process = self.peers[peer]
            .process
            .as_ref()
            .ok_or_else(|| anyhow!("{name} was never started"))?;
        let ns = Netns::at(
            self.backend
                .netns(process)
                .map_err(|why| anyhow!("no network namespace of {name} to make a fault in: {why}"))?,
        );
        let address_of = |i: usize| -> anyhow::Result<Ipv4Addr> {
            match self.peers[i].process.as_ref().map(|p| p.address.ip()) {
                Some(IpAddr::V4(a)) => Ok(a),
                other => bail!("{} has no IPv4 address ({other:?})", self.case.peers[i].name),
            }
        };
        enum Job {
            Partition(Vec<Ipv4Addr>),
            Shape(Shaping),
            Multicast(Ipv4Addr),
            Refuse(u16),
        }
        let job = match kind {
            Kind::Partition(others) => Job::Partition(
                others
                    .iter()
                    .map(|&o| address_of(o))
                    .collect::<anyhow::Result<Vec<_>>>()?,
            ),
            Kind::Shape(shape) => {
                let remote = match &shape.with {
                    Some(w) => Some(address_of(self.index_of(w))?),
                    None => None,
                };
                Job::Shape(shaping_of(shape, remote))
            }
            Kind::Multicast => Job::Multicast(address_of(peer)?),
            Kind::Refuse(port) => Job::Refuse(*port),
        };
        Ok(Box::new(move || match job {
            Job::Partition(addrs) => netfault::partition(&ns, &addrs),
            Job::Shape(shaping) => netfault::shape(&ns, &shaping).map_err(anyhow::Error::from),
            Job::Multicast(address) => netfault::multicast_route(&ns, address),
            Job::Refuse(port) => netfault::refuse_inbound(&ns, port),
        }))
    }

    /// Makes what a case holds in a peer's namespace for as long as the peer runs (not a fault of the time line,
    /// not recorded as one): made again after a restart, undone at the end like the faults.
    pub(super) async fn hold(&mut self, peer: usize, kind: Kind) -> anyhow::Result<()> {
        let applied = self.make(peer, &kind).await?;
        self.in_force.push(InForce {
            peer,
            kind,
            applied: Some(applied),
        });
        Ok(())
    }

    /// After a restart: the network faults still in force on the peer, made again in its new namespace.
    async fn make_again(&mut self, peer: usize) -> anyhow::Result<()> {
        let kinds: Vec<(usize, Kind)> = self
            .in_force
            .iter()
            .enumerate()
            .filter(|(_, f)| f.peer == peer && f.applied.is_none())
            .map(|(k, f)| (k, f.kind.clone()))
            .collect();
        for (k, kind) in kinds {
            let applied = self.make(peer, &kind).await?;
            self.in_force[k].applied = Some(applied);
        }
        Ok(())
    }

    /// Lifts the faults in force that match, undoing them all at once; returns them. One that cannot be undone
    /// would stay while the record says it is gone: that is the case's error.
    async fn lift(&mut self, which: impl Fn(&InForce) -> bool) -> anyhow::Result<Vec<InForce>> {
        let (mut lifted, kept): (Vec<InForce>, Vec<InForce>) =
            std::mem::take(&mut self.in_force).into_iter().partition(|f| which(f));
        self.in_force = kept;
        match self.undo(&mut lifted).await {
            None => Ok(lifted),
            Some(failed) => bail!("{failed}"),
        }
    }

    /// Undoes every fault still in force (the end of the case); says what could not be undone.
    pub(super) async fn lift_all(&mut self) -> Option<String> {
        let mut all = std::mem::take(&mut self.in_force);
        self.undo(&mut all).await
    }

    /// Undoes the faults' handles off the async threads, all at once; says which could not be undone.
    async fn undo(&mut self, faults: &mut [InForce]) -> Option<String> {
        let jobs: Vec<_> = faults
            .iter_mut()
            .filter_map(|f| {
                let mut applied = f.applied.take()?;
                Some((f.peer, tokio::task::spawn_blocking(move || applied.undo())))
            })
            .collect();
        let mut failed = Vec::new();
        for (peer, job) in jobs {
            let name = &self.case.peers[peer].name;
            match job.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed.push(format!("{name}: {e:#}")),
                Err(e) => failed.push(format!("{name}: {e}")),
            }
        }
        (!failed.is_empty()).then(|| format!("faults could not be undone: {}", failed.join("; ")))
    }

    /// Why a fault in force stopped working (a delay line died), if one did: the case cannot be judged as if it
    /// had been made.
    pub(super) fn broken_fault(&self) -> Option<String> {
        self.in_force.iter().find_map(|f| {
            let why = f.applied.as_ref()?.health().err()?;
            Some(format!(
                "a fault of {} stopped working: {why}",
                self.case.peers[f.peer].name
            ))
        })
    }

    /// What a peer needs to rejoin: its dials along the topology (to every neighbour, or to `only` those) and,
    /// after a restart, its subscriptions.
    async fn rejoin(&mut self, peer: usize, only: Option<&Vec<usize>>, subscribe: bool) {
        let neighbours: Vec<usize> = self
            .case
            .edges
            .iter()
            .filter_map(|&(a, b)| match () {
                _ if a == peer => Some(b),
                _ if b == peer => Some(a),
                _ => None,
            })
            .filter(|n| only.is_none_or(|o| o.contains(n)))
            .collect();
        for n in neighbours {
            if self.rec.world.ready(n) && !self.rec.world.paused[n] {
                let addr = self.dial_addr_of(n);
                // The other end may still hold the connection, or dial back at once: an error is no failure.
                self.send(peer, Command::Dial { addr, mode: Dial::Dedup }, true).await;
            }
        }
        if subscribe {
            let topics: Vec<String> = self
                .subscribed
                .iter()
                .filter(|(p, _)| *p == peer)
                .map(|(_, t)| t.clone())
                .collect();
            for topic in topics {
                self.send(peer, Command::Subscribe { topic }, false).await;
            }
        }
    }

    fn record_fault(&mut self, peer: usize, fault: Fault, step: &str) {
        self.observe(
            peer,
            Observation::Fault {
                fault,
                step: step.to_owned(),
            },
        );
    }

    pub(super) fn index_of(&self, name: &str) -> usize {
        self.case
            .peers
            .iter()
            .position(|p| p.name == name)
            .expect("validated")
    }
}

/// Why the tools that network faults are made with cannot be used here, if they cannot: root, and the host's own
/// `iptables` and `nsenter`.
pub fn tools_missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("faults are made in the peers' namespaces, which needs root".into());
    }
    for (tool, arg) in [("iptables", "--version"), ("nsenter", "--version")] {
        let ran = std::process::Command::new(tool).arg(arg).output();
        if !ran.is_ok_and(|o| o.status.success()) {
            return Some(format!("`{tool}` cannot be run (iptables and util-linux's nsenter are needed)"));
        }
    }
    None
}

/// The shaping path of this machine, looked for once per run (it runs a packet through a throwaway namespace).
fn shaping_path() -> &'static netfault::ShapingPath {
    static PATH: std::sync::OnceLock<netfault::ShapingPath> = std::sync::OnceLock::new();
    PATH.get_or_init(netfault::shaping_path)
}

/// The matrix's shaping, for the namespace.
fn shaping_of(shape: &timeline::Shape, remote: Option<Ipv4Addr>) -> Shaping {
    Shaping {
        latency: shape.latency.unwrap_or(Duration::ZERO),
        jitter: shape.jitter.unwrap_or(Duration::ZERO),
        loss_percent: shape.loss.unwrap_or(0.0),
        rate_bits_per_sec: shape.rate,
        duplicate_percent: shape.duplicate.unwrap_or(0.0),
        direction: match shape.direction {
            timeline::Direction::To => netfault::Direction::To,
            timeline::Direction::From => netfault::Direction::From,
            timeline::Direction::Both => netfault::Direction::Both,
        },
        remote,
    }
}
