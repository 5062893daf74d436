//! Fraud detection: per-order features from windows over customers, cards, IPs and devices;
//! rules that are data (versioned in PostgreSQL, published to the compacted `fraud.rules`
//! topic, hot-reloaded between batches); a logistic-regression model score; one alert per
//! order to the `fraud.alerts` topic and the review queue, and a blocklist entry at the block
//! threshold.
//!
//! Global mode: card and device features span customers, whose events live in different
//! partitions, so one leader keeps all of it (standbys take over from the checkpoint).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use events::domain::fraud::{AlertAction, Feature, FraudAlertRaised};
use events::domain::orders::OrderPlaced;
use events::{Envelope, Event, FraudScore, Topic};
use ingest::{EventProducer, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::engine::{In, Mode, Out, OutRecord, Processor};
use crate::sink::{AlertRow, Row};
use crate::window::Millis;

const MIN: Millis = 60_000;
const HOUR: Millis = 60 * MIN;
/// History kept per entity (the longest rule window).
const KEEP: Millis = 24 * HOUR;

/// A fraud rule as stored and published: `kind` picks the logic, `params` tune it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub version: i32,
    pub kind: String,
    pub params: serde_json::Value,
    pub weight: f64,
    pub enabled: bool,
    pub description: String,
}

/// Logistic regression over named features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub version: String,
    #[serde(default)]
    pub description: String,
    pub bias: f64,
    pub weights: BTreeMap<String, f64>,
}

impl Model {
    /// The weights shipped with the code (`streams/models/fraud-lr-v0.json`).
    pub fn builtin() -> Model {
        serde_json::from_str(include_str!("../models/fraud-lr-v0.json"))
            .expect("the built-in model file is valid")
    }

    pub fn from_file(path: &std::path::Path) -> Result<Model, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn probability(&self, features: &BTreeMap<&'static str, f64>) -> f64 {
        let z = self.bias
            + self
                .weights
                .iter()
                .map(|(k, w)| w * features.get(k.as_str()).copied().unwrap_or(0.0))
                .sum::<f64>();
        1.0 / (1.0 + (-z).exp())
    }
}

