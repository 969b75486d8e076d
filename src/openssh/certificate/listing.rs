//! A certificate shown as `ssh-keygen -L` shows it, so that `fingerprint` and
//! `authorize --list` can print the same fields people compare with OpenSSH's output.

use std::fmt::Write as _;

use super::{format_time, option_value, Certificate, ED25519_CERT};

impl Certificate {
    /// The `Valid:` field: `forever`, `from A to B`, `after A` or `before B`, times
    /// in UTC (ssh-keygen uses local time; they agree under `TZ=UTC`).
    pub fn validity_text(&self) -> String {
        match (self.valid_after, self.valid_before) {
            (0, u64::MAX) => "forever".to_owned(),
            (0, before) => format!("before {}", format_time(before)),
            (after, u64::MAX) => format!("after {}", format_time(after)),
            (after, before) => format!("from {} to {}", format_time(after), format_time(before)),
        }
    }

    /// The lines of `ssh-keygen -L` after its first (`FILE:`), each indented by 8
    /// spaces and the list items by 16, without trailing newline handling: one
    /// `\n` after every line.
    pub fn to_keygen_listing(&self) -> String {
        let mut out = String::new();
        let field = "        ";
        let item = "                ";
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{field}Type: {ED25519_CERT} {} certificate",
            self.cert_type
        );
        let _ = writeln!(
            out,
            "{field}Public key: ED25519-CERT {}",
            self.key.fingerprint()
        );
        let _ = writeln!(
            out,
            "{field}Signing CA: ED25519 {} (using ssh-ed25519)",
            self.signature_key.fingerprint()
        );
        let _ = writeln!(out, "{field}Key ID: \"{}\"", self.key_id);
        let _ = writeln!(out, "{field}Serial: {}", self.serial);
        let _ = writeln!(out, "{field}Valid: {}", self.validity_text());
        let list = |out: &mut String, name: &str, items: &[String]| {
            if items.is_empty() {
                let _ = writeln!(out, "{field}{name}: (none)");
            } else {
                let _ = writeln!(out, "{field}{name}: ");
                for entry in items {
                    let _ = writeln!(out, "{item}{entry}");
                }
            }
        };
        list(&mut out, "Principals", &self.principals);
        let critical: Vec<String> = self
            .critical_options
            .iter()
            .map(|(name, data)| match (name.as_str(), option_value(data)) {
                ("force-command" | "source-address", Some(value)) => format!("{name} {value}"),
                _ => {
                    let hex: String = data.iter().map(|byte| format!("{byte:02X}")).collect();
                    format!("{name} UNKNOWN OPTION: {hex} (len {})", data.len())
                }
            })
            .collect();
        list(&mut out, "Critical Options", &critical);
        list(&mut out, "Extensions", &self.extensions);
        out
    }
}
