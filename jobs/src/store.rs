//! Object storage behind one small trait, so the lake and the ingest sources can live
//! in a local directory or in S3 (`s3.rs`) without the callers changing.
//!
//! Keys are `/`-separated relative paths (`raw/billing/invoices/…/part-0.parquet`).
//! Writes are atomic (locally a temporary file renamed into place; on S3 a PutObject
//! is atomic by itself), so a reader never sees a half-written object and a crash
//! leaves either the old object or the new one. `list` has S3 semantics: a plain
//! string prefix, not a directory.
//!
//! A local store reads and writes only regular files and directories below its root:
//! a symbolic link anywhere below the root (issue 9 item 15: a link in a source folder
//! pointing at `/etc/…` or another system's files), or a FIFO or device in place of a
//! file, is refused with an error naming its path. The root itself may be a link (it
//! is configuration, chosen by the operator).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

mod s3;

pub use s3::{Failure, MAX_PAGE_SIZE, S3Config, S3Options, S3Store, S3Url};

/// What can go wrong talking to a store. Every variant names the full location so
/// an operator can go and look.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {location}")]
    NotFound { location: String },
    #[error("i/o error at {location}: {source}")]
    Io {
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    /// A local path below the root that is a symbolic link, or not a regular file
    /// where a file is read.
    #[error("refusing {location}: {reason}")]
    Refused {
        location: String,
        reason: &'static str,
    },
    #[error("{0}")]
    Unsupported(String),
    /// A store that cannot be opened: a malformed URL, no region for S3.
    #[error("cannot open {url}: {reason}")]
    Open { url: String, reason: String },
    /// A remote store (S3) refused or failed a request; `transient` says whether it
    /// may pass (throttling, 5xx, timeouts, dropped connections) or not (access
    /// denied, no such bucket, other 4xx).
    #[error("{location}: {reason}")]
    Remote {
        location: String,
        reason: String,
        transient: bool,
    },
}

impl StoreError {
    /// An I/O error may pass (a network filesystem hiccups), and so may a remote
    /// error its store classified as transient; a missing object, a bad key or URL,
    /// or an unsupported store are the same on every try.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Io { .. } => true,
            StoreError::Remote { transient, .. } => *transient,
            StoreError::NotFound { .. }
            | StoreError::InvalidKey { .. }
            | StoreError::Refused { .. }
            | StoreError::Open { .. }
            | StoreError::Unsupported(_) => false,
        }
    }
}

/// A flat key → bytes store (a local directory, S3).
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// The object's bytes; [`StoreError::NotFound`] names the full location.
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// Write an object atomically (readers see the old or the new bytes, never a mix).
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError>;
    /// Keys starting with `prefix` (a string prefix, as in S3), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;
    /// Human-readable full path or URL of `key`, for messages and run records.
    fn location(&self, key: &str) -> String;
    /// A local file path for `key`, when there is one, so Polars can scan it directly
    /// instead of going through a byte buffer.
    fn local_path(&self, _key: &str) -> Option<PathBuf> {
        None
    }
}

/// A store rooted at a local directory.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`. Keys are relative and may not climb out of the root: a key
    /// comes from config or a manifest, and must not be able to touch other files.
    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let invalid = |reason| StoreError::InvalidKey {
            key: key.to_string(),
            reason,
        };
        if key.is_empty() {
            return Err(invalid("empty key"));
        }
        let rel = Path::new(key);
        for c in rel.components() {
            match c {
                Component::Normal(_) => {}
                Component::CurDir => {}
                Component::ParentDir => return Err(invalid("`..` is not allowed")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(invalid("keys are relative to the store root"));
                }
            }
        }
        Ok(self.root.join(rel))
    }

    /// [`LocalDir::path`], refusing a key when any existing part of its path below the
    /// root is a symbolic link (a link could lead out of the root).
    fn safe_path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let path = self.path(key)?;
        let mut at = self.root.clone();
        for c in Path::new(key).components() {
            let Component::Normal(part) = c else { continue };
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(StoreError::Refused {
                        location: at.display().to_string(),
                        reason: "it is a symbolic link; only regular files and directories inside the store's root are read or written",
                    });
                }
                Ok(_) => {}
                // What does not exist yet cannot be a link; `put` creates it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(self.io(key, e)),
            }
        }
        Ok(path)
    }

    fn io(&self, key: &str, source: std::io::Error) -> StoreError {
        if source.kind() == std::io::ErrorKind::NotFound {
            StoreError::NotFound {
                location: self.location(key),
            }
        } else {
            StoreError::Io {
                location: self.location(key),
                source,
            }
        }
    }
}

