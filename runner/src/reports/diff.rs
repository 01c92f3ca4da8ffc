//! `meshgate diff OLD NEW`: which verdicts changed between two runs, for nightly trend checks.

use std::collections::{BTreeMap, BTreeSet};

use crate::results::{PeerReport, RunResults, Status};

/// The verdict of one check of one case, or of a case that could not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Passed,
    Failed,
    /// Failed in some attempts only (`--repeat`).
    Flaky,
    /// Failed as a known issue of the matrix says it does.
    Known,
    Skipped,
    /// Ran with nothing to judge.
    Inconclusive,
    /// The case could not be carried out.
    Error,
}

fn verdicts(r: &RunResults) -> BTreeMap<(String, String), Verdict> {
    let mut v = BTreeMap::new();
    for case in &r.cases {
        if case.error.is_some() {
            v.insert((case.name.clone(), "run".into()), Verdict::Error);
        }
        for c in &case.checks {
            let verdict = match c.status {
                Status::Failed if c.flaky => Verdict::Flaky,
                Status::Passed => Verdict::Passed,
                Status::Failed => Verdict::Failed,
                Status::Known => Verdict::Known,
                Status::Skipped => Verdict::Skipped,
                Status::Inconclusive => Verdict::Inconclusive,
            };
            v.insert((case.name.clone(), c.name.clone()), verdict);
        }
    }
    v
}

pub struct Diff {
    /// Implementations at versions no peer of the old run had (`go-libp2p v0.52.0`), or at a known version with a
    /// library version that is new (`github.com/libp2p/go-yamux/v5 v5.2.0 in go-libp2p v0.51.0`).
    pub appeared: Vec<String>,
    /// The same, of the old run, gone from the new one.
    pub disappeared: Vec<String>,
    /// Now failed, or the case could not be carried out; with the versions that appeared in its case, if any
    /// (`...: Passed -> Failed; fails since go-libp2p v0.52.0 appeared`).
    pub new_failures: Vec<String>,
    pub newly_flaky: Vec<String>,
    /// Now without a verdict although the check ran: it lost what it judges.
    pub newly_inconclusive: Vec<String>,
    /// Failed, flaky, errored, inconclusive or known before, passed now.
    pub fixed: Vec<String>,
    /// Everything else: now known or skipped, new checks, checks gone.
    pub other: Vec<String>,
}

impl Diff {
    pub fn between(old: &RunResults, new: &RunResults) -> Self {
        let (old_versions, new_versions) = (Versions::of(old), Versions::of(new));
        let appeared = new_versions.beyond(&old_versions);
        let disappeared = old_versions.beyond(&new_versions);
        // The versions that appeared, by the cases whose peers have them.
        let mut since: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for case in &new.cases {
            for found in &appeared {
                if case.peers.iter().any(|p| found.in_peer(p)) {
                    since.entry(&case.name).or_default().push(&found.short);
                }
            }
        }
        let (old, new) = (verdicts(old), verdicts(new));
        let mut d = Diff {
            appeared: appeared.iter().map(|f| f.line.clone()).collect(),
            disappeared: disappeared.into_iter().map(|f| f.line).collect(),
            new_failures: Vec::new(),
            newly_flaky: Vec::new(),
            newly_inconclusive: Vec::new(),
            fixed: Vec::new(),
            other: Vec::new(),
        };
        for (key @ (case, check), after) in &new {
            let before = old.get(key).copied();
            let label = format!("{case} [{check}]");
            match (before, after) {
                (Some(b), a) if b == *a => {}
                (_, Verdict::Flaky) => d
                    .newly_flaky
                    .push(format!("{label}: {} -> Flaky", name(before))),
                (_, Verdict::Failed | Verdict::Error) => {
                    let mut line = format!("{label}: {} -> {after:?}", name(before));
                    if let Some(versions) = since.get(case.as_str()) {
                        line.push_str(&format!("; fails since {} appeared", versions.join(" and ")));
                    }
                    d.new_failures.push(line)
                }
                (_, Verdict::Inconclusive) => d
                    .newly_inconclusive
                    .push(format!("{label}: {} -> Inconclusive", name(before))),
                (
                    Some(
                        Verdict::Failed
                        | Verdict::Flaky
                        | Verdict::Error
                        | Verdict::Inconclusive
                        | Verdict::Known,
                    ),
                    Verdict::Passed,
                ) => d.fixed.push(label),
                (b, a) => d.other.push(format!("{label}: {} -> {a:?}", name(b))),
            }
        }
        for key @ (case, check) in old.keys() {
            if !new.contains_key(key) {
                d.other
                    .push(format!("{case} [{check}]: gone from the new run"));
            }
        }
        d
    }

