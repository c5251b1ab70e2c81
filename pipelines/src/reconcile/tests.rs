//! R7 exception rows on their own: a clean fixture, refunds decided in (`refunded_on`,
//! `refund_id`) order, the customer named on refund exceptions, refunds of lines
//! collected in history.

use super::*;
use crate::payouts::tests::{d, fixture, history_with};

fn kinds(r: &Reconciliation) -> Vec<(String, String, Option<i64>, Option<String>)> {
    let df = r.exceptions.clone().collect().unwrap();
    let s = |c: &str| {
        df.column(c)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect::<Vec<_>>()
    };
    let (k, i, rf) = (s("kind"), s("invoice_id"), s("refund_id"));
    let l: Vec<Option<i64>> = df
        .column("line_no")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .collect();
    (0..df.height())
        .map(|n| {
            (
                k[n].clone().unwrap(),
                i[n].clone().unwrap(),
                l[n],
                rf[n].clone(),
            )
        })
        .collect()
}

#[test]
fn r7_clean_fixture_has_no_exceptions() {
    let (inputs, _) = fixture();
    let r = exceptions(
        &inputs,
        &PayoutHistory::empty(),
        Period::parse("2025-03").unwrap(),
    )
    .unwrap();
    assert!(kinds(&r).is_empty(), "{:?}", kinds(&r));
    assert_eq!(r.collectable_lines.collect().unwrap().height(), 4);
}

#[test]
fn r7_refund_exceeds_counts_earlier_refunds_by_date_then_id() {
    let (mut inputs, _) = fixture();
    // line I1/1 is 10000: 6000 on 03-05 (r1), then 3000 (r2) and 2000 (r3) on
    // 03-20: r2 is earlier than r3 by id, so r3 finds 1000 left and exceeds.
    inputs.refunds = df!(
        "refund_id" => ["r3", "r1", "r2"],
        "invoice_id" => ["I1", "I1", "I1"],
        "line_no" => [1i64, 1, 1],
        "refunded_on" => [d("2025-03-20"), d("2025-03-05"), d("2025-03-20")],
        "amount_cents" => [2000i64, 6000, 3000],
    )
    .unwrap()
    .lazy();
    let r = exceptions(
        &inputs,
        &PayoutHistory::empty(),
        Period::parse("2025-03").unwrap(),
    )
    .unwrap();
    assert_eq!(
        kinds(&r),
        [(
            "refund_exceeds_line".into(),
            "I1".into(),
            Some(1),
            Some("r3".into())
        )]
    );
    let detail = r
        .exceptions
        .clone()
        .collect()
        .unwrap()
        .column("detail")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_string();
    assert_eq!(
        detail,
        "refund 2000 > left 1000 (line 10000, accepted earlier refunds 9000)"
    );
    let ok = r.payable_refunds.collect().unwrap();
    let ids: Vec<_> = ok
        .column("refund_id")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(ids, ["r1", "r2"]);
}

#[test]
fn r7_refund_exceptions_name_the_invoice_customer() {
    // Both refund kinds name the refunded invoice's customer; a refund of an
    // invoice billing does not know has none.
    let (mut inputs, _) = fixture();
    inputs.refunds = df!(
        "refund_id" => ["big", "never", "ghost"],
        "invoice_id" => ["I1", "I1", "NOPE"],
        "line_no" => [1i64, 9, 1],
        "refunded_on" => [d("2025-03-05"), d("2025-03-05"), d("2025-03-05")],
        "amount_cents" => [10_001i64, 5, 5],
    )
    .unwrap()
    .lazy();
    let r = exceptions(
        &inputs,
        &PayoutHistory::empty(),
        Period::parse("2025-03").unwrap(),
    )
    .unwrap();
    let df = r.exceptions.collect().unwrap();
    let col_of = |c: &str| -> Vec<Option<String>> {
        df.column(c)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    };
    assert_eq!(
        col_of("kind"),
        [
            Some("refund_exceeds_line".to_string()),
            Some("refund_of_uncollected_line".to_string()),
            Some("refund_of_uncollected_line".to_string()),
        ]
    );
    assert_eq!(
        col_of("customer_id"),
        [Some("ca1".to_string()), Some("ca1".to_string()), None]
    );
}

#[test]
fn r7_refund_of_a_line_collected_in_history_is_not_uncollected() {
    let (mut inputs, _) = fixture();
    inputs.refunds = df!(
        "refund_id" => ["old", "ghost"],
        "invoice_id" => ["H1", "H1"],
        "line_no" => [1i64, 2],
        "refunded_on" => [d("2025-03-02"), d("2025-03-02")],
        "amount_cents" => [100i64, 100],
    )
    .unwrap()
    .lazy();
    let history = history_with(&[("2025-01", "a", "USD", "H1", 1, "software", 500, 7000)]);
    let r = exceptions(&inputs, &history, Period::parse("2025-03").unwrap()).unwrap();
    assert_eq!(
        kinds(&r),
        [(
            "refund_of_uncollected_line".into(),
            "H1".into(),
            Some(2),
            Some("ghost".into())
        )]
    );
}
