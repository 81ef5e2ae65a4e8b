//! Stop sequences: who gets `stop`, SIGTERM and SIGKILL, when, and what is logged.

use std::time::Duration;

use pm_child::protocol::FromChild;

use super::fake::code;
use super::*;

#[test]
fn a_child_that_said_hello_is_sent_stop_and_answers_without_a_signal() {
    let mut s = Sup::new();
    let row = s.start(spec("web"));
    let p = s.proc(row.id);
    s.hello(p.num);
    s.notes();
    let mut reply = s.stop(Services::Named("web".into()));
    assert!(s.fx().wire(p.num).lines[0].contains(r#""type":"stop""#));
    assert!(s.fx().wire(p.num).lines[0].contains(r#""timeout_ms":200"#));
    s.say(p.num, FromChild::Stopping);
    // Its handlers run past the ack window and up to killTimeout: no SIGTERM meanwhile.
    s.advance(150 * MS);
    assert!(s.signals().is_empty());
    assert!(
        rows(&mut reply).is_none(),
        "answered once the process is gone"
    );
    s.exit(p.pid, code(0));
    let done = rows(&mut reply).expect("answered");
    assert_eq!((done[0].state, done[0].pid), (State::Stopped, None));
    assert_eq!(
        s.notes(),
        [
            "web: stopping (stop requested; killTimeout 200 ms)",
            "web: stopped: exit code 0, 150 ms after the stop request (ran 150 ms)"
        ]
    );
    // The exit is swept for strays before the reply, and the sentinel forgets it.
    assert_eq!(s.fx().sweeps, [[p.num]]);
    assert!(s.fx().sentinel.is_empty());
}

#[test]
fn a_silent_child_gets_sigterm_at_once_then_sigkill_at_kill_timeout() {
    let mut s = Sup::new();
    let row = s.start(spec("plain"));
    let p = s.proc(row.id);
    s.notes();
    let _reply = s.stop(Services::Id(row.id));
    assert_eq!(s.signals(), [(p.pid, Signal::SIGTERM)]);
    assert!(s.fx().wire(p.num).lines.is_empty(), "no stop message");
    s.advance(199 * MS);
    assert!(s.signals().is_empty());
    s.advance(MS);
    assert_eq!(s.signals(), [(p.pid, Signal::SIGKILL)]);
    s.exit(p.pid, Exit::Signal(Signal::SIGKILL));
    let notes = s.notes();
    assert_eq!(
        notes[1],
        format!(
            "plain: SIGTERM sent to process group {} (it never said hello on its channel)",
            p.pid
        )
    );
    assert_eq!(
        notes[2],
        format!(
            "plain: SIGKILL sent to process group {} (200 ms after the stop request)",
            p.pid
        )
    );
    assert!(notes[3].starts_with("plain: stopped: signal SIGKILL, 200 ms after"));
}

#[test]
fn a_child_that_does_not_answer_stop_gets_sigterm_after_the_ack_window() {
    let mut s = Sup::new();
    let row = s.start(spec("deaf"));
    let p = s.proc(row.id);
    s.hello(p.num);
    let _reply = s.stop(Services::All);
    s.advance(49 * MS);
    assert!(s.signals().is_empty());
    s.advance(MS);
    assert_eq!(s.signals(), [(p.pid, Signal::SIGTERM)]);
    let why = s.fx().notes.iter().find_map(|(_, n)| match n {
        Note::Sigterm { why, .. } => Some(*why),
        _ => None,
    });
    assert_eq!(why, Some(TermWhy::NoAnswer(50 * MS)));
}

#[test]
fn extend_moves_sigkill_and_its_lines_are_bounded() {
    let mut s = Sup::new();
    let row = s.start(spec("slow"));
    let p = s.proc(row.id);
    s.hello(p.num);
    let _reply = s.stop(Services::All);
    s.say(p.num, FromChild::Stopping);
    s.notes();
    for _ in 0..100 {
        s.say(p.num, FromChild::Extend { ms: 1000 });
    }
    let lines = s.notes();
    assert_eq!(lines.len(), 3, "a few lines a second: {lines:?}");
    assert_eq!(
        lines[0],
        "slow: stop extended by 1000 ms on request; SIGKILL in 1000 ms"
    );
    s.advance(999 * MS);
    assert!(s.signals().is_empty(), "not at killTimeout any more");
    s.advance(MS);
    assert_eq!(s.signals(), [(p.pid, Signal::SIGKILL)]);
}

#[test]
fn a_child_without_stop_handlers_that_answers_term_gets_one_sigterm() {
    let mut s = Sup::new();
    let row = s.start(spec("bare"));
    let p = s.proc(row.id);
    s.hello(p.num);
    let _reply = s.stop(Services::All);
    s.say(p.num, FromChild::Term);
    s.say(p.num, FromChild::Term);
    s.advance(60 * MS);
    assert_eq!(s.signals(), [(p.pid, Signal::SIGTERM)]);
    assert!(
        s.notes()
            .iter()
            .any(|l| l.ends_with("(it has no stop handlers and asked for it)"))
    );
}

#[test]
fn a_channel_lost_during_a_stop_falls_back_to_sigterm_and_tells_the_sentinel() {
    let mut s = Sup::new();
    let row = s.start(spec("web"));
    let p = s.proc(row.id);
    s.hello(p.num);
    assert!(
        !s.fx().sentinel[&p.pid.as_raw()].term,
        "hello: EOF is its stop"
    );
    let _reply = s.stop(Services::All);
    s.close_channel(p.num);
    assert_eq!(s.signals(), [(p.pid, Signal::SIGTERM)]);
    assert!(s.fx().sentinel[&p.pid.as_raw()].term, "no channel: SIGTERM");
    assert!(
        s.notes()
            .iter()
            .any(|l| l.ends_with("(its channel is closed)"))
    );
}

#[test]
fn a_stop_message_that_cannot_be_queued_falls_back_to_sigterm() {
    let mut s = Sup::new();
    let row = s.start(spec("stuck"));
    let p = s.proc(row.id);
    s.hello(p.num);
    s.fx().wire(p.num).full = true;
    let _reply = s.stop(Services::All);
    assert_eq!(s.signals(), [(p.pid, Signal::SIGTERM)]);
}

#[test]
fn disconnect_tells_a_hello_child_first_and_stops_by_signal_from_then_on() {
    let mut s = Sup::new();
    let row = s.start(spec("w"));
    let p = s.proc(row.id);
    s.hello(p.num);
    let closed = s
        .ask(|tx| Request::Disconnect(Services::All, tx))
        .try_recv();
    assert_eq!(closed.ok(), Some(Ok(1)));
    let wire = s.fx().wire(p.num);
    assert!(wire.disconnected && wire.lines[0].contains("disconnect"));
    drop(wire);
    let _reply = s.stop(Services::All);
    assert_eq!(s.signals(), [(p.pid, Signal::SIGTERM)]);
}

#[test]
fn kill_all_sigkills_every_group_and_nothing_restarts() {
    let mut s = Sup::new();
    let row = s.start(spec("k"));
    let p = s.proc(row.id);
    s.signals();
    s.actor.request(Request::KillAll);
    s.turn();
    assert!(s.signals().contains(&(p.pid, Signal::SIGKILL)));
    s.exit(p.pid, Exit::Signal(Signal::SIGKILL));
    let notes = s.notes();
    assert!(
        notes.contains(&format!(
            "k: SIGKILL sent to process group {} (forced by a second signal)",
            p.pid
        )),
        "{notes:?}"
    );
    s.advance(Duration::from_secs(10));
    assert_eq!(s.proc(row.id), p, "a killed service is not restarted");
    assert!(s.turn(), "and the actor ends");
}
