//! Log files that fight back: rotations that cannot rename, files moved away under load, FIFOs,
//! rotation storms and full disks. None of them may crash or stall the supervisor, delay another
//! service's lines, or hold up a shutdown.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::{
    Conn, OTHER_UID, PATIENCE, Supervisor, TestDir, as_user, is_root, poll, status_within,
};

/// A Python service written into the test's folder.
fn py(t: &TestDir, name: &str, code: &str) -> String {
    t.write(name, code).display().to_string()
}

/// Prints `tick <unix time>` every 20 ms.
const CANARY: &str =
    "import time\nwhile True:\n    print('tick', time.time(), flush=True)\n    time.sleep(0.02)\n";

/// Writes ~100-byte lines as fast as the pipe takes them.
const FLOOD: &str = "import os\nline = b'flood ' + b'x' * 90 + b'\\n'\nbuf = line * 1000\nwhile True:\n    os.write(1, buf)\n";

/// A line every 10 ms.
const CHATTY: &str = "import time\ni = 0\nwhile True:\n    print('line', i, 'y' * 60, flush=True)\n    i += 1\n    time.sleep(0.01)\n";

/// The time of the newest `tick` of `svc` in `log`.
fn last_tick(log: &Path, svc: &str) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    let mark = format!(" {svc} out | tick ");
    text.lines()
        .rev()
        .find_map(|l| l.split_once(&mark)?.1.trim().parse().ok())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Asserts that the canary's lines keep reaching its log for `how_long`: at every check, its
