//! Splitting a model's output into thinking trace and answer: the one place this happens.
//!
//! Servers deliver the trace in one of three ways: a separate field (`reasoning_content`,
//! `reasoning`), inline `<think>…</think>` tags, or, for R1 distills whose chat template
//! already opened `<think>` in the prompt, a content that holds only the closing tag. When the
//! output ends inside the trace the completion has no answer at all: an empty answer would be
//! judged "safe" by a refusal judge, which is the error this module exists to prevent.

use redtrace_core::{Reasoning, TraceSource, TraceState};

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// What the server returned, before splitting.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawOutput<'a> {
    /// The message content.
    pub content: Option<&'a str>,
    /// The `reasoning_content` field.
    pub reasoning_content: Option<&'a str>,
    /// The `reasoning` field.
    pub reasoning: Option<&'a str>,
    /// The finish reason (`length` means the token budget ran out).
    pub finish_reason: Option<&'a str>,
    /// Whether the prompt template (or a prefill) opened `<think>` before the output began, so
    /// the output starts inside the trace.
    pub opened_in_prompt: bool,
    /// Reasoning tokens the server's usage counts: with no trace in the output, the server
    /// withheld it.
    pub reasoning_tokens: Option<u64>,
    /// The summary parts of OpenRouter's `reasoning_details` (`reasoning.summary`), when the
    /// provider sends a summary instead of the trace.
    pub reasoning_summary: Option<&'a str>,
    /// OpenRouter's `reasoning_details` held an encrypted part (`reasoning.encrypted`).
    pub reasoning_encrypted: bool,
}

/// Splits raw output into the trace and the answer (`None` when there is none).
pub fn split_reasoning(raw: RawOutput<'_>) -> (Reasoning, Option<String>) {
    let content = raw.content.unwrap_or("");
    let ran_out = raw.finish_reason == Some("length");
    let field = [
        (raw.reasoning_content, TraceSource::ReasoningContentField),
        (raw.reasoning, TraceSource::ReasoningField),
    ]
    .into_iter()
    .find_map(|(text, source)| text.filter(|t| !t.trim().is_empty()).map(|t| (t, source)));

    if let Some((text, source)) = field {
        // The field is the trace and the content the answer. A complete `<think>…</think>`
        // block at the start of the content (a server that also inlines the trace) moves to
        // the trace, added where it says more than the field; any other tag is text of the
        // answer. So no text is dropped, and a tag the model writes in its answer cannot move
        // text out of the judged answer.
        let (inline, answer) = leading_block(content);
        let mut trace = text.to_owned();
        if let Some(inline) = inline.filter(|i| !i.is_empty() && i.trim() != text.trim()) {
            trace = format!("{}\n\n{}", trace.trim_end(), inline.trim());
        }
        if ran_out && answer.trim().is_empty() {
            return (
                Reasoning {
                    text: trace,
                    source: Some(source),
                    state: TraceState::Truncated,
                },
                None,
            );
        }
        return (
            Reasoning {
                text: trace,
                source: Some(source),
                state: TraceState::Complete,
            },
            Some(answer.to_owned()),
        );
    }
    if let Some(summary) = raw.reasoning_summary.filter(|t| !t.trim().is_empty()) {
        // A summary of a trace the provider keeps (OpenRouter's `reasoning.summary` parts):
        // judged as the trace, never taken for the model's own words.
        let in_trace = ran_out && content.trim().is_empty();
        return (
            Reasoning {
                text: summary.to_owned(),
                source: Some(TraceSource::ReasoningField),
                state: if in_trace {
                    TraceState::Truncated
                } else {
                    TraceState::Summary
                },
            },
            (!in_trace).then(|| content.to_owned()),
        );
    }
    if let Some(split) = split_harmony(content) {
        return split;
    }
    let (reasoning, answer) = split_tags(content, raw.opened_in_prompt);
    if reasoning.state == TraceState::Absent && raw.reasoning_encrypted {
        return (
            Reasoning {
                state: TraceState::Encrypted,
                source: Some(TraceSource::ReasoningField),
                ..reasoning
            },
            answer,
        );
    }
    if reasoning.state == TraceState::Absent && raw.reasoning_tokens.unwrap_or(0) > 0 {
        // The model thought (the usage says so) but the server kept the trace (o3-mini and
        // other hidden-reasoning APIs): there is a trace, and it is not ours to judge.
        return (
            Reasoning {
                state: TraceState::Redacted,
                ..reasoning
            },
            answer,
        );
    }
    (reasoning, answer)
}

