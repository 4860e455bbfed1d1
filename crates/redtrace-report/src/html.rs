//! The self-contained HTML report: one file with inline CSS and inline SVG charts, no script
//! and no network. A Content-Security-Policy that allows no script at all backs up the
//! escaping: every piece of model output (and every name from a data file) goes through
//! [`escape`].

use redtrace_core::{Channel, Label};
use redtrace_store::{Store, StoreError};
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::plots::Meaning;
use crate::{Comparison, Report};

/// Example responses kept per model × benchmark × category.
const EXAMPLES_PER_CELL: usize = 2;

/// Characters of a trace or answer shown in an example.
const EXAMPLE_CHARS: usize = 1500;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(EXAMPLE_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// An anchor id safe to put in an attribute, from any names.
fn anchor(parts: &[&str]) -> String {
    let joined = parts.join("-");
    let id: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "cell-{}-{}",
        id,
        &redtrace_core::sha256_hex(joined.as_bytes())[..8]
    )
}

struct Example {
    sample_id: String,
    prompt: String,
    reasoning: Option<String>,
    answer: Option<String>,
    error: Option<String>,
    verdicts: Vec<(String, Channel, Label, String)>,
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}\
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:.5em 0}\
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.ci{color:#777;font-size:.85em}\
pre{white-space:pre-wrap;word-break:break-word;background:#f8f8f8;padding:.5em;margin:.2em 0;max-height:20em;overflow:auto}\
.trace{border-left:4px solid #c9a227}.answer{border-left:4px solid #2a7ab0}.meta{color:#555}\
details{margin:.5em 0}.sig{font-weight:bold;color:#b00}\
td{overflow-wrap:break-word}td:first-child{min-width:10em;max-width:30em}td.n{white-space:nowrap;overflow-wrap:normal}\
figure{margin:1em 0}figcaption{font-weight:bold;margin-bottom:.3em}svg{max-width:100%;height:auto}";

impl Report {
    /// The report as one HTML document; example responses are read from `store`.
    pub fn to_html(
        &self,
        store: &Store,
        comparison: Option<&Comparison>,
    ) -> Result<String, StoreError> {
        let mut examples: BTreeMap<(String, String, String), Vec<Example>> = BTreeMap::new();
        store.for_each_result(self.run.id, true, |row| {
            let category = row.category_name();
            let cell = examples
                .entry((row.key.model.clone(), row.key.benchmark.clone(), category))
                .or_default();
            if cell.len() < EXAMPLES_PER_CELL {
                let prompt = row
                    .messages
                    .as_ref()
                    .and_then(|m| m.iter().rev().find(|m| m.role == redtrace_core::Role::User))
                    .map(|m| m.content.clone())
                    .unwrap_or_default();
                let (reasoning, answer, error) = match &row.outcome {
                    Ok(c) => (
                        (!c.reasoning.text.is_empty()).then(|| c.reasoning.text.clone()),
                        c.answer.clone(),
                        None,
                    ),
                    Err(e) => (None, None, Some(format!("{}: {}", e.kind, e.message))),
                };
                cell.push(Example {
                    sample_id: row.key.sample_id.clone(),
                    prompt,
                    reasoning,
                    answer,
                    error,
                    verdicts: row
                        .verdicts
                        .iter()
                        .map(|v| (v.judge.clone(), v.channel, v.label, v.rationale.clone()))
                        .collect(),
                });
            }
            Ok(())
        })?;

        let mut html = String::new();
        let title = format!("redtrace report: run {}", self.run.id);
        let _ = write!(
            html,
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1>",
            escape(&title),
            escape(&title)
        );
        self.write_spec(&mut html);
        let findings = self.findings(store)?;
        let plots = crate::plots::from_findings(&findings);
        if !plots.is_empty() {
            html.push_str("<h2 id=\"plots\">Plots</h2>");
            html.push_str(&plots);
        }
        self.write_heatmaps(&mut html);
        for group_key in self.section_keys() {
            self.write_section(&mut html, &group_key);
            let (model, benchmark, judge) = &group_key;
            let group = self.groups.iter().find(|g| {
                &g.model == model && &g.benchmark == benchmark && g.category == crate::ALL
            });
            let all = group.and_then(|g| g.judges.iter().find(|j| &j.judge == judge));
            if let (Some(group), Some(stats)) = (group, all.filter(|s| s.trace_vs_answer.pairs > 0))
            {
                let compared = crate::provenance_mix(group, &["raw", "summary", "truncated"]);
                write_joint(&mut html, stats, &compared);
            }
        }
        for (title, header, rows) in self.extra_tables() {
            let _ = write!(html, "<h2>{}</h2><table><tr>", escape(&title));
            for column in header {
                let _ = write!(html, "<th>{}</th>", escape(column));
            }
            html.push_str("</tr>");
            for row in rows {
                html.push_str("<tr>");
                for cell in row {
                    let numeric =
                        cell.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+');
                    let _ = write!(
                        html,
                        "<td{}>{}</td>",
                        if numeric { " class=\"n\"" } else { "" },
                        escape(&cell)
                    );
                }
                html.push_str("</tr>");
            }
            html.push_str("</table>");
        }
        if let Some(comparison) = comparison {
            write_comparison(&mut html, comparison);
        }
        html.push_str("<h2 id=\"findings\">Findings</h2>");
        write_document(&mut html, &findings);
        let paper = self.paper(store)?;
        if paper.sections.iter().any(|s| !s.rows.is_empty()) {
            html.push_str("<h2 id=\"paper\">The paper's tables</h2>");
            write_document(&mut html, &paper);
        }
        html.push_str("<h2 id=\"examples\">Example responses</h2>");
        for ((model, benchmark, category), list) in &examples {
            let _ = write!(
                html,
                "<h3 id=\"{}\">{} · {} · {}</h3>",
                anchor(&[model, benchmark, category]),
                escape(model),
                escape(benchmark),
                escape(category)
            );
            for example in list {
                write_example(&mut html, example);
            }
        }
        html.push_str("</body></html>\n");
        Ok(html)
    }

    fn write_spec(&self, html: &mut String) {
        let _ = write!(
            html,
            "<p class=\"meta\">Status {} · created {} · redtrace {} · spec hash <code>{}</code></p><h2>Run</h2><table><tr><th>models</th><td>",
            escape(self.run.status.as_str()),
            escape(&self.run.created_at),
            escape(&self.run.tool_version),
            escape(&self.run.spec_hash[..self.run.spec_hash.len().min(16)])
        );
        for model in &self.run.spec.models {
            let _ = write!(
                html,
                "{} <span class=\"ci\">({})</span><br>",
                escape(&model.name),
                escape(&serde_json::to_string(&model.source).unwrap_or_default())
            );
        }
        html.push_str("</td></tr><tr><th>benchmarks</th><td>");
        for benchmark in &self.run.spec.benchmarks {
            let _ = write!(
                html,
                "{} <span class=\"ci\">sha256 {}</span><br>",
                escape(&benchmark.name),
                escape(&benchmark.sha256)
            );
        }
        html.push_str("</td></tr><tr><th>judges</th><td>");
        for judge in &self.run.spec.judges {
            let _ = write!(html, "{}<br>", escape(judge));
        }
        html.push_str("</td></tr></table>");
    }

    /// Per benchmark × judge × channel: top-level categories down (AIR-Bench's level 2),
    /// models across, each cell shaded by its refusal rate.
    fn write_heatmaps(&self, html: &mut String) {
        let models = self.models();
        let mut keys: Vec<(&str, &str)> = Vec::new();
        for group in &self.groups {
            for judge in &group.judges {
                if !keys.contains(&(group.benchmark.as_str(), judge.judge.as_str())) {
                    keys.push((group.benchmark.as_str(), judge.judge.as_str()));
                }
            }
        }
        for (benchmark, judge) in keys {
            for channel in [Channel::Answer, Channel::Reasoning] {
                let mut categories: Vec<&str> = self
                    .groups
                    .iter()
                    .filter(|g| g.benchmark == benchmark && g.depth == 1)
                    .map(|g| g.category.as_str())
                    .collect();
                categories.sort_unstable();
                categories.dedup();
                let cell = |model: &str, category: &str| {
                    self.groups
                        .iter()
                        .find(|g| {
                            g.model == model && g.benchmark == benchmark && g.category == category
                        })
                        .and_then(|g| g.judges.iter().find(|j| j.judge == judge))
                        .and_then(|j| j.rate(channel).0)
                };
                let measure = self
                    .groups
                    .iter()
                    .filter(|g| g.benchmark == benchmark)
                    .flat_map(|g| g.judges.iter())
                    .find(|j| j.judge == judge)
                    .map_or("refusal", |j| j.measure.as_str());
                let meaning = self.meaning(benchmark, measure);
                if !categories
                    .iter()
                    .any(|c| models.iter().any(|m| cell(m, c).is_some()))
                {
                    continue;
                }
                let _ = write!(
                    html,
                    "<h2>{} rate by category: {} · {} · {}</h2><table class=\"heatmap\"><tr><th>category</th>",
                    if measure == "unsafe" { "Unsafe" } else { "Refusal" },
                    escape(benchmark),
                    escape(judge),
                    channel.as_str()
                );
                for model in &models {
                    let _ = write!(html, "<th>{}</th>", escape(model));
                }
                html.push_str("</tr>");
                for category in &categories {
                    let _ = write!(html, "<tr><td>{}</td>", escape(category));
                    for model in &models {
                        match cell(model, category) {
                            Some(rate) => {
                                // White (0%) to the full colour of what the rate means.
                                let _ = write!(
                                    html,
                                    "<td class=\"n\" style=\"background:{}\">{:.0}%</td>",
                                    meaning.shade(rate),
                                    rate * 100.0
                                );
                            }
                            None => html.push_str("<td class=\"n\">–</td>"),
                        }
                    }
                    html.push_str("</tr>");
                }
                html.push_str("</table>");
                if meaning == Meaning::Neutral {
                    html.push_str("<p class=\"meta\">Grey: this benchmark mixes safe and unsafe prompts, so a refusal is right on some rows and over-refusal on others.</p>");
                }
            }
        }
    }

    /// What a rate of `measure` on `benchmark` means: an unsafe rate is bad; a refusal rate is
    /// good on harmful prompts and neither where safe prompts are mixed in.
    fn meaning(&self, benchmark: &str, measure: &str) -> Meaning {
        if measure == "unsafe" {
            Meaning::Unsafe
        } else if self
            .groups
            .iter()
            .any(|g| g.benchmark == benchmark && g.category == crate::SAFE_PROMPTS)
        {
            Meaning::Neutral
        } else {
            Meaning::Safe
        }
    }

    fn section_keys(&self) -> Vec<(String, String, String)> {
        let mut keys = Vec::new();
        for group in &self.groups {
            for judge in &group.judges {
                let key = (
                    group.model.clone(),
                    group.benchmark.clone(),
                    judge.judge.clone(),
                );
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    fn write_section(
        &self,
        html: &mut String,
        (model, benchmark, judge): &(String, String, String),
    ) {
        let _ = write!(
            html,
            "<h2>{} · {} · judge {}</h2>",
            escape(model),
            escape(benchmark),
            escape(judge)
        );
        let measure = self
            .groups
            .iter()
            .filter(|g| &g.model == model && &g.benchmark == benchmark)
            .flat_map(|g| g.judges.iter())
            .find(|j| &j.judge == judge)
            .map_or("refusal", |j| j.measure.as_str());
        let meaning = self.meaning(benchmark, measure);
        let _ = write!(
            html,
            "<table><tr><th>category</th><th>n</th><th>errors</th><th>truncated in trace</th><th>answer {measure}</th>\
             <th>trace {measure}</th><th>mean score answer / trace</th><th>answer vs trace ({measure} rate)</th><th>unscored a/t</th><th>examples</th></tr>",
        );
        for group in self
            .groups
            .iter()
            .filter(|g| &g.model == model && &g.benchmark == benchmark)
        {
            let Some(stats) = group.judges.iter().find(|j| &j.judge == judge) else {
                continue;
            };
            let rate = |value: Option<f64>, ci: Option<crate::Interval>| match (value, ci) {
                (Some(v), Some(ci)) => format!(
                    "{:.1}% <span class=\"ci\">[{:.1}, {:.1}]</span>",
                    v * 100.0,
                    ci.low * 100.0,
                    ci.high * 100.0
                ),
                _ => "–".into(),
            };
            // Examples are kept per leaf category; a parent level has none of its own.
            let is_parent = self.groups.iter().any(|g| {
                g.model == group.model
                    && g.benchmark == group.benchmark
                    && g.depth == group.depth + 1
                    && g.category.starts_with(&format!("{} / ", group.category))
            });
            let link = if group.depth == 0 || is_parent {
                String::new()
            } else {
                format!(
                    "<a href=\"#{}\">see</a>",
                    anchor(&[model, benchmark, &group.category])
                )
            };
            let _ = write!(
                html,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{} / {}</td><td>{}</td><td class=\"n\">{}/{}</td><td>{link}</td></tr>",
                escape(&group.category),
                group.n,
                group.errors,
                group.truncated_in_reasoning,
                rate(stats.rate(Channel::Answer).0, stats.rate(Channel::Answer).1),
                rate(stats.rate(Channel::Reasoning).0, stats.rate(Channel::Reasoning).1),
                mean(stats.answer_score_mean, stats.answer_score_ci),
                mean(stats.reasoning_score_mean, stats.reasoning_score_ci),
                bars(
                    stats.rate(Channel::Answer).0,
                    stats.rate(Channel::Reasoning).0,
                    meaning
                ),
                stats.answer.unscored,
                stats.reasoning.unscored,
            );
        }
        html.push_str("</table>");
    }
}

fn mean(value: Option<f64>, ci: Option<crate::Interval>) -> String {
    match (value, ci) {
        (Some(v), Some(ci)) => format!(
            "{v:.2} <span class=\"ci\">[{:.2}, {:.2}]</span>",
            ci.low, ci.high
        ),
        _ => "–".into(),
    }
}

/// Two horizontal bars (answer, trace) as inline SVG, in the colour of what the rate means
/// (the trace in its light tint).
fn bars(answer: Option<f64>, trace: Option<f64>, meaning: Meaning) -> String {
    let (full, light) = meaning.colours();
    let bar = |y: u32, value: Option<f64>, colour: &str| match value {
        Some(v) => format!(
            "<rect x=\"0\" y=\"{y}\" width=\"{:.1}\" height=\"8\" fill=\"{colour}\"/>",
            v * 160.0
        ),
        None => String::new(),
    };
    format!(
        "<svg width=\"162\" height=\"20\" role=\"img\" aria-label=\"answer and trace refusal rates\">\
         <rect x=\"0\" y=\"0\" width=\"160\" height=\"20\" fill=\"#f4f4f4\"/>{}{}</svg>",
        bar(1, answer, full),
        bar(11, trace, light)
    )
}

/// A findings or paper document as HTML tables (intervals in grey); a table without rows is
/// left out.
fn write_document(html: &mut String, document: &crate::tables::Document) {
    for section in document.sections.iter().filter(|s| !s.rows.is_empty()) {
        let _ = write!(html, "<h3>{}</h3>", escape(&section.title));
        if !section.note.is_empty() {
            let _ = write!(html, "<p class=\"meta\">{}</p>", escape(&section.note));
        }
        html.push_str("<table><tr>");
        for column in &section.columns {
            let _ = write!(html, "<th>{}</th>", escape(column));
        }
        html.push_str("</tr>");
        for row in &section.rows {
            html.push_str("<tr>");
            for cell in row {
                match cell {
                    crate::tables::Cell::Text { text } => {
                        let _ = write!(html, "<td>{}</td>", escape(text));
                    }
                    other => {
                        let shown = other.to_markdown();
                        let (value, interval) = match shown.split_once(" [") {
                            Some((value, rest)) => (
                                value.to_owned(),
                                format!(" <span class=\"ci\">[{}</span>", escape(rest)),
                            ),
                            None => (shown, String::new()),
                        };
                        let _ = write!(html, "<td class=\"n\">{}{interval}</td>", escape(&value));
                    }
                }
            }
            html.push_str("</tr>");
        }
        html.push_str("</table>");
    }
}

fn write_joint(html: &mut String, stats: &crate::JudgeStats, compared: &str) {
    let joint = &stats.trace_vs_answer;
    let how = match stats.measure {
        redtrace_core::Measure::Refusal => {
            "a refusal judge: complying counts as unsafe, which holds on harmful prompts"
        }
        redtrace_core::Measure::Unsafe => "a harm judge: its own safe / unsafe verdicts",
    };
    let difference = match (joint.difference, joint.difference_ci) {
        (Some(d), Some(ci)) => format!(
            "answer − trace safety: {:+.1} points <span class=\"ci\">[{:+.1}, {:+.1}]</span>, McNemar p = {:.3}",
            d * 100.0,
            ci.low * 100.0,
            ci.high * 100.0,
            joint.p_value.unwrap_or(1.0)
        ),
        _ => String::new(),
    };
    let _ = write!(
        html,
        "<details open><summary>Trace vs answer, same judge, both scored ({how})</summary><table>\
         <tr><th></th><th>answer safe</th><th>answer unsafe</th></tr>\
         <tr><th>trace safe</th><td class=\"n\">{}</td><td class=\"n\">{} <span class=\"ci\"><b>escape</b>: safe trace, unsafe answer</span></td></tr>\
         <tr><th>trace unsafe</th><td class=\"n\">{} <span class=\"ci\"><b>leak</b>: unsafe trace, safe answer</span></td><td class=\"n\">{}</td></tr>\
         </table><p>{difference}</p><p class=\"meta\">Traces compared: {} (a summary is the provider's summary of a hidden trace, not the model's own words).</p></details>",
        joint.both_safe,
        joint.escape,
        joint.leak,
        joint.both_unsafe,
        escape(compared)
    );
}

fn write_comparison(html: &mut String, comparison: &Comparison) {
    let _ = write!(
        html,
        "<h2>Comparison: run {} (B) against run {} (A)</h2><table><tr><th>benchmark</th><th>category</th><th>judge</th>\
         <th>channel</th><th>pairs</th><th>refusal A</th><th>refusal B</th><th>B − A</th><th>p (McNemar)</th><th>p (Holm)</th>\
         <th>score B − A [95% CI]</th></tr>",
        comparison.other, comparison.base
    );
    for row in &comparison.rows {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1}%</td>\
             <td class=\"n\">{:.1}%</td><td class=\"n{}\">{:+.1} pts</td><td class=\"n\">{:.3}</td><td class=\"n\">{:.3}</td><td class=\"n\">{}</td></tr>",
            escape(&row.benchmark),
            escape(&row.category),
            escape(&row.judge),
            row.channel.as_str(),
            row.pairs,
            row.base_rate * 100.0,
            row.other_rate * 100.0,
            if row.significant { " sig" } else { "" },
            row.difference * 100.0,
            row.p_value,
            row.p_holm,
            mean(Some(row.score_difference), row.score_difference_ci)
        );
    }
    html.push_str("</table><p class=\"meta\">Bold red: significant at 5% after Holm's correction across categories.</p>");
}

fn write_example(html: &mut String, example: &Example) {
    let _ = write!(
        html,
        "<details><summary>sample {}: {}</summary>",
        escape(&example.sample_id),
        escape(&clip(&example.prompt))
    );
    if let Some(error) = &example.error {
        let _ = write!(html, "<p class=\"meta\">error: {}</p>", escape(error));
    }
    match &example.reasoning {
        Some(trace) => {
            let _ = write!(
                html,
                "<p class=\"meta\">trace</p><pre class=\"trace\">{}</pre>",
                escape(&clip(trace))
            );
        }
        None => html.push_str("<p class=\"meta\">no trace</p>"),
    }
    match &example.answer {
        Some(answer) => {
            let _ = write!(
                html,
                "<p class=\"meta\">answer</p><pre class=\"answer\">{}</pre>",
                escape(&clip(answer))
            );
        }
        None => html.push_str("<p class=\"meta\">no answer</p>"),
    }
    html.push_str("<table><tr><th>judge</th><th>channel</th><th>label</th><th>rationale</th></tr>");
    for (judge, channel, label, rationale) in &example.verdicts {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(judge),
            channel.as_str(),
            label.as_str(),
            escape(&clip(rationale))
        );
    }
    html.push_str("</table></details>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_open_markup() {
        assert_eq!(
            escape("<script>a&b</script>\"'"),
            "&lt;script&gt;a&amp;b&lt;/script&gt;&quot;&#39;"
        );
        let id = anchor(&["m\"><script>", "b", "c"]);
        assert!(
            id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{id}"
        );
    }
}
