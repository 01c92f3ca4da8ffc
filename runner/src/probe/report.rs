//! What a probe found, as `probe.json` and as the table `meshgate probe` prints.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One step's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub passed: bool,
    /// What was seen: the evidence of a pass, the reason of a failure.
    pub reason: String,
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
    /// Every step of [`STEPS`], in that order.
    pub steps: Vec<Step>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.steps.iter().all(|s| s.passed)
    }

    pub fn failed(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| !s.passed)
    }

    /// `PASSED: 10 of 10 steps` or `FAILED 2 of 10 steps: started, events`.
    pub fn headline(&self) -> String {
        let failed: Vec<&str> = self.failed().map(|s| s.name.as_str()).collect();
        if failed.is_empty() {
            format!(
                "probe of {}: PASSED {} of {} steps",
                self.target,
                self.steps.len(),
                self.steps.len()
            )
        } else {
            format!(
                "probe of {}: FAILED {} of {} steps: {}",
                self.target,
                failed.len(),
                self.steps.len(),
                failed.join(", ")
            )
        }
    }

    /// The failed steps in one line, for the error of the cases the probe stops: `started: ...; events: ...`.
    pub fn failures(&self) -> String {
        self.failed()
            .map(|s| format!("{}: {}", s.name, s.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The pass/fail table, what it probed above it and the headline below.
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
            let verdict = if s.passed { "pass" } else { "FAIL" };
            out.push_str(&format!("{:width$}  {verdict:7}  {}\n", s.name, s.reason));
        }
        out.push('\n');
        out.push_str(&self.headline());
        out.push('\n');
        out
    }
}
