//! Generations made elsewhere, brought into the store as a run of their own so that redtrace
//! can judge them (`redtrace import`, then `redtrace judge`): JSON lines or CSV with the
//! fields `export` writes (so an export imports back), and inspect_ai `.eval` logs (their
//! reasoning content kept as the trace). The whole file is read and checked before anything is
//! written; an error names the file and the line (or the log's member).
//!
//! Fields of a JSONL object or CSV row: `prompt` (or `messages`, the conversation sent), and
//! `answer` and/or `reasoning` (the trace), or `error` / `error_message` for a generation that
//! failed; optionally `model`, `benchmark`, `sample_id` (else the row's number), `sample_k`,
//! `category` (an array, or a path joined with " / "), `prompt_label` (safe/unsafe),
//! `reasoning_source`, `reasoning_state`, `finish_reason`, token counts (`usage` or
//! `prompt_tokens`, `completion_tokens`, `reasoning_tokens`) and `latency_ms`. Other fields
//! are kept as the sample's metadata; verdicts are not imported (the point is to judge).

use redtrace_core::{
    sha256_hex, BenchmarkRecord, Completion, ErrorKind, Message, ModelConfig, ModelSource,
    PromptLabel, Reasoning, Role, RunSpec, RunStatus, Sample, StopReason, TraceSource, TraceState,
    Usage,
};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use crate::{RunId, Store, StoreError, UnitError, UnitKey, UnitRecord};

/// What to call what a file does not name.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The model of records without a `model` field (else `imported`; an inspect log's own
    /// model).
    pub model: Option<String>,
    /// The benchmark of records without a `benchmark` field (else `file:NAME`; an inspect
    /// log's task).
    pub benchmark: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    /// The run holding the generations.
    pub run: RunId,
    /// Generations imported (failed ones included).
    pub records: u64,
    /// Of which failed generations.
    pub errors: u64,
    /// The file had been imported before: that run, unchanged.
    pub existing: bool,
}

/// The file formats read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Jsonl,
    Csv,
    Inspect,
}

/// One generation read.
struct Row {
    key: UnitKey,
    sample: Sample,
    outcome: Result<Completion, UnitError>,
    line: String,
}

