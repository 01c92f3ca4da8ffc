//! The commits of a local git checkout as bisection steps. The steps are the first-parent commits on the ancestry
//! path from one revision to the other (a merge is one step, as `git bisect --first-parent` takes it), and each is
//! built from a plain copy of its tree (`git archive`) under meshgate's cache, named by the commit: the checkout's
//! work tree, index and branches are never touched, and a commit's copy (so its build, hashed by content and path)
//! is the same in every bisection that reaches it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Commit {
    pub sha: String,
    /// The first line of its message.
    pub subject: String,
}

impl Commit {
    /// How reports name it: the abbreviated hash and the subject.
    pub fn label(&self) -> String {
        format!("{} {}", self.short(), self.subject)
    }

    pub fn short(&self) -> &str {
        &self.sha[..12.min(self.sha.len())]
    }
}

/// A local checkout inside a git repository (possibly in a subdirectory of it).
pub struct Repository {
    dir: PathBuf,
    /// The repository's top (`git archive` runs there: from a subdirectory it may refuse).
    top: PathBuf,
    /// The checkout's path inside the repository (`git rev-parse --show-prefix`), empty at its top.
    prefix: String,
}

impl Repository {
    /// `None` when `dir` is not in a git work tree.
    pub fn of(dir: &Path) -> Option<Self> {
        let prefix = git(dir, &["rev-parse", "--show-prefix"]).ok()?;
        let top = git(dir, &["rev-parse", "--show-toplevel"]).ok()?;
        Some(Repository { dir: dir.to_owned(), top: PathBuf::from(top.trim()), prefix: prefix.trim().to_owned() })
    }

    fn commit(&self, rev: &str) -> Result<Commit, String> {
        let line = git(&self.dir, &["log", "-1", "--format=%H%x09%s", &format!("{rev}^{{commit}}"), "--"])
            .map_err(|e| format!("`{rev}` is not a commit of {}: {e}", self.dir.display()))?;
        parse_log(&line).into_iter().next().ok_or_else(|| format!("`{rev}`: git log printed nothing"))
    }

