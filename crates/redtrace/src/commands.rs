//! The subcommands: each turns its arguments into calls on the library crates and prints
//! what they return.

use anyhow::{Context, Result};
use redtrace_engine::Shutdown;
use redtrace_providers::ModelRef;
use redtrace_report::Report;
use redtrace_store::{write_csv, write_jsonl, write_parquet, RunId, Store};
use redtrace_suite::{JudgeSetting, Suite};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{
    DataCommand, DbArgs, ExportArgs, ExportFormat, JudgeEvalArgs, ReportArgs, ReportFormat,
    RunArgs, RunsArgs, ViewArgs,
};

/// `redtrace run`: resolves the suite and overrides, runs with a progress bar and Ctrl-C
/// handling, prints the summary and the report; exit code 130 when interrupted.
pub fn run(args: &RunArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let Some(mut settings) = settings_of(args.suite.as_deref(), &args.overrides) else {
        return Ok(ExitCode::from(2));
    };
    if redtrace_store::postgres_url(&settings.db).is_some() {
        settings.recipe = Some(recipe(std::env::args().skip(2)));
    }
    run_with(&settings, args.quiet, args.max_unscored, out)
}

/// The suite file (if any) with the overrides laid over it; `None`, with the error printed,
/// where that fails. Whatever fails before anything is read or sent (a flag, the suite file, a
/// model, judge, attack or benchmark name) is a usage error: exit code 2, as clap's own.
fn settings_of(
    suite: Option<&Path>,
    overrides: &redtrace_suite::Overrides,
) -> Option<redtrace_suite::RunSettings> {
    let resolved = match suite {
        Some(path) => Suite::from_file(path),
        None => Ok(Suite::default()),
    }
    .and_then(|suite| suite.with(overrides));
    resolved.map_err(|error| crate::print_error(&error)).ok()
}

/// How a run was started, as a worker can start it again: the `run` command line without the
/// store (each worker names its own, and a URL may hold a password), `--enqueue-only`,
/// `--new-run` and `--quiet`, and the folder it was started in.
fn recipe(args: impl Iterator<Item = String>) -> String {
    let mut kept = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--db" => {
                args.next();
            }
            "--enqueue-only" | "--new-run" | "--quiet" | "-q" => {}
            _ if arg.starts_with("--db=") => {}
            _ => kept.push(arg),
        }
    }
    serde_json::json!({
        "args": kept,
        "cwd": std::env::current_dir().ok(),
    })
    .to_string()
}

/// `redtrace worker`: works a run of a shared store as it was started, on this machine.
pub fn worker(args: &crate::cli::WorkerArgs, out: &mut dyn Write) -> Result<ExitCode> {
    if redtrace_store::postgres_url(&args.db).is_none() {
        crate::print_error(&anyhow::anyhow!(
            "redtrace worker needs a shared PostgreSQL store (--db postgres://USER@HOST/DB); a SQLite file is one process's (split a run across machines with run --shard)"
        ));
        return Ok(ExitCode::from(2));
    }
    let store = Store::open_read_only(&args.db)?;
    let run = store.resolve_run(&args.run)?;
    let Some(recipe) = store.recipe(run.id)? else {
        anyhow::bail!(
            "run {} in {} was not started by `redtrace run --db postgres://…` (no recipe to work it from)",
            run.id,
            redtrace_store::shown(&args.db)
        );
    };
    drop(store);
    let recipe: serde_json::Value = serde_json::from_str(&recipe)?;
    // Relative paths (the suite file, data files) mean what they meant where the run was
    // started, where that folder exists here too (a shared file system).
    if let Some(cwd) = recipe["cwd"].as_str().map(Path::new).filter(|p| p.is_dir()) {
        std::env::set_current_dir(cwd)?;
    }
    let words: Vec<String> = recipe["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let parsed = <crate::cli::Cli as clap::Parser>::try_parse_from(
        ["redtrace".to_owned(), "run".to_owned()]
            .into_iter()
            .chain(words),
    )
    .map_err(|error| anyhow::anyhow!("the recipe of run {} no longer parses: {error}", run.id))?;
    let crate::cli::Command::Run(mut run_args) = parsed.command else {
        anyhow::bail!("the recipe of run {} is not a run", run.id);
    };
    run_args.overrides.db = Some(args.db.clone());
    run_args.overrides.enqueue_only = false;
    run_args.overrides.new_run = false;
    if args.concurrency.is_some() {
        run_args.overrides.concurrency = args.concurrency;
    }
    if args.lease_secs.is_some() {
        run_args.overrides.lease_secs = args.lease_secs;
    }
    let Some(mut settings) = settings_of(run_args.suite.as_deref(), &run_args.overrides) else {
        return Ok(ExitCode::from(2));
    };
    settings.join = Some(run.id);
    run_with(&settings, args.quiet, run_args.max_unscored, out)
}