/// newest tick is less than a second old.
fn canary_keeps_flowing(log: &Path, how_long: Duration) {
    let end = Instant::now() + how_long;
    let mut worst: f64 = 0.0;
    while Instant::now() < end {
        // A moment of scheduling noise on a loaded machine is not a stall: poll a little.
        let age = poll(Duration::from_millis(500), || {
            let age = now() - last_tick(log, "canary")?;
            (age < 1.0).then_some(age)
        })
        .unwrap_or_else(|| {
            panic!(
                "the canary's log stalled: newest tick {:?} s old",
                last_tick(log, "canary").map(|t| now() - t)
            )
        });
        worst = worst.max(age);
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("canary: newest line at most {:.0} ms old", worst * 1000.0);
}

/// SIGTERM, then the exit code and how long the exit took.
fn stop(sup: &mut Supervisor) -> (Option<i32>, Duration) {
    let start = Instant::now();
    sup.signal(Signal::SIGTERM);
    let code = sup.wait(PATIENCE).and_then(|s| s.code());
    (code, start.elapsed())
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

#[test]
fn a_log_folder_made_read_only_stops_rotation_not_the_supervisor() {
    let t = TestDir::new();
    let logs = t.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir");
    let config = t.config(json!([{"name": "c", "script": py(&t, "chatty.py", CHATTY),
        "log": "logs/c.log", "logMaxSize": 4096, "logKeep": 2}]));
    // Root may rename in a read-only folder: as root, the supervisor runs as another user.
    let mut cmd = t.command(&["run", config.to_str().expect("utf-8")]);
    if is_root() {
        chown_tree(t.path(), OTHER_UID);
        as_user(&mut cmd, OTHER_UID);
    }
    let mut sup = Supervisor::from_child(cmd.spawn().expect("start"), t.path());
    let log = logs.join("c.log");
    poll(PATIENCE, || logs.join("c.log.1").exists().then_some(())).expect("a first rotation");
    chmod(&logs, 0o555);
    // Rotations now fail: the file grows past logMaxSize instead, nothing is lost, and the
    // failure is reported once.
    poll(PATIENCE, || {
        (std::fs::metadata(&log).ok()?.len() > 3 * 4096).then_some(())
    })
    .unwrap_or_else(|| panic!("the log stopped growing; stderr: {}", t.stderr()));
    let stderr = t.stderr();
    assert!(
        sup.child.try_wait().expect("wait").is_none(),
        "the supervisor died: {stderr}"
    );
    assert_eq!(
        stderr.matches("cannot rotate").count(),
        1,
        "reported once: {stderr}"
    );
    let rows = Conn::open(&t).ask(json!({"type": "list"}));
    assert_eq!(rows["result"][0]["state"], "running", "{rows}");
    assert_eq!(rows["result"][0]["restarts"], 0, "{rows}");
    // The folder is writable again: rotation resumes and says so.
    chmod(&logs, 0o755);
    poll(PATIENCE, || {
        t.stderr()
            .contains("log rotation works again")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("rotation never resumed: {}", t.stderr()));
    poll(PATIENCE, || {
        (std::fs::metadata(&log).ok()?.len() <= 4096).then_some(())
    })
    .expect("the file is rotated again");
    let (code, _) = stop(&mut sup);
    assert_eq!(code, Some(0), "{}", t.stderr());
    // Whole lines only, in every file.
    for name in ["c.log", "c.log.1", "c.log.2"] {
        let text = std::fs::read_to_string(logs.join(name)).unwrap_or_default();
        for l in text.lines() {
            assert!(
                l.contains(" c out | line ") || l.contains(" c pm  | "),
                "{name}: {l:?}"
            );
        }
    }
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Gives a folder and everything in it to `uid`, so a supervisor running as that user can
/// work in the test's folder.
fn chown_tree(p: &Path, uid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(uid)).expect("chown");
    if p.is_dir() {
        for e in std::fs::read_dir(p).expect("read_dir").flatten() {
            chown_tree(&e.path(), uid);
        }
    }
}

#[test]
fn a_log_moved_away_again_and_again_under_load_is_created_again() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "m", "script": py(&t, "chatty.py", CHATTY),
        "log": "m.log", "logMaxSize": 4096, "logKeep": 3}]));
    let mut sup = t.run(&config);
    let log = t.path().join("m.log");
    poll(PATIENCE, || log.exists().then_some(())).expect("log");
    // As logrotate does, twenty times in a row, and once more by deleting.
    let mut moved = Vec::new();
    for i in 0..20 {
        poll(PATIENCE, || log.exists().then_some(())).expect("the log is created again");
        let to = t.path().join(format!("moved-{i}"));
        if std::fs::rename(&log, &to).is_ok() {
            moved.push(to);
        }
        std::thread::sleep(Duration::from_millis(60));
    }
    poll(PATIENCE, || log.exists().then_some(())).expect("log");
    std::fs::remove_file(&log).expect("rm");
    assert!(
        sup.child.try_wait().expect("wait").is_none(),
        "the supervisor died: {}",
        t.stderr()
    );
    let before = last_line_number(&log);
    poll(PATIENCE, || (last_line_number(&log) > before).then_some(()))
        .unwrap_or_else(|| panic!("no new lines in m.log; stderr: {}", t.stderr()));
    let rows = Conn::open(&t).ask(json!({"type": "list"}));
    assert_eq!(rows["result"][0]["state"], "running", "{rows}");
    let (code, _) = stop(&mut sup);
    assert_eq!(code, Some(0), "{}", t.stderr());
    for p in moved.iter().chain([&log]) {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        for l in text.lines() {
            assert!(
                l.contains(" m out | line ") || l.contains(" m pm  | "),
                "{p:?}: {l:?}"
            );
        }
    }
}

fn last_line_number(log: &Path) -> i64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .rev()
        .find_map(|l| l.split_once(" | line ")?.1.split(' ').next()?.parse().ok())
        .unwrap_or(-1)
}

#[test]
fn log_paths_that_are_not_regular_files_are_refused_at_config_time() {
    let t = TestDir::new();
    mkfifo(&t.path().join("fifo.log"));
    std::fs::create_dir(t.path().join("folder.log")).expect("mkdir");
    for (log, what) in [
        ("fifo.log", "a FIFO"),
        ("folder.log", "a folder"),
        ("/dev/null", "a device"),
    ] {
        let config = t.config(json!([{"name": "x", "script": "/bin/true", "log": log}]));
        let status = status_within(
            &mut t.command(&["run", config.to_str().expect("utf-8")]),
            Duration::from_secs(10),
        );
        let err = t.stderr();
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{log}: {err}");
        assert!(
            err.contains("services[0].log") && err.contains(what) && err.contains(":1:"),
            "{log}: {err}"
        );
    }
    // The same for a service started over the control channel.
    let config = t.config(json!([]));
    let mut sup = t.run(&config);
    let r = Conn::open(&t).ask(
        json!({"type": "start", "spec": {"script": "/bin/true", "log": t.path().join("fifo.log")}}),
    );
    assert_eq!(r["code"], "bad_spec", "{r}");
    assert!(
        r["error"].as_str().unwrap_or("").contains("spec.log"),
        "{r}"
    );
    assert_eq!(stop(&mut sup).0, Some(0));
}

