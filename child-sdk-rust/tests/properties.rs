//! Properties of the line codec, over generated inputs.

use pm_child::protocol::{self, Frame, FromChild, LineDecoder, ToChild};
use proptest::prelude::*;

/// Frames as owned values: Ok(line) or Err(length of a dropped over-long line).
fn frames(reads: &[&[u8]], max: usize) -> Vec<Result<Vec<u8>, usize>> {
    let mut d = LineDecoder::new(max);
    let mut out = Vec::new();
    for r in reads {
        d.feed(r, |f| match f {
            Frame::Line(l) => out.push(Ok(l.to_vec())),
            Frame::TooLong { len } => out.push(Err(len)),
        });
    }
    out
}

/// A byte stream rich in newlines, and cut points into it.
fn stream_and_cuts() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    prop::collection::vec(prop_oneof![4 => any::<u8>(), 1 => Just(b'\n')], 0..400).prop_flat_map(
        |data| {
            let len = data.len();
            (Just(data), prop::collection::vec(0..=len, 0..20))
        },
    )
}

proptest! {
    /// However a stream is cut into reads, the same lines come out.
    #[test]
    fn any_split_gives_the_same_lines((data, mut cuts) in stream_and_cuts(), max in 1usize..64) {
        cuts.sort_unstable();
        let mut reads = Vec::new();
        let mut at = 0;
        for c in cuts {
            reads.push(&data[at..c]);
            at = c;
        }
        reads.push(&data[at..]);
        prop_assert_eq!(frames(&reads, max), frames(&[&data], max));
    }

    /// Lines within the limit come out exactly; longer ones are reported with their length.
    #[test]
    fn lines_are_exact_and_bounded(lines in prop::collection::vec(prop::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..50), 0..20), max in 1usize..40) {
        let mut data = Vec::new();
        for l in &lines {
            data.extend_from_slice(l);
            data.push(b'\n');
        }
        let expected: Vec<Result<Vec<u8>, usize>> = lines
            .iter()
            .map(|l| if l.len() > max { Err(l.len()) } else { Ok(l.clone()) })
            .collect();
        prop_assert_eq!(frames(&[&data], max), expected);
    }

    /// Decoding never panics, whatever the bytes.
    #[test]
    fn decoding_never_panics(line in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = protocol::decode::<FromChild>(&line);
        let _ = protocol::decode::<ToChild>(&line);
    }

    /// Whatever data a message carries, it is written as exactly one line that decodes back to
    /// the same data, keys in the same order.
    #[test]
    fn data_round_trips(text in ".*", key in "[a-z]{1,8}", n in any::<u64>(), x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
        for data in [
            serde_json::json!({"text": text, "n": n}),
            serde_json::json!({ key.clone(): x, "a": [text, null], "cmd": "NODE" }),
            serde_json::Value::String(text.clone()),
            serde_json::json!(x),
        ] {
            let msg = FromChild::Data(data.clone());
            let line = protocol::encode(&msg);
            prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(protocol::encoded_len(&data), line.len() - 1);
            let back = protocol::decode::<FromChild>(&line[..line.len() - 1]);
            prop_assert_eq!(&back, &Ok(protocol::Decoded::Message(msg)));
            if let Ok(protocol::Decoded::Message(FromChild::Data(d))) = back {
                prop_assert_eq!(d.to_string(), data.to_string());
            }
        }
    }

    /// A bad line's report is a few hundred bytes at most, whatever the line held.
    #[test]
    fn error_reports_are_bounded(junk in ".{0,3000}", n in 0usize..4) {
        let line = match n {
            0 => format!("{{\"cmd\":\"NODE_PM\",\"type\":\"extend\",\"ms\":{}}}", serde_json::Value::String(junk)),
            1 => format!("{{\"cmd\":{}}}", serde_json::Value::String(format!("NODE_{junk}"))),
            2 => format!("{{\"cmd\":\"NODE_PM\",\"type\":\"stop\",\"reason\":{}}}", serde_json::Value::String(junk)),
            _ => junk,
        };
        if let Err(e) = protocol::decode::<ToChild>(line.as_bytes()) {
            prop_assert!(e.to_string().len() <= 300, "{}", e);
        }
        if let Err(e) = protocol::decode::<FromChild>(line.as_bytes()) {
            prop_assert!(e.to_string().len() <= 300, "{}", e);
        }
    }
}
