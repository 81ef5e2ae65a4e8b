//! Logs: whole lines whatever the pieces, never mixed, nothing lost; formats, ANSI stripping,
//! long lines, invalid UTF-8, rotation and unwritable paths.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::{PATIENCE, TestDir, fixture, poll};

fn writer(kind: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../bench/writers")
        .join(kind)
        .canonicalize()
        .expect("bench writer")
        .display()
        .to_string()
}

fn fnv(data: &[u8], mut h: u32) -> u32 {
    for &c in data {
        h = (h ^ u32::from(c)).wrapping_mul(0x0100_0193);
    }
    h
}

/// (lost, duplicated, mangled) lines of writers `names` (each wrote `n` lines) in a log.
fn audit(log: &[u8], names: &[&str], n: usize) -> (usize, usize, usize) {
    let mut seen: HashMap<&str, Vec<bool>> = names.iter().map(|w| (*w, vec![false; n])).collect();
    let (mut dup, mut mangled) = (0, 0);
    for line in log.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Some(at) = line.windows(3).position(|w| w == b" | ") else {
            mangled += 1;
            continue;
        };
        if line[..at].ends_with(b" pm ") {
            continue;
        }
        let body = &line[at + 3..];
        // "<70 letters> <writer> <7 digits> <8 hex>"
        let ok = body.len() == 70 + 1 + 2 + 1 + 7 + 1 + 8 && {
            let (payload, rest) = body.split_at(70);
            let name = std::str::from_utf8(&rest[1..3]).unwrap_or("");
            let seq: Option<usize> = std::str::from_utf8(&rest[4..11])
                .ok()
                .and_then(|s| s.parse().ok());
            let sum =
                u32::from_str_radix(std::str::from_utf8(&rest[12..20]).unwrap_or("x"), 16).ok();
            let h = fnv(payload, 0x811c_9dc5);
            let expect = fnv(&rest[..11], h);
            match (seen.get_mut(name), seq, sum) {
                (Some(v), Some(seq), Some(sum)) if sum == expect && seq < n => {
                    if v[seq] {
                        dup += 1;
                    }
                    v[seq] = true;
                    true
                }
                _ => false,
            }
        };
        if !ok {
            mangled += 1;
        }
    }
    let lost = seen
        .values()
        .map(|v| v.iter().filter(|x| !**x).count())
        .sum();
    (lost, dup, mangled)
}

#[test]
fn four_writers_sharing_one_file_lose_and_mix_nothing() {
    let t = TestDir::new();
    let n = 20_000;
    let services: Vec<_> = [("writer.js", "node"), ("writer.py", "python3"), ("writer.js", "node"), ("writer.py", "python3")]
        .iter()
        .enumerate()
        .map(|(i, (w, interp))| {
            json!({"name": format!("w{i}"), "script": writer(w), "interpreter": interp,
                   "args": [n.to_string(), format!("w{i}"), t.path().join(format!("w{i}.done")).display().to_string()],
                   "log": "shared.log", "restartAt": []})
        })
        .collect();
    let config = t.config(json!(services));
    let mut sup = t.run(&config);
    poll(Duration::from_secs(120), || {
        (0..4)
            .all(|i| t.path().join(format!("w{i}.done")).exists())
            .then_some(())
    })
    .expect("writers finished");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    let log = std::fs::read(t.path().join("shared.log")).expect("log");
    assert_eq!(audit(&log, &["w0", "w1", "w2", "w3"], n), (0, 0, 0));
}

fn log_of(t: &TestDir, svc: &str, wait_for: &str) -> String {
    let path = t.path().join(format!("{svc}.log"));
    poll(PATIENCE, || {
        let s = std::fs::read_to_string(&path).ok()?;
        s.contains(wait_for).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "{svc}.log never showed {wait_for:?}: {:?}",
            std::fs::read_to_string(&path)
        )
    })
}

#[test]
fn pieces_with_pauses_between_them_make_whole_lines() {
    let t = TestDir::new();
    let config = t.config(
        json!([{"name": "p", "script": fixture("output.py"), "args": ["pieces"], "log": "p.log"}]),
    );
    let _sup = t.run(&config);
    let log = log_of(&t, "p", "second");
    assert!(log.contains(" p out | hello world\n"), "{log}");
    assert!(log.contains(" p out | second\n"), "{log}");
    // Format: RFC 3339 UTC with milliseconds, name, stream.
    let line = log
        .lines()
        .find(|l| l.ends_with("hello world"))
        .expect("line");
    assert_eq!(
        line.len(),
        "2026-11-26T12:21:02.123Z p out | hello world".len(),
        "{line}"
    );
    assert!(
        line.as_bytes()[23] == b'Z' && line.as_bytes()[10] == b'T',
        "{line}"
    );
}

#[test]
fn a_crash_mid_line_keeps_the_half_line() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "c", "script": fixture("output.py"), "args": ["crash-mid-line"], "log": "c.log", "restartAt": []}]));
    let _sup = t.run(&config);
    let log = log_of(&t, "c", "exited: exit code 3");
    assert!(log.contains(" c out | first\n"), "{log}");
    assert!(log.contains(" c out | half a li\n"), "{log}");
}

