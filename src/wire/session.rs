//! The encrypted record stream of an established session (wire-v1 section 5), as
//! two halves that two tasks can drive at once: a client writes pipelined requests
//! while it reads the responses.
//!
//! Each half holds its own direction's key from the Noise split (see
//! `src/wire/cipher.rs`) and nonce counter, which only it advances, once
//! per message, so a nonce is never reused. Any error is fatal: a half refuses further use after one
//! (and after a cancelled call that may have left it midway).
//!
//! [`SendHalf`] appends records to its output buffer, after the open message's frame
//! header, and seals them in place: a full 65519-byte transport message whenever it
//! fills, so many small pipelined records share one
//! message and one write, and a large record is split across messages.
//! [`flush`](SendHalf::flush) seals what is pending and writes it all in one go.
//!
//! [`RecvHalf`] reads frames, decrypts them in place in its input buffer, and feeds
//! the plaintext to a
//! [`RecordDecoder`]: [`next_record`](RecvHalf::next_record) returns a header before
//! any of its body is buffered, so the receiver checks its limit first.
//!
//! Buffers grow to a transport message while data is in flight, and are released
//! when a half goes idle, so thousands of idle sessions cost little memory.
//!
//! In protocol v2 each half also follows the server's [`RekeyPolicy`](crate::wire::RekeyPolicy)
//! (`src/wire/rekey.rs`): the send half ends with a REKEY record the message that
//! reaches a limit, leaving room for it in every message, and replaces its key once
//! that message is sealed; the receive half checks the peer did the same, and
//! replaces its key after the message whose last record is REKEY.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf, WriteHalf};

use crate::wire::cipher::{next_nonce, CipherKey};
use crate::wire::error::{Bug, Refusal, Result, TruncatedAt, Violation};
use crate::wire::frame::{decode_frame, Decoded, FRAME_HEADER_LEN, MAX_FRAME_LEN};
use crate::wire::handshake::Established;
use crate::wire::record::{
    response_limit, RecordDecoder, RecordEvent, RecordHeader, RecordType, Role,
    MAX_ERROR_REASON_LEN, RECORD_HEADER_LEN, REKEY_RECORD,
};
use crate::wire::rekey::{RecvRekey, SendRekey};

pub use crate::wire::cipher::TAG_LEN;
pub use buffered::{BufferedBody, BufferedRecord};
pub use send::SendHalf;

mod buffered;
mod read_ahead;
mod send;

/// The largest transport plaintext: a maximal frame minus the tag.
pub const MAX_PLAINTEXT_LEN: usize = MAX_FRAME_LEN - TAG_LEN;

/// Buffers larger than this are freed when a half goes idle.
const IDLE_BUFFER_CAPACITY: usize = 2048;

/// What the input buffer may hold outside a record body without the caller's
/// allowance (see [`RecvHalf::next_record_within`]): a small transport message
/// whole, so an unpipelined small request never needs one.
pub const FREE_INPUT: usize = IDLE_BUFFER_CAPACITY;

/// The least a read asks for while no frame length is known: enough for a typical
/// small request in one read, small enough to hold while idle.
const MIN_READ: usize = 256;

/// How much a read asks for inside a large record body, and how many bytes of
/// sealed full messages are written at once: a bulk transfer moves through the
/// kernel in a few large system calls, each waking the peer once, instead of one
/// per 64 KiB transport message. Both buffers exist only while such a record is in
/// flight (they are freed when the half goes idle).
const BULK_IO: usize = 256 * 1024;

/// The limit of a reply's body of type `record_type` to a REQUEST of `request_len`
/// bytes: [`response_limit`] for a RESPONSE, [`MAX_ERROR_REASON_LEN`] for an ERROR
/// (a reason does not grow with the request).
pub fn reply_limit(record_type: RecordType, request_len: usize) -> u32 {
    match record_type {
        RecordType::Error => MAX_ERROR_REASON_LEN,
        RecordType::Response | RecordType::Request => response_limit(request_len),
    }
}

/// The prefix an ERROR reason starts with when the server refuses the client's key.
pub const PERMISSION_DENIED_PREFIX: &str = "permission denied";

impl Established {
    /// Turns the handshake into a session over separate read and write halves, such
    /// as those of `TcpStream::into_split`.
    pub fn into_halves<R, W>(self, reader: R, writer: W) -> (RecvHalf<R>, SendHalf<W>)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let decoder = match self.rekey {
            Some(_) => RecordDecoder::v2(self.role.peer()),
            None => RecordDecoder::new(self.role.peer()),
        };
        let recv = RecvHalf {
            reader,
            key: self.keys.recv,
            nonce: 0,
            input: self.early_input,
            input_start: 0,
            plaintext_start: 0,
            plaintext_end: 0,
            decoder,
            rekey: self.rekey.as_deref().map(RecvRekey::new),
            failed: false,
            read_filled: false,
            #[cfg(test)]
            compacted: 0,
        };
        let send = SendHalf {
            writer,
            key: self.keys.send,
            role: self.role,
            nonce: 0,
            output: Vec::new(),
            open: None,
            append_until: 0,
            rekey: self
                .rekey
                .as_deref()
                .map(|policy| Box::new(SendRekey::new(policy))),
            failed: false,
        };
        (recv, send)
    }

    /// Turns the handshake into a session over `stream`, split with
    /// [`tokio::io::split`].
    pub fn into_split<S>(self, stream: S) -> (RecvHalf<ReadHalf<S>>, SendHalf<WriteHalf<S>>)
    where
        S: AsyncRead + AsyncWrite,
    {
        let (reader, writer) = tokio::io::split(stream);
        self.into_halves(reader, writer)
    }
}

/// Marks a half as failed for the duration of a call: a call that returns `Ok`
/// clears it, an error or a cancellation (the future dropped midway) leaves it set.
fn begin(failed: &mut bool) -> Result<()> {
    if *failed {
        return Err(Bug::UsedAfterFailure.into());
    }
    *failed = true;
    Ok(())
}

impl<R> std::fmt::Debug for RecvHalf<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvHalf")
            .field("nonce", &self.nonce)
            .field("decoder", &self.decoder)
            .field("rekey", &self.rekey)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// A reply to one request, as the client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A RESPONSE body.
    Response(Vec<u8>),
    /// An ERROR reason (invalid UTF-8 replaced by U+FFFD).
    Error(String),
}

/// The receiving half of a session: decrypts transport messages and decodes the
/// records of the peer's direction.
pub struct RecvHalf<R> {
    reader: R,
    key: CipherKey,
    /// The nonce of the next transport message to decrypt.
    nonce: u64,
    /// Bytes read from the stream; `input[input_start..]` are not yet decrypted.
    input: Vec<u8>,
    input_start: usize,
    /// The current transport message's plaintext, decrypted in place in `input`;
    /// `input[plaintext_start..plaintext_end]` are not yet given to the decoder.
    plaintext_start: usize,
    plaintext_end: usize,
    decoder: RecordDecoder,
    /// Protocol v2: the peer's counts under its current key, checked against the
    /// policy; `None` in v1, which never rekeys.
    rekey: Option<RecvRekey>,
    failed: bool,
    /// The last read from the stream filled all the room it had: the kernel likely
    /// holds more, for `RecvHalf::expects_more_input`.
    read_filled: bool,
    /// Bytes moved to the front of `input` by compactions, for the test that
    /// bounds them.
    #[cfg(test)]
    compacted: usize,
}