/// Runs resolved settings with a progress bar and Ctrl-C handling, then says how it went.
fn run_with(
    settings: &redtrace_suite::RunSettings,
    quiet: bool,
    max_unscored: f64,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    for note in &settings.notes {
        eprintln!("note: {note}");
    }
    let outcome = with_signals(|shutdown| {
        let bar = Arc::new(crate::progress::Bar::new(quiet));
        redtrace_suite::run(settings, bar, shutdown)
    })?;
    let how = if settings.enqueue_only {
        "(queued for workers)"
    } else if settings.join.is_some() {
        "(as a worker)"
    } else if outcome.resumed {
        "(resumed)"
    } else {
        "(new)"
    };
    ended(&settings.db, &outcome, how, quiet, max_unscored, out)
}

/// `redtrace judge`: judges a stored run's completions again into a run of its own, with a
/// progress bar and Ctrl-C handling; prints and exits as `run` does.
pub fn judge(args: &crate::cli::JudgeArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let request = redtrace_suite::Rejudge {
        run: args.run.clone(),
        judging: args.judging.clone(),
        db: args.db.db.clone(),
        data_dir: args
            .data_dir
            .clone()
            .or_else(|| std::env::var_os(redtrace_datasets::DATA_DIR_ENV).map(Into::into))
            .or_else(|| redtrace_datasets::catalog::default_data_dir().filter(|dir| dir.is_dir())),
        limits: redtrace_suite::HelperLimits {
            timeout_secs: args.timeout,
            max_retries: args.retries,
            max_concurrency: args.concurrency,
            requests_per_minute: args.rpm,
        },
        backoff: Default::default(),
    };
    // What fails before anything is written or asked (no such run, a judge that cannot judge
    // a benchmark of it) is a usage error: exit code 2, as `run`'s.
    let prepared = match request.prepare() {
        Ok(prepared) => prepared,
        Err(error) => {
            crate::print_error(&error);
            return Ok(ExitCode::from(2));
        }
    };
    let from = prepared.original();
    let outcome = with_signals(|shutdown| {
        let bar = Arc::new(crate::progress::Bar::new(args.quiet));
        prepared.run(bar, shutdown)
    })?;
    let how = format!(
        "({}re-judging run {from}, nothing sent to the targets)",
        if outcome.resumed { "resumed, " } else { "" }
    );
    ended(
        &request.db,
        &outcome,
        &how,
        args.quiet,
        args.max_unscored,
        out,
    )
}

/// Runs `work` on a runtime with Ctrl-C (and SIGTERM) wired to its shutdown: the first stops
/// the intake, the second abandons requests in flight.
fn with_signals<F, Fut>(work: F) -> Result<redtrace_suite::RunOutcome>
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: std::future::Future<Output = Result<redtrace_suite::RunOutcome>>,
{
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let shutdown = Shutdown::default();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            if interrupted().await {
                eprintln!("\ninterrupted: finishing requests in flight; press Ctrl-C again to abandon them");
                signals.stop.cancel();
                if interrupted().await {
                    eprintln!("abandoning requests in flight");
                    signals.abandon.cancel();
                }
            }
        });
        work(shutdown).await
    })
}

