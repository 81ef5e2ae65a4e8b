//! `pm-supervisor logs [NAME]`: services' log lines, interleaved in time order.
//!
//! Log files are read directly, the rotated ones too (`web.log.2`, `web.log.1`, then
//! `web.log`), so this works after the supervisor is gone, given its config file. Which files:
//! those of the running supervisor's services (`ls`), or, when none runs, those of the config
//! file's services. Console services (no `log`) have no file; while the supervisor runs, their
//! recent lines come from its memory (control request `logs`).
//!
//! Files are read backwards, a block at a time, until enough lines are found, so the last lines
//! of a large log cost what they weigh. `-f` then follows the files through rotation and
//! truncation, woken by file-change notification (inotify on Linux), not by polling.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::client::{CliError, Client, Target, err};
use crate::config::Config;
use crate::control::{Answer, Command, LogLine, Logs as LogsRequest, Services};
use crate::logs::lines::{Stream, parse_line};

mod follow;
use follow::Follow;

/// Lines shown when `-n` is not given: as many as `pm2 logs` shows.
pub(super) const DEFAULT_LINES: usize = 15;
/// Rotated files looked for beyond the current one (`logKeep` is far lower in practice).
const MAX_ROTATED: u32 = 1000;
/// Bytes read at once when reading a file backwards.
const BLOCK: u64 = 64 * 1024;

/// What `logs` shows.
#[derive(Debug, Clone)]
pub(super) struct Options {
    /// One service (by name), or every one.
    pub(super) name: Option<String>,
    /// The last this many lines first.
    pub(super) lines: usize,
    /// Only lines from then on.
    pub(super) since: Option<SystemTime>,
    /// Only stderr lines.
    pub(super) err_only: bool,
    /// One JSON object per line.
    pub(super) json: bool,
    /// Then new lines as they come.
    pub(super) follow: bool,
}

/// `--since`: a duration back from now (`10m`, `1h 30m`) or a time (`2026-11-30T08:00:00Z`).
pub(super) fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(SystemTime::now() - d);
    }
    humantime::parse_rfc3339_weak(text).map_err(|_| {
        format!(
            "--since {text:?}: not a duration (10m, 1h 30m) nor an RFC 3339 time (2026-11-30T08:00:00Z)"
        )
    })
}

/// One line to show.
#[derive(Debug, Clone)]
struct Shown {
    /// Its time as written (RFC 3339, UTC, milliseconds: sorts as time does).
    time: String,
    /// The line as the log file has it.
    raw: String,
    json: LogLine,
}

impl Options {
    /// Whether a line of `label` and `stream` written at `time` is shown.
    fn wants(&self, label: &str, stream: Stream, time: &str) -> bool {
        if self.name.as_deref().is_some_and(|n| n != label) {
            return false;
        }
        if self.err_only && stream != Stream::Err {
            return false;
        }
        match self.since {
            Some(since) => humantime::parse_rfc3339(time).is_ok_and(|t| t >= since),
            None => true,
        }
    }

    /// The line if it is shown.
    fn pick(&self, line: &str) -> Option<Shown> {
        let p = parse_line(line)?;
        if !self.wants(p.label, p.stream, p.time) {
            return None;
        }
        Some(Shown {
            time: p.time.to_owned(),
            raw: line.to_owned(),
            json: LogLine {
                time: p.time.to_owned(),
                service: p.label.to_owned(),
                stream: p.stream.name().to_owned(),
                text: p.text.to_owned(),
                continued: p.continued,
            },
        })
    }

    /// A line of a console service from the supervisor's memory, if it is shown.
    fn pick_recent(&self, l: LogLine) -> Option<Shown> {
        let stream = match l.stream.as_str() {
            "out" => Stream::Out,
            "err" => Stream::Err,
            _ => Stream::Pm,
        };
        if !self.wants(&l.service, stream, &l.time) {
            return None;
        }
        let tag = match (stream, l.continued) {
            (Stream::Pm, _) => "pm ".to_owned(),
            (s, true) => format!("{}+", s.name()),
            (s, false) => s.name().to_owned(),
        };
        Some(Shown {
            time: l.time.clone(),
            raw: format!("{} {} {tag} | {}", l.time, l.service, l.text),
            json: l,
        })
    }

