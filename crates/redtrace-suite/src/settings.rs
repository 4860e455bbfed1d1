//! Resolved settings: what a run asks for, typed and checked. Model references, reward
//! endpoints, chunking rules and channels are parsed here once and never again; a judge's and
//! an attack's identity (what the run's spec records) is derived from these values.

use anyhow::{bail, Context, Result};
use redtrace_attacks::AttackError;
use redtrace_core::Channel;
use redtrace_datasets::{BenchSource, Selection};
use redtrace_judges::{Combine, JudgeError, RewardConfig};
use redtrace_providers::{ModelConfig, ModelRef};
use std::path::PathBuf;

/// The judge a benchmark gets when its own judges need a model and none is given.
pub const FALLBACK_JUDGE: &str = "refusal-rule";

/// An attack, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackSetting {
    /// Its name (`none` for the plain benchmark).
    pub name: String,
    /// For a model-driven attack: the attacker model.
    pub attacker_model: Option<ModelRef>,
    /// For a model-driven attack that rates replies: the judge model.
    pub judge_model: Option<ModelRef>,
    /// For a model-driven attack: target queries per sample at most.
    pub budget: u32,
}

impl AttackSetting {
    /// The setting of attack `name`, keeping only the models it uses (an attacker for a
    /// model-driven attack, a judge for one that rates replies), so that a model it does not
    /// use is no part of the run's identity.
    pub fn new(
        name: String,
        attacker_model: Option<ModelRef>,
        judge_model: Option<ModelRef>,
        budget: u32,
    ) -> Self {
        let driven = redtrace_attacks::registry::is_driven(&name);
        let rates = redtrace_attacks::registry::needs_judge(&name);
        Self {
            attacker_model: attacker_model.filter(|_| driven),
            judge_model: judge_model.filter(|_| rates),
            name,
            budget,
        }
    }

    /// The plain benchmark, unattacked.
    pub fn none() -> Self {
        Self::new(
            redtrace_attacks::NO_ATTACK.to_owned(),
            None,
            None,
            redtrace_attacks::driven::DEFAULT_BUDGET,
        )
    }

    /// Whether it talks to models.
    pub fn is_driven(&self) -> bool {
        redtrace_attacks::registry::is_driven(&self.name)
    }

    /// What identifies it in a run: its name, and for a driven attack its models and budget.
    pub fn identity(&self) -> Option<String> {
        let reference = |model: &Option<ModelRef>| {
            model
                .as_ref()
                .map_or_else(|| "-".to_owned(), |m| m.as_str().to_owned())
        };
        self.is_driven().then(|| {
            format!(
                "{}|attacker={}|judge={}|budget={}",
                self.name,
                reference(&self.attacker_model),
                reference(&self.judge_model),
                self.budget
            )
        })
    }

    /// Checks its name, parameters and models; a template collection's counts become a note.
    pub(crate) fn check(&self, notes: &mut Vec<String>) -> Result<()> {
        let name = self.name.as_str();
        if let Some(spec) = name.strip_prefix("templates:") {
            let (loaded, refused) = redtrace_attacks::templates::TemplateAttack::open(spec)
                .map_err(anyhow::Error::msg)?;
            notes.push(format!(
                "{name}: {} templates loaded{}",
                loaded.len(),
                if refused > 0 {
                    format!(", {refused} refused for having no slot for the request")
                } else {
                    String::new()
                }
            ));
        } else if name != redtrace_attacks::NO_ATTACK {
            let entry = redtrace_attacks::registry::find(name)?;
            entry.check(name)?;
            if entry.is_driven() && self.budget == 0 {
                return Err(AttackError::NoBudget.into());
            }
            if entry.needs_attacker && self.attacker_model.is_none() {
                return Err(AttackError::NeedsAttacker(name.to_owned()).into());
            }
            if entry.needs_judge && self.judge_model.is_none() {
                return Err(AttackError::NeedsJudge(name.to_owned()).into());
            }
        }
        Ok(())
    }
}

/// Long texts judged in overlapping windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    /// Window size in characters.
    pub chars: usize,
    /// How the windows' verdicts combine.
    pub combine: Combine,
}

/// The reward judge's scoring endpoint: the spec as written (its identity) and as parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardSetting {
    /// `URL[,format=…][,model=…][,path=…][,threshold=…]`.
    pub spec: String,
    /// The parsed endpoint.
    pub config: RewardConfig,
}

