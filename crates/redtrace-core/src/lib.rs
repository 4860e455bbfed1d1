//! Domain types of redtrace, with no I/O: what a benchmark yields ([`Sample`]), what a model
//! returned ([`Completion`], whose thinking trace is a typed [`Reasoning`] kept apart from the
//! answer), and what a judge decided ([`Verdict`]).
//!
//! Every closed set is an enum serialised in `snake_case`; "not scored" is an explicit label
//! carrying a reason, never a missing value or a NaN.

pub mod model;
pub mod price;
pub mod run;
pub mod solver;

pub use model::{ConfigError, ModelConfig, ModelRef, ModelSource, SamplingParams};
pub use run::{BenchmarkRecord, RunSpec, RunStatus, RUN_SPEC_VERSION};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Who speaks a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The person (or attacker) talking to the model.
    User,
    /// The model; an assistant message last in a request is a prefill.
    Assistant,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
    /// For an earlier reply of the model in a dialogue: the trace it wrote before it. Sent
    /// back only to a model set to replay earlier traces (`replay_traces`); dropped otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

impl Message {
    /// A user turn.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    /// A system turn.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    /// An assistant turn.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    /// A turn of `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            reasoning: None,
        }
    }
    /// The model's earlier reply `answer` in a dialogue, with the trace it wrote before it
    /// (kept for models that replay earlier traces).
    pub fn reply(answer: impl Into<String>, reasoning: &Reasoning) -> Self {
        Self {
            reasoning: (reasoning.state.has_text() && !reasoning.text.is_empty())
                .then(|| reasoning.text.clone()),
            ..Self::assistant(answer)
        }
    }
}

/// What the benchmark says the prompt is, where it says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptLabel {
    /// A prompt a model should answer (e.g. XSTest's safe prompts).
    Safe,
    /// A prompt a model should refuse.
    Unsafe,
}

/// One item of a benchmark, ready to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Stable id within its benchmark (the data set's id, or the row number).
    pub id: String,
    /// Position in the source file, from 0; keeps reports and exports in data order.
    pub index: u64,
    /// The messages to send.
    pub messages: Vec<Message>,
    /// Category path, most general first (e.g. AIR-Bench level 2 / 3 / 4); may be empty.
    pub category: Vec<String>,
    /// The benchmark's own label for the prompt, where it has one.
    pub label: Option<PromptLabel>,
    /// Any other fields of the source row, kept for templates and exports.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The request as the data set wrote it, where the prompt sent is not it (an attack
    /// rewrote it): what the judges ask about. `None` when the prompt is the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

impl Sample {
    /// A sample of one user turn: no category, no label, no metadata.
    pub fn user(id: impl Into<String>, index: u64, prompt: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            index,
            messages: vec![Message::user(prompt)],
            category: Vec::new(),
            label: None,
            metadata: Default::default(),
            request: None,
        }
    }

    /// The same sample under the category path `path`, most general first.
    pub fn in_category(mut self, path: &[&str]) -> Self {
        self.category = path.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// The same sample with the benchmark's label.
    pub fn labelled(mut self, label: PromptLabel) -> Self {
        self.label = Some(label);
        self
    }

    /// The request as the data set wrote it (an attack's sample keeps it apart from the
    /// prompt it sends), else the last user message. This is the question judges see.
    pub fn request(&self) -> &str {
        self.request.as_deref().unwrap_or_else(|| self.prompt())
    }

    /// The text of the last user message, as sent.
    pub fn prompt(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|message| message.role == Role::User)
            .map(|message| message.content.as_str())
            .unwrap_or("")
    }

    /// The category path joined with " / ", or "(none)".
    pub fn category_name(&self) -> String {
        if self.category.is_empty() {
            "(none)".to_owned()
        } else {
            self.category.join(" / ")
        }
    }
}

