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
