//! R1 — the monthly payout close: collections and clawbacks priced at the operator's
//! shares, statements per operator and currency with negative balances carried
//! forward, and the control totals that must hold before anything is committed.
//!
//! [`close_payouts`] is a pure function of the inputs snapshot, the payout history
//! (earlier collection lines and the balances carried out of the previous period),
//! the period and the plan. Reconciliation ([`crate::reconcile`], R7) decides which
//! invoices and refunds go through; this module prices them. All money is Int64 cents
//! and every share is rounded half-even in integer arithmetic (R0.2–R0.4).
//!
//! Readings where rules.md is silent: a statement's `phase` and `tier` are the
//! operator's in M even when it only carries a clawback or a balance (`tier` is `none`
//! for an operator not active at end of M; `phase` is null for an operator no longer in
//! crm/operators); a clawback keeps the `collected_period` of the line it refunds, and
//! its shares come from the earliest collection line of that (invoice, line); history
//! lines of M itself or later are ignored (a re-run); `status`/`revision` of
//! `payout_statements` (R1.9) are the job's, not this module's.

use crate::Inputs;
use crate::active::{phase, tenure};
pub use crate::history::PayoutHistory;
use crate::history::{first_collection_per_line, prior_collections};
use crate::money::{BP_WHOLE, share_expr, sum_cents};
use crate::period::Period;
use crate::plan::{Plan, TypeShares};
use crate::reconcile;
use crate::tiers::{operator_tiers, software_bonus_expr};
use polars::prelude::*;

/// The result of the payout close of one period; all frames are sorted.
pub struct PayoutClose {
    /// `operator_tiers` of M ([`operator_tiers`]).
    pub tiers: DataFrame,
    /// `payout_lines` of M ([`LINE_COLUMNS`]).
    pub lines: DataFrame,
    /// `payout_statements` of M ([`STATEMENT_COLUMNS`]).
    pub statements: DataFrame,
    /// `reconciliation_exceptions` of M ([`reconcile::Reconciliation::exceptions`]).
    pub exceptions: DataFrame,
    /// R1.10 control totals, one row per currency ([`CONTROL_COLUMNS`]).
    pub control: DataFrame,
}

/// Why a payout close failed; nothing of it may be committed.
#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error("payout close {period}: {context}: {source}")]
    Polars {
        period: String,
        context: &'static str,
        #[source]
        source: PolarsError,
    },
    /// R1.10: a control total does not hold.
    #[error("payout control totals do not hold for {currency}: {detail}")]
    ControlTotals { currency: String, detail: String },
    #[error("payout close {period}: {detail}")]
    Invalid { period: String, detail: String },
}

/// Columns of `payout_lines`, in order: `period` str, `operator_id` str, `currency`
/// str, `invoice_id` str, `line_no` i64, `refund_id` str (null for collections),
/// `revenue_type` str, `kind` str, `amount_cents` i64, `operator_bp` i64,
/// `operator_cents` i64, `candlefish_cents` i64, `collected_period` str.
pub const LINE_COLUMNS: [&str; 13] = [
    "period",
    "operator_id",
    "currency",
    "invoice_id",
    "line_no",
    "refund_id",
    "revenue_type",
    "kind",
    "amount_cents",
    "operator_bp",
    "operator_cents",
    "candlefish_cents",
    "collected_period",
];

/// Columns of `payout_statements`, in order: `period`, `operator_id`, `currency`,
/// `phase`, `tier` (str); the `_cents` columns (i64); `statement_on`, `due_on` (Date).
pub const STATEMENT_COLUMNS: [&str; 16] = [
    "period",
    "operator_id",
    "currency",
    "phase",
    "tier",
    "software_cents",
    "implementation_cents",
    "support_cents",
    "operator_share_cents",
    "candlefish_share_cents",
    "clawback_cents",
    "carried_in_cents",
    "payable_cents",
    "carried_out_cents",
    "statement_on",
    "due_on",
];

/// Columns of the control frame: `currency` str, then i64 cents.
pub const CONTROL_COLUMNS: [&str; 5] = [
    "currency",
    "collected_cents",
    "refunds_cents",
    "statements_total_cents",
    "lines_total_cents",
];

