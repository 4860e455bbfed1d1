//! Resolution in two stages, as uv resolves its settings: a suite file becomes a [`Suite`]
//! (its paths taken relative to the file, every reference parsed), then [`Overrides`] (the
//! command line, or an embedder's changes) are laid over it into [`RunSettings`]. Precedence,
//! in this one place: overrides, then environment, then file, then defaults.

use anyhow::{bail, Context, Result};
use redtrace_datasets::{BenchSource, FieldMap, Selection, DATA_DIR_ENV};
use redtrace_judges::Combine;
use redtrace_providers::{Backoff, ModelConfig, ModelRef, ModelSource};
use std::path::{Path, PathBuf};

use crate::file::{read_suite, relative_to, AttackEntry, JudgeEntry};
use crate::settings::{
    parse_channels, parse_templates, sweep_model, AttackSetting, BenchmarkPlan, Chunking,
    HelperLimits, JudgeSetting, RewardSetting, RunSettings, FALLBACK_JUDGE,
};

/// The environment variable naming the store when no `--db` is given.
pub const DB_ENV: &str = "REDTRACE_DB";

/// The store used when neither overrides, environment nor suite file name one.
pub const DEFAULT_DB: &str = "redtrace.db";

/// The environment variable OpenAI's own API key is read from by default.
pub const DEFAULT_KEY_ENV: &str = "OPENAI_API_KEY";

/// The host [`DEFAULT_KEY_ENV`] is sent to without being named.
pub const DEFAULT_KEY_HOST: &str = "api.openai.com";

/// The key variable a model gets when none is named, where it is set, for its maker's own API
/// only: `OPENAI_API_KEY` for api.openai.com, `ANTHROPIC_API_KEY` for api.anthropic.com,
/// `GEMINI_API_KEY` for generativelanguage.googleapis.com. A key goes to the endpoint it was made for, never by default to a
/// judge, a local server or anyone else's endpoint.
pub fn default_key_env(config: &ModelConfig) -> Option<String> {
    let host = url::Url::parse(config.base_url()?)
        .ok()?
        .host_str()?
        .to_owned();
    let (variable, home) = match config.source {
        ModelSource::Anthropic { .. } => ("ANTHROPIC_API_KEY", "api.anthropic.com"),
        ModelSource::Gemini { .. } => ("GEMINI_API_KEY", "generativelanguage.googleapis.com"),
        ModelSource::OpenAi { .. } | ModelSource::OpenAiResponses { .. } => {
            (DEFAULT_KEY_ENV, DEFAULT_KEY_HOST)
        }
        _ => return None,
    };
    (host == home && std::env::var_os(variable).is_some()).then(|| variable.to_owned())
}

/// An attack as a suite names it, before the suite-wide attacker model and budget apply.
#[derive(Debug, Clone)]
struct AttackDraft {
    name: String,
    attacker_model: Option<ModelRef>,
    judge_model: Option<ModelRef>,
    budget: Option<u32>,
}

/// A benchmark as a suite names it, with its own judges if it lists any.
#[derive(Debug, Clone)]
struct BenchmarkDraft {
    source: BenchSource,
    limit: Option<usize>,
    sample_seed: Option<u64>,
    judges: Option<Vec<JudgeSetting>>,
}

/// A suite: the models, benchmarks, judges and attacks of a suite file, resolved against the
/// file's folder and parsed, before any override. [`Suite::default`] is the empty suite that
/// overrides alone fill (`redtrace run --model … --bench …`).
#[derive(Debug, Clone, Default)]
pub struct Suite {
    path: Option<PathBuf>,
    db: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    models: Vec<ModelConfig>,
    benchmarks: Vec<BenchmarkDraft>,
    judges: Vec<JudgeSetting>,
    judge_model: Option<ModelRef>,
    samples: Option<u32>,
    attacks: Vec<AttackDraft>,
    attacker_model: Option<ModelRef>,
    attack_budget: Option<u32>,
    prices: Option<PathBuf>,
    max_cost: Option<f64>,
}

