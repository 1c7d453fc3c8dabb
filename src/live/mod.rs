//! Live statistics per feature over sliding windows (default 5 minutes, up
//! to [`MAX_WINDOW_MS`]), read by the gate, features and divergences APIs
//! and the status page (see docs/gate.md).
//!
//! Three parts, so that what every instance of a consumer group judged can
//! be shipped, merged and served as one view:
//! - a [`Delta`]: what some judging task saw over some time, mergeable
//!   exactly (counts add, histograms add, samples keep the newest) and
//!   serialisable ([`Delta::encode`], [`Delta::decode`]);
//! - a [`Recorder`]: the [`Observer`](crate::join::Observer) one judging
//!   task feeds; it accumulates a delta of its own, without a lock, and
//!   hands it over with [`Recorder::take`];
//! - a [`LiveView`]: the merged store the APIs read; it applies deltas
//!   ([`LiveView::apply`]) and keeps the last hour.
//!
//! # What is kept, per feature
//! - 1-second buckets: closed joins by path × verdict, requests per
//!   divergence kind, divergences per `(kind, upstream, downstream,
//!   direction)` pair and per leading cause (all requests and exposed ones
//!   apart), and per layer its non-late records by path, late records and
//!   missing reports. Buckets exist only for seconds that saw an event, so
//!   an idle feature costs nothing;
//! - 10-second lag slices: per layer an `hdrhistogram` (1 ms …
//!   [`LAG_HIGH_MS`], 1 significant digit: ≤ 6.25 % error) of the event
//!   time of the layer's first record minus the join start. A window reads
//!   the slices that overlap it, so lag quantiles cover the window rounded
//!   out to whole 10-second slices. Every histogram has the same bounds, so
//!   histograms of any two instances add exactly;
//! - the [`MAX_SAMPLES`] most recent divergent requests, with the bytes of
//!   every record as received (from the join engine's sample ring, see
//!   [`Closed::raw`](crate::join::Closed::raw)); the bytes are parsed only
//!   when an API reads them;
//! - 10-second exit slices ([`EXIT_SLICE_MS`]): the flag exit review's
//!   evidence of every valid record (late ones included) that arrived in
//!   the slice, an [`ExitAgg`](crate::exit::ExitAgg) per feature. Slices
//!   merge exactly (the aggregate of merged slices is the aggregate of
//!   their records, in any order), so the view's exit review over a window
//!   is the review an archive of the same records gives. A window reads the
//!   slices that overlap it, and the review's request counts are read over
//!   the same period: the window rounded out to whole 10-second slices.
//!   Slices rather than one aggregate per 1-second bucket: an aggregate
//!   carries per-layer and per-revision tables of its own (a few KB), and
//!   3,600 of them per feature would cost several times the hour's
//!   evidence itself.
//!
//! # Time
//! Everything is bucketed by the **wall-clock time at which the judging
//! task saw the event** (a record's arrival, a join's close), not by event
//! time: a gate asks "what did the stack do in the last five minutes", and
//! a replayed backlog or a skewed producer clock must not hide fresh
//! disagreement in old buckets. The recorder reads no clock: its owner
//! sets "now" once per batch of input ([`Recorder::set_now_ms`]), which
//! costs one clock read per batch instead of one per record, and "now"
//! never steps back within a recorder (a clock that steps back counts into
//! the newest bucket). Readers pass `now_ms` explicitly; the view holds
//! the clock (the wall clock in production, a manual one in tests), so no
//! test sleeps.
//!
//! # Locking
//! The judging hot path takes no lock: each judging task owns its
//! recorder. The view keeps one `Mutex` per feature, held only to add a
//! delta in or to sum a window (a few thousand small buckets and ≤ 361
//! histograms per layer, well under a millisecond) or to copy samples out;
//! JSON is parsed and rendered after unlocking, and no lock is held across
//! I/O. The per-feature mutexes live in a `RwLock<Vec<…>>` written only
//! when a feature is first seen.

mod delta;
mod recorder;
mod shares;
#[cfg(test)]
mod tests;
mod view;
mod wire;

use std::sync::Arc;

use crate::catalog::{LayerId, LayerSet};
use crate::exit::RequestCounts;
use crate::explain::{Cause, Pair};
use crate::join::{CloseCause, Position};
use crate::judge::{RecordPath, RequestPath, Verdict};

