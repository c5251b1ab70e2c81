//! Job `equity` — Operator Equity Program eligibility (R8.2): for every operator active
//! at end of M its tenure, tier, MRR and retention against the program's thresholds,
//! whether it is eligible and how that changed since M−1. Leadership gets one email
//! per period listing who gained and who lost eligibility (none when nobody changed);
//! an operator that gained gets one email explaining the program.

use super::*;
use emails::{EquityChangesView, EquityGainedView, EquityRowView};
use opnet_pipelines::directory::{Contact, operator_directory};
use opnet_pipelines::equity::{GAINED, LOST, equity_eligibility};
use polars::prelude::*;

pub mod emails;

pub struct Equity;

const JOB: &str = "equity";

use DataType::{Boolean as B, Float64 as F, Int64 as I, String as S};

/// The tables this job writes, as published: columns and row order.
const OUTPUTS: &[TableSpec] = &[TableSpec {
    table: "equity_eligibility",
    columns: &[
        ("period", S),
        ("operator_id", S),
        ("tenure_months", I),
        ("tier", S),
        ("mrr_cents", I),
        ("retention", F),
        ("eligible", B),
        ("failed_criteria", S),
        ("change", S),
        ("run_id", S),
    ],
    order_by: "operator_id",
    changes_after_run: false,
}];

#[async_trait]
impl Job for Equity {
    fn name(&self) -> &'static str {
        JOB
    }

    fn inputs(&self) -> &'static [&'static str] {
        &[
            "billing/invoices",
            "billing/invoice_lines",
            "billing/refunds",
            "crm/operators",
            "crm/customers",
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
    let rows =
        compute(|| equity_eligibility(ctx.inputs, period, ctx.plan)?.collect()).map_err(pl)?;
    let emails = equity_emails(ctx, &rows)?;
    let eligible = rows
        .column("eligible")
        .and_then(|c| c.bool().map(|b| b.sum().unwrap_or(0)))
        .map_err(pl)?;
    Ok(JobOutput {
        summary: vec![format!(
            "equity: {eligible} of {} operator(s) eligible",
            rows.height()
        )],
        writes: vec![TableWrite {
            table: "equity_eligibility",
            frame: rows,
            replace: Replace::Period,
            publish: true,
        }],
        emails,
        ..Default::default()
    })
}

/// The period's rows as views: every operator that gained or lost eligibility.
fn changes(ctx: &JobContext<'_>, rows: &DataFrame) -> PolarsResult<Vec<(String, EquityRowView)>> {
    let directory = operator_directory(ctx.inputs)?;
    let text = |c: &str| -> PolarsResult<StringChunked> { Ok(rows.column(c)?.str()?.clone()) };
    let (ids, tiers, change, failed) = (
        text("operator_id")?,
        text("tier")?,
        text("change")?,
        text("failed_criteria")?,
    );
    let tenure = rows.column("tenure_months")?.i64()?.clone();
    let mrr = rows.column("mrr_cents")?.i64()?.clone();
    let retention = rows.column("retention")?.f64()?.clone();
    let currency = ctx.plan.scorecard.reporting_currency.as_str();
    let mut out = Vec::new();
    for i in 0..rows.height() {
        let (Some(id), Some(ch)) = (ids.get(i), change.get(i)) else {
            continue;
        };
        if ch != GAINED && ch != LOST {
            continue;
        }
        let name = directory
            .get(id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| id.to_string());
        out.push((
            ch.to_string(),
            EquityRowView {
                operator_id: id.to_string(),
                operator_name: name,
                tier: tiers.get(i).unwrap_or("none").to_string(),
                tenure_months: tenure.get(i).unwrap_or(0),
                mrr: crate::mail::format_cents(mrr.get(i).unwrap_or(0), currency),
                retention: retention
                    .get(i)
                    .map(|r| format!("{:.1} %", r * 100.0))
                    .unwrap_or_else(|| "no customers a year ago".into()),
                failed: failed.get(i).unwrap_or("").to_string(),
            },
        ));
    }
    Ok(out)
}

/// One leadership email per address when someone gained or lost eligibility, and one
/// email to each operator that gained.
fn equity_emails(
    ctx: &JobContext<'_>,
    rows: &DataFrame,
) -> Result<Vec<crate::mail::OutgoingEmail>, JobError> {
    let period = ctx.period;
    let changed = changes(ctx, rows).map_err(JobError::polars(JOB, period))?;
    let mail_err = JobError::mail(JOB, period);
    let mut out = Vec::new();
    let (gained, lost): (Vec<_>, Vec<_>) = changed.into_iter().partition(|(c, _)| c == GAINED);
    let gained: Vec<EquityRowView> = gained.into_iter().map(|(_, v)| v).collect();
    let lost: Vec<EquityRowView> = lost.into_iter().map(|(_, v)| v).collect();
    if gained.is_empty() && lost.is_empty() {
        return Ok(out);
    }
    for to in &ctx.config.email.leadership {
        let view = EquityChangesView {
            period: period.to_string(),
            recipient: to.clone(),
            gained: gained.clone(),
            lost: lost.clone(),
        };
        out.push(emails::equity_changes_email(&view).map_err(mail_err)?);
    }
    let directory = operator_directory(ctx.inputs).map_err(JobError::polars(JOB, period))?;
    let program = &ctx.plan.equity;
    for g in &gained {
        // An operator without an address in the CRM gets no mail; leadership's list
        // names it all the same.
        let Some(Contact { email, .. }) = directory.get(&g.operator_id) else {
            continue;
        };
        let view = EquityGainedView {
            period: period.to_string(),
            recipient: email.clone(),
            operator: g.clone(),
            pool: program.pool.clone(),
            vesting: program.vesting.clone(),
            cliff: program.cliff.clone(),
            valuation_cadence: program.valuation_cadence.clone(),
        };
        out.push(emails::equity_gained_email(&view).map_err(mail_err)?);
    }
    Ok(out)
}
