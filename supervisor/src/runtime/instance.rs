//! A claimed instance: its lock, and the state file that lets the next start clean up after a
//! crash.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::RuntimeDir;
use crate::process::sentinel::{self, Record};

/// How often a claim tries again when its lock file was removed or is held by no live
/// supervisor (another one cleaning up), 20 ms apart.
const CLAIM_ATTEMPTS: u32 = 50;

/// Largest state file read: far more than any real run writes.
const MAX_STATE_BYTES: u64 = 4 * 1024 * 1024;

/// Another supervisor holds the instance.
#[derive(Debug, thiserror::Error)]
#[error("another pm-supervisor{} is already running this instance (lock {})", pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), lock.display())]
pub struct AlreadyRunning {
    /// Its pid, as it wrote it in the lock file.
    pub pid: Option<u32>,
    /// The lock file.
    pub lock: PathBuf,
}

/// A claimed instance: holds the lock for the life of the process.
#[derive(Debug)]
pub struct Instance {
    dir: RuntimeDir,
    /// Its name: its files in the runtime folder are named after it.
    pub name: String,
    _lock: Flock<File>,
}

/// What the state file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    /// The supervisor that wrote it.
    supervisor: u32,
    /// Its run token (prefix of its service tags).
    token: String,
    /// Its process groups: (pid, start time in clock ticks).
    groups: Vec<(i32, u64)>,
}

/// What a state file asks to clean up, once checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Leftovers {
    /// The dead run's token: processes whose service tag starts with `<token>-` are its own.
    /// Empty when the file had none.
    pub token: String,
    /// Process groups (leader pid, leader start time), each naming exactly one process.
    pub groups: Vec<(i32, u64)>,
    /// Entries refused: no start time (it would match any process), or not a process-group
    /// leader pid a run could have started (0, 1, negative).
    pub refused: usize,
}

/// Parses and checks a state file's contents. Entries that do not identify one process exactly
/// are refused and counted; a token that is not one this program writes is refused whole.
pub fn parse_state(bytes: &[u8]) -> Result<Leftovers, String> {
    let state: State = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let token_ok = state.token.len() <= 64 && state.token.bytes().all(|b| b.is_ascii_hexdigit());
    if !token_ok {
        return Err("its token is not one pm-supervisor writes".into());
    }
    let mut out = Leftovers {
        token: state.token,
        ..Leftovers::default()
    };
    for (pid, start_time) in state.groups {
        if pid > 1 && start_time != 0 {
            out.groups.push((pid, start_time));
        } else {
            out.refused += 1;
        }
    }
    Ok(out)
}

