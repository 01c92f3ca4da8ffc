//! Checks: each judges one property of a case from its record of observations.
//!
//! A check is one file implementing [`Check`]; adding one means writing that file, a field in [`Settings`] and a
//! line in [`Settings::instantiate`].

mod connections;
mod delivery;
mod downgrade;
mod evidence;
mod liveness;
mod mesh;
mod streams;
mod subscriptions;

use serde::{Deserialize, Serialize};

use crate::cases::Case;
use crate::events::{Micros, Recorded};
use crate::matrix::KnownIssue;
use crate::results::{CheckResult, PeerReport, Status};

/// Check settings as written in a matrix (top level or per network). A check that is absent does not run, except
/// when the whole `checks` key is absent: then every check runs with its defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_protocol_downgrade: Option<downgrade::Settings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<delivery::Settings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<subscriptions::Settings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<mesh::Settings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<connections::Settings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<streams::Settings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<liveness::Settings>,
}

impl Settings {
    /// Every check with its default settings.
    pub fn all() -> Self {
        Self {
            no_protocol_downgrade: Some(Default::default()),
            delivery: Some(Default::default()),
            subscriptions: Some(Default::default()),
            mesh: Some(Default::default()),
            connections: Some(Default::default()),
            streams: Some(Default::default()),
            liveness: Some(Default::default()),
        }
    }

    /// `over`'s entries replace `self`'s, check by check.
    pub fn overridden_by(&self, over: &Settings) -> Settings {
        Settings {
            no_protocol_downgrade: over
                .no_protocol_downgrade
                .clone()
                .or_else(|| self.no_protocol_downgrade.clone()),
            delivery: over.delivery.clone().or_else(|| self.delivery.clone()),
            subscriptions: over
                .subscriptions
                .clone()
                .or_else(|| self.subscriptions.clone()),
            mesh: over.mesh.clone().or_else(|| self.mesh.clone()),
            connections: over
                .connections
                .clone()
                .or_else(|| self.connections.clone()),
            streams: over.streams.clone().or_else(|| self.streams.clone()),
            liveness: over.liveness.clone().or_else(|| self.liveness.clone()),
        }
    }

    /// The checks to run, in report order.
    pub fn instantiate(&self) -> Vec<Box<dyn Check>> {
        let mut checks: Vec<Box<dyn Check>> = Vec::new();
        if let Some(s) = &self.no_protocol_downgrade {
            checks.push(Box::new(downgrade::NoProtocolDowngrade::new(s.clone())));
        }
        if let Some(s) = &self.delivery {
            checks.push(Box::new(delivery::Delivery::new(s.clone())));
        }
        if let Some(s) = &self.subscriptions {
            checks.push(Box::new(subscriptions::Subscriptions::new(s.clone())));
        }
        if let Some(s) = &self.mesh {
            checks.push(Box::new(mesh::Mesh::new(s.clone())));
        }
        if let Some(s) = &self.connections {
            checks.push(Box::new(connections::Connections::new(s.clone())));
        }
        if let Some(s) = &self.streams {
            checks.push(Box::new(streams::Streams::new(s.clone())));
        }
        if let Some(s) = &self.liveness {
            checks.push(Box::new(liveness::Liveness::new(s.clone())));
        }
        checks
    }
}

/// What a check knows of the case besides the record: who the peers are and what was expected of them.
pub struct Context<'a> {
    pub case: &'a Case,
    pub peers: &'a [PeerReport],
}

impl Context<'_> {
    /// `rust-1 (rust-libp2p 0.57.1)` for a peer name.
    pub fn describe(&self, name: &str) -> String {
        match self.peers.iter().find(|p| p.name == name) {
            Some(p) => format!("{} ({})", p.name, p.implementation_label()),
            None => name.to_owned(),
        }
    }

    /// The case's name for a peer id, or the id itself when it is not one of the case's peers.
    pub fn name_of(&self, peer_id: &str) -> String {
        self.peers
            .iter()
            .find(|p| p.peer_id.as_deref() == Some(peer_id))
            .map(|p| p.name.clone())
            .unwrap_or_else(|| peer_id.to_owned())
    }
}