impl<R: AsyncRead + Unpin> RecvHalf<R> {
    /// Reads up to the next record header, skipping whatever is left of the current
    /// record's body. Returns `None` on a clean end of stream between records.
    ///
    /// Cancel-safe: if the future is dropped (it can only be while it waits for the
    /// network), no byte is lost and the half can be used again.
    ///
    /// # Errors
    /// [`Violation::Truncated`] when the stream ends inside a frame or a record;
    /// [`Violation::UnknownRecordType`], [`Violation::TransportDecrypt`],
    /// [`Violation::EmptyTransportMessage`], [`Violation::ZeroLengthFrame`]; in
    /// protocol v2 [`Violation::RekeyWithBody`], [`Violation::RekeyNotLast`] and
    /// [`Violation::MissedRekey`]; [`WireError::Io`](super::WireError::Io).
    pub async fn next_record(&mut self) -> Result<Option<RecordHeader>> {
        begin(&mut self.failed)?;
        let result = self.next_record_inner(None).await;
        self.failed = result.is_err();
        match result? {
            NextRecord::Header(header) => Ok(header),
            // An unlimited allowance is never exceeded, and nothing is held back.
            NextRecord::Admit(_) | NextRecord::Released => unreachable!("no limit to admit"),
        }
    }

    /// [`next_record`](Self::next_record) for a receiver that accounts for the input
    /// buffer outside a record body, such as a server holding many sessions to one
    /// memory budget: the buffer never grows past `allowance` bytes (or
    /// [`FREE_INPUT`], if more) while no record body is in progress. Before
    /// reading more than that (the rest of a transport message whose length
    /// prefix says it is longer), it returns [`NextRecord::Admit`] with the
    /// capacity it needs, having read only the prefix and a few hundred bytes;
    /// the caller finds the memory and calls again with that allowance. When it
    /// has drained its buffer between records and is about to wait for the
    /// network, it frees the buffer and returns
    /// [`NextRecord::Released`] (only if `allowance` is over `FREE_INPUT`): the
    /// caller gives its memory back and calls again. Inside a record body (whose
    /// memory the caller reserved from its header) reads are not limited.
    ///
    /// Cancel-safe, as `next_record`; both signals leave the half usable.
    ///
    /// # Errors
    /// As [`RecvHalf::next_record`].
    pub async fn next_record_within(&mut self, allowance: usize) -> Result<NextRecord> {
        begin(&mut self.failed)?;
        let result = self.next_record_inner(Some(allowance)).await;
        self.failed = result.is_err();
        result
    }

    /// `allowance`: `None` for no limit.
    async fn next_record_inner(&mut self, allowance: Option<usize>) -> Result<NextRecord> {
        loop {
            while self.plaintext_start < self.plaintext_end {
                let (event, used) = self
                    .decoder
                    .decode(&self.input[self.plaintext_start..self.plaintext_end])?;
                self.plaintext_start += used;
                match event {
                    RecordEvent::Header(header) => return Ok(NextRecord::Header(Some(header))),
                    RecordEvent::Rekey => self.peer_rekeyed(used)?,
                    RecordEvent::NeedMore | RecordEvent::Body { .. } => {}
                }
            }
            match self.fill_plaintext(allowance, true).await? {
                Fill::Message => {}
                Fill::End => {
                    if let Some(rekey) = &self.rekey {
                        rekey.finished(self.decoder.at_record_boundary(), self.decoder.sender())?;
                    }
                    return match self.decoder.truncated_at() {
                        None => Ok(NextRecord::Header(None)),
                        Some(at) => Err(Violation::Truncated(at).into()),
                    };
                }
                Fill::Admit(capacity) => return Ok(NextRecord::Admit(capacity)),
                Fill::Released => return Ok(NextRecord::Released),
            }
        }
    }

    /// Reads the rest of the current record's body into `body` (replacing its
    /// contents), after checking it is at most `limit` bytes: nothing is buffered for
    /// a body over the limit. Leaves `body` empty when no body is pending (after an
    /// empty record, say).
    ///
    /// # Errors
    /// [`Violation::RecordTooLarge`] when the remaining body is over `limit`, checked
    /// before reading any of it; [`Violation::Truncated`] when the stream ends inside
    /// it; the errors of [`RecvHalf::next_record`].
    pub async fn read_body(&mut self, body: &mut Vec<u8>, limit: u32) -> Result<()> {
        begin(&mut self.failed)?;
        body.clear();
        if let Some((header, remaining)) = self.decoder.body_in_progress() {
            if remaining > limit {
                return Err(Violation::RecordTooLarge {
                    record_type: header.record_type,
                    len: header.len,
                    limit,
                }
                .into());
            }
            // Within the caller's limit, so reserving it all up front is safe.
            body.reserve_exact(usize::try_from(remaining).unwrap_or(0));
            while let Some(chunk) = self.read_body_chunk_inner().await? {
                body.extend_from_slice(chunk);
            }
        }
        self.failed = false;
        Ok(())
    }

    /// Returns the next piece of the current record's body, as it arrives, or `None`
    /// once it is complete. For a receiver that streams bodies instead of buffering.
    ///
    /// # Errors
    /// As [`RecvHalf::read_body`], except there is no limit.
    pub async fn read_body_chunk(&mut self) -> Result<Option<&[u8]>> {
        begin(&mut self.failed)?;
        // Work out the range first and borrow the buffer after: returning a borrow
        // from inside the loop that refills the buffer would not borrow-check.
        let range = self.next_body_range().await?;
        self.failed = false;
        Ok(range.map(|(start, end)| &self.input[start..end]))
    }

    async fn read_body_chunk_inner(&mut self) -> Result<Option<&[u8]>> {
        let range = self.next_body_range().await?;
        Ok(range.map(|(start, end)| &self.input[start..end]))
    }

    /// Decodes the next piece of the current body; returns where it lies in
    /// `input`.
    async fn next_body_range(&mut self) -> Result<Option<(usize, usize)>> {
        if self.decoder.body_in_progress().is_none() {
            return Ok(None);
        }
        while self.plaintext_start == self.plaintext_end {
            // A body in progress: its memory is the caller's, reads are not limited.
            match self.fill_plaintext(None, false).await? {
                Fill::Message => {}
                Fill::End => return Err(Violation::Truncated(TruncatedAt::RecordBody).into()),
                Fill::Admit(_) | Fill::Released => unreachable!("no limit to admit"),
            }
        }
        let start = self.plaintext_start;
        let (event, used) = self
            .decoder
            .decode(&self.input[start..self.plaintext_end])?;
        self.plaintext_start += used;
        match event {
            RecordEvent::Body { .. } => Ok(Some((start, start + used))),
            // A body was in progress and the input is not empty: always a body chunk.
            RecordEvent::NeedMore | RecordEvent::Header(_) | RecordEvent::Rekey => Ok(None),
        }
    }

