//! `meshgate bisect`: the first release of a library where a case goes bad, found by binary search over the
//! releases between a good and a bad one (from the registry, as `latest` is resolved), or, when the implementation
//! builds from a local checkout (`path:`), the first bad commit of its git history (`commits`). Each step runs the
//! case at one release or commit like `meshgate run --repeat N` would: a step that fails in any attempt is bad, one
//! that passes is good, one that cannot be built or judged (errored, inconclusive, skipped) is skipped, as
//! `git bisect skip` does. Known issues of the matrix are set aside: a step is judged on what its checks found.
//! `good` may be newer than `bad`: the search then names the last bad release before the fix, and the first good
//! one after it. For rust-libp2p, the search then goes on inside the newer of those two facade releases, over the
//! sub-crate releases its requirements allow (see `crates`), to name the crate and its release.

mod commits;
mod crates;

use std::collections::BTreeMap;
use std::path::PathBuf;

use semver::Version;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cases;
use crate::matrix::resolve::{releases_of, written, GO_LIBP2P, LIBP2P_CRATE};
use crate::matrix::{Axis, Language, Matrix, VersionValue};
use crate::releases::{parse_index, parse_version, Registries};
use crate::results::{CaseStatus, CouldNotRun, RunResults};
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
    /// Sub-crates pinned at this step (`cargo update --precise`), inside the facade release `version`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub pins: BTreeMap<String, String>,
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
    /// rust-libp2p: the search inside the newer of `first_bad` and `last_good` over its sub-crates' releases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crates: Option<crates::Narrowed>,
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
        let head = self.facade_headline(what);
        match &self.crates {
            Some(n) => format!("{head}; inside libp2p {}: {}", n.facade, n.conclusion),
            None => head,
        }
    }

    fn facade_headline(&self, what: &str) -> String {
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
            let mut what = self.named(&step.version).replace('|', "\\|");
            if !step.pins.is_empty() {
                let pins: Vec<String> = step.pins.iter().map(|(c, v)| format!("{c} {v}")).collect();
                what.push_str(&format!(" with {}", pins.join(", ")));
            }
            s.push_str(&format!("| {} | {what} | {v} | {} |\n", i + 1, step.why.replace('|', "\\|")));
        }
        if let Some(n) = &self.crates {
            s.push_str(&format!(
                "\n## Sub-crates of libp2p {}\n\n{}\n\n| crate | older facade | newer facade | releases pins may choose |\n| --- | --- | --- | --- |\n",
                n.facade, n.conclusion
            ));
            for r in &n.changed {
                s.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    r.name,
                    r.older.as_deref().unwrap_or("-"),
                    r.newer,
                    r.releases.join(", ")
                ));
            }
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
        crates: None,
    };
    let stepper = Stepper { opts, run_id, cancel: cancel.clone(), registries: &registries };
    // What the implementation's peers were built with at each release run: the sub-crate search starts from it.
    let mut built: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let (mut lo, mut hi, mut skipped) = (0, candidates.len() - 1, Vec::new());
    while let Some(i) = next_step(lo, hi, &skipped) {
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
        let subject = match &candidates[i] {
            Candidate::Commit(c) => Some(c.subject.clone()),
            Candidate::Release(_) => None,
        };
        let (step, versions) = stepper.step(&mut matrix, result.steps.len() + 1, &label, subject, BTreeMap::new()).await?;
        if let Some(v) = versions {
            built.insert(label.clone(), v);
        }
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
    if result.over == Over::Releases && language == Language::Rust && result.undecided.is_empty() {
        let narrowed = narrow(&stepper, &mut matrix, &mut result, &mut built).await?;
        result.crates = Some(narrowed);
    }
    std::fs::create_dir_all(&opts.run.out).map_err(|e| fail(format!("cannot create {}: {e}", opts.run.out.display())))?;
    let json = serde_json::to_string_pretty(&result).map_err(|e| fail(e.to_string()))?;
    std::fs::write(opts.run.out.join("bisect.json"), json).map_err(|e| fail(e.to_string()))?;
    std::fs::write(opts.run.out.join("bisect.md"), result.markdown()).map_err(|e| fail(e.to_string()))?;
    Ok(result)
}

