//! One peer the probe started: its output read as the contract has it (every line of stdout and of the events
//! file an event), kept on disk, and waited on with deadlines. Nothing here judges but the lines themselves.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use contract::events::{Event, EventLine};

use crate::events::{Line, Stream};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{Exit, Output, PeerProcess};

/// Longest a write of one line to a peer may take: a peer reads its commands at once.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Stderr lines kept to explain an exit.
const STDERR_TAIL: usize = 5;

/// How a wait ended.
#[derive(Debug)]
pub enum Waited {
    /// The index (in [`ProbePeer::events`]) of the first event that matched.
    Event(usize),
    /// The peer exited first.
    Exited,
    TimedOut,
}

/// An event as it was read: where (its stream, and its line number there), the line as written, and the event.
#[derive(Debug)]
pub struct Read {
    pub stream: Stream,
    pub line_no: u64,
    pub raw: String,
    pub line: EventLine,
}

pub struct ProbePeer {
    /// Its name in the probe (`alone`, `probe-1`); the container's name ends in it.
    pub name: String,
    pub process: PeerProcess,
    /// Lines read so far on stdout and in the events file: each stream is numbered apart, since which of two
    /// streams' lines came first is not known.
    stdout_lines: u64,
    events_file_lines: u64,
    /// The first line of each stream, as written, in the order they were read.
    pub first_lines: Vec<(Stream, String)>,
    pub events: Vec<Read>,
    pub exit: Option<Exit>,
    /// `stdout line N ...` for every line that is not a contract event.
    pub violations: Vec<String>,
    stderr_tail: VecDeque<String>,
    events_log: std::fs::File,
    stderr_log: std::fs::File,
}

