//! Drawing the live view from an [`App`]: a title line, the services table (state, pid, uptime,
//! restarts, CPU and memory with their recent history), the selected service's log tail, and a
//! line of keys and news. Pure: it only reads the app, so tests draw it on a TestBackend.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Clear, HighlightSpacing, Paragraph, Row as TableRow, Table, TableState,
};

use super::model::{App, HISTORY, Link, Trend, display_name, state_word};
use super::tail::clean;
use crate::control::Row;
use crate::supervisor::State;

/// The bar heights of a sparkline, lowest first.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// CPU below this (percent) never fills a bar: an idle service does not look busy.
const CPU_FLOOR: f64 = 10.0;

/// The table's columns at a width, with or without a CPU history: their constraints and the
/// width of each history column (0: no room for histories).
pub(super) fn columns(width: u16, cpu_history: bool) -> (Vec<Constraint>, u16) {
    // id, state, pid, uptime, restarts, cpu, memory; the name takes what is left.
    const FIXED: [u16; 7] = [3, 11, 7, 7, 8, 6, 8];
    const NAME_MIN: u16 = 8;
    // The borders, and the selection mark's column.
    let inner = width.saturating_sub(3);
    let fixed: u16 = FIXED.iter().sum();
    let histories: u16 = if cpu_history { 2 } else { 1 };
    // Eight columns and the histories, a gap between each two.
    let spare = inner.saturating_sub(fixed + NAME_MIN + 7 + histories);
    let hist = (spare / histories).min(24);
    let hist = if hist >= 4 { hist } else { 0 };
    let mut c = vec![
        Constraint::Length(FIXED[0]),
        Constraint::Min(NAME_MIN),
        Constraint::Length(FIXED[1]),
        Constraint::Length(FIXED[2]),
        Constraint::Length(FIXED[3]),
        Constraint::Length(FIXED[4]),
        Constraint::Length(FIXED[5]),
    ];
    if hist > 0 && cpu_history {
        c.push(Constraint::Length(hist));
    }
    c.push(Constraint::Length(FIXED[6]));
    if hist > 0 {
        c.push(Constraint::Length(hist));
    }
    (c, hist)
}

/// A sparkline of `width` characters of the last samples, right-aligned (the newest at the
/// right); a sample not measured is a space. Bars are scaled between `lo` and the largest
/// sample (at least `floor`).
pub(super) fn spark(samples: &[Option<f64>], width: usize, lo: f64, floor: f64) -> String {
    let shown = &samples[samples.len().saturating_sub(width)..];
    let hi = shown.iter().flatten().fold(floor, |m, &v| m.max(v));
    let span = hi - lo;
    let mut out = " ".repeat(width - shown.len());
    for s in shown {
        out.push(match s {
            None => ' ',
            Some(v) if span <= 0.0 => {
                if *v > lo {
                    BARS[BARS.len() - 1]
                } else {
                    BARS[0]
                }
            }
            Some(v) => {
                let level = ((v - lo) / span * (BARS.len() - 1) as f64).round();
                BARS[level.clamp(0.0, (BARS.len() - 1) as f64) as usize]
            }
        });
    }
    out
}

/// The CPU history line of a service.
fn cpu_spark(t: &Trend, width: usize) -> String {
    let s: Vec<Option<f64>> = t.cpu.last(width).collect();
    spark(&s, width, 0.0, CPU_FLOOR)
}

/// The memory history line of a service: scaled from a little below its lowest value, so that
/// growth shows.
fn memory_spark(t: &Trend, width: usize) -> String {
    let s: Vec<Option<f64>> = t.memory.last(width).collect();
    let (lo, hi) = s
        .iter()
        .flatten()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let lo = if lo == f64::MAX {
        0.0
    } else {
        (lo - hi * 0.1).max(0.0)
    };
    spark(&s, width, lo, 0.0)
}

/// `42s`, `12m05s`, `3h07m`, `2d03h`.
pub(super) fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `42s`, `3m`, `5h`, `2d`: rounded up, for a delay to come.
pub(super) fn coarse(ms: u64) -> String {
    let s = ms.div_ceil(1000).max(1);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s.div_ceil(60)),
        3600..=86_399 => format!("{}h", s.div_ceil(3600)),
        _ => format!("{}d", s.div_ceil(86_400)),
    }
}