pub use delta::Delta;
pub use recorder::Recorder;
pub use shares::{Freshness, InstanceView, ShareNote};
pub use view::{Applied, ExitEvidence, LiveView};
pub use wire::DecodeError;

/// The longest window the APIs accept, and how long the view keeps data.
pub const MAX_WINDOW_MS: i64 = 3_600_000;
/// The default window of the gate, features API and status page.
pub const DEFAULT_WINDOW_MS: i64 = 300_000;
/// Divergent requests kept per feature (in the view, and per delta).
pub const MAX_SAMPLES: usize = 100;
/// Granularity of counts.
pub const BUCKET_MS: i64 = 1_000;
/// Granularity of lag histograms.
pub const LAG_SLICE_MS: i64 = 10_000;
/// The largest lag a histogram tells apart; longer lags count as this.
/// The same for every instance, so histograms merge exactly.
pub const LAG_HIGH_MS: u64 = MAX_WINDOW_MS as u64;
/// Granularity of the exit review's evidence.
pub const EXIT_SLICE_MS: i64 = 10_000;
/// The default window of the exit review.
pub const DEFAULT_EXIT_WINDOW_MS: i64 = MAX_WINDOW_MS;

/// Milliseconds since the epoch, now.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn wall_clock() -> Clock {
    Arc::new(|| chrono::Utc::now().timestamp_millis())
}

/// One divergent request, kept with its records as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub request_id: String,
    pub verdict: Verdict,
    pub path: RequestPath,
    /// Join start (earliest event time).
    pub start_ms: i64,
    /// Wall-clock time of the close.
    pub closed_ms: i64,
    /// The order of closes within a millisecond at the judging task that
    /// kept the sample (later is larger).
    pub seq: u64,
    pub close_cause: CloseCause,
    pub pairs: Vec<Pair>,
    pub cause: Option<Cause>,
    /// Expected layers that never reported.
    pub missing: LayerSet,
    /// In pipeline order, then event time.
    pub records: Vec<SampleRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleRecord {
    pub layer: LayerId,
    /// Where the record came from (offset within its topic partition).
    pub pos: Position,
    pub ts_ms: i64,
    pub path: RecordPath,
    /// The record as received; `None` if it had left the sample buffer.
    pub raw: Option<Box<[u8]>>,
}

/// Per layer, over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Non-late records by path.
    pub new: u64,
    pub old: u64,
    pub unknown: u64,
    pub late: u64,
    /// Closed joins this (expected) layer never reported to.
    pub missing: u64,
    pub lag_samples: u64,
    pub lag_p50_ms: Option<u64>,
    pub lag_p99_ms: Option<u64>,
}

