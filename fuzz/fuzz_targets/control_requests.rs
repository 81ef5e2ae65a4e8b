//! The control request stream, as a connection reads it: any bytes, split anywhere, give the
//! same requests and the same error replies, never a panic, and every error reply is one line of
//! JSON saying `"ok": false`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pm_child::protocol::{Frame, LineDecoder};

fn outcomes(reads: &[&[u8]]) -> Vec<Result<(), String>> {
    let mut d = LineDecoder::new(4096);
    let mut out = Vec::new();
    for r in reads {
        d.feed(r, |f| match f {
            Frame::Line(l) => out.push(pm_supervisor::testing::check_request(l).map_err(|reply| {
                let text = reply.to_string();
                assert!(!text.contains('\n'), "{text}");
                assert!(reply["type"] == "reply" && reply["ok"] == false, "{text}");
                assert!(
                    reply["code"].is_string() && reply["error"].is_string(),
                    "{text}"
                );
                text
            })),
            Frame::TooLong { len } => out.push(Err(format!("too long: {len}"))),
        });
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    assert_eq!(outcomes(&[&data[..cut], &data[cut..]]), outcomes(&[data]));
});
