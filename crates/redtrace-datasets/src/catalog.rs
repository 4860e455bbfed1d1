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
    /// Its SHA-256, hex; empty when it is pinned by its git blob id only.
    #[serde(default)]
    pub sha256: String,
    /// Its git blob id (SHA-1 of `blob LEN\0` and the bytes), hex, where upstream names the
    /// file by it: a download is checked against it as well as against the SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_blob: Option<String>,
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

/// Git's blob id of a file, hex: SHA-1 of `blob LEN\0` followed by its bytes.
pub fn file_git_blob(path: &Path) -> std::io::Result<String> {
    use sha1::Sha1;
    let length = std::fs::metadata(path)?.len();
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {length}\0").as_bytes());
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

impl CatalogFile {
    /// Whether the file at `path` is this one: every pin it has (SHA-256, git blob id)
    /// matches. `Err` says which differs.
    pub fn verify(&self, path: &Path) -> Result<(), String> {
        let io = |e: std::io::Error| format!("{}: {e}", path.display());
        if !self.sha256.is_empty() {
            let got = file_sha256(path).map_err(io)?;
            if got != self.sha256 {
                return Err(format!("SHA-256 {got} is not the pinned {}", self.sha256));
            }
        }
        if let Some(blob) = &self.git_blob {
            let got = file_git_blob(path).map_err(io)?;
            if &got != blob {
                return Err(format!("git blob id {got} is not the pinned {blob}"));
            }
        }
        Ok(())
    }
}

/// The state of each file of `set` under `dir`.
pub fn status(set: &CatalogSet, dir: &Path) -> Vec<(CatalogFile, FileState)> {
    set.files
        .iter()
        .map(|file| {
            let path = dir.join(&file.path);
            let state = if !path.is_file() {
                FileState::Missing
            } else if file.verify(&path).is_ok() {
                FileState::Present
            } else {
                FileState::Different
            };
            (file.clone(), state)
        })
        .collect()
}

/// The catalogue's entry for `file` (a path under the data directory).
pub fn pinned(file: &str) -> Option<CatalogFile> {
    catalog()
        .into_iter()
        .flat_map(|set| set.files)
        .find(|f| f.path == file)
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
        let bytes = download(&client, &url, &target, &file, progress).await?;
        summary.bytes += bytes;
        summary.downloaded.push(file.path.clone());
    }
    Ok(summary)
}

async fn download(
    client: &reqwest::Client,
    url: &str,
    target: &Path,
    file: &CatalogFile,
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
        out.write_all(&chunk)
            .map_err(|e| format!("{}: {e}", part.display()))?;
        total += chunk.len() as u64;
        progress(chunk.len() as u64);
    }
    drop(out);
    if let Err(differs) = file.verify(&part) {
        let _ = std::fs::remove_file(&part);
        return Err(format!(
            "{url}: {differs}; nothing was written to {}",
            target.display()
        ));
    }
    std::fs::rename(&part, target).map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sha256: &str, git_blob: Option<&str>) -> CatalogFile {
        CatalogFile {
            path: "x/hello.txt".into(),
            bytes: 6,
            sha256: sha256.into(),
            git_blob: git_blob.map(Into::into),
            url: None,
            origin: "a test".into(),
        }
    }

    #[test]
    fn a_file_pinned_by_git_blob_id_is_checked_against_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hello.txt");
        std::fs::write(&path, "hello\n").unwrap();
        // `git hash-object` of "hello\n".
        let blob = "ce013625030ba8dba906f756967f9e9ca394464a";
        assert_eq!(file_git_blob(&path).unwrap(), blob);
        assert_eq!(entry("", Some(blob)).verify(&path), Ok(()));
        let other = "0000000000000000000000000000000000000000";
        assert_eq!(
            entry("", Some(other)).verify(&path).unwrap_err(),
            format!("git blob id {blob} is not the pinned {other}")
        );
        // Both pins are checked when both are given.
        let sha = file_sha256(&path).unwrap();
        assert_eq!(entry(&sha, Some(blob)).verify(&path), Ok(()));
        assert!(entry("ab", Some(blob))
            .verify(&path)
            .unwrap_err()
            .starts_with("SHA-256"));
    }

    #[test]
    fn the_official_mitre_file_and_the_method_files_are_catalogued() {
        let mitre =
            pinned("cyberseceval/mitre_benchmark_100_per_category_with_augmentation.json").unwrap();
        assert_eq!(
            mitre.git_blob.as_deref(),
            Some("da9bca1fae21ebe55eead0af9b1ce9a9cfdf3514")
        );
        assert!(mitre
            .url
            .unwrap()
            .contains("/4be64c3a24442b51c76175e6ec67722cc3f5fe38/"));
        for file in [
            "mitre_benchmark.py",
            "benchmark_utils.py",
            "interpreter_benchmark.py",
        ] {
            let entry = pinned(&format!("cyberseceval/method/{file}")).unwrap();
            assert_eq!(entry.sha256.len(), 64);
        }
    }
}
