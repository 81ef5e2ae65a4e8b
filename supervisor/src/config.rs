//! The config file, `{"services": [ ... ]}`, and the service spec it holds.
//!
//! Every error names the file, the line and column, and the field (`services[1].cwd`), and is
//! found before anything is started. The spec is the same one the control channel's `start`
//! request carries, so both are checked by [`RawService::resolve`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::json_locate::{self, Segment};

/// `restartAt` when a service does not set it: 100 ms, 500 ms, 1 s, 10 s, 30 s, 1 min, 5 min,
/// then every 15 min.
pub const DEFAULT_RESTART_AT: [u64; 8] = [100, 500, 1000, 10_000, 30_000, 60_000, 300_000, 900_000];
/// `restartOk` when a service does not set it: 30 minutes.
pub const DEFAULT_RESTART_OK_MS: u64 = 30 * 60 * 1000;
/// `killTimeout` when a service does not set it.
pub const DEFAULT_KILL_TIMEOUT_MS: u64 = 200;
/// `logMaxSize` when a service does not set it: 10 MiB.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// `logKeep` when a service does not set it.
pub const DEFAULT_LOG_KEEP: u32 = 5;
/// Smallest `logMaxSize` other than 0: every rotation renames up to `logKeep` files, so a tiny
/// limit would turn a chatty service into a storm of renames.
pub const MIN_LOG_MAX_SIZE: u64 = 4096;
/// Most rotated files a service keeps.
pub const MAX_LOG_KEEP: u32 = 1000;
/// Longest service name, in characters: every log line carries it.
pub const MAX_NAME_CHARS: usize = 128;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    services: Vec<RawService>,
    /// Node binary for every `.js` service that does not set its own.
    #[serde(rename = "nodePath")]
    node_path: Option<String>,
}

/// One service as written in the config file or a control `start` request (the field names of
/// the original JavaScript interface).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// File to run, relative to `cwd`.
    pub script: String,
    /// Optional; several services may share a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Arguments passed to the script.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Working directory, relative to the base folder (the config file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Log file, relative to the base folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Merged over the supervisor's environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
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
}

/// An environment value: a string, or a number or boolean written without quotes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum EnvValue {
    /// `"3000"`
    String(String),
    /// `3000`
    Number(serde_json::Number),
    /// `true`
    Bool(bool),
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
    /// Arguments.
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
    /// Interpreter override.
    pub interpreter: Option<String>,
    /// Node binary.
    pub node_path: Option<String>,
    /// Time between the stop request and SIGKILL.
    pub kill_timeout: Duration,
    /// Log rotation size in bytes (0: never).
    pub log_max_size: u64,
    /// Rotated log files kept.
    pub log_keep: u32,
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
            json_locate::path_to_string(&self.field),
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
        Ok(ServiceSpec {
            name: self.name.clone(),
            script: self.script.clone(),
            args: self.args.clone(),
            cwd: normalize(&cwd),
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
        })
    }
}

/// A name ends up in every log line of its service and on terminals: characters that could
/// forge a line (line breaks, the `|` that ends a line's prefix) or act on a terminal (escape
/// sequences, other control and bidirectional-override characters) are refused.
pub fn check_name(name: &str) -> Result<(), String> {
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
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::metadata(path) else {
        // Created when the service starts; failures to do so are reported then.
        return Ok(());
    };
    let t = meta.file_type();
    let what = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(format!(
        "{} is {what}; a log must be a regular file (leave \"log\" out to log to stdout)",
        path.display()
    ))
}

