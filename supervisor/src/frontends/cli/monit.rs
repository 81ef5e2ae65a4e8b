//! `pm-supervisor monit` (or `top`): the live view. Every service's state, pid, uptime,
//! restarts, CPU and memory with their recent history, the selected service's log tail, and
//! keys to restart, stop and start it.
//!
//! The terminal is in raw mode on the alternate screen while the view runs, and is given back
//! as it was on every way out: `q`, a panic, SIGTERM, SIGHUP, SIGINT or SIGQUIT. ratatui draws
//! only the cells that changed, so redraws do not flicker.

mod feed;
mod model;
mod tail;
mod view;

use std::io::{IsTerminal, Stdout};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event as TermEvent};
use ratatui::crossterm::{cursor, execute, terminal};

use super::client::{CliError, Client, Target, err, rows};
use crate::control::Command;
use feed::Feed;
use model::{Action, App, Input};
use tail::Tail;

/// How long the loop waits for input before it looks at the log file and the signals again.
const TICK: Duration = Duration::from_millis(200);
/// Inputs waiting for the view at most.
const INPUTS: usize = 1024;
/// Log lines kept for the pane: more than a screen holds.
const TAIL_LINES: usize = 500;

/// `pm-supervisor monit`.
pub(super) fn monit(target: &Target) -> Result<(), CliError> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(err(
            "monit draws on a terminal: run it in one (ls --json is for programs)",
        ));
    }
    // A wrong --config or --instance is an error line, not a dashboard of nothing.
    let first = rows(Client::open(target)?.request(Command::List)?)?;
    let signal = Arc::new(AtomicUsize::new(0));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGQUIT,
    ] {
        signal_hook::flag::register_usize(sig, signal.clone(), sig as usize)
            .map_err(|e| err(format!("cannot handle signal {sig}: {e}")))?;
    }
    // Bounded: a flood of events holds the event thread back (the supervisor then drops
    // events for this connection, its own bound) instead of growing this queue.
    let (tx, rx) = mpsc::sync_channel(INPUTS);
    let feed = Feed::start(target, &tx).map_err(|e| err(format!("cannot start a thread: {e}")))?;
    let colour = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut app = App::new(title(target), colour);
    app.cwd = std::env::current_dir().ok();
    app.apply(Input::Rows(first), Instant::now());

    let mut term = Screen::enter().map_err(|e| err(format!("cannot use the terminal: {e}")))?;
    read_terminal(tx)?;
    let outcome = run(&mut term.terminal, &mut app, &feed, &rx, &signal);
    drop(term);
    match outcome {
        Ok(None) => Ok(()),
        // Ended by a signal: exit as if it had killed us, now that the terminal is clean.
        Ok(Some(sig)) => std::process::exit(128 + sig as i32),
        Err(e) => Err(err(format!("drawing failed: {e}"))),
    }
}

/// The view's loop; Some(signal) when a signal ended it.
fn run(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    feed: &Feed,
    rx: &mpsc::Receiver<Input>,
    signal: &AtomicUsize,
) -> std::io::Result<Option<usize>> {
    let mut dirty = true;
    loop {
        match signal.load(Ordering::Relaxed) {
            0 => {}
            sig => return Ok(Some(sig)),
        }
        dirty |= follow_log(app);
        feed.selected.set(app.selected);
        // Drawn when something changed (at least the rows, once a second), not on every tick.
        if std::mem::take(&mut dirty) {
            terminal.draw(|f| view::draw(f, app))?;
        }
        let first = match rx.recv_timeout(TICK) {
            Ok(input) => input,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return Ok(None),
        };
        dirty = true;
        // Everything already waiting is taken before the next draw (bounded: a burst of events
        // is drawn at least every 100 inputs).
        for input in std::iter::once(first).chain(rx.try_iter().take(100)) {
            match app.apply(input, Instant::now()) {
                Action::Nothing => {}
                Action::Refresh => feed.refresh(),
                Action::Request(command, what) => {
                    if !feed.act(command, what) {
                        app.status = Some("busy: the previous action has not answered yet".into());
                    }
                }
                Action::Quit => return Ok(None),
            }
        }
    }
}

/// Points the log tail at the selected service's file and reads what is new; true when the
/// pane changed.
fn follow_log(app: &mut App) -> bool {
    let want = app.log_path().map(|p| {
        let label = app.current().and_then(|r| r.name.clone());
        (p.to_path_buf(), label)
    });
    let same = match (&app.tail, &want) {
        (Some(t), Some((p, label))) => t.path() == p && t.label() == label.as_deref(),
        (None, None) => true,
        _ => false,
    };
    if !same {
        app.tail = want.map(|(p, label)| Tail::new(&p, label, TAIL_LINES));
    }
    let Some(t) = &mut app.tail else {
        return !same;
    };
    let before = t.generation();
    t.poll();
    !same || t.generation() != before
}

/// Keys and resizes, from a thread of their own (reading blocks).
fn read_terminal(tx: SyncSender<Input>) -> Result<(), CliError> {
    std::thread::Builder::new()
        .name("monit-keys".into())
        .spawn(move || {
            while let Ok(e) = event::read() {
                let input = match e {
                    TermEvent::Key(k) => Input::Key(k),
                    TermEvent::Resize(..) => Input::Resize,
                    _ => continue,
                };
                if tx.send(input).is_err() {
                    return;
                }
            }
        })
        .map(drop)
        .map_err(|e| err(format!("cannot start a thread: {e}")))
}

/// What the title says the view watches.
fn title(target: &Target) -> String {
    match (&target.instance, &target.config) {
        (Some(name), _) => format!("instance {name}"),
        (None, Some(config)) => config.display().to_string(),
        (None, None) => std::env::var("PM_INSTANCE")
            .map(|n| format!("instance {n}"))
            .unwrap_or_else(|_| "the running supervisor".into()),
    }
}

/// The terminal in raw mode on the alternate screen; given back on drop and on panic.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    fn enter() -> std::io::Result<Screen> {
        terminal::enable_raw_mode()?;
        let set_up = execute!(
            std::io::stdout(),
            terminal::EnterAlternateScreen,
            cursor::Hide
        )
        .and_then(|()| Terminal::new(CrosstermBackend::new(std::io::stdout())));
        let terminal = match set_up {
            Ok(t) => t,
            Err(e) => {
                restore();
                return Err(e);
            }
        };
        // A panic restores the terminal before its message is printed, so that the message is
        // readable and the shell usable.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        Ok(Screen { terminal })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor (harmless when done twice).
fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
}

#[cfg(test)]
mod tests;
