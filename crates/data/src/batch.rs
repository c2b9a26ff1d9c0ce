//! Mini-batches of images and labels as burn tensors.
//!
//! [`BatchLoader`] walks a [`Split`] in a new pseudo-random order every epoch. The order
//! depends only on the seed and the epoch number, so a run can be repeated exactly, and resumed
//! at any epoch. While the model trains on one batch, a background thread already converts the
//! pixels of the next one to `f32`; only the upload to the device happens on the caller's thread.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::fashion_mnist::{IMAGE_PIXELS, IMAGE_SIDE, Split};
use crate::shuffle::{SplitMix64, permutation};

/// How pixel bytes `0..=255` are mapped to floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelRange {
    /// `x / 127.5 - 1`, into `[-1, 1]`: matches a `tanh` output, as GANs and diffusion models use.
    MinusOneToOne,
    /// `x / 255`, into `[0, 1]`: matches a `sigmoid` output / Bernoulli likelihood, as the VAE uses.
    ZeroToOne,
}

impl PixelRange {
    /// The float for one pixel byte.
    pub fn scale(self, pixel: u8) -> f32 {
        match self {
            PixelRange::MinusOneToOne => pixel as f32 / 127.5 - 1.0,
            PixelRange::ZeroToOne => pixel as f32 / 255.0,
        }
    }

    /// The pixel byte nearest to a float, the inverse of [`PixelRange::scale`]; values outside
    /// the range are clamped. Handy to turn generated images back into bytes.
    pub fn unscale(self, value: f32) -> u8 {
        let byte = match self {
            PixelRange::MinusOneToOne => (value + 1.0) * 127.5,
            PixelRange::ZeroToOne => value * 255.0,
        };
        byte.round().clamp(0.0, 255.0) as u8
    }

    /// The smallest and largest values [`PixelRange::scale`] produces.
    pub fn bounds(self) -> (f32, f32) {
        match self {
            PixelRange::MinusOneToOne => (-1.0, 1.0),
            PixelRange::ZeroToOne => (0.0, 1.0),
        }
    }
}

/// A mini-batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Images, `[batch, 1, 28, 28]`, scaled by the loader's [`PixelRange`].
    pub images: Tensor<4>,
    /// Class indices, `[batch]`.
    pub labels: Tensor<1, Int>,
}

impl Batch {
    /// Number of examples in the batch.
    pub fn len(&self) -> usize {
        self.labels.dims()[0]
    }

    /// Whether the batch holds no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch's data on the host, ready to be uploaded.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// `len * 784` scaled pixels.
    pub pixels: Vec<f32>,
    /// One label per image, as the `i64` burn's integer tensors are built from.
    pub labels: Vec<i64>,
}

impl HostBatch {
    /// Uploads the batch to `device`.
    pub fn to_device(self, device: &Device) -> Batch {
        let len = self.labels.len();
        Batch {
            images: Tensor::from_data(
                TensorData::new(self.pixels, [len, 1, IMAGE_SIDE, IMAGE_SIDE]),
                device,
            ),
            labels: Tensor::from_data(TensorData::new(self.labels, [len]), device),
        }
    }
}

impl Split {
    /// The scaled pixels and the labels of the images at `indices`, in that order.
    ///
    /// # Panics
    /// If an index is not below `self.len()`.
    pub fn host_batch(&self, indices: &[usize], range: PixelRange) -> HostBatch {
        // A lookup table turns the per-pixel work into one indexed load.
        let table: [f32; 256] = std::array::from_fn(|byte| range.scale(byte as u8));
        let mut pixels = Vec::with_capacity(indices.len() * IMAGE_PIXELS);
        for &index in indices {
            pixels.extend(self.image(index).iter().map(|&p| table[p as usize]));
        }
        let labels = indices
            .iter()
            .map(|&index| self.labels[index] as i64)
            .collect();
        HostBatch { pixels, labels }
    }

    /// The images at `indices` as a `[indices.len(), 1, 28, 28]` tensor on `device`.
    ///
    /// # Panics
    /// If an index is not below `self.len()`.
    pub fn images_tensor(
        &self,
        indices: &[usize],
        range: PixelRange,
        device: &Device,
    ) -> Tensor<4> {
        self.batch(indices, range, device).images
    }

    /// The labels at `indices` as a `[indices.len()]` tensor on `device`.
    ///
    /// # Panics
    /// If an index is not below `self.len()`.
    pub fn labels_tensor(&self, indices: &[usize], device: &Device) -> Tensor<1, Int> {
        let labels: Vec<i64> = indices
            .iter()
            .map(|&index| self.labels[index] as i64)
            .collect();
        Tensor::from_data(TensorData::new(labels, [indices.len()]), device)
    }

