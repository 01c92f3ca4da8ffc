//! What a run keeps of every case it records, so that it can be judged again without running it: `case.json` (the
//! case and how running it went) beside `record.jsonl` (everything the peers said). Both carry a format version;
//! a meshgate refuses a format it does not know rather than misjudge it.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use crate::cases::Case;
use crate::events::{Micros, Recorded};
use crate::results::{MatrixRef, PeerReport};

pub const CASE_FILE: &str = "case.json";
pub const RECORD_FILE: &str = "record.jsonl";
/// The format of both files that this meshgate writes. Format 2 records hold the host's samples
/// (`Observation::Host`), which a format-1 reader cannot parse.
pub const FORMAT: u32 = 2;
/// The oldest format it still reads: a format-1 record is a format-2 record without host samples.
const OLDEST: u32 = 1;

/// `case.json`: everything judging a case needs besides its record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredCase {
    pub format: u32,
    pub matrix: MatrixRef,
    pub case: Case,
    /// 1, then 2, 3, ... with `--repeat`.
    pub attempt: u32,
    /// This attempt's folder, relative to the run's results.json.
    pub logs: String,
    pub started_us: Micros,
    pub duration_ms: u64,
    pub peers: Vec<PeerReport>,
    /// A peer said it cannot do what the case needs: every check is skipped for this reason.
    pub unsupported: Option<String>,
    /// Why the case could not be carried out.
    pub error: Option<String>,
    /// The case hit `--case-timeout` (this one): it errored, and what was recorded until then is judged.
    #[serde(with = "humantime_serde")]
    pub timed_out: Option<Duration>,
    /// Why the script stopped before its end (`--fail-fast`).
    pub stopped_early: Option<String>,
    /// What the runner changed to run the case.
    pub notes: Vec<String>,
    /// Failures the checks announced while the case ran, with when: what `--fail-fast` acts on, and what
    /// `meshgate bench` measures the detection latency by. Not used in judging.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live_failures: Vec<LiveFailure>,
}

/// A check's failure as announced while the case ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveFailure {
    /// When the runner announced it (its own clock, like the record's `at`).
    pub at: Micros,
    /// `[check] message`, as announced.
    pub line: String,
}

/// The first line of record.jsonl; the observations follow, one a line.
#[derive(Serialize, Deserialize)]
struct RecordHeader {
    format: u32,
}

impl StoredCase {
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(CASE_FILE);
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(&path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(CASE_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: expected a meshgate case.json", path.display()))?;
        known_format(&path, value.get("format"))?;
        serde_json::from_value(value)
            .with_context(|| format!("{}: expected a meshgate case.json", path.display()))
    }
}

/// Refuses what this meshgate cannot read, saying which format it is and which one would do.
fn known_format(path: &Path, format: Option<&serde_json::Value>) -> anyhow::Result<()> {
    match format.and_then(serde_json::Value::as_u64) {
        Some(f) if (u64::from(OLDEST)..=u64::from(FORMAT)).contains(&f) => Ok(()),
        Some(f) => bail!(
            "{} is of format {f}; this meshgate ({}) reads formats {OLDEST} to {FORMAT}: judge it with the meshgate that wrote it",
            path.display(),
            env!("CARGO_PKG_VERSION")
        ),
        None => bail!(
            "{} names no format (written before meshgate kept cases to judge again?): expected format {FORMAT}",
            path.display()
        ),
    }
}

pub fn write_record(dir: &Path, record: &[Recorded]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(RECORD_FILE))?);
    serde_json::to_writer(&mut f, &RecordHeader { format: FORMAT })?;
    f.write_all(b"\n")?;
    for r in record {
        serde_json::to_writer(&mut f, r)?;
        f.write_all(b"\n")?;
    }
    f.flush()
}

pub fn read_record(dir: &Path) -> anyhow::Result<Vec<Recorded>> {
    let path = dir.join(RECORD_FILE);
    let file =
        std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header = lines.next().transpose()?.unwrap_or_default();
    let header: Option<serde_json::Value> = serde_json::from_str(&header).ok();
    known_format(&path, header.as_ref().and_then(|h| h.get("format")))?;
    lines
        .enumerate()
        .map(|(i, line)| {
            let line = line?;
            serde_json::from_str(&line).with_context(|| {
                format!(
                    "{}:{}: expected a recorded observation",
                    path.display(),
                    i + 2
                )
            })
        })
        .collect()
}

/// Attempt `n`'s folder (relative to the run's results.json), from its case's: the case's own for the first.
pub fn attempt_logs(case_logs: &str, attempt: u32) -> String {
    match attempt {
        0 | 1 => case_logs.to_owned(),
        n => format!("{case_logs}/attempt-{n}"),
    }
}

/// The case folder that attempt `n`'s folder is in: the inverse of [`attempt_logs`].
pub fn case_dir(attempt_dir: &Path, attempt: u32) -> &Path {
    match attempt {
        0 | 1 => attempt_dir,
        _ => attempt_dir.parent().unwrap_or(attempt_dir),
    }
}

