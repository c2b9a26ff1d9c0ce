//! BiGAN (Donahue, Krähenbühl & Darrell, 2017), the same model as ALI (Dumoulin et al., 2017):
//! a GAN that also learns the inverse map, from images back to the latent space.
//!
//! - The generator G(z) is DCGAN's, z ~ N(0, I).
//! - The encoder E(x) -> z is DCGAN's discriminator trunk ending in a linear layer to the latent
//!   space, deterministic and without a squashing non-linearity.
//! - The discriminator D(x, z) sees joint pairs: it tells `(x, E(x))`, x from the data, from
//!   `(G(z), z)`, z from the prior. Its image path is DCGAN's trunk, its latent path a dense
//!   layer, and a dense layer on the two together gives the logit.
//!
//! The value function (Eq. 3 of the BiGAN paper) is the GAN's on pairs:
//! `V(D, E, G) = E_x[log D(x, E(x))] + E_z[log(1 - D(G(z), z))]`. D maximises it; G and E
//! minimise it, in practice with the labels swapped (the non-saturating form, as the paper's
//! code): [`joint_discriminator_loss`] and [`encoder_generator_loss`]. At the optimum the two
//! joint distributions agree, which makes E invert G (Theorem 2 of the paper): G(E(x)) is then a
//! reconstruction of x that keeps what the latent space encodes, its class and shape, rather than
//! its pixels.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use genmodels_kernels::nn::linear;
use genmodels_kernels::{Activation, activate};

use crate::dcgan::{BASE_SIDE, downsample_features};
use crate::gan_loss::discriminator_loss;
use crate::layers::{dcgan_batch_norm, dcgan_downsample, dcgan_linear};
use crate::pytorch::PytorchNames;

pub use crate::dcgan::{DISCRIMINATOR, GENERATOR};

/// The encoder's name in a run folder: its Config's key in `config.json` and its record.
pub const ENCODER: &str = "encoder";

/// LeakyReLU slope of the encoder and the discriminator, as DCGAN's discriminator.
const LEAKY_SLOPE: f64 = 0.2;

/// Builds an [`Encoder`].
#[derive(Config, Debug)]
pub struct EncoderConfig {
    /// Size of the latent vector E returns: the generator's.
    #[config(default = 100)]
    pub latent_dim: usize,
    /// Channels of the input image.
    #[config(default = 1)]
    pub image_channels: usize,
    /// Channels after the first convolution (14x14); the second has twice as many (7x7).
    #[config(default = 64)]
    pub base_channels: usize,
}

/// E(x): image -> latent vector, DCGAN's discriminator trunk and a linear layer.
#[derive(Module, Debug)]
pub struct Encoder {
    downsample1: Conv2d,
    downsample2: Conv2d,
    downsample2_norm: BatchNorm,
    to_latent: Linear,
}

/// No PyTorch counterpart in `benches/pytorch_reference.py`: exported under its own paths.
impl PytorchNames for Encoder {}

impl EncoderConfig {
    /// DCGAN's initialisation, N(0, 0.02), for every layer.
    pub fn init(&self, device: &Device) -> Encoder {
        let double = self.base_channels * 2;
        Encoder {
            downsample1: dcgan_downsample([self.image_channels, self.base_channels], true, device),
            downsample2: dcgan_downsample([self.base_channels, double], false, device),
            downsample2_norm: dcgan_batch_norm(double, device),
            to_latent: dcgan_linear(
                double * BASE_SIDE * BASE_SIDE,
                self.latent_dim,
                true,
                device,
            ),
        }
    }
}

impl Encoder {
    /// Images `[B, C, 28, 28]` in `[-1, 1]` -> latent vectors `[B, latent_dim]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let features = downsample_features(
            &self.downsample1,
            &self.downsample2,
            &self.downsample2_norm,
            images,
        ); // [B, 6272]
        linear(&self.to_latent, features) // [B, latent_dim]
    }

    /// Size of the latent vectors this encoder returns.
    pub fn latent_dim(&self) -> usize {
        self.to_latent.weight.dims()[1]
    }
}

/// Builds a [`JointDiscriminator`].
#[derive(Config, Debug)]
pub struct JointDiscriminatorConfig {
    /// Size of the latent vectors of the pairs.
    #[config(default = 100)]
    pub latent_dim: usize,
    /// Channels of the input image.
    #[config(default = 1)]
    pub image_channels: usize,
    /// Channels after the image path's first convolution; the second has twice as many.
    #[config(default = 64)]
    pub base_channels: usize,
    /// Units of the latent path's dense layer.
    #[config(default = 512)]
    pub latent_hidden: usize,
    /// Units of the dense layer on the image and latent features together.
    #[config(default = 1024)]
    pub joint_hidden: usize,
    /// Dropout before the logit, as ALI's discriminator, which keeps D from winning outright.
    #[config(default = 0.2)]
    pub dropout: f64,
}

