//! The walk of a simulation through its periods, in order: what each period's payout
//! close builds on comes from the *simulated* closes before it, so the plan under test
//! takes effect at `--from` and nothing of the recorded results after that leaks in.
//!
//! For period M the history is (R1.6, R1.7, R7): the recorded payout lines of periods
//! before `--from` (read by the caller, only for the invoices refunded in M, as the
//! payouts job reads them) plus the simulated lines of the periods from `--from` to
//! M−1 for the same invoices; and the simulated M−1 balance carried out (the recorded
//! one for the first period). So a clawback of a line collected before `--from` keeps
//! its recorded share, a clawback of a line collected in the range takes the share the
//! simulated plan gave it, and R1.7 carry-forward follows the simulated balances.
//!
//! Pure: frames in, frames out; no database, no clock.

use crate::jobs::payouts::HISTORY_COLUMNS;
use opnet_pipelines::payouts::{PayoutClose, PayoutHistory};
use polars::prelude::*;

/// The simulated results so far that later periods read.
pub struct Walk {
    /// Simulated payout lines of the periods walked so far ([`HISTORY_COLUMNS`]).
    lines: DataFrame,
    /// The balance the last walked period carried out, as the next period's
    /// `operator_id`, `currency`, `carried_in_cents` (non-zero only).
    carried: DataFrame,
}

/// An empty frame with `columns`.
fn empty(columns: &[(&str, DataType)]) -> DataFrame {
    let columns: Vec<Column> = columns
        .iter()
        .map(|(n, t)| Column::new_empty((*n).into(), t))
        .collect();
    // Distinct literal names: this cannot fail.
    DataFrame::new_infer_height(columns).unwrap_or_default()
}

impl Walk {
    /// A walk starting at `--from`, with the recorded balance carried out of the period
    /// before it (`operator_id`, `currency`, `carried_in_cents`).
    pub fn new(carried_in: DataFrame) -> Self {
        Self {
            lines: empty(&HISTORY_COLUMNS),
            carried: carried_in,
        }
    }

    /// The history of the next period: `recorded_prior` (recorded lines of periods
    /// before `--from` for the invoices refunded in it, [`HISTORY_COLUMNS`]) and the
    /// simulated lines of the same invoices (`refunded`), with the simulated balance
    /// carried in.
    pub fn history(
        &self,
        recorded_prior: LazyFrame,
        refunded: &[String],
    ) -> PolarsResult<PayoutHistory> {
        // Only the refunded invoices' lines are read by the close (as load_history
        // does), which keeps each period's work independent of the range's length.
        let ids =
            DataFrame::new_infer_height(vec![Column::new("invoice_id".into(), refunded.to_vec())])?;
        let simulated = self.lines.clone().lazy().join(
            ids.lazy(),
            [col("invoice_id")],
            [col("invoice_id")],
            JoinArgs::new(JoinType::Semi),
        );
        let columns = HISTORY_COLUMNS.map(|(n, t)| col(n).cast(t));
        Ok(PayoutHistory {
            prior_lines: concat(
                [
                    recorded_prior.select(columns.clone()),
                    simulated.select(columns),
                ],
                UnionArgs::default(),
            )?,
            carried_in: self.carried.clone().lazy(),
        })
    }

    /// Takes in a simulated close: its lines for the periods after it, its carried-out
    /// balances for the next one (R1.7: only non-zero balances carry).
    pub fn record(&mut self, close: &PayoutClose) -> PolarsResult<()> {
        let lines = close
            .lines
            .clone()
            .lazy()
            .select(HISTORY_COLUMNS.map(|(n, t)| col(n).cast(t)))
            .collect()?;
        self.lines.vstack_mut(&lines)?;
        self.carried = carried_out(&close.statements)?;
        Ok(())
    }

    /// The balance the next period carries in.
    pub fn carried(&self) -> &DataFrame {
        &self.carried
    }
}

/// R1.7: a period's statements' non-zero `carried_out_cents`, as the next period's
/// `carried_in_cents` (`operator_id`, `currency`, `carried_in_cents`).
pub fn carried_out(statements: &DataFrame) -> PolarsResult<DataFrame> {
    statements
        .clone()
        .lazy()
        .filter(col("carried_out_cents").neq(lit(0i64)))
        .select([
            col("operator_id").cast(DataType::String),
            col("currency").cast(DataType::String),
            col("carried_out_cents")
                .cast(DataType::Int64)
                .alias("carried_in_cents"),
        ])
        .collect()
}
