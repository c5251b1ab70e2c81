//! The Parquet lake (data-contract.md, "The lake"): immutable ingest snapshots under
//! `raw/`, published results under `marts/`, and files for people under `reports/`.
//!
//! Layout, relative to the lake's store:
//!
//! ```text
//! raw/<system>/<name>/ingested=<snapshot>/part-0.parquet      one per dataset and snapshot
//! raw/_snapshots/<snapshot>.toml                              manifest, written last
//! quarantine/<system>/<name>/ingested=<snapshot>/part-0.csv   rejected rows (see ingest)
//! warnings/<system>/<name>/ingested=<snapshot>/part-0.csv     kept rows ingest reports
//! marts/<table>/period=YYYY-MM/part-0.parquet                 overwritten by a re-run
//! ```
//!
//! A snapshot id is the UTC ingest time `2025-09-01T020000Z` (with `-2`, `-3`… when
//! two ingests share a second); paths spell it `ingested=<id>`. A snapshot exists only
//! once its manifest does: ingest writes every data file first and the manifest last,
//! so a crash mid-ingest leaves files nobody reads rather than a half snapshot. That
//! is what lets a re-run of a period read exactly the snapshot its run recorded.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use opnet_pipelines::contract::{self, Dataset};
use opnet_pipelines::{Inputs, Period};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::store::{ObjectStore, StoreError};

/// Where snapshot manifests live.
const MANIFESTS: &str = "raw/_snapshots/";

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {source}")]
    Polars {
        context: String,
        #[source]
        source: PolarsError,
    },
    #[error(
        "snapshot {snapshot} not found (no manifest at {location}; an interrupted ingest leaves none)"
    )]
    SnapshotNotFound { snapshot: String, location: String },
    #[error("bad snapshot manifest {location}: {reason}")]
    Manifest { location: String, reason: String },
    #[error("{location}: {reason}")]
    Schema { location: String, reason: String },
}

/// One dataset of a snapshot manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDataset {
    /// `billing/invoices`
    pub dataset: String,
    /// Location of the source file it was ingested from.
    pub source: String,
    /// `csv`, `jsonl` or `parquet`.
    pub format: String,
    /// `rows_in = rows_ok + rows_quarantined + rows_collapsed`.
    pub rows_in: u64,
    pub rows_ok: u64,
    pub rows_quarantined: u64,
    /// Identical repeats of a keyed row, dropped (each one is also a warning).
    #[serde(default)]
    pub rows_collapsed: u64,
    /// Warning lines (collapsed repeats, bad email addresses): rows kept but reported.
    #[serde(default)]
    pub warnings: u64,
    /// Lake key of the Parquet file.
    pub data: String,
    /// Lake key of the quarantine CSV, when rows were rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    /// Lake key of the warnings CSV, when there were warnings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings_file: Option<String>,
}

/// `raw/_snapshots/<snapshot>.toml`: what a snapshot holds and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub snapshot: String,
    /// sha256 of the sources (see `ingest`): equal sources, equal fingerprint.
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
    pub datasets: Vec<ManifestDataset>,
}

/// Sort key of a snapshot id: `2025-09-01T020000Z-10` after `…Z-2` after `…Z`.
fn snapshot_order(id: &str) -> (&str, u64) {
    match id.rsplit_once('-') {
        Some((base, n)) if base.ends_with('Z') => (base, n.parse().unwrap_or(0)),
        _ => (id, 1),
    }
}

fn polars_err(context: impl Into<String>) -> impl FnOnce(PolarsError) -> LakeError {
    let context = context.into();
    move |source| LakeError::Polars { context, source }
}

/// A Parquet file in memory.
fn to_parquet(df: &mut DataFrame, what: &str) -> Result<Vec<u8>, LakeError> {
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf)
        .finish(df)
        .map_err(polars_err(format!("writing {what} as Parquet")))?;
    Ok(buf)
}

/// A snapshot file to plan: scanned in place, or already read from the store.
enum SnapshotFile {
    Local(std::path::PathBuf),
    Bytes(Vec<u8>),
}

