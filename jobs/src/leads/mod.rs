//! R8.3 lead distribution, a task of its own (not part of the monthly close): every
//! few minutes — `opnet leads assign`, or the scheduler's `leads` task under the same
//! lease as the close — ingest a snapshot, assign every eligible new lead once with
//! `opnet_pipelines::leads::assign_leads`, tell each operator its new leads and ops
//! the ones nobody could take, and publish the assignments for the CRM.
//!
//! One run, in order:
//!
//! 1. Publish what an earlier run committed but did not publish (a crash).
//! 2. Ingest the sources (as the close does: the whole source, so the snapshot is the
//!    same kind the close reads and is reused when nothing changed).
//! 3. In one transaction, with a `leads` ledger row for T's month: read the latest
//!    closed period's tiers and R8.1 totals and opnet's earlier assignments, run the
//!    rule, write `lead_assignments`, queue the mails, mark the run succeeded. A
//!    failed run rolls back whole; a transient failure runs again as a new run.
//! 4. After the commit, each step on its own, so one failing does not hold back the
//!    others (and each is redone by the next run): publish the run's rows (Parquet
//!    mart and CSV), write the assigned leads back to the CRM's table when
//!    `[leads.writeback]` names one, deliver the mail.
//!
//! A lead is assigned at most once: the rule skips leads opnet assigned before, the
//! write only replaces a `no_capacity` row, and the primary key refuses a second row;
//! a re-run at the same T therefore assigns nothing new and mails nobody.

pub mod config;
pub mod emails;
pub mod publish;
pub mod store;
pub mod writeback;

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, TimeDelta, Utc};
use opnet_pipelines::leads::{LeadRun, assign_leads, rule};
use opnet_pipelines::{Inputs, Period, Plan};
use polars::prelude::*;
use sqlx::AnyConnection;

use crate::app::{App, Invocation};
use crate::close;
use crate::db::{self, DbError, RunCounts, RunStart};
use crate::mail::{self, Disposition, EnqueueReport, MailError};
use crate::retry;
use emails::{LeadLine, OperatorLeadsView, OpsLeadsView};

/// `job_runs.job` of a lead run.
pub const JOB: &str = "leads";

/// How far T may lie ahead of this host's clock (another host's clock may run a
/// little ahead); a later T is refused: leads are assigned when they exist.
const MAX_AHEAD: TimeDelta = TimeDelta::minutes(5);

/// Why one lead run failed; each says whether another run may succeed.
#[derive(Debug, thiserror::Error)]
pub enum LeadError {
    #[error("lead run: {0}")]
    Polars(#[from] PolarsError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("{context}: {source}")]
    Sql {
        context: String,
        source: sqlx::Error,
    },
    /// The rule's output broke an invariant (a lead twice, an unknown rule).
    #[error("lead run: {0}")]
    Data(String),
    /// A write landed fewer rows than it wrote: another run assigned one of the leads
    /// meanwhile. The run rolls back; a new run reads the assignments again.
    #[error(
        "another run assigned some of these leads meanwhile ({landed} of {wrote} rows written); rolled back"
    )]
    Raced { wrote: usize, landed: u64 },
}

impl LeadError {
    /// Worth another run: a dropped connection, a locked SQLite file, a race with
    /// another run — never a bad rule output or a template.
    pub fn is_transient(&self) -> bool {
        match self {
            LeadError::Db(e) => e.is_transient(),
            LeadError::Mail(e) => e.is_transient(),
            LeadError::Sql { source, .. } => db::is_transient_sqlx(source),
            LeadError::Raced { .. } => true,
            LeadError::Polars(_) | LeadError::Data(_) => false,
        }
    }
}

/// One row of a run as the rule decided it.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    pub lead_id: String,
    /// `None` for `no_capacity`.
    pub operator_id: Option<String>,
    pub rule: String,
    /// The deciding score (R8.3): the R8.1 total for `specialist`, the selection score
    /// for `score`, none for `exclusive` and `no_capacity`.
    pub score: Option<f64>,
}

