//! How a peer's process ends (contract section 4). Any other status is a failure of the peer.

/// After `stop` (or the end of stdin), once `stopped` is written.
pub const STOPPED: i32 = 0;
/// The configuration could not be parsed, or names a value the contract does not know; the reason is on stderr.
pub const CONFIG_ERROR: i32 = 2;
/// The configuration asks for something this implementation cannot do; an `unsupported` event says what.
pub const UNSUPPORTED: i32 = 3;
