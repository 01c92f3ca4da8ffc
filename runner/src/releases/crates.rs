//! The crates.io sparse index: one JSON line per release of a crate (`vers`, `yanked`, `deps`).

use std::collections::BTreeMap;

use semver::{Version, VersionReq};
use serde::Deserialize;

/// One release of a crate, as the index describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct CrateRelease {
    pub version: Version,
    pub yanked: bool,
    /// Dependency (crate name, not the name it is imported as) to its requirement.
    pub deps: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Line {
    vers: String,
    #[serde(default)]
    yanked: bool,
    #[serde(default)]
    deps: Vec<Dep>,
}

#[derive(Deserialize)]
struct Dep {
    name: String,
    req: String,
    /// The crate's real name when the dependency is renamed.
    #[serde(default)]
    package: Option<String>,
}

/// The index's path of a crate: `li/bp/libp2p`, `3/s/syn`, `1/a`.
pub fn index_path(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    match name.len() {
        1 => format!("1/{name}"),
        2 => format!("2/{name}"),
        3 => format!("3/{}/{name}", &name[..1]),
        _ => format!("{}/{}/{name}", &name[..2], &name[2..4]),
    }
}

/// Every release in an index file; a line that is not one is an error naming it.
pub fn parse_index(text: &str) -> Result<Vec<CrateRelease>, String> {
    let mut releases = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let l: Line = serde_json::from_str(line)
            .map_err(|e| format!("line {} of the index is not a release: {e}", i + 1))?;
        let Ok(version) = Version::parse(&l.vers) else {
            continue; // not semver: no release a requirement could name
        };
        let deps = l
            .deps
            .into_iter()
            .map(|d| (d.package.unwrap_or(d.name), d.req))
            .collect();
        releases.push(CrateRelease { version, yanked: l.yanked, deps });
    }
    Ok(releases)
}

/// The (major, minor) line a requirement like `^0.48.0` names: the unit of compatibility of a 0.x crate.
fn line_of(req: &str) -> Option<(u64, u64)> {
    let req = VersionReq::parse(req).ok()?;
    let c = req.comparators.first()?;
    Some((c.major, c.minor.unwrap_or(0)))
}

/// The companion of `release` among `candidates` (the releases of another crate): the newest one, yanked ones left
/// out, whose requirement on `shared` names the same line as `release`'s own, so that both use one `shared`.
/// libp2p-stream is released outside the libp2p facade, alpha-versioned: the one that goes with a libp2p release
/// is the one built on the same libp2p-swarm.
pub fn companion(release: &CrateRelease, shared: &str, candidates: &[CrateRelease]) -> Option<Version> {
    let line = line_of(release.deps.get(shared)?)?;
    candidates
        .iter()
        .filter(|c| !c.yanked && c.deps.get(shared).and_then(|r| line_of(r)) == Some(line))
        .map(|c| c.version.clone())
        .max()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Lines of the real index (trimmed to the fields read), as crates.io served them.
    pub const LIBP2P: &str = r#"{"name":"libp2p","vers":"0.54.0","deps":[{"name":"libp2p-swarm","req":"^0.45.0","features":[],"optional":false,"default_features":true,"target":null,"kind":"normal"}],"cksum":"x","features":{},"yanked":false}
{"name":"libp2p","vers":"0.54.1","deps":[{"name":"libp2p-swarm","req":"^0.45.1"}],"yanked":false}
{"name":"libp2p","vers":"0.55.0","deps":[{"name":"libp2p-swarm","req":"^0.46.0"}],"yanked":false}
{"name":"libp2p","vers":"0.56.0","deps":[{"name":"libp2p-swarm","req":"^0.47.0"}],"yanked":false}
{"name":"libp2p","vers":"0.57.0","deps":[{"name":"libp2p-swarm","req":"^0.48.0"}],"yanked":false}
{"name":"libp2p","vers":"0.57.1","deps":[{"name":"libp2p-swarm","req":"^0.48.0"}],"yanked":false}
"#;
    pub const STREAM: &str = r#"{"name":"libp2p-stream","vers":"0.1.0-alpha","deps":[{"name":"libp2p-swarm","req":"^0.44.1"}],"yanked":false}
{"name":"libp2p-stream","vers":"0.2.0-alpha","deps":[{"name":"libp2p-swarm","req":"^0.45.0"}],"yanked":false}
{"name":"libp2p-stream","vers":"0.3.0-alpha","deps":[{"name":"libp2p-swarm","req":"^0.46.0"}],"yanked":false}
{"name":"libp2p-stream","vers":"0.3.0-alpha.1","deps":[{"name":"libp2p-swarm","req":"^0.47.0"}],"yanked":true}
{"name":"libp2p-stream","vers":"0.4.0-alpha","deps":[{"name":"libp2p-swarm","req":"^0.47.0"}],"yanked":false}
{"name":"libp2p-stream","vers":"0.5.0-alpha","deps":[{"name":"libp2p-swarm","req":"^0.48.0"}],"yanked":false}
"#;

    #[test]
    fn index_paths_follow_the_name_length() {
        assert_eq!(index_path("libp2p"), "li/bp/libp2p");
        assert_eq!(index_path("libp2p-stream"), "li/bp/libp2p-stream");
        assert_eq!(index_path("syn"), "3/s/syn");
        assert_eq!(index_path("Ab"), "2/ab");
    }

    #[test]
    fn the_stream_release_is_the_one_on_the_same_swarm_and_never_a_yanked_one() {
        let libp2p = parse_index(LIBP2P).unwrap();
        let stream = parse_index(STREAM).unwrap();
        let of = |v: &str| {
            let r = libp2p.iter().find(|r| r.version.to_string() == v).unwrap();
            companion(r, "libp2p-swarm", &stream).map(|v| v.to_string())
        };
        // The table images/rust/build held before, derived.
        assert_eq!(of("0.54.1").as_deref(), Some("0.2.0-alpha"));
        assert_eq!(of("0.55.0").as_deref(), Some("0.3.0-alpha"));
        assert_eq!(of("0.56.0").as_deref(), Some("0.4.0-alpha"), "0.3.0-alpha.1 is yanked");
        assert_eq!(of("0.57.1").as_deref(), Some("0.5.0-alpha"));
        let future = CrateRelease {
            version: Version::new(0, 58, 0),
            yanked: false,
            deps: [("libp2p-swarm".to_owned(), "^0.49.0".to_owned())].into(),
        };
        assert_eq!(companion(&future, "libp2p-swarm", &stream), None, "no release yet: none made up");
    }

    #[test]
    fn a_line_that_is_no_release_is_an_error() {
        let e = parse_index("{\"vers\":\"0.1.0\"}\nnot json\n").unwrap_err();
        assert!(e.starts_with("line 2 of the index"), "{e}");
    }
}
