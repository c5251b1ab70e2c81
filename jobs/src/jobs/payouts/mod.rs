//! Job `payouts` — the monthly payout close (R1, R2, R7): operator tiers, payout
//! lines, statements with carry-forward, reconciliation exceptions; control totals
//! checked before commit (R1.10).
//!
//! The rules are in `opnet_pipelines::payouts`; this module feeds them the history
//! they need from the database (earlier collection lines for clawbacks at their
//! original shares, R1.6; the previous period's carried balance, R1.7), applies the
//! revision rules of R1.9, and provides `approve`, `send` and `show` for finance.

use super::*;
use crate::db::{Value, query_frame};
use crate::mail;
use opnet_pipelines::directory::Contact;
use opnet_pipelines::payouts::{PayoutHistory, check_control_totals, close_payouts};
use polars::prelude::*;

pub mod emails;

pub struct Payouts;

/// SQL condition: row `alias` of `payout_statements` is the latest revision of its
/// statement (period, operator, currency) — what "the period's statements" means
/// once finance has revised a period (R1.9). The one spelling of it.
pub fn latest_revision(alias: &str) -> String {
    format!(
        "{alias}.revision = (SELECT MAX(t.revision) FROM payout_statements t WHERE t.period = {alias}.period \
         AND t.operator_id = {alias}.operator_id AND t.currency = {alias}.currency)"
    )
}

/// `FROM payout_statements s WHERE s.period = $1 AND` the latest revision: the period's
/// current statements, as `s`.
pub fn latest_statements() -> String {
    format!(
        "FROM payout_statements s WHERE s.period = $1 AND {}",
        latest_revision("s")
    )
}

const JOB: &str = "payouts";

use DataType::{Date as D, Int32 as I32, Int64 as I, String as S};

/// The tables this job writes, as published: columns and row order.
const OUTPUTS: &[TableSpec] = &[
    TableSpec {
        table: "operator_tiers",
        columns: &[
            ("period", S),
            ("operator_id", S),
            ("active_customers", I),
            ("tier", S),
            ("previous_tier", S),
            ("change", S),
            ("run_id", S),
        ],
        order_by: "operator_id",
        changes_after_run: false,
    },
    TableSpec {
        table: "payout_lines",
        columns: &[
            ("period", S),
            ("operator_id", S),
            ("currency", S),
            ("invoice_id", S),
            ("line_no", I),
            ("refund_id", S),
            ("revenue_type", S),
            ("kind", S),
            ("amount_cents", I),
            ("operator_bp", I32),
            ("operator_cents", I),
            ("candlefish_cents", I),
            ("collected_period", S),
            ("revision", I),
            ("run_id", S),
        ],
        order_by: "operator_id, currency, invoice_id, line_no, kind, refund_id",
        changes_after_run: false,
    },
    TableSpec {
        table: "payout_statements",
        columns: &[
            ("period", S),
            ("operator_id", S),
            ("currency", S),
            ("phase", S),
            ("tier", S),
            ("software_cents", I),
            ("implementation_cents", I),
            ("support_cents", I),
            ("operator_share_cents", I),
            ("candlefish_share_cents", I),
            ("clawback_cents", I),
            ("carried_in_cents", I),
            ("payable_cents", I),
            ("carried_out_cents", I),
            ("statement_on", D),
            ("due_on", D),
            ("status", S),
            ("revision", I),
            ("plan_version", S),
            ("approved_at", S),
            ("queued_at", S),
            ("sent_at", S),
            ("message_id", S),
            ("mail_error", S),
            ("run_id", S),
        ],
        order_by: "operator_id, currency, revision",
        // approve, send and delivery change status, approved_at, sent_at (R1.8).
        changes_after_run: true,
    },
    TableSpec {
        table: "reconciliation_exceptions",
        columns: &[
            ("period", S),
            ("kind", S),
            ("invoice_id", S),
            ("line_no", I),
            ("customer_id", S),
            ("refund_id", S),
            ("detail", S),
            ("run_id", S),
        ],
        order_by: "kind, invoice_id, line_no, refund_id, detail",
        changes_after_run: false,
    },
];

/// Highest revision of the period's statements that finance approved or sent.
async fn approved_revision(
    conn: &mut AnyConnection,
    period: Period,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MAX(revision) FROM payout_statements WHERE period = $1 AND status IN ('approved', 'queued', 'sent', 'failed')",
    )
    .bind(period.to_string())
    .fetch_one(&mut *conn)
    .await
}

fn db_err(period: Period, context: &str) -> impl FnOnce(sqlx::Error) -> JobError + '_ {
    move |source| JobError::Database {
        job: JOB,
        period,
        source: crate::db::DbError::Query {
            context: context.to_string(),
            source,
        },
    }
}