/// Reads `path` (`.jsonl`/`.json`, `.csv`, or an inspect_ai `.eval` log) and stores its
/// generations as a new run, complete and unjudged. The same file imported again gives the
/// run it made before.
pub fn import(
    store: &mut Store,
    path: &Path,
    options: &ImportOptions,
    tool_version: &str,
) -> Result<Imported, StoreError> {
    let bad = |detail: String| StoreError::Import(format!("{}: {detail}", path.display()));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "json" | "ndjson") => Format::Jsonl,
        Some("csv") => Format::Csv,
        Some("eval") => Format::Inspect,
        _ => {
            return Err(bad(
                "unknown format: give a .jsonl, .csv or inspect_ai .eval file".into(),
            ))
        }
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let file_hash = sha256_hex(&bytes);
    let rows = match format {
        Format::Jsonl => {
            let text = std::str::from_utf8(&bytes).map_err(|e| bad(e.to_string()))?;
            let mut objects = Vec::new();
            for (at, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let value: Value = serde_json::from_str(line)
                    .map_err(|e| bad(format!("line {}: not JSON: {e}", at + 1)))?;
                let Value::Object(object) = value else {
                    return Err(bad(format!("line {}: not a JSON object", at + 1)));
                };
                objects.push((format!("line {}", at + 1), object));
            }
            records(objects, &name, options, false).map_err(bad)?
        }
        Format::Csv => {
            let mut reader = csv::Reader::from_reader(bytes.as_slice());
            let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
            let mut objects = Vec::new();
            for (at, record) in reader.records().enumerate() {
                let record = record.map_err(|e| bad(format!("line {}: {e}", at + 2)))?;
                let object: Map<String, Value> = headers
                    .iter()
                    .zip(record.iter())
                    .filter(|(_, cell)| !cell.is_empty())
                    .map(|(field, cell)| (field.to_owned(), Value::String(cell.to_owned())))
                    .collect();
                objects.push((format!("line {}", at + 2), object));
            }
            records(objects, &name, options, true).map_err(bad)?
        }
        Format::Inspect => inspect_records(&bytes, &name, options).map_err(bad)?,
    };
    if rows.is_empty() {
        return Err(bad("no generations in it".into()));
    }

    // One unit once, one sample id one prompt.
    let mut seen: HashMap<&UnitKey, &str> = HashMap::new();
    let mut prompts: HashMap<(&str, &str), &[Message]> = HashMap::new();
    for row in &rows {
        if let Some(first) = seen.insert(&row.key, &row.line) {
            return Err(bad(format!(
                "{}: model {}, benchmark {}, sample {} (completion {}) again (first at {first}); give sample_k to tell completions of one prompt apart",
                row.line, row.key.model, row.key.benchmark, row.key.sample_id, row.key.sample_k
            )));
        }
        let messages = prompts
            .entry((&row.key.benchmark, &row.key.sample_id))
            .or_insert(&row.sample.messages);
        if *messages != row.sample.messages.as_slice() {
            return Err(bad(format!(
                "{}: sample {} of {} has another prompt than before; give each prompt its own sample_id",
                row.line, row.key.sample_id, row.key.benchmark
            )));
        }
    }

    let mut models: Vec<String> = Vec::new();
    let mut benchmarks: Vec<String> = Vec::new();
    let mut completions = 1;
    for row in &rows {
        if !models.contains(&row.key.model) {
            models.push(row.key.model.clone());
        }
        if !benchmarks.contains(&row.key.benchmark) {
            benchmarks.push(row.key.benchmark.clone());
        }
        completions = completions.max(row.key.sample_k + 1);
    }
    let file = path.display().to_string();
    let spec = RunSpec::new(
        models
            .iter()
            .map(|model| {
                let mut config = ModelConfig::with_source(
                    ModelSource::Imported { file: file.clone() },
                    model.clone(),
                );
                config.name = model.clone();
                config
            })
            .collect(),
        benchmarks
            .iter()
            .map(|benchmark| BenchmarkRecord {
                name: benchmark.clone(),
                file: file.clone(),
                sha256: file_hash.clone(),
                fields: serde_json::json!({ "imported": match format {
                    Format::Jsonl => "jsonl",
                    Format::Csv => "csv",
                    Format::Inspect => "inspect_ai",
                }}),
                limit: None,
                sample_seed: None,
                sampling: None,
                judges: Vec::new(),
                responder: None,
                attack: None,
            })
            .collect(),
        Vec::new(),
        completions,
    );
    let records = rows.len() as u64;
    let errors = rows.iter().filter(|r| r.outcome.is_err()).count() as u64;
    if let Some(run) = store.find_run(&spec.identity_hash())? {
        return Ok(Imported {
            run,
            records,
            errors,
            existing: true,
        });
    }
    let run = store.create_run(&spec, tool_version)?;
    for benchmark in &benchmarks {
        let mut ids = HashSet::new();
        let samples: Vec<&Sample> = rows
            .iter()
            .filter(|r| &r.key.benchmark == benchmark && ids.insert(&r.key.sample_id))
            .map(|r| &r.sample)
            .collect();
        store.insert_samples(run, benchmark, samples)?;
    }
    let units: Vec<UnitRecord> = rows
        .into_iter()
        .map(|row| UnitRecord {
            // Never the hash of a real request: an imported generation serves no cache.
            request_hash: sha256_hex(
                format!(
                    "imported\u{1f}{file_hash}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
                    row.key.model, row.key.benchmark, row.key.sample_id, row.key.sample_k
                )
                .as_bytes(),
            ),
            key: row.key,
            outcome: row.outcome,
            attempts: 0,
            cached: false,
            verdicts: Vec::new(),
            cost_usd: None,
            helper_spend: None,
        })
        .collect();
    for batch in units.chunks(512) {
        store.write_batch(run, batch)?;
    }
    store.set_status(run, RunStatus::Complete)?;
    Ok(Imported {
        run,
        records,
        errors,
        existing: false,
    })
}

/// The fields every record may have; the rest become the sample's metadata.
const KNOWN: &[&str] = &[
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
    "messages",
    "reasoning",
    "reasoning_source",
    "reasoning_state",
    "answer",
    "finish_reason",
    "truncated_in_reasoning",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "latency_ms",
    "cached",
    "attempts",
    "error",
    "error_kind",
    "error_message",
    "verdicts",
    "cost_usd",
    "helper_cost_usd",
];