    /// For a client: reads the next reply, RESPONSE or ERROR, whose body may be at
    /// most `limit` bytes (at least [`MIN_RESPONSE_LIMIT`](crate::wire::MIN_RESPONSE_LIMIT)
    /// to accept every answer to a default-limit request). `None` on a clean end of
    /// stream. A client that knows the size of the request this reply answers
    /// should use [`RecvHalf::read_reply_to`], whose limit follows it.
    ///
    /// # Errors
    /// [`Refusal::PermissionDenied`] (as [`WireError::NotAllowed`](super::WireError::NotAllowed)) for an ERROR whose
    /// reason starts with `permission denied`: the server refused our key and is
    /// closing. The errors of [`RecvHalf::next_record`] and [`RecvHalf::read_body`].
    pub async fn read_reply(&mut self, limit: u32) -> Result<Option<Reply>> {
        self.read_reply_with(|_| limit).await
    }

    /// For a client: reads the reply to a REQUEST of `request_len` bytes. A
    /// RESPONSE may be at most [`response_limit`]`(request_len)` bytes (the longest
    /// uppercase of that many bytes), an ERROR at most
    /// [`MAX_ERROR_REASON_LEN`]: whatever limit the server has, a reply that fits
    /// what was asked is read, and one that does not is refused before it is
    /// buffered. `None` on a clean end of stream.
    ///
    /// # Errors
    /// As [`RecvHalf::read_reply`]; [`Violation::RecordTooLarge`] for a body over
    /// its limit.
    pub async fn read_reply_to(&mut self, request_len: usize) -> Result<Option<Reply>> {
        self.read_reply_with(|header| reply_limit(header.record_type, request_len))
            .await
    }

    /// For a pipelining client: reads the next reply, asking `limit` for its body's
    /// limit once its header has arrived and before any of its body is buffered.
    /// A client that writes requests from another task learns there which request
    /// the reply answers (typically [`reply_limit`] of that request's length). `None`
    /// on a clean end of stream, and then `limit` is not called.
    ///
    /// # Errors
    /// As [`RecvHalf::read_reply`].
    pub async fn read_reply_with<F>(&mut self, limit: F) -> Result<Option<Reply>>
    where
        F: FnOnce(&RecordHeader) -> u32,
    {
        let Some(header) = self.next_record().await? else {
            return Ok(None);
        };
        let limit = limit(&header);
        let mut body = Vec::new();
        self.read_body(&mut body, limit).await?;
        match header.record_type {
            RecordType::Response => Ok(Some(Reply::Response(body))),
            RecordType::Error => {
                let reason = match String::from_utf8(body) {
                    Ok(reason) => reason,
                    Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
                };
                if reason.starts_with(PERMISSION_DENIED_PREFIX) {
                    self.failed = true;
                    return Err(Refusal::PermissionDenied(reason).into());
                }
                Ok(Some(Reply::Error(reason)))
            }
            RecordType::Request => {
                self.failed = true;
                Err(Bug::WrongDirection {
                    record_type: RecordType::Request,
                    role: Role::Client,
                }
                .into())
            }
        }
    }

    /// Gives back the underlying reader, dropping whatever is buffered. A server that
    /// stops reading early (after a refusal) drains the raw stream with it, so that
    /// closing the socket with unread input does not make TCP reset the connection
    /// and destroy the ERROR it just sent.
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// Whether data that can be processed without waiting for the network is
    /// buffered: undecoded plaintext, or a whole transport message. A server flushes
    /// its replies when this is false, just before it would wait for more requests.
    pub fn has_buffered_input(&self) -> bool {
        self.plaintext_start < self.plaintext_end
            || matches!(
                decode_frame(&self.input[self.input_start..]),
                Ok(Decoded::Frame { .. }) | Err(_)
            )
    }

    /// Whether more input is likely at hand without waiting: buffered input
    /// ([`has_buffered_input`](Self::has_buffered_input)), or a last read from the
    /// stream that filled all the room it had, so that the kernel likely holds
    /// more. A server that flushes its replies only when this is false, and
    /// before any read that would wait, answers a pipelined burst in one write
    /// even when its reads end at message boundaries; an unpipelined request's
    /// read fills no buffer, so its reply is not held back by a read. Crate-only:
    /// a loop that simply awaits the next record, as the module's example does,
    /// must flush on `has_buffered_input` instead, or a reply held here would wait
    /// for the client's next request.
    pub(crate) fn expects_more_input(&self) -> bool {
        self.read_filled || self.has_buffered_input()
    }

    /// Frees the cipher's expanded key if its suite keeps one (AES-256-GCM on
    /// AWS-LC, about 650 bytes), for a session gone quiet: the next message builds
    /// it again. A server holding many sessions calls it on both halves of one
    /// that has waited a while (a wait for the next record may be dropped for
    /// it; see [`next_record`](Self::next_record)).
    pub fn release_expanded_key(&mut self) {
        self.key.release_expanded();
    }

    /// Whether the cipher's expanded key is kept now.
    #[cfg(test)]
    pub(crate) fn holds_expanded_key(&self) -> bool {
        self.key.holds_expanded()
    }

    /// How many bytes the input buffer holds allocated now: what a receiver that
    /// accounts for it (see [`next_record_within`](Self::next_record_within)) has
    /// to cover.
    pub fn input_capacity(&self) -> usize {
        self.input.capacity()
    }

    /// Whether the rest of the current record's body is already decrypted here, so
    /// that reading it cannot wait for the network (true between records).
    pub fn body_buffered(&self) -> bool {
        self.decoder
            .body_in_progress()
            .is_none_or(|(_, remaining)| {
                remaining as usize <= self.plaintext_end - self.plaintext_start
            })
    }

    /// The peer's REKEY record was just decoded, `used` bytes of it from the current
    /// plaintext: it must be the whole record and the plaintext's end. Then the
    /// peer's key changes, before its next message is opened.
    fn peer_rekeyed(&mut self, used: usize) -> Result<()> {
        let Some(rekey) = &mut self.rekey else {
            // Only a v2 decoder reports REKEY, and only v2 halves have one.
            return Err(Violation::UnknownRecordType {
                record_type: REKEY_RECORD[0],
                sender: self.decoder.sender(),
            }
            .into());
        };
        if used != RECORD_HEADER_LEN || self.plaintext_start != self.plaintext_end {
            return Err(Violation::RekeyNotLast.into());
        }
        self.key.rekey()?;
        rekey.rekeyed();
        Ok(())
    }

