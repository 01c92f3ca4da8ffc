//! The runner's async threads, which take in the peers' output and stamp each line as it arrives, run at a
//! real-time priority where the system permits it.
//!
//! On a host its peers saturate, a normal thread waits for a CPU for up to a second and more, and every line it
//! takes in meanwhile is stamped that late (the harness lag). Measured with 200 peers on two cores: a 10 ms sleep in
//! the runner's place overslept by up to 1.4 s, by as much at nice -20 (the scheduler's autogroups make nice
//! count only within a session), and by under 10 ms with a real-time policy. Only reading and stamping runs so, a
//! few percent of one core at 200 peers, which costs the peers next to nothing; the runner's own work on the lines
//! runs under the normal policy ([`normal_while`]), and the kernel's real-time throttling
//! (`kernel.sched_rt_runtime_us`) bounds the rest whatever happens.

use std::io;

/// The lowest real-time priority: ahead of every normal thread, behind anything that asked for more.
const PRIORITY: libc::c_int = 1;

/// Puts the calling thread under round-robin real-time scheduling. Processes it starts (a local peer, `ip`,
/// `iptables`, a build) start under the normal policy again.
pub fn raise_this_thread() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: PRIORITY };
    // On Linux, pid 0 is the calling thread, not the whole process.
    // SAFETY: sets the calling thread's own policy from a parameter that outlives the call.
    match unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Runs `work` on the calling thread under the normal policy, and puts the thread back under the real-time one
/// after, if it was. For the runner's own work on what it took in (checking, recording): behind a large case, that
/// work would otherwise take a core from the peers at a real-time priority for as long as it is behind (at 400
/// peers on two cores the peers then delivered half as much).
pub fn normal_while<T>(work: impl FnOnce() -> T) -> T {
    // SAFETY: reading and setting the calling thread's own policy.
    let raised = unsafe { libc::sched_getscheduler(0) } & !libc::SCHED_RESET_ON_FORK == libc::SCHED_RR;
    if raised {
        let param = libc::sched_param { sched_priority: 0 };
        unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER | libc::SCHED_RESET_ON_FORK, &param) };
    }
    let done = work();
    if raised {
        let _ = raise_this_thread();
    }
    done
}

/// Whether a thread of this process could be raised: tried on a throwaway thread, so the caller's stays as it is.
pub fn permitted() -> Result<(), String> {
    std::thread::spawn(|| raise_this_thread().map_err(|e| e.to_string()))
        .join()
        .unwrap_or_else(|_| Err("the probing thread panicked".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy is the thread's own: raising one thread leaves the others, and a process it starts, as they were.
    #[test]
    fn raising_a_thread_leaves_the_others_and_its_children_normal() {
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let before = policy();
        let raised = std::thread::spawn(move || {
            let r = raise_this_thread();
            // Field 41 of a process's stat is its scheduling policy; `$$` is the shell itself.
            let child = std::process::Command::new("sh")
                .args(["-c", "cut -d' ' -f41 /proc/$$/stat"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
            (r, policy(), child)
        })
        .join()
        .unwrap();
        assert_eq!(policy(), before, "the calling thread is untouched");
        match raised {
            (Ok(()), p, child) => {
                assert_eq!(p & !libc::SCHED_RESET_ON_FORK, libc::SCHED_RR);
                // Lowered for a piece of work, raised again after.
                let (during, after) = std::thread::spawn(move || {
                    raise_this_thread().unwrap();
                    let during = normal_while(policy);
                    (during, policy())
                })
                .join()
                .unwrap();
                assert_eq!(during & !libc::SCHED_RESET_ON_FORK, libc::SCHED_OTHER);
                assert_eq!(after & !libc::SCHED_RESET_ON_FORK, libc::SCHED_RR);
                assert_eq!(child.unwrap(), libc::SCHED_OTHER.to_string(), "a child starts under the normal policy");
            }
            // Without the privilege nothing changed.
            (Err(e), p, _) => {
                assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
                assert_eq!(p, before);
            }
        }
    }
}
