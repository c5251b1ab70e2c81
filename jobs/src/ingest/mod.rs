//! Ingest (data-contract.md, "Inputs"): read every dataset from a source folder,
//! validate it against the contract, quarantine the rows that break it, and store
//! the rest as a lake snapshot.
//!
//! Each dataset is one file `<system>/<name>.csv`, `.jsonl` (or `.ndjson`) or
//! `.parquet`. Every value is read as text first and then parsed per the contract
//! (Parquet columns that already have the contract's type are taken as they are), so
//! the three formats give the same snapshot. Columns beyond the contract are accepted
//! and dropped: the lake holds exactly the contract's columns and types, so the
//! pipelines never depend on an upstream extra.
//!
//! An optional contract column ([`Dataset::optional_columns`]: crm/leads'
//! `referred_by_operator_id`, R8.1) may be absent from a source. A source that has it
//! (a CSV header naming it, a JSON Lines key on at least one line, a Parquet column,
//! a SQL result column) gets it validated like any other column and kept in the
//! snapshot; a source without it gives a snapshot without it, so that the pipelines
//! can tell "not provided" (R8.1: `community_contribution` null) from "provided and
//! empty" (zero referrals).
//!
//! A row that breaks its types or allowed values goes to
//! `quarantine/<system>/<name>/ingested=<snapshot>/part-0.csv` with columns
//! `file, row, column, reason` followed by the row's original values (the contract's
//! columns), one line per problem. `row` is the 1-based data row (for a CSV source
//! the line number is `row + 1` because of the header, unless quoted fields span
//! lines or blank lines are skipped; for JSON Lines it is the n-th non-blank line).
//! `column` is empty for a problem of the whole row. A missing file or column fails
//! the whole ingest with a message naming it.
//!
//! Beyond the types (issue 9), ingest applies the sanity bounds the contract module
//! defines, so that nothing absurd reaches the pipelines and file order never decides
//! who is paid:
//! - a keyed dataset ([`Dataset::key`]) holds one row per key: identical repeats (every
//!   contract column equal) are collapsed to the first, with a warning; copies that
//!   differ are all quarantined (`duplicate key`, naming the other rows), so their
//!   money is held by R7 downstream (an invoice of a quarantined customer is
//!   `unknown_customer`, of a quarantined operator's customer
//!   `customer_without_operator`);
//! - money beyond [`contract::MAX_ABS_CENTS`] in magnitude is quarantined, so no
//!   `amount * bp` product can overflow `i64`;
//! - a date or timestamp outside the window `ingest.earliest_date` (1990-01-01) ..=
//!   the ingest day plus `ingest.max_months_ahead` (12) months is quarantined;
//! - an id (`*_id`) with surrounding whitespace or a control character, and a NUL in
//!   any text, are quarantined; a service period ending before it starts is a warning;
//! - an operator email that is not one bare address is a warning: the row is kept (its
//!   money is computed), the mail layer refuses the address;
//! - a CSV row with the wrong number of fields, malformed quoting or bytes that are not
//!   UTF-8 is quarantined with its row number; a CSV header naming a column twice
//!   fails the ingest; a JSON Lines line that is not a JSON object, not UTF-8, or names
//!   a contract column twice is quarantined with its row number.
//!
//! Warnings (rows kept but reported) go to `warnings/<system>/<name>/ingested=<id>/
//! part-0.csv` with the quarantine file's columns. When a dataset's quarantined share
//! exceeds `ingest.max_quarantine_share` (default 1 %) and its quarantined rows
//! exceed `ingest.quarantine_allowance_rows` (default 10) the ingest fails naming the
//! dataset, the count and the bound; its quarantine files are written, but no
//! snapshot (neither data nor manifest), so nothing can be closed from it.
//!
//! A dataset may instead come from a SQL query (`[sources."<system>/<name>"]` in the
//! config: `url`, `query`). The query runs once per ingest on one connection per
//! distinct URL (PostgreSQL sessions are set read-only; SQLite files are opened
//! read-only). It is wrapped as `SELECT CAST(q.col AS TEXT) AS col, … FROM (<query>) q`
//! over the contract's columns, so any column type works: every value arrives as text
//! (SQL NULL as null) and goes through [`validate`](fn@validate) exactly as a file's
//! would. An optional column is read when the query yields it (`SELECT q.col FROM
//! (<query>) q LIMIT 0` runs) and left out when it does not (that probe fails but
//! the query alone runs; a query that does not run at all fails the ingest). On
//! PostgreSQL the session uses `DateStyle ISO` and time zone UTC, and `timestamp`/
//! `timestamptz` values are rendered as RFC 3339 (`…T…Z`); on SQLite an integer 0/1 in
//! a `bool` column reads as `false`/`true`. `file` (quarantine) and `source` (report,
//! manifest) are `sql:<url with credentials masked, or env:NAME>#<dataset>`; `row` is
//! the 1-based row of the result. A missing column fails the ingest naming the
//! dataset, the query source and the column.
//!
//! Identical sources are not ingested twice: the fingerprint (sha256 of an ingest
//! version tag and the date window's settings, then per dataset in contract order its
//! path and raw bytes, each length-prefixed; for a SQL source a canonical
//! serialisation of the names of the columns read and its text rows in result order,
//! so a query should `ORDER BY` a key) is recorded in the snapshot manifest, and a source whose fingerprint matches a
//! complete snapshot reuses it (the quarantine bound is checked again against its
//! recorded counts). That is what makes a re-run read the same snapshot. The sources
//! are held in memory during an ingest (the fingerprint needs all of them before
//! anything is parsed).
//!
//! Values: `int` is a base-10 `i64` (a leading `+` is accepted); `date` is exactly
//! `YYYY-MM-DD`; `ts` is RFC 3339 with offset `Z`/`+00:00` (another offset is
//! quarantined, not converted), stored as `Datetime(ms)` without a time zone; `bool`
//! is exactly `true`/`false`. A blank (empty or all-space) value is missing: an
//! error in a required column, null in an optional one. Text is otherwise kept as is.
//! A typed (Parquet) value is never turned into a silent null: a value that cannot be
//! read as text is quarantined.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use opnet_pipelines::contract::{self, Dataset};
use polars::prelude::*;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::{IngestConfig, SqlSource};
use crate::lake::{Lake, LakeError, ManifestDataset, SnapshotManifest};
use crate::store::{ObjectStore, StoreError};

