//! `junit.xml`: one testsuite per case, one testcase per check, for CI dashboards.

use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

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
                        .set_type(check.name.clone())
                        .set_description(check.evidence.join("\n"));
                    s
                }
                Status::Skipped => {
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
