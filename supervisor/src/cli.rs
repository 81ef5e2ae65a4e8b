//! The command-line client: talks to a running supervisor over its control socket.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use crate::runtime::{RuntimeDir, instance_for, peer_uid, runtime_dir};

/// Which supervisor to talk to.
#[derive(Debug, Default, Clone)]
pub struct Target {
    /// `--instance NAME`.
    pub instance: Option<String>,
    /// `--config FILE`: the instance `run FILE` uses.
    pub config: Option<PathBuf>,
}

/// A request failed; the message is for a person.
#[derive(Debug)]
pub struct CliError(String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(msg: impl Into<String>) -> CliError {
    CliError(msg.into())
}

/// The runtime folder and the chosen instance: `--instance`, else `--config` (every spelling of
/// a file names the same instance), else `$PM_INSTANCE`, else the only one running.
pub fn instance_of(target: &Target) -> Result<(RuntimeDir, String), CliError> {
    let dir = runtime_dir().map_err(|e| err(e.to_string()))?;
    let name = match (&target.instance, &target.config) {
        (Some(n), _) => Some(n.clone()),
        (None, Some(c)) => Some(instance_for(c).map_err(|e| err(format!("--config {e}")))?),
        (None, None) => std::env::var("PM_INSTANCE").ok(),
    };
    if let Some(name) = name {
        let sock = format!("{name}.sock");
        if !dir.contains(&sock) {
            return Err(err(format!(
                "no pm-supervisor runs instance {name:?} (no {})",
                dir.path().join(sock).display()
            )));
        }
        return Ok((dir, name));
    }
    let mut names = dir
        .names_ending(".sock")
        .map_err(|e| err(format!("{}: {e}", dir.path().display())))?;
    match names.len() {
        0 => Err(err(format!(
            "no running pm-supervisor found (no control socket in {})",
            dir.path().display()
        ))),
        1 => {
            let name = names.remove(0);
            Ok((dir, name))
        }
        _ => Err(err(format!(
            "several supervisors run ({}); choose one with --instance",
            names.join(", ")
        ))),
    }
}

/// One connection to a supervisor.
pub struct Client {
    stream: BufReader<UnixStream>,
    next_id: u64,
}

impl Client {
    /// Connects to the supervisor of `target`.
    pub fn open(target: &Target) -> Result<Client, CliError> {
        let (dir, name) = instance_of(target)?;
        let shown = dir.path().join(format!("{name}.sock"));
        let stream = dir.connect(&format!("{name}.sock")).map_err(|e| {
            err(format!(
                "cannot reach the supervisor at {}: {e}",
                shown.display()
            ))
        })?;
        Client::over(stream, &shown)
    }

    /// Talks over `stream`, a connection to the socket at `shown`, once its other end is known
    /// to be this user's (or root's).
    pub fn over(stream: UnixStream, shown: &Path) -> Result<Client, CliError> {
        let me = nix::unistd::geteuid().as_raw();
        match peer_uid(&stream) {
            Ok(uid) if uid == me || uid == 0 => {}
            Ok(uid) => {
                return Err(err(format!(
                    "{} is served by uid {uid}, not by you: refusing to talk to it",
                    shown.display()
                )));
            }
            Err(e) => return Err(err(format!("{}: {e}", shown.display()))),
        }
        Ok(Client {
            stream: BufReader::new(stream),
            next_id: 1,
        })
    }

    /// Sends a request (its `type` and fields) and returns the reply's result.
    pub fn request(&mut self, mut req: Value) -> Result<Value, CliError> {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(obj) = req.as_object_mut() {
            obj.insert("id".into(), id.into());
        }
        let mut line = serde_json::to_vec(&req).map_err(|e| err(e.to_string()))?;
        line.push(b'\n');
        self.stream
            .get_mut()
            .write_all(&line)
            .map_err(|e| err(format!("cannot send the request: {e}")))?;
        loop {
            let msg = self.read()?;
            if msg["type"] == "reply" && msg["id"] == id {
                if msg["ok"] == true {
                    return Ok(msg["result"].clone());
                }
                return Err(err(msg["error"]
                    .as_str()
                    .unwrap_or("request failed")
                    .to_owned()));
            }
        }
    }

    /// The next line from the supervisor.
    pub fn read(&mut self) -> Result<Value, CliError> {
        let mut line = String::new();
        match self.stream.read_line(&mut line) {
            Ok(0) => Err(err("the supervisor closed the connection")),
            Ok(_) => serde_json::from_str(&line).map_err(|e| err(format!("bad reply: {e}"))),
            Err(e) => Err(err(format!("reading the reply failed: {e}"))),
        }
    }
}

/// `pm-supervisor ls`.
pub fn ls(target: &Target, as_json: bool) -> Result<(), CliError> {
    let rows = Client::open(target)?.request(json!({"type": "list"}))?;
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
    for r in rows.as_array().into_iter().flatten() {
        let state = match (r["state"].as_str(), r["restart_in_ms"].as_u64()) {
            (Some("waiting"), Some(ms)) => format!("waiting ({} to restart)", human_ms(ms)),
            (Some("running"), _) if r["ready"] == true => "running (ready)".to_owned(),
            (Some(s), _) => s.to_owned(),
            (None, _) => "?".to_owned(),
        };
        table.add_row([
            r["id"].to_string(),
            r["name"].as_str().unwrap_or("-").to_owned(),
            r["pid"].as_i64().map_or("-".into(), |p| p.to_string()),
            state,
            r["restarts"].to_string(),
            r["uptime_ms"].as_u64().map_or("-".into(), human_ms),
            r["memory"].as_u64().map_or("-".into(), human_bytes),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// `stop NAME`, `restart NAME`, `stopall`: prints the rows acted on.
pub fn act(target: &Target, req: Value) -> Result<(), CliError> {
    let rows = Client::open(target)?.request(req)?;
    for r in rows.as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or("(nameless)");
        let pid = r["pid"]
            .as_i64()
            .map_or(String::new(), |p| format!(" pid {p}"));
        println!(
            "{name} #{}: {}{pid}",
            r["id"],
            r["state"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// Where `send` takes its data from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataInput {
    /// The command-line argument itself (at most 128 KiB on Linux).
    Arg(String),
    /// A file (`--file PATH`).
    File(PathBuf),
    /// Standard input (`-`).
    Stdin,
}

/// `send NAME JSON`, `send NAME --file PATH`, `send NAME -` (stdin).
pub fn send(target: &Target, name: &str, input: DataInput) -> Result<(), CliError> {
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
    let r = Client::open(target)?.request(json!({"type": "send", "name": name, "data": data}))?;
    println!("sent to {} process(es)", r["sent"]);
    Ok(())
}

/// `logs NAME [-f] [-n N]`: the last lines of the service's log file (only its own lines when
/// several services share the file), then new ones as they come with `-f`.
pub fn logs(target: &Target, name: &str, follow: bool, lines: usize) -> Result<(), CliError> {
    let rows = Client::open(target)?.request(json!({"type": "list"}))?;
    let rows: Vec<&Value> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == name)
        .collect();
    if rows.is_empty() {
        return Err(err(format!("no service named {name:?}")));
    }
    // Services sharing a name usually share a log file; the first one with a file is read.
    let Some(path) = rows
        .iter()
        .find_map(|r| r["log"].as_str())
        .map(PathBuf::from)
    else {
        return Err(err(format!(
            "{name} has no \"log\" file: its output goes to the supervisor's stdout"
        )));
    };
    let is_mine = |l: &str| line_service(l) == Some(name);
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

/// The service a log line belongs to: the label between its timestamp and its stream, in
/// `2026-11-26T12:21:02.123Z web api out | text` (names may hold spaces, never `|`).
fn line_service(line: &str) -> Option<&str> {
    let (head, _) = line.split_once(" | ")?;
    let (_, rest) = head.split_once(' ')?;
    let (label, stream) = rest.trim_end().rsplit_once(' ')?;
    matches!(stream, "out" | "err" | "out+" | "err+" | "pm").then_some(label)
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

/// Runs a client command and turns its error into one line and exit code 1.
pub fn exit_code(r: Result<(), CliError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pm-supervisor: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_belongs_to_exactly_one_service() {
        let l = |s| line_service(s);
        assert_eq!(l("2026-11-26T12:21:02.123Z api out | x"), Some("api"));
        assert_eq!(
            l("2026-11-26T12:21:02.123Z web api err+ | api out | y"),
            Some("web api")
        );
        assert_eq!(l("2026-11-26T12:21:02.123Z api pm  | started"), Some("api"));
        assert_eq!(
            l("2026-11-26T12:21:02.123Z 4242 out | nameless"),
            Some("4242")
        );
        assert_eq!(l("garbage"), None);
        assert_eq!(l("2026-11-26T12:21:02.123Z api bogus | x"), None);
    }
}
