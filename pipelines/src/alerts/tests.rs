//! R4 metrics at and just past each threshold, null metrics without data, and the wording
//! of alerts (direction, threshold and target taken from the plan).

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

/// Operator `op` joined 2024-01-01 (tenure ≥ 2 in M).
fn with_op(joined: &str) -> Inputs {
    let mut i = Inputs::empty();
    i.operators = df!(
        "operator_id" => ["op"],
        "joined_on" => [d(joined)],
        "terminated_on" => [None::<NaiveDate>],
    )
    .unwrap()
    .lazy();
    i
}

/// Customers of `op`: (signed, go_live, churned).
fn customers(rows: &[(&str, Option<&str>, Option<&str>)]) -> LazyFrame {
    df!(
        "customer_id" => (0..rows.len()).map(|i| format!("c{i}")).collect::<Vec<_>>(),
        "operator_id" => vec![Some("op"); rows.len()],
        "contract_signed_on" => rows.iter().map(|r| d(r.0)).collect::<Vec<_>>(),
        "go_live_on" => rows.iter().map(|r| r.1.map(d)).collect::<Vec<_>>(),
        "churned_on" => rows.iter().map(|r| r.2.map(d)).collect::<Vec<_>>(),
    )
    .unwrap()
    .lazy()
}

/// (value, threshold, breached) of `metric` for `op`.
fn metric(inputs: &Inputs, month: &str, metric: &str) -> (Option<f64>, f64, bool) {
    let out = operator_metrics(inputs, p(month), &Plan::playbook())
        .filter(
            col("operator_id")
                .eq(lit("op"))
                .and(col("metric").eq(lit(metric))),
        )
        .collect()
        .unwrap();
    assert_eq!(out.height(), 1, "{metric}");
    (
        out.column("value").unwrap().f64().unwrap().get(0),
        out.column("threshold")
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap(),
        out.column("breached")
            .unwrap()
            .bool()
            .unwrap()
            .get(0)
            .unwrap(),
    )
}

#[test]
fn r4_six_metrics_per_active_operator_sorted() {
    let mut i = with_op("2024-01-01");
    i.operators = df!(
        "operator_id" => ["op", "b", "gone", "later"],
        "joined_on" => [d("2024-01-01"), d("2024-01-01"), d("2024-01-01"), d("2025-07-01")],
        "terminated_on" => [None, None, Some(d("2025-06-30")), None],
    )
    .unwrap()
    .lazy();
    let out = operator_metrics(&i, p(M), &Plan::playbook())
        .collect()
        .unwrap();
    let ops: Vec<_> = out
        .column("operator_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    let metrics: Vec<_> = out
        .column("metric")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(
        ops,
        [vec!["b"; 6], vec!["op"; 6]].concat(),
        "terminated and not-yet-joined excluded"
    );
    assert_eq!(metrics[..6], METRICS);
    let names: Vec<String> = out
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "period",
            "operator_id",
            "metric",
            "value",
            "threshold",
            "breached"
        ]
    );
    // nothing but acquisitions has data: nulls, never an alert
    let values = out.column("value").unwrap().f64().unwrap();
    assert_eq!(values.null_count(), 10);
    assert!(
        out.column("breached")
            .unwrap()
            .bool()
            .unwrap()
            .iter()
            .all(|b| b == Some(true) || b == Some(false))
    );
}

#[test]
fn r4_1_acquisition_alerts_only_when_both_months_below() {
    // none in M, none in M−1 → breach (0 is data)
    let mut i = with_op("2024-01-01");
    assert_eq!(metric(&i, M, CUSTOMER_ACQUISITION), (Some(0.0), 1.0, true));
    // one in M (equal to threshold): no breach
    i.customers = customers(&[("2025-06-30", None, None)]);
    assert_eq!(metric(&i, M, CUSTOMER_ACQUISITION), (Some(1.0), 1.0, false));
    // one in M−1 only: M below but M−1 not → no breach
    i.customers = customers(&[("2025-05-01", None, None)]);
    assert_eq!(metric(&i, M, CUSTOMER_ACQUISITION), (Some(0.0), 1.0, false));
    // two in M: above
    i.customers = customers(&[("2025-06-01", None, None), ("2025-06-15", None, None)]);
    assert_eq!(metric(&i, M, CUSTOMER_ACQUISITION), (Some(2.0), 1.0, false));
}

#[test]
fn r4_1_never_alerts_at_tenure_1_but_does_at_tenure_2() {
    let i = with_op("2025-06-10");
    assert_eq!(metric(&i, M, CUSTOMER_ACQUISITION), (Some(0.0), 1.0, false));
    let i = with_op("2025-05-31");
    assert_eq!(metric(&i, M, CUSTOMER_ACQUISITION), (Some(0.0), 1.0, true));
}

