//! Crash points, for the crash tests (issue 5): with `OPNET_FAILPOINT=<name>[@<n>]`
//! set, the process stops at the `n`-th pass (default the first) through the point
//! called `name` — it prints `opnet: failpoint <name> reached` on stderr and sleeps —
//! so a test can `kill -9` it at exactly that place (during ingest, inside a job's
//! transaction, after a commit, between an SMTP accept and its mark…) and then check
//! that a restart completes the work without losing or repeating anything.
//!
//! Why not the `fail` crate: it has no action that tells another process "I am
//! here now" (its `pause` is silent), and enabling it needs a separate cargo feature
//! build of the binary the tests run. Unset (production), a point costs one load of
//! a cached `OnceLock`. The points are listed in docs/operations.md.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every crash point in the code, for documentation and for the tests.
pub const POINTS: [&str; 5] = [
    INGEST_BEFORE_MANIFEST,
    JOB_BEFORE_COMMIT,
    JOB_AFTER_COMMIT,
    DELIVER_AFTER_SEND,
    DELIVER_AFTER_MARK,
];

/// Ingest: every dataset's snapshot file written, the manifest not yet.
pub const INGEST_BEFORE_MANIFEST: &str = "ingest.before-manifest";
/// A job run: rows written, emails queued, marts published, not committed.
pub const JOB_BEFORE_COMMIT: &str = "job.before-commit";
/// A job run committed; its emails not yet delivered.
pub const JOB_AFTER_COMMIT: &str = "job.after-commit";
/// Delivery: the SMTP relay accepted a mail, the outbox does not yet say `sent`.
pub const DELIVER_AFTER_SEND: &str = "deliver.after-send";
/// Delivery: a mail marked `sent`, the next one not yet sent.
pub const DELIVER_AFTER_MARK: &str = "deliver.after-mark";

struct Armed {
    name: String,
    nth: u64,
    passes: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("OPNET_FAILPOINT").ok()?;
            let (name, nth) = match spec.split_once('@') {
                Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
                None => (spec, 1),
            };
            Some(Armed {
                name,
                nth,
                passes: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Pass through crash point `name`: returns at once unless it is the armed one and
/// this is the armed pass, in which case the process never returns from here.
pub fn point(name: &str) {
    let Some(a) = armed() else { return };
    if a.name != name || a.passes.fetch_add(1, Ordering::SeqCst) + 1 != a.nth {
        return;
    }
    eprintln!("opnet: failpoint {name} reached");
    loop {
        // Blocking on purpose: nothing on this thread may move on. The test kills us.
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
