//! A run's life: every benchmark file read and checked before anything is sent, the run
//! found (resume) or created in the store, its parts built, the engine run, and the run's
//! status set from how it ended.

use anyhow::{Context, Result};
use redtrace_attacks::solver::{DrivenSolver, TransformSolver};
use redtrace_core::solver::{Direct, Prepared, Solver};
use redtrace_core::{Channel, RunStatus};
use redtrace_datasets::open;
use redtrace_engine::{
    BenchmarkInput, BenchmarkRecord, EngineOptions, Plan, Progress, RunSpec, RunSummary, Shutdown,
    Target,
};
use redtrace_store::{RunId, Store};
use std::sync::Arc;

use crate::build::Builder;
use crate::settings::{AttackSetting, BenchmarkPlan, JudgeSetting, RunSettings};

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The run's id.
    pub run_id: RunId,
    /// Counts.
    pub summary: RunSummary,
    /// Whether an existing run was resumed.
    pub resumed: bool,
}

/// Runs `settings` to the end (or until `shutdown`): validates every benchmark file (all rows,
/// before any request is sent), finds or creates the run, runs it, and records how it ended.
/// Notes for a person (rows passed over, models loading) go to `progress`.
pub async fn run(
    settings: &RunSettings,
    progress: Arc<dyn Progress>,
    shutdown: Shutdown,
) -> Result<RunOutcome> {
    // A store that exists is checked before anything is written into it.
    if redtrace_store::exists(&settings.db) {
        Store::open(&settings.db)?.check_integrity()?;
    }
    // Read every benchmark once up front: a bad row fails here, before anything is sent or
    // stored, and the count gives the progress bar its total.
    let mut records = Vec::new();
    let mut counts = Vec::new();
    for plan in &settings.benchmarks {
        let (path, fields) = plan.source.resolve(settings.data_dir.as_deref())?;
        let mut reader = open(&path, &fields, plan.selection)?;
        let checksum = reader.checksum().to_owned();
        let mut count = 0u64;
        let mut covered = std::collections::BTreeSet::new();
        for sample in reader.by_ref() {
            if let Some(top) = sample?.category.first() {
                covered.insert(top.clone());
            }
            count += 1;
        }
        // The first N rows of a file in category order cover few categories: say so.
        if let (Some(limit), None) = (plan.selection.limit, plan.selection.sample_seed) {
            if !covered.is_empty() {
                let mut all = std::collections::BTreeSet::new();
                for sample in open(&path, &fields, redtrace_datasets::Selection::default())? {
                    if let Some(top) = sample?.category.first() {
                        all.insert(top.clone());
                    }
                }
                if covered.len() < all.len() {
                    progress.note(&format!(
                        "note: {}: --limit {limit} takes the first {limit} rows, which cover {} of its {} categories; --sample-seed S takes a seeded sample stratified by category",
                        plan.source.name(),
                        covered.len(),
                        all.len()
                    ));
                }
            }
        }
        if reader.skipped() > 0 {
            progress.note(&format!(
                "note: {}: {} rows without a prompt in {} passed over",
                plan.source.name(),
                reader.skipped(),
                path.display()
            ));
        }
        counts.push(
            settings
                .attacks
                .iter()
                .map(|attack| count * redtrace_attacks::variants_per_prompt(&attack.name))
                .sum::<u64>(),
        );
        records.push(BenchmarkRecord {
            name: plan.source.name(),
            file: path.display().to_string(),
            sha256: checksum,
            fields: serde_json::to_value(&fields).unwrap_or_default(),
            limit: plan.selection.limit,
            sample_seed: plan.selection.sample_seed,
            sampling: plan
                .selection
                .sample_seed
                .map(|_| "stratified-by-category".to_owned()),
            judges: plan
                .judges
                .iter()
                .map(JudgeSetting::identity)
                .collect::<Result<_>>()?,
            responder: plan
                .responder_model
                .as_ref()
                .map(|model| model.as_str().to_owned()),
            attack: None,
        });
    }
    // Each benchmark once per attack, named BENCH+ATTACK ("none" keeps the plain benchmark).
    let records: Vec<BenchmarkRecord> = records
        .into_iter()
        .flat_map(|record| {
            settings.attacks.iter().map(move |attack| {
                let mut judges = record.judges.clone();
                if let Some(own) = redtrace_attacks::own_judge(&attack.name) {
                    if !judges.iter().any(|j| j == own) {
                        judges.push(own.to_owned());
                    }
                }
                BenchmarkRecord {
                    name: redtrace_attacks::attacked_name(&record.name, &attack.name),
                    attack: attack.identity(),
                    judges,
                    ..record.clone()
                }
            })
        })
        .collect();
    let mut all_judges: Vec<String> = Vec::new();
    for judge in records.iter().flat_map(|r| r.judges.iter()) {
        if !all_judges.contains(judge) {
            all_judges.push(judge.clone());
        }
    }
    let mut builder = Builder::new(&settings.db, settings.data_dir.clone(), progress.clone())?
        .with_shutdown(&shutdown)
        .with_backoff(settings.backoff)
        .with_key_env(settings.helper_key_env.clone())
        .with_limits(settings.helper_limits)
        .with_prices(settings.prices.clone());
    // Clients are made before the run is (a missing key is an error before anything is
    // stored); a batched one is bound to the run's record of its batches after.
    let mut providers = Vec::new();
    for config in &settings.models {
        providers.push(builder.target(config).await?);
    }
    let spec = RunSpec::new(
        settings.models.clone(),
        records.clone(),
        all_judges,
        settings.samples_per_prompt,
    );
    let store = Store::open(&settings.db)?;
    if let Some(join) = settings.join {
        // A worker joins the run it was asked to, or none: settings or data that differ
        // here from where the run was started would make another run.
        let stored = store.resolve_run(&join.to_string())?;
        if stored.spec_hash != spec.identity_hash() {
            anyhow::bail!(
                "this worker's run differs from run {join} in {}: {}",
                redtrace_store::shown(&settings.db),
                stored.spec.differences(&spec).join("; ")
            );
        }
    }
    let (run_id, _claim, resumed) = started(&store, &spec, settings.new_run)?;
    if let (true, Some(recipe)) = (store.shared(), &settings.recipe) {
        store.put_recipe(run_id, recipe)?;
    }
    drop(store);
    let mut targets = Vec::new();
    for (config, provider) in settings.models.iter().zip(providers) {
        targets.push(Target {
            config: config.clone(),
            provider: builder.target_of_run(config, provider, &settings.db, run_id)?,
        });
    }

    let mut benchmarks = Vec::new();
    let plans = settings
        .benchmarks
        .iter()
        .flat_map(|plan| settings.attacks.iter().map(move |attack| (plan, attack)));
    for ((plan, attack), record) in plans.zip(&records) {
        let (path, fields) = plan.source.resolve(settings.data_dir.as_deref())?;
        let reader = open(&path, &fields, plan.selection)?;
        if reader.checksum() != record.sha256 {
            anyhow::bail!(
                "{} changed while the run was starting; run again",
                path.display()
            );
        }
        let mut benchmark_judges = Vec::new();
        for setting in &plan.judges {
            benchmark_judges.push(builder.judge(setting).await?);
        }
        // An attack's own judge (the injection attacks' canary) comes with it.
        if let Some(own) = redtrace_attacks::own_judge(&attack.name) {
            if !plan.judges.iter().any(|j| j.name == own) {
                benchmark_judges.push(builder.judge(&JudgeSetting::parse(own)?).await?);
            }
        }
        let solver = solver(&mut builder, plan, attack).await?;
        benchmarks.push(BenchmarkInput {
            name: record.name.clone(),
            samples: Box::new(reader.map(|sample| sample.map_err(|e| e.to_string()))),
            judges: benchmark_judges,
            solver,
        });
    }
    let total_units =
        counts.iter().sum::<u64>() * targets.len() as u64 * u64::from(settings.samples_per_prompt);
    let plan = Plan {
        run: run_id,
        targets,
        benchmarks,
        channels: Channel::ALL.to_vec(),
        samples_per_prompt: settings.samples_per_prompt,
        use_cache: settings.use_cache,
        // A shard's share of the units is known only as they are read.
        total_units: settings.shard.is_none().then_some(total_units),
        stored_only: false,
        budget: match settings.max_cost {
            // A resumed run's earlier spending counts against its budget.
            Some(limit) => Some(Arc::new(redtrace_engine::Budget::new(
                limit,
                Store::open(&settings.db)?.spent(run_id)?,
            ))),
            None => None,
        },
        shard: settings.shard,
        enqueue_only: settings.enqueue_only,
    };
    let result = redtrace_engine::run(
        plan,
        settings.db.clone(),
        EngineOptions {
            backoff: settings.backoff,
            lease: settings.lease,
            ..EngineOptions::default()
        },
        progress,
        shutdown,
    )
    .await;
    ended(&settings.db, run_id, result, resumed)
}

