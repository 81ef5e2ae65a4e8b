//! What the live view shows and what its keys do: the rows of the last `ls`, a short history of
//! CPU and memory per service, the selection, the selected service's log tail, and the state of
//! the link to the supervisor. No terminal and no socket here: [`App::apply`] takes what the
//! feed and the keyboard bring, and answers with what to do.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::feed::{console_lines_note, cpu_of};
use super::tail::Tail;
use crate::control::{Command, Event, Row, Services};
use crate::supervisor::{EventKind, ServiceId, State};

/// Samples kept per service and measure: with `ls` once a second, the last two minutes.
pub(super) const HISTORY: usize = 120;

/// Two samples closer than this are one (a refresh after an event is not a new sample).
const SAMPLE_EVERY: Duration = Duration::from_millis(900);

/// The last [`HISTORY`] values of one measure, oldest first; `None`: not measured then.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct History {
    samples: VecDeque<Option<f64>>,
}

impl History {
    /// Adds a sample, dropping the oldest beyond [`HISTORY`].
    pub(super) fn push(&mut self, v: Option<f64>) {
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back(v);
    }

    /// The last `n` samples (fewer while there are fewer), oldest first.
    pub(super) fn last(&self, n: usize) -> impl Iterator<Item = Option<f64>> + '_ {
        self.samples
            .iter()
            .skip(self.samples.len().saturating_sub(n))
            .copied()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.samples.len()
    }
}

/// CPU (percent of one core) and memory (bytes) of one service over time.
#[derive(Debug, Clone, Default)]
pub(super) struct Trend {
    pub(super) cpu: History,
    pub(super) memory: History,
}

/// Whether the supervisor answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Link {
    /// It answered the last `ls`.
    Up,
    /// It did not: why (the rows shown are the last ones it gave).
    Down(String),
}

/// Input to the view: from the keyboard, the terminal and the feed.
#[derive(Debug)]
pub(super) enum Input {
    Key(KeyEvent),
    /// The terminal changed size (the next draw adapts).
    Resize,
    /// The answer to an `ls`.
    Rows(Vec<Row>),
    /// `ls` failed: the supervisor went away (or never answered).
    Down(String),
    /// An event of the supervisor.
    Event(Event),
    /// What an action answered, for the status line.
    Done(String),
    /// Recent lines of a console service (no `log` file).
    ConsoleLines(ServiceId, Vec<String>),
}

/// What the main loop does after an input.
#[derive(Debug, PartialEq)]
pub(super) enum Action {
    Nothing,
    /// Ask `ls` again now (something changed).
    Refresh,
    /// Send this request; the text says what is being done.
    Request(Command, String),
    Quit,
}

/// Everything the view shows.
pub(super) struct App {
    /// Which supervisor (its instance or config), for the title.
    pub(super) title: String,
    pub(super) rows: Vec<Row>,
    pub(super) trends: HashMap<ServiceId, Trend>,
    /// The selected service, by id so that it stays selected when rows come and go.
    pub(super) selected: Option<ServiceId>,
    pub(super) link: Link,
    /// The last thing that happened (an action's answer, an event), for the status line.
    pub(super) status: Option<String>,
    pub(super) help: bool,
    /// Colours (off with `NO_COLOR`).
    pub(super) colour: bool,
    /// The working folder: log paths below it are shown relative to it.
    pub(super) cwd: Option<std::path::PathBuf>,
    /// The selected service's log file, followed.
    pub(super) tail: Option<Tail>,
    /// The selected console service's recent lines, when the supervisor gives them.
    pub(super) console: Option<(ServiceId, Vec<String>)>,
    last_sample: Option<Instant>,
}

impl App {
    pub(super) fn new(title: String, colour: bool) -> App {
        App {
            title,
            rows: Vec::new(),
            trends: HashMap::new(),
            selected: None,
            link: Link::Up,
            status: None,
            help: false,
            colour,
            cwd: None,
            tail: None,
            console: None,
            last_sample: None,
        }
    }

    /// The selected row.
    pub(super) fn current(&self) -> Option<&Row> {
        let id = self.selected?;
        self.rows.iter().find(|r| r.id == id)
    }

    /// Position of the selected row.
    pub(super) fn selected_index(&self) -> Option<usize> {
        let id = self.selected?;
        self.rows.iter().position(|r| r.id == id)
    }

    /// Takes one input (`now`: when it arrived, for the history's pace).
    pub(super) fn apply(&mut self, input: Input, now: Instant) -> Action {
        match input {
            Input::Key(key) => self.key(key),
            Input::Resize => Action::Nothing,
            Input::Rows(rows) => {
                self.rows(rows, now);
                Action::Nothing
            }
            Input::Down(why) => {
                self.link = Link::Down(why);
                Action::Nothing
            }
            Input::Event(Event::Service(e)) => {
                let who = e.name.clone().unwrap_or_else(|| format!("#{}", e.id));
                let time = crate::logs::lines::timestamp(e.time);
                let time = time.get(11..19).unwrap_or(&time);
                self.status = Some(format!("{time} {who} {}", describe_event(&e.kind)));
                Action::Refresh
            }
            Input::Event(Event::Lagged(_)) => Action::Refresh,
            Input::Done(text) => {
                self.status = Some(text);
                Action::Refresh
            }
            Input::ConsoleLines(id, lines) => {
                self.console = Some((id, lines));
                Action::Nothing
            }
        }
    }

