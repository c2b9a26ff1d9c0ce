//! InfoGAN (Chen et al., 2016): a GAN whose latent code has a structured part that the generator
//! must keep recoverable from its images.
//!
//! - The generator's input is `[z, c, u]`: noise z ~ N(0, I) (62-d), a categorical code c
//!   (10 values, one-hot) and continuous codes u ~ U(-1, 1) (2), through DCGAN's generator.
//! - The discriminator is DCGAN's; an auxiliary head Q(c, u | x) shares its convolutional trunk:
//!   Linear(6272 -> 128) -> BatchNorm -> LeakyReLU(0.2) -> Linear(128 -> 10 + 2), the logits of
//!   a categorical posterior over c and the means of a unit-variance Gaussian over u.
//! - The variational lower bound of the mutual information (Eq. 4 of the paper),
//!   `L_I(G, Q) = E[log Q(c | G(z, c, u))] + H(c) <= I(c; G(z, c, u))`, is maximised by the
//!   generator and by Q (through the trunk), with weight lambda (1 for the categorical code, 0.1
//!   for the continuous ones, as the paper). In loss form the terms are the cross-entropy of c
//!   ([`categorical_code_loss`]) and the Gaussian negative log-likelihood of u up to its
//!   constant ([`continuous_code_loss`]).

use burn::nn::{BatchNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use genmodels_kernels::nn::linear;
use genmodels_kernels::{Activation, activate};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::dcgan::{Discriminator, DiscriminatorConfig, Generator, GeneratorConfig};
use crate::image_source::{Drawn, GridImages, ImageSource, PixelRange};
use crate::layers::{dcgan_batch_norm, dcgan_linear};
use crate::noise::seeded_normal;
use crate::pytorch::PytorchNames;

pub use crate::dcgan::{DISCRIMINATOR, GENERATOR};

/// LeakyReLU slope of the auxiliary head, as the discriminator's.
const LEAKY_SLOPE: f64 = 0.2;

/// The sizes of InfoGAN's latent code; the paper's MNIST setting by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatentLayout {
    /// Size of the incompressible noise z.
    pub noise_dim: usize,
    /// Values of the categorical code c.
    pub categories: usize,
    /// Continuous codes, each U(-1, 1).
    pub continuous: usize,
}

impl Default for LatentLayout {
    fn default() -> Self {
        Self {
            noise_dim: 62,
            categories: 10,
            continuous: 2,
        }
    }
}

impl LatentLayout {
    /// Size of the generator's input `[z, one-hot c, u]`.
    pub fn input_dim(&self) -> usize {
        self.noise_dim + self.categories + self.continuous
    }

    /// DCGAN's generator for inputs of this layout.
    pub fn generator(&self) -> GeneratorConfig {
        GeneratorConfig::new().with_latent_dim(self.input_dim())
    }

    /// The discriminator with its auxiliary head for this layout.
    pub fn discriminator(&self) -> InfoDiscriminatorConfig {
        InfoDiscriminatorConfig::new(self.categories, self.continuous)
    }

    /// The structured codes of `count` samples drawn from `rng`: c uniform over the categories,
    /// u ~ U(-1, 1).
    pub fn sample_codes(&self, count: usize, rng: &mut impl Rng) -> Codes {
        Codes {
            categories: (0..count)
                .map(|_| rng.random_range(0..self.categories))
                .collect(),
            continuous: (0..count * self.continuous)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect(),
        }
    }

    /// The generator's input `[z, one-hot c, u]`, `[B, input_dim]`, for noise `[B, noise_dim]`.
    ///
    /// # Panics
    ///
    /// When the codes are not of the noise's batch or of this layout.
    pub fn input(&self, noise: Tensor<2>, codes: &Codes) -> Tensor<2> {
        let device = noise.device();
        let [batch, _] = noise.dims();
        assert_eq!(codes.len(), batch, "one code per noise vector");
        assert_eq!(codes.continuous.len(), batch * self.continuous);
        let one_hot = codes.one_hot(self.categories, &device); // [B, K]
        let continuous = Tensor::<2>::from_data(
            TensorData::new(codes.continuous.clone(), [batch, self.continuous]),
            &device,
        ); // [B, L]
        Tensor::cat(vec![noise, one_hot, continuous], 1) // [B, input_dim]
    }
}

