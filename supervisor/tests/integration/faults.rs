//! Fault injection: what goes wrong around a stop, and the supervisor's own resource use.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::{PATIENCE, TestDir, fixture, poll, sdk_child_bin};

/// "SIGKILL sent to process group N (M ms after the stop request)" -> M.
fn sigkill_after_ms(out: &str, svc: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.contains(&format!(" {svc} pm  | SIGKILL sent")))
        .unwrap_or_else(|| panic!("no SIGKILL line for {svc}:\n{out}"));
    // "(350 ms after ..." or "(30.0 s after ..."
    let mut words = line.rsplit_once('(').expect("(").1.split(' ');
    let (n, unit) = (words.next().expect("number"), words.next().expect("unit"));
    match unit {
        "ms" => n.parse().expect("milliseconds"),
        _ => (n.parse::<f64>().expect("seconds") * 1000.0) as u64,
    }
}

fn group_members(pgid: i64) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let f: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().collect())
                .unwrap_or_default();
            f.len() > 2 && f[0] != "Z" && f[2].parse::<i64>().ok() == Some(pgid)
        })
        .collect()
}

/// A client on the supervisor's control socket.
struct Socket(BufReader<UnixStream>, u64);

impl Socket {
    fn open(t: &TestDir) -> Socket {
        let rt = t.path().join("rt");
        let path = poll(PATIENCE, || {
            std::fs::read_dir(&rt)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "sock"))
        })
        .expect("control socket");
        let s = poll(PATIENCE, || UnixStream::connect(&path).ok()).expect("connect");
        Socket(BufReader::new(s), 0)
    }

    fn ask(&mut self, mut req: Value) -> Value {
        self.1 += 1;
        req["id"] = self.1.into();
        let mut line = serde_json::to_vec(&req).expect("json");
        line.push(b'\n');
        self.0.get_mut().write_all(&line).expect("write");
        loop {
            let mut l = String::new();
            assert!(self.0.read_line(&mut l).expect("read") > 0, "socket closed");
            let v: Value = serde_json::from_str(&l).expect("json");
            if v["id"] == self.1 {
                return v;
            }
        }
    }
}

#[test]
fn a_handler_that_overruns_is_killed_at_kill_timeout_with_its_group() {
    let t = TestDir::new();
    let config = t.config(
        json!([{"name": "h", "script": sdk_child_bin(), "args": ["hang"], "killTimeout": 300}]),
    );
    let mut sup = t.run(&config);
    let pid = t.wait_event("h", "started")["pid"].as_i64().expect("pid");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    let out = t.stdout();
    let ms = sigkill_after_ms(&out, "h");
    assert!(
        (300..400).contains(&ms),
        "SIGKILL {ms} ms after the stop request, killTimeout 300"
    );
    // Its handlers 1 and 3 (quick ones) ran; the group is gone.
    assert!(group_members(pid).is_empty(), "{:?}", group_members(pid));
}

#[test]
fn a_flooding_child_that_ignores_sigterm_is_killed_on_time_and_the_supervisor_answers() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "flood", "script": "/bin/sh",
        "args": ["-c", "trap '' TERM; exec yes 'flooding the log as fast as possible'"],
        "log": "flood.log", "killTimeout": 300, "logMaxSize": 0}]));
    let mut sup = t.run(&config);
    poll(PATIENCE, || {
        (std::fs::metadata(t.path().join("flood.log")).ok()?.len() > 20_000_000).then_some(())
    })
    .expect("flooding");
    let mut sock = Socket::open(&t);
    let start = Instant::now();
    let rows = sock.ask(json!({"type": "list"}));
    let answered = start.elapsed();
    assert_eq!(rows["result"][0]["state"], "running");
    // Under a full-speed flood a request is still answered at once (bound loose for a loaded
    // machine; the flood is paced reads, not a busy loop).
    assert!(
        answered < Duration::from_millis(500),
        "list took {answered:?}"
    );
    let r = sock.ask(json!({"type": "stop", "name": "flood"}));
    assert_eq!(r["result"][0]["state"], "stopped", "{r}");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    let ms = sigkill_after_ms(
        &std::fs::read_to_string(t.path().join("flood.log")).expect("log"),
        "flood",
    );
    assert!(
        (300..400).contains(&ms),
        "SIGKILL {ms} ms after the stop request"
    );
}

#[test]
fn extend_is_honoured_up_to_thirty_seconds_then_sigkill() {
    let t = TestDir::new();
    let config = t.config(
        json!([{"name": "g", "script": sdk_child_bin(), "args": ["greedy"], "killTimeout": 200}]),
    );
    let mut sup = t.run(&config);
    t.wait_event("g", "started");
    sup.signal(Signal::SIGTERM);
    t.wait_event("g", "greedy-handler");
    assert_eq!(
        sup.wait(Duration::from_secs(60)).and_then(|s| s.code()),
        Some(0)
    );
    let out = t.stdout();
    assert!(
        out.contains("g pm  | stop extended by 600000 ms on request; SIGKILL in"),
        "{out}"
    );
    let ms = sigkill_after_ms(&out, "g");
    assert!(
        (30_000..30_100).contains(&ms),
        "SIGKILL {ms} ms after the stop request; the cap is 30 s"
    );
}

