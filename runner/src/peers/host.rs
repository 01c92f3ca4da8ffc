//! Watches the machine while a case runs: about once a second, on a thread of its own (never on the path that reads
//! the peers' output, which is what a busy machine slows down first), the CPU's busy and stolen time, the CPU
//! pressure and the run queue, as [`HostSample`]s for the record. Whether that amounts to a saturated host is judged
//! from the record (`checks::host`), not here.

use std::sync::mpsc;
use std::time::Duration;

use crate::events::{now_micros, HostSample, Micros};

/// How often the host is sampled: fine enough to tell a burst from a saturated stretch, and three small reads of
/// `/proc` a second cost nothing next to the peers.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// The sampling thread of one case; it ends when this is dropped.
pub struct Sampler {
    samples: mpsc::Receiver<HostSample>,
    _stop: mpsc::Sender<()>,
}

impl Sampler {
    /// Starts sampling. On a machine without `/proc/stat` the thread ends at once and nothing is sampled (the
    /// harness lag of the peers' lines is then the only sign of a saturated host).
    pub fn start() -> Self {
        let (tx, samples) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("host-sampler".into())
            .spawn(move || {
                let Some(mut last) = Reading::now() else { return };
                // Ends when the case drops its `Sampler` (the sender is gone) or stops taking samples.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(SAMPLE_EVERY) {
                    let Some(now) = Reading::now() else { return };
                    if tx.send(now.since(&last)).is_err() {
                        return;
                    }
                    last = now;
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the host sampler: {e}");
        }
        Self { samples, _stop: stop }
    }

    /// The samples taken since the last call.
    pub fn take(&self) -> Vec<HostSample> {
        self.samples.try_iter().collect()
    }
}

/// The kernel's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    at: Micros,
    cpu: CpuTimes,
    cores: u32,
    /// `some` and `full` stall totals in microseconds, where the kernel has PSI.
    pressure: Option<(u64, u64)>,
    runnable: u32,
}

impl Reading {
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let (cpu, cores) = parse_stat(&stat)?;
        let pressure = std::fs::read_to_string("/proc/pressure/cpu")
            .ok()
            .and_then(|t| parse_pressure(&t));
        let runnable = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| parse_runnable(&t))
            .unwrap_or(0);
        Some(Self {
            at: now_micros(),
            cpu,
            cores,
            pressure,
            runnable,
        })
    }

    /// The interval from `before` to this reading.
    fn since(&self, before: &Reading) -> HostSample {
        let total = self.cpu.total.saturating_sub(before.cpu.total).max(1);
        let share = |now: u64, then: u64| (now.saturating_sub(then) * 1000 / total) as u32;
        let elapsed_us = (self.at - before.at).max(1) as u64;
        let pressure = |pick: fn(&(u64, u64)) -> u64| {
            let (now, then) = (self.pressure.as_ref()?, before.pressure.as_ref()?);
            Some((pick(now).saturating_sub(pick(then)) * 1000 / elapsed_us).min(1000) as u32)
        };
        HostSample {
            ts: self.at,
            interval_ms: elapsed_us / 1000,
            cores: self.cores,
            busy_permille: share(self.cpu.busy, before.cpu.busy),
            steal_permille: share(self.cpu.steal, before.cpu.steal),
            // The sampler itself is running while it reads the run queue.
            runnable: self.runnable.saturating_sub(1),
            pressure_some_permille: pressure(|p| p.0),
            pressure_full_permille: pressure(|p| p.1),
        }
    }
}

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, PartialEq)]
struct CpuTimes {
    busy: u64,
    steal: u64,
    total: u64,
}

/// The aggregate CPU times and the number of online cores (`cpuN` lines) of `/proc/stat`.
fn parse_stat(text: &str) -> Option<(CpuTimes, u32)> {
    let mut lines = text.lines();
    let first = lines.next()?;
    let mut fields = first.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest and guest_nice are already in user and nice).
    let v: Vec<u64> = fields.take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    let steal = at(7);
    let total = busy + at(3) + at(4) + steal;
    let cores = lines.filter(|l| l.starts_with("cpu")).count() as u32;
    Some((CpuTimes { busy, steal, total }, cores.max(1)))
}

/// The `some` and `full` stall totals (microseconds) of `/proc/pressure/cpu`; `full` is 0 on kernels that only
/// report `some` for the CPU.
fn parse_pressure(text: &str) -> Option<(u64, u64)> {
    let total = |kind: &str| {
        let line = text.lines().find(|l| l.starts_with(kind))?;
        line.split_whitespace()
            .find_map(|f| f.strip_prefix("total="))?
            .parse::<u64>()
            .ok()
    };
    Some((total("some")?, total("full").unwrap_or(0)))
}

/// The runnable count of `/proc/loadavg` (`2.22 1.05 0.43 3/124 7994`: 3 runnable of 124).
fn parse_runnable(text: &str) -> Option<u32> {
    text.split_whitespace().nth(3)?.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  28287 0 4745 38221 511 0 53 35 0 0\ncpu0 13510 0 1847 20530 27 0 11 14 0 0\n\
                        cpu1 14776 0 2897 17690 483 0 41 20 0 0\nintr 1 2 3\nctxt 5\n";

    #[test]
    fn reads_the_kernel_s_counters() {
        let (cpu, cores) = parse_stat(STAT).unwrap();
        assert_eq!(cores, 2);
        assert_eq!(cpu, CpuTimes { busy: 28287 + 4745 + 53, steal: 35, total: 28287 + 4745 + 53 + 38221 + 511 + 35 });
        assert_eq!(parse_stat("intr 1 2\n"), None);
        let psi = "some avg10=11.30 avg60=7.43 avg300=3.49 total=16109372\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n";
        assert_eq!(parse_pressure(psi), Some((16109372, 7)));
        assert_eq!(parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n"), Some((5, 0)));
        assert_eq!(parse_runnable("2.22 1.05 0.43 3/124 7994\n"), Some(3));
    }

    #[test]
    fn an_interval_is_the_difference_of_two_readings_in_shares_of_all_cores() {
        let reading = |at: Micros, busy, steal, idle, some| Reading {
            at,
            cpu: CpuTimes { busy, steal, total: busy + steal + idle },
            cores: 2,
            pressure: Some((some, 0)),
            runnable: 5,
        };
        // Over one second of two cores (200 ticks): 150 busy, 20 stolen, 30 idle; 400 ms with a task waiting.
        let before = reading(1_000_000, 1000, 100, 1000, 10_000);
        let after = reading(2_000_000, 1150, 120, 1030, 410_000);
        let s = after.since(&before);
        assert_eq!((s.ts, s.interval_ms, s.cores), (2_000_000, 1000, 2));
        assert_eq!((s.busy_permille, s.steal_permille), (750, 100));
        assert_eq!((s.pressure_some_permille, s.pressure_full_permille), (Some(400), Some(0)));
        assert_eq!(s.runnable, 4, "the sampler itself is not counted");
        // Without PSI there is no pressure to tell.
        let s = Reading { pressure: None, ..after }.since(&before);
        assert_eq!(s.pressure_some_permille, None);
    }

    #[test]
    fn samples_this_machine_on_a_thread_of_its_own() {
        if Reading::now().is_none() {
            return; // no /proc/stat here
        }
        let sampler = Sampler::start();
        std::thread::sleep(SAMPLE_EVERY + Duration::from_millis(300));
        let samples = sampler.take();
        assert!(!samples.is_empty());
        let s = &samples[0];
        assert!(s.cores >= 1 && s.busy_permille <= 1000 && s.interval_ms >= 900, "{s:?}");
    }
}
