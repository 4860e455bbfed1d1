//! Merging the stores of a run's shards (`redtrace merge`): each source's run is laid into
//! the run of the same identity in this store (made where there is none), its samples,
//! completions, verdicts and the judge-reply cache copied. A unit is stored once: one already
//! here stays, except that a success replaces a stored error (the unique key of a unit makes a
//! duplicate impossible, not a hope). Runs of different identities are refused, with where
//! they differ.

use redtrace_core::RunSpec;
use rusqlite::{params, OptionalExtension};
use std::path::Path;

use crate::{RunId, SqliteStore, Storage, StoreError, UnitKey, UnitRecord};

/// What one merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    /// The run in this store.
    pub run: RunId,
    /// The source's run was made here (none of its identity was).
    pub created: bool,
    /// Completions copied (new units, and successes that replaced a stored error).
    pub completions: u64,
    /// Completions left out: the unit was stored here already.
    pub already: u64,
    /// Verdicts copied.
    pub verdicts: u64,
}

impl SqliteStore {
    /// The spec and status of the latest run of the store at `path` (read-only).
    pub fn latest_run_of(path: &Path) -> Result<(RunSpec, String), StoreError> {
        let store = SqliteStore::open_read_only(path)?;
        let (spec, status): (String, String) = store
            .conn
            .query_row(
                "SELECT spec, status FROM runs ORDER BY id DESC LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|e| store.err(e))?
            .ok_or_else(|| StoreError::NotFound(format!("no run in {}", path.display())))?;
        let spec =
            RunSpec::from_json(&spec).map_err(|e| store.corrupt("runs.spec", e.to_string()))?;
        Ok((spec, status))
    }

    /// Merges the latest run of the store at `source` into the run of its identity here.
    pub(crate) fn merge_shard(&mut self, source: &Path) -> Result<Merged, StoreError> {
        let (spec, status) = SqliteStore::latest_run_of(source)?;
        let path = self.path.clone();
        let wrap = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        self.conn
            .execute(
                "ATTACH DATABASE ?1 AS src",
                [source.to_string_lossy().as_ref()],
            )
            .map_err(wrap)?;
        let result = self.merge_attached(&spec, &status);
        let detached = self.conn.execute("DETACH DATABASE src", []).map_err(wrap);
        let merged = result?;
        detached?;
        Ok(merged)
    }

    fn merge_attached(&mut self, spec: &RunSpec, status: &str) -> Result<Merged, StoreError> {
        let path = self.path.clone();
        let wrap = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let hash = spec.identity_hash();
        let from: i64 = self
            .conn
            .query_row(
                "SELECT id FROM src.runs WHERE spec_hash = ?1 ORDER BY id DESC LIMIT 1",
                [&hash],
                |row| row.get(0),
            )
            .map_err(wrap)?;
        let tx = self.conn.transaction().map_err(wrap)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM runs WHERE spec_hash = ?1 ORDER BY id DESC LIMIT 1",
                [&hash],
                |row| row.get(0),
            )
            .optional()
            .map_err(wrap)?;
        let (to, created) = match existing {
            Some(id) => (id, false),
            None => {
                tx.execute(
                    "INSERT INTO runs (spec_hash, created_at, updated_at, status, tool_version, spec)
                     SELECT spec_hash, created_at, updated_at, status, tool_version, spec
                     FROM src.runs WHERE id = ?1",
                    [from],
                )
                .map_err(wrap)?;
                (tx.last_insert_rowid(), true)
            }
        };
        tx.execute(
            "INSERT OR IGNORE INTO samples (run_id, benchmark, sample_id, idx, category, label, messages, metadata)
             SELECT ?2, benchmark, sample_id, idx, category, label, messages, metadata
             FROM src.samples WHERE run_id = ?1",
            params![from, to],
        )
        .map_err(wrap)?;
        let offered: i64 = tx
            .query_row(
                "SELECT count(*) FROM src.completions WHERE run_id = ?1",
                [from],
                |row| row.get(0),
            )
            .map_err(wrap)?;
        // A unit stored here stays; a success replaces a stored error.
        let changed = tx
            .execute(
                "INSERT INTO completions (run_id, model, benchmark, sample_id, sample_k, request_hash,
                    reasoning, reasoning_source, reasoning_state, answer, finish_reason,
                    prompt_tokens, completion_tokens, reasoning_tokens, latency_ms, attempts, cached,
                    raw, error, error_kind, cached_prompt_tokens, cost_usd, helper_spend, created_at)
                 SELECT ?2, model, benchmark, sample_id, sample_k, request_hash,
                    reasoning, reasoning_source, reasoning_state, answer, finish_reason,
                    prompt_tokens, completion_tokens, reasoning_tokens, latency_ms, attempts, cached,
                    raw, error, error_kind, cached_prompt_tokens, cost_usd, helper_spend, created_at
                 FROM src.completions WHERE run_id = ?1 ORDER BY id
                 ON CONFLICT (run_id, model, benchmark, sample_id, sample_k) DO UPDATE SET
                    request_hash = excluded.request_hash, reasoning = excluded.reasoning,
                    reasoning_source = excluded.reasoning_source, reasoning_state = excluded.reasoning_state,
                    answer = excluded.answer, finish_reason = excluded.finish_reason,
                    prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens,
                    reasoning_tokens = excluded.reasoning_tokens, latency_ms = excluded.latency_ms,
                    attempts = completions.attempts + excluded.attempts, cached = excluded.cached,
                    raw = excluded.raw, error = excluded.error, error_kind = excluded.error_kind,
                    cached_prompt_tokens = excluded.cached_prompt_tokens,
                    cost_usd = excluded.cost_usd, helper_spend = excluded.helper_spend,
                    created_at = excluded.created_at
                 WHERE completions.error IS NOT NULL AND excluded.error IS NULL",
                params![from, to],
            )
            .map_err(wrap)? as i64;
        // The verdicts of the completions now here that came from the source: same unit, same
        // request, and a success on both sides.
        let verdicts = tx
            .execute(
                "INSERT OR IGNORE INTO verdicts (completion_id, judge, channel, label, score, rationale, categories, spend)
                 SELECT t.id, v.judge, v.channel, v.label, v.score, v.rationale, v.categories, v.spend
                 FROM src.verdicts v
                 JOIN src.completions s ON s.id = v.completion_id
                 JOIN completions t ON t.run_id = ?2 AND t.model = s.model AND t.benchmark = s.benchmark
                      AND t.sample_id = s.sample_id AND t.sample_k = s.sample_k
                      AND t.request_hash = s.request_hash AND t.error IS NULL
                 WHERE s.run_id = ?1 AND s.error IS NULL",
                params![from, to],
            )
            .map_err(wrap)? as u64;
        tx.execute(
            "INSERT OR IGNORE INTO judge_replies SELECT * FROM src.judge_replies",
            [],
        )
        .map_err(wrap)?;
        // A run is complete when every shard merged into it was.
        if !created && status != "complete" {
            tx.execute(
                "UPDATE runs SET status = 'interrupted', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
                [to],
            )
            .map_err(wrap)?;
        }
        tx.commit().map_err(wrap)?;
        Ok(Merged {
            run: RunId(to),
            created,
            completions: changed as u64,
            already: (offered - changed).max(0) as u64,
            verdicts,
        })
    }
}

