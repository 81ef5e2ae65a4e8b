//! The watchdog's heartbeats (protocol.md, sections 6.5 and 9.2). This binary is both sides: run
//! by `cargo test`, it starts itself again as the service (`--service MODE`) the way pm starts
//! one — a socketpair's end as fd 3, `PM_CHANNEL_ID` naming it, a session of its own,
//! `PM_WATCHDOG_MS` — stands in for the supervisor on the other end, notes when each heartbeat
//! arrives, and tells the service (with data on the channel) when to block.
//!
//! No test harness (`harness = false` in Cargo.toml): the service mode needs the process's own
//! `main`, and every test kills the service it started (by pid) when it ends, however it ends.
// Without the `tokio` feature only the tests of `heartbeat()` run.
#![cfg_attr(not(feature = "tokio"), allow(dead_code))]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const LIMIT_MS: u64 = 600;
const PERIOD_MS: u64 = LIMIT_MS / 3;
/// Long enough for a loaded 2-core machine; a passing test never waits this long.
const PATIENCE: Duration = Duration::from_secs(20);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--service") {
        service(args.get(2).map(String::as_str).unwrap_or_default());
    }
    let tests: &[(&str, fn())] = &[
        (
            "without a runtime, heartbeats come only from heartbeat(), at most one per tenth of the limit",
            manual_heartbeats,
        ),
        (
            "without PM_WATCHDOG_MS (or with a value that is not one), no heartbeat",
            no_watchdog_no_heartbeats,
        ),
        #[cfg(feature = "tokio")]
        (
            "tokio, current-thread runtime: a heartbeat every third of the limit, none while the runtime is blocked",
            current_thread_runtime,
        ),
        #[cfg(feature = "tokio")]
        (
            "tokio, multi-thread runtime: one blocked worker does not stop the heartbeats, all of them do",
            multi_thread_runtime,
        ),
        #[cfg(feature = "tokio")]
        (
            "tokio: heartbeat() takes the heartbeats over from the runtime's task",
            manual_takes_over_from_the_runtime,
        ),
    ];
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-'));
    let mut failed = 0;
    for (name, test) in tests {
        if filter.is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let outcome = std::panic::catch_unwind(*test);
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        if outcome.is_err() {
            failed += 1;
        }
    }
    if failed > 0 {
        eprintln!("{failed} watchdog test(s) failed");
        std::process::exit(1);
    }
}

// ---- The supervisor's side ----