    fn write(&self, out: &mut impl Write, line: &Shown) -> std::io::Result<()> {
        if self.json {
            let text = serde_json::to_string(&line.json).unwrap_or_default();
            writeln!(out, "{text}")
        } else {
            writeln!(out, "{}", line.raw)
        }
    }
}

/// The services whose lines are asked for: their log files, and whether console services
/// (no file) are among them.
struct Sources {
    files: BTreeSet<PathBuf>,
    /// The running supervisor, for the lines of console services.
    client: Option<Client>,
    /// A console service is selected.
    console: bool,
}

/// Finds the log files: from the running supervisor, else from the config file.
fn sources(target: &Target, opts: &Options) -> Result<Sources, CliError> {
    let selected = |name: Option<&str>| opts.name.is_none() || name == opts.name.as_deref();
    match Client::open(target) {
        Ok(mut client) => {
            let rows = super::client::rows(client.request(Command::List)?)?;
            let rows: Vec<_> = rows
                .into_iter()
                .filter(|r| selected(r.name.as_deref()))
                .collect();
            if let (Some(name), true) = (&opts.name, rows.is_empty()) {
                return Err(err(format!("no service named {name:?}")));
            }
            let console = rows.iter().any(|r| r.log.is_none());
            Ok(Sources {
                files: rows.into_iter().filter_map(|r| r.log).collect(),
                client: Some(client),
                console,
            })
        }
        Err(not_running) => {
            let Some(path) = &target.config else {
                return Err(err(format!(
                    "{not_running}; to read the log files without a supervisor, give its config file (--config FILE)"
                )));
            };
            let config = Config::load(path).map_err(|e| err(e.to_string()))?;
            let specs: Vec<_> = config
                .services
                .into_iter()
                .filter(|s| selected(s.name.as_deref()))
                .collect();
            if let Some(name) = &opts.name {
                if specs.is_empty() {
                    return Err(err(format!(
                        "no service named {name:?} in {}",
                        path.display()
                    )));
                }
                if specs.iter().all(|s| s.log.is_none()) {
                    return Err(err(format!(
                        "{name} has no \"log\" file: its lines went to the supervisor's stdout, and no supervisor runs to keep them"
                    )));
                }
            }
            Ok(Sources {
                files: specs.into_iter().filter_map(|s| s.log).collect(),
                client: None,
                console: false,
            })
        }
    }
}

/// `pm-supervisor logs [NAME] [-n N] [--since T] [--err] [--json] [-f]`.
pub(super) fn logs(target: &Target, opts: &Options) -> Result<(), CliError> {
    let mut src = sources(target, opts)?;
    // Watching begins before reading, so that no line written in between is missed.
    let watch = if opts.follow {
        Some(Follow::start(&src.files)?)
    } else {
        None
    };
    let mut shown = Vec::new();
    let mut ends = HashMap::new();
    for path in &src.files {
        let (lines, end) = last_lines(path, opts);
        shown.extend(lines);
        if let Some(end) = end {
            ends.insert(path.clone(), end);
        }
    }
    if src.console {
        if let Some(client) = &mut src.client {
            let of = match &opts.name {
                Some(n) => Services::Named(n.clone()),
                None => Services::All,
            };
            let request = Command::Logs(LogsRequest {
                of,
                lines: Some(LogsRequest::MAX_LINES),
            });
            match client.request(request)? {
                Answer::Lines { lines } => {
                    shown.extend(lines.into_iter().filter_map(|l| opts.pick_recent(l)));
                }
                other => return Err(err(format!("bad reply: expected lines, got {other:?}"))),
            }
        }
    }
    // Stable: lines of one file with the same time keep their order.
    shown.sort_by(|a, b| a.time.cmp(&b.time));
    let skip = shown.len().saturating_sub(opts.lines);
    let mut out = std::io::stdout().lock();
    for line in &shown[skip..] {
        if opts.write(&mut out, line).is_err() {
            return Ok(()); // a closed pipe (| head) is not an error
        }
    }
    let _ = out.flush();
    drop(out);
    match watch {
        Some(w) => w.run(ends, opts),
        None => Ok(()),
    }
}

/// A file and its rotated files, newest first: `f`, `f.1`, `f.2`, ...
fn generations(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    for n in 1..=MAX_ROTATED {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        let p = PathBuf::from(p);
        if !p.exists() {
            break;
        }
        files.push(p);
    }
    files
}

