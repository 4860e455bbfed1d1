//! The PostgreSQL backend: one database that many redtrace processes on many machines share,
//! as results store and as work queue (`units`: taken with `FOR UPDATE SKIP LOCKED` under a
//! lease that the holder's heartbeat renews; a unit whose holder died is taken again when its
//! lease runs out, and the unique key of a completion keeps every unit stored once).
//!
//! The driver is `postgres` (a blocking client on tokio-postgres): the store's interface is
//! blocking, as SQLite's is. Called from inside a tokio runtime, a call runs on a short-lived
//! scoped thread of its own, so the client's runtime never nests in the caller's.
//!
//! A connection that fails (the server restarted, the network dropped) is made again with
//! backoff and the call retried, for up to [`PATIENCE`] (`REDTRACE_DB_PATIENCE_SECS`): what
//! the caller holds (the engine's batch of completions) waits, and is written once the
//! database is back, or the call fails with an error that names the host. A write is one
//! transaction, so a retried one never stores half a batch, and stores a unit at most once.
//! Messages name `USER@HOST:PORT/DB`, never a password.

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row};
use redtrace_core::{Channel, Completion, RunSpec, RunStatus, Sample, Verdict};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{
    enum_name, stored_metadata, JudgeHealth, QueueState, ResultRow, RunClaim, RunId, RunInfo,
    Storage, StoreError, UnitError, UnitKey, UnitRecord, WorkerCount,
};

/// How long a call keeps trying to reach a database it lost, by default.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The schema version this build writes to PostgreSQL (its own count: PostgreSQL stores
/// begin with the queue that SQLite files never had).
pub const PG_SCHEMA_VERSION: i64 = 2;

/// The first key of redtrace's advisory locks ("rt"); the second is the run's id.
const LOCK_SPACE: i32 = 0x7274;

/// A store in a PostgreSQL database.
pub struct PgStore {
    config: postgres::Config,
    at: String,
    conn: Mutex<Option<Conn>>,
    patience: Duration,
    worker: Option<String>,
    /// The permits this connection holds, by space (advisory locks are re-entrant: the
    /// connection must not take one it holds again).
    permits: Mutex<HashMap<i32, HashSet<i32>>>,
}

/// A client and its prepared statements (made again with the client).
struct Conn {
    client: Client,
    statements: HashMap<&'static str, postgres::Statement>,
}

