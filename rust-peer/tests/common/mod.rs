//! Runs the built rust-peer binary as the runner does: configuration in the environment,
//! commands on stdin, events read from stdout. `MESHGATE_TEST_PEER` names another build to run
//! instead (e.g. one of images/rust/build for another libp2p).

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use contract::events::{Event, EventLine};

pub struct TestPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<EventLine>,
    /// Events read but not yet asked for.
    backlog: Vec<EventLine>,
    pub id: String,
    /// `started.versions`.
    pub versions: std::collections::BTreeMap<String, String>,
}

impl TestPeer {
    /// Starts a peer; waits for `started` unless it exits first (then `id` is empty).
    pub fn start(config: &str) -> Self {
        let binary = std::env::var("MESHGATE_TEST_PEER")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_rust-peer").to_owned());
        let mut child = Command::new(binary)
            .env(contract::config::CONFIG_VAR, config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rust-peer");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event: EventLine = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not an event line: {line}: {e}"));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut peer = Self {
            child,
            stdin,
            events,
            backlog: Vec::new(),
            id: String::new(),
            versions: Default::default(),
        };
        if let Some(started) = peer.try_expect(Duration::from_secs(30), |e| {
            matches!(e, Event::Started { .. })
        }) {
            peer.id = started.peer;
            if let Event::Started { versions, .. } = started.event {
                peer.versions = versions;
            }
        }
        peer
    }

    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("write command");
        stdin.flush().expect("flush command");
    }

    /// The first event (backlog first) that `matches`, within `timeout`.
    pub fn try_expect(
        &mut self,
        timeout: Duration,
        matches: impl Fn(&Event) -> bool,
    ) -> Option<EventLine> {
        if let Some(i) = self.backlog.iter().position(|e| matches(&e.event)) {
            return Some(self.backlog.remove(i));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok(event) if matches(&event.event) => return Some(event),
                Ok(event) => self.backlog.push(event),
                Err(_) => return None,
            }
        }
    }

    pub fn expect(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Event) -> bool,
    ) -> Event {
        match self.try_expect(timeout, matches) {
            Some(line) => line.event,
            None => panic!(
                "{what}: not seen within {timeout:?}; seen: {:#?}",
                self.backlog
            ),
        }
    }

    /// Every event read so far that `matches` (without waiting).
    pub fn seen(&mut self, matches: impl Fn(&Event) -> bool) -> Vec<Event> {
        while let Ok(event) = self.events.try_recv() {
            self.backlog.push(event);
        }
        self.backlog
            .iter()
            .filter(|e| matches(&e.event))
            .map(|e| e.event.clone())
            .collect()
    }

    /// This peer's dialable address on 127.0.0.1, with `/p2p/<id>`.
    pub fn loopback_addr(&mut self) -> String {
        let Event::Listening { addrs } = self.expect("listening", Duration::from_secs(10), |e| {
            matches!(e, Event::Listening { .. })
        }) else {
            unreachable!()
        };
        let addr = addrs
            .iter()
            .find(|a| a.starts_with("/ip4/127.0.0.1/"))
            .unwrap_or_else(|| panic!("no loopback address in {addrs:?}"));
        format!("{addr}/p2p/{}", self.id)
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "peer still running after {timeout:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tcp/noise/yamux peer configuration with extra top-level fields.
pub fn config(seed: u64, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    format!(
        r#"{{"seed":{seed},"listen_port":0,"transport":"tcp","security":"noise","muxer":"yamux"{extra}}}"#
    )
}
