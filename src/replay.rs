//! `accord replay`: judges JSON-lines files with the live semantics. Each
//! file is one stream, or, with `--merge`, all files are one stream merged
//! in event-time order (archives kept per layer or per service). Also the
//! post-incident tool.
//!
//! Event time of a record (see docs/reference.md, "Event time"): its `ts`;
//! a record without one (or whose `ts` is more than `max_clock_skew` ahead
//! of the wall clock when the replay started: an archive's past is never
//! ahead of it) takes the time of the valid record before it in the same
//! file; records at the head of a file take the first valid `ts` that
//! follows (the wall clock if there is none), so judging an archive never
//! depends on when it is judged.

use std::collections::VecDeque;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use crate::decode::InputFormat;
use crate::exit::{ExitAgg, ExitRecorder, ExitReview, RequestTally, ReviewParams};
use crate::features::{FeatureId, Features};
use crate::join::{Observer, Position};
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
    fn open(&self) -> Result<Box<dyn Read>, ReplayError> {
        Ok(match self {
            Source::Stdin => Box::new(std::io::stdin().lock()),
            Source::File(p) => {
                Box::new(std::fs::File::open(p).map_err(|source| ReplayError::Open { name: self.name(), source })?)
            }
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot open {name}: {source}")]
    Open { name: String, source: std::io::Error },
    #[error("cannot read {name} at line {line}: {source}")]
    Read { name: String, line: u64, source: std::io::Error },
    #[error("--merge takes at most {max} files, got {got}")]
    TooManyFiles { max: usize, got: usize },
}

/// How files become streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayOptions {
    /// All files form one stream, merged in event-time order.
    pub merge: bool,
    /// What each line is: an accord record, or (`otlp_json`) one OTLP/JSON
    /// export request as the Collector's file exporter writes it.
    pub format: InputFormat,
}

/// Judges the sources: each as its own stream, or all as one merged stream.
/// Returns the number of non-blank lines read.
pub fn replay(
    sources: &[Source],
    features: &Arc<Features>,
    opts: ReplayOptions,
    obs: &mut impl Observer,
) -> Result<u64, ReplayError> {
    let reference_ms = chrono::Utc::now().timestamp_millis();
    if opts.merge {
        if sources.len() > MAX_MERGED {
            return Err(ReplayError::TooManyFiles { max: MAX_MERGED, got: sources.len() });
        }
        let readers =
            sources.iter().map(|s| Ok(Lines::new(s.open()?, READ_CHUNK, s.name()))).collect::<Result<Vec<_>, _>>()?;
        let mut pipeline = Pipeline::new(features.clone(), 0);
        return replay_merged(readers, opts.format, reference_ms, &mut pipeline, obs);
    }
    let mut total = 0;
    for s in sources {
        let mut pipeline = Pipeline::new(features.clone(), 0);
        let lines = Lines::new(s.open()?, READ_CHUNK, s.name());
        total += replay_lines(lines, opts.format, reference_ms, &mut pipeline, obs)?;
    }
    Ok(total)
}

/// `accord report`: the flag exit review of `feature` over archived
/// records, judged exactly as [`replay`] judges them (the whole archive is
/// the window). The live view's review of the same records is computed by
/// the same code from an aggregate merged from the same evidence.
pub fn exit_review(
    sources: &[Source],
    features: &Arc<Features>,
    feature: FeatureId,
    opts: ReplayOptions,
    params: &ReviewParams,
) -> Result<ExitReview, ReplayError> {
    let mut obs = (ExitRecorder::for_archive(features.clone(), feature), RequestTally::default());
    replay(sources, features, opts, &mut obs)?;
    let agg = obs.0.take().into_iter().find(|(f, _)| *f == feature).map_or_else(ExitAgg::for_archive, |(_, a)| a);
    let spec = features.spec(feature);
    Ok(crate::exit::review(&agg, &obs.1.get(feature), &spec, &features.catalog().layers, params))
}

/// Judges one stream of lines (the wall clock now is the skew reference)
/// and closes every join at its end. Returns the number of non-blank lines.
pub fn replay_stream(
    reader: impl Read,
    pipeline: &mut Pipeline,
    obs: &mut impl Observer,
    name: &str,
) -> Result<u64, ReplayError> {
    replay_stream_as(reader, InputFormat::Accord, pipeline, obs, name)
}

/// [`replay_stream`] for lines of any input format.
pub fn replay_stream_as(
    reader: impl Read,
    format: InputFormat,
    pipeline: &mut Pipeline,
    obs: &mut impl Observer,
    name: &str,
) -> Result<u64, ReplayError> {
    let now = chrono::Utc::now().timestamp_millis();
    replay_lines(Lines::new(reader, READ_CHUNK, name.to_string()), format, now, pipeline, obs)
}

/// Files one merged stream can take: a record's position names its file
/// in one byte.
const MAX_MERGED: usize = u8::MAX as usize + 1;

/// Bytes read at a time (and the initial line-length limit before the
/// buffer grows).
const READ_CHUNK: usize = 1 << 20;

/// The lines of one input, judged in place in the read buffer: a record is
/// copied once (kernel to buffer), never again into a line buffer.
struct Lines<R> {
    reader: R,
    name: String,
    buf: Vec<u8>,
    /// `buf[start..end]` holds bytes read but not yet handed out.
    start: usize,
    end: usize,
    eof: bool,
    /// Line number of the last line handed out (1-based).
    line: u64,
    /// Non-blank lines handed out.
    records: u64,
}

impl<R: Read> Lines<R> {
    fn new(reader: R, chunk: usize, name: String) -> Self {
        Lines { reader, name, buf: vec![0u8; chunk.max(1)], start: 0, end: 0, eof: false, line: 0, records: 0 }
    }

    /// The next non-blank line (without its line ending) and its number.
    fn next_line(&mut self) -> Result<Option<(u64, &[u8])>, ReplayError> {
        loop {
            let rest = &self.buf[self.start..self.end];
            let (from, to) = match memchr::memchr(b'\n', rest) {
                Some(i) => {
                    let from = self.start;
                    self.start += i + 1;
                    (from, from + i)
                }
                None if self.eof => {
                    if rest.is_empty() {
                        return Ok(None);
                    }
                    let from = self.start;
                    self.start = self.end;
                    (from, self.end)
                }
                None => {
                    self.fill()?;
                    continue;
                }
            };
            self.line += 1;
            let to = from + trim_line(&self.buf[from..to]).len();
            if self.buf[from..to].iter().all(|b| b.is_ascii_whitespace()) {
                continue; // blank lines are not records
            }
            self.records += 1;
            return Ok(Some((self.line, &self.buf[from..to])));
        }
    }

    /// Keeps the partial line, grows for a line longer than the buffer,
    /// and reads more.
    fn fill(&mut self) -> Result<(), ReplayError> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(ReplayError::Read { name: self.name.clone(), line: self.line + 1, source }),
            }
        };
        self.end += n;
        self.eof = n == 0;
        Ok(())
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
        end -= 1;
    }
    &line[..end]
}

