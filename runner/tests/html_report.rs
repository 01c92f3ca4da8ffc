//! index.html in a real browser: headless Chromium loads the page written by `reports::write_all` and the DOM it
//! built is checked for the charts, their marks and the failure rows; a screenshot must come out as a real image.
//! Needs `chromium` on PATH (bin/test installs Debian's) and fails without it.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use meshgate::reports;
use meshgate::results::{CaseResult, CheckResult, MatrixRef, PeerReport, RunResults, Status};
use meshgate::timeline::{Mark, MarkKind, Timeline};

const FAILURE: &str =
    "go-1 (go-libp2p v0.51.0) missed 3 of 8 messages from rust-1 (rust-libp2p 0.57.1)";

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

fn results() -> RunResults {
    let timeline = Timeline {
        start_us: 1_000_000_000,
        end_us: 1_008_000_000,
        deliveries: BTreeMap::from([
            ("rust -> go".into(), vec![0, 4, 4, 2, 0, 0, 0, 0]),
            ("go -> rust".into(), vec![0, 4, 4, 4, 4, 1, 0, 0]),
        ]),
        connections: BTreeMap::from([
            ("rust-1 -> go-1".into(), vec![(300, 1), (310, 2), (7000, 0)]),
            ("go-1 -> rust-1".into(), vec![(305, 1), (312, 2), (7000, 0)]),
        ]),
        streams: BTreeMap::from([(
            "rust-1 #1 -> go-1".into(),
            vec![(320, 2), (900, 3), (7000, 0)],
        )]),
        marks: vec![
            Mark {
                at_ms: 2100,
                kind: MarkKind::Incident,
                text: r#"go-1: {"cmd":"unsubscribe","topic":"meshgate"}"#.into(),
            },
            Mark {
                at_ms: 2600,
                kind: MarkKind::Identify,
                text: "go-1 now advertises to rust-1: -/meshsub/1.1.0".into(),
            },
            Mark {
                at_ms: 3000,
                kind: MarkKind::Failure,
                text: format!("delivery: {FAILURE}"),
            },
        ],
    };
    let properties: BTreeMap<String, String> = [
        ("implementations", "rust,go"),
        ("transport", "tcp"),
        ("security", "noise"),
        ("muxer", "yamux"),
        ("network", "pair"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let failing = CaseResult {
        name: "rust x go / tcp+noise+yamux / pair".into(),
        network: "pair".into(),
        properties,
        peers: vec![
            peer("rust-1", "rust", "rust-libp2p", ("libp2p", "0.57.1")),
            peer(
                "go-1",
                "go",
                "go-libp2p",
                ("github.com/libp2p/go-libp2p", "v0.51.0"),
            ),
        ],
        checks: vec![
            CheckResult::passed("connections", vec![]).covering("2 connections over 1 pair"),
            CheckResult::failed(
                "delivery",
                FAILURE.into(),
                vec![
                    "missed: rust-1/meshgate/5, rust-1/meshgate/6".into(),
                    "go-1 stderr: <img src=x onerror=alert(1)>".into(),
                ],
            )
            .at(1_003_000_000),
            CheckResult {
                status: Status::Known,
                message: Some("known issue rust-libp2p#6047: rust-1 opened 70 streams".into()),
                known_issue: Some("rust-libp2p#6047".into()),
                ..CheckResult::passed("streams", vec![])
            },
            CheckResult::skipped("mesh", "off in the matrix".into()),
            CheckResult::inconclusive(
                "subscriptions",
                "no peer subscribed to a topic".into(),
                vec!["0 subscriptions seen".into()],
            ),
        ],
        error: None,
        duration_ms: 8000,
        logs: "cases/000-pair".into(),
        unexercised: vec!["go-1: unsubscribe (unsupported)".into()],
        notes: vec!["rust-1 -> go-1 dialed once (deduplicated)".into()],
        stopped_early: None,
        timeline: Some(timeline),
        phases: None,
    };
    let passing = CaseResult {
        name: "rust x go / quic-v1 / pair".into(),
        checks: vec![
            CheckResult::passed("connections", vec![]),
            CheckResult::passed("delivery", vec![]),
        ],
        unexercised: vec![],
        notes: vec![],
        timeline: None,
        ..failing.clone()
    };
    RunResults {
        meshgate: "test".into(),
        matrix: MatrixRef {
            name: "browser".into(),
            file: "matrices/browser.yaml".into(),
        },
        started_us: 1_000_000_000,
        duration_ms: 20_000,
        versions: vec![],
        cases: vec![passing, failing],
    }
}

/// Runs headless Chromium on a file with the given extra arguments; its stdout. No network, no profile left behind.
/// Output goes to files: a DOM fills a pipe long before Chromium exits.
fn chromium(page: &Path, dir: &Path, args: &[&str]) -> String {
    let (stdout, stderr) = (dir.join("chromium.out"), dir.join("chromium.err"));
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(File::create(&stdout).unwrap())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .expect("chromium on PATH (bin/ensure-chromium installs it)");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "chromium failed: {}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    std::fs::read_to_string(&stdout).unwrap()
}

#[test]
fn chromium_shows_charts_marks_and_failure_rows() {
    let dir = tempfile::tempdir().unwrap();
    let results = results();
    assert_eq!(results.cases[1].checks[1].status, Status::Failed);
    reports::write_all(&results, dir.path()).unwrap();
    let page = dir.path().join(reports::html::FILE);

    let dom = chromium(&page, dir.path(), &["--dump-dom"]);
    assert!(
        dom.contains("<h1>FAILED rust x go / tcp+noise+yamux / pair [delivery]: "),
        "verdict first: {dom}"
    );
    assert_eq!(dom.matches("<svg ").count(), 3, "three charts: {dom}");
    for kind in ["failure", "incident", "identify"] {
        assert_eq!(
            dom.matches(&format!("<g class=\"mark mark-{kind}\">"))
                .count(),
            3,
            "{kind} mark on every chart"
        );
    }
    // Axis labels, ticks and legends are SVG text, left to the browser's fonts.
    assert!(dom.matches("<text ").count() > 30, "{dom}");
    assert_eq!(
        dom.matches("seconds since the case started").count(),
        3,
        "{dom}"
    );
    assert!(dom.contains("rust-1 -&gt; go-1 (max 2)"), "legend: {dom}");
    let anchor = "case-rust-x-go-tcp-noise-yamux-pair";
    assert!(
        dom.contains(&format!("<section class=\"case fail\" id=\"{anchor}\">")),
        "{dom}"
    );
    assert!(
        dom.contains(&format!("<a href=\"#{anchor}\">FAIL</a>")),
        "the FAIL cell links to its case: {dom}"
    );
    assert!(
        dom.contains(&format!("<tr class=\"failure\" id=\"{anchor}-delivery\">")),
        "failure row: {dom}"
    );
    assert!(
        dom.contains(&format!("<td>{FAILURE}</td>")),
        "failure message: {dom}"
    );
    assert!(
        dom.contains("missed: rust-1/meshgate/5, rust-1/meshgate/6"),
        "evidence: {dom}"
    );
    // Every outcome has its own class and says why; the case says what was not exercised and what the runner changed.
    assert!(
        dom.contains("<td class=\"skipped\" title=\"off in the matrix\">skipped</td>"),
        "{dom}"
    );
    assert!(
        dom.contains(&format!("<td class=\"inconclusive\" title=\"no peer subscribed to a topic\"><a href=\"#{anchor}\">inconclusive</a></td>")),
        "{dom}"
    );
    assert!(
        dom.contains(&format!("<td class=\"known\" title=\"known issue rust-libp2p#6047: rust-1 opened 70 streams\"><a href=\"#{anchor}\">known</a></td>")),
        "{dom}"
    );
    assert!(
        dom.contains(&format!(
            "<tr class=\"inconclusive\" id=\"{anchor}-subscriptions\">"
        )),
        "{dom}"
    );
    assert!(
        dom.contains("<td class=\"coverage\">2 connections over 1 pair</td>"),
        "{dom}"
    );
    assert!(
        dom.contains("<li>go-1: unsubscribe (unsupported)</li>"),
        "{dom}"
    );
    assert!(
        dom.contains("<li>rust-1 -&gt; go-1 dialed once (deduplicated)</li>"),
        "{dom}"
    );
    // Peer output is text in the page, never an element the browser made.
    assert!(
        dom.contains("go-1 stderr: &lt;img src=x onerror=alert(1)&gt;"),
        "{dom}"
    );
    assert!(!dom.contains("<img"), "{dom}");

    let png = dir.path().join("page.png");
    chromium(
        &page,
        dir.path(),
        &[
            "--window-size=1300,2400",
            &format!("--screenshot={}", png.display()),
        ],
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1300, 2400));
    // A blank page compresses to a few kB; tables, text and three charts do not.
    assert!(
        bytes.len() > 60_000,
        "suspiciously small screenshot: {} bytes",
        bytes.len()
    );
}
