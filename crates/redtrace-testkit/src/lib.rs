//! Test kit: an in-process fake OpenAI-compatible chat server on 127.0.0.1 whose every reply
//! is scripted per request (traces in fields or tags, truncation, streaming, 429 with
//! Retry-After, 5xx, slow replies, malformed JSON, dropped streams), and which counts and
//! records what it was sent so tests can assert exactly that. Also locates `../shared/data`.
//!
//! The server speaks the real wire format: `POST …/chat/completions` with a JSON body, a JSON
//! reply, or `text/event-stream` chunks ending in `data: [DONE]` when the request says
//! `"stream": true`; and the native APIs of [`wire`] (Anthropic, OpenAI Responses, Gemini,
//! Ollama), told apart by the request's path.

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod batch;
pub mod pg;
pub mod wire;
pub use batch::{BatchEnd, BatchLine, FakeBatchApi};
pub use pg::postgres_db;
pub use wire::Wire;

/// SQL that turns a fresh store into one of schema version 1 (before the judge-reply cache,
/// the verdicts' categories and spend, and the completions' costs), for migration tests.
pub const SCHEMA_1: &str = "DROP TABLE judge_replies;
     DROP TABLE batch_requests;
     DROP TABLE batches;
     ALTER TABLE verdicts DROP COLUMN categories;
     ALTER TABLE verdicts DROP COLUMN spend;
     ALTER TABLE completions DROP COLUMN cached_prompt_tokens;
     ALTER TABLE completions DROP COLUMN cost_usd;
     ALTER TABLE completions DROP COLUMN helper_spend;
     PRAGMA user_version = 1;";

