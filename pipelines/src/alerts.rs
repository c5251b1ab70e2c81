//! R4 — performance-threshold alerts: the six quality metrics of the Playbook for
//! every operator active at end of M, each compared with its action threshold.
//!
//! The output is the `operator_metrics` table; the alert email (one per operator and
//! period, listing the breached metrics) is built from its `breached` rows, with
//! [`metric_label`], [`metric_value`], [`metric_condition`] and [`metric_target`]
//! for the wording. A metric without data is `null` and never breached (R4).

use crate::Inputs;
use crate::active::{active_operators, customer_active_at, tenure};
use crate::period::{Period, date_to_millis};
use crate::plan::Plan;
use polars::prelude::*;

/// R4.1 customers signed in the month.
pub const CUSTOMER_ACQUISITION: &str = "customer_acquisition";
/// R4.2 mean days from contract to go-live.
pub const IMPLEMENTATION_DAYS: &str = "implementation_days";
/// R4.3 twelve-month customer retention.
pub const CUSTOMER_RETENTION: &str = "customer_retention";
/// R4.4 net promoter score.
pub const NPS: &str = "nps";
/// R4.5 mean lead response time in hours.
pub const RESPONSE_HOURS: &str = "response_hours";
/// R4.6 required training completed.
pub const TRAINING_COMPLETION: &str = "training_completion";

/// Every R4 metric id, in the table's sort order.
pub const METRICS: [&str; 6] = [
    CUSTOMER_ACQUISITION,
    CUSTOMER_RETENTION,
    IMPLEMENTATION_DAYS,
    NPS,
    RESPONSE_HOURS,
    TRAINING_COMPLETION,
];

const MS_PER_HOUR: i64 = 3_600_000;

/// The `operator_metrics` rows of `period` (R4):
///
/// `period` str, `operator_id` str, `metric` str, `value` f64?, `threshold` f64,
/// `breached` bool — six rows per operator active at end of M (R6.2), sorted by
/// operator and metric.
pub fn operator_metrics(inputs: &Inputs, period: Period, plan: &Plan) -> LazyFrame {
    let th = &plan.thresholds;
    let operators = active_operators(inputs.operators.clone(), period.last_day())
        .select([col("operator_id"), tenure(period).alias("tenure")])
        .unique_stable(Some(cols(["operator_id"])), UniqueKeepStrategy::First);

    let min = |value: Expr, threshold: f64| value.lt(lit(threshold));
    let max = |value: Expr, threshold: f64| value.gt(lit(threshold));

    // R4.1: value is M's count (0 is data); the alert needs both M and M−1 below
    // the threshold and never fires at tenure 1.
    let acquisition = metric_rows(
        operators.clone(),
        acquisitions(inputs, period, period.prev()),
        CUSTOMER_ACQUISITION,
        th.customer_acquisition_min,
        col("tenure")
            .gt_eq(lit(2i64))
            .and(min(col("value"), th.customer_acquisition_min))
            .and(min(col("value_prev"), th.customer_acquisition_min)),
    );
    let implementation = metric_rows(
        operators.clone(),
        implementation_days(inputs, period),
        IMPLEMENTATION_DAYS,
        th.implementation_days_max,
        max(col("value"), th.implementation_days_max),
    );
    let retention = metric_rows(
        operators.clone(),
        customer_retention(inputs, period),
        CUSTOMER_RETENTION,
        th.customer_retention_min,
        min(col("value"), th.customer_retention_min),
    );
    let nps = metric_rows(
        operators.clone(),
        nps(inputs, period, plan.min_survey_responses),
        NPS,
        th.nps_min,
        min(col("value"), th.nps_min),
    );
    let response = metric_rows(
        operators.clone(),
        response_hours(inputs, period),
        RESPONSE_HOURS,
        th.response_hours_max,
        max(col("value"), th.response_hours_max),
    );
    let training = metric_rows(
        operators,
        training_completion(inputs, period),
        TRAINING_COMPLETION,
        th.training_completion_min,
        min(col("value"), th.training_completion_min),
    );

    let parts = [
        acquisition,
        implementation,
        retention,
        nps,
        response,
        training,
    ];
    let fallback = parts[0].clone();
    concat(parts, UnionArgs::default())
        // `concat` only fails on an empty list, and this one has six frames.
        .unwrap_or(fallback)
        .with_column(lit(period.to_string()).alias("period"))
        .select([
            col("period"),
            col("operator_id"),
            col("metric"),
            col("value"),
            col("threshold"),
            col("breached"),
        ])
        .sort(["operator_id", "metric"], SortMultipleOptions::default())
}