impl Instance {
    /// Takes the lock of instance `name` in `dir`, or says who holds it.
    ///
    /// Lock files are removed when their supervisor ends (by it, or by the next supervisor to
    /// start, for one that was killed), so the file locked must still be the one named
    /// `<name>.lock` once locked: otherwise it was removed meanwhile and the claim starts over.
    /// A lock held by no live supervisor is a clean-up under way in another supervisor (a few
    /// milliseconds): the claim waits for it.
    pub fn claim(dir: RuntimeDir, name: &str) -> Result<Instance, ClaimError> {
        let lock_name = format!("{name}.lock");
        let lock_path = dir.path.join(&lock_name);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let file = dir
                .open(
                    &lock_name,
                    OFlag::O_RDWR | OFlag::O_CREAT,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                )
                .map_err(|e| {
                    ClaimError::Io(io::Error::new(
                        e.kind(),
                        format!("{}: {e}", lock_path.display()),
                    ))
                })?;
            let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((mut file, e)) if e == Errno::EWOULDBLOCK => {
                    let mut text = String::new();
                    let _ = Read::by_ref(&mut file).take(64).read_to_string(&mut text);
                    let pid: Option<u32> = text.trim().parse().ok();
                    let holder_alive = pid.is_some_and(|p| {
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), None).is_ok()
                    });
                    if !holder_alive && attempts < CLAIM_ATTEMPTS {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    return Err(ClaimError::Running(AlreadyRunning {
                        pid,
                        lock: lock_path,
                    }));
                }
                Err((_, e)) => return Err(ClaimError::Io(e.into())),
            };
            if !dir.names_same_file(&lock_name, &*lock) {
                if attempts < CLAIM_ATTEMPTS {
                    continue;
                }
                return Err(ClaimError::Io(io::Error::other(format!(
                    "{}: removed again and again while being locked",
                    lock_path.display()
                ))));
            }
            lock.set_len(0).map_err(ClaimError::Io)?;
            lock.rewind().map_err(ClaimError::Io)?;
            write!(lock, "{}", std::process::id()).map_err(ClaimError::Io)?;
            return Ok(Instance {
                dir,
                name: name.to_owned(),
                _lock: lock,
            });
        }
    }

    /// Removes what finished supervisors of other instances left in the runtime folder: the
    /// lock, socket and state files of every instance whose lock nobody holds and whose
    /// recorded process groups are all gone (a supervisor killed with SIGKILL; its sentinel
    /// stopped its services). An instance with live groups keeps its files for its next run,
    /// which cleans up after it. Returns how many files were removed.
    pub(crate) fn sweep_finished(&self) -> usize {
        let Ok(locks) = self.dir.names_ending(".lock") else {
            return 0;
        };
        let mut removed = 0;
        // Read once; a zombie does not count (nobody may reap it for a while).
        let live = crate::platform::LiveGroups::read();
        for other in locks.iter().filter(|n| **n != self.name) {
            let lock_name = format!("{other}.lock");
            let Ok(file) = self.dir.open(&lock_name, OFlag::O_RDWR, Mode::empty()) else {
                continue;
            };
            let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
                continue; // its supervisor runs
            };
            if !self.dir.names_same_file(&lock_name, &*lock) {
                continue;
            }
            let state_name = format!("{other}.state");
            match self.dir.read_private(&state_name, MAX_STATE_BYTES) {
                Ok(None) => {}
                Ok(Some(bytes)) => match parse_state(&bytes) {
                    Ok(left) if left.groups.iter().any(|&(pgid, _)| live.contains(pgid)) => {
                        continue;
                    }
                    Ok(_) => {}
                    // Not ours to judge: its own next run reports it.
                    Err(_) => continue,
                },
                Err(_) => continue,
            }
            for name in [
                format!("{other}.sock"),
                format!("{state_name}.tmp"),
                state_name,
                lock_name,
            ] {
                if self.dir.remove(&name).is_ok() {
                    removed += 1;
                }
            }
            drop(lock);
        }
        removed
    }

    fn state_name(&self) -> String {
        format!("{}.state", self.name)
    }

    /// Kills what a previous run of this instance left behind (its supervisor and sentinel both
    /// died), and returns how many groups and processes were signalled. The state file is
    /// honoured only if it is a regular file of this user with mode 0600, and each group only
    /// if its leader is the very process recorded (same start time), so a recycled pid is never
    /// hit.
    pub(crate) fn kill_leftovers(&self) -> usize {
        // Without start times a leader cannot be checked, and a pid recorded long ago may belong
        // to someone else by now.
        if !crate::platform::KNOWS_START_TIMES {
            return 0;
        }
        let file = self.dir.path.join(self.state_name());
        let bytes = match self.dir.read_private(&self.state_name(), MAX_STATE_BYTES) {
            Ok(Some(b)) => b,
            Ok(None) => return 0,
            Err(e) => {
                tracing::warn!(?file, "state file ignored: {e}");
                return 0;
            }
        };
        let left = match parse_state(&bytes) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(?file, "unreadable state file ignored: {e}");
                return 0;
            }
        };
        if left.refused > 0 {
            tracing::warn!(
                ?file,
                count = left.refused,
                "state file entries without a start time (or with an impossible pid) ignored: they do not name one process"
            );
        }
        let records: Vec<Record> = left
            .groups
            .iter()
            .map(|&(pid, start_time)| Record {
                pid,
                start_time,
                grace: Duration::ZERO,
                term: false,
            })
            .collect();
        if records.is_empty() && left.token.is_empty() {
            return 0;
        }
        sentinel::cleanup(&left.token, &records, Duration::ZERO)
    }

    /// Records the current process groups of this run.
    pub(crate) fn record(&self, token: &str, groups: impl Iterator<Item = (i32, u64)>) {
        let state = State {
            supervisor: std::process::id(),
            token: token.to_owned(),
            groups: groups.collect(),
        };
        let result = serde_json::to_vec(&state)
            .map_err(io::Error::other)
            .and_then(|bytes| self.dir.write_private(&self.state_name(), &bytes));
        if let Err(e) = result {
            let file = self.dir.path.join(self.state_name());
            tracing::warn!(?file, %e, "cannot write state file");
        }
    }

    /// The name of this instance's control socket in the runtime folder.
    pub(crate) fn socket_name(&self) -> String {
        format!("{}.sock", self.name)
    }

    /// The runtime folder.
    pub(crate) fn dir(&self) -> &RuntimeDir {
        &self.dir
    }

    /// Removes the instance's files after a clean shutdown: the control socket, the state
    /// file, and the lock file (still locked while it is removed, so that a supervisor starting
    /// now either sees the lock held or creates a new file).
    pub(crate) fn clear(&self) {
        self.dir.unbind(&self.socket_name());
        let _ = self.dir.remove(&self.state_name());
        let _ = self.dir.remove(&format!("{}.tmp", self.state_name()));
        let _ = self.dir.remove(&format!("{}.lock", self.name));
    }
}

/// Why an instance could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another supervisor runs it.
    #[error(transparent)]
    Running(AlreadyRunning),
    /// The lock file cannot be used.
    #[error("cannot use the lock file: {0}")]
    Io(io::Error),
}