    /// Whether the new run is worse somewhere: a new failure, a newly flaky or newly inconclusive check.
    pub fn worse(&self) -> bool {
        !(self.new_failures.is_empty()
            && self.newly_flaky.is_empty()
            && self.newly_inconclusive.is_empty())
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (title, items) in [
            ("versions appeared", &self.appeared),
            ("versions disappeared", &self.disappeared),
            ("new failures", &self.new_failures),
            ("newly flaky", &self.newly_flaky),
            ("newly inconclusive", &self.newly_inconclusive),
            ("fixed", &self.fixed),
            ("other changes", &self.other),
        ] {
            out.push_str(&format!("{title}: {}\n", items.len()));
            for i in items {
                out.push_str(&format!("  {i}\n"));
            }
        }
        out
    }
}

/// The keys under which peers report the version their label names (`PeerReport::implementation_label`).
const OWN_VERSION: &[&str] = &["libp2p", "github.com/libp2p/go-libp2p"];

/// A version that one run has and the other has not: an implementation's (`go-libp2p v0.52.0`), or one library's
/// under an implementation both runs have (`github.com/libp2p/go-yamux/v5 v5.2.0`).
struct Found {
    /// The line: `go-libp2p v0.52.0 (github.com/libp2p/go-libp2p-pubsub v0.18.0)`, or
    /// `github.com/libp2p/go-yamux/v5 v5.2.0 in go-libp2p v0.51.0`.
    line: String,
    /// In one word, for "fails since ... appeared": the label, or the library and version.
    short: String,
    label: String,
    library: Option<(String, String)>,
}

impl Found {
    /// Whether this peer has it.
    fn in_peer(&self, p: &PeerReport) -> bool {
        p.implementation_label() == self.label
            && self.library.as_ref().is_none_or(|(lib, v)| p.versions.get(lib) == Some(v))
    }
}

/// The versions of a run's peers: each implementation as labelled (`go-libp2p v0.51.0`), with every library
/// version its peers reported.
struct Versions(BTreeMap<String, BTreeSet<(String, String)>>);

impl Versions {
    fn of(r: &RunResults) -> Self {
        let mut v: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        for p in r.cases.iter().flat_map(|c| &c.peers) {
            v.entry(p.implementation_label())
                .or_default()
                .extend(p.versions.iter().map(|(l, v)| (l.clone(), v.clone())));
        }
        Versions(v)
    }

    /// Whether any implementation of the same library as `label` reported this library version.
    fn has(&self, label: &str, library: &str, version: &str) -> bool {
        self.0.iter().any(|(l, libs)| {
            library_of(l) == library_of(label) && libs.contains(&(library.to_owned(), version.to_owned()))
        })
    }

