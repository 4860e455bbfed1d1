//! Streaming exports of a run's results: JSONL, CSV and Parquet, one record per (sample,
//! completion), in constant memory (rows stream from the store; Parquet is written in row
//! groups of [`PARQUET_BATCH`] records).
//!
//! Schema, version [`EXPORT_SCHEMA_VERSION`] (the same fields in every format):
//! `schema_version, run_id, model, benchmark, sample_id, sample_k, index, category,
//! prompt_label, prompt, reasoning, reasoning_source, reasoning_state, answer, finish_reason,
//! truncated_in_reasoning, prompt_tokens, completion_tokens, reasoning_tokens, latency_ms,
//! cached, attempts, error_kind, error_message, verdicts, cost_usd, helper_cost_usd` (the
//! target's cost and the attack helpers' in USD, empty where a model has no price; each
//! verdict carries its judge calls' `spend`).
//! - JSONL keeps structure: `category` is an array, `usage` an object with the three token
//!   counts, `error` an object `{kind, message}` or null, `messages` the full conversation,
//!   `verdicts` an array of `{judge, channel, label, score, rationale}`.
//! - CSV and Parquet are flat: `category` is the path joined with " / ", token counts and the
//!   error are their own columns, and `verdicts` is the JSON array as text. Missing values are
//!   empty cells in CSV and nulls in Parquet.

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use serde_json::json;
use std::io::Write;
use std::sync::Arc;

use crate::{ResultRow, RunId, Store, StoreError};

/// The version of the export schema above; bumped on any incompatible change.
pub const EXPORT_SCHEMA_VERSION: u32 = 1;

/// Records per Parquet row group.
pub const PARQUET_BATCH: usize = 4096;

fn io_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Export(error.to_string())
}

/// One result, flattened.
struct Flat {
    run_id: i64,
    model: String,
    benchmark: String,
    sample_id: String,
    sample_k: u32,
    index: u64,
    category: Vec<String>,
    prompt_label: Option<String>,
    prompt: String,
    messages: Vec<redtrace_core::Message>,
    reasoning: Option<String>,
    reasoning_source: Option<String>,
    reasoning_state: Option<String>,
    answer: Option<String>,
    finish_reason: Option<String>,
    truncated_in_reasoning: bool,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
    latency_ms: Option<u64>,
    cached: bool,
    attempts: u32,
    error_kind: Option<String>,
    error_message: Option<String>,
    verdicts: serde_json::Value,
    cost_usd: Option<f64>,
    helper_cost_usd: Option<f64>,
}

fn name_of<T: serde::Serialize>(value: &T) -> Option<String> {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
}

fn flatten(row: ResultRow) -> Flat {
    let messages = row.messages.unwrap_or_default();
    let prompt = messages
        .iter()
        .rev()
        .find(|m| m.role == redtrace_core::Role::User)
        .map(|m| m.content.clone())
        .unwrap_or_default();
    let verdicts = serde_json::to_value(&row.verdicts).unwrap_or_default();
    let mut flat = Flat {
        run_id: row.run_id.0,
        model: row.key.model,
        benchmark: row.key.benchmark,
        sample_id: row.key.sample_id,
        sample_k: row.key.sample_k,
        index: row.index,
        category: row.category,
        prompt_label: row.label.and_then(|l| name_of(&l)),
        prompt,
        messages,
        reasoning: None,
        reasoning_source: None,
        reasoning_state: None,
        answer: None,
        finish_reason: None,
        truncated_in_reasoning: false,
        prompt_tokens: None,
        completion_tokens: None,
        reasoning_tokens: None,
        latency_ms: None,
        cached: row.cached,
        attempts: row.attempts,
        error_kind: None,
        error_message: None,
        verdicts,
        cost_usd: row.cost_usd,
        helper_cost_usd: row.helper_spend.and_then(|s| s.cost_usd),
    };
    match row.outcome {
        Ok(completion) => {
            flat.truncated_in_reasoning = completion.truncated_in_reasoning();
            flat.reasoning =
                (!completion.reasoning.text.is_empty()).then_some(completion.reasoning.text);
            flat.reasoning_source = completion.reasoning.source.and_then(|s| name_of(&s));
            flat.reasoning_state = name_of(&completion.reasoning.state);
            flat.answer = completion.answer;
            flat.finish_reason = completion.finish_reason.map(|r| r.as_str().to_owned());
            flat.prompt_tokens = completion.usage.prompt_tokens;
            flat.completion_tokens = completion.usage.completion_tokens;
            flat.reasoning_tokens = completion.usage.reasoning_tokens;
            flat.latency_ms = Some(completion.latency_ms);
        }
        Err(error) => {
            flat.error_kind = Some(error.kind.as_str().to_owned());
            flat.error_message = Some(error.message);
        }
    }
    flat
}

