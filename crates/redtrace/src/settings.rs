//! Settings: the suite file's format, and the one place where command-line flags, environment
//! and suite file are resolved into a validated [`RunSettings`] (precedence: command line, then
//! environment, then file, then defaults).

use anyhow::{bail, Context, Result};
use redtrace_datasets::{BenchSource, FieldMap, Selection, DATA_DIR_ENV};
use redtrace_providers::{ModelConfig, SamplingParams};
use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::cli::RunArgs;

/// The judge a benchmark gets when its own judges need a model and none is given.
pub const FALLBACK_JUDGE: &str = "refusal-rule";

/// A suite file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteFile {
    /// The store (relative to the suite file).
    pub db: Option<PathBuf>,
    /// Where data sets live (relative to the suite file).
    pub data_dir: Option<PathBuf>,
    /// Judges for every benchmark (names, `NAME=MODEL_REF`, or `[[judges]]` tables).
    #[serde(default)]
    pub judges: Vec<JudgeEntry>,
    /// The model LLM judges call unless a judge names its own.
    pub judge_model: Option<String>,
    /// Completions per prompt.
    pub samples: Option<u32>,
    /// Attacks applied to every benchmark (`none` keeps the plain benchmark): names, or
    /// `[[attacks]]` tables.
    #[serde(default)]
    pub attacks: Vec<AttackEntry>,
    /// The model that writes model-driven attacks unless an attack names its own.
    pub attacker_model: Option<String>,
    /// Target queries per sample at most for model-driven attacks.
    pub attack_budget: Option<u32>,
    /// Models.
    #[serde(default)]
    pub models: Vec<ModelTable>,
    /// Benchmarks.
    #[serde(default)]
    pub benchmarks: Vec<BenchmarkTable>,
}

/// An attack in a suite file: a name (`fiction`, `pair:5`) or a table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AttackEntry {
    /// `"fiction"`, `"templates:PATH:3"`, `"pair:5"`.
    Name(String),
    /// `[[attacks]]` with `name`, and for model-driven attacks optionally their models and
    /// budget.
    Table(AttackTable),
}

/// An `[[attacks]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackTable {
    /// The attack (`redtrace attacks` lists them).
    pub name: String,
    /// The attacker model; `attacker_model` when absent.
    pub attacker_model: Option<String>,
    /// The model that rates replies; `judge_model` when absent.
    pub judge_model: Option<String>,
    /// Target queries per sample at most; `attack_budget` when absent.
    pub budget: Option<u32>,
}

/// An attack, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackSetting {
    /// Its name (`none` for the plain benchmark).
    pub name: String,
    /// For a model-driven attack: the attacker model's reference.
    pub attacker_model: Option<String>,
    /// For a model-driven attack that rates replies: the judge model's reference.
    pub judge_model: Option<String>,
    /// For a model-driven attack: target queries per sample at most.
    pub budget: u32,
}

impl AttackSetting {
    /// The setting of attack `name`, keeping only the models it uses (an attacker for a
    /// model-driven attack, a judge for one that rates replies), so that a model it does not
    /// use is no part of the run's identity.
    pub fn new(
        name: String,
        attacker_model: Option<String>,
        judge_model: Option<String>,
        budget: u32,
    ) -> Self {
        let driven = redtrace_attacks::driven::is_driven(&name);
        let rates = redtrace_attacks::driven::needs_judge(&name);
        Self {
            attacker_model: attacker_model.filter(|_| driven),
            judge_model: judge_model.filter(|_| rates),
            name,
            budget,
        }
    }

    /// Whether it talks to models.
    pub fn is_driven(&self) -> bool {
        redtrace_attacks::driven::is_driven(&self.name)
    }

    /// What identifies it in a run: its name, and for a driven attack its models and budget.
    pub fn identity(&self) -> Option<String> {
        self.is_driven().then(|| {
            format!(
                "{}|attacker={}|judge={}|budget={}",
                self.name,
                self.attacker_model.as_deref().unwrap_or("-"),
                self.judge_model.as_deref().unwrap_or("-"),
                self.budget
            )
        })
    }
}

