//! R7 — reconciliation of billing against itself, the CRM and the payout history,
//! before anything is paid out.
//!
//! This module decides *what* goes through the payout close of a period; payouts
//! ([`crate::payouts`]) only prices it. Every problem becomes a row of
//! `reconciliation_exceptions` and holds out the rows it concerns (a whole invoice, or
//! a refund); the rest goes on. An exception belongs to the period its row would have
//! been paid out in: the month of `paid_on`, of `refunded_on` for a refund, of
//! `issued_on` for an invoice marked paid without a date — so each close reports only
//! its own month's exceptions, and re-running a month reproduces them.
//!
//! Readings where rules.md is silent: every check of a paid invoice is reported in
//! the invoice's month (`paid_on`, else `issued_on`), so a paid invoice without a date
//! also reports e.g. its `total_mismatch` in its month of issue; an invoice id is a
//! duplicate when it occurs more than once under any status; a customer whose
//! `operator_id` is not in crm/operators is `customer_without_operator` (it cannot be
//! phased or tiered); a refund id that appears more than once is `duplicate_refund`
//! and every copy is held (as for invoices); a refund exception names the refunded
//! invoice's customer (the smallest id, should a duplicated invoice name several).
//! "Earlier refunds" (R7, clarified) are the line's refunds with a smaller
//! (`refunded_on`, `refund_id`) that were *accepted* — clawed back by an earlier close
//! (the history's clawback lines) or accepted earlier in M; a held refund does not
//! shrink what is left.

use crate::Inputs;
use crate::history::{PayoutHistory, first_collection_per_line, prior_collections, prior_refunded};
use crate::period::Period;
use polars::prelude::*;

/// R7 exception kinds, exactly as `reconciliation_exceptions.kind` spells them.
pub mod kind {
    pub const TOTAL_MISMATCH: &str = "total_mismatch";
    pub const UNKNOWN_CUSTOMER: &str = "unknown_customer";
    pub const CUSTOMER_WITHOUT_OPERATOR: &str = "customer_without_operator";
    pub const DUPLICATE_INVOICE: &str = "duplicate_invoice";
    pub const DUPLICATE_LINE: &str = "duplicate_line";
    pub const PAID_BEFORE_ISSUED: &str = "paid_before_issued";
    pub const PAID_WITHOUT_DATE: &str = "paid_without_date";
    pub const REFUND_EXCEEDS_LINE: &str = "refund_exceeds_line";
    pub const REFUND_OF_UNCOLLECTED_LINE: &str = "refund_of_uncollected_line";
    /// A refund id that appears more than once in billing/refunds: every copy is held,
    /// as for `duplicate_invoice` (opnet's addition to R7; see docs/rules.md).
    pub const DUPLICATE_REFUND: &str = "duplicate_refund";
}

/// The outcome of reconciling one period, as lazy frames over materialized results.
pub struct Reconciliation {
    /// `reconciliation_exceptions` rows of M: `period` (str), `kind` (str),
    /// `invoice_id` (str), `line_no` (i64, null for invoice-level kinds),
    /// `customer_id` (str, set for invoice-level kinds), `refund_id` (str, set for
    /// refund kinds), `detail` (str). One row per (`kind`, `invoice_id`, `line_no`,
    /// `refund_id`), sorted by `invoice_id`, `line_no`, `kind`, `refund_id`.
    pub exceptions: LazyFrame,
    /// `invoice_id` of every invoice held out of M's collections (unique).
    pub held_invoices: LazyFrame,
    /// `refund_id` of every refund of M held out of M's clawbacks (unique).
    pub held_refunds: LazyFrame,
    /// The invoice lines collected in M that passed every check (R1.5): `invoice_id`,
    /// `line_no`, `customer_id`, `operator_id`, `currency`, `revenue_type`,
    /// `amount_cents`. Every `operator_id` is known to crm/operators.
    pub collectable_lines: LazyFrame,
    /// The refunds of M that passed every check (R1.6): `refund_id`, `invoice_id`,
    /// `line_no`, `refunded_on`, `amount_cents` (positive, as given back).
    pub payable_refunds: LazyFrame,
}