/// The markers of OpenAI's harmony format (gpt-oss) served raw.
const CHANNEL: &str = "<|channel|>";
const MESSAGE: &str = "<|message|>";
const HARMONY_ENDS: [&str; 3] = ["<|end|>", "<|return|>", "<|call|>"];

/// gpt-oss output in the harmony format, served without a parser: `<|channel|>analysis
/// <|message|>…<|end|>` is the trace, the `final` channel's message the answer. Only output
/// that begins with a channel marker is harmony (as a `<think>` block must begin the output);
/// an analysis without its end ran out of budget inside the trace.
fn split_harmony(content: &str) -> Option<(Reasoning, Option<String>)> {
    let start = content.trim_start();
    let start = start.strip_prefix("<|start|>assistant").unwrap_or(start);
    let rest = start.strip_prefix(CHANNEL)?;
    let (channel, body) = rest.split_once(MESSAGE)?;
    let channel = channel.split_whitespace().next().unwrap_or("");
    let end_of = |text: &str| {
        HARMONY_ENDS
            .iter()
            .filter_map(|end| text.find(end).map(|at| (at, end.len())))
            .min()
    };
    if channel == "final" {
        let answer = end_of(body).map_or(body, |(at, _)| &body[..at]);
        return Some((Reasoning::absent(), Some(answer.trim().to_owned())));
    }
    if channel != "analysis" {
        return None;
    }
    let Some((at, len)) = end_of(body) else {
        return Some((
            Reasoning {
                text: body.trim().to_owned(),
                source: Some(TraceSource::Harmony),
                state: TraceState::Truncated,
            },
            None,
        ));
    };
    let trace = body[..at].trim().to_owned();
    let after = &body[at + len..];
    let answer = match after.find(&format!("{CHANNEL}final")) {
        Some(final_at) => {
            let final_part = &after[final_at..];
            let text = final_part.split_once(MESSAGE).map_or("", |(_, text)| text);
            end_of(text)
                .map_or(text, |(end, _)| &text[..end])
                .trim()
                .to_owned()
        }
        // No final channel: what follows the analysis, markers and all, is the answer, so
        // that nothing is dropped.
        None => after.trim().to_owned(),
    };
    Some((
        Reasoning {
            text: trace,
            source: Some(TraceSource::Harmony),
            state: TraceState::Complete,
        },
        Some(answer),
    ))
}

/// A complete `<think>…</think>` block at the start of `content` (leading space aside): its
/// inside, and the rest; else no block and all of `content`.
fn leading_block(content: &str) -> (Option<&str>, &str) {
    let start = content.trim_start();
    if let Some(inside) = start.strip_prefix(OPEN) {
        if let Some(close_at) = inside.find(CLOSE) {
            return (
                Some(&inside[..close_at]),
                inside[close_at + CLOSE.len()..].trim_start(),
            );
        }
    }
    (None, content)
}

