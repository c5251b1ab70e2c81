//! The exclusivity notices: golden file with basis points that are not whole
//! percents, breach and escalation (R3.5).

use std::path::PathBuf;

use super::*;
use crate::mail::render::testing;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/jobs/exclusivity/golden")
}

/// Compares `actual` with the golden file, or rewrites it under `UPDATE_GOLDEN=1`.
fn check_golden(name: &str, actual: &[u8]) {
    testing::check_golden(&golden_dir(), name, actual);
}

#[test]
fn every_template_parses() {
    testing::templates_parse(TEMPLATES);
}

fn exclusivity_view() -> ExclusivityView {
    ExclusivityView {
        period: "2025-08".into(),
        operator_id: "OP-0001".into(),
        operator_name: "Acme Field Services".into(),
        recipient: "ops@acme.example".into(),
        territory_id: "TER-AUS".into(),
        failures: vec![
            "MRR is 8,500.00 USD, 1,500.00 USD below the 10,000.00 USD minimum; \
             1,500.00 USD more monthly recurring revenue restores it."
                .into(),
            "12 active customers, 3 short of the 15 required.".into(),
        ],
        consecutive_breaches: 3,
        escalated: true,
    }
}

/// Issue 10: a plan whose R3.3 growth and R3.4 satisfaction minimums are not whole
/// percents (1250 bp, 9250 bp) is quoted exactly in the breach notice — integer
/// division used to print "12 %" and "92 %".
#[test]
fn r3_exclusivity_notice_golden_with_basis_points_that_are_not_whole_percents() {
    let mut criteria = opnet_pipelines::Plan::playbook().exclusivity;
    criteria.min_qoq_growth_bp = 1250;
    criteria.min_csat_share_bp = 9250;
    criteria
        .min_mrr_cents_by_currency
        .insert("EUR".into(), 900_000);
    let facts = crate::jobs::exclusivity::CheckFacts {
        currency: "EUR".into(),
        failed_criteria: "mrr,customers,growth,satisfaction".into(),
        mrr_cents: 812_345,
        active_customers: 12,
        qoq_growth: Some(0.081),
        csat_share: Some(0.9),
        csat_responses: 20,
        insufficient_satisfaction_data: false,
    };
    let v = ExclusivityView {
        failures: crate::jobs::exclusivity::failure_sentences(&facts, &criteria),
        territory_id: "TER-BER".into(),
        ..exclusivity_view()
    };
    let email = exclusivity_breach_email(&v).expect("render");
    check_golden("exclusivity_breach.txt", email.text.as_bytes());
    for part in [email.text.as_str(), email.html.as_deref().expect("html")] {
        assert!(part.contains("against the 12.5 % required"), "{part}");
        assert!(part.contains("must be above 92.5 %"), "{part}");
        assert!(part.contains("876.55 EUR more"), "{part}");
        assert!(!part.contains("12 %") && !part.contains("92 %"), "{part}");
    }
}

#[test]
fn r3_5_exclusivity_breach_and_escalation() {
    let v = exclusivity_view();
    let email = exclusivity_breach_email(&v).expect("render");
    assert_eq!(email.dedup_key, "exclusivity:2025-08:OP-0001:TER-AUS");
    assert_eq!(email.kind, "exclusivity_breach");
    assert_eq!(email.recipient, "ops@acme.example");
    for part in [email.text.as_str(), email.html.as_deref().expect("html")] {
        assert!(part.contains("8,500.00 USD"));
        assert!(part.contains("3 short of the 15 required"));
        assert!(part.contains("3 months"));
        assert!(part.contains("partner-success team, who will contact"));
    }

    let esc = escalation_email(&v, "partner-success@candlefish.example").expect("render");
    assert_eq!(
        esc.dedup_key,
        "escalation:2025-08:OP-0001:TER-AUS:partner-success@candlefish.example"
    );
    let other = escalation_email(&v, "ps2@candlefish.example").expect("render");
    assert_ne!(other.dedup_key, esc.dedup_key, "each address gets its copy");
    assert_eq!(esc.kind, "escalation");
    assert_eq!(esc.recipient, "partner-success@candlefish.example");
    assert!(esc.subject.contains("3 consecutive months"));
    assert!(
        esc.text.contains("ops@acme.example"),
        "names the operator's contact"
    );
    assert!(esc.text.contains("TER-AUS"));

    let mut first = v.clone();
    first.consecutive_breaches = 1;
    first.escalated = false;
    let email = exclusivity_breach_email(&first).expect("render");
    assert!(!email.text.contains("in a row.\n"));
    assert!(email.text.contains("If the requirements stay unmet"));
}
