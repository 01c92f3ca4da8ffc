//! The case's record as it grows: every observation in arrival order, stamped with the runner's clock and shown
//! to its listeners as it is taken in: the world's model (what the driver waits for) and the live checks (what it
//! announces). The driver appends to it, and the host sampler's samples join it at every sampling tick; nothing
//! here decides what to do next, and nothing here judges.

use std::time::Instant;

use crate::cases::Case;
use crate::events::{now_micros, Micros, Observation, Recorded, HOST};
use crate::progress::Progress;
use crate::results::PeerReport;

use super::host::Sampler;
use super::world::World;
use super::Watch;

/// A live check is asked again after this many times what its last answer took, times the number of live checks:
/// watching, all checks together, takes at most about a twentieth of the runner's time, whatever the size of the
/// case; small cases are asked at every tick.
pub const LOOK_SHARE: u32 = 20;

/// A check failed while the case ran, and the run was asked to stop there.
#[derive(Debug, thiserror::Error)]
#[error("stopped at the first failure (--fail-fast): {0}")]
pub struct FailFast(pub String);

pub struct Recorder<'a> {
    /// Peer names by index.
    names: Vec<String>,
    pub record: Vec<Recorded>,
    pub world: World,
    /// The case's checks, fed as observations arrive, so a failure is known while the case runs.
    live: Vec<Box<dyn Watch>>,
    /// Checks already seen failing (each is announced once).
    announced: Vec<&'static str>,
    /// Per live check, when it is asked again whether the case fails: a check that looks over the whole record
    /// (at 200 peers, tens of milliseconds) is asked less often, so that watching never takes the runner's core
    /// from taking in what the peers say.
    next_look: Vec<Instant>,
    pub live_failures: Vec<(Micros, String)>,
    fail_fast: bool,
    progress: Option<&'a Progress>,
    /// The machine's samples, taken on a thread of their own while the case runs.
    host: Option<Sampler>,
    /// The case's script has ended (the peers are about to be stopped): the live checks look no more.
    stopping: bool,
}

impl<'a> Recorder<'a> {
    pub fn new(names: Vec<String>) -> Self {
        Self {
            world: World::new(names.len()),
            names,
            record: Vec::new(),
            live: Vec::new(),
            announced: Vec::new(),
            next_look: Vec::new(),
            live_failures: Vec::new(),
            fail_fast: false,
            progress: None,
            host: None,
            stopping: false,
        }
    }

    /// Once the script has ended, before the peers are stopped, the live checks are not asked: a case ended early
    /// (Ctrl-C, a harness fault) would be judged on a time line cut short, and its lines would announce failures no
    /// verdict holds. What the peers do while stopping is judged at the end, on the whole record.
    pub fn stop_watching(&mut self) {
        self.stopping = true;
    }

    pub fn with_live(&mut self, live: Vec<Box<dyn Watch>>, progress: &'a Progress, fail_fast: bool) {
        self.next_look = vec![Instant::now(); live.len()];
        self.live = live;
        self.progress = Some(progress);
        self.fail_fast = fail_fast;
    }

    /// Records the machine's samples from now on.
    pub fn sample_host(&mut self, sampler: Sampler) {
        self.host = Some(sampler);
    }

    /// Takes in the host samples taken since the last call, each under [`HOST`].
    fn take_host(&mut self) {
        let Some(sampler) = &self.host else { return };
        for sample in sampler.take() {
            self.record.push(Recorded {
                at: now_micros(),
                peer: HOST.to_owned(),
                what: Observation::Host(sample),
            });
        }
    }

    /// Takes in one observation of peer `i`, made now.
    pub fn observe(&mut self, i: usize, what: Observation) {
        self.observe_at(i, now_micros(), what);
    }

    /// Takes in one observation of peer `i` that arrived at `at`.
    pub fn observe_at(&mut self, i: usize, at: Micros, what: Observation) {
        let rec = Recorded {
            at,
            peer: self.names[i].clone(),
            what,
        };
        self.world.apply(i, &rec);
        for check in self.live.iter_mut() {
            check.observe(&rec);
        }
        self.record.push(rec);
    }

    /// Takes in one observation of a participant that is not a peer (the UPnP gateway), recorded under its name:
    /// the live checks see it, the world's model of the peers does not.
    pub fn observe_participant(&mut self, name: &str, at: Micros, what: Observation) {
        let rec = Recorded {
            at,
            peer: name.to_owned(),
            what,
        };
        for check in self.live.iter_mut() {
            check.observe(&rec);
        }
        self.record.push(rec);
    }

