//! A fake of the OpenAI Batch and Anthropic Message Batches APIs on 127.0.0.1: file upload
//! (multipart), batch creation, states that advance with each poll, output and error files,
//! partial failure, expiry, cancellation, and the batch list with its metadata. Each request
//! of a batch is answered by a script, in the wire format of its API.

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::wire::{self, Wire};
use crate::FakeMessage;

/// How the fake answers one request of a batch.
#[derive(Debug, Clone)]
pub enum BatchLine {
    /// A reply.
    Reply(FakeMessage),
    /// The provider rejects the request (HTTP 400 alone; `errored` with an invalid request).
    Rejected,
    /// A server error for this request.
    ServerError,
    /// No result: the batch expired before it.
    Expired,
}

/// How a batch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEnd {
    /// Every request answered as scripted.
    Complete,
    /// The batch expires: the first half answered, the rest expired.
    Expire,
    /// The batch is cancelled: the first half answered, the rest not.
    Cancel,
}

type Script = dyn Fn(&str, &Value) -> BatchLine + Send + Sync;

struct Batch {
    api: Wire,
    requests: Vec<(String, Value)>,
    metadata: Value,
    polls: usize,
    end: BatchEnd,
    done: bool,
}

#[derive(Default)]
struct Ledger {
    files: HashMap<String, String>,
    batches: Vec<Batch>,
}

struct State {
    script: Box<Script>,
    ledger: Mutex<Ledger>,
    /// Polls a batch takes to end.
    polls_to_end: usize,
    /// While set, no batch ends.
    hold: AtomicBool,
    /// How the next batches end.
    end: Mutex<BatchEnd>,
    creates: AtomicUsize,
    /// Requests sent on their own.
    live: Mutex<usize>,
    addr: Mutex<Option<SocketAddr>>,
}

/// A running fake batch API; it stops when dropped.
pub struct FakeBatchApi {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBatchApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeBatchApi {
    /// Starts the fake; each batch ends after `polls_to_end` looks at its state, each request
    /// answered by `script(custom_id, body)`.
    pub async fn start(
        polls_to_end: usize,
        script: impl Fn(&str, &Value) -> BatchLine + Send + Sync + 'static,
    ) -> Self {
        let state = Arc::new(State {
            script: Box::new(script),
            ledger: Mutex::new(Ledger::default()),
            polls_to_end,
            hold: AtomicBool::new(false),
            end: Mutex::new(BatchEnd::Complete),
            creates: AtomicUsize::new(0),
            live: Mutex::new(0),
            addr: Mutex::new(None),
        });
        let app_state = state.clone();
        let (addr, task) = crate::serve(move |request| handle(app_state.clone(), request)).await;
        *state.addr.lock().expect("addr") = Some(addr);
        Self { addr, state, task }
    }

    /// The base URL, e.g. `http://127.0.0.1:40123/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Holds every batch in progress (`true`) or lets them end (`false`).
    pub fn hold(&self, hold: bool) {
        self.state.hold.store(hold, Ordering::SeqCst);
    }

    /// How the batches created from now on end.
    pub fn end_with(&self, end: BatchEnd) {
        *self.state.end.lock().expect("end") = end;
    }

    /// Batches created so far.
    pub fn creates(&self) -> usize {
        self.state.creates.load(Ordering::SeqCst)
    }

    /// Requests sent on their own (outside a batch).
    pub fn live(&self) -> usize {
        *self.state.live.lock().expect("live")
    }

    /// The custom ids of each batch created, in order.
    pub fn batches(&self) -> Vec<Vec<String>> {
        let ledger = self.state.ledger.lock().expect("ledger");
        ledger
            .batches
            .iter()
            .map(|b| b.requests.iter().map(|(id, _)| id.clone()).collect())
            .collect()
    }
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("static response")
}

fn not_found() -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"error": {"message": "not found"}}),
    )
}

/// The JSONL part of a multipart upload.
fn file_part(body: &str) -> Option<String> {
    let start = body.find("filename=")?;
    let content = &body[start..];
    let begin = content.find("\r\n\r\n")? + 4;
    let content = &content[begin..];
    let end = content.rfind("\r\n--")?;
    Some(content[..end].to_owned())
}

