//! The store: runs with their frozen spec, the samples they used, every completion (or the
//! error that stood in for it) and every verdict, plus the completion cache (any earlier
//! successful completion with the same request hash) and the judges' replies, streaming
//! exports (JSONL, CSV, Parquet, inspect_ai logs) and imports of generations made elsewhere.
//!
//! One trait, [`Storage`], two backends: [`SqliteStore`] (one file, bundled SQLite in WAL
//! mode, the embedded default) and [`PgStore`] (a PostgreSQL database that many processes
//! share, with a run's work queue, its request schedules and permits). [`Store`] opens the
//! one a location names (a `postgres://` URL, else a file path).
//!
//! Writes come in batches, each one transaction, so a crash loses at most the batch in
//! flight and never leaves half a completion. Nothing here holds a whole run in memory
//! (an import, which checks its whole file before storing any of it, excepted): reads stream
//! rows to a callback. API keys never reach this crate: specs name the
//! environment variable, not its value; a PostgreSQL password is never shown.

mod export;
mod import;
mod inspect;
mod merge;
mod postgres;
mod schema;
mod sqlite;

pub use export::{
    csv_cell, parquet_schema, write_csv, write_jsonl, write_parquet, EXPORT_SCHEMA_VERSION,
    PARQUET_BATCH,
};
pub use import::{import, ImportOptions, Imported};
pub use inspect::write_inspect;
pub use merge::Merged;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use redtrace_core::{
    Channel, Completion, ErrorKind, Label, PromptLabel, RunSpec, RunStatus, Sample, Verdict,
};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A sample's metadata as stored: its source row's other fields and, for an attacked sample,
/// the request as the data set wrote it (under `original_prompt`, as stores have always kept
/// it); `None` when there is neither.
fn stored_metadata(sample: &Sample) -> Option<String> {
    let mut metadata = sample.metadata.clone();
    if let Some(request) = &sample.request {
        metadata.insert("original_prompt".into(), request.clone().into());
    }
    (!metadata.is_empty()).then(|| serde_json::Value::Object(metadata).to_string())
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// A stored value could not be read back.
    #[error("store {path}: corrupt value in {what}: {detail}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// Which table and column.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// PostgreSQL failed (or could not be reached).
    #[error("store {at}: {message}")]
    Postgres {
        /// `postgres://USER@HOST:PORT/DB` (never a password).
        at: String,
        /// What went wrong.
        message: String,
    },
    /// A run reference matched nothing.
    #[error("{0}")]
    NotFound(String),
    /// The store was written by an older redtrace and must be upgraded before it is read.
    #[error("store {path} has schema version {found}; this redtrace reads version {wanted}: `redtrace migrate --db {path}` upgrades it in place (copy it first to keep the old one)")]
    NeedsMigration {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// This build's.
        wanted: i64,
    },
    /// Another process is running this run.
    #[error("run {run} in {path} is being run by another redtrace process: wait for it to end, or start a run of your own with --new-run")]
    Busy {
        /// The database file.
        path: PathBuf,
        /// The run.
        run: RunId,
    },
    /// Writing an export failed.
    #[error("writing the export failed: {0}")]
    Export(String),
    /// A file to import could not be read; nothing was stored.
    #[error("import of {0}; nothing was stored")]
    Import(String),
}

/// A run's id in its store.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl rusqlite::ToSql for RunId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl rusqlite::types::FromSql for RunId {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        i64::column_result(value).map(RunId)
    }
}

/// A run as listed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunInfo {
    /// Its id.
    pub id: RunId,
    /// Hash of its identity-defining spec.
    pub spec_hash: String,
    /// When it was created (UTC, ISO 8601).
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// Where it stands.
    pub status: RunStatus,
    /// The redtrace version that created it.
    pub tool_version: String,
    /// The frozen spec.
    pub spec: RunSpec,
    /// Completions stored (successful or not).
    pub completions: u64,
    /// Of which errors.
    pub errors: u64,
}

/// A process's claim on a run (see [`Storage::claim_run`]); released when dropped.
pub struct RunClaim {
    _hold: Box<dyn Send>,
}

