//! What the supervisor decides on its own, with real processes: the watchdog, the memory
//! ceiling, start and stop order, watch mode.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::restart::ls;
use crate::support::{PATIENCE, TestDir, fixture, line_times, poll, status_within};

fn events_of(t: &TestDir, svc: &str, kind: &str) -> Vec<Value> {
    t.events()
        .into_iter()
        .filter(|e| e["svc"] == svc && e["event"] == kind)
        .collect()
}

/// Milliseconds of the (UTC) day of an event's time, as log lines show it.
fn ms_of_day(e: &Value) -> i64 {
    let t = e["t"].as_f64().expect("time");
    ((t * 1000.0) as i64) % 86_400_000
}

#[test]
fn a_service_that_stops_heartbeating_is_found_hung_and_restarted() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "stuck", "script": fixture("guarded.py"), "args": ["beat", "6"],
         "watchdogMs": 500, "restartAt": [100]}
    ]));
    let mut sup = t.run(&config);
    let out = sup.wait_stdout("stuck pm  | hung: no heartbeat for");
    let blocked = t.wait_event("stuck", "blocked");
    // The last heartbeat went out one period (500 / 3 ms) before `blocked`; the verdict comes
    // at watchdogMs plus the margin (50 ms) after it. Generous bounds: a loaded machine.
    let hung_at = line_times(&out, "stuck pm  | hung:")[0];
    let last_beat = ms_of_day(&blocked) - 166;
    let latency = hung_at - last_beat;
    assert!(
        (500..2500).contains(&latency),
        "found hung {latency} ms after the last heartbeat"
    );
    let line = out.lines().find(|l| l.contains("hung:")).expect("line");
    assert!(line.ends_with("ms (watchdogMs 500)"), "{line}");
    // Stopped with the stop sequence (it answers `stop`), then started again on its schedule.
    poll(PATIENCE, || {
        (events_of(&t, "stuck", "start").len() >= 2).then_some(())
    })
    .expect("restarted");
    assert_eq!(events_of(&t, "stuck", "stop").len(), 1);
    let rows = ls(&t);
    assert!(rows[0]["hangs"].as_u64() >= Some(1), "{}", rows[0]);
    assert_eq!(rows[0]["last_guard"]["why"], "hung", "{}", rows[0]);
    assert_eq!(rows[0]["watchdog_ms"], 500);
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn a_heartbeating_service_under_cpu_load_is_not_flagged() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "busy", "script": fixture("guarded.py"), "args": ["load", "4"],
         "watchdogMs": 1000}
    ]));
    let mut sup = t.run(&config);
    t.wait_event("busy", "load-done");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    // (`not watched` may show: on a loaded machine its first heartbeat can come after 1 s,
    // and arms the watchdog then.)
    let out = t.stdout();
    assert!(!out.contains("hung"), "{out}");
    assert_eq!(events_of(&t, "busy", "start").len(), 1);
}

#[test]
fn a_service_above_max_memory_is_restarted_with_the_figure_in_its_log() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "leaky", "script": fixture("guarded.py"), "args": ["alloc", "96"],
         "maxMemory": "48M", "restartAt": [100]},
        {"name": "small", "script": fixture("guarded.py"), "args": ["plain"], "maxMemory": "1G"}
    ]));
    let mut sup = t.run(&config);
    let out = sup.wait_stdout("leaky pm  | memory: process group RSS");
    let line = out.lines().find(|l| l.contains("memory:")).expect("line");
    assert!(
        line.contains("above maxMemory 48.0 MiB for 3000 ms; restarting"),
        "{line}"
    );
    poll(PATIENCE, || {
        (events_of(&t, "leaky", "start").len() >= 2).then_some(())
    })
    .expect("restarted");
    let rows = ls(&t);
    let leaky = rows.iter().find(|r| r["name"] == "leaky").expect("row");
    assert!(leaky["memory_restarts"].as_u64() >= Some(1), "{leaky}");
    assert_eq!(leaky["max_memory"], 48 << 20);
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    assert_eq!(
        events_of(&t, "small", "start").len(),
        1,
        "under its ceiling"
    );
}

