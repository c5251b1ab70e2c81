//! R8.1 — the operator scorecard of the Playbook's "Measuring Success": seven
//! components per operator active at end of M, each a value and a 0–100 score, and a
//! weighted `total`.
//!
//! Four components reuse the R4 metrics exactly ([`crate::alerts::operator_metrics`]),
//! so an operator's scorecard and its alert email can never disagree about, say, its
//! retention. A component without data (R4's nulls; `community_contribution` when
//! crm/leads has no `referred_by_operator_id` column) has a null value and score and
//! is left out of the total, whose weights are renormalised over the rest. Every
//! weight and target is the plan's ([`crate::plan::Scorecard`]).

use crate::Inputs;
use crate::active::active_operators;
use crate::alerts::{self, operator_metrics};
use crate::mrr::mrr;
use crate::period::{Period, date_to_millis};
use crate::plan::{Plan, Scorecard};
use polars::prelude::*;

/// R8.1 component ids, exactly as `operator_scorecards.component` spells them.
pub mod component {
    pub const REVENUE_GENERATION: &str = "revenue_generation";
    pub const CUSTOMER_ACQUISITION: &str = "customer_acquisition";
    pub const CUSTOMER_RETENTION: &str = "customer_retention";
    pub const IMPLEMENTATION_SPEED: &str = "implementation_speed";
    pub const CUSTOMER_SATISFACTION: &str = "customer_satisfaction";
    pub const TRAINING_COMPLIANCE: &str = "training_compliance";
    pub const COMMUNITY_CONTRIBUTION: &str = "community_contribution";
    /// The weighted total row.
    pub const TOTAL: &str = "total";
}

/// The seven components in the Playbook's order.
pub const COMPONENTS: [&str; 7] = [
    component::REVENUE_GENERATION,
    component::CUSTOMER_ACQUISITION,
    component::CUSTOMER_RETENTION,
    component::IMPLEMENTATION_SPEED,
    component::CUSTOMER_SATISFACTION,
    component::TRAINING_COMPLIANCE,
    component::COMMUNITY_CONTRIBUTION,
];

/// The optional crm/leads column naming the operator that referred a lead (data
/// contract); without it `community_contribution` is null (R8.1).
pub const REFERRED_BY: &str = "referred_by_operator_id";

/// A component's weight in the plan.
pub fn weight(sc: &Scorecard, component: &str) -> Option<f64> {
    Some(match component {
        component::REVENUE_GENERATION => sc.revenue_generation.weight,
        component::CUSTOMER_ACQUISITION => sc.customer_acquisition.weight,
        component::CUSTOMER_RETENTION => sc.customer_retention.weight,
        component::IMPLEMENTATION_SPEED => sc.implementation_speed.weight,
        component::CUSTOMER_SATISFACTION => sc.customer_satisfaction.weight,
        component::TRAINING_COMPLIANCE => sc.training_compliance.weight,
        component::COMMUNITY_CONTRIBUTION => sc.community_contribution.weight,
        _ => return None,
    })
}

/// `x` clamped to 0–100 (null stays null).
fn clamp_score(x: Expr) -> Expr {
    when(x.clone().lt(lit(0.0f64)))
        .then(lit(0.0f64))
        .when(x.clone().gt(lit(100.0f64)))
        .then(lit(100.0f64))
        .otherwise(x)
}

/// The R8.1 score of a component from its `value` column.
fn score_expr(sc: &Scorecard, component: &str) -> Expr {
    let v = col("value");
    let ratio = |target: f64| clamp_score(v.clone() * lit(100.0f64) / lit(target));
    match component {
        component::REVENUE_GENERATION => ratio(sc.revenue_generation.target),
        component::CUSTOMER_ACQUISITION => ratio(sc.customer_acquisition.target),
        component::CUSTOMER_RETENTION => ratio(sc.customer_retention.target),
        // 100 at `target` days or less, 0 at `zero_at` or more: 100 × (28 − v) / 14.
        component::IMPLEMENTATION_SPEED => {
            let zero_at = sc.implementation_zero_at_days;
            clamp_score(
                (lit(zero_at) - v) * lit(100.0f64) / lit(zero_at - sc.implementation_speed.target),
            )
        }
        component::CUSTOMER_SATISFACTION => ratio(sc.customer_satisfaction.target),
        component::TRAINING_COMPLIANCE => ratio(sc.training_compliance.target),
        _ => ratio(sc.community_contribution.target),
    }
}

/// `operator_id`, `value` (f64) of an R4 metric for the operators that have one.
fn r4_value(metrics: &LazyFrame, metric: &str) -> LazyFrame {
    metrics
        .clone()
        .filter(col("metric").eq(lit(metric)))
        .select([col("operator_id"), col("value")])
}