impl Conn {
    fn statement(&mut self, sql: &'static str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

/// Runs `f` where a blocking client may block: on a scoped thread of its own when called
/// from inside a tokio runtime, else here.
fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|scope| {
            scope
                .spawn(f)
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    } else {
        f()
    }
}

/// `error` with its causes, one after another.
fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether `error` is the connection's (lost, refused, server shutting down), worth a new
/// connection and another try, rather than the statement's.
fn transient(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        let code = code.code();
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "40001");
    }
    // An I/O failure: connection refused, reset, timed out.
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// `USER@HOST:PORT/DB` of a configuration (never its password).
fn describe_target(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(folder)) => folder.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// `url` as libpq's `key=value` connection string, where (as in libpq) a query parameter
/// overrides the same part of the URL: `postgres://user@localhost/db?host=/run/dir` connects
/// through the socket folder `/run/dir`.
fn conninfo(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    let decode = |text: &str| {
        url::form_urlencoded::parse(format!("v={}", text.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let mut parts: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: String| {
        parts.retain(|(k, _)| k != key);
        parts.push((key.to_owned(), value));
    };
    if !parsed.username().is_empty() {
        set("user", decode(parsed.username()));
    }
    if let Some(password) = parsed.password() {
        set("password", decode(password));
    }
    if let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) {
        set("host", host.trim_matches(['[', ']']).to_owned());
    }
    if let Some(port) = parsed.port() {
        set("port", port.to_string());
    }
    let database = parsed.path().trim_start_matches('/');
    if !database.is_empty() {
        set("dbname", decode(database));
    }
    for (key, value) in parsed.query_pairs() {
        set(&key, value.into_owned());
    }
    Ok(parts
        .iter()
        .map(|(key, value)| {
            format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            )
        })
        .collect::<Vec<_>>()
        .join(" "))
}

/// A PostgreSQL URL as messages show it: `postgres://USER@HOST:PORT/DB`, never a password.
pub(crate) fn shown_url(url: &str) -> String {
    conninfo(url)
        .ok()
        .and_then(|info| postgres::Config::from_str(&info).ok())
        .map(|config| describe_target(&config))
        .unwrap_or_else(|| redtrace_core::model::redact_credentials(url))
}

fn patience() -> Duration {
    std::env::var("REDTRACE_DB_PATIENCE_SECS")
        .ok()
        .and_then(|text| text.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(PATIENCE)
}

/// The migrations, in order: version N is the N-th.
const MIGRATIONS: &[&str] = &["
    CREATE FUNCTION redtrace_now() RETURNS text LANGUAGE sql VOLATILE AS
        $$ SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') $$;
    CREATE TABLE runs (
        id BIGSERIAL PRIMARY KEY,
        spec_hash TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT redtrace_now(),
        updated_at TEXT NOT NULL DEFAULT redtrace_now(),
        status TEXT NOT NULL,
        tool_version TEXT NOT NULL,
        spec TEXT NOT NULL
    );
    CREATE INDEX runs_by_spec ON runs (spec_hash);
    CREATE TABLE samples (
        run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        benchmark TEXT NOT NULL,
        sample_id TEXT NOT NULL,
        idx BIGINT NOT NULL,
        category TEXT NOT NULL,
        label TEXT,
        messages TEXT NOT NULL,
        metadata TEXT,
        PRIMARY KEY (run_id, benchmark, sample_id)
    );
    CREATE TABLE completions (
        id BIGSERIAL PRIMARY KEY,
        run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
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
        prompt_tokens BIGINT,
        completion_tokens BIGINT,
        reasoning_tokens BIGINT,
        latency_ms BIGINT,
        attempts INTEGER NOT NULL,
        cached BOOLEAN NOT NULL,
        raw TEXT,
        error TEXT,
        error_kind TEXT,
        cached_prompt_tokens BIGINT,
        cost_usd DOUBLE PRECISION,
        helper_spend TEXT,
        worker TEXT,
        created_at TEXT NOT NULL DEFAULT redtrace_now(),
        UNIQUE (run_id, model, benchmark, sample_id, sample_k)
    );
    CREATE INDEX completions_by_request ON completions (request_hash) WHERE error IS NULL;
    CREATE TABLE verdicts (
        completion_id BIGINT NOT NULL REFERENCES completions (id) ON DELETE CASCADE,
        judge TEXT NOT NULL,
        channel TEXT NOT NULL,
        label TEXT NOT NULL,
        score DOUBLE PRECISION,
        rationale TEXT,
        categories TEXT,
        spend TEXT,
        PRIMARY KEY (completion_id, judge, channel)
    );
    CREATE TABLE judge_replies (
        request_hash TEXT PRIMARY KEY,
        reply TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT redtrace_now()
    );
    CREATE TABLE batches (
        id BIGSERIAL PRIMARY KEY,
        run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        endpoint TEXT NOT NULL,
        api TEXT NOT NULL,
        remote_id TEXT,
        state TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT redtrace_now(),
        updated_at TEXT NOT NULL DEFAULT redtrace_now()
    );
    CREATE TABLE batch_requests (
        batch_id BIGINT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
        custom_id TEXT NOT NULL,
        result TEXT,
        PRIMARY KEY (batch_id, custom_id)
    );
    CREATE INDEX batch_requests_by_key ON batch_requests (custom_id);
    -- The work queue: a unit per row, held by a worker under a lease until done.
    CREATE TABLE units (
        run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        model TEXT NOT NULL,
        benchmark TEXT NOT NULL,
        sample_id TEXT NOT NULL,
        sample_k INTEGER NOT NULL,
        seq BIGSERIAL,
        worker TEXT,
        lease_until TIMESTAMPTZ,
        done BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (run_id, model, benchmark, sample_id, sample_k)
    );
    CREATE INDEX units_open ON units (run_id, seq) WHERE NOT done;
    -- A unit is done when its outcome is stored, by whichever worker: in the same
    -- transaction, by the queue's key.
    CREATE FUNCTION redtrace_unit_done() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE units SET done = true, lease_until = NULL
        WHERE run_id = NEW.run_id AND model = NEW.model AND benchmark = NEW.benchmark
          AND sample_id = NEW.sample_id AND sample_k = NEW.sample_k AND NOT done;
        RETURN NULL;
    END $$;
    CREATE TRIGGER completions_finish_units AFTER INSERT OR UPDATE ON completions
        FOR EACH ROW EXECUTE FUNCTION redtrace_unit_done();
", "
    -- Request schedules that all workers share: the next free slot of each (run, endpoint).
    CREATE TABLE rate_slots (
        key TEXT PRIMARY KEY,
        next_at TIMESTAMPTZ NOT NULL
    );
    -- How a run was started, for workers that join it (`redtrace worker`).
    CREATE TABLE run_recipes (
        run_id BIGINT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        recipe TEXT NOT NULL
    );
"];

impl PgStore {
    /// Connects to the database at `url`, creating redtrace's tables or bringing them to this
    /// build's version (one process at a time, under an advisory lock).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url)?;
        store.call(|conn| migrate(&mut conn.client))?;
        Ok(store)
    }

    /// Connects to a database that already holds a redtrace store of this build's version
    /// (for reading: reports, exports, the viewer).
    pub fn open_existing(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url)?;
        let found = store.schema_version()?;
        if found == 0 {
            return Err(StoreError::NotFound(format!(
                "no redtrace store in {} (run `redtrace run --db ...` first)",
                store.at
            )));
        }
        if found != PG_SCHEMA_VERSION {
            return Err(StoreError::NeedsMigration {
                path: store.at.clone().into(),
                found,
                wanted: PG_SCHEMA_VERSION,
            });
        }
        Ok(store)
    }

    fn connect(url: &str) -> Result<Self, StoreError> {
        let bad = |error: String| StoreError::Postgres {
            at: "the --db URL".into(),
            // The parser's message names the bad part, not the URL (which may hold a password).
            message: format!("not a PostgreSQL URL: {error}"),
        };
        let config = postgres::Config::from_str(&conninfo(url).map_err(bad)?)
            .map_err(|error| bad(error.to_string()))?;
        let at = describe_target(&config);
        let store = Self {
            config,
            at,
            conn: Mutex::new(None),
            patience: patience(),
            worker: None,
            permits: Mutex::new(HashMap::new()),
        };
        // Connect now: a wrong password or an unreachable host is an error before anything
        // is sent anywhere.
        store.call(|_| Ok(()))?;
        Ok(store)
    }

    fn error(&self, error: &postgres::Error) -> StoreError {
        StoreError::Postgres {
            at: self.at.clone(),
            message: describe(error),
        }
    }

    fn corrupt(&self, what: &str, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.at.clone().into(),
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// Runs `job` on the connection, connecting (again) where there is none or it was lost,
    /// and trying again with backoff while the connection fails, for up to the patience.
    fn call<R: Send>(
        &self,
        mut job: impl FnMut(&mut Conn) -> Result<R, postgres::Error> + Send,
    ) -> Result<R, StoreError> {
        let mut guard = self
            .conn
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let slot: &mut Option<Conn> = &mut guard;
        let deadline = Instant::now() + self.patience;
        let mut wait = Duration::from_millis(100);
        loop {
            let outcome = off_runtime(|| {
                if slot.as_ref().is_none_or(|conn| conn.client.is_closed()) {
                    drop(slot.take());
                    let mut client = self.config.connect(NoTls)?;
                    // Commits return before their WAL is flushed, as SQLite's WAL with
                    // synchronous=NORMAL: a crash of the server may lose the last moments'
                    // commits (each whole; a resumed run redoes their units), never corrupt.
                    client.batch_execute("SET synchronous_commit = off")?;
                    // A new session holds no locks.
                    self.permits
                        .lock()
                        .unwrap_or_else(|poison| poison.into_inner())
                        .clear();
                    *slot = Some(Conn {
                        client,
                        statements: HashMap::new(),
                    });
                }
                job(slot.as_mut().expect("connected above"))
            });
            match outcome {
                Ok(value) => return Ok(value),
                Err(error) if transient(&error) && Instant::now() < deadline => {
                    // Lost: drop the connection (off the runtime: it owns one) and try again.
                    let lost = slot.take();
                    off_runtime(move || drop(lost));
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(error) => {
                    let mut failed = self.error(&error);
                    if transient(&error) {
                        if let StoreError::Postgres { message, .. } = &mut failed {
                            message.push_str(&format!(
                                " (gave up after {:.0} s; REDTRACE_DB_PATIENCE_SECS sets how long)",
                                self.patience.as_secs_f64()
                            ));
                        }
                    }
                    return Err(failed);
                }
            }
        }
    }

    /// A completion (or the error that stood in for it) from `COMPLETION_COLUMNS` at `at`.
    fn completion_from(
        &self,
        row: &Row,
        at: usize,
    ) -> Result<Result<Completion, UnitError>, StoreError> {
        let text = |i: usize| -> Result<Option<String>, StoreError> {
            row.try_get(at + i)
                .map_err(|e| self.corrupt("completions", describe(&e)))
        };
        let int = |i: usize| -> Result<Option<u64>, StoreError> {
            row.try_get::<_, Option<i64>>(at + i)
                .map(|v| v.map(|v| v as u64))
                .map_err(|e| self.corrupt("completions", describe(&e)))
        };
        crate::completion_of(text, int, |what, detail| self.corrupt(what, detail))
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The client owns a runtime, which must not be dropped inside another's.
        let conn = self
            .conn
            .get_mut()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        off_runtime(move || drop(conn));
    }
}

/// A claim's connection, holding the run's advisory lock until dropped.
struct PgClaim(Option<Client>, RunId);

impl Drop for PgClaim {
    fn drop(&mut self) {
        let client = self.0.take();
        let run = self.1;
        off_runtime(move || {
            // Let go at once (the server would on noticing the connection gone, later).
            if let Some(mut client) = client {
                let _ = client.execute(
                    "SELECT pg_advisory_unlock_shared($1, $2)",
                    &[&LOCK_SPACE, &(run.0 as i32)],
                );
            }
        });
    }
}

fn migrate(client: &mut Client) -> Result<(), postgres::Error> {
    // The common case, a store at this version, needs no lock.
    let current = client
        .query_opt(
            "SELECT version FROM redtrace_schema WHERE to_regclass('redtrace_schema') IS NOT NULL",
            &[],
        )
        .ok()
        .flatten()
        .map(|row| row.get::<_, i64>(0));
    if current.is_some_and(|version| version >= PG_SCHEMA_VERSION) {
        return Ok(());
    }
    let mut tx = client.transaction()?;
    // One process migrates at a time; the others wait and then find the work done.
    tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_SPACE])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS redtrace_schema (version BIGINT NOT NULL)")?;
    let found: Option<i64> = tx
        .query_opt("SELECT version FROM redtrace_schema", &[])?
        .map(|row| row.get(0));
    let found = found.unwrap_or(0);
    if found > PG_SCHEMA_VERSION {
        return tx.commit();
    }
    for (index, step) in MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        if version > found {
            tx.batch_execute(step)?;
        }
    }
    tx.execute("DELETE FROM redtrace_schema", &[])?;
    tx.execute(
        "INSERT INTO redtrace_schema (version) VALUES ($1)",
        &[&PG_SCHEMA_VERSION.max(found)],
    )?;
    tx.commit()
}

/// A unit's key columns as arrays, for `UNNEST`.
struct KeyColumns {
    models: Vec<String>,
    benchmarks: Vec<String>,
    sample_ids: Vec<String>,
    ks: Vec<i32>,
}

