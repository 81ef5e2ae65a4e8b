//! A connection to a running supervisor: which one (`--instance`, `--config`, or the only one),
//! and requests and replies over its control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::control::{Answer, Command, Failure, Message, Reply, Request, RequestId, Row};
use crate::platform::peer_uid;
use crate::runtime::{RuntimeDir, check_instance_name, instance_for, runtime_dir};

/// Which supervisor to talk to.
#[derive(Debug, Default, Clone)]
pub(crate) struct Target {
    /// `--instance NAME`.
    pub(crate) instance: Option<String>,
    /// `--config FILE`: the instance `run FILE` uses.
    pub(crate) config: Option<PathBuf>,
}

/// A request failed; the message is for a person.
#[derive(Debug)]
pub(crate) struct CliError(pub(super) String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub(super) fn err(msg: impl Into<String>) -> CliError {
    CliError(msg.into())
}

/// The runtime folder and the chosen instance: `--instance`, else `--config` (every spelling of
/// a file names the same instance), else `$PM_INSTANCE`, else the only one running.
fn instance_of(target: &Target) -> Result<(RuntimeDir, String), CliError> {
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
pub(super) struct Client {
    stream: BufReader<UnixStream>,
    next_id: u64,
}

impl Client {
    /// Connects to the supervisor of `target`.
    pub(super) fn open(target: &Target) -> Result<Client, CliError> {
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
    pub(super) fn over(stream: UnixStream, shown: &Path) -> Result<Client, CliError> {
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
    pub(super) fn request(&mut self, command: Command) -> Result<Answer, CliError> {
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
    pub(super) fn read(&mut self) -> Result<Message, CliError> {
        let mut line = Vec::new();
        match self.stream.read_until(b'\n', &mut line) {
            Ok(0) => Err(err("the supervisor closed the connection")),
            Ok(_) => Message::parse(&line).map_err(|e| err(format!("bad reply: {e}"))),
            Err(e) => Err(err(format!("reading the reply failed: {e}"))),
        }
    }
}

/// The rows of an answer that should be rows.
pub(super) fn rows(answer: Answer) -> Result<Vec<Row>, CliError> {
    match answer {
        Answer::Rows(rows) => Ok(rows),
        other => Err(err(format!("bad reply: expected rows, got {other:?}"))),
    }
}

#[cfg(test)]
mod tests;
