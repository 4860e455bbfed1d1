//! The SQLite backend: one file (bundled SQLite, WAL), the embedded default.

use redtrace_core::{Channel, Completion, RunSpec, RunStatus, Sample, Verdict};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::{
    enum_name, schema, stored_metadata, JudgeHealth, ResultRow, RunClaim, RunId, RunInfo, Storage,
    StoreError, UnitError, UnitKey, UnitRecord,
};

/// A store in one SQLite file.
pub struct SqliteStore {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating and migrating when needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let wrap = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(StoreError::NotFound(format!(
                    "store {}: folder {} does not exist",
                    path.display(),
                    parent.display()
                )));
            }
        }
        let conn = Connection::open(path).map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(wrap)?;
        schema::migrate(&conn).map_err(wrap)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// Opens the existing store at `path` for reading only: nothing is written, so a store on
    /// read-only media or shared read-only can be reported, exported and viewed. A store of an
    /// older schema is refused with what to run ([`StoreError::NeedsMigration`]); a WAL store
    /// whose folder cannot hold the shared-memory file is opened as immutable.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        use rusqlite::OpenFlags;
        let wrap = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        if !path.is_file() {
            return Err(StoreError::NotFound(format!(
                "no store at {} (run `redtrace run` first, or pass --db PATH)",
                path.display()
            )));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let uri = |extra: &str| {
            let mut url = url::Url::from_file_path(
                std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
            )
            .map(|u| u.to_string())
            .unwrap_or_else(|_| format!("file:{}", path.display()));
            url.push_str(&format!("?mode=ro{extra}"));
            url
        };
        let version = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.pragma_query_value(None, "user_version", |row| row.get(0))
        };
        let mut conn = Connection::open_with_flags(uri(""), flags).map_err(wrap)?;
        let found = match version(&conn) {
            Ok(found) => found,
            // A WAL store in a folder where the shared-memory file cannot be made: read it
            // as immutable (nothing else can be writing to it there).
            Err(_) => {
                conn = Connection::open_with_flags(uri("&immutable=1"), flags).map_err(wrap)?;
                version(&conn).map_err(wrap)?
            }
        };
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(wrap)?;
        if found != schema::SCHEMA_VERSION {
            if found > schema::SCHEMA_VERSION {
                return Err(wrap(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                    Some(format!("schema version {found} is newer than this redtrace understands ({}); upgrade redtrace", schema::SCHEMA_VERSION)),
                )));
            }
            return Err(StoreError::NeedsMigration {
                path: path.to_owned(),
                found,
                wanted: schema::SCHEMA_VERSION,
            });
        }
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub(crate) fn corrupt(&self, what: &str, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
            detail: detail.into(),
        }
    }

    /// The lock file that says who runs `run`: beside the database, one per run.
    fn claim_path(&self, run: RunId) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".run-{run}.lock"));
        PathBuf::from(name)
    }

    /// Whether some process holds the claim on `run`.
    fn is_claimed(&self, run: RunId) -> bool {
        let Ok(file) = std::fs::File::open(self.claim_path(run)) else {
            return false;
        };
        matches!(
            file.try_lock_shared(),
            Err(std::fs::TryLockError::WouldBlock)
        )
    }

    fn completion_from_row(
        &self,
        row: &rusqlite::Row<'_>,
        at: usize,
    ) -> Result<Result<Completion, UnitError>, StoreError> {
        let get = |i: usize| -> Result<rusqlite::types::Value, StoreError> {
            row.get(at + i).map_err(|e| self.err(e))
        };
        let text = |i: usize| -> Result<Option<String>, StoreError> {
            match get(i)? {
                rusqlite::types::Value::Text(t) => Ok(Some(t)),
                rusqlite::types::Value::Null => Ok(None),
                other => {
                    Err(self.corrupt("completions", format!("expected text, found {other:?}")))
                }
            }
        };
        let int = |i: usize| -> Result<Option<u64>, StoreError> {
            match get(i)? {
                rusqlite::types::Value::Integer(v) => Ok(Some(v as u64)),
                rusqlite::types::Value::Null => Ok(None),
                other => Err(self.corrupt(
                    "completions",
                    format!("expected an integer, found {other:?}"),
                )),
            }
        };
        crate::completion_of(text, int, |what, detail| self.corrupt(what, detail))
    }
}

