//! `shopstream events ...`: the contract, for people and for the schema drift check.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use events::schema::{SchemaDrift, arrow_schema_for, check_schema_dir, write_schema_dir};
use events::{EVENT_TYPES, Envelope, Event, samples};

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List every event type with its topic and partition key.
    List,
    /// Check (default) or rewrite the JSON Schemas generated from the Rust types.
    Schemas {
        /// Regenerate the files instead of checking them.
        #[arg(long)]
        write: bool,
        /// Schema directory.
        #[arg(long, default_value = "events/schemas")]
        dir: PathBuf,
    },
    /// Print the Arrow (warehouse) schema of an event type.
    Arrow {
        /// e.g. order.placed.v1
        event_type: String,
    },
    /// Print a sample record of an event type: its ce_* headers, key and JSON value.
    Sample {
        /// e.g. order.placed.v1
        event_type: String,
    },
}

fn check_type(t: &str) -> anyhow::Result<()> {
    if EVENT_TYPES.contains(&t) {
        Ok(())
    } else {
        anyhow::bail!("unknown event type {t:?}; `shopstream events list` shows them all")
    }
}

pub fn run(cmd: EventsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EventsCommand::List => {
            println!("{:<26} {:<14} key", "type", "topic");
            for e in samples() {
                let spec = e.topic().spec();
                println!("{:<26} {:<14} {}", e.event_type(), spec.name, spec.key);
            }
            Ok(ExitCode::SUCCESS)
        }
        EventsCommand::Schemas { write: true, dir } => {
            let n = write_schema_dir(&dir).with_context(|| format!("writing {}", dir.display()))?;
            println!("wrote {n} schemas to {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        EventsCommand::Schemas { write: false, dir } => {
            let drift =
                check_schema_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
            if drift.is_empty() {
                println!(
                    "{} schemas in {} match the Rust types",
                    EVENT_TYPES.len(),
                    dir.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            for d in &drift {
                match d {
                    SchemaDrift::Missing(f) => println!("missing: {f}"),
                    SchemaDrift::Changed(f) => println!("changed: {f}"),
                    SchemaDrift::Stale(f) => println!("stale:   {f}"),
                }
            }
            println!(
                "schemas drifted; run `shopstream events schemas --write` and review the diff"
            );
            Ok(ExitCode::FAILURE)
        }
        EventsCommand::Arrow { event_type } => {
            check_type(&event_type)?;
            let schema = arrow_schema_for(&event_type)?;
            for f in schema.fields() {
                let null = if f.is_nullable() { "null" } else { "not null" };
                println!("{:<22} {:<8} {}", f.name(), null, f.data_type());
            }
            Ok(ExitCode::SUCCESS)
        }
        EventsCommand::Sample { event_type } => {
            check_type(&event_type)?;
            let event: Event = samples()
                .into_iter()
                .find(|e| e.event_type() == event_type)
                .context("every type has a sample")?;
            let env = Envelope::new("/shopstream/cli", event);
            for (k, v) in env.headers() {
                println!("{k}: {v}");
            }
            println!("key: {}", env.key());
            let value: serde_json::Value = serde_json::from_slice(&env.payload())?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
