//! Quotes and shipments.

use chrono::Utc;
use events::domain::shipping::{ShipmentCreated, ShipmentDelivered};
use events::{Country, Currency, Envelope, Money};
use ingest::outbox::{OutboxError, enqueue};
use sqlx::postgres::PgArguments;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

const SOURCE: &str = "/shopstream/shipping";
pub const CARRIER: &str = "carrier-simulator";

const EU: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT",
    "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];
/// Destinations the simulated carrier refuses.
const EMBARGOED: &[&str] = &["CU", "IR", "KP", "SY"];

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct Quote {
    pub zone: u8,
    pub cost: Money,
}

#[derive(Debug, thiserror::Error)]
pub enum ShippingError {
    #[error("the carrier does not ship to {0}")]
    Unsupported(Country),
    #[error("the carrier refused the parcel: {0}")]
    Refused(&'static str),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// Price of shipping `weight_grams` to `country`: zone 1 domestic (DE), 2 EU, 3 world;
/// a base fee plus a fee per started kilogram.
pub fn quote(weight_grams: u32, country: &Country) -> Result<Quote, ShippingError> {
    let c = country.as_str();
    if EMBARGOED.contains(&c) {
        return Err(ShippingError::Unsupported(country.clone()));
    }
    let zone = if c == "DE" {
        1
    } else if EU.contains(&c) {
        2
    } else {
        3
    };
    let (base, per_kg) = match zone {
        1 => (495, 100),
        2 => (995, 200),
        _ => (1995, 500),
    };
    let kg = i64::from(weight_grams.div_ceil(1000).max(1));
    Ok(Quote {
        zone,
        cost: Money::new(base + per_kg * (kg - 1), Currency::EUR),
    })
}

/// The simulated carrier's tracking number of a shipment: from its id, so unique as the ids
/// are (nine random digits collided within a day of traffic, failing a checkout).
fn tracking_number(shipment_id: Uuid) -> String {
    format!("SIM{}", shipment_id.simple()).to_uppercase()
}

/// Heaviest parcel the simulated carrier books; quotes do not check it, like real rate APIs.
pub const MAX_PARCEL_GRAMS: u32 = 31_500;

/// A shipment's row, carrier [`CARRIER`], service level standard.
pub struct ShipmentRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub country: String,
    pub zone: i16,
    pub weight_grams: i32,
    pub cost_minor: i64,
    pub currency: String,
    pub tracking_number: String,
}

/// A shipment the carrier has accepted (quoted, within its limits), not yet written: its row
/// and event as parts of a statement (the saga writes it with the order's confirmation).
pub struct NewShipment {
    pub id: Uuid,
    order_id: Uuid,
    customer_id: Uuid,
    country: Country,
    quote: Quote,
    weight_grams: u32,
}

impl NewShipment {
    /// Books a parcel with the carrier (the simulator): refused when it cannot ship it.
    pub fn book(
        order_id: Uuid,
        customer_id: Uuid,
        country: &Country,
        weight_grams: u32,
    ) -> Result<NewShipment, ShippingError> {
        let quote = quote(weight_grams, country)?;
        if weight_grams > MAX_PARCEL_GRAMS {
            return Err(ShippingError::Refused("parcel over 31.5 kg"));
        }
        Ok(NewShipment {
            id: Uuid::now_v7(),
            order_id,
            customer_id,
            country: country.clone(),
            quote,
            weight_grams,
        })
    }

    pub fn event(&self) -> Envelope {
        Envelope::new(
            SOURCE,
            ShipmentCreated {
                shipment_id: self.id,
                order_id: self.order_id,
                customer_id: self.customer_id,
                carrier: CARRIER.into(),
                service_level: "standard".into(),
                destination_country: self.country.clone(),
                zone: self.quote.zone,
                weight_grams: self.weight_grams,
                cost: self.quote.cost,
                tracking_number: tracking_number(self.id),
            },
        )
    }