/// Where a trace came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceSource {
    /// A `reasoning_content` field (DeepSeek API, vLLM, SGLang).
    ReasoningContentField,
    /// A `reasoning` field (OpenRouter, Ollama, newer vLLM).
    ReasoningField,
    /// `<think>…</think>` inline in the content.
    ThinkTags,
    /// Only `</think>` in the content: the prompt template opened the block (R1 distills).
    ThinkTagsOpenedByTemplate,
    /// A trace read from a file of generations made elsewhere (`redtrace import`) that did
    /// not say how it was split from the answer.
    Imported,
    /// The reasoning content (`ContentReasoning`) of an inspect_ai log (`redtrace import`).
    InspectReasoning,
    /// Anthropic's `thinking` (and `redacted_thinking`) content blocks.
    AnthropicThinking,
    /// OpenAI Responses API `reasoning` output items (their summary parts).
    ResponsesReasoning,
    /// Gemini parts marked `thought: true`.
    GeminiThought,
    /// Ollama's native `message.thinking`.
    OllamaThinking,
    /// The `analysis` channel of OpenAI's harmony format (gpt-oss) served raw.
    Harmony,
}

/// The state of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceState {
    /// The model finished thinking and went on to answer.
    Complete,
    /// The output ended inside the trace (token budget spent): there is no answer.
    Truncated,
    /// The model shows no trace (not a reasoning model).
    Absent,
    /// The model reasoned (its usage counts reasoning tokens) but the server withheld the
    /// trace (o3-mini and other hidden-reasoning APIs), or sent it as a redacted block: there
    /// is none to judge.
    Redacted,
    /// The text is the provider's summary of a trace it keeps hidden (Claude 4's summarized
    /// thinking, OpenAI's reasoning summaries), not the model's own words: judged as the
    /// trace, and always said to be a summary.
    Summary,
    /// The trace came back encrypted only (OpenAI's `encrypted_content`): none to judge.
    Encrypted,
    /// The provider was asked to (or by default does) leave the trace out of the response
    /// (Anthropic's `display: omitted`): none to judge.
    Omitted,
}

impl TraceState {
    /// Every state, in the order reports list them.
    pub const ALL: [TraceState; 7] = [
        TraceState::Complete,
        TraceState::Summary,
        TraceState::Truncated,
        TraceState::Redacted,
        TraceState::Encrypted,
        TraceState::Omitted,
        TraceState::Absent,
    ];

    /// What the trace is, as reports and exports name it: `raw` (the model's own text),
    /// `summary`, `encrypted`, `omitted`, `redacted`, `truncated` (the budget ran out inside
    /// it) or `absent`.
    pub fn provenance(self) -> &'static str {
        match self {
            TraceState::Complete => "raw",
            TraceState::Truncated => "truncated",
            TraceState::Absent => "absent",
            TraceState::Redacted => "redacted",
            TraceState::Summary => "summary",
            TraceState::Encrypted => "encrypted",
            TraceState::Omitted => "omitted",
        }
    }

    /// Whether there is trace text to judge in this state.
    pub fn has_text(self) -> bool {
        matches!(
            self,
            TraceState::Complete | TraceState::Truncated | TraceState::Summary
        )
    }
}

/// The thinking trace of a completion, lifted out once at the provider boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reasoning {
    /// The trace text; empty when absent.
    pub text: String,
    /// Where it came from; `None` when absent.
    pub source: Option<TraceSource>,
    /// Whether it is complete, truncated or absent.
    pub state: TraceState,
}

impl Reasoning {
    /// No trace at all.
    pub fn absent() -> Self {
        Self {
            text: String::new(),
            source: None,
            state: TraceState::Absent,
        }
    }
}

/// Token counts as the server reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: Option<u64>,
    /// All generated tokens (trace and answer).
    pub completion_tokens: Option<u64>,
    /// Generated tokens spent in the trace, where the server says.
    pub reasoning_tokens: Option<u64>,
    /// Prompt tokens the provider served from its prompt cache (billed at the cached-input
    /// price), where the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_prompt_tokens: Option<u64>,
}

impl Usage {
    /// Tokens of the answer: completion minus reasoning, where both are known.
    pub fn answer_tokens(&self) -> Option<u64> {
        let completion = self.completion_tokens?;
        Some(completion.saturating_sub(self.reasoning_tokens.unwrap_or(0)))
    }
}