mod read;
mod sql;
mod validate;
mod values;

pub use read::Raw;
use read::{Format, locate, read_raw};
use sql::{canonical_rows, read_sql, rows_frame};
pub use validate::{Rules, Validated, validate};

/// Bumped when validation changes what a snapshot would contain, so that sources
/// ingested under older rules are ingested again rather than reused.
/// v2 (issue 9): keys, money bound, date window, CSV field counts and UTF-8.
/// v3 (R8.1): optional columns (crm/leads' `referred_by_operator_id`) are kept in
/// the snapshot; under v2 they were dropped as extras.
const FINGERPRINT_VERSION: &[u8] = b"opnet-ingest-v3\0";

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("missing source file {expected} (or .jsonl/.ndjson/.parquet) in {source_location}")]
    MissingFile {
        dataset: String,
        expected: String,
        source_location: String,
    },
    #[error("more than one source file for {dataset}: {}; keep exactly one", files.join(", "))]
    AmbiguousFile { dataset: String, files: Vec<String> },
    /// `column` lists every missing column, comma-separated.
    #[error("missing column {column} in {file}")]
    MissingColumn { file: String, column: String },
    /// A CSV header names a column twice: which copy is meant cannot be told.
    #[error("column {column} appears more than once in the header of {file}; keep exactly one")]
    DuplicateColumn { file: String, column: String },
    /// A CSV file whose rows cannot be told apart (an unterminated quote).
    #[error("cannot read {file}: {reason}")]
    Csv { file: String, reason: String },
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: PolarsError,
    },
    #[error("validating {file}: {source}")]
    Validate {
        file: String,
        #[source]
        source: PolarsError,
    },
    #[error("{file} has {rows} rows, more than ingest can index")]
    TooManyRows { file: String, rows: usize },
    /// Issue 9 item 10: datasets whose quarantined share is over the bound.
    #[error("{}", share_message(breaches, *bound, *allowance))]
    TooManyQuarantined {
        breaches: Vec<ShareBreach>,
        /// `ingest.max_quarantine_share`
        bound: f64,
        /// `ingest.quarantine_allowance_rows`
        allowance: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A SQL source failed (connect, query, decode); `source_name` is redacted.
    #[error("SQL source {source_name} of {dataset}: {reason}")]
    Sql {
        dataset: String,
        source_name: String,
        reason: String,
    },
    /// The query ran but lacks contract columns (`column` comma-separated).
    #[error("missing column {column} in the result of SQL source {source_name} of {dataset}")]
    SqlMissingColumn {
        dataset: String,
        source_name: String,
        column: String,
    },
    #[error("ingest of {dataset} was interrupted: {reason}")]
    Task { dataset: String, reason: String },
}

