//! Judging a recorded case: [`case`] is the one place a case's verdict is made, when `meshgate run` ends a case and
//! when `meshgate judge` takes a stored one up again (`rejudge`), with check settings changed by `--set`
//! ([`overrides`]) if asked. What a run stores for this is in `stored`.

pub mod overrides;
mod timeline;

use crate::checks;
use crate::events::Recorded;
use crate::results::CaseResult;
use crate::stored::StoredCase;

/// The result of one attempt of a case, from how running it went and its record.
pub fn case(stored: &StoredCase, record: &[Recorded]) -> CaseResult {
    // The record is judged in the order things happened. It is kept in the order the runner took them in: the
    // runner stamps a peer's line as it arrives but records it when it gets to it, and what it does itself (a
    // command, a kill) when it does it. A runner behind on a large case (18 s at 400 peers on two cores) then
    // recorded `stop` before lines that arrived seconds earlier, and every peer looked silent until its stop.
    // Stable, so what shares a time stamp keeps its order.
    let sorted: Vec<Recorded>;
    let record = match record.is_sorted_by_key(|r| r.at) {
        true => record,
        false => {
            let mut r = record.to_vec();
            r.sort_by_key(|r| r.at);
            sorted = r;
            &sorted
        }
    };
    let case = &stored.case;
    let mut result = CaseResult {
        name: case.name.clone(),
        network: case.network.clone(),
        properties: case.properties(),
        peers: stored.peers.clone(),
        checks: Vec::new(),
        error: None,
        duration_ms: stored.duration_ms,
        logs: stored.logs.clone(),
        stopped_early: stored.stopped_early.clone(),
        unexercised: checks::unexercised(record),
        notes: stored.notes.clone(),
        timeline: None,
        phases: None,
    };
    if let Some(reason) = &stored.unsupported {
        result.checks = checks::skip_all(&case.checks, reason);
    } else if let (Some(error), None) = (&stored.error, stored.timed_out) {
        result.error = Some(error.clone());
    } else {
        if let Some(timeout) = stored.timed_out {
            // The case is errored, and what was recorded until then is still judged, for the evidence.
            result.error = Some(format!(
                "hit --case-timeout after {} s; the checks judged what was recorded until then",
                timeout.as_secs()
            ));
        }
        let ctx = checks::Context {
            case,
            peers: &result.peers,
        };
        result.checks = checks::evaluate(record, &ctx);
        // Whether the machine kept up decides whether the failures of time are verdicts at all.
        result.notes.extend(checks::host::judge(record, &mut result.checks));
        result.timeline = Some(timeline::build(record, &ctx, &result.checks));
    }
    result
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testkit::Kit;
    use crate::results::{CaseStatus, Status};

    #[test]
    fn the_record_is_judged_in_the_order_things_happened_not_the_order_they_were_recorded() {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        kit.case.edges = vec![(0, 1)];
        let s = 1_000_000;
        let mut record: Vec<Recorded> = kit.connect(s / 2, "rust-1", "go-1").into();
        let streams = |t, p: &str| kit.streams(t, p, if p == "rust-1" { "go-1" } else { "rust-1" }, "c1", 1, 1);
        // Both peers count their streams every second until 20 s; the runner, behind, recorded its `stop` at 20 s
        // before the lines that had arrived from 2 s on.
        record.extend([streams(s, "rust-1"), streams(s, "go-1")]);
        record.extend(["rust-1", "go-1"].map(|p| kit.command(20 * s, p, r#"{"cmd":"stop"}"#)));
        for t in 2..20 {
            record.extend([streams(t * s, "rust-1"), streams(t * s, "go-1")]);
        }
        let judged = case(&crate::stored::tests::stored(&kit), &record);
        let liveness = judged.checks.iter().find(|c| c.name == "liveness").unwrap();
        assert_eq!(liveness.status, Status::Passed, "{liveness:?}");
    }

    #[test]
    fn how_the_case_ran_decides_what_is_judged() {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        kit.case.edges = vec![(0, 1)];
        let mut record: Vec<Recorded> = kit.connect(500, "rust-1", "go-1").into();
        record.extend(kit.publish(1_000, "rust-1", "rust-1/0"));
        record.push(kit.message(1_600, "go-1", "rust-1", "rust-1/0", 1_100));
        let ran = crate::stored::tests::stored(&kit);
        let judged = case(&ran, &record);
        // Every check but those of roles no peer here has (request-response, autonat, nat-mapping).
        assert_eq!(judged.checks.len(), crate::matrix::checks::Settings::NAMES.len() - 3);
        assert!(judged.checks.iter().all(|c| !["request-response", "autonat", "nat-mapping"].contains(&c.name.as_str())));
        assert!(judged.timeline.is_some() && judged.error.is_none());
        let delivery = judged.checks.iter().find(|c| c.name == "delivery").unwrap();
        assert_eq!(delivery.status, Status::Passed, "{delivery:?}");

        let unsupported = StoredCase {
            unsupported: Some("go-1 cannot do muxer-mplex".into()),
            ..ran.clone()
        };
        let judged = case(&unsupported, &record);
        assert_eq!(judged.status(), CaseStatus::Skipped);
        assert!(judged
            .checks
            .iter()
            .all(|c| c.message.as_deref() == Some("go-1 cannot do muxer-mplex")));

        let errored = StoredCase {
            error: Some("peer go-1 did not start".into()),
            ..ran.clone()
        };
        let judged = case(&errored, &record);
        assert_eq!(judged.error.as_deref(), Some("peer go-1 did not start"));
        assert!(judged.checks.is_empty() && judged.timeline.is_none());

        // A case that timed out errors, and what it recorded is still judged.
        let timed_out = StoredCase {
            timed_out: Some(Duration::from_secs(90)),
            ..errored
        };
        let judged = case(&timed_out, &record);
        assert!(
            judged
                .error
                .as_deref()
                .unwrap()
                .starts_with("hit --case-timeout after 90 s"),
            "{judged:?}"
        );
        // Every check but those of roles no peer here has (request-response, autonat, nat-mapping).
        assert_eq!(judged.checks.len(), crate::matrix::checks::Settings::NAMES.len() - 3);
        assert!(judged.checks.iter().all(|c| !["request-response", "autonat", "nat-mapping"].contains(&c.name.as_str())));
        let delivery = judged.checks.iter().find(|c| c.name == "delivery").unwrap();
        assert_eq!(delivery.status, Status::Passed, "{delivery:?}");
    }
}