/// Writes every result of `run` as JSON lines; returns the number of lines.
pub fn write_jsonl(store: &Store, run: RunId, out: &mut dyn Write) -> Result<u64, StoreError> {
    let mut lines = 0u64;
    store.for_each_result(run, true, |row| {
        let flat = flatten(row);
        let error = match (&flat.error_kind, &flat.error_message) {
            (Some(kind), Some(message)) => json!({ "kind": kind, "message": message }),
            _ => serde_json::Value::Null,
        };
        let usage = flat.latency_ms.map(|_| {
            json!({
                "prompt_tokens": flat.prompt_tokens,
                "completion_tokens": flat.completion_tokens,
                "reasoning_tokens": flat.reasoning_tokens,
            })
        });
        let line = json!({
            "schema_version": EXPORT_SCHEMA_VERSION,
            "run_id": flat.run_id,
            "model": flat.model,
            "benchmark": flat.benchmark,
            "sample_id": flat.sample_id,
            "sample_k": flat.sample_k,
            "index": flat.index,
            "category": flat.category,
            "prompt_label": flat.prompt_label,
            "prompt": flat.prompt,
            "messages": flat.messages,
            "reasoning": flat.reasoning,
            "reasoning_source": flat.reasoning_source,
            "reasoning_state": flat.reasoning_state,
            "answer": flat.answer,
            "finish_reason": flat.finish_reason,
            "truncated_in_reasoning": flat.truncated_in_reasoning,
            "usage": usage,
            "latency_ms": flat.latency_ms,
            "cached": flat.cached,
            "attempts": flat.attempts,
            "error": error,
            "verdicts": flat.verdicts,
            "cost_usd": flat.cost_usd,
            "helper_cost_usd": flat.helper_cost_usd,
        });
        serde_json::to_writer(&mut *out, &line).map_err(io_error)?;
        out.write_all(b"\n").map_err(io_error)?;
        lines += 1;
        Ok(())
    })?;
    out.flush().map_err(io_error)?;
    Ok(lines)
}

const FLAT_COLUMNS: [&str; 27] = [
    "schema_version",
    "run_id",
    "model",
    "benchmark",
    "sample_id",
    "sample_k",
    "index",
    "category",
    "prompt_label",
    "prompt",
    "reasoning",
    "reasoning_source",
    "reasoning_state",
    "answer",
    "finish_reason",
    "truncated_in_reasoning",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "latency_ms",
    "cached",
    "attempts",
    "error_kind",
    "error_message",
    "verdicts",
    "cost_usd",
    "helper_cost_usd",
];

/// A CSV cell as a spreadsheet will read it safely: control characters (NUL, BEL, ESC, the C1
/// set; not tab or line breaks) are dropped, and a cell that begins with `=`, `+`, `-`, `@`, a
/// tab or a carriage return gets a leading `'`, so that model output is never run as a formula.
pub fn csv_cell(text: String) -> String {
    let text = match redtrace_core::printable(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(cleaned) => cleaned,
    };
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    }
}