/// One dataset whose quarantined share exceeds `ingest.max_quarantine_share`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareBreach {
    /// `billing/refunds`
    pub dataset: String,
    pub rows_quarantined: usize,
    pub rows_in: usize,
    /// Location of its quarantine file.
    pub quarantine: Option<String>,
}

/// `0.01` → `1 %`, `0.0625` → `6.25 %`.
fn percent(share: f64) -> String {
    let text = format!("{:.2}", share * 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} %")
}

fn share_message(breaches: &[ShareBreach], bound: f64, allowance: usize) -> String {
    let each: Vec<String> = breaches
        .iter()
        .map(|b| {
            format!(
                "{}: {} of {} rows quarantined ({}){}",
                b.dataset,
                b.rows_quarantined,
                b.rows_in,
                percent(b.rows_quarantined as f64 / b.rows_in.max(1) as f64),
                b.quarantine
                    .as_deref()
                    .map(|q| format!(", see {q}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    format!(
        "too many rows quarantined, more than ingest.max_quarantine_share = {bound} ({}) and \
         ingest.quarantine_allowance_rows = {allowance} allow: {}. \
         Nothing was ingested: correct the source (each quarantine line says why its row was refused) \
         or raise the bound, then ingest again",
        percent(bound),
        each.join("; ")
    )
}

/// What ingest did with one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetReport {
    /// `billing/invoices`
    pub dataset: String,
    /// Location of the source file (a SQL source's label, credentials masked).
    pub source: String,
    /// `rows_in = rows_ok + rows_quarantined + rows_collapsed`.
    pub rows_in: usize,
    pub rows_ok: usize,
    pub rows_quarantined: usize,
    /// Identical repeats of a keyed row, dropped with a warning each.
    pub rows_collapsed: usize,
    /// Warning lines: rows kept but reported (collapsed repeats, bad email addresses).
    pub warnings: usize,
    /// Location of the quarantine file, when rows were rejected.
    pub quarantine: Option<String>,
    /// Location of the warnings file, when there were warnings.
    pub warnings_file: Option<String>,
}

/// What one ingest produced (or reused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// Snapshot id, e.g. `2025-09-01T020000Z` (paths spell it `ingested=<id>`).
    pub snapshot: String,
    pub fingerprint: String,
    /// The sources matched an existing snapshot, which was reused; nothing was written.
    pub reused: bool,
    pub datasets: Vec<DatasetReport>,
}

impl IngestReport {
    pub fn rows_in(&self) -> usize {
        self.datasets.iter().map(|d| d.rows_in).sum()
    }

    pub fn rows_quarantined(&self) -> usize {
        self.datasets.iter().map(|d| d.rows_quarantined).sum()
    }

    /// Rows in the snapshot (neither quarantined nor collapsed).
    pub fn rows_ok(&self) -> usize {
        self.datasets.iter().map(|d| d.rows_ok).sum()
    }

    pub fn warnings(&self) -> usize {
        self.datasets.iter().map(|d| d.warnings).sum()
    }
}

/// Issue 9 item 10: fail when a dataset's quarantined share is over `bound`.
/// A dataset fails when more of its rows are quarantined than the share allows and
/// than the allowance: a whole column of the wrong type fails the month, a few bad
/// rows of a small dataset are quarantined and reported.
fn check_quarantine_share(
    reports: &[DatasetReport],
    bound: f64,
    allowance: usize,
) -> Result<(), IngestError> {
    let breaches: Vec<ShareBreach> = reports
        .iter()
        .filter(|r| {
            r.rows_quarantined > allowance && r.rows_quarantined as f64 > bound * r.rows_in as f64
        })
        .map(|r| ShareBreach {
            dataset: r.dataset.clone(),
            rows_quarantined: r.rows_quarantined,
            rows_in: r.rows_in,
            quarantine: r.quarantine.clone(),
        })
        .collect();
    if breaches.is_empty() {
        Ok(())
    } else {
        Err(IngestError::TooManyQuarantined {
            breaches,
            bound,
            allowance,
        })
    }
}

/// Ingest every dataset of `source` into `lake` (or reuse the snapshot of identical
/// sources) with the default `[ingest]` settings. `now` names a new snapshot.
pub async fn ingest(
    source: &dyn ObjectStore,
    lake: &Lake,
    now: DateTime<Utc>,
) -> Result<IngestReport, IngestError> {
    ingest_with_sources(
        source,
        lake,
        now,
        &BTreeMap::new(),
        &IngestConfig::default(),
    )
    .await
}

/// Where one dataset's rows come from, once read.
enum Input {
    File {
        key: String,
        format: Format,
        bytes: Vec<u8>,
    },
    /// The query's result, the contract's columns as text, and its label.
    Sql { label: String, frame: DataFrame },
}

/// One dataset validated, waiting for the quarantine bound before it is written.
struct Checked {
    dataset: &'static Dataset,
    format: &'static str,
    ok: DataFrame,
    report: DatasetReport,
    quarantine_key: Option<String>,
    warnings_key: Option<String>,
}

/// [`ingest`], with the datasets of `sql` (keyed by dataset path, validated by
/// [`crate::config::Config::validate`]) read from their SQL query instead of a file,
/// and the `[ingest]` settings `opts`.
pub async fn ingest_with_sources(
    source: &dyn ObjectStore,
    lake: &Lake,
    now: DateTime<Utc>,
    sql: &BTreeMap<String, SqlSource>,
    opts: &IngestConfig,
) -> Result<IngestReport, IngestError> {
    let files = locate_all(source, sql).await?;
    let (inputs, fingerprint) = read_sources(source, sql, files, opts).await?;
    if let Some(reused) = reuse_snapshot(lake, &fingerprint, opts).await? {
        return Ok(reused);
    }

    let snapshot = new_snapshot_id(lake, now).await?;
    info!(snapshot = %snapshot, fingerprint = %fingerprint, "ingesting a new snapshot");
    let rules = Rules::new(opts, now.date_naive());
    let mut checked = Vec::new();
    for (d, input) in contract::ALL.iter().copied().zip(inputs) {
        checked.push(check_dataset(source, lake, &snapshot, d, input, rules).await?);
    }

    // Issue 9 item 10: too much quarantined fails before any snapshot data is written
    // (the quarantine files above are, so that ops can see why).
    let reports: Vec<DatasetReport> = checked.iter().map(|c| c.report.clone()).collect();
    check_quarantine_share(
        &reports,
        opts.max_quarantine_share,
        opts.quarantine_allowance_rows,
    )?;
    publish_snapshot(lake, &snapshot, &fingerprint, now, checked).await?;
    Ok(IngestReport {
        snapshot,
        fingerprint,
        reused: false,
        datasets: reports,
    })
}

/// The source file of every dataset that does not come from `sql`, in contract
/// order (`None` where it does). Every file is found before any is read, so that a
/// missing one fails fast.
async fn locate_all(
    source: &dyn ObjectStore,
    sql: &BTreeMap<String, SqlSource>,
) -> Result<Vec<Option<(String, Format)>>, IngestError> {
    let mut files = Vec::with_capacity(contract::ALL.len());
    for d in contract::ALL {
        files.push(match sql.get(&d.path()) {
            Some(_) => None,
            None => Some(locate(source, d).await?),
        });
    }
    Ok(files)
}

/// Length-prefixed, so that no two different inputs hash the same stream.
fn hash_part(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// Read every dataset (the file's bytes or the query's rows) and the fingerprint of
/// them all (see the module documentation).
async fn read_sources(
    source: &dyn ObjectStore,
    sql: &BTreeMap<String, SqlSource>,
    files: Vec<Option<(String, Format)>>,
    opts: &IngestConfig,
) -> Result<(Vec<Input>, String), IngestError> {
    let mut hasher = Sha256::new();
    hasher.update(FINGERPRINT_VERSION);
    // The window's settings change what a snapshot holds; the quarantine bound only
    // decides whether one is made (and is checked again on reuse).
    let window = format!("{}+{}", opts.earliest_date, opts.max_months_ahead);
    hash_part(&mut hasher, window.as_bytes());
    let mut inputs = Vec::with_capacity(files.len());
    // One connection per distinct URL, shared by the datasets that use it.
    let mut conns: BTreeMap<String, sqlx::AnyConnection> = BTreeMap::new();
    for (d, file) in contract::ALL.iter().zip(files) {
        let path = d.path();
        hash_part(&mut hasher, path.as_bytes());
        match (file, sql.get(&path)) {
            (Some((key, format)), _) => {
                let bytes = source.get(&key).await?;
                hash_part(&mut hasher, &bytes);
                inputs.push(Input::File { key, format, bytes });
            }
            (None, Some(src)) => {
                let sql = read_sql(d, src, &mut conns).await?;
                hash_part(&mut hasher, &canonical_rows(&sql.columns, &sql.rows));
                let frame =
                    rows_frame(&sql.columns, &sql.rows).map_err(|source| IngestError::Read {
                        file: sql.label.clone(),
                        source,
                    })?;
                inputs.push(Input::Sql {
                    label: sql.label,
                    frame,
                });
            }
            // `files` has a `None` exactly where `sql` has the dataset.
            (None, None) => {
                return Err(IngestError::Task {
                    dataset: path,
                    reason: "no source".into(),
                });
            }
        }
    }
    for (_, conn) in conns {
        // Closing politely; a failure here changes nothing that was read.
        let _ = sqlx::Connection::close(conn).await;
    }
    Ok((inputs, hex::encode(hasher.finalize())))
}

/// The report of the complete snapshot with this fingerprint, if there is one: the
/// sources are unchanged and it is reused (when its recorded counts still pass the
/// quarantine bound).
async fn reuse_snapshot(
    lake: &Lake,
    fingerprint: &str,
    opts: &IngestConfig,
) -> Result<Option<IngestReport>, IngestError> {
    let Some(snapshot) = lake.find_snapshot_by_fingerprint(fingerprint).await? else {
        return Ok(None);
    };
    let manifest = lake.read_manifest(&snapshot).await?;
    let store = lake.store();
    let datasets: Vec<DatasetReport> = manifest
        .datasets
        .iter()
        .map(|m| DatasetReport {
            dataset: m.dataset.clone(),
            source: m.source.clone(),
            rows_in: m.rows_in as usize,
            rows_ok: m.rows_ok as usize,
            rows_quarantined: m.rows_quarantined as usize,
            rows_collapsed: m.rows_collapsed as usize,
            warnings: m.warnings as usize,
            quarantine: m.quarantine.as_deref().map(|k| store.location(k)),
            warnings_file: m.warnings_file.as_deref().map(|k| store.location(k)),
        })
        .collect();
    // A bound lowered since: the snapshot is no more acceptable than a new one.
    check_quarantine_share(
        &datasets,
        opts.max_quarantine_share,
        opts.quarantine_allowance_rows,
    )?;
    info!(snapshot = %snapshot, fingerprint = %fingerprint, "sources unchanged: reusing snapshot");
    Ok(Some(IngestReport {
        snapshot,
        fingerprint: fingerprint.to_string(),
        reused: true,
        datasets,
    }))
}

/// Read and validate one dataset, write its quarantine and warnings files (if it
/// has any) under `snapshot`, and report on it.
async fn check_dataset(
    source: &dyn ObjectStore,
    lake: &Lake,
    snapshot: &str,
    d: &'static Dataset,
    input: Input,
    rules: Rules,
) -> Result<Checked, IngestError> {
    let (file, format_name) = match &input {
        Input::File { key, format, .. } => (source.location(key), format.name()),
        Input::Sql { label, .. } => (label.clone(), "sql"),
    };
    let dataset = d.path();
    // Parsing and validating is CPU work; keep it off the async workers.
    let task_file = file.clone();
    let (mut v, rows_in) = tokio::task::spawn_blocking(move || {
        let raw = match input {
            Input::File { format, bytes, .. } => read_raw(d, format, &bytes, &task_file)?,
            Input::Sql { frame, .. } => Raw::from(frame),
        };
        let rows_in = raw.frame.height();
        let v = validate(d, raw, &task_file, &rules)?;
        Ok::<_, IngestError>((v, rows_in))
    })
    .await
    .map_err(|e| IngestError::Task {
        dataset: dataset.clone(),
        reason: e.to_string(),
    })??;

    let rows_ok = v.ok.height();
    let quarantine_key = match v.quarantine.height() {
        0 => None,
        _ => {
            let key = Lake::quarantine_key(d, snapshot);
            Some(put_report(lake, key, &mut v.quarantine, &file).await?)
        }
    };
    let warnings_key = match v.warnings.height() {
        0 => None,
        _ => {
            let key = Lake::warnings_key(d, snapshot);
            Some(put_report(lake, key, &mut v.warnings, &file).await?)
        }
    };
    let location = |k: &Option<String>| k.as_deref().map(|k| lake.store().location(k));
    let report = DatasetReport {
        dataset,
        source: file,
        rows_in,
        rows_ok,
        rows_quarantined: v.rows_quarantined,
        rows_collapsed: v.rows_collapsed,
        warnings: v.warnings.height(),
        quarantine: location(&quarantine_key),
        warnings_file: location(&warnings_key),
    };
    log_dataset(&report);
    Ok(Checked {
        dataset: d,
        format: format_name,
        ok: v.ok,
        report,
        quarantine_key,
        warnings_key,
    })
}

/// Write a quarantine or warnings frame as CSV to `key` in the lake; returns `key`.
async fn put_report(
    lake: &Lake,
    key: String,
    frame: &mut DataFrame,
    file: &str,
) -> Result<String, IngestError> {
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf)
        .include_header(true)
        .finish(frame)
        .map_err(|source| IngestError::Validate {
            file: file.to_string(),
            source,
        })?;
    lake.put_file(&key, buf).await?;
    Ok(key)
}

/// What happened to one dataset, in the log: quarantined rows and warnings stand out.
fn log_dataset(report: &DatasetReport) {
    let (dataset, rows_in, rows_ok) = (&report.dataset, report.rows_in, report.rows_ok);
    if report.rows_quarantined > 0 {
        warn!(dataset = %dataset, rows_in, rows_ok, rows_quarantined = report.rows_quarantined,
            quarantine = %report.quarantine.as_deref().unwrap_or_default(),
            "rows quarantined");
    }
    if report.warnings > 0 {
        warn!(dataset = %dataset, warnings = report.warnings, rows_collapsed = report.rows_collapsed,
            file = %report.warnings_file.as_deref().unwrap_or_default(),
            "rows kept with warnings");
    }
    if report.rows_quarantined == 0 && report.warnings == 0 {
        info!(dataset = %dataset, rows_in, rows_ok, "ingested");
    }
}

/// Write the data of every dataset, then the manifest: only the manifest makes the
/// snapshot exist, so an ingest interrupted before it leaves no snapshot.
async fn publish_snapshot(
    lake: &Lake,
    snapshot: &str,
    fingerprint: &str,
    now: DateTime<Utc>,
    checked: Vec<Checked>,
) -> Result<(), IngestError> {
    let mut entries = Vec::with_capacity(checked.len());
    for mut c in checked {
        lake.write_snapshot(c.dataset, snapshot, &mut c.ok).await?;
        entries.push(ManifestDataset {
            dataset: c.report.dataset,
            source: c.report.source,
            format: c.format.to_string(),
            rows_in: c.report.rows_in as u64,
            rows_ok: c.report.rows_ok as u64,
            rows_quarantined: c.report.rows_quarantined as u64,
            rows_collapsed: c.report.rows_collapsed as u64,
            warnings: c.report.warnings as u64,
            data: Lake::snapshot_key(c.dataset, snapshot),
            quarantine: c.quarantine_key,
            warnings_file: c.warnings_key,
        });
    }

    // Last: only now does the snapshot exist.
    crate::failpoint::point(crate::failpoint::INGEST_BEFORE_MANIFEST);
    lake.write_manifest(&SnapshotManifest {
        snapshot: snapshot.to_string(),
        fingerprint: fingerprint.to_string(),
        created_at: now,
        datasets: entries,
    })
    .await?;
    Ok(())
}

/// `2025-09-01T020000Z`, or `…Z-2`, `…Z-3` when taken (two ingests in one second, or
/// the leftovers of an interrupted one).
async fn new_snapshot_id(lake: &Lake, now: DateTime<Utc>) -> Result<String, IngestError> {
    let base = now.format("%Y-%m-%dT%H%M%SZ").to_string();
    let mut id = base.clone();
    let mut n = 1;
    while lake.snapshot_id_taken(&id).await? {
        n += 1;
        id = format!("{base}-{n}");
    }
    Ok(id)
}

#[cfg(test)]
mod tests;