fn pl_err(period: Period) -> impl FnOnce(PolarsError) -> JobError {
    JobError::polars(JOB, period)
}

#[async_trait]
impl Job for Payouts {
    fn name(&self) -> &'static str {
        JOB
    }

    fn inputs(&self) -> &'static [&'static str] {
        &[
            "billing/invoices",
            "billing/invoice_lines",
            "billing/refunds",
            "crm/operators",
            "crm/customers",
        ]
    }

    fn outputs(&self) -> &'static [TableSpec] {
        OUTPUTS
    }

    async fn refuse(
        &self,
        ctx: &JobContext<'_>,
        conn: &mut AnyConnection,
    ) -> Result<Option<Refusal>, JobError> {
        let approved = approved_revision(conn, ctx.period)
            .await
            .map_err(db_err(ctx.period, "read approvals"))?;
        Ok(match approved {
            Some(r) if !ctx.revise => Some(Refusal {
                reason: format!(
                    "refused: {} has approved statements (revision {r}); they stay as they are — re-run with --revise to write revision {}",
                    ctx.period,
                    r + 1
                ),
                approved_revision: Some(r),
            }),
            _ => None,
        })
    }

    async fn run(
        &self,
        ctx: &JobContext<'_>,
        conn: &mut AnyConnection,
    ) -> Result<JobOutput, JobError> {
        let period = ctx.period;
        let p = period.to_string();
        let history = load_history(ctx, conn).await?;
        let payout = |source| JobError::Payout {
            job: JOB,
            period,
            source,
        };
        let close =
            compute(|| close_payouts(ctx.inputs, &history, period, ctx.plan)).map_err(payout)?;
        check_control_totals(&close).map_err(payout)?;

        // R1.9: drafts are replaced; approved revisions stay and the new one gets the next number.
        let approved = approved_revision(conn, period)
            .await
            .map_err(db_err(period, "read approvals"))?;
        let revision = approved.unwrap_or(0) + 1;
        let mut summary = Vec::new();
        if let Some(r) = approved {
            summary.extend(revision_diff(conn, period, r, &close.statements).await?);
        }
        for sql in [
            "DELETE FROM payout_statements WHERE period = $1 AND status = 'draft'",
            "DELETE FROM payout_lines WHERE period = $1",
        ] {
            sqlx::query(sql)
                .bind(&p)
                .execute(&mut *conn)
                .await
                .map_err(db_err(period, sql))?;
        }

        let n = close.statements.height();
        let statements = close
            .statements
            .clone()
            .lazy()
            .with_columns([
                lit("draft").alias("status"),
                lit(revision).alias("revision"),
                lit(ctx.plan.version.clone()).alias("plan_version"),
            ])
            .collect()
            .map_err(pl_err(period))?;
        // Written in the order of the table's unique key (the period is one), so
        // both of its indexes grow at their ends instead of splitting pages all over
        // (issue 13: a third less time inserting a period's lines on SQLite). The
        // key makes the order total; the mart is sorted its own way.
        let lines = close
            .lines
            .clone()
            .lazy()
            .with_column(lit(revision).alias("revision"))
            .sort(
                ["invoice_id", "line_no", "kind", "refund_id"],
                SortMultipleOptions::default().with_nulls_last(false),
            )
            .collect()
            .map_err(pl_err(period))?;

        let emails = emails_for(ctx, &close)?;
        summary.insert(0, format!("statements: {n} (revision {revision}, draft)"));
        summary.push(format!("lines: {}", lines.height()));
        summary.push(format!("exceptions: {}", close.exceptions.height()));
        let rows_in =
            count(&ctx.inputs.invoice_lines, period)? + count(&ctx.inputs.refunds, period)?;
        Ok(JobOutput {
            writes: vec![
                TableWrite {
                    table: "operator_tiers",
                    frame: close.tiers,
                    replace: Replace::Period,
                    publish: true,
                },
                TableWrite {
                    table: "payout_lines",
                    frame: lines,
                    replace: Replace::Append,
                    publish: true,
                },
                TableWrite {
                    table: "payout_statements",
                    frame: statements,
                    replace: Replace::Append,
                    publish: true,
                },
                TableWrite {
                    table: "reconciliation_exceptions",
                    frame: close.exceptions,
                    replace: Replace::Period,
                    publish: true,
                },
            ],
            emails,
            files: Vec::new(),
            rows_in,
            summary,
        })
    }
}

