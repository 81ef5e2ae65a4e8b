//! The long-running front-ends: `pm-supervisor run services.json` (a config file) and
//! `pm-supervisor serve --control-fd N` (a controlling process). Both listen on the instance's
//! control socket for the CLI, stop everything on SIGINT, SIGTERM or SIGHUP, and SIGKILL what is
//! left on a second signal.

use std::os::fd::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::control::{self, OnEof};
use crate::rate_limit::RateLimit;
use crate::runtime::{ClaimError, Instance, instance_for, runtime_dir};
use crate::supervisor::{self, Handle, Options};

/// Exit code for a config file that cannot be used.
pub const EXIT_CONFIG: u8 = 2;

/// What a supervisor process is started with.
#[derive(Debug, Default)]
pub struct Setup {
    /// Services of a config file, started first.
    pub config: Option<Config>,
    /// Instance name (runtime files and control socket).
    pub instance: String,
    /// An inherited control channel whose EOF means "stop everything and exit".
    pub control_fd: Option<RawFd>,
}

/// `pm-supervisor run <config>`.
pub fn run_config(config_path: &Path) -> ExitCode {
    init_tracing();
    let config = match Config::load(config_path) {
        Ok(c) => c,
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
pub fn serve(control_fd: Option<RawFd>, name: Option<String>, config: Option<PathBuf>) -> ExitCode {
    init_tracing();
    let control_fd = control_fd.or_else(|| std::env::var("NODE_CHANNEL_FD").ok()?.parse().ok());
    let config = match config.map(|p| Config::load(&p)).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pm-supervisor: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let instance = name
        .or_else(|| config.as_ref().and_then(|c| instance_for(&c.path).ok()))
        .unwrap_or_else(|| format!("serve-{}", std::os::unix::process::parent_id()));
    if !instance
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || instance.starts_with('.')
        || instance.len() > 64
    {
        eprintln!(
            "pm-supervisor: --name {instance:?}: use at most 64 letters, digits, '-', '_' and '.'"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    main(Setup {
        config,
        instance,
        control_fd,
    })
}

fn main(setup: Setup) -> ExitCode {
    // First, so that neither the control fd nor anything else inherited reaches a service.
    prepare_process();
    if let Some(fd) = setup.control_fd {
        if !is_socket(fd) {
            eprintln!("pm-supervisor: control fd {fd} is not an open socket");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let instance = match claim(&setup.instance) {
        Ok(i) => i,
        Err(msg) => {
            flush_diagnostics(std::time::Duration::from_millis(200));
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

fn claim(name: &str) -> Result<Instance, String> {
    let dir = runtime_dir().map_err(|e| e.to_string())?;
    Instance::claim(dir, name).map_err(|e| match e {
        ClaimError::Running(r) => format!("{r}; stop it first"),
        other => other.to_string(),
    })
}

async fn supervise(setup: Setup, instance: Instance) -> std::io::Result<()> {
    // Before anything starts, so that an early Ctrl-C is a clean stop, not a kill.
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let listener = instance.dir().bind(&instance.socket_name())?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
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
        tokio::spawn(control::serve_connection(
            stream,
            handle.clone(),
            Some(handle.subscribe()),
            base,
            OnEof::Shutdown,
        ));
    }
    for spec in setup.config.map(|c| c.services).unwrap_or_default() {
        if handle.start(spec, false).await.is_err() {
            break;
        }
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
                    tokio::spawn(control::serve_connection(
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

fn is_socket(fd: RawFd) -> bool {
    // SAFETY: fstat only writes the zeroed struct it is given.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}

/// A prefix for this run's service tags: unique per supervisor process.
fn new_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// Diagnostics of the supervisor itself go to stderr; `PM_LOG` sets the level. They are written
/// by a thread of their own from a bounded queue, so a stderr nobody reads (a pipe the launching
/// app never drains) costs diagnostics, counted, never a stall.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let Some(queue) = StderrQueue::start() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(queue)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_target(false)
        // A broken stderr (the controlling app's terminal closed) must never stop a shutdown:
        // without this, tracing reports its own write errors with eprintln!, which panics.
        .log_internal_errors(false)
        .try_init();
}

/// Diagnostic lines waiting for stderr, at most.
const STDERR_QUEUE: usize = 1024;

/// Lines queued for stderr and not written yet, for [`flush_diagnostics`].
static STDERR_PENDING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The writer the diagnostics go through: each event is formatted into a buffer of its own and
/// queued whole when the buffer is dropped, or dropped (and counted) when the queue is full.
#[derive(Debug, Clone)]
struct StderrQueue {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl StderrQueue {
    fn start() -> Option<StderrQueue> {
        use std::io::Write as _;
        use std::sync::atomic::Ordering;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(STDERR_QUEUE);
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = dropped.clone();
        std::thread::Builder::new()
            .name("pm-stderr".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let mut err = std::io::stderr();
                for line in rx {
                    let lost = counted.swap(0, Ordering::Relaxed);
                    if lost > 0 {
                        let _ = writeln!(err, "pm-supervisor: {lost} diagnostic lines were dropped: stderr was not read");
                    }
                    // A broken stderr (the app's terminal closed) discards.
                    let _ = err.write_all(&line);
                    STDERR_PENDING.fetch_sub(1, Ordering::Relaxed);
                }
            })
            .ok()?;
        Some(StderrQueue { tx, dropped })
    }
}

/// One diagnostic line being formatted.
struct StderrLine<'a> {
    buf: Vec<u8>,
    queue: &'a StderrQueue,
}

impl std::io::Write for StderrLine<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for StderrLine<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if self.buf.is_empty() {
            return;
        }
        STDERR_PENDING.fetch_add(1, Ordering::Relaxed);
        if self
            .queue
            .tx
            .try_send(std::mem::take(&mut self.buf))
            .is_err()
        {
            STDERR_PENDING.fetch_sub(1, Ordering::Relaxed);
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for StderrQueue {
    type Writer = StderrLine<'a>;

    fn make_writer(&'a self) -> StderrLine<'a> {
        StderrLine {
            buf: Vec::new(),
            queue: self,
        }
    }
}

/// Waits (at most `within`) for the queued diagnostics to reach stderr, before the process
/// exits.
pub fn flush_diagnostics(within: std::time::Duration) {
    let end = std::time::Instant::now() + within;
    while STDERR_PENDING.load(std::sync::atomic::Ordering::Relaxed) > 0
        && std::time::Instant::now() < end
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
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
