//! The store's conformance suite: every check in `both!` runs against SQLite (a temporary
//! file) and against PostgreSQL (a fresh database on the test command's throwaway server,
//! `redtrace_testkit::postgres_db`), so the two backends behave as one. Checks of what only
//! one backend has (SQLite's files, PostgreSQL's queue) follow.

use redtrace_core::{
    Channel, Completion, Label, PromptLabel, Sample, TraceSource, TraceState, Usage, Verdict,
};
use redtrace_store::{write_jsonl, Store, UnitError, UnitKey, UnitRecord};
use std::path::Path;

/// Runs each named check against both backends: `sqlite::NAME` and `postgres::NAME`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(&dir.path().join("t.db"), dir.path());
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    let Some(url) = redtrace_testkit::postgres_db() else { return };
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(std::path::Path::new(&url), dir.path());
                }
            )*
        }
    };
}

both!(
    write_read_resume_and_export,
    csv_and_parquet_exports_read_back,
    caches_batches_and_metrics,
    rejudging_copying_and_deleting,
    shards_merge_into_one_run,
);

/// Every stored result of `run`, in order.
fn results(store: &Store, run: redtrace_store::RunId) -> Vec<redtrace_store::ResultRow> {
    let mut rows = Vec::new();
    store
        .for_each_result(run, false, |row| {
            rows.push(row);
            Ok(())
        })
        .unwrap();
    rows
}

fn sample(id: &str, index: u64) -> Sample {
    Sample::user(id, index, format!("question {id}"))
        .in_category(&["homonyms"])
        .labelled(PromptLabel::Safe)
}

fn key(id: &str) -> UnitKey {
    UnitKey {
        model: "m".into(),
        benchmark: "b".into(),
        sample_id: id.into(),
        sample_k: 0,
    }
}

fn completion(answer: Option<&str>) -> Completion {
    let completion = match answer {
        Some(answer) => Completion::answer(answer).with_trace("trace", TraceSource::ThinkTags),
        None => Completion::truncated("trace", TraceSource::ThinkTags),
    };
    Completion {
        usage: Usage {
            prompt_tokens: Some(3),
            completion_tokens: Some(9),
            reasoning_tokens: Some(4),
            cached_prompt_tokens: None,
        },
        latency_ms: 12,
        raw: "{}".into(),
        ..completion
    }
}

fn verdict(channel: Channel, label: Label) -> Verdict {
    Verdict {
        judge: "refusal-rule".into(),
        channel,
        label,
        score: Some(1.0),
        rationale: "why".into(),
        categories: Vec::new(),
        spend: None,
    }
}

fn ok(id: &str, hash: &str, answer: Option<&str>) -> UnitRecord {
    UnitRecord {
        key: key(id),
        request_hash: hash.into(),
        outcome: Ok(completion(answer)),
        attempts: 1,
        cached: false,
        verdicts: vec![
            Verdict {
                spend: Some(redtrace_core::price::Spend {
                    calls: 1,
                    prompt_tokens: 100,
                    completion_tokens: 5,
                    cost_usd: Some(0.001),
                }),
                ..verdict(Channel::Answer, Label::FullRefusal)
            },
            Verdict {
                categories: vec!["S1".into(), "S10".into()],
                ..verdict(Channel::Reasoning, Label::FullCompliance)
            },
        ],
        helper_spend: None,
        cost_usd: Some(0.0125),
    }
}

fn failed(id: &str, hash: &str) -> UnitRecord {
    UnitRecord {
        key: key(id),
        request_hash: hash.into(),
        outcome: Err(UnitError {
            kind: redtrace_core::ErrorKind::ServerError,
            message: "HTTP 500".into(),
        }),
        attempts: 6,
        cached: false,
        verdicts: vec![],
        helper_spend: None,
        cost_usd: None,
    }
}

