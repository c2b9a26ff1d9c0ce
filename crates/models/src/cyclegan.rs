//! CycleGAN (Zhu, Park, Isola & Efros, 2017): translation between two image domains A and B
//! learned from unpaired examples, sized for 28x28 images.
//!
//! - Two generators, G_AB: A -> B and G_BA: B -> A, each a small ResNet as the paper's
//!   (Johnson et al.'s network): a 7x7 convolution, two stride-2 convolutions (28 -> 14 -> 7),
//!   residual blocks at 7x7, two stride-2 transposed convolutions back to 28 and a 7x7
//!   convolution to the image; instance normalisation and ReLU between, reflection padding
//!   around the 7x7 and residual convolutions, tanh at the end.
//! - Two PatchGAN discriminators, D_A and D_B: 4x4 stride-2 convolutions (28 -> 14 -> 7) and a
//!   3x3 convolution to a 7x7 map of scores, one per overlapping 18x18-pixel patch, so that D
//!   judges local texture and shape and the least-squares loss averages over the patches.
//! - The objective (Eq. 3 of the paper, with the least-squares GAN loss of its Sec. 4 and the
//!   identity term of its Sec. 5.2):
//!   `L = L_GAN(G_AB, D_B) + L_GAN(G_BA, D_A) + lambda_cyc L_cyc + lambda_id L_id`, with
//!   `L_cyc = E|G_BA(G_AB(a)) - a|_1 + E|G_AB(G_BA(b)) - b|_1` and
//!   `L_id = E|G_AB(b) - b|_1 + E|G_BA(a) - a|_1`.

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::ops::PadMode;
use genmodels_kernels::nn::{conv_transpose2d, conv2d, group_norm};
use genmodels_kernels::{Activation, activate};

use crate::layers::{dcgan_weight_init, downsample_config};
use crate::pytorch::PytorchNames;

/// Record names of the four networks in a run folder.
pub const GENERATOR_AB: &str = "generator_ab";
pub const GENERATOR_BA: &str = "generator_ba";
pub const DISCRIMINATOR_A: &str = "discriminator_a";
pub const DISCRIMINATOR_B: &str = "discriminator_b";

/// LeakyReLU slope of the discriminators, as the paper's.
const LEAKY_SLOPE: f64 = 0.2;

/// Instance normalisation without learned scale and shift, as the paper's code: a GroupNorm with
/// one group per channel.
fn instance_norm(channels: usize, device: &Device) -> GroupNorm {
    GroupNormConfig::new(channels, channels)
        .with_affine(false)
        .init(device)
}

/// A convolution with weights N(0, 0.02), the paper's initialisation, and no padding of its own
/// (the caller reflects the input).
fn unpadded_conv(channels: [usize; 2], kernel: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_initializer(dcgan_weight_init())
        .init(device)
}

/// `conv(reflect_pad(x))`: the convolution keeps the side, the border mirrored rather than zero.
fn reflect_conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let pad = conv.kernel_size[0] / 2;
    conv2d(conv, x.pad([(pad, pad), (pad, pad)], PadMode::Reflect))
}

/// Builds a [`ResnetGenerator`].
#[derive(Config, Debug)]
pub struct ResnetGeneratorConfig {
    /// Channels of the 28x28 feature maps; 14x14 has twice as many, 7x7 four times.
    #[config(default = 32)]
    pub channels: usize,
    /// Residual blocks at 7x7: the paper has 6 for 128x128 images and 9 for 256x256; 3 keep the
    /// receptive field past the whole 28x28 image.
    #[config(default = 3)]
    pub residual_blocks: usize,
    /// Channels of the images.
    #[config(default = 1)]
    pub image_channels: usize,
}

/// One residual block: `x + IN(conv(ReLU(IN(conv(x)))))`, both convolutions 3x3 with
/// reflection padding.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    conv1: Conv2d,
    norm1: GroupNorm,
    conv2: Conv2d,
    norm2: GroupNorm,
}

