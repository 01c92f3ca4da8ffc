//! What happened over a case's time, condensed for charts: deliveries per second per implementation pair,
//! connections per peer pair, streams per connection, and the moments worth marking. Built once from the record and
//! kept in results.json, so reports draw it without the record (`judge` builds it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::Micros;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub start_us: Micros,
    pub end_us: Micros,
    /// Messages delivered in each second from `start_us`, by `publisher implementation -> subscriber implementation`.
    pub deliveries: BTreeMap<String, Vec<u32>>,
    /// Open connections of a peer to another (`rust-1 -> go-1`) over time: (ms from start, count), at every change.
    pub connections: BTreeMap<String, Vec<(u64, u32)>>,
    /// Open streams, inbound and outbound together, per connection (`rust-1 #3 -> go-1`): (ms from start, count).
    pub streams: BTreeMap<String, Vec<(u64, u32)>>,
    pub marks: Vec<Mark>,
}

/// A moment to show on every chart of the case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub at_ms: u64,
    pub kind: MarkKind,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    /// A peer changed the protocols it advertises to another.
    Identify,
    /// The runner made something go wrong on purpose.
    Incident,
    /// A fault of the time line began or ended (partition, heal, shape, kill, restart, pause, resume).
    Fault,
    /// A peer exited or was killed.
    Exit,
    /// A check failed here.
    Failure,
}
