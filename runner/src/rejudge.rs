//! `meshgate judge PATH`: a stored run, or one case of it, judged again from what its run kept, without running
//! anything; attempts are merged as `run --repeat` merges them, and results.json and every report are written anew.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};

use crate::judge::overrides::{apply_all, Override};
use crate::stored::{self, StoredCase, CASE_FILE, RECORD_FILE};
use crate::reports;
use crate::results::{CaseResult, RunResults, RESULTS_FILE};

/// What was judged, and where its reports went.
pub struct Judged {
    pub results: RunResults,
    pub out: PathBuf,
}

/// Judges `path` (a run's folder or a case's) again with `overrides`, and writes the results and reports into
/// `out` (default: `path`).
pub fn judge(path: &Path, overrides: &[Override], out: Option<&Path>) -> anyhow::Result<Judged> {
    let out = out.unwrap_or(path).to_owned();
    let one_case = path.join(CASE_FILE).is_file();
    if !one_case && !path.join(RESULTS_FILE).is_file() {
        if path.join(RECORD_FILE).is_file() {
            bail!(
                "{}: {RECORD_FILE} without {CASE_FILE}: {}",
                path.display(),
                OLDER
            );
        }
        bail!(
            "{}: neither a case folder ({CASE_FILE}, {RECORD_FILE}) nor a run folder ({RESULTS_FILE}, cases/): expected \
             the --out of `meshgate run` or one of its cases/ folders",
            path.display()
        );
    }
    std::fs::create_dir_all(&out)?;
    let results = match one_case {
        true => case_alone(path, overrides, &out)?,
        false => whole_run(path, overrides, &out)?,
    };
    reports::write_all(&results, &out)?;
    Ok(Judged { results, out })
}

const OLDER: &str = "written before meshgate kept cases to judge again; run the case again instead";

fn case_alone(dir: &Path, overrides: &[Override], out: &Path) -> anyhow::Result<RunResults> {
    let (case, first) = case_folder(dir, overrides, out)?;
    Ok(RunResults {
        meshgate: env!("CARGO_PKG_VERSION").into(),
        matrix: first.matrix,
        started_us: first.started_us,
        duration_ms: case.duration_ms,
        cases: vec![case],
        // A case folder does not keep what the run's version requests stood for: its results.json does.
        versions: Vec::new(),
    })
}

/// Every case of the run's results.json, in its order; a case that was never recorded (a peer that did not
/// build) keeps its result.
fn whole_run(dir: &Path, overrides: &[Override], out: &Path) -> anyhow::Result<RunResults> {
    let ran = RunResults::read(&dir.join(RESULTS_FILE))?;
    let mut cases = Vec::new();
    for case in &ran.cases {
        let logs = dir.join(&case.logs);
        if !logs.join(CASE_FILE).is_file() {
            if logs.join(RECORD_FILE).is_file() {
                bail!(
                    "{}: {RECORD_FILE} without {CASE_FILE}: {}",
                    logs.display(),
                    OLDER
                );
            }
            cases.push(case.clone());
            continue;
        }
        // With --repeat, results.json names the attempt its result came from.
        let attempt = StoredCase::read(&logs)?.attempt;
        let mut judged = case_folder(stored::case_dir(&logs, attempt), overrides, out)?.0;
        // How long the run's clean-up and judging took is the run's measurement, which judging again cannot make.
        judged.phases = case.phases.clone();
        cases.push(judged);
    }
    Ok(RunResults {
        meshgate: env!("CARGO_PKG_VERSION").into(),
        cases,
        ..ran
    })
}

