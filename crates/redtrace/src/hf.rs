//! `hf:OWNER/REPO/FILE.gguf`: downloads the file once into the standard Hugging Face cache
//! (`HF_HOME`, default `~/.cache/huggingface`; `HF_ENDPOINT` picks the hub), with a progress
//! bar on a terminal; later runs find it there without a request.

use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::PathBuf;

/// The local path of `file` in `repo`, downloading it first if the cache lacks it.
pub async fn download(repo: &str, file: &str) -> Result<PathBuf> {
    let cache = hf_hub::Cache::from_env();
    if let Some(path) = cache.model(repo.to_owned()).get(file) {
        return Ok(path);
    }
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    eprintln!("downloading {file} from {repo} ({endpoint}) into the Hugging Face cache");
    let api = hf_hub::api::tokio::ApiBuilder::from_env()
        .with_progress(std::io::stderr().is_terminal())
        .build()
        .context("cannot set up the Hugging Face client")?;
    api.model(repo.to_owned())
        .get(file)
        .await
        .with_context(|| format!("cannot download {file} from {repo} at {endpoint}"))
}
