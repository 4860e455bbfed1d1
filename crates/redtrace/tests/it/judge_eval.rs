//! `redtrace judge-eval` on the real human-labelled sets: the rule judge's agreement figures,
//! an LLM judge against a scripted judge model, the ensemble, the reference judges stored in
//! the JailbreakBench file, and the errors.

use redtrace_testkit::{FakeServer, Reply};
use serde_json::Value;

async fn judge_eval(args: &[&str], db: &std::path::Path) -> std::process::Output {
    crate::util::command(&["judge-eval"], &[])
        .args(args)
        .arg("--db")
        .arg(db)
        // Only the data directories a test names: not the user's default one.
        .env("XDG_CACHE_HOME", db.with_extension("no-cache"))
        .output()
        .await
        .unwrap()
}

fn result<'a>(report: &'a Value, judge: &str) -> &'a Value {
    report["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["judge"].as_str().unwrap().starts_with(judge))
        .unwrap_or_else(|| panic!("no {judge} in {report}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn agreement_with_people_on_the_real_sets() {
    let Some(data) = redtrace_testkit::shared_data_or_skip("judge-eval") else {
        return;
    };
    let data = data.to_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cache.db");

    let output = judge_eval(
        &[
            "--judge",
            "refusal-rule",
            "--labels",
            "xstest-completions",
            "--data-dir",
            &data,
            "--json",
        ],
        &db,
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let rule = result(&report, "refusal-rule");
    assert_eq!(report["items"], 2250);
    assert_eq!(
        rule["overall"]["confusion"],
        serde_json::json!([[1041, 44, 6], [50, 931, 2], [35, 130, 11]])
    );
    assert_eq!(
        rule["overall"]["accuracy"].as_f64().unwrap(),
        1983.0 / 2250.0
    );
    assert_eq!(
        rule["per_source"].as_object().unwrap().len(),
        5,
        "one per model"
    );

    let output = judge_eval(
        &[
            "--judge",
            "refusal-rule",
            "--labels",
            "human-labelled:xstest_response_refusal",
            "--data-dir",
            &data,
        ],
        &db,
    )
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("refusal-rule") && text.contains("90.0%"),
        "{text}"
    );

    // An LLM harm judge that calls everything with "Sure" unsafe, with the rule judge and
    // their majority, on the first 40 JailbreakBench pairs; the file's own judges beside.
    let server = FakeServer::start(|seen| {
        let marker = seen
            .prompt
            .split("<<TEXT-")
            .nth(1)
            .unwrap()
            .split(">>")
            .next()
            .unwrap();
        let fence = format!("<<TEXT-{marker}>>");
        let unsafe_ = seen.prompt.split(&fence).nth(1).unwrap().contains("Sure");
        Reply::text(if unsafe_ {
            "VERDICT: unsafe"
        } else {
            "VERDICT: safe"
        })
    })
    .await;
    let output = judge_eval(
        &[
            "--judge",
            "harm,refusal-rule",
            "--ensemble",
            "any-unsafe",
            "--judge-model",
            &server.model_ref("judge"),
            "--labels",
            "jbb-judges",
            "--data-dir",
            &data,
            "--limit",
            "40",
            "--json",
        ],
        &db,
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let set =
        redtrace_datasets::labels::load("jbb-judges", Some(std::path::Path::new(&data))).unwrap();
    let items = &set.items[..40];
    let rule = redtrace_judges::RefusalRuleJudge::new();
    let (mut harm_right, mut any_right, mut llama3_right) = (0, 0, 0);
    for item in items {
        let harm = item.text.contains("Sure");
        let rule_unsafe = rule.classify(&item.text).0 == redtrace_core::Label::FullCompliance;
        let human = item.label == "unsafe";
        harm_right += usize::from(harm == human);
        any_right += usize::from((harm || rule_unsafe) == human);
        llama3_right += usize::from(item.references[0] == item.label);
    }
    let accuracy = |name: &str| {
        result(&report, name)["overall"]["accuracy"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(accuracy("harm:judge"), harm_right as f64 / 40.0);
    assert_eq!(
        accuracy("ensemble-any-unsafe(harm:judge+refusal-rule)"),
        any_right as f64 / 40.0
    );
    assert_eq!(accuracy("Llama-3-70B"), llama3_right as f64 / 40.0);
    assert_eq!(result(&report, "Llama-3-70B")["reference"], true);
    let calls = server.count();
    assert_eq!(calls, 40, "one judge call per item");
    // Judge replies are cached in the store: the same evaluation asks nothing again.
    let again = judge_eval(
        &[
            "--judge",
            "harm",
            "--judge-model",
            &server.model_ref("judge"),
            "--labels",
            "jbb-judges",
            "--data-dir",
            &data,
            "--limit",
            "40",
        ],
        &db,
    )
    .await;
    assert!(again.status.success());
    assert_eq!(server.count(), calls);

    for (args, message) in [
        (
            vec![
                "--judge",
                "harm",
                "--judge-model",
                "j@http://127.0.0.1:9/v1",
                "--labels",
                "human-labelled:xstest_response_refusal",
                "--data-dir",
                &data,
            ],
            "cannot be measured on a Refusal2 set",
        ),
        (
            vec![
                "--judge",
                "refusal-rule",
                "--labels",
                "nope",
                "--data-dir",
                &data,
            ],
            "unknown label set 'nope'",
        ),
        (
            vec!["--judge", "refusal-rule", "--labels", "jbb-judges"],
            "needs a data directory",
        ),
        (
            vec![
                "--judge",
                "refusal-rule",
                "--ensemble",
                "majority",
                "--labels",
                "jbb-judges",
                "--data-dir",
                &data,
            ],
            "two judges or more",
        ),
    ] {
        let output = judge_eval(&args, &db).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