/// One metric's rows: every active operator, its value (null where `values` has
/// none), the threshold, and `breached` — false whenever the comparison is null.
fn metric_rows(
    operators: LazyFrame,
    values: LazyFrame,
    metric: &str,
    threshold: f64,
    breached: Expr,
) -> LazyFrame {
    operators
        .join(
            values,
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("value").cast(DataType::Float64))
        .select([
            col("operator_id"),
            lit(metric.to_string()).alias("metric"),
            col("value"),
            lit(threshold).alias("threshold"),
            breached.fill_null(lit(false)).alias("breached"),
        ])
}

/// Customers with an operator whose `date_col` falls in `[first, last]`.
fn customers_between(inputs: &Inputs, date_col: &str, first: Period, last: Period) -> LazyFrame {
    inputs.customers.clone().filter(
        col("operator_id").is_not_null().and(
            col(date_col)
                .gt_eq(lit(first.first_day()))
                .and(col(date_col).lt_eq(lit(last.last_day()))),
        ),
    )
}

/// R4.1 — customers signed in M (`value`) and in M−1 (`value_prev`), both 0 when
/// there are none: a month without a signature is a count of zero, not missing data.
fn acquisitions(inputs: &Inputs, period: Period, prev: Period) -> LazyFrame {
    let count = |p: Period, name: &str| {
        customers_between(inputs, "contract_signed_on", p, p)
            .group_by([col("operator_id")])
            .agg([len().cast(DataType::Int64).alias(name)])
    };
    inputs
        .operators
        .clone()
        .select([col("operator_id")])
        .unique(None, UniqueKeepStrategy::Any)
        .join(
            count(period, "value"),
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            count(prev, "value_prev"),
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            col("value").fill_null(lit(0i64)).cast(DataType::Float64),
            col("value_prev")
                .fill_null(lit(0i64))
                .cast(DataType::Float64),
        ])
}

/// R4.2 — mean of `go_live_on − contract_signed_on` in days over the operator's
/// customers that went live in M−2..M.
fn implementation_days(inputs: &Inputs, period: Period) -> LazyFrame {
    let days = |c: &str| col(c).cast(DataType::Int32).cast(DataType::Int64);
    customers_between(inputs, "go_live_on", period.add_months(-2), period)
        .with_column((days("go_live_on") - days("contract_signed_on")).alias("days"))
        .group_by([col("operator_id")])
        .agg([
            col("days").sum().alias("sum"),
            len().cast(DataType::Int64).alias("n"),
        ])
        .select([
            col("operator_id"),
            ratio(col("sum"), col("n")).alias("value"),
        ])
}

/// R4.3 — of the operator's customers active at end of M−12 (R2.1), the share still
/// active at end of M. Operators with no such customer have no row (null).
fn customer_retention(inputs: &Inputs, period: Period) -> LazyFrame {
    inputs
        .customers
        .clone()
        .filter(
            col("operator_id")
                .is_not_null()
                .and(customer_active_at(period.add_months(-12).last_day())),
        )
        .group_by([col("operator_id")])
        .agg([
            len().cast(DataType::Int64).alias("cohort"),
            customer_active_at(period.last_day())
                .cast(DataType::Int64)
                .sum()
                .alias("retained"),
        ])
        .select([
            col("operator_id"),
            ratio(col("retained"), col("cohort")).alias("value"),
        ])
}

/// R4.4 — `100 × (promoters − detractors) / responses` over the NPS responses
/// (by the response's `operator_id`) submitted in M−2..M; null below
/// `min_responses`.
fn nps(inputs: &Inputs, period: Period, min_responses: i64) -> LazyFrame {
    let first = period.add_months(-2).first_day();
    inputs
        .survey_responses
        .clone()
        .filter(
            col("nps_score").is_not_null().and(
                col("submitted_on")
                    .gt_eq(lit(first))
                    .and(col("submitted_on").lt_eq(lit(period.last_day()))),
            ),
        )
        .group_by([col("operator_id")])
        .agg([
            len().cast(DataType::Int64).alias("n"),
            col("nps_score")
                .gt_eq(lit(9i64))
                .cast(DataType::Int64)
                .sum()
                .alias("promoters"),
            col("nps_score")
                .lt_eq(lit(6i64))
                .cast(DataType::Int64)
                .sum()
                .alias("detractors"),
        ])
        .filter(col("n").gt_eq(lit(min_responses)))
        .select([
            col("operator_id"),
            // the numerator is an exact integer, so a score of exactly 30 is 30.0
            ratio(
                (col("promoters") - col("detractors")) * lit(100i64),
                col("n"),
            )
            .alias("value"),
        ])
}

