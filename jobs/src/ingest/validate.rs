//! Validation of one dataset against the contract (data-contract.md; issue 9): every
//! column typed as the contract says, values checked beyond their type, the date
//! window of [`Rules`], one row per key, and the quarantine and warnings frames that
//! say, per row and column, why a row was refused or reported.

use std::collections::HashMap;

use chrono::NaiveDate;
use opnet_pipelines::contract::{self, Check, ColType, Dataset};
use polars::prelude::*;

use super::IngestError;
use super::read::Raw;
use super::values::{
    MS_PER_DAY, blank, check_int, check_str, check_text, epoch_days, parse_date, parse_ts,
    show_days,
};
use crate::config::IngestConfig;

/// The window of plausible dates (issue 9 item 9), in days since 1970-01-01, both
/// ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    earliest: i32,
    latest: i32,
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

/// Issue 9 item 1: one row per key. Copies of a key whose contract columns (`columns`:
/// the required ones and the optional ones the source has) are all equal collapse to
/// the first readable one (a warning each); copies that differ are all quarantined,
/// each naming the others, so no copy wins by its place in the file. Rows whose key
/// is missing have their own problem and take no part.
fn check_keys(
    dataset: &Dataset,
    columns: &[&contract::Column],
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
    let mut texts = Vec::with_capacity(columns.len());
    for c in columns {
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
        let differ: Vec<&str> = columns
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

/// `file`, `row`, `column`, `reason` and the rows' original values of `columns`, one
/// line per entry of `list` (sorted by row, then whole-row problems first, then column
/// order).
fn report_frame(
    columns: &[&contract::Column],
    raw: &DataFrame,
    file: &str,
    mut list: Vec<Problem>,
) -> PolarsResult<DataFrame> {
    let order = |c: &str| match c.split(',').next() {
        Some("") | None => 0,
        Some(first) => columns
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
    for col in columns {
        let s = raw.column(col.name)?.as_materialized_series();
        cols.push(as_text(&s.take(&rows)?, true)?.into_column());
    }
    DataFrame::new(list.len(), cols)
}

/// Split a raw frame (text columns, or Parquet's own types, plus the problems found
/// while reading) into the valid rows, typed exactly as the contract says, a
/// quarantine frame and a warnings frame (see [`Validated`]), applying the contract's
/// checks, the date window of `rules` and the dataset's key. Columns beyond the
/// contract are dropped. An optional column ([`Dataset::optional_columns`]) is kept,
/// and judged like the others, when `raw` has it; when it does not, neither does
/// [`Validated::ok`].
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
    // The required columns first (in contract order, so their positions are those of
    // `dataset.columns`), then the optional ones the source has.
    let columns: Vec<&contract::Column> = dataset
        .all_columns()
        .enumerate()
        .filter(|(i, c)| *i < dataset.columns.len() || raw.column(c.name).is_ok())
        .map(|(_, c)| c)
        .collect();
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
    let mut typed = Vec::with_capacity(columns.len());
    for col in &columns {
        let s = raw.column(col.name).map_err(verr)?.as_materialized_series();
        typed.push(
            type_column(col, s, rules, &mut p)
                .map_err(verr)?
                .into_column(),
        );
    }
    check_keys(dataset, &columns, &raw, &typed, &mut p).map_err(verr)?;
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
        report_frame(&columns, &raw, file, std::mem::take(&mut p.list)).map_err(verr)?;
    let warnings = report_frame(&columns, &raw, file, warnings).map_err(verr)?;
    Ok(Validated {
        ok,
        quarantine,
        warnings,
        rows_quarantined,
        rows_collapsed,
    })
}
