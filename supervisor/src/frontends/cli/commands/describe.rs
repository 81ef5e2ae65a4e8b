//! `pm-supervisor describe`: everything known about services, as text or JSON.

use std::time::SystemTime;

use serde_json::Value;

use super::{guard_counts, human_bytes, human_ms, state_colour, state_text, timestamp, use_colour};
use crate::control::{Answer, Command, Services};
use crate::frontends::cli::client::{CliError, Client, Target, err};
use crate::supervisor::Description;

/// `describe SERVICE [--json]`.
pub(in crate::frontends::cli) fn describe(
    target: &Target,
    which: Services,
    as_json: bool,
) -> Result<(), CliError> {
    let services = match Client::open(target)?.request(Command::Describe(which))? {
        Answer::Described { services } => services,
        other => {
            return Err(err(format!(
                "bad reply: expected descriptions, got {other:?}"
            )));
        }
    };
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&services).unwrap_or_default()
        );
        return Ok(());
    }
    let colour = use_colour();
    let now = SystemTime::now();
    let mut out = String::new();
    for (i, d) in services.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&describe_text(d, now, colour));
    }
    print!("{out}");
    Ok(())
}

/// One service, as `describe` prints it.
fn describe_text(d: &Description, now: SystemTime, colour: bool) -> String {
    use std::fmt::Write as _;
    let r = &d.row;
    let ago = |t: SystemTime| {
        let ms = now.duration_since(t).map_or(0, |d| d.as_millis() as u64);
        format!("{} ({} ago)", timestamp(t), human_ms(ms))
    };
    let mut o = String::new();
    let name = r.name.as_deref().unwrap_or("(nameless)");
    let state = match colour {
        true => format!("\x1b[{}m{}\x1b[0m", state_colour(r.state), state_text(r)),
        false => state_text(r),
    };
    let _ = writeln!(o, "{name} (id {})", r.id);
    let mut field = |k: &str, v: String| {
        let _ = writeln!(o, "  {k:<10} {v}");
    };
    field("state", format!("{state} since {}", ago(d.since)));
    let pids = match d.pids.split_first() {
        None => "-".to_owned(),
        Some((p, [])) => p.to_string(),
        Some((p, rest)) => format!(
            "{p} (group: {})",
            rest.iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    };
    field("pid", pids);
    if let Some(t) = d.started {
        field("started", ago(t));
    }
    field("uptime", r.uptime_ms.map_or("-".into(), human_ms));
    let guards = guard_counts(r);
    let guards = match guards.is_empty() {
        true => String::new(),
        false => format!(", {guards}"),
    };
    field(
        "restarts",
        format!("{} ({} crashes in a row{guards})", r.restarts, r.crashes),
    );
    field("cpu", r.cpu.map_or("-".into(), |c| format!("{c:.1}%")));
    let memory = r.memory.map_or("-".into(), human_bytes);
    match r.max_memory {
        None => field("memory", memory),
        Some(max) => field(
            "memory",
            format!(
                "{memory} of maxMemory {} ({} above it)",
                human_bytes(max),
                times(r.memory_restarts, "restart", "restarts")
            ),
        ),
    }
    if let Some(w) = r.watchdog_ms {
        field(
            "watchdog",
            format!(
                "heartbeat every {} at least ({})",
                human_ms(w),
                times(r.hangs, "hang", "hangs")
            ),
        );
    }
    if !r.depends_on.is_empty() {
        let waiting = match r.waiting_for.is_empty() {
            true => String::new(),
            false => format!(" (waiting for {})", r.waiting_for.join(", ")),
        };
        field(
            "depends on",
            format!("{}{waiting}", r.depends_on.join(", ")),
        );
    }
    if r.watch {
        let paths: Vec<&str> = d
            .spec
            .get("watch")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        field(
            "watch",
            match paths.is_empty() {
                true => "on".to_owned(),
                false => paths.join(", "),
            },
        );
    }
    if let Some(g) = &r.last_guard {
        let when = humantime::parse_rfc3339_weak(&g.time).map_or(g.time.clone(), &ago);
        field("last guard", format!("{} {when}: {}", g.why, g.detail));
    }
    let s = &d.spec;
    let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    field("script", text("script"));
    let args: Vec<String> = s
        .get("args")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if !args.is_empty() {
        field("args", args.join(" "));
    }
    field("cwd", text("cwd"));
    if let Some(i) = s.get("interpreter").and_then(Value::as_str) {
        field("interpreter", i.to_owned());
    }
    match &r.log {
        Some(log) => {
            let mut logs = vec![log.display().to_string()];
            let keep = s.get("logKeep").and_then(Value::as_u64).unwrap_or(0);
            for n in 1..=keep {
                let rotated = format!("{}.{n}", log.display());
                if std::path::Path::new(&rotated).exists() {
                    logs.push(rotated);
                }
            }
            field("log", logs.join(", "));
        }
        None => field("log", "- (the supervisor's stdout)".into()),
    }
    if let Some(env) = s
        .get("env")
        .and_then(Value::as_object)
        .filter(|e| !e.is_empty())
    {
        let env: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        field("env", env.join(" "));
    }
    if let Some(e) = &r.error {
        field("error", e.clone());
    }
    let _ = writeln!(o, "  last exits");
    if d.exits.is_empty() {
        let _ = writeln!(o, "    (none)");
    }
    for e in &d.exits {
        let why = if e.requested { ", requested" } else { "" };
        let _ = writeln!(
            o,
            "    {}  pid {}  {}  after {}{why}",
            timestamp(e.time),
            e.pid,
            e.exit,
            human_ms(e.uptime_ms)
        );
    }
    o
}

/// `1 hang`, `0 hangs`.
fn times(n: u32, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}
