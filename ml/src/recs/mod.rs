//! Recommendations: interactions → iALS factors → an arroy index of item vectors, the
//! baselines and the evaluation they are compared in.

pub mod als;
pub mod baselines;
pub mod data;
pub mod eval;
pub mod model;
pub mod pipeline;
pub mod synth;
