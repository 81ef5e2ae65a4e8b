//! The client commands: `ls`, `stop`, `restart`, `stopall`, `send`, `logs`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::client::{CliError, Client, Target, err, rows};
use crate::control::{Answer, Command, Row, SendData, Services};
use crate::logs::lines::label_of_line;
use crate::supervisor::State;

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
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header(["id", "name", "pid", "state", "restarts", "uptime", "memory"]);
    for r in &rows {
        let state = match (r.state, r.restart_in_ms) {
            (State::Waiting, Some(ms)) => format!("waiting ({} to restart)", human_ms(ms)),
            (State::Running, _) if r.ready => "running (ready)".to_owned(),
            (s, _) => state_name(s),
        };
        table.add_row([
            r.id.to_string(),
            r.name.clone().unwrap_or_else(|| "-".into()),
            r.pid.map_or("-".into(), |p| p.to_string()),
            state,
            r.restarts.to_string(),
            r.uptime_ms.map_or("-".into(), human_ms),
            r.memory.map_or("-".into(), human_bytes),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// A state as the protocol spells it (`running`).
fn state_name(s: State) -> String {
    match serde_json::to_value(s) {
        Ok(Value::String(name)) => name,
        _ => format!("{s:?}"),
    }
}

/// `stop NAME`, `restart NAME`, `stopall`: prints the rows acted on.
pub(super) fn act(target: &Target, command: Command) -> Result<(), CliError> {
    let rows = rows(Client::open(target)?.request(command)?)?;
    for r in rows {
        let name = r.name.as_deref().unwrap_or("(nameless)");
        let pid = r.pid.map_or(String::new(), |p| format!(" pid {p}"));
        println!("{name} #{}: {}{pid}", r.id, state_name(r.state));
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

/// `send NAME JSON`, `send NAME --file PATH`, `send NAME -` (stdin).
pub(super) fn send(target: &Target, name: &str, input: DataInput) -> Result<(), CliError> {
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
    let command = Command::Send(SendData {
        to: Services::Named(name.to_owned()),
        data,
    });
    match Client::open(target)?.request(command)? {
        Answer::Sent { sent } => println!("sent to {sent} process(es)"),
        other => return Err(err(format!("bad reply: expected a count, got {other:?}"))),
    }
    Ok(())
}

/// `logs NAME [-f] [-n N]`: the last lines of the service's log file (only its own lines when
/// several services share the file), then new ones as they come with `-f`.
pub(super) fn logs(
    target: &Target,
    name: &str,
    follow: bool,
    lines: usize,
) -> Result<(), CliError> {
    let rows: Vec<Row> = rows(Client::open(target)?.request(Command::List)?)?
        .into_iter()
        .filter(|r| r.name.as_deref() == Some(name))
        .collect();
    if rows.is_empty() {
        return Err(err(format!("no service named {name:?}")));
    }
    // Services sharing a name usually share a log file; the first one with a file is read.
    let Some(path) = rows.iter().find_map(|r| r.log.clone()) else {
        return Err(err(format!(
            "{name} has no \"log\" file: its output goes to the supervisor's stdout"
        )));
    };
    let is_mine = |l: &str| label_of_line(l) == Some(name);
    let text = std::fs::read(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().filter(|l| is_mine(l)).collect();
    let mut out = std::io::stdout().lock();
    for l in &all[all.len().saturating_sub(lines)..] {
        if writeln!(out, "{l}").is_err() {
            return Ok(()); // a closed pipe (| head) is not an error
        }
    }
    drop(out);
    if !follow {
        return Ok(());
    }
    let mut offset = text.len() as u64;
    let mut partial = String::new();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < offset {
            offset = 0; // rotated or truncated: start over on the new file
        }
        if len == offset || f.seek(SeekFrom::Start(offset)).is_err() {
            continue;
        }
        let mut chunk = Vec::new();
        if f.read_to_end(&mut chunk).is_err() {
            continue;
        }
        offset += chunk.len() as u64;
        partial.push_str(&String::from_utf8_lossy(&chunk));
        let mut out = std::io::stdout().lock();
        while let Some(i) = partial.find('\n') {
            let line: String = partial.drain(..=i).collect();
            if is_mine(&line) && out.write_all(line.as_bytes()).is_err() {
                return Ok(());
            }
        }
        let _ = out.flush();
    }
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
