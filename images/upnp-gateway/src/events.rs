//! What the gateway says on stdout: one `ParticipantLine` a line, nothing else (logs go to stderr).

use std::io::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use contract::participant::{ParticipantEvent, ParticipantLine};

/// The name the runner knows this participant by.
pub const PARTICIPANT: &str = "upnp-gateway";

/// Writes event lines whole, from any task.
pub struct Events {
    out: Mutex<std::io::Stdout>,
}

impl Events {
    pub fn new() -> Self {
        Events {
            out: Mutex::new(std::io::stdout()),
        }
    }

    pub fn emit(&self, event: ParticipantEvent) {
        let line = ParticipantLine {
            ts: now_micros(),
            participant: PARTICIPANT.to_owned(),
            event,
        };
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        // A closed stdout leaves nobody to tell: the runner is gone, and stopping is its job.
        let _ = writeln!(out, "{}", line.to_json()).and_then(|()| out.flush());
    }

    pub fn error(&self, message: impl Into<String>) {
        let message = message.into();
        eprintln!("upnp-gateway: {message}");
        self.emit(ParticipantEvent::Error { message });
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
