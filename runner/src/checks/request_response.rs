//! `request-response`: every request the runner asked a peer to send was answered. Per requester and responder:
//! how many requests were sent, answered, failed (with the library's own error texts) and left unanswered by the
//! end of the case, and the latency of the answers; the responder's `request_received` tells a request that never
//! reached it from one it read but whose answer was lost.

use std::collections::{BTreeMap, BTreeSet};

use super::delivery::latency_summary;
use super::evidence::count;
use super::{clock, Check, Context};
use crate::events::{Command, Micros, PeerEvent, Recorded, Sent};
pub use crate::matrix::checks::request_response::Settings;
use crate::matrix::timeline::Action;
use crate::peers::Pending;
use crate::results::{clip, CheckResult};

pub const NAME: &str = "request-response";

/// One request, from the runner's command on.
struct Request {
    requester: String,
    /// The responder's peer id, as the command names it.
    responder: String,
    at: Micros,
    outcome: Outcome,
}

enum Outcome {
    Pending,
    Answered { latency_us: Micros },
    Failed { error: String },
}

#[derive(Default)]
pub struct RequestResponse {
    sent: Sent,
    /// By request id (unique in a case).
    requests: BTreeMap<String, Request>,
    /// Request ids whose command the requester answered `unsupported`: not exercised, not judged.
    unsupported: BTreeSet<String>,
    /// (responder name, request id) for every request a responder read.
    received: BTreeSet<(String, String)>,
}

impl RequestResponse {
    pub fn new(_: Settings) -> Self {
        Self::default()
    }

    /// The id of the request a command answer names by its `cmd_id`.
    fn request_of(&self, peer: &str, cmd_id: &Option<String>) -> Option<String> {
        match self.sent.get(peer, cmd_id.as_ref())?.0.command {
            Command::Request { ref id, .. } => Some(id.clone()),
            _ => None,
        }
    }
}

/// What one requester -> responder pair came to.
#[derive(Default)]
struct Pair {
    sent: usize,
    answered: Vec<Micros>,
    /// Error text -> how many requests failed with it.
    failed: BTreeMap<String, usize>,
    unanswered: usize,
    /// Of the failed and unanswered, how many the responder read.
    lost_after_reading: usize,
    first_problem: Option<Micros>,
}

impl Pair {
    fn failing(&self) -> bool {
        !self.failed.is_empty() || self.unanswered > 0
    }

    fn failures(&self) -> usize {
        self.failed.values().sum()
    }

    /// `5 requests, 0 answered, 5 failed: "Failed to dial the requested peer"`.
    /// `brief`: at most two error texts, each cut short, for a failure's message; else all of them, whole.
    fn summary(&self, brief: bool) -> String {
        let mut s = format!("{} request(s), {} answered", self.sent, self.answered.len());
        if !self.failed.is_empty() {
            let texts: Vec<String> = self
                .failed
                .iter()
                .take(if brief { 2 } else { usize::MAX })
                .map(|(e, n)| {
                    let e = if brief { clip(e, 60) } else { e.clone() };
                    if self.failed.len() > 1 { format!("{n} x \"{e}\"") } else { format!("\"{e}\"") }
                })
                .collect();
            let others = if brief && self.failed.len() > 2 { format!(" and {} other error(s)", self.failed.len() - 2) } else { String::new() };
            s.push_str(&format!(", {} failed: {}{others}", self.failures(), texts.join(", ")));
        }
        if self.unanswered > 0 {
            s.push_str(&format!(", {} unanswered by the end of the case", self.unanswered));
        }
        s
    }
}