/// What a run or a re-judging did, said on stderr, its report printed (unless quiet) and
/// every judge that left texts unscored named; the exit code: 3 stopped at the budget, 130
/// interrupted, 1 when units failed or a judge left more than `max_unscored` unscored.
fn ended(
    db: &Path,
    outcome: &redtrace_suite::RunOutcome,
    how: &str,
    quiet: bool,
    max_unscored: f64,
    out: &mut dyn Write,
) -> Result<ExitCode> {
    let summary = outcome.summary;
    eprintln!(
        "run {} {how} in {}: {} answered, {} from cache, {} already done, {} judged again, {} failed, {} requests{}",
        outcome.run_id,
        redtrace_store::shown(db),
        summary.answered,
        summary.cached,
        summary.skipped,
        summary.rejudged,
        summary.failed,
        summary.requests,
        if summary.budget_reached {
            " - stopped at its budget (--max-cost); run again with a higher --max-cost to go on"
        } else if summary.interrupted {
            " - interrupted; run the same command again to resume"
        } else {
            ""
        }
    );
    // What the run has spent so far (earlier sessions of a resumed run included).
    let spent = Store::open_read_only(db)?.spent(outcome.run_id)?;
    eprintln!("spent so far: ${spent:.4} (models without a price count nothing; `redtrace report` itemises)");
    if summary.failed > 0 {
        eprintln!(
            "{} units failed; run the same command again to retry them",
            summary.failed
        );
    }
    if !quiet {
        print_report(db, outcome.run_id, out)?;
    }
    // A judge that could not judge is said, per judge, with why; past the threshold the run
    // is not a success.
    let mut judges_failed = false;
    let health = Store::open_read_only(db)?.judge_health(outcome.run_id)?;
    for judge in health.iter().filter(|j| j.unscored > 0) {
        let share = judge.unscored as f64 / judge.verdicts as f64;
        let reasons: Vec<String> = judge
            .reasons
            .iter()
            .take(3)
            .map(|(reason, n)| format!("{n}× {reason}"))
            .collect();
        let over = share > max_unscored;
        judges_failed |= over;
        eprintln!(
            "{}: judge {} left {} of {} texts unscored ({:.1}%): {}{}",
            if over { "error" } else { "warning" },
            redtrace_core::printable(&judge.judge),
            judge.unscored,
            judge.verdicts,
            share * 100.0,
            redtrace_core::printable(&reasons.join("; ")),
            if over {
                format!(
                    " - over --max-unscored {max_unscored}; fix the judge and run again (only its verdicts are redone)"
                )
            } else {
                String::new()
            }
        );
    }
    // Units that failed are stored and a rerun retries them, but the run did not do all it
    // was asked: a script or CI job must not take it for a success.
    Ok(if summary.budget_reached {
        ExitCode::from(3)
    } else if summary.interrupted {
        ExitCode::from(130)
    } else if summary.failed > 0 || judges_failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `redtrace import`: generations made elsewhere into the store, as a run to judge.
pub fn import(args: &crate::cli::ImportArgs, out: &mut dyn Write) -> Result<()> {
    let mut store = Store::open(&args.db.db)?;
    let imported = redtrace_store::import(
        &mut store,
        &args.file,
        &redtrace_store::ImportOptions {
            model: args.model.clone(),
            benchmark: args.bench.clone(),
        },
        env!("CARGO_PKG_VERSION"),
    )?;
    if imported.existing {
        writeln!(
            out,
            "{} was imported before, as run {} in {} ({} generations); nothing changed",
            args.file.display(),
            imported.run,
            redtrace_store::shown(&args.db.db),
            imported.records
        )?;
    } else {
        writeln!(
            out,
            "imported {} generations ({} failed) from {} as run {} in {}",
            imported.records,
            imported.errors,
            args.file.display(),
            imported.run,
            redtrace_store::shown(&args.db.db)
        )?;
    }
    writeln!(
        out,
        "judge them: redtrace judge --run {} --judge NAME [--judge-model REF] --db {}",
        imported.run,
        redtrace_store::shown(&args.db.db)
    )?;
    Ok(())
}

/// Waits for Ctrl-C, or for SIGTERM (what `kill`, a scheduler or `docker stop` sends), which
/// is handled the same way; `false` when no signal can be listened for.
async fn interrupted() -> bool {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                result = tokio::signal::ctrl_c() => result.is_ok(),
                _ = terminate.recv() => true,
            },
            Err(_) => tokio::signal::ctrl_c().await.is_ok(),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.is_ok()
    }
}

/// Prints a run's report for the terminal.
fn print_report(db: &Path, run: RunId, out: &mut dyn Write) -> Result<()> {
    let report = redtrace_suite::report(db, run)?;
    out.write_all(
        report
            .to_terminal_width(redtrace_report::terminal_width())
            .as_bytes(),
    )?;
    Ok(())
}

/// `redtrace attacks`: every attack of the registry, by family.
pub fn attacks(out: &mut dyn Write) -> Result<()> {
    for entry in redtrace_attacks::registry::attacks() {
        let needs = match (entry.needs_attacker, entry.needs_judge) {
            (true, true) => "A+J",
            (true, false) => "A",
            _ => "",
        };
        writeln!(
            out,
            "{:<33} {:<9} {:<3} {}  [{}]",
            entry.usage,
            format!("{:?}", entry.info.family).to_lowercase(),
            needs,
            entry.info.about,
            entry.info.reference
        )?;
    }
    writeln!(
        out,
        "\nA: needs --attacker-model; J: also --judge-model to rate replies. Model-driven attacks \
         send at most --attack-budget N target queries per sample (default {}).",
        redtrace_attacks::driven::DEFAULT_BUDGET
    )?;
    Ok(())
}

