use std::time::Duration;

use super::receive::decode;
use super::*;

fn rec(pid: i32) -> Record {
    Record {
        pid,
        start_time: 7,
        grace: Duration::from_millis(200),
        term: true,
    }
}

fn null() -> OwnedFd {
    OwnedFd::from(std::fs::File::open("/dev/null").expect("null"))
}

fn describe(told: Told) -> String {
    match told {
        Told::Add {
            record: r,
            output: o,
            ..
        } => format!(
            "add {} {} {} {}{}",
            r.pid,
            r.start_time,
            r.grace.as_millis(),
            if r.term { "term" } else { "-" },
            o.map(|o| format!(" {} {:?} {}", o.label, o.log, o.strip_ansi))
                .unwrap_or_default()
        ),
        Told::Update(r) => format!("update {} {}", r.pid, if r.term { "term" } else { "-" }),
        Told::Del(pid) => format!("del {pid}"),
        Told::Bye => "bye".into(),
    }
}

/// Everything pending, decoded, sent `step` bytes at a time.
fn take_in_steps(t: &mut Table, step: usize) -> Vec<String> {
    let mut bytes = Vec::new();
    let mut fds = VecDeque::new();
    while let Some((b, o)) = t.pending() {
        let n = b.len().min(step);
        bytes.extend_from_slice(&b[..n]);
        let (len, with_fds) = (b.len(), o.is_some());
        if with_fds {
            fds.extend([null(), null()]);
        }
        let last = t.out.len() == 1 && n == len;
        t.sent(n);
        if last {
            break;
        }
    }
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        out.push(describe(decode(&tail[..len], &mut fds).expect("decodes")));
        rest = &tail[len..];
    }
    assert!(fds.is_empty(), "every descriptor taken by its message");
    out
}

fn take(t: &mut Table) -> Vec<String> {
    take_in_steps(t, usize::MAX)
}

fn output(label: &str, log: Option<&str>) -> Arc<Output> {
    Arc::new(
        Output::new(&null(), &null(), label.into(), log.map(PathBuf::from), true).expect("dup"),
    )
}

#[test]
fn updates_coalesce_while_the_sentinel_does_not_read() {
    let mut t = Table::default();
    t.add(&rec(1), Some(output("web", Some("/l/web.log"))));
    assert_eq!(
        take(&mut t),
        ["add 1 7 200 term web Some(\"/l/web.log\") true"]
    );
    // The sentinel stops reading; a thousand groups come and go meanwhile.
    for pid in 100..1100 {
        t.add(&rec(pid), Some(output("x", None)));
        t.remove(pid);
    }
    t.hello(1);
    t.add(&rec(2), None);
    assert_eq!(take(&mut t), ["update 1 -", "add 2 7 200 term"]);
    t.remove(1);
    t.bye = true;
    assert_eq!(take(&mut t), ["del 1", "bye"]);
    t.add(&rec(3), None);
    assert!(take(&mut t).is_empty(), "nothing after bye");
}

#[test]
fn a_partly_sent_difference_is_finished_before_the_next() {
    let mut t = Table::default();
    t.add(&rec(1), Some(output("a", None)));
    t.add(&rec(2), None);
    let (first, fds) = t
        .pending()
        .map(|(b, o)| (b.len(), o.is_some()))
        .expect("pending");
    assert!(fds, "descriptors go with the first byte");
    t.sent(3);
    let (rest, fds) = t
        .pending()
        .map(|(b, o)| (b.len(), o.is_some()))
        .expect("pending");
    assert_eq!(rest, first - 3);
    assert!(!fds, "and only with it");
    t.sent(rest);
    t.add(&rec(3), None);
    // The rest of the first difference comes before the new one.
    assert_eq!(take_in_steps(&mut t, 5), ["add 2 7 200 term"]);
    assert_eq!(take_in_steps(&mut t, 5), ["add 3 7 200 term"]);
}

#[test]
fn a_new_process_with_a_reused_pid_is_added_again_with_its_output() {
    let mut t = Table::default();
    t.add(&rec(1), Some(output("a", None)));
    take(&mut t);
    let mut again = rec(1);
    again.start_time = 8;
    t.add(&again, Some(output("b", None)));
    assert_eq!(take(&mut t), ["add 1 8 200 term b None true"]);
    // The same process told again without an output (its channel closed) keeps its output.
    t.hello(1);
    t.add(&again, None);
    assert!(take(&mut t).is_empty());
}

