//! The restart schedule against the wall clock. A test binary of its own, so that it runs
//! alone: no other test loads the machine while it measures.

#[path = "../integration/support.rs"]
mod support;

use nix::sys::signal::Signal;
use serde_json::json;
use support::{PATIENCE, TestDir, line_times, poll};

#[test]
fn restart_delays_follow_the_schedule_on_the_wall_clock() {
    let t = TestDir::new();
    let schedule = [100, 300, 600, 600];
    let config = t.config(json!([{"name": "c", "script": "/bin/false", "restartAt": schedule}]));
    let mut sup = t.run(&config);
    poll(PATIENCE, || {
        (line_times(&t.stdout(), "c pm  | started").len() > schedule.len()).then_some(())
    })
    .expect("enough restarts");
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
    let out = t.stdout();
    let exits = line_times(&out, "c pm  | exited:");
    let starts = line_times(&out, "c pm  | started");
    let measured: Vec<i64> = schedule
        .iter()
        .enumerate()
        .map(|(i, _)| starts[i + 1] - exits[i])
        .collect();
    eprintln!("restart delays: scheduled {schedule:?} ms, measured {measured:?} ms");
    for (want, got) in schedule.iter().zip(&measured) {
        assert!(
            *got >= *want && *got < *want + 20,
            "scheduled {want} ms, measured {got} ms (all: {measured:?})\n{out}"
        );
    }
}