#[test]
fn a_log_replaced_by_a_fifo_stalls_nothing() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "canary", "script": py(&t, "canary.py", CANARY), "log": "canary.log"},
        {"name": "flood", "script": py(&t, "flood.py", FLOOD), "log": "flood.log", "logMaxSize": 0}
    ]));
    let mut sup = t.run(&config);
    let flood = t.path().join("flood.log");
    poll(PATIENCE, || {
        (std::fs::metadata(&flood).ok()?.len() > 1_000_000).then_some(())
    })
    .expect("flooding");
    // The file becomes a FIFO that someone holds open and never reads: a writer that opened it
    // would block as soon as its 64 KiB are full.
    std::fs::remove_file(&flood).expect("rm");
    mkfifo(&flood);
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&flood)
        .expect("open the FIFO for reading");
    canary_keeps_flowing(&t.path().join("canary.log"), Duration::from_secs(3));
    let (code, took) = stop(&mut sup);
    assert_eq!(code, Some(0), "{}", t.stderr());
    // killTimeout 200 ms, plus one second.
    assert!(
        took < Duration::from_millis(1200) + SLACK,
        "shutdown took {took:?}"
    );
    let canary = std::fs::read_to_string(t.path().join("canary.log")).expect("canary log");
    assert!(canary.contains("canary pm  | stopped"), "{canary}");
    assert!(
        t.stderr().contains("not a regular file"),
        "the FIFO is reported: {}",
        t.stderr()
    );
}

/// Room for a loaded 2-core machine in timing ceilings; the bounds stay far below what the
/// defects they guard against take (15 s or forever).
const SLACK: Duration = Duration::from_secs(2);

#[test]
fn a_rotation_storm_starves_no_other_service_and_does_not_hold_up_shutdown() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "canary", "script": py(&t, "canary.py", CANARY), "log": "canary.log"},
        {"name": "storm", "script": py(&t, "flood.py", FLOOD), "log": "storm.log",
         "logMaxSize": 4096, "logKeep": 1000}
    ]));
    let mut sup = t.run(&config);
    poll(PATIENCE, || {
        t.path().join("storm.log.100").exists().then_some(())
    })
    .expect("storming");
    canary_keeps_flowing(&t.path().join("canary.log"), Duration::from_secs(3));
    let (code, took) = stop(&mut sup);
    assert_eq!(code, Some(0), "{}", t.stderr());
    assert!(
        took < Duration::from_millis(1200) + SLACK,
        "shutdown took {took:?}"
    );
    let canary = std::fs::read_to_string(t.path().join("canary.log")).expect("canary log");
    assert!(canary.contains("canary pm  | stopped"), "{canary}");
}

#[test]
fn log_max_size_and_log_keep_have_sane_bounds() {
    let t = TestDir::new();
    for (field, value, says) in [
        (
            "logMaxSize",
            1,
            "logMaxSize: must be 0 (never rotate) or at least 4096",
        ),
        ("logKeep", 100_000, "logKeep: keeps at most 1000"),
    ] {
        let config =
            t.config(json!([{"name": "x", "script": "/bin/true", "log": "x.log", field: value}]));
        let status = status_within(
            &mut t.command(&["run", config.to_str().expect("utf-8")]),
            Duration::from_secs(10),
        );
        let err = t.stderr();
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{err}");
        assert!(err.contains(&format!("services[0].{says}")), "{err}");
    }
}

/// Runs the supervisor in a mount namespace of its own with a 256 KiB tmpfs on `dir`, so the
/// disk can be filled without touching the machine's. None (with the reason printed) when
/// mounting is not possible here.
fn run_with_small_disk(t: &TestDir, dir: &Path, config: &Path) -> Option<Supervisor> {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return None;
    }
    std::fs::create_dir_all(dir).expect("mkdir");
    let probe = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=256k tmpfs \"$0\"")
        .arg(dir)
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot mount a tmpfs in a private mount namespace here");
        return None;
    }
    // Built for its program, arguments and environment; `unshare` runs it.
    let cmd = t.command(&["run", config.to_str().expect("utf-8")]);
    let mut unshare = std::process::Command::new("unshare");
    unshare
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o size=256k tmpfs \"$0\" && exec \"$@\"")
        .arg(dir)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .current_dir(t.path());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            unshare.env(k, v);
        }
    }
    let out = |name: &str| std::fs::File::create(t.path().join(name)).expect("output file");
    unshare
        .stdin(std::process::Stdio::null())
        .stdout(out("stdout.txt"))
        .stderr(out("stderr.txt"));
    std::os::unix::process::CommandExt::process_group(&mut unshare, 0);
    Some(Supervisor::from_child(
        unshare.spawn().expect("unshare"),
        t.path(),
    ))
}

