//! Turning a service spec into a running process: the launcher chosen by extension, the channel
//! on fd 3, the environment, and a session of its own.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pm_child::protocol::{
    ENV_CHANNEL_FD, ENV_CHANNEL_ID, ENV_NODE_CHANNEL_FD, ENV_NODE_CHANNEL_SERIALIZATION_MODE,
    ENV_PROTOCOL, ENV_SERVICE_NAME, ENV_WATCHDOG_MS, PROTOCOL_VERSION,
};

use crate::config::ServiceSpec;
use crate::platform::{self, Pid};

/// The fd number of the channel in every child.
pub(crate) const CHILD_CHANNEL_FD: i32 = 3;

/// Marks every process a service starts, so that descendants which left the process group
/// (double fork + `setsid`) can still be found. Value: `<run token>-<process number>`.
pub(crate) const ENV_SERVICE_TAG: &str = "PM_SERVICE_TAG";

/// Variables the supervisor sets itself; inherited copies are removed first, so that a
/// supervisor started by a Node parent does not hand its own `NODE_CHANNEL_FD` to a child.
const OWN_VARS: [&str; 8] = [
    ENV_CHANNEL_FD,
    ENV_WATCHDOG_MS,
    ENV_CHANNEL_ID,
    ENV_PROTOCOL,
    ENV_SERVICE_NAME,
    ENV_SERVICE_TAG,
    ENV_NODE_CHANNEL_FD,
    ENV_NODE_CHANNEL_SERIALIZATION_MODE,
];

/// Why a service could not be launched. Reported for that service; the others keep running.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    #[error("script not found: {}", .0.display())]
    ScriptNotFound(PathBuf),
    /// The interpreter is not on PATH (or not at the given path).
    #[error("interpreter not found: {0} (looked on PATH{1})")]
    InterpreterNotFound(String, String),
    #[error("{} is a folder, not a file", .0.display())]
    IsFolder(PathBuf),
    #[error("not executable: {} (make it executable, or set \"interpreter\")", .0.display())]
    NotExecutable(PathBuf),
    /// Any other failure of fork/exec.
    #[error("cannot start {}: {source}", program.display())]
    Spawn { program: PathBuf, source: io::Error },
}

/// What to execute for a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) program: PathBuf,
    /// Its arguments (the script first, for interpreters).
    pub(crate) args: Vec<OsString>,
    /// The launcher is Node, which gets Node's own IPC variables.
    pub(crate) node: bool,
    /// The launcher is Python, which gets `PYTHONUNBUFFERED=1` so its output reaches the log
    /// line by line.
    pub(crate) python: bool,
}

impl Plan {
    /// `node /srv/a.js --port 1`, for the logs; control characters in it are escaped, so that
    /// an argument cannot break the line or reach a terminal as an escape sequence.
    pub(crate) fn describe(&self) -> String {
        let mut s = printable(&self.program.to_string_lossy());
        for a in &self.args {
            s.push(' ');
            s.push_str(&printable(&a.to_string_lossy()));
        }
        s
    }
}

