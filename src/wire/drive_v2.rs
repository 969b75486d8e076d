//! The async drivers of protocol v2's negotiation and handshake, and the server's
//! entry point for either version ([`respond_any`]): the first frame tells a v1
//! message 1 from a v2 offer (docs/PROTOCOL.md, "Recognising the version").
//!
//! The client writes its offer and message 1 in one write, and the server its
//! answer and message 2, so v2 costs no round trip over v1. Every frame's length is
//! checked against what that message may be before its bytes are read, and bytes
//! read past a frame are kept for the next one ([`Inbox`]); what follows message 3
//! (the client's first request) becomes the session's early input.

use std::fmt;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::trace;

use crate::wire::drive::{closed_by_peer, AwaitingServerApproval, EARLY_INPUT_LEN};
use crate::wire::error::{
    ForeignProtocol, Mismatch, Refusal, Result, TruncatedAt, Violation, WireError,
};
use crate::wire::frame::{encode_frame, frame_payload_len, FRAME_HEADER_LEN};
use crate::wire::handshake::{
    Established, ExpectMessage2, Initiator, LocalIdentity, Responder, MSG1_LEN, MSG2_LEN,
    MSG2_V2_MAX, MSG2_V2_MIN, MSG3_LEN, MSG3_V2_MAX, MSG3_V2_MIN,
};
use crate::wire::negotiation::{
    Answer, AnswerProblem, FirstFrame, Offer, OfferProblem, ProtocolVersion, MAX_ANSWER_LEN,
    MAX_OFFER_LEN,
};
use crate::wire::payload::ServerParams;
use crate::wire::record::Role;
use crate::wire::suite::Suite;

/// What a server accepts: the settings [`respond_any`] negotiates with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponderSettings {
    /// The v2 suites accepted, the server's preference first (the order of an
    /// UNSUPPORTED_SUITE answer). Empty: v2 is not served (a v2 offer is answered
    /// UNSUPPORTED_VERSION), and v1, if enabled, runs its one suite.
    pub suites: Vec<Suite>,
    /// Whether v1 clients are served: only when ChaChaPoly, v1's one suite, is
    /// among the `suites`, or v2 is not served at all (`suites` empty). A server
    /// that lists v2 suites without ChaChaPoly refuses it in v1 too.
    pub v1_enabled: bool,
    /// What message 2 tells a v2 client.
    pub params: ServerParams,
}

impl ResponderSettings {
    /// Settings serving the v2 `suites` (the server's preference first; empty: v2
    /// not served), v1 clients when `v1_enabled` (see [`Self::serves_v1`]), and
    /// telling v2 clients `params`. Non-exhaustive, so that a setting added later
    /// is not a breaking change: build with this and adjust the fields.
    pub fn new(suites: Vec<Suite>, v1_enabled: bool, params: ServerParams) -> Self {
        Self {
            suites,
            v1_enabled,
            params,
        }
    }

    /// Whether a v1 message 1 is answered: v1 enabled, and ChaChaPoly accepted or
    /// v2 not served (a v1-only server).
    pub fn serves_v1(&self) -> bool {
        self.v1_enabled
            && (self.suites.is_empty() || self.suites.contains(&Suite::ChaChaPolyBlake2s))
    }

    /// Whether a v2 offer can be accepted (some suite is).
    pub fn serves_v2(&self) -> bool {
        !self.suites.is_empty()
    }

    /// The versions served, as an UNSUPPORTED_VERSION answer lists them.
    pub fn versions(&self) -> Vec<u8> {
        let mut versions = Vec::new();
        if self.serves_v1() {
            versions.push(ProtocolVersion::V1.number());
        }
        if self.serves_v2() {
            versions.push(ProtocolVersion::V2.number());
        }
        versions
    }

    /// The answer to a well-formed v2 offer.
    pub fn answer(&self, offer: &Offer) -> Answer {
        if !self.serves_v2() {
            return Answer::UnsupportedVersion(self.versions());
        }
        let accepts =
            |suite: Option<Suite>| suite.is_some_and(|suite| self.suites.contains(&suite));
        if !accepts(offer.suite()) {
            let names = self
                .suites
                .iter()
                .map(|suite| suite.noise_name().to_owned());
            return Answer::UnsupportedSuite(names.collect());
        }
        match offer.retry() {
            Some(rejected) if accepts(Suite::from_noise_name(rejected.as_bytes())) => {
                Answer::RetryRefused
            }
            _ => Answer::Accept,
        }
    }
}

