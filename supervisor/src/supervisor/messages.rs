//! What children say on their channels: `hello`, `ready`, `heartbeat`, the answers to `stop`,
//! application data, and the channel's end.

use pm_child::protocol::{self, FromChild};

use super::EventKind;
use super::actor::Actor;
use super::effects::Effects;
use super::notes::Note;
use super::watchdog::Diagnostics;
use crate::process::channel::ChannelEvent;

impl<E: Effects> Actor<E> {
    /// An event of the channel of process number `num`.
    pub(super) fn channel(&mut self, num: u64, ev: ChannelEvent) {
        let now = self.fx.now();
        let Some(svc) = self.table.by_num(num) else {
            return self.lingering_channel(num, ev);
        };
        let id = svc.id;
        let Some(p) = svc.proc.as_mut() else { return };
        let pid = p.pid;
        let mut events = Vec::new();
        let mut notes = Vec::new();
        let mut actions = Vec::new();
        let mut gone = None;
        let mut beat = false;
        if matches!(&ev, ChannelEvent::Message(m) if m.means_ready()) && !p.run.ready() {
            p.run.set_ready();
            svc.life.ready();
            notes.push(Note::Ready);
            events.push(EventKind::Ready { pid: pid.as_raw() });
        }
        match ev {
            ChannelEvent::Message(FromChild::Hello {
                protocol,
                sdk,
                version,
                diagnostics,
            }) => {
                p.channel.hello();
                p.beat.diagnostics = Diagnostics::from_hello(diagnostics.as_deref());
                if protocol != protocol::PROTOCOL_VERSION {
                    tracing::warn!(service = %p.label, protocol, "child speaks another protocol version; continuing with version {}", protocol::PROTOCOL_VERSION);
                }
                tracing::debug!(service = %p.label, sdk, version, "hello");
                self.fx.sentinel_hello(pid);
            }
            ChannelEvent::Message(FromChild::Ready) => {}
            ChannelEvent::Message(FromChild::Heartbeat) => beat = true,
            ChannelEvent::Message(FromChild::Stopping) => {
                if let Some(s) = p.run.stopping() {
                    s.seq.stopping();
                }
            }
            ChannelEvent::Message(FromChild::Term) => {
                if let Some(s) = p.run.stopping() {
                    actions = s.seq.term_requested();
                }
            }
            ChannelEvent::Message(FromChild::Extend { ms: wanted }) => {
                if let Some(s) = p.run.stopping() {
                    let until = s.seq.extend(now, wanted);
                    if let Some(hidden) = s.extend_lines.allow() {
                        let kill_in = until.saturating_duration_since(now);
                        notes.push(Note::Extended {
                            wanted,
                            kill_in,
                            hidden,
                        });
                    }
                }
            }
            // PM2's `process.send('ready')` said ready above, and is application data as well.
            ChannelEvent::Message(FromChild::Data(data)) => {
                events.push(EventKind::Message {
                    pid: pid.as_raw(),
                    data,
                });
            }
            ChannelEvent::Closed => {
                // Closed already when the supervisor closed it (a `disconnect`).
                gone = p.channel.close().map(|(_, spoke)| spoke);
            }
        }
        for note in &notes {
            self.note(id, note);
        }
        for kind in events {
            self.emit(id, kind);
        }
        self.apply(id, actions);
        if beat {
            self.heartbeat(id);
        }
        if notes.contains(&Note::Ready) {
            self.release_held();
        }
        if let Some(spoke) = gone {
            self.channel_gone(id, spoke);
        }
    }

    /// Application data from a process that has exited (sent just before its exit) is still an
    /// event.
    fn lingering_channel(&mut self, num: u64, ev: ChannelEvent) {
        match ev {
            ChannelEvent::Message(FromChild::Data(data)) => {
                if let Some((id, pid)) = self.table.lingering(num) {
                    self.emit(id, EventKind::Message { pid, data });
                }
            }
            ChannelEvent::Closed => self.table.forget_lingering(num),
            ChannelEvent::Message(_) => {}
        }
    }
}
