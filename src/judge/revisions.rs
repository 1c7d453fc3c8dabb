//! Stale flag revisions: which records were evaluated against a flag
//! snapshot the stack had already moved past.
//!
//! Per stream and feature, the revisions (`flags_revision`) met most
//! recently for the first time are remembered with their *first seen*
//! time: the smallest event time of the records carrying them so far. A
//! record is **stale** when the stream knows another revision first seen
//! later than the record's own revision and no later than the record's
//! event time. A record that introduces its revision is never stale. The
//! memory is bounded: the oldest-met revision is forgotten first, and one
//! that comes back is met again with its first seen time reset. (The user
//! reference, docs/reference.md, states the same rule for
//! `accord_stale_revision_records_total`.)

use std::collections::VecDeque;

/// Revisions remembered per stream and feature.
pub const REMEMBERED: usize = 16;

/// One feature's revision memory in one stream.
#[derive(Debug, Default, Clone)]
pub struct Revisions {
    /// `(revision hash, first seen)`, in the order they were first met.
    met: VecDeque<(u64, i64)>,
}

impl Revisions {
    /// Notes a record carrying `revision` (a text hash, never 0) at event
    /// time `ts_ms`; returns whether the record is stale.
    pub fn observe(&mut self, revision: u64, ts_ms: i64) -> bool {
        let Some(i) = self.met.iter().position(|&(r, _)| r == revision) else {
            if self.met.len() == REMEMBERED {
                self.met.pop_front();
            }
            self.met.push_back((revision, ts_ms));
            return false;
        };
        let own = &mut self.met[i].1;
        *own = (*own).min(ts_ms);
        let first = *own;
        self.met.iter().any(|&(r, seen)| r != revision && first < seen && seen <= ts_ms)
    }

    pub fn len(&self) -> usize {
        self.met.len()
    }

    pub fn is_empty(&self) -> bool {
        self.met.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_record_of_the_old_revision_after_the_flip_is_stale() {
        let mut r = Revisions::default();
        assert!(!r.observe(41, 0));
        assert!(!r.observe(42, 10_000), "introduces r42");
        assert!(!r.observe(42, 10_000));
        assert!(r.observe(41, 12_000));
        assert!(!r.observe(41, 9_000), "before the flip");
        assert!(!r.observe(42, 14_000), "the newer one is never stale");
    }

    #[test]
    fn first_seen_moves_back_with_earlier_records() {
        let mut r = Revisions::default();
        assert!(!r.observe(42, 10_000));
        assert!(!r.observe(41, 8_000));
        assert!(r.observe(41, 12_000));
        assert!(!r.observe(42, 9_000));
        // r42 now first seen at 9 s: a record of r41 at 9 s is stale.
        assert!(r.observe(41, 9_000));
    }

    #[test]
    fn forgotten_after_sixteen_and_met_again() {
        let mut r = Revisions::default();
        for i in 0..=16u64 {
            assert!(!r.observe(i + 1, i as i64 * 1000));
        }
        assert_eq!(r.len(), REMEMBERED);
        // Revision 1 (first met) was forgotten: met again, not stale.
        assert!(!r.observe(1, 20_000));
        assert!(!r.observe(2, 21_000));
        assert!(r.observe(17, 22_000));
    }

    proptest! {
        /// Against a plain model of the rule: the memory holds the 16 most
        /// recently met revisions, each with the smallest event time seen
        /// since it was (last) met.
        #[test]
        fn matches_the_rule(recs in prop::collection::vec((1u64..24, 0i64..100), 0..300)) {
            let mut r = Revisions::default();
            let mut model: Vec<(u64, i64)> = Vec::new();
            for (rev, ts) in recs {
                let stale = match model.iter().position(|m| m.0 == rev) {
                    None => {
                        if model.len() == REMEMBERED { model.remove(0); }
                        model.push((rev, ts));
                        false
                    }
                    Some(i) => {
                        model[i].1 = model[i].1.min(ts);
                        let first = model[i].1;
                        model.iter().any(|m| m.0 != rev && m.1 > first && m.1 <= ts)
                    }
                };
                prop_assert_eq!(r.observe(rev, ts), stale);
            }
        }
    }
}