    /// The images and labels at `indices` as a [`Batch`] on `device`.
    ///
    /// # Panics
    /// If an index is not below `self.len()`.
    pub fn batch(&self, indices: &[usize], range: PixelRange, device: &Device) -> Batch {
        self.host_batch(indices, range).to_device(device)
    }
}

/// Hands out the shuffled mini-batches of a [`Split`], epoch after epoch.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use genmodels_data::{BatchLoader, PixelRange, FashionMnist};
/// # let data = FashionMnist::load("datasets/fashion-mnist".as_ref()).unwrap();
/// # let device = burn::tensor::Device::default();
/// let loader = BatchLoader::new(Arc::new(data.train), 64, PixelRange::MinusOneToOne)
///     .with_seed(42)
///     .with_drop_last(true);
/// for epoch in 0..10 {
///     for batch in loader.epoch(epoch, &device) {
///         // batch.images: [64, 1, 28, 28], batch.labels: [64]
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct BatchLoader {
    split: Arc<Split>,
    batch_size: usize,
    range: PixelRange,
    seed: u64,
    drop_last: bool,
}

impl BatchLoader {
    /// A loader with seed 0 that keeps the last, smaller batch of each epoch.
    ///
    /// # Panics
    /// If `batch_size` is 0.
    pub fn new(split: Arc<Split>, batch_size: usize, range: PixelRange) -> Self {
        assert!(batch_size > 0, "batch size must be at least 1");
        BatchLoader {
            split,
            batch_size,
            range,
            seed: 0,
            drop_last: false,
        }
    }

    /// Sets the seed the per-epoch orders are drawn from.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Whether to skip the last batch of an epoch when it is smaller than the batch size
    /// (useful when a model, e.g. a GAN with batch statistics, wants equal batches).
    pub fn with_drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// The split batches are drawn from.
    pub fn split(&self) -> &Split {
        &self.split
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The pixel scaling.
    pub fn pixel_range(&self) -> PixelRange {
        self.range
    }

    /// Number of batches in each epoch.
    pub fn num_batches(&self) -> usize {
        let len = self.split.len();
        if self.drop_last {
            len / self.batch_size
        } else {
            len.div_ceil(self.batch_size)
        }
    }

    /// The order in which epoch `epoch` visits the split: a permutation of `0..split.len()`
    /// that depends only on the seed and `epoch`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        permutation(
            self.split.len(),
            &mut SplitMix64::for_stream(self.seed, epoch),
        )
    }

    /// The indices of each batch of epoch `epoch`, in order.
    pub fn epoch_batch_indices(&self, epoch: u64) -> Vec<Vec<usize>> {
        let order = self.epoch_order(epoch);
        order
            .chunks(self.batch_size)
            .take(self.num_batches())
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// The batches of epoch `epoch`, uploaded to `device` one at a time as the iterator is
    /// advanced. A background thread prepares the host data of the next batch meanwhile; it
    /// stops when the iterator is exhausted or dropped.
    pub fn epoch(&self, epoch: u64, device: &Device) -> EpochBatches {
        let batches = self.epoch_batch_indices(epoch);
        let remaining = batches.len();
        let split = Arc::clone(&self.split);
        let range = self.range;
        // Capacity 1: one batch waits ready while the caller uses the current one; more would
        // only hold memory without making anything faster.
        let (sender, receiver) = sync_channel(1);
        let worker = std::thread::Builder::new()
            .name("fashion-mnist-batches".into())
            .spawn(move || {
                for indices in batches {
                    if sender.send(split.host_batch(&indices, range)).is_err() {
                        break; // The iterator was dropped: nobody wants more batches.
                    }
                }
            })
            // Only fails when the OS is out of threads, which no training run would survive.
            .expect("cannot start the batch-preparation thread");
        EpochBatches {
            receiver: Some(receiver),
            worker: Some(worker),
            device: device.clone(),
            remaining,
        }
    }
}

/// The batches of one epoch; see [`BatchLoader::epoch`].
pub struct EpochBatches {
    receiver: Option<Receiver<HostBatch>>,
    worker: Option<JoinHandle<()>>,
    device: Device,
    remaining: usize,
}

impl Iterator for EpochBatches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let host = self.receiver.as_ref()?.recv().ok()?;
        self.remaining -= 1;
        Some(host.to_device(&self.device))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for EpochBatches {}

impl Drop for EpochBatches {
    fn drop(&mut self) {
        // Close the channel first so a worker blocked on `send` wakes up and exits.
        self.receiver = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
