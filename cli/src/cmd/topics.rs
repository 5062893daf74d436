//! `shopstream topics ...`: the catalogue on the broker.

use std::process::ExitCode;

use clap::Subcommand;
use ingest::{TopicAdmin, TopicChange};

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create missing catalogue topics (and their DLQs), raise partition counts and fix
    /// retention/cleanup configs. Safe to run any number of times.
    Apply,
    /// Print the catalogue: name, partitions, key, retention, cleanup policy (no broker needed).
    List,
    /// Delete every topic whose name starts with a prefix (tests' private topics).
    Delete {
        /// Name prefix, e.g. `it-`; must be at least 3 characters.
        #[arg(long)]
        prefix: String,
    },
}

pub async fn run(cfg: &Config, cmd: TopicsCommand) -> anyhow::Result<ExitCode> {
    let names = cfg.kafka.topic_names();
    match cmd {
        TopicsCommand::List => {
            println!(
                "{:<34} {:>4}  {:<26} {:<8} {:<8} description",
                "topic", "part", "key", "retain", "cleanup"
            );
            for p in names.plan() {
                let cfg_of = |k: &str| p.configs.iter().find(|c| c.0 == k).map(|c| c.1.clone());
                let retain = match cfg_of("retention.ms").as_deref() {
                    Some("-1") => "forever".to_owned(),
                    Some(ms) => format!("{}d", ms.parse::<i64>().unwrap_or(0) / 86_400_000),
                    None => "-".to_owned(),
                };
                println!(
                    "{:<34} {:>4}  {:<26} {:<8} {:<8} {}",
                    p.name,
                    p.partitions,
                    p.key.to_string(),
                    retain,
                    cfg_of("cleanup.policy").unwrap_or_default(),
                    p.description
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TopicsCommand::Delete { prefix } => {
            if prefix.len() < 3 {
                anyhow::bail!("refusing a prefix shorter than 3 characters: {prefix:?}");
            }
            let admin = TopicAdmin::new(&cfg.kafka)?;
            let names: Vec<String> = admin
                .partition_counts()
                .await?
                .into_keys()
                .filter(|n| n.starts_with(&prefix))
                .collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            for chunk in refs.chunks(200) {
                admin.delete(chunk).await?;
            }
            println!("deleted {} topics starting with {prefix:?}", names.len());
            Ok(ExitCode::SUCCESS)
        }
        TopicsCommand::Apply => {
            let admin = TopicAdmin::new(&cfg.kafka)?;
            let changes = admin.apply(&names.plan()).await?;
            let mut changed = 0;
            for (name, change) in &changes {
                let what = match change {
                    TopicChange::Created => "created".to_owned(),
                    TopicChange::Unchanged => "ok".to_owned(),
                    TopicChange::PartitionsIncreased { from, to } => {
                        format!("partitions {from} -> {to}")
                    }
                    TopicChange::ConfigsUpdated(keys) => format!("updated {}", keys.join(", ")),
                    TopicChange::MorePartitionsThanPlanned { actual } => {
                        format!("warning: has {actual} partitions, more than planned (left alone)")
                    }
                };
                if change != &TopicChange::Unchanged {
                    changed += 1;
                }
                println!("{name:<34} {what}");
            }
            println!(
                "{} topics on {}: {changed} changed, {} already as planned",
                changes.len(),
                cfg.kafka.brokers,
                changes.len() - changed
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
