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
//! (SQL NULL as null) and goes through [`validate`] exactly as a file's would. On
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
//! serialisation of its text rows in result order, so a query should `ORDER BY` a
//! key) is recorded in the snapshot manifest, and a source whose fingerprint matches a
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

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use opnet_pipelines::contract::{self, Check, ColType, Dataset, ISO_4217, MAX_ABS_CENTS};
use polars::prelude::*;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::{IngestConfig, SqlSource};
use crate::lake::{Lake, LakeError, ManifestDataset, SnapshotManifest};
use crate::store::{ObjectStore, StoreError};

/// Bumped when validation changes what a snapshot would contain, so that sources
/// ingested under older rules are ingested again rather than reused.
/// v2 (issue 9): keys, money bound, date window, CSV field counts and UTF-8.
const FINGERPRINT_VERSION: &[u8] = b"opnet-ingest-v2\0";

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

/// Source file formats, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    JsonLines,
    Parquet,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::JsonLines => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

const EXTENSIONS: &[(&str, Format)] = &[
    ("csv", Format::Csv),
    ("jsonl", Format::JsonLines),
    ("ndjson", Format::JsonLines),
    ("parquet", Format::Parquet),
];

/// The one source file of `dataset`.
async fn locate(
    source: &dyn ObjectStore,
    dataset: &Dataset,
) -> Result<(String, Format), IngestError> {
    let stem = dataset.path();
    let listed = source.list(&format!("{stem}.")).await?;
    let mut found: Vec<(String, Format)> = listed
        .into_iter()
        .filter_map(|k| {
            let ext = k.strip_prefix(&stem)?.strip_prefix('.')?;
            EXTENSIONS
                .iter()
                .find(|(e, _)| *e == ext)
                .map(|&(_, f)| (k.clone(), f))
        })
        .collect();
    if found.len() > 1 {
        return Err(IngestError::AmbiguousFile {
            dataset: stem,
            files: found.iter().map(|(k, _)| source.location(k)).collect(),
        });
    }
    found.pop().ok_or_else(|| IngestError::MissingFile {
        expected: format!("{stem}.csv"),
        dataset: stem,
        source_location: source.location(""),
    })
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
    // Find every file before reading any: a missing one fails fast.
    let mut files = Vec::with_capacity(contract::ALL.len());
    for d in contract::ALL {
        files.push(match sql.get(&d.path()) {
            Some(_) => None,
            None => Some(locate(source, d).await?),
        });
    }

    let mut hasher = Sha256::new();
    hasher.update(FINGERPRINT_VERSION);
    // The window's settings change what a snapshot holds; the quarantine bound only
    // decides whether one is made (and is checked again on reuse).
    let window = format!("{}+{}", opts.earliest_date, opts.max_months_ahead);
    hasher.update((window.len() as u64).to_le_bytes());
    hasher.update(window.as_bytes());
    let mut inputs = Vec::with_capacity(files.len());
    // One connection per distinct URL, shared by the datasets that use it.
    let mut conns: BTreeMap<String, sqlx::AnyConnection> = BTreeMap::new();
    for (d, file) in contract::ALL.iter().zip(files) {
        // Length-prefixed so that no two different inputs hash the same stream.
        let path = d.path();
        hasher.update((path.len() as u64).to_le_bytes());
        hasher.update(path.as_bytes());
        match (file, sql.get(&path)) {
            (Some((key, format)), _) => {
                let bytes = source.get(&key).await?;
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(&bytes);
                inputs.push(Input::File { key, format, bytes });
            }
            (None, Some(src)) => {
                let (label, rows) = read_sql(d, src, &mut conns).await?;
                let canonical = canonical_rows(&rows);
                hasher.update((canonical.len() as u64).to_le_bytes());
                hasher.update(&canonical);
                let frame = rows_frame(d, rows).map_err(|source| IngestError::Read {
                    file: label.clone(),
                    source,
                })?;
                inputs.push(Input::Sql { label, frame });
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
    let fingerprint = hex::encode(hasher.finalize());

    if let Some(snapshot) = lake.find_snapshot_by_fingerprint(&fingerprint).await? {
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
        return Ok(IngestReport {
            snapshot,
            fingerprint,
            reused: true,
            datasets,
        });
    }

    let snapshot = new_snapshot_id(lake, now).await?;
    info!(snapshot = %snapshot, fingerprint = %fingerprint, "ingesting a new snapshot");
    let rules = Rules::new(opts, now.date_naive());

    let mut checked = Vec::new();
    for (d, input) in contract::ALL.iter().copied().zip(inputs) {
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
        let put_report = async |key: String, frame: &mut DataFrame| {
            let mut buf = Vec::new();
            CsvWriter::new(&mut buf)
                .include_header(true)
                .finish(frame)
                .map_err(|source| IngestError::Validate {
                    file: file.clone(),
                    source,
                })?;
            lake.put_file(&key, buf).await?;
            Ok::<_, IngestError>(Some(key))
        };
        let quarantine_key = match v.quarantine.height() {
            0 => None,
            _ => put_report(Lake::quarantine_key(d, &snapshot), &mut v.quarantine).await?,
        };
        let warnings_key = match v.warnings.height() {
            0 => None,
            _ => put_report(Lake::warnings_key(d, &snapshot), &mut v.warnings).await?,
        };
        let location = |k: &Option<String>| k.as_deref().map(|k| lake.store().location(k));
        let report = DatasetReport {
            dataset: dataset.clone(),
            source: file.clone(),
            rows_in,
            rows_ok,
            rows_quarantined: v.rows_quarantined,
            rows_collapsed: v.rows_collapsed,
            warnings: v.warnings.height(),
            quarantine: location(&quarantine_key),
            warnings_file: location(&warnings_key),
        };
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
        checked.push(Checked {
            dataset: d,
            format: format_name,
            ok: v.ok,
            report,
            quarantine_key,
            warnings_key,
        });
    }

    // Issue 9 item 10: too much quarantined fails before any snapshot data is written
    // (the quarantine files above are, so that ops can see why).
    let reports: Vec<DatasetReport> = checked.iter().map(|c| c.report.clone()).collect();
    check_quarantine_share(
        &reports,
        opts.max_quarantine_share,
        opts.quarantine_allowance_rows,
    )?;

    let mut entries = Vec::with_capacity(checked.len());
    for mut c in checked {
        lake.write_snapshot(c.dataset, &snapshot, &mut c.ok).await?;
        entries.push(ManifestDataset {
            dataset: c.report.dataset,
            source: c.report.source,
            format: c.format.to_string(),
            rows_in: c.report.rows_in as u64,
            rows_ok: c.report.rows_ok as u64,
            rows_quarantined: c.report.rows_quarantined as u64,
            rows_collapsed: c.report.rows_collapsed as u64,
            warnings: c.report.warnings as u64,
            data: Lake::snapshot_key(c.dataset, &snapshot),
            quarantine: c.quarantine_key,
            warnings_file: c.warnings_key,
        });
    }

    // Last: only now does the snapshot exist.
    crate::failpoint::point(crate::failpoint::INGEST_BEFORE_MANIFEST);
    lake.write_manifest(&SnapshotManifest {
        snapshot: snapshot.clone(),
        fingerprint: fingerprint.clone(),
        created_at: now,
        datasets: entries,
    })
    .await?;
    Ok(IngestReport {
        snapshot,
        fingerprint,
        reused: false,
        datasets: reports,
    })
}

/// Rows of a SQL source: the contract's columns in order, as text (`None` = NULL).
type TextRows = Vec<Vec<Option<String>>>;

/// Run `src`'s query for `dataset`; returns the source's label and its rows.
async fn read_sql(
    dataset: &Dataset,
    src: &SqlSource,
    conns: &mut BTreeMap<String, sqlx::AnyConnection>,
) -> Result<(String, TextRows), IngestError> {
    use sqlx::Row;
    let path = dataset.path();
    let label = format!("sql:{}#{path}", src.display_url());
    let fail = |reason: String| IngestError::Sql {
        dataset: path.clone(),
        source_name: label.clone(),
        reason,
    };
    let url = src.resolve_url().map_err(fail)?;
    let backend = crate::db::backend_of(&url).map_err(|e| fail(e.to_string()))?;
    if !conns.contains_key(&url) {
        conns.insert(
            url.clone(),
            connect_read_only(&url, backend).await.map_err(fail)?,
        );
    }
    let Some(conn) = conns.get_mut(&url) else {
        return Err(fail("connection lost".into()));
    };
    // A trailing `;` would end the subquery early.
    let query = src.query.trim().trim_end_matches(';').trim_end();
    let sql = wrap_query(dataset, query, backend);
    let rows = match sqlx::query(&sql).fetch_all(&mut *conn).await {
        Ok(rows) => rows,
        Err(e) => {
            // Tell a missing column from any other failure: when the query itself
            // runs, the columns that cannot be selected from it are the missing ones.
            let probe = |col: Option<&str>| match col {
                Some(c) => format!("SELECT q.{} FROM ({query}) q LIMIT 0", quote_ident(c)),
                None => format!("SELECT 1 FROM ({query}) q LIMIT 0"),
            };
            if sqlx::query(&probe(None))
                .fetch_all(&mut *conn)
                .await
                .is_ok()
            {
                let mut missing = Vec::new();
                for c in dataset.columns {
                    if sqlx::query(&probe(Some(c.name)))
                        .fetch_all(&mut *conn)
                        .await
                        .is_err()
                    {
                        missing.push(c.name);
                    }
                }
                if !missing.is_empty() {
                    return Err(IngestError::SqlMissingColumn {
                        dataset: path.clone(),
                        source_name: label.clone(),
                        column: missing.join(", "),
                    });
                }
            }
            return Err(fail(format!("query failed: {e}")));
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let mut values = Vec::with_capacity(dataset.columns.len());
        for (j, c) in dataset.columns.iter().enumerate() {
            let v: Option<String> = row
                .try_get(j)
                .map_err(|e| fail(format!("row {}, column {}: {e}", i + 1, c.name)))?;
            values.push(v);
        }
        out.push(values);
    }
    info!(dataset = %path, source = %label, rows = out.len(), "read SQL source");
    Ok((label, out))
}

/// A connection for reading only: PostgreSQL sessions read-only, UTC and ISO dates;
/// SQLite files opened read-only (never created).
async fn connect_read_only(
    url: &str,
    backend: crate::db::Backend,
) -> Result<sqlx::AnyConnection, String> {
    sqlx::any::install_default_drivers();
    let url = match backend {
        crate::db::Backend::Sqlite if !url.contains("mode=") => {
            format!("{url}{}mode=ro", if url.contains('?') { '&' } else { '?' })
        }
        _ => url.to_string(),
    };
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    if backend == crate::db::Backend::Postgres {
        for set in [
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "SET DateStyle = 'ISO, YMD'",
            "SET TIME ZONE 'UTC'",
        ] {
            sqlx::query(set)
                .execute(&mut conn)
                .await
                .map_err(|e| format!("{set}: {e}"))?;
        }
    }
    Ok(conn)
}

/// `"name"`, doubling any quote inside.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The user's query wrapped so that every contract column comes back as text.
fn wrap_query(dataset: &Dataset, query: &str, backend: crate::db::Backend) -> String {
    let cols: Vec<String> = dataset
        .columns
        .iter()
        .map(|c| {
            let q = format!("q.{}", quote_ident(c.name));
            let text = format!("CAST({q} AS TEXT)");
            let expr = match (backend, c.ty) {
                // `timestamptz::text` is `2025-08-01 10:00:00+00`, not RFC 3339. The
                // CASE keeps text columns as they are (validation judges them).
                (crate::db::Backend::Postgres, ColType::Ts) => format!(
                    "CASE WHEN pg_typeof({q}) IN ('timestamp with time zone'::regtype, 'timestamp without time zone'::regtype) \
                     THEN to_char(CAST({text} AS timestamp with time zone) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
                     ELSE {text} END"
                ),
                // SQLite has no boolean type: 0/1 integers are its usual spelling.
                (crate::db::Backend::Sqlite, ColType::Bool) => format!(
                    "CASE WHEN typeof({q}) = 'integer' AND {q} IN (0, 1) \
                     THEN (CASE WHEN {q} = 1 THEN 'true' ELSE 'false' END) ELSE {text} END"
                ),
                _ => text,
            };
            format!("{expr} AS {}", quote_ident(c.name))
        })
        .collect();
    format!("SELECT {} FROM ({query}) q", cols.join(", "))
}

/// What the fingerprint hashes for SQL rows: a tag, the row count, then per value a
/// null marker or its length-prefixed bytes, in result order.
fn canonical_rows(rows: &TextRows) -> Vec<u8> {
    let mut out = b"opnet-sql-rows\0".to_vec();
    out.extend((rows.len() as u64).to_le_bytes());
    for row in rows {
        out.extend((row.len() as u64).to_le_bytes());
        for v in row {
            match v {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    out.extend((v.len() as u64).to_le_bytes());
                    out.extend(v.as_bytes());
                }
            }
        }
    }
    out
}

/// SQL rows as a frame of the contract's columns, all text, ready for [`validate`].
fn rows_frame(dataset: &Dataset, rows: TextRows) -> PolarsResult<DataFrame> {
    let n = rows.len();
    let cols = dataset
        .columns
        .iter()
        .enumerate()
        .map(|(j, c)| {
            StringChunked::from_iter_options(
                c.name.into(),
                rows.iter().map(|r| r.get(j).and_then(|v| v.as_deref())),
            )
            .into_column()
        })
        .collect();
    DataFrame::new(n, cols)
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

/// A source read into a frame, before validation: the contract's columns (as text,
/// or with Parquet's own types) and the problems found while reading whole rows (a
/// CSV row's field count, its quoting, bytes that are not UTF-8).
pub struct Raw {
    pub frame: DataFrame,
    /// (0-based row, column or empty for the whole row, reason)
    pub problems: Vec<(usize, String, String)>,
}

impl From<DataFrame> for Raw {
    fn from(frame: DataFrame) -> Self {
        Raw {
            frame,
            problems: Vec::new(),
        }
    }
}

/// Read a source file with every contract column as text (JSON values are rendered
/// as their JSON text; Parquet columns keep their types and are handled by
/// [`validate`]).
fn read_raw(
    dataset: &Dataset,
    format: Format,
    bytes: &[u8],
    file: &str,
) -> Result<Raw, IngestError> {
    let read_err = |source| IngestError::Read {
        file: file.to_string(),
        source,
    };
    match format {
        Format::Csv => read_csv(dataset, bytes, file),
        Format::Parquet => ParquetReader::new(Cursor::new(bytes))
            .finish()
            .map(Raw::from)
            .map_err(read_err),
        Format::JsonLines => read_jsonl(dataset, bytes, file),
    }
}

/// One JSON Lines object, its keys in order and repeated keys kept (a map type
/// would keep one of them silently).
struct JsonObject(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = JsonObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonObject, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    entries.push(entry);
                }
                Ok(JsonObject(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// A JSON Lines source: one object per non-blank line, every contract column as text
/// (strings as they are; numbers, bools and nested values as their JSON text; null
/// and an absent key as null). A line that is not a JSON object, is not UTF-8, or
/// names a contract column twice (which copy counts cannot be told) is kept for the
/// quarantine with its row number; the rest of the file is read. A required column
/// that no line has is a missing column; an optional one is accepted as empty,
/// because JSON writers commonly omit null keys (a warning says so).
fn read_jsonl(dataset: &Dataset, bytes: &[u8], file: &str) -> Result<Raw, IngestError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut values: Vec<Vec<Option<String>>> = vec![Vec::new(); dataset.columns.len()];
    let mut present = vec![false; dataset.columns.len()];
    let mut problems = Vec::new();
    let mut row = 0usize;
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = match std::str::from_utf8(line) {
            Err(e) => Err(format!(
                "not valid UTF-8 (byte 0x{:02X} at byte {} of line {})",
                line.get(e.valid_up_to()).copied().unwrap_or_default(),
                e.valid_up_to() + 1,
                n + 1
            )),
            Ok(text) => serde_json::from_str::<JsonObject>(text)
                .map_err(|e| format!("not a JSON object: {e} (line {})", n + 1)),
        };
        match parsed {
            Err(reason) => {
                problems.push((row, String::new(), reason));
                values.iter_mut().for_each(|v| v.push(None));
            }
            Ok(JsonObject(entries)) => {
                for ((c, out), seen) in dataset
                    .columns
                    .iter()
                    .zip(values.iter_mut())
                    .zip(present.iter_mut())
                {
                    let mut copies = entries.iter().filter(|(k, _)| k == c.name).map(|(_, v)| v);
                    let first = copies.next();
                    let more = copies.count();
                    if more > 0 {
                        problems.push((
                            row,
                            c.name.to_string(),
                            format!(
                                "the key appears {} times in the object (line {})",
                                more + 1,
                                n + 1
                            ),
                        ));
                    }
                    *seen |= first.is_some();
                    out.push(first.and_then(|v| match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    }));
                }
            }
        }
        row += 1;
    }
    if row > 0 {
        let absent: Vec<&contract::Column> = dataset
            .columns
            .iter()
            .zip(&present)
            .filter(|(_, seen)| !**seen)
            .map(|(c, _)| c)
            .collect();
        let required: Vec<&str> = absent
            .iter()
            .filter(|c| !c.nullable)
            .map(|c| c.name)
            .collect();
        if !required.is_empty() {
            return Err(IngestError::MissingColumn {
                file: file.to_string(),
                column: required.join(", "),
            });
        }
        for c in absent {
            warn!(
                file,
                column = c.name,
                "optional column absent from every line: read as empty"
            );
        }
    }
    let cols = dataset
        .columns
        .iter()
        .zip(values)
        .map(|(c, v)| StringChunked::from_iter_options(c.name.into(), v.into_iter()).into_column())
        .collect();
    let frame = DataFrame::new(row, cols).map_err(|source| IngestError::Read {
        file: file.to_string(),
        source,
    })?;
    Ok(Raw { frame, problems })
}

/// One CSV record: its fields' bytes (quotes removed), the line it starts on, and
/// the first field with text after its closing quote, if any.
struct Record {
    fields: Vec<Vec<u8>>,
    line: usize,
    bad_quote: Option<usize>,
}

/// RFC 4180 records (comma, `"` quoting with `""` inside, LF or CRLF line ends) of a
/// CSV file, blank lines skipped. Bytes are kept as they are: whether they are UTF-8
/// is judged per field, so one bad row does not fail the file.
struct CsvRecords<'a> {
    bytes: &'a [u8],
    at: usize,
    /// 1-based line of `at`.
    line: usize,
}

impl<'a> CsvRecords<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        CsvRecords {
            bytes,
            at: 0,
            line: 1,
        }
    }

    /// The next record; `Err` when a quoted field never ends (every later row would
    /// be swallowed into it, so rows can no longer be told apart).
    fn next_record(&mut self) -> Option<Result<Record, String>> {
        let b = self.bytes;
        loop {
            match (b.get(self.at), b.get(self.at + 1)) {
                (None, _) => return None,
                (Some(b'\n'), _) => self.at += 1,
                (Some(b'\r'), Some(b'\n')) => self.at += 2,
                _ => break,
            }
            self.line += 1;
        }
        let line = self.line;
        let mut fields = Vec::new();
        let mut bad_quote = None;
        loop {
            let mut field = Vec::new();
            if b.get(self.at) == Some(&b'"') {
                let opened = self.line;
                self.at += 1;
                loop {
                    match (b.get(self.at), b.get(self.at + 1)) {
                        (None, _) => {
                            return Some(Err(format!(
                                "a quoted field opened on line {opened} is never closed"
                            )));
                        }
                        (Some(b'"'), Some(b'"')) => {
                            field.push(b'"');
                            self.at += 2;
                        }
                        (Some(b'"'), _) => {
                            self.at += 1;
                            break;
                        }
                        (Some(&c), _) => {
                            if c == b'\n' {
                                self.line += 1;
                            }
                            field.push(c);
                            self.at += 1;
                        }
                    }
                }
                // After the closing quote only a separator or the end of the line
                // may follow; anything else is kept, and the row is refused.
                while let Some(&c) = b.get(self.at) {
                    if c == b',' || c == b'\n' || (c == b'\r' && b.get(self.at + 1) == Some(&b'\n'))
                    {
                        break;
                    }
                    bad_quote.get_or_insert(fields.len());
                    field.push(c);
                    self.at += 1;
                }
            } else {
                let rest = &b[self.at..];
                let end = rest
                    .iter()
                    .position(|&c| c == b',' || c == b'\n')
                    .unwrap_or(rest.len());
                field.extend_from_slice(&rest[..end]);
                self.at += end;
                if field.last() == Some(&b'\r') && b.get(self.at) != Some(&b',') {
                    field.pop();
                }
            }
            fields.push(field);
            match b.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'\r') => {
                    self.at += 2;
                    self.line += 1;
                    break;
                }
                Some(b'\n') => {
                    self.at += 1;
                    self.line += 1;
                    break;
                }
                _ => break,
            }
        }
        Some(Ok(Record {
            fields,
            line,
            bad_quote,
        }))
    }
}

