//! Events written to stdout (or the control port's connection), one JSON object per line (the
//! contract's `EventLine`). Stdout carries nothing else.

use std::{
    io::Write,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

pub use contract::events::{Direction, Event, EventLine};

/// The one writer of events. Each event is written as one line and flushed at once, so the
/// runner sees it when it happens and lines never interleave.
pub struct Emitter {
    peer: String,
    out: Mutex<Box<dyn Write + Send>>,
}

impl Emitter {
    /// Writes to `out`: stdout, or the control port's connection.
    pub fn new(peer: String, out: Box<dyn Write + Send>) -> Self {
        Self {
            peer,
            out: Mutex::new(out),
        }
    }

    pub fn emit(&self, event: Event) {
        let line = render(&self.peer, now_us(), &event);
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            tracing::error!(error = %e, "cannot write event");
        }
    }
}

fn render(peer: &str, ts: u64, event: &Event) -> String {
    let mut line = EventLine {
        ts: i64::try_from(ts).unwrap_or(i64::MAX),
        peer: peer.to_owned(),
        event: event.clone(),
    }
    .to_json();
    line.push('\n');
    line
}

/// Unix time in microseconds.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn parsed(event: Event) -> Value {
        let line = render("12D3KooWA", 42, &event);
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        serde_json::from_str(&line).expect("valid JSON")
    }

    #[test]
    fn events_have_the_contract_shape() {
        assert_eq!(
            parsed(Event::Streams {
                remote: "12D3KooWB".into(),
                conn_id: "3".into(),
                inbound: 2,
                outbound: 1,
            }),
            json!({"ts":42,"peer":"12D3KooWA","event":"streams","remote":"12D3KooWB",
                   "conn_id":"3","inbound":2,"outbound":1})
        );
        assert_eq!(
            parsed(Event::ConnectionClosed {
                remote: "B".into(),
                conn_id: "1".into(),
                direction: Direction::Inbound,
                remote_addr: "/ip4/127.0.0.1/tcp/1".into(),
                reason: None,
            }),
            json!({"ts":42,"peer":"12D3KooWA","event":"connection_closed","remote":"B",
                   "conn_id":"1","direction":"inbound","remote_addr":"/ip4/127.0.0.1/tcp/1",
                   "reason":null})
        );
        assert_eq!(
            parsed(Event::error(None, None, "bad")),
            json!({"ts":42,"peer":"12D3KooWA","event":"error","cmd":null,"cmd_id":null,
                   "message":"bad"})
        );
        assert_eq!(
            parsed(Event::error(Some("dial"), Some("c7"), "refused")),
            json!({"ts":42,"peer":"12D3KooWA","event":"error","cmd":"dial","cmd_id":"c7",
                   "message":"refused"})
        );
        assert_eq!(
            parsed(Event::Unsupported {
                feature: "drop-protocol".into(),
                reason: "no".into(),
                cmd_id: Some("c8".into()),
            }),
            json!({"ts":42,"peer":"12D3KooWA","event":"unsupported","feature":"drop-protocol",
                   "reason":"no","cmd_id":"c8"})
        );
        assert_eq!(
            parsed(Event::ConnectionOpened {
                remote: "B".into(),
                conn_id: "1".into(),
                direction: Direction::Outbound,
                remote_addr: "/ip4/127.0.0.1/tcp/1".into(),
                security: Some("tls".into()),
                muxer: Some("yamux".into()),
            }),
            json!({"ts":42,"peer":"12D3KooWA","event":"connection_opened","remote":"B",
                   "conn_id":"1","direction":"outbound","remote_addr":"/ip4/127.0.0.1/tcp/1",
                   "security":"tls","muxer":"yamux"})
        );
        assert_eq!(
            parsed(Event::Stopped),
            json!({"ts":42,"peer":"12D3KooWA","event":"stopped"})
        );
    }
}
