//! One service's spec: as written ([`RawService`], in a config file or a control `start`
//! request), and checked ([`ServiceSpec`], by [`RawService::resolve`], the one place a spec is
//! checked).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::guards::{MAX_WATCHDOG_MS, MIN_WATCHDOG_MS, MemorySize, WatchSetting, default_watch};
use super::locate::{self, Segment};
use super::{
    DEFAULT_KILL_TIMEOUT_MS, DEFAULT_LOG_KEEP, DEFAULT_LOG_MAX_SIZE, DEFAULT_RESTART_AT,
    DEFAULT_RESTART_OK_MS, MAX_LOG_KEEP, MAX_NAME_CHARS, MIN_LOG_MAX_SIZE,
};

/// One service as written in the config file or a control `start` request (the field names of
/// the original JavaScript interface). This is the one place a spec is checked: the Node
/// manager sends specs as they are, and a field that is `null` is not set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, expecting = "an object with at least \"script\"")]
pub struct RawService {
    /// File to run, relative to `cwd`.
    pub script: String,
    /// Optional; several services may share a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Arguments passed to the script.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<String>,
    /// Working directory, relative to the base folder (the config file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Log file, relative to the base folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Merged over the supervisor's environment.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env: BTreeMap<String, EnvValue>,
    /// Restart delays in ms; the last one repeats.
    #[serde(rename = "restartAt", default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<Vec<u64>>,
    /// A crash after this many ms of uptime counts as a first crash again.
    #[serde(rename = "restartOk", default, skip_serializing_if = "Option::is_none")]
    pub restart_ok: Option<u64>,
    /// Remove ANSI escape sequences from the output.
    #[serde(rename = "stripANSI", default, skip_serializing_if = "Option::is_none")]
    pub strip_ansi: Option<bool>,
    /// Overrides the launcher chosen by the script's extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// Node binary for this service (`.js`, `.mjs`, `.cjs`).
    #[serde(rename = "nodePath", default, skip_serializing_if = "Option::is_none")]
    pub node_path: Option<String>,
    /// Milliseconds between the stop request and SIGKILL.
    #[serde(
        rename = "killTimeout",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kill_timeout: Option<u64>,
    /// Rotate the log file when it would grow past this many bytes; 0: never.
    #[serde(
        rename = "logMaxSize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub log_max_size: Option<u64>,
    /// Rotated log files kept (`app.log.1` is the newest).
    #[serde(rename = "logKeep", default, skip_serializing_if = "Option::is_none")]
    pub log_keep: Option<u32>,
    /// The longest silence (ms) between two heartbeats before the process is hung.
    #[serde(
        rename = "watchdogMs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub watchdog_ms: Option<u64>,
    /// Restart when the process group's RSS stays above this: bytes, or `"500M"`, `"1.5G"`.
    #[serde(rename = "maxMemory", default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<MemorySize>,
    /// Names of the services that must be up before this one starts.
    #[serde(
        rename = "dependsOn",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub depends_on: Vec<String>,
    /// Restart when files change: `true` (the script's folder) or paths and globs, relative to
    /// `cwd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchSetting>,
}

/// `null` for a field that otherwise has a default: not set.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An environment value: a string, or a number or boolean written without quotes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EnvValue {
    /// `"3000"`
    String(String),
    /// `3000`
    Number(serde_json::Number),
    /// `true`
    Bool(bool),
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EnvValue, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = EnvValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue::String(v.to_owned()))
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<EnvValue, E> {
                Ok(EnvValue::Bool(v))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<EnvValue, E> {
                Ok(EnvValue::Number(v.into()))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<EnvValue, E> {
                Ok(EnvValue::Number(v.into()))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<EnvValue, E> {
                serde_json::Number::from_f64(v)
                    .map(EnvValue::Number)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Float(v), &self))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl fmt::Display for EnvValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvValue::String(s) => f.write_str(s),
            EnvValue::Number(n) => write!(f, "{n}"),
            EnvValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// A checked service spec, with absolute paths and defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The `name`, if any.
    pub name: Option<String>,
    /// `script` as written (resolved against `cwd` at launch).
    pub script: String,
    /// Arguments passed to the script.
    pub args: Vec<String>,
    /// Absolute working directory.
    pub cwd: PathBuf,
    /// Absolute log file path, or None for the supervisor's stdout.
    pub log: Option<PathBuf>,
    /// Variables merged over the supervisor's environment.
    pub env: BTreeMap<String, String>,
    /// Restart delays in ms.
    pub restart_at: Vec<u64>,
    /// Uptime after which a crash counts as a first crash again.
    pub restart_ok: Duration,
    /// Remove ANSI escape sequences from the output.
    pub strip_ansi: bool,
    /// Overrides the launcher chosen by the script's extension.
    pub interpreter: Option<String>,
    /// Node binary for `.js` scripts (the service's `nodePath`, else the file's).
    pub node_path: Option<String>,
    /// Time between the stop request and SIGKILL.
    pub kill_timeout: Duration,
    /// Log rotation size in bytes (0: never).
    pub log_max_size: u64,
    /// Rotated log files kept.
    pub log_keep: u32,
    /// `watchdogMs`: the longest silence between heartbeats.
    pub watchdog: Option<Duration>,
    /// `maxMemory` in bytes.
    pub max_memory: Option<u64>,
    /// `dependsOn`: names of services that must be up first.
    pub depends_on: Vec<String>,
    /// What `watch` watches: absolute paths, which may hold glob characters. Empty: no watch.
    pub watch: Vec<PathBuf>,
    /// `watch: false`: not watched even with `run --watch`.
    pub watch_off: bool,
}

impl ServiceSpec {
    /// Turns watch mode on with the default paths (`run --watch`), unless `watch` is set
    /// (a list, or `false`).
    pub fn watch_by_default(&mut self) {
        if self.watch.is_empty() && !self.watch_off {
            self.watch = vec![default_watch(&self.cwd, &self.script)];
        }
    }
}

/// What is wrong with one field of a service spec: the field's path below the service
/// (`cwd`, `env.PORT`) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path below the service, as segments.
    pub field: Vec<Segment>,
    /// What is wrong, for a person.
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: vec![Segment::Key(field.to_owned())],
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            locate::path_to_string(&self.field),
            self.message
        )
    }
}

