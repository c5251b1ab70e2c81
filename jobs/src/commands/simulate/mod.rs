//! `opnet simulate --plan FILE [--from M] [--through M] [--out DIR]`: what a plan
//! change would have paid. The recorded payout closes of a range of periods are
//! computed again under another plan file — on the snapshot each recorded close used,
//! with the pure payout pipeline (R1, with its R2 tiers and R7 holds) — and the
//! payable of every statement is compared with the recorded one (latest revision,
//! R1.9), per operator, period and currency.
//!
//! Read-only: no lease, no ledger row, no result table, no mart, no mail. The walk
//! carries the simulated results from period to period ([`walk`]), so the plan takes
//! effect at `--from`. The report is written as a terminal table, `simulation.csv`
//! and `index.html` ([`report`]). docs/interpretations.md ("Plan simulation") has the
//! readings behind it.

pub mod report;
pub mod walk;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use opnet_pipelines::payouts::close_payouts;
use opnet_pipelines::plan::{Plan, PlanBook, PlanError};
use opnet_pipelines::{Inputs, Period};
use polars::prelude::{DataFrame, PolarsResult, StringChunked};
use sqlx::Row as _;

use crate::app::App;
use crate::jobs::compute;
use crate::jobs::payouts::{
    latest_revision, recorded_carried_out, recorded_lines, refunded_invoices,
};
use report::{PageInfo, Row, Statement};
use walk::Walk;

/// How many per-operator differences the terminal and the page list.
pub const TOP: usize = 10;

/// What `opnet simulate` was asked.
#[derive(Clone, Debug)]
pub struct Options {
    /// The plan file to simulate (a plan book, like the config's `plan_file`).
    pub plan_file: PathBuf,
    /// First period [default: the first recorded close].
    pub from: Option<Period>,
    /// Last period [default: the last recorded close].
    pub through: Option<Period>,
    /// Where the CSV and HTML go [default: [`default_out`]].
    pub out: Option<PathBuf>,
}

/// What a simulation found and where it wrote it.
#[derive(Debug)]
pub struct Simulation {
    pub from: Period,
    pub through: Period,
    /// Every statement of either side, sorted by period, operator, currency.
    pub rows: Vec<Row>,
    /// The terminal report.
    pub text: String,
    /// The folder holding `simulation.csv` and `index.html`.
    pub out: PathBuf,
}

/// `./simulation-<plan file stem>`: one folder per plan tried, so two simulations of
/// different plans side by side do not overwrite each other.
pub fn default_out(plan_file: &Path) -> PathBuf {
    let stem = plan_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "plan".into());
    PathBuf::from(format!("simulation-{stem}"))
}

/// The plan file, parsed and validated (R0.5); an error names the file and the key.
pub fn read_plan(path: &Path) -> anyhow::Result<PlanBook> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("plan file {}: cannot read it", path.display()))?;
    PlanBook::from_toml(&text).map_err(|e| anyhow!("plan file {}: {e}", path.display()))
}

/// The version of `book` a simulated period `period` runs under. R0.5 as a close
/// applies it (the newest version in force at `period`) — except that a newest
/// version not yet in force at `through` is the change being tried before it takes
/// effect, and applies to every simulated period, as if it had taken effect at
/// `--from`.
pub fn plan_for(book: &PlanBook, period: Period, through: Period) -> Result<&Plan, PlanError> {
    match book.versions.iter().max_by_key(|v| v.effective_from) {
        Some(newest) if newest.effective_from > through => Ok(newest),
        _ => book.for_period(period),
    }
}

/// The range to simulate: `--from`/`--through`, by default the first and last
/// period with a recorded payouts close. Every period of it must have one (nothing to
/// compare against otherwise, and the walk carries from one period to the next).
pub fn resolve_range(
    closed: &BTreeSet<Period>,
    from: Option<Period>,
    through: Option<Period>,
) -> anyhow::Result<(Period, Period)> {
    let (Some(first), Some(last)) = (closed.first(), closed.last()) else {
        bail!(
            "no recorded payouts close in the database: a simulation compares against recorded statements — run `opnet close` first"
        );
    };
    let from = from.unwrap_or(*first);
    let through = through.unwrap_or(*last);
    if from > through {
        bail!("--from {from} is after --through {through}");
    }
    if let Some(m) = from.through(through).find(|m| !closed.contains(m)) {
        bail!(
            "{m} has no recorded payouts close, so there is nothing to compare against — close it first (`opnet close --through {m}`) or narrow --from/--through (recorded closes: {} period(s), {first} .. {last})",
            closed.len()
        );
    }
    Ok((from, through))
}

