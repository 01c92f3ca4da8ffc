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
    /// What the matrix's `latest` and `newest: N` stood for in this run, from which registry and when; `offline`
    /// where the registry did not answer and its cached answer was used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<crate::releases::Resolution>,
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
    /// How long the runner's own steps after the peers took; absent when the case did not run, or was judged again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<Phases>,
}

/// The runner's own steps of a case that its record cannot time (the record ends when the peers have exited):
/// for `meshgate bench`'s split of the time to a verdict. The peers' phases are read from the record's time stamps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phases {
    /// Removing the case's containers and network.
    pub clean_up_ms: u64,
    /// Judging the record with every check.
    pub judge_ms: u64,
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
    /// The failure is that something did not happen in time (a deadline, a window, a silence): a machine that
    /// could not keep up causes such failures too, so on a saturated host it is no verdict (`checks::host`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timing: bool,
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

    /// Says the failure is one of time (see [`CheckResult::timing`]).
    pub fn timing(mut self) -> Self {
        self.timing = true;
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
            timing: false,
        }
    }

    pub fn passed(name: &str, evidence: Vec<String>) -> Self {
        Self::new(name, Status::Passed, None, evidence)
    }

    /// A failure; its message is one line of readable length whatever the case's size (the checks build it so,
    /// counts and the worst offender; anything quoted beyond is cut here), the complete lists are the evidence.
    pub fn failed(name: &str, message: String, evidence: Vec<String>) -> Self {
        Self::new(name, Status::Failed, Some(clip(&message, MAX_MESSAGE)), evidence)
    }

    /// The check had nothing to judge where the case expected something; `why` says what was missing, in one line
    /// as a failure's message.
    pub fn inconclusive(name: &str, why: String, evidence: Vec<String>) -> Self {
        Self::new(name, Status::Inconclusive, Some(clip(&why, MAX_MESSAGE)), evidence)
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

/// How a case ended, from its checks (see [`CaseResult::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Every check that applies passed (skipped ones allowed).
    Passed,
    /// A check failed.
    Failed,
    /// Passed, except checks that failed as a known issue of the matrix says they do.
    Known,
    /// Nothing judged: every check was skipped (or the case has none).
    Skipped,
    /// No check failed, but one had nothing to judge where the case expected something.
    Inconclusive,
    /// The case could not be carried out (`error`).
    Errored,
}

impl CaseStatus {
    /// Worst first: the order of counts in headlines and reports.
    pub const ALL: [CaseStatus; 6] = [
        CaseStatus::Failed,
        CaseStatus::Errored,
        CaseStatus::Inconclusive,
        CaseStatus::Known,
        CaseStatus::Skipped,
        CaseStatus::Passed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CaseStatus::Passed => "passed",
            CaseStatus::Failed => "failed",
            CaseStatus::Known => "known",
            CaseStatus::Skipped => "skipped",
            CaseStatus::Inconclusive => "inconclusive",
            CaseStatus::Errored => "errored",
        }
    }
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Known => "known",
            Status::Skipped => "skipped",
            Status::Inconclusive => "inconclusive",
        }
    }
}

impl CaseResult {
    /// A failed check outranks an error (it is a verdict on the peers), an error outranks an inconclusive check; a
    /// case with no judged check is skipped; known issues make an otherwise passing case known.
    pub fn status(&self) -> CaseStatus {
        let any = |s: Status| self.checks.iter().any(|c| c.status == s);
        if any(Status::Failed) {
            CaseStatus::Failed
        } else if self.error.is_some() {
            CaseStatus::Errored
        } else if any(Status::Inconclusive) {
            CaseStatus::Inconclusive
        } else if !self.checks.iter().any(|c| c.status.judged()) {
            CaseStatus::Skipped
        } else if any(Status::Known) {
            CaseStatus::Known
        } else {
            CaseStatus::Passed
        }
    }