impl RawService {
    /// Checks the spec and resolves its paths against `base` (the config file's folder, or the
    /// controlling process's folder for a control request). `default_node` is the file-level
    /// `nodePath`.
    pub fn resolve(
        &self,
        base: &Path,
        default_node: Option<&str>,
    ) -> Result<ServiceSpec, FieldError> {
        if self.script.trim().is_empty() {
            return Err(FieldError::new("script", "must not be empty"));
        }
        for (field, value) in [
            ("script", Some(&self.script)),
            ("cwd", self.cwd.as_ref()),
            ("log", self.log.as_ref()),
            ("interpreter", self.interpreter.as_ref()),
            ("nodePath", self.node_path.as_ref()),
        ] {
            if value.is_some_and(|v| v.contains('\0')) {
                return Err(FieldError::new(field, "must not contain a NUL byte"));
            }
        }
        if let Some(name) = &self.name {
            check_name(name).map_err(|m| FieldError::new("name", m))?;
        }
        if let Some(i) = self.args.iter().position(|a| a.contains('\0')) {
            return Err(FieldError {
                field: vec![Segment::Key("args".into()), Segment::Index(i)],
                message: "must not contain a NUL byte".into(),
            });
        }
        if self.cwd.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(FieldError::new(
                "cwd",
                "must not be empty (leave it out for the base folder)",
            ));
        }
        let cwd = match &self.cwd {
            Some(c) => base.join(c),
            None => base.to_path_buf(),
        };
        match std::fs::metadata(&cwd) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(FieldError::new(
                    "cwd",
                    format!("not a folder: {}", cwd.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FieldError::new(
                    "cwd",
                    format!("folder does not exist: {}", cwd.display()),
                ));
            }
            Err(e) => return Err(FieldError::new("cwd", format!("{}: {e}", cwd.display()))),
        }
        let mut env = BTreeMap::new();
        for (k, v) in &self.env {
            let bad = |message: &str| FieldError {
                field: vec![Segment::Key("env".into()), Segment::Key(k.clone())],
                message: message.into(),
            };
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(bad("variable names must be non-empty, without '=' or NUL"));
            }
            let v = v.to_string();
            if v.contains('\0') {
                return Err(bad("value must not contain a NUL byte"));
            }
            env.insert(k.clone(), v);
        }
        for (field, value) in [
            ("interpreter", &self.interpreter),
            ("nodePath", &self.node_path),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(FieldError::new(field, "must not be empty"));
            }
        }
        if self.log_keep.is_some_and(|k| k > MAX_LOG_KEEP) {
            return Err(FieldError::new(
                "logKeep",
                format!("keeps at most {MAX_LOG_KEEP} files"),
            ));
        }
        if self
            .log_max_size
            .is_some_and(|m| m != 0 && m < MIN_LOG_MAX_SIZE)
        {
            return Err(FieldError::new(
                "logMaxSize",
                format!("must be 0 (never rotate) or at least {MIN_LOG_MAX_SIZE} bytes"),
            ));
        }
        if self.log.as_deref().is_some_and(|l| l.trim().is_empty()) {
            return Err(FieldError::new(
                "log",
                "must not be empty (leave it out to log to stdout)",
            ));
        }
        let log = self.log.as_ref().map(|l| normalize(&base.join(l)));
        if let Some(log) = &log {
            check_log_path(log).map_err(|m| FieldError::new("log", m))?;
        }
        if let Some(w) = self.watchdog_ms
            && !(MIN_WATCHDOG_MS..=MAX_WATCHDOG_MS).contains(&w)
        {
            return Err(FieldError::new(
                "watchdogMs",
                format!("must be {MIN_WATCHDOG_MS} to {MAX_WATCHDOG_MS} ms"),
            ));
        }
        let max_memory = match &self.max_memory {
            Some(m) => Some(m.bytes().map_err(|e| FieldError::new("maxMemory", e))?),
            None => None,
        };
        for (i, dep) in self.depends_on.iter().enumerate() {
            let at = |message: String| FieldError {
                field: vec![Segment::Key("dependsOn".into()), Segment::Index(i)],
                message,
            };
            check_name(dep).map_err(at)?;
            if self.name.as_deref() == Some(dep.as_str()) {
                return Err(at(format!("{dep:?} cannot depend on itself")));
            }
        }
        let cwd = normalize(&cwd);
        let watch = match &self.watch {
            None | Some(WatchSetting::On(false)) => Vec::new(),
            Some(WatchSetting::On(true)) => vec![default_watch(&cwd, &self.script)],
            Some(WatchSetting::Paths(paths)) => {
                let mut out = Vec::with_capacity(paths.len());
                for (i, p) in paths.iter().enumerate() {
                    let at = |message: &str| FieldError {
                        field: vec![Segment::Key("watch".into()), Segment::Index(i)],
                        message: message.into(),
                    };
                    if p.trim().is_empty() || p.contains('\0') {
                        return Err(at("must be a non-empty path or glob"));
                    }
                    if let Err(e) = globset::Glob::new(p) {
                        return Err(at(&format!("not a valid glob: {}", e.kind())));
                    }
                    out.push(normalize(&cwd.join(p)));
                }
                out
            }
        };
        Ok(ServiceSpec {
            name: self.name.clone(),
            script: self.script.clone(),
            args: self.args.clone(),
            cwd,
            log,
            env,
            restart_at: self
                .restart_at
                .clone()
                .unwrap_or_else(|| DEFAULT_RESTART_AT.to_vec()),
            restart_ok: Duration::from_millis(self.restart_ok.unwrap_or(DEFAULT_RESTART_OK_MS)),
            strip_ansi: self.strip_ansi.unwrap_or(false),
            interpreter: self.interpreter.clone(),
            node_path: self
                .node_path
                .clone()
                .or_else(|| default_node.map(str::to_owned)),
            kill_timeout: Duration::from_millis(
                self.kill_timeout.unwrap_or(DEFAULT_KILL_TIMEOUT_MS),
            ),
            log_max_size: self.log_max_size.unwrap_or(DEFAULT_LOG_MAX_SIZE),
            log_keep: self.log_keep.unwrap_or(DEFAULT_LOG_KEEP),
            watchdog: self.watchdog_ms.map(Duration::from_millis),
            max_memory,
            depends_on: self.depends_on.clone(),
            watch,
            watch_off: self.watch == Some(WatchSetting::On(false)),
        })
    }
}

