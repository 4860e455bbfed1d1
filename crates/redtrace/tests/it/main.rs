//! The `redtrace` binary's tests, one test binary with a module per area (as ripgrep's): the
//! binary is linked once and the helpers are written once, in `util`.

mod benchmarks;
mod cli;
mod cost;
mod data_pull;
mod guards;
mod judge_eval;
mod shards;
mod snapshots;
mod util;
mod viewer;
mod workers;
