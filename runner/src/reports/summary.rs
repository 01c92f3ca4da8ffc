//! `summary.md`: the verdict in its first line, a table per stack of implementation x implementation with the check
//! outcomes per cell, then every failure in one line. Fit for a CI job summary.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use crate::results::{CaseResult, RunResults, Status};

pub const FILE: &str = "summary.md";

#[derive(Default)]
struct Cell {
    passed: usize,
    failed: usize,
    known: usize,
    skipped: usize,
    errors: usize,
}

impl Cell {
    fn add(&mut self, case: &CaseResult) {
        if case.error.is_some() {
            self.errors += 1;
        }
        for c in &case.checks {
            match (c.status, c.known_issue.is_some()) {
                (Status::Passed, _) => self.passed += 1,
                (Status::Failed, _) => self.failed += 1,
                (Status::Known, _) | (Status::Skipped, true) => self.known += 1,
                (Status::Skipped | Status::Inconclusive, _) => self.skipped += 1,
            }
        }
    }

    fn render(&self) -> String {
        let mut parts = Vec::new();
        if self.errors > 0 {
            parts.push(format!("**error {}**", self.errors));
        }
        if self.failed > 0 {
            parts.push(format!("**fail {}**", self.failed));
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
    let _ = writeln!(
        out,
        "{} case(s) from `{}` in {:.0} s.\n",
        results.cases.len(),
        results.matrix.file,
        results.duration_ms as f64 / 1000.0
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

    let failures: Vec<String> = results
        .cases
        .iter()
        .flat_map(|case| {
            let error = case
                .error
                .iter()
                .map(move |e| format!("- **{}**: could not run: {}", case.name, first_line(e)));
            let failed = case
                .checks
                .iter()
                .filter(|c| c.status == Status::Failed)
                .map(move |c| {
                    format!(
                        "- **{}** `{}`: {}",
                        case.name,
                        c.name,
                        c.message.as_deref().unwrap_or("failed")
                    )
                });
            error.chain(failed)
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
                .filter(|c| c.status == Status::Skipped && c.known_issue.is_some())
                .map(move |c| {
                    format!(
                        "- **{}** `{}`: {}",
                        case.name,
                        c.name,
                        c.message.as_deref().unwrap_or_default()
                    )
                })
        })
        .collect();
    if !known.is_empty() {
        let _ = writeln!(out, "## Known issues\n\n{}\n", known.join("\n"));
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
