//! Framing (wire-v1 section 1): every Noise message travels as a big-endian `u16`
//! length, then that many bytes, 1 to 65535. A zero length is a protocol error.
//!
//! [`decode_frame`] and [`encode_frame`] are pure functions over byte slices, in the
//! style of mini-redis's `connection.rs`: the caller owns the buffer and asks whether
//! a whole frame is in it yet. [`read_frame`] and [`write_frame`] are thin async
//! helpers for the handshake, which reads exactly one frame at a time so that it never
//! consumes bytes belonging to the session that follows.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::wire::error::{Bug, Result, TruncatedAt, Violation, WireError};

/// Length of the frame length prefix.
pub const FRAME_HEADER_LEN: usize = 2;

/// The largest frame payload (the largest Noise message).
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;

/// The result of looking for a frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// The buffer does not yet hold a whole frame; `needed` more bytes at least.
    Incomplete {
        /// How many more bytes are needed before a frame can be decoded. Exact once
        /// the length prefix is in the buffer.
        needed: usize,
    },
    /// A whole frame.
    Frame {
        /// The frame's payload (without the length prefix).
        payload: &'a [u8],
        /// Bytes of the buffer the frame took, prefix included.
        consumed: usize,
    },
}

/// Looks for one frame at the start of `buf`.
///
/// # Errors
/// [`Violation::ZeroLengthFrame`] when the length prefix is 0.
pub fn decode_frame(buf: &[u8]) -> Result<Decoded<'_>, Violation> {
    let Some(len) = frame_payload_len(buf)? else {
        return Ok(Decoded::Incomplete {
            needed: FRAME_HEADER_LEN - buf.len(),
        });
    };
    let rest = &buf[FRAME_HEADER_LEN..];
    match rest.get(..len) {
        Some(payload) => Ok(Decoded::Frame {
            payload,
            consumed: FRAME_HEADER_LEN + len,
        }),
        None => Ok(Decoded::Incomplete {
            needed: len - rest.len(),
        }),
    }
}

/// The payload length announced by the frame prefix at the start of `buf`, or
/// `None` while the prefix is not all there. The only parser of a frame prefix.
///
/// # Errors
/// [`Violation::ZeroLengthFrame`] when the length prefix is 0.
pub fn frame_payload_len(buf: &[u8]) -> Result<Option<usize>, Violation> {
    match buf.first_chunk::<FRAME_HEADER_LEN>() {
        None => Ok(None),
        Some(prefix) => match u16::from_be_bytes(*prefix) {
            0 => Err(Violation::ZeroLengthFrame),
            len => Ok(Some(usize::from(len))),
        },
    }
}

/// Appends `payload` as one frame (length prefix, then the bytes) to `out`.
///
/// # Errors
/// [`Bug::FrameLength`] when `payload` is empty or longer than 65535 bytes: wire-v1
/// has no such frames, so asking for one is a mistake of the caller's.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let len = frame_len_prefix(payload.len())?;
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&len);
    out.extend_from_slice(payload);
    Ok(())
}

/// The length prefix for a frame of `len` bytes.
///
/// # Errors
/// [`Bug::FrameLength`] unless `1 <= len <= 65535`.
pub fn frame_len_prefix(len: usize) -> Result<[u8; FRAME_HEADER_LEN]> {
    match u16::try_from(len) {
        Ok(len @ 1..) => Ok(len.to_be_bytes()),
        _ => Err(Bug::FrameLength(len).into()),
    }
}

/// Reads exactly one frame into `payload` (replacing its contents) and returns its
/// length, or `None` on a clean end of stream before the first byte of a frame.
///
/// It reads no byte past the frame, so the stream can be handed on afterwards.
///
/// # Errors
/// [`Violation::ZeroLengthFrame`]; [`Violation::Truncated`] when the stream ends
/// inside a frame; [`WireError::Io`] for other read failures.
pub async fn read_frame<R>(reader: &mut R, payload: &mut Vec<u8>) -> Result<Option<usize>>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let Some(len) = read_frame_len(reader).await? else {
        return Ok(None);
    };
    read_frame_payload(reader, len, payload).await?;
    Ok(Some(len))
}

/// Reads a frame's length prefix: `None` on a clean end of stream before it.
///
/// # Errors
/// As [`read_frame`].
pub(crate) async fn read_frame_len<R>(reader: &mut R) -> Result<Option<usize>>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut prefix = [0u8; FRAME_HEADER_LEN];
    let mut filled = 0;
    while filled < FRAME_HEADER_LEN {
        match reader.read(&mut prefix[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(Violation::Truncated(TruncatedAt::Frame).into()),
            n => filled += n,
        }
    }
    Ok(frame_payload_len(&prefix)?)
}

