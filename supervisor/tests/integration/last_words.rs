//! Last words: what services print while they stop after the supervisor was SIGKILLed reaches
//! their logs (the sentinel keeps their pipes), and that drain is bounded.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use crate::support::{PATIENCE, TestDir, fixture, poll};

/// Lines each stop handler prints.
const LINES: usize = 100;

/// Every service's processes are gone this long after the supervisor's SIGKILL (the guarantee is
/// about one second; a loaded test machine gets slack).
const ALL_GONE: Duration = Duration::from_secs(3);

/// Kills a process by pid when dropped, for processes that carry no test mark.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

fn sentinel_pid(t: &TestDir) -> i32 {
    poll(PATIENCE, || {
        t.live()
            .into_iter()
            .find(|(_, cmd)| cmd.contains("__sentinel"))
    })
    .expect("a sentinel runs")
    .0
}

/// Checks that `text` holds service `name`'s last words: every line once and in order, on the
/// right streams, after the sentinel's line about the supervisor's death.
fn assert_last_words(text: &str, name: &str) {
    let died = text
        .find(&format!(" {name} pm  | supervisor died"))
        .unwrap_or_else(|| panic!("no line about the supervisor's death for {name}:\n{text}"));
    let mut at = died;
    for i in 0..LINES {
        let line = format!(" {name} out | {name} last words {i:03}\n");
        assert_eq!(text.matches(&line).count(), 1, "{line:?} in:\n{text}");
        let pos = text.find(&line).expect("found");
        assert!(
            pos > at,
            "{line:?} out of order or before the death line:\n{text}"
        );
        at = pos;
    }
    let err = format!(" {name} err | {name} last words on stderr\n");
    assert_eq!(text.matches(&err).count(), 1, "{err:?} in:\n{text}");
    // Every line is whole, in the supervisor's format.
    for l in text.lines() {
        assert!(
            l.len() > 25 && l.as_bytes()[23] == b'Z' && l.contains(" | "),
            "malformed line {l:?}"
        );
    }
}

#[test]
fn stop_handlers_that_print_complete_and_their_lines_reach_the_logs() {
    let t = TestDir::new();
    let log = |n: &str| t.path().join(format!("{n}.log")).display().to_string();
    let config = t.config(json!([
        {"name": "py", "script": fixture("last_words.py"), "args": ["handler", LINES.to_string()],
         "log": log("py"), "killTimeout": 800},
        {"name": "plain", "script": fixture("last_words.js"), "args": ["plain", LINES.to_string()],
         "log": log("plain"), "killTimeout": 800},
        {"name": "sdk", "script": fixture("last_words.js"), "args": ["sdk", LINES.to_string()],
         "log": log("sdk"), "killTimeout": 800}
    ]));
    let mut sup = t.run(&config);
    for name in ["py", "plain", "sdk"] {
        t.wait_event(name, "started");
    }
    sup.signal(Signal::SIGKILL);
    sup.wait(PATIENCE).expect("reaped");
    let took = t.wait_all_gone(ALL_GONE).expect("everything gone");
    eprintln!("every process gone {took:?} after the SIGKILL");
    for name in ["py", "plain", "sdk"] {
        assert!(
            t.events()
                .iter()
                .any(|e| e["svc"] == name && e["event"] == "handler-done"),
            "the stop handler of {name} did not complete; stderr:\n{}",
            t.stderr()
        );
        let text = std::fs::read_to_string(log(name)).expect("log file");
        assert_last_words(&text, name);
    }
}

#[test]
fn last_words_of_a_console_service_reach_the_supervisors_stdout() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "con", "script": fixture("last_words.py"), "args": ["handler", LINES.to_string()],
         "killTimeout": 800},
        {"name": "nodecon", "script": fixture("last_words.js"), "args": ["sdk", LINES.to_string()],
         "killTimeout": 800}
    ]));
    let mut sup = t.run(&config);
    sup.wait_stdout("con out | con started");
    sup.wait_stdout("nodecon out | nodecon started");
    sup.signal(Signal::SIGKILL);
    sup.wait(PATIENCE).expect("reaped");
    t.wait_all_gone(ALL_GONE).expect("everything gone");
    for name in ["con", "nodecon"] {
        assert!(
            t.events()
                .iter()
                .any(|e| e["svc"] == name && e["event"] == "handler-done"),
            "the stop handler of {name} did not complete"
        );
        assert_last_words(&t.stdout(), name);
    }
}

