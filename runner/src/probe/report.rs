//! What a probe found, as `probe.json` and as the table `meshgate probe` prints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A step's verdict. A skip is never a pass: the step was not tried, because what it tests is something the
/// implementation says it does not do; it fails nothing either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

impl Verdict {
    /// As the table shows it: failures stand out.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        }
    }
}

/// One step's verdict. In `probe.json` also as `passed` (true for a pass only), which readers from before skips
/// read; `verdict` absent (a file from before skips) is taken from `passed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "StepJson", from = "StepJson")]
pub struct Step {
    pub name: String,
    pub verdict: Verdict,
    /// What was seen: the evidence of a pass, the reason of a failure or of a skip.
    pub reason: String,
}

#[derive(Serialize, Deserialize)]
struct StepJson {
    name: String,
    passed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verdict: Option<Verdict>,
    reason: String,
}

impl From<Step> for StepJson {
    fn from(s: Step) -> Self {
        StepJson {
            name: s.name,
            passed: s.verdict == Verdict::Pass,
            verdict: Some(s.verdict),
            reason: s.reason,
        }
    }
}

impl From<StepJson> for Step {
    fn from(s: StepJson) -> Self {
        let verdict = s.verdict.unwrap_or(if s.passed {
            Verdict::Pass
        } else {
            Verdict::Fail
        });
        Step {
            name: s.name,
            verdict,
            reason: s.reason,
        }
    }
}

/// What the probe found; `probe.json` of `meshgate probe`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// What was probed: `rust`, `go`, `image my-peer:dev`.
    pub target: String,
    /// The image (or, on the local backend, the build) that ran.
    pub image: String,
    /// From its `started` event.
    pub implementation: Option<String>,
    pub versions: BTreeMap<String, String>,
    /// The contract revision it says it speaks; absent: not said.
    pub contract_version: Option<u32>,
    /// Every step of [`STEPS`](super::STEPS), in that order.
    pub steps: Vec<Step>,
}

impl Report {
    /// No step failed (skips fail nothing): what `meshgate probe`'s exit status and `meshgate run` go by.
    pub fn passed(&self) -> bool {
        self.failed().next().is_none()
    }

    pub fn failed(&self) -> impl Iterator<Item = &Step> {
        self.with(Verdict::Fail)
    }

    fn with(&self, verdict: Verdict) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| s.verdict == verdict)
    }

    /// `PASSED 12 of 12 steps`, `PASSED 10 of 12 steps (2 skipped: roles, request-response)` or
    /// `FAILED 2 of 12 steps: started, events`.
    pub fn headline(&self) -> String {
        let names = |v| {
            self.with(v)
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
        };
        let (failed, skipped) = (names(Verdict::Fail), names(Verdict::Skip));
        let total = self.steps.len();
        let mut line = if failed.is_empty() {
            format!(
                "probe of {}: PASSED {} of {total} steps",
                self.target,
                self.with(Verdict::Pass).count()
            )
        } else {
            format!(
                "probe of {}: FAILED {} of {total} steps: {}",
                self.target,
                failed.len(),
                failed.join(", ")
            )
        };
        if !skipped.is_empty() {
            line.push_str(&format!(
                " ({} skipped: {})",
                skipped.len(),
                skipped.join(", ")
            ));
        }
        line
    }

    /// The failed steps in one line, for the error of the cases the probe stops: `started: ...; events: ...`.
    pub fn failures(&self) -> String {
        self.failed()
            .map(|s| format!("{}: {}", s.name, s.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The table of verdicts, what it probed above it, what a skip means when there is one, and the headline.
    pub fn table(&self) -> String {
        let mut said = vec![self.image.clone()];
        said.extend(self.implementation.clone());
        said.push(match self.contract_version {
            Some(v) => format!("contract version {v}"),
            None => "contract version not said".to_owned(),
        });
        let mut out = format!("meshgate probe {}: {}\n\n", self.target, said.join(", "));
        let width = self
            .steps
            .iter()
            .map(|s| s.name.len())
            .chain(["step".len()])
            .max()
            .unwrap_or(4);
        out.push_str(&format!("{:width$}  verdict  reason\n", "step"));
        for s in &self.steps {
            out.push_str(&format!(
                "{:width$}  {:7}  {}\n",
                s.name,
                s.verdict.as_str(),
                s.reason
            ));
        }
        out.push('\n');
        if self.with(Verdict::Skip).next().is_some() {
            out.push_str(
                "skip: not tried, because the implementation says it does not do what the step tests (its reason \
                 says what); a skip is no pass, and fails nothing.\n",
            );
        }
        out.push_str(&self.headline());
        out.push('\n');
        out
    }
}
