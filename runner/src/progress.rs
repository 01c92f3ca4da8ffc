//! What the user sees while a run goes on: a live bar on a terminal, plain lines otherwise (CI logs).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(cases: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(cases as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {pos}/{len} cases  {wide_msg}",
                )
                .expect("valid template"),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Self { bar }
    }

    /// A line that stays.
    pub fn line(&self, text: impl AsRef<str>) {
        match &self.bar {
            Some(bar) => bar.println(text.as_ref()),
            // A closed stderr must not end the run (and leave its peers up): the results still get written.
            None => _ = writeln!(std::io::stderr(), "{}", text.as_ref()),
        }
    }

    /// What is happening now. Only a terminal shows it: in a log, the lines already say it.
    pub fn status(&self, text: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.into());
        }
    }

    pub fn case_done(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// How often a build that is still going says how far it got.
const BUILD_TICK: Duration = Duration::from_secs(30);

impl Progress {
    /// Awaits a build whose output goes to `log`, saying every half minute how long it has run and how far it got
    /// (from the log: crates compiled, Go packages built, its last line), so a first build is never minutes of
    /// silence.
    pub async fn while_building<T>(&self, what: &str, log: &Path, build: impl std::future::Future<Output = T>) -> T {
        watch_build(what, log, build, |l| self.line(l)).await
    }
}

async fn watch_build<T>(
    what: &str,
    log: &Path,
    build: impl std::future::Future<Output = T>,
    say: impl Fn(String),
) -> T {
    let start = tokio::time::Instant::now();
    tokio::pin!(build);
    let mut tick = tokio::time::interval_at(start + BUILD_TICK, BUILD_TICK);
    loop {
        tokio::select! {
            done = &mut build => return done,
            _ = tick.tick() => {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                let elapsed = humantime::format_duration(Duration::from_secs(start.elapsed().as_secs()));
                say(format!("still building {what}: {elapsed}, {}", how_far(&log)));
            }
        }
    }
}

/// How far a build got, from its log: cargo's `Compiling` lines and `go build -v`'s package lines are counted, and
/// the last line says what it does now.
fn how_far(log: &str) -> String {
    let lines: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let crates = lines.iter().filter(|l| l.starts_with("Compiling ")).count();
    // `go build -v` names each package it builds, one per line; the go command's own lines start with `go: `.
    let packages = lines
        .iter()
        .filter(|l| !l.starts_with("go: ") && !l.contains(' ') && l.contains('/'))
        .count();
    let mut said = Vec::new();
    if crates > 0 {
        said.push(format!("{crates} crates compiled"));
    }
    if packages > 0 {
        said.push(format!("{packages} Go packages built"));
    }
    let last: String = lines.last().map_or("nothing logged yet", |l| l).chars().take(100).collect();
    said.push(format!("now: {last}"));
    said.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_log_says_how_far_it_got() {
        let cargo = "    Updating crates.io index\n   Compiling libc v0.2.170\n   Compiling libp2p-swarm v0.47.0\n";
        assert_eq!(how_far(cargo), "2 crates compiled, now: Compiling libp2p-swarm v0.47.0");
        let go = "go: downloading github.com/libp2p/go-libp2p v0.51.0\ngithub.com/libp2p/go-libp2p/core/peer\nmeshgate/go-peer\n";
        assert_eq!(how_far(go), "2 Go packages built, now: meshgate/go-peer");
        assert_eq!(how_far(""), "now: nothing logged yet");
    }

    /// A build that outlasts a tick is said to go on, each half minute; the result is the build's own.
    #[tokio::test(start_paused = true)]
    async fn a_long_build_is_not_silent() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        std::fs::write(&log, "   Compiling tokio v1.45.0\n").unwrap();
        let said = std::cell::RefCell::new(Vec::new());
        let build = async {
            tokio::time::sleep(BUILD_TICK * 2 + Duration::from_secs(1)).await;
            7
        };
        let built = watch_build("the rust peer", &log, build, |l| said.borrow_mut().push(l)).await;
        assert_eq!(built, 7);
        assert_eq!(
            said.into_inner(),
            [
                "still building the rust peer: 30s, 1 crates compiled, now: Compiling tokio v1.45.0",
                "still building the rust peer: 1m, 1 crates compiled, now: Compiling tokio v1.45.0",
            ]
        );
    }
}