/// Reads a frame payload of `len` bytes whose prefix has been read.
///
/// # Errors
/// As [`read_frame`].
pub(crate) async fn read_frame_payload<R>(
    reader: &mut R,
    len: usize,
    payload: &mut Vec<u8>,
) -> Result<()>
where
    R: AsyncRead + Unpin + ?Sized,
{
    payload.clear();
    payload.resize(len, 0);
    reader
        .read_exact(payload)
        .await
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::UnexpectedEof => Violation::Truncated(TruncatedAt::Frame).into(),
            _ => WireError::Io(error),
        })?;
    Ok(())
}

/// Writes `payload` as one frame, in a single write of prefix and payload, and
/// flushes.
///
/// # Errors
/// [`Bug::FrameLength`] for an empty or over-long payload; [`WireError::Io`].
pub async fn write_frame<W>(writer: &mut W, payload: &[u8]) -> Result<()>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    encode_frame(payload, &mut frame)?;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_a_frame_and_reports_what_it_consumed() {
        let buf = [0, 3, b'a', b'b', b'c', 0, 1];
        assert_eq!(
            decode_frame(&buf),
            Ok(Decoded::Frame {
                payload: b"abc",
                consumed: 5
            })
        );
        assert_eq!(
            decode_frame(&buf[5..]),
            Ok(Decoded::Incomplete { needed: 1 })
        );
        assert_eq!(decode_frame(&[]), Ok(Decoded::Incomplete { needed: 2 }));
        assert_eq!(decode_frame(&[0]), Ok(Decoded::Incomplete { needed: 1 }));
    }

    #[test]
    fn zero_length_frame_is_a_violation() {
        assert_eq!(decode_frame(&[0, 0, 1]), Err(Violation::ZeroLengthFrame));
    }

    #[test]
    fn encode_refuses_empty_and_oversized_payloads() {
        let mut out = Vec::new();
        assert!(matches!(
            encode_frame(&[], &mut out),
            Err(WireError::Internal(Bug::FrameLength(0)))
        ));
        assert!(matches!(
            encode_frame(&vec![0; MAX_FRAME_LEN + 1], &mut out),
            Err(WireError::Internal(Bug::FrameLength(65536)))
        ));
        assert!(out.is_empty());
        encode_frame(&vec![7; MAX_FRAME_LEN], &mut out).unwrap();
        assert_eq!(out[..2], [0xff, 0xff]);
        assert_eq!(out.len(), MAX_FRAME_LEN + 2);
    }

    #[tokio::test]
    async fn read_frame_distinguishes_clean_eof_from_truncation() {
        let mut payload = Vec::new();
        let mut clean: &[u8] = &[0, 2, 9, 9];
        assert_eq!(read_frame(&mut clean, &mut payload).await.unwrap(), Some(2));
        assert_eq!(payload, [9, 9]);
        assert_eq!(read_frame(&mut clean, &mut payload).await.unwrap(), None);

        for truncated in [&[0u8][..], &[0, 3, 1, 2][..]] {
            let mut reader = truncated;
            let error = read_frame(&mut reader, &mut payload).await.unwrap_err();
            assert_eq!(
                error.violation(),
                Some(&Violation::Truncated(TruncatedAt::Frame)),
                "{truncated:?}"
            );
        }
        let mut zero: &[u8] = &[0, 0];
        let error = read_frame(&mut zero, &mut payload).await.unwrap_err();
        assert_eq!(error.violation(), Some(&Violation::ZeroLengthFrame));
    }

    #[tokio::test]
    async fn write_frame_then_read_frame_round_trips() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, b"hello").await.unwrap();
        drop(a);
        let mut payload = Vec::new();
        assert_eq!(read_frame(&mut b, &mut payload).await.unwrap(), Some(5));
        assert_eq!(payload, b"hello");
        assert_eq!(read_frame(&mut b, &mut payload).await.unwrap(), None);
    }

    proptest! {
        #[test]
        fn frames_round_trip(payloads in prop::collection::vec(
            prop::collection::vec(any::<u8>(), 1..600), 0..8)
        ) {
            let mut wire = Vec::new();
            for payload in &payloads {
                encode_frame(payload, &mut wire).unwrap();
            }
            let mut rest = &wire[..];
            for payload in &payloads {
                match decode_frame(rest).unwrap() {
                    Decoded::Frame { payload: decoded, consumed } => {
                        prop_assert_eq!(decoded, &payload[..]);
                        rest = &rest[consumed..];
                    }
                    Decoded::Incomplete { .. } => prop_assert!(false, "incomplete"),
                }
            }
            prop_assert!(rest.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_never_overrun(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            match decode_frame(&bytes) {
                Ok(Decoded::Frame { payload, consumed }) => {
                    prop_assert!(consumed <= bytes.len());
                    prop_assert_eq!(payload.len() + 2, consumed);
                    prop_assert!(!payload.is_empty());
                }
                Ok(Decoded::Incomplete { needed }) => prop_assert!(needed > 0),
                Err(violation) => prop_assert_eq!(violation, Violation::ZeroLengthFrame),
            }
        }
    }
}