/// R4.5 — mean hours from `created_at` to `first_contact_at` over the leads assigned
/// to the operator and created in M. A lead not contacted by the end of M (00:00 UTC
/// on the first day of M+1) counts up to that instant.
fn response_hours(inputs: &Inputs, period: Period) -> LazyFrame {
    let start = date_to_millis(period.first_day());
    let end = date_to_millis(period.next().first_day());
    let ms = |c: &str| col(c).cast(DataType::Int64);
    let contact = when(
        ms("first_contact_at")
            .is_null()
            .or(ms("first_contact_at").gt(lit(end))),
    )
    .then(lit(end))
    .otherwise(ms("first_contact_at"));
    inputs
        .leads
        .clone()
        .filter(
            col("assigned_operator_id")
                .is_not_null()
                .and(ms("created_at").gt_eq(lit(start)))
                .and(ms("created_at").lt(lit(end))),
        )
        .with_column((contact - ms("created_at")).alias("wait_ms"))
        .group_by([col("assigned_operator_id").alias("operator_id")])
        .agg([
            col("wait_ms").sum().alias("sum"),
            len().cast(DataType::Int64).alias("n"),
        ])
        .select([
            col("operator_id"),
            ratio(col("sum"), col("n") * lit(MS_PER_HOUR)).alias("value"),
        ])
}

/// R4.6 — required modules completed by end of M / required modules. A module
/// listed twice for an operator counts once (completed if any row is).
fn training_completion(inputs: &Inputs, period: Period) -> LazyFrame {
    let end = period.last_day();
    inputs
        .training
        .clone()
        .filter(col("required").eq(lit(true)))
        .group_by([col("operator_id"), col("module_id")])
        .agg([col("completed_on")
            .is_not_null()
            .and(col("completed_on").lt_eq(lit(end)))
            .any(true)
            .alias("done")])
        .group_by([col("operator_id")])
        .agg([
            len().cast(DataType::Int64).alias("n"),
            col("done").cast(DataType::Int64).sum().alias("completed"),
        ])
        .select([
            col("operator_id"),
            ratio(col("completed"), col("n")).alias("value"),
        ])
}

/// `num / den` as f64, null when `den` is 0 (no data).
fn ratio(num: Expr, den: Expr) -> Expr {
    when(den.clone().gt(lit(0i64)))
        .then(num.cast(DataType::Float64) / den.cast(DataType::Float64))
        .otherwise(lit(NULL).cast(DataType::Float64))
}

/// Which side of its threshold a metric alerts on (R4's "alert when" column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertWhen {
    /// Alert when the value is below the threshold (a minimum to hold).
    Below,
    /// Alert when the value is above the threshold (a maximum to stay under).
    Above,
}

/// Which side of its threshold each R4 metric alerts on, as `operator_metrics` rules
/// compare it; `None` for an unknown id.
pub fn alert_when(metric: &str) -> Option<AlertWhen> {
    match metric {
        CUSTOMER_ACQUISITION | CUSTOMER_RETENTION | NPS | TRAINING_COMPLETION => {
            Some(AlertWhen::Below)
        }
        IMPLEMENTATION_DAYS | RESPONSE_HOURS => Some(AlertWhen::Above),
        _ => None,
    }
}

/// The plan's threshold of an R4 metric (R0.5); `None` for an unknown id.
pub fn metric_threshold(metric: &str, plan: &Plan) -> Option<f64> {
    let th = &plan.thresholds;
    Some(match metric {
        CUSTOMER_ACQUISITION => th.customer_acquisition_min,
        IMPLEMENTATION_DAYS => th.implementation_days_max,
        CUSTOMER_RETENTION => th.customer_retention_min,
        NPS => th.nps_min,
        RESPONSE_HOURS => th.response_hours_max,
        TRAINING_COMPLETION => th.training_completion_min,
        _ => return None,
    })
}

/// Human name of an R4 metric, for alert emails.
pub fn metric_label(metric: &str) -> &'static str {
    match metric {
        CUSTOMER_ACQUISITION => "Customer acquisition",
        IMPLEMENTATION_DAYS => "Implementation time",
        CUSTOMER_RETENTION => "Customer retention",
        NPS => "Net Promoter Score",
        RESPONSE_HOURS => "Lead response time",
        TRAINING_COMPLETION => "Training completion",
        _ => "Other metric",
    }
}