#[test]
fn descriptors_of_gone_processes_are_closed_without_being_sent() {
    let mut t = Table::default();
    let o = output("a", None);
    let weak = Arc::downgrade(&o);
    t.add(&rec(1), Some(o));
    t.remove(1);
    assert!(weak.upgrade().is_none(), "dropped with the entry");
    assert!(t.pending().is_none());
}

#[test]
fn messages_cross_a_socket_with_their_descriptors() {
    let (ours, theirs) = pair().expect("pair");
    let (r, w) = nix::unistd::pipe().expect("pipe");
    let mut t = Table::default();
    for (pid, label) in [(41, "one"), (42, "two")] {
        let o =
            Output::new(&r, &r, label.into(), Some("/var/log/x y.log".into()), false).expect("dup");
        t.add(&rec(pid), Some(Arc::new(o)));
    }
    t.add(&rec(43), None);
    t.bye = true;
    let reader = std::thread::spawn(move || {
        let mut rx = Receiver::new(theirs.as_raw_fd());
        let mut labels = Vec::new();
        let mut outputs = Vec::new();
        while let Some(told) = rx.next().expect("receive") {
            match told {
                Told::Add {
                    record,
                    output: Some(o),
                    ..
                } => {
                    labels.push(format!("{} {}", record.pid, o.label));
                    assert_eq!(
                        o.log.as_deref(),
                        Some(std::path::Path::new("/var/log/x y.log"))
                    );
                    outputs.push(o);
                }
                Told::Add {
                    record,
                    output: None,
                    missing,
                } => {
                    assert!(!missing);
                    labels.push(format!("{} -", record.pid));
                }
                Told::Bye => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        (labels, outputs, rx, theirs)
    });
    // Sent a few bytes at a time, as a busy socket may take them.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while let Some((b, o)) = t.pending() {
        match send(ours.as_raw_fd(), &b[..b.len().min(7)], o) {
            Ok(n) => t.sent(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < end, "the reader does not read");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("send: {e}"),
        }
    }
    drop(t);
    let (labels, outputs, mut rx, _theirs) = reader.join().expect("reader");
    assert_eq!(labels, ["41 one", "42 two", "43 -"]);
    // A passed descriptor reads what is written into the pipe.
    nix::unistd::write(&w, b"hi").expect("write");
    let mut got = [0u8; 2];
    let n = nix::unistd::read(&outputs[1].stdout, &mut got).expect("read");
    assert_eq!(&got[..n], b"hi");
    drop(ours);
    assert!(rx.next().expect("eof").is_none());
}

#[test]
fn a_sentinel_that_does_not_read_holds_the_pipes_of_a_few_processes_at_most() {
    let (ours, _theirs) = pair().expect("pair");
    let o = output("a-service-name", Some("/var/log/a-service.log"));
    let mut accepted = 0;
    loop {
        let p = encode_add(&rec(accepted), Some(&o));
        match send(ours.as_raw_fd(), &p.bytes, p.output.as_deref()) {
            Ok(n) => {
                assert_eq!(n, p.bytes.len(), "whole small messages go out");
                accepted += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("send: {e}"),
        }
        assert!(accepted < 1000, "the socket takes messages without end");
    }
    assert!(
        accepted <= 16,
        "{accepted} messages with descriptors wait in the socket"
    );
    assert!(accepted >= 1);
}

#[test]
fn a_message_whose_descriptors_cannot_be_passed_goes_without_them() {
    let mut t = Table::default();
    t.add(&rec(1), Some(output("a", None)));
    t.pending();
    t.drop_descriptors();
    assert_eq!(take(&mut t), ["add 1 7 200 term"]);
}

#[test]
fn a_message_too_long_for_the_link_is_an_error() {
    let (ours, theirs) = pair().expect("pair");
    let len = (MAX_MESSAGE as u32 + 1).to_le_bytes();
    send(ours.as_raw_fd(), &len, None).expect("send");
    let e = Receiver::new(theirs.as_raw_fd())
        .next()
        .expect_err("too long");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn truncated_or_unknown_messages_are_ignored() {
    let mut fds = VecDeque::new();
    assert!(decode(b"", &mut fds).is_none());
    assert!(decode(b"A\x01\x00", &mut fds).is_none());
    assert!(decode(b"Z", &mut fds).is_none());
    let mut add = encode_add(&rec(1), Some(&output("a", None))).bytes;
    add.truncate(add.len() - 2);
    assert!(decode(&add[4..], &mut fds).is_none());
}
