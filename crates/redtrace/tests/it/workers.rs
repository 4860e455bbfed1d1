//! Workers of one run on a shared PostgreSQL store, through the binary: `--enqueue-only`
//! queues a run without sending anything; four workers (`redtrace run` of the same command,
//! and `redtrace worker`, which works the run from its recipe) take it together; two killed with
//! SIGKILL mid-run leave their units to the others once their lease runs out; the run ends
//! complete with every unit stored once, and the requests sent again are no more than the
//! units the killed workers held.

use crate::util::{command, redtrace, text};
use redtrace_testkit::{FakeServer, Reply};
use std::time::Duration;

/// `count` questions in a CSV in `dir`; the benchmark reference.
fn questions(dir: &std::path::Path, count: usize) -> String {
    let csv = dir.join("q.csv");
    let mut rows = String::from("prompt\n");
    for i in 0..count {
        rows.push_str(&format!("question {i}\n"));
    }
    std::fs::write(&csv, rows).unwrap();
    format!("file:{}", csv.display())
}

/// Runs `count` workers of `args` at once, each to a successful end.
async fn work_together(args: &[&str], count: usize) {
    let workers: Vec<_> = (0..count)
        .map(|_| {
            command(args, &[])
                .stdout(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        })
        .collect();
    for worker in workers {
        let output = worker.wait_with_output().await.unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
}

/// A query's single number, from the test's own connection.
fn number(url: &str, sql: &str) -> i64 {
    let url = url.to_owned();
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client.query_one(sql.as_str(), &[]).unwrap().get(0)
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn four_workers_two_killed_every_unit_once() {
    let Some(url) = redtrace_testkit::postgres_db() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let units = 240;
    let bench = questions(dir.path(), units);
    let server = FakeServer::start(|seen| {
        Reply::think_tags("Thinking.", &format!("I can't help with {}.", seen.prompt))
            .after(Duration::from_millis(60))
    })
    .await;
    let model = server.model_ref("m");
    let worker = [
        "run",
        "--quiet",
        "--model",
        &model,
        "--bench",
        &bench,
        "--db",
        &url,
        "--concurrency",
        "4",
        "--lease-secs",
        "1.5",
    ];

    // Queued, nothing sent.
    let output = redtrace(&[&worker[..], &["--enqueue-only"]].concat()).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(server.count(), 0);
    assert_eq!(
        number(&url, "SELECT count(*) FROM units WHERE NOT done"),
        units as i64
    );

    // Four workers; two are killed once a quarter of the units are done.
    // Two started as the run was (`redtrace run`, the same command), two with `redtrace
    // worker`, which works the run from its recipe; one of each is killed.
    let joiner = [
        "worker",
        "--quiet",
        "--db",
        &url,
        "--concurrency",
        "4",
        "--lease-secs",
        "1.5",
    ];
    let mut children: Vec<tokio::process::Child> = (0..4)
        .map(|i| {
            command(if i % 2 == 0 { &worker } else { &joiner }, &[])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while number(&url, "SELECT count(*) FROM units WHERE done") < units as i64 / 4 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut killed = Vec::new();
    for child in children.iter_mut().take(2) {
        let pid = child.id().unwrap();
        // SIGKILL: no chance to give anything back.
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        child.wait().await.unwrap();
        killed.push(format!("':{pid}'"));
    }
    // What the killed workers held when they died: taken, not stored.
    let held = number(
        &url,
        &format!(
            "SELECT count(*) FROM units WHERE NOT done AND ({})",
            killed
                .iter()
                .map(|suffix| format!("worker LIKE '%' || {suffix}"))
                .collect::<Vec<_>>()
                .join(" OR ")
        ),
    );
    for child in children.iter_mut().skip(2) {
        let output = tokio::time::timeout(Duration::from_secs(120), child.wait())
            .await
            .expect("the surviving workers finish");
        assert!(output.unwrap().success());
    }

    // Every unit stored once, answered; the run complete.
    assert_eq!(
        number(&url, "SELECT count(*) FROM completions WHERE error IS NULL"),
        units as i64
    );
    assert_eq!(
        number(&url, "SELECT count(DISTINCT sample_id) FROM completions"),
        units as i64
    );
    assert_eq!(number(&url, "SELECT count(*) FROM units WHERE NOT done"), 0);
    let resent = server.count() as i64 - units as i64;
    eprintln!("killed workers held {held} units; {resent} requests were sent again");
    assert!(held > 0, "the kills came mid-run");
    assert!(
        resent <= held,
        "{resent} requests sent again, more than the {held} units the killed workers held"
    );
    let runs = redtrace(&["runs", "--db", &url]).await;
    let listing = text(&runs.stdout);
    assert!(runs.status.success(), "{}", text(&runs.stderr));
    assert!(listing.contains("complete"), "{listing}");
    assert!(listing.contains("0 units queued"), "{listing}");
    assert!(listing.contains("workers:"), "{listing}");
    // Reading commands read the shared store as they read a file.
    let report = redtrace(&["report", "--db", &url]).await;
    assert!(report.status.success(), "{}", text(&report.stderr));
    assert!(
        text(&report.stdout).contains("refusal"),
        "{}",
        text(&report.stdout)
    );
    let export = redtrace(&["export", "--db", &url, "--format", "jsonl"]).await;
    assert!(export.status.success(), "{}", text(&export.stderr));
    assert_eq!(text(&export.stdout).lines().count(), units);
    let mut viewer = command(&["view", "--port", "0", "--db", &url], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(
        &mut tokio::io::BufReader::new(viewer.stdout.take().unwrap()),
        &mut line,
    )
    .await
    .unwrap();
    let address = line
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let page = get(&address, "/runs/1").await;
    assert!(page.starts_with("HTTP/1.0 200"), "{page}");
    assert!(page.contains("240 completions, 0 errors"), "{page}");
    let page = get(&address, "/runs/1/samples").await;
    assert!(
        page.contains("question 1"),
        "the viewer lists the run's samples"
    );
    viewer.kill().await.unwrap();
}

/// The body of `GET path` from `address` (HTTP/1.0, the whole reply).
async fn get(address: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    reply
}

/// `--rpm` is the endpoint's limit for the whole run, not for each worker: three workers at
/// 600 requests a minute together start no more than 10 requests in any second.
#[tokio::test(flavor = "multi_thread")]
async fn requests_per_minute_hold_across_three_workers() {
    let Some(url) = redtrace_testkit::postgres_db() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let units = 36;
    let bench = questions(dir.path(), units);
    let server = FakeServer::start(|_| Reply::think_tags("Thinking.", "No.")).await;
    let model = server.model_ref("m");
    let args = [
        "run", "--quiet", "--model", &model, "--bench", &bench, "--db", &url, "--rpm", "600",
    ];
    let output = redtrace(&[&args[..], &["--enqueue-only"]].concat()).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    work_together(&args, 3).await;
    let mut at: Vec<std::time::Instant> = server.requests().iter().map(|seen| seen.at).collect();
    at.sort();
    assert_eq!(at.len(), units);
    let busiest = (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| t.duration_since(at[i]) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    let span = at[at.len() - 1].duration_since(at[0]);
    eprintln!("busiest second: {busiest} requests; {units} requests over {span:?}");
    assert!(
        busiest <= 11,
        "{busiest} requests started within one second"
    );
    assert!(span >= Duration::from_millis(3200), "{span:?}");
    assert!(
        number(&url, "SELECT count(DISTINCT worker) FROM completions") >= 2,
        "the workers shared the run"
    );
}

/// `redtrace worker` refuses what it cannot work: a SQLite store (exit 2, before anything),
/// and a run whose data changed since it was started (naming what differs); the queue's flags
/// need a PostgreSQL store, and --shard has no place on one.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_refuses_sqlite_and_a_changed_run() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("r.db");
    let output = redtrace(&["worker", "--db", sqlite.to_str().unwrap()]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("needs a shared PostgreSQL store"));

    // The queue's flags on a SQLite store, and --shard on a PostgreSQL one, are usage errors.
    let bench = questions(dir.path(), 3);
    let output = redtrace(&[
        "run",
        "--model",
        "m@http://127.0.0.1:9/v1",
        "--bench",
        &bench,
        "--db",
        sqlite.to_str().unwrap(),
        "--enqueue-only",
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("are for a run's workers on a PostgreSQL store"));
    let output = redtrace(&[
        "run",
        "--model",
        "m@http://127.0.0.1:9/v1",
        "--bench",
        &bench,
        "--db",
        "postgres://u@localhost/db",
        "--shard",
        "0/2",
    ])
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("the workers share the run's queue"));

    let Some(url) = redtrace_testkit::postgres_db() else {
        return;
    };
    let server = FakeServer::start(|_| Reply::think_tags("Thinking.", "No.")).await;
    let model = server.model_ref("m");
    let output = redtrace(&[
        "run",
        "--quiet",
        "--model",
        &model,
        "--bench",
        &bench,
        "--db",
        &url,
        "--enqueue-only",
    ])
    .await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    // The data file changes under the run: a worker would make another run, and refuses.
    questions(dir.path(), 4);
    let output = redtrace(&["worker", "--quiet", "--db", &url]).await;
    assert!(!output.status.success());
    let error = text(&output.stderr);
    assert!(error.contains("differs from run 1"), "{error}");
    assert!(error.contains("sha256"), "{error}");
    assert_eq!(server.count(), 0);
}

/// `--concurrency` as the run was started is the endpoint's limit for the whole run: three
/// workers, each allowed 4 in flight of its own, keep 4 in flight in all.
#[tokio::test(flavor = "multi_thread")]
async fn requests_in_flight_hold_across_three_workers() {
    let Some(url) = redtrace_testkit::postgres_db() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let units = 48;
    let bench = questions(dir.path(), units);
    let server = FakeServer::start(|_| {
        Reply::think_tags("Thinking.", "No.").after(Duration::from_millis(40))
    })
    .await;
    let model = server.model_ref("m");
    let args = [
        "run",
        "--quiet",
        "--model",
        &model,
        "--bench",
        &bench,
        "--db",
        &url,
        "--concurrency",
        "4",
    ];
    let output = redtrace(&[&args[..], &["--enqueue-only"]].concat()).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    work_together(&args, 3).await;
    assert_eq!(server.count(), units);
    eprintln!("at most {} requests in flight", server.max_in_flight());
    assert!(server.max_in_flight() <= 4, "{}", server.max_in_flight());
    assert!(
        number(&url, "SELECT count(DISTINCT worker) FROM completions") >= 2,
        "the workers shared the run"
    );
}
