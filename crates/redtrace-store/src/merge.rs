//! Merging the stores of a run's shards (`redtrace merge`): each source's run is laid into
//! the run of the same identity in this store (made where there is none), its samples,
//! completions, verdicts and the judge-reply cache copied. A unit is stored once: one already
//! here stays, except that a success replaces a stored error (the unique key of a unit makes a
//! duplicate impossible, not a hope). Runs of different identities are refused, with where
//! they differ.

use redtrace_core::RunSpec;
use rusqlite::{params, OptionalExtension};
use std::path::Path;

use crate::{RunId, Store, StoreError};

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

impl Store {
    /// The spec and status of the latest run of the store at `path` (read-only).
    pub fn latest_run_of(path: &Path) -> Result<(RunSpec, String), StoreError> {
        let store = Store::open_read_only(path)?;
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
    pub fn merge_from(&mut self, source: &Path) -> Result<Merged, StoreError> {
        let (spec, status) = Store::latest_run_of(source)?;
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
