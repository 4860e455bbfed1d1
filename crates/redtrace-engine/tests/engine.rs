//! The engine against the fake server: storage of every outcome, resume, cache, retries with
//! Retry-After, random failures, concurrency and rate bounds, stop and abandon.

use redtrace_core::{Channel, Label, Sample};
use redtrace_engine::{
    run, Backoff, BenchmarkInput, EngineOptions, NoProgress, Plan, RunSummary, Shutdown, Target,
};
use redtrace_judges::by_name;
use redtrace_providers::{ModelConfig, OpenAiProvider};
use redtrace_store::{ResultRow, Store};
use redtrace_testkit::{FakeServer, Reply};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn samples(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            Sample::user(format!("s{i}"), i as u64, format!("prompt {i}"))
                .in_category(&[if i % 2 == 0 { "even" } else { "odd" }])
        })
        .collect()
}

fn config(server: &FakeServer, concurrency: usize, retries: u32) -> ModelConfig {
    let mut config = ModelConfig::new(server.base_url(), "fake-r1");
    config.max_concurrency = concurrency;
    config.max_retries = retries;
    config.timeout_secs = 5.0;
    config
}

/// A judge on both channels that needs no model: the refusal rule, made to read traces too for
/// these tests of how the engine judges each channel (a run never uses it on traces).
fn both_channels() -> Arc<dyn redtrace_judges::Judge> {
    Arc::new(redtrace_judges::OnChannels::new(
        by_name("refusal-rule").unwrap(),
        Channel::ALL.to_vec(),
    ))
}

fn plan(run: redtrace_store::RunId, config: ModelConfig, n: usize, use_cache: bool) -> Plan {
    let provider = Arc::new(OpenAiProvider::with_key(config.clone(), None));
    Plan {
        enqueue_only: false,
        run,
        targets: vec![Target { config, provider }],
        benchmarks: vec![BenchmarkInput {
            name: "bench".into(),
            samples: Box::new(samples(n).into_iter().map(Ok)),
            judges: vec![both_channels()],
            solver: Arc::new(redtrace_core::solver::Direct),
        }],
        channels: Channel::ALL.to_vec(),
        samples_per_prompt: 1,
        use_cache,
        total_units: Some(n as u64),
        stored_only: false,
        budget: None,
        shard: None,
    }
}