/// Score thresholds (0–99).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thresholds {
    pub review: u8,
    pub block: u8,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            review: 65,
            block: 75,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Customer {
    registered_at: Option<Millis>,
    /// Devices with when each was first seen.
    devices: BTreeMap<String, Millis>,
    n: u32,
    mean: f64,
    m2: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Entity {
    orders: VecDeque<Millis>,
    declines: VecDeque<Millis>,
    accounts: BTreeMap<Uuid, Millis>,
    last: Millis,
}

impl Entity {
    fn prune(&mut self, now: Millis) {
        while self.orders.front().is_some_and(|t| *t < now - KEEP) {
            self.orders.pop_front();
        }
        while self.declines.front().is_some_and(|t| *t < now - KEEP) {
            self.declines.pop_front();
        }
        self.accounts.retain(|_, t| *t >= now - KEEP);
    }

    fn count(q: &VecDeque<Millis>, now: Millis, window: Millis) -> f64 {
        q.iter().rev().take_while(|t| **t > now - window).count() as f64
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FraudState {
    customers: HashMap<Uuid, Customer>,
    entities: HashMap<String, Entity>,
    clock: Millis,
}

/// Follows the promoted fraud model of the model registry (`<models>/fraud/promoted` names
/// the version, `<models>/fraud/<version>/model.json` holds it; `shopstream ml train fraud`
/// writes both), checked at most every `every`.
#[derive(Debug)]
pub struct ModelFeed {
    dir: std::path::PathBuf,
    current: Option<String>,
    every: Duration,
    checked: Option<std::time::Instant>,
}

impl ModelFeed {
    /// `dir` is the registry's `fraud` directory.
    pub fn new(dir: impl Into<std::path::PathBuf>, every: Duration) -> ModelFeed {
        ModelFeed {
            dir: dir.into(),
            current: None,
            every,
            checked: None,
        }
    }

    /// A newly promoted model, if there is one since the last call.
    pub fn poll(&mut self) -> Option<Model> {
        if self.checked.is_some_and(|t| t.elapsed() < self.every) {
            return None;
        }
        self.checked = Some(std::time::Instant::now());
        let version = std::fs::read_to_string(self.dir.join("promoted")).ok()?;
        let version = version.trim().to_owned();
        if self.current.as_deref() == Some(version.as_str()) {
            return None;
        }
        match Model::from_file(&self.dir.join(&version).join("model.json")) {
            Ok(mut m) => {
                // Alerts name the registry version that scored them.
                m.version = format!("fraud/{version}");
                self.current = Some(version);
                Some(m)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the promoted fraud model cannot be read; keeping the current one");
                self.current = Some(version);
                None
            }
        }
    }
}

pub struct FraudDetector {
    rules: Vec<Rule>,
    rules_feed: Option<RulesFeed>,
    model_feed: Option<ModelFeed>,
    model: Model,
    thresholds: Thresholds,
}

impl FraudDetector {
    pub fn new(rules: Vec<Rule>, model: Model, thresholds: Thresholds) -> Self {
        FraudDetector {
            rules,
            rules_feed: None,
            model_feed: None,
            model,
            thresholds,
        }
    }

    /// Follows the rules topic: rule changes apply from the next batch on, without a restart.
    pub fn with_rules_feed(mut self, feed: RulesFeed) -> Self {
        self.rules_feed = Some(feed);
        self
    }

    /// Follows the registry's promoted fraud model: used from the start when there is one,
    /// swapped between batches when another is promoted.
    pub fn with_model_feed(mut self, mut feed: ModelFeed) -> Self {
        if let Some(m) = feed.poll() {
            tracing::info!(version = %m.version, "fraud model from the registry");
            self.model = m;
        }
        self.model_feed = Some(feed);
        self
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    fn entity<'a>(st: &'a FraudState, kind: &str, id: &str) -> Option<&'a Entity> {
        st.entities.get(&format!("{kind}:{id}"))
    }

    /// Features of an order against the history before it.
    fn features(st: &FraudState, o: &OrderPlaced, now: Millis) -> BTreeMap<&'static str, f64> {
        let cust = o.customer_id.to_string();
        let orders = |kind: &str, id: &str, w: Millis| {
            Self::entity(st, kind, id).map_or(0.0, |e| Entity::count(&e.orders, now, w)) + 1.0
        };
        let declines = |kind: &str, id: &str, w: Millis| {
            Self::entity(st, kind, id).map_or(0.0, |e| Entity::count(&e.declines, now, w))
        };
        let accounts = |kind: &str, id: &str| {
            let mut n = Self::entity(st, kind, id).map_or(0, |e| {
                e.accounts
                    .iter()
                    .filter(|(c, t)| **t > now - KEEP && **c != o.customer_id)
                    .count()
            });
            n += 1;
            n as f64
        };
        let c = st.customers.get(&o.customer_id);
        let amount = o.total.amount_minor as f64;
        let (new_device, age_min, z) = match c {
            Some(c) => {
                let age = c.registered_at.map_or(-1.0, |r| ((now - r) / MIN) as f64);
                // A device first seen within the hour on an account that is not itself new.
                let established = !(0.0..24.0 * 60.0).contains(&age);
                let recent = c.devices.get(&o.device_id).is_none_or(|t| *t > now - HOUR);
                let z = if c.n >= 2 {
                    let sd = (c.m2 / f64::from(c.n - 1)).sqrt().max(1.0);
                    (amount - c.mean) / sd
                } else {
                    0.0
                };
                (established && recent, age, z)
            }
            None => (true, -1.0, 0.0),
        };
        let mut f = BTreeMap::new();
        f.insert("amount_minor", amount);
        f.insert("log_amount_eur", (amount / 100.0).max(0.0).ln_1p());
        f.insert("orders_customer_10m", orders("customer", &cust, 10 * MIN));
        f.insert("orders_ip_10m", orders("ip", &o.ip, 10 * MIN));
        f.insert(
            "orders_card_10m",
            orders("card", &o.card.fingerprint, 10 * MIN),
        );
        f.insert(
            "orders_device_10m",
            orders("device", &o.device_id, 10 * MIN),
        );
        f.insert(
            "declines_card_30m",
            declines("card", &o.card.fingerprint, 30 * MIN),
        );
        f.insert(
            "declines_customer_30m",
            declines("customer", &cust, 30 * MIN),
        );
        f.insert("account_age_min", age_min);
        f.insert(
            "new_account",
            f64::from(u8::from((0.0..60.0).contains(&age_min))),
        );
        f.insert("new_device", f64::from(u8::from(new_device)));
        f.insert(
            "ship_ne_billing",
            f64::from(u8::from(o.shipping_country != o.billing_country)),
        );
        f.insert(
            "card_ne_billing",
            f64::from(u8::from(o.card.country != o.billing_country)),
        );
        f.insert("card_accounts_24h", accounts("card", &o.card.fingerprint));
        f.insert("device_accounts_24h", accounts("device", &o.device_id));
        f.insert("customer_orders_before", c.map_or(0.0, |c| f64::from(c.n)));
        f.insert("amount_z", z);
        f
    }

    /// Whether a rule fires, given the order, its features and the history.
    fn fires(
        rule: &Rule,
        st: &FraudState,
        o: &OrderPlaced,
        f: &BTreeMap<&'static str, f64>,
        now: Millis,
    ) -> bool {
        let p = &rule.params;
        let num = |k: &str, d: f64| p.get(k).and_then(serde_json::Value::as_f64).unwrap_or(d);
        let by = p.get("by").and_then(|v| v.as_str()).unwrap_or("customer");
        let id = match by {
            "card" => o.card.fingerprint.clone(),
            "ip" => o.ip.clone(),
            "device" => o.device_id.clone(),
            _ => o.customer_id.to_string(),
        };
        match rule.kind.as_str() {
            "velocity" => {
                let w = (num("window_min", 10.0) * MIN as f64) as Millis;
                let e = Self::entity(st, by, &id);
                let n = match p.get("what").and_then(|v| v.as_str()).unwrap_or("orders") {
                    "declines" => e.map_or(0.0, |e| Entity::count(&e.declines, now, w)),
                    _ => e.map_or(0.0, |e| Entity::count(&e.orders, now, w)) + 1.0,
                };
                n >= num("threshold", 5.0)
            }
            "declines_then_order" => {
                let w = (num("window_min", 30.0) * MIN as f64) as Millis;
                Self::entity(st, by, &id).map_or(0.0, |e| Entity::count(&e.declines, now, w))
                    >= num("min_declines", 3.0)
            }
            "new_account_high_value" => {
                let age = f["account_age_min"];
                age >= 0.0
                    && age < num("max_age_min", 60.0)
                    && f["amount_minor"] >= num("min_amount_minor", 0.0)
            }
            "new_device_ship_elsewhere" => f["new_device"] > 0.0 && f["ship_ne_billing"] > 0.0,
            "country_mismatch" => f["ship_ne_billing"] > 0.0 && f["card_ne_billing"] > 0.0,
            "shared_entity" => {
                let key = if by == "device" {
                    "device_accounts_24h"
                } else {
                    "card_accounts_24h"
                };
                f[key] >= num("min_accounts", 3.0)
            }
            "amount_zscore" => {
                f["customer_orders_before"] >= num("min_history", 3.0)
                    && f["amount_z"] >= num("z", 3.0)
            }
            _ => false,
        }
    }

    fn record_order(st: &mut FraudState, o: &OrderPlaced, now: Millis) {
        for (kind, id) in [
            ("customer", o.customer_id.to_string()),
            ("ip", o.ip.clone()),
            ("card", o.card.fingerprint.clone()),
            ("device", o.device_id.clone()),
        ] {
            let e = st.entities.entry(format!("{kind}:{id}")).or_default();
            e.orders.push_back(now);
            if kind == "card" || kind == "device" {
                e.accounts.insert(o.customer_id, now);
            }
            e.last = now;
            e.prune(now);
        }
        let c = st.customers.entry(o.customer_id).or_default();
        c.devices.entry(o.device_id.clone()).or_insert(now);
        let x = o.total.amount_minor as f64;
        c.n += 1;
        let d = x - c.mean;
        c.mean += d / f64::from(c.n);
        c.m2 += d * (x - c.mean);
    }

    fn record_decline(st: &mut FraudState, customer: Uuid, card: &str, now: Millis) {
        for key in [format!("card:{card}"), format!("customer:{customer}")] {
            let e = st.entities.entry(key).or_default();
            e.declines.push_back(now);
            e.last = now;
            e.prune(now);
        }
    }

    /// Scores an order: (score 0–99, rules fired, features).
    pub fn score(
        &self,
        st: &FraudState,
        o: &OrderPlaced,
        now: Millis,
    ) -> (u8, Vec<String>, BTreeMap<&'static str, f64>) {
        let (score, fired, f, _) = self.score_parts(st, o, now);
        (score, fired, f)
    }

    fn score_parts(
        &self,
        st: &FraudState,
        o: &OrderPlaced,
        now: Millis,
    ) -> (u8, Vec<String>, BTreeMap<&'static str, f64>, f64) {
        let f = Self::features(st, o, now);
        let mut keep = 1.0;
        let mut fired = Vec::new();
        for r in self.rules.iter().filter(|r| r.enabled) {
            if Self::fires(r, st, o, &f, now) {
                keep *= 1.0 - r.weight.clamp(0.0, 1.0);
                fired.push(r.id.clone());
            }
        }
        let p = self.model.probability(&f);
        (combined_score(keep, p), fired, f, keep)
    }
}

/// What the detector saw of one order: its score, the rules that fired, the features, and
/// what the rules alone leave of the score (for training a new model on the same features).
#[derive(Debug, Clone)]
pub struct OrderScore<'a> {
    pub order: &'a OrderPlaced,
    pub score: u8,
    pub fired: Vec<String>,
    pub features: BTreeMap<&'static str, f64>,
    /// Π (1 − weight) over the fired rules: score = 99 · (1 − keep · (1 − p_model)).
    pub keep: f64,
}

