//! R5 — network health, the leadership report: one `network_health` row per metric
//! (and dimension: metro, vertical, currency or tier) for period M, with its target
//! from the plan and whether it is on target.
//!
//! The 12-month trend is the report reading the rows of earlier periods; this module
//! computes one period. Money figures are per currency (R0.2) and carry the integer
//! in `value_cents`; money targets apply to the plan's target currency only (R5.1).

use crate::Inputs;
use crate::active::active_operators;
use crate::money::{div_round_half_even_expr, sum_cents};
use crate::mrr::mrr;
use crate::period::Period;
use crate::plan::Plan;
use polars::prelude::*;

/// The tiers of R2.2, lowest first, each reported even when no operator holds it.
pub const TIERS: [&str; 5] = crate::tiers::TIER_ORDER;

/// The R5 metric ids of `network_health.metric`: the one definition the pipeline,
/// the report and the tests use.
pub mod metric {
    /// R5.1 operators active at end of M.
    pub const ACTIVE_OPERATORS: &str = "active_operators";
    /// R5.2 1 when a target metro (the dimension) has an active operator.
    pub const METRO_COVERED: &str = "metro_covered";
    /// R5.2 the share of target metros covered.
    pub const COVERAGE_SHARE: &str = "coverage_share";
    /// R5.3 active operators listing a vertical (the dimension).
    pub const VERTICAL_SPECIALISTS: &str = "vertical_specialists";
    /// R5.4 total MRR per currency.
    pub const TOTAL_MRR_CENTS: &str = "total_mrr_cents";
    /// R5.4 total MRR over active operators, per currency.
    pub const MRR_PER_OPERATOR_CENTS: &str = "mrr_per_operator_cents";
    /// R5.5 the share of the operators active twelve months earlier still active.
    pub const OPERATOR_RETENTION: &str = "operator_retention";
    /// R5: payable of M's statements, per currency.
    pub const PAYOUTS_CENTS: &str = "payouts_cents";
    /// R5: active operators per tier (the dimension).
    pub const TIER_OPERATORS: &str = "tier_operators";
    /// R5: operators whose `joined_on` is in M.
    pub const OPERATORS_JOINED: &str = "operators_joined";
    /// R5: operators whose `terminated_on` is in M.
    pub const OPERATORS_LOST: &str = "operators_lost";

    /// Every R5 metric id, in the order of R5 (the report's order).
    pub const ALL: [&str; 11] = [
        ACTIVE_OPERATORS,
        METRO_COVERED,
        COVERAGE_SHARE,
        VERTICAL_SPECIALISTS,
        TOTAL_MRR_CENTS,
        MRR_PER_OPERATOR_CENTS,
        OPERATOR_RETENTION,
        PAYOUTS_CENTS,
        TIER_OPERATORS,
        OPERATORS_JOINED,
        OPERATORS_LOST,
    ];
}

/// The `network_health` rows of `period` (R5):
///
/// `period` str, `metric` str, `dimension` str?, `value` f64?, `value_cents` i64?
/// (money metrics only), `target` f64?, `on_target` bool? (null without a target) —
/// sorted by metric and dimension.
///
/// `tiers` is M's `operator_tiers` (`operator_id`, `tier`); `payable` holds M's
/// statements (`currency`, `payable_cents`). Both are parameters so that this module
/// does not depend on how they are computed.
pub fn network_health(
    inputs: &Inputs,
    period: Period,
    plan: &Plan,
    tiers: LazyFrame,
    payable: LazyFrame,
) -> LazyFrame {
    let operators = inputs
        .operators
        .clone()
        .unique_stable(Some(cols(["operator_id"])), UniqueKeepStrategy::First);
    let active = active_operators(operators.clone(), period.last_day());
    // R5.1: a one-row frame with the number of active operators, reused below.
    let n_active = active
        .clone()
        .select([len().cast(DataType::Int64).alias("n_active")]);

    let mut parts = vec![
        active_operator_rows(n_active.clone(), plan),
        coverage_rows(inputs, active.clone(), plan),
        vertical_rows(operators.clone(), active.clone(), plan),
    ];
    parts.extend(revenue_rows(inputs, period, n_active, plan));
    parts.push(retention_rows(operators.clone(), period, plan));
    parts.push(money_rows(
        metric::PAYOUTS_CENTS,
        payable
            .group_by([col("currency")])
            .agg([sum_cents(col("payable_cents")).alias("cents")]),
    ));
    parts.push(tier_rows(tiers));
    parts.push(count_row(
        metric::OPERATORS_JOINED,
        in_month(operators.clone(), "joined_on", period),
    ));
    parts.push(count_row(
        metric::OPERATORS_LOST,
        in_month(operators, "terminated_on", period),
    ));

    let fallback = parts[0].clone();
    concat(parts, UnionArgs::default())
        // `concat` only fails on an empty list, and this one is never empty.
        .unwrap_or(fallback)
        .with_column(lit(period.to_string()).alias("period"))
        .select([
            col("period"),
            col("metric"),
            col("dimension"),
            col("value"),
            col("value_cents"),
            col("target"),
            col("on_target"),
        ])
        .sort(["metric", "dimension"], SortMultipleOptions::default())
}