/// Writes every result of `run` as CSV with a header row; returns the number of records.
/// Cells go through [`csv_cell`].
pub fn write_csv(store: &Store, run: RunId, out: &mut dyn Write) -> Result<u64, StoreError> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(FLAT_COLUMNS).map_err(io_error)?;
    let mut records = 0u64;
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let number = |value: Option<u64>| value.map(|v| v.to_string()).unwrap_or_default();
    let dollars = |value: Option<f64>| value.map(|v| v.to_string()).unwrap_or_default();
    store.for_each_result(run, true, |row| {
        let flat = flatten(row);
        writer
            .write_record(
                [
                    EXPORT_SCHEMA_VERSION.to_string(),
                    flat.run_id.to_string(),
                    flat.model.clone(),
                    flat.benchmark.clone(),
                    flat.sample_id.clone(),
                    flat.sample_k.to_string(),
                    flat.index.to_string(),
                    flat.category.join(" / "),
                    text(&flat.prompt_label),
                    flat.prompt.clone(),
                    text(&flat.reasoning),
                    text(&flat.reasoning_source),
                    text(&flat.reasoning_state),
                    text(&flat.answer),
                    text(&flat.finish_reason),
                    flat.truncated_in_reasoning.to_string(),
                    number(flat.prompt_tokens),
                    number(flat.completion_tokens),
                    number(flat.reasoning_tokens),
                    number(flat.latency_ms),
                    flat.cached.to_string(),
                    flat.attempts.to_string(),
                    text(&flat.error_kind),
                    text(&flat.error_message),
                    flat.verdicts.to_string(),
                    dollars(flat.cost_usd),
                    dollars(flat.helper_cost_usd),
                ]
                .map(csv_cell),
            )
            .map_err(io_error)?;
        records += 1;
        Ok(())
    })?;
    writer.flush().map_err(io_error)?;
    Ok(records)
}

/// The Parquet schema of the flat export.
pub fn parquet_schema() -> Arc<Schema> {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        Field::new("schema_version", DataType::UInt32, false),
        Field::new("run_id", DataType::UInt64, false),
        text("model", false),
        text("benchmark", false),
        text("sample_id", false),
        Field::new("sample_k", DataType::UInt32, false),
        Field::new("index", DataType::UInt64, false),
        text("category", false),
        text("prompt_label", true),
        text("prompt", false),
        text("reasoning", true),
        text("reasoning_source", true),
        text("reasoning_state", true),
        text("answer", true),
        text("finish_reason", true),
        Field::new("truncated_in_reasoning", DataType::Boolean, false),
        Field::new("prompt_tokens", DataType::UInt64, true),
        Field::new("completion_tokens", DataType::UInt64, true),
        Field::new("reasoning_tokens", DataType::UInt64, true),
        Field::new("latency_ms", DataType::UInt64, true),
        Field::new("cached", DataType::Boolean, false),
        Field::new("attempts", DataType::UInt32, false),
        text("error_kind", true),
        text("error_message", true),
        text("verdicts", false),
        Field::new("cost_usd", DataType::Float64, true),
        Field::new("helper_cost_usd", DataType::Float64, true),
    ]))
}

/// Column builders for one row group.
#[derive(Default)]
struct Columns {
    schema_version: UInt32Builder,
    run_id: UInt64Builder,
    model: StringBuilder,
    benchmark: StringBuilder,
    sample_id: StringBuilder,
    sample_k: UInt32Builder,
    index: UInt64Builder,
    category: StringBuilder,
    prompt_label: StringBuilder,
    prompt: StringBuilder,
    reasoning: StringBuilder,
    reasoning_source: StringBuilder,
    reasoning_state: StringBuilder,
    answer: StringBuilder,
    finish_reason: StringBuilder,
    truncated_in_reasoning: BooleanBuilder,
    prompt_tokens: UInt64Builder,
    completion_tokens: UInt64Builder,
    reasoning_tokens: UInt64Builder,
    latency_ms: UInt64Builder,
    cached: BooleanBuilder,
    attempts: UInt32Builder,
    error_kind: StringBuilder,
    error_message: StringBuilder,
    verdicts: StringBuilder,
    cost_usd: Float64Builder,
    helper_cost_usd: Float64Builder,
    rows: usize,
}