/// `payout_statements.phase` of an operator that is not in crm/operators: it has no
/// `joined_on`, hence no tenure (R1.1) and no phase (R1.2).
pub const PHASE_UNKNOWN: &str = "unknown";

const LINE_SORT: [&str; 6] = [
    "operator_id",
    "currency",
    "invoice_id",
    "line_no",
    "kind",
    "refund_id",
];

/// R1.3 base share of a revenue type in one phase's table; an unknown type has none,
/// which breaks the control totals rather than paying a made-up share.
fn base_for(t: &TypeShares) -> Expr {
    let ty = col("revenue_type");
    when(ty.clone().eq(lit("software")))
        .then(lit(t.software))
        .when(ty.clone().eq(lit("implementation")))
        .then(lit(t.implementation))
        .when(ty.eq(lit("support")))
        .then(lit(t.support))
        .otherwise(lit(NULL))
        .cast(DataType::Int64)
}

/// R1.3–R1.4 operator share in bp of a line from `phase`, `tier`, `revenue_type`:
/// base share + the tier bonus on software only, never above 10000.
pub fn operator_bp_expr(plan: &Plan) -> Expr {
    let rs = &plan.revenue_share;
    let base = when(col("phase").eq(lit("initial")))
        .then(base_for(&rs.initial))
        .when(col("phase").eq(lit("growth")))
        .then(base_for(&rs.growth))
        .otherwise(base_for(&rs.mature));
    let bonus = when(col("revenue_type").eq(lit("software")))
        .then(software_bonus_expr(col("tier"), plan))
        .otherwise(lit(0i64));
    let bp = (base + bonus).cast(DataType::Int64);
    when(bp.clone().gt(lit(BP_WHOLE)))
        .then(lit(BP_WHOLE))
        .otherwise(bp)
        .cast(DataType::Int64)
}

/// `payout_lines` columns from a frame with the line's identity, `amount_cents` and
/// `operator_bp`: the operator part rounded half-even, Candlefish the rest (R0.4).
fn priced(
    frame: LazyFrame,
    period: &str,
    kind: &str,
    refund_id: Expr,
    collected_period: Expr,
) -> LazyFrame {
    frame
        .with_column(share_expr(col("amount_cents"), col("operator_bp")).alias("operator_cents"))
        .select([
            lit(period.to_string()).alias("period"),
            col("operator_id").cast(DataType::String),
            col("currency").cast(DataType::String),
            col("invoice_id").cast(DataType::String),
            col("line_no").cast(DataType::Int64),
            refund_id.cast(DataType::String).alias("refund_id"),
            col("revenue_type").cast(DataType::String),
            lit(kind.to_string()).alias("kind"),
            col("amount_cents").cast(DataType::Int64),
            col("operator_bp").cast(DataType::Int64),
            col("operator_cents").cast(DataType::Int64),
            (col("amount_cents") - col("operator_cents"))
                .cast(DataType::Int64)
                .alias("candlefish_cents"),
            collected_period
                .cast(DataType::String)
                .alias("collected_period"),
        ])
}

fn sum_if(cond: Expr, value: Expr) -> Expr {
    sum_cents(when(cond).then(value).otherwise(lit(0i64)))
}

/// `a + b + …` of Int64 money columns, computed in `Int128` and cast back strictly
/// (R0.2: a total that leaves `i64` is an error, not a wrapped amount).
fn add_cents(parts: &[&str]) -> Expr {
    parts
        .iter()
        .map(|c| col(*c).cast(DataType::Int128))
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| lit(0i64).cast(DataType::Int128))
        .strict_cast(DataType::Int64)
}

fn is_kind(kind: &str) -> Expr {
    col("kind").eq(lit(kind.to_string()))
}