impl Suite {
    /// Reads a suite file; errors name the file and the table.
    pub fn from_file(path: &Path) -> Result<Self> {
        let file = read_suite(path)?;
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let at = |what: String| format!("suite file {}: {what}", path.display());
        if file.models.is_empty() {
            bail!(at("no [[models]] table".into()));
        }
        if file.benchmarks.is_empty() {
            bail!(at("no [[benchmarks]] table".into()));
        }
        let mut models = Vec::new();
        for (i, mut table) in file.models.into_iter().enumerate() {
            let context = || at(format!("models[{i}]"));
            let sweep = table.sweep.take();
            let config = table.into_config(&base).with_context(context)?;
            let Some(sweep) = sweep else {
                models.push(config);
                continue;
            };
            let mut entries = sweep.into_iter();
            let (Some((key, values)), None) = (entries.next(), entries.next()) else {
                return Err(anyhow::anyhow!(
                    "sweep: give exactly one setting, e.g. sweep = {{ max_tokens = [1024, 4096] }}"
                ))
                .with_context(context);
            };
            let toml::Value::Array(items) = values else {
                return Err(anyhow::anyhow!("sweep.{key}: give a list of values"))
                    .with_context(context);
            };
            let values = items
                .into_iter()
                .map(|v| serde_json::to_value(v).map_err(anyhow::Error::from))
                .collect::<Result<Vec<_>>>()?;
            models.extend(sweep_model(&config, &key, &values).with_context(context)?);
        }
        let mut benchmarks = Vec::new();
        for (i, table) in file.benchmarks.into_iter().enumerate() {
            let context = || at(format!("benchmarks[{i}]"));
            let fields = FieldMap {
                prompt: table.prompt_field.unwrap_or_else(|| "prompt".into()),
                id: table.id_field,
                category: table.category_fields,
                label: table.label_field,
                system: table.system_field,
                fixed_label: None,
                skip_without_prompt: false,
                prompt_template: None,
            };
            let name = match table.name.strip_prefix("file:") {
                Some(file) => {
                    format!("file:{}", relative_to(&base, PathBuf::from(file)).display())
                }
                None => table.name.clone(),
            };
            let source = BenchSource::parse(&name, fields).with_context(context)?;
            let judges = table
                .judges
                .map(|names| {
                    names
                        .iter()
                        .map(|name| JudgeSetting::parse(name))
                        .collect::<Result<Vec<_>>>()
                })
                .transpose()
                .with_context(context)?;
            benchmarks.push(BenchmarkDraft {
                source,
                limit: table.limit,
                sample_seed: table.sample_seed,
                judges,
            });
        }
        let judges = file
            .judges
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                match entry {
                    JudgeEntry::Name(text) => JudgeSetting::parse(&text),
                    JudgeEntry::Table(table) => {
                        let mut setting = JudgeSetting::parse(&table.name)?;
                        if let Some(model) = &table.model {
                            setting.model = Some(ModelRef::parse(model)?);
                        }
                        setting.template = table.template.map(|t| relative_to(&base, t));
                        if let Some(channels) = &table.channels {
                            setting.channels = parse_channels(channels)?;
                        }
                        setting.reward = table
                            .reward
                            .as_deref()
                            .map(RewardSetting::parse)
                            .transpose()?;
                        Ok(setting)
                    }
                }
                .with_context(|| at(format!("judges[{i}]")))
            })
            .collect::<Result<Vec<_>>>()?;
        let model = |text: Option<String>, what: &str| {
            text.as_deref()
                .map(ModelRef::parse)
                .transpose()
                .with_context(|| at(what.to_owned()))
        };
        let attacks = file
            .attacks
            .into_iter()
            .map(|entry| {
                Ok(match entry {
                    AttackEntry::Name(name) => AttackDraft {
                        name,
                        attacker_model: None,
                        judge_model: None,
                        budget: None,
                    },
                    AttackEntry::Table(table) => AttackDraft {
                        attacker_model: model(
                            table.attacker_model,
                            &format!("attack '{}': attacker_model", table.name),
                        )?,
                        judge_model: model(
                            table.judge_model,
                            &format!("attack '{}': judge_model", table.name),
                        )?,
                        name: table.name,
                        budget: table.budget,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            // A PostgreSQL URL is no path to resolve.
            db: file.db.map(|db| {
                if redtrace_store::postgres_url(&db).is_some() {
                    db
                } else {
                    relative_to(&base, db)
                }
            }),
            data_dir: file.data_dir.map(|dir| relative_to(&base, dir)),
            models,
            benchmarks,
            judges,
            judge_model: model(file.judge_model, "judge_model")?,
            samples: file.samples,
            attacks,
            attacker_model: model(file.attacker_model, "attacker_model")?,
            attack_budget: file.attack_budget,
            prices: file.prices.map(|p| relative_to(&base, p)),
            max_cost: file.max_cost,
            path: Some(path.to_owned()),
        })
    }

    /// The suite with `overrides` laid over it, resolved into settings.
    pub fn with(self, overrides: &Overrides) -> Result<RunSettings> {
        overrides.apply(self)
    }
}

/// What the command line (or an embedder) sets over a suite. Every field left empty keeps
/// the suite's value, then the environment's, then the default.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
// The field docs are also the command line's help, written for a terminal, not for rustdoc.
#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
pub struct Overrides {
    /// A model (repeatable): MODEL@BASE_URL for an OpenAI-compatible endpoint, gguf:PATH for a
    /// local GGUF file, hf:OWNER/REPO/FILE.gguf for a GGUF file on the Hugging Face hub.
    #[cfg_attr(feature = "clap", arg(long = "model", value_name = "REF"))]
    pub models: Vec<String>,
    /// Benchmarks: registry names or file:PATH, comma-separated or repeated.
    #[cfg_attr(
        feature = "clap",
        arg(long = "bench", value_delimiter = ',', value_name = "NAME")
    )]
    pub benches: Vec<String>,
    /// Where data sets live [env: REDTRACE_DATA].
    #[cfg_attr(feature = "clap", arg(long))]
    pub data_dir: Option<PathBuf>,
    /// How the run is judged.
    #[cfg_attr(feature = "clap", command(flatten))]
    pub judging: JudgeOverrides,
    /// Environment variable holding the targets' API key [default: OPENAI_API_KEY, only for
    /// api.openai.com].
    #[cfg_attr(feature = "clap", arg(long))]
    pub api_key_env: Option<String>,
    /// Requests in flight at once per endpoint.
    #[cfg_attr(feature = "clap", arg(long))]
    pub concurrency: Option<usize>,
    /// Requests per minute per endpoint.
    #[cfg_attr(feature = "clap", arg(long))]
    pub rpm: Option<u32>,
    /// Per-request timeout in seconds.
    #[cfg_attr(feature = "clap", arg(long))]
    pub timeout: Option<f64>,
    /// Retries for rate limits, server errors, timeouts and dropped connections.
    #[cfg_attr(feature = "clap", arg(long))]
    pub retries: Option<u32>,
    /// The longest wait a server's Retry-After is honoured for, in seconds [default: 60].
    #[cfg_attr(feature = "clap", arg(long, value_name = "SECS"))]
    pub max_retry_wait: Option<f64>,
    /// Stream responses (server-sent events).
    #[cfg_attr(feature = "clap", arg(long))]
    pub stream: bool,
    /// Sampling temperature.
    #[cfg_attr(feature = "clap", arg(long))]
    pub temperature: Option<f64>,
    /// Token budget for trace and answer.
    #[cfg_attr(feature = "clap", arg(long))]
    pub max_tokens: Option<u64>,
    /// How hard reasoning models think: low, medium or high, mapped per API (OpenAI,
    /// DeepSeek and vLLM `reasoning_effort`, Anthropic adaptive thinking's effort, Gemini
    /// `thinkingLevel`, Ollama `think`); sweepable (`--sweep reasoning_effort=low,high`).
    #[cfg_attr(feature = "clap", arg(long, value_name = "LEVEL"))]
    pub reasoning_effort: Option<String>,
    /// The thinking token budget, mapped per API (Anthropic `budget_tokens`, Gemini
    /// `thinkingBudget`, OpenRouter `reasoning.max_tokens`); sweepable.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub thinking_budget: Option<u64>,
    /// In dialogues (spear phishing, Crescendo), send the models' earlier traces back with
    /// their earlier replies (OpenAI-compatible `reasoning_content`, Ollama `thinking`);
    /// by default earlier replies go back without their traces, as every API accepts.
    #[cfg_attr(feature = "clap", arg(long))]
    pub replay_traces: bool,
    /// Start every answer with this text, e.g. "<think>\n" to force a trace.
    #[cfg_attr(feature = "clap", arg(long))]
    pub think_prefill: Option<String>,
    /// The models' chat template opens <think> in the prompt (R1 distills served without a
    /// reasoning parser): the output up to a bare </think> is the trace. Without it, a bare
    /// </think> is the answer's text.
    #[cfg_attr(feature = "clap", arg(long))]
    pub template_opens_think: bool,
    /// Threads for in-process (gguf:, hf:) models.
    #[cfg_attr(feature = "clap", arg(long))]
    pub threads: Option<usize>,
    /// Use at most N samples per benchmark.
    #[cfg_attr(feature = "clap", arg(long))]
    pub limit: Option<usize>,
    /// With --limit: pick the samples at random with this seed.
    #[cfg_attr(feature = "clap", arg(long))]
    pub sample_seed: Option<u64>,
    /// Attacks, comma-separated, each applied to every benchmark (reported as BENCH+ATTACK);
    /// `none` keeps the plain benchmark too. See `redtrace attacks`.
    #[cfg_attr(
        feature = "clap",
        arg(long = "attack", value_delimiter = ',', value_name = "NAME")
    )]
    pub attacks: Vec<String>,
    /// The model that writes model-driven attacks (translate:LANGUAGE, past-tense, pair, tap,
    /// crescendo); any model reference a target can use. Those that rate replies also call
    /// the judge model (--judge-model).
    #[cfg_attr(feature = "clap", arg(long, value_name = "REF"))]
    pub attacker_model: Option<String>,
    /// Target queries per sample at most for model-driven attacks.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub attack_budget: Option<u32>,
    /// Run every model at several values of one setting, KEY=V1,V2,... (max_tokens,
    /// temperature, top_p, or a request field such as reasoning_effort); each value is a model
    /// of its own, named NAME@KEY=VALUE, and the findings report safety versus that setting.
    #[cfg_attr(feature = "clap", arg(long, value_name = "KEY=VALUES"))]
    pub sweep: Option<String>,
    /// Completions per prompt, each with its own seed (the model's seed + k): the report then
    /// gives Safe@1, Safe@K and ConsSafe@K.
    #[cfg_attr(feature = "clap", arg(long, value_name = "K"))]
    pub samples: Option<u32>,
    /// For file: benchmarks, the prompt field [default: prompt].
    #[cfg_attr(feature = "clap", arg(long))]
    pub prompt_field: Option<String>,
    /// For file: benchmarks, the id field (row number when absent from the file).
    #[cfg_attr(feature = "clap", arg(long))]
    pub id_field: Option<String>,
    /// For file: benchmarks, category fields (comma-separated, most general first).
    #[cfg_attr(feature = "clap", arg(long, value_delimiter = ','))]
    pub category_field: Vec<String>,
    /// For file: benchmarks, a safe/unsafe label field.
    #[cfg_attr(feature = "clap", arg(long))]
    pub label_field: Option<String>,
    /// For file: benchmarks, a system-prompt field.
    #[cfg_attr(feature = "clap", arg(long))]
    pub system_field: Option<String>,
    /// Do not serve requests from earlier runs' completions.
    #[cfg_attr(feature = "clap", arg(long))]
    pub no_cache: bool,
    /// Start a new run even if this exact run exists (it still uses the cache).
    #[cfg_attr(feature = "clap", arg(long))]
    pub new_run: bool,
    /// The store: a SQLite file, or a PostgreSQL database that many workers share
    /// (`postgres://USER@HOST[:PORT]/DB`, `?host=/run/dir` for a socket folder)
    /// [env: REDTRACE_DB] [default: the suite's db, else redtrace.db].
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE|URL"))]
    pub db: Option<PathBuf>,
    /// A price table (TOML, `[MODEL] input = …, output = …` in USD per million tokens) laid
    /// over the built-in one.
    #[cfg_attr(feature = "clap", arg(long, value_name = "FILE"))]
    pub prices: Option<PathBuf>,
    /// Stop sending when what the run has spent, plus the most the requests in flight can
    /// cost, would pass this many USD; the run ends resumable.
    #[cfg_attr(feature = "clap", arg(long, value_name = "USD"))]
    pub max_cost: Option<f64>,
    /// Run only shard INDEX of COUNT (from 0): the units whose key hashes to it, the same on
    /// every machine; each shard in its own store, merged after with `redtrace merge`.
    #[cfg_attr(feature = "clap", arg(long, value_name = "INDEX/COUNT", value_parser = parse_shard))]
    pub shard: Option<redtrace_core::run::Shard>,
    /// With a PostgreSQL --db: create the run and queue its units, and leave them to
    /// `redtrace worker` (or further `redtrace run`s of the same run) on any machine.
    #[cfg_attr(feature = "clap", arg(long))]
    pub enqueue_only: bool,
    /// With a PostgreSQL --db: how long this worker holds the units it took without its
    /// heartbeat (which renews them every third of it); a dead worker's units go to the
    /// others after this long [default: 30].
    #[cfg_attr(feature = "clap", arg(long, value_name = "SECS"))]
    pub lease_secs: Option<f64>,
    /// Send the targets' requests through their provider's batch API (OpenAI Batch,
    /// Anthropic Message Batches): half the price, results within 24 hours; a killed run
    /// resumes its batches.
    #[cfg_attr(feature = "clap", arg(long))]
    pub batch: bool,
}