    /// Whether the machine keeps up now: its last `samples` host samples not CPU-saturated and the newest peer
    /// line not over [`LAG_US`](crate::events::LAG_US) late. `None` before there are that many samples
    /// (or where the host is not sampled).
    pub fn host_keeps_up(&self, samples: usize) -> Option<bool> {
        let mut seen = 0;
        let mut lag = None;
        for rec in self.record.iter().rev() {
            match &rec.what {
                Observation::Host(s) => {
                    if s.cpu_saturated() {
                        return Some(false);
                    }
                    seen += 1;
                    if seen == samples {
                        break;
                    }
                }
                Observation::Event { line } if lag.is_none() => lag = Some(rec.at - line.ts),
                _ => {}
            }
        }
        (seen == samples).then(|| lag.is_none_or(|l| l <= crate::events::LAG_US))
    }

    /// What each live check still waits for at `now`, by its name.
    pub fn pending(&self, case: &Case, peers: &[PeerReport], now: Micros) -> Vec<(&'static str, super::Pending)> {
        self.live
            .iter()
            .filter_map(|c| Some((c.name(), c.pending(case, peers, now)?)))
            .collect()
    }

    /// Every sampling tick: takes in the host samples, then asks the live checks whether the case already fails;
    /// each failure is announced once, and with `--fail-fast` the first one stops the case.
    pub fn watch(&mut self, case: &Case, peers: &[PeerReport]) -> Result<(), FailFast> {
        self.take_host();
        if self.stopping {
            return Ok(());
        }
        let now = now_micros();
        let checks = self.live.len() as u32;
        for (check, next_look) in self.live.iter().zip(&mut self.next_look) {
            if self.announced.contains(&check.name()) || Instant::now() < *next_look {
                continue;
            }
            let asked = Instant::now();
            let failing = check.failing(case, peers, now);
            let took = asked.elapsed();
            tracing::trace!(check = check.name(), took_us = took.as_micros() as u64, "look");
            *next_look = asked + took * LOOK_SHARE * checks;
            if let Some(message) = failing {
                self.announced.push(check.name());
                let line = format!("[{}] {message}", check.name());
                if let Some(p) = self.progress {
                    p.line(format!("  {}: failing {line}", case.name));
                }
                self.live_failures.push((now, line.clone()));
                if self.fail_fast {
                    return Err(FailFast(line));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Kit;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// A check whose every look takes 10 ms.
    struct Slow(Arc<AtomicU32>);

    impl Watch for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }
        fn observe(&mut self, _: &Recorded) {}
        fn failing(&self, _: &Case, _: &[PeerReport], _: Micros) -> Option<String> {
            self.0.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(std::time::Duration::from_millis(10));
            None
        }
        fn pending(&self, _: &Case, _: &[PeerReport], _: Micros) -> Option<super::super::Pending> {
            None
        }
    }

    #[test]
    fn a_costly_check_is_asked_less_often() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let looks = Arc::new(AtomicU32::new(0));
        let progress = Progress::new(1);
        let mut rec = Recorder::new(vec!["rust-1".into(), "go-1".into()]);
        rec.with_live(vec![Box::new(Slow(looks.clone()))], &progress, false);
        let start = Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(500) {
            rec.watch(&kit.case, &[]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Asked at most every 200 ms (20 x 10 ms): 3 looks in 500 ms, not hundreds.
        let n = looks.load(Ordering::Relaxed);
        assert!((1..=3).contains(&n), "{n} looks");
    }

    /// A check that always fails.
    struct Failing;

    impl Watch for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }
        fn observe(&mut self, _: &Recorded) {}
        fn failing(&self, _: &Case, _: &[PeerReport], _: Micros) -> Option<String> {
            Some("always".into())
        }
        fn pending(&self, _: &Case, _: &[PeerReport], _: Micros) -> Option<super::super::Pending> {
            None
        }
    }

    #[test]
    fn nothing_is_announced_once_the_peers_are_told_to_stop() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let progress = Progress::new(1);
        let mut rec = Recorder::new(vec!["rust-1".into(), "go-1".into()]);
        rec.with_live(vec![Box::new(Failing)], &progress, true);
        rec.stop_watching();
        rec.watch(&kit.case, &[]).expect("no look, so no --fail-fast stop");
        assert!(rec.live_failures.is_empty());

        // The same check is announced while the case runs.
        let mut rec = Recorder::new(vec!["rust-1".into(), "go-1".into()]);
        rec.with_live(vec![Box::new(Failing)], &progress, false);
        rec.watch(&kit.case, &[]).unwrap();
        assert_eq!(rec.live_failures.len(), 1);
    }
}
