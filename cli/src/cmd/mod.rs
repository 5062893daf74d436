//! One module per subcommand: argument types and the wiring behind them.

pub mod events;
pub mod ops;
pub mod topics;
pub mod up;
