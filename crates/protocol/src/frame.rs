//! Length-prefixed framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.
//!
//! The length is checked before any payload is read, so an oversized or garbage frame costs the
//! reader nothing but the four header bytes.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{self, Read, Write};

/// The largest frame payload accepted in either direction (1 MiB, SPEC §5.7).
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// The largest first frame (the hello) a daemon reads from a connection that has not said
/// hello yet: a hello is a few hundred bytes, and an unauthenticated peer must not make the
/// daemon hold a megabyte per connection.
pub const MAX_HELLO_LEN: usize = 8 * 1024;

/// The buffer each end of a connection reads and writes frames through. Frames are small (a
/// request, an answer, an event); a larger one is read or written past the buffer. Every
/// connection holds one each way, and an in-process team has a few connections per agent, so
/// it is kept small: 64 KiB buffers were ~0.4 MiB of an in-process team's daemon.
pub const IO_BUFFER: usize = 16 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection cleanly between frames.
    #[error("connection closed")]
    Closed,
    /// The header announced more than [`MAX_FRAME_LEN`] bytes.
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    TooLarge(usize),
    /// The header announced more than a smaller limit the reader set (e.g. [`MAX_HELLO_LEN`]).
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    OverLimit {
        /// The announced payload length.
        len: usize,
        /// The reader's limit.
        max: usize,
    },
    /// The header announced an empty frame, which is never valid JSON.
    #[error("empty frame")]
    Empty,
    /// The connection ended in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The payload was not the JSON this side expected.
    #[error("invalid frame payload: {0}")]
    Json(#[from] serde_json::Error),
    /// Any other I/O failure.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Encodes one value as a complete frame (header and payload) into `out`.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *out, value)?;
    let len = out.len() - start - 4;
    if len > MAX_FRAME_LEN {
        out.truncate(start);
        return Err(FrameError::TooLarge(len));
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Encodes one value as a complete frame.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(128);
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Checks a frame header and returns the payload length it announces.
pub fn check_header(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    Ok(len)
}

/// Reads one raw frame payload from a blocking reader.
pub fn read_raw(reader: &mut impl Read) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    read_exact_or_closed(reader, &mut header)?;
    let len = check_header(header)?;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).map_err(truncated)?;
    Ok(payload)
}

/// Reads and decodes one frame from a blocking reader.
pub fn read<T: DeserializeOwned>(reader: &mut impl Read) -> Result<T, FrameError> {
    let payload = read_raw(reader)?;
    Ok(serde_json::from_slice(&payload)?)
}

/// Encodes and writes one frame to a blocking writer (the caller flushes).
pub fn write<T: Serialize>(writer: &mut impl Write, value: &T) -> Result<(), FrameError> {
    writer.write_all(&encode(value)?)?;
    Ok(())
}

fn read_exact_or_closed(reader: &mut impl Read, buf: &mut [u8]) -> Result<(), FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn truncated(e: io::Error) -> FrameError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        e.into()
    }
}

/// Async framing over tokio streams, used by the daemon and the async clients.
#[cfg(feature = "tokio")]
pub mod tokio_io {
    use super::{FrameError, MAX_FRAME_LEN, check_header, truncated};
    use tokio::io::{AsyncRead, AsyncReadExt};

    /// Reads one raw frame payload; `Closed` when the peer hung up between frames.
    pub async fn read_raw<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, FrameError> {
        read_raw_within(reader, MAX_FRAME_LEN).await
    }

    /// Reads one raw frame payload of at most `max` bytes (never more than [`MAX_FRAME_LEN`]):
    /// a header announcing more is refused with [`FrameError::OverLimit`] before any payload
    /// byte is read or allocated.
    pub async fn read_raw_within<R: AsyncRead + Unpin>(
        reader: &mut R,
        max: usize,
    ) -> Result<Vec<u8>, FrameError> {
        let mut header = [0u8; 4];
        let mut filled = 0;
        while filled < 4 {
            match reader.read(&mut header[filled..]).await {
                Ok(0) if filled == 0 => return Err(FrameError::Closed),
                Ok(0) => return Err(FrameError::Truncated),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let len = check_header(header)?;
        if len > max {
            return Err(FrameError::OverLimit { len, max });
        }
        let mut payload = vec![0u8; len];
        reader.read_exact(&mut payload).await.map_err(truncated)?;
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes = encode(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(&bytes[..4], &(7u32).to_be_bytes());
        let v: serde_json::Value = read(&mut &bytes[..]).unwrap();
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn oversized_header_is_refused_before_reading() {
        let header = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
        let err = read_raw(&mut &header[..]).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(n) if n == MAX_FRAME_LEN + 1));
    }

    #[test]
    fn truncated_and_closed_are_told_apart() {
        assert!(matches!(read_raw(&mut &[][..]), Err(FrameError::Closed)));
        assert!(matches!(
            read_raw(&mut &[0, 0][..]),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_raw(&mut &[0, 0, 0, 5, b'{'][..]),
            Err(FrameError::Truncated)
        ));
        assert!(matches!(
            read_raw(&mut &[0, 0, 0, 0][..]),
            Err(FrameError::Empty)
        ));
    }

    #[test]
    fn encoding_refuses_oversized_values() {
        let big = "x".repeat(MAX_FRAME_LEN + 10);
        assert!(matches!(encode(&big), Err(FrameError::TooLarge(_))));
    }
}
