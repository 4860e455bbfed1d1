//! Streaming exports of a run's results.
//!
//! JSONL schema, version [`EXPORT_SCHEMA_VERSION`]: one object per (sample, completion) with
//! `schema_version, run_id, model, benchmark, sample_id, sample_k, index, category (array),
//! prompt_label (safe/unsafe/null), prompt (the last user message), messages, reasoning (null
//! when absent), reasoning_source, reasoning_state (complete/truncated/absent), answer (null
//! when there is none), finish_reason, truncated_in_reasoning, usage {prompt_tokens,
//! completion_tokens, reasoning_tokens}, latency_ms, cached, attempts, error ({kind, message}
//! or null), verdicts [{judge, channel, label, score, rationale}]`.

use serde_json::json;
use std::io::Write;

use crate::{RunId, Store, StoreError};

/// The version of the export schema above; bumped on any incompatible change.
pub const EXPORT_SCHEMA_VERSION: u32 = 1;

/// Writes every result of `run` as JSON lines, streaming; returns the number of lines.
pub fn write_jsonl(store: &Store, run: RunId, out: &mut dyn Write) -> Result<u64, StoreError> {
    let mut lines = 0u64;
    let io = |e: std::io::Error| StoreError::NotFound(format!("writing the export failed: {e}"));
    store.for_each_result(run, true, |row| {
        let messages = row.messages.unwrap_or_default();
        let prompt = messages
            .iter()
            .rev()
            .find(|m| m.role == redtrace_core::Role::User)
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let (completion, error) = match &row.outcome {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(json!({ "kind": e.kind, "message": e.message }))),
        };
        let line = json!({
            "schema_version": EXPORT_SCHEMA_VERSION,
            "run_id": row.run_id,
            "model": row.key.model,
            "benchmark": row.key.benchmark,
            "sample_id": row.key.sample_id,
            "sample_k": row.key.sample_k,
            "index": row.index,
            "category": row.category,
            "prompt_label": row.label,
            "prompt": prompt,
            "messages": messages,
            "reasoning": completion.and_then(|c| (!c.reasoning.text.is_empty()).then_some(&c.reasoning.text)),
            "reasoning_source": completion.and_then(|c| c.reasoning.source),
            "reasoning_state": completion.map(|c| c.reasoning.state),
            "answer": completion.and_then(|c| c.answer.as_ref()),
            "finish_reason": completion.and_then(|c| c.finish_reason.as_ref()),
            "truncated_in_reasoning": completion.map(|c| c.truncated_in_reasoning()).unwrap_or(false),
            "usage": completion.map(|c| c.usage),
            "latency_ms": completion.map(|c| c.latency_ms),
            "cached": row.cached,
            "attempts": row.attempts,
            "error": error,
            "verdicts": row.verdicts,
        });
        serde_json::to_writer(&mut *out, &line).map_err(|e| io(e.into()))?;
        out.write_all(b"\n").map_err(io)?;
        lines += 1;
        Ok(())
    })?;
    out.flush().map_err(io)?;
    Ok(lines)
}
