//! Who owns what a run leaves: `host:pid:start-time` of a process, from /proc, so that a dead owner is recognised
//! even after its pid was reused. Docker labels and the local backend's state files carry these.

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// `host:pid:start-time` of a process, from /proc.
pub fn owner_of(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 is the start time; fields after the parenthesised command name are space-separated.
    let after = &stat[stat.rfind(')')? + 2..];
    let start = after.split(' ').nth(19)?;
    Some(format!("{}:{pid}:{start}", hostname()))
}

/// Whether the owner of a run still lives. Owners on other hosts are assumed alive: not ours to judge.
pub fn owner_alive(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(_start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return true;
    }
    pid.parse().ok().and_then(owner_of).as_deref() == Some(owner)
}

/// The pid of the process `owner` names, when that very process still runs on this host (not a zombie).
pub fn running_pid(owner: &str) -> Option<u32> {
    let mut parts = owner.rsplitn(3, ':');
    let (_start, pid, host) = (parts.next()?, parts.next()?, parts.next()?);
    let pid: u32 = pid.parse().ok()?;
    if host != hostname() || owner_of(pid).as_deref() != Some(owner) {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat[stat.rfind(')')? + 2..].chars().next()?;
    (state != 'Z' && state != 'X').then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners() {
        let me = owner_of(std::process::id()).unwrap();
        assert!(owner_alive(&me));
        assert_eq!(running_pid(&me), Some(std::process::id()));
        // Same pid, other start time: the pid was reused, the owner is dead.
        let reused = format!("{}:{}:1", hostname(), std::process::id());
        assert!(!owner_alive(&reused));
        assert_eq!(running_pid(&reused), None);
        assert!(owner_alive("some-other-host:1:1"));
        assert_eq!(
            running_pid("some-other-host:1:1"),
            None,
            "never ours to kill"
        );
        assert!(!owner_alive("garbage"));
        assert_eq!(running_pid("garbage"), None);
    }
}
