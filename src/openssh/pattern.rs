//! OpenSSH pattern lists, as sshd's `match.c` and `addrmatch.c` evaluate them.
//!
//! authorized_keys `from="..."` options and known_hosts host fields are written in
//! this syntax by people who also use OpenSSH, so a list must mean here exactly what
//! it means to sshd: `*` and `?` wildcards, comma-separated alternatives, and `!`
//! negation where one matching negated entry vetoes the whole list. Host names are
//! compared case-insensitively (ASCII only, as C's `tolower` in the "C" locale);
//! addresses are compared as text or, for `from=`, also as CIDR networks.
//!
//! Differences from OpenSSH, all in corner cases:
//! - Matching works on Unicode scalar values, not bytes, so `?` matches one
//!   non-ASCII character where sshd would need one `?` per UTF-8 byte.
//! - The matcher is iterative (linear memory, `O(text * pattern)` time) instead of
//!   sshd's recursive backtracking, and has no 1024-byte limit per entry; the set of
//!   accepted strings is the same.
//! - Addresses in CIDR entries must be written as `std::net` parses them (dotted
//!   quad for IPv4, no zone index for IPv6); sshd's `getaddrinfo` also takes shorthand
//!   such as `10.1`. Anything that does not parse falls back to a wildcard match, as
//!   in sshd.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The outcome of matching a text against a comma-separated pattern list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMatch {
    /// No entry matched.
    NoMatch,
    /// At least one positive entry matched and no negated entry did.
    Positive,
    /// A `!`-negated entry matched, which overrides every positive match.
    Negated,
}

impl ListMatch {
    /// Whether the list accepts the text.
    pub fn is_positive(self) -> bool {
        self == ListMatch::Positive
    }
}

/// Matches `text` against one wildcard pattern: `*` matches any run of characters
/// (including none), `?` exactly one, everything else itself. Case-sensitive.
pub fn match_pattern(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let (mut t, mut p) = (0, 0);
    // Where the last `*` was and how much text it currently swallows: on a mismatch
    // it swallows one more character. Only the last star needs remembering, which is
    // what keeps this linear in memory and free of exponential backtracking.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((after_star, swallowed_from)) => {
                    p = after_star;
                    t = swallowed_from + 1;
                    star = Some((after_star, t));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// The entries of a pattern list as sshd's `match_pattern_list` splits it: a single
/// trailing comma ends the list instead of adding an empty entry, and an empty list
/// has no entries.
fn list_entries(list: &str) -> impl Iterator<Item = &str> {
    let is_empty = list.is_empty();
    list.strip_suffix(',')
        .unwrap_or(list)
        .split(',')
        .filter(move |_| !is_empty)
}

/// Matches `text` against a comma-separated list of patterns, each optionally
/// prefixed by `!`, as sshd's `match_pattern_list`. With `lowercase`, the patterns
/// are lowercased first (the caller lowercases `text`, as sshd does).
pub fn match_pattern_list(text: &str, list: &str, lowercase: bool) -> ListMatch {
    let mut result = ListMatch::NoMatch;
    for entry in list_entries(list) {
        let (negated, pattern) = match entry.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        let matched = if lowercase {
            match_pattern(text, &pattern.to_ascii_lowercase())
        } else {
            match_pattern(text, pattern)
        };
        if matched {
            if negated {
                return ListMatch::Negated;
            }
            result = ListMatch::Positive;
        }
    }
    result
}

/// Matches a host name (or the text of an address) against a pattern list,
/// ignoring ASCII case on both sides, as sshd's `match_hostname`.
pub fn match_hostname(host: &str, list: &str) -> ListMatch {
    match_pattern_list(&host.to_ascii_lowercase(), list, true)
}

/// Why an address pattern list is unusable. sshd refuses the connection when a
/// `from=` list has one of these errors; noise-echo reports the line instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// An entry is empty: `a,,b`, a trailing comma, a lone `!`, or an empty list.
    #[error("empty entry in address pattern list \"{0}\"")]
    EmptyEntry(String),
    /// A CIDR mask longer than the address (`10.0.0.0/33`).
    #[error("\"{0}\": the mask is longer than the address")]
    MaskTooLong(String),
    /// A CIDR network with bits set after the mask (`10.1.2.3/8`): sshd calls this an
    /// inconsistent mask length, because the intent is ambiguous.
    #[error("\"{0}\": the address has bits set beyond the mask length")]
    HostBitsSet(String),
}