/// Keys below `dir` (relative to `root`), recursively, skipping hidden entries (which
/// include the temporary files of in-flight `put`s).
async fn walk(root: &Path, dir: &str, out: &mut Vec<String>) -> Result<(), StoreError> {
    let mut stack = vec![dir.to_string()];
    while let Some(rel) = stack.pop() {
        let full = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let io = |source| StoreError::Io {
            location: full.display().to_string(),
            source,
        };
        let mut rd = match tokio::fs::read_dir(&full).await {
            Ok(rd) => rd,
            // A prefix whose directory does not exist lists nothing, as in S3.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => continue,
            Err(e) => return Err(io(e)),
        };
        while let Some(entry) = rd.next_entry().await.map_err(io)? {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let key = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry.file_type().await.map_err(io)?;
            if ft.is_dir() {
                stack.push(key);
            } else {
                out.push(key);
            }
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl ObjectStore for LocalDir {
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.safe_path(key)?;
        // A FIFO would block the read forever, a device could be endless.
        let meta = tokio::fs::symlink_metadata(&path)
            .await
            .map_err(|e| self.io(key, e))?;
        if !meta.is_file() {
            return Err(StoreError::Refused {
                location: self.location(key),
                reason: "not a regular file",
            });
        }
        tokio::fs::read(&path).await.map_err(|e| self.io(key, e))
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        use tokio::io::AsyncWriteExt;
        let path = self.safe_path(key)?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(StoreError::InvalidKey {
                key: key.to_string(),
                reason: "no file name",
            });
        };
        let io = |e| self.io(key, e);
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        // Same directory as the target, so the rename is atomic (same filesystem);
        // hidden so that `list` never returns it.
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            uuid::Uuid::new_v4()
        ));
        let write = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            f.write_all(&bytes).await?;
            // Durable before it becomes visible: the lake's manifests are written last
            // and must never point at data lost in a crash.
            f.sync_all().await?;
            drop(f);
            tokio::fs::rename(&tmp, &path).await
        };
        match write.await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Best effort: the temp file is hidden anyway.
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(io(e))
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Walk only the deepest directory the prefix names, then filter by the
        // string prefix (so `billing/invoices.` finds `billing/invoices.csv`).
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        if !dir.is_empty() {
            self.safe_path(dir)?;
        }
        let mut out = Vec::new();
        walk(&self.root, dir, &mut out).await?;
        out.retain(|k| k.starts_with(prefix));
        out.sort();
        Ok(out)
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.safe_path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(key, e)),
        }
    }

    fn location(&self, key: &str) -> String {
        if key.is_empty() {
            self.root.display().to_string()
        } else {
            self.root.join(key).display().to_string()
        }
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        // No direct path through a link: the caller then `get`s, which says why not.
        self.safe_path(key).ok()
    }
}

/// Open a store from a URL: `file:DIR`, `file://DIR` or a plain `DIR` is a local
/// directory; `s3://bucket[/prefix]` is S3 (or an S3-compatible server) configured by
/// `s3` and the standard AWS chain. Async because loading the AWS configuration is.
pub async fn open(url: &str, s3: &S3Config) -> Result<Arc<dyn ObjectStore>, StoreError> {
    if url.starts_with("s3://") {
        return Ok(Arc::new(S3Store::connect(url, &S3Options::new(s3)).await?));
    }
    let dir = if let Some(rest) = url.strip_prefix("file://") {
        rest
    } else if let Some(rest) = url.strip_prefix("file:") {
        rest
    } else if let Some((scheme, _)) = url.split_once("://") {
        return Err(StoreError::Unsupported(format!(
            "unsupported storage scheme {scheme}:// in {url} (expected a directory, file: or s3://)"
        )));
    } else {
        url
    };
    if dir.is_empty() {
        return Err(StoreError::Unsupported(format!(
            "empty directory in storage URL {url:?}"
        )));
    }
    Ok(Arc::new(LocalDir::new(dir)))
}

#[cfg(test)]
mod tests;