/// Prints a run's report, and its comparison with another run when asked.
pub fn report(args: &ReportArgs, out: &mut dyn Write) -> Result<()> {
    let store = open_existing(&args.db.db)?;
    let run = store.resolve_run(&args.run)?;
    let mut report = Report::build(&store, &run)?;
    report
        .keep(&args.model, &args.bench, &args.category, &args.judge)
        .map_err(anyhow::Error::msg)?;
    if args.paper || args.findings {
        let document = if args.paper {
            report.paper(&store)?
        } else {
            report.findings(&store)?
        };
        let text = match args.format.unwrap_or(ReportFormat::Md) {
            ReportFormat::Md => document.to_markdown(),
            ReportFormat::Json => document.to_json(),
            other => anyhow::bail!(
                "--{} is written as md or json, not {}; the HTML report (`report --format html`) holds the findings and the paper's tables with its plots",
                if args.paper { "paper" } else { "findings" },
                format!("{other:?}").to_lowercase()
            ),
        };
        out.write_all(text.as_bytes())?;
        return Ok(());
    }
    let comparison = match &args.compare {
        Some(other) => {
            let other = store.resolve_run(other)?;
            Some(redtrace_report::Comparison::build(&store, &run, &other)?)
        }
        None => None,
    };
    let text = match args.format.unwrap_or(ReportFormat::Table) {
        ReportFormat::Table => {
            report.to_terminal_width(redtrace_report::terminal_width())
                + &comparison
                    .as_ref()
                    .map(|c| c.to_terminal())
                    .unwrap_or_default()
        }
        ReportFormat::Md => {
            report.to_markdown()
                + &comparison
                    .as_ref()
                    .map(|c| c.to_markdown())
                    .unwrap_or_default()
        }
        ReportFormat::Html => report.to_html(&store, comparison.as_ref())?,
        ReportFormat::Json => match &comparison {
            None => report.to_json() + "\n",
            Some(comparison) => {
                serde_json::to_string_pretty(
                    &serde_json::json!({ "report": report, "comparison": comparison }),
                )? + "\n"
            }
        },
    };
    out.write_all(text.as_bytes())?;
    Ok(())
}

/// Prints the sample size a wanted interval width needs.
pub fn plan(args: &crate::cli::PlanArgs, out: &mut dyn Write) -> Result<()> {
    if args.cost {
        return plan_cost(args, out);
    }
    let (Some(rate), Some(width)) = (args.rate, args.width) else {
        anyhow::bail!("give --rate and --width (or --cost)");
    };
    let args = SampleSize { rate, width };
    if !(0.0..=1.0).contains(&args.rate) {
        anyhow::bail!(
            "--rate must be between 0 and 1 (a share, e.g. 0.12), got {}",
            args.rate
        );
    }
    if !(args.width > 0.0 && args.width < 1.0) {
        anyhow::bail!(
            "--width must be between 0 and 1 (e.g. 0.10 for ±5 points), got {}",
            args.width
        );
    }
    let n = redtrace_report::stats::samples_for_width(args.rate, args.width);
    writeln!(
        out,
        "{n} samples per group give a 95% interval about {:.1} points wide around {:.1}% (Wilson; more near 50%)",
        args.width * 100.0,
        args.rate * 100.0
    )?;
    Ok(())
}

struct SampleSize {
    rate: f64,
    width: f64,
}

/// `redtrace plan --cost`: the estimate of a run's tokens and dollars, with where each figure
/// comes from.
fn plan_cost(args: &crate::cli::PlanArgs, out: &mut dyn Write) -> Result<()> {
    let suite = match &args.suite {
        Some(path) => redtrace_suite::Suite::from_file(path)?,
        None => redtrace_suite::Suite::default(),
    };
    let settings = suite.with(&args.overrides)?;
    // Earlier runs in the store, where there is one, calibrate the estimate.
    let store = redtrace_store::exists(&settings.db)
        .then(|| Store::open_read_only(&settings.db))
        .transpose()?;
    let rows = redtrace_suite::estimate(&settings, store.as_ref())?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    let tokens = |r: redtrace_suite::Range| {
        if r.high.is_finite() {
            format!("{:.0} ({:.0}–{:.0})", r.point, r.low, r.high)
        } else {
            format!("≥ {:.0} (no upper bound)", r.low)
        }
    };
    let usd = |r: Option<redtrace_suite::Range>| match r {
        None => "no price".to_owned(),
        Some(r) if !r.high.is_finite() => format!("≥ ${:.4} (no upper bound)", r.low),
        Some(r) => format!("${:.4} (${:.4}–${:.4})", r.point, r.low, r.high),
    };
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header([
        "model",
        "benchmark",
        "requests",
        "prompt tokens",
        "output tokens",
        "target $",
        "judges $",
        "total $",
    ]);
    let mut total = Some(redtrace_suite::Range::default());
    for row in &rows {
        table.add_row([
            row.model.clone(),
            row.benchmark.clone(),
            tokens(row.requests),
            tokens(row.prompt_tokens),
            tokens(row.output_tokens),
            usd(row.target_usd),
            usd(row.judge_usd),
            usd(row.total_usd()),
        ]);
        total = total
            .zip(row.total_usd())
            .map(|(a, b)| redtrace_suite::Range {
                low: a.low + b.low,
                point: a.point + b.point,
                high: a.high + b.high,
            });
    }
    writeln!(out, "{table}")?;
    writeln!(out, "total: {}", usd(total))?;
    let mut basis: Vec<&String> = rows.iter().flat_map(|r| r.basis.iter()).collect();
    basis.sort();
    basis.dedup();
    for line in basis {
        writeln!(out, "- {line}")?;
    }
    Ok(())
}

