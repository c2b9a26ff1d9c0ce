//! DCGAN (Radford, Metz & Chintala, 2016) sized for 28x28 images.
//!
//! The generator maps a latent vector `z ~ N(0, I)` to an image in `[-1, 1]` with a projection
//! and two fractionally-strided (transposed) convolutions; the discriminator mirrors it with two
//! strided convolutions and returns a logit `l(x)`, so that `D(x) = sigmoid(l(x))` is the
//! probability that `x` came from the data rather than from the generator.
//! Both use BatchNorm, ReLU in the generator and LeakyReLU(0.2) in the discriminator, no
//! pooling, and the paper's N(0, 0.02) initialisation.

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;
use genmodels_kernels::nn::{batch_norm, conv_transpose2d, conv2d, linear};
use genmodels_kernels::{Activation, activate};

use crate::image_source::{Drawn, ImageSource, PixelRange};
use crate::layers::{dcgan_batch_norm, dcgan_downsample, dcgan_linear, dcgan_upsample};
use crate::noise::{device_normal, seeded_normal};
use crate::pytorch::PytorchNames;

/// The generator's name in a run folder: its Config's key in `config.json` and its record
/// `generator.bpk`.
pub const GENERATOR: &str = "generator";
/// The discriminator's name in a run folder.
pub const DISCRIMINATOR: &str = "discriminator";

/// Side of the generator's first feature map; two 2x upsamplings give 28.
pub(crate) const BASE_SIDE: usize = 7;
/// LeakyReLU slope of the discriminator, as in the paper.
const LEAKY_SLOPE: f64 = 0.2;

/// Builds a [`Generator`].
#[derive(Config, Debug)]
pub struct GeneratorConfig {
    /// Size of the latent vector z.
    #[config(default = 100)]
    pub latent_dim: usize,
    /// Channels of the 7x7 feature map; the 14x14 map has half as many.
    #[config(default = 256)]
    pub base_channels: usize,
    /// Channels of the generated image.
    #[config(default = 1)]
    pub image_channels: usize,
}

/// G(z): latent vector -> image in `[-1, 1]`.
#[derive(Module, Debug)]
pub struct Generator {
    pub(crate) project: Linear,
    project_norm: BatchNorm,
    upsample: ConvTranspose2d,
    upsample_norm: BatchNorm,
    to_image: ConvTranspose2d,
    latent_dim: usize,
    base_channels: usize,
}

impl GeneratorConfig {
    /// Initialises the generator with the DCGAN weight initialisation.
    pub fn init(&self, device: &Device) -> Generator {
        let projected = self.base_channels * BASE_SIDE * BASE_SIDE;
        let half = self.base_channels / 2;
        let up = |channels, bias| dcgan_upsample(channels, bias, device);
        Generator {
            project: dcgan_linear(self.latent_dim, projected, false, device),
            project_norm: dcgan_batch_norm(projected, device),
            upsample: up([self.base_channels, half], false),
            upsample_norm: dcgan_batch_norm(half, device),
            to_image: up([half, self.image_channels], true),
            latent_dim: self.latent_dim,
            base_channels: self.base_channels,
        }
    }
}

impl Generator {
    /// Maps latent vectors `[B, latent_dim]` to images `[B, C, 28, 28]` in `[-1, 1]`.
    pub fn forward(&self, z: Tensor<2>) -> Tensor<4> {
        let [batch, _] = z.dims();
        let x = linear(&self.project, z); // [B, 256*7*7]
        let x = batch_norm(&self.project_norm, x, Activation::Relu); // [B, 256*7*7]
        let x = x.reshape([batch, self.base_channels, BASE_SIDE, BASE_SIDE]); // [B, 256, 7, 7]
        upsample_to_image(&self.upsample, &self.upsample_norm, &self.to_image, x) // [B, 1, 28, 28]
    }

    /// Draws `count` latent vectors from the prior N(0, I): `[count, latent_dim]`.
    pub fn sample_latent(&self, count: usize, device: &Device) -> Tensor<2> {
        device_normal([count, self.latent_dim], device)
    }

    /// Size of the latent vector this generator takes.
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }
}

/// The DCGAN generator's last two layers, from its 7x7 feature maps `[B, C, 7, 7]` to images
/// `[B, C_image, 28, 28]` in `[-1, 1]`: `tanh(to_image(ReLU(BN(upsample(x)))))`.
pub(crate) fn upsample_to_image(
    upsample: &ConvTranspose2d,
    upsample_norm: &BatchNorm,
    to_image: &ConvTranspose2d,
    x: Tensor<4>,
) -> Tensor<4> {
    let x = conv_transpose2d(upsample, x); // [B, C/2, 14, 14]
    let x = batch_norm(upsample_norm, x, Activation::Relu); // [B, C/2, 14, 14]
    activate(conv_transpose2d(to_image, x), Activation::Tanh) // [B, C_image, 28, 28]
}