/// Where `-f` goes on in a file: which file (device, inode) and from which offset.
#[derive(Debug, Clone, Copy)]
struct End {
    id: (u64, u64),
    offset: u64,
}

/// The last `opts.lines` shown lines of a log file and its rotated files (oldest first), and
/// where the current file ended.
fn last_lines(path: &Path, opts: &Options) -> (Vec<Shown>, Option<End>) {
    let mut found: Vec<Shown> = Vec::new();
    let mut end = None;
    for (i, file) in generations(path).iter().enumerate() {
        let Ok(mut f) = File::open(file) else {
            continue;
        };
        let Ok(meta) = f.metadata() else {
            continue;
        };
        if i == 0 {
            end = Some(End {
                id: (meta.dev(), meta.ino()),
                offset: meta.len(),
            });
        }
        let done = backwards(&mut f, meta.len(), |line| {
            if let Some(s) = opts.pick(line) {
                found.push(s);
            } else if opts.since.is_some() {
                // Older than --since: so is everything before it.
                if let Some(p) = parse_line(line) {
                    if humantime::parse_rfc3339(p.time).is_ok_and(|t| Some(t) < opts.since) {
                        return false;
                    }
                }
            }
            found.len() < opts.lines
        });
        if !done {
            break;
        }
    }
    found.reverse();
    (found, end)
}

/// Hands the lines of the first `len` bytes of `f` to `each`, last first, until it returns
/// false. Returns whether every line was handed out.
fn backwards(f: &mut File, len: u64, mut each: impl FnMut(&str) -> bool) -> bool {
    let mut pos = len;
    // The start of a line whose beginning is in an earlier block.
    let mut carry: Vec<u8> = Vec::new();
    let mut block = Vec::new();
    let mut first = true;
    while pos > 0 {
        let start = pos.saturating_sub(BLOCK);
        block.clear();
        block.resize((pos - start) as usize, 0);
        if f.seek(SeekFrom::Start(start)).is_err() || f.read_exact(&mut block).is_err() {
            return true; // truncated meanwhile: what was read is all there is
        }
        pos = start;
        block.extend_from_slice(&carry);
        let mut rest = &block[..];
        // A last line without its `\n` is a line too; the `\n` of the file's end is not one.
        if first && rest.last() == Some(&b'\n') {
            rest = &rest[..rest.len() - 1];
        }
        first = false;
        loop {
            match rest.iter().rposition(|&b| b == b'\n') {
                Some(i) => {
                    if !each(&String::from_utf8_lossy(&rest[i + 1..])) {
                        return false;
                    }
                    rest = &rest[..i];
                }
                None if pos == 0 => {
                    if !rest.is_empty() && !each(&String::from_utf8_lossy(rest)) {
                        return false;
                    }
                    return true;
                }
                None => break,
            }
        }
        carry = rest.to_vec();
    }
    true
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn files_are_read_backwards_line_by_line_across_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.log");
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("line {i} {}\n", "x".repeat(i % 50)));
        }
        text.push_str("unended");
        std::fs::write(&path, &text).expect("write");
        let mut f = File::open(&path).expect("open");
        let mut got = Vec::new();
        assert!(backwards(&mut f, text.len() as u64, |l| {
            got.push(l.to_owned());
            true
        }));
        got.reverse();
        let want: Vec<&str> = text.split('\n').collect();
        assert_eq!(got, want);
        let mut few = Vec::new();
        assert!(!backwards(&mut f, text.len() as u64, |l| {
            few.push(l.to_owned());
            few.len() < 3
        }));
        assert_eq!(few[2], want[want.len() - 3]);
    }

    #[test]
    fn since_takes_durations_and_times() {
        let t = parse_since("2026-11-30T08:00:00Z").expect("a time");
        assert_eq!(
            humantime::format_rfc3339(t).to_string(),
            "2026-11-30T08:00:00Z"
        );
        let ago = parse_since("10m").expect("a duration");
        let d = SystemTime::now().duration_since(ago).expect("past");
        assert!(d >= Duration::from_secs(600) && d < Duration::from_secs(660));
        let e = parse_since("yesterday").expect_err("neither");
        assert!(e.contains("--since \"yesterday\""), "{e}");
    }
}
