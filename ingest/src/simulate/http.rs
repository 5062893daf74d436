//! HTTP mode: simulated shoppers, and fraudsters among them, calling the public storefront
//! APIs, so every event comes out of the services (outbox, clickstream intake) exactly as
//! real traffic's would. The shop is set up through the same APIs: vendor accounts create
//! the world's products and stock them. Roles can only be granted by an admin, so the
//! caller supplies `grant` (the CLI uses the same path as `shopstream grant`).
//!
//! Each session draws its decisions from its own generator seeded by (seed, session number),
//! so the same seed makes the same sessions; their interleaving over the workers, and the
//! ids the server assigns, differ from run to run. The label log names the server's ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::simulate::fraud::{AnomalyKind, AnomalyLabel, FraudKind, GroundTruth, Label};
use crate::simulate::world::{self, World};

const PASSWORD: &str = "simulated shopper password";
/// The gateway simulator's declining test cards are BIN 400000 with these last four digits
/// (do not honor, insufficient funds, expired, incorrect CVC, stolen; see the payments
/// service), so each tester can use cards of its own.
const DECLINE_CODES: &[&str] = &["0002", "9995", "0069", "0127", "0019"];
const VENDORS: usize = 5;

/// What to simulate over HTTP.
#[derive(Debug, Clone)]
pub struct HttpSimConfig {
    /// The storefront, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    pub seed: u64,
    /// Requests per second at the daily peak.
    pub rps: f64,
    /// Stop starting sessions after this long.
    pub duration: Duration,
    /// Stop after this many sessions (whichever comes first).
    pub max_sessions: Option<u64>,
    pub products: usize,
    pub customers: usize,
    /// Chance that a session is an injected fraud case.
    pub fraud_rate: f64,
    /// Sessions in flight at once.
    pub concurrency: usize,
    /// Length of a simulated day in seconds (the diurnal rate curve runs over it); the
    /// curve starts at the daily peak.
    pub day_secs: u64,
    /// Seconds between injected anomalies (0 turns them off), and how long each lasts.
    pub anomaly_every_secs: u64,
    pub anomaly_secs: u64,
}

