//! The viewer's pages as HTML strings. Everything that comes from the store (model output,
//! prompts, names, error messages) goes through [`escape`].

use crate::filter::{Choices, Filter, LABEL_CHOICES};
use redtrace_core::{Channel, Role, TraceState};
use redtrace_report::{escape, Interval, Report, ALL, SAFE_PROMPTS, UNSAFE_PROMPTS};
use redtrace_store::{ResultRow, RunInfo};
use std::fmt::Write;

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1400px;color:#222;padding:0 1em}\
h1{font-size:1.4em}h2{margin-top:1.5em;border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.ci{color:#777;font-size:.85em}\
pre{white-space:pre-wrap;word-break:break-word;background:#f8f8f8;padding:.5em;margin:.2em 0;max-height:40em;overflow:auto}\
.cols{display:grid;grid-template-columns:1fr 1fr 1fr;gap:1em}.cols>div{min-width:0}\
.trace{border-left:4px solid #c9a227}.answer{border-left:4px solid #2a7ab0}.prompt{border-left:4px solid #888}\
.meta{color:#555}.err{color:#a00}nav a{margin-right:1em}form label{margin-right:.8em}\
.label-full_refusal,.label-partial_refusal,.label-safe,.label-safety_held{color:#1d6b2a}\
.label-full_compliance,.label-unsafe,.label-safety_overridden,.label-safety_misled{color:#a04000}.label-unscored{color:#777}tr.chosen{background:#fff6d6}";

/// A whole page around `body`.
pub fn document(title: &str, body: &str) -> String {
    document_with(title, body, "")
}

fn document_with(title: &str, body: &str, head: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{head}\
         <title>{}</title><style>{STYLE}</style><script src=\"/nav.js\" defer></script></head>\
         <body><nav><a href=\"/\" id=\"home\">runs</a></nav>{body}</body></html>",
        escape(title)
    )
}

/// The body of an error page.
pub fn error(message: &str) -> String {
    format!("<h1>Not shown</h1><p class=\"err\">{}</p>", escape(message))
}

/// The list of runs.
pub fn runs(runs: &[(RunInfo, Vec<String>)]) -> String {
    let mut body = String::from("<h1>redtrace runs</h1>");
    if runs.is_empty() {
        body.push_str(
            "<p>No runs in this store yet: start one with <code>redtrace run</code>.</p>",
        );
    } else {
        body.push_str(
            "<table id=\"runs\"><tr><th>run</th><th>status</th><th>created</th><th>updated</th>\
             <th>models</th><th>completions</th><th>errors</th><th>tool</th></tr>",
        );
        for (info, models) in runs {
            let _ = write!(
                body,
                "<tr><td><a href=\"/runs/{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                escape(info.status.as_str()),
                escape(&info.created_at),
                escape(&info.updated_at),
                escape(&models.join(", ")),
                info.completions,
                info.errors,
                escape(&info.tool_version),
                id = info.id,
            );
        }
        body.push_str("</table>");
    }
    document("redtrace runs", &body)
}

fn percent(rate: Option<f64>, ci: Option<Interval>) -> String {
    match (rate, ci) {
        (Some(rate), Some(ci)) => format!(
            "{:.1}% <span class=\"ci\">[{:.1}, {:.1}]</span>",
            rate * 100.0,
            ci.low * 100.0,
            ci.high * 100.0
        ),
        _ => "–".into(),
    }
}

/// A run's metrics, with links into its samples.
pub fn run(info: &RunInfo, report: &Report) -> String {
    let id = info.id;
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Run {id} <span class=\"meta\">({})</span></h1>\
         <p>{} completions, {} errors · created {} · updated {} · redtrace {}</p>\
         <p><a href=\"/runs/{id}/samples\" id=\"samples\">all samples</a> · \
         <a href=\"/runs/{id}/samples?error=only\">errors only</a> · \
         <a href=\"/runs/{id}/report\">full report</a></p>",
        escape(info.status.as_str()),
        info.completions,
        info.errors,
        escape(&info.created_at),
        escape(&info.updated_at),
        escape(&info.tool_version),
    );
    let _ = write!(
        body,
        "<details><summary>spec</summary><pre>{}</pre></details>",
        escape(&serde_json::to_string_pretty(&info.spec).unwrap_or_default())
    );
    body.push_str(
        "<h2>Metrics</h2><table id=\"metrics\"><tr><th>model</th><th>benchmark</th><th>category</th><th>n</th>\
         <th>errors</th><th>judge</th><th>rate of</th><th>answer</th><th>trace</th><th>unscored a/t</th></tr>",
    );
    for group in &report.groups {
        let mut filter = Filter {
            model: Some(group.model.clone()),
            benchmark: Some(group.benchmark.clone()),
            ..Filter::default()
        };
        match group.category.as_str() {
            ALL => {}
            SAFE_PROMPTS => filter.label = Some("safe".into()),
            UNSAFE_PROMPTS => filter.label = Some("unsafe".into()),
            category => filter.category = Some(category.to_owned()),
        }
        let indent = "&nbsp;&nbsp;".repeat(group.depth.saturating_sub(1));
        let category = format!(
            "{indent}<a href=\"/runs/{id}/samples?{}\">{}</a>",
            escape(&filter.query()),
            escape(&group.category)
        );
        let judges: Vec<Option<&redtrace_report::JudgeStats>> = if group.judges.is_empty() {
            vec![None]
        } else {
            group.judges.iter().map(Some).collect()
        };
        for stats in judges {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{category}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
                escape(&group.model),
                escape(&group.benchmark),
                group.n,
                group.errors
            );
            match stats {
                Some(stats) => {
                    // Each judge on its own scale: refusal judges give refusal rates, harm
                    // judges unsafe rates (the attack success rate on harmful prompts).
                    let (answer, answer_ci) = stats.rate(redtrace_core::Channel::Answer);
                    let (trace, trace_ci) = stats.rate(redtrace_core::Channel::Reasoning);
                    let _ = write!(
                        body,
                        "<td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}/{}</td></tr>",
                        escape(&stats.judge),
                        match stats.measure {
                            redtrace_core::Measure::Refusal => "refusal",
                            redtrace_core::Measure::Unsafe => "unsafe",
                        },
                        percent(answer, answer_ci),
                        percent(trace, trace_ci),
                        stats.answer.unscored,
                        stats.reasoning.unscored
                    );
                }
                None => body.push_str("<td>–</td><td>–</td><td>–</td><td>–</td><td>–</td></tr>"),
            }
        }
    }
    body.push_str("</table>");
    // A run being written refreshes itself, so it can be watched.
    let head = if info.status == redtrace_core::RunStatus::Running {
        "<meta http-equiv=\"refresh\" content=\"5\">"
    } else {
        ""
    };
    document_with(&format!("run {id}"), &body, head)
}

fn select(name: &str, current: Option<&str>, options: impl Iterator<Item = String>) -> String {
    let mut html = format!("<label>{name} <select name=\"{name}\"><option value=\"\">any</option>");
    for option in options {
        let selected = if current == Some(option.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            html,
            "<option value=\"{}\"{selected}>{}</option>",
            escape(&option),
            escape(&option)
        );
    }
    html.push_str("</select></label>");
    html
}

fn label_cell(row: &ResultRow, channel: Channel) -> String {
    let mut cell = String::new();
    for verdict in row.verdicts.iter().filter(|v| v.channel == channel) {
        let _ = write!(
            cell,
            "<span class=\"label-{}\" title=\"{}\">{}</span><br>",
            verdict.label.as_str(),
            escape(&verdict.judge),
            verdict.label.as_str()
        );
    }
    cell
}

fn snippet(text: &str, chars: usize) -> String {
    let mut out: String = text.chars().take(chars).collect();
    if text.chars().nth(chars).is_some() {
        out.push('…');
    }
    out
}

/// The filterable table of a run's samples.
#[allow(clippy::too_many_arguments)]
pub fn samples(
    info: &RunInfo,
    filter: &Filter,
    choices: &Choices,
    rows: &[(usize, ResultRow)],
    matching: usize,
    total: usize,
    page: usize,
    page_rows: usize,
) -> String {
    let id = info.id;
    let mut body = format!(
        "<h1><a href=\"/runs/{id}\">Run {id}</a> · samples</h1>\
         <form method=\"get\" action=\"/runs/{id}/samples\" id=\"filter\">"
    );
    body.push_str(&select(
        "model",
        filter.model.as_deref(),
        choices.models.iter().cloned(),
    ));
    body.push_str(&select(
        "benchmark",
        filter.benchmark.as_deref(),
        choices.benchmarks.iter().cloned(),
    ));
    body.push_str(&select(
        "category",
        filter.category.as_deref(),
        choices.categories.iter().cloned(),
    ));
    body.push_str(&select(
        "label",
        filter.label.as_deref(),
        ["safe", "unsafe"].iter().map(|s| (*s).to_owned()),
    ));
    body.push_str(&select(
        "judge",
        filter.judge.as_deref(),
        choices.judges.iter().cloned(),
    ));
    body.push_str(&select(
        "answer",
        filter.answer.as_deref(),
        LABEL_CHOICES.iter().map(|s| (*s).to_owned()),
    ));
    body.push_str(&select(
        "trace",
        filter.trace.as_deref(),
        LABEL_CHOICES.iter().map(|s| (*s).to_owned()),
    ));
    body.push_str(&select(
        "error",
        filter.error.as_deref(),
        ["only", "none"].iter().map(|s| (*s).to_owned()),
    ));
    body.push_str(&select(
        "pair",
        filter.pair.as_deref(),
        ["leak", "escape"].iter().map(|s| (*s).to_owned()),
    ));
    body.push_str(&select(
        "provenance",
        filter.provenance.as_deref(),
        crate::filter::PROVENANCE_CHOICES
            .iter()
            .map(|s| (*s).to_owned()),
    ));
    let _ = write!(
        body,
        "<label>search <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"prompt, trace or answer\"></label>",
        escape(filter.q.as_deref().unwrap_or(""))
    );
    let _ = write!(
        body,
        "<button type=\"submit\" id=\"apply\">filter</button> <a href=\"/runs/{id}/samples\">clear</a></form>\
         <p id=\"count\">{matching} of {total} completions match.</p>"
    );
    let query = filter.query();
    let page_link = |page: usize| {
        let mut with_page = query.clone();
        if !with_page.is_empty() {
            with_page.push('&');
        }
        let _ = write!(with_page, "page={page}");
        format!("/runs/{id}/samples?{}", escape(&with_page))
    };
    let pages = matching.div_ceil(page_rows).max(1);
    let mut pager = String::new();
    if pages > 1 {
        let _ = write!(pager, "<p>page {} of {pages} ", page + 1);
        if page > 0 {
            let _ = write!(pager, "<a href=\"{}\">previous</a> ", page_link(page - 1));
        }
        if page + 1 < pages {
            let _ = write!(pager, "<a href=\"{}\">next</a>", page_link(page + 1));
        }
        pager.push_str("</p>");
    }
    body.push_str(&pager);
    body.push_str(
        "<table id=\"samples\"><tr><th>#</th><th>model</th><th>benchmark</th><th>sample</th><th>category</th>\
         <th>prompt label</th><th>answer</th><th>answer verdicts</th><th>trace verdicts</th><th>error</th></tr>",
    );
    for (position, row) in rows {
        let link = format!(
            "/runs/{id}/samples/{position}{}{}",
            if query.is_empty() { "" } else { "?" },
            escape(&query)
        );
        let (answer, error) = match &row.outcome {
            Ok(completion) => (
                completion
                    .answer
                    .as_deref()
                    .map(|a| snippet(a, 100))
                    .unwrap_or_else(|| "(no answer)".into()),
                String::new(),
            ),
            Err(error) => (String::new(), format!("{}: {}", error.kind, error.message)),
        };
        let _ = write!(
            body,
            "<tr><td class=\"n\"><a href=\"{link}\">{}</a></td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
            position + 1,
            escape(&row.key.model),
            escape(&row.key.benchmark),
            escape(&row.key.sample_id),
            if row.key.sample_k > 0 {
                format!(" (k={})", row.key.sample_k)
            } else {
                String::new()
            },
            escape(&row.category_name()),
            row.label
                .map(|l| format!("{l:?}").to_lowercase())
                .unwrap_or_default(),
            escape(&answer),
            label_cell(row, Channel::Answer),
            label_cell(row, Channel::Reasoning),
            escape(&snippet(&error, 120)),
        );
    }
    body.push_str("</table>");
    body.push_str(&pager);
    document(&format!("run {id} samples"), &body)
}

/// One sample: prompt, trace and answer side by side, then the verdicts.
pub fn sample(
    info: &RunInfo,
    filter: &Filter,
    row: &ResultRow,
    position: usize,
    matching: usize,
) -> String {
    let id = info.id;
    let query = filter.query();
    let suffix = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", escape(&query))
    };
    let mut body = String::from("<nav>");
    if position > 0 {
        let _ = write!(
            body,
            "<a href=\"/runs/{id}/samples/{}{suffix}\" id=\"prev\" rel=\"prev\">← previous (k)</a>",
            position - 1
        );
    }
    let _ = write!(
        body,
        "<a href=\"/runs/{id}/samples{suffix}\" id=\"up\">list (u)</a>"
    );
    if position + 1 < matching {
        let _ = write!(
            body,
            "<a href=\"/runs/{id}/samples/{}{suffix}\" id=\"next\" rel=\"next\">next (j) →</a>",
            position + 1
        );
    }
    let _ = write!(
        body,
        "</nav><h1 id=\"sample\">{} · {} · sample {}{} <span class=\"meta\">({} of {matching})</span></h1>\
         <p class=\"meta\">category {} · prompt label {} · attempts {}{}</p>",
        escape(&row.key.model),
        escape(&row.key.benchmark),
        escape(&row.key.sample_id),
        if row.key.sample_k > 0 {
            format!(" (k={})", row.key.sample_k)
        } else {
            String::new()
        },
        position + 1,
        escape(&row.category_name()),
        row.label
            .map(|l| format!("{l:?}").to_lowercase())
            .unwrap_or_else(|| "none".into()),
        row.attempts,
        if row.cached { " · from the cache" } else { "" },
    );
    let mut prompt = String::new();
    for message in row.messages.iter().flatten() {
        let role = match message.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let _ = write!(
            prompt,
            "<div class=\"meta\">{role}</div><pre class=\"prompt\">{}</pre>",
            escape(&message.content)
        );
    }
    let (trace, answer) = match &row.outcome {
        Ok(completion) => {
            let state = match completion.reasoning.state {
                TraceState::Complete => "raw: the model's own text",
                TraceState::Truncated => "truncated: the output ended inside the trace",
                TraceState::Absent => "absent",
                TraceState::Redacted => {
                    "withheld by the provider (its usage counts reasoning tokens)"
                }
                TraceState::Summary => {
                    "summary: the provider's summary of a trace it keeps hidden, not the model's own words"
                }
                TraceState::Encrypted => "encrypted: the provider sent it encrypted only",
                TraceState::Omitted => "omitted: the provider left it out of the response",
            };
            let trace = if completion.reasoning.state == TraceState::Absent {
                "<p class=\"meta\">no trace</p>".to_owned()
            } else {
                format!(
                    "<p class=\"meta\">{state}</p><pre class=\"trace\" id=\"trace-text\">{}</pre>",
                    escape(&completion.reasoning.text)
                )
            };
            let answer = match &completion.answer {
                Some(answer) => format!(
                    "<pre class=\"answer\" id=\"answer-text\">{}</pre><p class=\"meta\">finish {} · tokens in {} / out {} / reasoning {} · {} ms</p>",
                    escape(answer),
                    escape(completion.finish_reason.as_ref().map_or("?", |r| r.as_str())),
                    opt(completion.usage.prompt_tokens),
                    opt(completion.usage.completion_tokens),
                    opt(completion.usage.reasoning_tokens),
                    completion.latency_ms
                ),
                None if completion.is_provider_refusal() => "<p class=\"meta\">no answer: the provider's safety system refused</p>".into(),
                None => "<p class=\"meta\">no answer: the output ended inside the trace</p>".into(),
            };
            (trace, answer)
        }
        Err(error) => (
            String::new(),
            format!(
                "<p class=\"err\" id=\"error\">{}: {}</p>",
                escape(error.kind.as_str()),
                escape(&error.message)
            ),
        ),
    };
    let _ = write!(
        body,
        "<div class=\"cols\"><div><h2>Prompt</h2>{prompt}</div><div><h2>Trace</h2>{trace}</div>\
         <div><h2>Answer</h2>{answer}</div></div>"
    );
    body.push_str(
        "<h2>Verdicts</h2><table id=\"verdicts\"><tr><th>judge</th><th>channel</th><th>label</th><th>score</th><th>rationale</th></tr>",
    );
    for verdict in &row.verdicts {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td class=\"label-{label}\">{label}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&verdict.judge),
            verdict.channel.as_str(),
            verdict.score.map(|s| format!("{s}")).unwrap_or_default(),
            escape(&verdict.rationale),
            label = verdict.label.as_str(),
        );
    }
    body.push_str("</table>");
    if let Ok(completion) = &row.outcome {
        if let Some(transcript) = redtrace_core::AttackTranscript::from_raw(&completion.raw) {
            let base = row.key.benchmark.split('+').next().unwrap_or("");
            let judged = redtrace_report::attack_success(base, &row.verdicts);
            attack_transcript(&mut body, &transcript, judged);
        } else if !completion.raw.is_empty() {
            let _ = write!(
                body,
                "<details><summary>raw response</summary><pre>{}</pre></details>",
                escape(&completion.raw)
            );
        }
    }
    document(
        &format!("{} · {}", row.key.benchmark, row.key.sample_id),
        &body,
    )
}

/// A model-driven attack's attempts, the one whose reply was judged marked.
/// The summary says both verdicts apart: the attack's own rater (which steers the attack) and
/// the benchmark's judge on the chosen answer (what the findings count as attack success).
fn attack_transcript(
    body: &mut String,
    transcript: &redtrace_core::AttackTranscript,
    judged: Option<(&redtrace_core::Verdict, bool)>,
) {
    let outcome = match judged {
        Some((verdict, true)) => format!(
            "attack success: yes ({} judged the answer {})",
            verdict.judge,
            verdict.label.as_str()
        ),
        Some((verdict, false)) => format!(
            "attack success: no ({} judged the answer {})",
            verdict.judge,
            verdict.label.as_str()
        ),
        None => "attack success: not judged".to_owned(),
    };
    let _ = write!(
        body,
        "<h2>Attack transcript</h2><p class=\"meta\" id=\"attack-summary\">{}: {} · its own rater: {} · {} target queries · {} tokens · {} attacker and judge calls{}</p>\
         <table id=\"attempts\"><tr><th>#</th><th>step</th><th>prompt</th><th>reply</th><th>rating</th><th>note</th></tr>",
        escape(&transcript.attack),
        escape(&outcome),
        if transcript.success { "reached its goal" } else { "did not reach its goal" },
        transcript.queries,
        transcript.tokens,
        transcript.helper_calls,
        if transcript.ended.is_empty() {
            String::new()
        } else {
            format!(" · ended: {}", escape(&transcript.ended))
        },
    );
    for (i, attempt) in transcript.attempts.iter().enumerate() {
        let chosen = transcript.chosen == Some(i);
        let mut reply = match &attempt.response {
            Some(text) => format!("<pre>{}</pre>", escape(text)),
            None => "<span class=\"meta\">not sent</span>".into(),
        };
        // The attempt's own trace, folded under its reply.
        if !attempt.reasoning.is_empty() {
            let _ = write!(
                reply,
                "<details class=\"attempt-trace\"><summary>trace</summary><pre>{}</pre></details>",
                escape(&attempt.reasoning)
            );
        }
        let _ = write!(
            body,
            "<tr{}><td class=\"n\">{}{}</td><td>{}</td><td><pre>{}</pre></td><td>{reply}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            if chosen { " class=\"chosen\"" } else { "" },
            i + 1,
            if chosen { " (judged)" } else { "" },
            escape(&attempt.step),
            escape(&attempt.prompt),
            attempt.score.map(|s| format!("{s}/10")).unwrap_or_default(),
            escape(&attempt.note),
        );
    }
    body.push_str("</table>");
    if let Some(answer) = &transcript.judged_answer {
        let _ = write!(
            body,
            "<h3>The answer as judged (translated back)</h3><pre id=\"judged-answer\">{}</pre>",
            escape(answer)
        );
    }
}

fn opt(value: Option<u64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
}
