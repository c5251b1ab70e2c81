//! The payouts job's emails: golden files for the statement, and the rules each
//! email's numbers and dedup key must follow (R1.6–R1.10, R2.3).

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::*;
use crate::mail::render::testing;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/jobs/payouts/golden")
}

/// Compares `actual` with the golden file, or rewrites it under `UPDATE_GOLDEN=1`.
fn check_golden(name: &str, actual: &[u8]) {
    testing::check_golden(&golden_dir(), name, actual);
}

#[test]
fn every_template_parses() {
    testing::templates_parse(TEMPLATES);
}

// One argument per CSV column keeps the fixture table readable.
#[allow(clippy::too_many_arguments)]
fn line(
    invoice: &str,
    no: i64,
    refund: Option<&str>,
    revenue_type: &str,
    amount: i64,
    bp: i64,
    op: i64,
    collected: &str,
) -> StatementLineView {
    StatementLineView {
        invoice_id: invoice.into(),
        line_no: no,
        refund_id: refund.map(str::to_owned),
        revenue_type: revenue_type.into(),
        kind: if refund.is_some() {
            "clawback"
        } else {
            "collection"
        }
        .into(),
        amount_cents: amount,
        operator_bp: bp,
        operator_cents: op,
        candlefish_cents: amount - op,
        collected_period: collected.into(),
    }
}

/// A growth-phase Gold operator: four collections, one clawback of a line collected
/// in May at the Silver share, and a negative balance carried in that this month's
/// earnings do not cover, so a negative balance is carried out again (R1.7).
fn statement_view() -> StatementView {
    let lines = vec![
        line(
            "INV-1001", 1, None, "software", 1_000_000, 7000, 700_000, "2025-08",
        ),
        line(
            "INV-1001",
            2,
            None,
            "implementation",
            250_000,
            8500,
            212_500,
            "2025-08",
        ),
        line(
            "INV-1002", 1, None, "support", 45_000, 10000, 45_000, "2025-08",
        ),
        line(
            "INV-1003", 1, None, "software", 333_333, 7000, 233_333, "2025-08",
        ),
        line(
            "INV-0950",
            1,
            Some("RF-0007"),
            "software",
            -120_000,
            6500,
            -78_000,
            "2025-05",
        ),
    ];
    StatementView {
        period: "2025-08".into(),
        operator_id: "OP-0001".into(),
        operator_name: "Acme Field Services".into(),
        recipient: "Acme Field Services <payouts@acme.example>".into(),
        currency: "USD".into(),
        phase: "growth".into(),
        tier: "gold".into(),
        software_cents: 1_333_333,
        implementation_cents: 250_000,
        support_cents: 45_000,
        operator_share_cents: 1_190_833,
        candlefish_share_cents: 395_500,
        clawback_cents: -78_000,
        carried_in_cents: -1_500_000,
        payable_cents: 0,
        carried_out_cents: -387_167,
        statement_on: "2025-09-01".into(),
        due_on: "2025-10-01".into(),
        revision: 1,
        lines,
    }
}

/// Every `<amount> <CUR>` figure in a rendered part.
fn money_figures(s: &str, currency: &str) -> BTreeSet<String> {
    let suffix = format!(" {currency}");
    let mut out = BTreeSet::new();
    for (i, _) in s.match_indices(&suffix) {
        let start = s[..i]
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_digit() || c == ',' || c == '.' || c == '-'))
            .map_or(0, |(p, c)| p + c.len_utf8());
        if start < i {
            out.insert(s[start..i + suffix.len()].to_owned());
        }
    }
    out
}

#[test]
fn r1_7_statement_golden_text_html_csv() {
    let email = statement_email(&statement_view()).expect("render");
    check_golden("statement.txt", email.text.as_bytes());
    check_golden(
        "statement.html",
        email.html.as_deref().expect("html part").as_bytes(),
    );
    assert_eq!(email.attachments.len(), 1);
    assert_eq!(
        email.attachments[0].filename,
        "payout_lines_OP-0001_2025-08_USD.csv"
    );
    assert_eq!(email.attachments[0].content_type, "text/csv; charset=utf-8");
    check_golden("statement_lines.csv", &email.attachments[0].bytes);
}

