//! `accord replay`: judges JSON-lines files with the live semantics, each
//! file one stream (SPEC §7). Also the post-incident tool.

use std::io::Read;
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
        let reader: Box<dyn Read> = match s {
            Source::Stdin => Box::new(std::io::stdin().lock()),
            Source::File(p) => {
                Box::new(std::fs::File::open(p).map_err(|source| ReplayError::Open { name: name.clone(), source })?)
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
///
/// Lines are judged in place in the read buffer: a record is copied once
/// (kernel to buffer), never again into a line buffer.
pub fn replay_stream(
    reader: impl Read,
    pipeline: &mut Pipeline,
    obs: &mut impl Observer,
    name: &str,
) -> Result<u64, ReplayError> {
    replay_chunked(reader, READ_CHUNK, pipeline, obs, name)
}

fn replay_chunked(
    mut reader: impl Read,
    chunk: usize,
    pipeline: &mut Pipeline,
    obs: &mut impl Observer,
    name: &str,
) -> Result<u64, ReplayError> {
    let mut buf = vec![0u8; chunk.max(1)];
    // `buf[start..end]` holds bytes read but not yet judged.
    let (mut start, mut end) = (0usize, 0usize);
    let mut eof = false;
    let mut pos: u64 = 0;
    let mut lines = 0;
    let mut prev_ts: Option<i64> = None;
    // Valid head records that had no `ts`, as (position, bytes).
    let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
    loop {
        let rest = &buf[start..end];
        let line = match memchr::memchr(b'\n', rest) {
            Some(i) => {
                start += i + 1;
                &rest[..i]
            }
            None if eof => {
                if rest.is_empty() {
                    break;
                }
                start = end;
                rest
            }
            None => {
                // Keep the partial line, grow for a line longer than the
                // buffer, and read more.
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
                if end == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
                let n = loop {
                    match reader.read(&mut buf[end..]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(source) => return Err(ReplayError::Read { name: name.to_string(), line: pos + 1, source }),
                    }
                };
                end += n;
                eof = n == 0;
                continue;
            }
        };
        pos += 1;
        let rec = trim_line(line);
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

/// Bytes read at a time (and the initial line-length limit before the
/// buffer grows).
const READ_CHUNK: usize = 1 << 20;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::export::summary::Summary;

    /// Hands out at most `n` bytes per read, to cut lines anywhere.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(out.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn run(text: &[u8], chunk: usize, per_read: usize) -> (u64, crate::export::summary::SummaryReport) {
        let path = std::path::Path::new("accord.toml");
        let catalog = Arc::new(Catalog::parse(path, include_str!("../accord.toml")).unwrap());
        let features = Arc::new(Features::new(catalog));
        let mut summary = Summary::new(features.clone());
        let mut p = Pipeline::new(features, 0);
        let n = replay_chunked(Trickle(text, per_read), chunk, &mut p, &mut summary, "t").unwrap();
        (n, summary.report())
    }

    #[test]
    fn lines_cut_by_reads_or_longer_than_the_buffer_judge_the_same() {
        let mut text = Vec::new();
        let mut rng = 7u64;
        for i in 0..200 {
            for layer in ["frontend", "api", "worker", "analytics"] {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let flow = if rng >> 60 == 0 { "v1" } else { "v2" };
                text.extend_from_slice(
                    format!(
                        r#"{{"request_id":"r{i}","layer":"{layer}","feature":"checkout_v2","flag_state":true,"selected_flow":"{flow}","api_capability":"v2","ts":"2026-11-23T10:00:{:02}.000Z"}}"#,
                        i % 60
                    )
                    .as_bytes(),
                );
                text.extend_from_slice(if i % 3 == 0 { b"\r\n" } else { b"\n" });
            }
            if i % 50 == 0 {
                text.extend_from_slice(b"\n  \nnot json\n");
            }
        }
        text.extend_from_slice(br#"{"request_id":"last","layer":"api","feature":"checkout_v2","flag_state":true,"selected_flow":"new","ts":"2026-11-23T10:00:59.000Z"}"#);
        let reference = run(&text, READ_CHUNK, usize::MAX);
        assert_eq!(reference.0, 200 * 4 + 4 + 1);
        for (chunk, per_read) in [(1, 1), (7, 3), (64, 64), (100, 1000), (4096, 17)] {
            assert_eq!(run(&text, chunk, per_read), reference, "chunk {chunk}, {per_read} bytes per read");
        }
    }
}
