//! In-process inference of GGUF models with llama.cpp (through `llama-cpp-2`), behind the same
//! [`Provider`] trait as remote models, so a laptop needs no server and no key.
//!
//! One worker thread owns the model and its context. Requests reach it over a channel; it
//! decodes up to `max_concurrency` sequences together in one batch (llama.cpp's parallel
//! sequences), one token per sequence per step, and answers each request when its sequence
//! ends. The prompt is the model's own chat template (from the GGUF metadata) applied to the
//! messages; a trailing assistant message or the model's `think_prefill` is appended after the
//! generation prompt. The output is split into trace and answer by the same code as for
//! remote models, and a prefill is echoed in front of the output, as llama.cpp's server does.

use async_trait::async_trait;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use redtrace_core::{Completion, Role, Usage};
use redtrace_providers::{
    split_reasoning, ChatRequest, ModelConfig, ModelSource, Provider, ProviderError, RawOutput,
    TextPrompt, TextReply, TextRequest, TokenLogprobs,
};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

/// Tokens generated when the model's configuration sets no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 1024;

/// Context per sequence at most (prompt and output together), unless `max_tokens` asks for
/// more.
const MAX_CONTEXT_PER_SEQUENCE: u32 = 8192;

/// Context kept for the prompt beyond `max_tokens`.
const PROMPT_ROOM: u32 = 1536;

/// A request on its way to the worker.
struct Job {
    prompt: JobPrompt,
    seed: Option<u64>,
    max_tokens: Option<u64>,
    top_logprobs: Option<u8>,
    reply: JobReply,
}

/// What the worker renders into tokens.
enum JobPrompt {
    /// Messages through the chat template, then the prefill.
    Chat {
        messages: Vec<(String, String)>,
        prefill: String,
    },
    /// A raw prompt, tokenised as it is.
    Raw(String),
}

/// Where the result goes: a chat completion or a text reply.
enum JobReply {
    Chat(tokio::sync::oneshot::Sender<Result<Completion, ProviderError>>),
    Text(tokio::sync::oneshot::Sender<Result<TextReply, ProviderError>>),
}

impl JobReply {
    fn fail(self, error: ProviderError) {
        match self {
            JobReply::Chat(reply) => drop(reply.send(Err(error))),
            JobReply::Text(reply) => drop(reply.send(Err(error))),
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// Speed figures of a local model since it was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Throughput {
    /// Prompt tokens processed.
    pub prompt_tokens: u64,
    /// Seconds spent in decode steps that processed prompt tokens.
    pub prompt_seconds: f64,
    /// Tokens generated.
    pub generated_tokens: u64,
    /// Seconds spent in decode steps that only generated.
    pub generation_seconds: f64,
}

/// A GGUF model running in this process.
pub struct LocalProvider {
    config: ModelConfig,
    jobs: mpsc::Sender<Job>,
    stats: std::sync::Arc<std::sync::Mutex<Throughput>>,
}

/// The file a local model's source names (downloading `hf:` sources is not done here).
pub fn gguf_path(config: &ModelConfig) -> Result<PathBuf, ProviderError> {
    match &config.source {
        ModelSource::Gguf { path } => Ok(PathBuf::from(path)),
        other => Err(ProviderError::Config(format!(
            "model '{}': {other:?} is not a local GGUF file",
            config.name
        ))),
    }
}

fn default_threads() -> usize {
    // Decoding is memory-bound and shares the machine with the engine and the store: half the
    // cores (at least one) is faster than all of them on small machines.
    std::thread::available_parallelism()
        .map(|n| (n.get() / 2).max(1))
        .unwrap_or(1)
}

impl LocalProvider {
    /// Loads the model from `path` on a worker thread; fails if it cannot be loaded or has no
    /// chat template.
    pub fn load(config: ModelConfig, path: &Path) -> Result<Self, ProviderError> {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), ProviderError>>();
        let stats = std::sync::Arc::new(std::sync::Mutex::new(Throughput::default()));
        let worker_config = config.clone();
        let worker_path = path.to_owned();
        let worker_stats = stats.clone();
        std::thread::Builder::new()
            .name(format!("llama:{}", config.name))
            .spawn(move || worker(worker_config, worker_path, receiver, ready_tx, worker_stats))
            .map_err(|e| {
                ProviderError::Config(format!("cannot start the inference thread: {e}"))
            })?;
        ready_rx.recv().map_err(|_| {
            ProviderError::Config(format!(
                "model '{}': the inference thread died while loading",
                config.name
            ))
        })??;
        Ok(Self {
            config,
            jobs,
            stats,
        })
    }

    /// Prompt and generation speed so far.
    pub fn throughput(&self) -> Throughput {
        *self.stats.lock().expect("stats lock")
    }

    fn send(&self, job: Job) -> Result<(), ProviderError> {
        self.jobs.send(job).map_err(|_| self.stopped())
    }

    fn stopped(&self) -> ProviderError {
        ProviderError::Config(format!(
            "model '{}': the inference thread has stopped",
            self.config.name
        ))
    }

    fn prefill(&self, request: &ChatRequest) -> String {
        match request.messages.last() {
            Some(last) if last.role == Role::Assistant => last.content.clone(),
            _ => self.config.think_prefill.clone().unwrap_or_default(),
        }
    }
}

#[async_trait]
impl Provider for LocalProvider {
    async fn complete(&self, request: &ChatRequest) -> Result<Completion, ProviderError> {
        let prefill = self.prefill(request);
        let messages: Vec<(String, String)> = request
            .messages
            .iter()
            .take(
                request.messages.len()
                    - usize::from(
                        request
                            .messages
                            .last()
                            .is_some_and(|m| m.role == Role::Assistant),
                    ),
            )
            .map(|m| (role_name(m.role).to_owned(), m.content.clone()))
            .collect();
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Job {
            prompt: JobPrompt::Chat { messages, prefill },
            seed: request.seed.or(self.config.params.seed),
            max_tokens: None,
            top_logprobs: None,
            reply: JobReply::Chat(reply),
        })?;
        answer.await.map_err(|_| self.stopped())?
    }

