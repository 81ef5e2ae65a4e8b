//! The Rust SDK (`pm-child`) under the real supervisor, and without one.

use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::{PATIENCE, TestDir, poll, sdk_child_bin};

fn handlers_ran(t: &TestDir, svc: &str) -> Vec<i64> {
    t.events()
        .iter()
        .filter(|e| e["svc"] == svc && e["event"] == "handler")
        .map(|e| e["n"].as_i64().expect("n"))
        .collect()
}

#[test]
fn handlers_run_on_stop_and_the_child_exits_0_before_kill_timeout() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "r", "script": sdk_child_bin(), "killTimeout": 5000}]));
    let mut sup = t.run(&config);
    assert_eq!(t.wait_event("r", "started")["supervised"], true);
    sup.wait_stdout("r pm  | ready");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    assert_eq!(handlers_ran(&t, "r"), vec![1, 3], "in registration order");
    let out = t.stdout();
    assert!(out.contains("r pm  | stopped: exit code 0"), "{out}");
    assert!(
        !out.contains("SIGTERM sent") && !out.contains("SIGKILL sent"),
        "{out}"
    );
}

#[test]
fn a_failing_handler_is_reported_and_the_next_one_runs() {
    let t = TestDir::new();
    let config = t.config(
        json!([{"name": "f", "script": sdk_child_bin(), "args": ["failing"], "killTimeout": 5000}]),
    );
    let mut sup = t.run(&config);
    t.wait_event("f", "started");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    assert_eq!(handlers_ran(&t, "f"), vec![1, 3]);
    let out = t.stdout();
    assert!(
        out.contains("f err | pm-child: stop handler #2 failed: handler two fails on purpose"),
        "{out}"
    );
    assert!(out.contains("f pm  | stopped: exit code 0"), "{out}");
}

#[test]
fn handlers_run_when_the_supervisor_is_killed() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "k", "script": sdk_child_bin()}]));
    let mut sup = t.run(&config);
    t.wait_event("k", "started");
    sup.signal(Signal::SIGKILL);
    sup.wait(PATIENCE).expect("reaped");
    poll(PATIENCE, || {
        (handlers_ran(&t, "k") == vec![1, 3]).then_some(())
    })
    .unwrap_or_else(|| panic!("handlers did not run on EOF: {:?}", t.events()));
    t.wait_all_gone(Duration::from_secs(5))
        .expect("nothing left");
}

#[test]
fn handlers_run_on_sigterm_without_a_supervisor() {
    let t = TestDir::new();
    let mut child = Command::new(sdk_child_bin())
        .env("PM_TEST_DIR", t.path())
        .env("PM_SERVICE_NAME", "alone")
        .env_remove("PM_CHANNEL_FD")
        .stdout(Stdio::null())
        .spawn()
        .expect("start sdk_child");
    assert_eq!(t.wait_event("alone", "started")["supervised"], false);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    )
    .expect("signal");
    let status = poll(PATIENCE, || child.try_wait().expect("try_wait")).expect("exited");
    assert_eq!(status.code(), Some(0));
    assert_eq!(handlers_ran(&t, "alone"), vec![1, 3]);
}

#[test]
fn extend_keeps_sigkill_away_while_a_slow_handler_finishes() {
    let t = TestDir::new();
    // The last handler takes 600 ms, twice killTimeout; it asks for 2 s more first.
    let config = t.config(
        json!([{"name": "s", "script": sdk_child_bin(), "args": ["slow"], "killTimeout": 300}]),
    );
    let mut sup = t.run(&config);
    t.wait_event("s", "started");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    t.wait_event("s", "slow-done");
    let out = t.stdout();
    assert!(
        out.contains("s pm  | stop extended by 2000 ms on request"),
        "{out}"
    );
    assert!(out.contains("s pm  | stopped: exit code 0"), "{out}");
    assert!(!out.contains("SIGKILL sent"), "{out}");
}

#[test]
fn grandchildren_do_not_inherit_the_channel() {
    let t = TestDir::new();
    let config =
        t.config(json!([{"name": "gc", "script": sdk_child_bin(), "args": ["grandchild"]}]));
    let _sup = t.run(&config);
    let e = t.wait_event("gc", "grandchild");
    let out = e["out"].as_str().expect("out");
    assert!(out.contains("fd3=closed"), "{out}");
}

#[test]
fn only_the_process_pm_started_takes_the_channel_not_a_shells_child() {
    let t = TestDir::new();
    // A shell service: its child inherits fd 3 and the variables, as a plain shell passes them
    // on; the shell then becomes the SDK child itself with exec.
    let script = format!("'{0}' probe & exec '{0}' probe", sdk_child_bin());
    let config = t.config(json!([{"name": "sh", "script": "/bin/sh", "args": ["-c", script]}]));
    let mut sup = t.run(&config);
    let probes = t.wait_events("probe", 2);
    let (led, forked): (Vec<_>, Vec<_>) = probes.iter().partition(|p| p["sid"] == p["pid"]);
    assert_eq!((led.len(), forked.len()), (1, 1), "{probes:?}");
    assert_eq!(led[0]["supervised"], true, "the exec'd process: {probes:?}");
    assert_eq!(
        forked[0]["supervised"], false,
        "the shell's child: {probes:?}"
    );
    sup.wait_stdout("sh pm  | ready");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    // The service's own process said hello: it was sent `stop`, and having no stop handlers
    // it asked for SIGTERM, as a program without the SDK gets.
    let out = t.stdout();
    assert!(out.contains("sh pm  | stopped: signal SIGTERM"), "{out}");
    assert!(
        out.contains("(it has no stop handlers and asked for it)"),
        "{out}"
    );
    assert_eq!(out.matches("sh pm  | ready").count(), 1, "{out}");
}

#[test]
fn async_handlers_run_with_the_tokio_feature() {
    let t = TestDir::new();
    let config = t.config(
        json!([{"name": "a", "script": sdk_child_bin(), "args": ["async"], "killTimeout": 5000}]),
    );
    let mut sup = t.run(&config);
    t.wait_event("a", "started");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    // In registration order: the two sync handlers, then the async one.
    assert_eq!(handlers_ran(&t, "a"), vec![1, 3]);
    t.wait_event("a", "async-handler");
    assert!(
        t.stdout().contains("a pm  | stopped: exit code 0"),
        "{}",
        t.stdout()
    );
}

#[test]
fn a_handler_that_prints_completes_after_the_supervisor_is_killed() {
    // Last words: stdout and stderr may have lost their reader with the supervisor; a handler
    // printing 100 lines (println! panics on EPIPE) still completes.
    let t = TestDir::new();
    let config = t.config(json!([{"name": "pr", "script": sdk_child_bin(), "args": ["printer"], "killTimeout": 5000}]));
    let mut sup = t.run(&config);
    t.wait_event("pr", "started");
    sup.signal(Signal::SIGKILL);
    sup.wait(PATIENCE).expect("reaped");
    t.wait_event("pr", "printer-done");
    assert_eq!(handlers_ran(&t, "pr"), vec![1, 3]);
    t.wait_all_gone(Duration::from_secs(5))
        .expect("nothing left");
}
