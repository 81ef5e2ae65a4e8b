//! The CLI's commands against a real supervisor: every action by name, by id and `all`,
//! `start` from flags and from a spec, `delete`, `describe`, `reload`, `send`, `events`, `ls`
//! (JSON, CPU, colours), completions, JSONC config files, and a runtime folder that stays clean.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::{PATIENCE, Supervisor, TestDir, fixture, poll};

/// A CLI command's exit status and stdout (stderr: `t.cli_stderr()`).
fn cli(t: &TestDir, args: &[&str]) -> (bool, String) {
    cli_with(t, args, |_| {})
}

fn cli_with(t: &TestDir, args: &[&str], adjust: impl FnOnce(&mut Command)) -> (bool, String) {
    let mut cmd = t.command(args);
    cmd.stdout(Stdio::piped());
    adjust(&mut cmd);
    let mut child = cmd.spawn().expect("start the CLI");
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).expect("read the CLI's stdout");
    }
    let status = poll(PATIENCE, || child.try_wait().expect("try_wait")).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("{args:?} did not finish");
    });
    (status.success(), out)
}

/// `cli`, which must succeed.
fn ok(t: &TestDir, args: &[&str]) -> String {
    let (success, out) = cli(t, args);
    assert!(
        success,
        "{args:?} failed: {}\nstdout: {out}",
        t.cli_stderr()
    );
    out
}

/// `ls --json`.
fn rows(t: &TestDir) -> Vec<Value> {
    let out = ok(t, &["ls", "--json"]);
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn row(t: &TestDir, name: &str) -> Value {
    rows(t)
        .into_iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name}: {:?}", rows(t)))
}