#[test]
fn r4_2_implementation_days_threshold() {
    let mut i = with_op("2024-01-01");
    // went live in M−2..M: 28 days (equal) → no breach
    i.customers = customers(&[("2025-04-03", Some("2025-05-01"), None)]);
    assert_eq!(
        metric(&i, M, IMPLEMENTATION_DAYS),
        (Some(28.0), 28.0, false)
    );
    // 29 days → breach; mean of 27 and 30 = 28.5 → breach
    i.customers = customers(&[("2025-04-02", Some("2025-05-01"), None)]);
    assert_eq!(metric(&i, M, IMPLEMENTATION_DAYS), (Some(29.0), 28.0, true));
    i.customers = customers(&[
        ("2025-06-03", Some("2025-06-30"), None),
        ("2025-04-01", Some("2025-05-01"), None),
    ]);
    assert_eq!(metric(&i, M, IMPLEMENTATION_DAYS), (Some(28.5), 28.0, true));
    // 27 days → fine
    i.customers = customers(&[("2025-04-04", Some("2025-05-01"), None)]);
    assert_eq!(
        metric(&i, M, IMPLEMENTATION_DAYS),
        (Some(27.0), 28.0, false)
    );
}

#[test]
fn r4_2_no_go_live_in_window_is_null() {
    let mut i = with_op("2024-01-01");
    // went live 2025-03-31 (before M−2) and 2025-07-01 (after M) or never
    i.customers = customers(&[
        ("2025-01-01", Some("2025-03-31"), None),
        ("2025-01-01", Some("2025-07-01"), None),
        ("2025-01-01", None, None),
    ]);
    assert_eq!(metric(&i, M, IMPLEMENTATION_DAYS), (None, 28.0, false));
}

/// `cohort` customers active at end of M−12 (2024-06-30), of which `churned`
/// churn before end of M.
fn retention(cohort: usize, churned: usize) -> (Option<f64>, f64, bool) {
    let mut i = with_op("2024-01-01");
    let mut rows: Vec<(&str, Option<&str>, Option<&str>)> = (0..cohort)
        .map(|k| {
            (
                "2024-01-01",
                None,
                if k < churned {
                    Some("2025-06-30")
                } else {
                    None
                },
            )
        })
        .collect();
    // signed after M−12 and churned before M−12: outside the cohort
    rows.push(("2024-07-01", None, None));
    rows.push(("2024-01-01", None, Some("2024-06-30")));
    i.customers = customers(&rows);
    metric(&i, M, CUSTOMER_RETENTION)
}

#[test]
fn r4_3_customer_retention_threshold() {
    assert_eq!(retention(10, 1), (Some(0.9), 0.8, false));
    assert_eq!(
        retention(5, 1),
        (Some(0.8), 0.8, false),
        "equal is not a breach"
    );
    assert_eq!(retention(10, 3), (Some(0.7), 0.8, true));
    let (v, _, b) = retention(100, 21);
    assert_eq!((v, b), (Some(0.79), true));
}

#[test]
fn r4_3_empty_cohort_is_null() {
    assert_eq!(retention(0, 0), (None, 0.8, false));
}

/// NPS responses for `op` in M.
fn with_nps(scores: &[i64]) -> Inputs {
    let mut i = with_op("2024-01-01");
    let n = scores.len();
    i.survey_responses = df!(
        "response_id" => (0..n).map(|k| format!("r{k}")).collect::<Vec<_>>(),
        "customer_id" => vec!["c"; n],
        "operator_id" => vec!["op"; n],
        "submitted_on" => vec![d("2025-04-01"); n],
        "nps_score" => scores.iter().map(|s| Some(*s)).collect::<Vec<_>>(),
        "csat_score" => vec![None::<i64>; n],
    )
    .unwrap()
    .lazy();
    i
}

#[test]
fn r4_4_nps_threshold() {
    // 10 responses: 4 promoters, 1 detractor, 5 passives → 30 (equal) no breach
    let at = with_nps(&[9, 10, 9, 10, 6, 7, 8, 7, 8, 7]);
    assert_eq!(metric(&at, M, NPS), (Some(30.0), 30.0, false));
    // 3 promoters, 1 detractor → 20 breach
    let below = with_nps(&[9, 10, 9, 8, 6, 7, 8, 7, 8, 7]);
    assert_eq!(metric(&below, M, NPS), (Some(20.0), 30.0, true));
    // 4 promoters, 0 detractors → 40
    let above = with_nps(&[9, 10, 9, 10, 7, 7, 8, 7, 8, 7]);
    assert_eq!(metric(&above, M, NPS), (Some(40.0), 30.0, false));
    // 0 is a detractor, 9 a promoter, 7 a passive: (1 − 1) / 5 → 0
    let mixed = with_nps(&[0, 9, 7, 7, 7]);
    assert_eq!(metric(&mixed, M, NPS), (Some(0.0), 30.0, true));
}

