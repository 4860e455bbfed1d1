//! The local web viewer (`redtrace view`): a list of runs, a run's metrics, a filterable table
//! of its samples and a page per sample with the prompt, the trace and the answer side by side
//! and every judge's verdict and rationale.
//!
//! Every page is read from the store when it is asked for, through its own SQLite connection,
//! so a run that is being written can be watched (its page refreshes itself while it runs).
//! Pages are plain HTML rendered here; model output is escaped everywhere, and the
//! Content-Security-Policy allows no script but the viewer's own keyboard-navigation file.

mod filter;
mod pages;

pub use filter::Filter;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use redtrace_store::{RunId, Store, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

/// Pages may load styles inline and the viewer's own script; nothing else, from nowhere.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; img-src data:; \
                   form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Keyboard navigation: `j`/`→` next sample, `k`/`←` previous, `u`/`Esc` back to the list.
const NAV_JS: &str = r#"document.addEventListener('keydown', function (event) {
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.target.closest && event.target.closest('input, select, textarea')) return;
  var keys = { j: 'next', ArrowRight: 'next', k: 'prev', ArrowLeft: 'prev', u: 'up', Escape: 'up' };
  var link = keys[event.key] && document.getElementById(keys[event.key]);
  if (link) { event.preventDefault(); window.location.href = link.href; }
});
"#;

/// Which `Host` names the viewer answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosts {
    /// Loopback names only (`localhost`, `127.0.0.1`, `[::1]`, with any port): a web page on
    /// another site that rebinds its own domain to 127.0.0.1 sends its own name, and is refused
    /// (DNS rebinding would otherwise read every stored prompt and response).
    Loopback,
    /// Any name (`--allow-remote`).
    Any,
}

/// The viewer's routes over the store at `db`, answering requests for `hosts`.
pub fn router(db: PathBuf, hosts: Hosts) -> Router {
    let router = Router::new()
        .route("/", get(runs))
        .route("/nav.js", get(nav_js))
        .route("/runs/{run}", get(run))
        .route("/runs/{run}/report", get(report))
        .route("/runs/{run}/samples", get(samples))
        .route("/runs/{run}/samples/{position}", get(sample))
        .with_state(Arc::new(db));
    match hosts {
        Hosts::Loopback => router.layer(axum::middleware::from_fn(loopback_only)),
        Hosts::Any => router,
    }
}

/// Serves the viewer on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    db: PathBuf,
    hosts: Hosts,
) -> std::io::Result<()> {
    axum::serve(listener, router(db, hosts)).await
}

/// Refuses a request whose `Host` is not a loopback name.
async fn loopback_only(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    if host.is_some_and(is_loopback_host) {
        return next.run(request).await;
    }
    (
        StatusCode::FORBIDDEN,
        "this viewer answers only to localhost, 127.0.0.1 or [::1] (start it with --allow-remote \
         to serve other names)\n",
    )
        .into_response()
}

/// Whether a `Host` header (`name[:port]`) names this machine's loopback interface.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((address, _port)) => address,
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

type Db = State<Arc<PathBuf>>;

/// A page, or the error page that says what went wrong.
fn html(result: Result<String, ViewError>) -> Response {
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(ViewError::NotFound(what)) => (
            StatusCode::NOT_FOUND,
            pages::document("not found", &pages::error(&what)),
        ),
        Err(ViewError::Store(error)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::document("error", &pages::error(&error.to_string())),
        ),
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Why a page could not be shown.
#[derive(Debug)]
enum ViewError {
    NotFound(String),
    Store(StoreError),
}

impl From<StoreError> for ViewError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => ViewError::NotFound(what),
            other => ViewError::Store(other),
        }
    }
}

/// Runs `read` on a fresh store connection off the async threads.
async fn with_store<T: Send + 'static>(
    db: &Arc<PathBuf>,
    read: impl FnOnce(&Store) -> Result<T, ViewError> + Send + 'static,
) -> Result<T, ViewError> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || read(&Store::open_read_only(&db)?))
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

fn run_info(store: &Store, run: RunId) -> Result<redtrace_store::RunInfo, ViewError> {
    Ok(store.resolve_run(&run.to_string())?)
}

async fn runs(State(db): Db) -> Response {
    html(
        with_store(&db, |store| {
            let runs = store.runs()?;
            let mut listed = Vec::with_capacity(runs.len());
            for info in runs {
                let models = store.models(info.id)?;
                listed.push((info, models));
            }
            Ok(pages::runs(&listed))
        })
        .await,
    )
}

async fn run(State(db): Db, UrlPath(run): UrlPath<RunId>) -> Response {
    html(
        with_store(&db, move |store| {
            let info = run_info(store, run)?;
            let report = redtrace_report::Report::build(store, &info)?;
            Ok(pages::run(&info, &report))
        })
        .await,
    )
}

async fn report(State(db): Db, UrlPath(run): UrlPath<RunId>) -> Response {
    html(
        with_store(&db, move |store| {
            let info = run_info(store, run)?;
            let report = redtrace_report::Report::build(store, &info)?;
            Ok(report.to_html(store, None)?)
        })
        .await,
    )
}

/// Rows per page of the samples table.
const PAGE_ROWS: usize = 200;

async fn samples(
    State(db): Db,
    UrlPath(run): UrlPath<RunId>,
    Query(filter): Query<Filter>,
) -> Response {
    html(
        with_store(&db, move |store| {
            let info = run_info(store, run)?;
            let page = filter.page.unwrap_or(0);
            // A huge page number is past the end, not an overflow.
            let first = page.saturating_mul(PAGE_ROWS);
            let mut rows = Vec::new();
            let mut matching = 0usize;
            let mut total = 0usize;
            let mut choices = filter::Choices::default();
            store.for_each_result(run, filter.needs_prompts(), |row| {
                total += 1;
                choices.add(&row);
                if filter.matches(&row) {
                    if matching >= first && matching < first + PAGE_ROWS {
                        rows.push((matching, row));
                    }
                    matching += 1;
                }
                Ok(())
            })?;
            Ok(pages::samples(
                &info, &filter, &choices, &rows, matching, total, page, PAGE_ROWS,
            ))
        })
        .await,
    )
}

async fn sample(
    State(db): Db,
    UrlPath((run, position)): UrlPath<(RunId, usize)>,
    Query(filter): Query<Filter>,
) -> Response {
    html(
        with_store(&db, move |store| {
            let info = run_info(store, run)?;
            let mut found = None;
            let mut matching = 0usize;
            store.for_each_result(run, true, |row| {
                if filter.matches(&row) {
                    if matching == position {
                        found = Some(row);
                    }
                    matching += 1;
                }
                Ok(())
            })?;
            let row = found.ok_or_else(|| {
                ViewError::NotFound(format!(
                    "run {run} has {matching} samples matching this filter; there is no number {}",
                    position + 1
                ))
            })?;
            Ok(pages::sample(&info, &filter, &row, position, matching))
        })
        .await,
    )
}

async fn nav_js() -> Response {
    let mut response = NAV_JS.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