fn write_read_resume_and_export(path: &Path, _dir: &Path) {
    let mut store = Store::open(path).unwrap();
    let run = store.create_run(&spec("hash1"), "0.1.0").unwrap();
    assert_eq!(
        store.find_run(&spec("hash1").identity_hash()).unwrap(),
        Some(run)
    );
    assert_eq!(store.find_run("other").unwrap(), None);
    let samples = [sample("1", 0), sample("2", 1), sample("3", 2)];
    store.insert_samples(run, "b", samples.iter()).unwrap();
    store.insert_samples(run, "b", samples.iter()).unwrap(); // idempotent

    store
        .write_batch(
            run,
            &[
                ok("1", "h1", Some("No.")),
                failed("2", "h2"),
                ok("3", "h3", None),
            ],
        )
        .unwrap();
    let answered = store.answered(run).unwrap();
    assert_eq!(answered.len(), 2);
    assert!(answered.contains(&key("1")) && !answered.contains(&key("2")));

    // A later success replaces the error; a later duplicate never replaces a success.
    store
        .write_batch(run, &[ok("2", "h2", Some("Yes."))])
        .unwrap();
    let mut duplicate = ok("1", "h1", Some("DIFFERENT"));
    duplicate.verdicts.clear();
    store.write_batch(run, &[duplicate]).unwrap();

    let rows = results(&store, run);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows.iter()
            .map(|r| r.key.sample_id.as_str())
            .collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    let first = rows[0].outcome.as_ref().unwrap();
    assert_eq!(
        first.answer.as_deref(),
        Some("No."),
        "the stored success stands"
    );
    assert_eq!(
        rows[0].verdicts,
        ok("1", "", None).verdicts,
        "its verdicts too"
    );
    assert_eq!(
        rows[0].verdicts[1].categories,
        ["S1", "S10"],
        "a judge's categories round-trip"
    );
    assert_eq!(rows[0].verdicts[0].spend.unwrap().prompt_tokens, 100);
    assert_eq!(rows[0].cost_usd, Some(0.0125));
    assert_eq!(
        rows[1].cost_usd,
        Some(0.0125),
        "a retried unit's costs add up (its failure cost nothing)"
    );
    // Three completions at 0.0125 and three judge calls at 0.001 (the duplicate not stored).
    assert!((store.spent(run).unwrap() - 0.0405).abs() < 1e-12);
    assert_eq!(
        rows[1].attempts, 7,
        "attempts add up across the error and the retry"
    );
    assert_eq!(
        rows[1].outcome.as_ref().unwrap().answer.as_deref(),
        Some("Yes.")
    );
    let third = rows[2].outcome.as_ref().unwrap();
    assert_eq!(third.answer, None);
    assert_eq!(third.reasoning.state, TraceState::Truncated);
    assert_eq!(third.usage.reasoning_tokens, Some(4));
    assert_eq!(rows[0].label, Some(PromptLabel::Safe));
    assert_eq!(rows[0].category, vec!["homonyms"]);

    // The cache serves any run.
    let cached = store.cached("h1").unwrap().unwrap();
    assert_eq!(cached.answer.as_deref(), Some("No."));
    assert!(store.cached("h-missing").unwrap().is_none());

    let mut out = Vec::new();
    assert_eq!(write_jsonl(&store, run, &mut out).unwrap(), 3);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let third = &lines[2];
    for field in [
        "run_id",
        "model",
        "benchmark",
        "sample_id",
        "category",
        "prompt",
        "reasoning",
        "answer",
        "finish_reason",
        "truncated_in_reasoning",
        "usage",
        "error",
        "verdicts",
    ] {
        assert!(third.get(field).is_some(), "export has {field}");
    }
    assert_eq!(third["answer"], serde_json::Value::Null);
    assert_eq!(third["truncated_in_reasoning"], true);
    assert_eq!(third["prompt"], "question 3");
    assert_eq!(third["usage"]["reasoning_tokens"], 4);
    assert_eq!(lines[0]["verdicts"][0]["channel"], "answer");
    assert_eq!(lines[0]["verdicts"][0]["label"], "full_refusal");

    store
        .set_status(run, redtrace_core::RunStatus::Complete)
        .unwrap();
    let runs = store.runs().unwrap();
    assert_eq!(
        (runs[0].status.as_str(), runs[0].completions, runs[0].errors),
        ("complete", 3, 0)
    );
    assert_eq!(store.resolve_run("last").unwrap().id, run);
    assert!(store
        .resolve_run("99")
        .unwrap_err()
        .to_string()
        .contains("no run '99'"));
    assert!(store
        .resolve_run("latest")
        .unwrap_err()
        .to_string()
        .contains("neither 'last' nor a run id"));

    // Reopening keeps everything (migrations are idempotent).
    drop(store);
    let store = Store::open(path).unwrap();
    assert_eq!(store.answered(run).unwrap().len(), 3);
    let store = Store::open_read_only(path).unwrap();
    assert_eq!(store.answered(run).unwrap().len(), 3);
}

