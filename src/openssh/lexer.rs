//! The lexing every OpenSSH text format shares: numbering lines, skipping blanks
//! and `#` comments, trimming whitespace and a CR, splitting blank-separated
//! fields, the table of key type names OpenSSH knows, and the SSH wire `string`
//! (u32 big-endian length prefix) that key blobs are made of.
//!
//! authorized_keys, known_hosts and the CLI's fingerprint and authorize commands
//! all read lines through here, so they agree on what a field and a key type are.

use crate::identity::SSH_ED25519;

/// The lines of a file, numbered from 1. A final newline does not start a line.
pub fn numbered_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\n").unwrap_or(line))
        .enumerate()
        .map(|(index, line)| (index + 1, line))
}

/// What a raw line holds, before its fields are looked at.
pub enum LineText<'a> {
    /// Blank or a `#` comment.
    Skip,
    /// Something other than a comment that is not UTF-8.
    NotUtf8,
    /// The line without surrounding blanks or a trailing `\r`.
    Text(&'a str),
}

/// Whether `c` separates fields: sshd splits on spaces and tabs only.
pub fn is_field_separator(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Classifies a line. Comments are recognised before UTF-8 is checked, because a
/// Latin-1 comment is harmless and sshd ignores it too.
pub fn line_text(line: &[u8]) -> LineText<'_> {
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
pub fn split_field(text: &str) -> (&str, &str) {
    match text.find(is_field_separator) {
        Some(end) => (
            &text[..end],
            text[end..].trim_start_matches(is_field_separator),
        ),
        None => (text, ""),
    }
}

/// The key type names OpenSSH knows besides the certificate types, which all end in
/// [`CERTIFICATE_SUFFIX`]. Only [`SSH_ED25519`] is usable by noise-echo; the rest are
/// recognised so that their lines are skipped as another key type, not as garbage.
pub const KEY_TYPES: &[&str] = &[
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

/// How every OpenSSH certificate key type name ends (`ssh-ed25519-cert-v01@openssh.com`).
pub const CERTIFICATE_SUFFIX: &str = "-cert-v01@openssh.com";

/// Whether `name` is a key type OpenSSH knows (plain or certificate), so that a
/// line of that type is recognised (and skipped as unsupported) rather than called
/// malformed.
pub fn is_known_key_type(name: &str) -> bool {
    KEY_TYPES.contains(&name) || name.ends_with(CERTIFICATE_SUFFIX)
}

/// Splits off a field that may hold double-quoted parts, as sshd's
/// `sshkey_advance_past_options` skips an authorized_keys options field: blanks
/// end it only outside double quotes, and `\"` does not toggle quoting (no other
/// backslash is special). The rest has its leading blanks removed.
///
/// # Errors
/// If a double quote is left open; the message says so.
pub fn split_quoted_field(text: &str) -> Result<(&str, &str), String> {
    let bytes = text.as_bytes();
    let mut quoted = false;
    let mut index = 0;
    while index < bytes.len() && (quoted || !matches!(bytes[index], b' ' | b'\t')) {
        if bytes[index] == b'\\' && bytes.get(index + 1) == Some(&b'"') {
            index += 1;
        } else if bytes[index] == b'"' {
            quoted = !quoted;
        }
        index += 1;
    }
    if quoted {
        return Err("unterminated quote in the options".to_owned());
    }
    // Only ASCII bytes were compared, so `index` is on a character boundary.
    Ok((
        &text[..index],
        text[index..].trim_start_matches(is_field_separator),
    ))
}

/// The fields of a line's text (see [`split_quoted_field`]): split on spaces and
/// tabs, with double-quoted parts kept in their field. An unterminated quote makes
/// the rest of the line one field, which no caller will take for a key.
pub fn fields(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text.trim_start_matches(is_field_separator);
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (field, after) = split_quoted_field(rest).unwrap_or((rest, ""));
        rest = after;
        Some(field)
    })
}

