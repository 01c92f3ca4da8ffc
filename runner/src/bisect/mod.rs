//! `meshgate bisect`: the first release of a library where a case goes bad, found by binary search over the
//! releases between a good and a bad one (from the registry, as `latest` is resolved), or, when the implementation
//! builds from a local checkout (`path:`), the first bad commit of its git history (`commits`). Each step runs the
//! case at one release or commit like `meshgate run --repeat N` would: a step that fails in any attempt is bad, one
//! that passes is good, one that cannot be built or judged (errored, inconclusive, skipped) is skipped, as
//! `git bisect skip` does. Known issues of the matrix are set aside: a step is judged on what its checks found.
//! `good` may be newer than `bad`: the search then names the last bad release before the fix, and the first good
//! one after it.

mod commits;

use std::path::PathBuf;

use semver::Version;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cases;
use crate::matrix::resolve::{releases_of, written, GO_LIBP2P, LIBP2P_CRATE};
use crate::matrix::{Axis, Language, Matrix, VersionValue};
use crate::releases::{parse_version, Registries};
use crate::results::{CaseStatus, CouldNotRun};
use crate::run::{run_cases_of, RunOptions};

pub struct BisectOptions {
    pub run: RunOptions,
    /// Text in the name of the one case to run (the implementation's version left out of it).
    pub case: String,
    /// The implementation of the matrix whose version varies.
    pub implementation: String,
    pub good: String,
    pub bad: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Good,
    Bad,
    Skip,
}

/// One step: the release run and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The release, or the commit's abbreviated hash.
    pub version: String,
    /// A commit's subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub verdict: Verdict,
    /// The case's status and its first failure or reason, one line.
    pub why: String,
    /// The step's run folder (results.json, reports, logs).
    pub out: String,
}

/// What the search steps over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Over {
    Releases,
    /// Of the local checkout the implementation builds from.
    Commits,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bisected {
    pub over: Over,
    pub implementation: String,
    pub case: String,
    pub good: String,
    pub bad: String,
    /// The releases (or commits' abbreviated hashes) from good to bad, both included.
    pub releases: Vec<String>,
    /// With `over: commits`, the commits of `releases` with their subjects.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commits: Vec<commits::Commit>,
    pub steps: Vec<Step>,
    /// The first bad release (from good toward bad), when the search could tell.
    pub first_bad: Option<String>,
    /// The last good release before it.
    pub last_good: Option<String>,
    /// Releases between those two that could not be judged: the change is in one of them or `first_bad`.
    pub undecided: Vec<String>,
}

impl Bisected {
    /// A release, or a commit with its subject.
    fn named(&self, version: &str) -> String {
        match self.commits.iter().find(|c| c.short() == version) {
            Some(c) => format!("{} \"{}\"", c.short(), c.subject),
            None => version.to_owned(),
        }
    }

    pub fn headline(&self) -> String {
        let what = match self.over {
            Over::Releases => "release",
            Over::Commits => "commit",
        };
        match (&self.first_bad, &self.last_good) {
            (Some(bad), Some(good)) if self.undecided.is_empty() => format!(
                "first bad {what} from {} toward {}: {} (the last good: {})",
                self.good,
                self.bad,
                self.named(bad),
                self.named(good)
            ),
            (Some(bad), Some(good)) => format!(
                "the change is in one of {} or {bad} (after the last good {good}); those could not be judged",
                self.undecided.join(", ")
            ),
            _ => format!("no {what} could be named"),
        }
    }

    /// `bisect.md`: every step and the conclusion.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# bisect {} `{}`: {} (good) .. {} (bad)\n\n{}\n\n| step | {} | verdict | why |\n| --- | --- | --- | --- |\n",
            self.implementation,
            self.case,
            self.good,
            self.bad,
            self.headline(),
            match self.over {
                Over::Releases => "release",
                Over::Commits => "commit",
            }
        );
        for (i, step) in self.steps.iter().enumerate() {
            let v = match step.verdict {
                Verdict::Good => "good",
                Verdict::Bad => "bad",
                Verdict::Skip => "skip",
            };
            let what = self.named(&step.version).replace('|', "\\|");
            s.push_str(&format!("| {} | {what} | {v} | {} |\n", i + 1, step.why.replace('|', "\\|")));
        }
        s
    }
}

/// The index to try next between `lo` (good) and `hi` (bad), none of those skipped: the one nearest the middle.
pub fn next_step(lo: usize, hi: usize, skipped: &[usize]) -> Option<usize> {
    let mid = (lo + hi) / 2;
    (lo + 1..hi).filter(|i| !skipped.contains(i)).min_by_key(|i| i.abs_diff(mid))
}