    /// The case's checks with this status.
    pub fn with(&self, status: Status) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(move |c| c.status == status)
    }

    /// The case's verdict in one line, for the progress output: `FAIL [delivery] ...`, `pass (7 checks judged)`.
    pub fn verdict_line(&self) -> String {
        let why = |c: &CheckResult| clip(c.message.as_deref().unwrap_or_default(), 300);
        let judged = self.checks.iter().filter(|c| c.status.judged()).count();
        let skipped = self.with(Status::Skipped).count();
        let mut line = match self.status() {
            CaseStatus::Failed => {
                let c = self.with(Status::Failed).next().expect("a failed check");
                format!("FAIL [{}] {}", c.name, why(c))
            }
            CaseStatus::Errored => {
                format!(
                    "ERROR {}",
                    clip(self.error.as_deref().unwrap_or_default(), 300)
                )
            }
            CaseStatus::Inconclusive => {
                let c = self
                    .with(Status::Inconclusive)
                    .next()
                    .expect("an inconclusive check");
                format!("INCONCLUSIVE [{}] {}", c.name, why(c))
            }
            CaseStatus::Skipped => match self.checks.is_empty() {
                true => "SKIP (no checks)".to_owned(),
                false => format!("SKIP {}", listed(self.skip_reasons(true), 200, "")),
            },
            status @ (CaseStatus::Known | CaseStatus::Passed) => {
                let mut counts = vec![count(judged, "check", "checks") + " judged"];
                if status == CaseStatus::Known {
                    let mut refs: Vec<String> = Vec::new();
                    for r in self
                        .with(Status::Known)
                        .filter_map(|c| c.known_issue.clone())
                    {
                        if !refs.contains(&r) {
                            refs.push(r);
                        }
                    }
                    let n = self.with(Status::Known).count();
                    counts.push(match refs.is_empty() {
                        true => format!("{n} known"),
                        false => format!("{n} known: {}", refs.join(", ")),
                    });
                }
                if skipped > 0 {
                    counts.push(format!("{skipped} skipped"));
                }
                let word = if status == CaseStatus::Known {
                    "known"
                } else {
                    "pass"
                };
                format!("{word} ({})", counts.join(", "))
            }
        };
        if !self.unexercised.is_empty() {
            line.push_str(&format!(
                "; {} not exercised",
                count(self.unexercised.len(), "step", "steps")
            ));
        }
        line
    }

    /// Why the case's checks were skipped, grouped by reason: the bare reason when every skipped check shares it
    /// and `bare` is set, else `check, check: reason` per reason.
    fn skip_reasons(&self, bare: bool) -> Vec<String> {
        let groups = group_by_reason(self.with(Status::Skipped));
        if bare && groups.len() == 1 {
            return vec![groups[0].0.clone()];
        }
        groups
            .into_iter()
            .map(|(why, names)| format!("{}: {why}", names.join(", ")))
            .collect()
    }

    /// One result from the attempts of a case (`--repeat`): per check, the first failing attempt's result (else the
    /// first inconclusive one's, else the first attempt's), every attempt's verdict, and `flaky` when some attempts
    /// failed and others passed. A case that could not be carried out in some attempt carries that error; its
    /// checks are those of the attempts that ran.
    pub fn merge_attempts(mut attempts: Vec<CaseResult>) -> Option<CaseResult> {
        if attempts.len() <= 1 {
            return attempts.pop();
        }
        let base = attempts.iter().position(|a| a.error.is_none()).unwrap_or(0);
        let mut merged = attempts[base].clone();
        merged.error = attempts.iter().find_map(|a| a.error.clone());
        merged.duration_ms = attempts.iter().map(|a| a.duration_ms).sum();
        merged.stopped_early = attempts.iter().find_map(|a| a.stopped_early.clone());
        for a in &attempts {
            for step in &a.unexercised {
                if !merged.unexercised.contains(step) {
                    merged.unexercised.push(step.clone());
                }
            }
            for note in &a.notes {
                if !merged.notes.contains(note) {
                    merged.notes.push(note.clone());
                }
            }
            for c in &a.checks {
                if !merged.checks.iter().any(|m| m.name == c.name) {
                    merged.checks.push(c.clone());
                }
            }
        }
        for check in &mut merged.checks {
            let runs: Vec<&CheckResult> = attempts
                .iter()
                .filter_map(|a| a.checks.iter().find(|c| c.name == check.name))
                .collect();
            let n = runs.len();
            let of = |s: Status| runs.iter().filter(|c| c.status == s).count();
            let (failed, inconclusive) = (of(Status::Failed), of(Status::Inconclusive));
            let chosen = runs
                .iter()
                .find(|c| c.status == Status::Failed)
                .or_else(|| runs.iter().find(|c| c.status == Status::Inconclusive))
                .or(runs.first());
            if let Some(chosen) = chosen {
                *check = (*chosen).clone();
            }
            check.attempts = runs
                .iter()
                .map(|c| Attempt {
                    status: c.status,
                    message: c.message.clone(),
                })
                .collect();
            let message = check.message.clone().unwrap_or_default();
            if failed > 0 && failed < n {
                let passed = of(Status::Passed) + of(Status::Known) > 0;
                check.flaky = passed;
                check.message = Some(format!(
                    "{}failed in {failed} of {n} attempts; {message}",
                    if passed { "flaky: " } else { "" }
                ));
            } else if failed == 0 && inconclusive > 0 && inconclusive < n {
                check.message = Some(format!(
                    "inconclusive in {inconclusive} of {n} attempts; {message}"
                ));
            }
        }
        Some(merged)
    }
}

