//! The client's configuration file (`config` in the noise-echo config directory, or
//! `connect -F FILE`), in a subset of OpenSSH's `ssh_config` syntax, so that
//! `noise-echo connect prod hello` works as `ssh prod` does.
//!
//! The rules are ssh's: `Host` blocks whose patterns (`*`, `?`, `!`) match the name
//! typed on the command line apply, lines before the first `Host` apply to every
//! host, and for each keyword the first value found wins (so specific blocks go
//! first and `Host *` last). Keywords are case-insensitive, and `Keyword value` and
//! `Keyword=value` are both accepted. An unknown keyword is an error naming the
//! file and line, unless an earlier `IgnoreUnknown` pattern list names it.
//!
//! This lives in the binary, not the library: the file, `~` and the precedence of
//! flags over it are the command line's business; an embedder builds a
//! `ClientConfig` directly.

use std::fmt;
use std::path::{Path, PathBuf};

use noise_echo::client::Protocol;
use noise_echo::identity::Fingerprint;
use noise_echo::openssh::pattern::{match_hostname, match_pattern_list, ListMatch};
use noise_echo::wire::Suite;

/// The file's name in the noise-echo config directory (as `~/.ssh/config`).
pub(crate) const FILE_NAME: &str = "config";

/// The keywords this parser understands, for the error about an unknown one.
const KEYWORDS: &str = "Host, HostName, Port, IdentityFile, UserKnownHostsFile, \
                        StrictHostKeyChecking, ConnectTimeout, FingerprintPin, Ciphers, Protocol, \
                        CertificateFile, RevokedHostKeys, IgnoreUnknown";

/// ssh's `StrictHostKeyChecking`: what to do with a server key known_hosts lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrictHostKeyChecking {
    /// `yes`: never add a key; an unknown host is refused without a prompt.
    Yes,
    /// `ask` (ssh's default): ask on the terminal, refuse without one.
    Ask,
    /// `accept-new`: add unknown keys without asking. A changed key is still refused.
    AcceptNew,
    /// `no` or `off`: for ssh, also connect to a changed key; noise-echo never does,
    /// so it means `accept-new`.
    No,
}

impl StrictHostKeyChecking {
    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "yes" => Some(Self::Yes),
            "ask" => Some(Self::Ask),
            "accept-new" => Some(Self::AcceptNew),
            "no" | "off" => Some(Self::No),
            _ => None,
        }
    }
}

/// What the file says about one host: every field is `None` when no matching line
/// sets it, so the command line's own defaults apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostConfig {
    /// `HostName`: the real address to connect to (`%h` is the name typed).
    pub host_name: Option<String>,
    /// `Port`.
    pub port: Option<u16>,
    /// `IdentityFile`, with `~` expanded.
    pub identity_file: Option<PathBuf>,
    /// `UserKnownHostsFile` (the first file of the list), with `~` expanded.
    pub known_hosts_file: Option<PathBuf>,
    /// `StrictHostKeyChecking`.
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
    /// `ConnectTimeout`, in seconds; 0 waits as long as the system does, as in ssh.
    pub connect_timeout: Option<u64>,
    /// `FingerprintPin SHA256:...`: the only server key accepted for this host.
    pub fingerprint_pin: Option<Fingerprint>,
    /// `Ciphers LIST` (`aesgcm`, `chachapoly`, or both, comma-separated): the v2
    /// suites allowed. One forces it (as `--cipher`); `Some(None)` is both, the
    /// automatic choice.
    pub ciphers: Option<Option<Suite>>,
    /// `Protocol 1|2`: the protocol version (as `--protocol`).
    pub protocol: Option<Protocol>,
    /// `CertificateFile`, with `~` expanded: the user certificate to present
    /// instead of the one beside the identity file.
    pub certificate_file: Option<PathBuf>,
    /// `RevokedHostKeys`, with `~` expanded: a revoked-keys file (text list or
    /// KRL) of host keys and certificates to refuse.
    pub revoked_host_keys: Option<PathBuf>,
}