/// The judge flags, shared by `redtrace run` ([`Overrides`]) and `redtrace judge` (re-judging
/// a stored run).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
pub struct JudgeOverrides {
    /// Judges, comma-separated: NAME or NAME=MODEL_REF for every benchmark, BENCH=NAME for one
    /// [default: each benchmark's own judges, those that call a model only with --judge-model].
    #[cfg_attr(
        feature = "clap",
        arg(long = "judge", value_delimiter = ',', value_name = "NAME")
    )]
    pub judges: Vec<String>,
    /// The model LLM judges call (any model reference a target can use).
    #[cfg_attr(feature = "clap", arg(long, value_name = "REF"))]
    pub judge_model: Option<String>,
    /// A rubric template file for a judge, NAME=PATH (repeatable).
    #[cfg_attr(
        feature = "clap",
        arg(long = "judge-template", value_name = "NAME=PATH")
    )]
    pub judge_templates: Vec<String>,
    /// What the judges judge: answer, reasoning, or both [default: both].
    #[cfg_attr(
        feature = "clap",
        arg(long, value_delimiter = ',', value_name = "CHANNEL")
    )]
    pub channels: Vec<crate::settings::Channels>,
    /// The scoring endpoint of the reward judge (--judge reward):
    /// URL[,format=score|classify|messages][,model=M][,path=data.0.score][,threshold=0].
    #[cfg_attr(feature = "clap", arg(long, value_name = "SPEC"))]
    pub reward: Option<String>,
    /// Judge texts longer than N characters (long traces) in overlapping windows of N.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub chunk_chars: Option<usize>,
    /// How window verdicts combine: any-unsafe (default) or majority.
    #[cfg_attr(feature = "clap", arg(long, value_name = "RULE", value_parser = parse_combine))]
    pub chunk_combine: Option<Combine>,
    /// The threshold on P(Yes) above which ShieldGemma's verdict is unsafe [default: 0.5].
    #[cfg_attr(feature = "clap", arg(long, value_name = "P"))]
    pub guard_threshold: Option<f64>,
    /// Environment variable holding the key of the judge, attacker and responder models
    /// [default: OPENAI_API_KEY, only for api.openai.com]; the targets' key is never sent to
    /// them.
    #[cfg_attr(feature = "clap", arg(long, value_name = "NAME"))]
    pub judge_api_key_env: Option<String>,
}

