//! Bounded retries with exponential backoff and jitter, for the failures that go away
//! by themselves: a database that is restarting, an SMTP relay that drops a
//! connection or answers 4xx, a store that hiccups or an S3 bucket that throttles. Permanent failures — bad data,
//! broken control totals, a 5xx SMTP reply, a malformed address — are never retried:
//! each layer says which of its errors are transient (`DbError::is_transient`,
//! `MailError::is_transient`, `StoreError::is_transient`, `JobError::is_transient`)
//! and [`retry`] asks that predicate before it waits.
//!
//! The policies used in production are the constants below; they are deliberately
//! modest (a few attempts, seconds of waiting) because every caller is a batch run
//! that a later run, or the daemon's next wake, retries anyway. The wait before retry
//! `n` is `min(initial · factorⁿ⁻¹, max_delay)`, jittered (see [`Jitter`]) so that
//! replicas failing together do not retry in lockstep.

use std::fmt::Display;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::{Duration, Instant, SystemTime};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How a computed delay is randomised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// The exact exponential delay (tests and reasoning about bounds).
    None,
    /// Uniform in `[0, delay]`: spreads retries most, may retry at once.
    Full,
    /// Uniform in `[delay/2, delay]`: spread out, yet always waits at least half.
    Equal,
}

/// A retry policy: at most `max_attempts` calls, waiting an exponentially growing,
/// capped and jittered delay between them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The delay before the second attempt (before jitter).
    pub initial: Duration,
    /// Growth per attempt (2.0 doubles).
    pub factor: f64,
    /// No delay exceeds this, jitter included.
    pub max_delay: Duration,
    /// Calls in all, the first one included (1 = no retry).
    pub max_attempts: u32,
    pub jitter: Jitter,
}

/// Connecting to the database (`Db::connect`): 3 attempts, 0.5 s → 1 s (capped at
/// 8 s), so a database that is restarting or not up yet does not fail a cron run.
/// Each attempt itself already waits out refused connections for the pool's acquire
/// timeout (20 s; sqlx retries those internally), so a wrong URL still fails within
/// about a minute at the terminal.
pub const DB_CONNECT: Backoff = Backoff {
    initial: Duration::from_millis(500),
    factor: 2.0,
    max_delay: Duration::from_secs(8),
    max_attempts: 3,
    jitter: Jitter::Equal,
};

/// Sending one email over SMTP (`deliver_queued`): 3 attempts, 1 s → 2 s (capped at
/// 4 s), before the row is marked `failed`; later deliveries then retry it up to
/// `MAX_ATTEMPTS` times across runs.
pub const SMTP_SEND: Backoff = Backoff {
    initial: Duration::from_secs(1),
    factor: 2.0,
    max_delay: Duration::from_secs(4),
    max_attempts: 3,
    jitter: Jitter::Equal,
};

/// A job run of the close that failed transiently (`close`): retried as a new run
/// (new `run_id`) up to 3 times — 4 runs in all — after 2 s → 4 s → 8 s (capped at
/// 15 s). Each failed run rolled back and keeps its `failed` ledger row.
pub const JOB_RUN: Backoff = Backoff {
    initial: Duration::from_secs(2),
    factor: 2.0,
    max_delay: Duration::from_secs(15),
    max_attempts: 4,
    jitter: Jitter::Equal,
};

/// One S3 request (`store::S3Store`: a GET, PUT, HEAD or one LIST page): 4 attempts,
/// 0.5 s → 1 s → 2 s (capped at 8 s), for throttling (`SlowDown`), 5xx, timeouts and
/// dropped connections. The SDK's own retries are off, so this is the only loop at
/// the request level; a close's job run that still fails transiently is retried as a
/// whole by [`JOB_RUN`].
pub const S3_REQUEST: Backoff = Backoff {
    initial: Duration::from_millis(500),
    factor: 2.0,
    max_delay: Duration::from_secs(8),
    max_attempts: 4,
    jitter: Jitter::Equal,
};

