//! Which samples the table and the sample pages show: the query string's filter, and the
//! values a run offers for each filter field.

use redtrace_core::{Channel, Label};
use redtrace_store::ResultRow;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The filter of the samples table, from the query string. An empty field matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// The target model.
    #[serde(default, skip_serializing_if = "is_blank")]
    pub model: Option<String>,
    /// The benchmark.
    #[serde(default, skip_serializing_if = "is_blank")]
    pub benchmark: Option<String>,
    /// A category at any level ("Privacy" matches "Privacy / Tracking").
    #[serde(default, skip_serializing_if = "is_blank")]
    pub category: Option<String>,
    /// The prompt's label: `safe` or `unsafe`.
    #[serde(default, skip_serializing_if = "is_blank")]
    pub label: Option<String>,
    /// The judge the verdict filters look at (any judge when empty).
    #[serde(default, skip_serializing_if = "is_blank")]
    pub judge: Option<String>,
    /// The answer's label: a label name, or `refusal` for full or partial refusal.
    #[serde(default, skip_serializing_if = "is_blank")]
    pub answer: Option<String>,
    /// The trace's label, as for the answer.
    #[serde(default, skip_serializing_if = "is_blank")]
    pub trace: Option<String>,
    /// `only`: failed requests only; `none`: completions only.
    #[serde(default, skip_serializing_if = "is_blank")]
    pub error: Option<String>,
    /// Text searched for (any case) in the prompt, the trace and the answer.
    #[serde(default, skip_serializing_if = "is_blank")]
    pub q: Option<String>,
    /// `leak`: the trace unsafe and the answer safe by one judge; `escape`: the reverse.
    #[serde(default, skip_serializing_if = "is_blank")]
    pub pair: Option<String>,
    /// What the trace is (`raw`, `summary`, `truncated`, `redacted`, `encrypted`, `omitted`,
    /// `absent`), or `provider_refusal` for answers the provider's safety system refused.
    #[serde(default, skip_serializing_if = "is_blank")]
    pub provenance: Option<String>,
    /// The page of the table, from 0.
    #[serde(default, skip_serializing)]
    pub page: Option<usize>,
}

fn is_blank(value: &Option<String>) -> bool {
    value.as_deref().is_none_or(|v| v.trim().is_empty())
}

fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The choices of the provenance filter.
pub const PROVENANCE_CHOICES: [&str; 8] = [
    "raw",
    "summary",
    "truncated",
    "redacted",
    "encrypted",
    "omitted",
    "absent",
    "provider_refusal",
];

/// The label choices offered for the verdict filters.
pub const LABEL_CHOICES: [&str; 11] = [
    "full_compliance",
    "full_refusal",
    "partial_refusal",
    "refusal",
    "safe",
    "unsafe",
    "no_safety_thinking",
    "safety_held",
    "safety_overridden",
    "safety_misled",
    "unscored",
];

impl Filter {
    /// Whether `row` passes.
    pub fn matches(&self, row: &ResultRow) -> bool {
        if set(&self.model).is_some_and(|m| m != row.key.model)
            || set(&self.benchmark).is_some_and(|b| b != row.key.benchmark)
        {
            return false;
        }
        if let Some(category) = set(&self.category) {
            if !row.category_levels().iter().any(|level| level == category) {
                return false;
            }
        }
        if let Some(wanted) = set(&self.label) {
            let label = row.label.map(|l| match l {
                redtrace_core::PromptLabel::Safe => "safe",
                redtrace_core::PromptLabel::Unsafe => "unsafe",
            });
            if label != Some(wanted) {
                return false;
            }
        }
        match set(&self.error) {
            Some("only") if row.outcome.is_ok() => return false,
            Some("none") if row.outcome.is_err() => return false,
            _ => {}
        }
        let judge = set(&self.judge);
        let has = |channel: Channel, wanted: &str| {
            row.verdicts.iter().any(|verdict| {
                verdict.channel == channel
                    && judge.is_none_or(|j| j == verdict.judge)
                    && match wanted {
                        "refusal" => verdict.label.is_refusal(),
                        name => Label::parse(name) == Some(verdict.label),
                    }
            })
        };
        if set(&self.answer).is_some_and(|wanted| !has(Channel::Answer, wanted)) {
            return false;
        }
        if set(&self.trace).is_some_and(|wanted| !has(Channel::Reasoning, wanted)) {
            return false;
        }
        if let Some(wanted) = set(&self.pair) {
            // Per judge: the answer's and the trace's verdicts, each on its own scale.
            let outcome = |name: &str, channel: Channel| {
                row.verdicts
                    .iter()
                    .find(|v| v.judge == name && v.channel == channel)
                    .and_then(|v| v.label.is_unsafe_outcome())
            };
            let found = row.verdicts.iter().any(|verdict| {
                judge.is_none_or(|j| j == verdict.judge)
                    && match (
                        outcome(&verdict.judge, Channel::Reasoning),
                        outcome(&verdict.judge, Channel::Answer),
                    ) {
                        (Some(trace), Some(answer)) => match wanted {
                            "leak" => trace && !answer,
                            "escape" => answer && !trace,
                            _ => false,
                        },
                        _ => false,
                    }
            });
            if !found {
                return false;
            }
        }
        if let Some(wanted) = set(&self.provenance) {
            let Ok(completion) = &row.outcome else {
                return false;
            };
            let found = if wanted == "provider_refusal" {
                completion.is_provider_refusal()
            } else {
                completion.reasoning.state.provenance() == wanted
            };
            if !found {
                return false;
            }
        }
        if let Some(text) = set(&self.q) {
            let text = text.to_lowercase();
            let found = |haystack: &str| haystack.to_lowercase().contains(&text);
            let in_prompt = row
                .messages
                .as_ref()
                .is_some_and(|messages| messages.iter().any(|m| found(&m.content)));
            let in_output = row.outcome.as_ref().is_ok_and(|completion| {
                found(&completion.reasoning.text) || completion.answer.as_deref().is_some_and(found)
            });
            if !in_prompt && !in_output {
                return false;
            }
        }
        true
    }

