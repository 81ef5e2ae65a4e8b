//! Crashes, restarts and launch failures, and which services a request selects.

use std::time::Duration;

use super::fake::code;
use super::*;

#[test]
fn a_crash_is_restarted_on_schedule_and_the_row_says_so() {
    let mut s = Sup::new();
    let row = s.start(spec("crashy"));
    let first = s.proc(row.id);
    s.fx().advance(5 * MS);
    s.exit(first.pid, code(1));
    let r = s.row(row.id);
    assert_eq!(
        (r.state, r.crashes, r.restart_in_ms),
        (State::Waiting, 1, Some(100))
    );
    assert_eq!(r.last_exit.as_deref(), Some("exit code 1"));
    s.advance(99 * MS);
    assert_eq!(s.proc(row.id), first, "not launched early");
    s.advance(MS);
    let second = s.proc(row.id);
    assert_ne!(second.pid, first.pid);
    assert_eq!(s.row(row.id).restarts, 1);
    // A second crash waits the second delay.
    s.exit(second.pid, code(1));
    assert_eq!(s.row(row.id).restart_in_ms, Some(500));
    let notes = s.notes();
    assert!(notes.contains(&"crashy: exited: exit code 1 after 5 ms".to_owned()));
    assert!(notes.contains(&"crashy: restarting in 100 ms (crash 1 in a row)".to_owned()));
    let kinds = s.events();
    assert!(kinds.iter().any(|k| matches!(
        k,
        EventKind::Restarting {
            in_ms: 500,
            crashes: 2
        }
    )));
}

#[test]
fn a_restart_stops_then_launches_and_answers_once_launched() {
    let mut s = Sup::new();
    let row = s.start(spec("api"));
    let old = s.proc(row.id);
    let mut reply = s.restart(Services::Named("api".into()));
    assert_eq!(s.row(row.id).state, State::Stopping);
    assert!(rows(&mut reply).is_none());
    s.exit(old.pid, code(0));
    let new = s.proc(row.id);
    assert_ne!(new.pid, old.pid);
    let done = rows(&mut reply).expect("answered");
    assert_eq!(done[0].pid, Some(new.pid.as_raw()));
    assert_eq!((done[0].state, done[0].restarts), (State::Running, 1));
}

#[test]
fn a_stop_cancels_a_pending_restart() {
    let mut s = Sup::new();
    let row = s.start(spec("flaky"));
    let p = s.proc(row.id);
    s.exit(p.pid, code(1));
    s.notes();
    let mut reply = s.stop(Services::All);
    assert_eq!(rows(&mut reply).expect("at once")[0].state, State::Stopped);
    assert_eq!(
        s.notes(),
        ["flaky: stopped (its pending restart is cancelled)"]
    );
    s.advance(Duration::from_secs(10));
    assert_eq!(s.proc(row.id), p, "never launched again");
}

#[test]
fn a_launch_failure_is_a_crash_with_its_error_in_the_row() {
    let mut s = Sup::new();
    s.fx().unlaunchable.push("gone.js".into());
    let nameless = ServiceSpec {
        name: None,
        ..spec("gone")
    };
    let row = s.start(nameless);
    assert_eq!((row.state, row.pid), (State::Waiting, None));
    let error = row.error.unwrap_or_default();
    assert!(error.starts_with("script not found"), "{error}");
    // A nameless service without a process is labelled by its id.
    assert!(s.fx().notes.iter().any(|(l, n)| l == "#1" && n.is_error()));
    let failed = s.events();
    assert!(
        failed
            .iter()
            .any(|k| matches!(k, EventKind::LaunchFailed { .. }))
    );
}

#[test]
fn unknown_names_and_ids_are_refused() {
    let mut s = Sup::new();
    s.start(spec("a"));
    let mut r = s.stop(Services::Named("b".into()));
    assert_eq!(
        r.try_recv()
            .expect("answered")
            .expect_err("no such")
            .to_string(),
        "no service named \"b\""
    );
    let mut r = s.restart(Services::Id(9));
    assert_eq!(
        r.try_recv()
            .expect("answered")
            .expect_err("no such")
            .to_string(),
        "no service with id 9"
    );
}

#[test]
fn a_restart_during_a_stop_keeps_its_deadlines_and_launches_once_the_process_is_gone() {
    let mut s = Sup::new();
    let row = s.start(spec("api"));
    let old = s.proc(row.id);
    s.hello(old.num);
    let mut stopped = s.stop(Services::All);
    s.advance(30 * MS);
    let mut restarted = s.restart(Services::All);
    assert_eq!(s.fx().wire(old.num).lines.len(), 1, "stop is sent once");
    // The ack window still counts from the stop request, not from the restart.
    s.advance(20 * MS);
    assert_eq!(s.signals(), [(old.pid, Signal::SIGTERM)]);
    assert_eq!(
        s.proc(row.id),
        old,
        "nothing launched while the old one lives"
    );
    s.exit(old.pid, code(0));
    let new = s.proc(row.id);
    assert_ne!(new.pid, old.pid);
    assert!(rows(&mut stopped).is_some(), "the stop is answered");
    let done = rows(&mut restarted).expect("the restart is answered");
    assert_eq!(
        (done[0].state, done[0].pid),
        (State::Running, Some(new.pid.as_raw()))
    );
}

#[test]
fn a_stop_during_a_restart_wins_and_both_are_answered() {
    let mut s = Sup::new();
    let row = s.start(spec("api"));
    let old = s.proc(row.id);
    let mut restarted = s.restart(Services::All);
    let mut stopped = s.stop(Services::All);
    s.exit(old.pid, code(0));
    assert_eq!(s.proc(row.id), old, "the stop cancelled the launch");
    assert_eq!(
        rows(&mut stopped).expect("answered")[0].state,
        State::Stopped
    );
    let done = rows(&mut restarted).expect("the restart is answered, not left hanging");
    assert_eq!((done[0].state, done[0].pid), (State::Stopped, None));
    s.advance(Duration::from_secs(10));
    assert_eq!(s.proc(row.id), old, "and never launched later");
}

#[test]
fn a_failing_exit_during_a_stop_is_not_a_crash() {
    let mut s = Sup::new();
    let row = s.start(spec("api"));
    let p = s.proc(row.id);
    let _reply = s.stop(Services::All);
    s.exit(p.pid, code(1));
    let r = s.row(row.id);
    assert_eq!(
        (r.state, r.crashes, r.restart_in_ms),
        (State::Stopped, 0, None)
    );
    s.advance(Duration::from_secs(10));
    assert_eq!(s.proc(row.id), p, "not restarted");
}

#[test]
fn a_service_that_ran_restart_ok_long_starts_its_crash_count_over() {
    let mut s = Sup::new();
    let row = s.start(spec("up"));
    s.exit(s.proc(row.id).pid, code(1));
    s.advance(100 * MS);
    s.exit(s.proc(row.id).pid, code(1));
    assert_eq!(
        s.row(row.id).restart_in_ms,
        Some(500),
        "second crash in a row"
    );
    s.advance(500 * MS);
    // Up for restartOk (60 s), then a crash: the first delay again.
    s.advance(Duration::from_secs(60));
    s.exit(s.proc(row.id).pid, code(1));
    let r = s.row(row.id);
    assert_eq!((r.crashes, r.restart_in_ms), (1, Some(100)));
}