/// One point of the search, and how the implementation is built at it.
enum Candidate {
    /// The version as a matrix writes it (`=0.55.0`, `v0.41.1`).
    Release(String),
    Commit(commits::Commit),
}

impl Candidate {
    /// How steps, folders and reports name it.
    fn label(&self) -> String {
        match self {
            Candidate::Release(v) => v.trim_start_matches('=').to_owned(),
            Candidate::Commit(c) => c.short().to_owned(),
        }
    }
}

/// Where the commits' trees are unpacked, one folder per commit, kept from one bisection to the next.
fn trees() -> PathBuf {
    crate::cache::cache_dir().join("checkouts")
}

pub async fn bisect(opts: &BisectOptions, run_id: &str, cancel: CancellationToken) -> Result<Bisected, CouldNotRun> {
    let fail = |m: String| CouldNotRun(anyhow::anyhow!(m));
    let path = &opts.run.matrix;
    let registries = Registries::from_env();
    let mut matrix = Matrix::load(path).map_err(|e| CouldNotRun(e.into()))?;
    let imp = matrix
        .implementation(&opts.implementation)
        .ok_or_else(|| fail(format!("{} has no implementation `{}`", path.display(), opts.implementation)))?;
    let (language, checkout) = (imp.language, imp.path.clone());
    let repository = match &checkout {
        Some(dir) => Some(commits::Repository::of(dir).ok_or_else(|| {
            fail(format!(
                "`{}` builds from {}, which is not in a git repository: only a git checkout's commits can be bisected",
                opts.implementation,
                dir.display()
            ))
        })?),
        None => None,
    };
    let candidates: Vec<Candidate> = match &repository {
        Some(repo) => repo.between(&opts.good, &opts.bad).map_err(fail)?.into_iter().map(Candidate::Commit).collect(),
        None => releases(&registries, language, &opts.good, &opts.bad, &opts.implementation).map_err(fail)?,
    };
    // Judged on what the checks find: no known issue turns a failure into a pass of the matrix.
    matrix.known_issues.clear();

    let mut result = Bisected {
        over: if repository.is_some() { Over::Commits } else { Over::Releases },
        implementation: opts.implementation.clone(),
        case: opts.case.clone(),
        good: opts.good.clone(),
        bad: opts.bad.clone(),
        releases: candidates.iter().map(Candidate::label).collect(),
        commits: candidates
            .iter()
            .filter_map(|c| match c {
                Candidate::Commit(c) => Some(c.clone()),
                Candidate::Release(_) => None,
            })
            .collect(),
        steps: Vec::new(),
        first_bad: None,
        last_good: None,
        undecided: Vec::new(),
    };
    let (mut lo, mut hi, mut skipped) = (0, candidates.len() - 1, Vec::new());
    while let Some(i) = next_step(lo, hi, &skipped) {
        if cancel.is_cancelled() {
            return Err(fail("interrupted".into()));
        }
        let label = candidates[i].label();
        for imp in &mut matrix.implementations {
            if imp.value.name != opts.implementation {
                continue;
            }
            match &candidates[i] {
                Candidate::Release(version) => {
                    imp.value.version = Some(Axis(vec![VersionValue::Exact(version.clone())]));
                }
                Candidate::Commit(commit) => {
                    let repo = repository.as_ref().expect("commits come from a repository");
                    imp.value.path = Some(repo.tree_at(commit, &trees()).map_err(fail)?);
                }
            }
        }
        // The companions of this release (rust: its libp2p-stream).
        matrix.resolve(path, &registries).map_err(|e| CouldNotRun(e.into()))?;
        let chosen: Vec<cases::Case> = cases::expand(&matrix).into_iter().filter(|c| c.name.contains(&opts.case)).collect();
        if chosen.len() != 1 {
            let names: Vec<&str> = chosen.iter().map(|c| c.name.as_str()).collect();
            return Err(fail(format!(
                "--case {:?} must name exactly one case of {} at {label}; it names {}: {names:?}",
                opts.case,
                path.display(),
                chosen.len()
            )));
        }
        let out = opts.run.out.join(format!("step-{}-{label}", result.steps.len() + 1));
        let step_opts = RunOptions { out: out.clone(), filter: None, ..opts.run.clone() };
        let subject = match &candidates[i] {
            Candidate::Commit(c) => Some(c.subject.clone()),
            Candidate::Release(_) => None,
        };
        eprintln!(
            "meshgate: bisect step {}: {} at {label}{}",
            result.steps.len() + 1,
            chosen[0].name,
            subject.as_ref().map(|s| format!(" ({s})")).unwrap_or_default()
        );
        let step = match run_cases_of(&step_opts, &format!("{run_id}-{}", result.steps.len() + 1), cancel.clone(), &matrix, chosen).await {
            Ok(r) => {
                let case = &r.cases[0];
                let verdict = match case.status() {
                    CaseStatus::Passed => Verdict::Good,
                    CaseStatus::Failed | CaseStatus::Known => Verdict::Bad,
                    _ => Verdict::Skip,
                };
                Step { version: label.clone(), subject, verdict, why: r.headline(), out: out.display().to_string() }
            }
            Err(e) if !cancel.is_cancelled() => Step {
                version: label.clone(),
                subject,
                verdict: Verdict::Skip,
                why: format!("could not run: {:#}", e.0),
                out: out.display().to_string(),
            },
            Err(e) => return Err(e),
        };
        eprintln!("meshgate: bisect step {}: {label} is {:?}: {}", result.steps.len() + 1, step.verdict, step.why);
        match step.verdict {
            Verdict::Good => lo = i,
            Verdict::Bad => hi = i,
            Verdict::Skip => skipped.push(i),
        }
        result.steps.push(step);
    }
    result.first_bad = Some(result.releases[hi].clone());
    result.last_good = Some(result.releases[lo].clone());
    result.undecided = (lo + 1..hi).map(|i| result.releases[i].clone()).collect();
    std::fs::create_dir_all(&opts.run.out).map_err(|e| fail(format!("cannot create {}: {e}", opts.run.out.display())))?;
    let json = serde_json::to_string_pretty(&result).map_err(|e| fail(e.to_string()))?;
    std::fs::write(opts.run.out.join("bisect.json"), json).map_err(|e| fail(e.to_string()))?;
    std::fs::write(opts.run.out.join("bisect.md"), result.markdown()).map_err(|e| fail(e.to_string()))?;
    Ok(result)
}

