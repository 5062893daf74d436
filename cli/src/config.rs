//! The one configuration: defaults that work on one machine < TOML file < `SHOPSTREAM_*`
//! environment variables < command-line flags. `SHOPSTREAM_KAFKA_BROKERS` sets
//! `kafka.brokers`: the first `_` after the prefix separates section and key.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ingest::KafkaConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub database: DatabaseConfig,
    pub services: services::ServicesConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub simulator: SimulatorConfig,
    pub streams: StreamsConfig,
    pub warehouse: warehouse::WarehouseConfig,
}

/// Stream processors (`[streams]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamsConfig {
    /// Fraud score (0–99) at which an alert goes to the review queue.
    pub review_threshold: u8,
    /// Fraud score at which the card and customer are also blocked.
    pub block_threshold: u8,
    /// Logistic-regression weights file for the fraud score (the built-in ones if empty).
    pub fraud_model: String,
    /// Out-of-orderness tolerated before events count as late, in seconds.
    pub watermark_secs: u64,
    /// How long a fired window still accepts late events, in seconds.
    pub allowed_lateness_secs: u64,
    /// Also judge each minute against the same hour of previous days (daily seasonality).
    pub anomaly_seasonal: bool,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            review_threshold: 65,
            block_threshold: 75,
            fraud_model: String::new(),
            watermark_secs: 5,
            allowed_lateness_secs: 60,
            anomaly_seasonal: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// PostgreSQL URL; the local stack's private cluster by default.
    pub url: String,
    /// Pool size per process (the services' shared statements and the session cache's
    /// listener each hold one more connection of their own). Connections beyond what the
    /// database's cores can serve at once queue inside PostgreSQL instead of the pool, where
    /// they cost context switches and lock contention: on two cores, checkouts ran ~7 %
    /// faster with 16 than with 32 and ~15 % faster than with 64
    /// (`shopstream bench checkout --db-connections N`).
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "postgres://shopstream:shopstream@127.0.0.1:55432/shopstream".into(),
            max_connections: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Where `/livez`, `/readyz` and `/metrics` are served.
    pub addr: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` filter directives; `RUST_LOG` overrides.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            filter: "info,rdkafka=warn,sqlx=warn,buoyant_kernel=off,buoyant_kernel_engine=warn,deltalake_core=warn,datafusion=warn,datafusion_postgres=warn,pgwire=warn,ballista_core=warn,ballista_scheduler=warn,ballista_executor=warn".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorConfig {
    /// Sessions per second of the live traffic `shopstream up` runs (0 turns it off).
    pub sessions_per_sec: f64,
    pub products: usize,
    pub customers: usize,
    /// Chance that a session is an injected fraud case.
    pub fraud_rate: f64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            sessions_per_sec: 0.5,
            products: 500,
            customers: 5_000,
            fraud_rate: 0.02,
        }
    }
}

/// Every `section_key` the environment may set, from the defaults' own shape, so unrelated
/// `SHOPSTREAM_*` variables (the stack scripts' own) are ignored rather than rejected.
fn env_keys() -> HashSet<String> {
    let mut keys = HashSet::new();
    if let Ok(serde_json::Value::Object(sections)) = serde_json::to_value(Config::default()) {
        for (section, fields) in sections {
            if let serde_json::Value::Object(fields) = fields {
                for field in fields.keys() {
                    keys.insert(format!("{section}_{field}"));
                }
            }
        }
    }
    keys
}

impl Config {
    /// Loads the layers below the flags. `file` is an explicit path (must exist) or, when
    /// absent, `./shopstream.toml` if present.
    pub fn load(file: Option<&Path>) -> Result<Config, Box<figment::Error>> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                if !path.exists() {
                    return Err(Box::new(figment::Error::from(format!(
                        "config file {} does not exist",
                        path.display()
                    ))));
                }
                fig = fig.merge(Toml::file(path));
            }
            None => fig = fig.merge(Toml::file("shopstream.toml")),
        }
        let keys = env_keys();
        fig = fig.merge(
            Env::prefixed("SHOPSTREAM_")
                .filter(move |k| keys.contains(&k.as_str().to_ascii_lowercase()))
                .map(|k| k.as_str().replacen('_', ".", 1).into()),
        );
        fig.extract().map_err(Box::new)
    }

    /// The config as JSON with the database password hidden.
    pub fn redacted(&self) -> serde_json::Value {
        let mut c = self.clone();
        if let Some((scheme_user, rest)) = c.database.url.split_once('@')
            && let Some((scheme, user_pass)) = scheme_user.split_once("://")
            && let Some((user, _)) = user_pass.split_once(':')
        {
            c.database.url = format!("{scheme}://{user}:***@{rest}");
        }
        if c.services.jwt_secret != services::app::DEV_JWT_SECRET {
            c.services.jwt_secret = "***".into();
        }
        serde_json::to_value(c).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type, not ours
    fn layers_apply_in_order_and_unknown_keys_are_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "shop.toml",
                "[kafka]\nbrokers = \"file:9092\"\nclient_id = \"from-file\"\n[simulator]\nsessions_per_sec = 1.5\n",
            )?;
            jail.set_env("SHOPSTREAM_KAFKA_BROKERS", "env:9092");
            jail.set_env("SHOPSTREAM_STATE", "/ignored/not/a/config/key");
            let c = Config::load(Some(Path::new("shop.toml"))).map_err(|e| *e)?;
            assert_eq!(c.kafka.brokers, "env:9092");
            assert_eq!(c.kafka.client_id, "from-file");
            assert_eq!(c.simulator.sessions_per_sec, 1.5);
            assert_eq!(c.http, HttpConfig::default());

            jail.create_file("typo.toml", "[kafka]\nbrokerz = \"x\"\n")?;
            let err = Config::load(Some(Path::new("typo.toml"))).unwrap_err();
            assert!(err.to_string().contains("brokerz"), "{err}");
            assert!(Config::load(Some(Path::new("missing.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn redaction_hides_the_password() {
        let c = Config::default();
        let shown = c.redacted().to_string();
        assert!(shown.contains("shopstream:***@127.0.0.1"), "{shown}");
        assert!(!shown.contains("shopstream:shopstream@"));
    }
}
