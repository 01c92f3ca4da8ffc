//! The meshgate peer contract (docs/peer-contract.md) as types: what a peer is given at start ([`config`]), what
//! it is told on stdin ([`commands`]), what it says on stdout ([`events`]) and how it exits ([`exit`]).
//!
//! The runner and the rust peer both build on these types, and docs/contract/*.schema.json is generated from them,
//! so the three cannot drift apart. The contract grows only by additions (new optional fields, events, commands):
//! a peer says which revision it speaks in `started`, and what it does not know it answers with `unsupported`.

pub mod commands;
pub mod config;
pub mod events;
pub mod exit;
pub mod features;
pub mod participant;
pub mod schema;

/// The revision of the contract this crate describes. Raised by one for every addition; never for a removal or a
/// change of meaning, which the contract does not allow.
pub const VERSION: u32 = 2;

/// Microseconds since the Unix epoch, the contract's time unit.
pub type Micros = i64;