/// The registry's releases of the implementation's library from `good` to `bad`, both included, in that order.
fn releases(registries: &Registries, language: Language, good: &str, bad: &str, implementation: &str) -> Result<Vec<Candidate>, String> {
    let library = match language {
        Language::Rust => LIBP2P_CRATE,
        Language::Go => GO_LIBP2P,
        Language::Image => return Err(format!("`{implementation}` is an image: it has no releases")),
    };
    let parse = |v: &str| {
        parse_version(&format!("v{}", v.trim_start_matches(['=', 'v'])))
            .ok_or_else(|| format!("`{v}` is not a release like 0.56.0 or v0.41.1 (a commit is bisected when `{implementation}` builds from a local checkout, `path:`)"))
    };
    let (good, bad) = (parse(good)?, parse(bad)?);
    if good == bad {
        return Err("--good and --bad name the same release".into());
    }
    let (all, _) = releases_of(registries, library)?;
    // Good first, bad last, the releases between in the order from one to the other.
    let (lo, hi) = if good < bad { (&good, &bad) } else { (&bad, &good) };
    let mut between: Vec<Version> = all.into_iter().filter(|v| lo < v && v < hi).collect();
    between.sort();
    between.dedup();
    if good > bad {
        between.reverse();
    }
    let mut releases = vec![good.clone()];
    releases.extend(between);
    releases.push(bad);
    Ok(releases.iter().map(|v| Candidate::Release(written(library, v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A search over `verdicts` (index 0 good, last bad) as `bisect` steps through it: the first bad index found.
    fn search(verdicts: &[Verdict]) -> (usize, usize, Vec<usize>) {
        let (mut lo, mut hi, mut skipped, mut tried) = (0, verdicts.len() - 1, Vec::new(), Vec::new());
        while let Some(i) = next_step(lo, hi, &skipped) {
            tried.push(i);
            match verdicts[i] {
                Verdict::Good => lo = i,
                Verdict::Bad => hi = i,
                Verdict::Skip => skipped.push(i),
            }
        }
        (lo, hi, tried)
    }

    #[test]
    fn the_search_halves_and_steps_around_what_cannot_be_judged() {
        use Verdict::*;
        let v = [Good, Good, Good, Good, Bad, Bad, Bad, Bad, Bad];
        let (lo, hi, tried) = search(&v);
        assert_eq!((lo, hi), (3, 4));
        assert!(tried.len() <= 3, "{tried:?}");
        // The release just before the change cannot be built: the answer is the pair around it, named as such.
        let v = [Good, Good, Skip, Bad, Bad];
        let (lo, hi, _) = search(&v);
        assert_eq!((lo, hi), (1, 3));
        assert_eq!(next_step(0, 1, &[]), None, "adjacent: nothing left to try");
    }
}
