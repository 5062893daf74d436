//! The registry of event types: `Event` is the sum of every domain event, with its
//! CloudEvents type, topic and partition key. Adding an event means one line in `events!`.

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::domain::{
    anomaly::*, cart::*, catalog::*, clickstream::*, fraud::*, inventory::*, orders::*,
    payments::*, reviews::*, shipping::*, users::*,
};
use crate::error::DecodeError;
use crate::topics::Topic;

/// A domain event payload with its place in the contract.
pub trait DomainEvent: Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync {
    /// CloudEvents `type`, e.g. `order.placed.v1`.
    const TYPE: &'static str;
    /// The topic the event is published to.
    const TOPIC: Topic;
    /// Partition key: customer id (or session id when anonymous), product id, SKU or series.
    fn key(&self) -> String;
}

fn customer_or_session(user: Option<Uuid>, session: Uuid) -> String {
    user.unwrap_or(session).to_string()
}

macro_rules! events {
    ($($variant:ident => $ty:literal, $topic:ident, |$e:ident| $key:expr;)+) => {
        $(
            impl DomainEvent for $variant {
                const TYPE: &'static str = $ty;
                const TOPIC: Topic = Topic::$topic;
                fn key(&self) -> String {
                    let $e = self;
                    $key
                }
            }

            impl From<$variant> for Event {
                fn from(e: $variant) -> Event {
                    Event::$variant(e)
                }
            }
        )+

        /// Any domain event. Serialises as the bare payload (the type travels in `ce_type`).
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum Event {
            $($variant($variant),)+
        }

        /// Every event type of the contract, in declaration order.
        pub const EVENT_TYPES: &[&str] = &[$($ty,)+];

        impl Event {
            /// CloudEvents `type`, e.g. `order.placed.v1`.
            pub fn event_type(&self) -> &'static str {
                match self { $(Event::$variant(_) => $ty,)+ }
            }

            pub fn topic(&self) -> Topic {
                match self { $(Event::$variant(_) => Topic::$topic,)+ }
            }

            pub fn key(&self) -> String {
                match self { $(Event::$variant(e) => e.key(),)+ }
            }

            /// The topic an event type is published to.
            pub fn topic_of(event_type: &str) -> Option<Topic> {
                match event_type { $($ty => Some(Topic::$topic),)+ _ => None }
            }

            /// Decodes a JSON payload of the given type. Never panics on bad input.
            pub fn from_json(event_type: &str, payload: &[u8]) -> Result<Event, DecodeError> {
                let bad = |source| DecodeError::InvalidPayload { event_type: event_type.to_owned(), source };
                match event_type {
                    $($ty => parse_json::<$variant>(payload).map(Event::$variant).map_err(bad),)+
                    other => Err(DecodeError::UnknownEventType(other.to_owned())),
                }
            }

            /// The JSON payload.
            pub fn to_json(&self) -> Vec<u8> {
                // Serialising these plain structs cannot fail: no maps with non-string keys.
                serde_json::to_vec(self).expect("event payloads always serialise")
            }
        }

        /// The JSON Schema of every event type, generated from the Rust types.
        pub fn json_schemas() -> Vec<(&'static str, serde_json::Value)> {
            vec![$(($ty, crate::schema::json_schema_of::<$variant>($ty)),)+]
        }
    };
}

events! {
    UserRegistered => "user.registered.v1", Users, |e| e.user_id.to_string();
    UserLoggedIn => "user.logged_in.v1", Users, |e| e.user_id.to_string();
    ProductCreated => "product.created.v1", Catalog, |e| e.product_id.to_string();
    ProductUpdated => "product.updated.v1", Catalog, |e| e.product_id.to_string();
    PriceChanged => "price.changed.v1", Catalog, |e| e.product_id.to_string();
    ProductViewed => "product.viewed.v1", Clickstream, |e| customer_or_session(e.user_id, e.session_id);
    SearchPerformed => "search.performed.v1", Clickstream, |e| customer_or_session(e.user_id, e.session_id);
    CartItemAdded => "cart.item_added.v1", Carts, |e| customer_or_session(e.user_id, e.session_id);
    CartItemRemoved => "cart.item_removed.v1", Carts, |e| customer_or_session(e.user_id, e.session_id);
    CheckoutStarted => "checkout.started.v1", Carts, |e| e.user_id.to_string();
    OrderPlaced => "order.placed.v1", Orders, |e| e.customer_id.to_string();
    OrderConfirmed => "order.confirmed.v1", Orders, |e| e.customer_id.to_string();
    OrderCancelled => "order.cancelled.v1", Orders, |e| e.customer_id.to_string();
    InventoryReserved => "inventory.reserved.v1", Inventory, |e| e.sku.to_string();
    InventoryReleased => "inventory.released.v1", Inventory, |e| e.sku.to_string();
    InventoryAdjusted => "inventory.adjusted.v1", Inventory, |e| e.sku.to_string();
    PaymentAuthorized => "payment.authorized.v1", Payments, |e| e.customer_id.to_string();
    PaymentFailed => "payment.failed.v1", Payments, |e| e.customer_id.to_string();
    PaymentRefunded => "payment.refunded.v1", Payments, |e| e.customer_id.to_string();
    ShipmentCreated => "shipment.created.v1", Shipments, |e| e.customer_id.to_string();
    ShipmentDelivered => "shipment.delivered.v1", Shipments, |e| e.customer_id.to_string();
    ReviewPosted => "review.posted.v1", Reviews, |e| e.product_id.to_string();
    FraudAlertRaised => "fraud.alert.raised.v1", FraudAlerts, |e| e.customer_id.to_string();
    FraudAlertResolved => "fraud.alert.resolved.v1", FraudAlerts, |e| e.customer_id.to_string();
    AnomalyDetected => "anomaly.detected.v1", Anomalies, |e| e.series.clone();
}

/// Parses a payload from its text when it is UTF-8: one check of the whole payload, where
/// parsing the bytes checks every string on its own (`from_utf8` was ~5 % of a stateless
/// processor's time). Bytes that are not UTF-8 are parsed as bytes, for the error.
fn parse_json<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, serde_json::Error> {
    match std::str::from_utf8(payload) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(payload),
    }
}
