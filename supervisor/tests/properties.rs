//! Properties over generated inputs: the log line splitter, the ANSI stripper, the config parser,
//! the control request parser and the restart policy.

use std::path::Path;
use std::time::Duration;

use pm_supervisor::config::Config;
use pm_supervisor::output::{AnsiStripper, LogLines};
use pm_supervisor::restart_policy::RestartPolicy;
use proptest::prelude::*;

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

fn log_lines(reads: &[&[u8]], cap: usize) -> Vec<(Vec<u8>, bool)> {
    let mut l = LogLines::new(cap);
    let mut out = Vec::new();
    for r in reads {
        l.feed(r, |x, c| out.push((x.to_vec(), c)));
    }
    l.finish(|x, c| out.push((x.to_vec(), c)));
    out
}

fn data_with_newlines() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![6 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'\r'), 1 => Just(0x1b), 1 => Just(b'[')],
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
        // Stripping never adds bytes, and text without ESC passes unchanged.
        prop_assert!(once.len() <= data.len());
        if !data.contains(&0x1b) {
            prop_assert_eq!(once, data);
        }
    }

    /// The config parser never panics: any text is a config or an error naming a place.
    #[test]
    fn config_parser_never_panics(text in ".{0,200}") {
        match Config::parse(Path::new("/nonexistent/services.json"), &text) {
            Ok(_) => {}
            Err(e) => prop_assert!(e.to_string().starts_with("/nonexistent/services.json:")),
        }
    }

    /// ... also on near-misses of valid configs.
    #[test]
    fn config_parser_near_misses(
        field in prop::sample::select(vec!["script", "name", "args", "cwd", "log", "env", "restartAt", "restartOk", "stripANSI", "interpreter", "nodePath", "killTimeout", "logMaxSize", "logKeep", "bogus"]),
        value in prop::sample::select(vec!["1", "-1", "\"x\"", "[]", "[1,2]", "{}", "null", "true", "1e99", "\"\"", "[\"a\",1]", "{\"A\":{}}"]),
    ) {
        let text = format!("{{\"services\":[{{\"script\":\"a.js\",\"{field}\":{value}}}]}}");
        let _ = Config::parse(Path::new("/tmp/services.json"), &text);
    }

    /// Delays come from the schedule, the Nth crash in a row waits the Nth value (the last one
    /// repeating), and a long enough run starts the row over.
    #[test]
    fn restart_policy_follows_the_schedule(
        schedule in prop::collection::vec(1u64..100_000, 1..10),
        uptimes in prop::collection::vec(0u64..2_000, 1..50),
        ok in 1u64..2_000,
    ) {
        let p = RestartPolicy::new(&schedule, Duration::from_millis(ok));
        let mut crashes = 0;
        for u in uptimes {
            let d = p.on_crash(crashes, Duration::from_millis(u));
            let expect_crashes = if u >= ok { 1 } else { crashes + 1 };
            prop_assert_eq!(d.crashes, expect_crashes);
            let i = (d.crashes as usize - 1).min(schedule.len() - 1);
            prop_assert_eq!(d.delay, Some(Duration::from_millis(schedule[i])));
            crashes = d.crashes;
        }
    }
}
