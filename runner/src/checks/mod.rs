//! Checks: each judges one property of a case from its record of observations.
//!
//! A check is one file implementing [`Check`], judging by the settings the matrix model holds for it
//! (`matrix::checks`); adding one means writing that file, its settings there, and a line in the registry below.

mod autonat;
mod commands;
pub use commands::unexercised;
mod connections;
mod connectivity;
mod delivery;
mod downgrade;
pub mod evidence;
pub mod host;
mod liveness;
mod mesh;
mod nat_mapping;
mod outages;
mod request_response;
mod streams;
mod subscriptions;

use crate::cases::Case;
use crate::matrix::checks::{Settings, Toggle};
use crate::events::{Micros, Recorded};
use crate::matrix::KnownIssue;
use crate::peers::Pending;
use crate::results::{CheckResult, PeerReport, Status};

/// The registry: every check in report order, built from its (resolved) entry. Adding a check is a file, its settings
/// model (`matrix::checks`) and a line here.
macro_rules! registry {
    ($settings:expr, $f:ident) => {{
        let s = $settings;
        vec![
            $f(connectivity::NAME, &s.connectivity, |c| Box::new(connectivity::Connectivity::new(c))),
            $f(downgrade::NAME, &s.no_protocol_downgrade, |c| Box::new(downgrade::NoProtocolDowngrade::new(c))),
            $f(delivery::NAME, &s.delivery, |c| Box::new(delivery::Delivery::new(c))),
            $f(subscriptions::NAME, &s.subscriptions, |c| Box::new(subscriptions::Subscriptions::new(c))),
            $f(mesh::NAME, &s.mesh, |c| Box::new(mesh::Mesh::new(c))),
            $f(connections::NAME, &s.connections, |c| Box::new(connections::Connections::new(c))),
            $f(streams::NAME, &s.streams, |c| Box::new(streams::Streams::new(c))),
            $f(request_response::NAME, &s.request_response, |c| Box::new(request_response::RequestResponse::new(c))),
            $f(autonat::NAME, &s.autonat, |c| Box::new(autonat::Autonat::new(c))),
            $f(nat_mapping::NAME, &s.nat_mapping, |c| Box::new(nat_mapping::NatMapping::new(c))),
            $f(commands::NAME, &s.commands, |c| Box::new(commands::Commands::new(c))),
            $f(liveness::NAME, &s.liveness, |c| Box::new(liveness::Liveness::new(c))),
        ]
    }};
}

