//! The equity emails (R8.2): leadership's list names who gained and who lost and why,
//! the operator's email carries the plan's program terms, dedup keys per period.

use super::*;
use crate::mail::render::testing;

fn row(id: &str, failed: &str) -> EquityRowView {
    EquityRowView {
        operator_id: id.into(),
        operator_name: format!("{id} Services"),
        tier: "platinum".into(),
        tenure_months: 14,
        mrr: "52,000.00 USD".into(),
        retention: "97.5 %".into(),
        failed: failed.into(),
    }
}

#[test]
fn every_template_parses() {
    testing::templates_parse(TEMPLATES);
}

#[test]
fn r8_2_leadership_list_names_who_gained_and_who_lost_and_why() {
    let v = EquityChangesView {
        period: "2025-06".into(),
        recipient: "leadership@candlefish.example".into(),
        gained: vec![row("OP-0001", "")],
        lost: vec![row("OP-0002", "mrr,retention")],
    };
    let e = equity_changes_email(&v).unwrap();
    assert_eq!(e.kind, CHANGES_KIND);
    assert_eq!(e.audience, Audience::PeriodicInternal);
    assert_eq!(e.period.as_deref(), Some("2025-06"));
    assert!(
        e.subject.contains("1 operator gained, 1 lost"),
        "{}",
        e.subject
    );
    assert!(e.text.contains("Gained eligibility (1):"), "{}", e.text);
    assert!(
        e.text
            .contains("OP-0001  OP-0001 Services — platinum, tenure 14 months")
    );
    assert!(
        e.text.contains("OP-0002  OP-0002 Services — MRR below the minimum, customer retention not above the minimum"),
        "{}",
        e.text
    );
    let html = e.html.unwrap();
    assert!(html.contains("Lost eligibility (1)") && html.contains("MRR below the minimum"));
    // Other changes in the same period: another email; the same: the same key.
    let mut other = v.clone();
    other.lost.clear();
    assert_ne!(equity_changes_email(&other).unwrap().dedup_key, e.dedup_key);
    assert_eq!(equity_changes_email(&v).unwrap().dedup_key, e.dedup_key);
}

#[test]
fn r8_2_the_operator_that_gained_gets_the_program_terms() {
    let v = EquityGainedView {
        period: "2025-06".into(),
        recipient: "ops@op-0001.example".into(),
        operator: row("OP-0001", ""),
        pool: "a 10 % pool".into(),
        vesting: "four years".into(),
        cliff: "one year".into(),
        valuation_cadence: "yearly".into(),
    };
    let e = equity_gained_email(&v).unwrap();
    assert_eq!(
        (e.kind.as_str(), e.audience),
        (GAINED_KIND, Audience::Operator)
    );
    assert_eq!(e.recipient, "ops@op-0001.example");
    for term in [
        "a 10 % pool",
        "four years",
        "one year",
        "yearly",
        "52,000.00 USD",
        "97.5 %",
    ] {
        assert!(e.text.contains(term), "{term}: {}", e.text);
        assert!(e.html.as_deref().unwrap().contains(term), "{term}");
    }
    assert_eq!(e.dedup_key, "equity_gained:2025-06:OP-0001");
}
