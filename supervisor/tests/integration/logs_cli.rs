//! `pm-supervisor logs`: after the supervisor is gone (from the config file), across rotated
//! files, every service interleaved, `-n`, `--since`, `--err`, `--json`, `-f` through rotation,
//! and the lines of console services kept in the running supervisor's memory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::{PATIENCE, Supervisor, TestDir, fixture, poll, status_within};

/// Padding that makes each line ~100 bytes, so that a few dozen fill a 4 KiB log.
const PAD: &str = "pppppppppppppppppppppppppppppppppppppppppppppppppppppppppp";

/// A shell service printing `count` numbered lines `<tag>-line N PAD` (to stderr with `err`),
/// `pause` seconds apart, then `<tag>-done`, then idling.
fn counter(tag: &str, count: u32, pause: &str, err: bool) -> Value {
    let to = if err { " >&2" } else { "" };
    json!([
        "-c",
        format!(
            "i=1; while [ $i -le {count} ]; do echo \"{tag}-line $i {PAD}\"{to}; i=$((i+1)); sleep {pause}; done; echo {tag}-done; exec sleep 1000"
        )
    ])
}

/// Runs `pm-supervisor <args>` to the end; returns its exit code, stdout and stderr.
fn cli(t: &TestDir, args: &[&str]) -> (Option<i32>, String, String) {
    let status = status_within(&mut t.command(args), PATIENCE).expect("the command ends");
    let out = std::fs::read_to_string(t.path().join("cli-stdout.txt")).unwrap_or_default();
    (status.code(), out, t.cli_stderr())
}

/// The text of each `<tag>-line N` line, as N.
fn numbers(out: &str, tag: &str) -> Vec<u32> {
    let mark = format!("{tag}-line ");
    out.lines()
        .filter_map(|l| l.split_once(&mark))
        .filter_map(|(_, rest)| rest.split(' ').next()?.parse().ok())
        .collect()
}