#[test]
fn missing_folder_is_a_clear_error() {
    let error = Store::open(std::path::Path::new("/no/such/folder/x.db"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("folder /no/such/folder does not exist"),
        "{error}"
    );
}

fn csv_and_parquet_exports_read_back(location: &Path, dir: &Path) {
    use arrow_array::{Array, BooleanArray, StringArray, UInt64Array};
    let mut store = Store::open(location).unwrap();
    let run = store.create_run(&spec("h"), "t").unwrap();
    let samples = [sample("1", 0), sample("2", 1), sample("3", 2)];
    store.insert_samples(run, "b", samples.iter()).unwrap();
    store
        .write_batch(
            run,
            &[
                ok("1", "h1", Some("No, \"quoted\", and\nmultiline.")),
                failed("2", "h2"),
                ok("3", "h3", None),
            ],
        )
        .unwrap();

    let mut csv_bytes = Vec::new();
    assert_eq!(
        redtrace_store::write_csv(&store, run, &mut csv_bytes).unwrap(),
        3
    );
    let mut reader = csv::Reader::from_reader(csv_bytes.as_slice());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "schema_version");
    assert_eq!(headers.len(), 27);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    assert_eq!(
        &rows[0][column("answer")],
        "No, \"quoted\", and\nmultiline."
    );
    assert_eq!(&rows[1][column("error_kind")], "server_error");
    assert_eq!(&rows[2][column("truncated_in_reasoning")], "true");
    assert_eq!(&rows[2][column("answer")], "");
    let verdicts: serde_json::Value = serde_json::from_str(&rows[0][column("verdicts")]).unwrap();
    assert_eq!(verdicts[0]["label"], "full_refusal");
    assert_eq!(verdicts[0]["spend"]["cost_usd"], 0.001);
    assert_eq!(&rows[0][column("cost_usd")], "0.0125");
    assert_eq!(&rows[1][column("cost_usd")], "", "no price: empty, never 0");

    // Parquet, read back with the parquet crate's own reader.
    let path = dir.join("out.parquet");
    let file = std::fs::File::create(&path).unwrap();
    assert_eq!(redtrace_store::write_parquet(&store, run, file).unwrap(), 3);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    let batch = &batches[0];
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    let strings = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone()
    };
    let answers = strings("answer");
    assert_eq!(answers.value(0), "No, \"quoted\", and\nmultiline.");
    assert!(
        answers.is_null(1) && answers.is_null(2),
        "no answer is null, not empty"
    );
    assert_eq!(strings("error_kind").value(1), "server_error");
    assert_eq!(strings("category").value(0), "homonyms");
    let truncated = batch
        .column_by_name("truncated_in_reasoning")
        .unwrap()
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap()
        .clone();
    assert!(truncated.value(2) && !truncated.value(0));
    let reasoning_tokens = batch
        .column_by_name("reasoning_tokens")
        .unwrap()
        .as_any()
        .downcast_ref::<UInt64Array>()
        .unwrap()
        .clone();
    assert_eq!(reasoning_tokens.value(2), 4);
    assert!(reasoning_tokens.is_null(1));
    assert_eq!(
        batch.schema().as_ref(),
        redtrace_store::parquet_schema().as_ref()
    );
}

/// A run spec told apart from others by `label`.
fn spec(label: &str) -> redtrace_core::RunSpec {
    redtrace_core::RunSpec {
        judges: vec![label.into()],
        ..Default::default()
    }
}

