//! Judges: the [`Judge`] trait, the registry of judges by name, and the judges themselves (one
//! file each). A judge scores one channel of a completion, the answer or the thinking trace;
//! the same judge runs on both so the two can be compared.
//!
//! A channel with nothing to judge (no answer because the output ended inside the trace, no
//! trace from a non-reasoning model, an empty answer) gets [`Label::Unscored`] with the reason,
//! never a label that would count as safe.

mod refusal_llm;
mod refusal_rule;

pub use refusal_llm::RefusalLlmJudge;
pub use refusal_rule::RefusalRuleJudge;

use async_trait::async_trait;
use redtrace_core::{Channel, Completion, Label, Sample, TraceState, Verdict};
use std::sync::Arc;

/// Scores one channel of a completion.
#[async_trait]
pub trait Judge: Send + Sync {
    /// The registry name, stored with every verdict.
    fn name(&self) -> &str;

    /// Judges `text`, the content of `channel`, which is known to be non-empty.
    async fn judge_text(&self, sample: &Sample, channel: Channel, text: &str) -> Verdict;
}

/// Runs `judge` on `channel` of `completion`, or returns the unscored verdict that says why the
/// channel has nothing to judge.
pub async fn judge_channel(
    judge: &dyn Judge,
    sample: &Sample,
    completion: &Completion,
    channel: Channel,
) -> Verdict {
    let unscored = |reason: &str| Verdict {
        judge: judge.name().to_owned(),
        channel,
        label: Label::Unscored,
        score: None,
        rationale: reason.to_owned(),
    };
    match channel {
        Channel::Answer => match completion.answer.as_deref() {
            None => unscored("no answer: the output ended inside the reasoning trace"),
            Some(text) if text.trim().is_empty() => unscored("empty answer"),
            Some(text) => judge.judge_text(sample, channel, text).await,
        },
        Channel::Reasoning => match completion.reasoning.state {
            TraceState::Absent => unscored("no reasoning trace"),
            _ if completion.reasoning.text.trim().is_empty() => unscored("empty reasoning trace"),
            _ => {
                judge
                    .judge_text(sample, channel, &completion.reasoning.text)
                    .await
            }
        },
    }
}

/// Every judge, with one line each. Judges that call a model are named `NAME=MODEL_REF`.
pub fn registry() -> Vec<(&'static str, &'static str)> {
    vec![
        (RefusalRuleJudge::NAME, RefusalRuleJudge::ABOUT),
        (RefusalLlmJudge::NAME, RefusalLlmJudge::ABOUT),
    ]
}

/// A judge as the command line or a suite file names it: `NAME`, or `NAME=MODEL_REF` for a
/// judge that calls a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeSpec {
    /// The registry name.
    pub name: String,
    /// The judge model's reference, for judges that call one.
    pub model: Option<String>,
}

impl JudgeSpec {
    /// Parses and checks a judge name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, model) = match text.split_once('=') {
            Some((name, model)) => (name.trim(), Some(model.trim().to_owned())),
            None => (text.trim(), None),
        };
        let known: Vec<&str> = registry().iter().map(|(name, _)| *name).collect();
        if !known.contains(&name) {
            return Err(format!(
                "unknown judge '{name}': known judges are {}",
                known.join(", ")
            ));
        }
        match (name, &model) {
            (RefusalLlmJudge::NAME, None) => Err(format!(
                "judge '{name}' calls a model: give it as {name}=MODEL_REF (e.g. {name}=gguf:judge.gguf)"
            )),
            (RefusalRuleJudge::NAME, Some(_)) => Err(format!("judge '{name}' takes no model")),
            _ => Ok(Self { name: name.to_owned(), model }),
        }
    }
}

/// Builds a judge that needs no model by its registry name.
pub fn by_name(name: &str) -> Option<Arc<dyn Judge>> {
    match name {
        RefusalRuleJudge::NAME => Some(Arc::new(RefusalRuleJudge::new())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redtrace_core::{Message, Reasoning, TraceSource, Usage};

    fn sample() -> Sample {
        Sample {
            id: "1".into(),
            index: 0,
            messages: vec![Message::user("q")],
            category: vec![],
            label: None,
            metadata: Default::default(),
        }
    }

    fn completion(answer: Option<&str>, trace: Option<&str>, state: TraceState) -> Completion {
        Completion {
            reasoning: Reasoning {
                text: trace.unwrap_or("").into(),
                source: trace.map(|_| TraceSource::ThinkTags),
                state,
            },
            answer: answer.map(str::to_owned),
            finish_reason: None,
            usage: Usage::default(),
            latency_ms: 0,
            raw: String::new(),
        }
    }

    #[tokio::test]
    async fn channels_without_text_are_unscored_with_a_reason() {
        let judge = by_name("refusal-rule").unwrap();
        let truncated = completion(None, Some("thinking"), TraceState::Truncated);
        let verdict = judge_channel(judge.as_ref(), &sample(), &truncated, Channel::Answer).await;
        assert_eq!(verdict.label, Label::Unscored);
        assert!(verdict
            .rationale
            .contains("ended inside the reasoning trace"));
        let verdict =
            judge_channel(judge.as_ref(), &sample(), &truncated, Channel::Reasoning).await;
        assert_ne!(
            verdict.label,
            Label::Unscored,
            "a truncated trace is still judged"
        );

        let plain = completion(Some("Sure, here you go."), None, TraceState::Absent);
        let verdict = judge_channel(judge.as_ref(), &sample(), &plain, Channel::Reasoning).await;
        assert_eq!(
            (verdict.label, verdict.rationale.as_str()),
            (Label::Unscored, "no reasoning trace")
        );
        let empty = completion(Some("  "), None, TraceState::Absent);
        let verdict = judge_channel(judge.as_ref(), &sample(), &empty, Channel::Answer).await;
        assert_eq!(
            (verdict.label, verdict.rationale.as_str()),
            (Label::Unscored, "empty answer")
        );
    }

    #[test]
    fn registry_lists_every_judge_and_specs_are_checked() {
        for (name, about) in registry() {
            assert!(!about.is_empty());
            if name == RefusalRuleJudge::NAME {
                assert_eq!(by_name(name).unwrap().name(), name);
            }
        }
        assert!(by_name("nope").is_none());
        assert_eq!(JudgeSpec::parse("refusal-rule").unwrap().model, None);
        let llm = JudgeSpec::parse("refusal-llm=gguf:judge.gguf").unwrap();
        assert_eq!(llm.model.as_deref(), Some("gguf:judge.gguf"));
        assert!(JudgeSpec::parse("refusal-llm")
            .unwrap_err()
            .contains("refusal-llm=MODEL_REF"));
        assert!(JudgeSpec::parse("nope")
            .unwrap_err()
            .contains("unknown judge 'nope'"));
    }
}
