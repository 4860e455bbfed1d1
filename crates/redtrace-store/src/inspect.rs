//! A run written as inspect_ai logs (`export --format inspect`), one `.eval` file per model ×
//! benchmark, so that `inspect view` opens redtrace's runs: each sample with its prompt, the
//! model's reply (its trace as a reasoning block before the answer, as inspect_ai itself
//! keeps it) and every verdict as a score named `JUDGE/CHANNEL`. Rows stream from the store;
//! only the per-sample summaries are held until each log is closed.

use redtrace_core::{Role, RunStatus, TraceState};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{ResultRow, RunId, RunInfo, Store, StoreError};

/// The inspect_ai log format version written.
const LOG_VERSION: u32 = 2;

fn io_error(path: &Path, error: impl std::fmt::Display) -> StoreError {
    StoreError::Export(format!("{}: {error}", path.display()))
}

/// One log being written.
struct Log {
    path: PathBuf,
    zip: zip::ZipWriter<std::fs::File>,
    summaries: Vec<Value>,
}

/// A file name part: letters, digits, `-` and `.`; the rest `_`.
fn file_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The sample of one result row, as inspect_ai's `EvalSample` reads it.
fn sample(row: &ResultRow, run: RunId) -> Value {
    let messages = row.messages.clone().unwrap_or_default();
    let role = |role: Role| match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    let input_messages: Vec<Value> = messages
        .iter()
        .map(|m| json!({ "role": role(m.role), "content": m.content }))
        .collect();
    let input = match messages.as_slice() {
        [only] if only.role == Role::User => Value::String(only.content.clone()),
        _ => Value::Array(input_messages.clone()),
    };
    let scores: serde_json::Map<String, Value> = row
        .verdicts
        .iter()
        .map(|v| {
            (
                format!("{}/{}", v.judge, v.channel.as_str()),
                json!({
                    "value": serde_json::to_value(v.label).unwrap_or_default(),
                    "explanation": v.rationale,
                    "metadata": { "score": v.score },
                }),
            )
        })
        .collect();
    let mut metadata = json!({
        "benchmark": row.key.benchmark,
        "category": row.category,
        "prompt_label": row.label,
        "redtrace_run": run.0,
        "sample_k": row.key.sample_k,
    });
    let mut all_messages = input_messages;
    let (output, error) = match &row.outcome {
        Ok(completion) => {
            metadata["reasoning_state"] =
                serde_json::to_value(completion.reasoning.state).unwrap_or_default();
            metadata["reasoning_source"] =
                serde_json::to_value(completion.reasoning.source).unwrap_or_default();
            let answer = completion.answer.clone().unwrap_or_default();
            let mut content = Vec::new();
            if !completion.reasoning.text.is_empty() {
                content
                    .push(json!({ "type": "reasoning", "reasoning": completion.reasoning.text }));
            } else if completion.reasoning.state == TraceState::Redacted {
                content.push(json!({ "type": "reasoning", "reasoning": "", "redacted": true }));
            }
            content.push(json!({ "type": "text", "text": answer }));
            let message = json!({
                "role": "assistant",
                "content": content,
                "model": row.key.model,
            });
            all_messages.push(message.clone());
            let usage = &completion.usage;
            let mut output = json!({
                "model": row.key.model,
                "choices": [{
                    "message": message,
                    "stop_reason": match completion.finish_reason.as_ref().map(|r| r.as_str()) {
                        Some("stop") => "stop",
                        Some("length") => "max_tokens",
                        Some("content_filter") => "content_filter",
                        Some("tool_calls") => "tool_calls",
                        _ => "unknown",
                    },
                }],
                "completion": answer,
                "time": completion.latency_ms as f64 / 1000.0,
            });
            if let (Some(input), Some(generated)) = (usage.prompt_tokens, usage.completion_tokens) {
                output["usage"] = json!({
                    "input_tokens": input,
                    "output_tokens": generated,
                    "total_tokens": input + generated,
                    "reasoning_tokens": usage.reasoning_tokens,
                });
            }
            (output, Value::Null)
        }
        Err(error) => (
            json!({ "model": row.key.model, "choices": [] }),
            json!({
                "message": format!("{}: {}", error.kind, error.message),
                "traceback": "",
                "traceback_ansi": "",
            }),
        ),
    };
    let mut sample = json!({
        "id": row.key.sample_id,
        "epoch": row.key.sample_k + 1,
        "input": input,
        "target": "",
        "messages": all_messages,
        "output": output,
        "scores": scores,
        "metadata": metadata,
    });
    if !error.is_null() {
        sample["error"] = error;
    }
    sample
}