/// A store written before run specs carried a version (today's schema) opens, its runs read
/// typed; a spec that cannot be read is an error naming the run, not a silent default.
#[test]
fn runs_stored_before_specs_had_a_version_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    drop(Store::open(&path).unwrap());
    // The spec exactly as the earlier version wrote it.
    let old_spec = r#"{"models":[{"name":"m","source":{"kind":"openai","base_url":"http://h/v1"},"model":"m","params":{"temperature":0.0},"stream":false,"template_opens_think":false,"max_concurrency":16,"timeout_secs":600.0,"max_retries":5}],"benchmarks":[{"name":"xstest","file":"x.csv","sha256":"abc","fields":{},"limit":null,"sample_seed":null,"judges":["refusal-rule"]}],"judges":["refusal-rule"],"samples_per_prompt":1}"#;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO runs (spec_hash, created_at, updated_at, status, tool_version, spec)
         VALUES ('h', 't', 't', 'complete', '0.1.0', ?1)",
        [old_spec],
    )
    .unwrap();
    let runs = Store::open(&path).unwrap().runs().unwrap();
    assert_eq!(runs[0].status, redtrace_core::RunStatus::Complete);
    assert_eq!(runs[0].spec.schema_version, 1);
    assert_eq!(runs[0].spec.models[0].params.temperature, Some(0.0));
    assert_eq!(runs[0].spec.benchmarks[0].judges, ["refusal-rule"]);
    conn.execute("UPDATE runs SET spec = '{\"models\": 3}'", [])
        .unwrap();
    let error = Store::open(&path).unwrap().runs().unwrap_err().to_string();
    assert!(error.contains("runs.spec of run 1"), "{error}");
}

/// Reading commands open a store read-only: nothing is written (the bytes stay the same, a
/// write fails; where SQLite cannot make its shared-memory file the store is still read), and a store of an older schema is refused with the
/// command that upgrades it, not migrated behind the reader's back.
#[test]
fn a_store_is_read_without_writing_and_an_old_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    {
        let store = Store::open(&path).unwrap();
        store
            .create_run(&redtrace_core::RunSpec::default(), "0.1.0")
            .unwrap();
    }
    let bytes = |path: &std::path::Path| redtrace_core::sha256_hex(&std::fs::read(path).unwrap());
    let before = bytes(&path);
    // Where SQLite cannot make its shared-memory file (a read-only folder; here a folder in
    // its place, since tests may run as root), the store is still read.
    let stuck = dir.path().join("stuck.db");
    std::fs::copy(&path, &stuck).unwrap();
    std::fs::create_dir(dir.path().join("stuck.db-shm")).unwrap();
    for path in [&path, &stuck] {
        let store = Store::open_read_only(path).unwrap();
        assert_eq!(store.runs().unwrap().len(), 1);
        assert!(store
            .create_run(&redtrace_core::RunSpec::default(), "0.1.0")
            .is_err());
    }
    assert_eq!(bytes(&path), before, "nothing written, nothing migrated");
    assert_eq!(bytes(&stuck), before);

    // A store of schema version 1 (before the judge-reply cache).
    let old = dir.path().join("old.db");
    drop(Store::open(&old).unwrap());
    let conn = rusqlite::Connection::open(&old).unwrap();
    conn.execute_batch(redtrace_testkit::SCHEMA_1).unwrap();
    drop(conn);
    let error = Store::open_read_only(&old).err().unwrap().to_string();
    assert!(
        error.contains("has schema version 1; this redtrace reads version 3")
            && error.contains("redtrace migrate --db"),
        "{error}"
    );
    let upgraded = Store::open(&old).unwrap();
    assert_eq!(upgraded.schema_version().unwrap(), 3);
    drop(upgraded);
    assert!(Store::open_read_only(&old).is_ok());
    let missing = Store::open_read_only(&dir.path().join("none.db"))
        .err()
        .unwrap()
        .to_string();
    assert!(missing.starts_with("no store at"), "{missing}");
}

/// A spec with one benchmark `b`, told apart from others by `label`.
fn spec_with_benchmark(label: &str) -> redtrace_core::RunSpec {
    redtrace_core::RunSpec {
        benchmarks: vec![redtrace_core::BenchmarkRecord {
            name: "b".into(),
            file: "b.csv".into(),
            sha256: "0".into(),
            fields: serde_json::Value::Null,
            limit: None,
            sample_seed: None,
            sampling: None,
            judges: vec!["refusal-rule".into()],
            responder: None,
            attack: None,
        }],
        ..spec(label)
    }
}