#[test]
fn r4_4_too_few_responses_is_null() {
    let few = with_nps(&[0, 0, 0, 0]);
    assert_eq!(metric(&few, M, NPS), (None, 30.0, false));
    // responses outside M−2..M do not count
    let mut old = with_nps(&[0, 0, 0, 0, 0]);
    old.survey_responses = old
        .survey_responses
        .with_column(lit(d("2025-03-31")).alias("submitted_on"));
    assert_eq!(metric(&old, M, NPS), (None, 30.0, false));
}

/// Leads of `op`: (created_at, first_contact_at).
fn with_leads(rows: &[(&str, Option<&str>)]) -> Inputs {
    let mut i = with_op("2024-01-01");
    let n = rows.len();
    i.leads = df!(
        "lead_id" => (0..n).map(|k| format!("l{k}")).collect::<Vec<_>>(),
        "created_at" => rows.iter().map(|r| ts(r.0)).collect::<Vec<_>>(),
        "assigned_operator_id" => vec![Some("op"); n],
        "first_contact_at" => rows.iter().map(|r| r.1.map(ts)).collect::<Vec<_>>(),
    )
    .unwrap()
    .lazy()
    .with_columns([
        col("created_at").cast(DataType::Datetime(TimeUnit::Milliseconds, None)),
        col("first_contact_at").cast(DataType::Datetime(TimeUnit::Milliseconds, None)),
    ]);
    i
}

#[test]
fn r4_5_response_hours_threshold() {
    let equal = with_leads(&[("2025-06-10 08:00", Some("2025-06-11 08:00"))]);
    assert_eq!(metric(&equal, M, RESPONSE_HOURS), (Some(24.0), 24.0, false));
    let above = with_leads(&[("2025-06-10 08:00", Some("2025-06-11 08:01"))]);
    let (v, _, b) = metric(&above, M, RESPONSE_HOURS);
    assert!(v.unwrap() > 24.0 && b);
    let below = with_leads(&[
        ("2025-06-10 08:00", Some("2025-06-10 10:00")),
        ("2025-06-01 00:00", Some("2025-06-01 20:00")),
    ]);
    assert_eq!(metric(&below, M, RESPONSE_HOURS), (Some(11.0), 24.0, false));
}

#[test]
fn r4_5_uncontacted_leads_count_up_to_end_of_m() {
    // created 2025-06-30 12:00, never contacted: 12 h to 2025-07-01 00:00
    let i = with_leads(&[("2025-06-30 12:00", None)]);
    assert_eq!(metric(&i, M, RESPONSE_HOURS), (Some(12.0), 24.0, false));
    // contacted after end of M also counts up to end of M only
    let i = with_leads(&[("2025-06-29 00:00", Some("2025-07-05 00:00"))]);
    assert_eq!(metric(&i, M, RESPONSE_HOURS), (Some(48.0), 24.0, true));
    // leads created outside M (2025-05-31 23:59, 2025-07-01 00:00) do not count
    let i = with_leads(&[("2025-05-31 23:59", None), ("2025-07-01 00:00", None)]);
    assert_eq!(metric(&i, M, RESPONSE_HOURS), (None, 24.0, false));
}

/// Required modules of `op` with their completion dates, plus one optional module.
fn with_training(done: &[Option<&str>]) -> Inputs {
    let mut i = with_op("2024-01-01");
    let n = done.len();
    let mut ids: Vec<String> = (0..n).map(|k| format!("m{k}")).collect();
    ids.push("optional".into());
    let mut required = vec![true; n];
    required.push(false);
    let mut completed: Vec<Option<NaiveDate>> = done.iter().map(|c| c.map(d)).collect();
    completed.push(None);
    i.training = df!(
        "operator_id" => vec!["op"; n + 1],
        "module_id" => ids,
        "required" => required,
        "completed_on" => completed,
    )
    .unwrap()
    .lazy();
    i
}