/// Parses `--shard`.
#[cfg(feature = "clap")]
fn parse_shard(text: &str) -> Result<redtrace_core::run::Shard, String> {
    redtrace_core::run::Shard::parse(text)
}

/// Parses `--chunk-combine`.
#[cfg(feature = "clap")]
fn parse_combine(text: &str) -> Result<Combine, redtrace_judges::JudgeError> {
    Combine::parse(text)
}

/// A model reference given as an override, parsed; errors name the flag.
fn model_ref(text: Option<&str>, flag: &str) -> Result<Option<ModelRef>> {
    text.map(ModelRef::parse)
        .transpose()
        .context(flag.to_owned())
}

impl Overrides {
    /// Lays these overrides over `suite`, resolving everything into settings.
    pub fn apply(&self, suite: Suite) -> Result<RunSettings> {
        let from_file = suite.path.is_some() && self.models.is_empty();
        let mut models = suite.models;
        let mut benchmarks = suite.benchmarks;
        // `--model` and `--bench` replace the suite's models and benchmarks (a benchmark the
        // suite names keeps its table: limit, seed, judges); without a suite they are the run.
        if suite.path.is_none() {
            if self.models.is_empty() {
                bail!("no model: give --model MODEL@BASE_URL (e.g. deepseek-r1@http://127.0.0.1:8000/v1) or a suite file");
            }
            if self.benches.is_empty() {
                bail!("no benchmark: give --bench NAME (e.g. --bench xstest) or --bench file:PATH");
            }
        }
        if !self.models.is_empty() {
            models.clear();
            for reference in &self.models {
                let mut config = ModelConfig::parse_ref(reference)?;
                config.api_key_env = self
                    .api_key_env
                    .clone()
                    .or_else(|| default_key_env(&config));
                models.push(config);
            }
        }
        if !self.benches.is_empty() {
            let fields = FieldMap {
                prompt: self.prompt_field.clone().unwrap_or_else(|| "prompt".into()),
                id: self.id_field.clone(),
                category: self.category_field.clone(),
                label: self.label_field.clone(),
                system: self.system_field.clone(),
                fixed_label: None,
                skip_without_prompt: false,
                prompt_template: None,
            };
            let mut from_suite = std::mem::take(&mut benchmarks);
            for name in &self.benches {
                let source = BenchSource::parse(name, fields.clone())?;
                let draft = match from_suite
                    .iter()
                    .position(|d| d.source.name() == source.name())
                {
                    Some(at) => from_suite.remove(at),
                    None => BenchmarkDraft {
                        source,
                        limit: None,
                        sample_seed: None,
                        judges: None,
                    },
                };
                benchmarks.push(draft);
            }
        }
        let mut models = self.apply_to_models(models, from_file)?;

        // Judges: a benchmark's own list, else the overrides', else the suite's, else the
        // benchmark's defaults. LLM judges without a model of their own call the judge model.
        let choice = JudgeChoice::parse(&self.judging, suite.judge_model)?;
        let names: Vec<String> = benchmarks.iter().map(|d| d.source.name()).collect();
        choice.check_benchmarks(&names)?;
        let judge_model = choice.judge_model.clone();
        let global_judges = if !choice.everywhere.is_empty() {
            Some(choice.everywhere.clone())
        } else if !suite.judges.is_empty() {
            Some(suite.judges)
        } else {
            None
        };
        let mut notes = Vec::new();
        let mut plans = Vec::new();
        for draft in benchmarks {
            let base = draft.source.name();
            let own = choice.for_benchmark(&base);
            let named = !own.is_empty() || draft.judges.is_some() || global_judges.is_some();
            let judges = if !own.is_empty() {
                own
            } else {
                match draft.judges.or_else(|| global_judges.clone()) {
                    Some(list) => list,
                    None => default_judges(&draft.source, judge_model.is_some(), &mut notes)?,
                }
            };
            let judges = choice.finish(
                &base,
                draft.source.default_judges(),
                judges,
                named,
                &mut notes,
            )?;
            let responder_model = match draft.source.responder() {
                Some(role) => Some(judge_model.clone().with_context(|| {
                    format!(
                        "benchmark '{}' is a conversation whose other party ({role}) is played by the judge model: give --judge-model MODEL_REF",
                        draft.source.name()
                    )
                })?),
                None => None,
            };
            plans.push(BenchmarkPlan {
                selection: Selection {
                    limit: self.limit.or(draft.limit),
                    sample_seed: self.sample_seed.or(draft.sample_seed),
                },
                source: draft.source,
                judges,
                responder_model,
            });
        }

        let attacks = self.attacks(suite.attacks, suite.attacker_model, suite.attack_budget)?;
        let attacks = attacks
            .into_iter()
            .map(|draft| {
                let setting = AttackSetting::new(
                    draft.name,
                    draft.attacker_model,
                    draft.judge_model.or_else(|| judge_model.clone()),
                    draft
                        .budget
                        .unwrap_or(redtrace_attacks::driven::DEFAULT_BUDGET),
                );
                setting
                    .check(&mut notes)
                    .with_context(|| format!("attack '{}'", setting.name))?;
                Ok(setting)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut backoff = Backoff::default();
        if let Some(seconds) = self.max_retry_wait {
            if !(seconds.is_finite() && seconds > 0.0) {
                bail!("--max-retry-wait must be a positive number of seconds, got {seconds}");
            }
            backoff.max_retry_after = std::time::Duration::from_secs_f64(seconds);
        }
        let samples_per_prompt = self.samples.or(suite.samples).unwrap_or(1);
        if samples_per_prompt == 0 {
            bail!("--samples must be at least 1");
        }
        let prices = price_table(self.prices.as_deref().or(suite.prices.as_deref()))?;
        for config in &mut models {
            config.price = config.price.or_else(|| price_of(config, &prices));
            if self.batch && config.batch.is_none() {
                config.batch = Some(Default::default());
            }
            if config.batch.is_some() {
                if !matches!(
                    config.source,
                    redtrace_core::model::ModelSource::OpenAi { .. }
                        | redtrace_core::model::ModelSource::Anthropic { .. }
                        | redtrace_core::model::ModelSource::Gemini { .. }
                ) {
                    bail!(
                        "model '{}': batch requests go through OpenAI Batch (OpenAI-compatible chat completions), Anthropic Message Batches or Gemini's batch mode; this model's API has no batch API redtrace speaks",
                        config.name
                    );
                }
                // A batch takes every request of the run at once; a rate limit is the batch
                // API's business.
                config.max_concurrency = config.max_concurrency.max(BATCH_CONCURRENCY);
                config.requests_per_minute = None;
            }
        }
        let max_cost = self.max_cost.or(suite.max_cost);
        if let Some(limit) = max_cost {
            if !(limit.is_finite() && limit > 0.0) {
                bail!("--max-cost {limit}: give a positive amount of USD");
            }
            if let Some(config) = models.iter().find(|c| c.price.is_none()) {
                bail!(
                    "--max-cost needs a price for every target: model '{}' ({}) has none; add `[{}] input = …, output = …` to a --prices file, or `price = {{ input = …, output = … }}` to its suite table",
                    config.name,
                    config.model,
                    config.model
                );
            }
        }
        let db = self
            .db
            .clone()
            .or_else(|| std::env::var_os(DB_ENV).map(PathBuf::from))
            .or(suite.db)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DB));
        let shared = redtrace_store::postgres_url(&db).is_some();
        if shared && self.shard.is_some() {
            bail!("--shard splits a run across SQLite stores merged after; on a PostgreSQL store the workers share the run's queue: drop --shard and start the same command on each machine (or `redtrace worker`)");
        }
        if !shared && (self.enqueue_only || self.lease_secs.is_some()) {
            bail!("--enqueue-only and --lease-secs are for a run's workers on a PostgreSQL store (--db postgres://...); {} is a SQLite file", db.display());
        }
        Ok(RunSettings {
            prices,
            max_cost,
            shard: self.shard,
            enqueue_only: self.enqueue_only,
            recipe: None,
            join: None,
            lease: std::time::Duration::from_secs_f64(self.lease_secs.unwrap_or(30.0).max(0.3)),
            db,
            // Where `redtrace data pull` puts data when nothing else is named.
            data_dir: self
                .data_dir
                .clone()
                .or_else(|| std::env::var_os(DATA_DIR_ENV).map(PathBuf::from))
                .or(suite.data_dir)
                .or_else(|| {
                    redtrace_datasets::catalog::default_data_dir().filter(|dir| dir.is_dir())
                }),
            models,
            benchmarks: plans,
            notes,
            attacks,
            samples_per_prompt,
            use_cache: !self.no_cache,
            new_run: self.new_run,
            backoff,
            helper_key_env: self.judging.judge_api_key_env.clone(),
            helper_limits: HelperLimits {
                timeout_secs: self.timeout,
                max_retries: self.retries,
                max_concurrency: self.concurrency,
                requests_per_minute: self.rpm,
            },
        })
    }