impl KeyColumns {
    fn of<'a>(keys: impl Iterator<Item = &'a UnitKey>) -> Self {
        let mut columns = KeyColumns {
            models: Vec::new(),
            benchmarks: Vec::new(),
            sample_ids: Vec::new(),
            ks: Vec::new(),
        };
        for key in keys {
            columns.models.push(key.model.clone());
            columns.benchmarks.push(key.benchmark.clone());
            columns.sample_ids.push(key.sample_id.clone());
            columns.ks.push(key.sample_k as i32);
        }
        columns
    }
}

fn key_of(row: &Row, at: usize) -> UnitKey {
    UnitKey {
        model: row.get(at),
        benchmark: row.get(at + 1),
        sample_id: row.get(at + 2),
        sample_k: row.get::<_, i32>(at + 3) as u32,
    }
}

fn json_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("stored values serialise")
}

/// The advisory-lock space of a permit key (FNV-1a of it), never the runs' own.
fn permit_space(key: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    let space = hash as i32;
    if space == LOCK_SPACE {
        space ^ 1
    } else {
        space
    }
}

fn lease_secs(lease: Duration) -> f64 {
    lease.as_secs_f64()
}

impl Storage for PgStore {
    fn location(&self) -> String {
        self.at.clone()
    }

    fn shared(&self) -> bool {
        true
    }

    fn set_worker(&mut self, worker: &str) {
        self.worker = Some(worker.to_owned());
    }

    fn schema_version(&self) -> Result<i64, StoreError> {
        self.call(|conn| {
            let exists: bool = conn
                .client
                .query_one("SELECT to_regclass('redtrace_schema') IS NOT NULL", &[])?
                .get(0);
            if !exists {
                return Ok(0);
            }
            Ok(conn
                .client
                .query_opt("SELECT version FROM redtrace_schema", &[])?
                .map(|row| row.get(0))
                .unwrap_or(0))
        })
    }

    fn check_integrity(&self) -> Result<(), StoreError> {
        // PostgreSQL checks its own pages; a store that answers is whole.
        self.call(|conn| conn.client.execute("SELECT 1", &[]).map(|_| ()))
    }

    fn judge_reply(&self, request_hash: &str) -> Result<Option<String>, StoreError> {
        self.call(|conn| {
            let statement =
                conn.statement("SELECT reply FROM judge_replies WHERE request_hash = $1")?;
            Ok(conn
                .client
                .query_opt(&statement, &[&request_hash])?
                .map(|row| row.get(0)))
        })
    }

