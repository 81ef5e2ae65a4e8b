//! A bad config file is refused with exit code 2 and a message naming file, line, column and
//! field, before anything is started.

use std::time::Duration;

use serde_json::json;

use crate::support::{TestDir, fixture};

fn refuse(t: &TestDir, text: &str) -> String {
    let path = t.write("services.json", text);
    let status = t
        .command(&["run", path.to_str().expect("utf-8")])
        .status()
        .expect("run pm-supervisor");
    assert_eq!(status.code(), Some(2), "stderr: {}", t.stderr());
    let err = t.stderr();
    let file = format!("{}:", path.display());
    assert!(err.contains(&file), "message names the file: {err}");
    err
}

#[test]
fn unknown_field() {
    let t = TestDir::new();
    let err = refuse(
        &t,
        "{\"services\": [\n  {\"script\": \"a.js\", \"scirpt\": 1}\n]}",
    );
    assert!(err.contains(":2:"), "line 2: {err}");
    assert!(
        err.contains("services[0]") && err.contains("unknown field `scirpt`"),
        "{err}"
    );
}

#[test]
fn wrong_type() {
    let t = TestDir::new();
    let err = refuse(
        &t,
        r#"{"services": [{"script": "a.js", "args": "--port 1"}]}"#,
    );
    assert!(
        err.contains("services[0].args") && err.contains("invalid type"),
        "{err}"
    );
}

#[test]
fn missing_script() {
    let t = TestDir::new();
    let err = refuse(&t, "{\"services\": [\n {\"name\": \"web\"}\n]}");
    assert!(
        err.contains("missing field `script`") && err.contains("services[0]"),
        "{err}"
    );
}

#[test]
fn nonexistent_cwd_is_refused_before_anything_starts() {
    let t = TestDir::new();
    // The first service is fine and would report at once; it must not even start.
    let text = json!({"services": [
        {"name": "fine", "script": fixture("child.py"), "args": ["report"]},
        {"name": "bad", "script": "x.py", "cwd": "no/such/folder"}
    ]})
    .to_string();
    let err = refuse(&t, &text);
    assert!(
        err.contains("services[1].cwd") && err.contains("folder does not exist"),
        "{err}"
    );
    assert!(err.contains(":1:"), "{err}");
    assert!(t.events().is_empty(), "nothing may start: {:?}", t.events());
}

#[test]
fn not_json() {
    let t = TestDir::new();
    // A trailing comma is JSONC, which a config file may be; a missing comma is not.
    let err = refuse(
        &t,
        "{\"services\": [\n  {\"script\": \"a.js\" \"name\": \"a\"}\n]}",
    );
    assert!(err.contains(":2:20: expected comma"), "{err}");
}

#[test]
fn unreadable_file() {
    let t = TestDir::new();
    let status = t
        .command(&["run", "does-not-exist.json"])
        .status()
        .expect("run pm-supervisor");
    assert_eq!(status.code(), Some(2));
    assert!(
        t.stderr().contains("does-not-exist.json: cannot read"),
        "{}",
        t.stderr()
    );
}

#[test]
fn a_second_supervisor_on_the_same_config_is_refused() {
    let t = TestDir::new();
    let config =
        t.config(json!([{"name": "a", "script": fixture("child.py"), "args": ["report"]}]));
    let mut first = t.run(&config);
    t.wait_event("a", "report");
    let out = t
        .command(&["run", config.to_str().expect("utf-8")])
        .output()
        .expect("second run");
    // The documented exit code for "another supervisor runs this instance".
    assert_eq!(out.status.code(), Some(3));
    let err = t.stderr();
    assert!(
        err.contains("already running") && err.contains(&first.pid().to_string()),
        "{err}"
    );
    // The first one is untouched.
    assert_eq!(
        t.events().iter().filter(|e| e["event"] == "report").count(),
        1
    );
    first.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        first.wait(Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
}

/// Like [`refuse`], for files today's code might accept and run: bounded in time.
fn refuse_soon(t: &TestDir, text: &str) -> String {
    let path = t.write("services.json", text);
    let status = crate::support::status_within(
        &mut t.command(&["run", path.to_str().expect("utf-8")]),
        Duration::from_secs(10),
    );
    let err = t.stderr();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "stderr: {err}");
    assert!(
        err.contains(&format!("{}:", path.display())),
        "names the file: {err}"
    );
    err
}

#[test]
fn names_that_could_forge_log_lines_are_refused_with_place_and_field() {
    let t = TestDir::new();
    for name in [
        "two\nlines",
        "carriage\rreturn",
        "\u{1b}[31mred",
        "bell\u{7}",
        "c1\u{9b}31m",
        "web out | forged",
        "rtl\u{202e}desrever",
    ] {
        let text = format!(
            "{{\"services\": [\n  {{\"script\": \"/bin/true\",\n   \"name\": {}}}\n]}}",
            serde_json::to_string(name).expect("json")
        );
        let err = refuse_soon(&t, &text);
        assert!(err.contains(":3:"), "{name:?}: {err}");
        assert!(err.contains("services[0].name"), "{name:?}: {err}");
        // The message itself must not carry the character it refuses.
        assert_eq!(err.lines().count(), 1, "{name:?}: {err:?}");
        assert!(!err.contains('\u{1b}'), "{err:?}");
    }
}

#[test]
fn nul_bytes_in_paths_are_refused_with_place_and_field() {
    let t = TestDir::new();
    for field in ["log", "interpreter", "nodePath", "cwd"] {
        let text = format!(
            "{{\"services\": [\n  {{\"script\": \"/bin/true\",\n   \"{field}\": \"a\\u0000b\"}}\n]}}"
        );
        let err = refuse_soon(&t, &text);
        assert!(
            err.contains(":3:")
                && err.contains(&format!("services[0].{field}"))
                && err.contains("NUL"),
            "{field}: {err}"
        );
    }
}

#[test]
fn a_byte_order_mark_or_a_top_level_array_gets_a_clear_message() {
    let t = TestDir::new();
    let err = refuse_soon(&t, "\u{feff}{\"services\": []}");
    assert!(
        err.contains(":1:1:") && err.contains("byte-order mark"),
        "{err}"
    );
    let err = refuse_soon(&t, "[{\"script\": \"/bin/true\"}]");
    assert!(
        err.contains(":1:1:") && err.contains("{\"services\": [...]}"),
        "{err}"
    );
}

#[test]
fn a_start_request_with_a_bad_name_is_refused() {
    use serde_json::json;
    let t = TestDir::new();
    let config = t.config(json!([]));
    let mut sup = t.run(&config);
    let mut c = crate::support::Conn::open(&t);
    for name in ["a\nb", "\u{1b}]0;title\u{7}", "x | y"] {
        let r = c.ask(json!({"type": "start", "spec": {"script": "/bin/true", "name": name}}));
        assert_eq!(r["code"], "bad_spec", "{name:?}: {r}");
        assert!(
            r["error"].as_str().unwrap_or("").contains("spec.name"),
            "{r}"
        );
    }
    let rows = c.ask(json!({"type": "list"}));
    assert_eq!(rows["result"], json!([]), "nothing started");
    sup.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        sup.wait(Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
}