/// A CSV source (issue 9 item 11): every contract column as text. A row whose field
/// count differs from the header's, with text after a closing quote, or with bytes
/// that are not UTF-8 in a contract column is kept for the quarantine with its
/// problem (its values by position as far as they go). A header naming a column
/// twice, or a quote never closed, fails the file.
fn read_csv(dataset: &Dataset, bytes: &[u8], file: &str) -> Result<Raw, IngestError> {
    let csv_err = |reason: String| IngestError::Csv {
        file: file.to_string(),
        reason,
    };
    let mut records = CsvRecords::new(bytes);
    let header: Vec<String> = match records.next_record() {
        None => Vec::new(),
        Some(Err(reason)) => return Err(csv_err(reason)),
        Some(Ok(r)) => r
            .fields
            .into_iter()
            .map(|f| {
                String::from_utf8(f)
                    .map_err(|_| csv_err("the header row is not valid UTF-8".to_string()))
            })
            .collect::<Result<_, _>>()?,
    };
    for (i, name) in header.iter().enumerate() {
        if header[..i].contains(name) {
            return Err(IngestError::DuplicateColumn {
                file: file.to_string(),
                column: name.clone(),
            });
        }
    }
    let positions: Vec<Option<usize>> = dataset
        .columns
        .iter()
        .map(|c| header.iter().position(|h| h == c.name))
        .collect();
    let missing: Vec<&str> = dataset
        .columns
        .iter()
        .zip(&positions)
        .filter(|(_, p)| p.is_none())
        .map(|(c, _)| c.name)
        .collect();
    if !missing.is_empty() {
        return Err(IngestError::MissingColumn {
            file: file.to_string(),
            column: missing.join(", "),
        });
    }

    let mut values: Vec<Vec<Option<String>>> = vec![Vec::new(); dataset.columns.len()];
    let mut problems = Vec::new();
    let mut row = 0usize;
    while let Some(record) = records.next_record() {
        let record = record.map_err(csv_err)?;
        if record.fields.len() != header.len() {
            problems.push((
                row,
                String::new(),
                format!(
                    "{} fields where the header has {} (line {})",
                    record.fields.len(),
                    header.len(),
                    record.line
                ),
            ));
        }
        if let Some(f) = record.bad_quote {
            let column = header.get(f).cloned().unwrap_or_default();
            problems.push((
                row,
                column,
                format!(
                    "text after the closing quote of a field (line {})",
                    record.line
                ),
            ));
        }
        for ((c, pos), out) in dataset
            .columns
            .iter()
            .zip(&positions)
            .zip(values.iter_mut())
        {
            let field = pos.and_then(|p| record.fields.get(p));
            out.push(field.map(|f| match std::str::from_utf8(f) {
                Ok(s) => s.to_string(),
                Err(e) => {
                    let at = e.valid_up_to();
                    problems.push((
                        row,
                        c.name.to_string(),
                        format!(
                            "not valid UTF-8 (byte 0x{:02X} at byte {} of the value)",
                            f.get(at).copied().unwrap_or_default(),
                            at + 1
                        ),
                    ));
                    String::from_utf8_lossy(f).into_owned()
                }
            }));
        }
        row += 1;
    }
    let cols = dataset
        .columns
        .iter()
        .zip(values)
        .map(|(c, v)| StringChunked::from_iter_options(c.name.into(), v.into_iter()).into_column())
        .collect();
    let frame = DataFrame::new(row, cols).map_err(|source| IngestError::Read {
        file: file.to_string(),
        source,
    })?;
    Ok(Raw { frame, problems })
}

