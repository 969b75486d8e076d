//! The PROXY protocol header a load balancer (HAProxy, a cloud TCP balancer) puts
//! in front of a relayed connection, so the server learns the real client address:
//! version 1 (one line of text) and version 2 (binary), as HAProxy's specification
//! (`doc/proxy-protocol.txt`) defines them.
//!
//! Sans-I/O: [`parse`] looks at the first bytes of a connection and says whether
//! they are a whole header (and how long it is), the start of one, or not one. A
//! caller reading a socket takes exactly the header's bytes off it and leaves what
//! follows (the Noise handshake) for the handshake: while [`parse`] answers
//! [`Parsed::Incomplete`], every byte seen so far belongs to the header, so the
//! caller may consume them all and read on. The header is bounded
//! ([`MAX_HEADER_LEN`]), and anything that does not match the specification
//! exactly is an error, as the specification requires of a receiver.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 line, CRLF included (the specification's worst case,
/// `PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const V1_MAX_LEN: usize = 107;
/// The fixed part of a version 2 header: signature, version and command, family
/// and protocol, length of what follows.
pub const V2_FIXED_LEN: usize = 16;
/// The most address and TLV bytes accepted after a version 2 header's fixed part.
/// The format allows 65,535; the addresses take at most 216 (two Unix paths), and
/// HAProxy's TLVs (ALPN, authority, unique id, TLS details, CRC) fit in the rest:
/// a peer cannot make the server buffer more than this.
pub const MAX_V2_PAYLOAD: usize = 1024;
/// The longest header accepted, of either version.
pub const MAX_HEADER_LEN: usize = V2_FIXED_LEN + MAX_V2_PAYLOAD;

/// The 12 bytes that open a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// What opens a version 1 header.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The version 2 TLV type of a CRC-32C of the whole header.
const PP2_TYPE_CRC32C: u8 = 0x03;

/// Which version of the protocol a header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text line, `PROXY TCP4 ...\r\n`.
    V1,
    /// The binary header.
    V2,
}

/// What the proxy says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxied {
    /// The proxy's own connection, not relayed for a client: version 2's LOCAL
    /// command (what HAProxy sends in health checks), or version 1's `UNKNOWN`.
    Local,
    /// A TCP connection relayed for a client.
    Tcp {
        /// The client's address and port, as the proxy saw them.
        source: SocketAddr,
        /// The address and port the client connected to, on the proxy.
        destination: SocketAddr,
    },
    /// A relayed connection whose client has no TCP/IP address: version 2 with the
    /// PROXY command and an unspecified family or protocol, UDP, or a Unix socket.
    Unsupported {
        /// The family and protocol byte (the header's 14th).
        family_and_protocol: u8,
    },
}

/// A whole, valid header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The version it was written in.
    pub version: Version,
    /// Its length in bytes: what the connection's own data starts after.
    pub len: usize,
    /// What it says.
    pub proxied: Proxied,
}

/// What the first bytes of a connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The start of a header, not all of it yet: every byte given is part of it.
    Incomplete,
    /// A whole header, the first [`ProxyHeader::len`] bytes.
    Complete(ProxyHeader),
}

