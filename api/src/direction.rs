//! Which side of the proxy handled a request.

use std::fmt;

use serde::{Deserialize, Serialize};

#[cfg(feature = "proto")]
use crate::proto::mesh::v1 as pb;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received from a peer, forwarded to the local application.
    Inbound,
    /// Sent by the local application, forwarded to a peer.
    Outbound,
}

impl Direction {
    /// The value of the `direction` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "proto")]
impl From<Direction> for pb::Direction {
    fn from(d: Direction) -> Self {
        match d {
            Direction::Inbound => Self::Inbound,
            Direction::Outbound => Self::Outbound,
        }
    }
}

#[cfg(feature = "proto")]
impl TryFrom<pb::Direction> for Direction {
    type Error = pb::Direction;

    fn try_from(d: pb::Direction) -> Result<Self, Self::Error> {
        match d {
            pb::Direction::Inbound => Ok(Self::Inbound),
            pb::Direction::Outbound => Ok(Self::Outbound),
            pb::Direction::Unspecified => Err(d),
        }
    }
}