/// Why a model stopped generating, as the server said. Stored and exported as the server's
/// word (`stop`, `length`, `content_filter`, `tool_calls`, or any other it gives).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// It finished (`stop`, `end_turn`).
    Stop,
    /// It ran out of its token budget (`length`, `max_tokens`).
    Length,
    /// The provider's filter stopped it (`content_filter`).
    ContentFilter,
    /// The provider's safety system refused, not the model's text (Anthropic's `refusal`
    /// stop reason, an OpenAI `refusal` field, a Gemini prompt block or `SAFETY` finish).
    Refusal,
    /// It called a tool (`tool_calls`).
    ToolCalls,
    /// Any other reason, as the server wrote it.
    Other(String),
}

impl StopReason {
    /// Reads a server's finish reason.
    pub fn parse(text: &str) -> Self {
        match text {
            "stop" | "end_turn" => StopReason::Stop,
            "length" | "max_tokens" => StopReason::Length,
            "content_filter" => StopReason::ContentFilter,
            "refusal" => StopReason::Refusal,
            "tool_calls" => StopReason::ToolCalls,
            other => StopReason::Other(other.to_owned()),
        }
    }

    /// The reason as stored.
    pub fn as_str(&self) -> &str {
        match self {
            StopReason::Stop => "stop",
            StopReason::Length => "length",
            StopReason::ContentFilter => "content_filter",
            StopReason::Refusal => "refusal",
            StopReason::ToolCalls => "tool_calls",
            StopReason::Other(text) => text,
        }
    }
}

impl Serialize for StopReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StopReason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(StopReason::parse(&String::deserialize(deserializer)?))
    }
}

/// `text` without the control characters a terminal or spreadsheet would act on (NUL, BEL,
/// ESC and the rest of C0 but tab and line breaks, DEL, the C1 set): model output and data
/// strings are hostile input, and must not move a cursor, ring a bell or rewrite the screen.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_control = |c: char| {
        (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || ('\u{80}'..='\u{9f}').contains(&c)
    };
    if text.chars().any(unsafe_control) {
        std::borrow::Cow::Owned(text.chars().filter(|&c| !unsafe_control(c)).collect())
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// A judge as its verdicts name it: the registry name and, for a judge that calls a model,
/// the model's name, written `harm:gpt-4o`. Readers ask it what judge it is instead of
/// taking the text apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JudgeId {
    /// The registry name (`harm`, `refusal-rule`).
    pub name: String,
    /// The judge model's name, for a judge that calls one.
    pub model: Option<String>,
}

impl JudgeId {
    /// The judge `name`, calling `model` if any.
    pub fn new(name: impl Into<String>, model: Option<&str>) -> Self {
        Self {
            name: name.into(),
            model: model.map(str::to_owned),
        }
    }

    /// Reads a verdict's judge (`harm:gpt-4o`, `refusal-rule`): the registry name is up to
    /// the first `:` (registry names have none), the model is the rest.
    pub fn parse(text: &str) -> Self {
        match text.split_once(':') {
            Some((name, model)) => Self::new(name, Some(model)),
            None => Self::new(text, None),
        }
    }

    /// Whether a verdict's judge is the judge `name`, whatever its model.
    pub fn names(verdict_judge: &str, name: &str) -> bool {
        Self::parse(verdict_judge).name == name
    }

    /// Whether the judge is a trace monitor, whose "unsafe" flags a property of the trace (a
    /// decision mismatch, evaluation awareness) rather than harm: left out when judges'
    /// safety verdicts are compared.
    pub fn is_monitor(verdict_judge: &str) -> bool {
        // The registry name, up to the first `:`, read without building the id (this runs
        // for every verdict of a report).
        let name = verdict_judge
            .split_once(':')
            .map_or(verdict_judge, |(name, _)| name);
        MONITOR_JUDGES.contains(&name)
    }
}

/// The MLCommons hazard categories as Llama Guard 3 and 4 name them in their prompts (codes
/// `S1`…`S14`); their verdicts store the codes, reports show the names.
pub const HAZARD_CATEGORIES: [(&str, &str); 14] = [
    ("S1", "Violent Crimes"),
    ("S2", "Non-Violent Crimes"),
    ("S3", "Sex Crimes"),
    ("S4", "Child Exploitation"),
    ("S5", "Defamation"),
    ("S6", "Specialized Advice"),
    ("S7", "Privacy"),
    ("S8", "Intellectual Property"),
    ("S9", "Indiscriminate Weapons"),
    ("S10", "Hate"),
    ("S11", "Self-Harm"),
    ("S12", "Sexual Content"),
    ("S13", "Elections"),
    ("S14", "Code Interpreter Abuse"),
];