/// Why the first bytes of a connection are not a valid PROXY protocol header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Neither signature: the peer sent no PROXY protocol header at all (it is no
    /// proxy, or the proxy is not set to send one).
    #[error("no PROXY protocol header (the connection starts with {start}); is the proxy set to send one (HAProxy: send-proxy-v2 on the server line)?")]
    Missing {
        /// The first bytes, escaped for the log.
        start: Shown,
    },
    /// A version 1 line without its CRLF within [`V1_MAX_LEN`] bytes.
    #[error("PROXY protocol v1 line not ended by CRLF within {V1_MAX_LEN} bytes")]
    V1TooLong,
    /// A version 1 line that does not match the grammar.
    #[error("malformed PROXY protocol v1 line {line}: {problem}")]
    V1Malformed {
        /// The line, escaped for the log.
        line: Shown,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A version 2 header with a version other than 2.
    #[error("PROXY protocol v2 header with version {0} (only 2 exists)")]
    V2Version(u8),
    /// A version 2 header with a command other than LOCAL (0) and PROXY (1).
    #[error("PROXY protocol v2 header with unknown command {0}")]
    V2Command(u8),
    /// A version 2 header with a family or protocol the specification does not
    /// define.
    #[error("PROXY protocol v2 header with undefined family and protocol {0:#04x}")]
    V2Family(u8),
    /// A version 2 header announcing more than [`MAX_V2_PAYLOAD`] bytes.
    #[error("PROXY protocol v2 header announces {0} bytes of addresses and TLVs, more than the {MAX_V2_PAYLOAD} accepted")]
    V2TooLong(usize),
    /// A version 2 header too short for the addresses of its family.
    #[error("PROXY protocol v2 header of {len} address bytes, too short for its family (which needs {needed})")]
    V2AddressesTooShort {
        /// The length announced.
        len: usize,
        /// What the family's addresses take.
        needed: usize,
    },
    /// The TLVs after the addresses do not fill the announced length exactly.
    #[error("PROXY protocol v2 header with a TLV running past the header's end")]
    V2Tlv,
    /// A CRC-32C TLV that is not 4 bytes or does not match the header.
    #[error("PROXY protocol v2 header whose CRC-32C does not match")]
    V2Checksum,
}

/// Bytes from the peer, shown safely in a log line: printable ASCII as is,
/// anything else escaped, at most 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown(String);

impl Shown {
    /// The most bytes shown.
    const MAX: usize = 64;

