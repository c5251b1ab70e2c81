//! R8.2 exactly at and just past each bound, null retention, and gained/lost against
//! M−1's row (none before the first billing period of the data).

use super::*;
use chrono::NaiveDate;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

const M: &str = "2025-06";

/// One operator `op` joined on `joined`, `n` customers signed on `signed` of which
/// `churned` churn on 2025-03-01, and USD software MRR per month (`month`, cents).
fn net(joined: &str, n: usize, signed: &str, churned: usize, mrr: &[(&str, i64)]) -> Inputs {
    let mut i = Inputs::empty();
    i.operators = df!(
        "operator_id" => ["op"],
        "joined_on" => [d(joined)],
        "terminated_on" => [None::<NaiveDate>],
    )
    .unwrap()
    .lazy();
    i.customers = df!(
        "customer_id" => (0..n).map(|k| format!("c{k}")).collect::<Vec<_>>(),
        "operator_id" => vec![Some("op"); n],
        "contract_signed_on" => vec![d(signed); n],
        "go_live_on" => vec![None::<NaiveDate>; n],
        "churned_on" => (0..n).map(|k| (k < churned).then(|| d("2025-03-01"))).collect::<Vec<_>>(),
    )
    .unwrap()
    .lazy();
    let months: Vec<Period> = mrr.iter().map(|(m, _)| p(m)).collect();
    let ids: Vec<String> = (0..mrr.len()).map(|k| format!("inv{k}")).collect();
    i.invoices = df!(
        "invoice_id" => ids.clone(),
        "customer_id" => vec!["c0"; mrr.len()],
        "currency" => vec!["USD"; mrr.len()],
        "issued_on" => months.iter().map(|m| m.first_day()).collect::<Vec<_>>(),
        "status" => vec!["paid"; mrr.len()],
        "paid_on" => months.iter().map(|m| Some(m.first_day())).collect::<Vec<_>>(),
        "total_cents" => mrr.iter().map(|r| r.1).collect::<Vec<_>>(),
    )
    .unwrap()
    .lazy();
    i.invoice_lines = df!(
        "invoice_id" => ids,
        "line_no" => vec![1i64; mrr.len()],
        "revenue_type" => vec!["software"; mrr.len()],
        "amount_cents" => mrr.iter().map(|r| r.1).collect::<Vec<_>>(),
        "service_start" => months.iter().map(|m| m.first_day()).collect::<Vec<_>>(),
        "service_end" => months.iter().map(|m| m.last_day()).collect::<Vec<_>>(),
    )
    .unwrap()
    .lazy();
    i
}

struct Row {
    tenure: i64,
    tier: String,
    mrr: i64,
    retention: Option<f64>,
    eligible: bool,
    failed: String,
    change: String,
}

fn row(i: &Inputs, month: &str) -> Row {
    let out = equity_eligibility(i, p(month), &Plan::playbook())
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(out.height(), 1);
    let s = |c: &str| {
        out.column(c)
            .unwrap()
            .str()
            .unwrap()
            .get(0)
            .unwrap()
            .to_string()
    };
    Row {
        tenure: out
            .column("tenure_months")
            .unwrap()
            .i64()
            .unwrap()
            .get(0)
            .unwrap(),
        tier: s("tier"),
        mrr: out
            .column("mrr_cents")
            .unwrap()
            .i64()
            .unwrap()
            .get(0)
            .unwrap(),
        retention: out.column("retention").unwrap().f64().unwrap().get(0),
        eligible: out
            .column("eligible")
            .unwrap()
            .bool()
            .unwrap()
            .get(0)
            .unwrap(),
        failed: s("failed_criteria"),
        change: s("change"),
    }
}

/// Eligible in M: tenure 12, 39 of 40 customers retained (0.975, platinum), MRR
/// exactly 5,000,000 in M; in M−1 MRR 4,999,999.
fn eligible() -> Inputs {
    net(
        "2024-07-01",
        40,
        "2024-01-01",
        1,
        &[("2025-05", 4_999_999), (M, 5_000_000)],
    )
}

#[test]
fn r8_2_eligible_exactly_at_tenure_12_and_mrr_5m() {
    let r = row(&eligible(), M);
    assert_eq!(
        (r.tenure, r.tier.as_str(), r.mrr),
        (12, "platinum", 5_000_000)
    );
    assert!((r.retention.unwrap() - 0.975).abs() < 1e-12);
    assert!(r.eligible);
    assert_eq!(r.failed, "");
}

