use std::io::Write;
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Modifier;
use serde_json::json;

use super::model::{Action, App, HISTORY, History, Input, Link};
use super::tail::Tail;
use super::view::{bytes, coarse, columns, draw, percent, spark, uptime};
use crate::control::{Command, Row, Services};

/// A row as `ls` gives it (built from JSON, so that fields added later take their defaults).
fn row(id: u64, name: &str, state: &str, pid: Option<i32>) -> Row {
    serde_json::from_value(json!({
        "id": id, "name": name, "pid": pid, "state": state, "ready": false,
        "restarts": 2, "crashes": 0, "uptime_ms": 65_000, "memory": 13_000_000u64,
    }))
    .expect("a row")
}

fn key(c: KeyCode) -> Input {
    Input::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn app_with(rows: Vec<Row>) -> App {
    let mut app = App::new("test".into(), true);
    app.apply(Input::Rows(rows), Instant::now());
    app
}

/// The screen as text, one string per line.
fn screen(app: &App, w: u16, h: u16) -> (Vec<String>, Buffer) {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| draw(f, app)).expect("draw");
    let buf = t.backend().buffer().clone();
    let lines = (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol()).collect::<String>())
        .collect();
    (lines, buf)
}

#[test]
fn history_keeps_the_last_samples_in_order() {
    let mut h = History::default();
    for i in 0..(HISTORY + 10) {
        h.push(Some(i as f64));
    }
    assert_eq!(h.len(), HISTORY);
    let last: Vec<_> = h.last(3).collect();
    let n = (HISTORY + 10) as f64;
    assert_eq!(last, [Some(n - 3.0), Some(n - 2.0), Some(n - 1.0)]);
    h.push(None);
    assert_eq!(h.last(1).collect::<Vec<_>>(), [None]);
    assert_eq!(h.last(1000).count(), HISTORY);
}

#[test]
fn sparkline_scales_right_aligns_and_leaves_gaps() {
    assert_eq!(
        spark(&[Some(0.0), Some(5.0), Some(10.0)], 5, 0.0, 0.0),
        "  ▁▅█"
    );
    // Below the floor nothing fills: 1% of CPU is not a full bar.
    assert_eq!(spark(&[Some(1.0)], 1, 0.0, 10.0), "▂");
    assert_eq!(spark(&[Some(2.0), None, Some(2.0)], 3, 0.0, 0.0), "█ █");
    // Only the newest `width` samples.
    assert_eq!(
        spark(&[Some(100.0), Some(0.0), Some(0.0)], 2, 0.0, 0.0),
        "▁▁"
    );
    assert_eq!(spark(&[Some(0.0), Some(0.0)], 2, 0.0, 0.0), "▁▁");
    assert_eq!(spark(&[], 3, 0.0, 0.0), "   ");
}

#[test]
fn figures_are_short() {
    assert_eq!(uptime(999), "0s");
    assert_eq!(uptime(42_000), "42s");
    assert_eq!(uptime(65_000), "1m05s");
    assert_eq!(uptime(3 * 3_600_000 + 7 * 60_000), "3h07m");
    assert_eq!(uptime(2 * 86_400_000 + 3 * 3_600_000), "2d03h");
    assert_eq!(coarse(100), "1s");
    assert_eq!(coarse(59_000), "59s");
    assert_eq!(coarse(59_500), "1m");
    assert_eq!(coarse(181_000), "4m");
    assert_eq!(coarse(900_000), "15m");
    assert_eq!(bytes(812 * 1024), "812K");
    assert_eq!(bytes(13_000_000), "12.4M");
    assert_eq!(bytes(1300 * 1024 * 1024), "1.27G");
    assert_eq!(percent(None), "-");
    assert_eq!(percent(Some(3.21)), "3.2%");
    assert_eq!(percent(Some(150.4)), "150%");
}

#[test]
fn columns_fit_the_width_and_histories_come_with_room() {
    for (width, cpu) in [40u16, 60, 80, 100, 120, 200]
        .into_iter()
        .flat_map(|w| [(w, true), (w, false)])
    {
        let (c, hist) = columns(width, cpu);
        let min: u16 = c
            .iter()
            .map(|c| match c {
                ratatui::layout::Constraint::Length(n) | ratatui::layout::Constraint::Min(n) => *n,
                _ => 0,
            })
            .sum::<u16>()
            + c.len() as u16
            - 1;
        if width >= 80 {
            assert!(min <= width - 3, "{width} {cpu}: {min}");
            assert!(hist >= 4, "{width} {cpu}: histories shown");
        }
    }
    assert_eq!(columns(60, true).1, 0, "no room for histories");
    assert!(columns(120, true).1 > columns(80, true).1);
    assert!(
        columns(80, false).1 > columns(80, true).1,
        "memory takes CPU's room"
    );
    assert_eq!(columns(120, false).0.len(), 9);
    assert_eq!(columns(120, true).0.len(), 10);
}