fn str_of(e: Expr) -> Expr {
    e.cast(DataType::String)
}

fn text(parts: Vec<Expr>) -> Expr {
    concat_str(parts, "", false)
}

/// One exception row per row of `frame` (which has `invoice_id`).
fn rows(
    frame: LazyFrame,
    period: &str,
    kind: &str,
    line_no: Expr,
    customer_id: Expr,
    refund_id: Expr,
    detail: Expr,
) -> LazyFrame {
    frame.select([
        lit(period.to_string()).alias("period"),
        lit(kind.to_string()).alias("kind"),
        col("invoice_id").cast(DataType::String),
        line_no.cast(DataType::Int64).alias("line_no"),
        customer_id.cast(DataType::String).alias("customer_id"),
        refund_id.cast(DataType::String).alias("refund_id"),
        detail.alias("detail"),
    ])
}

fn null_str() -> Expr {
    lit(NULL).cast(DataType::String)
}

/// R7 for `period`: the exceptions of M, what they hold out, and what goes on to the
/// payout close.
///
/// Only invoices relevant to payouts (`status = paid`) are checked. An invoice id is a
/// duplicate when it appears more than once in billing/invoices under any status (a
/// paid copy next to a void one is still ambiguous); several kinds on one invoice give
/// one row each, and a duplicated invoice gives each kind once per period.
///
/// Refunds are checked against the collection payout lines of earlier periods
/// (`history.prior_lines`) and of M itself: a refund of a line without one — a line
/// never paid, held by an exception, or that does not exist — is
/// `refund_of_uncollected_line`; a refund larger than what is left of the collected
/// line after the refunds of the same line accepted before it (earlier closes'
/// clawbacks, then M's in (`refunded_on`, `refund_id`) order) is
/// `refund_exceeds_line`; a refund id that occurs more than once is
/// `duplicate_refund`. Every refund exception names the invoice's `customer_id`.
pub fn exceptions(
    inputs: &Inputs,
    history: &PayoutHistory,
    period: Period,
) -> PolarsResult<Reconciliation> {
    let p = period.to_string();
    let customers = crm_customers(inputs);
    let month = billing_of_month(inputs, period)?;
    let paid = paid_invoices_of_month(inputs, &month, customers.clone())?;
    let invoice_exceptions = invoice_exception_rows(&month, &paid, &p)?;
    let held_invoices = invoice_exceptions
        .clone()
        .select([col("invoice_id")])
        .unique_stable(None, UniqueKeepStrategy::First);

    let collectable_lines = collectable_lines(&month, period, held_invoices.clone(), customers)?;
    let collected = collected_lines(history, period, &collectable_lines)?;
    let refunds = decide_refunds(refunds_of_month(inputs, history, period, collected)?)?.lazy();
    let refund_exceptions = refund_exception_rows(&refunds, &p)?;
    let held_refunds = refunds
        .clone()
        .filter(col("status").neq(lit(REFUND_ACCEPTED)))
        .select([col("refund_id")])
        .unique_stable(None, UniqueKeepStrategy::First);
    let payable_refunds = refunds
        .filter(col("status").eq(lit(REFUND_ACCEPTED)))
        .select([
            col("refund_id"),
            col("invoice_id"),
            col("line_no"),
            col("refunded_on"),
            col("amount_cents"),
        ]);

    Ok(Reconciliation {
        exceptions: one_row_per_key(invoice_exceptions, refund_exceptions)?,
        held_invoices,
        held_refunds,
        collectable_lines,
        payable_refunds,
    })
}

/// R7: whether the date `e` falls in `period` (the month an exception belongs to).
fn in_month(period: Period, e: Expr) -> Expr {
    let (first, last) = (period.first_day(), period.last_day());
    e.clone().gt_eq(lit(first)).and(e.lt_eq(lit(last)))
}

