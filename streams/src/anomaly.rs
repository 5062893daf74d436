//! Anomaly detection over per-minute series of the whole shop: orders/min, revenue/min,
//! payment failure rate, basket size, views per category and under-priced order lines.
//! Each series has two detectors: an EWMA z-score and a robust median/MAD z-score over the
//! last hour; optionally (`seasonal`) a third judges a minute against the same hour of the
//! previous days, so a daily peak is not news but an hour unlike its usual self is. A
//! flagged minute becomes an `anomaly.detected` event (and a row), with the
//! expected band, the observed value and an explanation.
//!
//! Global mode (one leader): the series are sums over every partition. Minutes without any
//! event count as zero for count series, so a stalled category shows up.

use std::collections::{BTreeMap, VecDeque};

use events::domain::anomaly::AnomalyDetected;
use events::{Envelope, Event, Topic};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{MINUTE, Sum};
use crate::engine::{In, Mode, Out, OutRecord, Processor};
use crate::sink::{Row, ts};
use crate::table::Products;
use crate::window::{Millis, WindowSpec, Windowed};

/// Detector settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnomalyConfig {
    pub ewma_alpha: f64,
    pub z_threshold: f64,
    /// Points a series needs before it can be flagged.
    pub warmup: u32,
    /// Values kept for the median/MAD baseline.
    pub history: usize,
    /// Also keep a daily-seasonal baseline (one EWMA per hour of the day).
    #[serde(default)]
    pub seasonal: bool,
    /// Points an hour-of-day slot needs before it can flag (60 = one day of that hour).
    #[serde(default = "default_seasonal_warmup")]
    pub seasonal_warmup: u32,
}

