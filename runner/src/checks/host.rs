//! Whether the machine could keep up while the case ran, judged from the record alone (the host samples of
//! `peers::host` and the harness lag of the peers' lines), so that `meshgate judge` reaches the verdict the run did.
//! On a saturated host a failure of time (a deadline, a window, a silence) says more about the machine than about
//! the peers: it becomes inconclusive with the reason. Every other verdict stands, passes included.
//!
//! Saturation is of the machine as a whole: all cores busy with tasks waiting for one, time stolen by the
//! hypervisor, or the lines of most peers reaching the runner late. One peer spinning on one core, or one peer's
//! lines arriving late, is evidence against that peer, and is left to the checks.

use std::collections::BTreeMap;

use crate::events::{HostSample, Micros, Observation, Recorded};
use crate::results::{CheckResult, Status};

/// The case is cut into windows of this length to tell how long the host was saturated: the sampling period.
const WINDOW_US: Micros = 1_000_000;
/// The hypervisor ran something else this share of the time while this machine had work: the clocks run on while
/// nothing here runs, so deadlines slip on a machine that looks idle. Beyond 10% latency-sensitive work suffers.
const STEAL_PERMILLE: u32 = 100;
use crate::events::LAG_US;
/// A case ran on a saturated host when it was saturated for at least this share of its windows (and for at least
/// a stretch's worth of windows in all)...
const SHARE_PERMILLE: usize = 100;
/// ...or for this many windows at a stretch: longer than the shortest windows the checks judge in (a subscription
/// seen within a few seconds, a mesh kept for some heartbeats), so a stretch like it can make any of them miss.
/// Shorter bursts (containers starting, a neighbour's compile) are absorbed by the checks' own margins.
const STRETCH_WINDOWS: usize = 3;

/// How the host fared over a case, window by window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostLoad {
    /// Windows from the first observation to the last.
    pub windows: usize,
    /// Windows with all cores busy and tasks waiting for one.
    pub cpu: usize,
    /// Windows with steal at or over [`STEAL_PERMILLE`].
    pub steal: usize,
    /// Windows where most peers' lines (more than half of those that wrote any) arrived over [`LAG_US`] late.
    pub lag: usize,
    /// Windows saturated for any of these reasons, and the longest stretch of them.
    pub saturated: usize,
    pub longest: usize,
    /// The worst per-peer p99 lag of a lagging window.
    pub worst_lag: Micros,
    /// Host samples recorded.
    pub samples: usize,
}

impl HostLoad {
    pub fn of(record: &[Recorded]) -> Self {
        // A host sample covers the interval before its time stamp; everything else counts when it arrived.
        let span = |r: &Recorded| match &r.what {
            Observation::Host(s) => (s.ts - s.interval_ms as Micros * 1000, s.ts),
            _ => (r.at, r.at),
        };
        let Some(first) = record.iter().map(|r| span(r).0).min() else {
            return Self::default();
        };
        // Only from the first command on: before it the runner creates and starts the peers' containers, a burst
        // of its own making that no check judges (and, while it starts them one by one, it reads none of their
        // output, so their first lines wait by design, on any machine).
        let from = record
            .iter()
            .find(|r| matches!(r.what, Observation::Command { .. }))
            .map_or(first, |r| r.at);
        let start = from.max(first);
        let end = record.iter().map(|r| span(r).1).max().unwrap_or(start).max(start);
        let windows = ((end - start) as u64).div_ceil(WINDOW_US as u64).max(1) as usize;
        let window = |t: Micros| (((t.max(start) - start) / WINDOW_US) as usize).min(windows - 1);
        let mut cpu = vec![false; windows];
        let mut steal = vec![false; windows];
        let mut samples = 0;
        // Lags of each window by peer; only time stamps from within the case count (one from elsewhere is a clock
        // that disagrees, not a line held up).
        let mut lags: BTreeMap<usize, BTreeMap<&str, Vec<Micros>>> = BTreeMap::new();
        for rec in record {
            match &rec.what {
                // A sample over the start of the peers only.
                Observation::Host(s) if s.ts <= from && from > first => {}
                Observation::Host(s) => {
                    samples += 1;
                    let w = window(s.ts - s.interval_ms as Micros * 500);
                    cpu[w] |= HostSample::cpu_saturated(s);
                    steal[w] |= s.steal_permille >= STEAL_PERMILLE;
                }
                Observation::Event { line } if line.ts >= from && line.ts <= rec.at => {
                    let by_peer = lags.entry(window(rec.at)).or_default();
                    by_peer.entry(&rec.peer).or_default().push(rec.at - line.ts);
                }
                _ => {}
            }
        }
        let mut lag = vec![false; windows];
        let mut worst_lag = 0;
        for (w, by_peer) in lags {
            let p99s: Vec<Micros> = by_peer.into_values().map(p99).collect();
            let late = p99s.iter().filter(|&&l| l > LAG_US).count();
            // A harness that fell behind holds up everyone's lines; one peer's (or a minority's) late lines are its
            // own held-up output, and one peer alone cannot tell the two apart.
            if p99s.len() >= 2 && late * 2 > p99s.len() {
                lag[w] = true;
                worst_lag = worst_lag.max(p99s.iter().copied().max().unwrap_or(0));
            }
        }
        let saturated: Vec<bool> = (0..windows).map(|w| cpu[w] || steal[w] || lag[w]).collect();
        let longest = saturated
            .split(|s| !s)
            .map(<[bool]>::len)
            .max()
            .unwrap_or(0);
        let count = |v: &[bool]| v.iter().filter(|&&b| b).count();
        Self {
            windows,
            cpu: count(&cpu),
            steal: count(&steal),
            lag: count(&lag),
            saturated: count(&saturated),
            longest,
            worst_lag,
            samples,
        }
    }

