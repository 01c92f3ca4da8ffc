//! The SVG charts of a case's time line (plotters, SVG backend only): messages delivered per second, open
//! connections per peer pair and open streams per connection, each with the time line's marks drawn on top.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::kind_name;
use crate::timeline::{Mark, MarkKind, Timeline};

fn mark_colour(kind: MarkKind) -> &'static str {
    match kind {
        MarkKind::Identify => "#7b4fc9",
        MarkKind::Incident => "#e07b00",
        MarkKind::Fault => "#7b3fb5",
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

pub(super) fn charts(t: &Timeline) -> anyhow::Result<Vec<String>> {
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
    use super::*;

    #[test]
    fn step_series_hold_until_the_next_change() {
        let s = step_series("a", &[(1000, 1), (2500, 3)], 4.0);
        assert_eq!(
            s.points,
            vec![(0.0, 0), (1.0, 0), (1.0, 1), (2.5, 1), (2.5, 3), (4.0, 3)]
        );
        assert_eq!(s.peak, 3);
    }
}
