//! The event contract as consumers rely on it: every event round-trips through its
//! CloudEvents envelope, bad records give typed errors (never panics), the checked-in JSON
//! Schemas match the Rust types, and every event has an Arrow schema.

use std::collections::HashSet;
use std::path::Path;

use arrow_schema::DataType;
use events::schema::{arrow_schema_for, check_schema_dir, envelope_fields};
use events::{CATALOGUE, DecodeError, EVENT_TYPES, Envelope, Event, TopicNames, header, samples};
use proptest::prelude::*;

fn encode(env: &Envelope) -> (Vec<(&'static str, String)>, Vec<u8>) {
    (env.headers(), env.payload())
}

fn decode(headers: &[(&str, String)], payload: &[u8]) -> Result<Envelope, DecodeError> {
    Envelope::decode(
        headers.iter().map(|(k, v)| (*k, Some(v.as_bytes()))),
        Some(payload),
    )
}

#[test]
fn one_sample_per_event_type_in_declaration_order() {
    let types: Vec<&str> = samples().iter().map(Event::event_type).collect();
    assert_eq!(types, EVENT_TYPES);
    assert_eq!(EVENT_TYPES.len(), 25);
    let unique: HashSet<_> = EVENT_TYPES.iter().collect();
    assert_eq!(unique.len(), EVENT_TYPES.len());
    for t in EVENT_TYPES {
        assert!(t.ends_with(".v1"), "{t} is not versioned");
    }
}

#[test]
fn every_event_topic_is_in_the_catalogue() {
    for e in samples() {
        let topic = e.topic();
        assert!(CATALOGUE.iter().any(|s| s.topic == topic), "{topic:?}");
        assert_eq!(Event::topic_of(e.event_type()), Some(topic));
        assert!(!e.key().is_empty());
    }
    assert_eq!(
        TopicNames::new("p.").name(events::Topic::Orders),
        "p.orders"
    );
}

#[test]
fn every_sample_round_trips_through_the_envelope() {
    for e in samples() {
        let sent = Envelope::new("/shopstream/test", e);
        assert_eq!(sent.id.get_version_num(), 7, "ids are UUIDv7");
        let (headers, payload) = encode(&sent);
        let names: Vec<&str> = headers.iter().map(|h| h.0).collect();
        for required in [
            header::ID,
            header::TYPE,
            header::SOURCE,
            header::TIME,
            header::SPECVERSION,
            header::CONTENT_TYPE,
        ] {
            assert!(names.contains(&required), "{required} missing");
        }
        let got = decode(&headers, &payload).expect("decodes");
        assert_eq!(got, sent);
    }
}

#[test]
fn money_is_integer_minor_units_with_currency_on_the_wire() {
    let order = samples()
        .into_iter()
        .find(|e| e.event_type() == "order.placed.v1")
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&order.to_json()).unwrap();
    assert_eq!(
        json["total"],
        serde_json::json!({"amount_minor": 2294, "currency": "EUR"})
    );
}

fn sample_record(event_type: &str) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let e = samples()
        .into_iter()
        .find(|e| e.event_type() == event_type)
        .unwrap();
    encode(&Envelope::new("/t", e))
}