#[test]
fn selection_follows_the_service_and_moves_within_the_table() {
    let mut app = app_with(vec![
        row(0, "api", "running", Some(10)),
        row(1, "web", "running", Some(11)),
        row(2, "db", "stopped", None),
    ]);
    assert_eq!(app.selected, Some(0));
    app.apply(key(KeyCode::Char('k')), Instant::now());
    assert_eq!(app.selected, Some(0), "stays at the top");
    app.apply(key(KeyCode::Down), Instant::now());
    app.apply(key(KeyCode::Char('j')), Instant::now());
    app.apply(key(KeyCode::Char('j')), Instant::now());
    assert_eq!(app.selected, Some(2), "stays at the bottom");
    app.apply(key(KeyCode::Up), Instant::now());
    assert_eq!(app.selected, Some(1));
    // The rows come in another order: the same service stays selected.
    app.apply(
        Input::Rows(vec![
            row(2, "db", "stopped", None),
            row(1, "web", "running", Some(11)),
            row(0, "api", "running", Some(10)),
        ]),
        Instant::now(),
    );
    assert_eq!(app.selected, Some(1));
    // It is gone: the one now at its place is selected, and its history is dropped.
    app.apply(
        Input::Rows(vec![
            row(0, "api", "running", Some(10)),
            row(2, "db", "stopped", None),
        ]),
        Instant::now(),
    );
    assert_eq!(app.selected, Some(2));
    assert!(!app.trends.contains_key(&1));
}

#[test]
fn keys_ask_for_actions_on_the_selected_service_by_id() {
    let mut app = app_with(vec![
        row(4, "web", "running", Some(11)),
        row(7, "web", "stopped", None),
    ]);
    let now = Instant::now();
    assert!(matches!(
        app.apply(key(KeyCode::Char('r')), now),
        Action::Request(Command::Restart(Services::Id(4)), _)
    ));
    assert!(matches!(
        app.apply(key(KeyCode::Char('s')), now),
        Action::Request(Command::Stop(Services::Id(4)), _)
    ));
    // Start: only a service without a process.
    assert_eq!(app.apply(key(KeyCode::Char('S')), now), Action::Nothing);
    assert!(
        app.status
            .as_deref()
            .unwrap_or("")
            .contains("already running")
    );
    app.apply(key(KeyCode::Down), now);
    assert!(matches!(
        app.apply(key(KeyCode::Enter), now),
        Action::Request(Command::Restart(Services::Id(7)), _)
    ));
    app.apply(key(KeyCode::Char('?')), now);
    assert!(app.help);
    assert_eq!(app.apply(key(KeyCode::Esc), now), Action::Nothing);
    assert!(!app.help, "Esc closes the help first");
    assert_eq!(app.apply(key(KeyCode::Esc), now), Action::Quit);
    assert_eq!(app.apply(key(KeyCode::Char('q')), now), Action::Quit);
    let ctrl_c = Input::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert_eq!(app.apply(ctrl_c, now), Action::Quit);
    assert_eq!(app.apply(key(KeyCode::Char('c')), now), Action::Nothing);
}

#[test]
fn histories_take_one_sample_a_second() {
    let t0 = Instant::now();
    let mut app = App::new("test".into(), false);
    let rows = || vec![row(0, "api", "running", Some(10))];
    app.apply(Input::Rows(rows()), t0);
    // A refresh after an event, right after the poll: not a new sample.
    app.apply(Input::Rows(rows()), t0 + Duration::from_millis(100));
    app.apply(Input::Rows(rows()), t0 + Duration::from_millis(1000));
    let t = &app.trends[&0];
    assert_eq!(t.memory.len(), 2);
    assert_eq!(t.memory.last(1).next(), Some(Some(13_000_000.0)));
    // No CPU figure in the rows: not measured, never zero.
    assert_eq!(t.cpu.last(2).collect::<Vec<_>>(), [None, None]);
}

