//! ml integration tests: training into the registry, loading, querying with filters, and
//! evaluation against the baselines on data with a known structure.

mod recs;
mod text;
mod vision;
