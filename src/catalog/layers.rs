//! Layer ids and sets of layers.
//!
//! A layer's id is its index in the catalog's `layers` list, which is in
//! pipeline order (upstream first), so ids order like the pipeline: the
//! smaller of two ids is the upstream one of a pair.

use std::fmt;

/// Upper bound on configured layers: a [`LayerSet`] is one `u64`.
pub const MAX_LAYERS: usize = 64;

/// Index of a layer in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LayerId(u8);

impl LayerId {
    /// The layer at `index` of the catalog's list (`index < MAX_LAYERS`).
    pub const fn new(index: u8) -> Self {
        LayerId(index)
    }
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer{}", self.0)
    }
}

/// A set of layers (which reported, which are expected, which are
/// missing), iterated in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LayerSet(u64);

impl LayerSet {
    pub const EMPTY: LayerSet = LayerSet(0);

    /// The first `n` layers.
    pub const fn first(n: usize) -> Self {
        if n >= MAX_LAYERS {
            LayerSet(u64::MAX)
        } else {
            LayerSet((1u64 << n) - 1)
        }
    }
    pub const fn of(layer: LayerId) -> Self {
        LayerSet(1 << layer.0)
    }
    pub const fn bits(self) -> u64 {
        self.0
    }
    pub const fn from_bits(bits: u64) -> Self {
        LayerSet(bits)
    }
    pub const fn contains(self, layer: LayerId) -> bool {
        self.0 & (1 << layer.0) != 0
    }
    pub fn insert(&mut self, layer: LayerId) {
        self.0 |= 1 << layer.0;
    }
    pub const fn with(self, layer: LayerId) -> Self {
        LayerSet(self.0 | 1 << layer.0)
    }
    pub const fn union(self, other: LayerSet) -> Self {
        LayerSet(self.0 | other.0)
    }
    pub const fn intersection(self, other: LayerSet) -> Self {
        LayerSet(self.0 & other.0)
    }
    /// The layers of `self` that are not in `other`.
    pub const fn minus(self, other: LayerSet) -> Self {
        LayerSet(self.0 & !other.0)
    }
    pub const fn is_superset(self, other: LayerSet) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    /// The layers in pipeline order.
    pub fn iter(self) -> Layers {
        Layers(self.0)
    }
}

impl IntoIterator for LayerSet {
    type Item = LayerId;
    type IntoIter = Layers;
    fn into_iter(self) -> Layers {
        self.iter()
    }
}

impl FromIterator<LayerId> for LayerSet {
    fn from_iter<I: IntoIterator<Item = LayerId>>(it: I) -> Self {
        it.into_iter().fold(LayerSet::EMPTY, LayerSet::with)
    }
}

/// Iterator over a [`LayerSet`], upstream first.
#[derive(Debug, Clone)]
pub struct Layers(u64);

impl Iterator for Layers {
    type Item = LayerId;
    fn next(&mut self) -> Option<LayerId> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as u8;
        self.0 &= self.0 - 1;
        Some(LayerId(i))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.count_ones() as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Layers {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_n_and_edges() {
        assert_eq!(LayerSet::first(0), LayerSet::EMPTY);
        assert_eq!(LayerSet::first(4).bits(), 0b1111);
        assert_eq!(LayerSet::first(64).len(), 64);
        assert_eq!(LayerSet::first(100).len(), 64);
        let l63 = LayerId::new(63);
        assert!(LayerSet::first(64).contains(l63));
        assert_eq!(LayerSet::of(l63).iter().collect::<Vec<_>>(), [l63]);
    }

    proptest! {
        /// Iteration yields exactly the members, in pipeline order.
        #[test]
        fn iterates_members_in_order(bits in any::<u64>()) {
            let s = LayerSet::from_bits(bits);
            let got: Vec<LayerId> = s.iter().collect();
            let want: Vec<LayerId> = (0..64u8).filter(|i| bits >> i & 1 == 1).map(LayerId::new).collect();
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(s.len(), want.len());
            prop_assert_eq!(got.into_iter().collect::<LayerSet>(), s);
        }

        #[test]
        fn set_algebra(a in any::<u64>(), b in any::<u64>()) {
            let (x, y) = (LayerSet::from_bits(a), LayerSet::from_bits(b));
            prop_assert_eq!(x.union(y).bits(), a | b);
            prop_assert_eq!(x.intersection(y).bits(), a & b);
            prop_assert_eq!(x.minus(y).bits(), a & !b);
            prop_assert_eq!(x.is_superset(y), a & b == b);
        }
    }
}