/// Bytes received and not yet consumed: the rest of a read that went past a frame.
#[derive(Default)]
struct Inbox {
    /// Received bytes, from the start of the next frame on.
    bytes: Vec<u8>,
}

/// How a frame's announced length is judged before its payload is read.
struct Expect {
    /// The smallest valid payload: the first read asks for this much.
    min: usize,
    /// Refuses a length no valid message has (given the bytes so far, to recognise
    /// another protocol).
    check: fn(usize, &[u8]) -> Result<(), Violation>,
    /// The error for an end of stream before any byte of the frame.
    at_eof: TruncatedAt,
}

impl Inbox {
    /// Reads one frame. A read asks for at most the frame's remaining bytes plus
    /// `read_ahead` (so with 0 nothing beyond the frame is consumed once its length
    /// is known); surplus bytes stay here.
    async fn frame<S>(
        &mut self,
        stream: &mut S,
        expect: &Expect,
        read_ahead: usize,
    ) -> Result<Vec<u8>>
    where
        S: AsyncRead + Unpin + ?Sized,
    {
        // Bounded: each turn reads at least one byte towards a frame of <= 64 KiB.
        loop {
            let target = match frame_payload_len(&self.bytes)? {
                Some(len) => {
                    (expect.check)(len, &self.bytes)?;
                    let end = FRAME_HEADER_LEN + len;
                    if self.bytes.len() >= end {
                        let payload = self.bytes[FRAME_HEADER_LEN..end].to_vec();
                        self.bytes.drain(..end);
                        return Ok(payload);
                    }
                    end + read_ahead
                }
                None => FRAME_HEADER_LEN + expect.min + read_ahead,
            };
            let start = self.bytes.len();
            self.bytes.resize(target.max(start + 1), 0);
            let read = stream.read(&mut self.bytes[start..]).await;
            let read = read.inspect_err(|_| self.bytes.truncate(start))?;
            self.bytes.truncate(start + read);
            if read == 0 {
                let at = if start == 0 {
                    expect.at_eof
                } else {
                    TruncatedAt::Frame
                };
                return Err(Violation::Truncated(at).into());
            }
        }
    }
}

/// A frame size check that names another protocol's bytes (an SSH banner, say)
/// instead of the absurd size they make.
fn foreign(sender: Role, bytes: &[u8], otherwise: Violation) -> Violation {
    match ForeignProtocol::recognise(bytes) {
        Some(sent) => Violation::NotNoiseEcho { sender, sent },
        None => otherwise,
    }
}

const FIRST_FRAME: Expect = Expect {
    min: MSG1_LEN,
    check: |len, bytes| match len {
        MSG1_LEN | ..=MAX_OFFER_LEN => Ok(()),
        _ => Err(foreign(
            Role::Client,
            bytes,
            Violation::MalformedOffer(OfferProblem::Size(len)),
        )),
    },
    at_eof: TruncatedAt::Handshake,
};

const V2_MESSAGE1: Expect = Expect {
    min: MSG1_LEN,
    check: |len, _| exact(1, MSG1_LEN, len),
    at_eof: TruncatedAt::Handshake,
};

const V1_MESSAGE3: Expect = Expect {
    min: MSG3_LEN,
    check: |len, _| exact(3, MSG3_LEN, len),
    at_eof: TruncatedAt::AfterMessage2,
};

const V2_MESSAGE3: Expect = Expect {
    min: MSG3_V2_MIN,
    check: |len, _| range(3, MSG3_V2_MIN, MSG3_V2_MAX, len),
    at_eof: TruncatedAt::AfterMessage2,
};

const ANSWER: Expect = Expect {
    min: 1,
    check: |len, bytes| {
        answer_frame_problem(len, bytes).map_or(Ok(()), |problem| {
            Err(foreign(
                Role::Server,
                bytes,
                Violation::MalformedAnswer(problem),
            ))
        })
    },
    at_eof: TruncatedAt::Handshake,
};

