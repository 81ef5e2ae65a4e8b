//! A thread-pool worker (rayon) stopped by the integration tests. Its stop handler tells the
//! workers to finish, then writes 100 last lines of its own, slowly; `main` returns as soon as
//! the workers are done, while the handler is still writing. Every line must reach the log.
//! Mode (first argument): `flag` (the handler sets the app's flag; `main` does not wait on the
//! SDK) or `wait` (the README's pattern: `main` waits for the stop with the SDK).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pm_rust_services::event;
use serde_json::json;

fn work(stop: &AtomicBool, done: &AtomicU64) {
    rayon::scope(|s| {
        for w in 0..4 {
            s.spawn(move |_| {
                if w == 0 {
                    event("started", json!({}));
                }
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                    n += 1;
                }
                done.fetch_add(1, Ordering::SeqCst);
                println!("worker {w}: stopped after {n} items");
            });
        }
    });
}

fn last_words() {
    for i in 0..100 {
        println!("worker: flushed record {i}");
        std::thread::sleep(Duration::from_millis(3));
    }
    event("handler-done", json!({}));
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let done = AtomicU64::new(0);
    match mode.as_str() {
        "flag" => {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            pm_child::on_stopping(move || {
                flag.store(true, Ordering::SeqCst);
                last_words();
            });
            pm_child::ready();
            work(&stop, &done);
        }
        "wait" => {
            // README: worker
            let stop = Arc::new(AtomicBool::new(false));
            pm_child::on_stopping(last_words);
            let workers = {
                let stop = stop.clone();
                std::thread::spawn(move || work(&stop, &done))
            };
            pm_child::ready();
            pm_child::wait_stop_requested();
            stop.store(true, Ordering::SeqCst);
            workers.join().expect("workers");
            // README: end
        }
        other => panic!("unknown mode {other:?}"),
    }
    event("main-returns", json!({}));
}
