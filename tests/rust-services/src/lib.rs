//! Shared bits of the test services: events for the tests, and a tiny HTTP endpoint.

use std::io::Write;

/// Appends an event to `$PM_TEST_DIR/events.jsonl` (the tests read it), tagged with the
/// service's name and pid. Without `PM_TEST_DIR` it does nothing.
pub fn event(kind: &str, extra: serde_json::Value) {
    let Ok(dir) = std::env::var("PM_TEST_DIR") else {
        return;
    };
    let mut line = serde_json::json!({
        "svc": std::env::var("PM_SERVICE_NAME").unwrap_or_else(|_| "alone".into()),
        "pid": std::process::id(),
        "event": kind,
    });
    if let (Some(l), Some(e)) = (line.as_object_mut(), extra.as_object()) {
        l.extend(e.clone());
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{dir}/events.jsonl"))
    {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// The path of the Unix socket a service listens on: the first argument.
pub fn socket_path() -> String {
    std::env::args()
        .nth(1)
        .expect("the socket path as first argument")
}
