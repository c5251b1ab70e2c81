//! The scorecard job's email: the monthly operator report (R8.1) — this month's score
//! and its seven components with what would raise each, twelve-month trend charts of
//! the score, MRR and active customers (inline SVG, as in the leadership report), the
//! month's lead pipeline and training progress. One per operator and period, only its
//! own figures.

use minijinja::Value;
use serde::Serialize;

use crate::charts::{Axis, BLUE_LINE, Guide, Line, LineChart, YFormat, draw_line_chart};
use crate::mail::render::{format_cents, render_pair};
use crate::mail::{Audience, MailError, OutgoingEmail, dedup_key};
use opnet_pipelines::Period;

/// `email_outbox.kind` of the monthly operator report.
pub const KIND: &str = "operator_report";

/// This job's templates, by name; the extension picks the escaping (HTML or none).
const TEMPLATES: &[(&str, &str)] = &[
    (
        "operator_report.txt",
        include_str!("templates/operator_report.txt"),
    ),
    (
        "operator_report.html",
        include_str!("templates/operator_report.html"),
    ),
];

/// One scorecard component in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentView {
    /// The R8.1 id (`revenue_generation`…).
    pub component: String,
    pub label: String,
    /// The value with its unit, `—` without data.
    pub value: String,
    /// 0–100 with one decimal, `—` without data.
    pub score: String,
    /// The component's weight, `25 %`.
    pub weight: String,
    /// What would raise it (empty at the full score).
    pub advice: String,
}

/// One month of the trend charts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendPointView {
    pub period: Period,
    pub total: Option<f64>,
    pub mrr_cents: Option<i64>,
    pub customers: Option<i64>,
}

/// Leads assigned to the operator and created in the month.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LeadPipelineView {
    pub assigned: i64,
    pub contacted: i64,
    pub converted: i64,
}

/// One operator's monthly report.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorReportView {
    pub period: String,
    pub operator_id: String,
    pub operator_name: String,
    pub recipient: String,
    /// The reporting currency of the revenue figures.
    pub currency: String,
    /// The R8.1 total, null when no component has data.
    pub total: Option<f64>,
    /// The weight the total is based on (Σ weight of the components with a score).
    pub weight_covered: f64,
    /// The seven components, in the Playbook's order.
    pub components: Vec<ComponentView>,
    /// M−11..M, oldest first.
    pub trend: Vec<TrendPointView>,
    pub leads: LeadPipelineView,
    pub modules_required: i64,
    pub modules_completed: i64,
}

/// A chart as the HTML template places it.
#[derive(Serialize)]
struct ChartCtx {
    id: &'static str,
    caption: String,
    svg: Value,
}

#[derive(Serialize)]
struct TrendRowCtx {
    period: String,
    total: String,
    mrr: String,
    customers: String,
}

#[derive(Serialize)]
struct ReportCtx<'a> {
    period: &'a str,
    operator_id: &'a str,
    operator_name: &'a str,
    total: String,
    covered: String,
    components: &'a [ComponentView],
    charts: Vec<ChartCtx>,
    trend: Vec<TrendRowCtx>,
    leads: &'a LeadPipelineView,
    modules_required: i64,
    modules_completed: i64,
}

