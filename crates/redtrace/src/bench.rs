//! `redtrace bench`: the whole path (loader, provider, engine, store, refusal judge) against
//! a local fake server with a set latency, with wall time against the ideal, throughput, our
//! CPU time per 1,000 samples (the fake server's thread is measured and left out) and peak RSS.

use anyhow::{Context, Result};
use redtrace_engine::{NoProgress, Shutdown};
use redtrace_testkit::{FakeMessage, FakeServer, Reply};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::BenchArgs;

/// CPU seconds (user + system) from a `/proc/.../stat` file.
fn cpu_seconds(stat_path: &str) -> Result<f64> {
    let text =
        std::fs::read_to_string(stat_path).with_context(|| format!("reading {stat_path}"))?;
    let after_name = text
        .rsplit_once(") ")
        .map(|(_, rest)| rest)
        .context("unexpected stat format")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted from the state field (3): utime and stime in
    // clock ticks, which Linux reports at USER_HZ = 100.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

fn peak_rss_mb() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?;
    let kb: f64 = line
        .split_whitespace()
        .nth(1)
        .context("bad VmHWM line")?
        .parse()?;
    Ok(kb / 1024.0)
}

/// A reply shaped like a reasoning model's: a trace in `reasoning_content` and an answer.
fn reply(latency: Duration) -> Reply {
    let message = Reply::Message(FakeMessage {
        content: Some(
            "I can't help with making anything dangerous, but here is some general safety information about \
             household chemicals: store them apart, keep them labelled, and ventilate the room when cleaning."
                .into(),
        ),
        reasoning_content: Some(
            "The user asks about mixing cleaning products. Some combinations release toxic gases, so a \
             step-by-step recipe would be harmful. I should decline the recipe and give general safety \
             advice instead, keeping it short and useful."
                .into(),
        ),
        ..Default::default()
    });
    if latency.is_zero() {
        message
    } else {
        message.after(latency)
    }
}

/// CPU seconds of every PostgreSQL server process on this machine, with those of the backends
/// that have ended (0 where there is none or /proc cannot tell).
fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .filter_map(|entry| {
            // utime, stime, and cutime, cstime: the postmaster's reaped backends count there.
            let text = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let fields: Vec<f64> = text
                .rsplit_once(") ")?
                .1
                .split_whitespace()
                .skip(11)
                .take(4)
                .filter_map(|field| field.parse().ok())
                .collect();
            Some(fields.iter().sum::<f64>() / 100.0)
        })
        .sum()
}

