//! The client commands: `ls`, `start`, `stop`, `restart`, `delete`, `describe`, `stopall`,
//! `send`, `reload`, `events` (`describe` and `events` in `commands/`, `logs` in `logs.rs`).

use std::io::Read;
use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::Value;

use super::client::{CliError, Client, Target, err, rows};
use crate::config::{EnvValue, RawService};
use crate::control::{Answer, Command, Row, SendData, Services, Start, Wait};
use crate::supervisor::State;

mod describe;
mod events;
pub(super) use describe::describe;
pub(super) use events::events;

/// `pm-supervisor ls`.
pub(super) fn ls(target: &Target, as_json: bool) -> Result<(), CliError> {
    let rows = rows(Client::open(target)?.request(Command::List)?)?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return Ok(());
    }
    let colour = use_colour();
    let mut table = vec![
        [
            "id", "name", "pid", "state", "restarts", "uptime", "cpu", "memory",
        ]
        .map(Cell::plain),
    ];
    for r in &rows {
        table.push([
            Cell::plain(r.id.to_string()),
            Cell::plain(r.name.clone().unwrap_or_else(|| "-".into())),
            Cell::plain(r.pid.map_or("-".into(), |p| p.to_string())),
            Cell {
                text: state_text(r),
                colour: colour.then(|| state_colour(r.state)),
            },
            Cell::plain(restarts_text(r)),
            Cell::plain(r.uptime_ms.map_or("-".into(), human_ms)),
            Cell::plain(r.cpu.map_or("-".into(), |c| format!("{c:.1}%"))),
            Cell::plain(r.memory.map_or("-".into(), human_bytes)),
        ]);
    }
    print!("{}", render(&table));
    Ok(())
}

/// A state as `ls` shows it: `running (ready)`, `waiting (2s to restart)`, `waiting for db`.
fn state_text(r: &Row) -> String {
    if !r.waiting_for.is_empty() && r.pid.is_none() {
        return format!("waiting for {}", r.waiting_for.join(", "));
    }
    match (r.state, r.restart_in_ms) {
        (State::Waiting, Some(ms)) => format!("waiting ({} to restart)", human_ms(ms)),
        (State::Running, _) if r.ready => "running (ready)".to_owned(),
        (s, _) => state_name(s),
    }
}

/// Restarts as `ls` shows them, with those the supervisor decided on its own: `3 (1 hung,
/// 1 memory)`.
fn restarts_text(r: &Row) -> String {
    let guards = guard_counts(r);
    match guards.is_empty() {
        true => r.restarts.to_string(),
        false => format!("{} ({guards})", r.restarts),
    }
}

/// `1 hung, 2 memory`: the restarts for a hang and for memory; empty when none.
fn guard_counts(r: &Row) -> String {
    let mut out = Vec::new();
    if r.hangs > 0 {
        out.push(format!("{} hung", r.hangs));
    }
    if r.memory_restarts > 0 {
        out.push(format!("{} memory", r.memory_restarts));
    }
    out.join(", ")
}

/// Colours only for a terminal, and never when NO_COLOR is set to anything non-empty
/// (https://no-color.org).
fn use_colour() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stdout().is_terminal()
}

/// The SGR colour of a state: green running, yellow on its way, red crashed or failed, dim
/// stopped.
fn state_colour(s: State) -> &'static str {
    match s {
        State::Running => "32",
        State::Starting | State::Stopping | State::Waiting => "33",
        State::Exited | State::Failed => "31",
        State::Stopped => "2",
    }
}

/// A table cell: its text, and an SGR colour drawn around it (not counted in its width).
struct Cell {
    text: String,
    colour: Option<&'static str>,
}

impl Cell {
    fn plain(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            colour: None,
        }
    }
}