/// A service this test started, the supervisor's end of its channel, and what arrived on it.
struct Service {
    child: Child,
    channel: UnixStream,
    /// Every line the service wrote, with when it arrived.
    lines: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Service {
    fn start(mode: &str, env: &[(&str, &str)]) -> Service {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        let st = nix_fstat(theirs.as_raw_fd());
        let mut cmd = Command::new(std::env::current_exe().expect("this binary"));
        cmd.args(["--service", mode])
            .env_remove("PM_WATCHDOG_MS")
            .env("PM_CHANNEL_FD", "3")
            .env("PM_CHANNEL_ID", format!("{}:{}", st.0, st.1))
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        let fd = theirs.as_raw_fd();
        // SAFETY: between fork and exec only async-signal-safe calls: dup2, fcntl, setsid.
        unsafe {
            cmd.pre_exec(move || {
                if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0);
                } else {
                    libc::dup2(fd, 3);
                }
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start the service");
        drop(theirs);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = ours.try_clone().expect("clone the channel");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                let value: Value = serde_json::from_str(&line).expect("the service writes JSON");
                sink.lock().expect("lines").push((Instant::now(), value));
            }
        });
        Service {
            child,
            channel: ours,
            lines,
        }
    }

    fn send(&mut self, value: Value) {
        writeln!(self.channel, "{value}").expect("write to the service");
    }

    fn values(&self) -> Vec<Value> {
        let lines = self.lines.lock().expect("lines");
        lines.iter().map(|(_, v)| v.clone()).collect()
    }

    /// When each heartbeat arrived.
    fn beats(&self) -> Vec<Instant> {
        let lines = self.lines.lock().expect("lines");
        lines
            .iter()
            .filter(|(_, v)| is_pm(v, "heartbeat"))
            .map(|(at, _)| *at)
            .collect()
    }

    /// When the data message with `key` arrived.
    fn data_at(&self, key: &str) -> Option<Instant> {
        let lines = self.lines.lock().expect("lines");
        lines
            .iter()
            .find(|(_, v)| v.get(key).is_some())
            .map(|(at, _)| *at)
    }

    fn wait_until(&self, what: &str, mut done: impl FnMut(&Service) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the service wrote {:?}",
                self.values()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_beats(&self, n: usize) -> Vec<Instant> {
        self.wait_until(&format!("{n} heartbeats"), |s| s.beats().len() >= n);
        self.beats()
    }

    /// The lines between the data markers `{"calling": n}` and `{"called": n}`, and after the
    /// latter (None until it came).
    fn around(&self, n: u64) -> (Vec<Value>, Option<Vec<Value>>) {
        let values = self.values();
        let from = values.iter().position(|v| v["calling"] == n);
        let to = values.iter().position(|v| v["called"] == n);
        match (from, to) {
            (Some(f), Some(t)) => (values[f + 1..t].to_vec(), Some(values[t + 1..].to_vec())),
            _ => (Vec::new(), None),
        }
    }

    /// Asks the service to call heartbeat() `n` times in a row; returns what went out between
    /// its markers.
    fn manual_beats(&mut self, n: u64) -> Vec<Value> {
        self.send(json!({ "beat": n }));
        self.wait_until("the calls", |s| s.around(n).1.is_some());
        self.around(n).0
    }

    /// Asks the service to block `what` for `ms`; returns when the block began and ended, as
    /// the arrivals of the service's markers.
    fn block(&mut self, what: &str, ms: u64) -> (Instant, Instant) {
        self.send(json!({ "block": what, "ms": ms }));
        self.wait_until("the block to end", |s| s.data_at("unblocked").is_some());
        let from = self.data_at("blocking").expect("blocking marker");
        let to = self.data_at("unblocked").expect("unblocked marker");
        (from, to)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nix_fstat(fd: i32) -> (u64, u64) {
    // SAFETY: fstat writes only the zeroed struct it is given.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        assert_eq!(libc::fstat(fd, &mut st), 0);
        (st.st_dev as u64, st.st_ino as u64)
    }
}

fn is_pm(v: &Value, kind: &str) -> bool {
    v["cmd"] == "NODE_PM" && v["type"] == kind
}

fn heartbeat() -> Value {
    json!({"cmd": "NODE_PM", "type": "heartbeat"})
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn gaps(times: &[Instant]) -> Vec<u64> {
    times.windows(2).map(|w| ms(w[1] - w[0])).collect()
}

/// Heartbeats come about every period, never a limit apart.
fn assert_period(times: &[Instant]) {
    let g = gaps(times);
    let mean = g.iter().sum::<u64>() as f64 / g.len() as f64;
    let period = PERIOD_MS as f64;
    assert!(
        mean >= period * 0.8 && mean <= period * 1.5,
        "mean gap {mean} ms, period {period} ms: {g:?}"
    );
    assert!(
        g.iter().all(|&x| x < LIMIT_MS),
        "a gap reached the limit: {g:?}"
    );
}

/// Blocks for four limits: no heartbeat in between, and they come again after.
fn assert_stops_while_blocked(s: &mut Service, what: &str) {
    s.wait_beats(3);
    let block_ms = 4 * LIMIT_MS;
    let (from, to) = s.block(what, block_ms);
    let after = s.beats().len();
    let beats = s.wait_beats(after + 2);
    // The block begins just before its first marker is written (a heartbeat task queued before
    // may still run in its first few ms), and ends `block_ms` after it began, which is earlier
    // than `block_ms` after the marker arrived by the marker's delay (a few ms; on a loaded
    // machine, more).
    let during: Vec<u64> = beats
        .iter()
        .filter(|&&at| {
            at > from + Duration::from_millis(50)
                && at < from + Duration::from_millis(block_ms - 300)
        })
        .map(|&at| ms(at - from))
        .collect();
    assert!(
        during.is_empty(),
        "heartbeats {during:?} ms into a {block_ms} ms block of {what}"
    );
    assert!(
        beats.iter().any(|&at| at > to),
        "heartbeats again after the block"
    );
}

fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

// ---- The tests ----

fn manual_heartbeats() {
    let limit = LIMIT_MS.to_string();
    let mut s = Service::start("plain", &[("PM_WATCHDOG_MS", &limit)]);
    s.wait_until("hello", |s| !s.values().is_empty());
    let hello = &s.values()[0];
    assert!(is_pm(hello, "hello"), "{hello}");
    assert_eq!(
        hello.get("diagnostics"),
        None,
        "the Rust SDK has no diagnostic"
    );
    // No runtime: nothing is sent until the service calls heartbeat().
    pause(3 * PERIOD_MS);
    assert!(s.beats().is_empty(), "{:?}", s.values());
    // A thousand calls in a row: one heartbeat.
    assert_eq!(s.manual_beats(1000), vec![heartbeat()]);
    // Calls more than a tenth of the limit apart: one each.
    for n in 1..=3 {
        pause(LIMIT_MS / 10 + 20);
        assert_eq!(s.manual_beats(n), vec![heartbeat()], "call {n}");
    }
    pause(2 * PERIOD_MS);
    assert_eq!(s.around(3).1, Some(Vec::new()), "nothing else came");
}

fn no_watchdog_no_heartbeats() {
    for env in [
        &[][..],
        &[("PM_WATCHDOG_MS", "1e3")][..],
        &[("PM_WATCHDOG_MS", "0")][..],
    ] {
        for mode in ["plain", "tokio-current"] {
            if mode.starts_with("tokio") && !cfg!(feature = "tokio") {
                continue;
            }
            let mut s = Service::start(mode, env);
            assert!(s.manual_beats(1).is_empty(), "{env:?} {mode}");
            pause(3 * PERIOD_MS);
            assert!(s.beats().is_empty(), "{env:?} {mode}: {:?}", s.values());
        }
    }
}

#[cfg(feature = "tokio")]
fn current_thread_runtime() {
    let limit = LIMIT_MS.to_string();
    let mut s = Service::start("tokio-current", &[("PM_WATCHDOG_MS", &limit)]);
    assert_period(&s.wait_beats(12));
    assert_stops_while_blocked(&mut s, "runtime");
}

#[cfg(feature = "tokio")]
fn multi_thread_runtime() {
    let limit = LIMIT_MS.to_string();
    let mut s = Service::start("tokio-multi", &[("PM_WATCHDOG_MS", &limit)]);
    let n = s.wait_beats(4).len();
    // One of the two workers blocked: the other runs the heartbeat task.
    let (from, to) = s.block("one-worker", 4 * LIMIT_MS);
    let during: Vec<Instant> = s
        .beats()
        .into_iter()
        .filter(|&at| at > from && at < to)
        .collect();
    assert!(
        during.len() >= 5,
        "{} heartbeats in a {} ms block of one worker",
        during.len(),
        4 * LIMIT_MS
    );
    assert_period(&during);
    assert!(s.beats().len() > n);
    // Both workers blocked.
    s.lines.lock().expect("lines").clear();
    assert_stops_while_blocked(&mut s, "all-workers");
}

#[cfg(feature = "tokio")]
fn manual_takes_over_from_the_runtime() {
    let limit = LIMIT_MS.to_string();
    let mut s = Service::start("tokio-current", &[("PM_WATCHDOG_MS", &limit)]);
    s.wait_beats(3);
    // The first call sends one (an automatic one may have raced it).
    let first = s.manual_beats(1);
    assert!(
        (1..=2).contains(&first.len()) && first.iter().all(|v| *v == heartbeat()),
        "{first:?}"
    );
    pause(3 * PERIOD_MS);
    assert_eq!(
        s.around(1).1,
        Some(Vec::new()),
        "no automatic heartbeat after the first call"
    );
    assert_eq!(s.manual_beats(1000), vec![heartbeat()]);
    pause(3 * PERIOD_MS);
    assert_eq!(s.around(1000).1, Some(Vec::new()));
}

// ---- The service's side ----

/// How long the service is told to block, and what: 0 nothing.
static BLOCK_MS: AtomicU64 = AtomicU64::new(0);
static BLOCK_WHAT: Mutex<String> = Mutex::new(String::new());

fn service(mode: &str) -> ! {
    // Commands come as data on the channel, on the SDK's reader thread.
    pm_child::on_message(|data| {
        if let Some(n) = data["beat"].as_u64() {
            pm_child::send(&json!({ "calling": n }));
            for _ in 0..n {
                pm_child::heartbeat();
            }
            pm_child::send(&json!({ "called": n }));
        }
        if let (Some(what), Some(ms)) = (data["block"].as_str(), data["ms"].as_u64()) {
            *BLOCK_WHAT.lock().expect("block") = what.to_owned();
            BLOCK_MS.store(ms, Ordering::SeqCst);
        }
    });
    match mode {
        #[cfg(feature = "tokio")]
        "tokio-current" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(runtime_service()),
        #[cfg(feature = "tokio")]
        "tokio-multi" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(runtime_service()),
        _ => loop {
            pause(1000);
        },
    }
}

/// Blocks the runtime's thread on command: the whole runtime (`runtime`: the thread that runs
/// this future, the only one of a current-thread runtime), or one or all of the workers of a
/// multi-thread runtime.
#[cfg(feature = "tokio")]
async fn runtime_service() -> ! {
    // The first SDK call inside the runtime binds the heartbeats to it.
    pm_child::supervised();
    loop {
        let ms = BLOCK_MS.swap(0, Ordering::SeqCst);
        if ms > 0 {
            let what = BLOCK_WHAT.lock().expect("block").clone();
            pm_child::send(&json!({ "blocking": what }));
            match what.as_str() {
                "one-worker" | "all-workers" => {
                    let n = if what == "one-worker" { 1 } else { 2 };
                    let tasks: Vec<_> = (0..n)
                        .map(|_| tokio::spawn(async move { pause(ms) }))
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                }
                _ => pause(ms),
            }
            pm_child::send(&json!({ "unblocked": what }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
