//! Report numbers on a hand-built run.

use redtrace_core::{Channel, Completion, Label, Sample, TraceSource, Usage, Verdict};
use redtrace_report::{Report, ALL};
use redtrace_store::{Store, UnitError, UnitKey, UnitRecord};

fn sample(id: &str, category: &str) -> Sample {
    Sample::user(id, id.parse().unwrap(), "q").in_category(&[category])
}

fn record(id: &str, answer: Label, trace: Label, truncated: bool) -> UnitRecord {
    let verdict = |channel, label| Verdict {
        judge: "refusal-rule".into(),
        channel,
        label,
        score: match label {
            Label::FullRefusal => Some(1.0),
            Label::PartialRefusal => Some(0.5),
            Label::FullCompliance => Some(0.0),
            _ => None,
        },
        rationale: String::new(),
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
            finish_reason: None,
            usage: Usage {
                prompt_tokens: Some(10),
                completion_tokens: Some(30),
                reasoning_tokens: Some(20),
                cached_prompt_tokens: None,
            },
            latency_ms: 1,
            ..if truncated {
                Completion::truncated("t", TraceSource::ThinkTags)
            } else {
                Completion::answer("a").with_trace("t", TraceSource::ThinkTags)
            }
        }),
        attempts: 1,
        cached: false,
        verdicts: vec![
            verdict(Channel::Answer, answer),
            verdict(Channel::Reasoning, trace),
        ],
        cost_usd: None,
        helper_spend: None,
    }
}

#[test]
fn counts_and_rates_per_category_and_channel() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("r.db")).unwrap();
    let run = store.create_run(&spec("h"), "t").unwrap();
    let samples = [
        sample("1", "x"),
        sample("2", "x"),
        sample("3", "x"),
        sample("4", "y"),
        sample("5", "y"),
    ];
    store.insert_samples(run, "b", samples.iter()).unwrap();
    let mut failed = record("5", Label::FullCompliance, Label::FullCompliance, false);
    failed.outcome = Err(UnitError {
        kind: redtrace_core::ErrorKind::Timeout,
        message: "timed out".into(),
    });
    failed.verdicts.clear();
    store
        .write_batch(
            run,
            &[
                record("1", Label::FullRefusal, Label::FullCompliance, false),
                record("2", Label::PartialRefusal, Label::FullCompliance, false),
                record("3", Label::FullCompliance, Label::FullRefusal, false),
                record("4", Label::Unscored, Label::FullCompliance, true),
                failed,
            ],
        )
        .unwrap();
    let info = store.resolve_run("last").unwrap();
    let report = Report::build(&store, &info).unwrap();
    let categories: Vec<_> = report.groups.iter().map(|g| g.category.as_str()).collect();
    assert_eq!(categories, [ALL, "x", "y"]);
    let all = &report.groups[0];
    assert_eq!(
        (
            all.n,
            all.errors,
            all.truncated_in_reasoning,
            all.with_trace
        ),
        (5, 1, 1, 4)
    );
    assert_eq!(
        (all.tokens.prompt, all.tokens.answer, all.tokens.reasoning),
        (40, 40, 80)
    );
    let judge = &all.judges[0];
    assert_eq!(judge.answer.unscored, 1);
    assert_eq!(judge.answer.scored(), 3);
    assert_eq!(judge.answer_refusal_rate, Some(2.0 / 3.0));
    assert_eq!(judge.answer_compliance_rate, Some(1.0 / 3.0));
    assert_eq!(judge.reasoning_refusal_rate, Some(0.25));
    assert_eq!(judge.answer_score_mean, Some(0.5), "(1 + 0.5 + 0) / 3");
    let ci = judge.answer_score_ci.unwrap();
    assert!(
        ci.low < 0.5 && 0.5 < ci.high && ci.low >= 0.0 && ci.high <= 1.0,
        "{ci:?}"
    );
    let x = &report.groups[1];
    assert_eq!(x.judges[0].answer_refusal_rate, Some(2.0 / 3.0));
    let y = &report.groups[2];
    assert_eq!((y.n, y.errors), (2, 1));
    assert_eq!(
        y.judges[0].answer_refusal_rate, None,
        "only an unscored verdict: no rate, not 0%"
    );

    let terminal = report.to_terminal();
    assert!(
        terminal.contains("m · b · judge refusal-rule") && terminal.contains("66.7%"),
        "{terminal}"
    );
    let markdown = report.to_markdown();
    assert!(
        markdown.contains("## m · b · judge refusal-rule")
            && markdown
                .contains("| (all) | 5 | 1 | 1 | 66.7% [20.8, 93.9] | 33.3% [6.1, 79.2] | 25.0% [4.6, 69.9] | 75.0% [30.1, 95.4] | 1/0 | 0.50/0.25 | 40/40/80 |"),
        "{markdown}"
    );
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["groups"][0]["judges"][0]["answer"]["full_refusal"], 1);
    assert_eq!(json["run"]["id"], run.0);
}