fn caches_batches_and_metrics(location: &Path, _dir: &Path) {
    let mut store = Store::open(location).unwrap();
    // The judge-reply cache keeps the first reply.
    assert_eq!(store.judge_reply("j1").unwrap(), None);
    store.put_judge_reply("j1", "first").unwrap();
    store.put_judge_reply("j1", "second").unwrap();
    assert_eq!(store.judge_reply("j1").unwrap().as_deref(), Some("first"));

    let run = store.create_run(&spec("metrics"), "t").unwrap();
    let samples = [sample("1", 0), sample("2", 1)];
    store.insert_samples(run, "b", samples.iter()).unwrap();
    assert_eq!(
        store
            .write_batch(run, &[ok("1", "h1", Some("No.")), failed("2", "h2")])
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .write_batch(run, &[ok("1", "h1", Some("again"))])
            .unwrap(),
        0,
        "a stored success is not stored again"
    );
    assert_eq!(store.models(run).unwrap(), ["m"]);
    assert_eq!(store.mean_output("m", None).unwrap(), Some(9.0));
    assert_eq!(store.mean_output("m", Some("other")).unwrap(), None);
    let (tokens, chars) = store.prompt_ratio("m").unwrap().unwrap();
    assert_eq!(tokens, 3);
    assert_eq!(
        chars as usize,
        serde_json::to_string(&sample("1", 0).messages)
            .unwrap()
            .len()
    );
    assert_eq!(
        store.mean_judge_spend("refusal-rule", "m").unwrap(),
        Some((100.0, 5.0))
    );
    assert!((store.spent(run).unwrap() - 0.0135).abs() < 1e-12);
    let stored = store.samples(run, "b").unwrap();
    assert_eq!(stored, samples);

    // Judged: every verdict of an answered unit; health counts the unscored.
    let judged = store.judged(run).unwrap();
    assert_eq!(judged[&key("1")].len(), 2);
    let mut unscored = ok("3", "h3", Some("Maybe."));
    unscored.verdicts = vec![Verdict {
        label: Label::Unscored,
        score: None,
        rationale: "judge failed: HTTP 500".into(),
        ..verdict(Channel::Answer, Label::Unscored)
    }];
    store.write_batch(run, &[unscored]).unwrap();
    assert!(
        !store.judged(run).unwrap().contains_key(&key("3")),
        "an unscored verdict on text is judged again"
    );
    let health = store.judge_health(run).unwrap();
    assert_eq!(health.len(), 1);
    assert_eq!((health[0].verdicts, health[0].unscored), (3, 1));
    assert_eq!(health[0].reasons, [("judge failed".to_owned(), 1)]);
    let completion = store.completion(run, &key("3")).unwrap().unwrap();
    assert_eq!(completion.answer.as_deref(), Some("Maybe."));
    assert!(store.completion(run, &key("2")).unwrap().is_none());

    // Batches: formed, submitted, results stored, ended.
    let keys = vec!["k1".to_owned(), "k2".to_owned()];
    let id = store.form_batch(run, "e", "openai", &keys).unwrap();
    store.set_batch(id, Some("remote-1"), "submitted").unwrap();
    store.batch_result(id, "k1", "{\"line\":1}").unwrap();
    let open = store.open_batches(run, "e").unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].1.as_deref(), Some("remote-1"));
    let mut requests = open[0].2.clone();
    requests.sort();
    assert_eq!(
        requests,
        [
            ("k1".to_owned(), Some("{\"line\":1}".to_owned())),
            ("k2".to_owned(), None)
        ]
    );
    assert_eq!(
        store.stored_batch_result(run, "k1").unwrap().as_deref(),
        Some("{\"line\":1}")
    );
    assert_eq!(store.stored_batch_result(run, "k2").unwrap(), None);
    store.set_batch(id, None, "ended").unwrap();
    assert!(store.open_batches(run, "e").unwrap().is_empty());
    assert_eq!(
        store.batches(run).unwrap(),
        [(id, Some("remote-1".to_owned()), "ended".to_owned(), 2, 1)]
    );
}

