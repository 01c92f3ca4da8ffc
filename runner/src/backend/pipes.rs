//! Each peer container's events through a named pipe of the runner's, bind-mounted into the container
//! (`events_path`, docs/peer-contract.md §1): a line goes from the peer to the runner through the kernel alone. On
//! the engine's attach stream (kept for stdin and stderr) every line was copied by containerd-shim and by dockerd,
//! which at 200 peers took a sixth of the host while they published (docs/benchmarks.md).
//!
//! The pipes of a run live in a directory of its own under the temporary directory, removed with the run's
//! containers; one that a killed runner left is removed by the next run once its owner is dead
//! ([`super::owner`]).

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::owner::{judge, Verdict};

/// Where a peer finds its pipe inside its container.
pub const IN_CONTAINER: &str = "/meshgate-events";

/// Run directories are named so, followed by the run id.
const PREFIX: &str = "meshgate-pipes-";

/// The file in a run directory that names its owner.
const OWNER_FILE: &str = "owner";

/// The pipes of one run.
pub struct Pipes {
    dir: PathBuf,
}

impl Pipes {
    /// Makes the run's directory: readable by nobody else, passable by the peers (they run as another user and
    /// reach their pipe through the bind mount, by its inode, but the engine resolves the path as root).
    pub fn new(run_id: &str, owner: &str) -> io::Result<Self> {
        let dir = dir_of(run_id);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
        std::fs::write(dir.join(OWNER_FILE), owner)?;
        Ok(Self { dir })
    }

    /// Whether the engine sees this very directory: the engine's daemon runs on this machine and resolves the
    /// directory's path to the same one. Not so with a remote engine (`DOCKER_HOST=tcp://...`), a runner in a
    /// container of its own beside the engine, rootless Docker, or a private /tmp; the events then stay on the
    /// attach stream. Decided by the daemon's view through `/proc/<pid>/root`, which needs the right to look into
    /// the daemon's process (root has it): without it, no pipes either.
    pub fn seen_by_engine(&self) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(ours) = std::fs::metadata(&self.dir) else {
            return false;
        };
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return false;
        };
        procs.flatten().any(|p| {
            let is_daemon = std::fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.trim() == "dockerd");
            let root = p.path().join("root");
            let theirs = root.join(self.dir.strip_prefix("/").unwrap_or(&self.dir));
            is_daemon
                && std::fs::metadata(theirs).is_ok_and(|m| m.dev() == ours.dev() && m.ino() == ours.ino())
        })
    }

    /// A new pipe for a container: writable by the peer's user, read only by the runner.
    pub fn make(&self, container: &str) -> io::Result<PathBuf> {
        let path = self.dir.join(format!("{container}.events"));
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
        // Set after creation: the umask would mask the mode given to mkfifo.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o622))?;
        Ok(path)
    }

    /// Removes the directory and its pipes (what a reader still holds open stays readable).
    pub fn remove(&self) -> io::Result<()> {
        remove_dir(&self.dir)
    }
}

/// The directory of a run's pipes.
fn dir_of(run_id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{PREFIX}{run_id}"))
}

/// Removes a run's pipes, if it made any: what the run's clean-up does, which may not have the backend that made
/// them (`session::clean_up` connects anew).
pub fn remove_run(run_id: &str) -> io::Result<()> {
    remove_dir(&dir_of(run_id))
}

fn remove_dir(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Opens a pipe's reading end for one life of its container, before the container starts. Opened for writing
/// too, so that the time before the peer opens its end (and after it closed it) is not an end of file: the life
/// ends with the container's exit, after which [`drain`] takes what is left.
///
/// Not registered with the async runtime: the pipes are read on a tick ([`READ_EVERY`]), all of them at once.
/// Woken by every line instead, the runner switched contexts about 4,000 times a second at 200 peers, took 30% of
/// a core while they published, and took it from peers on a saturated host (docs/benchmarks.md).
pub fn open(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let rx = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    // A bigger buffer lets a peer write on while the runner is busy for a moment (the default is 64 KiB: about
    // 300 lines). The kernel may refuse beyond /proc/sys/fs/pipe-max-size; the default then stays.
    use std::os::fd::AsRawFd as _;
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own; a refusal only leaves the size as it was.
    unsafe { libc::fcntl(rx.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
    Ok(rx)
}

/// How often the pipes are read: what it adds to the harness lag at most (its target is 100 ms at the 99th
/// percentile), for one wake-up of the runner per period whatever the number of peers.
pub const READ_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// The buffer each pipe asks for: Linux's default /proc/sys/fs/pipe-max-size. At [`READ_EVERY`] it holds far more
/// than a peer writes between two reads.
const PIPE_BYTES: libc::c_int = 1 << 20;

/// Reads what is in the pipe now, without waiting (the descriptor is non-blocking).
pub fn drain(rx: &std::fs::File, into: &mut Vec<u8>) {
    use std::os::fd::AsRawFd as _;
    let mut buf = [0u8; 64 * 1024];
    loop {
        // SAFETY: a read into a buffer we own, of at most its length, on a descriptor `rx` keeps open.
        let n = unsafe { libc::read(rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            n if n > 0 => into.extend_from_slice(&buf[..n as usize]),
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            // Empty (would block), or an end or error: nothing more to take.
            _ => return,
        }
    }
}

/// Removes the pipe directories of runs whose owner is dead. An owner that cannot be seen from here keeps its
/// directory: an empty pipe costs nothing, a live run's cannot be told from a dead one's.
pub fn sweep_stale(own_run: &str) -> usize {
    sweep(|run, owner| run != own_run && judge(owner) == Verdict::Dead)
}

/// Removes every run's pipe directory (`meshgate clean`, which removes every run's containers too: a live run's
/// peers are gone with them, and the runner's open ends outlive the names).
pub fn remove_all() -> usize {
    sweep(|_, _| true)
}

/// Removes the pipe directories for which `remove(run, owner)` holds; returns how many went.
fn sweep(remove: impl Fn(&str, &str) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(run) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let owner = std::fs::read_to_string(entry.path().join(OWNER_FILE)).unwrap_or_default();
        if remove(run, owner.trim()) && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_carries_lines_across_writers_and_keeps_what_was_left_after_the_writer_closed() {
        let run = format!("test-{}", std::process::id());
        // Owned by this process, so that a failed run's directory is swept by a later one.
        let owner = super::super::owner::owner_of(std::process::id()).unwrap();
        let pipes = Pipes::new(&run, &owner).unwrap();
        let path = pipes.make("rust-1").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o622, "the peer's user may write, only the runner reads");
        let rx = open(&path).unwrap();
        for life in ["first", "second"] {
            std::fs::write(&path, format!("{life} life\n")).unwrap();
        }
        let mut got = Vec::new();
        drain(&rx, &mut got);
        assert_eq!(String::from_utf8(got).unwrap(), "first life\nsecond life\n");
        pipes.remove().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_dead_owners_directory_is_swept_and_a_live_ones_kept() {
        let mine = super::super::owner::owner_of(std::process::id()).unwrap();
        // This process's place (boot, pid namespace) with a pid that cannot run: seen, and dead.
        let mut parts: Vec<&str> = mine.split(':').collect();
        parts[2] = "4294967295";
        let dead = Pipes::new(&format!("test-dead-{}", std::process::id()), &parts.join(":")).unwrap();
        let live = Pipes::new(&format!("test-live-{}", std::process::id()), &mine).unwrap();
        sweep_stale("none");
        assert!(!dead.dir.exists(), "a dead owner's pipes are removed");
        assert!(live.dir.exists(), "a live owner's pipes stay");
        live.remove().unwrap();
    }
}
