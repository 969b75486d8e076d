//! The options field of an authorized_keys line: splitting it into options as
//! sshd's `sshauthopt_parse` (auth-options.c) does, and deciding which noise-echo
//! can honour.
//!
//! Every option sshd knows falls in one of three groups:
//! - honoured: `from="pattern-list"` and `expiry-time="timespec"`, and on a line
//!   that has both, `cert-authority` with `principals="name,..."`: the line then
//!   trusts user certificates signed by its key for those principals (see
//!   [`super::CertAuthority`]). sshd matches a certificate without `principals=`
//!   against the login user; noise-echo has none, so `cert-authority` without
//!   `principals=` is refused, and so is `principals=` without `cert-authority`
//!   (it only means something for certificates);
//! - accepted with no effect, because they only take away sshd features noise-echo
//!   does not offer (a pty, forwarding, `~/.ssh/rc`): `restrict`, `no-pty`,
//!   `no-port-forwarding`, `no-agent-forwarding`, `no-X11-forwarding`, `no-user-rc`,
//!   and `no-touch-required` / `no-verify-required`, which sshd applies only to
//!   security-key signatures, never to the ssh-ed25519 keys noise-echo uses;
//! - refused (the line is not trusted), because they grant or change something
//!   noise-echo cannot enforce or would give away by ignoring them: `command=`,
//!   `environment=`, `permitopen=`, `permitlisten=`, `tunnel=`, `touch-required`, `verify-required`, and the positive flags
//!   `pty`, `port-forwarding`, `agent-forwarding`, `X11-forwarding`, `user-rc`
//!   (after `restrict` they give a feature back; the line is written for an sshd
//!   session, so it fails closed).
//!
//! As in sshd, option names are compared without regard to ASCII case, a flag with
//! a value or a value option without one is a syntax error, and a name sshd does not
//! know (`no-restrict`, say) makes the whole line malformed, as sshd refuses it too.

use std::fmt;

use crate::openssh::pattern::AddressPatterns;

use super::Expiry;

/// Why an options field cannot be trusted.
pub(super) enum OptionsError {
    /// Not valid option syntax, or an option sshd does not know either.
    Malformed(String),
    /// Options noise-echo will not honour, in the order written.
    Unsupported(Vec<UnsupportedOption>),
}

/// An option that makes a line untrusted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedOption {
    /// The option's name as written (its case kept), so the user finds it in the file.
    pub name: String,
    /// Whether it takes a value (`command="..."`): shown as `command=`.
    pub has_value: bool,
    /// What the option does that noise-echo cannot honour.
    pub why: &'static str,
}

impl fmt::Display for UnsupportedOption {
    /// `command=` or `cert-authority`: the option as the user would search for it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let equals = if self.has_value { "=" } else { "" };
        write!(f, "{}{equals}", self.name)
    }
}

/// The restrictions an options field puts on a trusted line.
#[derive(Debug, Default)]
pub(super) struct Restrictions {
    /// The `from=` list, if any.
    pub(super) from: Option<AddressPatterns>,
    /// The earliest `expiry-time=`, if any.
    pub(super) expiry: Option<Expiry>,
    /// The `principals=` names of a `cert-authority` line; `None` on a key line. The
    /// parser accepts `cert-authority` only with `principals=` and the reverse.
    pub(super) principals: Option<Vec<String>>,
}

