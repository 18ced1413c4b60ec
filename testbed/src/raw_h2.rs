//! An HTTP/2 client that writes frames by hand, to do what well-behaved
//! clients never do: open more streams than allowed, reset them at once,
//! send malformed ones, ignore PINGs.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const SETTINGS: u8 = 0x4;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const GOAWAY: u8 = 0x7;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;

pub const CANCEL: u32 = 0x8;
pub const REFUSED_STREAM: u32 = 0x7;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// SETTINGS_MAX_CONCURRENT_STREAMS.
const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// A frame as read: type, flags, stream, payload.
pub type Frame = (u8, u8, u32, Vec<u8>);

pub struct RawH2 {
    s: TcpStream,
}

impl RawH2 {
    /// The preface and an empty SETTINGS frame.
    pub async fn connect(addr: SocketAddr) -> Self {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(PREFACE).await.unwrap();
        let mut me = Self { s };
        me.write(&frame(SETTINGS, 0, 0, &[])).await;
        me
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        // The server may already have closed on an earlier frame.
        let _ = self.s.write_all(bytes).await;
    }

    /// The next frame, or `None` once the connection is closed.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        let mut head = [0u8; 9];
        self.s.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0; len];
        self.s.read_exact(&mut payload).await.ok()?;
        Some((head[3], head[4], stream, payload))
    }

    /// Reads the server's SETTINGS, acknowledges them (so they are in force)
    /// and returns the SETTINGS_MAX_CONCURRENT_STREAMS it announced.
    pub async fn handshake(&mut self) -> Option<u32> {
        let settings = self
            .until(Duration::from_secs(10), |(kind, flags, _, payload)| {
                (*kind == SETTINGS && flags & ACK == 0).then(|| payload.clone())
            })
            .await
            .expect("the server's SETTINGS");
        self.write(&frame(SETTINGS, ACK, 0, &[])).await;
        settings.chunks_exact(6).find_map(|s| {
            (u16::from_be_bytes([s[0], s[1]]) == MAX_CONCURRENT_STREAMS)
                .then(|| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
        })
    }

    /// Reads frames until `f` picks one, the connection closes, or `within`
    /// passes; never answers a PING.
    pub async fn until<T>(
        &mut self,
        within: Duration,
        mut f: impl FnMut(&Frame) -> Option<T>,
    ) -> Option<T> {
        let read = async {
            while let Some(frame) = self.read_frame().await {
                if let Some(t) = f(&frame) {
                    return Some(t);
                }
            }
            None
        };
        tokio::time::timeout(within, read).await.ok().flatten()
    }

    /// The error code of the GOAWAY the server sends within `within`.
    pub async fn goaway(&mut self, within: Duration) -> Option<u32> {
        self.until(within, |(kind, _, _, payload)| {
            (*kind == GOAWAY).then(|| u32::from_be_bytes(payload[4..8].try_into().unwrap()))
        })
        .await
    }

    /// Waits until the server closes the connection; false if it is still
    /// open after `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let read = async { while self.read_frame().await.is_some() {} };
        tokio::time::timeout(within, read).await.is_ok()
    }
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A header block of literal fields without indexing (HPACK, RFC 7541
/// 6.2.2), names and values shorter than 127 bytes.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00);
        for s in [name, value] {
            block.push(u8::try_from(s.len()).ok().filter(|n| *n < 127).unwrap());
            block.extend_from_slice(s.as_bytes());
        }
    }
    block
}

/// HEADERS opening stream `id` with `fields`, the request body left open.
pub fn open_stream(id: u32, fields: &[(&str, &str)]) -> Vec<u8> {
    frame(HEADERS, END_HEADERS, id, &header_block(fields))
}

pub fn reset(id: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, id, &code.to_be_bytes())
}

/// The code of a RST_STREAM frame.
pub fn reset_code(frame: &Frame) -> Option<u32> {
    let (kind, _, _, payload) = frame;
    (*kind == RST_STREAM).then(|| u32::from_be_bytes(payload[..4].try_into().unwrap()))
}
