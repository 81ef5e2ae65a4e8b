//! Demo Rust service for `make demo`, using the Rust SDK.

use std::time::Duration;

fn main() {
    let every = std::env::args()
        .skip_while(|a| a != "--every")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    pm_child::on_stopping(|| {
        println!("indexer: stopping; saving the index...");
        std::thread::sleep(Duration::from_millis(40));
        println!("indexer: clean exit");
    });
    pm_child::ready();
    println!(
        "indexer: started (pid {}, supervised: {})",
        std::process::id(),
        pm_child::supervised()
    );
    for n in 1.. {
        std::thread::sleep(Duration::from_millis(every));
        println!("indexer: indexed {} documents", n * 100);
    }
}
