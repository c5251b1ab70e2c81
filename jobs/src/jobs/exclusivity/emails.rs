//! The exclusivity job's emails (R3.5): the breach notice to the operator (what
//! failed, by how much, what restores compliance) and the escalation to the
//! partner-success team — views in, [`OutgoingEmail`]s out, templates beside this file.

use serde::Serialize;

use crate::mail::render::{plural, render_pair};
use crate::mail::{Audience, MailError, OutgoingEmail, dedup_key};

/// `email_outbox.kind` of the breach notice to the operator.
pub const BREACH_KIND: &str = "exclusivity_breach";
/// `email_outbox.kind` of the escalation to partner success.
pub const ESCALATION_KIND: &str = "escalation";

/// This job's templates, by name; the extension picks the escaping (HTML or none).
const TEMPLATES: &[(&str, &str)] = &[
    (
        "exclusivity_breach.txt",
        include_str!("templates/exclusivity_breach.txt"),
    ),
    (
        "exclusivity_breach.html",
        include_str!("templates/exclusivity_breach.html"),
    ),
    ("escalation.txt", include_str!("templates/escalation.txt")),
    ("escalation.html", include_str!("templates/escalation.html")),
];

/// A territory exclusivity breach (R3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExclusivityView {
    pub period: String,
    pub operator_id: String,
    pub operator_name: String,
    /// The operator's address.
    pub recipient: String,
    pub territory_id: String,
    /// Sentences: what failed, by how much, what restores compliance.
    pub failures: Vec<String>,
    pub consecutive_breaches: i64,
    pub escalated: bool,
}

#[derive(Serialize)]
struct ExclusivityCtx<'a> {
    period: &'a str,
    operator_id: &'a str,
    operator_name: &'a str,
    operator_email: &'a str,
    territory_id: &'a str,
    failures: &'a [String],
    consecutive: String,
    consecutive_breaches: i64,
    escalated: bool,
}

fn exclusivity_ctx(v: &ExclusivityView) -> ExclusivityCtx<'_> {
    ExclusivityCtx {
        period: &v.period,
        operator_id: &v.operator_id,
        operator_name: &v.operator_name,
        operator_email: &v.recipient,
        territory_id: &v.territory_id,
        failures: &v.failures,
        consecutive: plural(v.consecutive_breaches, "month", "months"),
        consecutive_breaches: v.consecutive_breaches,
        escalated: v.escalated,
    }
}

/// Tells the operator its exclusive territory is in breach, what failed and what
/// restores compliance. One per operator, territory and period.
pub fn exclusivity_breach_email(v: &ExclusivityView) -> Result<OutgoingEmail, MailError> {
    let (text, html) = render_pair(TEMPLATES, "exclusivity_breach", &exclusivity_ctx(v))?;
    Ok(OutgoingEmail {
        dedup_key: dedup_key("exclusivity", &[&v.period, &v.operator_id, &v.territory_id]),
        kind: BREACH_KIND.into(),
        audience: Audience::Operator,
        period: Some(v.period.clone()),
        recipient: v.recipient.clone(),
        subject: format!(
            "Territory {} exclusivity requirements not met in {} — {}",
            v.territory_id, v.period, v.operator_id
        ),
        text,
        html: Some(html),
        attachments: Vec::new(),
    })
}

/// Hands an escalated breach to the partner-success team (`partner_success` is one
/// of their addresses). One per operator, territory, period and recipient: the key
/// ends in the recipient because the team is a list of addresses.
pub fn escalation_email(
    v: &ExclusivityView,
    partner_success: &str,
) -> Result<OutgoingEmail, MailError> {
    let (text, html) = render_pair(TEMPLATES, "escalation", &exclusivity_ctx(v))?;
    Ok(OutgoingEmail {
        dedup_key: dedup_key(
            "escalation",
            &[
                &v.period,
                &v.operator_id,
                &v.territory_id,
                partner_success.trim(),
            ],
        ),
        kind: ESCALATION_KIND.into(),
        audience: Audience::PeriodicInternal,
        period: Some(v.period.clone()),
        recipient: partner_success.to_owned(),
        subject: format!(
            "Escalation: {} ({}) territory {} in breach for {} ({})",
            v.operator_id,
            v.operator_name,
            v.territory_id,
            plural(v.consecutive_breaches, "month", "consecutive months"),
            v.period
        ),
        text,
        html: Some(html),
        attachments: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