/// What is wrong with an answer frame of `len` bytes, judged from its first bytes
/// (`bytes`, length prefix included) before the rest is awaited: its status byte
/// fixes the length it may have (ACCEPT and RETRY_REFUSED are 1 byte,
/// UNSUPPORTED_VERSION at most 2 + 255), and UNSUPPORTED_SUITE lists at least one
/// suite. So another protocol's bytes (a TLS alert `15 03 03 ..`, an SMTP greeting
/// `220 ..`), whose first two bytes read as a plausible length, are named at once
/// instead of waited on until the handshake times out.
fn answer_frame_problem(len: usize, bytes: &[u8]) -> Option<AnswerProblem> {
    if len > MAX_ANSWER_LEN {
        return Some(AnswerProblem::TooLong(len));
    }
    let status = *bytes.get(FRAME_HEADER_LEN)?;
    let fits = match status {
        // ACCEPT, RETRY_REFUSED: the status alone.
        0x00 | 0x03 => len == 1,
        // UNSUPPORTED_SUITE: status, count (>= 1), then names.
        0x01 => {
            len >= 3
                && bytes
                    .get(FRAME_HEADER_LEN + 1)
                    .is_none_or(|&count| count > 0)
        }
        // UNSUPPORTED_VERSION: status, count, the versions.
        0x02 => (2..=2 + 255).contains(&len),
        other => return Some(AnswerProblem::UnknownStatus(other)),
    };
    // The answer's own decoder names the exact fault once the frame is in.
    (!fits).then_some(match status {
        0x01 if len >= 3 => AnswerProblem::EmptySuiteList,
        0x00 | 0x03 if len > 1 => AnswerProblem::TrailingBytes(len - 1),
        _ => AnswerProblem::Truncated,
    })
}

const V2_MESSAGE2: Expect = Expect {
    min: MSG2_V2_MIN,
    check: |len, _| range(2, MSG2_V2_MIN, MSG2_V2_MAX, len),
    at_eof: TruncatedAt::Handshake,
};

fn exact(message: u8, expected: usize, actual: usize) -> Result<(), Violation> {
    match actual == expected {
        true => Ok(()),
        false => Err(Violation::HandshakeMessageSize {
            message,
            expected,
            actual,
        }),
    }
}

fn range(message: u8, min: usize, max: usize, actual: usize) -> Result<(), Violation> {
    match (min..=max).contains(&actual) {
        true => Ok(()),
        false => Err(Violation::HandshakeMessageOutOfRange {
            message,
            min,
            max,
            actual,
        }),
    }
}

/// Starts a v2 handshake as the client: writes `offer` and message 1, reads the
/// answer and message 2, and stops before message 3 so the caller can check the
/// server's key (and read its [`server_params`](AwaitingServerApproval::server_params)).
///
/// # Errors
/// [`Refusal::ClosedBeforeAnswer`] when the server closes or resets before any
/// byte of its answer (a v1-only server does; so does one refusing connections);
/// [`WireError::Mismatch`] for an UNSUPPORTED_SUITE, UNSUPPORTED_VERSION or
/// RETRY_REFUSED answer; [`Violation::MalformedAnswer`], [`Violation::NotNoiseEcho`]
/// and the errors of [`ExpectMessage2::read`]; [`WireError::Io`].
pub async fn initiate_v2<S>(
    stream: &mut S,
    local: &LocalIdentity,
    offer: &Offer,
) -> Result<AwaitingServerApproval>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    initiate_v2_with(stream, offer, Initiator::start_v2(local, offer)?).await
}

/// [`initiate_v2`] with a fixed ephemeral private key, to reproduce the golden
/// test vectors. Never use it for a real connection.
///
/// # Errors
/// As [`initiate_v2`].
#[doc(hidden)]
pub async fn initiate_v2_with_fixed_ephemeral_for_testing_only<S>(
    stream: &mut S,
    local: &LocalIdentity,
    offer: &Offer,
    ephemeral_private: &[u8; 32],
) -> Result<AwaitingServerApproval>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let start =
        Initiator::start_v2_with_fixed_ephemeral_for_testing_only(local, offer, ephemeral_private)?;
    initiate_v2_with(stream, offer, start).await
}

