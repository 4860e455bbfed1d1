//! Model downloads from a (fake) hub: a mirror that sends one byte fewer than it announced
//! stalls; the download is abandoned after the stall time, tried again, and fails saying why,
//! instead of waiting forever; a good mirror's file lands in the cache.

use redtrace_engine::{Progress, UnitOutcome};
use redtrace_suite::download_from;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Notes(Mutex<Vec<String>>);

impl Progress for Notes {
    fn begin(&self, _total: Option<u64>) {}
    fn unit(&self, _outcome: UnitOutcome) {}
    fn note(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_owned());
    }
    fn end(&self) {}
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_download_is_retried_then_fails_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    std::fs::write(&model, vec![7u8; 100_000]).unwrap();
    let files = vec![("org/tiny".to_owned(), "tiny.gguf".to_owned(), model.clone())];

    let short = redtrace_testkit::FakeHub::start_short(files.clone()).await;
    let notes = Arc::new(Notes::default());
    let error = download_from(
        &short.endpoint(),
        hf_hub::Cache::new(dir.path().join("cache-short")),
        "org/tiny",
        "tiny.gguf",
        notes.clone(),
        Duration::from_millis(600),
        2,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("stalled: no data for 0.6 s")
            && error.contains("fewer bytes than it announced")
            && error.contains("gave up after 2 attempts"),
        "{error}"
    );
    let notes = notes.0.lock().unwrap().clone();
    assert!(
        notes.iter().any(|n| n.contains("trying again (2 of 2)")),
        "{notes:?}"
    );

    let good = redtrace_testkit::FakeHub::start(files).await;
    let path = download_from(
        &good.endpoint(),
        hf_hub::Cache::new(dir.path().join("cache-good")),
        "org/tiny",
        "tiny.gguf",
        Arc::new(Notes::default()),
        Duration::from_secs(20),
        2,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), std::fs::read(&model).unwrap());
}
