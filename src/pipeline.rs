//! One stream's path through the stages: decode → resolve feature and
//! layer → facts → join (→ judge at close) → observers. The Kafka source
//! runs one `Pipeline` per partition; replay runs one per file.
//!
//! A message is one accord record, or (OpenTelemetry input formats) one
//! export request holding any number of evaluations, each judged like a
//! record, in message order, all at the message's position.

use std::borrow::Cow;
use std::sync::Arc;

use crate::catalog::{Catalog, FeatureSpec, LayerId};
use crate::decode::otlp::{render_accord, Mapping, Scratch, Signal};
use crate::decode::{decode, InputFormat, Record, Reject};
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

impl Valid<'_> {
    /// The record as accord JSON bytes: `raw` itself when the record came
    /// as accord JSON, else the mapped record rendered (replay keeps these
    /// for records it judges later).
    pub fn accord_bytes(&self, raw: Option<&[u8]>) -> Vec<u8> {
        match raw {
            Some(raw) => raw.to_vec(),
            None => {
                let mut out = Vec::with_capacity(256);
                render_accord(&self.record, &mut out);
                out
            }
        }
    }
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
    /// The catalog's `[otel]` section, prepared for decoding. Moved out
    /// while a message's records are handed on (they borrow it, and the
    /// callback borrows the pipeline); an `Arc` cloned per message instead
    /// cost two atomic operations, about 4% of an OTLP/JSON evaluation.
    otlp: Option<Box<Mapping>>,
    sample_bytes: usize,
    /// Buffers for decoding OpenTelemetry messages, reused.
    scratch: Scratch,
    /// Where an OpenTelemetry evaluation is rendered as accord JSON for the
    /// sample buffer (reused: rendering allocates nothing).
    rendered: Vec<u8>,
}

