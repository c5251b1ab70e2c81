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
//! lines; for JSON Lines it is the n-th non-blank line). A missing file or column
//! fails the whole ingest with a message naming it.
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
//! manifest) are `sql:<url without password, or env:NAME>#<dataset>`; `row` is the
//! 1-based row of the result. A missing column fails the ingest naming the dataset,
//! the query source and the column.
//!
//! Identical sources are not ingested twice: the fingerprint (sha256 of an ingest
//! version tag, then per dataset in contract order its path and raw bytes, each
//! length-prefixed; for a SQL source a canonical serialisation of its text rows in
//! result order, so a query should `ORDER BY` a key) is recorded in the snapshot manifest, and a source whose
//! fingerprint matches a complete snapshot reuses it. That is what makes a re-run
//! read the same snapshot. The sources are held in memory during an ingest (the
//! fingerprint needs all of them before anything is parsed).
//!
//! Values: `int` is a base-10 `i64` (a leading `+` is accepted); `date` is exactly
//! `YYYY-MM-DD`; `ts` is RFC 3339 with offset `Z`/`+00:00` (another offset is
//! quarantined, not converted), stored as `Datetime(ms)` without a time zone; `bool`
//! is exactly `true`/`false`. A blank (empty or all-space) value is missing: an
//! error in a required column, null in an optional one. Text is otherwise kept as is.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Utc};
use opnet_pipelines::contract::{self, Check, ColType, Dataset, ISO_4217};
use polars::prelude::*;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::SqlSource;
use crate::lake::{Lake, LakeError, ManifestDataset, SnapshotManifest};
use crate::store::{ObjectStore, StoreError};

/// Bumped when validation changes what a snapshot would contain, so that sources
/// ingested under older rules are ingested again rather than reused.
const FINGERPRINT_VERSION: &[u8] = b"opnet-ingest-v1\0";

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