/// Serves `handler` on a free port of 127.0.0.1: the address, and the task (abort it to stop).
pub(crate) async fn serve<F, Fut>(handler: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(Request<Body>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let app = axum::Router::new().fallback(move |request: Request<Body>| handler(request));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

/// What the fake server answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A chat completion; streamed when the request asks for it.
    Message(FakeMessage),
    /// An error status with an optional `Retry-After` header value.
    Status {
        /// The HTTP status.
        code: u16,
        /// The `Retry-After` header, as sent.
        retry_after: Option<String>,
        /// The body.
        body: String,
    },
    /// A 200 with this exact body as `application/json` (malformed JSON, no `choices`...).
    RawBody(String),
    /// A stream that sends this many chunks of the message, then drops the connection.
    CutStream(FakeMessage, usize),
    /// Headers, then the connection drops before any body.
    Drop,
    /// Waits, then answers.
    Delay(Duration, Box<Reply>),
}

/// The parts of a scripted chat completion.
#[derive(Debug, Clone, Default)]
pub struct FakeMessage {
    /// `message.content`.
    pub content: Option<String>,
    /// `message.reasoning_content`.
    pub reasoning_content: Option<String>,
    /// `message.reasoning`.
    pub reasoning: Option<String>,
    /// `finish_reason`; `stop` when unset.
    pub finish_reason: Option<String>,
    /// (prompt, completion, reasoning) token counts; derived from lengths when unset.
    pub usage: Option<(u64, u64, Option<u64>)>,
    /// On the native APIs: the trace withheld (a redacted block, encrypted content, a
    /// signature alone).
    pub redacted: bool,
    /// On the native APIs: the provider's safety system refuses (Anthropic `refusal`, a
    /// Responses refusal item, Gemini `SAFETY`).
    pub refusal: bool,
    /// Log-probabilities, one list per generated position, the chosen token first and then
    /// the others (sent as `logprobs` on chat and text completions).
    pub top_logprobs: Option<Vec<Vec<(String, f64)>>>,
}

impl Reply {
    /// A text (or chat) completion of `text` whose first token had these top
    /// log-probabilities (the first is the chosen one); each later word of `text` is sent as
    /// a token with log-probability 0.
    pub fn with_logprobs(text: impl Into<String>, first: &[(&str, f64)]) -> Self {
        let text = text.into();
        let mut positions = vec![first
            .iter()
            .map(|(t, lp)| ((*t).to_owned(), *lp))
            .collect::<Vec<_>>()];
        positions.extend(
            text.split_inclusive(' ')
                .skip(1)
                .map(|word| vec![(word.to_owned(), 0.0)]),
        );
        Reply::Message(FakeMessage {
            content: Some(text),
            top_logprobs: Some(positions),
            ..FakeMessage::default()
        })
    }

    /// A plain answer.
    pub fn text(content: impl Into<String>) -> Self {
        Reply::Message(FakeMessage {
            content: Some(content.into()),
            ..Default::default()
        })
    }
    /// A trace in `reasoning_content` and an answer in `content` (DeepSeek API, vLLM).
    pub fn reasoning_content(trace: impl Into<String>, answer: impl Into<String>) -> Self {
        Reply::Message(FakeMessage {
            content: Some(answer.into()),
            reasoning_content: Some(trace.into()),
            ..Default::default()
        })
    }
    /// `<think>trace</think>answer` inline in the content.
    pub fn think_tags(trace: &str, answer: &str) -> Self {
        Reply::text(format!("<think>\n{trace}\n</think>\n\n{answer}"))
    }
    /// `trace</think>answer`: the chat template opened the block (R1 distills).
    pub fn think_close_only(trace: &str, answer: &str) -> Self {
        Reply::text(format!("{trace}\n</think>\n\n{answer}"))
    }
    /// Output that ends inside `<think>` with `finish_reason: length`.
    pub fn truncated_in_trace(trace: &str) -> Self {
        Reply::Message(FakeMessage {
            content: Some(format!("<think>\n{trace}")),
            finish_reason: Some("length".into()),
            ..Default::default()
        })
    }
    /// The provider's own refusal, on the native APIs.
    pub fn provider_refusal() -> Self {
        Reply::Message(FakeMessage {
            refusal: true,
            ..Default::default()
        })
    }
    /// A withheld trace (a redacted block, encrypted reasoning) and an answer, on the native
    /// APIs.
    pub fn redacted_trace(answer: impl Into<String>) -> Self {
        Reply::Message(FakeMessage {
            content: Some(answer.into()),
            redacted: true,
            ..Default::default()
        })
    }
    /// An error status with this body.
    pub fn status_with(code: u16, body: Value) -> Self {
        Reply::Status {
            code,
            retry_after: None,
            body: body.to_string(),
        }
    }
    /// An error status.
    pub fn status(code: u16) -> Self {
        Reply::Status {
            code,
            retry_after: None,
            body: json!({"error": {"message": "scripted failure"}}).to_string(),
        }
    }
    /// 429 with `Retry-After: secs`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Reply::Status {
            code: 429,
            retry_after: Some(retry_after_secs.to_string()),
            body: json!({"error": {"message": "rate limited"}}).to_string(),
        }
    }
    /// This reply after a delay.
    pub fn after(self, delay: Duration) -> Self {
        Reply::Delay(delay, Box::new(self))
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Position among all requests, from 0.
    pub n: usize,
    /// The JSON body (`Null` when it was not JSON).
    pub body: Value,
    /// The content of the last user message, or "".
    pub prompt: String,
    /// How many earlier requests carried the same prompt.
    pub attempt: usize,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The key header of the native APIs (`x-api-key`, `x-goog-api-key`), if any.
    pub api_key: Option<String>,
    /// The API the request spoke.
    pub wire: Wire,
    /// The request's path and query.
    pub path: String,
    /// When it arrived.
    pub at: Instant,
}

type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

struct State {
    script: Box<Script>,
    count: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    record: bool,
    log: Mutex<Vec<Seen>>,
    attempts: Mutex<HashMap<String, usize>>,
}

