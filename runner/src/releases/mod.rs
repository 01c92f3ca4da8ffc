//! Released versions from the registries: what a matrix's `latest` and `newest: N` stand for, and the companions
//! a release needs (the libp2p-stream of a libp2p release, the go-libp2p a go-libp2p-pubsub release requires).
//!
//! rust-libp2p comes from the crates.io sparse index, go-libp2p and go-libp2p-pubsub from the Go module proxy.
//! Every answer is cached under `$MESHGATE_CACHE/releases/` with the time it was given: a list of releases is
//! used for a day without asking again, and when the registry does not answer, the cached one of any age is used
//! and the resolution says so. A go.mod of a version never changes, so it is kept for good.

mod crates;
mod goproxy;
#[cfg(test)]
pub(crate) mod recorded;

pub use crates::{companion, index_path, parse_index, CrateRelease};
pub use goproxy::{escape, parse_list, parse_version, requirement, retracts};

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use semver::Version;
use serde::{Deserialize, Serialize};

/// The crates.io sparse index to read instead of the default (a mirror; an address that does not answer tests the
/// offline path).
pub const CRATES_INDEX_ENV: &str = "MESHGATE_CRATES_INDEX";
/// The Go module proxy to read instead of `GOPROXY`'s first entry.
pub const GOPROXY_ENV: &str = "MESHGATE_GOPROXY";
const CRATES_INDEX: &str = "https://index.crates.io";
const GOPROXY: &str = "https://proxy.golang.org";
/// How long a list of releases is used without asking the registry again.
pub const FRESH_FOR: Duration = Duration::from_secs(24 * 3600);

/// What a version request of the matrix stood for, as a run records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    /// The matrix's implementation (`go`).
    pub implementation: String,
    /// The library resolved: `libp2p`, `github.com/libp2p/go-libp2p`, `github.com/libp2p/go-libp2p-pubsub`.
    pub library: String,
    /// As the matrix wrote it: `latest`, `newest: 3`.
    pub request: String,
    /// The releases it stands for, newest first.
    pub versions: Vec<String>,
    /// The registry's address.
    pub source: String,
    /// When the registry gave the answer used (RFC 3339).
    pub resolved_at: String,
    /// The answer came from the cache: still fresh (younger than a day), or the registry did not answer.
    #[serde(default)]
    pub cached: bool,
    /// The registry did not answer (why): the cached answer was used, whatever its age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline: Option<String>,
    /// What was left out, when something was (release lines older than meshgate builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Resolution {
    /// One line: `go: newest: 2 = v0.52.0, v0.51.0 (github.com/libp2p/go-libp2p, https://proxy.golang.org at ...)`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{}: {} = {} ({} from {}, as of {}",
            self.implementation,
            self.request,
            self.versions.join(", "),
            self.library,
            self.source,
            self.resolved_at
        );
        if let Some(why) = &self.offline {
            s.push_str(&format!("; OFFLINE, the cached resolution: the registry did not answer: {why}"));
        } else if self.cached {
            s.push_str("; cached, fresh for a day");
        }
        s.push(')');
        if let Some(note) = &self.note {
            s.push_str(&format!("; {note}"));
        }
        s
    }
}

/// A registry's answer, from the network or the cache.
#[derive(Debug, Clone)]
pub struct Answer {
    pub text: String,
    pub source: String,
    /// Unix seconds when the registry gave it.
    pub fetched_at: u64,
    pub cached: bool,
    /// Set when the registry did not answer and this is the cached answer: why.
    pub offline: Option<String>,
}

impl Answer {
    pub fn time(&self) -> String {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(self.fetched_at)).to_string()
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    source: String,
    fetched_at: u64,
    text: String,
}

/// Where the registries are, and where their answers are kept.
#[derive(Debug, Clone)]
pub struct Registries {
    pub crates_index: String,
    /// The Go module proxy; empty: `GOPROXY`'s first proxy.
    pub goproxy: String,
    pub cache: PathBuf,
}

