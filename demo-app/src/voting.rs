//! `voting`: records votes in vote-store, with a known failure share and a
//! slow path, so the mesh has something to show.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::proto::voting_server::{Voting, VotingServer};
use crate::proto::{ResultsRequest, ResultsResponse, VoteRequest, VoteResponse, VotingResult};
use crate::random::Random;
use crate::vote_store::BANNER;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where vote-store is dialed (its address, or the local proxy's TCP
    /// route to it)
    #[arg(long, default_value = "127.0.0.1:6379")]
    vote_store: String,
    /// Share of Vote calls that fail with UNAVAILABLE
    #[arg(long, default_value_t = 0.1)]
    failure_rate: f64,
    /// Delay added to every Vote call (a slower version of voting)
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Votes for this emoji are slow
    #[arg(long, default_value = ":doughnut:")]
    slow_emoji: String,
    /// Delay of a slow vote, lower bound
    #[arg(long, default_value_t = 150)]
    slow_min_ms: u64,
    /// Delay of a slow vote, upper bound
    #[arg(long, default_value_t = 350)]
    slow_max_ms: u64,
}

struct Service {
    args: Args,
    random: Random,
    store: Mutex<Option<StoreConn>>,
    tallies: Mutex<HashMap<String, u64>>,
}

/// One kept-alive connection to vote-store, past its banner.
struct StoreConn {
    stream: BufReader<TcpStream>,
}

impl StoreConn {
    async fn open(addr: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot reach vote-store at {addr}"))?;
        let mut stream = BufReader::new(stream);
        let mut banner = String::new();
        stream.read_line(&mut banner).await?;
        anyhow::ensure!(
            banner.trim_end() == BANNER,
            "unexpected vote-store banner {banner:?}"
        );
        Ok(Self { stream })
    }

    async fn incr(&mut self, key: &str) -> anyhow::Result<u64> {
        self.stream
            .get_mut()
            .write_all(format!("INCR {key}\n").as_bytes())
            .await?;
        let mut reply = String::new();
        anyhow::ensure!(
            self.stream.read_line(&mut reply).await? > 0,
            "vote-store closed the connection"
        );
        reply
            .trim_end()
            .parse()
            .with_context(|| format!("bad vote-store reply {reply:?}"))
    }
}

impl Service {
    /// Counts a vote in vote-store, reconnecting once if the kept-alive
    /// connection went stale.
    async fn record(&self, key: &str) -> anyhow::Result<u64> {
        let mut conn = self.store.lock().await;
        for attempt in 0..2 {
            if conn.is_none() {
                *conn = Some(StoreConn::open(&self.args.vote_store).await?);
            }
            match conn.as_mut().expect("connected above").incr(key).await {
                Ok(n) => return Ok(n),
                Err(e) if attempt == 0 => {
                    tracing::debug!("vote-store connection lost, reconnecting: {e:#}");
                    *conn = None;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the second attempt returns")
    }
}

#[tonic::async_trait]
impl Voting for Arc<Service> {
    async fn vote(&self, request: Request<VoteRequest>) -> Result<Response<VoteResponse>, Status> {
        let shortcode = request.into_inner().shortcode;
        if self.args.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.args.delay_ms)).await;
        }
        if self.random.chance(self.args.failure_rate) {
            return Err(Status::unavailable("injected failure (--failure-rate)"));
        }
        if shortcode == self.args.slow_emoji {
            let ms = self
                .random
                .between(self.args.slow_min_ms, self.args.slow_max_ms);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let votes = self.record(&shortcode).await.map_err(|e| {
            tracing::warn!("{e:#}");
            Status::unavailable(format!("{e:#}"))
        })?;
        self.tallies.lock().await.insert(shortcode, votes);
        Ok(Response::new(VoteResponse { votes }))
    }

    async fn results(
        &self,
        _: Request<ResultsRequest>,
    ) -> Result<Response<ResultsResponse>, Status> {
        let mut results: Vec<VotingResult> = self
            .tallies
            .lock()
            .await
            .iter()
            .map(|(shortcode, &votes)| VotingResult {
                shortcode: shortcode.clone(),
                votes,
            })
            .collect();
        results.sort_by(|a, b| b.votes.cmp(&a.votes).then(a.shortcode.cmp(&b.shortcode)));
        Ok(Response::new(ResultsResponse { results }))
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.failure_rate),
        "--failure-rate must be between 0 and 1"
    );
    anyhow::ensure!(
        args.slow_min_ms <= args.slow_max_ms,
        "--slow-min-ms must not exceed --slow-max-ms"
    );
    let listen = args.listen;
    let service = Arc::new(Service {
        args,
        random: Random::from_time(),
        store: Mutex::new(None),
        tallies: Mutex::default(),
    });
    tracing::info!(addr = %listen, "voting serving gRPC");
    tonic::transport::Server::builder()
        .add_service(VotingServer::new(service))
        .serve(listen)
        .await?;
    Ok(())
}
