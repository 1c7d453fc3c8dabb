//! The command line. Phases are letters of `--only`; everything else has a
//! default that gives the figures of docs/performance.md.

use clap::Parser;

#[derive(Parser, Clone)]
#[command(about = "accord throughput and memory, against baselines measured in the same run")]
pub struct Args {
    /// Records in the generated stream (scenario `mixed`).
    #[arg(long, default_value_t = 1_000_000)]
    pub records: usize,
    /// Partitions of the mock cluster's topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Open joins for the memory measurement (also reported at 200,000).
    #[arg(long, default_value_t = 1_000_000)]
    pub open_joins: usize,
    /// Runs of (a) and (b), interleaved; the best of each is reported.
    #[arg(long, default_value_t = 4)]
    pub repeat: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Skip every phase on the mock cluster (c, d, s, t, i, l).
    #[arg(long)]
    pub skip_kafka: bool,
    /// Skip (m) and (i).
    #[arg(long)]
    pub skip_memory: bool,
    /// Phases to run, e.g. `ab` or `d` (for profilers): a and b (replay),
    /// o (OpenTelemetry input against native input), c (bare consume), d (accord run, at each `--judge-threads`),
    /// s (the statistics topic after each (d)), t (two topics against
    /// one), i (memory per instance against partitions), l (verdict
    /// latency), m (memory per open join). `l` without `d` runs (d) first
    /// for the maximum load, unless `--max-rate` gives it.
    #[arg(long, default_value = "abocdstilm")]
    pub only: String,
    /// (o): evaluations judged per format (the same decisions as accord
    /// records, OTLP protobuf logs and traces, OTLP/JSON).
    #[arg(long, default_value_t = 200_000)]
    pub otlp_evaluations: usize,
    /// (d): judging threads of `accord run`, one run each, e.g. `1,2`.
    #[arg(long, value_delimiter = ',', default_value = "1,2", value_parser = clap::value_parser!(u16).range(1..))]
    pub judge_threads: Vec<u16>,
    /// (t): runs of the one-topic and the two-topic service, interleaved;
    /// the best of each is reported.
    #[arg(long, default_value_t = 1)]
    pub kafka_repeat: usize,
    /// (t): partitions of each of the two topics (default: as many as the
    /// one topic has). Half of them keeps the number of partition logs the
    /// broker and librdkafka serve the same as for the one topic.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub topic_partitions: Option<i32>,
    /// (i): partition counts at which an instance's memory is measured.
    #[arg(long, value_delimiter = ',', default_value = "4,200", value_parser = clap::value_parser!(i32).range(1..))]
    pub instance_partitions: Vec<i32>,
    /// (l): seconds of paced load (every probe request of that time is
    /// measured).
    #[arg(long, default_value_t = 20.0)]
    pub latency_secs: f64,
    /// (l): seconds of load before the measurement, so that the requests in
    /// flight (each spreads its layers over up to 10 s) reach their steady
    /// number; the load ramps up meanwhile.
    #[arg(long, default_value_t = 10.0)]
    pub latency_warmup: f64,
    /// (l): the load, as a fraction of the maximum.
    #[arg(long, default_value_t = 0.5)]
    pub latency_load: f64,
    /// (l): the maximum load in records/s, instead of measuring it with (d).
    #[arg(long)]
    pub max_rate: Option<f64>,
    /// (l): measured requests (4 records each, every layer reporting) per
    /// second, part of the load; the rest is the `mixed` scenario.
    #[arg(long, default_value_t = 1000.0)]
    pub probes_per_sec: f64,
    /// (l): interval between two scrapes of `/metrics`, in milliseconds:
    /// the resolution of the measurement, but each scrape renders ~84 KiB
    /// on accord's runtime (~0.5-2 ms), so at 5 ms scraping takes ~0.2
    /// core from accord.
    #[arg(long, default_value_t = 10.0)]
    pub scrape_ms: f64,
    /// (l): `fetch.wait.max.ms` of accord's consumer, unless
    /// `--kafka-property` sets it. The mock broker answers an empty fetch
    /// only after this wait even when records arrive meanwhile (a real
    /// broker answers as soon as `fetch.min.bytes` is there), so its
    /// librdkafka default of 500 ms measures the mock. 0: leave the default.
    #[arg(long, default_value_t = 1)]
    pub latency_fetch_wait_ms: u64,
    /// (l): first run the same load against the bare consume loop of (c)
    /// (same fetch settings), timing when each probe's last record is
    /// consumed: the floor set by librdkafka, the mock broker and the
    /// machine, without accord.
    #[arg(long)]
    pub latency_bare: bool,
    /// (l): `linger.ms` of the load's producer.
    #[arg(long, default_value_t = 5)]
    pub latency_linger_ms: u64,
    /// Only run (b) `repeat` times (for profilers).
    #[arg(long)]
    pub replay_only: bool,
    /// Extra librdkafka consumer property for (c), (d), (t), (i) and (l),
    /// KEY=VALUE (repeatable), e.g. `fetch.queue.backoff.ms=10`.
    #[arg(long = "kafka-property", value_parser = parse_kv)]
    pub kafka_properties: Vec<(String, String)>,
    /// Busy work per record in the bare loop (c), in nanoseconds: shows
    /// how a consumer slower than the fetcher is paced by librdkafka.
    #[arg(long, default_value_t = 0)]
    pub bare_work_ns: u64,
    /// Print the service's Kafka counters after (d).
    #[arg(long)]
    pub verbose: bool,
    /// Internal: the memory measurement, run in a fresh child process.
    #[arg(long, hide = true)]
    pub memory_child: bool,
    /// Internal: (i)'s instance, run in a fresh child process against the
    /// parent's mock cluster at these brokers.
    #[arg(long, hide = true)]
    pub instance_child: Option<String>,
    /// Internal: (i)'s topic.
    #[arg(long, hide = true, default_value = "instance")]
    pub instance_topic: String,
}

impl Args {
    /// Whether phase `p` (a letter of `--only`) runs.
    pub fn phase(&self, p: char) -> bool {
        self.only.contains(p)
    }

    /// Whether any phase on the mock cluster runs.
    pub fn kafka(&self) -> bool {
        !self.skip_kafka && "cdstil".chars().any(|p| self.phase(p))
    }
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_pairs() {
        let a = Args::try_parse_from(["t", "--judge-threads", "2", "--kafka-property", "a=b=c"]).unwrap();
        assert_eq!(a.judge_threads, [2]);
        assert_eq!(a.kafka_properties, [("a".to_string(), "b=c".to_string())]);
        assert_eq!(Args::try_parse_from(["t"]).unwrap().instance_partitions, [4, 200]);
        assert!(Args::try_parse_from(["t", "--judge-threads", "0"]).is_err());
        assert!(Args::try_parse_from(["t", "--kafka-property", "x"]).is_err());
    }
}