    /// Decrypts the next transport message in place if it is buffered whole, making
    /// it the current plaintext (`None`); else `Some` of how many more bytes it
    /// needs. Only called once the current plaintext is all decoded.
    fn open_buffered_message(&mut self) -> Result<Option<usize>> {
        let (payload_len, consumed) = match decode_frame(&self.input[self.input_start..])? {
            Decoded::Frame { payload, consumed } => (payload.len(), consumed),
            Decoded::Incomplete { needed } => return Ok(Some(needed)),
        };
        let start = self.input_start + FRAME_HEADER_LEN;
        let end = start + payload_len;
        let current = next_nonce(&mut self.nonce)?;
        let len = self
            .key
            .open_in_place(current, &mut self.input[start..end])?;
        if len == 0 {
            return Err(Violation::EmptyTransportMessage.into());
        }
        if let Some(rekey) = &mut self.rekey {
            // The previous message is all decoded: the decoder is where it ended.
            let at_boundary = self.decoder.at_record_boundary();
            rekey.opened(len, at_boundary, self.decoder.sender())?;
        }
        self.plaintext_start = start;
        self.plaintext_end = start + len;
        self.input_start += consumed;
        Ok(None)
    }

    /// Reads what the stream has into `input`: the one place a receive waits for
    /// the network. With `resumable` (a wait for the next record header), a
    /// caller may drop the wait and call again later, as a server does to release
    /// a quiet session's expanded keys: the half is whole here (every decrypted
    /// byte decoded, the decoder at a byte boundary of the stream), and a read
    /// either completes or takes nothing, so for the wait's duration the half is
    /// not marked as midway. Inside `read_body` it is: the caller's body buffer
    /// holds the part read so far.
    async fn read_more(&mut self, resumable: bool) -> Result<usize> {
        if resumable {
            self.failed = false;
        }
        let room = self.input.capacity() - self.input.len();
        let read = self.reader.read_buf(&mut self.input).await;
        self.failed = true;
        let read = read?;
        self.read_filled = read > 0 && read >= room;
        Ok(read)
    }

    /// Moves what is not yet decrypted to the front of the buffer, dropping what
    /// was: only once the current plaintext is all decoded (it goes with it).
    fn compact(&mut self) {
        #[cfg(test)]
        {
            self.compacted += self.input.len() - self.input_start;
        }
        self.input.drain(..self.input_start);
        self.input_start = 0;
        self.plaintext_start = 0;
        self.plaintext_end = 0;
    }

    /// Decrypts the next transport message in place, making it the current
    /// plaintext. Only called once the current plaintext is all decoded. Outside a
    /// record body the buffer stays within `allowance`, unless that is `None` (see
    /// [`next_record_within`](Self::next_record_within)). `resumable`: see
    /// [`read_more`](Self::read_more).
    async fn fill_plaintext(&mut self, allowance: Option<usize>, resumable: bool) -> Result<Fill> {
        loop {
            let needed = match self.open_buffered_message()? {
                None => return Ok(Fill::Message),
                Some(needed) => needed,
            };
            // Inside a body, bulk reads end anywhere in a frame, and moving that
            // partial frame to the front of the buffer after every read was the
            // server's largest copy of a bulk transfer (docs/BENCHMARKS.md, session
            // 7). While the rest of the frame fits in the room behind it, read into
            // that room instead: the buffer does not grow, and it is compacted
            // only once it is full.
            let partial = self.input.len() - self.input_start;
            if self.decoder.body_in_progress().is_some()
                && self.input_start > 0
                && partial > 0
                && self.input.capacity() - self.input.len() >= needed
            {
                self.plaintext_start = self.input_start;
                self.plaintext_end = self.input_start;
                if self.read_more(resumable).await? == 0 {
                    return Err(Violation::Truncated(TruncatedAt::Frame).into());
                }
                continue;
            }
            // About to wait for the network: compact, and drop big buffers if the
            // session may go idle here. Inside a record the rest of it is on its way,
            // so keep them: freeing and reallocating 64 KiB for every message of a
            // large body costs more than the copies it would save.
            self.compact();
            let body = self.decoder.body_in_progress();
            if self.decoder.at_record_boundary()
                && self.input.is_empty()
                && self.input.capacity() > IDLE_BUFFER_CAPACITY
            {
                self.input = Vec::new();
            }
            // Nothing buffered, between records: the caller's allowance is no
            // longer needed. (Inside a header cut short, the rest is on its way:
            // the buffer is kept, as inside a body.)
            if self.decoder.at_record_boundary()
                && self.input.is_empty()
                && allowance.is_some_and(|allowance| allowance > FREE_INPUT)
            {
                if self.input.capacity() > FREE_INPUT {
                    self.input = Vec::new();
                }
                return Ok(Fill::Released);
            }
            // Inside a large body the rest of it is on its way: ask for several
            // messages at once (never more than the body still to come, plus
            // the framing of its messages).
            let want = match body {
                Some((_, remaining)) => {
                    let remaining = usize::try_from(remaining).unwrap_or(usize::MAX);
                    let framing =
                        (remaining / MAX_PLAINTEXT_LEN + 1) * (FRAME_HEADER_LEN + TAG_LEN);
                    remaining.saturating_add(framing).clamp(MIN_READ, BULK_IO)
                }
                None => MIN_READ,
            };
            let additional = needed.max(want);
            if let (None, Some(allowance)) = (body, allowance) {
                // Outside a body the buffer is the caller's to account for: it
                // grows only within the allowance, and what a body left of it
                // beyond that is given back.
                let limit = allowance.max(FREE_INPUT);
                let required = self.input.len().saturating_add(needed);
                if required > limit {
                    if self.input.capacity() > FREE_INPUT && self.input.len() <= FREE_INPUT {
                        self.input.shrink_to(FREE_INPUT);
                    }
                    return Ok(Fill::Admit(required));
                }
                if self.input.capacity() > limit {
                    self.input.shrink_to(limit);
                }
                // The whole message at least; more (the next ones) if it fits.
                let target = self.input.len().saturating_add(additional).min(limit);
                if self.input.capacity() < target {
                    // Amortised growth, as `reserve`, but never past the limit.
                    let grown = (2 * self.input.capacity()).clamp(target, limit);
                    self.input.reserve_exact(grown - self.input.len());
                }
            } else {
                self.input.reserve(additional);
            }
            if self.read_more(resumable).await? == 0 {
                return match self.input.is_empty() {
                    true => Ok(Fill::End),
                    false => Err(Violation::Truncated(TruncatedAt::Frame).into()),
                };
            }
        }
    }
}

/// What [`RecvHalf::next_record_within`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextRecord {
    /// The next record's header, or `None` on a clean end of stream between
    /// records: what [`RecvHalf::next_record`] returns.
    Header(Option<RecordHeader>),
    /// To go on, the input buffer must grow to this many bytes (more than the
    /// allowance): call again with an allowance of at least this.
    Admit(usize),
    /// The input buffer is drained and freed (it holds at most [`FREE_INPUT`]
    /// bytes): the caller may give back its allowance and call again.
    Released,
}