/// One file as one stream: lines are judged in place.
fn replay_lines<R: Read>(
    mut lines: Lines<R>,
    format: InputFormat,
    reference_ms: i64,
    pipeline: &mut Pipeline,
    obs: &mut impl Observer,
) -> Result<u64, ReplayError> {
    let mut prev_ts: Option<i64> = None;
    // Valid head records that had no `ts`, as (position, accord bytes).
    let mut pending: Vec<(Position, Vec<u8>)> = Vec::new();
    while let Some((line, rec)) = lines.next_line()? {
        pipeline.for_each_record(format, rec, obs, |p, item, v, raw, obs| {
            let at = Position { item, ..Position::new(0, line) };
            match v {
                Err(r) => obs.rejected(r),
                Ok(v) => match (p.event_time(&v, reference_ms, obs), prev_ts) {
                    (Some(ts), _) => {
                        join_pending(p, &mut pending, ts, obs);
                        p.join_record(&v, ts, at, raw, obs);
                        prev_ts = Some(ts);
                    }
                    (None, Some(ts)) => p.join_record(&v, ts, at, raw, obs),
                    (None, None) => pending.push((at, v.accord_bytes(raw))),
                },
            }
        });
    }
    let now = chrono::Utc::now().timestamp_millis();
    join_pending(pipeline, &mut pending, now, obs);
    pipeline.engine_mut().flush(obs);
    Ok(lines.records)
}

/// Joins the head records that waited for the file's first `ts`.
fn join_pending(p: &mut Pipeline, pending: &mut Vec<(Position, Vec<u8>)>, ts: i64, obs: &mut impl Observer) {
    for (at, bytes) in pending.drain(..) {
        // These validated once already (as accord JSON, whatever the input
        // format); validation is deterministic.
        if let Ok(v) = p.validate(&bytes) {
            p.join(&v, ts, at, &bytes, obs);
        }
    }
}

/// A valid record of one file with its event time resolved, as accord
/// JSON bytes.
struct Timed {
    ts: i64,
    at: Position,
    bytes: Vec<u8>,
}

