//! Per-user runtime files of a supervisor instance: a lock (one supervisor per config at a
//! time), the control socket, and the state file that records the process groups it runs, so
//! that the next start after a crash (of the supervisor and its sentinel both) finds and kills
//! what was left.
//!
//! The folder is handled as systemd and OpenSSH handle theirs: it is opened without following a
//! symbolic link, must belong to this user and have mode 0700 exactly, and every file in it is
//! reached through the opened folder (`openat`, and on Linux `/proc/self/fd/N/...` for the
//! socket), so swapping the folder's path after the check changes nothing. Files read from it
//! are honoured only when they are regular files of this user with mode 0600.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::stat::{Mode, SFlag, fstat};
use serde::{Deserialize, Serialize};

use crate::sentinel::{self, Record};

/// The variable that chooses the runtime folder; every refusal names it.
pub const ENV_RUNTIME_DIR: &str = "PM_RUNTIME_DIR";
/// Largest state file read: far more than any real run writes.
const MAX_STATE_BYTES: u64 = 4 * 1024 * 1024;

/// The runtime folder, opened and checked.
#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
    fd: OwnedFd,
}

/// Where the runtime files live: `$PM_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/pm`, else
/// `<temp dir>/pm-<uid>`. Created with mode 0700; refused, with a message that says how to
/// choose another folder, if it is a symbolic link, not a folder, another user's, or not mode
/// 0700 exactly.
pub fn runtime_dir() -> io::Result<RuntimeDir> {
    let uid = nix::unistd::geteuid();
    let chosen = std::env::var_os(ENV_RUNTIME_DIR).filter(|d| !d.is_empty());
    let path = if let Some(d) = &chosen {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(d).join("pm")
    } else {
        std::env::temp_dir().join(format!("pm-{uid}"))
    };
    // Every refusal says how to choose another folder.
    let refuse = |why: &str, fix: Option<String>| {
        let fix = fix.map(|f| format!("{f}, or ")).unwrap_or_default();
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "runtime folder {}: {why}; {fix}set {ENV_RUNTIME_DIR} to another folder (one only you can enter)",
                path.display()
            ),
        )
    };
    const LINK: &str =
        "it is a symbolic link, which someone could point elsewhere; it must be a real folder";
    if chosen.is_some() {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    let created = match nix::unistd::mkdir(&path, Mode::S_IRWXU) {
        Ok(()) => true,
        Err(Errno::EEXIST) => false,
        Err(e) => return Err(refuse(&format!("cannot create it: {e}"), None)),
    };
    let fd = match nix::fcntl::open(
        &path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ELOOP) => return Err(refuse(LINK, None)),
        Err(Errno::ENOTDIR) => {
            let link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
            return Err(refuse(if link { LINK } else { "it is not a folder" }, None));
        }
        Err(e) => return Err(refuse(&format!("cannot open it: {e}"), None)),
    };
    let st = fstat(&fd).map_err(io::Error::from)?;
    if st.st_uid != uid.as_raw() {
        let why = format!(
            "it belongs to uid {}, not to you (uid {uid}): another user may have put it there",
            st.st_uid
        );
        return Err(refuse(&why, None));
    }
    if created {
        // umask may have taken bits away; the folder must be exactly 0700.
        nix::sys::stat::fchmod(&fd, Mode::S_IRWXU).map_err(io::Error::from)?;
    } else if st.st_mode & 0o7777 != 0o700 {
        let why = format!(
            "it has mode {:04o} and must be 0700 (private to you)",
            st.st_mode & 0o7777
        );
        return Err(refuse(
            &why,
            Some(format!("run chmod 700 {}", path.display())),
        ));
    }
    Ok(RuntimeDir { path, fd })
}

impl RuntimeDir {
    /// The folder's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path to `name` in the folder that goes through the opened folder rather than its name
    /// (Linux); elsewhere its plain path, which only this user or root can change.
    fn through_fd(&self, name: &str) -> PathBuf {
        if cfg!(target_os = "linux") {
            PathBuf::from(format!("/proc/self/fd/{}/{name}", self.fd.as_raw_fd()))
        } else {
            self.path.join(name)
        }
    }

    fn open(&self, name: &str, flags: OFlag, mode: Mode) -> io::Result<File> {
        let fd = nix::fcntl::openat(
            &self.fd,
            name,
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            mode,
        )
        .map_err(io::Error::from)?;
        Ok(File::from(fd))
    }