/// Runs the benchmark and prints its figures to `out`.
pub fn bench(args: &BenchArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(path) = &args.gguf {
        return bench_local(args, path, out);
    }
    if let Some(verdicts) = args.report_verdicts {
        return bench_report(verdicts, args.db.as_deref(), out);
    }
    if let Some(kills) = args.kill_test {
        return kill_test(args, kills, out);
    }
    let latency = Duration::from_millis(args.latency_ms);
    // The same fake server speaks every API; a native one is named by its reference prefix.
    let prefix = match args.api.as_str() {
        "openai" => String::new(),
        api @ ("anthropic" | "openai-responses" | "gemini" | "ollama") => format!("{api}:"),
        other => anyhow::bail!(
            "--api {other}: give openai, anthropic, openai-responses, gemini or ollama"
        ),
    };
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The server gets its own thread and single-threaded runtime so its CPU time can be read
    // from that thread alone and subtracted.
    let server = std::thread::spawn(move || -> Result<f64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let start = cpu_seconds("/proc/thread-self/stat")?;
        runtime.block_on(async move {
            let server = FakeServer::start_with(move |_| reply(latency), false).await;
            url_tx.send(server.native_ref(&prefix, "bench-r1")).ok();
            stop_rx.await.ok();
        });
        Ok(cpu_seconds("/proc/thread-self/stat")? - start)
    });
    let model_ref = url_rx.recv().context("the fake server did not start")?;

    let dir = tempfile::tempdir()?;
    let data = dir.path().join("prompts.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&data)?);
    for i in 0..args.samples {
        writeln!(file, "{{\"id\":\"b{i}\",\"prompt\":\"How do I safely clean item number {i} in my kitchen?\"}}")?;
    }
    file.flush()?;
    drop(file);

    // The whole path a user's run takes: resolution, building, the engine, the store.
    let settings = redtrace_suite::Suite::default().with(&redtrace_suite::Overrides {
        models: vec![model_ref],
        benches: vec![format!("file:{}", data.display())],
        judging: redtrace_suite::JudgeOverrides {
            judges: vec![redtrace_suite::FALLBACK_JUDGE.to_owned()],
            ..Default::default()
        },
        concurrency: Some(args.concurrency),
        stream: args.stream,
        retries: Some(0),
        timeout: Some(60.0),
        no_cache: true,
        new_run: true,
        db: Some(
            args.db
                .clone()
                .unwrap_or_else(|| dir.path().join("bench.db")),
        ),
        ..Default::default()
    })?;
    let shared = redtrace_store::postgres_url(&settings.db).is_some();
    anyhow::ensure!(
        shared || args.workers == 1,
        "--workers needs a PostgreSQL --db (a SQLite run is one process's)"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // A shared run is queued first (`run --enqueue-only`, timed apart), with the workers'
    // concurrency together as the run's; then the workers work it, each with its own.
    let mut queued_in = None;
    let mut worker = settings.clone();
    if shared {
        let mut enqueue = settings.clone();
        enqueue.enqueue_only = true;
        for model in &mut enqueue.models {
            model.max_concurrency = args.concurrency * args.workers;
        }
        let started = Instant::now();
        let queued = runtime.block_on(redtrace_suite::run(
            &enqueue,
            Arc::new(NoProgress),
            Shutdown::default(),
        ))?;
        queued_in = Some(started.elapsed().as_secs_f64());
        worker.new_run = false;
        worker.join = Some(queued.run_id);
    }
    let cpu_before = cpu_seconds("/proc/self/stat")?;
    let server_before = postgres_cpu_seconds();
    let started = Instant::now();
    let (answered, failed) = if shared {
        // Each worker on a thread with a runtime of its own, as a process of its own has.
        let threads: Vec<_> = (0..args.workers)
            .map(|_| {
                let worker = worker.clone();
                std::thread::spawn(move || -> Result<redtrace_suite::RunOutcome> {
                    tokio::runtime::Builder::new_multi_thread()
                        .enable_all()
                        .build()?
                        .block_on(redtrace_suite::run(
                            &worker,
                            Arc::new(NoProgress),
                            Shutdown::default(),
                        ))
                })
            })
            .collect();
        let mut totals = (0, 0);
        for thread in threads {
            let outcome = thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            totals.0 += outcome.summary.answered;
            totals.1 += outcome.summary.failed;
        }
        totals
    } else {
        let outcome = runtime.block_on(redtrace_suite::run(
            &settings,
            Arc::new(NoProgress),
            Shutdown::default(),
        ))?;
        (outcome.summary.answered, outcome.summary.failed)
    };
    let wall = started.elapsed().as_secs_f64();
    let cpu_total = cpu_seconds("/proc/self/stat")? - cpu_before;
    let server_spent = postgres_cpu_seconds() - server_before;
    stop_tx.send(()).ok();
    let server_cpu = server
        .join()
        .map_err(|_| anyhow::anyhow!("fake server thread panicked"))??;
    drop(runtime);

    let n = args.samples as f64;
    let ideal = n / (args.concurrency * args.workers) as f64 * latency.as_secs_f64();
    let ours = (cpu_total - server_cpu).max(0.0);
    writeln!(
        out,
        "redtrace bench: {} samples, {}concurrency {}, latency {} ms, {} API, {}",
        args.samples,
        if shared {
            format!(
                "PostgreSQL store ({}), {} worker(s) x ",
                redtrace_store::shown(&settings.db),
                args.workers
            )
        } else {
            String::new()
        },
        args.concurrency,
        args.latency_ms,
        args.api,
        if args.stream {
            "streaming"
        } else {
            "non-streaming"
        }
    )?;
    if let Some(seconds) = queued_in {
        writeln!(
            out,
            "queued in           {seconds:.2} s (run --enqueue-only; not in the figures below)"
        )?;
    }
    writeln!(out, "answered            {answered} (failed {failed})")?;
    writeln!(out, "wall time           {wall:.2} s")?;
    if ideal > 0.0 {
        writeln!(
            out,
            "ideal wall time     {ideal:.2} s (N / concurrency x latency)"
        )?;
        writeln!(out, "wall / ideal        {:.2}x", wall / ideal)?;
    }
    writeln!(out, "throughput          {:.0} samples/s", n / wall)?;
    writeln!(
        out,
        "CPU, ours           {ours:.2} s = {:.3} s per 1,000 samples",
        ours / n * 1000.0
    )?;
    writeln!(out, "CPU, fake server    {server_cpu:.2} s (excluded)")?;
    if shared {
        writeln!(
            out,
            "CPU, PostgreSQL     {server_spent:.2} s = {:.3} ms per sample (its server processes on this machine)",
            server_spent / n * 1000.0
        )?;
    }
    writeln!(
        out,
        "peak RSS            {:.1} MB (whole process, fake server included)",
        peak_rss_mb()?
    )?;
    Ok(())
}

#[cfg(feature = "local")]
fn bench_local(args: &BenchArgs, path: &std::path::Path, out: &mut dyn Write) -> Result<()> {
    use redtrace_core::Message;
    use redtrace_providers::{ChatRequest, ModelConfig, Provider};
    let mut config = ModelConfig::parse_ref(&format!("gguf:{}", path.display()))?;
    config.max_concurrency = args.concurrency;
    config.params.max_tokens = Some(args.max_tokens);
    config.threads = args.threads;
    let load_started = Instant::now();
    let provider = Arc::new(redtrace_local::LocalProvider::load(config, path)?);
    let load = load_started.elapsed().as_secs_f64();
    let runtime = tokio::runtime::Runtime::new()?;
    let started = Instant::now();
    let completions = runtime.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..args.samples {
            let provider = provider.clone();
            let prompt =
                format!("In two sentences, how do I safely clean item number {i} in my kitchen?");
            tasks.push(tokio::spawn(async move {
                provider
                    .complete(&ChatRequest {
                        messages: vec![Message::user(prompt)],
                        seed: None,
                    })
                    .await
            }));
        }
        let mut done = 0usize;
        for task in tasks {
            task.await??;
            done += 1;
        }
        Ok::<usize, anyhow::Error>(done)
    })?;
    let wall = started.elapsed().as_secs_f64();
    let speed = provider.throughput();
    writeln!(
        out,
        "redtrace bench (in-process llama.cpp): {}",
        path.display()
    )?;
    writeln!(
        out,
        "prompts             {completions}, {} sequences decoded together, up to {} tokens each",
        args.concurrency, args.max_tokens
    )?;
    writeln!(out, "model load          {load:.2} s")?;
    writeln!(out, "wall time           {wall:.2} s")?;
    writeln!(
        out,
        "prompt              {} tokens, {:.0} tokens/s",
        speed.prompt_tokens,
        speed.prompt_tokens as f64 / speed.prompt_seconds.max(1e-9)
    )?;
    writeln!(
        out,
        "generation          {} tokens, {:.0} tokens/s",
        speed.generated_tokens,
        speed.generated_tokens as f64 / speed.generation_seconds.max(1e-9)
    )?;
    writeln!(out, "peak RSS            {:.1} MB", peak_rss_mb()?)?;
    Ok(())
}

