//! The plans of the shared statements (services::batch) on a batcher's own connection: one
//! generic plan per connection that reads every table through its index, key by key, and
//! joins by nested loops, whatever the size of the tables.

use services::batch::{SESSION, Work};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};

use crate::support::TestApp;

/// The generic plan of `W`'s statement on a connection set as `settings` say.
async fn generic_plan<W: Work>(pool: &PgPool, settings: &[(&str, &str)]) -> String {
    let options = (*pool.connect_options())
        .clone()
        .options(settings.iter().copied());
    let mut conn = PgConnection::connect_with(&options).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE s AS {}", W::sql())))
        .execute(&mut conn)
        .await
        .unwrap();
    // The statement's parameters: the largest $n in it.
    let params = W::sql()
        .split('$')
        .skip(1)
        .filter_map(|s| {
            let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().ok()
        })
        .max()
        .unwrap();
    let nulls = vec!["NULL"; params].join(", ");
    let rows: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN EXECUTE s({nulls})")))
            .fetch_all(&mut conn)
            .await
            .unwrap();
    conn.close().await.unwrap();
    rows.join("\n")
}

/// What reads more than the keys in `plan`: sequential scans (but of the promotions, which
/// have no key to look up), index scans without a condition, and hash or merge joins (a hash
/// table built or both sides sorted, for a few rows).
fn whole_table_reads(plan: &str) -> Vec<String> {
    let lines: Vec<&str> = plan.lines().collect();
    let mut whole = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let seq = l.contains("Seq Scan") && !l.contains(" on promotions");
        let join = (l.contains("Hash ") || l.contains("Merge ")) && l.contains(" Join");
        let full_index = l.contains("Scan using")
            && !lines
                .get(i + 1)
                .is_some_and(|next| next.contains("Index Cond:"));
        if seq || join || full_index {
            whole.push(l.trim().to_owned());
        }
    }
    whole
}

/// Checks `W`'s plan on a batcher's connection.
async fn keyed<W: Work>(pool: &PgPool) {
    let plan = generic_plan::<W>(pool, &SESSION).await;
    let whole = whole_table_reads(&plan);
    assert!(whole.is_empty(), "{}: {whole:?} in\n{plan}", W::NAME);
}

/// Checks `W`'s plan on a batcher's connection, and that the same statement planned on a
/// default connection reads whole tables (else the settings would prove nothing here).
async fn keyed_on_a_batcher_connection<W: Work>(pool: &PgPool) {
    keyed::<W>(pool).await;
    let default = generic_plan::<W>(pool, &[("plan_cache_mode", "force_generic_plan")]).await;
    assert!(
        !whole_table_reads(&default).is_empty(),
        "{}: the default plan reads no table whole either:\n{default}",
        W::NAME
    );
}

#[sqlx::test(migrations = false)]
async fn shared_statements_read_tables_by_key_on_a_batcher_connection(pool: PgPool) {
    let app = TestApp::new(pool).await;
    // A catalogue whose tables the planner knows to be small, as a new shop's are.
    sqlx::raw_sql(
        "INSERT INTO catalog.products (id, sku, vendor_id, category, names, price_minor, currency, weight_grams)
         SELECT gen_random_uuid(), 'PLAN-' || i, gen_random_uuid(), 'plan', '{\"en\": \"p\"}', 100, 'EUR', 10
         FROM generate_series(1, 300) i;
         INSERT INTO inventory.stock (sku, on_hand) SELECT 'PLAN-' || i, 10 FROM generate_series(1, 300) i;
         ANALYZE catalog.products; ANALYZE inventory.stock;",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    keyed_on_a_batcher_connection::<services::cart::batch::Add>(&app.pool).await;
    // The checkout's read is keyed on a default connection too.
    keyed::<services::orders::batch::Start>(&app.pool).await;
    keyed_on_a_batcher_connection::<services::orders::batch::Place>(&app.pool).await;
    keyed_on_a_batcher_connection::<services::orders::batch::Confirm>(&app.pool).await;
}

/// An add statement inserts (and so locks) cart lines sorted by cart, so two of them, in two
/// processes, cannot deadlock on two carts taken in opposite orders.
#[sqlx::test(migrations = false)]
async fn shared_adds_lock_cart_lines_in_cart_order(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let plan = generic_plan::<services::cart::batch::Add>(&app.pool, &SESSION).await;
    let insert = plan
        .find("Insert on items")
        .expect("the add inserts cart lines");
    let sort = plan[insert..]
        .lines()
        .skip(1)
        .take_while(|l| !l.contains("CTE "))
        .find(|l| l.contains("Sort Key:"));
    // The planner names the jobs `j` or `j_<n>`.
    let key = sort.map(|l| l.trim().trim_start_matches("Sort Key: "));
    assert!(
        key.is_some_and(|k| k.starts_with('j') && k.ends_with(".user_id") && !k.contains(',')),
        "the lines go in by cart: {key:?} in\n{plan}"
    );
}