impl Check for RequestResponse {
    fn name(&self) -> &'static str {
        NAME
    }

    fn applies(&self, case: &crate::cases::Case) -> bool {
        case.peers.iter().any(|p| p.roles.request_response.is_some())
    }

    fn not_applicable(&self, case: &crate::cases::Case) -> Option<String> {
        let steps = case.incidents.iter().map(|i| i.as_step()).chain(case.timeline.iter().cloned());
        (!steps.into_iter().any(|s| matches!(s.action, Action::Request(_))))
            .then(|| "the case sends no requests".to_owned())
    }

    fn observe(&mut self, rec: &Recorded) {
        if self.sent.observe(rec) {
            if let Some(Command::Request { peer, id, .. }) = rec.command() {
                self.requests.insert(
                    id.clone(),
                    Request { requester: rec.peer.clone(), responder: peer.clone(), at: rec.at, outcome: Outcome::Pending },
                );
            }
            return;
        }
        let Some(event) = rec.event() else { return };
        let settle = |requests: &mut BTreeMap<String, Request>, id: &str, outcome: Outcome| {
            if let Some(r) = requests.get_mut(id) {
                if matches!(r.outcome, Outcome::Pending) {
                    r.outcome = outcome;
                }
            }
        };
        match event {
            PeerEvent::ResponseReceived { id, latency_us, .. } => {
                settle(&mut self.requests, id, Outcome::Answered { latency_us: *latency_us })
            }
            PeerEvent::RequestFailed { id, error, .. } => {
                settle(&mut self.requests, id, Outcome::Failed { error: error.clone() })
            }
            PeerEvent::RequestReceived { id, .. } => {
                self.received.insert((rec.peer.clone(), id.clone()));
            }
            // The command itself failed: the request never went out.
            PeerEvent::Error { message, cmd_id, .. } => {
                if let Some(id) = self.request_of(&rec.peer, cmd_id) {
                    settle(&mut self.requests, &id, Outcome::Failed { error: message.clone() });
                }
            }
            PeerEvent::Unsupported { cmd_id, .. } => {
                if let Some(id) = self.request_of(&rec.peer, cmd_id) {
                    self.unsupported.insert(id);
                }
            }
            _ => {}
        }
    }

    fn verdict(&self, ctx: &Context) -> CheckResult {
        let mut pairs: BTreeMap<(String, String), Pair> = BTreeMap::new();
        let mut latencies = Vec::new();
        for (id, r) in self.requests.iter().filter(|(id, _)| !self.unsupported.contains(*id)) {
            let responder = ctx.name_of(&r.responder);
            let pair = pairs.entry((r.requester.clone(), responder.clone())).or_default();
            pair.sent += 1;
            let read = self.received.contains(&(responder.clone(), id.clone()));
            match &r.outcome {
                Outcome::Answered { latency_us } => {
                    pair.answered.push(*latency_us);
                    latencies.push(*latency_us);
                    continue;
                }
                Outcome::Failed { error } => *pair.failed.entry(error.clone()).or_default() += 1,
                Outcome::Pending => pair.unanswered += 1,
            }
            pair.lost_after_reading += usize::from(read);
            pair.first_problem = Some(pair.first_problem.map_or(r.at, |t| t.min(r.at)));
        }
        latencies.sort_unstable();
        let sent: usize = pairs.values().map(|p| p.sent).sum();
        let coverage = format!(
            "{} request(s) over {} requester-responder pair(s); answers {}",
            count(sent),
            pairs.len(),
            latency_summary(&latencies)
        );
        if sent == 0 {
            let why = match self.unsupported.len() {
                0 => "no request was sent".to_owned(),
                n => format!("no request was sent: the requesters answered `unsupported` to all {n}"),
            };
            return CheckResult::inconclusive(NAME, why, vec![]).covering(coverage);
        }
        let mut evidence = Vec::new();
        for ((requester, responder), p) in &pairs {
            evidence.push(format!("{} -> {}: {}", ctx.describe(requester), ctx.describe(responder), p.summary(false)));
            let mut answered = p.answered.clone();
            answered.sort_unstable();
            if !answered.is_empty() {
                evidence.push(format!("  answers: latency {}", latency_summary(&answered)));
            }
            let problems = p.failures() + p.unanswered;
            if problems > 0 {
                evidence.push(format!(
                    "  {responder} read {} of the {problems} failed or unanswered request(s) ({})",
                    p.lost_after_reading,
                    if p.lost_after_reading == 0 {
                        "they never reached it"
                    } else if p.lost_after_reading == problems {
                        "the answers were lost"
                    } else {
                        "some never reached it, the others' answers were lost"
                    }
                ));
            }
        }
        let failing: Vec<(&(String, String), &Pair)> = pairs.iter().filter(|(_, p)| p.failing()).collect();
        let Some(((requester, responder), first)) = failing.first() else {
            return CheckResult::passed(NAME, evidence).covering(coverage);
        };
        let more = match failing.len() {
            1 => String::new(),
            n => format!(" ({n} pairs failing)"),
        };
        let at = first.first_problem.unwrap_or_default();
        // Requests never answered (none failing with an error) are failures of time.
        let unanswered_only = failing.iter().all(|(_, p)| p.failures() == 0);
        let result = CheckResult::failed(
            NAME,
            format!(
                "{} -> {} at {}: {}{more}",
                ctx.describe(requester),
                ctx.describe(responder),
                clock(at),
                first.summary(true)
            ),
            evidence,
        );
        match unanswered_only {
            true => result.timing(),
            false => result,
        }
        .at(at)
        .involving(failing.iter().flat_map(|((a, b), _)| [a.clone(), b.clone()]))
        .covering(coverage)
    }

    /// Requests neither answered nor failed: they have no deadline of their own (the library's timeout ends them),
    /// so the case listens for them as long as the drain lasts.
    fn pending(&self, _: &Context, now: Micros) -> Option<Pending> {
        let open = self
            .requests
            .iter()
            .filter(|(id, r)| matches!(r.outcome, Outcome::Pending) && !self.unsupported.contains(*id))
            .map(|_| Micros::MAX);
        Pending::latest(now, open, |n| format!("{n} request(s) unanswered"))
    }

    /// A failed request is certain as soon as it is reported; an unanswered one only at the end of the case.
    fn failing(&self, ctx: &Context, now: Micros) -> Option<String> {
        let _ = now;
        let (id, r) = self
            .requests
            .iter()
            .find(|(id, r)| matches!(r.outcome, Outcome::Failed { .. }) && !self.unsupported.contains(*id))?;
        let Outcome::Failed { error } = &r.outcome else { return None };
        Some(format!(
            "{} -> {}: request {id} failed: \"{error}\"",
            ctx.describe(&r.requester),
            ctx.describe(&ctx.name_of(&r.responder))
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Status;
    use crate::testkit::{id, Kit};

    fn kit() -> Kit {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        kit.case.timeline = vec![serde_saphyr::from_str("{peer: rust-1, do: {request: {to: go-1, count: 2}}}").unwrap()];
        kit
    }

    fn run(kit: &Kit, record: &[Recorded]) -> CheckResult {
        let mut c = RequestResponse::new(Settings::default());
        record.iter().for_each(|r| c.observe(r));
        c.verdict(&kit.context())
    }

    fn request(kit: &Kit, ts: Micros, n: u32) -> Recorded {
        kit.command(
            ts,
            "rust-1",
            &format!(r#"{{"cmd":"request","cmd_id":"c{n}","peer":"{}","id":"rust-1/r{n}","size":64}}"#, id("go-1")),
        )
    }

    fn answered(kit: &Kit, ts: Micros, n: u32, latency_us: Micros) -> [Recorded; 2] {
        [
            kit.event(ts - 1, "go-1", PeerEvent::RequestReceived { remote: id("rust-1"), id: format!("rust-1/r{n}"), size: 64 }),
            kit.event(ts, "rust-1", PeerEvent::ResponseReceived { remote: id("go-1"), id: format!("rust-1/r{n}"), size: 64, latency_us }),
        ]
    }

    fn failed(kit: &Kit, ts: Micros, n: u32) -> Recorded {
        kit.event(
            ts,
            "rust-1",
            PeerEvent::RequestFailed {
                remote: id("go-1"),
                id: format!("rust-1/r{n}"),
                error: "Failed to dial the requested peer".into(),
            },
        )
    }

    #[test]
    fn every_request_answered_passes_with_latencies() {
        let kit = kit();
        let mut record = vec![request(&kit, 1_000, 1), request(&kit, 1_000, 2)];
        record.extend(answered(&kit, 5_000, 1, 4_000));
        record.extend(answered(&kit, 9_000, 2, 8_000));
        let r = run(&kit, &record);
        assert_eq!(r.status, Status::Passed, "{r:?}");
        assert_eq!(
            r.evidence[0],
            "rust-1 (rust-libp2p 0.57.1) -> go-1 (go-libp2p v0.51.0): 2 request(s), 2 answered"
        );
        assert_eq!(r.evidence[1], "  answers: latency p50 4.0 ms, p99 8.0 ms, max 8.0 ms");
        assert!(r.coverage.as_deref().unwrap().starts_with("2 request(s) over 1 requester-responder pair(s)"), "{r:?}");
    }

    #[test]
    fn failed_requests_fail_with_the_library_text_and_say_whether_the_responder_read_them() {
        let kit = kit();
        let record = vec![request(&kit, 1_000, 1), request(&kit, 1_000, 2), failed(&kit, 2_000, 1), failed(&kit, 2_000, 2)];
        let r = run(&kit, &record);
        assert_eq!(r.status, Status::Failed);
        assert!(!r.timing, "the library said why");
        let m = r.message.as_deref().unwrap();
        assert_eq!(
            m,
            "rust-1 (rust-libp2p 0.57.1) -> go-1 (go-libp2p v0.51.0) at 00:00:00.001: 2 request(s), 0 answered, 2 failed: \"Failed to dial the requested peer\""
        );
        assert!(r.evidence.contains(&"  go-1 read 0 of the 2 failed or unanswered request(s) (they never reached it)".to_owned()), "{:?}", r.evidence);
        // Live, a failure is announced at once.
        let mut c = RequestResponse::new(Settings::default());
        record.iter().for_each(|x| c.observe(x));
        assert!(c.failing(&kit.context(), 3_000).unwrap().contains("request rust-1/r1 failed"));
    }

    #[test]
    fn an_unanswered_request_fails_only_at_the_end_and_a_read_one_lost_its_answer() {
        let kit = kit();
        let mut record = vec![request(&kit, 1_000, 1), request(&kit, 1_000, 2)];
        record.extend(answered(&kit, 5_000, 1, 4_000));
        record.push(kit.event(6_000, "go-1", PeerEvent::RequestReceived { remote: id("rust-1"), id: "rust-1/r2".into(), size: 64 }));
        let mut c = RequestResponse::new(Settings::default());
        record.iter().for_each(|x| c.observe(x));
        assert_eq!(c.failing(&kit.context(), 7_000), None, "it may still come");
        let r = c.verdict(&kit.context());
        assert_eq!(r.status, Status::Failed);
        assert!(r.timing, "an answer that never came is a failure of time");
        assert!(r.message.as_deref().unwrap().ends_with("2 request(s), 1 answered, 1 unanswered by the end of the case"), "{r:?}");
        assert!(r.evidence.contains(&"  go-1 read 1 of the 1 failed or unanswered request(s) (the answers were lost)".to_owned()), "{:?}", r.evidence);
    }

    #[test]
    fn nothing_sent_is_no_pass_and_a_case_without_requests_is_skipped() {
        let kit = kit();
        assert_eq!(run(&kit, &[]).status, Status::Inconclusive);
        // Requests answered `unsupported` are not exercised, and not judged.
        let unsupported = kit.event(
            1_500,
            "rust-1",
            PeerEvent::Unsupported { feature: "request-response".into(), reason: "no".into(), cmd_id: Some("c1".into()) },
        );
        let r = run(&kit, &[request(&kit, 1_000, 1), unsupported]);
        assert_eq!(r.status, Status::Inconclusive);
        assert!(r.message.as_deref().unwrap().contains("`unsupported` to all 1"), "{r:?}");
        let c = RequestResponse::new(Settings::default());
        assert_eq!(c.not_applicable(&kit.case), None);
        assert!(!c.applies(&Kit::new(&["rust-1", "go-1"]).case), "no peer has the role");
        let mut no_requests = kit.case.clone();
        no_requests.timeline.clear();
        no_requests.incidents.clear();
        assert_eq!(c.not_applicable(&no_requests).as_deref(), Some("the case sends no requests"));
    }
}