/// A judge in a suite file: a name (`harm`, `harm=MODEL_REF`) or a table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum JudgeEntry {
    /// `"harm"` or `"harm=MODEL_REF"`.
    Name(String),
    /// `[[judges]]` with `name`, and optionally `model` and `template`.
    Table(JudgeTable),
}

/// A `[[judges]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeTable {
    /// The registry name.
    pub name: String,
    /// The judge model (any model reference); `judge_model` when absent.
    pub model: Option<String>,
    /// A rubric template file replacing the built-in one (relative to the suite file).
    pub template: Option<PathBuf>,
    /// The channels it judges: `["answer"]`, `["reasoning"]` or both (the default).
    pub channels: Option<Vec<String>>,
    /// For the reward judge: its endpoint, `URL[,format=…][,model=…][,path=…][,threshold=…]`.
    pub reward: Option<String>,
}

/// A judge, resolved: which judge, which model it calls, which template it fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeSetting {
    /// The registry name.
    pub name: String,
    /// The judge model's reference (judges that call a model).
    pub model: Option<String>,
    /// A rubric template file.
    pub template: Option<PathBuf>,
    /// The channels it judges.
    pub channels: Vec<redtrace_core::Channel>,
    /// Texts longer than this many characters are judged in windows, combined by the rule.
    pub chunk: Option<(usize, String)>,
    /// The reward judge's endpoint spec.
    pub reward: Option<String>,
}

impl JudgeSetting {
    /// How the run's spec records the judge: `NAME`, `NAME=MODEL_REF`, plus the template file
    /// and its SHA-256 (so an edited template makes a new run).
    pub fn identity(&self) -> Result<String> {
        let mut text = self.name.clone();
        if let Some(model) = &self.model {
            text = format!("{text}={model}");
        }
        if self.channels != redtrace_core::Channel::ALL {
            let names: Vec<&str> = self.channels.iter().map(|c| c.as_str()).collect();
            text = format!("{text} channels={}", names.join(","));
        }
        if let Some((chars, rule)) = &self.chunk {
            text = format!("{text} chunks={chars}:{rule}");
        }
        if let Some(reward) = &self.reward {
            text = format!("{text} reward={reward}");
        }
        if let Some(template) = &self.template {
            let bytes = std::fs::read(template).with_context(|| {
                format!("judge '{}': template {}", self.name, template.display())
            })?;
            text = format!(
                "{text} template={}#{}",
                template.display(),
                &redtrace_core::sha256_hex(&bytes)[..16]
            );
        }
        Ok(text)
    }
}

/// A `[[models]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelTable {
    /// Name in reports (defaults to `model`).
    pub name: Option<String>,
    /// API base URL of an OpenAI-compatible endpoint (or give `gguf` or `hf`).
    pub base_url: Option<String>,
    /// A local GGUF file to run in-process.
    pub gguf: Option<PathBuf>,
    /// A GGUF file on the Hugging Face hub, `OWNER/REPO/FILE.gguf`.
    pub hf: Option<String>,
    /// Model id sent to the API (required with `base_url`).
    pub model: Option<String>,
    /// Environment variable holding the key.
    pub api_key_env: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus mass.
    pub top_p: Option<f64>,
    /// Token budget.
    pub max_tokens: Option<u64>,
    /// Seed.
    pub seed: Option<u64>,
    /// Stop sequences.
    #[serde(default)]
    pub stop: Vec<String>,
    /// Extra request fields, passed verbatim.
    #[serde(default)]
    pub extra: toml::Table,
    /// Stream responses.
    #[serde(default)]
    pub stream: bool,
    /// The chat template opens `<think>` in the prompt.
    #[serde(default)]
    pub template_opens_think: bool,
    /// Text the assistant turn starts with.
    pub think_prefill: Option<String>,
    /// Threads for local inference.
    pub threads: Option<usize>,
    /// Requests in flight against this endpoint.
    pub max_concurrency: Option<usize>,
    /// Requests per minute.
    pub requests_per_minute: Option<u32>,
    /// Per-request timeout, seconds.
    pub timeout_secs: Option<f64>,
    /// Retries.
    pub max_retries: Option<u32>,
    /// Run this model at several values of one setting: `{ max_tokens = [1024, 4096] }` or
    /// `{ reasoning_effort = ["low", "high"] }`; each value is a model of its own, named
    /// `NAME@KEY=VALUE`.
    pub sweep: Option<toml::Table>,
}

