//! R8.2 — Operator Equity Program eligibility: for every operator active at end of M,
//! the four criteria (tenure, tier, MRR, retention), whether it is eligible, and how
//! that changed since M−1.
//!
//! Each criterion is the rule it names elsewhere — tenure R1.1, tier R2.2, MRR R6.1 in
//! the reporting currency, retention R4.3 — so eligibility can never disagree with a
//! statement, the tiers table or an alert. M−1's row is computed by the same rule from
//! the same snapshot (like R2.3's previous tier), but only for a month that can be
//! closed: before the first billing period of the data there is no row, and "no row in
//! M−1 counts as not eligible" — so an operator eligible in the first closed month has
//! `gained`, exactly as a close that runs month by month from the start of the data
//! stores it.

use crate::Inputs;
use crate::active::{active_operators, tenure};
use crate::alerts::{self, operator_metrics};
use crate::mrr::mrr;
use crate::period::Period;
use crate::plan::Plan;
use crate::tiers::operator_tiers;
use polars::prelude::*;

/// R8.2 criteria names in `failed_criteria`, in its order.
pub const CRITERIA: [&str; 4] = ["tenure", "tier", "mrr", "retention"];

/// `change` values.
pub const GAINED: &str = "gained";
pub const LOST: &str = "lost";
pub const UNCHANGED: &str = "none";

/// The criteria and eligibility of every operator active at end of `period`:
/// `operator_id`, `tenure_months`, `tier`, `mrr_cents`, `retention`, `eligible`,
/// `failed_criteria`.
fn criteria_at(inputs: &Inputs, period: Period, plan: &Plan) -> LazyFrame {
    let eq = &plan.equity;
    let currency = plan.scorecard.reporting_currency.as_str();
    let operators = active_operators(inputs.operators.clone(), period.last_day())
        .select([col("operator_id"), col("joined_on")])
        .unique_stable(Some(cols(["operator_id"])), UniqueKeepStrategy::First);
    let tiers = operator_tiers(inputs, period, plan).select([col("operator_id"), col("tier")]);
    let revenue = mrr(inputs, &[period])
        .filter(col("currency").eq(lit(currency)))
        .select([col("operator_id"), col("mrr_cents")]);
    let retention = operator_metrics(inputs, period, plan)
        .filter(col("metric").eq(lit(alerts::CUSTOMER_RETENTION)))
        .select([col("operator_id"), col("value").alias("retention")]);
    let on = |lf: LazyFrame, other: LazyFrame| {
        lf.join(
            other,
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Left),
        )
    };
    let ok = [
        col("tenure_months").gt_eq(lit(eq.min_tenure_months)),
        col("tier").eq(lit(eq.tier.as_str())),
        col("mrr_cents").gt_eq(lit(eq.min_mrr_cents)),
        // strictly above; a null retention (no cohort) fails
        col("retention")
            .gt(lit(eq.min_retention))
            .fill_null(lit(false)),
    ];
    let failed: Vec<Expr> = CRITERIA
        .iter()
        .zip(ok.iter())
        .map(|(name, ok)| {
            when(ok.clone().not())
                .then(lit(*name))
                .otherwise(lit(NULL).cast(DataType::String))
        })
        .collect();
    let eligible = ok
        .iter()
        .cloned()
        .reduce(|a, b| a.and(b))
        .unwrap_or(lit(false));
    on(on(on(operators, tiers), revenue), retention)
        .with_columns([
            tenure(period).alias("tenure_months"),
            col("tier").fill_null(lit("none")),
            col("mrr_cents").fill_null(lit(0i64)).cast(DataType::Int64),
            col("retention").cast(DataType::Float64),
        ])
        .with_columns([
            eligible.alias("eligible"),
            concat_str(failed, ",", true)
                .fill_null(lit(""))
                .alias("failed_criteria"),
        ])
        .select([
            col("operator_id"),
            col("tenure_months"),
            col("tier"),
            col("mrr_cents"),
            col("retention"),
            col("eligible"),
            col("failed_criteria"),
        ])
}

/// The `equity_eligibility` rows of `period` (R8.2): `period`, `operator_id`,
/// `tenure_months` i64, `tier`, `mrr_cents` i64, `retention` f64?, `eligible` bool,
/// `failed_criteria` (comma-separated `tenure`,`tier`,`mrr`,`retention`, empty when
/// eligible), `change` (`gained`|`lost`|`none` against M−1's row) — one row per
/// operator active at end of M, sorted by operator.
pub fn equity_eligibility(inputs: &Inputs, period: Period, plan: &Plan) -> PolarsResult<LazyFrame> {
    let now = criteria_at(inputs, period, plan);
    let prev = period.prev();
    let closable = inputs
        .first_billing_period()?
        .is_some_and(|first| prev >= first);
    let before = if closable {
        criteria_at(inputs, prev, plan).select([col("operator_id"), col("eligible").alias("was")])
    } else {
        now.clone()
            .select([col("operator_id"), lit(false).alias("was")])
            .limit(0)
    };
    Ok(now
        .join(
            before,
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("was").fill_null(lit(false)))
        .with_column(
            when(col("eligible").and(col("was").not()))
                .then(lit(GAINED))
                .when(col("eligible").not().and(col("was")))
                .then(lit(LOST))
                .otherwise(lit(UNCHANGED))
                .alias("change"),
        )
        .select([
            lit(period.to_string()).alias("period"),
            col("operator_id"),
            col("tenure_months"),
            col("tier"),
            col("mrr_cents"),
            col("retention"),
            col("eligible"),
            col("failed_criteria"),
            col("change"),
        ])
        .sort(["operator_id"], SortMultipleOptions::default()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
