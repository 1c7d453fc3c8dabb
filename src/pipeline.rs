//! One stream's path through the stages: decode → resolve feature and
//! layer → facts → join (→ judge at close) → observers. The Kafka source
//! runs one `Pipeline` per partition; replay runs one per file.

use std::borrow::Cow;
use std::sync::Arc;

use crate::catalog::{Catalog, FeatureSpec, LayerId};
use crate::decode::{decode, Record, Reject};
use crate::features::{FeatureId, Features, Resolved};
use crate::join::{Evidence, Input, JoinEngine, Limits, Observer, Position};
use crate::judge::facts;
use crate::judge::revisions::Revisions;

/// A record that passed validation, with its catalog ids resolved.
pub struct Valid<'a> {
    pub record: Record<'a>,
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
    /// The position of the last record judged (records of one message
    /// share a source and offset and are told apart by their item).
    last_at: Option<Position>,
    /// Per feature id: the flag revisions this stream has met.
    revisions: Vec<Revisions>,
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
        let mut p = Pipeline {
            features,
            catalog,
            engine: JoinEngine::new(limits),
            specs: Vec::new(),
            last_at: None,
            revisions: Vec::new(),
        };
        p.load_specs(p.features.len());
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
        let record = decode(raw)?;
        let layer = self.catalog.layer_id(&record.layer).ok_or(Reject::UnknownLayer)?;
        let (feature, other) = match self.features.resolve(&record.feature) {
            Resolved::Known(id) => (id, false),
            Resolved::Other(id) => (id, true),
            Resolved::Rejected => return Err(Reject::UnknownFeature),
        };
        Ok(Valid { record, feature, layer, other })
    }

    /// Joins a validated record at event time `ts_ms`; `at` is where it
    /// came from (the pipeline numbers the records of one message).
    pub fn join(&mut self, v: &Valid<'_>, ts_ms: i64, at: Position, raw: &[u8], obs: &mut impl Observer) {
        if v.feature.index() >= self.specs.len() {
            self.load_specs(v.feature.index() + 1);
        }
        let spec = &self.specs[v.feature.index()];
        let at = match self.last_at {
            Some(l) if l.source == at.source && l.offset == at.offset => {
                Position { item: l.item.saturating_add(1), ..at }
            }
            _ => at,
        };
        self.last_at = Some(at);
        let f = facts(&v.record, spec, v.layer, self.catalog.api_layer, at, ts_ms);
        if f.revision != 0 {
            let i = v.feature.index();
            if self.revisions.len() <= i {
                self.revisions.resize_with(i + 1, Revisions::default);
            }
            if self.revisions[i].observe(f.revision, ts_ms) {
                obs.stale_revision(v.feature, v.layer);
            }
        }
        obs.evidence(&Evidence {
            feature: v.feature,
            layer: v.layer,
            path: f.path,
            ts_ms,
            service: v.record.service.as_deref(),
            build: v.record.build.as_deref(),
            revision: v.record.flags_revision.as_deref(),
        });
        let key: Cow<'_, str> = if v.other {
            Cow::Owned(format!("{}/{}", v.record.feature, v.record.request_id))
        } else {
            Cow::Borrowed(&v.record.request_id)
        };
        self.engine.process(Input { feature: v.feature, key: &key, facts: f, raw }, obs);
    }

    /// Caches the specs of ids below `n` (tracked features get ids while
    /// the stream runs).
    fn load_specs(&mut self, n: usize) {
        for id in FeatureId::all(n.min(self.features.len())).skip(self.specs.len()) {
            let spec = self.features.spec(id);
            self.engine.set_spec(id, &spec);
            self.specs.push(spec);
        }
    }

    /// The event time a valid record's own `ts` gives it: `None` when it
    /// has none, or when its `ts` is more than `max_clock_skew` ahead of
    /// `reference_ms` (a bad clock: a `ts` in microseconds, a client clock
    /// hours ahead would otherwise move the watermark past every later
    /// record of the stream); such a record is counted and takes the time
    /// a record without `ts` takes.
    pub fn event_time(&self, v: &Valid<'_>, reference_ms: i64, obs: &mut impl Observer) -> Option<i64> {
        let ts = v.record.ts_ms?;
        if ts > reference_ms.saturating_add(self.catalog.max_clock_skew_ms) {
            obs.clock_skewed(v.feature, v.layer);
            return None;
        }
        Some(ts)
    }

    /// Validates and joins one record of a live stream: a missing (or
    /// skewed) `ts` takes `reference_ms`, the Kafka message timestamp.
    /// Rejects are passed to the observer and returned.
    pub fn ingest(
        &mut self,
        raw: &[u8],
        at: Position,
        reference_ms: i64,
        obs: &mut impl Observer,
    ) -> Result<(), Reject> {
        match self.validate(raw) {
            Ok(v) => {
                let ts = self.event_time(&v, reference_ms, obs).unwrap_or(reference_ms);
                self.join(&v, ts, at, raw, obs);
                Ok(())
            }
            Err(r) => {
                obs.rejected(r);
                Err(r)
            }
        }
    }
}
