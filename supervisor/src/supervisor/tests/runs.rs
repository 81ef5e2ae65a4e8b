//! The run as a whole: the controller going away, sweeps, the state file, the sentinel,
//! messages and readiness.

use std::time::Duration;

use pm_child::protocol::{FromChild, StopReason};
use tokio::sync::oneshot;

use super::fake::{Spawned, code};
use super::*;

#[test]
fn the_controller_going_away_stops_everything_and_ends_the_actor() {
    let mut s = Sup::new();
    let a = s.start(spec("a"));
    let b = s.start(spec("b"));
    let c = s.start(spec("c"));
    let (pa, pb, pc) = (s.proc(a.id), s.proc(b.id), s.proc(c.id));
    s.hello(pa.num);
    // c crashed and waits for its restart.
    s.exit(pc.pid, code(1));
    s.signals();
    // The control channel's EOF: a shutdown request.
    let mut done = s.ask(Request::Shutdown);
    assert!(s.fx().wire(pa.num).lines[0].contains(r#""reason":"shutdown""#));
    assert_eq!(s.signals(), [(pb.pid, Signal::SIGTERM)]);
    let restarts = s.ask(|tx| Request::Restart(Services::All, tx)).try_recv();
    assert!(matches!(restarts, Ok(Err(ActionError::ShuttingDown))));
    s.advance(Duration::from_secs(5));
    assert_eq!(s.proc(c.id), pc, "c's pending restart was cancelled");
    s.exit(pa.pid, code(0));
    assert!(
        done.try_recv().is_err(),
        "not before the last process is gone"
    );
    s.fx()
        .exits
        .push_back(Reaped::Service(pb.pid, Exit::Signal(Signal::SIGKILL)));
    s.actor.reap();
    assert!(s.turn(), "the actor ends");
    assert_eq!(s.actor.finished().len(), 1);
}

#[test]
fn exits_close_together_share_one_sweep_and_an_awaited_one_is_swept_at_once() {
    let mut s = Sup::new();
    let ids: Vec<u64> = (0..3).map(|i| s.start(spec(&format!("s{i}"))).id).collect();
    let procs: Vec<Spawned> = ids.iter().map(|&id| s.proc(id)).collect();
    s.exit(procs[0].pid, code(1));
    s.exit(procs[1].pid, code(1));
    assert!(
        s.fx().sweeps.is_empty(),
        "crashes are swept together, later"
    );
    s.advance(100 * MS);
    assert_eq!(s.fx().sweeps, [[procs[0].num, procs[1].num]]);
    let mut reply = s.stop(Services::Named("s2".into()));
    s.exit(procs[2].pid, code(0));
    assert_eq!(s.fx().sweeps.len(), 2, "swept before the reply");
    assert!(rows(&mut reply).is_some());
}

#[test]
fn the_state_file_is_written_once_per_turn_with_every_group() {
    let mut s = Sup::new();
    let (tx, _rx) = oneshot::channel();
    s.actor.request(Request::Start {
        spec: Box::new(spec("a")),
        await_ready: false,
        reply: tx,
    });
    let (tx, _rx2) = oneshot::channel();
    s.actor.request(Request::Start {
        spec: Box::new(spec("b")),
        await_ready: false,
        reply: tx,
    });
    s.turn();
    s.turn();
    let states = &s.fx().states;
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].len(), 2);
}

#[test]
fn a_dead_sentinel_is_replaced_and_told_which_children_need_sigterm() {
    let mut s = Sup::new();
    let a = s.start(spec("a"));
    let b = s.start(spec("b"));
    let (pa, pb) = (s.proc(a.id), s.proc(b.id));
    s.hello(pa.num);
    s.fx().exits.push_back(Reaped::Sentinel);
    s.actor.reap();
    assert_eq!(s.fx().sentinel_starts, 2);
    assert!(!s.fx().sentinel[&pa.pid.as_raw()].term);
    assert!(s.fx().sentinel[&pb.pid.as_raw()].term);
}

#[test]
fn data_sent_just_before_an_exit_is_still_an_event() {
    let mut s = Sup::new();
    let row = s.start(spec("m"));
    let p = s.proc(row.id);
    s.exit(p.pid, code(0));
    s.events();
    s.say(p.num, FromChild::Data(serde_json::json!({"last": true})));
    assert!(matches!(&s.events()[..], [EventKind::Message { data, .. }] if data["last"] == true));
    s.close_channel(p.num);
    s.say(p.num, FromChild::Data(serde_json::json!(1)));
    assert!(s.events().is_empty(), "nothing after the channel's end");
}

#[test]
fn ready_is_reported_once_and_kept_while_stopping() {
    let mut s = Sup::new();
    let (tx, mut rx) = oneshot::channel();
    s.actor.request(Request::Start {
        spec: Box::new(spec("r")),
        await_ready: true,
        reply: tx,
    });
    assert_eq!(
        rx.try_recv().expect("row").expect("ok").state,
        State::Starting
    );
    let p = s.proc(1);
    s.say(p.num, FromChild::Ready);
    s.say(p.num, FromChild::Ready);
    let readies = s
        .events()
        .iter()
        .filter(|k| matches!(k, EventKind::Ready { .. }))
        .count();
    assert_eq!(readies, 1);
    let _reply = s.stop(Services::All);
    let r = s.row(1);
    assert_eq!((r.state, r.ready), (State::Stopping, true));
    assert!(s.events().iter().any(|k| matches!(
        k,
        EventKind::Stopping {
            reason: StopReason::Stop,
            ..
        }
    )));
}

#[test]
fn the_controller_going_away_during_a_restart_launches_nothing_and_ends() {
    let mut s = Sup::new();
    let row = s.start(spec("api"));
    let old = s.proc(row.id);
    let mut restarted = s.ask(|tx| Request::Restart(Services::All, tx));
    let _done = s.ask(Request::Shutdown);
    s.exit(old.pid, code(0));
    assert_eq!(s.proc(row.id), old, "no new process during a shutdown");
    let rows = restarted.try_recv().expect("answered").expect("rows");
    assert_eq!(rows[0].state, State::Stopped);
    assert!(s.turn(), "the actor ends");
    assert_eq!(s.actor.finished().len(), 1);
}
