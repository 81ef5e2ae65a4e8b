//! What the live view learns from the supervisor, on threads of their own so that the view
//! never waits on it: `ls` about once a second (and at once after an event or an action), the
//! event stream (state changes show without waiting for the next `ls`), and the actions the
//! keys ask for (a `stop` answers only once the processes are gone). Each thread owns its own
//! connection, and reconnects when the supervisor comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use super::super::client::{CliError, Client, Target, err, rows};
use super::model::{Input, display_name};
use crate::control::{Answer, Command, Logs, Message, Row, Services};
use crate::supervisor::ServiceId;

/// How often `ls` is asked when nothing happens.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Lines asked of a console service.
const CONSOLE_LINES: usize = 200;

/// A service's CPU use, in percent of one core, when the supervisor measures it.
pub(super) fn cpu_of(row: &Row) -> Option<f64> {
    row.cpu
}

/// The recent output lines of a console service (one without a `log` file), when the
/// supervisor keeps them: None when it does not.
fn console_lines(
    client: &mut Client,
    id: ServiceId,
    lines: usize,
) -> Option<Result<Vec<String>, CliError>> {
    let request = Command::Logs(Logs {
        of: Services::Id(id),
        lines: Some(lines),
    });
    Some(match client.request(request) {
        // As the log files write them: `time service stream | text`.
        Ok(Answer::Lines { lines }) => Ok(lines
            .into_iter()
            .map(|l| format!("{} {} {:<3} | {}", l.time, l.service, l.stream, l.text))
            .collect()),
        Ok(other) => Err(err(format!("bad reply: expected lines, got {other:?}"))),
        Err(e) => Err(e),
    })
}

/// What the log pane says for a console service while [`console_lines`] has none.
pub(super) fn console_lines_note(row: &Row) -> String {
    format!(
        "{} has no \"log\" file: its output goes to the supervisor's stdout",
        display_name(row)
    )
}

/// The selected service, for the poller (u64::MAX: none).
#[derive(Clone, Default)]
pub(super) struct Selected(Arc<AtomicU64>);

impl Selected {
    pub(super) fn set(&self, id: Option<ServiceId>) {
        self.0.store(id.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn get(&self) -> Option<ServiceId> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&id| id != u64::MAX)
    }
}

/// The threads' handles the view keeps.
pub(super) struct Feed {
    /// Wakes the poller for an `ls` now.
    refresh: SyncSender<()>,
    /// Requests for the action thread; one at a time.
    actions: SyncSender<(Command, String)>,
    pub(super) selected: Selected,
}

impl Feed {
    /// Starts the threads; what they learn arrives on `tx`.
    pub(super) fn start(target: &Target, tx: &SyncSender<Input>) -> std::io::Result<Feed> {
        let (refresh, refresh_rx) = std::sync::mpsc::sync_channel(1);
        let (actions, actions_rx) = std::sync::mpsc::sync_channel(1);
        let selected = Selected::default();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map(drop)
        };
        {
            let (target, tx, selected) = (target.clone(), tx.clone(), selected.clone());
            spawn(
                "monit-ls",
                Box::new(move || poll_rows(&target, &tx, &refresh_rx, &selected)),
            )?;
        }
        {
            let (target, tx) = (target.clone(), tx.clone());
            spawn(
                "monit-events",
                Box::new(move || follow_events(&target, &tx)),
            )?;
        }
        {
            let (target, tx) = (target.clone(), tx.clone());
            spawn(
                "monit-actions",
                Box::new(move || run_actions(&target, &tx, &actions_rx)),
            )?;
        }
        Ok(Feed {
            refresh,
            actions,
            selected,
        })
    }

    /// Asks for an `ls` now.
    pub(super) fn refresh(&self) {
        let _ = self.refresh.try_send(());
    }

    /// Hands a request to the action thread; false when it is still busy with one.
    pub(super) fn act(&self, command: Command, what: String) -> bool {
        !matches!(
            self.actions.try_send((command, what)),
            Err(TrySendError::Full(_))
        )
    }
}

/// `ls` once a second or when asked; the selected console service's lines with it.
fn poll_rows(target: &Target, tx: &SyncSender<Input>, wake: &Receiver<()>, selected: &Selected) {
    let mut client: Option<Client> = None;
    loop {
        let answer = match client.take() {
            Some(c) => Ok(c),
            None => Client::open(target),
        }
        .and_then(|mut c| {
            let rows = rows(c.request(Command::List)?)?;
            Ok((c, rows))
        });
        let input = match answer {
            Ok((mut c, rows)) => {
                let console = selected
                    .get()
                    .filter(|id| rows.iter().any(|r| r.id == *id && r.log.is_none()));
                if let Some(id) = console {
                    if let Some(Ok(lines)) = console_lines(&mut c, id, CONSOLE_LINES) {
                        let _ = tx.send(Input::ConsoleLines(id, lines));
                    }
                }
                client = Some(c);
                Input::Rows(rows)
            }
            Err(e) => Input::Down(e.to_string()),
        };
        if tx.send(input).is_err() {
            return; // the view is gone
        }
        match wake.recv_timeout(POLL_EVERY) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Subscribes and forwards every event; reconnects a second after the connection is lost.
fn follow_events(target: &Target, tx: &SyncSender<Input>) {
    loop {
        let subscribed = Client::open(target).and_then(|mut c| {
            c.request(Command::Subscribe)?;
            Ok(c)
        });
        if let Ok(mut c) = subscribed {
            while let Ok(message) = c.read() {
                if let Message::Event(e) = message {
                    if tx.send(Input::Event(e)).is_err() {
                        return;
                    }
                }
            }
        }
        std::thread::sleep(POLL_EVERY);
        // A closed view ends the thread at its next send; probe it so that a supervisor that
        // never comes back does not keep it alive either.
        if tx.send(Input::Resize).is_err() {
            return;
        }
    }
}

/// Carries out the keys' requests, one at a time, and says how each went.
fn run_actions(target: &Target, tx: &SyncSender<Input>, requests: &Receiver<(Command, String)>) {
    while let Ok((command, what)) = requests.recv() {
        let what = what.trim_end_matches('…').to_owned();
        let text = match Client::open(target).and_then(|mut c| c.request(command)) {
            Ok(Answer::Rows(rows)) => {
                let done: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        let pid = r.pid.map_or(String::new(), |p| format!(", pid {p}"));
                        format!(
                            "{} {}{pid}",
                            display_name(r),
                            super::model::state_word(r.state)
                        )
                    })
                    .collect();
                format!("{what}: done ({})", done.join("; "))
            }
            Ok(other) => format!("{what}: {other:?}"),
            Err(e) => format!("{what} failed: {e}"),
        };
        if tx.send(Input::Done(text)).is_err() {
            return;
        }
    }
}