impl RewardSetting {
    /// Parses a reward spec.
    pub fn parse(spec: &str) -> Result<Self> {
        Ok(Self {
            config: RewardConfig::parse(spec)?,
            spec: spec.to_owned(),
        })
    }
}

/// A judge, resolved: which judge, which model it calls, which template it fills.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeSetting {
    /// The registry name.
    pub name: String,
    /// The judge model (judges that call a model).
    pub model: Option<ModelRef>,
    /// A rubric template file.
    pub template: Option<PathBuf>,
    /// The channels it judges.
    pub channels: Vec<Channel>,
    /// Texts longer than a window are judged in windows, combined by the rule.
    pub chunk: Option<Chunking>,
    /// The reward judge's endpoint.
    pub reward: Option<RewardSetting>,
    /// The threshold on P(Yes) of a guard judge that reads probabilities (ShieldGemma).
    pub threshold: Option<f64>,
}

impl JudgeSetting {
    /// Parses `NAME` or `NAME=MODEL_REF`, checking the name and the model reference.
    pub fn parse(text: &str) -> Result<Self> {
        let spec = redtrace_judges::JudgeSpec::parse(text)?;
        let model = spec
            .model
            .as_deref()
            .map(ModelRef::parse)
            .transpose()
            .with_context(|| {
                format!("judge '{}'", redtrace_core::model::redact_credentials(text))
            })?;
        Ok(Self {
            name: spec.name,
            model,
            template: None,
            channels: Channel::ALL.to_vec(),
            chunk: None,
            reward: None,
            threshold: None,
        })
    }

    /// Whether the judge calls a model.
    pub fn calls_model(&self) -> bool {
        redtrace_judges::JudgeSpec {
            name: self.name.clone(),
            model: None,
        }
        .calls_model()
    }

    /// How the run's spec records the judge: `NAME`, `NAME=MODEL_REF`, plus the template file
    /// and its SHA-256 (so an edited template makes a new run).
    pub fn identity(&self) -> Result<String> {
        let mut text = self.name.clone();
        if let Some(model) = &self.model {
            text = format!("{text}={model}");
        }
        if let Some(method) = redtrace_judges::method_of(&self.name) {
            text = format!("{text} method={method}");
        }
        if self.channels != Channel::ALL {
            let names: Vec<&str> = self.channels.iter().map(|c| c.as_str()).collect();
            text = format!("{text} channels={}", names.join(","));
        }
        if let Some(chunk) = &self.chunk {
            text = format!("{text} chunks={}:{}", chunk.chars, chunk.combine.as_str());
        }
        if let Some(reward) = &self.reward {
            text = format!("{text} reward={}", reward.spec);
        }
        if let Some(threshold) = self.threshold {
            text = format!("{text} threshold={threshold}");
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

    /// Gives a judge that calls a model the judge model when it names none, and its template
    /// from `templates` (`NAME=PATH` given on the command line); checks that both exist.
    pub fn complete(
        &mut self,
        judge_model: Option<&ModelRef>,
        templates: &[(String, PathBuf)],
    ) -> Result<()> {
        if self.calls_model() && self.model.is_none() {
            self.model = judge_model.cloned();
            if self.model.is_none() {
                return Err(JudgeError::NeedsModel(self.name.clone()).into());
            }
        }
        if let Some((_, path)) = templates.iter().find(|(name, _)| *name == self.name) {
            self.template = Some(path.clone());
        }
        if let Some(template) = &self.template {
            if !template.is_file() {
                bail!(
                    "judge '{}': template {} does not exist",
                    self.name,
                    template.display()
                );
            }
        }
        Ok(())
    }
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
    pub responder_model: Option<ModelRef>,
}

/// Everything a run needs, validated: what `redtrace run` and an embedder hand to
/// [`run`](crate::run).
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
    /// What the user should know about the judges and attacks chosen.
    pub notes: Vec<String>,
    /// Completions per prompt.
    pub samples_per_prompt: u32,
    /// Attacks, each applied to every benchmark; `none` is the benchmark as it is.
    pub attacks: Vec<AttackSetting>,
    /// Use the completion cache.
    pub use_cache: bool,
    /// Always start a new run.
    pub new_run: bool,
    /// How long to wait between attempts of every model call, and the cap on a server's
    /// `Retry-After`.
    pub backoff: redtrace_providers::Backoff,
    /// The environment variable holding the key of the judge, attacker and responder models
    /// (else OpenAI's own key, for its own API only).
    pub helper_key_env: Option<String>,
    /// The limits given on the command line, which the judge, attacker and responder models
    /// keep to as the targets do.
    pub helper_limits: HelperLimits,
    /// Prices: the built-in table with the user's laid over it.
    pub prices: redtrace_core::price::PriceTable,
    /// The most the run may spend, USD.
    pub max_cost: Option<f64>,
    /// Only this shard of the run's units.
    pub shard: Option<redtrace_core::run::Shard>,
    /// On a PostgreSQL store: queue the run's units and leave them to workers.
    pub enqueue_only: bool,
    /// On a PostgreSQL store: how long a worker's lease on its units lasts unrenewed.
    pub lease: std::time::Duration,
    /// On a PostgreSQL store: how the run was started (the command line, for `redtrace
    /// worker`), recorded with the run it creates.
    pub recipe: Option<String>,
    /// Work this run and no other: a worker joining a stored run refuses to start (or
    /// create) another.
    pub join: Option<redtrace_store::RunId>,
}

/// Limits that apply to every model a run calls, its helpers too, where they are given.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HelperLimits {
    /// Per-request timeout, seconds.
    pub timeout_secs: Option<f64>,
    /// Retries after the first attempt.
    pub max_retries: Option<u32>,
    /// Requests in flight per endpoint.
    pub max_concurrency: Option<usize>,
    /// Requests per minute per endpoint.
    pub requests_per_minute: Option<u32>,
}

