//! Storefront sessions over a simulated clock, with fraud injected at a configured rate.
//! The generator is an endless iterator of envelopes: first the catalog and the customers,
//! then sessions. Event times follow a diurnal rate curve; ids come from the seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, TimeZone, Timelike, Utc};
use events::domain::cart::{CartItemAdded, CheckoutStarted};
use events::domain::catalog::{Attribute, PriceChanged, ProductCreated, ProductStatus};
use events::domain::clickstream::{ProductViewed, SearchPerformed};
use events::domain::orders::{
    CancelReason, CardRef, OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced,
};
use events::domain::payments::{DeclineReason, PaymentAuthorized, PaymentFailed};
use events::domain::shipping::ShipmentCreated;
use events::domain::users::{Role, UserLoggedIn, UserRegistered};
use events::{Country, Currency, Envelope, Event, Money, Quantity};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use crate::simulate::fraud::{AnomalyKind, AnomalyLabel, FraudKind, GroundTruth, Label};
use crate::simulate::world::{self, Card, Customer, World, sim_uuid};

const SOURCE: &str = "/shopstream/simulator";

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub products: usize,
    pub customers: usize,
    /// Simulated start of the traffic.
    pub start: DateTime<Utc>,
    /// Mean sessions per simulated second at the daily peak.
    pub sessions_per_sec: f64,
    /// Chance that a session is a fraud injection instead.
    pub fraud_rate: f64,
    /// Simulated time between injected anomalies (0 turns them off).
    pub anomaly_every_secs: u64,
    /// How long an injected anomaly lasts, in simulated seconds.
    pub anomaly_secs: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            products: 2_000,
            customers: 20_000,
            start: Utc
                .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            sessions_per_sec: 20.0,
            fraud_rate: 0.01,
            anomaly_every_secs: 3 * 3600,
            anomaly_secs: 10 * 60,
        }
    }
}

pub struct Generator {
    cfg: SimConfig,
    rng: ChaCha8Rng,
    world: World,
    /// Start of the newest session: sessions arrive in order, their events overlap.
    clock_ms: u64,
    /// Time inside the session being written.
    cursor_ms: u64,
    /// Events written but not yet due, earliest first.
    queue: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    labels: Vec<GroundTruth>,
    /// Start of the simulation (anomaly windows are laid out from it).
    start_ms: u64,
    /// The anomaly window whose start has been announced and whose end has not.
    open_window: Option<u64>,
}

/// One scheduled anomaly window.
#[derive(Debug, Clone, Copy)]
struct Window {
    k: u64,
    kind: AnomalyKind,
    from_ms: u64,
    to_ms: u64,
}

/// An event waiting for its time; ties keep the order they were written in.
struct Pending {
    at_ms: u64,
    seq: u64,
    envelope: Envelope,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ms, self.seq) == (other.at_ms, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_ms, self.seq).cmp(&(other.at_ms, other.seq))
    }
}

/// How an order's payment goes.
enum Payment {
    Approved,
    Declined(DeclineReason),
}

impl Generator {
    pub fn new(cfg: SimConfig) -> Generator {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let clock_ms = cfg.start.timestamp_millis().max(0) as u64;
        let world = World::generate(
            &mut rng,
            cfg.products.max(1),
            cfg.customers.max(1),
            clock_ms,
        );
        let mut g = Generator {
            cfg,
            rng,
            world,
            clock_ms,
            cursor_ms: clock_ms,
            queue: BinaryHeap::new(),
            seq: 0,
            labels: Vec::new(),
            start_ms: clock_ms,
            open_window: None,
        };
        g.seed_world();
        g
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    /// Ground truth of the fraud and anomalies injected so far (taken, so each is reported
    /// once; an anomaly is reported when it ends).
    pub fn take_labels(&mut self) -> Vec<GroundTruth> {
        std::mem::take(&mut self.labels)
    }

    /// Anomalies follow a fixed schedule: window k starts `every * (k + 1)` after the start,
    /// lasts `anomaly_secs`, and the kinds take turns, so every run shows each kind and any
    /// moment can be judged exactly, even for sessions written before the window opened.
    fn window(&self, k: u64) -> Window {
        let every = self.cfg.anomaly_every_secs * 1000;
        let from_ms = self.start_ms + every * (k + 1);
        Window {
            k,
            kind: AnomalyKind::ALL[(k % AnomalyKind::ALL.len() as u64) as usize],
            from_ms,
            to_ms: from_ms + (self.cfg.anomaly_secs * 1000).min(every),
        }
    }

    fn window_at(&self, ms: u64) -> Option<Window> {
        let every = self.cfg.anomaly_every_secs * 1000;
        if every == 0 || ms < self.start_ms + every {
            return None;
        }
        let w = self.window((ms - self.start_ms) / every - 1);
        (ms < w.to_ms).then_some(w)
    }

    fn active_at(&self, ms: u64, kind: AnomalyKind) -> Option<Window> {
        self.window_at(ms).filter(|w| w.kind == kind)
    }

    /// The product a pricing glitch hits: one of the popular ones.
    fn glitch_product(&self, k: u64) -> usize {
        (k as usize * 7 + 3) % self.world.products.len().min(50)
    }

    fn stalled_category(k: u64) -> &'static str {
        world::CATEGORIES[(k as usize * 3) % world::CATEGORIES.len()].0
    }