fn count(lf: &LazyFrame, period: Period) -> Result<i64, JobError> {
    let df = lf
        .clone()
        .select([len().alias("n")])
        .collect()
        .map_err(pl_err(period))?;
    Ok(df
        .column("n")
        .and_then(|c| c.cast(&DataType::Int64))
        .map_err(pl_err(period))?
        .i64()
        .map_err(pl_err(period))?
        .get(0)
        .unwrap_or(0))
}

/// The history R1.6, R1.7 and R7 need: payout lines (collections and clawbacks) of
/// earlier periods for the invoices refunded in M (only those: a backfill stays
/// linear), and M−1's carried balance.
async fn load_history(
    ctx: &JobContext<'_>,
    conn: &mut AnyConnection,
) -> Result<PayoutHistory, JobError> {
    let period = ctx.period;
    let ids = refunded_invoices(ctx.inputs, period).map_err(pl_err(period))?;
    let prior_lines = recorded_lines(conn, period, &ids)
        .await
        .map_err(JobError::db(JOB, period))?;
    // The latest revision of M−1 is the balance that carries (R1.7).
    let carried_in = recorded_carried_out(conn, period.prev())
        .await
        .map_err(JobError::db(JOB, period))?;
    Ok(PayoutHistory {
        prior_lines,
        carried_in,
    })
}

/// The invoices with a refund dated in `period`: the only ones whose earlier payout
/// lines the close of `period` reads (R1.6 shares, R7 what is left of a line).
pub fn refunded_invoices(inputs: &Inputs, period: Period) -> PolarsResult<Vec<String>> {
    let refunded = inputs
        .refunds
        .clone()
        .filter(
            col("refunded_on")
                .gt_eq(lit(period.first_day()))
                .and(col("refunded_on").lt_eq(lit(period.last_day()))),
        )
        .select([col("invoice_id")])
        .unique(None, UniqueKeepStrategy::First)
        .collect()?;
    Ok(refunded
        .column("invoice_id")?
        .str()?
        .iter()
        .flatten()
        .map(str::to_string)
        .collect())
}

/// Columns of `PayoutHistory::prior_lines` as read from `payout_lines`.
pub const HISTORY_COLUMNS: [(&str, DataType); 10] = [
    ("period", DataType::String),
    ("operator_id", DataType::String),
    ("currency", DataType::String),
    ("invoice_id", DataType::String),
    ("line_no", DataType::Int64),
    ("revenue_type", DataType::String),
    ("amount_cents", DataType::Int64),
    ("operator_bp", DataType::Int64),
    ("kind", DataType::String),
    ("refund_id", DataType::String),
];

/// The recorded payout lines of periods before `before` for the invoices `ids`
/// ([`HISTORY_COLUMNS`]), read in chunks of 500 ids.
pub async fn recorded_lines(
    conn: &mut AnyConnection,
    before: Period,
    ids: &[String],
) -> Result<LazyFrame, crate::db::DbError> {
    let mut frames = Vec::new();
    for chunk in ids.chunks(500) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        // Collections give the refunded lines' original shares (R1.6); clawbacks are
        // the refunds earlier closes accepted, which shrink what is left (R7).
        let sql = format!(
            "SELECT period, operator_id, currency, invoice_id, line_no, revenue_type, amount_cents, operator_bp, kind, refund_id \
             FROM payout_lines WHERE period < $1 AND invoice_id IN ({})",
            placeholders.join(", ")
        );
        let mut binds = vec![Value::Text(before.to_string())];
        binds.extend(chunk.iter().map(|s| Value::Text(s.clone())));
        frames.push(
            query_frame(conn, &sql, &binds, &HISTORY_COLUMNS)
                .await?
                .lazy(),
        );
    }
    if frames.is_empty() {
        let columns: Vec<Column> = HISTORY_COLUMNS
            .iter()
            .map(|(n, t)| Column::new_empty((*n).into(), t))
            .collect();
        // Distinct literal names: this cannot fail.
        return Ok(DataFrame::new_infer_height(columns)
            .unwrap_or_default()
            .lazy());
    }
    concat(frames, UnionArgs::default()).map_err(|source| crate::db::DbError::Frame {
        table: "payout_lines".into(),
        source,
    })
}

/// The non-zero `carried_out_cents` of `period`'s latest statements (R1.7, R1.9), as
/// the next period's `carried_in_cents`: `operator_id`, `currency`,
/// `carried_in_cents`.
pub async fn recorded_carried_out(
    conn: &mut AnyConnection,
    period: Period,
) -> Result<LazyFrame, crate::db::DbError> {
    Ok(query_frame(
        conn,
        &format!(
            "SELECT s.operator_id, s.currency, s.carried_out_cents AS carried_in_cents {} \
             AND s.carried_out_cents <> 0",
            latest_statements()
        ),
        &[Value::Text(period.to_string())],
        &[
            ("operator_id", DataType::String),
            ("currency", DataType::String),
            ("carried_in_cents", DataType::Int64),
        ],
    )
    .await?
    .lazy())
}

