//! Log line splitting and ANSI stripping: the same output however the input is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pm_supervisor::testing::{AnsiStripper, LogLines};

fn lines(reads: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
    let mut l = LogLines::new(16);
    let mut ansi = AnsiStripper::default();
    let mut out = Vec::new();
    for r in reads {
        let mut clean = Vec::new();
        ansi.strip(r, &mut clean);
        l.feed(&clean, |x, c| out.push((x.to_vec(), c)));
    }
    l.finish(|x, c| out.push((x.to_vec(), c)));
    out
}

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    assert_eq!(lines(&[&data[..cut], &data[cut..]]), lines(&[data]));
});
