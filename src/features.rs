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

pub type FeatureId = u16;

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
        let by_name = catalog.features.iter().enumerate().map(|(i, f)| (f.key.clone(), i as FeatureId)).collect();
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
        let base = self.catalog.features.len() as FeatureId;
        {
            let t = self.tracked.read().unwrap_or_else(|e| e.into_inner());
            if let Some(&id) = t.by_name.get(name) {
                return Resolved::Known(id);
            }
            if t.by_name.len() >= self.catalog.max_tracked_features {
                return Resolved::Other(base);
            }
        }
        let mut t = self.tracked.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = t.by_name.get(name) {
            return Resolved::Known(id);
        }
        if t.by_name.len() >= self.catalog.max_tracked_features {
            return Resolved::Other(base);
        }
        let id = base + t.specs.len() as FeatureId;
        t.specs.push(Arc::new(FeatureSpec::tracked(name, &self.catalog)));
        t.by_name.insert(name.to_string(), id);
        Resolved::Known(id)
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
        let i = id as usize;
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
}
