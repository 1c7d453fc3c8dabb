//! `accord replay`: judges JSON-lines files with the live semantics, each
//! file one stream (SPEC §7). Also the post-incident tool.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;

use crate::features::Features;
use crate::join::Observer;
use crate::pipeline::Pipeline;

/// Where a replay stream comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    pub fn parse(arg: &str) -> Source {
        if arg == "-" {
            Source::Stdin
        } else {
            Source::File(PathBuf::from(arg))
        }
    }
    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "<stdin>".into(),
            Source::File(p) => p.display().to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot open {name}: {source}")]
    Open { name: String, source: std::io::Error },
    #[error("cannot read {name} at line {line}: {source}")]
    Read { name: String, line: u64, source: std::io::Error },
}

/// Judges every source in turn, each as its own stream.
pub fn replay(sources: &[Source], features: &Arc<Features>, obs: &mut impl Observer) -> Result<u64, ReplayError> {
    let mut total = 0;
    for s in sources {
        let name = s.name();
        let reader: Box<dyn BufRead> = match s {
            Source::Stdin => Box::new(BufReader::with_capacity(1 << 20, std::io::stdin().lock())),
            Source::File(p) => {
                let f = std::fs::File::open(p).map_err(|source| ReplayError::Open { name: name.clone(), source })?;
                Box::new(BufReader::with_capacity(1 << 20, f))
            }
        };
        let mut pipeline = Pipeline::new(features.clone(), 0);
        total += replay_stream(reader, &mut pipeline, obs, &name)?;
    }
    Ok(total)
}

/// Judges one stream of lines and closes every join at its end. Returns
/// the number of non-empty lines.
///
/// Event time of records without `ts` (SPEC §2): the valid record before
/// it in the same stream; records at the head take the first valid `ts`
/// that follows (the wall clock if there is none), so the result never
/// depends on when an archive is judged.
pub fn replay_stream(
    mut reader: impl BufRead,
    pipeline: &mut Pipeline,
    obs: &mut impl Observer,
    name: &str,
) -> Result<u64, ReplayError> {
    let mut line = Vec::with_capacity(4096);
    let mut pos: u64 = 0;
    let mut lines = 0;
    let mut prev_ts: Option<i64> = None;
    // Valid head records that had no `ts`, as (position, bytes).
    let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|source| ReplayError::Read {
            name: name.to_string(),
            line: pos + 1,
            source,
        })?;
        if n == 0 {
            break;
        }
        pos += 1;
        let rec = trim_line(&line);
        if rec.iter().all(|b| b.is_ascii_whitespace()) {
            continue; // blank lines are not records
        }
        lines += 1;
        match pipeline.validate(rec) {
            Err(r) => obs.rejected(r),
            Ok(v) => match (v.decision.ts_ms, prev_ts) {
                (Some(ts), _) => {
                    if !pending.is_empty() {
                        flush_pending(&mut pending, ts, pipeline, obs);
                    }
                    pipeline.join(&v, ts, pos, rec, obs);
                    prev_ts = Some(ts);
                }
                (None, Some(ts)) => pipeline.join(&v, ts, pos, rec, obs),
                (None, None) => pending.push((pos, rec.to_vec())),
            },
        }
    }
    if !pending.is_empty() {
        let now = chrono::Utc::now().timestamp_millis();
        flush_pending(&mut pending, now, pipeline, obs);
    }
    pipeline.engine_mut().flush(obs);
    Ok(lines)
}

fn flush_pending(pending: &mut Vec<(u64, Vec<u8>)>, ts: i64, pipeline: &mut Pipeline, obs: &mut impl Observer) {
    for (pos, bytes) in pending.drain(..) {
        // These validated once already; validation is deterministic.
        if let Ok(v) = pipeline.validate(&bytes) {
            pipeline.join(&v, ts, pos, &bytes, obs);
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
        end -= 1;
    }
    &line[..end]
}
