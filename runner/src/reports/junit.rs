//! `junit.xml`: one testsuite per case, one testcase per check, for CI dashboards. A pass is a success, a failure a
//! failure (flaky or rerun elements with `--repeat`), a known issue or a skip is skipped with its reference or
//! reason, an inconclusive check is an error of type `inconclusive`, and a case that could not be carried out has a
//! testcase `run` with an error. Each testcase's system-out and properties say what its check judged.

use std::path::Path;
use std::time::Duration;

use quick_junit::{
    FlakyOrRerun, NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use crate::results::{CaseResult, CheckResult, RunResults, Status};

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
        suite.add_property(Property::new("case.status", case.status().label()));
        // What the matrix's version requests stood for in this run (the same for every case).
        for r in &results.versions {
            suite.add_property(Property::new(
                format!("resolved.{}.{}", r.implementation, r.library),
                r.line(),
            ));
        }
        suite.set_system_out(case_out(case));
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
            let message = check.message.clone().unwrap_or_default();
            let status = match check.status {
                Status::Passed => TestCaseStatus::success(),
                Status::Failed => failure(check),
                Status::Known => {
                    let mut s = TestCaseStatus::skipped();
                    let reference = check.known_issue.as_deref().unwrap_or("(unnamed)");
                    s.set_message(if message.starts_with("known issue") {
                        message
                    } else {
                        format!("known issue {reference}: {message}")
                    })
                    .set_type("known issue")
                    .set_description(check.evidence.join("\n"));
                    s
                }
                Status::Skipped => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(message).set_type("skipped");
                    s
                }
                Status::Inconclusive => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                    s.set_message(message)
                        .set_type("inconclusive")
                        .set_description(check.evidence.join("\n"));
                    s
                }
            };
            let mut tc = TestCase::new(check.name.clone(), status);
            tc.set_classname(case.name.clone());
            tc.add_property(Property::new("status", check.status.label()));
            if let Some(coverage) = &check.coverage {
                tc.add_property(Property::new("coverage", coverage.clone()));
            }
            if let Some(issue) = &check.known_issue {
                tc.add_property(Property::new("known_issue", issue.clone()));
            }
            // What the check judged, then (for a pass) why it passed; a failure's evidence is in its element.
            let mut out: Vec<String> = check
                .coverage
                .iter()
                .map(|c| format!("coverage: {c}"))
                .collect();
            if check.status == Status::Passed {
                out.extend(check.evidence.iter().cloned());
            }
            if !out.is_empty() {
                tc.set_system_out(out.join("\n") + "\n");
            }
            suite.add_test_case(tc);
        }
        report.add_test_suite(suite);
    }
    Ok(report.to_string()?)
}

