//! R0.1 — the monthly period `YYYY-MM` and calendar-month arithmetic.
//!
//! Every job runs for one period; all month arithmetic in opnet goes through this
//! type so that "M−3", "end of M" and tenure (R1.1) mean the same thing everywhere.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A calendar month, e.g. `2025-08`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Period {
    year: i32,
    month: u32,
}

/// A period string that is not `YYYY-MM` with a month 01–12.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid period {0:?}: expected YYYY-MM (e.g. 2025-08)")]
pub struct PeriodError(pub String);

impl Period {
    pub fn new(year: i32, month: u32) -> Result<Self, PeriodError> {
        if (1..=12).contains(&month) && (1..=9999).contains(&year) {
            Ok(Self { year, month })
        } else {
            Err(PeriodError(format!("{year:04}-{month:02}")))
        }
    }

    pub fn parse(s: &str) -> Result<Self, PeriodError> {
        let err = || PeriodError(s.to_string());
        let (y, m) = s.split_once('-').ok_or_else(err)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(err());
        }
        let year: i32 = y.parse().map_err(|_| err())?;
        let month: u32 = m.parse().map_err(|_| err())?;
        Self::new(year, month).map_err(|_| err())
    }

    pub fn year(&self) -> i32 {
        self.year
    }

    pub fn month(&self) -> u32 {
        self.month
    }

    /// R1.1 `months(d) = 12·year + month`.
    pub fn months(&self) -> i32 {
        12 * self.year + self.month as i32
    }

    pub fn from_months(m: i32) -> Self {
        let zero_based = m - 1;
        Self {
            year: zero_based.div_euclid(12),
            month: (zero_based.rem_euclid(12) + 1) as u32,
        }
    }

    /// Calendar-month arithmetic: `2025-01 + (−3) = 2024-10`.
    pub fn add_months(&self, n: i32) -> Self {
        Self::from_months(self.months() + n)
    }

    pub fn prev(&self) -> Self {
        self.add_months(-1)
    }

    pub fn next(&self) -> Self {
        self.add_months(1)
    }

    pub fn of_date(d: NaiveDate) -> Self {
        Self {
            year: d.year(),
            month: d.month(),
        }
    }

    pub fn first_day(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("valid by construction")
    }

    /// "End of M" (R0.1): the last calendar day of M.
    pub fn last_day(&self) -> NaiveDate {
        self.next()
            .first_day()
            .pred_opt()
            .expect("not the first day of time")
    }

    pub fn days(&self) -> i64 {
        (self.next().first_day() - self.first_day()).num_days()
    }

    /// Periods from `self` to `end`, both included (empty when `end < self`).
    pub fn through(self, end: Period) -> impl Iterator<Item = Period> {
        (self.months()..=end.months()).map(Period::from_months)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Period {
    type Err = PeriodError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Period {
    type Error = PeriodError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Period> for String {
    fn from(p: Period) -> String {
        p.to_string()
    }
}

/// Days since 1970-01-01: the physical value of a Polars `Date`.
pub fn date_to_days(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

/// Inverse of [`date_to_days`].
pub fn days_to_date(days: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Duration::days(days as i64)
}

/// Milliseconds since the epoch of 00:00 UTC on `d`: the physical value of a Polars
/// `Datetime(ms)` — "end of M" for timestamps is this for the first day of M+1 (R4).
pub fn date_to_millis(d: NaiveDate) -> i64 {
    date_to_days(d) as i64 * 86_400_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r0_1_month_arithmetic_crosses_years() {
        let p = Period::parse("2025-01").unwrap();
        assert_eq!(p.add_months(-3).to_string(), "2024-10");
        assert_eq!(p.add_months(12).to_string(), "2026-01");
        assert_eq!(p.prev().to_string(), "2024-12");
    }

    #[test]
    fn r0_1_end_of_month_handles_leap_years() {
        assert_eq!(
            Period::parse("2024-02").unwrap().last_day().to_string(),
            "2024-02-29"
        );
        assert_eq!(
            Period::parse("2025-02").unwrap().last_day().to_string(),
            "2025-02-28"
        );
        assert_eq!(Period::parse("2025-12").unwrap().days(), 31);
    }

    #[test]
    fn r0_1_rejects_malformed_periods() {
        for bad in ["2025-13", "2025-00", "2025-1", "25-01", "2025/01", ""] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn through_is_inclusive_and_ordered() {
        let a = Period::parse("2024-11").unwrap();
        let b = Period::parse("2025-02").unwrap();
        let v: Vec<String> = a.through(b).map(|p| p.to_string()).collect();
        assert_eq!(v, ["2024-11", "2024-12", "2025-01", "2025-02"]);
        assert_eq!(b.through(a).count(), 0);
    }

    #[test]
    fn polars_date_roundtrip() {
        let d = NaiveDate::from_ymd_opt(2025, 8, 31).unwrap();
        assert_eq!(days_to_date(date_to_days(d)), d);
    }
}