/// Left-aligned columns two spaces apart, the width of each its widest text.
fn render<const N: usize>(table: &[[Cell; N]]) -> String {
    let mut widths = [0; N];
    for row in table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.text.chars().count());
        }
    }
    let mut out = String::new();
    for row in table {
        let mut line = String::new();
        for (i, (w, c)) in widths.iter().zip(row).enumerate() {
            let pad = w - c.text.chars().count();
            match c.colour {
                Some(sgr) => line.push_str(&format!("\x1b[{sgr}m{}\x1b[0m", c.text)),
                None => line.push_str(&c.text),
            }
            if i + 1 < N {
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A state as the protocol spells it (`running`).
fn state_name(s: State) -> String {
    match serde_json::to_value(s) {
        Ok(Value::String(name)) => name,
        _ => format!("{s:?}"),
    }
}

/// `stop`, `restart`, `delete`, `stopall`: prints the rows acted on.
pub(super) fn act(target: &Target, command: Command) -> Result<(), CliError> {
    let deleting = matches!(command, Command::Delete(_));
    let rows = rows(Client::open(target)?.request(command)?)?;
    for r in rows {
        let name = r.name.as_deref().unwrap_or("(nameless)");
        if deleting {
            println!("{name} #{}: deleted", r.id);
            continue;
        }
        let pid = r.pid.map_or(String::new(), |p| format!(" pid {p}"));
        println!("{name} #{}: {}{pid}", r.id, state_name(r.state));
    }
    Ok(())
}

/// What `start` was given on the command line.
#[derive(Debug, Default, clap::Args)]
pub(super) struct StartArgs {
    /// The file to run (relative to --cwd, else to the current folder).
    #[arg(required_unless_present = "spec")]
    pub(super) script: Option<String>,
    /// Its name.
    #[arg(long)]
    pub(super) name: Option<String>,
    /// Its working folder (default: the current folder).
    #[arg(long)]
    pub(super) cwd: Option<String>,
    /// Its log file (default: the supervisor's stdout).
    #[arg(long)]
    pub(super) log: Option<String>,
    /// An environment variable for it (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub(super) env: Vec<String>,
    /// The program that runs the script (default: chosen by its extension).
    #[arg(long)]
    pub(super) interpreter: Option<String>,
    /// The whole spec as JSON (the fields of a config-file service), or `@FILE`; the other
    /// options override its fields.
    #[arg(long, value_name = "JSON|@FILE")]
    pub(super) spec: Option<String>,
    /// Answer once the service says it is ready, not once it is launched.
    #[arg(long)]
    pub(super) wait_ready: bool,
    /// Arguments for the script, after `--`.
    #[arg(last = true)]
    pub(super) args: Vec<String>,
}

impl StartArgs {
    /// The spec to send: `--spec` (JSON or `@FILE`), with the other options over it.
    fn spec(self) -> Result<RawService, CliError> {
        let mut spec = match &self.spec {
            None => RawService::default(),
            Some(text) => {
                let (text, from) = match text.strip_prefix('@') {
                    Some(path) => (
                        std::fs::read_to_string(path).map_err(|e| err(format!("{path}: {e}")))?,
                        path.to_owned(),
                    ),
                    None => (text.clone(), "--spec".to_owned()),
                };
                serde_json::from_str(&text)
                    .map_err(|e| err(format!("{from}: not a service spec: {e}")))?
            }
        };
        if let Some(s) = self.script {
            spec.script = s;
        }
        for (field, value) in [
            (&mut spec.name, self.name),
            (&mut spec.cwd, self.cwd),
            (&mut spec.log, self.log),
            (&mut spec.interpreter, self.interpreter),
        ] {
            if value.is_some() {
                *field = value;
            }
        }
        if !self.args.is_empty() {
            spec.args = self.args;
        }
        for kv in self.env {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(err(format!("--env {kv:?}: write it KEY=VALUE")));
            };
            spec.env
                .insert(k.to_owned(), EnvValue::String(v.to_owned()));
        }
        Ok(spec)
    }
}

/// `start SCRIPT [options] [-- ARGS]`: relative paths are taken from the current folder.
pub(super) fn start(target: &Target, args: StartArgs) -> Result<(), CliError> {
    let wait = args.wait_ready.then_some(Wait::Ready);
    let spec = args.spec()?;
    let base = std::env::current_dir().map_err(|e| err(format!("the current folder: {e}")))?;
    let command = Command::Start(Box::new(Start {
        spec,
        base: Some(base),
        wait,
        timeout_ms: None,
    }));
    match Client::open(target)?.request(command)? {
        Answer::Row(r) => {
            let name = r.name.as_deref().unwrap_or("(nameless)");
            let pid = r.pid.map_or(String::new(), |p| format!(" pid {p}"));
            println!("{name} #{}: {}{pid}", r.id, state_name(r.state));
            Ok(())
        }
        other => Err(err(format!("bad reply: expected a row, got {other:?}"))),
    }
}

fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `reload`: what changed.
pub(super) fn reload(target: &Target, as_json: bool) -> Result<(), CliError> {
    let done = match Client::open(target)?.request(Command::Reload)? {
        Answer::Reloaded(r) => r,
        other => {
            return Err(err(format!(
                "bad reply: expected a reload report, got {other:?}"
            )));
        }
    };
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&done).unwrap_or_default()
        );
        return Ok(());
    }
    let mut said = false;
    for (what, rows) in [
        ("added", &done.added),
        ("changed", &done.changed),
        ("removed", &done.removed),
    ] {
        for r in rows {
            said = true;
            let name = r.name.as_deref().unwrap_or("(nameless)");
            let pid = r.pid.map_or(String::new(), |p| format!(" pid {p}"));
            let state = if what == "removed" {
                "stopped and forgotten".to_owned()
            } else {
                format!("{}{pid}", state_name(r.state))
            };
            println!("{what:<8} {name} #{}: {state}", r.id);
        }
    }
    if !said {
        println!(
            "nothing changed ({} services as in the file)",
            done.unchanged.len()
        );
    } else if !done.unchanged.is_empty() {
        println!("unchanged: {}", done.unchanged.len());
    }
    Ok(())
}