/// R1.9 "clearly marked revision": what changed against the approved revision.
async fn revision_diff(
    conn: &mut AnyConnection,
    period: Period,
    approved: i64,
    new: &DataFrame,
) -> Result<Vec<String>, JobError> {
    let old = query_frame(
        conn,
        "SELECT operator_id, currency, payable_cents FROM payout_statements WHERE period = $1 AND revision = $2",
        &[Value::Text(period.to_string()), Value::Int(approved)],
        &[("operator_id", DataType::String), ("currency", DataType::String), ("payable_cents", DataType::Int64)],
    )
    .await
    .map_err(|source| JobError::Database { job: JOB, period, source })?;
    let joined = new
        .clone()
        .lazy()
        .select([
            col("operator_id"),
            col("currency"),
            col("payable_cents").alias("new_cents"),
        ])
        .join(
            old.lazy().rename(["payable_cents"], ["old_cents"], true),
            [col("operator_id"), col("currency")],
            [col("operator_id"), col("currency")],
            JoinArgs::new(JoinType::Full).with_coalesce(JoinCoalesce::CoalesceColumns),
        )
        .filter(
            col("new_cents")
                .fill_null(lit(0i64))
                .neq(col("old_cents").fill_null(lit(0i64))),
        )
        .sort(["operator_id", "currency"], SortMultipleOptions::default())
        .collect()
        .map_err(pl_err(period))?;
    let mut out = vec![format!(
        "revision of approved revision {approved}: {} statement(s) with a different payable",
        joined.height()
    )];
    let text = |n: &str| {
        joined
            .column(n)
            .and_then(|c| c.str().cloned())
            .map_err(pl_err(period))
    };
    let cents = |n: &str| {
        joined
            .column(n)
            .and_then(|c| c.i64().cloned())
            .map_err(pl_err(period))
    };
    let (ids, cur) = (text("operator_id")?, text("currency")?);
    let (newc, oldc) = (cents("new_cents")?, cents("old_cents")?);
    for i in 0..joined.height().min(20) {
        let c = cur.get(i).unwrap_or("");
        out.push(format!(
            "{} {c}: payable {} → {}",
            ids.get(i).unwrap_or(""),
            mail::format_cents(oldc.get(i).unwrap_or(0), c),
            mail::format_cents(newc.get(i).unwrap_or(0), c)
        ));
    }
    Ok(out)
}

/// Tier-change emails (R2.3) and the finance summary, queued with the results.
fn emails_for(
    ctx: &JobContext<'_>,
    close: &opnet_pipelines::payouts::PayoutClose,
) -> Result<Vec<mail::OutgoingEmail>, JobError> {
    let period = ctx.period;
    let p = period.to_string();
    let mail_err = JobError::mail(JOB, period);
    let mut out = Vec::new();
    let ops = opnet_pipelines::directory::operator_directory(ctx.inputs).map_err(pl_err(period))?;
    let tiers = &close.tiers;
    let text = |n: &str| {
        tiers
            .column(n)
            .and_then(|c| c.str().cloned())
            .map_err(pl_err(period))
    };
    let (ids, tier, prev, change) = (
        text("operator_id")?,
        text("tier")?,
        text("previous_tier")?,
        text("change")?,
    );
    let active = tiers
        .column("active_customers")
        .and_then(|c| c.i64().cloned())
        .map_err(pl_err(period))?;
    for i in 0..tiers.height() {
        let ch = change.get(i).unwrap_or("none");
        let id = ids.get(i).unwrap_or("");
        // An operator without a CRM record has no address to write to.
        let (true, Some(Contact { name, email })) = (ch != "none", ops.get(id)) else {
            continue;
        };
        let t = tier.get(i).unwrap_or("none");
        out.push(
            emails::tier_change_email(&emails::TierChangeView {
                period: p.clone(),
                operator_id: id.to_string(),
                operator_name: name.clone(),
                recipient: email.clone(),
                previous_tier: prev.get(i).unwrap_or("none").to_string(),
                tier: t.to_string(),
                change: ch.to_string(),
                active_customers: active.get(i).unwrap_or(0),
                benefits: benefits(ctx.plan, t),
            })
            .map_err(mail_err)?,
        );
    }
    let mut view = finance_view(&p, close).map_err(pl_err(period))?;
    view.quarantine = ctx
        .datasets
        .iter()
        .map(|d| emails::QuarantineView {
            dataset: d.dataset.clone(),
            rows_in: d.rows_in,
            rows_quarantined: d.rows_quarantined,
        })
        .collect();
    let statements_csv = frame_csv(&close.statements).map_err(pl_err(period))?;
    let exceptions_csv = frame_csv(&close.exceptions).map_err(pl_err(period))?;
    for to in &ctx.config.email.finance {
        let v = emails::FinanceSummaryView {
            recipient: to.clone(),
            ..view.clone()
        };
        out.push(
            emails::finance_summary_email(&v, statements_csv.clone(), exceptions_csv.clone())
                .map_err(mail_err)?,
        );
    }
    Ok(out)
}