/// Identifies one unit of work within a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnitKey {
    /// The target's name.
    pub model: String,
    /// The benchmark's name.
    pub benchmark: String,
    /// The sample's id.
    pub sample_id: String,
    /// Which of several completions for the same sample (from 0).
    pub sample_k: u32,
}

/// The outcome of one unit, ready to store.
#[derive(Debug, Clone)]
pub struct UnitRecord {
    /// Which unit.
    pub key: UnitKey,
    /// The cache key of the request.
    pub request_hash: String,
    /// The completion, or why there is none.
    pub outcome: Result<Completion, UnitError>,
    /// Attempts made (0 when served from the cache).
    pub attempts: u32,
    /// Served from the completion cache.
    pub cached: bool,
    /// Verdicts on the completion.
    pub verdicts: Vec<Verdict>,
    /// What the target's calls for it cost, USD (0 when served from the cache); `None`: no
    /// price for the target.
    pub cost_usd: Option<f64>,
    /// What the attack's helper models (attacker, scorer, translator) spent on it.
    pub helper_spend: Option<redtrace_core::price::Spend>,
}

/// A request that failed for good.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitError {
    /// Why: rate limited, timed out, ...
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
}

/// One stored completion with its sample and verdicts, as reports and exports read it.
#[derive(Debug, Clone)]
pub struct ResultRow {
    /// The run.
    pub run_id: RunId,
    /// Which unit.
    pub key: UnitKey,
    /// Position of the sample in its data file.
    pub index: u64,
    /// The sample's category path.
    pub category: Vec<String>,
    /// The benchmark's label for the prompt.
    pub label: Option<PromptLabel>,
    /// The messages sent (only when asked for).
    pub messages: Option<Vec<redtrace_core::Message>>,
    /// The completion, or the error.
    pub outcome: Result<Completion, UnitError>,
    /// Served from the cache.
    pub cached: bool,
    /// Attempts made.
    pub attempts: u32,
    /// Verdicts, in judge then channel order.
    pub verdicts: Vec<Verdict>,
    /// What the target's calls cost, USD; `None`: no price.
    pub cost_usd: Option<f64>,
    /// What the attack's helper models spent.
    pub helper_spend: Option<redtrace_core::price::Spend>,
}

impl ResultRow {
    /// The category path joined with " / ", or "(none)".
    pub fn category_name(&self) -> String {
        if self.category.is_empty() {
            "(none)".to_owned()
        } else {
            self.category.join(" / ")
        }
    }

    /// Every level of the category path, shortest first, each joined with " / ": for
    /// `[l2, l3]`, `["l2", "l2 / l3"]`, so a hierarchical benchmark (AIR-Bench) is reported
    /// per level-2 and per level-3 category. `["(none)"]` for a row without a category.
    pub fn category_levels(&self) -> Vec<String> {
        if self.category.is_empty() {
            return vec!["(none)".to_owned()];
        }
        (1..=self.category.len())
            .map(|depth| self.category[..depth].join(" / "))
            .collect()
    }
}

fn enum_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn enum_from<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
}

/// A sample from its stored columns; what is wrong (column, detail) if one does not read.
pub(crate) fn sample_from(
    id: String,
    index: i64,
    category: String,
    label: Option<String>,
    messages: String,
    metadata: Option<String>,
) -> Result<Sample, (String, String)> {
    let json = |what: &str, text: &str| -> Result<serde_json::Value, (String, String)> {
        serde_json::from_str(text).map_err(|e| (format!("samples.{what} of {id}"), e.to_string()))
    };
    let category = json("category", &category)?;
    let messages = json("messages", &messages)?;
    let mut metadata = match metadata {
        Some(text) => match json("metadata", &text)? {
            serde_json::Value::Object(map) => map,
            _ => Default::default(),
        },
        None => Default::default(),
    };
    let request = match metadata.remove("original_prompt") {
        Some(serde_json::Value::String(text)) => Some(text),
        Some(other) => {
            metadata.insert("original_prompt".into(), other);
            None
        }
        None => None,
    };
    let label = match label {
        Some(name) => Some(enum_from(&name).ok_or_else(|| ("samples.label".to_owned(), name))?),
        None => None,
    };
    Ok(Sample {
        index: index as u64,
        messages: serde_json::from_value(messages)
            .map_err(|e| (format!("samples.messages of {id}"), e.to_string()))?,
        category: serde_json::from_value(category)
            .map_err(|e| (format!("samples.category of {id}"), e.to_string()))?,
        label,
        metadata,
        request,
        id,
    })
}

