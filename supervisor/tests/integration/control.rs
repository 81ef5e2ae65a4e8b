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

fn data_of(v: &Value) -> &Value {
    &v["data"]
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
    // The supervisor knows s0 speaks the protocol once it has said ready (after its hello).
    c.until("s0 ready", |v| v["event"] == "ready" && v["name"] == "s0");
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
    c.send(json!({"type": "disconnect", "id": 40, "name": "ghost"}));
    assert_eq!(c.reply(40)["code"], "no_such_service");
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
    // Data of the form of Node's and pm's own messages is refused: a Node child would act on it.
    for (id, data) in [
        (60, json!({"cmd": "NODE_PM", "type": "stop"})),
        (61, json!({"cmd": "NODE_HANDLE_ACK"})),
    ] {
        c.send(json!({"type": "send", "id": id, "name": "ok", "data": data}));
        let r = c.reply(id);
        assert_eq!(r["code"], "bad_request", "{r}");
        assert!(
            r["error"].as_str().expect("error").contains("reserved"),
            "{r}"
        );
    }
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

#[test]
fn started_events_of_config_services_reach_the_control_fd() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "a", "script": fixture("child.py"), "args": ["report"]},
        {"name": "b", "script": fixture("child.py"), "args": ["report"]},
        {"name": "c", "script": fixture("child.py"), "args": ["report"]}
    ]));
    let (mut sup, mut c) = serve_with(&t, |cmd| {
        cmd.arg("--config").arg(&config);
    });
    for name in ["a", "b", "c"] {
        c.until(&format!("the started event of {name}"), |v| {
            v["event"] == "started" && v["name"] == name
        });
    }
    drop(c);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn no_event_is_longer_than_a_line_and_data_that_would_be_is_dropped_with_a_warning() {
    let t = TestDir::new();
    let (mut sup, mut c) = serve(&t);
    c.send(json!({"type": "start", "id": 1, "spec": {"name": "big", "script": fixture("child.py"), "args": ["flood", "0", "stay"]}}));
    assert_eq!(c.reply(1)["ok"], true);
    // The data after the too large one still comes.
    let after = c.until("the data after the large one", |v| {
        v["event"] == "message" && data_of(v) == &json!({"after": "flood"})
    });
    assert_eq!(after["name"], "big");
    let messages: Vec<&Value> = c.seen.iter().filter(|v| v["event"] == "message").collect();
    assert_eq!(
        messages.len(),
        1,
        "only the data that fits: {:.300?}",
        messages
    );
    // Every line read was within the limit (Controller::until parsed each one; their
    // serialized size is what the supervisor wrote, give or take escapes it cannot add).
    for v in &c.seen {
        assert!(v.to_string().len() <= 1024 * 1024);
    }
    let err = crate::support::poll(PATIENCE, || {
        let err = t.stderr();
        err.contains("dropped: its event would exceed")
            .then_some(err)
    })
    .unwrap_or_else(|| panic!("no warning about the dropped data:\n{}", t.stderr()));
    assert!(err.contains("message of 1048564 bytes dropped"), "{err}");
    drop(c);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn disconnect_closes_a_childs_channel_and_it_is_stopped_by_signal_later() {
    let t = TestDir::new();
    let (mut sup, mut c) = serve(&t);
    c.send(json!({"type": "start", "id": 1, "spec": {"name": "p", "script": fixture("child.py"), "args": ["protocol"], "killTimeout": 5000}, "wait": "ready"}));
    assert_eq!(c.reply(1)["ok"], true);
    c.send(json!({"type": "start", "id": 2, "spec": {"name": "r", "script": sdk_child_bin(), "killTimeout": 5000}, "wait": "ready"}));
    assert_eq!(c.reply(2)["ok"], true);
    for (id, name) in [(3, "p"), (4, "r")] {
        c.send(json!({"type": "disconnect", "id": id, "name": name}));
        assert_eq!(c.reply(id)["result"], json!({"disconnected": 1}));
    }
    // The child that said hello was told first: its EOF is not a stop.
    t.wait_event("p", "disconnect-notice");
    t.wait_event("p", "eof-after-disconnect");
    // Nothing reaches a disconnected child any more.
    c.send(json!({"type": "send", "id": 5, "name": "p", "data": 1}));
    assert_eq!(c.reply(5)["result"], json!({"sent": 0}));
    c.send(json!({"type": "disconnect", "id": 6, "name": "p"}));
    assert_eq!(c.reply(6)["result"], json!({"disconnected": 0}));
    c.send(json!({"type": "list", "id": 7}));
    let rows = c.reply(7);
    assert_eq!(rows["result"][0]["state"], "running", "{rows}");
    assert_eq!(rows["result"][1]["state"], "running", "{rows}");
    // A stop is SIGTERM now; the SDK child runs its handlers on it and exits 0.
    c.send(json!({"type": "stopall", "id": 8}));
    let stopped = c.reply(8);
    assert_eq!(stopped["result"][0]["state"], "stopped", "{stopped}");
    t.wait_event("p", "sigterm");
    let handlers: Vec<i64> = t
        .events()
        .iter()
        .filter(|e| e["svc"] == "r" && e["event"] == "handler")
        .filter_map(|e| e["n"].as_i64())
        .collect();
    assert_eq!(handlers, [1, 3]);
    let out = t.stdout();
    assert!(
        out.contains("p pm  | channel closed on request (disconnect)"),
        "{out}"
    );
    assert!(
        out.contains("p pm  | SIGTERM sent to process group"),
        "{out}"
    );
    assert!(out.contains("its channel is closed"), "{out}");
    assert!(out.contains("r pm  | stopped: exit code 0"), "{out}");
    assert!(!out.contains("SIGKILL sent"), "{out}");
    drop(c);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn cli_send_takes_data_from_an_argument_a_file_or_stdin_beyond_128_kib() {
    let t = TestDir::new();
    let config =
        t.config(json!([{"name": "p", "script": fixture("child.py"), "args": ["protocol"]}]));
    let mut sup = t.run(&config);
    t.wait_event("p", "started");
    // 200 KiB: more than one command-line argument may hold on Linux.
    let big = json!({"blob": "b".repeat(200 * 1024)});
    let file = t.write("data.json", &big.to_string());
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = t.command(args);
        cmd.stdout(std::process::Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(std::process::Stdio::piped());
        }
        let mut child = cmd.spawn().expect("cli");
        if let Some(text) = stdin {
            use std::io::Write as _;
            let mut input = child.stdin.take().expect("stdin");
            input.write_all(text.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("cli output");
        assert!(out.status.success(), "{args:?}: {}", t.cli_stderr());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run(&["send", "p", "[1, \"arg\"]"], None).contains("sent to 1 process"));
    assert!(
        run(
            &["send", "p", "--file", file.to_str().expect("utf-8")],
            None
        )
        .contains("sent to 1")
    );
    let piped = json!({"from": "stdin", "blob": "s".repeat(200 * 1024)});
    assert!(run(&["send", "p", "-"], Some(&piped.to_string())).contains("sent to 1"));
    let got = t.wait_events("message", 3);
    let data: Vec<&Value> = got.iter().map(|e| &e["msg"]).collect();
    assert_eq!(data, [&json!([1, "arg"]), &big, &piped]);
    // Not JSON, and too large, are refused with the reason.
    let bad = t.write("bad.json", "{not json");
    let status = t
        .command(&["send", "p", "--file", bad.to_str().expect("utf-8")])
        .status()
        .expect("cli");
    assert!(!status.success());
    assert!(
        t.cli_stderr().contains("bad.json is not JSON"),
        "{}",
        t.cli_stderr()
    );
    let huge = t.write("huge.json", &format!("\"{}\"", "h".repeat(1024 * 1024 + 1)));
    let status = t
        .command(&["send", "p", "--file", huge.to_str().expect("utf-8")])
        .status()
        .expect("cli");
    assert!(!status.success());
    assert!(
        t.cli_stderr().contains("more than 1048576 bytes"),
        "{}",
        t.cli_stderr()
    );
    sup.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn a_version_1_child_is_stopped_by_sigterm_and_its_messages_are_plain_data() {
    let t = TestDir::new();
    let (mut sup, mut c) = serve(&t);
    c.send(json!({"type": "start", "id": 1, "spec": {"name": "old", "script": fixture("child.py"), "args": ["v1"], "killTimeout": 5000}}));
    assert_eq!(c.reply(1)["ok"], true);
    t.wait_event("old", "started");
    // Its hello, ready and wrapped message reach the controller as they were written.
    let expected = [
        json!({"type": "hello", "protocol": 1, "sdk": "v1-fixture", "version": "0"}),
        json!({"type": "ready"}),
        json!({"type": "message", "data": {"n": 1}}),
    ];
    for want in &expected {
        c.until(&format!("data {want}"), |v| {
            v["event"] == "message" && data_of(v) == want
        });
    }
    // Data to it arrives unwrapped.
    c.send(json!({"type": "send", "id": 2, "name": "old", "data": {"x": 1}}));
    assert_eq!(c.reply(2)["result"], json!({"sent": 1}));
    assert_eq!(t.wait_event("old", "message")["msg"], json!({"x": 1}));
    // {"type":"ready"} is not pm's ready; it never said hello: it is stopped by SIGTERM.
    c.send(json!({"type": "list", "id": 3}));
    assert_eq!(c.reply(3)["result"][0]["ready"], false);
    c.send(json!({"type": "stop", "id": 4, "name": "old"}));
    assert_eq!(c.reply(4)["result"][0]["state"], "stopped");
    t.wait_event("old", "sigterm");
    let stopping = json!({"type": "stopping"});
    c.until("its stopping, as data", |v| {
        v["event"] == "message" && data_of(v) == &stopping
    });
    let out = t.stdout();
    assert!(
        out.contains("old pm  | SIGTERM sent to process group"),
        "{out}"
    );
    assert!(out.contains("it never said hello on its channel"), "{out}");
    assert!(out.contains("old pm  | stopped: exit code 0"), "{out}");
    assert!(!out.contains("old pm  | ready"), "{out}");
    drop(c);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}
