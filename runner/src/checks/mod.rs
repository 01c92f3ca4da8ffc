//! Checks: each judges one property of a case from its record of observations.
//!
//! A check is one file implementing [`Check`]; adding one means writing that file, a field in [`Settings`] and a
//! line in [`Settings::instantiate`].

mod delivery;
mod downgrade;
mod liveness;

use serde::{Deserialize, Serialize};

use crate::cases::Case;
use crate::events::Recorded;
use crate::results::{CheckResult, PeerReport};

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
    pub liveness: Option<liveness::Settings>,
}

impl Settings {
    /// Every check with its default settings.
    pub fn all() -> Self {
        Self {
            no_protocol_downgrade: Some(Default::default()),
            delivery: Some(Default::default()),
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
}

/// Runs every check over a finished record.
pub fn evaluate(settings: &Settings, record: &[Recorded], ctx: &Context) -> Vec<CheckResult> {
    let mut checks = settings.instantiate();
    for rec in record {
        for c in checks.iter_mut() {
            c.observe(rec);
        }
    }
    checks.iter().map(|c| c.verdict(ctx)).collect()
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