/// One entry of an address pattern list.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AddressEntry {
    negated: bool,
    /// The entry without `!`, lowercased: addresses are matched as host names too.
    pattern: String,
    /// The network when the entry is an address or `address/len`.
    network: Option<(IpAddr, u8)>,
}

/// A validated pattern list for matching a client address, as in authorized_keys
/// `from="..."`: wildcard entries match the address text, and entries that are an
/// address or a CIDR network (`10.0.0.0/8`, `2001:db8::/32`) match by prefix.
///
/// noise-echo does no reverse DNS, so this is sshd with `UseDNS no`: the address
/// text stands in for the host name and host-name patterns never match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPatterns {
    text: String,
    entries: Vec<AddressEntry>,
}

impl AddressPatterns {
    /// Parses and validates a pattern list.
    ///
    /// # Errors
    /// The [`PatternError`]s for which sshd's `addr_match_list` returns its error
    /// value: empty entries and inconsistent CIDR networks.
    pub fn parse(list: &str) -> Result<Self, PatternError> {
        let mut entries = Vec::new();
        // addr_match_list splits with strsep, which (unlike match_pattern_list) keeps
        // a trailing empty entry; both are errors there.
        for entry in list.split(',') {
            let (negated, pattern) = match entry.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, entry),
            };
            if pattern.is_empty() {
                return Err(PatternError::EmptyEntry(list.to_owned()));
            }
            entries.push(AddressEntry {
                negated,
                pattern: pattern.to_ascii_lowercase(),
                network: parse_cidr(pattern)?,
            });
        }
        Ok(Self {
            text: list.to_owned(),
            entries,
        })
    }

    /// The list as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the list admits `addr`: some entry matches it and no negated entry
    /// does. IPv4-mapped IPv6 addresses are treated as the IPv4 address, as sshd does.
    pub fn matches(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        let text = addr.to_string();
        // sshd's match_host_and_ip runs the list twice, once as addresses (CIDR or
        // wildcard) and once as host names against the same address text; with both
        // texts lowercase, an entry matching either way is the same as this.
        let mut positive = false;
        for entry in &self.entries {
            let in_network = entry
                .network
                .is_some_and(|(network, len)| in_network(addr, network, len));
            if in_network || match_pattern(&text, &entry.pattern) {
                if entry.negated {
                    return false;
                }
                positive = true;
            }
        }
        positive
    }
}

impl FromStr for AddressPatterns {
    type Err = PatternError;

    fn from_str(list: &str) -> Result<Self, Self::Err> {
        Self::parse(list)
    }
}

impl fmt::Display for AddressPatterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Reads an entry as `address[/len]`, like sshd's `addr_pton_cidr`: `Ok(None)` when
/// it is not an address (then it is only a wildcard pattern).
fn parse_cidr(entry: &str) -> Result<Option<(IpAddr, u8)>, PatternError> {
    let (address, mask) = match entry.split_once('/') {
        Some((address, mask)) => {
            if mask.is_empty() || !mask.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(None);
            }
            match mask.parse::<u8>() {
                Ok(len) if len <= 128 => (address, Some(len)),
                _ => return Ok(None),
            }
        }
        None => (entry, None),
    };
    let Ok(address) = address.parse::<IpAddr>() else {
        return Ok(None);
    };
    let max = if address.is_ipv4() { 32 } else { 128 };
    let len = mask.unwrap_or(max);
    if len > max {
        return Err(PatternError::MaskTooLong(entry.to_owned()));
    }
    if masked(address, len) != bits(address) {
        return Err(PatternError::HostBitsSet(entry.to_owned()));
    }
    Ok(Some((address, len)))
}

