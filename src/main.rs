//! The `accord` command line (SPEC §7).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use accord::decode::InputFormat;
use accord::export::summary::Summary;
use accord::export::verdicts::VerdictWriter;
use accord::export::Metrics;
use accord::replay::{replay, ReplayOptions, Source};
use accord::service::{cancel_on_signals, Service, ServiceError};
use accord::simulate::{Generator, Messages, Scenario, Timing};
use accord::source::kafka::KafkaConfig;
use accord::{Catalog, Features};
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "accord",
    version,
    about = "Rollout agreement monitor: did every layer act on the same release state?"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Judge JSON-lines files of decision records (`-` for stdin), each file one stream.
    Replay {
        /// Files to judge; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<String>,
        #[arg(long, env = "ACCORD_CONFIG", default_value = "accord.toml")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Summary)]
        format: Format,
        /// All files form one stream, merged in event-time order (archives
        /// kept per layer or per service); without it each file is a stream.
        #[arg(long)]
        merge: bool,
        /// What each line is: an accord decision record, or one OTLP/JSON
        /// export request (logs or traces) as the Collector's file exporter writes it.
        #[arg(long, default_value = "accord", value_parser = parse_line_format)]
        input_format: InputFormat,
    },
    /// Validate a catalog file; prints one line per problem.
    CheckConfig { file: PathBuf },
    /// The service: consume decision records from Kafka, judge, serve metrics and the API.
    Run(RunArgs),
    /// Everything in one process, no set-up: in-process Kafka, a simulated rollout, the service.
    Demo {
        #[arg(long, env = "ACCORD_LISTEN", default_value = "127.0.0.1:9898")]
        listen: SocketAddr,
        /// Simulated records per second.
        #[arg(long, default_value_t = 400.0)]
        rate: f64,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
    /// Produce realistic decision records with known disagreements (to Kafka, or to a file).
    Simulate(SimulateArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, env = "ACCORD_CONFIG", default_value = "accord.toml")]
    config: PathBuf,
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "ACCORD_BROKERS")]
    brokers: String,
    /// Topic(s) to consume; repeat the flag or separate with commas.
    #[arg(long = "topic", env = "ACCORD_TOPIC", value_delimiter = ',', required = true)]
    topics: Vec<String>,
    #[arg(long, env = "ACCORD_GROUP", default_value = "accord")]
    group: String,
    #[arg(long, env = "ACCORD_LISTEN", default_value = "127.0.0.1:9898")]
    listen: SocketAddr,
    /// Also produce every closed join to this topic (one JSON record keyed by request_id).
    #[arg(long, env = "ACCORD_VERDICTS_TOPIC")]
    verdicts_topic: Option<String>,
    /// Also keep each partition's handover state in this topic (for brokers
    /// that drop offset-commit metadata; Apache Kafka keeps it).
    #[arg(long, env = "ACCORD_HANDOVER_TOPIC")]
    handover_topic: Option<String>,
    /// Extra librdkafka property, KEY=VALUE (repeatable), e.g. security.protocol=SASL_SSL.
    #[arg(long = "kafka", env = "ACCORD_KAFKA", value_delimiter = ';', value_parser = parse_kv)]
    kafka: Vec<(String, String)>,
    /// How often judged offsets are committed.
    #[arg(long, env = "ACCORD_COMMIT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    commit_interval: std::time::Duration,
    /// Bytes of recent raw records kept per partition for divergence samples
    /// (at most 1 GiB; 0 keeps none).
    #[arg(long, env = "ACCORD_SAMPLE_BUFFER_BYTES", default_value_t = 8 << 20, value_parser = parse_sample_bytes)]
    sample_buffer_bytes: usize,
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// Kafka bootstrap servers (omit with --output).
    #[arg(long, env = "ACCORD_BROKERS", required_unless_present = "output")]
    brokers: Option<String>,
    #[arg(long, env = "ACCORD_TOPIC", default_value = "decisions")]
    topic: String,
    /// Records per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
    #[arg(long, value_enum, default_value_t = Scenario::Mixed)]
    scenario: Scenario,
    /// Write the messages here (`-` for stdout) instead of producing to Kafka, as fast as
    /// possible: one per line for the JSON formats; for the protobuf formats each
    /// message preceded by its length as a protobuf varint (length-delimited).
    #[arg(long, conflicts_with = "brokers")]
    output: Option<String>,
    /// What to send: accord records, or the same decisions as OpenFeature
    /// flag-evaluation events in OTLP export requests (several per message,
    /// one message per trace id, keyed by trace id).
    #[arg(long, env = "ACCORD_OUTPUT_FORMAT", default_value = "accord")]
    output_format: InputFormat,
    /// Catalog whose windows the late stories respect.
    #[arg(long, env = "ACCORD_CONFIG", default_value = "accord.toml")]
    config: PathBuf,
    /// Event time of the first record (RFC 3339); default now.
    #[arg(long)]
    start: Option<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write the report of what was sent (JSON) to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Extra librdkafka property, KEY=VALUE (repeatable).
    #[arg(long = "kafka", value_parser = parse_kv)]
    kafka: Vec<(String, String)>,
}

