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

/// R4.6's counts: per operator, `required` modules and how many were `completed` by
/// end of M. A module listed twice for an operator counts once (completed if any row
/// is). The operator report shows them as they are.
pub fn training_progress(inputs: &Inputs, period: Period) -> LazyFrame {
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
            len().cast(DataType::Int64).alias("required"),
            col("done").cast(DataType::Int64).sum().alias("completed"),
        ])
}

/// R4.6 — required modules completed by end of M / required modules.
fn training_completion(inputs: &Inputs, period: Period) -> LazyFrame {
    training_progress(inputs, period).select([
        col("operator_id"),
        ratio(col("completed"), col("required")).alias("value"),
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
mod tests;
