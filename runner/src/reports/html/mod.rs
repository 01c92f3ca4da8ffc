//! `index.html`: the run on one self-contained page (inline CSS and SVG, nothing fetched), so it can be archived as a
//! CI artifact and opened anywhere. The verdict, the matrix as a table of cases x checks (pass, fail, known, skipped,
//! inconclusive, error: each its own class and colour), then per case what each check judged, its failures,
//! inconclusive checks and known issues with evidence, skips, steps not exercised, the runner's notes, its peers and
//! charts of its time line, with the marked moments on every chart.
//!
//! This module is the page model: what the page shows, built from the results and rendered through the askama
//! template `runner/templates/index.html`. The SVG charts are drawn in `charts`.

mod charts;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use askama::Template;

use crate::results::{CaseResult, CaseStatus, CheckResult, Outcome, RunResults, Status};
use crate::timeline::MarkKind;
use charts::charts;

pub const FILE: &str = "index.html";

#[derive(Template)]
#[template(path = "index.html")]
struct Page {
    headline: String,
    verdict: &'static str,
    matrix: String,
    file: String,
    meshgate: String,
    started: String,
    duration: String,
    counts: String,
    columns: Vec<String>,
    /// Columns an error spans: every check column, or the one placeholder when no case has checks.
    span: usize,
    rows: Vec<Row>,
    failures: Vec<Failure>,
    sections: Vec<Section>,
}

struct Row {
    anchor: String,
    name: String,
    implementations: String,
    stack: String,
    error: Option<String>,
    cells: Vec<Cell>,
}

struct Cell {
    /// CSS class and text: pass, fail, known, skipped, inconclusive, or none when the case has no such check.
    class: &'static str,
    text: &'static str,
    title: String,
    link: bool,
}

#[derive(Clone)]
struct Failure {
    /// CSS class and tag: fail, inconclusive, known, or error (a case that could not be carried out: no check).
    kind: &'static str,
    tag: String,
    anchor: String,
    case: String,
    check: String,
    message: String,
    /// Seconds into the case, when the check said when.
    at: Option<String>,
    evidence: Vec<String>,
    /// With `--repeat`: every attempt's verdict, `pass FAIL pass`.
    attempts: String,
}

struct Section {
    anchor: String,
    name: String,
    verdict: &'static str,
    badge: &'static str,
    duration: String,
    logs: String,
    error: Option<String>,
    stopped_early: Option<String>,
    properties: Vec<(String, String)>,
    peers: Vec<Peer>,
    /// Every check: what it judged and how it ended.
    checks: Vec<CheckRow>,
    /// Failed, inconclusive and known checks, with their evidence.
    failures: Vec<Failure>,
    passed: Vec<Failure>,
    unexercised: Vec<String>,
    notes: Vec<String>,
    charts: Vec<String>,
    marks: Vec<MarkRow>,
}

struct CheckRow {
    name: String,
    /// CSS class and text of its outcome, as in the matrix.
    class: &'static str,
    text: &'static str,
    coverage: String,
    /// The failure, the known issue, why it was skipped or inconclusive.
    message: String,
}

struct Peer {
    name: String,
    label: String,
    peer_id: String,
    exit: String,
    exit_bad: bool,
}

struct MarkRow {
    number: usize,
    at: String,
    kind: &'static str,
    text: String,
}