/// Count of rows per `key` column as `value` (f64), for `operator_id`.
fn count_by(frame: LazyFrame, key: &str) -> LazyFrame {
    frame
        .group_by([col(key).alias("operator_id")])
        .agg([len().cast(DataType::Float64).alias("value")])
}

/// The `operator_scorecards` rows of `period` (R8.1): `period` str, `operator_id` str,
/// `component` str, `value` f64?, `score` f64?, `weight` f64 — eight rows per operator
/// active at end of M (R6.2), sorted by operator and component.
///
/// Values: `revenue_generation` MRR (R6.1) at M in the reporting currency, 0 without
/// any; `customer_acquisition` customers signed in M−2..M divided by 3;
/// `customer_retention`, `implementation_speed`, `customer_satisfaction`,
/// `training_compliance` the R4.3, R4.2, R4.4, R4.6 values; `community_contribution`
/// the referral leads the operator referred with `created_at` in M−11..M. `total`:
/// `score = Σ weight × score / Σ weight` over the components with a score,
/// `weight = Σ weight` over them, `value` null; `score` null when none has one.
pub fn operator_scorecards(
    inputs: &Inputs,
    period: Period,
    plan: &Plan,
) -> PolarsResult<LazyFrame> {
    let sc = &plan.scorecard;
    let operators = active_operators(inputs.operators.clone(), period.last_day())
        .select([col("operator_id")])
        .unique_stable(None, UniqueKeepStrategy::First);
    let parts = component_values(inputs, period, plan, &operators);
    let components = component_rows(&operators, parts, sc)?;
    let total = total_rows(components.clone());

    Ok(concat([components, total], UnionArgs::default())?
        .select([
            lit(period.to_string()).alias("period"),
            col("operator_id"),
            col("component"),
            col("value"),
            col("score"),
            col("weight"),
        ])
        .sort(["operator_id", "component"], SortMultipleOptions::default()))
}

/// R8.1: the seven components in the Playbook's order, each as (component, its
/// `operator_id`/`value` frame, what a missing value means: `Some(0)` or `None` =
/// null).
fn component_values(
    inputs: &Inputs,
    period: Period,
    plan: &Plan,
    operators: &LazyFrame,
) -> Vec<(&'static str, LazyFrame, Option<f64>)> {
    let sc = &plan.scorecard;
    let metrics = operator_metrics(inputs, period, plan);
    let revenue = revenue_values(inputs, period, sc);
    let acquisition = acquisition_values(inputs, period, sc);
    let referrals = referral_counts(inputs, period, sc);
    vec![
        (component::REVENUE_GENERATION, revenue, Some(0.0)),
        (component::CUSTOMER_ACQUISITION, acquisition, Some(0.0)),
        (
            component::CUSTOMER_RETENTION,
            r4_value(&metrics, alerts::CUSTOMER_RETENTION),
            None,
        ),
        (
            component::IMPLEMENTATION_SPEED,
            r4_value(&metrics, alerts::IMPLEMENTATION_DAYS),
            None,
        ),
        (
            component::CUSTOMER_SATISFACTION,
            r4_value(&metrics, alerts::NPS),
            None,
        ),
        (
            component::TRAINING_COMPLIANCE,
            r4_value(&metrics, alerts::TRAINING_COMPLETION),
            None,
        ),
        match referrals {
            Some(counts) => (component::COMMUNITY_CONTRIBUTION, counts, Some(0.0)),
            None => (
                component::COMMUNITY_CONTRIBUTION,
                operators.clone().select([
                    col("operator_id"),
                    lit(NULL).cast(DataType::Float64).alias("value"),
                ]),
                None,
            ),
        },
    ]
}

/// R8.1 `revenue_generation`: each operator's MRR (R6.1) at M in the reporting
/// currency, as `value` (f64).
fn revenue_values(inputs: &Inputs, period: Period, sc: &Scorecard) -> LazyFrame {
    mrr(inputs, &[period])
        .filter(col("currency").eq(lit(sc.reporting_currency.as_str())))
        .select([
            col("operator_id"),
            col("mrr_cents").cast(DataType::Float64).alias("value"),
        ])
}