#[test]
fn a_full_disk_is_reported_once_and_writing_resumes_when_there_is_room() {
    let t = TestDir::new();
    let disk = t.path().join("disk");
    let config = t.config(json!([{"name": "d", "script": py(&t, "chatty.py", CHATTY),
        "log": "disk/d.log", "logMaxSize": 0}]));
    let Some(mut sup) = run_with_small_disk(&t, &disk, &config) else {
        return;
    };
    // The tmpfs is visible through the supervisor's own root.
    let inside = |name: &str| -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", sup.pid()))
            .join(disk.strip_prefix("/").expect("absolute"))
            .join(name)
    };
    poll(PATIENCE, || {
        (last_line_number(&inside("d.log")) > 5).then_some(())
    })
    .unwrap_or_else(|| panic!("no lines: {}", t.stderr()));
    // Fill the disk.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(inside("filler")).expect("filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    poll(PATIENCE, || {
        t.stderr()
            .contains("cannot write the log file")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("a full disk is reported: {}", t.stderr()));
    // Longer than one retry period: no second report, no "usable again" while it is full.
    std::thread::sleep(Duration::from_secs(6));
    let err = t.stderr();
    assert_eq!(err.matches("cannot write the log file").count(), 1, "{err}");
    assert!(
        !err.contains("usable again"),
        "the disk is still full: {err}"
    );
    let stuck_at = last_line_number(&inside("d.log"));
    std::fs::remove_file(inside("filler")).expect("rm filler");
    poll(PATIENCE, || {
        (last_line_number(&inside("d.log")) > stuck_at).then_some(())
    })
    .unwrap_or_else(|| panic!("writing never resumed: {}", t.stderr()));
    poll(PATIENCE, || {
        t.stderr().contains("usable again").then_some(())
    })
    .unwrap_or_else(|| panic!("recovery is reported: {}", t.stderr()));
    let err = t.stderr();
    assert_eq!(err.matches("usable again").count(), 1, "{err}");
    assert_eq!(err.matches("cannot write the log file").count(), 1, "{err}");
    // Whole lines only: the failed writes were cut back off the file.
    let text = std::fs::read(inside("d.log")).expect("log");
    for l in String::from_utf8_lossy(&text).lines() {
        assert!(
            l.contains(" d out | line ") || l.contains(" d pm  | "),
            "{l:?}"
        );
    }
    let (code, _) = stop(&mut sup);
    assert_eq!(code, Some(0), "{}", t.stderr());
}

#[test]
fn logs_of_a_service_on_a_shared_file_show_only_its_own_lines() {
    let t = TestDir::new();
    let say = |what: &str| json!(["-c", format!("while :; do echo {what}; sleep 0.05; done")]);
    let config = t.config(json!([
        {"name": "api", "script": "/bin/sh", "args": say("from-api"), "log": "shared.log"},
        {"name": "web api", "script": "/bin/sh", "args": say("from-web-api"), "log": "shared.log"},
        {"name": "api2", "script": "/bin/sh", "args": say("from-api2"), "log": "shared.log"}
    ]));
    let mut sup = t.run(&config);
    poll(PATIENCE, || {
        let s = std::fs::read_to_string(t.path().join("shared.log")).ok()?;
        (s.matches("from-web-api").count() > 3 && s.matches("from-api2").count() > 3).then_some(())
    })
    .expect("all three write");
    let out = t
        .command(&["logs", "api", "-n", "1000"])
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("logs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("api out | from-api\n"), "{text}");
    assert!(
        !text.contains("from-web-api") && !text.contains("from-api2") && !text.contains("web api"),
        "{text}"
    );
    assert_eq!(stop(&mut sup).0, Some(0));
}