/// One property judged over a case.
pub trait Check: Send {
    /// The name used in matrices and reports (`no-protocol-downgrade`).
    fn name(&self) -> &'static str;
    /// Sees every observation of the case in arrival order.
    fn observe(&mut self, rec: &Recorded);
    /// The verdict over everything observed.
    fn verdict(&self, ctx: &Context) -> CheckResult;
    /// While the case runs: the failure already certain at `now`, if any. Checks whose verdict can only get
    /// worse with more observations use their verdict; a check that waits for something (a delivery within a
    /// deadline) says only what is overdue.
    fn failing(&self, ctx: &Context, now: Micros) -> Option<String> {
        let _ = now;
        let v = self.verdict(ctx);
        (v.status == Status::Failed).then(|| v.message.unwrap_or_default())
    }
}

/// Runs the case's checks over a finished record, then applies its known issues.
pub fn evaluate(record: &[Recorded], ctx: &Context) -> Vec<CheckResult> {
    let mut checks = ctx.case.checks.instantiate();
    for rec in record {
        for c in checks.iter_mut() {
            c.observe(rec);
        }
    }
    let mut results: Vec<CheckResult> = checks.iter().map(|c| c.verdict(ctx)).collect();
    evidence::attach(record, ctx, &mut results);
    for result in &mut results {
        if let Some(known) = ctx
            .case
            .known_issues
            .iter()
            .find(|k| k.check == result.name)
        {
            apply_known_issue(result, known);
        }
    }
    results
}

/// A failure that is known becomes a skip naming the issue; a pass where a failure was expected becomes a failure,
/// so that nobody forgets to close the issue.
fn apply_known_issue(result: &mut CheckResult, known: &KnownIssue) {
    result.known_issue = Some(known.reference.clone());
    match result.status {
        Status::Failed => {
            result.status = Status::Known;
            let what = result.message.take().unwrap_or_default();
            result.message = Some(format!("known issue {}: {what}", known.reference));
        }
        Status::Passed => {
            result.status = Status::Failed;
            result.message = Some(format!(
                "known issue {} no longer reproduces: `{}` passed where it was expected to fail; close the issue or remove it from the matrix",
                known.reference, result.name
            ));
        }
        // No verdict either way: whether the issue still reproduces is not known.
        Status::Known | Status::Skipped | Status::Inconclusive => {}
    }
}

/// Every check of a case, skipped for one reason (a peer cannot do what the case needs).
pub fn skip_all(settings: &Settings, reason: &str) -> Vec<CheckResult> {
    settings
        .instantiate()
        .iter()
        .map(|c| CheckResult::skipped(c.name(), reason.to_owned()))
        .collect()
}

/// `HH:MM:SS.mmm` UTC for a Unix-microsecond time, for evidence lines.
pub fn clock(us: crate::events::Micros) -> String {
    let secs = us.div_euclid(1_000_000);
    let ms = us.rem_euclid(1_000_000) / 1000;
    let day = secs.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        ms
    )
}

#[cfg(test)]
pub(crate) mod testkit;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testkit::Kit;

    #[test]
    fn known_issues_turn_failures_into_skips_and_passes_into_failures() {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        kit.case.checks = Settings::all();
        kit.case.known_issues = vec![KnownIssue {
            reference: "rust-libp2p#6047".into(),
            check: "delivery".into(),
            cases: None,
            note: None,
        }];
        // go-1 misses rust-1's message.
        let record: Vec<Recorded> = kit.publish(1_000, "rust-1", "rust-1/0").into();
        let results = evaluate(&record, &kit.context());
        let delivery = results.iter().find(|r| r.name == "delivery").unwrap();
        assert_eq!(delivery.status, Status::Known);
        assert!(
            delivery
                .message
                .as_deref()
                .unwrap()
                .starts_with("known issue rust-libp2p#6047: go-1"),
            "{delivery:?}"
        );

        let mut record = record;
        record.push(kit.message(2_000, "go-1", "rust-1", "rust-1/0", 1_000));
        let results = evaluate(&record, &kit.context());
        let delivery = results.iter().find(|r| r.name == "delivery").unwrap();
        assert_eq!(delivery.status, Status::Failed);
        assert!(
            delivery
                .message
                .as_deref()
                .unwrap()
                .contains("no longer reproduces"),
            "{delivery:?}"
        );
        // Checks without a known issue are untouched (with this little record most have nothing to judge).
        assert!(results
            .iter()
            .filter(|r| r.name != "delivery")
            .all(
                |r| matches!(r.status, Status::Passed | Status::Inconclusive)
                    && r.known_issue.is_none()
            ));
    }
}
