//! Reading CSV, JSON and JSONL rows into samples through a field mapping.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use redtrace_core::{Message, PromptLabel, Sample};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::Selection;

/// The largest row redtrace reads (a CSV record, a JSONL line, an item of a JSON array): a row
/// over it is refused with its file and line before it is held whole. Real prompts, many-shot
/// ones included, are far below it.
pub const MAX_ROW_BYTES: u64 = 16 << 20;

/// The byte counts a [`Capped`] reader shares with its reader of rows.
#[derive(Debug, Default)]
struct RowBytes {
    /// Bytes read from the file so far.
    read: std::sync::atomic::AtomicU64,
    /// Where the current row began (bytes read when the last row ended).
    row_start: std::sync::atomic::AtomicU64,
}

impl RowBytes {
    /// The last row ended here.
    fn row_done(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.row_start.store(self.read.load(Relaxed), Relaxed);
    }
}

/// A reader that fails once the current row has taken more than [`MAX_ROW_BYTES`] (with the
/// reader's look-ahead), so that a huge field never reaches memory whole.
struct Capped<R> {
    inner: R,
    bytes: std::sync::Arc<RowBytes>,
    cap: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering::Relaxed;
        let read = self.bytes.read.load(Relaxed);
        if read - self.bytes.row_start.load(Relaxed) > self.cap {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                too_long(self.cap),
            ));
        }
        let n = self.inner.read(buf)?;
        self.bytes.read.fetch_add(n as u64, Relaxed);
        Ok(n)
    }
}

fn too_long(cap: u64) -> String {
    let size = if cap >= 1 << 20 {
        format!("{} MiB", cap >> 20)
    } else {
        format!("{cap} bytes")
    };
    format!("a row of over {size}: redtrace reads rows of at most that size")
}

/// Which columns (or keys) hold what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldMap {
    /// The prompt (required).
    pub prompt: String,
    /// The id field; when `None`, an `id` column if the row has one, else the row number
    /// (from 1).
    pub id: Option<String>,
    /// Category fields, most general first.
    pub category: Vec<String>,
    /// A field whose value says whether the prompt is safe or unsafe.
    pub label: Option<String>,
    /// A field holding a system prompt.
    pub system: Option<String>,
    /// The label of every row, for a benchmark whose prompts are all of one kind (AdvBench:
    /// all unsafe); a `label` field, where named, takes precedence.
    #[serde(default)]
    pub fixed_label: Option<PromptLabel>,
    /// Pass over rows without a prompt instead of stopping at them (for a published data set
    /// with known empty rows); counted by [`SampleReader::skipped`].
    #[serde(default)]
    pub skip_without_prompt: bool,
    /// Build the prompt from this text instead of reading `prompt`: each `{field}` is replaced
    /// by the row's value (the fields stay in the sample's metadata for judges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_template: Option<String>,
}

impl Default for FieldMap {
    fn default() -> Self {
        Self {
            prompt: "prompt".into(),
            id: Some("id".into()),
            category: vec![],
            label: None,
            system: None,
            fixed_label: None,
            skip_without_prompt: false,
            prompt_template: None,
        }
    }
}

/// File formats the loader reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// The format a file's extension names.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// What can be wrong with benchmark data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A benchmark name or option is wrong.
    #[error("{0}")]
    Spec(String),
    /// A file is not where it should be.
    #[error("{0}")]
    Missing(String),
    /// A file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A row is wrong.
    #[error("{file}:{position}: {}{message}", field.as_ref().map(|f| format!("field '{f}': ")).unwrap_or_default())]
    Row {
        /// The file.
        file: PathBuf,
        /// `line N` or `item N`.
        position: String,
        /// The field at fault, if one is.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
}

type RawRow = (String, Map<String, Value>);

enum Rows {
    Csv(
        csv::StringRecordsIntoIter<Capped<File>>,
        csv::StringRecord,
        std::sync::Arc<RowBytes>,
        u64,
    ),
    Jsonl(
        std::io::Lines<BufReader<Capped<File>>>,
        u64,
        std::sync::Arc<RowBytes>,
    ),
    Json(std::vec::IntoIter<Value>, u64),
}

/// Samples read from one file, in file order (or a seeded random subset, in file order).
pub struct SampleReader {
    file: PathBuf,
    fields: FieldMap,
    rows: Option<Rows>,
    selected: Option<std::vec::IntoIter<Sample>>,
    remaining: Option<usize>,
    index: u64,
    seen_ids: HashMap<String, String>,
    checksum: String,
    failed: bool,
    skipped: usize,
}

impl SampleReader {
    /// SHA-256 of the whole file, hex.
    pub fn checksum(&self) -> &str {
        &self.checksum
    }