/// R7 (and R1.5): each CRM customer's `operator_id`, one row per `customer_id`.
fn crm_customers(inputs: &Inputs) -> LazyFrame {
    // A customer listed twice in the CRM: the first record decides, as in MRR (R6.1).
    inputs
        .customers
        .clone()
        .select([col("customer_id"), col("operator_id")])
        .unique_stable(Some(cols(["customer_id"])), UniqueKeepStrategy::First)
}

/// The billing a close of M reads (issue 13: one month, not the history): the paid
/// invoice copies whose exceptions belong to M — month of `paid_on`, or of
/// `issued_on` when `paid_on` is missing — and every line of their ids, both
/// materialized and in the order of their datasets.
struct BillingOfMonth {
    /// `invoice_id`, `customer_id`, `currency`, `issued_on`, `paid_on`, `total_cents`.
    paid_copies: LazyFrame,
    /// `invoice_lines` rows whose `invoice_id` is one of `paid_copies`' ids, as read.
    lines: LazyFrame,
    /// The copies of those ids under every status (R7 duplicate_invoice).
    copies: LazyFrame,
}

/// [`BillingOfMonth`] of `period`: the history's lines are hashed once per period's
/// close, and every check and the collectable lines narrow this month's frame.
fn billing_of_month(inputs: &Inputs, period: Period) -> PolarsResult<BillingOfMonth> {
    let paid_copies = inputs
        .invoices
        .clone()
        .filter(col("status").eq(lit("paid")).and(in_month(
            period,
            coalesce(&[col("paid_on"), col("issued_on")]),
        )))
        .select([
            col("invoice_id"),
            col("customer_id"),
            col("currency"),
            col("issued_on"),
            col("paid_on"),
            col("total_cents").cast(DataType::Int64),
        ])
        .collect()?
        .lazy();
    let ids = invoice_ids(&paid_copies);
    let lines = of_invoices(inputs.invoice_lines.clone(), ids.clone())
        .collect()?
        .lazy();
    let copies = of_invoices(inputs.invoices.clone(), ids)
        .select([col("invoice_id")])
        .collect()?
        .lazy();
    Ok(BillingOfMonth {
        paid_copies,
        lines,
        copies,
    })
}