/// The names of `Generator` in `benches/pytorch_reference.py`.
impl PytorchNames for Generator {
    const RENAMES: &'static [(&'static str, &'static str)] = &[
        ("project_norm", "bn0"),
        ("upsample_norm", "bn1"),
        ("upsample", "up1"),
        ("to_image", "up2"),
    ];
}

/// `G(z)` with `z ~ N(0, I)` drawn on the host from the seed.
impl ImageSource for Generator {
    fn pixel_range(&self) -> PixelRange {
        PixelRange::MinusOneToOne
    }

    fn describe(&self) -> String {
        format!("G(z), z ~ N(0, I) in R^{}", self.latent_dim)
    }

    fn draw(&self, count: usize, seed: u64, device: &Device) -> Drawn {
        let z = seeded_normal([count, self.latent_dim], seed, device); // [count, latent_dim]
        self.forward(z).into() // [count, 1, 28, 28]
    }
}

/// Builds a [`Discriminator`].
#[derive(Config, Debug)]
pub struct DiscriminatorConfig {
    /// Channels of the input image.
    #[config(default = 1)]
    pub image_channels: usize,
    /// Channels after the first convolution (14x14); the second has twice as many (7x7).
    #[config(default = 64)]
    pub base_channels: usize,
}

/// D(x) as a logit: image -> `l(x)`, with `D(x) = sigmoid(l(x))`.
#[derive(Module, Debug)]
pub struct Discriminator {
    pub(crate) downsample1: Conv2d,
    downsample2: Conv2d,
    downsample2_norm: BatchNorm,
    pub(crate) classify: Linear,
}

impl DiscriminatorConfig {
    /// Initialises the discriminator with the DCGAN weight initialisation.
    pub fn init(&self, device: &Device) -> Discriminator {
        let double = self.base_channels * 2;
        let down = |channels, bias| dcgan_downsample(channels, bias, device);
        Discriminator {
            downsample1: down([self.image_channels, self.base_channels], true),
            downsample2: down([self.base_channels, double], false),
            downsample2_norm: dcgan_batch_norm(double, device),
            classify: dcgan_linear(double * BASE_SIDE * BASE_SIDE, 1, true, device),
        }
    }
}

impl Discriminator {
    /// Maps images `[B, C, 28, 28]` to logits `[B, 1]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        linear(&self.classify, self.features(images)) // [B, 1]
    }

    /// The features the last layer classifies: images `[B, C, 28, 28]` -> `[B, 128 * 7 * 7]`
    /// (InfoGAN's auxiliary head shares them).
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        downsample_features(
            &self.downsample1,
            &self.downsample2,
            &self.downsample2_norm,
            images,
        ) // [B, 6272]
    }

    /// Width of [`Discriminator::features`].
    pub fn feature_dim(&self) -> usize {
        self.classify.weight.dims()[0]
    }
}

/// The DCGAN discriminator's trunk, shared by the networks that read images the same way (the
/// BiGAN encoder): images `[B, C, 28, 28]` -> `flatten(LeakyReLU(BN(down2(LeakyReLU(down1(x))))))`,
/// `[B, 2 base * 7 * 7]`.
pub(crate) fn downsample_features(
    downsample1: &Conv2d,
    downsample2: &Conv2d,
    downsample2_norm: &BatchNorm,
    images: Tensor<4>,
) -> Tensor<2> {
    let x = activate(
        conv2d(downsample1, images),
        Activation::LeakyRelu(LEAKY_SLOPE),
    ); // [B, 64, 14, 14]
    let x = conv2d(downsample2, x); // [B, 128, 7, 7]
    let x = batch_norm(downsample2_norm, x, Activation::LeakyRelu(LEAKY_SLOPE)); // [B, 128, 7, 7]
    x.flatten(1, 3) // [B, 6272]
}

/// The names of `Discriminator` in `benches/pytorch_reference.py`.
impl PytorchNames for Discriminator {
    const RENAMES: &'static [(&'static str, &'static str)] = &[
        ("downsample1", "conv1"),
        ("downsample2_norm", "bn2"),
        ("downsample2", "conv2"),
        ("classify", "linear"),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gan_loss::discriminator_loss;
    use crate::test_util::to_vec;
    use burn::tensor::Distribution;

    /// The generator and the discriminator of the paper's sizes.
    fn paper_sized(device: &Device) -> (Generator, Discriminator) {
        let generator = GeneratorConfig::new().init(device);
        (generator, DiscriminatorConfig::new().init(device))
    }

