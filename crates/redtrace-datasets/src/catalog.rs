//! The data catalogue and `redtrace data pull`: which files each data set has, where each is
//! published (a repository at a pinned commit) and its SHA-256; downloading them into a data
//! directory, checking every byte against the pinned hash, never fetching a file that is
//! already there and right.
//!
//! The catalogue (`catalog.json`, written by `scripts/data_catalog.py` from the data sets'
//! provenance) holds addresses and hashes only, no data. Files that were derived for the
//! collection, or come from a package rather than a repository, have no address: `data info`
//! says where they come from and where to put them.

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::DATA_DIR_ENV;

/// One file of a data set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogFile {
    /// Where it goes, relative to the data directory.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Where it is downloaded from; `None` when it cannot be.
    pub url: Option<String>,
    /// Where it comes from, in words.
    pub origin: String,
}

/// A data set of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogSet {
    /// Its name (`data pull NAME`).
    pub name: String,
    /// What it holds.
    pub description: String,
    /// Its license.
    pub license: String,
    /// Its files.
    pub files: Vec<CatalogFile>,
}

/// Every data set the catalogue knows.
pub fn catalog() -> Vec<CatalogSet> {
    serde_json::from_str(include_str!("../catalog.json")).expect("the built-in catalogue parses")
}

/// A data set by name, or an error listing the known ones.
pub fn find_set(name: &str) -> Result<CatalogSet, String> {
    let all = catalog();
    let known: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    all.into_iter().find(|s| s.name == name).ok_or_else(|| {
        format!(
            "unknown data set '{name}': known data sets are {}",
            known.join(", ")
        )
    })
}

/// The catalogue's data set holding `file` (a path under the data directory), for error
/// messages that say what to pull.
pub fn set_holding(file: &str) -> Option<(String, bool)> {
    catalog().into_iter().find_map(|set| {
        set.files
            .iter()
            .find(|f| f.path == file)
            .map(|f| (set.name.clone(), f.url.is_some()))
    })
}

/// Where data goes when no directory is named: `$REDTRACE_DATA`, else
/// `$XDG_CACHE_HOME/redtrace/data`, else `~/.cache/redtrace/data`.
pub fn default_data_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(cache.join("redtrace").join("data"))
}

/// The state of one file in a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// There, with the pinned hash.
    Present,
    /// Not there.
    Missing,
    /// There, with another hash (edited, truncated, or another version).
    Different,
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// The state of each file of `set` under `dir`.
pub fn status(set: &CatalogSet, dir: &Path) -> Vec<(CatalogFile, FileState)> {
    set.files
        .iter()
        .map(|file| {
            let path = dir.join(&file.path);
            let state = if !path.is_file() {
                FileState::Missing
            } else if file_sha256(&path).ok().as_deref() == Some(file.sha256.as_str()) {
                FileState::Present
            } else {
                FileState::Different
            };
            (file.clone(), state)
        })
        .collect()
}

/// What a pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PullSummary {
    /// Files downloaded and verified.
    pub downloaded: Vec<String>,
    /// Files already there and right.
    pub present: Vec<String>,
    /// Files that cannot be downloaded and are not there, with where they come from.
    pub unavailable: Vec<(String, String)>,
    /// Bytes downloaded.
    pub bytes: u64,
}

/// Downloads the files of `set` missing from `dir` (or differing from their pinned hash),
/// from their published address or, with `mirror`, from `MIRROR/PATH`. Each file is written
/// next to its place as `.part`, hashed as it streams, and moved into place only when its
/// hash is the pinned one. `progress` is told the bytes of each chunk.
pub async fn pull(
    set: &CatalogSet,
    dir: &Path,
    mirror: Option<&str>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<PullSummary, String> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(20))
        .timeout(Duration::from_secs(600))
        .user_agent(concat!("redtrace/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut summary = PullSummary::default();
    for (file, state) in status(set, dir) {
        if state == FileState::Present {
            summary.present.push(file.path.clone());
            continue;
        }
        let url = match (mirror, &file.url) {
            (Some(mirror), _) => format!("{}/{}", mirror.trim_end_matches('/'), file.path),
            (None, Some(url)) => url.clone(),
            (None, None) => {
                summary
                    .unavailable
                    .push((file.path.clone(), file.origin.clone()));
                continue;
            }
        };
        let target = dir.join(&file.path);
        let bytes = download(&client, &url, &target, &file.sha256, progress).await?;
        summary.bytes += bytes;
        summary.downloaded.push(file.path.clone());
    }
    Ok(summary)
}

async fn download(
    client: &reqwest::Client,
    url: &str,
    target: &Path,
    sha256: &str,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64, String> {
    let part = target.with_extension(match target.extension() {
        Some(ext) => format!("{}.part", ext.to_string_lossy()),
        None => "part".into(),
    });
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    // The folder is made once there is something to put in it: a pull that cannot reach its
    // source leaves the data directory as it was (and so does not create a default one).
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let mut out = std::fs::File::create(&part).map_err(|e| format!("{}: {e}", part.display()))?;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                let _ = std::fs::remove_file(&part);
                return Err(format!("{url}: {error}"));
            }
        };
        hasher.update(&chunk);
        out.write_all(&chunk)
            .map_err(|e| format!("{}: {e}", part.display()))?;
        total += chunk.len() as u64;
        progress(chunk.len() as u64);
    }
    drop(out);
    let got = format!("{:x}", hasher.finalize());
    if got != sha256 {
        let _ = std::fs::remove_file(&part);
        return Err(format!(
            "{url}: SHA-256 {got} is not the pinned {sha256}; nothing was written to {}",
            target.display()
        ));
    }
    std::fs::rename(&part, target).map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(total)
}
