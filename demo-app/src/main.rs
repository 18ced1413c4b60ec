//! `conduit-demo-app`: the application `conduit demo` meshes.
//!
//! One binary, one role per process, like an emoji vote split into
//! services:
//!
//! ```text
//! vote-bot ──HTTP/1.1──> web ──gRPC──> emoji   (2+ replicas)
//!                         └───gRPC──> voting ──opaque TCP──> vote-store
//! ```
//!
//! `intruder` (with `conduit demo --with-intruder`) calls voting and
//! vote-store directly without the mesh, which the demo's policy denies.
//!
//! `voting` fails a known share of its `Vote` calls and votes for one emoji
//! are slow, so the mesh has a success rate and a latency spread to show.
//! Services reach their peers through their own outbound proxy
//! (`--outbound-proxy`), naming the peer by authority, as an app in a mesh
//! with explicit proxying does.

use clap::{Parser, Subcommand};

mod emoji;
mod intruder;
mod peer;
mod proto;
mod random;
mod vote_bot;
mod vote_store;
mod voting;
mod web;

#[derive(Parser, Debug)]
#[command(version, about = "The demo application of `conduit demo`")]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand, Debug)]
enum Role {
    /// HTTP/1.1 front end: pages and a JSON API over emoji and voting
    Web(web::Args),
    /// gRPC: the emoji catalogue
    Emoji(emoji::Args),
    /// gRPC: records votes in vote-store; fails and slows down on purpose
    Voting(voting::Args),
    /// Opaque TCP: a line protocol counter store that speaks first
    VoteStore(vote_store::Args),
    /// Traffic generator: votes through web at a fixed rate
    VoteBot(vote_bot::Args),
    /// An unmeshed client that tries what the demo's policy forbids
    Intruder(intruder::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().role {
        Role::Web(args) => web::run(args).await,
        Role::Emoji(args) => emoji::run(args).await,
        Role::Voting(args) => voting::run(args).await,
        Role::VoteStore(args) => vote_store::run(args).await,
        Role::VoteBot(args) => vote_bot::run(args).await,
        Role::Intruder(args) => intruder::run(args).await,
    }
}
