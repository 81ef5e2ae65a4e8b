//! Test support: a temp folder per test, the real binary, and cleanup of everything a test
//! started. Every process a test starts carries `PM_TEST_DIR=<its folder>` in its environment
//! (the supervisor passes its environment on), so teardown finds each one by that mark and kills
//! it by pid, even when the test failed half-way.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_pm-supervisor");

/// Long enough for a loaded 2-core machine; a passing test never waits this long.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// `tests/fixtures` at the root of the repository.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .canonicalize()
        .expect("tests/fixtures exists")
}

/// Polls `f` every 10 ms until it returns Some, or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A test's own folder, and the mark of its processes.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix("pm-test-")
            .tempdir()
            .expect("tempdir");
        TestDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `{"services": services}` to services.json and returns its path.
    pub fn config(&self, services: Value) -> PathBuf {
        self.write(
            "services.json",
            &serde_json::json!({ "services": services }).to_string(),
        )
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p
    }

    /// A command for the binary with this test's environment. stdout and stderr go to files:
    /// `stdout.txt` and `stderr.txt` for `run` and `serve`, `cli-stdout.txt` and
    /// `cli-stderr.txt` for the client commands.
    pub fn command(&self, args: &[&str]) -> Command {
        let prefix = if matches!(args.first(), Some(&"run" | &"serve")) {
            ""
        } else {
            "cli-"
        };
        let file = |name: &str| {
            std::fs::File::create(self.path().join(format!("{prefix}{name}"))).expect("output file")
        };
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.path())
            .env("PM_TEST_DIR", self.path())
            .env("PM_RUNTIME_DIR", self.path().join("rt"))
            .env("PM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file("stdout.txt"))
            .stderr(file("stderr.txt"));
        // Its own process group: signals meant for it never reach the test runner.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd
    }

    /// `pm-supervisor run <config>`.
    pub fn run(&self, config: &Path) -> Supervisor {
        let child = self
            .command(&["run", config.to_str().expect("utf-8 path")])
            .spawn()
            .expect("start pm-supervisor");
        Supervisor {
            child,
            dir: self.path().to_path_buf(),
        }
    }

    /// Every event the fixtures wrote so far.
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.path().join("events.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for an event of `kind` from service `svc`.
    pub fn wait_event(&self, svc: &str, kind: &str) -> Value {
        poll(PATIENCE, || {
            self.events()
                .into_iter()
                .find(|e| e["svc"] == svc && e["event"] == kind)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {kind:?} event from {svc:?}; events: {:?}",
                self.events()
            )
        })
    }

    /// Waits for `n` events of `kind`.
    pub fn wait_events(&self, kind: &str, n: usize) -> Vec<Value> {
        poll(PATIENCE, || {
            let found: Vec<Value> = self
                .events()
                .into_iter()
                .filter(|e| e["event"] == kind)
                .collect();
            (found.len() >= n).then_some(found)
        })
        .unwrap_or_else(|| {
            panic!(
                "fewer than {n} {kind:?} events; events: {:?}",
                self.events()
            )
        })
    }

    /// Live (not zombie) processes carrying this test's mark: (pid, command line).
    pub fn live(&self) -> Vec<(i32, String)> {
        let mark = format!("PM_TEST_DIR={}", self.path().display());
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if !env.split(|&b| b == 0).any(|kv| kv == mark.as_bytes()) {
                continue;
            }
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next());
            if matches!(state, None | Some('Z') | Some('X')) {
                continue;
            }
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            out.push((pid, cmd.trim().to_owned()));
        }
        out
    }

    /// Waits until no marked process is alive; returns how long that took.
    pub fn wait_all_gone(&self, timeout: Duration) -> Result<Duration, Vec<(i32, String)>> {
        let start = Instant::now();
        poll(timeout, || self.live().is_empty().then(|| start.elapsed())).ok_or_else(|| self.live())
    }

    /// Whether a pid is alive (and not a zombie).
    pub fn alive(pid: i64) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next());
        !matches!(state, None | Some('Z') | Some('X'))
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path().join("stderr.txt")).unwrap_or_default()
    }

    /// stderr of the last client command.
    pub fn cli_stderr(&self) -> String {
        std::fs::read_to_string(self.path().join("cli-stderr.txt")).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.path().join("stdout.txt")).unwrap_or_default()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // Several rounds: a dying process may have forked just before.
        for _ in 0..5 {
            let live = self.live();
            if live.is_empty() {
                break;
            }
            for (pid, _) in live {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A running `pm-supervisor`.
pub struct Supervisor {
    pub child: Child,
    dir: PathBuf,
}

impl Supervisor {
    /// Wraps a supervisor started by hand from [`TestDir::command`].
    pub fn from_child(child: Child, dir: &Path) -> Supervisor {
        Supervisor {
            child,
            dir: dir.to_path_buf(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("signal the supervisor");
    }

    /// Waits for it to exit.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll(timeout, || self.child.try_wait().expect("try_wait"))
    }

    /// Waits for a line containing `text` on its stdout (where services without `log` write).
    pub fn wait_stdout(&self, text: &str) -> String {
        let path = self.dir.join("stdout.txt");
        poll(PATIENCE, || {
            let s = std::fs::read_to_string(&path).unwrap_or_default();
            s.contains(text).then_some(s)
        })
        .unwrap_or_else(|| {
            panic!(
                "stdout never showed {text:?}; stdout:\n{}\nstderr:\n{}",
                std::fs::read_to_string(&path).unwrap_or_default(),
                std::fs::read_to_string(self.dir.join("stderr.txt")).unwrap_or_default()
            )
        })
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Path of a fixture as a JSON string.
pub fn fixture(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

/// The Rust SDK's test child (`child-sdk-rust/examples/sdk_child.rs`), built once per test run
/// with the SDK's `tokio` feature.
pub fn sdk_child_bin() -> String {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/examples/sdk_child");
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "-q",
                "-p",
                "pm-child",
                "--example",
                "sdk_child",
                "--features",
                "tokio",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the sdk_child example failed");
    });
    bin.display().to_string()
}

/// The colour the supervisor gives a label on a terminal.
pub fn label_colour(label: &str) -> u8 {
    pm_supervisor::testing::label_colour(label)
}

/// Milliseconds of the day of each log line containing `what` (from its timestamp,
/// `2026-11-26T12:21:02.123Z ...`).
pub fn line_times(out: &str, what: &str) -> Vec<i64> {
    out.lines()
        .filter(|l| l.contains(what))
        .map(|l| {
            let t = &l[11..23];
            let n = |x: &str| x.parse::<i64>().expect("digits");
            ((n(&t[0..2]) * 60 + n(&t[3..5])) * 60 + n(&t[6..8])) * 1000 + n(&t[9..12])
        })
        .collect()
}

/// Whether the tests run as root (some need to act as a second user).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A user id that is not ours, for tests that need a second local user (run as root).
pub const OTHER_UID: u32 = 65534;

/// Makes `cmd` run as `uid` (and its group), with no supplementary groups. Needs root.
pub fn as_user(cmd: &mut Command, uid: u32) {
    // SAFETY: setgroups, setgid and setuid are async-signal-safe; they run in the forked child.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            if libc::setgroups(0, std::ptr::null()) == -1
                || libc::setgid(uid) == -1
                || libc::setuid(uid) == -1
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// The control socket of the only supervisor running in this test's runtime folder.
pub fn socket_path(t: &TestDir) -> PathBuf {
    let rt = t.path().join("rt");
    poll(PATIENCE, || {
        std::fs::read_dir(&rt)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "sock"))
    })
    .unwrap_or_else(|| {
        panic!(
            "no control socket in {}; stderr: {}",
            rt.display(),
            t.stderr()
        )
    })
}

/// A client on a supervisor's control socket. Reads time out, so that a test waiting for a
/// supervisor that does not answer fails instead of hanging.
pub struct Conn {
    stream: std::io::BufReader<std::os::unix::net::UnixStream>,
    next: u64,
}

impl Conn {
    /// Connects to the control socket of the test's supervisor.
    pub fn open(t: &TestDir) -> Conn {
        let path = socket_path(t);
        let s = poll(PATIENCE, || {
            std::os::unix::net::UnixStream::connect(&path).ok()
        })
        .expect("connect to the control socket");
        Conn::from_stream(s)
    }

    pub fn from_stream(s: std::os::unix::net::UnixStream) -> Conn {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        Conn {
            stream: std::io::BufReader::new(s),
            next: 0,
        }
    }

    pub fn stream(&self) -> &std::os::unix::net::UnixStream {
        self.stream.get_ref()
    }

    /// Sends a request (an id is added) and returns its id.
    pub fn send(&mut self, mut req: Value) -> u64 {
        use std::io::Write;
        self.next += 1;
        req["id"] = self.next.into();
        let mut line = serde_json::to_vec(&req).expect("json");
        line.push(b'\n');
        self.stream
            .get_mut()
            .write_all(&line)
            .expect("write request");
        self.next
    }

    /// The next line, if one comes within `timeout`; None on timeout. Panics on EOF.
    pub fn next_line(&mut self, timeout: Duration) -> Option<Value> {
        match self.try_next_line(timeout) {
            None => None,
            Some(None) => panic!("the supervisor closed the connection"),
            Some(Some(v)) => Some(v),
        }
    }

    /// Like [`next_line`](Self::next_line), but Some(None) on EOF.
    pub fn try_next_line(&mut self, timeout: Duration) -> Option<Option<Value>> {
        use std::io::BufRead;
        let end = Instant::now() + timeout;
        let mut line = String::new();
        loop {
            match self.stream.read_line(&mut line) {
                Ok(0) => return Some(None),
                Ok(_) if line.ends_with('\n') => {
                    return Some(Some(
                        serde_json::from_str(&line).expect("the supervisor writes JSON lines"),
                    ));
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(None),
                Err(e) => panic!("read: {e}"),
            }
            if Instant::now() >= end {
                return None;
            }
        }
    }

    /// Sends a request and waits up to `timeout` for its reply.
    pub fn ask_within(&mut self, req: Value, timeout: Duration) -> Option<Value> {
        let id = self.send(req);
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let v = self.next_line(left)?;
            if v["type"] == "reply" && v["id"] == id {
                return Some(v);
            }
        }
    }

    /// Sends a request and returns its reply.
    pub fn ask(&mut self, req: Value) -> Value {
        let what = req.to_string();
        self.ask_within(req, PATIENCE)
            .unwrap_or_else(|| panic!("no reply to {what} within {PATIENCE:?}"))
    }
}

/// Spawns `cmd` and waits up to `timeout` for it to exit; a process still running then is
/// killed, and None returned.
pub fn status_within(cmd: &mut Command, timeout: Duration) -> Option<ExitStatus> {
    let mut child = cmd.spawn().expect("spawn");
    let status = poll(timeout, || child.try_wait().expect("try_wait"));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}