/// A running fake server; it stops when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    /// Starts a server on 127.0.0.1 that answers each request with `script(request)`, and
    /// records every request.
    pub async fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(script, true).await
    }

    /// Like [`FakeServer::start`]; with `record` false it only counts (for load benchmarks,
    /// where a log of every body would distort memory figures).
    pub async fn start_with(
        script: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
        record: bool,
    ) -> Self {
        let state = Arc::new(State {
            script: Box::new(script),
            count: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            record,
            log: Mutex::new(Vec::new()),
            attempts: Mutex::new(HashMap::new()),
        });
        let app_state = state.clone();
        let (addr, task) = serve(move |request| handle(app_state.clone(), request)).await;
        Self { addr, state, task }
    }

    /// The base URL to give a provider, e.g. `http://127.0.0.1:40123/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// A `MODEL@BASE_URL` reference to this server.
    pub fn model_ref(&self, model: &str) -> String {
        format!("{model}@{}", self.base_url())
    }

    /// A reference to this server speaking a native API: `anthropic:`, `openai-responses:`,
    /// `gemini:` (base `…/v1beta`) or `ollama:` (the bare server).
    pub fn native_ref(&self, prefix: &str, model: &str) -> String {
        let base = match prefix {
            "gemini:" => format!("http://{}/v1beta", self.addr),
            "ollama:" => format!("http://{}", self.addr),
            _ => self.base_url(),
        };
        format!("{prefix}{model}@{base}")
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests that were being answered at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request received so far (empty when recording is off).
    pub fn requests(&self) -> Vec<Seen> {
        self.state.log.lock().expect("log lock").clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(state: Arc<State>, request: Request<Body>) -> Response<Body> {
    let Some(wire) = Wire::of_path(request.uri().path()) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let (authorization, api_key) = {
        let header_text = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            header_text(header::AUTHORIZATION.as_str()),
            header_text("x-api-key").or_else(|| header_text("x-goog-api-key")),
        )
    };
    let bytes = axum::body::to_bytes(request.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let prompt = wire.prompt(&body);
    let n = state.count.fetch_add(1, Ordering::SeqCst);
    let attempt = if state.record {
        let mut attempts = state.attempts.lock().expect("attempts lock");
        let slot = attempts.entry(prompt.clone()).or_insert(0);
        *slot += 1;
        *slot - 1
    } else {
        0
    };
    let stream = wire.streams(&path, &body);
    let model = match wire {
        // Gemini names the model in the path: …/models/MODEL:generateContent.
        Wire::Gemini => path
            .rsplit_once("/models/")
            .and_then(|(_, rest)| rest.split(':').next())
            .unwrap_or("fake")
            .to_owned(),
        _ => body["model"].as_str().unwrap_or("fake").to_owned(),
    };
    let seen = Seen {
        n,
        body,
        prompt,
        attempt,
        authorization,
        api_key,
        wire,
        path,
        at: Instant::now(),
    };
    let reply = (state.script)(&seen);
    if state.record {
        state.log.lock().expect("log lock").push(seen);
    }
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    // Counted out however the answer ends, a client that went away (a killed run) included.
    struct Leaving<'a>(&'a AtomicUsize);
    impl Drop for Leaving<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _leaving = Leaving(&state.in_flight);
    respond(reply, stream, &model, wire).await
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(text.to_owned()))
        .expect("static response")
}

async fn respond(mut reply: Reply, stream: bool, model: &str, wire: Wire) -> Response<Body> {
    while let Reply::Delay(delay, inner) = reply {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    match reply {
        Reply::Delay(..) => unreachable!("delays are unwrapped above"),
        Reply::Message(message) if wire != Wire::OpenAi && stream => framed(
            wire::stream(wire, &message, model),
            wire::stream_type(wire),
            None,
        ),
        Reply::Message(message) if wire != Wire::OpenAi => {
            json_response(wire::whole(wire, &message, model).to_string())
        }
        Reply::CutStream(message, keep) if wire != Wire::OpenAi => framed(
            wire::stream(wire, &message, model),
            wire::stream_type(wire),
            Some(keep),
        ),
        Reply::Message(message) if stream => sse(chunks(&message, model), None),
        Reply::Message(message) => json_response(whole(&message, model).to_string()),
        Reply::CutStream(message, keep) => sse(chunks(&message, model), Some(keep)),
        Reply::RawBody(body) => json_response(body),
        Reply::Status {
            code,
            retry_after,
            body,
        } => {
            let mut builder = Response::builder()
                .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(value) = retry_after {
                builder = builder.header(header::RETRY_AFTER, value);
            }
            builder.body(Body::from(body)).expect("status response")
        }
        Reply::Drop => {
            let failing = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("scripted drop"))
            });
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(failing))
                .expect("drop response")
        }
    }
}