    /// What this run has that `other` has not: implementation versions of its own, with the library versions new
    /// in them; then library versions new under an implementation version both have.
    fn beyond(&self, other: &Versions) -> Vec<Found> {
        let mut out = Vec::new();
        for (label, libs) in &self.0 {
            let new: Vec<&(String, String)> = libs
                .iter()
                .filter(|(l, v)| !OWN_VERSION.contains(&l.as_str()) && !other.has(label, l, v))
                .collect();
            if !other.0.contains_key(label) {
                let line = match new.is_empty() {
                    true => label.clone(),
                    false => format!(
                        "{label} ({})",
                        new.iter().map(|(l, v)| format!("{l} {v}")).collect::<Vec<_>>().join(", ")
                    ),
                };
                out.push(Found { line, short: label.clone(), label: label.clone(), library: None });
            } else {
                for (l, v) in new {
                    out.push(Found {
                        line: format!("{l} {v} in {label}"),
                        short: format!("{l} {v}"),
                        label: label.clone(),
                        library: Some((l.clone(), v.clone())),
                    });
                }
            }
        }
        out
    }
}

/// The library name of a label (`go-libp2p` of `go-libp2p v0.51.0`).
fn library_of(label: &str) -> &str {
    label.split(' ').next().unwrap_or(label)
}