/// Merges the latest run of the SQLite store at `source` into `target` through the storage
/// interface (a PostgreSQL store): the same outcome as [`SqliteStore::merge_shard`], a unit
/// never stored twice (a success stored here already stands).
pub(crate) fn merge_into(target: &mut dyn Storage, source: &Path) -> Result<Merged, StoreError> {
    let (spec, status) = SqliteStore::latest_run_of(source)?;
    let shard = SqliteStore::open_read_only(source)?;
    let hash = spec.identity_hash();
    let from: RunId = shard
        .conn
        .query_row(
            "SELECT id FROM runs WHERE spec_hash = ?1 ORDER BY id DESC LIMIT 1",
            [&hash],
            |row| row.get(0),
        )
        .map_err(|e| shard.err(e))?;
    let (to, created) = match target.find_run(&hash)? {
        Some(run) => (run, false),
        None => {
            let tool_version: String = shard
                .conn
                .query_row(
                    "SELECT tool_version FROM runs WHERE id = ?1",
                    [from],
                    |row| row.get(0),
                )
                .map_err(|e| shard.err(e))?;
            (target.create_run(&spec, &tool_version)?, true)
        }
    };
    for benchmark in &spec.benchmarks {
        let samples = shard.samples(from, &benchmark.name)?;
        let samples: Vec<&redtrace_core::Sample> = samples.iter().collect();
        target.insert_sample_list(to, &benchmark.name, &samples)?;
    }
    let mut hashes: std::collections::HashMap<UnitKey, String> = Default::default();
    {
        let mut statement = shard
            .conn
            .prepare(
                "SELECT model, benchmark, sample_id, sample_k, request_hash FROM completions
                 WHERE run_id = ?1",
            )
            .map_err(|e| shard.err(e))?;
        let rows = statement
            .query_map([from], |row| {
                Ok((
                    UnitKey {
                        model: row.get(0)?,
                        benchmark: row.get(1)?,
                        sample_id: row.get(2)?,
                        sample_k: row.get(3)?,
                    },
                    row.get(4)?,
                ))
            })
            .map_err(|e| shard.err(e))?;
        for row in rows {
            let (key, hash) = row.map_err(|e| shard.err(e))?;
            hashes.insert(key, hash);
        }
    }
    let here = target.answered(to)?;
    let mut merged = Merged {
        run: to,
        created,
        completions: 0,
        already: 0,
        verdicts: 0,
    };
    let mut batch: Vec<UnitRecord> = Vec::new();
    let flush = |target: &mut dyn Storage, batch: &mut Vec<UnitRecord>| {
        let stored = target.write_batch(to, batch)?;
        batch.clear();
        Ok::<u64, StoreError>(stored)
    };
    shard.visit_results(from, true, &mut |row| {
        if here.contains(&row.key) {
            merged.already += 1;
            return Ok(());
        }
        merged.verdicts += row.verdicts.len() as u64;
        batch.push(UnitRecord {
            request_hash: hashes.get(&row.key).cloned().unwrap_or_default(),
            key: row.key,
            outcome: row.outcome,
            attempts: row.attempts,
            cached: row.cached,
            verdicts: row.verdicts,
            cost_usd: row.cost_usd,
            helper_spend: row.helper_spend,
        });
        if batch.len() >= 500 {
            match flush(target, &mut batch) {
                Ok(stored) => merged.completions += stored,
                Err(error) => return Err(error),
            }
        }
        Ok(())
    })?;
    merged.completions += flush(target, &mut batch)?;
    {
        let mut statement = shard
            .conn
            .prepare("SELECT request_hash, reply FROM judge_replies")
            .map_err(|e| shard.err(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(|e| shard.err(e))?;
        for row in rows {
            let (hash, reply) = row.map_err(|e| shard.err(e))?;
            target.put_judge_reply(&hash, &reply)?;
        }
    }
    // A run is complete when every shard merged into it was.
    let status =
        redtrace_core::RunStatus::parse(&status).unwrap_or(redtrace_core::RunStatus::Interrupted);
    if created {
        target.set_status(to, status)?;
    } else if status != redtrace_core::RunStatus::Complete {
        target.set_status(to, redtrace_core::RunStatus::Interrupted)?;
    }
    Ok(merged)
}
