//! Who owns what a run leaves, and whether that owner still lives. Docker labels and the local backend's state
//! files carry an owner; the next run removes what dead owners left, and never what a live one still uses.
//!
//! # The owner identity
//!
//! `<boot id>:<pid namespace>:<pid>:<start time>`: the kernel's boot id (`/proc/sys/kernel/random/boot_id`, the
//! same in every container on one kernel, new at every boot), the inode of the owner's pid namespace
//! (`/proc/self/ns/pid`), its pid there, and its start time in clock ticks since boot (so that a reused pid is
//! recognised). Host names play no part: they change with every CI container and say nothing about processes.
//!
//! # The rule
//!
//! - **Same boot id and same pid namespace**: the owner's pid is visible here, so `/proc` decides exactly: alive
//!   when that pid runs with that start time, dead otherwise. ([`Verdict::Alive`] / [`Verdict::Dead`].)
//! - **Same boot id, other pid namespace** (another CI container sharing the engine): the process cannot be seen
//!   from here. ([`Verdict::Unseen`]: the backend decides from what the run left, below.)
//! - **Other boot id**: either the kernel the owner ran on rebooted (it is dead), or the owner runs on another
//!   machine sharing a remote engine (`DOCKER_HOST=tcp://...`, `ssh://...`), where it may well be alive. From
//!   here the two cannot be told apart, so this too is [`Verdict::Unseen`]. Nothing is lost: after a reboot no
//!   container of the old boot runs and its objects are old, so the evidence below says dead at once.
//! - **Old-format owners** (`host:pid:start-time`, written by earlier versions): alive when the host name is this
//!   one's and that very process runs here; otherwise [`Verdict::Unseen`] (a same-named host may be another
//!   container, whose pids mean nothing here). An empty or unreadable owner is [`Verdict::Unseen`] too: never a
//!   reason to remove something.
//!
//! An unseen owner is judged by what its run left ([`evidence_says_alive`]): alive when any of its containers
//! is not exited (running, created, restarting, paused...), or when its newest moment (an object's creation, a
//! container's exit) is younger than [`GRACE`]; dead otherwise. This is safe for live runs: a peer's stdin is
//! attached to its runner, so the peers of a dead runner exit by themselves, while a live runner's case has
//! running peers from its network's creation (young) to its clean-up right after the last peer exits. A run
//! that is alive but has had only exited containers for longer than the grace period no longer needs them:
//! their exit is on record, and its own clean-up tolerates objects that are gone. Two CI jobs sharing one engine
//! therefore never remove what the other still uses. The local backend, which has no engine to ask, refreshes
//! its state file every [`HEARTBEAT`], and an unseen owner is alive while that file is younger than [`GRACE`].

use std::time::Duration;

/// How long after its newest sign of life an unseen owner's run counts as alive.
pub const GRACE: Duration = Duration::from_secs(120);

/// How often the local backend shows it lives (well within [`GRACE`]).
pub const HEARTBEAT: Duration = Duration::from_secs(20);

/// Whether an owner lives, as far as can be seen from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Alive,
    Dead,
    /// Not visible from this process (other pid namespace, other kernel, unreadable owner): the backend decides
    /// from what the run left.
    Unseen,
}

/// Where this process sits: the kernel boot and the pid namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    boot: String,
    pidns: String,
}

fn here() -> Option<Place> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    // `pid:[4026531836]`
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let ns = ns.to_string_lossy();
    let pidns = ns.strip_prefix("pid:[")?.strip_suffix(']')?.to_owned();
    let boot = boot.trim().to_owned();
    (!boot.is_empty() && !boot.contains(':')).then_some(Place { boot, pidns })
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// The start time (clock ticks after boot) of a process, and whether it is a zombie.
fn stat_of(pid: u32) -> Option<(String, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 is the start time; fields after the parenthesised command name are space-separated.
    let after = &stat[stat.rfind(')')? + 2..];
    let state = after.chars().next()?;
    let start = after.split(' ').nth(19)?.to_owned();
    Some((start, matches!(state, 'Z' | 'X')))
}

/// The owner identity of a process of this pid namespace, from /proc.
pub fn owner_of(pid: u32) -> Option<String> {
    let place = here()?;
    let (start, _) = stat_of(pid)?;
    Some(format!("{}:{}:{pid}:{start}", place.boot, place.pidns))
}

/// What an owner string says.
#[derive(Debug, PartialEq, Eq)]
enum Parsed<'a> {
    Current {
        boot: &'a str,
        pidns: &'a str,
        pid: u32,
        start: &'a str,
    },
    Legacy {
        host: &'a str,
        pid: u32,
        start: &'a str,
    },
}

