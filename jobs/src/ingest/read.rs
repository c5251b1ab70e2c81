//! Reading a source file (data-contract.md, "Inputs"): finding the one file of a
//! dataset (`<system>/<name>.csv`, `.jsonl`/`.ndjson` or `.parquet`) and reading it
//! into a [`Raw`] frame with every contract column as text (Parquet columns keep
//! their own types) — the required ones, and the optional ones the source has —
//! plus the problems of whole rows that reading already sees: a CSV row's field count
//! or quoting, bytes that are not UTF-8, a JSON Lines line that is not one object.
//! Judging the values is [`validate`](fn@super::validate)'s job.

use std::io::Cursor;

use opnet_pipelines::contract::{self, Dataset};
use polars::prelude::*;
use tracing::warn;

use super::IngestError;
use crate::store::ObjectStore;

/// Source file formats, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Csv,
    JsonLines,
    Parquet,
}

impl Format {
    pub(super) fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::JsonLines => "jsonl",
            Format::Parquet => "parquet",
        }
    }
}

const EXTENSIONS: &[(&str, Format)] = &[
    ("csv", Format::Csv),
    ("jsonl", Format::JsonLines),
    ("ndjson", Format::JsonLines),
    ("parquet", Format::Parquet),
];

/// The one source file of `dataset`.
pub(super) async fn locate(
    source: &dyn ObjectStore,
    dataset: &Dataset,
) -> Result<(String, Format), IngestError> {
    let stem = dataset.path();
    let listed = source.list(&format!("{stem}.")).await?;
    let mut found: Vec<(String, Format)> = listed
        .into_iter()
        .filter_map(|k| {
            let ext = k.strip_prefix(&stem)?.strip_prefix('.')?;
            EXTENSIONS
                .iter()
                .find(|(e, _)| *e == ext)
                .map(|&(_, f)| (k.clone(), f))
        })
        .collect();
    if found.len() > 1 {
        return Err(IngestError::AmbiguousFile {
            dataset: stem,
            files: found.iter().map(|(k, _)| source.location(k)).collect(),
        });
    }
    found.pop().ok_or_else(|| IngestError::MissingFile {
        expected: format!("{stem}.csv"),
        dataset: stem,
        source_location: source.location(""),
    })
}
/// A source read into a frame, before validation: the contract's columns (as text,
/// or with Parquet's own types) and the problems found while reading whole rows (a
/// CSV row's field count, its quoting, bytes that are not UTF-8).
pub struct Raw {
    pub frame: DataFrame,
    /// (0-based row, column or empty for the whole row, reason)
    pub problems: Vec<(usize, String, String)>,
}

impl From<DataFrame> for Raw {
    fn from(frame: DataFrame) -> Self {
        Raw {
            frame,
            problems: Vec::new(),
        }
    }
}

/// Read a source file with every contract column as text (JSON values are rendered
/// as their JSON text; Parquet columns keep their types and are handled by
/// [`validate`](fn@super::validate)).
pub(super) fn read_raw(
    dataset: &Dataset,
    format: Format,
    bytes: &[u8],
    file: &str,
) -> Result<Raw, IngestError> {
    let read_err = |source| IngestError::Read {
        file: file.to_string(),
        source,
    };
    match format {
        Format::Csv => read_csv(dataset, bytes, file),
        Format::Parquet => ParquetReader::new(Cursor::new(bytes))
            .finish()
            .map(Raw::from)
            .map_err(read_err),
        Format::JsonLines => read_jsonl(dataset, bytes, file),
    }
}