/// The window of plausible dates (issue 9 item 9), in days since 1970-01-01, both
/// ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    earliest: i32,
    latest: i32,
}

/// 719_163 = days from 0001-01-01 (CE day 1) to 1970-01-01.
const CE_TO_EPOCH: i32 = 719_163;

fn epoch_days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - CE_TO_EPOCH
}

fn show_days(days: i64) -> String {
    i32::try_from(days)
        .ok()
        .and_then(|d| d.checked_add(CE_TO_EPOCH))
        .and_then(NaiveDate::from_num_days_from_ce_opt)
        .map_or_else(|| format!("day {days} from 1970-01-01"), |d| d.to_string())
}

impl Rules {
    /// The window of `opts` for an ingest on `today`: `earliest_date ..= today +
    /// max_months_ahead` calendar months.
    pub fn new(opts: &IngestConfig, today: NaiveDate) -> Rules {
        let latest = today
            .checked_add_months(chrono::Months::new(opts.max_months_ahead))
            .unwrap_or(NaiveDate::MAX);
        Rules {
            earliest: epoch_days(opts.earliest_date),
            latest: epoch_days(latest),
        }
    }

    /// Why `days` (since 1970-01-01) is not a plausible date, if it is not.
    fn date_problem(&self, days: i64, shown: &str) -> Option<String> {
        (days < i64::from(self.earliest) || days > i64::from(self.latest)).then(|| {
            format!(
                "outside the accepted date window {}..={} (ingest.earliest_date, ingest.max_months_ahead): {shown}",
                show_days(i64::from(self.earliest)),
                show_days(i64::from(self.latest)),
            )
        })
    }
}

