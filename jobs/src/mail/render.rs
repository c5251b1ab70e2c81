//! Renders the jobs' results into emails: views in, [`OutgoingEmail`]s out.
//!
//! Each kind of email has a plain-text and an HTML template under `jobs/templates/`,
//! embedded in the binary with `include_str!` so a deployed `opnet` needs no files
//! beside it. Templates own the wording and layout; this module owns every number:
//! money is formatted here from integer minor units (never through a float) and
//! handed to both templates as the same strings, so the text and HTML parts cannot
//! disagree. Dedup keys are chosen here too, following the rule each email serves.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Attachment, MailError, OutgoingEmail, kind};

/// The embedded templates, by name; the extension picks the escaping (HTML or none).
const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../../templates/layout.html")),
    (
        "statement.txt",
        include_str!("../../templates/statement.txt"),
    ),
    (
        "statement.html",
        include_str!("../../templates/statement.html"),
    ),
    (
        "finance_summary.txt",
        include_str!("../../templates/finance_summary.txt"),
    ),
    (
        "finance_summary.html",
        include_str!("../../templates/finance_summary.html"),
    ),
    (
        "tier_change.txt",
        include_str!("../../templates/tier_change.txt"),
    ),
    (
        "tier_change.html",
        include_str!("../../templates/tier_change.html"),
    ),
    ("alert.txt", include_str!("../../templates/alert.txt")),
    ("alert.html", include_str!("../../templates/alert.html")),
    (
        "exclusivity_breach.txt",
        include_str!("../../templates/exclusivity_breach.txt"),
    ),
    (
        "exclusivity_breach.html",
        include_str!("../../templates/exclusivity_breach.html"),
    ),
    (
        "escalation.txt",
        include_str!("../../templates/escalation.txt"),
    ),
    (
        "escalation.html",
        include_str!("../../templates/escalation.html"),
    ),
];

const CSV_CONTENT_TYPE: &str = "text/csv; charset=utf-8";

/// The `kind` of a payout line (data contract: `payout_lines.kind`).
const COLLECTION: &str = "collection";
const CLAWBACK: &str = "clawback";

/// The most exceptions listed in the body of the finance summary; all of them are in
/// the attached CSV, and the body says how many were left out.
const MAX_LISTED_EXCEPTIONS: usize = 50;

// ---------------------------------------------------------------------------
// Views: what the jobs hand over.
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Money.
// ---------------------------------------------------------------------------

/// Digits after the decimal point of a currency's minor unit (ISO 4217); 2 unless
/// the currency is one of the few with none or three.
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Formats minor units as `1,234.56 USD` (`-12.34 USD` when negative), with integer
/// arithmetic only. An empty `currency` gives the bare number (`1,234.56`).
pub fn format_cents(cents: i64, currency: &str) -> String {
    let digits = minor_digits(currency);
    // unsigned_abs: i64::MIN has no positive i64 counterpart.
    let abs = cents.unsigned_abs();
    let scale = 10u64.pow(digits);
    let units = (abs / scale).to_string();
    let mut grouped = String::with_capacity(units.len() + units.len() / 3);
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if cents < 0 { "-" } else { "" };
    let number = if digits == 0 {
        format!("{sign}{grouped}")
    } else {
        let frac = abs % scale;
        format!("{sign}{grouped}.{frac:0width$}", width = digits as usize)
    };
    if currency.is_empty() {
        number
    } else {
        format!("{number} {currency}")
    }
}

/// Basis points as an exact percentage (R0.3): `1250` → `12.5 %`, `7000` → `70 %`,
/// `1` → `0.01 %`. Integer arithmetic only: the one formatting of basis points for
/// every email and summary, so no message rounds a plan's share or threshold.
pub fn format_bp(bp: i64) -> String {
    let sign = if bp < 0 { "-" } else { "" };
    let abs = bp.unsigned_abs();
    let (whole, frac) = (abs / 100, abs % 100);
    if frac == 0 {
        format!("{sign}{whole} %")
    } else if frac % 10 == 0 {
        format!("{sign}{whole}.{} %", frac / 10)
    } else {
        format!("{sign}{whole}.{frac:02} %")
    }
}

