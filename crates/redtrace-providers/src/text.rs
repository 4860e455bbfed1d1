//! Text completions with log-probabilities: what a judge needs whose model is not a chat
//! assistant (a guard model's raw instruction format, a classifier's `Yes`/`No` read from the
//! probabilities of its first token). A [`TextRequest`] is a raw prompt, sent as is with no
//! chat template, or a conversation sent as it stands (a final assistant turn is a turn, not a
//! prefill); the [`TextReply`] carries the text and, when asked, the top log-probabilities of
//! every chosen token.

use redtrace_core::{Message, StopReason, Usage};
use serde::{Deserialize, Serialize};

/// What a text request sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextPrompt {
    /// A prompt sent as is: the model sees exactly these characters (its special tokens
    /// parsed as tokens), no chat template around them.
    Raw(String),
    /// A conversation, through the model's chat template, with no prefill.
    Chat(Vec<Message>),
}

/// One text request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextRequest {
    /// The prompt.
    pub prompt: TextPrompt,
    /// Tokens to generate at most (the model's `max_tokens` when `None`).
    pub max_tokens: Option<u64>,
    /// How many of the most likely tokens to return at each position (`None`: no
    /// log-probabilities).
    pub top_logprobs: Option<u8>,
}

/// A chosen token, its log-probability and the most likely tokens at its position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprobs {
    /// The chosen token's text.
    pub token: String,
    /// Its natural log-probability.
    pub logprob: f64,
    /// The most likely tokens at its position with their log-probabilities, most likely first.
    pub top: Vec<(String, f64)>,
}

/// What a text request returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextReply {
    /// The generated text.
    pub text: String,
    /// The chosen tokens with their log-probabilities, when they were asked for (servers may
    /// send fewer than the tokens of `text`).
    pub tokens: Vec<TokenLogprobs>,
    /// Why generation stopped.
    pub finish_reason: Option<StopReason>,
    /// Token usage.
    pub usage: Usage,
}

impl TextReply {
    /// The probability (0 to 1) the model gave at the first position to each of `choices`,
    /// matched after trimming spaces (`" Yes"` is `Yes`), summed over tokens that match; `None`
    /// when no log-probabilities came back. A choice not among the returned top tokens has at
    /// most the smallest listed probability: it is returned as 0 with `bounded` set.
    pub fn first_token_probabilities(&self, choices: &[&str]) -> Option<FirstToken> {
        let first = self.tokens.first()?;
        let mut top = first.top.clone();
        if top.is_empty() {
            top.push((first.token.clone(), first.logprob));
        }
        let mut probabilities = vec![0.0; choices.len()];
        let mut found = vec![false; choices.len()];
        for (token, logprob) in &top {
            let token = token.trim();
            for (i, choice) in choices.iter().enumerate() {
                if token == *choice {
                    probabilities[i] += logprob.exp();
                    found[i] = true;
                }
            }
        }
        Some(FirstToken {
            probabilities,
            bounded: found.iter().any(|found| !found),
            smallest_listed: top
                .iter()
                .map(|(_, logprob)| logprob.exp())
                .fold(1.0, f64::min),
        })
    }
}

/// The probabilities of some choices at the first generated position.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstToken {
    /// One per choice, in the order asked.
    pub probabilities: Vec<f64>,
    /// Some choice was not among the listed tokens (its probability is 0 here, at most
    /// `smallest_listed` in truth).
    pub bounded: bool,
    /// The smallest probability listed.
    pub smallest_listed: f64,
}