/// A `[[benchmarks]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkTable {
    /// A registry name or `file:PATH` (relative to the suite file).
    pub name: String,
    /// Rows to use at most.
    pub limit: Option<usize>,
    /// Seed for picking `limit` rows at random.
    pub sample_seed: Option<u64>,
    /// For files: the prompt field.
    pub prompt_field: Option<String>,
    /// For files: the id field.
    pub id_field: Option<String>,
    /// For files: category fields.
    #[serde(default)]
    pub category_fields: Vec<String>,
    /// For files: a safe/unsafe label field.
    pub label_field: Option<String>,
    /// For files: a system-prompt field.
    pub system_field: Option<String>,
    /// Judges for this benchmark only (names or `NAME=MODEL_REF`), instead of the suite's.
    pub judges: Option<Vec<String>>,
}

/// One benchmark to run.
#[derive(Debug, Clone)]
pub struct BenchmarkPlan {
    /// Where its rows come from.
    pub source: BenchSource,
    /// Which rows.
    pub selection: Selection,
    /// Its judges.
    pub judges: Vec<JudgeSetting>,
    /// For a multi-turn benchmark: the model that plays the other party (the judge model).
    pub responder_model: Option<String>,
}

/// Everything `redtrace run` needs, validated.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The store.
    pub db: PathBuf,
    /// Where data sets live.
    pub data_dir: Option<PathBuf>,
    /// Targets.
    pub models: Vec<ModelConfig>,
    /// Benchmarks, each with its judges.
    pub benchmarks: Vec<BenchmarkPlan>,
    /// What the user should know about the judges and attacks chosen (printed first).
    pub notes: Vec<String>,
    /// Completions per prompt.
    pub samples_per_prompt: u32,
    /// Attacks, each applied to every benchmark; `none` is the benchmark as it is.
    pub attacks: Vec<AttackSetting>,
    /// Use the completion cache.
    pub use_cache: bool,
    /// Always start a new run.
    pub new_run: bool,
    /// No progress bar, no report.
    pub quiet: bool,
}

