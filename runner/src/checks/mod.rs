//! Checks: each judges one property of a case from its record of observations.
//!
//! A check is one file implementing [`Check`]; adding one means writing that file, a field in [`Settings`] and a
//! line in [`Settings::instantiate`].

mod commands;
pub use commands::unexercised;
mod connections;
mod connectivity;
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

/// A check's entry in a matrix: its settings (a map, partial maps take the defaults for the rest) or `off`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Toggle<T> {
    On(T),
    #[serde(serialize_with = "off")]
    Off,
}

fn off<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("off")
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Toggle<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than `untagged`, so that an error inside the settings keeps its own words and place.
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = Toggle<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("the check's settings (a map, `{}` for the defaults) or `off`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "off" => Ok(Toggle::Off),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            // YAML 1.1 reads an unquoted `off` as false (and `on` as true).
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                if v {
                    self.visit_unit()
                } else {
                    Ok(Toggle::Off)
                }
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                T::deserialize(serde::de::value::MapDeserializer::<
                    std::iter::Empty<((), ())>,
                    E,
                >::new(std::iter::empty()))
                .map(Toggle::On)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Toggle::On)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Check settings as written in a matrix (top level or per network): each entry changes the check it names; the
/// checks not named run with their defaults, and a check runs not at all only when its entry says `off`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_protocol_downgrade: Option<Toggle<downgrade::Settings>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Toggle<delivery::Settings>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<Toggle<subscriptions::Settings>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<Toggle<mesh::Settings>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<Toggle<connections::Settings>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<Toggle<streams::Settings>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Toggle<liveness::Settings>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity: Option<Toggle<connectivity::Settings>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Toggle<commands::Settings>>,
}

/// The registry: every check in report order, built from its (resolved) entry. Adding a check is a file, a field
/// above and a line here.
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

fn name_of<T>(name: &'static str, _: &Option<Toggle<T>>, _: impl Fn(T) -> Box<dyn Check>) -> &'static str {
    name
}

impl Settings {
    /// Every check's name, in report order.
    pub fn names() -> Vec<&'static str> {
        registry!(&Settings::default(), name_of)
    }

    /// `over`'s entries replace `self`'s, check by check; checks `over` does not name keep `self`'s entry.
    pub fn overridden_by(&self, over: &Settings) -> Settings {
        fn pick<T: Clone>(over: &Option<T>, base: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        Settings {
            no_protocol_downgrade: pick(&over.no_protocol_downgrade, &self.no_protocol_downgrade),
            delivery: pick(&over.delivery, &self.delivery),
            subscriptions: pick(&over.subscriptions, &self.subscriptions),
            mesh: pick(&over.mesh, &self.mesh),
            connections: pick(&over.connections, &self.connections),
            streams: pick(&over.streams, &self.streams),
            liveness: pick(&over.liveness, &self.liveness),
            connectivity: pick(&over.connectivity, &self.connectivity),
            commands: pick(&over.commands, &self.commands),
        }
    }

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
        .map(|e| match e {
            Entry::On(c) => c.verdict(ctx),
            Entry::Off(name) => CheckResult::skipped(name, "off in the matrix".into()),
        })
        .collect();
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
        .entries()
        .iter()
        .map(|e| match e {
            Entry::On(c) => CheckResult::skipped(c.name(), reason.to_owned()),
            Entry::Off(name) => CheckResult::skipped(name, "off in the matrix".into()),
        })
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
        kit.case.checks = Settings::default();
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
        // Checks without a known issue are untouched.
        assert!(results
            .iter()
            .filter(|r| r.name != "delivery")
            .all(|r| r.status != Status::Known && r.known_issue.is_none()));
    }
}