/// A completion (or the error that stood in for it) from its stored columns, in the order
/// both backends select them (reasoning, reasoning_source, reasoning_state, answer,
/// finish_reason, prompt_tokens, completion_tokens, reasoning_tokens, latency_ms, raw, error,
/// error_kind, cached_prompt_tokens): `text(i)` and `int(i)` read the i-th, `corrupt` names
/// what does not read.
pub(crate) fn completion_of(
    text: impl Fn(usize) -> Result<Option<String>, StoreError>,
    int: impl Fn(usize) -> Result<Option<u64>, StoreError>,
    corrupt: impl Fn(&str, String) -> StoreError,
) -> Result<Result<Completion, UnitError>, StoreError> {
    if let Some(message) = text(10)? {
        return Ok(Err(UnitError {
            kind: ErrorKind::parse(&text(11)?.unwrap_or_default()),
            message,
        }));
    }
    let state_name = text(2)?.unwrap_or_default();
    let state: redtrace_core::TraceState = enum_from(&state_name)
        .ok_or_else(|| corrupt("completions.reasoning_state", state_name.clone()))?;
    let source: Option<redtrace_core::TraceSource> = match text(1)? {
        Some(name) => {
            Some(enum_from(&name).ok_or_else(|| corrupt("completions.reasoning_source", name))?)
        }
        None => None,
    };
    Ok(Ok(Completion {
        reasoning: redtrace_core::Reasoning {
            text: text(0)?.unwrap_or_default(),
            source,
            state,
        },
        answer: text(3)?,
        finish_reason: text(4)?.as_deref().map(redtrace_core::StopReason::parse),
        usage: redtrace_core::Usage {
            prompt_tokens: int(5)?,
            completion_tokens: int(6)?,
            reasoning_tokens: int(7)?,
            cached_prompt_tokens: int(12)?,
        },
        latency_ms: int(8)?.unwrap_or(0),
        raw: text(9)?.unwrap_or_default(),
    }))
}

/// A stored result's columns as both backends read them, before their JSON and names are
/// read ([`StoredRow::into_result`]).
pub(crate) struct StoredRow {
    pub run_id: RunId,
    pub key: UnitKey,
    pub cached: bool,
    pub attempts: u32,
    pub index: u64,
    pub category: String,
    pub label: Option<String>,
    pub messages: Option<String>,
    pub outcome: Result<Completion, UnitError>,
    pub cost_usd: Option<f64>,
    pub helper_spend: Option<String>,
}

/// `text` read as JSON, naming `what` where it does not read.
fn json_of<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, (String, String)> {
    serde_json::from_str(text).map_err(|e| (what.to_owned(), e.to_string()))
}

impl StoredRow {
    /// The result, without verdicts; what does not read (column, detail) if something does not.
    pub(crate) fn into_result(self) -> Result<ResultRow, (String, String)> {
        Ok(ResultRow {
            run_id: self.run_id,
            key: self.key,
            index: self.index,
            category: json_of(&self.category, "samples.category")?,
            label: self.label.and_then(|l| enum_from(&l)),
            messages: self
                .messages
                .map(|m| json_of(&m, "samples.messages"))
                .transpose()?,
            outcome: self.outcome,
            cached: self.cached,
            attempts: self.attempts,
            verdicts: Vec::new(),
            cost_usd: self.cost_usd,
            helper_spend: self
                .helper_spend
                .map(|s| json_of(&s, "completions.helper_spend"))
                .transpose()?,
        })
    }
}

/// A stored verdict's columns as both backends read them ([`StoredVerdict::into_verdict`]).
pub(crate) struct StoredVerdict {
    pub judge: String,
    pub channel: String,
    pub label: String,
    pub score: Option<f64>,
    pub rationale: Option<String>,
    pub categories: Option<String>,
    pub spend: Option<String>,
}