/// R8.1 `customer_acquisition`: customers with `contract_signed_on` in the
/// `acquisition_months` ending with M, divided by that number of months.
fn acquisition_values(inputs: &Inputs, period: Period, sc: &Scorecard) -> LazyFrame {
    let first = period.add_months(-(sc.acquisition_months - 1) as i32);
    count_by(
        inputs.customers.clone().filter(
            col("operator_id").is_not_null().and(
                col("contract_signed_on")
                    .gt_eq(lit(first.first_day()))
                    .and(col("contract_signed_on").lt_eq(lit(period.last_day()))),
            ),
        ),
        "operator_id",
    )
    .with_column(col("value") / lit(sc.acquisition_months as f64))
}

/// R8.1: one row per active operator and component — `operator_id`, `component`,
/// `value` (a missing value filled as the component says), `score`, `weight`.
fn component_rows(
    operators: &LazyFrame,
    parts: Vec<(&'static str, LazyFrame, Option<f64>)>,
    sc: &Scorecard,
) -> PolarsResult<LazyFrame> {
    let rows: Vec<LazyFrame> = parts
        .into_iter()
        .map(|(name, values, missing)| {
            let value = match missing {
                Some(zero) => col("value").fill_null(lit(zero)),
                None => col("value"),
            };
            operators
                .clone()
                .join(
                    values,
                    [col("operator_id")],
                    [col("operator_id")],
                    JoinArgs::new(JoinType::Left),
                )
                .with_column(value.cast(DataType::Float64).alias("value"))
                .select([
                    col("operator_id"),
                    lit(name).alias("component"),
                    col("value"),
                    score_expr(sc, name).alias("score"),
                    lit(weight(sc, name).unwrap_or(0.0)).alias("weight"),
                ])
        })
        .collect();
    concat(rows, UnionArgs::default())
}

/// R8.1 `total` per operator: `score = Σ weight × score / Σ weight` over the
/// components with a score (null when none has one), `weight = Σ weight` over them,
/// `value` null.
fn total_rows(components: LazyFrame) -> LazyFrame {
    let counted = col("score").is_not_null();
    components
        .group_by([col("operator_id")])
        .agg([
            (col("weight") * col("score"))
                .filter(counted.clone())
                .sum()
                .alias("weighted"),
            col("weight").filter(counted).sum().alias("weight"),
        ])
        .select([
            col("operator_id"),
            lit(component::TOTAL).alias("component"),
            lit(NULL).cast(DataType::Float64).alias("value"),
            when(col("weight").gt(lit(0.0f64)))
                .then(col("weighted") / col("weight"))
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("score"),
            col("weight").cast(DataType::Float64),
        ])
}

/// R8.1 `community_contribution`: leads with `source = referral` that the operator
/// referred (`referred_by_operator_id`) created in M−11..M (timestamps: from 00:00 UTC
/// on the first day of M−11 to before 00:00 UTC on the first day of M+1). `None` when
/// crm/leads has no `referred_by_operator_id` column.
fn referral_counts(inputs: &Inputs, period: Period, sc: &Scorecard) -> Option<LazyFrame> {
    let schema = inputs.leads.clone().collect_schema().ok()?;
    schema.get(REFERRED_BY)?;
    let start = date_to_millis(
        period
            .add_months(-(sc.referral_months - 1) as i32)
            .first_day(),
    );
    let end = date_to_millis(period.next().first_day());
    let ms = col("created_at").cast(DataType::Int64);
    Some(count_by(
        inputs.leads.clone().filter(
            col("source")
                .eq(lit("referral"))
                .and(col(REFERRED_BY).is_not_null())
                .and(ms.clone().gt_eq(lit(start)))
                .and(ms.lt(lit(end))),
        ),
        REFERRED_BY,
    ))
}

/// The operator report's lead pipeline (R8.1's monthly report): per operator, the
/// leads assigned to it (upstream, `assigned_operator_id`) created in M — `assigned`,
/// how many were `contacted` (a `first_contact_at`) and `converted` (a
/// `converted_customer_id`). Operators without such leads have no row.
pub fn lead_pipeline(inputs: &Inputs, period: Period) -> LazyFrame {
    let start = date_to_millis(period.first_day());
    let end = date_to_millis(period.next().first_day());
    let ms = col("created_at").cast(DataType::Int64);
    inputs
        .leads
        .clone()
        .filter(
            col("assigned_operator_id")
                .is_not_null()
                .and(ms.clone().gt_eq(lit(start)))
                .and(ms.lt(lit(end))),
        )
        .group_by([col("assigned_operator_id").alias("operator_id")])
        .agg([
            len().cast(DataType::Int64).alias("assigned"),
            col("first_contact_at")
                .is_not_null()
                .cast(DataType::Int64)
                .sum()
                .alias("contacted"),
            col("converted_customer_id")
                .is_not_null()
                .cast(DataType::Int64)
                .sum()
                .alias("converted"),
        ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