    /// The suite's models with a sweep and the per-model overrides applied, checked.
    fn apply_to_models(
        &self,
        mut models: Vec<ModelConfig>,
        from_file: bool,
    ) -> Result<Vec<ModelConfig>> {
        if let Some(text) = &self.sweep {
            let Some((key, values)) = text.split_once('=') else {
                bail!("--sweep {text}: give KEY=V1,V2,..., e.g. max_tokens=1024,4096");
            };
            let values: Vec<serde_json::Value> = values
                .split(',')
                .map(|v| {
                    let v = v.trim();
                    serde_json::from_str(v)
                        .unwrap_or_else(|_| serde_json::Value::String(v.to_owned()))
                })
                .collect();
            let mut swept = Vec::new();
            for model in &models {
                swept.extend(sweep_model(model, key.trim(), &values).context("--sweep")?);
            }
            models = swept;
        }
        for model in &mut models {
            if let Some(value) = self.concurrency {
                model.max_concurrency = value;
            }
            if let Some(value) = self.rpm {
                model.requests_per_minute = Some(value);
            }
            if let Some(value) = self.timeout {
                model.timeout_secs = value;
            }
            if let Some(value) = self.retries {
                model.max_retries = value;
            }
            if self.stream {
                model.stream = true;
            }
            if let Some(value) = self.temperature {
                model.params.temperature = Some(value);
            }
            if let Some(value) = self.max_tokens {
                model.params.max_tokens = Some(value);
            }
            if let Some(value) = &self.reasoning_effort {
                model.params.reasoning_effort = Some(value.clone());
            }
            if let Some(value) = self.thinking_budget {
                model.params.thinking_budget = Some(value);
            }
            if self.replay_traces {
                model.replay_traces = true;
            }
            if let Some(value) = &self.think_prefill {
                model.think_prefill = Some(value.clone());
            }
            if self.template_opens_think {
                model.template_opens_think = true;
            }
            if let Some(value) = self.threads {
                model.threads = Some(value);
            }
            if from_file && self.api_key_env.is_some() {
                model.api_key_env = self.api_key_env.clone();
            }
            model.validate()?;
        }
        let mut names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            bail!(
                "two models are named '{}': give each [[models]] table its own name",
                pair[0]
            );
        }
        Ok(models)
    }

    /// The attacks: the overrides' names, else the suite's, else the plain benchmark; each
    /// with the attacker model and budget it names, else the overrides', else the suite's.
    fn attacks(
        &self,
        suite_attacks: Vec<AttackDraft>,
        suite_attacker: Option<ModelRef>,
        suite_budget: Option<u32>,
    ) -> Result<Vec<AttackDraft>> {
        let attacker_model =
            model_ref(self.attacker_model.as_deref(), "--attacker-model")?.or(suite_attacker);
        let budget = self.attack_budget.or(suite_budget);
        let drafts = if !self.attacks.is_empty() {
            self.attacks
                .iter()
                .map(|name| AttackDraft {
                    name: name.clone(),
                    attacker_model: None,
                    judge_model: None,
                    budget: None,
                })
                .collect()
        } else if !suite_attacks.is_empty() {
            suite_attacks
        } else {
            vec![AttackDraft {
                name: redtrace_attacks::NO_ATTACK.to_owned(),
                attacker_model: None,
                judge_model: None,
                budget: None,
            }]
        };
        Ok(drafts
            .into_iter()
            .map(|draft| AttackDraft {
                attacker_model: draft.attacker_model.or_else(|| attacker_model.clone()),
                budget: draft.budget.or(budget),
                ..draft
            })
            .collect())
    }
}