impl StoredVerdict {
    /// The verdict; what does not read (column, detail) if something does not.
    pub(crate) fn into_verdict(self) -> Result<Verdict, (String, String)> {
        Ok(Verdict {
            channel: Channel::parse(&self.channel)
                .ok_or_else(|| ("verdicts.channel".to_owned(), self.channel.clone()))?,
            label: Label::parse(&self.label)
                .ok_or_else(|| ("verdicts.label".to_owned(), self.label.clone()))?,
            judge: self.judge,
            score: self.score,
            rationale: self.rationale.unwrap_or_default(),
            categories: self
                .categories
                .map(|c| json_of(&c, "verdicts.categories"))
                .transpose()?
                .unwrap_or_default(),
            spend: self
                .spend
                .map(|s| json_of(&s, "verdicts.spend"))
                .transpose()?,
        })
    }
}

/// Judge health from (judge, unscored, rationale) per verdict on a channel with text.
pub(crate) fn health_of(
    verdicts: impl IntoIterator<Item = (String, bool, Option<String>)>,
) -> Vec<JudgeHealth> {
    let mut health: std::collections::BTreeMap<String, (u64, u64, HashMap<String, u64>)> =
        std::collections::BTreeMap::new();
    for (judge, unscored, rationale) in verdicts {
        let entry = health.entry(judge).or_default();
        entry.0 += 1;
        if unscored {
            entry.1 += 1;
            // The reason's kind: its words up to the first detail (a quoted reply, a
            // number), so that replies that differ count together.
            let reason: String = rationale
                .unwrap_or_default()
                .split([':', '\'', '"'])
                .next()
                .unwrap_or("")
                .chars()
                .take(80)
                .collect();
            *entry.2.entry(reason.trim().to_owned()).or_default() += 1;
        }
    }
    health
        .into_iter()
        .map(|(judge, (verdicts, unscored, reasons))| {
            let mut reasons: Vec<(String, u64)> = reasons.into_iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            JudgeHealth {
                judge,
                verdicts,
                unscored,
                reasons,
            }
        })
        .collect()
}

/// How one judge of a run fared: see [`Storage::judge_health`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JudgeHealth {
    /// The judge as stored.
    pub judge: String,
    /// Its verdicts on channels that had text.
    pub verdicts: u64,
    /// How many of them are unscored.
    pub unscored: u64,
    /// Why, by kind, most frequent first.
    pub reasons: Vec<(String, u64)>,
}

/// What every store does, whatever holds it: one SQLite file ([`SqliteStore`], the embedded
/// default) or a PostgreSQL database ([`PgStore`]) that many processes on many machines share.
/// The conformance tests (`tests/conformance.rs`) run the same checks against both.
pub trait Storage: Send {
    /// Where the store is, for messages: the file, or `postgres://USER@HOST:PORT/DB` (never a
    /// password).
    fn location(&self) -> String;

    /// Whether many processes may work one run of this store at once, taking units from its
    /// queue ([`Storage::take_units`]): PostgreSQL. A SQLite run is one process's.
    fn shared(&self) -> bool {
        false
    }

    /// The schema version of the store.
    fn schema_version(&self) -> Result<i64, StoreError>;

    /// Checks the store before a run writes into it (SQLite: the file's pages, by
    /// `quick_check`; PostgreSQL checks its own, and a store that answers is whole): a damaged
    /// one is refused then, not found out later by a report.
    fn check_integrity(&self) -> Result<(), StoreError>;

    /// A judge's stored reply to the request with this hash.
    fn judge_reply(&self, request_hash: &str) -> Result<Option<String>, StoreError>;

    /// Stores a judge's reply (the first reply to a request is kept).
    fn put_judge_reply(&self, request_hash: &str, reply: &str) -> Result<(), StoreError>;

