//! The command line: `run` and `serve` start a supervisor (see [`super::run`]); every other
//! command is a client that talks to a running supervisor over its control socket.

mod client;
mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::control::{Command as Request, Services};
use client::{CliError, Target};
use commands::DataInput;

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
        /// Restart every service when its files change (as `"watch": true`, for services
        /// that do not set `watch`).
        #[arg(long)]
        watch: bool,
    },
    /// Run for a controlling process (an Electron main process): requests arrive on an
    /// inherited control channel, and when it closes every service is stopped.
    Serve {
        /// The control channel's fd (default: NODE_CHANNEL_FD, set by Node's 'ipc' stdio).
        #[arg(long)]
        control_fd: Option<i32>,
        /// Instance name, for the control socket and for cleaning up after a crash; use the
        /// app's name so that its next launch finds what a crashed run left.
        #[arg(long)]
        name: Option<String>,
        /// Services to start first.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List the services of a running supervisor.
    Ls {
        #[command(flatten)]
        target: TargetArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Stop every service with this name; returns when their processes are gone.
    Stop {
        /// Service name.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Restart every service with this name; returns when the new processes are launched.
    Restart {
        /// Service name.
        name: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Stop every service.
    Stopall {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Send a JSON value to every service with this name.
    Send {
        /// Service name.
        name: String,
        /// The data, as JSON; `-` reads it from stdin.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        data: Option<String>,
        /// Read the data (JSON) from this file instead.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Print a service's log lines.
    Logs {
        /// Service name.
        name: String,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
        /// How many lines to print first.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Internal: the process that cleans up if the supervisor is killed.
    #[command(name = "__sentinel", hide = true)]
    Sentinel {
        /// The run's service-tag prefix.
        token: String,
    },
}

/// Which running supervisor to talk to (default: the only one).
#[derive(Debug, Args)]
struct TargetArgs {
    /// Its instance name (`serve --name`).
    #[arg(long, global = true)]
    instance: Option<String>,
    /// The config file it runs (`run FILE`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

impl From<TargetArgs> for Target {
    fn from(a: TargetArgs) -> Target {
        Target {
            instance: a.instance,
            config: a.config,
        }
    }
}

/// Parses the command line and runs the command.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, watch } => super::run::run_config(&config, watch),
        Command::Serve {
            control_fd,
            name,
            config,
        } => super::run::serve(control_fd, name, config),
        Command::Ls { target, json } => exit_code(commands::ls(&target.into(), json)),
        Command::Stop { name, target } => exit_code(commands::act(
            &target.into(),
            Request::Stop(Services::Named(name)),
        )),
        Command::Restart { name, target } => exit_code(commands::act(
            &target.into(),
            Request::Restart(Services::Named(name)),
        )),
        Command::Stopall { target } => exit_code(commands::act(&target.into(), Request::Stopall)),
        Command::Send {
            name,
            data,
            file,
            target,
        } => {
            let input = match (data, file) {
                (_, Some(path)) => DataInput::File(path),
                (Some(d), None) if d == "-" => DataInput::Stdin,
                (Some(d), None) => DataInput::Arg(d),
                (None, None) => DataInput::Stdin,
            };
            exit_code(commands::send(&target.into(), &name, input))
        }
        Command::Logs {
            name,
            follow,
            lines,
            target,
        } => exit_code(commands::logs(&target.into(), &name, follow, lines)),
        Command::Sentinel { token } => match crate::process::sentinel::run(&token) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
    }
}

/// Turns a client command's error into one line and exit code 1.
fn exit_code(r: Result<(), CliError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pm-supervisor: {e}");
            ExitCode::FAILURE
        }
    }
}
