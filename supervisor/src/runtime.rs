//! Per-user runtime files of a supervisor instance: a lock (one supervisor per config at a
//! time), the control socket, and the state file that records the process groups it runs, so
//! that the next start after a crash (of the supervisor and its sentinel both) finds and kills
//! what was left.
//!
//! The folder is handled as systemd and OpenSSH handle theirs: it is opened without following a
//! symbolic link, must belong to this user and have mode 0700 exactly, and every file in it is
//! reached through the opened folder (`openat`, and on Linux `/proc/self/fd/N/...` for the
//! socket, see `platform::path_through`), so swapping the folder's path after the check changes nothing. Files read from it
//! are honoured only when they are regular files of this user with mode 0600.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag, fstat};

pub(crate) mod instance;

pub use instance::{AlreadyRunning, ClaimError, Instance};

/// The variable that chooses the runtime folder; every refusal names it.
pub const ENV_RUNTIME_DIR: &str = "PM_RUNTIME_DIR";

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
    /// where the system can (Linux); elsewhere its plain path, which only this user or root can
    /// change.
    fn through_fd(&self, name: &str) -> PathBuf {
        crate::platform::path_through(&self.fd, &self.path, name)
    }

    pub(crate) fn open(&self, name: &str, flags: OFlag, mode: Mode) -> io::Result<File> {
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
    pub(crate) fn read_private(&self, name: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
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
    pub(crate) fn write_private(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
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

    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        nix::unistd::unlinkat(&self.fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
            .map_err(io::Error::from)
    }

    /// Whether `name` in the folder is the file open as `file` (not removed, not replaced).
    pub(crate) fn names_same_file(&self, name: &str, file: &impl AsFd) -> bool {
        let (Ok(named), Ok(open)) = (
            nix::sys::stat::fstatat(&self.fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW),
            fstat(file.as_fd()),
        ) else {
            return false;
        };
        (named.st_dev, named.st_ino) == (open.st_dev, open.st_ino)
    }

    /// Whether `name` exists in the folder.
    pub(crate) fn contains(&self, name: &str) -> bool {
        nix::sys::stat::fstatat(&self.fd, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
    }

    /// The names in the folder that end with `suffix`, without it, sorted.
    pub(crate) fn names_ending(&self, suffix: &str) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(self.through_fd(""))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(suffix).map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Binds a listening socket `name` in the folder, mode 0600. Nobody else can reach it in
    /// between: the folder itself admits only this user (and root).
    pub(crate) fn bind(&self, name: &str) -> io::Result<UnixListener> {
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
    pub(crate) fn connect(&self, name: &str) -> io::Result<UnixStream> {
        UnixStream::connect(self.through_fd(name))
    }

    /// Removes the socket `name` (at a clean exit).
    pub(crate) fn unbind(&self, name: &str) {
        let _ = self.remove(name);
    }
}

/// Longest instance name: the control socket's path (`<runtime folder>/<name>.sock`) must stay
/// within the 108 bytes a Unix socket address holds.
pub const MAX_INSTANCE_NAME: usize = 64;

/// Checks an instance name (`serve --name`, `--instance`). It names files in the runtime folder
/// and is typed on command lines: 1 to 64 ASCII letters, digits, `-`, `_` and `.`, not starting
/// with `.` or `-`. The error says what is wrong and what a name may hold.
pub fn check_instance_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "it is empty".to_owned()
    } else if name.len() > MAX_INSTANCE_NAME {
        format!("it is {} bytes long", name.len())
    } else if let Some((i, c)) = name
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
    {
        format!("it holds {c:?} at character {}", i + 1)
    } else if name.starts_with(['.', '-']) {
        format!("it starts with '{}'", &name[..1])
    } else {
        return Ok(());
    };
    Err(format!(
        "{name:?} is not an instance name: {why}; use 1 to {MAX_INSTANCE_NAME} letters, digits, '-', '_' and '.', not starting with '.' or '-'"
    ))
}

/// An instance name for a config file: its stem and a hash of its path, so that two apps'
/// configs never share runtime files. Give it the canonical path (see [`instance_for`]), so
/// that every spelling of one file names one instance.
pub fn instance_name(config: &Path) -> String {
    let mut stem = config
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
    // A name starts with neither '-' nor '.' (check_instance_name).
    if stem.is_empty() || stem.starts_with('-') {
        stem.insert(0, '_');
    }
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

#[cfg(test)]
mod tests;