async fn handle(state: Arc<State>, request: Request<Body>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let bytes = axum::body::to_bytes(request.into_body(), 512 << 20)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let parts: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let base = format!(
        "http://{}/v1",
        state.addr.lock().expect("addr").expect("bound")
    );
    let mut ledger = state.ledger.lock().expect("ledger");
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["files"]) => {
            let Some(file) = file_part(&text) else {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"message": "no file part"}}),
                );
            };
            let id = format!("file-{}", ledger.files.len());
            ledger.files.insert(id.clone(), file);
            json_response(
                StatusCode::OK,
                json!({"id": id, "object": "file", "purpose": "batch"}),
            )
        }
        ("POST", ["batches"]) => {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let Some(file) = body["input_file_id"]
                .as_str()
                .and_then(|f| ledger.files.get(f))
            else {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"message": "no such input file"}}),
                );
            };
            let requests = file
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    let line: Value = serde_json::from_str(l).unwrap_or(Value::Null);
                    (
                        line["custom_id"].as_str().unwrap_or("").to_owned(),
                        line["body"].clone(),
                    )
                })
                .collect();
            let id = create(
                &state,
                &mut ledger,
                Wire::OpenAi,
                requests,
                body["metadata"].clone(),
            );
            json_response(
                StatusCode::OK,
                openai_batch(id, &ledger.batches[id], "validating"),
            )
        }
        ("GET", ["batches"]) if !query.is_empty() && query.contains("pageSize") => {
            let operations: Vec<Value> = ledger
                .batches
                .iter()
                .enumerate()
                .filter(|(_, b)| b.api == Wire::Gemini)
                .map(|(i, b)| gemini_batch(&state, i, b))
                .collect();
            json_response(StatusCode::OK, json!({"operations": operations}))
        }
        ("GET", ["batches"]) => {
            let data: Vec<Value> = ledger
                .batches
                .iter()
                .enumerate()
                .filter(|(_, b)| b.api == Wire::OpenAi)
                .map(|(i, b)| openai_batch(i, b, "in_progress"))
                .collect();
            json_response(
                StatusCode::OK,
                json!({"object": "list", "data": data, "has_more": false}),
            )
        }
        ("GET", ["batches", id]) if id.starts_with("batch_") => {
            let Some(i) = id
                .strip_prefix("batch_")
                .and_then(|i| i.parse::<usize>().ok())
            else {
                return not_found();
            };
            let Some(batch) = ledger.batches.get_mut(i) else {
                return not_found();
            };
            let status = advance(&state, batch);
            let mut body = openai_batch(i, batch, status);
            if batch.done {
                body["output_file_id"] = json!(format!("out-{i}"));
                body["error_file_id"] = json!(format!("err-{i}"));
            }
            json_response(StatusCode::OK, body)
        }
        ("POST", ["batches", id, "cancel"]) => {
            let Some(i) = id
                .strip_prefix("batch_")
                .and_then(|i| i.parse::<usize>().ok())
            else {
                return not_found();
            };
            let Some(batch) = ledger.batches.get_mut(i) else {
                return not_found();
            };
            batch.end = BatchEnd::Cancel;
            json_response(StatusCode::OK, openai_batch(i, batch, "cancelling"))
        }
        ("GET", ["files", file, "content"]) => {
            let (errors, index) = match (file.strip_prefix("out-"), file.strip_prefix("err-")) {
                (Some(i), _) => (false, i),
                (_, Some(i)) => (true, i),
                _ => return not_found(),
            };
            let Some(batch) = index
                .parse::<usize>()
                .ok()
                .and_then(|i| ledger.batches.get(i))
            else {
                return not_found();
            };
            let lines: Vec<String> = results(&state, batch)
                .into_iter()
                .filter_map(|(id, outcome)| {
                    let line = match (&outcome, errors) {
                        (Some(BatchLine::Reply(message)), false) => json!({
                            "id": format!("batch_req_{id}"), "custom_id": id,
                            "response": {"status_code": 200, "request_id": "req", "body": crate::whole_openai(message, "m")},
                            "error": null,
                        }),
                        (Some(BatchLine::Rejected), true) => json!({
                            "custom_id": id,
                            "response": {"status_code": 400, "body": {"error": {"message": "invalid request", "type": "invalid_request_error"}}},
                            "error": null,
                        }),
                        (Some(BatchLine::ServerError), true) => json!({
                            "custom_id": id,
                            "response": {"status_code": 500, "body": {"error": {"message": "server error"}}},
                            "error": null,
                        }),
                        (Some(BatchLine::Expired), true) | (None, true) if batch.end != BatchEnd::Cancel => json!({
                            "custom_id": id, "response": null,
                            "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."},
                        }),
                        _ => return None,
                    };
                    Some(line.to_string())
                })
                .collect();
            Response::builder()
                .header("content-type", "application/jsonl")
                .body(Body::from(lines.join("\n")))
                .expect("static response")
        }
        ("POST", ["models", call]) if call.ends_with(":batchGenerateContent") => {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let requests = body["batch"]["inputConfig"]["requests"]["requests"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|r| {
                    (
                        r["metadata"]["key"].as_str().unwrap_or("").to_owned(),
                        r["request"].clone(),
                    )
                })
                .collect();
            let id = create(
                &state,
                &mut ledger,
                Wire::Gemini,
                requests,
                json!(body["batch"]["displayName"]),
            );
            json_response(
                StatusCode::OK,
                gemini_batch(&state, id, &ledger.batches[id]),
            )
        }
        ("GET", ["batches", id]) if id.parse::<usize>().is_ok() => {
            let i: usize = id.parse().expect("checked");
            let Some(batch) = ledger.batches.get_mut(i) else {
                return not_found();
            };
            advance(&state, batch);
            json_response(StatusCode::OK, gemini_batch(&state, i, batch))
        }
        ("POST", ["messages", "batches"]) => {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let requests = body["requests"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|r| {
                    (
                        r["custom_id"].as_str().unwrap_or("").to_owned(),
                        r["params"].clone(),
                    )
                })
                .collect();
            let id = create(&state, &mut ledger, Wire::Anthropic, requests, Value::Null);
            json_response(
                StatusCode::OK,
                anthropic_batch(id, &ledger.batches[id], &base),
            )
        }
        ("GET", ["messages", "batches", id]) => {
            let Some(i) = id
                .strip_prefix("msgbatch_")
                .and_then(|i| i.parse::<usize>().ok())
            else {
                return not_found();
            };
            let Some(batch) = ledger.batches.get_mut(i) else {
                return not_found();
            };
            advance(&state, batch);
            json_response(StatusCode::OK, anthropic_batch(i, batch, &base))
        }
        ("GET", ["messages", "batches", id, "results"]) => {
            let Some(batch) = id
                .strip_prefix("msgbatch_")
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| ledger.batches.get(i))
            else {
                return not_found();
            };
            let lines: Vec<String> = results(&state, batch)
                .into_iter()
                .map(|(id, outcome)| {
                    let result = match outcome {
                        Some(BatchLine::Reply(message)) => json!({"type": "succeeded", "message": wire::whole(Wire::Anthropic, &message, "m")}),
                        Some(BatchLine::Rejected) => json!({"type": "errored", "error": {"type": "error", "error": {"type": "invalid_request_error", "message": "invalid request"}}}),
                        Some(BatchLine::ServerError) => json!({"type": "errored", "error": {"type": "error", "error": {"type": "api_error", "message": "server error"}}}),
                        Some(BatchLine::Expired) => json!({"type": "expired"}),
                        None if batch.end == BatchEnd::Cancel => json!({"type": "canceled"}),
                        None => json!({"type": "expired"}),
                    };
                    json!({"custom_id": id, "result": result}).to_string()
                })
                .collect();
            Response::builder()
                .header("content-type", "application/binary")
                .body(Body::from(lines.join("\n")))
                .expect("static response")
        }
        ("POST", ["models", call]) if call.ends_with(":generateContent") => {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            *state.live.lock().expect("live") += 1;
            match (state.script)("", &body) {
                BatchLine::Reply(message) => {
                    json_response(StatusCode::OK, wire::whole(Wire::Gemini, &message, "m"))
                }
                BatchLine::Rejected => json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"code": 400, "message": "invalid argument"}}),
                ),
                _ => json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": {"code": 500, "message": "internal"}}),
                ),
            }
        }
        // Requests sent on their own (a batch's failures retried live) answered by the script.
        ("POST", ["chat", "completions"]) | ("POST", ["messages"]) => {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let wire = if parts[0] == "chat" {
                Wire::OpenAi
            } else {
                Wire::Anthropic
            };
            *state.live.lock().expect("live") += 1;
            match (state.script)("", &body) {
                BatchLine::Reply(message) if wire == Wire::OpenAi => {
                    json_response(StatusCode::OK, crate::whole_openai(&message, "m"))
                }
                BatchLine::Reply(message) => {
                    json_response(StatusCode::OK, wire::whole(Wire::Anthropic, &message, "m"))
                }
                BatchLine::Rejected => json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"error": {"message": "invalid request"}}),
                ),
                _ => json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": {"message": "server error"}}),
                ),
            }
        }
        _ => not_found(),
    }
}

