use super::*;

fn pipe() -> (OwnedFd, File) {
    let (r, w) = nix::unistd::pipe().expect("pipe");
    (r, File::from(w))
}

#[test]
fn lines_are_written_in_the_supervisors_format_until_eof() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("a.log");
    let (out_r, mut out_w) = pipe();
    let (err_r, mut err_w) = pipe();
    writeln!(out_w, "one\n\x1b[31mtwo\x1b[0m").expect("write");
    write!(err_w, "no newline").expect("write");
    drop((out_w, err_w));
    let drain = start(
        vec![Output {
            stdout: out_r,
            stderr: err_r,
            label: "web".into(),
            log: Some(log.clone()),
            strip_ansi: true,
        }],
        Instant::now(),
    );
    let started = Instant::now();
    drain.finish();
    assert!(
        started.elapsed() < DRAIN_LIMIT,
        "ended at EOF, not at the limit"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().map(|l| &l[25..]).collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("web pm  | supervisor died"), "{text}");
    assert!(lines.contains(&"web out | one"), "{text}");
    assert!(lines.contains(&"web out | two"), "{text}");
    assert!(lines.contains(&"web err | no newline"), "{text}");
}

#[test]
fn a_pipe_held_open_ends_at_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("a.log");
    let (out_r, mut out_w) = pipe();
    let (err_r, _err_w) = pipe();
    write!(out_w, "partial").expect("write");
    // The supervisor died a while ago: the limit is close.
    let died = Instant::now() - DRAIN_LIMIT + Duration::from_millis(200);
    let drain = start(
        vec![Output {
            stdout: out_r,
            stderr: err_r,
            label: "w".into(),
            log: Some(log.clone()),
            strip_ansi: false,
        }],
        died,
    );
    drain.finish();
    assert!(died.elapsed() < DRAIN_LIMIT + WRITE_GRACE + Duration::from_millis(500));
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("w out | partial\n"), "{text}");
    assert!(
        text.contains("w pm  | output after this line is lost"),
        "{text}"
    );
}
