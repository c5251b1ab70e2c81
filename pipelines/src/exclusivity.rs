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
use crate::mrr::mrr;
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
    let calendar = df!(
        "period" => periods.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "p_months" => periods.iter().map(|p| p.months() as i64).collect::<Vec<_>>(),
        "p_last" => periods.iter().map(|p| p.last_day()).collect::<Vec<_>>(),
        // R3.4: the survey window is M−2..M
        "win_first" => periods.iter().map(|p| p.add_months(-2).first_day()).collect::<Vec<_>>(),
        "period_3" => periods.iter().map(|p| p.add_months(-3).to_string()).collect::<Vec<_>>(),
    )
    .expect("columns of equal length")
    .lazy();

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

    // R3.2 / R2.1: the operator's active customers at the end of each period.
    let active = ops_periods
        .clone()
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
        .agg([len().cast(DataType::Int64).alias("active_customers")]);

    // R3.4: responses with a CSAT score, by the response's operator_id, in M−2..M.
    let csat = ops_periods
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
        ]);

    // R3.1 / R3.3 / R6.1: MRR of M and M−3, only for the exclusive operators'
    // customers (the rest of the network is not needed and would multiply the work
    // by the number of months).
    let mut own = inputs.clone();
    own.customers = inputs.customers.clone().join(
        operator_ids,
        [col("operator_id")],
        [col("operator_id")],
        JoinArgs::new(JoinType::Semi),
    );
    let mrr_periods: Vec<Period> = match (periods.first(), periods.last()) {
        (Some(first), Some(last)) => first.add_months(-3).through(*last).collect(),
        _ => Vec::new(),
    };
    let revenue = mrr(&own, &mrr_periods);
    let revenue_3 = revenue.clone().select([
        col("period").alias("period_3"),
        col("operator_id"),
        col("currency"),
        col("mrr_cents").alias("mrr_cents_3"),
    ]);

    let mrr_ok = col("mrr_cents").gt_eq(min_mrr_expr(ex));
    let customers_ok = col("active_customers").gt_eq(lit(ex.min_active_customers));
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
    let failed = |ok: Expr, name: &str| {
        when(ok.not())
            .then(lit(name.to_string()))
            .otherwise(lit(NULL).cast(DataType::String))
    };
    let satisfaction_failed = col("satisfaction").eq(lit(SATISFACTION_FAILED));

    pairs
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
        ])
        .with_columns([
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
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    /// A small network built up month by month.
    struct Net {
        inputs: Inputs,
        invoices: Vec<(String, String, String)>,
        lines: Vec<(String, i64, NaiveDate, NaiveDate)>,
    }

    impl Net {
        /// Operator `op` joined 2023-01-01, exclusive in territory `T1` (USD) since
        /// `since`, with `customers` customers signed 2023-01-01 (`c0`…).
        fn new(since: &str, customers: usize) -> Self {
            let mut inputs = Inputs::empty();
            inputs.operators = df!(
                "operator_id" => ["op", "other"],
                "joined_on" => [d("2023-01-01"), d("2023-01-01")],
                "terminated_on" => [None::<NaiveDate>, None],
            )
            .unwrap()
            .lazy();
            inputs.territories = df!(
                "territory_id" => ["T1", "T2"],
                "metro" => ["m1", "m2"],
                "currency" => ["USD", "EUR"],
                "exclusive_operator_id" => [Some("op"), None],
                "exclusive_since" => [Some(d(since)), None],
            )
            .unwrap()
            .lazy();
            let ids: Vec<String> = (0..customers).map(|i| format!("c{i}")).collect();
            inputs.customers = df!(
                "customer_id" => ids.clone(),
                "operator_id" => vec![Some("op"); customers],
                "contract_signed_on" => vec![d("2023-01-01"); customers],
                "churned_on" => vec![None::<NaiveDate>; customers],
            )
            .unwrap()
            .lazy();
            Self {
                inputs,
                invoices: Vec::new(),
                lines: Vec::new(),
            }
        }

        /// MRR of `cents` (USD, customer c0) in `month`.
        fn mrr(self, month: &str, cents: i64) -> Self {
            self.mrr_in(month, cents, "USD")
        }

        fn mrr_in(mut self, month: &str, cents: i64, currency: &str) -> Self {
            let id = format!("inv{}", self.invoices.len());
            let m = p(month);
            self.invoices
                .push((id.clone(), "c0".into(), currency.into()));
            self.lines.push((id, cents, m.first_day(), m.last_day()));
            self
        }

        /// `n` CSAT responses of `score` for `op` submitted on `on`.
        fn csat(mut self, on: &str, scores: &[i64]) -> Self {
            let n = scores.len();
            let extra = df!(
                "response_id" => (0..n).map(|i| format!("r{on}{i}")).collect::<Vec<_>>(),
                "customer_id" => vec!["c0"; n],
                "operator_id" => vec!["op"; n],
                "submitted_on" => vec![d(on); n],
                "nps_score" => vec![None::<i64>; n],
                "csat_score" => scores.iter().map(|s| Some(*s)).collect::<Vec<_>>(),
            )
            .unwrap()
            .lazy();
            let prev = self.inputs.survey_responses.clone();
            self.inputs.survey_responses = concat([prev, extra], UnionArgs::default()).unwrap();
            self
        }

        fn build(mut self) -> Inputs {
            self.inputs.invoices = df!(
                "invoice_id" => self.invoices.iter().map(|i| i.0.clone()).collect::<Vec<_>>(),
                "customer_id" => self.invoices.iter().map(|i| i.1.clone()).collect::<Vec<_>>(),
                "currency" => self.invoices.iter().map(|i| i.2.clone()).collect::<Vec<_>>(),
                "issued_on" => self.lines.iter().map(|l| l.2).collect::<Vec<_>>(),
                "status" => vec!["paid"; self.invoices.len()],
                "paid_on" => self.lines.iter().map(|l| Some(l.2)).collect::<Vec<_>>(),
            )
            .unwrap()
            .lazy();
            self.inputs.invoice_lines = df!(
                "invoice_id" => self.lines.iter().map(|l| l.0.clone()).collect::<Vec<_>>(),
                "line_no" => vec![1i64; self.lines.len()],
                "revenue_type" => vec!["software"; self.lines.len()],
                "amount_cents" => self.lines.iter().map(|l| l.1).collect::<Vec<_>>(),
                "service_start" => self.lines.iter().map(|l| l.2).collect::<Vec<_>>(),
                "service_end" => self.lines.iter().map(|l| l.3).collect::<Vec<_>>(),
            )
            .unwrap()
            .lazy();
            self.inputs
        }
    }

    /// Ten satisfied responses (sufficient data, compliant).
    const HAPPY: [i64; 10] = [5; 10];

    struct Row {
        mrr_cents: i64,
        active_customers: i64,
        qoq_growth: Option<f64>,
        csat_share: Option<f64>,
        csat_responses: i64,
        satisfaction: String,
        compliant: bool,
        failed: String,
        streak: i64,
        escalated: bool,
    }

    fn check(inputs: &Inputs, month: &str) -> Vec<Row> {
        let out = exclusivity_checks(inputs, p(month), &Plan::playbook())
            .collect()
            .unwrap();
        let n = out.height();
        let i64s = |c: &str| out.column(c).unwrap().i64().unwrap().clone();
        let f64s = |c: &str| out.column(c).unwrap().f64().unwrap().clone();
        let strs = |c: &str| out.column(c).unwrap().str().unwrap().clone();
        let bools = |c: &str| out.column(c).unwrap().bool().unwrap().clone();
        (0..n)
            .map(|i| Row {
                mrr_cents: i64s("mrr_cents").get(i).unwrap(),
                active_customers: i64s("active_customers").get(i).unwrap(),
                qoq_growth: f64s("qoq_growth").get(i),
                csat_share: f64s("csat_share").get(i),
                csat_responses: i64s("csat_responses").get(i).unwrap(),
                satisfaction: strs("satisfaction").get(i).unwrap().to_string(),
                compliant: bools("compliant").get(i).unwrap(),
                failed: strs("failed_criteria").get(i).unwrap().to_string(),
                streak: i64s("consecutive_breaches").get(i).unwrap(),
                escalated: bools("escalated").get(i).unwrap(),
            })
            .collect()
    }

    fn one(inputs: &Inputs, month: &str) -> Row {
        let mut rows = check(inputs, month);
        assert_eq!(rows.len(), 1, "one exclusive pair");
        rows.remove(0)
    }

    /// Exclusive since 2024-01, 15 customers, flat MRR of `jun` in 2025-06 and
    /// 2025-03 (growth not checked: month 18), satisfied customers.
    fn base(jun: i64) -> Net {
        Net::new("2024-01-15", 15)
            .mrr("2025-03", jun)
            .mrr("2025-06", jun)
            .csat("2025-06-10", &HAPPY)
    }

    #[test]
    fn r3_1_mrr_threshold_equal_passes_one_cent_below_fails() {
        for (cents, ok) in [(1_000_001, true), (1_000_000, true), (999_999, false)] {
            let r = one(&base(cents).build(), "2025-06");
            assert_eq!(r.mrr_cents, cents);
            assert_eq!(r.compliant, ok, "{cents}");
            assert_eq!(r.failed, if ok { "" } else { "mrr" }, "{cents}");
        }
    }

    #[test]
    fn r3_1_mrr_is_in_the_territorys_currency_only() {
        // EUR revenue does not count for a USD territory.
        let i = Net::new("2024-01-15", 15)
            .mrr_in("2025-06", 2_000_000, "EUR")
            .csat("2025-06-10", &HAPPY)
            .build();
        let r = one(&i, "2025-06");
        assert_eq!(r.mrr_cents, 0);
        assert_eq!(r.failed, "mrr");
    }

    #[test]
    fn r3_1_per_currency_threshold_from_the_plan() {
        let mut plan = Plan::playbook();
        plan.exclusivity
            .min_mrr_cents_by_currency
            .insert("USD".into(), 2_000_000);
        let out = exclusivity_checks(&base(1_500_000).build(), p("2025-06"), &plan)
            .collect()
            .unwrap();
        assert_eq!(
            out.column("failed_criteria").unwrap().str().unwrap().get(0),
            Some("mrr")
        );
    }

    #[test]
    fn r3_2_active_customers_threshold() {
        for (n, ok) in [(16, true), (15, true), (14, false)] {
            let i = Net::new("2024-01-15", n)
                .mrr("2025-03", 1_000_000)
                .mrr("2025-06", 1_000_000)
                .csat("2025-06-10", &HAPPY)
                .build();
            let r = one(&i, "2025-06");
            assert_eq!(r.active_customers, n as i64);
            assert_eq!(r.compliant, ok, "{n}");
            assert_eq!(r.failed, if ok { "" } else { "customers" }, "{n}");
        }
    }

    #[test]
    fn r3_2_churned_customers_do_not_count() {
        let mut i = base(1_000_000).build();
        // churn c14 on 2025-06-30 (end of M): not active at end of M (R2.1)
        i.customers = i.customers.with_column(
            when(col("customer_id").eq(lit("c14")))
                .then(lit(d("2025-06-30")))
                .otherwise(col("churned_on"))
                .alias("churned_on"),
        );
        let r = one(&i, "2025-06");
        assert_eq!(r.active_customers, 14);
        assert_eq!(r.failed, "customers");
    }

    /// Exclusive since 2025-01 (2025-06 is exclusivity month 6): growth checked.
    fn growth(m3: i64, m: i64) -> Row {
        let i = Net::new("2025-01-20", 15)
            .mrr("2025-03", m3)
            .mrr("2025-06", m)
            .csat("2025-06-10", &HAPPY)
            .build();
        one(&i, "2025-06")
    }

    #[test]
    fn r3_3_growth_threshold_inside_first_12_months() {
        // 1.2 × 1,000,000 = 1,200,000
        let above = growth(1_000_000, 1_200_001);
        assert!(above.compliant);
        let equal = growth(1_000_000, 1_200_000);
        assert!(equal.compliant);
        assert!((equal.qoq_growth.unwrap() - 0.2).abs() < 1e-12);
        let below = growth(1_000_000, 1_199_999);
        assert!(!below.compliant);
        assert_eq!(below.failed, "growth");
    }

    #[test]
    fn r3_3_growth_from_zero_holds_when_mrr_positive() {
        // MRR(M−3) = 0: growth holds when MRR(M) > 0; qoq_growth is null
        let r = growth(0, 1_000_000);
        assert!(r.compliant);
        assert_eq!(r.qoq_growth, None);
        // MRR(M) = 0 too: growth fails (and so does mrr)
        let r = growth(0, 0);
        assert_eq!(r.failed, "mrr,growth");
    }

    #[test]
    fn r3_3_growth_checked_in_month_12_not_in_month_13() {
        // exclusive since 2024-07: 2025-06 is month 12, 2025-07 is month 13
        let i = Net::new("2024-07-31", 15)
            .mrr("2025-03", 1_000_000)
            .mrr("2025-04", 1_000_000)
            .mrr("2025-06", 1_000_000)
            .mrr("2025-07", 1_000_000)
            .csat("2025-06-10", &HAPPY)
            .csat("2025-07-10", &HAPPY)
            .build();
        let m12 = one(&i, "2025-06");
        assert_eq!(m12.failed, "growth");
        assert_eq!(m12.qoq_growth, Some(0.0));
        let m13 = one(&i, "2025-07");
        assert!(m13.compliant);
        assert_eq!(m13.qoq_growth, None, "null outside the first 12 months");
    }

    #[test]
    fn r3_4_satisfaction_threshold_is_strictly_above_90_percent() {
        // 10 responses: 10 satisfied (1.0) ok; 9 satisfied (0.90, not above) fails
        let r = one(
            &Net::new("2024-01-15", 15)
                .mrr("2025-03", 1_000_000)
                .mrr("2025-06", 1_000_000)
                .csat("2025-06-10", &[5, 5, 5, 5, 5, 5, 5, 5, 5, 3])
                .build(),
            "2025-06",
        );
        assert_eq!(r.csat_share, Some(0.9));
        assert_eq!(r.satisfaction, "failed");
        assert_eq!(r.failed, "satisfaction");
        assert!(!r.compliant);
        // 20 responses, 19 satisfied (0.95) ok; score 4 counts as satisfied
        let mut scores = vec![4; 19];
        scores.push(1);
        let r = one(
            &Net::new("2024-01-15", 15)
                .mrr("2025-03", 1_000_000)
                .mrr("2025-06", 1_000_000)
                .csat("2025-06-10", &scores)
                .build(),
            "2025-06",
        );
        assert_eq!(r.satisfaction, "ok");
        assert!(r.compliant);
        assert_eq!(r.csat_responses, 20);
        // 11 responses, 10 satisfied (0.909…) is just above
        let mut scores = vec![5; 10];
        scores.push(2);
        let r = one(
            &Net::new("2024-01-15", 15)
                .mrr("2025-03", 1_000_000)
                .mrr("2025-06", 1_000_000)
                .csat("2025-06-10", &scores)
                .build(),
            "2025-06",
        );
        assert_eq!(r.satisfaction, "ok");
    }

    #[test]
    fn r3_4_insufficient_data_is_reported_but_not_a_failure() {
        // 4 responses (< 5), all unhappy: insufficient, compliant
        let i = Net::new("2024-01-15", 15)
            .mrr("2025-03", 1_000_000)
            .mrr("2025-06", 1_000_000)
            .csat("2025-06-10", &[1, 1, 1, 1])
            .build();
        let r = one(&i, "2025-06");
        assert_eq!(r.satisfaction, "insufficient_data");
        assert_eq!(r.csat_share, None);
        assert_eq!(r.csat_responses, 4);
        assert!(r.compliant);
        assert_eq!(r.failed, "");
        // exactly 5 responses is enough: all satisfied → ok
        let i = Net::new("2024-01-15", 15)
            .mrr("2025-03", 1_000_000)
            .mrr("2025-06", 1_000_000)
            .csat("2025-06-10", &[5; 5])
            .build();
        assert_eq!(one(&i, "2025-06").satisfaction, "ok");
    }

    #[test]
    fn r3_4_window_is_m_minus_2_through_m() {
        // responses on 2025-04-01 (M−2, in) and 2025-03-31 / 2025-07-01 (out)
        let i = Net::new("2024-01-15", 15)
            .mrr("2025-03", 1_000_000)
            .mrr("2025-06", 1_000_000)
            .csat("2025-03-31", &[1; 10])
            .csat("2025-07-01", &[1; 10])
            .csat("2025-04-01", &[5; 5])
            .build();
        let r = one(&i, "2025-06");
        assert_eq!(r.csat_responses, 5);
        assert_eq!(r.satisfaction, "ok");
    }

    #[test]
    fn r3_terminated_or_not_yet_exclusive_operator_has_no_row() {
        let mut i = base(1_000_000).build();
        i.operators = df!(
            "operator_id" => ["op"],
            "joined_on" => [d("2023-01-01")],
            "terminated_on" => [Some(d("2025-06-30"))],
        )
        .unwrap()
        .lazy();
        assert_eq!(check(&i, "2025-06").len(), 0);
        // exclusive from 2025-07-01: nothing in 2025-06
        let i = Net::new("2025-07-01", 15).build();
        assert_eq!(check(&i, "2025-06").len(), 0);
        assert_eq!(check(&i, "2025-07").len(), 1);
    }

    #[test]
    fn r3_5_consecutive_breaches_and_escalation_at_3() {
        // Exclusive since 2024-01, 15 customers, MRR 10,000 USD every month through
        // 2025-02 and below threshold from 2025-03 on; no surveys (insufficient).
        let mut net = Net::new("2024-01-15", 15);
        for m in p("2024-01").through(p("2025-02")) {
            net = net.mrr(&m.to_string(), 1_000_000);
        }
        for m in p("2025-03").through(p("2025-06")) {
            net = net.mrr(&m.to_string(), 500_000);
        }
        let i = net.build();
        let feb = one(&i, "2025-02");
        assert!(feb.compliant);
        assert_eq!((feb.streak, feb.escalated), (0, false));
        let expect = [
            ("2025-03", 1, false),
            ("2025-04", 2, false),
            ("2025-05", 3, true),
            ("2025-06", 4, true),
        ];
        for (m, streak, escalated) in expect {
            let r = one(&i, m);
            assert!(!r.compliant, "{m}");
            assert_eq!((r.streak, r.escalated), (streak, escalated), "{m}");
        }
    }

    #[test]
    fn r3_5_streak_counts_back_to_the_start_of_exclusivity() {
        // Never compliant since exclusive_since 2025-04: 2025-06 is the 3rd breach.
        let i = Net::new("2025-04-30", 15).build();
        let r = one(&i, "2025-06");
        assert_eq!(r.failed, "mrr,growth");
        assert_eq!((r.streak, r.escalated), (3, true));
    }

    #[test]
    fn r3_5_streak_starts_at_the_first_billing_period_of_the_data() {
        // Exclusive since 2022-11, but billing data only from 2023-01 (MRR below the
        // threshold): 2022-11 and 2022-12 were never closed, so 2023-01 is the 1st
        // breach, 2023-03 the 3rd and escalated.
        let mut net = Net::new("2022-11-15", 15);
        net.inputs.operators = df!(
            "operator_id" => ["op"],
            "joined_on" => [d("2022-01-01")],
            "terminated_on" => [None::<NaiveDate>],
        )
        .unwrap()
        .lazy();
        for m in ["2023-01", "2023-02", "2023-03"] {
            net = net.mrr(m, 100);
        }
        let i = net.build();
        assert_eq!(i.first_billing_period().unwrap(), Some(p("2023-01")));
        let jan = one(&i, "2023-01");
        assert!(!jan.compliant);
        assert_eq!((jan.streak, jan.escalated), (1, false));
        assert_eq!(
            (one(&i, "2023-02").streak, one(&i, "2023-02").escalated),
            (2, false)
        );
        assert_eq!(
            (one(&i, "2023-03").streak, one(&i, "2023-03").escalated),
            (3, true)
        );
    }

    #[test]
    fn r3_5_a_refund_date_can_open_the_first_billing_period() {
        // The earliest billing date is a refund in 2022-12: that month counts.
        let mut net = Net::new("2022-11-15", 15);
        net.inputs.operators = df!(
            "operator_id" => ["op"],
            "joined_on" => [d("2022-01-01")],
            "terminated_on" => [None::<NaiveDate>],
        )
        .unwrap()
        .lazy();
        for m in ["2023-01", "2023-02"] {
            net = net.mrr(m, 100);
        }
        let mut i = net.build();
        i.refunds = df!(
            "refund_id" => ["r1"],
            "invoice_id" => ["inv0"],
            "line_no" => [1i64],
            "refunded_on" => [d("2022-12-20")],
            "amount_cents" => [1i64],
        )
        .unwrap()
        .lazy();
        assert_eq!(i.first_billing_period().unwrap(), Some(p("2022-12")));
        assert_eq!(one(&i, "2023-01").streak, 2);
    }

    #[test]
    fn r3_5_a_compliant_month_resets_the_streak() {
        let mut net = Net::new("2024-01-15", 15);
        for (m, cents) in [
            ("2025-02", 500_000),
            ("2025-03", 500_000),
            ("2025-04", 1_000_000),
            ("2025-05", 500_000),
            ("2025-06", 500_000),
        ] {
            net = net.mrr(m, cents);
        }
        let i = net.build();
        assert_eq!(one(&i, "2025-04").streak, 0);
        assert_eq!(one(&i, "2025-06").streak, 2);
    }

    #[test]
    fn r3_5_output_columns_and_types() {
        let out = exclusivity_checks(&base(1_000_000).build(), p("2025-06"), &Plan::playbook())
            .collect()
            .unwrap();
        let schema: Vec<(String, DataType)> = out
            .schema()
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        let want = [
            ("period", DataType::String),
            ("operator_id", DataType::String),
            ("territory_id", DataType::String),
            ("currency", DataType::String),
            ("mrr_cents", DataType::Int64),
            ("active_customers", DataType::Int64),
            ("qoq_growth", DataType::Float64),
            ("csat_share", DataType::Float64),
            ("csat_responses", DataType::Int64),
            ("satisfaction", DataType::String),
            ("compliant", DataType::Boolean),
            ("failed_criteria", DataType::String),
            ("consecutive_breaches", DataType::Int64),
            ("escalated", DataType::Boolean),
        ];
        let want: Vec<(String, DataType)> = want
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        assert_eq!(schema, want);
        assert_eq!(
            out.column("period").unwrap().str().unwrap().get(0),
            Some("2025-06")
        );
    }

    #[test]
    fn r3_empty_inputs_give_an_empty_frame() {
        let out = exclusivity_checks(&Inputs::empty(), p("2025-06"), &Plan::playbook())
            .collect()
            .unwrap();
        assert_eq!(out.height(), 0);
    }
}