/// One JSON Lines object, its keys in order and repeated keys kept (a map type
/// would keep one of them silently).
struct JsonObject(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = JsonObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonObject, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    entries.push(entry);
                }
                Ok(JsonObject(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// A JSON Lines source: one object per non-blank line, every contract column as text
/// (strings as they are; numbers, bools and nested values as their JSON text; null
/// and an absent key as null). A line that is not a JSON object, is not UTF-8, or
/// names a contract column twice (which copy counts cannot be told) is kept for the
/// quarantine with its row number; the rest of the file is read. A required column
/// that no line has is a missing column; a nullable one (`?`) is accepted as empty,
/// because JSON writers commonly omit null keys (a warning says so). An optional
/// column ([`Dataset::optional_columns`]) is in the source when at least one line
/// has its key (even as `null`), and absent otherwise.
fn read_jsonl(dataset: &Dataset, bytes: &[u8], file: &str) -> Result<Raw, IngestError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let columns: Vec<&contract::Column> = dataset.all_columns().collect();
    let mut values: Vec<Vec<Option<String>>> = vec![Vec::new(); columns.len()];
    let mut present = vec![false; columns.len()];
    let mut problems = Vec::new();
    let mut row = 0usize;
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = match std::str::from_utf8(line) {
            Err(e) => Err(format!(
                "not valid UTF-8 (byte 0x{:02X} at byte {} of line {})",
                line.get(e.valid_up_to()).copied().unwrap_or_default(),
                e.valid_up_to() + 1,
                n + 1
            )),
            Ok(text) => serde_json::from_str::<JsonObject>(text)
                .map_err(|e| format!("not a JSON object: {e} (line {})", n + 1)),
        };
        match parsed {
            Err(reason) => {
                problems.push((row, String::new(), reason));
                values.iter_mut().for_each(|v| v.push(None));
            }
            Ok(JsonObject(entries)) => {
                for ((c, out), seen) in columns
                    .iter()
                    .zip(values.iter_mut())
                    .zip(present.iter_mut())
                {
                    let mut copies = entries.iter().filter(|(k, _)| k == c.name).map(|(_, v)| v);
                    let first = copies.next();
                    let more = copies.count();
                    if more > 0 {
                        problems.push((
                            row,
                            c.name.to_string(),
                            format!(
                                "the key appears {} times in the object (line {})",
                                more + 1,
                                n + 1
                            ),
                        ));
                    }
                    *seen |= first.is_some();
                    out.push(first.and_then(|v| match v {
                        serde_json::Value::Null => None,
                        serde_json::Value::String(s) => Some(s.clone()),
                        other => Some(other.to_string()),
                    }));
                }
            }
        }
        row += 1;
    }
    let n_required = dataset.columns.len();
    if row > 0 {
        let absent: Vec<&contract::Column> = columns[..n_required]
            .iter()
            .zip(&present)
            .filter(|(_, seen)| !**seen)
            .map(|(c, _)| *c)
            .collect();
        let required: Vec<&str> = absent
            .iter()
            .filter(|c| !c.nullable)
            .map(|c| c.name)
            .collect();
        if !required.is_empty() {
            return Err(IngestError::MissingColumn {
                file: file.to_string(),
                column: required.join(", "),
            });
        }
        for c in absent {
            warn!(
                file,
                column = c.name,
                "nullable column absent from every line: read as empty"
            );
        }
    }
    // The required columns always; an optional one only when some line has it.
    let (columns, values): (Vec<&contract::Column>, Vec<Vec<Option<String>>>) = columns
        .into_iter()
        .zip(values)
        .zip(&present)
        .enumerate()
        .filter(|(i, (_, seen))| *i < n_required || **seen)
        .map(|(_, (cv, _))| cv)
        .unzip();
    let frame = text_frame(&columns, values, row, file)?;
    Ok(Raw { frame, problems })
}

/// One CSV record: its fields' bytes (quotes removed), the line it starts on, and
/// the first field with text after its closing quote, if any.
struct Record {
    fields: Vec<Vec<u8>>,
    line: usize,
    bad_quote: Option<usize>,
}

/// RFC 4180 records (comma, `"` quoting with `""` inside, LF or CRLF line ends) of a
/// CSV file, blank lines skipped. Bytes are kept as they are: whether they are UTF-8
/// is judged per field, so one bad row does not fail the file.
struct CsvRecords<'a> {
    bytes: &'a [u8],
    at: usize,
    /// 1-based line of `at`.
    line: usize,
}

impl<'a> CsvRecords<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        CsvRecords {
            bytes,
            at: 0,
            line: 1,
        }
    }

    /// The next record; `Err` when a quoted field never ends (every later row would
    /// be swallowed into it, so rows can no longer be told apart).
    fn next_record(&mut self) -> Option<Result<Record, String>> {
        let b = self.bytes;
        loop {
            match (b.get(self.at), b.get(self.at + 1)) {
                (None, _) => return None,
                (Some(b'\n'), _) => self.at += 1,
                (Some(b'\r'), Some(b'\n')) => self.at += 2,
                _ => break,
            }
            self.line += 1;
        }
        let line = self.line;
        let mut fields = Vec::new();
        let mut bad_quote = None;
        loop {
            let mut field = Vec::new();
            if b.get(self.at) == Some(&b'"') {
                let opened = self.line;
                self.at += 1;
                loop {
                    match (b.get(self.at), b.get(self.at + 1)) {
                        (None, _) => {
                            return Some(Err(format!(
                                "a quoted field opened on line {opened} is never closed"
                            )));
                        }
                        (Some(b'"'), Some(b'"')) => {
                            field.push(b'"');
                            self.at += 2;
                        }
                        (Some(b'"'), _) => {
                            self.at += 1;
                            break;
                        }
                        (Some(&c), _) => {
                            if c == b'\n' {
                                self.line += 1;
                            }
                            field.push(c);
                            self.at += 1;
                        }
                    }
                }
                // After the closing quote only a separator or the end of the line
                // may follow; anything else is kept, and the row is refused.
                while let Some(&c) = b.get(self.at) {
                    if c == b',' || c == b'\n' || (c == b'\r' && b.get(self.at + 1) == Some(&b'\n'))
                    {
                        break;
                    }
                    bad_quote.get_or_insert(fields.len());
                    field.push(c);
                    self.at += 1;
                }
            } else {
                let rest = &b[self.at..];
                let end = rest
                    .iter()
                    .position(|&c| c == b',' || c == b'\n')
                    .unwrap_or(rest.len());
                field.extend_from_slice(&rest[..end]);
                self.at += end;
                if field.last() == Some(&b'\r') && b.get(self.at) != Some(&b',') {
                    field.pop();
                }
            }
            fields.push(field);
            match b.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'\r') => {
                    self.at += 2;
                    self.line += 1;
                    break;
                }
                Some(b'\n') => {
                    self.at += 1;
                    self.line += 1;
                    break;
                }
                _ => break,
            }
        }
        Some(Ok(Record {
            fields,
            line,
            bad_quote,
        }))
    }
}

