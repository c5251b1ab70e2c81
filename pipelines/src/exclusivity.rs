//! R3 — territory exclusivity compliance: one row per (exclusive operator,
//! territory) for period M, with the four criteria of R3.1–R3.4, the outcome and the
//! breach streak of R3.5.
//!
//! The streak ("consecutive periods ending with M in breach") is computed from the
//! same snapshot by evaluating the very same rule for every earlier period back to
//! the start of the exclusivity — but never before the first billing period of the
//! data (R3.5: earlier months cannot be closed, so they are never checked) — in one
//! vectorised pass over a (pair × period) grid; nothing is read from earlier runs, so
//! a re-run of M always gives the same answer.

use crate::Inputs;
use crate::active::months_of;
use crate::mrr::mrr_of_operators;
use crate::period::{Period, days_to_date};
use crate::plan::{Exclusivity, Plan};
use polars::prelude::*;

/// R3.4 outcome of the satisfaction criterion.
pub const SATISFACTION_OK: &str = "ok";
pub const SATISFACTION_FAILED: &str = "failed";
pub const SATISFACTION_INSUFFICIENT: &str = "insufficient_data";

/// The `exclusivity_checks` rows of `period` (R3):
///
/// `period` str, `operator_id` str, `territory_id` str, `currency` str (the
/// territory's), `mrr_cents` i64, `active_customers` i64, `qoq_growth` f64?,
/// `csat_share` f64?, `csat_responses` i64, `satisfaction` str
/// (`ok`|`failed`|`insufficient_data`), `compliant` bool, `failed_criteria` str,
/// `consecutive_breaches` i64, `escalated` bool — sorted by operator and territory.
///
/// A row exists for each territory whose exclusive operator is active at end of M
/// (R6.2) and whose `exclusive_since` is on or before end of M.
pub fn exclusivity_checks(inputs: &Inputs, period: Period, plan: &Plan) -> LazyFrame {
    let pairs = exclusive_pairs(inputs, period);
    // R3.5: a month before the first billing period of the data was never closed, so
    // it is never checked and never extends a streak.
    let first_billing = inputs.first_billing_period().ok().flatten();
    let start = match first_billing {
        Some(first) => first_period(&pairs, period).max(first).min(period),
        None => first_period(&pairs, period),
    };
    let periods: Vec<Period> = start.through(period).collect();
    let grid = evaluate(
        inputs,
        pairs,
        &periods,
        &plan.exclusivity,
        plan.min_survey_responses,
    );

    // R3.5: the streak ends at the latest month that was not a breach — compliant,
    // or the operator not active / not yet exclusive then. The grid holds every
    // month from `start` on, so a missing month cannot hide inside a streak; before
    // `start` no pair was eligible, which ends every streak there.
    let streaks = grid
        .clone()
        .group_by([col("operator_id"), col("territory_id")])
        .agg([col("p_months")
            .filter(col("breach").not())
            .max()
            .alias("last_ok")])
        .select([
            col("operator_id"),
            col("territory_id"),
            (lit(period.months() as i64)
                - col("last_ok").fill_null(lit(start.months() as i64 - 1)))
            .alias("consecutive_breaches"),
        ]);

    grid.filter(
        col("period")
            .eq(lit(period.to_string()))
            .and(col("eligible")),
    )
    .join(
        streaks,
        [col("operator_id"), col("territory_id")],
        [col("operator_id"), col("territory_id")],
        JoinArgs::new(JoinType::Left),
    )
    .with_column(col("consecutive_breaches").fill_null(lit(0i64)))
    .select([
        col("period"),
        col("operator_id"),
        col("territory_id"),
        col("currency"),
        col("mrr_cents"),
        col("active_customers"),
        col("qoq_growth"),
        col("csat_share"),
        col("csat_responses"),
        col("satisfaction"),
        col("compliant"),
        col("failed_criteria"),
        col("consecutive_breaches"),
        col("consecutive_breaches")
            .gt_eq(lit(plan.exclusivity.escalate_after))
            .alias("escalated"),
    ])
    .sort(
        ["operator_id", "territory_id"],
        SortMultipleOptions::default(),
    )
}