#[test]
fn r1_7_statement_email_key_subject_and_carry_sentence() {
    let v = statement_view();
    let email = statement_email(&v).expect("render");
    assert_eq!(email.dedup_key, "statement:2025-08:OP-0001:USD:r1");
    assert_eq!(email.kind, "statement");
    assert_eq!(email.period.as_deref(), Some("2025-08"));
    assert_eq!(email.recipient, v.recipient, "to the operator only");
    assert_eq!(
        email.subject,
        "Candlefish payout statement 2025-08 — OP-0001 (USD)"
    );
    let html = email.html.as_deref().expect("html");
    for part in [email.text.as_str(), html] {
        assert!(part.contains("never paid and never lost"), "{part}");
        assert!(part.contains("-3,871.67 USD"));
        assert!(part.contains("-15,000.00 USD"));
        assert!(part.contains("-780.00 USD"));
        assert!(part.contains("2025-10-01"));
        assert!(part.contains("Gold"));
        assert!(part.contains("growth"));
        assert!(
            part.contains("2025-07"),
            "carried in names the previous period"
        );
    }
    // No external resources in the HTML: everything is inline.
    assert!(!html.contains("src=") && !html.contains("<link") && !html.contains("http"));
}

/// Issue 14: the operator can check the statement without a calculator — each
/// revenue type's split adds up to what was collected, each clawback line is split
/// in its refund, and the Candlefish share is explained as collections plus
/// clawbacks (R1.7: the operator share is before clawbacks, Candlefish's after).
#[test]
fn r1_7_statement_shows_the_arithmetic_of_the_shares() {
    let email = statement_email(&statement_view()).expect("render");
    let html = email.html.as_deref().expect("html");
    for part in [email.text.as_str(), html] {
        for phrase in [
            "Software at 70 %",
            "Implementation at 85 %",
            "Support at 100 %",
            "9,333.33 USD", // 7000 bp of 10,000.00 + 3,333.33, line by line
            "4,000.00 USD", // Candlefish's part of the software
            "4,375.00 USD", // Candlefish's part of all collections
            "INV-0950 line 1, refund RF-0007",
            "-1,200.00 USD", // refunded
            "-420.00 USD",   // Candlefish's part of the refund
            "65 %",          // the share of the original collection (R1.6)
            "3,955.00 USD",  // Candlefish share = 4,375.00 − 420.00
        ] {
            assert!(part.contains(phrase), "{phrase:?} missing:\n{part}");
        }
    }
    assert!(
        email
            .text
            .contains("= 4,375.00 USD of the collections and -420.00 USD of the clawbacks"),
        "{}",
        email.text
    );
}

/// A statement with more clawback lines than the email itemises lists the first
/// ones, says how many more are in the CSV, and keeps the totals of all of them.
#[test]
fn r1_6_many_clawbacks_are_capped_in_the_body_not_in_the_totals() {
    let mut v = statement_view();
    let extra = 25;
    for i in 0..extra {
        v.lines.push(line(
            &format!("INV-2{i:03}"),
            1,
            Some(&format!("RF-2{i:03}")),
            "software",
            -1_000,
            7000,
            -700,
            "2025-06",
        ));
    }
    v.clawback_cents -= 700 * extra;
    v.candlefish_share_cents -= 300 * extra;
    let email = statement_email(&v).expect("render");
    let listed = email.text.matches("    Refunded ").count();
    assert_eq!(listed, MAX_LISTED_CLAWBACKS, "{}", email.text);
    let more = format!(
        "… and {} more in the attached CSV",
        extra as usize + 1 - MAX_LISTED_CLAWBACKS
    );
    assert!(email.text.contains(&more), "{}", email.text);
    assert!(email.html.as_deref().expect("html").contains(&more));
    // −780.00 − 25 × 7.00 = −955.00 yours; −420.00 − 25 × 3.00 = −495.00 Candlefish.
    assert!(email.text.contains("-955.00 USD") && email.text.contains("-495.00 USD"));
}

#[test]
fn r1_7_statement_text_and_html_show_the_same_numbers() {
    let mut views = vec![statement_view()];
    let mut paid = statement_view();
    paid.carried_in_cents = -250_000;
    paid.payable_cents = 862_833;
    paid.carried_out_cents = 0;
    views.push(paid);
    for v in views {
        let email = statement_email(&v).expect("render");
        let text = money_figures(&email.text, "USD");
        let html = money_figures(email.html.as_deref().expect("html"), "USD");
        assert!(text.len() >= 8, "{text:?}");
        assert_eq!(text, html);
    }
}

#[test]
fn r1_7_statement_payable_without_carry() {
    let mut v = statement_view();
    v.carried_in_cents = -250_000;
    v.payable_cents = 862_833;
    v.carried_out_cents = 0;
    let email = statement_email(&v).expect("render");
    assert!(
        email
            .text
            .contains("8,628.33 USD will be paid to you by 2025-10-01.")
    );
    assert!(!email.text.contains("Carried out"));
    assert!(!email.text.contains("never lost"));
}

#[test]
fn r1_9_statement_revision_is_marked() {
    let mut v = statement_view();
    v.revision = 2;
    let email = statement_email(&v).expect("render");
    assert_eq!(email.dedup_key, "statement:2025-08:OP-0001:USD:r2");
    assert!(email.subject.ends_with("— revision 2"));
    assert!(email.text.contains("This is revision 2"));
    assert!(
        email
            .html
            .as_deref()
            .expect("html")
            .contains("This is revision 2")
    );
}