/// Runs the one case of the bisection as the matrix stands: a step of the search.
struct Stepper<'a> {
    opts: &'a BisectOptions,
    run_id: &'a str,
    cancel: CancellationToken,
    registries: &'a Registries,
}

impl Stepper<'_> {
    /// Step `n` at `label` (a release or commit) with `pins` on the implementation: its verdict, and the versions its
    /// peers of the implementation reported being built with.
    async fn step(
        &self,
        matrix: &mut Matrix,
        n: usize,
        label: &str,
        subject: Option<String>,
        pins: BTreeMap<String, String>,
    ) -> Result<(Step, Option<BTreeMap<String, String>>), CouldNotRun> {
        let (opts, path) = (self.opts, &self.opts.run.matrix);
        let fail = |m: String| CouldNotRun(anyhow::anyhow!(m));
        if self.cancel.is_cancelled() {
            return Err(fail("interrupted".into()));
        }
        for imp in &mut matrix.implementations {
            if imp.value.name == opts.implementation {
                for (c, v) in &pins {
                    imp.value.pins.insert(c.clone(), Axis(vec![VersionValue::Exact(v.clone())]));
                }
            }
        }
        // The companions of this release (rust: its libp2p-stream).
        let resolved = matrix.resolve(path, self.registries).map_err(|e| CouldNotRun(e.into()));
        let chosen: Vec<cases::Case> = cases::expand(matrix).into_iter().filter(|c| c.name.contains(&opts.case)).collect();
        // The pins are this step's only: the next step starts from the matrix's own.
        for imp in &mut matrix.implementations {
            if imp.value.name == opts.implementation {
                for c in pins.keys() {
                    imp.value.pins.remove(c);
                }
            }
        }
        resolved?;
        if chosen.len() != 1 {
            let names: Vec<&str> = chosen.iter().map(|c| c.name.as_str()).collect();
            return Err(fail(format!(
                "--case {:?} must name exactly one case of {} at {label}; it names {}: {names:?}",
                opts.case,
                path.display(),
                chosen.len()
            )));
        }
        let folder = if pins.is_empty() { format!("step-{n}-{label}") } else { format!("step-{n}-{label}-pinned") };
        let out = opts.run.out.join(folder);
        let step_opts = RunOptions { out: out.clone(), filter: None, ..opts.run.clone() };
        let pinned: Vec<String> = pins.iter().map(|(c, v)| format!("{c} {v}")).collect();
        let with = if pinned.is_empty() { String::new() } else { format!(" with {}", pinned.join(", ")) };
        eprintln!(
            "meshgate: bisect step {n}: {} at {label}{with}{}",
            chosen[0].name,
            subject.as_ref().map(|s| format!(" ({s})")).unwrap_or_default()
        );
        let (step, versions) = match run_cases_of(&step_opts, &format!("{}-{n}", self.run_id), self.cancel.clone(), matrix, chosen).await {
            Ok(r) => {
                let verdict = match r.cases[0].status() {
                    CaseStatus::Passed => Verdict::Good,
                    CaseStatus::Failed | CaseStatus::Known => Verdict::Bad,
                    _ => Verdict::Skip,
                };
                let versions = built_with(&r, &opts.implementation);
                let step = Step { version: label.to_owned(), subject, pins, verdict, why: r.headline(), out: out.display().to_string() };
                (step, versions)
            }
            Err(e) if !self.cancel.is_cancelled() => {
                let why = format!("could not run: {:#}", e.0);
                let step = Step { version: label.to_owned(), subject, pins, verdict: Verdict::Skip, why, out: out.display().to_string() };
                (step, None)
            }
            Err(e) => return Err(e),
        };
        eprintln!("meshgate: bisect step {n}: {label}{with} is {:?}: {}", step.verdict, step.why);
        Ok((step, versions))
    }
}

