//! The payouts job's emails: each operator's statement (R1.7–R1.9, sent by `payouts
//! send`), the finance summary of a run (R1.10, R7) and tier changes (R2.3) — views
//! in, [`OutgoingEmail`]s out, with their templates beside this file.
//!
//! Templates own the wording and layout; this module owns every number: money is
//! formatted from integer minor units (never through a float) and handed to both
//! templates as the same strings, so the text and HTML parts cannot disagree.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::mail::render::{
    CSV_CONTENT_TYPE, Money, csv_row, format_bp, format_cents, money, money_table, plural,
    previous_period, render_pair, short_hash, tier_label,
};
use crate::mail::{Attachment, Audience, MailError, OutgoingEmail, dedup_key, kind};

/// `email_outbox.kind` of the finance summary.
pub const FINANCE_SUMMARY_KIND: &str = "finance_summary";
/// `email_outbox.kind` of a tier promotion or demotion.
pub const TIER_CHANGE_KIND: &str = "tier_change";

/// This job's templates, by name; the extension picks the escaping (HTML or none).
const TEMPLATES: &[(&str, &str)] = &[
    ("statement.txt", include_str!("templates/statement.txt")),
    ("statement.html", include_str!("templates/statement.html")),
    (
        "finance_summary.txt",
        include_str!("templates/finance_summary.txt"),
    ),
    (
        "finance_summary.html",
        include_str!("templates/finance_summary.html"),
    ),
    ("tier_change.txt", include_str!("templates/tier_change.txt")),
    (
        "tier_change.html",
        include_str!("templates/tier_change.html"),
    ),
];

#[derive(Serialize)]
struct StatementCtx<'a> {
    period: &'a str,
    previous_period: String,
    operator_id: &'a str,
    operator_name: &'a str,
    currency: &'a str,
    phase: &'a str,
    tier: String,
    statement_on: &'a str,
    due_on: &'a str,
    revision: i64,
    is_revision: bool,
    m: BTreeMap<&'static str, Money>,
    /// The operator's share of the collections, per revenue type and share.
    shares: Vec<ShareCtx>,
    /// Column heads of `shares` for the plain-text part, aligned with the figures.
    shares_header: String,
    /// The clawback lines, each with its refund split between the two parties.
    clawback_lines: Vec<ClawbackCtx>,
    clawbacks_unlisted: usize,
    lines: usize,
    collections: usize,
    clawbacks: usize,
    csv_filename: String,
}

/// Collections of one revenue type at one operator share.
#[derive(Serialize)]
struct ShareCtx {
    /// "Software at 70 %", padded for the plain-text column.
    label: String,
    collected: Money,
    operator: Money,
    candlefish: Money,
}

/// One clawback line (R1.6): the refund and each party's part of it.
#[derive(Serialize)]
struct ClawbackCtx {
    invoice_id: String,
    line_no: i64,
    refund_id: String,
    revenue_type: String,
    collected_period: String,
    /// The operator share of the original collection, e.g. "65 %".
    share: String,
    /// "Your part at 65 %", padded for the plain-text column.
    operator_label: String,
    refunded: Money,
    operator: Money,
    candlefish: Money,
}

#[derive(Serialize)]
struct CurrencyCtx<'a> {
    currency: &'a str,
    m: BTreeMap<&'static str, Money>,
    balanced: bool,
}

#[derive(Serialize)]
struct ExceptionCtx<'a> {
    kind: &'a str,
    invoice_id: &'a str,
    line_no: String,
    customer_id: &'a str,
    detail: &'a str,
}

#[derive(Serialize)]
struct FinanceCtx<'a> {
    period: &'a str,
    statements: usize,
    operators_payable: usize,
    control_ok: bool,
    currencies: Vec<CurrencyCtx<'a>>,
    exceptions_total: usize,
    exception_kinds: Vec<(String, usize)>,
    exceptions: Vec<ExceptionCtx<'a>>,
    exceptions_unlisted: usize,
    statements_csv: Option<String>,
    exceptions_csv: Option<String>,
    quarantine: &'a [QuarantineView],
    quarantined_total: u64,
}

#[derive(Serialize)]
struct TierCtx<'a> {
    period: &'a str,
    operator_id: &'a str,
    operator_name: &'a str,
    previous_tier: String,
    tier: String,
    has_tier: bool,
    promotion: bool,
    active_customers: String,
    benefits: &'a str,
}