fn json_response(body: String) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("json response")
}

fn usage_json(message: &FakeMessage) -> Value {
    let (prompt, completion, reasoning) = message.usage.unwrap_or_else(|| {
        let trace = message
            .reasoning_content
            .as_deref()
            .or(message.reasoning.as_deref())
            .unwrap_or("");
        let words = |text: &str| text.split_whitespace().count() as u64;
        let reasoning = words(trace);
        let answer = words(message.content.as_deref().unwrap_or(""));
        (10, reasoning + answer, (reasoning > 0).then_some(reasoning))
    });
    let mut usage = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    if let Some(reasoning) = reasoning {
        usage["completion_tokens_details"] = json!({ "reasoning_tokens": reasoning });
    }
    usage
}

/// A whole OpenAI chat completion of `message` (a batch's reply body).
pub fn whole_openai(message: &FakeMessage, model: &str) -> Value {
    whole(message, model)
}

fn whole(message: &FakeMessage, model: &str) -> Value {
    let mut body = json!({ "role": "assistant", "content": message.content });
    if let Some(trace) = &message.reasoning_content {
        body["reasoning_content"] = json!(trace);
    }
    if let Some(trace) = &message.reasoning {
        body["reasoning"] = json!(trace);
    }
    // The chat shape of `logprobs`.
    let logprobs = message.top_logprobs.as_ref().map(|positions| {
        json!({ "content": positions.iter().map(|top| json!({
            "token": top[0].0,
            "logprob": top[0].1,
            "top_logprobs": top.iter().map(|(t, lp)| json!({ "token": t, "logprob": lp })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>() })
    });
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{
            "index": 0,
            "message": body,
            "logprobs": logprobs,
            "finish_reason": message.finish_reason.as_deref().unwrap_or("stop"),
        }],
        "usage": usage_json(message),
    })
}

/// Splits text into pieces of a few characters, as token streams do.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(7)
        .map(|piece| piece.iter().collect())
        .collect()
}

fn chunks(message: &FakeMessage, model: &str) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        })
        .to_string()
    };
    let mut out = vec![chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    )];
    for (field, text) in [
        ("reasoning_content", &message.reasoning_content),
        ("reasoning", &message.reasoning),
        ("content", &message.content),
    ] {
        if let Some(text) = text {
            for piece in pieces(text) {
                out.push(chunk(json!({ field: piece }), Value::Null));
            }
        }
    }
    out.push(chunk(
        json!({}),
        json!(message.finish_reason.as_deref().unwrap_or("stop")),
    ));
    out.push(
        json!({ "id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": usage_json(message) })
            .to_string(),
    );
    out.push("[DONE]".to_owned());
    out
}

/// A streamed body of lines already framed as the API frames them, cut after `cut_after`.
fn framed(lines: Vec<String>, content_type: &str, cut_after: Option<usize>) -> Response<Body> {
    let keep = cut_after.unwrap_or(lines.len()).min(lines.len());
    let mut items: Vec<Result<Bytes, std::io::Error>> = lines
        .into_iter()
        .take(keep)
        .map(|line| Ok(Bytes::from(line)))
        .collect();
    if cut_after.is_some() {
        items.push(Err(std::io::Error::other("scripted cut")));
    }
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(futures_util::stream::iter(items)))
        .expect("stream response")
}

fn sse(events: Vec<String>, cut_after: Option<usize>) -> Response<Body> {
    let keep = cut_after.unwrap_or(events.len()).min(events.len());
    let mut items: Vec<Result<Bytes, std::io::Error>> = events
        .into_iter()
        .take(keep)
        .map(|event| Ok(Bytes::from(format!("data: {event}\n\n"))))
        .collect();
    if cut_after.is_some() {
        items.push(Err(std::io::Error::other("scripted cut")));
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(futures_util::stream::iter(items)))
        .expect("sse response")
}