fn default_seasonal_warmup() -> u32 {
    60
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            ewma_alpha: 0.1,
            z_threshold: 3.5,
            warmup: 15,
            history: 60,
            seasonal: false,
            seasonal_warmup: default_seasonal_warmup(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Detector {
    n: u32,
    mean: f64,
    var: f64,
    recent: VecDeque<f64>,
    /// The daily-seasonal baseline: (points, mean, variance) per hour of the day (UTC),
    /// empty unless the seasonal detector is on. A slower EWMA than the main one: it learns
    /// from one hour a day.
    #[serde(default)]
    hourly: Vec<(u32, f64, f64)>,
}

/// An EWMA step: the mean and variance after learning `x`.
fn ewma(n: u32, mean: f64, var: f64, x: f64, alpha: f64) -> (f64, f64) {
    if n == 0 {
        return (x, 0.0);
    }
    let d = x - mean;
    (mean + alpha * d, (1.0 - alpha) * (var + alpha * d * d))
}

/// A floor on the scale keeps near-constant series from flagging noise.
fn scale_floor(sd: f64, level: f64) -> f64 {
    sd.max(0.5).max(0.05 * level.abs())
}

/// One detector's verdict on a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub method: &'static str,
    pub low: f64,
    pub high: f64,
    pub z: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Detector {
    /// Judges `x` against the baseline so far, then learns it.
    pub fn observe(&mut self, x: f64, cfg: &AnomalyConfig) -> Vec<Verdict> {
        self.observe_at(x, None, cfg)
    }

    /// Like [`Detector::observe`], for the minute starting at `minute` (ms since the epoch),
    /// which the seasonal baseline needs.
    pub fn observe_at(
        &mut self,
        x: f64,
        minute: Option<Millis>,
        cfg: &AnomalyConfig,
    ) -> Vec<Verdict> {
        let mut out = Vec::new();
        let k = cfg.z_threshold;
        if self.n >= cfg.warmup {
            let sd = scale_floor(self.var.sqrt(), self.mean);
            let z = (x - self.mean) / sd;
            if z.abs() >= k {
                out.push(Verdict {
                    method: "ewma_zscore",
                    low: self.mean - k * sd,
                    high: self.mean + k * sd,
                    z,
                });
            }
            let mut v: Vec<f64> = self.recent.iter().copied().collect();
            let med = median(&mut v);
            let mut dev: Vec<f64> = v.iter().map(|y| (y - med).abs()).collect();
            let scale = scale_floor(1.4826 * median(&mut dev), med);
            let rz = (x - med) / scale;
            if rz.abs() >= k {
                out.push(Verdict {
                    method: "median_mad",
                    low: med - k * scale,
                    high: med + k * scale,
                    z: rz,
                });
            }
        }
        if cfg.seasonal
            && let Some(m) = minute
        {
            if self.hourly.len() != 24 {
                self.hourly = vec![(0, 0.0, 0.0); 24];
            }
            let slot = &mut self.hourly[(m.div_euclid(3_600_000)).rem_euclid(24) as usize];
            // An hour's minutes come in a row, so an anomalous stretch would teach its own
            // slot within minutes: a flagged value is not learnt (a lasting change of an
            // hour's level keeps being flagged by this detector; the main EWMA adapts).
            let mut learn = true;
            if slot.0 >= cfg.seasonal_warmup {
                let sd = scale_floor(slot.2.sqrt(), slot.1);
                let (low, high) = (slot.1 - k * sd, slot.1 + k * sd);
                let z = (x - slot.1) / sd;
                if z.abs() >= k {
                    out.push(Verdict {
                        method: "seasonal_zscore",
                        low,
                        high,
                        z,
                    });
                    learn = false;
                }
            }
            if learn {
                let (mean, var) = ewma(slot.0, slot.1, slot.2, x, cfg.ewma_alpha / 2.0);
                *slot = (slot.0.saturating_add(1), mean, var);
            }
        }
        (self.mean, self.var) = ewma(self.n, self.mean, self.var, x, cfg.ewma_alpha);
        self.n += 1;
        self.recent.push_back(x);
        while self.recent.len() > cfg.history {
            self.recent.pop_front();
        }
        out
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnomalyState {
    minute: Windowed<String, Sum>,
    detectors: BTreeMap<String, Detector>,
    /// The next minute to evaluate.
    next_minute: Option<Millis>,
}

pub struct AnomalyDetector {
    products: Option<Products>,
    cfg: AnomalyConfig,
}

impl AnomalyDetector {
    pub fn new(products: Option<Products>, cfg: AnomalyConfig) -> Self {
        AnomalyDetector { products, cfg }
    }
}

/// Series whose missing minutes count as zero.
fn is_count(series: &str) -> bool {
    !matches!(series, "payment_failure_rate" | "basket_size")
}

fn value(series: &str, s: &Sum) -> f64 {
    match series {
        "revenue_per_min" => s.sum as f64 / 100.0,
        "payment_failure_rate" | "basket_size" => s.sum as f64 / s.count.max(1) as f64,
        _ => s.count as f64,
    }
}

fn anomaly_id(series: &str, method: &str, start: Millis) -> Uuid {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in series
        .bytes()
        .chain(method.bytes())
        .chain(start.to_le_bytes())
    {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    uuid::Builder::from_u128(h)
        .with_variant(uuid::Variant::RFC4122)
        .with_version(uuid::Version::Custom)
        .into_uuid()
}

impl Processor for AnomalyDetector {
    type State = AnomalyState;

    fn name(&self) -> &'static str {
        "anomaly"
    }

    fn mode(&self) -> Mode {
        Mode::Global
    }

    fn inputs(&self) -> Vec<Topic> {
        vec![Topic::Clickstream, Topic::Orders, Topic::Payments]
    }

    fn new_state(&self) -> AnomalyState {
        AnomalyState {
            minute: Windowed::new(WindowSpec::Tumbling { size: MINUTE }, 0),
            detectors: BTreeMap::new(),
            next_minute: None,
        }
    }

    fn on_event(&mut self, st: &mut AnomalyState, input: &In<'_>, out: &mut Out) {
        let t = input.ts;
        let mut add = |series: String, count: i64, sum: i64| {
            st.minute.add(t, &series, |s| {
                s.count += count;
                s.sum += sum;
            }) == crate::window::Admit::Late
        };
        let late = match &input.envelope.event {
            Event::OrderPlaced(o) => {
                let items: i64 = o.lines.iter().map(|l| i64::from(l.quantity.get())).sum();
                let mut late = add("orders_per_min".into(), 1, 0);
                late |= add("basket_size".into(), 1, items);
                let under = o
                    .lines
                    .iter()
                    .filter(|l| {
                        self.products
                            .as_ref()
                            .and_then(|p| p.by_id.get(&l.product_id))
                            .is_some_and(|f| l.unit_price.amount_minor * 2 < f.price_minor)
                    })
                    .count() as i64;
                if under > 0 {
                    late |= add("underpriced_lines".into(), under, 0);
                }
                late
            }
            Event::OrderConfirmed(o) => add("revenue_per_min".into(), 1, o.total.amount_minor),
            Event::PaymentAuthorized(_) => add("payment_failure_rate".into(), 1, 0),
            Event::PaymentFailed(_) => add("payment_failure_rate".into(), 1, 1),
            Event::ProductViewed(v) => {
                let category = self
                    .products
                    .as_ref()
                    .and_then(|p| p.by_id.get(&v.product_id))
                    .map_or("unknown".to_owned(), |f| f.category.clone());
                add(format!("views:{category}"), 1, 0)
            }
            _ => false,
        };
        if late {
            out.route_late(input);
        }
    }

    fn on_watermark(&mut self, st: &mut AnomalyState, wm: Millis, out: &mut Out) {
        // Only what `advance` emits is used (a checkpoint from before keeping purged windows
        // was opt-in kept every minute ever closed: forget them).
        st.minute.forget_unsaved();
        let fired = st.minute.advance(wm);
        let mut by_minute: BTreeMap<Millis, BTreeMap<String, Sum>> = BTreeMap::new();
        for e in fired.into_iter().filter(|e| e.last) {
            by_minute
                .entry(e.window.start)
                .or_default()
                .insert(e.key, e.value);
        }
        let Some((&last, _)) = by_minute.iter().next_back() else {
            return;
        };
        let first = *by_minute.keys().next().expect("non-empty");
        // Zero-fill at most two hours of silence.
        let mut m = st
            .next_minute
            .unwrap_or(first)
            .max(last - 120 * MINUTE)
            .min(first);
        while m <= last {
            let values = by_minute.remove(&m).unwrap_or_default();
            let mut series: Vec<String> = st
                .detectors
                .keys()
                .filter(|s| is_count(s))
                .cloned()
                .collect();
            series.extend(values.keys().cloned());
            series.sort();
            series.dedup();
            for s in series {
                let x = values.get(&s).map_or(0.0, |v| value(&s, v));
                let d = st.detectors.entry(s.clone()).or_default();
                for v in d.observe_at(x, Some(m), &self.cfg) {
                    let a = AnomalyDetected {
                        anomaly_id: anomaly_id(&s, v.method, m),
                        series: s.clone(),
                        method: v.method.into(),
                        window_start: ts(m),
                        window_end: ts(m + MINUTE),
                        observed: x,
                        expected_low: v.low,
                        expected_high: v.high,
                        score: v.z,
                        explanation: format!(
                            "{s} was {x:.2} in the minute from {}, {} the expected {:.2}..{:.2} ({}, z = {:.1})",
                            ts(m).format("%Y-%m-%d %H:%M"),
                            if x > v.high { "above" } else { "below" },
                            v.low,
                            v.high,
                            v.method,
                            v.z
                        ),
                    };
                    let mut env = Envelope::new("shopstream/streams/anomaly", a.clone())
                        .with_time(ts(m + MINUTE));
                    env.id = a.anomaly_id;
                    out.records.push(OutRecord::Event(env));
                    out.rows.push(Row::Anomaly(Box::new(a)));
                    out.urgent = true;
                }
            }
            m += MINUTE;
        }
        st.next_minute = Some(m);
    }

    fn between_batches(&mut self) {
        if let Some(p) = &mut self.products {
            p.drain();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_and_a_drop_are_flagged_steady_noise_is_not() {
        let cfg = AnomalyConfig::default();
        let mut d = Detector::default();
        let mut flagged = 0;
        for i in 0..100 {
            let x = 100.0 + f64::from(i % 7) - 3.0;
            flagged += d.observe(x, &cfg).len();
        }
        assert_eq!(flagged, 0);
        let spike = d.observe(500.0, &cfg);
        assert_eq!(spike.len(), 2, "{spike:?}");
        assert!(spike.iter().all(|v| v.z > 0.0 && v.high < 500.0));
        let drop = d.observe(0.0, &cfg);
        assert!(drop.iter().any(|v| v.z < 0.0), "{drop:?}");
    }

    /// Three days of a strong daily curve (quiet nights, busy evenings), then a night as
    /// busy as an evening: only the seasonal baseline knows that is odd for the hour.
    #[test]
    fn the_seasonal_baseline_flags_an_hour_unlike_its_usual_self() {
        let cfg = AnomalyConfig {
            seasonal: true,
            ..AnomalyConfig::default()
        };
        let level = |hour: i64| {
            if (18..22).contains(&hour) {
                400.0
            } else {
                40.0
            }
        };
        let mut d = Detector::default();
        let mut seasonal_flags = 0;
        let day = 24 * 60;
        for minute in 0..3 * day {
            let hour = (minute / 60) % 24;
            let x = level(hour) + (minute % 5) as f64;
            let v = d.observe_at(x, Some(minute * MINUTE), &cfg);
            if minute >= day {
                seasonal_flags += v.iter().filter(|v| v.method == "seasonal_zscore").count();
            }
        }
        assert_eq!(seasonal_flags, 0, "the usual curve is not news once learnt");
        // Day 4, 03:00: evening traffic at night.
        let night = 3 * day + 3 * 60;
        let mut flagged = Vec::new();
        for minute in night..night + 30 {
            flagged.extend(d.observe_at(400.0, Some(minute * MINUTE), &cfg));
        }
        let seasonal: Vec<_> = flagged
            .iter()
            .filter(|v| v.method == "seasonal_zscore")
            .collect();
        assert!(seasonal.len() >= 25, "{seasonal:?}");
        assert!(seasonal.iter().all(|v| v.z > 0.0 && v.high < 400.0));
        // Without the option, no seasonal verdicts at all.
        let mut plain = Detector::default();
        for minute in 0..2 * day {
            let v = plain.observe_at(
                level((minute / 60) % 24),
                Some(minute * MINUTE),
                &AnomalyConfig::default(),
            );
            assert!(v.iter().all(|v| v.method != "seasonal_zscore"));
        }
    }
}
