//! Free addresses of one family in one pool, as disjoint, non-adjacent inclusive intervals.
//! Every operation is O(log intervals), whatever the pool's size.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreeSet {
    /// start -> end (inclusive).
    intervals: BTreeMap<u128, u128>,
}

impl FreeSet {
    pub fn add_range(&mut self, first: u128, last: u128) {
        let (mut first, mut last) = (first, last);
        // Absorb every interval that overlaps or touches [first, last].
        let touching: Vec<(u128, u128)> = self
            .intervals
            .range(..=last.saturating_add(1))
            .rev()
            .take_while(|(_, e)| **e >= first.saturating_sub(1))
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in touching {
            self.intervals.remove(&s);
            first = first.min(s);
            last = last.max(e);
        }
        self.intervals.insert(first, last);
    }

    pub fn contains(&self, x: u128) -> bool {
        self.intervals.range(..=x).next_back().is_some_and(|(_, e)| *e >= x)
    }

    /// The smallest free address >= x.
    pub fn first_at_or_after(&self, x: u128) -> Option<u128> {
        if self.contains(x) {
            return Some(x);
        }
        self.intervals.range(x..).next().map(|(s, _)| *s)
    }

    /// Marks x as used. Returns false if it was not free.
    pub fn take(&mut self, x: u128) -> bool {
        let Some((&s, &e)) = self.intervals.range(..=x).next_back() else { return false };
        if e < x {
            return false;
        }
        self.intervals.remove(&s);
        if s < x {
            self.intervals.insert(s, x - 1);
        }
        if x < e {
            self.intervals.insert(x + 1, e);
        }
        true
    }

    pub fn give(&mut self, x: u128) {
        self.add_range(x, x);
    }

    #[cfg(test)]
    pub fn intervals(&self) -> Vec<(u128, u128)> {
        self.intervals.iter().map(|(s, e)| (*s, *e)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_and_give_split_and_merge() {
        let mut f = FreeSet::default();
        f.add_range(10, 20);
        assert!(f.take(10) && f.take(15) && f.take(20));
        assert!(!f.take(15));
        assert_eq!(f.intervals(), [(11, 14), (16, 19)]);
        assert_eq!(f.first_at_or_after(15), Some(16));
        assert_eq!(f.first_at_or_after(20), None);
        f.give(15);
        assert_eq!(f.intervals(), [(11, 19)]);
        f.give(10);
        f.give(20);
        assert_eq!(f.intervals(), [(10, 20)]);
    }

    #[test]
    fn handles_the_ends_of_the_space() {
        let mut f = FreeSet::default();
        f.add_range(0, u128::MAX);
        assert!(f.take(0) && f.take(u128::MAX));
        assert_eq!(f.first_at_or_after(0), Some(1));
        f.give(u128::MAX);
        f.give(0);
        assert_eq!(f.intervals(), [(0, u128::MAX)]);
    }
}
