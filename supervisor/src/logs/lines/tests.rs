use proptest::prelude::*;

use super::*;

/// The lines and parts a splitter with `cap` hands out for output read in `reads`.
fn log_lines(reads: &[&[u8]], cap: usize) -> Vec<(Vec<u8>, bool)> {
    let mut l = LogLines::new(cap);
    let mut out = Vec::new();
    for r in reads {
        l.feed(r, |x, c| out.push((x.to_vec(), c)));
    }
    l.finish(|x, c| out.push((x.to_vec(), c)));
    out
}

fn whole(s: &[u8]) -> (Vec<u8>, bool) {
    (s.to_vec(), false)
}

#[test]
fn pieces_make_one_line_and_crlf_is_one_end() {
    assert_eq!(
        log_lines(&[b"hel", b"lo\r", b"\nworld\n", b"\n", b"tail"], 100),
        vec![whole(b"hello"), whole(b"world"), whole(b""), whole(b"tail")]
    );
}

#[test]
fn long_lines_are_cut_into_marked_parts() {
    let out = log_lines(&[b"abcdefghij\nxy", b"z\n"], 4);
    assert_eq!(
        out,
        vec![
            (b"abcd".to_vec(), true),
            (b"efgh".to_vec(), true),
            whole(b"ij"),
            whole(b"xyz")
        ]
    );
    // A line of exactly the cap is whole.
    assert_eq!(log_lines(&[b"ab", b"cd\n"], 4), vec![whole(b"abcd")]);
    assert_eq!(log_lines(&[b"abcd\n"], 4), vec![whole(b"abcd")]);
}

#[test]
fn invalid_utf8_is_kept_byte_for_byte() {
    assert_eq!(
        log_lines(&[b"\xff\xfe\x00ok\n"], 100),
        vec![whole(b"\xff\xfe\x00ok")]
    );
}

/// `text` stripped whole, and cut in two at every place: the same `expect` each time.
fn strips_to(text: &[u8], expect: &[u8]) {
    for cut in 0..=text.len() {
        let mut s = AnsiStripper::default();
        let mut out = Vec::new();
        s.strip(&text[..cut], &mut out);
        s.strip(&text[cut..], &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(expect),
            "{:?} cut at {cut}",
            String::from_utf8_lossy(text)
        );
    }
}

#[test]
fn ansi_sequences_are_removed_even_when_split_across_reads() {
    strips_to(
        b"\x1b[1;31mred\x1b[0m \x1b]0;title\x07plain \x1b]8;;http://x\x1b\\link\x1b[2K\x1bc end\n",
        b"red plain link end\n",
    );
}

#[test]
fn charset_selections_are_removed() {
    // `tput sgr0` on xterm: ESC ( B ESC [ m.
    strips_to(b"x\x1b(By\x1b[mz\n", b"xyz\n");
    strips_to(b"\x1b)0\x1b(0lqk\x1b(B done", b"lqk done");
    // Other two-byte and intermediate escapes: keypad mode, save cursor, DEC line drawing.
    strips_to(b"a\x1b=b\x1b7c\x1b#8d", b"abcd");
}

#[test]
fn string_sequences_lose_their_payload() {
    // DCS (a terminal query, a sixel image), ended by ST.
    strips_to(b"x\x1bP1$r0m\x1b\\y\n", b"xy\n");
    strips_to(b"a\x1bPq#0;2;0;0;0#0~~@@vv\x1b\\b", b"ab");
    // SOS, PM, APC; OSC ended by BEL or ST.
    strips_to(b"1\x1bXsos\x1b\\2\x1b^pm\x1b\\3\x1b_apc\x1b\\4", b"1234");
    strips_to(b"\x1b]2;title\x1b\\t\x1b]52;c;aGk=\x07!", b"t!");
}

#[test]
fn a_newline_ends_a_broken_sequence_and_text_is_kept() {
    // An unterminated OSC or DCS does not swallow the next lines.
    strips_to(b"a\x1b]0;no end\nnext\n", b"a\nnext\n");
    strips_to(b"a\x1bPno end\nnext\n", b"a\nnext\n");
    strips_to(b"a\x1b[12\nb", b"a\nb");
    // Tabs, CRs and UTF-8 stay; other controls go; invalid UTF-8 becomes U+FFFD.
    strips_to(
        "t\tab\r\né\x07\x08 ✓\n".as_bytes(),
        "t\tab\r\né ✓\n".as_bytes(),
    );
    strips_to(b"\xff!", "\u{fffd}!".as_bytes());
}

