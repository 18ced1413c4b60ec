//! Clients that do what no well-behaved one does, to show a server's
//! timeouts and caps hold: a slowloris that trickles its request a byte
//! at a time, and a raw HTTP/2 client that ignores the stream limit a
//! server advertises.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `first`, then `trickle` one byte every 200 ms, until the server
/// closes the connection; returns how long that took (at most `give_up`).
pub async fn closed_after(
    addr: SocketAddr,
    first: &[u8],
    trickle: &[u8],
    give_up: Duration,
) -> Duration {
    let started = Instant::now();
    let conn = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        // EOF or a reset: either way the server is done with us.
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        started.elapsed()
    });
    wr.write_all(first).await.unwrap();
    for b in trickle.iter().cycle() {
        if reader.is_finished() || started.elapsed() > give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if wr.write_all(&[*b]).await.is_err() {
            break;
        }
    }
    tokio::time::timeout(Duration::from_secs(2), reader)
        .await
        .map(|r| r.unwrap())
        .unwrap_or(give_up)
}

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
pub const REFUSED_STREAM: u32 = 0x7;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// An HTTP/2 frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK header block of literal fields, no indexing, no Huffman.
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        out.push(name.len() as u8);
        out.extend(name.as_bytes());
        out.push(value.len() as u8);
        out.extend(value.as_bytes());
    }
    out
}

/// Reads one frame: (type, flags, stream, payload).
pub async fn read_frame(conn: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    conn.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    conn.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// Opens a plaintext HTTP/2 connection the way a client must: preface,
/// settings, and an acknowledgement of the server's settings.
pub async fn h2_handshake(addr: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(PREFACE).await.unwrap();
    conn.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    loop {
        let (kind, flags, _, _) =
            tokio::time::timeout(Duration::from_secs(5), read_frame(&mut conn))
                .await
                .expect("the server's settings")
                .expect("a frame");
        if kind == SETTINGS && flags & ACK == 0 {
            break;
        }
    }
    conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    conn
}

/// What a server answered a stream flood with.
#[derive(Debug)]
pub struct Flood {
    /// Streams refused (RST_STREAM REFUSED_STREAM).
    pub refused: usize,
    /// The GOAWAY's error code, if the server closed the connection.
    pub goaway: Option<u32>,
}

/// Opens `streams` gRPC calls of `path` on one plaintext connection and
/// leaves them open (no END_STREAM), as a client ignoring the server's
/// advertised stream limit would; reads what the server answers for up to
/// 8 s, or until it closes the connection.
pub async fn stream_flood(addr: SocketAddr, path: &str, streams: u32) -> Flood {
    let mut conn = h2_handshake(addr).await;
    let block = header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "server"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]);
    let mut flood = Vec::new();
    for i in 0..streams {
        flood.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, &block));
    }
    conn.write_all(&flood).await.unwrap();
    let mut out = Flood {
        refused: 0,
        goaway: None,
    };
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        let Ok(Some((kind, _, _, payload))) =
            tokio::time::timeout(Duration::from_secs(2), read_frame(&mut conn)).await
        else {
            break;
        };
        match kind {
            RST_STREAM
                if u32::from_be_bytes(payload[..4].try_into().unwrap()) == REFUSED_STREAM =>
            {
                out.refused += 1;
            }
            GOAWAY => {
                out.goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                break;
            }
            _ => {}
        }
    }
    out
}