/// The structured part of the latent codes of a batch, held on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Codes {
    /// The categorical code of each sample.
    pub categories: Vec<usize>,
    /// The continuous codes, row by row.
    pub continuous: Vec<f32>,
}

impl Codes {
    /// Samples in the batch.
    pub fn len(&self) -> usize {
        self.categories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
    }

    /// The categorical codes one-hot, `[B, categories]`.
    pub fn one_hot(&self, categories: usize, device: &Device) -> Tensor<2> {
        let mut values = vec![0f32; self.len() * categories];
        for (row, &c) in self.categories.iter().enumerate() {
            values[row * categories + c] = 1.0;
        }
        Tensor::from_data(TensorData::new(values, [self.len(), categories]), device)
    }

    /// The continuous codes, `[B, continuous]`.
    pub fn continuous_tensor(&self, device: &Device) -> Tensor<2> {
        let width = self.continuous.len() / self.len().max(1);
        Tensor::from_data(
            TensorData::new(self.continuous.clone(), [self.len(), width]),
            device,
        )
    }
}

/// Builds an [`InfoDiscriminator`].
#[derive(Config, Debug)]
pub struct InfoDiscriminatorConfig {
    /// Values of the categorical code Q predicts.
    pub categories: usize,
    /// Continuous codes Q predicts.
    pub continuous: usize,
    /// Units of Q's hidden layer.
    #[config(default = 128)]
    pub hidden: usize,
}

/// DCGAN's discriminator D(x) and the auxiliary head Q(c, u | x) on its trunk.
#[derive(Module, Debug)]
pub struct InfoDiscriminator {
    discriminator: Discriminator,
    q_hidden: Linear,
    q_norm: BatchNorm,
    q_codes: Linear,
    categories: usize,
    continuous: usize,
}

/// No PyTorch counterpart in `benches/pytorch_reference.py`: exported under its own paths.
impl PytorchNames for InfoDiscriminator {}

impl InfoDiscriminatorConfig {
    /// DCGAN's initialisation, N(0, 0.02), for every layer.
    pub fn init(&self, device: &Device) -> InfoDiscriminator {
        let discriminator = DiscriminatorConfig::new().init(device);
        let features = discriminator.feature_dim();
        InfoDiscriminator {
            discriminator,
            q_hidden: dcgan_linear(features, self.hidden, false, device),
            q_norm: dcgan_batch_norm(self.hidden, device),
            q_codes: dcgan_linear(self.hidden, self.categories + self.continuous, true, device),
            categories: self.categories,
            continuous: self.continuous,
        }
    }
}

/// What [`InfoDiscriminator::forward`] computes for a batch.
#[derive(Debug, Clone)]
pub struct InfoOutputs {
    /// The discriminator's logits l(x), `[B, 1]`.
    pub logits: Tensor<2>,
    /// The logits of Q(c | x), `[B, categories]`.
    pub category_logits: Tensor<2>,
    /// The means of Q(u | x), `[B, continuous]`.
    pub continuous_mean: Tensor<2>,
}

impl InfoDiscriminator {
    /// Images `[B, 1, 28, 28]` -> D's logits and Q's parameters, from one pass of the trunk.
    pub fn forward(&self, images: Tensor<4>) -> InfoOutputs {
        let features = self.discriminator.features(images); // [B, 6272]
        let [batch, _] = features.dims();
        let logits = linear(&self.discriminator.classify, features.clone()); // [B, 1]
        let h = linear(&self.q_hidden, features); // [B, 128]
        let [_, hidden] = h.dims();
        let h = self.q_norm.forward(h.reshape([batch, hidden, 1, 1])); // [B, 128, 1, 1]
        let h = activate(h.flatten(1, 3), Activation::LeakyRelu(LEAKY_SLOPE)); // [B, 128]
        let q = linear(&self.q_codes, h); // [B, K + L]
        InfoOutputs {
            logits,
            category_logits: q.clone().narrow(1, 0, self.categories), // [B, K]
            continuous_mean: q.narrow(1, self.categories, self.continuous), // [B, L]
        }
    }
}

