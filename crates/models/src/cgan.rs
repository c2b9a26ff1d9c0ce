//! The conditional GAN of Mirza & Osindero (2014) on DCGAN networks: both players see the class
//! label y, so the generator learns p(x | y) and `G(z, y)` draws an image of a chosen class.
//!
//! - Generator: a learned embedding e(y) in R^k joined to z, `G(z, y) = G_dcgan([z, e(y)])`,
//!   the DCGAN generator with a latent size of `latent_dim + k`.
//! - Discriminator: a second learned embedding maps y to a 28x28 map, given to the DCGAN
//!   discriminator as an extra input channel: `D(x, y) = D_dcgan([x; m(y)])`.
//!
//! The objectives are those of [`crate::gan_loss`], with both terms conditioned on y.

use burn::nn::{Embedding, EmbeddingConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use crate::dcgan::{Discriminator, DiscriminatorConfig, Generator, GeneratorConfig};
use crate::layers::dcgan_weight_init;

/// Side of the images and of the discriminator's label map.
const IMAGE_SIDE: usize = 28;

/// Builds a [`ConditionalGenerator`].
#[derive(Config, Debug)]
pub struct ConditionalGeneratorConfig {
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Size of the noise vector z.
    #[config(default = 100)]
    pub latent_dim: usize,
    /// Size k of the label embedding joined to z.
    #[config(default = 50)]
    pub embedding_dim: usize,
}

/// G(z, y): noise and class -> image in `[-1, 1]`.
#[derive(Module, Debug)]
pub struct ConditionalGenerator {
    label_embedding: Embedding,
    generator: Generator,
    latent_dim: usize,
}

impl ConditionalGeneratorConfig {
    /// The label embedding ~ N(0, 1) (burn's default) and a DCGAN generator for `[z, e(y)]`.
    pub fn init(&self, device: &Device) -> ConditionalGenerator {
        ConditionalGenerator {
            label_embedding: EmbeddingConfig::new(self.num_classes, self.embedding_dim)
                .init(device),
            generator: GeneratorConfig::new()
                .with_latent_dim(self.latent_dim + self.embedding_dim)
                .init(device),
            latent_dim: self.latent_dim,
        }
    }
}

/// Looks up one embedding row per label: labels `[B]` -> `[B, dim]`.
fn embed(embedding: &Embedding, labels: Tensor<1, Int>) -> Tensor<2> {
    let [batch] = labels.dims();
    let rows = embedding.forward(labels.reshape([batch, 1])); // [B, 1, dim]
    rows.flatten(1, 2) // [B, dim]
}

impl ConditionalGenerator {
    /// Maps noise `[B, latent_dim]` and labels `[B]` to images `[B, 1, 28, 28]` in `[-1, 1]`.
    pub fn forward(&self, z: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<4> {
        let e = embed(&self.label_embedding, labels); // [B, k]
        let joined = Tensor::cat(vec![z, e], 1); // [B, latent_dim + k]
        self.generator.forward(joined) // [B, 1, 28, 28]
    }

    /// Draws `count` noise vectors from N(0, I): `[count, latent_dim]`.
    pub fn sample_latent(&self, count: usize, device: &Device) -> Tensor<2> {
        Tensor::random(
            [count, self.latent_dim],
            Distribution::Normal(0.0, 1.0),
            device,
        )
    }

    /// Size of the noise vector z.
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }
}

/// Builds a [`ConditionalDiscriminator`].
#[derive(Config, Debug)]
pub struct ConditionalDiscriminatorConfig {
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Channels after the first convolution of the DCGAN discriminator.
    #[config(default = 64)]
    pub base_channels: usize,
}

/// D(x, y) as a logit: image and class -> `l(x, y)`, `D = sigmoid(l)`.
#[derive(Module, Debug)]
pub struct ConditionalDiscriminator {
    label_map: Embedding,
    discriminator: Discriminator,
}

impl ConditionalDiscriminatorConfig {
    /// A 28x28 label map per class, N(0, 0.02) like the convolutions it feeds, and a DCGAN
    /// discriminator over two channels (image, label map).
    pub fn init(&self, device: &Device) -> ConditionalDiscriminator {
        ConditionalDiscriminator {
            label_map: EmbeddingConfig::new(self.num_classes, IMAGE_SIDE * IMAGE_SIDE)
                .with_initializer(dcgan_weight_init())
                .init(device),
            discriminator: DiscriminatorConfig::new()
                .with_image_channels(2)
                .with_base_channels(self.base_channels)
                .init(device),
        }
    }
}

impl ConditionalDiscriminator {
    /// Maps images `[B, 1, 28, 28]` and labels `[B]` to logits `[B, 1]`.
    pub fn forward(&self, images: Tensor<4>, labels: Tensor<1, Int>) -> Tensor<2> {
        let [batch, ..] = images.dims();
        let map = embed(&self.label_map, labels); // [B, 784]
        let map = map.reshape([batch, 1, IMAGE_SIDE, IMAGE_SIDE]); // [B, 1, 28, 28]
        let x = Tensor::cat(vec![images, map], 1); // [B, 2, 28, 28]
        self.discriminator.forward(x) // [B, 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn labels(values: &[i64], device: &Device) -> Tensor<1, Int> {
        Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
    }

    #[test]
    fn shapes() {
        let device = Device::flex();
        let generator = ConditionalGeneratorConfig::new().init(&device);
        let discriminator = ConditionalDiscriminatorConfig::new().init(&device);
        let z = generator.sample_latent(3, &device);
        assert_eq!(z.dims(), [3, 100]);
        let images = generator.forward(z, labels(&[0, 4, 9], &device));
        assert_eq!(images.dims(), [3, 1, 28, 28]);
        let logits = discriminator.forward(images, labels(&[0, 4, 9], &device));
        assert_eq!(logits.dims(), [3, 1]);
    }

    #[test]
    fn the_generated_image_depends_on_the_label_and_only_through_it() {
        let device = Device::flex();
        device.seed(1);
        let generator = ConditionalGeneratorConfig::new().init(&device).valid();
        // One z repeated for all ten classes, and the same z and class twice.
        let z = generator.sample_latent(1, &device).repeat_dim(0, 12);
        let classes = labels(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 3], &device);
        let images = generator.forward(z, classes);
        let pixels = images.into_data().try_to_vec::<f32>().unwrap();
        let image = |i: usize| &pixels[i * 784..(i + 1) * 784];
        let distance = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
        };
        for a in 0..10 {
            for b in (a + 1)..10 {
                assert!(
                    distance(image(a), image(b)) > 1e-3,
                    "classes {a} and {b} give the same image"
                );
            }
        }
        assert!(distance(image(10), image(11)) < 1e-6);
        assert!(distance(image(3), image(10)) < 1e-6);
    }

    #[test]
    fn the_discriminator_sees_the_label() {
        let device = Device::flex();
        device.seed(2);
        let discriminator = ConditionalDiscriminatorConfig::new().init(&device).valid();
        let images = Tensor::<4>::random([1, 1, 28, 28], Distribution::Uniform(-1.0, 1.0), &device)
            .repeat_dim(0, 2);
        let logits = discriminator
            .forward(images, labels(&[2, 7], &device))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!((logits[0] - logits[1]).abs() > 1e-6, "{logits:?}");
    }
}
