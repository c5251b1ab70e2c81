//! Column building and writing: rows go straight into Arrow buffers, column by
//! column, and each dataset is written once as CSV, Parquet or JSON Lines in the
//! contract's spellings.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use chrono::{NaiveDate, NaiveDateTime};
use opnet_pipelines::contract::{ColType, Column, Dataset};
use polars::prelude::{
    BooleanChunkedBuilder, ChunkedBuilder, CsvWriter, DataFrame, Int32Type, Int64Type, IntoColumn,
    IntoSeries, JsonFormat, JsonWriter, ParquetWriter, PrimitiveChunkedBuilder, SerWriter,
    StringChunkedBuilder,
};

use super::Format;

/// One value of a row, typed as the contract column it goes into.
#[derive(Clone, Copy, Debug)]
pub(super) enum Cell<'a> {
    Str(&'a str),
    Int(i64),
    Date(NaiveDate),
    Ts(NaiveDateTime),
    Bool(bool),
    Null,
}

impl<'a> From<Option<&'a str>> for Cell<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Cell::Null, Cell::Str)
    }
}
impl From<Option<i64>> for Cell<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Cell::Null, Cell::Int)
    }
}
impl From<Option<NaiveDate>> for Cell<'_> {
    fn from(v: Option<NaiveDate>) -> Self {
        v.map_or(Cell::Null, Cell::Date)
    }
}
impl From<Option<NaiveDateTime>> for Cell<'_> {
    fn from(v: Option<NaiveDateTime>) -> Self {
        v.map_or(Cell::Null, Cell::Ts)
    }
}

/// A column under construction: values go straight into Arrow buffers, which keeps
/// memory close to the final size and avoids per-row frame work.
enum Builder {
    Str(StringChunkedBuilder),
    Int(PrimitiveChunkedBuilder<Int64Type>),
    /// Days since the epoch.
    Date(PrimitiveChunkedBuilder<Int32Type>),
    /// Milliseconds since the epoch, UTC.
    Ts(PrimitiveChunkedBuilder<Int64Type>),
    Bool(BooleanChunkedBuilder),
}

/// A dataset under construction, with exactly the contract's columns (the required
/// ones, and the optional ones asked for).
pub(super) struct Table {
    dataset: &'static Dataset,
    specs: Vec<&'static Column>,
    columns: Vec<Builder>,
    pub(super) rows: usize,
}

impl Table {
    /// A table of the dataset's required columns.
    pub(super) fn new(dataset: &'static Dataset, capacity: usize) -> Self {
        Self::with_optional(dataset, &[], capacity)
    }

    /// A table of the dataset's required columns and the optional ones named in
    /// `optional`, in the contract's order.
    pub(super) fn with_optional(
        dataset: &'static Dataset,
        optional: &[&str],
        capacity: usize,
    ) -> Self {
        let specs: Vec<&'static Column> = dataset
            .columns
            .iter()
            .chain(
                dataset
                    .optional_columns
                    .iter()
                    .filter(|c| optional.contains(&c.name)),
            )
            .collect();
        let columns = specs
            .iter()
            .map(|c| {
                let name = c.name.into();
                match c.ty {
                    ColType::Str => Builder::Str(StringChunkedBuilder::new(name, capacity)),
                    ColType::Int => Builder::Int(PrimitiveChunkedBuilder::new(name, capacity)),
                    ColType::Date => Builder::Date(PrimitiveChunkedBuilder::new(name, capacity)),
                    ColType::Ts => Builder::Ts(PrimitiveChunkedBuilder::new(name, capacity)),
                    ColType::Bool => Builder::Bool(BooleanChunkedBuilder::new(name, capacity)),
                }
            })
            .collect();
        Self {
            dataset,
            specs,
            columns,
            rows: 0,
        }
    }

    pub(super) fn push(&mut self, row: &[Cell]) -> Result<()> {
        ensure!(
            row.len() == self.columns.len(),
            "generator bug: {} row has {} values for {} columns",
            self.dataset.path(),
            row.len(),
            self.columns.len()
        );
        for ((builder, cell), spec) in self.columns.iter_mut().zip(row).zip(&self.specs) {
            match (builder, *cell) {
                (b, Cell::Null) if spec.nullable => match b {
                    Builder::Str(b) => b.append_null(),
                    Builder::Int(b) | Builder::Ts(b) => b.append_null(),
                    Builder::Date(b) => b.append_null(),
                    Builder::Bool(b) => b.append_null(),
                },
                (Builder::Str(b), Cell::Str(s)) => b.append_value(s),
                (Builder::Int(b), Cell::Int(v)) => b.append_value(v),
                (Builder::Date(b), Cell::Date(d)) => {
                    b.append_value(opnet_pipelines::period::date_to_days(d))
                }
                (Builder::Ts(b), Cell::Ts(t)) => b.append_value(t.and_utc().timestamp_millis()),
                (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
                (_, cell) => bail!(
                    "generator bug: {}.{} ({}) got {cell:?}",
                    self.dataset.path(),
                    spec.name,
                    spec.ty.name()
                ),
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// The frame to write: contract dtypes for Parquet; for the text formats,
    /// timestamps become RFC 3339 strings (`2025-03-04T10:15:00Z`), because the
    /// writers would print a naive `2025-03-04 10:15:00`.
    pub(super) fn finish(self, format: Format) -> Result<DataFrame> {
        let height = self.rows;
        let mut columns = Vec::with_capacity(self.columns.len());
        for (builder, spec) in self.columns.into_iter().zip(self.specs) {
            let column = match builder {
                Builder::Str(b) => b.finish().into_column(),
                Builder::Int(b) => b.finish().into_column(),
                Builder::Bool(b) => b.finish().into_column(),
                Builder::Date(b) => b
                    .finish()
                    .into_series()
                    .cast(&spec.ty.dtype())?
                    .into_column(),
                Builder::Ts(b) if format == Format::Parquet => b
                    .finish()
                    .into_series()
                    .cast(&spec.ty.dtype())?
                    .into_column(),
                Builder::Ts(b) => {
                    let millis = b.finish();
                    let mut text = StringChunkedBuilder::new(spec.name.into(), height);
                    for ms in millis.iter() {
                        match ms {
                            Some(ms) => {
                                let at = chrono::DateTime::from_timestamp_millis(ms)
                                    .with_context(|| format!("timestamp {ms} out of range"))?;
                                text.append_value(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
                            }
                            None => text.append_null(),
                        }
                    }
                    text.finish().into_column()
                }
            };
            columns.push(column);
        }
        Ok(DataFrame::new(height, columns)?)
    }
}

pub(super) fn write_frame(df: &mut DataFrame, path: &Path, format: Format) -> Result<()> {
    let file = File::create(path)?;
    match format {
        // CsvWriter buffers internally; nulls are written as empty fields.
        Format::Csv => CsvWriter::new(file)
            .include_header(true)
            .with_date_format(Some("%Y-%m-%d".into()))
            .finish(df)?,
        Format::Parquet => {
            ParquetWriter::new(file).finish(df)?;
        }
        Format::Jsonl => {
            let mut out = BufWriter::new(file);
            JsonWriter::new(&mut out)
                .with_json_format(JsonFormat::JsonLines)
                .finish(df)?;
            out.flush()?;
        }
    }
    Ok(())
}
