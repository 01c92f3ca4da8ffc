//! `latest` and `{newest: N}` resolved from the registries when a matrix is loaded (`releases`), and what each
//! release needs besides: rust, the libp2p-stream release built on the same libp2p-swarm (a companion outside the
//! facade); go, the go-libp2p a pinned go-libp2p-pubsub requires (Go's minimal version selection raises go-libp2p
//! to it, so a case asking for an older one cannot be built as asked).

use std::collections::BTreeMap;
use std::path::Path;

use semver::{Version, VersionReq};

use super::{Axis, Language, Matrix, MatrixError, VersionValue};
use crate::releases::{self, Registries, Resolution};

pub const LIBP2P_CRATE: &str = "libp2p";
pub const STREAM_CRATE: &str = "libp2p-stream";
pub const GO_LIBP2P: &str = "github.com/libp2p/go-libp2p";
pub const GO_PUBSUB: &str = "github.com/libp2p/go-libp2p-pubsub";
/// The pin name of go-libp2p-pubsub in a matrix (`matrix::GO_PINNABLE`).
pub const PUBSUB_PIN: &str = "go-libp2p-pubsub";

/// What the registries said for a matrix.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// Every `latest` / `newest: N` of the matrix, as resolved.
    pub resolutions: Vec<Resolution>,
    /// Per rust version of the matrix (as written, `0.56` or `=0.57.1`): the libp2p-stream release that goes with it.
    pub streams: BTreeMap<String, String>,
    /// Per go-libp2p-pubsub version pinned: the go-libp2p version its go.mod requires.
    pub pubsub_requires: BTreeMap<String, String>,
    /// What could not be derived (the registry did not answer, nothing cached): the build decides by itself.
    pub warnings: Vec<String>,
}

impl Resolved {
    /// Whether any resolution used a cached answer because the registry did not answer.
    pub fn offline(&self) -> bool {
        self.resolutions.iter().any(|r| r.offline.is_some())
    }
}

/// The releases of a library that a request may name: pre-releases, yanked (crates) and retracted (Go modules)
/// versions left out; with the registry's answer it came from.
pub fn releases_of(reg: &Registries, library: &str) -> Result<(Vec<Version>, releases::Answer), String> {
    if library == LIBP2P_CRATE {
        let a = reg.crate_index(library)?;
        let all = releases::parse_index(&a.text)?;
        let v = all.into_iter().filter(|r| !r.yanked).map(|r| r.version).collect();
        return Ok((v, a));
    }
    let a = reg.module_list(library)?;
    let mut v: Vec<Version> = releases::parse_list(&a.text).into_iter().filter(|v| v.pre.is_empty()).collect();
    // Retractions are declared in a later version's go.mod: the newest release's names them all.
    if let Some(newest) = v.iter().max().cloned() {
        let gomod = reg.module_mod(library, &format!("v{newest}"))?;
        v.retain(|x| !releases::retracts(&gomod.text, x));
    }
    Ok((v, a))
}

/// A release as a matrix value: rust `=0.57.1`, go `v0.52.0`.
pub fn written(library: &str, v: &Version) -> String {
    if library == LIBP2P_CRATE {
        format!("={v}")
    } else {
        format!("v{v}")
    }
}

/// Replaces the requests among `values` by the releases they stand for (duplicates dropped), recording each.
fn resolve_values(
    reg: &Registries,
    implementation: &str,
    library: &str,
    floor: (u64, u64),
    values: &mut Vec<VersionValue>,
    out: &mut Vec<Resolution>,
) -> Result<(), String> {
    if values.iter().all(|v| v.exact().is_some()) {
        return Ok(());
    }
    let (versions, answer) = releases_of(reg, library)?;
    let mut resolved: Vec<VersionValue> = Vec::new();
    for value in values.drain(..) {
        let picked = match value {
            VersionValue::Exact(v) => vec![v],
            VersionValue::Resolve(request) => {
                let (picked, note) = releases::select(&versions, request, floor);
                if picked.is_empty() {
                    return Err(format!("`{request}` names no release of {library} at {}", answer.source));
                }
                let picked: Vec<String> = picked.iter().map(|v| written(library, v)).collect();
                out.push(Resolution {
                    implementation: implementation.to_owned(),
                    library: library.to_owned(),
                    request: request.to_string(),
                    versions: picked.iter().map(|v| v.trim_start_matches('=').to_owned()).collect(),
                    source: answer.source.clone(),
                    resolved_at: answer.time(),
                    cached: answer.cached,
                    offline: answer.offline.clone(),
                    note,
                });
                picked
            }
        };
        for v in picked {
            let v = VersionValue::Exact(v);
            if !resolved.contains(&v) {
                resolved.push(v);
            }
        }
    }
    *values = resolved;
    Ok(())
}

