//! Feature ids: catalog features first, then `other`, then features
//! tracked by name under `unknown_features = "track"`.
//!
//! Shared by every partition task (they must agree on ids, and the
//! metric label of an id never changes). Lookups of catalog features
//! take no lock; tracked features take a read lock, and the write lock
//! only the first time a new name is seen.

use std::sync::{Arc, RwLock};

use hashbrown::HashMap;

use crate::catalog::{Catalog, FeatureSpec, UnknownFeatures};

/// A feature's id: its index in the catalog, then `other`, then tracked
/// unknown features in the order they were first seen. Ids are dense, so
/// per-feature state is a `Vec` indexed by [`FeatureId::index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FeatureId(u16);

impl FeatureId {
    pub const fn new(index: u16) -> Self {
        FeatureId(index)
    }
    pub const fn index(self) -> usize {
        self.0 as usize
    }
    /// Every id below `n`.
    pub fn all(n: usize) -> impl Iterator<Item = FeatureId> {
        (0..n.min(u16::MAX as usize + 1)).map(|i| FeatureId(i as u16))
    }
}

/// The label value for unknown features beyond `max_tracked_features`.
pub const OTHER: &str = "other";

pub struct Features {
    catalog: Arc<Catalog>,
    by_name: HashMap<String, FeatureId>,
    catalog_specs: Vec<Arc<FeatureSpec>>,
    tracked: RwLock<Tracked>,
}

#[derive(Default)]
struct Tracked {
    by_name: HashMap<String, FeatureId>,
    specs: Vec<Arc<FeatureSpec>>,
}

/// The result of resolving a record's `feature`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Known(FeatureId),
    /// Counted as `other`: the join key must keep the real name apart.
    Other(FeatureId),
    Rejected,
}

impl Features {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        let by_name = catalog.features.iter().enumerate().map(|(i, f)| (f.key.clone(), FeatureId(i as u16))).collect();
        let mut tracked = Tracked::default();
        if catalog.unknown_features == UnknownFeatures::Track {
            tracked.specs.push(Arc::new(FeatureSpec::tracked(OTHER, &catalog)));
        }
        Features {
            catalog_specs: catalog.features.iter().cloned().map(Arc::new).collect(),
            catalog,
            by_name,
            tracked: RwLock::new(tracked),
        }
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn resolve(&self, name: &str) -> Resolved {
        if let Some(&id) = self.by_name.get(name) {
            return Resolved::Known(id);
        }
        if self.catalog.unknown_features == UnknownFeatures::Reject {
            return Resolved::Rejected;
        }
        let base = self.catalog.features.len() as u16;
        {
            let t = self.tracked.read().unwrap_or_else(|e| e.into_inner());
            if let Some(&id) = t.by_name.get(name) {
                return Resolved::Known(id);
            }
            if t.by_name.len() >= self.catalog.max_tracked_features {
                return Resolved::Other(FeatureId(base));
            }
        }
        let mut t = self.tracked.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = t.by_name.get(name) {
            return Resolved::Known(id);
        }
        if t.by_name.len() >= self.catalog.max_tracked_features {
            return Resolved::Other(FeatureId(base));
        }
        let id = FeatureId(base + t.specs.len() as u16);
        t.specs.push(Arc::new(FeatureSpec::tracked(name, &self.catalog)));
        t.by_name.insert(name.to_string(), id);
        Resolved::Known(id)
    }

    /// Every id handed out so far, in id order (catalog order first).
    pub fn ids(&self) -> impl Iterator<Item = FeatureId> {
        FeatureId::all(self.len())
    }

    /// The id of a name handed out so far, without registering new names.
    pub fn lookup(&self, name: &str) -> Option<FeatureId> {
        if let Some(&id) = self.by_name.get(name) {
            return Some(id);
        }
        if name == OTHER && self.catalog.unknown_features == UnknownFeatures::Track {
            return Some(FeatureId(self.catalog.features.len() as u16));
        }
        self.tracked.read().unwrap_or_else(|e| e.into_inner()).by_name.get(name).copied()
    }

    /// Number of ids handed out so far (ids are `0..len()`).
    pub fn len(&self) -> usize {
        self.catalog.features.len() + self.tracked.read().unwrap_or_else(|e| e.into_inner()).specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The spec of an id handed out by [`Features::resolve`].
    pub fn spec(&self, id: FeatureId) -> Arc<FeatureSpec> {
        let i = id.index();
        let n = self.catalog.features.len();
        if i < n {
            return self.catalog_specs[i].clone();
        }
        self.tracked.read().unwrap_or_else(|e| e.into_inner()).specs[i - n].clone()
    }

    /// The `feature` label of an id.
    pub fn name(&self, id: FeatureId) -> String {
        self.spec(id).key.clone()
    }

    /// Whether the id is a catalog feature (not `other` or tracked).
    pub fn in_catalog(&self, id: FeatureId) -> bool {
        id.index() < self.catalog.features.len()
    }
}