/// D(x, z) as a logit: a pair (image, latent vector) -> `l(x, z)`, with
/// `D(x, z) = sigmoid(l(x, z))` the probability that the pair is `(x, E(x))`.
#[derive(Module, Debug)]
pub struct JointDiscriminator {
    downsample1: Conv2d,
    downsample2: Conv2d,
    downsample2_norm: BatchNorm,
    latent_hidden: Linear,
    joint_hidden: Linear,
    dropout: Dropout,
    classify: Linear,
}

/// No PyTorch counterpart in `benches/pytorch_reference.py`: exported under its own paths.
impl PytorchNames for JointDiscriminator {}

impl JointDiscriminatorConfig {
    /// DCGAN's initialisation, N(0, 0.02), for every layer.
    pub fn init(&self, device: &Device) -> JointDiscriminator {
        let double = self.base_channels * 2;
        let image_features = double * BASE_SIDE * BASE_SIDE;
        JointDiscriminator {
            downsample1: dcgan_downsample([self.image_channels, self.base_channels], true, device),
            downsample2: dcgan_downsample([self.base_channels, double], false, device),
            downsample2_norm: dcgan_batch_norm(double, device),
            latent_hidden: dcgan_linear(self.latent_dim, self.latent_hidden, true, device),
            joint_hidden: dcgan_linear(
                image_features + self.latent_hidden,
                self.joint_hidden,
                true,
                device,
            ),
            dropout: DropoutConfig::new(self.dropout).init(),
            classify: dcgan_linear(self.joint_hidden, 1, true, device),
        }
    }
}

impl JointDiscriminator {
    /// Pairs of images `[B, C, 28, 28]` and latent vectors `[B, latent_dim]` -> logits `[B, 1]`.
    pub fn forward(&self, images: Tensor<4>, latent: Tensor<2>) -> Tensor<2> {
        let image_features = downsample_features(
            &self.downsample1,
            &self.downsample2,
            &self.downsample2_norm,
            images,
        ); // [B, 6272]
        let latent_features = activate(
            linear(&self.latent_hidden, latent),
            Activation::LeakyRelu(LEAKY_SLOPE),
        ); // [B, 512]
        let joint = Tensor::cat(vec![image_features, latent_features], 1); // [B, 6784]
        let joint = activate(
            linear(&self.joint_hidden, joint),
            Activation::LeakyRelu(LEAKY_SLOPE),
        ); // [B, 1024]
        linear(&self.classify, self.dropout.forward(joint)) // [B, 1]
    }
}

/// D's loss on the logits of the encoder's pairs `(x, E(x))` (labelled real) and of the
/// generator's pairs `(G(z), z)` (labelled fake), both `[B, 1]`:
/// `-E[log D(x, E(x))] - E[log(1 - D(G(z), z))]`.
pub fn joint_discriminator_loss(
    encoder_logits: Tensor<2>,
    generator_logits: Tensor<2>,
) -> Tensor<1> {
    discriminator_loss(encoder_logits, generator_logits)
}