const MS_PER_DAY: i64 = 86_400_000;

/// One problem with one value (or, with an empty `column`, with the whole row).
struct Problem {
    row: IdxSize,
    column: String,
    reason: String,
}

/// Collects problems and warnings and marks bad and collapsed rows.
struct Problems {
    bad: Vec<bool>,
    /// Rows refused while reading (field count, UTF-8): their values are not judged
    /// one by one, the reading problem says it all.
    unreadable: Vec<bool>,
    /// Identical repeats of a keyed row, dropped.
    collapsed: Vec<bool>,
    list: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Problems {
    fn new(n: usize) -> Self {
        Problems {
            bad: vec![false; n],
            unreadable: vec![false; n],
            collapsed: vec![false; n],
            list: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn push(&mut self, row: usize, column: &str, reason: String) {
        self.bad[row] = true;
        self.list.push(Problem {
            row: row as IdxSize,
            column: column.to_string(),
            reason,
        });
    }

    /// A problem with one value of a readable row.
    fn add(&mut self, row: usize, column: &str, reason: String) {
        if !self.unreadable[row] {
            self.push(row, column, reason);
        }
    }

    /// A row that could not be read as it should.
    fn unreadable(&mut self, row: usize, column: &str, reason: String) {
        self.unreadable[row] = true;
        self.push(row, column, reason);
    }

    fn warn(&mut self, row: usize, column: &str, reason: String) {
        self.warnings.push(Problem {
            row: row as IdxSize,
            column: column.to_string(),
            reason,
        });
    }
}

const MISSING: &str = "missing value";

/// The check beyond the type, for text values: `Err` quarantines the row, `Ok(Some)`
/// is a warning (the row is kept).
fn check_str(check: Check, v: &str) -> Result<Option<String>, String> {
    match check {
        Check::OneOf(allowed) if !allowed.contains(&v) => {
            Err(format!("not one of {}: {v:?}", allowed.join("|")))
        }
        Check::Currency if ISO_4217.binary_search(&v).is_err() => {
            Err(format!("unknown ISO 4217 currency: {v:?}"))
        }
        Check::Email => Ok(check_email(v)),
        _ => Ok(None),
    }
}

/// What every text value must be: free of NUL (PostgreSQL cannot store it, so one
/// would fail the whole close there). An id (a `*_id` column) must also be free of
/// control characters and of surrounding whitespace: `OP-0001 ` would be another
/// operator than `OP-0001`, one that a duplicate-key check cannot see.
fn check_text(column: &str, v: &str) -> Option<String> {
    if v.contains('\0') {
        Some(format!("contains a NUL character: {v:?}"))
    } else if column.ends_with("_id") && v.chars().any(char::is_control) {
        Some(format!("an id with a control character: {v:?}"))
    } else if column.ends_with("_id") && v.trim() != v {
        Some(format!("an id with leading or trailing whitespace: {v:?}"))
    } else {
        None
    }
}

/// A service period that ends before it starts: the line is still paid (collections
/// follow `paid_on`), but R6.1 recognizes nothing of it in MRR, which would otherwise
/// go unnoticed. A warning, not a quarantine.
fn check_service_period(dataset: &Dataset, typed: &[Column], p: &mut Problems) -> PolarsResult<()> {
    let position = |name: &str| dataset.columns.iter().position(|c| c.name == name);
    let (Some(s), Some(e)) = (position("service_start"), position("service_end")) else {
        return Ok(());
    };
    let start = typed[s].as_materialized_series().date()?.physical().clone();
    let end = typed[e].as_materialized_series().date()?.physical().clone();
    for (i, (a, b)) in start.iter().zip(end.iter()).enumerate() {
        if let (Some(a), Some(b)) = (a, b)
            && b < a
        {
            p.warn(
                i,
                "service_end",
                format!(
                    "service_end {} is before service_start {}: the line is paid, but counts nothing toward MRR (R6.1)",
                    show_days(i64::from(b)),
                    show_days(i64::from(a))
                ),
            );
        }
    }
    Ok(())
}

/// Issue 9 item 5: why `v` is not one bare email address (`name@domain`), if it is
/// not. A list (`a@x, b@y`), a display name (`Ann <a@x>`) or a line break would let
/// one row address several mailboxes or inject a header; the display-name form is
/// refused too, because the contract's `email` is an address (`name` holds the name).
fn check_email(v: &str) -> Option<String> {
    let reason = if v.chars().any(char::is_control) {
        "contains a line break or control character"
    } else if v.contains([',', ';']) {
        "a list of addresses, not one"
    } else if v.contains(['<', '>']) {
        "a display-name form (Name <address>), not a bare address"
    } else if v.chars().any(char::is_whitespace) {
        "contains whitespace"
    } else if v.parse::<lettre::Address>().is_err() {
        "not an email address"
    } else {
        return None;
    };
    Some(format!(
        "{reason}: {v:?}; the row is kept (its money is computed) but no mail can go to it"
    ))
}

/// The check beyond the type, for integers.
fn check_int(check: Check, v: i64) -> Option<String> {
    match check {
        Check::Range(lo, hi) if v < lo || v > hi => Some(match (lo, hi) {
            (lo, i64::MAX) => format!("out of range {lo}..: {v}"),
            (i64::MIN, hi) => format!("out of range ..={hi}: {v}"),
            (lo, hi) => format!("out of range {lo}..={hi}: {v}"),
        }),
        Check::Cents { nonnegative: true } if v < 0 => Some(format!("out of range 0..: {v}")),
        // Issue 9 item 8: beyond the sanity bound an `amount * bp` could overflow.
        Check::Cents { .. } if v.unsigned_abs() > MAX_ABS_CENTS.unsigned_abs() => Some(format!(
            "beyond the sanity bound of {MAX_ABS_CENTS} cents in magnitude (contract::MAX_ABS_CENTS): {v}"
        )),
        _ => None,
    }
}

/// `YYYY-MM-DD`, strictly (no other widths or separators), as days since 1970-01-01.
fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let date =
        chrono::NaiveDate::from_ymd_opt(num(&b[0..4])? as i32, num(&b[5..7])?, num(&b[8..10])?)?;
    Some(epoch_days(date))
}

/// RFC 3339 in UTC (`Z` or `+00:00`) as epoch milliseconds; `Err` carries the reason.
fn parse_ts(s: &str) -> Result<i64, String> {
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) if t.offset().local_minus_utc() == 0 => Ok(t.timestamp_millis()),
        Ok(t) => Err(format!("not in UTC (offset {}): {s:?}", t.offset())),
        Err(_) => Err(format!("not an RFC 3339 timestamp: {s:?}")),
    }
}

