//! The results model: `results.json`, the one source of truth of a run. Every report is rendered from it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::events::Micros;

pub const RESULTS_FILE: &str = "results.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// Version of meshgate that produced the file.
    pub meshgate: String,
    pub matrix: MatrixRef,
    pub started_us: Micros,
    pub duration_ms: u64,
    pub cases: Vec<CaseResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixRef {
    pub name: String,
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Readable and unique in the run: `rust x go / tcp+noise+yamux / mixed-4`.
    pub name: String,
    pub network: String,
    /// What the case is made of: implementations, transport, security, muxer, topology, seed, ...
    pub properties: BTreeMap<String, String>,
    pub peers: Vec<PeerReport>,
    pub checks: Vec<CheckResult>,
    /// Why the case could not be carried out; its checks are then absent.
    pub error: Option<String>,
    pub duration_ms: u64,
    /// Folder with the case's event logs and stderr files, relative to the results file.
    pub logs: String,
    /// Steps of the script a peer answered `unsupported` to: not exercised, the rest of the case is judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unexercised: Vec<String>,
    /// What the runner changed in the case to run it at all (an edge dialed deduplicated, ...), one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Why the case stopped before its script ended (`--fail-fast`); its checks judge what was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    /// What happened over time, for charts; absent when the case did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<crate::timeline::Timeline>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    /// Name in the case: `rust-1`.
    pub name: String,
    /// The matrix's implementation name.
    pub implementation: String,
    /// What the peer said it is (`rust-libp2p`), from its `started` event.
    pub library: Option<String>,
    /// Library versions as compiled into the peer, from its `started` event.
    pub versions: BTreeMap<String, String>,
    pub peer_id: Option<String>,
    pub image: String,
    pub exit_code: Option<i64>,
}

impl PeerReport {
    /// `rust-libp2p 0.57.1`, or the implementation name when the peer never said.
    pub fn implementation_label(&self) -> String {
        let lib = self
            .library
            .clone()
            .unwrap_or_else(|| self.implementation.clone());
        let version = ["libp2p", "github.com/libp2p/go-libp2p"]
            .iter()
            .find_map(|k| self.versions.get(*k));
        match version {
            Some(v) => format!("{lib} {v}"),
            None => lib,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub status: Status,
    /// One line: what broke, between whom.
    pub message: Option<String>,
    /// What a maintainer needs to see why, one line each.
    pub evidence: Vec<String>,
    /// The peers the failure is about (names in the case), first the one that failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub involved: Vec<String>,
    /// When the failure happened (Unix microseconds), for time lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_us: Option<Micros>,
    /// What the check had to judge, in one line ("38 identify exchanges over 24 connected pairs"). A check that
    /// judged nothing is inconclusive, never passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<String>,
    /// The known issue this check is expected to fail for, when the matrix names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_issue: Option<String>,
    /// With `--repeat`: the verdict of every attempt, first to last (this result describes the first failing one,
    /// or the first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// The attempts disagreed: the check passes sometimes and fails sometimes. That is a failure: an interop bug
    /// that depends on timing is still a bug.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flaky: bool,
}

/// One attempt's verdict of a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub status: Status,
    pub message: Option<String>,
}

impl CheckResult {
    /// Names the peers the failure is about.
    pub fn involving<S: Into<String>>(mut self, peers: impl IntoIterator<Item = S>) -> Self {
        for p in peers {
            let p = p.into();
            if !self.involved.contains(&p) {
                self.involved.push(p);
            }
        }
        self
    }

    /// Sets the moment of the failure.
    pub fn at(mut self, at_us: Micros) -> Self {
        self.at_us = Some(at_us);
        self
    }

    /// States what the check judged.
    pub fn covering(mut self, coverage: impl Into<String>) -> Self {
        self.coverage = Some(coverage.into());
        self
    }

    fn new(name: &str, status: Status, message: Option<String>, evidence: Vec<String>) -> Self {
        Self {
            name: name.into(),
            status,
            message,
            evidence,
            involved: Vec::new(),
            at_us: None,
            coverage: None,
            known_issue: None,
            attempts: Vec::new(),
            flaky: false,
        }
    }

    pub fn passed(name: &str, evidence: Vec<String>) -> Self {
        Self::new(name, Status::Passed, None, evidence)
    }

    pub fn failed(name: &str, message: String, evidence: Vec<String>) -> Self {
        Self::new(name, Status::Failed, Some(message), evidence)
    }

    /// The check had nothing to judge where the case expected something; `why` says what was missing.
    pub fn inconclusive(name: &str, why: String, evidence: Vec<String>) -> Self {
        Self::new(name, Status::Inconclusive, Some(why), evidence)
    }

    /// The check did not run, for `why` (turned off, or the case could not do what it needs).
    pub fn skipped(name: &str, why: String) -> Self {
        Self::new(name, Status::Skipped, Some(why), Vec::new())
    }
}

/// How a check ended. Only `Passed`, `Failed` and `Known` are verdicts on the peers; the others say why there is
/// none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Failed,
    /// Failed as a known issue of the matrix says it does (`known_issue` names the reference).
    Known,
    /// Did not run: turned off, or the case could not do what it needs (`message` says which).
    Skipped,
    /// Ran, but an input it needs is missing (`message` says which): no verdict either way.
    Inconclusive,
}