impl Default for HttpSimConfig {
    fn default() -> Self {
        HttpSimConfig {
            base_url: "http://127.0.0.1:8080".into(),
            seed: 42,
            rps: 50.0,
            duration: Duration::from_secs(60),
            max_sessions: None,
            products: 200,
            customers: 500,
            fraud_rate: 0.02,
            concurrency: 16,
            day_secs: 86_400,
            anomaly_every_secs: 0,
            anomaly_secs: 60,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpSimError {
    #[error("cannot reach the storefront at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("setting up the simulated shop failed: {0}")]
    Setup(String),
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct HttpReport {
    pub sessions: u64,
    pub requests: u64,
    /// Responses by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer at all.
    pub transport_errors: u64,
    pub products_created: usize,
    pub orders_confirmed: u64,
    pub orders_cancelled: u64,
    /// Checkouts refused because the fraud team's blocklist holds the card or customer.
    pub checkouts_blocked: u64,
    pub revenue_minor: i64,
    pub elapsed: Duration,
    /// Every injected fraud case and anomaly, with the server's ids.
    pub labels: Vec<GroundTruth>,
}

/// Live counters, for a progress display.
#[derive(Debug, Default)]
pub struct HttpProgress {
    pub sessions: AtomicU64,
    pub requests: AtomicU64,
    pub orders: AtomicU64,
}

#[derive(Clone)]
struct ShopProduct {
    id: Uuid,
    category: &'static str,
    price_minor: i64,
}

struct SimCustomer {
    email: String,
    country: String,
    device_id: String,
    ip: String,
    card: String,
}

/// A signed-in account: its id and access token.
#[derive(Clone)]
struct Login {
    user_id: Uuid,
    token: String,
    at: Instant,
}

/// Paces requests to the configured rate, shaped by the day and a traffic spike.
struct Pacer {
    rps: f64,
    start: Instant,
    day_secs: f64,
    next: Mutex<Instant>,
    spike: AtomicBool,
}

impl Pacer {
    fn factor(&self) -> f64 {
        // Same curve as the direct mode, starting at the evening peak.
        let day = self.start.elapsed().as_secs_f64() / self.day_secs;
        let phase = day * std::f64::consts::TAU;
        let diurnal = 0.55 + 0.45 * phase.cos();
        diurnal
            * if self.spike.load(Ordering::Relaxed) {
                5.0
            } else {
                1.0
            }
    }

    async fn wait(&self) {
        let gap = Duration::from_secs_f64(1.0 / (self.rps * self.factor()).max(1e-3));
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + gap;
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

struct Sim {
    cfg: HttpSimConfig,
    http: reqwest::Client,
    pacer: Pacer,
    products: Vec<ShopProduct>,
    customers: Vec<SimCustomer>,
    logins: Mutex<HashMap<String, Login>>,
    ops: Login,
    progress: Arc<HttpProgress>,
    by_status: Mutex<BTreeMap<u16, u64>>,
    transport_errors: AtomicU64,
    confirmed: AtomicU64,
    cancelled: AtomicU64,
    blocked: AtomicU64,
    revenue: AtomicI64,
    labels: Mutex<Vec<GroundTruth>>,
    /// The category an injected stall keeps shoppers away from (index + 1; 0 for none).
    stalled: AtomicUsize,
}

/// One answer: status and JSON body (Null when there was none or it was not JSON).
struct Answer {
    status: u16,
    json: Value,
}

/// Who is calling: the client address, and a token when signed in.
#[derive(Clone)]
struct Caller<'a> {
    ip: &'a str,
    token: Option<&'a str>,
}

impl<'a> Caller<'a> {
    fn signed_in(ip: &'a str, login: &'a Login) -> Caller<'a> {
        Caller {
            ip,
            token: Some(&login.token),
        }
    }
}

impl Sim {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        who: &Caller<'_>,
        body: Option<Value>,
        headers: &[(&str, String)],
        paced: bool,
    ) -> Option<Answer> {
        if paced {
            self.pacer.wait().await;
        }
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.cfg.base_url))
            .header("x-forwarded-for", who.ip)
            .header("user-agent", "Shopstream-simulator/1");
        if let Some(t) = who.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.progress.requests.fetch_add(1, Ordering::Relaxed);
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                *self
                    .by_status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(status)
                    .or_default() += 1;
                let json = resp.json().await.unwrap_or(Value::Null);
                Some(Answer { status, json })
            }
            Err(e) => {
                tracing::debug!(path, error = %e, "simulated request failed");
                self.transport_errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    async fn get(&self, path: &str, who: &Caller<'_>) -> Option<Answer> {
        self.call(reqwest::Method::GET, path, who, None, &[], true)
            .await
    }

    async fn post(&self, path: &str, who: &Caller<'_>, body: Value) -> Option<Answer> {
        self.call(reqwest::Method::POST, path, who, Some(body), &[], true)
            .await
    }

    /// Registers (or finds) the account and signs in; 15-minute tokens are reused for 10.
    async fn login(&self, email: &str, country: &str, ip: &str, fresh: bool) -> Option<Login> {
        if !fresh
            && let Some(l) = self
                .logins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(email)
                .filter(|l| l.at.elapsed() < Duration::from_secs(600))
                .cloned()
        {
            return Some(l);
        }
        let anon = Caller { ip, token: None };
        let known = self
            .logins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(email);
        let mut new_account = false;
        if !known {
            // Registering first (409 when an earlier run made the account) keeps simulated
            // shoppers out of the failed-login counts that rate-limit real ones.
            let reg = json!({"email": email, "password": PASSWORD,
                "display_name": format!("Shopper {}", &email[..email.find('@').unwrap_or(0).min(12)]),
                "country": country});
            let created = self.post("/v1/auth/register", &anon, reg).await?;
            if created.status != 201 && created.status != 409 {
                return None;
            }
            new_account = created.status == 201;
        }
        let creds = json!({"email": email, "password": PASSWORD});
        let r = self.post("/v1/auth/login", &anon, creds).await?;
        if r.status != 200 {
            return None;
        }
        let token = r.json["access_token"].as_str()?.to_owned();
        let me = self
            .get(
                "/v1/auth/me",
                &Caller {
                    ip,
                    token: Some(&token),
                },
            )
            .await?;
        let user_id: Uuid = me.json["user_id"].as_str()?.parse().ok()?;
        if new_account {
            // A new shopper files a delivery address in their country.
            let n = user_id.as_u128() % 900 + 10;
            self.post(
                "/v1/users/me/addresses",
                &Caller {
                    ip,
                    token: Some(&token),
                },
                json!({"name": "Simulated Shopper", "line1": format!("{n} Market Street"),
                    "line2": null, "city": "Simtown", "postal_code": format!("{:05}", n * 37),
                    "country": country, "is_default": true}),
            )
            .await;
        }
        let l = Login {
            user_id,
            token,
            at: Instant::now(),
        };
        self.logins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(email.to_owned(), l.clone());
        Some(l)
    }

    /// Browser events through the clickstream intake; returns the session id to reuse.
    async fn track(
        &self,
        who: &Caller<'_>,
        session: Option<Uuid>,
        kind: &str,
        data: Value,
    ) -> Option<Uuid> {
        let headers: Vec<(&str, String)> = session
            .map(|s| vec![("x-session-id", s.to_string())])
            .unwrap_or_default();
        let r = self
            .call(
                reqwest::Method::POST,
                "/v1/events",
                who,
                Some(json!({"events": [{"type": kind, "data": data}]})),
                &headers,
                true,
            )
            .await?;
        r.json["session_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .or(session)
    }

    async fn add_to_cart(&self, who: &Caller<'_>, p: &ShopProduct, qty: u32) -> bool {
        self.post(
            "/v1/cart/items",
            who,
            json!({"product_id": p.id, "quantity": qty}),
        )
        .await
        .is_some_and(|r| r.status < 300)
    }

    /// The checkout saga; returns the order id when an order was made (confirmed or not).
    async fn checkout(
        &self,
        rng: &mut ChaCha8Rng,
        who: &Caller<'_>,
        card: &str,
        billing: &str,
        shipping: &str,
        device: &str,
    ) -> Option<Uuid> {
        let key = Uuid::from_u128(rng.random()).to_string();
        let r = self
            .call(
                reqwest::Method::POST,
                "/v1/checkout",
                who,
                Some(json!({"card_number": card, "billing_country": billing,
                    "shipping_country": shipping, "device_id": device})),
                &[("idempotency-key", key)],
                true,
            )
            .await?;
        match r.status {
            200 | 201 => {
                if r.json["status"] == "confirmed" {
                    self.confirmed.fetch_add(1, Ordering::Relaxed);
                    self.progress.orders.fetch_add(1, Ordering::Relaxed);
                    self.revenue.fetch_add(
                        r.json["total"]["amount_minor"].as_i64().unwrap_or(0),
                        Ordering::Relaxed,
                    );
                } else {
                    self.cancelled.fetch_add(1, Ordering::Relaxed);
                }
                r.json["order_id"].as_str().and_then(|s| s.parse().ok())
            }
            403 => {
                self.blocked.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => None,
        }
    }

    /// Adds a product to the cart and checks out; the order id when one was made.
    #[allow(clippy::too_many_arguments)]
    async fn buy(
        &self,
        rng: &mut ChaCha8Rng,
        who: &Caller<'_>,
        product: usize,
        qty: u32,
        card: &str,
        billing: &str,
        shipping: &str,
        device: &str,
    ) -> Option<Uuid> {
        let p = self.products[product].clone();
        self.add_to_cart(who, &p, qty).await;
        self.checkout(rng, who, card, billing, shipping, device)
            .await
    }

    /// A product index skewed to the front (Zipf-like popularity), outside a stalled category.
    fn popular(&self, rng: &mut ChaCha8Rng, power: i32) -> usize {
        let stalled = self.stalled.load(Ordering::Relaxed);
        let n = self.products.len();
        for _ in 0..20 {
            let u: f64 = rng.random();
            let i = ((u.powi(power) * n as f64) as usize).min(n - 1);
            if stalled == 0 || world::CATEGORIES[stalled - 1].0 != self.products[i].category {
                return i;
            }
        }
        rng.random_range(0..n)
    }

    fn pricey(&self, rng: &mut ChaCha8Rng, min_minor: i64) -> usize {
        for _ in 0..50 {
            let i = rng.random_range(0..self.products.len());
            if self.products[i].price_minor >= min_minor {
                return i;
            }
        }
        (0..self.products.len())
            .max_by_key(|i| self.products[*i].price_minor)
            .unwrap_or(0)
    }

    fn cheapest(&self) -> usize {
        (0..self.products.len())
            .min_by_key(|i| self.products[*i].price_minor)
            .unwrap_or(0)
    }

    /// An ordinary session: browse, search, view, maybe add to the cart, check out, review.
    async fn shop(&self, rng: &mut ChaCha8Rng) {
        let ci = {
            let u: f64 = rng.random();
            ((u.powf(1.5) * self.customers.len() as f64) as usize).min(self.customers.len() - 1)
        };
        let c = &self.customers[ci];
        let login = if rng.random_bool(0.7) {
            self.login(&c.email, &c.country, &c.ip, false).await
        } else {
            None
        };
        let who = Caller {
            ip: &c.ip,
            token: login.as_ref().map(|l| l.token.as_str()),
        };
        let mut session = None;
        let mut cart = Vec::new();
        for _ in 0..rng.random_range(1..8) {
            if rng.random_bool(0.25) {
                let category = world::CATEGORIES[rng.random_range(0..world::CATEGORIES.len())].0;
                let colour = world::COLOURS[rng.random_range(0..world::COLOURS.len())];
                let found = self
                    .get(&format!("/v1/products?category={category}&limit=20"), &who)
                    .await
                    .and_then(|r| r.json["items"].as_array().map(Vec::len))
                    .unwrap_or(0);
                session = self
                    .track(
                        &who,
                        session,
                        "search.performed.v1",
                        json!({"query": format!("{colour} {category}"), "category": category,
                            "results_count": found}),
                    )
                    .await;
            }
            let pi = self.popular(rng, 3);
            let p = self.products[pi].clone();
            self.get(&format!("/v1/products/{}", p.id), &who).await;
            session = self
                .track(
                    &who,
                    session,
                    "product.viewed.v1",
                    json!({"product_id": p.id, "device_id": c.device_id, "referrer": "search"}),
                )
                .await;
            if login.is_some() && rng.random_bool(0.25) {
                let qty = rng.random_range(1..3);
                if self.add_to_cart(&who, &p, qty).await {
                    cart.push(pi);
                }
            }
        }
        if cart.is_empty() || !rng.random_bool(0.6) {
            return; // browsed, or abandoned the cart
        }
        let card = if rng.random_bool(0.97) {
            c.card.clone()
        } else {
            declining_card(rng, "9995") // insufficient funds
        };
        let order = self
            .checkout(rng, &who, &card, &c.country, &c.country, &c.device_id)
            .await;
        if order.is_some() && rng.random_bool(0.1) {
            let p = &self.products[cart[0]];
            self.post(
                "/v1/reviews",
                &who,
                json!({"product_id": p.id, "rating": rng.random_range(3..=5),
                    "title": "Simulated review", "body": format!("Bought the {} one.", p.category)}),
            )
            .await;
        }
    }

    /// A new account for a fraud case, signed in from an address, device and card of its
    /// own: (ip, device, card number, login).
    async fn fraudster(
        &self,
        rng: &mut ChaCha8Rng,
        email: &str,
        country: &str,
    ) -> Option<(String, String, String, Login)> {
        let ip = world::sim_ip(rng);
        let device = format!("dev-{:012x}", rng.random::<u64>() >> 16);
        let card = luhn_card(rng);
        let login = self.login(email, country, &ip, true).await?;
        Some((ip, device, card, login))
    }

    /// One injected fraud case; its label names the accounts and orders it made.
    async fn inject(&self, rng: &mut ChaCha8Rng, kind: FraudKind, session_no: u64) {
        let from = Utc::now();
        let fresh = |k: u32| format!("sim{}-f{session_no}-{k}@fraud.invalid", self.cfg.seed);
        let new_ip = |rng: &mut ChaCha8Rng| world::sim_ip(rng);
        let new_device = |rng: &mut ChaCha8Rng| format!("dev-{:012x}", rng.random::<u64>() >> 16);
        let mut customers = Vec::new();
        let mut orders = Vec::new();
        let card = match kind {
            FraudKind::CardTesting => {
                let Some((ip, device, card, l)) = self.fraudster(rng, &fresh(0), "US").await else {
                    return;
                };
                customers.push(l.user_id);
                let who = Caller::signed_in(&ip, &l);
                let cheap = self.products[self.cheapest()].clone();
                self.add_to_cart(&who, &cheap, 1).await;
                for i in 0..rng.random_range(5..10) {
                    let test = declining_card(rng, DECLINE_CODES[i % DECLINE_CODES.len()]);
                    orders.extend(self.checkout(rng, &who, &test, "US", "US", &device).await);
                }
                let big = self.pricey(rng, 50_000);
                orders.extend(
                    self.buy(rng, &who, big, 2, &card, "US", "US", &device)
                        .await,
                );
                card
            }
            FraudKind::AccountTakeover => {
                let u: f64 = rng.random();
                let c = &self.customers
                    [((u * self.customers.len() as f64) as usize).min(self.customers.len() - 1)];
                // The account exists (made from its owner's address), then is taken over.
                let Some(owner) = self.login(&c.email, &c.country, &c.ip, false).await else {
                    return;
                };
                let (ip, device) = (new_ip(rng), new_device(rng));
                let Some(l) = self.login(&c.email, &c.country, &ip, true).await else {
                    return;
                };
                customers.push(owner.user_id);
                let who = Caller::signed_in(&ip, &l);
                let big = self.pricey(rng, 30_000);
                let ship_to = if c.country == "BR" { "NG" } else { "BR" };
                orders.extend(
                    self.buy(rng, &who, big, 1, &c.card, &c.country, ship_to, &device)
                        .await,
                );
                c.card.clone()
            }
            FraudKind::VelocityBurst => {
                let Some((ip, device, card, l)) = self.fraudster(rng, &fresh(0), "DE").await else {
                    return;
                };
                customers.push(l.user_id);
                let who = Caller::signed_in(&ip, &l);
                for _ in 0..rng.random_range(6..11) {
                    let p = self.popular(rng, 2);
                    orders.extend(self.buy(rng, &who, p, 1, &card, "DE", "DE", &device).await);
                }
                card
            }
            FraudKind::CountryMismatch => {
                let Some((ip, device, card, l)) = self.fraudster(rng, &fresh(0), "DE").await else {
                    return;
                };
                customers.push(l.user_id);
                let who = Caller::signed_in(&ip, &l);
                let p = self.pricey(rng, 10_000);
                orders.extend(self.buy(rng, &who, p, 1, &card, "BR", "US", &device).await);
                card
            }
            FraudKind::SharedCard => {
                let card = luhn_card(rng);
                let device = new_device(rng);
                for k in 0..rng.random_range(4..7) {
                    let ip = new_ip(rng);
                    let Some(l) = self.login(&fresh(k), "DE", &ip, true).await else {
                        continue;
                    };
                    customers.push(l.user_id);
                    let who = Caller::signed_in(&ip, &l);
                    let p = self.popular(rng, 2);
                    orders.extend(self.buy(rng, &who, p, 1, &card, "DE", "DE", &device).await);
                }
                card
            }
        };
        self.labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(GroundTruth::Fraud(Label {
                kind,
                customer_ids: customers,
                card_fingerprint: events::card_fingerprint(&card),
                order_ids: orders,
                from,
                to: Utc::now(),
            }));
    }

    async fn session(&self, n: u64) {
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.cfg.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if rng.random_bool(self.cfg.fraud_rate.clamp(0.0, 1.0)) {
            let kind = FraudKind::ALL[rng.random_range(0..FraudKind::ALL.len())];
            self.inject(&mut rng, kind, n).await;
        } else {
            self.shop(&mut rng).await;
        }
        self.progress.sessions.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs anomaly window k (what it does to the shop, then undoing it) and labels it.
    async fn anomaly(&self, k: u64) {
        let kind = AnomalyKind::ALL[(k % AnomalyKind::ALL.len() as u64) as usize];
        let length = Duration::from_secs(self.cfg.anomaly_secs.max(1));
        let ops = Caller {
            ip: "127.0.0.1",
            token: Some(&self.ops.token),
        };
        let from = Utc::now();
        let mut subject = None;
        match kind {
            AnomalyKind::TrafficSpike => {
                self.pacer.spike.store(true, Ordering::Relaxed);
                tokio::time::sleep(length).await;
                self.pacer.spike.store(false, Ordering::Relaxed);
            }
            AnomalyKind::GatewayOutage => {
                self.call(
                    reqwest::Method::POST,
                    "/v1/payments/simulator/outage",
                    &ops,
                    Some(json!({"seconds": length.as_secs()})),
                    &[],
                    false,
                )
                .await;
                tokio::time::sleep(length).await;
            }
            AnomalyKind::PricingGlitch => {
                let p = self.products[(k as usize * 7 + 3) % self.products.len().min(50)].clone();
                let price =
                    |minor: i64| json!({"price": {"amount_minor": minor, "currency": "EUR"}});
                let path = format!("/v1/products/{}", p.id);
                let glitch = (p.price_minor / 100).max(1);
                self.call(
                    reqwest::Method::PATCH,
                    &path,
                    &ops,
                    Some(price(glitch)),
                    &[],
                    false,
                )
                .await;
                tokio::time::sleep(length).await;
                self.call(
                    reqwest::Method::PATCH,
                    &path,
                    &ops,
                    Some(price(p.price_minor)),
                    &[],
                    false,
                )
                .await;
                subject = Some(p.id.to_string());
            }
            AnomalyKind::StalledCategory => {
                let ci = (k as usize * 3) % world::CATEGORIES.len();
                self.stalled.store(ci + 1, Ordering::Relaxed);
                tokio::time::sleep(length).await;
                self.stalled.store(0, Ordering::Relaxed);
                subject = Some(world::CATEGORIES[ci].0.to_owned());
            }
        }
        self.labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(GroundTruth::Anomaly(AnomalyLabel {
                kind,
                from,
                to: Utc::now(),
                subject,
            }));
    }
}

/// `digits` with the one at `free` chosen so that the number passes the Luhn check.
fn with_luhn_digit(mut digits: Vec<u8>, free: usize) -> String {
    for d in b'0'..=b'9' {
        digits[free] = d;
        if events::luhn_valid(std::str::from_utf8(&digits).unwrap_or_default()) {
            break;
        }
    }
    String::from_utf8(digits).unwrap_or_default()
}

/// A Luhn-valid 16-digit card number the gateway simulator approves.
fn luhn_card(rng: &mut ChaCha8Rng) -> String {
    let digits: Vec<u8> = std::iter::once(b'5')
        .chain((0..14).map(|_| b'0' + rng.random_range(0..10u8)))
        .chain(std::iter::once(b'0'))
        .collect();
    with_luhn_digit(digits, 15)
}

/// A Luhn-valid test card (BIN 400000) ending in `last4`, which the gateway simulator
/// declines: the middle digits are random, one of them chosen to satisfy Luhn.
fn declining_card(rng: &mut ChaCha8Rng, last4: &str) -> String {
    let digits: Vec<u8> = b"400000"
        .iter()
        .copied()
        .chain((0..6).map(|_| b'0' + rng.random_range(0..10u8)))
        .chain(last4.bytes())
        .collect();
    with_luhn_digit(digits, 11)
}

/// The world's customers as HTTP shoppers: accounts, addresses, devices and their own cards.
fn shoppers(seed: u64, world: &World) -> Vec<SimCustomer> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xCA5D);
    world
        .customers
        .iter()
        .enumerate()
        .map(|(i, c)| SimCustomer {
            email: format!("sim{seed}-c{i}@customers.invalid"),
            country: c.country.as_str().to_owned(),
            device_id: c.device_id.clone(),
            ip: c.ip.clone(),
            card: luhn_card(&mut rng),
        })
        .collect()
}

/// Sets up the shop (accounts, products, stock), then runs sessions until the duration or
/// session count is reached. `grant(email, roles)` gives an existing account its roles;
/// `on_setup(done, of)` reports product setup progress.
pub async fn run_http(
    cfg: HttpSimConfig,
    grant: impl AsyncFn(&str, &[&str]) -> Result<(), String>,
    progress: Arc<HttpProgress>,
    on_setup: impl Fn(usize, usize),
) -> Result<HttpReport, HttpSimError> {
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(cfg.concurrency.max(1) * 2)
        .build()
        .map_err(|e| HttpSimError::Setup(e.to_string()))?;
    http.get(format!("{}/v1/products?limit=1", cfg.base_url))
        .send()
        .await
        .map_err(|source| HttpSimError::Unreachable {
            url: cfg.base_url.clone(),
            source,
        })?;
    let world = World::generate(
        &mut ChaCha8Rng::seed_from_u64(cfg.seed),
        cfg.products.max(1),
        cfg.customers.max(1),
        0,
    );
    let mut sim = Sim {
        http,
        pacer: Pacer {
            rps: cfg.rps.max(0.1),
            start: Instant::now(),
            day_secs: cfg.day_secs.max(1) as f64,
            next: Mutex::new(Instant::now()),
            spike: AtomicBool::new(false),
        },
        products: Vec::new(),
        customers: shoppers(cfg.seed, &world),
        logins: Mutex::new(HashMap::new()),
        ops: Login {
            user_id: Uuid::nil(),
            token: String::new(),
            at: Instant::now(),
        },
        progress: progress.clone(),
        by_status: Mutex::new(BTreeMap::new()),
        transport_errors: AtomicU64::new(0),
        confirmed: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
        blocked: AtomicU64::new(0),
        revenue: AtomicI64::new(0),
        labels: Mutex::new(Vec::new()),
        stalled: AtomicUsize::new(0),
        cfg,
    };
    let created = setup(&mut sim, &world, &grant, &on_setup).await?;
    let sim = Arc::new(sim);
    sim.pacer.next.lock().map(|mut n| *n = Instant::now()).ok();

    let deadline = tokio::time::Instant::now() + sim.cfg.duration;
    let next_session = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..sim.cfg.concurrency.max(1) {
        let (sim, next) = (sim.clone(), next_session.clone());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if tokio::time::Instant::now() >= deadline
                    || sim.cfg.max_sessions.is_some_and(|m| n >= m)
                {
                    return;
                }
                sim.session(n).await;
            }
        });
    }
    let anomalies = {
        let sim = sim.clone();
        tokio::spawn(async move {
            let every = sim.cfg.anomaly_every_secs;
            if every == 0 {
                return;
            }
            let start = tokio::time::Instant::now();
            for k in 0.. {
                let at = start + Duration::from_secs(every * (k + 1));
                if at >= deadline {
                    return;
                }
                tokio::time::sleep_until(at).await;
                sim.anomaly(k).await;
            }
        })
    };
    while workers.join_next().await.is_some() {}
    anomalies.abort();
    let _ = anomalies.await;