/// What a run amounts to, and the process exit code that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0: something was judged, and every case passed, was known or skipped.
    Passed,
    /// 1: a case failed, was inconclusive or errored, while other checks were judged.
    ChecksFailed,
    /// 2: nothing at all could be judged (no case, or every one skipped, errored or inconclusive), or the run
    /// could not be carried out.
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

/// Longest headline, in characters.
const HEADLINE_MAX: usize = 400;

/// How much of each part of a headline is spelled out (characters; 0: only counted).
#[derive(Clone, Copy)]
struct Limits {
    /// The first failure's message.
    lead: usize,
    /// Errors, skip reasons and inconclusive checks of cases.
    cases: usize,
    /// Known issue references.
    refs: usize,
    /// Reasons of checks skipped in cases otherwise judged.
    skips: usize,
    /// Steps not exercised.
    steps: usize,
}

impl Limits {
    const LEVELS: [Limits; 5] = [
        Limits {
            lead: 160,
            cases: 120,
            refs: 60,
            skips: 120,
            steps: 60,
        },
        Limits {
            lead: 120,
            cases: 90,
            refs: 40,
            skips: 90,
            steps: 40,
        },
        Limits {
            lead: 100,
            cases: 60,
            refs: 30,
            skips: 60,
            steps: 0,
        },
        Limits {
            lead: 80,
            cases: 40,
            refs: 0,
            skips: 40,
            steps: 0,
        },
        Limits {
            lead: 80,
            cases: 0,
            refs: 0,
            skips: 0,
            steps: 0,
        },
    ];
}

impl RunResults {
    /// 0 when something was judged and every case passed (known and skipped allowed), 1 when a case failed, was
    /// inconclusive or errored, 2 when nothing at all was judged.
    pub fn outcome(&self) -> Outcome {
        let judged = self
            .cases
            .iter()
            .flat_map(|c| &c.checks)
            .any(|c| c.status.judged());
        let bad = self.cases.iter().any(|c| {
            matches!(
                c.status(),
                CaseStatus::Failed | CaseStatus::Inconclusive | CaseStatus::Errored
            )
        });
        match (judged, bad) {
            (false, _) => Outcome::CouldNotRun,
            (true, true) => Outcome::ChecksFailed,
            (true, false) => Outcome::Passed,
        }
    }

    /// One line for stderr and report headers: the verdict and its first reason (the first failure, else error,
    /// else inconclusive check), then how many cases ended how, how many checks were judged, and what was skipped
    /// and why. `PASSED 2 cases, 13 checks judged, 1 skipped (streams: off in the matrix)`.
    pub fn headline(&self) -> String {
        // The fullest line that fits: first with reasons named, then shorter ones, then counts only.
        for limits in Limits::LEVELS {
            let line = self.headline_within(limits);
            if line.chars().count() <= HEADLINE_MAX {
                return line;
            }
        }
        clip(&self.headline_within(Limits::LEVELS[4]), HEADLINE_MAX)
    }

