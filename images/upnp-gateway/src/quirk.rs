//! The router quirk of go-libp2p#3138: searches for different targets from one host, close together, are
//! answered as `Quirk::answer` says. The rule (README, "The quirk"):
//!
//! A search S (target X, from host H, arriving at t) *overlaps* the searches from H for any target that arrive
//! within `window_ms` of t, before or after. S is concurrent when an overlapping search has a target other than X.
//! - `none`: a concurrent search is not answered.
//! - `first`: a concurrent search is answered only when the earliest search among S and its overlap is for X.
//!
//! A repeat of X is not another target, so a client that sends one target several times is never concurrent. The
//! verdict needs the searches up to t + window, so every answer is held for the window before it is decided.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use contract::participant::{Quirk, QuirkAnswer};

/// A search as the quirk sees it; `at` counts from the gateway's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub at: Duration,
    pub host: IpAddr,
    pub st: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Answer,
    Ignore(String),
}

/// The searches recent enough to matter.
pub struct Overlaps {
    quirk: Quirk,
    seen: VecDeque<Search>,
}

impl Overlaps {
    pub fn new(quirk: Quirk) -> Self {
        Overlaps {
            quirk,
            seen: VecDeque::new(),
        }
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(self.quirk.window_ms)
    }

    /// Takes note of a search when it arrives.
    pub fn arrived(&mut self, search: Search) {
        // A verdict looks back one window from a search at most one window old: older ones cannot matter.
        let keep_from = search.at.saturating_sub(self.window() * 3);
        while self.seen.front().is_some_and(|s| s.at < keep_from) {
            self.seen.pop_front();
        }
        self.seen.push_back(search);
    }

    /// Whether to answer a search that arrived earlier, once its window has passed.
    pub fn verdict(&self, search: &Search) -> Verdict {
        let window = self.window();
        let overlap: Vec<&Search> = self
            .seen
            .iter()
            .filter(|s| s.host == search.host && s.at.abs_diff(search.at) <= window)
            .collect();
        let mut targets: Vec<&str> = overlap.iter().map(|s| s.st.as_str()).collect();
        targets.sort_unstable();
        targets.dedup();
        if targets.len() < 2 {
            return Verdict::Answer;
        }
        let n = targets.len();
        let ms = self.quirk.window_ms;
        match self.quirk.answer {
            QuirkAnswer::None => {
                Verdict::Ignore(format!("quirk: {n} search targets within {ms}ms"))
            }
            QuirkAnswer::First => {
                // `seen` is in arrival order, so the first of the overlap is the earliest.
                let first = overlap.first().map(|s| s.st.as_str()).unwrap_or_default();
                if first == search.st {
                    Verdict::Answer
                } else {
                    Verdict::Ignore(format!(
                        "quirk: {n} search targets within {ms}ms, only {first} is answered"
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(ms: u64, host: &str, st: &str) -> Search {
        Search {
            at: Duration::from_millis(ms),
            host: host.parse().unwrap(),
            st: st.to_owned(),
        }
    }

    fn overlaps(answer: QuirkAnswer, searches: &[Search]) -> Overlaps {
        let mut o = Overlaps::new(Quirk {
            window_ms: 200,
            answer,
        });
        searches.iter().cloned().for_each(|s| o.arrived(s));
        o
    }

    const A: &str = "urn:schemas-upnp-org:device:WANConnectionDevice:1";
    const B: &str = "urn:schemas-upnp-org:device:WANConnectionDevice:2";

    #[test]
    fn concurrent_targets_are_ignored_and_repeats_are_not_concurrent() {
        // go-nat v0.2.0: both targets three times, 5 ms apart, at once.
        let all = [
            search(0, "10.0.0.4", A),
            search(1, "10.0.0.4", B),
            search(5, "10.0.0.4", A),
            search(6, "10.0.0.4", B),
        ];
        let o = overlaps(QuirkAnswer::None, &all);
        for s in &all {
            assert_eq!(
                o.verdict(s),
                Verdict::Ignore("quirk: 2 search targets within 200ms".into())
            );
        }
        let o = overlaps(QuirkAnswer::First, &all);
        assert_eq!(o.verdict(&all[0]), Verdict::Answer);
        assert_eq!(o.verdict(&all[2]), Verdict::Answer);
        assert!(
            matches!(o.verdict(&all[1]), Verdict::Ignore(r) if r.contains(&format!("only {A}")))
        );
        // go-libp2p >= 0.41: the second target two seconds after the first. Each verdict is taken when the gateway
        // takes it, one window after the search.
        let mut o = Overlaps::new(Quirk {
            window_ms: 200,
            answer: QuirkAnswer::None,
        });
        let first = [
            search(0, "10.0.0.4", A),
            search(5, "10.0.0.4", A),
            search(10, "10.0.0.4", A),
        ];
        first.iter().cloned().for_each(|s| o.arrived(s));
        first
            .iter()
            .for_each(|s| assert_eq!(o.verdict(s), Verdict::Answer));
        let second = search(2100, "10.0.0.4", B);
        o.arrived(second.clone());
        assert_eq!(o.verdict(&second), Verdict::Answer);
    }

    #[test]
    fn other_hosts_do_not_overlap() {
        let both = [search(0, "10.0.0.4", A), search(1, "10.0.0.5", B)];
        let o = overlaps(QuirkAnswer::None, &both);
        both.iter()
            .for_each(|s| assert_eq!(o.verdict(s), Verdict::Answer));
    }

    #[test]
    fn the_window_is_inclusive_and_ends() {
        let o = overlaps(
            QuirkAnswer::None,
            &[search(0, "10.0.0.4", A), search(200, "10.0.0.4", B)],
        );
        assert!(matches!(
            o.verdict(&search(0, "10.0.0.4", A)),
            Verdict::Ignore(_)
        ));
        let o = overlaps(
            QuirkAnswer::None,
            &[search(0, "10.0.0.4", A), search(201, "10.0.0.4", B)],
        );
        assert_eq!(o.verdict(&search(0, "10.0.0.4", A)), Verdict::Answer);
    }
}