/// Waits until `ls` answers and every listed service in `names` is running.
fn wait_running(t: &TestDir, names: &[&str]) {
    poll(PATIENCE, || {
        let (success, out) = cli(t, &["ls", "--json"]);
        let rows: Vec<Value> = serde_json::from_str(&out).ok().filter(|_| success)?;
        names
            .iter()
            .all(|n| {
                rows.iter()
                    .any(|r| r["name"] == *n && r["state"] == "running")
            })
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{names:?} never all running: {}", t.cli_stderr()));
}

fn sleeper(name: &str) -> Value {
    json!({"name": name, "script": fixture("child.py"), "args": ["sigterm"]})
}

fn names(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["name"].as_str().unwrap_or("-").to_owned())
        .collect()
}

#[test]
fn every_action_works_by_name_by_id_and_on_all() {
    let t = TestDir::new();
    let config = t.config(json!([sleeper("a"), sleeper("b")]));
    let mut sup = t.run(&config);
    wait_running(&t, &["a", "b"]);
    let pid = |name: &str| row(&t, name)["pid"].clone();

    assert_eq!(ok(&t, &["stop", "a"]).trim(), "a #1: stopped");
    assert_eq!(
        (row(&t, "a")["state"].clone(), row(&t, "b")["state"].clone()),
        (json!("stopped"), json!("running"))
    );
    assert!(ok(&t, &["restart", "1"]).starts_with("a #1: running pid "));
    let (a, b) = (pid("a"), pid("b"));
    assert!(a.is_number());
    ok(&t, &["restart", "all"]);
    assert!(pid("a") != a && pid("b") != b, "both restarted");
    let out = ok(&t, &["stop", "all"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(rows(&t).iter().all(|r| r["state"] == "stopped"));
    ok(&t, &["restart", "all"]);
    // The old spelling still works.
    ok(&t, &["stopall"]);
    assert!(rows(&t).iter().all(|r| r["state"] == "stopped"));
    ok(&t, &["restart", "2"]);
    assert_eq!(row(&t, "b")["state"], "running");

    // `start` from flags, with the script's arguments after `--`, relative to the current
    // folder; and from a JSON spec.
    std::fs::copy(fixture("child.py"), t.path().join("mine.py")).expect("copy");
    let out = ok(
        &t,
        &[
            "start", "mine.py", "--name", "c", "--env", "X=1", "--", "sigterm",
        ],
    );
    assert!(out.starts_with("c #3: running pid "), "{out}");
    let c = &serde_json::from_str::<Value>(&ok(&t, &["describe", "c", "--json"])).expect("json")[0];
    assert_eq!(c["spec"]["args"], json!(["sigterm"]), "{c}");
    assert_eq!(c["spec"]["env"]["X"], "1", "{c}");
    assert_eq!(c["spec"]["cwd"], json!(t.path()), "{c}");
    let spec = json!({"name": "d", "script": fixture("child.py"), "args": ["sigterm"]});
    assert!(ok(&t, &["start", "--spec", &spec.to_string()]).starts_with("d #4: running"));

    // `delete` stops and forgets, by name, by id, and all.
    assert_eq!(ok(&t, &["delete", "c"]).trim(), "c #3: deleted");
    assert_eq!(names(&rows(&t)), ["a", "b", "d"]);
    ok(&t, &["delete", "4"]);
    assert_eq!(names(&rows(&t)), ["a", "b"]);
    let (success, _) = cli(&t, &["restart", "nosuch"]);
    assert!(!success);
    assert!(t.cli_stderr().contains("no service named \"nosuch\""));
    let (success, _) = cli(&t, &["stop", "99"]);
    assert!(!success);
    assert!(t.cli_stderr().contains("no service with id 99"));
    ok(&t, &["delete", "all"]);
    assert!(rows(&t).is_empty());
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    t.wait_all_gone(PATIENCE).expect("every process gone");
}

/// `events` streams what happens, a child's messages included, and `send` reaches services by
/// id and `all`.
#[test]
fn events_show_child_messages_sent_by_id_and_all() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "p", "script": fixture("child.py"), "args": ["protocol"]}
    ]));
    let _sup = t.run(&config);
    wait_running(&t, &["p"]);
    let spawn_events = |json: bool, file: &str| {
        let out = std::fs::File::create(t.path().join(file)).expect("file");
        let mut cmd = t.command(if json {
            &["events", "--json"]
        } else {
            &["events"]
        });
        cmd.stdout(out);
        Supervisor::from_child(cmd.spawn().expect("events"), t.path())
    };
    let read = |file: &str| std::fs::read_to_string(t.path().join(file)).unwrap_or_default();
    t.wait_event("p", "started");
    let as_json = spawn_events(true, "events.json");
    let plain = spawn_events(false, "events.txt");
    // Once both show a restart, both are subscribed (a restart each second until then).
    let subscribed = (0..10).any(|_| {
        ok(&t, &["restart", "p"]);
        poll(Duration::from_secs(1), || {
            (read("events.json").contains("\"started\"")
                && read("events.txt").contains(" started pid "))
            .then_some(())
        })
        .is_some()
    });
    assert!(
        subscribed,
        "{}\n{}",
        read("events.json"),
        read("events.txt")
    );
    // The new process reads its channel.
    let pid = row(&t, "p")["pid"].clone();
    poll(PATIENCE, || {
        t.events()
            .iter()
            .any(|e| e["event"] == "started" && e["pid"] == pid)
            .then_some(())
    })
    .expect("the restarted child runs");
    assert_eq!(
        ok(&t, &["send", "1", r#"{"n": 1}"#]).trim(),
        "sent to 1 process(es)"
    );
    assert_eq!(
        ok(&t, &["send", "all", r#"{"n": 2}"#]).trim(),
        "sent to 1 process(es)"
    );
    let messages = poll(PATIENCE, || {
        let events: Vec<Value> = read("events.json")
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|e: &Value| e["event"] == "message" && e["data"].get("echo").is_some())
            .collect();
        (events.len() >= 2).then_some(events)
    })
    .unwrap_or_else(|| panic!("no message events: {}", read("events.json")));
    assert_eq!(
        messages[0]["data"],
        json!({"echo": {"n": 1}}),
        "{messages:?}"
    );
    assert_eq!(messages[0]["name"], "p");
    assert_eq!(messages[0]["service"], 1);
    assert_eq!(messages[1]["data"], json!({"echo": {"n": 2}}));
    poll(PATIENCE, || {
        read("events.txt")
            .contains(r#"p #1 message pid "#)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("plain events: {}", read("events.txt")));
    assert!(
        read("events.txt").contains(r#": {"echo":{"n":1}}"#),
        "{}",
        read("events.txt")
    );
    drop((as_json, plain));
}

#[test]
fn reload_starts_added_stops_removed_and_restarts_changed_services() {
    let t = TestDir::new();
    let config = t.config(json!([sleeper("keep"), sleeper("gone"), sleeper("change")]));
    let _sup = t.run(&config);
    wait_running(&t, &["keep", "gone", "change"]);
    let before = rows(&t);
    let pid = |rows: &[Value], name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .map(|r| r["pid"].clone())
    };
    let mut changed = sleeper("change");
    changed["env"] = json!({"NEW": "1"});
    t.config(json!([sleeper("keep"), changed, sleeper("new")]));
    let out = ok(&t, &["reload"]);
    let said: Vec<&str> = out
        .lines()
        .map(|l| l.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        said,
        [
            "added    new #4",
            "changed  change #3",
            "removed  gone #2",
            "unchanged"
        ],
        "{out}"
    );
    let after = rows(&t);
    assert_eq!(names(&after), ["keep", "change", "new"]);
    assert_eq!(pid(&after, "keep"), pid(&before, "keep"), "left alone");
    assert_ne!(pid(&after, "change"), pid(&before, "change"), "restarted");
    let change = &serde_json::from_str::<Value>(&ok(&t, &["describe", "change", "--json"]))
        .expect("json")[0];
    assert_eq!(change["spec"]["env"]["NEW"], "1", "{change}");
    assert!(after.iter().all(|r| r["state"] == "running"), "{after:?}");
    let gone = pid(&before, "gone")
        .and_then(|p| p.as_i64())
        .expect("a pid");
    assert!(
        !TestDir::alive(gone),
        "the removed service's process is gone"
    );
    // Once more: nothing to do.
    assert!(ok(&t, &["reload"]).starts_with("nothing changed (3 services"));

    // A broken file changes nothing, and says where it is broken.
    t.write(
        "services.json",
        "{\"services\": [\n  {\"name\": \"keep\", \"script\": 1}\n]}",
    );
    let (success, _) = cli(&t, &["reload"]);
    assert!(!success);
    assert!(
        t.cli_stderr().contains("services.json:2:")
            && t.cli_stderr().contains("nothing was changed"),
        "{}",
        t.cli_stderr()
    );
    assert_eq!(names(&rows(&t)), ["keep", "change", "new"]);
}

#[test]
fn reload_without_a_config_file_is_a_clear_error() {
    let t = TestDir::new();
    let child = t
        .command(&["serve", "--name", "plain"])
        .spawn()
        .expect("serve");
    let mut sup = Supervisor::from_child(child, t.path());
    poll(PATIENCE, || cli(&t, &["ls"]).0.then_some(())).expect("serve answers");
    let (success, _) = cli(&t, &["reload"]);
    assert!(!success);
    assert!(
        t.cli_stderr().contains("runs no config file"),
        "{}",
        t.cli_stderr()
    );
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

/// `ls` in a terminal (a pty) has coloured states, with CPU and memory columns; not with
/// NO_COLOR, and not into a pipe.
#[test]
fn ls_colours_states_only_on_a_terminal_without_no_color() {
    let t = TestDir::new();
    let config = t.config(json!([sleeper("a")]));
    let _sup = t.run(&config);
    wait_running(&t, &["a"]);
    let on_pty = |no_color: Option<&str>| {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave = std::fs::File::from(pty.slave);
        let (success, _) = cli_with(&t, &["ls"], |cmd| {
            cmd.stdout(slave.try_clone().expect("dup"));
            cmd.env_remove("NO_COLOR");
            if let Some(v) = no_color {
                cmd.env("NO_COLOR", v);
            }
        });
        assert!(success, "{}", t.cli_stderr());
        drop(slave);
        let mut out = Vec::new();
        let mut master = std::fs::File::from(pty.master);
        let mut buf = [0; 4096];
        // Reads until the pty reports the slave closed (EIO); bounded by its small output.
        for _ in 0..100 {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let coloured = on_pty(None);
    assert!(coloured.contains("\x1b[32mrunning\x1b[0m"), "{coloured:?}");
    let header = coloured.lines().next().unwrap_or_default();
    assert!(
        header.contains("cpu") && header.contains("memory"),
        "{header}"
    );
    assert!(!on_pty(Some("1")).contains('\x1b'), "NO_COLOR");
    let (_, piped) = cli(&t, &["ls"]);
    assert!(
        !piped.contains('\x1b') && piped.contains("running"),
        "{piped:?}"
    );
    let r = row(&t, "a");
    assert!(r["memory"].as_u64().is_some_and(|m| m > 1024 * 1024), "{r}");
    assert!(r["cpu"].as_f64().is_some_and(|c| c >= 0.0), "{r}");
}

/// `describe`: state and since when, pids, restarts, the last exits with code or signal, log
/// files, uptime, memory and CPU, and the spec.
#[test]
fn describe_tells_everything_about_a_service() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "crash", "script": fixture("child.py"), "args": ["exit", "3"], "restartAt": [60000]},
        {"name": "kill", "script": fixture("child.py"), "args": ["grandchild"], "log": "kill.log",
         "restartAt": [100]},
    ]));
    let _sup = t.run(&config);
    let grandchild = t.wait_event("kill", "grandchild")["child"]
        .as_i64()
        .expect("grandchild pid");
    let first = row(&t, "kill")["pid"].as_i64().expect("pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), Signal::SIGKILL)
        .expect("kill");
    let restarted = poll(PATIENCE, || {
        let r = row(&t, "kill");
        (r["pid"].as_i64().is_some_and(|p| p != first) && r["state"] == "running").then_some(r)
    })
    .expect("restarted");
    poll(PATIENCE, || {
        (row(&t, "crash")["state"] == "waiting").then_some(())
    })
    .expect("crashed");
    let grandchild2 = poll(PATIENCE, || {
        t.events()
            .into_iter()
            .filter(|e| e["event"] == "grandchild")
            .nth(1)
    })
    .expect("second grandchild")["child"]
        .as_i64()
        .expect("pid");
    assert_ne!(grandchild, grandchild2);

    let all: Vec<Value> =
        serde_json::from_str(&ok(&t, &["describe", "all", "--json"])).expect("json");
    assert_eq!(names(&all), ["crash", "kill"]);
    let crash = &all[0];
    assert_eq!(crash["state"], "waiting");
    assert_eq!(crash["exits"][0]["code"], 3, "{crash}");
    assert_eq!(crash["exits"][0]["exit"], "exit code 3", "{crash}");
    assert!(
        crash["since"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{crash}"
    );
    assert_eq!(crash["spec"]["restartAt"], json!([60000]));
    let kill = &all[1];
    assert_eq!(kill["exits"][0]["signal"], "SIGKILL", "{kill}");
    assert_eq!(kill["exits"][0]["pid"], first, "{kill}");
    assert_eq!(kill["restarts"], 1);
    assert_eq!(
        kill["pids"],
        json!([restarted["pid"], grandchild2]),
        "{kill}"
    );
    assert!(
        kill["memory"].as_u64().is_some_and(|m| m > 1024 * 1024),
        "{kill}"
    );
    assert!(kill["cpu"].is_number(), "{kill}");
    assert!(kill["started"].as_str().is_some(), "{kill}");
    assert_eq!(kill["log"], json!(t.path().join("kill.log")));

    let text = ok(&t, &["describe", "2"]);
    for want in [
        "kill (id 2)",
        "state      running since ",
        &format!("pid        {} (group: {grandchild2})", restarted["pid"]),
        "restarts   1 (",
        "memory     ",
        "cpu        ",
        &format!("log        {}", t.path().join("kill.log").display()),
        "last exits",
        &format!("pid {first}  signal SIGKILL  after "),
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    let text = ok(&t, &["describe", "crash"]);
    assert!(text.contains("exit code 3"), "{text}");
    assert!(text.contains("waiting ("), "{text}");
}

#[test]
fn completions_are_generated_for_bash_zsh_and_fish() {
    let t = TestDir::new();
    for (shell, marker) in [
        ("bash", "complete -F _pm__supervisor"),
        ("zsh", "#compdef pm-supervisor"),
        ("fish", "complete -c pm-supervisor"),
    ] {
        let out = ok(&t, &["completions", shell]);
        assert!(out.contains(marker), "{shell}: {out}");
        for command in ["describe", "reload", "delete", "events"] {
            assert!(out.contains(command), "{shell} lacks {command}");
        }
    }
}

#[test]
fn a_config_file_may_have_comments_and_trailing_commas() {
    let t = TestDir::new();
    let text = format!(
        r#"// The app's services.
{{
  "services": [
    /* the web server */
    {{"name": "web", "script": "{}", "args": ["sigterm",],}}, // trailing commas
  ],
}}
"#,
        fixture("child.py")
    );
    let config = t.write("services.json", &text);
    let mut sup = t.run(&config);
    wait_running(&t, &["web"]);
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));

    // Errors keep their line and column, after comments too.
    let bad = "{\n  // a comment, then a field that does not exist\n  \"services\": [\n    {\"script\": \"a.js\", /* x */ \"cwd\": \"/does/not/exist\"},\n  ]\n}\n";
    let config = t.write("services.json", bad);
    let status = t
        .command(&["run", config.to_str().expect("utf-8")])
        .status()
        .expect("run");
    assert_eq!(status.code(), Some(2));
    assert!(
        t.stderr().contains("services.json:4:39: services[0].cwd: "),
        "{}",
        t.stderr()
    );
    let broken = "{\n  \"services\": [] /* never closed\n}\n";
    let config = t.write("services.json", broken);
    let status = t
        .command(&["run", config.to_str().expect("utf-8")])
        .status()
        .expect("run");
    assert_eq!(status.code(), Some(2));
    assert!(t.stderr().contains("services.json:2:"), "{}", t.stderr());
}

/// What is in the runtime folder, sorted.
fn runtime_files(t: &TestDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(t.path().join("rt"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Supervisors run one after the other leave nothing in the runtime folder: a clean exit
/// removes its own files, and the files of one killed with SIGKILL are removed by the next
/// supervisor to start (once its services are gone).
#[test]
fn finished_supervisors_leave_no_files_in_the_runtime_folder() {
    let t = TestDir::new();
    let stop = |mut sup: Supervisor| {
        sup.signal(Signal::SIGTERM);
        assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    };
    let one = t.config(json!([sleeper("one")]));
    let sup = t.run(&one);
    wait_running(&t, &["one"]);
    assert_eq!(runtime_files(&t).len(), 3, "{:?}", runtime_files(&t));
    stop(sup);
    assert!(runtime_files(&t).is_empty(), "{:?}", runtime_files(&t));

    for name in ["s1", "s2"] {
        let child = t
            .command(&["serve", "--name", name])
            .spawn()
            .expect("serve");
        let sup = Supervisor::from_child(child, t.path());
        poll(PATIENCE, || cli(&t, &["ls"]).0.then_some(())).expect("serve answers");
        stop(sup);
    }
    assert!(runtime_files(&t).is_empty(), "{:?}", runtime_files(&t));

    let two = t.write(
        "two.json",
        &json!({"services": [sleeper("two")]}).to_string(),
    );
    let mut killed = t.run(&two);
    wait_running(&t, &["two"]);
    killed.signal(Signal::SIGKILL);
    killed.wait(PATIENCE).expect("killed");
    // Its sentinel stops its service, then ends.
    t.wait_all_gone(PATIENCE)
        .expect("the killed run's processes are gone");
    let left = runtime_files(&t);
    assert_eq!(
        left.len(),
        3,
        "a killed supervisor cannot clean up: {left:?}"
    );

    let sup = t.run(&one);
    wait_running(&t, &["one"]);
    let now = runtime_files(&t);
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(now.iter().all(|n| n.starts_with("services-")), "{now:?}");
    stop(sup);
    assert!(runtime_files(&t).is_empty(), "{:?}", runtime_files(&t));
}
