//! What earlier closes left behind that the close of M builds on (R1.6, R1.7, R7):
//! earlier payout lines — collections for a refunded line's original shares,
//! clawbacks for what earlier closes already took back — and the balance carried out
//! of M−1. Both payouts (pricing) and reconciliation (which refunds go through) read
//! it through the functions here, so they always agree on which collection line a
//! refund belongs to.

use crate::money::sum_cents;
use crate::period::Period;
use polars::prelude::*;

/// What earlier closes left behind and the close of M builds on.
#[derive(Clone)]
pub struct PayoutHistory {
    /// Payout lines of periods before M (as stored in payout_lines): `period`,
    /// `operator_id`, `currency`, `invoice_id`, `line_no` (i64), `revenue_type`,
    /// `amount_cents`, `operator_bp` (i64), `kind`, `refund_id`. Collection rows give a
    /// refunded line's original shares (R1.6); clawback rows are the refunds earlier
    /// closes accepted, which shrink what is left of their line (R7). Extra columns are
    /// ignored; without a `kind` column every row counts as a collection. Rows of M or
    /// later are ignored, so a re-run of M never finds its own lines.
    pub prior_lines: LazyFrame,
    /// The previous period's statements: `operator_id`, `currency`,
    /// `carried_in_cents` (= its `carried_out_cents`, ≤ 0).
    pub carried_in: LazyFrame,
}

impl PayoutHistory {
    /// No earlier close: the first period of the network.
    pub fn empty() -> Self {
        let frame = |cols: &[(&str, DataType)]| {
            let columns: Vec<Column> = cols
                .iter()
                .map(|(n, t)| Column::new_empty((*n).into(), t))
                .collect();
            // Distinct literal names: this cannot fail.
            DataFrame::new_infer_height(columns)
                .unwrap_or_default()
                .lazy()
        };
        use DataType::{Int64, String as Str};
        Self {
            prior_lines: frame(&[
                ("period", Str),
                ("operator_id", Str),
                ("currency", Str),
                ("invoice_id", Str),
                ("line_no", Int64),
                ("revenue_type", Str),
                ("amount_cents", Int64),
                ("operator_bp", Int64),
                ("kind", Str),
                ("refund_id", Str),
            ]),
            carried_in: frame(&[
                ("operator_id", Str),
                ("currency", Str),
                ("carried_in_cents", Int64),
            ]),
        }
    }
}

/// The rows of `history.prior_lines` from periods before `period` of one kind (all
/// rows when the frame has no `kind` column and `kind` is `collection`).
fn prior_of_kind(history: &PayoutHistory, period: Period, kind: &str) -> PolarsResult<LazyFrame> {
    let mut lf = history.prior_lines.clone();
    if lf.collect_schema()?.contains("kind") {
        lf = lf.filter(col("kind").cast(DataType::String).eq(lit(kind.to_string())));
    } else if kind != "collection" {
        lf = lf.limit(0);
    }
    Ok(lf.filter(
        col("period")
            .cast(DataType::String)
            .lt(lit(period.to_string())),
    ))
}

/// The collection lines of `history` from periods before `period`, as
/// `collected_period`, `operator_id`, `currency`, `invoice_id`, `line_no`,
/// `revenue_type`, `amount_cents`, `operator_bp` in contract dtypes.
pub fn prior_collections(history: &PayoutHistory, period: Period) -> PolarsResult<LazyFrame> {
    Ok(prior_of_kind(history, period, "collection")?.select([
        col("period")
            .cast(DataType::String)
            .alias("collected_period"),
        col("operator_id").cast(DataType::String),
        col("currency").cast(DataType::String),
        col("invoice_id").cast(DataType::String),
        col("line_no").cast(DataType::Int64),
        col("revenue_type").cast(DataType::String),
        col("amount_cents").cast(DataType::Int64),
        col("operator_bp").cast(DataType::Int64),
    ]))
}

/// What earlier closes already clawed back of each line: `invoice_id`, `line_no`,
/// `refunded_cents` (> 0, the sum of the accepted refunds before `period`). Refunds
/// that were held as exceptions never became clawback lines, so they are not in it
/// (R7 "earlier refunds").
pub fn prior_refunded(history: &PayoutHistory, period: Period) -> PolarsResult<LazyFrame> {
    Ok(prior_of_kind(history, period, "clawback")?
        .group_by([
            col("invoice_id").cast(DataType::String),
            col("line_no").cast(DataType::Int64),
        ])
        .agg([
            sum_cents(lit(0i64) - col("amount_cents").cast(DataType::Int64))
                .alias("refunded_cents"),
        ]))
}

/// One collection line per (`invoice_id`, `line_no`): the earliest collected, should a
/// line ever have been collected twice. Reconciliation and clawbacks use this same
/// choice, so a refund is checked against the line it is clawed back from.
pub fn first_collection_per_line(lines: LazyFrame) -> LazyFrame {
    lines
        .sort(
            ["invoice_id", "line_no", "collected_period"],
            SortMultipleOptions::default(),
        )
        .unique_stable(
            Some(cols(["invoice_id", "line_no"])),
            UniqueKeepStrategy::First,
        )
}
