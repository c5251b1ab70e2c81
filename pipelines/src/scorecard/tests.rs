//! R8.1 at its boundaries: each clamp edge, null components left out of the total
//! and the weights renormalised over the rest, the windows of the counted values.

use super::*;
use chrono::{NaiveDate, NaiveDateTime};

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn ts(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
}

fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

const M: &str = "2025-06";

/// Operator `op` (joined 2024-01-01) and `idle` (no data at all), customers of `op`
/// given as (signed, go_live, churned).
fn network(customers: &[(&str, Option<&str>, Option<&str>)]) -> Inputs {
    let mut i = Inputs::empty();
    i.operators = df!(
        "operator_id" => ["op", "idle"],
        "joined_on" => [d("2024-01-01"), d("2024-01-01")],
        "terminated_on" => [None::<NaiveDate>, None],
    )
    .unwrap()
    .lazy();
    i.customers = df!(
        "customer_id" => (0..customers.len()).map(|k| format!("c{k}")).collect::<Vec<_>>(),
        "operator_id" => vec![Some("op"); customers.len()],
        "contract_signed_on" => customers.iter().map(|r| d(r.0)).collect::<Vec<_>>(),
        "go_live_on" => customers.iter().map(|r| r.1.map(d)).collect::<Vec<_>>(),
        "churned_on" => customers.iter().map(|r| r.2.map(d)).collect::<Vec<_>>(),
    )
    .unwrap()
    .lazy();
    i
}

/// A paid software line of `cents` for customer c0 recognised wholly in `month`.
fn with_mrr(mut i: Inputs, month: &str, cents: i64, currency: &str) -> Inputs {
    let m = p(month);
    i.invoices = df!(
        "invoice_id" => ["inv"],
        "customer_id" => ["c0"],
        "currency" => [currency],
        "issued_on" => [m.first_day()],
        "status" => ["paid"],
        "paid_on" => [Some(m.first_day())],
        "total_cents" => [cents],
    )
    .unwrap()
    .lazy();
    i.invoice_lines = df!(
        "invoice_id" => ["inv"],
        "line_no" => [1i64],
        "revenue_type" => ["software"],
        "amount_cents" => [cents],
        "service_start" => [m.first_day()],
        "service_end" => [m.last_day()],
    )
    .unwrap()
    .lazy();
    i
}

/// Leads of `source` referred by `by`, created at `at`; `with_column` false drops
/// the optional `referred_by_operator_id` column.
fn with_referrals(mut i: Inputs, rows: &[(&str, Option<&str>, &str)], with_column: bool) -> Inputs {
    let n = rows.len();
    let mut df = df!(
        "lead_id" => (0..n).map(|k| format!("L{k}")).collect::<Vec<_>>(),
        "source" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "vertical" => vec!["dental"; n],
        "metro" => vec!["m1"; n],
        "created_at" => rows.iter().map(|r| ts(r.2)).collect::<Vec<_>>(),
        "assigned_operator_id" => vec![None::<&str>; n],
        "first_contact_at" => vec![None::<NaiveDateTime>; n],
        "converted_customer_id" => vec![None::<&str>; n],
        "referred_by_operator_id" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
    )
    .unwrap();
    if !with_column {
        df = df.drop("referred_by_operator_id").unwrap();
    }
    i.leads = df.lazy();
    i
}

/// (value, score, weight) of `component` for `op` in M.
fn row(i: &Inputs, op: &str, component: &str) -> (Option<f64>, Option<f64>, f64) {
    let out = operator_scorecards(i, p(M), &Plan::playbook())
        .unwrap()
        .filter(
            col("operator_id")
                .eq(lit(op))
                .and(col("component").eq(lit(component))),
        )
        .collect()
        .unwrap();
    assert_eq!(out.height(), 1, "{op} {component}");
    let f = |c: &str| out.column(c).unwrap().f64().unwrap().get(0);
    (f("value"), f("score"), f("weight").unwrap())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn r8_1_every_active_operator_gets_seven_components_and_a_total() {
    let i = network(&[("2024-02-01", None, None)]);
    let out = operator_scorecards(&i, p(M), &Plan::playbook())
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(out.height(), 2 * 8);
    let names: Vec<String> = out
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "period",
            "operator_id",
            "component",
            "value",
            "score",
            "weight"
        ]
    );
    let comps: Vec<&str> = out
        .column("component")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    for c in COMPONENTS.iter().chain([&component::TOTAL]) {
        assert_eq!(comps.iter().filter(|x| *x == c).count(), 2, "{c}");
    }
}