#[cfg(not(feature = "local"))]
fn bench_local(_args: &BenchArgs, _path: &std::path::Path, _out: &mut dyn Write) -> Result<()> {
    anyhow::bail!("this redtrace was built without the `local` feature")
}

/// Fills a store with `verdicts` verdicts (answer and trace of `verdicts / 2` completions,
/// 20 categories), then times the report and a Parquet export over it.
fn bench_report(verdicts: u64, db: Option<&std::path::Path>, out: &mut dyn Write) -> Result<()> {
    use redtrace_core::{
        Channel, Completion, Label, Reasoning, Sample, StopReason, TraceSource, TraceState, Usage,
        Verdict,
    };
    use redtrace_store::{Store, UnitKey, UnitRecord};
    let dir = tempfile::tempdir()?;
    let path = db
        .map(std::path::Path::to_owned)
        .unwrap_or_else(|| dir.path().join("report-bench.db"));
    let mut store = Store::open(&path)?;
    let run = store.create_run(
        &redtrace_core::RunSpec::default(),
        env!("CARGO_PKG_VERSION"),
    )?;
    let completions = verdicts.div_ceil(2);
    let fill_started = Instant::now();
    let chunk = 10_000u64;
    let mut start = 0u64;
    while start < completions {
        let end = (start + chunk).min(completions);
        let samples: Vec<Sample> = (start..end)
            .map(|i| {
                Sample::user(i.to_string(), i, format!("prompt {i}"))
                    .in_category(&[&format!("category {:02}", i % 20)])
            })
            .collect();
        store.insert_samples(run, "bench", samples.iter())?;
        let records: Vec<UnitRecord> = (start..end)
            .map(|i| {
                let label = |refuse: bool| {
                    if refuse {
                        Label::FullRefusal
                    } else {
                        Label::FullCompliance
                    }
                };
                let verdict = |channel, refuse| Verdict {
                    judge: "refusal-rule".into(),
                    channel,
                    label: label(refuse),
                    score: Some(if refuse { 1.0 } else { 0.0 }),
                    rationale: "no refusal in the opening".into(),
                    categories: Vec::new(),
                    spend: None,
                };
                UnitRecord {
                    key: UnitKey {
                        model: "m".into(),
                        benchmark: "bench".into(),
                        sample_id: i.to_string(),
                        sample_k: 0,
                    },
                    request_hash: format!("{i:016x}"),
                    outcome: Ok(Completion {
                        reasoning: Reasoning {
                            text: "The user asks.".into(),
                            source: Some(TraceSource::ThinkTags),
                            state: TraceState::Complete,
                        },
                        answer: Some("Here is an answer of moderate length.".into()),
                        finish_reason: Some(StopReason::Stop),
                        usage: Usage {
                            prompt_tokens: Some(12),
                            completion_tokens: Some(40),
                            reasoning_tokens: Some(10),
                            cached_prompt_tokens: None,
                        },
                        latency_ms: 20,
                        raw: String::new(),
                    }),
                    attempts: 1,
                    cached: false,
                    verdicts: vec![
                        verdict(Channel::Answer, i % 3 == 0),
                        verdict(Channel::Reasoning, i % 5 == 0),
                    ],
                    helper_spend: None,
                    cost_usd: None,
                }
            })
            .collect();
        store.write_batch(run, &records)?;
        start = end;
    }
    let fill = fill_started.elapsed().as_secs_f64();
    let rss_before = peak_rss_mb()?;
    let info = store.resolve_run(&run.to_string())?;
    let report_started = Instant::now();
    let report = redtrace_report::Report::build(&store, &info)?;
    let report_seconds = report_started.elapsed().as_secs_f64();
    let rss_after_report = peak_rss_mb()?;
    let export_started = Instant::now();
    let exported = redtrace_store::write_parquet(&store, run, std::io::sink())?;
    let export_seconds = export_started.elapsed().as_secs_f64();
    writeln!(
        out,
        "redtrace bench: report over {} verdicts ({completions} completions, {} rows) in {}",
        completions * 2,
        report.groups.len(),
        redtrace_store::shown(&path)
    )?;
    writeln!(out, "store filled in      {fill:.1} s")?;
    writeln!(out, "report built in      {report_seconds:.2} s")?;
    writeln!(
        out,
        "Parquet export of {exported} records in {export_seconds:.2} s"
    )?;
    writeln!(out, "peak RSS             {rss_before:.1} MB after filling, {rss_after_report:.1} MB after the report, {:.1} MB at the end", peak_rss_mb()?)?;
    Ok(())
}