    /// Reads `name` if it is a regular file of this user with mode 0600, and at most `max`
    /// bytes long. Ok(None): there is no such file.
    fn read_private(&self, name: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
        let mut file = match self.open(name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(io::Error::other("it is a symbolic link"));
            }
            Err(e) => return Err(e),
        };
        let st = fstat(file.as_fd()).map_err(io::Error::from)?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
            return Err(io::Error::other("it is not a regular file"));
        }
        if st.st_uid != nix::unistd::geteuid().as_raw() {
            return Err(io::Error::other(format!(
                "it belongs to uid {}, not to you",
                st.st_uid
            )));
        }
        if st.st_mode & 0o7777 != 0o600 {
            return Err(io::Error::other(format!(
                "it has mode {:04o}, not 0600",
                st.st_mode & 0o7777
            )));
        }
        if st.st_size as u64 > max {
            return Err(io::Error::other(format!("it is larger than {max} bytes")));
        }
        let mut bytes = Vec::new();
        Read::by_ref(&mut file).take(max).read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    }

    /// Writes `name` atomically (a temporary file renamed over it), mode 0600.
    fn write_private(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = format!("{name}.tmp");
        let create = || {
            self.open(
                &tmp,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC,
                Mode::S_IRUSR | Mode::S_IWUSR,
            )
        };
        let mut file = match create() {
            Ok(f) => f,
            // Something that is not a file of ours is in the way: only this user or root could
            // have put it there. Remove it and try once more.
            Err(_) => {
                let _ = self.remove(&tmp);
                create()?
            }
        };
        nix::sys::stat::fchmod(file.as_fd(), Mode::S_IRUSR | Mode::S_IWUSR)
            .map_err(io::Error::from)?;
        file.write_all(bytes)?;
        drop(file);
        nix::fcntl::renameat(&self.fd, tmp.as_str(), &self.fd, name).map_err(io::Error::from)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        nix::unistd::unlinkat(&self.fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
            .map_err(io::Error::from)
    }

    /// Whether `name` exists in the folder.
    pub fn contains(&self, name: &str) -> bool {
        nix::sys::stat::fstatat(&self.fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
    }

    /// The names in the folder that end with `suffix`, without it, sorted.
    pub fn names_ending(&self, suffix: &str) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(self.through_fd(""))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(suffix).map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Binds a listening socket `name` in the folder, mode 0600. Nobody else can reach it in
    /// between: the folder itself admits only this user (and root).
    pub fn bind(&self, name: &str) -> io::Result<UnixListener> {
        let _ = self.remove(name);
        let listener = UnixListener::bind(self.through_fd(name)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("control socket {}: {e}", self.path.join(name).display()),
            )
        })?;
        nix::sys::stat::fchmodat(
            &self.fd,
            name,
            Mode::S_IRUSR | Mode::S_IWUSR,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(io::Error::from)?;
        Ok(listener)
    }

    /// Connects to the socket `name` in the folder.
    pub fn connect(&self, name: &str) -> io::Result<UnixStream> {
        UnixStream::connect(self.through_fd(name))
    }

    /// Removes the socket `name` (at a clean exit).
    pub fn unbind(&self, name: &str) {
        let _ = self.remove(name);
    }
}

/// The effective uid of the process at the other end of a Unix socket (`SO_PEERCRED` on
/// Linux, `getpeereid` elsewhere), as the kernel recorded it when the connection was made.
pub fn peer_uid(socket: &impl AsFd) -> io::Result<u32> {
    let fd = socket.as_fd().as_raw_fd();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: getsockopt writes at most `len` bytes into the zeroed struct.
        unsafe {
            let mut cred: libc::ucred = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
            let r = libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            );
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(cred.uid)
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        // SAFETY: getpeereid writes the two ids it is given.
        unsafe {
            let (mut uid, mut gid) = (0, 0);
            if libc::getpeereid(fd, &mut uid, &mut gid) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(uid)
        }
    }
}

/// An instance name for a config file: its stem and a hash of its path, so that two apps'
/// configs never share runtime files. Give it the canonical path (see [`instance_for`]), so
/// that every spelling of one file names one instance.
pub fn instance_name(config: &Path) -> String {
    let stem = config
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pm")
        .chars()
        .take(32)
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

/// The instance of a config file: named after its canonical path (symbolic links and `..`
/// resolved), so that `run dir/../dir/services.json` and `run link.json` are the same instance
/// as `run dir/services.json`.
pub fn instance_for(config: &Path) -> io::Result<String> {
    let canonical = std::fs::canonicalize(config)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", config.display())))?;
    Ok(instance_name(&canonical))
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
    dir: RuntimeDir,
    /// Instance name.
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
    pub fn claim(dir: RuntimeDir, name: &str) -> Result<Instance, ClaimError> {
        let lock_name = format!("{name}.lock");
        let lock_path = dir.path.join(&lock_name);
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
            dir,
            name: name.to_owned(),
            _lock: lock,
        })
    }

    fn state_name(&self) -> String {
        format!("{}.state", self.name)
    }

    /// Kills what a previous run of this instance left behind (its supervisor and sentinel both
    /// died), and returns how many groups and processes were signalled. The state file is
    /// honoured only if it is a regular file of this user with mode 0600, and each group only
    /// if its leader is the very process recorded (same start time), so a recycled pid is never
    /// hit.
    pub fn kill_leftovers(&self) -> usize {
        // Without /proc a leader's start time cannot be checked, and a pid recorded long ago may
        // belong to someone else by now.
        if !cfg!(target_os = "linux") {
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
    pub fn record(&self, token: &str, groups: impl Iterator<Item = (i32, u64)>) {
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
    pub fn socket_name(&self) -> String {
        format!("{}.sock", self.name)
    }

    /// The runtime folder.
    pub fn dir(&self) -> &RuntimeDir {
        &self.dir
    }

    /// Removes the state file and the control socket after a clean shutdown.
    pub fn clear(&self) {
        let _ = self.dir.remove(&self.state_name());
        self.dir.unbind(&self.socket_name());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_entries_must_name_one_process() {
        let left = parse_state(
            br#"{"supervisor":1,"token":"a1b2","groups":[[4242,99],[4243,0],[0,5],[-1,5],[1,5]]}"#,
        )
        .expect("parses");
        assert_eq!(left.groups, vec![(4242, 99)]);
        assert_eq!(left.refused, 4);
        assert_eq!(left.token, "a1b2");
        assert!(parse_state(br#"{"supervisor":1,"token":"a-b","groups":[]}"#).is_err());
        assert!(parse_state(br#"{"supervisor":1,"token":"","groups":[],"x":1}"#).is_err());
        assert!(parse_state(b"[]").is_err());
    }

    #[test]
    fn instance_names_stay_short() {
        let name = instance_name(Path::new(&format!("/a/{}.json", "x".repeat(300))));
        assert!(name.len() <= 32 + 9, "{name}");
    }
}
