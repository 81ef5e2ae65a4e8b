//! The channel codec: any bytes, split anywhere, decode without panicking, and the same lines
//! come out whatever the split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pm_child::protocol::{self, Frame, FromChild, LineDecoder, ToChild};

fn frames(reads: &[&[u8]]) -> Vec<Result<Vec<u8>, usize>> {
    let mut d = LineDecoder::new(64);
    let mut out = Vec::new();
    for r in reads {
        d.feed(r, |f| match f {
            Frame::Line(l) => {
                let _ = protocol::decode::<FromChild>(l);
                let _ = protocol::decode::<ToChild>(l);
                out.push(Ok(l.to_vec()));
            }
            Frame::TooLong { len } => out.push(Err(len)),
        });
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    assert_eq!(frames(&[&data[..cut], &data[cut..]]), frames(&[data]));
});
