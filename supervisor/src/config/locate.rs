//! Finds where a value sits in JSON text, so that errors found after parsing (a `cwd` that does
//! not exist) can still name a line and column. serde_json keeps no spans; the text has already
//! been parsed successfully when this runs, so the scanner can be small.

use std::fmt;

/// One step of a path into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Segment::Key(k) => f.write_str(k),
            Segment::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// `services[1].env.PORT`
pub(crate) fn path_to_string(path: &[Segment]) -> String {
    let mut out = String::new();
    for seg in path {
        if matches!(seg, Segment::Key(_)) && !out.is_empty() {
            out.push('.');
        }
        out.push_str(&seg.to_string());
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Byte offset where the value at `path` starts, if the text has one there.
pub(crate) fn locate(text: &str, path: &[Segment]) -> Option<usize> {
    let mut s = Scanner {
        b: text.as_bytes(),
        pos: 0,
    };
    s.ws();
    for seg in path {
        match (seg, s.peek()?) {
            (Segment::Key(want), b'{') => {
                s.pos += 1;
                loop {
                    s.ws();
                    if s.peek()? == b'}' {
                        return None;
                    }
                    let key = s.string()?;
                    s.ws();
                    s.expect(b':')?;
                    s.ws();
                    if key == *want {
                        break;
                    }
                    s.skip_value()?;
                    s.ws();
                    if s.peek()? == b',' {
                        s.pos += 1;
                    }
                }
            }
            (Segment::Index(want), b'[') => {
                s.pos += 1;
                for _ in 0..*want {
                    s.ws();
                    if s.peek()? == b']' {
                        return None;
                    }
                    s.skip_value()?;
                    s.ws();
                    s.expect(b',')?;
                }
                s.ws();
                if s.peek()? == b']' {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(s.pos)
}

struct Scanner<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.pos += 1)
    }

    /// A string literal, decoded (enough to compare keys).
    fn string(&mut self) -> Option<String> {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => self.pos += 2,
                _ => self.pos += 1,
            }
        }
        let raw = std::str::from_utf8(self.b.get(start..self.pos)?).ok()?;
        self.pos += 1;
        serde_json::from_str(&format!("\"{raw}\"")).ok()
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.pos += 1;
                loop {
                    self.ws();
                    if self.peek()? == close {
                        self.pos += 1;
                        break;
                    }
                    if open == b'{' {
                        self.string()?;
                        self.ws();
                        self.expect(b':')?;
                        self.ws();
                    }
                    self.skip_value()?;
                    self.ws();
                    if self.peek()? == b',' {
                        self.pos += 1;
                    }
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.pos += 1;
                }
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_values() {
        let text = "{\"a\": 1, \"services\": [ {\"x\": [1, {\"y\": 2}], \"cwd\": \"q\"},\n {\"cwd\" : \"r\\\"\"} ]}";
        let at = locate(
            text,
            &[
                Segment::Key("services".into()),
                Segment::Index(1),
                Segment::Key("cwd".into()),
            ],
        )
        .expect("found");
        assert_eq!(&text[at..at + 3], "\"r\\");
        assert_eq!(line_column(text, at), (2, 11));
        assert_eq!(locate(text, &[Segment::Key("missing".into())]), None);
        assert_eq!(
            locate(text, &[Segment::Key("services".into()), Segment::Index(5)]),
            None
        );
    }

    #[test]
    fn paths_print_like_javascript() {
        let p = [
            Segment::Key("services".into()),
            Segment::Index(2),
            Segment::Key("env".into()),
            Segment::Key("PORT".into()),
        ];
        assert_eq!(path_to_string(&p), "services[2].env.PORT");
    }
}
