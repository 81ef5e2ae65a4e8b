//! The command line: `run` and `serve` start a supervisor (see [`super::run`]); every other
//! command is a client that talks to a running supervisor over its control socket (and
//! `completions` prints a shell's completion script). Commands that act on services take a
//! name, an id or `all`.

mod client;
mod commands;
mod logs;
mod monit;

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
    /// List the services of a running supervisor (colours unless NO_COLOR is set or stdout is
    /// not a terminal).
    #[command(visible_alias = "list")]
    Ls {
        #[command(flatten)]
        target: TargetArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Start a new service on a running supervisor: `start app.js --name web -- --port 80`,
    /// or `start --spec '{"script": "app.js"}'`.
    Start {
        #[command(flatten)]
        start: commands::StartArgs,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Stop services; returns when their processes are gone.
    Stop {
        /// A service name, a service id (`ls` shows it) or `all`.
        #[arg(value_parser = parse_services)]
        service: Services,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Restart services; returns when the new processes are launched.
    Restart {
        /// A service name, a service id or `all`.
        #[arg(value_parser = parse_services)]
        service: Services,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Stop services and forget them.
    #[command(visible_alias = "rm")]
    Delete {
        /// A service name, a service id or `all`.
        #[arg(value_parser = parse_services)]
        service: Services,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Everything about services: spec, pids, state and since when, restarts, last exits, log
    /// files, uptime, memory, CPU.
    #[command(visible_alias = "show")]
    Describe {
        /// A service name, a service id or `all`.
        #[arg(value_parser = parse_services)]
        service: Services,
        #[command(flatten)]
        target: TargetArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Stop every service (`stop all`).
    Stopall {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Send a JSON value to services (each running process gets it on its channel).
    Send {
        /// A service name, a service id or `all`.
        #[arg(value_parser = parse_services)]
        service: Services,
        /// The data, as JSON; `-` reads it from stdin.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        data: Option<String>,
        /// Read the data (JSON) from this file instead.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Read the config file again: start added services, stop and forget removed ones, restart
    /// changed ones.
    #[command(visible_alias = "update")]
    Reload {
        #[command(flatten)]
        target: TargetArgs,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print events as they happen (starts, exits, restarts, messages from children) until
    /// interrupted.
    Events {
        #[command(flatten)]
        target: TargetArgs,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print a completion script: `pm-supervisor completions bash > ~/.local/share/bash-completion/completions/pm-supervisor`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print log lines: one service's, or every service's interleaved in time order. Reads the
    /// log files (rotated ones too), so it works without a supervisor given --config FILE;
    /// services without a "log" file show the lines the running supervisor keeps in memory.
    Logs {
        /// Service name (default: every service).
        name: Option<String>,
        /// Keep printing new lines, through rotation (file-change notification, no polling).
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines to print first.
        #[arg(short = 'n', long, default_value_t = logs::DEFAULT_LINES)]
        lines: usize,
        /// Only lines since then: a duration back from now (10m, 1h 30m) or an RFC 3339 time.
        #[arg(long, value_name = "WHEN", value_parser = logs::parse_since)]
        since: Option<std::time::SystemTime>,
        /// Only stderr lines.
        #[arg(long)]
        err: bool,
        /// One JSON object per line: {"time","service","stream","text"}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// A live view: every service's state, pid, uptime, restarts, CPU and memory with their
    /// history, and the selected one's log; keys restart, stop and start it (`?` lists them).
    #[command(visible_alias = "top")]
    Monit {
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
        Command::Start { start, target } => exit_code(commands::start(&target.into(), start)),
        Command::Stop { service, target } => {
            exit_code(commands::act(&target.into(), Request::Stop(service)))
        }
        Command::Restart { service, target } => {
            exit_code(commands::act(&target.into(), Request::Restart(service)))
        }
        Command::Delete { service, target } => {
            exit_code(commands::act(&target.into(), Request::Delete(service)))
        }
        Command::Describe {
            service,
            target,
            json,
        } => exit_code(commands::describe(&target.into(), service, json)),
        Command::Stopall { target } => exit_code(commands::act(&target.into(), Request::Stopall)),
        Command::Send {
            service,
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
            exit_code(commands::send(&target.into(), service, input))
        }
        Command::Reload { target, json } => exit_code(commands::reload(&target.into(), json)),
        Command::Events { target, json } => exit_code(commands::events(&target.into(), json)),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "pm-supervisor",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Logs {
            name,
            follow,
            lines,
            since,
            err,
            json,
            target,
        } => {
            let opts = logs::Options {
                name,
                lines,
                since,
                err_only: err,
                json,
                follow,
            };
            exit_code(logs::logs(&target.into(), &opts))
        }
        Command::Monit { target } => exit_code(monit::monit(&target.into())),
        Command::Sentinel { token } => match crate::process::sentinel::run(&token) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
    }
}

/// A service selector on the command line: `all`, an id (a number, as `ls` shows it), or a
/// name.
fn parse_services(s: &str) -> Result<Services, String> {
    if s.is_empty() {
        return Err("give a service name, a service id or `all`".into());
    }
    if s == "all" {
        return Ok(Services::All);
    }
    match s.parse::<u64>() {
        Ok(id) => Ok(Services::Id(id)),
        Err(_) => Ok(Services::Named(s.to_owned())),
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
