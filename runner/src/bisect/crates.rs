//! After the facade: which libp2p-* crate release made the change. A `libp2p` release only states requirements on
//! its sub-crates (`libp2p-gossipsub ^0.49.0`) and cargo builds it with the newest release each allows, so the change
//! between the last good and the first bad facade may be a sub-crate patch. Pins (`cargo update --precise`) move a
//! sub-crate only within what the facade requires, so the search happens inside the newer facade of the two: its
//! sub-crates are pinned down to the lowest releases its requirements allow (not below what the older facade used,
//! when that is allowed too). If the verdict then turns to the older facade's, halving the pinned set names the
//! crate, and a search over its releases names the release. A crate whose line changed with the facade (`^0.48` to
//! `^0.49`) cannot be pinned across it: it is listed, not searched.

use std::collections::BTreeMap;

use semver::{Version, VersionReq};
use serde::Serialize;

use crate::releases::{parse_index, CrateRelease};

/// One sub-crate of the newer facade, as pins can move it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Range {
    #[serde(rename = "crate")]
    pub name: String,
    /// What the newer facade was built with.
    pub newer: String,
    /// What the older facade was built with (absent: it did not depend on the crate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub older: Option<String>,
    /// The releases pins may choose, oldest first, ending at `newer`: allowed by the newer facade's requirement and
    /// not older than `older` where that is allowed too. One release: nothing to move.
    pub releases: Vec<String>,
}

impl Range {
    /// Whether a pin can set the crate to another release than the newer facade's.
    pub fn movable(&self) -> bool {
        self.releases.len() > 1
    }

    /// The release a pin sets it to when searching: the lowest one allowed.
    pub fn lowest(&self) -> &str {
        &self.releases[0]
    }
}