/// How judges are chosen from the command line, for a run (`redtrace run`) and for the
/// re-judging of a stored one (`redtrace judge`): `--judge NAME[=MODEL_REF]` for every
/// benchmark or `--judge BENCH=NAME` for one, completed with the judge model, templates,
/// channels, chunking and the reward endpoint, and checked against the benchmark they judge.
pub(crate) struct JudgeChoice {
    /// Judges named for every benchmark.
    pub everywhere: Vec<JudgeSetting>,
    /// Judges named for one benchmark (`BENCH=NAME`).
    pub per_benchmark: Vec<(String, JudgeSetting)>,
    /// The model LLM judges call.
    pub judge_model: Option<ModelRef>,
    templates: Vec<(String, PathBuf)>,
    chunk: Option<Chunking>,
    reward: Option<RewardSetting>,
    channels: Option<Vec<redtrace_core::Channel>>,
    threshold: Option<f64>,
}

impl JudgeChoice {
    /// The judge flags of `overrides`; `judge_model` is the suite's, which the flag overrides.
    pub fn parse(overrides: &JudgeOverrides, judge_model: Option<ModelRef>) -> Result<Self> {
        let known_judge = |name: &str| {
            redtrace_judges::registry()
                .iter()
                .any(|(known, _, _)| *known == name)
        };
        let mut everywhere = Vec::new();
        let mut per_benchmark = Vec::new();
        for text in &overrides.judges {
            match text.split_once('=') {
                Some((bench, judge)) if known_judge(judge.trim()) => per_benchmark
                    .push((bench.trim().to_owned(), JudgeSetting::parse(judge.trim())?)),
                _ => everywhere.push(JudgeSetting::parse(text)?),
            }
        }
        if overrides.chunk_chars.is_some_and(|n| n < 100) {
            bail!("--chunk-chars must be at least 100");
        }
        if let Some(p) = overrides.guard_threshold {
            if !(0.0..=1.0).contains(&p) {
                bail!("--guard-threshold {p} is not a probability (0 to 1)");
            }
        }
        Ok(Self {
            threshold: overrides.guard_threshold,
            everywhere,
            per_benchmark,
            judge_model: model_ref(overrides.judge_model.as_deref(), "--judge-model")?
                .or(judge_model),
            templates: parse_templates(&overrides.judge_templates)?,
            chunk: overrides.chunk_chars.map(|chars| Chunking {
                chars,
                combine: overrides.chunk_combine.unwrap_or(Combine::AnyUnsafe),
            }),
            reward: overrides
                .reward
                .as_deref()
                .map(RewardSetting::parse)
                .transpose()
                .context("--reward")?,
            channels: (!overrides.channels.is_empty())
                .then(|| parse_channels(&overrides.channels))
                .transpose()
                .context("--channels")?,
        })
    }