/// A field as text: a string as it is, a number as written; `None` when null or absent.
fn text(object: &Map<String, Value>, field: &str) -> Option<String> {
    match object.get(field)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A field as a whole number (a CSV cell is text).
fn number(object: &Map<String, Value>, field: &str) -> Result<Option<u64>, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{field} is not a whole number: {n}")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{field} is not a whole number: '{s}'")),
        Some(other) => Err(format!("{field} is not a whole number: {other}")),
    }
}

/// A stored enum's name read back (`think_tags`, `complete`).
fn named<T: serde::de::DeserializeOwned>(field: &str, name: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(name.to_owned()))
        .map_err(|_| format!("{field} '{name}' is not one redtrace writes"))
}

/// Rows of JSONL objects or CSV rows (`flat`: every cell is text, `category` a joined path).
fn records(
    objects: Vec<(String, Map<String, Value>)>,
    file_name: &str,
    options: &ImportOptions,
    flat: bool,
) -> Result<Vec<Row>, String> {
    let default_benchmark = options
        .benchmark
        .clone()
        .unwrap_or_else(|| format!("file:{file_name}"));
    let default_model = options
        .model
        .clone()
        .unwrap_or_else(|| "imported".to_owned());
    let mut rows = Vec::new();
    for (position, (line, object)) in objects.into_iter().enumerate() {
        let row = record(&object, position, &default_model, &default_benchmark, flat)
            .map_err(|e| format!("{line}: {e}"))?;
        rows.push(Row { line, ..row });
    }
    Ok(rows)
}

fn record(
    object: &Map<String, Value>,
    position: usize,
    default_model: &str,
    default_benchmark: &str,
    flat: bool,
) -> Result<Row, String> {
    let messages: Vec<Message> = match object.get("messages") {
        Some(Value::Array(_)) => serde_json::from_value(object["messages"].clone())
            .map_err(|e| format!("messages: {e}"))?,
        Some(Value::String(s)) if !s.is_empty() => {
            serde_json::from_str(s).map_err(|e| format!("messages: {e}"))?
        }
        _ => match text(object, "prompt") {
            Some(prompt) if !prompt.trim().is_empty() => vec![Message::user(prompt)],
            _ => return Err("no prompt (give prompt, or messages)".into()),
        },
    };
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err("messages hold no user turn".into());
    }
    let category: Vec<String> = match object.get("category") {
        Some(Value::Array(levels)) => levels
            .iter()
            .map(|l| {
                l.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| l.to_string())
            })
            .collect(),
        Some(Value::String(path)) if flat || !path.is_empty() => path
            .split(" / ")
            .filter(|l| !l.is_empty() && *l != "(none)")
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let label: Option<PromptLabel> = match text(object, "prompt_label") {
        Some(name) => Some(match name.trim().to_ascii_lowercase().as_str() {
            "safe" | "benign" | "harmless" | "unharmful" => PromptLabel::Safe,
            "unsafe" | "harmful" => PromptLabel::Unsafe,
            _ => return Err(format!("prompt_label '{name}': give safe or unsafe")),
        }),
        None => None,
    };
    let index = number(object, "index")?.unwrap_or(position as u64);
    let sample_id = text(object, "sample_id").unwrap_or_else(|| (position + 1).to_string());
    let sample_k = number(object, "sample_k")?.unwrap_or(0);
    let sample_k = u32::try_from(sample_k).map_err(|_| format!("sample_k {sample_k} too large"))?;
    let metadata: Map<String, Value> = object
        .iter()
        .filter(|(field, _)| !KNOWN.contains(&field.as_str()))
        .map(|(field, value)| (field.clone(), value.clone()))
        .collect();
    let sample = Sample {
        id: sample_id.clone(),
        index,
        messages,
        category,
        label,
        metadata,
        request: None,
    };
    let key = UnitKey {
        model: text(object, "model").unwrap_or_else(|| default_model.to_owned()),
        benchmark: text(object, "benchmark").unwrap_or_else(|| default_benchmark.to_owned()),
        sample_id,
        sample_k,
    };
    let error = match object.get("error") {
        Some(Value::Object(error)) => Some((text(error, "kind"), text(error, "message"))),
        _ => text(object, "error_message").map(|m| (text(object, "error_kind"), Some(m))),
    };
    let outcome = if let Some((kind, message)) = error {
        Err(UnitError {
            kind: ErrorKind::parse(kind.as_deref().unwrap_or("imported")),
            message: message.unwrap_or_else(|| "failed (imported)".into()),
        })
    } else {
        let trace = text(object, "reasoning").filter(|t| !t.is_empty());
        let answer = text(object, "answer");
        let state: Option<TraceState> = text(object, "reasoning_state")
            .map(|name| named("reasoning_state", &name))
            .transpose()?;
        if trace.is_none() && answer.is_none() && state != Some(TraceState::Redacted) {
            return Err(
                "neither answer nor reasoning (a failed generation gives error_message)".into(),
            );
        }
        let reasoning = match trace {
            Some(text) => Reasoning {
                text,
                source: Some(match self::text(object, "reasoning_source") {
                    Some(name) => named("reasoning_source", &name)?,
                    None => TraceSource::Imported,
                }),
                state: state.unwrap_or(if answer.is_some() {
                    TraceState::Complete
                } else {
                    TraceState::Truncated
                }),
            },
            None => Reasoning {
                state: state.unwrap_or(TraceState::Absent),
                ..Reasoning::absent()
            },
        };
        let (prompt_tokens, completion_tokens, reasoning_tokens) = match object.get("usage") {
            Some(Value::Object(usage)) => (
                number(usage, "prompt_tokens")?,
                number(usage, "completion_tokens")?,
                number(usage, "reasoning_tokens")?,
            ),
            _ => (
                number(object, "prompt_tokens")?,
                number(object, "completion_tokens")?,
                number(object, "reasoning_tokens")?,
            ),
        };
        Ok(Completion {
            reasoning,
            answer,
            finish_reason: text(object, "finish_reason").map(|r| StopReason::parse(&r)),
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                reasoning_tokens,
                cached_prompt_tokens: None,
            },
            latency_ms: number(object, "latency_ms")?.unwrap_or(0),
            raw: String::new(),
        })
    };
    Ok(Row {
        key,
        sample,
        outcome,
        line: String::new(),
    })
}

