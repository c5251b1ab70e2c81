//! Job `alerts` — performance-threshold alerts (R4): the six metrics of every
//! operator active at end of M, stored with their thresholds, and one email per
//! operator listing every breached metric (never twice for the same content).

use super::*;
use emails::{AlertView, MetricBreachView};
use opnet_pipelines::alerts::{
    metric_condition, metric_definition, metric_label, metric_target, metric_value,
    operator_metrics,
};
use opnet_pipelines::directory::Contact;
use polars::prelude::*;
use std::collections::BTreeMap;

pub mod emails;

pub struct Alerts;

const JOB: &str = "alerts";

use DataType::{Boolean as B, Float64 as F, String as S};

/// The tables this job writes, as published: columns and row order.
const OUTPUTS: &[TableSpec] = &[TableSpec {
    table: "operator_metrics",
    columns: &[
        ("period", S),
        ("operator_id", S),
        ("metric", S),
        ("value", F),
        ("threshold", F),
        ("breached", B),
        ("run_id", S),
    ],
    order_by: "operator_id, metric",
    changes_after_run: false,
}];

#[async_trait]
impl Job for Alerts {
    fn name(&self) -> &'static str {
        JOB
    }

    fn inputs(&self) -> &'static [&'static str] {
        &[
            "crm/operators",
            "crm/customers",
            "crm/leads",
            "crm/training",
            "survey/survey_responses",
        ]
    }

    fn outputs(&self) -> &'static [TableSpec] {
        OUTPUTS
    }

    /// Nothing is read from the database: always computed ahead, and [`Job::run`]'s
    /// default serves the same.
    fn run_detached(&self, ctx: &JobContext<'_>) -> Option<Result<JobOutput, JobError>> {
        Some(output(ctx))
    }
}

/// The period's results, from the snapshot and the plan alone.
fn output(ctx: &JobContext<'_>) -> Result<JobOutput, JobError> {
    let period = ctx.period;
    let pl = JobError::polars(JOB, period);
    let metrics =
        compute(|| operator_metrics(ctx.inputs, period, ctx.plan).collect()).map_err(pl)?;
    let emails = alert_views(ctx, &metrics)
        .map_err(pl)?
        .iter()
        .map(emails::alert_email)
        .collect::<Result<Vec<_>, _>>()
        .map_err(JobError::mail(JOB, period))?;
    Ok(JobOutput {
        summary: vec![format!(
            "metrics: {} rows, {} operator(s) alerted",
            metrics.height(),
            emails.len()
        )],
        writes: vec![TableWrite {
            table: "operator_metrics",
            frame: metrics,
            replace: Replace::Period,
            publish: true,
        }],
        emails,
        ..Default::default()
    })
}

/// One breached metric in words, from the plan in force (R0.5): the wording and the
/// threshold come from the metric's one definition in `opnet_pipelines::alerts`.
pub fn breach_view(
    metric: &str,
    value: f64,
    threshold: f64,
    plan: &Plan,
    period: Period,
) -> MetricBreachView {
    MetricBreachView {
        metric: metric.to_string(),
        label: metric_label(metric).to_string(),
        definition: metric_definition(metric).to_string(),
        value: metric_value(metric, value, period),
        alert_when: metric_condition(metric, plan),
        target: metric_target(metric, plan),
        // `{}` on f64 is the shortest text that reads back to the same number.
        figures: format!("{metric}\t{value}\t{threshold}"),
    }
}

/// One alert per operator with a breached metric, listing every breach (R4).
fn alert_views(ctx: &JobContext<'_>, m: &DataFrame) -> PolarsResult<Vec<AlertView>> {
    let directory = opnet_pipelines::directory::operator_directory(ctx.inputs)?;
    let ops = m.column("operator_id")?.str()?.clone();
    let metric = m.column("metric")?.str()?.clone();
    let value = m.column("value")?.f64()?.clone();
    let threshold = m.column("threshold")?.f64()?.clone();
    let breached = m.column("breached")?.bool()?.clone();
    let mut by_op: BTreeMap<String, Vec<MetricBreachView>> = BTreeMap::new();
    for r in 0..m.height() {
        if breached.get(r) != Some(true) {
            continue;
        }
        // A breached row always has a value and a threshold (R4: null never breaches).
        let (Some(id), Some(v), Some(t)) = (metric.get(r), value.get(r), threshold.get(r)) else {
            continue;
        };
        by_op
            .entry(ops.get(r).unwrap_or("").to_string())
            .or_default()
            .push(breach_view(id, v, t, ctx.plan, ctx.period));
    }
    let mut out = Vec::new();
    for (op, breaches) in by_op {
        let Some(Contact { name, email }) = directory.get(&op) else {
            continue;
        };
        let view = AlertView {
            period: ctx.period.to_string(),
            operator_id: op.clone(),
            operator_name: name.clone(),
            recipient: email.clone(),
            breaches,
        };
        out.push(view);
    }
    Ok(out)
}