/// What one lead run did, for the terminal and the scheduler's log.
#[derive(Debug, Default)]
pub struct LeadReport {
    pub run_id: String,
    /// T.
    pub at: DateTime<Utc>,
    pub snapshot: String,
    /// The sources were unchanged: the snapshot was reused.
    pub snapshot_reused: bool,
    /// The latest closed period whose tiers and scores the run used (none yet: tier
    /// `none`, null scores).
    pub closed_period: Option<String>,
    /// New assignments by rule.
    pub by_rule: BTreeMap<String, usize>,
    /// Leads this run recorded as `no_capacity` for the first time.
    pub no_capacity: usize,
    /// Waiting leads the CRM assigned meanwhile (or no longer has): their
    /// `no_capacity` rows were removed.
    pub released: u64,
    /// Leads without an operator after the run (`no_capacity`, all runs).
    pub waiting: i64,
    /// Operators mailed their new leads.
    pub operators_mailed: usize,
    pub mail: EnqueueReport,
    pub delivery: mail::DeliveryReport,
    /// Lake locations the run was published to.
    pub published: Vec<String>,
    /// Leads written back to the CRM's table (`None`: no write-back configured).
    pub written_back: Option<usize>,
    /// Steps after the commit that failed (publish, write-back, delivery); the
    /// assignments stand, and the next run redoes these steps.
    pub problems: Vec<String>,
}

impl LeadReport {
    /// New assignments of the run.
    pub fn assigned(&self) -> usize {
        self.by_rule.values().sum()
    }
}

/// How a lead run is started, besides its time.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeadOptions<'a> {
    /// Read this recorded snapshot instead of ingesting (the demo, right after its
    /// close on that snapshot).
    pub snapshot: Option<&'a str>,
    /// Leave the queued mail to the caller, which delivers right after anyway (the
    /// scheduler's wake-up, the demo).
    pub skip_delivery: bool,
}

/// Run lead distribution once at `at` (T), on a fresh ingest, and deliver its mail.
/// The caller holds the lease (`opnet leads assign`). `Err` when nothing was
/// committed; a committed run whose later steps failed says so in
/// [`LeadReport::problems`].
pub async fn assign(app: &App, at: DateTime<Utc>) -> Result<LeadReport> {
    assign_with(app, at, LeadOptions::default()).await
}

