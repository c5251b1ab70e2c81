//! R0.2–R0.4 — money in integer cents, percentages in basis points, and
//! half-even rounding done in integer arithmetic.
//!
//! The scalar functions are the reference; the Polars expressions compute the same
//! thing column-wise (a property test checks that they agree). No float ever touches
//! an amount.

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

/// Column-wise [`share_of`]: `amount` and `bp` are Int64 expressions.
pub fn share_expr(amount_cents: Expr, bp: Expr) -> Expr {
    div_round_half_even_expr(
        amount_cents.cast(DataType::Int64) * bp.cast(DataType::Int64),
        lit(BP_WHOLE),
    )
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
        fn r0_4_expression_agrees_with_scalar(rows in proptest::collection::vec((-1_000_000_000i64..1_000_000_000, 0i64..=10_000), 1..50)) {
            let (a, b): (Vec<i64>, Vec<i64>) = rows.into_iter().unzip();
            let want: Vec<i64> = a.iter().zip(&b).map(|(x, y)| share_of(*x, *y)).collect();
            prop_assert_eq!(expr_split(&a, &b), want);
        }
    }
}
