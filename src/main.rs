//! The `accord` command line (docs/reference.md#command-line). Exit codes
//! are decided here only: 0, 1 for runtime failures, 2 for bad usage, a
//! bad catalog or a bad web configuration, 130 after a second signal.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use accord::decode::InputFormat;
use accord::exit::{render_markdown, ReviewParams, ReviewWindow};
use accord::export::summary::Summary;
use accord::export::verdicts::VerdictWriter;
use accord::export::Metrics;
use accord::features::Resolved;
use accord::http::{ServeOptions, WebConfig};
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
    /// The flag exit review of FEATURE over archived decision records (the
    /// whole archive is the window): who still takes the old path, can the flag go?
    Report {
        /// The feature to review (a catalog key).
        feature: String,
        /// Files to judge, like replay; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<String>,
        #[arg(long, env = "ACCORD_CONFIG", default_value = "accord.toml")]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
        format: ReportFormat,
        /// Closed requests needed before the flag can be called ready.
        #[arg(long, default_value_t = accord::exit::DEFAULT_MIN_SAMPLES)]
        min_samples: u64,
        /// All files form one stream, merged in event-time order (as replay --merge).
        #[arg(long)]
        merge: bool,
        /// What each line is (as replay --input-format).
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
        /// What the simulated stack logs: accord decision records, or
        /// OpenTelemetry flag-evaluation events (as OpenFeature hooks emit
        /// them, through the Collector's Kafka exporter).
        #[arg(long, default_value = "accord")]
        input_format: InputFormat,
        #[command(flatten)]
        http: HttpArgs,
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
    /// Topic(s) to consume, NAME or NAME:FORMAT; repeat the flag or separate
    /// with commas. Partition p of every topic is one stream: the topics must
    /// be co-partitioned (equal partition counts, records keyed by request_id).
    #[arg(long = "topic", env = "ACCORD_TOPIC", value_delimiter = ',', required = true)]
    topics: Vec<String>,
    /// Input format of topics that name none: accord decision records, or
    /// OpenTelemetry flag-evaluation events (otlp_json, otlp_proto_logs,
    /// otlp_proto_traces) as the Collector's Kafka exporter writes them.
    #[arg(long, env = "ACCORD_INPUT_FORMAT", default_value = "accord")]
    input_format: InputFormat,
    #[arg(long, env = "ACCORD_GROUP", default_value = "accord")]
    group: String,
    #[arg(long, env = "ACCORD_LISTEN", default_value = "127.0.0.1:9898")]
    listen: SocketAddr,
    /// Also produce every closed join to this topic (one JSON record keyed by request_id).
    #[arg(long, env = "ACCORD_VERDICTS_TOPIC")]
    verdicts_topic: Option<String>,
    /// Topic of each stream's handover state (default GROUP.accord-handover,
    /// created at start-up when missing, compacted).
    #[arg(long, env = "ACCORD_HANDOVER_TOPIC")]
    handover_topic: Option<String>,
    /// Topic of the live view's statistics (default GROUP.accord-stats,
    /// created at start-up when missing).
    #[arg(long, env = "ACCORD_STATS_TOPIC")]
    stats_topic: Option<String>,
    /// The name this instance publishes its share of the live view under
    /// (default: the host name and process id).
    #[arg(long, env = "ACCORD_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Judging threads (default: the number of cores).
    #[arg(long, env = "ACCORD_JUDGE_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    judge_threads: Option<u16>,
    /// Extra librdkafka property, KEY=VALUE (repeatable), e.g. security.protocol=SASL_SSL.
    #[arg(long = "kafka", env = "ACCORD_KAFKA", value_delimiter = ';', value_parser = parse_kv)]
    kafka: Vec<(String, String)>,
    /// How often judged offsets are committed.
    #[arg(long, env = "ACCORD_COMMIT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    commit_interval: std::time::Duration,
    /// Bytes of recent raw records kept for divergence samples, for the
    /// whole instance (shared by its partitions; at most 1 GiB; 0 keeps none).
    #[arg(long, env = "ACCORD_SAMPLE_BUFFER_BYTES", default_value_t = 64 << 20, value_parser = parse_sample_bytes)]
    sample_buffer_bytes: usize,
    #[command(flatten)]
    http: HttpArgs,
}

/// The HTTP server's security and timeouts (`run` and `demo`).
#[derive(clap::Args)]
struct HttpArgs {
    /// Web configuration in the Prometheus exporters' format (TLS, mutual TLS,
    /// basic auth, headers); see docs/http-security.md.
    #[arg(long, env = "ACCORD_WEB_CONFIG_FILE")]
    web_config_file: Option<PathBuf>,
    /// Time a new connection has for its TLS handshake and request headers, and
    /// a keep-alive connection for the headers of a request it has started.
    #[arg(long, env = "ACCORD_HTTP_READ_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    http_read_timeout: std::time::Duration,
    /// How long an idle keep-alive connection is kept open (keep it above
    /// the scrape interval and a load balancer's idle timeout).
    #[arg(long, env = "ACCORD_HTTP_IDLE_TIMEOUT", default_value = "2m", value_parser = parse_timeout)]
    http_idle_timeout: std::time::Duration,
}

impl HttpArgs {
    /// Validates the web configuration (certificates included): a bad one
    /// stops start-up with one line and exit code 2.
    fn serve_options(&self) -> Result<ServeOptions, ExitCode> {
        let web = match &self.web_config_file {
            Some(path) => Some(Arc::new(WebConfig::load(path).map_err(|e| {
                eprintln!("accord: {e}");
                ExitCode::from(EXIT_CONFIG)
            })?)),
            None => None,
        };
        Ok(ServeOptions {
            web,
            read_timeout: self.http_read_timeout,
            idle_timeout: self.http_idle_timeout,
            ..ServeOptions::default()
        })
    }
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be above zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("invalid duration {s:?}: {e}")),
    }
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