fn rejudging_copying_and_deleting(location: &Path, _dir: &Path) {
    let mut store = Store::open(location).unwrap();
    let run = store.create_run(&spec("original"), "t").unwrap();
    let samples = [sample("1", 0), sample("2", 1)];
    store.insert_samples(run, "b", samples.iter()).unwrap();
    store
        .write_batch(run, &[ok("1", "h1", Some("No.")), failed("2", "h2")])
        .unwrap();
    // Verdicts written again replace those of the same judge and channel.
    store
        .write_verdicts(
            run,
            &[
                (
                    key("1"),
                    vec![verdict(Channel::Answer, Label::FullCompliance)],
                ),
                (
                    key("2"),
                    vec![verdict(Channel::Answer, Label::FullCompliance)],
                ),
            ],
        )
        .unwrap();
    let rows = results(&store, run);
    assert_eq!(rows[0].verdicts.len(), 2);
    assert_eq!(rows[0].verdicts[0].label, Label::FullCompliance);
    assert!(rows[1].verdicts.is_empty(), "no verdicts on an error");

    // Copying answers into a run of its own: samples and completions, verdicts not.
    let copy = store.create_run(&spec("copy"), "t").unwrap();
    assert_eq!(store.copy_answers(run, copy, &["b"]).unwrap(), 2);
    assert_eq!(store.copy_answers(run, copy, &["b"]).unwrap(), 0);
    let copied = results(&store, copy);
    assert_eq!(copied.len(), 2);
    assert!(copied.iter().all(|row| row.verdicts.is_empty()));
    assert_eq!(copied[0].cost_usd, Some(0.0), "paid in the original run");

    // A claimed run cannot be deleted; once released it can, with what hung on it.
    let claim = store.claim_run(run).unwrap();
    assert!(matches!(
        store.delete_run(run),
        Err(redtrace_store::StoreError::Busy { .. })
    ));
    assert_eq!(
        store.resolve_run(&run.to_string()).unwrap().status,
        redtrace_core::RunStatus::Running
    );
    drop(claim);
    assert_eq!(
        store.resolve_run(&run.to_string()).unwrap().status,
        redtrace_core::RunStatus::Interrupted,
        "running, says the store, but nobody holds it"
    );
    assert_eq!(store.delete_run(run).unwrap(), 2);
    assert!(store.resolve_run(&run.to_string()).is_err());
    assert_eq!(store.answered(copy).unwrap().len(), 1, "the copy stays");
    assert_eq!(
        store.judge_reply("none").unwrap(),
        None,
        "the store still answers"
    );
}

fn shards_merge_into_one_run(location: &Path, dir: &Path) {
    // Two SQLite shards of one run, each with its own units (and one unit in both, as an
    // error in one and a success in the other).
    let shard = |name: &str, records: Vec<UnitRecord>, status: redtrace_core::RunStatus| {
        let path = dir.join(name);
        let mut store = Store::open(&path).unwrap();
        let run = store
            .create_run(&spec_with_benchmark("merged"), "t")
            .unwrap();
        let samples = [sample("1", 0), sample("2", 1), sample("3", 2)];
        store.insert_samples(run, "b", samples.iter()).unwrap();
        store.write_batch(run, &records).unwrap();
        store
            .put_judge_reply(&format!("reply-{name}"), "r")
            .unwrap();
        store.set_status(run, status).unwrap();
        path
    };
    let a = shard(
        "a.db",
        vec![ok("1", "h1", Some("No.")), failed("2", "h2")],
        redtrace_core::RunStatus::Complete,
    );
    let b = shard(
        "b.db",
        vec![ok("2", "h2", Some("Yes.")), ok("3", "h3", Some("Fine."))],
        redtrace_core::RunStatus::Complete,
    );
    let mut store = Store::open(location).unwrap();
    let first = store.merge_from(&a).unwrap();
    assert!(first.created);
    assert_eq!((first.completions, first.already), (2, 0));
    let second = store.merge_from(&b).unwrap();
    assert!(!second.created && second.run == first.run);
    assert_eq!(
        second.completions, 2,
        "a success replaces the error, and a new unit"
    );
    let again = store.merge_from(&b).unwrap();
    assert_eq!(
        (again.completions, again.already),
        (0, 2),
        "never stored twice"
    );
    let rows = results(&store, first.run);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|row| row.outcome.is_ok()));
    assert_eq!(rows[0].verdicts.len(), 2);
    assert_eq!(
        store.judge_reply("reply-a.db").unwrap().as_deref(),
        Some("r")
    );
    assert_eq!(
        store.resolve_run("last").unwrap().spec.identity_hash(),
        spec_with_benchmark("merged").identity_hash()
    );
    assert_eq!(store.samples(first.run, "b").unwrap().len(), 3);
}

