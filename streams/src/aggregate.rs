//! Real-time aggregation: revenue and orders per minute (by currency, category, vendor, and
//! the customer's account age from the users topic), top products (hopping 5 min / 1 min), the conversion funnel per 15 min, sessions (session
//! windows, 30 min gap) and payment failure rates per gateway and reason.
//!
//! Partitioned: each input partition is a shard with its own windows; a metric's value is
//! the sum of its shards' rows (`streams.metrics` view), so instances can share partitions
//! and hand them over without double counting.

use std::collections::BTreeMap;

use events::{Event, Topic};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::engine::{In, Mode, Out, OutRecord, Processor};
use crate::sink::{Row, ts};
use crate::table::{Customers, Products};
use crate::window::{Emitted, Merge, Millis, Window, WindowSpec, Windowed};

pub const MINUTE: Millis = 60_000;
pub const SESSION_GAP: Millis = 30 * MINUTE;

/// Count and sum (minor units, milliseconds or items, depending on the metric).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sum {
    pub count: i64,
    pub sum: i64,
}

impl Merge for Sum {
    fn merge(&mut self, o: &Self) {
        self.count += o.count;
        self.sum += o.sum;
    }
}

/// A metric name and its dimensions, e.g. `("revenue_by_category", "shoes")`.
pub type Key = (String, String);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AggState {
    /// Tumbling 1-minute metrics.
    minute: Windowed<Key, Sum>,
    /// Hopping 5 min / 1 min product views.
    top: Windowed<Key, Sum>,
    /// Tumbling 15-minute funnel stages.
    funnel: Windowed<Key, Sum>,
    /// Session windows per session id; when a session closes it is counted per minute.
    sessions: Windowed<Key, Sum>,
    /// Placed orders awaiting confirmation: their lines by category and vendor.
    pending: BTreeMap<Uuid, Pending>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    at: Millis,
    lines: Vec<(String, String, i64)>,
}

pub struct Aggregator {
    products: Option<Products>,
    customers: Option<Customers>,
    lateness: Millis,
}

/// Accounts younger than this count as new in `revenue_by_account_age`.
pub const NEW_ACCOUNT_DAYS: i64 = 30;

impl Aggregator {
    /// `products` enriches orders with category and vendor (None: both `unknown`).
    pub fn new(products: Option<Products>, allowed_lateness: Millis) -> Self {
        Aggregator {
            products,
            customers: None,
            lateness: allowed_lateness,
        }
    }

    /// Enriches confirmed orders with the customer's account age (`new` under
    /// [`NEW_ACCOUNT_DAYS`], `established`, or `unknown` when the users topic has no
    /// registration for the customer).
    pub fn with_customers(mut self, customers: Customers) -> Self {
        self.customers = Some(customers);
        self
    }
}

const METRICS: [&str; 4] = ["minute", "top", "funnel", "sessions"];

/// Every metric the aggregation writes (to `streams.metric_partials`, the `metrics` topic
/// and the live endpoint).
pub const METRIC_NAMES: &[&str] = &[
    "orders",
    "revenue_by_category",
    "revenue_by_vendor",
    "revenue_by_account_age",
    "payments",
    "payment_failures",
    "basket_items",
    "product_views",
    "funnel",
    "sessions",
    "sessions_open",
];

fn metric_name(family: &str, key: &Key) -> &'static str {
    // Metric names are static so rows can borrow them; unknown names fall into "other".
    const NAMES: &[&str] = METRIC_NAMES;
    let want = match family {
        "top" => "product_views",
        "funnel" => "funnel",
        "sessions" => "sessions",
        _ => key.0.as_str(),
    };
    NAMES
        .iter()
        .find(|n| **n == want)
        .copied()
        .unwrap_or("other")
}