    /// The CTE `shipment` inserting the row when the CTE named `guard` returned a row, from
    /// the parameters `$first`..`$first+9` (bind them with [`NewShipment::bind`]). An order
    /// has one shipment: a second fails the statement.
    pub fn sql(first: usize, guard: &str) -> String {
        let p: Vec<String> = (first..first + 10).map(|i| format!("${i}")).collect();
        format!(
            "shipment AS (
                INSERT INTO shipping.shipments
                  (id, order_id, customer_id, carrier, service_level, country, zone, weight_grams,
                   cost_minor, currency, tracking_number)
                SELECT {}, {}, {}, {}, 'standard', {}, {}, {}, {}, {}, {} FROM {guard}
                RETURNING id)",
            p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9]
        )
    }

    /// The row [`NewShipment::bind`] writes, as values (also for statements that write many
    /// shipments from arrays).
    pub fn row(&self) -> ShipmentRow {
        ShipmentRow {
            id: self.id,
            order_id: self.order_id,
            customer_id: self.customer_id,
            country: self.country.as_str().to_owned(),
            zone: i16::from(self.quote.zone),
            weight_grams: self.weight_grams as i32,
            cost_minor: self.quote.cost.amount_minor,
            currency: self.quote.cost.currency.as_str().to_owned(),
            tracking_number: tracking_number(self.id),
        }
    }

    /// Binds the ten parameters of [`NewShipment::sql`], next in the query's parameters.
    pub fn bind<'q>(
        &self,
        q: sqlx::query::Query<'q, Postgres, PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, PgArguments> {
        let row = self.row();
        q.bind(row.id)
            .bind(row.order_id)
            .bind(row.customer_id)
            .bind(CARRIER)
            .bind(row.country)
            .bind(row.zone)
            .bind(row.weight_grams)
            .bind(row.cost_minor)
            .bind(row.currency)
            .bind(row.tracking_number)
    }
}

/// Moves a shipment one step along its tracking; returns the new status.
pub async fn advance(pool: &PgPool, shipment_id: Uuid) -> Result<Option<String>, ShippingError> {
    let mut tx = pool.begin().await?;
    let row: Option<(String, Uuid, Uuid)> = sqlx::query_as(
        "UPDATE shipping.shipments SET updated_at = now(), status = CASE status
            WHEN 'created' THEN 'in_transit' WHEN 'in_transit' THEN 'delivered' ELSE status END
         WHERE id = $1 RETURNING status, order_id, customer_id",
    )
    .bind(shipment_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((status, order_id, customer_id)) = row else {
        return Ok(None);
    };
    if status == "delivered" {
        let event = ShipmentDelivered {
            shipment_id,
            order_id,
            customer_id,
            delivered_at: Utc::now(),
        };
        enqueue(&mut tx, &Envelope::new(SOURCE, event)).await?;
    }
    tx.commit().await?;
    Ok(Some(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_numbers_do_not_collide() {
        let de = Country::parse("DE").unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200_000 {
            let s = NewShipment::book(Uuid::now_v7(), Uuid::now_v7(), &de, 500).unwrap();
            let events::Event::ShipmentCreated(created) = s.event().event else {
                panic!("not a shipment event");
            };
            let tracking = created.tracking_number;
            assert!(tracking.starts_with("SIM"), "{tracking}");
            assert!(seen.insert(tracking), "a tracking number came twice");
        }
    }

    #[test]
    fn quotes_follow_zone_and_weight() {
        let de = Country::parse("DE").unwrap();
        assert_eq!(
            quote(500, &de).unwrap(),
            Quote {
                zone: 1,
                cost: Money::new(495, Currency::EUR)
            }
        );
        assert_eq!(quote(2500, &de).unwrap().cost.amount_minor, 695);
        assert_eq!(quote(1000, &Country::parse("FR").unwrap()).unwrap().zone, 2);
        assert_eq!(quote(1000, &Country::parse("US").unwrap()).unwrap().zone, 3);
        assert!(quote(1000, &Country::parse("KP").unwrap()).is_err());
    }
}