/// A problem in the file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line.
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// One setting line, checked, kept in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Setting {
    HostName(String),
    Port(u16),
    IdentityFile(PathBuf),
    KnownHostsFile(PathBuf),
    StrictHostKeyChecking(StrictHostKeyChecking),
    ConnectTimeout(u64),
    FingerprintPin(Fingerprint),
    Ciphers(Option<Suite>),
    Protocol(Protocol),
    CertificateFile(PathBuf),
    RevokedHostKeys(PathBuf),
}

/// A block of settings and the `Host` patterns it applies to (`None`: the lines
/// before the first `Host`, which apply to every host).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    patterns: Option<Vec<String>>,
    settings: Vec<Setting>,
}

impl Block {
    /// ssh's rule: a name matches a `Host` line if one of its patterns matches and
    /// none of its negated ones does.
    fn applies_to(&self, host: &str) -> bool {
        let Some(patterns) = &self.patterns else {
            return true;
        };
        let mut positive = false;
        for pattern in patterns {
            match match_hostname(host, pattern) {
                ListMatch::Negated => return false,
                ListMatch::Positive => positive = true,
                ListMatch::NoMatch => {}
            }
        }
        positive
    }
}

/// A parsed configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClientConfigFile {
    blocks: Vec<Block>,
}

