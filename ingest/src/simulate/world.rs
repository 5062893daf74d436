//! The simulated world: vendors, products (category, colour, pattern, price, weight) and
//! customers (country, devices, cards), all drawn from the seed.

use events::{Country, Currency, Money, Sku};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

pub const CATEGORIES: &[(&str, i64, i64)] = &[
    // (category, min price, max price) in cents
    ("apparel", 999, 9_999),
    ("shoes", 2_999, 19_999),
    ("electronics", 1_999, 149_999),
    ("home", 499, 29_999),
    ("toys", 499, 7_999),
    ("books", 399, 4_999),
    ("beauty", 299, 5_999),
    ("sports", 999, 39_999),
    ("garden", 799, 24_999),
    ("grocery", 99, 1_999),
];
pub const COLOURS: &[&str] = &[
    "red", "blue", "green", "black", "white", "yellow", "purple", "orange",
];
pub const PATTERNS: &[&str] = &["plain", "striped", "checked", "dotted", "floral"];
const COUNTRIES: &[&str] = &[
    "DE", "DE", "DE", "FR", "NL", "AT", "IT", "ES", "PL", "US", "GB", "SE",
];

#[derive(Debug, Clone)]
pub struct Product {
    pub id: Uuid,
    pub sku: Sku,
    pub vendor_id: Uuid,
    pub category: &'static str,
    pub colour: &'static str,
    pub pattern: &'static str,
    pub price: Money,
    pub weight_grams: u32,
}

#[derive(Debug, Clone)]
pub struct Card {
    pub fingerprint: String,
    pub bin: String,
    pub last4: String,
    pub country: Country,
}

#[derive(Debug, Clone)]
pub struct Customer {
    pub id: Uuid,
    pub country: Country,
    pub device_id: String,
    pub ip: String,
    pub card: Card,
}

/// Everything the traffic draws from.
#[derive(Debug, Clone)]
pub struct World {
    pub products: Vec<Product>,
    pub customers: Vec<Customer>,
}

/// A UUIDv7 from the seeded generator at a simulated time, so ids repeat with the seed.
pub fn sim_uuid(rng: &mut ChaCha8Rng, unix_ms: u64) -> Uuid {
    let random: [u8; 10] = rng.random();
    uuid::Builder::from_unix_timestamp_millis(unix_ms, &random).into_uuid()
}

/// An address from the IPv6 documentation prefix: diverse, and plainly not a real host.
pub fn sim_ip(rng: &mut ChaCha8Rng) -> String {
    format!(
        "2001:db8:{:x}:{:x}::{:x}",
        rng.random::<u16>(),
        rng.random::<u16>(),
        rng.random::<u16>()
    )
}

pub fn country(code: &str) -> Country {
    Country::parse(code).unwrap_or_else(|_| Country::parse("DE").expect("DE is a country"))
}

pub fn card(rng: &mut ChaCha8Rng, country_code: Country) -> Card {
    let n: u64 = rng.random_range(0..10_000_000_000);
    Card {
        fingerprint: format!("fp_{:016x}", rng.random::<u64>()),
        bin: format!("4{:05}", n % 100_000),
        last4: format!("{:04}", n % 10_000),
        country: country_code,
    }
}

impl World {
    pub fn generate(
        rng: &mut ChaCha8Rng,
        products: usize,
        customers: usize,
        epoch_ms: u64,
    ) -> World {
        let vendors: Vec<Uuid> = (0..50).map(|_| sim_uuid(rng, epoch_ms)).collect();
        let products = (0..products)
            .map(|i| {
                let (category, lo, hi) = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
                let colour = COLOURS[rng.random_range(0..COLOURS.len())];
                Product {
                    id: sim_uuid(rng, epoch_ms),
                    sku: Sku::parse(format!("{}-{i:06}", category[..3].to_uppercase()))
                        .expect("generated SKUs are valid"),
                    vendor_id: vendors[rng.random_range(0..vendors.len())],
                    category,
                    colour,
                    pattern: PATTERNS[rng.random_range(0..PATTERNS.len())],
                    price: Money::new(rng.random_range(lo..=hi), Currency::EUR),
                    weight_grams: rng.random_range(50..5_000),
                }
            })
            .collect();
        let customers = (0..customers)
            .map(|_| {
                let c = country(COUNTRIES[rng.random_range(0..COUNTRIES.len())]);
                Customer {
                    id: sim_uuid(rng, epoch_ms),
                    device_id: format!("dev-{:012x}", rng.random::<u64>() >> 16),
                    ip: sim_ip(rng),
                    card: card(rng, c.clone()),
                    country: c,
                }
            })
            .collect();
        World {
            products,
            customers,
        }
    }
}
