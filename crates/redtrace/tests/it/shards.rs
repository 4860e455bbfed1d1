//! Shards through the binary: the shards of a run together are exactly the run (every unit in
//! one shard, none twice), `merge` lays them into one store that reports as the whole run
//! would, merging again adds nothing, and stores of different runs are refused with where they
//! differ.

use crate::util::{redtrace, text};
use redtrace_testkit::{FakeServer, Reply};
use serde_json::Value;
use std::collections::BTreeMap;

fn target() -> impl Fn(&redtrace_testkit::Seen) -> Reply + Send + Sync + 'static {
    |seen| {
        Reply::think_tags(
            "Thinking it over.",
            &if seen.prompt.contains('7') {
                "Sure, here it is.".to_owned()
            } else {
                format!("I can't help with {}.", seen.prompt)
            },
        )
    }
}

/// Each exported record by sample id: its answer and its verdicts' labels.
async fn records(db: &std::path::Path) -> BTreeMap<String, (String, Vec<String>)> {
    let output = redtrace(&["export", "--db", db.to_str().unwrap()]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|r| {
            let labels = r["verdicts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| format!("{}:{}:{}", v["judge"], v["channel"], v["label"]))
                .collect();
            (
                r["sample_id"].as_str().unwrap().to_owned(),
                (r["answer"].as_str().unwrap().to_owned(), labels),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_together_are_the_run_and_merge_into_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("q.csv");
    let mut rows = String::from("prompt\n");
    for i in 0..30 {
        rows.push_str(&format!("question {i}\n"));
    }
    std::fs::write(&csv, rows).unwrap();
    let bench = format!("file:{}", csv.display());
    let db = |name: &str| dir.path().join(name);

    let whole = FakeServer::start(target()).await;
    let output = redtrace(&[
        "run",
        "--quiet",
        "--model",
        &whole.model_ref("m"),
        "--bench",
        &bench,
        "--db",
        db("whole.db").to_str().unwrap(),
    ])
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));

    // Three shards, each in its own store, against one server: 30 requests in all, none twice.
    let sharded = FakeServer::start(target()).await;
    let mut per_shard = Vec::new();
    for k in 0..3 {
        let before = sharded.count();
        let output = redtrace(&[
            "run",
            "--quiet",
            "--model",
            &sharded.model_ref("m"),
            "--bench",
            &bench,
            "--shard",
            &format!("{k}/3"),
            "--db",
            db(&format!("s{k}.db")).to_str().unwrap(),
        ])
        .await;
        assert!(output.status.success(), "{}", text(&output.stderr));
        per_shard.push(sharded.count() - before);
    }
    assert_eq!(sharded.count(), 30, "{per_shard:?}");
    assert!(per_shard.iter().all(|&n| n > 0 && n < 30), "{per_shard:?}");
    let prompts: std::collections::HashSet<String> = sharded
        .requests()
        .iter()
        .map(|s| s.prompt.clone())
        .collect();
    assert_eq!(prompts.len(), 30, "no unit in two shards");

    let sources: Vec<String> = (0..3)
        .map(|k| db(&format!("s{k}.db")).display().to_string())
        .collect();
    let merged = db("merged.db");
    let mut args = vec!["merge"];
    args.extend(sources.iter().map(String::as_str));
    args.extend(["--into", merged.to_str().unwrap()]);
    let output = redtrace(&args).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("run 1, new"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(
        records(&merged).await,
        records(&db("whole.db")).await,
        "the merged shards are the run"
    );
    let runs = redtrace(&["runs", "--json", "--db", merged.to_str().unwrap()]).await;
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["status"], "complete");

    // Merging a shard again adds nothing.
    let output = redtrace(&["merge", &sources[0], "--into", merged.to_str().unwrap()]).await;
    assert!(
        text(&output.stdout).contains(": 0 completions merged"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(records(&merged).await.len(), 30);

    // A store of another run (other sampling) is refused, saying where they differ, and
    // nothing is written.
    let other = db("other.db");
    let output = redtrace(&[
        "run",
        "--quiet",
        "--model",
        &sharded.model_ref("m"),
        "--bench",
        &bench,
        "--shard",
        "0/3",
        "--max-tokens",
        "64",
        "--db",
        other.to_str().unwrap(),
    ])
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let fresh = db("fresh.db");
    let output = redtrace(&[
        "merge",
        &sources[1],
        other.to_str().unwrap(),
        "--into",
        fresh.to_str().unwrap(),
    ])
    .await;
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("hold different runs") && stderr.contains("max_tokens"),
        "{stderr}"
    );
    assert!(!fresh.exists(), "nothing written");
    let bad = redtrace(&[
        "run",
        "--model",
        &sharded.model_ref("m"),
        "--bench",
        &bench,
        "--shard",
        "3/3",
    ])
    .await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("0 <= INDEX < COUNT"),
        "{}",
        text(&bad.stderr)
    );
}