/// One dataset of a snapshot as a lazy frame, its schema checked against the
/// contract now so that a bad file fails here, with its name, rather than deep
/// inside a pipeline. An optional column ([`Dataset::optional_columns`]) is checked
/// when the file has it and stays absent when it does not: its absence is what the
/// source said (R8.1), not something to fill in.
fn snapshot_frame(d: &Dataset, location: &str, file: SnapshotFile) -> Result<LazyFrame, LakeError> {
    let mut lf = match file {
        SnapshotFile::Local(path) => {
            let path = PlRefPath::try_from_pathbuf(path)
                .map_err(polars_err(format!("opening {location}")))?;
            // The path holds `ingested=…`: without this Polars would add it as a hive
            // partition column.
            let args = ScanArgsParquet {
                hive_options: polars::io::HiveOptions::new_disabled(),
                ..Default::default()
            };
            LazyFrame::scan_parquet(path, args)
                .map_err(polars_err(format!("scanning {location}")))?
        }
        SnapshotFile::Bytes(bytes) => ParquetReader::new(std::io::Cursor::new(bytes))
            .finish()
            .map_err(polars_err(format!("reading {location}")))?
            .lazy(),
    };
    let schema = lf
        .collect_schema()
        .map_err(polars_err(format!("reading {location}")))?;
    for (i, col) in d.all_columns().enumerate() {
        let reason = match schema.get(col.name) {
            Some(dt) if *dt == col.ty.dtype() => continue,
            Some(dt) => format!(
                "column {} is {dt}, the contract says {}",
                col.name,
                col.ty.dtype()
            ),
            None if i >= d.columns.len() => continue,
            None => format!("missing column {}", col.name),
        };
        return Err(LakeError::Schema {
            location: location.to_string(),
            reason,
        });
    }
    // Decoded once, here: every job and period of a close collects several plans over
    // the same datasets, and a lazy scan would decode the Parquet again for each
    // (issue 13). 20 MB of Parquet at 1000 operators × 36 months is about
    // 150 MB in memory.
    let df = lf
        .collect()
        .map_err(polars_err(format!("reading {location}")))?;
    Ok(df.lazy())
}

/// The snapshot read last, in memory. A snapshot never changes once its manifest
/// exists, so a process that closes period after period — or the scheduler, which
/// closes one job and period at a time — decodes it once (issue 13).
#[derive(Clone, Default)]
struct SnapshotCache(Arc<std::sync::Mutex<Option<(String, Inputs)>>>);

impl std::fmt::Debug for SnapshotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self
            .0
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|(id, _)| id.clone()));
        f.debug_tuple("SnapshotCache").field(&held).finish()
    }
}

impl SnapshotCache {
    fn get(&self, snapshot: &str) -> Option<Inputs> {
        let held = self.0.lock().ok()?;
        match held.as_ref() {
            Some((id, inputs)) if id == snapshot => Some(inputs.clone()),
            _ => None,
        }
    }

    fn forget(&self, snapshot: &str) {
        if let Ok(mut held) = self.0.lock()
            && held.as_ref().is_some_and(|(id, _)| id == snapshot)
        {
            *held = None;
        }
    }

    fn put(&self, snapshot: &str, inputs: &Inputs) {
        if let Ok(mut held) = self.0.lock() {
            *held = Some((snapshot.to_string(), inputs.clone()));
        }
    }
}

/// The lake, on any [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    cache: SnapshotCache,
}

impl Lake {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            cache: SnapshotCache::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `raw/billing/invoices/ingested=2025-09-01T020000Z/part-0.parquet`
    pub fn snapshot_key(dataset: &Dataset, snapshot: &str) -> String {
        format!("raw/{}/ingested={snapshot}/part-0.parquet", dataset.path())
    }