/// The latest succeeded payouts run of each period: its snapshot (`None` when the
/// run recorded none), as the close and `payouts send` find it.
async fn closed_periods(app: &App) -> anyhow::Result<BTreeMap<Period, (String, Option<String>)>> {
    let rows = sqlx::query(
        "SELECT period, run_id, snapshot FROM job_runs WHERE job = 'payouts' AND status = 'succeeded' \
         AND period IS NOT NULL ORDER BY period, finished_at, run_id",
    )
    .fetch_all(&app.db.pool)
    .await
    .context("reading the payouts runs of job_runs")?;
    let mut out = BTreeMap::new();
    for r in &rows {
        let period: String = r.try_get(0)?;
        let period = Period::parse(&period)
            .with_context(|| format!("job_runs: payouts run with period {period:?}"))?;
        // Ordered by finish: the last one of a period is the one its results are from.
        out.insert(period, (r.try_get(1)?, r.try_get(2)?));
    }
    Ok(out)
}

/// The recorded statements of the range, latest revision (R1.9), and the plan
/// versions they were computed under.
async fn recorded_statements(
    app: &App,
    from: Period,
    through: Period,
) -> anyhow::Result<(Vec<Statement>, BTreeSet<String>)> {
    let rows = sqlx::query(&format!(
        "SELECT s.period, s.operator_id, s.currency, s.tier, s.payable_cents, s.plan_version \
         FROM payout_statements s WHERE s.period >= $1 AND s.period <= $2 AND {}",
        latest_revision("s")
    ))
    .bind(from.to_string())
    .bind(through.to_string())
    .fetch_all(&app.db.pool)
    .await
    .context("reading the recorded payout statements")?;
    let mut statements = Vec::with_capacity(rows.len());
    let mut versions = BTreeSet::new();
    for r in &rows {
        let period: String = r.try_get(0)?;
        statements.push(Statement {
            period: Period::parse(&period)?,
            operator_id: r.try_get(1)?,
            currency: r.try_get(2)?,
            tier: r.try_get(3)?,
            payable_cents: r.try_get(4)?,
        });
        if let Some(v) = r.try_get::<Option<String>, _>(5)? {
            versions.insert(v);
        }
    }
    Ok((statements, versions))
}

/// The simulated statements of one close, as report rows see them.
fn statements_of(period: Period, statements: &DataFrame) -> PolarsResult<Vec<Statement>> {
    let text =
        |n: &str| -> PolarsResult<StringChunked> { Ok(statements.column(n)?.str()?.clone()) };
    let (ops, cur, tier) = (text("operator_id")?, text("currency")?, text("tier")?);
    let payable = statements.column("payable_cents")?.i64()?.clone();
    Ok((0..statements.height())
        .map(|i| Statement {
            period,
            operator_id: ops.get(i).unwrap_or("").to_string(),
            currency: cur.get(i).unwrap_or("").to_string(),
            tier: tier.get(i).unwrap_or("none").to_string(),
            payable_cents: payable.get(i).unwrap_or(0),
        })
        .collect())
}

