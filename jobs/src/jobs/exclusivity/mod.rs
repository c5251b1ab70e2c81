//! Job `exclusivity` — territory exclusivity compliance (R3): one row per exclusive
//! operator and territory, a notice to the operator for each breach, and an
//! escalation to partner success once breaches reach the plan's threshold (R3.5).

use super::*;
use crate::mail;
use crate::mail::render::format_bp;
use emails::ExclusivityView;
use opnet_pipelines::directory::Contact;
use opnet_pipelines::exclusivity::{SATISFACTION_INSUFFICIENT, exclusivity_checks};
use opnet_pipelines::plan::Exclusivity as Criteria;
use polars::prelude::*;

pub mod emails;

pub struct Exclusivity;

const JOB: &str = "exclusivity";

use DataType::{Boolean as B, Float64 as F, Int64 as I, String as S};

/// The tables this job writes, as published: columns and row order.
const OUTPUTS: &[TableSpec] = &[TableSpec {
    table: "exclusivity_checks",
    columns: &[
        ("period", S),
        ("operator_id", S),
        ("territory_id", S),
        ("currency", S),
        ("mrr_cents", I),
        ("active_customers", I),
        ("qoq_growth", F),
        ("csat_share", F),
        ("csat_responses", I),
        ("satisfaction", S),
        ("compliant", B),
        ("failed_criteria", S),
        ("consecutive_breaches", I),
        ("escalated", B),
        ("run_id", S),
    ],
    order_by: "operator_id, territory_id",
    changes_after_run: false,
}];

#[async_trait]
impl Job for Exclusivity {
    fn name(&self) -> &'static str {
        JOB
    }

    fn inputs(&self) -> &'static [&'static str] {
        &[
            "billing/invoices",
            "billing/invoice_lines",
            "crm/operators",
            "crm/territories",
            "crm/customers",
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
    let checks =
        compute(|| exclusivity_checks(ctx.inputs, period, ctx.plan).collect()).map_err(pl)?;
    let mut emails = Vec::new();
    for view in breach_views(ctx, &checks).map_err(pl)? {
        let mail_err = JobError::mail(JOB, period);
        emails.push(emails::exclusivity_breach_email(&view).map_err(mail_err)?);
        if view.escalated {
            for ps in &ctx.config.email.partner_success {
                emails.push(emails::escalation_email(&view, ps).map_err(mail_err)?);
            }
        }
    }
    let breaches = checks
        .column("compliant")
        .map_err(pl)?
        .bool()
        .map_err(pl)?
        .iter()
        .filter(|c| *c == Some(false))
        .count();
    Ok(JobOutput {
        summary: vec![format!(
            "exclusive territories: {} ({breaches} in breach)",
            checks.height()
        )],
        writes: vec![TableWrite {
            table: "exclusivity_checks",
            frame: checks,
            replace: Replace::Period,
            publish: true,
        }],
        emails,
        ..Default::default()
    })
}

/// What each breach notice says (what failed, by how much, what restores compliance),
/// for operators with a CRM record; `run` mails it to the operator and, when
/// escalated, to each partner-success address.
fn breach_views(ctx: &JobContext<'_>, checks: &DataFrame) -> PolarsResult<Vec<ExclusivityView>> {
    let directory = opnet_pipelines::directory::operator_directory(ctx.inputs)?;
    let s = |n: &str| checks.column(n).and_then(|c| c.str().cloned());
    let i = |n: &str| checks.column(n).and_then(|c| c.i64().cloned());
    let f = |n: &str| checks.column(n).and_then(|c| c.f64().cloned());
    let b = |n: &str| checks.column(n).and_then(|c| c.bool().cloned());
    let (ops, terr, cur, failed, sat) = (
        s("operator_id")?,
        s("territory_id")?,
        s("currency")?,
        s("failed_criteria")?,
        s("satisfaction")?,
    );
    let (mrr, cust, streak, responses) = (
        i("mrr_cents")?,
        i("active_customers")?,
        i("consecutive_breaches")?,
        i("csat_responses")?,
    );
    let (growth, csat) = (f("qoq_growth")?, f("csat_share")?);
    let (compliant, escalated) = (b("compliant")?, b("escalated")?);
    let mut out = Vec::new();
    for r in 0..checks.height() {
        if compliant.get(r) != Some(false) {
            continue;
        }
        let op = ops.get(r).unwrap_or("");
        let Some(Contact { name, email }) = directory.get(op) else {
            continue;
        };
        let facts = CheckFacts {
            currency: cur.get(r).unwrap_or("").to_string(),
            failed_criteria: failed.get(r).unwrap_or("").to_string(),
            mrr_cents: mrr.get(r).unwrap_or(0),
            active_customers: cust.get(r).unwrap_or(0),
            qoq_growth: growth.get(r),
            csat_share: csat.get(r),
            csat_responses: responses.get(r).unwrap_or(0),
            insufficient_satisfaction_data: sat.get(r) == Some(SATISFACTION_INSUFFICIENT),
        };
        let failures = failure_sentences(&facts, &ctx.plan.exclusivity);
        let view = ExclusivityView {
            period: ctx.period.to_string(),
            operator_id: op.to_string(),
            operator_name: name.clone(),
            recipient: email.clone(),
            territory_id: terr.get(r).unwrap_or("").to_string(),
            failures,
            consecutive_breaches: streak.get(r).unwrap_or(0),
            escalated: escalated.get(r).unwrap_or(false),
        };
        out.push(view);
    }
    Ok(out)
}

/// What one `exclusivity_checks` row says about a breach, for its notice.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckFacts {
    /// The territory's currency (R3.1 is in it).
    pub currency: String,
    /// `failed_criteria` of the row: comma-separated `mrr`, `customers`, `growth`,
    /// `satisfaction`.
    pub failed_criteria: String,
    pub mrr_cents: i64,
    pub active_customers: i64,
    pub qoq_growth: Option<f64>,
    pub csat_share: Option<f64>,
    pub csat_responses: i64,
    /// R3.4 `insufficient_data`: reported, not a breach.
    pub insufficient_satisfaction_data: bool,
}