/// Blank counts as missing: CSV has no null, and an all-space field is no value.
fn blank(v: &str) -> bool {
    v.trim().is_empty()
}

/// Parse one text column into its contract type, recording problems and warnings.
/// Problem cells become null (their rows are dropped anyway).
fn parse_text<'a>(
    col: &contract::Column,
    ca: &'a StringChunked,
    rules: &Rules,
    p: &mut Problems,
) -> Series {
    let name: PlSmallStr = col.name.into();
    // (row, reason), added to `p` at the end (the iterators below borrow this).
    let mut problems: Vec<(usize, String)> = Vec::new();
    let mut warnings: Vec<(usize, String)> = Vec::new();
    // Missing values first, the same for every type: `None` when blank.
    let present = |i: usize, v: Option<&'a str>, problems: &mut Vec<(usize, String)>| match v {
        Some(v) if !blank(v) => Some(v),
        _ => {
            if !col.nullable {
                problems.push((i, MISSING.to_string()));
            }
            None
        }
    };
    let out = match col.ty {
        ColType::Str => StringChunked::from_iter_options(
            name,
            ca.iter().enumerate().map(|(i, v)| {
                let v = present(i, v, &mut problems)?;
                match check_text(col.name, v).map_or_else(|| check_str(col.check, v), Err) {
                    Err(reason) => {
                        problems.push((i, reason));
                        None
                    }
                    Ok(warning) => {
                        if let Some(w) = warning {
                            warnings.push((i, w));
                        }
                        Some(v)
                    }
                }
            }),
        )
        .into_series(),
        ColType::Int => Int64Chunked::from_iter_options(
            name,
            ca.iter().enumerate().map(|(i, v)| {
                let v = present(i, v, &mut problems)?;
                let Ok(n) = v.parse::<i64>() else {
                    problems.push((i, format!("not an integer: {v:?}")));
                    return None;
                };
                match check_int(col.check, n) {
                    Some(reason) => {
                        problems.push((i, reason));
                        None
                    }
                    None => Some(n),
                }
            }),
        )
        .into_series(),
        ColType::Date => Int32Chunked::from_iter_options(
            name,
            ca.iter().enumerate().map(|(i, v)| {
                let v = present(i, v, &mut problems)?;
                let Some(d) = parse_date(v) else {
                    problems.push((i, format!("not a date: {v:?}")));
                    return None;
                };
                match rules.date_problem(i64::from(d), &format!("{v:?}")) {
                    Some(reason) => {
                        problems.push((i, reason));
                        None
                    }
                    None => Some(d),
                }
            }),
        )
        .into_date()
        .into_series(),
        ColType::Ts => Int64Chunked::from_iter_options(
            name,
            ca.iter().enumerate().map(|(i, v)| {
                let v = present(i, v, &mut problems)?;
                let ms = parse_ts(v)
                    .map_err(|reason| problems.push((i, reason)))
                    .ok()?;
                match rules.date_problem(ms.div_euclid(MS_PER_DAY), &format!("{v:?}")) {
                    Some(reason) => {
                        problems.push((i, reason));
                        None
                    }
                    None => Some(ms),
                }
            }),
        )
        .into_datetime(TimeUnit::Milliseconds, None)
        .into_series(),
        ColType::Bool => BooleanChunked::from_iter_options(
            name,
            ca.iter().enumerate().map(|(i, v)| {
                let v = present(i, v, &mut problems)?;
                match v {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => {
                        problems.push((i, format!("not a bool (true|false): {v:?}")));
                        None
                    }
                }
            }),
        )
        .into_series(),
    };
    for (i, reason) in problems {
        p.add(i, col.name, reason);
    }
    for (i, reason) in warnings {
        p.warn(i, col.name, reason);
    }
    out
}

