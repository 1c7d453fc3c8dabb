//! The global live view's costs, measured: the stats topic's bytes per
//! second per instance (shares as accord publishes them), and the memory of
//! a view holding every instance's shares for an hour.
//!
//! ```text
//! cargo run --release --example view_memory -- [--instances 3] [--seconds 3600] [--rate 1000]
//! ```
//!
//! Each simulated instance judges the simulator's `mixed` scenario through
//! a real pipeline into a real live recorder; once per simulated second
//! (the default commit interval) its delta is taken, encoded as a share
//! would be, and applied to one view (as every instance's reader does).
//! The figures: encoded bytes per share (mean, max), bytes per second per
//! instance, and the view's memory after the hour: the heap bytes it
//! holds (a counting allocator: what decoding and applying the shares
//! allocated and did not free), and the whole process's RSS growth, which
//! also counts the simulated instances' pipelines. A share's size grows with features,
//! layers, divergence pairs and the seconds it covers, not with the
//! records behind it: run it at two rates to see how little the rate moves
//! it (distinct pairs, causes and the capped samples saturate quickly).

use std::sync::Arc;

use accord::catalog::Catalog;
use accord::join::Position;
use accord::live::{LiveView, Recorder};
use accord::pipeline::Pipeline;
use accord::simulate::{Generator, Scenario, Timing};
use accord::Features;

/// Counts the bytes the process holds on the heap, so the view's own
/// memory can be told from the simulated pipelines'.
struct Counting;

static HELD: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is only arithmetic on the sizes it was given.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        HELD.fetch_add(l.size() as i64, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        HELD.fetch_sub(l.size() as i64, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        HELD.fetch_add(new as i64 - l.size() as i64, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn held() -> i64 {
    HELD.load(std::sync::atomic::Ordering::Relaxed)
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let instances = arg("--instances", 3) as usize;
    let seconds = arg("--seconds", 3600) as i64;
    let rate = arg("--rate", 1000) as f64;
    let text = include_str!("../accord.toml");
    let catalog = Arc::new(Catalog::parse(std::path::Path::new("accord.toml"), text).expect("example catalog"));
    let features = Arc::new(Features::new(catalog.clone()));
    let t0 = 1_795_168_800_000i64;
    // The view's clock follows the simulation.
    let now = Arc::new(std::sync::atomic::AtomicI64::new(t0));
    let n = now.clone();
    let view = LiveView::with_clock(features.clone(), Arc::new(move || n.load(std::sync::atomic::Ordering::Relaxed)));
    let timing = Timing {
        window_ms: catalog.feature("checkout_v2").map_or(catalog.window_ms, |f| f.window_ms),
        allowed_lateness_ms: catalog.allowed_lateness_ms,
    };
    let mut gens: Vec<_> = (0..instances)
        .map(|i| Generator::new(Scenario::Mixed, timing, rate, seconds * 1000, t0, 11 + i as u64).peekable())
        .collect();
    let mut pipes: Vec<Pipeline> = (0..instances).map(|_| Pipeline::new(features.clone(), 8 << 20)).collect();
    let mut recs: Vec<Recorder> = (0..instances).map(|_| Recorder::new(features.clone(), t0)).collect();
    let rss0 = rss_kib();
    let (mut shares, mut bytes, mut max_share, mut records) = (0u64, 0u64, 0usize, 0u64);
    // Heap bytes the view holds: what decoding and applying each share
    // allocated and did not give back (the share itself is freed inside).
    let mut view_heap = 0i64;
    let mut offsets = vec![0u64; instances];
    for sec in 0..seconds {
        let end = t0 + (sec + 1) * 1000;
        now.store(end, std::sync::atomic::Ordering::Relaxed);
        for i in 0..instances {
            recs[i].set_now_ms(end - 1);
            while let Some(r) = gens[i].next_if(|r| r.emit_ms < (sec + 1) * 1000) {
                offsets[i] += 1;
                records += 1;
                let _ = pipes[i].ingest(r.json.as_bytes(), Position::new(0, offsets[i]), end, &mut recs[i]);
            }
            let mut delta = recs[i].take();
            delta.limit_samples(accord::source::kafka::SHARE_SAMPLES);
            let encoded = delta.encode();
            bytes += encoded.len() as u64;
            max_share = max_share.max(encoded.len());
            shares += 1;
            let before = held();
            view.apply(accord::live::Delta::decode(&encoded).expect("a share decodes"));
            view_heap += held() - before;
        }
    }
    let rss1 = rss_kib();
    let per_instance_per_sec = bytes as f64 / seconds as f64 / instances as f64;
    let rec_rate = records as f64 / seconds as f64 / instances as f64;
    println!(
        "view_memory: {instances} instances × {seconds} s, {records} records ({rec_rate:.0} records/s per instance)"
    );
    println!(
        "  shares: {shares}, mean {:.0} B, max {max_share} B (JSON before the producer's zstd)",
        bytes as f64 / shares as f64
    );
    println!("  stats topic: {per_instance_per_sec:.0} B/s per instance (uncompressed), one share per commit interval");
    println!("  view memory after {seconds} s: {} KiB on the heap", view_heap / 1024);
    println!(
        "  process RSS growth (the view and {instances} simulated pipelines with their sample rings): {} KiB ({} KiB → {} KiB)",
        rss1.saturating_sub(rss0),
        rss0,
        rss1
    );
}