/// The text parts and the reasoning of an inspect_ai message's content (a string, or a list
/// of parts of which `text` and `reasoning` are read).
fn inspect_content(content: &Value) -> (Option<String>, Option<(String, bool)>) {
    match content {
        Value::String(s) => (Some(s.clone()), None),
        Value::Array(parts) => {
            let mut answer: Option<String> = None;
            let mut trace: Option<(String, bool)> = None;
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let piece = part.get("text").and_then(Value::as_str).unwrap_or("");
                        answer.get_or_insert_with(String::new).push_str(piece);
                    }
                    Some("reasoning") => {
                        let redacted = part.get("redacted").and_then(Value::as_bool) == Some(true);
                        // A redacted block holds the provider's encrypted text, not a trace;
                        // its summary, where there is one, is what the model showed.
                        let shown = if redacted {
                            part.get("summary").and_then(Value::as_str).unwrap_or("")
                        } else {
                            part.get("reasoning").and_then(Value::as_str).unwrap_or("")
                        };
                        let entry = trace.get_or_insert_with(|| (String::new(), redacted));
                        if !shown.is_empty() {
                            if !entry.0.is_empty() {
                                entry.0.push('\n');
                            }
                            entry.0.push_str(shown);
                        }
                    }
                    _ => {}
                }
            }
            (answer, trace)
        }
        _ => (None, None),
    }
}