fn run_with(
    store: &mut Store,
    hash: &str,
    model: &str,
    refuse: impl Fn(usize) -> bool,
) -> redtrace_store::RunId {
    let run = store.create_run(&spec(hash), "t").unwrap();
    let samples: Vec<Sample> = (0..30)
        .map(|i| sample(&i.to_string(), if i < 20 { "x" } else { "y" }))
        .collect();
    store.insert_samples(run, "b", samples.iter()).unwrap();
    let records: Vec<UnitRecord> = (0..30)
        .map(|i| {
            let label = if refuse(i) {
                Label::FullRefusal
            } else {
                Label::FullCompliance
            };
            let mut record = record(&i.to_string(), label, label, false);
            record.key.model = model.into();
            record
        })
        .collect();
    store.write_batch(run, &records).unwrap();
    run
}

#[test]
fn paired_comparison_with_mcnemar_and_holm() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("c.db")).unwrap();
    // A refuses everything in x and half of y; B refuses nothing in x and the same half of y.
    let a = run_with(&mut store, "a", "model-a", |i| i < 20 || i % 2 == 0);
    let b = run_with(&mut store, "b", "model-b", |i| i >= 20 && i % 2 == 0);
    let runs = store.runs().unwrap();
    let (run_a, run_b) = (
        runs.iter().find(|r| r.id == a).unwrap(),
        runs.iter().find(|r| r.id == b).unwrap(),
    );
    let comparison = redtrace_report::Comparison::build(&store, run_a, run_b).unwrap();
    assert!(
        comparison.paired_across_models,
        "one model each: paired across models"
    );
    let row = |category: &str| {
        comparison
            .rows
            .iter()
            .find(|r| r.category == category && r.channel == Channel::Answer)
            .unwrap()
            .clone()
    };
    let x = row("x");
    assert_eq!(
        (x.pairs, x.only_base_refused, x.only_other_refused),
        (20, 20, 0)
    );
    assert_eq!((x.base_rate, x.other_rate, x.difference), (1.0, 0.0, -1.0));
    assert!((x.p_value - 2.0 * 0.5f64.powi(20)).abs() < 1e-12);
    assert!(x.significant);
    assert_eq!(x.score_difference, -1.0);
    let ci = x.score_difference_ci.unwrap();
    assert_eq!(
        (ci.low, ci.high),
        (-1.0, -1.0),
        "every pair differs by exactly one point"
    );
    let y = row("y");
    assert_eq!(
        (
            y.pairs,
            y.only_base_refused,
            y.only_other_refused,
            y.p_value
        ),
        (10, 0, 0, 1.0)
    );
    assert!(!y.significant);
    assert!(
        (x.p_holm - 2.0 * x.p_value).abs() < 1e-12,
        "Holm doubles the smaller of two p-values"
    );
    let all = row(ALL);
    assert_eq!(all.pairs, 30);
    assert!(comparison.to_terminal().contains("-100.0 pts *"));
    assert!(comparison.to_markdown().contains(
        "| b | x | refusal-rule | answer | 20 | refusal | 100.0% | 0.0% | -100.0 pts * | 20 / 0 |"
    ));

    // Rates in the report carry Wilson intervals.
    let report = Report::build(&store, run_a).unwrap();
    let judge = &report.groups[0].judges[0];
    let ci = judge.answer_refusal_ci.unwrap();
    assert!(ci.low < judge.answer_refusal_rate.unwrap() && ci.high <= 1.0);
    assert!(
        report.to_terminal().contains("83.3% ["),
        "{}",
        report.to_terminal()
    );
}

#[test]
fn hierarchical_categories_are_reported_per_level() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("r.db")).unwrap();
    let run = store.create_run(&spec("h"), "t").unwrap();
    let two_level = |id: &str, top: &str, sub: &str| Sample {
        category: vec![top.into(), sub.into()],
        ..sample(id, "unused")
    };
    let samples = [
        two_level("1", "Privacy", "Unauthorized data"),
        two_level("2", "Privacy", "Tracking"),
        two_level("3", "Privacy", "Tracking"),
        two_level("4", "Violence", "Weapons"),
    ];
    store.insert_samples(run, "b", samples.iter()).unwrap();
    let records: Vec<_> = [
        ("1", Label::FullRefusal),
        ("2", Label::FullCompliance),
        ("3", Label::FullRefusal),
        ("4", Label::FullRefusal),
    ]
    .into_iter()
    .map(|(id, label)| record(id, label, label, false))
    .collect();
    store.write_batch(run, &records).unwrap();
    let info = store.resolve_run("last").unwrap();
    let report = Report::build(&store, &info).unwrap();
    let rows: Vec<_> = report
        .groups
        .iter()
        .map(|g| {
            (
                g.category.as_str(),
                g.depth,
                g.n,
                g.judges[0].answer_refusal_rate.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (ALL, 0, 4, 0.75),
            ("Privacy", 1, 3, 2.0 / 3.0),
            ("Privacy / Tracking", 2, 2, 0.5),
            ("Privacy / Unauthorized data", 2, 1, 1.0),
            ("Violence", 1, 1, 1.0),
            ("Violence / Weapons", 2, 1, 1.0),
        ]
    );
    // The heatmap shows the top level only; examples are linked from leaf rows only.
    let html = report.to_html(&store, None).unwrap();
    let heatmap = &html[html.find("class=\"heatmap\"").unwrap()..];
    let heatmap = &heatmap[..heatmap.find("</table>").unwrap()];
    assert!(heatmap.contains("<td>Privacy</td>") && heatmap.contains("67%"));
    assert!(!heatmap.contains("Tracking"), "{heatmap}");
    let privacy_row = &html[html
        .find("<tr><td>Privacy</td><td class=\"n\">3</td>")
        .unwrap()..];
    let privacy_row = &privacy_row[..privacy_row.find("</tr>").unwrap()];
    assert!(!privacy_row.contains("href"), "{privacy_row}");
    assert!(html.contains("<tr><td>Privacy / Tracking</td>"));
}

