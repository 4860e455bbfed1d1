//! What a run costs, through the binary: prices from a --prices file, the estimate before a
//! run against what the run then cost, a --max-cost stop (exit 3) and its resume, the cost
//! table of the report.

use crate::util::{redtrace, text};
use redtrace_testkit::{FakeMessage, FakeServer, Reply};
use serde_json::Value;

/// A target that reports usage like a paid API: 40 prompt tokens, 120 generated.
async fn paid_target() -> FakeServer {
    FakeServer::start(|seen| {
        Reply::Message(FakeMessage {
            content: Some(if seen.prompt.contains("lock") {
                "Sure, here is how.".into()
            } else {
                "I can't help with that.".into()
            }),
            reasoning_content: Some("Thinking it over.".into()),
            usage: Some((40, 120, Some(80))),
            ..Default::default()
        })
    })
    .await
}

fn setup(dir: &std::path::Path) -> (String, String) {
    let csv = dir.join("p.csv");
    let mut rows = String::from("prompt\n");
    for i in 0..12 {
        rows.push_str(&format!(
            "{} question number {i} asked plainly\n",
            if i % 3 == 0 { "a lock" } else { "a" }
        ));
    }
    std::fs::write(&csv, rows).unwrap();
    let prices = dir.join("prices.toml");
    // $10 per million prompt tokens, $20 per million generated: a reply costs
    // 40 × 10e-6 + 120 × 20e-6 = $0.0028.
    std::fs::write(&prices, "[paid-r1]\ninput = 10.0\noutput = 20.0\n").unwrap();
    (
        format!("file:{}", csv.display()),
        prices.to_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_estimate_holds_what_the_run_then_costs_and_a_budget_stops_it() {
    let target = paid_target().await;
    let dir = tempfile::tempdir().unwrap();
    let (bench, prices) = setup(dir.path());
    let db = dir.path().join("c.db");
    let db = db.to_str().unwrap();
    let model = target.model_ref("paid-r1");
    let common = [
        "--model",
        &model,
        "--bench",
        &bench,
        "--prices",
        &prices,
        "--max-tokens",
        "200",
        "--db",
        db,
    ];

    // Before any run: an estimate from the prompts and max_tokens, said so.
    let output = redtrace(&[&["plan", "--cost"][..], &common[..]].concat()).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let plan = text(&output.stdout);
    assert!(
        plan.contains("characters a token") && plan.contains("max_tokens = 200"),
        "{plan}"
    );
    assert_eq!(target.count(), 0, "planning sends nothing");

    // A budget for about five replies: the run stops before passing it, exit 3, resumable.
    let output =
        redtrace(&[&["run", "--quiet", "--max-cost", "0.02"][..], &common[..]].concat()).await;
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("stopped at its budget"), "{stderr}");
    let stopped_at = target.count();
    assert!((1..12).contains(&stopped_at), "{stopped_at} sent");

    // Resumed with enough budget, it completes; nothing is asked twice.
    let output =
        redtrace(&[&["run", "--quiet", "--max-cost", "1"][..], &common[..]].concat()).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(target.count(), 12);
    assert!(
        text(&output.stderr).contains("spent so far: $0.0336"),
        "{}",
        text(&output.stderr)
    );

    // The report's cost table: 12 replies at $0.0028, 4 of them unsafe by the rule judge.
    let output = redtrace(&["report", "--db", db, "--format", "json"]).await;
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let cost = &report["costs"][0];
    assert_eq!(cost["completions"], 12);
    assert!(
        (cost["target"]["usd"].as_f64().unwrap() - 0.0336).abs() < 1e-9,
        "{cost}"
    );
    assert_eq!(cost["unsafe_answers"], 4);
    let output = redtrace(&["report", "--db", db, "--format", "md"]).await;
    let md = text(&output.stdout);
    assert!(
        md.contains("What the run cost") && md.contains("$0.0084"),
        "$ per unsafe answer: {md}"
    );

    // After the run, the estimate is calibrated by it and holds what it cost.
    let output = redtrace(&[&["plan", "--cost", "--json"][..], &common[..]].concat()).await;
    let rows: Value = serde_json::from_slice(&output.stdout).unwrap();
    let usd = &rows[0]["target_usd"];
    let (low, high) = (usd["low"].as_f64().unwrap(), usd["high"].as_f64().unwrap());
    assert!(low <= 0.0336 && 0.0336 <= high, "{usd}");
    assert!(
        (usd["point"].as_f64().unwrap() - 0.0336).abs() < 0.0336 * 0.01,
        "{usd}"
    );
    assert!(
        rows[0]["basis"].to_string().contains("earlier run"),
        "{rows}"
    );

    // A target without a price: "no price", and --max-cost refuses to start.
    let output = redtrace(&[
        "run",
        "--quiet",
        "--max-cost",
        "1",
        "--model",
        &target.model_ref("unknown-model"),
        "--bench",
        &bench,
        "--db",
        db,
    ])
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("model 'unknown-model' (unknown-model) has none"),
        "{}",
        text(&output.stderr)
    );
}

