//! The bundle format (v1): model (`bundle.json`), compression, streaming writer
//! and streaming reader. See DESIGN.md, "Bundle format".

pub mod assemble;
pub mod compress;
pub mod model;
pub mod reader;
pub mod verify;
pub mod volumes;
pub mod writer;

pub use compress::Codec;
pub use model::BundleManifest;