/// The run of `spec` started: the stored one of the same identity resumed (unless `new_run`),
/// else a new one, claimed for this process and marked running; whether it was resumed. One
/// process runs a run at a time: a second start of the same run is refused before it sends
/// anything, and a run whose process died shows as interrupted.
pub(crate) fn started(
    store: &Store,
    spec: &RunSpec,
    new_run: bool,
) -> Result<(RunId, redtrace_store::RunClaim, bool)> {
    let (id, created) = store.find_or_create_run(spec, env!("CARGO_PKG_VERSION"), new_run)?;
    let claim = store.claim_run(id)?;
    if !created {
        store.set_status(id, RunStatus::Running)?;
    }
    Ok((id, claim, !created))
}

/// Records how the engine's run of `run_id` ended as its status, and hands the outcome on.
pub(crate) fn ended(
    db: &std::path::Path,
    run_id: RunId,
    result: Result<RunSummary, redtrace_engine::EngineError>,
    resumed: bool,
) -> Result<RunOutcome> {
    let store = Store::open(db).context("recording how the run ended")?;
    if store.shared() {
        // One worker of many: the run is complete when its queue is, and only then; a
        // worker that stops or fails leaves the run to the others (a run nobody works shows
        // as interrupted).
        if let Ok(summary) = &result {
            if !summary.interrupted && store.queue_state(run_id)?.open() == 0 {
                store.set_status(run_id, RunStatus::Complete)?;
            }
        }
    } else {
        match &result {
            Ok(summary) if summary.interrupted => {
                store.set_status(run_id, RunStatus::Interrupted)?
            }
            Ok(_) => store.set_status(run_id, RunStatus::Complete)?,
            Err(_) => store.set_status(run_id, RunStatus::Failed)?,
        }
    }
    Ok(RunOutcome {
        run_id,
        summary: result?,
        resumed,
    })
}

/// What is sent for each sample of `plan` under `attack`, and what the judges read. A
/// model-driven attack runs its own exchange; a transform attack prepares the samples (and
/// decodes answers); a multi-turn benchmark's dialogue runs the exchange, after the transform
/// where there is one; else the request goes as it is.
async fn solver(
    builder: &mut Builder,
    plan: &BenchmarkPlan,
    attack: &AttackSetting,
) -> Result<Arc<dyn Solver>> {
    if attack.is_driven() {
        return Ok(Arc::new(DrivenSolver {
            attack: builder.driven_attack(attack).await?,
            label: attack.name.clone(),
        }));
    }
    let transform = (attack.name != redtrace_attacks::NO_ATTACK)
        .then(|| redtrace_attacks::by_name(&attack.name))
        .transpose()?
        .map(|attack| Arc::new(TransformSolver(attack)) as Arc<dyn Solver>);
    let dialogue = match &plan.responder_model {
        Some(reference) => Some(builder.exchange(reference).await?),
        None => None,
    };
    Ok(match (transform, dialogue) {
        (None, None) => Arc::new(Direct),
        (Some(solver), None) | (None, Some(solver)) => solver,
        (Some(prepare), Some(solve)) => Arc::new(Prepared { prepare, solve }),
    })
}