/// `--batch` through the binary: the run's requests go in one batch at half price; killed
/// with SIGKILL while the batch is under way, the rerun picks the batch up, never submits a
/// second one, and stores every result.
#[tokio::test(flavor = "multi_thread")]
async fn a_batched_run_killed_mid_batch_resumes_it_without_submitting_twice() {
    use redtrace_testkit::{BatchLine, FakeBatchApi};
    for which in ["openai", "anthropic", "gemini"] {
        let api = FakeBatchApi::start(2, |_, body| {
            let prompt = body["messages"][0]["content"]
                .as_str()
                .or(body["contents"][0]["parts"][0]["text"].as_str())
                .unwrap_or("")
                .to_owned();
            BatchLine::Reply(FakeMessage {
                content: Some(format!("I can't help with {prompt}.")),
                usage: Some((40, 120, None)),
                ..Default::default()
            })
        })
        .await;
        api.hold(true);
        let dir = tempfile::tempdir().unwrap();
        let (bench, _) = setup(dir.path());
        let prices = dir.path().join("batch-prices.toml");
        std::fs::write(
            &prices,
            "[paid-r1]\ninput = 10.0\noutput = 20.0\nbatch_discount = 0.5\n",
        )
        .unwrap();
        let (api_line, base) = (format!("api = \"{which}\"\n"), api.base_url());
        let suite = dir.path().join("suite.toml");
        std::fs::write(
            &suite,
            format!(
                "prices = \"{}\"\n\n[[models]]\nbase_url = \"{base}\"\nmodel = \"paid-r1\"\n{api_line}batch = {{ poll_secs = 0.05, window_secs = 0.1 }}\n\n[[benchmarks]]\nname = \"{bench}\"\n",
                prices.display()
            ),
        )
        .unwrap();
        let db = dir.path().join("batch.db");
        let args = [
            "run",
            suite.to_str().unwrap(),
            "--quiet",
            "--db",
            db.to_str().unwrap(),
        ];
        let mut child = crate::util::command(&[], &[]).args(args).spawn().unwrap();
        // Wait until the batch is submitted and its id recorded, then kill the run.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the batch was never submitted"
            );
            let recorded = db.is_file()
                && redtrace_store::Store::open_read_only(&db)
                    .ok()
                    .and_then(|s| s.batches(redtrace_store::RunId(1)).ok())
                    .is_some_and(|b| b.iter().any(|(_, remote, ..)| remote.is_some()));
            if api.creates() == 1 && recorded {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        child.start_kill().unwrap(); // SIGKILL
        child.wait().await.unwrap();
        api.hold(false);
        let output = redtrace(&args).await;
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert_eq!(api.creates(), 1, "{which}: never submitted twice");
        assert_eq!(api.live(), 0);
        let stderr = text(&output.stderr);
        // 12 replies at half of $0.0028.
        assert!(stderr.contains("spent so far: $0.0168"), "{stderr}");
        let export = redtrace(&["export", "--db", db.to_str().unwrap()]).await;
        let lines: Vec<Value> = text(&export.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 12);
        assert!(lines
            .iter()
            .all(|l| l["answer"].as_str().unwrap().starts_with("I can't help")));
        let batches = redtrace_store::Store::open_read_only(&db)
            .unwrap()
            .batches(redtrace_store::RunId(1))
            .unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(
            (batches[0].2.as_str(), batches[0].3, batches[0].4),
            ("ended", 12, 12)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_is_refused_for_an_api_without_one_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (bench, _) = setup(dir.path());
    let db = dir.path().join("g.db");
    let output = redtrace(&[
        "run",
        "--batch",
        "--model",
        "openai-responses:o3@http://127.0.0.1:9/v1",
        "--bench",
        &bench,
        "--db",
        db.to_str().unwrap(),
    ])
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("this model's API has no batch API redtrace speaks"));
    assert!(!db.exists(), "nothing stored");
}