/// The attempts stored in a case's folder, each judged, merged as `run --repeat` merges them; with the first
/// attempt's stored case.
fn case_folder(
    dir: &Path,
    overrides: &[Override],
    out: &Path,
) -> anyhow::Result<(CaseResult, StoredCase)> {
    let mut first = None;
    let mut attempts = Vec::new();
    for attempt_dir in stored::attempt_dirs(dir)? {
        let mut stored = StoredCase::read(&attempt_dir)?;
        let record = stored::read_record(&attempt_dir)?;
        stored.case.checks = apply_all(overrides, &stored.case.checks).map_err(|e| anyhow!(e))?;
        stored.logs = logs_from(out, &attempt_dir);
        attempts.push(crate::judge::case(&stored, &record));
        first.get_or_insert(stored);
    }
    let mut merged =
        CaseResult::merge_attempts(attempts).expect("a case folder is its first attempt");
    // Whoever reads the reports learns that the verdicts are not those of the settings the case ran with.
    merged.notes.extend(
        overrides
            .iter()
            .map(|o| format!("judged again with --set {o}")),
    );
    Ok((merged, first.expect("as many as attempts")))
}

/// `dir` as the results file in `out` names its logs: relative when inside `out`, else absolute.
fn logs_from(out: &Path, dir: &Path) -> String {
    let (Ok(out), Ok(dir)) = (out.canonicalize(), dir.canonicalize()) else {
        return dir.display().to_string();
    };
    match dir.strip_prefix(&out) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => dir.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Kit;
    use crate::events::Recorded;
    use crate::stored::FORMAT;
    use crate::results::Status;

    fn attempt(kit: &Kit, n: u32) -> StoredCase {
        StoredCase {
            attempt: n,
            logs: stored::attempt_logs("cases/000-a", n),
            ..stored::tests::stored(kit)
        }
    }

    fn store(run: &Path, s: &StoredCase, record: &[Recorded]) {
        let dir = run.join(&s.logs);
        std::fs::create_dir_all(&dir).unwrap();
        s.write(&dir).unwrap();
        stored::write_record(&dir, record).unwrap();
    }

    /// A run of two attempts of a case, go-1 receiving rust-1's message 500 us after it was published in the
    /// first and never in the second, and a case that never ran.
    fn run(dir: &Path) -> (RunResults, Vec<(StoredCase, Vec<Recorded>)>) {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let mut first: Vec<Recorded> = kit.connect(500, "rust-1", "go-1").into();
        first.extend(kit.publish(1_000, "rust-1", "rust-1/0"));
        let second = first.clone();
        first.push(kit.message(1_600, "go-1", "rust-1", "rust-1/0", 1_100));
        let attempts = vec![(attempt(&kit, 1), first), (attempt(&kit, 2), second)];
        for (s, record) in &attempts {
            store(dir, s, record);
        }
        let judged = attempts
            .iter()
            .map(|(s, r)| crate::judge::case(s, r))
            .collect();
        let mut unbuilt = crate::results::tests::case(Vec::new());
        unbuilt.name = "never ran".into();
        unbuilt.logs = "cases/001-never".into();
        unbuilt.error = Some("the go peer could not be built: no".into());
        let results = RunResults {
            cases: vec![CaseResult::merge_attempts(judged).unwrap(), unbuilt],
            ..crate::results::tests::run(Vec::new())
        };
        results.write(dir).unwrap();
        (results, attempts)
    }

    fn delivery(r: &CaseResult) -> &crate::results::CheckResult {
        r.checks.iter().find(|c| c.name == "delivery").unwrap()
    }

    #[test]
    fn a_saturated_host_is_judged_again_from_the_samples_it_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let kit = Kit::new(&["rust-1", "go-1"]);
        // go-1 misses rust-1's message while both cores are busy and tasks wait, 5 s at a stretch.
        let mut record: Vec<Recorded> = kit.publish(1_000, "rust-1", "rust-1/0").into();
        for s in 1..=5 {
            record.push(Recorded {
                at: s * 1_000_000,
                peer: crate::events::HOST.into(),
                what: crate::events::Observation::Host(crate::events::HostSample {
                    ts: s * 1_000_000,
                    interval_ms: 1000,
                    cores: 2,
                    busy_permille: 1000,
                    steal_permille: 0,
                    runnable: 6,
                    pressure_some_permille: Some(700),
                    pressure_full_permille: Some(0),
                }),
            });
        }
        let s = attempt(&kit, 1);
        store(dir.path(), &s, &record);
        let ran = crate::judge::case(&s, &record);
        RunResults { cases: vec![ran.clone()], ..crate::results::tests::run(Vec::new()) }.write(dir.path()).unwrap();
        let again = judge(dir.path(), &[], None).unwrap();
        assert_eq!(again.results.cases, vec![ran]);
        let d = delivery(&again.results.cases[0]);
        assert_eq!(d.status, Status::Inconclusive, "{d:?}");
        assert!(d.message.as_deref().unwrap().starts_with("host CPU saturated for 5 s of 5"), "{d:?}");
    }

    #[test]
    fn a_run_judged_again_unchanged_is_the_run_and_its_attempts_merge_alike() {
        let dir = tempfile::tempdir().unwrap();
        let (ran, _) = run(dir.path());
        assert!(
            delivery(&ran.cases[0]).flaky,
            "{:?}",
            delivery(&ran.cases[0])
        );
        let judged = judge(dir.path(), &[], None).unwrap();
        assert_eq!(judged.out, dir.path());
        assert_eq!(judged.results.cases, ran.cases);
        assert_eq!(
            RunResults::read(&dir.path().join(RESULTS_FILE))
                .unwrap()
                .cases,
            ran.cases
        );
        assert!(dir.path().join(reports::junit::FILE).is_file());
    }

    #[test]
    fn settings_changed_by_set_judge_every_attempt_and_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let (ran, _) = run(dir.path());
        let tight: Override = "delivery.deadline=100us".parse().unwrap();
        let out = dir.path().join("tight");
        let judged = judge(dir.path(), std::slice::from_ref(&tight), Some(&out)).unwrap();
        let d = delivery(&judged.results.cases[0]);
        assert_eq!(d.status, Status::Failed);
        assert!(!d.flaky, "both attempts fail now: {d:?}");
        assert_eq!(
            judged.results.cases[0].notes,
            ["judged again with --set delivery.deadline=100us"]
        );
        assert_eq!(
            judged.results.cases[1], ran.cases[1],
            "the case that never ran is kept"
        );
        // The logs are named from where the results now are.
        let logs = Path::new(&judged.results.cases[0].logs);
        assert!(
            logs.is_absolute() && logs.join(RECORD_FILE).is_file(),
            "{logs:?}"
        );
        assert_eq!(
            RunResults::read(&dir.path().join(RESULTS_FILE)).unwrap(),
            ran
        );

        // One attempt's folder alone, and the case's folder with all of its attempts.
        let second = dir.path().join("cases/000-a/attempt-2");
        let alone = judge(&second, &[], None).unwrap();
        assert_eq!(alone.results.cases.len(), 1);
        assert_eq!(alone.results.cases[0].logs, ".");
        assert_eq!(delivery(&alone.results.cases[0]).status, Status::Failed);
        assert!(second.join(RESULTS_FILE).is_file());
        let case = judge(&dir.path().join("cases/000-a"), &[], None).unwrap();
        assert!(delivery(&case.results.cases[0]).flaky);
    }

    #[test]
    fn what_cannot_be_judged_again_is_refused_with_why() {
        let dir = tempfile::tempdir().unwrap();
        let e = judge(dir.path(), &[], None).err().unwrap().to_string();
        assert!(
            e.contains("neither a case folder (case.json, record.jsonl) nor a run folder"),
            "{e}"
        );

        // A run from before case.json was kept.
        let (_, attempts) = run(dir.path());
        std::fs::remove_file(dir.path().join("cases/000-a").join(CASE_FILE)).unwrap();
        let e = judge(dir.path(), &[], None).err().unwrap().to_string();
        assert!(
            e.contains("record.jsonl without case.json: written before"),
            "{e}"
        );
        let e = judge(&dir.path().join("cases/000-a"), &[], None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("record.jsonl without case.json"), "{e}");

        // A later format.
        let mut later = attempts[0].0.clone();
        later.format = FORMAT + 1;
        store(dir.path(), &later, &attempts[0].1);
        let e = format!("{:#}", judge(dir.path(), &[], None).err().unwrap());
        assert!(e.contains(&format!("is of format {}", FORMAT + 1)), "{e}");
    }
}
