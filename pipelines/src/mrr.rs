//! R6.1 — monthly recurring revenue: software lines recognised straight-line over
//! their service period, per operator and currency.
//!
//! A line contributes `round_half_even(amount × days of its service period inside M /
//! days of its service period)` cents, in integer arithmetic. Computed for several
//! periods at once (a cross join with the periods) because exclusivity (R3.3) needs
//! M and M−3 and the network-health trend (R5) needs twelve months.

use crate::Inputs;
use crate::active::months_of;
use crate::money::{mul_div_round_half_even_expr, sum_cents};
use crate::period::Period;
use polars::prelude::*;

/// MRR per `period`, `operator_id`, `currency` → `mrr_cents` (Int64), for each of
/// `periods`. Operators with no recognised revenue in a period have no row.
///
/// Invoices that are `void` are left out (R6.1). An invoice id that appears more than
/// once is ambiguous (R7 `duplicate_invoice`) and is left out too, so a billing
/// duplicate cannot double an operator's MRR; lines whose service period ends before it
/// starts recognise nothing.
pub fn mrr(inputs: &Inputs, periods: &[Period]) -> LazyFrame {
    mrr_of_lines(software_lines(inputs), periods)
}

/// [`mrr`] of the operators `operator_ids` (an `operator_id` column) only: the same
/// rows as `mrr` narrowed to them, without recognising everybody else's lines (R3
/// needs forty months of a handful of exclusive operators).
pub fn mrr_of_operators(inputs: &Inputs, periods: &[Period], operator_ids: LazyFrame) -> LazyFrame {
    let all = software_lines(inputs);
    let materialized = crate::derived::in_memory(&all).is_some();
    let mine = all.join(
        operator_ids,
        [col("operator_id")],
        [col("operator_id")],
        JoinArgs::new(JoinType::Semi),
    );
    // Kept materialized when the whole was, so the month join below applies; should
    // it fail, the plan carries the error to the caller's collect.
    let mine = if materialized {
        mine.clone().collect().map(DataFrame::lazy).unwrap_or(mine)
    } else {
        mine
    };
    mrr_of_lines(mine, periods)
}

