//! The `pm-supervisor` binary: a thin command line over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Process supervision for desktop apps.
#[derive(Debug, Parser)]
#[command(name = "pm-supervisor", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the services of a config file in the foreground until SIGINT, SIGTERM or SIGHUP,
    /// then stop every one of them and exit 0.
    Run {
        /// The config file: {"services": [ ... ]}.
        config: PathBuf,
    },
    /// Internal: the process that cleans up if the supervisor is killed.
    #[command(name = "__sentinel", hide = true)]
    Sentinel {
        /// The run's service-tag prefix.
        token: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => pm_supervisor::run::main(&config),
        Command::Sentinel { token } => match pm_supervisor::sentinel::run(&token) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
    }
}
