//! Shared definitions every rule family leans on: active customers (R2.1), active
//! operators (R6.2), tenure (R1.1) and phase (R1.2), as Polars expressions.
//!
//! They take the date they are evaluated at as a parameter, so "end of M" and
//! "end of M−12" are the same code.

use crate::period::Period;
use crate::plan::Plan;
use chrono::NaiveDate;
use polars::prelude::*;

/// A date literal usable against `Date` columns.
pub fn date_lit(d: NaiveDate) -> Expr {
    lit(d)
}

/// R2.1 — a customer is active at `d` when `contract_signed_on ≤ d` and
/// (`churned_on` is empty or `churned_on > d`): churned on `d` itself is not active.
pub fn customer_active_at(d: NaiveDate) -> Expr {
    col("contract_signed_on").lt_eq(date_lit(d)).and(
        col("churned_on")
            .is_null()
            .or(col("churned_on").gt(date_lit(d))),
    )
}

/// R6.2 — an operator is active at `d` when `joined_on ≤ d` and (`terminated_on`
/// is empty or `terminated_on > d`).
pub fn operator_active_at(d: NaiveDate) -> Expr {
    col("joined_on").lt_eq(date_lit(d)).and(
        col("terminated_on")
            .is_null()
            .or(col("terminated_on").gt(date_lit(d))),
    )
}

/// R1.1 `months(d) = 12·year + month` of a `Date` expression, as Int64 (a NULL date
/// gives NULL).
///
/// One element-wise kernel over the day numbers (issue 13): `dt().year()` and
/// `dt().month()` each build a calendar date per row, 6 % of a one-period close over
/// the history's software lines; the same as plain Polars arithmetic needs the
/// day-of-era term nine times, which Polars evaluates again each time.
pub fn months_of(date: Expr) -> Expr {
    date.map_with_fmt_str(
        months_of_dates,
        |_, field| Ok(Field::new(field.name().clone(), DataType::Int64)),
        "months_of",
    )
}

fn months_of_dates(dates: Column) -> PolarsResult<Column> {
    polars_ensure!(
        dates.dtype() == &DataType::Date,
        InvalidOperation: "months(d) (R1.1) of column {:?} needs dates, not {}", dates.name(), dates.dtype()
    );
    let days = dates.to_physical_repr();
    // Over the values, keeping each chunk's validity: NULL stays NULL.
    let months: Int64Chunked =
        polars::chunked_array::ops::arity::unary_elementwise_values(days.i32()?, months_of_day);
    Ok(months.with_name(dates.name().clone()).into_column())
}

/// `12·year + month` of the proleptic Gregorian date `day` days after 1970-01-01
/// (Howard Hinnant's `civil_from_days`, in i64: exact for every i32 day number).
pub fn months_of_day(day: i32) -> i64 {
    let z = i64::from(day) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097; // day of the 400-year era, [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // from March 1st, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let (month, march_year) = if mp < 10 { (mp + 3, 0) } else { (mp - 9, 1) };
    (yoe + era * 400 + march_year) * 12 + month
}

/// R1.1 — tenure month of an operator (`joined_on` column) in `period`: the month of
/// joining is tenure month 1.
pub fn tenure(period: Period) -> Expr {
    lit(period.months() as i64) - months_of(col("joined_on")) + lit(1i64)
}

/// R1.2 — `initial` / `growth` / `mature` from a tenure expression, at the plan's
/// phase boundaries (12 and 24 by default).
pub fn phase(tenure: Expr, plan: &Plan) -> Expr {
    let rs = &plan.revenue_share;
    when(tenure.clone().lt_eq(lit(rs.initial_through_month)))
        .then(lit("initial"))
        .when(tenure.lt_eq(lit(rs.growth_through_month)))
        .then(lit("growth"))
        .otherwise(lit("mature"))
}

/// Operators active at `d` (R6.2), all their columns.
pub fn active_operators(operators: LazyFrame, d: NaiveDate) -> LazyFrame {
    operators.filter(operator_active_at(d))
}