/// The instance's sample budget is shared by its partitions, each buffer
/// allocated on its partition's first record, so the bound is checked up
/// front.
fn parse_sample_bytes(s: &str) -> Result<usize, String> {
    const MAX: usize = 1 << 30;
    match s.trim().parse::<usize>() {
        Ok(n) if n <= MAX => Ok(n),
        Ok(_) => Err(format!("at most {MAX} bytes, got {s}")),
        Err(e) => Err(format!("expected a number of bytes, got {s:?}: {e}")),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Markdown,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Summary,
    Prometheus,
    Verdicts,
}

/// Exit code for bad usage, a bad catalog or a bad web configuration.
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
            let http = match args.http.serve_options() {
                Ok(h) => h,
                Err(code) => return code,
            };
            block_on(|cancel| async move {
                let mut service = Service::new(catalog)?;
                service.http = ServeOptions { grace: service.http.grace, ..http };
                let listener = Service::bind(args.listen).await?;
                let defaults = KafkaConfig::new(&args.brokers, &[], &args.group);
                let mut topics = Vec::new();
                let mut formats = Vec::new();
                for t in &args.topics {
                    let (name, format) = InputFormat::split_topic(t.trim())
                        .map_err(|e| ServiceError::Config(format!("--topic: {e}")))?;
                    topics.push(name.to_string());
                    formats.push(format.unwrap_or(args.input_format));
                }
                let kafka = KafkaConfig {
                    topics,
                    formats,
                    properties: args.kafka,
                    verdicts_topic: args.verdicts_topic,
                    handover_topic: args.handover_topic,
                    stats_topic: args.stats_topic,
                    commit_interval: args.commit_interval,
                    sample_bytes: args.sample_buffer_bytes,
                    judge_threads: args.judge_threads.map_or(defaults.judge_threads, usize::from),
                    instance_id: args.instance_id,
                    ..defaults
                };
                service.run(kafka, listener, cancel).await
            })
        }
        Cmd::Demo { listen, rate, partitions, input_format, http } => {
            let http = match http.serve_options() {
                Ok(h) => h,
                Err(code) => return code,
            };
            block_on(|cancel| async move {
                let opts = accord::demo::DemoOptions { listen, rate, partitions, format: input_format, http };
                accord::demo::demo(opts, cancel).await
            })
        }
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
        Cmd::Report { feature, files, config, format, min_samples, merge, input_format } => {
            let catalog = match load_catalog(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if catalog.feature(&feature).is_none() {
                eprintln!("accord: feature {feature:?} is not in the catalog {}", config.display());
                return ExitCode::from(EXIT_CONFIG);
            }
            let sources = match sources(&files) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let params = ReviewParams {
                window: ReviewWindow::Archive,
                now_ms: chrono::Utc::now().timestamp_millis(),
                min_samples,
            };
            finish(run_report(
                &sources,
                catalog,
                &feature,
                format,
                ReplayOptions { merge, format: input_format },
                &params,
            ))
        }
    }
}

/// Replay's inputs; a missing file is bad usage (the checks of the replay
/// command, for the report).
fn sources(files: &[String]) -> Result<Vec<Source>, ExitCode> {
    let sources: Vec<Source> = files.iter().map(|f| Source::parse(f)).collect();
    for s in &sources {
        if let Source::File(p) = s {
            if !p.is_file() {
                eprintln!("accord: {}: no such file", p.display());
                return Err(ExitCode::from(EXIT_CONFIG));
            }
        }
    }
    Ok(sources)
}

/// The exit code of a report (as replay's: a closed pipe is not an error).
fn finish(res: anyhow::Result<()>) -> ExitCode {
    match res {
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

/// Exit code after a second SIGINT/SIGTERM (128 + SIGINT, as shells report).
const EXIT_ABORTED: u8 = 130;

/// Runs an async command that stops when the token it is given is
/// cancelled (first SIGINT/SIGTERM); a second signal stops at once.
/// Configuration errors exit 2, others 1.
fn block_on<F, Fut>(command: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), ServiceError>>,
{
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("accord: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let cancel = CancellationToken::new();
        let abort = cancel_on_signals(cancel.clone());
        tokio::select! {
            r = command(cancel) => Some(r),
            _ = abort.cancelled() => None,
        }
    });
    let Some(result) = result else {
        return ExitCode::from(EXIT_ABORTED);
    };
    match result {
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
            let abort = cancel_on_signals(cancel.clone());
            tokio::select! {
                r = accord::source::produce::produce(&brokers, &props, &topic, gen, cancel) => Some(r),
                _ = abort.cancelled() => None,
            }
        });
        let Some(res) = res else {
            return ExitCode::from(EXIT_ABORTED);
        };
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

/// Judges the archive like replay, collecting the exit review's evidence of
/// `feature` and its closed requests, and prints the review.
fn run_report(
    sources: &[Source],
    catalog: Arc<Catalog>,
    feature: &str,
    format: ReportFormat,
    opts: ReplayOptions,
    params: &ReviewParams,
) -> anyhow::Result<()> {
    let features = Arc::new(Features::new(catalog.clone()));
    let (Resolved::Known(id), Some(_)) = (features.resolve(feature), catalog.feature(feature)) else {
        anyhow::bail!("feature {feature:?} is not in the catalog");
    };
    let review = accord::replay::exit_review(sources, &features, id, opts, params)?;
    let mut out = std::io::stdout().lock();
    match format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &review)?;
            writeln!(out)?;
        }
        ReportFormat::Markdown => out.write_all(render_markdown(&review).as_bytes())?,
    }
    Ok(())
}