fn null(dtype: DataType) -> Expr {
    lit(NULL).cast(dtype)
}

/// Shapes one metric's rows into the table's columns and types.
fn rows(
    frame: LazyFrame,
    metric: &str,
    dimension: Expr,
    value: Expr,
    value_cents: Expr,
    target: Expr,
    on_target: Expr,
) -> LazyFrame {
    frame.select([
        lit(metric.to_string()).alias("metric"),
        dimension.cast(DataType::String).alias("dimension"),
        value.cast(DataType::Float64).alias("value"),
        value_cents.cast(DataType::Int64).alias("value_cents"),
        target.cast(DataType::Float64).alias("target"),
        on_target.cast(DataType::Boolean).alias("on_target"),
    ])
}

/// R5.1 `active_operators`: on target within `[min, max]`; `target` holds the min.
fn active_operator_rows(n_active: LazyFrame, plan: &Plan) -> LazyFrame {
    let net = &plan.network;
    rows(
        n_active,
        metric::ACTIVE_OPERATORS,
        null(DataType::String),
        col("n_active"),
        null(DataType::Int64),
        lit(net.active_operators_min),
        col("n_active")
            .gt_eq(lit(net.active_operators_min))
            .and(col("n_active").lt_eq(lit(net.active_operators_max))),
    )
}

