//! How the CLI words the library's host-key refusals: SSH's banner for a changed
//! key, and the flags to use for an unknown one. The library returns
//! [`HostKeyError`]; the text the user reads lives here.

use noise_echo::client::{HostKeyError, UnknownHost, UnknownReason};

/// ssh lists at most this many other names of a key, then says how many it left out.
const MAX_OTHER_NAMES: usize = 8;

/// The question about an unknown host key, as ssh asks it (the terminal prompt and
/// the askpass program show the same text), with the other names the key is known
/// by in known_hosts.
pub(crate) fn unknown_host_prompt(unknown: &UnknownHost) -> String {
    let mut text = format!(
        "The authenticity of host '{}' can't be established.\n\
         ED25519 key fingerprint is {}.\n",
        unknown.host_field,
        unknown.key.fingerprint()
    );
    if let Some(ca) = &unknown.ignored_certificate_ca {
        text.push_str(&format!(
            "It presented a host certificate signed by the CA {ca}, which no @cert-authority line in {} trusts for it.\n",
            unknown.known_hosts.display()
        ));
    }
    if unknown.other_names.is_empty() {
        text.push_str("This key is not known by any other names.\n");
    } else {
        text.push_str("This host key is known by the following other names/addresses:\n");
        for other in unknown.other_names.iter().take(MAX_OTHER_NAMES) {
            text.push_str(&format!(
                "    {}:{}: {}\n",
                unknown.known_hosts.display(),
                other.line,
                // From the file: escaped, so it cannot drive the terminal.
                super::printable(&other.name)
            ));
        }
        if let Some(omitted) = unknown.other_names.len().checked_sub(MAX_OTHER_NAMES) {
            if omitted > 0 {
                text.push_str(&format!("({omitted} additional names omitted)\n"));
            }
        }
    }
    text.push_str("Are you sure you want to continue connecting (yes/no/[fingerprint])? ");
    text
}

/// The message for a host-key refusal, as SSH words it.
pub(crate) fn host_key_error(error: &HostKeyError) -> String {
    match error {
        HostKeyError::Changed {
            host_field,
            path,
            line,
            expected,
            presented,
        } => format!(
            "\n\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n\
It is also possible that the host key has just been changed.\n\
The fingerprint for the ED25519 key sent by the remote host '{host_field}' is\n\
{presented}.\n\
The key known for it is {expected}.\n\
Please contact your system administrator.\n\
Offending ED25519 key in {path}:{line}\n\
If the change is legitimate, remove that line (ssh-keygen -R '{host_field}' -f {path}) and connect again.\n\
Host key for '{host_field}' has changed: refusing to connect.",
            path = path.display(),
        ),
        HostKeyError::Revoked {
            host_field,
            path,
            line,
            presented,
            authority: None,
        } => format!(
            "the host key {presented} presented by '{host_field}' is marked @revoked in {}:{line}: refusing to connect",
            path.display()
        ),
        HostKeyError::Revoked {
            host_field,
            path,
            line,
            presented,
            authority: Some(ca),
        } => format!(
            "the CA key {ca} that certified the host key {presented} presented by '{host_field}' \
             is marked @revoked in {}:{line}: refusing to connect",
            path.display()
        ),
        HostKeyError::RevokedByFile {
            host_field,
            path,
            revocation,
            presented,
        } => format!(
            "the host key {presented} presented by '{host_field}' is revoked by the RevokedHostKeys \
             file {} ({revocation}): refusing to connect",
            path.display()
        ),
        HostKeyError::CertificateInvalid {
            host_field,
            path,
            line,
            reason,
            presented,
        } => format!(
            "the host certificate of {presented} presented by '{host_field}' is refused: {reason}.\n\
             Its CA is trusted for this host by the @cert-authority line {}:{line}, so the key is not \
             trusted on first use either: refusing to connect",
            path.display()
        ),
        HostKeyError::Mismatch {
            host_field,
            expected,
            presented,
        } => format!(
            "host key for '{host_field}' is {presented}, not the expected {expected} (--expect-fingerprint): refusing to connect"
        ),
        HostKeyError::Unknown {
            host_field,
            presented,
            reason: UnknownReason::NoPrompt,
        } => format!(
            "host key for '{host_field}' is not known (ED25519 key fingerprint {presented}).\n\
             Check the fingerprint with the server's operator, then connect again with\n\
             --expect-fingerprint {presented}\n\
             (or --accept-new-host to trust whatever key the server presents, or from a terminal to be asked)"
        ),
        HostKeyError::Unknown { host_field, .. } => {
            format!("host key for '{host_field}' was not accepted")
        }
        other => other.to_string(),
    }
}