/// R7: the paid invoice copies of M ([`BillingOfMonth::paid_copies`]) with what the
/// invoice checks read: `copies` of the id under any status, `lines_cents`,
/// `customer_known`, `operator_id` and `operator_known`.
fn paid_invoices_of_month(
    inputs: &Inputs,
    month: &BillingOfMonth,
    customers: LazyFrame,
) -> PolarsResult<LazyFrame> {
    let paid = month.paid_copies.clone().select([
        col("invoice_id"),
        col("customer_id"),
        col("issued_on"),
        col("paid_on"),
        col("total_cents"),
    ]);
    // R7 duplicate_invoice counts copies under every status.
    let copies = month
        .copies
        .clone()
        .group_by([col("invoice_id")])
        .agg([len().cast(DataType::Int64).alias("copies")]);
    let line_sums = month
        .lines
        .clone()
        .group_by([col("invoice_id")])
        .agg([col("amount_cents")
            .cast(DataType::Int64)
            .sum()
            .alias("lines_cents")]);
    let operators = inputs
        .operators
        .clone()
        .select([col("operator_id")])
        .unique_stable(None, UniqueKeepStrategy::First)
        .with_column(lit(true).alias("operator_known"));

    Ok(paid
        .join(
            copies,
            [col("invoice_id")],
            [col("invoice_id")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            line_sums,
            [col("invoice_id")],
            [col("invoice_id")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            customers.with_column(lit(true).alias("customer_known")),
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            operators,
            [col("operator_id")],
            [col("operator_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_columns([
            col("lines_cents").fill_null(lit(0i64)),
            col("customer_known").fill_null(lit(false)),
            col("operator_known").fill_null(lit(false)),
        ])
        // Materialized here and below: every check reads these frames, and one lazy
        // plan holding all of them is deep enough to overflow a thread's stack.
        .collect()?
        .lazy())
}

/// The distinct `invoice_id`s of `frame`, to narrow other datasets to them.
fn invoice_ids(frame: &LazyFrame) -> LazyFrame {
    frame
        .clone()
        .select([col("invoice_id")])
        .unique(None, UniqueKeepStrategy::Any)
}

/// The rows of `frame` whose `invoice_id` is one of `ids` (a semi join: each row at
/// most once, in `frame`'s order).
fn of_invoices(frame: LazyFrame, ids: LazyFrame) -> LazyFrame {
    frame.join(
        ids,
        [col("invoice_id")],
        [col("invoice_id")],
        JoinArgs::new(JoinType::Semi),
    )
}

/// R7: every invoice-level exception of M — the checks of each paid invoice, then
/// `duplicate_line` — materialized.
fn invoice_exception_rows(
    month: &BillingOfMonth,
    paid: &LazyFrame,
    p: &str,
) -> PolarsResult<LazyFrame> {
    let mut parts = paid_invoice_check_rows(paid, p);
    parts.push(duplicate_line_rows(month, paid, p));
    Ok(concat(parts, UnionArgs::default())?.collect()?.lazy())
}

/// R7 `total_mismatch`, `unknown_customer`, `customer_without_operator`,
/// `duplicate_invoice`, `paid_before_issued` and `paid_without_date`: one frame per
/// check, one row per paid invoice copy of M that fails it.
fn paid_invoice_check_rows(paid: &LazyFrame, p: &str) -> Vec<LazyFrame> {
    let inv = |filter: Expr, kind: &str, detail: Expr| {
        rows(
            paid.clone().filter(filter),
            p,
            kind,
            lit(NULL),
            col("customer_id"),
            null_str(),
            detail,
        )
    };
    vec![
        inv(
            col("total_cents").neq(col("lines_cents")),
            kind::TOTAL_MISMATCH,
            text(vec![
                lit("total "),
                str_of(col("total_cents")),
                lit(" ≠ lines "),
                str_of(col("lines_cents")),
            ]),
        ),
        inv(
            col("customer_known").not(),
            kind::UNKNOWN_CUSTOMER,
            text(vec![
                lit("customer "),
                col("customer_id"),
                lit(" is not in crm/customers"),
            ]),
        ),
        inv(
            col("customer_known").and(col("operator_id").is_null()),
            kind::CUSTOMER_WITHOUT_OPERATOR,
            text(vec![
                lit("customer "),
                col("customer_id"),
                lit(" has no operator"),
            ]),
        ),
        // An operator id unknown to crm/operators cannot be phased or tiered (R1.2,
        // R2.2), so the customer is as good as without an operator.
        inv(
            col("customer_known")
                .and(col("operator_id").is_not_null())
                .and(col("operator_known").not()),
            kind::CUSTOMER_WITHOUT_OPERATOR,
            text(vec![
                lit("customer "),
                col("customer_id"),
                lit(" has operator "),
                col("operator_id"),
                lit(", unknown to crm/operators"),
            ]),
        ),
        inv(
            col("copies").gt(lit(1i64)),
            kind::DUPLICATE_INVOICE,
            text(vec![
                lit("invoice appears "),
                str_of(col("copies")),
                lit(" times in billing/invoices"),
            ]),
        ),
        inv(
            col("paid_on").lt(col("issued_on")),
            kind::PAID_BEFORE_ISSUED,
            text(vec![
                lit("paid on "),
                str_of(col("paid_on")),
                lit(" before issued on "),
                str_of(col("issued_on")),
            ]),
        ),
        inv(
            col("paid_on").is_null(),
            kind::PAID_WITHOUT_DATE,
            text(vec![
                lit("status paid without paid_on (issued on "),
                str_of(col("issued_on")),
                lit(")"),
            ]),
        ),
    ]
}

/// R7 `duplicate_line`: one row per repeated (invoice, line) of a paid invoice of M.
fn duplicate_line_rows(month: &BillingOfMonth, paid: &LazyFrame, p: &str) -> LazyFrame {
    let paid_ids = paid
        .clone()
        .select([col("invoice_id"), col("customer_id")])
        .unique_stable(Some(cols(["invoice_id"])), UniqueKeepStrategy::First);
    // Repeated (invoice_id, line_no) keys among the lines of M's paid invoices.
    let repeated_lines = month
        .lines
        .clone()
        .group_by([col("invoice_id"), col("line_no")])
        .agg([len().cast(DataType::Int64).alias("times")])
        .filter(col("times").gt(lit(1i64)));
    let dup_lines = repeated_lines.join(
        paid_ids,
        [col("invoice_id")],
        [col("invoice_id")],
        JoinArgs::new(JoinType::Inner),
    );
    rows(
        dup_lines,
        p,
        kind::DUPLICATE_LINE,
        col("line_no"),
        col("customer_id"),
        null_str(),
        text(vec![
            lit("line "),
            str_of(col("line_no")),
            lit(" appears "),
            str_of(col("times")),
            lit(" times"),
        ]),
    )
}

/// R1.5: the invoice lines M collects — paid in M, not held, owned by a known
/// operator (the checks of [`paid_invoice_check_rows`] guarantee the last for every
/// invoice not held); materialized.
fn collectable_lines(
    month: &BillingOfMonth,
    period: Period,
    held_invoices: LazyFrame,
    customers: LazyFrame,
) -> PolarsResult<LazyFrame> {
    // The invoices paid in M with their CRM owner, then their lines: a paid copy with
    // `paid_on` in M is one of the month's paid copies, so its lines are among the
    // month's lines.
    let paid_invoices = month
        .paid_copies
        .clone()
        .filter(in_month(period, col("paid_on")))
        .select([
            col("invoice_id"),
            col("customer_id"),
            col("currency"),
            col("paid_on"),
        ])
        .join(
            customers,
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .collect()?
        .lazy();
    let ids = invoice_ids(&paid_invoices);
    let paid_lines = paid_invoices.join(
        of_invoices(month.lines.clone(), ids).select([
            col("invoice_id"),
            col("line_no").cast(DataType::Int64),
            col("revenue_type"),
            col("amount_cents").cast(DataType::Int64),
        ]),
        [col("invoice_id")],
        [col("invoice_id")],
        JoinArgs::new(JoinType::Inner),
    );
    Ok(paid_lines
        .join(
            held_invoices,
            [col("invoice_id")],
            [col("invoice_id")],
            JoinArgs::new(JoinType::Anti),
        )
        .select([
            col("invoice_id"),
            col("line_no"),
            col("customer_id"),
            col("operator_id"),
            col("currency"),
            col("revenue_type"),
            col("amount_cents"),
        ])
        .collect()?
        .lazy())
}

/// R1.6/R7: every line that has a collection payout line, in history or in M:
/// `invoice_id`, `line_no`, `line_cents`, `collected_period`.
fn collected_lines(
    history: &PayoutHistory,
    period: Period,
    collectable_lines: &LazyFrame,
) -> PolarsResult<LazyFrame> {
    Ok(first_collection_per_line(concat(
        [
            prior_collections(history, period)?.select([
                col("invoice_id"),
                col("line_no"),
                col("amount_cents"),
                col("collected_period"),
            ]),
            collectable_lines.clone().select([
                col("invoice_id"),
                col("line_no"),
                col("amount_cents"),
                lit(period.to_string()).alias("collected_period"),
            ]),
        ],
        UnionArgs::default(),
    )?)
    .select([
        col("invoice_id"),
        col("line_no"),
        col("amount_cents").alias("line_cents"),
        col("collected_period"),
    ]))
}

/// R7: the refunds of M with what [`decide_refunds`] reads — `copies` of the refund
/// id, the line's collection (`line_cents`, `collected_period`), what earlier closes
/// accepted of the line (`refunded_cents`) and the invoice's `customer_id` — sorted
/// per line in (`refunded_on`, `refund_id`) order, because whether a refund fits
/// depends on which earlier ones were accepted.
fn refunds_of_month(
    inputs: &Inputs,
    history: &PayoutHistory,
    period: Period,
    collected: LazyFrame,
) -> PolarsResult<DataFrame> {
    let refunds = inputs.refunds.clone().select([
        col("refund_id"),
        col("invoice_id"),
        col("line_no").cast(DataType::Int64),
        col("refunded_on"),
        col("amount_cents").cast(DataType::Int64),
    ]);
    let copies = refunds
        .clone()
        .group_by([col("refund_id")])
        .agg([len().cast(DataType::Int64).alias("copies")]);
    let of_month = refunds
        .filter(in_month(period, col("refunded_on")))
        .collect()?
        .lazy();
    let invoice_customer = invoice_customer(inputs, invoice_ids(&of_month));
    of_month
        .join(
            copies,
            [col("refund_id")],
            [col("refund_id")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            collected,
            [col("invoice_id"), col("line_no")],
            [col("invoice_id"), col("line_no")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            prior_refunded(history, period)?,
            [col("invoice_id"), col("line_no")],
            [col("invoice_id"), col("line_no")],
            JoinArgs::new(JoinType::Left),
        )
        .join(
            invoice_customer,
            [col("invoice_id")],
            [col("invoice_id")],
            JoinArgs::new(JoinType::Left),
        )
        .with_column(col("refunded_cents").fill_null(lit(0i64)))
        .sort(
            ["invoice_id", "line_no", "refunded_on", "refund_id"],
            SortMultipleOptions::default(),
        )
        .collect()
}

/// R7: the `customer_id` of each invoice, so a refund exception shows whose money is
/// held; the smallest id should a duplicated invoice name several. Only for the
/// invoices `ids`.
fn invoice_customer(inputs: &Inputs, ids: LazyFrame) -> LazyFrame {
    of_invoices(
        inputs
            .invoices
            .clone()
            .select([col("invoice_id"), col("customer_id")]),
        ids,
    )
    .sort(
        ["invoice_id", "customer_id"],
        SortMultipleOptions::default(),
    )
    .unique_stable(Some(cols(["invoice_id"])), UniqueKeepStrategy::First)
}

/// R7 `duplicate_refund`, `refund_of_uncollected_line` and `refund_exceeds_line`: one
/// row per refund of M that [`decide_refunds`] held, materialized.
fn refund_exception_rows(refunds: &LazyFrame, p: &str) -> PolarsResult<LazyFrame> {
    let refund_row = |status: &str, kind: &str, detail: Expr| {
        rows(
            refunds
                .clone()
                .filter(col("status").eq(lit(status.to_string()))),
            p,
            kind,
            col("line_no"),
            col("customer_id"),
            col("refund_id"),
            detail,
        )
    };
    Ok(concat(
        [
            refund_row(
                REFUND_DUPLICATE,
                kind::DUPLICATE_REFUND,
                text(vec![
                    lit("refund id "),
                    col("refund_id"),
                    lit(" appears "),
                    str_of(col("copies")),
                    lit(" times in billing/refunds; every copy is held"),
                ]),
            ),
            refund_row(
                REFUND_UNCOLLECTED,
                kind::REFUND_OF_UNCOLLECTED_LINE,
                text(vec![
                    lit("refund "),
                    str_of(col("amount_cents")),
                    lit(" of line "),
                    str_of(col("line_no")),
                    lit(", which was never paid out (no collection payout line)"),
                ]),
            ),
            refund_row(
                REFUND_EXCEEDS,
                kind::REFUND_EXCEEDS_LINE,
                text(vec![
                    lit("refund "),
                    str_of(col("amount_cents")),
                    lit(" > left "),
                    str_of(col("left_cents")),
                    lit(" (line "),
                    str_of(col("line_cents")),
                    lit(", accepted earlier refunds "),
                    str_of(col("line_cents") - col("left_cents")),
                    lit(")"),
                ]),
            ),
        ],
        UnionArgs::default(),
    )?
    .collect()?
    .lazy())
}

/// R7: the `reconciliation_exceptions` rows of M, one per (`kind`, `invoice_id`,
/// `line_no`, `refund_id`), sorted by `invoice_id`, `line_no`, `kind`, `refund_id`.
fn one_row_per_key(
    invoice_exceptions: LazyFrame,
    refund_exceptions: LazyFrame,
) -> PolarsResult<LazyFrame> {
    // A duplicated invoice repeats its per-copy findings: keep one row per key, the
    // first detail in sort order so the choice is deterministic.
    let key = ["kind", "invoice_id", "line_no", "refund_id"];
    Ok(concat(
        [invoice_exceptions, refund_exceptions],
        UnionArgs::default(),
    )?
    .sort(
        ["invoice_id", "line_no", "kind", "refund_id", "detail"],
        SortMultipleOptions::default(),
    )
    .unique_stable(Some(cols(key)), UniqueKeepStrategy::First))
}

/// Outcomes of [`decide_refunds`], in its `status` column.
const REFUND_ACCEPTED: &str = "accepted";
const REFUND_DUPLICATE: &str = "duplicate";
const REFUND_UNCOLLECTED: &str = "uncollected";
const REFUND_EXCEEDS: &str = "exceeds";

/// R7 for the refunds of M, sorted by `invoice_id`, `line_no`, `refunded_on`,
/// `refund_id`, with `copies` (of the refund id), `line_cents` and
/// `collected_period` (null: the line was never collected) and `refunded_cents` (what
/// earlier closes accepted of the line). Adds `status` and `left_cents` (what was left
/// of the line before this refund).
///
/// A refund is accepted when its id is unique, its line was collected, and it is no
/// larger than what is left after the refunds accepted before it — in earlier closes
/// and earlier in M. A held refund is not money the run accounted for, so it leaves
/// what is left unchanged for the next one. Sums are in i128: an absurd amount can
/// exceed the line, never wrap around it.
fn decide_refunds(mut refunds: DataFrame) -> PolarsResult<DataFrame> {
    let n = refunds.height();
    let text = |c: &str| -> PolarsResult<StringChunked> { Ok(refunds.column(c)?.str()?.clone()) };
    let int = |c: &str| -> PolarsResult<Int64Chunked> {
        Ok(refunds.column(c)?.cast(&DataType::Int64)?.i64()?.clone())
    };
    let (ids, invoices) = (text("refund_id")?, text("invoice_id")?);
    let collected = text("collected_period")?;
    let (line_no, amount, copies) = (int("line_no")?, int("amount_cents")?, int("copies")?);
    let (line_cents, refunded) = (int("line_cents")?, int("refunded_cents")?);

    let mut status = Vec::with_capacity(n);
    let mut left_out: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut line_key: Option<(Option<&str>, Option<i64>)> = None;
    let mut accepted_in_m: i128 = 0;
    for i in 0..n {
        let key = (invoices.get(i), line_no.get(i));
        if line_key != Some(key) {
            line_key = Some(key);
            accepted_in_m = 0;
        }
        let (Some(amount), Some(_)) = (amount.get(i), ids.get(i)) else {
            return Err(PolarsError::ComputeError(
                format!(
                    "refund {:?} of invoice {:?} has no amount or id",
                    ids.get(i),
                    invoices.get(i)
                )
                .into(),
            ));
        };
        if copies.get(i).unwrap_or(1) > 1 {
            status.push(REFUND_DUPLICATE);
            left_out.push(None);
            continue;
        }
        let (Some(_), Some(line)) = (collected.get(i), line_cents.get(i)) else {
            status.push(REFUND_UNCOLLECTED);
            left_out.push(None);
            continue;
        };
        let left = line as i128 - refunded.get(i).unwrap_or(0) as i128 - accepted_in_m;
        left_out.push(i64::try_from(left).ok());
        if (amount as i128) > left {
            status.push(REFUND_EXCEEDS);
        } else {
            accepted_in_m += amount as i128;
            status.push(REFUND_ACCEPTED);
        }
    }
    refunds.with_column(Column::new("status".into(), status))?;
    refunds.with_column(Column::new("left_cents".into(), left_out))?;
    Ok(refunds)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
