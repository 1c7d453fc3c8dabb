//! The flag exit review: who still takes the old path, which layer still
//! evaluates an older flag snapshot, and can the flag be deleted? Answered
//! from evidence, per feature, over a window (the user reference is
//! docs/exit-review.md).
//!
//! - [`ExitRecorder`] (an [`Observer`](crate::join::Observer)) collects,
//!   from every valid record (late ones included), an [`ExitAgg`] per
//!   feature; [`RequestTally`] counts the closed requests.
//! - [`ExitAgg`] is mergeable (any order, same result), serialisable
//!   (versioned JSON, [`ExitAgg::encode`] / [`ExitAgg::decode`], or as a
//!   serde field) and bounded. The live view keeps one per time bucket and
//!   merges them for its window; `accord report` fills one from the whole
//!   archive. Both compute every figure with the same code from the same
//!   aggregate, so on the same records they agree.
//! - [`review`] turns an aggregate, the window's [`RequestCounts`] and the
//!   catalog entry into an [`ExitReview`] (JSON), [`render_markdown`] into
//!   Markdown.
//!
//! # What is kept, per feature (event times throughout)
//! - per layer: records by path; the span of event times; old-path records
//!   by `(service, build)` with the last event time (at most
//!   [`MAX_TAKERS`] pairs, the rest summed: the top 20 and the `other` sum
//!   of the review are exact below the cap, and the `other` sum always is);
//! - per revision (at most [`MAX_REVISIONS`], the ones that sort last in
//!   natural order; the records of the others are counted per layer), per
//!   layer: records, first and last event time, and records per event-time
//!   second with the exact count at each of the [`MS_DETAIL`] lowest
//!   distinct milliseconds of that second. At most `budget` `(layer,
//!   second)` entries per revision are kept, the latest ones (the
//!   *horizon* rises past the earliest): [`LIVE_SECONDS_PER_LAYER`] per
//!   layer for the live view (an hour), [`ARCHIVE_SECONDS`] for an archive
//!   (twelve days of four layers).
//!
//! # Bound
//! An aggregate holds at most `layers × (MAX_TAKERS + 2)` taker and span
//! entries plus `MAX_REVISIONS × budget × (1 + MS_DETAIL)` counters, and
//! names of at most [`MAX_NAME_BYTES`] bytes: it grows with layers,
//! services and builds, revisions and event-time seconds, never with
//! requests. With the live budget that is at most 16 revisions × 4,096
//! seconds × about 170 bytes (11 MB) per layer and feature for an
//! adversarial stream; a real hour of four layers and two revisions at any
//! rate stays under 5 MB.
//!
//! # Exactness
//! Record counts, paths, takers, first and last seen times and adoption
//! lags are exact. A stale share counts records at or after the current
//! revision's first seen time `T` (a millisecond): records in other
//! seconds than `T`'s are counted exactly from the per-second counts;
//! records in `T`'s second are exact when their distinct milliseconds fit
//! the detail, or when `T` is no later than one past the highest kept
//! millisecond (the rest are known to be later). Otherwise, or when `T`'s
//! second lies below a revision's horizon, the review says so: it gives the
//! range the share lies in (`stale_share_range`, with `stale_share` its
//! upper end) and a note.

mod agg;
mod markdown;
mod record;
mod review;
mod wire;

pub use agg::{
    natural_cmp, ExitAgg, LayerAgg, RevAgg, RevLayer, Second, Seen, Span, ARCHIVE_SECONDS, LIVE_SECONDS_PER_LAYER,
    MAX_NAME_BYTES, MAX_REVISIONS, MAX_TAKERS, MS_DETAIL, UNKNOWN,
};
pub use markdown::{md, render_markdown};
pub use record::{ExitRecorder, RequestCounts, RequestTally};
pub use review::{
    current_revision, review, ExitReview, LayerReview, OtherTakers, ReviewParams, ReviewWindow, RevisionReview, Status,
    Taker, DEFAULT_MIN_SAMPLES, TOP_TAKERS,
};
pub use wire::{ExitDecodeError, VERSION};
