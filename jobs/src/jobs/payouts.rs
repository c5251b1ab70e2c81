//! Job `payouts` — the monthly payout close (R1, R2, R7): operator tiers, payout
//! lines, statements with carry-forward, reconciliation exceptions; control totals
//! checked before commit (R1.10).
//!
//! The rules are in `opnet_pipelines::payouts`; this module feeds them the history
//! they need from the database (earlier collection lines for clawbacks at their
//! original shares, R1.6; the previous period's carried balance, R1.7), applies the
//! revision rules of R1.9, and provides `approve`, `send` and `show` for finance.

use super::*;
use crate::close::App;
use crate::db::{Value, query_frame};
use crate::mail::{self, DeliveryReport, StatementLineView, StatementView};
use opnet_pipelines::payouts::{PayoutHistory, check_control_totals, close_payouts};
use polars::prelude::*;
use sqlx::Row;
use opnet_pipelines::directory::Contact;
use std::collections::{BTreeMap, HashMap};

pub struct Payouts;

const JOB: &str = "payouts";

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
    move |source| JobError::Polars {
        job: JOB,
        period,
        source,
    }
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

    fn outputs(&self) -> &'static [&'static str] {
        &[
            "operator_tiers",
            "payout_lines",
            "payout_statements",
            "reconciliation_exceptions",
        ]
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
        let close =
            compute(|| close_payouts(ctx.inputs, &history, period, ctx.plan)).map_err(|e| {
                JobError::Data {
                    job: JOB,
                    period,
                    message: e.to_string(),
                }
            })?;
        check_control_totals(&close).map_err(|e| JobError::Control {
            job: JOB,
            period,
            message: e.to_string(),
        })?;

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
        let lines = close
            .lines
            .clone()
            .lazy()
            .with_column(lit(revision).alias("revision"))
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
    let refunded = ctx
        .inputs
        .refunds
        .clone()
        .filter(
            col("refunded_on")
                .gt_eq(lit(period.first_day()))
                .and(col("refunded_on").lt_eq(lit(period.last_day()))),
        )
        .select([col("invoice_id")])
        .unique(None, UniqueKeepStrategy::First)
        .collect()
        .map_err(pl_err(period))?;
    let ids: Vec<String> = refunded
        .column("invoice_id")
        .map_err(pl_err(period))?
        .str()
        .map_err(pl_err(period))?
        .iter()
        .flatten()
        .map(str::to_string)
        .collect();
    let cols = [
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
        let mut binds = vec![Value::Text(period.to_string())];
        binds.extend(chunk.iter().map(|s| Value::Text(s.clone())));
        let df = query_frame(conn, &sql, &binds, &cols)
            .await
            .map_err(|source| JobError::Database {
                job: JOB,
                period,
                source,
            })?;
        frames.push(df.lazy());
    }
    let prior_lines = if frames.is_empty() {
        let empty: Vec<Column> = cols
            .iter()
            .map(|(n, t)| Column::new_empty((*n).into(), t))
            .collect();
        DataFrame::new(0, empty).map_err(pl_err(period))?.lazy()
    } else {
        concat(frames, UnionArgs::default()).map_err(pl_err(period))?
    };
    // The latest revision of M−1 is the balance that carries (R1.7).
    let carried_in = query_frame(
        conn,
        "SELECT s.operator_id, s.currency, s.carried_out_cents AS carried_in_cents FROM payout_statements s \
         WHERE s.period = $1 AND s.carried_out_cents <> 0 AND s.revision = \
         (SELECT MAX(t.revision) FROM payout_statements t WHERE t.period = s.period AND t.operator_id = s.operator_id AND t.currency = s.currency)",
        &[Value::Text(period.prev().to_string())],
        &[("operator_id", DataType::String), ("currency", DataType::String), ("carried_in_cents", DataType::Int64)],
    )
    .await
    .map_err(|source| JobError::Database { job: JOB, period, source })?
    .lazy();
    Ok(PayoutHistory {
        prior_lines,
        carried_in,
    })
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
    let mail_err = |source| JobError::Mail {
        job: JOB,
        period,
        source,
    };
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
            mail::tier_change_email(&mail::TierChangeView {
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
        .map(|d| mail::QuarantineView {
            dataset: d.dataset.clone(),
            rows_in: d.rows_in,
            rows_quarantined: d.rows_quarantined,
        })
        .collect();
    let statements_csv = frame_csv(&close.statements).map_err(pl_err(period))?;
    let exceptions_csv = frame_csv(&close.exceptions).map_err(pl_err(period))?;
    for to in &ctx.config.email.finance {
        let v = mail::FinanceSummaryView {
            recipient: to.clone(),
            ..view.clone()
        };
        out.push(
            mail::finance_summary_email(&v, statements_csv.clone(), exceptions_csv.clone())
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
) -> PolarsResult<mail::FinanceSummaryView> {
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
        .map(|i| mail::CurrencyTotalsView {
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
        .map(|i| mail::ExceptionView {
            kind: kind.get(i).unwrap_or("").to_string(),
            invoice_id: inv.get(i).map(str::to_string),
            line_no: line.get(i),
            customer_id: cust.get(i).map(str::to_string),
            detail: detail.get(i).unwrap_or("").to_string(),
        })
        .collect();
    Ok(mail::FinanceSummaryView {
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

/// Latest revision of each of the period's statements (optionally one operator's).
const LATEST: &str = "FROM payout_statements s WHERE s.period = $1 AND s.revision = \
    (SELECT MAX(t.revision) FROM payout_statements t WHERE t.period = s.period AND t.operator_id = s.operator_id AND t.currency = s.currency)";

/// What `payouts approve` did, and in words why when it approved nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    pub approved: u64,
    /// One line for the terminal: "approved 16 statement(s) of 2026-10 (revision 1)" or
    /// why nothing was approved ("16 statement(s) of 2026-10 already sent (revision
    /// 1); nothing to approve").
    pub message: String,
}

/// R1.9: approve the period's latest draft statements (all, or one operator's).
pub async fn approve(
    app: &App,
    period: Period,
    operator: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<u64> {
    Ok(approve_explained(app, period, operator, now)
        .await?
        .approved)
}

/// [`approve`], saying why when nothing was approved (issue 14 item 8). The status
/// change is published to the statements mart (issue 14 item 9).
pub async fn approve_explained(
    app: &App,
    period: Period,
    operator: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<Approval> {
    let who = operator
        .map(|o| format!(" and operator {o}"))
        .unwrap_or_default();
    let mut tx = app.db.begin_write().await?;
    // The latest revision's statements by status.
    let states = sqlx::query(&format!(
        "SELECT s.status, COUNT(*), MAX(s.revision) {LATEST} AND ($2 = '' OR s.operator_id = $2) GROUP BY s.status ORDER BY s.status"
    ))
    .bind(period.to_string())
    .bind(operator.unwrap_or(""))
    .fetch_all(&mut *tx)
    .await?;
    if states.is_empty() {
        anyhow::bail!(
            "no statements for {period}{who} — run `opnet close --through {period}` first"
        );
    }
    let res = sqlx::query(
        "UPDATE payout_statements SET status = 'approved', approved_at = $3 WHERE status = 'draft' AND period = $1 \
         AND ($2 = '' OR operator_id = $2) AND revision = (SELECT MAX(t.revision) FROM payout_statements t \
         WHERE t.period = payout_statements.period AND t.operator_id = payout_statements.operator_id AND t.currency = payout_statements.currency)"
    )
    .bind(period.to_string())
    .bind(operator.unwrap_or(""))
    .bind(crate::db::timestamp(now))
    .execute(&mut *tx)
    .await?;
    let approved = res.rows_affected();
    if approved > 0 {
        mark_for_publishing(&mut tx, period).await?;
    }
    tx.commit().await?;
    crate::close::publish_pending(app).await?;
    let mut parts = Vec::new();
    let mut revision = 0i64;
    for r in &states {
        let status: String = r.try_get(0)?;
        let n: i64 = r.try_get(1)?;
        revision = revision.max(r.try_get(2)?);
        if status != "draft" {
            parts.push(format!("{n} already {status}"));
        }
    }
    let message = if approved > 0 {
        format!("approved {approved} statement(s) of {period}{who} (revision {revision})")
    } else {
        format!(
            "{} statement(s) of {period}{who}: {} (revision {revision}); nothing to approve",
            states
                .iter()
                .map(|r| r.try_get::<i64, _>(1).unwrap_or(0))
                .sum::<i64>(),
            parts.join(", ")
        )
    };
    Ok(Approval { approved, message })
}

/// The period's statements changed status: its payouts marts are due to be
/// published again (`close::publish_pending`), in the same transaction as the change.
async fn mark_for_publishing(conn: &mut AnyConnection, period: Period) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE job_runs SET published_at = NULL WHERE job = 'payouts' AND period = $1 AND status = 'succeeded'",
    )
    .bind(period.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Queue each approved statement's email to its own operator (and nobody else) and
/// deliver the outbox. The statement's status follows its mail (issue 9 item 3):
/// `approved` → `queued` here, in the transaction that queues the mail, then `sent`
/// or `failed` (with `mail_error`) as the delivery records it. A statement whose
/// mail cannot be built — its operator has no (valid) address in the snapshot — is
/// `failed` with the reason at once, and the others go out. A `failed` statement is
/// queued again by the next `send` (its mail replaced, same Message-ID). Returns the
/// mails queued and the delivery, whose `failed` includes the mails that failed here.
pub async fn send(
    app: &App,
    period: Period,
    now: DateTime<Utc>,
) -> anyhow::Result<(usize, DeliveryReport)> {
    let mut tx = app.db.begin_write().await?;
    let rows = sqlx::query(&format!(
        "SELECT s.operator_id, s.currency, s.phase, s.tier, s.software_cents, s.implementation_cents, s.support_cents, \
         s.operator_share_cents, s.candlefish_share_cents, s.clawback_cents, s.carried_in_cents, s.payable_cents, \
         s.carried_out_cents, s.statement_on, s.due_on, s.revision, s.run_id, s.status, \
         (SELECT j.snapshot FROM job_runs j WHERE j.run_id = s.run_id) AS snapshot {LATEST} AND s.status IN ('approved', 'failed') \
         ORDER BY s.operator_id, s.currency"
    ))
    .bind(period.to_string())
    .fetch_all(&mut *tx)
    .await?;
    let mut directory: HashMap<String, BTreeMap<String, Contact>> = HashMap::new();
    let mut lines_of = period_lines(&mut tx, period).await?;
    let mut queued = 0usize;
    let mut failed_here = 0usize;
    for r in &rows {
        let run_id: String = r.try_get("run_id")?;
        let snapshot: Option<String> = r.try_get("snapshot")?;
        let snapshot =
            snapshot.ok_or_else(|| anyhow::anyhow!("run {run_id} recorded no snapshot"))?;
        if !directory.contains_key(&snapshot) {
            let inputs = app.lake.read_snapshot(&snapshot).await?;
            directory.insert(snapshot.clone(), opnet_pipelines::directory::operator_directory(&inputs)?);
        }
        let operator_id: String = r.try_get("operator_id")?;
        let currency: String = r.try_get("currency")?;
        let status: String = r.try_get("status")?;
        let address = directory[&snapshot].get(&operator_id).cloned();
        let Contact { name, email } = address.clone().unwrap_or_else(|| Contact {
            name: operator_id.clone(),
            email: String::new(),
        });
        let lines = lines_of
            .remove(&(operator_id.clone(), currency.clone()))
            .unwrap_or_default();
        let view = StatementView {
            period: period.to_string(),
            operator_id: operator_id.clone(),
            operator_name: name,
            recipient: email,
            currency: currency.clone(),
            phase: r.try_get("phase")?,
            tier: r.try_get("tier")?,
            software_cents: r.try_get("software_cents")?,
            implementation_cents: r.try_get("implementation_cents")?,
            support_cents: r.try_get("support_cents")?,
            operator_share_cents: r.try_get("operator_share_cents")?,
            candlefish_share_cents: r.try_get("candlefish_share_cents")?,
            clawback_cents: r.try_get("clawback_cents")?,
            carried_in_cents: r.try_get("carried_in_cents")?,
            payable_cents: r.try_get("payable_cents")?,
            carried_out_cents: r.try_get("carried_out_cents")?,
            statement_on: r.try_get("statement_on")?,
            due_on: r.try_get("due_on")?,
            revision: r.try_get("revision")?,
            lines,
        };
        let email = mail::statement_email(&view)?;
        let disposition = match address {
            None => mail::Disposition::Undeliverable {
                reason: format!(
                    "operator {operator_id} has no email address in crm/operators of snapshot {snapshot}"
                ),
            },
            // A failed statement's mail is replaced (it may have been undeliverable).
            Some(_) if status == "failed" => mail::Disposition::Requeue,
            Some(_) => mail::Disposition::Queue,
        };
        let outcome = mail::enqueue_one(
            &mut tx,
            &app.config.email.from,
            &email,
            None,
            now,
            &disposition,
        )
        .await?;
        match &outcome {
            mail::Enqueued::Queued => queued += 1,
            mail::Enqueued::Failed(_) => failed_here += 1,
            _ => {}
        }
        let id = mail::message_id(&email.dedup_key);
        sqlx::query(
            "UPDATE payout_statements SET status = 'queued', message_id = $1, queued_at = $2, mail_error = NULL \
             WHERE period = $3 AND operator_id = $4 AND currency = $5 AND revision = $6",
        )
        .bind(&id)
        .bind(crate::db::timestamp(now))
        .bind(period.to_string())
        .bind(&operator_id)
        .bind(&currency)
        .bind(view.revision)
        .execute(&mut *tx)
        .await?;
        // Then whatever the outbox row says (failed at once, or already sent).
        mail::outbox::statement_follows(&mut tx, &id).await?;
    }
    if !rows.is_empty() {
        mark_for_publishing(&mut tx, period).await?;
    }
    tx.commit().await?;
    crate::close::publish_pending(app).await?;
    let mut delivery = crate::close::deliver(app).await?;
    delivery.failed += failed_here;
    Ok((queued, delivery))
}

/// The period's payout lines (current revision) by (operator, currency), read once.
async fn period_lines(
    conn: &mut AnyConnection,
    period: Period,
) -> anyhow::Result<HashMap<(String, String), Vec<StatementLineView>>> {
    let rows = sqlx::query(
        "SELECT operator_id, currency, invoice_id, line_no, refund_id, revenue_type, kind, amount_cents, operator_bp, \
         operator_cents, candlefish_cents, collected_period FROM payout_lines WHERE period = $1 \
         ORDER BY operator_id, currency, invoice_id, line_no, kind, refund_id",
    )
    .bind(period.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut out: HashMap<(String, String), Vec<StatementLineView>> = HashMap::new();
    for r in &rows {
        out.entry((r.try_get("operator_id")?, r.try_get("currency")?))
            .or_default()
            .push(StatementLineView {
                invoice_id: r.try_get("invoice_id")?,
                line_no: r.try_get("line_no")?,
                refund_id: r.try_get("refund_id")?,
                revenue_type: r.try_get("revenue_type")?,
                kind: r.try_get("kind")?,
                amount_cents: r.try_get("amount_cents")?,
                operator_bp: r.try_get("operator_bp")?,
                operator_cents: r.try_get("operator_cents")?,
                candlefish_cents: r.try_get("candlefish_cents")?,
                collected_period: r.try_get("collected_period")?,
            });
    }
    Ok(out)
}

/// Σ payable of the period's latest statements, per currency.
pub async fn payable_by_currency(app: &App, period: Period) -> anyhow::Result<Vec<(String, i64)>> {
    let rows = sqlx::query(&format!(
        "SELECT s.currency, CAST(SUM(s.payable_cents) AS BIGINT) AS payable {LATEST} GROUP BY s.currency ORDER BY s.currency"
    ))
    .bind(period.to_string())
    .fetch_all(&app.db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// `opnet payouts show`: the period's statements as a terminal table.
pub async fn show(app: &App, period: Period, operator: Option<&str>) -> anyhow::Result<String> {
    let rows = sqlx::query(&format!(
        "SELECT s.operator_id, s.currency, s.phase, s.tier, s.software_cents + s.implementation_cents + s.support_cents, \
         s.operator_share_cents, s.clawback_cents, s.carried_in_cents, s.payable_cents, s.carried_out_cents, s.due_on, \
         s.status, s.revision {LATEST} AND ($2 = '' OR s.operator_id = $2) ORDER BY s.currency, s.operator_id"
    ))
    .bind(period.to_string())
    .bind(operator.unwrap_or(""))
    .fetch_all(&app.db.pool)
    .await?;
    if rows.is_empty() {
        anyhow::bail!(
            "no statements for {period}{}",
            operator
                .map(|o| format!(" and operator {o}"))
                .unwrap_or_default()
        );
    }
    let mut t = crate::cli::table([
        "operator",
        "cur",
        "phase",
        "tier",
        "collected",
        "operator share",
        "clawback",
        "carried in",
        "payable",
        "carried out",
        "due",
        "status",
        "rev",
    ]);
    let mut totals: std::collections::BTreeMap<String, [i64; 6]> = Default::default();
    for r in &rows {
        let cur: String = r.try_get(1)?;
        let m: Vec<i64> = (4..10)
            .map(|i| r.try_get::<i64, _>(i))
            .collect::<Result<_, _>>()?;
        let tot = totals.entry(cur.clone()).or_default();
        for (a, b) in tot.iter_mut().zip(&m) {
            *a += b;
        }
        let f = |c: i64| mail::format_cents(c, "").trim().to_string();
        t.add_row(vec![
            r.try_get::<String, _>(0)?,
            cur.clone(),
            r.try_get(2)?,
            r.try_get(3)?,
            f(m[0]),
            f(m[1]),
            f(m[2]),
            f(m[3]),
            f(m[4]),
            f(m[5]),
            r.try_get(10)?,
            r.try_get(11)?,
            r.try_get::<i64, _>(12)?.to_string(),
        ]);
    }
    for (cur, m) in totals {
        let f = |c: i64| mail::format_cents(c, "").trim().to_string();
        t.add_row(vec![
            "TOTAL".into(),
            cur,
            String::new(),
            String::new(),
            f(m[0]),
            f(m[1]),
            f(m[2]),
            f(m[3]),
            f(m[4]),
            f(m[5]),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    // Money right-aligned, so the digits of a column line up and sums read at a glance.
    for i in (4..10).chain([12]) {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    Ok(format!("payout statements {period}\n{t}"))
}