/// "version 2027.1 for 2025-01 .. 2025-06": which version ran for which periods.
fn describe_versions(used: &[(Period, String)]) -> String {
    let mut spans: Vec<(String, Period, Period)> = Vec::new();
    for (m, v) in used {
        match spans.last_mut() {
            Some((last, _, end)) if last == v => *end = *m,
            _ => spans.push((v.clone(), *m, *m)),
        }
    }
    spans
        .iter()
        .map(|(v, a, b)| {
            if a == b {
                format!("version {v} for {a}")
            } else {
                format!("version {v} for {a} .. {b}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the simulation and writes its CSV and HTML; returns what to print.
pub async fn run(app: &App, opts: &Options) -> anyhow::Result<Simulation> {
    let started = Instant::now();
    let book = read_plan(&opts.plan_file)?;
    let plan_name = opts.plan_file.display().to_string();
    let closed = closed_periods(app).await?;
    let (from, through) =
        resolve_range(&closed.keys().copied().collect(), opts.from, opts.through)?;
    let periods: Vec<Period> = from.through(through).collect();

    // Every period's plan first: a file without a version for a period fails before
    // any work.
    let mut used = Vec::with_capacity(periods.len());
    for &m in &periods {
        let plan =
            plan_for(&book, m, through).map_err(|e| anyhow!("plan file {plan_name}: {e}"))?;
        used.push((m, plan.version.clone()));
    }

    // Each distinct snapshot once (the lake decodes it into memory; it keeps only the
    // last one, and a range may alternate between snapshots).
    let mut inputs: HashMap<String, Inputs> = HashMap::new();
    let mut snapshot_of = Vec::with_capacity(periods.len());
    for &m in &periods {
        let (run_id, snapshot) = &closed[&m];
        let snapshot = snapshot
            .clone()
            .ok_or_else(|| anyhow!("{m}: payouts run {run_id} recorded no snapshot"))?;
        if !inputs.contains_key(&snapshot) {
            let read = app
                .lake
                .read_snapshot(&snapshot)
                .await
                .with_context(|| format!("reading snapshot {snapshot} (the close of {m})"))?;
            inputs.insert(snapshot.clone(), read);
        }
        snapshot_of.push(snapshot);
    }

    let mut conn = app.db.pool.acquire().await?;
    let carried = recorded_carried_out(&mut conn, from.prev())
        .await
        .with_context(|| format!("reading the balances carried out of {}", from.prev()))?
        .collect()
        .with_context(|| format!("reading the balances carried out of {}", from.prev()))?;
    let mut walk = Walk::new(carried);
    let mut simulated = Vec::new();
    for (&m, snapshot) in periods.iter().zip(&snapshot_of) {
        let ctx = || format!("simulating {m} (snapshot {snapshot})");
        let inputs = &inputs[snapshot];
        let plan = plan_for(&book, m, through)?;
        let refunded = refunded_invoices(inputs, m).with_context(ctx)?;
        // Lines recorded before --from only: from --from on, the simulated ones count.
        let recorded_prior = recorded_lines(&mut conn, from, &refunded)
            .await
            .with_context(ctx)?;
        let history = walk.history(recorded_prior, &refunded).with_context(ctx)?;
        let close = compute(|| close_payouts(inputs, &history, m, plan)).with_context(ctx)?;
        walk.record(&close).with_context(ctx)?;
        simulated.extend(statements_of(m, &close.statements).with_context(ctx)?);
    }
    drop(conn);

    let (recorded, recorded_versions) = recorded_statements(app, from, through).await?;
    let rows = report::diff(recorded, simulated)?;

    let newest_pulled = book
        .versions
        .iter()
        .max_by_key(|v| v.effective_from)
        .filter(|v| v.effective_from > through);
    let mut simulated_plan = describe_versions(&used);
    if let Some(v) = newest_pulled {
        simulated_plan.push_str(&format!(
            " (effective_from {} is after {through}: applied from {from} as if in force)",
            v.effective_from
        ));
    }
    let recorded_plan = if recorded_versions.is_empty() {
        "no plan version recorded".to_string()
    } else {
        format!(
            "plan version(s) {}",
            recorded_versions.into_iter().collect::<Vec<_>>().join(", ")
        )
    };

    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| default_out(&opts.plan_file));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let csv_path = out.join("simulation.csv");
    std::fs::write(&csv_path, report::csv(&rows))
        .with_context(|| format!("writing {}", csv_path.display()))?;
    let page = report::page(
        &rows,
        &PageInfo {
            plan_file: &plan_name,
            simulated_plan: &simulated_plan,
            recorded_plan: &recorded_plan,
            from,
            through,
            top: TOP,
        },
    )?;
    let html_path = out.join("index.html");
    std::fs::write(&html_path, page).with_context(|| format!("writing {}", html_path.display()))?;

    let mut text = format!(
        "simulation of {plan_name} over the recorded closes {from} .. {through}\n\
         simulated: {simulated_plan}\nrecorded:  {recorded_plan}\n\
         nothing was written to the database and nothing was sent\n\n"
    );
    text.push_str(&report::terminal(&rows, TOP)?);
    text.push_str(&format!(
        "\n{} period(s), {} statement(s) compared in {:.1}s; wrote {} and {}\n",
        periods.len(),
        rows.len(),
        started.elapsed().as_secs_f64(),
        csv_path.display(),
        html_path.display()
    ));
    Ok(Simulation {
        from,
        through,
        rows,
        text,
        out,
    })
}

#[cfg(test)]
mod tests;