/// `812K`, `12.3M`, `1.21G` (powers of 1024).
pub(super) fn bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let b = b as f64;
    if b < K * K {
        format!("{:.0}K", b / K)
    } else if b < K * K * K {
        format!("{:.1}M", b / (K * K))
    } else {
        format!("{:.2}G", b / (K * K * K))
    }
}

/// `3.2%`, `150%`, `-` when not measured.
pub(super) fn percent(p: Option<f64>) -> String {
    match p {
        None => "-".into(),
        Some(p) if p >= 100.0 => format!("{p:.0}%"),
        Some(p) => format!("{p:.1}%"),
    }
}

/// The state column: `ready` (running and said so), `waiting 5s` (to restart), `after db`
/// (waiting for its dependencies).
pub(super) fn state_text(r: &Row) -> String {
    if !r.waiting_for.is_empty() && r.pid.is_none() {
        return format!("after {}", r.waiting_for.join(","));
    }
    match (r.state, r.restart_in_ms) {
        (State::Running, _) if r.ready => "ready".into(),
        (State::Waiting, Some(ms)) => format!("waiting {}", coarse(ms)),
        (s, _) => state_word(s).into(),
    }
}

/// The restarts column: `3`, with those for a hang and over `maxMemory`: `3 h1 m2`.
pub(super) fn restarts_text(r: &Row) -> String {
    let mut out = r.restarts.to_string();
    if r.hangs > 0 {
        out.push_str(&format!(" h{}", r.hangs));
    }
    if r.memory_restarts > 0 {
        out.push_str(&format!(" m{}", r.memory_restarts));
    }
    out
}

