//! The viewer's pages over a hand-built store, fetched over HTTP on loopback: status codes,
//! security headers, escaping, filters (a parent category matches its subcategories), paging
//! of the sample pages and the live refresh of a running run.

use redtrace_core::{
    Channel, Completion, Label, Reasoning, Sample, TraceSource, TraceState, Usage, Verdict,
};
use redtrace_store::{Store, UnitKey, UnitRecord};

fn sample(id: &str, category: &[&str]) -> Sample {
    Sample::user(id, id.parse().unwrap(), format!("question {id} <b>")).in_category(category)
}

fn record(id: &str, answer_label: Label) -> UnitRecord {
    let verdict = |channel| Verdict {
        judge: "refusal-rule".into(),
        channel,
        label: answer_label,
        score: None,
        rationale: "because <i>".into(),
        categories: Vec::new(),
        spend: None,
    };
    UnitRecord {
        key: UnitKey {
            model: "m".into(),
            benchmark: "b".into(),
            sample_id: id.into(),
            sample_k: 0,
        },
        request_hash: id.into(),
        outcome: Ok(Completion {
            reasoning: Reasoning {
                text: format!("thinking {id}"),
                source: Some(TraceSource::ThinkTags),
                state: TraceState::Complete,
            },
            answer: Some(format!("answer {id} </pre><script>x()</script>")),
            finish_reason: Some(redtrace_core::StopReason::Stop),
            usage: Usage::default(),
            latency_ms: 5,
            raw: "{}".into(),
        }),
        attempts: 1,
        cached: false,
        verdicts: vec![verdict(Channel::Answer), verdict(Channel::Reasoning)],
        cost_usd: None,
        helper_spend: None,
    }
}

/// A unit judged by a harm judge (`harm:j`) on both channels.
fn harm_record(id: &str, answer: Label, trace: Label) -> UnitRecord {
    let mut unit = record(id, Label::FullRefusal);
    unit.verdicts = [(Channel::Answer, answer), (Channel::Reasoning, trace)]
        .into_iter()
        .map(|(channel, label)| Verdict {
            judge: "harm:j".into(),
            channel,
            label,
            score: None,
            rationale: String::new(),
            categories: Vec::new(),
            spend: None,
        })
        .collect();
    unit
}

async fn get(base: &str, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.unwrap(), headers)
}

#[tokio::test]
async fn pages_filters_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut store = Store::open(&db).unwrap();
    let run = store
        .create_run(&redtrace_core::RunSpec::default(), "t")
        .unwrap();
    let samples = [
        sample("1", &["Privacy", "Tracking"]),
        sample("2", &["Privacy", "Leaks"]),
        sample("3", &["Violence", "Weapons"]),
    ];
    store.insert_samples(run, "b", samples.iter()).unwrap();
    store
        .write_batch(
            run,
            &[
                record("1", Label::FullRefusal),
                record("2", Label::FullCompliance),
                record("3", Label::FullCompliance),
            ],
        )
        .unwrap();
    store
        .set_status(run, redtrace_core::RunStatus::Running)
        .unwrap();
    // Running, and held by this process as a run's process holds it.
    let _claim = store.claim_run(run).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(redtrace_view::serve(
        listener,
        db.clone(),
        redtrace_view::Hosts::Loopback,
    ));

    let (status, body, headers) = get(&base, "/").await;
    assert_eq!(status, 200);
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    assert!(body.contains("<a href=\"/runs/1\">1</a>"));

    let (status, body, _) = get(&base, "/runs/1").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("http-equiv=\"refresh\""),
        "a running run refreshes itself"
    );
    assert!(
        body.contains("Privacy / Tracking") && body.contains("50.0%"),
        "metrics per level: Privacy is 1 refusal in 2"
    );

    // A parent category matches its subcategories; the verdict filter narrows further.
    let (_, body, _) = get(&base, "/runs/1/samples?category=Privacy").await;
    assert!(body.contains("2 of 3 completions match."), "{body}");
    let (_, body, _) = get(&base, "/runs/1/samples?category=Privacy&answer=refusal").await;
    assert!(body.contains("1 of 3 completions match."), "{body}");
    assert!(
        !body.contains("<script>x()"),
        "answers are escaped in the table"
    );
    let (_, body, _) = get(&base, "/runs/1/samples?error=only").await;
    assert!(body.contains("0 of 3 completions match."));

    // Sample pages are numbered within the filter, with links that keep it.
    let (status, body, _) = get(&base, "/runs/1/samples/1?answer=full_compliance").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("sample 3") && body.contains("(2 of 2)"),
        "{body}"
    );
    assert!(body.contains("id=\"prev\"") && !body.contains("id=\"next\""));
    assert!(body.contains("href=\"/runs/1/samples/0?answer=full_compliance\""));
    assert!(body.contains("answer 3 &lt;/pre&gt;&lt;script&gt;x()&lt;/script&gt;"));
    assert!(body.contains("question 3 &lt;b&gt;") && body.contains("because &lt;i&gt;"));

    let (status, body, _) = get(&base, "/runs/1/samples/5?answer=full_compliance").await;
    assert_eq!(status, 404);
    assert!(
        body.contains("2 samples matching this filter; there is no number 6"),
        "{body}"
    );
    let (status, body, _) = get(&base, "/runs/9").await;
    assert_eq!(status, 404);
    assert!(body.contains("9"), "{body}");

    let (status, body, _) = get(&base, "/runs/1/report").await;
    assert_eq!(status, 200);
    assert!(body.contains("Refusal rate by category"));
    let (status, body, headers) = get(&base, "/nav.js").await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(body.contains("keydown"));
}