impl FraudDetector {
    /// Applies one event to the state; for an order, scores it first (against the history
    /// before it). The stream processor and offline training (feature replay) share this.
    pub fn observe<'a>(
        &self,
        st: &mut FraudState,
        event: &'a Event,
        now: Millis,
    ) -> Option<OrderScore<'a>> {
        st.clock = st.clock.max(now);
        match event {
            Event::UserRegistered(u) => {
                st.customers.entry(u.user_id).or_default().registered_at =
                    Some(u.registered_at.timestamp_millis());
            }
            Event::UserLoggedIn(u) => {
                st.customers
                    .entry(u.user_id)
                    .or_default()
                    .devices
                    .entry(u.device_id.clone())
                    .or_insert(now);
            }
            Event::PaymentFailed(p) => {
                Self::record_decline(st, p.customer_id, &p.card_fingerprint, now)
            }
            Event::OrderPlaced(o) => {
                let (score, fired, features, keep) = self.score_parts(st, o, now);
                Self::record_order(st, o, now);
                return Some(OrderScore {
                    order: o,
                    score,
                    fired,
                    features,
                    keep,
                });
            }
            _ => {}
        }
        None
    }

    /// Swaps the model (a newly promoted version) from the next event on.
    pub fn set_model(&mut self, model: Model) {
        self.model = model;
    }

    pub fn model(&self) -> &Model {
        &self.model
    }
}

