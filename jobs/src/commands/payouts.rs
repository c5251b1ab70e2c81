//! `opnet payouts show|approve|send`: finance's commands on the statements the
//! payouts job wrote (R1.9) — a readable table, approval of a period (or one
//! operator), and sending each approved statement to its own operator, the
//! statement's status following its mail.

use crate::app::App;
use crate::jobs::payouts::emails::{self, StatementLineView, StatementView};
use crate::jobs::payouts::{latest_revision, latest_statements};
use crate::mail::{self, DeliveryReport};
use chrono::{DateTime, Utc};
use opnet_pipelines::Period;
use opnet_pipelines::directory::Contact;
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, HashMap};

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
    let latest = latest_statements();
    let who = operator
        .map(|o| format!(" and operator {o}"))
        .unwrap_or_default();
    let mut tx = app.db.begin_write().await?;
    // The latest revision's statements by status.
    let states = sqlx::query(&format!(
        "SELECT s.status, COUNT(*), MAX(s.revision) {latest} AND ($2 = '' OR s.operator_id = $2) GROUP BY s.status ORDER BY s.status"
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
        &format!(
            "UPDATE payout_statements SET status = 'approved', approved_at = $3 WHERE status = 'draft' AND period = $1 \
             AND ($2 = '' OR operator_id = $2) AND {}",
            latest_revision("payout_statements")
        ),
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
    let latest = latest_statements();
    let mut tx = app.db.begin_write().await?;
    let rows = sqlx::query(&format!(
        "SELECT s.operator_id, s.currency, s.phase, s.tier, s.software_cents, s.implementation_cents, s.support_cents, \
         s.operator_share_cents, s.candlefish_share_cents, s.clawback_cents, s.carried_in_cents, s.payable_cents, \
         s.carried_out_cents, s.statement_on, s.due_on, s.revision, s.run_id, s.status, \
         (SELECT j.snapshot FROM job_runs j WHERE j.run_id = s.run_id) AS snapshot {latest} AND s.status IN ('approved', 'failed') \
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
            directory.insert(
                snapshot.clone(),
                opnet_pipelines::directory::operator_directory(&inputs)?,
            );
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
        let email = emails::statement_email(&view)?;
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
    let latest = latest_statements();
    let rows = sqlx::query(&format!(
        "SELECT s.currency, CAST(SUM(s.payable_cents) AS BIGINT) AS payable {latest} GROUP BY s.currency ORDER BY s.currency"
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
    let latest = latest_statements();
    let rows = sqlx::query(&format!(
        "SELECT s.operator_id, s.currency, s.phase, s.tier, s.software_cents + s.implementation_cents + s.support_cents, \
         s.operator_share_cents, s.clawback_cents, s.carried_in_cents, s.payable_cents, s.carried_out_cents, s.due_on, \
         s.status, s.revision {latest} AND ($2 = '' OR s.operator_id = $2) ORDER BY s.currency, s.operator_id"
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
    let mut t = crate::term::table([
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
