//! R0.2–R0.4 — money in integer cents, percentages in basis points, and
//! half-even rounding done in integer arithmetic.
//!
//! The scalar functions are the reference; the Polars expressions compute the same
//! thing column-wise (a property test checks that they agree). No float ever touches
//! an amount, and no product or sum of amounts may wrap: the scalar side works in
//! `i128`, products are split so that no intermediate leaves `i64`
//! ([`mul_div_round_half_even_expr`]), and sums go through `Int128` and back with a
//! strict cast ([`sum_cents`]), so an overflow is an error, never a wrong amount.

use polars::prelude::*;

/// Basis points in a whole (R0.3): `10000` = 100.00 %.
pub const BP_WHOLE: i64 = 10_000;

/// `round_half_even(n / d)` for integers, `d > 0` (R0.4).
pub fn div_round_half_even(n: i128, d: i128) -> i128 {
    assert!(d > 0, "denominator must be positive");
    let q = n.div_euclid(d);
    let r = n.rem_euclid(d);
    let twice = 2 * r;
    if twice > d || (twice == d && q.rem_euclid(2) == 1) {
        q + 1
    } else {
        q
    }
}

/// The operator part of `amount` at `bp` basis points: `round_half_even(amount × bp / 10000)`.
pub fn share_of(amount_cents: i64, bp: i64) -> i64 {
    div_round_half_even(amount_cents as i128 * bp as i128, BP_WHOLE as i128) as i64
}

/// R0.4: `(operator, candlefish)`; the remainder goes to Candlefish so the two parts
/// always add up to `amount` exactly.
pub fn split(amount_cents: i64, operator_bp: i64) -> (i64, i64) {
    let operator = share_of(amount_cents, operator_bp);
    (operator, amount_cents - operator)
}

/// Column-wise `round_half_even(n / d)` on Int64 expressions, `d > 0`.
///
/// Uses floor division so the remainder is always in `[0, d)`, also for negative `n`
/// (discount lines, clawbacks).
pub fn div_round_half_even_expr(n: Expr, d: Expr) -> Expr {
    let q = n.clone().floor_div(d.clone());
    let r = n - q.clone() * d.clone();
    let twice = r * lit(2i64);
    let odd = (q.clone() - q.clone().floor_div(lit(2i64)) * lit(2i64)).eq(lit(1i64));
    let up = twice.clone().gt(d.clone()).or(twice.eq(d).and(odd));
    q + when(up).then(lit(1i64)).otherwise(lit(0i64))
}

/// Column-wise `round_half_even(a × b / d)` on Int64 expressions with `0 ≤ b ≤ d` and
/// `0 < d < 2³¹` (basis points over 10000, days inside a service period over its days).
///
/// `a × b` itself can leave `i64` (2·10¹⁸ cents × 6500 bp did, and wrapped), so it is
/// never formed: with `a = q·d + r` (`0 ≤ r < d`), `a·b/d = q·b + r·b/d`, where
/// `|q·b| ≤ |a| + d` and `r·b < d² < 2⁶²` both stay in range. The half-even decision
/// then looks at the whole quotient `q·b + ⌊r·b/d⌋` and the remainder of `r·b`.
pub fn mul_div_round_half_even_expr(a: Expr, b: Expr, d: Expr) -> Expr {
    let (a, b, d) = (
        a.cast(DataType::Int64),
        b.cast(DataType::Int64),
        d.cast(DataType::Int64),
    );
    let q = a.clone().floor_div(d.clone());
    let r = a - q.clone() * d.clone();
    let t = r * b.clone();
    let u = t.clone().floor_div(d.clone());
    let v = t - u.clone() * d.clone();
    let whole = q * b + u;
    let twice = v * lit(2i64);
    let odd = (whole.clone() - whole.clone().floor_div(lit(2i64)) * lit(2i64)).eq(lit(1i64));
    let up = twice.clone().gt(d.clone()).or(twice.eq(d).and(odd));
    whole + when(up).then(lit(1i64)).otherwise(lit(0i64))
}

/// Column-wise [`share_of`]: `amount` and `bp` (0–10000) are Int64 expressions. Exact
/// for every `i64` amount (see [`mul_div_round_half_even_expr`]).
pub fn share_expr(amount_cents: Expr, bp: Expr) -> Expr {
    mul_div_round_half_even_expr(amount_cents, bp, lit(BP_WHOLE))
}