/// `-E[log Q(c | x)]`: the cross-entropy of the categorical code, `logits: [B, K]`, the codes
/// one-hot `[B, K]` -> `[1]`, averaged over the batch.
pub fn categorical_code_loss(logits: Tensor<2>, one_hot: Tensor<2>) -> Tensor<1> {
    -(log_softmax(logits, 1) * one_hot).sum_dim(1).mean()
}

/// `-E[log Q(u | x)] - (L/2) log(2 pi)`: the negative log-likelihood of the continuous codes
/// `u: [B, L]` under unit-variance Gaussians of means `mean: [B, L]`, without its constant:
/// `mean_b sum_j (u_j - mean_j)^2 / 2`.
pub fn continuous_code_loss(mean: Tensor<2>, u: Tensor<2>) -> Tensor<1> {
    (u - mean).square().sum_dim(1).mean().mul_scalar(0.5)
}

/// The categorical part of the lower bound on I(c; G(z, c, u)), in nats:
/// `H(c) - CE = ln K - CE` for c uniform over K values; at most ln K.
pub fn categorical_information_bound(categories: usize, cross_entropy: f64) -> f64 {
    (categories as f64).ln() - cross_entropy
}

/// A trained generator and its latent layout as an [`ImageSource`]: z, c and u drawn on the host
/// from the seed, c in turn (`0, 1, ..`), u ~ U(-1, 1); the epoch grids have one column per
/// value of c.
#[derive(Debug, Clone)]
pub struct InfoGanSource {
    pub generator: Generator,
    pub layout: LatentLayout,
}

impl InfoGanSource {
    /// The codes of `count` samples from `seed`: c in turn, u ~ U(-1, 1).
    pub fn codes(&self, count: usize, seed: u64) -> Codes {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut codes = self.layout.sample_codes(count, &mut rng);
        codes.categories = (0..count).map(|i| i % self.layout.categories).collect();
        codes
    }

    /// Images `[B, 1, 28, 28]` of the noise `[B, noise_dim]` with `codes`.
    pub fn generate(&self, noise: Tensor<2>, codes: &Codes) -> Tensor<4> {
        self.generator.forward(self.layout.input(noise, codes))
    }
}

impl ImageSource for InfoGanSource {
    fn pixel_range(&self) -> PixelRange {
        PixelRange::MinusOneToOne
    }

    fn describe(&self) -> String {
        format!(
            "G(z, c, u), z ~ N(0, I) in R^{}, c = 0..{} in turn, u ~ U(-1, 1)^{}",
            self.layout.noise_dim,
            self.layout.categories - 1,
            self.layout.continuous
        )
    }

    /// The categorical code is not a class: no classes are reported.
    fn draw(&self, count: usize, seed: u64, device: &Device) -> Drawn {
        let noise = seeded_normal([count, self.layout.noise_dim], seed, device);
        // A stream of its own for the codes, so that the noise is that of other generators.
        let codes = self.codes(count, seed.wrapping_add(1));
        self.generate(noise, &codes).into()
    }