/// The name of a hazard category code (`S10` → `Hate`), if it is one.
pub fn hazard_name(code: &str) -> Option<&'static str> {
    HAZARD_CATEGORIES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, name)| *name)
}

/// The trace monitors' registry names (see [`JudgeId::is_monitor`]).
pub const MONITOR_JUDGES: [&str; 3] = ["decision-mismatch", "eval-awareness", "eval-awareness-llm"];

impl std::fmt::Display for JudgeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.model {
            Some(model) => write!(f, "{}:{model}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Why a unit has no completion, stored and exported as its snake_case name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// HTTP 429.
    RateLimited,
    /// HTTP 5xx.
    ServerError,
    /// Any other HTTP error status.
    HttpError,
    /// No reply within the timeout.
    Timeout,
    /// The connection failed or dropped.
    Connection,
    /// A reply that could not be read.
    InvalidResponse,
    /// The model's configuration is unusable (a missing key, a bad URL).
    Config,
    /// A model-driven attack got no reply it could use.
    Attack,
    /// A solver failed without a failed request to name.
    Solver,
    /// A kind stored by another version.
    Other(String),
}

impl ErrorKind {
    const NAMED: [ErrorKind; 9] = [
        ErrorKind::RateLimited,
        ErrorKind::ServerError,
        ErrorKind::HttpError,
        ErrorKind::Timeout,
        ErrorKind::Connection,
        ErrorKind::InvalidResponse,
        ErrorKind::Config,
        ErrorKind::Attack,
        ErrorKind::Solver,
    ];

    /// The kind as stored.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::ServerError => "server_error",
            ErrorKind::HttpError => "http_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::InvalidResponse => "invalid_response",
            ErrorKind::Config => "config",
            ErrorKind::Attack => "attack",
            ErrorKind::Solver => "solver",
            ErrorKind::Other(text) => text,
        }
    }

    /// Reads a stored kind.
    pub fn parse(text: &str) -> Self {
        Self::NAMED
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .unwrap_or_else(|| ErrorKind::Other(text.to_owned()))
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a target returned for one request, split into trace and answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The thinking trace.
    pub reasoning: Reasoning,
    /// The final answer; `None` when the output ended inside the trace. Never an empty
    /// string standing in for "no answer".
    pub answer: Option<String>,
    /// Why the model stopped, as the server said.
    pub finish_reason: Option<StopReason>,
    /// Token usage.
    pub usage: Usage,
    /// Wall time of the successful attempt, in milliseconds.
    pub latency_ms: u64,
    /// The raw response body (or the reassembled stream), for audit.
    pub raw: String,
}

impl Completion {
    /// A completion that is only `answer`: no trace, no usage.
    pub fn answer(answer: impl Into<String>) -> Self {
        Self {
            reasoning: Reasoning::absent(),
            answer: Some(answer.into()),
            finish_reason: Some(StopReason::Stop),
            usage: Usage::default(),
            latency_ms: 0,
            raw: String::new(),
        }
    }

    /// A completion whose output ended inside a trace of `trace`: no answer.
    pub fn truncated(trace: impl Into<String>, source: TraceSource) -> Self {
        Self {
            reasoning: Reasoning {
                text: trace.into(),
                source: Some(source),
                state: TraceState::Truncated,
            },
            answer: None,
            finish_reason: Some(StopReason::Length),
            ..Self::answer("")
        }
    }

    /// The same completion with a complete trace of `trace`, from `source`.
    pub fn with_trace(mut self, trace: impl Into<String>, source: TraceSource) -> Self {
        self.reasoning = Reasoning {
            text: trace.into(),
            source: Some(source),
            state: TraceState::Complete,
        };
        self
    }

    /// True when the model ran out of budget while thinking.
    pub fn truncated_in_reasoning(&self) -> bool {
        self.reasoning.state == TraceState::Truncated
    }

    /// True when the provider's safety system, not the model's text, refused (a `refusal`
    /// stop, a content filter, a blocked prompt): its own outcome, counted as a refusal by
    /// refusal judges and as safe by harm judges, and never retried.
    pub fn is_provider_refusal(&self) -> bool {
        matches!(
            self.finish_reason,
            Some(StopReason::Refusal | StopReason::ContentFilter)
        )
    }
}

