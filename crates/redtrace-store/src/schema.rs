//! The SQLite schema and its migrations. The version lives in `PRAGMA user_version`.

use rusqlite::Connection;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 3;

/// Sets the connection up (WAL, foreign keys) and brings the schema to [`SCHEMA_VERSION`].
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    // WAL lets a report or the viewer read while a run writes; NORMAL sync is safe with WAL
    // (a power cut may lose the last transactions, never corrupt the file).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(format!("schema version {version} is newer than this redtrace understands ({SCHEMA_VERSION}); upgrade redtrace")),
        ));
    }
    if version < 1 {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE runs (
                 id INTEGER PRIMARY KEY,
                 spec_hash TEXT NOT NULL,
                 created_at TEXT NOT NULL,
                 updated_at TEXT NOT NULL,
                 status TEXT NOT NULL,
                 tool_version TEXT NOT NULL,
                 spec TEXT NOT NULL
             );
             CREATE INDEX runs_by_spec ON runs (spec_hash);
             CREATE TABLE samples (
                 run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                 benchmark TEXT NOT NULL,
                 sample_id TEXT NOT NULL,
                 idx INTEGER NOT NULL,
                 category TEXT NOT NULL,
                 label TEXT,
                 messages TEXT NOT NULL,
                 metadata TEXT,
                 PRIMARY KEY (run_id, benchmark, sample_id)
             ) WITHOUT ROWID;
             CREATE TABLE completions (
                 id INTEGER PRIMARY KEY,
                 run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                 model TEXT NOT NULL,
                 benchmark TEXT NOT NULL,
                 sample_id TEXT NOT NULL,
                 sample_k INTEGER NOT NULL,
                 request_hash TEXT NOT NULL,
                 reasoning TEXT,
                 reasoning_source TEXT,
                 reasoning_state TEXT NOT NULL,
                 answer TEXT,
                 finish_reason TEXT,
                 prompt_tokens INTEGER,
                 completion_tokens INTEGER,
                 reasoning_tokens INTEGER,
                 latency_ms INTEGER,
                 attempts INTEGER NOT NULL,
                 cached INTEGER NOT NULL,
                 raw TEXT,
                 error TEXT,
                 error_kind TEXT,
                 created_at TEXT NOT NULL,
                 UNIQUE (run_id, model, benchmark, sample_id, sample_k)
             );
             CREATE INDEX completions_by_request ON completions (request_hash) WHERE error IS NULL;
             CREATE TABLE verdicts (
                 completion_id INTEGER NOT NULL REFERENCES completions (id) ON DELETE CASCADE,
                 judge TEXT NOT NULL,
                 channel TEXT NOT NULL,
                 label TEXT NOT NULL,
                 score REAL,
                 rationale TEXT,
                 PRIMARY KEY (completion_id, judge, channel)
             ) WITHOUT ROWID;
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    if version < 2 {
        // Judge replies by request hash, shared by all runs: a judge call is made once per
        // distinct prompt, and a resumed run re-judges from here without asking again.
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE judge_replies (
                 request_hash TEXT PRIMARY KEY,
                 reply TEXT NOT NULL,
                 created_at TEXT NOT NULL
             ) WITHOUT ROWID;
             PRAGMA user_version = 2;
             COMMIT;",
        )?;
    }
    if version < 3 {
        // A judge's own categories (Llama Guard's hazard codes, WildGuard's answers), as a
        // JSON array; NULL where the judge names none. What things cost: a completion's
        // cached prompt tokens and its target cost (USD; NULL: no price), what the attack's
        // helper models cost for it, and each verdict's judge-model calls.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE verdicts ADD COLUMN categories TEXT;
             ALTER TABLE verdicts ADD COLUMN spend TEXT;
             ALTER TABLE completions ADD COLUMN cached_prompt_tokens INTEGER;
             ALTER TABLE completions ADD COLUMN cost_usd REAL;
             ALTER TABLE completions ADD COLUMN helper_spend TEXT;
             CREATE TABLE batches (
                 id INTEGER PRIMARY KEY,
                 run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
                 endpoint TEXT NOT NULL,
                 api TEXT NOT NULL,
                 remote_id TEXT,
                 state TEXT NOT NULL,
                 created_at TEXT NOT NULL,
                 updated_at TEXT NOT NULL
             );
             CREATE TABLE batch_requests (
                 batch_id INTEGER NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
                 custom_id TEXT NOT NULL,
                 result TEXT,
                 PRIMARY KEY (batch_id, custom_id)
             ) WITHOUT ROWID;
             CREATE INDEX batch_requests_by_key ON batch_requests (custom_id);
             PRAGMA user_version = 3;
             COMMIT;",
        )?;
    }
    Ok(())
}
