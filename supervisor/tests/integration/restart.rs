//! Crash restarts on the `restartAt` / `restartOk` schedule, and actions by name.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::{PATIENCE, TestDir, fixture, line_times, poll};

pub fn ls(t: &TestDir) -> Vec<Value> {
    let out = t
        .command(&["ls", "--json"])
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("ls");
    assert!(out.status.success(), "ls failed: {}", t.cli_stderr());
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("ls --json prints JSON")
        .as_array()
        .expect("rows")
        .clone()
}

fn cli(t: &TestDir, args: &[&str]) -> String {
    let out = t
        .command(args)
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("cli");
    assert!(out.status.success(), "{args:?} failed: {}", t.cli_stderr());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_crashing_service_is_restarted_and_a_launch_failure_does_not_spin() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "crash", "script": fixture("child.py"), "args": ["exit", "3"], "restartAt": [50, 100]},
        {"name": "missing", "script": "missing.py", "restartAt": [200]}
    ]));
    let mut sup = t.run(&config);
    t.wait_events("started", 4);
    let out = sup.wait_stdout("crash pm  | restarting in 100 ms (crash 3 in a row)");
    assert!(out.contains("crash pm  | exited: exit code 3"), "{out}");
    assert!(
        out.contains("crash pm  | restarting in 50 ms (crash 1 in a row)"),
        "{out}"
    );
    // The missing script is retried on its schedule: every 200 ms, not in a tight loop.
    sup.wait_stdout("missing pm  | restarting in 200 ms (crash 3 in a row)");
    let rows = ls(&t);
    let missing = rows.iter().find(|r| r["name"] == "missing").expect("row");
    assert!(
        missing["error"]
            .as_str()
            .expect("error")
            .contains("script not found"),
        "{missing}"
    );
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    // Launch failures are paced by the schedule: 200 ms apart at least, never a tight loop.
    let times = line_times(&t.stdout(), "missing pm  | cannot launch");
    assert!(times.len() >= 3, "{times:?}");
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= 199,
            "launch failures {} ms apart: {times:?}",
            w[1] - w[0]
        );
    }
}

#[test]
fn an_empty_or_zero_schedule_never_restarts() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "empty", "script": fixture("child.py"), "args": ["exit", "1"], "restartAt": []},
        {"name": "zero", "script": fixture("child.py"), "args": ["exit", "0"], "restartAt": [0]},
        {"name": "stays", "script": fixture("child.py"), "args": ["report"]}
    ]));
    let mut sup = t.run(&config);
    sup.wait_stdout("empty pm  | exited: exit code 1");
    sup.wait_stdout("zero pm  | exited: exit code 0");
    let rows = ls(&t);
    for name in ["empty", "zero"] {
        let r = rows.iter().find(|r| r["name"] == name).expect("row");
        assert_eq!(r["state"], "exited", "{r}");
        assert_eq!(r["restart_in_ms"], Value::Null, "{r}");
    }
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    assert_eq!(t.stdout().matches("empty pm  | started").count(), 1);
    assert_eq!(t.stdout().matches("zero pm  | started").count(), 1);
}