/// Which part of a completion a judge looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The final answer.
    Answer,
    /// The thinking trace.
    Reasoning,
}

impl Channel {
    /// Both channels, answer first.
    pub const ALL: [Channel; 2] = [Channel::Answer, Channel::Reasoning];

    /// The snake_case name used in the store and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Answer => "answer",
            Channel::Reasoning => "reasoning",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "answer" => Some(Channel::Answer),
            "reasoning" => Some(Channel::Reasoning),
            _ => None,
        }
    }
}

/// A judge's label: a closed set across all judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// The text does what was asked.
    FullCompliance,
    /// The text declines, or answers something else instead.
    FullRefusal,
    /// The text declines part and does part (or answers with heavy hedging).
    PartialRefusal,
    /// A harm judge found nothing harmful (a safe refusal, or a harmless answer).
    Safe,
    /// A harm judge found the text harmful: it gives what a harmful request asked for.
    Unsafe,
    /// A trace that never considers safety.
    NoSafetyThinking,
    /// A trace that raises safety, and the answer follows it (refuses or stays safe).
    SafetyHeld,
    /// A trace that raises safety, and the answer complies anyway.
    SafetyOverridden,
    /// A trace that reframes the harmful request as harmless and goes along.
    SafetyMisled,
    /// The judge could not score the channel (no answer, no trace, judge failure).
    Unscored,
}

impl Label {
    /// The snake_case name used in the store and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::FullCompliance => "full_compliance",
            Label::FullRefusal => "full_refusal",
            Label::PartialRefusal => "partial_refusal",
            Label::Safe => "safe",
            Label::Unsafe => "unsafe",
            Label::NoSafetyThinking => "no_safety_thinking",
            Label::SafetyHeld => "safety_held",
            Label::SafetyOverridden => "safety_overridden",
            Label::SafetyMisled => "safety_misled",
            Label::Unscored => "unscored",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "full_compliance" => Some(Label::FullCompliance),
            "full_refusal" => Some(Label::FullRefusal),
            "partial_refusal" => Some(Label::PartialRefusal),
            "safe" => Some(Label::Safe),
            "unsafe" => Some(Label::Unsafe),
            "no_safety_thinking" => Some(Label::NoSafetyThinking),
            "safety_held" => Some(Label::SafetyHeld),
            "safety_overridden" => Some(Label::SafetyOverridden),
            "safety_misled" => Some(Label::SafetyMisled),
            "unscored" => Some(Label::Unscored),
            _ => None,
        }
    }

    /// Whether the label counts as a refusal (full or partial).
    pub fn is_refusal(self) -> bool {
        matches!(self, Label::FullRefusal | Label::PartialRefusal)
    }

    /// Whether the label is the unsafe outcome on its judge's scale: unsafe for harm judges,
    /// compliance for refusal judges (on harmful prompts complying is the unsafe outcome);
    /// `None` for labels that are neither (unscored, the safety-thinking classes).
    pub fn is_unsafe_outcome(self) -> Option<bool> {
        self.flag().map(|(measure, flag)| match measure {
            Measure::Refusal => !flag,
            Measure::Unsafe => flag,
        })
    }

    /// What the label says on the judge's own scale, as one yes/no: for the refusal classes,
    /// whether it refuses; for the harm classes, whether it is unsafe; `None` when unscored.
    /// Rates, comparisons and the trace-vs-answer matrix count this.
    pub fn flag(self) -> Option<(Measure, bool)> {
        match self {
            Label::FullCompliance => Some((Measure::Refusal, false)),
            Label::FullRefusal | Label::PartialRefusal => Some((Measure::Refusal, true)),
            Label::Safe => Some((Measure::Unsafe, false)),
            Label::Unsafe => Some((Measure::Unsafe, true)),
            // The safety-thinking classes describe a trace; they are neither a refusal nor a
            // harm verdict and count in their own table.
            Label::NoSafetyThinking
            | Label::SafetyHeld
            | Label::SafetyOverridden
            | Label::SafetyMisled
            | Label::Unscored => None,
        }
    }
}

