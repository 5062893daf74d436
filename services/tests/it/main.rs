//! Service tests over real PostgreSQL, a database per test (`#[sqlx::test]`, from
//! DATABASE_URL, set by scripts/test.sh), calling the real router in process.

mod auth;
mod batch_plans;
mod catalog;
mod clickstream;
mod commerce;
mod fraud_review;
mod gateway;
mod images;
mod live;
mod openapi;
mod people;
mod pool;
mod rbac;
mod recs;
mod search;
mod stock_locks;
mod support;