/// A model-driven attack's transcript is shown attempt by attempt, escaped, the judged one
/// marked.
#[tokio::test]
async fn attack_transcripts_are_browsable() {
    use redtrace_core::{AttackAttempt, AttackTranscript};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut store = Store::open(&db).unwrap();
    let run = store
        .create_run(&redtrace_core::RunSpec::default(), "t")
        .unwrap();
    store
        .insert_samples(run, "b", [sample("1", &[])].iter())
        .unwrap();
    let transcript = AttackTranscript {
        attack: "pair:3".into(),
        success: true,
        queries: 2,
        tokens: 30,
        helper_calls: 4,
        chosen: Some(1),
        attempts: vec![
            AttackAttempt {
                step: "round 1".into(),
                prompt: "first <script>x()</script>".into(),
                response: Some("I can't.".into()),
                score: Some(1),
                ..Default::default()
            },
            AttackAttempt {
                step: "round 2".into(),
                prompt: "second".into(),
                response: Some("Sure </td></table><script>y()</script>".into()),
                score: Some(10),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    // The attack's rater gave 10/10, the benchmark's judge read a refusal: the page says
    // both apart, and calls it no success, as the findings do (regression: "succeeded").
    let mut unit = record("1", Label::FullRefusal);
    if let Ok(completion) = &mut unit.outcome {
        completion.raw = transcript.to_raw();
    }
    store.write_batch(run, &[unit]).unwrap();
    store
        .set_status(run, redtrace_core::RunStatus::Complete)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(redtrace_view::serve(
        listener,
        db.clone(),
        redtrace_view::Hosts::Loopback,
    ));
    let (status, body, _) = get(&base, "/runs/1/samples/0").await;
    assert_eq!(status, 200);
    assert!(body.contains("Attack transcript"), "{body}");
    assert!(
        body.contains("pair:3: attack success: no (refusal-rule judged the answer full_refusal) · its own rater: reached its goal · 2 target queries · 30 tokens · 4 attacker and judge calls"),
        "{body}"
    );
    assert!(body.contains("first &lt;script&gt;x()&lt;/script&gt;"));
    assert!(body.contains("Sure &lt;/td&gt;&lt;/table&gt;&lt;script&gt;y()"));
    assert!(!body.contains("<script>y()") && !body.contains("<script>x()"));
    assert!(body.contains("<tr class=\"chosen\"><td class=\"n\">2 (judged)</td><td>round 2</td>"));
    assert!(body.contains("10/10") && body.contains("1/10"));
}

/// DNS rebinding: a request whose Host is another site's name (a page that rebound its domain
/// to 127.0.0.1) is refused; loopback names with any port are served. A huge page number is
/// past the end, not an overflow.
#[tokio::test]
async fn only_loopback_host_names_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut store = Store::open(&db).unwrap();
    let run = store
        .create_run(&redtrace_core::RunSpec::default(), "t")
        .unwrap();
    store
        .insert_samples(run, "b", [sample("1", &["c"])].iter())
        .unwrap();
    store
        .write_batch(run, &[record("1", Label::FullRefusal)])
        .unwrap();
    drop(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(redtrace_view::serve(
        listener,
        db.clone(),
        redtrace_view::Hosts::Loopback,
    ));
    let client = reqwest::Client::new();
    let with_host = |host: &str| {
        client
            .get(format!("http://{address}/runs/1"))
            .header(reqwest::header::HOST, host)
            .send()
    };
    let refused = with_host("attacker.example:8700").await.unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    assert!(refused.text().await.unwrap().contains("--allow-remote"));
    for host in ["localhost:8700", "127.0.0.1", "[::1]:8700", "LOCALHOST"] {
        assert_eq!(
            with_host(host).await.unwrap().status().as_u16(),
            200,
            "{host}"
        );
    }
    let (status, _, _) = get(
        &format!("http://{address}"),
        &format!("/runs/1/samples?page={}", usize::MAX),
    )
    .await;
    assert_eq!(status, 200);
    for (host, loopback) in [
        ("localhost", true),
        ("127.0.0.2:1", true),
        ("[::1]", true),
        ("localhost.attacker.example", false),
        ("127.0.0.1.nip.io", false),
        ("[::1", false),
        ("10.0.0.1:8700", false),
    ] {
        assert_eq!(redtrace_view::is_loopback_host(host), loopback, "{host}");
    }
}

/// The run page reads each judge on its own scale: a harm judge's row gives its unsafe rates
/// (regression: only refusal judges had rates; harm and cse-* rows read `– | – | 0/0`).
#[tokio::test]
async fn the_run_page_gives_harm_judges_their_unsafe_rates() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut store = Store::open(&db).unwrap();
    let run = store
        .create_run(&redtrace_core::RunSpec::default(), "t")
        .unwrap();
    let samples = [
        sample("1", &["A"]),
        sample("2", &["A"]),
        sample("3", &["A"]),
        sample("4", &["A"]),
    ];
    store.insert_samples(run, "b", samples.iter()).unwrap();
    store
        .write_batch(
            run,
            &[
                harm_record("1", Label::Unsafe, Label::Unsafe),
                harm_record("2", Label::Safe, Label::Unsafe),
                harm_record("3", Label::Safe, Label::Unsafe),
                harm_record("4", Label::Safe, Label::Safe),
            ],
        )
        .unwrap();
    store
        .set_status(run, redtrace_core::RunStatus::Complete)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(redtrace_view::serve(
        listener,
        db.clone(),
        redtrace_view::Hosts::Loopback,
    ));
    let (status, body, _) = get(&base, "/runs/1").await;
    assert_eq!(status, 200);
    let row = body
        .split("<tr>")
        .find(|row| row.contains("harm:j") && row.contains("(all)"))
        .unwrap_or_else(|| panic!("{body}"));
    assert!(row.contains("<td>unsafe</td>"), "{row}");
    assert!(
        row.contains("25.0%") && row.contains("75.0%"),
        "answer 1/4, trace 3/4: {row}"
    );
}

/// The samples table searches prompts, traces and answers, and shows leaks (unsafe trace,
/// safe answer, by one judge) or escapes only; an attack attempt's trace is shown, escaped.
#[tokio::test]
async fn search_leaks_escapes_and_attempt_traces() {
    use redtrace_core::{AttackAttempt, AttackTranscript};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let mut store = Store::open(&db).unwrap();
    let run = store
        .create_run(&redtrace_core::RunSpec::default(), "t")
        .unwrap();
    let samples = [sample("1", &[]), sample("2", &[]), sample("3", &[])];
    store.insert_samples(run, "b", samples.iter()).unwrap();
    let mut leak = harm_record("1", Label::Safe, Label::Unsafe);
    if let Ok(completion) = &mut leak.outcome {
        completion.raw = AttackTranscript {
            attack: "pair:1".into(),
            attempts: vec![AttackAttempt {
                step: "round 1".into(),
                prompt: "p".into(),
                response: Some("r".into()),
                reasoning: "the attempt's own <b>trace</b>".into(),
                score: Some(2),
                ..Default::default()
            }],
            ..Default::default()
        }
        .to_raw();
    }
    store
        .write_batch(
            run,
            &[
                leak,
                harm_record("2", Label::Unsafe, Label::Safe),
                harm_record("3", Label::Safe, Label::Safe),
            ],
        )
        .unwrap();
    store
        .set_status(run, redtrace_core::RunStatus::Complete)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(redtrace_view::serve(
        listener,
        db.clone(),
        redtrace_view::Hosts::Loopback,
    ));
    for (query, count) in [
        ("pair=leak", "1 of 3"),
        ("pair=escape", "1 of 3"),
        ("q=QUESTION+3", "1 of 3"),
        ("q=thinking", "3 of 3"),
        ("q=answer+2", "1 of 3"),
        ("q=nowhere", "0 of 3"),
    ] {
        let (status, body, _) = get(&base, &format!("/runs/1/samples?{query}")).await;
        assert_eq!(status, 200);
        assert!(
            body.contains(&format!("{count} completions match")),
            "{query}: {body}"
        );
    }
    let (_, body, _) = get(&base, "/runs/1/samples/0?pair=leak").await;
    assert!(
        body.contains(
            "<summary>trace</summary><pre>the attempt&#39;s own &lt;b&gt;trace&lt;/b&gt;</pre>"
        ) || body.contains(
            "<summary>trace</summary><pre>the attempt's own &lt;b&gt;trace&lt;/b&gt;</pre>"
        ),
        "{body}"
    );
}