impl Storage for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn merge_from(&mut self, source: &Path) -> Result<crate::Merged, StoreError> {
        self.merge_shard(source)
    }

    fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }

    fn check_integrity(&self) -> Result<(), StoreError> {
        let mut statement = self
            .conn
            .prepare("PRAGMA quick_check(5)")
            .map_err(|e| self.err(e))?;
        let problems: Vec<String> = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        if problems == ["ok"] {
            return Ok(());
        }
        Err(StoreError::Corrupt {
            path: self.path.clone(),
            what: "the database file".into(),
            detail: format!(
                "{} (restore a copy, or run with another --db; nothing was written)",
                problems.join("; ")
            ),
        })
    }

    fn judge_reply(&self, request_hash: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT reply FROM judge_replies WHERE request_hash = ?1",
                [request_hash],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    fn put_judge_reply(&self, request_hash: &str, reply: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO judge_replies (request_hash, reply, created_at)
                 VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
                params![request_hash, reply],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn claim_run(&self, run: RunId) -> Result<RunClaim, StoreError> {
        let path = self.claim_path(run);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| StoreError::Export(format!("{}: {error}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(RunClaim {
                _hold: Box::new(file),
            }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Busy {
                path: self.path.clone(),
                run,
            }),
            Err(std::fs::TryLockError::Error(error)) => {
                Err(StoreError::Export(format!("{}: {error}", path.display())))
            }
        }
    }

    fn prompt_ratio(&self, model: &str) -> Result<Option<(u64, u64)>, StoreError> {
        self.conn
            .query_row(
                "SELECT sum(c.prompt_tokens), sum(length(s.messages))
                 FROM completions c
                 JOIN samples s ON s.run_id = c.run_id AND s.benchmark = c.benchmark AND s.sample_id = c.sample_id
                 WHERE c.model = ?1 AND c.error IS NULL AND c.cached = 0 AND c.prompt_tokens IS NOT NULL",
                [model],
                |row| {
                    let tokens: Option<i64> = row.get(0)?;
                    let chars: Option<i64> = row.get(1)?;
                    Ok(tokens.zip(chars).map(|(t, c)| (t as u64, c as u64)))
                },
            )
            .map_err(|e| self.err(e))
    }

    fn mean_output(&self, model: &str, benchmark: Option<&str>) -> Result<Option<f64>, StoreError> {
        self.conn
            .query_row(
                "SELECT avg(completion_tokens) FROM completions
                 WHERE model = ?1 AND (?2 IS NULL OR benchmark = ?2) AND error IS NULL
                   AND completion_tokens IS NOT NULL",
                params![model, benchmark],
                |row| row.get(0),
            )
            .map_err(|e| self.err(e))
    }

    fn mean_judge_spend(&self, judge: &str, model: &str) -> Result<Option<(f64, f64)>, StoreError> {
        self.conn
            .query_row(
                "SELECT avg(json_extract(v.spend, '$.prompt_tokens')), avg(json_extract(v.spend, '$.completion_tokens'))
                 FROM verdicts v JOIN completions c ON c.id = v.completion_id
                 WHERE c.model = ?2 AND v.spend IS NOT NULL AND (v.judge = ?1 OR v.judge LIKE ?1 || ':%')",
                params![judge, model],
                |row| {
                    let input: Option<f64> = row.get(0)?;
                    let output: Option<f64> = row.get(1)?;
                    Ok(input.zip(output))
                },
            )
            .map_err(|e| self.err(e))
    }

    fn open_batches(
        &self,
        run: RunId,
        endpoint: &str,
    ) -> Result<Vec<(i64, Option<String>, Vec<(String, Option<String>)>)>, StoreError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, remote_id FROM batches
                 WHERE run_id = ?1 AND endpoint = ?2 AND state NOT IN ('ended', 'abandoned')
                 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let batches: Vec<(i64, Option<String>)> = statement
            .query_map(params![run, endpoint], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut requests = self
            .conn
            .prepare("SELECT custom_id, result FROM batch_requests WHERE batch_id = ?1")
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for (id, remote) in batches {
            let keys = requests
                .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(|e| self.err(e))?
                .collect::<Result<Vec<(String, Option<String>)>, _>>()
                .map_err(|e| self.err(e))?;
            out.push((id, remote, keys));
        }
        Ok(out)
    }

    fn form_batch(
        &mut self,
        run: RunId,
        endpoint: &str,
        api: &str,
        keys: &[String],
    ) -> Result<i64, StoreError> {
        let path = self.path.clone();
        let wrap = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(wrap)?;
        tx.execute(
            "INSERT INTO batches (run_id, endpoint, api, state, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'formed', strftime('%Y-%m-%dT%H:%M:%fZ','now'), strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
            params![run, endpoint, api],
        )
        .map_err(wrap)?;
        let id = tx.last_insert_rowid();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO batch_requests (batch_id, custom_id) VALUES (?1, ?2)",
                )
                .map_err(wrap)?;
            for key in keys {
                insert.execute(params![id, key]).map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)?;
        Ok(id)
    }

    fn set_batch(&self, id: i64, remote: Option<&str>, state: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE batches SET remote_id = coalesce(?2, remote_id), state = ?3,
                    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
                params![id, remote, state],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn batch_result(&self, id: i64, key: &str, line: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE batch_requests SET result = ?3 WHERE batch_id = ?1 AND custom_id = ?2",
                params![id, key, line],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn stored_batch_result(&self, run: RunId, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT r.result FROM batch_requests r JOIN batches b ON b.id = r.batch_id
                 WHERE b.run_id = ?1 AND r.custom_id = ?2 AND r.result IS NOT NULL
                 ORDER BY b.id DESC LIMIT 1",
                params![run, key],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    fn batches(
        &self,
        run: RunId,
    ) -> Result<Vec<(i64, Option<String>, String, u64, u64)>, StoreError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT b.id, b.remote_id, b.state, count(r.custom_id), count(r.result)
                 FROM batches b LEFT JOIN batch_requests r ON r.batch_id = b.id
                 WHERE b.run_id = ?1 GROUP BY b.id ORDER BY b.id",
            )
            .map_err(|e| self.err(e))?;
        let rows = statement
            .query_map([run], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    fn spent(&self, run: RunId) -> Result<f64, StoreError> {
        self.conn
            .query_row(
                "SELECT coalesce(sum(c.cost_usd), 0)
                        + coalesce(sum(json_extract(c.helper_spend, '$.cost_usd')), 0)
                        + coalesce((SELECT sum(json_extract(v.spend, '$.cost_usd'))
                                    FROM verdicts v JOIN completions c2 ON c2.id = v.completion_id
                                    WHERE c2.run_id = ?1), 0)
                 FROM completions c WHERE c.run_id = ?1",
                [run],
                |row| row.get(0),
            )
            .map_err(|e| self.err(e))
    }

    fn delete_run(&self, run: RunId) -> Result<u64, StoreError> {
        let info = self
            .runs()?
            .into_iter()
            .find(|info| info.id == run)
            .ok_or_else(|| {
                StoreError::NotFound(format!("no run {run} in {}", self.path.display()))
            })?;
        let claim = self.claim_run(run)?;
        self.conn
            .execute("DELETE FROM runs WHERE id = ?1", [run])
            .map_err(|e| self.err(e))?;
        drop(claim);
        let _ = std::fs::remove_file(self.claim_path(run));
        Ok(info.completions)
    }

    fn find_run(&self, spec_hash: &str) -> Result<Option<RunId>, StoreError> {
        self.conn
            .query_row(
                "SELECT id FROM runs WHERE spec_hash = ?1 ORDER BY id DESC LIMIT 1",
                [spec_hash],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    fn create_run(&self, spec: &RunSpec, tool_version: &str) -> Result<RunId, StoreError> {
        self.conn
            .execute(
                "INSERT INTO runs (spec_hash, created_at, updated_at, status, tool_version, spec)
                 VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ','now'), strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?2, ?3, ?4)",
                params![
                    spec.identity_hash(),
                    RunStatus::Running.as_str(),
                    tool_version,
                    spec.to_json()
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(RunId(self.conn.last_insert_rowid()))
    }

    fn set_status(&self, run: RunId, status: RunStatus) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET status = ?2, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
                params![run, status.as_str()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn models(&self, run: RunId) -> Result<Vec<String>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT DISTINCT model FROM completions WHERE run_id = ?1 ORDER BY model")
            .map_err(|e| self.err(e))?;
        let rows = statement
            .query_map([run], |row| row.get(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<String>, _>>()
            .map_err(|e| self.err(e))
    }

    fn runs(&self) -> Result<Vec<RunInfo>, StoreError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT r.id, r.spec_hash, r.created_at, r.updated_at, r.status, r.tool_version, r.spec,
                        (SELECT COUNT(*) FROM completions c WHERE c.run_id = r.id),
                        (SELECT COUNT(*) FROM completions c WHERE c.run_id = r.id AND c.error IS NOT NULL)
                 FROM runs r ORDER BY r.id DESC",
            )
            .map_err(|e| self.err(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, RunId>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, String>(6)?,
                    row.get::<_, i64>(7)? as u64,
                    row.get::<_, i64>(8)? as u64,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut runs = Vec::new();
        for row in rows {
            let (
                id,
                spec_hash,
                created_at,
                updated_at,
                status,
                tool_version,
                spec,
                completions,
                errors,
            ) = row.map_err(|e| self.err(e))?;
            let corrupt = |what: &str, detail: String| StoreError::Corrupt {
                path: self.path.clone(),
                what: format!("runs.{what} of run {id}"),
                detail,
            };
            runs.push(RunInfo {
                id,
                spec_hash,
                created_at,
                updated_at,
                status: match RunStatus::parse(&status)
                    .ok_or_else(|| corrupt("status", format!("unknown status '{status}'")))?
                {
                    // Running, says the store, but nobody runs it: its process died.
                    RunStatus::Running if !self.is_claimed(id) => RunStatus::Interrupted,
                    status => status,
                },
                tool_version,
                spec: RunSpec::from_json(&spec).map_err(|e| corrupt("spec", e.to_string()))?,
                completions,
                errors,
            });
        }
        Ok(runs)
    }

    fn answered(&self, run: RunId) -> Result<HashSet<UnitKey>, StoreError> {
        let mut statement = self
            .conn
            .prepare("SELECT model, benchmark, sample_id, sample_k FROM completions WHERE run_id = ?1 AND error IS NULL")
            .map_err(|e| self.err(e))?;
        let rows = statement
            .query_map([run], |row| {
                Ok(UnitKey {
                    model: row.get(0)?,
                    benchmark: row.get(1)?,
                    sample_id: row.get(2)?,
                    sample_k: row.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<HashSet<_>, _>>()
            .map_err(|e| self.err(e))
    }

    fn judged(
        &self,
        run: RunId,
    ) -> Result<HashMap<UnitKey, HashSet<(String, Channel)>>, StoreError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT c.model, c.benchmark, c.sample_id, c.sample_k, v.judge, v.channel
                 FROM completions c JOIN verdicts v ON v.completion_id = c.id
                 WHERE c.run_id = ?1 AND c.error IS NULL AND (v.label != 'unscored'
                    OR (v.channel = 'answer' AND trim(coalesce(c.answer, '')) = '')
                    OR (v.channel = 'reasoning' AND trim(coalesce(c.reasoning, '')) = ''))",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = statement.query([run]).map_err(|e| self.err(e))?;
        let mut judged: HashMap<UnitKey, HashSet<(String, Channel)>> = HashMap::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let key = UnitKey {
                model: row.get(0).map_err(|e| self.err(e))?,
                benchmark: row.get(1).map_err(|e| self.err(e))?,
                sample_id: row.get(2).map_err(|e| self.err(e))?,
                sample_k: row.get(3).map_err(|e| self.err(e))?,
            };
            let channel: String = row.get(5).map_err(|e| self.err(e))?;
            let channel = Channel::parse(&channel)
                .ok_or_else(|| self.corrupt("verdicts", format!("channel '{channel}'")))?;
            judged
                .entry(key)
                .or_default()
                .insert((row.get(4).map_err(|e| self.err(e))?, channel));
        }
        Ok(judged)
    }

    fn judge_health(&self, run: RunId) -> Result<Vec<JudgeHealth>, StoreError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT v.judge, v.label = 'unscored', v.rationale
                 FROM completions c JOIN verdicts v ON v.completion_id = c.id
                 WHERE c.run_id = ?1 AND c.error IS NULL
                   AND ((v.channel = 'answer' AND trim(coalesce(c.answer, '')) != '')
                     OR (v.channel = 'reasoning' AND trim(coalesce(c.reasoning, '')) != ''))",
            )
            .map_err(|e| self.err(e))?;
        let rows = statement
            .query_map([run], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(crate::health_of(rows))
    }

    fn completion(&self, run: RunId, key: &UnitKey) -> Result<Option<Completion>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COMPLETION_COLUMNS} FROM completions c
                 WHERE c.run_id = ?1 AND c.model = ?2 AND c.benchmark = ?3 AND c.sample_id = ?4
                   AND c.sample_k = ?5 AND c.error IS NULL"
            ))
            .map_err(|e| self.err(e))?;
        let mut rows = statement
            .query(params![
                run,
                key.model,
                key.benchmark,
                key.sample_id,
                key.sample_k
            ])
            .map_err(|e| self.err(e))?;
        match rows.next().map_err(|e| self.err(e))? {
            Some(row) => Ok(self.completion_from_row(row, 0)?.ok()),
            None => Ok(None),
        }
    }

    fn write_verdicts(
        &mut self,
        run: RunId,
        verdicts: &[(UnitKey, Vec<Verdict>)],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let wrap = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(wrap)?;
        {
            let mut find = tx
                .prepare_cached(
                    "SELECT id FROM completions WHERE run_id = ?1 AND model = ?2 AND benchmark = ?3
                     AND sample_id = ?4 AND sample_k = ?5 AND error IS NULL",
                )
                .map_err(wrap)?;
            let mut insert = tx.prepare_cached(INSERT_VERDICT).map_err(wrap)?;
            for (key, list) in verdicts {
                let id: Option<i64> = find
                    .query_row(
                        params![run, key.model, key.benchmark, key.sample_id, key.sample_k],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(wrap)?;
                let Some(id) = id else { continue };
                for v in list {
                    insert_verdict(&mut insert, id, v).map_err(wrap)?;
                }
            }
        }
        tx.commit().map_err(wrap)
    }

    fn cached(&self, request_hash: &str) -> Result<Option<Completion>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COMPLETION_COLUMNS} FROM completions c WHERE c.request_hash = ?1 AND c.error IS NULL ORDER BY c.id DESC LIMIT 1"
            ))
            .map_err(|e| self.err(e))?;
        let mut rows = statement.query([request_hash]).map_err(|e| self.err(e))?;
        match rows.next().map_err(|e| self.err(e))? {
            Some(row) => {
                Ok(Some(self.completion_from_row(row, 0)?.map_err(|_| {
                    self.corrupt("completions", "cached row is an error")
                })?))
            }
            None => Ok(None),
        }
    }

    fn copy_answers(
        &mut self,
        from: RunId,
        to: RunId,
        benchmarks: &[&str],
    ) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let wrap = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(wrap)?;
        let mut copied = 0;
        for benchmark in benchmarks {
            tx.execute(
                "INSERT OR IGNORE INTO samples (run_id, benchmark, sample_id, idx, category, label, messages, metadata)
                 SELECT ?2, benchmark, sample_id, idx, category, label, messages, metadata
                 FROM samples WHERE run_id = ?1 AND benchmark = ?3",
                params![from, to, benchmark],
            )
            .map_err(wrap)?;
            copied += tx
            .execute(
                "INSERT OR IGNORE INTO completions (run_id, model, benchmark, sample_id, sample_k,
                    request_hash, reasoning, reasoning_source, reasoning_state, answer, finish_reason,
                    prompt_tokens, completion_tokens, reasoning_tokens, latency_ms, attempts, cached,
                    raw, error, error_kind, cached_prompt_tokens, cost_usd, created_at)
                 SELECT ?2, model, benchmark, sample_id, sample_k, request_hash, reasoning,
                    reasoning_source, reasoning_state, answer, finish_reason, prompt_tokens,
                    completion_tokens, reasoning_tokens, latency_ms, attempts, cached, raw, error,
                    error_kind, cached_prompt_tokens,
                    -- the target was paid in the original run, not in this one
                    CASE WHEN cost_usd IS NULL THEN NULL ELSE 0 END, created_at
                 FROM completions WHERE run_id = ?1 AND benchmark = ?3 ORDER BY id",
                params![from, to, benchmark],
            )
            .map_err(wrap)?;
        }
        tx.commit().map_err(wrap)?;
        Ok(copied as u64)
    }

    fn samples(&self, run: RunId, benchmark: &str) -> Result<Vec<Sample>, StoreError> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT sample_id, idx, category, label, messages, metadata FROM samples
                 WHERE run_id = ?1 AND benchmark = ?2 ORDER BY idx, sample_id",
            )
            .map_err(|e| self.err(e))?;
        let mut rows = statement
            .query(params![run, benchmark])
            .map_err(|e| self.err(e))?;
        let mut samples = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let get = |i: usize| -> Result<Option<String>, StoreError> {
                row.get(i).map_err(|e| self.err(e))
            };
            let sample = crate::sample_from(
                get(0)?.unwrap_or_default(),
                row.get(1).map_err(|e| self.err(e))?,
                get(2)?.unwrap_or_else(|| "[]".into()),
                get(3)?,
                get(4)?.unwrap_or_else(|| "[]".into()),
                get(5)?,
            )
            .map_err(|(what, detail)| self.corrupt(&what, detail))?;
            samples.push(sample);
        }
        Ok(samples)
    }

    fn insert_sample_list(
        &mut self,
        run: RunId,
        benchmark: &str,
        samples: &[&Sample],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(|e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        {
            let mut statement = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO samples (run_id, benchmark, sample_id, idx, category, label, messages, metadata)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| StoreError::Sqlite { path: self.path.clone(), source: e })?;
            for sample in samples {
                statement
                    .execute(params![
                        run,
                        benchmark,
                        sample.id,
                        sample.index as i64,
                        serde_json::to_string(&sample.category).unwrap_or_default(),
                        sample.label.map(|l| enum_name(&l)),
                        serde_json::to_string(&sample.messages).unwrap_or_default(),
                        stored_metadata(sample),
                    ])
                    .map_err(|e| StoreError::Sqlite {
                        path: self.path.clone(),
                        source: e,
                    })?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn write_batch(&mut self, run: RunId, records: &[UnitRecord]) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let wrap = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(wrap)?;
        let mut stored = 0;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO completions (run_id, model, benchmark, sample_id, sample_k, request_hash,
                        reasoning, reasoning_source, reasoning_state, answer, finish_reason,
                        prompt_tokens, completion_tokens, reasoning_tokens, latency_ms, attempts, cached,
                        raw, error, error_kind, cached_prompt_tokens, cost_usd, helper_spend, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
                        ?21, ?22, ?23, strftime('%Y-%m-%dT%H:%M:%fZ','now'))
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
                        helper_spend = excluded.helper_spend,
                        created_at = excluded.created_at
                     WHERE completions.error IS NOT NULL
                     RETURNING id",
                )
                .map_err(wrap)?;
            let mut clear = tx
                .prepare_cached("DELETE FROM verdicts WHERE completion_id = ?1")
                .map_err(wrap)?;
            let mut verdict = tx.prepare_cached(INSERT_VERDICT).map_err(wrap)?;
            for record in records {
                let key = &record.key;
                let (completion, error) = match &record.outcome {
                    Ok(completion) => (Some(completion), None),
                    Err(error) => (None, Some(error)),
                };
                let id: Option<i64> = upsert
                    .query_row(
                        params![
                            run,
                            key.model,
                            key.benchmark,
                            key.sample_id,
                            key.sample_k,
                            record.request_hash,
                            completion
                                .map(|c| c.reasoning.text.as_str())
                                .filter(|t| !t.is_empty()),
                            completion.and_then(|c| c.reasoning.source.map(|s| enum_name(&s))),
                            completion
                                .map(|c| enum_name(&c.reasoning.state))
                                .unwrap_or_else(|| "absent".into()),
                            completion.and_then(|c| c.answer.as_deref()),
                            completion.and_then(|c| c.finish_reason.as_ref().map(|r| r.as_str())),
                            completion.and_then(|c| c.usage.prompt_tokens.map(|v| v as i64)),
                            completion.and_then(|c| c.usage.completion_tokens.map(|v| v as i64)),
                            completion.and_then(|c| c.usage.reasoning_tokens.map(|v| v as i64)),
                            completion.map(|c| c.latency_ms as i64),
                            record.attempts,
                            record.cached,
                            completion.map(|c| c.raw.as_str()),
                            error.map(|e| e.message.as_str()),
                            error.map(|e| e.kind.as_str()),
                            completion.and_then(|c| c.usage.cached_prompt_tokens.map(|v| v as i64)),
                            record.cost_usd,
                            record
                                .helper_spend
                                .map(|s| serde_json::to_string(&s).expect("a spend serialises")),
                        ],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(wrap)?;
                // No id: a success was already stored for this unit (a duplicate in flight at a
                // crash); the stored one stands.
                let Some(id) = id else { continue };
                stored += 1;
                clear.execute([id]).map_err(wrap)?;
                for v in &record.verdicts {
                    insert_verdict(&mut verdict, id, v).map_err(wrap)?;
                }
            }
        }
        tx.commit().map_err(wrap)?;
        Ok(stored)
    }

    fn visit_results(
        &self,
        run: RunId,
        with_messages: bool,
        visit: &mut dyn FnMut(ResultRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let messages_column = if with_messages { "s.messages" } else { "NULL" };
        let raw_column = if with_messages { "c.raw" } else { "NULL" };
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
             WHERE c.run_id = ?1
             ORDER BY c.model, c.benchmark, s.idx, c.sample_k, c.id, v.judge, v.channel"
        );
        let mut statement = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let mut rows = statement.query([run]).map_err(|e| self.err(e))?;
        let mut current: Option<(i64, ResultRow)> = None;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let id: i64 = row.get(0).map_err(|e| self.err(e))?;
            if current.as_ref().map(|(current_id, _)| *current_id) != Some(id) {
                if let Some((_, done)) = current.take() {
                    visit(done)?;
                }
                let get = |i: usize| -> Result<Option<String>, StoreError> {
                    row.get(i).map_err(|e| self.err(e))
                };
                let result = crate::StoredRow {
                    run_id: run,
                    key: UnitKey {
                        model: row.get(1).map_err(|e| self.err(e))?,
                        benchmark: row.get(2).map_err(|e| self.err(e))?,
                        sample_id: row.get(3).map_err(|e| self.err(e))?,
                        sample_k: row.get(4).map_err(|e| self.err(e))?,
                    },
                    cached: row.get(5).map_err(|e| self.err(e))?,
                    attempts: row.get(6).map_err(|e| self.err(e))?,
                    index: row.get::<_, i64>(7).map_err(|e| self.err(e))? as u64,
                    category: get(8)?.unwrap_or_default(),
                    label: get(9)?,
                    messages: get(10)?,
                    outcome: self.completion_from_row(row, 11)?,
                    cost_usd: row.get(24).map_err(|e| self.err(e))?,
                    helper_spend: get(25)?,
                }
                .into_result()
                .map_err(|(what, detail)| self.corrupt(&what, detail))?;
                current = Some((id, result));
            }
            let judge: Option<String> = row.get(26).map_err(|e| self.err(e))?;
            if let (Some(judge), Some((_, result))) = (judge, current.as_mut()) {
                let get = |i: usize| -> Result<Option<String>, StoreError> {
                    row.get(i).map_err(|e| self.err(e))
                };
                let verdict = crate::StoredVerdict {
                    judge,
                    channel: get(27)?.unwrap_or_default(),
                    label: get(28)?.unwrap_or_default(),
                    score: row.get(29).map_err(|e| self.err(e))?,
                    rationale: get(30)?,
                    categories: get(31)?,
                    spend: get(32)?,
                }
                .into_verdict()
                .map_err(|(what, detail)| self.corrupt(&what, detail))?;
                result.verdicts.push(verdict);
            }
        }
        if let Some((_, done)) = current.take() {
            visit(done)?;
        }
        Ok(())
    }
}

/// Columns `completion_from_row` reads, in order, from a `completions c` row.
/// Stores a verdict of a completion, replacing one of the same judge and channel.
const INSERT_VERDICT: &str =
    "INSERT OR REPLACE INTO verdicts (completion_id, judge, channel, label, score, rationale, categories, spend)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

fn insert_verdict(
    statement: &mut rusqlite::CachedStatement<'_>,
    completion_id: i64,
    v: &Verdict,
) -> rusqlite::Result<usize> {
    statement.execute(params![
        completion_id,
        v.judge,
        v.channel.as_str(),
        v.label.as_str(),
        v.score,
        v.rationale,
        (!v.categories.is_empty())
            .then(|| serde_json::to_string(&v.categories).expect("strings serialise")),
        v.spend
            .map(|s| serde_json::to_string(&s).expect("a spend serialises"))
    ])
}

const COMPLETION_COLUMNS: &str = "c.reasoning, c.reasoning_source, c.reasoning_state, c.answer, c.finish_reason,
     c.prompt_tokens, c.completion_tokens, c.reasoning_tokens, c.latency_ms, c.raw, c.error, c.error_kind,
     c.cached_prompt_tokens";