#[test]
fn a_child_that_never_reads_its_channel_cannot_block_the_supervisor() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "deaf", "script": fixture("child.py"), "args": ["deaf"], "killTimeout": 300},
        {"name": "fine", "script": fixture("child.py"), "args": ["report"]}
    ]));
    let mut sup = t.run(&config);
    t.wait_event("deaf", "started");
    let mut sock = Socket::open(&t);
    let big = "x".repeat(100_000);
    let start = Instant::now();
    let mut sent = 0;
    for _ in 0..300 {
        let r = sock.ask(json!({"type": "send", "name": "deaf", "data": big}));
        sent += r["result"]["sent"].as_u64().expect("sent");
    }
    // 30 MB offered; the socket buffer and the bounded queue take a little, the rest is refused
    // at once instead of piling up or blocking.
    assert!(sent < 300, "all {sent} queued: the queue is not bounded");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "sends took {:?}",
        start.elapsed()
    );
    let rows = sock.ask(json!({"type": "list"}));
    assert_eq!(rows["result"][1]["state"], "running");
    // Its stop message cannot even be queued: signals instead, on time.
    let r = sock.ask(json!({"type": "stop", "name": "deaf"}));
    assert_eq!(r["result"][0]["state"], "stopped");
    // The log writer may still hold the last lines when the reply comes.
    let out = sup.wait_stdout("deaf pm  | stopped:");
    assert!(out.contains("deaf pm  | SIGTERM sent"), "{out}");
    let ms = sigkill_after_ms(&out, "deaf");
    assert!(
        (300..400).contains(&ms),
        "SIGKILL {ms} ms after the stop request"
    );
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn a_child_that_closed_its_channel_is_still_stopped_on_time() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "c", "script": fixture("child.py"), "args": ["close-channel"], "killTimeout": 300}]));
    let mut sup = t.run(&config);
    t.wait_event("c", "started");
    let start = Instant::now();
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let out = t.stdout();
    assert!(out.contains("c pm  | SIGTERM sent"), "{out}");
    let ms = sigkill_after_ms(&out, "c");
    assert!(
        (300..400).contains(&ms),
        "SIGKILL {ms} ms after the stop request"
    );
}

#[test]
fn two_hundred_stop_start_cycles_leak_nothing() {
    let t = TestDir::new();
    let config =
        t.config(json!([{"name": "s", "script": "/bin/sleep", "args": ["1000"], "log": "s.log"}]));
    let mut sup = t.run(&config);
    let pid = sup.pid();
    let mut sock = Socket::open(&t);
    let usage = || {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fds")
            .count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let field = |k: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .expect(k)
        };
        (fds, field("Threads:"), field("VmRSS:"))
    };
    let cycle = |sock: &mut Socket| {
        assert_eq!(sock.ask(json!({"type": "stop", "name": "s"}))["ok"], true);
        assert_eq!(
            sock.ask(json!({"type": "restart", "name": "s"}))["ok"],
            true
        );
    };
    for _ in 0..20 {
        cycle(&mut sock);
    }
    let before = usage();
    for _ in 0..200 {
        cycle(&mut sock);
    }
    // The last exit's output readers finish and its channel closes a moment later.
    let after = poll(PATIENCE, || {
        Some(usage()).filter(|u| u.0 <= before.0 && u.1 <= before.1)
    })
    .unwrap_or_else(usage);
    assert_eq!(
        after.0, before.0,
        "open fds: before {before:?}, after {after:?}"
    );
    assert_eq!(
        after.1, before.1,
        "threads: before {before:?}, after {after:?}"
    );
    assert!(
        after.2 < before.2 + 1024,
        "RSS grew from {} to {} KiB",
        before.2,
        after.2
    );
    // No zombies: every exited child was reaped.
    let zombies: Vec<i32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let f: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().collect())
                .unwrap_or_default();
            f.len() > 1 && f[0] == "Z" && f[1].parse::<i32>().ok() == Some(pid)
        })
        .collect();
    assert!(zombies.is_empty(), "zombies {zombies:?}");
    assert_eq!(
        std::fs::read_to_string(t.path().join("s.log"))
            .expect("log")
            .matches("s pm  | started")
            .count(),
        221
    );
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn a_log_file_deleted_under_the_supervisor_is_created_again() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "d", "script": "/bin/sh", "args": ["-c", "while :; do echo tick; sleep 0.05; done"], "log": "d.log"}]));
    let mut sup = t.run(&config);
    let path = t.path().join("d.log");
    poll(PATIENCE, || {
        std::fs::read_to_string(&path)
            .ok()
            .filter(|s| s.contains("tick"))
    })
    .expect("ticks");
    std::fs::remove_file(&path).expect("rm");
    poll(PATIENCE, || {
        std::fs::read_to_string(&path)
            .ok()
            .filter(|s| s.contains("d out | tick"))
    })
    .expect("the log came back");
    assert!(
        t.stderr().contains("log file was deleted or moved"),
        "{}",
        t.stderr()
    );
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