/// Records a batch created with `requests`; its index.
fn create(
    state: &State,
    ledger: &mut Ledger,
    api: Wire,
    requests: Vec<(String, Value)>,
    metadata: Value,
) -> usize {
    state.creates.fetch_add(1, Ordering::SeqCst);
    let end = *state.end.lock().expect("end");
    ledger.batches.push(Batch {
        api,
        requests,
        metadata,
        polls: 0,
        end,
        done: false,
    });
    ledger.batches.len() - 1
}

/// One more look at `batch`: its state after it.
fn advance(state: &State, batch: &mut Batch) -> &'static str {
    batch.polls += 1;
    if !batch.done && !state.hold.load(Ordering::SeqCst) && batch.polls >= state.polls_to_end {
        batch.done = true;
    }
    match (batch.done, batch.end) {
        (false, _) if batch.polls <= 1 => "validating",
        (false, _) => "in_progress",
        (true, BatchEnd::Complete) => "completed",
        (true, BatchEnd::Expire) => "expired",
        (true, BatchEnd::Cancel) => "cancelled",
    }
}

/// Each request's outcome in an ended batch: all as scripted, or (expired, cancelled) the
/// first half as scripted and the rest none.
fn results(state: &State, batch: &Batch) -> Vec<(String, Option<BatchLine>)> {
    let answered = match batch.end {
        BatchEnd::Complete => batch.requests.len(),
        _ => batch.requests.len() / 2,
    };
    batch
        .requests
        .iter()
        .enumerate()
        .map(|(i, (id, body))| (id.clone(), (i < answered).then(|| (state.script)(id, body))))
        .collect()
}