#[test]
fn labels_get_stable_colours() {
    assert_eq!(label_colour("web"), label_colour("web"));
    assert!(
        prefix(SystemTime::UNIX_EPOCH, "web", "out", Some(36))
            .contains("\x1b[36mweb\x1b[0m out | ")
    );
    assert_eq!(
        prefix(SystemTime::UNIX_EPOCH, "web", "out", None),
        "1970-01-01T00:00:00.000Z web out | "
    );
}

#[test]
fn a_line_belongs_to_exactly_one_service() {
    fn l(line: &str) -> Option<&str> {
        parse_line(line).map(|p| p.label)
    }
    assert_eq!(l("2026-11-26T12:21:02.123Z api out | x"), Some("api"));
    assert_eq!(
        l("2026-11-26T12:21:02.123Z web api err+ | api out | y"),
        Some("web api")
    );
    assert_eq!(l("2026-11-26T12:21:02.123Z api pm  | started"), Some("api"));
    assert_eq!(
        l("2026-11-26T12:21:02.123Z 4242 out | nameless"),
        Some("4242")
    );
    assert_eq!(l("garbage"), None);
    assert_eq!(l("2026-11-26T12:21:02.123Z api bogus | x"), None);
    let own = String::from_utf8(supervisor_line("web api", None, "started")).expect("utf-8");
    assert_eq!(l(&own), Some("web api"));
    let p = parse_line("2026-11-26T12:21:02.123Z web err+ | a | b").expect("parses");
    assert_eq!(
        (p.time, p.stream, p.continued, p.text),
        ("2026-11-26T12:21:02.123Z", Stream::Err, true, "a | b")
    );
}

fn split_points(len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..=len, 0..16).prop_map(|mut v| {
        v.sort_unstable();
        v
    })
}

fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        out.push(&data[at..c]);
        at = c;
    }
    out.push(&data[at..]);
    out
}

fn data_with_newlines() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            12 => any::<u8>(),
            2 => Just(b'\n'),
            2 => Just(0x1b),
            1 => Just(b'\r'),
            1 => Just(b'['),
            1 => Just(b']'),
            1 => Just(b'P'),
            1 => Just(b'('),
            1 => Just(b'\\'),
            1 => Just(0x07),
            1 => Just(0xc3),
            1 => Just(0xa9),
        ],
        0..300,
    )
}

proptest! {
    /// However output is cut into reads, the same log lines come out, no part is longer than
    /// the cap, and the parts put back together are the output (less a `\r` before `\n`).
    #[test]
    fn log_lines_do_not_depend_on_reads(data in data_with_newlines(), cap in 1usize..50) {
        let cuts = (0..=data.len()).step_by(7).collect::<Vec<_>>();
        let whole = log_lines(&[&data], cap);
        prop_assert_eq!(log_lines(&pieces(&data, &cuts), cap), whole.clone());
        let mut rebuilt = Vec::new();
        for (part, continued) in &whole {
            prop_assert!(part.len() <= cap);
            rebuilt.extend_from_slice(part);
            if !continued {
                rebuilt.push(b'\n');
            }
        }
        let mut expected = Vec::new();
        for (i, line) in data.split(|&b| b == b'\n').enumerate() {
            let is_last = i == data.iter().filter(|&&b| b == b'\n').count();
            if is_last {
                if !line.is_empty() {
                    expected.extend_from_slice(line);
                    expected.push(b'\n');
                }
            } else {
                expected.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
                expected.push(b'\n');
            }
        }
        prop_assert_eq!(rebuilt, expected);
    }

    #[test]
    fn log_lines_any_split(data in data_with_newlines(), cuts in split_points(300), cap in 1usize..50) {
        let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= data.len()).collect();
        prop_assert_eq!(log_lines(&pieces(&data, &cuts), cap), log_lines(&[&data], cap));
    }

    /// The ANSI stripper gives the same bytes however the input is cut.
    #[test]
    fn ansi_stripping_any_split(data in data_with_newlines(), cuts in split_points(300)) {
        let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= data.len()).collect();
        let mut once = Vec::new();
        AnsiStripper::default().strip(&data, &mut once);
        let mut s = AnsiStripper::default();
        let mut split = Vec::new();
        for p in pieces(&data, &cuts) {
            s.strip(p, &mut split);
        }
        prop_assert_eq!(split, once.clone());
        // The result is text: UTF-8 without ESC. Stripping UTF-8 never adds bytes, and text
        // without escapes or controls (but \t, \r, \n) passes unchanged.
        prop_assert!(std::str::from_utf8(&once).is_ok());
        prop_assert!(!once.contains(&0x1b));
        if let Ok(text) = std::str::from_utf8(&data) {
            prop_assert!(once.len() <= data.len());
            if !text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n')) {
                prop_assert_eq!(once, data);
            }
        }
    }
}