/// One check of the registry, on or off.
pub enum Entry {
    On(Box<dyn Check>),
    Off(&'static str),
}

fn entry<T: Clone + Default>(
    name: &'static str,
    setting: &Option<Toggle<T>>,
    make: impl Fn(T) -> Box<dyn Check>,
) -> Entry {
    match setting {
        Some(Toggle::Off) => Entry::Off(name),
        Some(Toggle::On(s)) => Entry::On(make(s.clone())),
        None => Entry::On(make(T::default())),
    }
}

#[cfg(test)]
fn name_of<T>(name: &'static str, _: &Option<Toggle<T>>, _: impl Fn(T) -> Box<dyn Check>) -> &'static str {
    name
}

impl Settings {
    /// Every check, on (with its settings) or off, in report order.
    pub fn entries(&self) -> Vec<Entry> {
        registry!(self, entry)
    }

    /// The checks to run, in report order.
    pub fn instantiate(&self) -> Vec<Box<dyn Check>> {
        self.entries()
            .into_iter()
            .filter_map(|e| match e {
                Entry::On(c) => Some(c),
                Entry::Off(_) => None,
            })
            .collect()
    }

    /// Whether the check of this name runs.
    pub fn is_on(&self, name: &str) -> bool {
        self.entries()
            .iter()
            .any(|e| matches!(e, Entry::On(c) if c.name() == name))
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

/// The checks of a case as the driver watches them while it runs.
pub fn watchers(settings: &Settings) -> Vec<Box<dyn crate::peers::Watch>> {
    settings
        .instantiate()
        .into_iter()
        .map(|c| Box::new(Live(c)) as Box<dyn crate::peers::Watch>)
        .collect()
}

struct Live(Box<dyn Check>);

impl crate::peers::Watch for Live {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn observe(&mut self, rec: &Recorded) {
        self.0.observe(rec)
    }

    fn failing(&self, case: &Case, peers: &[PeerReport], now: Micros) -> Option<String> {
        if !self.0.applies(case) || self.0.not_applicable(case).is_some() {
            return None;
        }
        self.0.failing(&Context { case, peers }, now)
    }

    fn pending(&self, case: &Case, peers: &[PeerReport], now: Micros) -> Option<Pending> {
        if !self.0.applies(case) || self.0.not_applicable(case).is_some() {
            return None;
        }
        self.0.pending(&Context { case, peers }, now)
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
    /// Whether the case has what the check is about at all: a check of a role no peer of the case has
    /// (request-response, AutoNAT, port mapping) is left out of the case's results rather than skipped, so that a
    /// gossipsub network's verdict does not list the roles it never had.
    fn applies(&self, case: &Case) -> bool {
        let _ = case;
        true
    }
    /// Why the case, by its design, gives the check nothing to judge (a network that publishes nothing, a
    /// topology without edges): it is then skipped with this reason, never passed.
    fn not_applicable(&self, case: &Case) -> Option<String> {
        let _ = case;
        None
    }
    /// While the case runs: the failure already certain at `now`, if any. Checks whose verdict can only get
    /// worse with more observations use their verdict; a check that waits for something (a delivery within a
    /// deadline) says only what is overdue.
    fn failing(&self, ctx: &Context, now: Micros) -> Option<String> {
        let _ = now;
        let v = self.verdict(ctx);
        (v.status == Status::Failed).then(|| v.message.unwrap_or_default())
    }
    /// While the case runs, once its time line is done: what the check still waits for at `now` before waiting
    /// longer can no longer change its verdict (a delivery not yet due, a settle window running over a state it
    /// would fail, an answer still to come), so that the case neither ends before a failure could show nor waits
    /// for nothing. `None`: it waits for nothing. The drain bounds every wait.
    fn pending(&self, ctx: &Context, now: Micros) -> Option<Pending>;
}

/// Whether the check named `name` (with its default settings) has anything to judge in the case's design.
fn applies(name: &str, case: &Case) -> bool {
    Settings::default().instantiate().iter().find(|c| c.name() == name).is_none_or(|c| c.applies(case))
}

/// Runs the case's checks over a finished record, then applies its known issues.
pub fn evaluate(record: &[Recorded], ctx: &Context) -> Vec<CheckResult> {
    let mut entries = ctx.case.checks.entries();
    for rec in record {
        for e in entries.iter_mut() {
            if let Entry::On(c) = e {
                c.observe(rec);
            }
        }
    }
    let mut results: Vec<CheckResult> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::On(c) if !c.applies(ctx.case) => None,
            Entry::On(c) => Some(match c.not_applicable(ctx.case) {
                Some(why) => CheckResult::skipped(c.name(), why),
                None => c.verdict(ctx),
            }),
            Entry::Off(name) if !applies(name, ctx.case) => None,
            Entry::Off(name) => Some(CheckResult::skipped(name, "off in the matrix".into())),
        })
        .collect();
    evidence::attach(record, ctx, &mut results);
    // Causes first: whether a consequence is known depends on what its cause came to.
    for consequences in [false, true] {
        for i in 0..results.len() {
            let Some(known) = ctx
                .case
                .known_issues
                .iter()
                .find(|k| k.check == results[i].name && k.follows.is_empty() != consequences)
            else {
                continue;
            };
            if consequences {
                let shown = results
                    .iter()
                    .any(|r| known.follows.contains(&r.name) && r.status == Status::Known);
                apply_consequence(&mut results[i], known, shown);
            } else {
                apply_known_issue(&mut results[i], known);
            }
        }
    }
    results
}

/// A consequence is known only where its cause showed; otherwise a failure stays a failure, saying why it was not
/// taken as known, and a pass stays a pass.
fn apply_consequence(result: &mut CheckResult, known: &KnownIssue, shown: bool) {
    match (result.status, shown) {
        (Status::Failed, true) => apply_known_issue(result, known),
        (Status::Failed, false) => result.evidence.push(format!(
            "not taken as known issue {}: it follows `{}`, and none of them failed as known in this case",
            known.reference,
            known.follows.join("`, `")
        )),
        _ => {}
    }
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
        Status::Passed if known.intermittent => {
            result.evidence.push(format!(
                "known issue {} is intermittent and did not show in this run (no sign of a fix)",
                known.reference
            ));
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
        .entries()
        .iter()
        .map(|e| match e {
            Entry::On(c) => CheckResult::skipped(c.name(), reason.to_owned()),
            Entry::Off(name) => CheckResult::skipped(name, "off in the matrix".into()),
        })
        .collect()
}

/// Whether the checks of a network's neighbours apply: a topology without edges (`edges: []`) asks no two peers to
/// connect, and those checks are left out of its cases.
fn has_edges(case: &Case) -> bool {
    !case.edges.is_empty()
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
mod tests {
    use super::*;
    use crate::testkit::Kit;

    #[test]
    fn the_registry_has_every_check_of_the_matrix_model() {
        let registered: Vec<&str> = registry!(&Settings::default(), name_of);
        assert_eq!(registered, Settings::NAMES);
    }

    #[test]
    fn known_issues_turn_failures_into_skips_and_passes_into_failures() {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        kit.case.checks = Settings::default();
        kit.case.known_issues = vec![KnownIssue {
            reference: "rust-libp2p#6047".into(),
            check: "delivery".into(),
            cases: None,
            note: None,
            intermittent: false,
            follows: vec![],
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
        // Checks without a known issue are untouched.
        assert!(results
            .iter()
            .filter(|r| r.name != "delivery")
            .all(|r| r.status != Status::Known && r.known_issue.is_none()));

        // An intermittent issue that did not show: a pass that says so, not a sign of a fix.
        kit.case.known_issues[0].intermittent = true;
        let results = evaluate(&record, &kit.context());
        let delivery = results.iter().find(|r| r.name == "delivery").unwrap();
        assert_eq!(delivery.status, Status::Passed, "{delivery:?}");
        assert!(delivery.evidence.iter().any(|e| e.contains("intermittent and did not show")), "{delivery:?}");
    }

    #[test]
    fn a_consequence_is_known_only_where_its_cause_showed() {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        kit.case.checks = Settings::default();
        let issue = |check: &str, follows: &[&str]| KnownIssue {
            reference: "rust-libp2p#6047".into(),
            check: check.into(),
            cases: None,
            note: None,
            intermittent: true,
            follows: follows.iter().map(|f| f.to_string()).collect(),
        };
        // The consequence is listed first: the order of the matrix does not decide.
        kit.case.known_issues = vec![issue("delivery", &["mesh", "connections"]), issue("connections", &[])];
        let status = |results: &[CheckResult], name: &str| results.iter().find(|r| r.name == name).unwrap().clone();

        // go-1 misses rust-1's message over one connection: no cause, so a failure like any other.
        let mut record: Vec<Recorded> = kit.publish(1_000_000, "rust-1", "rust-1/0").into();
        record.push(kit.opened(1_000, "rust-1", "go-1", "1"));
        record.push(kit.stopped(9_100_000, "rust-1"));
        let results = evaluate(&record, &kit.context());
        let delivery = status(&results, "delivery");
        assert_eq!(delivery.status, Status::Failed, "{delivery:?}");
        assert!(delivery.evidence.iter().any(|e| e.contains("follows `mesh`, `connections`")), "{delivery:?}");
        assert_eq!(status(&results, "connections").status, Status::Passed);

        // The same miss while rust-1 held two connections to go-1 for 8 s: the cause showed, so both are known.
        record.push(kit.opened(1_100_000, "rust-1", "go-1", "2"));
        let results = evaluate(&record, &kit.context());
        assert_eq!(status(&results, "connections").status, Status::Known);
        let delivery = status(&results, "delivery");
        assert_eq!(delivery.status, Status::Known, "{delivery:?}");
        assert!(delivery.message.unwrap().starts_with("known issue rust-libp2p#6047: go-1"));
    }

    #[test]
    fn checks_a_network_gives_nothing_to_judge_by_design_are_left_out() {
        let mut kit = Kit::new(&["rust-1", "go-1"]);
        kit.case.publish.messages = 0;
        kit.case.edges = vec![];
        let results = evaluate(&[], &kit.context());
        let status = |name: &str| {
            let r = results.iter().find(|r| r.name == name).unwrap();
            (r.status, r.message.clone().unwrap_or_default())
        };
        // Publishing nothing and no edges, by design: those checks are left out, neither skipped nor passed.
        for name in ["delivery", "connectivity", "mesh", "subscriptions"] {
            assert!(results.iter().all(|r| r.name != name), "{name}: {results:?}");
        }
        let _ = status;
        // An edge, or a burst of the time line, gives them something again.
        kit.case.edges = vec![(0, 1)];
        kit.case.timeline = vec![serde_saphyr::from_str("{peer: go-1, do: {publish: {messages: 2}}}").unwrap()];
        let results = evaluate(&[], &kit.context());
        for name in ["delivery", "connectivity", "mesh", "subscriptions"] {
            assert_ne!(results.iter().find(|r| r.name == name).unwrap().status, Status::Skipped, "{name}");
        }
    }
}