/// One file of a merged stream: hands out its valid records in file order
/// with their event times resolved by the file's own rules. Rejects and
/// skewed clocks are counted as the lines are read.
struct TimedFile<R> {
    lines: Lines<R>,
    source: u8,
    prev_ts: Option<i64>,
    /// Head records without `ts`, waiting for the file's first `ts`.
    pending: Vec<(Position, Vec<u8>)>,
    ready: VecDeque<Timed>,
}

impl<R: Read> TimedFile<R> {
    fn next(
        &mut self,
        format: InputFormat,
        pipeline: &mut Pipeline,
        reference_ms: i64,
        obs: &mut impl Observer,
    ) -> Result<Option<Timed>, ReplayError> {
        while self.ready.is_empty() {
            let Some((line, rec)) = self.lines.next_line()? else {
                let now = chrono::Utc::now().timestamp_millis();
                self.ready.extend(self.pending.drain(..).map(|(at, bytes)| Timed { ts: now, at, bytes }));
                break;
            };
            let (ready, pending, prev_ts) = (&mut self.ready, &mut self.pending, &mut self.prev_ts);
            let source = self.source;
            pipeline.for_each_record(format, rec, obs, |p, item, v, raw, obs| {
                let at = Position { item, ..Position::new(source, line) };
                let v = match v {
                    Err(r) => return obs.rejected(r),
                    Ok(v) => v,
                };
                match (p.event_time(&v, reference_ms, obs), *prev_ts) {
                    (Some(ts), _) => {
                        ready.extend(pending.drain(..).map(|(at, bytes)| Timed { ts, at, bytes }));
                        ready.push_back(Timed { ts, at, bytes: v.accord_bytes(raw) });
                        *prev_ts = Some(ts);
                    }
                    (None, Some(ts)) => ready.push_back(Timed { ts, at, bytes: v.accord_bytes(raw) }),
                    (None, None) => pending.push((at, v.accord_bytes(raw))),
                }
            });
        }
        Ok(self.ready.pop_front())
    }
}

