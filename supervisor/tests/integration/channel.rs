//! Garbage on the channel is reported and skipped; the channel keeps working.

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::{PATIENCE, TestDir, fixture};

#[test]
fn garbage_lines_do_not_break_the_channel() {
    let t = TestDir::new();
    let config = t.config(json!([{"name": "junk", "script": fixture("child.py"), "args": ["garbage"], "killTimeout": 5000}]));
    let mut sup = t.run(&config);
    t.wait_event("junk", "started");
    // Good lines after the garbage still count.
    sup.wait_stdout("junk pm  | ready");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    let stop = t.wait_event("junk", "stop-handler");
    assert_eq!(stop["msg"]["type"], "stop");
    assert_eq!(stop["msg"]["cmd"], "NODE_PM");
    let err = t.stderr();
    for what in [
        "not JSON",
        "not UTF-8",
        "exceeds the 1048576-byte limit",
        "Node-internal message \"NODE_HANDLE\"",
    ] {
        assert!(err.contains(what), "no warning about {what:?}:\n{err}");
    }
    assert!(err.contains("junk"), "warnings name the service:\n{err}");
    assert!(!t.stdout().contains("SIGTERM sent"), "{}", t.stdout());
}

#[test]
fn bad_lines_get_short_numbered_warnings_and_the_rest_is_counted_when_the_channel_closes() {
    let t = TestDir::new();
    // 20 bad lines of about 800 KB, each holding a secret, then the child exits at once.
    let config = t.config(json!([{"name": "flood", "script": fixture("child.py"), "args": ["flood", "20"], "restartAt": []}]));
    let mut sup = t.run(&config);
    t.wait_event("flood", "started");
    sup.wait_stdout("flood pm  | exited: exit code 0");
    // The count of the lines not shown comes when the channel closes, not only with a next
    // bad line (none comes).
    let err = crate::support::poll(PATIENCE, || {
        let err = t.stderr();
        err.contains("more bad channel lines skipped")
            .then_some(err)
    })
    .unwrap_or_else(|| panic!("no count of the hidden lines:\n{}", t.stderr()));
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    for n in 1..=5 {
        assert!(
            err.contains(&format!("bad channel line #{n} skipped")),
            "warning #{n}:\n{err}"
        );
    }
    assert!(!err.contains("bad channel line #6 "), "{err}");
    // The 20 bad lines and the data too large for an event.
    assert!(
        err.contains("16 more bad channel lines skipped (21 in all)"),
        "{err}"
    );
    for line in err.lines() {
        assert!(
            line.len() <= 400,
            "a warning of {} bytes: {line:.400}",
            line.len()
        );
    }
    assert!(
        !err.contains("SECRET"),
        "a warning quotes what the child wrote"
    );
}

#[test]
fn the_count_of_hidden_bad_lines_comes_when_the_window_ends_while_the_child_runs_on() {
    let t = TestDir::new();
    let config = t.config(
        json!([{"name": "flood", "script": fixture("child.py"), "args": ["flood", "20", "stay"]}]),
    );
    let mut sup = t.run(&config);
    let pid = t.wait_event("flood", "started")["pid"]
        .as_i64()
        .expect("pid");
    // No further bad line comes, and the channel stays open: the 10 s window's end prints it.
    let err = crate::support::poll(PATIENCE, || {
        let err = t.stderr();
        err.contains("more bad channel lines skipped")
            .then_some(err)
    })
    .unwrap_or_else(|| panic!("no count of the hidden lines:\n{}", t.stderr()));
    assert!(
        TestDir::alive(pid),
        "the child is gone: the count may have come from the channel's close"
    );
    assert!(
        err.contains("16 more bad channel lines skipped (21 in all)"),
        "{err}"
    );
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}