/// R1.7 statements from M's payout lines and the balances carried in.
fn statements(
    lines: LazyFrame,
    history: &PayoutHistory,
    standing: LazyFrame,
    period: Period,
    plan: &Plan,
) -> Result<LazyFrame, PayoutError> {
    let p = period.to_string();
    // R1.8: statement date = first day of M+1, due_on = statement date + terms.
    let statement_on = period.next().first_day();
    let due_on = u64::try_from(plan.payment_terms_days)
        .ok()
        .and_then(|n| statement_on.checked_add_days(chrono::Days::new(n)))
        .ok_or_else(|| PayoutError::Invalid {
            period: p.clone(),
            detail: format!(
                "payment_terms_days = {} gives no valid due date",
                plan.payment_terms_days
            ),
        })?;

    let coll = is_kind("collection");
    let gross = |ty: &str| {
        sum_if(
            coll.clone()
                .and(col("revenue_type").eq(lit(ty.to_string()))),
            col("amount_cents"),
        )
    };
    let by_line = lines.group_by([col("operator_id"), col("currency")]).agg([
        gross("software").alias("software_cents"),
        gross("implementation").alias("implementation_cents"),
        gross("support").alias("support_cents"),
        sum_if(coll.clone(), col("operator_cents")).alias("operator_share_cents"),
        sum_if(is_kind("clawback"), col("operator_cents")).alias("clawback_cents"),
        sum_cents(col("candlefish_cents")).alias("candlefish_share_cents"),
    ]);
    // A non-zero balance carried in makes a statement even without lines (R1.7).
    let carried = history
        .carried_in
        .clone()
        .select([
            col("operator_id").cast(DataType::String),
            col("currency").cast(DataType::String),
            col("carried_in_cents").cast(DataType::Int64),
        ])
        .group_by([col("operator_id"), col("currency")])
        .agg([sum_cents(col("carried_in_cents"))])
        .filter(col("carried_in_cents").neq(lit(0i64)));
    let money = [
        "software_cents",
        "implementation_cents",
        "support_cents",
        "operator_share_cents",
        "candlefish_share_cents",
        "clawback_cents",
        "carried_in_cents",
    ];
    let total = add_cents(&["operator_share_cents", "clawback_cents", "carried_in_cents"]);
    Ok(by_line
        .join(
            carried,
            [col("operator_id"), col("currency")],
            [col("operator_id"), col("currency")],
            JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
        )
        .with_columns(money.map(|c| col(c).fill_null(lit(0i64)).cast(DataType::Int64)))
        .join(
            standing,
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Left),
        )
        // An operator no longer in the CRM (only a carried balance or a clawback of an
        // old line) has no tier and no tenure: tier `none`, phase `unknown` — the
        // statement is still written, so the balance is neither paid nor lost (R1.7).
        .with_columns([
            col("tier").fill_null(lit("none")),
            col("phase").fill_null(lit(PHASE_UNKNOWN)),
        ])
        .with_columns([
            // R1.7: a negative balance is never paid and never lost.
            when(total.clone().gt_eq(lit(0i64)))
                .then(total.clone())
                .otherwise(lit(0i64))
                .alias("payable_cents"),
            when(total.clone().gt_eq(lit(0i64)))
                .then(lit(0i64))
                .otherwise(total)
                .alias("carried_out_cents"),
            lit(p).alias("period"),
            // lit(NaiveDate) is a datetime literal: the contract wants dates.
            lit(statement_on).cast(DataType::Date).alias("statement_on"),
            lit(due_on).cast(DataType::Date).alias("due_on"),
        ])
        .with_columns([
            col("payable_cents").cast(DataType::Int64),
            col("carried_out_cents").cast(DataType::Int64),
        ])
        .select(STATEMENT_COLUMNS.map(col))
        .sort(["operator_id", "currency"], SortMultipleOptions::default()))
}

/// R1.10 control totals per currency from the lines and statements of a close:
/// `currency`, `lines_collected_cents`, `lines_refunds_cents`,
/// `statements_total_cents`, `lines_total_cents`.
fn totals(lines: &DataFrame, statements: &DataFrame) -> PolarsResult<DataFrame> {
    let by_lines = lines.clone().lazy().group_by([col("currency")]).agg([
        sum_if(is_kind("collection"), col("amount_cents")).alias("lines_collected_cents"),
        sum_cents(
            when(is_kind("clawback"))
                .then(lit(0i64) - col("amount_cents"))
                .otherwise(lit(0i64)),
        )
        .alias("lines_refunds_cents"),
        sum_cents(col("amount_cents")).alias("lines_total_cents"),
    ]);
    let by_statements = statements
        .clone()
        .lazy()
        .group_by([col("currency")])
        .agg([sum_cents(
            col("operator_share_cents").cast(DataType::Int128)
                + col("clawback_cents").cast(DataType::Int128)
                + col("candlefish_share_cents").cast(DataType::Int128),
        )
        .alias("statements_total_cents")]);
    by_lines
        .join(
            by_statements,
            [col("currency")],
            [col("currency")],
            JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
        )
        .with_columns(
            [
                "lines_collected_cents",
                "lines_refunds_cents",
                "lines_total_cents",
                "statements_total_cents",
            ]
            .map(|c| col(c).fill_null(lit(0i64)).cast(DataType::Int64)),
        )
        .sort(["currency"], SortMultipleOptions::default())
        .collect()
}