impl ProbePeer {
    pub fn new(name: &str, process: PeerProcess, dir: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.to_owned(),
            process,
            stdout_lines: 0,
            events_file_lines: 0,
            first_lines: Vec::new(),
            events: Vec::new(),
            exit: None,
            violations: Vec::new(),
            stderr_tail: VecDeque::new(),
            events_log: std::fs::File::create(dir.join(format!("{name}.events.jsonl")))?,
            stderr_log: std::fs::File::create(dir.join(format!("{name}.stderr")))?,
        })
    }

    /// Event lines (stdout's and the events file's) read so far.
    pub fn lines(&self) -> u64 {
        self.stdout_lines + self.events_file_lines
    }

    /// The first line written on `stream`.
    pub fn first_line(&self, stream: Stream) -> Option<&str> {
        self.first_lines
            .iter()
            .find(|(s, _)| *s == stream)
            .map(|(_, l)| l.as_str())
    }

    /// The peer id it said in its first event.
    pub fn peer_id(&self) -> Option<&str> {
        self.events.first().map(|r| r.line.peer.as_str())
    }

    pub fn event(&self, i: usize) -> &Event {
        &self.events[i].line.event
    }

    pub fn exited(&self) -> bool {
        self.exit.is_some()
    }

    /// `exited with status 2 (stderr: ...)`, for reasons.
    pub fn describe_exit(&self) -> String {
        let status = match self.exit.as_ref().and_then(|e| e.code) {
            Some(code) => format!("exited with status {code}"),
            None => "exited (status unknown)".to_owned(),
        };
        match self.stderr_tail.back() {
            Some(line) => format!("{status} (stderr: {})", clip(line, 200)),
            None => status,
        }
    }

    fn record(&mut self, output: Output) {
        match output {
            Output::Stdout(line) => self.record_line(Stream::Stdout, line),
            Output::EventsFile(line) => self.record_line(Stream::EventsFile, line),
            Output::Stderr(line) => {
                let _ = writeln!(self.stderr_log, "{line}");
                if self.stderr_tail.len() == STDERR_TAIL {
                    self.stderr_tail.pop_front();
                }
                self.stderr_tail.push_back(line);
            }
            Output::Exited(exit) => self.exit = Some(exit),
        }
    }

    fn record_line(&mut self, stream: Stream, raw: String) {
        let _ = writeln!(self.events_log, "{raw}");
        let counted = match stream {
            Stream::Stdout => &mut self.stdout_lines,
            Stream::EventsFile => &mut self.events_file_lines,
        };
        *counted += 1;
        let line_no = *counted;
        if line_no == 1 {
            self.first_lines.push((stream, raw.clone()));
        }
        // Judged as a run judges it (the contract's schema); what is beyond the contract is no violation.
        match Line::parse(&raw) {
            Line::Event { line, .. } => self.events.push(Read {
                stream,
                line_no,
                raw,
                line,
            }),
            Line::UnknownEvent { .. } => {}
            Line::Violation(e) => self.violations.push(format!(
                "{stream} line {line_no} `{}` is not a contract event: {e}",
                clip(&raw, 120)
            )),
        }
    }

    /// Reads output until an event from index `from` on matches, the peer exits, or `within` passes. Events that
    /// arrived before the call count. Fails only when the probe is interrupted.
    pub async fn wait(
        &mut self,
        from: usize,
        within: Duration,
        cancel: &CancellationToken,
        matches: impl Fn(&Event) -> bool,
    ) -> anyhow::Result<Waited> {
        let deadline = Instant::now() + within;
        let mut next = from;
        loop {
            while next < self.events.len() {
                if matches(&self.events[next].line.event) {
                    return Ok(Waited::Event(next));
                }
                next += 1;
            }
            if self.exit.is_some() {
                return Ok(Waited::Exited);
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => bail!("interrupted"),
                o = self.process.output.recv() => match o {
                    Some(o) => self.record(o),
                    // The backend lost the output without an exit: as good as gone.
                    None => self.exit = Some(Exit::default()),
                },
                _ = tokio::time::sleep_until(deadline) => return Ok(Waited::TimedOut),
            }
        }
    }

    /// Reads output until the peer exits (`true`) or `within` passes.
    pub async fn wait_exit(
        &mut self,
        within: Duration,
        cancel: &CancellationToken,
    ) -> anyhow::Result<bool> {
        let from = self.events.len();
        let waited = self.wait(from, within, cancel, |_| false).await?;
        Ok(matches!(waited, Waited::Exited))
    }

    /// Writes one line to the peer's stdin, bounded in time.
    pub async fn send(&mut self, line: &str) -> Result<(), String> {
        if self.exited() {
            return Err(format!("could not be told: it {}", self.describe_exit()));
        }
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        let stdin = &mut self.process.stdin;
        let write = async {
            stdin.write_all(&bytes).await?;
            stdin.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("writing to its stdin failed: {e}")),
            Err(_) => Err(format!(
                "stopped reading its stdin: a write did not finish within {} s",
                WRITE_TIMEOUT.as_secs()
            )),
        }
    }
}

