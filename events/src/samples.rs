//! One realistic example of every event type: fixtures for tests, docs and the smoke
//! producer of `shopstream up`. Not traffic generation (that is the simulator's job).

use chrono::{TimeZone, Utc};
use uuid::Uuid;

use crate::domain::{
    anomaly::*, cart::*, catalog::*, clickstream::*, fraud::*, inventory::*, orders::*,
    payments::*, reviews::*, shipping::*, users::*,
};
use crate::event::Event;
use crate::money::{Country, Currency, FraudScore, Money, Quantity, Rating, Sku};

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::EUR)
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).expect("sample SKUs are valid")
}

fn country(s: &str) -> Country {
    Country::parse(s).expect("sample countries are valid")
}

fn qty(n: u32) -> Quantity {
    Quantity::new(n).expect("sample quantities are positive")
}

/// One sample per event type, in the order of [`crate::EVENT_TYPES`].
pub fn samples() -> Vec<Event> {
    let customer = id(1);
    let session = id(2);
    let product = id(3);
    let order = id(4);
    let payment = id(5);
    let shipment = id(6);
    let vendor = id(7);
    let t = Utc.with_ymd_and_hms(2026, 11, 24, 10, 30, 0).single();
    let t = t.expect("valid sample time");
    let card = CardRef {
        fingerprint: "fp_4f9a1c".into(),
        bin: "424242".into(),
        last4: "4242".into(),
        country: country("DE"),
    };
    vec![
        UserRegistered {
            user_id: customer,
            email: "ada@example.com".into(),
            display_name: "Ada L.".into(),
            country: country("DE"),
            role: Role::Customer,
            registered_at: t,
        }
        .into(),
        UserLoggedIn {
            user_id: customer,
            session_id: session,
            ip: "203.0.113.7".into(),
            device_id: "dev-ios-81f2".into(),
            user_agent: Some("Shopstream/iOS 4.2".into()),
        }
        .into(),
        ProductCreated {
            product_id: product,
            sku: sku("TSHIRT-001-RED-M"),
            vendor_id: vendor,
            category: "apparel/t-shirts".into(),
            title: "Organic cotton t-shirt".into(),
            price: eur(1999),
            weight_grams: 180,
            attributes: vec![Attribute {
                name: "colour".into(),
                value: "red".into(),
            }],
            status: ProductStatus::Active,
        }
        .into(),
        ProductUpdated {
            product_id: product,
            sku: sku("TSHIRT-001-RED-M"),
            title: Some("Organic cotton t-shirt, relaxed fit".into()),
            category: None,
            status: None,
            attributes: None,
        }
        .into(),
        PriceChanged {
            product_id: product,
            sku: sku("TSHIRT-001-RED-M"),
            old_price: eur(1999),
            new_price: eur(1799),
            reason: "seasonal".into(),
        }
        .into(),
        ProductViewed {
            session_id: session,
            user_id: None,
            product_id: product,
            device_id: "dev-ios-81f2".into(),
            referrer: Some("search".into()),
        }
        .into(),
        SearchPerformed {
            session_id: session,
            user_id: Some(customer),
            query: "red t-shirt".into(),
            category: Some("apparel".into()),
            results_count: 42,
        }
        .into(),
        CartItemAdded {
            cart_id: id(8),
            session_id: session,
            user_id: Some(customer),
            product_id: product,
            sku: sku("TSHIRT-001-RED-M"),
            quantity: qty(2),
            unit_price: eur(1799),
        }
        .into(),
        CartItemRemoved {
            cart_id: id(8),
            session_id: session,
            user_id: Some(customer),
            product_id: product,
            sku: sku("TSHIRT-001-RED-M"),
            quantity: qty(1),
        }
        .into(),
        CheckoutStarted {
            checkout_id: id(9),
            cart_id: id(8),
            session_id: session,
            user_id: customer,
            item_count: 1,
            total: eur(1799),
        }
        .into(),
        OrderPlaced {
            order_id: order,
            customer_id: customer,
            lines: vec![OrderLine {
                product_id: product,
                sku: sku("TSHIRT-001-RED-M"),
                quantity: qty(1),
                unit_price: eur(1799),
            }],
            subtotal: eur(1799),
            discount: eur(0),
            shipping: eur(495),
            tax: eur(366),
            total: eur(2294),
            coupon: None,
            card: card.clone(),
            billing_country: country("DE"),
            shipping_country: country("DE"),
            ip: "203.0.113.7".into(),
            device_id: "dev-ios-81f2".into(),
        }
        .into(),
        OrderConfirmed {
            order_id: order,
            customer_id: customer,
            payment_id: payment,
            shipment_id: shipment,
            total: eur(2294),
        }
        .into(),
        OrderCancelled {
            order_id: order,
            customer_id: customer,
            reason: CancelReason::PaymentDeclined,
            detail: Some("insufficient_funds".into()),
        }
        .into(),
        InventoryReserved {
            reservation_id: id(10),
            order_id: order,
            sku: sku("TSHIRT-001-RED-M"),
            quantity: qty(1),
            expires_at: t + chrono::Duration::minutes(15),
        }
        .into(),
        InventoryReleased {
            reservation_id: id(10),
            order_id: order,
            sku: sku("TSHIRT-001-RED-M"),
            quantity: qty(1),
            reason: ReleaseReason::Compensation,
        }
        .into(),
        InventoryAdjusted {
            sku: sku("TSHIRT-001-RED-M"),
            delta: 50,
            on_hand_after: 120,
            reason: "goods receipt".into(),
        }
        .into(),
        PaymentAuthorized {
            payment_id: payment,
            order_id: order,
            customer_id: customer,
            amount: eur(2294),
            gateway: "simulator".into(),
            card_fingerprint: card.fingerprint.clone(),
            auth_code: "A1B2C3".into(),
        }
        .into(),
        PaymentFailed {
            payment_id: payment,
            order_id: order,
            customer_id: customer,
            amount: eur(2294),
            gateway: "simulator".into(),
            card_fingerprint: card.fingerprint.clone(),
            reason: DeclineReason::InsufficientFunds,
        }
        .into(),
        PaymentRefunded {
            payment_id: payment,
            order_id: order,
            customer_id: customer,
            amount: eur(2294),
            reason: "returned".into(),
        }
        .into(),
        ShipmentCreated {
            shipment_id: shipment,
            order_id: order,
            customer_id: customer,
            carrier: "carrier-simulator".into(),
            service_level: "standard".into(),
            destination_country: country("DE"),
            zone: 1,
            weight_grams: 180,
            cost: eur(495),
            tracking_number: "SIM000000123".into(),
        }
        .into(),
        ShipmentDelivered {
            shipment_id: shipment,
            order_id: order,
            customer_id: customer,
            delivered_at: t + chrono::Duration::days(2),
        }
        .into(),
        ReviewPosted {
            review_id: id(11),
            product_id: product,
            customer_id: customer,
            rating: Rating::new(5).expect("valid"),
            title: "Great fit".into(),
            body: "Soft fabric, true to size.".into(),
            verified_purchase: true,
        }
        .into(),
        FraudAlertRaised {
            alert_id: id(12),
            order_id: Some(order),
            customer_id: customer,
            score: FraudScore::new(81).expect("valid"),
            action: AlertAction::Block,
            rules_fired: vec!["card_testing".into(), "new_account_high_value".into()],
            features: vec![Feature {
                name: "declines_10m".into(),
                value: 7.0,
            }],
            model_version: Some("logreg-0001".into()),
        }
        .into(),
        FraudAlertResolved {
            alert_id: id(12),
            order_id: Some(order),
            customer_id: customer,
            resolution: Resolution::MarkedFraud,
            reviewer_id: id(13),
            note: Some("card testing pattern confirmed".into()),
        }
        .into(),
        AnomalyDetected {
            anomaly_id: id(14),
            series: "payment_failure_rate{gateway=simulator}".into(),
            method: "ewma_zscore".into(),
            window_start: t,
            window_end: t + chrono::Duration::minutes(1),
            observed: 0.42,
            expected_low: 0.01,
            expected_high: 0.06,
            score: 9.3,
            explanation: "failure rate 42% against an expected 1-6%".into(),
        }
        .into(),
    ]
}