/// The payout close of `period` (R1.5–R1.8, R1.10, with R2 tiers and R7 holds).
///
/// Collections: every line of an invoice paid in M and not held (R7), for the operator
/// owning the invoice's customer, at that operator's shares in M — phase from tenure
/// (R1.1–R1.3), tier bonus on software (R1.4; an operator not active at end of M, e.g.
/// terminated, has tier `none` and no bonus but is still paid, R1.5).
/// Clawbacks: every refund of M not held, at the operator, currency, revenue type and
/// `operator_bp` of the collection line it refunds (R1.6), from the history or M.
///
/// The close fails with [`PayoutError::ControlTotals`] when a control total breaks
/// (R1.10), so a caller cannot commit a close that does not add up.
pub fn close_payouts(
    inputs: &Inputs,
    history: &PayoutHistory,
    period: Period,
    plan: &Plan,
) -> Result<PayoutClose, PayoutError> {
    let p = period.to_string();
    let ctx = |context: &'static str| failed(&p, context);

    let recon = reconcile::exceptions(inputs, history, period).map_err(ctx("reconciling (R7)"))?;
    let tiers = operator_tiers(inputs, period, plan)
        .collect()
        .map_err(ctx("computing tiers (R2)"))?;
    let standing = standing_in_month(inputs, &tiers, period, plan);
    let collections = collection_lines(recon.collectable_lines, standing.clone(), &p, plan)
        .map_err(ctx("pricing collections (R1.5)"))?;
    let clawbacks = clawback_lines(recon.payable_refunds, &collections, history, period)?;

    let lines = concat([collections, clawbacks], UnionArgs::default())
        .map_err(ctx("combining payout lines"))?
        .sort(LINE_SORT, SortMultipleOptions::default())
        .collect()
        .map_err(ctx("computing payout lines (R1.5–R1.6)"))?;
    let statements = statements(lines.clone().lazy(), history, standing, period, plan)?
        .collect()
        .map_err(ctx("computing statements (R1.7)"))?;
    let exceptions = recon
        .exceptions
        .collect()
        .map_err(ctx("collecting exceptions (R7)"))?;
    let control =
        control_frame(&lines, &statements).map_err(ctx("computing control totals (R1.10)"))?;

    let close = PayoutClose {
        tiers,
        lines,
        statements,
        exceptions,
        control,
    };
    check_control_totals(&close)?;
    Ok(close)
}

/// A Polars error of the payout close of `period`, with what the close was doing.
fn failed(period: &str, context: &'static str) -> impl FnOnce(PolarsError) -> PayoutError {
    let period = period.to_string();
    move |source: PolarsError| PayoutError::Polars {
        period,
        context,
        source,
    }
}

/// R1.1–R1.2, R2.2: each operator's standing in M — `operator_id`, `phase` by
/// tenure, `tier` (none when not active at end of M) — from M's `tiers`.
fn standing_in_month(inputs: &Inputs, tiers: &DataFrame, period: Period, plan: &Plan) -> LazyFrame {
    inputs
        .operators
        .clone()
        .select([col("operator_id"), col("joined_on")])
        .unique_stable(Some(cols(["operator_id"])), UniqueKeepStrategy::First)
        .with_column(phase(tenure(period), plan).alias("phase"))
        .join(
            tiers
                .clone()
                .lazy()
                .select([col("operator_id"), col("tier")]),
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("tier").fill_null(lit("none")))
        .select([col("operator_id"), col("phase"), col("tier")])
}

