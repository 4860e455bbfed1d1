//! The subcommands: each turns resolved settings into calls on the library crates.

use anyhow::{Context, Result};
use redtrace_core::Channel;
use redtrace_datasets::open;
use redtrace_engine::{
    BenchmarkInput, BenchmarkRecord, EngineOptions, Plan, Progress, RunSpec, RunSummary, Shutdown,
    Target,
};
use redtrace_providers::{ModelConfig, ModelSource, OpenAiProvider, Provider};
use redtrace_report::Report;
use redtrace_store::{write_csv, write_jsonl, write_parquet, Store};
use std::io::Write;
use std::sync::Arc;

use crate::cli::{
    DataCommand, ExportArgs, ExportFormat, JudgeEvalArgs, ReportArgs, ReportFormat, RunsArgs,
    ViewArgs,
};
use crate::settings::{JudgeSetting, RunSettings};

/// What `run` did, for the caller to print and pick an exit code from.
pub struct RunOutcome {
    /// The run's id.
    pub run_id: i64,
    /// Counts.
    pub summary: RunSummary,
    /// Whether an existing run was resumed.
    pub resumed: bool,
}

/// Validates every benchmark file (all rows, before any request is sent), then runs.
pub async fn run(
    settings: &RunSettings,
    progress: Arc<dyn Progress>,
    shutdown: Shutdown,
) -> Result<RunOutcome> {
    // Read every benchmark once up front: a bad row fails here, before anything is sent or
    // stored, and the count gives the progress bar its total.
    let mut records = Vec::new();
    let mut counts = Vec::new();
    for plan in &settings.benchmarks {
        let (path, fields) = plan.source.resolve(settings.data_dir.as_deref())?;
        let mut reader = open(&path, &fields, plan.selection)?;
        let checksum = reader.checksum().to_owned();
        let mut count = 0u64;
        for sample in reader.by_ref() {
            sample?;
            count += 1;
        }
        if reader.skipped() > 0 && !settings.quiet {
            eprintln!(
                "note: {}: {} rows without a prompt in {} passed over",
                plan.source.name(),
                reader.skipped(),
                path.display()
            );
        }
        counts.push(
            settings
                .attacks
                .iter()
                .map(|attack| count * variants_per_prompt(&attack.name))
                .sum(),
        );
        records.push(BenchmarkRecord {
            name: plan.source.name(),
            file: path.display().to_string(),
            sha256: checksum,
            fields: serde_json::to_value(&fields).unwrap_or_default(),
            limit: plan.selection.limit,
            sample_seed: plan.selection.sample_seed,
            judges: plan
                .judges
                .iter()
                .map(JudgeSetting::identity)
                .collect::<Result<_>>()?,
            responder: plan.responder_model.clone(),
            attack: None,
        });
    }
    // Each benchmark once per attack, named BENCH+ATTACK ("none" keeps the plain benchmark).
    let records: Vec<BenchmarkRecord> = records
        .into_iter()
        .flat_map(|record| {
            settings.attacks.iter().map(move |attack| BenchmarkRecord {
                name: attacked_name(&record.name, &attack.name),
                attack: attack.identity(),
                ..record.clone()
            })
        })
        .collect();
    let mut all_judges: Vec<String> = Vec::new();
    for judge in records.iter().flat_map(|r| r.judges.iter()) {
        if !all_judges.contains(judge) {
            all_judges.push(judge.clone());
        }
    }
    let mut targets = Vec::new();
    for config in &settings.models {
        targets.push(Target {
            config: config.clone(),
            provider: provider_for(config).await?,
        });
    }
    let spec = RunSpec {
        models: settings.models.clone(),
        benchmarks: records.clone(),
        judges: all_judges,
        samples_per_prompt: settings.samples_per_prompt,
    };
    let store = Store::open(&settings.db)?;
    let hash = spec.identity_hash();
    let existing = if settings.new_run {
        None
    } else {
        store.find_run(&hash)?
    };
    let resumed = existing.is_some();
    let run_id = match existing {
        Some(id) => {
            store.set_status(id, "running")?;
            id
        }
        None => store.create_run(&hash, &spec.to_json(), env!("CARGO_PKG_VERSION"))?,
    };
    drop(store);

    let mut judges = JudgeBuilder::new(&settings.db, settings.data_dir.clone())?;
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
            benchmark_judges.push(judges.judge(setting).await?);
        }
        let responder = match &plan.responder_model {
            Some(reference) => Some(judges.responder(reference).await?),
            None => None,
        };
        let driven = if attack.is_driven() {
            Some(judges.driven_attack(attack).await?)
        } else {
            None
        };
        let label = attack.name.clone();
        let attack = (attack.name != NO_ATTACK && driven.is_none())
            .then(|| redtrace_attacks::by_name(&attack.name))
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let samples: Box<dyn Iterator<Item = Result<redtrace_core::Sample, String>> + Send> =
            match (attack.clone(), driven.is_some()) {
                (Some(attack), _) => Box::new(reader.flat_map(move |sample| match sample {
                    Ok(sample) => attack.variants(&sample).into_iter().map(Ok).collect(),
                    Err(error) => vec![Err(error.to_string())],
                })),
                (None, true) => Box::new(reader.map(move |sample| {
                    sample
                        .map(|sample| redtrace_attacks::driven::marked(&sample, &label))
                        .map_err(|e| e.to_string())
                })),
                (None, false) => Box::new(reader.map(|sample| sample.map_err(|e| e.to_string()))),
            };
        let decode = attack.map(|attack| {
            Arc::new(move |answer: &str| attack.decode(answer)) as redtrace_engine::Decoder
        });
        benchmarks.push(BenchmarkInput {
            name: record.name.clone(),
            samples,
            judges: benchmark_judges,
            responder,
            decode,
            driven,
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
        total_units: Some(total_units),
    };
    let result = redtrace_engine::run(
        plan,
        settings.db.clone(),
        EngineOptions::default(),
        progress,
        shutdown,
    )
    .await;
    let store = Store::open(&settings.db)?;
    match &result {
        Ok(summary) if summary.interrupted => store.set_status(run_id, "interrupted")?,
        Ok(_) => store.set_status(run_id, "complete")?,
        Err(_) => store.set_status(run_id, "failed")?,
    }
    let summary = result?;
    Ok(RunOutcome {
        run_id,
        summary,
        resumed,
    })
}

