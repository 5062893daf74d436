//! Adds to cart shared by concurrent requests ([`crate::batch`]): one statement adds the
//! line of every add waiting, writes their events and reads each cart as it leaves it.
//! Adds to one cart go to separate statements.

use std::sync::LazyLock;

use ingest::outbox::OutboxRows;
use sqlx::Row;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use crate::batch::{Batcher, JobEvents, Work};
use crate::cart::store::{self, Cart, CartError};

/// The process's batcher of adds to cart.
pub type Adder = Batcher<Add>;

/// The `cart.item_added` payload written: the client's, with the SKU and unit price of the
/// product (`product`) as the statement reads it.
pub(crate) const ADDED_PAYLOAD: &str = "convert_to(jsonb_set(jsonb_set(
        convert_from(e.payload, 'UTF8')::jsonb,
        '{sku}', to_jsonb(product.sku)),
        '{unit_price}', jsonb_build_object('amount_minor', product.price_minor, 'currency', product.currency)
    )::text, 'UTF8')";

/// One add: `quantity` units of `product_id` to the cart of `user_id`, with its one event
/// (`cart.item_added`, SKU and price filled in by the statement).
pub struct AddJob {
    pub user_id: Uuid,
    pub product_id: Uuid,
    pub quantity: i32,
    pub events: OutboxRows,
}

/// Adds `$3` units of the products `$2` to the carts of `$1` (a line made where missing)
/// when the product is for sale, with the events (`$5`..`$10`, cart of each `$11`), and
/// reads each cart as it leaves it (promotions without a coupon, `$4` NULL): the rows of
/// [`store::rows_sql`] with the job's number (`job`, from 1) and whether it added (`added`).
static ADD_MANY_SQL: LazyLock<String> = LazyLock::new(|| {
    let event = OutboxRows::sql_joined(
        5,
        "JOIN unnest($11::uuid[]) WITH ORDINALITY AS ec(user_id, n) ON ec.n = e.n
         JOIN product ON product.user_id = ec.user_id",
        ADDED_PAYLOAD,
        "true",
    );
    format!(
        "WITH jobs AS (
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int4[]) WITH ORDINALITY
              AS j(user_id, product_id, quantity, n)),
         product AS (
            SELECT j.user_id, p.id, p.sku, p.price_minor, p.currency
            FROM jobs j JOIN catalog.products p ON p.id = j.product_id AND p.status = 'active'),
         line AS (
            INSERT INTO carts.items (user_id, product_id, sku, quantity)
            SELECT j.user_id, product.id, product.sku, j.quantity
            FROM jobs j JOIN product USING (user_id)
            -- Lines are locked in cart order, so two add statements (of two processes) never
            -- wait on each other's carts in opposite orders.
            ORDER BY j.user_id
            ON CONFLICT (user_id, product_id) DO UPDATE SET quantity = carts.items.quantity + EXCLUDED.quantity
            RETURNING user_id, product_id, quantity, added_at),
         events AS ({event})
         {}",
        store::rows_sql(
            &format!(
                "SELECT j.n AS job, j.user_id AS cart_user, j.product_id AS cart_product,
                        EXISTS (SELECT 1 FROM line WHERE line.user_id = j.user_id) AS added,
                        {} AS live
                 FROM jobs j",
                crate::pricing::store::live_json_sql("$4")
            ),
            "SELECT product_id, quantity, added_at FROM carts.items
             WHERE user_id = base.cart_user AND product_id <> base.cart_product
             UNION ALL SELECT product_id, quantity, added_at FROM line WHERE line.user_id = base.cart_user",
            "base.job,",
        )
    )
});

/// Adds to cart ([`ADD_MANY_SQL`]): each answers the cart as the add left it, or `None` when
/// the product is not for sale (nothing was written).
pub struct Add;

impl Work for Add {
    const NAME: &'static str = "cart_add";
    type Job = AddJob;
    type Out = Result<Option<Cart>, CartError>;

    /// The cart: one statement may not change a line twice, and it matches lines, events and
    /// answers to jobs by their cart.
    fn keys(job: &AddJob) -> Vec<String> {
        vec![job.user_id.to_string()]
    }

    fn sql() -> &'static str {
        ADD_MANY_SQL.as_str()
    }

    async fn run(
        conn: &mut PgConnection,
        jobs: Vec<AddJob>,
    ) -> Result<Vec<Self::Out>, sqlx::Error> {
        let mut events = JobEvents::default();
        let (mut users, mut products, mut quantities) = (Vec::new(), Vec::new(), Vec::new());
        for job in jobs {
            events.add(job.user_id, job.events);
            users.push(job.user_id);
            products.push(job.product_id);
            quantities.push(job.quantity);
        }
        let q = sqlx::query(sqlx::AssertSqlSafe(Self::sql()))
            .bind(&users)
            .bind(products)
            .bind(quantities)
            .bind(None::<String>);
        let rows = events.bind(q).fetch_all(&mut *conn).await?;
        crate::batch::rows_by_job(rows, users.len())?
            .into_iter()
            .map(|mine| {
                Ok(if mine[0].try_get::<bool, _>("added")? {
                    Cart::from_rows(&mine, None).map(Some)
                } else {
                    Ok(None)
                })
            })
            .collect()
    }
}
