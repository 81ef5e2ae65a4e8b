//! Last words: once the supervisor is dead, the sentinel reads the output pipes it was given
//! and writes their lines where the supervisor would have, in the same format, while the
//! services stop.
//!
//! One reader thread polls every pipe; one writer thread per log file (or the supervisor's
//! stdout) writes whole lines in batches, so lines of services sharing a file never mix. A pipe
//! is read until EOF (every process holding it is gone) or until [`DRAIN_LIMIT`] after the
//! supervisor's death, whichever comes first; writers get [`WRITE_GRACE`] more, then the
//! sentinel exits whatever a log file does (a hung disk holds up a writer thread, never the
//! exit). Back-pressure as in the supervisor: while a file's queue holds [`QUEUE_BYTES`], its
//! pipes are not read, so a service writing faster than the disk blocks in `write` rather than
//! losing lines (and is SIGKILLed at its deadline anyway). Log files are not rotated here: a
//! file may pass `logMaxSize` by these last lines.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::Output;
use crate::logs::lines::{self, AnsiStripper, LogLines, Stream};

/// How long after the supervisor's death its services' output is read at most. Every service is
/// SIGKILLed by the sentinel within [`super::MAX_GRACE`] of the death, which closes its pipes; a
/// pipe still open at this limit is held by a process outside every service (one that left its
/// group and cleared its environment), and what it writes later is lost.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How long after [`DRAIN_LIMIT`] lines read are still written; then the sentinel exits.
pub(crate) const WRITE_GRACE: Duration = Duration::from_millis(500);
/// Bytes queued for one log file at most; beyond, its pipes wait.
const QUEUE_BYTES: usize = 1024 * 1024;
/// Bytes read from a pipe at once.
const READ_BUF: usize = 64 * 1024;
/// How often pipes held back by a full queue are looked at again.
const RECHECK: Duration = Duration::from_millis(10);
/// Stack of the drain's threads: nothing in them recurses.
const STACK: usize = 256 * 1024;

/// Lines waiting for one log file, and whether more can come.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<QueueState>,
    more: Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    buf: Vec<u8>,
    closed: bool,
}

impl Queue {
    /// Queues lines; dropped once the queue is closed (its writer is gone or never started).
    fn push(&self, bytes: &[u8]) {
        if let Ok(mut s) = self.state.lock()
            && !s.closed
        {
            s.buf.extend_from_slice(bytes);
        }
        self.more.notify_one();
    }

    fn full(&self) -> bool {
        self.state
            .lock()
            .map_or(true, |s| s.buf.len() >= QUEUE_BYTES)
    }

    fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.closed = true;
        }
        self.more.notify_one();
    }

    /// The next batch; None once closed and empty.
    fn take(&self) -> Option<Vec<u8>> {
        let mut s = self.state.lock().ok()?;
        while s.buf.is_empty() && !s.closed {
            s = self.more.wait(s).ok()?;
        }
        (!s.buf.is_empty()).then(|| std::mem::take(&mut s.buf))
    }
}

/// One service's lines: its label and where they go.
struct Service {
    label: Arc<str>,
    colour: Option<u8>,
    strip_ansi: bool,
    queue: Arc<Queue>,
    /// Its pipes not at EOF yet.
    open: usize,
}

impl Service {
    fn supervisor_line(&self, text: &str) {
        self.queue
            .push(&lines::supervisor_line(&self.label, self.colour, text));
    }
}

struct Pipe {
    fd: OwnedFd,
    stream: Stream,
    service: usize,
    lines: LogLines,
    ansi: AnsiStripper,
}

impl Pipe {
    /// Formats `data` (None: EOF, the unterminated last line) and queues it.
    fn emit(&mut self, svc: &Service, data: Option<&[u8]>, clean: &mut Vec<u8>) {
        let batch = match data {
            Some(data) => {
                let data = if svc.strip_ansi {
                    clean.clear();
                    self.ansi.strip(data, clean);
                    &clean[..]
                } else {
                    data
                };
                lines::format_output(&svc.label, svc.colour, self.stream, |emit| {
                    self.lines.feed(data, emit);
                })
            }
            None => lines::format_output(&svc.label, svc.colour, self.stream, |emit| {
                self.lines.finish(emit);
            }),
        };
        if !batch.is_empty() {
            svc.queue.push(&batch);
        }
    }
}

/// The drain under way.
#[derive(Debug)]
pub(crate) struct Drain {
    reader: Option<JoinHandle<()>>,
    writers: Vec<(Arc<Queue>, JoinHandle<()>)>,
    died: Instant,
}

