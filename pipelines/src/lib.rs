//! opnet's pipelines: the rules of `rules.md` as pure functions over Polars frames.
//!
//! Nothing here reads a file, a clock or a config: the period and the plan are
//! parameters, the inputs are `LazyFrame`s in the contract's column names
//! ([`contract`]), and the outputs are frames in the output tables' column names.

// Tests may unwrap; data paths may not (workspace lint `unwrap_used`).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod active;
pub mod alerts;
pub mod contract;
pub mod derived;
pub mod directory;
pub mod equity;
pub mod exclusivity;
pub mod health;
pub mod history;
pub mod inputs;
pub mod leads;
pub mod money;
pub mod mrr;
pub mod payouts;
pub mod period;
pub mod plan;
pub mod reconcile;
pub mod scorecard;
pub mod tiers;

pub use inputs::Inputs;
pub use period::Period;
pub use plan::{Plan, PlanBook};
