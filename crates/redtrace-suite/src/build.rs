//! Building what a run talks to: the client of each model by where it runs (an
//! OpenAI-compatible endpoint, a GGUF file in process, a file on the Hugging Face hub), and the
//! judges, responders and model-driven attacks of a run, each built once.

use anyhow::{bail, Context, Result};
use redtrace_engine::Progress;
use redtrace_judges::{Judge, JudgeModel, ReplyCache};
use redtrace_providers::{
    Backoff, Gate, ModelConfig, ModelRef, ModelSource, OpenAiProvider, Provider, Shutdown,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::resolve::default_key_env;
use crate::settings::{AttackSetting, HelperLimits, JudgeSetting};

/// Judges should be deterministic and have room for a short rationale.
const JUDGE_PARAMS: (f64, u64) = (0.0, 512);

/// Attackers should vary their prompts and have room for a long one. Their replies are cached
/// like a judge's, so a rerun replays the same attack.
const ATTACKER_PARAMS: (f64, u64) = (1.0, 1024);

/// Builds the judges, responders and attacker models of a run, once each: judges with the
/// same setting are one judge, and models with the same reference are one client (a local
/// GGUF judge is loaded once), every model caching its replies in the store.
pub struct Builder {
    data_dir: Option<PathBuf>,
    cache: Arc<dyn ReplyCache>,
    progress: Arc<dyn Progress>,
    shutdown: Shutdown,
    backoff: Backoff,
    key_env: Option<String>,
    limits: HelperLimits,
    judges: Vec<(JudgeSetting, Arc<dyn Judge>)>,
    models: Vec<(String, JudgeModel, String)>,
    prices: redtrace_core::price::PriceTable,
}

impl Builder {
    /// A builder whose models cache replies in the store at `db`; loading and downloading
    /// are told to `progress`.
    pub fn new(db: &Path, data_dir: Option<PathBuf>, progress: Arc<dyn Progress>) -> Result<Self> {
        Ok(Self {
            data_dir,
            cache: Arc::new(redtrace_engine::StoreReplyCache::open(db)?),
            progress,
            shutdown: Shutdown::default(),
            backoff: Backoff::default(),
            key_env: None,
            limits: HelperLimits::default(),
            judges: Vec::new(),
            models: Vec::new(),
            prices: redtrace_core::price::PriceTable::builtin(),
        })
    }

    /// Prices the judge, attacker and responder models from `prices`.
    pub fn with_prices(mut self, prices: redtrace_core::price::PriceTable) -> Self {
        self.prices = prices;
        self
    }

    /// Judge, attacker and responder models behind an endpoint send the key held in the
    /// environment variable `name` (by default none, but OpenAI's own key to its own API).
    pub fn with_key_env(mut self, name: Option<String>) -> Self {
        self.key_env = name;
        self
    }

    /// Judge, attacker and responder models keep to `limits` (the command line's timeout,
    /// retries, concurrency and rate), as targets do.
    pub fn with_limits(mut self, limits: HelperLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Model calls (judges, attackers, responders) wait `backoff` between attempts.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Model calls (judges, attackers, responders) end when `shutdown.abandon` fires. A first
    /// stop lets them run on: they belong to units already in flight, which finish.
    pub fn with_shutdown(mut self, shutdown: &Shutdown) -> Self {
        self.shutdown = Shutdown {
            stop: Default::default(),
            abandon: shutdown.abandon.clone(),
        };
        self
    }

    /// The judge for `setting`.
    pub async fn judge(&mut self, setting: &JudgeSetting) -> Result<Arc<dyn Judge>> {
        if let Some((_, judge)) = self.judges.iter().find(|(s, _)| s == setting) {
            return Ok(judge.clone());
        }
        let mut parts = redtrace_judges::JudgeParts {
            template: setting.template.clone(),
            data_dir: self.data_dir.clone(),
            reward: setting.reward.as_ref().map(|r| r.config.clone()),
            threshold: setting.threshold,
            cache: Some(self.cache.clone()),
            ..Default::default()
        };
        if let Some(reference) = &setting.model {
            // A judge whose method fixes its sampling (AIR-Bench's: HELM's temperature 0,
            // 64 tokens) gets it where the reference sets none.
            let params = redtrace_judges::sampling_of(&setting.name).unwrap_or(JUDGE_PARAMS);
            let (model, name) = self
                .model_with(reference, params)
                .await
                .with_context(|| format!("judge '{}'", setting.name))?;
            parts.model = Some(model);
            parts.model_name = Some(name);
        }
        let mut judge = redtrace_judges::build(&setting.name, parts)?;
        if let Some(chunk) = &setting.chunk {
            // The safety-thinking classes describe a whole trace; they are not combined.
            if setting.name != redtrace_judges::SafetyThinkingJudge::NAME {
                judge = Arc::new(redtrace_judges::Chunked::new(
                    judge,
                    chunk.chars,
                    chunk.combine,
                ));
            }
        }
        // A judge is used only on the texts it is valid for: asking a reply judge to read
        // traces is refused, not silently done.
        let valid = judge.channels();
        if let Some(channel) = setting.channels.iter().find(|c| !valid.contains(c)) {
            if setting.channels != redtrace_core::Channel::ALL {
                let names: Vec<&str> = valid.iter().map(|c| c.as_str()).collect();
                bail!(
                    "judge '{}' does not judge the {} channel (only {}){}",
                    setting.name,
                    channel.as_str(),
                    names.join(", "),
                    redtrace_judges::why_not_on(&setting.name, *channel)
                        .map(|why| format!(": {why}"))
                        .unwrap_or_default()
                );
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
        setting: &AttackSetting,
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
            redtrace_attacks::registry::needs_judge(&setting.name),
        ) {
            (Some(reference), true) => {
                let (model, name) = self.model(reference).await.context("the judge model")?;
                Some(Arc::new(ModelHelper::new(name, model)) as Arc<dyn Helper>)
            }
            _ => None,
        };
        redtrace_attacks::registry::build_driven(
            &setting.name,
            &redtrace_attacks::driven::Helpers {
                attacker,
                judge,
                budget: setting.budget,
            },
        )
        .map_err(anyhow::Error::from)
    }

    /// The spear-phishing exchange (CyberSecEval's protocol, read from the data directory),
    /// its victim and checks played by the model `reference`.
    pub async fn exchange(
        &mut self,
        reference: &ModelRef,
    ) -> Result<Arc<dyn redtrace_core::solver::Solver>> {
        let (model, name) = self.model(reference).await.context("the victim")?;
        let dir = self
            .data_dir
            .clone()
            .context("the spear-phishing exchange needs the data directory")?;
        Ok(Arc::new(
            redtrace_judges::PhishingExchange::load(
                redtrace_core::JudgeId::new("cse-phishing-victim", Some(&name)).to_string(),
                &dir,
                model,
            )
            .map_err(anyhow::Error::msg)?,
        ))
    }

    /// The client of a target model.
    pub async fn target(&self, config: &ModelConfig) -> Result<Arc<dyn Provider>> {
        provider_for(config, &self.progress).await
    }

    /// The client `provider` of a target of run `run` in the store at `db`: through its
    /// provider's batch API when the model says `batch`, its batches recorded in the run.
    pub fn target_of_run(
        &self,
        config: &ModelConfig,
        provider: Arc<dyn Provider>,
        db: &Path,
        run: redtrace_store::RunId,
    ) -> Result<Arc<dyn Provider>> {
        if config.batch.is_none() {
            return Ok(provider);
        }
        let ledger = Arc::new(redtrace_engine::StoreBatchLedger::open(db, run)?);
        let progress = self.progress.clone();
        let note = Arc::new(move |message: String| progress.note(&message));
        Ok(Arc::new(redtrace_providers::BatchProvider::new(
            config.clone(),
            provider,
            ledger,
            note,
        )?))
    }

    async fn model(&mut self, reference: &ModelRef) -> Result<(JudgeModel, String)> {
        self.model_with(reference, JUDGE_PARAMS).await
    }

    /// The model `reference` with default sampling `(temperature, max_tokens)` where the
    /// reference sets none; one client per reference and defaults.
    async fn model_with(
        &mut self,
        reference: &ModelRef,
        (temperature, max_tokens): (f64, u64),
    ) -> Result<(JudgeModel, String)> {
        let key = format!("{reference}\u{1f}{temperature}\u{1f}{max_tokens}");
        if let Some((_, model, name)) = self.models.iter().find(|(r, _, _)| *r == key) {
            return Ok((model.clone(), name.clone()));
        }
        let mut config = reference.config().clone();
        if config.base_url().is_some() {
            config.api_key_env = self.key_env.clone().or_else(|| default_key_env(&config));
        }
        self.limits.apply(&mut config);
        config.params.temperature.get_or_insert(temperature);
        config.params.max_tokens.get_or_insert(max_tokens);
        let provider = provider_for(&config, &self.progress).await?;
        // Each helper model's calls keep to its own endpoint's limits.
        let gate = Gate::new(&config, self.backoff, self.shutdown.clone());
        let model = JudgeModel::new(provider)
            .with_cache(self.cache.clone())
            .with_gate(Arc::new(gate))
            .with_price(
                config
                    .price
                    .or_else(|| crate::resolve::price_of(&config, &self.prices)),
            );
        self.models.push((key, model.clone(), config.name.clone()));
        Ok((model, config.name))
    }
}

/// The client for a model, by where it runs; a download or a model load is told to
/// `progress`.
pub async fn provider_for(
    config: &ModelConfig,
    progress: &Arc<dyn Progress>,
) -> Result<Arc<dyn Provider>> {
    match &config.source {
        ModelSource::OpenAi { .. } => Ok(Arc::new(OpenAiProvider::new(config.clone())?)),
        ModelSource::Anthropic { .. } => Ok(Arc::new(
            redtrace_providers::AnthropicProvider::new(config.clone())?,
        )),
        ModelSource::OpenAiResponses { .. } => Ok(Arc::new(
            redtrace_providers::ResponsesProvider::new(config.clone())?,
        )),
        ModelSource::Gemini { .. } => Ok(Arc::new(redtrace_providers::GeminiProvider::new(
            config.clone(),
        )?)),
        ModelSource::Ollama { .. } => Ok(Arc::new(redtrace_providers::OllamaProvider::new(
            config.clone(),
        )?)),
        ModelSource::Gguf { path } => local_provider(config, Path::new(path), progress.as_ref()),
        ModelSource::Hf { repo, file } => {
            let path = download(repo, file, progress.clone()).await?;
            local_provider(config, &path, progress.as_ref())
        }
        ModelSource::Imported { file } => anyhow::bail!(
            "model '{}' holds generations imported from {file}: it cannot be asked anything; judge them with `redtrace judge`",
            config.name
        ),
    }
}

#[cfg(feature = "local")]
fn local_provider(
    config: &ModelConfig,
    path: &Path,
    progress: &dyn Progress,
) -> Result<Arc<dyn Provider>> {
    progress.note(&format!("loading {} ...", path.display()));
    Ok(Arc::new(redtrace_local::LocalProvider::load(
        config.clone(),
        path,
    )?))
}

#[cfg(not(feature = "local"))]
fn local_provider(
    config: &ModelConfig,
    _path: &Path,
    _progress: &dyn Progress,
) -> Result<Arc<dyn Provider>> {
    anyhow::bail!(
        "model '{}' runs in-process, but this redtrace was built without the `local` feature; \
         rebuild with default features (needs cmake and libclang)",
        config.name
    )
}

/// How long a download may go without receiving a byte before it is taken to have stalled.
pub const DOWNLOAD_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// Attempts at a download that stalls.
pub const DOWNLOAD_ATTEMPTS: u32 = 3;

/// `hf:OWNER/REPO/FILE.gguf`: the local path of `file` in `repo`, downloaded first into the
/// standard Hugging Face cache (`HF_HOME`, default `~/.cache/huggingface`; `HF_ENDPOINT` picks
/// the hub) when the cache lacks it; later runs find it there without a request. The bytes
/// downloaded are told to `progress`.
pub async fn download(repo: &str, file: &str, progress: Arc<dyn Progress>) -> Result<PathBuf> {
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    download_from(
        &endpoint,
        hf_hub::Cache::from_env(),
        repo,
        file,
        progress,
        DOWNLOAD_STALL,
        DOWNLOAD_ATTEMPTS,
    )
    .await
}

/// [`download`] from the hub at `endpoint` into `cache`: a download that receives no byte for
/// `stall` (a server that stops, or sent fewer bytes than it announced) is abandoned and tried
/// again, `attempts` times in all, then fails saying so; while it waits, `progress` is told.
pub async fn download_from(
    endpoint: &str,
    cache: hf_hub::Cache,
    repo: &str,
    file: &str,
    progress: Arc<dyn Progress>,
    stall: std::time::Duration,
    attempts: u32,
) -> Result<PathBuf> {
    use std::sync::atomic::Ordering;
    if let Some(path) = cache.model(repo.to_owned()).get(file) {
        return Ok(path);
    }
    progress.note(&format!(
        "downloading {file} from {repo} ({endpoint}) into the Hugging Face cache"
    ));
    let api = hf_hub::api::tokio::ApiBuilder::from_cache(cache)
        .with_endpoint(endpoint.to_owned())
        .with_progress(false)
        .build()
        .context("cannot set up the Hugging Face client")?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let bytes = Bytes {
            progress: progress.clone(),
            file: file.to_owned(),
            done: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            total: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let done = bytes.done.clone();
        let repo_api = api.model(repo.to_owned());
        let fetch = repo_api.download_with_progress(file, bytes);
        tokio::pin!(fetch);
        // A watchdog: the bytes received must grow within every `stall`.
        let mut seen = 0;
        let mut since = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250).min(stall));
        let stalled = loop {
            tokio::select! {
                result = &mut fetch => {
                    return result.with_context(|| {
                        format!("cannot download {file} from {repo} at {endpoint}")
                    });
                }
                _ = tick.tick() => {
                    let now = done.load(Ordering::Relaxed);
                    if now != seen {
                        seen = now;
                        since = tokio::time::Instant::now();
                    } else if since.elapsed() >= stall {
                        break now;
                    }
                }
            }
        };
        let why = format!(
            "the download of {file} from {repo} at {endpoint} stalled: no data for {} s after {stalled} bytes (the server stopped sending, or sent fewer bytes than it announced)",
            stall.as_secs_f64()
        );
        if attempt >= attempts {
            anyhow::bail!("{why}; gave up after {attempts} attempts");
        }
        progress.note(&format!(
            "{why}; trying again ({} of {attempts})",
            attempt + 1
        ));
    }
}

/// The hub client's download progress, told to a [`Progress`]. The hub client clones it for
/// its parallel chunks, so the counts are shared.
#[derive(Clone)]
struct Bytes {
    progress: Arc<dyn Progress>,
    file: String,
    done: Arc<std::sync::atomic::AtomicU64>,
    total: Arc<std::sync::atomic::AtomicU64>,
}

impl hf_hub::api::tokio::Progress for Bytes {
    async fn init(&mut self, size: usize, _filename: &str) {
        use std::sync::atomic::Ordering;
        self.total.store(size as u64, Ordering::Relaxed);
        self.progress.bytes(&self.file, 0, size as u64);
    }

    async fn update(&mut self, size: usize) {
        use std::sync::atomic::Ordering;
        let done = self.done.fetch_add(size as u64, Ordering::Relaxed) + size as u64;
        self.progress
            .bytes(&self.file, done, self.total.load(Ordering::Relaxed));
    }

    async fn finish(&mut self) {}
}
