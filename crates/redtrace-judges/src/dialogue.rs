//! A multi-turn benchmark as a solver: the target's turns alternate with a [`Responder`]'s
//! replies (the spear-phishing victim) until the responder stops, the target has had its
//! turns, or a turn ends without an answer.

use async_trait::async_trait;
use redtrace_core::solver::{Solved, Solver, Target};
use redtrace_core::{Completion, Message, Reasoning, Sample, TraceState, Usage};
use std::sync::Arc;

use crate::Responder;

/// A conversation with a responder. The completion is the exchange: the answer is the
/// transcript (`ASSISTANT:` and `USER:` turns after the opening request), the trace the
/// target's traces turn by turn, usage and latency their sums, `raw` the turns as JSON.
pub struct Dialogue(pub Arc<dyn Responder>);

#[async_trait]
impl Solver for Dialogue {
    fn cache_key(&self) -> Option<String> {
        // A conversation is cached as a whole, apart from single replies.
        Some(format!("dialogue:{}", self.0.name()))
    }

    async fn solve(&self, sample: &Sample, target: &dyn Target) -> Result<Solved, String> {
        let responder = self.0.as_ref();
        let mut conversation = sample.messages.clone();
        let mut transcript = String::new();
        let mut traces = String::new();
        let mut usage = Usage::default();
        let mut latency = 0;
        let mut turns = Vec::new();
        let mut last: Option<Completion> = None;
        let add = |sum: &mut Option<u64>, value: Option<u64>| {
            if let Some(value) = value {
                *sum = Some(sum.unwrap_or(0) + value);
            }
        };
        for turn in 1..=responder.max_turns() {
            let completion = match target.send(conversation.clone()).await {
                Ok(completion) => completion,
                // A failure after the first turn keeps what was said so far.
                Err(error) if last.is_none() => return Err(error),
                Err(_) => break,
            };
            add(&mut usage.prompt_tokens, completion.usage.prompt_tokens);
            add(
                &mut usage.completion_tokens,
                completion.usage.completion_tokens,
            );
            add(
                &mut usage.reasoning_tokens,
                completion.usage.reasoning_tokens,
            );
            latency += completion.latency_ms;
            if !completion.reasoning.text.is_empty() {
                traces.push_str(&format!("[turn {turn}]\n{}\n\n", completion.reasoning.text));
            }
            let Some(answer) = completion.answer.clone() else {
                last = Some(completion);
                break;
            };
            transcript.push_str(&format!("ASSISTANT: {}\n\n", answer.trim()));
            turns.push(serde_json::json!({"role": "assistant", "content": answer, "reasoning": completion.reasoning.text}));
            conversation.push(Message::assistant(answer));
            last = Some(completion);
            if turn == responder.max_turns() {
                break;
            }
            match responder.reply(sample, &conversation).await {
                Ok(Some(reply)) => {
                    transcript.push_str(&format!("USER: {}\n\n", reply.trim()));
                    turns.push(serde_json::json!({"role": "user", "content": reply}));
                    conversation.push(Message::user(reply));
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(sample = %sample.id, %error, "the responder failed; the conversation ends here");
                    turns.push(serde_json::json!({"role": "user", "error": error}));
                    break;
                }
            }
        }
        let last = last.ok_or("the conversation had no turn")?;
        let reasoning = Reasoning {
            text: traces.trim_end().to_owned(),
            source: last.reasoning.source,
            state: if traces.is_empty() {
                TraceState::Absent
            } else {
                last.reasoning.state
            },
        };
        Ok(Solved::plain(Completion {
            reasoning,
            answer: (!transcript.is_empty()).then(|| transcript.trim_end().to_owned()),
            finish_reason: last.finish_reason,
            usage,
            latency_ms: latency,
            raw: serde_json::Value::Array(turns).to_string(),
        }))
    }
}
