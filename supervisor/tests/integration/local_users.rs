//! Other local users: the runtime folder cannot be swapped or shared, the control socket admits
//! only its owner, a planted state file kills nothing, and one config file is one instance
//! however its path is spelled.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::{
    Conn, OTHER_UID, PATIENCE, TestDir, is_root, poll, socket_path, status_within,
};

/// Runs `run <config>` expecting it to refuse to start; returns its stderr.
fn refused(t: &TestDir, cmd: &mut Command) -> String {
    refused_with(t, cmd, 1)
}

/// The same, with another exit code.
fn refused_with(t: &TestDir, cmd: &mut Command, code: i32) -> String {
    let status = status_within(cmd, Duration::from_secs(10));
    let err = t.stderr();
    assert_eq!(status.and_then(|s| s.code()), Some(code), "{err}");
    err
}

fn idle_config(t: &TestDir) -> PathBuf {
    t.config(json!([{"name": "idle", "script": "/bin/sleep", "args": ["1000"]}]))
}

fn mkdir(p: &Path, mode: u32) {
    std::fs::create_dir_all(p).expect("mkdir");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_symlinked_runtime_folder_is_refused() {
    let t = TestDir::new();
    // A private folder of the user's, reached through a link someone else could flip.
    let real = t.path().join("real");
    mkdir(&real, 0o700);
    std::os::unix::fs::symlink(&real, t.path().join("rt")).expect("symlink");
    let config = idle_config(&t);
    let err = refused(
        &t,
        &mut t.command(&["run", config.to_str().expect("utf-8")]),
    );
    assert!(
        err.contains("symbolic link") && err.contains("PM_RUNTIME_DIR"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&real).expect("read_dir").next().is_none(),
        "nothing was created through the link"
    );
}

#[test]
fn a_runtime_folder_others_can_enter_is_refused() {
    let t = TestDir::new();
    mkdir(&t.path().join("rt"), 0o755);
    let config = idle_config(&t);
    let err = refused(
        &t,
        &mut t.command(&["run", config.to_str().expect("utf-8")]),
    );
    assert!(
        err.contains("mode 0755") && err.contains("0700") && err.contains("PM_RUNTIME_DIR"),
        "{err}"
    );
    // The client refuses it too, rather than talk to whatever socket is there.
    let out = t.command(&["ls"]).output().expect("ls");
    assert!(!out.status.success());
    assert!(t.cli_stderr().contains("mode 0755"), "{}", t.cli_stderr());
}

#[test]
fn a_runtime_folder_taken_by_another_user_says_how_to_choose_another() {
    let t = TestDir::new();
    let tmp = t.path().join("tmp");
    mkdir(&tmp, 0o1777);
    let taken = tmp.join(format!("pm-{}", nix::unistd::geteuid()));
    if is_root() {
        mkdir(&taken, 0o700);
        std::os::unix::fs::chown(&taken, Some(OTHER_UID), Some(OTHER_UID)).expect("chown");
    } else {
        std::os::unix::fs::symlink("/", &taken).expect("symlink");
    }
    let config = idle_config(&t);
    let mut cmd = t.command(&["run", config.to_str().expect("utf-8")]);
    cmd.env_remove("PM_RUNTIME_DIR")
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", &tmp);
    let err = refused(&t, &mut cmd);
    assert!(err.contains(&taken.display().to_string()), "{err}");
    assert!(
        err.contains("PM_RUNTIME_DIR"),
        "says how to choose another folder: {err}"
    );
}

/// A process of the user's that a planted state file names: `sleep` in a group of its own.
struct Victim(std::process::Child);

impl Victim {
    fn start(t: &TestDir) -> Victim {
        let mut cmd = Command::new("/bin/sleep");
        cmd.arg("1000").env("PM_TEST_DIR", t.path());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        Victim(cmd.spawn().expect("sleep"))
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn start_time(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect(")")
            .1
            .split_whitespace()
            .collect();
        fields[19].parse().expect("start time")
    }

    fn alive(&self) -> bool {
        TestDir::alive(i64::from(self.pid()))
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the supervisor once with `state` planted as its state file by `plant`, and says whether
/// the victim survived the start.
fn survives(t: &TestDir, plant: impl FnOnce(&Path, &Victim)) -> bool {
    let config = idle_config(t);
    let rt = t.path().join("rt");
    mkdir(&rt, 0o700);
    let canonical = config.canonicalize().expect("canonical");
    let name = pm_supervisor::testing::instance_name(&canonical);
    let victim = Victim::start(t);
    plant(&rt.join(format!("{name}.state")), &victim);
    let mut sup = t.run(&config);
    // Leftovers are handled before the control socket exists.
    socket_path(t);
    let survived = poll(Duration::from_millis(500), || {
        (!victim.alive()).then_some(())
    })
    .is_none();
    sup.signal(Signal::SIGTERM);
    assert_eq!(
        sup.wait(PATIENCE).and_then(|s| s.code()),
        Some(0),
        "{}",
        t.stderr()
    );
    let _ = std::fs::remove_file(rt.join(format!("{name}.state")));
    survived
}

fn state_text(pid: i32, start_time: u64) -> String {
    json!({"supervisor": 1, "token": "deadbeef", "groups": [[pid, start_time]]}).to_string()
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_planted_state_file_kills_nothing() {
    let t = TestDir::new();
    // The state file a crashed run leaves does its job: the group it names is killed.
    assert!(
        !survives(&t, |p, v| write_mode(
            p,
            &state_text(v.pid(), v.start_time()),
            0o600
        )),
        "a genuine state file is honoured; stderr: {}",
        t.stderr()
    );
    // A start time of 0 is no wildcard.
    assert!(
        survives(&t, |p, v| write_mode(p, &state_text(v.pid(), 0), 0o600)),
        "an entry without a start time killed a process"
    );
    assert!(t.stderr().contains("start time"), "{}", t.stderr());
    // A state file others could have written is not honoured.
    assert!(
        survives(&t, |p, v| write_mode(
            p,
            &state_text(v.pid(), v.start_time()),
            0o644
        )),
        "a state file with mode 0644 was honoured"
    );
    assert!(t.stderr().contains("0644"), "{}", t.stderr());
    // Nor one reached through a symbolic link.
    assert!(
        survives(&t, |p, v| {
            let elsewhere = t.path().join("elsewhere.state");
            write_mode(&elsewhere, &state_text(v.pid(), v.start_time()), 0o600);
            std::os::unix::fs::symlink(&elsewhere, p).expect("symlink");
        }),
        "a symlinked state file was honoured"
    );
    if is_root() {
        assert!(
            survives(&t, |p, v| {
                write_mode(p, &state_text(v.pid(), v.start_time()), 0o600);
                std::os::unix::fs::chown(p, Some(OTHER_UID), Some(OTHER_UID)).expect("chown");
            }),
            "a state file owned by another user was honoured"
        );
    }
}

/// Connects to `path` as user `uid`: this thread's effective uid becomes `uid` (what the
/// supervisor sees through SO_PEERCRED) while its filesystem uid stays root, so that it can
/// reach a socket in root's private folder. Raw syscalls change the calling thread only;
/// the thread ends right after.
fn connect_as(uid: u32, path: &Path) -> std::io::Result<UnixStream> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        // SAFETY: raw credential syscalls on this thread, which exits afterwards.
        unsafe {
            let keep = libc::uid_t::MAX;
            if libc::syscall(libc::SYS_setresuid, keep, uid, keep) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::syscall(libc::SYS_setfsuid, 0);
        }
        UnixStream::connect(&path)
    })
    .join()
    .expect("connecting thread")
}

#[test]
fn a_connection_from_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: acting as a second user needs root");
        return;
    }
    let t = TestDir::new();
    let config = idle_config(&t);
    let mut sup = t.run(&config);
    let path = socket_path(&t);
    let mut other =
        Conn::from_stream(connect_as(OTHER_UID, &path).expect("connect as another uid"));
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // The write may already fail: the supervisor closed the connection.
        other.send(json!({"type": "list"}))
    }));
    match other.try_next_line(Duration::from_secs(5)) {
        Some(None) => {}
        Some(Some(v)) => panic!("another user got an answer: {v}"),
        None => panic!("the connection from another user was left open"),
    }
    // Diagnostics reach stderr through a queue of their own: the line may follow the close.
    assert!(
        crate::support::poll(PATIENCE, || t.stderr().contains("uid 65534").then_some(())).is_some(),
        "the refusal is reported: {}",
        t.stderr()
    );
    // The owner is still served.
    assert_eq!(Conn::open(&t).ask(json!({"type": "list"}))["ok"], true);
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn one_config_spelled_differently_is_still_one_instance() {
    let t = TestDir::new();
    let app = t.path().join("app");
    std::fs::create_dir(&app).expect("mkdir");
    let config = app.join("services.json");
    std::fs::write(
        &config,
        json!({"services": [{"name": "idle", "script": "/bin/sleep", "args": ["1000"]}]})
            .to_string(),
    )
    .expect("write");
    std::os::unix::fs::symlink(&config, t.path().join("link.json")).expect("symlink");
    std::os::unix::fs::symlink(&app, t.path().join("applink")).expect("symlink");
    let mut first = t.run(&config);
    socket_path(&t);
    for other in [
        "app/../app/services.json",
        "link.json",
        "applink/services.json",
        "./app//services.json",
    ] {
        // Exit code 3: another supervisor runs the instance.
        let err = refused_with(&t, &mut t.command(&["run", other]), 3);
        assert!(
            err.contains("already running") && err.contains(&first.pid().to_string()),
            "{other}: {err}"
        );
        // The client finds the instance by any spelling too.
        let out = t
            .command(&["ls", "--config", other])
            .stdout(std::process::Stdio::piped())
            .output()
            .expect("ls");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("idle"),
            "ls --config {other}: {}",
            t.cli_stderr()
        );
    }
    // Only the first one ever started its service.
    let sleeps: Vec<_> = t
        .live()
        .into_iter()
        .filter(|(_, c)| c.contains("sleep 1000"))
        .collect();
    assert_eq!(sleeps.len(), 1, "{sleeps:?}");
    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}
