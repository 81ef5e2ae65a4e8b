//! Changing the set of services: `delete`, `reload` (what its plan decides, and how it is
//! carried out), and the usage figures of rows and descriptions.

use std::time::Duration;

use super::super::reload::{Plan, plan};
use super::fake::code;
use super::*;
use crate::platform::GroupUsage;

fn reload(
    s: &mut Sup,
    specs: Vec<ServiceSpec>,
) -> oneshot::Receiver<Result<super::super::Reloaded, ActionError>> {
    s.ask(|tx| Request::Reload(specs, tx))
}

fn names(rows: &[ServiceInfo]) -> Vec<&str> {
    rows.iter()
        .map(|r| r.name.as_deref().unwrap_or("-"))
        .collect()
}

#[test]
fn the_plan_matches_by_name_in_order_and_nameless_services_by_their_spec() {
    let (a, b, dup1, dup2) = (spec("a"), spec("b"), spec("dup"), spec("dup"));
    let mut nameless = spec("x");
    nameless.name = None;
    let current = [(1, &a), (2, &b), (3, &dup1), (4, &dup2), (5, &nameless)];
    let mut b2 = spec("b");
    b2.args = vec!["--new".into()];
    let mut nameless2 = nameless.clone();
    nameless2.script = "y.js".into();
    let p = plan(
        &current,
        vec![
            a.clone(),
            b2.clone(),
            dup1.clone(),
            spec("c"),
            nameless2.clone(),
        ],
    );
    assert_eq!(
        p,
        Plan {
            add: vec![spec("c"), nameless2],
            change: vec![(2, b2)],
            // The second "dup" and the nameless service whose spec changed.
            remove: vec![4, 5],
            keep: vec![1, 3],
        }
    );
    // The same file again: nothing to do.
    let same = plan(
        &current,
        vec![
            a.clone(),
            b.clone(),
            dup1.clone(),
            dup2.clone(),
            nameless.clone(),
        ],
    );
    assert_eq!(
        (same.add.len(), same.change.len(), same.remove.len()),
        (0, 0, 0)
    );
    assert_eq!(same.keep, [1, 2, 3, 4, 5]);
}

#[test]
fn delete_stops_a_service_then_forgets_it() {
    let mut s = Sup::new();
    let web = s.start(spec("web"));
    let db = s.start(spec("db"));
    let p = s.proc(web.id);
    s.signals();
    let mut reply = s.ask(|tx| Request::Delete(Services::Id(web.id), tx));
    assert_eq!(s.signals(), [(p.pid, Signal::SIGTERM)]);
    assert!(
        rows(&mut reply).is_none(),
        "answered once the process is gone"
    );
    assert_eq!(names(&s.list()), ["web", "db"], "listed while it stops");
    s.exit(p.pid, Exit::Signal(Signal::SIGTERM));
    let done = rows(&mut reply).expect("answered");
    assert_eq!((done[0].id, done[0].state), (web.id, State::Stopped));
    assert_eq!(names(&s.list()), ["db"]);
    // Gone for good: no restart, and a name or id that named it names nothing now.
    s.advance(Duration::from_secs(10));
    assert_eq!(s.proc(web.id), p);
    let again = s
        .ask(|tx| Request::Stop(Services::Named("web".into()), tx))
        .try_recv();
    assert!(matches!(again, Ok(Err(ActionError::NoSuchService(_)))));
    // A stopped service is forgotten at once; `all` forgets every one.
    s.ask(|tx| Request::Stop(Services::All, tx));
    s.exit(s.proc(db.id).pid, code(0));
    let mut all = s.ask(|tx| Request::Delete(Services::All, tx));
    assert_eq!(names(&rows(&mut all).expect("at once")), ["db"]);
    assert!(s.list().is_empty());
}

