//! Tests of the retry policy: exponential delays up to the cap, jitter bounds, and
//! retry stopping at max attempts, at a permanent error, or at the first success.

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

const TINY: Backoff = Backoff {
    initial: Duration::from_millis(1),
    factor: 2.0,
    max_delay: Duration::from_millis(4),
    max_attempts: 4,
    jitter: Jitter::Full,
};

#[derive(Debug)]
enum E {
    Transient,
    Permanent,
}

impl Display for E {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

fn transient(e: &E) -> bool {
    matches!(e, E::Transient)
}

#[test]
fn delay_grows_exponentially_until_the_cap() {
    let p = Backoff {
        jitter: Jitter::None,
        ..DB_CONNECT
    };
    let ms: Vec<u128> = (1..=7).map(|a| delay(&p, a, 0.5).as_millis()).collect();
    assert_eq!(ms, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
    // Huge attempt numbers saturate at the cap instead of overflowing.
    assert_eq!(delay(&p, u32::MAX, 0.5), p.max_delay);
    // A factor below 1 is treated as 1: delays never shrink.
    let flat = Backoff { factor: 0.5, ..p };
    assert_eq!(delay(&flat, 3, 0.5), p.initial);
}

#[test]
fn jitter_stays_within_bounds() {
    for policy in [DB_CONNECT, SMTP_SEND, JOB_RUN, S3_REQUEST] {
        for attempt in 1..=policy.max_attempts + 2 {
            let full_base = delay(
                &Backoff {
                    jitter: Jitter::None,
                    ..policy
                },
                attempt,
                0.0,
            );
            for u in [0.0, 0.25, 0.5, 0.99, 1.0, -3.0, 7.0, f64::NAN] {
                let full = delay(
                    &Backoff {
                        jitter: Jitter::Full,
                        ..policy
                    },
                    attempt,
                    u,
                );
                assert!(full <= full_base, "{full:?} > {full_base:?}");
                let equal = delay(&policy, attempt, u);
                assert!(equal >= full_base / 2 && equal <= full_base);
                assert!(equal <= policy.max_delay);
            }
            assert_eq!(
                delay(
                    &Backoff {
                        jitter: Jitter::Full,
                        ..policy
                    },
                    attempt,
                    0.0
                ),
                Duration::ZERO
            );
        }
    }
}

#[test]
fn unit_random_is_in_range_and_varies() {
    let draws: Vec<f64> = (0..64).map(|i| unit_random("x", i)).collect();
    assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
    let first = draws[0];
    assert!(draws.iter().any(|u| *u != first), "jitter never varies");
}

#[tokio::test]
async fn retry_stops_at_max_attempts_on_transient_errors() {
    let (_guard, logs) = capture::start();
    let calls = AtomicU32::new(0);
    let r: Result<(), E> = retry(&TINY, "flaky", transient, || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(E::Transient)
    })
    .await;
    assert!(matches!(r, Err(E::Transient)));
    assert_eq!(calls.load(Ordering::SeqCst), TINY.max_attempts);
    assert_eq!(logs.retries(), 3, "{}", logs.text());
    assert!(logs.text().contains("what=\"flaky\""), "{}", logs.text());
}

#[tokio::test]
async fn retry_returns_at_once_on_a_permanent_error() {
    let calls = AtomicU32::new(0);
    let started = Instant::now();
    let r: Result<(), E> = retry(&JOB_RUN, "bad data", transient, || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err(E::Permanent)
    })
    .await;
    assert!(matches!(r, Err(E::Permanent)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(started.elapsed() < Duration::from_secs(1), "it waited");
}

#[tokio::test]
async fn retry_returns_the_first_success_and_permanent_after_transient() {
    let calls = AtomicU32::new(0);
    let r: Result<u32, E> = retry(&TINY, "recovers", transient, || async {
        match calls.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Err(E::Transient),
            n => Ok(n),
        }
    })
    .await;
    assert_eq!(r.ok(), Some(2));

    let calls = AtomicU32::new(0);
    let r: Result<(), E> = retry(&TINY, "then breaks", transient, || async {
        match calls.fetch_add(1, Ordering::SeqCst) {
            0 => Err(E::Transient),
            _ => Err(E::Permanent),
        }
    })
    .await;
    assert!(matches!(r, Err(E::Permanent)));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let once = Backoff {
        max_attempts: 1,
        ..TINY
    };
    let calls = AtomicU32::new(0);
    let _ = retry(&once, "no retry", transient, || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err::<(), _>(E::Transient)
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