/// R1.5: the `collection` payout lines of M — the collectable lines at their
/// operator's shares in M (R1.3–R1.4) — materialized.
fn collection_lines(
    collectable_lines: LazyFrame,
    standing: LazyFrame,
    p: &str,
    plan: &Plan,
) -> PolarsResult<LazyFrame> {
    Ok(priced(
        collectable_lines
            .join(
                standing,
                [col("operator_id")],
                [col("operator_id")],
                JoinArgs::new(JoinType::Inner),
            )
            .with_column(operator_bp_expr(plan).alias("operator_bp")),
        p,
        "collection",
        lit(NULL),
        lit(p.to_string()),
    )
    .collect()?
    .lazy())
}

/// R1.6: the `clawback` payout lines of M — each payable refund, negative, at the
/// operator, currency, revenue type and `operator_bp` of the collection line it
/// refunds, wherever (history or M's `collections`) that line was collected.
fn clawback_lines(
    payable_refunds: LazyFrame,
    collections: &LazyFrame,
    history: &PayoutHistory,
    period: Period,
) -> Result<LazyFrame, PayoutError> {
    let p = period.to_string();
    let ctx = |context: &'static str| failed(&p, context);
    let index = first_collection_per_line(
        concat(
            [
                prior_collections(history, period).map_err(ctx("reading prior collections"))?,
                collections.clone().select([
                    col("collected_period"),
                    col("operator_id"),
                    col("currency"),
                    col("invoice_id"),
                    col("line_no"),
                    col("revenue_type"),
                    col("amount_cents"),
                    col("operator_bp"),
                ]),
            ],
            UnionArgs::default(),
        )
        .map_err(ctx("indexing collection lines"))?,
    )
    .drop(cols(["amount_cents"]))
    .collect()
    .map_err(ctx("indexing collection lines"))?
    .lazy();
    Ok(priced(
        payable_refunds
            .join(
                index,
                [col("invoice_id"), col("line_no")],
                [col("invoice_id"), col("line_no")],
                JoinArgs::new(JoinType::Inner),
            )
            .with_column((lit(0i64) - col("amount_cents")).alias("amount_cents")),
        &p,
        "clawback",
        col("refund_id"),
        col("collected_period"),
    ))
}

/// R1.10: the control frame of a close ([`CONTROL_COLUMNS`]), from its lines and
/// statements.
fn control_frame(lines: &DataFrame, statements: &DataFrame) -> PolarsResult<DataFrame> {
    totals(lines, statements)?
        .lazy()
        .select([
            col("currency"),
            col("lines_collected_cents").alias("collected_cents"),
            col("lines_refunds_cents").alias("refunds_cents"),
            col("statements_total_cents"),
            col("lines_total_cents"),
        ])
        .collect()
}

/// R1.10 — per currency, Σ(operator_share + clawback + candlefish_share) over the
/// statements = collected gross − refunds paid out = Σ `amount_cents` of the lines;
/// and every line splits exactly (operator + Candlefish = amount, R0.4).
///
/// The figures are recomputed from `close.lines` and `close.statements` and compared
/// with `close.control` too, so a close doctored after the fact fails.
pub fn check_control_totals(close: &PayoutClose) -> Result<(), PayoutError> {
    check_lines_split(&close.lines)?;
    let recomputed = totals(&close.lines, &close.statements).map_err(unreadable)?;
    let currencies = check_totals(&recomputed)?;
    check_stated_control(&close.control, &recomputed, &currencies)
}

/// R1.10: a control total that does not hold for `currency`.
fn broken(currency: &str, detail: String) -> PayoutError {
    PayoutError::ControlTotals {
        currency: currency.to_string(),
        detail,
    }
}

/// R1.10: a close whose frames cannot be read cannot be checked, so it fails.
fn unreadable(e: PolarsError) -> PayoutError {
    broken("*", format!("cannot read the close: {e}"))
}