fn without(headers: &[(&'static str, String)], name: &str) -> Vec<(&'static str, String)> {
    headers.iter().filter(|h| h.0 != name).cloned().collect()
}

fn with(
    headers: &[(&'static str, String)],
    name: &'static str,
    v: &str,
) -> Vec<(&'static str, String)> {
    let mut h = without(headers, name);
    h.push((name, v.to_owned()));
    h
}

#[test]
fn bad_records_give_typed_errors() {
    let (h, p) = sample_record("cart.item_added.v1");
    for name in [
        header::ID,
        header::TYPE,
        header::SOURCE,
        header::TIME,
        header::SPECVERSION,
    ] {
        match decode(&without(&h, name), &p) {
            Err(DecodeError::MissingHeader(n)) => assert_eq!(n, name),
            other => panic!("without {name}: {other:?}"),
        }
    }
    assert!(matches!(
        decode(&with(&h, header::SPECVERSION, "0.3"), &p),
        Err(DecodeError::UnsupportedSpecVersion(_))
    ));
    assert!(matches!(
        decode(&with(&h, header::ID, "not-a-uuid"), &p),
        Err(DecodeError::InvalidHeader { name: "ce_id", .. })
    ));
    assert!(matches!(
        decode(&with(&h, header::TIME, "yesterday"), &p),
        Err(DecodeError::InvalidHeader {
            name: "ce_time",
            ..
        })
    ));
    assert!(matches!(
        decode(&with(&h, header::TYPE, "cart.item_added.v9"), &p),
        Err(DecodeError::UnknownEventType(_))
    ));
    assert!(matches!(
        decode(&with(&h, header::CONTENT_TYPE, "application/avro"), &p),
        Err(DecodeError::UnsupportedContentType(_))
    ));
    assert!(matches!(
        decode(&h, b""),
        Err(DecodeError::EmptyPayload { .. })
    ));
    assert!(matches!(
        Envelope::decode(h.iter().map(|(k, v)| (*k, Some(v.as_bytes()))), None),
        Err(DecodeError::EmptyPayload { .. })
    ));
    let bad_utf8 = Envelope::decode(
        h.iter().map(|(k, v)| {
            (
                *k,
                Some(if *k == header::SOURCE {
                    &b"\xff\xfe"[..]
                } else {
                    v.as_bytes()
                }),
            )
        }),
        Some(&p),
    );
    assert!(matches!(
        bad_utf8,
        Err(DecodeError::InvalidHeader {
            name: "ce_source",
            ..
        })
    ));

    // Payloads that break the schema.
    let json: serde_json::Value = serde_json::from_slice(&p).unwrap();
    let mutate = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut j = json.clone();
        f(&mut j);
        decode(&h, &serde_json::to_vec(&j).unwrap())
    };
    for (what, result) in [
        ("garbage", decode(&h, b"{not json")),
        ("zero quantity", mutate(&|j| j["quantity"] = 0.into())),
        (
            "negative quantity",
            mutate(&|j| j["quantity"] = (-2).into()),
        ),
        (
            "bad currency",
            mutate(&|j| j["unit_price"]["currency"] = "euro".into()),
        ),
        (
            "float money",
            mutate(&|j| j["unit_price"]["amount_minor"] = 17.99.into()),
        ),
        ("bad sku", mutate(&|j| j["sku"] = "x".into())),
        ("unknown field", mutate(&|j| j["surprise"] = true.into())),
        (
            "missing field",
            mutate(&|j| {
                j.as_object_mut().unwrap().remove("cart_id");
            }),
        ),
        ("wrong type", mutate(&|j| j["cart_id"] = 7.into())),
    ] {
        match result {
            Err(DecodeError::InvalidPayload { event_type, .. }) => {
                assert_eq!(event_type, "cart.item_added.v1", "{what}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

#[test]
fn checked_in_json_schemas_match_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let drift = check_schema_dir(&dir).expect("schemas dir readable");
    assert!(
        drift.is_empty(),
        "events/schemas drifted from the Rust types: {drift:?}\n\
         regenerate with `cargo run -p shopstream -- events schemas --write` and review the diff"
    );
}

#[test]
fn every_event_has_an_arrow_schema_led_by_the_envelope_columns() {
    let envelope: Vec<String> = envelope_fields().iter().map(|f| f.name().clone()).collect();
    for t in EVENT_TYPES {
        let schema = arrow_schema_for(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
        assert_eq!(
            names[..envelope.len()],
            envelope.iter().collect::<Vec<_>>()[..],
            "{t}"
        );
        let unique: HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{t}: duplicate column");
    }
    let order = arrow_schema_for("order.placed.v1").unwrap();
    let total = order.field_with_name("total").unwrap();
    let DataType::Struct(money) = total.data_type() else {
        panic!("money is a struct")
    };
    assert_eq!(money[0].name(), "amount_minor");
    assert_eq!(money[0].data_type(), &DataType::Int64);
    assert_eq!(money[1].data_type(), &DataType::Utf8);
    assert!(!total.is_nullable());
    assert!(order.field_with_name("coupon").unwrap().is_nullable());
    let DataType::List(line) = order.field_with_name("lines").unwrap().data_type() else {
        panic!("lines is a list")
    };
    assert!(matches!(line.data_type(), DataType::Struct(_)));
    let reserved = arrow_schema_for("inventory.reserved.v1").unwrap();
    assert!(matches!(
        reserved.field_with_name("expires_at").unwrap().data_type(),
        DataType::Timestamp(_, Some(_))
    ));
    assert_eq!(
        reserved.field_with_name("quantity").unwrap().data_type(),
        &DataType::UInt32
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        type_index in 0..EVENT_TYPES.len(),
        id in proptest::collection::vec(any::<u8>(), 0..40),
        time in ".{0,40}",
    ) {
        let headers: Vec<(&str, Option<&[u8]>)> = vec![
            (header::SPECVERSION, Some(b"1.0")),
            (header::ID, Some(&id)),
            (header::TYPE, Some(EVENT_TYPES[type_index].as_bytes())),
            (header::SOURCE, Some(b"/fuzz")),
            (header::TIME, Some(time.as_bytes())),
        ];
        let _ = Envelope::decode(headers, Some(&payload));
    }

    #[test]
    fn mutated_json_payloads_never_panic(
        index in 0..25usize,
        cut in 0usize..400,
        byte in any::<u8>(),
    ) {
        let sent = Envelope::new("/fuzz", samples()[index].clone());
        let (h, mut p) = encode(&sent);
        if cut < p.len() { p[cut] = byte; } else { p.truncate(cut % (p.len() + 1)); }
        let _ = decode(&h, &p);
    }

    #[test]
    fn orders_round_trip_for_any_amounts_and_text(
        amounts in proptest::collection::vec(any::<i64>(), 5),
        qty in 1u32..,
        coupon in proptest::option::of(".{0,20}"),
        ip in "\\PC{0,30}",
        nanos in 0u32..1_000_000_000,
        secs in 0i64..4_000_000_000,
    ) {
        let Event::OrderPlaced(mut o) = samples()[10].clone() else { panic!("sample 10 is order.placed") };
        o.subtotal.amount_minor = amounts[0];
        o.discount.amount_minor = amounts[1];
        o.shipping.amount_minor = amounts[2];
        o.tax.amount_minor = amounts[3];
        o.total.amount_minor = amounts[4];
        o.lines[0].quantity = events::Quantity::new(qty).unwrap();
        o.coupon = coupon;
        o.ip = ip;
        let time = chrono::DateTime::from_timestamp(secs, nanos).unwrap();
        let sent = Envelope::new("/prop", o).with_time(time);
        let (h, p) = encode(&sent);
        prop_assert_eq!(decode(&h, &p).unwrap(), sent);
    }

    #[test]
    fn anomalies_round_trip_for_any_finite_values(
        observed in -1e12f64..1e12,
        low in -1e12f64..1e12,
        explanation in "\\PC{0,60}",
    ) {
        let Event::AnomalyDetected(mut a) = samples()[24].clone() else { panic!("sample 24 is anomaly") };
        a.observed = observed;
        a.expected_low = low;
        a.explanation = explanation;
        let sent = Envelope::new("/prop", a);
        let (h, p) = encode(&sent);
        prop_assert_eq!(decode(&h, &p).unwrap(), sent);
    }
}