    fn headline_within(&self, limits: Limits) -> String {
        let cases = &self.cases;
        let failed = cases
            .iter()
            .find_map(|case| case.with(Status::Failed).next().map(|c| (case, c)));
        let errored = cases.iter().find(|c| c.status() == CaseStatus::Errored);
        let inconclusive = cases
            .iter()
            .find_map(|case| case.with(Status::Inconclusive).next().map(|c| (case, c)));
        let outcome = self.outcome();
        // The reason already named first is not repeated in the counts.
        let (mut lead, lead_case, lead_check) = if outcome == Outcome::CouldNotRun {
            ("NOTHING JUDGED:".to_owned(), None, None)
        } else if let Some((case, c)) = failed {
            let what = clip(c.message.as_deref().unwrap_or("failed"), limits.lead);
            (
                format!("FAILED {} [{}]: {what};", case.name, c.name),
                Some(case),
                Some(c),
            )
        } else if let Some(case) = errored {
            let what = clip(case.error.as_deref().unwrap_or_default(), limits.lead);
            (format!("ERROR {}: {what};", case.name), Some(case), None)
        } else if let Some((case, c)) = inconclusive {
            let what = clip(c.message.as_deref().unwrap_or_default(), limits.lead);
            (
                format!("INCONCLUSIVE {} [{}]: {what};", case.name, c.name),
                Some(case),
                Some(c),
            )
        } else {
            ("PASSED".to_owned(), None, None)
        };
        if cases.is_empty() {
            return format!("{lead} the run has no case");
        }

        // Cases, by how they ended, with who errored and why cases were skipped or inconclusive.
        let by_status: Vec<(CaseStatus, Vec<&CaseResult>)> = CaseStatus::ALL
            .iter()
            .map(|s| {
                (
                    *s,
                    cases
                        .iter()
                        .filter(|c| c.status() == *s)
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, of)| !of.is_empty())
            .collect();
        let is_lead = |case: &CaseResult| lead_case.is_some_and(|l| std::ptr::eq(l, case));
        let details = |status: CaseStatus, of: &[&CaseResult]| -> String {
            let items: Vec<String> = match status {
                CaseStatus::Errored => of
                    .iter()
                    .filter(|c| !(is_lead(c) && lead_check.is_none()))
                    .map(|c| {
                        format!(
                            "{}: {}",
                            c.name,
                            clip(c.error.as_deref().unwrap_or_default(), 100)
                        )
                    })
                    .collect(),
                CaseStatus::Skipped => of.iter().flat_map(|c| c.skip_reasons(true)).collect(),
                CaseStatus::Inconclusive => of
                    .iter()
                    .flat_map(|c| c.with(Status::Inconclusive))
                    .filter(|c| !lead_check.is_some_and(|l| std::ptr::eq(l, *c)))
                    .map(|c| format!("{}: {}", c.name, c.message.as_deref().unwrap_or_default()))
                    .collect(),
                _ => Vec::new(),
            };
            listed(items, limits.cases, " ")
        };
        let all_passed = by_status.len() == 1 && by_status[0].0 == CaseStatus::Passed;
        let case_part = match by_status.as_slice() {
            [_] if all_passed => count(cases.len(), "case", "cases"),
            [(status, of)] => format!(
                "{} {}{}",
                count(cases.len(), "case", "cases"),
                status.label(),
                details(*status, of)
            ),
            _ => format!(
                "{}: {}",
                count(cases.len(), "case", "cases"),
                by_status
                    .iter()
                    .map(|(s, of)| format!("{} {}{}", of.len(), s.label(), details(*s, of)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        lead.push(' ');
        lead.push_str(&case_part);

        // Checks, when something was judged: how many, how many failed, were known or inconclusive, and the
        // checks skipped in cases that were otherwise judged.
        if outcome != Outcome::CouldNotRun {
            let all = || cases.iter().flat_map(|c| &c.checks);
            let n = |s: Status| all().filter(|c| c.status == s).count();
            let judged = all().filter(|c| c.status.judged()).count();
            let mut parts = vec![count(judged, "check", "checks") + " judged"];
            if n(Status::Failed) > 0 {
                parts.push(format!("{} failed", n(Status::Failed)));
            }
            if n(Status::Known) > 0 {
                let refs = all()
                    .filter(|c| c.status == Status::Known)
                    .filter_map(|c| c.known_issue.clone());
                parts.push(format!(
                    "{} known{}",
                    n(Status::Known),
                    listed(refs, limits.refs, " ")
                ));
            }
            if n(Status::Inconclusive) > 0 {
                parts.push(format!("{} inconclusive", n(Status::Inconclusive)));
            }
            let partly: Vec<&CaseResult> = cases
                .iter()
                .filter(|c| c.status() != CaseStatus::Skipped)
                .collect();
            let skipped = partly.iter().flat_map(|c| c.with(Status::Skipped)).count();
            if skipped > 0 {
                let reasons = group_by_reason(partly.iter().flat_map(|c| c.with(Status::Skipped)))
                    .into_iter()
                    .map(|(why, names)| format!("{}: {why}", names.join(", ")));
                parts.push(format!(
                    "{skipped} skipped{}",
                    listed(reasons, limits.skips, " ")
                ));
            }
            lead.push_str(if all_passed { ", " } else { "; " });
            lead.push_str(&parts.join(", "));
        }

        let steps: Vec<String> = cases.iter().flat_map(|c| c.unexercised.clone()).collect();
        if !steps.is_empty() {
            lead.push_str(&format!(
                "; {} not exercised{}",
                count(steps.len(), "step", "steps"),
                listed(steps, limits.steps, " ")
            ));
        }
        lead
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

/// `1 case`, `3 cases`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The longest message of a check's result, in characters.
pub const MAX_MESSAGE: usize = 200;

/// The first line of `s`, at most `max` characters (cut with `…`).
pub fn clip(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or_default().trim_end();
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let kept: String = line.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", kept.trim_end())
}

/// Distinct items, in order, in parentheses after `sep`, each at most 90 characters (and `budget`), as many as fit
/// in `budget` characters (at least one), then `…and N more`. Empty without items or without a budget.
pub fn listed(items: impl IntoIterator<Item = String>, budget: usize, sep: &str) -> String {
    if budget == 0 {
        return String::new();
    }
    let mut distinct: Vec<String> = Vec::new();
    for item in items {
        let item = clip(&item, budget.min(90));
        if !item.is_empty() && !distinct.contains(&item) {
            distinct.push(item);
        }
    }
    if distinct.is_empty() {
        return String::new();
    }
    let mut shown: Vec<&str> = Vec::new();
    let mut used = 0;
    for item in &distinct {
        let len = item.chars().count() + 2;
        if !shown.is_empty() && used + len > budget {
            break;
        }
        used += len;
        shown.push(item);
    }
    let more = distinct.len() - shown.len();
    let mut out = format!("{sep}({}", shown.join("; "));
    if more > 0 {
        out.push_str(&format!("; …and {more} more"));
    }
    out.push(')');
    out
}

/// Checks grouped by their message, in order of first appearance: `(message, [check names])`.
fn group_by_reason<'a>(
    checks: impl Iterator<Item = &'a CheckResult>,
) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for c in checks {
        let why = clip(c.message.as_deref().unwrap_or("no reason given"), 200);
        match groups.iter_mut().find(|(w, _)| *w == why) {
            Some((_, names)) => {
                if !names.contains(&c.name) {
                    names.push(c.name.clone())
                }
            }
            None => groups.push((why, vec![c.name.clone()])),
        }
    }
    groups
}

/// Why a run could not be carried out at all (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct CouldNotRun(pub anyhow::Error);

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
            phases: None,
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

    #[test]
    fn phases_are_kept_and_results_without_them_still_read() {
        let timed = CaseResult {
            phases: Some(Phases { clean_up_ms: 410, judge_ms: 12 }),
            ..case(vec![])
        };
        let json = serde_json::to_value(&timed).unwrap();
        assert_eq!(json["phases"]["clean_up_ms"], 410);
        assert_eq!(serde_json::from_value::<CaseResult>(json.clone()).unwrap(), timed);
        let mut old = json;
        old.as_object_mut().unwrap().remove("phases");
        assert_eq!(serde_json::from_value::<CaseResult>(old).unwrap().phases, None);
    }

    pub fn run(cases: Vec<CaseResult>) -> RunResults {
        RunResults {
            meshgate: "0".into(),
            matrix: MatrixRef {
                name: "m".into(),
                file: "m.yaml".into(),
            },
            started_us: 0,
            duration_ms: 1,
            cases,
            versions: Vec::new(),
        }
    }

    fn named(name: &str, checks: Vec<CheckResult>) -> CaseResult {
        CaseResult {
            name: name.into(),
            ..case(checks)
        }
    }

    fn passes(names: &[&str]) -> Vec<CheckResult> {
        names
            .iter()
            .map(|n| CheckResult::passed(n, vec![]))
            .collect()
    }

    pub fn known(name: &str, reference: &str) -> CheckResult {
        CheckResult {
            status: Status::Known,
            message: Some(format!("known issue {reference}: go-1 missed 2")),
            known_issue: Some(reference.into()),
            ..CheckResult::passed(name, vec![])
        }
    }

    const UNSUPPORTED: &str = "go-1 cannot do muxer-mplex: go-libp2p v0.51.0 removed mplex";

    #[test]
    fn all_passed_counts_what_was_judged_and_names_skips() {
        let mut a = named("a", passes(&["delivery", "mesh"]));
        a.checks
            .push(CheckResult::skipped("streams", "off in the matrix".into()));
        let b = named("b", passes(&["delivery", "mesh", "connections"]));
        let r = run(vec![a, b]);
        assert_eq!(r.outcome(), Outcome::Passed);
        assert_eq!(r.outcome().exit_code(), 0);
        assert_eq!(
            r.headline(),
            "PASSED 2 cases, 5 checks judged, 1 skipped (streams: off in the matrix)"
        );
        assert_eq!(r.cases[0].status(), CaseStatus::Passed);
        assert_eq!(
            r.cases[0].verdict_line(),
            "pass (2 checks judged, 1 skipped)"
        );
    }

    #[test]
    fn one_failure_leads_and_the_rest_is_counted() {
        let mut failing = named(
            "rust x go / tcp+noise+yamux / mixed-10",
            passes(&["delivery"]),
        );
        failing.checks.push(CheckResult::failed(
            "connections",
            "rust-1 (rust-libp2p 0.57.1) holds 3 connections to go-1".into(),
            vec![],
        ));
        failing.checks.push(CheckResult::inconclusive(
            "streams",
            "no peer reported a stream".into(),
            vec![],
        ));
        let mut known_case = named("b", passes(&["delivery"]));
        known_case.checks.push(known("mesh", "rust-libp2p#6047"));
        let r = run(vec![failing, known_case, named("c", passes(&["delivery"]))]);
        assert_eq!(r.outcome(), Outcome::ChecksFailed);
        assert_eq!(r.cases[0].status(), CaseStatus::Failed);
        assert_eq!(r.cases[1].status(), CaseStatus::Known);
        assert_eq!(
            r.headline(),
            "FAILED rust x go / tcp+noise+yamux / mixed-10 [connections]: rust-1 (rust-libp2p 0.57.1) holds 3 \
             connections to go-1; 3 cases: 1 failed, 1 known, 1 passed; 5 checks judged, 1 failed, 1 known \
             (rust-libp2p#6047), 1 inconclusive"
        );
        assert_eq!(
            r.cases[0].verdict_line(),
            "FAIL [connections] rust-1 (rust-libp2p 0.57.1) holds 3 connections to go-1"
        );
    }

    #[test]
    fn only_unsupported_cases_judge_nothing() {
        let skip = |n: &str| CheckResult::skipped(n, UNSUPPORTED.into());
        let r = run(vec![named("a", vec![skip("delivery"), skip("mesh")])]);
        assert_eq!(r.cases[0].status(), CaseStatus::Skipped);
        assert_eq!(r.outcome(), Outcome::CouldNotRun);
        assert_eq!(r.outcome().exit_code(), 2);
        assert_eq!(
            r.headline(),
            format!("NOTHING JUDGED: 1 case skipped ({UNSUPPORTED})")
        );
        assert_eq!(r.cases[0].verdict_line(), format!("SKIP ({UNSUPPORTED})"));

        // Many reasons: grouped, deduplicated, and cut.
        let cases = (0..8)
            .map(|i| {
                let why = format!("go-{i} cannot do muxer-mplex: go-libp2p v0.51.0 removed mplex");
                named(
                    &format!("case {i}"),
                    vec![
                        CheckResult::skipped("delivery", why.clone()),
                        CheckResult::skipped("mesh", why),
                    ],
                )
            })
            .chain([named("again", vec![skip("delivery")])])
            .collect();
        let h = run(cases).headline();
        assert!(
            h.starts_with("NOTHING JUDGED: 9 cases skipped (go-0 cannot do"),
            "{h}"
        );
        assert!(h.contains("…and 7 more)"), "{h}");
        assert!(h.chars().count() < 400, "{h}");

        let empty = run(vec![]);
        assert_eq!(empty.outcome(), Outcome::CouldNotRun);
        assert_eq!(empty.headline(), "NOTHING JUDGED: the run has no case");
    }

    #[test]
    fn inconclusive_fails_the_run() {
        let mut a = named("a", passes(&["mesh"]));
        a.checks.push(CheckResult::inconclusive(
            "delivery",
            "nothing was published".into(),
            vec![],
        ));
        let r = run(vec![a, named("b", passes(&["mesh", "delivery"]))]);
        assert_eq!(r.cases[0].status(), CaseStatus::Inconclusive);
        assert_eq!(r.outcome(), Outcome::ChecksFailed);
        assert_eq!(r.outcome().exit_code(), 1);
        assert_eq!(
            r.headline(),
            "INCONCLUSIVE a [delivery]: nothing was published; 2 cases: 1 inconclusive, 1 passed; 3 checks \
             judged, 1 inconclusive"
        );
        // Nothing but inconclusive checks judges nothing.
        let only = run(vec![named(
            "a",
            vec![CheckResult::inconclusive(
                "delivery",
                "nothing was published".into(),
                vec![],
            )],
        )]);
        assert_eq!(only.outcome(), Outcome::CouldNotRun);
        assert_eq!(
            only.headline(),
            "NOTHING JUDGED: 1 case inconclusive (delivery: nothing was published)"
        );
    }

    #[test]
    fn known_issues_only_pass() {
        let r = run(vec![named("a", vec![known("delivery", "go-libp2p#3000")])]);
        assert_eq!(r.cases[0].status(), CaseStatus::Known);
        assert_eq!(r.outcome(), Outcome::Passed);
        assert_eq!(
            r.headline(),
            "PASSED 1 case known; 1 check judged, 1 known (go-libp2p#3000)"
        );
        assert_eq!(
            r.cases[0].verdict_line(),
            "known (1 check judged, 1 known: go-libp2p#3000)"
        );
    }

    #[test]
    fn errored_cases_are_named_with_their_error() {
        let mut broken = named("rust x go / quic-v1 / pair", vec![]);
        broken.error = Some("image build failed: cargo exited 101\nerror[E0433]: ...".into());
        let r = run(vec![
            broken.clone(),
            named("b", passes(&["delivery", "mesh"])),
        ]);
        assert_eq!(r.cases[0].status(), CaseStatus::Errored);
        assert_eq!(r.outcome(), Outcome::ChecksFailed);
        assert_eq!(
            r.headline(),
            "ERROR rust x go / quic-v1 / pair: image build failed: cargo exited 101; 2 cases: 1 errored, 1 \
             passed; 2 checks judged"
        );
        assert_eq!(
            r.cases[0].verdict_line(),
            "ERROR image build failed: cargo exited 101"
        );

        let mut other = broken.clone();
        other.name = "other".into();
        other.error = Some("no engine".into());
        let only = run(vec![broken, other]);
        assert_eq!(only.outcome(), Outcome::CouldNotRun);
        assert_eq!(only.outcome().exit_code(), 2);
        assert_eq!(
            only.headline(),
            "NOTHING JUDGED: 2 cases errored (rust x go / quic-v1 / pair: image build failed: cargo exited \
             101; other: no engine)"
        );
    }

    #[test]
    fn failures_outrank_errors_and_unexercised_steps_are_counted() {
        let mut failing = named(
            "a",
            vec![CheckResult::failed(
                "delivery",
                "go-1 missed 3".into(),
                vec![],
            )],
        );
        failing.unexercised = vec!["go-1: unsubscribe (unsupported)".into()];
        let mut broken = named("b", vec![]);
        broken.error = Some("peer go-1 did not start".into());
        let mut partly = named("c", passes(&["mesh"]));
        partly.unexercised = vec!["rust-1: leave".into()];
        let r = run(vec![failing, broken, partly]);
        assert_eq!(
            r.headline(),
            "FAILED a [delivery]: go-1 missed 3; 3 cases: 1 failed, 1 errored (b: peer go-1 did not start), 1 \
             passed; 2 checks judged, 1 failed; 2 steps not exercised (go-1: unsubscribe (unsupported); rust-1: \
             leave)"
        );
        assert_eq!(
            r.cases[2].verdict_line(),
            "pass (1 check judged); 1 step not exercised"
        );
    }

    #[test]
    fn long_headlines_are_bounded() {
        let long = "x".repeat(1000);
        let mut a = named(
            &"n".repeat(100),
            vec![CheckResult::failed("delivery", long.clone(), vec![])],
        );
        a.checks.push(CheckResult::skipped("mesh", long.clone()));
        a.unexercised = vec![long.clone(), long];
        let h = run(vec![a]).headline();
        assert!(h.chars().count() <= 400, "{} chars: {h}", h.chars().count());
        assert!(!h.contains('\n'));
    }

    #[test]
    fn an_inconclusive_attempt_makes_the_check_inconclusive_unless_one_failed() {
        let pass = || CheckResult::passed("delivery", vec![]);
        let unsure =
            || CheckResult::inconclusive("delivery", "nothing was published".into(), vec![]);
        let fail = || CheckResult::failed("delivery", "go-1 missed 3".into(), vec![]);
        let merged = CaseResult::merge_attempts(vec![
            case(vec![pass()]),
            case(vec![unsure()]),
            case(vec![pass()]),
        ])
        .unwrap();
        let d = &merged.checks[0];
        assert_eq!(d.status, Status::Inconclusive);
        assert!(!d.flaky);
        assert_eq!(
            d.message.as_deref(),
            Some("inconclusive in 1 of 3 attempts; nothing was published")
        );
        assert_eq!(merged.status(), CaseStatus::Inconclusive);

        let merged =
            CaseResult::merge_attempts(vec![case(vec![unsure()]), case(vec![fail()])]).unwrap();
        let d = &merged.checks[0];
        assert_eq!(d.status, Status::Failed);
        assert!(!d.flaky, "no attempt passed");
        assert_eq!(
            d.message.as_deref(),
            Some("failed in 1 of 2 attempts; go-1 missed 3")
        );

        let merged = CaseResult::merge_attempts(vec![
            case(vec![unsure()]),
            case(vec![fail()]),
            case(vec![pass()]),
        ])
        .unwrap();
        assert!(merged.checks[0].flaky);
        assert_eq!(
            merged.checks[0]
                .attempts
                .iter()
                .map(|a| a.status)
                .collect::<Vec<_>>(),
            vec![Status::Inconclusive, Status::Failed, Status::Passed]
        );

        // An attempt that could not run: the checks of those that did, and the error.
        let mut broken = case(vec![]);
        broken.error = Some("no engine".into());
        let merged = CaseResult::merge_attempts(vec![broken, case(vec![pass()])]).unwrap();
        assert_eq!(merged.checks.len(), 1);
        assert_eq!(merged.status(), CaseStatus::Errored);
    }
}
