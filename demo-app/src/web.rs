//! `web`: the HTTP/1.1 front end. A page and a small JSON API, each call
//! fanning out over gRPC to emoji and voting.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tonic::transport::Channel;

use crate::peer;
use crate::proto::emoji_client::EmojiClient;
use crate::proto::voting_client::VotingClient;
use crate::proto::{FindByShortcodeRequest, ListAllRequest, ResultsRequest, VoteRequest};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Authority of the emoji service
    #[arg(long, default_value = "emoji.demo.svc.cluster.local:8080")]
    emoji: String,
    /// Authority of the voting service
    #[arg(long, default_value = "voting.demo.svc.cluster.local:8080")]
    voting: String,
    /// The local proxy's outbound address; peers are dialed directly if unset
    #[arg(long)]
    outbound_proxy: Option<String>,
}

#[derive(Clone)]
struct Peers {
    emoji: EmojiClient<Channel>,
    voting: VotingClient<Channel>,
}

type Reply = Response<Full<Bytes>>;

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Emoji vote</title></head>
<body><h1>Emoji vote</h1>
<p>A demo application meshed by Conduit.</p>
<ul><li><a href="/api/list">/api/list</a></li>
<li><a href="/api/vote?choice=:crab:">/api/vote?choice=:crab:</a></li>
<li><a href="/api/leaderboard">/api/leaderboard</a></li></ul>
</body></html>"#;

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let proxy = args.outbound_proxy.as_deref();
    let peers = Peers {
        emoji: EmojiClient::new(peer::grpc_channel(&args.emoji, proxy)?),
        voting: VotingClient::new(peer::grpc_channel(&args.voting, proxy)?),
    };
    let listener = TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %args.listen, "web serving HTTP/1.1");
    loop {
        let (stream, _) = listener.accept().await?;
        let peers = peers.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let peers = peers.clone();
                async move { Ok::<_, Infallible>(route(req, peers).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

async fn route(req: Request<Incoming>, peers: Peers) -> Reply {
    if req.method() != Method::GET {
        return json_reply(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "GET only"}));
    }
    match req.uri().path() {
        "/" => Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Full::new(Bytes::from_static(PAGE.as_bytes())))
            .expect("static response"),
        "/api/list" => list(peers).await,
        "/api/vote" => vote(choice(req.uri().query()), peers).await,
        "/api/leaderboard" => leaderboard(peers).await,
        _ => json_reply(StatusCode::NOT_FOUND, json!({"error": "no such page"})),
    }
}

fn choice(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("choice="))
        .map(|v| v.replace("%3A", ":").replace("%3a", ":"))
}

async fn list(mut peers: Peers) -> Reply {
    match peers.emoji.list_all(ListAllRequest {}).await {
        Ok(r) => {
            let list: Vec<_> = r
                .into_inner()
                .list
                .into_iter()
                .map(|e| json!({"shortcode": e.shortcode, "unicode": e.unicode}))
                .collect();
            json_reply(StatusCode::OK, json!(list))
        }
        Err(status) => upstream_failed("emoji", &status),
    }
}

async fn vote(choice: Option<String>, mut peers: Peers) -> Reply {
    let Some(shortcode) = choice else {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "missing ?choice=:shortcode:"}),
        );
    };
    let found = match peers
        .emoji
        .find_by_shortcode(FindByShortcodeRequest {
            shortcode: shortcode.clone(),
        })
        .await
    {
        Ok(r) => r.into_inner().emoji,
        Err(status) => return upstream_failed("emoji", &status),
    };
    if found.is_none() {
        return json_reply(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no emoji {shortcode}")}),
        );
    }
    match peers.voting.vote(VoteRequest { shortcode }).await {
        Ok(r) => json_reply(StatusCode::OK, json!({"votes": r.into_inner().votes})),
        Err(status) => upstream_failed("voting", &status),
    }
}

async fn leaderboard(mut peers: Peers) -> Reply {
    match peers.voting.results(ResultsRequest {}).await {
        Ok(r) => {
            let rows: Vec<_> = r
                .into_inner()
                .results
                .into_iter()
                .map(|r| json!({"shortcode": r.shortcode, "votes": r.votes}))
                .collect();
            json_reply(StatusCode::OK, json!(rows))
        }
        Err(status) => upstream_failed("voting", &status),
    }
}

fn upstream_failed(service: &str, status: &tonic::Status) -> Reply {
    json_reply(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": format!("{service}: {}", status.message())}),
    )
}

fn json_reply(status: StatusCode, body: serde_json::Value) -> Reply {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}