/// `redtrace merge`: the shards' runs into one store, after checking they are one run.
pub fn merge(args: &crate::cli::MergeArgs, out: &mut dyn Write) -> Result<()> {
    // Every source first: they must hold one run, and nothing is written before that is known.
    let mut first: Option<(&std::path::Path, redtrace_core::RunSpec)> = None;
    for source in &args.sources {
        if source == &args.into {
            anyhow::bail!("{} is both a source and --into", source.display());
        }
        let (spec, _) = Store::latest_run_of(source)?;
        match &first {
            None => first = Some((source, spec)),
            Some((path, reference)) => {
                let differences = reference.differences(&spec);
                if !differences.is_empty() {
                    anyhow::bail!(
                        "{} and {} hold different runs, not shards of one run; they differ in:\n  {}",
                        path.display(),
                        source.display(),
                        differences.join("\n  ")
                    );
                }
            }
        }
    }
    let mut store = Store::open(&args.into)?;
    for source in &args.sources {
        let merged = store.merge_from(source)?;
        writeln!(
            out,
            "{}: {} completions merged, {} already in {} (run {}{}), {} verdicts",
            source.display(),
            merged.completions,
            merged.already,
            redtrace_store::shown(&args.into),
            merged.run,
            if merged.created { ", new" } else { "" },
            merged.verdicts
        )?;
    }
    Ok(())
}

/// Exports a run, streaming.
pub fn export(args: &ExportArgs, stdout: &mut dyn Write) -> Result<u64> {
    let store = open_existing(&args.db.db)?;
    let run = store.resolve_run(&args.run)?;
    let create = |path: &std::path::Path| {
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
    };
    let written = match (args.format, &args.output) {
        (ExportFormat::Inspect, None) => anyhow::bail!(
            "inspect_ai logs are one file per model and benchmark: give --output DIR (e.g. --output logs/, then `inspect view --log-dir logs`)"
        ),
        (ExportFormat::Inspect, Some(dir)) => {
            let paths = redtrace_store::write_inspect(&store, &run, dir)?;
            for path in &paths {
                eprintln!("wrote {}", path.display());
            }
            paths.len() as u64
        }
        (ExportFormat::Parquet, None) => {
            anyhow::bail!("Parquet is binary: give --output FILE (e.g. --output results.parquet)")
        }
        (ExportFormat::Parquet, Some(path)) => {
            write_parquet(&store, run.id, std::io::BufWriter::new(create(path)?))?
        }
        (format, Some(path)) => {
            let mut writer = std::io::BufWriter::new(create(path)?);
            let written = text_export(&store, run.id, format, &mut writer)?;
            writer.flush()?;
            written
        }
        (format, None) => {
            let mut writer = std::io::BufWriter::new(stdout);
            let written = text_export(&store, run.id, format, &mut writer)?;
            writer.flush()?;
            written
        }
    };
    Ok(written)
}