/// The loss G and E minimise together: D's loss with the labels swapped,
/// `-E[log D(G(z), z)] - E[log(1 - D(x, E(x)))]`, the non-saturating form of minimising V.
pub fn encoder_generator_loss(encoder_logits: Tensor<2>, generator_logits: Tensor<2>) -> Tensor<1> {
    discriminator_loss(generator_logits, encoder_logits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcgan::GeneratorConfig;
    use crate::noise::seeded_normal;
    use crate::test_util::to_vec;
    use burn::module::Module;

    #[test]
    fn shapes_of_the_encoder_and_the_joint_discriminator() {
        let device = Device::flex();
        let encoder = EncoderConfig::new().with_latent_dim(16).init(&device);
        let discriminator = JointDiscriminatorConfig::new()
            .with_latent_dim(16)
            .init(&device);
        let images = Tensor::<4>::zeros([3, 1, 28, 28], &device);
        let codes = encoder.forward(images.clone());
        assert_eq!(codes.dims(), [3, 16]);
        assert_eq!(encoder.latent_dim(), 16);
        assert_eq!(discriminator.forward(images, codes).dims(), [3, 1]);
        // The encoder: DCGAN's trunk (conv 1->64 with bias, conv 64->128, BatchNorm's four
        // vectors) and the linear layer 6272 -> 16 with bias.
        let trunk = 64 * 16 + 64 + 64 * 128 * 16 + 4 * 128;
        assert_eq!(encoder.num_params(), trunk + 6272 * 16 + 16);
        // The discriminator adds the latent path 16 -> 512, the joint layer 6784 -> 1024 and
        // the logit 1024 -> 1, all with biases.
        let joint = 16 * 512 + 512 + (6272 + 512) * 1024 + 1024 + 1024 + 1;
        assert_eq!(discriminator.num_params(), trunk + joint);
    }

    #[test]
    fn the_losses_match_a_hand_computation() {
        let device = Device::flex();
        // Encoder pairs with logits (0, ln 3): D = 1/2 and 3/4. Generator pairs with logits
        // (0, -ln 3): D = 1/2 and 1/4.
        let encoder_logits = Tensor::<2>::from_floats([[0.0], [3f32.ln()]], &device);
        let generator_logits = Tensor::<2>::from_floats([[0.0], [-(3f32.ln())]], &device);
        // D: -mean(log 1/2, log 3/4) - mean(log(1 - 1/2), log(1 - 1/4)) = ln 2 + ln(4/3).
        let expected_d = 2f64.ln() + (4.0f64 / 3.0).ln();
        let d = joint_discriminator_loss(encoder_logits.clone(), generator_logits.clone());
        assert!((d.into_scalar::<f32>() as f64 - expected_d).abs() < 1e-6);
        // G and E: -mean(log 1/2, log 1/4) - mean(log(1 - 1/2), log(1 - 3/4)) = ln 2 + ln 4.
        let expected_ge = 2f64.ln() + 4f64.ln();
        let ge = encoder_generator_loss(encoder_logits, generator_logits);
        assert!((ge.into_scalar::<f32>() as f64 - expected_ge).abs() < 1e-6);
    }

    #[test]
    fn the_joint_discriminator_reads_both_halves_of_a_pair() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let discriminator = JointDiscriminatorConfig::new()
            .with_latent_dim(8)
            .with_dropout(0.0)
            .init(&device);
        let images = seeded_normal([4, 28 * 28], 1, &device).reshape([4, 1, 28, 28]);
        let latent = seeded_normal([4, 8], 2, &device);
        let images = images.require_grad();
        let latent = latent.require_grad();
        let logits = discriminator.forward(images.clone(), latent.clone());
        let grads = logits.sum().backward();
        let norm = |values: Vec<f32>| values.iter().map(|v| v * v).sum::<f32>();
        assert!(norm(to_vec(images.grad(&grads).unwrap())) > 0.0);
        assert!(norm(to_vec(latent.grad(&grads).unwrap())) > 0.0);
    }

    #[test]
    fn the_losses_train_the_networks_they_should_and_none_they_should_not() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let generator = GeneratorConfig::new().with_latent_dim(8).init(&device);
        let encoder = EncoderConfig::new().with_latent_dim(8).init(&device);
        let discriminator = JointDiscriminatorConfig::new()
            .with_latent_dim(8)
            .init(&device);
        let real = seeded_normal([4, 28 * 28], 1, &device).reshape([4, 1, 28, 28]);
        let z = seeded_normal([4, 8], 2, &device);
        let fake = generator.forward(z.clone());
        let code = encoder.forward(real.clone());
        let weight_grad = |grads: &burn::tensor::Gradients, w: &burn::module::Param<Tensor<2>>| {
            w.val()
                .grad(grads)
                .map(|g| to_vec(g.abs().sum())[0])
                .unwrap_or(0.0)
        };

        // D's step sees detached pairs: only D gets a gradient.
        let loss = joint_discriminator_loss(
            discriminator.forward(real.clone(), code.clone().detach()),
            discriminator.forward(fake.clone().detach(), z.clone()),
        );
        let grads = loss.backward();
        assert!(weight_grad(&grads, &discriminator.joint_hidden.weight) > 0.0);
        assert!(weight_grad(&grads, &discriminator.latent_hidden.weight) > 0.0);
        assert_eq!(weight_grad(&grads, &encoder.to_latent.weight), 0.0);
        assert!(generator.project.weight.val().grad(&grads).is_none());

        // G and E's step: the gradient reaches both through D, E's through its pair only.
        let loss = encoder_generator_loss(
            discriminator.forward(real, code),
            discriminator.forward(fake, z),
        );
        let grads = loss.backward();
        assert!(weight_grad(&grads, &encoder.to_latent.weight) > 0.0);
        assert!(weight_grad(&grads, &generator.project.weight) > 0.0);
    }
}
