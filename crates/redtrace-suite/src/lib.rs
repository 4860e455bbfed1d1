//! What a run is, as a library: the suite file, its resolution with overrides into one typed
//! [`RunSettings`] value, the building of targets, judges, responders and attackers, and the
//! run itself with its lifecycle in the store. The `redtrace` binary is a thin layer over this
//! crate; anyone can embed redtrace the same way:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use redtrace_suite::{Overrides, Suite};
//! let settings = Suite::from_file("suite.toml".as_ref())?.with(&Overrides {
//!     limit: Some(20),
//!     ..Overrides::default()
//! })?;
//! let progress = std::sync::Arc::new(redtrace_suite::NoProgress);
//! let outcome = redtrace_suite::run(&settings, progress, Default::default()).await?;
//! let report = redtrace_suite::report(&settings.db, outcome.run_id)?;
//! # Ok(()) }
//! ```
//!
//! Nothing here prints: notes for a person go through the [`Progress`] trait.

mod build;
mod estimate;
mod file;
mod rejudge;
mod resolve;
mod run;
mod settings;

pub use build::{
    download, download_from, provider_for, Builder, DOWNLOAD_ATTEMPTS, DOWNLOAD_STALL,
};
pub use estimate::{estimate, EstimateRow, Range};
pub use file::{
    read_suite, AttackEntry, AttackTable, BenchmarkTable, JudgeEntry, JudgeTable, ModelTable,
    SuiteFile, ThresholdsTable,
};
pub use redtrace_engine::{NoProgress, Progress, RunSummary, Shutdown, UnitOutcome};
pub use rejudge::{rejudge, PreparedRejudge, Rejudge};
pub use resolve::{
    default_key_env, JudgeOverrides, Overrides, Suite, DB_ENV, DEFAULT_DB, DEFAULT_KEY_ENV,
    DEFAULT_KEY_HOST,
};
pub use run::{run, RunOutcome};
pub use settings::{
    parse_channels, parse_templates, sweep_model, AttackSetting, BenchmarkPlan, Channels, Chunking,
    HelperLimits, JudgeSetting, RewardSetting, RunSettings, FALLBACK_JUDGE,
};

/// The report of run `run` in the store at `db`, as a value (render it with its `to_*`
/// methods).
pub fn report(
    db: &std::path::Path,
    run: redtrace_store::RunId,
) -> anyhow::Result<redtrace_report::Report> {
    let store = redtrace_store::Store::open_read_only(db)?;
    let info = store
        .runs()?
        .into_iter()
        .find(|info| info.id == run)
        .ok_or_else(|| anyhow::anyhow!("no run {run} in {}", redtrace_store::shown(db)))?;
    Ok(redtrace_report::Report::build(&store, &info)?)
}