/// The shared data folder (`../shared/data` beside the repository), or `None` when absent.
/// `REDTRACE_SHARED_DATA` overrides the location.
pub fn shared_data_dir() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("REDTRACE_SHARED_DATA") {
        let path = PathBuf::from(path);
        return path.is_dir().then_some(path);
    }
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // crates/redtrace-testkit -> repository root -> its parent
    for _ in 0..3 {
        dir.pop();
    }
    let path = dir.join("shared").join("data");
    path.is_dir().then_some(path)
}

/// `shared_data_dir()`, printing why a test is skipped when it is absent.
pub fn shared_data_or_skip(test: &str) -> Option<PathBuf> {
    let found = shared_data_dir();
    if found.is_none() {
        eprintln!(
            "skipping {test}: ../shared/data is not present (set REDTRACE_SHARED_DATA to run it)"
        );
    }
    found
}

/// The small real chat model tests use (SmolLM2-135M-Instruct, Q4_1, Apache-2.0), from
/// `REDTRACE_TEST_MODEL` or `.cache/models/` in the repository (where `.ci/run` puts it).
pub fn test_model_path() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("REDTRACE_TEST_MODEL") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    dir.pop();
    dir.pop();
    let path = dir.join(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    path.is_file().then_some(path)
}

/// `test_model_path()`, printing why a test is skipped when it is absent.
pub fn test_model_or_skip(test: &str) -> Option<PathBuf> {
    let found = test_model_path();
    if found.is_none() {
        eprintln!(
            "skipping {test}: the test model is absent (run .ci/run, or set REDTRACE_TEST_MODEL to a GGUF file)"
        );
    }
    found
}

/// Runs `script` with python3, arguments `args`, when the Python package `module` can be
/// imported: its output, or `None` (with a message) when python3 or the package is missing, as
/// on a machine `scripts/test.sh` did not prepare. Under CI (`CI` set), where the test command
/// installs the package, a missing one fails the test instead of skipping it.
pub fn python_with(module: &str, test: &str, script: &str, args: &[&str]) -> Option<String> {
    let found = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: python3 cannot import {module}, which the test command installs"
        );
        eprintln!("skipping {test}: python3 cannot import {module} (pip install {module})");
        return None;
    }
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "{test}: the {module} script failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A real llama.cpp server (the `xllamacpp` Python package) serving a GGUF file on
/// 127.0.0.1; stopped when dropped.
pub struct LlamaServer {
    child: std::process::Child,
    port: u16,
}

const LLAMA_SERVER_SCRIPT: &str = r#"
import sys, time, xllamacpp
params = xllamacpp.CommonParams()
params.model.path = sys.argv[1]
params.port = int(sys.argv[2])
params.hostnames = ["127.0.0.1"]
params.n_ctx = 4096
params.n_parallel = 2
params.cpuparams.n_threads = 1
server = xllamacpp.Server(params)
print("listening", server.listening_address, flush=True)
while True:
    time.sleep(3600)
"#;

