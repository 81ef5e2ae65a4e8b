//! `services.json` may be JSONC: `//` and `/* */` comments, and a comma after the last element
//! of an object or array. jsonc-parser scans the text; what plain JSON would not accept is then
//! replaced by spaces, so the text serde_json reads has every byte where the file has it, and
//! every later error (serde's, or a field's found by `locate`) keeps its line and column.

use jsonc_parser::tokens::Token;
use jsonc_parser::{CollectOptions, CommentCollectionStrategy, ParseOptions, parse_to_ast};

/// A JSONC syntax error: byte offset and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) at: usize,
    pub(crate) message: String,
}

/// The text with comments and trailing commas blanked out (same length, same line breaks).
pub(crate) fn to_json(text: &str) -> Result<String, SyntaxError> {
    let options = ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_loose_object_property_names: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        ..ParseOptions::default()
    };
    let collect = CollectOptions {
        comments: CommentCollectionStrategy::AsTokens,
        tokens: true,
    };
    let parsed = parse_to_ast(text, &collect, &options).map_err(|e| {
        // "Expected comma" → "expected comma", as serde_json's messages read.
        let kind = e.kind().to_string();
        let mut chars = kind.chars();
        let message = match chars.next() {
            Some(c) => c.to_lowercase().chain(chars).collect(),
            None => kind,
        };
        SyntaxError {
            at: e.range().start,
            message,
        }
    })?;
    let tokens = parsed.tokens.unwrap_or_default();
    let mut blank: Vec<(usize, usize)> = Vec::new();
    // The last comma seen, while only comments followed it.
    let mut comma: Option<(usize, usize)> = None;
    for t in &tokens {
        match t.token {
            Token::CommentLine(_) | Token::CommentBlock(_) => {
                blank.push((t.range.start, t.range.end));
                continue;
            }
            Token::CloseBrace | Token::CloseBracket => blank.extend(comma),
            _ => {}
        }
        comma = matches!(t.token, Token::Comma).then_some((t.range.start, t.range.end));
    }
    if blank.is_empty() {
        return Ok(text.to_owned());
    }
    let mut out = text.as_bytes().to_vec();
    for (start, end) in blank {
        for b in &mut out[start..end] {
            // Line breaks stay, so that lines keep their numbers; a multi-byte character
            // becomes as many spaces as it has bytes (columns after it on that line are
            // counted in characters by `line_column`, on the original text).
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    // Only ASCII bytes of whole tokens were replaced, so the text is still UTF-8.
    String::from_utf8(out).map_err(|e| SyntaxError {
        at: e.utf8_error().valid_up_to(),
        message: "not UTF-8 after removing comments".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_trailing_commas_become_spaces() {
        let text = "{\n  // a comment\n  \"services\": [1, 2, /* two */],\n}\n";
        let json = to_json(text).expect("valid JSONC");
        assert_eq!(json.len(), text.len());
        let v: serde_json::Value = serde_json::from_str(&json).expect("plain JSON");
        assert_eq!(v, serde_json::json!({"services": [1, 2]}));
        assert_eq!(json.lines().count(), text.lines().count());
    }

    #[test]
    fn strings_that_look_like_comments_stay() {
        let text = r#"{"a": "http://x/*y*/", "b": "1,]"}"#;
        assert_eq!(to_json(text).expect("valid"), text);
    }

    #[test]
    fn an_unterminated_comment_is_located() {
        let text = "{\"services\": []\n/* open";
        let e = to_json(text).expect_err("unterminated");
        assert_eq!(e.at, 16, "{e:?}");
    }
}