#[test]
fn r8_1_revenue_generation_clamps_at_the_target_and_zero_without_usd() {
    let base = network(&[("2024-02-01", None, None)]);
    for (cents, score) in [
        (1_500_000i64, 100.0),
        (750_000, 50.0),
        (3_000_000, 100.0),
        (1_499_999, 99.99993333333333),
    ] {
        let i = with_mrr(base.clone(), M, cents, "USD");
        let (v, s, w) = row(&i, "op", component::REVENUE_GENERATION);
        assert_eq!(v, Some(cents as f64));
        assert!(close(s.unwrap(), score), "{cents}: {s:?}");
        assert_eq!(w, 0.25);
    }
    // EUR revenue is not the reporting currency: value 0, score 0 (not null).
    let i = with_mrr(base.clone(), M, 2_000_000, "EUR");
    assert_eq!(
        row(&i, "op", component::REVENUE_GENERATION),
        (Some(0.0), Some(0.0), 0.25)
    );
    // A negative MRR (credit notes) clamps at 0.
    let i = with_mrr(base, M, -5_000, "USD");
    assert_eq!(row(&i, "op", component::REVENUE_GENERATION).1, Some(0.0));
}

#[test]
fn r8_1_customer_acquisition_is_the_three_month_average_over_two() {
    // Signed in M−2..M: 04-01, 05-15, 06-30 → 3 / 3 = 1 → 50; 03-31 is M−3: not counted.
    let i = network(&[
        ("2025-03-31", None, None),
        ("2025-04-01", None, None),
        ("2025-05-15", None, None),
        ("2025-06-30", None, None),
    ]);
    let (v, s, w) = row(&i, "op", component::CUSTOMER_ACQUISITION);
    assert_eq!((v, s, w), (Some(1.0), Some(50.0), 0.20));
    // Six in the window → 2 per month → 100; nine → 3 → clamped at 100.
    let six: Vec<_> = (0..6).map(|_| ("2025-05-01", None, None)).collect();
    assert_eq!(
        row(&network(&six), "op", component::CUSTOMER_ACQUISITION).1,
        Some(100.0)
    );
    let nine: Vec<_> = (0..9).map(|_| ("2025-05-01", None, None)).collect();
    assert_eq!(
        row(&network(&nine), "op", component::CUSTOMER_ACQUISITION),
        (Some(3.0), Some(100.0), 0.20)
    );
    // No customers at all: 0, not null.
    assert_eq!(
        row(&i, "idle", component::CUSTOMER_ACQUISITION),
        (Some(0.0), Some(0.0), 0.20)
    );
}

#[test]
fn r8_1_retention_scores_100_at_0_90_and_is_null_without_a_cohort() {
    // 10 customers active at end of M−12, 9 still active: 0.9 → 100; 8 → 0.8 → 88.9.
    let mut rows = vec![("2024-01-01", None, None); 9];
    rows.push(("2024-01-01", None, Some("2025-01-10")));
    let i = network(&rows);
    let (v, s, _) = row(&i, "op", component::CUSTOMER_RETENTION);
    assert!(close(v.unwrap(), 0.9));
    assert!(close(s.unwrap(), 100.0));
    let mut rows = vec![("2024-01-01", None, None); 8];
    rows.extend([("2024-01-01", None, Some("2025-01-10")); 2]);
    let (_, s, _) = row(&network(&rows), "op", component::CUSTOMER_RETENTION);
    assert!(close(s.unwrap(), 100.0 * 0.8 / 0.9));
    // idle has no cohort: null value and score.
    assert_eq!(
        row(&i, "idle", component::CUSTOMER_RETENTION),
        (None, None, 0.20)
    );
}

#[test]
fn r8_1_implementation_speed_is_100_at_14_days_and_0_at_28() {
    for (days, score) in [(14, 100.0), (10, 100.0), (21, 50.0), (28, 0.0), (35, 0.0)] {
        let live = (d("2025-06-01") + chrono::Duration::days(days)).to_string();
        let signed = "2025-06-01";
        // went live in M (the window is M−2..M)
        let i = network(&[(signed, Some(live.as_str()), None)]);
        if live.as_str() > "2025-06-30" {
            continue;
        }
        let (v, s, w) = row(&i, "op", component::IMPLEMENTATION_SPEED);
        assert_eq!(v, Some(days as f64));
        assert!(close(s.unwrap(), score), "{days} days: {s:?}");
        assert_eq!(w, 0.15);
    }
    // 28 and 35 days with an earlier signature, going live in M.
    for (days, score) in [(28i64, 0.0), (35, 0.0), (27, 100.0 / 14.0)] {
        let signed = (d("2025-06-20") - chrono::Duration::days(days)).to_string();
        let i = network(&[(signed.as_str(), Some("2025-06-20"), None)]);
        let (_, s, _) = row(&i, "op", component::IMPLEMENTATION_SPEED);
        assert!(close(s.unwrap(), score), "{days} days: {s:?}");
    }
    assert_eq!(
        row(&network(&[]), "op", component::IMPLEMENTATION_SPEED),
        (None, None, 0.15)
    );
}