/// A CSV source (issue 9 item 11): every contract column as text. A row whose field
/// count differs from the header's, with text after a closing quote, or with bytes
/// that are not UTF-8 in a contract column is kept for the quarantine with its
/// problem (its values by position as far as they go). A header naming a column
/// twice, or a quote never closed, fails the file.
fn read_csv(dataset: &Dataset, bytes: &[u8], file: &str) -> Result<Raw, IngestError> {
    let csv_err = |reason: String| IngestError::Csv {
        file: file.to_string(),
        reason,
    };
    let mut records = CsvRecords::new(bytes);
    let header: Vec<String> = match records.next_record() {
        None => Vec::new(),
        Some(Err(reason)) => return Err(csv_err(reason)),
        Some(Ok(r)) => r
            .fields
            .into_iter()
            .map(|f| {
                String::from_utf8(f)
                    .map_err(|_| csv_err("the header row is not valid UTF-8".to_string()))
            })
            .collect::<Result<_, _>>()?,
    };
    for (i, name) in header.iter().enumerate() {
        if header[..i].contains(name) {
            return Err(IngestError::DuplicateColumn {
                file: file.to_string(),
                column: name.clone(),
            });
        }
    }
    let missing: Vec<&str> = dataset
        .columns
        .iter()
        .filter(|c| !header.iter().any(|h| h == c.name))
        .map(|c| c.name)
        .collect();
    if !missing.is_empty() {
        return Err(IngestError::MissingColumn {
            file: file.to_string(),
            column: missing.join(", "),
        });
    }
    // The required columns and the optional ones the header names.
    let (columns, positions): (Vec<&contract::Column>, Vec<usize>) = dataset
        .all_columns()
        .filter_map(|c| Some((c, header.iter().position(|h| h == c.name)?)))
        .unzip();

    let mut values: Vec<Vec<Option<String>>> = vec![Vec::new(); columns.len()];
    let mut problems = Vec::new();
    let mut row = 0usize;
    while let Some(record) = records.next_record() {
        let record = record.map_err(csv_err)?;
        if record.fields.len() != header.len() {
            problems.push((
                row,
                String::new(),
                format!(
                    "{} fields where the header has {} (line {})",
                    record.fields.len(),
                    header.len(),
                    record.line
                ),
            ));
        }
        if let Some(f) = record.bad_quote {
            let column = header.get(f).cloned().unwrap_or_default();
            problems.push((
                row,
                column,
                format!(
                    "text after the closing quote of a field (line {})",
                    record.line
                ),
            ));
        }
        for ((c, &pos), out) in columns.iter().zip(&positions).zip(values.iter_mut()) {
            let field = record.fields.get(pos);
            out.push(field.map(|f| match std::str::from_utf8(f) {
                Ok(s) => s.to_string(),
                Err(e) => {
                    let at = e.valid_up_to();
                    problems.push((
                        row,
                        c.name.to_string(),
                        format!(
                            "not valid UTF-8 (byte 0x{:02X} at byte {} of the value)",
                            f.get(at).copied().unwrap_or_default(),
                            at + 1
                        ),
                    ));
                    String::from_utf8_lossy(f).into_owned()
                }
            }));
        }
        row += 1;
    }
    let frame = text_frame(&columns, values, row, file)?;
    Ok(Raw { frame, problems })
}

/// A raw frame of `columns`, all text, from their values.
fn text_frame(
    columns: &[&contract::Column],
    values: Vec<Vec<Option<String>>>,
    height: usize,
    file: &str,
) -> Result<DataFrame, IngestError> {
    let cols = columns
        .iter()
        .zip(values)
        .map(|(c, v)| StringChunked::from_iter_options(c.name.into(), v.into_iter()).into_column())
        .collect();
    DataFrame::new(height, cols).map_err(|source| IngestError::Read {
        file: file.to_string(),
        source,
    })
}