/// `s` with its control characters escaped (`\n`, `\u{1b}`).
fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Chooses the launcher: `interpreter` if set; Node for `.js`/`.mjs`/`.cjs`; `python3` (else
/// `python`) for `.py`; anything else is executed directly. `path_var` is the child's PATH.
pub(crate) fn plan(spec: &ServiceSpec, path_var: Option<&OsStr>) -> Result<Plan, LaunchError> {
    let script = spec.cwd.join(&spec.script);
    let ext = script.extension().and_then(OsStr::to_str).unwrap_or("");
    // Electron running as Node reads scripts inside an `app.asar` archive, which is a file,
    // not a folder, on disk: such a script cannot be checked here.
    let in_archive = script
        .ancestors()
        .any(|a| a.extension().is_some_and(|e| e == "asar") && a.is_file());
    let with_script = |program: PathBuf, node: bool, python: bool| -> Result<Plan, LaunchError> {
        if script.is_dir() {
            return Err(LaunchError::IsFolder(script.clone()));
        }
        if !(script.is_file() || node && in_archive) {
            return Err(LaunchError::ScriptNotFound(script.clone()));
        }
        let mut args = vec![script.clone().into_os_string()];
        args.extend(spec.args.iter().map(OsString::from));
        Ok(Plan {
            program,
            args,
            node,
            python,
        })
    };
    if let Some(interp) = &spec.interpreter {
        let program = find_program(interp, &spec.cwd, path_var)?;
        let base = program.file_name().and_then(OsStr::to_str).unwrap_or("");
        let node = matches!(base, "node" | "nodejs")
            || base.starts_with("node-")
            || base.starts_with("node.");
        let python = base.starts_with("python");
        return with_script(program, node, python);
    }
    match ext {
        "js" | "mjs" | "cjs" => {
            let node = spec.node_path.as_deref().unwrap_or("node");
            with_script(find_program(node, &spec.cwd, path_var)?, true, false)
        }
        "py" => {
            let program = find_program("python3", &spec.cwd, path_var)
                .or_else(|_| find_program("python", &spec.cwd, path_var))
                .map_err(|_| {
                    LaunchError::InterpreterNotFound("python3 or python".into(), String::new())
                })?;
            with_script(program, false, true)
        }
        _ => {
            // A bare name that is not a file in cwd is looked up on PATH, so that
            // `"script": "redis-server"` works.
            let program = if script.exists() || spec.script.contains('/') {
                script.clone()
            } else {
                find_program(&spec.script, &spec.cwd, path_var)
                    .map_err(|_| LaunchError::ScriptNotFound(script.clone()))?
            };
            if !program.exists() {
                return Err(LaunchError::ScriptNotFound(program));
            }
            if program.is_dir() {
                return Err(LaunchError::IsFolder(program));
            }
            if !is_executable(&program) {
                return Err(LaunchError::NotExecutable(program));
            }
            Ok(Plan {
                program,
                args: spec.args.iter().map(OsString::from).collect(),
                node: false,
                python: false,
            })
        }
    }
}

/// A name with a `/` is a path (relative to `cwd`); a bare name is looked up on PATH.
fn find_program(name: &str, cwd: &Path, path_var: Option<&OsStr>) -> Result<PathBuf, LaunchError> {
    if name.contains('/') {
        let p = cwd.join(name);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(LaunchError::InterpreterNotFound(
                p.display().to_string(),
                String::new(),
            ))
        };
    }
    let path_var = path_var.unwrap_or_else(|| OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(path_var)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file() && is_executable(p))
        .ok_or_else(|| {
            LaunchError::InterpreterNotFound(
                name.to_owned(),
                format!(" = {}", path_var.to_string_lossy()),
            )
        })
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A started process: its pid, the supervisor's end of the channel and its output pipes.
#[derive(Debug)]
pub(crate) struct Spawned {
    /// Process id; also its process-group and session id.
    pub(crate) pid: Pid,
    /// The supervisor's end of the channel (close-on-exec).
    pub(crate) channel: UnixStream,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

/// Starts `plan` for `spec`: a session of its own (so its whole process group can be
/// signalled, see [`platform::new_session`]), stdin from /dev/null, stdout and stderr to pipes, the channel on fd 3, and the
/// protocol's variables. `tag` is the value of [`ENV_SERVICE_TAG`].
pub(crate) fn spawn(plan: &Plan, spec: &ServiceSpec, tag: &str) -> Result<Spawned, LaunchError> {
    let spawn_error = |source| LaunchError::Spawn {
        program: plan.program.clone(),
        source,
    };
    let (ours, theirs) = UnixStream::pair().map_err(spawn_error)?;
    let channel_id = platform::socket_id(&theirs).map_err(spawn_error)?;
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in OWN_VARS {
        cmd.env_remove(var);
    }
    if plan.python && std::env::var_os("PYTHONUNBUFFERED").is_none() {
        cmd.env("PYTHONUNBUFFERED", "1");
    }
    cmd.envs(&spec.env);
    if plan.python
        && let Some(pythonpath) = super::shipped_python::for_service(&spec.env)
    {
        cmd.env("PYTHONPATH", pythonpath);
    }
    cmd.env(ENV_CHANNEL_FD, CHILD_CHANNEL_FD.to_string())
        .env(ENV_CHANNEL_ID, channel_id)
        .env(ENV_PROTOCOL, PROTOCOL_VERSION.to_string())
        .env(ENV_SERVICE_NAME, spec.name.as_deref().unwrap_or(""))
        .env(ENV_SERVICE_TAG, tag);
    if let Some(w) = spec.watchdog {
        cmd.env(ENV_WATCHDOG_MS, w.as_millis().to_string());
    }
    if plan.node {
        cmd.env(ENV_NODE_CHANNEL_FD, CHILD_CHANNEL_FD.to_string())
            .env(ENV_NODE_CHANNEL_SERIALIZATION_MODE, "json");
    }
    platform::new_session(&mut cmd, Some((theirs.as_raw_fd(), CHILD_CHANNEL_FD)));
    let mut child = cmd.spawn().map_err(|source| match source.raw_os_error() {
        Some(libc::EACCES) => LaunchError::NotExecutable(plan.program.clone()),
        Some(libc::ENOENT) => LaunchError::ScriptNotFound(plan.program.clone()),
        _ => LaunchError::Spawn {
            program: plan.program.clone(),
            source,
        },
    })?;
    drop(theirs);
    let pid = Pid::from_raw(child.id() as i32);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        unreachable!("stdout and stderr were set to piped");
    };
    platform::enlarge_pipe(&stdout);
    platform::enlarge_pipe(&stderr);
    // The `Child` is dropped without waiting: the supervisor's reaper owns every exit status.
    drop(child);
    Ok(Spawned {
        pid,
        channel: ours,
        stdout: stdout.into(),
        stderr: stderr.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawService;

    fn spec(dir: &Path, script: &str) -> ServiceSpec {
        RawService {
            script: script.into(),
            ..Default::default()
        }
        .resolve(dir, None)
        .expect("valid spec")
    }

    #[test]
    fn launcher_by_extension() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["a.js", "b.mjs", "c.py", "d.sh"] {
            std::fs::write(dir.path().join(f), "").expect("write");
        }
        std::fs::set_permissions(
            dir.path().join("d.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        let path = std::env::var_os("PATH");
        let js = plan(&spec(dir.path(), "a.js"), path.as_deref()).expect("node");
        assert!(js.node && js.program.ends_with("node"));
        assert!(
            plan(&spec(dir.path(), "b.mjs"), path.as_deref())
                .expect("node")
                .node
        );
        let py = plan(&spec(dir.path(), "c.py"), path.as_deref()).expect("python");
        assert!(py.python && !py.node);
        let sh = plan(&spec(dir.path(), "d.sh"), path.as_deref()).expect("direct");
        assert_eq!(sh.program, dir.path().join("d.sh"));
        assert!(sh.args.is_empty());
    }

    #[test]
    fn control_characters_in_arguments_are_escaped_in_descriptions() {
        let plan = Plan {
            program: "/bin/echo".into(),
            args: vec!["a\nFAKE pm  | line".into(), "\u{1b}[2J".into()],
            node: false,
            python: false,
        };
        assert_eq!(plan.describe(), "/bin/echo a\\nFAKE pm  | line \\u{1b}[2J");
    }

    #[test]
    fn launch_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("plain"), "").expect("write");
        let path = std::env::var_os("PATH");
        let err = plan(&spec(dir.path(), "missing.js"), path.as_deref()).expect_err("missing");
        assert!(matches!(err, LaunchError::ScriptNotFound(_)), "{err}");
        let err = plan(&spec(dir.path(), "plain"), path.as_deref()).expect_err("not executable");
        assert!(matches!(err, LaunchError::NotExecutable(_)), "{err}");
        std::fs::create_dir(dir.path().join("folder.py")).expect("mkdir");
        for folder in [".", "folder.py"] {
            let err = plan(&spec(dir.path(), folder), path.as_deref()).expect_err("a folder");
            assert!(err.to_string().contains("is a folder, not a file"), "{err}");
        }
        let mut s = spec(dir.path(), "plain");
        s.interpreter = Some("no-such-interpreter-xyz".into());
        let err = plan(&s, path.as_deref()).expect_err("no interpreter");
        assert!(err.to_string().contains("no-such-interpreter-xyz"), "{err}");
    }
}