#[test]
fn r8_1_satisfaction_is_nps_over_50_clamped_and_null_below_min_responses() {
    let nps = |scores: &[i64]| {
        let mut i = network(&[("2024-02-01", None, None)]);
        let n = scores.len();
        i.survey_responses = df!(
            "response_id" => (0..n).map(|k| format!("r{k}")).collect::<Vec<_>>(),
            "customer_id" => vec!["c0"; n],
            "operator_id" => vec!["op"; n],
            "submitted_on" => vec![d("2025-06-10"); n],
            "nps_score" => scores.iter().map(|s| Some(*s)).collect::<Vec<_>>(),
            "csat_score" => vec![None::<i64>; n],
        )
        .unwrap()
        .lazy();
        row(&i, "op", component::CUSTOMER_SATISFACTION)
    };
    // 3 promoters, 1 passive, 1 detractor of 5: NPS 40 → 80
    assert_eq!(nps(&[10, 9, 9, 7, 3]), (Some(40.0), Some(80.0), 0.10));
    // NPS 100 → clamped 100; NPS −100 → 0
    assert_eq!(nps(&[10; 5]).1, Some(100.0));
    assert_eq!(nps(&[0; 5]).1, Some(0.0));
    // NPS 25 → 50; NPS exactly 50 (4 promoters, 1 detractor of 6) → 100
    assert_eq!(
        nps(&[10, 10, 10, 7, 2, 9, 8, 1]),
        (Some(25.0), Some(50.0), 0.10)
    );
    assert_eq!(nps(&[10, 10, 9, 9, 8, 6]), (Some(50.0), Some(100.0), 0.10));
    // four responses: below min_survey_responses → null
    assert_eq!(nps(&[10; 4]), (None, None, 0.10));
}

#[test]
fn r8_1_training_compliance_is_the_r4_6_share() {
    let mut i = network(&[]);
    i.training = df!(
        "operator_id" => ["op", "op", "op", "op"],
        "module_id" => ["a", "b", "c", "d"],
        "required" => [true, true, true, false],
        "completed_on" => [Some(d("2025-01-01")), Some(d("2025-06-30")), None, Some(d("2025-01-01"))],
    )
    .unwrap()
    .lazy();
    let (v, s, w) = row(&i, "op", component::TRAINING_COMPLIANCE);
    assert!(close(v.unwrap(), 2.0 / 3.0));
    assert!(close(s.unwrap(), 200.0 / 3.0));
    assert_eq!(w, 0.05);
    assert_eq!(
        row(&i, "idle", component::TRAINING_COMPLIANCE),
        (None, None, 0.05)
    );
}

#[test]
fn r8_1_community_contribution_counts_referrals_of_the_last_twelve_months() {
    let base = network(&[]);
    let i = with_referrals(
        base.clone(),
        &[
            ("referral", Some("op"), "2024-07-01 00:00"), // M−11 starts: counted
            ("referral", Some("op"), "2024-06-30 23:59"), // M−12: not counted
            ("referral", Some("op"), "2025-06-30 23:59"), // M: counted
            ("web", Some("op"), "2025-05-01 10:00"),      // not a referral
            ("referral", Some("idle"), "2025-05-01 10:00"),
            ("referral", None, "2025-05-01 10:00"),
        ],
        true,
    );
    assert_eq!(
        row(&i, "op", component::COMMUNITY_CONTRIBUTION),
        (Some(2.0), Some(50.0), 0.05)
    );
    assert_eq!(
        row(&i, "idle", component::COMMUNITY_CONTRIBUTION),
        (Some(1.0), Some(25.0), 0.05)
    );
    let many: Vec<_> = (0..5)
        .map(|_| ("referral", Some("op"), "2025-06-01 00:00"))
        .collect();
    let i = with_referrals(base.clone(), &many, true);
    assert_eq!(
        row(&i, "op", component::COMMUNITY_CONTRIBUTION).1,
        Some(100.0)
    );
    // Without the optional column: null value and score, left out of the total.
    let i = with_referrals(base, &many, false);
    assert_eq!(
        row(&i, "op", component::COMMUNITY_CONTRIBUTION),
        (None, None, 0.05)
    );
}