    /// Claims `run` for this process: while the claim lives, lists show it running, and a run
    /// whose status says running but whose claim nobody holds is shown as interrupted. The
    /// claim goes however the process ends, kill -9 included. SQLite: an OS lock on a file
    /// beside the database, exclusive (another process gets [`StoreError::Busy`]).
    /// PostgreSQL: a shared advisory lock on a connection of its own, which every worker of
    /// the run holds (deleting the run needs it alone).
    fn claim_run(&self, run: RunId) -> Result<RunClaim, StoreError>;

    /// Across every run, `model`'s prompt tokens and the characters of the JSON of the
    /// messages that made them (completions it answered itself, not from the cache): its
    /// tokenizer's ratio, for estimating what new prompts cost.
    fn prompt_ratio(&self, model: &str) -> Result<Option<(u64, u64)>, StoreError>;

    /// Across every run, the mean of `model`'s generated tokens per completion (of
    /// `benchmark` only, when given); `None` when none is stored.
    fn mean_output(&self, model: &str, benchmark: Option<&str>) -> Result<Option<f64>, StoreError>;

    /// Across every run, the mean prompt and generated tokens of the judge `judge`'s (by
    /// registry name, any judge model) verdicts on `model`'s completions that called a model.
    fn mean_judge_spend(&self, judge: &str, model: &str) -> Result<Option<(f64, f64)>, StoreError>;

    /// The batches of `run` at `endpoint` not yet ended: id, the provider's id, and each
    /// request's key with its stored result line.
    #[allow(clippy::type_complexity)]
    fn open_batches(
        &self,
        run: RunId,
        endpoint: &str,
    ) -> Result<Vec<(i64, Option<String>, Vec<(String, Option<String>)>)>, StoreError>;

    /// Records a batch of `keys` formed in `run`, before it is submitted; its id.
    fn form_batch(
        &mut self,
        run: RunId,
        endpoint: &str,
        api: &str,
        keys: &[String],
    ) -> Result<i64, StoreError>;

    /// Records a batch's provider id (`remote`, then state `submitted`) or a new state.
    fn set_batch(&self, id: i64, remote: Option<&str>, state: &str) -> Result<(), StoreError>;

    /// Records the result line of request `key` in batch `id`.
    fn batch_result(&self, id: i64, key: &str, line: &str) -> Result<(), StoreError>;

    /// The result line of request `key` in a batch of `run`, the latest, if one is stored.
    fn stored_batch_result(&self, run: RunId, key: &str) -> Result<Option<String>, StoreError>;

    /// Every batch of `run`: id, the provider's id, state, requests, results stored.
    #[allow(clippy::type_complexity)]
    fn batches(
        &self,
        run: RunId,
    ) -> Result<Vec<(i64, Option<String>, String, u64, u64)>, StoreError>;

    /// What `run` has spent, USD: its targets' calls, its attack helpers' and its judges'
    /// (calls of models without a price count nothing).
    fn spent(&self, run: RunId) -> Result<f64, StoreError>;

    /// Deletes `run` with its samples, completions and verdicts (the judge-reply cache, shared
    /// by all runs, stays); a run another process is running is refused. Returns how many
    /// completions went with it.
    fn delete_run(&self, run: RunId) -> Result<u64, StoreError>;

    /// The latest run with this spec hash, if any.
    fn find_run(&self, spec_hash: &str) -> Result<Option<RunId>, StoreError>;

    /// Creates a run of `spec`, running, under the spec's identity hash.
    fn create_run(&self, spec: &RunSpec, tool_version: &str) -> Result<RunId, StoreError>;

    /// Sets a run's status.
    fn set_status(&self, run: RunId, status: RunStatus) -> Result<(), StoreError>;

    /// The distinct model names of a run's completions.
    fn models(&self, run: RunId) -> Result<Vec<String>, StoreError>;

    /// Every run, newest first, with counts.
    fn runs(&self) -> Result<Vec<RunInfo>, StoreError>;

    /// Units of `run` that already have a successful completion.
    fn answered(&self, run: RunId) -> Result<HashSet<UnitKey>, StoreError>;

    /// The judge and channel of every settled verdict of each answered unit of `run`: scored
    /// (any label but unscored), or unscored because the channel has no text (no answer, no
    /// trace), which judging again would not change. A resumed run re-judges the rest: judge
    /// failures, unparseable judge replies, judges added since.
    fn judged(
        &self,
        run: RunId,
    ) -> Result<HashMap<UnitKey, HashSet<(String, Channel)>>, StoreError>;