    async fn complete_text(&self, request: &TextRequest) -> Result<TextReply, ProviderError> {
        let prompt = match &request.prompt {
            TextPrompt::Raw(prompt) => JobPrompt::Raw(prompt.clone()),
            TextPrompt::Chat(messages) => JobPrompt::Chat {
                messages: messages
                    .iter()
                    .map(|m| (role_name(m.role).to_owned(), m.content.clone()))
                    .collect(),
                prefill: String::new(),
            },
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Job {
            prompt,
            seed: self.config.params.seed,
            max_tokens: request.max_tokens,
            top_logprobs: request.top_logprobs,
            reply: JobReply::Text(reply),
        })?;
        answer.await.map_err(|_| self.stopped())?
    }

    fn text_fingerprint(&self, request: &TextRequest) -> String {
        serde_json::json!({
            "endpoint": self.config.endpoint(),
            "params": self.config.params,
            "text": request,
        })
        .to_string()
    }

    fn fingerprint(&self, request: &ChatRequest) -> String {
        serde_json::json!({
            "endpoint": self.config.endpoint(),
            "params": self.config.params,
            "prefill": self.prefill(request),
            "messages": request.messages,
            "seed": request.seed,
        })
        .to_string()
    }
}

/// A sequence being decoded.
struct Sequence {
    job_reply: JobReply,
    /// Tokens to generate at most.
    max_tokens: u64,
    /// The top log-probabilities to keep per generated token, if asked.
    top_logprobs: Option<u8>,
    logprobs: Vec<TokenLogprobs>,
    id: i32,
    position: i32,
    prompt: Vec<LlamaToken>,
    prompt_tokens: u64,
    generated: Vec<u8>,
    generated_tokens: u64,
    reasoning_tokens: Option<u64>,
    prefill: String,
    opened_in_prompt: bool,
    sampler: LlamaSampler,
    pending: LlamaToken,
    logits_index: i32,
    started: Instant,
}

/// llama.cpp's backend, initialised once per process (it is a process-wide singleton).
fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: std::sync::OnceLock<Result<LlamaBackend, String>> = std::sync::OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend = LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var_os("REDTRACE_LLAMA_LOG").is_none() {
                backend.void_logs();
            }
            Ok(backend)
        })
        .as_ref()
        .map_err(Clone::clone)
}