#[test]
fn a_chain_starts_in_order_and_stops_in_reverse() {
    let t = TestDir::new();
    // Listed dependents first: the order comes from dependsOn, not from the file.
    let config = t.config(json!([
        {"name": "web", "script": fixture("guarded.py"), "args": ["ready", "300"], "dependsOn": ["api"]},
        {"name": "api", "script": fixture("guarded.py"), "args": ["ready", "300"], "dependsOn": ["db"]},
        {"name": "db", "script": fixture("guarded.py"), "args": ["ready", "300"]}
    ]));
    let mut sup = t.run(&config);
    t.wait_event("web", "ready");
    let time = |svc: &str, kind: &str| {
        let e = events_of(&t, svc, kind);
        assert_eq!(e.len(), 1, "{svc} {kind}: {e:?}");
        e[0]["t"].as_f64().expect("t")
    };
    assert!(time("api", "start") >= time("db", "ready"));
    assert!(time("web", "start") >= time("api", "ready"));
    let rows = ls(&t);
    let web = rows.iter().find(|r| r["name"] == "web").expect("row");
    assert_eq!(web["depends_on"], json!(["api"]));
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    assert!(time("web", "stop") <= time("api", "stop"));
    assert!(time("api", "stop") <= time("db", "stop"));
}

#[test]
fn a_dependency_cycle_is_refused_with_file_line_and_column() {
    let t = TestDir::new();
    let text = format!(
        "{{\"services\": [\n  {{\"name\": \"a\", \"script\": {s}, \"dependsOn\": [\"b\"]}},\n  {{\"name\": \"b\", \"script\": {s},\n   \"dependsOn\": [\"a\"]}}\n]}}",
        s = json!(fixture("guarded.py"))
    );
    let path = t.write("services.json", &text);
    let status = status_within(
        &mut t.command(&["run", path.to_str().expect("utf-8")]),
        PATIENCE,
    )
    .expect("exits");
    assert_eq!(status.code(), Some(2));
    let err = t.stderr();
    let want = format!(
        "{}:4:18: services[1].dependsOn[0]: dependency cycle: a -> b -> a",
        path.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(t.events().is_empty(), "nothing started");
}

#[test]
fn an_edited_file_restarts_a_watched_service_once() {
    let t = TestDir::new();
    std::fs::create_dir(t.path().join("app")).expect("mkdir");
    std::fs::create_dir(t.path().join("app/node_modules")).expect("mkdir");
    std::fs::copy(fixtures_file("guarded.py"), t.path().join("app/svc.py")).expect("copy");
    t.write("app/helper.py", "X = 1\n");
    // Its log is in the watched folder: its own lines must not restart it.
    let config = t.config(json!([
        {"name": "dev", "script": "app/svc.py", "args": ["plain"], "watch": true,
         "log": "app/dev.txt"}
    ]));
    let mut sup = t.run(&config);
    t.wait_event("dev", "start");
    let log = t.path().join("app/dev.txt");
    poll(PATIENCE, || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("started pid"))
    })
    .expect("log written");
    // Ignored: dependencies and log files.
    t.write("app/node_modules/x.js", "1");
    t.write("app/other.log", "1");
    t.write("app/helper.py", "X = 2\n");
    poll(PATIENCE, || {
        (events_of(&t, "dev", "start").len() >= 2).then_some(())
    })
    .expect("restarted after the edit");
    // Once: well past the debounce, no other restart came (its own log lines included).
    let settled = poll(Duration::from_secs(2), || {
        (events_of(&t, "dev", "start").len() > 2).then_some(())
    });
    assert!(
        settled.is_none(),
        "restarted more than once: {:?}",
        t.events()
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("files changed ("), "{text}");
    assert!(
        text.contains("app/helper.py); restarting (watch)"),
        "{text}"
    );
    assert_eq!(ls(&t)[0]["watch"], true);
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