    /// How each judge of `run` fared on the texts it had to judge (a channel with text): its
    /// verdicts, how many are unscored (a failed call, an unparseable reply, a missing template
    /// field), and the commonest reasons, most frequent first. Channels with nothing to judge
    /// (no trace, no answer) are not counted: they are the model's outcome, not the judge's.
    fn judge_health(&self, run: RunId) -> Result<Vec<JudgeHealth>, StoreError>;

    /// The successful completion of one unit of `run`.
    fn completion(&self, run: RunId, key: &UnitKey) -> Result<Option<Completion>, StoreError>;

    /// Stores verdicts on units already answered (a resumed run's re-judging), replacing a
    /// verdict of the same judge and channel. Units without a successful completion are
    /// skipped.
    fn write_verdicts(
        &mut self,
        run: RunId,
        verdicts: &[(UnitKey, Vec<Verdict>)],
    ) -> Result<(), StoreError>;

    /// The newest successful completion of any run with this request hash.
    fn cached(&self, request_hash: &str) -> Result<Option<Completion>, StoreError>;

    /// Copies run `from`'s samples and completions (errors included, verdicts not) into run
    /// `to`, for the benchmarks named, keeping what `to` already holds: the start of re-judging
    /// a stored run into a run of its own. Returns how many completions were copied.
    fn copy_answers(
        &mut self,
        from: RunId,
        to: RunId,
        benchmarks: &[&str],
    ) -> Result<u64, StoreError>;

    /// The samples `run` stored for `benchmark`, in data order, as they were sent (an attack's
    /// rewrite, with the data set's request kept).
    fn samples(&self, run: RunId, benchmark: &str) -> Result<Vec<Sample>, StoreError>;

    /// Stores samples of a benchmark for a run (ignoring those already stored).
    fn insert_sample_list(
        &mut self,
        run: RunId,
        benchmark: &str,
        samples: &[&Sample],
    ) -> Result<(), StoreError>;

    /// Stores a batch of unit outcomes in one transaction. A success replaces a stored error
    /// for the same unit; a stored success is never replaced. Returns how many units it
    /// stored (a unit whose success was stored already is left as it is).
    fn write_batch(&mut self, run: RunId, records: &[UnitRecord]) -> Result<u64, StoreError>;