/// What ingest did with one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetReport {
    /// `billing/invoices`
    pub dataset: String,
    /// Location of the source file.
    pub source: String,
    pub rows_in: usize,
    pub rows_ok: usize,
    pub rows_quarantined: usize,
    /// Location of the quarantine file, when rows were rejected.
    pub quarantine: Option<String>,
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
/// sources). `now` names a new snapshot.
pub async fn ingest(
    source: &dyn ObjectStore,
    lake: &Lake,
    now: DateTime<Utc>,
) -> Result<IngestReport, IngestError> {
    ingest_with_sources(source, lake, now, &BTreeMap::new()).await
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

/// [`ingest`], with the datasets of `sql` (keyed by dataset path, validated by
/// [`crate::config::Config::validate`]) read from their SQL query instead of a file.
pub async fn ingest_with_sources(
    source: &dyn ObjectStore,
    lake: &Lake,
    now: DateTime<Utc>,
    sql: &BTreeMap<String, SqlSource>,
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
        let datasets = manifest
            .datasets
            .iter()
            .map(|m| DatasetReport {
                dataset: m.dataset.clone(),
                source: m.source.clone(),
                rows_in: m.rows_in as usize,
                rows_ok: m.rows_ok as usize,
                rows_quarantined: m.rows_quarantined as usize,
                quarantine: m.quarantine.as_deref().map(|k| store.location(k)),
            })
            .collect();
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

    let mut reports = Vec::new();
    let mut entries = Vec::new();
    for (d, input) in contract::ALL.iter().copied().zip(inputs) {
        let (file, format_name) = match &input {
            Input::File { key, format, .. } => (source.location(key), format.name()),
            Input::Sql { label, .. } => (label.clone(), "sql"),
        };
        let dataset = d.path();
        // Parsing and validating is CPU work; keep it off the async workers.
        let task_file = file.clone();
        let (mut ok, mut quarantine, rows_in) = tokio::task::spawn_blocking(move || {
            let raw = match input {
                Input::File { format, bytes, .. } => read_raw(d, format, &bytes, &task_file)?,
                Input::Sql { frame, .. } => frame,
            };
            let rows_in = raw.height();
            let (ok, q) = validate(d, raw, &task_file)?;
            Ok::<_, IngestError>((ok, q, rows_in))
        })
        .await
        .map_err(|e| IngestError::Task {
            dataset: dataset.clone(),
            reason: e.to_string(),
        })??;

        let rows_ok = ok.height();
        let rows_quarantined = rows_in - rows_ok;
        lake.write_snapshot(d, &snapshot, &mut ok).await?;
        let quarantine_key = if quarantine.height() > 0 {
            let key = Lake::quarantine_key(d, &snapshot);
            let mut buf = Vec::new();
            CsvWriter::new(&mut buf)
                .include_header(true)
                .finish(&mut quarantine)
                .map_err(|source| IngestError::Validate {
                    file: file.clone(),
                    source,
                })?;
            lake.put_file(&key, buf).await?;
            Some(key)
        } else {
            None
        };
        if rows_quarantined > 0 {
            warn!(dataset = %dataset, rows_in, rows_ok, rows_quarantined,
                quarantine = %quarantine_key.as_deref().map(|k| lake.store().location(k)).unwrap_or_default(),
                "rows quarantined");
        } else {
            info!(dataset = %dataset, rows_in, rows_ok, rows_quarantined, "ingested");
        }
        reports.push(DatasetReport {
            dataset: dataset.clone(),
            source: file.clone(),
            rows_in,
            rows_ok,
            rows_quarantined,
            quarantine: quarantine_key.as_deref().map(|k| lake.store().location(k)),
        });
        entries.push(ManifestDataset {
            dataset,
            source: file,
            format: format_name.to_string(),
            rows_in: rows_in as u64,
            rows_ok: rows_ok as u64,
            rows_quarantined: rows_quarantined as u64,
            data: Lake::snapshot_key(d, &snapshot),
            quarantine: quarantine_key,
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

/// Read a source file with every contract column as text (JSON values are rendered
/// as their JSON text; Parquet columns keep their types and are handled by
/// [`validate`]).
fn read_raw(
    dataset: &Dataset,
    format: Format,
    bytes: &[u8],
    file: &str,
) -> Result<DataFrame, IngestError> {
    let read_err = |source| IngestError::Read {
        file: file.to_string(),
        source,
    };
    match format {
        Format::Csv => CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .into_reader_with_file_handle(Cursor::new(bytes))
            .finish()
            .map_err(read_err),
        Format::Parquet => ParquetReader::new(Cursor::new(bytes))
            .finish()
            .map_err(read_err),
        Format::JsonLines => {
            // An explicit all-String schema: numbers, bools and even nested values
            // come back as their JSON text, so nothing depends on type inference,
            // and keys beyond the contract are skipped.
            let schema: Schema = dataset
                .columns
                .iter()
                .map(|c| Field::new(c.name.into(), DataType::String))
                .collect();
            let df = JsonReader::new(Cursor::new(bytes))
                .with_json_format(JsonFormat::JsonLines)
                .with_schema(Arc::new(schema))
                .finish()
                .map_err(read_err)?;
            // A key absent from every line reads as all-null. Only in that (rare)
            // case look at the keys actually present: a required column that no line
            // has is a missing column; an optional one is accepted as empty, because
            // JSON writers commonly omit null keys (a warning says so).
            let height = df.height();
            let all_null: Vec<&contract::Column> = dataset
                .columns
                .iter()
                .filter(|c| height > 0 && df.column(c.name).is_ok_and(|s| s.null_count() == height))
                .collect();
            if !all_null.is_empty() {
                let present = polars::io::ndjson::infer_schema(&mut Cursor::new(bytes), None)
                    .map_err(read_err)?;
                let (required, optional): (Vec<&contract::Column>, Vec<&contract::Column>) =
                    all_null
                        .into_iter()
                        .filter(|c| !present.contains(c.name))
                        .partition(|c| !c.nullable);
                if !required.is_empty() {
                    let names: Vec<&str> = required.iter().map(|c| c.name).collect();
                    return Err(IngestError::MissingColumn {
                        file: file.to_string(),
                        column: names.join(", "),
                    });
                }
                for c in optional {
                    warn!(
                        file,
                        column = c.name,
                        "optional column absent from every line: read as empty"
                    );
                }
            }
            Ok(df)
        }
    }
}

/// One problem with one value.
struct Problem {
    row: IdxSize,
    column: &'static str,
    reason: String,
}

/// Collects problems and marks bad rows.
struct Problems {
    bad: Vec<bool>,
    list: Vec<Problem>,
}

impl Problems {
    fn add(&mut self, row: usize, column: &'static str, reason: String) {
        self.bad[row] = true;
        self.list.push(Problem {
            row: row as IdxSize,
            column,
            reason,
        });
    }
}

const MISSING: &str = "missing value";

/// The check beyond the type, for text values.
fn check_str(check: Check, v: &str) -> Option<String> {
    match check {
        Check::OneOf(allowed) if !allowed.contains(&v) => {
            Some(format!("not one of {}: {v:?}", allowed.join("|")))
        }
        Check::Currency if ISO_4217.binary_search(&v).is_err() => {
            Some(format!("unknown ISO 4217 currency: {v:?}"))
        }
        _ => None,
    }
}

/// The check beyond the type, for integers.
fn check_int(check: Check, v: i64) -> Option<String> {
    match check {
        Check::Range(lo, hi) if v < lo || v > hi => Some(match (lo, hi) {
            (lo, i64::MAX) => format!("out of range {lo}..: {v}"),
            (i64::MIN, hi) => format!("out of range ..={hi}: {v}"),
            (lo, hi) => format!("out of range {lo}..={hi}: {v}"),
        }),
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
    // 719_163 = days from 0001-01-01 (CE day 1) to 1970-01-01.
    Some(date.num_days_from_ce() - 719_163)
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

/// Parse one text column into its contract type, recording problems. Problem cells
/// become null (their rows are dropped anyway).
fn parse_text<'a>(col: &contract::Column, ca: &'a StringChunked, p: &mut Problems) -> Series {
    let name: PlSmallStr = col.name.into();
    // (row, reason), added to `p` at the end (the iterators below borrow this).
    let mut problems: Vec<(usize, String)> = Vec::new();
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
                match check_str(col.check, v) {
                    Some(reason) => {
                        problems.push((i, reason));
                        None
                    }
                    None => Some(v),
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
                let d = parse_date(v);
                if d.is_none() {
                    problems.push((i, format!("not a date: {v:?}")));
                }
                d
            }),
        )
        .into_date()
        .into_series(),
        ColType::Ts => Int64Chunked::from_iter_options(
            name,
            ca.iter().enumerate().map(|(i, v)| {
                let v = present(i, v, &mut problems)?;
                parse_ts(v)
                    .map_err(|reason| problems.push((i, reason)))
                    .ok()
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

/// One contract column of a raw frame, typed; `Err` only for Polars failures.
fn type_column(col: &contract::Column, s: &Series, p: &mut Problems) -> PolarsResult<Series> {
    match (col.ty, s.dtype()) {
        // Typed sources (Parquet): take the values, check nulls and allowed values.
        (ColType::Int, DataType::Int64) => {
            check_nulls(col, s, p);
            if let Check::Range(..) = col.check {
                for (i, v) in s.i64()?.iter().enumerate() {
                    if let Some(reason) = v.and_then(|v| check_int(col.check, v)) {
                        p.add(i, col.name, reason);
                    }
                }
            }
            Ok(s.clone())
        }
        (ColType::Date, DataType::Date) | (ColType::Bool, DataType::Boolean) => {
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
            Ok(ms.into_datetime(TimeUnit::Milliseconds, None).into_series())
        }
        // Everything else through text, so that one parser decides what is valid.
        (_, DataType::String) => Ok(parse_text(col, s.str()?, p)),
        _ => {
            let text = s.cast(&DataType::String)?;
            Ok(parse_text(col, text.str()?, p))
        }
    }
}

/// Split a raw frame (text columns, or Parquet's own types) into the valid rows,
/// typed exactly as the contract says, and a quarantine frame (`file`, `row`,
/// `column`, `reason`, then the row's original values as text, one line per problem).
/// Columns beyond the contract are dropped.
pub fn validate(
    dataset: &Dataset,
    raw: DataFrame,
    file: &str,
) -> Result<(DataFrame, DataFrame), IngestError> {
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

    let mut p = Problems {
        bad: vec![false; n],
        list: Vec::new(),
    };
    let mut typed = Vec::with_capacity(dataset.columns.len());
    for col in dataset.columns {
        let s = raw.column(col.name).map_err(verr)?.as_materialized_series();
        typed.push(type_column(col, s, &mut p).map_err(verr)?.into_column());
    }
    let all = DataFrame::new(n, typed).map_err(verr)?;

    let n_bad = p.bad.iter().filter(|b| **b).count();
    let ok = if n_bad == 0 {
        all
    } else {
        let keep: BooleanChunked = p.bad.iter().map(|b| !b).collect();
        all.filter(&keep).map_err(verr)?
    };

    // Problems in row order, then column order within a row.
    let order = |c: &str| {
        dataset
            .columns
            .iter()
            .position(|x| x.name == c)
            .unwrap_or(usize::MAX)
    };
    p.list.sort_by_key(|x| (x.row, order(x.column)));
    let rows = IdxCa::from_vec("row".into(), p.list.iter().map(|x| x.row).collect());
    let mut cols = vec![
        Column::new("file".into(), vec![file; p.list.len()]),
        Column::new(
            "row".into(),
            p.list
                .iter()
                .map(|x| x.row as i64 + 1)
                .collect::<Vec<i64>>(),
        ),
        Column::new(
            "column".into(),
            p.list.iter().map(|x| x.column).collect::<Vec<&str>>(),
        ),
        Column::new(
            "reason".into(),
            p.list
                .iter()
                .map(|x| x.reason.as_str())
                .collect::<Vec<&str>>(),
        ),
    ];
    for col in dataset.columns {
        let s = raw.column(col.name).map_err(verr)?.as_materialized_series();
        let original = s
            .take(&rows)
            .map_err(verr)?
            .cast(&DataType::String)
            .map_err(verr)?;
        cols.push(original.into_column());
    }
    let quarantine = DataFrame::new(p.list.len(), cols).map_err(verr)?;
    Ok((ok, quarantine))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalDir;
    use chrono::TimeZone;
    use opnet_pipelines::contract::ALL;
    use std::path::Path;

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

    fn csv(text: &str) -> anyhow::Result<DataFrame> {
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
            let (mut typed, q) = validate(d, raw, "x")?;
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
        let (ok, q) = validate(
            &contract::INVOICES,
            csv(INVOICES_CSV)?,
            "/src/billing/invoices.csv",
        )?;
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
        let (ok, q) = validate(&contract::LEADS, raw, "leads.csv")?;
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
        let (ok, q) = validate(&contract::TRAINING, raw, "training.csv")?;
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
        let (ok, q) = validate(&contract::SURVEY_RESPONSES, raw, "s.csv")?;
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
        let (_, q) = validate(&contract::REFUNDS, raw, "r.csv")?;
        assert_eq!(
            quarantine_lines(&q)?,
            [(1, "amount_cents".into(), "out of range 0..: -5".into())]
        );
        Ok(())
    }

    #[test]
    fn missing_column_names_file_and_column() -> anyhow::Result<()> {
        let text = "invoice_id,customer_id,currency,issued_on,status,paid_on\ninv-1,c,USD,2025-08-01,open,\n";
        let err = validate(&contract::INVOICES, csv(text)?, "/src/billing/invoices.csv")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "missing column total_cents in /src/billing/invoices.csv"
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
}