/// Removes `.` segments and folds `..` lexically, so logs and messages show clean paths.
fn normalize(p: &Path) -> PathBuf {
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

/// A config file with every service checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (absolute).
    pub path: PathBuf,
    /// The services, in file order.
    pub services: Vec<ServiceSpec>,
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid, at a known place.
    #[error("{}:{line}:{column}: {}{message}", path.display(), field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// JSON path of the offending field (`services[1].cwd`), when there is one.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let bytes = std::fs::read(&abs).map_err(|source| ConfigError::Read {
            path: abs.clone(),
            source,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let bytes = e.as_bytes();
                let utf16 = bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]);
                let at = e.utf8_error().valid_up_to();
                let valid = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
                let (line, column) = json_locate::line_column(valid, at);
                return Err(ConfigError::Invalid {
                    path: abs,
                    line,
                    column,
                    field: None,
                    message: if utf16 {
                        "the file is UTF-16; save it as UTF-8".into()
                    } else {
                        "the file is not UTF-8 text".into()
                    },
                });
            }
        };
        Self::parse(&abs, &text)
    }

    /// Checks config text read from `path` (used for messages and as the base folder).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let base = path.parent().unwrap_or(Path::new("/"));
        let at_start = |message: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: 1,
            column: 1,
            field: None,
            message: message.into(),
        };
        if text.starts_with('\u{feff}') {
            return Err(at_start(
                "the file starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 without one",
            ));
        }
        let first = text.find(|c: char| !c.is_ascii_whitespace());
        if let Some(i) = first.filter(|&i| !text[i..].starts_with('{')) {
            let (line, column) = json_locate::line_column(text, i);
            let hint = if text[i..].starts_with('[') {
                ", with the list of services in it"
            } else {
                ""
            };
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                field: None,
                message: format!("the file must be an object, {{\"services\": [...]}}{hint}"),
            });
        }
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: RawConfig = match serde_path_to_error::deserialize(de) {
            Ok(raw) => raw,
            Err(err) => {
                let field = err.path().to_string();
                let inner = err.into_inner();
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line: inner.line(),
                    column: inner.column(),
                    field: (field != ".").then_some(field),
                    message: strip_position(&inner.to_string()),
                });
            }
        };
        if raw.node_path.as_deref().is_some_and(|n| n.contains('\0')) {
            let (line, column) = json_locate::locate(text, &[Segment::Key("nodePath".into())])
                .map(|at| json_locate::line_column(text, at))
                .unwrap_or((1, 1));
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                field: Some("nodePath".into()),
                message: "must not contain a NUL byte".into(),
            });
        }
        let mut services = Vec::with_capacity(raw.services.len());
        for (i, svc) in raw.services.iter().enumerate() {
            match svc.resolve(base, raw.node_path.as_deref()) {
                Ok(spec) => services.push(spec),
                Err(e) => {
                    let mut full = vec![Segment::Key("services".into()), Segment::Index(i)];
                    full.extend(e.field.iter().cloned());
                    let (line, column) = json_locate::locate(text, &full)
                        .map(|at| json_locate::line_column(text, at))
                        .unwrap_or((1, 1));
                    return Err(ConfigError::Invalid {
                        path: path.to_path_buf(),
                        line,
                        column,
                        field: Some(json_locate::path_to_string(&full)),
                        message: e.message,
                    });
                }
            }
        }
        Ok(Config {
            path: path.to_path_buf(),
            services,
        })
    }
}