#[test]
fn r1_7_csv_operator_cents_sum_to_share_plus_clawback() {
    let v = statement_view();
    let csv = String::from_utf8(statement_lines_csv(&v.lines)).expect("utf8");
    let mut rows = csv.lines();
    let header: Vec<&str> = rows.next().expect("header").split(',').collect();
    assert_eq!(
        header,
        [
            "invoice_id",
            "line_no",
            "refund_id",
            "revenue_type",
            "kind",
            "amount_cents",
            "operator_bp",
            "operator_cents",
            "candlefish_cents",
            "collected_period"
        ]
    );
    let col = |name: &str| header.iter().position(|h| *h == name).expect("column");
    let (op, cf, amt, kind, rt) = (
        col("operator_cents"),
        col("candlefish_cents"),
        col("amount_cents"),
        col("kind"),
        col("revenue_type"),
    );
    let (mut op_sum, mut cf_sum, mut software) = (0i64, 0i64, 0i64);
    let mut n = 0;
    for row in rows {
        let f: Vec<&str> = row.split(',').collect();
        let p = |i: usize| f[i].parse::<i64>().expect("integer cents");
        op_sum += p(op);
        cf_sum += p(cf);
        if f[kind] == "collection" && f[rt] == "software" {
            software += p(amt);
        }
        n += 1;
    }
    assert_eq!(n, v.lines.len());
    assert_eq!(op_sum, v.operator_share_cents + v.clawback_cents);
    assert_eq!(cf_sum, v.candlefish_share_cents);
    assert_eq!(software, v.software_cents);
}

#[test]
fn csv_fields_are_quoted_per_rfc_4180() {
    let csv = exceptions_csv(&[ExceptionView {
        kind: "total_mismatch".into(),
        invoice_id: Some("INV-9".into()),
        line_no: None,
        customer_id: None,
        detail: "total 1,000 ≠ lines \"900\"".into(),
    }]);
    assert_eq!(
        String::from_utf8(csv).expect("utf8"),
        "kind,invoice_id,line_no,customer_id,detail\n\
         total_mismatch,INV-9,,,\"total 1,000 ≠ lines \"\"900\"\"\"\n"
    );
}

fn finance_view() -> FinanceSummaryView {
    FinanceSummaryView {
        period: "2025-08".into(),
        recipient: "finance@candlefish.example".into(),
        currencies: vec![CurrencyTotalsView {
            currency: "USD".into(),
            collected_cents: 1_748_333,
            refunds_cents: 120_000,
            operator_share_cents: 1_190_833,
            clawback_cents: -78_000,
            candlefish_share_cents: 515_500,
            carried_in_cents: -1_500_000,
            payable_cents: 0,
            carried_out_cents: -387_167,
            lines_total_cents: 1_628_333,
        }],
        statements: 1,
        operators_payable: 0,
        exceptions: vec![ExceptionView {
            kind: "unknown_customer".into(),
            invoice_id: Some("INV-2001".into()),
            line_no: None,
            customer_id: Some("CUST-404".into()),
            detail: "customer CUST-404 is not in the CRM".into(),
        }],
        control_ok: true,
        quarantine: Vec::new(),
    }
}

#[test]
fn r1_10_finance_summary_content_and_dedup() {
    let v = finance_view();
    let email =
        finance_summary_email(&v, b"a\n".to_vec(), exceptions_csv(&v.exceptions)).expect("render");
    assert!(email.dedup_key.starts_with("finance_summary:2025-08:"));
    assert_eq!(email.dedup_key.len(), "finance_summary:2025-08:".len() + 16);
    assert_eq!(email.kind, "finance_summary");
    assert_eq!(email.attachments.len(), 2);
    assert_eq!(
        email.attachments[0].filename,
        "payout_statements_2025-08.csv"
    );
    assert_eq!(
        email.attachments[1].filename,
        "reconciliation_exceptions_2025-08.csv"
    );
    let html = email.html.as_deref().expect("html");
    assert!(
        email.text.contains("Control totals    OK"),
        "{}",
        email.text
    );
    assert!(email.text.contains("payout lines total: OK"));
    assert!(email.text.contains("unknown_customer: 1"));
    assert!(html.contains("CUST-404"));
    assert_eq!(
        money_figures(&email.text, "USD"),
        money_figures(html, "USD")
    );

    // Identical results: same key (not resent). Changed results: a new key.
    let again =
        finance_summary_email(&v, b"a\n".to_vec(), exceptions_csv(&v.exceptions)).expect("render");
    assert_eq!(again.dedup_key, email.dedup_key);
    let mut cc = v.clone();
    cc.recipient = "controller@candlefish.example".into();
    let cc =
        finance_summary_email(&cc, b"a\n".to_vec(), exceptions_csv(&v.exceptions)).expect("render");
    assert_ne!(
        cc.dedup_key, email.dedup_key,
        "each finance address gets its copy"
    );
    let no_csv = finance_summary_email(&v, b"a\n".to_vec(), Vec::new()).expect("render");
    assert_eq!(no_csv.attachments.len(), 1, "an empty CSV is not attached");
    let mut changed = v.clone();
    changed.exceptions[0].detail = "another detail".into();
    let changed = finance_summary_email(&changed, Vec::new(), Vec::new()).expect("render");
    assert_ne!(changed.dedup_key, email.dedup_key);

    // A totals mismatch is shown, whatever the caller's flag says.
    let mut broken = v.clone();
    broken.currencies[0].lines_total_cents += 1;
    let broken = finance_summary_email(&broken, Vec::new(), Vec::new()).expect("render");
    assert!(broken.text.contains("MISMATCH"));
    assert!(broken.subject.contains("CONTROL TOTALS FAILED"));
}