/// Starts reading `outputs` (the supervisor died at `died`).
pub(crate) fn start(outputs: Vec<Output>, died: Instant) -> Drain {
    let stdout_tty = io::stdout().is_terminal();
    let mut queues: HashMap<Option<PathBuf>, Arc<Queue>> = HashMap::new();
    let mut writers = Vec::new();
    let mut services = Vec::new();
    let mut pipes = Vec::new();
    for o in outputs {
        let queue = queues
            .entry(o.log.clone())
            .or_insert_with(|| {
                let q = Arc::new(Queue::default());
                let theirs = q.clone();
                let target = o.log.clone();
                let spawned = std::thread::Builder::new()
                    .name("pm-sentinel-writer".into())
                    .stack_size(STACK)
                    .spawn(move || write_loop(target, &theirs));
                match spawned {
                    Ok(t) => writers.push((q.clone(), t)),
                    Err(e) => {
                        note!("cannot start a log writer: {e}; the last output for it is lost");
                        q.close();
                    }
                }
                q
            })
            .clone();
        let service = services.len();
        for (fd, stream) in [(o.stdout, Stream::Out), (o.stderr, Stream::Err)] {
            // The supervisor, which shared this open pipe, is dead.
            crate::platform::set_nonblocking(&fd, true);
            pipes.push(Pipe {
                fd,
                stream,
                service,
                lines: LogLines::default(),
                ansi: AnsiStripper::default(),
            });
        }
        services.push(Service {
            colour: (o.log.is_none() && stdout_tty).then(|| lines::label_colour(&o.label)),
            label: o.label,
            strip_ansi: o.strip_ansi,
            queue,
            open: 2,
        });
    }
    let reader = std::thread::Builder::new()
        .name("pm-sentinel-reader".into())
        .stack_size(STACK)
        .spawn(move || read_loop(services, pipes, died + DRAIN_LIMIT));
    let reader = match reader {
        Ok(t) => Some(t),
        Err(e) => {
            note!("cannot read the services' last output: {e}");
            for (q, _) in &writers {
                q.close();
            }
            None
        }
    };
    Drain {
        reader,
        writers,
        died,
    }
}

impl Drain {
    /// Waits until every pipe is at EOF and every line written, or the limits pass.
    pub(crate) fn finish(self) {
        let read_end = self.died + DRAIN_LIMIT;
        let write_end = read_end + WRITE_GRACE;
        if let Some(r) = self.reader {
            // The reader stops by itself at `read_end`; a little slack for its last batch.
            wait_until(&r, write_end);
        }
        for (q, _) in &self.writers {
            q.close();
        }
        for (_, w) in &self.writers {
            wait_until(w, write_end);
        }
    }
}

fn wait_until(t: &JoinHandle<()>, end: Instant) {
    while !t.is_finished() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn read_loop(services: Vec<Service>, mut pipes: Vec<Pipe>, deadline: Instant) {
    let mut services = services;
    for s in &services {
        s.supervisor_line(&format!(
            "supervisor died; the sentinel stops this service and writes its output (for {} s at most)",
            DRAIN_LIMIT.as_secs()
        ));
    }
    let mut buf = vec![0u8; READ_BUF];
    let mut clean = Vec::new();
    while !pipes.is_empty() {
        let now = Instant::now();
        if now >= deadline {
            for p in &mut pipes {
                p.emit(&services[p.service], None, &mut clean);
            }
            for s in services.iter().filter(|s| s.open > 0) {
                s.supervisor_line(&format!(
                    "output after this line is lost: still open {} s after the supervisor died (held by a process outside the service)",
                    DRAIN_LIMIT.as_secs()
                ));
            }
            break;
        }
        let ready: Vec<usize> = (0..pipes.len())
            .filter(|&i| !services[pipes[i].service].queue.full())
            .collect();
        let mut wait = deadline - now;
        if ready.len() < pipes.len() {
            wait = wait.min(RECHECK);
        }
        let timeout =
            PollTimeout::try_from(wait.as_millis().max(1) as u64).unwrap_or(PollTimeout::MAX);
        let mut fds: Vec<PollFd> = ready
            .iter()
            .map(|&i| PollFd::new(pipes[i].fd.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                note!("poll failed: {e}");
                break;
            }
        }
        let woke: Vec<usize> = fds
            .iter()
            .zip(&ready)
            .filter(|(f, _)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, &i)| i)
            .collect();
        drop(fds);
        let mut ended = Vec::new();
        for i in woke {
            let p = &mut pipes[i];
            let svc = &services[p.service];
            match nix::unistd::read(&p.fd, &mut buf) {
                Ok(0) => {
                    p.emit(svc, None, &mut clean);
                    ended.push(i);
                }
                Ok(n) => p.emit(svc, Some(&buf[..n]), &mut clean),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(_) => {
                    p.emit(svc, None, &mut clean);
                    ended.push(i);
                }
            }
        }
        for &i in ended.iter().rev() {
            let p = pipes.swap_remove(i);
            services[p.service].open -= 1;
        }
    }
    for s in &services {
        s.queue.close();
    }
}

/// Writes a queue's batches to its log file (None: the supervisor's stdout, which the sentinel
/// inherited) until it is closed.
fn write_loop(path: Option<PathBuf>, queue: &Queue) {
    let mut file = match &path {
        None => io::stdout().as_fd().try_clone_to_owned().map(File::from),
        Some(p) => crate::logs::file::open_log(p),
    };
    let shown = path
        .as_deref()
        .map_or("stdout".into(), |p| p.display().to_string());
    if let Err(e) = &file {
        note!("cannot open {shown}: {e}; the last output for it is lost");
    }
    let mut failed = false;
    while let Some(batch) = queue.take() {
        let Ok(f) = &mut file else { continue };
        let size = f.metadata().map(|m| m.len()).ok();
        if let Err(e) = f.write_all(&batch) {
            // No half line left in a log file.
            if let (Some(size), Some(_)) = (size, &path) {
                let _ = f.set_len(size);
            }
            if !failed {
                note!("cannot write {shown}: {e}");
                failed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests;