#[test]
fn ansi_sequences_split_across_writes_are_stripped() {
    let t = TestDir::new();
    let config = t.config(json!([
        {"name": "s", "script": fixture("output.py"), "args": ["ansi"], "log": "s.log", "stripANSI": true},
        {"name": "k", "script": fixture("output.py"), "args": ["ansi"], "log": "k.log"}
    ]));
    let _sup = t.run(&config);
    let stripped = log_of(&t, "s", "done");
    assert!(
        stripped.contains(" s out | red plain done\n"),
        "{stripped:?}"
    );
    let kept = log_of(&t, "k", "done");
    assert!(
        kept.contains("\x1b[31mred\x1b[0m"),
        "without stripANSI the bytes stay: {kept:?}"
    );
}

#[test]
fn an_over_long_line_is_cut_into_marked_parts() {
    let t = TestDir::new();
    let config = t.config(
        json!([{"name": "l", "script": fixture("output.py"), "args": ["long"], "log": "l.log"}]),
    );
    let _sup = t.run(&config);
    let log = log_of(&t, "l", "l out | after");
    let parts: Vec<(&str, &str)> = log
        .lines()
        .filter(|l| l.contains(" l out"))
        .map(|l| l.split_once(" | ").expect("prefix"))
        .collect();
    // 200 KiB: three full 64 KiB parts marked as continued, then the rest.
    let marks: Vec<bool> = parts
        .iter()
        .map(|(head, _)| head.ends_with("out+"))
        .collect();
    assert_eq!(
        marks,
        vec![true, true, true, false, false],
        "{:?}",
        parts.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    let whole: String = parts[..4].iter().map(|p| p.1).collect();
    let expected: String = (0..200 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(whole, expected);
    assert_eq!(parts[4].1, "after");
}

#[test]
fn invalid_utf8_is_kept_byte_for_byte() {
    let t = TestDir::new();
    let config = t.config(
        json!([{"name": "b", "script": fixture("output.py"), "args": ["binary"], "log": "b.log"}]),
    );
    let _sup = t.run(&config);
    t.wait_event("b", "written");
    let path = t.path().join("b.log");
    let log = poll(PATIENCE, || {
        let b = std::fs::read(&path).ok()?;
        b.windows(5).any(|w| w == b"bytes").then_some(b)
    })
    .expect("line written");
    let raw: &[u8] = b" b out | \xff\xfe raw \x80 bytes\n";
    assert!(
        log.windows(raw.len()).any(|w| w == raw),
        "{:?}",
        String::from_utf8_lossy(&log)
    );
}

#[test]
fn rotation_under_load_loses_nothing() {
    let t = TestDir::new();
    let n = 30_000;
    let config = t.config(
        json!([{"name": "w0", "script": writer("writer.js"), "interpreter": "node",
        "args": [n.to_string(), "w0", t.path().join("done").display().to_string()],
        "log": "r.log", "logMaxSize": 256 * 1024, "logKeep": 100, "restartAt": []}]),
    );
    let mut sup = t.run(&config);
    poll(Duration::from_secs(60), || {
        t.path().join("done").exists().then_some(())
    })
    .expect("writer done");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    let mut all = Vec::new();
    let mut files = 0;
    for i in (1..=100).rev() {
        if let Ok(b) = std::fs::read(t.path().join(format!("r.log.{i}"))) {
            assert!(
                b.len() as u64 <= 256 * 1024,
                "r.log.{i} is {} bytes",
                b.len()
            );
            all.extend(b);
            files += 1;
        }
    }
    all.extend(std::fs::read(t.path().join("r.log")).expect("log"));
    assert!(files >= 10, "{files} rotated files for ~3.7 MB");
    assert_eq!(audit(&all, &["w0"], n), (0, 0, 0));
}

#[test]
fn an_unwritable_log_is_reported_and_the_service_keeps_running() {
    let t = TestDir::new();
    t.write("not-a-folder", "");
    let config = t.config(json!([
        {"name": "bad", "script": fixture("output.py"), "args": ["lines", "2000"], "log": "not-a-folder/bad.log"},
        {"name": "good", "script": fixture("output.py"), "args": ["lines", "2000"], "log": "good.log"}
    ]));
    let mut sup = t.run(&config);
    // Its output was discarded, not held: it finished writing and keeps running. (A full disk
    // is tested in log_faults.)
    t.wait_event("bad", "written");
    t.wait_event("good", "written");
    poll(PATIENCE, || {
        let s = std::fs::read_to_string(t.path().join("good.log")).ok()?;
        s.contains("line 0001999").then_some(())
    })
    .expect("the other service's log is complete");
    let err = t.stderr();
    assert_eq!(
        err.matches("cannot open the log file").count(),
        1,
        "reported once: {err}"
    );
    assert!(err.contains("not-a-folder/bad.log"), "{err}");
    let rows = crate::restart::ls(&t);
    assert!(rows.iter().all(|r| r["state"] == "running"), "{rows:?}");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

#[test]
fn lines_on_a_terminal_get_a_coloured_name() {
    use std::io::Read;
    let t = TestDir::new();
    let config =
        t.config(json!([{"name": "tty", "script": fixture("output.py"), "args": ["pieces"]}]));
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut cmd = t.command(&["run", config.to_str().expect("utf-8")]);
    cmd.stdout(std::fs::File::from(pty.slave));
    let child = cmd.spawn().expect("start");
    // The command holds our copy of the terminal's slave end; the reads below end only once
    // every copy is closed.
    drop(cmd);
    let mut sup = crate::support::Supervisor::from_child(child, t.path());
    t.wait_event("tty", "written");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // The slave is closed now: read until EIO/EOF.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out);
    let colour = crate::support::label_colour("tty");
    assert!(
        out.contains(&format!("\x1b[{colour}mtty\x1b[0m out | hello world")),
        "{out:?}"
    );
}
