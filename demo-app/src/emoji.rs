//! `emoji`: the catalogue every vote is checked against.

use std::net::SocketAddr;

use tonic::{Request, Response, Status};

use crate::proto::emoji_server::{Emoji, EmojiServer};
use crate::proto::{
    EmojiItem, FindByShortcodeRequest, FindByShortcodeResponse, ListAllRequest, ListAllResponse,
};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

/// (unicode, shortcode)
pub(crate) const CATALOGUE: &[(&str, &str)] = &[
    ("👍", ":+1:"),
    ("🎉", ":tada:"),
    ("🍩", ":doughnut:"),
    ("🚀", ":rocket:"),
    ("🦀", ":crab:"),
    ("🌮", ":taco:"),
    ("🐙", ":octopus:"),
    ("☕", ":coffee:"),
    ("🔥", ":fire:"),
    ("🌈", ":rainbow:"),
];

struct Catalogue;

fn item((unicode, shortcode): (&str, &str)) -> EmojiItem {
    EmojiItem {
        unicode: unicode.to_string(),
        shortcode: shortcode.to_string(),
    }
}

#[tonic::async_trait]
impl Emoji for Catalogue {
    async fn list_all(
        &self,
        _: Request<ListAllRequest>,
    ) -> Result<Response<ListAllResponse>, Status> {
        let list = CATALOGUE.iter().copied().map(item).collect();
        Ok(Response::new(ListAllResponse { list }))
    }

    async fn find_by_shortcode(
        &self,
        request: Request<FindByShortcodeRequest>,
    ) -> Result<Response<FindByShortcodeResponse>, Status> {
        let wanted = request.into_inner().shortcode;
        let emoji = CATALOGUE
            .iter()
            .copied()
            .find(|(_, code)| *code == wanted)
            .map(item);
        Ok(Response::new(FindByShortcodeResponse { emoji }))
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    tracing::info!(addr = %args.listen, "emoji serving gRPC");
    tonic::transport::Server::builder()
        .add_service(EmojiServer::new(Catalogue))
        .serve(args.listen)
        .await?;
    Ok(())
}