/// Checks an attack's name, parameters and models; a template collection's counts become a
/// note.
fn check_attack(setting: &AttackSetting, notes: &mut Vec<String>) -> Result<()> {
    let name = setting.name.as_str();
    if let Some(spec) = name.strip_prefix("templates:") {
        let (loaded, refused) =
            redtrace_attacks::templates::TemplateAttack::open(spec).map_err(anyhow::Error::msg)?;
        notes.push(format!(
            "{name}: {} templates loaded{}",
            loaded.len(),
            if refused > 0 {
                format!(", {refused} refused for having no slot for the request")
            } else {
                String::new()
            }
        ));
    } else if setting.is_driven() {
        redtrace_attacks::driven::check(name).map_err(anyhow::Error::msg)?;
        if setting.budget == 0 {
            bail!("the attack budget must be at least 1 query");
        }
        let attacker = setting.attacker_model.as_deref().with_context(|| {
            format!("'{name}' is written by an attacker model: give --attacker-model MODEL_REF (or attacker_model in the suite file)")
        })?;
        ModelConfig::parse_ref(attacker).context("the attacker model")?;
        if redtrace_attacks::driven::needs_judge(name) {
            let judge = setting.judge_model.as_deref().with_context(|| {
                format!("'{name}' rates the target's replies with a judge model: give --judge-model MODEL_REF")
            })?;
            ModelConfig::parse_ref(judge).context("the judge model")?;
        }
    } else if name != crate::commands::NO_ATTACK {
        redtrace_attacks::by_name(name).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Reads and parses a suite file; errors name the file, line and key.
pub fn read_suite(path: &Path) -> Result<SuiteFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read suite file {}", path.display()))?;
    toml::from_str(&text).map_err(|error| anyhow::anyhow!("suite file {}: {error}", path.display()))
}

fn json_from_toml(table: toml::Table) -> Result<serde_json::Map<String, serde_json::Value>> {
    let value =
        serde_json::to_value(table).context("the extra table cannot be expressed as JSON")?;
    Ok(value.as_object().cloned().unwrap_or_default())
}

impl ModelTable {
    fn into_config(self, base: &Path) -> Result<ModelConfig> {
        let mut config = match (self.base_url, self.gguf, self.hf) {
            (Some(base_url), None, None) => {
                let model = self
                    .model
                    .clone()
                    .context("a model with base_url needs `model`, the id sent to the API")?;
                ModelConfig::new(base_url, model)
            }
            (None, Some(path), None) => {
                ModelConfig::parse_ref(&format!("gguf:{}", relative_to(base, path).display()))?
            }
            (None, None, Some(hf)) => ModelConfig::parse_ref(&format!("hf:{hf}"))?,
            _ => bail!("give exactly one of base_url, gguf or hf"),
        };
        if let Some(model) = self.model.filter(|_| config.base_url().is_none()) {
            config.model = model.clone();
            config.name = model;
        }
        if let Some(name) = self.name {
            config.name = name;
        }
        config.api_key_env = self.api_key_env;
        config.params = SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            max_tokens: self.max_tokens,
            seed: self.seed,
            stop: self.stop,
        };
        config.extra = json_from_toml(self.extra)?;
        config.stream = self.stream;
        config.template_opens_think = self.template_opens_think;
        config.think_prefill = self.think_prefill;
        config.threads = self.threads;
        if let Some(value) = self.max_concurrency {
            config.max_concurrency = value;
        }
        config.requests_per_minute = self.requests_per_minute;
        if let Some(value) = self.timeout_secs {
            config.timeout_secs = value;
        }
        if let Some(value) = self.max_retries {
            config.max_retries = value;
        }
        Ok(config)
    }
}

