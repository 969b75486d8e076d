//! How the CLI words the library's host-key refusals: SSH's banner for a changed
//! key, and the flags to use for an unknown one. The library returns
//! [`HostKeyError`]; the text the user reads lives here.

use noise_echo::client::{HostKeyError, UnknownReason};

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
        } => format!(
            "the host key {presented} presented by '{host_field}' is marked @revoked in {}:{line}: refusing to connect",
            path.display()
        ),
        HostKeyError::Mismatch {
            host_field,
            expected,
            presented,
        } => format!(
            "host key for '{host_field}' is {presented}, not the expected {expected}: refusing to connect"
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
    fn revoked_and_mismatched_keys_are_worded_as_before() {
        let key = Identity::generate("k").public_key().fingerprint();
        let other = Identity::generate("o").public_key().fingerprint();
        let revoked = HostKeyError::Revoked {
            host_field: "[h]:1".into(),
            path: "/kh".into(),
            line: 4,
            presented: key,
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
            format!("host key for '[h]:1' is {key}, not the expected {other}: refusing to connect")
        );
    }
}