/// A money figure as the templates see it.
#[derive(Debug, Clone, Serialize)]
struct Money {
    /// `1,234.56 USD`.
    text: String,
    /// `text` right-aligned to the width of the other figures of the same table,
    /// for the plain-text part.
    pad: String,
    negative: bool,
    zero: bool,
}

/// One money figure right-aligned to `width` characters in its plain-text form.
fn money(cents: i64, currency: &str, width: usize) -> Money {
    let text = format_cents(cents, currency);
    Money {
        pad: format!("{text:>width$}"),
        text,
        negative: cents < 0,
        zero: cents == 0,
    }
}

/// Formats a set of named figures together so their plain-text forms line up.
fn money_table<const N: usize>(
    currency: &str,
    figures: [(&'static str, i64); N],
) -> BTreeMap<&'static str, Money> {
    let texts: Vec<(&'static str, i64, String)> = figures
        .iter()
        .map(|&(name, cents)| (name, cents, format_cents(cents, currency)))
        .collect();
    let width = texts
        .iter()
        .map(|(_, _, t)| t.chars().count())
        .max()
        .unwrap_or(0);
    texts
        .into_iter()
        .map(|(name, cents, text)| {
            let pad = format!("{text:>width$}");
            (
                name,
                Money {
                    text,
                    pad,
                    negative: cents < 0,
                    zero: cents == 0,
                },
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Templates.
// ---------------------------------------------------------------------------

fn environment() -> Result<Environment<'static>, MailError> {
    let mut env = Environment::new();
    // Block tags on their own line leave no trace, so plain-text templates can use
    // `{% if %}` lines without stray blank lines or indentation.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    // A misspelt variable must fail loudly (and in the tests), not render as "".
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .map_err(|source| MailError::Template {
                template: (*name).to_owned(),
                source,
            })?;
    }
    Ok(env)
}

fn render<S: Serialize>(env: &Environment<'_>, name: &str, ctx: &S) -> Result<String, MailError> {
    let err = |source| MailError::Template {
        template: name.to_owned(),
        source,
    };
    env.get_template(name)
        .map_err(err)?
        .render(ctx)
        .map_err(err)
}

/// Renders `NAME.txt` and `NAME.html` with the same context.
fn render_pair<S: Serialize>(name: &str, ctx: &S) -> Result<(String, String), MailError> {
    let env = environment()?;
    let text = render(&env, &format!("{name}.txt"), ctx)?;
    let html = render(&env, &format!("{name}.html"), ctx)?;
    Ok((text, html))
}

/// First 16 hex digits of the SHA-256 of `s`: a content fingerprint for dedup keys.
fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    hex::encode(digest)[..16].to_owned()
}

/// `YYYY-MM` of the month before `period`, if `period` is one.
fn previous_period(period: &str) -> Option<String> {
    let (y, m) = period.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    if !(1..=12).contains(&m) || period.len() != 7 {
        return None;
    }
    Some(if m == 1 {
        format!("{:04}-12", y - 1)
    } else {
        format!("{y:04}-{:02}", m - 1)
    })
}

/// "Gold" for `gold`, "no tier" for `none`.
fn tier_label(tier: &str) -> String {
    match tier.trim() {
        "" | "none" => "no tier".to_owned(),
        t => {
            let mut chars = t.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        }
    }
}

fn plural(n: i64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

// ---------------------------------------------------------------------------
// CSV.
// ---------------------------------------------------------------------------

/// RFC 4180 quoting: a field with a comma, quote or line break is quoted.
fn csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

fn csv_row(out: &mut String, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    out.push('\n');
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

// ---------------------------------------------------------------------------
// Statement (R1.7–R1.9).
// ---------------------------------------------------------------------------

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
    let csv_filename = format!(
        "payout_lines_{}_{}_{}.csv",
        v.operator_id, v.period, v.currency
    );

    // Collections per (revenue type, share): amount and operator part.
    let mut groups: BTreeMap<(usize, String, i64), (i64, i64)> = BTreeMap::new();
    for l in v.lines.iter().filter(|l| l.kind == COLLECTION) {
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
    let claw: Vec<&StatementLineView> = v.lines.iter().filter(|l| l.kind == CLAWBACK).collect();
    let listed = &claw[..claw.len().min(MAX_LISTED_CLAWBACKS)];

    let named = [
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
    ];
    // Every figure of the email shares one column width, so the text part lines up.
    let width = named
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
        .unwrap_or(0);
    let m: BTreeMap<&'static str, Money> = named
        .iter()
        .map(|&(name, cents)| (name, money(cents, cur, width)))
        .collect();
    let shares = groups
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
        .collect();
    let clawback_lines = listed
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
        shares,
        shares_header: format!(
            "{:STATEMENT_LABEL_WIDTH$}{:>width$}  {:>width$}  {:>width$}",
            "", "Yours", "Candlefish", "Collected"
        ),
        clawback_lines,
        clawbacks_unlisted: claw.len() - listed.len(),
        lines: v.lines.len(),
        collections: v.lines.len() - claw.len(),
        clawbacks: claw.len(),
        csv_filename: csv_filename.clone(),
    };
    let (text, html) = render_pair("statement", &ctx)?;
    let mut subject = format!(
        "Candlefish payout statement {} — {} ({})",
        v.period, v.operator_id, v.currency
    );
    if v.revision > 1 {
        subject.push_str(&format!(" — revision {}", v.revision));
    }
    Ok(OutgoingEmail {
        dedup_key: super::dedup_key(
            "statement",
            &[
                &v.period,
                &v.operator_id,
                &v.currency,
                &format!("r{}", v.revision),
            ],
        ),
        kind: kind::STATEMENT.into(),
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

// ---------------------------------------------------------------------------
// Finance summary (R1.10, R7).
// ---------------------------------------------------------------------------

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
    let currencies: Vec<CurrencyCtx<'_>> = v
        .currencies
        .iter()
        .map(|c| {
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
        })
        .collect();

    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &v.exceptions {
        *kinds.entry(e.kind.as_str()).or_default() += 1;
    }
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
        exception_kinds: kinds.into_iter().map(|(k, n)| (k.to_owned(), n)).collect(),
        exceptions_unlisted: v.exceptions.len().saturating_sub(listed.len()),
        exceptions: listed,
        statements_csv: (!statements_csv.is_empty()).then(|| statements_name.clone()),
        exceptions_csv: (!exceptions_csv.is_empty()).then(|| exceptions_name.clone()),
        quarantine: &v.quarantine,
        quarantined_total: v.quarantine.iter().map(|q| q.rows_quarantined).sum(),
    };
    let (text, html) = render_pair("finance_summary", &ctx)?;

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

    let mut attachments = Vec::new();
    if !statements_csv.is_empty() {
        attachments.push(Attachment {
            filename: statements_name,
            content_type: CSV_CONTENT_TYPE.into(),
            bytes: statements_csv,
        });
    }
    if !exceptions_csv.is_empty() {
        attachments.push(Attachment {
            filename: exceptions_name,
            content_type: CSV_CONTENT_TYPE.into(),
            bytes: exceptions_csv,
        });
    }
    let status = if ctx.control_ok {
        ""
    } else {
        " — CONTROL TOTALS FAILED"
    };
    Ok(OutgoingEmail {
        dedup_key: super::dedup_key("finance_summary", &[&v.period, &short_hash(&fingerprint)]),
        kind: kind::FINANCE_SUMMARY.into(),
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

// ---------------------------------------------------------------------------
// Tier change (R2.3).
// ---------------------------------------------------------------------------

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
    let (text, html) = render_pair("tier_change", &ctx)?;
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
        dedup_key: super::dedup_key("tier_change", &[&v.period, &v.operator_id]),
        kind: kind::TIER_CHANGE.into(),
        period: Some(v.period.clone()),
        recipient: v.recipient.clone(),
        subject,
        text,
        html: Some(html),
        attachments: Vec::new(),
    })
}

// ---------------------------------------------------------------------------
// Performance alerts (R4).
// ---------------------------------------------------------------------------

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
    let (text, html) = render_pair("alert", &ctx)?;
    let mut content: Vec<String> = v.breaches.iter().map(|b| b.figures.clone()).collect();
    content.sort();
    let n = v.breaches.len() as i64;
    Ok(OutgoingEmail {
        dedup_key: super::dedup_key(
            "alert",
            &[&v.period, &v.operator_id, &short_hash(&content.join("\n"))],
        ),
        kind: kind::ALERT.into(),
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

// ---------------------------------------------------------------------------
// Exclusivity (R3.5).
// ---------------------------------------------------------------------------

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
    let (text, html) = render_pair("exclusivity_breach", &exclusivity_ctx(v))?;
    Ok(OutgoingEmail {
        dedup_key: super::dedup_key("exclusivity", &[&v.period, &v.operator_id, &v.territory_id]),
        kind: kind::EXCLUSIVITY_BREACH.into(),
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
    let (text, html) = render_pair("escalation", &exclusivity_ctx(v))?;
    Ok(OutgoingEmail {
        dedup_key: super::dedup_key(
            "escalation",
            &[
                &v.period,
                &v.operator_id,
                &v.territory_id,
                partner_success.trim(),
            ],
        ),
        kind: kind::ESCALATION.into(),
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

// ---------------------------------------------------------------------------
// Run failures and generic reports.
// ---------------------------------------------------------------------------

/// Tells the operators of the back office that a job run failed.
///
/// The dedup key is `run_failed:{run_id}:{recipient}`: one notice per run and
/// address (the ops contact is a list, and each address must get its copy). Built with `format!` rather than a template on purpose: it is sent from the
/// error path and must not be able to fail itself.
pub fn run_failed_email(
    job: &str,
    period: Option<&str>,
    run_id: &str,
    error: &str,
    rerun_command: &str,
    recipient: &str,
) -> OutgoingEmail {
    let for_period = period.map(|p| format!(" for {p}")).unwrap_or_default();
    let error_block: String = error
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>();
    let text = format!(
        "The opnet job {job} failed{for_period}.\n\
         \n\
         Run id: {run_id}\n\
         \n\
         Error:\n\
         {error_block}\
         \n\
         The run is recorded as failed in job_runs, with this error. Once the cause is\n\
         fixed, run it again with:\n\
         \n\
         \x20   {rerun_command}\n\
         \n\
         — opnet\n"
    );
    OutgoingEmail {
        dedup_key: super::dedup_key("run_failed", &[run_id, recipient.trim()]),
        kind: kind::RUN_FAILED.into(),
        period: period.map(str::to_owned),
        recipient: recipient.to_owned(),
        subject: format!("opnet: job {job} failed{for_period} (run {run_id})"),
        text,
        html: None,
        attachments: Vec::new(),
    }
}

/// Wraps HTML rendered elsewhere (the leadership report) into an email. `period` is
/// left empty; set the field on the result when the report belongs to one. The
/// caller's `dedup_key` must differ per recipient when the same report goes to a
/// list of addresses, or the outbox keeps only the first.
pub fn html_report_email(
    kind: impl Into<String>,
    dedup_key: impl Into<String>,
    recipient: impl Into<String>,
    subject: impl Into<String>,
    html: impl Into<String>,
    text: impl Into<String>,
    attachments: Vec<Attachment>,
) -> OutgoingEmail {
    OutgoingEmail {
        dedup_key: dedup_key.into(),
        kind: kind.into(),
        period: None,
        recipient: recipient.into(),
        subject: subject.into(),
        text: text.into(),
        html: Some(html.into()),
        attachments,
    }
}

#[cfg(test)]
mod tests;