/// Several files as one stream: the next record judged is the one with the
/// smallest event time among the files' next records, ties to the file
/// named first (the rule Kafka topics of one stream are merged by).
fn replay_merged<R: Read>(
    readers: Vec<Lines<R>>,
    format: InputFormat,
    reference_ms: i64,
    pipeline: &mut Pipeline,
    obs: &mut impl Observer,
) -> Result<u64, ReplayError> {
    let mut files: Vec<TimedFile<R>> = readers
        .into_iter()
        .enumerate()
        .map(|(i, lines)| TimedFile {
            lines,
            source: i as u8,
            prev_ts: None,
            pending: Vec::new(),
            ready: VecDeque::new(),
        })
        .collect();
    let mut heads = Vec::with_capacity(files.len());
    for f in &mut files {
        heads.push(f.next(format, pipeline, reference_ms, obs)?);
    }
    loop {
        let next = heads.iter().enumerate().filter_map(|(i, h)| h.as_ref().map(|t| (t.ts, i))).min().map(|(_, i)| i);
        let Some(i) = next else { break };
        let t = heads[i].take().expect("chosen head");
        if let Ok(v) = pipeline.validate(&t.bytes) {
            pipeline.join(&v, t.ts, t.at, &t.bytes, obs);
        }
        heads[i] = files[i].next(format, pipeline, reference_ms, obs)?;
    }
    pipeline.engine_mut().flush(obs);
    Ok(files.iter().map(|f| f.lines.records).sum())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::export::summary::{Summary, SummaryReport};

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

    fn features() -> Arc<Features> {
        let path = std::path::Path::new("accord.toml");
        Arc::new(Features::new(Arc::new(Catalog::parse(path, include_str!("../accord.toml")).unwrap())))
    }

    fn run(text: &[u8], chunk: usize, per_read: usize) -> (u64, SummaryReport) {
        let features = features();
        let mut summary = Summary::new(features.clone());
        let mut p = Pipeline::new(features, 0);
        let lines = Lines::new(Trickle(text, per_read), chunk, "t".into());
        let n = replay_lines(lines, InputFormat::Accord, i64::MAX / 4, &mut p, &mut summary).unwrap();
        (n, summary.report())
    }

    fn merged(files: &[&[u8]]) -> SummaryReport {
        let features = features();
        let mut summary = Summary::new(features.clone());
        let mut p = Pipeline::new(features, 0);
        let readers = files.iter().map(|f| Lines::new(Trickle(f, 7), 16, "m".into())).collect();
        replay_merged(readers, InputFormat::Accord, i64::MAX / 4, &mut p, &mut summary).unwrap();
        summary.report()
    }

    fn stream() -> Vec<u8> {
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
        text
    }

    #[test]
    fn lines_cut_by_reads_or_longer_than_the_buffer_judge_the_same() {
        let mut text = stream();
        text.extend_from_slice(br#"{"request_id":"last","layer":"api","feature":"checkout_v2","flag_state":true,"selected_flow":"new","ts":"2026-11-23T10:00:59.000Z"}"#);
        let reference = run(&text, READ_CHUNK, usize::MAX);
        assert_eq!(reference.0, 200 * 4 + 4 + 1);
        for (chunk, per_read) in [(1, 1), (7, 3), (64, 64), (100, 1000), (4096, 17)] {
            assert_eq!(run(&text, chunk, per_read), reference, "chunk {chunk}, {per_read} bytes per read");
        }
    }

    /// OTLP/JSON lines: evaluations without a time follow the per-file
    /// rule (head ones take the file's first time), several evaluations of
    /// one line are judged in order, and merged files still merge.
    #[test]
    fn opentelemetry_lines_follow_the_event_time_rules() {
        let features = features();
        let line = |ts: Option<&str>, evals: &[(&str, &str)]| {
            let items: Vec<String> = evals
                .iter()
                .map(|(trace, svc)| {
                    let time = ts.map(|t| format!(r#","timeUnixNano":"{t}000000""#)).unwrap_or_default();
                    format!(
                        r#"{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{svc}"}}}}]}},"scopeLogs":[{{"logRecords":[{{"traceId":"{trace}","eventName":"feature_flag.evaluation"{time},"attributes":[{{"key":"feature_flag.key","value":{{"stringValue":"checkout_v2"}}}},{{"key":"accord.selected_flow","value":{{"stringValue":"v2"}}}}]}}]}}]}}"#
                    )
                })
                .collect();
            format!(r#"{{"resourceLogs":[{}]}}"#, items.join(","))
        };
        let t = |i: u8| format!("{i:032x}");
        // Request 1: two layers on a head line without time, two with it.
        let text = [
            line(None, &[(&t(1), "frontend"), (&t(1), "api")]),
            line(Some("1795168800000"), &[(&t(1), "worker"), (&t(1), "analytics"), (&t(2), "frontend")]),
            "not json".to_string(),
            line(None, &[(&t(2), "api")]),
            line(Some("1795168801000"), &[(&t(2), "worker")]),
        ]
        .join("\n");
        let run = |merge: bool| {
            let mut summary = Summary::new(features.clone());
            let mut p = Pipeline::new(features.clone(), 0);
            if merge {
                let (a, b) = text.split_at(text.find("not json").unwrap());
                let readers = [a.as_bytes(), b.as_bytes()].map(|f| Lines::new(Trickle(f, 5), 16, "m".into()));
                replay_merged(readers.into(), InputFormat::OtlpJson, i64::MAX / 4, &mut p, &mut summary).unwrap();
            } else {
                let lines = Lines::new(Trickle(text.as_bytes(), 9), 16, "t".into());
                replay_lines(lines, InputFormat::OtlpJson, i64::MAX / 4, &mut p, &mut summary).unwrap();
            }
            summary.report()
        };
        for merge in [false, true] {
            let s = run(merge);
            let f = &s.features["checkout_v2"];
            assert_eq!(s.records, 7, "merge {merge}");
            assert_eq!(s.late, 0, "merge {merge}");
            assert_eq!(f.requests, 2, "merge {merge}");
            assert_eq!(s.rejected.values().sum::<u64>(), 1, "merge {merge}: {:?}", s.rejected);
        }
    }

    #[test]
    fn one_file_merged_is_the_file() {
        let text = stream();
        assert_eq!(merged(&[&text]), run(&text, READ_CHUNK, usize::MAX).1);
    }

    #[test]
    fn merge_orders_by_event_time_then_file_and_keeps_head_rules_per_file() {
        let rec = |id: &str, layer: &str, ts: &str| {
            let ts = if ts.is_empty() { String::new() } else { format!(r#","ts":"2026-11-23T10:00:{ts}.000Z""#) };
            format!(r#"{{"request_id":"{id}","layer":"{layer}","feature":"checkout_v2","selected_flow":"v2"{ts}}}"#)
        };
        // The api file's head record has no ts: it takes 10:00:40 (its own
        // file's first ts), not the frontend file's 10:00:00.
        let a = [rec("x", "frontend", "00"), rec("y", "frontend", "50")].join("\n");
        let b = [rec("y", "api", ""), rec("z", "api", "40")].join("\n");
        let s = merged(&[a.as_bytes(), b.as_bytes()]);
        let f = &s.features["checkout_v2"];
        // Joined in order x(0) y-api(40) z(40) y-frontend(50): every record
        // within the window, none late.
        assert_eq!(s.records, 4);
        assert_eq!(s.late, 0);
        assert_eq!(f.requests, 3);
    }
}