impl Columns {
    fn push(&mut self, flat: Flat) {
        self.schema_version.append_value(EXPORT_SCHEMA_VERSION);
        self.run_id.append_value(flat.run_id as u64);
        self.model.append_value(&flat.model);
        self.benchmark.append_value(&flat.benchmark);
        self.sample_id.append_value(&flat.sample_id);
        self.sample_k.append_value(flat.sample_k);
        self.index.append_value(flat.index);
        self.category.append_value(flat.category.join(" / "));
        self.prompt_label.append_option(flat.prompt_label);
        self.prompt.append_value(&flat.prompt);
        self.reasoning.append_option(flat.reasoning);
        self.reasoning_source.append_option(flat.reasoning_source);
        self.reasoning_state.append_option(flat.reasoning_state);
        self.answer.append_option(flat.answer);
        self.finish_reason.append_option(flat.finish_reason);
        self.truncated_in_reasoning
            .append_value(flat.truncated_in_reasoning);
        self.prompt_tokens.append_option(flat.prompt_tokens);
        self.completion_tokens.append_option(flat.completion_tokens);
        self.reasoning_tokens.append_option(flat.reasoning_tokens);
        self.latency_ms.append_option(flat.latency_ms);
        self.cached.append_value(flat.cached);
        self.attempts.append_value(flat.attempts);
        self.error_kind.append_option(flat.error_kind);
        self.error_message.append_option(flat.error_message);
        self.verdicts.append_value(flat.verdicts.to_string());
        self.cost_usd.append_option(flat.cost_usd);
        self.helper_cost_usd.append_option(flat.helper_cost_usd);
        self.rows += 1;
    }

    fn finish(&mut self, schema: &Arc<Schema>) -> Result<RecordBatch, StoreError> {
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(self.schema_version.finish()),
            Arc::new(self.run_id.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.benchmark.finish()),
            Arc::new(self.sample_id.finish()),
            Arc::new(self.sample_k.finish()),
            Arc::new(self.index.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.prompt_label.finish()),
            Arc::new(self.prompt.finish()),
            Arc::new(self.reasoning.finish()),
            Arc::new(self.reasoning_source.finish()),
            Arc::new(self.reasoning_state.finish()),
            Arc::new(self.answer.finish()),
            Arc::new(self.finish_reason.finish()),
            Arc::new(self.truncated_in_reasoning.finish()),
            Arc::new(self.prompt_tokens.finish()),
            Arc::new(self.completion_tokens.finish()),
            Arc::new(self.reasoning_tokens.finish()),
            Arc::new(self.latency_ms.finish()),
            Arc::new(self.cached.finish()),
            Arc::new(self.attempts.finish()),
            Arc::new(self.error_kind.finish()),
            Arc::new(self.error_message.finish()),
            Arc::new(self.verdicts.finish()),
            Arc::new(self.cost_usd.finish()),
            Arc::new(self.helper_cost_usd.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(schema.clone(), arrays).map_err(io_error)
    }
}

/// Writes every result of `run` as Parquet (snappy-compressed, row groups of
/// [`PARQUET_BATCH`]); returns the number of records.
pub fn write_parquet<W: Write + Send>(
    store: &Store,
    run: RunId,
    out: W,
) -> Result<u64, StoreError> {
    let schema = parquet_schema();
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_max_row_group_row_count(Some(PARQUET_BATCH))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(out, schema.clone(), Some(properties))
        .map_err(io_error)?;
    let mut columns = Columns::default();
    let mut records = 0u64;
    store.for_each_result(run, true, |row| {
        columns.push(flatten(row));
        records += 1;
        if columns.rows >= PARQUET_BATCH {
            let batch = columns.finish(&schema)?;
            writer.write(&batch).map_err(io_error)?;
        }
        Ok(())
    })?;
    if columns.rows > 0 {
        let batch = columns.finish(&schema)?;
        writer.write(&batch).map_err(io_error)?;
    }
    writer.close().map_err(io_error)?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_are_never_formulas_nor_terminal_escapes() {
        assert_eq!(
            csv_cell("=HYPERLINK(\"http://x\")".into()),
            "'=HYPERLINK(\"http://x\")"
        );
        for start in ["+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(start.into()).starts_with('\''), "{start:?}");
        }
        assert_eq!(
            csv_cell("a\u{1b}[31mred\u{7}\u{0}\u{9b}b".into()),
            "a[31mredb"
        );
        assert_eq!(
            csv_cell("line one\nline\ttwo".into()),
            "line one\nline\ttwo"
        );
        assert_eq!(csv_cell("plain 12".into()), "plain 12");
    }
}
