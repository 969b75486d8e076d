//! The options field of an authorized_keys line: splitting it into options as
//! sshd's `sshauthopt_parse` does, and deciding which noise-echo can honour
//! (`from=` and `expiry-time=`; anything else makes the line untrusted).

use crate::openssh::pattern::AddressPatterns;

use super::Expiry;

/// Why an options field cannot be trusted.
pub(super) enum OptionsError {
    /// Not valid option syntax.
    Malformed(String),
    /// Options noise-echo cannot honour, by name as written.
    Unsupported(Vec<String>),
}

/// One `name` or `name=value` option.
struct RawOption {
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
pub(super) fn parse_options(
    text: &str,
) -> Result<(Option<AddressPatterns>, Option<Expiry>), OptionsError> {
    if text.is_empty() {
        return Ok((None, None));
    }
    let options = split_options(text).map_err(OptionsError::Malformed)?;
    let unsupported: Vec<String> = options
        .iter()
        .filter(|option| {
            !option.name.eq_ignore_ascii_case("from")
                && !option.name.eq_ignore_ascii_case("expiry-time")
        })
        .map(|option| option.name.clone())
        .collect();
    if !unsupported.is_empty() {
        return Err(OptionsError::Unsupported(unsupported));
    }
    let (mut from, mut expiry) = (None, None::<Expiry>);
    for option in options {
        let value = match (&option.value, option.quoted) {
            (Some(value), true) => value,
            (Some(_), false) => {
                return Err(OptionsError::Malformed(format!(
                    "the value of \"{}\" must be in double quotes",
                    option.name
                )))
            }
            (None, _) => {
                return Err(OptionsError::Malformed(format!(
                    "option \"{}\" needs a value",
                    option.name
                )))
            }
        };
        if option.name.eq_ignore_ascii_case("from") {
            if from.is_some() {
                return Err(OptionsError::Malformed(
                    "more than one \"from\" option".to_owned(),
                ));
            }
            let patterns = AddressPatterns::parse(value)
                .map_err(|error| OptionsError::Malformed(format!("from: {error}")))?;
            from = Some(patterns);
        } else {
            let parsed = Expiry::parse(value).map_err(OptionsError::Malformed)?;
            // sshd keeps the earliest of several expiry-time options.
            expiry = Some(expiry.map_or(parsed, |earlier| earlier.min(parsed)));
        }
    }
    Ok((from, expiry))
}