    /// Ten rows, one column per value of the categorical code.
    fn grid(&self, seed: u64, device: &Device) -> GridImages {
        let columns = self.layout.categories;
        GridImages {
            images: self.draw(10 * columns, seed, device).images,
            columns,
            row_classes: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::to_vec;
    use burn::module::Module;

    #[test]
    fn the_generator_input_is_noise_one_hot_code_and_continuous_codes() {
        let device = Device::flex();
        let layout = LatentLayout {
            noise_dim: 2,
            categories: 3,
            continuous: 1,
        };
        let noise = Tensor::<2>::from_floats([[0.5, -0.5], [1.0, 2.0]], &device);
        let codes = Codes {
            categories: vec![2, 0],
            continuous: vec![0.25, -0.75],
        };
        let input = layout.input(noise, &codes);
        assert_eq!(
            to_vec(input),
            [
                0.5, -0.5, 0.0, 0.0, 1.0, 0.25, 1.0, 2.0, 1.0, 0.0, 0.0, -0.75
            ]
        );
        assert_eq!(layout.input_dim(), 6);
        assert_eq!(LatentLayout::default().input_dim(), 74);
    }

    #[test]
    fn sampled_codes_are_in_range_and_cover_every_category() {
        let layout = LatentLayout::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let codes = layout.sample_codes(2000, &mut rng);
        assert_eq!(codes.continuous.len(), 4000);
        assert!(codes.continuous.iter().all(|u| (-1.0..1.0).contains(u)));
        let mut counts = [0usize; 10];
        codes.categories.iter().for_each(|&c| counts[c] += 1);
        // 200 expected per category; 4 standard deviations is about 54.
        assert!(
            counts.iter().all(|&n| (146..=254).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn the_code_losses_match_a_hand_computation() {
        let device = Device::flex();
        // Row 1: logits (0, ln 3) with c = 1: p = 3/4, CE = ln(4/3). Row 2: logits (0, 0) with
        // c = 0: CE = ln 2.
        let logits = Tensor::<2>::from_floats([[0.0, 3f32.ln()], [0.0, 0.0]], &device);
        let codes = Codes {
            categories: vec![1, 0],
            continuous: vec![0.0; 2],
        };
        let ce = categorical_code_loss(logits, codes.one_hot(2, &device)).into_scalar::<f32>();
        let expected = ((4.0f64 / 3.0).ln() + 2f64.ln()) / 2.0;
        assert!((ce as f64 - expected).abs() < 1e-6, "{ce} vs {expected}");
        // Uniform logits over K = 10 give CE = ln 10 and a bound of 0; a perfect Q gives ln 10.
        assert!((categorical_information_bound(10, 10f64.ln())).abs() < 1e-12);
        assert!((categorical_information_bound(10, 0.0) - 10f64.ln()).abs() < 1e-12);

        // Continuous: rows (1, -1) against means (0, 0) and (0.5, 0) against (0.5, 2):
        // (1 + 1) / 2 and (0 + 4) / 2, mean 1.5.
        let mean = Tensor::<2>::from_floats([[0.0, 0.0], [0.5, 2.0]], &device);
        let u = Tensor::<2>::from_floats([[1.0, -1.0], [0.5, 0.0]], &device);
        let nll = continuous_code_loss(mean, u).into_scalar::<f32>();
        assert!((nll - 1.5).abs() < 1e-6, "{nll}");
    }

    #[test]
    fn the_information_loss_trains_the_generator_and_q_but_not_ds_output_layer() {
        let device = Device::flex().autodiff();
        device.seed(2);
        let layout = LatentLayout::default();
        let generator = layout.generator().init(&device);
        let discriminator = layout.discriminator().init(&device);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let codes = layout.sample_codes(6, &mut rng);
        let noise = seeded_normal([6, layout.noise_dim], 3, &device);
        let images = generator.forward(layout.input(noise, &codes));
        assert_eq!(images.dims(), [6, 1, 28, 28]);
        let outputs = discriminator.forward(images);
        assert_eq!(outputs.logits.dims(), [6, 1]);
        assert_eq!(outputs.category_logits.dims(), [6, 10]);
        assert_eq!(outputs.continuous_mean.dims(), [6, 2]);
        let info = categorical_code_loss(outputs.category_logits, codes.one_hot(10, &device))
            + continuous_code_loss(outputs.continuous_mean, codes.continuous_tensor(&device))
                .mul_scalar(0.1);
        let grads = info.backward();
        let norm = |t: Tensor<2>| t.square().sum().into_scalar::<f32>();
        let grad_of = |w: &burn::module::Param<Tensor<2>>| w.val().grad(&grads).map(norm);
        // The generator's projection, Q's layers and the shared trunk get a gradient.
        assert!(grad_of(&generator.project.weight).unwrap() > 0.0);
        assert!(grad_of(&discriminator.q_hidden.weight).unwrap() > 0.0);
        assert!(grad_of(&discriminator.q_codes.weight).unwrap() > 0.0);
        let trunk = discriminator.discriminator.downsample1.weight.val();
        assert!(
            trunk
                .grad(&grads)
                .map(|g| to_vec(g.abs().sum())[0])
                .unwrap()
                > 0.0
        );
        // D's own output layer is not part of the bound.
        let classify = &discriminator.discriminator.classify.weight;
        assert!(grad_of(classify).is_none_or(|g| g == 0.0));
        assert!(discriminator.num_params() > generator.num_params() / 10);
    }
}