/// What sshd does with an option name, and so what noise-echo does with it.
enum Kind {
    /// `from=`: honoured.
    From,
    /// `expiry-time=`: honoured.
    ExpiryTime,
    /// `cert-authority`: honoured with `principals=`.
    CertAuthority,
    /// `principals=`: honoured with `cert-authority`.
    Principals,
    /// A flag that only takes away what noise-echo does not offer: accepted.
    Harmless,
    /// A flag noise-echo will not honour.
    RefusedFlag(&'static str),
    /// A `name="value"` option noise-echo will not honour.
    RefusedValue(&'static str),
    /// Not an option sshd knows.
    Unknown,
}

/// Classifies an option name as sshd's `sshauthopt_parse` matches it: without
/// regard to ASCII case, with `no-` negating only the flags that allow it.
fn kind_of(name: &str) -> Kind {
    match name.to_ascii_lowercase().as_str() {
        "from" => Kind::From,
        "expiry-time" => Kind::ExpiryTime,
        "restrict"
        | "no-pty"
        | "no-port-forwarding"
        | "no-agent-forwarding"
        | "no-x11-forwarding"
        | "no-user-rc"
        | "no-touch-required"
        | "no-verify-required" => Kind::Harmless,
        "pty" => Kind::RefusedFlag("gives back the pty that restrict takes away"),
        "port-forwarding" => Kind::RefusedFlag("gives back port forwarding"),
        "agent-forwarding" => Kind::RefusedFlag("gives back agent forwarding"),
        "x11-forwarding" => Kind::RefusedFlag("gives back X11 forwarding"),
        "user-rc" => Kind::RefusedFlag("gives back ~/.ssh/rc"),
        "cert-authority" => Kind::CertAuthority,
        "touch-required" => Kind::RefusedFlag("requires a security-key touch"),
        "verify-required" => Kind::RefusedFlag("requires a security-key PIN"),
        "command" => Kind::RefusedValue("forces a command"),
        "environment" => Kind::RefusedValue("sets environment variables"),
        "permitopen" => Kind::RefusedValue("changes which ports may be forwarded"),
        "permitlisten" => Kind::RefusedValue("changes which ports may be listened on"),
        "tunnel" => Kind::RefusedValue("forces a tun device"),
        "principals" => Kind::Principals,
        _ => Kind::Unknown,
    }
}

/// One `name` or `name=value` option.
struct RawOption {
    /// The name as written, case kept for messages.
    name: String,
    /// The value, unquoted; `None` for a flag.
    value: Option<String>,
    /// Whether the value was in double quotes (sshd requires it for values).
    quoted: bool,
}

/// Splits an options field into options, as sshd's `sshauthopt_parse` walks it:
/// comma-separated `name` or `name="value"`, where the only escape in a value is `\"`.
fn split_options(text: &str) -> Result<Vec<RawOption>, String> {
    let mut options = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            if c == '"' {
                return Err(format!("unexpected quote in option name \"{name}\""));
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            return Err("empty option".to_owned());
        }
        let (mut value, mut quoted) = (None, false);
        if chars.next_if_eq(&'=').is_some() {
            let mut text = String::new();
            if chars.next_if_eq(&'"').is_some() {
                quoted = true;
                loop {
                    match chars.next() {
                        None => return Err(format!("missing end quote in option \"{name}\"")),
                        Some('"') => break,
                        Some('\\') if chars.peek() == Some(&'"') => {
                            chars.next();
                            text.push('"');
                        }
                        Some(c) => text.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|&c| c != ',') {
                    text.push(c);
                }
            }
            value = Some(text);
        }
        options.push(RawOption {
            name,
            value,
            quoted,
        });
        match chars.next() {
            None => return Ok(options),
            Some(',') if chars.peek().is_none() => {
                return Err("unexpected end of options after ','".to_owned());
            }
            Some(',') => {}
            Some(c) => return Err(format!("unexpected '{c}' after an option value")),
        }
    }
}

/// Interprets an options field: the `from=` list and the earliest `expiry-time=`.
/// Every option is checked, so that a refused option is reported with all the others
/// and a syntax error anywhere makes the line malformed, as in sshd.
pub(super) fn parse_options(text: &str) -> Result<Restrictions, OptionsError> {
    let mut restrictions = Restrictions::default();
    if text.is_empty() {
        return Ok(restrictions);
    }
    let options = split_options(text).map_err(OptionsError::Malformed)?;
    let mut unsupported = Vec::new();
    // The names as written, for the message when one comes without the other.
    let mut cert_authority: Option<String> = None;
    let mut principals: Option<(String, Vec<String>)> = None;
    for option in options {
        let kind = kind_of(&option.name);
        let takes_value = match kind {
            Kind::From | Kind::ExpiryTime | Kind::Principals | Kind::RefusedValue(_) => true,
            Kind::Harmless | Kind::CertAuthority | Kind::RefusedFlag(_) => false,
            Kind::Unknown => {
                return Err(OptionsError::Malformed(format!(
                    "unknown option \"{}\" (sshd refuses the line too)",
                    option.name
                )))
            }
        };
        let value = match (&option.value, takes_value) {
            (Some(_), false) => {
                return Err(OptionsError::Malformed(format!(
                    "option \"{}\" takes no value",
                    option.name
                )))
            }
            (None, true) => {
                return Err(OptionsError::Malformed(format!(
                    "option \"{}\" needs a value",
                    option.name
                )))
            }
            (Some(_), true) if !option.quoted => {
                return Err(OptionsError::Malformed(format!(
                    "the value of \"{}\" must be in double quotes",
                    option.name
                )))
            }
            (value, _) => value.as_deref().unwrap_or_default(),
        };
        match kind {
            Kind::From => {
                if restrictions.from.is_some() {
                    return Err(OptionsError::Malformed(
                        "more than one \"from\" option".to_owned(),
                    ));
                }
                let patterns = AddressPatterns::parse(value)
                    .map_err(|error| OptionsError::Malformed(format!("from: {error}")))?;
                restrictions.from = Some(patterns);
            }
            Kind::ExpiryTime => {
                let parsed = Expiry::parse(value).map_err(OptionsError::Malformed)?;
                // sshd keeps the earliest of several expiry-time options.
                restrictions.expiry = Some(
                    restrictions
                        .expiry
                        .map_or(parsed, |earlier| earlier.min(parsed)),
                );
            }
            Kind::CertAuthority => cert_authority = Some(option.name.clone()),
            Kind::Principals => {
                if principals.is_some() {
                    return Err(OptionsError::Malformed(
                        "more than one \"principals\" option".to_owned(),
                    ));
                }
                // sshd compares each certificate principal with each name exactly
                // (match_list): no patterns, and an empty name could never match.
                let names: Vec<String> = value.split(',').map(str::to_owned).collect();
                if names.iter().any(String::is_empty) {
                    return Err(OptionsError::Malformed(format!(
                        "principals: empty name in \"{value}\" (write principals=\"NAME,...\")"
                    )));
                }
                principals = Some((option.name.clone(), names));
            }
            Kind::Harmless => {}
            Kind::RefusedFlag(why) | Kind::RefusedValue(why) => {
                unsupported.push(UnsupportedOption {
                    name: option.name.clone(),
                    has_value: takes_value,
                    why,
                });
            }
            // Returned as malformed above.
            Kind::Unknown => {}
        }
    }
    match (cert_authority, principals) {
        (Some(_), Some((_, names))) => restrictions.principals = Some(names),
        (None, None) => {}
        (Some(name), None) => unsupported.push(UnsupportedOption {
            name,
            has_value: false,
            why: "without principals=\"NAME,...\" it would match certificates against the \
                  login user, which noise-echo does not have: add principals=",
        }),
        (None, Some((name, _))) => unsupported.push(UnsupportedOption {
            name,
            has_value: true,
            why: "names certificate principals, which only a cert-authority line uses",
        }),
    }
    if unsupported.is_empty() {
        Ok(restrictions)
    } else {
        Err(OptionsError::Unsupported(unsupported))
    }
}
