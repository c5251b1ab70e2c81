//! Shared definitions every rule family leans on: active customers (R2.1), active
//! operators (R6.2), tenure (R1.1) and phase (R1.2), as Polars expressions.
//!
//! They take the date they are evaluated at as a parameter, so "end of M" and
//! "end of M−12" are the same code.

use crate::period::Period;
use crate::plan::Plan;
use chrono::NaiveDate;
use polars::prelude::*;

/// A date literal usable against `Date` columns.
pub fn date_lit(d: NaiveDate) -> Expr {
    lit(d)
}

/// R2.1 — a customer is active at `d` when `contract_signed_on ≤ d` and
/// (`churned_on` is empty or `churned_on > d`): churned on `d` itself is not active.
pub fn customer_active_at(d: NaiveDate) -> Expr {
    col("contract_signed_on").lt_eq(date_lit(d)).and(
        col("churned_on")
            .is_null()
            .or(col("churned_on").gt(date_lit(d))),
    )
}

/// R6.2 — an operator is active at `d` when `joined_on ≤ d` and (`terminated_on`
/// is empty or `terminated_on > d`).
pub fn operator_active_at(d: NaiveDate) -> Expr {
    col("joined_on").lt_eq(date_lit(d)).and(
        col("terminated_on")
            .is_null()
            .or(col("terminated_on").gt(date_lit(d))),
    )
}

/// R1.1 `months(d) = 12·year + month` of a date expression, as Int64.
pub fn months_of(date: Expr) -> Expr {
    date.clone().dt().year().cast(DataType::Int64) * lit(12i64)
        + date.dt().month().cast(DataType::Int64)
}

/// R1.1 — tenure month of an operator (`joined_on` column) in `period`: the month of
/// joining is tenure month 1.
pub fn tenure(period: Period) -> Expr {
    lit(period.months() as i64) - months_of(col("joined_on")) + lit(1i64)
}

/// R1.2 — `initial` / `growth` / `mature` from a tenure expression, at the plan's
/// phase boundaries (12 and 24 by default).
pub fn phase(tenure: Expr, plan: &Plan) -> Expr {
    let rs = &plan.revenue_share;
    when(tenure.clone().lt_eq(lit(rs.initial_through_month)))
        .then(lit("initial"))
        .when(tenure.lt_eq(lit(rs.growth_through_month)))
        .then(lit("growth"))
        .otherwise(lit("mature"))
}

/// Operators active at `d` (R6.2), all their columns.
pub fn active_operators(operators: LazyFrame, d: NaiveDate) -> LazyFrame {
    operators.filter(operator_active_at(d))
}

/// Active customers at `d` per operator (R2.1): `operator_id`, `active_customers`.
/// Customers without an operator count for nobody.
pub fn active_customer_counts(customers: LazyFrame, d: NaiveDate) -> LazyFrame {
    customers
        .filter(customer_active_at(d).and(col("operator_id").is_not_null()))
        .group_by([col("operator_id")])
        .agg([len().cast(DataType::Int64).alias("active_customers")])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn r2_1_churn_on_the_day_is_inactive_and_day_after_is_active() {
        let customers = df!(
            "customer_id" => ["a", "b", "c", "d"],
            "operator_id" => [Some("op"), Some("op"), Some("op"), None],
            "contract_signed_on" => [d("2025-01-10"), d("2025-01-10"), d("2025-02-01"), d("2025-01-01")],
            "churned_on" => [Some(d("2025-01-31")), Some(d("2025-02-01")), None, None],
        )
        .unwrap();
        let out = active_customer_counts(customers.lazy(), d("2025-01-31"))
            .collect()
            .unwrap();
        // a churned on the day: inactive; b churns the day after: active; c signs later; d has no operator
        assert_eq!(
            out.column("active_customers")
                .unwrap()
                .i64()
                .unwrap()
                .get(0),
            Some(1)
        );
    }

    #[test]
    fn r6_2_terminated_on_the_day_is_inactive() {
        let ops = df!(
            "operator_id" => ["x", "y", "z"],
            "joined_on" => [d("2025-01-31"), d("2024-01-01"), d("2025-02-01")],
            "terminated_on" => [None, Some(d("2025-01-31")), None],
        )
        .unwrap();
        let out = active_operators(ops.lazy(), d("2025-01-31"))
            .collect()
            .unwrap();
        let ids: Vec<_> = out
            .column("operator_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(ids, ["x"]);
    }

    #[test]
    fn r1_1_r1_2_tenure_and_phase_boundaries() {
        let plan = Plan::playbook();
        // joined 2024-01 → 2024-12 is tenure 12 (initial), 2025-01 is 13 (growth),
        // 2025-12 is 24 (growth), 2026-01 is 25 (mature)
        let ops = df!("joined_on" => [d("2024-01-31")]).unwrap();
        for (p, t, ph) in [
            ("2024-01", 1, "initial"),
            ("2024-12", 12, "initial"),
            ("2025-01", 13, "growth"),
            ("2025-12", 24, "growth"),
            ("2026-01", 25, "mature"),
        ] {
            let period = Period::parse(p).unwrap();
            let out = ops
                .clone()
                .lazy()
                .select([
                    tenure(period).alias("t"),
                    phase(tenure(period), &plan).alias("p"),
                ])
                .collect()
                .unwrap();
            assert_eq!(
                out.column("t").unwrap().i64().unwrap().get(0),
                Some(t),
                "{p}"
            );
            assert_eq!(
                out.column("p").unwrap().str().unwrap().get(0),
                Some(ph),
                "{p}"
            );
        }
    }
}
