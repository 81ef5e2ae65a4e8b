//! The long-running front-ends: `pm-supervisor run services.json` (a config file) and
//! `pm-supervisor serve --control-fd N` (a controlling process). Both listen on the instance's
//! control socket for the CLI, stop everything on SIGINT, SIGTERM or SIGHUP, and SIGKILL what is
//! left on a second signal.

use std::os::fd::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use super::connection::{self, OnEof};
use super::diagnostics::{flush_diagnostics, init_tracing};
use crate::config::{Config, ServiceSpec};
use crate::control::{EXIT_ALREADY_RUNNING, ErrorCode, Fatal, Message};
use crate::platform;
use crate::rate_limit::RateLimit;
use crate::runtime::{ClaimError, Instance, check_instance_name, instance_for, runtime_dir};
use crate::supervisor::{self, Handle, Options};

/// Exit code for a config file (or a `serve` option) that cannot be used.
const EXIT_CONFIG: u8 = 2;

/// What a supervisor process is started with.
#[derive(Debug, Default)]
struct Setup {
    /// Services of a config file, started first.
    config: Option<Config>,
    /// Instance name (runtime files and control socket).
    instance: String,
    /// An inherited control channel whose EOF means "stop everything and exit".
    control_fd: Option<RawFd>,
}

/// `pm-supervisor run <config> [--watch]`.
pub(crate) fn run_config(config_path: &Path, watch: bool) -> ExitCode {
    init_tracing();
    let config = match Config::load(config_path) {
        Ok(mut c) => {
            if watch {
                c.services
                    .iter_mut()
                    .for_each(ServiceSpec::watch_by_default);
            }
            c
        }
        Err(e) => {
            eprintln!("pm-supervisor: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let instance = match instance_for(&config.path) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("pm-supervisor: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    main(Setup {
        config: Some(config),
        instance,
        control_fd: None,
    })
}

/// `pm-supervisor serve [--control-fd N] [--name NAME]`. Without `--control-fd`, Node's
/// `NODE_CHANNEL_FD` is used when the supervisor was spawned with an `'ipc'` slot.
pub(crate) fn serve(
    control_fd: Option<RawFd>,
    name: Option<String>,
    config: Option<PathBuf>,
) -> ExitCode {
    init_tracing();
    let control_fd = control_fd.or_else(|| std::env::var("NODE_CHANNEL_FD").ok()?.parse().ok());
    let config = match config.map(|p| Config::load(&p)).transpose() {
        Ok(c) => c,
        Err(e) => {
            let error = e.to_string();
            return refuse(control_fd, ErrorCode::BadConfig, &error, EXIT_CONFIG);
        }
    };
    let instance = name
        .or_else(|| config.as_ref().and_then(|c| instance_for(&c.path).ok()))
        .unwrap_or_else(|| format!("serve-{}", std::os::unix::process::parent_id()));
    if let Err(e) = check_instance_name(&instance) {
        let error = format!("--name {e}");
        return refuse(control_fd, ErrorCode::BadInstanceName, &error, EXIT_CONFIG);
    }
    main(Setup {
        config,
        instance,
        control_fd,
    })
}

fn main(setup: Setup) -> ExitCode {
    // First, so that neither the control fd nor anything else inherited reaches a service.
    platform::prepare_supervisor();
    if let Some(fd) = setup.control_fd {
        if !platform::is_socket(fd) {
            eprintln!("pm-supervisor: control fd {fd} is not an open socket");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let instance = match claim(&setup.instance) {
        Ok(i) => i,
        Err((code, msg)) => {
            flush_diagnostics(std::time::Duration::from_millis(200));
            let exit = if code == ErrorCode::AlreadyRunning {
                EXIT_ALREADY_RUNNING
            } else {
                1
            };
            return refuse(setup.control_fd, code, &msg, exit);
        }
    };
    let swept = instance.sweep_finished();
    if swept > 0 {
        tracing::debug!(count = swept, "removed files of finished supervisors");
    }
    let leftovers = instance.kill_leftovers();
    if leftovers > 0 {
        tracing::warn!(
            count = leftovers,
            "killed processes left by an earlier run that crashed"
        );
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pm-supervisor: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(supervise(setup, instance));
    // Services are gone by now; whatever the runtime still holds (connections) goes with it.
    drop(runtime);
    flush_diagnostics(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "pm-supervisor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn claim(name: &str) -> Result<Instance, (ErrorCode, String)> {
    let dir = runtime_dir().map_err(|e| (ErrorCode::RuntimeFolder, e.to_string()))?;
    Instance::claim(dir, name).map_err(|e| match e {
        ClaimError::Running(r) => (ErrorCode::AlreadyRunning, format!("{r}; stop it first")),
        other => (ErrorCode::RuntimeFolder, other.to_string()),
    })
}

/// The supervisor cannot run: says why on stderr and, as a `fatal` message, on the control
/// channel (so that a controlling process learns why without reading stderr), then exits with
/// `exit`.
fn refuse(control_fd: Option<RawFd>, code: ErrorCode, error: &str, exit: u8) -> ExitCode {
    eprintln!("pm-supervisor: {error}");
    if let Some(fd) = control_fd.filter(|&fd| platform::is_socket(fd)) {
        let line = Message::Fatal(Fatal {
            code,
            error: error.to_owned(),
        })
        .encode();
        // A channel whose buffer is full (the controller never reads) makes the write fail at
        // once rather than wait.
        platform::send_now(fd, &line);
    }
    ExitCode::from(exit)
}

async fn supervise(setup: Setup, instance: Instance) -> std::io::Result<()> {
    // Before anything starts, so that an early Ctrl-C is a clean stop, not a kill.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let listener = instance.dir().bind(&instance.socket_name())?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let config_path = setup.config.as_ref().map(|c| c.path.clone());
    let (handle, join) = supervisor::spawn(Options {
        token: new_token(),
        instance: Some(instance),
        sentinel: true,
        config: config_path,
    })?;
    let signals = tokio::spawn({
        let handle = handle.clone();
        async move {
            let mut first = true;
            loop {
                let name = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                    _ = hup.recv() => "SIGHUP",
                };
                if first {
                    tracing::info!("{name}: stopping every service");
                    first = false;
                    let h = handle.clone();
                    tokio::spawn(async move { h.shutdown().await });
                } else {
                    tracing::warn!("{name} again: killing every service now");
                    handle.kill_all().await;
                }
            }
        }
    });
    let base: Arc<Path> = std::env::current_dir()
        .unwrap_or_else(|_| "/".into())
        .into();
    let accept = tokio::spawn(accept_loop(listener, handle.clone(), base.clone()));
    if let Some(fd) = setup.control_fd {
        // SAFETY: the fd was handed to this process for the control channel and was checked to
        // be a socket; nothing else owns it.
        let stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
        stream.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(stream)?;
        // Subscribed here, before the config's services start below: the task's first turn
        // may come after their `started` events.
        tokio::spawn(connection::serve_connection(
            stream,
            handle.clone(),
            Some(handle.subscribe()),
            base,
            OnEof::Shutdown,
        ));
    }
    if let Some(config) = setup.config {
        // What `reload` does later, on an empty table: every service is added.
        let _ = handle.apply_config(config.services).await;
    }
    drop(handle);
    let result = join.await;
    signals.abort();
    accept.abort();
    result.map_err(std::io::Error::other)
}

/// Serves every connection on the control socket whose peer is this user (or root, who can
/// act as any user anyway, as with ssh-agent). The socket's folder admits nobody else; the
/// check on each connection is the second lock.
async fn accept_loop(listener: tokio::net::UnixListener, handle: Handle, base: Arc<Path>) {
    let me = nix::unistd::geteuid().as_raw();
    let mut refusals = RateLimit::new(5, std::time::Duration::from_secs(10));
    let mut failures = RateLimit::new(5, std::time::Duration::from_secs(10));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => match stream.peer_cred() {
                Ok(peer) if peer.uid() == me || peer.uid() == 0 => {
                    tokio::spawn(connection::serve_connection(
                        stream,
                        handle.clone(),
                        None,
                        base.clone(),
                        OnEof::Nothing,
                    ));
                }
                Ok(peer) => {
                    if let Some(more) = refusals.allow() {
                        tracing::warn!(
                            uid = peer.uid(),
                            pid = peer.pid(),
                            more_refused = more,
                            "control connection from uid {} refused: only this user may control the supervisor",
                            peer.uid()
                        );
                    }
                }
                Err(e) => {
                    if let Some(more) = refusals.allow() {
                        tracing::warn!(%e, more_refused = more, "control connection refused: its peer cannot be identified");
                    }
                }
            },
            Err(e) => {
                if let Some(more) = failures.allow() {
                    tracing::warn!(%e, more_failures = more, "control socket accept failed");
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// A prefix for this run's service tags: unique per supervisor process.
fn new_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}
