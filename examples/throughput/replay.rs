//! (a) the parse-only baseline and (b) the replay pipeline, on the same
//! contiguous lines, with the split of (b) by stage.

use std::sync::Arc;

use accord::catalog::Catalog;
use accord::export::Metrics;
use accord::pipeline::Pipeline;
use accord::replay::replay_stream;
use accord::service::NoObserver;
use accord::Features;

use crate::args::Args;
use crate::os::{peak_rss_kib, reset_peak_rss, timed, Best};
use crate::support;

/// `--replay-only`: (b) alone, `repeat` times (for profilers).
pub fn replay_only(args: &Args, catalog: &Arc<Catalog>, buf: &[u8], n: f64) {
    for _ in 0..args.repeat {
        let (t, _) = timed(|| replay(catalog, buf, true));
        println!("(b) replay: {:>12.0} records/s on-CPU, {:>12.0} wall", n / t.cpu, n / t.wall);
    }
}

/// (a) and (b), with the split of (b) by stage.
pub fn replay_phases(args: &Args, catalog: &Arc<Catalog>, buf: &[u8], slices: &[&[u8]]) {
    let n = slices.len() as f64;
    // (a) and (b), interleaved so drift on a shared machine hits both.
    // Each is timed on the wall clock and on this thread's CPU time (from
    // /proc/thread-self/schedstat): on a busy machine the CPU time is what
    // one core does, the wall time also counts waiting for a core.
    reset_peak_rss();
    let [mut a, mut b, mut v, mut j, mut l, mut r] = std::array::from_fn(|_| Best::default());
    let mut check = 0usize;
    let validator = Pipeline::new(Arc::new(Features::new(catalog.clone())), 0);
    for i in 0..args.repeat.max(1) {
        let (ta, x) = timed(|| slices.iter().fold(0usize, |acc, s| acc.wrapping_add(support::parse_only(s))));
        let (tb, rendered) = timed(|| replay(catalog, buf, true));
        // Stage split, for where the time goes: validation alone, and the
        // pipeline without an exporter.
        let (tv, y) = timed(|| {
            slices.iter().fold(0usize, |acc, s| acc.wrapping_add(validator.validate(s).map_or(0, |v| v.layer.index())))
        });
        let (tj, _) = timed(|| replay(catalog, buf, false));
        let (tl, _) = timed(|| replay_live(catalog, buf, 0));
        let (tr, _) = timed(|| replay_live(catalog, buf, 8 << 20));
        println!(
            "  run {}: (a) {:>9.0} records/s   (b) {:>9.0} records/s   on-CPU; wall {:.0} / {:.0}",
            i + 1,
            n / ta.cpu,
            n / tb.cpu,
            n / ta.wall,
            n / tb.wall
        );
        a.add(ta);
        b.add(tb);
        v.add(tv);
        j.add(tj);
        l.add(tl);
        r.add(tr);
        check = check.wrapping_add(x).wrapping_add(y).wrapping_add(rendered);
    }
    std::hint::black_box(check);
    let replay_peak = peak_rss_kib();
    let ns = |secs: f64| secs * 1e9 / n;
    println!("(a) parse-only baseline   {:>10.0} records/s on-CPU   ({:.0} wall)", n / a.cpu, n / a.wall);
    println!("(b) replay pipeline       {:>10.0} records/s on-CPU   ({:.0} wall)", n / b.cpu, n / b.wall);
    println!(
        "    b/a = {:.2} on-CPU   ({:.2} wall)   {:.0} ns/record vs {:.0} ns/record",
        a.cpu / b.cpu,
        a.wall / b.wall,
        ns(b.cpu),
        ns(a.cpu)
    );
    println!(
        "    split (on-CPU, best runs): decode+validate {:.0} ns, line split+join+judge {:.0} ns, metrics exporter {:.0} ns",
        ns(v.cpu),
        ns(j.cpu - v.cpu),
        ns(b.cpu - j.cpu)
    );
    println!(
        "    accord run's pipeline also feeds the live statistics (+{:.0} ns) and the 8 MiB sample ring (+{:.0} ns): {:.0} ns/record",
        ns(l.cpu - b.cpu),
        ns(r.cpu - l.cpu),
        ns(r.cpu)
    );
    println!("    peak RSS (a+b, stream held in memory): {} MiB", replay_peak / 1024);
}

/// (b): what `accord replay --format prometheus` does, on in-memory lines
/// (without `export`: the same pipeline with no observer, for the split).
/// Returns the rendered length.
fn replay(catalog: &Arc<Catalog>, buf: &[u8], export: bool) -> usize {
    let features = Arc::new(Features::new(catalog.clone()));
    // `replay_stream` reads in 1 MiB chunks and judges lines in place, as
    // `accord replay` does on a file: one copy per byte, like read(2).
    let reader = std::io::Cursor::new(buf);
    let mut pipeline = Pipeline::new(features.clone(), 0);
    if !export {
        replay_stream(reader, &mut pipeline, &mut NoObserver, "bench").expect("in-memory replay");
        return 0;
    }
    let metrics = Metrics::new(features).expect("metrics");
    let mut obs = metrics.observer();
    replay_stream(reader, &mut pipeline, &mut obs, "bench").expect("in-memory replay");
    metrics.render().len()
}

/// (b) plus what `accord run`'s pipeline adds per record: the live
/// statistics observer and (with `sample_bytes`) the divergence sample ring.
fn replay_live(catalog: &Arc<Catalog>, buf: &[u8], sample_bytes: usize) -> usize {
    let features = Arc::new(Features::new(catalog.clone()));
    let reader = std::io::Cursor::new(buf);
    let mut pipeline = Pipeline::new(features.clone(), sample_bytes);
    let metrics = Metrics::new(features.clone()).expect("metrics");
    let live = accord::live::LiveView::new(features);
    let mut obs = (metrics.observer(), live.recorder());
    replay_stream(reader, &mut pipeline, &mut obs, "bench").expect("in-memory replay");
    live.apply(obs.1.take());
    metrics.render().len()
}