#[test]
fn the_drain_ends_at_its_limit_when_something_outside_the_service_keeps_writing() {
    let t = TestDir::new();
    let log = t.path().join("w.log");
    let config = t.config(json!([
        {"name": "w", "script": fixture("last_words.py"), "args": ["escaped-writer"],
         "log": log.display().to_string()}
    ]));
    let mut sup = t.run(&config);
    let main = t.wait_event("w", "started")["pid"].as_i64().expect("pid");
    let writer = t.wait_event("w", "escaped-writer")["child"]
        .as_i64()
        .expect("pid") as i32;
    let _writer = KillOnDrop(writer);
    let sentinel = sentinel_pid(&t);
    poll(PATIENCE, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("w out | tick "))
    })
    .expect("the writer's lines reach the log");
    sup.signal(Signal::SIGKILL);
    let killed = Instant::now();
    sup.wait(PATIENCE).expect("reaped");
    poll(ALL_GONE, || (!TestDir::alive(main)).then_some(()))
        .expect("the service is gone within about a second");
    // The sentinel goes at its limit although the pipe is still open (the limit plus slack for
    // a loaded machine).
    let limit = pm_supervisor::testing::DRAIN_LIMIT;
    poll(limit + Duration::from_secs(5), || {
        (!TestDir::alive(i64::from(sentinel))).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the sentinel still runs {:?} after the SIGKILL",
            killed.elapsed()
        )
    });
    let gone = killed.elapsed();
    eprintln!("sentinel gone {gone:?} after the SIGKILL");
    assert!(
        gone >= limit - Duration::from_millis(300),
        "the sentinel left after {gone:?}, before its limit of {limit:?}, while the pipe was open"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    let died = text
        .find("w pm  | supervisor died")
        .unwrap_or_else(|| panic!("no line about the supervisor's death:\n{text}"));
    let after = &text[died..];
    let ticks = after.matches("w out | tick ").count();
    assert!(
        ticks > 10,
        "only {ticks} lines drained after the death:\n{after}"
    );
    assert!(
        after.contains("w pm  | output after this line is lost"),
        "no line saying the drain stopped at its limit:\n{after}"
    );
    t.wait_all_gone(ALL_GONE).expect("nothing of the test left");
}

#[test]
fn a_sentinel_started_again_gets_the_pipes_of_running_services() {
    let t = TestDir::new();
    let log = t.path().join("py.log");
    let config = t.config(json!([
        {"name": "py", "script": fixture("last_words.py"), "args": ["handler", LINES.to_string()],
         "log": log.display().to_string(), "killTimeout": 800}
    ]));
    let mut sup = t.run(&config);
    t.wait_event("py", "started");
    let first = sentinel_pid(&t);
    kill(Pid::from_raw(first), Signal::SIGKILL).expect("kill the sentinel");
    let second = poll(PATIENCE, || {
        t.live()
            .into_iter()
            .find(|(pid, cmd)| *pid != first && cmd.contains("__sentinel"))
    })
    .expect("a new sentinel")
    .0;
    // The new sentinel has been told about the service once it holds its two pipes.
    poll(PATIENCE, || {
        let pipes = std::fs::read_dir(format!("/proc/{second}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|l| l.to_string_lossy().starts_with("pipe:"))
            .count();
        (pipes == 2).then_some(())
    })
    .expect("the new sentinel holds the service's pipes");
    sup.signal(Signal::SIGKILL);
    sup.wait(PATIENCE).expect("reaped");
    t.wait_all_gone(ALL_GONE).expect("everything gone");
    assert_last_words(&std::fs::read_to_string(&log).expect("log"), "py");
}
