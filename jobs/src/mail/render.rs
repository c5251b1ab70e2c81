//! What every job's emails are made with: money and basis points formatted exactly
//! from integers, figures lined up for plain text, the templates' shared layout and
//! environment, RFC 4180 CSV rows, content hashes for dedup keys — plus the two
//! emails that belong to no job (a failed run, a report wrapped as an email).
//!
//! Each job renders its own emails from views, with its templates in its folder
//! (`jobs/src/jobs/<job>/templates/`), embedded with `include_str!` so a deployed
//! `opnet` needs no files beside it. Templates own the wording and layout; the Rust
//! side owns every number, handed to the text and HTML templates as the same strings,
//! so the two parts cannot disagree.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Audience, MailError, OutgoingEmail, kind};

/// The layout every HTML template extends.
const LAYOUT: (&str, &str) = ("layout.html", include_str!("templates/layout.html"));

/// Content type of the CSV attachments.
pub const CSV_CONTENT_TYPE: &str = "text/csv; charset=utf-8";

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
pub struct Money {
    /// `1,234.56 USD`.
    text: String,
    /// `text` right-aligned to the width of the other figures of the same table,
    /// for the plain-text part.
    pad: String,
    negative: bool,
    zero: bool,
}

/// One money figure right-aligned to `width` characters in its plain-text form.
pub fn money(cents: i64, currency: &str, width: usize) -> Money {
    let text = format_cents(cents, currency);
    Money {
        pad: format!("{text:>width$}"),
        text,
        negative: cents < 0,
        zero: cents == 0,
    }
}

/// Formats a set of named figures together so their plain-text forms line up.
pub fn money_table<const N: usize>(
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

/// The environment of a template set (a job's `TEMPLATES`), parsed once per process
/// and kept: parsing every template for every mail was most of a backfill's mail
/// rendering (issue 13). Keyed by the set's template names and sources; the handful
/// of sets live as long as the process.
fn shared_environment(
    templates: &[(&'static str, &'static str)],
) -> Result<&'static Environment<'static>, MailError> {
    type Parsed = std::collections::HashMap<String, &'static Environment<'static>>;
    static PARSED: std::sync::OnceLock<std::sync::Mutex<Parsed>> = std::sync::OnceLock::new();
    // Names and the sources' addresses: two sets with the same names but other text
    // (a test's) are never served each other's parse.
    let key = templates
        .iter()
        .map(|(name, source)| format!("{name}@{:p}+{}", source.as_ptr(), source.len()))
        .collect::<Vec<_>>()
        .join("\n");
    let parsed = PARSED.get_or_init(Default::default);
    if let Some(env) = parsed.lock().ok().and_then(|m| m.get(&key).copied()) {
        return Ok(env);
    }
    let env: &'static Environment<'static> = Box::leak(Box::new(environment(templates)?));
    if let Ok(mut m) = parsed.lock() {
        return Ok(*m.entry(key).or_insert(env));
    }
    Ok(env)
}

/// A template environment with the layout and `templates` (name, source).
fn environment(
    templates: &[(&'static str, &'static str)],
) -> Result<Environment<'static>, MailError> {
    let mut env = Environment::new();
    // Block tags on their own line leave no trace, so plain-text templates can use
    // `{% if %}` lines without stray blank lines or indentation.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    // A misspelt variable must fail loudly (and in the tests), not render as "".
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    for (name, source) in std::iter::once(&LAYOUT).chain(templates) {
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

/// Renders `NAME.txt` and `NAME.html` of `templates` with the same context.
pub fn render_pair<S: Serialize>(
    templates: &[(&'static str, &'static str)],
    name: &str,
    ctx: &S,
) -> Result<(String, String), MailError> {
    let env = shared_environment(templates)?;
    let text = render(env, &format!("{name}.txt"), ctx)?;
    let html = render(env, &format!("{name}.html"), ctx)?;
    Ok((text, html))
}

/// First 16 hex digits of the SHA-256 of `s`: a content fingerprint for dedup keys.
pub fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    hex::encode(digest)[..16].to_owned()
}

/// `YYYY-MM` of the month before `period`, if `period` is one.
pub fn previous_period(period: &str) -> Option<String> {
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
pub fn tier_label(tier: &str) -> String {
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

pub fn plural(n: i64, one: &str, many: &str) -> String {
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

pub fn csv_row(out: &mut String, fields: &[&str]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    out.push('\n');
}

// ---------------------------------------------------------------------------
// Run failures.
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
        audience: Audience::Notice,
        period: period.map(str::to_owned),
        recipient: recipient.to_owned(),
        subject: format!("opnet: job {job} failed{for_period} (run {run_id})"),
        text,
        html: None,
        attachments: Vec::new(),
    }
}

/// Test support shared by every job's email tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    /// Compares `actual` with `dir/name`, or rewrites it under `UPDATE_GOLDEN=1`.
    pub(crate) fn check_golden(dir: &Path, name: &str, actual: &[u8]) {
        let path = dir.join(name);
        if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(dir).expect("create golden dir");
            std::fs::write(&path, actual).expect("write golden file");
            return;
        }
        let expected = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                path.display()
            )
        });
        if expected != actual {
            panic!(
                "{} differs from the rendered output (UPDATE_GOLDEN=1 rewrites it)\n--- expected\n{}\n--- actual\n{}",
                path.display(),
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(actual)
            );
        }
    }

    /// Every template of a job parses (with the layout).
    pub(crate) fn templates_parse(templates: &[(&'static str, &'static str)]) {
        super::environment(templates).expect("the job's templates parse");
    }
}

#[cfg(test)]
mod tests;
