//! The lead mails: golden files, keys per run and recipient, no ops mail without news.

use std::path::PathBuf;

use super::*;
use crate::mail::render::testing;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/leads/golden")
}

fn check_golden(name: &str, actual: &[u8]) {
    testing::check_golden(&golden_dir(), name, actual);
}

#[test]
fn every_template_parses() {
    testing::templates_parse(TEMPLATES);
}

fn line(id: &str, why: &str, operator: &str) -> LeadLine {
    LeadLine {
        lead_id: id.into(),
        source: "web".into(),
        vertical: "dental".into(),
        metro: "Austin".into(),
        created_at: "2025-06-15 09:12 UTC".into(),
        respond_by: "2025-06-16 09:12 UTC".into(),
        why: why.into(),
        operator_id: operator.into(),
    }
}

fn operator_view() -> OperatorLeadsView {
    OperatorLeadsView {
        run_id: "leads-2025-06-abc".into(),
        assigned_at: "2025-06-15 12:00 UTC".into(),
        period: "2025-06".into(),
        operator_id: "OP-0001".into(),
        operator_name: "Acme <Field> Services".into(),
        recipient: "ops@acme.example".into(),
        response_target: "24 hours".into(),
        leads: vec![
            line("LD-1", "your exclusive territory in Austin", "OP-0001"),
            line("LD-2", "you specialise in dental", "OP-0001"),
        ],
    }
}

/// R8.3 + R4.5: the operator's mail lists each lead with when it came in, the
/// deadline and why it is theirs, and states the response-time target.
#[test]
fn r8_3_operator_mail_golden_text_and_html() {
    let email = operator_leads_email(&operator_view()).expect("render");
    check_golden("lead_assignment.txt", email.text.as_bytes());
    check_golden(
        "lead_assignment.html",
        email.html.as_deref().expect("html").as_bytes(),
    );
    assert_eq!(email.audience, Audience::Operator);
    assert_eq!(email.kind, OPERATOR_KIND);
    assert_eq!(email.period.as_deref(), Some("2025-06"));
    assert_eq!(
        email.subject,
        "Candlefish: 2 new leads for OP-0001 — please contact within 24 hours"
    );
    let html = email.html.expect("html");
    assert!(
        html.contains("Acme &lt;Field&gt; Services"),
        "escaped: {html}"
    );
    assert!(email.text.contains("Acme <Field> Services"));
}

/// Keys per run, operator and recipient: the same run never mails an operator twice;
/// another run does; two operators sharing an address each get theirs.
#[test]
fn r8_3_operator_mail_keys_are_per_run_and_recipient() {
    let v = operator_view();
    let a = operator_leads_email(&v).expect("render");
    assert_eq!(
        a.dedup_key,
        "lead_assignment:leads-2025-06-abc:OP-0001:ops@acme.example"
    );
    let mut other_run = v.clone();
    other_run.run_id = "leads-2025-06-def".into();
    assert_ne!(
        a.dedup_key,
        operator_leads_email(&other_run).unwrap().dedup_key
    );
    let mut other_op = v.clone();
    other_op.operator_id = "OP-0002".into();
    assert_ne!(
        a.dedup_key,
        operator_leads_email(&other_op).unwrap().dedup_key
    );
}

fn ops_view() -> OpsLeadsView {
    OpsLeadsView {
        run_id: "leads-2025-06-abc".into(),
        assigned_at: "2025-06-15 12:00 UTC".into(),
        period: "2025-06".into(),
        recipient: "ops@candlefish.example".into(),
        no_capacity: vec![line("LD-7", "", ""), line("LD-8", "", "")],
        still_waiting: vec![line("LD-3", "", "")],
        unmailed: vec![line("LD-9", "you specialise in dental", "OP-0042")],
        ops_mail: OpsMail::EveryRun,
    }
}

/// R8.3: ops gets one mail per run listing the leads without capacity — new and still
/// waiting — and what could not be mailed; none when there is nothing of the kind.
#[test]
fn r8_3_ops_mail_golden_every_run_that_leaves_leads_without_capacity() {
    let email = ops_leads_email(&ops_view()).expect("render").expect("news");
    check_golden("lead_no_capacity.txt", email.text.as_bytes());
    check_golden(
        "lead_no_capacity.html",
        email.html.as_deref().expect("html").as_bytes(),
    );
    assert_eq!(email.audience, Audience::Notice);
    assert_eq!(
        email.dedup_key,
        "lead_no_capacity:leads-2025-06-abc:ops@candlefish.example"
    );
    assert!(
        email
            .subject
            .contains("3 leads without an operator with capacity (2 new)")
            && email
                .subject
                .contains("1 lead assigned to an operator without an address"),
        "{}",
        email.subject
    );
    // Nothing new, but leads still waiting: the spec's "one email per run listing
    // them" mails again (default); `ops_mail = "when_new"` does not.
    let mut old_only = ops_view();
    old_only.no_capacity.clear();
    old_only.unmailed.clear();
    let again = ops_leads_email(&old_only).unwrap().expect("every run");
    assert!(again.text.contains("LD-3"), "{}", again.text);
    assert!(
        again
            .subject
            .contains("1 lead without an operator with capacity (0 new)"),
        "{}",
        again.subject
    );
    old_only.ops_mail = OpsMail::WhenNew;
    assert_eq!(
        ops_leads_email(&old_only).unwrap(),
        None,
        "when_new: no news, no mail"
    );
    let mut quiet = ops_view();
    quiet.no_capacity.clear();
    quiet.still_waiting.clear();
    quiet.unmailed.clear();
    assert_eq!(
        ops_leads_email(&quiet).unwrap(),
        None,
        "nothing to act on: no mail"
    );
    let mut only_unmailed = ops_view();
    only_unmailed.no_capacity.clear();
    only_unmailed.still_waiting.clear();
    let e = ops_leads_email(&only_unmailed).unwrap().expect("unmailed");
    assert!(!e.text.contains("still waiting"), "{}", e.text);
    assert!(e.text.contains("LD-9  -> OP-0042"), "{}", e.text);
}