/// The libp2p-stream release for a libp2p requirement as a matrix writes it (`0.56`: the newest 0.56.x).
fn stream_for(reg: &Registries, version: &str) -> Result<Option<String>, String> {
    let req = VersionReq::parse(version).map_err(|e| format!("libp2p `{version}`: {e}"))?;
    let libp2p = releases::parse_index(&reg.crate_index(LIBP2P_CRATE)?.text)?;
    let Some(release) = libp2p
        .iter()
        .filter(|r| !r.yanked && r.version.pre.is_empty() && req.matches(&r.version))
        .max_by(|a, b| a.version.cmp(&b.version))
    else {
        return Ok(None);
    };
    let streams = releases::parse_index(&reg.crate_index(STREAM_CRATE)?.text)?;
    Ok(releases::companion(release, "libp2p-swarm", &streams).map(|v| v.to_string()))
}

impl Matrix {
    /// Resolves every `latest` / `newest: N` of the matrix from the registries, and derives the companions of
    /// every version it names. A request that cannot be resolved (no registry answer, nothing cached) is an
    /// error at its implementation; a companion that cannot be derived is a warning (the build's own table
    /// decides).
    pub fn resolve(&mut self, path: &Path, reg: &Registries) -> Result<(), MatrixError> {
        let mut out = Resolved::default();
        for imp in &mut self.implementations {
            let at = Some((imp.referenced.line(), imp.referenced.column()));
            let imp = &mut imp.value;
            let err = |m: String| MatrixError {
                file: path.to_owned(),
                location: at,
                message: format!("implementation `{}`: cannot resolve its versions: {m}", imp.name),
            };
            let name = imp.name.clone();
            if let Some(Axis(values)) = &mut imp.version {
                let library = match imp.language {
                    Language::Rust => LIBP2P_CRATE,
                    _ => GO_LIBP2P,
                };
                let floor = super::oldest_line(imp.language);
                resolve_values(reg, &name, library, floor, values, &mut out.resolutions).map_err(&err)?;
            }
            if let Some(Axis(values)) = imp.pins.get_mut(PUBSUB_PIN) {
                resolve_values(reg, &name, GO_PUBSUB, (0, 0), values, &mut out.resolutions).map_err(&err)?;
            }
        }
        for imp in self.implementations.iter().map(|i| &i.value) {
            match imp.language {
                Language::Rust => {
                    for v in imp.versions().into_iter().flatten() {
                        match stream_for(reg, &v) {
                            Ok(Some(s)) => {
                                out.streams.insert(v, s);
                            }
                            Ok(None) => out.warnings.push(format!("no libp2p-stream release is built on the libp2p-swarm of libp2p {v}")),
                            Err(e) => out.warnings.push(format!("the libp2p-stream release for libp2p {v} is not derived: {e}")),
                        }
                    }
                }
                Language::Go => {
                    let pins = imp.pins.get(PUBSUB_PIN).map(|Axis(v)| v.as_slice()).unwrap_or_default();
                    for v in pins.iter().filter_map(|v| v.exact()) {
                        match reg.module_mod(GO_PUBSUB, v) {
                            Ok(a) => {
                                if let Some(req) = releases::requirement(&a.text, GO_LIBP2P) {
                                    out.pubsub_requires.insert(v.to_owned(), req);
                                }
                            }
                            Err(e) => out.warnings.push(format!("what go-libp2p-pubsub {v} requires is not known: {e}")),
                        }
                    }
                }
                Language::Image => {}
            }
        }
        self.releases = out;
        Ok(())
    }
}

/// Why a go peer cannot be built as asked: go-libp2p-pubsub `pubsub` requires a newer go-libp2p than `libp2p`, and
/// minimal version selection would build that one instead. `None` when it can (or when it is not known).
pub fn raised_by_pubsub(resolved: &Resolved, libp2p: &str, pubsub: &str) -> Option<String> {
    let required = resolved.pubsub_requires.get(pubsub)?;
    let (have, need) = (releases::parse_version(libp2p)?, releases::parse_version(required)?);
    (have < need).then(|| {
        format!("go-libp2p-pubsub {pubsub} requires go-libp2p {required} or newer: Go's minimal version selection would build that, not the go-libp2p {libp2p} asked for")
    })
}
