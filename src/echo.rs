//! The echo service's rules, written once: the server's connection code and the
//! plaintext baseline (tools/src/bench/plain.rs) both answer a REQUEST with
//! [`answer`].
//!
//! A REQUEST that is valid UTF-8 is answered with its uppercase form; one that is
//! not gets an ERROR naming the first invalid byte.

/// The start of the ERROR text for a request that is not valid UTF-8.
pub const NOT_UTF8: &str = "request is not valid UTF-8";

/// What [`answer`] made of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Answer {
    /// The body was ASCII and now holds its uppercase form (converted in place).
    InPlace,
    /// The body was UTF-8 with non-ASCII characters: this is its uppercase form.
    Converted(String),
    /// The body is not valid UTF-8; the reply is an ERROR.
    NotUtf8 {
        /// Offset of the first invalid byte.
        valid_up_to: usize,
    },
}

impl Answer {
    /// The ERROR text for [`Answer::NotUtf8`], `None` for a response.
    pub fn error_text(&self) -> Option<String> {
        match self {
            Answer::NotUtf8 { valid_up_to } => {
                Some(format!("{NOT_UTF8} (invalid byte at offset {valid_up_to})"))
            }
            _ => None,
        }
    }
}

/// Answers one request: uppercases `body` in place when it is ASCII (no
/// allocation), returns the uppercase form of other UTF-8 text, and reports
/// invalid UTF-8.
pub fn answer(body: &mut [u8]) -> Answer {
    // ASCII letters are uppercased in place (as to_uppercase maps them), so
    // only text with other characters needs a second buffer of its size. ASCII
    // is valid UTF-8: checking for it first (a fast word-at-a-time scan) spares
    // the full UTF-8 validation of the common case.
    let ascii = body.is_ascii();
    body.make_ascii_uppercase();
    if ascii {
        return Answer::InPlace;
    }
    match std::str::from_utf8(body) {
        Ok(text) => Answer::Converted(text.to_uppercase()),
        Err(error) => Answer::NotUtf8 {
            valid_up_to: error.valid_up_to(),
        },
    }
}

/// The ERROR text for a request of `len` bytes over the `limit`.
pub fn too_large(len: u64, limit: u64) -> String {
    format!("request too large: {len} bytes, the limit is {limit} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_uppercased_in_place() {
        let mut body = b"hello".to_vec();
        assert_eq!(answer(&mut body), Answer::InPlace);
        assert_eq!(body, b"HELLO");
    }

    #[test]
    fn unicode_is_uppercased_into_a_new_string() {
        let mut body = "straße".as_bytes().to_vec();
        assert_eq!(answer(&mut body), Answer::Converted("STRASSE".into()));
    }

    #[test]
    fn invalid_utf8_names_the_offset() {
        let mut body = b"ab\xff".to_vec();
        let reply = answer(&mut body);
        assert_eq!(reply, Answer::NotUtf8 { valid_up_to: 2 });
        assert_eq!(
            reply.error_text().unwrap(),
            "request is not valid UTF-8 (invalid byte at offset 2)"
        );
    }
}
