//! `commands`: every command the runner sent was carried out. A peer that answers a command with `error` (naming
//! its `cmd_id`) failed a step of the script, and the case with it, unless the step expected that error. Errors of
//! the library's own activity (no command named) are evidence, not failures; `unsupported` answers mark a step
//! as not exercised.


use super::{Check, Context};
use crate::events::{Command, CommandLine, Micros, Observation, PeerEvent, Recorded, Sent};
pub use crate::matrix::checks::commands::Settings;
use crate::peers::Pending;
use crate::results::{clip, CheckResult};

pub const NAME: &str = "commands";

struct Answer {
    peer: String,
    cmd_id: Option<String>,
    cmd: Option<String>,
    message: String,
    at: Micros,
}

#[derive(Default)]
pub struct Commands {
    sent: Sent,
    count: usize,
    errors: Vec<Answer>,
    unsupported: usize,
    /// Commands that could not be handed over (the peer stopped reading).
    undelivered: Vec<Answer>,
}

impl Commands {
    pub fn new(_: Settings) -> Self {
        Self::default()
    }
}

/// `unsubscribe (c17, topic meshgate)`: a command as a maintainer reads it.
fn describe(line: &CommandLine, ctx: &Context) -> String {
    let mut args: Vec<String> = line.cmd_id.iter().cloned().collect();
    match &line.command {
        Command::Subscribe { topic } | Command::Unsubscribe { topic } => args.push(format!("topic {topic}")),
        Command::Publish { topic, id, .. } => args.push(format!("topic {topic}, message {id}")),
        Command::Disconnect { peer: Some(p) } => args.push(format!("peer {}", ctx.name_of(p))),
        Command::Disconnect { peer: None } => args.push("every peer".into()),
        Command::OpenStreams { peer, count } => args.push(format!("{count} to {}", ctx.name_of(peer))),
        Command::Dial { addr, .. } => args.push(addr.clone()),
        Command::DropProtocol { protocol } => args.push(protocol.clone()),
        Command::Request { peer, id, .. } => args.push(format!("request {id} to {}", ctx.name_of(peer))),
        Command::AutonatProbe { server, version, vanish, .. } => args.push(format!(
            "autonat {} to {}{}",
            version.as_str(),
            ctx.name_of(server),
            if *vanish { ", vanishing" } else { "" }
        )),
        Command::Stop => {}
    }
    format!("`{}` ({})", line.command.name(), args.join(", "))
}

impl Check for Commands {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, rec: &Recorded) {
        if self.sent.observe(rec) {
            self.count += 1;
            return;
        }
        if let Observation::Undelivered { cmd_id, reason } = &rec.what {
            self.undelivered.push(Answer {
                peer: rec.peer.clone(),
                cmd_id: Some(cmd_id.clone()),
                cmd: None,
                message: reason.clone(),
                at: rec.at,
            });
            return;
        }
        match rec.event() {
            Some(PeerEvent::Error {
                cmd,
                cmd_id,
                message,
            }) => self.errors.push(Answer {
                peer: rec.peer.clone(),
                cmd_id: cmd_id.clone(),
                cmd: cmd.clone(),
                message: message.clone(),
                at: rec.time(),
            }),
            Some(PeerEvent::Unsupported {
                cmd_id: Some(_), ..
            }) => self.unsupported += 1,
            _ => {}
        }
    }

    /// Nothing: a peer answers a command at once and in order, and the answers that take time (a dial, a request)
    /// are what `connectivity` and `request-response` wait for.
    fn pending(&self, _: &Context, _: Micros) -> Option<Pending> {
        None
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let (mut failed, mut expected, mut own) = (Vec::new(), 0, Vec::new());
        for e in &self.errors {
            match (self.sent.get(&e.peer, e.cmd_id.as_ref()), &e.cmd_id) {
                (Some((_, true)), _) => expected += 1,
                (Some((cmd, false)), _) => failed.push((e, describe(cmd, ctx))),
                // A peer naming a command id the runner never sent it breaks the contract.
                (None, Some(id)) => failed.push((e, format!("an unknown command ({id})"))),
                // No id: the library's own activity (or a peer that predates command ids): evidence only.
                (None, None) => own.push(e),
            }
        }
        let mut coverage = format!(
            "{} command(s) sent, {} answered with an error ({expected} expected)",
            self.count,
            failed.len() + expected
        );
        if self.unsupported > 0 {
            coverage.push_str(&format!(", {} not exercised (unsupported)", self.unsupported));
        }
        if !own.is_empty() {
            coverage.push_str(&format!("; {} error(s) of the libraries' own activity", own.len()));
        }
        let own_evidence = own.iter().take(5).map(|e| {
            format!(
                "{} {}: {}{}",
                super::clock(e.at),
                e.peer,
                e.cmd.as_deref().map(|c| format!("({c}) ")).unwrap_or_default(),
                e.message
            )
        });
        if let Some(u) = self.undelivered.first() {
            // A write that did not finish in time: a peer starved of CPU reads its stdin late too.
            return CheckResult::failed(
                NAME,
                format!("{} {}", ctx.describe(&u.peer), u.message),
                vec![format!("{} {}: command {} undelivered", super::clock(u.at), u.peer, u.cmd_id.as_deref().unwrap_or("?"))],
            )
            .timing()
            .involving([u.peer.clone()])
            .at(u.at)
            .covering(coverage);
        }
        if self.count == 0 {
            return CheckResult::inconclusive(NAME, "the runner sent no command".into(), vec![]).covering(coverage);
        }
        let Some((first, what)) = failed.first() else {
            return CheckResult::passed(NAME, own_evidence.collect()).covering(coverage);
        };
        let mut evidence: Vec<String> = failed
            .iter()
            .take(10)
            .map(|(e, what)| format!("{} {} answered {what}: {}", super::clock(e.at), e.peer, e.message))
            .collect();
        if failed.len() > 10 {
            evidence.push(format!("… and {} more", failed.len() - 10));
        }
        evidence.extend(own_evidence);
        let more = match failed.len() {
            1 => String::new(),
            n => format!(" ({} more command(s) failed)", n - 1),
        };
        CheckResult::failed(
            NAME,
            // The library's text is quoted in part here, whole in the evidence.
            format!("{} answered {what} with error: {}{more}", ctx.describe(&first.peer), clip(&first.message, 80)),
            evidence,
        )
        .involving([first.peer.clone()])
        .at(first.at)
        .covering(coverage)
    }
}