fn openai_batch(i: usize, batch: &Batch, status: &str) -> Value {
    json!({
        "id": format!("batch_{i}"),
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "status": status,
        "metadata": batch.metadata,
        "request_counts": {"total": batch.requests.len()},
    })
}

/// A Gemini batch operation: its state, and when it has ended its responses inline, in the
/// order of its requests (without their keys, as the API returns them).
fn gemini_batch(state: &State, i: usize, batch: &Batch) -> Value {
    let status = match (batch.done, batch.end) {
        (false, _) if batch.polls <= 1 => "BATCH_STATE_PENDING",
        (false, _) => "BATCH_STATE_RUNNING",
        (true, BatchEnd::Complete) => "BATCH_STATE_SUCCEEDED",
        (true, BatchEnd::Expire) => "BATCH_STATE_EXPIRED",
        (true, BatchEnd::Cancel) => "BATCH_STATE_CANCELLED",
    };
    let mut operation = json!({
        "name": format!("batches/{i}"),
        "metadata": {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "displayName": batch.metadata,
            "state": status,
        },
        "done": batch.done,
    });
    if batch.done {
        let inline: Vec<Value> = results(state, batch)
            .into_iter()
            .filter_map(|(_, outcome)| match outcome? {
                BatchLine::Reply(message) => {
                    Some(json!({"response": wire::whole(Wire::Gemini, &message, "m")}))
                }
                BatchLine::Rejected => {
                    Some(json!({"error": {"code": 3, "message": "invalid argument"}}))
                }
                BatchLine::ServerError => {
                    Some(json!({"error": {"code": 13, "message": "internal error"}}))
                }
                BatchLine::Expired => None,
            })
            .collect();
        operation["response"] = json!({
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput",
            "inlinedResponses": {"inlinedResponses": inline},
        });
    }
    operation
}

fn anthropic_batch(i: usize, batch: &Batch, base: &str) -> Value {
    json!({
        "id": format!("msgbatch_{i}"),
        "type": "message_batch",
        "processing_status": if batch.done { "ended" } else { "in_progress" },
        "cancel_initiated_at": if batch.done && batch.end == BatchEnd::Cancel { json!("2026-12-02T00:00:00Z") } else { Value::Null },
        "results_url": if batch.done { json!(format!("{base}/messages/batches/msgbatch_{i}/results")) } else { Value::Null },
        "request_counts": {"processing": batch.requests.len()},
    })
}