    fn put_judge_reply(&self, request_hash: &str, reply: &str) -> Result<(), StoreError> {
        self.call(|conn| {
            let statement = conn.statement(
                "INSERT INTO judge_replies (request_hash, reply) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )?;
            conn.client
                .execute(&statement, &[&request_hash, &reply])
                .map(|_| ())
        })
    }

    fn claim_run(&self, run: RunId) -> Result<RunClaim, StoreError> {
        // Shared: any number of workers run one run together; `delete_run` needs it alone.
        let config = self.config.clone();
        let client = off_runtime(move || -> Result<Client, postgres::Error> {
            let mut client = config.connect(NoTls)?;
            client.execute(
                "SELECT pg_advisory_lock_shared($1, $2)",
                &[&LOCK_SPACE, &(run.0 as i32)],
            )?;
            Ok(client)
        })
        .map_err(|e| self.error(&e))?;
        Ok(RunClaim {
            _hold: Box::new(PgClaim(Some(client), run)),
        })
    }

    fn prompt_ratio(&self, model: &str) -> Result<Option<(u64, u64)>, StoreError> {
        self.call(|conn| {
            let row = conn.client.query_one(
                "SELECT sum(c.prompt_tokens)::bigint, sum(length(s.messages))::bigint
                 FROM completions c
                 JOIN samples s ON s.run_id = c.run_id AND s.benchmark = c.benchmark AND s.sample_id = c.sample_id
                 WHERE c.model = $1 AND c.error IS NULL AND NOT c.cached AND c.prompt_tokens IS NOT NULL",
                &[&model],
            )?;
            let tokens: Option<i64> = row.get(0);
            let chars: Option<i64> = row.get(1);
            Ok(tokens.zip(chars).map(|(t, c)| (t as u64, c as u64)))
        })
    }

    fn mean_output(&self, model: &str, benchmark: Option<&str>) -> Result<Option<f64>, StoreError> {
        self.call(|conn| {
            Ok(conn
                .client
                .query_one(
                    "SELECT avg(completion_tokens)::float8 FROM completions
                     WHERE model = $1 AND ($2::text IS NULL OR benchmark = $2) AND error IS NULL
                       AND completion_tokens IS NOT NULL",
                    &[&model, &benchmark],
                )?
                .get(0))
        })
    }

    fn mean_judge_spend(&self, judge: &str, model: &str) -> Result<Option<(f64, f64)>, StoreError> {
        self.call(|conn| {
            let row = conn.client.query_one(
                "SELECT avg((v.spend::jsonb->>'prompt_tokens')::float8),
                        avg((v.spend::jsonb->>'completion_tokens')::float8)
                 FROM verdicts v JOIN completions c ON c.id = v.completion_id
                 WHERE c.model = $2 AND v.spend IS NOT NULL AND (v.judge = $1 OR v.judge LIKE $1 || ':%')",
                &[&judge, &model],
            )?;
            let input: Option<f64> = row.get(0);
            let output: Option<f64> = row.get(1);
            Ok(input.zip(output))
        })
    }

    #[allow(clippy::type_complexity)]
    fn open_batches(
        &self,
        run: RunId,
        endpoint: &str,
    ) -> Result<Vec<(i64, Option<String>, Vec<(String, Option<String>)>)>, StoreError> {
        self.call(|conn| {
            let batches = conn.client.query(
                "SELECT id, remote_id FROM batches
                 WHERE run_id = $1 AND endpoint = $2 AND state NOT IN ('ended', 'abandoned')
                 ORDER BY id",
                &[&run.0, &endpoint],
            )?;
            let mut out = Vec::new();
            for batch in batches {
                let id: i64 = batch.get(0);
                let keys = conn
                    .client
                    .query(
                        "SELECT custom_id, result FROM batch_requests WHERE batch_id = $1",
                        &[&id],
                    )?
                    .iter()
                    .map(|row| (row.get(0), row.get(1)))
                    .collect();
                out.push((id, batch.get(1), keys));
            }
            Ok(out)
        })
    }

    fn form_batch(
        &mut self,
        run: RunId,
        endpoint: &str,
        api: &str,
        keys: &[String],
    ) -> Result<i64, StoreError> {
        self.call(|conn| {
            let mut tx = conn.client.transaction()?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO batches (run_id, endpoint, api, state) VALUES ($1, $2, $3, 'formed')
                     RETURNING id",
                    &[&run.0, &endpoint, &api],
                )?
                .get(0);
            tx.execute(
                "INSERT INTO batch_requests (batch_id, custom_id)
                 SELECT $1, key FROM UNNEST($2::text[]) AS key ON CONFLICT DO NOTHING",
                &[&id, &keys],
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    fn set_batch(&self, id: i64, remote: Option<&str>, state: &str) -> Result<(), StoreError> {
        self.call(|conn| {
            conn.client
                .execute(
                    "UPDATE batches SET remote_id = coalesce($2, remote_id), state = $3,
                        updated_at = redtrace_now() WHERE id = $1",
                    &[&id, &remote, &state],
                )
                .map(|_| ())
        })
    }

    fn batch_result(&self, id: i64, key: &str, line: &str) -> Result<(), StoreError> {
        self.call(|conn| {
            conn.client
                .execute(
                    "UPDATE batch_requests SET result = $3 WHERE batch_id = $1 AND custom_id = $2",
                    &[&id, &key, &line],
                )
                .map(|_| ())
        })
    }

    fn stored_batch_result(&self, run: RunId, key: &str) -> Result<Option<String>, StoreError> {
        self.call(|conn| {
            Ok(conn
                .client
                .query_opt(
                    "SELECT r.result FROM batch_requests r JOIN batches b ON b.id = r.batch_id
                     WHERE b.run_id = $1 AND r.custom_id = $2 AND r.result IS NOT NULL
                     ORDER BY b.id DESC LIMIT 1",
                    &[&run.0, &key],
                )?
                .map(|row| row.get(0)))
        })
    }

    #[allow(clippy::type_complexity)]
    fn batches(
        &self,
        run: RunId,
    ) -> Result<Vec<(i64, Option<String>, String, u64, u64)>, StoreError> {
        self.call(|conn| {
            Ok(conn
                .client
                .query(
                    "SELECT b.id, b.remote_id, b.state, count(r.custom_id), count(r.result)
                     FROM batches b LEFT JOIN batch_requests r ON r.batch_id = b.id
                     WHERE b.run_id = $1 GROUP BY b.id ORDER BY b.id",
                    &[&run.0],
                )?
                .iter()
                .map(|row| {
                    (
                        row.get(0),
                        row.get(1),
                        row.get(2),
                        row.get::<_, i64>(3) as u64,
                        row.get::<_, i64>(4) as u64,
                    )
                })
                .collect())
        })
    }

    fn spent(&self, run: RunId) -> Result<f64, StoreError> {
        self.call(|conn| {
            Ok(conn
                .client
                .query_one(
                    "SELECT coalesce(sum(c.cost_usd), 0)
                        + coalesce(sum((c.helper_spend::jsonb->>'cost_usd')::float8), 0)
                        + coalesce((SELECT sum((v.spend::jsonb->>'cost_usd')::float8)
                                    FROM verdicts v JOIN completions c2 ON c2.id = v.completion_id
                                    WHERE c2.run_id = $1), 0)
                     FROM completions c WHERE c.run_id = $1",
                    &[&run.0],
                )?
                .get(0))
        })
    }

    fn delete_run(&self, run: RunId) -> Result<u64, StoreError> {
        let info = self
            .runs()?
            .into_iter()
            .find(|info| info.id == run)
            .ok_or_else(|| StoreError::NotFound(format!("no run {run} in {}", self.at)))?;
        let deleted = self.call(|conn| {
            let mut tx = conn.client.transaction()?;
            // Alone on the run: no worker holds it (their claims are shared locks).
            let alone: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_xact_lock($1, $2)",
                    &[&LOCK_SPACE, &(run.0 as i32)],
                )?
                .get(0);
            if !alone {
                return Ok(false);
            }
            tx.execute("DELETE FROM runs WHERE id = $1", &[&run.0])?;
            tx.commit()?;
            Ok(true)
        })?;
        if !deleted {
            return Err(StoreError::Busy {
                path: self.at.clone().into(),
                run,
            });
        }
        Ok(info.completions)
    }

    fn find_run(&self, spec_hash: &str) -> Result<Option<RunId>, StoreError> {
        self.call(|conn| {
            Ok(conn
                .client
                .query_opt(
                    "SELECT id FROM runs WHERE spec_hash = $1 ORDER BY id DESC LIMIT 1",
                    &[&spec_hash],
                )?
                .map(|row| RunId(row.get(0))))
        })
    }

    fn create_run(&self, spec: &RunSpec, tool_version: &str) -> Result<RunId, StoreError> {
        let hash = spec.identity_hash();
        let json = spec.to_json();
        self.call(|conn| {
            Ok(RunId(
                conn.client
                    .query_one(
                        "INSERT INTO runs (spec_hash, status, tool_version, spec) VALUES ($1, $2, $3, $4)
                         RETURNING id",
                        &[&hash, &RunStatus::Running.as_str(), &tool_version, &json],
                    )?
                    .get(0),
            ))
        })
    }

    fn find_or_create_run(
        &self,
        spec: &RunSpec,
        tool_version: &str,
        new_run: bool,
    ) -> Result<(RunId, bool), StoreError> {
        let hash = spec.identity_hash();
        let json = spec.to_json();
        self.call(|conn| {
            let mut tx = conn.client.transaction()?;
            // One process at a time finds or makes a run of this identity (the lock's second
            // key is the hash's first 31 bits: a collision only serializes two starts).
            let key = i32::from_str_radix(&hash[..8], 16).unwrap_or(0) & 0x7fff_ffff;
            tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&(LOCK_SPACE + 1), &key])?;
            if !new_run {
                if let Some(row) = tx.query_opt(
                    "SELECT id FROM runs WHERE spec_hash = $1 ORDER BY id DESC LIMIT 1",
                    &[&hash],
                )? {
                    tx.commit()?;
                    return Ok((RunId(row.get(0)), false));
                }
            }
            let id: i64 = tx
                .query_one(
                    "INSERT INTO runs (spec_hash, status, tool_version, spec) VALUES ($1, $2, $3, $4)
                     RETURNING id",
                    &[&hash, &RunStatus::Running.as_str(), &tool_version, &json],
                )?
                .get(0);
            tx.commit()?;
            Ok((RunId(id), true))
        })
    }

    fn set_status(&self, run: RunId, status: RunStatus) -> Result<(), StoreError> {
        self.call(|conn| {
            conn.client
                .execute(
                    "UPDATE runs SET status = $2, updated_at = redtrace_now() WHERE id = $1",
                    &[&run.0, &status.as_str()],
                )
                .map(|_| ())
        })
    }

    fn models(&self, run: RunId) -> Result<Vec<String>, StoreError> {
        self.call(|conn| {
            Ok(conn
                .client
                .query(
                    "SELECT DISTINCT model FROM completions WHERE run_id = $1 ORDER BY model",
                    &[&run.0],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect())
        })
    }

    fn runs(&self) -> Result<Vec<RunInfo>, StoreError> {
        let rows = self.call(|conn| {
            conn.client.query(
                "SELECT r.id, r.spec_hash, r.created_at, r.updated_at, r.status, r.tool_version, r.spec,
                        (SELECT count(*) FROM completions c WHERE c.run_id = r.id),
                        (SELECT count(*) FROM completions c WHERE c.run_id = r.id AND c.error IS NOT NULL),
                        EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory'
                            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                            AND l.classid = $1::oid AND l.objid = r.id::oid
                            AND l.objsubid = 2 AND l.granted)
                 FROM runs r ORDER BY r.id DESC",
                &[&(LOCK_SPACE as u32)],
            )
        })?;
        let mut runs = Vec::new();
        for row in rows {
            let id = RunId(row.get(0));
            let corrupt = |what: &str, detail: String| {
                self.corrupt(&format!("runs.{what} of run {id}"), detail)
            };
            let status: String = row.get(4);
            let spec: String = row.get(6);
            let claimed: bool = row.get(9);
            runs.push(RunInfo {
                id,
                spec_hash: row.get(1),
                created_at: row.get(2),
                updated_at: row.get(3),
                status: match RunStatus::parse(&status)
                    .ok_or_else(|| corrupt("status", format!("unknown status '{status}'")))?
                {
                    // Running, says the store, but no worker holds it: they all died.
                    RunStatus::Running if !claimed => RunStatus::Interrupted,
                    status => status,
                },
                tool_version: row.get(5),
                spec: RunSpec::from_json(&spec).map_err(|e| corrupt("spec", e.to_string()))?,
                completions: row.get::<_, i64>(7) as u64,
                errors: row.get::<_, i64>(8) as u64,
            });
        }
        Ok(runs)
    }

    fn answered(&self, run: RunId) -> Result<HashSet<UnitKey>, StoreError> {
        self.call(|conn| {
            Ok(conn
                .client
                .query(
                    "SELECT model, benchmark, sample_id, sample_k FROM completions
                     WHERE run_id = $1 AND error IS NULL",
                    &[&run.0],
                )?
                .iter()
                .map(|row| key_of(row, 0))
                .collect())
        })
    }

    fn judged(
        &self,
        run: RunId,
    ) -> Result<HashMap<UnitKey, HashSet<(String, Channel)>>, StoreError> {
        let rows = self.call(|conn| {
            conn.client.query(
                "SELECT c.model, c.benchmark, c.sample_id, c.sample_k, v.judge, v.channel
                 FROM completions c JOIN verdicts v ON v.completion_id = c.id
                 WHERE c.run_id = $1 AND c.error IS NULL AND (v.label != 'unscored'
                    OR (v.channel = 'answer' AND trim(coalesce(c.answer, '')) = '')
                    OR (v.channel = 'reasoning' AND trim(coalesce(c.reasoning, '')) = ''))",
                &[&run.0],
            )
        })?;
        let mut judged: HashMap<UnitKey, HashSet<(String, Channel)>> = HashMap::new();
        for row in rows {
            let channel: String = row.get(5);
            let channel = Channel::parse(&channel)
                .ok_or_else(|| self.corrupt("verdicts", format!("channel '{channel}'")))?;
            judged
                .entry(key_of(&row, 0))
                .or_default()
                .insert((row.get(4), channel));
        }
        Ok(judged)
    }

    fn judge_health(&self, run: RunId) -> Result<Vec<JudgeHealth>, StoreError> {
        let rows = self.call(|conn| {
            conn.client.query(
                "SELECT v.judge, v.label = 'unscored', v.rationale
                 FROM completions c JOIN verdicts v ON v.completion_id = c.id
                 WHERE c.run_id = $1 AND c.error IS NULL
                   AND ((v.channel = 'answer' AND trim(coalesce(c.answer, '')) != '')
                     OR (v.channel = 'reasoning' AND trim(coalesce(c.reasoning, '')) != ''))",
                &[&run.0],
            )
        })?;
        Ok(crate::health_of(rows.iter().map(|row| {
            (
                row.get::<_, String>(0),
                row.get::<_, bool>(1),
                row.get::<_, Option<String>>(2),
            )
        })))
    }

    fn completion(&self, run: RunId, key: &UnitKey) -> Result<Option<Completion>, StoreError> {
        let row = self.call(|conn| {
            let statement = conn.statement(
                "SELECT c.reasoning, c.reasoning_source, c.reasoning_state, c.answer, c.finish_reason,
                    c.prompt_tokens, c.completion_tokens, c.reasoning_tokens, c.latency_ms, c.raw, c.error,
                    c.error_kind, c.cached_prompt_tokens
                 FROM completions c
                 WHERE c.run_id = $1 AND c.model = $2 AND c.benchmark = $3 AND c.sample_id = $4
                   AND c.sample_k = $5 AND c.error IS NULL",
            )?;
            conn.client.query_opt(
                &statement,
                &[
                    &run.0,
                    &key.model,
                    &key.benchmark,
                    &key.sample_id,
                    &(key.sample_k as i32),
                ],
            )
        })?;
        match row {
            Some(row) => Ok(self.completion_from(&row, 0)?.ok()),
            None => Ok(None),
        }
    }

    fn write_verdicts(
        &mut self,
        run: RunId,
        verdicts: &[(UnitKey, Vec<Verdict>)],
    ) -> Result<(), StoreError> {
        self.call(|conn| {
            let insert = conn.statement(INSERT_VERDICTS)?;
            let mut tx = conn.client.transaction()?;
            for (key, list) in verdicts {
                let id: Option<i64> = tx
                    .query_opt(
                        "SELECT id FROM completions WHERE run_id = $1 AND model = $2 AND benchmark = $3
                         AND sample_id = $4 AND sample_k = $5 AND error IS NULL",
                        &[
                            &run.0,
                            &key.model,
                            &key.benchmark,
                            &key.sample_id,
                            &(key.sample_k as i32),
                        ],
                    )?
                    .map(|row| row.get(0));
                let Some(id) = id else { continue };
                let ids = vec![id; list.len()];
                insert_verdicts(&mut tx, &insert, &ids, list.iter())?;
            }
            tx.commit()
        })
    }

    fn cached(&self, request_hash: &str) -> Result<Option<Completion>, StoreError> {
        let row = self.call(|conn| {
            let statement = conn.statement(
                "SELECT c.reasoning, c.reasoning_source, c.reasoning_state, c.answer, c.finish_reason,
                    c.prompt_tokens, c.completion_tokens, c.reasoning_tokens, c.latency_ms, c.raw, c.error,
                    c.error_kind, c.cached_prompt_tokens
                 FROM completions c WHERE c.request_hash = $1 AND c.error IS NULL
                 ORDER BY c.id DESC LIMIT 1",
            )?;
            conn.client.query_opt(&statement, &[&request_hash])
        })?;
        match row {
            Some(row) => {
                Ok(Some(self.completion_from(&row, 0)?.map_err(|_| {
                    self.corrupt("completions", "cached row is an error")
                })?))
            }
            None => Ok(None),
        }
    }

    fn cached_many(&self, hashes: &[String]) -> Result<HashMap<String, Completion>, StoreError> {
        if hashes.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self.call(|conn| {
            let statement = conn.statement(
                "SELECT DISTINCT ON (c.request_hash) c.request_hash, c.reasoning, c.reasoning_source,
                    c.reasoning_state, c.answer, c.finish_reason, c.prompt_tokens, c.completion_tokens,
                    c.reasoning_tokens, c.latency_ms, c.raw, c.error, c.error_kind, c.cached_prompt_tokens
                 FROM completions c WHERE c.request_hash = ANY($1) AND c.error IS NULL
                 ORDER BY c.request_hash, c.id DESC",
            )?;
            conn.client.query(&statement, &[&hashes])
        })?;
        let mut found = HashMap::new();
        for row in rows {
            let completion = self
                .completion_from(&row, 1)?
                .map_err(|_| self.corrupt("completions", "cached row is an error"))?;
            found.insert(row.get(0), completion);
        }
        Ok(found)
    }

    fn copy_answers(
        &mut self,
        from: RunId,
        to: RunId,
        benchmarks: &[&str],
    ) -> Result<u64, StoreError> {
        self.call(|conn| {
            let mut tx = conn.client.transaction()?;
            let mut copied = 0;
            for benchmark in benchmarks {
                tx.execute(
                    "INSERT INTO samples (run_id, benchmark, sample_id, idx, category, label, messages, metadata)
                     SELECT $2, benchmark, sample_id, idx, category, label, messages, metadata
                     FROM samples WHERE run_id = $1 AND benchmark = $3 ON CONFLICT DO NOTHING",
                    &[&from.0, &to.0, benchmark],
                )?;
                copied += tx.execute(
                    "INSERT INTO completions (run_id, model, benchmark, sample_id, sample_k,
                        request_hash, reasoning, reasoning_source, reasoning_state, answer, finish_reason,
                        prompt_tokens, completion_tokens, reasoning_tokens, latency_ms, attempts, cached,
                        raw, error, error_kind, cached_prompt_tokens, cost_usd, created_at)
                     SELECT $2, model, benchmark, sample_id, sample_k, request_hash, reasoning,
                        reasoning_source, reasoning_state, answer, finish_reason, prompt_tokens,
                        completion_tokens, reasoning_tokens, latency_ms, attempts, cached, raw, error,
                        error_kind, cached_prompt_tokens,
                        -- the target was paid in the original run, not in this one
                        CASE WHEN cost_usd IS NULL THEN NULL ELSE 0 END, created_at
                     FROM completions WHERE run_id = $1 AND benchmark = $3 ORDER BY id
                     ON CONFLICT DO NOTHING",
                    &[&from.0, &to.0, benchmark],
                )?;
            }
            tx.commit()?;
            Ok(copied)
        })
    }