fn wait_for_text(path: &Path, text: &str) {
    poll(PATIENCE, || {
        std::fs::read_to_string(path)
            .ok()?
            .contains(text)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{} never showed {text:?}", path.display()));
}

fn stop(mut sup: Supervisor) {
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn logs_after_the_supervisor_exited_read_the_rotated_files_too() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "a", "script": "/bin/sh", "args": counter("a", 200, "0", false), "log": "a.log",
         "logMaxSize": 4096, "logKeep": 20},
        {"name": "console", "script": "/bin/sh", "args": counter("c", 1, "0", false)}
    ]));
    let sup = t.run(&config);
    wait_for_text(&t.path().join("a.log"), "out | a-done");
    stop(sup);
    assert!(
        t.path().join("a.log.3").exists(),
        "the log was rotated several times"
    );
    let cfg = config.to_str().expect("utf-8");
    // The last 150 lines span several rotated files, and come in order.
    let (code, out, err) = cli(&t, &["logs", "a", "--config", cfg, "-n", "150"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 150, "{out}");
    assert!(lines.iter().all(|l| l.contains(" a ")), "{out}");
    let n = numbers(&out, "a");
    // The last lines: `a-done` and the supervisor's own lines (stopped, exited) come after.
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");
    assert_eq!(n.last(), Some(&200), "{out}");
    // Every line, when asked for enough.
    let (_, out, _) = cli(&t, &["logs", "a", "--config", cfg, "-n", "100000"]);
    assert_eq!(numbers(&out, "a"), (1..=200).collect::<Vec<_>>());
    // The default: the last 15 lines.
    let (_, out, _) = cli(&t, &["logs", "a", "--config", cfg]);
    assert_eq!(out.lines().count(), 15, "{out}");
    // A console service has no file, and no supervisor keeps its lines.
    let (code, _, err) = cli(&t, &["logs", "console", "--config", cfg]);
    assert_eq!(code, Some(1));
    assert!(err.contains("console has no \"log\" file"), "{err}");
    let (code, _, err) = cli(&t, &["logs", "nobody", "--config", cfg]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no service named \"nobody\""), "{err}");
    // Without the config file, nothing says where the files are.
    let (code, _, err) = cli(&t, &["logs", "a"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--config FILE"), "{err}");
}

#[test]
fn logs_interleave_every_service_and_filter_by_count_time_and_stream() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "a", "script": "/bin/sh", "args": counter("a", 30, "0.02", false), "log": "a.log"},
        {"name": "b", "script": "/bin/sh", "args": counter("b", 30, "0.02", true), "log": "logs/b.log"}
    ]));
    let sup = t.run(&config);
    wait_for_text(&t.path().join("a.log"), "out | a-done");
    wait_for_text(&t.path().join("logs/b.log"), "out | b-done");
    stop(sup);
    let cfg = config.to_str().expect("utf-8");
    let (code, out, err) = cli(&t, &["logs", "--config", cfg, "-n", "1000", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let text = |l: &Value| l["text"].as_str().unwrap_or_default().to_owned();
    // Both services, in time order, with their stream.
    let times: Vec<&str> = lines.iter().filter_map(|l| l["time"].as_str()).collect();
    assert_eq!(times.len(), lines.len());
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{out}");
    let a_lines = lines.iter().filter(|l| l["service"] == "a").count();
    let b_lines = lines.iter().filter(|l| l["service"] == "b").count();
    assert!(a_lines >= 31 && b_lines >= 31, "{out}");
    let first_b = lines.iter().position(|l| l["service"] == "b").expect("b");
    let last_a = lines.iter().rposition(|l| l["service"] == "a").expect("a");
    assert!(
        first_b < last_a,
        "interleaved, not one file after the other: {out}"
    );
    for l in &lines {
        let t = text(l);
        if t.starts_with("a-line") {
            assert_eq!(l["stream"], "out", "{l}");
        }
        if t.starts_with("b-line") {
            assert_eq!(l["stream"], "err", "{l}");
        }
        assert!(
            l.as_object().is_some_and(|o| o.len() == 4),
            "time, service, stream, text: {l}"
        );
    }
    // -n: the last lines of the interleaved output.
    let (_, out, _) = cli(&t, &["logs", "--config", cfg, "-n", "3"]);
    let last3: Vec<String> = lines[lines.len() - 3..]
        .iter()
        .map(|l| {
            format!(
                "{} {} ",
                l["time"].as_str().unwrap_or_default(),
                l["service"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 3, "{out}");
    for (g, w) in got.iter().zip(&last3) {
        assert!(g.starts_with(w.as_str()), "{g} / {w}");
    }
    // --err: stderr lines only.
    let (_, out, _) = cli(&t, &["logs", "--config", cfg, "-n", "1000", "--err"]);
    assert_eq!(numbers(&out, "b"), (1..=30).collect::<Vec<_>>(), "{out}");
    assert!(out.lines().all(|l| l.contains(" b err | ")), "{out}");
    // --since a time: that line and the later ones.
    let mid = lines[lines.len() / 2]["time"]
        .as_str()
        .expect("time")
        .to_owned();
    let (code, out, err) = cli(
        &t,
        &["logs", "--config", cfg, "-n", "1000", "--since", &mid],
    );
    assert_eq!(code, Some(0), "{err}");
    let since: Vec<&str> = out.lines().collect();
    assert!(!since.is_empty() && since.len() < lines.len(), "{out}");
    assert!(since.iter().all(|l| l[..mid.len()] >= *mid), "{out}");
    let newer = times.iter().filter(|&&t| t >= mid.as_str()).count();
    assert_eq!(since.len(), newer);
    // --since a duration.
    let (_, out, _) = cli(
        &t,
        &["logs", "--config", cfg, "-n", "1000", "--since", "1h"],
    );
    assert_eq!(out.lines().count(), lines.len());
    let (code, _, err) = cli(&t, &["logs", "--config", cfg, "--since", "soonish"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--since \"soonish\""), "{err}");
}

#[test]
fn logs_follow_new_lines_through_rotations() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "f", "script": "/bin/sh", "args": counter("f", 400, "0.01", false), "log": "f.log",
         "logMaxSize": 4096, "logKeep": 50}
    ]));
    let sup = t.run(&config);
    wait_for_text(&t.path().join("f.log"), "out | f-line 5 ");
    let cfg = config.to_str().expect("utf-8");
    let mut follow = t
        .command(&["logs", "f", "-f", "-n", "1", "--config", cfg])
        .stdout(Stdio::piped())
        .spawn()
        .expect("logs -f");
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        let stdout = follow.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut s = seen.lock().expect("lock");
                s.push_str(&line);
                s.push('\n');
            }
        })
    };
    let got = poll(PATIENCE * 2, || {
        let s = seen.lock().expect("lock").clone();
        s.contains("out | f-done").then_some(s)
    });
    let _ = follow.kill();
    let _ = follow.wait();
    let _ = reader.join();
    let got =
        got.unwrap_or_else(|| panic!("-f never showed f-done: {}", seen.lock().expect("lock")));
    assert!(
        t.path().join("f.log.5").exists(),
        "the log rotated several times while followed"
    );
    // Every line from the first shown on, once and in order, across every rotation.
    let n = numbers(&got, "f");
    assert!(n.len() > 300, "{got}");
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");
    assert_eq!(n.last(), Some(&400));
    stop(sup);
}