/// Active customers at `d` per operator (R2.1): `operator_id`, `active_customers`.
/// Customers without an operator count for nobody.
pub fn active_customer_counts(customers: LazyFrame, d: NaiveDate) -> LazyFrame {
    customers
        .filter(customer_active_at(d).and(col("operator_id").is_not_null()))
        .group_by([col("operator_id")])
        .agg([len().cast(DataType::Int64).alias("active_customers")])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn r2_1_churn_on_the_day_is_inactive_and_day_after_is_active() {
        let customers = df!(
            "customer_id" => ["a", "b", "c", "d"],
            "operator_id" => [Some("op"), Some("op"), Some("op"), None],
            "contract_signed_on" => [d("2025-01-10"), d("2025-01-10"), d("2025-02-01"), d("2025-01-01")],
            "churned_on" => [Some(d("2025-01-31")), Some(d("2025-02-01")), None, None],
        )
        .unwrap();
        let out = active_customer_counts(customers.lazy(), d("2025-01-31"))
            .collect()
            .unwrap();
        // a churned on the day: inactive; b churns the day after: active; c signs later; d has no operator
        assert_eq!(
            out.column("active_customers")
                .unwrap()
                .i64()
                .unwrap()
                .get(0),
            Some(1)
        );
    }

    #[test]
    fn r6_2_terminated_on_the_day_is_inactive() {
        let ops = df!(
            "operator_id" => ["x", "y", "z"],
            "joined_on" => [d("2025-01-31"), d("2024-01-01"), d("2025-02-01")],
            "terminated_on" => [None, Some(d("2025-01-31")), None],
        )
        .unwrap();
        let out = active_operators(ops.lazy(), d("2025-01-31"))
            .collect()
            .unwrap();
        let ids: Vec<_> = out
            .column("operator_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .collect();
        assert_eq!(ids, ["x"]);
    }

    #[test]
    fn r1_1_r1_2_tenure_and_phase_boundaries() {
        let plan = Plan::playbook();
        // joined 2024-01 → 2024-12 is tenure 12 (initial), 2025-01 is 13 (growth),
        // 2025-12 is 24 (growth), 2026-01 is 25 (mature)
        let ops = df!("joined_on" => [d("2024-01-31")]).unwrap();
        for (p, t, ph) in [
            ("2024-01", 1, "initial"),
            ("2024-12", 12, "initial"),
            ("2025-01", 13, "growth"),
            ("2025-12", 24, "growth"),
            ("2026-01", 25, "mature"),
        ] {
            let period = Period::parse(p).unwrap();
            let out = ops
                .clone()
                .lazy()
                .select([
                    tenure(period).alias("t"),
                    phase(tenure(period), &plan).alias("p"),
                ])
                .collect()
                .unwrap();
            assert_eq!(
                out.column("t").unwrap().i64().unwrap().get(0),
                Some(t),
                "{p}"
            );
            assert_eq!(
                out.column("p").unwrap().str().unwrap().get(0),
                Some(ph),
                "{p}"
            );
        }
    }

    #[test]
    fn r1_1_months_of_every_day_from_1600_to_2400_is_twelve_years_plus_the_month() {
        use chrono::Datelike;
        let epoch = d("1970-01-01");
        let mut day = d("1600-01-01");
        while day <= d("2400-12-31") {
            let n = i32::try_from((day - epoch).num_days()).unwrap();
            assert_eq!(
                months_of_day(n),
                i64::from(day.year()) * 12 + i64::from(day.month()),
                "{day}"
            );
            day = day.succ_opt().unwrap();
        }
        // The whole i32 range computes without overflow and keeps months in order.
        assert!(months_of_day(i32::MIN) < months_of_day(-1));
        assert!(months_of_day(0) < months_of_day(i32::MAX));
    }

    #[test]
    fn r1_1_months_of_a_column_keeps_nulls_and_refuses_what_is_not_a_date() {
        let frame = df!(
            "on" => [Some(d("2024-02-29")), None, Some(d("1999-12-31"))],
            "text" => ["2024-02-29", "x", "y"],
        )
        .unwrap();
        let out = frame
            .clone()
            .lazy()
            .select([months_of(col("on"))])
            .collect()
            .unwrap();
        let months: Vec<Option<i64>> = out.column("on").unwrap().i64().unwrap().iter().collect();
        assert_eq!(months, [Some(2024 * 12 + 2), None, Some(1999 * 12 + 12)]);
        // In a filter too (element-wise, so predicates may use it).
        let kept = frame
            .clone()
            .lazy()
            .filter(months_of(col("on")).gt(lit(2000i64 * 12)))
            .collect()
            .unwrap();
        assert_eq!(kept.height(), 1);
        let err = frame
            .lazy()
            .select([months_of(col("text"))])
            .collect()
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs dates"), "{err}");
    }
}
