//! `shopstream`: one binary that runs any part of the platform. It parses the command line,
//! loads the configuration and wires the library crates together; nothing more.

mod cmd;
mod config;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};

/// Shopstream: an e-commerce event and analytics platform.
///
/// Configuration: defaults work on one machine; override them in a TOML file (`--config`,
/// or ./shopstream.toml) and with SHOPSTREAM_<SECTION>_<KEY> environment variables, e.g.
/// SHOPSTREAM_KAFKA_BROKERS=127.0.0.1:9092. See `shopstream config show`.
#[derive(Debug, Parser)]
#[command(name = "shopstream", version, propagate_version = true)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "SHOPSTREAM_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format (overrides `log.format`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Kafka bootstrap servers (overrides `kafka.brokers`).
    #[arg(long, global = true, value_name = "HOST:PORT,...")]
    brokers: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform: apply the topic catalogue and migrations, serve the services with
    /// /livez, /readyz and /metrics, relay the outbox, and run live simulated traffic with a
    /// consumer that counts it. Needs the local stack
    /// (`deploy/local/stack.sh up`, or `scripts/up.sh` which does both).
    Up(cmd::up::UpArgs),
    /// Serve the services (today: auth) under /v1, with /livez, /readyz and /metrics.
    /// Applies migrations first.
    Serve,
    /// Relay the transactional outbox to Kafka (one relay leads, others stand by).
    Relay,
    /// Apply every service's database migrations and exit.
    Migrate,
    /// Set the roles of an account by e-mail (how the first admin is made).
    Grant {
        /// The account's e-mail.
        email: String,
        /// Roles: customer, vendor, support, analyst, fraud_analyst, admin.
        #[arg(required = true, value_parser = parse_role)]
        roles: Vec<events::domain::users::Role>,
    },
    /// Print the services' OpenAPI document (or rewrite the committed services/openapi.json).
    Openapi {
        /// Write to this file instead of printing.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
    },
    /// Run stream processors: aggregate, fraud, anomaly, or all (start several instances to
    /// share the work; a survivor takes over a dead instance's partitions).
    Stream(cmd::stream::StreamArgs),
    /// Fraud rules: list, change (hot-reloaded by running processors), publish.
    #[command(subcommand)]
    Rules(cmd::stream::RulesCommand),
    /// Simulate storefront traffic with injected fraud and a ground-truth label log.
    Simulate(cmd::simulate::SimulateArgs),
    /// Benchmarks against the local stack (prints a table; not a test).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Kafka topics of the catalogue.
    #[command(subcommand)]
    Topics(cmd::topics::TopicsCommand),
    /// The warehouse: load Kafka into Delta, build the models, SQL for analysts.
    #[command(subcommand)]
    Warehouse(cmd::warehouse::WarehouseCommand),
    /// Models: train, evaluate, list the registry, promote, roll back.
    #[command(subcommand)]
    Ml(cmd::ml::MlCommand),
    /// The event contract: types, samples, JSON and Arrow schemas.
    #[command(subcommand)]
    Events(cmd::events::EventsCommand),
    /// Show the effective configuration (secrets hidden).
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the merged configuration as JSON.
    Show,
}

fn parse_role(s: &str) -> Result<events::domain::users::Role, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
        format!("unknown role {s:?}: customer, vendor, support, analyst, fraud_analyst or admin")
    })
}

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's option setter, in the library `libmimalloc-sys` links in.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    #[cfg(test)]
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys 0.1.49).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Memory freed stays mapped for 10 s before mimalloc gives it back (1 s by default), unless
/// `MIMALLOC_PURGE_DELAY` says otherwise. librdkafka's fetch thread allocates a fresh buffer
/// for every batch it decompresses: with a 1 s delay the freed ones were returned to the
/// kernel and faulted in again, zeroed, page by page (`clear_page_erms` was 13 % of a
/// stateless processor's CPU samples); with 10 s they are reused, ~5 % less CPU per event
/// (`shopstream bench streams`).
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists (the
        // setter is not thread safe); the option index is checked against mimalloc.h above.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 10_000) };
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let mut cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(f) = cli.log_format {
        cfg.log.format = f;
    }
    if let Some(b) = cli.brokers {
        cfg.kafka.brokers = b;
    }
    telemetry::init_tracing(&cfg.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => cmd::up::run(&cfg, args).await,
            Command::Serve => cmd::serve::serve(&cfg).await,
            Command::Relay => cmd::serve::relay(&cfg).await,
            Command::Migrate => cmd::serve::migrate(&cfg).await,
            Command::Grant { email, roles } => cmd::serve::grant(&cfg, &email, &roles).await,
            Command::Openapi { write } => {
                let json = services::openapi().to_pretty_json()? + "\n";
                match write {
                    Some(path) => {
                        std::fs::write(&path, json)?;
                        println!("wrote {}", path.display());
                    }
                    None => print!("{json}"),
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Simulate(a) => cmd::simulate::run(&cfg, a).await,
            Command::Stream(a) => cmd::stream::run(&cfg, a).await,
            Command::Rules(c) => cmd::stream::rules(&cfg, c).await,
            Command::Bench(c) => cmd::bench::run(&cfg, c).await,
            Command::Topics(c) => cmd::topics::run(&cfg, c).await,
            Command::Warehouse(c) => cmd::warehouse::run(&cfg, c).await,
            Command::Ml(c) => cmd::ml::run(&cfg, c).await,
            Command::Events(c) => cmd::events::run(c),
            Command::Config(ConfigCommand::Show) => {
                println!("{}", serde_json::to_string_pretty(&cfg.redacted())?);
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod allocator_tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // set from outside: tune_allocator leaves it alone
        }
        // SAFETY: reads and sets one option; no other test touches mimalloc's options.
        unsafe {
            // mimalloc v3's default purge delay: the index names that option.
            assert_eq!(mi_option_get(MI_OPTION_PURGE_DELAY), 1_000);
            tune_allocator();
            assert_eq!(mi_option_get(MI_OPTION_PURGE_DELAY), 10_000);
        }
    }
}