/// serde_json appends " at line L column C" to its messages; the error already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("svc")).expect("mkdir");
        Config::parse(&dir.path().join("services.json"), text).map_err(|e| {
            e.to_string()
                .replace(&dir.path().display().to_string(), "DIR")
        })
    }

    #[test]
    fn defaults_are_filled_in() {
        let cfg = parse(r#"{"services":[{"script":"a.js","cwd":"svc"}]}"#).expect("valid");
        let s = &cfg.services[0];
        assert_eq!(s.kill_timeout, Duration::from_millis(200));
        assert_eq!(s.restart_at, DEFAULT_RESTART_AT.to_vec());
        assert_eq!(s.restart_ok, Duration::from_secs(1800));
        assert!(s.cwd.ends_with("svc"));
    }

    #[test]
    fn unknown_field_names_place_and_field() {
        let err =
            parse("{\"services\": [\n  {\"script\": \"a.js\"},\n  {\"scirpt\": \"b.js\"}\n]}")
                .expect_err("invalid");
        assert!(err.starts_with("DIR/services.json:3:"), "{err}");
        assert!(err.contains("services[1]"), "{err}");
        assert!(err.contains("unknown field `scirpt`"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = parse("{\"services\": [{\"script\": \"a.js\", \"killTimeout\": \"soon\"}]}")
            .expect_err("invalid");
        assert!(err.contains("services[0].killTimeout"), "{err}");
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn missing_script() {
        let err = parse("{\"services\": [{\"name\": \"x\"}]}").expect_err("invalid");
        assert!(err.contains("missing field `script`"), "{err}");
        assert!(err.contains("services[0]"), "{err}");
    }

    #[test]
    fn missing_cwd_points_at_the_value() {
        let err = parse("{\"services\": [\n {\"script\": \"a.js\",\n  \"cwd\": \"nope\"}]}")
            .expect_err("invalid");
        assert_eq!(
            err,
            "DIR/services.json:3:10: services[0].cwd: folder does not exist: DIR/nope"
        );
    }

    #[test]
    fn env_accepts_numbers_and_rejects_objects() {
        let cfg = parse(r#"{"services":[{"script":"a","env":{"PORT":3000,"DEBUG":true}}]}"#)
            .expect("valid");
        assert_eq!(cfg.services[0].env["PORT"], "3000");
        assert_eq!(cfg.services[0].env["DEBUG"], "true");
        let err =
            parse(r#"{"services":[{"script":"a","env":{"X":{"y":1}}}]}"#).expect_err("invalid");
        assert!(err.contains("services[0].env.X"), "{err}");
    }

    #[test]
    fn names_that_could_forge_lines_are_refused() {
        for name in ["a\nb", "\u{1b}[2J", "x|y", "\u{202e}abc", "\u{85}"] {
            let text = format!(
                "{{\"services\": [{{\"script\": \"a\", \"name\": {}}}]}}",
                serde_json::to_string(name).expect("json")
            );
            let err = parse(&text).expect_err(name);
            assert!(err.contains("services[0].name: must not contain"), "{err}");
            assert_eq!(err.lines().count(), 1, "{err:?}");
        }
        for name in ["web api", "api-2", "Ünïcode ✓", "a.b_c"] {
            check_name(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(check_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn rotation_bounds() {
        let err = parse(r#"{"services":[{"script":"a","logMaxSize":100}]}"#).expect_err("small");
        assert!(
            err.contains("logMaxSize: must be 0 (never rotate) or at least 4096"),
            "{err}"
        );
        parse(r#"{"services":[{"script":"a","logMaxSize":0,"logKeep":1000}]}"#).expect("valid");
        let err = parse(r#"{"services":[{"script":"a","logKeep":1001}]}"#).expect_err("many");
        assert!(err.contains("logKeep: keeps at most 1000 files"), "{err}");
    }

    #[test]
    fn a_log_that_is_not_a_regular_file_is_refused() {
        let err = parse(r#"{"services":[{"script":"a","log":"svc"}]}"#).expect_err("folder");
        assert!(
            err.contains("services[0].log: DIR/svc is a folder"),
            "{err}"
        );
        let err = parse(r#"{"services":[{"script":"a","log":"/dev/null"}]}"#).expect_err("dev");
        assert!(err.contains("/dev/null is a device"), "{err}");
    }

    #[test]
    fn bom_and_top_level_arrays_are_explained() {
        let err = parse("\u{feff}{\"services\": []}").expect_err("bom");
        assert!(
            err.contains(":1:1: the file starts with a UTF-8 byte-order mark"),
            "{err}"
        );
        let err = parse("\n  [{\"script\": \"a\"}]").expect_err("array");
        assert!(err.contains(":2:3: the file must be an object"), "{err}");
    }

    #[test]
    fn not_json_at_all() {
        let err = parse("{\"services\": [").expect_err("invalid");
        assert!(err.starts_with("DIR/services.json:1:"), "{err}");
    }
}
