//! `meshgate diff OLD NEW`: which verdicts changed between two runs, for nightly trend checks.

use std::collections::BTreeMap;

use crate::results::{RunResults, Status};

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
    /// Now failed, or the case could not be carried out.
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
        let (old, new) = (verdicts(old), verdicts(new));
        let mut d = Diff {
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
                (_, Verdict::Failed | Verdict::Error) => d
                    .new_failures
                    .push(format!("{label}: {} -> {after:?}", name(before))),
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

fn name(v: Option<Verdict>) -> String {
    v.map(|v| format!("{v:?}")).unwrap_or_else(|| "new".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::case;
    use crate::results::{CheckResult, MatrixRef};

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
}
