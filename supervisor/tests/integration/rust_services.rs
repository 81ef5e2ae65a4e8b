//! Real Rust services (`tests/rust-services`: axum on tokio, a rayon worker, `ctrlc`) stopped
//! by the supervisor and, standalone, by SIGTERM: a request in flight completes, the app's own
//! shutdown and destructors run, every line is written, and the processes a service started
//! end with it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::support::{PATIENCE, Supervisor, TestDir, poll};

/// A test service's binary, built once per test run.
fn service_bin(name: &str) -> String {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-q", "-p", "pm-rust-services", "--bins"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo");
        assert!(status.success(), "building tests/rust-services failed");
    });
    target.join("debug").join(name).display().to_string()
}

/// `GET /slow` over the service's Unix socket, on a thread: the status line and the body.
fn slow_request(socket: PathBuf) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = poll(PATIENCE, || UnixStream::connect(&socket).ok())
            .unwrap_or_else(|| panic!("nothing listens on {}", socket.display()));
        s.set_read_timeout(Some(PATIENCE)).expect("timeout");
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .expect("request");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out.lines().next().unwrap_or_default().to_owned();
        let body = out.rsplit("\r\n\r\n").next().unwrap_or_default().to_owned();
        format!("{status} | {body}")
    })
}

fn kinds(t: &TestDir, svc: &str) -> Vec<String> {
    t.events()
        .iter()
        .filter(|e| e["svc"] == svc)
        .map(|e| e["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn event(t: &TestDir, svc: &str, kind: &str) -> Value {
    t.events()
        .into_iter()
        .find(|e| e["svc"] == svc && e["event"] == kind)
        .unwrap_or_else(|| panic!("no {kind} from {svc}: {:?}", t.events()))
}

/// The stop time the supervisor logged for `svc` (from the stop request to the exit).
fn stopped_ms(out: &str, svc: &str) -> u64 {
    let marker = format!("{svc} pm  | stopped: exit code 0, ");
    let line = out
        .lines()
        .find(|l| l.contains(&marker))
        .unwrap_or_else(|| panic!("{svc} did not stop with exit code 0:\n{out}"));
    let rest = &line[line.find(&marker).expect("found") + marker.len()..];
    let ms = rest
        .split(' ')
        .next()
        .unwrap_or_default()
        .parse()
        .expect("ms");
    eprintln!("{svc}: stopped {ms} ms after the stop request");
    ms
}

/// Runs one service under the supervisor, with killTimeout 5 s.
fn supervise(t: &TestDir, svc: &str, bin: &str, args: Vec<String>) -> Supervisor {
    let config = t.config(
        json!([{"name": svc, "script": service_bin(bin), "args": args, "killTimeout": 5000}]),
    );
    let sup = t.run(&config);
    sup.wait_stdout(&format!("{svc} pm  | ready"));
    sup
}

fn stop_supervisor(mut sup: Supervisor) {
    sup.signal(Signal::SIGTERM);
    assert_eq!(sup.wait(PATIENCE).and_then(|s| s.code()), Some(0));
}

/// The service run directly, as systemd or Docker would: its own process group, stdout to a
/// file of the test's folder.
fn standalone(t: &TestDir, bin: &str, args: &[&str]) -> Child {
    let out = std::fs::File::create(t.path().join("alone.out")).expect("out file");
    let mut cmd = Command::new(service_bin(bin));
    cmd.args(args)
        .env("PM_TEST_DIR", t.path())
        .env("PM_SERVICE_NAME", "alone")
        .env_remove("PM_CHANNEL_FD")
        .env_remove("PM_CHANNEL_ID")
        .stdin(Stdio::null())
        .stdout(out);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.spawn().expect("start the service")
}

/// SIGTERM, then the exit status and how long the exit took.
fn sigterm(child: &mut Child) -> (ExitStatus, Duration) {
    let start = Instant::now();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("signal");
    let status = poll(PATIENCE, || child.try_wait().expect("try_wait")).expect("exited");
    (status, start.elapsed())
}

fn gone(pid: &Value) -> bool {
    let pid = pid.as_i64().expect("pid");
    poll(Duration::from_secs(5), || {
        (!TestDir::alive(pid)).then_some(())
    })
    .is_some()
}

#[test]
fn axum_with_a_stop_handler_drains_and_runs_its_cleanup_under_pm() {
    let t = TestDir::new();
    let socket = t.path().join("web.sock");
    let sup = supervise(
        &t,
        "web",
        "axum_service",
        vec![socket.display().to_string(), "handlers".into()],
    );
    let request = slow_request(socket);
    t.wait_event("web", "request-start");
    stop_supervisor(sup);
    assert_eq!(
        request.join().expect("request thread"),
        "HTTP/1.1 200 OK | done"
    );
    assert_eq!(
        kinds(&t, "web"),
        [
            "request-start",
            "handler",
            "after-serve",
            "children",
            "dropped"
        ]
    );
    let out = t.stdout();
    let ms = stopped_ms(&out, "web");
    assert!((1000..5000).contains(&ms), "{ms} ms: the request drains");
    assert!(
        !out.contains("SIGTERM sent") && !out.contains("SIGKILL sent"),
        "{out}"
    );
    let children = event(&t, "web", "children");
    assert!(gone(&children["helper"]) && gone(&children["stray"]));
}

#[test]
fn axum_with_a_stop_handler_drains_standalone_and_its_children_end_with_it() {
    let t = TestDir::new();
    let socket = t.path().join("web.sock");
    let mut child = standalone(
        &t,
        "axum_service",
        &[socket.to_str().expect("utf-8"), "handlers"],
    );
    let request = slow_request(socket);
    t.wait_event("alone", "request-start");
    let (status, took) = sigterm(&mut child);
    eprintln!("axum standalone: exited {took:?} after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        request.join().expect("request thread"),
        "HTTP/1.1 200 OK | done"
    );
    assert_eq!(
        kinds(&t, "alone"),
        [
            "request-start",
            "handler",
            "after-serve",
            "children",
            "dropped"
        ]
    );
    // The owned helper (kill_on_drop) and the stray one both end: the SDK sends SIGTERM to its
    // process group as it exits, as pm's SIGKILL of the group would.
    let children = event(&t, "alone", "children");
    assert!(gone(&children["helper"]), "kill_on_drop ran");
    assert!(
        gone(&children["stray"]),
        "the stray child ended with the service"
    );
}

#[test]
fn axum_without_stop_handlers_stops_as_without_the_sdk_under_pm() {
    let t = TestDir::new();
    let socket = t.path().join("web.sock");
    let sup = supervise(
        &t,
        "web",
        "axum_service",
        vec![socket.display().to_string(), "own-signals".into()],
    );
    let request = slow_request(socket);
    t.wait_event("web", "request-start");
    stop_supervisor(sup);
    assert_eq!(
        request.join().expect("request thread"),
        "HTTP/1.1 200 OK | done"
    );
    assert_eq!(
        kinds(&t, "web"),
        [
            "request-start",
            "app-signal",
            "after-serve",
            "children",
            "dropped"
        ]
    );
    let out = t.stdout();
    stopped_ms(&out, "web");
    assert!(
        out.contains("web pm  | SIGTERM sent to process group")
            && out.contains("(it has no stop handlers and asked for it)"),
        "{out}"
    );
}

#[test]
fn axum_without_stop_handlers_standalone_is_left_to_its_own_signal_handling() {
    let t = TestDir::new();
    let socket = t.path().join("web.sock");
    let mut child = standalone(
        &t,
        "axum_service",
        &[socket.to_str().expect("utf-8"), "own-signals"],
    );
    let request = slow_request(socket);
    t.wait_event("alone", "request-start");
    let (status, _) = sigterm(&mut child);
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        request.join().expect("request thread"),
        "HTTP/1.1 200 OK | done"
    );
    assert_eq!(
        kinds(&t, "alone"),
        [
            "request-start",
            "app-signal",
            "after-serve",
            "children",
            "dropped"
        ]
    );
    // No stop handlers, no change: the SDK does not touch the service's group, so the stray
    // child lives on as it would without the SDK.
    let children = event(&t, "alone", "children");
    assert!(gone(&children["helper"]), "kill_on_drop ran");
    assert!(TestDir::alive(children["stray"].as_i64().expect("pid")));
}

#[test]
fn axum_with_a_stop_handler_and_its_own_sigterm_handling_runs_both_in_order() {
    for standalone_run in [false, true] {
        let t = TestDir::new();
        let socket = t.path().join("web.sock");
        let svc = if standalone_run { "alone" } else { "web" };
        let args = [socket.display().to_string(), "both".into()];
        let mut child = None;
        let mut sup = None;
        if standalone_run {
            child = Some(standalone(&t, "axum_service", &[&args[0], &args[1]]));
        } else {
            sup = Some(supervise(&t, svc, "axum_service", args.to_vec()));
        }
        let request = slow_request(socket);
        t.wait_event(svc, "request-start");
        match (sup, child.as_mut()) {
            (Some(sup), _) => stop_supervisor(sup),
            (None, Some(c)) => assert_eq!(sigterm(c).0.code(), Some(0)),
            _ => unreachable!(),
        }
        assert_eq!(
            request.join().expect("request thread"),
            "HTTP/1.1 200 OK | done"
        );
        let k = kinds(&t, svc);
        let at = |name: &str| k.iter().position(|e| e == name).unwrap_or(usize::MAX);
        assert!(at("handler") < at("after-serve"), "{k:?}");
        assert!(at("app-signal") < at("after-serve"), "{k:?}");
        assert_eq!(k.last().map(String::as_str), Some("dropped"), "{k:?}");
    }
}

#[test]
fn ctrlc_installed_after_the_sdk_gets_the_stop_after_the_handlers() {
    // Under pm.
    let t = TestDir::new();
    let sup = supervise(&t, "c", "ctrlc_service", vec![]);
    t.wait_event("c", "started");
    stop_supervisor(sup);
    assert_eq!(
        kinds(&t, "c"),
        ["started", "handler", "app-signal", "main-returns"]
    );
    let out = t.stdout();
    stopped_ms(&out, "c");
    assert!(!out.contains("SIGKILL sent"), "{out}");
    // Standalone.
    let t = TestDir::new();
    let mut child = standalone(&t, "ctrlc_service", &[]);
    t.wait_event("alone", "started");
    assert_eq!(sigterm(&mut child).0.code(), Some(0));
    assert_eq!(
        kinds(&t, "alone"),
        ["started", "handler", "app-signal", "main-returns"]
    );
}

fn check_worker_lines(out: &str, prefix: &str) {
    let flushed = out
        .lines()
        .filter(|l| l.contains(&format!("{prefix}worker: flushed record ")))
        .count();
    let workers = out
        .lines()
        .filter(|l| l.contains(prefix) && l.contains(": stopped after "))
        .count();
    assert_eq!((flushed, workers), (100, 4), "{out}");
}

#[test]
fn a_thread_pool_worker_writes_every_line_when_main_returns_first() {
    for mode in ["flag", "wait"] {
        let t = TestDir::new();
        let sup = supervise(&t, "w", "worker_service", vec![mode.into()]);
        t.wait_event("w", "started");
        stop_supervisor(sup);
        let out = t.stdout();
        stopped_ms(&out, "w");
        check_worker_lines(&out, " w out | ");
        assert!(!out.contains("SIGKILL sent"), "{out}");
        assert_eq!(
            kinds(&t, "w").last().map(String::as_str),
            Some("handler-done")
        );

        let t = TestDir::new();
        let mut child = standalone(&t, "worker_service", &[mode]);
        t.wait_event("alone", "started");
        assert_eq!(sigterm(&mut child).0.code(), Some(0));
        let out = std::fs::read_to_string(t.path().join("alone.out")).expect("output");
        check_worker_lines(&out, "");
    }
}
