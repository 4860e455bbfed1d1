//! The `redtrace` binary: parses the command line, dispatches to the library crates, draws
//! progress, and maps outcomes to exit codes (0 done, 1 error or units failed, 2 usage: a flag,
//! a suite file or a name that cannot be resolved, 130 interrupted; a closed stdout pipe is not
//! an error). No assessment logic lives here.

#[cfg(feature = "bench")]
mod bench;
mod cli;
mod commands;
mod hints;
mod progress;

use anyhow::Result;
use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REDTRACE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            if is_broken_pipe(&error) {
                return ExitCode::SUCCESS;
            }
            print_error(&error);
            ExitCode::from(1)
        }
    }
}

/// Prints an error and its hint to stderr: no URL credentials, no control characters.
pub(crate) fn print_error(error: &anyhow::Error) {
    let message = redtrace_core::model::redact_credentials(&format!("{error:#}"));
    let message = redtrace_core::printable(&message);
    eprintln!("error: {message}");
    if let Some(hint) = hints::hint(error) {
        eprintln!("hint: {hint}");
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.command {
        Command::Run(args) => commands::run(&args, &mut out),
        Command::Judge(args) => commands::judge(&args, &mut out),
        Command::Import(args) => {
            commands::import(&args, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(args) => {
            commands::report(&args, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export(args) => {
            let lines = commands::export(&args, &mut out)?;
            out.flush()?;
            match &args.output {
                Some(path) if args.format == cli::ExportFormat::Inspect => {
                    eprintln!("wrote {lines} inspect_ai logs to {}", path.display())
                }
                Some(path) => eprintln!("wrote {lines} records to {}", path.display()),
                None => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(args) => {
            commands::plan(&args, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs(args) => {
            commands::runs(&args, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => commands::check(&args, &mut out),
        Command::Migrate(args) => {
            commands::migrate(&args, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(args) => commands::worker(&args, &mut out),
        Command::Merge(args) => {
            commands::merge(&args, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Attacks => {
            commands::attacks(&mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Data(command) => {
            commands::data(&command, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::JudgeEval(args) => {
            commands::judge_eval(&args, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::View(args) => {
            commands::view(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "bench")]
        Command::Bench(args) => {
            bench::bench(&args, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(not(feature = "bench"))]
        Command::Bench(_) => anyhow::bail!(
            "this redtrace was built without `redtrace bench`; build it with \
             `cargo build --release -p redtrace --features bench`"
        ),
    }
}