#[test]
fn console_services_keep_their_recent_lines_in_the_supervisor() {
    let t = TestDir::new();
    let big = "x".repeat(60 * 1024);
    let config = t.config(json!([
        {"name": "c", "script": "/bin/sh", "args": counter("c", 1500, "0", false)},
        {"name": "big", "script": "/bin/sh", "args": ["-c", format!(
            "i=0; while [ $i -lt 10 ]; do echo {big}; i=$((i+1)); done; echo big-done; exec sleep 1000")]},
        {"name": "f", "script": "/bin/sh", "args": counter("f", 3, "0", false), "log": "f.log"}
    ]));
    let sup = t.run(&config);
    sup.wait_stdout("out | c-done");
    sup.wait_stdout("out | big-done");
    wait_for_text(&t.path().join("f.log"), "out | f-done");
    // By lines: the newest 1000.
    let (code, out, err) = cli(&t, &["logs", "c", "-n", "5000"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1000, "{err}");
    assert!(
        lines.last().is_some_and(|l| l.contains(" c out | c-done")),
        "{out}"
    );
    let n = numbers(&out, "c");
    assert_eq!(n, (502..=1500).collect::<Vec<_>>());
    // -n, --json.
    let (_, out, _) = cli(&t, &["logs", "c", "-n", "2", "--json"]);
    let json: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(json.len(), 2, "{out}");
    assert_eq!(json[1]["text"], "c-done");
    assert_eq!(json[1]["service"], "c");
    assert_eq!(json[1]["stream"], "out");
    // By bytes: four lines of 60 KiB fit in 256 KiB.
    let (_, out, _) = cli(&t, &["logs", "big", "-n", "100"]);
    let kept: Vec<&str> = out.lines().collect();
    assert_eq!(kept.len(), 5, "four long lines and big-done");
    assert!(kept[..4].iter().all(|l| l.ends_with(&big)));
    // Every service: the console ones from memory, the others from their files, interleaved.
    let (_, out, _) = cli(&t, &["logs", "-n", "100000"]);
    assert!(
        out.contains(" f out | f-line 3 ") && out.contains(" c out | c-done"),
        "{out}"
    );
    let times: Vec<&str> = out.lines().map(|l| &l[..24]).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    // Over the control socket, as any controller asks.
    let mut conn = crate::support::Conn::open(&t);
    let reply = conn.ask(json!({"type": "logs", "id": 1, "name": "c", "lines": 3}));
    assert_eq!(reply["ok"], true, "{reply}");
    let got = reply["result"]["lines"].as_array().expect("lines");
    assert_eq!(got.len(), 3, "{reply}");
    assert_eq!(got[2]["text"], "c-done");
    stop(sup);
}

#[test]
fn escape_sequences_of_every_kind_are_stripped() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "s", "script": fixture("output.py"), "args": ["ansi-strings"], "log": "s.log", "stripANSI": true}
    ]));
    let sup = t.run(&config);
    t.wait_event("s", "written");
    wait_for_text(&t.path().join("s.log"), "end");
    let log = std::fs::read_to_string(t.path().join("s.log")).expect("log");
    assert!(log.contains(" s out | xyz\n"), "{log:?}");
    assert!(log.contains(" s out | ab\n"), "{log:?}");
    assert!(log.contains(" s out | link end\n"), "{log:?}");
    stop(sup);
}