impl Registries {
    /// The registries of this machine: `MESHGATE_CRATES_INDEX`, `MESHGATE_GOPROXY` (else the first proxy of
    /// `GOPROXY` / `go env GOPROXY`), cached under `$MESHGATE_CACHE/releases`.
    pub fn from_env() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Registries {
            crates_index: env(CRATES_INDEX_ENV).unwrap_or_else(|| CRATES_INDEX.to_owned()),
            // Empty: asked of `go env` when first needed (most matrices never need it).
            goproxy: env(GOPROXY_ENV).unwrap_or_default(),
            cache: crate::cache::cache_dir().join("releases"),
        }
    }

    /// The Go module proxy: this one's, else the first proxy of `GOPROXY` (the environment's, else `go env`'s).
    fn goproxy(&self) -> String {
        if !self.goproxy.is_empty() {
            return self.goproxy.trim_end_matches('/').to_owned();
        }
        static DEFAULT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                let list = std::env::var("GOPROXY").ok().filter(|v| !v.trim().is_empty()).or_else(|| {
                    let out = std::process::Command::new("go").args(["env", "GOPROXY"]).output().ok()?;
                    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
                });
                // `direct` and `off` are no proxies: the first entry that is one (the default's, else).
                list.unwrap_or_default()
                    .split([',', '|'])
                    .find(|p| p.starts_with("http://") || p.starts_with("https://"))
                    .unwrap_or(GOPROXY)
                    .trim_end_matches('/')
                    .to_owned()
            })
            .clone()
    }

    /// The index file of a crate.
    pub fn crate_index(&self, name: &str) -> Result<Answer, String> {
        let base = self.crates_index.trim_end_matches('/');
        self.get(&format!("{base}/{}", index_path(name)), &format!("crates/{name}"), Some(FRESH_FOR))
    }

    /// The version list of a Go module.
    pub fn module_list(&self, module: &str) -> Result<Answer, String> {
        let base = self.goproxy();
        let key = format!("go/{}@list", escape(module));
        self.get(&format!("{base}/{}/@v/list", escape(module)), &key, Some(FRESH_FOR))
    }

    /// The go.mod of a version of a Go module (never changes: kept for good).
    pub fn module_mod(&self, module: &str, version: &str) -> Result<Answer, String> {
        let base = self.goproxy();
        let key = format!("go/{}@{version}.mod", escape(module));
        self.get(&format!("{base}/{}/@v/{version}.mod", escape(module)), &key, None)
    }

    /// `url`'s answer: the cached one while fresh (`fresh: None`, forever), else the registry's, else the cached
    /// one of any age, marked offline.
    fn get(&self, url: &str, key: &str, fresh: Option<Duration>) -> Result<Answer, String> {
        let file = self.cache.join(format!("{}.json", key.replace('/', "%")));
        let stored: Option<Stored> = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let answer = |s: Stored, offline| Answer {
            text: s.text,
            source: s.source,
            fetched_at: s.fetched_at,
            cached: true,
            offline,
        };
        if let Some(s) = &stored {
            let young = fresh.is_none_or(|f| now.saturating_sub(s.fetched_at) < f.as_secs());
            if young && s.source == url {
                return Ok(answer(stored.unwrap(), None));
            }
        }
        match fetch(url) {
            Ok(text) => {
                let s = Stored { source: url.to_owned(), fetched_at: now, text };
                // A cache that cannot be written costs the next run a question, nothing else.
                let _ = std::fs::create_dir_all(&self.cache).and_then(|()| {
                    let partial = file.with_extension(format!("partial-{}", std::process::id()));
                    std::fs::write(&partial, serde_json::to_vec(&s).unwrap_or_default())?;
                    std::fs::rename(&partial, &file)
                });
                Ok(Answer { text: s.text, source: s.source, fetched_at: now, cached: false, offline: None })
            }
            Err(e) => match stored {
                Some(s) => Ok(answer(s, Some(e))),
                None => Err(format!("{e}, and nothing is cached in {}", self.cache.display())),
            },
        }
    }
}

