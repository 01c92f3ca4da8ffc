//! bench.json (every figure) and bench.md (the tables docs/benchmarks.md quotes), rendered from [`Bench`] alone.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::figures::Delivered;
use super::Bench;

pub const BENCH_FILE: &str = "bench.json";
pub const TABLE_FILE: &str = "bench.md";

pub fn write(bench: &Bench, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let json = serde_json::to_string_pretty(bench)? + "\n";
    for (file, text) in [(BENCH_FILE, json), (TABLE_FILE, render(bench))] {
        let path = out.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// A figure with `digits` decimals, or `-` where there is none.
fn num(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "-".into(),
    }
}

fn secs(ms: Option<f64>) -> String {
    num(ms.map(|m| m / 1000.0), 1)
}

fn delivered(d: Option<&Delivered>) -> String {
    match d {
        Some(d) => format!("{} of {} ({}%)", d.within, d.expected, num(d.ratio().map(|r| r * 100.0), 1)),
        None => "-".into(),
    }
}

fn pair(p: Option<(f64, f64)>) -> String {
    p.map_or("-".into(), |(a, b)| format!("{a:.1} / {b:.1}"))
}

pub fn render(b: &Bench) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# meshgate bench\n\nmeshgate {}, started {}, {} cores, {} s in all{}; medians over {} repeat(s) of the small parts.\n",
        b.meshgate,
        b.started,
        b.cores,
        num(Some(b.duration_s), 0),
        if b.quick { " (--quick: small sizes)" } else { "" },
        b.repeat
    );
    if !b.overhead.is_empty() {
        md.push_str("## Per-case overhead against bare containers\n\n");
        md.push_str("| peers | setup ms | bare up ms | setup ratio | stop+remove ms (stop / remove) | bare down ms | teardown ratio | overall ratio | last step to removed ms |\n");
        md.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for o in &b.overhead {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} ({} / {}) | {} | {} | {} | {} |",
                o.peers,
                num(o.setup_ms, 0),
                num(o.bare_up_ms, 0),
                num(o.setup_ratio, 2),
                num(o.stop_remove_ms, 0),
                num(o.stop_ms, 0),
                num(o.remove_ms, 0),
                num(o.bare_down_ms, 0),
                num(o.teardown_ratio, 2),
                num(o.ratio, 2),
                num(o.teardown_ms, 0),
            );
        }
        if let Some(image) = b.overhead.iter().find_map(|o| o.bare_image.as_ref()) {
            let _ = writeln!(md, "\nBare containers: `{image}` started without a configuration (it exits at once, status 2).");
        }
        md.push('\n');
    }
    if let Some(v) = &b.verdict {
        let _ = writeln!(md, "## Time to verdict: matrices/smoke.yaml, warm cache\n\n{}\n", v.headline);
        md.push_str("| phase | median ms | what |\n| --- | --- | --- |\n");
        for (name, what, ms) in &v.phases {
            let _ = writeln!(md, "| {name} | {} | {what} |", num(*ms, 0));
        }
        let _ = writeln!(md, "| **total** | **{}** | over {} run(s) |\n", num(v.total_ms, 0), v.repeats);
    }
    if let Some(s) = &b.scale {
        let _ = writeln!(
            md,
            "## Scale: {} msg/s network-wide, 1 KiB messages, one topic, half rust half go, random degree 6\n",
            num(Some(s.rate), 0)
        );
        md.push_str("| peers | verdict | delivered within 10 s | latency p50 / p99 ms | start s | connected s | meshes s | rust peer MiB med / max | go peer MiB med / max | runner peak MiB | runner CPU % | host busy % | events/s | lag p50 / p99 ms | lag p99 ms, whole case | wall s |\n");
        md.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for st in &s.steps {
            let d = st.delivered.as_ref();
            let verdict: String = st.verdict.chars().take(80).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} |",
                st.peers,
                verdict.replace('|', "/"),
                delivered(d),
                num(d.and_then(|d| d.p50_ms), 0),
                num(d.and_then(|d| d.p99_ms), 0),
                secs(st.start_ms),
                secs(st.connect_ms),
                secs(st.mesh_ms),
                pair(st.rust_peer_mib),
                pair(st.go_peer_mib),
                num(st.spent.runner_peak_mib, 0),
                num(Some(st.spent.runner_cpu_share * 100.0), 1),
                num(st.spent.host_busy.map(|h| h * 100.0), 0),
                num(st.events_per_s, 0),
                num(st.lag_p50_ms, 1),
                num(st.lag_p99_ms, 1),
                num(st.lag_p99_all_ms, 0),
                num(Some(st.spent.wall_s), 0),
            );
        }
        match s.broke_at {
            Some(n) => {
                let _ = writeln!(md, "\nBroke at {n} peers (errored, or delivered less than 99.9%).");
            }
            None => md.push_str("\nNo step broke.\n"),
        }
        if let Some(c) = &s.curve {
            let _ = writeln!(
                md,
                "\n### Load curve at {} peers\n\n| msg/s | delivered within 10 s | latency p50 / p99 ms | lag p99 ms | degraded |\n| --- | --- | --- | --- | --- |",
                c.peers
            );
            for st in &c.stages {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} / {} | {} | {} |",
                    num(Some(st.rate), 0),
                    delivered(Some(&st.delivered)),
                    num(st.delivered.p50_ms, 0),
                    num(st.delivered.p99_ms, 0),
                    num(st.lag_p99_ms, 1),
                    if st.degraded { "yes" } else { "no" }
                );
            }
            let _ = writeln!(
                md,
                "\nCapacity: {} msg/s network-wide (the highest rate delivered in full without degraded latency); runner CPU {}%, peak {} MiB, host busy {}% over the case.",
                num(c.capacity, 0),
                num(Some(c.spent.runner_cpu_share * 100.0), 1),
                num(c.spent.runner_peak_mib, 0),
                num(c.spent.host_busy.map(|h| h * 100.0), 0),
            );
        }
        md.push('\n');
    }
    if let Some(d) = &b.detection {
        md.push_str("## Detection latency: identify push without /meshsub/1.1.0 to `no-protocol-downgrade` announced\n\n");
        md.push_str("| median ms | event to arrival ms | arrival to announcement ms | worst ms | repeats |\n| --- | --- | --- | --- | --- |\n");
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |\n",
            num(d.latency_ms, 0),
            num(d.arrival_ms, 1),
            num(d.announce_ms, 0),
            num(d.worst_ms, 0),
            d.repeats
        );
    }
    if !b.problems.is_empty() {
        md.push_str("## Problems\n\n");
        for p in &b.problems {
            let line: String = p.chars().take(400).collect();
            let _ = writeln!(md, "- {line}");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_figures_show_as_a_dash_and_a_table_has_its_rows() {
        assert_eq!(num(None, 1), "-");
        assert_eq!(num(Some(f64::NAN), 1), "-");
        assert_eq!(num(Some(1.26), 1), "1.3");
        let b = Bench {
            meshgate: "0.1.0".into(),
            started: "2026-12-03T00:00:00Z".into(),
            duration_s: 61.0,
            quick: true,
            repeat: 1,
            cores: 2,
            overhead: vec![],
            verdict: None,
            scale: None,
            detection: Some(super::super::detection::Detection {
                repeats: 1,
                latency_ms: Some(412.0),
                arrival_ms: Some(1.5),
                announce_ms: Some(410.0),
                worst_ms: Some(412.0),
            }),
            problems: vec!["scale at 8 peers: it broke".into()],
        };
        let md = render(&b);
        assert!(md.contains("| 412 | 1.5 | 410 | 412 | 1 |"), "{md}");
        assert!(md.contains("- scale at 8 peers: it broke"), "{md}");
        assert!(!md.contains("## Per-case overhead"), "{md}");
    }
}