fn fast() -> EngineOptions {
    EngineOptions {
        backoff: Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn go(db: &Path, plan: Plan) -> RunSummary {
    run(
        plan,
        db.to_owned(),
        fast(),
        Arc::new(NoProgress),
        Shutdown::default(),
    )
    .await
    .unwrap()
}

fn results(db: &Path, run: redtrace_store::RunId) -> Vec<ResultRow> {
    let store = Store::open(db).unwrap();
    let mut rows = Vec::new();
    store
        .for_each_result(run, false, |row| {
            rows.push(row);
            Ok(())
        })
        .unwrap();
    rows
}

fn new_run(db: &Path, hash: &str) -> redtrace_store::RunId {
    Store::open(db)
        .unwrap()
        .create_run(
            &redtrace_core::RunSpec {
                judges: vec![hash.into()],
                ..Default::default()
            },
            "test",
        )
        .unwrap()
}

#[tokio::test]
async fn every_outcome_is_stored_and_judged_per_channel() {
    let server = FakeServer::start(|seen| {
        if seen.prompt.ends_with('3') {
            Reply::truncated_in_trace("thinking until the budget runs out")
        } else {
            Reply::think_tags(
                "The user asks something harmless. I will answer.",
                "I'm sorry, but I can't help with that.",
            )
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let run_id = new_run(&db, "a");
    let summary = go(&db, plan(run_id, config(&server, 4, 0), 12, true)).await;
    assert_eq!(
        (summary.answered, summary.failed, summary.requests),
        (12, 0, 12)
    );
    let rows = results(&db, run_id);
    assert_eq!(rows.len(), 12);
    let normal = &rows[0];
    assert_eq!(normal.verdicts.len(), 2);
    let answer = normal
        .verdicts
        .iter()
        .find(|v| v.channel == Channel::Answer)
        .unwrap();
    let trace = normal
        .verdicts
        .iter()
        .find(|v| v.channel == Channel::Reasoning)
        .unwrap();
    assert_eq!(answer.label, Label::FullRefusal);
    assert_eq!(
        trace.label,
        Label::FullCompliance,
        "the trace is judged on its own text"
    );
    let truncated = rows.iter().find(|r| r.key.sample_id == "s3").unwrap();
    assert_eq!(truncated.outcome.as_ref().unwrap().answer, None);
    let verdict = truncated
        .verdicts
        .iter()
        .find(|v| v.channel == Channel::Answer)
        .unwrap();
    assert_eq!(
        verdict.label,
        Label::Unscored,
        "no answer is never scored as a refusal or as safe"
    );
}

#[tokio::test]
async fn resume_sends_nothing_twice_and_the_cache_serves_new_runs() {
    let server = FakeServer::start(|_| Reply::text("Sure, here it is.")).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let run_id = new_run(&db, "a");
    go(&db, plan(run_id, config(&server, 8, 0), 30, true)).await;
    assert_eq!(server.count(), 30);

    let again = go(&db, plan(run_id, config(&server, 8, 0), 30, true)).await;
    assert_eq!((again.skipped, again.requests), (30, 0));
    assert_eq!(
        server.count(),
        30,
        "resume sends no request for answered samples"
    );

    let second = new_run(&db, "b");
    let cached = go(&db, plan(second, config(&server, 8, 0), 30, true)).await;
    assert_eq!((cached.cached, cached.requests), (30, 0));
    assert!(results(&db, second)
        .iter()
        .all(|row| row.cached && row.verdicts.len() == 2));

    let third = new_run(&db, "c");
    let fresh = go(&db, plan(third, config(&server, 8, 0), 30, false)).await;
    assert_eq!(
        (fresh.answered, fresh.requests),
        (30, 30),
        "--no-cache bypasses the cache"
    );
}

#[tokio::test]
async fn rate_limited_for_a_while_then_ok_honours_retry_after() {
    let server = FakeServer::start(|seen| {
        if seen.attempt < 2 {
            Reply::too_many_requests(1)
        } else {
            Reply::text("fine")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let run_id = new_run(&db, "a");
    let summary = go(&db, plan(run_id, config(&server, 4, 5), 4, true)).await;
    assert_eq!(
        (summary.answered, summary.failed, summary.requests),
        (4, 0, 12)
    );
    let seen = server.requests();
    for prompt in (0..4).map(|i| format!("prompt {i}")) {
        let times: Vec<_> = seen
            .iter()
            .filter(|s| s.prompt == prompt)
            .map(|s| s.at)
            .collect();
        assert_eq!(times.len(), 3);
        for pair in times.windows(2) {
            // The backoff alone would wait at most 20 ms; Retry-After says 1 s.
            assert!(
                pair[1] - pair[0] >= Duration::from_millis(950),
                "{:?}",
                pair[1] - pair[0]
            );
        }
    }
    assert!(results(&db, run_id).iter().all(|row| row.attempts == 3));
}

/// Fails about one request in ten, decided by a hash of the prompt and attempt so the test is
/// repeatable.
fn flaky(prompt: &str, attempt: usize) -> bool {
    let text = format!("{prompt}#{attempt}");
    redtrace_core::sha256_hex(text.as_bytes()).as_bytes()[0].is_multiple_of(10)
}

#[tokio::test]
async fn random_failures_lose_no_sample_and_are_counted() {
    let server = FakeServer::start(|seen| {
        if flaky(&seen.prompt, seen.attempt) {
            Reply::status(500)
        } else {
            Reply::text("ok")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let n = 200;
    let expected_failures = (0..n).filter(|i| flaky(&format!("prompt {i}"), 0)).count() as u64;
    assert!(
        expected_failures > 5,
        "the fixture fails some first attempts"
    );

    // Without retries: each first-attempt failure is an error row; nothing is lost.
    let run_id = new_run(&db, "a");
    let summary = go(&db, plan(run_id, config(&server, 16, 0), n, false)).await;
    assert_eq!(summary.failed, expected_failures);
    assert_eq!(summary.answered + summary.failed, n as u64);
    let rows = results(&db, run_id);
    assert_eq!(rows.len(), n);
    let errors: Vec<_> = rows
        .iter()
        .filter_map(|r| r.outcome.as_ref().err())
        .collect();
    assert_eq!(errors.len() as u64, expected_failures);
    assert!(
        errors
            .iter()
            .all(|e| e.kind == redtrace_core::ErrorKind::ServerError
                && e.message.contains("HTTP 500"))
    );

    // Running it again retries only the failed ones.
    let before = server.count();
    let again = go(&db, plan(run_id, config(&server, 16, 3), n, false)).await;
    assert_eq!(again.skipped, n as u64 - expected_failures);
    assert_eq!(again.answered, expected_failures);
    assert!(server.count() - before >= expected_failures as usize);
    assert!(results(&db, run_id).iter().all(|r| r.outcome.is_ok()));
}

#[tokio::test]
async fn bad_responses_are_errors_not_retried() {
    let server = FakeServer::start(|seen| match seen.prompt.as_str() {
        "prompt 0" => Reply::RawBody(r#"{"object":"chat.completion"}"#.into()),
        "prompt 1" => Reply::RawBody("{truncated".into()),
        _ => Reply::text("ok"),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let run_id = new_run(&db, "a");
    let summary = go(&db, plan(run_id, config(&server, 2, 5), 3, false)).await;
    assert_eq!(
        (summary.failed, summary.answered, summary.requests),
        (2, 1, 3)
    );
    let rows = results(&db, run_id);
    assert!(rows[0]
        .outcome
        .as_ref()
        .unwrap_err()
        .message
        .contains("no choices"));
    assert!(rows[1]
        .outcome
        .as_ref()
        .unwrap_err()
        .message
        .contains("not JSON"));
}

#[tokio::test]
async fn concurrency_is_bounded_per_endpoint() {
    let server = FakeServer::start(|_| Reply::text("ok").after(Duration::from_millis(30))).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let run_id = new_run(&db, "a");
    go(&db, plan(run_id, config(&server, 3, 0), 24, false)).await;
    assert_eq!(server.max_in_flight(), 3);
}

#[tokio::test]
async fn requests_per_minute_are_spaced() {
    let server = FakeServer::start(|_| Reply::text("ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let run_id = new_run(&db, "a");
    let mut config = config(&server, 8, 0);
    config.requests_per_minute = Some(600); // one per 100 ms
    let start = std::time::Instant::now();
    go(&db, plan(run_id, config, 5, false)).await;
    let mut times: Vec<_> = server.requests().iter().map(|s| s.at).collect();
    times.sort();
    assert_eq!(times.len(), 5);
    // The k-th arrival (from 0) cannot precede the k-th slot, which is k intervals after the
    // run began: a bound that holds however the network delays single requests (the exact
    // spacing is tested with paused time in `limits`).
    for (k, at) in times.iter().enumerate() {
        let earliest = Duration::from_millis(100) * k as u32;
        assert!(*at - start >= earliest, "request {k} at {:?}", *at - start);
    }
}

#[tokio::test]
async fn stop_lets_in_flight_finish_and_a_rerun_completes_exactly_once() {
    let server =
        Arc::new(FakeServer::start(|_| Reply::text("ok").after(Duration::from_millis(100))).await);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let run_id = new_run(&db, "a");
    let shutdown = Shutdown::default();
    let stopper = shutdown.clone();
    let watched = server.clone();
    // Requests go out in waves of 4 every 100 ms; stop between two waves.
    let sent_at_stop = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        stopper.stop.cancel();
        watched.count()
    });
    let n = 40;
    let summary = run(
        plan(run_id, config(&server, 4, 0), n, false),
        db.clone(),
        fast(),
        Arc::new(NoProgress),
        shutdown,
    )
    .await
    .unwrap();
    let sent_at_stop = sent_at_stop.await.unwrap();
    assert!(summary.interrupted);
    assert!(
        summary.answered > 0 && (summary.answered as usize) < n,
        "{summary:?}"
    );
    assert_eq!(
        server.count(),
        sent_at_stop,
        "nothing is sent after the stop, though more units were queued"
    );
    assert_eq!(
        summary.answered as usize,
        server.count(),
        "every request in flight was allowed to finish and was stored"
    );
    assert_eq!(results(&db, run_id).len(), server.count());

    let rest = go(&db, plan(run_id, config(&server, 4, 0), n, false)).await;
    assert_eq!(rest.skipped, summary.answered);
    assert_eq!(
        server.count(),
        n,
        "each sample requested exactly once over both runs"
    );
    assert_eq!(results(&db, run_id).len(), n);
}

#[tokio::test]
async fn abandon_aborts_in_flight_requests() {
    let server = FakeServer::start(|_| Reply::text("ok").after(Duration::from_secs(30))).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let run_id = new_run(&db, "a");
    let shutdown = Shutdown::default();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stopper.stop.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stopper.abandon.cancel();
    });
    let started = std::time::Instant::now();
    let summary = run(
        plan(run_id, config(&server, 4, 0), 10, false),
        db.clone(),
        fast(),
        Arc::new(NoProgress),
        shutdown,
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "did not wait for the 30 s replies"
    );
    assert!(summary.interrupted);
    assert_eq!(summary.answered, 0);
    assert!(
        results(&db, run_id).is_empty(),
        "abandoned requests leave no partial rows"
    );
    assert_eq!(Store::open(&db).unwrap().answered(run_id).unwrap().len(), 0);
}

#[tokio::test]
async fn a_bad_row_stops_intake_but_keeps_what_was_stored() {
    let server = FakeServer::start(|_| Reply::text("ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let run_id = new_run(&db, "a");
    let mut plan = plan(run_id, config(&server, 1, 0), 0, false);
    let good = samples(3).into_iter().map(Ok);
    let rows: Vec<Result<Sample, String>> = good
        .chain(std::iter::once(Err(
            "data.csv:line 5: malformed CSV row".to_string()
        )))
        .collect();
    plan.benchmarks = vec![BenchmarkInput {
        name: "bench".into(),
        samples: Box::new(rows.into_iter()),
        judges: vec![both_channels()],
        solver: Arc::new(redtrace_core::solver::Direct),
    }];
    let error = run(
        plan,
        db.clone(),
        fast(),
        Arc::new(NoProgress),
        Shutdown::default(),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("data.csv:line 5"), "{error}");
    assert_eq!(
        results(&db, run_id).len(),
        3,
        "completions before the bad row are kept"
    );
}

/// A run whose judge model failed is judged again on resume, from the stored completions and
/// the judge-reply cache: the target is not asked again, and a judge reply once given is not
/// asked for again either.
#[tokio::test]
async fn resume_judges_again_what_a_failed_judge_left_unscored() {
    let target = FakeServer::start(|seen| {
        Reply::think_tags("Let me think.", &format!("Answer to {}", seen.prompt))
    })
    .await;
    let judge_down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let down = judge_down.clone();
    let judge_server = FakeServer::start(move |_| {
        if down.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::status(500)
        } else {
            Reply::text("Harmless.\nVERDICT: safe")
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let run_id = new_run(&db, "a");
    let judge = || {
        let mut config = ModelConfig::new(judge_server.base_url(), "judge");
        config.timeout_secs = 5.0;
        let model =
            redtrace_judges::JudgeModel::new(Arc::new(OpenAiProvider::with_key(config, None)))
                .with_cache(Arc::new(
                    redtrace_engine::StoreReplyCache::open(&db).unwrap(),
                ));
        redtrace_judges::build(
            "harm",
            redtrace_judges::JudgeParts {
                model: Some(model),
                model_name: Some("judge".into()),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let with_harm = |config| {
        let mut plan = plan(run_id, config, 4, true);
        plan.benchmarks[0].judges.push(judge());
        plan
    };
    let first = go(&db, with_harm(config(&target, 2, 0))).await;
    assert_eq!((first.answered, target.count()), (4, 4));
    let unscored = |rows: &[ResultRow]| {
        rows.iter()
            .flat_map(|r| r.verdicts.iter())
            .filter(|v| v.judge == "harm:judge" && v.label == Label::Unscored)
            .count()
    };
    assert_eq!(unscored(&results(&db, run_id)), 8, "answer and trace of 4");
    assert!(results(&db, run_id)[0]
        .verdicts
        .iter()
        .any(|v| v.rationale.contains("judge call failed")));

    judge_down.store(false, std::sync::atomic::Ordering::SeqCst);
    let calls_before = judge_server.count();
    let second = go(&db, with_harm(config(&target, 2, 0))).await;
    assert_eq!(
        (second.rejudged, second.skipped, second.requests),
        (4, 0, 0)
    );
    assert_eq!(target.count(), 4, "the target is not asked again");
    assert_eq!(judge_server.count() - calls_before, 8);
    let rows = results(&db, run_id);
    assert_eq!(unscored(&rows), 0);
    assert!(
        rows.iter().all(|r| r.verdicts.len() == 4),
        "rule and harm, two channels each"
    );

    // Everything settled: nothing more to judge or send.
    let third = go(&db, with_harm(config(&target, 2, 0))).await;
    assert_eq!((third.skipped, third.rejudged), (4, 0));
    // A new run of the same samples: completions and judge replies both come from the caches.
    let calls_before = judge_server.count();
    let other = new_run(&db, "b");
    let mut plan = plan(other, config(&target, 2, 0), 4, true);
    plan.benchmarks[0].judges.push(judge());
    let fourth = go(&db, plan).await;
    assert_eq!((fourth.cached, fourth.requests), (4, 0));
    assert_eq!(
        judge_server.count(),
        calls_before,
        "judge replies are cached"
    );
    assert_eq!(unscored(&results(&db, other)), 0);
}

fn priced(mut config: ModelConfig, input: f64, output: f64) -> ModelConfig {
    config.price = Some(redtrace_core::price::Price {
        input,
        output,
        cached_input: None,
        batch_discount: None,
    });
    config
}

/// A reply with the usage a paid API reports: 1,000 prompt tokens, 500 generated (300 of
/// them reasoning, billed as output).
fn billed() -> Reply {
    Reply::Message(redtrace_testkit::FakeMessage {
        content: Some("I can't help with that.".into()),
        usage: Some((1000, 500, Some(300))),
        ..Default::default()
    })
}

#[tokio::test]
async fn every_completion_stores_its_cost_and_a_cached_one_costs_nothing() {
    let server = FakeServer::start(|_| billed()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    // $2 per million prompt tokens, $8 per million generated: 1000 × 2 + 500 × 8 = $0.006.
    let config = priced(config(&server, 4, 0), 2.0, 8.0);
    let run1 = new_run(&db, "a");
    go(&db, plan(run1, config.clone(), 3, true)).await;
    let rows = results(&db, run1);
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert!(
            (row.cost_usd.unwrap() - 0.006).abs() < 1e-12,
            "{:?}",
            row.cost_usd
        );
        assert!(row.helper_spend.is_none());
        assert!(
            row.verdicts.iter().all(|v| v.spend.is_none()),
            "a rule judge calls no model"
        );
    }
    assert!((Store::open(&db).unwrap().spent(run1).unwrap() - 0.018).abs() < 1e-12);
    // The same requests in another run come from the cache: they cost this run nothing.
    let run2 = new_run(&db, "b");
    go(&db, plan(run2, config.clone(), 3, true)).await;
    assert!(results(&db, run2)
        .iter()
        .all(|r| r.cached && r.cost_usd == Some(0.0)));
    // A target without a price has no cost: unknown, not zero.
    let run3 = new_run(&db, "c");
    let mut unpriced = config;
    unpriced.price = None;
    go(&db, plan(run3, unpriced, 2, false)).await;
    assert!(results(&db, run3).iter().all(|r| r.cost_usd.is_none()));
}

#[tokio::test]
async fn a_budget_stops_sending_before_it_is_passed_and_a_resume_goes_on() {
    let server = FakeServer::start(|_| billed()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    // $1 per million tokens either way, 1,000 generated at most: each request reserves about
    // (a few prompt tokens + 1,000) / 1e6 dollars and costs 1,500 / 1e6 = $0.0015.
    let mut config = priced(config(&server, 1, 0), 1.0, 1.0);
    config.params.max_tokens = Some(1000);
    let run = new_run(&db, "budget");
    let mut first = plan(run, config.clone(), 10, false);
    first.budget = Some(Arc::new(redtrace_engine::Budget::new(0.005, 0.0)));
    let summary = go(&db, first).await;
    assert!(summary.budget_reached && summary.interrupted, "{summary:?}");
    let answered = summary.answered;
    let spent = Store::open(&db).unwrap().spent(run).unwrap();
    assert!((2..10).contains(&answered), "{answered} answered");
    assert!(spent <= 0.005, "spent {spent} within the budget");
    assert!((spent - answered as f64 * 0.0015).abs() < 1e-12);
    assert_eq!(
        server.count() as u64,
        answered,
        "nothing past the budget was sent"
    );
    // Resumed with a larger budget (the earlier spending counts), the run completes, and no
    // unit is asked twice.
    let mut again = plan(run, config, 10, false);
    again.budget = Some(Arc::new(redtrace_engine::Budget::new(
        1.0,
        Store::open(&db).unwrap().spent(run).unwrap(),
    )));
    let summary = go(&db, again).await;
    assert!(!summary.budget_reached && !summary.interrupted);
    assert_eq!(summary.answered + summary.skipped, 10);
    assert_eq!(server.count(), 10);
    assert!((Store::open(&db).unwrap().spent(run).unwrap() - 0.015).abs() < 1e-12);
}

/// On a shared store, a worker that takes units before it has read them (another worker
/// queued them in another order) runs each when its reading reaches it: every unit once.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_runs_units_it_took_before_reading_them() {
    let Some(url) = redtrace_testkit::postgres_db() else {
        return;
    };
    let db = Path::new(&url);
    let server = FakeServer::start(|_| Reply::think_tags("Thinking.", "No.")).await;
    let n = 300;
    let run = new_run(db, "taken-early");
    let config = config(&server, 8, 0);
    // The whole run queued, last sample first.
    let keys: Vec<redtrace_store::UnitKey> = samples(n)
        .iter()
        .rev()
        .map(|sample| redtrace_store::UnitKey {
            model: config.name.clone(),
            benchmark: "bench".into(),
            sample_id: sample.id.clone(),
            sample_k: 0,
        })
        .collect();
    let store = Store::open(db).unwrap();
    assert_eq!(store.enqueue_units(run, &keys).unwrap(), n as u64);
    let summary = go(db, plan(run, config, n, false)).await;
    assert_eq!(summary.answered, n as u64);
    assert_eq!(server.count(), n, "every unit sent once");
    assert_eq!(results(db, run).len(), n);
    assert_eq!(store.queue_state(run).unwrap().open(), 0);
}