/// The folder of every stored attempt of the case in `case_dir`, first to last.
pub fn attempt_dirs(case_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut later: Vec<(u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(case_dir)
        .with_context(|| format!("cannot read {}", case_dir.display()))?
    {
        let path = entry?.path();
        let n = path
            .file_name()
            .and_then(|n| n.to_str()?.strip_prefix("attempt-")?.parse().ok());
        if let Some(n) = n.filter(|_| path.join(CASE_FILE).is_file()) {
            later.push((n, path));
        }
    }
    later.sort();
    Ok(std::iter::once(case_dir.to_owned())
        .chain(later.into_iter().map(|(_, p)| p))
        .collect())
}

/// A file-name-safe form of a name (matrix names are free text): case folders, probe folders, process names.
pub fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
            s.push(c);
        } else if !s.ends_with('_') {
            s.push('_');
        }
    }
    s.trim_matches('_').to_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn slugs() {
        assert_eq!(
            super::slug("rust x go / tcp+noise+yamux / mixed-4"),
            "rust_x_go_tcp_noise_yamux_mixed-4"
        );
    }

    use super::*;
    use crate::testkit::Kit;

    /// Attempt 1 of the kit's case, which ran to its end.
    pub fn stored(kit: &Kit) -> StoredCase {
        StoredCase {
            format: FORMAT,
            matrix: MatrixRef {
                name: "m".into(),
                file: "m.yaml".into(),
            },
            case: kit.case.clone(),
            attempt: 1,
            logs: "cases/000-a".into(),
            started_us: 1,
            duration_ms: 10,
            peers: kit.peers.clone(),
            unsupported: None,
            error: None,
            timed_out: None,
            stopped_early: None,
            notes: Vec::new(),
            live_failures: Vec::new(),
        }
    }

    #[test]
    fn a_case_and_its_record_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        // A memory limit no unit divides, which a rounded rendering would change.
        kit.case.limits.memory = crate::matrix::Size(100_000_001);
        kit.case.checks =
            serde_saphyr::from_str("{delivery: {deadline: 2s}, streams: off}").unwrap();
        let s = StoredCase {
            timed_out: Some(Duration::from_secs(300)),
            notes: vec!["a note".into()],
            ..stored(&kit)
        };
        s.write(dir.path()).unwrap();
        let back = StoredCase::read(dir.path()).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&s).unwrap()
        );
        assert_eq!(back.case.limits, kit.case.limits);
        assert_eq!(back.case.checks, kit.case.checks);
        assert_eq!(back.case.warmup, kit.case.warmup);

        let mut record: Vec<Recorded> = kit.connect(1_000, "rust-1", "go-1").into();
        record.extend(kit.publish(2_000, "rust-1", "rust-1/0"));
        record.push(kit.exited(3_000, "go-1", Some(1), false));
        write_record(dir.path(), &record).unwrap();
        let text = std::fs::read_to_string(dir.path().join(RECORD_FILE)).unwrap();
        assert_eq!(text.lines().next(), Some(r#"{"format":2}"#));
        assert_eq!(read_record(dir.path()).unwrap(), record);
        // A format-1 record (no host samples) is still read.
        std::fs::write(dir.path().join(RECORD_FILE), text.replacen(r#"{"format":2}"#, r#"{"format":1}"#, 1)).unwrap();
        assert_eq!(read_record(dir.path()).unwrap(), record);
    }

    #[test]
    fn formats_it_does_not_know_are_refused_naming_the_one_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut s = stored(&kit);
        s.format = 3;
        s.write(dir.path()).unwrap();
        let e = format!("{:#}", StoredCase::read(dir.path()).unwrap_err());
        assert!(
            e.contains("case.json is of format 3;") && e.contains("reads formats 1 to 2"),
            "{e}"
        );

        std::fs::write(dir.path().join(CASE_FILE), r#"{"case": {}}"#).unwrap();
        let e = format!("{:#}", StoredCase::read(dir.path()).unwrap_err());
        assert!(e.contains("case.json names no format"), "{e}");

        // A record from before records had a header, and one from a later meshgate.
        let line = serde_json::to_string(&kit.exited(3_000, "go-1", Some(1), false)).unwrap();
        std::fs::write(dir.path().join(RECORD_FILE), format!("{line}\n")).unwrap();
        let e = format!("{:#}", read_record(dir.path()).unwrap_err());
        assert!(e.contains("record.jsonl names no format"), "{e}");
        std::fs::write(
            dir.path().join(RECORD_FILE),
            format!("{{\"format\":9}}\n{line}\n"),
        )
        .unwrap();
        let e = format!("{:#}", read_record(dir.path()).unwrap_err());
        assert!(e.contains("record.jsonl is of format 9;"), "{e}");
        std::fs::write(dir.path().join(RECORD_FILE), "").unwrap();
        assert!(
            read_record(dir.path()).is_err(),
            "an empty file is no record"
        );
    }

    #[test]
    fn attempts_are_found_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for n in [10, 2, 3] {
            let sub = dir.path().join(attempt_logs("x", n));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join(CASE_FILE), "{}").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("x/attempt-4")).unwrap();
        let found = attempt_dirs(&dir.path().join("x")).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            ["x", "x/attempt-2", "x/attempt-3", "x/attempt-10"].map(PathBuf::from),
            "an attempt folder without case.json is not an attempt"
        );
        assert_eq!(attempt_logs("cases/000-x", 1), "cases/000-x");
        assert_eq!(case_dir(&found[2], 3), dir.path().join("x"));
        assert_eq!(case_dir(&found[0], 1), dir.path().join("x"));
    }
}