fn text_export(
    store: &Store,
    run: RunId,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<u64> {
    Ok(match format {
        ExportFormat::Jsonl => write_jsonl(store, run, out)?,
        ExportFormat::Csv => write_csv(store, run, out)?,
        ExportFormat::Parquet | ExportFormat::Inspect => {
            unreachable!("Parquet and inspect logs are written to files")
        }
    })
}

/// Holds a run to thresholds: exit code 1 when any fails, 2 when a threshold cannot be read.
pub fn check(args: &crate::cli::CheckArgs, out: &mut dyn Write) -> Result<ExitCode> {
    use redtrace_report::check::{self, Bound, Threshold};
    // A suite's `[thresholds]` and its store (relative to the suite file).
    let (from_suite, suite_db) = match &args.suite {
        Some(path) => {
            let file = redtrace_suite::read_suite(path)?;
            let db = file
                .db
                .as_ref()
                .map(|db| path.parent().unwrap_or(std::path::Path::new(".")).join(db));
            (file.thresholds.unwrap_or_default(), db)
        }
        None => (redtrace_suite::ThresholdsTable::default(), None),
    };
    let db = suite_db.unwrap_or_else(|| args.db.db.clone());
    let mut thresholds = Vec::new();
    for (bound, texts) in [
        (Bound::MaxUnsafe, [&args.max_unsafe, &from_suite.max_unsafe]),
        (
            Bound::MinRefusal,
            [&args.min_refusal, &from_suite.min_refusal],
        ),
        (
            Bound::MaxRefusal,
            [&args.max_refusal, &from_suite.max_refusal],
        ),
    ] {
        let texts = texts.into_iter().flatten();
        for text in texts {
            match Threshold::parse(bound, text) {
                Ok(threshold) => thresholds.push(threshold),
                Err(error) => {
                    crate::print_error(&anyhow::anyhow!(error));
                    return Ok(ExitCode::from(2));
                }
            }
        }
    }
    if thresholds.is_empty() {
        crate::print_error(&anyhow::anyhow!(
            "name at least one threshold: --max-unsafe, --min-refusal or --max-refusal (or a suite's [thresholds])"
        ));
        return Ok(ExitCode::from(2));
    }
    let store = open_existing(&db)?;
    let run = store.resolve_run(&args.run)?;
    let report = Report::build(&store, &run)?;
    let rows = check::check(&report, &thresholds);
    let passed = rows.iter().all(|r| r.pass);
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"run": run.id.to_string(), "pass": passed, "checks": rows})
            )?
        )?;
        return Ok(exit(passed));
    }
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_header(["threshold", "model", "judge", "value", "n", "result"]);
    for row in &rows {
        table.add_row([
            row.threshold.clone(),
            row.model.clone(),
            row.judge.clone(),
            row.value
                .map_or("–".into(), |v| format!("{:.1}%", v * 100.0)),
            row.n.to_string(),
            if row.pass {
                "pass".to_owned()
            } else if row.note.is_empty() {
                "FAIL".to_owned()
            } else {
                format!("FAIL: {}", row.note)
            },
        ]);
    }
    let failed = rows.iter().filter(|r| !r.pass).count();
    writeln!(
        out,
        "{}",
        redtrace_core::printable(&format!(
            "run {}: {}\n{table}",
            run.id,
            if passed {
                format!("all {} checks pass", rows.len())
            } else {
                format!("{failed} of {} checks FAIL", rows.len())
            }
        ))
    )?;
    Ok(exit(passed))
}