/// What one message held (see [`Pipeline::ingest_message`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageOutcome {
    /// Records judged (late ones included).
    pub records: u32,
    /// Records (or the whole message) rejected.
    pub rejected: u32,
    /// OpenTelemetry items that are not flag evaluations.
    pub ignored: u64,
    /// The first reject, for a rate-limited log line.
    pub first_reject: Option<Reject>,
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
        let otlp = Some(Box::new(Mapping::new(&catalog.otel)));
        let mut p = Pipeline {
            features,
            catalog,
            engine: JoinEngine::new(limits),
            specs: Vec::new(),
            last_at: None,
            revisions: Vec::new(),
            otlp,
            sample_bytes,
            scratch: Scratch::default(),
            rendered: Vec::new(),
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

    /// Decodes and validates one accord record, in the precedence of
    /// docs/reference.md#reject-reasons.
    pub fn validate<'a>(&self, raw: &'a [u8]) -> Result<Valid<'a>, Reject> {
        self.resolve(decode(raw)?)
    }

    /// Resolves a decoded record's layer and feature in the catalog.
    pub fn resolve<'a>(&self, record: Record<'a>) -> Result<Valid<'a>, Reject> {
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
        if !self.within_skew(ts, reference_ms) {
            obs.clock_skewed(v.feature, v.layer);
            return None;
        }
        Some(ts)
    }

    /// Whether a record's own `ts` counts against `reference_ms` (see
    /// [`Pipeline::event_time`]).
    pub fn within_skew(&self, ts: i64, reference_ms: i64) -> bool {
        ts <= reference_ms.saturating_add(self.catalog.max_clock_skew_ms)
    }

    /// Decodes one message of `format` and hands `f` each record it holds,
    /// validated (or its reject), in message order, with its index in the
    /// message and its accord bytes when the message is one accord record
    /// (`None`: an OpenTelemetry evaluation, see [`Pipeline::join_record`]).
    /// A message that does not decode is one reject (`too_large`,
    /// `malformed_json`, `malformed_otlp`); items that are not evaluations
    /// are counted with [`Observer::ignored`]. Returns the ignored items.
    pub fn for_each_record<O: Observer>(
        &mut self,
        format: InputFormat,
        raw: &[u8],
        obs: &mut O,
        mut f: impl FnMut(&mut Pipeline, u16, Result<Valid<'_>, Reject>, Option<&[u8]>, &mut O),
    ) -> u64 {
        let signal = match format {
            InputFormat::Accord => {
                let v = self.validate(raw);
                f(self, 0, v, Some(raw), obs);
                return 0;
            }
            InputFormat::OtlpJson => None,
            InputFormat::OtlpProtoLogs => Some(Signal::Logs),
            InputFormat::OtlpProtoTraces => Some(Signal::Traces),
        };
        // Always there between messages; rebuilt only if a callback were
        // ever to re-enter (none does).
        let map = self.otlp.take().unwrap_or_else(|| Box::new(Mapping::new(&self.catalog.otel)));
        let mut scratch = std::mem::take(&mut self.scratch);
        let decoded = match map.decode_in(signal, raw, &mut scratch) {
            Ok(d) => d,
            Err(r) => {
                self.otlp = Some(map);
                f(self, 0, Err(r), None, obs);
                return 0;
            }
        };
        if decoded.ignored > 0 {
            obs.ignored(decoded.ignored);
        }
        for (i, r) in decoded.records().enumerate() {
            let v = r.and_then(|r| self.resolve(r));
            f(self, u16::try_from(i).unwrap_or(u16::MAX), v, None, obs);
        }
        let ignored = decoded.ignored;
        decoded.recycle(&mut self.scratch);
        self.otlp = Some(map);
        ignored
    }

    /// [`Pipeline::join`] for a record of [`Pipeline::for_each_record`]:
    /// the sample buffer keeps `raw`, or for an OpenTelemetry evaluation the
    /// record rendered as accord JSON (only when samples are kept), so a
    /// divergence sample reads the same whatever the input format.
    pub fn join_record(
        &mut self,
        v: &Valid<'_>,
        ts_ms: i64,
        at: Position,
        raw: Option<&[u8]>,
        obs: &mut impl Observer,
    ) {
        match raw {
            Some(raw) => self.join(v, ts_ms, at, raw, obs),
            None if self.sample_bytes == 0 => self.join(v, ts_ms, at, &[], obs),
            None => {
                let mut buf = std::mem::take(&mut self.rendered);
                buf.clear();
                render_accord(&v.record, &mut buf);
                self.join(v, ts_ms, at, &buf, obs);
                self.rendered = buf;
            }
        }
    }

    /// Judges one live message of any input format: every record it holds,
    /// in order, at position `at` (numbered by their index in the message);
    /// a record without (or with a skewed) `ts` takes `reference_ms`, the
    /// Kafka message timestamp. Rejects are passed to the observer and
    /// summed up in the outcome.
    pub fn ingest_message(
        &mut self,
        format: InputFormat,
        raw: &[u8],
        at: Position,
        reference_ms: i64,
        obs: &mut impl Observer,
    ) -> MessageOutcome {
        let mut out = MessageOutcome::default();
        out.ignored = self.for_each_record(format, raw, obs, |p, item, v, raw, obs| {
            p.ingest_validated(v, Position { item, ..at }, raw, reference_ms, obs, &mut out)
        });
        out
    }

    /// Joins one record of a message (or counts its reject) into `out`:
    /// for each record of [`Pipeline::ingest_message`], and for an accord
    /// record validated beforehand (the merge of several topics decodes
    /// each head once for its event time, and the judge takes that decode).
    pub fn ingest_validated(
        &mut self,
        v: Result<Valid<'_>, Reject>,
        at: Position,
        raw: Option<&[u8]>,
        reference_ms: i64,
        obs: &mut impl Observer,
        out: &mut MessageOutcome,
    ) {
        match v {
            Ok(v) => {
                let ts = self.event_time(&v, reference_ms, obs).unwrap_or(reference_ms);
                self.join_record(&v, ts, at, raw, obs);
                out.records += 1;
            }
            Err(r) => {
                obs.rejected(r);
                out.rejected += 1;
                out.first_reject.get_or_insert(r);
            }
        }
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
        let mut out = MessageOutcome::default();
        self.ingest_validated(self.validate(raw), at, Some(raw), reference_ms, obs, &mut out);
        out.first_reject.map_or(Ok(()), Err)
    }
}
