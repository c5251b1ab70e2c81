//! The mails of a lead run (R8.3): one to each operator listing its new leads — and
//! only its own — with the response-time target (R4.5), and one to each ops address
//! listing the leads the run left without an operator (`no_capacity`) and any
//! assignment whose operator could not be mailed. Views in, [`OutgoingEmail`]s out,
//! templates beside this file.
//!
//! The data contract's crm/leads has no contact columns (name, phone, email of the
//! prospect), so a mail lists what the CRM row does have — id, source, vertical,
//! metro, when it came in — and the operator opens the lead in the CRM by its id.

use serde::Serialize;

use super::config::OpsMail;

use crate::mail::render::{plural, render_pair};
use crate::mail::{Audience, MailError, OutgoingEmail, dedup_key};

/// `email_outbox.kind` of an operator's new leads.
pub const OPERATOR_KIND: &str = "lead_assignment";
/// `email_outbox.kind` of the ops mail of a run.
pub const OPS_KIND: &str = "lead_no_capacity";

/// This task's templates, by name; the extension picks the escaping (HTML or none).
const TEMPLATES: &[(&str, &str)] = &[
    (
        "lead_assignment.txt",
        include_str!("templates/lead_assignment.txt"),
    ),
    (
        "lead_assignment.html",
        include_str!("templates/lead_assignment.html"),
    ),
    (
        "lead_no_capacity.txt",
        include_str!("templates/lead_no_capacity.txt"),
    ),
    (
        "lead_no_capacity.html",
        include_str!("templates/lead_no_capacity.html"),
    ),
];

/// One lead as a mail lists it; every field already worded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeadLine {
    pub lead_id: String,
    pub source: String,
    pub vertical: String,
    pub metro: String,
    /// When the lead came in, `2025-06-15 09:12 UTC`.
    pub created_at: String,
    /// `created_at` plus the response-time target, same format.
    pub respond_by: String,
    /// Why this operator got it, e.g. "your exclusive territory in Austin"; empty for
    /// a lead without an operator.
    pub why: String,
    /// The operator it went to (ops mail of an unmailed assignment), else empty.
    pub operator_id: String,
}

/// One operator's new leads of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorLeadsView {
    pub run_id: String,
    /// T, `2025-06-15 12:00 UTC`.
    pub assigned_at: String,
    /// T's month, `email_outbox.period`.
    pub period: String,
    pub operator_id: String,
    pub operator_name: String,
    pub recipient: String,
    /// R4.5's target, worded: "24 hours".
    pub response_target: String,
    pub leads: Vec<LeadLine>,
}

#[derive(Serialize)]
struct OperatorCtx<'a> {
    operator_id: &'a str,
    operator_name: &'a str,
    assigned_at: &'a str,
    response_target: &'a str,
    count: String,
    leads: &'a [LeadLine],
}

/// The operator's one mail of the run, listing its new leads (R8.3). Key: run,
/// operator and recipient — two operators sharing an address each get their own.
pub fn operator_leads_email(v: &OperatorLeadsView) -> Result<OutgoingEmail, MailError> {
    let count = plural(v.leads.len() as i64, "new lead", "new leads");
    let ctx = OperatorCtx {
        operator_id: &v.operator_id,
        operator_name: &v.operator_name,
        assigned_at: &v.assigned_at,
        response_target: &v.response_target,
        count: count.clone(),
        leads: &v.leads,
    };
    let (text, html) = render_pair(TEMPLATES, "lead_assignment", &ctx)?;
    Ok(OutgoingEmail {
        dedup_key: dedup_key(
            OPERATOR_KIND,
            &[&v.run_id, &v.operator_id, v.recipient.trim()],
        ),
        kind: OPERATOR_KIND.into(),
        audience: Audience::Operator,
        period: Some(v.period.clone()),
        recipient: v.recipient.clone(),
        subject: format!(
            "Candlefish: {count} for {} — please contact within {}",
            v.operator_id, v.response_target
        ),
        text,
        html: Some(html),
        attachments: Vec::new(),
    })
}

/// What ops hears about one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsLeadsView {
    pub run_id: String,
    pub assigned_at: String,
    pub period: String,
    pub recipient: String,
    /// Leads this run left without an operator (first tried now).
    pub no_capacity: Vec<LeadLine>,
    /// Leads an earlier run left without an operator that this run could not place
    /// either.
    pub still_waiting: Vec<LeadLine>,
    /// Leads assigned to an operator without a single valid address in crm/operators.
    pub unmailed: Vec<LeadLine>,
    /// `leads.ops_mail`: mail when leads are still waiting even if none is new.
    pub ops_mail: OpsMail,
}

#[derive(Serialize)]
struct OpsCtx<'a> {
    run_id: &'a str,
    assigned_at: &'a str,
    no_capacity: &'a [LeadLine],
    still_waiting: &'a [LeadLine],
    unmailed: &'a [LeadLine],
}

/// The ops mail of a run (R8.3: "ops gets one email per run listing them"), for one
/// ops address, listing every lead the run left without an operator — new ones first.
/// `None` when the run left no lead without an operator and every assignment could be
/// mailed (nothing to act on), or, with `ops_mail = "when_new"`, when every waiting
/// lead was already reported by an earlier run.
pub fn ops_leads_email(v: &OpsLeadsView) -> Result<Option<OutgoingEmail>, MailError> {
    let news = !v.no_capacity.is_empty() || !v.unmailed.is_empty();
    let waiting = !v.still_waiting.is_empty() && v.ops_mail == OpsMail::EveryRun;
    if !news && !waiting {
        return Ok(None);
    }
    let ctx = OpsCtx {
        run_id: &v.run_id,
        assigned_at: &v.assigned_at,
        no_capacity: &v.no_capacity,
        still_waiting: &v.still_waiting,
        unmailed: &v.unmailed,
    };
    let (text, html) = render_pair(TEMPLATES, "lead_no_capacity", &ctx)?;
    let without = (v.no_capacity.len() + v.still_waiting.len()) as i64;
    let mut subject = format!(
        "opnet leads {}: {} without an operator with capacity ({} new)",
        v.assigned_at,
        plural(without, "lead", "leads"),
        v.no_capacity.len()
    );
    if !v.unmailed.is_empty() {
        subject.push_str(&format!(
            ", {} assigned to an operator without an address",
            plural(v.unmailed.len() as i64, "lead", "leads")
        ));
    }
    Ok(Some(OutgoingEmail {
        dedup_key: dedup_key(OPS_KIND, &[&v.run_id, v.recipient.trim()]),
        kind: OPS_KIND.into(),
        audience: Audience::Notice,
        period: Some(v.period.clone()),
        recipient: v.recipient.clone(),
        subject,
        text,
        html: Some(html),
        attachments: Vec::new(),
    }))
}

#[cfg(test)]
mod tests;