/// The three trend charts: score, MRR, active customers, over the months of the
/// trend that have any figure (a young operator gets a shorter axis).
fn charts(v: &OperatorReportView) -> Result<Vec<ChartCtx>, MailError> {
    let m = Period::parse(&v.period).map_err(|e| MailError::Chart {
        chart: "operator report".into(),
        message: e.to_string(),
    })?;
    let first = v
        .trend
        .iter()
        .find(|t| t.total.is_some() || t.mrr_cents.is_some() || t.customers.is_some())
        .map(|t| t.period)
        .unwrap_or(m);
    let axis = Axis::months(first, m);
    let points = |f: &dyn Fn(&TrendPointView) -> Option<f64>| -> Vec<(i32, f64)> {
        v.trend
            .iter()
            .filter_map(|t| Some((axis.index(t.period)?, f(t)?)))
            .collect()
    };
    let specs = [
        (
            "chart-score",
            LineChart {
                id: "chart-score".into(),
                caption: "Scorecard total (0–100)".into(),
                y_desc: "score".into(),
                y_format: YFormat::Count,
                lines: vec![Line {
                    label: "total score".into(),
                    colour: BLUE_LINE,
                    points: points(&|t| t.total),
                }],
                guides: Vec::new(),
                y_range: Some((0.0, 100.0)),
            },
        ),
        (
            "chart-mrr",
            LineChart {
                id: "chart-mrr".into(),
                caption: format!("Monthly recurring revenue ({})", v.currency),
                y_desc: v.currency.clone(),
                y_format: YFormat::Money(v.currency.clone()),
                lines: vec![Line {
                    label: "MRR".into(),
                    colour: BLUE_LINE,
                    // i64 → f64 only positions a point; labels are formatted from integers.
                    points: points(&|t| t.mrr_cents.map(|c| c as f64)),
                }],
                guides: Vec::<Guide>::new(),
                y_range: None,
            },
        ),
        (
            "chart-customers",
            LineChart {
                id: "chart-customers".into(),
                caption: "Active customers at the end of each month".into(),
                y_desc: "customers".into(),
                y_format: YFormat::Count,
                lines: vec![Line {
                    label: "active customers".into(),
                    colour: BLUE_LINE,
                    points: points(&|t| t.customers.map(|c| c as f64)),
                }],
                guides: Vec::new(),
                y_range: None,
            },
        ),
    ];
    specs
        .into_iter()
        .map(|(id, spec)| {
            let svg = draw_line_chart(&axis, &spec).map_err(|e| MailError::Chart {
                chart: id.into(),
                message: e.to_string(),
            })?;
            Ok(ChartCtx {
                id,
                caption: spec.caption.clone(),
                svg: Value::from_safe_string(svg),
            })
        })
        .collect()
}

/// The monthly operator report email. One per operator and period.
/// The report's total score as its subject and body print it.
fn total_text(v: &OperatorReportView) -> String {
    v.total
        .map(|t| format!("{t:.1}"))
        .unwrap_or_else(|| "—".into())
}

fn subject(v: &OperatorReportView) -> String {
    format!(
        "Your Candlefish scorecard for {}: {} of 100 ({})",
        v.period,
        total_text(v),
        v.operator_id
    )
}

/// The report's outbox row without its body, for a run whose mail is suppressed.
pub fn operator_report_unrendered(v: &OperatorReportView) -> OutgoingEmail {
    OutgoingEmail::unrendered(
        dedup_key("operator_report", &[&v.period, &v.operator_id]),
        KIND,
        Audience::Operator,
        Some(v.period.clone()),
        v.recipient.clone(),
        subject(v),
    )
}

pub fn operator_report_email(v: &OperatorReportView) -> Result<OutgoingEmail, MailError> {
    let total = total_text(v);
    let trend = v
        .trend
        .iter()
        .map(|t| TrendRowCtx {
            period: t.period.to_string(),
            total: t
                .total
                .map(|x| format!("{x:.1}"))
                .unwrap_or_else(|| "—".into()),
            mrr: t
                .mrr_cents
                .map(|c| format_cents(c, &v.currency))
                .unwrap_or_else(|| "—".into()),
            customers: t
                .customers
                .map(|c| c.to_string())
                .unwrap_or_else(|| "—".into()),
        })
        .collect();
    let ctx = ReportCtx {
        period: &v.period,
        operator_id: &v.operator_id,
        operator_name: &v.operator_name,
        total: total.clone(),
        covered: format!("{:.0} %", v.weight_covered * 100.0),
        components: &v.components,
        charts: charts(v)?,
        trend,
        leads: &v.leads,
        modules_required: v.modules_required,
        modules_completed: v.modules_completed,
    };
    let (text, html) = render_pair(TEMPLATES, "operator_report", &ctx)?;
    Ok(OutgoingEmail {
        dedup_key: dedup_key("operator_report", &[&v.period, &v.operator_id]),
        kind: KIND.into(),
        audience: Audience::Operator,
        period: Some(v.period.clone()),
        recipient: v.recipient.clone(),
        subject: subject(v),
        text,
        html: Some(html),
        attachments: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