/// `--kill-test N`: kill -9 a run N times at moments spread over its course, then run it to
/// the end; every request past one per sample was sent again because a kill lost its result.
fn kill_test(args: &BenchArgs, kills: u32, out: &mut dyn Write) -> Result<()> {
    let latency = Duration::from_millis(args.latency_ms);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let target = runtime.block_on(FakeServer::start_with(move |_| reply(latency), false));
    let judge = runtime.block_on(FakeServer::start_with(
        move |_| {
            let verdict = Reply::text("The text declines.\nVERDICT: safe");
            if latency.is_zero() {
                verdict
            } else {
                verdict.after(latency)
            }
        },
        false,
    ));
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("prompts.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&data)?);
    for i in 0..args.samples {
        writeln!(file, "{{\"id\":\"k{i}\",\"prompt\":\"How do I safely clean item number {i} in my kitchen?\"}}")?;
    }
    file.flush()?;
    drop(file);
    let db = dir.path().join("kill.db");
    let exe = std::env::current_exe()?;
    let command = || {
        let mut command = std::process::Command::new(&exe);
        command
            .args(["run", "--model"])
            .arg(target.model_ref("bench-r1"))
            .arg("--bench")
            .arg(format!("file:{}", data.display()));
        if args.rule_judge {
            command.args(["--judge", "refusal-rule"]);
        } else {
            command
                .args(["--judge", "harm", "--judge-model"])
                .arg(judge.model_ref("judge"));
        }
        command
            .args(["--concurrency", &args.concurrency.to_string()])
            .args(["--retries", "0", "--quiet", "--db"])
            .arg(&db)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .env_remove("OPENAI_API_KEY");
        command
    };
    // Kill moments spread over the run's expected course, by the requests received.
    let mut in_flight_at_kills = Vec::new();
    let mut killed_at = Vec::new();
    for kill in 0..kills {
        let target_at = args.samples * (kill as usize + 1) / (kills as usize + 2);
        let mut child = command().spawn().context("starting redtrace run")?;
        let started = Instant::now();
        while target.count() < target_at && started.elapsed() < Duration::from_secs(120) {
            if child.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        in_flight_at_kills.push(target.in_flight() + judge.in_flight());
        killed_at.push(target.count());
        child.kill().ok(); // SIGKILL
        child.wait()?;
    }
    let status = command().status()?;
    anyhow::ensure!(status.success(), "the final run failed");
    let store = redtrace_store::Store::open_read_only(&db)?;
    let run = store.resolve_run("last")?;
    let mut stored = 0u64;
    store.for_each_result(run.id, false, |_| {
        stored += 1;
        Ok(())
    })?;
    let sent = target.count() as u64;
    let resent = sent.saturating_sub(args.samples as u64);
    let mean_in_flight =
        in_flight_at_kills.iter().sum::<usize>() as f64 / in_flight_at_kills.len().max(1) as f64;
    writeln!(
        out,
        "redtrace bench --kill-test: {kills} kills (at {killed_at:?} requests), {} samples, concurrency {}, latency {} ms, {}",
        args.samples,
        args.concurrency,
        args.latency_ms,
        if args.rule_judge { "refusal-rule" } else { "LLM judge" }
    )?;
    writeln!(
        out,
        "  stored             {stored} completions for {} samples",
        args.samples
    )?;
    writeln!(out, "  target requests    {sent}")?;
    writeln!(
        out,
        "  re-sent            {resent} ({:.1} per kill)",
        resent as f64 / kills.max(1) as f64
    )?;
    writeln!(
        out,
        "  in flight at kill  {mean_in_flight:.1} on average (target + judge requests seen by the servers), {in_flight_at_kills:?}; the run allows {} target requests in flight",
        args.concurrency
    )?;
    writeln!(
        out,
        "  re-sent per kill   {:.2}x the concurrency",
        resent as f64 / kills.max(1) as f64 / args.concurrency.max(1) as f64
    )?;
    Ok(())
}
