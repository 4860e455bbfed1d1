//! What every test of the binary shares: the binary, one way to run it with a clean
//! environment, and the browser the HTML tests drive.

use std::path::PathBuf;
use std::process::Output;

/// The binary under test, built once for every test.
pub const BIN: &str = env!("CARGO_BIN_EXE_redtrace");

/// A `redtrace ARGS` command whose environment names no key, store or data directory of the
/// person running the tests; `env` is added.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(args)
        .env_remove("OPENAI_API_KEY")
        .env_remove("REDTRACE_DB")
        .env_remove("REDTRACE_DATA");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Runs `redtrace ARGS`.
pub async fn redtrace(args: &[&str]) -> Output {
    redtrace_env(args, &[]).await
}

/// Runs `redtrace ARGS` with `env` added.
pub async fn redtrace_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env).output().await.expect("run redtrace")
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Headless Chromium from Debian's package, if installed.
pub fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}