/// Territories with an exclusive operator and an `exclusive_since` on or before end
/// of M, with the operator's `joined_on` / `terminated_on`. A territory without an
/// `exclusive_since` has no exclusivity start and is not checked; an exclusive
/// operator unknown to crm/operators is never active (R6.2) and drops out here.
fn exclusive_pairs(inputs: &Inputs, period: Period) -> LazyFrame {
    let operators = inputs
        .operators
        .clone()
        .select([col("operator_id"), col("joined_on"), col("terminated_on")])
        .unique_stable(Some(cols(["operator_id"])), UniqueKeepStrategy::First);
    inputs
        .territories
        .clone()
        .filter(
            col("exclusive_operator_id")
                .is_not_null()
                .and(col("exclusive_since").is_not_null())
                .and(col("exclusive_since").lt_eq(lit(period.last_day()))),
        )
        .unique_stable(Some(cols(["territory_id"])), UniqueKeepStrategy::First)
        .select([
            col("exclusive_operator_id").alias("operator_id"),
            col("territory_id"),
            col("currency"),
            col("exclusive_since"),
        ])
        .join(
            operators,
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Inner),
        )
}

/// The earliest month any pair can have been in breach: the later of
/// `exclusive_since` and `joined_on`, over all pairs (never after M).
///
/// This small aggregate is collected so that MRR is computed only for the months the
/// streak can reach. Should it fail, the streak falls back to M alone — and the same
/// failure resurfaces when the caller collects the result, which reads the same
/// frames.
fn first_period(pairs: &LazyFrame, period: Period) -> Period {
    let start = when(col("exclusive_since").gt_eq(col("joined_on")))
        .then(col("exclusive_since"))
        .otherwise(col("joined_on"));
    let days = pairs
        .clone()
        .select([start.min().cast(DataType::Int32).alias("start")])
        .collect()
        .ok()
        .and_then(|df| df.column("start").ok()?.i32().ok()?.get(0));
    match days {
        Some(d) => Period::of_date(days_to_date(d)).min(period),
        None => period,
    }
}

/// R3.1 threshold in the territory's currency, as an expression over `currency`.
fn min_mrr_expr(ex: &Exclusivity) -> Expr {
    let mut e = lit(ex.min_mrr_cents);
    for (currency, cents) in ex.min_mrr_cents_by_currency.iter().rev() {
        e = when(col("currency").eq(lit(currency.as_str())))
            .then(lit(*cents))
            .otherwise(e);
    }
    e
}

