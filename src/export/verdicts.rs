//! One JSON object per closed join: `replay --format verdicts` and the
//! verdicts topic (docs/reference.md#accord-replay) share this shape.

use std::io::Write;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, LayerId};
use crate::decode::format_rfc3339_ms;
use crate::features::Features;
use crate::join::{Closed, Observer};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct DivergenceLine {
    pub kind: String,
    pub upstream: String,
    pub downstream: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct VerdictLine {
    pub feature: String,
    pub request_id: String,
    pub verdict: String,
    pub path: String,
    pub divergences: Vec<DivergenceLine>,
    pub missing: Vec<String>,
    /// Join start (earliest event time), RFC 3339 UTC.
    pub start: String,
}

/// Builds the verdict of a closed join.
pub fn verdict_json(c: &Closed<'_>, feature_name: &str, catalog: &Catalog) -> VerdictLine {
    let layer = |l: LayerId| catalog.layer_name(l).to_string();
    let missing = c.judgement.missing.iter().map(layer).collect();
    VerdictLine {
        feature: feature_name.to_string(),
        request_id: c.request_id.to_string(),
        verdict: c.judgement.verdict.as_str().to_string(),
        path: c.judgement.path.as_str().to_string(),
        divergences: c
            .divergences
            .iter()
            .map(|d| DivergenceLine {
                kind: d.kind.as_str().to_string(),
                upstream: layer(d.upstream),
                downstream: layer(d.downstream),
            })
            .collect(),
        missing,
        start: format_rfc3339_ms(c.start_ms),
    }
}

/// Writes verdict lines to `out` (errors are kept and reported at the end
/// so the pipeline itself never fails on a closed pipe).
pub struct VerdictWriter<W: Write> {
    out: W,
    features: Arc<Features>,
    pub error: Option<std::io::Error>,
}

impl<W: Write> VerdictWriter<W> {
    pub fn new(out: W, features: Arc<Features>) -> Self {
        VerdictWriter { out, features, error: None }
    }
    /// The writer, for in-memory use.
    pub fn into_inner(self) -> W {
        self.out
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}

impl<W: Write> Observer for VerdictWriter<W> {
    fn record(
        &mut self,
        _: crate::features::FeatureId,
        _: crate::catalog::LayerId,
        _: crate::judge::RecordPath,
        _: bool,
    ) {
    }
    fn closed(&mut self, c: &Closed<'_>) {
        if self.error.is_some() {
            return;
        }
        let line = verdict_json(c, &self.features.name(c.feature), self.features.catalog());
        let r = serde_json::to_writer(&mut self.out, &line)
            .map_err(std::io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"));
        if let Err(e) = r {
            self.error = Some(e);
        }
    }
}
