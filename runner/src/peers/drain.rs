//! When a case stops listening after its time line: as soon as no check waits for anything more (a delivery not
//! yet due, a settle window over a state it would fail), and at the latest when the drain is over. Plain data, so
//! that the decision is tested without a clock or a peer.

use crate::events::Micros;

/// What a check still waits for before waiting longer can no longer change its verdict: until when, and what (for
/// the note when the drain cuts the wait short).
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// `Micros::MAX`: for as long as the case listens (an answer with no deadline of its own).
    pub until: Micros,
    pub what: String,
}

impl Pending {
    /// The latest of `untils` after `now`, with `what` said of them; `None` when none is after `now`.
    pub fn latest(now: Micros, untils: impl IntoIterator<Item = Micros>, what: impl FnOnce(usize) -> String) -> Option<Pending> {
        let open: Vec<Micros> = untils.into_iter().filter(|u| *u > now).collect();
        let until = open.iter().copied().max()?;
        Some(Pending { until, what: what(open.len()) })
    }
}

/// What the driver does next.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Listen until then, and ask again sooner when something arrives.
    Listen(Micros),
    /// Stop listening; `cut` names what the checks still waited for when the drain ended (empty: nothing).
    Stop { cut: Vec<String> },
}

/// The decision at `now`, with the drain over at `drain_end`, from what each check (by name) still waits for.
pub fn next(now: Micros, drain_end: Micros, pending: &[(&str, Pending)]) -> Next {
    let open: Vec<&(&str, Pending)> = pending.iter().filter(|(_, p)| p.until > now).collect();
    let Some(until) = open.iter().map(|(_, p)| p.until).max() else {
        return Next::Stop { cut: Vec::new() };
    };
    if now >= drain_end {
        let cut = open.iter().map(|(name, p)| format!("{name} ({})", p.what)).collect();
        return Next::Stop { cut };
    }
    Next::Listen(until.min(drain_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(until: Micros, what: &str) -> Pending {
        Pending { until, what: what.into() }
    }

    #[test]
    fn nothing_pending_stops_at_once_even_with_a_long_drain() {
        assert_eq!(next(1_000, 10_000_000, &[]), Next::Stop { cut: vec![] });
        // A wait already over is no wait.
        assert_eq!(next(5_000, 10_000_000, &[("delivery", p(4_000, "1 delivery"))]), Next::Stop { cut: vec![] });
    }

    #[test]
    fn listens_until_the_last_check_is_done_within_the_drain() {
        let pending = [("delivery", p(2_000_000, "3 deliveries")), ("mesh", p(3_500_000, "a short mesh"))];
        assert_eq!(next(1_000_000, 10_000_000, &pending), Next::Listen(3_500_000));
        // The drain is the longest wait.
        assert_eq!(next(1_000_000, 3_000_000, &pending), Next::Listen(3_000_000));
        let forever = [("request-response", p(Micros::MAX, "2 requests unanswered"))];
        assert_eq!(next(1_000_000, 3_000_000, &forever), Next::Listen(3_000_000));
    }

    #[test]
    fn the_end_of_the_drain_stops_and_names_what_was_cut_short() {
        let pending = [("delivery", p(4_000_000, "3 deliveries")), ("mesh", p(2_000_000, "a short mesh"))];
        assert_eq!(next(3_000_000, 3_000_000, &pending), Next::Stop { cut: vec!["delivery (3 deliveries)".into()] });
        // A drain of 0 s: the time line's end is the case's.
        assert_eq!(next(1_000_000, 1_000_000, &pending), Next::Stop {
            cut: vec!["delivery (3 deliveries)".into(), "mesh (a short mesh)".into()]
        });
    }

    #[test]
    fn latest_keeps_only_what_is_still_ahead() {
        assert_eq!(Pending::latest(10, [5, 20, 15], |n| format!("{n} due")), Some(p(20, "2 due")));
        assert_eq!(Pending::latest(10, [5, 10], |n| format!("{n} due")), None);
    }
}