#[test]
fn stop_cancels_a_pending_restart_and_restart_resets_the_count() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "c", "script": fixture("child.py"), "args": ["exit", "1"], "restartAt": [100, 400]}
    ]));
    let mut sup = t.run(&config);
    sup.wait_stdout("c pm  | restarting in 400 ms (crash 2 in a row)");
    let out = cli(&t, &["stop", "c"]);
    assert!(out.contains("c #1: stopped"), "{out}");
    let r = &ls(&t)[0];
    assert_eq!(
        (r["state"].as_str(), r["restart_in_ms"].clone()),
        (Some("stopped"), Value::Null),
        "{r}"
    );
    let starts = t.stdout().matches("c pm  | started").count();
    // Well past the cancelled restart's time, nothing started.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        t.stdout().matches("c pm  | started").count(),
        starts,
        "{}",
        t.stdout()
    );
    // A manual restart launches it at once and starts the crash count over.
    cli(&t, &["restart", "c"]);
    sup.wait_stdout("c pm  | restarting in 100 ms (crash 1 in a row)");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn actions_by_name_apply_to_every_service_with_that_name() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "twin", "script": fixture("child.py"), "args": ["report"]},
        {"name": "twin", "script": fixture("child.py"), "args": ["report"]},
        {"script": fixture("child.py"), "args": ["report"]},
        {"name": "other", "script": fixture("child.py"), "args": ["report"]}
    ]));
    let mut sup = t.run(&config);
    t.wait_events("report", 4);
    let before: Vec<Value> = ls(&t);
    let out = cli(&t, &["restart", "twin"]);
    assert_eq!(out.matches("twin #").count(), 2, "{out}");
    let after = ls(&t);
    for i in 0..2 {
        assert_ne!(
            after[i]["pid"], before[i]["pid"],
            "twin {i} got a new process"
        );
        assert_eq!(after[i]["restarts"], 1);
    }
    assert_eq!(
        after[2]["pid"], before[2]["pid"],
        "the nameless one is untouched"
    );
    assert_eq!(after[3]["pid"], before[3]["pid"], "other is untouched");
    cli(&t, &["stop", "twin"]);
    let rows = ls(&t);
    assert_eq!(rows[0]["state"], "stopped");
    assert_eq!(rows[1]["state"], "stopped");
    assert_eq!(rows[2]["state"], "running");
    // A nameless service cannot be named, but stopall reaches it.
    let out = t.command(&["stop", ""]).output().expect("stop");
    assert!(!out.status.success());
    cli(&t, &["stopall"]);
    assert!(
        ls(&t).iter().all(|r| r["state"] == "stopped"),
        "{:?}",
        ls(&t)
    );
    let unknown = t.command(&["stop", "nope"]).output().expect("stop nope");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        t.cli_stderr().contains("no service named \"nope\""),
        "{}",
        t.cli_stderr()
    );
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    t.wait_all_gone(Duration::from_secs(5))
        .expect("nothing left");
}

#[test]
fn a_hundred_services_crash_looping_stay_bounded() {
    let t = TestDir::new();
    let services: Vec<Value> = (0..100)
        .map(|i| json!({"name": format!("c{i}"), "script": "/bin/false", "restartAt": [100, 500, 1000]}))
        .collect();
    let config = t.config(json!(services));
    let mut sup = t.run(&config);
    let pid = sup.pid();
    // The third round of restarts (after 500 ms waits) is under way.
    poll(PATIENCE, || {
        (t.stdout().matches("(crash 3 in a row)").count() >= 100).then_some(())
    })
    .expect("three crashes each");
    let cpu = |pid: i32| -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .expect(")")
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 =
            f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
        Duration::from_millis(ticks * 10)
    };
    let rss = |pid: i32| -> u64 {
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).expect("statm");
        statm
            .split_whitespace()
            .nth(1)
            .expect("rss")
            .parse::<u64>()
            .expect("pages")
            * 4096
    };
    let (cpu0, rss0) = (cpu(pid), rss(pid));
    // Several more rounds at the 1 s tail of the schedule.
    poll(PATIENCE, || {
        (t.stdout().matches("(crash 6 in a row)").count() >= 100).then_some(())
    })
    .expect("six crashes each");
    let (cpu1, rss1) = (cpu(pid), rss(pid));
    // 300 launches and exits in ~3 s; the bound is loose on purpose (a loaded machine), the
    // figures are measured by `make bench`. What it rules out is a busy loop.
    assert!(
        cpu1 - cpu0 < Duration::from_millis(2500),
        "supervisor CPU {:?}",
        cpu1 - cpu0
    );
    assert!(
        rss1 < rss0 + 4 * 1024 * 1024,
        "RSS grew from {rss0} to {rss1}"
    );
    // Every delay chosen is the schedule's: crash N waits restartAt[N-1], the last repeating.
    let schedule = [100, 500, 1000];
    let mut checked = 0;
    for line in t
        .stdout()
        .lines()
        .filter(|l| l.contains("| restarting in "))
    {
        let rest = line.split_once("| restarting in ").expect("text").1;
        let ms: u64 = rest.split(' ').next().expect("delay").parse().expect("ms");
        let n: usize = rest
            .split("(crash ")
            .nth(1)
            .expect("count")
            .split(' ')
            .next()
            .expect("n")
            .parse()
            .expect("n");
        assert_eq!(ms, schedule[(n - 1).min(2)], "{line}");
        checked += 1;
    }
    assert!(checked >= 600, "{checked} restart lines");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}