/// The work queue of a shared (PostgreSQL) run: units taken in batches, never by two workers
/// at once, a dead worker's taken again once its lease runs out, finished by their completion.
#[test]
fn postgres_work_queue() {
    use std::time::Duration;
    let Some(url) = redtrace_testkit::postgres_db() else {
        return;
    };
    let mut a = Store::open(Path::new(&url)).unwrap();
    let b = Store::open(Path::new(&url)).unwrap();
    assert!(a.shared());
    let run = a.create_run(&spec("queue"), "t").unwrap();
    let keys: Vec<UnitKey> = (0..10).map(|i| key(&i.to_string())).collect();
    assert_eq!(a.enqueue_units(run, &keys).unwrap(), 10);
    assert_eq!(b.enqueue_units(run, &keys).unwrap(), 0, "queued once");
    let long = Duration::from_secs(60);
    let taken_a = a.take_units(run, "a", 4, long).unwrap();
    let taken_b = b.take_units(run, "b", 100, long).unwrap();
    assert_eq!((taken_a.len(), taken_b.len()), (4, 6));
    assert!(
        taken_a.iter().all(|k| !taken_b.contains(k)),
        "no unit twice"
    );
    assert!(a.take_units(run, "a", 10, long).unwrap().is_empty());
    let state = a.queue_state(run).unwrap();
    assert_eq!((state.leased, state.open()), (10, 10));

    // a finishes its units by storing them.
    let samples: Vec<_> = (0..10).map(|i| sample(&i.to_string(), i)).collect();
    a.insert_samples(run, "b", samples.iter()).unwrap();
    a.set_worker("a");
    let records: Vec<UnitRecord> = taken_a
        .iter()
        .map(|k| ok(&k.sample_id, "h", Some("No.")))
        .collect();
    a.write_batch(run, &records).unwrap();
    assert_eq!(a.queue_state(run).unwrap().done, 4);
    assert_eq!(
        a.worker_counts(run).unwrap(),
        [redtrace_store::WorkerCount {
            worker: "a".into(),
            answered: 4,
            failed: 0
        }]
    );

    // b dies: its lease (renewed once, then let go) runs out, and a takes its units.
    assert_eq!(
        b.renew_lease(run, "b", Duration::from_millis(300)).unwrap(),
        6
    );
    assert!(a.take_units(run, "a", 10, long).unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(a.queue_state(run).unwrap().expired, 6);
    let taken_over = a.take_units(run, "a", 10, long).unwrap();
    assert_eq!(taken_over.len(), 6);
    // A stopping worker gives back what it holds.
    assert_eq!(a.release_units(run, "a").unwrap(), 6);
    assert_eq!(a.queue_state(run).unwrap().waiting, 6);

    // A failed unit is queued again by the next enqueue; an answered one is not.
    let failed_key = &taken_over[0];
    let retaken = a.take_units(run, "a", 1, long).unwrap();
    assert_eq!(&retaken[0], failed_key);
    a.write_batch(run, &[failed(&failed_key.sample_id, "h")])
        .unwrap();
    assert_eq!(a.queue_state(run).unwrap().done, 5);
    assert_eq!(a.enqueue_units(run, &keys).unwrap(), 1);
    assert_eq!(a.queue_state(run).unwrap().done, 4);

    // SQLite has no queue, and says so.
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&dir.path().join("q.db")).unwrap();
    assert!(!sqlite.shared());
    let error = sqlite
        .take_units(run, "a", 1, long)
        .unwrap_err()
        .to_string();
    assert!(error.contains("needs a PostgreSQL store"), "{error}");
}