/// One sentence per failed criterion: what failed, by how much, what restores
/// compliance — every threshold from the plan in force (R0.5), money from integer
/// cents and basis points printed exactly (R0.3: 1250 bp is "12.5 %").
pub fn failure_sentences(f: &CheckFacts, ex: &Criteria) -> Vec<String> {
    let currency = f.currency.as_str();
    let mut failures = Vec::new();
    for criterion in f.failed_criteria.split(',').filter(|c| !c.is_empty()) {
        failures.push(match criterion {
            "mrr" => {
                let min = ex.min_mrr_for(currency);
                format!(
                    "MRR (R3.1) is {} against a minimum of {}: {} more monthly recurring revenue restores compliance.",
                    mail::format_cents(f.mrr_cents, currency),
                    mail::format_cents(min, currency),
                    mail::format_cents(min.saturating_sub(f.mrr_cents), currency)
                )
            }
            "customers" => format!(
                "Active customers (R3.2) are {} against a minimum of {}: {} more active customers restore compliance.",
                f.active_customers,
                ex.min_active_customers,
                ex.min_active_customers.saturating_sub(f.active_customers)
            ),
            "growth" => format!(
                "Quarter-over-quarter MRR growth (R3.3) is {} against the {} required in the first {} months of exclusivity.",
                f.qoq_growth
                    .map(|g| format!("{:.1} %", g * 100.0))
                    .unwrap_or_else(|| "none".into()),
                format_bp(ex.min_qoq_growth_bp),
                ex.growth_check_months
            ),
            "satisfaction" => format!(
                "Customer satisfaction (R3.4) is {} of {} responses at CSAT {}+, which must be above {}.",
                f.csat_share
                    .map(|c| format!("{:.1} %", c * 100.0))
                    .unwrap_or_else(|| "n/a".into()),
                f.csat_responses,
                ex.satisfied_csat_score,
                format_bp(ex.min_csat_share_bp)
            ),
            other => format!("Criterion {other} failed."),
        });
    }
    if f.insufficient_satisfaction_data {
        failures.push(
            "Satisfaction could not be assessed: too few CSAT responses (reported, not a breach)."
                .into(),
        );
    }
    failures
}