    fn glitch_price(price: Money) -> Money {
        Money::new((price.amount_minor / 100).max(1), price.currency)
    }

    /// Announces window starts and ends as sessions pass them: price events for glitches,
    /// and the ground-truth label once a window is over.
    fn tick_anomalies(&mut self) {
        if let Some(k) = self.open_window {
            let w = self.window(k);
            if self.clock_ms >= w.to_ms {
                self.open_window = None;
                let mut subject = None;
                if w.kind == AnomalyKind::PricingGlitch {
                    let pi = self.glitch_product(k);
                    let real = self.world.products[pi].price;
                    self.price_changed(pi, Self::glitch_price(real), real, "glitch corrected");
                    subject = Some(self.world.products[pi].id.to_string());
                }
                if w.kind == AnomalyKind::StalledCategory {
                    subject = Some(Self::stalled_category(k).to_owned());
                }
                let at = |ms: u64| {
                    Utc.timestamp_millis_opt(ms as i64)
                        .single()
                        .unwrap_or_default()
                };
                self.labels.push(GroundTruth::Anomaly(AnomalyLabel {
                    kind: w.kind,
                    from: at(w.from_ms),
                    to: at(w.to_ms),
                    subject,
                }));
            }
        }
        if self.open_window.is_none()
            && let Some(w) = self.window_at(self.clock_ms)
        {
            self.open_window = Some(w.k);
            if w.kind == AnomalyKind::PricingGlitch {
                let pi = self.glitch_product(w.k);
                let real = self.world.products[pi].price;
                self.price_changed(pi, real, Self::glitch_price(real), "bulk price import");
            }
        }
    }

    fn price_changed(&mut self, pi: usize, old_price: Money, new_price: Money, reason: &str) {
        let p = self.world.products[pi].clone();
        self.emit(PriceChanged {
            product_id: p.id,
            sku: p.sku,
            old_price,
            new_price,
            reason: reason.into(),
        });
    }