/// The selected service's guards in brief, for the foot of its pane (counts once there are
/// some): `watchdog 1s (2 hung) · maxMemory 500.0M (1 over) · after db · watch · last: hung
/// 09:12:03, no heartbeat for 1040 ms`. None without any.
pub(super) fn guards_text(r: &Row) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(ms) = r.watchdog_ms {
        parts.push(match r.hangs {
            0 => format!("watchdog {}", uptime(ms)),
            n => format!("watchdog {} ({n} hung)", uptime(ms)),
        });
    }
    if let Some(max) = r.max_memory {
        parts.push(match r.memory_restarts {
            0 => format!("maxMemory {}", bytes(max)),
            n => format!("maxMemory {} ({n} over)", bytes(max)),
        });
    }
    if !r.depends_on.is_empty() {
        parts.push(format!("after {}", r.depends_on.join(",")));
    }
    if r.watch {
        parts.push("watch".into());
    }
    if let Some(g) = &r.last_guard {
        // `2026-11-30T09:12:03.456Z`: the time of day is enough here.
        let time = g.time.get(11..19).unwrap_or(&g.time);
        parts.push(format!("last: {} {time}, {}", g.why, g.detail));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

fn state_colour(s: State) -> Color {
    match s {
        State::Running => Color::Green,
        State::Starting => Color::Cyan,
        State::Stopping | State::Waiting => Color::Yellow,
        State::Stopped => Color::DarkGray,
        State::Exited | State::Failed => Color::Red,
    }
}

/// A style that is plain without colours.
fn fg(app: &App, c: Color) -> Style {
    if app.colour {
        Style::new().fg(c)
    } else {
        Style::new()
    }
}

/// Draws the whole view.
pub(super) fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    // The table gets its rows (up to half the screen); the log pane the rest.
    let table_h = (app.rows.len() as u16 + 3).clamp(4, (area.height / 2).max(4));
    let [title, table, log, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(table_h),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_title(f, app, title);
    draw_table(f, app, table);
    draw_log(f, app, log);
    draw_keys(f, app, keys);
    if app.help {
        draw_help(f, area);
    }
}

fn draw_title(f: &mut Frame, app: &App, area: Rect) {
    let line = match &app.link {
        Link::Up => {
            let running = app
                .rows
                .iter()
                .filter(|r| matches!(r.state, State::Running | State::Starting))
                .count();
            Line::from(vec![
                Span::styled(" pm monit ", Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(format!(
                    "{} · {} services, {running} running",
                    app.title,
                    app.rows.len()
                )),
            ])
        }
        Link::Down(why) => Line::from(vec![
            Span::styled(" pm monit ", Style::new().add_modifier(Modifier::BOLD)),
            Span::styled(
                format!("supervisor unreachable, retrying: {}", clean(why)),
                fg(app, Color::Red).add_modifier(Modifier::BOLD),
            ),
        ]),
    };
    f.render_widget(Paragraph::new(line), area);
}

fn draw_table(f: &mut Frame, app: &App, area: Rect) {
    // Until the supervisor measures CPU, its history column would stay blank: memory's
    // history takes its room.
    let cpu_known = app
        .trends
        .values()
        .any(|t| t.cpu.last(HISTORY).any(|v| v.is_some()));
    let (widths, hist) = columns(area.width, cpu_known);
    let hist = hist as usize;
    let mut header = vec!["id", "name", "state", "pid", "uptime", "restarts", "cpu"];
    if hist > 0 && cpu_known {
        header.push("");
    }
    header.push("memory");
    if hist > 0 {
        header.push("");
    }
    let dim = app.link != Link::Up;
    let empty = Trend::default();
    let rows = app.rows.iter().map(|r| {
        let t = app.trends.get(&r.id).unwrap_or(&empty);
        let cpu = t.cpu.last(1).next().flatten();
        let mut cells: Vec<Span> = vec![
            Span::raw(r.id.to_string()),
            Span::raw(display_name(r)),
            Span::styled(state_text(r), fg(app, state_colour(r.state))),
            Span::raw(r.pid.map_or("-".into(), |p| p.to_string())),
            Span::raw(r.uptime_ms.map_or("-".into(), uptime)),
            Span::styled(
                restarts_text(r),
                if r.hangs > 0 || r.memory_restarts > 0 {
                    fg(app, Color::Red)
                } else if r.crashes > 0 {
                    fg(app, Color::Yellow)
                } else {
                    Style::new()
                },
            ),
            Span::raw(percent(cpu)),
        ];
        if hist > 0 && cpu_known {
            cells.push(Span::styled(cpu_spark(t, hist), fg(app, Color::Cyan)));
        }
        cells.push(Span::raw(r.memory.map_or("-".into(), bytes)));
        if hist > 0 {
            cells.push(Span::styled(memory_spark(t, hist), fg(app, Color::Magenta)));
        }
        let row = TableRow::new(cells);
        if dim {
            row.style(Style::new().add_modifier(Modifier::DIM))
        } else {
            row
        }
    });
    let table = Table::new(rows, widths)
        .header(TableRow::new(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(Block::bordered().title(" services "))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        // A mark as well as reverse video: the selection shows on any terminal, and in text.
        .highlight_symbol("▶")
        .highlight_spacing(HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(app.selected_index());
    f.render_stateful_widget(table, area, &mut state);
}

/// A log line for the pane: `12:21:02 err | text` from `2026-11-26T12:21:02.123Z web err | text`.
fn log_line<'a>(app: &App, line: &'a str, label: Option<&str>) -> Line<'a> {
    let parsed = line.split_once(" | ").and_then(|(head, text)| {
        let (time, rest) = head.split_once(' ')?;
        let (who, stream) = rest.trim_end().rsplit_once(' ')?;
        Some((time.get(11..19)?, who, stream, text))
    });
    let Some((time, who, stream, text)) = parsed else {
        return Line::raw(line);
    };
    let colour = match stream {
        "err" | "err+" => Color::Red,
        "pm" => Color::Yellow,
        _ => Color::Green,
    };
    let mut spans = vec![Span::styled(time, fg(app, Color::DarkGray)), Span::raw(" ")];
    if label.is_none() {
        spans.push(Span::raw(format!("{who} ")));
    }
    spans.push(Span::styled(format!("{stream:<4}"), fg(app, colour)));
    spans.push(Span::raw(" "));
    spans.push(Span::raw(text));
    Line::from(spans)
}

fn draw_log(f: &mut Frame, app: &App, area: Rect) {
    let Some(row) = app.current() else {
        let text = if app.rows.is_empty() {
            "no services"
        } else {
            ""
        };
        f.render_widget(Paragraph::new(text).block(Block::bordered()), area);
        return;
    };
    let name = display_name(row);
    let height = area.height.saturating_sub(2) as usize;
    let (title, lines): (String, Vec<Line>) = if let Some(note) = app.log_note() {
        (
            format!(" {name} · console "),
            vec![Line::styled(note, fg(app, Color::DarkGray))],
        )
    } else if let Some((_, lines)) = app.console.as_ref().filter(|(id, _)| *id == row.id) {
        let shown = &lines[lines.len().saturating_sub(height)..];
        (
            format!(" {name} · console "),
            shown
                .iter()
                .map(|l| log_line(app, l, Some(&name)))
                .collect(),
        )
    } else if let Some(tail) = &app.tail {
        let mut lines: Vec<Line> = tail
            .lines()
            .iter()
            .skip(tail.lines().len().saturating_sub(height))
            .map(|l| log_line(app, l, tail.label()))
            .collect();
        if let Some(e) = tail.error() {
            lines.push(Line::styled(clean(e), fg(app, Color::Red)));
        } else if lines.is_empty() {
            lines.push(Line::styled("(no lines yet)", fg(app, Color::DarkGray)));
        }
        let skip = lines.len().saturating_sub(height);
        (
            format!(" {name} · {} ", shown_path(app, tail.path()).display()),
            lines.into_iter().skip(skip).collect(),
        )
    } else {
        (format!(" {name} "), Vec::new())
    };
    let mut block = Block::bordered().title(clean(&title));
    if let Some(guards) = guards_text(row) {
        block = block.title_bottom(Line::styled(
            format!(" {} ", clean(&guards)),
            fg(app, Color::Yellow),
        ));
    }
    f.render_widget(Paragraph::new(lines).block(block), area);
}

/// A path as the title shows it: relative to the working folder when it is below it.
fn shown_path<'a>(app: &App, path: &'a std::path::Path) -> &'a std::path::Path {
    app.cwd
        .as_deref()
        .and_then(|cwd| path.strip_prefix(cwd).ok())
        .unwrap_or(path)
}

fn draw_keys(f: &mut Frame, app: &App, area: Rect) {
    let key = |k: &'static str| Span::styled(k, Style::new().add_modifier(Modifier::BOLD));
    let mut spans = vec![
        Span::raw(" "),
        key("↑↓"),
        Span::raw(" select  "),
        key("r"),
        Span::raw(" restart  "),
        key("s"),
        Span::raw(" stop  "),
        key("S"),
        Span::raw(" start  "),
        key("?"),
        Span::raw(" help  "),
        key("q"),
        Span::raw(" quit"),
    ];
    if let Some(status) = &app.status {
        // News first, and the keys that matter most: the line is cut at the right edge.
        spans = vec![
            Span::raw(" "),
            Span::styled(clean(status), fg(app, Color::Cyan)),
            Span::raw("  │ "),
            key("?"),
            Span::raw(" help  "),
            key("q"),
            Span::raw(" quit"),
        ];
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_help(f: &mut Frame, area: Rect) {
    const HELP: [&str; 14] = [
        "↑ ↓  j k   select a service",
        "g G        first, last",
        "r          restart it",
        "s          stop it",
        "S  Enter   start it (when it has no process)",
        "?          this help (Esc closes it)",
        "q  Esc  Ctrl-C   quit",
        "",
        "ready: running, and it said it is ready",
        "waiting: crashed, restarts after the delay",
        "after db: waits for db to be up (dependsOn)",
        "restarts 3 h1 m1: 1 of them hung, 1 over maxMemory",
        "cpu, memory: as `ls` shows them; their history",
        "  one sample a second, the newest at the right",
    ];
    let [popup] = Layout::horizontal([Constraint::Length(52)])
        .flex(Flex::Center)
        .areas(area);
    let [popup] = Layout::vertical([Constraint::Length(HELP.len() as u16 + 2)])
        .flex(Flex::Center)
        .areas(popup);
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(HELP.iter().map(|l| Line::raw(*l)).collect::<Vec<_>>())
            .block(Block::bordered().title(" keys ")),
        popup,
    );
}
