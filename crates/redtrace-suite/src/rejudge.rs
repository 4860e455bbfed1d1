//! Re-judging a stored run (`redtrace judge`): its completions, copied as they are and never
//! asked for again, judged by other judges into a run of its own that names the original
//! (`rejudged_from`), so that its report, findings, checks and comparisons read as any run's.
//! Running the same re-judging again resumes it.

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use redtrace_attacks::solver::StoredSolver;
use redtrace_core::{Channel, Completion};
use redtrace_engine::{
    BenchmarkInput, BenchmarkRecord, EngineOptions, Plan, Progress, RunSpec, Shutdown, Target,
};
use redtrace_providers::{Backoff, ChatRequest, Provider, ProviderError};
use redtrace_store::Store;
use std::path::PathBuf;
use std::sync::Arc;

use crate::build::Builder;
use crate::resolve::{JudgeChoice, JudgeOverrides};
use crate::run::RunOutcome;
use crate::settings::{HelperLimits, JudgeSetting};

/// What to judge again, and with what.
#[derive(Debug, Clone)]
pub struct Rejudge {
    /// The stored run: `last` or a run id.
    pub run: String,
    /// The judges (`--judge` is required), their model, templates and channels.
    pub judging: JudgeOverrides,
    /// The store holding the run; the re-judged run is written there too.
    pub db: PathBuf,
    /// Where data sets live (official judge methods read their files from there).
    pub data_dir: Option<PathBuf>,
    /// Limits for the judge models.
    pub limits: HelperLimits,
    /// How long to wait between attempts of a judge call.
    pub backoff: Backoff,
}

/// A target that is never asked: re-judging reads stored completions only.
struct NeverSent;

#[async_trait]
impl Provider for NeverSent {
    async fn complete(&self, _request: &ChatRequest) -> Result<Completion, ProviderError> {
        Err(ProviderError::Connection {
            endpoint: "(stored run)".into(),
            detail: "re-judging sends nothing to a target".into(),
        })
    }

    fn fingerprint(&self, _request: &ChatRequest) -> String {
        String::new()
    }
}

/// Judges run `request.run`'s completions again with `request.judging`'s judges, into a new
/// run (or the one an earlier identical re-judging left, resumed). Benchmarks no judge is
/// named for are left out, with a note. Nothing is sent to a target.
pub async fn rejudge(
    request: &Rejudge,
    progress: Arc<dyn Progress>,
    shutdown: Shutdown,
) -> Result<RunOutcome> {
    request.prepare()?.run(progress, shutdown).await
}

/// A re-judging checked and resolved, before anything is written or asked.
pub struct PreparedRejudge<'a> {
    request: &'a Rejudge,
    original: redtrace_store::RunInfo,
    spec: RunSpec,
    settings: Vec<Vec<JudgeSetting>>,
    notes: Vec<String>,
}

impl Rejudge {
    /// Checks the request against the store and resolves the judges of every benchmark, writing
    /// nothing: what fails here is a usage error (no such run, a judge that cannot judge a
    /// benchmark of it, no judge named).
    pub fn prepare(&self) -> Result<PreparedRejudge<'_>> {
        prepare(self)
    }
}