impl ResidualBlock {
    fn new(channels: usize, device: &Device) -> Self {
        Self {
            conv1: unpadded_conv([channels, channels], 3, device),
            norm1: instance_norm(channels, device),
            conv2: unpadded_conv([channels, channels], 3, device),
            norm2: instance_norm(channels, device),
        }
    }

    /// `[B, C, H, W]` -> `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = group_norm(
            &self.norm1,
            reflect_conv(&self.conv1, x.clone()),
            Activation::Relu,
        ); // [B, C, H, W]
        let h = group_norm(
            &self.norm2,
            reflect_conv(&self.conv2, h),
            Activation::Identity,
        ); // [B, C, H, W]
        x + h // [B, C, H, W]
    }
}

/// A generator G: image of one domain -> image of the other, in `[-1, 1]`.
#[derive(Module, Debug)]
pub struct ResnetGenerator {
    stem: Conv2d,
    stem_norm: GroupNorm,
    down1: Conv2d,
    down1_norm: GroupNorm,
    down2: Conv2d,
    down2_norm: GroupNorm,
    blocks: Vec<ResidualBlock>,
    up1: ConvTranspose2d,
    up1_norm: GroupNorm,
    up2: ConvTranspose2d,
    up2_norm: GroupNorm,
    to_image: Conv2d,
}

/// No PyTorch counterpart in `benches/pytorch_reference.py`: exported under its own paths.
impl PytorchNames for ResnetGenerator {}

/// A 3x3 convolution, stride 2, padding 1: halves an even side (28 -> 14 -> 7).
fn halving_conv(channels: [usize; 2], device: &Device) -> Conv2d {
    Conv2dConfig::new(channels, [3, 3])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_initializer(dcgan_weight_init())
        .init(device)
}

/// A 3x3 transposed convolution, stride 2, padding 1, output padding 1: doubles the side
/// (7 -> 14 -> 28), the inverse of [`halving_conv`].
fn doubling_conv(channels: [usize; 2], device: &Device) -> ConvTranspose2d {
    ConvTranspose2dConfig::new(channels, [3, 3])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .with_padding_out([1, 1])
        .with_initializer(dcgan_weight_init())
        .init(device)
}

impl ResnetGeneratorConfig {
    pub fn init(&self, device: &Device) -> ResnetGenerator {
        let c = self.channels;
        ResnetGenerator {
            stem: unpadded_conv([self.image_channels, c], 7, device),
            stem_norm: instance_norm(c, device),
            down1: halving_conv([c, 2 * c], device),
            down1_norm: instance_norm(2 * c, device),
            down2: halving_conv([2 * c, 4 * c], device),
            down2_norm: instance_norm(4 * c, device),
            blocks: (0..self.residual_blocks)
                .map(|_| ResidualBlock::new(4 * c, device))
                .collect(),
            up1: doubling_conv([4 * c, 2 * c], device),
            up1_norm: instance_norm(2 * c, device),
            up2: doubling_conv([2 * c, c], device),
            up2_norm: instance_norm(c, device),
            to_image: unpadded_conv([c, self.image_channels], 7, device),
        }
    }
}

impl ResnetGenerator {
    /// Images `[B, C, 28, 28]` in `[-1, 1]` -> images `[B, C, 28, 28]` in `[-1, 1]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let relu = Activation::Relu;
        let x = group_norm(&self.stem_norm, reflect_conv(&self.stem, images), relu); // [B, 32, 28, 28]
        let x = group_norm(&self.down1_norm, conv2d(&self.down1, x), relu); // [B, 64, 14, 14]
        let mut x = group_norm(&self.down2_norm, conv2d(&self.down2, x), relu); // [B, 128, 7, 7]
        for block in &self.blocks {
            x = block.forward(x); // [B, 128, 7, 7]
        }
        let x = group_norm(&self.up1_norm, conv_transpose2d(&self.up1, x), relu); // [B, 64, 14, 14]
        let x = group_norm(&self.up2_norm, conv_transpose2d(&self.up2, x), relu); // [B, 32, 28, 28]
        activate(reflect_conv(&self.to_image, x), Activation::Tanh) // [B, 1, 28, 28]
    }
}