#[test]
fn finance_summary_lists_at_most_the_cap() {
    let mut v = finance_view();
    v.exceptions = (0..(MAX_LISTED_EXCEPTIONS + 3))
        .map(|i| ExceptionView {
            kind: "duplicate_invoice".into(),
            invoice_id: Some(format!("INV-{i:04}")),
            line_no: Some(1),
            customer_id: None,
            detail: "appears twice".into(),
        })
        .collect();
    let email = finance_summary_email(&v, Vec::new(), Vec::new()).expect("render");
    assert!(email.text.contains("… and 3 more in the attached file."));
    assert!(
        email
            .text
            .contains(&format!("duplicate_invoice: {}", MAX_LISTED_EXCEPTIONS + 3))
    );
}

#[test]
fn r2_3_tier_change_names_new_tier_and_benefits() {
    let v = TierChangeView {
        period: "2025-08".into(),
        operator_id: "OP-0001".into(),
        operator_name: "Acme Field Services".into(),
        recipient: "ops@acme.example".into(),
        previous_tier: "silver".into(),
        tier: "gold".into(),
        change: "promotion".into(),
        active_customers: 16,
        benefits: "territory protection and co-marketing".into(),
    };
    let email = tier_change_email(&v).expect("render");
    assert_eq!(email.dedup_key, "tier_change:2025-08:OP-0001");
    assert_eq!(email.kind, "tier_change");
    assert!(email.subject.contains("Gold"));
    for part in [email.text.as_str(), email.html.as_deref().expect("html")] {
        assert!(part.contains("from Silver to"), "{part}");
        assert!(part.contains("Gold"));
        assert!(part.contains("territory protection and co-marketing"));
        assert!(part.contains("16 active customers"));
    }

    let mut down = v.clone();
    down.change = "demotion".into();
    down.previous_tier = "bronze".into();
    down.tier = "none".into();
    down.benefits = String::new();
    down.active_customers = 0;
    let email = tier_change_email(&down).expect("render");
    assert!(
        email
            .text
            .contains("no longer holds a tier (previously Bronze)")
    );
}

/// Issue 9 item 10: the finance summary always shows the snapshot's quarantine
/// counts per dataset, also when nothing was quarantined.
#[test]
fn finance_summary_shows_quarantine_counts() {
    let mut v = FinanceSummaryView {
        period: "2025-08".into(),
        recipient: "finance@candlefish.example".into(),
        currencies: Vec::new(),
        statements: 0,
        operators_payable: 0,
        exceptions: Vec::new(),
        control_ok: true,
        quarantine: vec![
            QuarantineView {
                dataset: "billing/invoices".into(),
                rows_in: 120,
                rows_quarantined: 0,
            },
            QuarantineView {
                dataset: "billing/refunds".into(),
                rows_in: 29,
                rows_quarantined: 29,
            },
        ],
    };
    let email = finance_summary_email(&v, Vec::new(), Vec::new()).expect("render");
    assert!(
        email
            .text
            .contains("Ingest quarantine of the run's snapshot (29 row(s) left out)"),
        "{}",
        email.text
    );
    assert!(
        email
            .text
            .contains("billing/refunds: 29 of 29 row(s) quarantined")
    );
    assert!(
        email
            .text
            .contains("billing/invoices: 0 of 120 row(s) quarantined")
    );
    let html = email.html.clone().expect("html");
    assert!(
        html.contains("billing&#x2f;refunds") && html.contains("font-weight:bold;\">29<"),
        "{html}"
    );
    // Other counts, another summary (not deduplicated away).
    v.quarantine[1].rows_quarantined = 0;
    let other = finance_summary_email(&v, Vec::new(), Vec::new()).expect("render");
    assert_ne!(other.dedup_key, email.dedup_key);
}
