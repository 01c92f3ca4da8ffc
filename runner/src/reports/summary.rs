//! `summary.md`: the verdict in its first line, a table per stack of implementation x implementation with the check
//! outcomes per cell, then every failure (errors and inconclusive checks included) in one line, known issues, skips
//! by reason, steps not exercised and the runner's notes. Fit for a CI job summary.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use crate::results::{CaseResult, CaseStatus, RunResults, Status};

pub const FILE: &str = "summary.md";

#[derive(Default)]
struct Cell {
    passed: usize,
    failed: usize,
    known: usize,
    skipped: usize,
    inconclusive: usize,
    errors: usize,
}

impl Cell {
    fn add(&mut self, case: &CaseResult) {
        if case.error.is_some() {
            self.errors += 1;
        }
        for c in &case.checks {
            match c.status {
                Status::Passed => self.passed += 1,
                Status::Failed => self.failed += 1,
                Status::Known => self.known += 1,
                Status::Skipped => self.skipped += 1,
                Status::Inconclusive => self.inconclusive += 1,
            }
        }
    }

    /// What needs a look first, in bold: `**error 1**, **fail 2**, **inconclusive 1**, pass 9, known 1, skipped 2`.
    fn render(&self) -> String {
        let mut parts = Vec::new();
        for (n, label) in [
            (self.errors, "error"),
            (self.failed, "fail"),
            (self.inconclusive, "inconclusive"),
        ] {
            if n > 0 {
                parts.push(format!("**{label} {n}**"));
            }
        }
        for (n, label) in [
            (self.passed, "pass"),
            (self.known, "known"),
            (self.skipped, "skipped"),
        ] {
            if n > 0 {
                parts.push(format!("{label} {n}"));
            }
        }
        parts.join(", ")
    }
}

/// The row and column of a case: its first and second implementation (`rust-0.56`, `go-v0.41.1`).
fn axes(case: &CaseResult) -> (String, String) {
    let imps = case
        .properties
        .get("implementations")
        .cloned()
        .unwrap_or_default();
    let mut it = imps.split(',');
    let row = it.next().unwrap_or("?").to_owned();
    let col = it.next().unwrap_or("(alone)").to_owned();
    (row, col)
}

fn stack(case: &CaseResult) -> String {
    let p = |k: &str| case.properties.get(k).cloned().unwrap_or_default();
    if p("transport") == "quic-v1" {
        "quic-v1".into()
    } else {
        format!("{}+{}+{}", p("transport"), p("security"), p("muxer"))
    }
}

pub fn render(results: &RunResults) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# meshgate {}: {}\n",
        results.matrix.name,
        results.headline()
    );
    let by_status: Vec<String> = CaseStatus::ALL
        .iter()
        .filter_map(|s| {
            let n = results.cases.iter().filter(|c| c.status() == *s).count();
            (n > 0).then(|| format!("{n} {}", s.label()))
        })
        .collect();
    let _ = writeln!(
        out,
        "{} case(s) from `{}` in {:.0} s{}{}.\n",
        results.cases.len(),
        results.matrix.file,
        results.duration_ms as f64 / 1000.0,
        if by_status.is_empty() { "" } else { ": " },
        by_status.join(", ")
    );

    let mut stacks: BTreeMap<String, Vec<&CaseResult>> = BTreeMap::new();
    for case in &results.cases {
        stacks.entry(stack(case)).or_default().push(case);
    }
    for (stack, cases) in &stacks {
        let rows: Vec<String> = ordered(cases.iter().map(|c| axes(c).0));
        let cols: Vec<String> = ordered(cases.iter().map(|c| axes(c).1));
        let mut cells: BTreeMap<(String, String), Cell> = BTreeMap::new();
        for case in cases {
            cells.entry(axes(case)).or_default().add(case);
        }
        let _ = writeln!(out, "## {stack}\n");
        let _ = writeln!(out, "| | {} |", cols.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(cols.len()));
        for row in &rows {
            let line: Vec<String> = cols
                .iter()
                .map(|col| {
                    cells
                        .get(&(row.clone(), col.clone()))
                        .map(Cell::render)
                        .unwrap_or_default()
                })
                .collect();
            let _ = writeln!(out, "| **{row}** | {} |", line.join(" | "));
        }
        let _ = writeln!(out);
    }

    // What keeps the run from passing: cases that could not be carried out, failed and inconclusive checks.
    let failures: Vec<String> = results
        .cases
        .iter()
        .flat_map(|case| {
            let error = case
                .error
                .iter()
                .map(move |e| format!("- **{}**: could not run: {}", case.name, first_line(e)));
            let checks = case
                .checks
                .iter()
                .filter(|c| matches!(c.status, Status::Failed | Status::Inconclusive))
                .map(move |c| {
                    let why = first_line(c.message.as_deref().unwrap_or_default());
                    match c.status {
                        Status::Failed => format!("- **{}** `{}`: {why}", case.name, c.name),
                        _ => format!("- **{}** `{}`: inconclusive: {why}", case.name, c.name),
                    }
                });
            error.chain(checks)
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "## Failures\n\n{}\n", failures.join("\n"));
    }
    let known: Vec<String> = results
        .cases
        .iter()
        .flat_map(|case| {
            case.checks
                .iter()
                .filter(|c| c.status == Status::Known)
                .map(move |c| {
                    format!(
                        "- **{}** `{}`: {}",
                        case.name,
                        c.name,
                        first_line(c.message.as_deref().unwrap_or_default())
                    )
                })
        })
        .collect();
    if !known.is_empty() {
        let _ = writeln!(out, "## Known issues\n\n{}\n", known.join("\n"));
    }
    // Skips, one line per reason: which checks, in how many cases.
    let mut skips: Vec<(String, Vec<String>, BTreeSet<&str>)> = Vec::new();
    for case in &results.cases {
        for c in case.checks.iter().filter(|c| c.status == Status::Skipped) {
            let why = first_line(c.message.as_deref().unwrap_or("no reason given")).to_owned();
            let at = match skips.iter().position(|(w, _, _)| *w == why) {
                Some(i) => i,
                None => {
                    skips.push((why, Vec::new(), BTreeSet::new()));
                    skips.len() - 1
                }
            };
            let (_, checks, cases) = &mut skips[at];
            if !checks.contains(&c.name) {
                checks.push(c.name.clone());
            }
            cases.insert(&case.name);
        }
    }
    if !skips.is_empty() {
        let lines: Vec<String> = skips
            .iter()
            .map(|(why, checks, cases)| {
                let names: Vec<String> = checks.iter().map(|c| format!("`{c}`")).collect();
                format!(
                    "- {} in {} case{}: {why}",
                    names.join(", "),
                    cases.len(),
                    if cases.len() == 1 { "" } else { "s" }
                )
            })
            .collect();
        let _ = writeln!(out, "## Skipped\n\n{}\n", lines.join("\n"));
    }
    for (title, items) in [
        (
            "Not exercised",
            results
                .cases
                .iter()
                .filter(|c| !c.unexercised.is_empty())
                .map(|c| format!("- **{}**: {}", c.name, c.unexercised.join("; ")))
                .collect::<Vec<_>>(),
        ),
        (
            "Notes",
            results
                .cases
                .iter()
                .filter(|c| !c.notes.is_empty())
                .map(|c| format!("- **{}**: {}", c.name, c.notes.join("; ")))
                .collect(),
        ),
    ] {
        if !items.is_empty() {
            let _ = writeln!(out, "## {title}\n\n{}\n", items.join("\n"));
        }
    }
    out
}