fn prepare(request: &Rejudge) -> Result<PreparedRejudge<'_>> {
    if request.judging.judges.is_empty() {
        bail!("name the judges to judge with: --judge NAME (every benchmark) or --judge BENCH=NAME (one)");
    }
    if !redtrace_store::exists(&request.db) {
        bail!("no store at {}", redtrace_store::shown(&request.db));
    }
    let store = Store::open_read_only(&request.db)?;
    let original = store.resolve_run(&request.run)?;
    let choice = JudgeChoice::parse(&request.judging, None)?;
    let mut bases: Vec<String> = Vec::new();
    for record in &original.spec.benchmarks {
        let base = redtrace_attacks::split_attacked(&record.name).0.to_owned();
        if !bases.contains(&base) {
            bases.push(base);
        }
    }
    choice.check_benchmarks(&bases)?;

    // Each benchmark's new judges, checked as a run checks them.
    let mut notes = Vec::new();
    let mut records = Vec::new();
    let mut settings: Vec<Vec<JudgeSetting>> = Vec::new();
    for record in &original.spec.benchmarks {
        let (base, attack) = redtrace_attacks::split_attacked(&record.name);
        let own = choice.for_benchmark(base);
        let judges = if own.is_empty() {
            choice.everywhere.clone()
        } else {
            own
        };
        if judges.is_empty() {
            notes.push(format!(
                "{}: no judge named for it (--judge {base}=NAME); left out",
                record.name
            ));
            continue;
        }
        let defaults = redtrace_datasets::find(base)
            .map_or(&["refusal-rule", "refusal-llm"][..], |spec| {
                spec.default_judges
            });
        let mut judges = choice.finish(base, defaults, judges, true, &mut notes)?;
        // An attack's own judge (the injection attacks' canary) comes with it, as in a run.
        if let Some(own) = attack.and_then(redtrace_attacks::own_judge) {
            if !judges.iter().any(|j| j.name == own) {
                judges.push(JudgeSetting::parse(own)?);
            }
        }
        records.push(BenchmarkRecord {
            judges: judges
                .iter()
                .map(JudgeSetting::identity)
                .collect::<Result<_>>()?,
            ..record.clone()
        });
        settings.push(judges);
    }
    if records.is_empty() {
        bail!(
            "no benchmark of run {} has a judge named: it has {}",
            original.id,
            bases.join(", ")
        );
    }
    let mut all_judges: Vec<String> = Vec::new();
    for judge in records.iter().flat_map(|r| r.judges.iter()) {
        if !all_judges.contains(judge) {
            all_judges.push(judge.clone());
        }
    }
    let spec = RunSpec {
        benchmarks: records,
        judges: all_judges,
        rejudged_from: Some(original.id.0),
        ..original.spec.clone()
    };
    Ok(PreparedRejudge {
        request,
        original,
        spec,
        settings,
        notes,
    })
}

impl PreparedRejudge<'_> {
    /// The stored run being judged again.
    pub fn original(&self) -> redtrace_store::RunId {
        self.original.id
    }

    /// Runs the re-judging: the run found (resumed) or created, the completions copied, the
    /// judges asked.
    pub async fn run(self, progress: Arc<dyn Progress>, shutdown: Shutdown) -> Result<RunOutcome> {
        let PreparedRejudge {
            request,
            original,
            spec,
            settings,
            notes,
        } = self;
        for note in &notes {
            progress.note(&format!("note: {note}"));
        }
        let records = &spec.benchmarks;
        let mut store = Store::open(&request.db)?;
        store.check_integrity()?;
        let (run_id, _claim, resumed) = crate::run::started(&store, &spec, false)?;
        let kept: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
        store
            .copy_answers(original.id, run_id, &kept)
            .with_context(|| format!("copying run {}'s completions", original.id))?;

        let mut builder = Builder::new(&request.db, request.data_dir.clone(), progress.clone())?
            .with_shutdown(&shutdown)
            .with_backoff(request.backoff)
            .with_key_env(request.judging.judge_api_key_env.clone())
            .with_limits(request.limits);
        let mut benchmarks = Vec::new();
        let mut total = 0u64;
        for (record, settings) in records.iter().zip(&settings) {
            let samples = store.samples(run_id, &record.name)?;
            total += samples.len() as u64;
            let mut judges = Vec::new();
            for setting in settings {
                judges.push(builder.judge(setting).await?);
            }
            benchmarks.push(BenchmarkInput {
                name: record.name.clone(),
                samples: Box::new(samples.into_iter().map(Ok)),
                judges,
                solver: Arc::new(StoredSolver::for_benchmark(&record.name)),
            });
        }
        drop(store);
        let targets = spec
            .models
            .iter()
            .map(|config| Target {
                config: config.clone(),
                provider: Arc::new(NeverSent),
            })
            .collect::<Vec<_>>();
        let total_units = total * targets.len() as u64 * u64::from(spec.samples_per_prompt);
        let plan = Plan {
            enqueue_only: false,
            run: run_id,
            targets,
            benchmarks,
            channels: Channel::ALL.to_vec(),
            samples_per_prompt: spec.samples_per_prompt,
            use_cache: false,
            total_units: Some(total_units),
            stored_only: true,
            budget: None,
            shard: None,
        };
        let result = redtrace_engine::run(
            plan,
            request.db.clone(),
            EngineOptions {
                backoff: request.backoff,
                ..EngineOptions::default()
            },
            progress,
            shutdown,
        )
        .await;
        crate::run::ended(&request.db, run_id, result, resumed)
    }
}
