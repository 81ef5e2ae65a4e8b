//! An axum 0.8 service on tokio, stopped under pm and standalone by the integration tests
//! (`supervisor/tests/integration/rust_services.rs`). Arguments: the Unix socket to listen on,
//! then the mode:
//! - `handlers`: a stop handler, and the server drains once the handlers are done (the README's
//!   axum pattern);
//! - `own-signals`: no stop handler, only `ready()`: the app's own Ctrl-C/SIGTERM handling;
//! - `both`: a stop handler and the app's own SIGTERM handling (tokio's `signal`) installed
//!   after it.
//!
//! `GET /slow` takes 1.5 s: a request in flight during the stop.

use std::time::Duration;

use axum::{Router, routing::get};
use pm_rust_services::{event, socket_path};
use serde_json::json;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

async fn slow() -> &'static str {
    event("request-start", json!({}));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    "done"
}

/// Drop runs when `main` returns: destructors are not skipped.
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        event("dropped", json!({}));
    }
}

// The app's own graceful shutdown, as axum's examples write it.
async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    event("app-signal", json!({}));
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mode = std::env::args().nth(2).unwrap_or_default();
    let _guard = Guard;
    let app = Router::new().route("/slow", get(slow));
    // A process the service started and owns: ended when it is dropped.
    let helper = tokio::process::Command::new("sleep")
        .arg("1000")
        .kill_on_drop(true)
        .spawn()?;
    // A process the service started and leaves running: see what happens to it.
    let stray = std::process::Command::new("sleep").arg("1001").spawn()?;
    match mode.as_str() {
        "handlers" => {
            // README: axum
            pm_child::on_stopping_async(|| async {
                event("handler", json!({}));
            });
            let listener = UnixListener::bind(socket_path())?;
            pm_child::ready();
            axum::serve(listener, app)
                .with_graceful_shutdown(pm_child::handlers_done())
                .await?;
            event("after-serve", json!({}));
            // README: end
        }
        "own-signals" => {
            let listener = UnixListener::bind(socket_path())?;
            pm_child::ready();
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?;
            event("after-serve", json!({}));
        }
        "both" => {
            pm_child::on_stopping(|| event("handler", json!({})));
            let listener = UnixListener::bind(socket_path())?;
            let shutdown = shutdown_signal();
            pm_child::ready();
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await?;
            event("after-serve", json!({}));
        }
        other => panic!("unknown mode {other:?}"),
    }
    event(
        "children",
        json!({"helper": helper.id(), "stray": stray.id()}),
    );
    Ok(())
}
