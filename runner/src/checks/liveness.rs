//! `liveness`: no peer exits before it is told to stop, crashes, panics, or breaks the event contract.


use super::evidence::{count, seconds};
use super::{clock, Check, Context};
use crate::events::{Command, Fault, Micros, Observation, PeerEvent, Recorded};
use crate::matrix::format_bytes;
pub use crate::matrix::checks::liveness::Settings;
use crate::peers::Pending;
use crate::results::{clip, CheckResult};

pub const NAME: &str = "liveness";

/// How much of a peer's own line a message quotes.
const QUOTE: usize = 100;


pub struct Liveness {
    settings: Settings,
    problems: Vec<(Micros, String, String)>,
    /// Peers the runner killed: their exit status says nothing more.
    killed: Vec<String>,
    /// When each peer last said anything on stdout, and whether it was told to stop since.
    last_event: std::collections::BTreeMap<String, Micros>,
    /// Each peer's open connections as it reported them: only a peer with one samples its streams, so only its
    /// silence is a hang. (A peer that has not been told to dial, or that nobody dialed yet, has nothing to say:
    /// the first peers of a large case wait idle while the others start.)
    open: std::collections::BTreeMap<String, usize>,
    told_to_stop: std::collections::BTreeSet<String>,
    /// Peers the time line killed or froze, until their restart or resume.
    down: std::collections::BTreeSet<String>,
    /// Peers that exited after they were told to stop, for the coverage line.
    stopped_on_request: std::collections::BTreeSet<String>,
    /// How many of the problems are failures of time: silences, and exits that did not come within the stop's
    /// time (the others are exits, panics, broken lines).
    of_time: usize,
    /// The span of the record watched.
    first: Option<Micros>,
    last: Micros,
}

impl Liveness {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            problems: Vec::new(),
            killed: Vec::new(),
            last_event: Default::default(),
            open: Default::default(),
            told_to_stop: Default::default(),
            down: Default::default(),
            stopped_on_request: Default::default(),
            of_time: 0,
            first: None,
            last: 0,
        }
    }
}

