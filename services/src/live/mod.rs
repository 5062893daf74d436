//! The live operations feed under `/v1/live`: the stream processors' window results and
//! detected anomalies as Server-Sent Events, for dashboards. It follows what the processors
//! commit to PostgreSQL, so every value is the sum over all shards, never one shard's part;
//! it does not compute anything itself.

mod routes;

pub use routes::routes;