/// The steps a peer answered `unsupported` to, one line each, for the case's result.
pub fn unexercised(record: &[Recorded]) -> Vec<String> {
    let mut sent = Sent::default();
    let mut out = Vec::new();
    for rec in record {
        if sent.observe(rec) {
            continue;
        }
        if let Observation::NotRun { step, reason } = &rec.what {
            out.push((format!("{step} not run: {reason}"), 1));
            continue;
        }
        if let Some(PeerEvent::Unsupported {
            feature,
            reason,
            cmd_id: Some(id),
        }) = rec.event()
        {
            let cmd = sent.get(&rec.peer, Some(id)).map_or("?", |(line, _)| line.command.name());
            let line = format!("{}: `{cmd}` not exercised: {feature} ({reason})", rec.peer);
            // The same gap once per peer and command, with how often.
            match out.iter_mut().find(|(l, _)| *l == line) {
                Some((_, n)) => *n += 1,
                None => out.push((line, 1)),
            }
        }
    }
    out.into_iter()
        .map(|(l, n)| if n > 1 { format!("{l}, {n} times") } else { l })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Kit;
    use crate::results::Status;

    fn error(kit: &Kit, peer: &str, cmd_id: Option<&str>, message: &str) -> Recorded {
        kit.event(
            5,
            peer,
            PeerEvent::Error {
                cmd: Some("unsubscribe".into()),
                cmd_id: cmd_id.map(Into::into),
                message: message.into(),
            },
        )
    }

    fn judge(kit: &Kit, record: &[Recorded]) -> CheckResult {
        let mut c = Commands::new(Settings::default());
        for r in record {
            c.observe(r);
        }
        c.verdict(&kit.context())
    }

    #[test]
    fn an_error_answering_a_command_fails_unless_expected() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let sent = kit.command(1, "go-1", r#"{"cmd":"unsubscribe","cmd_id":"c7","topic":"meshgate"}"#);
        let record = vec![sent.clone(), error(&kit, "go-1", Some("c7"), "not subscribed")];
        let v = judge(&kit, &record);
        assert_eq!(v.status, Status::Failed, "{v:?}");
        assert!(!v.timing, "the peer said why");
        let m = v.message.unwrap();
        assert!(m.contains("go-1") && m.contains("`unsubscribe` (c7, topic meshgate)") && m.contains("not subscribed"), "{m}");

        // A command the peer did not read in time: a failure of time.
        let undelivered = Recorded {
            at: 5,
            peer: "go-1".into(),
            what: Observation::Undelivered { cmd_id: "c7".into(), reason: "stopped reading its commands".into() },
        };
        let v = judge(&kit, &[record[0].clone(), undelivered]);
        assert!(v.status == Status::Failed && v.timing, "{v:?}");

        let mut expected = sent;
        if let Observation::Command { expect_error, .. } = &mut expected.what {
            *expect_error = true;
        }
        let v = judge(&kit, &[expected, error(&kit, "go-1", Some("c7"), "not subscribed")]);
        assert_eq!(v.status, Status::Passed, "{v:?}");
        assert!(v.coverage.unwrap().contains("1 expected"));
    }

    #[test]
    fn errors_of_the_librarys_own_activity_are_evidence() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let record = vec![
            kit.command(1, "go-1", r#"{"cmd":"stop","cmd_id":"c1"}"#),
            error(&kit, "go-1", None, "bad payload"),
        ];
        let v = judge(&kit, &record);
        assert_eq!(v.status, Status::Passed, "{v:?}");
        assert!(v.evidence[0].contains("bad payload"));
        // Nothing sent: nothing judged.
        assert_eq!(judge(&kit, &[]).status, Status::Inconclusive);
    }

    #[test]
    fn unsupported_answers_are_listed_as_not_exercised() {
        let kit = Kit::new(&["rust-1", "go-1"]);
        let unsupported = || {
            kit.event(
                2,
                "go-1",
                PeerEvent::Unsupported {
                    feature: "dial-mode-new".into(),
                    reason: "cannot force".into(),
                    cmd_id: Some("c3".into()),
                },
            )
        };
        let record = vec![
            kit.command(1, "go-1", r#"{"cmd":"dial","cmd_id":"c3","addr":"/ip4/1.2.3.4/tcp/1","mode":"new"}"#),
            unsupported(),
            unsupported(),
        ];
        assert_eq!(
            unexercised(&record),
            vec!["go-1: `dial` not exercised: dial-mode-new (cannot force), 2 times"]
        );
        assert_eq!(judge(&kit, &record).status, Status::Passed);
    }
}