    /// `quarantine/billing/invoices/ingested=2025-09-01T020000Z/part-0.csv`
    pub fn quarantine_key(dataset: &Dataset, snapshot: &str) -> String {
        format!(
            "quarantine/{}/ingested={snapshot}/part-0.csv",
            dataset.path()
        )
    }

    /// `warnings/crm/operators/ingested=2025-09-01T020000Z/part-0.csv`: rows ingest
    /// kept but reports (same columns as the quarantine file).
    pub fn warnings_key(dataset: &Dataset, snapshot: &str) -> String {
        format!("warnings/{}/ingested={snapshot}/part-0.csv", dataset.path())
    }

    /// `raw/_snapshots/2025-09-01T020000Z.toml`
    pub fn manifest_key(snapshot: &str) -> String {
        format!("{MANIFESTS}{snapshot}.toml")
    }

    /// `marts/payout_statements/period=2025-08/part-0.parquet`
    pub fn mart_key(table: &str, period: Period) -> String {
        format!("marts/{table}/period={period}/part-0.parquet")
    }

    /// Write one dataset of a snapshot; returns its location. The snapshot becomes
    /// visible only with [`Lake::write_manifest`].
    pub async fn write_snapshot(
        &self,
        dataset: &Dataset,
        snapshot: &str,
        df: &mut DataFrame,
    ) -> Result<String, LakeError> {
        let key = Self::snapshot_key(dataset, snapshot);
        let bytes = to_parquet(df, &self.store.location(&key))?;
        // Ingest writes a snapshot's files before its manifest, so a cached snapshot is
        // never written again; forgetting it anyway keeps this process honest if one is.
        self.cache.forget(snapshot);
        self.store.put(&key, bytes).await?;
        Ok(self.store.location(&key))
    }

    /// Publish a snapshot: its manifest is the last thing ingest writes.
    pub async fn write_manifest(&self, manifest: &SnapshotManifest) -> Result<String, LakeError> {
        let key = Self::manifest_key(&manifest.snapshot);
        let text = toml::to_string(manifest).map_err(|e| LakeError::Manifest {
            location: self.store.location(&key),
            reason: e.to_string(),
        })?;
        self.store.put(&key, text.into_bytes()).await?;
        Ok(self.store.location(&key))
    }