/// A connection the server drops is made again and the write goes through, whole; a wrong
/// password or an unreachable host is an error that names the host, never the password.
#[test]
fn postgres_connection_loss_and_bad_credentials() {
    let Some(url) = redtrace_testkit::postgres_db() else {
        return;
    };
    let mut store = Store::open(Path::new(&url)).unwrap();
    let run = store.create_run(&spec("loss"), "t").unwrap();
    store
        .insert_samples(run, "b", [sample("1", 0), sample("2", 1)].iter())
        .unwrap();
    store
        .write_batch(run, &[ok("1", "h1", Some("No."))])
        .unwrap();
    // The server ends every other session to this database (a restart, a failover).
    let mut admin = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    let ended: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(ended >= 1);
    store
        .write_batch(run, &[ok("2", "h2", Some("Yes."))])
        .unwrap();
    assert_eq!(store.answered(run).unwrap().len(), 2);
    drop(admin);

    // Wrong password: refused at once, naming the host and not the password.
    let parts: Vec<&str> = url.splitn(2, "@").collect();
    let wrong = format!("postgres://nosuchuser:s3cret-pw@{}", parts[1]);
    let error = Store::open(Path::new(&wrong)).err().unwrap().to_string();
    assert!(error.contains("nosuchuser@"), "{error}");
    assert!(!error.contains("s3cret-pw"), "{error}");

    // Unreachable: tried again for the patience, then an error naming the host.
    std::env::set_var("REDTRACE_DB_PATIENCE_SECS", "0.5");
    let started = std::time::Instant::now();
    let error = Store::open(Path::new(
        "postgres://u:s3cret-pw@127.0.0.1:9/db?connect_timeout=1",
    ))
    .err()
    .unwrap()
    .to_string();
    std::env::remove_var("REDTRACE_DB_PATIENCE_SECS");
    assert!(error.contains("postgres://u@127.0.0.1:9/db"), "{error}");
    assert!(error.contains("gave up after"), "{error}");
    assert!(!error.contains("s3cret-pw"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// What one worker caches (a completion, a judge's reply) the others find.
#[test]
fn postgres_caches_are_shared() {
    let Some(url) = redtrace_testkit::postgres_db() else {
        return;
    };
    let mut one = Store::open(Path::new(&url)).unwrap();
    let other = Store::open(Path::new(&url)).unwrap();
    let run = one.create_run(&spec("caches"), "t").unwrap();
    one.insert_samples(run, "b", [sample("1", 0)].iter())
        .unwrap();
    one.write_batch(run, &[ok("1", "shared-hash", Some("No."))])
        .unwrap();
    one.put_judge_reply("judge-hash", "unsafe\nS1").unwrap();
    let cached = other.cached("shared-hash").unwrap().unwrap();
    assert_eq!(cached.answer.as_deref(), Some("No."));
    assert_eq!(
        other.judge_reply("judge-hash").unwrap().as_deref(),
        Some("unsafe\nS1")
    );
}

/// Shared permits: a connection takes at most `limit` in all, never one twice; one given back
/// is free again; a connection that ends frees its permits.
#[test]
fn postgres_shared_permits() {
    let Some(url) = redtrace_testkit::postgres_db() else {
        return;
    };
    let one = Store::open(Path::new(&url)).unwrap();
    let other = Store::open(Path::new(&url)).unwrap();
    let mut taken: Vec<u32> = (0..3)
        .filter_map(|_| one.take_permit("k", 4).unwrap())
        .collect();
    taken.sort();
    assert_eq!(taken, [0, 1, 2]);
    assert_eq!(other.take_permit("k", 4).unwrap(), Some(3));
    assert_eq!(one.take_permit("k", 4).unwrap(), None);
    assert_eq!(other.take_permit("k", 4).unwrap(), None);
    one.give_back_permit("k", 1).unwrap();
    assert_eq!(other.take_permit("k", 4).unwrap(), Some(1));
    assert_eq!(one.take_permit("other key", 1).unwrap(), Some(0));
    drop(other);
    // The other connection's permits went with it.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut freed: Vec<u32> = (0..3)
        .filter_map(|_| one.take_permit("k", 4).unwrap())
        .collect();
    freed.sort();
    assert_eq!(freed, [1, 3]);
}
