//! R3 criteria at and just past each threshold, the growth window of the first 12 months,
//! insufficient survey data, breach streaks and escalation, and the output frame.

use super::*;
use chrono::NaiveDate;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

/// A small network built up month by month.
struct Net {
    inputs: Inputs,
    invoices: Vec<(String, String, String)>,
    lines: Vec<(String, i64, NaiveDate, NaiveDate)>,
}

impl Net {
    /// Operator `op` joined 2023-01-01, exclusive in territory `T1` (USD) since
    /// `since`, with `customers` customers signed 2023-01-01 (`c0`…).
    fn new(since: &str, customers: usize) -> Self {
        let mut inputs = Inputs::empty();
        inputs.operators = df!(
            "operator_id" => ["op", "other"],
            "joined_on" => [d("2023-01-01"), d("2023-01-01")],
            "terminated_on" => [None::<NaiveDate>, None],
        )
        .unwrap()
        .lazy();
        inputs.territories = df!(
            "territory_id" => ["T1", "T2"],
            "metro" => ["m1", "m2"],
            "currency" => ["USD", "EUR"],
            "exclusive_operator_id" => [Some("op"), None],
            "exclusive_since" => [Some(d(since)), None],
        )
        .unwrap()
        .lazy();
        let ids: Vec<String> = (0..customers).map(|i| format!("c{i}")).collect();
        inputs.customers = df!(
            "customer_id" => ids.clone(),
            "operator_id" => vec![Some("op"); customers],
            "contract_signed_on" => vec![d("2023-01-01"); customers],
            "churned_on" => vec![None::<NaiveDate>; customers],
        )
        .unwrap()
        .lazy();
        Self {
            inputs,
            invoices: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// MRR of `cents` (USD, customer c0) in `month`.
    fn mrr(self, month: &str, cents: i64) -> Self {
        self.mrr_in(month, cents, "USD")
    }

    fn mrr_in(mut self, month: &str, cents: i64, currency: &str) -> Self {
        let id = format!("inv{}", self.invoices.len());
        let m = p(month);
        self.invoices
            .push((id.clone(), "c0".into(), currency.into()));
        self.lines.push((id, cents, m.first_day(), m.last_day()));
        self
    }

    /// `n` CSAT responses of `score` for `op` submitted on `on`.
    fn csat(mut self, on: &str, scores: &[i64]) -> Self {
        let n = scores.len();
        let extra = df!(
            "response_id" => (0..n).map(|i| format!("r{on}{i}")).collect::<Vec<_>>(),
            "customer_id" => vec!["c0"; n],
            "operator_id" => vec!["op"; n],
            "submitted_on" => vec![d(on); n],
            "nps_score" => vec![None::<i64>; n],
            "csat_score" => scores.iter().map(|s| Some(*s)).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy();
        let prev = self.inputs.survey_responses.clone();
        self.inputs.survey_responses = concat([prev, extra], UnionArgs::default()).unwrap();
        self
    }

    fn build(mut self) -> Inputs {
        self.inputs.invoices = df!(
            "invoice_id" => self.invoices.iter().map(|i| i.0.clone()).collect::<Vec<_>>(),
            "customer_id" => self.invoices.iter().map(|i| i.1.clone()).collect::<Vec<_>>(),
            "currency" => self.invoices.iter().map(|i| i.2.clone()).collect::<Vec<_>>(),
            "issued_on" => self.lines.iter().map(|l| l.2).collect::<Vec<_>>(),
            "status" => vec!["paid"; self.invoices.len()],
            "paid_on" => self.lines.iter().map(|l| Some(l.2)).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy();
        self.inputs.invoice_lines = df!(
            "invoice_id" => self.lines.iter().map(|l| l.0.clone()).collect::<Vec<_>>(),
            "line_no" => vec![1i64; self.lines.len()],
            "revenue_type" => vec!["software"; self.lines.len()],
            "amount_cents" => self.lines.iter().map(|l| l.1).collect::<Vec<_>>(),
            "service_start" => self.lines.iter().map(|l| l.2).collect::<Vec<_>>(),
            "service_end" => self.lines.iter().map(|l| l.3).collect::<Vec<_>>(),
        )
        .unwrap()
        .lazy();
        self.inputs
    }
}

/// Ten satisfied responses (sufficient data, compliant).
const HAPPY: [i64; 10] = [5; 10];

struct Row {
    mrr_cents: i64,
    active_customers: i64,
    qoq_growth: Option<f64>,
    csat_share: Option<f64>,
    csat_responses: i64,
    satisfaction: String,
    compliant: bool,
    failed: String,
    streak: i64,
    escalated: bool,
}

fn check(inputs: &Inputs, month: &str) -> Vec<Row> {
    let out = exclusivity_checks(inputs, p(month), &Plan::playbook())
        .collect()
        .unwrap();
    let n = out.height();
    let i64s = |c: &str| out.column(c).unwrap().i64().unwrap().clone();
    let f64s = |c: &str| out.column(c).unwrap().f64().unwrap().clone();
    let strs = |c: &str| out.column(c).unwrap().str().unwrap().clone();
    let bools = |c: &str| out.column(c).unwrap().bool().unwrap().clone();
    (0..n)
        .map(|i| Row {
            mrr_cents: i64s("mrr_cents").get(i).unwrap(),
            active_customers: i64s("active_customers").get(i).unwrap(),
            qoq_growth: f64s("qoq_growth").get(i),
            csat_share: f64s("csat_share").get(i),
            csat_responses: i64s("csat_responses").get(i).unwrap(),
            satisfaction: strs("satisfaction").get(i).unwrap().to_string(),
            compliant: bools("compliant").get(i).unwrap(),
            failed: strs("failed_criteria").get(i).unwrap().to_string(),
            streak: i64s("consecutive_breaches").get(i).unwrap(),
            escalated: bools("escalated").get(i).unwrap(),
        })
        .collect()
}

fn one(inputs: &Inputs, month: &str) -> Row {
    let mut rows = check(inputs, month);
    assert_eq!(rows.len(), 1, "one exclusive pair");
    rows.remove(0)
}

/// Exclusive since 2024-01, 15 customers, flat MRR of `jun` in 2025-06 and
/// 2025-03 (growth not checked: month 18), satisfied customers.
fn base(jun: i64) -> Net {
    Net::new("2024-01-15", 15)
        .mrr("2025-03", jun)
        .mrr("2025-06", jun)
        .csat("2025-06-10", &HAPPY)
}

#[test]
fn r3_1_mrr_threshold_equal_passes_one_cent_below_fails() {
    for (cents, ok) in [(1_000_001, true), (1_000_000, true), (999_999, false)] {
        let r = one(&base(cents).build(), "2025-06");
        assert_eq!(r.mrr_cents, cents);
        assert_eq!(r.compliant, ok, "{cents}");
        assert_eq!(r.failed, if ok { "" } else { "mrr" }, "{cents}");
    }
}

#[test]
fn r3_1_mrr_is_in_the_territorys_currency_only() {
    // EUR revenue does not count for a USD territory.
    let i = Net::new("2024-01-15", 15)
        .mrr_in("2025-06", 2_000_000, "EUR")
        .csat("2025-06-10", &HAPPY)
        .build();
    let r = one(&i, "2025-06");
    assert_eq!(r.mrr_cents, 0);
    assert_eq!(r.failed, "mrr");
}

#[test]
fn r3_1_per_currency_threshold_from_the_plan() {
    let mut plan = Plan::playbook();
    plan.exclusivity
        .min_mrr_cents_by_currency
        .insert("USD".into(), 2_000_000);
    let out = exclusivity_checks(&base(1_500_000).build(), p("2025-06"), &plan)
        .collect()
        .unwrap();
    assert_eq!(
        out.column("failed_criteria").unwrap().str().unwrap().get(0),
        Some("mrr")
    );
}

#[test]
fn r3_2_active_customers_threshold() {
    for (n, ok) in [(16, true), (15, true), (14, false)] {
        let i = Net::new("2024-01-15", n)
            .mrr("2025-03", 1_000_000)
            .mrr("2025-06", 1_000_000)
            .csat("2025-06-10", &HAPPY)
            .build();
        let r = one(&i, "2025-06");
        assert_eq!(r.active_customers, n as i64);
        assert_eq!(r.compliant, ok, "{n}");
        assert_eq!(r.failed, if ok { "" } else { "customers" }, "{n}");
    }
}

#[test]
fn r3_2_churned_customers_do_not_count() {
    let mut i = base(1_000_000).build();
    // churn c14 on 2025-06-30 (end of M): not active at end of M (R2.1)
    i.customers = i.customers.with_column(
        when(col("customer_id").eq(lit("c14")))
            .then(lit(d("2025-06-30")))
            .otherwise(col("churned_on"))
            .alias("churned_on"),
    );
    let r = one(&i, "2025-06");
    assert_eq!(r.active_customers, 14);
    assert_eq!(r.failed, "customers");
}

/// Exclusive since 2025-01 (2025-06 is exclusivity month 6): growth checked.
fn growth(m3: i64, m: i64) -> Row {
    let i = Net::new("2025-01-20", 15)
        .mrr("2025-03", m3)
        .mrr("2025-06", m)
        .csat("2025-06-10", &HAPPY)
        .build();
    one(&i, "2025-06")
}

#[test]
fn r3_3_growth_threshold_inside_first_12_months() {
    // 1.2 × 1,000,000 = 1,200,000
    let above = growth(1_000_000, 1_200_001);
    assert!(above.compliant);
    let equal = growth(1_000_000, 1_200_000);
    assert!(equal.compliant);
    assert!((equal.qoq_growth.unwrap() - 0.2).abs() < 1e-12);
    let below = growth(1_000_000, 1_199_999);
    assert!(!below.compliant);
    assert_eq!(below.failed, "growth");
}

#[test]
fn r3_3_growth_from_zero_holds_when_mrr_positive() {
    // MRR(M−3) = 0: growth holds when MRR(M) > 0; qoq_growth is null
    let r = growth(0, 1_000_000);
    assert!(r.compliant);
    assert_eq!(r.qoq_growth, None);
    // MRR(M) = 0 too: growth fails (and so does mrr)
    let r = growth(0, 0);
    assert_eq!(r.failed, "mrr,growth");
}

#[test]
fn r3_3_growth_checked_in_month_12_not_in_month_13() {
    // exclusive since 2024-07: 2025-06 is month 12, 2025-07 is month 13
    let i = Net::new("2024-07-31", 15)
        .mrr("2025-03", 1_000_000)
        .mrr("2025-04", 1_000_000)
        .mrr("2025-06", 1_000_000)
        .mrr("2025-07", 1_000_000)
        .csat("2025-06-10", &HAPPY)
        .csat("2025-07-10", &HAPPY)
        .build();
    let m12 = one(&i, "2025-06");
    assert_eq!(m12.failed, "growth");
    assert_eq!(m12.qoq_growth, Some(0.0));
    let m13 = one(&i, "2025-07");
    assert!(m13.compliant);
    assert_eq!(m13.qoq_growth, None, "null outside the first 12 months");
}

#[test]
fn r3_4_satisfaction_threshold_is_strictly_above_90_percent() {
    // 10 responses: 10 satisfied (1.0) ok; 9 satisfied (0.90, not above) fails
    let r = one(
        &Net::new("2024-01-15", 15)
            .mrr("2025-03", 1_000_000)
            .mrr("2025-06", 1_000_000)
            .csat("2025-06-10", &[5, 5, 5, 5, 5, 5, 5, 5, 5, 3])
            .build(),
        "2025-06",
    );
    assert_eq!(r.csat_share, Some(0.9));
    assert_eq!(r.satisfaction, "failed");
    assert_eq!(r.failed, "satisfaction");
    assert!(!r.compliant);
    // 20 responses, 19 satisfied (0.95) ok; score 4 counts as satisfied
    let mut scores = vec![4; 19];
    scores.push(1);
    let r = one(
        &Net::new("2024-01-15", 15)
            .mrr("2025-03", 1_000_000)
            .mrr("2025-06", 1_000_000)
            .csat("2025-06-10", &scores)
            .build(),
        "2025-06",
    );
    assert_eq!(r.satisfaction, "ok");
    assert!(r.compliant);
    assert_eq!(r.csat_responses, 20);
    // 11 responses, 10 satisfied (0.909…) is just above
    let mut scores = vec![5; 10];
    scores.push(2);
    let r = one(
        &Net::new("2024-01-15", 15)
            .mrr("2025-03", 1_000_000)
            .mrr("2025-06", 1_000_000)
            .csat("2025-06-10", &scores)
            .build(),
        "2025-06",
    );
    assert_eq!(r.satisfaction, "ok");
}

#[test]
fn r3_4_insufficient_data_is_reported_but_not_a_failure() {
    // 4 responses (< 5), all unhappy: insufficient, compliant
    let i = Net::new("2024-01-15", 15)
        .mrr("2025-03", 1_000_000)
        .mrr("2025-06", 1_000_000)
        .csat("2025-06-10", &[1, 1, 1, 1])
        .build();
    let r = one(&i, "2025-06");
    assert_eq!(r.satisfaction, "insufficient_data");
    assert_eq!(r.csat_share, None);
    assert_eq!(r.csat_responses, 4);
    assert!(r.compliant);
    assert_eq!(r.failed, "");
    // exactly 5 responses is enough: all satisfied → ok
    let i = Net::new("2024-01-15", 15)
        .mrr("2025-03", 1_000_000)
        .mrr("2025-06", 1_000_000)
        .csat("2025-06-10", &[5; 5])
        .build();
    assert_eq!(one(&i, "2025-06").satisfaction, "ok");
}

#[test]
fn r3_4_window_is_m_minus_2_through_m() {
    // responses on 2025-04-01 (M−2, in) and 2025-03-31 / 2025-07-01 (out)
    let i = Net::new("2024-01-15", 15)
        .mrr("2025-03", 1_000_000)
        .mrr("2025-06", 1_000_000)
        .csat("2025-03-31", &[1; 10])
        .csat("2025-07-01", &[1; 10])
        .csat("2025-04-01", &[5; 5])
        .build();
    let r = one(&i, "2025-06");
    assert_eq!(r.csat_responses, 5);
    assert_eq!(r.satisfaction, "ok");
}

#[test]
fn r3_terminated_or_not_yet_exclusive_operator_has_no_row() {
    let mut i = base(1_000_000).build();
    i.operators = df!(
        "operator_id" => ["op"],
        "joined_on" => [d("2023-01-01")],
        "terminated_on" => [Some(d("2025-06-30"))],
    )
    .unwrap()
    .lazy();
    assert_eq!(check(&i, "2025-06").len(), 0);
    // exclusive from 2025-07-01: nothing in 2025-06
    let i = Net::new("2025-07-01", 15).build();
    assert_eq!(check(&i, "2025-06").len(), 0);
    assert_eq!(check(&i, "2025-07").len(), 1);
}

#[test]
fn r3_5_consecutive_breaches_and_escalation_at_3() {
    // Exclusive since 2024-01, 15 customers, MRR 10,000 USD every month through
    // 2025-02 and below threshold from 2025-03 on; no surveys (insufficient).
    let mut net = Net::new("2024-01-15", 15);
    for m in p("2024-01").through(p("2025-02")) {
        net = net.mrr(&m.to_string(), 1_000_000);
    }
    for m in p("2025-03").through(p("2025-06")) {
        net = net.mrr(&m.to_string(), 500_000);
    }
    let i = net.build();
    let feb = one(&i, "2025-02");
    assert!(feb.compliant);
    assert_eq!((feb.streak, feb.escalated), (0, false));
    let expect = [
        ("2025-03", 1, false),
        ("2025-04", 2, false),
        ("2025-05", 3, true),
        ("2025-06", 4, true),
    ];
    for (m, streak, escalated) in expect {
        let r = one(&i, m);
        assert!(!r.compliant, "{m}");
        assert_eq!((r.streak, r.escalated), (streak, escalated), "{m}");
    }
}

#[test]
fn r3_5_streak_counts_back_to_the_start_of_exclusivity() {
    // Never compliant since exclusive_since 2025-04: 2025-06 is the 3rd breach.
    let i = Net::new("2025-04-30", 15).build();
    let r = one(&i, "2025-06");
    assert_eq!(r.failed, "mrr,growth");
    assert_eq!((r.streak, r.escalated), (3, true));
}

#[test]
fn r3_5_streak_starts_at_the_first_billing_period_of_the_data() {
    // Exclusive since 2022-11, but billing data only from 2023-01 (MRR below the
    // threshold): 2022-11 and 2022-12 were never closed, so 2023-01 is the 1st
    // breach, 2023-03 the 3rd and escalated.
    let mut net = Net::new("2022-11-15", 15);
    net.inputs.operators = df!(
        "operator_id" => ["op"],
        "joined_on" => [d("2022-01-01")],
        "terminated_on" => [None::<NaiveDate>],
    )
    .unwrap()
    .lazy();
    for m in ["2023-01", "2023-02", "2023-03"] {
        net = net.mrr(m, 100);
    }
    let i = net.build();
    assert_eq!(i.first_billing_period().unwrap(), Some(p("2023-01")));
    let jan = one(&i, "2023-01");
    assert!(!jan.compliant);
    assert_eq!((jan.streak, jan.escalated), (1, false));
    assert_eq!(
        (one(&i, "2023-02").streak, one(&i, "2023-02").escalated),
        (2, false)
    );
    assert_eq!(
        (one(&i, "2023-03").streak, one(&i, "2023-03").escalated),
        (3, true)
    );
}

#[test]
fn r3_5_a_refund_date_can_open_the_first_billing_period() {
    // The earliest billing date is a refund in 2022-12: that month counts.
    let mut net = Net::new("2022-11-15", 15);
    net.inputs.operators = df!(
        "operator_id" => ["op"],
        "joined_on" => [d("2022-01-01")],
        "terminated_on" => [None::<NaiveDate>],
    )
    .unwrap()
    .lazy();
    for m in ["2023-01", "2023-02"] {
        net = net.mrr(m, 100);
    }
    let mut i = net.build();
    i.refunds = df!(
        "refund_id" => ["r1"],
        "invoice_id" => ["inv0"],
        "line_no" => [1i64],
        "refunded_on" => [d("2022-12-20")],
        "amount_cents" => [1i64],
    )
    .unwrap()
    .lazy();
    assert_eq!(i.first_billing_period().unwrap(), Some(p("2022-12")));
    assert_eq!(one(&i, "2023-01").streak, 2);
}

#[test]
fn r3_5_a_compliant_month_resets_the_streak() {
    let mut net = Net::new("2024-01-15", 15);
    for (m, cents) in [
        ("2025-02", 500_000),
        ("2025-03", 500_000),
        ("2025-04", 1_000_000),
        ("2025-05", 500_000),
        ("2025-06", 500_000),
    ] {
        net = net.mrr(m, cents);
    }
    let i = net.build();
    assert_eq!(one(&i, "2025-04").streak, 0);
    assert_eq!(one(&i, "2025-06").streak, 2);
}

#[test]
fn r3_5_output_columns_and_types() {
    let out = exclusivity_checks(&base(1_000_000).build(), p("2025-06"), &Plan::playbook())
        .collect()
        .unwrap();
    let schema: Vec<(String, DataType)> = out
        .schema()
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let want = [
        ("period", DataType::String),
        ("operator_id", DataType::String),
        ("territory_id", DataType::String),
        ("currency", DataType::String),
        ("mrr_cents", DataType::Int64),
        ("active_customers", DataType::Int64),
        ("qoq_growth", DataType::Float64),
        ("csat_share", DataType::Float64),
        ("csat_responses", DataType::Int64),
        ("satisfaction", DataType::String),
        ("compliant", DataType::Boolean),
        ("failed_criteria", DataType::String),
        ("consecutive_breaches", DataType::Int64),
        ("escalated", DataType::Boolean),
    ];
    let want: Vec<(String, DataType)> = want
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    assert_eq!(schema, want);
    assert_eq!(
        out.column("period").unwrap().str().unwrap().get(0),
        Some("2025-06")
    );
}

#[test]
fn r3_empty_inputs_give_an_empty_frame() {
    let out = exclusivity_checks(&Inputs::empty(), p("2025-06"), &Plan::playbook())
        .collect()
        .unwrap();
    assert_eq!(out.height(), 0);
}