    /// Streams every completion of `run` with its sample and verdicts, in model, benchmark
    /// and data order. `with_messages` also loads the messages sent (for exports).
    fn visit_results(
        &self,
        run: RunId,
        with_messages: bool,
        visit: &mut dyn FnMut(ResultRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// The latest run with `spec`'s identity, or (when there is none, or `new_run`) a new
    /// one created for it; whether it was created. Processes that start the same run at the
    /// same moment get one run between them.
    fn find_or_create_run(
        &self,
        spec: &RunSpec,
        tool_version: &str,
        new_run: bool,
    ) -> Result<(RunId, bool), StoreError> {
        if !new_run {
            if let Some(run) = self.find_run(&spec.identity_hash())? {
                return Ok((run, false));
            }
        }
        Ok((self.create_run(spec, tool_version)?, true))
    }

    /// Merges the latest run of the SQLite store at `source` (a shard's) into the run of its
    /// identity here ([`Merged`]).
    fn merge_from(&mut self, source: &Path) -> Result<Merged, StoreError>;

    /// Resolves `last` or a run id.
    fn resolve_run(&self, reference: &str) -> Result<RunInfo, StoreError> {
        let runs = self.runs()?;
        let found = if reference == "last" {
            runs.into_iter().next()
        } else {
            let id = reference.parse().map(RunId).map_err(|_| {
                StoreError::NotFound(format!(
                    "run '{reference}' is neither 'last' nor a run id (see `redtrace runs`)"
                ))
            })?;
            runs.into_iter().find(|run| run.id == id)
        };
        found.ok_or_else(|| {
            StoreError::NotFound(format!(
                "no run '{reference}' in {} (see `redtrace runs`)",
                self.location()
            ))
        })
    }

    /// Names the process that writes through this handle (a worker of a shared run): its
    /// completions record it, for per-worker counts.
    fn set_worker(&mut self, _worker: &str) {}

    /// Puts units of `run` in its queue (those there already stay; a finished one whose
    /// completion is an error is queued again). Returns how many were queued.
    fn enqueue_units(&self, _run: RunId, _keys: &[UnitKey]) -> Result<u64, StoreError> {
        Err(unshared(&self.location(), "a work queue"))
    }

    /// Takes up to `at_most` queued units of `run` for `worker`, with a lease of `lease`:
    /// units nobody holds, or whose holder's lease ran out (a worker that died). Two workers
    /// never hold one unit at once.
    fn take_units(
        &self,
        _run: RunId,
        _worker: &str,
        _at_most: usize,
        _lease: std::time::Duration,
    ) -> Result<Vec<UnitKey>, StoreError> {
        Err(unshared(&self.location(), "a work queue"))
    }

    /// Extends the lease of every unit `worker` holds in `run` to `lease` from now (the
    /// heartbeat); how many it holds.
    fn renew_lease(
        &self,
        _run: RunId,
        _worker: &str,
        _lease: std::time::Duration,
    ) -> Result<u64, StoreError> {
        Err(unshared(&self.location(), "a work queue"))
    }

    /// Gives back the unfinished units `worker` holds in `run` (a worker that stops).
    fn release_units(&self, _run: RunId, _worker: &str) -> Result<u64, StoreError> {
        Err(unshared(&self.location(), "a work queue"))
    }

    /// How `run`'s queue stands.
    fn queue_state(&self, _run: RunId) -> Result<QueueState, StoreError> {
        Err(unshared(&self.location(), "a work queue"))
    }

    /// Takes the next slot of the request schedule `key` (an endpoint of a run), `interval`
    /// after the slot taken before it by any process; how long from now until it comes.
    fn next_slot(
        &self,
        _key: &str,
        _interval: std::time::Duration,
    ) -> Result<std::time::Duration, StoreError> {
        Err(unshared(&self.location(), "a shared request schedule"))
    }

    /// The newest successful completion of any run for each of these request hashes that
    /// has one ([`Storage::cached`] for many at once).
    fn cached_many(&self, hashes: &[String]) -> Result<HashMap<String, Completion>, StoreError> {
        let mut found = HashMap::new();
        for hash in hashes {
            if let Some(completion) = self.cached(hash)? {
                found.insert(hash.clone(), completion);
            }
        }
        Ok(found)
    }

    /// Takes one of the `limit` permits of `key` (an endpoint of a run) for this connection,
    /// if one is free: which one. The permit is held until given back or until this
    /// connection ends (a worker that dies gives its permits back with it).
    fn take_permit(&self, _key: &str, _limit: usize) -> Result<Option<u32>, StoreError> {
        Err(unshared(&self.location(), "shared permits"))
    }

    /// Gives permit `slot` of `key` back.
    fn give_back_permit(&self, _key: &str, _slot: u32) -> Result<(), StoreError> {
        Err(unshared(&self.location(), "shared permits"))
    }

    /// Records how `run` was started (the first record stays), for workers that join it.
    fn put_recipe(&self, _run: RunId, _recipe: &str) -> Result<(), StoreError> {
        Err(unshared(&self.location(), "a run's recipe"))
    }

    /// How `run` was started, if that was recorded.
    fn recipe(&self, _run: RunId) -> Result<Option<String>, StoreError> {
        Err(unshared(&self.location(), "a run's recipe"))
    }

    /// Per worker, the units of `run` it answered and those that failed, most first.
    fn worker_counts(&self, _run: RunId) -> Result<Vec<WorkerCount>, StoreError> {
        Ok(Vec::new())
    }
}

/// The error for what only a shared store does, asked of the store at `location`.
fn unshared(location: &str, what: &str) -> StoreError {
    StoreError::NotFound(format!(
        "{what} needs a PostgreSQL store (--db postgres://...); {location} is a SQLite file"
    ))
}

/// How a run's work queue stands ([`Storage::queue_state`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueState {
    /// Units nobody holds.
    pub waiting: u64,
    /// Units a worker holds under a live lease.
    pub leased: u64,
    /// Units held under a lease that ran out (their worker died or lost the database).
    pub expired: u64,
    /// Units finished (answered, or failed after their retries).
    pub done: u64,
}

impl QueueState {
    /// Units not finished.
    pub fn open(&self) -> u64 {
        self.waiting + self.leased + self.expired
    }

