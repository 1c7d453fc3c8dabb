//! What the join stage tells the rest of accord: every record counted,
//! every join closed and judged, every reject, and the evidence the flag
//! exit review reads. Metrics, the replay summary, verdict output, live
//! statistics and the exit review are observers.

use super::ring::RawRing;
use super::CloseCause;
use crate::catalog::LayerId;
use crate::features::FeatureId;
use crate::judge::{Divergence, Facts, Judgement, RecordPath};

/// A join as it closes; borrowed for the duration of the callback.
pub struct Closed<'a> {
    pub feature: FeatureId,
    pub request_id: &'a str,
    pub start_ms: i64,
    pub cause: CloseCause,
    pub judgement: Judgement,
    pub divergences: &'a [Divergence],
    pub records: &'a [Facts],
    pub(super) rings: &'a [RawRing],
}

impl Closed<'_> {
    /// The bytes of a record of this join as received, while the engine's
    /// sample buffer still holds them.
    pub fn raw(&self, record: &Facts) -> Option<&[u8]> {
        self.rings.get(record.source as usize)?.get(record.position().key())
    }
}

/// Receives everything the join stage decides. Metrics, the replay
/// summary, verdict output and live statistics are observers.
pub trait Observer {
    /// A record failed validation (counted, skipped).
    fn rejected(&mut self, _reason: crate::decode::Reject) {}
    /// A valid record was counted; `late` records change no verdict.
    fn record(&mut self, _feature: FeatureId, _layer: LayerId, _path: RecordPath, _late: bool) {}
    /// A join closed and was judged.
    fn closed(&mut self, _c: &Closed<'_>) {}
    /// A valid record's `ts` was too far ahead of its reference time and
    /// counted as absent (a bad clock).
    fn clock_skewed(&mut self, _feature: FeatureId, _layer: LayerId) {}
    /// A valid record evaluated a flag revision the stream had already
    /// seen superseded at its event time.
    fn stale_revision(&mut self, _feature: FeatureId, _layer: LayerId) {}
    /// An item of an input message that is not a flag evaluation (an
    /// OpenTelemetry log record or span event of another kind) was skipped.
    fn ignored(&mut self, _items: u64) {}
    /// The number of open joins changed by `delta`.
    fn open_joins(&mut self, _delta: i64) {}
    /// What the flag exit review needs of a valid record, late ones
    /// included (borrowed from the record: nothing is allocated for
    /// observers that ignore it).
    fn evidence(&mut self, _e: &Evidence<'_>) {}
}

/// One valid record as the flag exit review sees it. Late records are
/// evidence too: a decision that arrived after its request was judged was
/// still taken, on the path it names, by the service and build it names;
/// leaving it out would hide exactly the slow consumers and queued jobs
/// that keep a flag alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence<'a> {
    pub feature: FeatureId,
    pub layer: LayerId,
    pub path: RecordPath,
    /// Event time, epoch milliseconds.
    pub ts_ms: i64,
    pub service: Option<&'a str>,
    pub build: Option<&'a str>,
    /// `flags_revision`.
    pub revision: Option<&'a str>,
}

/// Both observers see everything, in order.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn rejected(&mut self, r: crate::decode::Reject) {
        self.0.rejected(r);
        self.1.rejected(r);
    }
    fn record(&mut self, feature: FeatureId, layer: LayerId, path: RecordPath, late: bool) {
        self.0.record(feature, layer, path, late);
        self.1.record(feature, layer, path, late);
    }
    fn closed(&mut self, c: &Closed<'_>) {
        self.0.closed(c);
        self.1.closed(c);
    }
    fn open_joins(&mut self, d: i64) {
        self.0.open_joins(d);
        self.1.open_joins(d);
    }
    fn clock_skewed(&mut self, f: FeatureId, l: LayerId) {
        self.0.clock_skewed(f, l);
        self.1.clock_skewed(f, l);
    }
    fn stale_revision(&mut self, f: FeatureId, l: LayerId) {
        self.0.stale_revision(f, l);
        self.1.stale_revision(f, l);
    }
    fn ignored(&mut self, n: u64) {
        self.0.ignored(n);
        self.1.ignored(n);
    }
    fn evidence(&mut self, e: &Evidence<'_>) {
        self.0.evidence(e);
        self.1.evidence(e);
    }
}

/// An observer that may be absent (the verdicts topic is optional).
impl<T: Observer> Observer for Option<T> {
    fn rejected(&mut self, r: crate::decode::Reject) {
        if let Some(o) = self {
            o.rejected(r)
        }
    }
    fn record(&mut self, f: FeatureId, l: LayerId, p: RecordPath, late: bool) {
        if let Some(o) = self {
            o.record(f, l, p, late)
        }
    }
    fn closed(&mut self, c: &Closed<'_>) {
        if let Some(o) = self {
            o.closed(c)
        }
    }
    fn open_joins(&mut self, d: i64) {
        if let Some(o) = self {
            o.open_joins(d)
        }
    }
    fn clock_skewed(&mut self, f: FeatureId, l: LayerId) {
        if let Some(o) = self {
            o.clock_skewed(f, l)
        }
    }
    fn stale_revision(&mut self, f: FeatureId, l: LayerId) {
        if let Some(o) = self {
            o.stale_revision(f, l)
        }
    }
    fn ignored(&mut self, n: u64) {
        if let Some(o) = self {
            o.ignored(n)
        }
    }
    fn evidence(&mut self, e: &Evidence<'_>) {
        if let Some(o) = self {
            o.evidence(e)
        }
    }
}

impl<T: Observer + ?Sized> Observer for &mut T {
    fn rejected(&mut self, r: crate::decode::Reject) {
        (**self).rejected(r)
    }
    fn record(&mut self, feature: FeatureId, layer: LayerId, path: RecordPath, late: bool) {
        (**self).record(feature, layer, path, late)
    }
    fn closed(&mut self, c: &Closed<'_>) {
        (**self).closed(c)
    }
    fn open_joins(&mut self, d: i64) {
        (**self).open_joins(d)
    }
    fn clock_skewed(&mut self, f: FeatureId, l: LayerId) {
        (**self).clock_skewed(f, l)
    }
    fn stale_revision(&mut self, f: FeatureId, l: LayerId) {
        (**self).stale_revision(f, l)
    }
    fn ignored(&mut self, n: u64) {
        (**self).ignored(n)
    }
    fn evidence(&mut self, e: &Evidence<'_>) {
        (**self).evidence(e)
    }
}
