//! The client commands: `ls`, `stop`, `restart`, `stopall`, `send` (`logs` is in `logs.rs`).

use std::io::Read;
use std::path::PathBuf;

use serde_json::Value;

use super::client::{CliError, Client, Target, err, rows};
use crate::control::{Answer, Command, SendData, Services};
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