/// The supervisor's sentinel process (`pm-supervisor __sentinel`), a child of `sup`.
fn sentinel_of(sup: i32) -> i32 {
    poll(PATIENCE, || {
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .find(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok());
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                ppid == Some(sup) && cmd.windows(10).any(|w| w == b"__sentinel")
            })
    })
    .expect("the sentinel process")
}

#[test]
fn a_stopped_sentinel_blocks_nothing() {
    let t = TestDir::new();
    // Crash-looping as fast as it can: every start and exit is news for the sentinel.
    let config = t.config(json!([{"name": "loop", "script": "/bin/false", "restartAt": [1]}]));
    let mut sup = t.run(&config);
    let sentinel = sentinel_of(sup.pid());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sentinel), Signal::SIGSTOP)
        .expect("SIGSTOP the sentinel");
    let mut c = crate::support::Conn::open(&t);
    // Well past the ~1,700 restarts whose news filled the sentinel's pipe.
    let start = Instant::now();
    let mut restarts = 0;
    while restarts < 2500 && start.elapsed() < Duration::from_secs(30) {
        let r = c
            .ask_within(json!({"type": "list"}), Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no answer to list after {restarts} restarts"));
        restarts = r["result"][0]["restarts"].as_u64().expect("restarts");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{restarts} restarts in {:?} with the sentinel stopped",
        start.elapsed()
    );
    assert!(restarts >= 2300, "only {restarts} restarts");
    let asked = Instant::now();
    assert!(
        c.ask_within(json!({"type": "list"}), Duration::from_secs(5))
            .is_some()
    );
    let ls = asked.elapsed();
    assert!(ls < Duration::from_millis(500), "list took {ls:?}");
    let asked = Instant::now();
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    // It did not leave its stopped sentinel behind.
    poll(Duration::from_secs(5), || {
        (!TestDir::alive(i64::from(sentinel))).then_some(())
    })
    .expect("the sentinel is gone");
}

#[test]
fn an_extend_flood_writes_a_bounded_number_of_lines() {
    let t = TestDir::new();
    let script = t.write(
        "extender.py",
        "import os, socket, sys, time\n\
         s = socket.socket(fileno=int(os.environ['PM_CHANNEL_FD']))\n\
         s.sendall(b'{\"cmd\":\"NODE_PM\",\"type\":\"hello\",\"protocol\":2}\\n{\"cmd\":\"NODE_PM\",\"type\":\"ready\"}\\n')\n\
         for line in s.makefile('rb'):\n\
         \x20   if b'\"stop\"' in line:\n\
         \x20       s.sendall(b'{\"cmd\":\"NODE_PM\",\"type\":\"stopping\"}\\n')\n\
         \x20       s.sendall(b'{\"cmd\":\"NODE_PM\",\"type\":\"extend\",\"ms\":1000}\\n' * 50000)\n\
         \x20       open(os.path.join(os.environ['PM_TEST_DIR'], 'flooded'), 'w').close()\n\
         \x20       time.sleep(1)\n\
         \x20       sys.exit(0)\n",
    );
    let config =
        t.config(json!([{"name": "x", "script": script, "log": "x.log", "killTimeout": 5000}]));
    let mut sup = t.run(&config);
    // Once it is ready, the supervisor knows it speaks the protocol: it gets `stop`.
    poll(PATIENCE, || {
        std::fs::read_to_string(t.path().join("x.log"))
            .ok()
            .filter(|s| s.contains("x pm  | ready"))
    })
    .expect("ready");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    assert!(
        t.path().join("flooded").exists(),
        "the child sent its extends"
    );
    let log = std::fs::read_to_string(t.path().join("x.log")).expect("log");
    let in_log = log.matches("stop extended").count();
    let on_stderr = t.stderr().matches("stop extended").count();
    assert!(
        (1..=20).contains(&in_log),
        "{in_log} lines about extend in the log"
    );
    assert!(on_stderr <= 20, "{on_stderr} lines about extend on stderr");
}

#[test]
fn a_stderr_nobody_reads_blocks_nothing() {
    let t = TestDir::new();
    // Every start and exit of a service with a log file is also a line on stderr.
    let config = t.config(
        json!([{"name": "loop", "script": "/bin/false", "restartAt": [1], "log": "loop.log"}]),
    );
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    let mut cmd = t.command(&["run", config.to_str().expect("utf-8")]);
    cmd.stderr(std::fs::File::from(write_end));
    let mut sup = crate::support::Supervisor::from_child(cmd.spawn().expect("start"), t.path());
    drop(cmd);
    let mut c = crate::support::Conn::open(&t);
    // Far more than a pipe holds (64 KiB, some 500 lines).
    let start = Instant::now();
    let mut restarts = 0;
    while restarts < 1500 && start.elapsed() < Duration::from_secs(30) {
        let r = c
            .ask_within(json!({"type": "list"}), Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no answer to list after {restarts} restarts"));
        restarts = r["result"][0]["restarts"].as_u64().expect("restarts");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(restarts >= 1500, "only {restarts} restarts");
    let asked = Instant::now();
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    drop(read_end);
}