pub fn render(results: &RunResults) -> anyhow::Result<String> {
    let columns = ordered(
        results
            .cases
            .iter()
            .flat_map(|c| c.checks.iter().map(|k| k.name.clone())),
    );
    let anchors = anchors(&results.cases);
    let mut rows = Vec::new();
    let mut sections = Vec::new();
    let mut failures = Vec::new();
    for (case, anchor) in results.cases.iter().zip(&anchors) {
        let cells = columns
            .iter()
            .map(|col| cell(case.checks.iter().find(|c| &c.name == col)))
            .collect();
        rows.push(Row {
            anchor: anchor.clone(),
            name: case.name.clone(),
            implementations: implementations(case),
            stack: stack(case),
            error: case.error.as_deref().map(|e| first_line(e).to_owned()),
            cells,
        });
        let section = section(case, anchor)?;
        if let Some(error) = &case.error {
            failures.push(Failure {
                kind: "error",
                tag: "ERROR".into(),
                anchor: anchor.clone(),
                case: case.name.clone(),
                check: String::new(),
                message: first_line(error).to_owned(),
                at: None,
                evidence: Vec::new(),
                attempts: String::new(),
            });
        }
        failures.extend(section.failures.iter().map(Failure::summary));
        sections.push(section);
    }
    let count = |what: &str, of: Vec<(usize, &str)>| {
        let total: usize = of.iter().map(|(n, _)| n).sum();
        let parts: Vec<String> = of
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, label)| format!("{n} {label}"))
            .collect();
        match parts.is_empty() {
            true => format!("{total} {what}"),
            false => format!("{total} {what}: {}", parts.join(", ")),
        }
    };
    let cases = CaseStatus::ALL
        .iter()
        .map(|s| {
            let n = results.cases.iter().filter(|c| c.status() == *s).count();
            (n, s.label())
        })
        .collect();
    let checks = [
        Status::Failed,
        Status::Inconclusive,
        Status::Known,
        Status::Skipped,
        Status::Passed,
    ]
    .iter()
    .map(|s| {
        let n = results
            .cases
            .iter()
            .flat_map(|c| &c.checks)
            .filter(|c| c.status == *s)
            .count();
        (n, s.label())
    })
    .collect();
    let page = Page {
        headline: results.headline(),
        verdict: match results.outcome() {
            Outcome::Passed => "pass",
            Outcome::ChecksFailed => "fail",
            Outcome::CouldNotRun => "nothing",
        },
        matrix: results.matrix.name.clone(),
        file: results.matrix.file.clone(),
        meshgate: results.meshgate.clone(),
        started: humantime::format_rfc3339_seconds(
            UNIX_EPOCH + Duration::from_micros(results.started_us.max(0) as u64),
        )
        .to_string(),
        duration: seconds(results.duration_ms),
        counts: format!(
            "{} · {}",
            count("case(s)", cases),
            count("check(s)", checks)
        ),
        span: columns.len().max(1),
        columns,
        rows,
        failures,
        sections,
    };
    Ok(page.render()?)
}

pub fn write(results: &RunResults, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, render(results)?)?;
    Ok(())
}

fn cell(check: Option<&CheckResult>) -> Cell {
    let Some(check) = check else {
        return Cell {
            class: "none",
            text: "–",
            title: String::new(),
            link: false,
        };
    };
    let message = check.message.clone().unwrap_or_default();
    let coverage = check.coverage.clone().unwrap_or_default();
    // The tooltip: what broke (or why there is no verdict), then what the check judged.
    let title = [message.as_str(), coverage.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" · judged: ");
    let (class, text) = outcome(check);
    Cell {
        class,
        text,
        title: match check.status {
            Status::Passed if !coverage.is_empty() => format!("judged: {coverage}"),
            _ => title,
        },
        link: matches!(
            check.status,
            Status::Failed | Status::Known | Status::Inconclusive
        ),
    }
}

/// CSS class and text of a check's outcome.
fn outcome(check: &CheckResult) -> (&'static str, &'static str) {
    match check.status {
        Status::Passed => ("pass", "pass"),
        Status::Failed if check.flaky => ("fail", "FLAKY"),
        Status::Failed => ("fail", "FAIL"),
        Status::Known => ("known", "known"),
        Status::Skipped => ("skipped", "skipped"),
        Status::Inconclusive => ("inconclusive", "inconclusive"),
    }
}