/// [`assign`] with [`LeadOptions`].
pub async fn assign_with(
    app: &App,
    at: DateTime<Utc>,
    opts: LeadOptions<'_>,
) -> Result<LeadReport> {
    let snapshot = opts.snapshot;
    let now = Utc::now();
    if at > now + MAX_AHEAD {
        bail!(
            "--at {} is in the future (now {}): a lead run assigns the leads that exist at T",
            db::timestamp(at),
            db::timestamp(now)
        );
    }
    let mut problems = Vec::new();
    if let Err(e) = publish::publish_pending(app).await {
        problems.push(format!("publishing earlier lead runs: {e:#}"));
    }
    let (snapshot, fingerprint, snapshot_reused) = match snapshot {
        Some(s) => {
            let manifest = app
                .lake
                .read_manifest(s)
                .await
                .with_context(|| format!("reading snapshot {s}"))?;
            (s.to_string(), manifest.fingerprint, true)
        }
        None => {
            let r = close::run_ingest(app, now).await?;
            (r.snapshot, r.fingerprint, r.reused)
        }
    };
    let inputs = app
        .lake
        .read_snapshot(&snapshot)
        .await
        .with_context(|| format!("reading snapshot {snapshot}"))?;
    let month = Period::of_date(at.date_naive());
    let plan = app.config.plan.for_period(month)?;
    let start = RunStart {
        job: JOB,
        period: Some(month.to_string()),
        plan_version: Some(plan.version.clone()),
        input_fingerprint: Some(fingerprint),
        snapshot: Some(snapshot.clone()),
        lease_holder: app.lease_holder.clone(),
    };
    let mut attempt = 1u32;
    let (run_id, outcome) = loop {
        let run_id = app.db.start_run(&start, Utc::now()).await?;
        let run = Run {
            app,
            inputs: &inputs,
            plan,
            at,
            month,
            run_id: &run_id,
        };
        match attempt_run(&run).await {
            Ok(outcome) => break (run_id, outcome),
            Err(e) => {
                let msg = close::error_chain(&e);
                app.db.fail_run(&run_id, &msg, Utc::now()).await?;
                if e.is_transient() && attempt < retry::JOB_RUN.max_attempts {
                    retry::pause(&retry::JOB_RUN, "lead run", attempt, &msg).await;
                    attempt += 1;
                    continue;
                }
                tracing::error!(run_id = %run_id, attempt, error = %msg, "Lead run failed");
                let rerun = match &app.invocation {
                    Invocation::Scheduled => "opnet leads assign   (the scheduler runs it again at its next wake-up anyway)".to_string(),
                    Invocation::Command(_) => format!("opnet leads assign --at {}", db::timestamp(at)),
                };
                close::queue_failure_notice(app, JOB, Some(month), &run_id, &msg, &rerun).await;
                return Err(anyhow::Error::new(e)
                    .context(format!("lead run {run_id} failed; nothing was committed")));
            }
        }
    };
    // Debug: every caller reports the run itself (the command's summary, the
    // scheduler's wake-up line, the demo's table).
    tracing::debug!(run_id = %run_id, assigned = outcome.assigned.len(), no_capacity = outcome.no_capacity.len(), "Lead run succeeded");

    let published = match publish::publish_run(app, &run_id, at).await {
        Ok(p) => p,
        Err(e) => {
            problems.push(format!("publishing run {run_id}: {e:#}"));
            Vec::new()
        }
    };
    let written_back = match writeback::write_back(app).await {
        Ok(n) => n,
        Err(e) => {
            problems.push(format!("{e:#}"));
            None
        }
    };
    let delivery = if opts.skip_delivery {
        Default::default()
    } else {
        match close::deliver(app).await {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("delivering the mail: {e:#}"));
                Default::default()
            }
        }
    };
    let mut by_rule = BTreeMap::new();
    for a in &outcome.assigned {
        *by_rule.entry(a.rule.clone()).or_default() += 1;
    }
    Ok(LeadReport {
        run_id,
        at,
        snapshot,
        snapshot_reused,
        closed_period: outcome.closed_period,
        by_rule,
        no_capacity: outcome.no_capacity.len(),
        released: outcome.released,
        waiting: outcome.waiting,
        operators_mailed: outcome.operators_mailed,
        mail: outcome.mail,
        delivery,
        published,
        written_back,
        problems,
    })
}

/// What one attempt works with.
struct Run<'a> {
    app: &'a App,
    inputs: &'a Inputs,
    plan: &'a Plan,
    at: DateTime<Utc>,
    month: Period,
    run_id: &'a str,
}

/// What a committed run wrote and queued.
#[derive(Debug)]
struct Outcome {
    closed_period: Option<String>,
    assigned: Vec<Assignment>,
    no_capacity: Vec<Assignment>,
    released: u64,
    waiting: i64,
    operators_mailed: usize,
    mail: EnqueueReport,
}

