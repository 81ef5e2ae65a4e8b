//! A service that installs `ctrlc` (SIGINT and, with its `termination` feature, SIGTERM) after
//! registering a stop handler: both must run, the stop handler first, then the app's own
//! shutdown, and `main` ends the process.

use std::sync::mpsc;

use pm_rust_services::event;
use serde_json::json;

// README: binary
fn main() {
    pm_child::on_stopping(|| event("handler", json!({})));
    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .expect("ctrlc");
    pm_child::ready();
    event("started", json!({}));
    rx.recv().expect("a signal");
    event("app-signal", json!({}));
    event("main-returns", json!({}));
}
// README: end
