use super::*;

fn target(dir: &Path, max: u64, keep: u32) -> Target {
    let mut t = Target::new(
        Some(dir.join("a.log")),
        Rotation {
            max_size: max,
            keep,
        },
    );
    t.open();
    t
}

fn write(t: &mut Target, s: &str) {
    t.pending.extend_from_slice(s.as_bytes());
    t.flush(&AtomicBool::new(false));
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[test]
fn rotation_renames_and_keeps_the_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = target(dir.path(), 10, 2);
    for line in ["one 1234\n", "two 1234\n", "three 12\n", "four 123\n"] {
        write(&mut t, line);
    }
    assert_eq!(read(dir.path(), "a.log"), "four 123\n");
    assert_eq!(read(dir.path(), "a.log.1"), "three 12\n");
    assert_eq!(read(dir.path(), "a.log.2"), "two 1234\n");
    assert!(
        !dir.path().join("a.log.3").exists(),
        "only logKeep files are kept"
    );
}

#[test]
fn a_large_batch_is_split_at_line_ends_across_rotations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = target(dir.path(), 10, 5);
    write(&mut t, "aaaa\nbbbb\ncccc\ndddd\neeee\n");
    assert_eq!(read(dir.path(), "a.log.2"), "aaaa\nbbbb\n");
    assert_eq!(read(dir.path(), "a.log.1"), "cccc\ndddd\n");
    assert_eq!(read(dir.path(), "a.log"), "eeee\n");
}

#[test]
fn a_line_larger_than_the_limit_gets_a_file_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = target(dir.path(), 4, 1);
    write(&mut t, "0123456789\n");
    write(&mut t, "abcdefghij\n");
    assert_eq!(read(dir.path(), "a.log"), "abcdefghij\n");
    assert_eq!(read(dir.path(), "a.log.1"), "0123456789\n");
}

#[test]
fn a_deleted_file_is_created_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = target(dir.path(), 0, 0);
    write(&mut t, "before\n");
    std::fs::remove_file(dir.path().join("a.log")).expect("rm");
    t.checked_at -= CHECK_EVERY;
    write(&mut t, "after\n");
    assert_eq!(read(dir.path(), "a.log"), "after\n");
}

#[test]
fn an_unopenable_file_discards_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A folder where the file should be: it is refused.
    std::fs::create_dir(dir.path().join("a.log")).expect("mkdir");
    let mut t = target(dir.path(), 0, 0);
    write(&mut t, "lost\n");
    assert_eq!(t.dropped, 5);
    assert!(t.trouble.is_some());
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.log");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let e = open_log(&path).expect_err("a FIFO");
    assert!(e.to_string().contains("a FIFO"), "{e}");
    // Also when a reader holds it open, which would let a plain open succeed.
    let _reader = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .expect("reader");
    assert!(open_log(&path).is_err());
}

#[test]
fn a_rotation_that_cannot_rename_keeps_writing_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A non-empty folder where the first rotated file goes: the rename fails, even as root.
    std::fs::create_dir_all(dir.path().join("a.log.1/x")).expect("mkdir");
    let mut t = target(dir.path(), 10, 1);
    for i in 0..100 {
        write(&mut t, &format!("line {i:03}\n"));
    }
    assert!(t.rotation_trouble.is_some());
    assert_eq!(
        read(dir.path(), "a.log").lines().count(),
        100,
        "nothing lost"
    );
    std::fs::remove_dir_all(dir.path().join("a.log.1")).expect("rm");
    t.rotation_trouble = Some(Trouble {
        retry_at: Instant::now(),
        ok_since: None,
    });
    write(&mut t, "line 100\n");
    assert!(t.rotation_trouble.is_none());
    assert_eq!(read(dir.path(), "a.log"), "line 100\n");
    assert_eq!(read(dir.path(), "a.log.1").lines().count(), 100);
}

#[test]
fn a_file_moved_away_before_its_rotation_is_not_renamed_but_created_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = target(dir.path(), 10, 3);
    write(&mut t, "one 1234\n");
    std::fs::rename(dir.path().join("a.log"), dir.path().join("moved")).expect("mv");
    write(&mut t, "two 1234\n");
    assert_eq!(read(dir.path(), "moved"), "one 1234\n");
    assert_eq!(read(dir.path(), "a.log"), "two 1234\n");
    assert!(!dir.path().join("a.log.1").exists());
    assert!(t.rotation_trouble.is_none() && t.trouble.is_none());
}

#[test]
fn usable_again_only_once_writes_keep_succeeding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = target(dir.path(), 0, 0);
    t.fail("write", &io::Error::other("disk full"));
    // It reopens on the retry, but the episode lasts until writes go through for a while.
    t.trouble = Some(Trouble {
        retry_at: Instant::now(),
        ok_since: None,
    });
    t.open();
    assert!(t.file.is_some() && t.trouble.is_some());
    write(&mut t, "back\n");
    assert_eq!(read(dir.path(), "a.log"), "back\n");
    assert!(t.trouble.is_some_and(|t| t.ok_since.is_some()));
    // A failure meanwhile (one line fitted, the next did not) continues the same episode.
    t.fail("write", &io::Error::other("disk full"));
    assert!(t.trouble.is_some_and(|t| t.ok_since.is_none()));
    t.trouble = Some(Trouble {
        retry_at: Instant::now(),
        ok_since: Some(Instant::now() - RETRY_AFTER),
    });
    write(&mut t, "again\n");
    assert!(
        t.trouble.is_none(),
        "ended after a retry period of good writes"
    );
}
