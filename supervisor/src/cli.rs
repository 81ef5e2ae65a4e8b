//! The command-line client: talks to a running supervisor over its control socket.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::control::protocol::{
    Answer, Command, Failure, Message, Reply, Request, RequestId, Row, SendData, Services,
};
use crate::runtime::{RuntimeDir, check_instance_name, instance_for, peer_uid, runtime_dir};
use crate::supervisor::State;

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
        check_instance_name(&name).map_err(|e| err(format!("--instance {e}")))?;
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

    /// Sends a request and returns the reply's answer; an error reply is the error.
    pub fn request(&mut self, command: Command) -> Result<Answer, CliError> {
        let id = RequestId::from(self.next_id);
        self.next_id += 1;
        let line = Request {
            command,
            id: id.clone(),
        }
        .encode();
        self.stream
            .get_mut()
            .write_all(&line)
            .map_err(|e| err(format!("cannot send the request: {e}")))?;
        loop {
            match self.read()? {
                Message::Reply(Reply {
                    id: Some(got),
                    result,
                }) if got == id => {
                    return result.map_err(|f: Failure| err(f.message));
                }
                Message::Fatal(f) => return Err(err(f.error)),
                Message::Reply(_) | Message::Event(_) => {}
            }
        }
    }

    /// The next message from the supervisor.
    pub fn read(&mut self) -> Result<Message, CliError> {
        let mut line = Vec::new();
        match self.stream.read_until(b'\n', &mut line) {
            Ok(0) => Err(err("the supervisor closed the connection")),
            Ok(_) => Message::parse(&line).map_err(|e| err(format!("bad reply: {e}"))),
            Err(e) => Err(err(format!("reading the reply failed: {e}"))),
        }
    }
}

/// The rows of an answer that should be rows.
fn rows(answer: Answer) -> Result<Vec<Row>, CliError> {
    match answer {
        Answer::Rows(rows) => Ok(rows),
        other => Err(err(format!("bad reply: expected rows, got {other:?}"))),
    }
}

/// `pm-supervisor ls`.
pub fn ls(target: &Target, as_json: bool) -> Result<(), CliError> {
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
pub fn act(target: &Target, command: Command) -> Result<(), CliError> {
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
pub fn logs(target: &Target, name: &str, follow: bool, lines: usize) -> Result<(), CliError> {
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
    use crate::control::protocol::vectors;

    /// A client whose supervisor is `serve`, run on a thread: it gets the other end of the
    /// connection and returns what the test wants to see.
    fn with_server<T: Send + 'static>(
        serve: impl FnOnce(BufReader<UnixStream>) -> T + Send + 'static,
    ) -> (Client, std::thread::JoinHandle<T>) {
        let (ours, theirs) = UnixStream::pair().expect("socketpair");
        for s in [&ours, &theirs] {
            s.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
        }
        let server = std::thread::spawn(move || serve(BufReader::new(theirs)));
        (
            Client::over(ours, Path::new("test.sock")).expect("client"),
            server,
        )
    }

    fn read_request(conn: &mut BufReader<UnixStream>) -> Value {
        let mut line = String::new();
        conn.read_line(&mut line).expect("a request line");
        serde_json::from_str(&line).expect("the CLI writes JSON")
    }

    /// Every request of the shared vectors, as the CLI writes it, is what the supervisor reads.
    #[test]
    fn the_cli_writes_requests_as_the_vectors_say() {
        let mut seen = 0;
        for case in vectors() {
            let Some(want) = case["expect"].get("request") else {
                continue;
            };
            let request: Request = serde_json::from_value(want.clone()).expect("a request");
            let (mut client, server) = with_server(|mut conn| {
                let got = read_request(&mut conn);
                let reply = serde_json::json!({"type": "reply", "id": got["id"], "ok": true, "result": null});
                conn.get_mut()
                    .write_all(format!("{reply}\n").as_bytes())
                    .expect("write");
                got
            });
            assert_eq!(client.request(request.command).ok(), Some(Answer::Done));
            let mut got = server.join().expect("server");
            let mut want = want.clone();
            // The client numbers its own requests.
            got["id"] = Value::Null;
            want["id"] = Value::Null;
            assert_eq!(got, want, "{}", case["name"]);
            seen += 1;
        }
        assert!(seen > 15, "{seen}");
    }

    /// The CLI reads every reply of the shared vectors (events before it are skipped): an answer,
    /// or the error message; a `fatal` message ends the request with its error.
    #[test]
    fn the_cli_reads_replies_as_the_vectors_say() {
        let event = vectors()
            .into_iter()
            .find(|c| c["expect"].get("event").is_some())
            .expect("an event vector");
        let mut seen = 0;
        for case in vectors() {
            let Some(line) = case["message"].as_str() else {
                continue;
            };
            let mut message: Value = serde_json::from_str(line).expect("json");
            if message["type"] == "event" {
                continue;
            }
            let event = event["message"].as_str().expect("message").to_owned();
            let (mut client, server) = with_server(move |mut conn| {
                let got = read_request(&mut conn);
                if message["type"] == "reply" {
                    message["id"] = got["id"].clone();
                }
                let w = conn.get_mut();
                w.write_all(format!("{event}\n{message}\n").as_bytes())
                    .expect("write");
                message
            });
            let result = client.request(Command::List);
            let message = server.join().expect("server");
            match result {
                Ok(answer) => {
                    assert_eq!(message["ok"], true, "{}", case["name"]);
                    assert_eq!(
                        serde_json::to_value(answer).ok().as_ref(),
                        Some(&message["result"])
                    );
                }
                Err(e) => {
                    let error = message.get("error").expect("an error");
                    assert_eq!(error.as_str(), Some(e.0.as_str()), "{}", case["name"]);
                }
            }
            seen += 1;
        }
        assert!(seen > 10, "{seen}");
    }

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