    /// Refuses `BENCH=NAME` for a benchmark not among `names`.
    pub fn check_benchmarks(&self, names: &[String]) -> Result<()> {
        for (bench, judge) in &self.per_benchmark {
            if !names.contains(bench) {
                bail!(
                    "--judge {bench}={}: the run has no benchmark {bench} (it has {})",
                    judge.name,
                    names.join(", ")
                );
            }
        }
        Ok(())
    }

    /// The judges named for benchmark `base` alone.
    pub fn for_benchmark(&self, base: &str) -> Vec<JudgeSetting> {
        self.per_benchmark
            .iter()
            .filter(|(bench, _)| bench == base)
            .map(|(_, judge)| judge.clone())
            .collect()
    }

    /// `judges` for benchmark `base` (whose own judges are `defaults`), checked and completed:
    /// a judge made for other benchmarks' rows is refused; with `--channels`, a default judge
    /// that does not judge them is left out (a note) and a `named` one is an error; LLM judges
    /// get the judge model and their templates; chunking and the reward endpoint apply.
    pub fn finish(
        &self,
        base: &str,
        defaults: &[&str],
        mut judges: Vec<JudgeSetting>,
        named: bool,
        notes: &mut Vec<String>,
    ) -> Result<Vec<JudgeSetting>> {
        // A judge made for some benchmarks' rows is refused elsewhere, before anything is
        // sent, with the judges that fit.
        for judge in &judges {
            if let Some(fits) = redtrace_judges::applies_to(&judge.name) {
                if !fits.contains(&base) {
                    bail!(
                        "judge '{}' cannot judge {base}: it is made for {} (it reads their rows' own fields); {base}'s own judges are {}, and harm, refusal-llm or refusal-rule judge any text (per benchmark: --judge {base}=NAME)",
                        judge.name,
                        fits.join(", "),
                        defaults.join(", ")
                    );
                }
            }
        }
        if let Some(channels) = &self.channels {
            // A default judge that is not valid on the channels asked for is left out,
            // saying so; a judge named on the command line or in the suite is an error.
            judges.retain(|judge| {
                let valid = redtrace_judges::valid_channels(&judge.name);
                let keep = named || channels.iter().any(|c| valid.contains(c));
                if !keep {
                    notes.push(format!(
                        "{}: its judge {} does not judge {}; left out",
                        base,
                        judge.name,
                        channels
                            .iter()
                            .map(|c| c.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                keep
            });
        }
        for judge in &mut judges {
            judge.complete(self.judge_model.as_ref(), &self.templates)?;
            if let Some(channels) = &self.channels {
                judge.channels = channels.clone();
            }
            let valid = redtrace_judges::valid_channels(&judge.name);
            if judge.channels != redtrace_core::Channel::ALL {
                if let Some(channel) = judge.channels.iter().find(|c| !valid.contains(c)) {
                    if !named || judge.channels.iter().any(|c| valid.contains(c)) {
                        // Asked for both through --channels with one valid: keep that one.
                        judge.channels.retain(|c| valid.contains(c));
                    } else {
                        bail!(
                            "judge '{}' does not judge the {} channel{}",
                            judge.name,
                            channel.as_str(),
                            redtrace_judges::why_not_on(&judge.name, *channel)
                                .map(|why| format!(": {why}"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            if self.chunk.is_some() {
                judge.chunk = self.chunk;
            }
            if judge.name == "shieldgemma" {
                judge.threshold = self.threshold;
            }
            if judge.name == redtrace_judges::RewardJudge::NAME {
                if self.reward.is_some() {
                    judge.reward = self.reward.clone();
                }
                if judge.reward.is_none() {
                    return Err(redtrace_judges::JudgeError::NeedsEndpoint.into());
                }
            }
        }
        Ok(judges)
    }
}

/// A benchmark's own judges, those that call a model only when there is a judge model; the
/// rule judge when none is left. Judges left out become a note.
fn default_judges(
    source: &BenchSource,
    have_judge_model: bool,
    notes: &mut Vec<String>,
) -> Result<Vec<JudgeSetting>> {
    let mut defaults = Vec::new();
    let mut skipped = Vec::new();
    for name in source.default_judges() {
        let setting = JudgeSetting::parse(name)?;
        if setting.calls_model() && !have_judge_model {
            skipped.push(*name);
        } else {
            defaults.push(setting);
        }
    }
    if !skipped.is_empty() {
        let plural = skipped.len() > 1;
        notes.push(format!(
            "{}: its judge{} {} need{} a judge model (--judge-model MODEL_REF); judging with {} only",
            source.name(),
            if plural { "s" } else { "" },
            skipped.join(", "),
            if plural { "" } else { "s" },
            if defaults.is_empty() {
                FALLBACK_JUDGE.to_owned()
            } else {
                defaults
                    .iter()
                    .map(|j| j.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ));
    }
    if defaults.is_empty() {
        defaults.push(JudgeSetting::parse(FALLBACK_JUDGE)?);
    }
    Ok(defaults)
}

/// The built-in price table, with the file `path` laid over it.
pub fn price_table(path: Option<&Path>) -> Result<redtrace_core::price::PriceTable> {
    let builtin = redtrace_core::price::PriceTable::builtin();
    Ok(match path {
        Some(path) => builtin.overlaid(
            redtrace_core::price::PriceTable::from_file(path).map_err(anyhow::Error::msg)?,
        ),
        None => builtin,
    })
}

/// The price of a model: nothing for one that runs in this process; the table's for its id
/// otherwise (`None`: unknown).
pub fn price_of(
    config: &ModelConfig,
    table: &redtrace_core::price::PriceTable,
) -> Option<redtrace_core::price::Price> {
    match config.source {
        redtrace_core::model::ModelSource::Gguf { .. }
        | redtrace_core::model::ModelSource::Hf { .. } => Some(redtrace_core::price::Price {
            input: 0.0,
            output: 0.0,
            cached_input: None,
            batch_discount: None,
        }),
        _ => table.lookup(&config.model),
    }
}

/// Requests a batched model takes at once: every unit of most runs, so that they go in few
/// batches.
pub const BATCH_CONCURRENCY: usize = 100_000;