/// One row per pair and period of `periods` with every R3 criterion evaluated for
/// that period, `eligible` (operator active at end of the period and exclusivity
/// started) and `breach` (eligible and not compliant).
fn evaluate(
    inputs: &Inputs,
    pairs: LazyFrame,
    periods: &[Period],
    ex: &Exclusivity,
    min_responses: i64,
) -> LazyFrame {
    let calendar = calendar(periods);
    let operator_ids = pairs
        .clone()
        .select([col("operator_id")])
        .unique(None, UniqueKeepStrategy::Any);
    let ops_periods = operator_ids.clone().cross_join(
        calendar
            .clone()
            .select([col("period"), col("p_last"), col("win_first")]),
        None,
    );
    let active = active_customers_by_period(inputs, ops_periods.clone());
    let csat = csat_by_period(inputs, ops_periods, ex);
    let (revenue, revenue_3) = mrr_of_m_and_m_3(inputs, operator_ids, periods);

    let grid = pairs
        .cross_join(calendar, None)
        .with_column(
            // R6.2 active at end of the period, and exclusivity already started.
            col("joined_on")
                .lt_eq(col("p_last"))
                .and(
                    col("terminated_on")
                        .is_null()
                        .or(col("terminated_on").gt(col("p_last"))),
                )
                .and(col("exclusive_since").lt_eq(col("p_last")))
                .alias("eligible"),
        )
        .join(
            revenue,
            [col("period"), col("operator_id"), col("currency")],
            [col("period"), col("operator_id"), col("currency")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            revenue_3,
            [col("period_3"), col("operator_id"), col("currency")],
            [col("period_3"), col("operator_id"), col("currency")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            active,
            [col("operator_id"), col("period")],
            [col("operator_id"), col("period")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            csat,
            [col("operator_id"), col("period")],
            [col("operator_id"), col("period")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            col("mrr_cents").fill_null(lit(0i64)),
            col("mrr_cents_3").fill_null(lit(0i64)),
            col("active_customers").fill_null(lit(0i64)),
            col("csat_responses").fill_null(lit(0i64)),
            col("csat_satisfied").fill_null(lit(0i64)),
        ]);
    judge(grid, ex, min_responses)
}

/// R3 for each period of `periods`: `period`, `p_months`, `p_last` (end of M),
/// `win_first` (first day of the R3.4 survey window) and `period_3` (M−3, for R3.3).
fn calendar(periods: &[Period]) -> LazyFrame {
    df!(
        "period" => periods.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "p_months" => periods.iter().map(|p| p.months() as i64).collect::<Vec<_>>(),
        "p_last" => periods.iter().map(|p| p.last_day()).collect::<Vec<_>>(),
        // R3.4: the survey window is M−2..M
        "win_first" => periods.iter().map(|p| p.add_months(-2).first_day()).collect::<Vec<_>>(),
        "period_3" => periods.iter().map(|p| p.add_months(-3).to_string()).collect::<Vec<_>>(),
    )
    .expect("columns of equal length")
    .lazy()
}

/// R3.2 / R2.1: `active_customers` of each operator at the end of each period of
/// `ops_periods` (operator × calendar), by `operator_id` and `period`.
fn active_customers_by_period(inputs: &Inputs, ops_periods: LazyFrame) -> LazyFrame {
    ops_periods
        .join(
            inputs.customers.clone().select([
                col("operator_id"),
                col("contract_signed_on"),
                col("churned_on"),
            ]),
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(
            col("contract_signed_on").lt_eq(col("p_last")).and(
                col("churned_on")
                    .is_null()
                    .or(col("churned_on").gt(col("p_last"))),
            ),
        )
        .group_by([col("operator_id"), col("period")])
        .agg([len().cast(DataType::Int64).alias("active_customers")])
}

/// R3.4: `csat_responses` and `csat_satisfied` (score ≥ the plan's satisfied score)
/// over the responses with a CSAT score, by the response's `operator_id`, submitted
/// in M−2..M of each period of `ops_periods`.
fn csat_by_period(inputs: &Inputs, ops_periods: LazyFrame, ex: &Exclusivity) -> LazyFrame {
    ops_periods
        .join(
            inputs
                .survey_responses
                .clone()
                .filter(col("csat_score").is_not_null())
                .select([col("operator_id"), col("submitted_on"), col("csat_score")]),
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .filter(
            col("submitted_on")
                .gt_eq(col("win_first"))
                .and(col("submitted_on").lt_eq(col("p_last"))),
        )
        .group_by([col("operator_id"), col("period")])
        .agg([
            len().cast(DataType::Int64).alias("csat_responses"),
            col("csat_score")
                .gt_eq(lit(ex.satisfied_csat_score))
                .cast(DataType::Int64)
                .sum()
                .alias("csat_satisfied"),
        ])
}

/// R3.1 / R3.3 / R6.1: the exclusive operators' MRR by `period`, `operator_id` and
/// `currency` (`mrr_cents`), and the same keyed by `period_3` for M−3 (`mrr_cents_3`).
fn mrr_of_m_and_m_3(
    inputs: &Inputs,
    operator_ids: LazyFrame,
    periods: &[Period],
) -> (LazyFrame, LazyFrame) {
    // Only these operators' software lines are recognised; customer ids are unique
    // in a snapshot (ingest enforces the key), so narrowing after the CRM owner is
    // chosen gives the same rows as computing everybody's MRR and narrowing after.
    let mrr_periods: Vec<Period> = match (periods.first(), periods.last()) {
        (Some(first), Some(last)) => first.add_months(-3).through(*last).collect(),
        _ => Vec::new(),
    };
    let revenue = mrr_of_operators(inputs, &mrr_periods, operator_ids);
    let revenue_3 = revenue.clone().select([
        col("period").alias("period_3"),
        col("operator_id"),
        col("currency"),
        col("mrr_cents").alias("mrr_cents_3"),
    ]);
    (revenue, revenue_3)
}

/// R3.3: (`growth_ok`, `qoq_growth`) over `p_months`, `exclusive_since`, `mrr_cents`
/// and `mrr_cents_3` — growth is checked only in the first months of exclusivity,
/// and `qoq_growth` is null where it is not checked or MRR(M−3) is 0.
fn growth_exprs(ex: &Exclusivity) -> (Expr, Expr) {
    // R3.3: month 1 is the month of exclusive_since.
    let exclusivity_month = col("p_months") - months_of(col("exclusive_since")) + lit(1i64);
    let growth_checked = exclusivity_month.lt_eq(lit(ex.growth_check_months));
    // Integer form of MRR(M) ≥ (1 + bp/10000) × MRR(M−3); with MRR(M−3) = 0 any
    // positive MRR is growth.
    let growth_holds = when(col("mrr_cents_3").eq(lit(0i64)))
        .then(col("mrr_cents").gt(lit(0i64)))
        .otherwise(
            (col("mrr_cents") * lit(10_000i64))
                .gt_eq(col("mrr_cents_3") * lit(10_000i64 + ex.min_qoq_growth_bp)),
        );
    let growth_ok = growth_checked.clone().not().or(growth_holds);
    let qoq_growth = when(growth_checked.and(col("mrr_cents_3").neq(lit(0i64))))
        .then(
            col("mrr_cents").cast(DataType::Float64) / col("mrr_cents_3").cast(DataType::Float64)
                - lit(1.0f64),
        )
        .otherwise(lit(NULL).cast(DataType::Float64));
    (growth_ok, qoq_growth)
}

/// R3.4: (`satisfaction`, `csat_share`) over `csat_responses` and `csat_satisfied`:
/// `insufficient_data` below `min_responses` (and no share), else `ok` when the share
/// is above the plan's threshold, `failed` otherwise.
fn satisfaction_exprs(ex: &Exclusivity, min_responses: i64) -> (Expr, Expr) {
    let insufficient = col("csat_responses").lt(lit(min_responses));
    // R3.4 "above 0.90", compared in integers: satisfied × 10000 > responses × bp.
    let csat_ok = (col("csat_satisfied") * lit(10_000i64))
        .gt(col("csat_responses") * lit(ex.min_csat_share_bp));
    let satisfaction = when(insufficient.clone())
        .then(lit(SATISFACTION_INSUFFICIENT))
        .when(csat_ok)
        .then(lit(SATISFACTION_OK))
        .otherwise(lit(SATISFACTION_FAILED));
    let csat_share = when(insufficient.not())
        .then(
            col("csat_satisfied").cast(DataType::Float64)
                / col("csat_responses").cast(DataType::Float64),
        )
        .otherwise(lit(NULL).cast(DataType::Float64));
    (satisfaction, csat_share)
}

/// R3.1–R3.5 on the grid of pairs × periods with their figures: adds `mrr_ok`,
/// `customers_ok`, `growth_ok`, `qoq_growth`, `satisfaction`, `csat_share`,
/// `compliant`, `failed_criteria` and `breach` (eligible and not compliant).
fn judge(grid: LazyFrame, ex: &Exclusivity, min_responses: i64) -> LazyFrame {
    let mrr_ok = col("mrr_cents").gt_eq(min_mrr_expr(ex));
    let customers_ok = col("active_customers").gt_eq(lit(ex.min_active_customers));
    let (growth_ok, qoq_growth) = growth_exprs(ex);
    let (satisfaction, csat_share) = satisfaction_exprs(ex, min_responses);
    let failed = |ok: Expr, name: &str| {
        when(ok.not())
            .then(lit(name.to_string()))
            .otherwise(lit(NULL).cast(DataType::String))
    };
    let satisfaction_failed = col("satisfaction").eq(lit(SATISFACTION_FAILED));

    grid.with_columns([
        mrr_ok.clone().alias("mrr_ok"),
        customers_ok.clone().alias("customers_ok"),
        growth_ok.clone().alias("growth_ok"),
        qoq_growth.alias("qoq_growth"),
        satisfaction.alias("satisfaction"),
        csat_share.alias("csat_share"),
    ])
    .with_column(
        // R3.5: insufficient_data is not a failure.
        col("mrr_ok")
            .and(col("customers_ok"))
            .and(col("growth_ok"))
            .and(satisfaction_failed.clone().not())
            .alias("compliant"),
    )
    .with_columns([
        concat_str(
            [
                failed(col("mrr_ok"), "mrr"),
                failed(col("customers_ok"), "customers"),
                failed(col("growth_ok"), "growth"),
                failed(satisfaction_failed.not(), "satisfaction"),
            ],
            ",",
            true,
        )
        .fill_null(lit(""))
        .alias("failed_criteria"),
        col("eligible").and(col("compliant").not()).alias("breach"),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