/// A metric's value of M in words, with its unit, e.g. `"31.5 days on average"`,
/// `"72.5 %"`, `"0 new customers in 2025-08"`.
pub fn metric_value(metric: &str, value: f64, period: Period) -> String {
    match metric {
        CUSTOMER_ACQUISITION => format!("{} in {period}", customers(value)),
        IMPLEMENTATION_DAYS => format!("{} days on average", one_decimal(value)),
        CUSTOMER_RETENTION | TRAINING_COMPLETION => {
            format!("{} %", one_decimal(value * 100.0))
        }
        NPS => one_decimal(value),
        RESPONSE_HOURS => format!("{} hours on average", one_decimal(value)),
        _ => number(value),
    }
}

/// When the metric alerts, in words, at the plan's threshold and with its direction,
/// e.g. `"below 1 new customer in two consecutive months"`, `"above 24 hours on
/// average"`. Empty for an unknown metric.
pub fn metric_condition(metric: &str, plan: &Plan) -> String {
    let Some(t) = metric_threshold(metric, plan) else {
        return String::new();
    };
    match metric {
        CUSTOMER_ACQUISITION => format!("below {} in two consecutive months", customers(t)),
        IMPLEMENTATION_DAYS => format!("above {} days on average", number(t)),
        CUSTOMER_RETENTION | TRAINING_COMPLETION => format!("below {} %", number(t * 100.0)),
        NPS => format!("below {}", number(t)),
        RESPONSE_HOURS => format!("above {} hours on average", number(t)),
        _ => String::new(),
    }
}

/// What good looks like — the level an operator should hold, the other side of the
/// alert condition at the plan's threshold, e.g. `"at least 80 %"`, `"at most 24
/// hours on average"`. Empty for an unknown metric.
pub fn metric_target(metric: &str, plan: &Plan) -> String {
    let Some(t) = metric_threshold(metric, plan) else {
        return String::new();
    };
    match metric {
        CUSTOMER_ACQUISITION => format!("at least {} every month", customers(t)),
        IMPLEMENTATION_DAYS => format!("at most {} days on average", number(t)),
        CUSTOMER_RETENTION | TRAINING_COMPLETION => {
            format!("at least {} %", number(t * 100.0))
        }
        NPS => format!("at least {}", number(t)),
        RESPONSE_HOURS => format!("at most {} hours on average", number(t)),
        _ => String::new(),
    }
}

/// What each metric measures, in one sentence for the alert email.
pub fn metric_definition(metric: &str) -> &'static str {
    match metric {
        CUSTOMER_ACQUISITION => "customers who signed their contract in the month",
        IMPLEMENTATION_DAYS => {
            "days from contract to go-live, for customers who went live in the last three months"
        }
        CUSTOMER_RETENTION => "of your customers active twelve months ago, the share still active",
        NPS => "Net Promoter Score of your customers' survey responses of the last three months",
        RESPONSE_HOURS => "hours from a lead's creation to your first contact, leads of the month",
        TRAINING_COMPLETION => "required training modules completed",
        _ => "",
    }
}

/// `"1 new customer"`, `"0 new customers"`, `"1.5 new customers"`.
fn customers(n: f64) -> String {
    let n_text = number(n);
    if n_text == "1" {
        "1 new customer".to_string()
    } else {
        format!("{n_text} new customers")
    }
}

/// A measured value: one decimal (`31.5`, `72.0`).
fn one_decimal(x: f64) -> String {
    let s = format!("{x:.1}");
    if s == "-0.0" { "0.0".to_string() } else { s }
}

