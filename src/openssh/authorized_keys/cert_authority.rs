//! `cert-authority` lines of authorized_keys: a CA key whose user certificates are
//! trusted for the principals the line names, as sshd reads the line.
//!
//! sshd matches the certificate's principals against `principals="..."` when the line
//! has it, and against the login user otherwise. noise-echo has no login user, so the
//! parser only accepts `cert-authority` together with `principals=` (a line with one
//! and not the other is not trusted, with a warning naming its file and line). The
//! line's `from=` and `expiry-time=` apply to every certificate it admits, as in sshd.
//! The certificate itself is checked by [`crate::openssh::certificate`].

use std::net::IpAddr;
use std::time::SystemTime;

use crate::identity::PublicKey;
use crate::openssh::pattern::AddressPatterns;

use super::{check_restrictions, Denial, Expiry};

/// A trusted `cert-authority principals="..."` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertAuthority {
    /// The CA key: certificates it signed are trusted, the key itself is not.
    pub key: PublicKey,
    /// The `principals=` names, in the order written: a certificate is admitted when
    /// one of its principals is one of these, compared exactly as sshd does.
    pub principals: Vec<String>,
    /// The `from="..."` restriction on the client address, for every certificate.
    pub from: Option<AddressPatterns>,
    /// The `expiry-time="..."` of the line itself (the earliest, if several).
    pub expiry: Option<Expiry>,
    /// The text after the key; empty when absent.
    pub comment: String,
    /// The 1-based line number in the file, for the log.
    pub line: usize,
    /// The options field as written.
    pub options: String,
}

impl CertAuthority {
    /// The first of `certificate_principals` this line admits, if any.
    pub fn admitted_principal<'a>(&self, certificate_principals: &'a [String]) -> Option<&'a str> {
        certificate_principals
            .iter()
            .find(|principal| self.principals.contains(principal))
            .map(String::as_str)
    }

    /// Whether this line's `from=` and `expiry-time=` admit a connection from `addr`
    /// at `now`.
    ///
    /// # Errors
    /// The [`Denial`] naming the CA key and the option that refuses it.
    pub fn permits(&self, addr: IpAddr, now: SystemTime) -> Result<(), Denial> {
        check_restrictions(
            &self.key,
            self.from.as_ref(),
            self.expiry,
            self.line,
            addr,
            now,
        )
    }
}
