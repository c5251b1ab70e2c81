//! Job `scorecard` — the operator scorecard (R8.1): seven components and a weighted
//! total for every operator active at end of M, and the monthly operator report to
//! each of them — this month's score and its components (value, score, what would
//! raise it), twelve-month trends of the score, MRR and customers, the month's lead
//! pipeline and training progress. The batch form of the Playbook's partner-portal
//! dashboard; each operator gets only its own.
//!
//! The trends read the earlier periods' scorecards and tiers from the database (this
//! job's and the payouts job's committed results); the rules are
//! `opnet_pipelines::scorecard`.

use super::*;
use crate::db::{Value, query_frame};
use emails::{ComponentView, LeadPipelineView, OperatorReportView, TrendPointView};
use opnet_pipelines::alerts::training_progress;
use opnet_pipelines::directory::operator_directory;
use opnet_pipelines::scorecard::{COMPONENTS, component, lead_pipeline, operator_scorecards};
use polars::prelude::*;
use std::collections::BTreeMap;

pub mod emails;

pub struct Scorecard;

const JOB: &str = "scorecard";

/// Months of the report's trend charts, M−11..M.
const TREND_MONTHS: i32 = 12;

use DataType::{Float64 as F, String as S};

/// The tables this job writes, as published: columns and row order.
const OUTPUTS: &[TableSpec] = &[TableSpec {
    table: "operator_scorecards",
    columns: &[
        ("period", S),
        ("operator_id", S),
        ("component", S),
        ("value", F),
        ("score", F),
        ("weight", F),
        ("run_id", S),
    ],
    order_by: "operator_id, component",
    changes_after_run: false,
}];