    fn new(bytes: &[u8]) -> Self {
        let mut shown = String::from("\"");
        for &byte in bytes.iter().take(Self::MAX) {
            shown.extend(std::ascii::escape_default(byte).map(char::from));
        }
        shown.push('"');
        if bytes.len() > Self::MAX {
            shown.push_str("...");
        }
        Self(shown)
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads the header at the start of `bytes`, the first bytes of a connection (more
/// may follow the header; they are not looked at).
///
/// # Errors
/// As soon as the bytes cannot be the start of a valid header: a [`HeaderError`].
pub fn parse(bytes: &[u8]) -> Result<Parsed, HeaderError> {
    let starts = |signature: &[u8]| {
        let shared = bytes.len().min(signature.len());
        bytes[..shared] == signature[..shared]
    };
    if starts(&V2_SIGNATURE) {
        parse_v2(bytes)
    } else if starts(V1_PREFIX) {
        parse_v1(bytes)
    } else {
        Err(HeaderError::Missing {
            start: Shown::new(&bytes[..bytes.len().min(16)]),
        })
    }
}

fn parse_v1(bytes: &[u8]) -> Result<Parsed, HeaderError> {
    let window = &bytes[..bytes.len().min(V1_MAX_LEN)];
    let Some(end) = window.windows(2).position(|pair| pair == b"\r\n") else {
        return if bytes.len() >= V1_MAX_LEN {
            Err(HeaderError::V1TooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let line = &bytes[..end];
    let malformed = |problem| HeaderError::V1Malformed {
        line: Shown::new(line),
        problem,
    };
    // A lone CR or LF inside the line is no line end, and no part of the grammar.
    if line.iter().any(|&byte| !(0x20..0x7f).contains(&byte)) {
        return Err(malformed("a byte that is not printable ASCII"));
    }
    let text = std::str::from_utf8(line).map_err(|_| malformed("not ASCII"))?;
    let mut fields = text.split(' ');
    fields.next(); // "PROXY", checked by the caller.
    let family = fields.next().unwrap_or_default();
    let proxied = match family {
        // The rest of the line, if any, is to be ignored.
        "UNKNOWN" => Proxied::Local,
        "TCP4" | "TCP6" => {
            let rest: Vec<&str> = fields.collect();
            let [source, destination, source_port, destination_port] = rest[..] else {
                return Err(malformed(
                    "expected 4 fields after the family, each after one space",
                ));
            };
            let address = |text: &str| -> Result<IpAddr, HeaderError> {
                if family == "TCP4" {
                    v1_ipv4(text).map(IpAddr::V4)
                } else {
                    text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
                }
                .ok_or_else(|| malformed("an address not of the family named"))
            };
            let port = |text: &str| {
                v1_port(text).ok_or_else(|| {
                    malformed("a port not a number from 0 to 65535 without leading zeroes")
                })
            };
            Proxied::Tcp {
                source: SocketAddr::new(address(source)?, port(source_port)?),
                destination: SocketAddr::new(address(destination)?, port(destination_port)?),
            }
        }
        _ => return Err(malformed("the family is not TCP4, TCP6 or UNKNOWN")),
    };
    Ok(Parsed::Complete(ProxyHeader {
        version: Version::V1,
        len: end + 2,
        proxied,
    }))
}

/// A version 1 IPv4 address: four decimal numbers without leading zeroes (which
/// could be read as octal).
fn v1_ipv4(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        *octet = v1_number(parts.next()?, 3)?.try_into().ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

fn v1_port(text: &str) -> Option<u16> {
    v1_number(text, 5)?.try_into().ok()
}

/// Decimal digits only (no sign, no leading zero but in "0"), at most `digits`.
fn v1_number(text: &str, digits: usize) -> Option<u32> {
    let valid = !text.is_empty()
        && text.len() <= digits
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    valid.then(|| text.parse().ok()).flatten()
}

fn parse_v2(bytes: &[u8]) -> Result<Parsed, HeaderError> {
    if bytes.len() < V2_FIXED_LEN {
        // The version and command can be judged as soon as their byte is in.
        if let Some(&version_command) = bytes.get(12) {
            v2_command(version_command)?;
        }
        if let Some(&family) = bytes.get(13) {
            v2_family(family)?;
        }
        return Ok(Parsed::Incomplete);
    }
    let local = v2_command(bytes[12])?;
    let family_and_protocol = v2_family(bytes[13])?;
    let payload_len = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if payload_len > MAX_V2_PAYLOAD {
        return Err(HeaderError::V2TooLong(payload_len));
    }
    let len = V2_FIXED_LEN + payload_len;
    let Some(header) = bytes.get(..len) else {
        return Ok(Parsed::Incomplete);
    };
    let payload = &header[V2_FIXED_LEN..];
    let address_len = match family_and_protocol >> 4 {
        0x1 => 12,
        0x2 => 36,
        0x3 => 216,
        _ => 0,
    };
    if payload.len() < address_len && !local {
        return Err(HeaderError::V2AddressesTooShort {
            len: payload.len(),
            needed: address_len,
        });
    }
    let proxied = if local {
        // The family and addresses of a LOCAL header are to be ignored.
        Proxied::Local
    } else {
        check_tlvs(header, &payload[address_len..])?;
        let port = |at: usize| u16::from_be_bytes([payload[at], payload[at + 1]]);
        match family_and_protocol {
            0x11 => {
                let address = |at: usize| {
                    IpAddr::V4(Ipv4Addr::from(
                        <[u8; 4]>::try_from(&payload[at..at + 4]).unwrap_or_default(),
                    ))
                };
                Proxied::Tcp {
                    source: SocketAddr::new(address(0), port(8)),
                    destination: SocketAddr::new(address(4), port(10)),
                }
            }
            0x21 => {
                let address = |at: usize| {
                    IpAddr::V6(Ipv6Addr::from(
                        <[u8; 16]>::try_from(&payload[at..at + 16]).unwrap_or_default(),
                    ))
                };
                Proxied::Tcp {
                    source: SocketAddr::new(address(0), port(32)),
                    destination: SocketAddr::new(address(16), port(34)),
                }
            }
            _ => Proxied::Unsupported {
                family_and_protocol,
            },
        }
    };
    Ok(Parsed::Complete(ProxyHeader {
        version: Version::V2,
        len,
        proxied,
    }))
}

/// Whether the 13th byte is version 2 with the LOCAL command (`true`) or PROXY.
fn v2_command(version_command: u8) -> Result<bool, HeaderError> {
    match (version_command >> 4, version_command & 0x0f) {
        (2, 0) => Ok(true),
        (2, 1) => Ok(false),
        (2, command) => Err(HeaderError::V2Command(command)),
        (version, _) => Err(HeaderError::V2Version(version)),
    }
}

/// The 14th byte, if the specification defines it: family 0 to 3, protocol 0 to 2.
fn v2_family(family_and_protocol: u8) -> Result<u8, HeaderError> {
    if family_and_protocol >> 4 <= 3 && family_and_protocol & 0x0f <= 2 {
        Ok(family_and_protocol)
    } else {
        Err(HeaderError::V2Family(family_and_protocol))
    }
}

/// The TLVs after the addresses must fill the header exactly; a CRC-32C among them
/// must match the whole header (computed with its own value as zeroes).
fn check_tlvs(header: &[u8], mut tlvs: &[u8]) -> Result<(), HeaderError> {
    while !tlvs.is_empty() {
        let [kind, high, low, ..] = *tlvs else {
            return Err(HeaderError::V2Tlv);
        };
        let value_len = usize::from(u16::from_be_bytes([high, low]));
        let value = tlvs.get(3..3 + value_len).ok_or(HeaderError::V2Tlv)?;
        if kind == PP2_TYPE_CRC32C {
            let Ok(expected) = <[u8; 4]>::try_from(value) else {
                return Err(HeaderError::V2Checksum);
            };
            // This TLV's value, within the whole header.
            let at = header.len() - tlvs.len() + 3;
            let mut zeroed = header.to_vec();
            zeroed[at..at + 4].fill(0);
            if crc32c(&zeroed) != u32::from_be_bytes(expected) {
                return Err(HeaderError::V2Checksum);
            }
        }
        tlvs = &tlvs[3 + value_len..];
    }
    Ok(())
}

/// CRC-32C (Castagnoli), bit by bit: run once per header that carries one, on at
/// most [`MAX_HEADER_LEN`] bytes, so a table buys nothing worth its code.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0x82F6_3B78 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Encodes a version 2 header for a TCP client (what HAProxy's `send-proxy-v2`
/// sends), or the LOCAL command when `addresses` is `None`: for tests and tools
/// that play the proxy.
pub fn encode_v2(addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    let Some((source, destination)) = addresses else {
        header.extend_from_slice(&[0x20, 0x00, 0, 0]);
        return header;
    };
    let (family, mut payload) = match (source.ip().to_canonical(), destination.ip().to_canonical())
    {
        (IpAddr::V4(from), IpAddr::V4(to)) => (0x11, [from.octets(), to.octets()].concat()),
        (from, to) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            (0x21, [v6(from).octets(), v6(to).octets()].concat())
        }
    };
    payload.extend_from_slice(&source.port().to_be_bytes());
    payload.extend_from_slice(&destination.port().to_be_bytes());
    header.extend_from_slice(&[0x21, family]);
    header.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    header.extend_from_slice(&payload);
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn complete(bytes: &[u8]) -> ProxyHeader {
        match parse(bytes) {
            Ok(Parsed::Complete(header)) => header,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn version_1_lines_of_each_family() {
        let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /";
        let header = complete(line);
        assert_eq!(header.len, line.len() - 5);
        assert_eq!(
            header.proxied,
            Proxied::Tcp {
                source: addr("192.168.0.1:56324"),
                destination: addr("192.168.0.11:443")
            }
        );
        let header = complete(b"PROXY TCP6 2001:db8::1 ::1 0 65535\r\n");
        assert_eq!(
            header.proxied,
            Proxied::Tcp {
                source: addr("[2001:db8::1]:0"),
                destination: addr("[::1]:65535")
            }
        );
        // UNKNOWN, short and long: what follows it is ignored.
        assert_eq!(complete(b"PROXY UNKNOWN\r\n").proxied, Proxied::Local);
        assert_eq!(complete(b"PROXY UNKNOWN\r\n").len, 15);
        let worst = format!(
            "PROXY UNKNOWN {0} {0} 65535 65535\r\n",
            "ffff:".repeat(7) + "ffff"
        );
        assert_eq!(worst.len(), V1_MAX_LEN);
        assert_eq!(complete(worst.as_bytes()).len, V1_MAX_LEN);
    }

    #[test]
    fn version_1_lines_off_the_grammar_are_refused() {
        for line in [
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",     // LF alone is no line end
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", // nor CR CR LF
            "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",  // leading zero
            "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",  // leading zero in a port
            "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",  // a sign
            "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", // out of range
            "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", // out of range
            "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",     // three numbers
            "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",  // two spaces
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",  // a trailing space
            "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",     // a port missing
            "PROXY TCP4 ::1 ::1 1 2\r\n",           // the wrong family
            "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",   // likewise
            "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",   // no such family
            "PROXY UNKNOWNX\r\n",
            "PROXY \r\n",
            "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
        ] {
            let result = parse(line.as_bytes());
            // A line with a lone LF is incomplete until 107 bytes, then too long.
            if line.ends_with("2\n") {
                assert_eq!(result, Ok(Parsed::Incomplete), "{line:?}");
                let mut long = line.as_bytes().to_vec();
                long.resize(V1_MAX_LEN, b'x');
                assert_eq!(parse(&long), Err(HeaderError::V1TooLong));
                continue;
            }
            assert!(
                matches!(result, Err(HeaderError::V1Malformed { .. })),
                "{line:?}: {result:?}"
            );
        }
    }

    #[test]
    fn what_is_not_a_header_is_refused_at_the_first_wrong_byte() {
        assert!(matches!(parse(b"X"), Err(HeaderError::Missing { .. })));
        assert!(matches!(parse(b"PROXX"), Err(HeaderError::Missing { .. })));
        assert!(matches!(parse(b"\0\x20"), Err(HeaderError::Missing { .. })));
        assert!(matches!(
            parse(b"\r\n\r\n\0\r\nQUIX"),
            Err(HeaderError::Missing { .. })
        ));
        // A handshake message 1 frame, as a client that knows nothing of a proxy sends.
        let error = parse(&[0, 32, 1, 2, 3]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no PROXY protocol header (the connection starts with \"\\x00 \\x01\\x02\\x03\"); is the proxy set to send one (HAProxy: send-proxy-v2 on the server line)?"
        );
        assert_eq!(parse(b""), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"PRO"), Ok(Parsed::Incomplete));
        assert_eq!(parse(&V2_SIGNATURE[..7]), Ok(Parsed::Incomplete));
    }

    #[test]
    fn version_2_headers_of_each_kind() {
        let (source, destination) = (addr("127.0.0.5:40000"), addr("127.0.0.1:1234"));
        let mut bytes = encode_v2(Some((source, destination)));
        assert_eq!(bytes.len(), 28);
        bytes.extend_from_slice(b"\0\x20handshake");
        let header = complete(&bytes);
        assert_eq!(header.len, 28);
        assert_eq!(header.version, Version::V2);
        assert_eq!(
            header.proxied,
            Proxied::Tcp {
                source,
                destination
            }
        );

        let (source, destination) = (addr("[2001:db8::5]:1"), addr("[::1]:2"));
        let header = complete(&encode_v2(Some((source, destination))));
        assert_eq!(
            (header.len, header.proxied),
            (
                52,
                Proxied::Tcp {
                    source,
                    destination
                }
            )
        );

        let local = encode_v2(None);
        assert_eq!(
            complete(&local),
            ProxyHeader {
                version: Version::V2,
                len: 16,
                proxied: Proxied::Local
            }
        );
        // A LOCAL header's length is honoured, whatever it carries.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x11, 0, 3, 9, 9, 9, 0xff]);
        assert_eq!(complete(&local).len, 19);

        // PROXY for a Unix socket, UDP, or nothing said: no client IP address.
        for family in [0x00u8, 0x12, 0x22, 0x31, 0x32] {
            let mut header = V2_SIGNATURE.to_vec();
            let len: u16 = match family >> 4 {
                1 => 12,
                2 => 36,
                3 => 216,
                _ => 0,
            };
            header.extend_from_slice(&[0x21, family]);
            header.extend_from_slice(&len.to_be_bytes());
            header.resize(16 + usize::from(len), 0);
            assert_eq!(
                complete(&header).proxied,
                Proxied::Unsupported {
                    family_and_protocol: family
                }
            );
        }
    }

    #[test]
    fn version_2_headers_off_the_specification_are_refused() {
        let good = encode_v2(Some((addr("1.2.3.4:5"), addr("6.7.8.9:10"))));
        let with = |at: usize, byte: u8| {
            let mut bytes = good.clone();
            bytes[at] = byte;
            parse(&bytes)
        };
        assert_eq!(with(12, 0x11), Err(HeaderError::V2Version(1)));
        assert_eq!(with(12, 0x22), Err(HeaderError::V2Command(2)));
        assert_eq!(with(13, 0x41), Err(HeaderError::V2Family(0x41)));
        assert_eq!(with(13, 0x13), Err(HeaderError::V2Family(0x13)));
        // Refused as soon as the byte is in, not once the whole header is.
        assert_eq!(
            parse(&[&V2_SIGNATURE[..], &[0x31]].concat()),
            Err(HeaderError::V2Version(3))
        );
        // Too short for its family.
        assert_eq!(
            with(15, 11),
            Err(HeaderError::V2AddressesTooShort {
                len: 11,
                needed: 12
            })
        );
        // Longer than accepted: refused from the fixed part alone.
        let mut long = good[..16].to_vec();
        long[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(parse(&long), Err(HeaderError::V2TooLong(65535)));
        // Truncated: incomplete until the announced length is in.
        for cut in 0..good.len() {
            assert_eq!(parse(&good[..cut]), Ok(Parsed::Incomplete), "{cut}");
        }
    }

    /// `good` with TLVs appended and its length fixed.
    fn with_tlvs(good: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut bytes = good.to_vec();
        bytes.extend_from_slice(tlvs);
        let len = (bytes.len() - 16) as u16;
        bytes[14..16].copy_from_slice(&len.to_be_bytes());
        bytes
    }

    #[test]
    fn version_2_tlvs_must_fit_and_a_crc_must_match() {
        let good = encode_v2(Some((addr("1.2.3.4:5"), addr("6.7.8.9:10"))));
        // An ALPN and a NOOP TLV: skipped.
        let bytes = with_tlvs(&good, b"\x01\x00\x02h2\x04\x00\x00");
        assert_eq!(complete(&bytes).len, bytes.len());
        // One running past the end, or a header cut inside a TLV's header.
        assert_eq!(
            parse(&with_tlvs(&good, b"\x01\x00\x05h2")),
            Err(HeaderError::V2Tlv)
        );
        assert_eq!(
            parse(&with_tlvs(&good, b"\x01\x00")),
            Err(HeaderError::V2Tlv)
        );
        // A CRC-32C over the header with its own value zeroed.
        let mut bytes = with_tlvs(&good, b"\x04\x00\x01x\x03\x00\x04\0\0\0\0");
        let crc = crc32c(&bytes);
        let at = bytes.len() - 4;
        bytes[at..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(complete(&bytes).len, bytes.len());
        bytes[20] ^= 1;
        assert_eq!(parse(&bytes), Err(HeaderError::V2Checksum));
        assert_eq!(
            parse(&with_tlvs(&good, b"\x03\x00\x02\0\0")),
            Err(HeaderError::V2Checksum)
        );
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // RFC 3720 B.4 and every CRC catalogue: CRC-32C of "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    /// Never a panic; a complete header is never longer than the input or the bound,
    /// and its parse depends neither on what follows it nor on how much of it has
    /// arrived (each shorter prefix is incomplete); once an error, more bytes never
    /// make it right.
    fn check_consistent(bytes: &[u8]) -> Result<(), TestCaseError> {
        let result = parse(bytes);
        if let Ok(Parsed::Complete(header)) = &result {
            prop_assert!(header.len <= bytes.len() && header.len <= MAX_HEADER_LEN);
            prop_assert_eq!(parse(&bytes[..header.len]), result.clone());
            for cut in 0..header.len {
                prop_assert_eq!(parse(&bytes[..cut]), Ok(Parsed::Incomplete));
            }
        }
        if let Err(error) = &result {
            let mut longer = bytes.to_vec();
            longer.extend_from_slice(b"\r\n\0\0\0");
            prop_assert!(parse(&longer).is_err(), "{error}");
        }
        Ok(())
    }

    proptest! {
        /// Any bytes: see [`check_consistent`].
        #[test]
        fn any_bytes_parse_consistently(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            check_consistent(&bytes)?;
        }

        /// Valid headers of each kind with one byte changed, cut anywhere: random
        /// bytes alone almost never reach past the signature.
        #[test]
        fn damaged_headers_parse_consistently(
            kind in 0..4usize,
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = match kind {
                0 => b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec(),
                1 => b"PROXY TCP6 2001:db8::1 ::1 0 65535\r\n".to_vec(),
                2 => encode_v2(Some((addr("1.2.3.4:5"), addr("[::1]:10")))),
                _ => with_tlvs(&encode_v2(Some((addr("1.2.3.4:5"), addr("6.7.8.9:10")))), b"\x01\x00\x02h2"),
            };
            let at = at.index(bytes.len());
            bytes[at] = byte;
            bytes.truncate(cut.index(bytes.len() + 1));
            check_consistent(&bytes)?;
        }

        /// Every header encoded for a TCP client parses back to the same addresses,
        /// with the handshake bytes behind it left alone.
        #[test]
        fn encoded_headers_parse_back(
            source in any::<SocketAddr>(),
            destination in any::<SocketAddr>(),
            after in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut bytes = encode_v2(Some((source, destination)));
            let len = bytes.len();
            bytes.extend_from_slice(&after);
            let header = complete(&bytes);
            prop_assert_eq!(header.len, len);
            let Proxied::Tcp { source: got, destination: got_destination } = header.proxied else {
                return Err(TestCaseError::fail("not TCP"));
            };
            let same = |a: SocketAddr, b: SocketAddr| a.ip().to_canonical() == b.ip().to_canonical() && a.port() == b.port();
            prop_assert!(same(got, source) && same(got_destination, destination));
        }

        /// Version 1 lines with any addresses parse back.
        #[test]
        fn version_1_lines_parse_back(
            source in any::<std::net::Ipv4Addr>(),
            destination in any::<std::net::Ipv4Addr>(),
            ports in any::<(u16, u16)>(),
            v6 in any::<(std::net::Ipv6Addr, std::net::Ipv6Addr)>(),
        ) {
            let line = format!("PROXY TCP4 {source} {destination} {} {}\r\n", ports.0, ports.1);
            let header = complete(line.as_bytes());
            prop_assert_eq!(header.len, line.len());
            prop_assert_eq!(header.proxied, Proxied::Tcp {
                source: SocketAddr::new(source.into(), ports.0),
                destination: SocketAddr::new(destination.into(), ports.1),
            });
            let line = format!("PROXY TCP6 {} {} {} {}\r\n", v6.0, v6.1, ports.0, ports.1);
            let header = complete(line.as_bytes());
            prop_assert_eq!(header.proxied, Proxied::Tcp {
                source: SocketAddr::new(v6.0.into(), ports.0),
                destination: SocketAddr::new(v6.1.into(), ports.1),
            });
        }
    }
}
