//! `pm-supervisor events`: the supervisor's events as they happen, one line each.

use std::io::Write;

use super::{human_bytes, human_ms, timestamp};
use crate::control::{Command, Event, Message};
use crate::frontends::cli::client::{CliError, Client, Target};
use crate::supervisor::EventKind;

/// `events [--json]`: every event from now on, one per line, until the supervisor goes away
/// (or stdout is closed).
pub(in crate::frontends::cli) fn events(target: &Target, as_json: bool) -> Result<(), CliError> {
    let mut client = Client::open(target)?;
    client.request(Command::Subscribe)?;
    let mut out = std::io::stdout().lock();
    loop {
        let event = match client.read() {
            Ok(Message::Event(e)) => e,
            Ok(_) => continue,
            // The supervisor exited: the stream is over.
            Err(_) => return Ok(()),
        };
        let line = if as_json {
            serde_json::to_string(&event).unwrap_or_default()
        } else {
            event_text(&event)
        };
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
    }
}

/// An event for a person: `2026-11-30T08:00:00.000Z web #1 exited pid 42: exit code 1`.
fn event_text(e: &Event) -> String {
    let e = match e {
        Event::Lagged(l) => return format!("({} events missed: reading too slowly)", l.missed),
        Event::Service(e) => e,
    };
    let who = format!(
        "{} {} #{}",
        timestamp(e.time),
        e.name.as_deref().unwrap_or("(nameless)"),
        e.id
    );
    let what = match &e.kind {
        EventKind::Started { pid } => format!("started pid {pid}"),
        EventKind::Ready { pid } => format!("ready pid {pid}"),
        EventKind::Stopping { pid, reason } => {
            let reason = serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            format!("stopping pid {pid} ({reason})")
        }
        EventKind::Exited {
            pid,
            exit,
            requested,
            uptime_ms,
        } => {
            let why = if *requested { ", requested" } else { "" };
            format!(
                "exited pid {pid}: {exit} after {}{why}",
                human_ms(*uptime_ms)
            )
        }
        EventKind::LaunchFailed { error } => format!("launch failed: {error}"),
        EventKind::Restarting { in_ms, crashes } => {
            format!(
                "restarting in {} ({crashes} crashes in a row)",
                human_ms(*in_ms)
            )
        }
        EventKind::Message { pid, data } => format!("message pid {pid}: {data}"),
        EventKind::Hung {
            pid,
            silence_ms,
            watchdog_ms,
        } => format!("hung pid {pid}: no heartbeat for {silence_ms} ms (watchdogMs {watchdog_ms})"),
        EventKind::Memory {
            pid,
            rss,
            max_memory,
            for_ms,
        } => format!(
            "memory pid {pid}: {} above maxMemory {} for {}",
            human_bytes(*rss),
            human_bytes(*max_memory),
            human_ms(*for_ms)
        ),
    };
    format!("{who} {what}")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn hung_and_memory_events_read_as_sentences() {
        let event = |kind| {
            event_text(&Event::Service(crate::supervisor::Event {
                time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                id: 2,
                name: Some("idx".into()),
                kind,
            }))
        };
        assert_eq!(
            event(EventKind::Hung {
                pid: 42,
                silence_ms: 1040,
                watchdog_ms: 1000
            }),
            "2023-11-14T22:13:20.000Z idx #2 hung pid 42: no heartbeat for 1040 ms (watchdogMs 1000)"
        );
        assert_eq!(
            event(EventKind::Memory {
                pid: 42,
                rss: 600 << 20,
                max_memory: 500 << 20,
                for_ms: 3000
            }),
            "2023-11-14T22:13:20.000Z idx #2 memory pid 42: 600.0MB above maxMemory 500.0MB for 3s"
        );
    }
}