    pub async fn read_manifest(&self, snapshot: &str) -> Result<SnapshotManifest, LakeError> {
        let key = Self::manifest_key(snapshot);
        let location = self.store.location(&key);
        let bytes = match self.store.get(&key).await {
            Ok(b) => b,
            Err(StoreError::NotFound { .. }) => {
                return Err(LakeError::SnapshotNotFound {
                    snapshot: snapshot.to_string(),
                    location,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let text = String::from_utf8(bytes).map_err(|e| LakeError::Manifest {
            location: location.clone(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| LakeError::Manifest {
            location,
            reason: e.to_string(),
        })
    }

    /// Whether `snapshot` is taken: a manifest, or data files of an interrupted ingest
    /// (whose id is not reused so that its leftovers never mix with a new snapshot).
    pub async fn snapshot_id_taken(&self, snapshot: &str) -> Result<bool, LakeError> {
        if self.store.exists(&Self::manifest_key(snapshot)).await? {
            return Ok(true);
        }
        for d in contract::ALL {
            if self.store.exists(&Self::snapshot_key(d, snapshot)).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Complete snapshots (those with a manifest), oldest first.
    pub async fn snapshots(&self) -> Result<Vec<String>, LakeError> {
        let mut ids: Vec<String> = self
            .store
            .list(MANIFESTS)
            .await?
            .into_iter()
            .filter_map(|k| {
                let name = k.strip_prefix(MANIFESTS)?;
                // Only direct children: nothing else is expected here, but be strict.
                let id = name.strip_suffix(".toml")?;
                (!id.contains('/')).then(|| id.to_string())
            })
            .collect();
        ids.sort_by(|a, b| snapshot_order(a).cmp(&snapshot_order(b)));
        Ok(ids)
    }

    /// Every dataset of a complete snapshot in the contract's column names and dtypes
    /// (the required columns, and the optional ones exactly when the snapshot has them),
    /// decoded into memory (lazy frames over in-memory data). The last snapshot read
    /// stays in memory for the next call.
    pub async fn read_snapshot(&self, snapshot: &str) -> Result<Inputs, LakeError> {
        let manifest = self.read_manifest(snapshot).await?;
        if let Some(inputs) = self.cache.get(snapshot) {
            return Ok(inputs);
        }
        // Gather the files (async, store I/O) ...
        let mut files = Vec::with_capacity(contract::ALL.len());
        for d in contract::ALL {
            let path = d.path();
            if !manifest.datasets.iter().any(|m| m.dataset == path) {
                return Err(LakeError::Schema {
                    location: self.store.location(&Self::manifest_key(snapshot)),
                    reason: format!("snapshot {snapshot} has no dataset {path}"),
                });
            }
            let key = Self::snapshot_key(d, snapshot);
            let location = self.store.location(&key);
            let file = match self.store.local_path(&key) {
                Some(file) if file.is_file() => SnapshotFile::Local(file),
                Some(_) => return Err(StoreError::NotFound { location }.into()),
                None => SnapshotFile::Bytes(self.store.get(&key).await?),
            };
            files.push((*d, location, file));
        }
        // ... then plan and check them off the async workers: Polars blocks while it
        // reads Parquet metadata (and refuses to on a current-thread runtime).
        let inputs = tokio::task::spawn_blocking(move || {
            // The files decode side by side (most are too small to keep Polars' pool
            // busy on their own); errors are reported in contract order all the same.
            type Decoded = (String, String, Result<LazyFrame, LakeError>);
            let frames: Vec<Decoded> = std::thread::scope(|s| {
                let decoding: Vec<_> = files
                    .into_iter()
                    .map(|(d, location, file)| {
                        let at = location.clone();
                        (d, at, s.spawn(move || snapshot_frame(d, &location, file)))
                    })
                    .collect();
                decoding
                    .into_iter()
                    .map(|(d, location, task)| {
                        let lf = task.join().unwrap_or_else(|_| {
                            Err(LakeError::Schema {
                                location: location.clone(),
                                reason: "decoding the file panicked".into(),
                            })
                        });
                        (d.path(), location, lf)
                    })
                    .collect()
            });
            let mut inputs = Inputs::empty();
            for (path, location, lf) in frames {
                inputs
                    .set(&path, lf?)
                    .map_err(|reason| LakeError::Schema { location, reason })?;
            }
            Ok::<_, LakeError>(inputs)
        })
        .await
        .map_err(|e| LakeError::Schema {
            location: self.store.location(&Self::manifest_key(snapshot)),
            reason: format!("reading the snapshot was interrupted: {e}"),
        })??;
        self.cache.put(snapshot, &inputs);
        Ok(inputs)
    }

    /// Publish a mart table for a period; a re-run overwrites it. Returns its location.
    pub async fn write_mart(
        &self,
        table: &str,
        period: Period,
        df: &mut DataFrame,
    ) -> Result<String, LakeError> {
        let key = Self::mart_key(table, period);
        let bytes = to_parquet(df, &self.store.location(&key))?;
        self.store.put(&key, bytes).await?;
        Ok(self.store.location(&key))
    }

    /// Any other file (reports, charts); returns its location.
    pub async fn put_file(&self, key: &str, bytes: Vec<u8>) -> Result<String, LakeError> {
        self.store.put(key, bytes).await?;
        Ok(self.store.location(key))
    }

    /// The newest complete snapshot whose sources had this fingerprint.
    pub async fn find_snapshot_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<String>, LakeError> {
        for id in self.snapshots().await?.into_iter().rev() {
            if self.read_manifest(&id).await?.fingerprint == fingerprint {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The newest complete snapshot.
    pub async fn latest_snapshot(&self) -> Result<Option<String>, LakeError> {
        Ok(self.snapshots().await?.pop())
    }
}

#[cfg(test)]
mod tests;
