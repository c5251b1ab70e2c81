//! The equity job's emails (R8.2): leadership's list of who gained and who lost
//! eligibility in a period, and the welcome to the program for an operator that gained
//! it — views in, [`OutgoingEmail`]s out, templates beside this file.

use serde::Serialize;

use crate::mail::render::{plural, render_pair, short_hash};
use crate::mail::{Audience, MailError, OutgoingEmail, dedup_key};

/// `email_outbox.kind` of leadership's list of eligibility changes.
pub const CHANGES_KIND: &str = "equity_changes";
/// `email_outbox.kind` of the email to an operator that became eligible.
pub const GAINED_KIND: &str = "equity_gained";

/// This job's templates, by name; the extension picks the escaping (HTML or none).
const TEMPLATES: &[(&str, &str)] = &[
    (
        "equity_changes.txt",
        include_str!("templates/equity_changes.txt"),
    ),
    (
        "equity_changes.html",
        include_str!("templates/equity_changes.html"),
    ),
    (
        "equity_gained.txt",
        include_str!("templates/equity_gained.txt"),
    ),
    (
        "equity_gained.html",
        include_str!("templates/equity_gained.html"),
    ),
];

/// One operator whose eligibility changed, with its figures in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EquityRowView {
    pub operator_id: String,
    pub operator_name: String,
    pub tier: String,
    pub tenure_months: i64,
    /// MRR in the reporting currency, formatted (`52,000.00 USD`).
    pub mrr: String,
    /// Retention as a percentage, or why there is none.
    pub retention: String,
    /// The criteria it fails (`tenure,tier,mrr,retention`), empty when eligible.
    pub failed: String,
}

/// Leadership's list of a period's changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EquityChangesView {
    pub period: String,
    pub recipient: String,
    pub gained: Vec<EquityRowView>,
    pub lost: Vec<EquityRowView>,
}

/// The program explained to an operator that became eligible (terms from the plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EquityGainedView {
    pub period: String,
    pub recipient: String,
    pub operator: EquityRowView,
    pub pool: String,
    pub vesting: String,
    pub cliff: String,
    pub valuation_cadence: String,
}

#[derive(Serialize)]
struct ChangesCtx<'a> {
    period: &'a str,
    gained: &'a [EquityRowView],
    lost: &'a [LostCtx<'a>],
}

#[derive(Serialize)]
struct LostCtx<'a> {
    #[serde(flatten)]
    row: &'a EquityRowView,
    /// The failed criteria in words.
    why: String,
}

/// `tenure,mrr` → "tenure under the minimum, MRR under the minimum".
fn criteria_in_words(failed: &str) -> String {
    failed
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| match c {
            "tenure" => "tenure below the minimum",
            "tier" => "no longer in the required tier",
            "mrr" => "MRR below the minimum",
            "retention" => "customer retention not above the minimum",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Leadership's email: who gained and who lost eligibility in the period. One per
/// period and address; a re-run with the same changes is not sent again.
pub fn equity_changes_email(v: &EquityChangesView) -> Result<OutgoingEmail, MailError> {
    let lost: Vec<LostCtx<'_>> = v
        .lost
        .iter()
        .map(|row| LostCtx {
            row,
            why: criteria_in_words(&row.failed),
        })
        .collect();
    let ctx = ChangesCtx {
        period: &v.period,
        gained: &v.gained,
        lost: &lost,
    };
    let (text, html) = render_pair(TEMPLATES, "equity_changes", &ctx)?;
    let who: Vec<String> = v
        .gained
        .iter()
        .map(|r| format!("+{}", r.operator_id))
        .chain(v.lost.iter().map(|r| format!("-{}", r.operator_id)))
        .collect();
    Ok(OutgoingEmail {
        dedup_key: dedup_key(
            "equity_changes",
            &[&v.period, v.recipient.trim(), &short_hash(&who.join(","))],
        ),
        kind: CHANGES_KIND.into(),
        audience: Audience::PeriodicInternal,
        period: Some(v.period.clone()),
        recipient: v.recipient.clone(),
        subject: format!(
            "Equity eligibility {}: {} gained, {} lost",
            v.period,
            plural(v.gained.len() as i64, "operator", "operators"),
            v.lost.len()
        ),
        text,
        html: Some(html),
        attachments: Vec::new(),
    })
}

#[derive(Serialize)]
struct GainedCtx<'a> {
    period: &'a str,
    op: &'a EquityRowView,
    pool: &'a str,
    vesting: &'a str,
    cliff: &'a str,
    valuation_cadence: &'a str,
}

/// The operator's email: it is now eligible for the Operator Equity Program, what that
/// means (pool, vesting, cliff, valuation cadence — the plan's terms) and why. One per
/// operator and period.
pub fn equity_gained_email(v: &EquityGainedView) -> Result<OutgoingEmail, MailError> {
    let ctx = GainedCtx {
        period: &v.period,
        op: &v.operator,
        pool: &v.pool,
        vesting: &v.vesting,
        cliff: &v.cliff,
        valuation_cadence: &v.valuation_cadence,
    };
    let (text, html) = render_pair(TEMPLATES, "equity_gained", &ctx)?;
    Ok(OutgoingEmail {
        dedup_key: dedup_key("equity_gained", &[&v.period, &v.operator.operator_id]),
        kind: GAINED_KIND.into(),
        audience: Audience::Operator,
        period: Some(v.period.clone()),
        recipient: v.recipient.clone(),
        subject: format!(
            "{} is eligible for the Candlefish Operator Equity Program ({})",
            v.operator.operator_id, v.period
        ),
        text,
        html: Some(html),
        attachments: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