/// The `kind` of a payout line (data contract: `payout_lines.kind`).
const COLLECTION: &str = "collection";

const CLAWBACK: &str = "clawback";

/// The most exceptions listed in the body of the finance summary; all of them are in
/// the attached CSV, and the body says how many were left out.
const MAX_LISTED_EXCEPTIONS: usize = 50;

/// One payout line of a statement, as in `payout_lines`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLineView {
    pub invoice_id: String,
    pub line_no: i64,
    pub refund_id: Option<String>,
    pub revenue_type: String,
    /// `collection` or `clawback`.
    pub kind: String,
    pub amount_cents: i64,
    pub operator_bp: i64,
    pub operator_cents: i64,
    pub candlefish_cents: i64,
    /// The period in which the line was collected (for a clawback, the original one).
    pub collected_period: String,
}

/// One operator's statement for a period and currency (R1.7, R1.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementView {
    pub period: String,
    pub operator_id: String,
    pub operator_name: String,
    pub recipient: String,
    pub currency: String,
    pub phase: String,
    pub tier: String,
    pub software_cents: i64,
    pub implementation_cents: i64,
    pub support_cents: i64,
    pub operator_share_cents: i64,
    pub candlefish_share_cents: i64,
    pub clawback_cents: i64,
    pub carried_in_cents: i64,
    pub payable_cents: i64,
    pub carried_out_cents: i64,
    pub statement_on: String,
    pub due_on: String,
    /// 1 for the first version; a higher number marks a revision (R1.9).
    pub revision: i64,
    pub lines: Vec<StatementLineView>,
}

/// The finance team's summary of a payout run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinanceSummaryView {
    pub period: String,
    pub recipient: String,
    pub currencies: Vec<CurrencyTotalsView>,
    pub statements: usize,
    pub operators_payable: usize,
    pub exceptions: Vec<ExceptionView>,
    pub control_ok: bool,
    /// Rows read and quarantined per dataset of the run's snapshot (issue 9 item 10):
    /// always shown, so a dataset that lost its rows cannot go unnoticed.
    pub quarantine: Vec<QuarantineView>,
}

/// One dataset of the run's snapshot in the finance summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineView {
    pub dataset: String,
    pub rows_in: u64,
    pub rows_quarantined: u64,
}

/// Per-currency totals of a payout run (R1.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyTotalsView {
    pub currency: String,
    pub collected_cents: i64,
    /// Refunds paid out in the period, positive (the amount given back).
    pub refunds_cents: i64,
    pub operator_share_cents: i64,
    pub clawback_cents: i64,
    pub candlefish_share_cents: i64,
    pub carried_in_cents: i64,
    pub payable_cents: i64,
    pub carried_out_cents: i64,
    /// Σ amount_cents of the payout lines.
    pub lines_total_cents: i64,
}

/// One reconciliation exception (R7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionView {
    pub kind: String,
    pub invoice_id: Option<String>,
    pub line_no: Option<i64>,
    pub customer_id: Option<String>,
    pub detail: String,
}

/// A tier promotion or demotion (R2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierChangeView {
    pub period: String,
    pub operator_id: String,
    pub operator_name: String,
    pub recipient: String,
    pub previous_tier: String,
    pub tier: String,
    /// `promotion` or `demotion`.
    pub change: String,
    pub active_customers: i64,
    /// The new tier's benefits, e.g. "territory protection and co-marketing".
    pub benefits: String,
}

/// The payout lines of a statement as CSV, one row per line in the given order; the
/// header is the [`StatementLineView`] fields in declaration order and amounts are
/// integer minor units, so the columns add up exactly.
pub fn statement_lines_csv(lines: &[StatementLineView]) -> Vec<u8> {
    let mut out = String::new();
    csv_row(
        &mut out,
        &[
            "invoice_id",
            "line_no",
            "refund_id",
            "revenue_type",
            "kind",
            "amount_cents",
            "operator_bp",
            "operator_cents",
            "candlefish_cents",
            "collected_period",
        ],
    );
    for l in lines {
        csv_row(
            &mut out,
            &[
                &l.invoice_id,
                &l.line_no.to_string(),
                l.refund_id.as_deref().unwrap_or(""),
                &l.revenue_type,
                &l.kind,
                &l.amount_cents.to_string(),
                &l.operator_bp.to_string(),
                &l.operator_cents.to_string(),
                &l.candlefish_cents.to_string(),
                &l.collected_period,
            ],
        );
    }
    out.into_bytes()
}