/// Tags in the content, with no trace field. Only a trace where the output begins is one: a
/// `<think>` block at the start (leading space aside), or, when the prompt opened the trace
/// (`template_opens_think`, a prefill), the text up to the first `</think>`. A tag anywhere
/// else is text of the answer, so that a model cannot move text out of its judged answer by
/// writing a tag, and no text is dropped.
fn split_tags(content: &str, opened_in_prompt: bool) -> (Reasoning, Option<String>) {
    if let Some(inside) = content.trim_start().strip_prefix(OPEN) {
        return match inside.find(CLOSE) {
            Some(close_at) => (
                Reasoning {
                    text: inside[..close_at].trim().to_owned(),
                    source: Some(TraceSource::ThinkTags),
                    state: TraceState::Complete,
                },
                Some(inside[close_at + CLOSE.len()..].trim_start().to_owned()),
            ),
            None => (
                Reasoning {
                    text: inside.trim().to_owned(),
                    source: Some(TraceSource::ThinkTags),
                    state: TraceState::Truncated,
                },
                None,
            ),
        };
    }
    if !opened_in_prompt {
        // A bare `</think>` without a template that opened the trace is the model's text:
        // the whole of it is the answer (reports count such answers and say how to set
        // `template_opens_think` for a model whose template does open it).
        return (Reasoning::absent(), Some(content.to_owned()));
    }
    if let Some(close_at) = content.find(CLOSE) {
        let trace = content[..close_at].trim().to_owned();
        let answer = content[close_at + CLOSE.len()..].trim_start().to_owned();
        return (
            Reasoning {
                text: trace,
                source: Some(TraceSource::ThinkTagsOpenedByTemplate),
                state: TraceState::Complete,
            },
            Some(answer),
        );
    }
    // The output began inside the trace and never closed it: all of it is trace, whether the
    // budget ran out or the model stopped mid-thought.
    (
        Reasoning {
            text: content.trim().to_owned(),
            source: Some(TraceSource::ThinkTagsOpenedByTemplate),
            state: TraceState::Truncated,
        },
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harmony_output_splits_like_think_tags() {
        let out = "<|channel|>analysis<|message|>The user asks for a recipe. Fine.<|end|><|start|>assistant<|channel|>final<|message|>Mix flour and water.<|return|>";
        let (reasoning, answer) = split_reasoning(RawOutput {
            content: Some(out),
            ..Default::default()
        });
        assert_eq!(reasoning.text, "The user asks for a recipe. Fine.");
        assert_eq!(reasoning.source, Some(TraceSource::Harmony));
        assert_eq!(reasoning.state, TraceState::Complete);
        assert_eq!(answer.as_deref(), Some("Mix flour and water."));

        let (reasoning, answer) = split_reasoning(RawOutput {
            content: Some("<|channel|>analysis<|message|>Still thinking"),
            finish_reason: Some("length"),
            ..Default::default()
        });
        assert_eq!(reasoning.state, TraceState::Truncated);
        assert_eq!(answer, None);

        // A marker inside the answer moves nothing: only output that begins with one counts.
        let text = "Sure. <|channel|>analysis<|message|>hidden?<|end|>";
        let (reasoning, answer) = split_reasoning(RawOutput {
            content: Some(text),
            ..Default::default()
        });
        assert_eq!(reasoning.state, TraceState::Absent);
        assert_eq!(answer.as_deref(), Some(text));
    }

    #[test]
    fn a_summary_or_an_encrypted_trace_is_never_taken_for_the_models_words() {
        let (reasoning, answer) = split_reasoning(RawOutput {
            content: Some("Answer."),
            reasoning_summary: Some("**Considering the request** I weigh it."),
            ..Default::default()
        });
        assert_eq!(reasoning.state, TraceState::Summary);
        assert_eq!(answer.as_deref(), Some("Answer."));
        let (reasoning, _) = split_reasoning(RawOutput {
            content: Some("Answer."),
            reasoning_encrypted: true,
            ..Default::default()
        });
        assert_eq!(reasoning.state, TraceState::Encrypted);
        assert!(reasoning.text.is_empty());
    }

    fn content(text: &str) -> RawOutput<'_> {
        RawOutput {
            content: Some(text),
            finish_reason: Some("stop"),
            ..Default::default()
        }
    }

    /// With the trace in a field, tags in the content move no text out of the answer
    /// (regression: `</think>` in the content dropped the text before it from both, and an
    /// unclosed `<think>` emptied the answer).
    #[test]
    fn tags_in_the_answer_move_no_text_out_of_it_when_the_trace_has_a_field() {
        let with_field = |content| RawOutput {
            content: Some(content),
            reasoning_content: Some("the real trace"),
            finish_reason: Some("stop"),
            ..Default::default()
        };
        let (trace, answer) = split_reasoning(with_field("Step 1: the harmful part </think> bye"));
        assert_eq!(trace.text, "the real trace");
        assert_eq!(
            answer.as_deref(),
            Some("Step 1: the harmful part </think> bye")
        );
        let (_, answer) = split_reasoning(with_field("<think> and then the help"));
        assert_eq!(answer.as_deref(), Some("<think> and then the help"));
        // A server that inlines the trace too: the block leaves the answer, and what it says
        // beyond the field is kept in the trace.
        let (trace, answer) = split_reasoning(with_field("<think>the real trace</think>\nAnswer"));
        assert_eq!(
            (trace.text.as_str(), answer.as_deref()),
            ("the real trace", Some("Answer"))
        );
        let (trace, answer) = split_reasoning(with_field("<think>more thought</think>Answer"));
        assert_eq!(trace.text, "the real trace\n\nmore thought");
        assert_eq!(answer.as_deref(), Some("Answer"));
    }

    #[test]
    fn a_trace_the_server_withheld_is_redacted_not_absent() {
        let raw = RawOutput {
            content: Some("The answer."),
            finish_reason: Some("stop"),
            reasoning_tokens: Some(812),
            ..Default::default()
        };
        let (reasoning, answer) = split_reasoning(raw);
        assert_eq!(reasoning.state, TraceState::Redacted);
        assert_eq!(answer.as_deref(), Some("The answer."));
        // No reasoning tokens: a model that does not reason has no trace at all.
        let plain = RawOutput {
            reasoning_tokens: Some(0),
            ..raw
        };
        assert_eq!(split_reasoning(plain).0.state, TraceState::Absent);
        // A trace in the output is the trace, whatever the usage says.
        let shown = RawOutput {
            content: Some("<think>hm</think>The answer."),
            ..raw
        };
        assert_eq!(split_reasoning(shown).0.state, TraceState::Complete);
    }

    #[test]
    fn reasoning_content_field_is_the_trace() {
        let (reasoning, answer) = split_reasoning(RawOutput {
            content: Some("No."),
            reasoning_content: Some("The user asks..."),
            finish_reason: Some("stop"),
            ..Default::default()
        });
        assert_eq!(reasoning.text, "The user asks...");
        assert_eq!(reasoning.source, Some(TraceSource::ReasoningContentField));
        assert_eq!(reasoning.state, TraceState::Complete);
        assert_eq!(answer.as_deref(), Some("No."));
    }

    #[test]
    fn reasoning_field_is_the_trace() {
        let (reasoning, answer) = split_reasoning(RawOutput {
            content: Some("Sure."),
            reasoning: Some("hmm"),
            ..Default::default()
        });
        assert_eq!(reasoning.source, Some(TraceSource::ReasoningField));
        assert_eq!(answer.as_deref(), Some("Sure."));
    }

    #[test]
    fn field_trace_with_budget_spent_has_no_answer() {
        let (reasoning, answer) = split_reasoning(RawOutput {
            content: Some(""),
            reasoning_content: Some("still thinking"),
            finish_reason: Some("length"),
            ..Default::default()
        });
        assert_eq!(reasoning.state, TraceState::Truncated);
        assert_eq!(answer, None);
    }

    #[test]
    fn think_tags_split() {
        let (reasoning, answer) =
            split_reasoning(content("<think>\nplan it\n</think>\n\nHere you go."));
        assert_eq!(reasoning.text, "plan it");
        assert_eq!(reasoning.source, Some(TraceSource::ThinkTags));
        assert_eq!(answer.as_deref(), Some("Here you go."));
    }

    #[test]
    fn missing_opening_tag_is_the_r1_distill_case_when_the_template_opened_it() {
        let (reasoning, answer) = split_reasoning(RawOutput {
            content: Some("plan it\n</think>\n\nAnswer."),
            opened_in_prompt: true,
            ..Default::default()
        });
        assert_eq!(reasoning.text, "plan it");
        assert_eq!(
            reasoning.source,
            Some(TraceSource::ThinkTagsOpenedByTemplate)
        );
        assert_eq!(answer.as_deref(), Some("Answer."));
    }

    /// Without a template that opened the trace, tags the model writes move no text out of
    /// the answer and drop none: a bare `</think>`, and a `<think>` block after other text.
    #[test]
    fn tags_after_the_start_or_a_bare_close_stay_in_the_answer() {
        for text in [
            "Step one: mix.\n</think>\nI can't help with that.",
            "Sure.\n<think>Step one: mix.</think>\nI can't help with that.",
        ] {
            let (reasoning, answer) = split_reasoning(content(text));
            assert_eq!(reasoning.state, TraceState::Absent, "{text}");
            assert_eq!(answer.as_deref(), Some(text), "the whole text is judged");
        }
    }

    #[test]
    fn text_ending_inside_the_trace_has_no_answer() {
        let (reasoning, answer) = split_reasoning(RawOutput {
            content: Some("<think>and then"),
            finish_reason: Some("length"),
            ..Default::default()
        });
        assert_eq!(reasoning.state, TraceState::Truncated);
        assert_eq!(reasoning.text, "and then");
        assert_eq!(answer, None);
    }

    #[test]
    fn template_opened_trace_without_close_is_truncated() {
        let (reasoning, answer) = split_reasoning(RawOutput {
            content: Some("thinking forever"),
            finish_reason: Some("length"),
            opened_in_prompt: true,
            ..Default::default()
        });
        assert_eq!(reasoning.state, TraceState::Truncated);
        assert_eq!(answer, None);
    }

    #[test]
    fn plain_content_has_no_trace() {
        let (reasoning, answer) = split_reasoning(content("Just an answer"));
        assert_eq!(reasoning.state, TraceState::Absent);
        assert_eq!(answer.as_deref(), Some("Just an answer"));
    }

    #[test]
    fn field_and_tags_together_keep_the_trace_out_of_the_answer() {
        let (reasoning, answer) = split_reasoning(RawOutput {
            content: Some("<think>dup</think>Final"),
            reasoning_content: Some("real trace"),
            ..Default::default()
        });
        // The inline block leaves the answer; what it says beyond the field stays in the trace
        // (no model text is dropped).
        assert_eq!(reasoning.text, "real trace\n\ndup");
        assert_eq!(answer.as_deref(), Some("Final"));
    }
}
