//! One module per page; `crate::paths` lists their URLs.

pub(crate) mod deployment;
pub(crate) mod overview;
pub(crate) mod pick;
pub(crate) mod tap;
pub(crate) mod top;