fn section(case: &CaseResult, anchor: &str) -> anyhow::Result<Section> {
    let start_us = case.timeline.as_ref().map(|t| t.start_us);
    let failure = |c: &CheckResult| Failure {
        kind: match c.status {
            Status::Failed => "fail",
            Status::Inconclusive => "inconclusive",
            _ => "known",
        },
        tag: match (c.status, &c.known_issue) {
            (Status::Failed, _) if c.flaky => "FLAKY".to_owned(),
            (Status::Failed, _) => "FAIL".to_owned(),
            (Status::Inconclusive, _) => "INCONCLUSIVE".to_owned(),
            (_, Some(issue)) => format!("known {issue}"),
            _ => "known".to_owned(),
        },
        anchor: anchor.to_owned(),
        case: case.name.clone(),
        check: c.name.clone(),
        message: c.message.clone().unwrap_or_default(),
        at: c
            .at_us
            .zip(start_us)
            .map(|(at, start)| format!("{:.1} s", (at - start) as f64 / 1e6)),
        evidence: c.evidence.clone(),
        attempts: c
            .attempts
            .iter()
            .map(|a| match a.status {
                Status::Passed => "pass",
                Status::Failed => "FAIL",
                Status::Skipped => "skipped",
                Status::Known => "known",
                Status::Inconclusive => "inconclusive",
            })
            .collect::<Vec<_>>()
            .join(" "),
    };
    let with = |status: Status| {
        case.checks
            .iter()
            .filter(|c| c.status == status)
            .map(failure)
            .collect::<Vec<_>>()
    };
    let (verdict, badge) = match case.status() {
        CaseStatus::Passed => ("pass", "pass"),
        CaseStatus::Failed => ("fail", "FAIL"),
        CaseStatus::Known => ("known", "known"),
        CaseStatus::Skipped => ("skipped", "SKIPPED"),
        CaseStatus::Inconclusive => ("inconclusive", "INCONCLUSIVE"),
        CaseStatus::Errored => ("error", "ERROR"),
    };
    let charts = match &case.timeline {
        Some(t) => charts(t)?,
        None => Vec::new(),
    };
    let marks = case.timeline.iter().flat_map(|t| &t.marks).enumerate();
    Ok(Section {
        anchor: anchor.to_owned(),
        name: case.name.clone(),
        verdict,
        badge,
        duration: seconds(case.duration_ms),
        logs: case.logs.clone(),
        error: case.error.clone(),
        stopped_early: case.stopped_early.clone(),
        properties: case
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        peers: case
            .peers
            .iter()
            .map(|p| Peer {
                name: p.name.clone(),
                label: p.implementation_label(),
                peer_id: p.peer_id.clone().unwrap_or_else(|| "?".into()),
                exit: p
                    .exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "–".into()),
                exit_bad: p.exit_code.is_some_and(|c| c != 0),
            })
            .collect(),
        checks: case
            .checks
            .iter()
            .map(|c| {
                let (class, text) = outcome(c);
                CheckRow {
                    name: c.name.clone(),
                    class,
                    text,
                    coverage: c.coverage.clone().unwrap_or_default(),
                    message: c.message.clone().unwrap_or_default(),
                }
            })
            .collect(),
        failures: [Status::Failed, Status::Inconclusive, Status::Known]
            .into_iter()
            .flat_map(with)
            .collect(),
        passed: with(Status::Passed),
        unexercised: case.unexercised.clone(),
        notes: case.notes.clone(),
        charts,
        marks: marks
            .map(|(i, m)| MarkRow {
                number: i + 1,
                at: format!("{:.1} s", m.at_ms as f64 / 1000.0),
                kind: kind_name(m.kind),
                text: m.text.clone(),
            })
            .collect(),
    })
}

impl Failure {
    /// The line in the run's list of failures: no evidence, that is in the case's section.
    fn summary(&self) -> Failure {
        Failure {
            evidence: Vec::new(),
            ..self.clone()
        }
    }
}

/// The distinct implementations of a case as its peers reported them (`rust-libp2p 0.57.1`), in peer order.
fn implementations(case: &CaseResult) -> String {
    let labels = ordered(case.peers.iter().map(|p| p.implementation_label()));
    if labels.is_empty() {
        case.properties
            .get("implementations")
            .cloned()
            .unwrap_or_default()
            .replace(',', " × ")
    } else {
        labels.join(" × ")
    }
}