#[test]
fn r4_6_training_completion_threshold() {
    let c = Some("2025-01-01");
    assert_eq!(
        metric(&with_training(&[c, c, c, c, None]), M, TRAINING_COMPLETION),
        (Some(0.8), 0.8, false)
    );
    assert_eq!(
        metric(&with_training(&[c, c, c, c, c]), M, TRAINING_COMPLETION),
        (Some(1.0), 0.8, false)
    );
    assert_eq!(
        metric(&with_training(&[c, c, c, None]), M, TRAINING_COMPLETION),
        (Some(0.75), 0.8, true)
    );
    // completed after end of M does not count yet
    let late = with_training(&[c, c, c, c, Some("2025-07-01")]);
    assert_eq!(
        metric(&late, M, TRAINING_COMPLETION),
        (Some(0.8), 0.8, false)
    );
    let late = with_training(&[c, c, c, Some("2025-07-01"), Some("2025-06-30")]);
    assert_eq!(
        metric(&late, M, TRAINING_COMPLETION),
        (Some(0.8), 0.8, false)
    );
}

#[test]
fn r4_6_no_required_modules_is_null() {
    assert_eq!(
        metric(&with_training(&[]), M, TRAINING_COMPLETION),
        (None, 0.8, false)
    );
}

#[test]
fn r4_thresholds_come_from_the_plan() {
    let mut plan = Plan::playbook();
    plan.thresholds.implementation_days_max = 30.0;
    let mut i = with_op("2024-01-01");
    i.customers = customers(&[("2025-04-02", Some("2025-05-01"), None)]);
    let out = operator_metrics(&i, p(M), &plan)
        .filter(col("metric").eq(lit(IMPLEMENTATION_DAYS)))
        .collect()
        .unwrap();
    assert_eq!(
        out.column("threshold").unwrap().f64().unwrap().get(0),
        Some(30.0)
    );
    assert_eq!(
        out.column("breached").unwrap().bool().unwrap().get(0),
        Some(false)
    );
}

#[test]
fn r4_wording_states_the_direction_the_threshold_and_the_target() {
    let plan = Plan::playbook();
    let m = Period::parse("2025-08").unwrap();
    let cases = [
        (
            CUSTOMER_ACQUISITION,
            0.0,
            "0 new customers in 2025-08",
            "below 1 new customer in two consecutive months",
            "at least 1 new customer every month",
        ),
        (
            IMPLEMENTATION_DAYS,
            31.5,
            "31.5 days on average",
            "above 28 days on average",
            "at most 28 days on average",
        ),
        (
            CUSTOMER_RETENTION,
            0.725,
            "72.5 %",
            "below 80 %",
            "at least 80 %",
        ),
        (NPS, 12.5, "12.5", "below 30", "at least 30"),
        (
            RESPONSE_HOURS,
            30.0,
            "30.0 hours on average",
            "above 24 hours on average",
            "at most 24 hours on average",
        ),
        (
            TRAINING_COMPLETION,
            0.6,
            "60.0 %",
            "below 80 %",
            "at least 80 %",
        ),
    ];
    for (metric, value, shown, condition, target) in cases {
        assert_eq!(metric_value(metric, value, m), shown, "{metric}");
        assert_eq!(metric_condition(metric, &plan), condition, "{metric}");
        assert_eq!(metric_target(metric, &plan), target, "{metric}");
        assert!(!metric_definition(metric).is_empty());
        assert_ne!(metric_label(metric), "Other metric");
    }
    assert_eq!(metric_label(NPS), "Net Promoter Score");
    assert_eq!(number(27.5), "27.5");
    assert_eq!(number(0.57 * 100.0), "57");
}

/// R0.5: the wording follows the plan in force, not the Playbook's numbers.
#[test]
fn r0_5_wording_takes_the_thresholds_of_the_plan() {
    let mut plan = Plan::playbook();
    plan.thresholds.customer_acquisition_min = 2.0;
    plan.thresholds.response_hours_max = 12.5;
    plan.thresholds.customer_retention_min = 0.875;
    assert_eq!(
        metric_condition(CUSTOMER_ACQUISITION, &plan),
        "below 2 new customers in two consecutive months"
    );
    assert_eq!(
        metric_target(RESPONSE_HOURS, &plan),
        "at most 12.5 hours on average"
    );
    assert_eq!(metric_condition(CUSTOMER_RETENTION, &plan), "below 87.5 %");
    assert_eq!(metric_threshold("nope", &plan), None);
    assert_eq!(metric_condition("nope", &plan), "");
}

/// The wording's direction is the metric's declared side ([`alert_when`]), the
/// one R4's table gives and `operator_metrics` compares with.
#[test]
fn r4_condition_wording_follows_alert_when() {
    for metric in METRICS {
        let side = alert_when(metric).unwrap();
        let cond = metric_condition(metric, &Plan::playbook());
        match side {
            AlertWhen::Below => assert!(cond.starts_with("below "), "{metric}: {cond}"),
            AlertWhen::Above => assert!(cond.starts_with("above "), "{metric}: {cond}"),
        }
    }
}
