//! Noise drawn on the host from a seed, so that the same seed gives the same images on every
//! backend, every epoch and after a resume.

use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// `shape[0]` vectors of `shape[1]` values from N(0, 1), drawn with a generator seeded by
/// `seed` (the first vector's values come first).
pub fn seeded_normal(shape: [usize; 2], seed: u64, device: &Device) -> Tensor<2> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let values: Vec<f32> = (0..shape[0] * shape[1])
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Images `[count, channels, side, side]` of N(0, 1) noise drawn from `seed`.
pub fn seeded_normal_images(
    [count, channels, height, width]: [usize; 4],
    seed: u64,
    device: &Device,
) -> Tensor<4> {
    seeded_normal([count, channels * height * width], seed, device)
        .reshape([count, channels, height, width])
}

/// `shape[0]` vectors of `shape[1]` values from N(0, 1) drawn by the device's own generator
/// (the one `device.seed` seeds), for training, where the noise need not be the same on every
/// backend.
pub fn device_normal(shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::random(shape, burn::tensor::Distribution::Normal(0.0, 1.0), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_noise_and_another_seed_other_noise() {
        let device = Device::flex();
        let a = seeded_normal([4, 100], 7, &device);
        let b = seeded_normal([4, 100], 7, &device);
        let c = seeded_normal([4, 100], 8, &device);
        assert!(a.clone().equal(b).all().into_scalar::<bool>());
        assert!(!a.clone().equal(c).all().into_scalar::<bool>());
        // 400 draws of N(0, 1): the mean is within 4 standard errors (0.2) of 0.
        let mean = a.mean().into_scalar::<f32>();
        assert!(mean.abs() < 0.2, "{mean}");
    }
}