fn exit(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Upgrades a store to this build's schema (reading commands never do it themselves).
pub fn migrate(args: &DbArgs, out: &mut dyn Write) -> Result<()> {
    if !redtrace_store::exists(&args.db) {
        anyhow::bail!("no store at {}", redtrace_store::shown(&args.db));
    }
    let before = {
        let store = Store::open_read_only(&args.db);
        match store {
            Ok(_) => None,
            Err(redtrace_store::StoreError::NeedsMigration { found, .. }) => Some(found),
            Err(other) => return Err(other.into()),
        }
    };
    let store = Store::open(&args.db)?;
    let now = store.schema_version()?;
    match before {
        Some(found) => writeln!(
            out,
            "{}: upgraded from schema version {found} to {now}",
            redtrace_store::shown(&args.db)
        )?,
        None => writeln!(
            out,
            "{}: already at schema version {now}",
            redtrace_store::shown(&args.db)
        )?,
    }
    Ok(())
}

/// Lists runs.
pub fn runs(args: &RunsArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(run) = &args.delete {
        // Deleting writes: the store is opened for writing, this once.
        if !redtrace_store::exists(&args.db.db) {
            anyhow::bail!("no store at {}", redtrace_store::shown(&args.db.db));
        }
        let store = Store::open(&args.db.db)?;
        let id = store.resolve_run(run)?.id;
        let completions = store.delete_run(id)?;
        writeln!(
            out,
            "deleted run {id} ({completions} completions) from {}",
            redtrace_store::shown(&args.db.db)
        )?;
        return Ok(());
    }
    let store = open_existing(&args.db.db)?;
    let runs = store.runs()?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
        return Ok(());
    }
    if runs.is_empty() {
        writeln!(out, "no runs in {}", redtrace_store::shown(&args.db.db))?;
        return Ok(());
    }
    let header = [
        "id",
        "status",
        "created",
        "completions",
        "errors",
        "models",
        "benchmarks",
    ];
    let mut table = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    let ids: Vec<redtrace_store::RunId> = runs.iter().map(|run| run.id).collect();
    for run in runs {
        table.push(vec![
            run.id.to_string(),
            run.status.to_string(),
            run.created_at,
            run.completions.to_string(),
            run.errors.to_string(),
            run.spec.model_names().collect::<Vec<_>>().join(","),
            run.spec
                .benchmarks
                .iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    writeln!(out, "store: {}", redtrace_store::shown(&args.db.db))?;
    write_columns(out, &table)?;
    if store.shared() {
        // A shared store's runs are worked through a queue: how it stands, and who did what.
        for run in &ids {
            let queue = store.queue_state(*run)?;
            if queue == redtrace_store::QueueState::default() {
                continue;
            }
            let workers: Vec<String> = store
                .worker_counts(*run)?
                .iter()
                .map(|w| format!("{} {} answered, {} failed", w.worker, w.answered, w.failed))
                .collect();
            writeln!(
                out,
                "run {run}: {} units queued, {} taken by a worker, {} whose worker's lease ran out, {} done{}",
                queue.waiting,
                queue.leased,
                queue.expired,
                queue.done,
                if workers.is_empty() {
                    String::new()
                } else {
                    format!("; workers: {}", workers.join("; "))
                }
            )?;
        }
    }
    Ok(())
}

/// Writes rows as left-aligned columns.
fn write_columns(out: &mut dyn Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |cell| cell.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
            .collect();
        writeln!(
            out,
            "{}",
            redtrace_core::printable(line.join("  ").trim_end())
        )?;
    }
    Ok(())
}

/// Opens a store that must already exist (reading commands never create one).
/// `redtrace data list | pull | info`.
pub fn data(command: &DataCommand, out: &mut dyn Write) -> Result<()> {
    use redtrace_datasets::catalog::{self, FileState};
    let dir_of = |given: &Option<std::path::PathBuf>| {
        given
            .clone()
            .or_else(catalog::default_data_dir)
            .context("no data directory: pass --data-dir DIR")
    };
    let megabytes = |bytes: u64| format!("{:.1} MB", bytes as f64 / 1e6);
    match command {
        DataCommand::List => {
            for set in catalog::catalog() {
                let bytes: u64 = set.files.iter().map(|f| f.bytes).sum();
                let downloadable = set.files.iter().filter(|f| f.url.is_some()).count();
                // A file pinned by its git blob id only has no size on record.
                let unknown = set
                    .files
                    .iter()
                    .any(|f| f.bytes == 0 && f.sha256.is_empty());
                writeln!(
                    out,
                    "{:<18} {:>9}  {:>2}/{:<2} files downloadable  {}  [{}]",
                    set.name,
                    format!("{}{}", megabytes(bytes), if unknown { "+" } else { "" }),
                    downloadable,
                    set.files.len(),
                    set.description,
                    set.license
                )?;
            }
        }
        DataCommand::Info { name, data_dir } => {
            let set = catalog::find_set(name).map_err(anyhow::Error::msg)?;
            let dir = dir_of(data_dir)?;
            writeln!(
                out,
                "{}: {} [{}]
data directory: {}",
                set.name,
                set.description,
                set.license,
                dir.display()
            )?;
            // Where the authors published each benchmark of the set, beside where the pull
            // fetches its pinned copy (a mirror where the authors' repository does not hold it).
            for spec in redtrace_datasets::registry() {
                if set.files.iter().any(|f| f.path == spec.file) {
                    writeln!(
                        out,
                        "  benchmark {}: published at {}",
                        spec.name, spec.origin
                    )?;
                }
            }
            for (file, state) in catalog::status(&set, &dir) {
                let state = match state {
                    FileState::Present => "present",
                    FileState::Missing => "missing",
                    FileState::Different => "DIFFERENT (hash does not match)",
                };
                writeln!(
                    out,
                    "  {:<70} {:>9}  {state}
      pulled from {}{}",
                    file.path,
                    if file.bytes == 0 && file.sha256.is_empty() {
                        "size ?".to_owned()
                    } else {
                        megabytes(file.bytes)
                    },
                    file.origin,
                    if file.url.is_none() {
                        " (not downloadable by redtrace)"
                    } else {
                        ""
                    }
                )?;
            }
        }
        DataCommand::Pull {
            names,
            all,
            data_dir,
            mirror,
        } => {
            let sets = if *all {
                catalog::catalog()
            } else if names.is_empty() {
                anyhow::bail!("name data sets to pull (see `redtrace data list`), or --all");
            } else {
                names
                    .iter()
                    .map(|name| catalog::find_set(name).map_err(anyhow::Error::msg))
                    .collect::<Result<Vec<_>>>()?
            };
            let dir = dir_of(data_dir)?;
            let runtime = tokio::runtime::Runtime::new()?;
            for set in sets {
                let bar = indicatif::ProgressBar::hidden();
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
                bar.set_length(set.files.iter().map(|f| f.bytes).sum());
                bar.set_message(set.name.clone());
                let tick = |bytes: u64| bar.inc(bytes);
                let summary = runtime
                    .block_on(catalog::pull(&set, &dir, mirror.as_deref(), &tick))
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("pulling {}", set.name))?;
                bar.finish_and_clear();
                writeln!(
                    out,
                    "{}: {} files downloaded ({}), {} already present, into {}",
                    set.name,
                    summary.downloaded.len(),
                    megabytes(summary.bytes),
                    summary.present.len(),
                    dir.display()
                )?;
                for (path, origin) in &summary.unavailable {
                    writeln!(out, "  not downloadable: {path} (from {origin})")?;
                }
            }
        }
    }
    Ok(())
}

/// Measures judges against a human-labelled set.
pub fn judge_eval(args: &JudgeEvalArgs, out: &mut dyn Write) -> Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .or_else(redtrace_datasets::catalog::default_data_dir)
        .filter(|dir| args.data_dir.is_some() || dir.is_dir());
    let mut set = redtrace_datasets::labels::load(&args.labels, data_dir.as_deref())?;
    if let Some(limit) = args.limit {
        if let Some(seed) = args.sample_seed {
            use rand::seq::SliceRandom;
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            set.items.shuffle(&mut rng);
        }
        set.items.truncate(limit);
    }
    let judge_model = args
        .judge_model
        .as_deref()
        .map(ModelRef::parse)
        .transpose()
        .context("--judge-model")?;
    let templates = redtrace_suite::parse_templates(&args.judge_templates)?;
    let mut settings = Vec::new();
    for text in &args.judges {
        let mut setting = JudgeSetting::parse(text)?;
        setting.complete(judge_model.as_ref(), &templates)?;
        if setting.name == "shieldgemma" {
            setting.threshold = args.guard_threshold;
        }
        settings.push(setting);
    }
    let combine = args.ensemble;
    if combine.is_some() && settings.len() < 2 {
        anyhow::bail!("--ensemble needs two judges or more (--judge a,b)");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let mut builder = redtrace_suite::Builder::new(
            &args.db.db,
            data_dir.clone(),
            Arc::new(crate::progress::Bar::new(true)),
        )?
        .with_key_env(args.judge_api_key_env.clone());
        let mut judges = Vec::new();
        for setting in &settings {
            judges.push(builder.judge(setting).await?);
        }
        if let Some(rule) = combine {
            judges.push(
                Arc::new(redtrace_judges::EnsembleJudge::new(judges.clone(), rule))
                    as Arc<dyn redtrace_judges::Judge>,
            );
        }
        let bar = indicatif::ProgressBar::hidden();
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        bar.set_length(set.items.len() as u64);
        let tick = || bar.inc(1);
        let report = redtrace_judges::eval::evaluate(&set, &judges, args.concurrency, &tick).await;
        bar.finish_and_clear();
        report.map_err(anyhow::Error::msg)
    })?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report.to_text())?;
    }
    Ok(())
}

