//! When the runner's own faults kept peers from reaching each other, read from the faults it recorded: a peer is
//! down from its kill to its restart and from its pause to its resume; two peers are apart from a partition to the
//! heal. The checks expect nothing across an outage, and expect everything again once the recovery after it is
//! over: that is how expectations follow the time line.

use std::collections::BTreeMap;

use crate::events::{Fault, Micros, Observation, Recorded};

/// Periods from a start to an end (`None`: still going at the end of the record).
type Periods = Vec<(Micros, Option<Micros>)>;

#[derive(Debug, Default)]
pub struct Outages {
    down: BTreeMap<String, Periods>,
    /// Keyed by the pair in name order.
    apart: BTreeMap<(String, String), Periods>,
    /// Each peer a partition cut, from the partition to the heal: after the heal its whole network recovers (meshes
    /// re-form, the backlog held up by the partition arrives at once), not only the pairs that were apart.
    partitioned: BTreeMap<String, Periods>,
}

fn key(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

fn open(periods: &mut Periods, at: Micros) {
    if periods.last().is_none_or(|(_, end)| end.is_some()) {
        periods.push((at, None));
    }
}

fn close(periods: &mut Periods, at: Micros) {
    if let Some((_, end @ None)) = periods.last_mut() {
        *end = Some(at);
    }
}

impl Outages {
    /// Takes in a record; true when it was a fault.
    pub fn observe(&mut self, rec: &Recorded) -> bool {
        let Observation::Fault { fault, .. } = &rec.what else {
            return false;
        };
        let peer = &rec.peer;
        match fault {
            Fault::Kill | Fault::Pause => open(self.down.entry(peer.clone()).or_default(), rec.at),
            Fault::Restart | Fault::Resume => close(self.down.entry(peer.clone()).or_default(), rec.at),
            Fault::Partition { from } => {
                open(self.partitioned.entry(peer.clone()).or_default(), rec.at);
                for other in from {
                    open(self.apart.entry(key(peer, other)).or_default(), rec.at);
                }
            }
            Fault::Heal => {
                close(self.partitioned.entry(peer.clone()).or_default(), rec.at);
                for ((a, b), periods) in self.apart.iter_mut() {
                    if a == peer || b == peer {
                        close(periods, rec.at);
                    }
                }
            }
            Fault::Shape { .. } | Fault::Unshape => {}
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.down.is_empty() && self.apart.is_empty() && self.partitioned.is_empty()
    }

    /// Every outage of the pair (either one down, or the two apart).
    fn of_pair<'a>(&'a self, a: &str, b: &str) -> impl Iterator<Item = (Micros, Option<Micros>)> + 'a {
        let down = [a, b]
            .into_iter()
            .filter_map(|p| self.down.get(p))
            .flatten()
            .copied()
            .collect::<Vec<_>>();
        down.into_iter()
            .chain(self.apart.get(&key(a, b)).into_iter().flatten().copied())
    }

    /// The outage that excuses the pair over `[from, to]`, if one does: any moment of it within an outage, or
    /// within `recovery` after one ended. Returns when that outage ended (`None`: it never did).
    pub fn excusing(&self, a: &str, b: &str, from: Micros, to: Micros, recovery: Micros) -> Option<Option<Micros>> {
        let during = self
            .of_pair(a, b)
            .find(|(start, end)| *start <= to && end.is_none_or(|e| e + recovery >= from))
            .map(|(_, end)| end);
        // A pair on one side of a partition is expected to deliver while it lasts, but not in the recovery after it.
        let healing = || {
            [a, b]
                .into_iter()
                .filter_map(|p| self.partitioned.get(p))
                .flatten()
                .find_map(|(_, end)| end.filter(|e| *e <= to && e + recovery >= from))
                .map(Some)
        };
        during.or_else(healing)
    }

    /// Whether an outage involving `peer` (down, or apart from anyone) meets `[from, to]`, or ended less than
    /// `recovery` before it.
    pub fn disturbs(&self, peer: &str, from: Micros, to: Micros, recovery: Micros) -> bool {
        let meets = |(s, e): &(Micros, Option<Micros>)| *s <= to && e.is_none_or(|e| e + recovery >= from);
        self.down.get(peer).into_iter().flatten().any(meets)
            || self
                .apart
                .iter()
                .filter(|((a, b), _)| a == peer || b == peer)
                .flat_map(|(_, p)| p)
                .any(meets)
    }

    /// When `peer` is out of every outage that meets `at` (down, or apart from anyone) and of the recovery after
    /// it; `None` when one is still going on. `at` itself when none meets it.
    pub fn recovered_at(&self, peer: &str, at: Micros, recovery: Micros) -> Option<Micros> {
        let apart = self.apart.iter().filter(|((a, b), _)| a == peer || b == peer).flat_map(|(_, p)| p);
        self.down
            .get(peer)
            .into_iter()
            .flatten()
            .chain(apart)
            .filter(|(s, e)| *s <= at && e.is_none_or(|e| e + recovery >= at))
            .try_fold(at, |latest, (_, e)| e.map(|e| latest.max(e + recovery)))
    }

    /// The moments an outage ended, and between whom (a peer restarted or resumed: with everyone; a heal: the
    /// pairs it joins), in order.
    pub fn ends(&self) -> Vec<(Micros, String)> {
        let mut out: Vec<(Micros, String)> = Vec::new();
        for (peer, periods) in &self.down {
            for (_, end) in periods {
                if let Some(e) = end {
                    out.push((*e, peer.clone()));
                }
            }
        }
        let mut heals: BTreeMap<Micros, Vec<String>> = BTreeMap::new();
        for ((a, b), periods) in &self.apart {
            for (_, end) in periods {
                if let Some(e) = end {
                    let who = heals.entry(*e).or_default();
                    for p in [a, b] {
                        if !who.contains(p) {
                            who.push(p.clone());
                        }
                    }
                }
            }
        }
        for (at, who) in heals {
            out.push((at, format!("the partition of {}", who.join(", "))));
        }
        out.sort();
        out
    }

    /// The pairs apart at `at` whose outage ended at `end` (for measuring recovery across one heal).
    pub fn healed_at(&self, end: Micros) -> Vec<(String, String)> {
        self.apart
            .iter()
            .filter(|(_, periods)| periods.iter().any(|(_, e)| *e == Some(end)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Whether `peer`'s outage (down) ended at `end`.
    pub fn came_back_at(&self, peer: &str, end: Micros) -> bool {
        self.down
            .get(peer)
            .is_some_and(|p| p.iter().any(|(_, e)| *e == Some(end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(at: Micros, peer: &str, fault: Fault) -> Recorded {
        Recorded {
            at,
            peer: peer.into(),
            what: Observation::Fault {
                fault,
                step: "time line step 1".into(),
            },
        }
    }

    #[test]
    fn outages_follow_the_faults() {
        let mut o = Outages::default();
        for r in [
            fault(10, "go-1", Fault::Partition { from: vec!["rust-1".into()] }),
            fault(10, "rust-1", Fault::Partition { from: vec!["go-1".into()] }),
            fault(50, "go-1", Fault::Heal),
            fault(50, "rust-1", Fault::Heal),
            fault(100, "go-2", Fault::Kill),
            fault(200, "go-2", Fault::Restart),
            fault(300, "rust-2", Fault::Pause),
        ] {
            assert!(o.observe(&r));
        }
        // Apart from 10 to 50; with a recovery of 20, excused until 70.
        assert_eq!(o.excusing("rust-1", "go-1", 0, 5, 20), None);
        assert_eq!(o.excusing("rust-1", "go-1", 0, 15, 20), Some(Some(50)));
        assert_eq!(o.excusing("go-1", "rust-1", 60, 80, 20), Some(Some(50)));
        assert_eq!(o.excusing("go-1", "rust-1", 71, 80, 20), None);
        // Others were never apart from go-1: expected while the partition lasts, not in the recovery after it.
        assert_eq!(o.excusing("go-1", "rust-2", 20, 30, 20), None);
        assert_eq!(o.excusing("go-1", "rust-2", 45, 55, 20), Some(Some(50)));
        assert_eq!(o.excusing("go-1", "rust-2", 71, 80, 20), None);
        // A down peer is apart from everyone; a pause never resumed never ends.
        assert_eq!(o.excusing("go-2", "rust-1", 150, 160, 0), Some(Some(200)));
        assert_eq!(o.excusing("go-1", "rust-2", 1000, 1100, 0), Some(None));
        assert_eq!(
            o.ends(),
            vec![(50, "the partition of go-1, rust-1".into()), (200, "go-2".into())]
        );
        assert_eq!(o.healed_at(50), vec![("go-1".to_owned(), "rust-1".to_owned())]);
        assert!(o.came_back_at("go-2", 200));
        // Recovered: from the heal (50) plus 20; a pause never resumed never ends; no outage, at once.
        assert_eq!(o.recovered_at("go-1", 60, 20), Some(70));
        assert_eq!(o.recovered_at("rust-2", 400, 20), None);
        assert_eq!(o.recovered_at("go-1", 100, 20), Some(100));
    }
}
