//! The control channel: an inherited fd (`serve --control-fd`) and the Unix socket.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{PATIENCE, Supervisor, TestDir, fixture, poll, sdk_child_bin};

/// A controlling process's end of the channel.
struct Controller {
    stream: BufReader<UnixStream>,
    seen: Vec<Value>,
}

impl Controller {
    fn send(&mut self, v: Value) {
        let mut line = serde_json::to_vec(&v).expect("json");
        line.push(b'\n');
        self.stream
            .get_mut()
            .write_all(&line)
            .expect("write request");
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).expect("write");
    }

    /// Reads lines until one matches; keeps every line seen.
    fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + PATIENCE;
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        loop {
            assert!(
                Instant::now() < end,
                "no {what} within {PATIENCE:?}; seen {:?}",
                self.seen
            );
            let mut line = String::new();
            match self.stream.read_line(&mut line) {
                Ok(0) => panic!(
                    "channel closed while waiting for {what}; seen {:?}",
                    self.seen
                ),
                Ok(_) => {
                    let v: Value =
                        serde_json::from_str(&line).expect("the supervisor writes JSON lines");
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The `event` names of the events seen so far, in order.
    fn event_kinds(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter(|v| v["type"] == "event")
            .filter_map(|v| v["event"].as_str().map(str::to_owned))
            .collect()
    }

    fn reply(&mut self, id: i64) -> Value {
        self.until(&format!("reply {id}"), |v| {
            v["type"] == "reply" && v["id"] == id
        })
    }
}

/// `serve --control-fd 3` with our end of a socketpair.
fn serve(t: &TestDir) -> (Supervisor, Controller) {
    serve_with(t, |_| {})
}

/// The same, with a last change to the command.
fn serve_with(
    t: &TestDir,
    adjust: impl FnOnce(&mut std::process::Command),
) -> (Supervisor, Controller) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let fd = theirs.as_raw_fd();
    let mut cmd = t.command(&["serve", "--control-fd", "3", "--name", "ctl"]);
    // SAFETY: dup2 in the child before exec; `theirs` stays open in the parent until spawned.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::dup2(fd, 3) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    adjust(&mut cmd);
    let child = cmd.spawn().expect("start serve");
    drop(theirs);
    ours.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    (
        Supervisor::from_child(child, t.path()),
        Controller {
            stream: BufReader::new(ours),
            seen: Vec::new(),
        },
    )
}

#[test]
fn a_controller_starts_sends_and_gets_events_in_order() {
    let t = TestDir::new();
    let (mut sup, mut c) = serve(&t);
    c.send(json!({"type": "start", "id": 1, "spec": {"name": "r", "script": sdk_child_bin(), "killTimeout": 5000}, "wait": "ready"}));
    let r = c.reply(1);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["state"], "running");
    assert_eq!(r["result"]["ready"], true);
    let pid = r["result"]["pid"].clone();
    c.send(json!({"type": "send", "id": 2, "name": "r", "data": {"ping": [1, 2]}}));
    assert_eq!(c.reply(2)["result"], json!({"sent": 1}));
    let echo = c.until("message event", |v| v["event"] == "message");
    assert_eq!(echo["data"], json!({"echo": {"ping": [1, 2]}}));
    assert_eq!(echo["name"], "r");
    assert_eq!(echo["pid"], pid);
    // Events arrive in the order things happened.
    let kinds = c.event_kinds();
    assert_eq!(&kinds[..3], ["started", "ready", "message"], "{kinds:?}");
    c.send(json!({"type": "stop", "id": 3, "name": "r"}));
    let stopped = c.reply(3);
    assert_eq!(stopped["result"][0]["state"], "stopped", "{stopped}");
    let kinds = c.event_kinds();
    assert_eq!(&kinds[3..], ["stopping", "exited"], "{kinds:?}");
    drop(c);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn closing_the_control_channel_stops_everything() {
    let t = TestDir::new();
    let (mut sup, mut c) = serve(&t);
    for (i, args) in [json!(["protocol"]), json!(["sigterm"])]
        .into_iter()
        .enumerate()
    {
        let name = format!("s{i}");
        c.send(json!({"type": "start", "id": i, "spec": {"name": name, "script": fixture("child.py"), "args": args, "killTimeout": 5000}}));
        assert_eq!(c.reply(i as i64)["ok"], true);
    }
    t.wait_event("s0", "started");
    t.wait_event("s1", "started");
    // The controlling process dies: its end of the channel closes.
    drop(c);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    t.wait_event("s0", "stop-handler");
    t.wait_event("s1", "sigterm");
    t.wait_all_gone(Duration::from_secs(5))
        .expect("nothing left");
}

#[test]
fn bad_requests_get_error_replies_and_break_nothing() {
    let t = TestDir::new();
    let (mut sup, mut c) = serve(&t);
    c.send_raw(b"not json\n");
    let r = c.until("reply to garbage", |v| {
        v["type"] == "reply" && v["id"].is_null()
    });
    assert_eq!(
        (r["ok"].clone(), r["code"].clone()),
        (json!(false), json!("bad_request"))
    );
    c.send(json!({"type": "stop", "name": "x"}));
    c.until("missing id", |v| {
        v["type"] == "reply" && v["error"] == "request has no \"id\""
    });
    c.send(json!({"type": "frobnicate", "id": 1}));
    assert!(
        c.reply(1)["error"]
            .as_str()
            .expect("error")
            .contains("unknown request type")
    );
    c.send(json!({"type": "stop", "id": 2, "name": 5}));
    assert!(
        c.reply(2)["error"]
            .as_str()
            .expect("error")
            .contains("name: invalid type")
    );
    c.send(json!({"type": "start", "id": 3, "spec": {"script": "a.js", "cwd": "/no/such/dir"}}));
    let r = c.reply(3);
    assert_eq!(r["code"], "bad_spec");
    assert!(
        r["error"]
            .as_str()
            .expect("error")
            .contains("spec.cwd: folder does not exist"),
        "{r}"
    );
    c.send(json!({"type": "stop", "id": 4, "name": "ghost"}));
    assert_eq!(c.reply(4)["code"], "no_such_service");
    let mut huge = vec![b'x'; 2 * 1024 * 1024];
    huge.push(b'\n');
    c.send_raw(&huge);
    c.until("reply to a huge line", |v| {
        v["type"] == "reply" && v["error"].as_str().is_some_and(|e| e.contains("exceeds"))
    });
    c.send_raw(b"\xff\xfe\n");
    c.until("reply to binary", |v| {
        v["error"].as_str().is_some_and(|e| e.contains("not UTF-8"))
    });
    // Still fully working.
    c.send(json!({"type": "start", "id": 5, "spec": {"name": "ok", "script": fixture("child.py"), "args": ["report"]}}));
    assert_eq!(c.reply(5)["ok"], true);
    c.send(json!({"type": "list", "id": 6}));
    assert_eq!(c.reply(6)["result"][0]["name"], "ok");
    c.send(json!({"type": "shutdown", "id": 7}));
    assert_eq!(c.reply(7)["ok"], true);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn the_socket_is_private_and_serves_the_cli() {
    let t = TestDir::new();
    let config = t.config(
        json!([{"name": "a", "script": fixture("child.py"), "args": ["report"], "log": "a.log"}]),
    );
    let mut sup = t.run(&config);
    t.wait_event("a", "report");
    let rt = t.path().join("rt");
    let sock = poll(PATIENCE, || {
        std::fs::read_dir(&rt)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "sock"))
    })
    .expect("a control socket");
    let mode = std::fs::metadata(&sock).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let dir_mode = std::fs::metadata(&rt).expect("stat").permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "runtime folder mode {dir_mode:o}");
    let out = t
        .command(&["ls"])
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("ls");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("name") && table.contains(" a ") && table.contains("running"),
        "{table}"
    );
    let out = t
        .command(&["logs", "a", "-n", "5"])
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("logs");
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("a pm  | started pid"), "{logs}");
    sup.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    assert!(!sock.exists(), "the socket is removed at exit");
}

#[test]
fn a_broken_stderr_does_not_stop_the_shutdown() {
    let t = TestDir::new();
    // The supervisor's stderr is a pipe nobody reads: every diagnostic fails with EPIPE.
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    drop(read_end);
    let (mut sup, mut c) = serve_with(&t, |cmd| {
        cmd.stderr(std::fs::File::from(write_end));
    });
    c.send(json!({"type": "start", "id": 1, "spec": {"name": "s", "script": fixture("child.py"), "args": ["sigterm"]}}));
    assert_eq!(c.reply(1)["ok"], true);
    t.wait_event("s", "started");
    drop(c);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    t.wait_event("s", "sigterm");
    t.wait_all_gone(Duration::from_secs(5))
        .expect("nothing left");
}
