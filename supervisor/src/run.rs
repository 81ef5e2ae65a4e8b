//! `pm-supervisor run services.json`: the config-file front-end.

use std::path::Path;
use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::runtime::{ClaimError, Instance, instance_name, runtime_dir};
use crate::supervisor::{self, Options};

/// Exit code for a config file that cannot be used.
pub const EXIT_CONFIG: u8 = 2;

/// Runs the services of `config_path` until SIGINT, SIGTERM or SIGHUP, then stops them all.
/// A second signal during the stop SIGKILLs whatever is left at once.
pub fn main(config_path: &Path) -> ExitCode {
    init_tracing();
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pm-supervisor: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    prepare_process();
    let instance = match claim(&config) {
        Ok(i) => i,
        Err(msg) => {
            eprintln!("pm-supervisor: {msg}");
            return ExitCode::FAILURE;
        }
    };
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
    match runtime.block_on(serve(config, instance)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pm-supervisor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn claim(config: &Config) -> Result<Instance, String> {
    let dir = runtime_dir().map_err(|e| format!("runtime folder: {e}"))?;
    Instance::claim(&dir, &instance_name(&config.path)).map_err(|e| match e {
        ClaimError::Running(r) => format!("{r}; stop it first ({})", config.path.display()),
        other => other.to_string(),
    })
}

async fn serve(config: Config, instance: Instance) -> std::io::Result<()> {
    // Before anything starts, so that an early Ctrl-C is a clean stop, not a kill.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (handle, join) = supervisor::spawn(Options {
        token: new_token(),
        instance: Some(instance),
        sentinel: true,
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
    for spec in config.services {
        if handle.start(spec).await.is_err() {
            break;
        }
    }
    drop(handle);
    let result = join.await;
    signals.abort();
    result.map_err(std::io::Error::other)
}

/// A prefix for this run's service tags: unique per supervisor process.
fn new_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Makes the process fit to supervise: fds 0-2 open (so no child channel or log file lands on
/// them), every inherited fd close-on-exec (so nothing the supervisor was given leaks into a
/// service), and, on Linux, a child subreaper (so descendants that leave their service's group
/// are re-parented here and can be found).
pub fn prepare_process() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only reads the flags of a descriptor number.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // The lowest free number is `fd` itself.
            let _ = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(std::os::fd::IntoRawFd::into_raw_fd);
        }
    }
    set_cloexec_on_inherited();
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(%e, "cannot become a child subreaper; descendants that leave their process group may survive a stop");
    }
}

fn set_cloexec_on_inherited() {
    let dir = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let fds: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: setting FD_CLOEXEC changes no ownership; a number that is not open just fails.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags != -1 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}