    /// The commits from `good` to `bad` in that order, both included: `good` may be the older (the first bad commit
    /// is wanted) or the newer (the fix), but one must be an ancestor of the other.
    pub fn between(&self, good: &str, bad: &str) -> Result<Vec<Commit>, String> {
        let (good, bad) = (self.commit(good)?, self.commit(bad)?);
        if good.sha == bad.sha {
            return Err(format!("--good and --bad name the same commit {}", good.short()));
        }
        let ancestor = |a: &Commit, b: &Commit| {
            Command::new("git")
                .arg("-C")
                .arg(&self.dir)
                .args(["merge-base", "--is-ancestor", &a.sha, &b.sha])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let (old, new, forward) = if ancestor(&good, &bad) {
            (&good, &bad, true)
        } else if ancestor(&bad, &good) {
            (&bad, &good, false)
        } else {
            return Err(format!(
                "neither {} nor {} is an ancestor of the other: commits are bisected along one line of history",
                good.short(),
                bad.short()
            ));
        };
        let range = format!("{}..{}", old.sha, new.sha);
        let log = git(&self.dir, &["log", "--first-parent", "--ancestry-path", "--reverse", "--format=%H%x09%s", &range, "--"])?;
        // Oldest first: `old`, then each commit after it up to `new`.
        let mut commits = vec![old.clone()];
        commits.extend(parse_log(&log));
        if commits.last() != Some(new) {
            return Err(format!("{} is not on the first-parent line of {}", old.short(), new.short()));
        }
        if !forward {
            commits.reverse();
        }
        Ok(commits)
    }

    /// A plain copy of the checkout's tree at `commit`, under `root` (made once; kept for the next bisection).
    pub fn tree_at(&self, commit: &Commit, root: &Path) -> Result<PathBuf, String> {
        let name = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "checkout".into());
        let dir = root.join(format!("{name}@{}", commit.short()));
        if dir.is_dir() {
            return Ok(dir);
        }
        std::fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        // Written beside it and renamed: a copy interrupted half way is never taken for a whole one.
        let partial = tempfile::Builder::new()
            .prefix(&format!(".{name}@{}-", commit.short()))
            .tempdir_in(root)
            .map_err(|e| format!("cannot create a folder in {}: {e}", root.display()))?;
        let tree = format!("{}:{}", commit.sha, self.prefix);
        let mut archive = Command::new("git")
            .arg("-C")
            .arg(&self.top)
            .args(["archive", "--format=tar", &tree])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run git: {e}"))?;
        let unpacked = tar::Archive::new(archive.stdout.take().expect("piped")).unpack(partial.path());
        let archived = archive.wait_with_output().map_err(|e| format!("git archive: {e}"))?;
        if !archived.status.success() {
            return Err(format!(
                "cannot copy {tree} out of {}: {}",
                self.dir.display(),
                String::from_utf8_lossy(&archived.stderr).trim()
            ));
        }
        unpacked.map_err(|e| format!("cannot unpack {tree} into {}: {e}", partial.path().display()))?;
        match std::fs::rename(partial.path(), &dir) {
            Ok(()) => {
                let _ = partial.keep();
                Ok(dir)
            }
            // Another bisection made it meanwhile.
            Err(_) if dir.is_dir() => Ok(dir),
            Err(e) => Err(format!("cannot move the copy of {} to {}: {e}", commit.short(), dir.display())),
        }
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).trim().to_owned());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `%H<TAB>%s` lines.
fn parse_log(text: &str) -> Vec<Commit> {
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(sha, subject)| Commit { sha: sha.to_owned(), subject: subject.to_owned() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &Path, args: &[&str]) {
        let s = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=m", "-c", "user.email=m@example.org", "-c", "commit.gpgsign=false"])
            .args(args)
            .output()
            .unwrap();
        assert!(s.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&s.stderr));
    }

    /// A repository with `n` commits, each writing `lib/file` = its number, in the subdirectory `lib`.
    fn history(n: usize) -> (tempfile::TempDir, Repository, Vec<String>) {
        let tmp = tempfile::tempdir().unwrap();
        run(tmp.path(), &["init", "-q", "-b", "main"]);
        std::fs::create_dir(tmp.path().join("lib")).unwrap();
        for i in 0..n {
            std::fs::write(tmp.path().join("lib/file"), i.to_string()).unwrap();
            run(tmp.path(), &["add", "-A"]);
            run(tmp.path(), &["commit", "-q", "-m", &format!("commit {i}")]);
        }
        let repo = Repository::of(&tmp.path().join("lib")).unwrap();
        let shas = git(tmp.path(), &["log", "--reverse", "--format=%H"]).unwrap().lines().map(str::to_owned).collect();
        (tmp, repo, shas)
    }

    #[test]
    fn commits_run_from_good_to_bad_either_way_round() {
        let (_tmp, repo, shas) = history(5);
        let forward = repo.between(&shas[1], "main").unwrap();
        let subjects: Vec<&str> = forward.iter().map(|c| c.subject.as_str()).collect();
        assert_eq!(subjects, ["commit 1", "commit 2", "commit 3", "commit 4"]);
        let back = repo.between("main", &shas[1][..10]).unwrap();
        let subjects: Vec<&str> = back.iter().map(|c| c.subject.as_str()).collect();
        assert_eq!(subjects, ["commit 4", "commit 3", "commit 2", "commit 1"]);
        assert!(repo.between("main", "main").unwrap_err().contains("the same commit"));
        assert!(repo.between("nope", "main").unwrap_err().contains("`nope` is not a commit"));
    }

    #[test]
    fn a_commit_s_tree_is_copied_without_touching_the_work_tree() {
        let (tmp, repo, shas) = history(3);
        std::fs::write(tmp.path().join("lib/file"), "edited, not committed").unwrap();
        let cache = tempfile::tempdir().unwrap();
        let c = repo.commit(&shas[1]).unwrap();
        let dir = repo.tree_at(&c, cache.path()).unwrap();
        // The checkout's subdirectory at that commit, at the top of the copy.
        assert_eq!(std::fs::read_to_string(dir.join("file")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(tmp.path().join("lib/file")).unwrap(), "edited, not committed");
        assert_eq!(repo.tree_at(&c, cache.path()).unwrap(), dir, "made once");
        let left: Vec<_> = std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "no partial copy left: {left:?}");
    }

    #[test]
    fn unrelated_commits_are_refused() {
        let (tmp, repo, shas) = history(2);
        run(tmp.path(), &["checkout", "-q", "--orphan", "other"]);
        run(tmp.path(), &["commit", "-q", "-m", "elsewhere"]);
        let err = repo.between(&shas[0], "other").unwrap_err();
        assert!(err.contains("neither"), "{err}");
    }
}