/// At most `max` characters of `s`, marked when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(max).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// A peer whose output is what the test sends, and whose stdin goes nowhere.
    fn fake(dir: &Path) -> (ProbePeer, mpsc::Sender<Output>) {
        let (tx, rx) = mpsc::channel(16);
        let process = PeerProcess {
            id: "fake".into(),
            address: "10.0.0.2:4001".parse().unwrap(),
            pid: None,
            controller: None,
            stdin: Box::pin(tokio::io::sink()),
            output: rx,
        };
        (ProbePeer::new("alone", process, dir).unwrap(), tx)
    }

    #[tokio::test]
    async fn lines_that_are_not_events_are_named_with_their_number_and_the_rest_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let (mut p, tx) = fake(dir.path());
        for line in [
            "hello",
            r#"{"ts":1,"peer":"12D3KooWA","event":"started","implementation":"x","versions":{}}"#,
            r#"{"ts":2,"peer":"12D3KooWA","event":"message","topic":"t"}"#,
            r#"{"ts":3,"peer":"12D3KooWA","event":"listening","addrs":["/ip4/10.0.0.2/tcp/4001"]}"#,
        ] {
            tx.send(Output::Stdout(line.into())).await.unwrap();
        }
        tx.send(Output::Stderr("bye".into())).await.unwrap();
        let cancel = CancellationToken::new();
        let listening = |e: &Event| matches!(e, Event::Listening { .. });
        let waited = p
            .wait(0, Duration::from_secs(5), &cancel, listening)
            .await
            .unwrap();
        assert!(matches!(waited, Waited::Event(1)), "{waited:?}");
        assert_eq!(p.events[1].line_no, 4, "stdout line numbers count every line");
        assert_eq!(p.first_line(Stream::Stdout), Some("hello"));
        assert_eq!(p.peer_id(), Some("12D3KooWA"));
        assert_eq!(p.violations.len(), 2, "{:?}", p.violations);
        assert!(
            p.violations[0].starts_with("stdout line 1 `hello` is not a contract event"),
            "{:?}",
            p.violations
        );
        assert!(
            p.violations[1].starts_with("stdout line 3 ") && p.violations[1].contains("\"id\" is a required property"),
            "{:?}",
            p.violations
        );

        tx.send(Output::Exited(Exit {
            code: Some(2),
            ..Default::default()
        }))
        .await
        .unwrap();
        assert!(p.wait_exit(Duration::from_secs(5), &cancel).await.unwrap());
        assert_eq!(p.describe_exit(), "exited with status 2 (stderr: bye)");
        assert!(p.send("{}").await.is_err(), "an exited peer cannot be told");
        // Everything written is kept as written.
        let kept = std::fs::read_to_string(dir.path().join("alone.events.jsonl")).unwrap();
        assert_eq!(kept.lines().count(), 4);
    }

    #[tokio::test]
    async fn stdout_and_the_events_file_are_numbered_apart_whichever_is_read_first() {
        let dir = tempfile::tempdir().unwrap();
        let (mut p, tx) = fake(dir.path());
        let started =
            r#"{"ts":1,"peer":"12D3KooWA","event":"started","implementation":"x","versions":{}}"#;
        let listening =
            r#"{"ts":2,"peer":"12D3KooWA","event":"listening","addrs":["/ip4/10.0.0.2/tcp/4001"]}"#;
        tx.send(Output::EventsFile(started.into())).await.unwrap();
        tx.send(Output::Stdout("hello".into())).await.unwrap();
        tx.send(Output::EventsFile(listening.into())).await.unwrap();
        let cancel = CancellationToken::new();
        let is_listening = |e: &Event| matches!(e, Event::Listening { .. });
        let waited = p
            .wait(0, Duration::from_secs(5), &cancel, is_listening)
            .await
            .unwrap();
        assert!(matches!(waited, Waited::Event(1)), "{waited:?}");
        let at: Vec<_> = p.events.iter().map(|r| (r.stream, r.line_no)).collect();
        assert_eq!(at, [(Stream::EventsFile, 1), (Stream::EventsFile, 2)]);
        assert_eq!(p.first_line(Stream::EventsFile), Some(started));
        assert_eq!(p.first_line(Stream::Stdout), Some("hello"));
        assert_eq!(p.lines(), 3);
        assert_eq!(p.violations.len(), 1, "{:?}", p.violations);
        assert!(
            p.violations[0].starts_with("stdout line 1 `hello` is not a contract event"),
            "{:?}",
            p.violations
        );
    }

    #[tokio::test]
    async fn a_wait_ends_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let (mut p, _tx) = fake(dir.path());
        let cancel = CancellationToken::new();
        let waited = p
            .wait(0, Duration::from_millis(50), &cancel, |_| true)
            .await
            .unwrap();
        assert!(matches!(waited, Waited::TimedOut), "{waited:?}");
        cancel.cancel();
        assert!(p
            .wait(0, Duration::from_secs(5), &cancel, |_| true)
            .await
            .is_err());
    }
}