    fn samples(&self, run: RunId, benchmark: &str) -> Result<Vec<Sample>, StoreError> {
        let rows = self.call(|conn| {
            conn.client.query(
                "SELECT sample_id, idx, category, label, messages, metadata FROM samples
                 WHERE run_id = $1 AND benchmark = $2 ORDER BY idx, sample_id",
                &[&run.0, &benchmark],
            )
        })?;
        rows.iter()
            .map(|row| {
                crate::sample_from(
                    row.get(0),
                    row.get::<_, i64>(1),
                    row.get(2),
                    row.get(3),
                    row.get(4),
                    row.get(5),
                )
                .map_err(|(what, detail)| self.corrupt(&what, detail))
            })
            .collect()
    }

    fn insert_sample_list(
        &mut self,
        run: RunId,
        benchmark: &str,
        samples: &[&Sample],
    ) -> Result<(), StoreError> {
        if samples.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = samples.iter().map(|s| s.id.as_str()).collect();
        let indexes: Vec<i64> = samples.iter().map(|s| s.index as i64).collect();
        let categories: Vec<String> = samples.iter().map(|s| json_text(&s.category)).collect();
        let labels: Vec<Option<String>> = samples
            .iter()
            .map(|s| s.label.map(|l| enum_name(&l)))
            .collect();
        let messages: Vec<String> = samples.iter().map(|s| json_text(&s.messages)).collect();
        let metadata: Vec<Option<String>> = samples.iter().map(|s| stored_metadata(s)).collect();
        self.call(|conn| {
            let statement = conn.statement(
                "INSERT INTO samples (run_id, benchmark, sample_id, idx, category, label, messages, metadata)
                 SELECT $1, $2, * FROM UNNEST($3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[])
                 ON CONFLICT DO NOTHING",
            )?;
            conn.client
                .execute(
                    &statement,
                    &[
                        &run.0,
                        &benchmark,
                        &ids,
                        &indexes,
                        &categories,
                        &labels,
                        &messages,
                        &metadata,
                    ],
                )
                .map(|_| ())
        })
    }

