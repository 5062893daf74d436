//! One module per subcommand: argument types and the wiring behind them.

pub mod bench;
pub mod bench_ml;
pub mod bench_streams;
pub mod bench_warehouse;
pub mod events;
pub mod lifecycle;
pub mod ml;
pub mod ml_fraud;
pub mod platform;
pub mod serve;
pub mod simulate;
pub mod stream;
pub mod topics;
pub mod up;
pub mod warehouse;