/// A name ends up in every log line of its service and on terminals: characters that could
/// forge a line (line breaks, the `|` that ends a line's prefix) or act on a terminal (escape
/// sequences, other control and bidirectional-override characters) are refused.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty (leave it out for a nameless service)".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("must be at most {MAX_NAME_CHARS} characters"));
    }
    let bad = name.chars().enumerate().find(|&(_, c)| {
        c == '|'
            || c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    });
    match bad {
        None => Ok(()),
        Some((i, '|')) => Err(format!(
            "must not contain '|' (character {}): it ends the prefix of a log line",
            i + 1
        )),
        Some((i, c)) => Err(format!(
            "must not contain control characters (U+{:04X} at character {}): they would break log lines or reach terminals as escape sequences",
            u32::from(c),
            i + 1
        )),
    }
}

/// A log path that exists must be a regular file: a FIFO or a device could block the writer,
/// a folder cannot be written.
fn check_log_path(path: &Path) -> Result<(), String> {
    let Ok(meta) = std::fs::metadata(path) else {
        // Created when the service starts; failures to do so are reported then.
        return Ok(());
    };
    if meta.is_file() {
        return Ok(());
    }
    Err(format!(
        "{} is {}; a log must be a regular file (leave \"log\" out to log to stdout)",
        path.display(),
        crate::logs::file::kind_of(meta.file_type())
    ))
}

/// Removes `.` segments and folds `..` lexically, so logs and messages show clean paths.
pub(super) fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}
