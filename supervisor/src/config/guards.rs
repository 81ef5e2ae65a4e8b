//! The values of the guard fields of a spec: `maxMemory` and `watch` as written, their limits,
//! and what `watch: true` watches.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::normalize;

/// `maxMemory` as written: a number of bytes, or a string with a unit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(
    untagged,
    expecting = "a number of bytes or a string like \"500M\" or \"1.5G\""
)]
pub enum MemorySize {
    /// `524288000`
    Bytes(u64),
    /// `"500M"`
    Text(String),
}

/// `watch` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged, expecting = "true, false or a list of paths and globs")]
pub enum WatchSetting {
    /// `true`: the script's folder; `false`: off.
    On(bool),
    /// Paths and globs, relative to `cwd`.
    Paths(Vec<String>),
}

/// Smallest `maxMemory`: below this a unit was most likely forgotten (`500` for 500 MB).
pub const MIN_MAX_MEMORY: u64 = 1024 * 1024;
/// Shortest and longest `watchdogMs` (the longest is Node's timer limit, as in the SDKs).
pub const MIN_WATCHDOG_MS: u64 = 100;
/// See [`MIN_WATCHDOG_MS`].
pub const MAX_WATCHDOG_MS: u64 = pm_child::protocol::WatchdogTiming::MAX_LIMIT_MS;

impl MemorySize {
    /// Bytes. Units are binary and case-insensitive, with an optional `B`: `K`, `M`, `G`, `T`
    /// (`"500M"` is 500 × 2^20 bytes); a fraction is allowed with a unit (`"1.5G"`).
    pub fn bytes(&self) -> Result<u64, String> {
        let n = match self {
            MemorySize::Bytes(b) => *b,
            MemorySize::Text(t) => parse_memory(t)?,
        };
        if n < MIN_MAX_MEMORY {
            return Err(format!(
                "{n} bytes is below the smallest ceiling, 1M (write a unit: \"500M\")"
            ));
        }
        Ok(n)
    }
}

fn parse_memory(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a size: write bytes (524288000) or a number with a unit K, M, G or T (\"500M\", \"1.5G\")"
        )
    };
    let t = text.trim();
    let t = t
        .strip_suffix(['b', 'B'])
        .filter(|r| r.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(t);
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, ' '),
    };
    let mult: u64 = match unit {
        ' ' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        _ => return Err(bad()),
    };
    let num = num.trim();
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(bad());
    }
    if unit == ' ' {
        return num.parse::<u64>().map_err(|_| bad());
    }
    let v: f64 = num.parse().map_err(|_| bad())?;
    let bytes = v * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// `watch: true`: the folder of the script.
pub(super) fn default_watch(cwd: &Path, script: &str) -> PathBuf {
    let file = normalize(&cwd.join(script));
    file.parent()
        .map_or_else(|| cwd.to_path_buf(), Path::to_path_buf)
}
