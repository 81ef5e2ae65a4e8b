//! Rows and descriptions: what `list` and `describe` answer, with each process group's memory
//! and CPU sampled on demand (one scan of the system for every group asked about; no timer).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use super::actor::Actor;
use super::effects::Effects;
use super::table::{CpuSample, Proc};
use super::{ActionError, Description, ExitRecord, ServiceId, ServiceInfo, Services};
use crate::config::ServiceSpec;
use crate::platform::{Exit, GroupUsage, Pid};

/// Two samples closer than this give the previous percentage again: CPU time is counted in
/// clock ticks (10 ms), so a short window would swing between 0 and hundreds of percent.
const MIN_CPU_WINDOW: Duration = Duration::from_millis(250);

impl<E: Effects> Actor<E> {
    /// The rows of `ids` (skipping unknown ones), with their groups sampled once.
    pub(super) fn rows(&mut self, ids: &[ServiceId]) -> Vec<ServiceInfo> {
        self.sample(ids).0
    }

    /// The rows of `ids`, and the usage of their groups by pid.
    fn sample(&mut self, ids: &[ServiceId]) -> (Vec<ServiceInfo>, HashMap<Pid, GroupUsage>) {
        let groups: Vec<Pid> = ids
            .iter()
            .filter_map(|&id| self.table.get(id)?.proc.as_ref().map(|p| p.pid))
            .collect();
        let usage = self.fx.usage(&groups);
        let now = self.fx.now();
        let rows = ids
            .iter()
            .filter_map(|&id| {
                let svc = self.table.get_mut(id)?;
                let (memory, cpu) = match svc.proc.as_mut() {
                    Some(p) => match usage.get(&p.pid) {
                        Some(u) => (Some(u.rss), cpu_percent(p, now, u.cpu)),
                        None => (None, None),
                    },
                    None => (None, None),
                };
                Some(svc.info(now, memory, cpu))
            })
            .collect();
        (rows, usage)
    }

    /// `describe`: every selected service's row, spec, pids, since-when and last exits.
    pub(super) fn describe(&mut self, which: &Services) -> Result<Vec<Description>, ActionError> {
        let ids = self.table.select(which)?;
        let (rows, usage) = self.sample(&ids);
        let now = self.fx.now();
        let wall = SystemTime::now();
        let at = |i: Instant| {
            wall.checked_sub(now.saturating_duration_since(i))
                .unwrap_or(wall)
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(svc) = self.table.get(row.id) else {
                continue;
            };
            let mut pids = Vec::new();
            if let Some(p) = &svc.proc {
                pids.push(p.pid.as_raw());
                if let Some(u) = usage.get(&p.pid) {
                    pids.extend(u.pids.iter().copied().filter(|&q| q != p.pid.as_raw()));
                }
            }
            let exits = svc
                .exits
                .iter()
                .map(|e| ExitRecord {
                    time: at(e.at),
                    pid: e.pid.as_raw(),
                    exit: e.exit.to_string(),
                    code: match e.exit {
                        Exit::Code(c) => Some(c),
                        Exit::Signal(_) => None,
                    },
                    signal: match e.exit {
                        Exit::Signal(s) => Some(s.as_str().to_owned()),
                        Exit::Code(_) => None,
                    },
                    requested: e.requested,
                    uptime_ms: e.ran.as_millis() as u64,
                })
                .collect();
            out.push(Description {
                since: at(svc.since.1),
                started: svc.proc.as_ref().map(|p| at(p.started)),
                pids,
                exits,
                spec: spec_json(&svc.spec),
                row,
            });
        }
        Ok(out)
    }
}

/// The CPU percentage of a process's group since its previous sample (the first one: since it
/// started), remembering this one.
fn cpu_percent<C>(p: &mut Proc<C>, now: Instant, used: Duration) -> Option<f64> {
    let prev = p.cpu.unwrap_or(CpuSample {
        at: p.started,
        used: Duration::ZERO,
        percent: None,
    });
    let window = now.saturating_duration_since(prev.at);
    if window < MIN_CPU_WINDOW && prev.percent.is_some() {
        return prev.percent;
    }
    if window.is_zero() {
        return None;
    }
    let percent = used.saturating_sub(prev.used).as_secs_f64() / window.as_secs_f64() * 100.0;
    let percent = (percent * 10.0).round() / 10.0;
    p.cpu = Some(CpuSample {
        at: now,
        used,
        percent: Some(percent),
    });
    Some(percent)
}

/// A spec as a config file writes it, with what the supervisor resolved (absolute paths,
/// defaults).
pub(super) fn spec_json(s: &ServiceSpec) -> Value {
    let ms = |d: Duration| d.as_millis() as u64;
    let mut spec = json!({
        "name": s.name,
        "script": s.script,
        "args": s.args,
        "cwd": s.cwd,
        "log": s.log,
        "env": s.env,
        "interpreter": s.interpreter,
        "nodePath": s.node_path,
        "restartAt": s.restart_at,
        "restartOk": ms(s.restart_ok),
        "killTimeout": ms(s.kill_timeout),
        "stripANSI": s.strip_ansi,
        "logMaxSize": s.log_max_size,
        "logKeep": s.log_keep,
    });
    // The guards only when set, as a config file writes them.
    let mut guard = |k: &str, v: Value| {
        if let Some(o) = spec.as_object_mut() {
            o.insert(k.to_owned(), v);
        }
    };
    if let Some(d) = s.watchdog {
        guard("watchdogMs", json!(ms(d)));
    }
    if let Some(b) = s.max_memory {
        guard("maxMemory", json!(b));
    }
    if !s.depends_on.is_empty() {
        guard("dependsOn", json!(s.depends_on));
    }
    if !s.watch.is_empty() {
        guard("watch", json!(s.watch));
    }
    spec
}