fn relative_to(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// Parses `NAME` or `NAME=MODEL_REF`, checking the name and the model reference.
pub fn judge_from_text(text: &str) -> Result<JudgeSetting> {
    let spec = redtrace_judges::JudgeSpec::parse(text).map_err(anyhow::Error::msg)?;
    if let Some(model) = &spec.model {
        ModelConfig::parse_ref(model).with_context(|| format!("judge '{text}'"))?;
    }
    Ok(JudgeSetting {
        name: spec.name,
        model: spec.model,
        template: None,
        channels: redtrace_core::Channel::ALL.to_vec(),
        chunk: None,
        reward: None,
    })
}

/// Parses channel names: `answer`, `reasoning` (or `trace`), `both`.
pub fn parse_channels(names: &[String]) -> Result<Vec<redtrace_core::Channel>> {
    use redtrace_core::Channel;
    let mut channels = Vec::new();
    for name in names {
        let add: &[Channel] = match name.trim() {
            "answer" => &[Channel::Answer],
            "reasoning" | "trace" => &[Channel::Reasoning],
            "both" => &Channel::ALL,
            other => bail!("unknown channel '{other}': use answer, reasoning or both"),
        };
        for channel in add {
            if !channels.contains(channel) {
                channels.push(*channel);
            }
        }
    }
    if channels.is_empty() {
        bail!("no channel: use answer, reasoning or both");
    }
    // Always in the canonical order, so that identities compare.
    channels.sort_by_key(|c| Channel::ALL.iter().position(|a| a == c));
    Ok(channels)
}

/// The models of a sweep: `config` at each value of `key` (`max_tokens`, `temperature`,
/// `top_p`, or any field of the request body, e.g. `reasoning_effort`), named `NAME@KEY=VALUE`.
pub fn sweep_model(
    config: &ModelConfig,
    key: &str,
    values: &[serde_json::Value],
) -> Result<Vec<ModelConfig>> {
    if values.is_empty() {
        bail!("sweep.{key}: no values");
    }
    let mut models = Vec::new();
    for value in values {
        let mut model = config.clone();
        let shown = match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        match key {
            "max_tokens" => {
                model.params.max_tokens =
                    Some(value.as_u64().with_context(|| {
                        format!("sweep.max_tokens: {shown} is not a whole number")
                    })?)
            }
            "temperature" => {
                model.params.temperature = Some(
                    value
                        .as_f64()
                        .with_context(|| format!("sweep.temperature: {shown} is not a number"))?,
                )
            }
            "top_p" => {
                model.params.top_p = Some(
                    value
                        .as_f64()
                        .with_context(|| format!("sweep.top_p: {shown} is not a number"))?,
                )
            }
            other => {
                model.extra.insert(other.to_owned(), value.clone());
            }
        }
        model.name = format!("{}@{key}={shown}", config.name);
        models.push(model);
    }
    Ok(models)
}

/// Parses `--judge-template NAME=PATH` values.
pub fn parse_templates(texts: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let mut templates = Vec::new();
    for text in texts {
        let Some((name, path)) = text.split_once('=') else {
            bail!("--judge-template {text}: give NAME=PATH, e.g. harm=my-rubric.j2");
        };
        redtrace_judges::JudgeSpec::parse(name).map_err(anyhow::Error::msg)?;
        templates.push((name.trim().to_owned(), PathBuf::from(path.trim())));
    }
    Ok(templates)
}

/// Gives a judge that calls a model the judge model when it names none, and its template
/// from `--judge-template`; checks that both exist.
pub fn complete_judge(
    judge: &mut JudgeSetting,
    judge_model: Option<&str>,
    templates: &[(String, PathBuf)],
) -> Result<()> {
    if setting_calls_model(judge) && judge.model.is_none() {
        judge.model = judge_model.map(str::to_owned);
        if judge.model.is_none() {
            bail!(
                "judge '{}' calls a model: give --judge-model MODEL_REF (or {}=MODEL_REF)",
                judge.name,
                judge.name
            );
        }
    }
    if let Some((_, path)) = templates.iter().find(|(name, _)| *name == judge.name) {
        judge.template = Some(path.clone());
    }
    if let Some(template) = &judge.template {
        if !template.is_file() {
            bail!(
                "judge '{}': template {} does not exist",
                judge.name,
                template.display()
            );
        }
    }
    Ok(())
}

fn setting_calls_model(setting: &JudgeSetting) -> bool {
    redtrace_judges::JudgeSpec {
        name: setting.name.clone(),
        model: None,
    }
    .calls_model()
}

/// Resolves `redtrace run` arguments (and the suite file they name) into settings.
pub fn resolve_run(args: &RunArgs) -> Result<RunSettings> {
    let cli_fields = FieldMap {
        prompt: args.prompt_field.clone(),
        id: args.id_field.clone(),
        category: args.category_field.clone(),
        label: args.label_field.clone(),
        system: args.system_field.clone(),
        fixed_label: None,
        skip_without_prompt: false,
        prompt_template: None,
    };
    let cli_selection = Selection {
        limit: args.limit,
        sample_seed: args.sample_seed,
    };
    let env_data_dir = std::env::var_os(DATA_DIR_ENV).map(PathBuf::from);

    let mut file_samples = None;
    let mut file_attacks: Vec<AttackEntry> = Vec::new();
    let mut file_attacker_model = None;
    let mut file_attack_budget = None;
    let (mut models, benchmarks, file_judges, file_judge_model, file_db, file_data_dir) =
        match &args.suite {
            Some(path) => {
                if !args.models.is_empty() || !args.benches.is_empty() {
                    bail!("give models and benchmarks either in the suite file {} or with --model/--bench, not both", path.display());
                }
                let suite = read_suite(path)?;
                let base = path.parent().unwrap_or(Path::new(".")).to_owned();
                if suite.models.is_empty() {
                    bail!("suite file {}: no [[models]] table", path.display());
                }
                if suite.benchmarks.is_empty() {
                    bail!("suite file {}: no [[benchmarks]] table", path.display());
                }
                let mut models = Vec::new();
                for (i, mut table) in suite.models.into_iter().enumerate() {
                    let context = || format!("suite file {}: models[{i}]", path.display());
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
                for (i, table) in suite.benchmarks.into_iter().enumerate() {
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
                    let source = BenchSource::parse(&name, fields).with_context(|| {
                        format!("suite file {}: benchmarks[{i}]", path.display())
                    })?;
                    let selection = Selection {
                        limit: args.limit.or(table.limit),
                        sample_seed: args.sample_seed.or(table.sample_seed),
                    };
                    let own_judges = table
                        .judges
                        .map(|names| {
                            names
                                .iter()
                                .map(|name| judge_from_text(name))
                                .collect::<Result<Vec<_>>>()
                        })
                        .transpose()
                        .with_context(|| {
                            format!("suite file {}: benchmarks[{i}]", path.display())
                        })?;
                    benchmarks.push((
                        BenchmarkPlan {
                            source,
                            selection,
                            judges: Vec::new(),
                            responder_model: None,
                        },
                        own_judges,
                    ));
                }
                let db = suite.db.map(|db| relative_to(&base, db));
                let data_dir = suite.data_dir.map(|dir| relative_to(&base, dir));
                let judges = suite
                    .judges
                    .into_iter()
                    .enumerate()
                    .map(|(i, entry)| {
                        match entry {
                            JudgeEntry::Name(text) => judge_from_text(&text),
                            JudgeEntry::Table(table) => {
                                let mut setting = judge_from_text(&table.name)?;
                                setting.model = table.model.or(setting.model);
                                setting.template = table.template.map(|t| relative_to(&base, t));
                                if let Some(channels) = &table.channels {
                                    setting.channels = parse_channels(channels)?;
                                }
                                setting.reward = table.reward.clone();
                                Ok(setting)
                            }
                        }
                        .with_context(|| format!("suite file {}: judges[{i}]", path.display()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let judge_model = suite.judge_model;
                file_samples = suite.samples;
                file_attacks = suite.attacks;
                file_attacker_model = suite.attacker_model;
                file_attack_budget = suite.attack_budget;
                (models, benchmarks, judges, judge_model, db, data_dir)
            }
            None => {
                if args.models.is_empty() {
                    bail!("no model: give --model MODEL@BASE_URL (e.g. deepseek-r1@http://127.0.0.1:8000/v1) or a suite file");
                }
                if args.benches.is_empty() {
                    bail!("no benchmark: give --bench NAME (e.g. --bench xstest) or --bench file:PATH");
                }
                let api_key_env = args.api_key_env.clone().or_else(|| {
                    std::env::var_os("OPENAI_API_KEY").map(|_| "OPENAI_API_KEY".to_owned())
                });
                let models = args
                    .models
                    .iter()
                    .map(|reference| {
                        let mut config = ModelConfig::parse_ref(reference)?;
                        config.api_key_env = api_key_env.clone();
                        Ok(config)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let benchmarks = args
                    .benches
                    .iter()
                    .map(|name| {
                        Ok((
                            BenchmarkPlan {
                                source: BenchSource::parse(name, cli_fields.clone())?,
                                selection: cli_selection,
                                judges: Vec::new(),
                                responder_model: None,
                            },
                            None,
                        ))
                    })
                    .collect::<Result<Vec<_>>>()?;
                (models, benchmarks, Vec::new(), None, None, None)
            }
        };

    if let Some(text) = &args.sweep {
        let Some((key, values)) = text.split_once('=') else {
            bail!("--sweep {text}: give KEY=V1,V2,..., e.g. max_tokens=1024,4096");
        };
        let values: Vec<serde_json::Value> = values
            .split(',')
            .map(|v| {
                let v = v.trim();
                serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()))
            })
            .collect();
        let mut swept = Vec::new();
        for model in &models {
            swept.extend(sweep_model(model, key.trim(), &values).context("--sweep")?);
        }
        models = swept;
    }
    // Command-line flags override the file for every model.
    for model in &mut models {
        if let Some(value) = args.concurrency {
            model.max_concurrency = value;
        }
        if let Some(value) = args.rpm {
            model.requests_per_minute = Some(value);
        }
        if let Some(value) = args.timeout {
            model.timeout_secs = value;
        }
        if let Some(value) = args.retries {
            model.max_retries = value;
        }
        if args.stream {
            model.stream = true;
        }
        if let Some(value) = args.temperature {
            model.params.temperature = Some(value);
        }
        if let Some(value) = args.max_tokens {
            model.params.max_tokens = Some(value);
        }
        if let Some(value) = &args.think_prefill {
            model.think_prefill = Some(value.clone());
        }
        if let Some(value) = args.threads {
            model.threads = Some(value);
        }
        if args.suite.is_some() && args.api_key_env.is_some() {
            model.api_key_env = args.api_key_env.clone();
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
    // Judges: a benchmark's own list, else the command line's, else the suite's, else the
    // benchmark's defaults. LLM judges without a model of their own call the judge model.
    let judge_model = args.judge_model.clone().or(file_judge_model);
    if let Some(model) = &judge_model {
        ModelConfig::parse_ref(model).context("--judge-model")?;
    }
    let cli_judges = args
        .judges
        .iter()
        .map(|text| judge_from_text(text))
        .collect::<Result<Vec<_>>>()?;
    let global_judges = if !cli_judges.is_empty() {
        Some(cli_judges)
    } else if !file_judges.is_empty() {
        Some(file_judges)
    } else {
        None
    };
    let templates = parse_templates(&args.judge_templates)?;
    redtrace_judges::Combine::parse(&args.chunk_combine)
        .map_err(anyhow::Error::msg)
        .context("--chunk-combine")?;
    if args.chunk_chars.is_some_and(|n| n < 100) {
        bail!("--chunk-chars must be at least 100");
    }
    let cli_channels = (!args.channels.is_empty())
        .then(|| parse_channels(&args.channels))
        .transpose()
        .context("--channels")?;
    let mut notes = Vec::new();
    let mut benchmarks_out = Vec::new();
    for (mut plan, own) in benchmarks {
        let explicit = own.or_else(|| global_judges.clone());
        let mut judges = match explicit {
            Some(list) => list,
            None => {
                let mut defaults = Vec::new();
                let mut skipped = Vec::new();
                for name in plan.source.default_judges() {
                    let setting = judge_from_text(name)?;
                    if setting_calls_model(&setting) && judge_model.is_none() {
                        skipped.push(*name);
                    } else {
                        defaults.push(setting);
                    }
                }
                if !skipped.is_empty() {
                    notes.push(format!(
                        "{}: its judge{} {} need{} a judge model (--judge-model MODEL_REF); judging with {} only",
                        plan.source.name(),
                        if skipped.len() > 1 { "s" } else { "" },
                        skipped.join(", "),
                        if skipped.len() > 1 { "" } else { "s" },
                        if defaults.is_empty() { FALLBACK_JUDGE.to_owned() } else {
                            defaults.iter().map(|j| j.name.clone()).collect::<Vec<_>>().join(", ")
                        },
                    ));
                }
                if defaults.is_empty() {
                    defaults.push(judge_from_text(FALLBACK_JUDGE)?);
                }
                defaults
            }
        };
        for judge in &mut judges {
            complete_judge(judge, judge_model.as_deref(), &templates)?;
            if let Some(channels) = &cli_channels {
                judge.channels = channels.clone();
            }
            if let Some(chars) = args.chunk_chars {
                judge.chunk = Some((chars, args.chunk_combine.clone()));
            }
            if judge.name == redtrace_judges::RewardJudge::NAME {
                if let Some(spec) = &args.reward {
                    judge.reward = Some(spec.clone());
                }
                let spec = judge.reward.as_deref().context(
                    "judge 'reward' needs its endpoint: --reward URL[,format=score|classify|messages][,model=M][,path=P][,threshold=T]",
                )?;
                redtrace_judges::RewardConfig::parse(spec)
                    .map_err(anyhow::Error::msg)
                    .context("--reward")?;
            }
        }
        plan.judges = judges;
        if let Some(role) = plan.source.responder() {
            plan.responder_model = Some(judge_model.clone().with_context(|| {
                format!(
                    "benchmark '{}' is a conversation whose other party ({role}) is played by the judge model: give --judge-model MODEL_REF",
                    plan.source.name()
                )
            })?);
        }
        benchmarks_out.push(plan);
    }
    let benchmarks = benchmarks_out;
    // --db has a default; the file's db applies only when the flag and REDTRACE_DB are unset.
    let db = if args.db.db == Path::new("redtrace.db") && std::env::var_os("REDTRACE_DB").is_none()
    {
        file_db.unwrap_or_else(|| args.db.db.clone())
    } else {
        args.db.db.clone()
    };
    let attacks = {
        let entries: Vec<AttackEntry> = if !args.attacks.is_empty() {
            args.attacks
                .iter()
                .cloned()
                .map(AttackEntry::Name)
                .collect()
        } else if !file_attacks.is_empty() {
            file_attacks
        } else {
            vec![AttackEntry::Name(crate::commands::NO_ATTACK.to_owned())]
        };
        let attacker_model = args.attacker_model.clone().or(file_attacker_model);
        let budget = args
            .attack_budget
            .or(file_attack_budget)
            .unwrap_or(redtrace_attacks::driven::DEFAULT_BUDGET);
        let mut attacks = Vec::new();
        for entry in entries {
            let setting = match entry {
                AttackEntry::Name(name) => {
                    AttackSetting::new(name, attacker_model.clone(), judge_model.clone(), budget)
                }
                AttackEntry::Table(table) => AttackSetting::new(
                    table.name,
                    table.attacker_model.or_else(|| attacker_model.clone()),
                    table.judge_model.or_else(|| judge_model.clone()),
                    table.budget.unwrap_or(budget),
                ),
            };
            check_attack(&setting, &mut notes)
                .with_context(|| format!("attack '{}'", setting.name))?;
            attacks.push(setting);
        }
        attacks
    };
    Ok(RunSettings {
        db,
        // Where `redtrace data pull` puts data when nothing else is named.
        data_dir: args
            .data_dir
            .clone()
            .or(env_data_dir)
            .or(file_data_dir)
            .or_else(|| redtrace_datasets::catalog::default_data_dir().filter(|dir| dir.is_dir())),
        models,
        benchmarks,
        notes,
        attacks,
        samples_per_prompt: {
            let k = args.samples.or(file_samples).unwrap_or(1);
            if k == 0 {
                bail!("--samples must be at least 1");
            }
            k
        },
        use_cache: !args.no_cache,
        new_run: args.new_run,
        quiet: args.quiet,
    })
}

#[cfg(test)]
mod tests {
    /// The complete suite example in README.md parses, every key of it known.
    #[test]
    fn the_readme_suite_example_parses() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("```toml\ndb = ")
            .expect("README has the suite example")
            + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let suite: super::SuiteFile = toml::from_str(&readme[start..end]).unwrap();
        assert_eq!(suite.models.len(), 5);
        assert_eq!(suite.attacks.len(), 2);
        assert!(suite.attacker_model.is_some() && suite.attack_budget == Some(20));
        assert!(matches!(&suite.attacks[1], super::AttackEntry::Table(t) if t.budget == Some(10)));
    }
}
