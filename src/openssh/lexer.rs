//! The lexing every OpenSSH text format shares: numbering lines, skipping blanks
//! and `#` comments, trimming whitespace and a CR, splitting blank-separated
//! fields, the table of key type names OpenSSH knows, and the SSH wire `string`
//! (u32 big-endian length prefix) that key blobs are made of.
//!
//! authorized_keys, known_hosts and the CLI's fingerprint and authorize commands
//! all read lines through here, so they agree on what a field and a key type are.

use crate::identity::SSH_ED25519;

/// The lines of a file, numbered from 1. A final newline does not start a line.
pub(crate) fn numbered_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\n").unwrap_or(line))
        .enumerate()
        .map(|(index, line)| (index + 1, line))
}

/// What a raw line holds, before its fields are looked at.
pub(crate) enum LineText<'a> {
    /// Blank or a `#` comment.
    Skip,
    /// Something other than a comment that is not UTF-8.
    NotUtf8,
    /// The line without surrounding blanks or a trailing `\r`.
    Text(&'a str),
}

/// Whether `c` separates fields: sshd splits on spaces and tabs only.
pub(crate) fn is_field_separator(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Classifies a line. Comments are recognised before UTF-8 is checked, because a
/// Latin-1 comment is harmless and sshd ignores it too.
pub(crate) fn line_text(line: &[u8]) -> LineText<'_> {
    let is_blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    let start = line.iter().position(|b| !is_blank(b)).unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |i| i + 1);
    let line = &line[start..end.max(start)];
    if line.is_empty() || line[0] == b'#' {
        return LineText::Skip;
    }
    match std::str::from_utf8(line) {
        Ok(text) => LineText::Text(text),
        Err(_) => LineText::NotUtf8,
    }
}

/// Splits off the first space- or tab-separated field; the rest has its leading
/// separators removed.
pub(crate) fn split_field(text: &str) -> (&str, &str) {
    match text.find(is_field_separator) {
        Some(end) => (
            &text[..end],
            text[end..].trim_start_matches(is_field_separator),
        ),
        None => (text, ""),
    }
}

/// Whether `name` is a key type OpenSSH knows, so that a line of that type is
/// recognised (and skipped as unsupported) rather than called malformed.
pub(crate) fn is_known_key_type(name: &str) -> bool {
    const TYPES: &[&str] = &[
        SSH_ED25519,
        "ssh-rsa",
        "rsa-sha2-256",
        "rsa-sha2-512",
        "ssh-dss",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "sk-ssh-ed25519@openssh.com",
        "ssh-xmss@openssh.com",
    ];
    TYPES.contains(&name) || name.ends_with("-cert-v01@openssh.com")
}

/// Splits one SSH `string` (u32 big-endian length, then that many bytes) off the
/// front of `data`, returning it and what follows; `None` if `data` is too short.
pub(crate) fn read_ssh_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    (rest.len() >= len).then(|| rest.split_at(len))
}