/// A CLI command's stdout; it must succeed.
fn cli(t: &TestDir, args: &[&str]) -> String {
    let out = t
        .command(args)
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("run the CLI");
    assert!(out.status.success(), "{args:?}: {}", t.cli_stderr());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The line of `text` that starts with `start`, without its indentation.
fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no {start:?} line:\n{text}"))
}

#[test]
fn ls_describe_and_events_show_the_guards() {
    let t = TestDir::new();
    std::fs::create_dir(t.path().join("app")).expect("mkdir");
    let config = t.config(json!([
        {"name": "db", "script": fixture("guarded.py"), "args": ["ready", "200"]},
        {"name": "stuck", "script": fixture("guarded.py"), "args": ["beat", "6"],
         "watchdogMs": 500, "maxMemory": "1G", "dependsOn": ["db"], "watch": ["app"],
         "restartAt": [100]},
        {"name": "slow", "script": fixture("guarded.py"), "args": ["ready", "600000"]},
        {"name": "web", "script": fixture("guarded.py"), "args": ["plain"], "dependsOn": ["slow"]}
    ]));
    let mut sup = t.run(&config);
    // Found hung and restarted (it hangs again after each restart).
    poll(PATIENCE, || {
        (events_of(&t, "stuck", "start").len() >= 2).then_some(())
    })
    .expect("restarted after a hang");
    let ls_text = cli(&t, &["ls"]);
    let stuck = line(&ls_text, "2 ");
    assert!(stuck.contains(" hung)"), "{ls_text}");
    let web = line(&ls_text, "4 ");
    assert!(web.contains("waiting for slow"), "{ls_text}");

    let d = cli(&t, &["describe", "stuck"]);
    assert!(
        line(&d, "watchdog").starts_with("watchdog   heartbeat every 500ms at least ("),
        "{d}"
    );
    assert!(line(&d, "watchdog").contains(" hang"), "{d}");
    assert!(
        line(&d, "memory ").ends_with(" of maxMemory 1024.0MB (0 restarts above it)"),
        "{d}"
    );
    assert_eq!(line(&d, "depends on"), "depends on db");
    let app = t.path().join("app");
    assert_eq!(line(&d, "watch "), format!("watch      {}", app.display()));
    let last = line(&d, "last guard");
    assert!(last.starts_with("last guard hung 20"), "{d}");
    assert!(last.contains(" ago): no heartbeat for "), "{d}");
    assert!(line(&d, "restarts").contains(" hung)"), "{d}");
    // The spec in `describe --json` carries them, as the file wrote them (paths resolved).
    let json: Value =
        serde_json::from_str(&cli(&t, &["describe", "stuck", "--json"])).expect("describe --json");
    let spec = &json[0]["spec"];
    assert_eq!(spec["watchdogMs"], 500, "{spec}");
    assert_eq!(spec["maxMemory"], 1u64 << 30, "{spec}");
    assert_eq!(spec["dependsOn"], json!(["db"]), "{spec}");
    assert_eq!(spec["watch"], json!([app]), "{spec}");

    let d = cli(&t, &["describe", "web"]);
    assert_eq!(line(&d, "depends on"), "depends on slow (waiting for slow)");
    // Settings not used get no line.
    let d = cli(&t, &["describe", "db"]);
    for absent in [
        "watchdog",
        "depends on",
        "watch ",
        "last guard",
        "maxMemory",
    ] {
        assert!(!d.contains(absent), "{absent:?} in:\n{d}");
    }

    // `events` says what a hang is, in words.
    let file = t.path().join("events.txt");
    let mut cmd = t.command(&["events"]);
    cmd.stdout(std::fs::File::create(&file).expect("file"));
    let events = crate::support::Supervisor::from_child(cmd.spawn().expect("events"), t.path());
    let hung = poll(PATIENCE, || {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let line = text.lines().find(|l| l.contains(" hung pid "))?;
        Some(line.to_owned())
    })
    .expect("a hung event");
    assert!(hung.contains(" stuck #2 hung pid "), "{hung}");
    assert!(hung.ends_with(" ms (watchdogMs 500)"), "{hung}");
    drop(events);
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

/// Inotify watches the supervisor holds (Linux: `inotify wd:` lines in its fds' fdinfo).
fn inotify_watches(pid: i32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    fds.flatten()
        .filter_map(|f| std::fs::read_to_string(f.path()).ok())
        .map(|info| {
            info.lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count()
        })
        .sum()
}

#[test]
fn a_deleted_service_is_no_longer_watched() {
    let t = TestDir::new();
    for dir in ["app/a", "app/b", "other"] {
        std::fs::create_dir_all(t.path().join(dir)).expect("mkdir");
    }
    let config = t.config(json!([
        {"name": "dev", "script": fixture("guarded.py"), "args": ["plain"], "watch": ["app"]},
        {"name": "keep", "script": fixture("guarded.py"), "args": ["plain"], "watch": ["other"]}
    ]));
    let mut sup = t.run(&config);
    t.wait_event("dev", "start");
    t.wait_event("keep", "start");
    // app, app/a, app/b and other.
    assert_eq!(inotify_watches(sup.pid()), 4);
    assert!(cli(&t, &["delete", "dev"]).contains("dev #1: deleted"));
    poll(PATIENCE, || (inotify_watches(sup.pid()) == 1).then_some(()))
        .unwrap_or_else(|| panic!("{} inotify watches left", inotify_watches(sup.pid())));
    t.write("app/a/x.py", "1");
    // The other service still is watched.
    t.write("other/y.py", "1");
    poll(PATIENCE, || {
        (events_of(&t, "keep", "start").len() >= 2).then_some(())
    })
    .expect("keep restarted");
    assert_eq!(events_of(&t, "dev", "start").len(), 1, "{:?}", t.events());
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn reload_follows_a_changed_watch_and_forgets_a_removed_service() {
    let t = TestDir::new();
    for dir in ["a", "b", "gone"] {
        std::fs::create_dir_all(t.path().join(dir)).expect("mkdir");
    }
    let spec = |name: &str, watch: &str| json!({"name": name, "script": fixture("guarded.py"), "args": ["plain"], "watch": [watch]});
    let config = t.config(json!([spec("dev", "a"), spec("gone", "gone")]));
    let mut sup = t.run(&config);
    t.wait_event("dev", "start");
    // Both running before the reload (a service removed before it said so would count 0 starts).
    t.wait_event("gone", "start");
    assert_eq!(inotify_watches(sup.pid()), 2);
    t.config(json!([spec("dev", "b")]));
    let out = cli(&t, &["reload"]);
    assert!(out.contains("changed  dev #1"), "{out}");
    assert!(out.contains("removed  gone #2"), "{out}");
    poll(PATIENCE, || {
        (events_of(&t, "dev", "start").len() >= 2).then_some(())
    })
    .expect("dev relaunched by the reload");
    assert_eq!(inotify_watches(sup.pid()), 1, "only b");
    // An edit in the old folder starts nothing; one in the new folder restarts it.
    t.write("a/x.py", "1");
    t.write("gone/x.py", "1");
    let early = poll(Duration::from_secs(1), || {
        (events_of(&t, "dev", "start").len() > 2).then_some(())
    });
    assert!(early.is_none(), "restarted by a/: {:?}", t.events());
    t.write("b/x.py", "1");
    poll(PATIENCE, || {
        (events_of(&t, "dev", "start").len() >= 3).then_some(())
    })
    .expect("restarted by an edit in b/");
    assert_eq!(events_of(&t, "gone", "start").len(), 1);
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

fn fixtures_file(name: &str) -> std::path::PathBuf {
    crate::support::fixtures().join(name)
}