fn name(v: Option<Verdict>) -> String {
    v.map(|v| format!("{v:?}")).unwrap_or_else(|| "new".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::case;
    use crate::results::{CheckResult, MatrixRef, PeerReport};

    fn run(checks: Vec<CheckResult>) -> RunResults {
        RunResults {
            meshgate: "0".into(),
            matrix: MatrixRef {
                name: "m".into(),
                file: "m".into(),
            },
            started_us: 0,
            duration_ms: 0,
            cases: vec![case(checks)],
            versions: Vec::new(),
        }
    }

    #[test]
    fn new_failures_flaky_and_fixed() {
        let pass = |n: &str| CheckResult::passed(n, vec![]);
        let fail = |n: &str| CheckResult::failed(n, "x".into(), vec![]);
        let flaky = |n: &str| CheckResult {
            flaky: true,
            ..fail(n)
        };
        let old = run(vec![pass("delivery"), fail("mesh"), pass("streams")]);
        let new = run(vec![fail("delivery"), pass("mesh"), flaky("streams")]);
        let d = Diff::between(&old, &new);
        assert_eq!(d.new_failures.len(), 1, "{}", d.render());
        assert!(d.new_failures[0].contains("[delivery]: Passed -> Failed"));
        assert_eq!(d.newly_flaky.len(), 1);
        assert!(d.fixed[0].ends_with("[mesh]"));
        assert!(d.other.is_empty());
        assert!(d.worse());
        assert!(d.render().contains("newly flaky: 1\n"), "{}", d.render());
    }

    #[test]
    fn inconclusive_is_reported_and_known_is_not_a_new_failure() {
        let pass = |n: &str| CheckResult::passed(n, vec![]);
        let fail = |n: &str| CheckResult::failed(n, "x".into(), vec![]);
        let unsure = |n: &str| CheckResult::inconclusive(n, "nothing published".into(), vec![]);
        let old = run(vec![
            pass("delivery"),
            fail("mesh"),
            unsure("streams"),
            pass("connections"),
        ]);
        let new = run(vec![
            unsure("delivery"),
            crate::results::tests::known("mesh", "rust-libp2p#6047"),
            pass("streams"),
            crate::results::tests::known("connections", "go-libp2p#1"),
        ]);
        let d = Diff::between(&old, &new);
        assert!(d.new_failures.is_empty(), "{}", d.render());
        // A check that stopped judging makes the new run worse (meshgate diff exits 1).
        assert!(d.worse());
        assert!(!Diff::between(&new, &new).worse());
        assert_eq!(
            d.newly_inconclusive,
            vec![format!(
                "{} [delivery]: Passed -> Inconclusive",
                new.cases[0].name
            )]
        );
        assert!(d.fixed[0].ends_with("[streams]"), "{}", d.render());
        assert_eq!(d.other.len(), 2, "{}", d.render());
        assert!(
            d.other[0].ends_with("[connections]: Passed -> Known"),
            "{}",
            d.render()
        );
        assert!(
            d.other[1].ends_with("[mesh]: Failed -> Known"),
            "{}",
            d.render()
        );
        assert!(d.worse());
        assert!(d.render().contains("newly inconclusive: 1\n"));
    }

    fn go_peer(libp2p: &str, yamux: &str) -> PeerReport {
        PeerReport {
            name: "go-1".into(),
            implementation: "go".into(),
            library: Some("go-libp2p".into()),
            versions: BTreeMap::from([
                ("github.com/libp2p/go-libp2p".to_owned(), libp2p.to_owned()),
                ("github.com/libp2p/go-yamux/v5".to_owned(), yamux.to_owned()),
            ]),
            peer_id: None,
            image: "i".into(),
            exit_code: Some(0),
        }
    }

    fn rust_peer() -> PeerReport {
        PeerReport {
            name: "rust-1".into(),
            implementation: "rust".into(),
            library: Some("rust-libp2p".into()),
            versions: BTreeMap::from([("libp2p".to_owned(), "0.57.1".to_owned())]),
            peer_id: None,
            image: "i".into(),
            exit_code: Some(0),
        }
    }

    fn with_peers(checks: Vec<CheckResult>, peers: Vec<PeerReport>) -> RunResults {
        let mut r = run(checks);
        r.cases[0].peers = peers;
        r
    }

    #[test]
    fn versions_that_appeared_and_disappeared_and_the_failures_since() {
        let pass = |n: &str| CheckResult::passed(n, vec![]);
        let fail = |n: &str| CheckResult::failed(n, "x".into(), vec![]);
        let old = with_peers(vec![pass("delivery")], vec![rust_peer(), go_peer("v0.51.0", "v5.1.0")]);
        let new = with_peers(vec![fail("delivery")], vec![rust_peer(), go_peer("v0.52.0", "v5.2.0")]);
        let d = Diff::between(&old, &new);
        assert_eq!(d.appeared, ["go-libp2p v0.52.0 (github.com/libp2p/go-yamux/v5 v5.2.0)"]);
        assert_eq!(d.disappeared, ["go-libp2p v0.51.0 (github.com/libp2p/go-yamux/v5 v5.1.0)"]);
        assert_eq!(
            d.new_failures,
            [format!("{} [delivery]: Passed -> Failed; fails since go-libp2p v0.52.0 appeared", new.cases[0].name)]
        );
        let text = d.render();
        assert!(text.starts_with("versions appeared: 1\n  go-libp2p v0.52.0 (github.com/libp2p/go-yamux/v5 v5.2.0)\nversions disappeared: 1\n"), "{text}");

        // The same go-libp2p, another go-yamux: that library is what appeared.
        let yamux = with_peers(vec![fail("delivery")], vec![rust_peer(), go_peer("v0.51.0", "v5.2.0")]);
        let d = Diff::between(&old, &yamux);
        assert_eq!(d.appeared, ["github.com/libp2p/go-yamux/v5 v5.2.0 in go-libp2p v0.51.0"]);
        assert_eq!(d.disappeared, ["github.com/libp2p/go-yamux/v5 v5.1.0 in go-libp2p v0.51.0"]);
        assert!(d.new_failures[0].ends_with("; fails since github.com/libp2p/go-yamux/v5 v5.2.0 appeared"), "{}", d.render());

        // Nothing appeared: a new failure is tied to no version, and the same versions say nothing.
        let same = with_peers(vec![fail("delivery")], vec![rust_peer(), go_peer("v0.51.0", "v5.1.0")]);
        let d = Diff::between(&old, &same);
        assert!(d.appeared.is_empty() && d.disappeared.is_empty());
        assert!(d.new_failures[0].ends_with("Passed -> Failed"), "{}", d.render());
        assert!(d.render().starts_with("versions appeared: 0\nversions disappeared: 0\nnew failures: 1\n"));
    }
}