#[test]
fn reload_adds_removes_and_restarts_changed_services_and_answers_when_done() {
    let mut s = Sup::new();
    let mut first = reload(&mut s, vec![spec("keep"), spec("gone"), spec("change")]);
    let started = first.try_recv().expect("at once").expect("ok");
    assert_eq!(names(&started.added), ["keep", "gone", "change"]);
    let ids: Vec<u64> = started.added.iter().map(|r| r.id).collect();
    let (keep, gone, change) = (s.proc(ids[0]), s.proc(ids[1]), s.proc(ids[2]));
    // A service started by request is not the file's: reload leaves it alone.
    let extra = s.start(spec("extra"));
    s.signals();

    let mut changed = spec("change");
    changed.env.insert("NEW".into(), "1".into());
    let mut reply = reload(&mut s, vec![spec("keep"), changed.clone(), spec("new")]);
    let mut signals = s.signals();
    signals.sort();
    assert_eq!(
        signals,
        [(gone.pid, Signal::SIGTERM), (change.pid, Signal::SIGTERM)]
    );
    assert!(reply.try_recv().is_err(), "not before the stops are done");
    s.exit(gone.pid, code(0));
    assert!(reply.try_recv().is_err(), "not before change is relaunched");
    s.exit(change.pid, code(0));
    let done = reply.try_recv().expect("answered").expect("ok");
    assert_eq!(names(&done.added), ["new"]);
    assert_eq!(names(&done.changed), ["change"]);
    assert_eq!(names(&done.removed), ["gone"]);
    assert_eq!(
        done.unchanged.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[0]]
    );
    let relaunched = s.proc(ids[2]);
    assert_ne!(relaunched, change, "relaunched");
    assert_eq!(s.proc(ids[0]), keep, "left alone");
    assert_eq!(
        s.actor.table.get(ids[2]).map(|svc| svc.spec.env.clone()),
        Some(changed.env.clone()),
        "runs the new spec"
    );
    assert_eq!(names(&s.list()), ["keep", "change", "extra", "new"]);
    assert_eq!(s.row(extra.id).state, State::Running);

    // The new spec's restart schedule applies from its next crash on.
    let mut slow = changed.clone();
    slow.restart_at = vec![7000];
    let mut reply = reload(&mut s, vec![spec("keep"), slow, spec("new")]);
    s.exit(relaunched.pid, code(0));
    reply.try_recv().expect("answered").expect("ok");
    s.exit(s.proc(ids[2]).pid, code(1));
    assert_eq!(s.row(ids[2]).restart_in_ms, Some(7000));
}

#[test]
fn rows_carry_the_groups_memory_and_cpu_since_the_previous_sample() {
    let mut s = Sup::new();
    let web = s.start(spec("web"));
    let p = s.proc(web.id);
    let usage = |cpu_ms: u64| GroupUsage {
        cpu: Duration::from_millis(cpu_ms),
        rss: 5 << 20,
        pids: vec![p.pid.as_raw(), p.pid.as_raw() + 1],
    };
    s.fx().usage.insert(p.pid, usage(0));
    s.advance(Duration::from_secs(1));
    s.fx().usage.insert(p.pid, usage(250));
    let r = s.row(web.id);
    // 250 ms of CPU in the second since it started.
    assert_eq!((r.memory, r.cpu), (Some(5 << 20), Some(25.0)));
    // Within the minimum window the last figure stands; after it, the new window counts.
    s.advance(Duration::from_millis(100));
    s.fx().usage.insert(p.pid, usage(350));
    assert_eq!(s.row(web.id).cpu, Some(25.0));
    s.advance(Duration::from_millis(1900));
    s.fx().usage.insert(p.pid, usage(2250));
    assert_eq!(s.row(web.id).cpu, Some(100.0), "two seconds, two of CPU");
    let d = s
        .ask(|tx| Request::Describe(Services::Named("web".into()), tx))
        .try_recv()
        .expect("answered")
        .expect("ok");
    assert_eq!(d[0].pids, [p.pid.as_raw(), p.pid.as_raw() + 1]);
    assert_eq!(d[0].spec["script"], "web.js");
    // A stopped service has no figures, and describe lists how it ended.
    s.ask(|tx| Request::Stop(Services::All, tx));
    s.exit(p.pid, Exit::Signal(Signal::SIGTERM));
    let r = s.row(web.id);
    assert_eq!((r.memory, r.cpu), (None, None));
    let d = s
        .ask(|tx| Request::Describe(Services::Id(web.id), tx))
        .try_recv()
        .expect("answered")
        .expect("ok");
    assert_eq!(d[0].exits.len(), 1);
    assert_eq!(d[0].exits[0].signal.as_deref(), Some("SIGTERM"));
    assert!(d[0].exits[0].requested);
    assert_eq!(d[0].row.state, State::Stopped);
}