    fn write_batch(&mut self, run: RunId, records: &[UnitRecord]) -> Result<u64, StoreError> {
        // One row per unit (the last record of a unit that came twice).
        let mut last: HashMap<&UnitKey, usize> = HashMap::new();
        for (index, record) in records.iter().enumerate() {
            last.insert(&record.key, index);
        }
        let records: Vec<&UnitRecord> = records
            .iter()
            .enumerate()
            .filter(|(index, record)| last[&record.key] == *index)
            .map(|(_, record)| record)
            .collect();
        if records.is_empty() {
            return Ok(0);
        }
        let keys = KeyColumns::of(records.iter().map(|r| &r.key));
        let mut columns = CompletionColumns::default();
        for record in &records {
            columns.push(record);
        }
        let worker = self.worker.clone();
        self.call(|conn| {
            let upsert = conn.statement(
                "INSERT INTO completions (run_id, model, benchmark, sample_id, sample_k, request_hash,
                    reasoning, reasoning_source, reasoning_state, answer, finish_reason,
                    prompt_tokens, completion_tokens, reasoning_tokens, latency_ms, attempts, cached,
                    raw, error, error_kind, cached_prompt_tokens, cost_usd, helper_spend, worker)
                 SELECT $1, u.*, $24 FROM UNNEST($2::text[], $3::text[], $4::text[], $5::int[], $6::text[],
                    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[],
                    $14::bigint[], $15::bigint[], $16::int[], $17::bool[], $18::text[], $19::text[],
                    $20::text[], $21::bigint[], $22::float8[], $23::text[]) AS u
                 ON CONFLICT (run_id, model, benchmark, sample_id, sample_k) DO UPDATE SET
                    request_hash = excluded.request_hash, reasoning = excluded.reasoning,
                    reasoning_source = excluded.reasoning_source, reasoning_state = excluded.reasoning_state,
                    answer = excluded.answer, finish_reason = excluded.finish_reason,
                    prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens,
                    reasoning_tokens = excluded.reasoning_tokens, latency_ms = excluded.latency_ms,
                    attempts = completions.attempts + excluded.attempts, cached = excluded.cached,
                    raw = excluded.raw, error = excluded.error, error_kind = excluded.error_kind,
                    cached_prompt_tokens = excluded.cached_prompt_tokens,
                    cost_usd = coalesce(completions.cost_usd, 0) + excluded.cost_usd,
                    helper_spend = excluded.helper_spend, worker = excluded.worker,
                    created_at = redtrace_now()
                 WHERE completions.error IS NOT NULL
                 RETURNING id, model, benchmark, sample_id, sample_k, xmax <> 0",
            )?;
            let clear = conn.statement("DELETE FROM verdicts WHERE completion_id = ANY($1)")?;
            let insert = conn.statement(INSERT_VERDICTS)?;
            let mut tx = conn.client.transaction()?;
            let c = &columns;
            let stored = tx.query(
                &upsert,
                &[
                    &run.0,
                    &keys.models,
                    &keys.benchmarks,
                    &keys.sample_ids,
                    &keys.ks,
                    &c.request_hash,
                    &c.reasoning,
                    &c.reasoning_source,
                    &c.reasoning_state,
                    &c.answer,
                    &c.finish_reason,
                    &c.prompt_tokens,
                    &c.completion_tokens,
                    &c.reasoning_tokens,
                    &c.latency_ms,
                    &c.attempts,
                    &c.cached,
                    &c.raw,
                    &c.error,
                    &c.error_kind,
                    &c.cached_prompt_tokens,
                    &c.cost_usd,
                    &c.helper_spend,
                    &worker,
                ],
            )?;
            // Rows not returned: a success was stored for the unit already (a duplicate in
            // flight at a crash, or another worker's); the stored one stands.
            let by_key: HashMap<UnitKey, i64> = stored
                .iter()
                .map(|row| (key_of(row, 1), row.get::<_, i64>(0)))
                .collect();
            // A replaced row (an error a success replaces) loses its verdicts; a new one has
            // none.
            let replaced: Vec<i64> = stored
                .iter()
                .filter(|row| row.get::<_, bool>(5))
                .map(|row| row.get(0))
                .collect();
            if !replaced.is_empty() {
                tx.execute(&clear, &[&replaced])?;
            }
            let mut verdict_ids = Vec::new();
            let mut verdicts = Vec::new();
            for record in &records {
                if let Some(id) = by_key.get(&record.key) {
                    for verdict in &record.verdicts {
                        verdict_ids.push(*id);
                        verdicts.push(verdict);
                    }
                }
            }
            // (Their queue entries are done by the completions' trigger.)
            insert_verdicts(&mut tx, &insert, &verdict_ids, verdicts.into_iter())?;
            tx.commit()?;
            Ok(stored.len() as u64)
        })
    }

    fn visit_results(
        &self,
        run: RunId,
        with_messages: bool,
        visit: &mut dyn FnMut(ResultRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let messages_column = if with_messages {
            "s.messages"
        } else {
            "NULL::text"
        };
        let raw_column = if with_messages { "c.raw" } else { "NULL::text" };
        let sql = format!(
            "SELECT c.id, c.model, c.benchmark, c.sample_id, c.sample_k, c.cached, c.attempts,
                    s.idx, s.category, s.label, {messages_column},
                    c.reasoning, c.reasoning_source, c.reasoning_state, c.answer, c.finish_reason,
                    c.prompt_tokens, c.completion_tokens, c.reasoning_tokens, c.latency_ms, {raw_column},
                    c.error, c.error_kind, c.cached_prompt_tokens, c.cost_usd, c.helper_spend,
                    v.judge, v.channel, v.label, v.score, v.rationale, v.categories, v.spend
             FROM completions c
             JOIN samples s ON s.run_id = c.run_id AND s.benchmark = c.benchmark AND s.sample_id = c.sample_id
             LEFT JOIN verdicts v ON v.completion_id = c.id
             WHERE c.run_id = $1
             ORDER BY c.model, c.benchmark, s.idx, c.sample_k, c.id, v.judge, v.channel"
        );
        // Rows stream from a thread of their own (the client blocks; the visitor may not
        // move between threads) through a bounded channel: memory stays flat.
        let (sender, receiver) =
            std::sync::mpsc::sync_channel::<Result<ResultRow, StoreError>>(256);
        let mut slot = self
            .conn
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if slot.is_none() {
            drop(slot);
            self.call(|_| Ok(()))?;
            slot = self
                .conn
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
        }
        let conn = slot.as_mut().expect("connected above");
        std::thread::scope(|scope| -> Result<(), StoreError> {
            let producer = scope.spawn(move || {
                let send = |item| sender.send(item).is_ok();
                let rows = match conn
                    .client
                    .query_raw(sql.as_str(), [&run.0 as &dyn ToSql].iter().copied())
                {
                    Ok(rows) => rows,
                    Err(error) => {
                        send(Err(self.error(&error)));
                        return;
                    }
                };
                let mut current: Option<(i64, ResultRow)> = None;
                let mut rows = rows;
                use postgres::fallible_iterator::FallibleIterator;
                loop {
                    let row = match rows.next() {
                        Ok(Some(row)) => row,
                        Ok(None) => break,
                        Err(error) => {
                            send(Err(self.error(&error)));
                            return;
                        }
                    };
                    match self.result_row(&row, run, &mut current) {
                        Ok(Some(done)) => {
                            if !send(Ok(done)) {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(error) => {
                            send(Err(error));
                            return;
                        }
                    }
                }
                if let Some((_, done)) = current.take() {
                    send(Ok(done));
                }
            });
            let mut outcome = Ok(());
            for item in receiver.iter() {
                match item.and_then(&mut *visit) {
                    Ok(()) => {}
                    Err(error) => {
                        outcome = Err(error);
                        break;
                    }
                }
            }
            drop(receiver);
            producer
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            outcome
        })
    }

    fn merge_from(&mut self, source: &Path) -> Result<crate::Merged, StoreError> {
        crate::merge::merge_into(self, source)
    }

    fn enqueue_units(&self, run: RunId, keys: &[UnitKey]) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let columns = KeyColumns::of(keys.iter());
        self.call(|conn| {
            let statement = conn.statement(
                "INSERT INTO units (run_id, model, benchmark, sample_id, sample_k)
                 SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::int[])
                 ON CONFLICT (run_id, model, benchmark, sample_id, sample_k) DO UPDATE
                    SET done = false, worker = NULL, lease_until = NULL
                    WHERE units.done AND NOT EXISTS (SELECT 1 FROM completions c
                        WHERE c.run_id = units.run_id AND c.model = units.model
                          AND c.benchmark = units.benchmark AND c.sample_id = units.sample_id
                          AND c.sample_k = units.sample_k AND c.error IS NULL)",
            )?;
            conn.client.execute(
                &statement,
                &[
                    &run.0,
                    &columns.models,
                    &columns.benchmarks,
                    &columns.sample_ids,
                    &columns.ks,
                ],
            )
        })
    }

    fn take_units(
        &self,
        run: RunId,
        worker: &str,
        at_most: usize,
        lease: Duration,
    ) -> Result<Vec<UnitKey>, StoreError> {
        let seconds = lease_secs(lease);
        let at_most = at_most as i64;
        self.call(|conn| {
            let statement = conn.statement(
                "UPDATE units SET worker = $2, lease_until = now() + make_interval(secs => $3)
                 WHERE (run_id, model, benchmark, sample_id, sample_k) IN (
                     SELECT run_id, model, benchmark, sample_id, sample_k FROM units
                     WHERE run_id = $1 AND NOT done AND (lease_until IS NULL OR lease_until < now())
                     ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED)
                 RETURNING model, benchmark, sample_id, sample_k",
            )?;
            Ok(conn
                .client
                .query(&statement, &[&run.0, &worker, &seconds, &at_most])?
                .iter()
                .map(|row| key_of(row, 0))
                .collect())
        })
    }

    fn renew_lease(&self, run: RunId, worker: &str, lease: Duration) -> Result<u64, StoreError> {
        let seconds = lease_secs(lease);
        self.call(|conn| {
            let statement = conn.statement(
                "UPDATE units SET lease_until = now() + make_interval(secs => $3)
                 WHERE run_id = $1 AND worker = $2 AND NOT done",
            )?;
            conn.client
                .execute(&statement, &[&run.0, &worker, &seconds])
        })
    }

    fn release_units(&self, run: RunId, worker: &str) -> Result<u64, StoreError> {
        self.call(|conn| {
            conn.client.execute(
                "UPDATE units SET worker = NULL, lease_until = NULL
                 WHERE run_id = $1 AND worker = $2 AND NOT done",
                &[&run.0, &worker],
            )
        })
    }

    fn queue_state(&self, run: RunId) -> Result<QueueState, StoreError> {
        self.call(|conn| {
            let statement = conn.statement(
                "SELECT count(*) FILTER (WHERE NOT done AND lease_until IS NULL),
                        count(*) FILTER (WHERE NOT done AND lease_until >= now()),
                        count(*) FILTER (WHERE NOT done AND lease_until < now()),
                        count(*) FILTER (WHERE done)
                 FROM units WHERE run_id = $1",
            )?;
            let row = conn.client.query_one(&statement, &[&run.0])?;
            Ok(QueueState {
                waiting: row.get::<_, i64>(0) as u64,
                leased: row.get::<_, i64>(1) as u64,
                expired: row.get::<_, i64>(2) as u64,
                done: row.get::<_, i64>(3) as u64,
            })
        })
    }

    fn next_slot(&self, key: &str, interval: Duration) -> Result<Duration, StoreError> {
        let seconds = interval.as_secs_f64();
        self.call(|conn| {
            // The slot is the later of now and the schedule's next free one; the schedule
            // moves on by one interval. The wait is reckoned on the server's clock alone, so
            // the workers' clocks need not agree.
            let statement = conn.statement(
                "INSERT INTO rate_slots (key, next_at) VALUES ($1, clock_timestamp() + make_interval(secs => $2))
                 ON CONFLICT (key) DO UPDATE
                    SET next_at = greatest(rate_slots.next_at, clock_timestamp()) + make_interval(secs => $2)
                 RETURNING extract(epoch FROM (next_at - make_interval(secs => $2) - clock_timestamp()))::float8",
            )?;
            let wait: f64 = conn.client.query_one(&statement, &[&key, &seconds])?.get(0);
            Ok(Duration::from_secs_f64(wait.max(0.0)))
        })
    }

    fn take_permit(&self, key: &str, limit: usize) -> Result<Option<u32>, StoreError> {
        let space = permit_space(key);
        let limit = limit as i32;
        let held: Vec<i32> = self
            .permits
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(&space)
            .map(|held| held.iter().copied().collect())
            .unwrap_or_default();
        if held.len() >= limit as usize {
            return Ok(None);
        }
        let taken = self.call(|conn| {
            // The first free slot this connection does not hold already: session advisory
            // locks, freed when the connection ends. (CASE fixes the order: PostgreSQL may
            // evaluate an AND's sides in either, and a lock taken again is counted again.)
            let statement = conn.statement(
                "SELECT s FROM generate_series(0, $2 - 1) AS s
                 WHERE CASE WHEN s = ANY($3) THEN false ELSE pg_try_advisory_lock($1, s) END
                 LIMIT 1",
            )?;
            Ok(conn
                .client
                .query_opt(&statement, &[&space, &limit, &held])?
                .map(|row| row.get::<_, i32>(0)))
        })?;
        if let Some(slot) = taken {
            self.permits
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .entry(space)
                .or_default()
                .insert(slot);
        }
        Ok(taken.map(|slot| slot as u32))
    }

    fn give_back_permit(&self, key: &str, slot: u32) -> Result<(), StoreError> {
        let space = permit_space(key);
        let slot = slot as i32;
        let held = self
            .permits
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get_mut(&space)
            .is_some_and(|held| held.remove(&slot));
        if !held {
            // Lost with a connection that ended: nothing to give back.
            return Ok(());
        }
        self.call(|conn| {
            let statement = conn.statement("SELECT pg_advisory_unlock($1, $2)")?;
            conn.client
                .execute(&statement, &[&space, &slot])
                .map(|_| ())
        })
    }

    fn put_recipe(&self, run: RunId, recipe: &str) -> Result<(), StoreError> {
        self.call(|conn| {
            conn.client
                .execute(
                    "INSERT INTO run_recipes (run_id, recipe) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&run.0, &recipe],
                )
                .map(|_| ())
        })
    }

    fn recipe(&self, run: RunId) -> Result<Option<String>, StoreError> {
        self.call(|conn| {
            Ok(conn
                .client
                .query_opt(
                    "SELECT recipe FROM run_recipes WHERE run_id = $1",
                    &[&run.0],
                )?
                .map(|row| row.get(0)))
        })
    }

    fn worker_counts(&self, run: RunId) -> Result<Vec<WorkerCount>, StoreError> {
        self.call(|conn| {
            Ok(conn
                .client
                .query(
                    "SELECT worker, count(*) FILTER (WHERE error IS NULL), count(*) FILTER (WHERE error IS NOT NULL)
                     FROM completions WHERE run_id = $1 AND worker IS NOT NULL
                     GROUP BY worker ORDER BY count(*) DESC, worker",
                    &[&run.0],
                )?
                .iter()
                .map(|row| WorkerCount {
                    worker: row.get(0),
                    answered: row.get::<_, i64>(1) as u64,
                    failed: row.get::<_, i64>(2) as u64,
                })
                .collect())
        })
    }
}