/// The first line of the changed-key banner, for the demo.
pub(crate) const CHANGED_HEADLINE: &str = "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!";

#[cfg(test)]
mod tests {
    use super::*;
    use noise_echo::identity::Identity;

    #[test]
    fn the_question_shows_at_most_eight_other_names_and_escapes_them() {
        use noise_echo::openssh::known_hosts::OtherName;
        let key = Identity::generate("k").public_key();
        let mut unknown = UnknownHost {
            host_field: "[new]:1234".into(),
            key,
            known_hosts: "/home/u/kh".into(),
            other_names: (1..=10)
                .map(|line| OtherName {
                    line,
                    name: format!("host{line}"),
                })
                .collect(),
            ignored_certificate_ca: None,
        };
        unknown.other_names[0].name = "evil\u{1b}[2J".into();
        let text = unknown_host_prompt(&unknown);
        assert!(
            text.contains(
                "names/addresses:\n    /home/u/kh:1: evil\\u{1b}[2J\n    /home/u/kh:2: host2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("    /home/u/kh:8: host8\n(2 additional names omitted)\nAre you sure"),
            "{text}"
        );
        assert!(!text.contains("host9"), "{text}");
        assert!(!text.contains("not known by any other names"), "{text}");
        unknown.other_names.truncate(8);
        assert!(!unknown_host_prompt(&unknown).contains("omitted"));
    }

    #[test]
    fn the_question_says_when_a_certificate_from_an_untrusted_ca_was_ignored() {
        let ca = Identity::generate("ca").public_key().fingerprint();
        let key = Identity::generate("k").public_key();
        let unknown = UnknownHost {
            host_field: "[new]:1234".into(),
            key,
            known_hosts: "/home/u/kh".into(),
            other_names: Vec::new(),
            ignored_certificate_ca: Some(ca),
        };
        let text = unknown_host_prompt(&unknown);
        assert_eq!(
            text,
            format!(
                "The authenticity of host '[new]:1234' can't be established.\n\
                 ED25519 key fingerprint is {}.\n\
                 It presented a host certificate signed by the CA {ca}, which no @cert-authority line in /home/u/kh trusts for it.\n\
                 This key is not known by any other names.\n\
                 Are you sure you want to continue connecting (yes/no/[fingerprint])? ",
                key.fingerprint()
            )
        );
    }

    #[test]
    fn revoked_and_mismatched_keys_are_worded_as_before() {
        let key = Identity::generate("k").public_key().fingerprint();
        let other = Identity::generate("o").public_key().fingerprint();
        let revoked = HostKeyError::Revoked {
            host_field: "[h]:1".into(),
            path: "/kh".into(),
            line: 4,
            presented: key,
            authority: None,
        };
        assert_eq!(
            host_key_error(&revoked),
            format!("the host key {key} presented by '[h]:1' is marked @revoked in /kh:4: refusing to connect")
        );
        let mismatch = HostKeyError::Mismatch {
            host_field: "[h]:1".into(),
            expected: other,
            presented: key,
        };
        assert_eq!(
            host_key_error(&mismatch),
            format!("host key for '[h]:1' is {key}, not the expected {other} (--expect-fingerprint): refusing to connect")
        );
    }
}