/// Distinct values in order of first appearance (the matrix's order).
fn ordered(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    values.filter(|v| seen.insert(v.clone())).collect()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

pub fn write(results: &RunResults, path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, render(results))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::{case, known, run};
    use crate::results::CheckResult;

    #[test]
    fn every_outcome_is_counted_and_named() {
        let mut judged = case(vec![
            CheckResult::passed("connections", vec![]),
            CheckResult::failed("delivery", "go-1 missed 3".into(), vec![]),
            known("mesh", "rust-libp2p#6047"),
            CheckResult::skipped("streams", "off in the matrix".into()),
            CheckResult::inconclusive("subscriptions", "no peer subscribed".into(), vec![]),
        ]);
        judged.name = "judged".into();
        judged.unexercised = vec!["go-1: unsubscribe".into()];
        judged.notes = vec!["rust-1 -> go-1 dialed once".into()];
        let mut broken = case(vec![]);
        broken.name = "broken".into();
        broken.error = Some("image build failed\ndetails".into());
        let mut other = case(vec![CheckResult::skipped(
            "streams",
            "off in the matrix".into(),
        )]);
        other.name = "other".into();
        let md = render(&run(vec![judged, broken, other]));
        let first = md.lines().next().unwrap();
        assert!(first.starts_with("# meshgate m: FAILED judged [delivery]: go-1 missed 3; 3 cases: 1 failed, 1 errored"), "{md}");
        assert!(
            md.contains("3 case(s) from `m.yaml` in 0 s: 1 failed, 1 errored, 1 skipped."),
            "{md}"
        );
        assert!(
            md.contains("| **rust** | **error 1**, **fail 1**, **inconclusive 1**, pass 1, known 1, skipped 2 |"),
            "{md}"
        );
        assert!(
            md.contains("- **broken**: could not run: image build failed\n"),
            "{md}"
        );
        assert!(
            md.contains("- **judged** `delivery`: go-1 missed 3\n"),
            "{md}"
        );
        assert!(
            md.contains("- **judged** `subscriptions`: inconclusive: no peer subscribed\n"),
            "{md}"
        );
        assert!(md.contains("## Known issues\n\n- **judged** `mesh`: known issue rust-libp2p#6047: go-1 missed 2\n"), "{md}");
        assert!(
            md.contains("## Skipped\n\n- `streams` in 2 cases: off in the matrix\n"),
            "{md}"
        );
        assert!(
            md.contains("## Not exercised\n\n- **judged**: go-1: unsubscribe\n"),
            "{md}"
        );
        assert!(
            md.contains("## Notes\n\n- **judged**: rust-1 -> go-1 dialed once\n"),
            "{md}"
        );
    }
}