async fn initiate_v2_with<S>(
    stream: &mut S,
    offer: &Offer,
    (core, message1): (ExpectMessage2, [u8; MSG1_LEN]),
) -> Result<AwaitingServerApproval>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let closed = |error| closed_by_peer(error, Refusal::ClosedBeforeAnswer);
    // The offer, then -> e, in one write: no round trip more than v1.
    let mut first = Vec::with_capacity(2 * FRAME_HEADER_LEN + MAX_OFFER_LEN + MSG1_LEN);
    encode_frame(&offer.encode(), &mut first)?;
    encode_frame(&message1, &mut first)?;
    stream
        .write_all(&first)
        .await
        .map_err(WireError::from)
        .map_err(closed)?;
    stream
        .flush()
        .await
        .map_err(WireError::from)
        .map_err(closed)?;
    trace!(
        "sent the v2 offer ({}) and handshake message 1",
        offer.name()
    );
    let mut inbox = Inbox::default();
    // The answer and message 2 usually arrive together: read both at once.
    let answer = inbox
        .frame(stream, &ANSWER, FRAME_HEADER_LEN + MSG2_V2_MIN)
        .await
        .map_err(closed)?;
    match Answer::decode(&answer).map_err(Violation::MalformedAnswer)? {
        Answer::Accept => {}
        Answer::UnsupportedSuite(accepted) => {
            return Err(Mismatch::UnsupportedSuite {
                offered: offer.name().to_owned(),
                accepted,
            }
            .into())
        }
        Answer::UnsupportedVersion(accepted) => {
            return Err(Mismatch::UnsupportedVersion {
                offered: ProtocolVersion::V2.number(),
                accepted,
            }
            .into())
        }
        Answer::RetryRefused => {
            let Some(rejected) = offer.retry() else {
                // A first attempt cannot be a refused retry.
                return Err(
                    Violation::MalformedAnswer(AnswerProblem::RetryRefusedWithoutRetry).into(),
                );
            };
            let rejected = rejected.to_owned();
            return Err(Mismatch::RetryRefused { rejected }.into());
        }
    }
    // <- e, ee, s, es
    let message2 = inbox.frame(stream, &V2_MESSAGE2, 0).await?;
    let core = core.read(&message2)?;
    trace!(
        "received handshake message 2 ({} bytes): the server proved its key",
        message2.len()
    );
    Ok(AwaitingServerApproval::new(core, inbox.bytes))
}

/// Runs the server's handshake for either version: reads the first frame, serves
/// v1 or negotiates v2 with `settings`, and validates message 3. Authorizing the
/// client's key is the caller's job; the deadline too.
///
/// # Errors
/// [`WireError::Mismatch`] after answering an honest mismatch (an unsupported
/// suite or version, a refused retry; [`Mismatch::V1NotServed`] answers nothing):
/// the connection is done, and the client broke no rule. [`Violation::MalformedOffer`]
/// for garbage in the first frame (closed without a reply), and the errors of
/// [`respond`](crate::wire::respond); [`WireError::Io`].
pub async fn respond_any<S>(
    stream: &mut S,
    local: &LocalIdentity,
    settings: &ResponderSettings,
) -> Result<Established>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    respond_any_with(stream, local, settings, None).await
}

/// [`respond_any`] with a fixed ephemeral private key, to reproduce the golden
/// test vectors. Never use it for a real connection.
///
/// # Errors
/// As [`respond_any`].
#[doc(hidden)]
pub async fn respond_any_with_fixed_ephemeral_for_testing_only<S>(
    stream: &mut S,
    local: &LocalIdentity,
    settings: &ResponderSettings,
    ephemeral_private: &[u8; 32],
) -> Result<Established>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    respond_any_with(stream, local, settings, Some(ephemeral_private)).await
}

/// What the first read asks for beyond the smallest first frame: a whole
/// ChaChaPoly offer and message 1 behind it, in one system call.
const FIRST_READ_AHEAD: usize = 2 * FRAME_HEADER_LEN + MAX_OFFER_LEN;