/// The address as a 128-bit number (IPv4 in the low 32 bits).
fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address with every bit after the first `len` cleared.
fn masked(addr: IpAddr, len: u8) -> u128 {
    let width: u32 = if addr.is_ipv4() { 32 } else { 128 };
    let host_bits = width.saturating_sub(u32::from(len));
    let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
    bits(addr) & mask
}

/// Whether `addr` lies in `network/len`; addresses of different families never match.
fn in_network(addr: IpAddr, network: IpAddr, len: u8) -> bool {
    addr.is_ipv4() == network.is_ipv4() && masked(addr, len) == masked(network, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// sshd's recursive match_pattern, transcribed, as the reference for the
    /// iterative matcher.
    fn reference(text: &[char], pattern: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|skip| reference(&text[skip..], rest)),
            Some((&c, rest)) => match text.split_first() {
                Some((&t, text_rest)) => (c == '?' || c == t) && reference(text_rest, rest),
                None => false,
            },
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn wildcards_match_as_in_sshd() {
        assert!(match_pattern("host.example.com", "*.example.com"));
        assert!(match_pattern("a", "?"));
        assert!(!match_pattern("", "?"));
        assert!(match_pattern("", "*"));
        assert!(match_pattern("abc", "a*c"));
        assert!(match_pattern("ac", "a*c"));
        assert!(!match_pattern("ab", "a*c"));
        assert!(match_pattern("10.1.2.3", "10.1.?.*"));
        assert!(!match_pattern("10.1.22.3", "10.1.?.3"));
        assert!(
            !match_pattern("Host", "host"),
            "match_pattern is case-sensitive"
        );
        // Pathological for naive backtracking; must finish at once.
        let text = "a".repeat(200);
        assert!(!match_pattern(&text, &format!("{}b", "*a".repeat(50))));
    }

    #[test]
    fn lists_take_any_positive_unless_a_negation_matches() {
        use ListMatch::*;
        assert_eq!(match_pattern_list("b", "a,b,c", false), Positive);
        assert_eq!(match_pattern_list("d", "a,b,c", false), NoMatch);
        assert_eq!(
            match_pattern_list("bad.example.com", "*.example.com,!bad.*", false),
            Negated
        );
        // The order of the negation does not matter.
        assert_eq!(
            match_pattern_list("bad.example.com", "!bad.*,*.example.com", false),
            Negated
        );
        assert_eq!(
            match_pattern_list("ok.example.com", "!bad.*,*.example.com", false),
            Positive
        );
        // A negation alone never admits anything.
        assert_eq!(match_pattern_list("x", "!y", false), NoMatch);
        assert_eq!(match_pattern_list("x", "", false), NoMatch);
        assert_eq!(match_pattern_list("x", "x,", false), Positive);
    }

    #[test]
    fn host_names_ignore_case() {
        assert!(match_hostname("Server.Example.COM", "*.example.com").is_positive());
        assert!(match_hostname("server.example.com", "SERVER.*").is_positive());
        assert_eq!(
            match_hostname("BAD.example.com", "*,!bad.*"),
            ListMatch::Negated
        );
    }

    #[test]
    fn address_lists_use_cidr_and_wildcards() {
        let list = AddressPatterns::parse("10.0.0.0/8,192.168.1.?,2001:db8::/32").unwrap();
        assert!(list.matches(ip("10.200.3.4")));
        assert!(list.matches(ip("192.168.1.7")));
        assert!(!list.matches(ip("192.168.1.17")));
        assert!(list.matches(ip("2001:db8::1")));
        assert!(list.matches(ip("2001:DB8:ffff::1")));
        assert!(!list.matches(ip("2001:db9::1")));
        assert!(!list.matches(ip("11.0.0.1")));
        // IPv4-mapped IPv6 is the IPv4 client.
        assert!(list.matches(ip("::ffff:10.1.1.1")));
        // Families never cross.
        let v6_all = AddressPatterns::parse("::/0").unwrap();
        assert!(v6_all.matches(ip("::1")));
        assert!(!v6_all.matches(ip("127.0.0.1")));
        let v4_all = AddressPatterns::parse("0.0.0.0/0").unwrap();
        assert!(v4_all.matches(ip("8.8.8.8")));
        assert!(!v4_all.matches(ip("::1")));
    }

    #[test]
    fn address_negation_vetoes() {
        let list = AddressPatterns::parse("10.0.0.0/8,!10.9.0.0/16").unwrap();
        assert!(list.matches(ip("10.1.0.1")));
        assert!(!list.matches(ip("10.9.0.1")));
        let list = AddressPatterns::parse("!10.9.*,*").unwrap();
        assert!(!list.matches(ip("10.9.1.1")));
        assert!(list.matches(ip("10.8.1.1")));
        assert!(!AddressPatterns::parse("!10.0.0.1")
            .unwrap()
            .matches(ip("10.0.0.2")));
        // Exact addresses, with and without a full-length mask; IPv6 wildcards ignore case.
        assert!(AddressPatterns::parse("10.0.0.1")
            .unwrap()
            .matches(ip("10.0.0.1")));
        assert!(AddressPatterns::parse("10.0.0.1/32")
            .unwrap()
            .matches(ip("10.0.0.1")));
        assert!(AddressPatterns::parse("2001:DB8::*")
            .unwrap()
            .matches(ip("2001:db8::5")));
        // Host-name patterns never match: there is no reverse DNS.
        assert!(!AddressPatterns::parse("*.example.com")
            .unwrap()
            .matches(ip("10.0.0.1")));
    }

    #[test]
    fn inconsistent_address_lists_are_errors() {
        for bad in ["", "10.0.0.1,", ",10.0.0.1", "a,,b", "!", "10.0.0.0/8,!"] {
            assert!(
                matches!(
                    AddressPatterns::parse(bad),
                    Err(PatternError::EmptyEntry(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            AddressPatterns::parse("10.0.0.0/33"),
            Err(PatternError::MaskTooLong(_))
        ));
        assert!(matches!(
            AddressPatterns::parse("10.1.2.3/8"),
            Err(PatternError::HostBitsSet(_))
        ));
        assert!(matches!(
            AddressPatterns::parse("2001:db8::1/32"),
            Err(PatternError::HostBitsSet(_))
        ));
        // Not an address/len at all: a wildcard that matches nothing, as in sshd.
        assert!(!AddressPatterns::parse("10.0.0.0/x")
            .unwrap()
            .matches(ip("10.0.0.0")));
        assert!(!AddressPatterns::parse("10.0.0.0/999")
            .unwrap()
            .matches(ip("10.0.0.0")));
    }

    proptest! {
        #[test]
        fn iterative_matcher_agrees_with_sshd_recursion(
            text in "[ab.]{0,8}",
            pattern in "[ab.*?]{0,8}",
        ) {
            let t: Vec<char> = text.chars().collect();
            let p: Vec<char> = pattern.chars().collect();
            prop_assert_eq!(match_pattern(&text, &pattern), reference(&t, &p));
        }

        #[test]
        fn address_lists_never_panic(list in "\\PC{0,40}", octets in any::<[u8; 4]>(), v6 in any::<u128>()) {
            if let Ok(parsed) = AddressPatterns::parse(&list) {
                let _ = parsed.matches(IpAddr::from(octets));
                let _ = parsed.matches(IpAddr::from(v6.to_be_bytes()));
            }
        }

        #[test]
        fn cidr_membership_is_prefix_equality(addr in any::<u32>(), net in any::<u32>(), len in 0u8..=32) {
            let network = if len == 0 { 0 } else { net & (u32::MAX << (32 - u32::from(len))) };
            let text = format!("{}/{len}", std::net::Ipv4Addr::from(network));
            let list = AddressPatterns::parse(&text).unwrap();
            let expected = len == 0 || (addr ^ network) >> (32 - u32::from(len)) == 0;
            prop_assert_eq!(list.matches(IpAddr::from(addr.to_be_bytes())), expected);
        }
    }
}
