//! One stream's path through the stages: decode → resolve feature and
//! layer → facts → join (→ judge at close) → observers. The Kafka source
//! runs one `Pipeline` per partition; replay runs one per file.

use std::borrow::Cow;
use std::sync::Arc;

use crate::catalog::{Catalog, FeatureSpec, LayerId};
use crate::decode::{decode, Decision, Reject};
use crate::features::{FeatureId, Features, Resolved};
use crate::join::{Input, JoinEngine, Limits, Observer};
use crate::judge::facts;

/// A record that passed validation, with its catalog ids resolved.
pub struct Valid<'a> {
    pub decision: Decision<'a>,
    pub feature: FeatureId,
    pub layer: LayerId,
    /// Set for features counted as `other`: the join key then carries the
    /// real feature name so two untracked features never share a join.
    other: bool,
}

pub struct Pipeline {
    features: Arc<Features>,
    catalog: Arc<Catalog>,
    engine: JoinEngine,
    /// Specs by feature id, cached so the hot path takes no lock.
    specs: Vec<Arc<FeatureSpec>>,
}

impl Pipeline {
    pub fn new(features: Arc<Features>, sample_bytes: usize) -> Self {
        let catalog = features.catalog().clone();
        let limits = Limits {
            allowed_lateness_ms: catalog.allowed_lateness_ms,
            max_open_joins: catalog.max_open_joins,
            max_closed_keys: catalog.max_closed_keys,
            sample_bytes,
        };
        let mut p = Pipeline { features, catalog, engine: JoinEngine::new(limits), specs: Vec::new() };
        p.load_specs(p.features.len().saturating_sub(1) as FeatureId);
        p
    }

    pub fn engine(&self) -> &JoinEngine {
        &self.engine
    }

    pub fn engine_mut(&mut self) -> &mut JoinEngine {
        &mut self.engine
    }

    pub fn features(&self) -> &Arc<Features> {
        &self.features
    }

    /// Decodes and validates, in the precedence of SPEC §9.
    pub fn validate<'a>(&self, raw: &'a [u8]) -> Result<Valid<'a>, Reject> {
        let decision = decode(raw)?;
        let layer = self.catalog.layer_id(&decision.layer).ok_or(Reject::UnknownLayer)?;
        let (feature, other) = match self.features.resolve(&decision.feature) {
            Resolved::Known(id) => (id, false),
            Resolved::Other(id) => (id, true),
            Resolved::Rejected => return Err(Reject::UnknownFeature),
        };
        Ok(Valid { decision, feature, layer, other })
    }

    /// Joins a validated record at event time `ts_ms` and stream
    /// position `pos`.
    pub fn join(&mut self, v: &Valid<'_>, ts_ms: i64, pos: u64, raw: &[u8], obs: &mut impl Observer) {
        if v.feature as usize >= self.specs.len() {
            self.load_specs(v.feature);
        }
        let spec = &self.specs[v.feature as usize];
        let f = facts(&v.decision, spec, v.layer, self.catalog.api_layer, pos, ts_ms);
        let key: Cow<'_, str> = if v.other {
            Cow::Owned(format!("{}/{}", v.decision.feature, v.decision.request_id))
        } else {
            Cow::Borrowed(&v.decision.request_id)
        };
        self.engine.process(Input { feature: v.feature, key: &key, facts: f, raw }, obs);
    }

    fn load_specs(&mut self, upto: FeatureId) {
        for i in self.specs.len()..=upto as usize {
            if i >= self.features.len() {
                break;
            }
            let spec = self.features.spec(i as FeatureId);
            self.engine.set_spec(i as FeatureId, &spec);
            self.specs.push(spec);
        }
    }

    /// Validates and joins one record whose missing `ts` defaults to
    /// `fallback_ts_ms` (the Kafka message timestamp). Rejects are passed
    /// to the observer and returned.
    pub fn ingest(&mut self, raw: &[u8], pos: u64, fallback_ts_ms: i64, obs: &mut impl Observer) -> Result<(), Reject> {
        match self.validate(raw) {
            Ok(v) => {
                let ts = v.decision.ts_ms.unwrap_or(fallback_ts_ms);
                self.join(&v, ts, pos, raw, obs);
                Ok(())
            }
            Err(r) => {
                obs.rejected(r);
                Err(r)
            }
        }
    }
}