async fn respond_any_with<S>(
    stream: &mut S,
    local: &LocalIdentity,
    settings: &ResponderSettings,
    ephemeral: Option<&[u8; 32]>,
) -> Result<Established>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut inbox = Inbox::default();
    let first = inbox.frame(stream, &FIRST_FRAME, FIRST_READ_AHEAD).await?;
    let (core, message2, message3) = match FirstFrame::classify(&first) {
        FirstFrame::Garbage(problem) => return Err(Violation::MalformedOffer(problem).into()),
        FirstFrame::V1Message1 if !settings.serves_v1() => return Err(Mismatch::V1NotServed.into()),
        FirstFrame::V1Message1 => {
            trace!("received a v1 handshake message 1");
            // -> e; <- e, ee, s, es
            let (core, message2) = Responder::new_with(local, ephemeral)?.read(&first)?;
            debug_assert_eq!(message2.len(), MSG2_LEN);
            (core, encode(&[&message2])?, &V1_MESSAGE3)
        }
        FirstFrame::OtherVersion(offered) => {
            let accepted = settings.versions();
            send_and_close(stream, &Answer::UnsupportedVersion(accepted.clone())).await?;
            return Err(Mismatch::UnsupportedVersion { offered, accepted }.into());
        }
        FirstFrame::Offer(offer) => {
            // Message 1 follows the offer in the same write: read it before
            // answering, so that closing after a refusal leaves nothing unread (which
            // would make TCP reset the connection, and maybe destroy the answer).
            let message1 = inbox.frame(stream, &V2_MESSAGE1, 0).await?;
            let answer = settings.answer(&offer);
            if answer != Answer::Accept {
                send_and_close(stream, &answer).await?;
                return Err(mismatch(&offer, answer));
            }
            let core = Responder::new_v2_with(local, &offer, settings.params, ephemeral)?;
            let (core, message2) = core.read(&message1)?;
            trace!("accepted the v2 offer of {}", offer.name());
            (core, encode(&[&answer.encode(), &message2])?, &V2_MESSAGE3)
        }
    };
    stream.write_all(&message2).await?;
    stream.flush().await?;
    trace!("sent handshake message 2");
    // -> s, se, and what is already there of the first request behind it.
    let received = inbox.frame(stream, message3, EARLY_INPUT_LEN).await?;
    let mut established = core.read(&received)?;
    trace!(
        "received handshake message 3 ({} bytes, {} bytes of requests behind it): the client proved its key",
        received.len(),
        inbox.bytes.len()
    );
    established.early_input = inbox.bytes;
    Ok(established)
}

/// The payloads as consecutive frames, for one write.
fn encode(payloads: &[&[u8]]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for payload in payloads {
        encode_frame(payload, &mut out)?;
    }
    Ok(out)
}

/// Writes a refusing answer and half-closes: the client reads it, then the end.
async fn send_and_close<S>(stream: &mut S, answer: &Answer) -> Result<()>
where
    S: AsyncWrite + Unpin + ?Sized,
{
    stream.write_all(&encode(&[&answer.encode()])?).await?;
    stream.shutdown().await?;
    trace!("answered the offer with {answer:?} and closed");
    Ok(())
}

