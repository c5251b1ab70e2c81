//! The report of a simulation: one-sided statements, totals, the CSV and the page.

use super::*;

fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

fn st(period: &str, op: &str, cur: &str, tier: &str, payable: i64) -> Statement {
    Statement {
        period: p(period),
        operator_id: op.into(),
        currency: cur.into(),
        tier: tier.into(),
        payable_cents: payable,
    }
}

#[test]
fn a_statement_on_one_side_only_counts_with_zero_on_the_other() {
    let rows = diff(
        vec![
            st("2025-01", "OP-2", "USD", "gold", 1000),
            st("2025-01", "OP-1", "USD", "none", 50),
        ],
        vec![
            st("2025-01", "OP-2", "USD", "gold", 1200),
            st("2025-01", "OP-3", "EUR", "bronze", 70),
        ],
    )
    .unwrap();
    let keys: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.operator_id.as_str(), r.currency.as_str()))
        .collect();
    assert_eq!(keys, [("OP-1", "USD"), ("OP-2", "USD"), ("OP-3", "EUR")]);
    assert_eq!(
        (
            rows[0].recorded_payable_cents,
            rows[0].simulated_payable_cents,
            rows[0].difference_cents
        ),
        (50, 0, -50)
    );
    assert_eq!(rows[0].simulated_tier, None);
    assert_eq!(rows[1].difference_cents, 200);
    assert_eq!(
        (rows[2].recorded_tier.as_deref(), rows[2].difference_cents),
        (None, 70)
    );
    let t = totals(&rows).unwrap();
    let usd = &t[&(p("2025-01"), "USD".to_string())];
    assert_eq!(
        (
            usd.recorded_cents,
            usd.simulated_cents,
            usd.difference_cents,
            usd.operators_affected
        ),
        (1050, 1200, 150, 2)
    );
}

#[test]
fn r0_2_a_difference_beyond_i64_is_an_error_not_a_wrapped_figure() {
    let err = diff(
        vec![st("2025-01", "OP-1", "USD", "none", i64::MIN)],
        vec![st("2025-01", "OP-1", "USD", "none", 1)],
    )
    .unwrap_err();
    assert!(err.to_string().contains("OP-1"), "{err}");
}

#[test]
fn csv_has_every_row_in_order_with_exact_cents() {
    let rows = diff(
        vec![st("2025-02", "OP-1", "USD", "silver", 123_456)],
        vec![
            st("2025-02", "OP-1", "USD", "gold", 123_457),
            st("2025-01", "OP, \"quoted\"", "JPY", "none", 5),
        ],
    )
    .unwrap();
    assert_eq!(
        csv(&rows),
        "period,operator_id,currency,recorded_tier,simulated_tier,recorded_payable_cents,simulated_payable_cents,difference_cents\n\
         2025-01,\"OP, \"\"quoted\"\"\",JPY,,none,0,5,5\n\
         2025-02,OP-1,USD,silver,gold,123456,123457,1\n"
    );
}

#[test]
fn largest_differences_by_absolute_value() {
    let rows = diff(
        vec![
            st("2025-01", "OP-1", "USD", "none", 100),
            st("2025-01", "OP-2", "USD", "none", 100),
            st("2025-01", "OP-3", "USD", "none", 100),
        ],
        vec![
            st("2025-01", "OP-1", "USD", "none", 90),
            st("2025-01", "OP-2", "USD", "none", 150),
            st("2025-01", "OP-3", "USD", "none", 100),
        ],
    )
    .unwrap();
    let big: Vec<&str> = largest(&rows, 5)
        .iter()
        .map(|r| r.operator_id.as_str())
        .collect();
    assert_eq!(big, ["OP-2", "OP-1"], "zero differences are left out");
    let text = terminal(&rows, 1).unwrap();
    assert!(text.contains("+0.50"), "{text}");
    assert!(text.contains("largest differences (1 of 2"), "{text}");
}

#[test]
fn the_page_is_self_contained_and_escapes_text() {
    let rows = diff(
        vec![
            st("2025-01", "OP-<b>", "USD", "none", 100),
            st("2025-02", "OP-<b>", "USD", "none", 100),
        ],
        vec![
            st("2025-01", "OP-<b>", "USD", "none", 120),
            st("2025-02", "OP-<b>", "USD", "none", 100),
        ],
    )
    .unwrap();
    let html = page(
        &rows,
        &PageInfo {
            plan_file: "plans/<new>.toml",
            simulated_plan: "version x for 2025-01 .. 2025-02",
            recorded_plan: "plan version(s) playbook",
            from: p("2025-01"),
            through: p("2026-02"),
            top: 10,
        },
    )
    .unwrap();
    // minijinja also escapes `/` (as &#x2f;), which a browser shows as `/`.
    assert!(html.contains("&lt;new&gt;.toml"), "{html}");
    assert!(!html.contains("<new>"));
    assert!(html.contains("OP-&lt;b&gt;"));
    assert!(!html.contains("OP-<b>"));
    // Twelve months per chart: 2025-01 .. 2025-12 and 2026-01 .. 2026-02.
    assert_eq!(
        html.matches("<svg").count(),
        2,
        "charts of the monthly totals"
    );
    assert!(html.contains("USD, 2026-01 .. 2026-02"));
    assert!(html.contains("1.20 USD") && html.contains("+0.20 USD"));
    for external in ["src=\"http", "href=\"http", "<script", "<link"] {
        assert!(!html.contains(external), "{external}");
    }
}
