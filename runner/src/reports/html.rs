//! `index.html`: the run on one self-contained page (inline CSS and SVG, nothing fetched), so it can be archived as a
//! CI artifact and opened anywhere. The verdict, the matrix as a table of cases x checks (pass, fail, known, skipped,
//! inconclusive, error: each its own class and colour), then per case what each check judged, its failures,
//! inconclusive checks and known issues with evidence, skips, steps not exercised, the runner's notes, its peers and
//! charts of its time line, with the marked moments on every chart.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use askama::Template;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::results::{CaseResult, CaseStatus, CheckResult, Outcome, RunResults, Status};
use crate::timeline::{Mark, MarkKind, Timeline};

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
        MarkKind::Exit => "exit",
        MarkKind::Failure => "failure",
    }
}

fn mark_colour(kind: MarkKind) -> &'static str {
    match kind {
        MarkKind::Identify => "#7b4fc9",
        MarkKind::Incident => "#e07b00",
        MarkKind::Exit => "#222222",
        MarkKind::Failure => "#d62728",
    }
}

// Series colours, dark ones first; none is close to a mark's colour, so lines and marks do not blend.
const PALETTE: [RGBColor; 16] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x39, 0x3b, 0x79),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0x63, 0x79, 0x39),
    RGBColor(0x6b, 0xae, 0xd6),
    RGBColor(0x98, 0xdf, 0x8a),
    RGBColor(0xc4, 0x9c, 0x94),
    RGBColor(0xf7, 0xb6, 0xd2),
    RGBColor(0x9e, 0xda, 0xe5),
    RGBColor(0xdb, 0xdb, 0x8d),
    RGBColor(0xae, 0xc7, 0xe8),
];

const WIDTH: u32 = 900;
const PLOT_HEIGHT: u32 = 280;
const LEGEND_ROW: u32 = 20;
const LEGEND_COLUMNS: usize = 3;

struct Series {
    label: String,
    points: Vec<(f64, u32)>,
    peak: u32,
}

fn charts(t: &Timeline) -> anyhow::Result<Vec<String>> {
    let span = ((t.end_us - t.start_us).max(0) as f64 / 1e6).max(1.0);
    let deliveries = t
        .deliveries
        .iter()
        .map(|(k, per_second)| Series {
            label: k.clone(),
            // Each count is the second's total, drawn at the middle of its second.
            points: per_second
                .iter()
                .enumerate()
                .map(|(i, n)| (i as f64 + 0.5, *n))
                .collect(),
            peak: per_second.iter().copied().max().unwrap_or_default(),
        })
        .collect();
    let steps = |series: &std::collections::BTreeMap<String, Vec<(u64, u32)>>| {
        series
            .iter()
            .map(|(k, samples)| step_series(k, samples, span))
            .collect::<Vec<_>>()
    };
    Ok(vec![
        chart(
            "Messages delivered per second, publisher -> subscriber implementation",
            "messages / s",
            deliveries,
            &t.marks,
            span,
        )?,
        chart(
            "Open connections per peer pair",
            "connections",
            steps(&t.connections),
            &t.marks,
            span,
        )?,
        chart(
            "Open streams per connection",
            "streams",
            steps(&t.streams),
            &t.marks,
            span,
        )?,
    ])
}

/// A count that holds until its next change, from zero before the first sample to the end of the case.
fn step_series(label: &str, samples: &[(u64, u32)], span: f64) -> Series {
    let mut points = vec![(0.0, 0)];
    let mut last = 0;
    for &(ms, n) in samples {
        let x = ms as f64 / 1000.0;
        points.push((x, last));
        points.push((x, n));
        last = n;
    }
    points.push((span, last));
    Series {
        label: label.to_owned(),
        points,
        peak: samples.iter().map(|s| s.1).max().unwrap_or_default(),
    }
}

/// Most series a chart draws; past that, lines are indistinguishable, so only the highest peaks are kept.
const MAX_SERIES: usize = PALETTE.len();

