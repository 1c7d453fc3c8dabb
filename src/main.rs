//! The `accord` command line (SPEC §7).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use accord::export::summary::Summary;
use accord::export::verdicts::VerdictWriter;
use accord::export::Metrics;
use accord::replay::{replay, Source};
use accord::{Catalog, Features};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "accord", version, about = "Rollout agreement monitor: did every layer act on the same release state?")]
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
    },
    /// Validate a catalog file; prints one line per problem.
    CheckConfig { file: PathBuf },
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
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("ACCORD_LOG").unwrap_or_else(|_| "info".into()))
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
        Cmd::Replay { files, config, format } => {
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
            match run_replay(&sources, catalog, format) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("accord: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_replay(sources: &[Source], catalog: Arc<Catalog>, format: Format) -> anyhow::Result<()> {
    let features = Arc::new(Features::new(catalog));
    let stdout = std::io::stdout();
    match format {
        Format::Summary => {
            let mut summary = Summary::new(features.clone());
            replay(sources, &features, &mut summary)?;
            let mut out = stdout.lock();
            serde_json::to_writer_pretty(&mut out, &summary.report())?;
            writeln!(out)?;
        }
        Format::Prometheus => {
            let metrics = Metrics::new(features.clone())?;
            let mut obs = metrics.observer();
            replay(sources, &features, &mut obs)?;
            stdout.lock().write_all(metrics.render().as_bytes())?;
        }
        Format::Verdicts => {
            let out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let mut w = VerdictWriter::new(out, features.clone());
            replay(sources, &features, &mut w)?;
            w.finish()?;
        }
    }
    Ok(())
}
