//! Job `alerts` — performance-threshold alerts (R4): the six metrics of every
//! operator active at end of M, stored with their thresholds, and one email per
//! operator listing every breached metric (never twice for the same content).

use super::*;
use crate::mail::{self, AlertView, MetricBreachView};
use opnet_pipelines::alerts::{metric_label, metric_target, operator_metrics};
use polars::prelude::*;
use std::collections::BTreeMap;

pub struct Alerts;

const JOB: &str = "alerts";

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

    fn outputs(&self) -> &'static [&'static str] {
        &["operator_metrics"]
    }

    async fn run(
        &self,
        ctx: &JobContext<'_>,
        _conn: &mut AnyConnection,
    ) -> Result<JobOutput, JobError> {
        let period = ctx.period;
        let pl = |source| JobError::Polars {
            job: JOB,
            period,
            source,
        };
        let metrics =
            compute(|| operator_metrics(ctx.inputs, period, ctx.plan).collect()).map_err(pl)?;
        let emails = alert_views(ctx, &metrics)
            .map_err(pl)?
            .iter()
            .map(mail::alert_email)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| JobError::Mail {
                job: JOB,
                period,
                source,
            })?;
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
}

fn fmt_value(metric: &str, v: f64) -> String {
    match metric {
        "customer_retention" | "training_completion" => format!("{:.1} %", v * 100.0),
        "implementation_days" => format!("{v:.1} days"),
        "response_hours" => format!("{v:.1} hours"),
        "nps" => format!("{v:.1}"),
        _ => format!("{v}"),
    }
}

/// One alert per operator with a breached metric, listing every breach (R4).
fn alert_views(ctx: &JobContext<'_>, m: &DataFrame) -> PolarsResult<Vec<AlertView>> {
    let directory = super::payouts::operator_directory(ctx.inputs)?;
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
        let id = metric.get(r).unwrap_or("");
        by_op
            .entry(ops.get(r).unwrap_or("").to_string())
            .or_default()
            .push(MetricBreachView {
                metric: id.to_string(),
                label: metric_label(id).to_string(),
                value: value.get(r).map(|v| fmt_value(id, v)).unwrap_or_default(),
                threshold: threshold
                    .get(r)
                    .map(|v| fmt_value(id, v))
                    .unwrap_or_default(),
                target: metric_target(id, ctx.plan),
            });
    }
    let mut out = Vec::new();
    for (op, breaches) in by_op {
        let Some((name, email)) = directory.get(&op) else {
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
