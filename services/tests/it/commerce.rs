//! Catalog, inventory, cart and the checkout saga with each of its compensations, on real
//! PostgreSQL; and 200 buyers racing for 10 units.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use services::ServicesConfig;
use sqlx::PgPool;
use uuid::Uuid;

use crate::support::{TestApp, error_fields};

const GOOD_CARD: &str = "4242 4242 4242 4242";

/// A vendor's product with `stock` units; returns its id.
async fn product(
    app: &TestApp,
    vendor: &str,
    sku: &str,
    price: i64,
    stock: i64,
    weight: i64,
) -> String {
    let r = app
        .call(
            Method::POST,
            "/v1/products",
            Some(json!({
                "sku": sku, "category": "apparel", "names": {"en": format!("Product {sku}"), "de": "Produkt"},
                "attributes": {"colour": "red"}, "price": {"amount_minor": price, "currency": "EUR"},
                "weight_grams": weight
            })),
            Some(vendor),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let r = app
        .call(
            Method::POST,
            &format!("/v1/inventory/{sku}/adjust"),
            Some(json!({"delta": stock, "reason": "receipt"})),
            Some(vendor),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["available"], stock);
    id
}

async fn add_to_cart(app: &TestApp, token: &str, product: &str, qty: i64) -> Value {
    let r = app
        .call(
            Method::POST,
            "/v1/cart/items",
            Some(json!({"product_id": product, "quantity": qty})),
            Some(token),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    r.json
}

async fn checkout(
    app: &TestApp,
    token: &str,
    key: &str,
    card: &str,
    country: &str,
) -> (StatusCode, Value) {
    let body = json!({"card_number": card, "billing_country": "DE", "shipping_country": country});
    let r = app.checkout(token, key, &body).await;
    (r.status, r.json)
}

async fn stock(app: &TestApp, sku: &str) -> (i64, i64) {
    sqlx::query_as("SELECT on_hand, reserved FROM inventory.stock WHERE sku = $1")
        .bind(sku)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn event_types(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM outbox.events ORDER BY seq")
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

/// The outbox's events of one type in the order written, decoded under the contract.
async fn decoded(app: &TestApp, event_type: &str) -> Vec<events::Event> {
    let payloads: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT payload FROM outbox.events WHERE event_type = $1 ORDER BY seq")
            .bind(event_type)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    payloads
        .iter()
        .map(|p| events::Event::from_json(event_type, p).unwrap())
        .collect()
}

#[sqlx::test(migrations = false)]
async fn catalog_rules_validation_ownership_paging_and_price_history(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let (_, rival) = app.quick_user("vendor").await;
    let (_, customer) = app.quick_user("customer").await;
    let body = json!({"sku": "SHIRT-1", "category": "apparel", "names": {"en": "Shirt"},
        "price": {"amount_minor": 1999, "currency": "EUR"}, "weight_grams": 200});
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/products",
            Some(body.clone()),
            Some(&customer)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call(Method::POST, "/v1/products", Some(body.clone()), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .call(
            Method::POST,
            "/v1/products",
            Some(body.clone()),
            Some(&vendor),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.call(Method::POST, "/v1/products", Some(body), Some(&vendor))
            .await
            .status,
        StatusCode::CONFLICT
    );

    let bad = json!({"sku": "x", "category": "", "names": {}, "price": {"amount_minor": -5, "currency": "EUR"}, "weight_grams": 0});
    let r = app
        .call(Method::POST, "/v1/products", Some(bad), Some(&vendor))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.json);
    let bad = json!({"sku": "OK-SKU", "category": "c", "names": {"en": "n"}, "price": {"amount_minor": -5, "currency": "EUR"}, "weight_grams": 0});
    let r = app
        .call(Method::POST, "/v1/products", Some(bad), Some(&vendor))
        .await;
    assert_eq!(
        error_fields(&r.json),
        ["price.amount_minor", "weight_grams"]
    );

    let cached = app
        .call(Method::GET, &format!("/v1/products/{id}"), None, None)
        .await;
    assert_eq!(cached.json["price"]["amount_minor"], 1999);
    let patch = json!({"price": {"amount_minor": 1799, "currency": "EUR"}});
    assert_eq!(
        app.call(
            Method::PATCH,
            &format!("/v1/products/{id}"),
            Some(patch.clone()),
            Some(&rival)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let r = app
        .call(
            Method::PATCH,
            &format!("/v1/products/{id}"),
            Some(patch),
            Some(&vendor),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["price"]["amount_minor"], 1799);
    assert_eq!(
        app.count("SELECT count(*) FROM catalog.price_history")
            .await,
        2
    );
    assert_eq!(
        event_types(&app).await,
        ["product.created.v1", "price.changed.v1"]
    );
    assert_eq!(
        app.call(
            Method::GET,
            &format!("/v1/products/{}", Uuid::now_v7()),
            None,
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    for i in 0..4 {
        let b = json!({"sku": format!("PAGE-{i}"), "category": "paging", "names": {"en": "p"},
            "price": {"amount_minor": 100, "currency": "EUR"}, "weight_grams": 1});
        app.call(Method::POST, "/v1/products", Some(b), Some(&vendor))
            .await;
    }
    let mut seen = Vec::new();
    let mut uri = "/v1/products?category=paging&limit=3".to_owned();
    loop {
        let page = app.call(Method::GET, &uri, None, None).await.json;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["sku"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => uri = format!("/v1/products?category=paging&limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["PAGE-0", "PAGE-1", "PAGE-2", "PAGE-3"]);
    assert_eq!(
        app.call(Method::GET, "/v1/products?limit=0", None, None)
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.call(Method::GET, "/v1/products?cursor=garbage", None, None)
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[sqlx::test(migrations = false)]
async fn carts_are_private_priced_by_the_server_and_refuse_bad_quantities(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let p = product(&app, &vendor, "MUG-1", 850, 5, 300).await;
    let (_, alice) = app.quick_user("customer").await;
    let (_, bob) = app.quick_user("customer").await;
    let cart = add_to_cart(&app, &alice, &p, 2).await;
    assert_eq!(
        cart["subtotal"],
        json!({"amount_minor": 1700, "currency": "EUR"})
    );
    // A second add grows the line; the reply is the cart as the add left it.
    let cart = add_to_cart(&app, &alice, &p, 1).await;
    assert_eq!(cart["lines"].as_array().unwrap().len(), 1, "{cart}");
    assert_eq!(cart["lines"][0]["quantity"], 3);
    assert_eq!(cart["item_count"], 3);
    // Each add's event names the product's SKU and price as the server read them.
    let added: Vec<(String, u32, Value)> = decoded(&app, "cart.item_added.v1")
        .await
        .into_iter()
        .map(|e| match e {
            events::Event::CartItemAdded(a) => (
                a.sku.as_str().to_owned(),
                a.quantity.get(),
                serde_json::to_value(a.unit_price).unwrap(),
            ),
            other => panic!("not an add: {other:?}"),
        })
        .collect();
    let price = json!({"amount_minor": 850, "currency": "EUR"});
    assert_eq!(
        added,
        [
            ("MUG-1".to_owned(), 2, price.clone()),
            ("MUG-1".to_owned(), 1, price)
        ]
    );
    let r = app
        .call(
            Method::POST,
            "/v1/cart/items",
            Some(json!({"product_id": p, "quantity": 98})),
            Some(&alice),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "at most 100 in a line: {}",
        r.json
    );
    for qty in [0, -1, 101] {
        let r = app
            .call(
                Method::POST,
                "/v1/cart/items",
                Some(json!({"product_id": p, "quantity": qty})),
                Some(&alice),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "quantity {qty}");
    }
    let r = app
        .call(
            Method::POST,
            "/v1/cart/items",
            Some(json!({"product_id": Uuid::now_v7(), "quantity": 1})),
            Some(&alice),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call(
            Method::POST,
            "/v1/cart/items",
            Some(json!({"product_id": p, "quantity": 1, "price": 1})),
            Some(&alice),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "clients cannot send prices"
    );
    let bobs = app
        .call(Method::GET, "/v1/cart", None, Some(&bob))
        .await
        .json;
    assert_eq!(bobs["lines"], json!([]));
    let r = app
        .call(
            Method::DELETE,
            &format!("/v1/cart/items/{p}"),
            None,
            Some(&bob),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "bob cannot touch alice's cart"
    );
    let r = app
        .call(
            Method::DELETE,
            &format!("/v1/cart/items/{p}"),
            None,
            Some(&alice),
        )
        .await;
    assert_eq!(r.json["lines"], json!([]));
    assert_eq!(
        app.count("SELECT count(*) FROM outbox.events WHERE event_type LIKE 'cart.%'")
            .await,
        3,
        "two adds and a removal; nothing for the refused ones"
    );
}

/// `POST /v1/cart/items` of `quantity` units of `product`.
fn add_request(token: &str, product: &str, quantity: i64) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::post("/v1/cart/items")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            json!({"product_id": product, "quantity": quantity}).to_string(),
        ))
        .unwrap()
}

/// A cart's lines as (SKU, quantity), in the order added.
fn cart_lines(cart: &Value) -> Vec<(String, i64)> {
    cart["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("not a cart: {cart}"))
        .iter()
        .map(|l| {
            (
                l["sku"].as_str().unwrap().to_owned(),
                l["quantity"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Concurrent adds to cart share statements (services::cart::batch): while one waits on a
/// lock, the others queue and then go together, each answered with its own cart as the add
/// left it. Two adds to one cart never share a statement. A statement that fails is run
/// again add by add: only the refused add fails.
#[sqlx::test(migrations = false)]
async fn concurrent_adds_to_cart_share_statements_and_a_refused_add_fails_alone(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let a = product(&app, &vendor, "ADD-A", 1000, 10, 100).await;
    let b = product(&app, &vendor, "ADD-B", 500, 10, 100).await;
    let (u1_id, u1) = app.quick_user("customer").await;
    let (u2_id, u2) = app.quick_user("customer").await;
    let (_, u3) = app.quick_user("customer").await;
    let (u4_id, u4) = app.quick_user("customer").await;
    add_to_cart(&app, &u1, &b, 1).await;
    add_to_cart(&app, &u4, &b, 99).await;
    let before = app.state.cart_adder.get().unwrap().stats();

    // The first add waits on a lock; four others queue behind it. u1's second add shares a
    // cart with its first, which is not in the same statement; u2's two adds are.
    let nowhere = Uuid::now_v7().to_string();
    let answers = requests_queued_behind(
        &app,
        "carts.items",
        &app.state.cart_adder,
        vec![
            add_request(&u1, &a, 2),
            add_request(&u2, &a, 1),
            add_request(&u3, &nowhere, 1),
            add_request(&u1, &a, 1),
            add_request(&u2, &b, 1),
        ],
    )
    .await;
    let stats = app.state.cart_adder.get().unwrap().stats();
    // [u1] alone, then [u2, u3, u1], then [u2].
    assert_eq!(
        (
            stats.batches - before.batches,
            stats.failed_batches,
            stats.largest
        ),
        (3, 0, 3),
        "{stats:?}"
    );
    for (i, (status, _)) in answers.iter().enumerate() {
        let want = if i == 2 {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(*status, want, "add {i}: {:?}", answers[i]);
    }
    let s = |sku: &str, q: i64| (sku.to_owned(), q);
    assert_eq!(cart_lines(&answers[0].1), [s("ADD-B", 1), s("ADD-A", 2)]);
    assert_eq!(cart_lines(&answers[1].1), [s("ADD-A", 1)]);
    assert_eq!(cart_lines(&answers[3].1), [s("ADD-B", 1), s("ADD-A", 3)]);
    assert_eq!(cart_lines(&answers[4].1), [s("ADD-A", 1), s("ADD-B", 1)]);
    assert_eq!(
        answers[3].1["total"],
        json!({"amount_minor": 3500, "currency": "EUR"})
    );
    // Each answer is the cart as it stands after it (read alone now).
    for (i, token) in [(3, &u1), (4, &u2)] {
        let now = app.call(Method::GET, "/v1/cart", None, Some(token)).await;
        assert_eq!(now.json, answers[i].1);
    }
    // One event per add made, each for its cart with its product's SKU and price; none for
    // the refused. u2's and u1's adds of A shared a statement.
    let added: Vec<(Uuid, String, u32, i64)> = decoded(&app, "cart.item_added.v1")
        .await
        .into_iter()
        .map(|e| match e {
            events::Event::CartItemAdded(a) => (
                a.cart_id,
                a.sku.as_str().to_owned(),
                a.quantity.get(),
                a.unit_price.amount_minor,
            ),
            other => panic!("not an add: {other:?}"),
        })
        .collect();
    let e = |cart: Uuid, sku: &str, q: u32, price: i64| (cart, sku.to_owned(), q, price);
    assert_eq!(
        added,
        [
            e(u1_id, "ADD-B", 1, 500),
            e(u4_id, "ADD-B", 99, 500),
            e(u1_id, "ADD-A", 2, 1000),
            e(u2_id, "ADD-A", 1, 1000),
            e(u1_id, "ADD-A", 1, 1000),
            e(u2_id, "ADD-B", 1, 500)
        ]
    );

    // u4's add would make 101 of B: its statement is refused, and each of its adds runs
    // alone. u4 is told why; u2's add goes through; nothing of u4's is written.
    let answers = requests_queued_behind(
        &app,
        "carts.items",
        &app.state.cart_adder,
        vec![
            add_request(&u3, &a, 1),
            add_request(&u4, &b, 2),
            add_request(&u2, &b, 1),
        ],
    )
    .await;
    let after = app.state.cart_adder.get().unwrap().stats();
    assert_eq!(
        (after.batches - stats.batches, after.failed_batches),
        (2, 1),
        "{after:?}"
    );
    assert_eq!(answers[0].0, StatusCode::OK, "{:?}", answers[0]);
    assert_eq!(cart_lines(&answers[0].1), [s("ADD-A", 1)]);
    assert_eq!(
        answers[1].0,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        answers[1]
    );
    assert_eq!(answers[2].0, StatusCode::OK, "{:?}", answers[2]);
    assert_eq!(cart_lines(&answers[2].1), [s("ADD-A", 1), s("ADD-B", 2)]);
    let u4_cart = app.call(Method::GET, "/v1/cart", None, Some(&u4)).await;
    assert_eq!(cart_lines(&u4_cart.json), [s("ADD-B", 99)]);
    assert_eq!(
        app.count("SELECT count(*) FROM outbox.events WHERE event_type = 'cart.item_added.v1'")
            .await,
        8,
        "the six before and two of these three"
    );
}

#[sqlx::test(migrations = false)]
async fn a_checkout_confirms_and_a_retry_returns_the_same_order(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let p = product(&app, &vendor, "LAMP-1", 4999, 3, 1500).await;
    let (buyer_id, buyer) = app.quick_user("customer").await;
    add_to_cart(&app, &buyer, &p, 2).await;
    let before = event_types(&app).await.len();

    let (status, order) = checkout(&app, &buyer, "key-1", GOOD_CARD, "DE").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["customer_id"], buyer_id.to_string());
    assert_eq!(order["subtotal"]["amount_minor"], 9998);
    assert_eq!(order["shipping"]["amount_minor"], 695, "3 kg to DE");
    assert_eq!(order["total"]["amount_minor"], 10693);
    assert_eq!(stock(&app, "LAMP-1").await, (1, 0));
    let paid: String = sqlx::query_scalar("SELECT status FROM payments.payments")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(paid, "captured");
    assert_eq!(app.count("SELECT count(*) FROM carts.items").await, 0);
    let events = event_types(&app).await[before..].to_vec();
    assert_eq!(
        events,
        [
            "order.placed.v1",
            "inventory.reserved.v1",
            "payment.authorized.v1",
            "shipment.created.v1",
            "inventory.adjusted.v1",
            "order.confirmed.v1"
        ]
    );

    let (status, again) = checkout(&app, &buyer, "key-1", GOOD_CARD, "DE").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, order);
    assert_eq!(app.count("SELECT count(*) FROM orders.orders").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM payments.payments").await, 1);

    // Someone else's order does not exist for you; your own does.
    let (_, other) = app.quick_user("customer").await;
    let id = order["order_id"].as_str().unwrap();
    assert_eq!(
        app.call(Method::GET, &format!("/v1/orders/{id}"), None, Some(&other))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::GET, &format!("/v1/orders/{id}"), None, Some(&buyer))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.call(Method::GET, "/v1/orders", None, Some(&buyer))
            .await
            .json["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// A cart of several products: all of it is held and sold, each SKU's sale event carries the
/// level the confirmation left; when one line is short, nothing of the order is held.
#[sqlx::test(migrations = false)]
async fn a_cart_of_several_products_checks_out_whole_or_not_at_all(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let mug = product(&app, &vendor, "MUG-1", 900, 5, 300).await;
    let tea = product(&app, &vendor, "TEA-1", 450, 1, 100).await;
    let (_, buyer) = app.quick_user("customer").await;
    add_to_cart(&app, &buyer, &mug, 2).await;
    let cart = add_to_cart(&app, &buyer, &tea, 1).await;
    assert_eq!(cart["item_count"], 3);
    let before = event_types(&app).await.len();

    let (status, order) = checkout(&app, &buyer, "two-lines", GOOD_CARD, "DE").await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["lines"].as_array().unwrap().len(), 2);
    assert_eq!(order["subtotal"]["amount_minor"], 2 * 900 + 450);
    assert_eq!(stock(&app, "MUG-1").await, (3, 0));
    assert_eq!(stock(&app, "TEA-1").await, (0, 0));
    assert_eq!(app.count("SELECT count(*) FROM carts.items").await, 0);
    let events = event_types(&app).await[before..].to_vec();
    assert_eq!(
        events,
        [
            "order.placed.v1",
            "inventory.reserved.v1",
            "inventory.reserved.v1",
            "payment.authorized.v1",
            "shipment.created.v1",
            "inventory.adjusted.v1",
            "inventory.adjusted.v1",
            "order.confirmed.v1"
        ]
    );
    // The sale events decode under the contract and carry the levels the sale left.
    let mut sales: Vec<(String, i64, i64)> = decoded(&app, "inventory.adjusted.v1")
        .await
        .into_iter()
        .map(|e| match e {
            events::Event::InventoryAdjusted(a) => {
                (a.sku.as_str().to_owned(), a.delta, a.on_hand_after)
            }
            other => panic!("not an adjustment: {other:?}"),
        })
        .filter(|(_, delta, _)| *delta < 0)
        .collect();
    sales.sort();
    assert_eq!(
        sales,
        [("MUG-1".to_owned(), -2, 3), ("TEA-1".to_owned(), -1, 0)]
    );

    // Tea is sold out: the second order's mug is not held either.
    let (_, other) = app.quick_user("customer").await;
    add_to_cart(&app, &other, &mug, 1).await;
    add_to_cart(&app, &other, &tea, 1).await;
    let (_, o) = checkout(&app, &other, "short", GOOD_CARD, "DE").await;
    assert_eq!(
        (o["status"].as_str(), o["cancel_reason"].as_str()),
        (Some("cancelled"), Some("out_of_stock")),
        "{o}"
    );
    assert_eq!(stock(&app, "MUG-1").await, (3, 0));
    assert_eq!(
        app.count("SELECT count(*) FROM inventory.reservations WHERE state = 'held'")
            .await,
        0
    );
}

#[sqlx::test(migrations = false)]
async fn bad_checkout_input_is_refused_before_anything_is_written(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let p = product(&app, &vendor, "BOOK-1", 1200, 3, 400).await;
    let (_, buyer) = app.quick_user("customer").await;
    let (status, _) = checkout(&app, &buyer, "k", GOOD_CARD, "DE").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "empty cart");
    add_to_cart(&app, &buyer, &p, 1).await;
    let (status, body) = checkout(&app, &buyer, "k", "4242 4242 4242 4241", "Germany").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&body), ["card_number", "shipping_country"]);
    let (status, _) = checkout(&app, &buyer, "k", GOOD_CARD, "KP").await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no carrier to this destination"
    );
    let r = app.call(Method::POST, "/v1/checkout", Some(json!({"card_number": GOOD_CARD, "billing_country": "DE", "shipping_country": "DE"})), Some(&buyer)).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "Idempotency-Key is required"
    );
    assert_eq!(app.count("SELECT count(*) FROM orders.orders").await, 0);
    assert_eq!(stock(&app, "BOOK-1").await, (3, 0));
}

/// Each failing step of the saga and its compensation.
#[sqlx::test(migrations = false)]
async fn every_failed_step_is_compensated(pool: PgPool) {
    let cfg = ServicesConfig {
        payment_timeout_ms: 50,
        ..ServicesConfig::default()
    };
    let app = TestApp::with_config(pool, cfg).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let light = product(&app, &vendor, "LIGHT-1", 1000, 2, 500).await;
    let heavy = product(&app, &vendor, "ANVIL-1", 9000, 2, 40_000).await;
    let (_, buyer) = app.quick_user("customer").await;

    // Stock step: more than there is.
    add_to_cart(&app, &buyer, &light, 3).await;
    let (_, o) = checkout(&app, &buyer, "oos", GOOD_CARD, "DE").await;
    assert_eq!(
        (o["status"].as_str(), o["cancel_reason"].as_str()),
        (Some("cancelled"), Some("out_of_stock"))
    );
    assert_eq!(stock(&app, "LIGHT-1").await, (2, 0));
    assert_eq!(
        app.count("SELECT count(*) FROM payments.payments").await,
        0,
        "no payment attempted"
    );
    app.call(
        Method::DELETE,
        &format!("/v1/cart/items/{light}"),
        None,
        Some(&buyer),
    )
    .await;

    // Payment step: a declined card, a gateway timeout, a processing error.
    add_to_cart(&app, &buyer, &light, 1).await;
    for (key, card, reason) in [
        ("declined", "4000 0000 0000 9995", "payment_declined"),
        (
            "timeout",
            "4000 0000 0000 0341",
            "payment_gateway_unavailable",
        ),
        (
            "error",
            "4000 0000 0000 0119",
            "payment_gateway_unavailable",
        ),
    ] {
        let (_, o) = checkout(&app, &buyer, key, card, "DE").await;
        assert_eq!(o["status"], "cancelled", "{key}");
        assert_eq!(o["cancel_reason"], reason, "{key}");
        assert_eq!(
            stock(&app, "LIGHT-1").await,
            (2, 0),
            "{key}: stock released"
        );
    }
    let failed: Vec<String> =
        sqlx::query_scalar("SELECT decline_reason FROM payments.payments ORDER BY created_at")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        failed,
        ["insufficient_funds", "gateway_timeout", "processing_error"]
    );
    app.call(
        Method::DELETE,
        &format!("/v1/cart/items/{light}"),
        None,
        Some(&buyer),
    )
    .await;

    // Shipping step: the carrier refuses a 40 kg parcel after payment was authorized.
    add_to_cart(&app, &buyer, &heavy, 1).await;
    let (_, o) = checkout(&app, &buyer, "heavy", GOOD_CARD, "DE").await;
    assert_eq!(
        (o["status"].as_str(), o["cancel_reason"].as_str()),
        (Some("cancelled"), Some("shipping_unavailable"))
    );
    assert_eq!(stock(&app, "ANVIL-1").await, (2, 0));
    let voided: String =
        sqlx::query_scalar("SELECT status FROM payments.payments WHERE amount_minor > 9000")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(voided, "voided");
    let events = event_types(&app).await;
    assert!(events.contains(&"payment.refunded.v1".to_owned()));
    assert_eq!(
        events.iter().filter(|e| *e == "order.cancelled.v1").count(),
        5
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "inventory.released.v1")
            .count(),
        4
    );
    assert_eq!(
        app.count("SELECT count(*) FROM orders.orders WHERE status = 'confirmed'")
            .await,
        0
    );
}

/// When the confirmation cannot be written (here PostgreSQL refuses every shipment row),
/// none of it is: the checkout answers 500, the approved authorization is on file to be
/// voided, and the order stays placed with its stock held until the reservation expires.
#[sqlx::test(migrations = false)]
async fn a_confirmation_that_cannot_be_written_writes_none_of_it(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let p = product(&app, &vendor, "VASE-1", 2500, 3, 900).await;
    let (_, buyer) = app.quick_user("customer").await;
    add_to_cart(&app, &buyer, &p, 1).await;
    sqlx::raw_sql(
        "CREATE FUNCTION shipping.refuse() RETURNS trigger LANGUAGE plpgsql
           AS $$ BEGIN RAISE EXCEPTION 'shipments are refused'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON shipping.shipments
           FOR EACH ROW EXECUTE FUNCTION shipping.refuse();",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let before = event_types(&app).await.len();

    let (status, body) = checkout(&app, &buyer, "refused", GOOD_CARD, "DE").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let order: (String, Option<Uuid>) =
        sqlx::query_as("SELECT status, payment_id FROM orders.orders")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(order, ("placed".to_owned(), None));
    let paid: String = sqlx::query_scalar("SELECT status FROM payments.payments")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(paid, "authorized", "on file, to be voided");
    assert_eq!(stock(&app, "VASE-1").await, (3, 1), "held, not sold");
    assert_eq!(
        app.count("SELECT count(*) FROM shipping.shipments").await,
        0
    );
    assert_eq!(app.count("SELECT count(*) FROM carts.items").await, 1);
    assert_eq!(
        event_types(&app).await[before..],
        [
            "order.placed.v1",
            "inventory.reserved.v1",
            "payment.authorized.v1"
        ]
    );
}

/// Waits until a statement of this test's database waits for the lock on `table` (the
/// batch that writes to it).
async fn a_write_waits_on(app: &TestApp, table: &str) {
    for _ in 0..1000 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks
             WHERE NOT granted AND relation = $1::regclass
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(table)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no write came to wait for the lock on {table}");
}

/// Waits until a batcher of the app has had `n` jobs queued.
async fn batcher_queued<W: services::batch::Work>(
    batcher: &std::sync::OnceLock<services::batch::Batcher<W>>,
    n: u64,
) {
    for _ in 0..1000 {
        if batcher.get().map(|b| b.stats().submitted) == Some(n) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{n} {} jobs were not queued", W::NAME);
}

/// Sends a request in the background; its answer's status and body.
fn spawn_request(
    app: &TestApp,
    req: axum::http::Request<axum::body::Body>,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let router = app.router.clone();
    tokio::spawn(async move {
        let resp = tower::ServiceExt::oneshot(router, req).await.unwrap();
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
        (status, serde_json::from_slice(&body.to_bytes()).unwrap())
    })
}

/// Sends the first of `requests` and holds its batch's statement on a SHARE lock of `table`
/// until the others are queued behind it in `batcher`, in their order, then lets them all go.
/// The answers come in the requests' order.
async fn requests_queued_behind<W: services::batch::Work>(
    app: &TestApp,
    table: &str,
    batcher: &std::sync::OnceLock<services::batch::Batcher<W>>,
    requests: Vec<axum::http::Request<axum::body::Body>>,
) -> Vec<(StatusCode, Value)> {
    let before = batcher.get().map_or(0, |b| b.stats().submitted);
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {table} IN SHARE MODE"
    )))
    .execute(&mut *lock)
    .await
    .unwrap();
    let mut requests = requests.into_iter();
    let mut tasks = vec![spawn_request(app, requests.next().unwrap())];
    a_write_waits_on(app, table).await;
    batcher_queued(batcher, before + 1).await;
    // One at a time, so that they queue in the order given.
    for (i, req) in requests.enumerate() {
        tasks.push(spawn_request(app, req));
        batcher_queued(batcher, before + 2 + i as u64).await;
    }
    lock.rollback().await.unwrap();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// [`requests_queued_behind`] for checkouts, each (token, idempotency key, shipping country).
async fn checkouts_queued_behind<W: services::batch::Work>(
    app: &TestApp,
    table: &str,
    batcher: &std::sync::OnceLock<services::batch::Batcher<W>>,
    checkouts: &[(&str, String, &str)],
) -> Vec<(StatusCode, Value)> {
    let requests = checkouts
        .iter()
        .map(|(token, key, country)| {
            TestApp::checkout_request(
                token,
                key,
                &json!({"card_number": GOOD_CARD, "billing_country": "DE", "shipping_country": country}),
            )
        })
        .collect();
    requests_queued_behind(app, table, batcher, requests).await
}

fn assert_confirmed((status, order): &(StatusCode, Value)) {
    assert_eq!(*status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "confirmed", "{order}");
}

/// Concurrent checkouts are confirmed together (services::orders::batch): while one
/// confirmation waits on a lock, the others queue and then share statements. Orders of one
/// SKU never share a statement, so every sale event carries the exact level its sale left.
/// A statement that fails is confirmed again order by order: only the order whose rows are
/// refused fails.
#[sqlx::test(migrations = false)]
async fn concurrent_confirmations_share_statements_and_a_refused_order_fails_alone(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let a = product(&app, &vendor, "BATCH-A", 1000, 10, 100).await;
    let b = product(&app, &vendor, "BATCH-B", 1000, 10, 100).await;
    let mut buyers = Vec::new();
    for p in [&a, &a, &a, &a, &b, &b, &b, &b] {
        let (_, token) = app.quick_user("customer").await;
        add_to_cart(&app, &token, p, 1).await;
        buyers.push(token);
    }

    // The first confirmation waits on a lock; the seven others queue behind it.
    let checkouts: Vec<_> = buyers
        .iter()
        .enumerate()
        .map(|(i, token)| (token.as_str(), format!("batch-{i}"), "DE"))
        .collect();
    let answers =
        checkouts_queued_behind(&app, "shipping.shipments", &app.state.confirmer, &checkouts).await;
    answers.iter().for_each(assert_confirmed);
    // [A] alone, then one A and one B per statement while both last, then the last B.
    let stats = app.state.confirmer.get().unwrap().stats();
    assert_eq!(
        (stats.batches, stats.failed_batches, stats.largest),
        (5, 0, 2),
        "{stats:?}"
    );
    assert_eq!(stock(&app, "BATCH-A").await, (6, 0));
    assert_eq!(stock(&app, "BATCH-B").await, (6, 0));
    assert_eq!(
        app.count("SELECT count(*) FROM orders.orders WHERE status = 'confirmed'")
            .await,
        8
    );
    assert_eq!(
        app.count("SELECT count(*) FROM payments.payments WHERE status = 'captured'")
            .await,
        8
    );
    assert_eq!(
        app.count("SELECT count(*) FROM shipping.shipments").await,
        8
    );
    assert_eq!(app.count("SELECT count(*) FROM carts.items").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM outbox.events WHERE event_type = 'order.confirmed.v1'")
            .await,
        8
    );
    // Each SKU's sale events, in the order written, step down one unit at a time.
    let mut levels: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for e in decoded(&app, "inventory.adjusted.v1").await {
        if let events::Event::InventoryAdjusted(s) = e
            && s.delta < 0
        {
            levels
                .entry(s.sku.as_str().to_owned())
                .or_default()
                .push(s.on_hand_after);
        }
    }
    assert_eq!(levels["BATCH-A"], [9, 8, 7, 6]);
    assert_eq!(levels["BATCH-B"], [9, 8, 7, 6]);

    // PostgreSQL refuses shipments to France. An order to France
    // queues behind a blocked confirmation with one to Germany.
    sqlx::raw_sql(
        "CREATE FUNCTION shipping.refuse_fr() RETURNS trigger LANGUAGE plpgsql
           AS $$ BEGIN
             IF NEW.country = 'FR' THEN RAISE EXCEPTION 'no shipments to France'; END IF;
             RETURN NEW;
           END $$;
         CREATE TRIGGER refuse_fr BEFORE INSERT ON shipping.shipments
           FOR EACH ROW EXECUTE FUNCTION shipping.refuse_fr();",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let mut buyers = Vec::new();
    for p in [&a, &a, &b] {
        let (_, token) = app.quick_user("customer").await;
        add_to_cart(&app, &token, p, 1).await;
        buyers.push(token);
    }
    let answers = checkouts_queued_behind(
        &app,
        "shipping.shipments",
        &app.state.confirmer,
        &[
            (&buyers[0], "late-0".into(), "DE"),
            (&buyers[1], "late-1".into(), "DE"),
            (&buyers[2], "late-2".into(), "FR"),
        ],
    )
    .await;
    answers[..2].iter().for_each(assert_confirmed);
    let (status, problem) = &answers[2];
    assert_eq!(*status, StatusCode::INTERNAL_SERVER_ERROR, "{problem}");
    // The A and the French B shared a statement, which failed; each was then confirmed alone.
    let stats = app.state.confirmer.get().unwrap().stats();
    assert_eq!((stats.batches, stats.failed_batches), (7, 1), "{stats:?}");
    assert_eq!(stock(&app, "BATCH-A").await, (4, 0));
    assert_eq!(
        stock(&app, "BATCH-B").await,
        (6, 1),
        "the French order's unit stays held"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM orders.orders WHERE status = 'confirmed'")
            .await,
        10
    );
    assert_eq!(
        app.count("SELECT count(*) FROM payments.payments WHERE status = 'authorized'")
            .await,
        1,
        "the French order's authorization is on file, to be voided"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM shipping.shipments").await,
        10
    );
    assert_eq!(
        app.count("SELECT count(*) FROM outbox.events WHERE event_type = 'order.confirmed.v1'")
            .await,
        10
    );
}

/// Concurrent one-line orders are placed together (services::orders::batch), each holding
/// its stock in the shared statement. Orders of one SKU never share a statement, so the
/// stock check is exact: of two buyers for the last unit one gets it, one is told it is
/// out of stock. A statement that fails is placed again order by order: only the order
/// whose rows are refused fails, and nothing of it is written.
#[sqlx::test(migrations = false)]
async fn concurrent_placings_share_statements_and_hold_stock_exactly(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let a = product(&app, &vendor, "PLACE-A", 1000, 10, 100).await;
    let b = product(&app, &vendor, "PLACE-B", 1000, 10, 100).await;
    let c = product(&app, &vendor, "PLACE-C", 1000, 1, 100).await;
    let d = product(&app, &vendor, "PLACE-D", 1000, 5, 100).await;
    let mut buyers = Vec::new();
    for p in [&a, &a, &b, &c, &c, &a, &b, &d] {
        let (_, token) = app.quick_user("customer").await;
        add_to_cart(&app, &token, p, 1).await;
        buyers.push(token);
    }

    // The first placing waits on a lock; four others queue behind it.
    let checkouts: Vec<_> = (0..5)
        .map(|i| (buyers[i].as_str(), format!("place-{i}"), "DE"))
        .collect();
    let answers = checkouts_queued_behind(
        &app,
        "inventory.reservations",
        &app.state.placer,
        &checkouts,
    )
    .await;
    for (status, order) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{order}");
    }
    let statuses: Vec<&str> = answers
        .iter()
        .map(|(_, o)| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses[..3], ["confirmed"; 3]);
    let mut last_unit = [statuses[3], statuses[4]];
    last_unit.sort();
    assert_eq!(
        last_unit,
        ["cancelled", "confirmed"],
        "one buyer gets PLACE-C's last unit"
    );
    // [A] alone, then [A, B, C] (one of each SKU), then the second C.
    let stats = app.state.placer.get().unwrap().stats();
    assert_eq!(
        (stats.batches, stats.failed_batches, stats.largest),
        (3, 0, 3),
        "{stats:?}"
    );
    assert_eq!(stock(&app, "PLACE-A").await, (8, 0));
    assert_eq!(stock(&app, "PLACE-B").await, (9, 0));
    assert_eq!(stock(&app, "PLACE-C").await, (0, 0));
    assert_eq!(
        app.count("SELECT count(*) FROM orders.orders WHERE cancel_reason = 'out_of_stock'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM orders.lines").await, 5);
    assert_eq!(
        app.count("SELECT count(*) FROM orders.history WHERE status = 'placed'")
            .await,
        5
    );
    assert_eq!(
        app.count("SELECT count(*) FROM inventory.reservations")
            .await,
        4,
        "no reservation for the order that found no stock"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM outbox.events WHERE event_type = 'order.placed.v1'")
            .await,
        5
    );
    assert_eq!(
        app.count("SELECT count(*) FROM outbox.events WHERE event_type = 'inventory.reserved.v1'")
            .await,
        4
    );

    // PostgreSQL refuses reservations of PLACE-D. Its order queues with one for PLACE-B
    // behind a blocked placing.
    sqlx::raw_sql(
        "CREATE FUNCTION inventory.refuse_d() RETURNS trigger LANGUAGE plpgsql
           AS $$ BEGIN
             IF NEW.sku = 'PLACE-D' THEN RAISE EXCEPTION 'no reservations of PLACE-D'; END IF;
             RETURN NEW;
           END $$;
         CREATE TRIGGER refuse_d BEFORE INSERT ON inventory.reservations
           FOR EACH ROW EXECUTE FUNCTION inventory.refuse_d();",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let answers = checkouts_queued_behind(
        &app,
        "inventory.reservations",
        &app.state.placer,
        &[
            (&buyers[5], "late-0".into(), "DE"),
            (&buyers[6], "late-1".into(), "DE"),
            (&buyers[7], "late-2".into(), "DE"),
        ],
    )
    .await;
    answers[..2].iter().for_each(assert_confirmed);
    let (status, problem) = &answers[2];
    assert_eq!(*status, StatusCode::INTERNAL_SERVER_ERROR, "{problem}");
    // B and D shared a statement, which failed; each was then placed alone.
    let stats = app.state.placer.get().unwrap().stats();
    assert_eq!((stats.batches, stats.failed_batches), (5, 1), "{stats:?}");
    assert_eq!(stock(&app, "PLACE-A").await, (7, 0));
    assert_eq!(stock(&app, "PLACE-B").await, (8, 0));
    assert_eq!(
        stock(&app, "PLACE-D").await,
        (5, 0),
        "nothing held for the refused order"
    );
    assert_eq!(app.count("SELECT count(*) FROM orders.orders").await, 7);
    assert_eq!(
        app.count("SELECT count(*) FROM outbox.events WHERE event_type = 'order.placed.v1'")
            .await,
        7
    );
    assert_eq!(
        app.count("SELECT count(*) FROM carts.items").await,
        2,
        "the refused buyer's cart and the out-of-stock buyer's stay"
    );
}

#[sqlx::test(migrations = false)]
async fn the_circuit_opens_after_five_gateway_faults(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let p = product(&app, &vendor, "PEN-1", 300, 100, 20).await;
    let (_, buyer) = app.quick_user("customer").await;
    add_to_cart(&app, &buyer, &p, 1).await;
    for i in 0..5 {
        let (_, o) = checkout(
            &app,
            &buyer,
            &format!("fault-{i}"),
            "4000 0000 0000 0119",
            "DE",
        )
        .await;
        assert_eq!(o["cancel_reason"], "payment_gateway_unavailable");
    }
    // A good card now fails fast: the gateway is not even called.
    let (_, o) = checkout(&app, &buyer, "good", GOOD_CARD, "DE").await;
    assert_eq!(o["cancel_reason"], "payment_gateway_unavailable");
    let reason: String = sqlx::query_scalar("SELECT decline_reason FROM payments.payments WHERE card_fingerprint <> (SELECT card_fingerprint FROM payments.payments LIMIT 1)")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(reason, "gateway_unavailable");
}

#[sqlx::test(migrations = false)]
async fn two_hundred_buyers_for_ten_units_make_exactly_ten_orders(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let p = product(&app, &vendor, "HOT-ITEM", 2500, 10, 100).await;
    let mut buyers = Vec::new();
    for _ in 0..200 {
        let (_, token) = app.quick_user("customer").await;
        add_to_cart(&app, &token, &p, 1).await;
        buyers.push(token);
    }
    let tasks: Vec<_> = buyers
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            let router = app.router.clone();
            tokio::spawn(async move {
                let req = TestApp::checkout_request(&token, &format!("race-{i}"), &json!({"card_number": GOOD_CARD, "billing_country": "DE", "shipping_country": "DE"}));
                let resp = tower::ServiceExt::oneshot(router, req).await.unwrap();
                resp.status()
            })
        })
        .collect();
    for status in futures::future::join_all(tasks).await {
        assert_eq!(status.unwrap(), StatusCode::CREATED);
    }
    assert_eq!(
        app.count("SELECT count(*) FROM orders.orders WHERE status = 'confirmed'")
            .await,
        10
    );
    assert_eq!(
        app.count("SELECT count(*) FROM orders.orders WHERE cancel_reason = 'out_of_stock'")
            .await,
        190
    );
    assert_eq!(stock(&app, "HOT-ITEM").await, (0, 0));
    assert_eq!(
        app.count("SELECT count(*) FROM payments.payments WHERE status = 'captured'")
            .await,
        10
    );
}

#[sqlx::test(migrations = false)]
async fn promotions_and_coupons_are_applied_at_cart_and_checkout(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    let (_, admin) = app.quick_user("admin").await;
    let p = product(&app, &vendor, "SALE-1", 2000, 10, 100).await;
    let (_, buyer) = app.quick_user("customer").await;
    let window = |days_from: i64, days_to: i64| {
        let now = chrono::Utc::now();
        (
            now + chrono::Duration::days(days_from),
            now + chrono::Duration::days(days_to),
        )
    };
    let (s, e) = window(-1, 1);
    let promo = json!({"name": "Apparel week", "kind": "percent", "value": 10, "category": "apparel", "starts_at": s, "ends_at": e});
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/pricing/promotions",
            Some(promo.clone()),
            Some(&vendor)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/pricing/promotions",
            Some(promo),
            Some(&admin)
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let coupon = json!({"name": "Five off", "kind": "fixed", "value": 500, "product_id": p, "coupon_code": "save5", "starts_at": s, "ends_at": e});
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/pricing/promotions",
            Some(coupon),
            Some(&admin)
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let (s2, e2) = window(-3, -2);
    let expired = json!({"name": "Old", "kind": "percent", "value": 90, "coupon_code": "OLD90", "starts_at": s2, "ends_at": e2});
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/pricing/promotions",
            Some(expired),
            Some(&admin)
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let bad = json!({"name": "", "kind": "percent", "value": 150, "starts_at": e, "ends_at": s});
    let r = app
        .call(
            Method::POST,
            "/v1/pricing/promotions",
            Some(bad),
            Some(&admin),
        )
        .await;
    assert_eq!(error_fields(&r.json), ["name", "value", "ends_at"]);

    let cart = add_to_cart(&app, &buyer, &p, 2).await;
    assert_eq!(
        cart["lines"][0]["unit_discount"]["amount_minor"], 200,
        "10% automatically"
    );
    assert_eq!(cart["total"]["amount_minor"], 3600);
    let with_coupon = app
        .call(Method::GET, "/v1/cart?coupon=SAVE5", None, Some(&buyer))
        .await
        .json;
    assert_eq!(
        with_coupon["lines"][0]["unit_discount"]["amount_minor"], 500,
        "the better offer wins"
    );
    assert_eq!(with_coupon["discount"]["amount_minor"], 1000);
    for code in ["NOPE", "OLD90"] {
        let r = app
            .call(
                Method::GET,
                &format!("/v1/cart?coupon={code}"),
                None,
                Some(&buyer),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{code}");
    }

    let order = app.checkout(&buyer, "coupon", &json!({"card_number": GOOD_CARD, "billing_country": "DE", "shipping_country": "DE", "coupon": "save5"})).await.json;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["subtotal"]["amount_minor"], 4000);
    assert_eq!(order["discount"]["amount_minor"], 1000);
    assert_eq!(order["total"]["amount_minor"], 4000 - 1000 + 495);
    assert_eq!(order["coupon"], "SAVE5");
    let charged: i64 = sqlx::query_scalar("SELECT amount_minor FROM payments.payments")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(charged, 3495);
    let history = app
        .call(Method::GET, &format!("/v1/pricing/history/{p}"), None, None)
        .await;
    assert_eq!(history.json.as_array().unwrap().len(), 1);
}

#[sqlx::test(migrations = false)]
async fn an_abandoned_checkouts_reservation_expires_and_history_is_kept(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let (_, vendor) = app.quick_user("vendor").await;
    product(&app, &vendor, "RARE-1", 700, 1, 10).await;
    // A saga that died after reserving: a held reservation already past its expiry.
    let order = Uuid::now_v7();
    let mut tx = app.pool.begin().await.unwrap();
    let lines = [(
        events::Sku::parse("RARE-1").unwrap(),
        events::Quantity::new(1).unwrap(),
    )];
    services::inventory::store::reserve(&mut tx, order, &lines, std::time::Duration::ZERO)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(stock(&app, "RARE-1").await, (1, 1));
    assert_eq!(
        services::inventory::store::release_expired(&app.pool)
            .await
            .unwrap(),
        1
    );
    assert_eq!(stock(&app, "RARE-1").await, (1, 0));

    let p = app
        .call(Method::GET, "/v1/products?limit=1", None, None)
        .await
        .json["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, buyer) = app.quick_user("customer").await;
    add_to_cart(&app, &buyer, &p, 1).await;
    let (_, o) = checkout(&app, &buyer, "h", "4000 0000 0000 0002", "DE").await;
    let id = o["order_id"].as_str().unwrap();
    let h = app
        .call(
            Method::GET,
            &format!("/v1/orders/{id}/history"),
            None,
            Some(&buyer),
        )
        .await
        .json;
    let states: Vec<&str> = h
        .as_array()
        .unwrap_or_else(|| panic!("{h}"))
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["placed", "cancelled"]);
    let (_, stranger) = app.quick_user("customer").await;
    let r = app
        .call(
            Method::GET,
            &format!("/v1/orders/{id}/history"),
            None,
            Some(&stranger),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
