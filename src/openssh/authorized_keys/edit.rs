//! Edits of an authorized_keys file's bytes, as `authorize` makes them: removing the
//! lines that hold a key, appending a line. Every byte not edited is kept as it was.

use std::borrow::Cow;

use crate::identity::{Fingerprint, PublicKey};
use crate::openssh::lexer::{is_field_separator, is_known_key_type, line_text, LineText};

/// A line taken out of a file by [`remove_key`] or [`remove_keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedLine {
    /// Its 1-based line number in the original file.
    pub line: usize,
    /// Its text, without the line ending (invalid UTF-8 replaced).
    pub text: String,
    /// The fingerprint, among those asked for, of the key it held.
    pub fingerprint: Fingerprint,
}

/// Returns `original` without the lines that hold the key with `fingerprint`, and
/// those lines. Every other byte, including comments, other key types and malformed
/// lines, is kept as it was.
///
/// A line "holds" the key when it has `KEYTYPE BASE64` for it anywhere outside a `#`
/// comment line, even if its options are broken or unsupported: the user asking to
/// remove a key means every line naming it. Any key type OpenSSH knows counts (the
/// fingerprint is the SHA-256 of the blob for all of them), so that a key `--list`
/// shows as untrusted can be removed too.
pub fn remove_key(original: &[u8], fingerprint: &Fingerprint) -> (Vec<u8>, Vec<RemovedLine>) {
    remove_keys(original, std::slice::from_ref(fingerprint))
}

/// [`remove_key`] for several keys at once, in one pass, so that the line numbers
/// of the removed lines are those of `original`.
pub fn remove_keys(original: &[u8], fingerprints: &[Fingerprint]) -> (Vec<u8>, Vec<RemovedLine>) {
    let mut kept = Vec::with_capacity(original.len());
    let mut removed = Vec::new();
    for (index, chunk) in original.split_inclusive(|&b| b == b'\n').enumerate() {
        let content = chunk.strip_suffix(b"\n").unwrap_or(chunk);
        if let Some(fingerprint) = line_holds_key(content, fingerprints) {
            let text = String::from_utf8_lossy(content);
            removed.push(RemovedLine {
                line: index + 1,
                text: text.strip_suffix('\r').unwrap_or(&text).to_owned(),
                fingerprint,
            });
        } else {
            kept.extend_from_slice(chunk);
        }
    }
    (kept, removed)
}

/// Which of `fingerprints`, if any, is the ssh-ed25519 key `line` holds.
fn line_holds_key(line: &[u8], fingerprints: &[Fingerprint]) -> Option<Fingerprint> {
    // A comment that is not UTF-8 must not hide the key from its removal.
    let text = match line_text(line) {
        LineText::Skip => return None,
        LineText::NotUtf8 => String::from_utf8_lossy(line),
        LineText::Text(text) => Cow::Borrowed(text),
    };
    // Runs of separators are one separator, as for the parser: an empty field between
    // two spaces must not hide the key from its removal.
    let fields: Vec<&str> = text
        .split(is_field_separator)
        .filter(|field| !field.is_empty())
        .collect();
    fields.windows(2).find_map(|pair| {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine as _;
        use sha2::Digest as _;
        if !is_known_key_type(pair[0]) {
            return None;
        }
        let digest: [u8; 32] = sha2::Sha256::digest(STANDARD.decode(pair[1]).ok()?).into();
        fingerprints
            .iter()
            .find(|fingerprint| *fingerprint.as_bytes() == digest)
            .copied()
    })
}

/// Returns `original` with `line` appended as a new last line. A missing final
/// newline is added first, so the new line never joins the old last one.
///
/// Line breaks inside `line` are replaced by spaces: a comment copied from elsewhere
/// must not be able to smuggle a second key line into the file.
pub fn append_line(original: &[u8], line: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(original.len() + line.len() + 2);
    out.extend_from_slice(original);
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend(
        line.bytes()
            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    out.push(b'\n');
    out
}

/// Returns `original` with `key` appended as a plain `ssh-ed25519 BASE64 comment`
/// line (see [`append_line`]).
pub fn append_key(original: &[u8], key: &PublicKey, comment: &str) -> Vec<u8> {
    append_line(original, &key.to_openssh_line(comment.trim()))
}
