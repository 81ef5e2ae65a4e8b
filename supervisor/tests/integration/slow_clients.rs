//! Control clients that do not read: a subscriber that never reads its events while a child
//! floods messages, and a client that sends requests and never reads the replies, on the Unix
//! socket and on `serve`'s inherited control fd. The supervisor's memory stays bounded, other
//! clients are answered at once, and a SIGTERM still ends it at once.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::support::{Conn, PATIENCE, Supervisor, TestDir, rss_kib};

/// The ceiling the issue sets for the supervisor's resident memory.
const RSS_CEILING_KIB: u64 = 50 * 1024;
/// Generous ceilings for a loaded 2-core machine (the targets are 100 ms and 1 s); the defects
/// these tests guard against take seconds, or forever.
const LS_CEILING: Duration = Duration::from_millis(500);
const EXIT_CEILING: Duration = Duration::from_secs(3);

/// Sends `message`s of 1 KB on its channel as fast as the supervisor takes them.
const FLOODER: &str = "import os, socket\ns = socket.socket(fileno=int(os.environ['PM_CHANNEL_FD']))\nmsg = b'{\"type\":\"message\",\"data\":\"' + b'm' * 1000 + b'\"}\\n'\nbuf = msg * 100\nwhile True:\n    s.sendall(buf)\n";

/// How the slow client reaches the supervisor.
#[derive(Debug, Clone, Copy)]
enum Transport {
    Socket,
    ControlFd,
}

/// Starts the supervisor with the flooder (or nothing) and returns the slow client's stream.
fn start(t: &TestDir, how: Transport, flood: bool) -> (Supervisor, UnixStream) {
    let services = if flood {
        let script = t.write("flooder.py", FLOODER).display().to_string();
        json!([{"name": "flooder", "script": script}])
    } else {
        json!([{"name": "idle", "script": "/bin/sleep", "args": ["1000"]}])
    };
    let config = t.config(services);
    match how {
        Transport::Socket => {
            let sup = t.run(&config);
            let path = crate::support::socket_path(t);
            let s = crate::support::poll(PATIENCE, || UnixStream::connect(&path).ok())
                .expect("connect");
            (sup, s)
        }
        Transport::ControlFd => {
            let (ours, theirs) = UnixStream::pair().expect("socketpair");
            let fd = theirs.as_raw_fd();
            let mut cmd = t.command(&[
                "serve",
                "--control-fd",
                "3",
                "--name",
                "slow",
                "--config",
                config.to_str().expect("utf-8"),
            ]);
            // SAFETY: dup2 in the child before exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if libc::dup2(fd, 3) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = cmd.spawn().expect("serve");
            drop(theirs);
            (Supervisor::from_child(child, t.path()), ours)
        }
    }
}

/// Samples the supervisor's RSS for `how_long`; returns the largest, in KiB.
fn max_rss_over(pid: i32, how_long: Duration) -> u64 {
    let end = Instant::now() + how_long;
    let mut max = 0;
    while Instant::now() < end {
        max = max.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    max
}

/// How long another client waits for `list`.
fn other_client_list(t: &TestDir) -> Duration {
    let mut c = Conn::open(t);
    let start = Instant::now();
    let r = c
        .ask_within(json!({"type": "list"}), PATIENCE)
        .expect("another client's list is answered");
    assert_eq!(r["ok"], true, "{r}");
    start.elapsed()
}

fn sigterm_exit(sup: &mut Supervisor) -> Duration {
    let start = Instant::now();
    sup.signal(Signal::SIGTERM);
    let code = sup.wait(PATIENCE).and_then(|s| s.code());
    let took = start.elapsed();
    assert_eq!(code, Some(0));
    took
}

fn subscriber_that_never_reads(how: Transport) {
    let t = TestDir::new();
    let (mut sup, stream) = start(&t, how, true);
    let mut slow = Conn::from_stream(stream);
    if let Transport::Socket = how {
        let r = slow.ask(json!({"type": "subscribe"}));
        assert_eq!(r["ok"], true, "{r}");
    }
    // The flood is under way once the first message event arrives.
    let first = crate::support::poll(PATIENCE, || {
        slow.next_line(Duration::from_millis(100))
            .filter(|v| v["event"] == "message")
    });
    assert!(first.is_some(), "no message event; stderr: {}", t.stderr());
    // Now it stops reading.
    let rss = max_rss_over(sup.pid(), Duration::from_secs(5));
    let ls = other_client_list(&t);
    eprintln!("{how:?}: never-reading subscriber: max RSS {rss} KiB, another client's list {ls:?}");
    assert!(rss < RSS_CEILING_KIB, "RSS reached {rss} KiB");
    assert!(ls < LS_CEILING, "another client's list took {ls:?}");
    // It reads again: the events it missed are announced once, with their count.
    let lagged = crate::support::poll(PATIENCE, || {
        slow.next_line(Duration::from_millis(100))
            .filter(|v| v["event"] == "lagged")
    })
    .expect("a lagged event");
    assert!(lagged["missed"].as_u64().is_some_and(|n| n > 0), "{lagged}");
    assert_eq!(lagged["type"], "event", "{lagged}");
    let took = sigterm_exit(&mut sup);
    eprintln!("{how:?}: never-reading subscriber: SIGTERM exit {took:?}");
    assert!(took < EXIT_CEILING, "exit took {took:?}");
}

#[test]
fn a_subscriber_that_never_reads_on_the_socket_costs_bounded_memory() {
    subscriber_that_never_reads(Transport::Socket);
}

#[test]
fn a_controller_that_never_reads_its_events_costs_bounded_memory() {
    subscriber_that_never_reads(Transport::ControlFd);
}

fn requests_never_read(how: Transport) {
    let t = TestDir::new();
    let (mut sup, stream) = start(&t, how, false);
    let mut writer = stream.try_clone().expect("clone");
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    // Writes block once the supervisor stops reading: the writing happens on a thread of its
    // own, which ends when the supervisor exits (the write fails).
    let flood = std::thread::spawn(move || {
        let mut batch = Vec::new();
        for i in 0..100_000 {
            batch.extend_from_slice(format!("{{\"type\":\"list\",\"id\":{i}}}\n").as_bytes());
            if batch.len() > 16 * 1024 || i == 99_999 {
                if writer.write_all(&batch).is_err() {
                    return;
                }
                batch.clear();
                counter.store(i + 1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    // Until the writer is held back (no progress for a second) or done.
    let mut last = (0, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !flood.is_finished() {
        let now = sent.load(std::sync::atomic::Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss = max_rss_over(sup.pid(), Duration::from_secs(2));
    let ls = other_client_list(&t);
    let held_at = sent.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "{how:?}: 100k requests never read: {held_at} written before back-pressure held the client, max RSS {rss} KiB, another client's list {ls:?}"
    );
    assert!(rss < RSS_CEILING_KIB, "RSS reached {rss} KiB");
    assert!(ls < LS_CEILING, "another client's list took {ls:?}");
    let took = sigterm_exit(&mut sup);
    eprintln!("{how:?}: 100k requests never read: SIGTERM exit {took:?}");
    assert!(took < EXIT_CEILING, "exit took {took:?}");
    let _ = stream.shutdown(std::net::Shutdown::Both);
    flood.join().expect("writer thread");
}

#[test]
fn a_client_that_never_reads_replies_on_the_socket_is_held_back() {
    requests_never_read(Transport::Socket);
}

#[test]
fn a_controller_that_never_reads_replies_is_held_back() {
    requests_never_read(Transport::ControlFd);
}