/// The attack name that leaves a benchmark as it is.
pub const NO_ATTACK: &str = "none";

/// How many samples an attack makes of each prompt (`templates:PATH:N` makes N).
fn variants_per_prompt(attack: &str) -> u64 {
    attack
        .strip_prefix("templates:")
        .and_then(|spec| spec.rsplit_once(':'))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

/// The name an attacked benchmark is reported under.
fn attacked_name(benchmark: &str, attack: &str) -> String {
    if attack == NO_ATTACK {
        benchmark.to_owned()
    } else {
        format!("{benchmark}+{attack}")
    }
}

/// Judges should be deterministic and have room for a short rationale.
const JUDGE_PARAMS: (f64, u64) = (0.0, 512);

/// Attackers should vary their prompts and have room for a long one. Their replies are cached
/// like a judge's, so a rerun replays the same attack.
const ATTACKER_PARAMS: (f64, u64) = (1.0, 1024);

/// Builds judges, once each: judges with the same setting are one judge, and judge models with
/// the same reference are one client (a local GGUF judge is loaded once), every model judge
/// caching its replies in the store.
pub struct JudgeBuilder {
    data_dir: Option<std::path::PathBuf>,
    cache: Arc<dyn redtrace_judges::ReplyCache>,
    judges: Vec<(JudgeSetting, Arc<dyn redtrace_judges::Judge>)>,
    models: Vec<(String, redtrace_judges::JudgeModel, String)>,
}

impl JudgeBuilder {
    /// A builder whose judges cache replies in the store at `db`.
    pub fn new(db: &std::path::Path, data_dir: Option<std::path::PathBuf>) -> Result<Self> {
        Ok(Self {
            data_dir,
            cache: Arc::new(redtrace_engine::StoreReplyCache::open(db)?),
            judges: Vec::new(),
            models: Vec::new(),
        })
    }

    /// The judge for `setting`.
    pub async fn judge(
        &mut self,
        setting: &JudgeSetting,
    ) -> Result<Arc<dyn redtrace_judges::Judge>> {
        if let Some((_, judge)) = self.judges.iter().find(|(s, _)| s == setting) {
            return Ok(judge.clone());
        }
        let mut parts = redtrace_judges::JudgeParts {
            template: setting.template.clone(),
            data_dir: self.data_dir.clone(),
            reward: setting
                .reward
                .as_deref()
                .map(redtrace_judges::RewardConfig::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?,
            cache: Some(self.cache.clone()),
            ..Default::default()
        };
        if let Some(reference) = &setting.model {
            let (model, name) = self
                .model(reference)
                .await
                .with_context(|| format!("judge '{}'", setting.name))?;
            parts.model = Some(model);
            parts.model_name = Some(name);
        }
        let mut judge = redtrace_judges::build(&setting.name, parts).map_err(anyhow::Error::msg)?;
        if let Some((chars, rule)) = &setting.chunk {
            // The safety-thinking classes describe a whole trace; they are not combined.
            if setting.name != redtrace_judges::SafetyThinkingJudge::NAME {
                let rule = redtrace_judges::Combine::parse(rule).map_err(anyhow::Error::msg)?;
                judge = Arc::new(redtrace_judges::Chunked::new(judge, *chars, rule));
            }
        }
        if setting.channels != redtrace_core::Channel::ALL {
            judge = Arc::new(redtrace_judges::OnChannels::new(
                judge,
                setting.channels.clone(),
            ));
        }
        self.judges.push((setting.clone(), judge.clone()));
        Ok(judge)
    }

    /// A model-driven attack with its attacker and judge models (a judge model is built only
    /// for the attacks that rate replies).
    pub async fn driven_attack(
        &mut self,
        setting: &crate::settings::AttackSetting,
    ) -> Result<Arc<dyn redtrace_attacks::driven::DrivenAttack>> {
        use redtrace_attacks::driven::{Helper, ModelHelper};
        let attacker = match &setting.attacker_model {
            Some(reference) => {
                let (model, name) = self
                    .model_with(reference, ATTACKER_PARAMS)
                    .await
                    .context("the attacker model")?;
                Some(Arc::new(ModelHelper::new(name, model)) as Arc<dyn Helper>)
            }
            None => None,
        };
        let judge = match (
            &setting.judge_model,
            redtrace_attacks::driven::needs_judge(&setting.name),
        ) {
            (Some(reference), true) => {
                let (model, name) = self.model(reference).await.context("the judge model")?;
                Some(Arc::new(ModelHelper::new(name, model)) as Arc<dyn Helper>)
            }
            _ => None,
        };
        redtrace_attacks::driven::build(
            &setting.name,
            redtrace_attacks::driven::Helpers {
                attacker,
                judge,
                budget: setting.budget,
            },
        )
        .map_err(anyhow::Error::msg)
    }

    /// The other party of the phishing benchmark, played by the model `reference`.
    pub async fn responder(
        &mut self,
        reference: &str,
    ) -> Result<Arc<dyn redtrace_judges::Responder>> {
        let (model, name) = self.model(reference).await.context("the responder")?;
        Ok(Arc::new(
            redtrace_judges::PhishingVictim::new(format!("phishing-victim:{name}"), model)
                .map_err(anyhow::Error::msg)?,
        ))
    }

    async fn model(&mut self, reference: &str) -> Result<(redtrace_judges::JudgeModel, String)> {
        self.model_with(reference, JUDGE_PARAMS).await
    }

    /// The model `reference` with default sampling `(temperature, max_tokens)` where the
    /// reference sets none; one client per reference and defaults.
    async fn model_with(
        &mut self,
        reference: &str,
        (temperature, max_tokens): (f64, u64),
    ) -> Result<(redtrace_judges::JudgeModel, String)> {
        let key = format!("{reference}\u{1f}{temperature}\u{1f}{max_tokens}");
        if let Some((_, model, name)) = self.models.iter().find(|(r, _, _)| *r == key) {
            return Ok((model.clone(), name.clone()));
        }
        let mut config = ModelConfig::parse_ref(reference)?;
        if config.base_url().is_some() && std::env::var_os("OPENAI_API_KEY").is_some() {
            config.api_key_env = Some("OPENAI_API_KEY".into());
        }
        config.params.temperature.get_or_insert(temperature);
        config.params.max_tokens.get_or_insert(max_tokens);
        let provider = provider_for(&config).await?;
        let model = redtrace_judges::JudgeModel::new(provider).with_cache(self.cache.clone());
        self.models.push((key, model.clone(), config.name.clone()));
        Ok((model, config.name))
    }
}

/// The client for a model, by where it runs.
pub async fn provider_for(config: &ModelConfig) -> Result<Arc<dyn Provider>> {
    match &config.source {
        ModelSource::OpenAi { .. } => Ok(Arc::new(OpenAiProvider::new(config.clone())?)),
        ModelSource::Gguf { path } => local_provider(config, std::path::Path::new(path)),
        ModelSource::Hf { repo, file } => {
            let path = crate::hf::download(repo, file).await?;
            local_provider(config, &path)
        }
    }
}

#[cfg(feature = "local")]
fn local_provider(config: &ModelConfig, path: &std::path::Path) -> Result<Arc<dyn Provider>> {
    eprintln!("loading {} ...", path.display());
    Ok(Arc::new(redtrace_local::LocalProvider::load(
        config.clone(),
        path,
    )?))
}

#[cfg(not(feature = "local"))]
fn local_provider(config: &ModelConfig, _path: &std::path::Path) -> Result<Arc<dyn Provider>> {
    anyhow::bail!(
        "model '{}' runs in-process, but this redtrace was built without the `local` feature; \
         rebuild with default features (needs cmake and libclang)",
        config.name
    )
}

/// Prints a run's report, and its comparison with another run when asked.
pub fn report(args: &ReportArgs, out: &mut dyn Write) -> Result<()> {
    let store = open_existing(&args.db.db)?;
    let run = store.resolve_run(&args.run)?;
    let report = Report::build(&store, &run)?;
    if args.paper {
        out.write_all(report.to_paper(&store)?.as_bytes())?;
        return Ok(());
    }
    if args.findings {
        out.write_all(report.to_findings(&store)?.as_bytes())?;
        return Ok(());
    }
    let comparison = match &args.compare {
        Some(other) => {
            let other = store.resolve_run(other)?;
            Some(redtrace_report::Comparison::build(&store, &run, &other)?)
        }
        None => None,
    };
    let text = match args.format {
        ReportFormat::Table => {
            report.to_terminal()
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

/// Exports a run, streaming.
pub fn export(args: &ExportArgs, stdout: &mut dyn Write) -> Result<u64> {
    let store = open_existing(&args.db.db)?;
    let run = store.resolve_run(&args.run)?;
    let create = |path: &std::path::Path| {
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
    };
    let written = match (args.format, &args.output) {
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

fn text_export(store: &Store, run: i64, format: ExportFormat, out: &mut dyn Write) -> Result<u64> {
    Ok(match format {
        ExportFormat::Jsonl => write_jsonl(store, run, out)?,
        ExportFormat::Csv => write_csv(store, run, out)?,
        ExportFormat::Parquet => unreachable!("Parquet is written to a file"),
    })
}

/// Lists runs.
pub fn runs(args: &RunsArgs, out: &mut dyn Write) -> Result<()> {
    let store = open_existing(&args.db.db)?;
    let runs = store.runs()?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
        return Ok(());
    }
    if runs.is_empty() {
        writeln!(out, "no runs in {}", args.db.db.display())?;
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
    for run in runs {
        let spec: serde_json::Value = serde_json::from_str(&run.spec).unwrap_or_default();
        let names = |key: &str, field: &str| -> String {
            spec[key]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| item[field].as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        table.push(vec![
            run.id.to_string(),
            run.status,
            run.created_at,
            run.completions.to_string(),
            run.errors.to_string(),
            names("models", "name"),
            names("benchmarks", "name"),
        ]);
    }
    write_columns(out, &table)?;
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
        writeln!(out, "{}", line.join("  ").trim_end())?;
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
                writeln!(
                    out,
                    "{:<18} {:>9}  {:>2}/{:<2} files downloadable  {}  [{}]",
                    set.name,
                    megabytes(bytes),
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
            for (file, state) in catalog::status(&set, &dir) {
                let state = match state {
                    FileState::Present => "present",
                    FileState::Missing => "missing",
                    FileState::Different => "DIFFERENT (hash does not match)",
                };
                writeln!(
                    out,
                    "  {:<70} {:>9}  {state}
      from {}{}",
                    file.path,
                    megabytes(file.bytes),
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
    if let Some(model) = &args.judge_model {
        ModelConfig::parse_ref(model).context("--judge-model")?;
    }
    let templates = crate::settings::parse_templates(&args.judge_templates)?;
    let mut settings = Vec::new();
    for text in &args.judges {
        let mut setting = crate::settings::judge_from_text(text)?;
        crate::settings::complete_judge(&mut setting, args.judge_model.as_deref(), &templates)?;
        settings.push(setting);
    }
    let combine = args
        .ensemble
        .as_deref()
        .map(redtrace_judges::Combine::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    if combine.is_some() && settings.len() < 2 {
        anyhow::bail!("--ensemble needs two judges or more (--judge a,b)");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let mut builder = JudgeBuilder::new(&args.db.db, data_dir.clone())?;
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
    if !db.is_file() {
        anyhow::bail!(
            "no store at {} (run `redtrace run` first, or pass --db PATH)",
            db.display()
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
            db.display(),
            args.host
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let address = std::net::SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr()?;
        // The URL goes to stdout (one line, so scripts and tests can read it), the rest to stderr.
        println!("http://{bound}/");
        eprintln!("redtrace view: serving {} (Ctrl-C to stop)", db.display());
        tokio::select! {
            served = redtrace_view::serve(listener, db.clone()) => served?,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

fn open_existing(path: &std::path::Path) -> Result<Store> {
    if !path.is_file() {
        anyhow::bail!(
            "no store at {} (run `redtrace run` first, or pass --db PATH)",
            path.display()
        );
    }
    Ok(Store::open(path)?)
}