/// The 0–99 score of an order from what its rules leave (`keep`) and the model's probability.
pub fn combined_score(keep: f64, p: f64) -> u8 {
    (99.0 * (1.0 - keep * (1.0 - p))).round().clamp(0.0, 99.0) as u8
}

/// The alert id of an order: the same order always gets the same alert (and event) id.
pub fn alert_id(order_id: Uuid) -> Uuid {
    Uuid::from_u128(order_id.as_u128() ^ 0x0a1e_47a1_e47a_1e47_a1e4_7a1e_47a1_e47a)
}

impl Processor for FraudDetector {
    type State = FraudState;

    fn name(&self) -> &'static str {
        "fraud"
    }

    fn mode(&self) -> Mode {
        Mode::Global
    }

    fn inputs(&self) -> Vec<Topic> {
        vec![Topic::Users, Topic::Orders, Topic::Payments]
    }

    fn new_state(&self) -> FraudState {
        FraudState::default()
    }

    fn on_event(&mut self, st: &mut FraudState, input: &In<'_>, out: &mut Out) {
        let now = input.ts;
        if let Some(OrderScore {
            order: o,
            score,
            fired,
            features: f,
            ..
        }) = self.observe(st, &input.envelope.event, now)
            && score >= self.thresholds.review
        {
            let block = score >= self.thresholds.block;
            let alert_id = alert_id(o.order_id);
            let features: Vec<Feature> = f
                .iter()
                .map(|(k, v)| Feature {
                    name: (*k).to_owned(),
                    value: *v,
                })
                .collect();
            let event = FraudAlertRaised {
                alert_id,
                order_id: Some(o.order_id),
                customer_id: o.customer_id,
                score: FraudScore::new(score)
                    .unwrap_or(FraudScore::new(99).expect("99 is a score")),
                action: if block {
                    AlertAction::Block
                } else {
                    AlertAction::Review
                },
                rules_fired: fired.clone(),
                features,
                model_version: Some(self.model.version.clone()),
            };
            let mut env =
                Envelope::new("shopstream/streams/fraud", event).with_time(input.envelope.time);
            env.id = alert_id;
            env.subject = Some(o.order_id.to_string());
            out.records.push(OutRecord::Event(env));
            out.rows.push(Row::Alert(Box::new(AlertRow {
                alert_id,
                order_id: o.order_id,
                customer_id: o.customer_id,
                card_fingerprint: o.card.fingerprint.clone(),
                score,
                action: if block { "block" } else { "review" }.into(),
                rules_fired: fired.clone(),
                features: serde_json::to_value(&f).unwrap_or_default(),
                model_version: Some(self.model.version.clone()),
                amount_minor: o.total.amount_minor,
                currency: o.total.currency.as_str().to_owned(),
                event_time: input.envelope.time,
            })));
            if block {
                let reason = format!("fraud score {score} ({})", fired.join(", "));
                out.rows.push(Row::Block {
                    kind: "card",
                    value: o.card.fingerprint.clone(),
                    reason: reason.clone(),
                    alert_id,
                });
                out.rows.push(Row::Block {
                    kind: "customer",
                    value: o.customer_id.to_string(),
                    reason,
                    alert_id,
                });
            }
            out.urgent = true;
            metrics::counter!("shopstream_fraud_alerts_total", "action" => if block { "block" } else { "review" })
                        .increment(1);
        }
    }

    fn on_watermark(&mut self, st: &mut FraudState, wm: Millis, _out: &mut Out) {
        // Forget entities quiet for longer than the longest window.
        if st.entities.len() > 10_000 {
            st.entities.retain(|_, e| e.last >= wm - KEEP);
        }
    }

    fn between_batches(&mut self) {
        if let Some(feed) = &mut self.rules_feed
            && let Some(rules) = feed.poll()
        {
            tracing::info!(rules = rules.len(), "fraud rules reloaded");
            self.rules = rules;
        }
        if let Some(m) = self.model_feed.as_mut().and_then(ModelFeed::poll) {
            tracing::info!(version = %m.version, "fraud model swapped");
            self.model = m;
        }
    }
}