    fn rows(&mut self, mut rows: Vec<Row>, now: Instant) {
        rows.sort_by_key(|r| r.id);
        self.link = Link::Up;
        let sample = self
            .last_sample
            .is_none_or(|t| now.saturating_duration_since(t) >= SAMPLE_EVERY);
        if sample {
            self.last_sample = Some(now);
            for r in &rows {
                let t = self.trends.entry(r.id).or_default();
                t.cpu.push(cpu_of(r));
                t.memory.push(r.memory.map(|m| m as f64));
            }
        }
        // Forgotten services take their history with them: memory stays bounded.
        self.trends.retain(|id, _| rows.iter().any(|r| r.id == *id));
        // Keep the selection; when its service is gone, select the one at its place.
        let old = self.selected_index();
        self.rows = rows;
        if self.current().is_none() {
            let i = old.unwrap_or(0).min(self.rows.len().saturating_sub(1));
            self.selected = self.rows.get(i).map(|r| r.id);
        }
    }

    fn key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::Nothing;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => Action::Quit,
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Esc if self.help => {
                self.help = false;
                Action::Nothing
            }
            KeyCode::Esc => Action::Quit,
            KeyCode::Char('?') | KeyCode::F(1) => {
                self.help = !self.help;
                Action::Nothing
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.step(-1);
                Action::Nothing
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.step(1);
                Action::Nothing
            }
            KeyCode::Home | KeyCode::Char('g') => {
                self.selected = self.rows.first().map(|r| r.id);
                Action::Nothing
            }
            KeyCode::End | KeyCode::Char('G') => {
                self.selected = self.rows.last().map(|r| r.id);
                Action::Nothing
            }
            KeyCode::Char('r') => self.act("restarting", Command::Restart),
            KeyCode::Char('s') => self.act("stopping", Command::Stop),
            KeyCode::Char('S') | KeyCode::Enter => {
                let Some(row) = self.current() else {
                    return Action::Nothing;
                };
                if matches!(
                    row.state,
                    State::Running | State::Starting | State::Stopping
                ) {
                    self.status = Some(format!(
                        "{} is already {}: r restarts it",
                        display_name(row),
                        state_word(row.state)
                    ));
                    return Action::Nothing;
                }
                // A restart launches a service that has no process.
                self.act("starting", Command::Restart)
            }
            _ => Action::Nothing,
        }
    }

    /// Moves the selection by `by` rows, within the table.
    fn step(&mut self, by: isize) {
        if self.rows.is_empty() {
            return;
        }
        let i = self.selected_index().unwrap_or(0) as isize + by;
        let i = i.clamp(0, self.rows.len() as isize - 1) as usize;
        self.selected = Some(self.rows[i].id);
    }

    /// A request about the selected service (by id: names may repeat).
    fn act(&mut self, doing: &str, command: fn(Services) -> Command) -> Action {
        let Some((id, name)) = self.current().map(|r| (r.id, display_name(r))) else {
            return Action::Nothing;
        };
        let text = format!("{doing} {name}…");
        self.status = Some(text.clone());
        Action::Request(command(Services::Id(id)), text)
    }

    /// The log file the selected service writes, if any.
    pub(super) fn log_path(&self) -> Option<&std::path::Path> {
        self.current()?.log.as_deref()
    }

    /// What the log pane shows instead of lines for the selected service (a console service
    /// whose lines the supervisor does not give).
    pub(super) fn log_note(&self) -> Option<String> {
        let row = self.current()?;
        if row.log.is_some() {
            return None;
        }
        match &self.console {
            Some((id, _)) if *id == row.id => None,
            _ => Some(console_lines_note(row)),
        }
    }
}

/// A service's name, or `#id` for a nameless one.
pub(super) fn display_name(row: &Row) -> String {
    row.name.clone().unwrap_or_else(|| format!("#{}", row.id))
}

/// A state as the protocol spells it.
pub(super) fn state_word(s: State) -> &'static str {
    match s {
        State::Starting => "starting",
        State::Running => "running",
        State::Stopping => "stopping",
        State::Waiting => "waiting",
        State::Stopped => "stopped",
        State::Exited => "exited",
        State::Failed => "failed",
    }
}

/// Bytes as MiB with one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// An event for the status line: `exited (signal SIGKILL)`.
fn describe_event(kind: &EventKind) -> String {
    match kind {
        EventKind::Started { pid } => format!("started (pid {pid})"),
        EventKind::Ready { pid } => format!("ready (pid {pid})"),
        EventKind::Stopping { pid, reason } => {
            let reason = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            format!("stopping (pid {pid}, {reason})")
        }
        EventKind::Exited {
            pid,
            exit,
            requested,
            ..
        } => {
            let how = if *requested { "stopped" } else { "exited" };
            format!("{how} (pid {pid}, {exit})")
        }
        EventKind::LaunchFailed { error } => format!("could not launch: {error}"),
        EventKind::Restarting { in_ms, crashes } => {
            format!("restarts in {in_ms} ms (crash {crashes} in a row)")
        }
        EventKind::Message { pid, .. } => format!("sent a message (pid {pid})"),
        EventKind::Hung {
            pid, silence_ms, ..
        } => format!("hung: no heartbeat for {silence_ms} ms (pid {pid}); restarting"),
        EventKind::Memory {
            pid,
            rss,
            max_memory,
            ..
        } => format!(
            "memory {} above maxMemory {} (pid {pid}); restarting",
            mib(*rss),
            mib(*max_memory)
        ),
    }
}