    let by_status = sim
        .by_status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(HttpReport {
        sessions: progress.sessions.load(Ordering::Relaxed),
        requests: progress.requests.load(Ordering::Relaxed),
        by_status,
        transport_errors: sim.transport_errors.load(Ordering::Relaxed),
        products_created: created,
        orders_confirmed: sim.confirmed.load(Ordering::Relaxed),
        orders_cancelled: sim.cancelled.load(Ordering::Relaxed),
        checkouts_blocked: sim.blocked.load(Ordering::Relaxed),
        revenue_minor: sim.revenue.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        labels: std::mem::take(&mut *sim.labels.lock().unwrap_or_else(|e| e.into_inner())),
    })
}

/// Accounts with the roles the set-up needs, the world's products (created where missing)
/// and their stock. Returns how many products were created.
async fn setup(
    sim: &mut Sim,
    world: &World,
    grant: &impl AsyncFn(&str, &[&str]) -> Result<(), String>,
    on_setup: &impl Fn(usize, usize),
) -> Result<usize, HttpSimError> {
    let fail = |what: &str, r: Option<Answer>| {
        HttpSimError::Setup(match r {
            Some(a) => format!("{what}: HTTP {} {}", a.status, a.json),
            None => format!("{what}: no answer"),
        })
    };
    let local = "127.0.0.1";
    let mut accounts: Vec<(String, &[&str])> =
        vec![("simulator-ops@simulator.invalid".into(), &["admin"])];
    for v in 0..VENDORS {
        accounts.push((
            format!("simulator-vendor{v}@simulator.invalid"),
            &["vendor"],
        ));
    }
    let mut tokens = Vec::new();
    for (email, roles) in accounts {
        sim.login(&email, "DE", local, true)
            .await
            .ok_or_else(|| HttpSimError::Setup(format!("could not register {email}")))?;
        grant(&email, roles)
            .await
            .map_err(|e| HttpSimError::Setup(format!("granting {roles:?} to {email}: {e}")))?;
        // Roles are in the token: sign in again after the grant.
        let l = sim
            .login(&email, "DE", local, true)
            .await
            .ok_or_else(|| HttpSimError::Setup(format!("could not sign in as {email}")))?;
        tokens.push(l);
    }
    sim.ops = tokens.remove(0);

    // What exists already (an earlier run with this seed made it).
    let mut existing: HashMap<String, (Uuid, String, i64)> = HashMap::new();
    // Products that already have a picture.
    let mut pictured: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let anon = Caller {
        ip: local,
        token: None,
    };
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/products?limit=100&cursor={c}"),
            None => "/v1/products?limit=100".into(),
        };
        let r = sim
            .call(reqwest::Method::GET, &path, &anon, None, &[], false)
            .await;
        let Some(page) = r.filter(|a| a.status == 200) else {
            return Err(fail("listing products", None));
        };
        for p in page.json["items"].as_array().into_iter().flatten() {
            if let (Some(sku), Some(id), Some(cat), Some(price)) = (
                p["sku"].as_str(),
                p["id"].as_str().and_then(|s| s.parse().ok()),
                p["category"].as_str(),
                p["price"]["amount_minor"].as_i64(),
            ) {
                if p["images"].as_array().is_some_and(|i| !i.is_empty()) {
                    pictured.insert(id);
                }
                existing.insert(sku.to_owned(), (id, cat.to_owned(), price));
            }
        }
        cursor = page.json["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }

    let mut created = 0;
    let n = world.products.len();
    // What each world product became: its id and category (None when skipped).
    let mut made: Vec<Option<(Uuid, &'static str)>> = Vec::with_capacity(n);
    for (i, p) in world.products.iter().enumerate() {
        let sku = p.sku.as_str().to_owned();
        // Vendors own runs of three products; a run's later products of the same category
        // are variants of its first (another colour or pattern of the same item).
        let vendor = &tokens[(i / 3) % tokens.len()];
        let variant_of = made
            .get(i / 3 * 3)
            .copied()
            .flatten()
            .filter(|first| i % 3 != 0 && first.1 == p.category)
            .map(|first| first.0);
        let who = Caller {
            ip: local,
            token: Some(&vendor.token),
        };
        let (id, price_minor, fresh) = match existing.get(&sku) {
            Some((id, cat, price)) if cat == p.category => (*id, *price, false),
            // Same SKU, other category: an earlier run with another seed; leave it.
            Some(_) => {
                made.push(None);
                continue;
            }
            None => {
                let body = json!({
                    "sku": sku, "category": p.category,
                    "names": {"en": format!("{} {} {}", p.colour, p.pattern, p.category),
                              "de": format!("{} {} {}", p.colour, p.pattern, p.category)},
                    "descriptions": {"en": format!("A {} {} item from the {} range.", p.colour, p.pattern, p.category)},
                    "attributes": {"colour": p.colour, "pattern": p.pattern},
                    "price": p.price, "weight_grams": p.weight_grams, "variant_of": variant_of,
                });
                let r = sim
                    .call(
                        reqwest::Method::POST,
                        "/v1/products",
                        &who,
                        Some(body),
                        &[],
                        false,
                    )
                    .await;
                let id = r
                    .as_ref()
                    .filter(|a| a.status == 201)
                    .and_then(|a| a.json["id"].as_str())
                    .and_then(|s| s.parse().ok());
                let Some(id) = id else {
                    return Err(fail(&format!("creating product {sku}"), r));
                };
                created += 1;
                (id, p.price.amount_minor, true)
            }
        };
        if !pictured.contains(&id) {
            // Its picture, for visual search (the same one `simulate --images` writes).
            let png = crate::simulate::images::png(p, sim.cfg.seed)
                .map_err(|e| HttpSimError::Setup(format!("drawing {sku}: {e}")))?;
            let up = sim
                .http
                .post(format!("{}/v1/products/{id}/images", sim.cfg.base_url))
                .bearer_auth(&vendor.token)
                .header("x-forwarded-for", local)
                .header("content-type", "image/png")
                .body(png)
                .send()
                .await;
            match up {
                Ok(r) if r.status().as_u16() == 201 => {}
                Ok(r) => {
                    return Err(HttpSimError::Setup(format!(
                        "uploading the picture of {sku}: HTTP {}",
                        r.status()
                    )));
                }
                Err(e) => {
                    return Err(HttpSimError::Setup(format!(
                        "uploading the picture of {sku}: {e}"
                    )));
                }
            }
        }
        let stock = if fresh {
            0
        } else {
            sim.call(
                reqwest::Method::GET,
                &format!("/v1/inventory/{sku}"),
                &who,
                None,
                &[],
                false,
            )
            .await
            .and_then(|a| a.json["available"].as_i64())
            .unwrap_or(0)
        };
        if stock < 5_000 {
            let r = sim
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/inventory/{sku}/adjust"),
                    &who,
                    Some(json!({"delta": 10_000 - stock, "reason": "simulator stock"})),
                    &[],
                    false,
                )
                .await;
            if r.as_ref().is_none_or(|a| a.status >= 300) {
                return Err(fail(&format!("stocking {sku}"), r));
            }
        }
        made.push(Some((id, p.category)));
        sim.products.push(ShopProduct {
            id,
            category: p.category,
            price_minor,
        });
        on_setup(i + 1, n);
    }
    if sim.products.is_empty() {
        return Err(HttpSimError::Setup(
            "no products to sell: every SKU of this seed exists with another category".into(),
        ));
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_cards_pass_luhn_and_repeat_with_the_seed() {
        let mut a = ChaCha8Rng::seed_from_u64(7);
        let mut b = ChaCha8Rng::seed_from_u64(7);
        for i in 0..200 {
            let card = luhn_card(&mut a);
            assert_eq!(card, luhn_card(&mut b));
            assert_eq!(card.len(), 16);
            assert!(events::luhn_valid(&card), "{card}");
            assert!(!card.starts_with("400000") && !card.starts_with("410000"));
            let code = DECLINE_CODES[i % DECLINE_CODES.len()];
            let test = declining_card(&mut a, code);
            assert_eq!(test, declining_card(&mut b, code));
            assert!(events::luhn_valid(&test), "{test}");
            assert!(test.starts_with("400000") && test.ends_with(code), "{test}");
        }
        // The known examples pass the same check.
        assert!(events::luhn_valid("4000000000000002"));
        assert!(!events::luhn_valid("4000000000000003"));
    }

    #[test]
    fn shoppers_are_the_same_for_the_same_seed() {
        let w = World::generate(&mut ChaCha8Rng::seed_from_u64(3), 10, 20, 0);
        let a = shoppers(3, &w);
        let b = shoppers(3, &w);
        assert_eq!(
            a.iter().map(|c| (&c.email, &c.card)).collect::<Vec<_>>(),
            b.iter().map(|c| (&c.email, &c.card)).collect::<Vec<_>>()
        );
        let w4 = World::generate(&mut ChaCha8Rng::seed_from_u64(4), 10, 20, 0);
        assert_ne!(a[0].card, shoppers(4, &w4)[0].card);
    }
}