/// The rules in force: the latest enabled version of each rule.
pub async fn load_rules(pool: &PgPool) -> Result<Vec<Rule>, sqlx::Error> {
    let rows: Vec<(String, i32, String, serde_json::Value, f64, bool, String)> = sqlx::query_as(
        "SELECT DISTINCT ON (id) id, version, kind, params, weight, enabled, description
         FROM streams.fraud_rules ORDER BY id, version DESC",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, version, kind, params, weight, enabled, description)| Rule {
                id,
                version,
                kind,
                params,
                weight,
                enabled,
                description,
            },
        )
        .collect())
}

/// Publishes the current rules to the compacted rules topic (key = rule id).
pub async fn publish_rules(pool: &PgPool, producer: &EventProducer) -> Result<usize, String> {
    let rules = load_rules(pool).await.map_err(|e| e.to_string())?;
    let topic = producer.topic_names().name(Topic::FraudRules);
    for r in &rules {
        let body = serde_json::to_vec(r).map_err(|e| e.to_string())?;
        let headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some("application/json"),
        });
        producer
            .send_raw(&topic, Some(r.id.as_bytes()), Some(&body), headers)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(rules.len())
}

/// Saves a new version of a rule and publishes the rule set; processors reload it.
pub async fn set_rule(pool: &PgPool, producer: &EventProducer, rule: &Rule) -> Result<i32, String> {
    let version: i32 = sqlx::query_scalar(
        "INSERT INTO streams.fraud_rules (id, version, kind, params, weight, enabled, description)
         SELECT $1, COALESCE(max(version), 0) + 1, $2, $3, $4, $5, $6 FROM streams.fraud_rules WHERE id = $1
         RETURNING version",
    )
    .bind(&rule.id)
    .bind(&rule.kind)
    .bind(&rule.params)
    .bind(rule.weight)
    .bind(rule.enabled)
    .bind(&rule.description)
    .fetch_one(pool)
    .await
    .map_err(|e| e.to_string())?;
    publish_rules(pool, producer).await?;
    Ok(version)
}

/// Follows the compacted rules topic from the beginning.
pub struct RulesFeed {
    consumer: BaseConsumer,
    rules: BTreeMap<String, Rule>,
}

impl RulesFeed {
    pub fn open(cfg: &KafkaConfig) -> Result<RulesFeed, rdkafka::error::KafkaError> {
        let consumer: BaseConsumer = cfg
            .consumer_config()
            .set(
                "group.id",
                format!("{}shopstream-rules-feed", cfg.topic_prefix),
            )
            .set("enable.auto.commit", "false")
            .create()?;
        let topic = cfg.topic_names().name(Topic::FraudRules);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        Ok(RulesFeed {
            consumer,
            rules: BTreeMap::new(),
        })
    }

    /// The full rule set when something changed since the last call.
    pub fn poll(&mut self) -> Option<Vec<Rule>> {
        let mut changed = false;
        while let Some(Ok(m)) = self.consumer.poll(Duration::ZERO) {
            if let Some(rule) = m
                .payload()
                .and_then(|p| serde_json::from_slice::<Rule>(p).ok())
            {
                self.rules.insert(rule.id.clone(), rule);
                changed = true;
            }
        }
        changed.then(|| self.rules.values().cloned().collect())
    }
}
