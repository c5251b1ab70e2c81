//! The pure parts of `opnet simulate`: the range, the plan of each period, and the
//! walk's carry from one simulated period to the next (R1.6, R1.7).

use super::walk::{Walk, carried_out};
use super::*;
use opnet_pipelines::payouts::PayoutClose;
use polars::prelude::*;

fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

fn closed(ps: &[&str]) -> BTreeSet<Period> {
    ps.iter().map(|s| p(s)).collect()
}

#[test]
fn range_defaults_to_every_recorded_close() {
    let c = closed(&["2025-01", "2025-02", "2025-03"]);
    assert_eq!(
        resolve_range(&c, None, None).unwrap(),
        (p("2025-01"), p("2025-03"))
    );
    assert_eq!(
        resolve_range(&c, Some(p("2025-02")), None).unwrap(),
        (p("2025-02"), p("2025-03"))
    );
    assert_eq!(
        resolve_range(&c, None, Some(p("2025-02"))).unwrap(),
        (p("2025-01"), p("2025-02"))
    );
}

#[test]
fn range_refuses_a_period_without_a_recorded_close() {
    let c = closed(&["2025-01", "2025-03"]);
    let err = resolve_range(&c, None, None).unwrap_err().to_string();
    assert!(
        err.contains("2025-02 has no recorded payouts close"),
        "{err}"
    );
    let err = resolve_range(&c, None, Some(p("2025-04")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("2025-02"), "{err}");
    let err = resolve_range(&closed(&[]), None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("run `opnet close` first"), "{err}");
    let err = resolve_range(&c, Some(p("2025-03")), Some(p("2025-01")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("is after"), "{err}");
}

fn book(toml: &str) -> PlanBook {
    PlanBook::from_toml(toml).unwrap()
}

#[test]
fn r0_5_versions_in_force_apply_as_dated() {
    let b = book(
        "[[version]]\nversion='a'\neffective_from='2024-01'\n\
         [[version]]\nversion='b'\neffective_from='2025-02'\n",
    );
    let through = p("2025-03");
    assert_eq!(plan_for(&b, p("2025-01"), through).unwrap().version, "a");
    assert_eq!(plan_for(&b, p("2025-02"), through).unwrap().version, "b");
    assert!(plan_for(&b, p("2023-12"), through).is_err());
}

#[test]
fn r0_5_a_version_not_yet_in_force_applies_from_the_first_simulated_period() {
    // Finance tries 'next' (from 2027-01) on the closes of 2025: it applies to all.
    let b = book(
        "[[version]]\nversion='a'\neffective_from='2024-01'\n\
         [[version]]\nversion='next'\neffective_from='2027-01'\n",
    );
    for m in ["2025-01", "2025-06"] {
        assert_eq!(plan_for(&b, p(m), p("2025-06")).unwrap().version, "next");
    }
    // Once it is in force by --through, it applies as dated again.
    assert_eq!(
        plan_for(&b, p("2026-12"), p("2027-01")).unwrap().version,
        "a"
    );
}

#[test]
fn default_out_is_named_after_the_plan_file() {
    assert_eq!(
        default_out(Path::new("/x/plans/2027.toml")),
        PathBuf::from("simulation-2027")
    );
}

#[test]
fn bad_plan_file_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(
        &f,
        "[[version]]\nversion='x'\neffective_from='2025-01'\n[version.revenue_share.initial]\nsoftware=12000\nimplementation=9000\nsupport=10000\n",
    )
    .unwrap();
    let err = read_plan(&f).unwrap_err().to_string();
    assert!(err.contains("bad.toml"), "{err}");
    assert!(
        err.contains("version[0].revenue_share.initial.software"),
        "{err}"
    );
    let err = read_plan(&dir.path().join("missing.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.toml"), "{err}");
}

fn statements(rows: &[(&str, &str, i64, i64)]) -> DataFrame {
    df!(
        "operator_id" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "currency" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "payable_cents" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "carried_out_cents" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
    )
    .unwrap()
}

fn line(period: &str, invoice: &str, kind: &str, amount: i64, bp: i64) -> DataFrame {
    df!(
        "period" => [period],
        "operator_id" => ["OP-1"],
        "currency" => ["USD"],
        "invoice_id" => [invoice],
        "line_no" => [1i64],
        "refund_id" => [None::<&str>],
        "revenue_type" => ["software"],
        "kind" => [kind],
        "amount_cents" => [amount],
        "operator_bp" => [bp],
        "operator_cents" => [amount * bp / 10000],
        "candlefish_cents" => [amount - amount * bp / 10000],
        "collected_period" => [period],
    )
    .unwrap()
}

fn close_of(lines: DataFrame, statements: DataFrame) -> PayoutClose {
    PayoutClose {
        tiers: DataFrame::empty(),
        lines,
        statements,
        exceptions: DataFrame::empty(),
        control: DataFrame::empty(),
    }
}

fn sorted(df: DataFrame, by: &[&str]) -> DataFrame {
    df.sort(by.to_vec(), SortMultipleOptions::default())
        .unwrap()
}

#[test]
fn r1_7_the_simulated_balance_carries_into_the_next_period() {
    let recorded = df!(
        "operator_id" => ["OP-9"],
        "currency" => ["USD"],
        "carried_in_cents" => [-5i64],
    )
    .unwrap();
    let mut walk = Walk::new(recorded.clone());
    // The first simulated period carries in the recorded balance of the one before.
    let h = walk.history(no_lines(), &[]).unwrap();
    assert_eq!(h.carried_in.collect().unwrap(), recorded);
    // Then what the simulated close carried out, non-zero balances only.
    walk.record(&close_of(
        line("2025-01", "INV-1", "collection", 1000, 7000),
        statements(&[("OP-1", "USD", 0, -250), ("OP-2", "EUR", 700, 0)]),
    ))
    .unwrap();
    let carried = walk.carried().clone();
    assert_eq!(
        carried,
        df!(
            "operator_id" => ["OP-1"],
            "currency" => ["USD"],
            "carried_in_cents" => [-250i64],
        )
        .unwrap()
    );
    assert_eq!(
        carried_out(&statements(&[("OP-1", "USD", 10, 0)]))
            .unwrap()
            .height(),
        0
    );
}

#[test]
fn r1_6_clawbacks_read_the_simulated_lines_of_the_range_and_the_recorded_ones_before() {
    let mut walk = Walk::new(carried_out(&statements(&[])).unwrap());
    walk.record(&close_of(
        concat_frames(&[
            line("2025-01", "INV-1", "collection", 1000, 7500),
            line("2025-01", "INV-2", "collection", 2000, 7500),
        ]),
        statements(&[("OP-1", "USD", 2250, 0)]),
    ))
    .unwrap();
    // A recorded line of 2024-12 (before --from) for INV-0, at the recorded share.
    let recorded = line("2024-12", "INV-0", "collection", 500, 7000)
        .lazy()
        .select(crate::jobs::payouts::HISTORY_COLUMNS.map(|(n, _)| col(n)));
    let h = walk
        .history(recorded, &["INV-0".to_string(), "INV-1".to_string()])
        .unwrap();
    let prior = sorted(h.prior_lines.collect().unwrap(), &["invoice_id"]);
    // Only the refunded invoices: INV-2 is not read; INV-1 at its simulated share.
    assert_eq!(
        prior
            .column("invoice_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect::<Vec<_>>(),
        ["INV-0", "INV-1"]
    );
    assert_eq!(
        prior
            .column("operator_bp")
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .collect::<Vec<_>>(),
        [7000, 7500]
    );
    assert_eq!(
        prior
            .get_column_names()
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        crate::jobs::payouts::HISTORY_COLUMNS.map(|(n, _)| n)
    );
}

/// No recorded lines before --from.
fn no_lines() -> LazyFrame {
    let columns: Vec<Column> = crate::jobs::payouts::HISTORY_COLUMNS
        .iter()
        .map(|(n, t)| Column::new_empty((*n).into(), t))
        .collect();
    DataFrame::new_infer_height(columns).unwrap().lazy()
}

fn concat_frames(frames: &[DataFrame]) -> DataFrame {
    let mut out = frames[0].clone();
    for f in &frames[1..] {
        out.vstack_mut(f).unwrap();
    }
    out
}
