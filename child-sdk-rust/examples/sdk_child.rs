//! Test child for the Rust SDK, used by the integration tests. Writes what happens to
//! `$PM_TEST_DIR/events.jsonl`; the first argument picks the behaviour.

use std::io::Write;
use std::time::Duration;

fn event(kind: &str, extra: serde_json::Value) {
    let Ok(dir) = std::env::var("PM_TEST_DIR") else {
        return;
    };
    let mut line = serde_json::json!({
        "svc": std::env::var("PM_SERVICE_NAME").unwrap_or_default(),
        "pid": std::process::id(),
        "event": kind,
        "lang": "rust",
    });
    if let (Some(l), Some(e)) = (line.as_object_mut(), extra.as_object()) {
        l.extend(e.clone());
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{dir}/events.jsonl"))
        .expect("events file");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("write event");
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode == "probe" {
        // Started by a shell service, by `exec` or as its child: does it take the channel?
        // SAFETY: getsid has no preconditions.
        let sid = unsafe { libc::getsid(0) };
        let supervised = pm_child::supervised();
        pm_child::ready();
        event(
            "probe",
            serde_json::json!({ "supervised": supervised, "sid": sid }),
        );
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    pm_child::on_stopping(|| event("handler", serde_json::json!({"n": 1})));
    if mode == "failing" {
        pm_child::on_stopping(|| panic!("handler two fails on purpose"));
    }
    pm_child::on_stopping(|| event("handler", serde_json::json!({"n": 3})));
    if mode == "slow" {
        pm_child::on_stopping(|| {
            pm_child::extend(2000);
            std::thread::sleep(Duration::from_millis(600));
            event("slow-done", serde_json::json!({}));
        });
    }
    if mode == "hang" {
        // Overruns every deadline.
        pm_child::on_stopping(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    }
    if mode == "greedy" {
        // Asks for far more than the supervisor grants, then never finishes.
        pm_child::on_stopping(|| {
            event("greedy-handler", serde_json::json!({}));
            pm_child::extend(600_000);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    }
    if mode == "printer" {
        // Last words: a handler that prints 100 lines (the supervisor may be dead).
        pm_child::on_stopping(|| {
            for i in 0..100 {
                println!("last words {i}");
            }
            eprintln!("to stderr too");
            event("printer-done", serde_json::json!({}));
        });
    }
    #[cfg(feature = "tokio")]
    if mode == "async" {
        // With the `tokio` feature: an async handler, on a runtime of its own (none is current).
        pm_child::on_stopping_async(|| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            event("async-handler", serde_json::json!({}));
        });
    }
    pm_child::on_message(|data| {
        event("message", serde_json::json!({ "data": data }));
        pm_child::send(&serde_json::json!({ "echo": data }));
    });
    if mode == "grandchild" {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("[ -e /proc/$$/fd/3 ] && echo fd3=open || echo fd3=closed; echo \"PM_CHANNEL_FD=$PM_CHANNEL_FD NODE_CHANNEL_FD=$NODE_CHANNEL_FD\"")
            .output()
            .expect("run a grandchild");
        event(
            "grandchild",
            serde_json::json!({ "out": String::from_utf8_lossy(&out.stdout) }),
        );
    }
    pm_child::ready();
    event(
        "started",
        serde_json::json!({ "supervised": pm_child::supervised() }),
    );
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
