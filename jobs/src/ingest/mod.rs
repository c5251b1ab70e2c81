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
mod tests {
    use super::*;
    use crate::store::LocalDir;
    use chrono::TimeZone;
    use opnet_pipelines::contract::ALL;
    use std::path::Path;
    use std::sync::Arc;

    const INVOICES_CSV: &str = "\
invoice_id,customer_id,currency,issued_on,status,paid_on,total_cents,extra
inv-1,cu-1,USD,2025-08-01,paid,2025-08-03,1000,x
inv-2,cu-2,US$,2025-08-01,paid,,500,x
inv-3,cu-3,EUR,2025-13-01,pending,,abc,x
inv-4,,EUR,2025-08-02,open,,-7,x
inv-5,cu-5,GBP,2025-08-02,void,,0,x
";

    fn write(dir: &Path, rel: &str, text: &[u8]) -> anyhow::Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, text)?;
        Ok(())
    }

    /// The date window of an ingest on 2025-09-01 with the default settings.
    fn rules() -> Rules {
        Rules::new(
            &IngestConfig::default(),
            NaiveDate::from_ymd_opt(2025, 9, 1).unwrap_or_default(),
        )
    }

    fn csv(text: &str) -> anyhow::Result<Raw> {
        Ok(read_raw(
            &contract::INVOICES,
            Format::Csv,
            text.as_bytes(),
            "f.csv",
        )?)
    }

    /// A full, valid source folder (one row per dataset, every column filled).
    fn sample_rows() -> Vec<(&'static Dataset, Vec<(&'static str, &'static str)>)> {
        let v = |d: &'static Dataset, vals: &[&'static str]| {
            (
                d,
                d.columns
                    .iter()
                    .map(|c| c.name)
                    .zip(vals.iter().copied())
                    .collect::<Vec<_>>(),
            )
        };
        vec![
            v(
                &contract::INVOICES,
                &[
                    "inv-1",
                    "cu-1",
                    "USD",
                    "2025-08-01",
                    "paid",
                    "2025-08-03",
                    "1000",
                ],
            ),
            v(
                &contract::INVOICE_LINES,
                &["inv-1", "1", "software", "1000", "2025-08-01", "2025-08-31"],
            ),
            v(
                &contract::REFUNDS,
                &["rf-1", "inv-1", "1", "2025-08-10", "100"],
            ),
            v(
                &contract::OPERATORS,
                &[
                    "op-1",
                    "Ann",
                    "a@x.io",
                    "Austin",
                    "dental;legal",
                    "2024-01-01",
                    "",
                ],
            ),
            v(
                &contract::TERRITORIES,
                &["t-1", "Austin", "USD", "op-1", "2024-06-01"],
            ),
            v(
                &contract::CUSTOMERS,
                &[
                    "cu-1",
                    "op-1",
                    "Acme",
                    "dental",
                    "Austin",
                    "2025-01-01",
                    "2025-02-01",
                    "",
                ],
            ),
            v(
                &contract::LEADS,
                &[
                    "ld-1",
                    "web",
                    "dental",
                    "Austin",
                    "2025-08-01T10:00:00Z",
                    "op-1",
                    "2025-08-01T12:30:00.250+00:00",
                    "",
                ],
            ),
            v(&contract::TRAINING, &["op-1", "m-1", "true", "2025-01-05"]),
            v(
                &contract::SURVEY_RESPONSES,
                &["sr-1", "cu-1", "op-1", "2025-08-20", "9", ""],
            ),
        ]
    }

    fn sample_csv(dir: &Path) -> anyhow::Result<()> {
        for (d, row) in sample_rows() {
            let header: Vec<&str> = row.iter().map(|(k, _)| *k).collect();
            let vals: Vec<&str> = row.iter().map(|(_, v)| *v).collect();
            write(
                dir,
                &format!("{}.csv", d.path()),
                format!("{}\n{}\n", header.join(","), vals.join(",")).as_bytes(),
            )?;
        }
        Ok(())
    }

    fn sample_jsonl(dir: &Path) -> anyhow::Result<()> {
        for (d, row) in sample_rows() {
            let fields: Vec<String> = row
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| match d.column(k).map(|c| c.ty) {
                    // Numbers and bools as JSON numbers/bools, the rest as strings.
                    Some(ColType::Int | ColType::Bool) => format!("\"{k}\":{v}"),
                    _ => format!("\"{k}\":\"{v}\""),
                })
                .collect();
            write(
                dir,
                &format!("{}.jsonl", d.path()),
                format!("{{{}}}\n", fields.join(",")).as_bytes(),
            )?;
        }
        Ok(())
    }

    /// Parquet with the contract's own types (from the CSV sample).
    fn sample_parquet(dir: &Path) -> anyhow::Result<()> {
        for (d, row) in sample_rows() {
            let header: Vec<&str> = row.iter().map(|(k, _)| *k).collect();
            let vals: Vec<&str> = row.iter().map(|(_, v)| *v).collect();
            let text = format!("{}\n{}\n", header.join(","), vals.join(","));
            let raw = read_raw(d, Format::Csv, text.as_bytes(), "x")?;
            let v = validate(d, raw, "x", &rules())?;
            let (mut typed, q) = (v.ok, v.quarantine);
            assert_eq!(q.height(), 0, "{q}");
            let mut buf = Vec::new();
            ParquetWriter::new(&mut buf).finish(&mut typed)?;
            write(dir, &format!("{}.parquet", d.path()), &buf)?;
        }
        Ok(())
    }

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 9, 1, h, m, s)
            .single()
            .unwrap_or_default()
    }

    async fn collected(lake: &Lake, snapshot: &str) -> anyhow::Result<Vec<DataFrame>> {
        let inputs = lake.read_snapshot(snapshot).await?;
        Ok(vec![
            inputs.invoices.collect()?,
            inputs.invoice_lines.collect()?,
            inputs.refunds.collect()?,
            inputs.operators.collect()?,
            inputs.territories.collect()?,
            inputs.customers.collect()?,
            inputs.leads.collect()?,
            inputs.training.collect()?,
            inputs.survey_responses.collect()?,
        ])
    }

    fn quarantine_lines(q: &DataFrame) -> anyhow::Result<Vec<(i64, String, String)>> {
        let rows = q.column("row")?.i64()?.clone();
        let cols = q.column("column")?.str()?.clone();
        let reasons = q.column("reason")?.str()?.clone();
        Ok((0..q.height())
            .map(|i| {
                (
                    rows.get(i).unwrap_or_default(),
                    cols.get(i).unwrap_or_default().to_string(),
                    reasons.get(i).unwrap_or_default().to_string(),
                )
            })
            .collect())
    }

    #[test]
    fn quarantine_reasons_for_text_columns() -> anyhow::Result<()> {
        let v = validate(
            &contract::INVOICES,
            csv(INVOICES_CSV)?,
            "/src/billing/invoices.csv",
            &rules(),
        )?;
        let (ok, q) = (v.ok, v.quarantine);
        // inv-1 and inv-5 are good, typed as the contract says, extras dropped.
        assert_eq!(ok.height(), 2);
        assert_eq!(ok.width(), contract::INVOICES.columns.len());
        for c in contract::INVOICES.columns {
            assert_eq!(ok.column(c.name)?.dtype(), &c.ty.dtype(), "{}", c.name);
        }
        assert_eq!(ok.column("invoice_id")?.str()?.get(1), Some("inv-5"));
        assert_eq!(ok.column("total_cents")?.i64()?.get(0), Some(1000));
        assert_eq!(
            ok.column("paid_on")?.null_count(),
            1,
            "empty optional date is null"
        );
        assert_eq!(
            ok.column("issued_on")?.date()?.physical().get(0),
            Some(parse_date("2025-08-01").unwrap_or_default())
        );

        let lines = quarantine_lines(&q)?;
        let expect = [
            (2, "currency", "unknown ISO 4217 currency: \"US$\""),
            (3, "issued_on", "not a date: \"2025-13-01\""),
            (
                3,
                "status",
                "not one of open|paid|void|uncollectible: \"pending\"",
            ),
            (3, "total_cents", "not an integer: \"abc\""),
            (4, "customer_id", "missing value"),
        ];
        let got: Vec<(i64, &str, &str)> = lines
            .iter()
            .map(|(r, c, m)| (*r, c.as_str(), m.as_str()))
            .collect();
        assert_eq!(got, expect);
        assert!(
            q.column("file")?
                .str()?
                .iter()
                .all(|f| f == Some("/src/billing/invoices.csv"))
        );
        // Original values follow, as text.
        assert_eq!(q.column("issued_on")?.str()?.get(1), Some("2025-13-01"));
        assert_eq!(q.column("invoice_id")?.str()?.get(4), Some("inv-4"));
        let names: Vec<&str> = q.get_column_names().iter().map(|s| s.as_str()).collect();
        assert_eq!(
            &names[..5],
            ["file", "row", "column", "reason", "invoice_id"]
        );
        Ok(())
    }

    #[test]
    fn quarantine_reasons_for_ts_bool_range() -> anyhow::Result<()> {
        let leads = "lead_id,source,vertical,metro,created_at,assigned_operator_id,first_contact_at,converted_customer_id\n\
            l1,web,dental,Austin,2025-08-01T10:00:00Z,,2025-08-01T11:00:00+00:00,\n\
            l2,web,dental,Austin,2025-08-01 10:00,,,\n\
            l3,web,dental,Austin,2025-08-01T10:00:00+02:00,,,\n";
        let raw = read_raw(&contract::LEADS, Format::Csv, leads.as_bytes(), "leads.csv")?;
        let v = validate(&contract::LEADS, raw, "leads.csv", &rules())?;
        let (ok, q) = (v.ok, v.quarantine);
        assert_eq!(ok.height(), 1);
        let ts = ok.column("created_at")?;
        assert_eq!(
            ts.dtype(),
            &DataType::Datetime(TimeUnit::Milliseconds, None)
        );
        assert_eq!(
            ts.datetime()?.physical().get(0),
            Utc.with_ymd_and_hms(2025, 8, 1, 10, 0, 0)
                .single()
                .map(|t| t.timestamp_millis())
        );
        assert_eq!(
            ok.column("first_contact_at")?.datetime()?.physical().get(0),
            Some(
                Utc.with_ymd_and_hms(2025, 8, 1, 11, 0, 0)
                    .single()
                    .map(|t| t.timestamp_millis())
                    .unwrap_or_default()
            )
        );
        let lines = quarantine_lines(&q)?;
        assert_eq!(
            lines[0],
            (
                2,
                "created_at".into(),
                "not an RFC 3339 timestamp: \"2025-08-01 10:00\"".into()
            )
        );
        assert_eq!(
            lines[1],
            (
                3,
                "created_at".into(),
                "not in UTC (offset +02:00): \"2025-08-01T10:00:00+02:00\"".into()
            )
        );

        let training = "operator_id,module_id,required,completed_on\nop,m1,true,\nop,m2,yes,\nop,m3,false,2025-01-01\n";
        let raw = read_raw(
            &contract::TRAINING,
            Format::Csv,
            training.as_bytes(),
            "training.csv",
        )?;
        let v = validate(&contract::TRAINING, raw, "training.csv", &rules())?;
        let (ok, q) = (v.ok, v.quarantine);
        assert_eq!(
            ok.column("required")?.bool()?.iter().collect::<Vec<_>>(),
            [Some(true), Some(false)]
        );
        assert_eq!(
            quarantine_lines(&q)?,
            [(
                2,
                "required".into(),
                "not a bool (true|false): \"yes\"".into()
            )]
        );

        let survey = "response_id,customer_id,operator_id,submitted_on,nps_score,csat_score\n\
            r1,c,o,2025-08-01,10,\nr2,c,o,2025-08-01,11,7\nr3,c,o,2025-08-01,,0\n";
        let raw = read_raw(
            &contract::SURVEY_RESPONSES,
            Format::Csv,
            survey.as_bytes(),
            "s.csv",
        )?;
        let v = validate(&contract::SURVEY_RESPONSES, raw, "s.csv", &rules())?;
        let (ok, q) = (v.ok, v.quarantine);
        assert_eq!(ok.height(), 1);
        assert_eq!(
            ok.column("csat_score")?.null_count(),
            1,
            "optional int may be empty"
        );
        assert_eq!(
            quarantine_lines(&q)?,
            [
                (2, "nps_score".into(), "out of range 0..=10: 11".into()),
                (2, "csat_score".into(), "out of range 1..=5: 7".into()),
                (3, "csat_score".into(), "out of range 1..=5: 0".into()),
            ]
        );

        let refunds =
            "refund_id,invoice_id,line_no,refunded_on,amount_cents\nrf,inv,1,2025-08-01,-5\n";
        let raw = read_raw(&contract::REFUNDS, Format::Csv, refunds.as_bytes(), "r.csv")?;
        let v = validate(&contract::REFUNDS, raw, "r.csv", &rules())?;
        let (_, q) = (v.ok, v.quarantine);
        assert_eq!(
            quarantine_lines(&q)?,
            [(1, "amount_cents".into(), "out of range 0..: -5".into())]
        );
        Ok(())
    }

    #[test]
    fn missing_column_names_file_and_column() -> anyhow::Result<()> {
        let text = "invoice_id,customer_id,currency,issued_on,status,paid_on\ninv-1,c,USD,2025-08-01,open,\n";
        let file = "/src/billing/invoices.csv";
        let err = read_raw(&contract::INVOICES, Format::Csv, text.as_bytes(), file)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(err, format!("missing column total_cents in {file}"));
        // The same from a frame (Parquet, SQL) without the column.
        let frame = df!("invoice_id" => ["inv-1"])?;
        let err = validate(&contract::INVOICES, frame, file, &rules())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            format!(
                "missing column customer_id, currency, issued_on, status, paid_on, total_cents in {file}"
            )
        );
        Ok(())
    }

    #[tokio::test]
    async fn missing_file_and_column_fail_ingest() -> anyhow::Result<()> {
        let src = tempfile::tempdir()?;
        let lake_dir = tempfile::tempdir()?;
        let lake = Lake::new(Arc::new(LocalDir::new(lake_dir.path())));
        sample_csv(src.path())?;
        std::fs::remove_file(src.path().join("crm/leads.csv"))?;
        let err = ingest(&LocalDir::new(src.path()), &lake, at(2, 0, 0))
            .await
            .err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            msg,
            format!(
                "missing source file crm/leads.csv (or .jsonl/.ndjson/.parquet) in {}",
                src.path().display()
            )
        );

        // A JSON Lines file without a key on any line misses that column.
        sample_csv(src.path())?;
        std::fs::remove_file(src.path().join("crm/training.csv"))?;
        write(
            src.path(),
            "crm/training.jsonl",
            b"{\"operator_id\":\"op\",\"module_id\":\"m\",\"completed_on\":null}\n",
        )?;
        let msg = ingest(&LocalDir::new(src.path()), &lake, at(2, 0, 0))
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            msg,
            format!(
                "missing column required in {}",
                src.path().join("crm/training.jsonl").display()
            )
        );
        assert_eq!(
            lake.latest_snapshot().await?,
            None,
            "a failed ingest publishes nothing"
        );

        // Two files for one dataset is ambiguous.
        write(
            src.path(),
            "crm/training.csv",
            b"operator_id,module_id,required,completed_on\n",
        )?;
        let err = ingest(&LocalDir::new(src.path()), &lake, at(2, 0, 0))
            .await
            .err();
        assert!(
            matches!(err, Some(IngestError::AmbiguousFile { .. })),
            "{err:?}"
        );
        Ok(())
    }

    // Multi-threaded: collecting a lazy Parquet scan blocks in place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn csv_jsonl_parquet_give_the_same_snapshot() -> anyhow::Result<()> {
        let lake_dir = tempfile::tempdir()?;
        let lake = Lake::new(Arc::new(LocalDir::new(lake_dir.path())));
        let mut snapshots = Vec::new();
        for (i, make) in [
            sample_csv as fn(&Path) -> anyhow::Result<()>,
            sample_jsonl,
            sample_parquet,
        ]
        .into_iter()
        .enumerate()
        {
            let src = tempfile::tempdir()?;
            make(src.path())?;
            let report = ingest(&LocalDir::new(src.path()), &lake, at(2, 0, i as u32)).await?;
            assert!(!report.reused);
            assert_eq!(report.rows_quarantined(), 0, "{report:?}");
            assert_eq!(report.rows_in(), ALL.len());
            snapshots.push(collected(&lake, &report.snapshot).await?);
        }
        for (d, ((a, b), c)) in ALL
            .iter()
            .zip(snapshots[0].iter().zip(&snapshots[1]).zip(&snapshots[2]))
        {
            assert!(a.equals_missing(b), "{}: csv vs jsonl\n{a}\n{b}", d.path());
            assert!(
                a.equals_missing(c),
                "{}: csv vs parquet\n{a}\n{c}",
                d.path()
            );
            assert_eq!(a.height(), 1);
        }
        Ok(())
    }

    // Multi-threaded: collecting a lazy Parquet scan blocks in place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reingest_reuses_snapshot_and_change_makes_new_one() -> anyhow::Result<()> {
        let src = tempfile::tempdir()?;
        let lake_dir = tempfile::tempdir()?;
        let lake = Lake::new(Arc::new(LocalDir::new(lake_dir.path())));
        sample_csv(src.path())?;
        std::fs::write(src.path().join("billing/invoices.csv"), INVOICES_CSV)?;
        let source = LocalDir::new(src.path());
        // 3 of 5 invoices are bad on purpose: a bound that lets them through.
        let loose = IngestConfig {
            max_quarantine_share: 1.0,
            ..IngestConfig::default()
        };
        let ingest = async |source: &LocalDir, lake: &Lake, now| {
            ingest_with_sources(source, lake, now, &BTreeMap::new(), &loose).await
        };

        let first = ingest(&source, &lake, at(2, 0, 0)).await?;
        assert_eq!(first.snapshot, "2025-09-01T020000Z");
        assert!(!first.reused);
        assert_eq!(first.rows_quarantined(), 3);
        let inv = &first.datasets[0];
        assert_eq!((inv.rows_in, inv.rows_ok, inv.rows_quarantined), (5, 2, 3));
        let qloc = lake_dir
            .path()
            .join("quarantine/billing/invoices/ingested=2025-09-01T020000Z/part-0.csv");
        assert_eq!(
            inv.quarantine.as_deref(),
            Some(qloc.display().to_string().as_str())
        );
        let qtext = std::fs::read_to_string(&qloc)?;
        assert!(
            qtext.starts_with("file,row,column,reason,invoice_id,"),
            "{qtext}"
        );
        assert!(
            qtext.contains(",2,currency,\"unknown ISO 4217 currency: \"\"US$\"\"\",inv-2,"),
            "{qtext}"
        );
        assert!(
            lake_dir
                .path()
                .join("raw/_snapshots/2025-09-01T020000Z.toml")
                .is_file()
        );

        let again = ingest(&source, &lake, at(3, 0, 0)).await?;
        assert!(again.reused);
        // Issue 9 item 10: the bound holds on reuse too (checked on the recorded counts).
        let strict_config = IngestConfig {
            quarantine_allowance_rows: 0,
            ..IngestConfig::default()
        };
        let strict = ingest_with_sources(
            &source,
            &lake,
            at(3, 0, 0),
            &BTreeMap::new(),
            &strict_config,
        )
        .await
        .err();
        assert!(
            matches!(&strict, Some(IngestError::TooManyQuarantined { breaches, .. })
                if breaches[0].dataset == "billing/invoices" && breaches[0].rows_quarantined == 3),
            "{strict:?}"
        );
        assert_eq!(again.snapshot, first.snapshot);
        assert_eq!(again.fingerprint, first.fingerprint);
        assert_eq!(again.datasets, first.datasets);

        // One changed byte: a new snapshot; same second as the first: suffixed.
        std::fs::write(
            src.path().join("billing/invoices.csv"),
            INVOICES_CSV.replace("1000", "1001"),
        )?;
        let changed = ingest(&source, &lake, at(2, 0, 0)).await?;
        assert!(!changed.reused);
        assert_ne!(changed.fingerprint, first.fingerprint);
        assert_eq!(changed.snapshot, "2025-09-01T020000Z-2");
        assert_eq!(
            lake.latest_snapshot().await?.as_deref(),
            Some("2025-09-01T020000Z-2")
        );
        let inv = lake
            .read_snapshot(&changed.snapshot)
            .await?
            .invoices
            .collect()?;
        assert_eq!(inv.column("total_cents")?.i64()?.get(0), Some(1001));
        Ok(())
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2024-02-29"), Some(19782));
        for bad in [
            "2025-02-29",
            "2025-1-01",
            "2025/01/01",
            "2025-01-01T00:00:00Z",
            "+025-01-01",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert_eq!(parse_ts("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert_eq!(parse_ts("1970-01-01T00:00:01+00:00"), Ok(1000));
        assert!(parse_ts("1970-01-01").is_err());
    }

    fn read(d: &Dataset, text: &[u8]) -> anyhow::Result<Raw> {
        Ok(read_raw(d, Format::Csv, text, "f.csv")?)
    }

    fn column_strs(df: &DataFrame, name: &str) -> anyhow::Result<Vec<Option<String>>> {
        let s = df.column(name)?.cast(&DataType::String)?;
        Ok(s.str()?.iter().map(|v| v.map(str::to_string)).collect())
    }

    const OPERATORS_HEADER: &str =
        "operator_id,name,email,metro,verticals,joined_on,terminated_on\n";

    /// Issue 9 item 1: a key repeated with identical rows collapses to the first (a
    /// warning per repeat); repeated with different rows, every copy is quarantined
    /// naming the others, whatever the order. Unkeyed billing rows pass untouched (R7).
    #[test]
    fn duplicate_keys_collapse_identical_and_quarantine_conflicting() -> anyhow::Result<()> {
        let text = format!(
            "{OPERATORS_HEADER}\
             op-1,Ann,ann@x.io,Austin,dental,2024-01-01,\n\
             op-2,Bo,bo@x.io,Austin,dental,2024-01-01,\n\
             op-1,Ann,ann@x.io,Austin,dental,2024-01-01,\n\
             op-3,Cy,cy@x.io,Austin,dental,2024-01-01,\n\
             op-3,Cy,bo@x.io,Austin,dental,2024-01-01,\n\
             op-3,Cy,cy@x.io,Austin,dental,2024-01-01,\n\
             op-4,Di,di@x.io,Austin,dental,2024-01-01,\n\
             op-4,Di,di@x.io,Austin,dental,2024-13-01,\n\
             op-5,Ed,Ed <ed@x.io>,Austin,dental,2024-01-01,\n\
             op-5,Ed,Ed <ed@x.io>,Austin,dental,2024-01-01,\n"
        );
        let v = validate(
            &contract::OPERATORS,
            read(&contract::OPERATORS, text.as_bytes())?,
            "f.csv",
            &rules(),
        )?;
        assert_eq!(
            column_strs(&v.ok, "operator_id")?,
            [
                Some("op-1".to_string()),
                Some("op-2".to_string()),
                Some("op-5".to_string())
            ]
        );
        assert_eq!((v.rows_quarantined, v.rows_collapsed), (5, 2));
        assert_eq!(
            quarantine_lines(&v.quarantine)?,
            [
                (4, "operator_id".into(), "duplicate key operator_id \"op-3\": also in row 5, 6 with different email; every copy is quarantined".into()),
                (5, "operator_id".into(), "duplicate key operator_id \"op-3\": also in row 4, 6 with different email; every copy is quarantined".into()),
                (6, "operator_id".into(), "duplicate key operator_id \"op-3\": also in row 4, 5 with different email; every copy is quarantined".into()),
                // A broken copy does not make the other one the winner.
                (7, "operator_id".into(), "duplicate key operator_id \"op-4\": also in row 8 with different joined_on; every copy is quarantined".into()),
                (8, "operator_id".into(), "duplicate key operator_id \"op-4\": also in row 7 with different joined_on; every copy is quarantined".into()),
                (8, "joined_on".into(), "not a date: \"2024-13-01\"".into()),
            ]
        );
        // The email warning is the kept row's only, not repeated for its collapsed copy.
        let display = "a display-name form (Name <address>), not a bare address: \"Ed <ed@x.io>\"; \
                       the row is kept (its money is computed) but no mail can go to it";
        let collapsed = |id: &str, kept: usize| {
            format!(
                "duplicate key operator_id \"{id}\": an identical copy of row {kept}, collapsed into it"
            )
        };
        assert_eq!(
            quarantine_lines(&v.warnings)?,
            [
                (3, "operator_id".into(), collapsed("op-1", 1)),
                (9, "email".into(), display.into()),
                (10, "operator_id".into(), collapsed("op-5", 9)),
            ]
        );
        // The original values follow in both files.
        assert_eq!(
            column_strs(&v.warnings, "email")?[0],
            Some("ann@x.io".to_string())
        );
        assert_eq!(
            column_strs(&v.quarantine, "email")?[..3],
            [
                Some("cy@x.io".to_string()),
                Some("bo@x.io".to_string()),
                Some("cy@x.io".to_string())
            ]
        );

        // A composite key (crm/training: operator_id, module_id).
        let text = "operator_id,module_id,required,completed_on\n\
            op-1,m-1,true,2025-01-01\nop-1,m-2,true,\nop-2,m-1,true,\nop-1,m-1,true,\n";
        let v = validate(
            &contract::TRAINING,
            read(&contract::TRAINING, text.as_bytes())?,
            "f.csv",
            &rules(),
        )?;
        assert_eq!(v.ok.height(), 2);
        assert_eq!(
            quarantine_lines(&v.quarantine)?,
            [
                (1, "operator_id,module_id".into(), "duplicate key operator_id \"op-1\", module_id \"m-1\": also in row 4 with different completed_on; every copy is quarantined".into()),
                (4, "operator_id,module_id".into(), "duplicate key operator_id \"op-1\", module_id \"m-1\": also in row 1 with different completed_on; every copy is quarantined".into()),
            ]
        );

        // R7 owns repeated invoices and lines: they reach the pipelines as they are.
        let text = "invoice_id,customer_id,currency,issued_on,status,paid_on,total_cents\n\
            inv-1,cu-1,USD,2025-08-01,paid,2025-08-03,1000\ninv-1,cu-1,USD,2025-08-01,paid,2025-08-03,1000\n\
            inv-1,cu-2,USD,2025-08-01,paid,2025-08-03,900\n";
        let v = validate(&contract::INVOICES, csv(text)?, "f.csv", &rules())?;
        assert_eq!(
            (v.ok.height(), v.rows_quarantined, v.rows_collapsed),
            (3, 0, 0)
        );
        assert_eq!(v.warnings.height(), 0);
        Ok(())
    }

    /// Every keyed dataset enforces its key (refunds, territories, customers, leads,
    /// survey responses too), in Parquet as in CSV.
    #[test]
    fn every_keyed_dataset_refuses_conflicting_copies() -> anyhow::Result<()> {
        for (d, row) in sample_rows() {
            if d.key.is_empty() {
                continue;
            }
            let header: Vec<&str> = row.iter().map(|(k, _)| *k).collect();
            let vals: Vec<&str> = row.iter().map(|(_, v)| *v).collect();
            // The same key twice, the second copy differing in a non-key column.
            let other = d
                .columns
                .iter()
                .position(|c| {
                    !d.key.contains(&c.name) && c.ty == ColType::Str && c.check == Check::None
                })
                .or_else(|| {
                    d.columns
                        .iter()
                        .position(|c| c.ty == ColType::Date && c.nullable)
                })
                .unwrap_or(0);
            let mut changed = vals.clone();
            changed[other] = if d.columns[other].ty == ColType::Date {
                "2025-01-02"
            } else {
                "changed"
            };
            let text = format!(
                "{}\n{}\n{}\n{}\n",
                header.join(","),
                vals.join(","),
                vals.join(","),
                changed.join(",")
            );
            let v = validate(d, read(d, text.as_bytes())?, "f.csv", &rules())?;
            assert_eq!(v.ok.height(), 0, "{}", d.path());
            assert_eq!(v.rows_quarantined, 3, "{}: {}", d.path(), v.quarantine);
            // Parquet, typed: the same judgement.
            let typed = validate(
                d,
                read(
                    d,
                    format!("{}\n{}\n", header.join(","), vals.join(",")).as_bytes(),
                )?,
                "x",
                &rules(),
            )?
            .ok;
            let mut twice = typed.vstack(&typed)?;
            let mut buf = Vec::new();
            ParquetWriter::new(&mut buf).finish(&mut twice)?;
            let raw = read_raw(d, Format::Parquet, &buf, "f.parquet")?;
            let v = validate(d, raw, "f.parquet", &rules())?;
            assert_eq!((v.ok.height(), v.rows_collapsed), (1, 1), "{}", d.path());
            assert!(v.ok.equals_missing(&typed), "{}", d.path());
        }
        Ok(())
    }

    /// Issue 9 item 8 (R0.2): money beyond contract::MAX_ABS_CENTS is quarantined, in
    /// text and in typed (Parquet) sources; the bound itself is accepted.
    #[test]
    fn money_beyond_the_sanity_bound_is_quarantined() -> anyhow::Result<()> {
        let text = "invoice_id,line_no,revenue_type,amount_cents,service_start,service_end\n\
            inv-1,1,software,100000000000000,2025-08-01,2025-08-31\n\
            inv-1,2,software,-100000000000000,2025-08-01,2025-08-31\n\
            inv-1,3,software,100000000000001,2025-08-01,2025-08-31\n\
            inv-1,4,software,2000000000000000000,2025-08-01,2025-08-31\n\
            inv-1,5,software,-9223372036854775808,2025-08-01,2025-08-31\n";
        let d = &contract::INVOICE_LINES;
        let v = validate(d, read(d, text.as_bytes())?, "f.csv", &rules())?;
        assert_eq!(v.ok.height(), 2);
        let why = |n: &str| {
            format!(
                "beyond the sanity bound of 100000000000000 cents in magnitude (contract::MAX_ABS_CENTS): {n}"
            )
        };
        assert_eq!(
            quarantine_lines(&v.quarantine)?,
            [
                (3, "amount_cents".into(), why("100000000000001")),
                (4, "amount_cents".into(), why("2000000000000000000")),
                (5, "amount_cents".into(), why("-9223372036854775808")),
            ]
        );
        // Typed: invoices' total_cents and refunds' amount_cents, from Parquet.
        let mut inv = df!(
            "invoice_id" => ["a", "b"], "customer_id" => ["c", "c"], "currency" => ["USD", "USD"],
            "issued_on" => ["2025-08-01", "2025-08-01"], "status" => ["paid", "paid"],
            "paid_on" => ["2025-08-02", "2025-08-02"], "total_cents" => [5i64, -2_000_000_000_000_000_000],
        )?;
        let mut buf = Vec::new();
        ParquetWriter::new(&mut buf).finish(&mut inv)?;
        let v = validate(
            &contract::INVOICES,
            read_raw(&contract::INVOICES, Format::Parquet, &buf, "f.parquet")?,
            "f.parquet",
            &rules(),
        )?;
        assert_eq!(v.ok.height(), 1);
        assert_eq!(
            quarantine_lines(&v.quarantine)?,
            [(2, "total_cents".into(), why("-2000000000000000000"))]
        );
        let refunds = "refund_id,invoice_id,line_no,refunded_on,amount_cents\n\
            rf-1,inv,1,2025-08-01,-5\nrf-2,inv,1,2025-08-01,1000000000000000\n";
        let d = &contract::REFUNDS;
        let v = validate(d, read(d, refunds.as_bytes())?, "f.csv", &rules())?;
        assert_eq!(
            quarantine_lines(&v.quarantine)?,
            [
                (1, "amount_cents".into(), "out of range 0..: -5".into()),
                (2, "amount_cents".into(), why("1000000000000000")),
            ]
        );
        Ok(())
    }

    /// Issue 9 item 9: every date and timestamp column refuses values outside
    /// `ingest.earliest_date ..= ingest day + ingest.max_months_ahead` (year 0000 too),
    /// in text and typed sources; the bounds are settings.
    #[test]
    fn dates_outside_the_window_are_quarantined() -> anyhow::Result<()> {
        // Ingest day 2025-09-01: the window is 1990-01-01 ..= 2026-09-01.
        let window = "outside the accepted date window 1990-01-01..=2026-09-01 (ingest.earliest_date, ingest.max_months_ahead)";
        let text = "invoice_id,customer_id,currency,issued_on,status,paid_on,total_cents\n\
            inv-1,cu,USD,0000-01-15,open,,1\n\
            inv-2,cu,USD,1989-12-31,open,,1\n\
            inv-3,cu,USD,1990-01-01,paid,2026-09-01,1\n\
            inv-4,cu,USD,2025-08-01,paid,2026-09-02,1\n\
            inv-5,cu,USD,9999-12-31,open,,1\n";
        let v = validate(&contract::INVOICES, csv(text)?, "f.csv", &rules())?;
        assert_eq!(
            column_strs(&v.ok, "invoice_id")?,
            [Some("inv-3".to_string())]
        );
        assert_eq!(
            quarantine_lines(&v.quarantine)?,
            [
                (1, "issued_on".into(), format!("{window}: \"0000-01-15\"")),
                (2, "issued_on".into(), format!("{window}: \"1989-12-31\"")),
                (4, "paid_on".into(), format!("{window}: \"2026-09-02\"")),
                (5, "issued_on".into(), format!("{window}: \"9999-12-31\"")),
            ]
        );
        // Timestamps: their UTC date counts.
        let leads = "lead_id,source,vertical,metro,created_at,assigned_operator_id,first_contact_at,converted_customer_id\n\
            l1,web,dental,Austin,1989-12-31T23:59:59Z,,,\n\
            l2,web,dental,Austin,1990-01-01T00:00:00Z,,2026-09-02T00:00:00Z,\n\
            l3,web,dental,Austin,1990-01-01T00:00:00Z,,2026-09-01T23:59:59.999Z,\n";
        let d = &contract::LEADS;
        let v = validate(d, read(d, leads.as_bytes())?, "f.csv", &rules())?;
        assert_eq!(column_strs(&v.ok, "lead_id")?, [Some("l3".to_string())]);
        assert_eq!(
            quarantine_lines(&v.quarantine)?,
            [
                (
                    1,
                    "created_at".into(),
                    format!("{window}: \"1989-12-31T23:59:59Z\"")
                ),
                (
                    2,
                    "first_contact_at".into(),
                    format!("{window}: \"2026-09-02T00:00:00Z\"")
                ),
            ]
        );
        // Typed Parquet dates and timestamps.
        let days = |s: &str| parse_date(s).unwrap_or_default();
        let mut ops = df!(
            "operator_id" => ["a", "b"], "name" => ["A", "B"], "email" => ["a@x.io", "b@x.io"],
            "metro" => ["M", "M"], "verticals" => ["v", "v"],
            "joined_on" => [days("2020-01-01"), days("0000-01-01")],
            "terminated_on" => [None::<i32>, None],
        )?;
        for c in ["joined_on", "terminated_on"] {
            let s = ops.column(c)?.cast(&DataType::Date)?;
            ops.with_column(s)?;
        }
        let mut buf = Vec::new();
        ParquetWriter::new(&mut buf).finish(&mut ops)?;
        let d = &contract::OPERATORS;
        let v = validate(
            d,
            read_raw(d, Format::Parquet, &buf, "f.parquet")?,
            "f.parquet",
            &rules(),
        )?;
        assert_eq!(
            quarantine_lines(&v.quarantine)?,
            [(2, "joined_on".into(), format!("{window}: 0000-01-01"))]
        );
        // The settings move the window.
        let narrow = Rules::new(
            &IngestConfig {
                earliest_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default(),
                max_months_ahead: 0,
                ..IngestConfig::default()
            },
            NaiveDate::from_ymd_opt(2025, 9, 1).unwrap_or_default(),
        );
        let v = validate(&contract::INVOICES, csv(text)?, "f.csv", &narrow)?;
        assert_eq!(v.ok.height(), 0);
        assert!(
            quarantine_lines(&v.quarantine)?
                .iter()
                .any(|(r, c, m)| *r == 3
                    && c == "issued_on"
                    && m.contains("2025-01-01..=2025-09-01")),
            "{}",
            v.quarantine
        );
        Ok(())
    }

    /// Issue 9 item 5: an operator email that is not one bare address is a warning,
    /// never a quarantine: the operator (and its money) stays in the snapshot.
    #[test]
    fn bad_operator_email_is_reported_and_the_row_kept() -> anyhow::Result<()> {
        let text = format!(
            "{OPERATORS_HEADER}\
             op-1,Ann,ann@x.io,Austin,dental,2024-01-01,\n\
             op-2,Bo,\"bo@x.io, eve@evil.io\",Austin,dental,2024-01-01,\n\
             op-3,Cy,Cy <cy@x.io>,Austin,dental,2024-01-01,\n\
             op-4,Di,\"di@x.io\r\nBcc: eve@evil.io\",Austin,dental,2024-01-01,\n\
             op-5,Ed,ed at x.io,Austin,dental,2024-01-01,\n\
             op-6,Fi,fi@,Austin,dental,2024-01-01,\n\
             op-7,Gu,gu@x.io;eve@evil.io,Austin,dental,2024-01-01,\n\
             op-8,Ha,,Austin,dental,2024-01-01,\n"
        );
        let d = &contract::OPERATORS;
        let v = validate(d, read(d, text.as_bytes())?, "f.csv", &rules())?;
        assert_eq!(v.ok.height(), 7, "only the missing address is a broken row");
        assert_eq!(
            quarantine_lines(&v.quarantine)?,
            [(8, "email".into(), "missing value".into())]
        );
        let kept = "; the row is kept (its money is computed) but no mail can go to it";
        assert_eq!(
            quarantine_lines(&v.warnings)?,
            [
                (
                    2,
                    "email".into(),
                    format!("a list of addresses, not one: \"bo@x.io, eve@evil.io\"{kept}")
                ),
                (
                    3,
                    "email".into(),
                    format!(
                        "a display-name form (Name <address>), not a bare address: \"Cy <cy@x.io>\"{kept}"
                    )
                ),
                (
                    4,
                    "email".into(),
                    format!(
                        "contains a line break or control character: \"di@x.io\\r\\nBcc: eve@evil.io\"{kept}"
                    )
                ),
                (
                    5,
                    "email".into(),
                    format!("contains whitespace: \"ed at x.io\"{kept}")
                ),
                (
                    6,
                    "email".into(),
                    format!("not an email address: \"fi@\"{kept}")
                ),
                (
                    7,
                    "email".into(),
                    format!("a list of addresses, not one: \"gu@x.io;eve@evil.io\"{kept}")
                ),
            ]
        );
        Ok(())
    }

    /// Issue 9 item 11: a CSV row with too few or too many fields, malformed quoting or
    /// bytes that are not UTF-8 is quarantined with its row number; the rest of the
    /// file is read. A repeated header name or a quote never closed fails the file.
    #[test]
    fn csv_rows_that_cannot_be_read_are_quarantined_with_their_row() -> anyhow::Result<()> {
        let d = &contract::CUSTOMERS;
        let header = "customer_id,operator_id,name,vertical,metro,contract_signed_on,go_live_on,churned_on\n";
        let mut text = header.as_bytes().to_vec();
        text.extend_from_slice(b"cu-1,op-1,Acme,dental,Austin,2025-01-01,2025-02-01,\n");
        // Short: the churn date (and its comma) is missing: not "active".
        text.extend_from_slice(b"cu-2,op-1,Beta,dental,Austin,2025-01-01,2025-02-01\n");
        // Long: one field too many.
        text.extend_from_slice(b"cu-3,op-1,Gamma,dental,Austin,2025-01-01,2025-02-01,,x\n");
        // Latin-1 in a name.
        text.extend_from_slice(b"cu-4,op-1,Caf\xe9,dental,Austin,2025-01-01,2025-02-01,\n");
        text.extend_from_slice(b"\n");
        // Quoted fields spanning lines, CRLF, doubled quotes: fine.
        text.extend_from_slice(
            b"cu-5,op-1,\"Delta, \"\"the\"\"\nfirm\",dental,Austin,2025-01-01,,\r\n",
        );
        // Text after a closing quote.
        text.extend_from_slice(b"cu-6,op-1,\"Eps\"ilon,dental,Austin,2025-01-01,,\n");
        // Non-UTF-8 in a column beyond the contract would not matter, but here it is
        // in the key: the row goes.
        text.extend_from_slice(b"cu-\xff,op-1,Zeta,dental,Austin,2025-01-01,,");
        let v = validate(d, read(d, &text)?, "f.csv", &rules())?;
        assert_eq!(
            column_strs(&v.ok, "customer_id")?,
            [Some("cu-1".to_string()), Some("cu-5".to_string())]
        );
        assert_eq!(
            column_strs(&v.ok, "name")?[1].as_deref(),
            Some("Delta, \"the\"\nfirm")
        );
        assert_eq!(
            quarantine_lines(&v.quarantine)?,
            [
                (
                    2,
                    "".into(),
                    "7 fields where the header has 8 (line 3)".into()
                ),
                (
                    3,
                    "".into(),
                    "9 fields where the header has 8 (line 4)".into()
                ),
                (
                    4,
                    "name".into(),
                    "not valid UTF-8 (byte 0xE9 at byte 4 of the value)".into()
                ),
                (
                    6,
                    "name".into(),
                    "text after the closing quote of a field (line 9)".into()
                ),
                (
                    7,
                    "customer_id".into(),
                    "not valid UTF-8 (byte 0xFF at byte 4 of the value)".into()
                ),
            ]
        );
        assert_eq!(v.rows_quarantined, 5);
        // The original values are shown as far as they go.
        assert_eq!(
            column_strs(&v.quarantine, "name")?[2].as_deref(),
            Some("Caf\u{fffd}")
        );
        assert_eq!(column_strs(&v.quarantine, "churned_on")?[0], None);

        // A BOM and CRLF line ends read like plain LF.
        let crlf = format!("\u{feff}{}", header.replace('\n', "\r\n"))
            + "cu-1,op-1,Acme,dental,Austin,2025-01-01,,2025-06-30\r\n";
        let v = validate(d, read(d, crlf.as_bytes())?, "f.csv", &rules())?;
        assert_eq!(
            (v.ok.height(), v.rows_quarantined),
            (1, 0),
            "{}",
            v.quarantine
        );
        assert_eq!(
            column_strs(&v.ok, "churned_on")?,
            [Some("2025-06-30".to_string())]
        );

        let dup = "customer_id,operator_id,name,vertical,metro,contract_signed_on,go_live_on,churned_on,name\n";
        let err = read_raw(d, Format::Csv, dup.as_bytes(), "/src/crm/customers.csv")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "column name appears more than once in the header of /src/crm/customers.csv; keep exactly one"
        );
        let open = format!(
            "{header}cu-1,op-1,\"Acme,dental,Austin,2025-01-01,,\ncu-2,op-1,B,dental,Austin,2025-01-01,,\n"
        );
        let err = read_raw(d, Format::Csv, open.as_bytes(), "/src/crm/customers.csv")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "cannot read /src/crm/customers.csv: a quoted field opened on line 2 is never closed"
        );
        Ok(())
    }

    /// On well-formed files the hand-written CSV reader reads what Polars' reader
    /// reads (blank and empty both missing), so generated sources give the same
    /// snapshots as before.
    #[test]
    fn csv_reader_agrees_with_polars_on_generated_files() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        crate::generate::generate(&crate::generate::GenerateOptions {
            out: dir.path().to_path_buf(),
            operators: 12,
            months: 4,
            end: opnet_pipelines::Period::parse("2025-08")?,
            seed: 3,
            format: crate::generate::Format::Csv,
        })?;
        for d in ALL {
            let bytes = std::fs::read(dir.path().join(format!("{}.csv", d.path())))?;
            let mine = read_raw(d, Format::Csv, &bytes, "f.csv")?;
            assert!(mine.problems.is_empty(), "{}", d.path());
            let theirs = CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(0))
                .into_reader_with_file_handle(Cursor::new(&bytes))
                .finish()?;
            assert_eq!(mine.frame.height(), theirs.height(), "{}", d.path());
            for c in d.columns {
                let norm = |df: &DataFrame| -> anyhow::Result<Vec<Option<String>>> {
                    Ok(column_strs(df, c.name)?
                        .into_iter()
                        .map(|v| v.filter(|v| !blank(v)))
                        .collect())
                };
                assert_eq!(
                    norm(&mine.frame)?,
                    norm(&theirs)?,
                    "{}.{}",
                    d.path(),
                    c.name
                );
            }
        }
        Ok(())
    }

    /// Issue 9 items 10 and 17: `refunds.amount_cents` typed as a float in Parquet is
    /// quarantined row by row ("not an integer"), never cast to a silent null or a
    /// rounded number; the whole dataset quarantined, beyond the allowance, then fails
    /// the ingest, naming it, the count and the bound, and no snapshot is recorded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quarantined_share_over_the_bound_fails_the_ingest() -> anyhow::Result<()> {
        let src = tempfile::tempdir()?;
        let lake_dir = tempfile::tempdir()?;
        let lake = Lake::new(Arc::new(LocalDir::new(lake_dir.path())));
        sample_csv(src.path())?;
        std::fs::remove_file(src.path().join("billing/refunds.csv"))?;
        let mut refunds = df!(
            "refund_id" => ["rf-1", "rf-2"], "invoice_id" => ["inv-1", "inv-1"], "line_no" => [1i64, 1],
            "refunded_on" => ["2025-08-10", "2025-08-11"], "amount_cents" => [100.0f64, 12.5],
        )?;
        let mut buf = Vec::new();
        ParquetWriter::new(&mut buf).finish(&mut refunds)?;
        write(src.path(), "billing/refunds.parquet", &buf)?;
        let source = LocalDir::new(src.path());
        // Two bad rows are within the default allowance of 10: quarantined, reported,
        // and the month goes on.
        let few = ingest(&source, &lake, at(1, 0, 0)).await?;
        let refunds = few.datasets.iter().find(|d| d.dataset == "billing/refunds");
        assert_eq!(refunds.map(|d| d.rows_quarantined), Some(2));
        // Without the allowance, the whole dataset quarantined fails the ingest.
        let strict = IngestConfig {
            quarantine_allowance_rows: 0,
            ..IngestConfig::default()
        };
        let lake_dir = tempfile::tempdir()?;
        let lake = Lake::new(Arc::new(LocalDir::new(lake_dir.path())));
        let err = ingest_with_sources(&source, &lake, at(2, 0, 0), &BTreeMap::new(), &strict)
            .await
            .err();
        let qfile = lake_dir
            .path()
            .join("quarantine/billing/refunds/ingested=2025-09-01T020000Z/part-0.csv");
        assert_eq!(
            err.map(|e| e.to_string()).unwrap_or_default(),
            format!(
                "too many rows quarantined, more than ingest.max_quarantine_share = 0.01 (1 %) and \
                 ingest.quarantine_allowance_rows = 0 allow: \
                 billing/refunds: 2 of 2 rows quarantined (100 %), see {}. Nothing was ingested: correct \
                 the source (each quarantine line says why its row was refused) or raise the bound, then ingest again",
                qfile.display()
            )
        );
        assert_eq!(lake.latest_snapshot().await?, None, "no snapshot recorded");
        assert!(
            !lake_dir.path().join("raw/billing").exists(),
            "no snapshot data written"
        );
        let q = std::fs::read_to_string(&qfile)?;
        assert!(
            q.contains(",1,amount_cents,\"not an integer: \"\"100.0\"\"\",rf-1,"),
            "{q}"
        );
        assert!(
            q.contains(",2,amount_cents,\"not an integer: \"\"12.5\"\"\",rf-2,"),
            "{q}"
        );

        // A bound that allows it: the rows stay quarantined, the snapshot is made.
        let loose = IngestConfig {
            max_quarantine_share: 1.0,
            ..IngestConfig::default()
        };
        let r = ingest_with_sources(&source, &lake, at(2, 0, 1), &BTreeMap::new(), &loose).await?;
        let refunds = r.datasets.iter().find(|d| d.dataset == "billing/refunds");
        assert_eq!(
            refunds.map(|d| (d.rows_in, d.rows_ok, d.rows_quarantined)),
            Some((2, 0, 2))
        );
        // At the bound exactly is not over it.
        let reports = [DatasetReport {
            dataset: "crm/operators".into(),
            source: String::new(),
            rows_in: 100,
            rows_ok: 99,
            rows_quarantined: 1,
            rows_collapsed: 0,
            warnings: 0,
            quarantine: None,
            warnings_file: None,
        }];
        assert!(check_quarantine_share(&reports, 0.01, 0).is_ok());
        assert!(check_quarantine_share(&reports, 0.009, 0).is_err());
        // Within the allowance the share alone never fails.
        assert!(check_quarantine_share(&reports, 0.009, 1).is_ok());
        let mut many = reports.clone();
        many[0].rows_quarantined = 11;
        many[0].rows_ok = 89;
        assert!(check_quarantine_share(&many, 0.01, 10).is_err());
        assert!(check_quarantine_share(&many, 0.2, 10).is_ok());
        Ok(())
    }

    /// Issue 9 item 17: a typed value that cannot be read as text (bytes that are not
    /// UTF-8 in a Parquet binary column) is quarantined, not turned into a null.
    #[test]
    fn typed_values_never_become_silent_nulls() -> anyhow::Result<()> {
        let d = &contract::CUSTOMERS;
        let bin = |v: &[Option<&[u8]>]| -> Column {
            BinaryChunked::from_iter_options("churned_on".into(), v.iter().copied()).into_column()
        };
        let mut df = df!(
            "customer_id" => ["cu-1", "cu-2"], "operator_id" => ["op-1", "op-1"], "name" => ["A", "B"],
            "vertical" => ["v", "v"], "metro" => ["m", "m"],
            "contract_signed_on" => ["2025-01-01", "2025-01-01"], "go_live_on" => [None::<&str>, None],
        )?;
        df.with_column(bin(&[Some(b"2025-06-30"), Some(b"\xff\xfe")]))?;
        let v = validate(d, df, "f.parquet", &rules())?;
        assert_eq!(
            column_strs(&v.ok, "churned_on")?,
            [Some("2025-06-30".to_string())]
        );
        assert_eq!(
            quarantine_lines(&v.quarantine)?,
            [(
                2,
                "churned_on".into(),
                "a binary value that cannot be read as text".into()
            )]
        );
        Ok(())
    }

    /// Issue 9 item 12: a SQL source's connection error and label never show its
    /// password, whichever form it takes.
    #[tokio::test]
    async fn sql_source_errors_mask_credentials() {
        for url in [
            "postgres://u:S3cretA@127.0.0.1:1/db",
            "postgres://u@127.0.0.1:1/db?password=S3cretA",
            "postgres://u@127.0.0.1:1/db?sslmode=disable&sslpassword=S3cretA",
        ] {
            let src = SqlSource {
                url: url.into(),
                query: "SELECT 1".into(),
            };
            let mut conns = BTreeMap::new();
            let err = read_sql(&contract::OPERATORS, &src, &mut conns)
                .await
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.starts_with("SQL source sql:postgres://u"), "{err}");
            assert!(err.contains("*****"), "{err}");
            assert!(!err.contains("S3cretA"), "{err}");
        }
    }

    /// JSON Lines: a line naming a contract column twice (which copy counts cannot
    /// be told), a line that is not UTF-8 and a line that is not a JSON object are
    /// quarantined with their row numbers; the rest of the file is read.
    #[test]
    fn jsonl_lines_that_cannot_be_read_are_quarantined_with_their_row() -> anyhow::Result<()> {
        let d = &contract::OPERATORS;
        let ok = |id: &str| {
            format!(
                "{{\"operator_id\":\"{id}\",\"name\":\"N\",\"email\":\"{id}@x.io\",\"metro\":\"M\",\"verticals\":\"v\",\"joined_on\":\"2024-01-01\",\"terminated_on\":null}}"
            )
        };
        let mut text = Vec::new();
        text.extend_from_slice(ok("op-1").as_bytes());
        text.extend_from_slice(b"\n\n");
        let twice = ok("op-2").replace("}", ",\"email\":\"eve@evil.io\"}");
        text.extend_from_slice(twice.as_bytes());
        text.extend_from_slice(b"\n");
        let latin1 = ok("op-3").replace("\"N\"", "\"N\u{1}\"").into_bytes();
        text.extend(latin1.into_iter().map(|b| if b == 1 { 0xE9 } else { b }));
        text.extend_from_slice(b"\n[1, 2]\n");
        text.extend_from_slice(ok("op-5").as_bytes());
        text.extend_from_slice(b"\r\n");
        let raw = read_raw(d, Format::JsonLines, &text, "f.jsonl")?;
        let v = validate(d, raw, "f.jsonl", &rules())?;
        assert_eq!(
            column_strs(&v.ok, "operator_id")?,
            [Some("op-1".to_string()), Some("op-5".to_string())]
        );
        let lines = quarantine_lines(&v.quarantine)?;
        assert_eq!(
            lines[..2],
            [
                (
                    2,
                    "email".into(),
                    "the key appears 2 times in the object (line 3)".into()
                ),
                (
                    3,
                    "".into(),
                    "not valid UTF-8 (byte 0xE9 at byte 32 of line 4)".into()
                ),
            ]
        );
        assert_eq!(lines[2].0, 4);
        assert!(
            lines[2]
                .2
                .starts_with("not a JSON object: invalid type: sequence"),
            "{lines:?}"
        );
        assert!(lines[2].2.ends_with("(line 5)"), "{lines:?}");
        assert_eq!(lines.len(), 3);
        Ok(())
    }

    /// A NUL in any text, and control characters or surrounding spaces in an id, are
    /// quarantined: `OP-0001 ` with another address would be a second operator that
    /// the key check cannot see. A service period ending before it starts is a
    /// warning (the line is paid; it adds nothing to MRR).
    #[test]
    fn ids_and_text_that_would_pass_for_something_else() -> anyhow::Result<()> {
        let text = format!(
            "{OPERATORS_HEADER}\
             op-1,Ann,ann@x.io,Austin,dental,2024-01-01,\n\
             op-1 ,Eve,eve@evil.io,Austin,dental,2024-01-01,\n\
             \"op-1\r\",Eve,eve@evil.io,Austin,dental,2024-01-01,\n\
             op-4,Di\u{0},di@x.io,Austin,dental,2024-01-01,\n"
        );
        let d = &contract::OPERATORS;
        let v = validate(d, read(d, text.as_bytes())?, "f.csv", &rules())?;
        assert_eq!(
            column_strs(&v.ok, "operator_id")?,
            [Some("op-1".to_string())]
        );
        assert_eq!(
            quarantine_lines(&v.quarantine)?,
            [
                (
                    2,
                    "operator_id".into(),
                    "an id with leading or trailing whitespace: \"op-1 \"".into()
                ),
                (
                    3,
                    "operator_id".into(),
                    "an id with a control character: \"op-1\\r\"".into()
                ),
                (
                    4,
                    "name".into(),
                    "contains a NUL character: \"Di\\0\"".into()
                ),
            ]
        );
        let lines = "invoice_id,line_no,revenue_type,amount_cents,service_start,service_end\n\
            inv-1,1,software,100,2025-08-01,2025-08-31\ninv-1,2,software,100,2025-08-31,2025-08-01\n";
        let d = &contract::INVOICE_LINES;
        let v = validate(d, read(d, lines.as_bytes())?, "f.csv", &rules())?;
        assert_eq!(v.ok.height(), 2);
        assert_eq!(
            quarantine_lines(&v.warnings)?,
            [(2, "service_end".into(), "service_end 2025-08-01 is before service_start 2025-08-31: the line is paid, but counts nothing toward MRR (R6.1)".into())]
        );
        Ok(())
    }
}