/// Replay reads lines, so only the JSON formats.
fn parse_line_format(s: &str) -> Result<InputFormat, String> {
    match s.parse::<InputFormat>()? {
        f @ (InputFormat::Accord | InputFormat::OtlpJson) => Ok(f),
        f => Err(format!("{f} is binary; replay reads JSON lines (accord | otlp_json)")),
    }
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Each partition's sample buffer is allocated at this size on its first
/// record (pages are taken as written), so the bound is checked up front.
fn parse_sample_bytes(s: &str) -> Result<usize, String> {
    const MAX: usize = 1 << 30;
    match s.trim().parse::<usize>() {
        Ok(n) if n <= MAX => Ok(n),
        Ok(_) => Err(format!("at most {MAX} bytes per partition, got {s}")),
        Err(e) => Err(format!("expected a number of bytes, got {s:?}: {e}")),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Summary,
    Prometheus,
    Verdicts,
}

/// Exit code for bad usage or a bad catalog (SPEC §7).
const EXIT_CONFIG: u8 = 2;

fn load_catalog(path: &std::path::Path) -> Result<Arc<Catalog>, ExitCode> {
    Catalog::load(path).map(Arc::new).map_err(|e| {
        eprintln!("accord: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ACCORD_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig { file } => match Catalog::load(&file) {
            Ok(c) => {
                println!("{}: ok ({} layers, {} features)", file.display(), c.layers.len(), c.features.len());
                ExitCode::SUCCESS
            }
            Err(errs) => {
                for e in &errs.0 {
                    eprintln!("{e}");
                }
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Cmd::Run(args) => {
            let catalog = match load_catalog(&args.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            block_on(async move {
                let service = Service::new(catalog)?;
                let listener = Service::bind(args.listen).await?;
                let cancel = CancellationToken::new();
                cancel_on_signals(cancel.clone());
                let kafka = KafkaConfig {
                    brokers: args.brokers,
                    topics: args.topics,
                    group: args.group,
                    properties: args.kafka,
                    verdicts_topic: args.verdicts_topic,
                    handover_topic: args.handover_topic,
                    commit_interval: args.commit_interval,
                    sample_bytes: args.sample_buffer_bytes,
                };
                service.run(kafka, listener, cancel).await
            })
        }
        Cmd::Demo { listen, rate, partitions } => block_on(async move {
            let cancel = CancellationToken::new();
            cancel_on_signals(cancel.clone());
            accord::demo::demo(accord::demo::DemoOptions { listen, rate, partitions }, cancel).await
        }),
        Cmd::Simulate(args) => simulate(args),
        Cmd::Replay { files, config, format, merge, input_format } => {
            let catalog = match load_catalog(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let sources: Vec<Source> = files.iter().map(|f| Source::parse(f)).collect();
            for s in &sources {
                if let Source::File(p) = s {
                    if !p.is_file() {
                        eprintln!("accord: {}: no such file", p.display());
                        return ExitCode::from(EXIT_CONFIG);
                    }
                }
            }
            match run_replay(&sources, catalog, format, ReplayOptions { merge, format: input_format }) {
                Ok(()) => ExitCode::SUCCESS,
                // `accord replay ... | head` is not an error.
                Err(e)
                    if e.chain().any(|c| {
                        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                    }) =>
                {
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("accord: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs an async command; configuration errors exit 2, others 1.
fn block_on(fut: impl std::future::Future<Output = Result<(), ServiceError>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("accord: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ServiceError::Config(m)) => {
            eprintln!("accord: {m}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("accord: {e}");
            ExitCode::FAILURE
        }
    }
}

fn simulate(args: SimulateArgs) -> ExitCode {
    // The catalog only tells the windows and how OpenTelemetry events map
    // (its [otel] section); without one, use the defaults.
    let (timing, otel) = match Catalog::load(&args.config) {
        Ok(c) => (
            Timing {
                window_ms: c.feature("checkout_v2").map_or(c.window_ms, |f| f.window_ms),
                allowed_lateness_ms: c.allowed_lateness_ms,
            },
            c.otel,
        ),
        Err(e) if args.config.exists() => {
            eprintln!("accord: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(_) => (Timing { window_ms: 30_000, allowed_lateness_ms: 5_000 }, Default::default()),
    };
    let base = match &args.start {
        None => chrono::Utc::now().timestamp_millis(),
        Some(s) => match accord::decode::parse_rfc3339_ms(s) {
            Some(t) => t,
            None => {
                eprintln!("accord: --start: not an RFC 3339 time: {s:?}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let gen = Generator::new(args.scenario, timing, args.rate, args.duration.as_millis() as i64, base, args.seed);
    let gen = Messages::new(gen, args.output_format, &otel, args.seed);
    let report = if let Some(out) = &args.output {
        let mut gen = gen;
        let binary = matches!(args.output_format, InputFormat::OtlpProtoLogs | InputFormat::OtlpProtoTraces);
        let res = (|| -> std::io::Result<()> {
            let sink: Box<dyn Write> =
                if out == "-" { Box::new(std::io::stdout().lock()) } else { Box::new(std::fs::File::create(out)?) };
            let mut w = std::io::BufWriter::with_capacity(1 << 20, sink);
            let mut len = Vec::with_capacity(10);
            for m in gen.by_ref() {
                if binary {
                    len.clear();
                    prost::encoding::encode_varint(m.payload.len() as u64, &mut len);
                    w.write_all(&len)?;
                    w.write_all(&m.payload)?;
                } else {
                    w.write_all(&m.payload)?;
                    w.write_all(b"\n")?;
                }
            }
            w.flush()
        })();
        if let Err(e) = res {
            eprintln!("accord: cannot write {out}: {e}");
            return ExitCode::FAILURE;
        }
        gen.report()
    } else {
        let brokers = args.brokers.clone().unwrap_or_default();
        let topic = args.topic.clone();
        let props = args.kafka.clone();
        let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("accord: {e}");
                return ExitCode::FAILURE;
            }
        };
        let res = rt.block_on(async move {
            let cancel = CancellationToken::new();
            cancel_on_signals(cancel.clone());
            accord::source::produce::produce(&brokers, &props, &topic, gen, cancel).await
        });
        match res {
            Ok(r) => r,
            Err(e) => {
                eprintln!("accord: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    if let Some(p) = &args.report {
        if let Err(e) = std::fs::write(p, &json) {
            eprintln!("accord: cannot write {}: {e}", p.display());
            return ExitCode::FAILURE;
        }
    }
    if args.output.as_deref() == Some("-") {
        eprintln!("{json}");
    } else {
        println!("{json}");
    }
    ExitCode::SUCCESS
}

fn run_replay(sources: &[Source], catalog: Arc<Catalog>, format: Format, opts: ReplayOptions) -> anyhow::Result<()> {
    let features = Arc::new(Features::new(catalog));
    let stdout = std::io::stdout();
    match format {
        Format::Summary => {
            let mut summary = Summary::new(features.clone());
            replay(sources, &features, opts, &mut summary)?;
            let mut out = stdout.lock();
            serde_json::to_writer_pretty(&mut out, &summary.report())?;
            writeln!(out)?;
        }
        Format::Prometheus => {
            let metrics = Metrics::new(features.clone())?;
            let mut obs = metrics.observer();
            replay(sources, &features, opts, &mut obs)?;
            stdout.lock().write_all(metrics.render().as_bytes())?;
        }
        Format::Verdicts => {
            let out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let mut w = VerdictWriter::new(out, features.clone());
            replay(sources, &features, opts, &mut w)?;
            w.finish()?;
        }
    }
    Ok(())
}