impl Check for Liveness {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, rec: &Recorded) {
        self.first.get_or_insert(rec.at);
        self.last = self.last.max(rec.at);
        if let Observation::Exited { expected: true, .. } = rec.what {
            self.stopped_on_request.insert(rec.peer.clone());
        }
        // A peer the time line kills or freezes is silent by the runner's doing; its silence counts again from its
        // restart or resume.
        if let Observation::Fault { fault, .. } = &rec.what {
            match fault {
                Fault::Kill | Fault::Pause => {
                    self.last_event.remove(&rec.peer);
                    self.down.insert(rec.peer.clone());
                    if matches!(fault, Fault::Kill) {
                        // Its next exit is the SIGKILL's: status 137 says nothing of the peer.
                        self.killed.push(rec.peer.clone());
                    }
                }
                Fault::Restart | Fault::Resume => {
                    self.last_event.insert(rec.peer.clone(), rec.at);
                    self.down.remove(&rec.peer);
                    if matches!(fault, Fault::Restart) {
                        // A new process: its own exit is judged again.
                        self.killed.retain(|p| p != &rec.peer);
                    }
                }
                _ => {}
            }
            return;
        }
        // A live peer with a connection samples its streams every `streams_interval`: a long silence before it was
        // told to stop is a hang.
        let silence_us = self.settings.silence.as_micros() as Micros;
        let stop = matches!(rec.command(), Some(Command::Stop));
        let sampling = self.open.get(&rec.peer).is_some_and(|n| *n > 0);
        if let Observation::Event { line } = &rec.what {
            match line.event {
                PeerEvent::ConnectionOpened { .. } => *self.open.entry(rec.peer.clone()).or_default() += 1,
                PeerEvent::ConnectionClosed { .. } => {
                    let n = self.open.entry(rec.peer.clone()).or_default();
                    *n = n.saturating_sub(1);
                }
                _ => {}
            }
        }
        // A peer's silence is measured on its own clock, between its events' time stamps: a runner late in taking
        // in the lines of a busy host must not make a peer look silent. (`stop` is the runner's.)
        let when = match &rec.what {
            Observation::Event { line } => line.ts,
            _ => rec.at,
        };
        if (matches!(rec.what, Observation::Event { .. }) || stop) && !self.down.contains(&rec.peer) {
            if let Some(last) = self.last_event.get(&rec.peer) {
                if sampling && !self.told_to_stop.contains(&rec.peer) && when - last > silence_us {
                    // The message's time says from when.
                    let what = format!("went silent: no event for {:.1} s from", (when - last) as f64 / 1e6);
                    self.problems.push((*last, rec.peer.clone(), what));
                    self.of_time += 1;
                }
            }
            if stop {
                self.told_to_stop.insert(rec.peer.clone());
            } else {
                self.last_event.insert(rec.peer.clone(), when);
            }
        }
        let problem = match &rec.what {
            Observation::Stderr { line }
                if self
                    .settings
                    .panic_markers
                    .iter()
                    .any(|m| line.contains(m.as_str())) =>
            {
                Some(format!("panicked: {line}"))
            }
            // Killed by its memory limit, whether or not it had been told to stop: its status only says "signal 9".
            Observation::Exited {
                oom_killed: true,
                peak_memory_bytes,
                memory_limit_bytes,
                ..
            } => {
                let of = |b: &Option<u64>| b.map_or("unknown".to_owned(), format_bytes);
                Some(format!(
                    "was killed: out of memory (limit {}, peak {})",
                    of(memory_limit_bytes),
                    of(peak_memory_bytes)
                ))
            }
            Observation::Exited {
                code,
                expected: false,
                ..
            } => Some(match code {
                Some(c) => format!("exited with status {c} before it was told to stop"),
                None => "disappeared before it was told to stop".into(),
            }),
            Observation::Exited {
                code: Some(c),
                expected: true,
                ..
            } if *c != 0 && !self.killed.contains(&rec.peer) => {
                Some(format!("exited with status {c} after stop"))
            }
            Observation::Killed { reason } => Some(format!("{reason}: killed")),
            Observation::Malformed {
                stream,
                line_no,
                line,
                error,
            } => Some(format!(
                "broke the event contract on {stream} line {line_no} ({error}): {line}"
            )),
            _ => None,
        };
        if matches!(rec.what, Observation::Killed { .. }) {
            self.killed.push(rec.peer.clone());
            // A stop not obeyed in time: a hang on a machine that keeps up, the machine's on one that does not.
            self.of_time += 1;
        }
        if let Some(p) = problem {
            self.problems.push((rec.at, rec.peer.clone(), p));
        }
    }

    /// A peer quiet for longer than its sampling keeps it (it counts its streams every `streams_interval`) may be
    /// hanging: the case listens until its silence would count.
    fn pending(&self, ctx: &Context, now: Micros) -> Option<Pending> {
        let silence_us = self.settings.silence.as_micros() as Micros;
        // A live peer with a connection says something at least every sampling period (its stream counts):
        // quiet for two, it may be hanging.
        let quiet_us = 2 * ctx.case.streams_interval().as_micros() as Micros;
        let quiet = self
            .last_event
            .iter()
            .filter(|(peer, last)| {
                now - **last > quiet_us
                    && self.open.get(*peer).is_some_and(|n| *n > 0)
                    && !self.told_to_stop.contains(*peer)
                    && !self.down.contains(*peer)
            })
            .map(|(_, last)| last + silence_us + 1);
        Pending::latest(now, quiet, |n| format!("{n} peer(s) quiet, perhaps going silent"))
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        // Liveness always judges: a record with nothing wrong in exits and stderr is the verdict.
        let coverage = format!(
            "{} peers watched for {}, {} stopped on request",
            count(ctx.peers.len()),
            seconds(self.last - self.first.unwrap_or(self.last)),
            count(self.stopped_on_request.len())
        );
        let Some((at, peer, what)) = self.problems.first() else {
            return CheckResult::passed(
                NAME,
                vec![format!(
                    "{} peer(s) ran until told to stop and exited cleanly",
                    ctx.peers.len()
                )],
            )
            .covering(coverage);
        };
        let evidence = self
            .problems
            .iter()
            .map(|(t, p, w)| format!("{} {} {}", clock(*t), ctx.describe(p), w.trim_end_matches(" from")))
            .collect();
        let more = match self.problems.len() {
            1 => String::new(),
            n => format!(" ({} problems in all)", n),
        };
        let result = CheckResult::failed(
            NAME,
            // What a peer wrote is quoted in part here, whole in the evidence.
            format!("{} {} {}{more}", ctx.describe(peer), clip(what, QUOTE), match what.ends_with(" from") {
                true => clock(*at),
                false => format!("at {}", clock(*at)),
            }),
            evidence,
        );
        match self.of_time == self.problems.len() {
            true => result.timing(),
            false => result,
        }
        .at(*at)
        .involving([peer.clone()])
        .covering(coverage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Stream;
    use crate::testkit::Kit;
    use crate::results::Status;

    fn run(events: &[Recorded], kit: &Kit) -> CheckResult {
        let mut c = Liveness::new(Settings::default());
        events.iter().for_each(|e| c.observe(e));
        c.verdict(&kit.context())
    }

    #[test]
    fn a_hundred_panicking_peers_fail_in_one_short_line_quoting_the_first() {
        let kit = Kit::many(60, 60);
        let long = format!("panicked at src/main.rs:1:1: {}", "x".repeat(500));
        let ev: Vec<Recorded> = kit.case.peers.iter().enumerate().map(|(i, p)| kit.stderr(1_000_000 + i as Micros, &p.name, &long)).collect();
        let r = run(&ev, &kit);
        let msg = r.message.unwrap();
        assert!(msg.starts_with("rust-1 (rust-libp2p 0.57.1) panicked: panicked at src/main.rs:1:1: xxx"), "{msg}");
        assert!(msg.ends_with("… at 00:00:01.000 (120 problems in all)"), "{msg}");
        assert!(msg.chars().count() <= crate::results::MAX_MESSAGE, "{msg}");
        // Each line whole in the evidence.
        assert_eq!(r.evidence.len(), 120);
        assert!(r.evidence[0].ends_with(&long));
    }

    #[test]
    fn a_peer_the_time_line_kills_or_freezes_is_neither_crashed_nor_silent() {
        use crate::events::{Fault, PeerEvent};
        let kit = Kit::new(&["rust-1", "go-1"]);
        let s = 1_000_000;
        let tick = |ts, peer: &str| kit.event(ts, peer, PeerEvent::Stopped);
        let ev = vec![
            tick(s, "go-1"),
            kit.fault(2 * s, "go-1", Fault::Kill),
            kit.exited(2 * s + 100, "go-1", Some(137), true),
            kit.fault(20 * s, "go-1", Fault::Restart),
            tick(20 * s + 500_000, "go-1"),
            tick(s, "rust-1"),
            kit.fault(2 * s, "rust-1", Fault::Pause),
            kit.fault(20 * s, "rust-1", Fault::Resume),
            tick(20 * s + 500_000, "rust-1"),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        // The restarted process's own exit is judged again.
        let mut ev = ev;
        ev.push(kit.exited(21 * s, "go-1", Some(137), true));
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        assert!(r.message.unwrap().contains("exited with status 137 after stop"));
    }

    #[test]
    fn clean_stop_passes() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.stderr(1, "go-1", "INFO all good"),
            kit.exited(2, "rust-1", Some(0), true),
            kit.exited(2_500_000, "go-1", Some(0), true),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Passed);
        assert_eq!(
            r.coverage.as_deref(),
            Some("2 peers watched for 2.5 s, 2 stopped on request")
        );
    }

    #[test]
    fn lines_beyond_the_contract_are_no_failure_but_lines_that_break_it_are() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let line = |what: Observation| Recorded { at: 1, peer: "go-1".into(), what };
        let mut ev = vec![
            line(Observation::Unknown {
                stream: Stream::Stdout,
                line_no: 3,
                line: r#"{"ts":1,"peer":"A","event":"teleported"}"#.into(),
                what: "an event it does not know: `teleported`".into(),
            }),
            kit.exited(2, "rust-1", Some(0), true),
            kit.exited(3, "go-1", Some(0), true),
        ];
        assert_eq!(run(&ev, &kit).status, Status::Passed);
        ev.insert(
            0,
            line(Observation::Malformed {
                stream: Stream::Stdout,
                line_no: 2,
                line: r#"{"ts":1,"peer":"A","event":"message"}"#.into(),
                error: "\"topic\" is a required property".into(),
            }),
        );
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        let m = r.message.unwrap();
        assert!(m.contains("line 2") && m.contains("\"topic\" is a required property"), "{m}");
    }

    #[test]
    fn an_empty_record_is_judged() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let r = run(&[], &kit);
        assert_eq!(r.status, Status::Passed);
        assert_eq!(
            r.coverage.as_deref(),
            Some("2 peers watched for 0 s, 0 stopped on request")
        );
    }

    #[test]
    fn rust_panic_fails() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let ev = [
            kit.stderr(
                1,
                "rust-1",
                "thread 'tokio-runtime-worker' panicked at src/main.rs:3:5:",
            ),
            kit.exited(2, "rust-1", Some(101), false),
        ];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert!(r
            .message
            .unwrap()
            .starts_with("rust-1 (rust-libp2p 0.57.1) panicked: thread"));
        assert_eq!(r.evidence.len(), 2);
        assert!(!r.timing, "a panic is no failure of time");
    }

    #[test]
    fn go_fatal_error_and_early_exit_fail() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        assert_eq!(
            run(
                &[kit.stderr(1, "go-1", "fatal error: concurrent map writes")],
                &kit
            )
            .status,
            Status::Failed
        );
        let r = run(&[kit.exited(5, "go-1", Some(0), false)], &kit);
        assert!(r.message.unwrap().contains("before it was told to stop"));
    }

    #[test]
    fn a_peer_silent_for_long_before_stop_fails() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let tick = |t| kit.event(t, "go-1", crate::events::PeerEvent::Stopped);
        let opened = kit.opened(1_000_000, "go-1", "rust-1", "c1");
        let ev = [opened.clone(), tick(2_000_000), tick(15_000_000)];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed);
        assert!(r.timing, "a silence is a failure of time");
        assert!(r.message.unwrap().starts_with(
            "go-1 (go-libp2p v0.51.0) went silent: no event for 13.0 s from 00:00:02.000"
        ));
        // Silence after `stop` is expected.
        let stop = kit.command(2_500_000, "go-1", r#"{"cmd":"stop"}"#);
        assert_eq!(run(&[opened.clone(), tick(2_000_000), stop, tick(15_000_000)], &kit).status, Status::Passed);
        // Nor is a peer's without a connection: it has no streams to sample (it waits for the others to start).
        assert_eq!(run(&[tick(2_000_000), tick(15_000_000)], &kit).status, Status::Passed);
        let closed = kit.closed(1_500_000, "go-1", "rust-1", "c1");
        assert_eq!(run(&[opened.clone(), closed, tick(2_000_000), tick(15_000_000)], &kit).status, Status::Passed);
        // Silence is the peer's own: lines stamped a second apart that reached a busy runner 13 s apart are not.
        let mut late = tick(3_000_000);
        late.at = 16_000_000;
        assert_eq!(run(&[opened, tick(2_000_000), late], &kit).status, Status::Passed);
    }

    #[test]
    fn a_peer_that_does_not_obey_stop_in_time_fails_of_time() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let killed = |t, peer: &str| crate::events::Recorded {
            at: t,
            peer: peer.into(),
            what: Observation::Killed { reason: "did not exit within 10 s of stop".into() },
        };
        let stop = kit.command(1_000_000, "go-1", r#"{"cmd":"stop"}"#);
        let ev = [stop.clone(), killed(11_000_000, "go-1"), kit.exited(11_100_000, "go-1", Some(137), true)];
        let r = run(&ev, &kit);
        assert_eq!(r.status, Status::Failed, "{r:?}");
        assert!(r.timing, "a stop not obeyed in time is a failure of time");
        assert!(r.message.unwrap().contains("did not exit within 10 s of stop: killed"));
        // The SIGKILL's status is the runner's doing, not a second problem.
        assert_eq!(r.evidence.len(), 1, "{:?}", r.evidence);
        // Beside a panic it is no longer only a matter of time.
        let ev = [kit.stderr(500_000, "go-1", "panic: runtime error"), stop, killed(11_000_000, "go-1")];
        assert!(!run(&ev, &kit).timing);
    }

    #[test]
    fn a_peer_killed_by_its_memory_limit_is_out_of_memory() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let oom = |expected| Recorded {
            at: 3_000_000,
            peer: "go-1".into(),
            what: Observation::Exited {
                code: Some(137),
                expected,
                oom_killed: true,
                peak_memory_bytes: Some(256 << 20),
                memory_limit_bytes: Some(256 << 20),
            },
        };
        for expected in [false, true] {
            let r = run(&[oom(expected)], &kit);
            assert_eq!(r.status, Status::Failed);
            assert_eq!(
                r.message.unwrap(),
                "go-1 (go-libp2p v0.51.0) was killed: out of memory (limit 256 MiB, peak 256 MiB) at 00:00:03.000"
            );
        }
    }

    #[test]
    fn garbage_on_an_event_stream_fails_naming_the_stream_and_line() {
        let kit = Kit::new(&["rust-1"]);
        for (stream, named) in [
            (Stream::Stdout, "stdout line 7"),
            (Stream::EventsFile, "events file line 7"),
        ] {
            let ev = [Recorded {
                at: 1,
                peer: "rust-1".into(),
                what: Observation::Malformed {
                    stream,
                    line_no: 7,
                    line: "hello".into(),
                    error: "expected".into(),
                },
            }];
            let r = run(&ev, &kit);
            assert_eq!(r.status, Status::Failed);
            assert!(r.message.unwrap().contains(named), "{named}");
        }
    }
}