    /// Rows passed over so far because they have no prompt (only with
    /// [`FieldMap::skip_without_prompt`]).
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

fn io_error(file: &Path, source: std::io::Error) -> DataError {
    DataError::Io {
        file: file.to_owned(),
        source,
    }
}

fn file_checksum(path: &Path) -> Result<String, DataError> {
    use sha2::{Digest, Sha256};
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer).map_err(|e| io_error(path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Opens a data file for reading samples; a row over [`MAX_ROW_BYTES`] is an error naming its
/// line.
pub fn open(
    path: &Path,
    fields: &FieldMap,
    selection: Selection,
) -> Result<SampleReader, DataError> {
    open_capped(path, fields, selection, MAX_ROW_BYTES)
}

/// [`open`] with rows of at most `cap` bytes.
pub fn open_capped(
    path: &Path,
    fields: &FieldMap,
    selection: Selection,
    cap: u64,
) -> Result<SampleReader, DataError> {
    let format = Format::from_path(path).ok_or_else(|| {
        DataError::Spec(format!(
            "{}: unknown file type (expected .csv, .json or .jsonl)",
            path.display()
        ))
    })?;
    let checksum = file_checksum(path)?;
    let bytes = std::sync::Arc::new(RowBytes::default());
    let file = Capped {
        inner: File::open(path).map_err(|e| io_error(path, e))?,
        bytes: bytes.clone(),
        cap,
    };
    let rows = match format {
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(file);
            let headers = reader
                .headers()
                .map_err(|e| DataError::Row {
                    file: path.to_owned(),
                    position: "line 1".into(),
                    field: None,
                    message: format!("bad CSV header: {e}"),
                })?
                .clone();
            for field in required_fields(fields) {
                if !headers.iter().any(|h| h == field) {
                    return Err(DataError::Row {
                        file: path.to_owned(),
                        position: "line 1".into(),
                        field: Some(field.to_owned()),
                        message: format!(
                            "no such column (columns: {})",
                            headers.iter().collect::<Vec<_>>().join(", ")
                        ),
                    });
                }
            }
            bytes.row_done();
            Rows::Csv(reader.into_records(), headers, bytes, 1)
        }
        Format::Jsonl => Rows::Jsonl(BufReader::new(file).lines(), 0, bytes),
        Format::Json => {
            let mut deserializer = serde_json::Deserializer::from_reader(BufReader::new(file));
            let items = serde::Deserializer::deserialize_any(
                &mut deserializer,
                Items {
                    bytes: bytes.clone(),
                },
            )
            .and_then(|items| deserializer.end().map(|()| items))
            .map_err(|e| DataError::Row {
                file: path.to_owned(),
                position: format!("line {}", e.line()),
                field: None,
                message: format!("not valid JSON: {e}"),
            })?;
            let Some(items) = items else {
                return Err(DataError::Spec(format!(
                    "{}: expected a JSON array of objects",
                    path.display()
                )));
            };
            Rows::Json(items.into_iter(), 0)
        }
    };
    let mut reader = SampleReader {
        file: path.to_owned(),
        fields: fields.clone(),
        rows: Some(rows),
        selected: None,
        remaining: selection.limit,
        index: 0,
        seen_ids: HashMap::new(),
        checksum,
        failed: false,
        skipped: 0,
    };
    if let (Some(limit), Some(seed)) = (selection.limit, selection.sample_seed) {
        reader.remaining = None;
        reader.selected = Some(reservoir(&mut reader, limit, seed)?.into_iter());
        reader.rows = None;
    }
    Ok(reader)
}

/// The items of a JSON array, each read with the row cap counted from where it begins; `None`
/// for a JSON value that is not an array.
struct Items {
    bytes: std::sync::Arc<RowBytes>,
}

impl<'de> serde::de::Visitor<'de> for Items {
    type Value = Option<Vec<Value>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        self.bytes.row_done();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
            self.bytes.row_done();
        }
        Ok(Some(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

fn required_fields(fields: &FieldMap) -> impl Iterator<Item = &str> {
    std::iter::once(fields.prompt.as_str())
        .chain(fields.id.as_deref())
        .chain(fields.category.iter().map(String::as_str))
        .chain(fields.label.as_deref())
        .chain(fields.system.as_deref())
}

/// A uniform random subset of `limit` rows (Algorithm R), returned in file order.
/// A seeded sample of `limit` rows, stratified by top-level category: each category gets its
/// share of `limit` in proportion to its rows (largest remainders first, ties by the
/// category's first appearance), drawn uniformly within it; kept in file order. Memory holds
/// at most `limit` rows per category, never the whole file.
fn reservoir(reader: &mut SampleReader, limit: usize, seed: u64) -> Result<Vec<Sample>, DataError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Per category, in order of first appearance: rows seen and a uniform reservoir.
    let mut strata: Vec<(String, u64, Vec<Sample>)> = Vec::new();
    while let Some(sample) = reader.next_row() {
        let sample = sample?;
        let key = sample.category.first().cloned().unwrap_or_default();
        let at = match strata.iter().position(|(k, _, _)| *k == key) {
            Some(at) => at,
            None => {
                strata.push((key, 0, Vec::new()));
                strata.len() - 1
            }
        };
        let (_, seen, kept) = &mut strata[at];
        *seen += 1;
        if kept.len() < limit {
            kept.push(sample);
        } else {
            let slot = rng.gen_range(0..*seen) as usize;
            if slot < limit {
                kept[slot] = sample;
            }
        }
    }
    let total: u64 = strata.iter().map(|(_, seen, _)| seen).sum();
    let take = (limit as u64).min(total);
    // Proportional quotas, the remainder to the largest fractional parts.
    let mut quotas: Vec<(usize, u64, u64)> = strata
        .iter()
        .enumerate()
        .map(|(i, (_, seen, _))| {
            let exact = take * seen;
            (i, exact / total.max(1), exact % total.max(1))
        })
        .collect();
    let mut left = take - quotas.iter().map(|q| q.1).sum::<u64>();
    let mut order: Vec<usize> = (0..quotas.len()).collect();
    order.sort_by(|a, b| quotas[*b].2.cmp(&quotas[*a].2).then(a.cmp(b)));
    for i in order {
        if left == 0 {
            break;
        }
        quotas[i].1 += 1;
        left -= 1;
    }
    let mut picked = Vec::with_capacity(take as usize);
    for ((_, _, mut kept), (_, quota, _)) in strata.into_iter().zip(quotas) {
        kept.shuffle(&mut rng);
        kept.truncate(quota as usize);
        picked.extend(kept);
    }
    picked.sort_by_key(|sample| sample.index);
    Ok(picked)
}

impl SampleReader {
    fn row_error(
        &self,
        position: &str,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> DataError {
        DataError::Row {
            file: self.file.clone(),
            position: position.to_owned(),
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    fn next_raw(&mut self) -> Option<Result<RawRow, DataError>> {
        let file = self.file.clone();
        match self.rows.as_mut()? {
            Rows::Csv(records, headers, bytes, last_line) => {
                let record = records.next()?;
                bytes.row_done();
                Some(match record {
                    Ok(record) => {
                        let line = record.position().map(|p| p.line()).unwrap_or(0);
                        *last_line = line;
                        let map = headers
                            .iter()
                            .zip(record.iter())
                            .map(|(h, v)| (h.to_owned(), Value::String(v.to_owned())))
                            .collect();
                        Ok((format!("line {line}"), map))
                    }
                    Err(error) => {
                        // A read error (a row over the cap) has no position: it is the row
                        // after the last one read.
                        let line = error.position().map(|p| p.line()).unwrap_or(*last_line + 1);
                        Err(DataError::Row {
                            file,
                            position: format!("line {line}"),
                            field: None,
                            message: format!("malformed CSV row: {error}"),
                        })
                    }
                })
            }
            Rows::Jsonl(lines, number, bytes) => loop {
                let line = lines.next()?;
                bytes.row_done();
                *number += 1;
                let position = format!("line {number}");
                let line = match line {
                    Ok(line) => line,
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        return Some(Err(DataError::Row {
                            file,
                            position,
                            field: None,
                            message: e.to_string(),
                        }))
                    }
                    Err(e) => return Some(Err(io_error(&file, e))),
                };
                if line.trim().is_empty() {
                    continue;
                }
                return Some(match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(map)) => Ok((position, map)),
                    Ok(_) => Err(DataError::Row {
                        file,
                        position,
                        field: None,
                        message: "expected a JSON object".into(),
                    }),
                    Err(e) => Err(DataError::Row {
                        file,
                        position,
                        field: None,
                        message: format!("not valid JSON: {e}"),
                    }),
                });
            },
            Rows::Json(items, number) => {
                let item = items.next()?;
                *number += 1;
                let position = format!("item {number}");
                Some(match item {
                    Value::Object(map) => Ok((position, map)),
                    _ => Err(DataError::Row {
                        file,
                        position,
                        field: None,
                        message: "expected a JSON object".into(),
                    }),
                })
            }
        }
    }

    fn next_row(&mut self) -> Option<Result<Sample, DataError>> {
        loop {
            let raw = self.next_raw()?;
            if let Ok((_, row)) = &raw {
                let blank = match row.get(&self.fields.prompt) {
                    None | Some(Value::Null) => true,
                    Some(Value::String(text)) => text.trim().is_empty(),
                    Some(_) => false,
                };
                if blank && self.fields.skip_without_prompt {
                    // The row keeps its number, so ids from row numbers stay the file's.
                    self.index += 1;
                    self.skipped += 1;
                    continue;
                }
            }
            return Some(raw.and_then(|(position, row)| self.row_to_sample(&position, row)));
        }
    }

    /// The template with each `{field}` replaced by the row's value.
    fn fill_template(
        &self,
        position: &str,
        template: &str,
        row: &Map<String, Value>,
    ) -> Result<String, DataError> {
        let mut out = String::with_capacity(template.len() * 2);
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            let name = &rest[start + 1..start + end];
            out.push_str(&rest[..start]);
            match row.get(name) {
                Some(Value::String(text)) => out.push_str(text),
                Some(Value::Null) | None => {
                    return Err(self.row_error(
                        position,
                        Some(name),
                        "missing (the prompt template needs it)",
                    ))
                }
                Some(other) => out.push_str(&other.to_string()),
            }
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn row_to_sample(
        &mut self,
        position: &str,
        mut row: Map<String, Value>,
    ) -> Result<Sample, DataError> {
        let fields = self.fields.clone();
        let take_text = |row: &mut Map<String, Value>,
                         field: &str,
                         required: bool|
         -> Result<Option<String>, DataError> {
            match row.remove(field) {
                Some(Value::String(text)) => Ok(Some(text)),
                Some(Value::Number(number)) => Ok(Some(number.to_string())),
                Some(Value::Bool(flag)) => Ok(Some(flag.to_string())),
                // A list of strings (CyberSecEval's attack types) reads as its items joined.
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(Some(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                )),
                Some(Value::Null) | None if !required => Ok(None),
                None => Err(self.row_error(position, Some(field), "missing")),
                Some(other) => Err(self.row_error(
                    position,
                    Some(field),
                    format!("expected text, found {other}"),
                )),
            }
        };
        let prompt = match &fields.prompt_template {
            Some(template) => self.fill_template(position, template, &row)?,
            None => take_text(&mut row, &fields.prompt, true)?.unwrap_or_default(),
        };
        let id = match &fields.id {
            Some(field) => take_text(&mut row, field, true)?.unwrap_or_default(),
            // No id field named: the `id` column where the row has one, else the row number.
            None => take_text(&mut row, "id", false)?
                .filter(|id| !id.trim().is_empty())
                .unwrap_or_else(|| (self.index + 1).to_string()),
        };
        let mut category = Vec::new();
        for field in &fields.category {
            if let Some(value) = take_text(&mut row, field, true)? {
                if !value.trim().is_empty() {
                    category.push(value);
                }
            }
        }
        let label = match &fields.label {
            Some(field) => match take_text(&mut row, field, true)? {
                Some(value) => Some(parse_label(&value).ok_or_else(|| {
                    self.row_error(
                        position,
                        Some(field),
                        format!("'{value}' is not a label (expected safe/unsafe, benign/harmful)"),
                    )
                })?),
                None => fields.fixed_label,
            },
            None => fields.fixed_label,
        };
        let system = match &fields.system {
            Some(field) => take_text(&mut row, field, false)?,
            None => None,
        };
        if prompt.trim().is_empty() {
            return Err(self.row_error(position, Some(&fields.prompt), "empty prompt"));
        }
        if id.trim().is_empty() {
            return Err(self.row_error(position, fields.id.as_deref(), "empty id"));
        }
        if let Some(first) = self.seen_ids.get(&id) {
            return Err(self.row_error(
                position,
                fields.id.as_deref(),
                format!("duplicate id '{id}' (first at {first})"),
            ));
        }
        self.seen_ids.insert(id.clone(), position.to_owned());
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = system.filter(|s| !s.trim().is_empty()) {
            messages.push(Message::system(system));
        }
        messages.push(Message::user(prompt));
        let sample = Sample {
            id,
            index: self.index,
            messages,
            category,
            label,
            metadata: row,
            request: None,
        };
        self.index += 1;
        Ok(sample)
    }
}

fn parse_label(value: &str) -> Option<PromptLabel> {
    match value.trim().to_ascii_lowercase().as_str() {
        "safe" | "benign" | "harmless" | "unharmful" => Some(PromptLabel::Safe),
        "unsafe" | "harmful" => Some(PromptLabel::Unsafe),
        _ => None,
    }
}

impl Iterator for SampleReader {
    type Item = Result<Sample, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if let Some(selected) = self.selected.as_mut() {
            return selected.next().map(Ok);
        }
        if self.remaining == Some(0) {
            return None;
        }
        let next = self.next_row()?;
        match &next {
            Ok(_) => {
                if let Some(remaining) = self.remaining.as_mut() {
                    *remaining -= 1;
                }
            }
            // Stop after the first bad row: the caller reports it and aborts the load.
            Err(_) => self.failed = true,
        }
        Some(next)
    }
}