/// A threshold for people: at most two decimals, no trailing zeros (`80`, `27.5`).
fn number(x: f64) -> String {
    let s = format!("{:.2}", x);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, NaiveDateTime};

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn ts(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    const M: &str = "2025-06";

    /// Operator `op` joined 2024-01-01 (tenure ≥ 2 in M).
    fn with_op(joined: &str) -> Inputs {
        let mut i = Inputs::empty();
        i.operators = df!(
            "operator_id" => ["op"],
            "joined_on" => [d(joined)],
            "terminated_on" => [None::<NaiveDate>],
        )
        .unwrap()
        .lazy();
        i
    }

    /// Customers of `op`: (signed, go_live, churned).
    fn customers(rows: &[(&str, Option<&str>, Option<&str>)]) -> LazyFrame {
        df!(
            "customer_id" => (0..rows.len()).map(|i| format!("c{i}")).collect::<Vec<_>>(),
            "operator_id" => vec![Some("op"); rows.len()],
            "contract_signed_on" => rows.iter().map(|r| d(r.0)).collect::<Vec<_>>(),
            "go_live_on" => rows.iter().map(|r| r.1.map(d)).collect::<Vec<_>>(),
            "churned_on" => rows.iter().map(|r| r.2.map(d)).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy()
    }

    /// (value, threshold, breached) of `metric` for `op`.
    fn metric(inputs: &Inputs, month: &str, metric: &str) -> (Option<f64>, f64, bool) {
        let out = operator_metrics(inputs, p(month), &Plan::playbook())
            .filter(
                col("operator_id")
                    .eq(lit("op"))
                    .and(col("metric").eq(lit(metric))),
            )
            .collect()
            .unwrap();
        assert_eq!(out.height(), 1, "{metric}");
        (
            out.column("value").unwrap().f64().unwrap().get(0),
            out.column("threshold")
                .unwrap()
                .f64()
                .unwrap()
                .get(0)
                .unwrap(),
            out.column("breached")
                .unwrap()
                .bool()
                .unwrap()
                .get(0)
                .unwrap(),
        )
    }

    #[test]
    fn r4_six_metrics_per_active_operator_sorted() {
        let mut i = with_op("2024-01-01");
        i.operators = df!(
            "operator_id" => ["op", "b", "gone", "later"],
            "joined_on" => [d("2024-01-01"), d("2024-01-01"), d("2024-01-01"), d("2025-07-01")],
            "terminated_on" => [None, None, Some(d("2025-06-30")), None],
        )
        .unwrap()
        .lazy();
        let out = operator_metrics(&i, p(M), &Plan::playbook())
            .collect()
            .unwrap();
        let ops: Vec<_> = out
            .column("operator_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        let metrics: Vec<_> = out
            .column("metric")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(
            ops,
            [vec!["b"; 6], vec!["op"; 6]].concat(),
            "terminated and not-yet-joined excluded"
        );
        assert_eq!(metrics[..6], METRICS);
        let names: Vec<String> = out
            .get_column_names()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "period",
                "operator_id",
                "metric",
                "value",
                "threshold",
                "breached"
            ]
        );
        // nothing but acquisitions has data: nulls, never an alert
        let values = out.column("value").unwrap().f64().unwrap();
        assert_eq!(values.null_count(), 10);
        assert!(
            out.column("breached")
                .unwrap()
                .bool()
                .unwrap()
                .iter()
                .all(|b| b == Some(true) || b == Some(false))
        );
    }

    #[test]
    fn r4_1_acquisition_alerts_only_when_both_months_below() {
        // none in M, none in M−1 → breach (0 is data)
        let mut i = with_op("2024-01-01");
        assert_eq!(metric(&i, M, CUSTOMER_ACQUISITION), (Some(0.0), 1.0, true));
        // one in M (equal to threshold): no breach
        i.customers = customers(&[("2025-06-30", None, None)]);
        assert_eq!(metric(&i, M, CUSTOMER_ACQUISITION), (Some(1.0), 1.0, false));
        // one in M−1 only: M below but M−1 not → no breach
        i.customers = customers(&[("2025-05-01", None, None)]);
        assert_eq!(metric(&i, M, CUSTOMER_ACQUISITION), (Some(0.0), 1.0, false));
        // two in M: above
        i.customers = customers(&[("2025-06-01", None, None), ("2025-06-15", None, None)]);
        assert_eq!(metric(&i, M, CUSTOMER_ACQUISITION), (Some(2.0), 1.0, false));
    }

    #[test]
    fn r4_1_never_alerts_at_tenure_1_but_does_at_tenure_2() {
        let i = with_op("2025-06-10");
        assert_eq!(metric(&i, M, CUSTOMER_ACQUISITION), (Some(0.0), 1.0, false));
        let i = with_op("2025-05-31");
        assert_eq!(metric(&i, M, CUSTOMER_ACQUISITION), (Some(0.0), 1.0, true));
    }

    #[test]
    fn r4_2_implementation_days_threshold() {
        let mut i = with_op("2024-01-01");
        // went live in M−2..M: 28 days (equal) → no breach
        i.customers = customers(&[("2025-04-03", Some("2025-05-01"), None)]);
        assert_eq!(
            metric(&i, M, IMPLEMENTATION_DAYS),
            (Some(28.0), 28.0, false)
        );
        // 29 days → breach; mean of 27 and 30 = 28.5 → breach
        i.customers = customers(&[("2025-04-02", Some("2025-05-01"), None)]);
        assert_eq!(metric(&i, M, IMPLEMENTATION_DAYS), (Some(29.0), 28.0, true));
        i.customers = customers(&[
            ("2025-06-03", Some("2025-06-30"), None),
            ("2025-04-01", Some("2025-05-01"), None),
        ]);
        assert_eq!(metric(&i, M, IMPLEMENTATION_DAYS), (Some(28.5), 28.0, true));
        // 27 days → fine
        i.customers = customers(&[("2025-04-04", Some("2025-05-01"), None)]);
        assert_eq!(
            metric(&i, M, IMPLEMENTATION_DAYS),
            (Some(27.0), 28.0, false)
        );
    }

    #[test]
    fn r4_2_no_go_live_in_window_is_null() {
        let mut i = with_op("2024-01-01");
        // went live 2025-03-31 (before M−2) and 2025-07-01 (after M) or never
        i.customers = customers(&[
            ("2025-01-01", Some("2025-03-31"), None),
            ("2025-01-01", Some("2025-07-01"), None),
            ("2025-01-01", None, None),
        ]);
        assert_eq!(metric(&i, M, IMPLEMENTATION_DAYS), (None, 28.0, false));
    }

    /// `cohort` customers active at end of M−12 (2024-06-30), of which `churned`
    /// churn before end of M.
    fn retention(cohort: usize, churned: usize) -> (Option<f64>, f64, bool) {
        let mut i = with_op("2024-01-01");
        let mut rows: Vec<(&str, Option<&str>, Option<&str>)> = (0..cohort)
            .map(|k| {
                (
                    "2024-01-01",
                    None,
                    if k < churned {
                        Some("2025-06-30")
                    } else {
                        None
                    },
                )
            })
            .collect();
        // signed after M−12 and churned before M−12: outside the cohort
        rows.push(("2024-07-01", None, None));
        rows.push(("2024-01-01", None, Some("2024-06-30")));
        i.customers = customers(&rows);
        metric(&i, M, CUSTOMER_RETENTION)
    }

    #[test]
    fn r4_3_customer_retention_threshold() {
        assert_eq!(retention(10, 1), (Some(0.9), 0.8, false));
        assert_eq!(
            retention(5, 1),
            (Some(0.8), 0.8, false),
            "equal is not a breach"
        );
        assert_eq!(retention(10, 3), (Some(0.7), 0.8, true));
        let (v, _, b) = retention(100, 21);
        assert_eq!((v, b), (Some(0.79), true));
    }

    #[test]
    fn r4_3_empty_cohort_is_null() {
        assert_eq!(retention(0, 0), (None, 0.8, false));
    }

    /// NPS responses for `op` in M.
    fn with_nps(scores: &[i64]) -> Inputs {
        let mut i = with_op("2024-01-01");
        let n = scores.len();
        i.survey_responses = df!(
            "response_id" => (0..n).map(|k| format!("r{k}")).collect::<Vec<_>>(),
            "customer_id" => vec!["c"; n],
            "operator_id" => vec!["op"; n],
            "submitted_on" => vec![d("2025-04-01"); n],
            "nps_score" => scores.iter().map(|s| Some(*s)).collect::<Vec<_>>(),
            "csat_score" => vec![None::<i64>; n],
        )
        .unwrap()
        .lazy();
        i
    }

    #[test]
    fn r4_4_nps_threshold() {
        // 10 responses: 4 promoters, 1 detractor, 5 passives → 30 (equal) no breach
        let at = with_nps(&[9, 10, 9, 10, 6, 7, 8, 7, 8, 7]);
        assert_eq!(metric(&at, M, NPS), (Some(30.0), 30.0, false));
        // 3 promoters, 1 detractor → 20 breach
        let below = with_nps(&[9, 10, 9, 8, 6, 7, 8, 7, 8, 7]);
        assert_eq!(metric(&below, M, NPS), (Some(20.0), 30.0, true));
        // 4 promoters, 0 detractors → 40
        let above = with_nps(&[9, 10, 9, 10, 7, 7, 8, 7, 8, 7]);
        assert_eq!(metric(&above, M, NPS), (Some(40.0), 30.0, false));
        // 0 is a detractor, 9 a promoter, 7 a passive: (1 − 1) / 5 → 0
        let mixed = with_nps(&[0, 9, 7, 7, 7]);
        assert_eq!(metric(&mixed, M, NPS), (Some(0.0), 30.0, true));
    }

    #[test]
    fn r4_4_too_few_responses_is_null() {
        let few = with_nps(&[0, 0, 0, 0]);
        assert_eq!(metric(&few, M, NPS), (None, 30.0, false));
        // responses outside M−2..M do not count
        let mut old = with_nps(&[0, 0, 0, 0, 0]);
        old.survey_responses = old
            .survey_responses
            .with_column(lit(d("2025-03-31")).alias("submitted_on"));
        assert_eq!(metric(&old, M, NPS), (None, 30.0, false));
    }

    /// Leads of `op`: (created_at, first_contact_at).
    fn with_leads(rows: &[(&str, Option<&str>)]) -> Inputs {
        let mut i = with_op("2024-01-01");
        let n = rows.len();
        i.leads = df!(
            "lead_id" => (0..n).map(|k| format!("l{k}")).collect::<Vec<_>>(),
            "created_at" => rows.iter().map(|r| ts(r.0)).collect::<Vec<_>>(),
            "assigned_operator_id" => vec![Some("op"); n],
            "first_contact_at" => rows.iter().map(|r| r.1.map(ts)).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy()
        .with_columns([
            col("created_at").cast(DataType::Datetime(TimeUnit::Milliseconds, None)),
            col("first_contact_at").cast(DataType::Datetime(TimeUnit::Milliseconds, None)),
        ]);
        i
    }

    #[test]
    fn r4_5_response_hours_threshold() {
        let equal = with_leads(&[("2025-06-10 08:00", Some("2025-06-11 08:00"))]);
        assert_eq!(metric(&equal, M, RESPONSE_HOURS), (Some(24.0), 24.0, false));
        let above = with_leads(&[("2025-06-10 08:00", Some("2025-06-11 08:01"))]);
        let (v, _, b) = metric(&above, M, RESPONSE_HOURS);
        assert!(v.unwrap() > 24.0 && b);
        let below = with_leads(&[
            ("2025-06-10 08:00", Some("2025-06-10 10:00")),
            ("2025-06-01 00:00", Some("2025-06-01 20:00")),
        ]);
        assert_eq!(metric(&below, M, RESPONSE_HOURS), (Some(11.0), 24.0, false));
    }

    #[test]
    fn r4_5_uncontacted_leads_count_up_to_end_of_m() {
        // created 2025-06-30 12:00, never contacted: 12 h to 2025-07-01 00:00
        let i = with_leads(&[("2025-06-30 12:00", None)]);
        assert_eq!(metric(&i, M, RESPONSE_HOURS), (Some(12.0), 24.0, false));
        // contacted after end of M also counts up to end of M only
        let i = with_leads(&[("2025-06-29 00:00", Some("2025-07-05 00:00"))]);
        assert_eq!(metric(&i, M, RESPONSE_HOURS), (Some(48.0), 24.0, true));
        // leads created outside M (2025-05-31 23:59, 2025-07-01 00:00) do not count
        let i = with_leads(&[("2025-05-31 23:59", None), ("2025-07-01 00:00", None)]);
        assert_eq!(metric(&i, M, RESPONSE_HOURS), (None, 24.0, false));
    }

    /// Required modules of `op` with their completion dates, plus one optional module.
    fn with_training(done: &[Option<&str>]) -> Inputs {
        let mut i = with_op("2024-01-01");
        let n = done.len();
        let mut ids: Vec<String> = (0..n).map(|k| format!("m{k}")).collect();
        ids.push("optional".into());
        let mut required = vec![true; n];
        required.push(false);
        let mut completed: Vec<Option<NaiveDate>> = done.iter().map(|c| c.map(d)).collect();
        completed.push(None);
        i.training = df!(
            "operator_id" => vec!["op"; n + 1],
            "module_id" => ids,
            "required" => required,
            "completed_on" => completed,
        )
        .unwrap()
        .lazy();
        i
    }

    #[test]
    fn r4_6_training_completion_threshold() {
        let c = Some("2025-01-01");
        assert_eq!(
            metric(&with_training(&[c, c, c, c, None]), M, TRAINING_COMPLETION),
            (Some(0.8), 0.8, false)
        );
        assert_eq!(
            metric(&with_training(&[c, c, c, c, c]), M, TRAINING_COMPLETION),
            (Some(1.0), 0.8, false)
        );
        assert_eq!(
            metric(&with_training(&[c, c, c, None]), M, TRAINING_COMPLETION),
            (Some(0.75), 0.8, true)
        );
        // completed after end of M does not count yet
        let late = with_training(&[c, c, c, c, Some("2025-07-01")]);
        assert_eq!(
            metric(&late, M, TRAINING_COMPLETION),
            (Some(0.8), 0.8, false)
        );
        let late = with_training(&[c, c, c, Some("2025-07-01"), Some("2025-06-30")]);
        assert_eq!(
            metric(&late, M, TRAINING_COMPLETION),
            (Some(0.8), 0.8, false)
        );
    }

    #[test]
    fn r4_6_no_required_modules_is_null() {
        assert_eq!(
            metric(&with_training(&[]), M, TRAINING_COMPLETION),
            (None, 0.8, false)
        );
    }

    #[test]
    fn r4_thresholds_come_from_the_plan() {
        let mut plan = Plan::playbook();
        plan.thresholds.implementation_days_max = 30.0;
        let mut i = with_op("2024-01-01");
        i.customers = customers(&[("2025-04-02", Some("2025-05-01"), None)]);
        let out = operator_metrics(&i, p(M), &plan)
            .filter(col("metric").eq(lit(IMPLEMENTATION_DAYS)))
            .collect()
            .unwrap();
        assert_eq!(
            out.column("threshold").unwrap().f64().unwrap().get(0),
            Some(30.0)
        );
        assert_eq!(
            out.column("breached").unwrap().bool().unwrap().get(0),
            Some(false)
        );
    }

    #[test]
    fn r4_wording_states_the_direction_the_threshold_and_the_target() {
        let plan = Plan::playbook();
        let m = Period::parse("2025-08").unwrap();
        let cases = [
            (
                CUSTOMER_ACQUISITION,
                0.0,
                "0 new customers in 2025-08",
                "below 1 new customer in two consecutive months",
                "at least 1 new customer every month",
            ),
            (
                IMPLEMENTATION_DAYS,
                31.5,
                "31.5 days on average",
                "above 28 days on average",
                "at most 28 days on average",
            ),
            (
                CUSTOMER_RETENTION,
                0.725,
                "72.5 %",
                "below 80 %",
                "at least 80 %",
            ),
            (NPS, 12.5, "12.5", "below 30", "at least 30"),
            (
                RESPONSE_HOURS,
                30.0,
                "30.0 hours on average",
                "above 24 hours on average",
                "at most 24 hours on average",
            ),
            (
                TRAINING_COMPLETION,
                0.6,
                "60.0 %",
                "below 80 %",
                "at least 80 %",
            ),
        ];
        for (metric, value, shown, condition, target) in cases {
            assert_eq!(metric_value(metric, value, m), shown, "{metric}");
            assert_eq!(metric_condition(metric, &plan), condition, "{metric}");
            assert_eq!(metric_target(metric, &plan), target, "{metric}");
            assert!(!metric_definition(metric).is_empty());
            assert_ne!(metric_label(metric), "Other metric");
        }
        assert_eq!(metric_label(NPS), "Net Promoter Score");
        assert_eq!(number(27.5), "27.5");
        assert_eq!(number(0.57 * 100.0), "57");
    }

    /// R0.5: the wording follows the plan in force, not the Playbook's numbers.
    #[test]
    fn r0_5_wording_takes_the_thresholds_of_the_plan() {
        let mut plan = Plan::playbook();
        plan.thresholds.customer_acquisition_min = 2.0;
        plan.thresholds.response_hours_max = 12.5;
        plan.thresholds.customer_retention_min = 0.875;
        assert_eq!(
            metric_condition(CUSTOMER_ACQUISITION, &plan),
            "below 2 new customers in two consecutive months"
        );
        assert_eq!(
            metric_target(RESPONSE_HOURS, &plan),
            "at most 12.5 hours on average"
        );
        assert_eq!(metric_condition(CUSTOMER_RETENTION, &plan), "below 87.5 %");
        assert_eq!(metric_threshold("nope", &plan), None);
        assert_eq!(metric_condition("nope", &plan), "");
    }

    /// The wording's direction is the metric's declared side ([`alert_when`]), the
    /// one R4's table gives and `operator_metrics` compares with.
    #[test]
    fn r4_condition_wording_follows_alert_when() {
        for metric in METRICS {
            let side = alert_when(metric).unwrap();
            let cond = metric_condition(metric, &Plan::playbook());
            match side {
                AlertWhen::Below => assert!(cond.starts_with("below "), "{metric}: {cond}"),
                AlertWhen::Above => assert!(cond.starts_with("above "), "{metric}: {cond}"),
            }
        }
    }
}
