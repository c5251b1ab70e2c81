//! The alerts job's email: one per operator and period listing every breached R4
//! metric with its value, the alert condition and the target — views in,
//! [`OutgoingEmail`]s out, with the templates beside this file.

use serde::Serialize;

use crate::mail::render::{plural, render_pair, short_hash};
use crate::mail::{Audience, MailError, OutgoingEmail, dedup_key};

/// `email_outbox.kind` of the alert email.
pub const KIND: &str = "alert";

/// This job's templates, by name; the extension picks the escaping (HTML or none).
const TEMPLATES: &[(&str, &str)] = &[
    ("alert.txt", include_str!("templates/alert.txt")),
    ("alert.html", include_str!("templates/alert.html")),
];

#[derive(Serialize)]
struct AlertCtx<'a> {
    period: &'a str,
    operator_id: &'a str,
    operator_name: &'a str,
    breaches: Vec<BreachCtx<'a>>,
}

#[derive(Serialize)]
struct BreachCtx<'a> {
    metric: &'a str,
    label: &'a str,
    definition: &'a str,
    value: &'a str,
    alert_when: &'a str,
    target: &'a str,
}

/// One breached metric, already worded by the caller from the plan in force (R4,
/// R0.5): what is wrong (the value against the alert condition, with its direction)
/// and what good looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricBreachView {
    /// The R4 id, e.g. `response_hours`.
    pub metric: String,
    /// A human name, e.g. "Lead response time".
    pub label: String,
    /// What the metric measures, e.g. "hours from a lead's creation to your first
    /// contact, leads of the month".
    pub definition: String,
    /// The operator's value with its unit, e.g. "30.5 hours on average".
    pub value: String,
    /// The alert condition with its direction, e.g. "above 24 hours on average".
    pub alert_when: String,
    /// What good looks like, e.g. "at most 24 hours on average".
    pub target: String,
    /// The breach's identity for the dedup key: the metric id and its figures as
    /// numbers (value, threshold), so that a change of wording never re-sends it.
    pub figures: String,
}

/// One operator's performance alerts for a period (R4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertView {
    pub period: String,
    pub operator_id: String,
    pub operator_name: String,
    pub recipient: String,
    pub breaches: Vec<MetricBreachView>,
}

/// One email per operator and period listing every breached metric (R4): for each,
/// what it measures, the operator's value, when it alerts (the threshold and its
/// direction) and the target.
///
/// The dedup key ends in a hash of the breaches' figures (metric ids, values and
/// thresholds as numbers, sorted), so the same operator, period and content is
/// never sent twice — whatever the wording — while a re-run whose breaches changed
/// sends the corrected list.
pub fn alert_email(v: &AlertView) -> Result<OutgoingEmail, MailError> {
    let ctx = AlertCtx {
        period: &v.period,
        operator_id: &v.operator_id,
        operator_name: &v.operator_name,
        breaches: v
            .breaches
            .iter()
            .map(|b| BreachCtx {
                metric: &b.metric,
                label: &b.label,
                definition: &b.definition,
                value: &b.value,
                alert_when: &b.alert_when,
                target: &b.target,
            })
            .collect(),
    };
    let (text, html) = render_pair(TEMPLATES, "alert", &ctx)?;
    let mut content: Vec<String> = v.breaches.iter().map(|b| b.figures.clone()).collect();
    content.sort();
    let n = v.breaches.len() as i64;
    Ok(OutgoingEmail {
        dedup_key: dedup_key(
            "alert",
            &[&v.period, &v.operator_id, &short_hash(&content.join("\n"))],
        ),
        kind: KIND.into(),
        audience: Audience::Operator,
        period: Some(v.period.clone()),
        recipient: v.recipient.clone(),
        subject: format!(
            "Candlefish performance alert {} — {}: {}",
            v.period,
            v.operator_id,
            plural(n, "metric needs attention", "metrics need attention")
        ),
        text,
        html: Some(html),
        attachments: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
