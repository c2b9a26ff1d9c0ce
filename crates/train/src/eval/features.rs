//! The feature network every score goes through, and the reference statistics of the test
//! split, cached in a JSON file named after the classifier weights' hash and the number of
//! reference images, and checked against a hash of the images they came from.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use genmodels::Classifier;
use genmodels::fid::{FeatureMoments, FeatureStatistics};
use genmodels_data::{FashionMnist, IMAGE_PIXELS, IMAGE_SIDE, PixelRange};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::scores::BATCH;
use crate::classifier::{pretrained, weights_sha256};
use crate::fsutil::write_atomic;

/// The classifier whose features and predictions score images.
pub struct FeatureNetwork {
    classifier: Classifier,
    device: Device,
}

impl FeatureNetwork {
    /// The committed classifier on `device` (without autodiff).
    pub fn load(device: &Device) -> Result<Self> {
        Ok(Self {
            classifier: pretrained(device)?,
            device: device.clone(),
        })
    }

    /// Width of the feature vectors.
    pub fn feature_dim(&self) -> usize {
        self.classifier.feature_dim()
    }

    /// Features (`len * 128`, image after image) and most likely classes of whole 28x28
    /// images given as bytes.
    pub fn score(&self, pixels: &[u8]) -> Result<(Vec<f32>, Vec<usize>)> {
        let count = pixels.len() / IMAGE_PIXELS;
        let values: Vec<f32> = pixels
            .iter()
            .map(|&p| PixelRange::ZeroToOne.scale(p))
            .collect();
        let images = Tensor::<4>::from_data(
            TensorData::new(values, [count, 1, IMAGE_SIDE, IMAGE_SIDE]),
            &self.device,
        );
        let features = self.classifier.features(images); // [B, 128]
        let classes = self.classifier.classify(features.clone()).argmax(1); // [B, 1]
        let classes = classes
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()?
            .into_iter()
            .map(|c| c as usize)
            .collect();
        Ok((features.into_data().try_to_vec::<f32>()?, classes))
    }

    /// The feature statistics of 8-bit images, in batches.
    pub fn statistics(&self, pixels: &[u8]) -> Result<FeatureStatistics> {
        let mut moments = FeatureMoments::new(self.feature_dim());
        for batch in pixels.chunks(BATCH * IMAGE_PIXELS) {
            moments.update(&self.score(batch)?.0)?;
        }
        Ok(moments.statistics()?)
    }
}

/// What generated images are compared with: the test split's statistics and the floor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reference {
    /// SHA-256 of the classifier weights the features come from.
    pub weights_sha256: String,
    /// SHA-256 of the reference images: the first `images` test images, then as many
    /// training images.
    pub data_sha256: String,
    /// Test images in the statistics (and training images in the floor).
    pub images: usize,
    /// Feature statistics of the test images.
    pub test: FeatureStatistics,
    /// FID of the training images against the test images, when computed.
    pub floor: Option<f64>,
}

/// The cache file of the reference statistics for `images` reference images.
pub fn reference_path(cache_dir: &Path, images: usize) -> PathBuf {
    let hash = weights_sha256();
    cache_dir.join(format!("fid_reference_{}_{images}.json", &hash[..12]))
}

/// The reference statistics of the first `images` test images (at most the split), with the
/// floor (as many training images against them) when `with_floor`: read from the cache in
/// `cache_dir` when it holds them for these weights and images, else computed and cached.
pub fn reference(
    network: &FeatureNetwork,
    data: &FashionMnist,
    images: usize,
    with_floor: bool,
    cache_dir: &Path,
) -> Result<Reference> {
    let images = images.min(data.test.len()).min(data.train.len());
    let test_pixels = &data.test.images[..images * IMAGE_PIXELS];
    let train_pixels = &data.train.images[..images * IMAGE_PIXELS];
    let data_sha256 = hex(&Sha256::new()
        .chain_update(test_pixels)
        .chain_update(train_pixels)
        .finalize());
    let weights = weights_sha256();
    let path = reference_path(cache_dir, images);
    let cached = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str::<Reference>(&text).ok())
        .filter(|r| r.weights_sha256 == weights && r.data_sha256 == data_sha256);
    if let Some(reference) = &cached
        && (reference.floor.is_some() || !with_floor)
    {
        println!("fid: reference statistics from {}", path.display());
        return Ok(reference.clone());
    }
    let started = Instant::now();
    let test = match cached {
        Some(reference) => reference.test,
        None => network.statistics(test_pixels)?,
    };
    let floor = if with_floor {
        Some(network.statistics(train_pixels)?.frechet_distance(&test)?)
    } else {
        None
    };
    let reference = Reference {
        weights_sha256: weights,
        data_sha256,
        images,
        test,
        floor,
    };
    write_atomic(&path, serde_json::to_string(&reference)?.as_bytes())
        .context("caching the FID reference statistics")?;
    println!(
        "fid: reference statistics of {images} test images computed in {:.1} s, cached in {}",
        started.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(reference)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
