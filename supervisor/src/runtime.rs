//! Per-user runtime files of a supervisor instance: a lock (one supervisor per config at a
//! time), and the state file that records the process groups it runs, so that the next start
//! after a crash (of the supervisor and its sentinel both) finds and kills what was left.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::sentinel::{self, Record};

/// Where the runtime files live: `$PM_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/pm`, else
/// `<temp dir>/pm-<uid>`. Created with mode 0700; refused if another user owns it or others can
/// write to it.
pub fn runtime_dir() -> io::Result<PathBuf> {
    let dir = if let Some(d) = std::env::var_os("PM_RUNTIME_DIR") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(d).join("pm")
    } else {
        std::env::temp_dir().join(format!("pm-{}", nix::unistd::getuid()))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let meta = std::fs::metadata(&dir)?;
    if meta.uid() != nix::unistd::getuid().as_raw() || meta.permissions().mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "runtime folder {} is not private to this user (owner {}, mode {:o})",
                dir.display(),
                meta.uid(),
                meta.permissions().mode() & 0o777
            ),
        ));
    }
    Ok(dir)
}

/// An instance name for a config file: its stem and a hash of its absolute path, so that two
/// apps' configs never share runtime files.
pub fn instance_name(config: &Path) -> String {
    let stem = config
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pm")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>();
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in config.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{stem}-{:08x}", h as u32)
}

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
    /// Runtime folder.
    pub dir: PathBuf,
    /// Instance name.
    pub name: String,
    _lock: Flock<File>,
    state_path: PathBuf,
}

/// What the state file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The supervisor that wrote it.
    supervisor: u32,
    /// Its run token (prefix of its service tags).
    token: String,
    /// Its process groups: (pid, start time in clock ticks).
    groups: Vec<(i32, u64)>,
}

impl Instance {
    /// Takes the lock of instance `name` in `dir`, or says who holds it.
    pub fn claim(dir: &Path, name: &str) -> Result<Instance, ClaimError> {
        let lock_path = dir.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(ClaimError::Io)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, e)) if e == nix::errno::Errno::EWOULDBLOCK => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(ClaimError::Running(AlreadyRunning {
                    pid: text.trim().parse().ok(),
                    lock: lock_path,
                }));
            }
            Err((_, e)) => return Err(ClaimError::Io(e.into())),
        };
        lock.set_len(0).map_err(ClaimError::Io)?;
        lock.rewind().map_err(ClaimError::Io)?;
        write!(lock, "{}", std::process::id()).map_err(ClaimError::Io)?;
        Ok(Instance {
            dir: dir.to_path_buf(),
            name: name.to_owned(),
            _lock: lock,
            state_path: dir.join(format!("{name}.state")),
        })
    }

    /// Kills what a previous run of this instance left behind (its supervisor and sentinel both
    /// died), and returns the pids signalled. Groups are checked against their recorded start
    /// times, so a recycled pid is never hit.
    pub fn kill_leftovers(&self) -> usize {
        // Without /proc a leader's start time cannot be checked, and a pid recorded long ago may
        // belong to someone else by now.
        if !cfg!(target_os = "linux") {
            return 0;
        }
        let Ok(text) = std::fs::read_to_string(&self.state_path) else {
            return 0;
        };
        let Ok(state) = serde_json::from_str::<State>(&text) else {
            tracing::warn!(file = %self.state_path.display(), "unreadable state file ignored");
            return 0;
        };
        let records: Vec<Record> = state
            .groups
            .iter()
            .map(|&(pid, start_time)| Record {
                pid,
                start_time,
                grace: Duration::ZERO,
                term: false,
            })
            .collect();
        if records.is_empty() && state.token.is_empty() {
            return 0;
        }
        sentinel::cleanup(&state.token, &records, Duration::ZERO)
    }

    /// Records the current process groups of this run.
    pub fn record(&self, token: &str, groups: impl Iterator<Item = (i32, u64)>) {
        let state = State {
            supervisor: std::process::id(),
            token: token.to_owned(),
            groups: groups.collect(),
        };
        let tmp = self.state_path.with_extension("state.tmp");
        let result = serde_json::to_vec(&state)
            .map_err(io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.state_path));
        if let Err(e) = result {
            tracing::warn!(file = %self.state_path.display(), %e, "cannot write state file");
        }
    }

    /// The control socket of this instance.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join(format!("{}.sock", self.name))
    }

    /// Removes the state file after a clean shutdown.
    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.state_path);
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