impl AggState {
    fn families(&mut self) -> [(&'static str, &mut Windowed<Key, Sum>); 4] {
        [
            (METRICS[0], &mut self.minute),
            (METRICS[1], &mut self.top),
            (METRICS[2], &mut self.funnel),
            (METRICS[3], &mut self.sessions),
        ]
    }
}

fn add(
    w: &mut Windowed<Key, Sum>,
    at: Millis,
    metric: &str,
    dims: &str,
    count: i64,
    sum: i64,
    late: &mut bool,
) {
    let admit = w.add(at, &(metric.to_owned(), dims.to_owned()), |s| {
        s.count += count;
        s.sum += sum;
    });
    *late |= admit == crate::window::Admit::Late;
}

impl Processor for Aggregator {
    type State = AggState;

    fn name(&self) -> &'static str {
        "aggregate"
    }

    fn mode(&self) -> Mode {
        Mode::Partitioned
    }

    fn inputs(&self) -> Vec<Topic> {
        vec![
            Topic::Clickstream,
            Topic::Carts,
            Topic::Orders,
            Topic::Payments,
        ]
    }

    fn new_state(&self) -> AggState {
        AggState {
            // The metric families are upserted at each checkpoint (`take_unsaved`); sessions
            // only feed `minute` as they close.
            minute: Windowed::new(WindowSpec::Tumbling { size: MINUTE }, self.lateness)
                .keeping_unsaved(),
            top: Windowed::new(
                WindowSpec::Hopping {
                    size: 5 * MINUTE,
                    slide: MINUTE,
                },
                self.lateness,
            )
            .keeping_unsaved(),
            funnel: Windowed::new(WindowSpec::Tumbling { size: 15 * MINUTE }, self.lateness)
                .keeping_unsaved(),
            sessions: Windowed::new(WindowSpec::Session { gap: SESSION_GAP }, self.lateness),
            pending: BTreeMap::new(),
        }
    }