/// What one call of `fill_plaintext` ended with.
enum Fill {
    /// A transport message is decrypted.
    Message,
    /// A clean end of stream at a frame boundary.
    End,
    /// As [`NextRecord::Admit`].
    Admit(usize),
    /// As [`NextRecord::Released`].
    Released,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::error::WireError;
    use crate::wire::handshake::tests::handshake_pair;
    use crate::wire::record::{encode_record, DEFAULT_REQUEST_LIMIT, MIN_RESPONSE_LIMIT};
    use tokio::io::AsyncWriteExt;
    use tokio::io::DuplexStream;

    type Halves = (
        RecvHalf<ReadHalf<DuplexStream>>,
        SendHalf<WriteHalf<DuplexStream>>,
    );

    /// A client and a server session over one duplex pipe.
    pub(super) async fn session_pair() -> (Halves, Halves) {
        let (client, client_io, server, server_io) = handshake_pair().await;
        (client.into_split(client_io), server.into_split(server_io))
    }

    fn violation<T: std::fmt::Debug>(result: Result<T>) -> Violation {
        match result {
            Err(WireError::PeerMisbehaved(violation)) => violation,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    /// Encrypts `plaintext` as the client's next transport message, bypassing the
    /// record layer, and writes it raw.
    async fn send_raw_message(send: &mut SendHalf<WriteHalf<DuplexStream>>, plaintext: &[u8]) {
        let mut message = plaintext.to_vec();
        let nonce = next_nonce(&mut send.nonce).unwrap();
        let tag = send.key.seal_in_place(nonce, &mut message).unwrap();
        message.extend_from_slice(&tag);
        let mut frame = Vec::new();
        crate::wire::frame::encode_frame(&message, &mut frame).unwrap();
        send.writer.write_all(&frame).await.unwrap();
        send.writer.flush().await.unwrap();
    }

    #[tokio::test]
    async fn requests_and_responses_round_trip() {
        let ((mut client_rx, mut client_tx), (mut server_rx, mut server_tx)) = session_pair().await;
        client_tx
            .write_record(RecordType::Request, "straße".as_bytes())
            .await
            .unwrap();
        client_tx
            .write_record(RecordType::Request, b"")
            .await
            .unwrap();
        client_tx.shutdown().await.unwrap();

        let mut body = Vec::new();
        let mut seen = Vec::new();
        while let Some(header) = server_rx.next_record().await.unwrap() {
            assert_eq!(header.record_type, RecordType::Request);
            server_rx
                .read_body(&mut body, DEFAULT_REQUEST_LIMIT)
                .await
                .unwrap();
            seen.push(body.clone());
            let upper = String::from_utf8(body.clone()).unwrap().to_uppercase();
            server_tx
                .write_record(RecordType::Response, upper.as_bytes())
                .await
                .unwrap();
        }
        assert_eq!(seen, [b"stra\xc3\x9fe".to_vec(), vec![]]);
        server_tx.shutdown().await.unwrap();

        let mut replies = Vec::new();
        while let Some(reply) = client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap() {
            replies.push(reply);
        }
        assert_eq!(
            replies,
            [
                Reply::Response(b"STRASSE".to_vec()),
                Reply::Response(Vec::new())
            ]
        );
    }

    #[tokio::test]
    async fn many_small_records_share_one_transport_message() {
        let ((_, mut client_tx), (mut server_rx, _)) = session_pair().await;
        for index in 0..100u32 {
            client_tx
                .write_record(RecordType::Request, &index.to_be_bytes())
                .await
                .unwrap();
        }
        assert_eq!(client_tx.nonce, 0, "nothing is sealed before flush");
        assert_eq!(client_tx.pending_len(), 100 * 9);
        client_tx.flush().await.unwrap();
        assert_eq!(client_tx.nonce, 1, "one transport message for 100 records");
        let mut body = Vec::new();
        for index in 0..100u32 {
            server_rx.next_record().await.unwrap().unwrap();
            server_rx.read_body(&mut body, 4).await.unwrap();
            assert_eq!(body, index.to_be_bytes());
        }
        assert_eq!(server_rx.nonce, 1);
    }

    #[tokio::test]
    async fn one_mebibyte_body_spans_messages_and_limit_is_inclusive() {
        let (client, client_io, server, server_io) = handshake_pair().await;
        let (_, mut client_tx) = client.into_split(client_io);
        let (mut server_rx, _) = server.into_split(server_io);
        let big: Vec<u8> = (0..DEFAULT_REQUEST_LIMIT)
            .map(|i| (i % 251) as u8)
            .collect();
        let writer = tokio::spawn(async move {
            client_tx
                .write_record(RecordType::Request, &big)
                .await
                .unwrap();
            // The server stops reading this one, so the writes may fail.
            let over = vec![b'x'; DEFAULT_REQUEST_LIMIT as usize + 1];
            let _ = client_tx.write_record(RecordType::Request, &over).await;
            let _ = client_tx.shutdown().await;
            big
        });
        let mut body = Vec::new();
        let header = server_rx.next_record().await.unwrap().unwrap();
        assert_eq!(header.len, DEFAULT_REQUEST_LIMIT);
        server_rx
            .read_body(&mut body, DEFAULT_REQUEST_LIMIT)
            .await
            .unwrap();
        let header = server_rx.next_record().await.unwrap().unwrap();
        assert_eq!(header.len, DEFAULT_REQUEST_LIMIT + 1);
        let before = server_rx.plaintext_end - server_rx.plaintext_start;
        assert_eq!(
            violation(
                server_rx
                    .read_body(&mut Vec::new(), DEFAULT_REQUEST_LIMIT)
                    .await
            ),
            Violation::RecordTooLarge {
                record_type: RecordType::Request,
                len: DEFAULT_REQUEST_LIMIT + 1,
                limit: DEFAULT_REQUEST_LIMIT
            }
        );
        assert_eq!(
            server_rx.plaintext_end - server_rx.plaintext_start,
            before,
            "nothing of the oversized body was consumed"
        );
        // Closing the connection lets the writer finish.
        drop(server_rx);
        assert_eq!(body, writer.await.unwrap());
    }

    #[tokio::test]
    async fn client_accepts_three_mebibyte_responses_streamed() {
        let (client, client_io, server, server_io) = handshake_pair().await;
        let (mut client_rx, _) = client.into_split(client_io);
        let (_, mut server_tx) = server.into_split(server_io);
        let writer = tokio::spawn(async move {
            let big = vec![b'A'; MIN_RESPONSE_LIMIT as usize];
            server_tx
                .write_record(RecordType::Response, &big)
                .await
                .unwrap();
            server_tx.shutdown().await.unwrap();
        });
        match client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap() {
            Some(Reply::Response(body)) => assert_eq!(body.len(), MIN_RESPONSE_LIMIT as usize),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap(),
            None
        );
        writer.await.unwrap();
        assert!(client_rx.input.capacity() <= IDLE_BUFFER_CAPACITY);
    }

    /// The reply to a REQUEST of N bytes may be up to 3N bytes, however large N is
    /// (an 8 MiB request to a server with `--max-request 8M`), and not one more;
    /// an ERROR gets its own small limit whatever the request.
    #[tokio::test]
    async fn reply_limits_follow_the_request_length() {
        const REQUEST: usize = 8 << 20;
        let (client, client_io, server, server_io) = handshake_pair().await;
        let (mut client_rx, _) = client.into_split(client_io);
        let (_, mut server_tx) = server.into_split(server_io);
        let writer = tokio::spawn(async move {
            // The largest uppercase of 8 MiB: U+0390 (2 bytes) becomes 6 bytes.
            let request = "\u{390}".repeat(REQUEST / 2);
            let upper = request.to_uppercase();
            assert_eq!(upper.len(), 3 * REQUEST);
            server_tx
                .write_record(RecordType::Response, upper.as_bytes())
                .await
                .unwrap();
            server_tx
                .write_record(RecordType::Error, &[b'e'; MAX_ERROR_REASON_LEN as usize])
                .await
                .unwrap();
            server_tx
                .write_record(RecordType::Response, &[b'A'; 31])
                .await
                .unwrap();
            server_tx.shutdown().await.unwrap();
        });
        match client_rx.read_reply_to(REQUEST).await.unwrap() {
            Some(Reply::Response(body)) => assert_eq!(body.len(), 3 * REQUEST),
            other => panic!("{other:?}"),
        }
        // A one-byte request's ERROR is not bound by 3 bytes.
        match client_rx.read_reply_to(1).await.unwrap() {
            Some(Reply::Error(reason)) => assert_eq!(reason.len(), MAX_ERROR_REASON_LEN as usize),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            violation(client_rx.read_reply_to(10).await),
            Violation::RecordTooLarge {
                record_type: RecordType::Response,
                len: 31,
                limit: 30
            }
        );
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn an_error_over_its_limit_is_refused_before_it_is_buffered() {
        let ((mut client_rx, _), (_, mut server_tx)) = session_pair().await;
        let writer = tokio::spawn(async move {
            let reason = vec![b'e'; MAX_ERROR_REASON_LEN as usize + 1];
            // The client stops reading: this write may fail, which is fine.
            let _ = server_tx.write_record(RecordType::Error, &reason).await;
            let _ = server_tx.shutdown().await;
        });
        assert_eq!(
            violation(client_rx.read_reply_to(usize::MAX).await),
            Violation::RecordTooLarge {
                record_type: RecordType::Error,
                len: MAX_ERROR_REASON_LEN + 1,
                limit: MAX_ERROR_REASON_LEN
            }
        );
        drop(client_rx);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn body_can_be_streamed_in_chunks() {
        let ((_, mut client_tx), (mut server_rx, _)) = session_pair().await;
        let body = vec![7u8; 100_000];
        let writer = async {
            client_tx
                .write_record(RecordType::Request, &body)
                .await
                .unwrap();
            client_tx.shutdown().await.unwrap();
        };
        let reader = async {
            let header = server_rx.next_record().await.unwrap().unwrap();
            let mut total = 0;
            let mut chunks = 0;
            while let Some(chunk) = server_rx.read_body_chunk().await.unwrap() {
                total += chunk.len();
                chunks += 1;
            }
            assert_eq!(total, header.len as usize);
            assert!(chunks >= 2);
            assert_eq!(server_rx.next_record().await.unwrap(), None);
        };
        tokio::join!(writer, reader);
    }

    /// Outside a body, a receiver with an allowance reads no more of a large
    /// message than its length prefix and a few hundred bytes until the allowance
    /// covers it, and says when it no longer needs it; inside a body it is not
    /// limited.
    #[tokio::test]
    async fn an_allowance_bounds_the_input_buffer_outside_a_body() {
        let ((_, mut client_tx), (mut server_rx, _)) = session_pair().await;
        let big = vec![b'a'; 100_000];
        let writer = async {
            client_tx
                .write_record(RecordType::Request, &big)
                .await
                .unwrap();
            client_tx
                .write_record(RecordType::Request, b"hi")
                .await
                .unwrap();
            client_tx.shutdown().await.unwrap();
        };
        let reader = async {
            let NextRecord::Admit(needed) = server_rx.next_record_within(0).await.unwrap() else {
                panic!("a full message is read only once admitted");
            };
            assert_eq!(needed, FRAME_HEADER_LEN + MAX_FRAME_LEN);
            assert!(server_rx.input_capacity() <= FREE_INPUT);
            // Asked again without more: the same answer, nothing more read.
            assert_eq!(
                server_rx.next_record_within(0).await.unwrap(),
                NextRecord::Admit(needed)
            );
            let header = server_rx.next_record_within(needed).await.unwrap();
            assert_eq!(
                header,
                NextRecord::Header(Some(RecordHeader {
                    record_type: RecordType::Request,
                    len: 100_000
                }))
            );
            assert!(server_rx.input_capacity() <= needed);
            let mut body = Vec::new();
            server_rx
                .read_body(&mut body, DEFAULT_REQUEST_LIMIT)
                .await
                .unwrap();
            assert!(body == big);
            let NextRecord::Header(Some(header)) =
                server_rx.next_record_within(needed).await.unwrap()
            else {
                panic!("the second request");
            };
            assert_eq!(header.len, 2);
            server_rx.read_body(&mut body, 10).await.unwrap();
            assert_eq!(body, b"hi");
            // Drained: the allowance can go, and the buffer with it.
            assert_eq!(
                server_rx.next_record_within(needed).await.unwrap(),
                NextRecord::Released
            );
            assert!(server_rx.input_capacity() <= FREE_INPUT);
            assert_eq!(
                server_rx.next_record_within(0).await.unwrap(),
                NextRecord::Header(None)
            );
        };
        tokio::join!(writer, reader);
    }

    #[tokio::test]
    async fn records_split_at_every_header_byte_reassemble() {
        // Put the record boundary at each offset of a transport message boundary by
        // sending the plaintext stream in raw messages of every possible cut.
        let mut stream = Vec::new();
        encode_record(RecordType::Request, b"abc", &mut stream).unwrap();
        encode_record(RecordType::Request, b"", &mut stream).unwrap();
        encode_record(RecordType::Request, b"defg", &mut stream).unwrap();
        for cut in 1..stream.len() {
            let ((_, mut client_tx), (mut server_rx, _)) = session_pair().await;
            send_raw_message(&mut client_tx, &stream[..cut]).await;
            send_raw_message(&mut client_tx, &stream[cut..]).await;
            client_tx.writer.shutdown().await.unwrap();
            let mut bodies = Vec::new();
            let mut body = Vec::new();
            while server_rx.next_record().await.unwrap().is_some() {
                server_rx.read_body(&mut body, 10).await.unwrap();
                bodies.push(body.clone());
            }
            assert_eq!(
                bodies,
                [b"abc".to_vec(), vec![], b"defg".to_vec()],
                "cut {cut}"
            );
        }
    }

    #[tokio::test]
    async fn truncation_inside_a_record_or_frame_is_reported() {
        let mut stream = Vec::new();
        encode_record(RecordType::Request, b"hello", &mut stream).unwrap();
        for (cut, at) in [(3, TruncatedAt::RecordHeader), (7, TruncatedAt::RecordBody)] {
            let ((_, mut client_tx), (mut server_rx, _)) = session_pair().await;
            send_raw_message(&mut client_tx, &stream[..cut]).await;
            client_tx.writer.shutdown().await.unwrap();
            let result = async {
                while server_rx.next_record().await?.is_some() {
                    server_rx.read_body(&mut Vec::new(), 10).await?;
                }
                Ok(())
            }
            .await;
            assert_eq!(violation(result), Violation::Truncated(at));
        }
        // A frame cut short.
        let ((_, mut client_tx), (mut server_rx, _)) = session_pair().await;
        client_tx.writer.write_all(&[0, 40, 1, 2, 3]).await.unwrap();
        client_tx.writer.shutdown().await.unwrap();
        assert_eq!(
            violation(server_rx.next_record().await),
            Violation::Truncated(TruncatedAt::Frame)
        );
    }

    #[tokio::test]
    async fn complete_records_before_a_truncation_are_delivered() {
        let ((_, mut client_tx), (mut server_rx, _)) = session_pair().await;
        let mut stream = Vec::new();
        encode_record(RecordType::Request, b"whole", &mut stream).unwrap();
        encode_record(RecordType::Request, b"partial", &mut stream).unwrap();
        send_raw_message(&mut client_tx, &stream[..stream.len() - 2]).await;
        client_tx.writer.shutdown().await.unwrap();
        let mut body = Vec::new();
        server_rx.next_record().await.unwrap().unwrap();
        server_rx.read_body(&mut body, 10).await.unwrap();
        assert_eq!(body, b"whole");
        server_rx.next_record().await.unwrap().unwrap();
        assert_eq!(
            violation(server_rx.read_body(&mut body, 10).await),
            Violation::Truncated(TruncatedAt::RecordBody)
        );
    }

    #[tokio::test]
    async fn flipped_ciphertext_bit_is_a_fatal_decrypt_failure() {
        let ((_, mut client_tx), (mut server_rx, _)) = session_pair().await;
        client_tx
            .write_record(RecordType::Request, b"hi")
            .await
            .unwrap();
        client_tx.seal().unwrap();
        let mut frame = std::mem::take(&mut client_tx.output);
        frame[5] ^= 0x01;
        client_tx.writer.write_all(&frame).await.unwrap();
        client_tx.writer.flush().await.unwrap();
        assert_eq!(
            violation(server_rx.next_record().await),
            Violation::TransportDecrypt
        );
        assert!(matches!(
            server_rx.next_record().await,
            Err(WireError::Internal(Bug::UsedAfterFailure))
        ));
    }

    #[tokio::test]
    async fn empty_plaintext_message_is_a_violation() {
        let ((_, mut client_tx), (mut server_rx, _)) = session_pair().await;
        send_raw_message(&mut client_tx, b"").await;
        assert_eq!(
            violation(server_rx.next_record().await),
            Violation::EmptyTransportMessage
        );
    }

    #[tokio::test]
    async fn zero_length_frame_is_a_violation() {
        let ((_, mut client_tx), (mut server_rx, _)) = session_pair().await;
        client_tx.writer.write_all(&[0, 0]).await.unwrap();
        assert_eq!(
            violation(server_rx.next_record().await),
            Violation::ZeroLengthFrame
        );
    }

    #[tokio::test]
    async fn wrong_direction_record_types_are_unknown() {
        let ((mut client_rx, mut client_tx), (mut server_rx, mut server_tx)) = session_pair().await;
        // The server receiving a RESPONSE from the client.
        send_raw_message(&mut client_tx, &[2, 0, 0, 0, 0]).await;
        assert_eq!(
            violation(server_rx.next_record().await),
            Violation::UnknownRecordType {
                record_type: 2,
                sender: Role::Client
            }
        );
        // The client receiving a REQUEST from the server.
        let mut message = vec![1, 0, 0, 0, 0];
        let tag = server_tx.key.seal_in_place(0, &mut message).unwrap();
        message.extend_from_slice(&tag);
        let mut frame = Vec::new();
        crate::wire::frame::encode_frame(&message, &mut frame).unwrap();
        server_tx.writer.write_all(&frame).await.unwrap();
        assert_eq!(
            violation(client_rx.next_record().await),
            Violation::UnknownRecordType {
                record_type: 1,
                sender: Role::Server
            }
        );
        // And our own sending side refuses to send the other side's types.
        assert!(matches!(
            client_tx.write_record(RecordType::Response, b"").await,
            Err(WireError::Internal(Bug::WrongDirection { .. }))
        ));
    }

    #[tokio::test]
    async fn unknown_record_type_is_a_violation() {
        let ((_, mut client_tx), (mut server_rx, _)) = session_pair().await;
        send_raw_message(&mut client_tx, &[9]).await;
        assert_eq!(
            violation(server_rx.next_record().await),
            Violation::UnknownRecordType {
                record_type: 9,
                sender: Role::Client
            }
        );
    }

    #[tokio::test]
    async fn permission_denied_error_becomes_a_refusal() {
        let ((mut client_rx, _), (_, mut server_tx)) = session_pair().await;
        server_tx
            .write_record(RecordType::Error, b"not utf-8 \xff")
            .await
            .unwrap();
        server_tx
            .write_record(RecordType::Error, b"permission denied: key SHA256:x")
            .await
            .unwrap();
        server_tx.shutdown().await.unwrap();
        assert_eq!(
            client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap(),
            Some(Reply::Error("not utf-8 \u{fffd}".into()))
        );
        match client_rx.read_reply(MIN_RESPONSE_LIMIT).await {
            Err(WireError::NotAllowed(Refusal::PermissionDenied(reason))) => {
                assert_eq!(reason, "permission denied: key SHA256:x");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn pipelined_client_halves_run_in_two_tasks() {
        let ((mut client_rx, mut client_tx), (mut server_rx, mut server_tx)) = session_pair().await;
        const COUNT: usize = 2000;
        let writer = tokio::spawn(async move {
            for index in 0..COUNT {
                let request = format!("request {index}");
                client_tx
                    .write_record(RecordType::Request, request.as_bytes())
                    .await
                    .unwrap();
            }
            client_tx.shutdown().await.unwrap();
        });
        let server = tokio::spawn(async move {
            let mut body = Vec::new();
            while server_rx.next_record().await.unwrap().is_some() {
                server_rx
                    .read_body(&mut body, DEFAULT_REQUEST_LIMIT)
                    .await
                    .unwrap();
                body.make_ascii_uppercase();
                server_tx
                    .write_record(RecordType::Response, &body)
                    .await
                    .unwrap();
                if !server_rx.has_buffered_input() {
                    server_tx.flush().await.unwrap();
                }
            }
            server_tx.shutdown().await.unwrap();
        });
        for index in 0..COUNT {
            let reply = client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap();
            assert_eq!(
                reply,
                Some(Reply::Response(format!("REQUEST {index}").into_bytes()))
            );
        }
        assert_eq!(
            client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap(),
            None
        );
        writer.await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn idle_halves_release_their_big_buffers() {
        let ((mut client_rx, mut client_tx), (mut server_rx, mut server_tx)) = session_pair().await;
        let big = vec![b'a'; 200_000];
        let writer = async {
            client_tx
                .write_record(RecordType::Request, &big)
                .await
                .unwrap();
            client_tx.flush().await.unwrap();
        };
        let reader = async {
            server_rx.next_record().await.unwrap().unwrap();
            let mut body = Vec::new();
            server_rx
                .read_body(&mut body, DEFAULT_REQUEST_LIMIT)
                .await
                .unwrap();
            server_tx
                .write_record(RecordType::Response, b"ok")
                .await
                .unwrap();
            server_tx.flush().await.unwrap();
        };
        tokio::join!(writer, reader);
        assert!(client_tx.output.capacity() <= IDLE_BUFFER_CAPACITY);
        // The server's receive half lets go of its buffers once it waits again.
        client_rx.read_reply(10).await.unwrap().unwrap();
        client_tx.shutdown().await.unwrap();
        assert_eq!(server_rx.next_record().await.unwrap(), None);
        assert!(server_rx.input.capacity() <= IDLE_BUFFER_CAPACITY);
    }

    /// Records the size of every write and every read it serves, over a pipe.
    struct Recording<S> {
        inner: S,
        sizes: Vec<usize>,
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for Recording<S> {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let this = &mut *self;
            let poll = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
            if let std::task::Poll::Ready(Ok(written)) = poll {
                this.sizes.push(written);
            }
            poll
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Recording<S> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let this = &mut *self;
            let before = buf.filled().len();
            let poll = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
            if let std::task::Poll::Ready(Ok(())) = poll {
                this.sizes.push(buf.filled().len() - before);
            }
            poll
        }
    }

    /// A large record goes out in writes of at least BULK_IO bytes (but the last),
    /// not one per 64 KiB transport message, and comes in through reads that take
    /// several messages at once into a bounded buffer; every byte arrives.
    #[tokio::test]
    async fn a_large_record_moves_in_bulk_reads_and_writes() {
        let (client, client_io, server, server_io) = handshake_pair().await;
        // The pipe holds a whole record, so the reader sees what the writer wrote
        // in the sizes it wrote them.
        drop((client_io, server_io));
        let (client_io, server_io) = tokio::io::duplex(4 << 20);
        let (client_read, client_write) = tokio::io::split(client_io);
        let (server_read, server_write) = tokio::io::split(server_io);
        let (_client_rx, mut client_tx) = client.into_halves(
            client_read,
            Recording {
                inner: client_write,
                sizes: Vec::new(),
            },
        );
        let (mut server_rx, _server_tx) = server.into_halves(
            Recording {
                inner: server_read,
                sizes: Vec::new(),
            },
            server_write,
        );
        let body: Vec<u8> = (0..DEFAULT_REQUEST_LIMIT)
            .map(|i| (i % 251) as u8)
            .collect();
        client_tx
            .write_record(RecordType::Request, &body)
            .await
            .unwrap();
        client_tx.flush().await.unwrap();
        let writes = &client_tx.writer.sizes;
        let (last, full) = writes.split_last().unwrap();
        assert!(full.iter().all(|&size| size >= BULK_IO), "{writes:?}");
        assert!(*last > 0);
        assert!(writes.len() <= body.len() / BULK_IO + 1, "{writes:?}");

        let header = server_rx.next_record().await.unwrap().unwrap();
        assert_eq!(header.len, DEFAULT_REQUEST_LIMIT);
        let mut received = Vec::new();
        server_rx
            .read_body(&mut received, DEFAULT_REQUEST_LIMIT)
            .await
            .unwrap();
        assert!(received == body, "the body arrived changed");
        let reads = &server_rx.reader.sizes;
        // The header's read is small; the body's take several messages each (as
        // much as the buffer holds), and the buffer stays within twice BULK_IO.
        assert!(reads.len() <= body.len() / BULK_IO + 3, "{reads:?}");
        assert!(
            server_rx.input.capacity() <= 2 * (BULK_IO + FRAME_HEADER_LEN + MAX_FRAME_LEN),
            "{}",
            server_rx.input.capacity()
        );
    }

    /// Serves each read at most `limit` bytes, as a socket with little queued does.
    struct Trickle<S> {
        inner: S,
        limit: usize,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Trickle<S> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let limit = self.limit.min(buf.remaining());
            let mut part = tokio::io::ReadBuf::new(buf.initialize_unfilled_to(limit));
            let poll = std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut part);
            let filled = part.filled().len();
            buf.advance(filled);
            poll
        }
    }

    /// Reads that end inside a frame (40,000 bytes at a time: almost every one)
    /// go on behind the partial frame while it fits: of a 1 MiB body, only the
    /// partial frames of the reads that fill the buffer are moved to its front
    /// (207,958 bytes; moving one after every read was 833,685), and the buffer
    /// stays within the bound of bulk reads.
    #[tokio::test]
    async fn reads_ending_inside_a_frame_move_little_of_a_large_body() {
        let (client, client_io, server, server_io) = handshake_pair().await;
        drop((client_io, server_io));
        let (client_io, server_io) = tokio::io::duplex(4 << 20);
        let (client_read, client_write) = tokio::io::split(client_io);
        let (server_read, server_write) = tokio::io::split(server_io);
        let (_client_rx, mut client_tx) = client.into_halves(client_read, client_write);
        let reader = Trickle {
            inner: server_read,
            limit: 40_000,
        };
        let (mut server_rx, _server_tx) = server.into_halves(reader, server_write);
        let body: Vec<u8> = (0..DEFAULT_REQUEST_LIMIT)
            .map(|i| (i % 253) as u8)
            .collect();
        client_tx
            .write_record(RecordType::Request, &body)
            .await
            .unwrap();
        client_tx.flush().await.unwrap();
        let header = server_rx.next_record().await.unwrap().unwrap();
        assert_eq!(header.len, DEFAULT_REQUEST_LIMIT);
        let mut received = Vec::new();
        server_rx
            .read_body(&mut received, DEFAULT_REQUEST_LIMIT)
            .await
            .unwrap();
        assert!(received == body, "the body arrived changed");
        assert!(
            server_rx.compacted < body.len() / 4,
            "{} bytes moved for a {}-byte body",
            server_rx.compacted,
            body.len()
        );
        assert!(
            server_rx.input.capacity() <= 2 * (BULK_IO + FRAME_HEADER_LEN + MAX_FRAME_LEN),
            "{}",
            server_rx.input.capacity()
        );
    }
}

#[cfg(test)]
#[path = "session_rekey_tests.rs"]
pub(crate) mod rekey_tests;