#[test]
fn the_screen_shows_every_service_and_the_selected_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("api.log");
    std::fs::write(
        &log,
        "2026-11-26T12:21:02.123Z api out | listening on 3000\n\
         2026-11-26T12:21:03.000Z other out | not api's\n\
         2026-11-26T12:21:04.000Z api err | a warning\n",
    )
    .expect("write log");
    let mut api = row(0, "api", "running", Some(4242));
    api.log = Some(log.clone());
    api.ready = true;
    let mut app = app_with(vec![
        api,
        row(1, "worker", "waiting", None),
        row(2, "db", "failed", None),
    ]);
    let mut tail = Tail::new(&log, Some("api".into()), 100);
    tail.poll();
    app.tail = Some(tail);
    let (lines, buf) = screen(&app, 120, 30);
    let text = lines.join("\n");
    for want in [
        "api",
        "worker",
        "db",
        "ready",
        "waiting",
        "failed",
        "4242",
        "1m05s",
        "12.4M",
        "12:21:02 out  listening on 3000",
        "12:21:04 err  a warning",
    ] {
        assert!(text.contains(want), "{want:?} not on the screen:\n{text}");
    }
    assert!(!text.contains("not api's"), "another label's line:\n{text}");
    // The selected row (api) is marked and drawn reversed.
    let y = lines
        .iter()
        .position(|l| l.contains("4242"))
        .expect("api's row");
    assert!(lines[y].starts_with("│▶0 "), "{}", lines[y]);
    assert!(!text.contains("▶1"), "one mark:\n{text}");
    let at = lines[y].find("4242").expect("pid");
    let x = lines[y][..at].chars().count() as u16;
    assert!(buf[(x, y as u16)].modifier.contains(Modifier::REVERSED));
    // Every line fits the width: the layout never writes past the edge.
    assert!(lines.iter().all(|l| l.chars().count() == 120));

    assert!(
        text.contains(&format!(" api · {} ", log.display())),
        "{text}"
    );
    app.cwd = Some(dir.path().to_path_buf());
    let (lines, _) = screen(&app, 120, 30);
    assert!(
        lines.join("\n").contains(" api · api.log "),
        "relative to the working folder"
    );

    // Once rows carry CPU figures, the column shows the newest and its history.
    let trend = app.trends.get_mut(&0).expect("api's trend");
    for v in [0.0, 25.0, 50.0] {
        trend.cpu.push(Some(v));
    }
    let (lines, _) = screen(&app, 120, 30);
    let api = lines
        .iter()
        .find(|l| l.contains("4242"))
        .expect("api's row");
    assert!(api.contains("50.0%"), "{api}");
    assert!(api.contains("▁▅█"), "{api}");

    // Small terminals still draw, and the help and a lost supervisor show.
    app.help = true;
    app.link = Link::Down("the supervisor closed the connection".into());
    let (lines, _) = screen(&app, 60, 20);
    let text = lines.join("\n");
    assert!(text.contains("supervisor unreachable"), "{text}");
    assert!(text.contains(" keys "), "{text}");
    let _ = screen(&app, 10, 3);
}

#[test]
fn the_screen_shows_waiting_for_dependencies_guard_restarts_and_the_selected_guards() {
    let mut api = row(0, "api", "running", Some(4242));
    for (k, v) in [
        ("watchdog_ms", json!(1000)),
        ("max_memory", json!(500u64 << 20)),
        ("hangs", json!(2)),
        ("memory_restarts", json!(1)),
        ("depends_on", json!(["db"])),
        ("watch", json!(true)),
        (
            "last_guard",
            json!({"why": "hung", "time": "2026-11-30T09:12:03.456Z",
                   "detail": "no heartbeat for 1040 ms"}),
        ),
    ] {
        let mut v0 = serde_json::to_value(&api).expect("row json");
        v0[k] = v;
        api = serde_json::from_value(v0).expect("a row");
    }
    let mut web = row(1, "web", "starting", None);
    web.depends_on = vec!["api".into(), "db".into()];
    web.waiting_for = vec!["db".into()];
    let app = app_with(vec![api, web, row(2, "db", "stopped", None)]);
    let (lines, buf) = screen(&app, 120, 30);
    let text = lines.join("\n");
    let api_row = lines
        .iter()
        .find(|l| l.contains("4242"))
        .expect("api's row");
    assert!(api_row.contains("2 h2 m1"), "{api_row}");
    let web_row = lines
        .iter()
        .find(|l| l.contains("│ 1 "))
        .expect("web's row");
    assert!(web_row.contains("after db"), "{web_row}");
    // The selected service's guards, at the foot of its pane.
    let foot = lines
        .iter()
        .position(|l| l.contains("watchdog 1s (2 hung)"))
        .unwrap_or_else(|| panic!("no guards line:\n{text}"));
    for want in [
        "maxMemory 500.0M (1 over)",
        "after db",
        "watch",
        "last: hung 09:12:03, no heartbeat for 1040 ms",
    ] {
        assert!(lines[foot].contains(want), "{want:?}: {}", lines[foot]);
    }
    assert_eq!(foot, 28, "on the pane's bottom border, above the keys");
    let x = lines[foot].find("watchdog").expect("guards");
    let x = lines[foot][..x].chars().count() as u16;
    assert_eq!(buf[(x, foot as u16)].fg, ratatui::style::Color::Yellow);
    // Counts only once there are some.
    let mut quiet = app.rows[0].clone();
    (quiet.hangs, quiet.memory_restarts, quiet.last_guard) = (0, 0, None);
    let quiet = app_with(vec![quiet]);
    let (lines, _) = screen(&quiet, 120, 30);
    let foot = lines
        .iter()
        .find(|l| l.contains("watchdog"))
        .expect("guards");
    assert!(
        foot.contains("watchdog 1s · maxMemory 500.0M · after db · watch "),
        "{foot}"
    );
    // A service without guards has no such line.
    let plain = app_with(vec![row(0, "plain", "running", Some(7))]);
    let (lines, _) = screen(&plain, 120, 30);
    assert!(!lines.join("\n").contains("watchdog"));
}