fn stack(case: &CaseResult) -> String {
    let p = |k: &str| case.properties.get(k).cloned().unwrap_or_default();
    if p("transport") == "quic-v1" {
        "quic-v1".into()
    } else {
        format!("{}+{}+{}", p("transport"), p("security"), p("muxer"))
    }
}

/// Element ids from case names: readable, and unique even when two names slug alike.
fn anchors(cases: &[CaseResult]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    cases
        .iter()
        .map(|case| {
            let mut slug = String::from("case");
            for word in case
                .name
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '.')
                .filter(|w| !w.is_empty())
            {
                slug.push('-');
                slug.push_str(&word.to_ascii_lowercase().replace('.', "_"));
            }
            let mut anchor = slug.clone();
            let mut n = 2;
            while !seen.insert(anchor.clone()) {
                anchor = format!("{slug}-{n}");
                n += 1;
            }
            anchor
        })
        .collect()
}

fn ordered(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    values.filter(|v| seen.insert(v.clone())).collect()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn kind_name(kind: MarkKind) -> &'static str {
    match kind {
        MarkKind::Identify => "identify",
        MarkKind::Incident => "incident",
        MarkKind::Fault => "fault",
        MarkKind::Exit => "exit",
        MarkKind::Failure => "failure",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::results::{Attempt, MatrixRef, PeerReport};
    use crate::timeline::{Mark, Timeline};

    fn peer(name: &str, implementation: &str, library: &str, version: (&str, &str)) -> PeerReport {
        PeerReport {
            name: name.into(),
            implementation: implementation.into(),
            library: Some(library.into()),
            versions: BTreeMap::from([(version.0.into(), version.1.into())]),
            peer_id: Some(format!("12D3KooW{name}")),
            image: "meshgate-peer".into(),
            exit_code: Some(0),
        }
    }

    /// A run with a passing case and a failing one whose evidence carries markup, as peer output may.
    fn failing_run() -> RunResults {
        let t = Timeline {
            start_us: 1_000_000_000,
            end_us: 1_006_000_000,
            deliveries: BTreeMap::from([
                ("rust -> go".into(), vec![0, 4, 4, 1, 0, 0]),
                ("go -> rust".into(), vec![0, 4, 2, 0, 0, 0]),
            ]),
            connections: BTreeMap::from([(
                "rust-1 -> go-1".into(),
                vec![(300, 1), (310, 2), (5000, 0)],
            )]),
            streams: BTreeMap::from([(
                "rust-1 #1 -> go-1".into(),
                vec![(320, 2), (900, 3), (5000, 0)],
            )]),
            marks: vec![
                Mark {
                    at_ms: 1200,
                    kind: MarkKind::Incident,
                    text: "go-1: {\"cmd\":\"unsubscribe\"}".into(),
                },
                Mark {
                    at_ms: 2000,
                    kind: MarkKind::Identify,
                    text: "go-1 now advertises to rust-1: -/meshsub/1.1.0".into(),
                },
                Mark {
                    at_ms: 2500,
                    kind: MarkKind::Failure,
                    text: "delivery: go-1 missed 3 <b>messages</b>".into(),
                },
            ],
        };
        let mut properties =
            BTreeMap::from([("implementations".to_string(), "rust,go".to_string())]);
        properties.insert("transport".into(), "tcp".into());
        properties.insert("security".into(), "noise".into());
        properties.insert("muxer".into(), "yamux".into());
        let peers = vec![
            peer("rust-1", "rust", "rust-libp2p", ("libp2p", "0.57.1")),
            peer(
                "go-1",
                "go",
                "go-libp2p",
                ("github.com/libp2p/go-libp2p", "v0.51.0"),
            ),
        ];
        let failing = CaseResult {
            name: "rust x go / tcp+noise+yamux / pair".into(),
            network: "pair".into(),
            properties: properties.clone(),
            peers: peers.clone(),
            checks: vec![
                CheckResult::passed("connections", vec!["rust-1 -> go-1: 1 connection".into()]),
                CheckResult::failed(
                    "delivery",
                    "go-1 (go-libp2p v0.51.0) missed 3 of 8 messages from rust-1".into(),
                    vec![
                        "go-1 stderr: <script>alert(1)</script>".into(),
                        "missed: rust-1/meshgate/5".into(),
                    ],
                )
                .at(1_002_500_000),
                CheckResult {
                    status: Status::Known,
                    known_issue: Some("rust-libp2p#6047".into()),
                    ..CheckResult::failed(
                        "streams",
                        "known issue rust-libp2p#6047: expected".into(),
                        vec![],
                    )
                },
            ],
            error: None,
            duration_ms: 6000,
            logs: "cases/001-pair".into(),
            stopped_early: None,
            unexercised: Vec::new(),
            notes: Vec::new(),
            timeline: Some(t),
            phases: None,
        };
        let passing = CaseResult {
            name: "rust x go / quic-v1 / pair".into(),
            checks: vec![
                CheckResult::passed("connections", vec![]),
                CheckResult::passed("delivery", vec![]),
            ],
            timeline: None,
            ..failing.clone()
        };
        RunResults {
            meshgate: "0.1.0".into(),
            matrix: MatrixRef {
                name: "unit".into(),
                file: "matrices/unit.yaml".into(),
            },
            started_us: 1_000_000_000,
            duration_ms: 12_000,
            cases: vec![passing, failing],
            versions: Vec::new(),
        }
    }

    #[test]
    fn failing_case_has_its_row_anchor_and_charts() -> anyhow::Result<()> {
        let html = render(&failing_run())?;
        assert!(html.contains(&failing_run().headline()), "headline missing");
        let anchor = "case-rust-x-go-tcp-noise-yamux-pair";
        assert!(html.contains(&format!("id=\"{anchor}\"")), "no anchor");
        assert!(
            html.contains(&format!("<a href=\"#{anchor}\">FAIL</a>")),
            "FAIL cell does not link to the section"
        );
        assert!(
            html.contains(&format!("<tr class=\"failure\" id=\"{anchor}-delivery\">")),
            "no failure row"
        );
        assert!(html.contains("go-1 (go-libp2p v0.51.0) missed 3 of 8 messages from rust-1"));
        assert!(
            html.contains("rust-libp2p 0.57.1 × go-libp2p v0.51.0"),
            "implementations with versions"
        );
        assert!(html.contains(">known</a>"), "known issue cell");
        // Three charts, each with the three marks and their tooltips.
        assert_eq!(html.matches("<svg").count(), 3);
        assert_eq!(html.matches("<g class=\"mark mark-failure\">").count(), 3);
        assert_eq!(html.matches("<g class=\"mark mark-incident\">").count(), 3);
        assert_eq!(html.matches("<g class=\"mark mark-identify\">").count(), 3);
        assert!(html.contains("<title>3 at 2.5 s, failure: delivery: go-1 missed 3 &lt;b&gt;messages&lt;/b&gt;</title>"));
        // Axis labels and legends are text, without fonts.
        assert!(html.contains("seconds since the case started"));
        assert!(
            html.contains("rust -&gt; go (max 4)"),
            "legend of deliveries"
        );
        assert!(
            html.contains("rust-1 -&gt; go-1 (max 2)"),
            "legend of connections"
        );
        assert!(
            html.contains("rust-1 #1 -&gt; go-1 (max 3)"),
            "legend of streams"
        );
        Ok(())
    }

    #[test]
    fn peer_output_is_escaped() -> anyhow::Result<()> {
        let html = render(&failing_run())?;
        assert!(
            !html.contains("<script>"),
            "peer output reached the page as markup"
        );
        assert!(
            html.contains("go-1 stderr: &#60;script&#62;alert(1)&#60;/script&#62;"),
            "{html}"
        );
        Ok(())
    }

    #[test]
    fn errors_span_the_check_columns() -> anyhow::Result<()> {
        let mut run = failing_run();
        run.cases[0].checks.clear();
        run.cases[0].error = Some("image build failed\nlast compiler lines".into());
        let html = render(&run)?;
        assert!(
            html.contains("<td class=\"error\" colspan=\"3\">"),
            "{html}"
        );
        assert!(html.contains("No time line: the case did not run."));
        assert!(html.contains(
            "<li><span class=\"tag error\">ERROR</span> <a href=\"#case-rust-x-go-quic-v1-pair\">rust x go / quic-v1 / pair</a>: image build failed</li>"
        ), "{html}");
        Ok(())
    }

    #[test]
    fn flaky_failures_show_their_attempts() -> anyhow::Result<()> {
        let mut run = failing_run();
        let delivery = &mut run.cases[1].checks[1];
        delivery.flaky = true;
        delivery.attempts = vec![
            Attempt {
                status: Status::Passed,
                message: None,
            },
            Attempt {
                status: Status::Failed,
                message: delivery.message.clone(),
            },
        ];
        let html = render(&run)?;
        assert!(html.contains(">FLAKY</a>"));
        assert!(html.contains("attempts: pass FAIL"));
        Ok(())
    }

    #[test]
    fn every_outcome_has_its_class_coverage_and_reason() -> anyhow::Result<()> {
        let mut run = failing_run();
        let case = &mut run.cases[1];
        case.checks[0] = case.checks[0].clone().covering("2 connections over 1 pair");
        case.checks
            .push(CheckResult::skipped("mesh", "off in the matrix".into()));
        case.checks.push(CheckResult::inconclusive(
            "subscriptions",
            "no peer subscribed".into(),
            vec!["0 subscriptions seen".into()],
        ));
        case.unexercised = vec!["go-1: unsubscribe (unsupported)".into()];
        case.notes = vec!["rust-1 -> go-1 dialed once (deduplicated)".into()];
        let html = render(&run)?;
        let anchor = "case-rust-x-go-tcp-noise-yamux-pair";
        assert!(
            html.contains("<td class=\"skipped\" title=\"off in the matrix\">skipped</td>"),
            "{html}"
        );
        assert!(html.contains(&format!(
            "<td class=\"inconclusive\" title=\"no peer subscribed\"><a href=\"#{anchor}\">inconclusive</a></td>"
        )));
        assert!(
            html.contains("title=\"judged: 2 connections over 1 pair\""),
            "{html}"
        );
        assert!(html.contains(&format!(
            "<tr class=\"inconclusive\" id=\"{anchor}-subscriptions\">"
        )));
        assert!(html.contains(&format!("<tr class=\"known\" id=\"{anchor}-streams\">")));
        assert!(html.contains("<span class=\"tag inconclusive\">INCONCLUSIVE</span>"));
        assert!(html.contains("<span class=\"tag known\">known rust-libp2p#6047</span>"));
        assert!(html.contains("<td class=\"coverage\">2 connections over 1 pair</td>"));
        assert!(html.contains("<li>go-1: unsubscribe (unsupported)</li>"));
        assert!(html.contains("<li>rust-1 -&#62; go-1 dialed once (deduplicated)</li>"));
        assert!(
            html.contains(
                "2 case(s): 1 failed, 1 passed · 7 check(s): 1 failed, 1 inconclusive, 1 known, 1 skipped, 3 passed"
            ),
            "{html}"
        );

        // Only skipped cases: nothing judged, in grey.
        let mut skipped = failing_run();
        skipped.cases.truncate(1);
        skipped.cases[0].checks = vec![CheckResult::skipped(
            "delivery",
            "go-1 cannot do mplex".into(),
        )];
        let html = render(&skipped)?;
        assert!(
            html.contains("<header class=\"verdict nothing\">"),
            "{html}"
        );
        assert!(html.contains("<h1>NOTHING JUDGED: 1 case skipped (go-1 cannot do mplex)</h1>"));
        assert!(html.contains("<span class=\"tag skipped\">SKIPPED</span>"));
        Ok(())
    }

    #[test]
    fn anchors_are_unique() {
        let mut run = failing_run();
        run.cases[0].name = run.cases[1].name.replace('+', " ");
        let a = anchors(&run.cases);
        assert_eq!(
            a,
            vec![
                "case-rust-x-go-tcp-noise-yamux-pair",
                "case-rust-x-go-tcp-noise-yamux-pair-2"
            ]
        );
    }
}