/// Every software line that can recognise MRR (R6.1) with its owner and currency:
/// `operator_id`, `currency`, `amount_cents`, `service_start`, `service_end`,
/// `service_days`, `m_start`, `m_end` (months of the service dates).
fn software_lines(inputs: &Inputs) -> LazyFrame {
    let invoices = inputs
        .invoices
        .clone()
        .filter(col("invoice_id").is_duplicated().not())
        .filter(col("status").neq(lit("void")))
        .select([col("invoice_id"), col("customer_id"), col("currency")]);
    let owners = inputs
        .customers
        .clone()
        .filter(col("operator_id").is_not_null())
        .select([col("customer_id"), col("operator_id")])
        .unique(Some(cols(["customer_id"])), UniqueKeepStrategy::First);

    let lines = inputs
        .invoice_lines
        .clone()
        .filter(col("revenue_type").eq(lit("software")))
        .select([
            col("invoice_id"),
            col("amount_cents"),
            col("service_start"),
            col("service_end"),
        ])
        .join(
            invoices,
            [col("invoice_id")],
            [col("invoice_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .join(
            owners,
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .with_column(
            (days(col("service_end")) - days(col("service_start")) + lit(1i64))
                .alias("service_days"),
        )
        .filter(col("service_days").gt(lit(0i64)))
        .select([
            col("operator_id"),
            col("currency"),
            col("amount_cents"),
            col("service_start"),
            col("service_end"),
            col("service_days"),
            months_of(col("service_start")).alias("m_start"),
            months_of(col("service_end")).alias("m_end"),
        ]);
    // The same for every period: joined once per snapshot (issue 13).
    crate::derived::memo(
        "mrr/software_lines",
        &[&inputs.invoices, &inputs.invoice_lines, &inputs.customers],
        lines,
    )
}

/// MRR per `period`, `operator_id`, `currency` of `lines` ([`software_lines`]).
fn mrr_of_lines(lines: LazyFrame, periods: &[Period]) -> LazyFrame {
    let windows = df!(
        "period" => periods.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "p_first" => periods.iter().map(|p| p.first_day()).collect::<Vec<_>>(),
        "p_last" => periods.iter().map(|p| p.last_day()).collect::<Vec<_>>(),
        "p_months" => periods.iter().map(|p| p.months() as i64).collect::<Vec<_>>(),
    )
    .expect("equal lengths")
    .lazy();

    // A line whose service lies inside one calendar month (monthly billing, the common
    // case) can only overlap that month: it is matched to its window by a join on the
    // month instead of being crossed with every window and filtered (issue 13: the
    // cross join made exclusivity's 40-month MRR the largest cost of a backfill).
    let keep = [
        "amount_cents",
        "service_start",
        "service_end",
        "operator_id",
        "currency",
        "service_days",
        "period",
        "p_first",
        "p_last",
    ];
    // Only over a materialized frame: on a plan (a test's literal edits, a filtered
    // copy) the split would evaluate the plan twice and nest it deep enough to
    // overflow a test thread's stack in a debug build; there the cross join is as it
    // was. Both paths give the same rows.
    if crate::derived::in_memory(&lines).is_none() {
        return overlap(lines.cross_join(windows, None));
    }
    let one_month = lines
        .clone()
        .filter(col("m_start").eq(col("m_end")))
        .join(
            windows.clone(),
            [col("m_start")],
            [col("p_months")],
            JoinArgs::new(JoinType::Inner),
        )
        .select(keep.map(col));
    let longer = lines
        .filter(col("m_start").neq(col("m_end")))
        .cross_join(windows, None)
        .select(keep.map(col));
    let pieces = concat([one_month.clone(), longer], UnionArgs::default()).unwrap_or(one_month);
    overlap(pieces)
}

/// Each line's share of each window it overlaps (day-weighted, half-even), summed
/// per period, operator and currency.
fn overlap(pieces: LazyFrame) -> LazyFrame {
    pieces
        .with_columns([
            greater(days(col("service_start")), days(col("p_first"))).alias("o_start"),
            lesser(days(col("service_end")), days(col("p_last"))).alias("o_end"),
        ])
        .with_column((col("o_end") - col("o_start") + lit(1i64)).alias("days_in"))
        .filter(col("days_in").gt(lit(0i64)))
        .with_column(
            mul_div_round_half_even_expr(col("amount_cents"), col("days_in"), col("service_days"))
                .alias("recognised"),
        )
        .group_by([col("period"), col("operator_id"), col("currency")])
        .agg([sum_cents(col("recognised")).alias("mrr_cents")])
        .sort(
            ["period", "operator_id", "currency"],
            SortMultipleOptions::default(),
        )
}

/// Days since the epoch of a date column, as Int64 for arithmetic.
fn days(e: Expr) -> Expr {
    e.cast(DataType::Int32).cast(DataType::Int64)
}

fn greater(a: Expr, b: Expr) -> Expr {
    when(a.clone().gt_eq(b.clone())).then(a).otherwise(b)
}

fn lesser(a: Expr, b: Expr) -> Expr {
    when(a.clone().lt_eq(b.clone())).then(a).otherwise(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn inputs() -> Inputs {
        let mut i = Inputs::empty();
        i.invoices = df!(
            "invoice_id" => ["A", "B", "V", "D", "D"],
            "customer_id" => ["c1", "c1", "c1", "c1", "c1"],
            "currency" => ["USD", "USD", "USD", "USD", "USD"],
            "status" => ["paid", "open", "void", "paid", "paid"],
        )
        .unwrap()
        .lazy();
        i.invoice_lines = df!(
            "invoice_id" => ["A", "A", "B", "V", "D"],
            "line_no" => [1i64, 2, 1, 1, 1],
            "revenue_type" => ["software", "support", "software", "software", "software"],
            // annual 36500 over 365 days (2025-01-01..2025-12-31): January has 31 days → 3100
            "amount_cents" => [36_500i64, 999, 1_000, 5_000, 7_000],
            "service_start" => [d("2025-01-01"), d("2025-01-01"), d("2025-01-16"), d("2025-01-01"), d("2025-01-01")],
            "service_end" => [d("2025-12-31"), d("2025-01-31"), d("2025-02-14"), d("2025-01-31"), d("2025-01-31")],
        )
        .unwrap()
        .lazy();
        i.customers = df!("customer_id" => ["c1"], "operator_id" => [Some("op")])
            .unwrap()
            .lazy();
        i
    }

    #[test]
    fn r6_1_straight_line_recognition_with_half_even() {
        let jan = Period::parse("2025-01").unwrap();
        let feb = Period::parse("2025-02").unwrap();
        let out = mrr(&inputs(), &[jan, feb]).collect().unwrap();
        let v: Vec<i64> = out
            .column("mrr_cents")
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        // Jan: A 3100 + B 1000×16/30 = 533.33 → 533; void V and duplicated D left out → 3633
        // Feb: A 36500×28/365 = 2800 + B 1000×14/30 = 466.67 → 467 → 3267
        assert_eq!(v, [3633, 3267]);
    }

    /// Issue 13: R3 recognises only the exclusive operators' lines; the rows must be
    /// those of everybody's MRR narrowed to them, for a plan and for frames in memory.
    #[test]
    fn r6_1_mrr_of_some_operators_is_everybodys_narrowed() {
        let mut i = inputs();
        i.customers =
            df!("customer_id" => ["c1", "c2"], "operator_id" => [Some("op"), Some("other")])
                .unwrap()
                .lazy();
        i.invoices = df!(
            "invoice_id" => ["A", "B", "V", "D", "D", "E"],
            "customer_id" => ["c1", "c1", "c1", "c1", "c1", "c2"],
            "currency" => ["USD", "USD", "USD", "USD", "USD", "EUR"],
            "status" => ["paid", "open", "void", "paid", "paid", "paid"],
        )
        .unwrap()
        .lazy();
        let lines = i.invoice_lines.clone().collect().unwrap();
        let e = df!(
            "invoice_id" => ["E"], "line_no" => [1i64], "revenue_type" => ["software"], "amount_cents" => [9_000i64],
            "service_start" => [d("2025-01-10")], "service_end" => [d("2025-03-09")],
        )
        .unwrap();
        i.invoice_lines = lines.vstack(&e).unwrap().lazy();
        let periods: Vec<Period> = Period::parse("2024-12")
            .unwrap()
            .through(Period::parse("2025-03").unwrap())
            .collect();
        // The same datasets as lazy plans (not memoized, cross-join path).
        let mut planned = i.clone();
        planned.invoice_lines = i.invoice_lines.clone().filter(lit(true));
        for (i, ops) in [&i, &planned].into_iter().flat_map(|i| {
            [
                vec!["op"],
                vec!["other"],
                vec!["op", "other"],
                vec!["nobody"],
            ]
            .map(|ops| (i, ops))
        }) {
            let ids = df!("operator_id" => ops.clone()).unwrap().lazy();
            let want = mrr(i, &periods)
                .join(
                    ids.clone(),
                    [col("operator_id")],
                    [col("operator_id")],
                    JoinArgs::new(JoinType::Semi),
                )
                // A semi join need not keep the order; `mrr` sorts, and so does this.
                .sort(
                    ["period", "operator_id", "currency"],
                    SortMultipleOptions::default(),
                )
                .collect()
                .unwrap();
            let got = mrr_of_operators(i, &periods, ids).collect().unwrap();
            assert!(got.equals_missing(&want), "{ops:?}\n{got}\n{want}");
            assert!(ops == ["nobody"] || got.height() > 0, "{ops:?}");
        }
    }

    #[test]
    fn r6_1_half_cent_tie_rounds_to_even() {
        let mut i = inputs();
        i.invoices = df!("invoice_id" => ["X"], "customer_id" => ["c1"], "currency" => ["USD"], "status" => ["paid"])
            .unwrap()
            .lazy();
        // 5 cents over 2 days, one in Jan: 2.5 → 2
        i.invoice_lines = df!(
            "invoice_id" => ["X"], "line_no" => [1i64], "revenue_type" => ["software"], "amount_cents" => [5i64],
            "service_start" => [d("2025-01-31")], "service_end" => [d("2025-02-01")],
        )
        .unwrap()
        .lazy();
        let out = mrr(&i, &[Period::parse("2025-01").unwrap()])
            .collect()
            .unwrap();
        assert_eq!(
            out.column("mrr_cents").unwrap().i64().unwrap().get(0),
            Some(2)
        );
    }
}
