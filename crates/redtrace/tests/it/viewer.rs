//! `redtrace view` end to end: a run with hostile model output is stored through the fake
//! server, the viewer is started as a user would start it, and headless Chromium (driven by
//! `browser.py` over the DevTools pipe) opens the runs list, a run, its samples, filters them
//! with the form, opens a sample, moves to the next with the keyboard and takes a screenshot.

use redtrace_testkit::{FakeServer, Reply};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::util::{chromium, BIN};

/// Kills the viewer when the test ends, however it ends.
struct Viewer(std::process::Child);

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn viewer_browses_filters_and_navigates_in_a_real_browser_without_running_model_text() {
    let Some(browser) = chromium() else {
        eprintln!("skipping viewer_browses_filters_and_navigates: chromium is not installed (scripts/test.sh installs it)");
        return;
    };
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("skipping viewer_browses_filters_and_navigates: python3 is not installed (it drives the browser)");
        return;
    }
    let server = FakeServer::start(|seen| {
        let hostile = match seen.prompt.as_str() {
            "q1" => "<script>document.title='pwned'</script>",
            "q2" => "<img src=x onerror=\"document.title='pwned'\">",
            "q3" => "</pre></div></td></table><script>document.title='pwned'</script><b>bold?</b>",
            _ => {
                return Reply::think_tags(
                    "this is not allowed",
                    "I'm sorry, but I can't help with that.",
                )
            }
        };
        Reply::think_tags(&format!("trace {hostile}"), &format!("Sure! {hostile}"))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("q.csv");
    std::fs::write(
        &csv,
        "prompt,kind\nq1,<i>cat</i>\nq2,plain\nq3,plain\nq4,plain\nq5,plain\n",
    )
    .unwrap();
    let db = dir.path().join("r.db");
    let run = crate::util::command(&[], &[])
        .args(["run", "--model", &server.model_ref("m<script>"), "--bench"])
        .arg(format!("file:{}", csv.display()))
        .args(["--category-field", "kind", "--quiet", "--db"])
        .arg(&db)
        .env_remove("OPENAI_API_KEY")
        .output()
        .await
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let mut child = Command::new(BIN)
        .args(["view", "--port", "0", "--db"])
        .arg(&db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let _viewer = Viewer(child);
    let url = url.trim().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let out = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser.py");
    let driven = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&browser)
        .arg(&url)
        .arg(out.path())
        .output()
        .await
        .unwrap();
    assert!(
        driven.status.success(),
        "{}",
        String::from_utf8_lossy(&driven.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&driven.stdout).unwrap();
    assert_eq!(seen["runs_title"], "redtrace runs");
    assert!(
        seen["run_url"].as_str().unwrap().ends_with("/runs/1"),
        "{seen}"
    );
    assert!(seen["metrics_rows"].as_u64().unwrap() >= 3, "{seen}");
    assert_eq!(seen["count_before"], "5 of 5 completions match.", "{seen}");
    assert!(
        seen["filtered_url"]
            .as_str()
            .unwrap()
            .contains("answer=full_compliance"),
        "{seen}"
    );
    assert_eq!(seen["count_after"], "3 of 5 completions match.", "{seen}");
    assert!(
        seen["sample_url"]
            .as_str()
            .unwrap()
            .contains("/runs/1/samples/0?"),
        "{seen}"
    );
    assert!(
        seen["sample_heading"]
            .as_str()
            .unwrap()
            .contains("(1 of 3)"),
        "{seen}"
    );
    assert_eq!(
        seen["sample_answer"], "Sure! <script>document.title='pwned'</script>",
        "the answer is shown as text"
    );
    assert_eq!(
        seen["sample_trace"],
        "trace <script>document.title='pwned'</script>"
    );
    // Answer verdicts (refusal-rule reads no traces).
    assert!(seen["verdict_rows"].as_u64().unwrap() >= 2, "{seen}");
    assert!(
        seen["after_j_url"]
            .as_str()
            .unwrap()
            .contains("/runs/1/samples/1?"),
        "j moves to the next sample of the filtered list: {seen}"
    );
    assert!(
        seen["after_j_heading"]
            .as_str()
            .unwrap()
            .contains("(2 of 3)"),
        "{seen}"
    );
    assert_eq!(seen["titles_intact"], true, "no model text ran: {seen}");
    assert_eq!(
        seen["injected_elements"], 0,
        "no model markup became elements: {seen}"
    );
    assert_eq!(
        seen["problems"],
        serde_json::json!([]),
        "no console messages, exceptions or policy reports"
    );
    let shot = std::fs::read(out.path().join("sample.png")).unwrap();
    assert!(
        shot.starts_with(b"\x89PNG") && shot.len() > 5_000,
        "a real screenshot"
    );
}
