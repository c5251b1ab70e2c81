//! opnet — the batch back office of the Candlefish Operator Network.
//!
//! This crate is the `opnet` binary and everything that touches the outside world:
//! sources, the Parquet lake, the database, mail, the job registry and the CLI. The
//! rules themselves live in `opnet-pipelines` as pure Polars functions.

// Tests may unwrap; data paths may not (workspace lint `unwrap_used`).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod charts;
pub mod cli;
pub mod close;
pub mod commands;
pub mod config;
pub mod db;
pub mod failpoint;
pub mod generate;
pub mod ingest;
pub mod jobs;
pub mod lake;
pub mod leads;
pub mod mail;
pub mod retry;
pub mod schedule;
pub mod store;
pub mod term;

/// PostgreSQL test databases dropped when the test ends, for unit tests
/// (`crate::test_pg::TestDb`); the end-to-end tests use the same file.
#[cfg(test)]
#[path = "../../tests/common/pg.rs"]
pub(crate) mod test_pg;