#[test]
fn a_console_service_gets_a_note_until_its_lines_come() {
    let mut app = app_with(vec![row(3, "con", "running", Some(9))]);
    let (lines, _) = screen(&app, 100, 20);
    assert!(lines.join("\n").contains("con has no \"log\" file"));
    app.apply(
        Input::ConsoleLines(3, vec!["2026-11-26T12:21:02.123Z con out | hello".into()]),
        Instant::now(),
    );
    let (lines, _) = screen(&app, 100, 20);
    let text = lines.join("\n");
    assert!(text.contains("12:21:02 out  hello"), "{text}");
    assert!(!text.contains("has no \"log\" file"), "{text}");
}

fn append(path: &std::path::Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(text.as_bytes()).expect("append");
}

fn lines_of(t: &Tail) -> Vec<String> {
    t.lines().iter().cloned().collect()
}

#[test]
fn tail_reads_only_the_end_then_follows_growth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("big.log");
    // 1 MB of old lines: only the end is read.
    let old: String = (0..20_000)
        .map(|i| format!("old line {i:06} ........................\n"))
        .collect();
    std::fs::write(&p, &old).expect("write");
    let mut t = Tail::new(&p, None, 10);
    t.poll();
    assert_eq!(t.lines().len(), 10, "bounded");
    assert_eq!(
        t.lines().back().map(String::as_str),
        Some("old line 019999 ........................")
    );
    append(&p, "new 1\nnew 2 starts");
    t.poll();
    assert_eq!(t.lines().back().map(String::as_str), Some("new 1"));
    append(&p, " and ends\n");
    t.poll();
    assert_eq!(
        t.lines().back().map(String::as_str),
        Some("new 2 starts and ends")
    );
}

#[test]
fn tail_starts_on_a_whole_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("a.log");
    // One line longer than the backlog read back, then two short ones.
    std::fs::write(&p, format!("{}\nb\nc\n", "x".repeat(100_000))).expect("write");
    let mut t = Tail::new(&p, None, 10);
    t.poll();
    assert_eq!(lines_of(&t), ["b", "c"]);
}

#[test]
fn tail_follows_rotation_and_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("app.log");
    append(&p, "one\n");
    let mut t = Tail::new(&p, None, 100);
    t.poll();
    // The writer adds a line, then rotates: the line before the rotation is not lost.
    append(&p, "two\n");
    std::fs::rename(&p, dir.path().join("app.log.1")).expect("rotate");
    t.poll(); // the new file is not there yet
    append(&p, "three\n");
    t.poll();
    assert_eq!(lines_of(&t), ["one", "two", "three"]);
    // Truncated in place: read again from its start.
    std::fs::write(&p, "four\n").expect("truncate");
    t.poll();
    assert_eq!(lines_of(&t), ["one", "two", "three", "four"]);
    assert!(t.error().is_none());
}

#[test]
fn tail_keeps_its_service_lines_and_cleans_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("shared.log");
    append(
        &p,
        "2026-11-26T12:21:02.123Z web out | a\x1b[2Jb\n\
         2026-11-26T12:21:02.124Z web api out | not web\n\
         2026-11-26T12:21:02.125Z web pm | exited\n",
    );
    let mut t = Tail::new(&p, Some("web".into()), 100);
    t.poll();
    assert_eq!(
        lines_of(&t),
        [
            "2026-11-26T12:21:02.123Z web out | a\u{fffd}[2Jb",
            "2026-11-26T12:21:02.125Z web pm | exited"
        ]
    );
    let mut missing = Tail::new(&dir.path().join("none.log"), None, 10);
    missing.poll();
    assert!(missing.error().is_some_and(|e| e.contains("none.log")));
}
