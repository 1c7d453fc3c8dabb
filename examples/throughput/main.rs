//! Throughput and memory of accord, measured in one run on one generated
//! stream. Every figure is printed next to a baseline measured in the same
//! process, so ratios stay meaningful on a busy machine.
//! docs/performance.md explains the figures.
//!
//! ```text
//! cargo run --release --example throughput -- [--records 1000000] [--partitions 4]
//!     [--open-joins 1000000] [--repeat 4] [--only abcdstilm] [--kafka-property K=V]...
//!     [--judge-threads 1,2] [--kafka-repeat 1] [--instance-partitions 4,200]
//!     [--latency-secs 20] [--latency-load 0.5] [--max-rate R] [--scrape-ms 10] [--latency-bare]
//! ```
//!
//! (a) parse-only: typed borrowed serde decode of every record, nothing else;
//! (b) replay: `accord replay --format prometheus` on the in-memory lines
//!     (Pipeline + MetricsObserver + final render);
//! (c) bare consume: an rdkafka `StreamConsumer` recv loop on librdkafka's
//!     mock cluster, touching each payload;
//! (d) run: `accord run`'s service (`Service::run`) on the same records,
//!     until `SourceStatus.records` counts every one, once per
//!     `--judge-threads`, with each thread's CPU per record;
//! (s) the statistics topic `<group>.accord-stats` after each (d): records
//!     and bytes per second of one instance, projected to 1 M records/s;
//! (t) the same records split by layer into two co-partitioned topics,
//!     judged as one set of streams, against the one topic: the merge's cost;
//! (i) an instance's RSS at each `--instance-partitions` (child processes
//!     fed the same records): one sample budget per instance;
//! (l) verdict latency: `Service::run` under a paced live load of
//!     `--latency-load` × (d)'s records/s; from the moment a probe's last
//!     record is acknowledged by the broker to the first scrape of
//!     `/metrics` (over HTTP) that counts its verdict. With
//!     `--latency-bare`, the bare loop of (c) first gets the same load;
//! (m) memory: a child process feeds never-completing requests and
//!     reports RSS growth per open join.
//!
//! Modules: `args` (the command line), `replay` (a, b), `backlog` (what
//! c, d, t and i consume), `kafka` (c, d, t), `stats` (s), `memory` (m, i),
//! `load` and `scrape` (l's load and its `/metrics` client), `latency` (l),
//! `os` (thread CPU, RSS, the machine), `output` (how figures print);
//! `support` is shared with the criterion benches.

#[path = "../../benches/support/mod.rs"]
mod support;

mod args;
mod backlog;
mod kafka;
mod latency;
mod load;
mod memory;
mod os;
mod output;
mod replay;
mod scrape;
mod stats;

use std::time::Instant;

use clap::Parser;

use crate::args::Args;
use crate::os::{build_kind, cores, cpu_model, load_average, peak_rss_kib};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.verbose || std::env::var_os("RUST_LOG").is_some() {
        // accord's own log lines (warnings of the source, rebalances) on
        // stderr, as `accord run` prints them.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    if args.memory_child {
        return memory::memory_child(args.open_joins);
    }
    if let Some(brokers) = &args.instance_child {
        return memory::instance_child(&args, brokers);
    }
    println!("accord throughput ({} build)", build_kind());
    println!("machine: {} cores, {}", cores(), cpu_model());
    if let Some(l) = load_average() {
        // Figures are only worth keeping from a quiet machine.
        println!("load average at the start: {l:.2}{}", if l > 1.5 { " (busy: figures are noise)" } else { "" });
    }
    let t = Instant::now();
    let records = support::generate(args.records, args.seed);
    let buf = support::lines(&records);
    // Every measurement reads the same contiguous lines (as replay does).
    let slices: Vec<&[u8]> = buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    println!(
        "stream: {} records of scenario mixed, {:.0} bytes average, generated in {:.1?}",
        records.len(),
        buf.len() as f64 / records.len().max(1) as f64 - 1.0,
        t.elapsed()
    );
    let catalog = support::catalog(1_000_000);
    let n = records.len() as f64;

    if args.replay_only {
        replay::replay_only(&args, &catalog, &buf, n);
        return Ok(());
    }
    if args.phase('a') || args.phase('b') {
        replay::replay_phases(&args, &catalog, &buf, &slices);
    }
    // Only the Kafka phases need the stream from here on, as records.
    drop(slices);
    drop(buf);
    if args.kafka() {
        kafka::kafka(&args, records)?;
    }
    if !args.skip_memory && args.phase('m') {
        memory::memory_phase(&args)?;
    }
    println!("peak RSS of this process: {} MiB", peak_rss_kib() / 1024);
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The catalog shared with the criterion benches (`benches/support`),
    //! tested here where a test harness runs.

    use crate::support::{catalog, catalog_text, with_max_open_joins};

    #[test]
    fn the_example_catalog_with_another_cap() {
        let c = catalog(1_234);
        assert_eq!(c.max_open_joins, 1_234);
        assert_eq!(c.features.len(), 2, "accord.toml's features");
        let text = catalog_text(7);
        assert_eq!(text.matches("max_open_joins").count(), 1, "{text}");
    }

    #[test]
    fn the_cap_is_added_where_missing() {
        let t = with_max_open_joins("[monitor]\nwindow = \"30s\"\n", 5);
        assert_eq!(t, "[monitor]\nwindow = \"30s\"\nmax_open_joins = 5\n");
        let t = with_max_open_joins("[monitor]\nwindow = \"30s\"\n\n[[feature]]\nkey = \"a\"\n", 5);
        assert!(t.contains("window = \"30s\"\n\nmax_open_joins = 5\n[[feature]]"), "{t}");
        let t = with_max_open_joins("[[feature]]\nkey = \"a\"\n", 5);
        assert!(t.ends_with("\n[monitor]\nmax_open_joins = 5\n"), "{t}");
        let t = with_max_open_joins("[monitor]\nmax_open_joins_x = 1\nmax_open_joins = 9 # cap\n", 5);
        assert_eq!(t, "[monitor]\nmax_open_joins_x = 1\nmax_open_joins = 5\n");
    }
}
