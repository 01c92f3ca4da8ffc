//! meshgate: mixed rust-libp2p / go-libp2p networks in containers, judged by what the peers tell each other.
//!
//! The modules follow the pipeline: [`matrix`] -> [`cases`] -> [`backend`] (with [`images`]) -> [`peers`] ->
//! [`events`] -> [`checks`] -> [`results`] -> [`reports`]; [`run`] strings them together, and [`judge`] makes a
//! case's verdict, at the end of a run or later from what the run kept; [`probe`] checks one implementation
//! against the peer contract before it meets others; [`bench`] measures how fast and how far [`run`] goes here.

pub mod backend;
pub mod bench;
pub mod bisect;
pub mod cache;
pub mod cases;
pub mod checks;
pub mod doctor;
pub mod events;
pub mod images;
pub mod issue;
pub mod judge;
pub mod matrix;
pub mod peers;
pub mod priority;
pub mod probe;
pub mod progress;
pub mod releases;
pub mod reports;
pub mod rejudge;
pub mod results;
pub mod run;
pub mod scenario;
pub mod stored;
pub mod timeline;

/// Fixtures for unit tests: a small case and the records its peers would write.
#[cfg(test)]
pub(crate) mod testkit;