/// Serves the web viewer until interrupted.
pub fn view(args: &ViewArgs) -> Result<()> {
    let db = &args.db.db;
    if !redtrace_store::exists(db) {
        anyhow::bail!(
            "no store at {} (run `redtrace run` first, or pass --db PATH)",
            redtrace_store::shown(db)
        );
    }
    if !args.host.is_loopback() {
        if !args.allow_remote {
            anyhow::bail!(
                "--host {} is reachable from other machines and the viewer shows every prompt and \
                 model output in the store, without authentication; add --allow-remote if that is meant",
                args.host
            );
        }
        eprintln!(
            "warning: serving {} on {} without authentication: anyone who can reach this address can read every stored prompt and response",
            redtrace_store::shown(db),
            args.host
        );
    }
    // Without --allow-remote the viewer answers only to loopback names, even on a loopback
    // address: a page elsewhere that rebinds its domain to 127.0.0.1 is refused.
    let hosts = if args.allow_remote {
        redtrace_view::Hosts::Any
    } else {
        redtrace_view::Hosts::Loopback
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let address = std::net::SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr()?;
        // The URL goes to stdout (one line, so scripts and tests can read it), the rest to stderr.
        println!("http://{bound}/");
        eprintln!(
            "redtrace view: serving {} (Ctrl-C to stop)",
            redtrace_store::shown(db)
        );
        tokio::select! {
            served = redtrace_view::serve(listener, db.clone(), hosts) => served?,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

/// Opens an existing store for reading (reading commands never create, migrate or write one).
fn open_existing(path: &std::path::Path) -> Result<Store> {
    Ok(Store::open_read_only(path)?)
}
