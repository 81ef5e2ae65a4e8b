//! The config file, `{"services": [ ... ]}` (JSONC: comments and trailing commas allowed), and the service spec it holds ([`spec`]).
//!
//! Every error names the file, the line and column, and the field (`services[1].cwd`), and is
//! found before anything is started. The spec is the same one the control channel's `start`
//! request carries, so both are checked by [`RawService::resolve`].

mod depends;
mod guards;
mod jsonc;
mod locate;
mod spec;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use guards::{MemorySize, WatchSetting};
pub use locate::Segment;
pub(crate) use locate::path_to_string;
pub use spec::{EnvValue, FieldError, RawService, ServiceSpec};

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
    #[allow(missing_docs)]
    Read {
        path: PathBuf,
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
                let (line, column) = locate::line_column(valid, at);
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
        // From here on, `text` is plain JSON at the same offsets as the file.
        let json = jsonc::to_json(text).map_err(|e| {
            let (line, column) = locate::line_column(text, e.at);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                field: None,
                message: e.message,
            }
        })?;
        let (src, text) = (text, json.as_str());
        let first = text.find(|c: char| !c.is_ascii_whitespace());
        if let Some(i) = first.filter(|&i| !text[i..].starts_with('{')) {
            let (line, column) = locate::line_column(src, i);
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
            let (line, column) = locate::locate(text, &[Segment::Key("nodePath".into())])
                .map(|at| locate::line_column(src, at))
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
                    let (line, column) = locate::locate(text, &full)
                        .map(|at| locate::line_column(src, at))
                        .unwrap_or((1, 1));
                    return Err(ConfigError::Invalid {
                        path: path.to_path_buf(),
                        line,
                        column,
                        field: Some(locate::path_to_string(&full)),
                        message: e.message,
                    });
                }
            }
        }
        if let Err(e) = depends::check(&services) {
            let (line, column) = locate::locate(text, &e.field)
                .map(|at| locate::line_column(text, at))
                .unwrap_or((1, 1));
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                field: Some(locate::path_to_string(&e.field)),
                message: e.message,
            });
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
mod tests;