#[async_trait]
impl Job for Scorecard {
    fn name(&self) -> &'static str {
        JOB
    }

    fn inputs(&self) -> &'static [&'static str] {
        &[
            "billing/invoices",
            "billing/invoice_lines",
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

    async fn run(
        &self,
        ctx: &JobContext<'_>,
        conn: &mut AnyConnection,
    ) -> Result<JobOutput, JobError> {
        // A suppressed run's reports are recorded but never sent: no trends to read,
        // no charts to draw.
        let trends = if ctx.mail_suppressed {
            BTreeMap::new()
        } else {
            trend_rows(conn, ctx.period).await?
        };
        output(ctx, &trends)
    }

    /// A suppressed run (a backfilled period) reads nothing from the database.
    fn run_detached(&self, ctx: &JobContext<'_>) -> Option<Result<JobOutput, JobError>> {
        ctx.mail_suppressed.then(|| output(ctx, &BTreeMap::new()))
    }
}

/// The period's scorecards and their reports, given the trends of earlier months.
fn output(
    ctx: &JobContext<'_>,
    trends: &BTreeMap<(String, Period), Trend>,
) -> Result<JobOutput, JobError> {
    let period = ctx.period;
    let pl = JobError::polars(JOB, period);
    let (rows, pipeline, training) = compute(|| -> PolarsResult<_> {
        Ok((
            operator_scorecards(ctx.inputs, period, ctx.plan)?.collect()?,
            lead_pipeline(ctx.inputs, period).collect()?,
            training_progress(ctx.inputs, period).collect()?,
        ))
    })
    .map_err(pl)?;
    let views = report_views(ctx, &rows, trends, &pipeline, &training).map_err(pl)?;
    let emails = if ctx.mail_suppressed {
        views
            .iter()
            .map(emails::operator_report_unrendered)
            .collect()
    } else {
        views
            .iter()
            .map(emails::operator_report_email)
            .collect::<Result<Vec<_>, _>>()
            .map_err(JobError::mail(JOB, period))?
    };
    Ok(JobOutput {
        summary: vec![format!(
            "scorecards: {} operator(s), {} component rows",
            views.len(),
            rows.height()
        )],
        writes: vec![TableWrite {
            table: "operator_scorecards",
            frame: rows,
            replace: Replace::Period,
            publish: true,
        }],
        emails,
        ..Default::default()
    })
}

/// An operator's figures of one earlier month, from the database.
#[derive(Default, Clone, Copy)]
struct Trend {
    total: Option<f64>,
    mrr_cents: Option<i64>,
    customers: Option<i64>,
}

/// (operator, period) → the total score and revenue of the scorecards of M−11..M−1
/// and the active customers of the tiers of M−11..M (the payouts job wrote M's).
async fn trend_rows(
    conn: &mut AnyConnection,
    period: Period,
) -> Result<BTreeMap<(String, Period), Trend>, JobError> {
    let db = JobError::db(JOB, period);
    let pl = JobError::polars(JOB, period);
    let first = period.add_months(1 - TREND_MONTHS);
    let scores = query_frame(
        conn,
        "SELECT period, operator_id, component, value, score FROM operator_scorecards \
         WHERE period >= $1 AND period < $2 AND component IN ('total', 'revenue_generation')",
        &[
            Value::Text(first.to_string()),
            Value::Text(period.to_string()),
        ],
        &[
            ("period", DataType::String),
            ("operator_id", DataType::String),
            ("component", DataType::String),
            ("value", DataType::Float64),
            ("score", DataType::Float64),
        ],
    )
    .await
    .map_err(db)?;
    let tiers = query_frame(
        conn,
        "SELECT period, operator_id, active_customers FROM operator_tiers WHERE period >= $1 AND period <= $2",
        &[
            Value::Text(first.to_string()),
            Value::Text(period.to_string()),
        ],
        &[
            ("period", DataType::String),
            ("operator_id", DataType::String),
            ("active_customers", DataType::Int64),
        ],
    )
    .await
    .map_err(db)?;
    let mut out: BTreeMap<(String, Period), Trend> = BTreeMap::new();
    let text = |df: &DataFrame, c: &str| -> PolarsResult<StringChunked> {
        Ok(df.column(c)?.str()?.clone())
    };
    let (p, op, comp) = (
        text(&scores, "period").map_err(pl)?,
        text(&scores, "operator_id").map_err(pl)?,
        text(&scores, "component").map_err(pl)?,
    );
    let value = scores
        .column("value")
        .and_then(|c| c.f64().cloned())
        .map_err(pl)?;
    let score = scores
        .column("score")
        .and_then(|c| c.f64().cloned())
        .map_err(pl)?;
    for i in 0..scores.height() {
        let (Some(p), Some(op), Some(comp)) = (p.get(i), op.get(i), comp.get(i)) else {
            continue;
        };
        let Ok(p) = Period::parse(p) else { continue };
        let t = out.entry((op.to_string(), p)).or_default();
        match comp {
            component::TOTAL => t.total = score.get(i),
            // Whole cents stored as a double: read back exactly (no money arithmetic).
            _ => t.mrr_cents = value.get(i).map(|v| v.round() as i64),
        }
    }
    let (p, op) = (
        text(&tiers, "period").map_err(pl)?,
        text(&tiers, "operator_id").map_err(pl)?,
    );
    let n = tiers
        .column("active_customers")
        .and_then(|c| c.i64().cloned())
        .map_err(pl)?;
    for i in 0..tiers.height() {
        let (Some(p), Some(op)) = (p.get(i), op.get(i)) else {
            continue;
        };
        let Ok(p) = Period::parse(p) else { continue };
        out.entry((op.to_string(), p)).or_default().customers = n.get(i);
    }
    Ok(out)
}

/// One report per operator of the period's scorecard rows.
fn report_views(
    ctx: &JobContext<'_>,
    rows: &DataFrame,
    trends: &BTreeMap<(String, Period), Trend>,
    pipeline: &DataFrame,
    training: &DataFrame,
) -> PolarsResult<Vec<OperatorReportView>> {
    let period = ctx.period;
    let directory = operator_directory(ctx.inputs)?;
    let ids = rows.column("operator_id")?.str()?.clone();
    let comps = rows.column("component")?.str()?.clone();
    let values = rows.column("value")?.f64()?.clone();
    let scores = rows.column("score")?.f64()?.clone();
    let weights = rows.column("weight")?.f64()?.clone();
    type Cells = BTreeMap<String, (Option<f64>, Option<f64>, f64)>;
    let mut by_op: BTreeMap<String, Cells> = BTreeMap::new();
    for i in 0..rows.height() {
        let (Some(id), Some(c)) = (ids.get(i), comps.get(i)) else {
            continue;
        };
        by_op.entry(id.to_string()).or_default().insert(
            c.to_string(),
            (values.get(i), scores.get(i), weights.get(i).unwrap_or(0.0)),
        );
    }
    let leads = counts_by_operator(pipeline, &["assigned", "contacted", "converted"])?;
    let modules = counts_by_operator(training, &["required", "completed"])?;
    let sc = &ctx.plan.scorecard;
    let mut out = Vec::new();
    for (id, cells) in by_op {
        // An operator without a usable address gets no report (the mail layer would
        // only record it failed); its scorecard rows are written all the same.
        let Some(contact) = directory.get(&id) else {
            continue;
        };
        let components = COMPONENTS
            .iter()
            .map(|c| {
                let (value, score, weight) = cells.get(*c).copied().unwrap_or((None, None, 0.0));
                component_view(c, value, score, weight, ctx.plan)
            })
            .collect();
        let (_, total, covered) = cells
            .get(component::TOTAL)
            .copied()
            .unwrap_or((None, None, 0.0));
        let now = Trend {
            total,
            mrr_cents: cells
                .get(component::REVENUE_GENERATION)
                .and_then(|c| c.0)
                .map(|v| v.round() as i64),
            customers: trends.get(&(id.clone(), period)).and_then(|t| t.customers),
        };
        let trend = period
            .add_months(1 - TREND_MONTHS)
            .through(period)
            .map(|p| {
                let t = if p == period {
                    now
                } else {
                    trends.get(&(id.clone(), p)).copied().unwrap_or_default()
                };
                TrendPointView {
                    period: p,
                    total: t.total,
                    mrr_cents: t.mrr_cents,
                    customers: t.customers,
                }
            })
            .collect();
        let l = leads.get(&id).cloned().unwrap_or_default();
        let m = modules.get(&id).cloned().unwrap_or_default();
        out.push(OperatorReportView {
            period: period.to_string(),
            operator_id: id.clone(),
            operator_name: contact.name.clone(),
            recipient: contact.email.clone(),
            currency: sc.reporting_currency.clone(),
            total,
            weight_covered: covered,
            components,
            trend,
            leads: LeadPipelineView {
                assigned: l.first().copied().unwrap_or(0),
                contacted: l.get(1).copied().unwrap_or(0),
                converted: l.get(2).copied().unwrap_or(0),
            },
            modules_required: m.first().copied().unwrap_or(0),
            modules_completed: m.get(1).copied().unwrap_or(0),
        });
    }
    Ok(out)
}

/// operator_id → the named i64 columns of `df`.
fn counts_by_operator(df: &DataFrame, names: &[&str]) -> PolarsResult<BTreeMap<String, Vec<i64>>> {
    let ids = df.column("operator_id")?.str()?.clone();
    let cols: Vec<Int64Chunked> = names
        .iter()
        .map(|n| Ok(df.column(n)?.cast(&DataType::Int64)?.i64()?.clone()))
        .collect::<PolarsResult<_>>()?;
    let mut out = BTreeMap::new();
    for i in 0..df.height() {
        if let Some(id) = ids.get(i) {
            out.insert(
                id.to_string(),
                cols.iter().map(|c| c.get(i).unwrap_or(0)).collect(),
            );
        }
    }
    Ok(out)
}

/// One component in words: its value with its unit, its score, its weight, and what
/// would raise it — all from the plan in force (R0.5).
pub(crate) fn component_view(
    name: &str,
    value: Option<f64>,
    score: Option<f64>,
    weight: f64,
    plan: &Plan,
) -> ComponentView {
    let sc = &plan.scorecard;
    let cur = sc.reporting_currency.as_str();
    let money = |v: f64| crate::mail::format_cents(v.round() as i64, cur);
    let pct = |v: f64| format!("{:.1} %", v * 100.0);
    let (label, shown, advice) = match name {
        component::REVENUE_GENERATION => (
            "Revenue (MRR)",
            value.map(money),
            match value {
                Some(v) if v < sc.revenue_generation.target => format!(
                    "{} more monthly recurring revenue reaches the full score ({} of MRR).",
                    money(sc.revenue_generation.target - v),
                    money(sc.revenue_generation.target)
                ),
                _ => String::new(),
            },
        ),
        component::CUSTOMER_ACQUISITION => (
            "New customers",
            value.map(|v| format!("{v:.2} a month (last {} months)", sc.acquisition_months)),
            format!(
                "Signing {} new customers a month reaches the full score.",
                number(sc.customer_acquisition.target)
            ),
        ),
        component::CUSTOMER_RETENTION => (
            "Customer retention",
            value.map(pct),
            match value {
                Some(_) => format!(
                    "Keeping {} of the customers you had a year ago reaches the full score.",
                    pct(sc.customer_retention.target)
                ),
                None => "No score yet: you had no active customers a year ago.".into(),
            },
        ),
        component::IMPLEMENTATION_SPEED => (
            "Implementation time",
            value.map(|v| format!("{v:.1} days on average")),
            match value {
                Some(_) => format!(
                    "Going live within {} days of signing reaches the full score ({} days or more scores 0).",
                    number(sc.implementation_speed.target),
                    number(sc.implementation_zero_at_days)
                ),
                None => {
                    "No score this month: no customer went live in the last three months.".into()
                }
            },
        ),
        component::CUSTOMER_SATISFACTION => (
            "Net Promoter Score",
            value.map(|v| format!("{v:.0}")),
            match value {
                Some(_) => format!(
                    "An NPS of {} reaches the full score.",
                    number(sc.customer_satisfaction.target)
                ),
                None => format!(
                    "No score this month: fewer than {} survey responses in the last three months.",
                    plan.min_survey_responses
                ),
            },
        ),
        component::TRAINING_COMPLIANCE => (
            "Training",
            value.map(pct),
            match value {
                Some(_) => "Completing every required module reaches the full score.".into(),
                None => "No score: no required training modules.".into(),
            },
        ),
        _ => (
            "Referrals",
            value.map(|v| format!("{v:.0} in the last {} months", sc.referral_months)),
            match value {
                Some(_) => format!(
                    "Referring {} leads a year reaches the full score.",
                    number(sc.community_contribution.target)
                ),
                None => "No score: the CRM does not record who referred a lead yet.".into(),
            },
        ),
    };
    let full = score.is_some_and(|s| s >= 100.0);
    ComponentView {
        component: name.to_string(),
        label: label.to_string(),
        value: shown.unwrap_or_else(|| "—".to_string()),
        score: score
            .map(|s| format!("{s:.1}"))
            .unwrap_or_else(|| "—".into()),
        weight: format!("{:.0} %", weight * 100.0),
        advice: if full {
            "Full score — keep it there.".to_string()
        } else {
            advice
        },
    }
}

/// A plan number for people: no trailing zeros (`2`, `0.9`, `27.5`).
fn number(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