/// Nulls of an already-typed column are missing values when the column is required.
fn check_nulls(col: &contract::Column, s: &Series, p: &mut Problems) {
    if !col.nullable && s.null_count() > 0 {
        for (i, valid) in s.is_not_null().iter().enumerate() {
            if valid == Some(false) {
                p.add(i, col.name, MISSING.to_string());
            }
        }
    }
}

/// Any column as text, for parsing and for the quarantine's original values: binary
/// as UTF-8 (invalid bytes → null, or replaced when `lossy`), everything else cast.
fn as_text(s: &Series, lossy: bool) -> PolarsResult<Series> {
    match s.dtype() {
        DataType::String => Ok(s.clone()),
        DataType::Binary => Ok(StringChunked::from_iter_options(
            s.name().clone(),
            s.binary()?.iter().map(|v| {
                v.and_then(|b| match std::str::from_utf8(b) {
                    Ok(t) => Some(t.to_string()),
                    Err(_) if lossy => Some(String::from_utf8_lossy(b).into_owned()),
                    Err(_) => None,
                })
            }),
        )
        .into_series()),
        _ => s.cast(&DataType::String),
    }
}

/// One contract column of a raw frame, typed; `Err` only for Polars failures.
fn type_column(
    col: &contract::Column,
    s: &Series,
    rules: &Rules,
    p: &mut Problems,
) -> PolarsResult<Series> {
    match (col.ty, s.dtype()) {
        // Typed sources (Parquet): take the values, check nulls and allowed values.
        (ColType::Int, DataType::Int64) => {
            check_nulls(col, s, p);
            if col.check != Check::None {
                for (i, v) in s.i64()?.iter().enumerate() {
                    if let Some(reason) = v.and_then(|v| check_int(col.check, v)) {
                        p.add(i, col.name, reason);
                    }
                }
            }
            Ok(s.clone())
        }
        (ColType::Date, DataType::Date) => {
            check_nulls(col, s, p);
            for (i, d) in s.date()?.physical().iter().enumerate() {
                if let Some(reason) =
                    d.and_then(|d| rules.date_problem(i64::from(d), &show_days(i64::from(d))))
                {
                    p.add(i, col.name, reason);
                }
            }
            Ok(s.clone())
        }
        (ColType::Bool, DataType::Boolean) => {
            check_nulls(col, s, p);
            Ok(s.clone())
        }
        (ColType::Ts, DataType::Datetime(tu, _)) => {
            check_nulls(col, s, p);
            // The physical value is UTC whatever the time zone; only the unit differs.
            let tu = *tu;
            let ms = s.datetime()?.physical().apply_values(|v| match tu {
                TimeUnit::Nanoseconds => v.div_euclid(1_000_000),
                TimeUnit::Microseconds => v.div_euclid(1_000),
                TimeUnit::Milliseconds => v,
            });
            for (i, v) in ms.iter().enumerate() {
                let days = v.map(|v| v.div_euclid(MS_PER_DAY));
                if let Some(reason) =
                    days.and_then(|d| rules.date_problem(d, &format!("{} (UTC)", show_days(d))))
                {
                    p.add(i, col.name, reason);
                }
            }
            Ok(ms.into_datetime(TimeUnit::Milliseconds, None).into_series())
        }
        // Everything else through text, so that one parser decides what is valid.
        (_, DataType::String) => Ok(parse_text(col, s.str()?, rules, p)),
        (_, dtype) => {
            let text = as_text(s, false)?;
            // Issue 9 item 17: a value the conversion could not render must not
            // become a silent null (an empty optional value).
            if text.null_count() != s.null_count() {
                for (i, (orig, got)) in s
                    .is_not_null()
                    .iter()
                    .zip(text.is_null().iter())
                    .enumerate()
                {
                    if orig == Some(true) && got == Some(true) {
                        p.unreadable(
                            i,
                            col.name,
                            format!("a {dtype} value that cannot be read as text"),
                        );
                    }
                }
            }
            Ok(parse_text(col, text.str()?, rules, p))
        }
    }
}

