//! gabang-content: the content store.
pub mod blobs;
pub mod digest;
pub mod error;
pub mod layer;
pub mod meta;
pub mod reference;
pub mod snapshot;
pub mod store;

pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::ImageRef;
pub use store::{Image, NewLayer, Store};
pub mod archive;
pub mod import;