/// Builds a [`PatchDiscriminator`].
#[derive(Config, Debug)]
pub struct PatchDiscriminatorConfig {
    /// Channels after the first convolution (14x14); the second has twice as many (7x7).
    #[config(default = 64)]
    pub channels: usize,
    /// Channels of the images.
    #[config(default = 1)]
    pub image_channels: usize,
}

/// A PatchGAN discriminator: an image -> a 7x7 map of scores, one per overlapping patch, each
/// seeing an 18x18-pixel window of the 28x28 image (4x4 stride 2, 4x4 stride 2, then 3x3).
/// The scores are unbounded: the least-squares loss compares them with 1 (real) and 0 (fake).
#[derive(Module, Debug)]
pub struct PatchDiscriminator {
    down1: Conv2d,
    down2: Conv2d,
    down2_norm: GroupNorm,
    score: Conv2d,
}

/// No PyTorch counterpart in `benches/pytorch_reference.py`: exported under its own paths.
impl PytorchNames for PatchDiscriminator {}

impl PatchDiscriminatorConfig {
    pub fn init(&self, device: &Device) -> PatchDiscriminator {
        let c = self.channels;
        let with_init = |config: Conv2dConfig| config.with_initializer(dcgan_weight_init());
        PatchDiscriminator {
            down1: with_init(downsample_config([self.image_channels, c])).init(device),
            down2: with_init(downsample_config([c, 2 * c])).init(device),
            down2_norm: instance_norm(2 * c, device),
            score: with_init(
                Conv2dConfig::new([2 * c, 1], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
            )
            .init(device),
        }
    }
}

impl PatchDiscriminator {
    /// Images `[B, C, 28, 28]` -> patch scores `[B, 1, 7, 7]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let x = activate(
            conv2d(&self.down1, images),
            Activation::LeakyRelu(LEAKY_SLOPE),
        ); // [B, 64, 14, 14]
        let x = conv2d(&self.down2, x); // [B, 128, 7, 7]
        let x = group_norm(&self.down2_norm, x, Activation::LeakyRelu(LEAKY_SLOPE)); // [B, 128, 7, 7]
        conv2d(&self.score, x) // [B, 1, 7, 7]
    }
}

/// The least-squares GAN loss of a discriminator (Mao et al., 2017, as CycleGAN uses it), on
/// the scores of real and translated images: `(E[(D(real) - 1)^2] + E[D(fake)^2]) / 2`, halved
/// as the paper does so that D learns at half G's rate.
pub fn least_squares_discriminator_loss(real: Tensor<4>, fake: Tensor<4>) -> Tensor<1> {
    (real.sub_scalar(1.0).square().mean() + fake.square().mean()).mul_scalar(0.5)
}

/// The least-squares GAN loss of a generator on D's scores of its images: `E[(D(G(x)) - 1)^2]`.
pub fn least_squares_generator_loss(fake: Tensor<4>) -> Tensor<1> {
    fake.sub_scalar(1.0).square().mean()
}

/// The mean absolute difference of two batches of images, the L1 distance of the cycle and
/// identity terms: `E|a - b|_1` per pixel.
pub fn l1_distance(a: Tensor<4>, b: Tensor<4>) -> Tensor<1> {
    (a - b).abs().mean()
}

/// The two generators and the terms of their objective on a batch of each domain.
pub struct CycleTerms {
    /// `L_GAN(G_AB, D_B) + L_GAN(G_BA, D_A)`.
    pub adversarial: Tensor<1>,
    /// `E|G_BA(G_AB(a)) - a| + E|G_AB(G_BA(b)) - b|`.
    pub cycle: Tensor<1>,
    /// `E|G_AB(b) - b| + E|G_BA(a) - a|`.
    pub identity: Tensor<1>,
    /// G_AB(a), `[B, 1, 28, 28]`.
    pub fake_b: Tensor<4>,
    /// G_BA(b), `[B, 1, 28, 28]`.
    pub fake_a: Tensor<4>,
}