    /// Whether the case ran on a saturated host: for long enough that failures of time cannot be trusted.
    pub fn is_saturated(&self) -> bool {
        // Fewer saturated windows than a stretch, in all, are bursts the checks' margins absorb: in a 5 s case, two
        // seconds of steal would otherwise be 40% of it.
        self.saturated >= STRETCH_WINDOWS
            && (self.saturated * 1000 >= self.windows * SHARE_PERMILLE || self.longest >= STRETCH_WINDOWS)
    }

    /// `host CPU saturated for 38 s of 52 (...); lower the load or the peer count`.
    pub fn reason(&self) -> String {
        let mut why = Vec::new();
        if self.cpu > 0 {
            why.push(format!("all cores busy with tasks waiting for {} s", self.cpu));
        }
        if self.steal > 0 {
            why.push(format!(
                "{}%+ of the CPU stolen by the hypervisor for {} s",
                STEAL_PERMILLE / 10,
                self.steal
            ));
        }
        if self.lag > 0 {
            why.push(format!(
                "most peers' lines reached the runner over {} s late for {} s (worst p99 {:.1} s)",
                LAG_US / 1_000_000,
                self.lag,
                self.worst_lag as f64 / 1e6
            ));
        }
        let advice = match self.steal > 0 && self.cpu == 0 && self.lag == 0 {
            true => "run it on a machine with CPU of its own",
            false => "lower the load or the peer count",
        };
        format!(
            "host CPU saturated for {} s of {} ({}); {advice}",
            self.saturated,
            self.windows,
            why.join(", ")
        )
    }
}

/// On a saturated host, every failure of time becomes inconclusive with the reason, its own message kept in the
/// evidence. Returns the case's note when the host was saturated (passes under load stand, and say so).
pub fn judge(record: &[Recorded], results: &mut [CheckResult]) -> Option<String> {
    let load = HostLoad::of(record);
    if !load.is_saturated() {
        return None;
    }
    let reason = load.reason();
    let mut unjudged = 0;
    for r in results.iter_mut().filter(|r| r.status == Status::Failed && r.timing) {
        unjudged += 1;
        r.status = Status::Inconclusive;
        let failure = r.message.take().unwrap_or_default();
        r.evidence.insert(0, format!("failed on the saturated host: {failure}"));
        r.message = Some(reason.clone());
    }
    Some(match unjudged {
        0 => format!("{reason}: no failure of time to doubt; the verdicts stand"),
        n => format!("{reason}: {n} failure(s) of time not judged, the other verdicts stand"),
    })
}