/// R5.2 `metro_covered` per target metro (1 when an active operator has it as its
/// `metro`) and `coverage_share`. Target metros are the plan's, or by default the
/// metros of crm/territories. With no target metro at all the share is null.
fn coverage_rows(inputs: &Inputs, active: LazyFrame, plan: &Plan) -> LazyFrame {
    let metros = if plan.network.target_metros.is_empty() {
        inputs.territories.clone().select([col("metro")])
    } else {
        let names: Vec<String> = plan.network.target_metros.clone();
        DataFrame::new_infer_height(vec![Column::new("metro".into(), names)])
            .map(|df| df.lazy())
            .unwrap_or_else(|_| inputs.territories.clone().select([col("metro")]))
    }
    .filter(col("metro").is_not_null())
    .unique_stable(None, UniqueKeepStrategy::First);
    let covered = active
        .select([col("metro"), lit(1i64).alias("covered")])
        .unique(Some(cols(["metro"])), UniqueKeepStrategy::Any);
    let per_metro = metros
        .join(
            covered,
            [col("metro")],
            [col("metro")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("covered").fill_null(lit(0i64)));

    let metro_rows = rows(
        per_metro.clone(),
        metric::METRO_COVERED,
        col("metro"),
        col("covered"),
        null(DataType::Int64),
        lit(1.0f64),
        col("covered").gt_eq(lit(1i64)),
    );
    let share = per_metro.select([
        len().cast(DataType::Int64).alias("n"),
        col("covered").sum().alias("covered"),
    ]);
    let share_value = when(col("n").gt(lit(0i64)))
        .then(col("covered").cast(DataType::Float64) / col("n").cast(DataType::Float64))
        .otherwise(null(DataType::Float64));
    let share_rows = rows(
        share.with_column(share_value.alias("share")),
        metric::COVERAGE_SHARE,
        null(DataType::String),
        col("share"),
        null(DataType::Int64),
        lit(1.0f64),
        col("share").gt_eq(lit(1.0f64)),
    );
    concat([metro_rows.clone(), share_rows], UnionArgs::default()).unwrap_or(metro_rows)
}

/// R5.3 `vertical_specialists`: every vertical named by any operator in crm/operators
/// (`;`-separated, trimmed, empty names ignored), with the number of active
/// operators listing it.
fn vertical_rows(operators: LazyFrame, active: LazyFrame, plan: &Plan) -> LazyFrame {
    let listed = operators
        .select([
            col("operator_id"),
            col("verticals").str().split(lit(";")).alias("vertical"),
        ])
        .explode(
            cols(["vertical"]),
            ExplodeOptions {
                empty_as_null: true,
                keep_nulls: false,
            },
        )
        .with_column(col("vertical").str().strip_chars(lit(NULL)))
        .filter(
            col("vertical")
                .is_not_null()
                .and(col("vertical").neq(lit(""))),
        )
        .unique(None, UniqueKeepStrategy::Any);
    let all = listed
        .clone()
        .select([col("vertical")])
        .unique(None, UniqueKeepStrategy::Any);
    let counts = listed
        .join(
            active.select([col("operator_id")]),
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Semi),
        )
        .group_by([col("vertical")])
        .agg([len().cast(DataType::Int64).alias("n")]);
    let min = plan.network.vertical_specialists_min;
    rows(
        all.join(
            counts,
            [col("vertical")],
            [col("vertical")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("n").fill_null(lit(0i64))),
        metric::VERTICAL_SPECIALISTS,
        col("vertical"),
        col("n"),
        null(DataType::Int64),
        lit(min),
        col("n").gt_eq(lit(min)),
    )
}

/// R5.4 `total_mrr_cents` and `mrr_per_operator_cents` per currency. The target
/// currency is always reported (at 0 when it has no revenue) so that a missed
/// target is visible; per-operator revenue is half-even integer division by the
/// R5.1 count, null when no operator is active.
fn revenue_rows(
    inputs: &Inputs,
    period: Period,
    n_active: LazyFrame,
    plan: &Plan,
) -> Vec<LazyFrame> {
    let net = &plan.network;
    let target_currency = df!("currency" => [net.target_currency.clone()])
        .map(|df| df.lazy())
        .unwrap_or_else(|_| inputs.invoices.clone().select([col("currency")]).limit(0));
    let totals = mrr(inputs, &[period])
        .group_by([col("currency")])
        .agg([sum_cents(col("mrr_cents")).alias("cents")]);
    let currencies = concat(
        [
            totals.clone().select([col("currency")]),
            target_currency.clone(),
        ],
        UnionArgs::default(),
    )
    .unwrap_or(target_currency)
    .unique(None, UniqueKeepStrategy::Any);
    let totals = currencies
        .join(
            totals,
            [col("currency")],
            [col("currency")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("cents").fill_null(lit(0i64)));

    let per_operator = when(col("n_active").gt(lit(0i64)))
        .then(div_round_half_even_expr(col("cents"), col("n_active")))
        .otherwise(null(DataType::Int64));
    let is_target = col("currency").eq(lit(net.target_currency.as_str()));
    let target = when(is_target.clone())
        .then(lit(net.mrr_per_operator_min_cents as f64))
        .otherwise(null(DataType::Float64));
    let on_target = when(is_target)
        .then(col("per_operator").gt_eq(lit(net.mrr_per_operator_min_cents)))
        .otherwise(null(DataType::Boolean));
    let per_operator_rows = rows(
        totals
            .clone()
            .cross_join(n_active, None)
            .with_column(per_operator.alias("per_operator")),
        metric::MRR_PER_OPERATOR_CENTS,
        col("currency"),
        col("per_operator"),
        col("per_operator"),
        target,
        on_target,
    );
    vec![
        money_rows(metric::TOTAL_MRR_CENTS, totals),
        per_operator_rows,
    ]
}

/// A money metric without a target: `currency`, `cents` → value and value_cents.
fn money_rows(metric: &str, frame: LazyFrame) -> LazyFrame {
    rows(
        frame,
        metric,
        col("currency"),
        col("cents"),
        col("cents"),
        null(DataType::Float64),
        null(DataType::Boolean),
    )
}

/// R5.5 `operator_retention`: of the operators active at end of M−12, the share
/// active at end of M; null (and no on_target) when there were none. On target when
/// strictly above the plan's minimum.
fn retention_rows(operators: LazyFrame, period: Period, plan: &Plan) -> LazyFrame {
    let cohort = active_operators(operators, period.add_months(-12).last_day());
    let still = crate::active::operator_active_at(period.last_day());
    let stats = cohort.select([
        len().cast(DataType::Int64).alias("cohort"),
        still.cast(DataType::Int64).sum().alias("retained"),
    ]);
    let value = when(col("cohort").gt(lit(0i64)))
        .then(col("retained").cast(DataType::Float64) / col("cohort").cast(DataType::Float64))
        .otherwise(null(DataType::Float64));
    let min = plan.network.operator_retention_min;
    rows(
        stats.with_column(value.alias("share")),
        metric::OPERATOR_RETENTION,
        null(DataType::String),
        col("share"),
        null(DataType::Int64),
        lit(min),
        col("share").gt(lit(min)),
    )
}

/// `tier_operators`: operators per tier of M, every tier of [`TIERS`] included.
fn tier_rows(tiers: LazyFrame) -> LazyFrame {
    let all = df!("tier" => TIERS.to_vec())
        .map(|df| df.lazy())
        .unwrap_or_else(|_| tiers.clone().select([col("tier")]).limit(0));
    let counts = tiers
        .group_by([col("tier")])
        .agg([len().cast(DataType::Int64).alias("n")]);
    rows(
        all.join(
            counts,
            [col("tier")],
            [col("tier")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("n").fill_null(lit(0i64))),
        metric::TIER_OPERATORS,
        col("tier"),
        col("n"),
        null(DataType::Int64),
        null(DataType::Float64),
        null(DataType::Boolean),
    )
}

/// Operators whose `date_col` falls in M.
fn in_month(operators: LazyFrame, date_col: &str, period: Period) -> LazyFrame {
    operators.filter(
        col(date_col)
            .gt_eq(lit(period.first_day()))
            .and(col(date_col).lt_eq(lit(period.last_day()))),
    )
}

/// A plain count without dimension or target.
fn count_row(metric: &str, frame: LazyFrame) -> LazyFrame {
    rows(
        frame.select([len().cast(DataType::Int64).alias("n")]),
        metric,
        null(DataType::String),
        col("n"),
        null(DataType::Int64),
        null(DataType::Float64),
        null(DataType::Boolean),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
