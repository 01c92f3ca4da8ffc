//! What the runner process itself and the machine use while a part of the bench runs: the runner's CPU time and
//! peak resident memory, and how busy the machine's cores were. The bench runs the runner's own run path in this
//! process, so this process's figures are the runner's.

use std::time::{Duration, Instant};

/// A reading taken before a measured stretch; [`Usage::since`] gives the figures over it.
pub struct Usage {
    wall: Instant,
    cpu: Duration,
    host: Option<(u64, u64)>,
}

/// The figures over a stretch.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spent {
    pub wall_s: f64,
    /// The runner's CPU time over the wall time: 1.0 is one core's worth.
    pub runner_cpu_share: f64,
    /// The runner's peak resident memory (VmHWM), reset at the start where the kernel allows it.
    pub runner_peak_mib: Option<f64>,
    /// Busy time of all the machine's cores over their available time (1.0: every core busy throughout).
    pub host_busy: Option<f64>,
}

impl Usage {
    /// Starts a stretch; the runner's peak memory is reset so that the stretch's own peak is read at its end.
    pub fn start() -> Self {
        // `5` resets VmHWM to the current resident size (Linux 4.0 on); without it the peak is the process's.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Usage {
            wall: Instant::now(),
            cpu: cpu_time(),
            host: host_ticks(),
        }
    }

    pub fn since(&self) -> Spent {
        let wall = self.wall.elapsed();
        let cpu = cpu_time().saturating_sub(self.cpu);
        let host_busy = match (self.host, host_ticks()) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 / (t1 - t0) as f64),
            _ => None,
        };
        Spent {
            wall_s: wall.as_secs_f64(),
            runner_cpu_share: cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9),
            runner_peak_mib: peak_rss_kib().map(|k| k as f64 / 1024.0),
            host_busy,
        }
    }
}

/// User plus system CPU time of this process, all its threads.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// VmHWM of /proc/self/status, KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    vm_hwm(&status)
}

fn vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// (busy, total) clock ticks of all cores, from /proc/stat's first line.
fn host_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    cpu_line(stat.lines().next()?)
}

fn cpu_line(line: &str) -> Option<(u64, u64)> {
    let ticks: Vec<u64> = line
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is within user): idle and iowait are not busy.
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_lines_are_read() {
        assert_eq!(vm_hwm("Name:\tx\nVmHWM:\t   85432 kB\nVmRSS:\t1 kB\n"), Some(85432));
        assert_eq!(vm_hwm("Name:\tx\n"), None);
        // busy: user + nice + system + irq + softirq + steal; idle and iowait are not.
        assert_eq!(cpu_line("cpu  100 5 50 800 20 1 2 3 0 0"), Some((161, 981)));
        assert_eq!(cpu_line("cpu0 1 2 3"), None);
    }

    #[test]
    fn a_stretch_of_work_costs_cpu() {
        let u = Usage::start();
        let mut x = 0u64;
        while u.wall.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let s = u.since();
        assert!(s.runner_cpu_share > 0.3, "{s:?}");
        assert!(s.runner_peak_mib.unwrap() > 1.0, "{s:?}");
    }
}