/// The wait after failed attempt `attempt` (1-based) with `unit_random` in `[0, 1]`
/// (clamped): `min(initial · factor^(attempt-1), max_delay)`, then jittered. Pure, so
/// its bounds are testable.
pub fn delay(policy: &Backoff, attempt: u32, unit_random: f64) -> Duration {
    let cap = policy.max_delay.as_secs_f64();
    let exp = attempt.saturating_sub(1).min(64) as i32;
    let base = (policy.initial.as_secs_f64() * policy.factor.max(1.0).powi(exp)).min(cap);
    // NaN (a broken random source) counts as 1: the longest wait, never a busy loop.
    let u = if unit_random.is_nan() {
        1.0
    } else {
        unit_random.clamp(0.0, 1.0)
    };
    let secs = match policy.jitter {
        Jitter::None => base,
        Jitter::Full => base * u,
        Jitter::Equal => base / 2.0 + base / 2.0 * u,
    };
    // `try_`: a cap near `Duration::MAX` may not round-trip through f64.
    Duration::try_from_secs_f64(secs.max(0.0))
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay)
}

/// A uniform number in `[0, 1)` for jitter.
///
/// `rand` is built without `os_rng`/`thread_rng` (default features off), so it has no
/// OS-seeded generator. The seed instead comes from std's `RandomState` — which is
/// seeded from the OS per process and varies per instance — hashed with what is being
/// retried, the attempt and the clock; a ChaCha8 draw from that seed gives the number.
/// Jitter only needs replicas to disagree, not cryptographic quality.
pub fn unit_random(what: &str, attempt: u32) -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    what.hash(&mut h);
    attempt.hash(&mut h);
    Instant::now().hash(&mut h);
    SystemTime::now().hash(&mut h);
    std::process::id().hash(&mut h);
    ChaCha8Rng::seed_from_u64(h.finish()).random::<f64>()
}

/// Log that attempt `attempt` of `what` failed transiently and wait before the next.
/// For callers that cannot use [`retry`] because each attempt has side effects of its
/// own (the close records a ledger row per run).
pub async fn pause(policy: &Backoff, what: &str, attempt: u32, error: &dyn Display) {
    tokio::time::sleep(announce(policy, what, attempt, error)).await;
}

/// Log the retry and return how long to wait. Separate from the sleep so that
/// [`retry`] holds no `&dyn Display` across an await: its future stays `Send` (the
/// object stores' async-trait methods need that) whatever the error type.
fn announce(policy: &Backoff, what: &str, attempt: u32, error: &dyn Display) -> Duration {
    let wait = delay(policy, attempt, unit_random(what, attempt));
    tracing::warn!(
        what,
        attempt,
        delay_ms = wait.as_millis() as u64,
        error = %error,
        "Retrying after a transient failure"
    );
    wait
}

/// Call `op` until it succeeds, fails with an error `is_transient` rejects, or has
/// been called `policy.max_attempts` times; returns its last result. A permanent
/// error returns at once, without waiting.
pub async fn retry<T, E, F, Fut>(
    policy: &Backoff,
    what: &str,
    is_transient: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1u32;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < policy.max_attempts && is_transient(&e) => {
                let wait = announce(policy, what, attempt, &e);
                drop(e);
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Test support: capture this thread's log lines (a `#[tokio::test]` runs on one
/// thread), so a test can count the retries a call made.
#[cfg(test)]
pub(crate) mod capture {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

    impl Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Logs {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
        /// How many "Retrying after a transient failure" lines were logged.
        pub(crate) fn retries(&self) -> usize {
            self.text()
                .matches("Retrying after a transient failure")
                .count()
        }
    }

    /// Start capturing; logging goes back to normal when the guard drops.
    pub(crate) fn start() -> (tracing::subscriber::DefaultGuard, Logs) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (tracing::subscriber::set_default(subscriber), logs)
    }
}

#[cfg(test)]
mod tests;