/// Writes the run `info` describes as inspect_ai `.eval` logs into `dir` (created if needed),
/// one per model × benchmark; returns their paths.
pub fn write_inspect(
    store: &Store,
    info: &RunInfo,
    dir: &Path,
) -> Result<Vec<PathBuf>, StoreError> {
    let run = info.id;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut logs: BTreeMap<(String, String), Log> = BTreeMap::new();
    store.for_each_result(run, true, |row| {
        let key = (row.key.model.clone(), row.key.benchmark.clone());
        if !logs.contains_key(&key) {
            let path = dir.join(format!(
                "redtrace-run{run}_{}_{}.eval",
                file_part(&row.key.benchmark),
                file_part(&row.key.model)
            ));
            let file = std::fs::File::create(&path).map_err(|e| io_error(&path, e))?;
            logs.insert(
                key.clone(),
                Log {
                    zip: zip::ZipWriter::new(file),
                    path,
                    summaries: Vec::new(),
                },
            );
        }
        let log = logs.get_mut(&key).expect("inserted above");
        let sample = sample(&row, run);
        let name = format!(
            "samples/{}_epoch_{}.json",
            file_part(&row.key.sample_id),
            row.key.sample_k + 1
        );
        log.zip
            .start_file(name, options)
            .map_err(|e| io_error(&log.path, e))?;
        log.zip
            .write_all(sample.to_string().as_bytes())
            .map_err(|e| io_error(&log.path, e))?;
        log.summaries.push(json!({
            "id": sample["id"],
            "epoch": sample["epoch"],
            "input": sample["input"],
            "target": "",
            "metadata": sample["metadata"],
            "scores": sample["scores"],
            "error": sample.get("error").and_then(|e| e.get("message")),
            "completed": true,
        }));
        Ok(())
    })?;
    let status = match info.status {
        RunStatus::Complete => "success",
        RunStatus::Running => "started",
        RunStatus::Interrupted => "cancelled",
        RunStatus::Failed => "error",
    };
    let mut paths = Vec::new();
    for ((model, benchmark), mut log) in logs {
        let record = info.spec.benchmarks.iter().find(|b| b.name == benchmark);
        let config = info.spec.models.iter().find(|m| m.name == model);
        let header = json!({
            "version": LOG_VERSION,
            "status": status,
            "eval": {
                "eval_id": format!("{}-{}", &info.spec_hash[..16.min(info.spec_hash.len())], paths.len()),
                "run_id": format!("redtrace-run-{run}"),
                "created": info.created_at,
                "task": benchmark,
                "task_id": format!("{}-{}", file_part(&benchmark), run),
                "task_version": 0,
                "dataset": {
                    "name": benchmark,
                    "location": record.map(|r| r.file.clone()),
                    "samples": log.summaries.len(),
                },
                "model": model,
                "model_generate_config": config.map(|c| json!({
                    "temperature": c.params.temperature,
                    "max_tokens": c.params.max_tokens,
                })).unwrap_or(json!({})),
                "config": {},
                "metadata": {
                    "redtrace": {
                        "run": run.0,
                        "tool_version": info.tool_version,
                        "data_sha256": record.map(|r| r.sha256.clone()),
                        "judges": record.map(|r| r.judges.clone()),
                    }
                },
            },
            "plan": { "name": "plan", "steps": [{ "solver": "redtrace", "params": {} }], "config": {} },
            "stats": { "started_at": info.created_at, "completed_at": info.updated_at, "model_usage": {} },
        });
        for (name, value) in [
            (
                "summaries.json",
                Value::Array(std::mem::take(&mut log.summaries)),
            ),
            ("header.json", header),
        ] {
            log.zip
                .start_file(name, options)
                .map_err(|e| io_error(&log.path, e))?;
            log.zip
                .write_all(value.to_string().as_bytes())
                .map_err(|e| io_error(&log.path, e))?;
        }
        log.zip.finish().map_err(|e| io_error(&log.path, e))?;
        paths.push(log.path);
    }
    Ok(paths)
}