#[test]
fn r8_2_tenure_11_fails() {
    let i = net("2024-08-01", 40, "2024-01-01", 1, &[(M, 5_000_000)]);
    let r = row(&i, M);
    assert_eq!(
        (r.tenure, r.eligible, r.failed.as_str()),
        (11, false, "tenure")
    );
}

#[test]
fn r8_2_gold_fails_platinum_at_31_passes() {
    // 31 customers, one churned: 30 active → gold (retention 30/31 > 0.95)
    let i = net("2024-01-01", 31, "2024-01-01", 1, &[(M, 6_000_000)]);
    let r = row(&i, M);
    assert_eq!((r.tier.as_str(), r.failed.as_str()), ("gold", "tier"));
    // 32 customers, one churned: 31 → platinum
    let i = net("2024-01-01", 32, "2024-01-01", 1, &[(M, 6_000_000)]);
    assert!(row(&i, M).eligible);
}

#[test]
fn r8_2_mrr_one_cent_below_fails() {
    let i = net("2024-01-01", 40, "2024-01-01", 1, &[(M, 4_999_999)]);
    let r = row(&i, M);
    assert_eq!((r.mrr, r.failed.as_str()), (4_999_999, "mrr"));
    // MRR in another currency is not the reporting currency: 0
    let mut i = net("2024-01-01", 40, "2024-01-01", 1, &[(M, 9_000_000)]);
    i.invoices = i.invoices.with_column(lit("EUR").alias("currency"));
    let r = row(&i, M);
    assert_eq!((r.mrr, r.failed.as_str()), (0, "mrr"));
}

#[test]
fn r8_2_retention_exactly_0_95_fails_strictly_above_passes() {
    // 40 customers, 2 churned: 38/40 = 0.95 exactly → fails (strict >)
    let i = net("2024-01-01", 40, "2024-01-01", 2, &[(M, 5_000_000)]);
    let r = row(&i, M);
    assert_eq!(r.retention, Some(0.95));
    assert_eq!((r.eligible, r.failed.as_str()), (false, "retention"));
}

#[test]
fn r8_2_null_retention_fails() {
    // customers signed after end of M−12: no cohort, retention null → fails
    let i = net("2024-01-01", 40, "2024-07-01", 0, &[(M, 5_000_000)]);
    let r = row(&i, M);
    assert_eq!(r.retention, None);
    assert_eq!(r.failed, "retention");
}

#[test]
fn r8_2_failed_criteria_in_order() {
    let i = net("2025-01-01", 3, "2025-01-01", 0, &[(M, 10)]);
    let r = row(&i, M);
    assert_eq!(r.failed, "tenure,tier,mrr,retention");
    assert!(!r.eligible);
}

#[test]
fn r8_2_gained_lost_and_none_against_m_minus_1() {
    // May not eligible (MRR 4,999,999), June eligible: gained.
    assert_eq!(row(&eligible(), M).change, GAINED);
    // May eligible, June not: lost.
    let i = net(
        "2024-01-01",
        40,
        "2024-01-01",
        1,
        &[("2025-05", 5_000_000), (M, 1)],
    );
    assert_eq!(row(&i, M).change, LOST);
    // Eligible both months: none; not eligible either: none.
    let i = net(
        "2024-01-01",
        40,
        "2024-01-01",
        1,
        &[("2025-05", 5_000_000), (M, 5_000_000)],
    );
    assert_eq!(row(&i, M).change, UNCHANGED);
    let i = net("2024-01-01", 40, "2024-01-01", 1, &[("2025-05", 1), (M, 1)]);
    assert_eq!(row(&i, M).change, UNCHANGED);
}

#[test]
fn r8_2_no_row_before_the_first_billing_period_counts_as_not_eligible() {
    // Billing starts in M: M−1 was never closed, so an operator eligible in M gained.
    let i = net("2024-01-01", 40, "2024-01-01", 1, &[(M, 5_000_000)]);
    assert_eq!(row(&i, M).change, GAINED);
    // An operator that joined in M has no M−1 row either: gained when eligible
    // (impossible at tenure 1), none otherwise.
    let i = net(
        "2025-06-01",
        40,
        "2024-01-01",
        1,
        &[("2025-05", 1), (M, 5_000_000)],
    );
    assert_eq!(row(&i, M).change, UNCHANGED);
}