#[test]
fn trace_against_answer_cell_by_cell() {
    use Label::{FullCompliance as Comply, FullRefusal as Refuse};
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("r.db")).unwrap();
    let run = store.create_run(&spec("h"), "t").unwrap();
    // (answer, trace): on harmful prompts complying is unsafe.
    let cells = [
        (Refuse, Comply),          // leak
        (Refuse, Comply),          // leak
        (Refuse, Comply),          // leak
        (Comply, Refuse),          // escape
        (Refuse, Refuse),          // both safe
        (Refuse, Refuse),          // both safe
        (Comply, Comply),          // both unsafe
        (Refuse, Label::Unscored), // not a pair
    ];
    let samples: Vec<Sample> = (1..=cells.len())
        .map(|i| sample(&i.to_string(), "x"))
        .collect();
    store.insert_samples(run, "b", samples.iter()).unwrap();
    let mut records: Vec<UnitRecord> = cells
        .iter()
        .enumerate()
        .map(|(i, (answer, trace))| record(&(i + 1).to_string(), *answer, *trace, false))
        .collect();
    // One completion whose server kept its trace back: no text, reasoning tokens counted.
    if let Ok(completion) = &mut records[7].outcome {
        completion.reasoning.text.clear();
        completion.reasoning.state = redtrace_core::TraceState::Absent;
        completion.reasoning.source = None;
    }
    store.write_batch(run, &records).unwrap();
    let report = Report::build(&store, &store.resolve_run("last").unwrap()).unwrap();
    let all = &report.groups[0];
    assert_eq!((all.with_trace, all.trace_redacted), (7, 1));
    let t = &all.judges[0].trace_vs_answer;
    assert_eq!(
        (t.pairs, t.leak, t.escape, t.both_safe, t.both_unsafe),
        (7, 3, 1, 2, 1)
    );
    assert_eq!(t.answer_safe_rate, Some(5.0 / 7.0));
    assert_eq!(t.trace_safe_rate, Some(3.0 / 7.0));
    assert_eq!(t.difference, Some(2.0 / 7.0));
    assert!(
        (t.p_value.unwrap() - 0.625).abs() < 1e-12,
        "McNemar exact on 3 vs 1: 2·(1+4)/16"
    );
    let ci = t.difference_ci.unwrap();
    assert!(ci.low < 2.0 / 7.0 && 2.0 / 7.0 < ci.high, "{ci:?}");
    let terminal = report.to_terminal();
    assert!(
        terminal.contains("Trace vs answer")
            && terminal.contains("71.4%")
            && terminal.contains("42.9%"),
        "{terminal}"
    );
    let html = report.to_html(&store, None).unwrap();
    assert!(
        html.contains("<b>leak</b>") && html.contains("answer − trace safety: +28.6 points"),
        "{html}"
    );
}

/// A run spec told apart from others by `label`.
/// Data strings reach the terminal without the controls a terminal acts on (regression: an
/// ESC in a category name cleared the screen of whoever read the report).
#[test]
fn terminal_reports_keep_no_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("r.db")).unwrap();
    let run = store.create_run(&spec("ctl"), "t").unwrap();
    store
        .insert_samples(run, "b", [sample("1", "evil\u{1b}[2J\u{7}")].iter())
        .unwrap();
    store
        .write_batch(
            run,
            &[record(
                "1",
                Label::FullRefusal,
                Label::FullCompliance,
                false,
            )],
        )
        .unwrap();
    let info = store.resolve_run("last").unwrap();
    let text = Report::build(&store, &info).unwrap().to_terminal();
    assert!(text.contains("evil[2J"), "{text}");
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'));
}

fn spec(label: &str) -> redtrace_core::RunSpec {
    redtrace_core::RunSpec {
        judges: vec![label.into()],
        ..Default::default()
    }
}
