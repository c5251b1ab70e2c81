//! What one value must be (data-contract.md, "Inputs"; the "Values" paragraph of
//! [`super`]): the strict parsers of dates and timestamps, and the checks beyond the
//! type that judge a single text or integer value (allowed values, currencies, ids,
//! email addresses, the money bound). Each returns the reason a value is refused or
//! warned about, in the words the quarantine and warnings files show; collecting them
//! per row is [`validate`](mod@super::validate)'s job.

use chrono::{DateTime, Datelike, NaiveDate};
use opnet_pipelines::contract::{Check, ISO_4217, MAX_ABS_CENTS};

/// 719_163 = days from 0001-01-01 (CE day 1) to 1970-01-01.
const CE_TO_EPOCH: i32 = 719_163;

pub(super) fn epoch_days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - CE_TO_EPOCH
}

pub(super) fn show_days(days: i64) -> String {
    i32::try_from(days)
        .ok()
        .and_then(|d| d.checked_add(CE_TO_EPOCH))
        .and_then(NaiveDate::from_num_days_from_ce_opt)
        .map_or_else(|| format!("day {days} from 1970-01-01"), |d| d.to_string())
}

pub(super) const MS_PER_DAY: i64 = 86_400_000;

/// The check beyond the type, for text values: `Err` quarantines the row, `Ok(Some)`
/// is a warning (the row is kept).
pub(super) fn check_str(check: Check, v: &str) -> Result<Option<String>, String> {
    match check {
        Check::OneOf(allowed) if !allowed.contains(&v) => {
            Err(format!("not one of {}: {v:?}", allowed.join("|")))
        }
        Check::Currency if ISO_4217.binary_search(&v).is_err() => {
            Err(format!("unknown ISO 4217 currency: {v:?}"))
        }
        Check::Email => Ok(check_email(v)),
        _ => Ok(None),
    }
}

/// What every text value must be: free of NUL (PostgreSQL cannot store it, so one
/// would fail the whole close there). An id (a `*_id` column) must also be free of
/// control characters and of surrounding whitespace: `OP-0001 ` would be another
/// operator than `OP-0001`, one that a duplicate-key check cannot see.
pub(super) fn check_text(column: &str, v: &str) -> Option<String> {
    if v.contains('\0') {
        Some(format!("contains a NUL character: {v:?}"))
    } else if column.ends_with("_id") && v.chars().any(char::is_control) {
        Some(format!("an id with a control character: {v:?}"))
    } else if column.ends_with("_id") && v.trim() != v {
        Some(format!("an id with leading or trailing whitespace: {v:?}"))
    } else {
        None
    }
}

/// Issue 9 item 5: why `v` is not one bare email address (`name@domain`), if it is
/// not. A list (`a@x, b@y`), a display name (`Ann <a@x>`) or a line break would let
/// one row address several mailboxes or inject a header; the display-name form is
/// refused too, because the contract's `email` is an address (`name` holds the name).
fn check_email(v: &str) -> Option<String> {
    let reason = if v.chars().any(char::is_control) {
        "contains a line break or control character"
    } else if v.contains([',', ';']) {
        "a list of addresses, not one"
    } else if v.contains(['<', '>']) {
        "a display-name form (Name <address>), not a bare address"
    } else if v.chars().any(char::is_whitespace) {
        "contains whitespace"
    } else if v.parse::<lettre::Address>().is_err() {
        "not an email address"
    } else {
        return None;
    };
    Some(format!(
        "{reason}: {v:?}; the row is kept (its money is computed) but no mail can go to it"
    ))
}

/// The check beyond the type, for integers.
pub(super) fn check_int(check: Check, v: i64) -> Option<String> {
    match check {
        Check::Range(lo, hi) if v < lo || v > hi => Some(match (lo, hi) {
            (lo, i64::MAX) => format!("out of range {lo}..: {v}"),
            (i64::MIN, hi) => format!("out of range ..={hi}: {v}"),
            (lo, hi) => format!("out of range {lo}..={hi}: {v}"),
        }),
        Check::Cents { nonnegative: true } if v < 0 => Some(format!("out of range 0..: {v}")),
        // Issue 9 item 8: beyond the sanity bound an `amount * bp` could overflow.
        Check::Cents { .. } if v.unsigned_abs() > MAX_ABS_CENTS.unsigned_abs() => Some(format!(
            "beyond the sanity bound of {MAX_ABS_CENTS} cents in magnitude (contract::MAX_ABS_CENTS): {v}"
        )),
        _ => None,
    }
}

/// `YYYY-MM-DD`, strictly (no other widths or separators), as days since 1970-01-01.
pub(super) fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let date =
        chrono::NaiveDate::from_ymd_opt(num(&b[0..4])? as i32, num(&b[5..7])?, num(&b[8..10])?)?;
    Some(epoch_days(date))
}

/// RFC 3339 in UTC (`Z` or `+00:00`) as epoch milliseconds; `Err` carries the reason.
pub(super) fn parse_ts(s: &str) -> Result<i64, String> {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) if t.offset().local_minus_utc() == 0 => Ok(t.timestamp_millis()),
        Ok(t) => Err(format!("not in UTC (offset {}): {s:?}", t.offset())),
        Err(_) => Err(format!("not an RFC 3339 timestamp: {s:?}")),
    }
}

/// Blank counts as missing: CSV has no null, and an all-space field is no value.
pub(super) fn blank(v: &str) -> bool {
    v.trim().is_empty()
}
