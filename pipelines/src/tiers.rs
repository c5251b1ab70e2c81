//! R2.1–R2.3 — operator tiers: the tier for M from the active customers at end of M,
//! the tier for M−1 by the same rule from the same data, and the change between them.
//!
//! The tier decides the software bonus of the revenue share (R1.4, see
//! [`software_bonus_expr`]), so payouts and the `operator_tiers` table use the same
//! expression and can never disagree.

use crate::Inputs;
use crate::active::{active_customer_counts, active_operators};
use crate::period::Period;
use crate::plan::Plan;
use polars::prelude::*;

/// The tiers in their order (R2.3): a move to the right is a promotion.
pub const TIER_ORDER: [&str; 5] = ["none", "bronze", "silver", "gold", "platinum"];

/// R2.2 — the tier for a count of active customers at end of M, at the plan's
/// thresholds (1, 6, 16, 31 by default): 0 → `none`, 1–5 `bronze`, 6–15 `silver`,
/// 16–30 `gold`, 31+ `platinum`. A null count is 0 (an operator without customers).
pub fn tier_for_counts(active_customers: Expr, plan: &Plan) -> Expr {
    let m = &plan.tiers.min_active_customers;
    let n = active_customers.cast(DataType::Int64).fill_null(lit(0i64));
    when(n.clone().gt_eq(lit(m.platinum)))
        .then(lit("platinum"))
        .when(n.clone().gt_eq(lit(m.gold)))
        .then(lit("gold"))
        .when(n.clone().gt_eq(lit(m.silver)))
        .then(lit("silver"))
        .when(n.gt_eq(lit(m.bronze)))
        .then(lit("bronze"))
        .otherwise(lit("none"))
}

/// R2.3 — the position of a tier in [`TIER_ORDER`] (0 for `none` and anything
/// unknown), so promotion and demotion are integer comparisons.
pub fn tier_rank(tier: Expr) -> Expr {
    let is = |rank: usize| tier.clone().eq(lit(TIER_ORDER[rank]));
    when(is(1))
        .then(lit(1i64))
        .when(is(2))
        .then(lit(2i64))
        .when(is(3))
        .then(lit(3i64))
        .when(is(4))
        .then(lit(4i64))
        .otherwise(lit(0i64))
        .cast(DataType::Int64)
}

/// R1.4 — the points a tier adds to the software share; `none` (and a null tier, an
/// operator not active at end of M) adds nothing.
pub fn software_bonus_expr(tier: Expr, plan: &Plan) -> Expr {
    let b = &plan.tiers.software_bonus_bp;
    when(tier.clone().eq(lit("bronze")))
        .then(lit(b.bronze))
        .when(tier.clone().eq(lit("silver")))
        .then(lit(b.silver))
        .when(tier.clone().eq(lit("gold")))
        .then(lit(b.gold))
        .when(tier.eq(lit("platinum")))
        .then(lit(b.platinum))
        .otherwise(lit(0i64))
        .cast(DataType::Int64)
}

/// R2.2 — `operator_id`, `active_customers`, `tier` for every operator active at the
/// end of `period` (R6.2). Operators listed twice in the CRM count once.
fn tiers_at(inputs: &Inputs, period: Period, plan: &Plan) -> LazyFrame {
    let end = period.last_day();
    let counts = active_customer_counts(inputs.customers.clone(), end);
    active_operators(inputs.operators.clone(), end)
        .select([col("operator_id")])
        .unique_stable(None, UniqueKeepStrategy::First)
        .join(
            counts,
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(
            col("active_customers")
                .cast(DataType::Int64)
                .fill_null(lit(0i64)),
        )
        .with_column(tier_for_counts(col("active_customers"), plan).alias("tier"))
}

/// The `operator_tiers` table for `period` (R2.2–R2.3): `period` (str), `operator_id`
/// (str), `active_customers` (i64), `tier`, `previous_tier`, `change`
/// (`promotion`|`demotion`|`none`), one row per operator active at end of M, sorted by
/// `operator_id`.
///
/// `previous_tier` is the tier for M−1 by the same rule from the same snapshot, not a
/// stored value, so a corrected CRM record re-tiers both months consistently; an
/// operator not active at end of M−1 had tier `none` then.
pub fn operator_tiers(inputs: &Inputs, period: Period, plan: &Plan) -> LazyFrame {
    let previous = tiers_at(inputs, period.prev(), plan)
        .select([col("operator_id"), col("tier").alias("previous_tier")]);
    tiers_at(inputs, period, plan)
        .join(
            previous,
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("previous_tier").fill_null(lit("none")))
        .with_column(
            when(tier_rank(col("tier")).gt(tier_rank(col("previous_tier"))))
                .then(lit("promotion"))
                .when(tier_rank(col("tier")).lt(tier_rank(col("previous_tier"))))
                .then(lit("demotion"))
                .otherwise(lit("none"))
                .alias("change"),
        )
        .select([
            lit(period.to_string()).alias("period"),
            col("operator_id"),
            col("active_customers"),
            col("tier"),
            col("previous_tier"),
            col("change"),
        ])
        .sort(["operator_id"], SortMultipleOptions::default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
