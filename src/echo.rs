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
    // is valid UTF-8: checking for it first spares the full UTF-8 validation of
    // the common case.
    if uppercase_ascii(body) {
        return Answer::InPlace;
    }
    not_ascii(body)
}

/// The rest of [`answer`] for text that is not all ASCII: out of line, so that the
/// common case carries none of its code (a smaller prologue per request).
#[cold]
#[inline(never)]
fn not_ascii(body: &[u8]) -> Answer {
    match std::str::from_utf8(body) {
        Ok(text) => Answer::Converted(text.to_uppercase()),
        Err(error) => Answer::NotUtf8 {
            valid_up_to: error.valid_up_to(),
        },
    }
}

/// Uppercases the ASCII letters of `body` in place and says whether it is all
/// ASCII, in one pass (`is_ascii` then `make_ascii_uppercase` took two, some 75
/// instructions for a 16-byte request). When it is not (`false`), its ASCII
/// letters are uppercased all the same and the rest is unchanged: [`answer`] then
/// makes the reply from that text, whose uppercase form is the original's.
///
/// A large body goes through in blocks of 64 bytes that the compiler turns into
/// vector code (145 us per MiB with the word-at-a-time pass alone, 65 with blocks,
/// on the benchmark machine); what is left, and every small body, goes eight bytes
/// at a time.
#[inline]
pub fn uppercase_ascii(body: &mut [u8]) -> bool {
    if body.len() < BLOCK {
        return uppercase_words(body);
    }
    let (blocks, rest) = body.as_chunks_mut::<BLOCK>();
    let mut seen = 0u8;
    for block in blocks {
        seen |= uppercase_block(block);
    }
    uppercase_words(rest) && seen < 0x80
}

/// The bytes of one block of [`uppercase_ascii`]'s vector pass.
const BLOCK: usize = 64;

/// One block of [`uppercase_ascii`]: uppercases its ASCII letters; returns the OR
/// of its bytes (under 0x80 when all are ASCII). Branch-free per byte, so that it
/// compiles to vector code.
fn uppercase_block(block: &mut [u8; BLOCK]) -> u8 {
    let mut seen = 0u8;
    for byte in block.iter_mut() {
        seen |= *byte;
        let lowercase = byte.wrapping_sub(b'a') < 26;
        // 0x20 is the case bit.
        *byte ^= u8::from(lowercase) << 5;
    }
    seen
}

/// [`uppercase_ascii`] eight bytes at a time: for a small body, where setting up
/// the vector pass costs more than it saves.
#[inline]
fn uppercase_words(body: &mut [u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut seen = 0u64;
    let mut chunks = body.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        seen |= word;
        if word & HIGH != 0 {
            // The sums below would carry between bytes: byte by byte here.
            uppercase_bytes(chunk);
            continue;
        }
        // Each byte is under 0x80, so adding to it never carries into the next:
        // its top bit is set by the first sum when it is at least `a`, by the
        // second when it is past `z`.
        let from_a = word.wrapping_add(ONES * u64::from(0x80 - b'a'));
        let past_z = word.wrapping_add(ONES * u64::from(0x80 - b'z' - 1));
        let lower = from_a & !past_z & HIGH;
        // 0x80 >> 2 is 0x20, the case bit.
        chunk.copy_from_slice(&(word ^ (lower >> 2)).to_le_bytes());
    }
    for byte in chunks.into_remainder() {
        seen |= u64::from(*byte);
        byte.make_ascii_uppercase();
    }
    seen & HIGH == 0
}

/// A word of [`uppercase_ascii`] with non-ASCII bytes, out of line: inlined, the
/// standard library's vector code set up its constants on every call.
#[cold]
#[inline(never)]
fn uppercase_bytes(chunk: &mut [u8]) {
    chunk.make_ascii_uppercase();
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
    fn the_one_pass_matches_the_standard_library_for_every_byte() {
        // Every byte value at every position of a word, of a block and of the
        // tail, among letters on both sides of the case bit's edges (`@`, `[`,
        // `` ` ``, `{`).
        for len in [1, 7, 8, 9, 16, 23, BLOCK, BLOCK + 9, 2 * BLOCK + 1] {
            for at in 0..len {
                for byte in 0..=255u8 {
                    let mut body: Vec<u8> = (0..len).map(|i| b"@AZ[`az{"[i % 8]).collect();
                    body[at] = byte;
                    let mut expected = body.clone();
                    expected.make_ascii_uppercase();
                    let ascii = body.is_ascii();
                    assert_eq!(
                        uppercase_ascii(&mut body),
                        ascii,
                        "{byte:#x} at {at} of {len}"
                    );
                    assert_eq!(body, expected, "{byte:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn non_ascii_text_keeps_its_ascii_letters_uppercased() {
        let mut body = "abcdefgh été ijklmnop".as_bytes().to_vec();
        assert_eq!(
            answer(&mut body),
            Answer::Converted("ABCDEFGH ÉTÉ IJKLMNOP".into())
        );
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