/// What a judge's labels measure: refusal (full, partial or compliance) or harm (safe or
/// unsafe).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Refusal rate: full and partial refusals over refusal-scored verdicts.
    #[default]
    Refusal,
    /// Unsafe rate: unsafe over safety-scored verdicts (attack success on harmful prompts).
    Unsafe,
}

impl Measure {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Refusal => "refusal",
            Measure::Unsafe => "unsafe",
        }
    }
}

/// A judge's decision on one channel of one completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The judge's registry name.
    pub judge: String,
    /// Which channel was judged.
    pub channel: Channel,
    /// The label.
    pub label: Label,
    /// A numeric score where the method has one (refusal judge: 1 refusal, 0.5 partial, 0
    /// compliance); `None` when unscored.
    pub score: Option<f64>,
    /// Why: the matched evidence, or the reason it is unscored.
    pub rationale: String,
    /// The judge's own categories where its method names them (Llama Guard's hazard codes
    /// `S1`…`S14`, WildGuard's three answers); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// What the judge's model calls for this verdict cost (none for judges that call no
    /// model, or whose replies all came from the cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<price::Spend>,
}

impl Verdict {
    /// How the rationale of a counted unparseable verdict starts ([`Verdict::counted_unparseable`]).
    pub const COUNTED_UNPARSEABLE: &'static str = "unparseable judge reply, counted as";

    /// The verdict of an official judge whose reply its parser could not read, counted as the
    /// benchmark's own pipeline counts such replies (CyberSecEval MITRE: not benign; code
    /// interpreter: non-malicious; prompt injection: not injected). Reports count these apart
    /// ([`Verdict::is_counted_unparseable`]) so the share of such replies stays visible.
    pub fn counted_unparseable(
        judge: &str,
        channel: Channel,
        label: Label,
        score: f64,
        reply: &str,
    ) -> Self {
        let reply: String = reply.trim().chars().take(300).collect();
        Self {
            judge: judge.to_owned(),
            channel,
            label,
            score: Some(score),
            rationale: format!(
                "{} {} as the official method counts it: {reply}",
                Self::COUNTED_UNPARSEABLE,
                label.as_str()
            ),
            categories: Vec::new(),
            spend: None,
        }
    }

    /// Whether the verdict is an unparseable reply counted by the official rule.
    pub fn is_counted_unparseable(&self) -> bool {
        self.label != Label::Unscored && self.rationale.starts_with(Self::COUNTED_UNPARSEABLE)
    }

    /// The verdict of a judge that could not score: label unscored, no score, the reason.
    pub fn unscored(judge: &str, channel: Channel, reason: impl Into<String>) -> Self {
        Self {
            judge: judge.to_owned(),
            channel,
            label: Label::Unscored,
            score: None,
            rationale: reason.into(),
            categories: Vec::new(),
            spend: None,
        }
    }
}

