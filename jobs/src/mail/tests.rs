//! Tests of building outgoing mail: transient mail errors, dedup keys, one mailbox per
//! recipient, the backfill summary, stable Message-IDs, and the MIME message itself.

use super::*;
use chrono::TimeZone;

fn sample() -> OutgoingEmail {
    OutgoingEmail {
        dedup_key: "statement:2025-08:OP-0001:USD:r1".into(),
        kind: kind::STATEMENT.into(),
        audience: Audience::Operator,
        period: Some("2025-08".into()),
        recipient: "Acme Ops <ops@acme.example>".into(),
        subject: "Candlefish payout statement 2025-08 — OP-0001 (USD)".into(),
        text: "Hello plain world\n".into(),
        html: Some("<p>Hello html world</p>\n".into()),
        attachments: vec![Attachment {
            filename: "payout_lines_OP-0001_2025-08_USD.csv".into(),
            content_type: "text/csv; charset=utf-8".into(),
            bytes: b"a,b\n1,2\n".to_vec(),
        }],
    }
}

#[test]
fn transient_mail_errors() {
    let transport = |transient| MailError::Transport {
        context: "smtp".into(),
        reason: "x".into(),
        transient,
    };
    let db = |source| MailError::Db {
        context: "listing".into(),
        source,
    };
    let address = parse_mailbox("recipient", "not an address", "k").expect_err("bad");
    let template = MailError::Template {
        template: "t".into(),
        source: minijinja::Error::new(minijinja::ErrorKind::UndefinedError, "x"),
    };
    let cases: Vec<(MailError, bool)> = vec![
        (transport(true), true),
        (transport(false), false),
        (db(sqlx::Error::PoolTimedOut), true),
        (
            db(sqlx::Error::Io(std::io::Error::from(
                std::io::ErrorKind::ConnectionRefused,
            ))),
            true,
        ),
        (db(sqlx::Error::RowNotFound), false),
        (address, false),
        (template, false),
        (
            MailError::TransportSpec {
                spec: "x".into(),
                reason: "y".into(),
            },
            false,
        ),
        (
            MailError::NotUtf8 {
                dedup_key: "k".into(),
                recipient: "r".into(),
            },
            false,
        ),
        (
            MailError::ContentType {
                content_type: "x".into(),
                filename: "f".into(),
                dedup_key: "k".into(),
            },
            false,
        ),
    ];
    for (e, transient) in cases {
        assert_eq!(e.is_transient(), transient, "{e}");
    }
}

/// Issue 9 item 17: joining parts with `:` is ambiguous; escaped parts are not, and
/// keys of ids without `:` or `%` are unchanged (their Message-IDs too).
#[test]
fn dedup_keys_are_unambiguous_and_readable() {
    let a = dedup_key("exclusivity", &["2025-08", "A:B", "C"]);
    let b = dedup_key("exclusivity", &["2025-08", "A", "B:C"]);
    assert_ne!(a, b);
    assert_ne!(message_id(&a), message_id(&b));
    assert_eq!(a, "exclusivity:2025-08:A%3AB:C");
    assert_eq!(
        dedup_key("tier_change", &["2025-08", "OP-0001"]),
        "tier_change:2025-08:OP-0001",
        "the key of an id without special characters is as before"
    );
    // `%` is escaped too, so an id that looks escaped stays distinct.
    assert_ne!(dedup_key("k", &["A%3AB"]), dedup_key("k", &["A:B"]),);
    assert_eq!(dedup_key("k", &["a\r\nb"]), "k:a%0D%0Ab");
    assert_eq!(dedup_key("k", &["Zürich"]), "k:Zürich");
}

/// Issue 9 item 5: a recipient that is not one mailbox is refused with a reason,
/// naming the value.
#[test]
fn one_mailbox_or_a_reason() {
    for ok in [
        "ops@acme.example",
        "Acme Ops <ops@acme.example>",
        "\"Doe, John\" <j@acme.example>",
        "  ops@acme.example ",
    ] {
        assert!(parse_mailbox("recipient", ok, "k").is_ok(), "{ok:?}");
    }
    for (bad, why) in [
        ("a@x.example, b@y.example", "list"),
        ("a@x.example\r\nBcc: evil@y.example", "line break"),
        ("a@x.example\nb@y.example", "line break"),
        ("a <b>", ""),
        ("", "no address"),
        ("not an address", ""),
    ] {
        let err = parse_mailbox("recipient", bad, "k").expect_err(bad);
        let msg = err.to_string();
        assert!(msg.contains(why), "{bad:?}: {msg}");
        assert!(!err.is_transient());
    }
}