/// What [`validate`] makes of one dataset.
pub struct Validated {
    /// The rows kept, typed exactly as the contract says.
    pub ok: DataFrame,
    /// `file`, `row`, `column`, `reason`, then the row's original values as text: one
    /// line per problem of a refused row.
    pub quarantine: DataFrame,
    /// The same columns for rows kept but reported (collapsed repeats, bad emails).
    pub warnings: DataFrame,
    /// Refused rows (a row with several problems counts once).
    pub rows_quarantined: usize,
    /// Identical repeats dropped.
    pub rows_collapsed: usize,
}

/// The key column(s) as the quarantine's `column` names them.
fn key_label(dataset: &Dataset) -> String {
    dataset.key.join(",")
}

/// Issue 9 item 1: one row per key. Copies of a key whose contract columns are all
/// equal collapse to the first readable one (a warning each); copies that differ are
/// all quarantined, each naming the others, so no copy wins by its place in the file.
/// Rows whose key is missing have their own problem and take no part.
fn check_keys(
    dataset: &Dataset,
    raw: &DataFrame,
    typed: &[Column],
    p: &mut Problems,
) -> PolarsResult<()> {
    if dataset.key.is_empty() {
        return Ok(());
    }
    let position = |name: &str| dataset.columns.iter().position(|c| c.name == name);
    let mut keys = Vec::with_capacity(dataset.key.len());
    for k in dataset.key {
        let Some(j) = position(k) else {
            return Err(PolarsError::ColumnNotFound(
                format!("key column {k}").into(),
            ));
        };
        keys.push(typed[j].as_materialized_series().str()?.clone());
    }
    let mut groups: HashMap<Vec<&str>, Vec<usize>> = HashMap::new();
    for i in 0..raw.height() {
        let key: Option<Vec<&str>> = keys.iter().map(|c| c.get(i)).collect();
        if let Some(key) = key {
            groups.entry(key).or_default().push(i);
        }
    }
    let mut repeated: Vec<(Vec<&str>, Vec<usize>)> = groups
        .into_iter()
        .filter(|(_, rows)| rows.len() > 1)
        .collect();
    if repeated.is_empty() {
        return Ok(());
    }
    repeated.sort_by_key(|(_, rows)| rows[0]);
    // Compared as the source wrote them (blank = missing), so two copies that differ
    // in any way, even in a way the parser would forgive, are a conflict.
    let mut texts = Vec::with_capacity(dataset.columns.len());
    for c in dataset.columns {
        texts.push(as_text(raw.column(c.name)?.as_materialized_series(), true)?);
    }
    let texts: Vec<&StringChunked> = texts.iter().map(|s| s.str()).collect::<PolarsResult<_>>()?;
    fn value(c: &StringChunked, i: usize) -> Option<&str> {
        c.get(i).filter(|v| !blank(v))
    }
    let label = key_label(dataset);
    for (key, rows) in repeated {
        let shown: Vec<String> = dataset
            .key
            .iter()
            .zip(&key)
            .map(|(k, v)| format!("{k} {v:?}"))
            .collect();
        let shown = shown.join(", ");
        let differ: Vec<&str> = dataset
            .columns
            .iter()
            .zip(&texts)
            .filter(|(_, t)| rows.iter().any(|&r| value(t, r) != value(t, rows[0])))
            .map(|(c, _)| c.name)
            .collect();
        if differ.is_empty() {
            let Some(&kept) = rows.iter().find(|&&r| !p.bad[r]) else {
                continue;
            };
            let collapse: Vec<usize> = rows
                .iter()
                .copied()
                .filter(|&r| r != kept && !p.bad[r])
                .collect();
            for r in collapse {
                p.collapsed[r] = true;
                p.warn(
                    r,
                    &label,
                    format!(
                        "duplicate key {shown}: an identical copy of row {}, collapsed into it",
                        kept + 1
                    ),
                );
            }
        } else {
            for &r in &rows {
                let others: Vec<String> = rows
                    .iter()
                    .filter(|&&o| o != r)
                    .map(|o| (o + 1).to_string())
                    .collect();
                p.push(
                    r,
                    &label,
                    format!(
                        "duplicate key {shown}: also in row {} with different {}; every copy is quarantined",
                        others.join(", "),
                        differ.join(", ")
                    ),
                );
            }
        }
    }
    Ok(())
}