fn invalid(detail: impl Into<String>) -> ProviderError {
    ProviderError::InvalidResponse {
        endpoint: "llama.cpp".into(),
        detail: detail.into(),
    }
}

fn worker(
    config: ModelConfig,
    path: PathBuf,
    jobs: mpsc::Receiver<Job>,
    ready: mpsc::Sender<Result<(), ProviderError>>,
    stats: std::sync::Arc<std::sync::Mutex<Throughput>>,
) {
    let fail = |detail: String| {
        ProviderError::Config(format!(
            "model '{}' ({}): {detail}",
            config.name,
            path.display()
        ))
    };
    let backend = match backend() {
        Ok(backend) => backend,
        Err(error) => {
            let _ = ready.send(Err(fail(format!("llama.cpp did not start: {error}"))));
            return;
        }
    };
    let model = match LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default()) {
        Ok(model) => model,
        Err(error) => {
            let _ = ready.send(Err(fail(format!("cannot load the model: {error}"))));
            return;
        }
    };
    let template = match model.chat_template(None) {
        Ok(template) => template,
        Err(error) => {
            let _ = ready.send(Err(fail(format!(
                "the GGUF file has no usable chat template: {error}"
            ))));
            return;
        }
    };
    let sequences = config.max_concurrency.clamp(1, 64) as u32;
    let max_tokens = config.params.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    // Room for a prompt and the output: a bigger context only costs memory.
    let wanted = (max_tokens as u32).saturating_add(PROMPT_ROOM);
    let per_sequence = wanted.clamp(
        512,
        model
            .n_ctx_train()
            .clamp(512, MAX_CONTEXT_PER_SEQUENCE.max(wanted)),
    );
    let threads = config.threads.unwrap_or_else(default_threads) as i32;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(per_sequence * sequences))
        .with_n_batch(per_sequence * sequences)
        .with_n_seq_max(sequences)
        .with_kv_unified(true)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut context = match model.new_context(backend, params) {
        Ok(context) => context,
        Err(error) => {
            let _ = ready.send(Err(fail(format!("cannot create a context: {error}"))));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut active: Vec<Sequence> = Vec::new();
    let mut free_ids: Vec<i32> = (0..sequences as i32).rev().collect();
    let mut batch = LlamaBatch::new((per_sequence * sequences) as usize, sequences as i32);
    loop {
        // Take new work: wait when idle, otherwise only what is already queued.
        while !free_ids.is_empty() {
            let job = if active.is_empty() {
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return, // the provider was dropped
                }
            } else {
                match jobs.try_recv() {
                    Ok(job) => job,
                    Err(_) => break,
                }
            };
            let id = free_ids.pop().expect("a free sequence id");
            match start_sequence(
                &model,
                &template,
                &config,
                job,
                id,
                per_sequence,
                max_tokens,
            ) {
                Ok(sequence) => active.push(sequence),
                Err((reply, error)) => {
                    reply.fail(error);
                    free_ids.push(id);
                }
            }
        }
        if active.is_empty() {
            continue;
        }
        // One decode step: new sequences bring their whole prompt, running ones their last
        // token.
        batch.clear();
        let mut prompt_tokens_in_step = 0u64;
        for sequence in &mut active {
            if sequence.position == 0 {
                let tokens = std::mem::take(&mut sequence.prompt);
                let last = tokens.len() - 1;
                for (i, token) in tokens.iter().enumerate() {
                    batch
                        .add(*token, i as i32, &[sequence.id], i == last)
                        .expect("batch sized for every sequence's context");
                }
                sequence.position = tokens.len() as i32;
                sequence.prompt_tokens = tokens.len() as u64;
                prompt_tokens_in_step += tokens.len() as u64;
            } else {
                batch
                    .add(sequence.pending, sequence.position, &[sequence.id], true)
                    .expect("batch has room");
                sequence.position += 1;
            }
            sequence.logits_index = batch.n_tokens() - 1;
        }
        let step_started = Instant::now();
        if let Err(error) = context.decode(&mut batch) {
            for sequence in active.drain(..) {
                let _ = context.clear_kv_cache_seq(Some(sequence.id as u32), None, None);
                free_ids.push(sequence.id);
                sequence
                    .job_reply
                    .fail(invalid(format!("llama.cpp decode failed: {error}")));
            }
            continue;
        }
        let step_seconds = step_started.elapsed().as_secs_f64();
        {
            let mut stats = stats.lock().expect("stats lock");
            if prompt_tokens_in_step > 0 {
                stats.prompt_tokens += prompt_tokens_in_step;
                stats.prompt_seconds += step_seconds;
            } else {
                stats.generation_seconds += step_seconds;
            }
            stats.generated_tokens += active.len() as u64;
        }
        let vocab = model.vocab();
        let mut finished = Vec::new();
        for (i, sequence) in active.iter_mut().enumerate() {
            let top = sequence
                .top_logprobs
                .map(|k| top_logprobs(context.get_logits_ith(sequence.logits_index), k));
            let token = sequence.sampler.sample(&context, sequence.logits_index);
            // The end-of-generation token is not part of the text, nor of its tokens.
            if let Some((log_norm, top)) = top.filter(|_| !vocab.is_eog(token)) {
                let logit = context.get_logits_ith(sequence.logits_index)[token.0 as usize];
                let piece = |token: LlamaToken| {
                    String::from_utf8_lossy(&vocab.token_to_piece(token, true, None)).into_owned()
                };
                sequence.logprobs.push(TokenLogprobs {
                    token: piece(token),
                    logprob: f64::from(logit) - log_norm,
                    top: top
                        .into_iter()
                        .map(|(id, logit)| (piece(LlamaToken(id)), f64::from(logit) - log_norm))
                        .collect(),
                });
            }
            let end_of_generation = vocab.is_eog(token);
            if !end_of_generation {
                let piece = vocab.token_to_piece(token, false, None);
                sequence.generated.extend_from_slice(&piece);
                sequence.generated_tokens += 1;
                if sequence.reasoning_tokens.is_none() && contains(&sequence.generated, b"</think>")
                {
                    sequence.reasoning_tokens = Some(sequence.generated_tokens);
                }
            }
            sequence.pending = token;
            let out_of_budget = sequence.generated_tokens >= sequence.max_tokens
                || sequence.position as u32 + 1 >= per_sequence;
            if end_of_generation || out_of_budget {
                finished.push((i, if end_of_generation { "stop" } else { "length" }));
            }
        }
        for (i, finish_reason) in finished.into_iter().rev() {
            let sequence = active.swap_remove(i);
            let _ = context.clear_kv_cache_seq(Some(sequence.id as u32), None, None);
            free_ids.push(sequence.id);
            finish(sequence, finish_reason);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

type StartError = (JobReply, ProviderError);

/// The log of the softmax's normaliser over `logits`, and the `k` largest logits with their
/// token ids, largest first.
fn top_logprobs(logits: &[f32], k: u8) -> (f64, Vec<(i32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let log_norm = f64::from(max) + sum.ln();
    let mut top: Vec<(i32, f32)> = Vec::with_capacity(usize::from(k) + 1);
    for (id, &logit) in logits.iter().enumerate() {
        if top.len() < usize::from(k) || top.last().is_some_and(|&(_, last)| logit > last) {
            let at = top.partition_point(|&(_, l)| l >= logit);
            top.insert(at, (id as i32, logit));
            top.truncate(usize::from(k));
        }
    }
    (log_norm, top)
}

fn start_sequence(
    model: &LlamaModel,
    template: &llama_cpp_2::model::LlamaChatTemplate,
    config: &ModelConfig,
    job: Job,
    id: i32,
    per_sequence: u32,
    max_tokens: u64,
) -> Result<Sequence, StartError> {
    let (rendered, prefill) = match job.prompt {
        JobPrompt::Raw(prompt) => (prompt, String::new()),
        JobPrompt::Chat { messages, prefill } => {
            let chat: Result<Vec<LlamaChatMessage>, _> = messages
                .into_iter()
                .map(|(role, content)| LlamaChatMessage::new(role, content))
                .collect();
            let chat = match chat {
                Ok(chat) => chat,
                Err(error) => {
                    return Err((
                        job.reply,
                        invalid(format!("a message cannot be passed to llama.cpp: {error}")),
                    ))
                }
            };
            match model.apply_chat_template(template, &chat, true) {
                Ok(rendered) => (rendered, prefill),
                Err(error) => {
                    return Err((
                        job.reply,
                        invalid(format!("the chat template failed: {error}")),
                    ))
                }
            }
        }
    };
    // R1 distill templates end the generation prompt with an opened `<think>`.
    let opened_by_template =
        rendered.trim_end().ends_with("<think>") || config.template_opens_think;
    let prompt = format!("{rendered}{prefill}");
    // add_special: a BOS where the model wants one; parse_special: the template's control
    // tokens (`<|im_start|>`...) are tokens, not text. A raw prompt that writes its own BOS
    // keeps one.
    let mut tokens = model.vocab().tokenize(prompt.as_bytes(), true, true);
    if tokens.len() > 1 && tokens[0] == tokens[1] && tokens[0] == model.vocab().bos() {
        tokens.remove(0);
    }
    if tokens.is_empty() || tokens.len() as u64 + 1 >= per_sequence as u64 {
        return Err((
            job.reply,
            invalid(format!(
                "the prompt has {} tokens; the context holds {per_sequence} per sequence",
                tokens.len()
            )),
        ));
    }
    let sampler = match (config.params.temperature, job.seed) {
        (None, _) | (Some(0.0), _) => LlamaSampler::greedy(),
        (Some(temperature), seed) => {
            let mut chain = vec![LlamaSampler::temp(temperature as f32)];
            if let Some(top_p) = config.params.top_p {
                chain.push(LlamaSampler::top_p(top_p as f32, 1));
            }
            chain.push(LlamaSampler::dist(seed.unwrap_or(0) as u32));
            LlamaSampler::chain_simple(chain)
        }
    };
    Ok(Sequence {
        job_reply: job.reply,
        max_tokens: job.max_tokens.unwrap_or(max_tokens),
        top_logprobs: job.top_logprobs,
        logprobs: Vec::new(),
        id,
        position: 0,
        prompt: tokens,
        prompt_tokens: 0,
        generated: Vec::new(),
        generated_tokens: 0,
        reasoning_tokens: None,
        opened_in_prompt: opened_by_template,
        prefill: prompt[rendered.len()..].to_owned(),
        sampler,
        pending: LlamaToken(0),
        logits_index: 0,
        started: Instant::now(),
    })
}

fn finish(sequence: Sequence, finish_reason: &str) {
    let text = String::from_utf8_lossy(&sequence.generated).into_owned();
    let usage = Usage {
        prompt_tokens: Some(sequence.prompt_tokens),
        completion_tokens: Some(sequence.generated_tokens),
        reasoning_tokens: None,
        cached_prompt_tokens: None,
    };
    let reply = match sequence.job_reply {
        JobReply::Text(reply) => {
            let _ = reply.send(Ok(TextReply {
                text,
                tokens: sequence.logprobs,
                finish_reason: Some(redtrace_core::StopReason::parse(finish_reason)),
                usage,
            }));
            return;
        }
        JobReply::Chat(reply) => reply,
    };
    // Echo the prefill in front of the output, as llama.cpp's server does, so that a prefill
    // that opened `<think>` is seen by the splitter.
    let content = format!("{}{text}", sequence.prefill);
    let opened = sequence.opened_in_prompt
        || (sequence.prefill.contains("<think>") && !sequence.prefill.contains("</think>"));
    let (reasoning, answer) = split_reasoning(RawOutput {
        content: Some(&content),
        finish_reason: Some(finish_reason),
        opened_in_prompt: opened,
        ..Default::default()
    });
    let reasoning_tokens = match reasoning.state {
        redtrace_core::TraceState::Truncated => Some(sequence.generated_tokens),
        redtrace_core::TraceState::Complete => sequence.reasoning_tokens,
        // The in-process splitter only finds the model's own text, or none.
        _ => None,
    };
    let raw = serde_json::json!({
        "engine": "llama.cpp (in-process)",
        "content": content,
        "finish_reason": finish_reason,
        "prompt_tokens": sequence.prompt_tokens,
        "completion_tokens": sequence.generated_tokens,
    })
    .to_string();
    let completion = Completion {
        reasoning,
        answer,
        finish_reason: Some(redtrace_core::StopReason::parse(finish_reason)),
        usage: Usage {
            reasoning_tokens,
            ..usage
        },
        latency_ms: sequence.started.elapsed().as_millis() as u64,
        raw,
    };
    let _ = reply.send(Ok(completion));
}
