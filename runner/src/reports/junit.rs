//! `junit.xml`: one testsuite per case, one testcase per check, for CI dashboards.

use std::path::Path;
use std::time::Duration;

use quick_junit::{
    FlakyOrRerun, NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use crate::results::{RunResults, Status};

pub const FILE: &str = "junit.xml";

pub fn render(results: &RunResults) -> anyhow::Result<String> {
    let mut report = Report::new(format!("meshgate {}", results.matrix.name));
    report.set_time(Duration::from_millis(results.duration_ms));
    for case in &results.cases {
        let mut suite = TestSuite::new(case.name.clone());
        suite.set_time(Duration::from_millis(case.duration_ms));
        suite.add_properties(
            case.properties
                .iter()
                .map(|(k, v)| Property::new(k.clone(), v.clone())),
        );
        for peer in &case.peers {
            let value = match &peer.peer_id {
                Some(id) => format!("{} {id}", peer.implementation_label()),
                None => peer.implementation_label(),
            };
            suite.add_property(Property::new(format!("peer.{}", peer.name), value));
        }
        suite.set_system_out(format!("logs: {}\n", case.logs));
        if let Some(error) = &case.error {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status
                .set_message(first_line(error))
                .set_type("case could not run")
                .set_description(error.clone());
            let mut tc = TestCase::new("run", status);
            tc.set_classname(case.name.clone());
            suite.add_test_case(tc);
        }
        for check in &case.checks {
            let status = match check.status {
                Status::Passed => TestCaseStatus::success(),
                Status::Failed => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(check.message.clone().unwrap_or_default())
                        .set_type(if check.flaky {
                            "flaky".to_owned()
                        } else {
                            check.name.clone()
                        })
                        .set_description(check.evidence.join("\n"));
                    // The other attempts: flaky runs when the verdicts disagreed, reruns when every one failed.
                    s.set_rerun_kind(if check.flaky {
                        FlakyOrRerun::Flaky
                    } else {
                        FlakyOrRerun::Rerun
                    });
                    let first_failed = check
                        .attempts
                        .iter()
                        .position(|a| a.status == Status::Failed);
                    for (i, a) in check.attempts.iter().enumerate() {
                        if a.status == Status::Failed && Some(i) != first_failed {
                            let mut rerun = TestRerun::new(NonSuccessKind::Failure);
                            rerun.set_message(a.message.clone().unwrap_or_default());
                            s.add_rerun(rerun);
                        }
                    }
                    s
                }
                Status::Skipped | Status::Known | Status::Inconclusive => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(check.message.clone().unwrap_or_default());
                    s
                }
            };
            let mut tc = TestCase::new(check.name.clone(), status);
            tc.set_classname(case.name.clone());
            if check.status == Status::Passed && !check.evidence.is_empty() {
                tc.set_system_out(check.evidence.join("\n"));
            }
            suite.add_test_case(tc);
        }
        report.add_test_suite(suite);
    }
    Ok(report.to_string()?)
}

pub fn write(results: &RunResults, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, render(results)?)?;
    Ok(())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::case;
    use crate::results::{CaseResult, CheckResult, MatrixRef};

    #[test]
    fn flaky_checks_carry_flaky_runs_and_known_issues_are_skips() {
        let pass = || CheckResult::passed("delivery", vec![]);
        let fail = |m: &str| CheckResult::failed("delivery", m.into(), vec![]);
        let flaky = CaseResult::merge_attempts(vec![
            case(vec![fail("first")]),
            case(vec![pass()]),
            case(vec![fail("third")]),
        ])
        .unwrap();
        let mut known = case(vec![CheckResult {
            status: Status::Skipped,
            message: Some("known issue rust-libp2p#6047: go-1 missed".into()),
            known_issue: Some("rust-libp2p#6047".into()),
            ..pass()
        }]);
        known.name = "other".into();
        let results = RunResults {
            meshgate: "0".into(),
            matrix: MatrixRef {
                name: "m".into(),
                file: "m.yaml".into(),
            },
            started_us: 0,
            duration_ms: 1,
            cases: vec![flaky, known],
        };
        let xml = render(&results).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let failure = doc
            .descendants()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        assert_eq!(failure.attribute("type"), Some("flaky"));
        assert!(failure
            .attribute("message")
            .unwrap()
            .starts_with("flaky: failed in 2 of 3 attempts; first"));
        let reruns: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("flakyFailure"))
            .collect();
        assert_eq!(reruns.len(), 1, "{xml}");
        assert_eq!(reruns[0].attribute("message"), Some("third"));
        let skipped = doc
            .descendants()
            .find(|n| n.has_tag_name("skipped"))
            .unwrap();
        assert!(skipped
            .attribute("message")
            .unwrap()
            .contains("rust-libp2p#6047"));
        assert_eq!(doc.root_element().attribute("failures"), Some("1"));
        assert_eq!(doc.root_element().attribute("skipped"), Some("1"));
    }
}