impl LayerStats {
    /// Non-late records.
    pub fn records(&self) -> u64 {
        self.new + self.old + self.unknown
    }
    /// `new / (new + old)`: of the records with a known path, the share
    /// that took the new one.
    pub fn new_path_ratio(&self) -> Option<f64> {
        let known = self.new + self.old;
        (known > 0).then(|| self.new as f64 / known as f64)
    }
    /// `old / records`: the share of this layer's records that still took
    /// the old path.
    pub fn old_path_share(&self) -> Option<f64> {
        let n = self.records();
        (n > 0).then(|| self.old as f64 / n as f64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairCount {
    pub pair: Pair,
    /// Requests with this divergence.
    pub requests: u64,
    /// Of those, requests on the new or mixed path.
    pub exposed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CauseCount {
    pub cause: Cause,
    /// Divergent requests with this leading explanation.
    pub requests: u64,
    /// Of those, requests on the new or mixed path.
    pub exposed: u64,
}

/// One feature's figures over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    pub window_ms: i64,
    /// Closed joins, `[path][verdict]`.
    pub requests: [[u64; 4]; 4],
    /// Requests with at least one divergence of each kind.
    pub kinds: [u64; 4],
    /// Per divergent pair, most frequent first (a request counts once per
    /// pair, like `accord_divergences_total`).
    pub pairs: Vec<PairCount>,
    /// Divergent requests by leading explanation, most frequent first (a
    /// request counts once).
    pub causes: Vec<CauseCount>,
    pub layers: Vec<LayerStats>,
}

impl WindowStats {
    /// Nothing over `window_ms`, for `layers` layers.
    pub fn empty(window_ms: i64, layers: usize) -> Self {
        WindowStats {
            window_ms,
            requests: [[0; 4]; 4],
            kinds: [0; 4],
            pairs: Vec::new(),
            causes: Vec::new(),
            layers: vec![LayerStats::default(); layers],
        }
    }
    /// Closed joins.
    pub fn total(&self) -> u64 {
        self.requests.iter().flatten().sum()
    }
    pub fn verdict(&self, v: Verdict) -> u64 {
        self.requests.iter().map(|p| p[v as usize]).sum()
    }
    pub fn path(&self, p: RequestPath) -> u64 {
        self.requests[p as usize].iter().sum()
    }
    /// Closed joins on the new or mixed path with verdict `v`.
    pub fn exposed_verdicts(&self, v: Verdict) -> u64 {
        self.requests[RequestPath::New as usize][v as usize] + self.requests[RequestPath::Mixed as usize][v as usize]
    }
    /// Closed joins on the new or mixed path, whatever their verdict.
    pub fn exposed(&self) -> u64 {
        self.path(RequestPath::New) + self.path(RequestPath::Mixed)
    }
    /// Exposed joins that count towards exposed agreement (verdict other
    /// than `incomplete`: a request some layer never reported to cannot be
    /// said to agree or not).
    pub fn exposed_judged(&self) -> u64 {
        self.exposed() - self.exposed_verdicts(Verdict::Incomplete)
    }
    pub fn exposed_agree(&self) -> u64 {
        self.exposed_verdicts(Verdict::Agree)
    }
    /// The headline number: of the judged exposed requests, the share on
    /// which every layer agreed; `None` without a judged exposed request.
    pub fn exposed_agreement(&self) -> Option<f64> {
        let n = self.exposed_judged();
        (n > 0).then(|| self.exposed_agree() as f64 / n as f64)
    }
    /// Incomplete joins (any path) over all closed joins.
    pub fn incomplete_ratio(&self) -> Option<f64> {
        let n = self.total();
        (n > 0).then(|| self.verdict(Verdict::Incomplete) as f64 / n as f64)
    }
    /// Closed joins on the old path that count towards the old path's
    /// agreement (verdict other than `incomplete`).
    pub fn old_judged(&self) -> u64 {
        let old = &self.requests[RequestPath::Old as usize];
        old.iter().sum::<u64>() - old[Verdict::Incomplete as usize]
    }
    pub fn old_agree(&self) -> u64 {
        self.requests[RequestPath::Old as usize][Verdict::Agree as usize]
    }
    /// The noise floor: of the judged old-path joins, the share on which
    /// every layer agreed (disagreement that exists without the rollout);
    /// `None` without a judged old-path join.
    pub fn old_path_agreement(&self) -> Option<f64> {
        let n = self.old_judged();
        (n > 0).then(|| self.old_agree() as f64 / n as f64)
    }
    /// The closed requests as the flag exit review counts them.
    pub fn request_counts(&self) -> RequestCounts {
        RequestCounts {
            requests: self.total(),
            divergent: self.verdict(Verdict::Diverge),
            incomplete: self.verdict(Verdict::Incomplete),
            by_kind: self.kinds,
        }
    }
}

/// One point of a feature's chart: its figures over one step of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// Closed exposed joins other than `incomplete`, and of those the ones
    /// that agreed.
    pub exposed_judged: u64,
    pub exposed_agree: u64,
    /// Per layer (the catalog's order): non-late records on the new and on
    /// the old path.
    pub layers: Vec<(u64, u64)>,
}

impl Point {
    pub fn empty(layers: usize) -> Self {
        Point { exposed_judged: 0, exposed_agree: 0, layers: vec![(0, 0); layers] }
    }
    pub fn exposed_agreement(&self) -> Option<f64> {
        (self.exposed_judged > 0).then(|| self.exposed_agree as f64 / self.exposed_judged as f64)
    }
    /// `new / (new + old)` of a layer, like [`LayerStats::new_path_ratio`].
    pub fn new_path_ratio(&self, layer: usize) -> Option<f64> {
        let (new, old) = self.layers.get(layer).copied().unwrap_or((0, 0));
        (new + old > 0).then(|| new as f64 / (new + old) as f64)
    }
}