/// Reads an inspect_ai `.eval` log (a zip of `header.json` and `samples/*.json`).
fn inspect_records(
    bytes: &[u8],
    file_name: &str,
    options: &ImportOptions,
) -> Result<Vec<Row>, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not an inspect_ai .eval log (a zip archive): {e}"))?;
    let member = |archive: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
                  name: &str|
     -> Result<Value, String> {
        let mut file = archive.by_name(name).map_err(|e| format!("{name}: {e}"))?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| format!("{name}: {e}"))?;
        serde_json::from_str(&text).map_err(|e| format!("{name}: not JSON: {e}"))
    };
    let header = member(&mut archive, "header.json")?;
    let eval = &header["eval"];
    let model = options
        .model
        .clone()
        .or_else(|| eval["model"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "imported".into());
    let benchmark = options
        .benchmark
        .clone()
        .or_else(|| eval["task"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("file:{file_name}"));
    let mut names: Vec<String> = archive
        .file_names()
        .filter(|n| n.starts_with("samples/") && n.ends_with(".json"))
        .map(str::to_owned)
        .collect();
    names.sort();
    let mut rows = Vec::new();
    for (position, name) in names.iter().enumerate() {
        let sample = member(&mut archive, name)?;
        let at = |detail: String| format!("{name}: {detail}");
        let id = match &sample["id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(at("no id".into())),
        };
        let epoch = sample["epoch"].as_u64().unwrap_or(1).max(1);
        let messages: Vec<Message> = match &sample["input"] {
            Value::String(prompt) => vec![Message::user(prompt.clone())],
            Value::Array(turns) => {
                let mut messages = Vec::new();
                for turn in turns {
                    let role = match turn["role"].as_str() {
                        Some("system") => Role::System,
                        Some("assistant") => Role::Assistant,
                        _ => Role::User,
                    };
                    let (content, _) = inspect_content(&turn["content"]);
                    messages.push(Message::new(role, content.unwrap_or_default()));
                }
                messages
            }
            _ => return Err(at("no input".into())),
        };
        let mut metadata = sample["metadata"].as_object().cloned().unwrap_or_default();
        let category: Vec<String> = match metadata.remove("category") {
            Some(Value::String(c)) => vec![c],
            Some(Value::Array(levels)) => levels
                .iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect(),
            Some(other) => {
                metadata.insert("category".into(), other);
                Vec::new()
            }
            None => Vec::new(),
        };
        let output = &sample["output"];
        let choice = &output["choices"][0];
        let outcome = if let Some(error) = sample.get("error").filter(|e| !e.is_null()) {
            Err(UnitError {
                kind: ErrorKind::parse("imported"),
                message: error["message"]
                    .as_str()
                    .map_or_else(|| error.to_string(), str::to_owned),
            })
        } else if choice.is_null() {
            Err(UnitError {
                kind: ErrorKind::parse("imported"),
                message: "the log holds no output for this sample".into(),
            })
        } else {
            let (answer, trace) = inspect_content(&choice["message"]["content"]);
            let reasoning = match trace {
                Some((text, redacted)) if redacted && text.is_empty() => Reasoning {
                    state: TraceState::Redacted,
                    ..Reasoning::absent()
                },
                Some((text, _)) if !text.is_empty() => Reasoning {
                    text,
                    source: Some(TraceSource::InspectReasoning),
                    state: if answer.is_some() {
                        TraceState::Complete
                    } else {
                        TraceState::Truncated
                    },
                },
                _ => Reasoning::absent(),
            };
            let usage = &output["usage"];
            Ok(Completion {
                reasoning,
                answer,
                finish_reason: choice["stop_reason"].as_str().map(StopReason::parse),
                usage: Usage {
                    prompt_tokens: usage["input_tokens"].as_u64(),
                    completion_tokens: usage["output_tokens"].as_u64(),
                    reasoning_tokens: usage["reasoning_tokens"].as_u64(),
                    cached_prompt_tokens: None,
                },
                latency_ms: output["time"]
                    .as_f64()
                    .map_or(0, |secs| (secs * 1000.0) as u64),
                // Where the trace came from: the log, its task and model, the sample.
                raw: serde_json::json!({
                    "imported_from": file_name,
                    "format": "inspect_ai",
                    "task": eval["task"],
                    "model": eval["model"],
                    "sample": sample["id"],
                    "epoch": epoch,
                })
                .to_string(),
            })
        };
        rows.push(Row {
            key: UnitKey {
                model: model.clone(),
                benchmark: benchmark.clone(),
                sample_id: id.clone(),
                sample_k: u32::try_from(epoch - 1).unwrap_or(u32::MAX),
            },
            sample: Sample {
                id,
                index: position as u64,
                messages,
                category,
                label: None,
                metadata,
                request: None,
            },
            outcome,
            line: name.clone(),
        });
    }
    Ok(rows)
}