/// The sum of a money column as Int64 cents, computed in `Int128` and cast back
/// strictly: a total beyond `i64` fails the computation (naming the column) instead
/// of wrapping into a plausible-looking wrong amount.
pub fn sum_cents(cents: Expr) -> Expr {
    cents
        .cast(DataType::Int128)
        .sum()
        .strict_cast(DataType::Int64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn r0_4_half_cent_ties_go_to_even() {
        // 0.5 → 0, 1.5 → 2, 2.5 → 2, −0.5 → 0, −1.5 → −2
        assert_eq!(div_round_half_even(5, 10), 0);
        assert_eq!(div_round_half_even(15, 10), 2);
        assert_eq!(div_round_half_even(25, 10), 2);
        assert_eq!(div_round_half_even(-5, 10), 0);
        assert_eq!(div_round_half_even(-15, 10), -2);
        assert_eq!(div_round_half_even(-25, 10), -2);
        assert_eq!(div_round_half_even(26, 10), 3);
        assert_eq!(div_round_half_even(-26, 10), -3);
    }

    #[test]
    fn r0_4_share_of_half_cent() {
        // 70 % of 1 cent = 0.7 → 1; 50 % of 1 cent = 0.5 → 0; 50 % of 3 cents = 1.5 → 2
        assert_eq!(split(1, 7000), (1, 0));
        assert_eq!(split(1, 5000), (0, 1));
        assert_eq!(split(3, 5000), (2, 1));
        // discount line: 70 % of −1005 = −703.5 → −704
        assert_eq!(split(-1005, 7000), (-704, -301));
    }

    fn expr_split(amounts: &[i64], bps: &[i64]) -> Vec<i64> {
        let df = df!("a" => amounts, "bp" => bps).unwrap();
        let out = df
            .lazy()
            .select([share_expr(col("a"), col("bp")).alias("s")])
            .collect()
            .unwrap();
        out.column("s")
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    }

    #[test]
    fn r0_4_expression_matches_scalar_on_ties() {
        let amounts = [1, 3, 5, -1, -3, -5, -1005, 12345, 0];
        let bps = [5000, 5000, 5000, 5000, 5000, 5000, 7000, 8500, 7000];
        let want: Vec<i64> = amounts
            .iter()
            .zip(bps)
            .map(|(a, b)| share_of(*a, b))
            .collect();
        assert_eq!(expr_split(&amounts, &bps), want);
    }

    #[test]
    fn r0_2_share_of_a_huge_amount_does_not_wrap() {
        // 2·10¹⁸ cents at 6500 bp wrapped to −544674407370955 in i64 arithmetic.
        let amounts = [
            2_000_000_000_000_000_000i64,
            -2_000_000_000_000_000_000,
            i64::MAX / 2,
        ];
        let bps = [6500i64, 6500, 10_000];
        let want: Vec<i64> = amounts
            .iter()
            .zip(bps)
            .map(|(a, b)| share_of(*a, b))
            .collect();
        assert_eq!(want[0], 1_300_000_000_000_000_000);
        assert_eq!(expr_split(&amounts, &bps), want);
    }

    #[test]
    fn r0_4_mul_div_rounds_half_even_over_days() {
        // 5 cents over 2 days, one day inside: 2.5 → 2; 7 over 2 → 3.5 → 4; −5 → −2
        let df = df!("a" => [5i64, 7, -5, 1_000_000_000_000_000_000], "b" => [1i64, 1, 1, 31], "d" => [2i64, 2, 2, 365])
            .unwrap();
        let out = df
            .lazy()
            .select([mul_div_round_half_even_expr(col("a"), col("b"), col("d")).alias("x")])
            .collect()
            .unwrap();
        let got: Vec<i64> = out
            .column("x")
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        let exact = div_round_half_even(1_000_000_000_000_000_000i128 * 31, 365) as i64;
        assert_eq!(got, [2, 4, -2, exact]);
    }

    #[test]
    fn r0_2_a_sum_beyond_i64_is_an_error_not_a_wrapped_amount() {
        let df = df!("g" => ["a", "a", "b"], "x" => [i64::MAX, 5, 7]).unwrap();
        let res = df
            .lazy()
            .group_by([col("g")])
            .agg([sum_cents(col("x")).alias("s")])
            .collect();
        assert!(res.is_err(), "{res:?}");
        let ok = df!("x" => [i64::MAX - 10, 5, 5]).unwrap();
        let s = ok.lazy().select([sum_cents(col("x"))]).collect().unwrap();
        assert_eq!(s.column("x").unwrap().i64().unwrap().get(0), Some(i64::MAX));
    }

    proptest! {
        #[test]
        fn r0_4_parts_always_add_up(amount in -10_000_000_000i64..10_000_000_000, bp in 0i64..=10_000) {
            let (op, cf) = split(amount, bp);
            prop_assert_eq!(op + cf, amount);
            // the operator part is within half a cent of the exact share
            let exact = amount as i128 * bp as i128;
            prop_assert!((op as i128 * 10_000 - exact).abs() <= 5_000);
        }

        #[test]
        fn r0_4_expression_agrees_with_scalar(rows in proptest::collection::vec((prop_oneof![-1_000_000_000i64..1_000_000_000, (i64::MIN / 2)..(i64::MAX / 2)], 0i64..=10_000), 1..50)) {
            let (a, b): (Vec<i64>, Vec<i64>) = rows.into_iter().unzip();
            let want: Vec<i64> = a.iter().zip(&b).map(|(x, y)| share_of(*x, *y)).collect();
            prop_assert_eq!(expr_split(&a, &b), want);
        }
    }
}