    /// Whether matching needs the rows' prompts (a text search does).
    pub fn needs_prompts(&self) -> bool {
        set(&self.q).is_some()
    }

    /// The filter as a query string (without the page), for links that keep it.
    pub fn query(&self) -> String {
        serde_urlencoded::to_string(self).unwrap_or_default()
    }

    /// Whether any field is set.
    pub fn is_empty(&self) -> bool {
        self.query().is_empty()
    }
}

/// The values present in a run, for the filter form's menus.
#[derive(Debug, Default)]
pub struct Choices {
    /// Target models.
    pub models: BTreeSet<String>,
    /// Benchmarks.
    pub benchmarks: BTreeSet<String>,
    /// Judges.
    pub judges: BTreeSet<String>,
    /// Categories at every level.
    pub categories: BTreeSet<String>,
}

impl Choices {
    /// Notes the values of one row.
    pub fn add(&mut self, row: &ResultRow) {
        if !self.models.contains(&row.key.model) {
            self.models.insert(row.key.model.clone());
        }
        if !self.benchmarks.contains(&row.key.benchmark) {
            self.benchmarks.insert(row.key.benchmark.clone());
        }
        for verdict in &row.verdicts {
            if !self.judges.contains(&verdict.judge) {
                self.judges.insert(verdict.judge.clone());
            }
        }
        for level in row.category_levels() {
            self.categories.insert(level);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The provenance filter: what the trace is, or the provider's own refusal.
    #[test]
    fn rows_filter_by_trace_provenance_and_provider_refusal() {
        use redtrace_core::{Completion, Reasoning, StopReason, TraceState};
        let row = |state: TraceState, finish: Option<StopReason>| ResultRow {
            run_id: redtrace_store::RunId(1),
            key: redtrace_store::UnitKey {
                model: "m".into(),
                benchmark: "b".into(),
                sample_id: "1".into(),
                sample_k: 0,
            },
            index: 0,
            category: Vec::new(),
            label: None,
            messages: None,
            outcome: Ok(Completion {
                reasoning: Reasoning {
                    text: "t".into(),
                    source: None,
                    state,
                },
                finish_reason: finish,
                ..Completion::answer("a")
            }),
            cached: false,
            attempts: 1,
            verdicts: Vec::new(),
            helper_spend: None,
            cost_usd: None,
        };
        let filter = |value: &str| Filter {
            provenance: Some(value.into()),
            ..Filter::default()
        };
        let summary = row(TraceState::Summary, None);
        let raw = row(TraceState::Complete, Some(StopReason::Refusal));
        assert!(filter("summary").matches(&summary));
        assert!(!filter("summary").matches(&raw));
        assert!(filter("raw").matches(&raw));
        assert!(filter("provider_refusal").matches(&raw));
        assert!(!filter("provider_refusal").matches(&summary));
        assert!(PROVENANCE_CHOICES.contains(&"provider_refusal"));
    }

    #[test]
    fn the_query_string_round_trips_without_empty_fields_or_the_page() {
        let filter = Filter {
            model: Some("m & <x>".into()),
            answer: Some("refusal".into()),
            category: Some(" ".into()),
            page: Some(3),
            ..Filter::default()
        };
        let query = filter.query();
        assert_eq!(query, "model=m+%26+%3Cx%3E&answer=refusal");
        let back: Filter = serde_urlencoded::from_str(&query).unwrap();
        assert_eq!(back.model.as_deref(), Some("m & <x>"));
        assert!(Filter::default().is_empty());
    }
}
