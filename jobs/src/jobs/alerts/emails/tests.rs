//! The alert email: golden files and its dedup on content (R4).

use std::path::PathBuf;

use super::*;
use crate::mail::render::testing;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/jobs/alerts/golden")
}

/// Compares `actual` with the golden file, or rewrites it under `UPDATE_GOLDEN=1`.
fn check_golden(name: &str, actual: &[u8]) {
    testing::check_golden(&golden_dir(), name, actual);
}

#[test]
fn every_template_parses() {
    testing::templates_parse(TEMPLATES);
}

/// Three breaches worded as the alerts job words them, from the Playbook plan: one
/// minimum over two months (acquisition), one maximum (response time), one share.
fn alert_view() -> AlertView {
    let plan = opnet_pipelines::Plan::playbook();
    let m = opnet_pipelines::Period::parse("2025-08").expect("period");
    let breach = |metric: &str, value: f64, threshold: f64| {
        crate::jobs::alerts::breach_view(metric, value, threshold, &plan, m)
    };
    AlertView {
        period: "2025-08".into(),
        operator_id: "OP-0001".into(),
        operator_name: "Acme Field Services".into(),
        recipient: "ops@acme.example".into(),
        breaches: vec![
            breach("customer_acquisition", 0.0, 1.0),
            breach("customer_retention", 0.725, 0.8),
            breach("response_hours", 30.5, 24.0),
        ],
    }
}

/// Issue 14: an alert says which way the threshold points, the value, the threshold
/// and the target, so the operator knows what is wrong and what good looks like.
#[test]
fn r4_alert_golden_text_and_html() {
    let email = alert_email(&alert_view()).expect("render");
    check_golden("alert.txt", email.text.as_bytes());
    check_golden(
        "alert.html",
        email.html.as_deref().expect("html").as_bytes(),
    );
    for part in [email.text.as_str(), email.html.as_deref().expect("html")] {
        for phrase in [
            "0 new customers in 2025-08",
            "below 1 new customer in two consecutive months",
            "at least 1 new customer every month",
            "30.5 hours on average",
            "above 24 hours on average",
            "at most 24 hours on average",
            "72.5 %",
            "below 80 %",
            "at least 80 %",
        ] {
            assert!(part.contains(phrase), "{phrase:?} missing:\n{part}");
        }
    }
}

#[test]
fn r4_alert_lists_every_breach_and_dedups_on_content() {
    let v = alert_view();
    let email = alert_email(&v).expect("render");
    assert!(email.dedup_key.starts_with("alert:2025-08:OP-0001:"));
    assert_eq!(email.dedup_key.len(), "alert:2025-08:OP-0001:".len() + 16);
    assert!(email.subject.contains("3 metrics"));
    // Same content in another order: the same email. Different content: a new one.
    let mut reordered = v.clone();
    reordered.breaches.reverse();
    assert_eq!(
        alert_email(&reordered).expect("render").dedup_key,
        email.dedup_key
    );
    let mut changed = v.clone();
    changed.breaches[2] = crate::jobs::alerts::breach_view(
        "response_hours",
        31.0,
        24.0,
        &opnet_pipelines::Plan::playbook(),
        opnet_pipelines::Period::parse("2025-08").expect("period"),
    );
    assert_ne!(
        alert_email(&changed).expect("render").dedup_key,
        email.dedup_key
    );
    // The same figures worded differently are the same alert: not sent again.
    let mut reworded = v.clone();
    reworded.breaches[0].alert_when = "fewer than 1 signature in two months".into();
    assert_eq!(
        alert_email(&reworded).expect("render").dedup_key,
        email.dedup_key
    );
}

#[test]
fn html_is_escaped() {
    let mut v = alert_view();
    v.operator_name = "<script>x</script> & Co".into();
    let email = alert_email(&v).expect("render");
    let html = email.html.as_deref().expect("html");
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;"));
    assert!(
        email.text.contains("<script>x</script> & Co"),
        "text is not escaped"
    );
}