impl ClientConfigFile {
    /// Reads and parses `path`. `home` expands `~` in file names. With
    /// `check_owner`, as ssh does for `~/.ssh/config` (not for `-F FILE`), a file
    /// that others can write or that another user owns is refused: whoever can change
    /// it chooses the server, the key and the pin.
    ///
    /// # Errors
    /// The file cannot be read, it fails the owner check, or a line is wrong (the
    /// first such line, with its number).
    pub(crate) fn load(
        path: &Path,
        home: Option<&Path>,
        check_owner: bool,
    ) -> anyhow::Result<Self> {
        use std::io::Read as _;
        let cannot_read =
            |error: std::io::Error| anyhow::anyhow!("cannot read {}: {error}", path.display());
        let mut file = std::fs::File::open(path).map_err(cannot_read)?;
        if check_owner {
            let metadata = file.metadata().map_err(cannot_read)?;
            check_owner_and_mode(path, &metadata, rustix::process::geteuid().as_raw())?;
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(cannot_read)?;
        // The file's own text is quoted in errors: escaped, so it cannot drive the terminal.
        Self::parse(&text, path, home)
            .map_err(|error| anyhow::anyhow!("{}", crate::printable(&error.to_string())))
    }

    /// Parses the text of a configuration file; `path` names it in errors.
    ///
    /// # Errors
    /// The first wrong line: an unknown keyword (not in an `IgnoreUnknown` list), a
    /// missing or bad value, an unsupported `Match` block.
    pub(crate) fn parse(text: &str, path: &Path, home: Option<&Path>) -> Result<Self, ConfigError> {
        let mut blocks = vec![Block {
            patterns: None,
            settings: Vec::new(),
        }];
        let mut ignore_unknown: Option<String> = None;
        for (index, raw_line) in text.lines().enumerate() {
            let line = index + 1;
            let error = |message: String| ConfigError {
                path: path.to_path_buf(),
                line,
                message,
            };
            let words = split_line(raw_line).map_err(error)?;
            let Some((keyword, values)) = words.split_first() else {
                continue;
            };
            let value = || -> Result<&str, ConfigError> {
                match values {
                    [] => Err(error(format!("{keyword} needs a value"))),
                    [first, ..] => Ok(first.as_str()),
                }
            };
            let setting = match keyword.to_ascii_lowercase().as_str() {
                "host" => {
                    if values.is_empty() {
                        return Err(error("Host needs at least one pattern".to_owned()));
                    }
                    blocks.push(Block {
                        patterns: Some(values.to_vec()),
                        settings: Vec::new(),
                    });
                    continue;
                }
                "match" => {
                    return Err(error(
                        "Match blocks are not supported; use Host patterns".to_owned(),
                    ))
                }
                "ignoreunknown" => {
                    ignore_unknown.get_or_insert_with(|| values.join(","));
                    continue;
                }
                "hostname" => Setting::HostName(value()?.to_owned()),
                "port" => {
                    let text = value()?;
                    let port = text.parse::<u16>().ok().filter(|&port| port != 0);
                    Setting::Port(port.ok_or_else(|| {
                        error(format!("Port '{text}' is not a port number (1 to 65535)"))
                    })?)
                }
                "identityfile" => Setting::IdentityFile(expand_tilde(value()?, home)),
                "userknownhostsfile" => Setting::KnownHostsFile(expand_tilde(value()?, home)),
                "certificatefile" => Setting::CertificateFile(expand_tilde(value()?, home)),
                "revokedhostkeys" => Setting::RevokedHostKeys(expand_tilde(value()?, home)),
                "stricthostkeychecking" => {
                    let text = value()?;
                    Setting::StrictHostKeyChecking(StrictHostKeyChecking::parse(text).ok_or_else(
                        || {
                            error(format!(
                                "StrictHostKeyChecking '{text}' is not one of yes, ask, accept-new, no"
                            ))
                        },
                    )?)
                }
                "connecttimeout" => {
                    let text = value()?;
                    Setting::ConnectTimeout(text.parse::<u64>().map_err(|_| {
                        error(format!(
                            "ConnectTimeout '{text}' is not a whole number of seconds (0: no limit)"
                        ))
                    })?)
                }
                "fingerprintpin" => {
                    let text = value()?;
                    Setting::FingerprintPin(text.parse().map_err(|_| {
                        error(format!(
                            "FingerprintPin '{text}' is not a SHA256:... fingerprint \
                             (noise-echo fingerprint FILE prints it)"
                        ))
                    })?)
                }
                "ciphers" => Setting::Ciphers(parse_ciphers(value()?).map_err(error)?),
                "protocol" => {
                    let text = value()?;
                    Setting::Protocol(match text {
                        "1" => Protocol::V1,
                        "2" => Protocol::V2,
                        _ => {
                            return Err(error(format!(
                                "Protocol '{text}' is not 1 or 2 (noise-echo speaks one version per connection)"
                            )))
                        }
                    })
                }
                _ => {
                    let ignored = ignore_unknown.as_deref().is_some_and(|list| {
                        match_pattern_list(&keyword.to_ascii_lowercase(), list, true)
                            == ListMatch::Positive
                    });
                    if ignored {
                        continue;
                    }
                    return Err(error(format!(
                        "unknown keyword '{keyword}' (noise-echo reads {KEYWORDS}; \
                         to share this file with ssh, put 'IgnoreUnknown {keyword}' above it)"
                    )));
                }
            };
            if values.len() > 1 && !matches!(setting, Setting::KnownHostsFile(_)) {
                return Err(error(format!(
                    "{keyword} takes one value, not {}",
                    values.len()
                )));
            }
            blocks
                .last_mut()
                .expect("the first block is always there")
                .settings
                .push(setting);
        }
        Ok(Self { blocks })
    }

    /// The settings for `host`, the name typed on the command line: for each
    /// keyword, the first value in a block that applies to it.
    pub(crate) fn for_host(&self, host: &str) -> HostConfig {
        let mut config = HostConfig::default();
        for block in self.blocks.iter().filter(|block| block.applies_to(host)) {
            for setting in &block.settings {
                match setting {
                    Setting::HostName(name) => {
                        config
                            .host_name
                            .get_or_insert_with(|| substitute_host(name, host));
                    }
                    Setting::Port(port) => {
                        config.port.get_or_insert(*port);
                    }
                    Setting::IdentityFile(file) => {
                        config.identity_file.get_or_insert_with(|| file.clone());
                    }
                    Setting::KnownHostsFile(file) => {
                        config.known_hosts_file.get_or_insert_with(|| file.clone());
                    }
                    Setting::StrictHostKeyChecking(mode) => {
                        config.strict_host_key_checking.get_or_insert(*mode);
                    }
                    Setting::ConnectTimeout(timeout) => {
                        config.connect_timeout.get_or_insert(*timeout);
                    }
                    Setting::FingerprintPin(pin) => {
                        config.fingerprint_pin.get_or_insert(*pin);
                    }
                    Setting::Ciphers(suite) => {
                        config.ciphers.get_or_insert(*suite);
                    }
                    Setting::Protocol(protocol) => {
                        config.protocol.get_or_insert(*protocol);
                    }
                    Setting::CertificateFile(file) => {
                        config.certificate_file.get_or_insert_with(|| file.clone());
                    }
                    Setting::RevokedHostKeys(file) => {
                        config.revoked_host_keys.get_or_insert_with(|| file.clone());
                    }
                }
            }
        }
        config
    }
}

/// `Ciphers`' value: a comma-separated list of `aesgcm` and `chachapoly`. One
/// suite forces it; both leave the choice automatic (`None`).
fn parse_ciphers(text: &str) -> Result<Option<Suite>, String> {
    let mut listed = Vec::new();
    for name in text.split(',') {
        let suite = name.parse::<Suite>().map_err(|_| {
            format!(
                "Ciphers '{text}': '{name}' is not a cipher noise-echo runs (aesgcm, chachapoly)"
            )
        })?;
        if !listed.contains(&suite) {
            listed.push(suite);
        }
    }
    Ok(match listed.as_slice() {
        [one] => Some(*one),
        _ => None,
    })
}

/// ssh's rule for its user configuration file: owned by the user or root, and
/// writable by nobody else.
fn check_owner_and_mode(
    path: &Path,
    metadata: &std::fs::Metadata,
    user: u32,
) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let mode = metadata.mode() & 0o7777;
    if mode & 0o022 != 0 {
        anyhow::bail!(
            "{}: bad permissions {mode:04o}: others can change which server and key connect uses              (fix: chmod go-w {})",
            path.display(),
            path.display()
        );
    }
    let owner = metadata.uid();
    if owner != 0 && owner != user {
        anyhow::bail!(
            "{}: bad owner: it belongs to uid {owner}, not to you (uid {user}) or root              (fix: chown {user} {})",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// Splits a line into words as ssh does: `#` starts a comment at the start of a
/// word, words are separated by whitespace, the keyword may end with `=`, and
/// double quotes group a value with spaces.
fn split_line(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut rest = line.trim_start();
    // `Keyword=value` and `Keyword = value`.
    if let Some(end) = rest.find(|c: char| c.is_whitespace() || c == '=') {
        let (keyword, after) = rest.split_at(end);
        if !keyword.starts_with('#') {
            words.push(keyword.to_owned());
            let after = after.trim_start();
            rest = after.strip_prefix('=').unwrap_or(after);
        }
    }
    loop {
        rest = rest.trim_start();
        if rest.is_empty() || rest.starts_with('#') {
            break;
        }
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| "unterminated quote: add the closing '\"'".to_owned())?;
            words.push(quoted[..end].to_owned());
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            words.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    Ok(words)
}

/// `~` and `~/...` are the user's home directory, as in ssh_config.
fn expand_tilde(value: &str, home: Option<&Path>) -> PathBuf {
    match (value.strip_prefix('~'), home) {
        (Some(""), Some(home)) => home.to_path_buf(),
        (Some(rest), Some(home)) if rest.starts_with('/') => home.join(&rest[1..]),
        _ => PathBuf::from(value),
    }
}

/// `HostName`'s tokens: `%h` is the name typed, `%%` a percent sign.
fn substitute_host(value: &str, host: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(host),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINGERPRINT: &str = "SHA256:2JJSAdPqPcBQ6q0i9q0t3lQ8n1Ngp1nV8S3Q0JmKq5c";

    fn parse(text: &str) -> Result<ClientConfigFile, ConfigError> {
        ClientConfigFile::parse(text, Path::new("cfg"), Some(Path::new("/home/ann")))
    }

    #[test]
    fn host_blocks_apply_by_pattern_and_the_first_value_wins() {
        let file = parse(
            "# comment\n\
             ConnectTimeout 7\n\
             Host prod prod.*\n\
             \x20   HostName 10.0.0.5\n\
             \x20   Port 4000\n\
             \x20   IdentityFile ~/keys/robot\n\
             Host *.internal !secret.internal\n\
             \x20   HostName %h.example.org\n\
             \x20   StrictHostKeyChecking accept-new\n\
             Host *\n\
             \x20   Port=1999\n\
             \x20   ConnectTimeout = 30\n\
             \x20   UserKnownHostsFile \"~/my hosts\" ~/other\n",
        )
        .unwrap();
        let prod = file.for_host("prod");
        assert_eq!(prod.host_name.as_deref(), Some("10.0.0.5"));
        assert_eq!(prod.port, Some(4000));
        assert_eq!(
            prod.identity_file.as_deref(),
            Some(Path::new("/home/ann/keys/robot"))
        );
        // The line before any Host comes first, so it wins over Host *'s.
        assert_eq!(prod.connect_timeout, Some(7));
        assert_eq!(
            prod.known_hosts_file.as_deref(),
            Some(Path::new("/home/ann/my hosts"))
        );
        assert_eq!(
            file.for_host("PROD.eu").port,
            Some(4000),
            "case-insensitive"
        );

        let db = file.for_host("db.internal");
        assert_eq!(db.host_name.as_deref(), Some("db.internal.example.org"));
        assert_eq!(db.port, Some(1999));
        assert_eq!(
            db.strict_host_key_checking,
            Some(StrictHostKeyChecking::AcceptNew)
        );
        let secret = file.for_host("secret.internal");
        assert_eq!(
            secret.host_name, None,
            "a negated pattern excludes the host"
        );
        assert_eq!(secret.port, Some(1999));
        let other = file.for_host("elsewhere");
        assert_eq!(other.host_name, None);
        assert_eq!(other.identity_file, None);
    }

    #[test]
    fn a_block_of_only_negated_patterns_applies_to_nothing() {
        let file = parse("Host !prod\nPort 5\n").unwrap();
        assert_eq!(file.for_host("other").port, None);
        assert_eq!(file.for_host("prod").port, None);
    }

    #[test]
    fn the_pin_and_every_strict_mode_parse() {
        let file = parse(&format!("Host a\nFingerprintPin {FINGERPRINT}\n")).unwrap();
        assert_eq!(
            file.for_host("a").fingerprint_pin,
            Some(FINGERPRINT.parse().unwrap())
        );
        for (text, mode) in [
            ("yes", StrictHostKeyChecking::Yes),
            ("ask", StrictHostKeyChecking::Ask),
            ("Accept-New", StrictHostKeyChecking::AcceptNew),
            ("no", StrictHostKeyChecking::No),
            ("off", StrictHostKeyChecking::No),
        ] {
            let file = parse(&format!("StrictHostKeyChecking {text}")).unwrap();
            assert_eq!(file.for_host("x").strict_host_key_checking, Some(mode));
        }
    }

    #[test]
    fn unknown_keywords_name_the_line_unless_ignored() {
        let error = parse("Host a\n  Port 1\n  User ann\n").unwrap_err();
        assert_eq!(error.line, 3);
        let text = error.to_string();
        assert!(text.starts_with("cfg:3: unknown keyword 'User'"), "{text}");
        assert!(text.contains("IgnoreUnknown User"), "{text}");
        // IgnoreUnknown takes patterns and only covers the lines after it, as ssh.
        let file =
            parse("IgnoreUnknown User,Forward*\nUser ann\nForwardAgent yes\nPort 9\n").unwrap();
        assert_eq!(file.for_host("x").port, Some(9));
        assert_eq!(parse("User ann\nIgnoreUnknown User\n").unwrap_err().line, 1);
    }

    #[test]
    fn bad_values_are_refused_with_the_line_and_the_fix() {
        for (text, line, expected) in [
            ("Port 0", 1, "Port '0' is not a port number"),
            ("\nPort http", 2, "Port 'http' is not a port number"),
            ("Port", 1, "Port needs a value"),
            ("Port 1 2", 1, "Port takes one value, not 2"),
            (
                "ConnectTimeout -1",
                1,
                "ConnectTimeout '-1' is not a whole number",
            ),
            ("ConnectTimeout 1.5", 1, "ConnectTimeout '1.5'"),
            (
                "StrictHostKeyChecking maybe",
                1,
                "not one of yes, ask, accept-new, no",
            ),
            (
                "FingerprintPin MD5:aa",
                1,
                "FingerprintPin 'MD5:aa' is not a SHA256",
            ),
            ("Host", 1, "Host needs at least one pattern"),
            ("Match host x", 1, "Match blocks are not supported"),
            ("HostName \"x", 1, "unterminated quote"),
        ] {
            let error = parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text}");
            assert!(error.message.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn blank_lines_comments_and_tokens() {
        let file =
            parse("\n   \n# Port 1\nHost x # trailing comment\nHostName %h-%%.lan\n").unwrap();
        assert_eq!(file.for_host("x").host_name.as_deref(), Some("x-%.lan"));
        assert_eq!(file.for_host("x").port, None);
        assert_eq!(expand_tilde("~", Some(Path::new("/h"))), Path::new("/h"));
        assert_eq!(
            expand_tilde("~ann/x", Some(Path::new("/h"))),
            Path::new("~ann/x")
        );
        assert_eq!(expand_tilde("~/x", None), Path::new("~/x"));
    }

    #[test]
    fn ciphers_and_protocol_map_to_cipher_and_protocol() {
        let file = parse(
            "Host one\n Ciphers chachapoly\n Protocol 1\n\
             Host both\n Ciphers aesgcm,chachapoly\n\
             Host *\n Ciphers AESGCM\n Protocol 2\n",
        )
        .unwrap();
        let one = file.for_host("one");
        assert_eq!(one.ciphers, Some(Some(Suite::ChaChaPolyBlake2s)));
        assert_eq!(one.protocol, Some(Protocol::V1));
        let both = file.for_host("both");
        assert_eq!(
            both.ciphers,
            Some(None),
            "both listed: the automatic choice"
        );
        assert_eq!(both.protocol, Some(Protocol::V2));
        assert_eq!(
            file.for_host("other").ciphers,
            Some(Some(Suite::AesGcmSha256))
        );
        let bad = parse("Ciphers aes128-ctr\n").unwrap_err();
        assert!(bad.message.contains("aesgcm, chachapoly"), "{bad}");
        let bad = parse("Protocol 2,1\n").unwrap_err();
        assert!(bad.message.contains("not 1 or 2"), "{bad}");
    }

    #[test]
    fn certificate_file_and_revoked_host_keys_expand_tilde_and_the_first_wins() {
        let home = Path::new("/home/ann");
        let file = ClientConfigFile::parse(
            "Host prod\n CertificateFile ~/.ssh/prod-cert.pub\n RevokedHostKeys=~/revoked.krl\n\
             Host *\n CertificateFile /etc/other-cert.pub\n",
            Path::new("cfg"),
            Some(home),
        )
        .unwrap();
        let prod = file.for_host("prod");
        assert_eq!(
            prod.certificate_file.as_deref(),
            Some(Path::new("/home/ann/.ssh/prod-cert.pub"))
        );
        assert_eq!(
            prod.revoked_host_keys.as_deref(),
            Some(Path::new("/home/ann/revoked.krl"))
        );
        let other = file.for_host("other");
        assert_eq!(
            other.certificate_file.as_deref(),
            Some(Path::new("/etc/other-cert.pub"))
        );
        assert_eq!(other.revoked_host_keys, None);
        let bad = parse("CertificateFile\n").unwrap_err();
        assert_eq!(bad.message, "CertificateFile needs a value");
        let bad = parse("RevokedHostKeys a b\n").unwrap_err();
        assert_eq!(bad.line, 1);
        assert!(bad.message.contains("takes one value"), "{bad}");
    }
}