impl HelperLimits {
    /// `config` with these limits where they are given.
    pub fn apply(&self, config: &mut ModelConfig) {
        if let Some(value) = self.timeout_secs {
            config.timeout_secs = value;
        }
        if let Some(value) = self.max_retries {
            config.max_retries = value;
        }
        if let Some(value) = self.max_concurrency {
            config.max_concurrency = value;
        }
        if let Some(value) = self.requests_per_minute {
            config.requests_per_minute = Some(value);
        }
    }
}

/// What a judge judges, as the command line and a suite file name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Channels {
    /// The final answer.
    Answer,
    /// The thinking trace.
    #[serde(alias = "trace")]
    #[cfg_attr(feature = "clap", value(alias = "trace"))]
    Reasoning,
    /// Both.
    Both,
}

/// The channels named, in the canonical order, each once.
pub fn parse_channels(names: &[Channels]) -> Result<Vec<Channel>> {
    let mut channels = Vec::new();
    for name in names {
        let add: &[Channel] = match name {
            Channels::Answer => &[Channel::Answer],
            Channels::Reasoning => &[Channel::Reasoning],
            Channels::Both => &Channel::ALL,
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
        let number = || {
            value
                .as_f64()
                .with_context(|| format!("sweep.{key}: {shown} is not a number"))
        };
        match key {
            "max_tokens" => {
                model.params.max_tokens =
                    Some(value.as_u64().with_context(|| {
                        format!("sweep.max_tokens: {shown} is not a whole number")
                    })?)
            }
            "temperature" => model.params.temperature = Some(number()?),
            "top_p" => model.params.top_p = Some(number()?),
            // The reasoning settings are mapped per API, so a sweep runs on every provider.
            "reasoning_effort" => model.params.reasoning_effort = Some(shown.clone()),
            "thinking_budget" => {
                model.params.thinking_budget = Some(value.as_u64().with_context(|| {
                    format!("sweep.thinking_budget: {shown} is not a whole number")
                })?)
            }
            other => {
                model.extra.insert(other.to_owned(), value.clone());
            }
        }
        model.name = format!("{}@{key}={shown}", config.name);
        model.validate()?;
        models.push(model);
    }
    Ok(models)
}

/// Parses `NAME=PATH` rubric template overrides (`--judge-template`).
pub fn parse_templates(texts: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let mut templates = Vec::new();
    for text in texts {
        let Some((name, path)) = text.split_once('=') else {
            bail!("--judge-template {text}: give NAME=PATH, e.g. harm=my-rubric.j2");
        };
        redtrace_judges::JudgeSpec::parse(name)?;
        templates.push((name.trim().to_owned(), PathBuf::from(path.trim())));
    }
    Ok(templates)
}
