//! Code generated from `api/proto` by tonic, one module per package.
//!
//! Generated clients take any tonic transport (`Client::new(channel)`), so
//! this crate does not pull in tonic's transport stack for its users.

#![allow(unreachable_pub, missing_docs, clippy::all, clippy::pedantic)]

pub mod mesh {
    pub mod v1 {
        tonic::include_proto!("conduit.mesh.v1");
    }
}

pub mod tap {
    pub mod v1 {
        tonic::include_proto!("conduit.tap.v1");
    }
}

pub mod diagnostics {
    pub mod v1 {
        tonic::include_proto!("conduit.diagnostics.v1");
    }
}

pub mod telemetry {
    pub mod v1 {
        tonic::include_proto!("conduit.telemetry.v1");
    }
}

pub mod destination {
    pub mod v1 {
        tonic::include_proto!("conduit.destination.v1");
    }
}

pub mod identity {
    pub mod v1 {
        tonic::include_proto!("conduit.identity.v1");
    }
}

pub mod policy {
    pub mod v1 {
        tonic::include_proto!("conduit.policy.v1");
    }
}

pub mod public {
    pub mod v1 {
        tonic::include_proto!("conduit.public.v1");
    }
}

pub mod store {
    pub mod v1 {
        tonic::include_proto!("conduit.store.v1");
    }
}

impl tap::v1::Kept {
    /// How the tap history's `kept` field and the JSON API name it; an
    /// event that does not say has none.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::Unspecified => None,
            Self::Sampled => Some("sampled"),
            Self::Failed => Some("failed"),
            Self::Slow => Some("slow"),
        }
    }
}