/// Splits one SSH `string` (u32 big-endian length, then that many bytes) off the
/// front of `data`, returning it and what follows; `None` if `data` is too short.
pub(crate) fn read_ssh_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quoted_parts_keep_blanks_and_only_backslash_quote_is_an_escape() {
        let split: Vec<&str> = fields(r#"from="a b",x=\"y "c\" d" key"#).collect();
        assert_eq!(split, [r#"from="a b",x=\"y"#, r#""c\" d""#, "key"]);
        // sshd's rule: `\\` is not an escape, so the `\"` after it is one.
        let split: Vec<&str> = fields(r#""a\\" b" c"#).collect();
        assert_eq!(split, [r#""a\\" b""#, "c"]);
        assert_eq!(fields(" \t a\tb  c ").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(fields(r#"x "open"#).collect::<Vec<_>>(), ["x", r#""open"#]);
        assert!(split_quoted_field(r#""open"#).is_err());
    }

    #[test]
    fn only_spaces_and_tabs_separate_fields() {
        // A no-break space or form feed is part of a field, as in sshd.
        assert_eq!(
            fields("a\u{a0}b\x0cc").collect::<Vec<_>>(),
            ["a\u{a0}b\x0cc"]
        );
    }

    #[test]
    fn comments_blanks_and_carriage_returns() {
        assert!(matches!(line_text(b"  # note"), LineText::Skip));
        assert!(matches!(line_text(b" \t\r"), LineText::Skip));
        assert!(matches!(line_text(b"# \xff latin-1"), LineText::Skip));
        assert!(matches!(line_text(b"\xff"), LineText::NotUtf8));
        assert!(matches!(
            line_text(b" ssh-ed25519 AAAA c\r"),
            LineText::Text("ssh-ed25519 AAAA c")
        ));
    }

    #[test]
    fn key_type_table() {
        assert!(is_known_key_type("ssh-ed25519"));
        assert!(is_known_key_type("ssh-rsa"));
        assert!(is_known_key_type("ecdsa-sha2-nistp256"));
        assert!(is_known_key_type("sk-ssh-ed25519@openssh.com"));
        assert!(is_known_key_type("ssh-ed25519-cert-v01@openssh.com"));
        assert!(!is_known_key_type("ssh-x"));
        assert!(!is_known_key_type("from=\"x\""));
    }

    #[test]
    fn ssh_strings() {
        assert_eq!(
            read_ssh_string(b"\0\0\0\x02abc"),
            Some((&b"ab"[..], &b"c"[..]))
        );
        assert_eq!(read_ssh_string(b"\0\0\0\x05abc"), None);
        assert_eq!(read_ssh_string(b"\0\0"), None);
    }

    /// A field as a writer would produce it: plain characters, with optional
    /// double-quoted parts that may hold blanks and escaped quotes.
    fn field_strategy() -> impl Strategy<Value = String> {
        let plain = "[a-zA-Z0-9=,.@:_-]{1,6}";
        let quoted = "([a-z \t,]|\\\\\"){0,6}".prop_map(|inner| format!("\"{inner}\""));
        proptest::collection::vec(prop_oneof![plain.boxed(), quoted.boxed()], 1..4)
            .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn joined_fields_split_back(
            parts in proptest::collection::vec(field_strategy(), 0..6),
            separators in proptest::collection::vec("[ \t]{1,3}", 6),
        ) {
            let mut line = String::new();
            for (part, separator) in parts.iter().zip(&separators) {
                line.push_str(part);
                line.push_str(separator);
            }
            let split: Vec<&str> = fields(&line).collect();
            prop_assert_eq!(split, parts.iter().map(String::as_str).collect::<Vec<_>>());
        }

        #[test]
        fn fields_never_panic_and_cover_the_text(text in "\\PC{0,40}") {
            let total: usize = fields(&text).map(str::len).sum();
            prop_assert!(total <= text.len());
            for field in fields(&text) {
                prop_assert!(!field.is_empty());
            }
        }
    }
}
