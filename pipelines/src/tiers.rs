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
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn tiers_of(counts: &[i64]) -> Vec<String> {
        let plan = Plan::playbook();
        let df = df!("n" => counts).unwrap();
        let out = df
            .lazy()
            .select([tier_for_counts(col("n"), &plan).alias("t")])
            .collect()
            .unwrap();
        out.column("t")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|s| s.unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn r2_2_tier_boundaries_5_6_15_16_30_31() {
        assert_eq!(
            tiers_of(&[0, 1, 5, 6, 15, 16, 30, 31, 200]),
            [
                "none", "bronze", "bronze", "silver", "silver", "gold", "gold", "platinum",
                "platinum"
            ]
        );
    }

    /// `n` customers for `op`, signed on `signed`, optionally churned.
    fn customers(rows: &[(&str, usize, &str, Option<&str>)]) -> LazyFrame {
        let (mut id, mut op, mut signed, mut churned) = (vec![], vec![], vec![], vec![]);
        for (o, n, s, c) in rows {
            for _ in 0..*n {
                id.push(format!("c{}", id.len()));
                op.push(o.to_string());
                signed.push(d(s));
                churned.push(c.map(d));
            }
        }
        df!("customer_id" => id, "operator_id" => op, "contract_signed_on" => signed, "churned_on" => churned)
            .unwrap()
            .lazy()
    }

    fn operators(rows: &[(&str, &str, Option<&str>)]) -> LazyFrame {
        df!(
            "operator_id" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            "joined_on" => rows.iter().map(|r| d(r.1)).collect::<Vec<_>>(),
            "terminated_on" => rows.iter().map(|r| r.2.map(d)).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy()
    }

    fn table(inputs: &Inputs, p: &str) -> Vec<(String, i64, String, String, String)> {
        let out = operator_tiers(inputs, Period::parse(p).unwrap(), &Plan::playbook())
            .collect()
            .unwrap();
        let s = |c: &str| {
            out.column(c)
                .unwrap()
                .str()
                .unwrap()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let n: Vec<i64> = out
            .column("active_customers")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .map(|v| v.unwrap())
            .collect();
        assert!(s("period").iter().all(|x| x == p));
        let (ids, t, pt, ch) = (s("operator_id"), s("tier"), s("previous_tier"), s("change"));
        (0..out.height())
            .map(|i| {
                (
                    ids[i].clone(),
                    n[i],
                    t[i].clone(),
                    pt[i].clone(),
                    ch[i].clone(),
                )
            })
            .collect()
    }

    #[test]
    fn r2_3_promotion_demotion_and_new_operator() {
        let mut i = Inputs::empty();
        i.operators = operators(&[
            ("a", "2024-01-01", None),
            ("b", "2024-01-01", None),
            ("c", "2025-03-10", None),
            ("t", "2024-01-01", Some("2025-03-31")),
        ]);
        i.customers = customers(&[
            // a: 5 in Feb, 6 in Mar → bronze → silver
            ("a", 5, "2025-01-01", None),
            ("a", 1, "2025-03-31", None),
            // b: 16 in Feb, one churns in Mar → gold → silver
            ("b", 15, "2025-01-01", None),
            ("b", 1, "2025-01-01", Some("2025-03-15")),
            // c joined in Mar with 31: none (not active in Feb) → platinum
            ("c", 31, "2025-03-10", None),
            // t terminated on the last day of Mar: not in March's table
            ("t", 3, "2025-01-01", None),
        ]);
        let rows = table(&i, "2025-03");
        assert_eq!(
            rows,
            [
                (
                    "a".into(),
                    6,
                    "silver".into(),
                    "bronze".into(),
                    "promotion".into()
                ),
                (
                    "b".into(),
                    15,
                    "silver".into(),
                    "gold".into(),
                    "demotion".into()
                ),
                (
                    "c".into(),
                    31,
                    "platinum".into(),
                    "none".into(),
                    "promotion".into()
                ),
            ]
        );
    }

    #[test]
    fn r2_1_churn_on_the_last_day_vs_the_day_after() {
        let mut i = Inputs::empty();
        i.operators = operators(&[("a", "2024-01-01", None)]);
        // 6 customers, one churns on 2025-03-31 (not active at end of March) and one
        // on 2025-04-01 (still active at end of March)
        i.customers = customers(&[
            ("a", 4, "2024-06-01", None),
            ("a", 1, "2024-06-01", Some("2025-03-31")),
            ("a", 1, "2024-06-01", Some("2025-04-01")),
        ]);
        assert_eq!(
            table(&i, "2025-03"),
            [(
                "a".into(),
                5,
                "bronze".into(),
                "silver".into(),
                "demotion".into()
            )]
        );
        assert_eq!(
            table(&i, "2025-02"),
            [(
                "a".into(),
                6,
                "silver".into(),
                "silver".into(),
                "none".into()
            )]
        );
        // an operator with no customers at all has tier none and no change
        let mut j = Inputs::empty();
        j.operators = operators(&[("z", "2024-01-01", None)]);
        assert_eq!(
            table(&j, "2025-03"),
            [("z".into(), 0, "none".into(), "none".into(), "none".into())]
        );
    }

    #[test]
    fn r1_4_bonus_by_tier() {
        let plan = Plan::playbook();
        let df = df!("t" => [Some("none"), Some("bronze"), Some("silver"), Some("gold"), Some("platinum"), None]).unwrap();
        let out = df
            .lazy()
            .select([software_bonus_expr(col("t"), &plan).alias("b")])
            .collect()
            .unwrap();
        let b: Vec<i64> = out
            .column("b")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .map(|v| v.unwrap())
            .collect();
        assert_eq!(b, [0, 0, 500, 1000, 1500, 0]);
    }
}