    fn on_event(&mut self, st: &mut AggState, input: &In<'_>, out: &mut Out) {
        let t = input.ts;
        let mut late = false;
        match &input.envelope.event {
            Event::ProductViewed(e) => {
                add(
                    &mut st.top,
                    t,
                    "product_views",
                    &e.product_id.to_string(),
                    1,
                    0,
                    &mut late,
                );
                add(&mut st.funnel, t, "funnel", "1_view", 1, 0, &mut late);
                add(
                    &mut st.sessions,
                    t,
                    "session",
                    &e.session_id.to_string(),
                    1,
                    0,
                    &mut late,
                );
            }
            Event::SearchPerformed(e) => {
                add(
                    &mut st.sessions,
                    t,
                    "session",
                    &e.session_id.to_string(),
                    1,
                    0,
                    &mut late,
                );
            }
            Event::CartItemAdded(e) => {
                add(&mut st.funnel, t, "funnel", "2_cart", 1, 0, &mut late);
                add(
                    &mut st.sessions,
                    t,
                    "session",
                    &e.session_id.to_string(),
                    1,
                    0,
                    &mut late,
                );
            }
            Event::CheckoutStarted(_) => {
                add(&mut st.funnel, t, "funnel", "3_checkout", 1, 0, &mut late);
            }
            Event::OrderPlaced(e) => {
                let lines = e
                    .lines
                    .iter()
                    .map(|l| {
                        let facts = self
                            .products
                            .as_ref()
                            .and_then(|p| p.by_id.get(&l.product_id));
                        (
                            facts.map_or("unknown".into(), |f| f.category.clone()),
                            facts.map_or("unknown".into(), |f| f.vendor_id.to_string()),
                            l.unit_price.amount_minor * i64::from(l.quantity.get()),
                        )
                    })
                    .collect();
                let items: i64 = e.lines.iter().map(|l| i64::from(l.quantity.get())).sum();
                add(&mut st.minute, t, "basket_items", "", 1, items, &mut late);
                st.pending.insert(e.order_id, Pending { at: t, lines });
            }
            Event::OrderConfirmed(e) => {
                add(
                    &mut st.minute,
                    t,
                    "orders",
                    e.total.currency.as_str(),
                    1,
                    e.total.amount_minor,
                    &mut late,
                );
                add(&mut st.funnel, t, "funnel", "4_paid", 1, 0, &mut late);
                if let Some(c) = &self.customers {
                    let segment = match c.account_age_days(&e.customer_id, t) {
                        Some(d) if d < NEW_ACCOUNT_DAYS => "new",
                        Some(_) => "established",
                        None => "unknown",
                    };
                    add(
                        &mut st.minute,
                        t,
                        "revenue_by_account_age",
                        segment,
                        1,
                        e.total.amount_minor,
                        &mut late,
                    );
                }
                if let Some(p) = st.pending.remove(&e.order_id) {
                    for (category, vendor, amount) in p.lines {
                        add(
                            &mut st.minute,
                            t,
                            "revenue_by_category",
                            &category,
                            1,
                            amount,
                            &mut late,
                        );
                        add(
                            &mut st.minute,
                            t,
                            "revenue_by_vendor",
                            &vendor,
                            1,
                            amount,
                            &mut late,
                        );
                    }
                }
            }
            Event::OrderCancelled(e) => {
                st.pending.remove(&e.order_id);
            }
            Event::PaymentAuthorized(e) => {
                add(&mut st.minute, t, "payments", &e.gateway, 1, 0, &mut late);
            }
            Event::PaymentFailed(e) => {
                add(&mut st.minute, t, "payments", &e.gateway, 1, 1, &mut late);
                let reason = serde_json::to_value(e.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                add(
                    &mut st.minute,
                    t,
                    "payment_failures",
                    &format!("{}/{reason}", e.gateway),
                    1,
                    0,
                    &mut late,
                );
            }
            _ => {}
        }
        if late {
            out.route_late(input);
        }
    }

    fn on_watermark(&mut self, st: &mut AggState, wm: Millis, out: &mut Out) {
        // Closed sessions are counted in the minute they started. (A checkpoint from before
        // keeping purged windows was opt-in kept every closed session: forget them.)
        st.sessions.forget_unsaved();
        let closed = st.sessions.advance(wm);
        for s in closed.iter().filter(|s| s.last) {
            let mut late = false;
            add(
                &mut st.minute,
                s.window.start,
                "sessions",
                "",
                1,
                s.window.end - s.window.start - SESSION_GAP,
                &mut late,
            );
        }
        // Orders never confirmed within a day are forgotten.
        st.pending.retain(|_, p| p.at > wm - 24 * 3_600_000);
        for (family, w) in st.families() {
            if family == "sessions" {
                continue;
            }
            for e in w.advance(wm) {
                out.records.push(metric_record(family, &e));
            }
        }
    }

    fn on_checkpoint(&mut self, st: &mut AggState, shard: &str, out: &mut Out) {
        for (family, w) in st.families() {
            if family == "sessions" {
                continue;
            }
            for (window, key, v) in w.take_unsaved() {
                out.rows.push(Row::Metric {
                    metric: metric_name(family, &key),
                    window,
                    dims: key.1,
                    shard: shard.to_owned(),
                    count: v.count,
                    sum: v.sum,
                });
            }
        }
        let open = st.sessions.open_windows() as i64;
        if st.sessions.watermark > Millis::MIN {
            let m = st.sessions.watermark - st.sessions.watermark.rem_euclid(MINUTE);
            out.rows.push(Row::Metric {
                metric: "sessions_open",
                window: Window {
                    start: m,
                    end: m + MINUTE,
                },
                dims: String::new(),
                shard: shard.to_owned(),
                count: open,
                sum: 0,
            });
        }
    }

    fn between_batches(&mut self) {
        if let Some(p) = &mut self.products {
            p.drain();
        }
        if let Some(c) = &mut self.customers {
            c.drain();
        }
    }
}

fn metric_record(family: &str, e: &Emitted<Key, Sum>) -> OutRecord {
    let metric = metric_name(family, &e.key);
    OutRecord::Json {
        topic: Topic::Metrics,
        key: format!("{metric}|{}|{}", e.window.start, e.key.1),
        value: serde_json::json!({
            "metric": metric,
            "dims": e.key.1,
            "window_start": ts(e.window.start),
            "window_end": ts(e.window.end),
            "count": e.value.count,
            "sum": e.value.sum,
            "final": e.last,
        }),
    }
}