fn parse(owner: &str) -> Option<Parsed<'_>> {
    let parts: Vec<&str> = owner.split(':').collect();
    let number = |s: &str| s.parse::<u32>().ok().filter(|_| !s.is_empty());
    match parts[..] {
        [boot, pidns, pid, start] if !boot.is_empty() && !pidns.is_empty() => {
            Some(Parsed::Current {
                boot,
                pidns,
                pid: number(pid)?,
                start,
            })
        }
        [host, pid, start] => Some(Parsed::Legacy {
            host,
            pid: number(pid)?,
            start,
        }),
        _ => None,
    }
}

/// Whether `owner` lives, from this process's point of view.
pub fn judge(owner: &str) -> Verdict {
    judge_from(here().as_ref(), &hostname(), owner)
}

fn judge_from(place: Option<&Place>, host: &str, owner: &str) -> Verdict {
    let alive = |pid: u32, start: &str| stat_of(pid).is_some_and(|(s, _)| s == start);
    match parse(owner) {
        Some(Parsed::Current {
            boot,
            pidns,
            pid,
            start,
        }) => match place {
            Some(p) if p.boot == boot && p.pidns == pidns => {
                if alive(pid, start) {
                    Verdict::Alive
                } else {
                    Verdict::Dead
                }
            }
            _ => Verdict::Unseen,
        },
        Some(Parsed::Legacy {
            host: h,
            pid,
            start,
        }) if h == host && alive(pid, start) => Verdict::Alive,
        Some(Parsed::Legacy { .. }) | None => Verdict::Unseen,
    }
}

/// The pid of the process `owner` names, when that very process still runs in this pid namespace (not a
/// zombie): only then may it be killed from here.
pub fn running_pid(owner: &str) -> Option<u32> {
    let (pid, start) = match parse(owner)? {
        Parsed::Current {
            boot,
            pidns,
            pid,
            start,
        } => {
            let p = here()?;
            if p.boot != boot || p.pidns != pidns {
                return None;
            }
            (pid, start)
        }
        Parsed::Legacy { host, pid, start } => {
            if host != hostname() {
                return None;
            }
            (pid, start)
        }
    };
    let (s, zombie) = stat_of(pid)?;
    (s == start && !zombie).then_some(pid)
}

/// What the backend knows of an unseen owner's run: whether anything of it still runs, and the newest moment
/// (unix seconds) it shows, each by the clock of whoever keeps the objects.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    pub running: bool,
    pub newest: Option<i64>,
}

/// The rule for unseen owners (see the module's documentation): alive while anything runs or the newest sign of
/// life is younger than [`GRACE`]. An unknown age counts as young.
pub fn evidence_says_alive(e: &Evidence, now: i64) -> bool {
    e.running || e.newest.is_none_or(|t| now - t < GRACE.as_secs() as i64)
}

/// Unix seconds of an RFC 3339 time as Docker writes it (`2024-06-01T12:00:00.123456789Z`, or with an offset).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (time, zone) = rest.split_at(zone_at);
    let time = time.split('.').next()?;
    let mut t = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    let offset = match zone {
        "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (oh, om) = z[1..].split_once(':')?;
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + sec - offset)
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// What could not be removed: every failure, one object each, rather than the first alone.
#[derive(Debug)]
pub struct Unremoved(pub Vec<anyhow::Error>);

impl std::fmt::Display for Unremoved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.0.iter().map(|e| format!("{e:#}")).collect();
        write!(f, "could not remove {}", lines.join("; "))
    }
}

impl std::error::Error for Unremoved {}

