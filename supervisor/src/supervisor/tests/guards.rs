//! What the supervisor decides on its own: the watchdog, the memory ceiling, start order and
//! reverse stop order, watch mode's debounce.

use std::time::Duration;

use pm_child::protocol::FromChild;

use super::fake::code;
use super::*;

fn watched(name: &str, ms: u64) -> ServiceSpec {
    ServiceSpec {
        watchdog: Some(Duration::from_millis(ms)),
        ..spec(name)
    }
}

fn hello_with(s: &mut Sup, num: u64, diagnostics: Option<&str>) {
    s.say(
        num,
        FromChild::Hello {
            protocol: pm_child::protocol::PROTOCOL_VERSION,
            sdk: "test".into(),
            version: "0".into(),
            diagnostics: diagnostics.map(str::to_owned),
        },
    );
}

fn hung_events(s: &mut Sup) -> Vec<(u64, u64)> {
    s.events()
        .into_iter()
        .filter_map(|k| match k {
            EventKind::Hung {
                silence_ms,
                watchdog_ms,
                ..
            } => Some((silence_ms, watchdog_ms)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_silent_armed_process_is_hung_at_the_limit_plus_the_margin_and_restarted_as_a_crash() {
    let mut s = Sup::new();
    let row = s.start(watched("idx", 1000));
    let p = s.proc(row.id);
    hello_with(&mut s, p.num, None);
    // Heartbeats every 300 ms for 3 s: never hung, and never a wakeup for a look either (each
    // heartbeat moves it past itself).
    for _ in 0..10 {
        s.advance(300 * MS);
        s.say(p.num, FromChild::Heartbeat);
        let now = crate::supervisor::effects::Effects::now(&s.actor.fx);
        let next = s.actor.next_deadline().expect("a look is pending");
        assert!(next >= now + 1050 * MS, "{:?}", next - now);
    }
    assert_eq!(hung_events(&mut s), []);
    s.notes();
    // Then silence: found past 1000 ms and within the margin (a tenth): looks fall on a 50 ms
    // grid from the start, and the last heartbeat was on it, so at 1050 ms.
    // (The clock moves in steps, as it does for the real timer: a look comes on time.)
    for _ in 0..1049 {
        s.advance(MS);
    }
    assert_eq!(hung_events(&mut s), []);
    s.advance(MS);
    assert_eq!(hung_events(&mut s), [(1050, 1000)]);
    let notes = s.notes();
    assert_eq!(
        notes[0],
        "idx: hung: no heartbeat for 1050 ms (watchdogMs 1000)"
    );
    assert!(notes[1].starts_with("idx: stopping"), "{notes:?}");
    assert!(s.fx().wire(p.num).lines[0].contains(r#""type":"stop""#));
    // A heartbeat now changes nothing; the exit is a crash, restarted on the schedule.
    s.say(p.num, FromChild::Heartbeat);
    s.say(p.num, FromChild::Stopping);
    s.exit(p.pid, code(0));
    let row = s.row(row.id);
    assert_eq!((row.state, row.crashes, row.hangs), (State::Waiting, 1, 1));
    assert_eq!(row.last_guard.map(|g| g.why), Some("hung".into()));
    s.advance(100 * MS);
    assert_ne!(s.proc(row.id).pid, p.pid, "restarted after restartAt[0]");
}

#[test]
fn a_supervisor_awake_anyway_looks_as_soon_as_the_silence_passes_the_limit_and_half_the_margin() {
    let mut s = Sup::new();
    let row = s.start(watched("idx", 1000));
    let p = s.proc(row.id);
    hello_with(&mut s, p.num, None);
    // A heartbeat off the grid (at 7 ms): the look's window runs from 1057 ms to the grid's
    // 1100 ms. Each step below ends a turn, as a heartbeat of another service would.
    s.advance(7 * MS);
    s.say(p.num, FromChild::Heartbeat);
    // The first look, at the limit after the launch, finds it beating.
    s.advance(993 * MS);
    s.advance(56 * MS);
    assert_eq!(hung_events(&mut s), []);
    s.advance(MS);
    assert_eq!(hung_events(&mut s), [(1050, 1000)]);
}

#[test]
fn a_process_that_never_beats_is_said_not_watched_once_and_never_hung() {
    let mut s = Sup::new();
    let row = s.start(watched("plain", 500));
    s.notes();
    s.advance(500 * MS);
    assert_eq!(
        s.notes(),
        ["plain: watchdogMs is set, but the process sent no heartbeat: not watched"]
    );
    s.advance(10_000 * MS);
    assert!(s.notes().is_empty());
    assert!(hung_events(&mut s).is_empty());
    // A late first heartbeat arms it.
    let p = s.proc(row.id);
    s.say(p.num, FromChild::Heartbeat);
    for _ in 0..550 {
        s.advance(MS);
    }
    let found = hung_events(&mut s);
    assert!(
        found.len() == 1 && (501..=550).contains(&found[0].0),
        "{found:?}"
    );
}

#[test]
fn a_hung_child_offering_a_signal_gets_it_and_the_stop_comes_after_the_window() {
    let mut s = Sup::new();
    let row = s.start(watched("py", 1000));
    let p = s.proc(row.id);
    hello_with(&mut s, p.num, Some("SIGUSR2"));
    s.say(p.num, FromChild::Heartbeat);
    for _ in 0..1100 {
        s.advance(MS);
        if !s.fx().process_signals.is_empty() {
            break;
        }
    }
    assert_eq!(s.fx().process_signals, [(p.pid, Signal::SIGUSR2)]);
    assert!(s.fx().wire(p.num).lines.is_empty(), "no stop yet");
    s.advance(499 * MS);
    assert!(s.fx().wire(p.num).lines.is_empty());
    s.advance(MS);
    assert!(s.fx().wire(p.num).lines[0].contains(r#""type":"stop""#));
}

#[test]
fn heartbeats_of_a_service_without_a_watchdog_and_after_the_channel_closed_are_ignored() {
    let mut s = Sup::new();
    let row = s.start(spec("web"));
    let p = s.proc(row.id);
    s.say(p.num, FromChild::Heartbeat);
    s.advance(60_000 * MS);
    assert!(hung_events(&mut s).is_empty());
    let row = s.start(watched("w", 200));
    let p = s.proc(row.id);
    s.say(p.num, FromChild::Heartbeat);
    s.close_channel(p.num);
    s.advance(5_000 * MS);
    assert!(hung_events(&mut s).is_empty(), "disarmed with the channel");
}

#[test]
fn a_group_above_max_memory_for_three_samples_in_a_row_is_restarted() {
    let mut s = Sup::new();
    let big = s.start(ServiceSpec {
        max_memory: Some(100 << 20),
        ..spec("leaky")
    });
    let small = s.start(spec("other"));
    let p = s.proc(big.id);
    s.fx().rss.insert(p.pid, 150 << 20);
    s.advance(1000 * MS);
    s.advance(1000 * MS);
    // A dip resets the count.
    s.fx().rss.insert(p.pid, 50 << 20);
    s.advance(1000 * MS);
    s.fx().rss.insert(p.pid, 150 << 20);
    s.advance(1000 * MS);
    s.advance(1000 * MS);
    assert!(s.fx().wire(p.num).lines.is_empty() && s.signals().is_empty());
    s.notes();
    s.advance(1000 * MS);
    let notes = s.notes();
    assert_eq!(
        notes[0],
        "leaky: memory: process group RSS 150.0 MiB above maxMemory 100.0 MiB for 3000 ms; restarting"
    );
    assert_eq!(s.signals(), [(p.pid, Signal::SIGTERM)]);
    let memory = s
        .events()
        .into_iter()
        .any(|k| matches!(k, EventKind::Memory { rss, .. } if rss == 150 << 20));
    assert!(memory);
    s.exit(p.pid, Exit::Signal(Signal::SIGTERM));
    let row = s.row(big.id);
    assert_eq!((row.state, row.memory_restarts), (State::Waiting, 1));
    // Only the service with a ceiling is sampled, and nothing is read once none runs.
    let other = s.proc(small.id);
    assert!(!s.fx().rss.contains_key(&other.pid));
    let reads = s.fx().rss_reads;
    assert_eq!(reads, 6);
    let _reply = s.stop(Services::Named("leaky".into()));
    s.advance(5000 * MS);
    assert_eq!(s.fx().rss_reads, reads, "no sample while none runs");
}

fn dep(name: &str, on: &[&str]) -> ServiceSpec {
    ServiceSpec {
        depends_on: on.iter().map(|s| (*s).to_owned()).collect(),
        ..spec(name)
    }
}

#[test]
fn a_chain_starts_in_order_each_once_its_dependency_is_up() {
    let mut s = Sup::new();
    let api = s.start(dep("api", &["db"]));
    let web = s.start(dep("web", &["api"]));
    assert_eq!(api.waiting_for, ["db"]);
    assert_eq!(web.waiting_for, ["api"]);
    assert!(s.fx().spawned.is_empty());
    let db = s.start(spec("db"));
    let d = s.proc(db.id);
    // db speaks the protocol: api waits for its `ready`, however long.
    s.hello(d.num);
    s.advance(5000 * MS);
    assert_eq!(s.fx().spawned.len(), 1);
    s.say(d.num, FromChild::Ready);
    assert_eq!(s.fx().spawned.len(), 2);
    assert_eq!(s.proc(api.id).id, api.id);
    // api says no hello: it counts as up after it ran a second.
    s.advance(999 * MS);
    assert_eq!(s.fx().spawned.len(), 2);
    s.advance(MS);
    assert_eq!(s.fx().spawned.len(), 3);
    assert!(s.row(web.id).waiting_for.is_empty());
    // A dependency's crash does not restart its dependents.
    let a = s.proc(api.id);
    let w = s.proc(web.id);
    s.exit(d.pid, code(1));
    s.advance(2000 * MS);
    assert_eq!((s.proc(api.id), s.proc(web.id)), (a, w));
}

#[test]
fn a_shutdown_stops_dependents_first_within_one_deadline() {
    let mut s = Sup::new();
    let db = s.start(spec("db"));
    let d = s.proc(db.id);
    s.say(d.num, FromChild::Ready);
    let api = s.start(dep("api", &["db"]));
    let a = s.proc(api.id);
    s.say(a.num, FromChild::Ready);
    let web = s.start(dep("web", &["api"]));
    let w = s.proc(web.id);
    s.signals();
    s.actor.begin_shutdown(None);
    s.turn();
    // Only web first (none of them said hello: SIGTERM).
    assert_eq!(s.signals(), [(w.pid, Signal::SIGTERM)]);
    s.advance(50 * MS);
    s.exit(w.pid, code(0));
    // (The SIGKILL of web's group is the reaping's.)
    assert_eq!(
        s.signals(),
        [(w.pid, Signal::SIGKILL), (a.pid, Signal::SIGTERM)]
    );
    // api does not go: at the deadline (the longest killTimeout, 200 ms from the request) it
    // is killed, and db, still waiting, is killed at once.
    s.advance(149 * MS);
    assert!(s.signals().is_empty());
    s.advance(MS);
    let sent = s.signals();
    assert!(sent.contains(&(a.pid, Signal::SIGKILL)), "{sent:?}");
    assert!(sent.contains(&(d.pid, Signal::SIGKILL)), "{sent:?}");
}

#[test]
fn watch_changes_are_debounced_into_one_restart() {
    let mut s = Sup::new();
    let row = s.start(ServiceSpec {
        watch: vec!["/srv".into()],
        ..spec("dev")
    });
    assert_eq!(s.fx().watched.len(), 1);
    let p = s.proc(row.id);
    for i in 0..5 {
        s.actor.files_changed(row.id, format!("/srv/f{i}.js"));
        s.advance(100 * MS);
    }
    assert!(s.signals().is_empty(), "changes keep coming");
    s.advance(300 * MS);
    assert_eq!(s.signals(), [(p.pid, Signal::SIGTERM)]);
    assert!(
        s.notes()
            .iter()
            .any(|n| n == "dev: files changed (/srv/f0.js); restarting (watch)")
    );
    s.exit(p.pid, code(0));
    assert_eq!(s.fx().spawned.len(), 2);
    // A service stopped on request is not started by a change.
    let _reply = s.stop(Services::Named("dev".into()));
    let p = s.proc(row.id);
    s.exit(p.pid, code(0));
    s.actor.files_changed(row.id, "/srv/x.js".into());
    s.advance(400 * MS);
    assert_eq!(s.fx().spawned.len(), 2);
}

#[test]
fn a_deleted_watched_service_is_no_longer_watched_and_a_change_starts_nothing() {
    let mut s = Sup::new();
    let dev = s.start(ServiceSpec {
        watch: vec!["/srv".into()],
        ..spec("dev")
    });
    let plain = s.start(spec("plain"));
    let p = s.proc(dev.id);
    let _reply = s.ask(|tx| Request::Delete(Services::Id(dev.id), tx));
    assert_eq!(s.fx().unwatched, [dev.id], "given up as the delete begins");
    // A change the watcher had already seen arrives late: nothing is started.
    s.actor.files_changed(dev.id, "/srv/a.js".into());
    s.exit(p.pid, code(0));
    s.advance(400 * MS);
    assert_eq!(s.fx().spawned.len(), 2);
    // A service that never watched is not handed to the watcher on delete.
    let _reply = s.ask(|tx| Request::Delete(Services::Id(plain.id), tx));
    assert_eq!(s.fx().unwatched, [dev.id]);
}

#[test]
fn reload_rewatches_a_changed_watch_and_unwatches_a_removed_or_dropped_one() {
    let mut s = Sup::new();
    let w = |name: &str, path: &str| ServiceSpec {
        watch: vec![path.into()],
        ..spec(name)
    };
    let mut first = s.ask(|tx| {
        Request::Reload(
            vec![
                w("moved", "/srv/a"),
                w("same", "/srv/s"),
                w("dropped", "/srv/d"),
                w("gone", "/srv/g"),
            ],
            tx,
        )
    });
    let ids: Vec<u64> = first
        .try_recv()
        .expect("at once")
        .expect("ok")
        .added
        .iter()
        .map(|r| r.id)
        .collect();
    let (moved, same, dropped, gone) = (ids[0], ids[1], ids[2], ids[3]);
    s.fx().watched.clear();
    let _reply = s.ask(|tx| {
        Request::Reload(
            vec![w("moved", "/srv/b"), w("same", "/srv/s"), spec("dropped")],
            tx,
        )
    });
    assert_eq!(s.fx().watched, [(moved, vec!["/srv/b".into()])]);
    let mut unwatched = s.fx().unwatched.clone();
    unwatched.sort_unstable();
    assert_eq!(unwatched, [dropped, gone]);
    assert!(!s.fx().unwatched.contains(&same));
}
