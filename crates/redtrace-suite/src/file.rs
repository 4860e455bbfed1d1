//! The suite file (`suite.toml`): its tables as they are written, read with every key checked,
//! and resolved against the file's folder into a [`Suite`](crate::Suite).

use anyhow::{bail, Context, Result};
use redtrace_providers::{ModelConfig, SamplingParams};
use serde::Deserialize;
use std::path::{Path, PathBuf};

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
    /// Release gates that `redtrace check --suite FILE` holds the run to.
    pub thresholds: Option<ThresholdsTable>,
    /// A price table laid over the built-in one (relative to the suite file).
    pub prices: Option<PathBuf>,
    /// The most the run may spend, USD.
    pub max_cost: Option<f64>,
}

/// The `[thresholds]` table: `BENCH=RATE` entries as `redtrace check` takes them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsTable {
    /// The answers' unsafe share at most.
    #[serde(default)]
    pub max_unsafe: Vec<String>,
    /// The answers' refusal rate at least.
    #[serde(default)]
    pub min_refusal: Vec<String>,
    /// The answers' refusal rate at most.
    #[serde(default)]
    pub max_refusal: Vec<String>,
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
    pub channels: Option<Vec<crate::settings::Channels>>,
    /// For the reward judge: its endpoint, `URL[,format=…][,model=…][,path=…][,threshold=…]`.
    pub reward: Option<String>,
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
    /// How hard a reasoning model thinks: low, medium or high (mapped per API).
    pub reasoning_effort: Option<String>,
    /// The thinking token budget (mapped per API).
    pub thinking_budget: Option<u64>,
    /// The API behind `base_url`: `openai` (chat completions, the default), `anthropic`,
    /// `openai-responses`, `gemini` or `ollama`.
    pub api: Option<String>,
    /// Extra request fields, passed verbatim.
    #[serde(default)]
    pub extra: toml::Table,
    /// Stream responses.
    #[serde(default)]
    pub stream: bool,
    /// The chat template opens `<think>` in the prompt.
    #[serde(default)]
    pub template_opens_think: bool,
    /// In dialogues, send earlier traces back with earlier replies.
    #[serde(default)]
    pub replay_traces: bool,
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
    /// The largest response read, in bytes (default 64 MiB).
    pub max_response_bytes: Option<u64>,
    /// What its tokens cost, USD per million: `{ input = …, output = …, cached_input = …,
    /// batch_discount = … }` (else the price table's).
    pub price: Option<redtrace_core::price::Price>,
    /// Send its requests through the provider's batch API: `true`, or `{ poll_secs = …,
    /// window_secs = …, retry = "live" | "batch", max_requests = … }`.
    pub batch: Option<BatchEntry>,
    /// Run this model at several values of one setting: `{ max_tokens = [1024, 4096] }` or
    /// `{ reasoning_effort = ["low", "high"] }`; each value is a model of its own, named
    /// `NAME@KEY=VALUE`.
    pub sweep: Option<toml::Table>,
}

/// A model's `batch`: `true` / `false`, or a table of settings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum BatchEntry {
    /// On with the defaults, or off.
    On(bool),
    /// On with these settings.
    With(redtrace_core::model::BatchConfig),
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
    /// The model this table describes, its paths taken relative to `base`.
    pub fn into_config(self, base: &Path) -> Result<ModelConfig> {
        let mut config = match (self.base_url, self.gguf, self.hf) {
            (Some(base_url), None, None) => {
                let model = self
                    .model
                    .clone()
                    .context("a model with base_url needs `model`, the id sent to the API")?;
                match self.api.as_deref() {
                    None | Some("openai") => ModelConfig::new(base_url, model),
                    Some(api @ ("anthropic" | "openai-responses" | "gemini" | "ollama")) => {
                        ModelConfig::parse_ref(&format!("{api}:{model}@{base_url}"))?
                    }
                    Some(other) => bail!(
                        "api '{other}': give openai, anthropic, openai-responses, gemini or ollama"
                    ),
                }
            }
            (None, Some(path), None) => {
                ModelConfig::parse_ref(&format!("gguf:{}", relative_to(base, path).display()))?
            }
            (None, None, Some(hf)) => ModelConfig::parse_ref(&format!("hf:{hf}"))?,
            (None, None, None) if self.api.is_some() => {
                let model = self
                    .model
                    .clone()
                    .context("a model with `api` needs `model`, the id sent to the API")?;
                ModelConfig::parse_ref(&format!("{}:{model}", self.api.as_deref().unwrap_or("")))?
            }
            _ => bail!("give exactly one of base_url, gguf or hf (or `api` alone for a native API's default URL)"),
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
            reasoning_effort: self.reasoning_effort,
            thinking_budget: self.thinking_budget,
        };
        config.extra = json_from_toml(self.extra)?;
        config.stream = self.stream;
        config.replay_traces = self.replay_traces;
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
        config.max_response_bytes = self.max_response_bytes;
        if let Some(price) = self.price {
            price.check("price").map_err(anyhow::Error::msg)?;
            config.price = Some(price);
        }
        config.batch = match self.batch {
            None | Some(BatchEntry::On(false)) => None,
            Some(BatchEntry::On(true)) => Some(Default::default()),
            Some(BatchEntry::With(settings)) => Some(settings),
        };
        Ok(config)
    }
}

/// `path`, taken relative to `base` unless absolute.
pub(crate) fn relative_to(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
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

    /// A model's own price and `batch = true` reach its configuration; a bad price is refused.
    #[test]
    fn a_model_table_takes_its_price_and_batch() {
        let table: super::ModelTable = toml::from_str(
            "base_url = \"http://h/v1\"\nmodel = \"m\"\nprice = { input = 1.5, output = 6.0 }\nbatch = true\n",
        )
        .unwrap();
        let config = table.into_config(std::path::Path::new(".")).unwrap();
        let price = config.price.unwrap();
        assert_eq!(
            (price.input, price.output, price.cached_input),
            (1.5, 6.0, None)
        );
        assert_eq!(config.batch, Some(Default::default()));
        let off: super::ModelTable =
            toml::from_str("base_url = \"http://h/v1\"\nmodel = \"m\"\nbatch = false\n").unwrap();
        assert_eq!(
            off.into_config(std::path::Path::new(".")).unwrap().batch,
            None
        );
        let bad: super::ModelTable = toml::from_str(
            "base_url = \"http://h/v1\"\nmodel = \"m\"\nprice = { input = -1.0, output = 6.0 }\n",
        )
        .unwrap();
        let error = bad
            .into_config(std::path::Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(error.contains("input = -1"), "{error}");
    }
}
