//! R2 tier boundaries, promotion and demotion against M−1, churn on the last day, and the
//! R1.4 bonus by tier.

use super::*;
use chrono::NaiveDate;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn tiers_of(counts: &[i64]) -> Vec<String> {
    let plan = Plan::playbook();
    let df = df!("n" => counts).unwrap();
    let out = df
        .lazy()
        .select([tier_for_counts(col("n"), &plan).alias("t")])
        .collect()
        .unwrap();
    out.column("t")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| s.unwrap_or("").to_string())
        .collect()
}

#[test]
fn r2_2_tier_boundaries_5_6_15_16_30_31() {
    assert_eq!(
        tiers_of(&[0, 1, 5, 6, 15, 16, 30, 31, 200]),
        [
            "none", "bronze", "bronze", "silver", "silver", "gold", "gold", "platinum", "platinum"
        ]
    );
}

/// `n` customers for `op`, signed on `signed`, optionally churned.
fn customers(rows: &[(&str, usize, &str, Option<&str>)]) -> LazyFrame {
    let (mut id, mut op, mut signed, mut churned) = (vec![], vec![], vec![], vec![]);
    for (o, n, s, c) in rows {
        for _ in 0..*n {
            id.push(format!("c{}", id.len()));
            op.push(o.to_string());
            signed.push(d(s));
            churned.push(c.map(d));
        }
    }
    df!("customer_id" => id, "operator_id" => op, "contract_signed_on" => signed, "churned_on" => churned)
        .unwrap()
        .lazy()
}

fn operators(rows: &[(&str, &str, Option<&str>)]) -> LazyFrame {
    df!(
        "operator_id" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "joined_on" => rows.iter().map(|r| d(r.1)).collect::<Vec<_>>(),
        "terminated_on" => rows.iter().map(|r| r.2.map(d)).collect::<Vec<_>>(),
    )
    .unwrap()
    .lazy()
}

fn table(inputs: &Inputs, p: &str) -> Vec<(String, i64, String, String, String)> {
    let out = operator_tiers(inputs, Period::parse(p).unwrap(), &Plan::playbook())
        .collect()
        .unwrap();
    let s = |c: &str| {
        out.column(c)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let n: Vec<i64> = out
        .column("active_customers")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    assert!(s("period").iter().all(|x| x == p));
    let (ids, t, pt, ch) = (s("operator_id"), s("tier"), s("previous_tier"), s("change"));
    (0..out.height())
        .map(|i| {
            (
                ids[i].clone(),
                n[i],
                t[i].clone(),
                pt[i].clone(),
                ch[i].clone(),
            )
        })
        .collect()
}

#[test]
fn r2_3_promotion_demotion_and_new_operator() {
    let mut i = Inputs::empty();
    i.operators = operators(&[
        ("a", "2024-01-01", None),
        ("b", "2024-01-01", None),
        ("c", "2025-03-10", None),
        ("t", "2024-01-01", Some("2025-03-31")),
    ]);
    i.customers = customers(&[
        // a: 5 in Feb, 6 in Mar → bronze → silver
        ("a", 5, "2025-01-01", None),
        ("a", 1, "2025-03-31", None),
        // b: 16 in Feb, one churns in Mar → gold → silver
        ("b", 15, "2025-01-01", None),
        ("b", 1, "2025-01-01", Some("2025-03-15")),
        // c joined in Mar with 31: none (not active in Feb) → platinum
        ("c", 31, "2025-03-10", None),
        // t terminated on the last day of Mar: not in March's table
        ("t", 3, "2025-01-01", None),
    ]);
    let rows = table(&i, "2025-03");
    assert_eq!(
        rows,
        [
            (
                "a".into(),
                6,
                "silver".into(),
                "bronze".into(),
                "promotion".into()
            ),
            (
                "b".into(),
                15,
                "silver".into(),
                "gold".into(),
                "demotion".into()
            ),
            (
                "c".into(),
                31,
                "platinum".into(),
                "none".into(),
                "promotion".into()
            ),
        ]
    );
}

#[test]
fn r2_1_churn_on_the_last_day_vs_the_day_after() {
    let mut i = Inputs::empty();
    i.operators = operators(&[("a", "2024-01-01", None)]);
    // 6 customers, one churns on 2025-03-31 (not active at end of March) and one
    // on 2025-04-01 (still active at end of March)
    i.customers = customers(&[
        ("a", 4, "2024-06-01", None),
        ("a", 1, "2024-06-01", Some("2025-03-31")),
        ("a", 1, "2024-06-01", Some("2025-04-01")),
    ]);
    assert_eq!(
        table(&i, "2025-03"),
        [(
            "a".into(),
            5,
            "bronze".into(),
            "silver".into(),
            "demotion".into()
        )]
    );
    assert_eq!(
        table(&i, "2025-02"),
        [(
            "a".into(),
            6,
            "silver".into(),
            "silver".into(),
            "none".into()
        )]
    );
    // an operator with no customers at all has tier none and no change
    let mut j = Inputs::empty();
    j.operators = operators(&[("z", "2024-01-01", None)]);
    assert_eq!(
        table(&j, "2025-03"),
        [("z".into(), 0, "none".into(), "none".into(), "none".into())]
    );
}

#[test]
fn r1_4_bonus_by_tier() {
    let plan = Plan::playbook();
    let df = df!("t" => [Some("none"), Some("bronze"), Some("silver"), Some("gold"), Some("platinum"), None]).unwrap();
    let out = df
        .lazy()
        .select([software_bonus_expr(col("t"), &plan).alias("b")])
        .collect()
        .unwrap();
    let b: Vec<i64> = out
        .column("b")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect();
    assert_eq!(b, [0, 0, 500, 1000, 1500, 0]);
}
