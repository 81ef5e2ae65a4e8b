//! The stop sequence: `stop` on the channel, SIGTERM when it is not answered or there is no
//! channel, SIGKILL at `killTimeout`, all services in parallel.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::{PATIENCE, TestDir, fixture};

#[test]
fn node_child_without_the_sdk_gets_sigterm_and_never_a_stop_message() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "js", "script": fixture("child.js"), "args": ["listener"], "killTimeout": 5000}]));
    let mut sup = t.run(&config);
    t.wait_event("js", "started");
    // PM2's process.send('ready') still says ready.
    sup.wait_stdout("js pm  | ready");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    t.wait_event("js", "sigterm");
    // Nothing of pm's reached its 'message' listener: a stop request is a signal for it.
    let messages: Vec<_> = t
        .events()
        .into_iter()
        .filter(|e| e["event"] == "message")
        .collect();
    assert!(messages.is_empty(), "{messages:?}");
    let out = t.stdout();
    assert!(
        out.contains("js pm  | SIGTERM sent to process group"),
        "{out}"
    );
    assert!(out.contains("it never said hello on its channel"), "{out}");
    assert!(out.contains("js pm  | stopped: exit code 0"), "{out}");
    assert!(!out.contains("SIGKILL sent"), "{out}");
}

#[test]
fn node_child_without_listener_gets_sigterm() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "js", "script": fixture("child.js"), "args": ["no-listener"], "killTimeout": 5000}]));
    let mut sup = t.run(&config);
    t.wait_event("js", "started");
    sup.signal(Signal::SIGINT);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    t.wait_event("js", "sigterm");
    let out = t.stdout();
    assert!(
        out.contains("js pm  | SIGTERM sent to process group"),
        "{out}"
    );
    assert!(out.contains("it never said hello on its channel"), "{out}");
    assert!(out.contains("js pm  | stopped: exit code 0"), "{out}");
}

#[test]
fn child_without_channel_gets_sigterm_at_once() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "py", "script": fixture("child.py"), "args": ["sigterm"], "killTimeout": 5000}]));
    let mut sup = t.run(&config);
    t.wait_event("py", "started");
    sup.signal(Signal::SIGHUP);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    t.wait_event("py", "sigterm");
    let out = t.stdout();
    assert!(out.contains("it never said hello on its channel"), "{out}");
    assert!(out.contains("py pm  | stopped: exit code 0"), "{out}");
}

#[test]
fn protocol_child_answers_stopping_and_is_not_signalled() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "p", "script": fixture("child.py"), "args": ["protocol"], "killTimeout": 5000}]));
    let mut sup = t.run(&config);
    t.wait_event("p", "started");
    sup.wait_stdout("p pm  | ready");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    let msg = t.wait_event("p", "message");
    assert_eq!(
        msg["msg"],
        json!({"cmd": "NODE_PM", "type": "stop", "reason": "shutdown", "timeout_ms": 5000})
    );
    t.wait_event("p", "stop-handler");
    let out = t.stdout();
    assert!(
        !out.contains("SIGTERM sent") && !out.contains("SIGKILL sent"),
        "{out}"
    );
}

#[test]
fn child_answering_term_gets_sigterm_without_waiting_out_the_ack_window() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "t", "script": fixture("child.py"), "args": ["term"], "killTimeout": 5000}]));
    let mut sup = t.run(&config);
    t.wait_event("t", "started");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    t.wait_event("t", "stop-message");
    t.wait_event("t", "sigterm");
    let out = t.stdout();
    assert!(
        out.contains("(it has no stop handlers and asked for it)"),
        "the SIGTERM follows the child's answer, not the acknowledgement window: {out}"
    );
    assert!(out.contains("t pm  | stopped: exit code 0"), "{out}");
    assert!(!out.contains("SIGKILL sent"), "{out}");
}

#[test]
fn child_that_ignores_everything_is_killed_at_kill_timeout() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "stubborn", "script": fixture("child.py"), "args": ["ignore"], "killTimeout": 400}]));
    let mut sup = t.run(&config);
    t.wait_event("stubborn", "started");
    let start = Instant::now();
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    let took = start.elapsed();
    // It cannot be gone before its killTimeout.
    assert!(took >= Duration::from_millis(400), "stopped after {took:?}");
    let out = t.stdout();
    assert!(out.contains("stubborn pm  | SIGTERM sent"), "{out}");
    assert!(
        out.contains("stubborn pm  | SIGKILL sent to process group"),
        "{out}"
    );
    assert!(
        out.contains("stubborn pm  | stopped: signal SIGKILL"),
        "{out}"
    );
    t.wait_all_gone(Duration::from_secs(5))
        .expect("nothing left");
}

#[test]
fn fifty_children_stop_in_parallel_under_one_deadline() {
    let t = TestDir::new();
    let services: Vec<_> = (0..50)
        .map(|i| json!({"name": format!("s{i}"), "script": fixture("ignore.sh"), "killTimeout": 500}))
        .collect();
    let config = t.config(json!(services));
    let mut sup = t.run(&config);
    crate::support::poll(PATIENCE, || {
        let out = t.stdout();
        (out.matches("out | started").count() == 50).then_some(())
    })
    .expect("all 50 started");
    let start = Instant::now();
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    let took = start.elapsed();
    // One after the other this would take 50 x 500 ms = 25 s. The exact figure is measured by
    // `make bench-stop`; this bound only proves the stops overlap.
    assert!(took < Duration::from_millis(2500), "50 stops took {took:?}");
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert_eq!(t.stdout().matches("stopped: signal SIGKILL").count(), 50);
    t.wait_all_gone(Duration::from_secs(5))
        .expect("nothing left");
}

#[test]
fn sigkill_is_logged_only_for_processes_it_ended() {
    let t = TestDir::new();
    // Each cleans up on SIGTERM for about its killTimeout, some a little less, some a little
    // more: some exit by themselves just before the deadline, before their exit is reaped.
    let services: Vec<_> = (0..40)
        .map(|i| {
            let secs = format!("{:.4}", 0.290 + f64::from(i % 10) * 0.002);
            json!({"name": format!("s{i}"), "script": fixture("child.py"), "args": ["late", secs], "killTimeout": 300})
        })
        .collect();
    let config = t.config(json!(services));
    let mut sup = t.run(&config);
    t.wait_events("started", 40);
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    let out = t.stdout();
    let (mut killed, mut clean) = (0, 0);
    for i in 0..40 {
        let sigkill = out.contains(&format!(" s{i} pm  | SIGKILL sent to process group"));
        let stopped = out
            .lines()
            .find(|l| l.contains(&format!(" s{i} pm  | stopped: ")))
            .unwrap_or_else(|| panic!("s{i} never stopped:\n{out}"));
        if stopped.contains("stopped: signal SIGKILL") {
            assert!(
                sigkill,
                "s{i} was killed, and the log does not say so:\n{out}"
            );
            killed += 1;
        } else {
            assert!(stopped.contains("stopped: exit code 0"), "{stopped}");
            assert!(
                !sigkill,
                "s{i} exited by itself, and the log says SIGKILL sent:\n{out}"
            );
            clean += 1;
        }
    }
    assert_eq!(killed + clean, 40);
}