/// Reconciliation exceptions as CSV (`kind,invoice_id,line_no,customer_id,detail`),
/// for the finance summary's attachment.
pub fn exceptions_csv(exceptions: &[ExceptionView]) -> Vec<u8> {
    let mut out = String::new();
    csv_row(
        &mut out,
        &["kind", "invoice_id", "line_no", "customer_id", "detail"],
    );
    for e in exceptions {
        csv_row(
            &mut out,
            &[
                &e.kind,
                e.invoice_id.as_deref().unwrap_or(""),
                &e.line_no.map(|n| n.to_string()).unwrap_or_default(),
                e.customer_id.as_deref().unwrap_or(""),
                &e.detail,
            ],
        );
    }
    out.into_bytes()
}

/// The most clawback lines itemised in a statement; all of them are in the attached
/// CSV and in the totals, and the email says how many it left out.
const MAX_LISTED_CLAWBACKS: usize = 20;

/// Plain-text width of a statement's labels, the space before the figures included.
const STATEMENT_LABEL_WIDTH: usize = 24;

/// Revenue types in the order of the statement (R1.3), unknown ones after them.
fn revenue_type_rank(t: &str) -> usize {
    opnet_pipelines::contract::REVENUE_TYPES
        .iter()
        .position(|r| *r == t)
        .unwrap_or(opnet_pipelines::contract::REVENUE_TYPES.len())
}

/// `text` padded to `width` characters, always followed by at least one space.
fn label(text: &str, width: usize) -> String {
    format!("{text:<w$} ", w = width.saturating_sub(1))
}

/// "Software" for `software`.
fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The operator's statement email, with its payout lines attached as CSV.
///
/// It shows the arithmetic of R1.7 so that the operator can check it without a
/// calculator: what was collected, how each revenue type was shared (the two parts
/// add up to what was collected), each clawback line with its refund split between
/// the two parties, the carried balance and what is payable; and why the Candlefish
/// share is not simply collected minus the operator share (it includes Candlefish's
/// part of the clawbacks).
///
/// Sent to the operator only (data contract). The dedup key includes the revision,
/// so an approved statement goes out once and a revision goes out as a new email.
pub fn statement_email(v: &StatementView) -> Result<OutgoingEmail, MailError> {
    let cur = v.currency.as_str();
    let csv_filename = format!(
        "payout_lines_{}_{}_{}.csv",
        v.operator_id, v.period, v.currency
    );
    let groups = collection_groups(&v.lines);
    let claw: Vec<&StatementLineView> = v.lines.iter().filter(|l| l.kind == CLAWBACK).collect();
    let listed = &claw[..claw.len().min(MAX_LISTED_CLAWBACKS)];
    let named = statement_figures(v);
    let width = statement_figure_width(&named, &groups, listed, cur);
    let m: BTreeMap<&'static str, Money> = named
        .iter()
        .map(|&(name, cents)| (name, money(cents, cur, width)))
        .collect();
    let ctx = StatementCtx {
        period: &v.period,
        previous_period: previous_period(&v.period).unwrap_or_else(|| "the previous period".into()),
        operator_id: &v.operator_id,
        operator_name: &v.operator_name,
        currency: cur,
        phase: &v.phase,
        tier: tier_label(&v.tier),
        statement_on: &v.statement_on,
        due_on: &v.due_on,
        revision: v.revision,
        is_revision: v.revision > 1,
        m,
        shares: share_rows(groups, cur, width),
        shares_header: format!(
            "{:STATEMENT_LABEL_WIDTH$}{:>width$}  {:>width$}  {:>width$}",
            "", "Yours", "Candlefish", "Collected"
        ),
        clawback_lines: clawback_rows(listed, cur, width),
        clawbacks_unlisted: claw.len() - listed.len(),
        lines: v.lines.len(),
        collections: v.lines.len() - claw.len(),
        clawbacks: claw.len(),
        csv_filename: csv_filename.clone(),
    };
    let (text, html) = render_pair(TEMPLATES, "statement", &ctx)?;
    let mut subject = format!(
        "Candlefish payout statement {} — {} ({})",
        v.period, v.operator_id, v.currency
    );
    if v.revision > 1 {
        subject.push_str(&format!(" — revision {}", v.revision));
    }
    Ok(OutgoingEmail {
        dedup_key: dedup_key(
            "statement",
            &[
                &v.period,
                &v.operator_id,
                &v.currency,
                &format!("r{}", v.revision),
            ],
        ),
        kind: kind::STATEMENT.into(),
        audience: Audience::Operator,
        period: Some(v.period.clone()),
        recipient: v.recipient.clone(),
        subject,
        text,
        html: Some(html),
        attachments: vec![Attachment {
            filename: csv_filename,
            content_type: CSV_CONTENT_TYPE.into(),
            bytes: statement_lines_csv(&v.lines),
        }],
    })
}

