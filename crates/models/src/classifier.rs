//! A small convolutional classifier for Fashion-MNIST, the feature network of the project's FID.
//!
//! Two convolution blocks (3x3 convolution, BatchNorm, ReLU, 2x2 max pooling) take a 28x28
//! image to a 32x7x7 map; a fully connected layer maps it to a 128-wide feature vector (after
//! ReLU), and a last linear layer to the 10 class logits. Dropout (p = 0.25) sits before each
//! linear layer. The feature vector `f(x)`, the penultimate layer, is what
//! [`crate::fid`] compares: `FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2})` over
//! `f` of real and generated images.
//!
//! Inputs are images with pixels in `[0, 1]` (the data's bytes divided by 255).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use genmodels_kernels::nn::{batch_norm, conv2d, linear};
use genmodels_kernels::{Activation, activate};

/// Side of the image after the two 2x2 poolings: 28 -> 14 -> 7.
const POOLED_SIDE: usize = 7;

/// Builds a [`Classifier`].
#[derive(Config, Debug)]
pub struct ClassifierConfig {
    /// Channels of the two convolution blocks (28x28 and 14x14).
    #[config(default = "[16, 32]")]
    pub channels: [usize; 2],
    /// Width of the penultimate layer: the feature vector FID uses.
    #[config(default = 128)]
    pub feature_dim: usize,
    /// Number of classes.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Dropout probability before each linear layer (active only on an autodiff device).
    #[config(default = 0.25)]
    pub dropout: f64,
}

/// Image -> class logits, with the penultimate features on the way.
#[derive(Module, Debug)]
pub struct Classifier {
    conv1: Conv2d,
    norm1: BatchNorm,
    conv2: Conv2d,
    norm2: BatchNorm,
    pool: MaxPool2d,
    dropout: Dropout,
    hidden: Linear,
    output: Linear,
}

/// No PyTorch counterpart in `benches/pytorch_reference.py`: exported under its own paths.
impl crate::pytorch::PytorchNames for Classifier {}

impl ClassifierConfig {
    /// Initialises the network with burn's default initialisations (Kaiming uniform).
    pub fn init(&self, device: &Device) -> Classifier {
        let [c1, c2] = self.channels;
        let conv = |channels: [usize; 2]| {
            Conv2dConfig::new(channels, [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device)
        };
        Classifier {
            conv1: conv([1, c1]),
            norm1: BatchNormConfig::new(c1).init(device),
            conv2: conv([c1, c2]),
            norm2: BatchNormConfig::new(c2).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            dropout: DropoutConfig::new(self.dropout).init(),
            hidden: LinearConfig::new(c2 * POOLED_SIDE * POOLED_SIDE, self.feature_dim)
                .init(device),
            output: LinearConfig::new(self.feature_dim, self.num_classes).init(device),
        }
    }
}

impl Classifier {
    /// The penultimate features `f(x)`: images `[B, 1, 28, 28]` in `[0, 1]` -> `[B, 128]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let x = batch_norm(&self.norm1, conv2d(&self.conv1, images), Activation::Relu); // [B, 16, 28, 28]
        let x = self.pool.forward(x); // [B, 16, 14, 14]
        let x = batch_norm(&self.norm2, conv2d(&self.conv2, x), Activation::Relu); // [B, 32, 14, 14]
        let x = self.pool.forward(x); // [B, 32, 7, 7]
        let x = self.dropout.forward(x.flatten(1, 3)); // [B, 1568]
        activate(linear(&self.hidden, x), Activation::Relu) // [B, 128]
    }

    /// Class logits from features: `[B, 128]` -> `[B, 10]`.
    pub fn classify(&self, features: Tensor<2>) -> Tensor<2> {
        linear(&self.output, self.dropout.forward(features)) // [B, 10]
    }

    /// Class logits: images `[B, 1, 28, 28]` in `[0, 1]` -> `[B, 10]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.classify(self.features(images)) // [B, 10]
    }

    /// Width of the feature vector.
    pub fn feature_dim(&self) -> usize {
        self.hidden.weight.dims()[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::tensor::Distribution;

    #[test]
    fn shapes_and_parameter_count() {
        let device = Device::flex();
        let classifier = ClassifierConfig::new().init(&device);
        let images = Tensor::<4>::random([3, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
        let x = classifier.conv1.forward(images.clone());
        assert_eq!(x.dims(), [3, 16, 28, 28]);
        let x = classifier.pool.forward(x);
        assert_eq!(x.dims(), [3, 16, 14, 14]);
        let x = classifier.pool.forward(classifier.conv2.forward(x));
        assert_eq!(x.dims(), [3, 32, 7, 7]);
        let features = classifier.features(images.clone());
        assert_eq!(features.dims(), [3, 128]);
        assert_eq!(classifier.feature_dim(), 128);
        assert_eq!(classifier.forward(images).dims(), [3, 10]);
        // burn counts a BatchNorm's running mean and variance beside gamma and beta.
        let expected = 9 * 16 // conv 1 -> 16, no bias
            + 4 * 16 // its BatchNorm
            + 16 * 32 * 9 // conv 16 -> 32, no bias
            + 4 * 32 // its BatchNorm
            + 1568 * 128 + 128 // hidden
            + 128 * 10 + 10; // output
        assert_eq!(classifier.num_params(), expected);
    }

    #[test]
    fn evaluation_is_deterministic_and_training_drops_out() {
        let device = Device::flex().autodiff();
        let classifier = ClassifierConfig::new().init(&device);
        let images = Tensor::<4>::random([4, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
        let a = classifier.features(images.clone()).inner();
        let b = classifier.features(images.clone()).inner();
        assert!(
            !a.all_close(b, None, None),
            "dropout draws a new mask per call"
        );
        let evaluated = classifier.valid();
        let images = images.inner();
        let c = evaluated.features(images.clone());
        let d = evaluated.features(images);
        assert!(
            c.all_close(d, Some(0.0), Some(0.0)),
            "no dropout when evaluating"
        );
    }
}