/// The sub-crates of facade `newer` among `crates` (the ones the peer is built with) that differ from what `older`
/// used, each with the releases pins may choose. `built_newer`/`built_older`: the versions the steps' peers reported
/// (the build may keep a lock's older patch); a crate missing there is taken as the newest release the requirement
/// allows, as cargo would resolve it. `index` gives a crate's index file.
pub fn ranges(
    facade: &[CrateRelease],
    newer: &Version,
    older: &Version,
    crates: &[String],
    built_newer: &BTreeMap<String, String>,
    built_older: &BTreeMap<String, String>,
    index: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Vec<Range>, String> {
    let release = |v: &Version| {
        facade.iter().find(|r| &r.version == v).ok_or_else(|| format!("the index has no libp2p {v}"))
    };
    let (newer_facade, older_facade) = (release(newer)?, release(older)?);
    let mut ranges = Vec::new();
    for name in crates {
        let Some(req_text) = newer_facade.deps.get(name) else { continue };
        let req = VersionReq::parse(req_text).map_err(|e| format!("libp2p {newer} requires {name} `{req_text}`: {e}"))?;
        let all: Vec<Version> = parse_index(&index(name)?)?
            .into_iter()
            .filter(|r| !r.yanked && r.version.pre.is_empty())
            .map(|r| r.version)
            .collect();
        let resolved = |built: &BTreeMap<String, String>, req: &VersionReq| {
            built
                .get(name)
                .and_then(|v| Version::parse(v.split('+').next().unwrap_or(v)).ok())
                .or_else(|| all.iter().filter(|v| req.matches(v)).max().cloned())
        };
        let Some(newer_v) = resolved(built_newer, &req) else { continue };
        let older_v = match older_facade.deps.get(name).map(|r| VersionReq::parse(r)) {
            Some(Ok(older_req)) => resolved(built_older, &older_req),
            _ => None,
        };
        if older_v.as_ref() == Some(&newer_v) {
            continue;
        }
        let floor = older_v.as_ref().filter(|o| req.matches(o));
        let mut allowed: Vec<Version> = all
            .iter()
            .filter(|v| req.matches(v) && *v <= &newer_v && floor.is_none_or(|f| *v >= f))
            .cloned()
            .collect();
        allowed.sort();
        allowed.dedup();
        if allowed.last() != Some(&newer_v) {
            allowed.push(newer_v.clone());
        }
        ranges.push(Range {
            name: name.clone(),
            newer: newer_v.to_string(),
            older: older_v.map(|v| v.to_string()),
            releases: allowed.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(ranges)
}

/// The crate and release the search inside the newer facade named, or why it named none.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Narrowed {
    /// The facade searched inside (the newer of the last good and the first bad).
    pub facade: String,
    /// Its sub-crates that differ from the older facade's.
    pub changed: Vec<Range>,
    /// The crate whose release made the change, when found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub culprit: Option<String>,
    /// Its first release with the newer facade's verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    /// Its last release with the older facade's verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// What the search found, one line.
    pub conclusion: String,
}

/// The pins that set every range of `set` to its lowest release.
pub fn lowest_pins(set: &[&Range]) -> BTreeMap<String, String> {
    set.iter().map(|r| (r.name.clone(), r.lowest().to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(name: &str) -> Result<String, String> {
        let line = |v: &str, yanked: bool| format!("{{\"vers\":\"{v}\",\"yanked\":{yanked},\"deps\":[]}}\n");
        Ok(match name {
            "libp2p-gossipsub" => ["0.48.0", "0.48.1", "0.49.0", "0.49.1", "0.49.2", "0.49.3"]
                .iter()
                .map(|v| line(v, *v == "0.49.1"))
                .collect(),
            "libp2p-swarm" => ["0.47.0", "0.47.1"].iter().map(|v| line(v, false)).collect(),
            "libp2p-core" => ["0.43.0", "0.43.1", "0.43.2"].iter().map(|v| line(v, false)).collect(),
            "libp2p-request-response" => ["0.28.0", "0.29.0"].iter().map(|v| line(v, false)).collect(),
            other => return Err(format!("no index for {other}")),
        })
    }

    const FACADE: &str = r#"{"vers":"0.56.0","deps":[{"name":"libp2p-gossipsub","req":"^0.49.0"},{"name":"libp2p-swarm","req":"^0.47.0"},{"name":"libp2p-core","req":"^0.43.1"},{"name":"libp2p-request-response","req":"^0.29.0"},{"name":"libp2p-kad","req":"^0.48.0"}]}
{"vers":"0.56.1","deps":[{"name":"libp2p-gossipsub","req":"^0.49.2"},{"name":"libp2p-swarm","req":"^0.47.0"},{"name":"libp2p-core","req":"^0.43.1"},{"name":"libp2p-request-response","req":"^0.29.0"}]}
"#;

    fn names(v: &[Range]) -> Vec<&str> {
        v.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn within_one_line_a_crate_moves_between_what_each_facade_used() {
        let facade = parse_index(FACADE).unwrap();
        let crates: Vec<String> =
            ["libp2p-gossipsub", "libp2p-swarm", "libp2p-core", "libp2p-request-response"].map(String::from).into();
        // The older facade's peer was built with gossipsub 0.49.0 and core 0.43.1; the newer's not run: its crates
        // are what cargo resolves, the newest each requirement allows.
        let older_built: BTreeMap<String, String> =
            [("libp2p-gossipsub", "0.49.0"), ("libp2p-core", "0.43.1"), ("libp2p-swarm", "0.47.1")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .into();
        let r = ranges(
            &facade,
            &Version::new(0, 56, 1),
            &Version::new(0, 56, 0),
            &crates,
            &BTreeMap::new(),
            &older_built,
            &index_of,
        )
        .unwrap();
        // swarm and request-response did not change; gossipsub's requirement rose to ^0.49.2, so pins start
        // there and not at the older 0.49.0, which it no longer allows (0.49.1 is yanked anyway).
        assert_eq!(names(&r), ["libp2p-gossipsub", "libp2p-core"]);
        assert_eq!(r[0].releases, ["0.49.2", "0.49.3"]);
        assert_eq!(r[0].older.as_deref(), Some("0.49.0"));
        assert_eq!(r[1].releases, ["0.43.1", "0.43.2"], "not below what the older facade used");
        assert!(r.iter().all(Range::movable));
        assert_eq!(lowest_pins(&r.iter().collect::<Vec<_>>())["libp2p-gossipsub"], "0.49.2");
    }

    #[test]
    fn a_crate_whose_line_changed_with_the_facade_cannot_move() {
        let facade = parse_index(&FACADE.replace("\"0.56.0\",\"deps\":[{\"name\":\"libp2p-gossipsub\",\"req\":\"^0.49.0\"}", "\"0.56.0\",\"deps\":[{\"name\":\"libp2p-gossipsub\",\"req\":\"^0.48.0\"}")).unwrap();
        let r = ranges(
            &facade,
            &Version::new(0, 56, 1),
            &Version::new(0, 56, 0),
            &["libp2p-gossipsub".to_owned()],
            &[("libp2p-gossipsub".to_owned(), "0.49.2".to_owned())].into(),
            &BTreeMap::new(),
            &index_of,
        )
        .unwrap();
        // The older facade used 0.48.1, outside ^0.49.2: the newer one was built with 0.49.2, its lowest allowed.
        assert_eq!(r[0].older.as_deref(), Some("0.48.1"));
        assert_eq!(r[0].releases, ["0.49.2"]);
        assert!(!r[0].movable());
    }
}