/// Collections of one revenue type at one operator share, keyed by (the type's rank
/// in the statement, the type, the share in basis points): (collected, operator part).
type CollectionGroups = BTreeMap<(usize, String, i64), (i64, i64)>;

/// The collection lines of a statement summed per revenue type and share.
fn collection_groups(lines: &[StatementLineView]) -> CollectionGroups {
    let mut groups = CollectionGroups::new();
    for l in lines.iter().filter(|l| l.kind == COLLECTION) {
        let g = groups
            .entry((
                revenue_type_rank(&l.revenue_type),
                l.revenue_type.clone(),
                l.operator_bp,
            ))
            .or_default();
        g.0 = g.0.saturating_add(l.amount_cents);
        g.1 = g.1.saturating_add(l.operator_cents);
    }
    groups
}

/// Every named figure of a statement (the templates' `m.<name>`), the ones R1.7
/// derives from the stored totals included.
fn statement_figures(v: &StatementView) -> [(&'static str, i64); 14] {
    let balance = v
        .operator_share_cents
        .saturating_add(v.clawback_cents)
        .saturating_add(v.carried_in_cents);
    let collected = v
        .software_cents
        .saturating_add(v.implementation_cents)
        .saturating_add(v.support_cents);
    // R0.4 splits every collection line exactly, so Candlefish's part of the
    // collections is what the operator's share leaves; the rest of the Candlefish
    // share is its part of the clawbacks (R1.7).
    let candlefish_collections = collected.saturating_sub(v.operator_share_cents);
    let candlefish_clawbacks = v
        .candlefish_share_cents
        .saturating_sub(candlefish_collections);
    let refunded = v.clawback_cents.saturating_add(candlefish_clawbacks);
    [
        ("software", v.software_cents),
        ("implementation", v.implementation_cents),
        ("support", v.support_cents),
        ("collected", collected),
        ("operator_share", v.operator_share_cents),
        ("clawback", v.clawback_cents),
        ("carried_in", v.carried_in_cents),
        ("balance", balance),
        ("payable", v.payable_cents),
        ("carried_out", v.carried_out_cents),
        ("candlefish_share", v.candlefish_share_cents),
        ("candlefish_collections", candlefish_collections),
        ("candlefish_clawbacks", candlefish_clawbacks),
        ("refunded", refunded),
    ]
}

/// The one column width of every figure of the email (named figures, share rows and
/// listed clawback lines), so the text part lines up.
fn statement_figure_width(
    named: &[(&'static str, i64)],
    groups: &CollectionGroups,
    listed: &[&StatementLineView],
    cur: &str,
) -> usize {
    named
        .iter()
        .map(|(_, c)| *c)
        .chain(
            groups
                .values()
                .flat_map(|(a, o)| [*a, *o, a.saturating_sub(*o)]),
        )
        .chain(
            listed
                .iter()
                .flat_map(|l| [l.amount_cents, l.operator_cents, l.candlefish_cents]),
        )
        .map(|c| format_cents(c, cur).chars().count())
        .max()
        .unwrap_or(0)
}

/// The statement's share rows: per revenue type and share, the operator's and
/// Candlefish's parts of what was collected.
fn share_rows(groups: CollectionGroups, cur: &str, width: usize) -> Vec<ShareCtx> {
    groups
        .into_iter()
        .map(|((_, revenue_type, bp), (amount, operator))| ShareCtx {
            label: label(
                &format!("{} at {}", capitalised(&revenue_type), format_bp(bp)),
                STATEMENT_LABEL_WIDTH,
            ),
            collected: money(amount, cur, width),
            operator: money(operator, cur, width),
            candlefish: money(amount.saturating_sub(operator), cur, width),
        })
        .collect()
}

/// The itemised clawback lines (R1.6), each refund split between the two parties.
fn clawback_rows(listed: &[&StatementLineView], cur: &str, width: usize) -> Vec<ClawbackCtx> {
    listed
        .iter()
        .map(|l| ClawbackCtx {
            invoice_id: l.invoice_id.clone(),
            line_no: l.line_no,
            refund_id: l.refund_id.clone().unwrap_or_default(),
            revenue_type: l.revenue_type.clone(),
            collected_period: l.collected_period.clone(),
            share: format_bp(l.operator_bp),
            // Two columns less: these rows are indented under their line.
            operator_label: label(
                &format!("Your part at {}", format_bp(l.operator_bp)),
                STATEMENT_LABEL_WIDTH - 2,
            ),
            refunded: money(l.amount_cents, cur, width),
            operator: money(l.operator_cents, cur, width),
            candlefish: money(l.candlefish_cents, cur, width),
        })
        .collect()
}

/// The finance team's summary of a payout run, with the statements and the
/// exceptions attached as CSV (each left out when its bytes are empty).
///
/// Dedup key: `finance_summary:{period}:` + a hash of the rendered text and the
/// exception list, so a re-run with identical results is not resent while changed
/// results are. The control line per currency is recomputed here from the totals
/// (R1.10); `control_ok` is the run's own verdict, shown alongside.
pub fn finance_summary_email(
    v: &FinanceSummaryView,
    statements_csv: Vec<u8>,
    exceptions_csv: Vec<u8>,
) -> Result<OutgoingEmail, MailError> {
    let currencies: Vec<CurrencyCtx<'_>> = v.currencies.iter().map(currency_ctx).collect();
    let listed: Vec<ExceptionCtx<'_>> = v
        .exceptions
        .iter()
        .take(MAX_LISTED_EXCEPTIONS)
        .map(|e| ExceptionCtx {
            kind: &e.kind,
            invoice_id: e.invoice_id.as_deref().unwrap_or(""),
            line_no: e.line_no.map(|n| n.to_string()).unwrap_or_default(),
            customer_id: e.customer_id.as_deref().unwrap_or(""),
            detail: &e.detail,
        })
        .collect();
    let statements_name = format!("payout_statements_{}.csv", v.period);
    let exceptions_name = format!("reconciliation_exceptions_{}.csv", v.period);
    let ctx = FinanceCtx {
        period: &v.period,
        statements: v.statements,
        operators_payable: v.operators_payable,
        control_ok: v.control_ok && currencies.iter().all(|c| c.balanced),
        currencies,
        exceptions_total: v.exceptions.len(),
        exception_kinds: exception_kinds(&v.exceptions),
        exceptions_unlisted: v.exceptions.len().saturating_sub(listed.len()),
        exceptions: listed,
        statements_csv: (!statements_csv.is_empty()).then(|| statements_name.clone()),
        exceptions_csv: (!exceptions_csv.is_empty()).then(|| exceptions_name.clone()),
        quarantine: &v.quarantine,
        quarantined_total: v.quarantine.iter().map(|q| q.rows_quarantined).sum(),
    };
    let (text, html) = render_pair(TEMPLATES, "finance_summary", &ctx)?;
    let fingerprint = summary_fingerprint(v, &text);
    let attachments = csv_attachments([
        (statements_name, statements_csv),
        (exceptions_name, exceptions_csv),
    ]);
    let status = if ctx.control_ok {
        ""
    } else {
        " — CONTROL TOTALS FAILED"
    };
    Ok(OutgoingEmail {
        dedup_key: dedup_key("finance_summary", &[&v.period, &short_hash(&fingerprint)]),
        kind: FINANCE_SUMMARY_KIND.into(),
        audience: Audience::PeriodicInternal,
        period: Some(v.period.clone()),
        recipient: v.recipient.clone(),
        subject: format!(
            "Candlefish payouts {} — {}, {} payable, {}{status}",
            v.period,
            plural(v.statements as i64, "statement", "statements"),
            v.operators_payable,
            plural(v.exceptions.len() as i64, "exception", "exceptions"),
        ),
        text,
        html: Some(html),
        attachments,
    })
}

/// One currency's totals for the summary, with its control line recomputed from them
/// (R1.10): the shares add up to what was collected net of refunds and to the lines.
fn currency_ctx(c: &CurrencyTotalsView) -> CurrencyCtx<'_> {
    let shares = c
        .operator_share_cents
        .saturating_add(c.clawback_cents)
        .saturating_add(c.candlefish_share_cents);
    let net = c.collected_cents.saturating_sub(c.refunds_cents);
    CurrencyCtx {
        currency: &c.currency,
        m: money_table(
            &c.currency,
            [
                ("collected", c.collected_cents),
                ("refunds", c.refunds_cents),
                ("net", net),
                ("operator_share", c.operator_share_cents),
                ("clawback", c.clawback_cents),
                ("candlefish_share", c.candlefish_share_cents),
                ("shares", shares),
                ("lines_total", c.lines_total_cents),
                ("carried_in", c.carried_in_cents),
                ("payable", c.payable_cents),
                ("carried_out", c.carried_out_cents),
            ],
        ),
        balanced: shares == net && shares == c.lines_total_cents,
    }
}

/// How many exceptions of each kind, by kind.
fn exception_kinds(exceptions: &[ExceptionView]) -> Vec<(String, usize)> {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for e in exceptions {
        *kinds.entry(e.kind.as_str()).or_default() += 1;
    }
    kinds.into_iter().map(|(k, n)| (k.to_owned(), n)).collect()
}

/// What the summary's dedup key hashes: the recipient, the rendered text and every
/// exception (sorted).
fn summary_fingerprint(v: &FinanceSummaryView, text: &str) -> String {
    // The text lists at most MAX_LISTED_EXCEPTIONS exceptions, so the full list is
    // hashed too: a changed exception beyond the cut still counts as a change. The
    // recipient is hashed as well: finance is a list of addresses, and each of them
    // must get its own copy rather than lose it to the first one's dedup key.
    let mut fingerprint = format!("{}\n{text}", v.recipient.trim());
    let mut exceptions_sorted: Vec<String> = v
        .exceptions
        .iter()
        .map(|e| {
            format!(
                "{}\t{}\t{}\t{}\t{}",
                e.kind,
                e.invoice_id.as_deref().unwrap_or(""),
                e.line_no.map(|n| n.to_string()).unwrap_or_default(),
                e.customer_id.as_deref().unwrap_or(""),
                e.detail
            )
        })
        .collect();
    exceptions_sorted.sort();
    for e in exceptions_sorted {
        fingerprint.push('\n');
        fingerprint.push_str(&e);
    }
    fingerprint
}

/// The (file name, CSV bytes) pairs as attachments, in order, leaving out empty ones.
fn csv_attachments<const N: usize>(files: [(String, Vec<u8>); N]) -> Vec<Attachment> {
    files
        .into_iter()
        .filter(|(_, bytes)| !bytes.is_empty())
        .map(|(filename, bytes)| Attachment {
            filename,
            content_type: CSV_CONTENT_TYPE.into(),
            bytes,
        })
        .collect()
}

/// Tells an operator about its promotion or demotion, naming the new tier and its
/// benefits. One per operator and period.
pub fn tier_change_email(v: &TierChangeView) -> Result<OutgoingEmail, MailError> {
    let promotion = v.change == "promotion";
    let ctx = TierCtx {
        period: &v.period,
        operator_id: &v.operator_id,
        operator_name: &v.operator_name,
        previous_tier: tier_label(&v.previous_tier),
        tier: tier_label(&v.tier),
        has_tier: !matches!(v.tier.trim(), "" | "none"),
        promotion,
        active_customers: plural(v.active_customers, "active customer", "active customers"),
        benefits: v.benefits.trim(),
    };
    let (text, html) = render_pair(TEMPLATES, "tier_change", &ctx)?;
    let subject = if promotion {
        format!(
            "Congratulations: {} is now a {} operator ({})",
            v.operator_id, ctx.tier, v.period
        )
    } else if ctx.has_tier {
        format!(
            "Your Candlefish tier for {}: {} ({})",
            v.period, ctx.tier, v.operator_id
        )
    } else {
        format!(
            "Your Candlefish tier for {}: no tier ({})",
            v.period, v.operator_id
        )
    };
    Ok(OutgoingEmail {
        dedup_key: dedup_key("tier_change", &[&v.period, &v.operator_id]),
        kind: TIER_CHANGE_KIND.into(),
        audience: Audience::Operator,
        period: Some(v.period.clone()),
        recipient: v.recipient.clone(),
        subject,
        text,
        html: Some(html),
        attachments: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