/// A failed check: its message and evidence, with the other attempts as flaky runs when the verdicts disagreed and
/// as reruns when every one failed.
fn failure(check: &CheckResult) -> TestCaseStatus {
    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
    s.set_message(check.message.clone().unwrap_or_default())
        .set_type(if check.flaky {
            "flaky".to_owned()
        } else {
            check.name.clone()
        })
        .set_description(check.evidence.join("\n"));
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

/// The case's own output: where its logs are, how it ended, steps not exercised, what the runner changed.
fn case_out(case: &CaseResult) -> String {
    let mut out = format!("logs: {}\nstatus: {}\n", case.logs, case.status().label());
    for step in &case.unexercised {
        out.push_str(&format!("not exercised: {step}\n"));
    }
    for note in &case.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    if let Some(why) = &case.stopped_early {
        out.push_str(&format!("stopped early: {why}\n"));
    }
    out
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
    use crate::results::tests::{case, known, run};
    use crate::results::{CaseResult, CheckResult};

    fn testcase<'a>(doc: &'a roxmltree::Document, name: &str) -> roxmltree::Node<'a, 'a> {
        doc.descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no testcase {name}"))
    }

    fn child<'a>(node: roxmltree::Node<'a, 'a>, tag: &str) -> Option<roxmltree::Node<'a, 'a>> {
        node.children().find(|n| n.has_tag_name(tag))
    }

    fn property(node: roxmltree::Node, name: &str) -> Option<String> {
        child(node, "properties")?
            .children()
            .find(|p| p.attribute("name") == Some(name))
            .and_then(|p| p.attribute("value").map(str::to_owned))
    }

    #[test]
    fn flaky_checks_carry_flaky_runs() {
        let pass = || CheckResult::passed("delivery", vec![]);
        let fail = |m: &str| CheckResult::failed("delivery", m.into(), vec![]);
        let flaky = CaseResult::merge_attempts(vec![
            case(vec![fail("first")]),
            case(vec![pass()]),
            case(vec![fail("third")]),
        ])
        .unwrap();
        let xml = render(&run(vec![flaky])).unwrap();
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
        assert_eq!(doc.root_element().attribute("failures"), Some("1"));
    }

    #[test]
    fn every_status_has_its_element() {
        let mut judged = case(vec![
            CheckResult::passed("connections", vec!["rust-1 -> go-1: 1 connection".into()])
                .covering("4 connections over 2 pairs"),
            CheckResult::failed("delivery", "go-1 missed 3".into(), vec!["missed: 5".into()])
                .covering("16 messages to 2 subscribers"),
            known("mesh", "rust-libp2p#6047"),
            CheckResult::skipped("streams", "off in the matrix".into()),
            CheckResult::inconclusive(
                "subscriptions",
                "no peer subscribed".into(),
                vec!["0 subscriptions seen".into()],
            ),
        ]);
        judged.name = "judged".into();
        judged.unexercised = vec!["go-1: unsubscribe".into()];
        judged.notes = vec!["rust-1 -> go-1 dialed once (deduplicated)".into()];
        let mut broken = case(vec![]);
        broken.name = "broken".into();
        broken.error = Some("image build failed\ncompiler output".into());
        let xml = render(&run(vec![judged, broken])).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.attribute("tests"), Some("6"), "{xml}");
        assert_eq!(root.attribute("failures"), Some("1"));
        assert_eq!(
            root.attribute("errors"),
            Some("2"),
            "inconclusive and the errored case"
        );
        assert_eq!(root.attribute("skipped"), Some("2"), "known and skipped");

        let passed = testcase(&doc, "connections");
        assert!(passed.children().all(|n| !n.has_tag_name("failure")
            && !n.has_tag_name("error")
            && !n.has_tag_name("skipped")));
        assert_eq!(
            child(passed, "system-out").and_then(|n| n.text()),
            Some("coverage: 4 connections over 2 pairs\nrust-1 -> go-1: 1 connection\n")
        );
        assert_eq!(
            property(passed, "coverage").as_deref(),
            Some("4 connections over 2 pairs")
        );
        assert_eq!(property(passed, "status").as_deref(), Some("passed"));

        let failed = testcase(&doc, "delivery");
        let failure = child(failed, "failure").unwrap();
        assert_eq!(failure.attribute("message"), Some("go-1 missed 3"));
        assert_eq!(failure.text(), Some("missed: 5"));
        assert_eq!(
            child(failed, "system-out").and_then(|n| n.text()),
            Some("coverage: 16 messages to 2 subscribers\n")
        );

        let known = child(testcase(&doc, "mesh"), "skipped").unwrap();
        assert_eq!(
            known.attribute("message"),
            Some("known issue rust-libp2p#6047: go-1 missed 2")
        );
        assert_eq!(
            property(testcase(&doc, "mesh"), "known_issue").as_deref(),
            Some("rust-libp2p#6047")
        );

        let skipped = child(testcase(&doc, "streams"), "skipped").unwrap();
        assert_eq!(skipped.attribute("message"), Some("off in the matrix"));

        let inconclusive = child(testcase(&doc, "subscriptions"), "error").unwrap();
        assert_eq!(inconclusive.attribute("type"), Some("inconclusive"));
        assert_eq!(
            inconclusive.attribute("message"),
            Some("no peer subscribed")
        );
        assert_eq!(inconclusive.text(), Some("0 subscriptions seen"));

        let errored = child(testcase(&doc, "run"), "error").unwrap();
        assert_eq!(errored.attribute("message"), Some("image build failed"));
        assert_eq!(errored.attribute("type"), Some("case could not run"));

        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite") && n.attribute("name") == Some("judged"))
            .unwrap();
        assert_eq!(property(suite, "case.status").as_deref(), Some("failed"));
        let out = child(suite, "system-out").and_then(|n| n.text()).unwrap();
        assert!(out.contains("not exercised: go-1: unsubscribe\n"), "{out}");
        assert!(
            out.contains("note: rust-1 -> go-1 dialed once (deduplicated)\n"),
            "{out}"
        );
    }
}