impl Status {
    /// Whether the check reached a verdict on the peers.
    pub fn judged(self) -> bool {
        matches!(self, Status::Passed | Status::Failed | Status::Known)
    }
}

impl CaseResult {
    /// One result from the attempts of a case (`--repeat`): per check, the first failing attempt's result (or the
    /// first attempt's), every attempt's verdict, and `flaky` when they disagree. A case that could not run in some
    /// attempt carries that error.
    pub fn merge_attempts(mut attempts: Vec<CaseResult>) -> Option<CaseResult> {
        if attempts.len() <= 1 {
            return attempts.pop();
        }
        let mut merged = attempts[0].clone();
        merged.error = attempts.iter().find_map(|a| a.error.clone());
        merged.duration_ms = attempts.iter().map(|a| a.duration_ms).sum();
        for check in &mut merged.checks {
            let runs: Vec<&CheckResult> = attempts
                .iter()
                .filter_map(|a| a.checks.iter().find(|c| c.name == check.name))
                .collect();
            if let Some(failing) = runs.iter().find(|c| c.status == Status::Failed) {
                *check = (*failing).clone();
            }
            check.attempts = runs
                .iter()
                .map(|c| Attempt {
                    status: c.status,
                    message: c.message.clone(),
                })
                .collect();
            let failed = runs.iter().filter(|c| c.status == Status::Failed).count();
            if failed > 0 && failed < runs.len() {
                check.flaky = true;
                check.message = Some(format!(
                    "flaky: failed in {failed} of {} attempts; {}",
                    runs.len(),
                    check.message.as_deref().unwrap_or_default()
                ));
            }
        }
        Some(merged)
    }
}

/// What a run amounts to, and the process exit code that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    ChecksFailed,
    CouldNotRun,
}

impl Outcome {
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Passed => 0,
            Outcome::ChecksFailed => 1,
            Outcome::CouldNotRun => 2,
        }
    }
}

impl RunResults {
    /// A failed check outranks a case that could not run: it is a verdict about the implementations.
    pub fn outcome(&self) -> Outcome {
        let failed = self
            .cases
            .iter()
            .flat_map(|c| &c.checks)
            .any(|c| c.status == Status::Failed);
        if failed {
            Outcome::ChecksFailed
        } else if self.cases.iter().any(|c| c.error.is_some()) || self.cases.is_empty() {
            Outcome::CouldNotRun
        } else {
            Outcome::Passed
        }
    }

    /// One line for stderr and report headers: the first failure or error, or the count of passes.
    pub fn headline(&self) -> String {
        for case in &self.cases {
            if let Some(c) = case.checks.iter().find(|c| c.status == Status::Failed) {
                return format!(
                    "FAILED {} [{}]: {}",
                    case.name,
                    c.name,
                    c.message.as_deref().unwrap_or("failed")
                );
            }
        }
        if let Some(case) = self.cases.iter().find(|c| c.error.is_some()) {
            return format!(
                "ERROR {}: {}",
                case.name,
                case.error.as_deref().unwrap_or_default()
            );
        }
        let checks: usize = self.cases.iter().map(|c| c.checks.len()).sum();
        format!("PASSED {} case(s), {checks} check(s)", self.cases.len())
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(RESULTS_FILE), json + "\n")
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read results: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}:{}: expected a meshgate results file: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn case(checks: Vec<CheckResult>) -> CaseResult {
        CaseResult {
            name: "rust x go / tcp+noise+yamux / pair".into(),
            network: "pair".into(),
            properties: BTreeMap::from([("implementations".to_string(), "rust,go".to_string())]),
            peers: vec![],
            checks,
            error: None,
            duration_ms: 10,
            logs: "cases/000-x".into(),
            unexercised: vec![],
            notes: vec![],
            stopped_early: None,
            timeline: None,
        }
    }

    #[test]
    fn attempts_that_disagree_make_a_flaky_failure() {
        let pass = || CheckResult::passed("delivery", vec![]);
        let fail =
            || CheckResult::failed("delivery", "go-1 missed 3".into(), vec!["evidence".into()]);
        let merged = CaseResult::merge_attempts(vec![
            case(vec![pass()]),
            case(vec![fail()]),
            case(vec![pass()]),
        ])
        .unwrap();
        let d = &merged.checks[0];
        assert_eq!(d.status, Status::Failed);
        assert!(d.flaky);
        assert_eq!(
            d.message.as_deref(),
            Some("flaky: failed in 1 of 3 attempts; go-1 missed 3")
        );
        assert_eq!(d.evidence, vec!["evidence"]);
        assert_eq!(
            d.attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
            vec![Status::Passed, Status::Failed, Status::Passed]
        );
        assert_eq!(merged.duration_ms, 30);

        let steady =
            CaseResult::merge_attempts(vec![case(vec![fail()]), case(vec![fail()])]).unwrap();
        assert!(!steady.checks[0].flaky);
        assert_eq!(steady.checks[0].message.as_deref(), Some("go-1 missed 3"));
        let single = CaseResult::merge_attempts(vec![case(vec![pass()])]).unwrap();
        assert!(single.checks[0].attempts.is_empty());
    }
}