fn p99(mut v: Vec<Micros>) -> Micros {
    v.sort_unstable();
    let i = (v.len() * 99).div_ceil(100).saturating_sub(1);
    v.get(i).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{PeerEvent, HOST};
    use crate::results::CaseStatus;
    use crate::testkit::Kit;

    const S: Micros = 1_000_000;

    /// One host sample per second from `from` to `to` (seconds), each `busy` and `pressure` permille.
    fn samples(from: i64, to: i64, busy: u32, pressure: Option<u32>, steal: u32) -> Vec<Recorded> {
        (from..to)
            .map(|s| Recorded {
                at: (s + 1) * S + 300_000,
                peer: HOST.into(),
                what: Observation::Host(HostSample {
                    ts: (s + 1) * S,
                    interval_ms: 1000,
                    cores: 2,
                    busy_permille: busy,
                    steal_permille: steal,
                    runnable: 1,
                    pressure_some_permille: pressure,
                    pressure_full_permille: pressure.map(|_| 0),
                }),
            })
            .collect()
    }

    /// A line of `peer` every 200 ms from `from` to `to` (seconds) reaching the runner `lag` after its stamp.
    fn lines(kit: &Kit, peer: &str, from: i64, to: i64, lag: Micros) -> Vec<Recorded> {
        (from * 5..to * 5)
            .map(|i| {
                let mut rec = kit.event(i * S / 5, peer, PeerEvent::Listening { addrs: vec![] });
                rec.at += lag;
                rec
            })
            .collect()
    }

    /// Two peers; rust-1 publishes at 1 s and go-1 never receives it: a delivery failure, over 30 s.
    fn missed_delivery() -> (Kit, Vec<Recorded>) {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut record: Vec<Recorded> = kit.publish(S, "rust-1", "rust-1/0").into();
        record.push(kit.exited(30 * S, "rust-1", Some(0), true));
        (kit, record)
    }

    fn judged(kit: &Kit, mut record: Vec<Recorded>) -> crate::results::CaseResult {
        record.sort_by_key(|r| r.at);
        crate::judge::case(&crate::stored::tests::stored(kit), &record)
    }

    fn check<'a>(result: &'a crate::results::CaseResult, name: &str) -> &'a CheckResult {
        result.checks.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn a_saturated_host_makes_a_delivery_failure_inconclusive_with_the_reason() {
        let (kit, mut record) = missed_delivery();
        // 20 of the 30 s with both cores busy and tasks waiting for a core; the first second is before the
        // runner's first command (the publish at 1 s), the peers' start, which is not judged.
        record.extend(samples(0, 20, 990, Some(400), 0));
        record.extend(samples(20, 30, 300, Some(0), 0));
        let result = judged(&kit, record);
        let delivery = check(&result, "delivery");
        assert_eq!(delivery.status, Status::Inconclusive, "{delivery:?}");
        let message = delivery.message.as_deref().unwrap();
        assert!(
            message.starts_with("host CPU saturated for 19 s of 29 (all cores busy with tasks waiting for 19 s)")
                && message.ends_with("lower the load or the peer count"),
            "{message}"
        );
        assert!(delivery.evidence[0].starts_with("failed on the saturated host: go-1"), "{delivery:?}");
        assert_eq!(result.status(), CaseStatus::Inconclusive);
        assert!(result.notes.iter().any(|n| n.contains("1 failure(s) of time not judged")), "{:?}", result.notes);
    }

    #[test]
    fn an_unsaturated_host_keeps_the_failure() {
        let (kit, mut record) = missed_delivery();
        // Busy, but a core to spare; and a burst of 2 s with everything busy (containers starting).
        record.extend(samples(0, 28, 700, Some(50), 0));
        record.extend(samples(28, 30, 1000, Some(600), 0));
        let result = judged(&kit, record.clone());
        assert_eq!(check(&result, "delivery").status, Status::Failed);
        assert!(result.notes.is_empty(), "{:?}", result.notes);
        // The same burst for 3 s at a stretch is long enough to make a window of the checks miss.
        record.extend(samples(10, 13, 1000, Some(600), 0));
        let result = judged(&kit, record);
        assert_eq!(check(&result, "delivery").status, Status::Inconclusive);
    }

    #[test]
    fn the_peers_start_before_the_first_command_is_not_judged() {
        let (kit, mut record) = missed_delivery();
        // Everything busy for the 5 s the containers take to start, before the runner's first command at 6 s.
        record.retain(|r| !matches!(r.what, Observation::Command { .. }));
        record.push(kit.command(6 * S, "rust-1", r#"{"cmd":"publish","cmd_id":"c1","topic":"meshgate","id":"rust-1/0","size":1}"#));
        record.extend(samples(0, 5, 1000, Some(600), 0));
        record.extend(samples(5, 30, 300, Some(0), 0));
        let mut sorted = record.clone();
        sorted.sort_by_key(|r| r.at);
        assert_eq!(HostLoad::of(&sorted).saturated, 0);
        assert_eq!(check(&judged(&kit, record), "delivery").status, Status::Failed);
    }

    #[test]
    fn one_busy_peer_is_not_saturation() {
        let (kit, mut record) = missed_delivery();
        // go-1 spins one of the two cores the whole time, and its lines reach the runner 3 s late; rust-1's come
        // at once and nothing waits for a core: evidence against go-1, not a saturated host.
        record.extend(samples(0, 30, 520, Some(0), 0));
        record.extend(lines(&kit, "go-1", 0, 29, 3 * S));
        record.extend(lines(&kit, "rust-1", 0, 29, 2_000));
        let load = HostLoad::of(&{
            let mut r = record.clone();
            r.sort_by_key(|r| r.at);
            r
        });
        assert_eq!((load.cpu, load.lag, load.saturated), (0, 0, 0), "{load:?}");
        assert_eq!(check(&judged(&kit, record), "delivery").status, Status::Failed);
        // Both cores busy, but nothing waiting for one (two peers spinning, nothing else wanting a core).
        let mut load = samples(0, 30, 1000, Some(20), 0);
        load.extend(missed_delivery().1);
        assert_eq!(check(&judged(&kit, load), "delivery").status, Status::Failed);
    }

    #[test]
    fn lag_alone_is_saturation_and_so_is_steal() {
        let (kit, mut record) = missed_delivery();
        // No host samples at all (a record from before them, or no /proc): most peers' lines 2.5 s late for 10 s.
        let mut late = record.clone();
        late.extend(lines(&kit, "go-1", 5, 15, 2_500_000));
        late.extend(lines(&kit, "rust-1", 5, 15, 2_500_000));
        let result = judged(&kit, late);
        let delivery = check(&result, "delivery");
        assert_eq!(delivery.status, Status::Inconclusive, "{delivery:?}");
        let message = delivery.message.as_deref().unwrap();
        assert!(message.contains("most peers' lines reached the runner over 1 s late for 11 s (worst p99 2.5 s)"), "{message}");
        // The same lines before the runner's first command are the peers' start, whose output waits by design.
        let mut starting: Vec<Recorded> = lines(&kit, "go-1", 0, 10, 2_500_000);
        starting.extend(lines(&kit, "rust-1", 0, 10, 2_500_000));
        starting.push(kit.command(13 * S, "rust-1", r#"{"cmd":"dial","cmd_id":"c1","addr":"/ip4/10.0.0.3/tcp/4001"}"#));
        starting.sort_by_key(|r| r.at);
        assert_eq!(HostLoad::of(&starting).lag, 0);

        // Time stolen by the hypervisor on a machine that looks idle.
        record.extend(samples(0, 30, 200, None, 250));
        let result = judged(&kit, record);
        let message = check(&result, "delivery").message.clone().unwrap();
        assert!(message.contains("stolen by the hypervisor for 29 s); run it on a machine with CPU of its own"), "{message}");
    }

    #[test]
    fn only_failures_of_time_become_inconclusive() {
        let (kit, mut record) = missed_delivery();
        record.push(kit.message(1_100_000, "rust-1", "rust-1", "rust-1/0", S));
        record.extend(samples(0, 30, 1000, None, 0).into_iter().map(|mut r| {
            if let Observation::Host(s) = &mut r.what {
                s.runnable = 9; // no PSI: the run queue tells that tasks wait
            }
            r
        }));
        // go-1 panics: a verdict on go-1 whatever the load.
        record.push(kit.stderr(2 * S, "go-1", "thread 'main' panicked at src/main.rs:1"));
        let result = judged(&kit, record);
        assert_eq!(check(&result, "delivery").status, Status::Inconclusive);
        assert_eq!(check(&result, "liveness").status, Status::Failed, "{:?}", check(&result, "liveness"));
        assert_eq!(result.status(), CaseStatus::Failed);
    }

    #[test]
    fn a_pass_under_load_is_a_pass() {
        let (kit, mut record) = missed_delivery();
        record.push(kit.message(1_200_000, "go-1", "rust-1", "rust-1/0", S));
        record.extend(samples(0, 30, 1000, Some(900), 0));
        let result = judged(&kit, record);
        assert_eq!(check(&result, "delivery").status, Status::Passed);
        assert!(result.notes[0].ends_with("no failure of time to doubt; the verdicts stand"), "{:?}", result.notes);
    }
}