/// Where `send` takes its data from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DataInput {
    /// The command-line argument itself (at most 128 KiB on Linux).
    Arg(String),
    /// A file (`--file PATH`).
    File(PathBuf),
    /// Standard input (`-`).
    Stdin,
}

/// `send SERVICE JSON`, `send SERVICE --file PATH`, `send SERVICE -` (stdin).
pub(super) fn send(target: &Target, to: Services, input: DataInput) -> Result<(), CliError> {
    // One byte more than a request line may hold is enough to know it is too long.
    let limit = pm_child::protocol::MAX_LINE_BYTES as u64 + 1;
    let (text, from) = match input {
        DataInput::Arg(s) => (s.into_bytes(), "the data".to_owned()),
        DataInput::File(path) => {
            let mut text = Vec::new();
            std::fs::File::open(&path)
                .and_then(|f| f.take(limit).read_to_end(&mut text))
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
            (text, path.display().to_string())
        }
        DataInput::Stdin => {
            let mut text = Vec::new();
            std::io::stdin()
                .take(limit)
                .read_to_end(&mut text)
                .map_err(|e| err(format!("reading stdin: {e}")))?;
            (text, "stdin".to_owned())
        }
    };
    if text.len() as u64 >= limit {
        return Err(err(format!(
            "{from}: more than {} bytes; a message must fit in one line of the control channel",
            pm_child::protocol::MAX_LINE_BYTES
        )));
    }
    let data: Value =
        serde_json::from_slice(&text).map_err(|e| err(format!("{from} is not JSON: {e}")))?;
    let command = Command::Send(SendData { to, data });
    match Client::open(target)?.request(command)? {
        Answer::Sent { sent } => println!("sent to {sent} process(es)"),
        other => return Err(err(format!("bad reply: expected a count, got {other:?}"))),
    }
    Ok(())
}

fn human_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{}s", ms / 1000),
        60_000..=3_599_999 => format!("{}m", ms / 60_000),
        3_600_000..=86_399_999 => format!("{}h", ms / 3_600_000),
        _ => format!("{}d", ms / 86_400_000),
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        0..=1023 => format!("{b}B"),
        1024..=1_048_575 => format!("{:.1}KB", b as f64 / 1024.0),
        _ => format!("{:.1}MB", b as f64 / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(fields: Value) -> Row {
        let mut r = json!({
            "id": 1, "name": "api", "pid": null, "state": "starting", "ready": false,
            "restarts": 3, "crashes": 0, "uptime_ms": null, "memory": null,
        });
        if let (Some(r), Some(f)) = (r.as_object_mut(), fields.as_object()) {
            r.extend(f.clone());
        }
        serde_json::from_value(r).expect("a row")
    }

    #[test]
    fn ls_says_what_a_service_waits_for_and_which_restarts_were_guards() {
        let waiting = row(json!({"depends_on": ["db", "cache"], "waiting_for": ["db", "cache"]}));
        assert_eq!(state_text(&waiting), "waiting for db, cache");
        assert_eq!(restarts_text(&waiting), "3");
        let guarded = row(json!({"pid": 7, "state": "running", "hangs": 1, "memory_restarts": 2}));
        assert_eq!(state_text(&guarded), "running");
        assert_eq!(restarts_text(&guarded), "3 (1 hung, 2 memory)");
    }
}