    fn time(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.cursor_ms as i64)
            .single()
            .unwrap_or_default()
    }

    fn emit(&mut self, event: impl Into<Event>) {
        let event = event.into();
        let id = sim_uuid(&mut self.rng, self.cursor_ms);
        self.seq += 1;
        self.queue.push(Reverse(Pending {
            at_ms: self.cursor_ms,
            seq: self.seq,
            envelope: Envelope {
                id,
                source: SOURCE.into(),
                time: self.time(),
                subject: Some(event.key()),
                traceparent: None,
                event,
            },
        }));
    }

    fn id(&mut self) -> Uuid {
        sim_uuid(&mut self.rng, self.cursor_ms)
    }

    /// Moves the current session's time on by `min..max` seconds.
    fn wait(&mut self, min_s: f64, max_s: f64) {
        let s: f64 = self.rng.random_range(min_s..max_s);
        self.cursor_ms += (s * 1000.0) as u64;
    }

    fn seed_world(&mut self) {
        let products = self.world.products.clone();
        for p in products {
            self.emit(ProductCreated {
                product_id: p.id,
                sku: p.sku.clone(),
                vendor_id: p.vendor_id,
                category: p.category.into(),
                title: format!("{} {} {}", p.colour, p.pattern, p.category),
                price: p.price,
                weight_grams: p.weight_grams,
                attributes: vec![
                    Attribute {
                        name: "colour".into(),
                        value: p.colour.into(),
                    },
                    Attribute {
                        name: "pattern".into(),
                        value: p.pattern.into(),
                    },
                ],
                status: ProductStatus::Active,
            });
        }
        // The regulars are existing accounts: registered months or years before the traffic.
        let customers = self.world.customers.clone();
        for c in customers {
            let days = self.rng.random_range(30..1_500);
            self.register(&c, self.time() - chrono::Duration::days(days));
        }
    }

    fn register(&mut self, c: &Customer, registered_at: DateTime<Utc>) {
        self.emit(UserRegistered {
            user_id: c.id,
            email: format!("{}@customers.invalid", c.id.simple()),
            display_name: format!("Customer {}", &c.id.simple().to_string()[..8]),
            country: c.country.clone(),
            role: Role::Customer,
            registered_at,
        });
    }

    /// Index skewed to the front: a few customers and products are far more popular.
    fn skewed(&mut self, n: usize, power: i32) -> usize {
        let u: f64 = self.rng.random();
        ((u.powi(power) * n as f64) as usize).min(n - 1)
    }

    /// Sessions per second now: a daily curve, lowest around 4 am, highest in the evening.
    fn rate(&self) -> f64 {
        let hour = self.time().hour() as f64;
        let phase = (hour - 4.0) / 24.0 * std::f64::consts::TAU;
        let spike = if self
            .active_at(self.clock_ms, AnomalyKind::TrafficSpike)
            .is_some()
        {
            5.0
        } else {
            1.0
        };
        self.cfg.sessions_per_sec * (0.55 - 0.45 * phase.cos()) * spike
    }

    fn next_session(&mut self) {
        self.cursor_ms = self.clock_ms;
        self.tick_anomalies();
        let gap: f64 = -self.rng.random::<f64>().max(1e-12).ln() / self.rate().max(1e-6);
        self.clock_ms += (gap * 1000.0) as u64;
        self.cursor_ms = self.clock_ms;
        if self.rng.random_bool(self.cfg.fraud_rate.clamp(0.0, 1.0)) {
            let kind = FraudKind::ALL[self.rng.random_range(0..FraudKind::ALL.len())];
            self.inject(kind);
        } else {
            self.shop();
        }
    }

    /// An ordinary session: browse, search, maybe buy.
    fn shop(&mut self) {
        // Repeat customers, mildly skewed: the most loyal customer has a few visits a day, not
        // dozens an hour (which would make every regular look like a velocity fraud).
        let ci = {
            let u: f64 = self.rng.random();
            ((u.powf(1.5) * self.world.customers.len() as f64) as usize)
                .min(self.world.customers.len() - 1)
        };
        let c = self.world.customers[ci].clone();
        let session = self.id();
        if self.rng.random_bool(0.7) {
            self.emit(UserLoggedIn {
                user_id: c.id,
                session_id: session,
                ip: c.ip.clone(),
                device_id: c.device_id.clone(),
                user_agent: Some("Shopstream/web".into()),
            });
        }
        let mut cart = Vec::new();
        for view in 0..self.rng.random_range(1..8) {
            // The first page is seen at the session's start; the next ones a while later.
            if view > 0 {
                self.wait(2.0, 40.0);
            }
            if self.rng.random_bool(0.25) {
                let category =
                    world::CATEGORIES[self.rng.random_range(0..world::CATEGORIES.len())].0;
                let colour = world::COLOURS[self.rng.random_range(0..world::COLOURS.len())];
                let results_count = self.rng.random_range(0..200);
                self.emit(SearchPerformed {
                    session_id: session,
                    user_id: Some(c.id),
                    query: format!("{colour} {category}"),
                    category: Some(category.into()),
                    results_count,
                });
            }
            let mut pi = self.skewed(self.world.products.len(), 3);
            let stalled = self
                .active_at(self.clock_ms, AnomalyKind::StalledCategory)
                .map(|w| Self::stalled_category(w.k));
            while stalled == Some(self.world.products[pi].category) {
                pi = self.rng.random_range(0..self.world.products.len());
            }
            let p = self.world.products[pi].clone();
            self.emit(ProductViewed {
                session_id: session,
                user_id: Some(c.id),
                product_id: p.id,
                device_id: c.device_id.clone(),
                referrer: Some("search".into()),
            });
            if self.rng.random_bool(0.25) {
                let qty = Quantity::new(self.rng.random_range(1..3)).unwrap_or(Quantity::MIN);
                self.emit(CartItemAdded {
                    cart_id: c.id,
                    session_id: session,
                    user_id: Some(c.id),
                    product_id: p.id,
                    sku: p.sku.clone(),
                    quantity: qty,
                    unit_price: p.price,
                });
                cart.push((pi, qty));
            }
        }
        if cart.is_empty() || !self.rng.random_bool(0.6) {
            return; // browsed, or abandoned the cart
        }
        self.wait(10.0, 120.0);
        let payment = if self.rng.random_bool(0.97) {
            Payment::Approved
        } else {
            Payment::Declined(DeclineReason::InsufficientFunds)
        };
        let card = c.card.clone();
        let country = c.country.clone();
        self.order(
            &c,
            session,
            &cart,
            &card,
            &country,
            &c.ip.clone(),
            &c.device_id.clone(),
            payment,
        );
    }

    /// Checkout, order, payment and (if paid) confirmation and shipment; returns the order id.
    #[allow(clippy::too_many_arguments)]
    fn order(
        &mut self,
        c: &Customer,
        session: Uuid,
        lines: &[(usize, Quantity)],
        card: &Card,
        ship_to: &Country,
        ip: &str,
        device: &str,
        payment: Payment,
    ) -> Uuid {
        let order_id = self.id();
        let (lines_at_checkout, weight) = self.price_lines(lines);
        let shipping = Money::new(495, Currency::EUR);
        let checkout_total: i64 = lines_at_checkout
            .iter()
            .map(|l| l.unit_price.amount_minor * i64::from(l.quantity.get()))
            .sum();
        let checkout_id = self.id();
        self.emit(CheckoutStarted {
            checkout_id,
            cart_id: c.id,
            session_id: session,
            user_id: c.id,
            item_count: lines.iter().map(|l| l.1.get()).sum(),
            total: Money::new(checkout_total + shipping.amount_minor, Currency::EUR),
        });
        self.wait(1.0, 5.0);
        // Priced again when the order is placed: a pricing glitch may have begun meanwhile.
        let (order_lines, _) = self.price_lines(lines);
        let subtotal = Money::new(
            order_lines
                .iter()
                .map(|l| l.unit_price.amount_minor * i64::from(l.quantity.get()))
                .sum(),
            Currency::EUR,
        );
        let total = Money::new(subtotal.amount_minor + shipping.amount_minor, Currency::EUR);
        self.emit(OrderPlaced {
            order_id,
            customer_id: c.id,
            lines: order_lines,
            subtotal,
            discount: Money::new(0, Currency::EUR),
            shipping,
            tax: Money::new(0, Currency::EUR),
            total,
            coupon: None,
            card: CardRef {
                fingerprint: card.fingerprint.clone(),
                bin: card.bin.clone(),
                last4: card.last4.clone(),
                country: card.country.clone(),
            },
            billing_country: c.country.clone(),
            shipping_country: ship_to.clone(),
            ip: ip.into(),
            device_id: device.into(),
        });
        self.wait(0.2, 2.0);
        // During a gateway outage most payments fail, whatever the card.
        let payment = match payment {
            Payment::Approved
                if self
                    .active_at(self.cursor_ms, AnomalyKind::GatewayOutage)
                    .is_some()
                    && self.rng.random_bool(0.8) =>
            {
                Payment::Declined(DeclineReason::GatewayUnavailable)
            }
            other => other,
        };
        let payment_id = self.id();
        match payment {
            Payment::Approved => {
                let auth_code = format!("A{:06}", self.rng.random_range(0..1_000_000));
                let tracking_number =
                    format!("SIM{:09}", self.rng.random_range(0..1_000_000_000u32));
                self.emit(PaymentAuthorized {
                    payment_id,
                    order_id,
                    customer_id: c.id,
                    amount: total,
                    gateway: "simulator".into(),
                    card_fingerprint: card.fingerprint.clone(),
                    auth_code,
                });
                let shipment_id = self.id();
                self.emit(ShipmentCreated {
                    shipment_id,
                    order_id,
                    customer_id: c.id,
                    carrier: "carrier-simulator".into(),
                    service_level: "standard".into(),
                    destination_country: ship_to.clone(),
                    zone: if ship_to.as_str() == "DE" { 1 } else { 3 },
                    weight_grams: weight,
                    cost: shipping,
                    tracking_number,
                });
                self.emit(OrderConfirmed {
                    order_id,
                    customer_id: c.id,
                    payment_id,
                    shipment_id,
                    total,
                });
            }
            Payment::Declined(reason) => {
                self.emit(PaymentFailed {
                    payment_id,
                    order_id,
                    customer_id: c.id,
                    amount: total,
                    gateway: "simulator".into(),
                    card_fingerprint: card.fingerprint.clone(),
                    reason,
                });
                self.emit(OrderCancelled {
                    order_id,
                    customer_id: c.id,
                    reason: if reason == DeclineReason::GatewayUnavailable {
                        CancelReason::PaymentGatewayUnavailable
                    } else {
                        CancelReason::PaymentDeclined
                    },
                    detail: Some(format!("{reason:?}")),
                });
            }
        }
        order_id
    }

    /// Order lines at the prices in force now (a glitched product at 1 %), and their weight.
    fn price_lines(&self, lines: &[(usize, Quantity)]) -> (Vec<OrderLine>, u32) {
        let glitched = self
            .active_at(self.cursor_ms, AnomalyKind::PricingGlitch)
            .map(|w| self.glitch_product(w.k));
        let mut weight = 0;
        let out = lines
            .iter()
            .map(|(pi, qty)| {
                let p = &self.world.products[*pi];
                weight += p.weight_grams * qty.get();
                OrderLine {
                    product_id: p.id,
                    sku: p.sku.clone(),
                    quantity: *qty,
                    unit_price: if glitched == Some(*pi) {
                        Self::glitch_price(p.price)
                    } else {
                        p.price
                    },
                }
            })
            .collect();
        (out, weight)
    }

    /// A product index whose unit price is at least `min_minor` (the most expensive if none).
    fn pricey(&mut self, min_minor: i64) -> usize {
        for _ in 0..50 {
            let i = self.rng.random_range(0..self.world.products.len());
            if self.world.products[i].price.amount_minor >= min_minor {
                return i;
            }
        }
        (0..self.world.products.len())
            .max_by_key(|i| self.world.products[*i].price.amount_minor)
            .unwrap_or(0)
    }

    fn cheapest(&self) -> usize {
        (0..self.world.products.len())
            .min_by_key(|i| self.world.products[*i].price.amount_minor)
            .unwrap_or(0)
    }

    fn inject(&mut self, kind: FraudKind) {
        let from = self.time();
        let one = Quantity::MIN;
        let (customers, card, orders) = match kind {
            FraudKind::CardTesting => {
                let mut c = self.new_customer();
                let card = world::card(&mut self.rng, world::country("US"));
                c.card = card.clone();
                let session = self.id();
                let (ip, device) = (c.ip.clone(), c.device_id.clone());
                let mut orders = Vec::new();
                let cheap = self.cheapest();
                for _ in 0..self.rng.random_range(5..10) {
                    self.wait(5.0, 20.0);
                    let country = c.country.clone();
                    orders.push(self.order(
                        &c,
                        session,
                        &[(cheap, one)],
                        &card,
                        &country,
                        &ip,
                        &device,
                        Payment::Declined(DeclineReason::DoNotHonor),
                    ));
                }
                self.wait(5.0, 30.0);
                let big = self.pricey(50_000);
                let country = c.country.clone();
                orders.push(self.order(
                    &c,
                    session,
                    &[(big, Quantity::new(2).unwrap_or(one))],
                    &card,
                    &country,
                    &ip,
                    &device,
                    Payment::Approved,
                ));
                (vec![c.id], card.fingerprint, orders)
            }
            FraudKind::AccountTakeover => {
                let i = self.skewed(self.world.customers.len(), 1);
                let c = self.world.customers[i].clone();
                let session = self.id();
                let (ip, device) = (
                    world::sim_ip(&mut self.rng),
                    format!("dev-{:012x}", self.rng.random::<u64>() >> 16),
                );
                self.emit(UserLoggedIn {
                    user_id: c.id,
                    session_id: session,
                    ip: ip.clone(),
                    device_id: device.clone(),
                    user_agent: Some("curl/8".into()),
                });
                self.wait(10.0, 60.0);
                let big = self.pricey(30_000);
                let elsewhere = world::country(if c.country.as_str() == "NG" {
                    "BR"
                } else {
                    "NG"
                });
                let card = c.card.clone();
                let o = self.order(
                    &c,
                    session,
                    &[(big, one)],
                    &card,
                    &elsewhere,
                    &ip,
                    &device,
                    Payment::Approved,
                );
                (vec![c.id], card.fingerprint, vec![o])
            }
            FraudKind::VelocityBurst => {
                let c = self.new_customer();
                let session = self.id();
                let card = c.card.clone();
                let mut orders = Vec::new();
                for _ in 0..self.rng.random_range(6..11) {
                    self.wait(5.0, 30.0);
                    let pi = self.skewed(self.world.products.len(), 2);
                    let (country, ip, device) =
                        (c.country.clone(), c.ip.clone(), c.device_id.clone());
                    orders.push(self.order(
                        &c,
                        session,
                        &[(pi, one)],
                        &card,
                        &country,
                        &ip,
                        &device,
                        Payment::Approved,
                    ));
                }
                (vec![c.id], card.fingerprint, orders)
            }
            FraudKind::CountryMismatch => {
                let mut c = self.new_customer();
                let card = world::card(&mut self.rng, world::country("BR"));
                c.card = card.clone();
                let session = self.id();
                let pi = self.pricey(10_000);
                let (ip, device) = (c.ip.clone(), c.device_id.clone());
                let o = self.order(
                    &c,
                    session,
                    &[(pi, one)],
                    &card,
                    &world::country("US"),
                    &ip,
                    &device,
                    Payment::Approved,
                );
                (vec![c.id], card.fingerprint, vec![o])
            }
            FraudKind::SharedCard => {
                let card = world::card(&mut self.rng, world::country("DE"));
                let device = format!("dev-{:012x}", self.rng.random::<u64>() >> 16);
                let mut ids = Vec::new();
                let mut orders = Vec::new();
                for _ in 0..self.rng.random_range(4..7) {
                    self.wait(30.0, 300.0);
                    let mut c = self.new_customer();
                    c.card = card.clone();
                    c.device_id = device.clone();
                    let session = self.id();
                    let pi = self.skewed(self.world.products.len(), 2);
                    let (country, ip) = (c.country.clone(), c.ip.clone());
                    orders.push(self.order(
                        &c,
                        session,
                        &[(pi, one)],
                        &card,
                        &country,
                        &ip,
                        &device,
                        Payment::Approved,
                    ));
                    ids.push(c.id);
                }
                (ids, card.fingerprint, orders)
            }
        };
        self.labels.push(GroundTruth::Fraud(Label {
            kind,
            customer_ids: customers,
            card_fingerprint: card,
            order_ids: orders,
            from,
            to: self.time(),
        }));
    }

    /// A fresh account (registered now), not part of the world's regulars.
    fn new_customer(&mut self) -> Customer {
        let country = world::country("DE");
        let c = Customer {
            id: self.id(),
            device_id: format!("dev-{:012x}", self.rng.random::<u64>() >> 16),
            ip: world::sim_ip(&mut self.rng),
            card: world::card(&mut self.rng, country.clone()),
            country,
        };
        self.register(&c, self.time());
        c
    }
}

impl Iterator for Generator {
    type Item = Envelope;

    fn next(&mut self) -> Option<Envelope> {
        // An event is due once no session yet to come can start before it.
        while self
            .queue
            .peek()
            .is_none_or(|Reverse(p)| p.at_ms > self.clock_ms)
        {
            self.next_session();
        }
        self.queue.pop().map(|Reverse(p)| p.envelope)
    }
}