/// `file`, `row`, `column`, `reason` and the rows' original values, one line per
/// entry of `list` (sorted by row, then whole-row problems first, then column order).
fn report_frame(
    dataset: &Dataset,
    raw: &DataFrame,
    file: &str,
    mut list: Vec<Problem>,
) -> PolarsResult<DataFrame> {
    let order = |c: &str| match c.split(',').next() {
        Some("") | None => 0,
        Some(first) => dataset
            .columns
            .iter()
            .position(|x| x.name == first)
            .map_or(usize::MAX, |p| p + 1),
    };
    list.sort_by_key(|x| (x.row, order(&x.column)));
    let rows = IdxCa::from_vec("row".into(), list.iter().map(|x| x.row).collect());
    let mut cols = vec![
        Column::new("file".into(), vec![file; list.len()]),
        Column::new(
            "row".into(),
            list.iter().map(|x| x.row as i64 + 1).collect::<Vec<i64>>(),
        ),
        Column::new(
            "column".into(),
            list.iter()
                .map(|x| x.column.as_str())
                .collect::<Vec<&str>>(),
        ),
        Column::new(
            "reason".into(),
            list.iter()
                .map(|x| x.reason.as_str())
                .collect::<Vec<&str>>(),
        ),
    ];
    for col in dataset.columns {
        let s = raw.column(col.name)?.as_materialized_series();
        cols.push(as_text(&s.take(&rows)?, true)?.into_column());
    }
    DataFrame::new(list.len(), cols)
}

/// Split a raw frame (text columns, or Parquet's own types, plus the problems found
/// while reading) into the valid rows, typed exactly as the contract says, a
/// quarantine frame and a warnings frame (see [`Validated`]), applying the contract's
/// checks, the date window of `rules` and the dataset's key. Columns beyond the
/// contract are dropped.
pub fn validate(
    dataset: &Dataset,
    raw: impl Into<Raw>,
    file: &str,
    rules: &Rules,
) -> Result<Validated, IngestError> {
    let Raw {
        frame: raw,
        problems: read_problems,
    } = raw.into();
    let missing: Vec<&str> = dataset
        .columns
        .iter()
        .map(|c| c.name)
        .filter(|n| raw.column(n).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(IngestError::MissingColumn {
            file: file.to_string(),
            column: missing.join(", "),
        });
    }
    let n = raw.height();
    if IdxSize::try_from(n).is_err() {
        return Err(IngestError::TooManyRows {
            file: file.to_string(),
            rows: n,
        });
    }
    let verr = |source| IngestError::Validate {
        file: file.to_string(),
        source,
    };

    let mut p = Problems::new(n);
    for (row, column, reason) in read_problems {
        if row < n {
            p.unreadable(row, &column, reason);
        }
    }
    let mut typed = Vec::with_capacity(dataset.columns.len());
    for col in dataset.columns {
        let s = raw.column(col.name).map_err(verr)?.as_materialized_series();
        typed.push(
            type_column(col, s, rules, &mut p)
                .map_err(verr)?
                .into_column(),
        );
    }
    check_keys(dataset, &raw, &typed, &mut p).map_err(verr)?;
    check_service_period(dataset, &typed, &mut p).map_err(verr)?;
    let all = DataFrame::new(n, typed).map_err(verr)?;

    let rows_quarantined = p.bad.iter().filter(|b| **b).count();
    let rows_collapsed = p.collapsed.iter().filter(|c| **c).count();
    let ok = if rows_quarantined + rows_collapsed == 0 {
        all
    } else {
        let keep: BooleanChunked = p
            .bad
            .iter()
            .zip(&p.collapsed)
            .map(|(b, c)| !b && !c)
            .collect();
        all.filter(&keep).map_err(verr)?
    };
    // A refused row's warnings are moot: its quarantine lines say why it is out; a
    // collapsed copy's other warnings are its kept twin's.
    let bad = std::mem::take(&mut p.bad);
    let label = key_label(dataset);
    let warnings: Vec<Problem> = std::mem::take(&mut p.warnings)
        .into_iter()
        .filter(|w| {
            let r = w.row as usize;
            !bad[r] && (!p.collapsed[r] || w.column == label)
        })
        .collect();
    let quarantine =
        report_frame(dataset, &raw, file, std::mem::take(&mut p.list)).map_err(verr)?;
    let warnings = report_frame(dataset, &raw, file, warnings).map_err(verr)?;
    Ok(Validated {
        ok,
        quarantine,
        warnings,
        rows_quarantined,
        rows_collapsed,
    })
}

#[cfg(test)]
mod tests;
