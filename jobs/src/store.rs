//! Object storage behind one small trait, so the lake and the ingest sources can live
//! in a local directory today and in S3 later without the callers changing.
//!
//! Keys are `/`-separated relative paths (`raw/billing/invoices/…/part-0.parquet`).
//! Writes are atomic (a temporary file renamed into place), so a reader never sees a
//! half-written object and a crash leaves either the old object or the new one.
//! `list` has S3 semantics: a plain string prefix, not a directory.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

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
    #[error("{0}")]
    Unsupported(String),
}

impl StoreError {
    /// An I/O error may pass (a network filesystem, later S3, hiccups); a missing
    /// object, a bad key or an unsupported store are the same on every try.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Io { .. } => true,
            StoreError::NotFound { .. }
            | StoreError::InvalidKey { .. }
            | StoreError::Unsupported(_) => false,
        }
    }
}

/// A flat key → bytes store (a local directory, later S3).
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
        let path = self.path(key)?;
        tokio::fs::read(&path).await.map_err(|e| self.io(key, e))
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        use tokio::io::AsyncWriteExt;
        let path = self.path(key)?;
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
            self.path(dir)?;
        }
        let mut out = Vec::new();
        walk(&self.root, dir, &mut out).await?;
        out.retain(|k| k.starts_with(prefix));
        out.sort();
        Ok(out)
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path(key)?;
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
        self.path(key).ok()
    }
}

/// Open a store from a URL: `file:DIR`, `file://DIR` or a plain `DIR` is a local
/// directory; `s3://bucket/prefix` is not supported yet.
pub fn open(url: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    if url.starts_with("s3://") {
        return Err(StoreError::Unsupported(format!(
            "S3 storage ({url}) comes with the production issue; use a local directory for now"
        )));
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
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_list_exists() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let s = LocalDir::new(tmp.path());
        s.put("a/b/c.txt", b"hello".to_vec()).await?;
        s.put("a/b/d.txt", b"x".to_vec()).await?;
        s.put("a/bb.txt", b"y".to_vec()).await?;
        s.put("z.txt", b"z".to_vec()).await?;
        assert_eq!(s.get("a/b/c.txt").await?, b"hello");
        // overwrite
        s.put("a/b/c.txt", b"bye".to_vec()).await?;
        assert_eq!(s.get("a/b/c.txt").await?, b"bye");
        assert_eq!(s.list("a/b/").await?, vec!["a/b/c.txt", "a/b/d.txt"]);
        assert_eq!(
            s.list("a/b").await?,
            vec!["a/b/c.txt", "a/b/d.txt", "a/bb.txt"]
        );
        assert_eq!(s.list("").await?.len(), 4);
        assert!(s.list("nope/").await?.is_empty());
        assert!(s.exists("z.txt").await?);
        assert!(!s.exists("a/b").await?, "a directory is not an object");
        assert!(!s.exists("missing").await?);
        // no temp files left behind
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("a/b"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2);
        Ok(())
    }

    #[tokio::test]
    async fn not_found_names_location() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let s = LocalDir::new(tmp.path());
        let err = s
            .get("x/y.csv")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("not found"), "{err}");
        assert!(
            err.contains(&tmp.path().join("x/y.csv").display().to_string()),
            "{err}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn keys_cannot_escape_root() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let s = LocalDir::new(tmp.path());
        assert!(matches!(
            s.put("../x", vec![]).await,
            Err(StoreError::InvalidKey { .. })
        ));
        assert!(matches!(
            s.get("/etc/passwd").await,
            Err(StoreError::InvalidKey { .. })
        ));
        Ok(())
    }

    #[test]
    fn open_urls() {
        assert!(open("file:/tmp/lake").is_ok());
        assert!(open("/tmp/lake").is_ok());
        assert_eq!(
            open("file:///tmp/lake").map(|s| s.location("k")).ok(),
            Some("/tmp/lake/k".to_string())
        );
        let err = open("s3://bucket/lake")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("S3") && err.contains("production issue"),
            "{err}"
        );
        assert!(matches!(open("gs://b/x"), Err(StoreError::Unsupported(_))));
    }

    #[test]
    fn transient_store_errors() {
        let cases = [
            (
                StoreError::Io {
                    location: "/lake/k".into(),
                    source: std::io::Error::from(std::io::ErrorKind::TimedOut),
                },
                true,
            ),
            (
                StoreError::NotFound {
                    location: "/lake/k".into(),
                },
                false,
            ),
            (
                StoreError::InvalidKey {
                    key: "../x".into(),
                    reason: "`..` is not allowed",
                },
                false,
            ),
            (StoreError::Unsupported("s3".into()), false),
        ];
        for (e, transient) in cases {
            assert_eq!(e.is_transient(), transient, "{e}");
        }
    }
}
