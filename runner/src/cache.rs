//! Where meshgate keeps what outlives a run: peer builds, images' binaries, registry answers.

use std::path::PathBuf;

/// Build caches outside the checkout, shared by every run on this machine: `MESHGATE_CACHE`, else
/// `$XDG_CACHE_HOME/meshgate`, else `~/.cache/meshgate`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("MESHGATE_CACHE") {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("meshgate")
}
