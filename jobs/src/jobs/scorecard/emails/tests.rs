//! The monthly operator report (R8.1): golden text part, the HTML's charts and
//! components, one per operator and period.

use std::path::PathBuf;

use super::*;
use crate::mail::render::testing;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/jobs/scorecard/golden")
}

fn component(
    id: &str,
    label: &str,
    value: &str,
    score: &str,
    weight: &str,
    advice: &str,
) -> ComponentView {
    ComponentView {
        component: id.into(),
        label: label.into(),
        value: value.into(),
        score: score.into(),
        weight: weight.into(),
        advice: advice.into(),
    }
}

fn view() -> OperatorReportView {
    let m = Period::parse("2025-06").unwrap();
    OperatorReportView {
        period: "2025-06".into(),
        operator_id: "OP-0007".into(),
        operator_name: "Bay Area Field Services".into(),
        recipient: "ops@op-0007.example".into(),
        currency: "USD".into(),
        total: Some(61.25),
        weight_covered: 0.95,
        components: vec![
            component(
                "revenue_generation",
                "Revenue (MRR)",
                "7,500.00 USD",
                "50.0",
                "25 %",
                "7,500.00 USD more monthly recurring revenue reaches the full score (15,000.00 USD of MRR).",
            ),
            component(
                "customer_acquisition",
                "New customers",
                "1.00 a month (last 3 months)",
                "50.0",
                "20 %",
                "Signing 2 new customers a month reaches the full score.",
            ),
            component(
                "customer_retention",
                "Customer retention",
                "90.0 %",
                "100.0",
                "20 %",
                "Full score — keep it there.",
            ),
            component(
                "implementation_speed",
                "Implementation time",
                "—",
                "—",
                "15 %",
                "No score this month: no customer went live in the last three months.",
            ),
            component(
                "customer_satisfaction",
                "Net Promoter Score",
                "40",
                "80.0",
                "10 %",
                "An NPS of 50 reaches the full score.",
            ),
            component(
                "training_compliance",
                "Training",
                "66.7 %",
                "66.7",
                "5 %",
                "Completing every required module reaches the full score.",
            ),
            component(
                "community_contribution",
                "Referrals",
                "2 in the last 12 months",
                "50.0",
                "5 %",
                "Referring 4 leads a year reaches the full score.",
            ),
        ],
        trend: m
            .add_months(-11)
            .through(m)
            .enumerate()
            .map(|(i, p)| TrendPointView {
                period: p,
                total: (i >= 6).then_some(40.0 + i as f64 * 2.0),
                mrr_cents: (i >= 6).then_some(500_000 + i as i64 * 50_000),
                customers: Some(3 + i as i64 / 3),
            })
            .collect(),
        leads: LeadPipelineView {
            assigned: 4,
            contacted: 3,
            converted: 1,
        },
        modules_required: 3,
        modules_completed: 2,
    }
}

#[test]
fn every_template_parses() {
    testing::templates_parse(TEMPLATES);
}

#[test]
fn r8_1_operator_report_golden_text() {
    let e = operator_report_email(&view()).unwrap();
    testing::check_golden(&golden_dir(), "operator_report.txt", e.text.as_bytes());
    assert_eq!(e.kind, KIND);
    assert_eq!(e.audience, Audience::Operator);
    assert_eq!(e.dedup_key, "operator_report:2025-06:OP-0007");
    assert_eq!(
        e.subject,
        "Your Candlefish scorecard for 2025-06: 61.2 of 100 (OP-0007)"
    );
}

#[test]
fn r8_1_operator_report_html_has_components_charts_pipeline_and_training() {
    let e = operator_report_email(&view()).unwrap();
    let html = e.html.unwrap();
    for id in [
        "component-revenue_generation",
        "component-community_contribution",
        "chart-score",
        "chart-mrr",
        "chart-customers",
        "lead-pipeline",
        "training",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert_eq!(html.matches("<svg").count(), 3, "three inline charts");
    assert!(html.contains("4 assigned to you, 3 contacted, 1 converted."));
    assert!(html.contains("2 of 3 required modules completed."));
    // The axis starts at the first month with a figure, its label naming the year.
    assert!(
        html.contains("Jul 2024"),
        "axis starts where the data starts"
    );
}

#[test]
fn r8_1_a_young_operator_gets_a_report_without_history() {
    let mut v = view();
    for t in &mut v.trend {
        if t.period.to_string() != "2025-06" {
            (t.total, t.mrr_cents, t.customers) = (None, None, None);
        }
    }
    v.total = None;
    let e = operator_report_email(&v).unwrap();
    assert!(
        e.text.contains("scorecard for 2025-06 (OP-0007): — of 100"),
        "{}",
        e.text
    );
    assert!(e.html.unwrap().contains("id=\"chart-score\""));
}
