//! Demo Rust service for `make demo`: speaks the channel with the shared protocol types.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use pm_child::protocol::{self, Decoded, FromChild, ToChild};

fn main() {
    let every = std::env::args()
        .skip_while(|a| a != "--every")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let fd: Option<i32> = std::env::var("PM_CHANNEL_FD")
        .ok()
        .and_then(|v| v.parse().ok());
    if let Some(fd) = fd {
        // SAFETY: the supervisor hands this fd to us and nothing else in the process uses it.
        let chan = unsafe { UnixStream::from_raw_fd(fd) };
        let mut tx = chan.try_clone().expect("clone channel");
        let hello = FromChild::Hello {
            protocol: protocol::PROTOCOL_VERSION,
            sdk: "demo".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        tx.write_all(&protocol::encode(&hello)).expect("hello");
        tx.write_all(&protocol::encode(&FromChild::Ready))
            .expect("ready");
        std::thread::spawn(move || {
            for line in BufReader::new(chan).split(b'\n') {
                let Ok(line) = line else { break };
                if let Ok(Decoded::Message(ToChild::Stop { reason, .. })) = protocol::decode(&line)
                {
                    let _ = tx.write_all(&protocol::encode(&FromChild::Stopping));
                    println!("indexer: stop received ({reason:?}); saving the index...");
                    std::thread::sleep(Duration::from_millis(40));
                    println!("indexer: clean exit");
                    std::process::exit(0);
                }
            }
            println!("indexer: supervisor gone; saving the index");
            std::process::exit(0);
        });
    }
    println!("indexer: started (pid {})", std::process::id());
    for n in 1.. {
        std::thread::sleep(Duration::from_millis(every));
        println!("indexer: indexed {} documents", n * 100);
    }
}