impl LlamaServer {
    /// Starts the server on a free port and waits until it listens; `None` (with a message
    /// saying why) when python3 or xllamacpp is missing or it does not come up.
    pub fn start(model: &std::path::Path, test: &str) -> Option<Self> {
        use std::io::BufRead;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut child = match std::process::Command::new("python3")
            .arg("-c")
            .arg(LLAMA_SERVER_SCRIPT)
            .arg(model)
            .arg(port.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(error) => {
                eprintln!("skipping {test}: cannot start python3 ({error})");
                return None;
            }
        };
        let stdout = child.stdout.take()?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line.starts_with("listening") {
                    let _ = ready_tx.send(());
                }
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(()) => Some(Self { child, port }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!(
                    "skipping {test}: the xllamacpp server did not start (pip install xllamacpp)"
                );
                None
            }
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:40123/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fake Hugging Face hub on 127.0.0.1 that serves files with the headers and ranged
/// responses the hub client expects (`etag`, `x-repo-commit`, `content-range`), for testing
/// `hf:` downloads through `HF_ENDPOINT` without the internet.
pub struct FakeHub {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeHub {
    /// Serves `files`, each `(repo, file name, local path)`.
    pub async fn start(files: Vec<(String, String, PathBuf)>) -> Self {
        Self::start_with(files, false).await
    }

    /// Like [`FakeHub::start`], but a download of more than one byte gets all its bytes but
    /// the last and then nothing more, its connection left open: a mirror that announced more
    /// than it sends.
    pub async fn start_short(files: Vec<(String, String, PathBuf)>) -> Self {
        Self::start_with(files, true).await
    }

    async fn start_with(files: Vec<(String, String, PathBuf)>, short: bool) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let files = Arc::new(files);
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let files = files.clone();
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let path = request.uri().path().trim_start_matches('/').to_owned();
                let Some(local) = files.iter().find_map(|(repo, name, local)| {
                    let prefix = format!("{repo}/resolve/");
                    let rest = path.strip_prefix(&prefix)?;
                    let (_revision, file) = rest.split_once('/')?;
                    (file == name).then(|| local.clone())
                }) else {
                    return plain(StatusCode::NOT_FOUND, "Entry not found");
                };
                let bytes = match tokio::fs::read(&local).await {
                    Ok(bytes) => bytes,
                    Err(_) => return plain(StatusCode::INTERNAL_SERVER_ERROR, "unreadable"),
                };
                let total = bytes.len();
                let range = request
                    .headers()
                    .get(header::RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes="))
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
                let builder = Response::builder()
                    .header(
                        header::ETAG,
                        format!("\"{:016x}{total:08x}\"", total as u64 * 2654435761),
                    )
                    .header("x-repo-commit", "0123456789abcdef0123456789abcdef01234567");
                match range {
                    Some((start, end)) if start < total && short && end > start => {
                        let end = end.min(total - 1);
                        let sent = bytes[start..end].to_vec();
                        let stream = futures_util::StreamExt::chain(
                            futures_util::stream::iter([Ok::<_, std::io::Error>(
                                bytes::Bytes::from(sent),
                            )]),
                            futures_util::stream::pending::<Result<bytes::Bytes, std::io::Error>>(),
                        );
                        builder
                            .status(StatusCode::PARTIAL_CONTENT)
                            .header(
                                header::CONTENT_RANGE,
                                format!("bytes {start}-{end}/{total}"),
                            )
                            .header(header::CONTENT_LENGTH, end - start + 1)
                            .body(Body::from_stream(stream))
                            .expect("ranged response")
                    }
                    Some((start, end)) if start < total => {
                        let end = end.min(total - 1);
                        builder
                            .status(StatusCode::PARTIAL_CONTENT)
                            .header(
                                header::CONTENT_RANGE,
                                format!("bytes {start}-{end}/{total}"),
                            )
                            .body(Body::from(bytes[start..=end].to_vec()))
                            .expect("ranged response")
                    }
                    _ => builder.body(Body::from(bytes)).expect("full response"),
                }
            }
        });
        let (addr, task) = serve_on_loopback(app).await;
        Self {
            addr,
            requests,
            task,
        }
    }

    /// The value for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `app` on a free port of 127.0.0.1 until the task is aborted.
async fn serve_on_loopback(app: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

/// A static file server on 127.0.0.1 serving a directory at `/PATH` (a data mirror for
/// `redtrace data pull --mirror`), counting requests; files named in `corrupt` are served
/// with their first byte changed.
pub struct FileServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    /// Serves `root`.
    pub async fn start(root: PathBuf, corrupt: Vec<String>) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let root = Arc::new(root);
        let corrupt = Arc::new(corrupt);
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let (root, corrupt, counter) = (root.clone(), corrupt.clone(), counter.clone());
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let path = request.uri().path().trim_start_matches('/').to_owned();
                if path.split('/').any(|part| part == "..") {
                    return plain(StatusCode::BAD_REQUEST, "bad path");
                }
                match tokio::fs::read(root.join(&path)).await {
                    Ok(mut bytes) => {
                        if corrupt.contains(&path) && !bytes.is_empty() {
                            bytes[0] ^= 0xff;
                        }
                        Response::builder()
                            .body(Body::from(bytes))
                            .expect("file response")
                    }
                    Err(_) => plain(StatusCode::NOT_FOUND, "not found"),
                }
            }
        });
        let (addr, task) = serve_on_loopback(app).await;
        Self {
            addr,
            requests,
            task,
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