#[test]
fn r8_1_total_renormalises_the_weights_over_components_with_a_score() {
    // op: revenue 750,000 USD (50), acquisition 1 (50), community 2 referrals (50);
    // retention, implementation, satisfaction, training null → weights 0.25 + 0.20 +
    // 0.05 = 0.5, total 50.
    let i = with_mrr(
        network(&[
            ("2025-05-01", None, None),
            ("2025-05-02", None, None),
            ("2025-06-01", None, None),
        ]),
        M,
        750_000,
        "USD",
    );
    let i = with_referrals(
        i,
        &[
            ("referral", Some("op"), "2025-06-01 00:00"),
            ("referral", Some("op"), "2025-06-02 00:00"),
        ],
        true,
    );
    let (v, s, w) = row(&i, "op", component::TOTAL);
    assert_eq!(v, None);
    assert!(close(w, 0.5), "{w}");
    assert!(close(s.unwrap(), 50.0), "{s:?}");
    // idle: revenue 0, acquisition 0, community 0 → weight 0.5, score 0 (not null).
    let (v, s, w) = row(&i, "idle", component::TOTAL);
    assert_eq!((v, s), (None, Some(0.0)));
    assert!(close(w, 0.5));
    // Different scores: (0.25·100 + 0.20·50 + 0.05·0) / 0.5 = 70.
    let i = with_mrr(
        network(&[
            ("2025-05-01", None, None),
            ("2025-05-02", None, None),
            ("2025-06-01", None, None),
        ]),
        M,
        2_000_000,
        "USD",
    );
    let i = with_referrals(i, &[], true);
    let (_, s, w) = row(&i, "op", component::TOTAL);
    assert!(close(w, 0.5));
    assert!(close(s.unwrap(), 70.0), "{s:?}");
}

#[test]
fn r8_1_terminated_operators_have_no_scorecard() {
    let mut i = network(&[]);
    i.operators = df!(
        "operator_id" => ["op", "gone"],
        "joined_on" => [d("2024-01-01"), d("2024-01-01")],
        "terminated_on" => [None, Some(d("2025-06-30"))],
    )
    .unwrap()
    .lazy();
    let out = operator_scorecards(&i, p(M), &Plan::playbook())
        .unwrap()
        .collect()
        .unwrap();
    let ops: Vec<&str> = out
        .column("operator_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert!(ops.iter().all(|o| *o == "op"));
}

#[test]
fn r8_1_report_lead_pipeline_counts_the_month_of_creation() {
    let mut i = network(&[]);
    i.leads = df!(
        "lead_id" => ["a", "b", "c", "d", "e"],
        "source" => ["web"; 5],
        "vertical" => ["dental"; 5],
        "metro" => ["m1"; 5],
        "created_at" => [ts("2025-06-01 00:00"), ts("2025-06-10 09:00"), ts("2025-06-30 23:59"), ts("2025-05-31 23:59"), ts("2025-06-05 00:00")],
        "assigned_operator_id" => [Some("op"), Some("op"), Some("op"), Some("op"), None],
        "first_contact_at" => [Some(ts("2025-06-01 05:00")), None, Some(ts("2025-07-01 01:00")), None, None],
        "converted_customer_id" => [Some("c1"), None, None, None, None],
    )
    .unwrap()
    .lazy();
    let out = lead_pipeline(&i, p(M)).collect().unwrap();
    assert_eq!(out.height(), 1);
    let v = |c: &str| out.column(c).unwrap().i64().unwrap().get(0).unwrap();
    assert_eq!((v("assigned"), v("contacted"), v("converted")), (3, 2, 1));
}

#[test]
fn r8_1_report_training_progress_counts_required_modules_done_by_end_of_m() {
    let mut i = network(&[]);
    i.training = df!(
        "operator_id" => ["op", "op", "op", "op", "op"],
        "module_id" => ["a", "a", "b", "c", "d"],
        "required" => [true, true, true, true, false],
        "completed_on" => [None, Some(d("2025-06-30")), Some(d("2025-07-01")), None, Some(d("2025-01-01"))],
    )
    .unwrap()
    .lazy();
    let out = alerts::training_progress(&i, p(M)).collect().unwrap();
    let v = |c: &str| out.column(c).unwrap().i64().unwrap().get(0).unwrap();
    assert_eq!((v("required"), v("completed")), (3, 1));
}