/// The error a server returns after answering `answer` to `offer`.
fn mismatch(offer: &Offer, answer: Answer) -> WireError {
    match answer {
        Answer::UnsupportedSuite(accepted) => Mismatch::UnsupportedSuite {
            offered: offer.name().to_owned(),
            accepted,
        },
        Answer::UnsupportedVersion(accepted) => Mismatch::UnsupportedVersion {
            offered: ProtocolVersion::V2.number(),
            accepted,
        },
        Answer::RetryRefused | Answer::Accept => Mismatch::RetryRefused {
            rejected: offer.retry().unwrap_or_default().to_owned(),
        },
    }
    .into()
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("buffered", &self.bytes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::rekey::RekeyPolicy;

    fn settings(suites: &[Suite], v1_enabled: bool) -> ResponderSettings {
        ResponderSettings {
            suites: suites.to_vec(),
            v1_enabled,
            params: ServerParams {
                max_request: 1,
                rekey: RekeyPolicy::DEFAULT,
            },
        }
    }

    #[test]
    fn answer_frames_are_judged_by_their_status_before_their_body_is_awaited() {
        let judge = |bytes: &[u8]| {
            let len = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
            answer_frame_problem(len, bytes)
        };
        // Valid answers' first bytes pass.
        assert_eq!(judge(&[0, 1, 0x00]), None);
        assert_eq!(judge(&[0, 1, 0x03]), None);
        assert_eq!(judge(&[0, 4, 0x02, 2, 1, 2]), None);
        assert_eq!(judge(&[0, 31, 0x01, 1, 28]), None);
        assert_eq!(judge(&[0, 31]), None, "the status is not in yet");
        // Another protocol's bytes fail at once, whatever length they announce.
        assert_eq!(
            judge(&[0x15, 0x03, 0x03, 0x00, 0x02]),
            Some(AnswerProblem::TrailingBytes(0x1503 - 1))
        );
        assert_eq!(judge(b"220 mail"), Some(AnswerProblem::UnknownStatus(b'0')));
        assert_eq!(
            judge(&[0x16, 0x03, 0x01, 0x00, 0x7a]),
            Some(AnswerProblem::EmptySuiteList)
        );
        assert_eq!(
            judge(&[0x01, 0x02, 0x02, 1]),
            Some(AnswerProblem::Truncated),
            "an UNSUPPORTED_VERSION longer than 257 bytes"
        );
        assert_eq!(judge(&[0x41, 0xc2]), Some(AnswerProblem::TooLong(0x41c2)));
    }

    #[test]
    fn the_server_decides_in_the_documented_order() {
        use Suite::{AesGcmSha256 as Aes, ChaChaPolyBlake2s as Chacha};
        let names = |suites: &[Suite]| {
            suites
                .iter()
                .map(|suite| suite.noise_name().to_owned())
                .collect::<Vec<_>>()
        };
        let first = Offer::new(Aes);
        let retry = Offer::retrying(Chacha, Aes);
        let unknown =
            Offer::decode(b"noise-echo\x02\x1dNoise_XX_25519_AESGCM_BLAKE2s\x00").unwrap();
        for (settings, offer, expected) in [
            (settings(&Suite::ALL, true), &first, Answer::Accept),
            (
                settings(&[Chacha], true),
                &first,
                Answer::UnsupportedSuite(names(&[Chacha])),
            ),
            (
                settings(&[Chacha, Aes], true),
                &unknown,
                Answer::UnsupportedSuite(names(&[Chacha, Aes])),
            ),
            // The retry names AES-GCM as rejected: true here, forged there.
            (settings(&[Chacha], true), &retry, Answer::Accept),
            (settings(&Suite::ALL, true), &retry, Answer::RetryRefused),
            // An unsupported suite is answered so even on a retry.
            (
                settings(&[Aes], true),
                &retry,
                Answer::UnsupportedSuite(names(&[Aes])),
            ),
            // No v2 suites: v2 is not served at all; v1 is, and is listed.
            (
                settings(&[], true),
                &first,
                Answer::UnsupportedVersion(vec![1]),
            ),
            (
                settings(&[], false),
                &first,
                Answer::UnsupportedVersion(vec![]),
            ),
        ] {
            assert_eq!(settings.answer(offer), expected, "{settings:?} {offer:?}");
        }
    }

    #[test]
    fn v1_is_served_only_with_chachapoly() {
        assert!(settings(&Suite::ALL, true).serves_v1());
        assert!(!settings(&Suite::ALL, false).serves_v1());
        assert!(!settings(&[Suite::AesGcmSha256], true).serves_v1());
        assert_eq!(settings(&Suite::ALL, true).versions(), [1, 2]);
        assert_eq!(settings(&Suite::ALL, false).versions(), [2]);
        assert_eq!(
            settings(&[Suite::ChaChaPolyBlake2s], true).versions(),
            [1, 2]
        );
        assert!(settings(&[], false).versions().is_empty());
    }

    #[test]
    fn a_v1_only_server_serves_v1_and_answers_v2_with_version_1() {
        let v1_only = settings(&[], true);
        assert!(v1_only.serves_v1());
        assert!(!v1_only.serves_v2());
        assert_eq!(v1_only.versions(), [1]);
        assert_eq!(
            v1_only.answer(&Offer::new(Suite::AesGcmSha256)),
            Answer::UnsupportedVersion(vec![1])
        );
    }
}