impl Unremoved {
    /// `Ok` when nothing failed.
    pub fn into_result(errors: Vec<anyhow::Error>) -> anyhow::Result<()> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Unremoved(errors).into())
        }
    }

    /// The single failures an error stands for: those of an [`Unremoved`], else itself.
    pub fn split(e: anyhow::Error) -> Vec<anyhow::Error> {
        match e.downcast::<Unremoved>() {
            Ok(u) => u.0,
            Err(e) => vec![e],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(boot: &str, pidns: &str) -> Place {
        Place {
            boot: boot.into(),
            pidns: pidns.into(),
        }
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_dead() {
        let me = owner_of(std::process::id()).unwrap();
        let p = here().unwrap();
        assert!(me.starts_with(&format!("{}:{}:{}:", p.boot, p.pidns, std::process::id())));
        assert_eq!(judge(&me), Verdict::Alive);
        assert_eq!(running_pid(&me), Some(std::process::id()));
        // Same boot, same namespace, same pid, other start time: the pid was reused, the owner is dead.
        let reused = format!("{}:{}:{}:1", p.boot, p.pidns, std::process::id());
        assert_eq!(judge(&reused), Verdict::Dead);
        assert_eq!(running_pid(&reused), None);
        // A pid that does not run here.
        let gone = format!("{}:{}:{}:1", p.boot, p.pidns, u32::MAX - 1);
        assert_eq!(judge(&gone), Verdict::Dead);
    }

    #[test]
    fn owners_out_of_sight_are_unseen_and_never_ours_to_kill() {
        let p = here().unwrap();
        let me = owner_of(std::process::id()).unwrap();
        let start = me.rsplit(':').next().unwrap();
        let pid = std::process::id();
        // Another container on this kernel: same boot, other pid namespace, even with a pid and start time
        // that match a process here.
        let other_ns = format!("{}:1:{pid}:{start}", p.boot);
        assert_eq!(judge(&other_ns), Verdict::Unseen);
        assert_eq!(running_pid(&other_ns), None);
        // Another boot: rebooted, or another machine on a remote engine.
        let other_boot = format!(
            "00000000-0000-0000-0000-000000000000:{}:{pid}:{start}",
            p.pidns
        );
        assert_eq!(judge(&other_boot), Verdict::Unseen);
        assert_eq!(running_pid(&other_boot), None);
        // Without a place of our own (no /proc), nothing is seen.
        assert_eq!(judge_from(None, "h", &me), Verdict::Unseen);
        // Garbage and empty owners are never a reason to remove anything.
        for junk in ["", "garbage", "a:b", "b:n:x:1", ":::"] {
            assert_eq!(judge(junk), Verdict::Unseen, "{junk:?}");
            assert_eq!(running_pid(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn old_format_owners_are_read() {
        let me = owner_of(std::process::id()).unwrap();
        let start = me.rsplit(':').next().unwrap();
        let pid = std::process::id();
        let host = hostname();
        let here = place("b", "1");
        // The very process on this host: alive, and ours.
        let legacy = format!("{host}:{pid}:{start}");
        assert_eq!(judge_from(Some(&here), &host, &legacy), Verdict::Alive);
        assert_eq!(running_pid(&legacy), Some(pid));
        // Not running here, or on another host (the host name changed, a CI container): judged by evidence,
        // no longer assumed alive forever.
        let reused = format!("{host}:{pid}:1");
        assert_eq!(judge_from(Some(&here), &host, &reused), Verdict::Unseen);
        assert_eq!(running_pid(&reused), None);
        let elsewhere = format!("some-other-host:{pid}:{start}");
        assert_eq!(judge_from(Some(&here), &host, &elsewhere), Verdict::Unseen);
        assert_eq!(running_pid(&elsewhere), None);
    }

    #[test]
    fn current_format_owners_parse() {
        assert_eq!(
            parse("f4b4bf0c-40a7-471b-9012-ecb99dbddbd3:4026531836:17:99"),
            Some(Parsed::Current {
                boot: "f4b4bf0c-40a7-471b-9012-ecb99dbddbd3",
                pidns: "4026531836",
                pid: 17,
                start: "99"
            })
        );
        assert_eq!(
            parse("ci-runner-7:17:99"),
            Some(Parsed::Legacy {
                host: "ci-runner-7",
                pid: 17,
                start: "99"
            })
        );
        assert_eq!(parse("h:x:1"), None);
    }

    #[test]
    fn evidence_decides_for_unseen_owners() {
        let now = 1_000_000;
        let grace = GRACE.as_secs() as i64;
        let running_old = Evidence {
            running: true,
            newest: Some(now - 10 * grace),
        };
        assert!(
            evidence_says_alive(&running_old, now),
            "a running container"
        );
        let exited_young = Evidence {
            running: false,
            newest: Some(now - grace + 5),
        };
        assert!(evidence_says_alive(&exited_young, now), "within the grace");
        let exited_old = Evidence {
            running: false,
            newest: Some(now - grace - 5),
        };
        assert!(!evidence_says_alive(&exited_old, now), "all exited and old");
        let unknown_age = Evidence {
            running: false,
            newest: None,
        };
        assert!(
            evidence_says_alive(&unknown_age, now),
            "an unknown age is young"
        );
    }

    #[test]
    fn docker_times_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-06-01T12:00:00.123456789Z"),
            Some(1_717_243_200)
        );
        assert_eq!(
            parse_rfc3339("2024-06-01T14:00:00.5+02:00"),
            Some(1_717_243_200)
        );
        assert_eq!(
            parse_rfc3339("2024-06-01T07:00:00-05:00"),
            Some(1_717_243_200)
        );
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        // Docker's "never" for a container that has not finished.
        assert!(parse_rfc3339("0001-01-01T00:00:00Z").unwrap() < 0);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
