//! `vote-store`: counters behind an opaque, server-speaks-first TCP line
//! protocol, so the mesh carries one edge it cannot parse.
//!
//! ```text
//! S: VOTE-STORE ready
//! C: INCR :crab:        S: 42
//! C: GET :crab:         S: 42
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[arg(long, default_value = "127.0.0.1:6379")]
    listen: SocketAddr,
}

pub(crate) const BANNER: &str = "VOTE-STORE ready";
/// Lines longer than this end the connection: nothing legitimate is.
const MAX_LINE: usize = 256;

type Counters = Arc<Mutex<HashMap<String, u64>>>;

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %args.listen, "vote-store serving TCP");
    let counters = Counters::default();
    loop {
        let (stream, peer) = listener.accept().await?;
        let counters = counters.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(stream, counters).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

async fn serve(stream: TcpStream, counters: Counters) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{BANNER}\n").as_bytes()).await?;
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE {
            write.write_all(b"ERR line too long\n").await?;
            return Ok(());
        }
        let reply = answer(line.trim_end(), &counters);
        write.write_all(reply.as_bytes()).await?;
    }
}

fn answer(command: &str, counters: &Counters) -> String {
    let mut counters = counters.lock().expect("counters lock");
    match command.split_once(' ') {
        Some(("INCR", key)) => {
            let n = counters.entry(key.to_string()).or_default();
            *n += 1;
            format!("{n}\n")
        }
        Some(("GET", key)) => format!("{}\n", counters.get(key).copied().unwrap_or(0)),
        _ => "ERR unknown command\n".to_string(),
    }
}