impl PgStore {
    /// Folds one row of `visit_results`' query into `current`; the finished result when the
    /// row begins another completion.
    fn result_row(
        &self,
        row: &Row,
        run: RunId,
        current: &mut Option<(i64, ResultRow)>,
    ) -> Result<Option<ResultRow>, StoreError> {
        let id: i64 = row.get(0);
        let mut finished = None;
        if current.as_ref().map(|(current_id, _)| *current_id) != Some(id) {
            finished = current.take().map(|(_, done)| done);
            let result = crate::StoredRow {
                run_id: run,
                key: key_of(row, 1),
                cached: row.get(5),
                attempts: row.get::<_, i32>(6) as u32,
                index: row.get::<_, i64>(7) as u64,
                category: row.get(8),
                label: row.get(9),
                messages: row.get(10),
                outcome: self.completion_from(row, 11)?,
                cost_usd: row.get(24),
                helper_spend: row.get(25),
            }
            .into_result()
            .map_err(|(what, detail)| self.corrupt(&what, detail))?;
            *current = Some((id, result));
        }
        let judge: Option<String> = row.get(26);
        if let (Some(judge), Some((_, result))) = (judge, current.as_mut()) {
            let verdict = crate::StoredVerdict {
                judge,
                channel: row.get(27),
                label: row.get(28),
                score: row.get(29),
                rationale: row.get(30),
                categories: row.get(31),
                spend: row.get(32),
            }
            .into_verdict()
            .map_err(|(what, detail)| self.corrupt(&what, detail))?;
            result.verdicts.push(verdict);
        }
        Ok(finished)
    }
}

