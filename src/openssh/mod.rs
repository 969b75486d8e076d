//! OpenSSH's file formats, one module per format: private and public key files
//! ([`keyfile`]), the server's allow-list ([`authorized_keys`]), the client's record of
//! servers ([`known_hosts`]), user and host certificates ([`certificate`]), the
//! server's trusted user CAs and principals kept apart from authorized_keys
//! ([`trusted_user_ca`]), and the host and address patterns both use ([`pattern`]),
//! all over one shared [`lexer`] for lines, fields, key type names and SSH strings.

pub mod authorized_keys;
pub mod certificate;
pub mod keyfile;
pub mod known_hosts;
pub mod lexer;
pub mod pattern;
pub mod trusted_user_ca;

// Revocation: sshd's RevokedKeys file, as a text list or an OpenSSH KRL.
pub mod krl;
pub mod revoked;