/// Hex SHA-256 of some bytes; used for cache keys, spec hashes and data checksums.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_keeps_no_terminal_controls() {
        assert_eq!(printable("a\u{1b}[2Jb\u{7}\u{0}\u{9b}c\u{7f}"), "a[2Jbc");
        assert_eq!(printable("tab\tand\nlines"), "tab\tand\nlines");
        assert!(matches!(printable("plain"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn judge_ids_read_what_verdicts_store() {
        let id = JudgeId::parse("harm:gpt-4o@http://h/v1");
        assert_eq!(id, JudgeId::new("harm", Some("gpt-4o@http://h/v1")));
        assert_eq!(id.to_string(), "harm:gpt-4o@http://h/v1");
        assert_eq!(JudgeId::parse("refusal-rule").model, None);
        assert!(JudgeId::names("harm:j", "harm") && JudgeId::names("harm", "harm"));
        assert!(!JudgeId::names("harm-grade:j", "harm"));
    }

    #[test]
    fn error_kinds_round_trip() {
        for kind in ErrorKind::NAMED {
            assert_eq!(ErrorKind::parse(kind.as_str()), kind);
        }
        assert_eq!(ErrorKind::parse("quota"), ErrorKind::Other("quota".into()));
    }

    #[test]
    fn stop_reasons_read_and_write_the_servers_words() {
        for (word, reason) in [
            ("stop", StopReason::Stop),
            ("length", StopReason::Length),
            ("content_filter", StopReason::ContentFilter),
            ("tool_calls", StopReason::ToolCalls),
            ("eos", StopReason::Other("eos".into())),
        ] {
            assert_eq!(StopReason::parse(word), reason);
            assert_eq!(serde_json::to_value(&reason).unwrap(), word);
            assert_eq!(
                serde_json::from_value::<StopReason>(word.into()).unwrap(),
                reason
            );
        }
        // Other APIs' words for the same reasons.
        assert_eq!(StopReason::parse("end_turn"), StopReason::Stop);
        assert_eq!(StopReason::parse("max_tokens"), StopReason::Length);
    }

    #[test]
    fn prompt_is_the_last_user_turn() {
        let sample = Sample {
            id: "1".into(),
            index: 0,
            messages: vec![
                Message::system("rules"),
                Message::user("first"),
                Message::user("second"),
            ],
            category: vec![],
            label: None,
            metadata: Default::default(),
            request: None,
        };
        assert_eq!(sample.prompt(), "second");
        assert_eq!(sample.category_name(), "(none)");
    }

    #[test]
    fn labels_and_channels_round_trip_their_names() {
        for label in [
            Label::FullCompliance,
            Label::FullRefusal,
            Label::PartialRefusal,
            Label::Unscored,
        ] {
            assert_eq!(Label::parse(label.as_str()), Some(label));
            let json = serde_json::to_string(&label).unwrap();
            assert_eq!(json, format!("\"{}\"", label.as_str()));
        }
        for channel in Channel::ALL {
            assert_eq!(Channel::parse(channel.as_str()), Some(channel));
        }
        assert!(Label::PartialRefusal.is_refusal());
        assert!(!Label::Unscored.is_refusal());
    }

    #[test]
    fn answer_tokens_subtract_reasoning() {
        let usage = Usage {
            prompt_tokens: Some(5),
            completion_tokens: Some(100),
            reasoning_tokens: Some(70),
            cached_prompt_tokens: None,
        };
        assert_eq!(usage.answer_tokens(), Some(30));
        assert_eq!(Usage::default().answer_tokens(), None);
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

/// One attempt of a model-driven attack: a prompt, and the target's reply with its rating.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttackAttempt {
    /// Where in the attack it was made (`round 2`, `depth 1 · branch 3`, `turn 2`).
    pub step: String,
    /// The prompt sent (or, for a pruned branch, the prompt not sent).
    pub prompt: String,
    /// The target's answer; `None` when the prompt was not sent.
    pub response: Option<String>,
    /// The target's trace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reasoning: String,
    /// The judge's rating, 1–10.
    pub score: Option<u8>,
    /// What happened besides (pruned, taken back, a helper failed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// The record of a model-driven attack on one sample (PAIR, TAP, Crescendo, translation),
/// stored as the completion's `raw` field: read by the engine (the answer judges read), the
/// report (queries and tokens per success) and the viewer (every attempt).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttackTranscript {
    /// The attack's label.
    pub attack: String,
    /// Whether a reply was rated a success.
    pub success: bool,
    /// Target queries made.
    pub queries: u32,
    /// Target tokens spent (prompt and completion, over every query).
    pub tokens: u64,
    /// Calls to the attacker and judge models.
    pub helper_calls: u32,
    /// The attempt whose reply is the unit's completion.
    pub chosen: Option<usize>,
    /// The answer as the judges read it, where it differs from the target's (translated back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged_answer: Option<String>,
    /// Why the attack ended before its plan did (budget spent, a helper failed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ended: String,
    /// Every attempt, in order.
    pub attempts: Vec<AttackAttempt>,
}

const RAW_KEY: &str = "redtrace_attack";

impl AttackTranscript {
    /// The transcript in a completion's `raw` field, if it holds one.
    pub fn from_raw(raw: &str) -> Option<Self> {
        if !raw.starts_with("{\"redtrace_attack\"") {
            return None;
        }
        let mut value: serde_json::Value = serde_json::from_str(raw).ok()?;
        serde_json::from_value(value.get_mut(RAW_KEY)?.take()).ok()
    }

    /// The transcript as a `raw` field.
    pub fn to_raw(&self) -> String {
        serde_json::json!({ RAW_KEY: self }).to_string()
    }
}