/// One attempt in its own transaction: committed when it succeeds, rolled back when not.
async fn attempt_run(run: &Run<'_>) -> Result<Outcome, LeadError> {
    let mut tx = run.app.db.begin_write().await?;
    match run_in_tx(run, &mut tx).await {
        Ok(outcome) => {
            tx.commit().await.map_err(|source| LeadError::Sql {
                context: format!("commit lead run {}", run.run_id),
                source,
            })?;
            Ok(outcome)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// Read, decide, write rows and mails, finish the ledger row — in the run's transaction.
async fn run_in_tx(run: &Run<'_>, tx: &mut AnyConnection) -> Result<Outcome, LeadError> {
    let month = run.month.to_string();
    let closed_period = store::latest_closed_period(tx, &month).await?;
    let standing = match &closed_period {
        Some(p) => store::standing(tx, p).await?,
        None => store::no_standing()?,
    };
    let earlier = store::earlier(tx).await?;
    let lead_run = LeadRun {
        at_ms: run.at.timestamp_millis(),
        standing: &standing,
        assigned: &earlier,
    };
    let frame = crate::jobs::compute(|| assign_leads(run.inputs, &lead_run, run.plan))?;
    let rows = assignments(&frame)?;

    // A lead opnet tried before (its no_capacity row stands) gets no second row when
    // it is still without an operator; an assignment replaces that row.
    let tried: HashSet<String> = earlier
        .column("lead_id")?
        .str()?
        .iter()
        .flatten()
        .map(str::to_string)
        .collect();
    let (assigned, failed): (Vec<Assignment>, Vec<Assignment>) =
        rows.into_iter().partition(|a| a.operator_id.is_some());
    let (still_waiting, no_capacity): (Vec<Assignment>, Vec<Assignment>) =
        failed.into_iter().partition(|a| tried.contains(&a.lead_id));
    let assigned_at = db::timestamp(run.at);
    let rows_out = store::write(tx, run.run_id, &assigned_at, &assigned, &no_capacity).await?;
    // A waiting lead the CRM has since assigned by hand (or no longer has) is not
    // opnet's to place any more: its no_capacity row goes, so it stops counting as
    // waiting.
    let open = open_leads(run.inputs)?;
    let waiting_before: Vec<String> = earlier
        .column("lead_id")?
        .str()?
        .iter()
        .zip(earlier.column("operator_id")?.str()?.iter())
        .filter_map(|(l, op)| (op.is_none()).then_some(l).flatten())
        .filter(|l| !open.contains(*l))
        .map(str::to_string)
        .collect();
    let released = store::release(tx, &waiting_before).await?;
    let waiting = store::waiting(tx).await?;

    let (emails, operators_mailed) = self::mails(run, &assigned, &no_capacity, &still_waiting)?;
    let mut report = EnqueueReport::default();
    let now = Utc::now();
    for email in &emails {
        report.count(
            &mail::enqueue_one(
                tx,
                &run.app.config.email.from,
                email,
                Some(run.run_id),
                now,
                &Disposition::Queue,
            )
            .await?,
        );
    }
    let rows_in = run.inputs.leads.clone().select([len()]).collect()?;
    let counts = RunCounts {
        rows_in: rows_in
            .column("len")?
            .cast(&DataType::Int64)?
            .i64()?
            .get(0)
            .unwrap_or(0),
        rows_quarantined: 0,
        rows_out: rows_out as i64,
    };
    db::finish_run(tx, run.run_id, &counts, Utc::now()).await?;
    Ok(Outcome {
        closed_period,
        assigned,
        no_capacity,
        released,
        waiting,
        operators_mailed,
        mail: report,
    })
}

/// The rule's frame as rows, refusing what must never be written: a lead twice, a
/// rule outside R8.3's four, an operator on a `no_capacity` row or none on another.
pub fn assignments(frame: &DataFrame) -> Result<Vec<Assignment>, LeadError> {
    let ids = frame.column("lead_id")?.cast(&DataType::String)?;
    let ops = frame.column("operator_id")?.cast(&DataType::String)?;
    let rules = frame.column("rule")?.cast(&DataType::String)?;
    let scores = frame.column("score")?.cast(&DataType::Float64)?;
    let (ids, ops, rules, scores) = (ids.str()?, ops.str()?, rules.str()?, scores.f64()?);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(frame.height());
    for i in 0..frame.height() {
        let Some(lead_id) = ids.get(i) else {
            return Err(LeadError::Data(format!("row {i} has no lead_id")));
        };
        if !seen.insert(lead_id) {
            return Err(LeadError::Data(format!(
                "lead {lead_id} was assigned twice in one run"
            )));
        }
        let rule = rules.get(i).unwrap_or_default();
        let operator_id = ops.get(i).map(str::to_string);
        let known = [
            rule::EXCLUSIVE,
            rule::SPECIALIST,
            rule::SCORE,
            rule::NO_CAPACITY,
        ];
        if !known.contains(&rule) || (rule == rule::NO_CAPACITY) != operator_id.is_none() {
            return Err(LeadError::Data(format!(
                "lead {lead_id}: rule {rule:?} with operator {operator_id:?}"
            )));
        }
        out.push(Assignment {
            lead_id: lead_id.to_string(),
            operator_id,
            rule: rule.to_string(),
            score: scores.get(i),
        });
    }
    Ok(out)
}

/// The leads of the snapshot nobody assigned upstream (`assigned_operator_id` empty).
fn open_leads(inputs: &Inputs) -> PolarsResult<HashSet<String>> {
    let df = inputs
        .leads
        .clone()
        .filter(col("assigned_operator_id").is_null())
        .select([col("lead_id").cast(DataType::String)])
        .collect()?;
    Ok(df
        .column("lead_id")?
        .str()?
        .iter()
        .flatten()
        .map(str::to_string)
        .collect())
}

/// What the mails say about one lead (from the snapshot's crm/leads row).
#[derive(Clone, Debug, Default)]
struct LeadFacts {
    source: String,
    vertical: String,
    metro: String,
    created_ms: Option<i64>,
}

/// The crm/leads facts of the leads in `wanted`.
fn lead_facts(inputs: &Inputs, wanted: &HashSet<&str>) -> PolarsResult<HashMap<String, LeadFacts>> {
    let df = inputs
        .leads
        .clone()
        .select([
            col("lead_id").cast(DataType::String),
            col("source").cast(DataType::String),
            col("vertical").cast(DataType::String),
            col("metro").cast(DataType::String),
            col("created_at").cast(DataType::Int64),
        ])
        .collect()?;
    let s = |c: &str| -> PolarsResult<StringChunked> { Ok(df.column(c)?.str()?.clone()) };
    let (ids, source, vertical, metro) = (s("lead_id")?, s("source")?, s("vertical")?, s("metro")?);
    let created = df.column("created_at")?.i64()?.clone();
    let mut out = HashMap::new();
    for i in 0..df.height() {
        let Some(id) = ids.get(i).filter(|id| wanted.contains(id)) else {
            continue;
        };
        out.insert(
            id.to_string(),
            LeadFacts {
                source: source.get(i).unwrap_or_default().to_string(),
                vertical: vertical.get(i).unwrap_or_default().to_string(),
                metro: metro.get(i).unwrap_or_default().to_string(),
                created_ms: created.get(i),
            },
        );
    }
    Ok(out)
}

/// `2025-06-15 09:12 UTC`.
pub fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// R4.5's target in words: `24 hours`, `1 hour`, `12.5 hours`.
pub fn hours_text(h: f64) -> String {
    if h == 1.0 {
        "1 hour".into()
    } else if h.fract() == 0.0 && h.abs() < 1e15 {
        format!("{} hours", h as i64)
    } else {
        format!("{h} hours")
    }
}

/// Why an operator got a lead, for its mail.
fn why(a: &Assignment, facts: &LeadFacts) -> String {
    match a.rule.as_str() {
        rule::EXCLUSIVE => format!("your exclusive territory in {}", facts.metro),
        rule::SPECIALIST => match a.score {
            Some(s) => format!(
                "you specialise in {} (scorecard {s:.1} of 100, the highest among specialists with capacity)",
                facts.vertical
            ),
            None => format!("you specialise in {}", facts.vertical),
        },
        _ => match a.score {
            Some(s) => format!(
                "best selection score with capacity ({s:.1} of 100: close rate, satisfaction, response time, tenure)"
            ),
            None => "best selection score with capacity".into(),
        },
    }
}

/// The run's mails: one per operator with new leads, listing only its own, and one
/// per ops address when leads were left without an operator or an operator could
/// not be mailed. Returns the mails and how many operators they reach.
fn mails(
    run: &Run<'_>,
    assigned: &[Assignment],
    no_capacity: &[Assignment],
    still_waiting: &[Assignment],
) -> Result<(Vec<mail::OutgoingEmail>, usize), LeadError> {
    let wanted: HashSet<&str> = assigned
        .iter()
        .chain(no_capacity)
        .chain(still_waiting)
        .map(|a| a.lead_id.as_str())
        .collect();
    let facts = lead_facts(run.inputs, &wanted)?;
    let directory = opnet_pipelines::directory::operator_directory(run.inputs)?;
    let target_h = run.plan.thresholds.response_hours_max;
    let target = TimeDelta::milliseconds((target_h * 3_600_000.0).round() as i64);
    let line = |a: &Assignment| -> LeadLine {
        let f = facts.get(&a.lead_id).cloned().unwrap_or_default();
        let created = f.created_ms.and_then(DateTime::from_timestamp_millis);
        LeadLine {
            lead_id: a.lead_id.clone(),
            source: f.source.clone(),
            vertical: f.vertical.clone(),
            metro: f.metro.clone(),
            created_at: created.map(when).unwrap_or_default(),
            respond_by: created
                .and_then(|c| c.checked_add_signed(target))
                .map(|by| {
                    // A lead that waited for capacity (or came in long before the
                    // run) may already be late: say so rather than imply time left.
                    if by < run.at {
                        format!("{} (already passed)", when(by))
                    } else {
                        when(by)
                    }
                })
                .unwrap_or_default(),
            why: if a.operator_id.is_some() {
                why(a, &f)
            } else {
                String::new()
            },
            operator_id: a.operator_id.clone().unwrap_or_default(),
        }
    };
    let mut by_op: BTreeMap<&str, Vec<LeadLine>> = BTreeMap::new();
    for a in assigned {
        if let Some(op) = a.operator_id.as_deref() {
            by_op.entry(op).or_default().push(line(a));
        }
    }
    let (assigned_at, period) = (when(run.at), run.month.to_string());
    let mut out = Vec::new();
    let mut unmailed = Vec::new();
    let mut mailed = 0;
    for (op, leads) in by_op {
        // No single, valid address in crm/operators (ingest keeps a bad address
        // with a warning): the operator cannot be told, so ops passes the leads on.
        let Some(contact) = directory
            .get(op)
            .filter(|c| mail::parse_mailbox("recipient", &c.email, run.run_id).is_ok())
        else {
            unmailed.extend(leads);
            continue;
        };
        out.push(emails::operator_leads_email(&OperatorLeadsView {
            run_id: run.run_id.to_string(),
            assigned_at: assigned_at.clone(),
            period: period.clone(),
            operator_id: op.to_string(),
            operator_name: contact.name.clone(),
            recipient: contact.email.clone(),
            response_target: hours_text(target_h),
            leads,
        })?);
        mailed += 1;
    }
    let no_capacity: Vec<LeadLine> = no_capacity.iter().map(line).collect();
    let still_waiting: Vec<LeadLine> = still_waiting.iter().map(line).collect();
    for to in &run.app.config.email.ops {
        let view = OpsLeadsView {
            run_id: run.run_id.to_string(),
            assigned_at: assigned_at.clone(),
            period: period.clone(),
            recipient: to.clone(),
            no_capacity: no_capacity.clone(),
            still_waiting: still_waiting.clone(),
            unmailed: unmailed.clone(),
            ops_mail: run.app.config.leads.ops_mail,
        };
        if let Some(email) = emails::ops_leads_email(&view)? {
            out.push(email);
        }
    }
    Ok((out, mailed))
}

/// `opnet status`: leads waiting without an operator, and assignments not yet
/// written back (`None` when no write-back is configured).
pub async fn status(app: &App) -> Result<(i64, Option<i64>)> {
    let mut conn = app.db.pool.acquire().await.context("acquire")?;
    let waiting = store::waiting(&mut conn).await?;
    let pending = match &app.config.leads.writeback {
        Some(_) => Some(store::not_written_back(&mut conn).await?),
        None => None,
    };
    Ok((waiting, pending))
}

/// `--at` and `--since` values: RFC 3339 (`2025-06-15T12:00:00Z`), or for `since` a
/// date (`2025-06-15`, midnight UTC).
pub fn parse_time(s: &str, date_allowed: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    if date_allowed && let Ok(d) = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(format!(
        "{s:?}: expected an RFC 3339 time such as 2025-06-15T12:00:00Z{}",
        if date_allowed {
            " or a date YYYY-MM-DD"
        } else {
            ""
        }
    ))
}

#[cfg(test)]
mod tests;