    /// Units queued, finished or not.
    pub fn total(&self) -> u64 {
        self.open() + self.done
    }
}

/// One worker's share of a shared run ([`Storage::worker_counts`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkerCount {
    /// The worker (`HOST:PID`).
    pub worker: String,
    /// Units it answered.
    pub answered: u64,
    /// Units that failed in its hands.
    pub failed: u64,
}

/// A handle on a store: SQLite or PostgreSQL, chosen by where it is (a `postgres://` or
/// `postgresql://` URL, else a file path). It derefs to [`Storage`], which holds what
/// every store does.
pub struct Store {
    inner: Box<dyn Storage>,
}

/// The PostgreSQL URL `location` names, if it names one.
pub fn postgres_url(location: &Path) -> Option<&str> {
    location
        .to_str()
        .filter(|text| text.starts_with("postgres://") || text.starts_with("postgresql://"))
}

/// Whether there is a store at `location`: a file that exists; a PostgreSQL URL is taken to
/// name one (opening it says whether it does).
pub fn exists(location: &Path) -> bool {
    postgres_url(location).is_some() || location.is_file()
}

/// `location` as messages show it: the file's path, or a PostgreSQL URL as
/// `postgres://USER@HOST:PORT/DB`, without its password.
pub fn shown(location: &Path) -> String {
    match postgres_url(location) {
        Some(url) => postgres::shown_url(url),
        None => location.display().to_string(),
    }
}

impl Store {
    /// Opens (creating and migrating when needed) the store at `location`: a SQLite file, or
    /// a PostgreSQL database by URL (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`, libpq's
    /// options as query parameters, `?host=/run/dir` for a Unix socket folder).
    pub fn open(location: &Path) -> Result<Self, StoreError> {
        let inner: Box<dyn Storage> = match postgres_url(location) {
            Some(url) => Box::new(PgStore::open(url)?),
            None => Box::new(SqliteStore::open(location)?),
        };
        Ok(Self { inner })
    }

    /// Opens the existing store at `location` for reading only (see
    /// [`SqliteStore::open_read_only`]; a PostgreSQL store is opened as by [`Store::open`],
    /// and must exist with this build's schema).
    pub fn open_read_only(location: &Path) -> Result<Self, StoreError> {
        let inner: Box<dyn Storage> = match postgres_url(location) {
            Some(url) => Box::new(PgStore::open_existing(url)?),
            None => Box::new(SqliteStore::open_read_only(location)?),
        };
        Ok(Self { inner })
    }

    /// Stores samples of a benchmark for a run (ignoring those already stored).
    pub fn insert_samples<'a>(
        &mut self,
        run: RunId,
        benchmark: &str,
        samples: impl IntoIterator<Item = &'a Sample>,
    ) -> Result<(), StoreError> {
        let samples: Vec<&Sample> = samples.into_iter().collect();
        self.inner.insert_sample_list(run, benchmark, &samples)
    }

    /// Streams every completion of `run` with its sample and verdicts, in model, benchmark
    /// and data order. `with_messages` also loads the messages sent (for exports).
    pub fn for_each_result(
        &self,
        run: RunId,
        with_messages: bool,
        mut visit: impl FnMut(ResultRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.inner.visit_results(run, with_messages, &mut visit)
    }

    /// The spec and status of the latest run of the SQLite store at `path` (read-only).
    pub fn latest_run_of(path: &Path) -> Result<(RunSpec, String), StoreError> {
        SqliteStore::latest_run_of(path)
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Storage;

    fn deref(&self) -> &Self::Target {
        self.inner.as_ref()
    }
}

impl std::ops::DerefMut for Store {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.inner.as_mut()
    }
}
