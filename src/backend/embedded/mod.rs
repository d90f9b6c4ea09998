//! The embedded backend: no cloud, everything under one data directory.
//! `objects/` holds parts and snapshots as files, `catalog.redb` the catalog,
//! `staging/` files in flight (cleared at start).

mod catalog;
mod group;
mod objects;

pub use catalog::{RedbCatalog, CATALOG_FILE};
pub use objects::FsObjects;
