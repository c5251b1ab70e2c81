//! Tests of the shared rendering: exact money and basis points, the emails that
//! belong to no job, the layout.

use super::*;

#[test]
fn r0_2_format_cents_uses_integer_arithmetic() {
    assert_eq!(format_cents(0, "USD"), "0.00 USD");
    assert_eq!(format_cents(5, "USD"), "0.05 USD");
    assert_eq!(format_cents(-5, "USD"), "-0.05 USD");
    assert_eq!(format_cents(123_456, "USD"), "1,234.56 USD");
    assert_eq!(format_cents(-1_234, "EUR"), "-12.34 EUR");
    assert_eq!(format_cents(100_000_000, "USD"), "1,000,000.00 USD");
    assert_eq!(format_cents(99_999, "USD"), "999.99 USD");
    assert_eq!(format_cents(1_234_567, "JPY"), "1,234,567 JPY");
    assert_eq!(format_cents(-123_456, ""), "-1,234.56");
    assert_eq!(format_cents(1_234_567, "KWD"), "1,234.567 KWD");
    assert_eq!(
        format_cents(i64::MIN, "USD"),
        "-92,233,720,368,547,758.08 USD"
    );
    assert_eq!(
        format_cents(i64::MAX, "USD"),
        "92,233,720,368,547,758.07 USD"
    );
}

#[test]
fn r0_3_format_bp_is_exact() {
    assert_eq!(format_bp(1250), "12.5 %");
    assert_eq!(format_bp(7000), "70 %");
    assert_eq!(format_bp(9250), "92.5 %");
    assert_eq!(format_bp(1234), "12.34 %");
    assert_eq!(format_bp(1), "0.01 %");
    assert_eq!(format_bp(5), "0.05 %");
    assert_eq!(format_bp(0), "0 %");
    assert_eq!(format_bp(10_000), "100 %");
    assert_eq!(format_bp(-250), "-2.5 %");
    assert_eq!(format_bp(i64::MIN), "-92233720368547758.08 %");
}

#[test]
fn run_failed_email_has_error_and_rerun_command() {
    let email = run_failed_email(
        "payouts",
        Some("2025-08"),
        "run-42",
        "control total broken\nUSD: 1 cent off",
        "opnet run payouts --period 2025-08",
        "ops@candlefish.example",
    );
    assert_eq!(email.dedup_key, "run_failed:run-42:ops@candlefish.example");
    let other = run_failed_email(
        "payouts",
        None,
        "run-42",
        "x",
        "y",
        "ops2@candlefish.example",
    );
    assert_ne!(
        other.dedup_key, email.dedup_key,
        "each address gets its copy"
    );
    assert_eq!(email.kind, "run_failed");
    assert_eq!(email.period.as_deref(), Some("2025-08"));
    assert!(email.subject.contains("payouts") && email.subject.contains("2025-08"));
    assert!(
        email
            .text
            .contains("    control total broken\n    USD: 1 cent off\n")
    );
    assert!(
        email
            .text
            .contains("    opnet run payouts --period 2025-08\n")
    );
    assert!(email.html.is_none());
}

#[test]
fn the_layout_parses() {
    environment(&[]).expect("the layout parses");
}

#[test]
fn previous_period_wraps_the_year() {
    assert_eq!(previous_period("2025-01").as_deref(), Some("2024-12"));
    assert_eq!(previous_period("2025-08").as_deref(), Some("2025-07"));
    assert_eq!(previous_period("2025-13"), None);
    assert_eq!(previous_period("garbage"), None);
}