/// The generators' terms of Eq. 3 on batches `real_a` and `real_b` (the identity term only when
/// `with_identity`, sparing two passes when its weight is 0).
pub fn generator_terms(
    generators: [&ResnetGenerator; 2],
    discriminators: [&PatchDiscriminator; 2],
    real_a: Tensor<4>,
    real_b: Tensor<4>,
    with_identity: bool,
) -> CycleTerms {
    let [g_ab, g_ba] = generators;
    let [d_a, d_b] = discriminators;
    let fake_b = g_ab.forward(real_a.clone()); // [B, 1, 28, 28]
    let fake_a = g_ba.forward(real_b.clone()); // [B, 1, 28, 28]
    let adversarial = least_squares_generator_loss(d_b.forward(fake_b.clone()))
        + least_squares_generator_loss(d_a.forward(fake_a.clone()));
    let cycle = l1_distance(g_ba.forward(fake_b.clone()), real_a.clone())
        + l1_distance(g_ab.forward(fake_a.clone()), real_b.clone());
    let identity = if with_identity {
        l1_distance(g_ab.forward(real_b.clone()), real_b)
            + l1_distance(g_ba.forward(real_a.clone()), real_a)
    } else {
        Tensor::zeros([1], &fake_a.device())
    };
    CycleTerms {
        adversarial,
        cycle,
        identity,
        fake_b,
        fake_a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::seeded_normal;
    use crate::test_util::to_vec;

    fn small(device: &Device) -> ([ResnetGenerator; 2], [PatchDiscriminator; 2]) {
        let g = ResnetGeneratorConfig::new()
            .with_channels(4)
            .with_residual_blocks(1);
        let d = PatchDiscriminatorConfig::new().with_channels(4);
        (
            [g.init(device), g.init(device)],
            [d.init(device), d.init(device)],
        )
    }

    fn images(seed: u64, device: &Device) -> Tensor<4> {
        activate(seeded_normal([2, 28 * 28], seed, device), Activation::Tanh)
            .reshape([2, 1, 28, 28])
    }

    #[test]
    fn shapes_and_parameter_counts() {
        let device = Device::flex();
        let generator = ResnetGeneratorConfig::new().init(&device);
        let discriminator = PatchDiscriminatorConfig::new().init(&device);
        let x = images(1, &device);
        let y = generator.forward(x.clone());
        assert_eq!(y.dims(), [2, 1, 28, 28]);
        assert!(to_vec(y).iter().all(|v| (-1.0..=1.0).contains(v)));
        assert_eq!(discriminator.forward(x).dims(), [2, 1, 7, 7]);
        // Convolutions with biases; instance norms have no parameters.
        let conv = |i: usize, o: usize, k: usize| i * o * k * k + o;
        let expected_g = conv(1, 32, 7)
            + conv(32, 64, 3)
            + conv(64, 128, 3)
            + 3 * 2 * conv(128, 128, 3)
            + conv(128, 64, 3)
            + conv(64, 32, 3)
            + conv(32, 1, 7);
        assert_eq!(generator.num_params(), expected_g);
        let expected_d = conv(1, 64, 4) + conv(64, 128, 4) + conv(128, 1, 3);
        assert_eq!(discriminator.num_params(), expected_d);
    }

    #[test]
    fn the_losses_match_a_hand_computation() {
        let device = Device::flex();
        let scores =
            |values: [f32; 4]| Tensor::<1>::from_floats(values, &device).reshape([1, 1, 2, 2]);
        // Real scores (1, 0, 2, 1): (0 + 1 + 1 + 0) / 4 = 0.5. Fake (0, 1, -1, 0.5):
        // (0 + 1 + 1 + 0.25) / 4 = 0.5625. D: (0.5 + 0.5625) / 2.
        let real = scores([1.0, 0.0, 2.0, 1.0]);
        let fake = scores([0.0, 1.0, -1.0, 0.5]);
        let d = least_squares_discriminator_loss(real, fake.clone()).into_scalar::<f32>();
        assert!((d - 0.53125).abs() < 1e-6, "{d}");
        // G on the fakes: (1 + 0 + 4 + 0.25) / 4.
        let g = least_squares_generator_loss(fake).into_scalar::<f32>();
        assert!((g - 1.3125).abs() < 1e-6, "{g}");
        // L1: |0.5 - 0| + |-1 - 1| + |0 - 0| + |0.25 - 1| over 4 = 0.8125.
        let a = scores([0.5, -1.0, 0.0, 0.25]);
        let b = scores([0.0, 1.0, 0.0, 1.0]);
        assert!((l1_distance(a, b).into_scalar::<f32>() - 0.8125).abs() < 1e-6);
    }

    #[test]
    fn the_cycle_and_identity_terms_are_those_of_the_equations() {
        let device = Device::flex();
        device.seed(1);
        let ([g_ab, g_ba], [d_a, d_b]) = small(&device);
        let (a, b) = (images(2, &device), images(3, &device));
        let terms = generator_terms([&g_ab, &g_ba], [&d_a, &d_b], a.clone(), b.clone(), true);
        let scalar = |t: Tensor<1>| t.into_scalar::<f32>() as f64;
        let mean_abs = |x: Tensor<4>, y: Tensor<4>| {
            let (x, y) = (to_vec(x), to_vec(y));
            x.iter()
                .zip(&y)
                .map(|(p, q)| (p - q).abs() as f64)
                .sum::<f64>()
                / x.len() as f64
        };
        let cycle = mean_abs(g_ba.forward(g_ab.forward(a.clone())), a.clone())
            + mean_abs(g_ab.forward(g_ba.forward(b.clone())), b.clone());
        let identity =
            mean_abs(g_ab.forward(b.clone()), b.clone()) + mean_abs(g_ba.forward(a.clone()), a);
        assert!((scalar(terms.cycle) - cycle).abs() < 1e-5 * cycle.max(1.0));
        assert!((scalar(terms.identity) - identity).abs() < 1e-5 * identity.max(1.0));
        let squares = |x: Tensor<4>| {
            to_vec(x)
                .iter()
                .map(|s| ((s - 1.0) as f64).powi(2))
                .sum::<f64>()
                / 98.0
        };
        let adversarial = squares(d_b.forward(g_ab.forward(images(2, &device))))
            + squares(d_a.forward(g_ba.forward(images(3, &device))));
        assert!((scalar(terms.adversarial) - adversarial).abs() < 1e-5 * adversarial.max(1.0));
    }

    #[test]
    fn the_generator_terms_reach_both_generators_and_no_discriminator_update_is_implied() {
        let device = Device::flex().autodiff();
        device.seed(2);
        let ([g_ab, g_ba], [d_a, d_b]) = small(&device);
        let (a, b) = (images(4, &device), images(5, &device));
        let weight_grad = |grads: &burn::tensor::Gradients, conv: &Conv2d| {
            conv.weight
                .val()
                .grad(grads)
                .map(|g| to_vec(g.abs().sum())[0])
                .unwrap_or(0.0)
        };
        // The cycle term alone trains both generators and has no path to either D.
        let terms = generator_terms([&g_ab, &g_ba], [&d_a, &d_b], a.clone(), b.clone(), false);
        let grads = terms.cycle.backward();
        assert!(weight_grad(&grads, &g_ab.stem) > 0.0);
        assert!(weight_grad(&grads, &g_ba.stem) > 0.0);
        assert_eq!(weight_grad(&grads, &d_a.down1), 0.0);
        assert_eq!(weight_grad(&grads, &d_b.down1), 0.0);
        // D's loss on detached translations trains D alone.
        let terms = generator_terms([&g_ab, &g_ba], [&d_a, &d_b], a, b.clone(), false);
        let loss =
            least_squares_discriminator_loss(d_b.forward(b), d_b.forward(terms.fake_b.detach()));
        let grads = loss.backward();
        assert!(weight_grad(&grads, &d_b.down1) > 0.0);
        assert_eq!(weight_grad(&grads, &g_ab.stem), 0.0);
        assert_eq!(weight_grad(&grads, &d_a.down1), 0.0);
    }
}