/// One GET; any answer but 200 is an error naming the address.
fn fetch(url: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .user_agent(concat!("meshgate/", env!("CARGO_PKG_VERSION")))
        // The system's certificate store, as curl and go use: a site's own authority (a proxy's) is trusted.
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    response
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))
}

/// A version request of a matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The newest release.
    Latest,
    /// The newest release of each of the N newest minor lines.
    Newest(u32),
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Request::Latest => f.write_str("latest"),
            Request::Newest(n) => write!(f, "newest: {n}"),
        }
    }
}

/// The releases `request` stands for among `versions` (pre-releases left out; the caller leaves out yanked and
/// retracted ones), newest first, none of a line older than `floor` (major, minor). The note says what `floor`
/// left out.
pub fn select(versions: &[Version], request: Request, floor: (u64, u64)) -> (Vec<Version>, Option<String>) {
    let n = match request {
        Request::Latest => 1,
        Request::Newest(n) => n as usize,
    };
    let mut sorted: Vec<&Version> = versions.iter().filter(|v| v.pre.is_empty()).collect();
    sorted.sort_by(|a, b| b.cmp(a));
    let mut lines: Vec<Version> = Vec::new();
    for v in sorted {
        if lines.last().is_none_or(|l| (l.major, l.minor) != (v.major, v.minor)) {
            lines.push(v.clone());
        }
    }
    lines.truncate(n);
    let before = lines.len();
    lines.retain(|v| (v.major, v.minor) >= floor);
    let note = (lines.len() < before).then(|| {
        format!(
            "{} older line(s) left out: meshgate builds {}.{} and newer",
            before - lines.len(),
            floor.0,
            floor.1
        )
    });
    (lines, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(list: &str) -> Vec<Version> {
        parse_list(list)
    }

    #[test]
    fn newest_lines_take_each_line_at_its_newest_patch_and_skip_pre_releases() {
        let list = versions("v0.50.0\nv0.51.0\nv0.51.1\nv0.52.0-rc1\nv0.49.3\nv0.52.0\nv0.53.0-rc.1\nv0.38.2\n");
        let names = |(v, _): (Vec<Version>, Option<String>)| v.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        assert_eq!(names(select(&list, Request::Latest, (0, 38))), ["0.52.0"]);
        assert_eq!(names(select(&list, Request::Newest(3), (0, 38))), ["0.52.0", "0.51.1", "0.50.0"]);
        let (v, note) = select(&list, Request::Newest(9), (0, 50));
        assert_eq!(v.len(), 3);
        assert_eq!(note.as_deref(), Some("2 older line(s) left out: meshgate builds 0.50 and newer"));
    }

    /// A registry address nothing listens on.
    fn unreachable() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{port}")
    }

    #[test]
    fn an_unreachable_registry_uses_the_cache_of_any_age_and_says_so() {
        let cache = tempfile::tempdir().unwrap();
        let r = Registries {
            crates_index: unreachable(),
            goproxy: unreachable(),
            cache: cache.path().to_owned(),
        };
        let e = r.module_list("github.com/libp2p/go-libp2p").unwrap_err();
        assert!(e.contains("nothing is cached"), "{e}");
        // A stale answer of the same address: asked again, then used, marked offline.
        let url = format!("{}/github.com/libp2p/go-libp2p/@v/list", r.goproxy);
        let stored = Stored { source: url, fetched_at: 1_000, text: "v0.52.0\n".into() };
        std::fs::write(
            cache.path().join("go%github.com%libp2p%go-libp2p@list.json"),
            serde_json::to_vec(&stored).unwrap(),
        )
        .unwrap();
        let a = r.module_list("github.com/libp2p/go-libp2p").unwrap();
        assert_eq!(a.text, "v0.52.0\n");
        assert!(a.cached);
        assert!(a.offline.as_deref().is_some_and(|w| w.contains("127.0.0.1")), "{:?}", a.offline);
        assert_eq!(a.time(), "1970-01-01T00:16:40Z");
    }
}
