//! A deterministic synthetic Candlefish operator network, written as the input
//! datasets of the data contract (`billing/*`, `crm/*`, `survey/*`).
//!
//! The demo, the acceptance checks and local development need inputs that look like
//! a real network: operators joining over time and some leaving, customers signed at
//! different rates so tiers move, invoices that are paid late or never, refunds,
//! leads, training and surveys — plus a small, fixed sprinkle of broken rows so that
//! quarantine (data contract) and reconciliation (R7) always have something to do.
//! Referral leads name the operator that referred them (R8.1), and the newest leads
//! are left unassigned for lead distribution (R8.3).
//! The output is a pure function of the options: every random draw comes from
//! ChaCha8 streams seeded by `seed`, in a fixed iteration order.
//!
//! The network is simulated first into compact in-memory rows (ids are numbers,
//! formatted only when written), anomalies are applied to those rows, and each
//! dataset is then written once, column by column.

use std::path::PathBuf;

use anyhow::{Context, Result};
use opnet_pipelines::Period;
use opnet_pipelines::contract;

mod anomalies;
mod billing;
mod crm;
mod network;
mod survey;
mod tables;
mod vocab;
mod write;

use network::Network;
use write::write_frame;

/// The file format of the generated datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Parquet,
    Jsonl,
}

impl Format {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
            Format::Jsonl => "jsonl",
        }
    }
}

/// What to generate and where.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// The source folder: datasets go to `<out>/<system>/<name>.<ext>`.
    pub out: PathBuf,
    /// How many operators the network has had (including terminated ones).
    pub operators: usize,
    /// How many periods the billing, lead and survey data span, ending with `end`.
    pub months: u32,
    pub end: Period,
    pub seed: u64,
    pub format: Format,
}

/// How the generated sources are shaped beyond the network itself: which optional
/// contract columns they carry. Apart from [`GenerateOptions`] so that the callers
/// that want the default (every optional column) need not say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceShape {
    /// Write crm/leads' optional `referred_by_operator_id` column (R8.1). Without
    /// it the leads are the same, minus that column: a CRM without referral tracking,
    /// for which the scorecard's `community_contribution` is null.
    pub referrals: bool,
}

impl Default for SourceShape {
    fn default() -> Self {
        SourceShape { referrals: true }
    }
}

/// What was written.
#[derive(Clone, Debug)]
pub struct GenerateSummary {
    pub out: PathBuf,
    pub first_period: Period,
    pub last_period: Period,
    /// (dataset path like `billing/invoices`, row count), in `contract::ALL` order.
    pub rows: Vec<(String, usize)>,
}

/// Simulate the network and write every dataset of the contract, with every
/// optional column.
pub fn generate(opts: &GenerateOptions) -> Result<GenerateSummary> {
    generate_with(opts, SourceShape::default())
}

/// [`generate`], with the optional columns of `shape`. The network is the same
/// whatever the shape.
pub fn generate_with(opts: &GenerateOptions, shape: SourceShape) -> Result<GenerateSummary> {
    let net = Network::simulate(opts)?;
    let mut rows = Vec::with_capacity(contract::ALL.len());
    for dataset in contract::ALL {
        let dir = opts.out.join(dataset.system);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the folder {}", dir.display()))?;
        let path = dir.join(format!("{}.{}", dataset.name, opts.format.extension()));
        let table = net.table(dataset, shape)?;
        let height = table.rows;
        let mut df = table.finish(opts.format)?;
        write_frame(&mut df, &path, opts.format)
            .with_context(|| format!("writing {}", path.display()))?;
        rows.push((dataset.path(), height));
    }
    Ok(GenerateSummary {
        out: opts.out.clone(),
        first_period: net.first,
        last_period: net.last,
        rows,
    })
}

#[cfg(test)]
mod tests;