/// The columns of a batch of completions, as arrays for `UNNEST`.
#[derive(Default)]
struct CompletionColumns {
    request_hash: Vec<String>,
    reasoning: Vec<Option<String>>,
    reasoning_source: Vec<Option<String>>,
    reasoning_state: Vec<String>,
    answer: Vec<Option<String>>,
    finish_reason: Vec<Option<String>>,
    prompt_tokens: Vec<Option<i64>>,
    completion_tokens: Vec<Option<i64>>,
    reasoning_tokens: Vec<Option<i64>>,
    latency_ms: Vec<Option<i64>>,
    attempts: Vec<i32>,
    cached: Vec<bool>,
    raw: Vec<Option<String>>,
    error: Vec<Option<String>>,
    error_kind: Vec<Option<String>>,
    cached_prompt_tokens: Vec<Option<i64>>,
    cost_usd: Vec<Option<f64>>,
    helper_spend: Vec<Option<String>>,
}

impl CompletionColumns {
    fn push(&mut self, record: &UnitRecord) {
        let (completion, error) = match &record.outcome {
            Ok(completion) => (Some(completion), None),
            Err(error) => (None, Some(error)),
        };
        let count = |value: Option<u64>| value.map(|v| v as i64);
        self.request_hash.push(record.request_hash.clone());
        self.reasoning.push(
            completion
                .map(|c| c.reasoning.text.clone())
                .filter(|t| !t.is_empty()),
        );
        self.reasoning_source
            .push(completion.and_then(|c| c.reasoning.source.map(|s| enum_name(&s))));
        self.reasoning_state.push(
            completion
                .map(|c| enum_name(&c.reasoning.state))
                .unwrap_or_else(|| "absent".into()),
        );
        self.answer.push(completion.and_then(|c| c.answer.clone()));
        self.finish_reason
            .push(completion.and_then(|c| c.finish_reason.as_ref().map(|r| r.as_str().to_owned())));
        self.prompt_tokens
            .push(completion.and_then(|c| count(c.usage.prompt_tokens)));
        self.completion_tokens
            .push(completion.and_then(|c| count(c.usage.completion_tokens)));
        self.reasoning_tokens
            .push(completion.and_then(|c| count(c.usage.reasoning_tokens)));
        self.latency_ms
            .push(completion.map(|c| c.latency_ms as i64));
        self.attempts.push(record.attempts as i32);
        self.cached.push(record.cached);
        self.raw.push(completion.map(|c| c.raw.clone()));
        self.error.push(error.map(|e| e.message.clone()));
        self.error_kind
            .push(error.map(|e| e.kind.as_str().to_owned()));
        self.cached_prompt_tokens
            .push(completion.and_then(|c| count(c.usage.cached_prompt_tokens)));
        self.cost_usd.push(record.cost_usd);
        self.helper_spend
            .push(record.helper_spend.map(|s| json_text(&s)));
    }
}

/// Stores verdicts: the `i`-th of the `i`-th completion id, replacing one of the same judge
/// and channel.
const INSERT_VERDICTS: &str = "INSERT INTO verdicts (completion_id, judge, channel, label, score, rationale, categories, spend)
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::text[],
        $7::text[], $8::text[])
     ON CONFLICT (completion_id, judge, channel) DO UPDATE SET label = excluded.label,
        score = excluded.score, rationale = excluded.rationale,
        categories = excluded.categories, spend = excluded.spend";

/// Runs [`INSERT_VERDICTS`] (prepared as `statement`) for `verdicts` of completions `ids`.
fn insert_verdicts<'a>(
    tx: &mut postgres::Transaction<'_>,
    statement: &postgres::Statement,
    ids: &[i64],
    verdicts: impl Iterator<Item = &'a Verdict>,
) -> Result<(), postgres::Error> {
    let mut judges = Vec::new();
    let mut channels = Vec::new();
    let mut labels = Vec::new();
    let mut scores: Vec<Option<f64>> = Vec::new();
    let mut rationales = Vec::new();
    let mut categories: Vec<Option<String>> = Vec::new();
    let mut spends: Vec<Option<String>> = Vec::new();
    for v in verdicts {
        judges.push(v.judge.as_str());
        channels.push(v.channel.as_str());
        labels.push(v.label.as_str());
        scores.push(v.score);
        rationales.push(v.rationale.as_str());
        categories.push((!v.categories.is_empty()).then(|| json_text(&v.categories)));
        spends.push(v.spend.map(|s| json_text(&s)));
    }
    if judges.is_empty() {
        return Ok(());
    }
    tx.execute(
        statement,
        &[
            &ids,
            &judges,
            &channels,
            &labels,
            &scores,
            &rationales,
            &categories,
            &spends,
        ],
    )?;
    Ok(())
}
