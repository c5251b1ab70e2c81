//! Fire times: a cron expression evaluated on the wall clock of the business
//! timezone and mapped to UTC with explicit rules for the DST gap and overlap.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use std::collections::BTreeSet;
use std::fmt;

use super::error::*;

/// Larger than any UTC-offset change of a zone at one transition (2 h in tzdb), so a
/// search that starts this far back on the wall clock sees both occurrences of an
/// ambiguous hour.
const MAX_SHIFT: TimeDelta = TimeDelta::hours(3);

/// A parsed cron expression and how it behaves at DST transitions.
///
/// The expression is matched against the local wall clock. A wall-clock match that
/// does not exist (spring forward) fires at the first valid instant after the gap if
/// the expression names one fixed time of day (`0 30 2 * * *`), and is skipped if it
/// repeats within the day (`0 0 * * * *`: the skipped hour never happened). A match
/// that exists twice (fall back) fires once, at its first occurrence, for a fixed time
/// of day, and at both occurrences for a repeating one (they are different hours).
/// This is croner's classification (`JobType`), applied by opnet.
#[derive(Clone)]
pub struct CronSchedule {
    expr: String,
    cron: Cron,
    fixed_time: bool,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronSchedule").field(&self.expr).finish()
    }
}

impl CronSchedule {
    pub fn parse(expr: &str) -> Result<CronSchedule, ScheduleError> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::Cron {
                expr: expr.into(),
                message: e.to_string(),
            })?;
        let fixed_time = cron.determine_job_type() == croner::JobType::FixedTime;
        Ok(CronSchedule {
            expr: expr.to_string(),
            cron,
            fixed_time,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The next wall-clock match strictly after `t` (a naive local time).
    fn wall_after(&self, t: NaiveDateTime) -> Result<NaiveDateTime, ScheduleError> {
        // Searching in UTC makes croner a pure wall-clock matcher: UTC has no DST, so
        // none of its own transition handling applies; the mapping is ours (`instants`).
        self.cron
            .find_next_occurrence(&Utc.from_utc_datetime(&t), false)
            .map(|d| d.naive_utc())
            .map_err(|e| ScheduleError::Cron {
                expr: self.expr.clone(),
                message: format!("no fire time after {t}: {e}"),
            })
    }

    /// The instants one wall-clock match stands for (none, one or two).
    fn instants(&self, tz: Tz, wall: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(a, b) => {
                let (first, second) = if a <= b { (a, b) } else { (b, a) };
                if self.fixed_time {
                    vec![first.with_timezone(&Utc)]
                } else {
                    vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
                }
            }
            LocalResult::None if self.fixed_time => {
                first_valid_after(tz, wall).into_iter().collect()
            }
            LocalResult::None => Vec::new(),
        }
    }

    /// The next `n` fire instants strictly after `after`, ascending, without repeats.
    pub fn next_fires(
        &self,
        tz: Tz,
        after: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
        let mut out = BTreeSet::new();
        if n == 0 {
            return Ok(Vec::new());
        }
        // Start early on the wall clock: after a fall-back, a wall time before
        // `after`'s can still have a second occurrence after it.
        let mut wall = after.with_timezone(&tz).naive_local() - MAX_SHIFT;
        loop {
            wall = self.wall_after(wall)?;
            out.extend(self.instants(tz, wall).into_iter().filter(|&t| t > after));
            // Once the wall clock is MAX_SHIFT past the n-th fire, no later match can
            // map before it.
            if let Some(nth) = out.iter().nth(n - 1)
                && wall > nth.with_timezone(&tz).naive_local() + MAX_SHIFT
            {
                break;
            }
        }
        Ok(out.into_iter().take(n).collect())
    }

    /// The last fire instant at or before `at` (within about a year), if any.
    pub fn prev_fire(
        &self,
        tz: Tz,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, ScheduleError> {
        // Widening windows keep this cheap for frequent and for rare expressions.
        for window in [
            TimeDelta::hours(2),
            TimeDelta::days(2),
            TimeDelta::days(32),
            TimeDelta::days(400),
        ] {
            let start = at - window;
            let mut last = None;
            let mut from = start;
            'scan: loop {
                for t in self.next_fires(tz, from, 64)? {
                    if t > at {
                        break 'scan;
                    }
                    last = Some(t);
                    from = t;
                }
            }
            if last.is_some() {
                return Ok(last);
            }
        }
        Ok(None)
    }
}

/// The first instant after a DST gap that contains `wall`.
fn first_valid_after(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    // Gaps are at most a few hours and start and end on whole seconds.
    let mut t = wall;
    for _ in 0..(MAX_SHIFT.num_seconds() + 1) {
        t += TimeDelta::seconds(1);
        if let Some(dt) = tz.from_local_datetime(&t).earliest() {
            return Some(dt.with_timezone(&Utc));
        }
    }
    None
}

/// The next `n` fires of a cron expression in business timezone `tz` strictly after
/// `after`, as UTC instants (see [`CronSchedule`] for the DST rules).
pub fn next_fires(
    cron: &str,
    tz: Tz,
    after: DateTime<Utc>,
    n: usize,
) -> Result<Vec<DateTime<Utc>>, ScheduleError> {
    CronSchedule::parse(cron)?.next_fires(tz, after, n)
}
