//! Each launcher, the channel on fd 3, the protocol's variables, and nothing else inherited.

use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::{PATIENCE, TestDir, fixture, fixtures};

#[test]
fn python_child_gets_fd_3_the_variables_and_nothing_else() {
    let t = TestDir::new();
    let config = t.config(json!([{
        "name": "py", "script": fixture("child.py"), "args": ["report", "x y"],
        "env": {"FROM_CONFIG": 42}
    }]));
    // An fd the supervisor inherits without close-on-exec must not reach its children.
    let (leak_r, leak_w) = nix::unistd::pipe().expect("pipe");
    let leaked = leak_w.as_raw_fd();
    let mut cmd = t.command(&["run", config.to_str().expect("utf-8")]);
    // SAFETY: fcntl on an fd we own, in the child before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            libc::fcntl(leaked, libc::F_SETFD, 0);
            Ok(())
        });
    }
    let mut sup = cmd.spawn().expect("start");
    drop(leak_r);
    let r = t.wait_event("py", "report");
    let env = &r["env"];
    assert_eq!(env["PM_CHANNEL_FD"], "3");
    assert_eq!(env["PM_PROTOCOL"], "2");
    // The identity of fd 3, which an SDK checks before it takes the channel.
    assert_eq!(env["PM_CHANNEL_ID"], r["fd3_id"]);
    assert_eq!(env["PM_SERVICE_NAME"], "py");
    assert_eq!(env["FROM_CONFIG"], "42");
    assert_eq!(
        env["NODE_CHANNEL_FD"],
        json!(null),
        "no Node variables for Python"
    );
    assert_eq!(env["PYTHONUNBUFFERED"], "1");
    assert_eq!(r["argv"][1], "report");
    assert_eq!(r["argv"][2], "x y");
    let fds = r["fds"].as_object().expect("fds");
    assert!(
        fds["3"].as_str().expect("fd 3").starts_with("socket:"),
        "{fds:?}"
    );
    let extra: Vec<_> = fds
        .keys()
        .filter(|k| !["0", "1", "2", "3"].contains(&k.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "only fds 0-3 may be open in a child, found {fds:?}"
    );
    // A session of its own.
    assert_eq!(r["pgid"], r["pid"]);
    assert_eq!(r["sid"], r["pid"]);
    drop(leak_w);
    sup.kill().expect("kill");
    sup.wait().expect("reap");
}

#[test]
fn node_child_gets_its_native_ipc_channel() {
    let t = TestDir::new();
    let config =
        t.config(json!([{"name": "js", "script": fixture("child.js"), "args": ["report"]}]));
    let _sup = t.run(&config);
    let r = t.wait_event("js", "report");
    assert_eq!(
        r["connected"], true,
        "process.send exists and is connected: {r}"
    );
    assert_eq!(r["env"]["PM_CHANNEL_FD"], "3");
    assert_eq!(r["env"]["PM_PROTOCOL"], "2");
    // Node's own channel is the socket PM_CHANNEL_ID names.
    assert_eq!(r["env"]["PM_CHANNEL_ID"], r["channelId"]);
    // Node consumed NODE_CHANNEL_FD, proof that it was set and used.
    assert_eq!(r["env"]["NODE_CHANNEL_FD"], json!(null));
}

#[test]
fn executable_runs_directly_and_interpreter_overrides() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "sh", "script": fixture("report.sh"), "args": ["a", "b"]},
        {"name": "forced", "script": fixture("child.py"), "args": ["report"], "interpreter": "python3"},
        {"name": "relative", "script": "child.py", "cwd": fixtures().display().to_string(), "args": ["report"]}
    ]));
    let _sup = t.run(&config);
    let sh = t.wait_event("sh", "report");
    assert_eq!(sh["argv"][0], "a b");
    assert_eq!(sh["channel"], "3");
    let forced = t.wait_event("forced", "report");
    assert!(
        forced["argv"][0]
            .as_str()
            .expect("argv")
            .ends_with("child.py")
    );
    let rel = t.wait_event("relative", "report");
    assert_eq!(rel["cwd"], fixtures().display().to_string());
}

#[test]
fn a_service_that_cannot_launch_is_reported_and_the_others_run() {
    let t = TestDir::new();
    t.write("not-executable", "#!/bin/sh\n");
    let config = t.config(json!([
        {"name": "missing", "script": "missing.py"},
        {"name": "noexec", "script": "not-executable"},
        {"name": "nointerp", "script": "x", "interpreter": "no-such-interpreter-pm"},
        {"name": "fine", "script": fixture("child.py"), "args": ["report"]}
    ]));
    let mut sup = t.run(&config);
    t.wait_event("fine", "report");
    let out = sup.wait_stdout("nointerp pm  | cannot launch");
    assert!(
        out.contains("missing pm  | cannot launch: script not found:"),
        "{out}"
    );
    assert!(out.contains("missing.py"), "{out}");
    assert!(
        out.contains("noexec pm  | cannot launch: not executable:"),
        "{out}"
    );
    assert!(out.contains("no-such-interpreter-pm"), "{out}");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    t.wait_all_gone(Duration::from_secs(5))
        .expect("nothing left");
}

#[test]
fn output_without_log_goes_to_stdout_prefixed_and_with_log_to_the_file() {
    let t = TestDir::new();
    t.write("hello.sh", "#!/bin/sh\necho \"to stdout\"\necho \"to stderr\" >&2\nprintf 'no newline'\nexec sleep 1000\n");
    std::fs::set_permissions(
        t.path().join("hello.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let config = t.config(json!([
        {"name": "plain", "script": "hello.sh"},
        {"name": "logged", "script": "hello.sh", "log": "logs/logged.log"}
    ]));
    let mut sup = t.run(&config);
    let out = sup.wait_stdout("plain err | to stderr");
    assert!(out.contains("plain out | to stdout"), "{out}");
    let log = t.path().join("logs/logged.log");
    crate::support::poll(PATIENCE, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("logged err | to stderr"))
    })
    .expect("log file has the lines");
    sup.signal(Signal::SIGINT);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    // The unterminated last line is written when the stream ends.
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(log.contains("logged out | no newline\n"), "{log}");
    assert!(log.contains("logged pm  | stopped"), "{log}");
    assert!(!log.contains("plain"), "{log}");
}

#[test]
fn a_folder_given_as_script_is_reported_as_a_folder() {
    let t = TestDir::new();
    std::fs::create_dir(t.path().join("tool")).expect("mkdir");
    std::fs::create_dir(t.path().join("pkg.py")).expect("mkdir");
    let config = t.config(json!([
        {"name": "tool", "script": "tool", "restartAt": []},
        {"name": "pkg", "script": "pkg.py", "restartAt": []}
    ]));
    let mut sup = t.run(&config);
    crate::support::socket_path(&t);
    let rows = crate::support::poll(PATIENCE, || {
        let rows = crate::restart::ls(&t);
        rows.iter().all(|r| r["state"] == "failed").then_some(rows)
    })
    .expect("both failed to launch");
    for r in &rows {
        let e = r["error"].as_str().unwrap_or("");
        assert!(e.contains("is a folder, not a file"), "{r}");
    }
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}