/// R1.10: the i64 column `name` of a close frame, or the close fails as unreadable.
fn i64_values(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>, PayoutError> {
    Ok(df
        .column(name)
        .and_then(|c| c.i64())
        .map_err(unreadable)?
        .iter()
        .collect())
}

/// R1.10: the string column `name` of a close frame (null as empty), or the close
/// fails as unreadable.
fn str_values(df: &DataFrame, name: &str) -> Result<Vec<String>, PayoutError> {
    Ok(df
        .column(name)
        .and_then(|c| c.str())
        .map_err(unreadable)?
        .iter()
        .map(|s| s.unwrap_or("").to_string())
        .collect())
}

/// R0.4: every payout line splits exactly, operator + Candlefish = amount (in i128).
fn check_lines_split(lines: &DataFrame) -> Result<(), PayoutError> {
    let (cur, inv, amt, op, cf) = (
        lines
            .column("currency")
            .and_then(|c| c.str())
            .map_err(unreadable)?,
        lines
            .column("invoice_id")
            .and_then(|c| c.str())
            .map_err(unreadable)?,
        lines
            .column("amount_cents")
            .and_then(|c| c.i64())
            .map_err(unreadable)?,
        lines
            .column("operator_cents")
            .and_then(|c| c.i64())
            .map_err(unreadable)?,
        lines
            .column("candlefish_cents")
            .and_then(|c| c.i64())
            .map_err(unreadable)?,
    );
    for i in 0..lines.height() {
        let (a, o, c) = (amt.get(i), op.get(i), cf.get(i));
        let adds_up = match (a, o, c) {
            (Some(a), Some(o), Some(c)) => o as i128 + c as i128 == a as i128,
            _ => false,
        };
        if !adds_up {
            return Err(broken(
                cur.get(i).unwrap_or("?"),
                format!(
                    "line of invoice {} does not split: operator {o:?} + candlefish {c:?} ≠ amount {a:?}",
                    inv.get(i).unwrap_or("?")
                ),
            ));
        }
    }
    Ok(())
}

/// R1.10 on the totals recomputed from the lines and statements ([`totals`]): per
/// currency, statements total = collected − refunds = lines total. Returns the
/// currencies, in order.
fn check_totals(recomputed: &DataFrame) -> Result<Vec<String>, PayoutError> {
    let currencies = str_values(recomputed, "currency")?;
    let (collected, refunds, stmts, total) = (
        i64_values(recomputed, "lines_collected_cents")?,
        i64_values(recomputed, "lines_refunds_cents")?,
        i64_values(recomputed, "statements_total_cents")?,
        i64_values(recomputed, "lines_total_cents")?,
    );
    for (i, currency) in currencies.iter().enumerate() {
        let (c, r, s, t) = (
            collected[i].unwrap_or(0),
            refunds[i].unwrap_or(0),
            stmts[i].unwrap_or(0),
            total[i].unwrap_or(0),
        );
        // In i128: the difference of two valid totals can itself leave i64.
        let net = c as i128 - r as i128;
        if s as i128 != net || t as i128 != net {
            return Err(broken(
                currency,
                format!(
                    "statements total {s}, collected {c} − refunds {r} = {net}, lines total {t}"
                ),
            ));
        }
    }
    Ok(currencies)
}

/// R1.10: the control frame handed over says the same as the lines and statements
/// (`recomputed`, over `currencies`) — same currencies, same four figures.
fn check_stated_control(
    control: &DataFrame,
    recomputed: &DataFrame,
    currencies: &[String],
) -> Result<(), PayoutError> {
    let stated = control
        .clone()
        .sort(["currency"], SortMultipleOptions::default())
        .map_err(unreadable)?;
    let stated_currencies = str_values(&stated, "currency")?;
    if stated_currencies != currencies {
        return Err(broken(
            &stated_currencies.join(","),
            format!(
                "control lists currencies {stated_currencies:?}, the lines and statements {currencies:?}"
            ),
        ));
    }
    for (name, recomputed_name) in [
        ("collected_cents", "lines_collected_cents"),
        ("refunds_cents", "lines_refunds_cents"),
        ("statements_total_cents", "statements_total_cents"),
        ("lines_total_cents", "lines_total_cents"),
    ] {
        let (a, b) = (
            i64_values(&stated, name)?,
            i64_values(recomputed, recomputed_name)?,
        );
        if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
            return Err(broken(
                &currencies[i],
                format!(
                    "control {name} = {:?}, but the lines and statements give {:?}",
                    a[i], b[i]
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests;