fn chart(
    title: &str,
    y_desc: &str,
    mut series: Vec<Series>,
    marks: &[Mark],
    span: f64,
) -> anyhow::Result<String> {
    let total = series.len();
    if total > MAX_SERIES {
        series.sort_by(|a, b| b.peak.cmp(&a.peak).then_with(|| a.label.cmp(&b.label)));
        series.truncate(MAX_SERIES);
        series.sort_by(|a, b| a.label.cmp(&b.label));
    }
    let mut legend: Vec<(String, Option<RGBColor>)> = series
        .iter()
        .zip(PALETTE.iter().cycle())
        .map(|(s, c)| (format!("{} (max {})", s.label, s.peak), Some(*c)))
        .collect();
    if total > series.len() {
        legend.push((
            format!("+{} more with lower peaks, not drawn", total - series.len()),
            None,
        ));
    }
    if legend.is_empty() {
        legend.push(("no data".into(), None));
    }
    let legend_rows = legend.len().div_ceil(LEGEND_COLUMNS) as u32;
    let height = PLOT_HEIGHT + legend_rows * LEGEND_ROW + 8;
    let y_max = series.iter().map(|s| s.peak).max().unwrap_or_default();
    let y_top = f64::from((y_max + y_max / 10 + 1).max(2));

    let mut svg = String::new();
    let mut positions = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot, legend_area) = root.split_vertically(PLOT_HEIGHT);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 20))
            .margin(8)
            .margin_right(20)
            .x_label_area_size(38)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..span, 0.0..y_top)?;
        let whole = |y: &f64| format!("{y:.0}");
        chart
            .configure_mesh()
            .x_desc("seconds since the case started")
            .y_desc(y_desc)
            // Counts are whole: one label per unit when few, so no label repeats after rounding.
            .y_labels((y_top as usize + 1).min(11))
            .y_label_formatter(&whole)
            .light_line_style(RGBColor(0xf0, 0xf0, 0xf0))
            .bold_line_style(RGBColor(0xdd, 0xdd, 0xdd))
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
        // Pairs often have identical counts, and the last line drawn would hide the others: each series sits up to
        // 2 px above the previous one (a band of 16 px at most), so equal lines show as a band of their colours.
        let px = (16.0 / series.len().saturating_sub(1).max(1) as f64).min(2.0);
        let lift = px * y_top / f64::from(chart.plotting_area().dim_in_pixel().1.max(1));
        for (i, (s, colour)) in series
            .iter()
            .zip(PALETTE.iter().copied().cycle())
            .enumerate()
        {
            let up = lift * i as f64;
            chart.draw_series(LineSeries::new(
                s.points.iter().map(|&(x, y)| (x, f64::from(y) + up)),
                colour.stroke_width(2),
            ))?;
        }
        for m in marks {
            let x = (m.at_ms as f64 / 1000.0).min(span);
            let ((px, top), (_, bottom)) = (
                chart.backend_coord(&(x, y_top)),
                chart.backend_coord(&(x, 0.0)),
            );
            positions.push((px, top, bottom));
        }
        draw_legend(&legend_area, &legend)?;
        root.present()?;
    }
    Ok(with_marks(svg, marks, &positions))
}

fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    legend: &[(String, Option<RGBColor>)],
) -> anyhow::Result<()> {
    let column = (WIDTH as usize - 60) / LEGEND_COLUMNS;
    let style = ("sans-serif", 15).into_font().color(&BLACK);
    for (i, (label, colour)) in legend.iter().enumerate() {
        let x = 60 + (i % LEGEND_COLUMNS * column) as i32;
        let y = 6 + (i / LEGEND_COLUMNS) as i32 * LEGEND_ROW as i32;
        if let Some(c) = colour {
            area.draw(&PathElement::new(
                vec![(x, y + 7), (x + 22, y + 7)],
                c.stroke_width(3),
            ))?;
        }
        area.draw(&Text::new(label.clone(), (x + 28, y), style.clone()))?;
    }
    Ok(())
}

/// Plotters cannot attach a tooltip, so the marks are SVG of our own: a dashed line with its number on top, and a
/// wide transparent line under a <title> so hovering anywhere near the line shows the text.
/// `positions`: per mark, its x and the y of the plot's top and bottom, in pixels.
fn with_marks(mut svg: String, marks: &[Mark], positions: &[(i32, i32, i32)]) -> String {
    let mut out = String::from("<g class=\"marks\">\n");
    // Numbers of marks close together go one row lower each, so they stay readable.
    let (mut last_x, mut row) = (i32::MIN / 2, 0);
    for (i, (m, (x, top, bottom))) in marks.iter().zip(positions).enumerate() {
        row = if x - last_x < 16 { (row + 1) % 8 } else { 0 };
        last_x = *x;
        let colour = mark_colour(m.kind);
        let kind = kind_name(m.kind);
        out.push_str(&format!(
            "<g class=\"mark mark-{kind}\"><title>{} at {:.1} s, {kind}: {}</title>\
             <line x1=\"{x}\" y1=\"{top}\" x2=\"{x}\" y2=\"{bottom}\" stroke=\"{colour}\" stroke-width=\"2\" stroke-dasharray=\"5,3\"/>\
             <line x1=\"{x}\" y1=\"{top}\" x2=\"{x}\" y2=\"{bottom}\" stroke=\"transparent\" stroke-width=\"10\"/>\
             <text x=\"{}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"12\" font-weight=\"bold\" fill=\"{colour}\">{}</text></g>\n",
            i + 1,
            m.at_ms as f64 / 1000.0,
            escape(&m.text),
            x + 3,
            top + 12 + row * 13,
            i + 1,
        ));
    }
    out.push_str("</g>\n");
    match svg.rfind("</svg>") {
        Some(end) => svg.insert_str(end, &out),
        None => svg.push_str(&out),
    }
    svg
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::results::{Attempt, MatrixRef, PeerReport};

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
    fn step_series_hold_until_the_next_change() {
        let s = step_series("a", &[(1000, 1), (2500, 3)], 4.0);
        assert_eq!(
            s.points,
            vec![(0.0, 0), (1.0, 0), (1.0, 1), (2.5, 1), (2.5, 3), (4.0, 3)]
        );
        assert_eq!(s.peak, 3);
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