    #[test]
    fn generator_and_discriminator_shapes() {
        let device = Device::flex();
        let (generator, discriminator) = paper_sized(&device);
        let z = generator.sample_latent(3, &device);
        assert_eq!(z.dims(), [3, 100]);

        // Every intermediate shape of the generator, layer by layer.
        let x = generator.project.forward(z.clone());
        assert_eq!(x.dims(), [3, 256 * 7 * 7]);
        let x = x.reshape([3, 256, 7, 7]);
        let x = generator.upsample.forward(x);
        assert_eq!(x.dims(), [3, 128, 14, 14]);
        let x = generator.to_image.forward(x);
        assert_eq!(x.dims(), [3, 1, 28, 28]);

        let images = generator.forward(z);
        assert_eq!(images.dims(), [3, 1, 28, 28]);
        let values = to_vec(images.clone());
        assert!(
            values.iter().all(|v| (-1.0..=1.0).contains(v)),
            "tanh output out of range"
        );

        let x = discriminator.downsample1.forward(images.clone());
        assert_eq!(x.dims(), [3, 64, 14, 14]);
        let x = discriminator.downsample2.forward(x);
        assert_eq!(x.dims(), [3, 128, 7, 7]);
        assert_eq!(discriminator.forward(images).dims(), [3, 1]);
    }

    #[test]
    fn parameter_counts_match_the_architecture() {
        let device = Device::flex();
        let (generator, discriminator) = paper_sized(&device);
        // burn counts a BatchNorm's running mean and variance beside gamma and beta: 4 vectors.
        let g_expected = 100 * 12544 // projection, no bias
            + 4 * 12544 // its BatchNorm
            + 256 * 128 * 16 // transposed conv 256 -> 128, no bias
            + 4 * 128 // its BatchNorm
            + 128 * 16 + 1; // transposed conv 128 -> 1 with bias
        let d_expected = 64 * 16 + 64 // conv 1 -> 64
            + 64 * 128 * 16 // conv 64 -> 128, no bias
            + 4 * 128 // its BatchNorm
            + 6272 + 1; // linear 6272 -> 1
        assert_eq!(generator.num_params(), g_expected);
        assert_eq!(discriminator.num_params(), d_expected);
    }

    #[test]
    fn initialisation_follows_dcgan() {
        let device = Device::flex();
        let generator = GeneratorConfig::new().init(&device);
        let weights = to_vec(generator.project.weight.val());
        let n = weights.len() as f64;
        let mean = weights.iter().map(|&w| w as f64).sum::<f64>() / n;
        let std = (weights
            .iter()
            .map(|&w| (w as f64 - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        // 1.25M draws: the sample std of N(0, 0.02) is within 1% of 0.02.
        assert!(mean.abs() < 1e-3, "mean {mean}");
        assert!((std - 0.02).abs() < 2e-4, "std {std}");
        let gamma = to_vec(generator.project_norm.gamma.val());
        let gamma_mean = gamma.iter().map(|&g| g as f64).sum::<f64>() / gamma.len() as f64;
        assert!((gamma_mean - 1.0).abs() < 2e-3, "gamma mean {gamma_mean}");
        let beta = to_vec(generator.project_norm.beta.val());
        assert!(beta.iter().all(|&b| b == 0.0));
    }

    #[test]
    fn a_few_adam_steps_lower_the_discriminator_loss_on_a_fixed_batch() {
        use burn::optim::{AdamConfig, GradientsParams};
        let device = Device::flex().autodiff();
        device.seed(7);
        let generator = GeneratorConfig::new().init(&device);
        let mut discriminator = DiscriminatorConfig::new().init(&device);
        let mut optimizer = AdamConfig::new()
            .with_beta_1(0.5)
            .with_beta_2(0.999)
            .with_epsilon(1e-8)
            .init();
        // "Real" images: a fixed smooth pattern; fake images: a fixed generator batch.
        let real = Tensor::<4>::random([16, 1, 28, 28], Distribution::Uniform(0.5, 1.0), &device);
        let fake = generator
            .forward(generator.sample_latent(16, &device))
            .detach();
        let loss_of = |d: &Discriminator| {
            discriminator_loss(d.forward(real.clone()), d.forward(fake.clone()))
        };
        let initial = loss_of(&discriminator).into_scalar::<f32>();
        for _ in 0..5 {
            let loss = loss_of(&discriminator);
            let grads = GradientsParams::from_grads(loss.backward(), &discriminator);
            discriminator = optimizer.step(2e-4, discriminator, grads);
        }
        let after = loss_of(&discriminator).into_scalar::<f32>();
        assert!(after < initial * 0.9, "loss {initial} -> {after}");
    }
}