/// The versions the implementation's first peer reported being built with.
fn built_with(r: &RunResults, implementation: &str) -> Option<BTreeMap<String, String>> {
    let peers = &r.cases.first()?.peers;
    // A case names an implementation that is an axis with its value: `rust-0.55.0`.
    let of = |name: &str| name == implementation || name.strip_prefix(implementation).is_some_and(|rest| rest.starts_with('-'));
    peers.iter().find(|p| of(&p.implementation) && !p.versions.is_empty()).map(|p| p.versions.clone())
}

/// The search inside the newer of the last good and the first bad facade, over its sub-crates' releases.
async fn narrow(
    stepper: &Stepper<'_>,
    matrix: &mut Matrix,
    result: &mut Bisected,
    built: &mut BTreeMap<String, BTreeMap<String, String>>,
) -> Result<crates::Narrowed, CouldNotRun> {
    let fail = |m: String| CouldNotRun(anyhow::anyhow!(m));
    let (first_bad, last_good) = (result.first_bad.clone().unwrap_or_default(), result.last_good.clone().unwrap_or_default());
    let parse = |v: &str| semver::Version::parse(v).map_err(|e| fail(format!("release {v}: {e}")));
    let (bad_v, good_v) = (parse(&first_bad)?, parse(&last_good)?);
    let (newer, older, newer_verdict) =
        if bad_v > good_v { (first_bad, last_good, Verdict::Bad) } else { (last_good, first_bad, Verdict::Good) };
    let older_verdict = if newer_verdict == Verdict::Bad { Verdict::Good } else { Verdict::Bad };
    let mut narrowed = crates::Narrowed { facade: newer.clone(), ..Default::default() };
    let facade_value = written(LIBP2P_CRATE, &parse(&newer)?);
    for imp in &mut matrix.implementations {
        if imp.value.name == stepper.opts.implementation {
            imp.value.version = Some(Axis(vec![VersionValue::Exact(facade_value.clone())]));
        }
    }
    // The crates the peer is built with, from any step; with none run yet, the newer facade is run as it is first.
    if built.is_empty() {
        let (step, versions) = stepper.step(matrix, result.steps.len() + 1, &newer, None, BTreeMap::new()).await?;
        let verdict = step.verdict;
        result.steps.push(step);
        match versions {
            Some(v) if verdict == newer_verdict => {
                built.insert(newer.clone(), v);
            }
            Some(_) => {
                narrowed.conclusion = format!(
                    "run as it is, it was {verdict:?} where the search had it {newer_verdict:?}: its sub-crates were not searched"
                );
                return Ok(narrowed);
            }
            None => {
                narrowed.conclusion = "its peers reported no crate versions: its sub-crates were not searched".into();
                return Ok(narrowed);
            }
        }
    }
    let crate_names: Vec<String> = built
        .values()
        .flat_map(|v| v.keys())
        .filter(|c| c.starts_with("libp2p-") && *c != "libp2p-stream")
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let registries = stepper.registries;
    let facade = parse_index(&registries.crate_index(LIBP2P_CRATE).map_err(fail)?.text).map_err(fail)?;
    let index = |name: &str| registries.crate_index(name).map(|a| a.text);
    let empty = BTreeMap::new();
    let ranges = crates::ranges(
        &facade,
        &parse(&newer)?,
        &parse(&older)?,
        &crate_names,
        built.get(&newer).unwrap_or(&empty),
        built.get(&older).unwrap_or(&empty),
        &index,
    )
    .map_err(fail)?;
    narrowed.changed = ranges.clone();
    let fixed: Vec<String> = ranges
        .iter()
        .filter(|r| !r.movable())
        .map(|r| format!("{} {} to {}", r.name, r.older.as_deref().unwrap_or("none"), r.newer))
        .collect();
    let fixed_text = if fixed.is_empty() { String::new() } else { format!(" (changed with its requirements: {})", fixed.join(", ")) };
    let movable: Vec<&crates::Range> = ranges.iter().filter(|r| r.movable()).collect();
    if movable.is_empty() {
        narrowed.conclusion =
            format!("no sub-crate it uses can be pinned to another release than it was built with{fixed_text}: the change came with the facade");
        return Ok(narrowed);
    }
    let newer_word = if newer_verdict == Verdict::Bad { "bad" } else { "good" };
    let older_word = if newer_verdict == Verdict::Bad { "good" } else { "bad" };
    // Every movable crate at its lowest release first: if that does not give the older facade's verdict, no sub-crate
    // release that pins can reach made the change. Then halves of the suspects, until one crate is left, which is
    // run alone unless the probe that turned the verdict was already that crate alone.
    let mut suspects = movable;
    let mut turned_by_suspects = false;
    let mut first_probe = true;
    while !turned_by_suspects || suspects.len() > 1 {
        let set: Vec<&crates::Range> =
            if turned_by_suspects { suspects[..suspects.len() / 2].to_vec() } else { suspects.clone() };
        let (step, _) = stepper.step(matrix, result.steps.len() + 1, &newer, None, crates::lowest_pins(&set)).await?;
        let verdict = step.verdict;
        result.steps.push(step);
        let names: Vec<&str> = set.iter().map(|r| r.name.as_str()).collect();
        match verdict {
            Verdict::Skip => {
                narrowed.conclusion = format!(
                    "with {} pinned to their lowest allowed releases the case could not be judged: the change is in one of {} or came with the facade{fixed_text}",
                    names.join(", "),
                    suspects.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
                );
                return Ok(narrowed);
            }
            v if v == newer_verdict && first_probe => {
                narrowed.conclusion = format!(
                    "with {} pinned to the lowest releases it allows it is still {newer_word}: no sub-crate release that pins can reach made the change{fixed_text}",
                    names.join(", ")
                );
                return Ok(narrowed);
            }
            v if v == newer_verdict => {
                if set.len() == suspects.len() {
                    narrowed.conclusion = format!(
                        "{} alone at its lowest allowed release is still {newer_word}: no single sub-crate's release made the change, several together did",
                        names.join(", ")
                    );
                    return Ok(narrowed);
                }
                // Not in this half: in the other one, not yet run on its own.
                suspects = suspects[set.len()..].to_vec();
                turned_by_suspects = false;
            }
            _ => {
                suspects = set;
                turned_by_suspects = true;
            }
        }
        first_probe = false;
    }
    let culprit = suspects[0].clone();
    // Its releases: the lowest has the older facade's verdict (just seen), the newest the newer's (the facade search).
    let (mut lo, mut hi, mut skipped) = (0, culprit.releases.len() - 1, Vec::new());
    while let Some(i) = next_step(lo, hi, &skipped) {
        let pins = [(culprit.name.clone(), culprit.releases[i].clone())].into();
        let (step, _) = stepper.step(matrix, result.steps.len() + 1, &newer, None, pins).await?;
        match step.verdict {
            v if v == older_verdict => lo = i,
            Verdict::Skip => skipped.push(i),
            _ => hi = i,
        }
        result.steps.push(step);
    }
    narrowed.conclusion = if lo + 1 == hi {
        format!(
            "first {newer_word} {} release {} (the last {older_word}: {})",
            culprit.name, culprit.releases[hi], culprit.releases[lo]
        )
    } else {
        format!(
            "{} made the change, in one of {} (after the last {older_word} {}); those could not be judged",
            culprit.name,
            culprit.releases[lo + 1..=hi].join(", "),
            culprit.releases[lo]
        )
    };
    narrowed.first = Some(culprit.releases[hi].clone());
    narrowed.last = Some(culprit.releases[lo].clone());
    narrowed.culprit = Some(culprit.name);
    Ok(narrowed)
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