#[test]
fn backfill_summary_lists_periods_and_is_stable() {
    let v = BackfillSummaryView {
        periods: vec![
            BackfillPeriodView {
                period: "2024-01".into(),
                statements: 12,
                payable: vec![("USD".into(), 123_456)],
                exceptions: 2,
                off_target: 1,
                suppressed: vec![("alert".into(), 3), ("finance_summary".into(), 1)],
            },
            BackfillPeriodView {
                period: "2024-02".into(),
                ..Default::default()
            },
        ],
        max_age_months: 1,
    };
    let a = backfill_summary_email(&v, "finance@candlefish.example");
    let b = backfill_summary_email(&v, "finance@candlefish.example");
    assert_eq!(a, b, "same content, same key");
    let other = backfill_summary_email(&v, "ops@candlefish.example");
    assert_ne!(a.dedup_key, other.dedup_key, "one per recipient");
    assert_eq!(a.period.as_deref(), Some("2024-02"));
    assert_eq!(a.kind, kind::BACKFILL_SUMMARY);
    assert!(a.text.contains("2024-01 .. 2024-02"), "{}", a.text);
    assert!(a.text.contains("1,234.56 USD"), "{}", a.text);
    assert!(a.text.contains("alert 3, finance_summary 1"), "{}", a.text);
    assert!(a.subject.contains("4 email(s) not sent"), "{}", a.subject);
    build_message("payouts@candlefish.example", &a, Utc::now()).expect("builds");
}

#[test]
fn message_id_is_stable_and_key_specific() {
    let a = message_id("statement:2025-08:OP-0001:USD:r1");
    assert_eq!(a, message_id("statement:2025-08:OP-0001:USD:r1"));
    assert_ne!(a, message_id("statement:2025-08:OP-0001:USD:r2"));
    assert!(a.starts_with('<') && a.ends_with("@opnet>"));
    assert_eq!(a.len(), 1 + 32 + "@opnet>".len());
}

#[test]
fn build_message_has_headers_parts_and_attachment() {
    let date = Utc
        .with_ymd_and_hms(2025, 9, 1, 6, 0, 0)
        .single()
        .expect("date");
    let email = sample();
    let bytes =
        build_message("Candlefish <payouts@candlefish.example>", &email, date).expect("build");
    let text = String::from_utf8(bytes).expect("ascii message");
    assert!(text.contains(&format!("Message-ID: {}", message_id(&email.dedup_key))));
    assert!(text.contains("From: Candlefish <payouts@candlefish.example>"));
    assert!(text.contains("To: \"Acme Ops\" <ops@acme.example>"));
    assert!(text.contains("Date: Mon, 01 Sep 2025 06:00:00 +0000"));
    assert!(text.contains("multipart/mixed"));
    assert!(text.contains("multipart/alternative"));
    assert!(text.contains("Content-Type: text/plain; charset=utf-8"));
    assert!(text.contains("Content-Type: text/html; charset=utf-8"));
    assert!(text.contains("Hello plain world"));
    assert!(text.contains("Hello html world"));
    assert!(text.contains("Content-Disposition: attachment;"));
    // Lettre writes the name as an RFC 2231 parameter (`filename*0="…"`).
    assert!(text.contains("\"payout_lines_OP-0001_2025-08_USD.csv\""));
    // The subject has a non-ASCII dash, so it must travel as an encoded word.
    assert!(text.contains("=?utf-8?b?4oCU?="), "{text}");
    // Same input, same bytes: the outbox can store and resend it verbatim.
    let again =
        build_message("Candlefish <payouts@candlefish.example>", &email, date).expect("build");
    assert_eq!(text.as_bytes(), again.as_slice());
}

#[test]
fn build_message_plain_only_and_bad_address() {
    let date = Utc
        .with_ymd_and_hms(2025, 9, 1, 6, 0, 0)
        .single()
        .expect("date");
    let mut email = sample();
    email.html = None;
    email.attachments.clear();
    let text = String::from_utf8(
        build_message("payouts@candlefish.example", &email, date).expect("build"),
    )
    .expect("utf8");
    assert!(!text.contains("multipart/"));
    assert!(text.contains("Content-Type: text/plain; charset=utf-8"));

    email.recipient = "not an address".into();
    let err = build_message("payouts@candlefish.example", &email, date).expect_err("bad recipient");
    let msg = err.to_string();
    assert!(
        msg.contains("not an address") && msg.contains(&email.dedup_key),
        "{msg}"
    );
}