fn benefits(plan: &Plan, tier: &str) -> String {
    let b = &plan.tiers.benefits;
    match tier {
        "bronze" => b.bronze.clone(),
        "silver" => b.silver.clone(),
        "gold" => b.gold.clone(),
        "platinum" => b.platinum.clone(),
        _ => "no tier benefits".to_string(),
    }
}

fn frame_csv(df: &DataFrame) -> PolarsResult<Vec<u8>> {
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf).finish(&mut df.clone())?;
    Ok(buf)
}

/// The finance summary's figures: per-currency totals of the statements next to the
/// control totals, operators payable, and every exception.
fn finance_view(
    period: &str,
    close: &opnet_pipelines::payouts::PayoutClose,
) -> PolarsResult<emails::FinanceSummaryView> {
    let sums = close
        .statements
        .clone()
        .lazy()
        .group_by([col("currency")])
        .agg(
            [
                "operator_share_cents",
                "clawback_cents",
                "candlefish_share_cents",
                "carried_in_cents",
                "payable_cents",
                "carried_out_cents",
            ]
            .map(|c| col(c).sum()),
        );
    let totals = close
        .control
        .clone()
        .lazy()
        .join(
            sums,
            [col("currency")],
            [col("currency")],
            JoinArgs::new(JoinType::Left),
        )
        .sort(["currency"], SortMultipleOptions::default())
        .collect()?;
    let cents = |n: &str| -> PolarsResult<Vec<i64>> {
        Ok(totals
            .column(n)?
            .cast(&DataType::Int64)?
            .i64()?
            .iter()
            .map(|v| v.unwrap_or(0))
            .collect())
    };
    let currency = totals.column("currency")?.str()?.clone();
    let (collected, refunds, lines_total) = (
        cents("collected_cents")?,
        cents("refunds_cents")?,
        cents("lines_total_cents")?,
    );
    let (share, clawback, candlefish) = (
        cents("operator_share_cents")?,
        cents("clawback_cents")?,
        cents("candlefish_share_cents")?,
    );
    let (carried_in, payable, carried_out) = (
        cents("carried_in_cents")?,
        cents("payable_cents")?,
        cents("carried_out_cents")?,
    );
    let currencies = (0..totals.height())
        .map(|i| emails::CurrencyTotalsView {
            currency: currency.get(i).unwrap_or("").to_string(),
            collected_cents: collected[i],
            refunds_cents: refunds[i],
            operator_share_cents: share[i],
            clawback_cents: clawback[i],
            candlefish_share_cents: candlefish[i],
            carried_in_cents: carried_in[i],
            payable_cents: payable[i],
            carried_out_cents: carried_out[i],
            lines_total_cents: lines_total[i],
        })
        .collect();
    let operators_payable = close
        .statements
        .column("payable_cents")?
        .i64()?
        .iter()
        .filter(|v| v.unwrap_or(0) > 0)
        .count();
    let ex = &close.exceptions;
    let text = |n: &str| -> PolarsResult<StringChunked> { Ok(ex.column(n)?.str()?.clone()) };
    let (kind, inv, cust, detail) = (
        text("kind")?,
        text("invoice_id")?,
        text("customer_id")?,
        text("detail")?,
    );
    let line = ex.column("line_no")?.i64()?.clone();
    let exceptions = (0..ex.height())
        .map(|i| emails::ExceptionView {
            kind: kind.get(i).unwrap_or("").to_string(),
            invoice_id: inv.get(i).map(str::to_string),
            line_no: line.get(i),
            customer_id: cust.get(i).map(str::to_string),
            detail: detail.get(i).unwrap_or("").to_string(),
        })
        .collect();
    Ok(emails::FinanceSummaryView {
        period: period.to_string(),
        recipient: String::new(),
        currencies,
        statements: close.statements.height(),
        operators_payable,
        exceptions,
        // built only after check_control_totals passed
        control_ok: true,
        quarantine: Vec::new(),
    })
}
