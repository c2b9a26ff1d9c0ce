//! The variational autoencoder of Kingma & Welling (2014), "Auto-Encoding Variational Bayes",
//! sized for 28x28 images, and the plain autoencoder it reduces to.
//!
//! - The encoder q(z|x) = N(mu(x), diag sigma^2(x)) maps an image to the mean and the log-variance
//!   of a Gaussian over the latent space R^d.
//! - The decoder p(x|z) = prod_i Bernoulli(x_i; sigmoid(l_i(z))) maps a latent vector to one logit
//!   per pixel, for pixels in [0, 1].
//! - Training minimises the negative evidence lower bound per image,
//!
//!   `-ELBO(x) = E_q[-log p(x|z)] + beta * KL(q(z|x) || N(0, I))`,
//!
//!   the first term estimated with one reparameterised sample `z = mu + sigma * eps`, the second
//!   in closed form. `beta = 1` is the ELBO itself; other values give the beta-VAE of Higgins et
//!   al. (2017).
//! - The plain autoencoder ([`VaeConfig::variational`] = false) is the same network with the
//!   deterministic code `z = mu` and no KL term: its log-variance outputs are never used.
//! - The code is a vector by default (a fully connected layer after the convolutions). With
//!   [`VaeConfig::latent_channels`] = C it is a `C x 7 x 7` feature map instead, both networks
//!   convolutional to it, as the autoencoders of latent diffusion (Rombach et al., 2022): the
//!   maths above is unchanged, on the code flattened to `d = 49 C` values.

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::sigmoid;
use genmodels_kernels::nn::{conv_transpose2d, conv2d, linear};
use genmodels_kernels::{Activation, activate};

use crate::gan_loss::stable_softplus;
use crate::image_source::{Drawn, ImageSource, PixelRange};
use crate::layers::{downsample_config, upsample_config};
use crate::noise::seeded_normal;
use crate::pytorch::PytorchNames;

/// The network's name in a run folder: its Config's key in `config.json` and its record
/// `vae.bpk`.
pub const VAE: &str = "vae";

/// Side of the smallest feature map: 28 -> 14 -> 7.
const BASE_SIDE: usize = 7;

/// The latent size of a spatial code of `channels` 7x7 feature maps.
pub fn spatial_latent_dim(channels: usize) -> usize {
    channels * BASE_SIDE * BASE_SIDE
}

/// `[C, H, W]` of the code: `[d, 1, 1]` for a vector, `[C, 7, 7]` for a spatial code.
fn code_shape(latent_dim: usize, latent_channels: Option<usize>) -> [usize; 3] {
    match latent_channels {
        Some(channels) => [channels, BASE_SIDE, BASE_SIDE],
        None => [latent_dim, 1, 1],
    }
}

/// # Panics
///
/// When `latent_dim` is not the size of a code of `channels` 7x7 maps.
fn assert_spatial_latent_dim(latent_dim: usize, channels: usize) {
    assert_eq!(
        latent_dim,
        spatial_latent_dim(channels),
        "a spatial code of {channels} 7x7 maps"
    );
}

/// A 3x3 convolution with padding 1 between the 7x7 feature map and a spatial code.
fn spatial_conv(channels: [usize; 2], device: &Device) -> Conv2d {
    Conv2dConfig::new(channels, [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// Builds an [`Encoder`].
#[derive(Config, Debug)]
pub struct EncoderConfig {
    /// Size d of the latent space.
    #[config(default = 16)]
    pub latent_dim: usize,
    /// Channels of the two feature maps, 14x14 and 7x7.
    #[config(default = "[32, 64]")]
    pub channels: [usize; 2],
    /// Units of the fully connected hidden layer (vector codes only).
    #[config(default = 256)]
    pub hidden: usize,
    /// `Some(C)`: a spatial code of C 7x7 maps (then `latent_dim` is 49 C); `None`: a vector.
    pub latent_channels: Option<usize>,
}

/// The parameters of q(z|x) = N(mu, diag exp(log_var)), each `[B, d]`.
#[derive(Debug, Clone)]
pub struct Posterior {
    pub mu: Tensor<2>,
    pub log_var: Tensor<2>,
}

/// q(z|x): image -> (mu, log sigma^2).
///
/// A vector code comes from `hidden` and `to_posterior`, a spatial one from
/// `to_spatial_posterior`; the other layers are absent. (Options rather than an enum, so that
/// the records of vector-code runs keep their names.)
#[derive(Module, Debug)]
pub struct Encoder {
    downsample1: Conv2d,
    downsample2: Conv2d,
    hidden: Option<Linear>,
    to_posterior: Option<Linear>,
    to_spatial_posterior: Option<Conv2d>,
    latent_dim: usize,
    latent_channels: Option<usize>,
}

impl EncoderConfig {
    /// Initialises the encoder with burn's default (Kaiming-uniform) initialisation, PyTorch's.
    ///
    /// # Panics
    ///
    /// When a spatial code's `latent_dim` is not 49 times its channels.
    pub fn init(&self, device: &Device) -> Encoder {
        let down = |channels| downsample_config(channels).init(device);
        let [c1, c2] = self.channels;
        let (hidden, to_posterior, to_spatial_posterior) = match self.latent_channels {
            None => (
                Some(LinearConfig::new(c2 * BASE_SIDE * BASE_SIDE, self.hidden).init(device)),
                Some(LinearConfig::new(self.hidden, 2 * self.latent_dim).init(device)),
                None,
            ),
            Some(channels) => {
                assert_spatial_latent_dim(self.latent_dim, channels);
                (None, None, Some(spatial_conv([c2, 2 * channels], device)))
            }
        };
        Encoder {
            downsample1: down([1, c1]),
            downsample2: down([c1, c2]),
            hidden,
            to_posterior,
            to_spatial_posterior,
            latent_dim: self.latent_dim,
            latent_channels: self.latent_channels,
        }
    }
}

impl Encoder {
    /// Maps images `[B, 1, 28, 28]` in [0, 1] to the posterior's mean and log-variance, each
    /// `[B, d]` (a spatial code flattened channel by channel).
    pub fn forward(&self, images: Tensor<4>) -> Posterior {
        let x = activate(conv2d(&self.downsample1, images), Activation::Relu); // [B, 32, 14, 14]
        let x = activate(conv2d(&self.downsample2, x), Activation::Relu); // [B, 64, 7, 7]
        let (mu, log_var) = match (&self.hidden, &self.to_posterior, &self.to_spatial_posterior) {
            (Some(hidden), Some(to_posterior), None) => {
                let x = activate(linear(hidden, x.flatten(1, 3)), Activation::Relu); // [B, 256]
                let stats = linear(to_posterior, x); // [B, 2d]
                (
                    stats.clone().narrow(1, 0, self.latent_dim), // [B, d]
                    stats.narrow(1, self.latent_dim, self.latent_dim), // [B, d]
                )
            }
            (None, None, Some(to_spatial_posterior)) => {
                let stats = conv2d(to_spatial_posterior, x); // [B, 2C, 7, 7]
                let channels = self.latent_dim / (BASE_SIDE * BASE_SIDE);
                (
                    stats.clone().narrow(1, 0, channels).flatten(1, 3), // [B, 49C]
                    stats.narrow(1, channels, channels).flatten(1, 3),  // [B, 49C]
                )
            }
            _ => unreachable!("EncoderConfig::init builds one head"),
        };
        Posterior { mu, log_var }
    }

    /// Size d of the latent space.
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    /// `[C, H, W]` of the code: `[d, 1, 1]` for a vector, `[C, 7, 7]` for a spatial code.
    pub fn code_shape(&self) -> [usize; 3] {
        code_shape(self.latent_dim, self.latent_channels)
    }
}

/// Builds a [`Decoder`].
#[derive(Config, Debug)]
pub struct DecoderConfig {
    /// Size d of the latent space.
    #[config(default = 16)]
    pub latent_dim: usize,
    /// Channels of the two feature maps, 14x14 and 7x7 (the encoder's, mirrored).
    #[config(default = "[32, 64]")]
    pub channels: [usize; 2],
    /// Units of the fully connected hidden layer (vector codes only).
    #[config(default = 256)]
    pub hidden: usize,
    /// `Some(C)`: a spatial code of C 7x7 maps (then `latent_dim` is 49 C); `None`: a vector.
    pub latent_channels: Option<usize>,
}

/// p(x|z): latent code -> one Bernoulli logit per pixel.
///
/// A vector code goes through `hidden` and `project`, a spatial one through `from_spatial`;
/// the other layers are absent.
#[derive(Module, Debug)]
pub struct Decoder {
    hidden: Option<Linear>,
    project: Option<Linear>,
    from_spatial: Option<Conv2d>,
    upsample: ConvTranspose2d,
    to_logits: ConvTranspose2d,
    latent_dim: usize,
    latent_channels: Option<usize>,
    /// Channels of the 7x7 feature map the projection is reshaped to.
    base_channels: usize,
}

impl DecoderConfig {
    /// Initialises the decoder with burn's default (Kaiming-uniform) initialisation.
    ///
    /// # Panics
    ///
    /// When a spatial code's `latent_dim` is not 49 times its channels.
    pub fn init(&self, device: &Device) -> Decoder {
        let up = |channels| upsample_config(channels).init(device);
        let [c1, c2] = self.channels;
        let (hidden, project, from_spatial) = match self.latent_channels {
            None => (
                Some(LinearConfig::new(self.latent_dim, self.hidden).init(device)),
                Some(LinearConfig::new(self.hidden, c2 * BASE_SIDE * BASE_SIDE).init(device)),
                None,
            ),
            Some(channels) => {
                assert_spatial_latent_dim(self.latent_dim, channels);
                (None, None, Some(spatial_conv([channels, c2], device)))
            }
        };
        Decoder {
            hidden,
            project,
            from_spatial,
            upsample: up([c2, c1]),
            to_logits: up([c1, 1]),
            latent_dim: self.latent_dim,
            latent_channels: self.latent_channels,
            base_channels: c2,
        }
    }
}

impl Decoder {
    /// Maps latent codes `[B, d]` (a spatial code flattened channel by channel) to pixel logits
    /// `[B, 1, 28, 28]`: `p(x_i = 1 | z) = sigmoid(l_i)`.
    pub fn forward(&self, z: Tensor<2>) -> Tensor<4> {
        let [batch, _] = z.dims();
        let x = match (&self.hidden, &self.project, &self.from_spatial) {
            (Some(hidden), Some(project), None) => {
                let x = activate(linear(hidden, z), Activation::Relu); // [B, 256]
                let x = activate(linear(project, x), Activation::Relu); // [B, 3136]
                x.reshape([batch, self.base_channels, BASE_SIDE, BASE_SIDE]) // [B, 64, 7, 7]
            }
            (None, None, Some(from_spatial)) => {
                let [channels, side, _] = self.code_shape();
                let z = z.reshape([batch, channels, side, side]); // [B, C, 7, 7]
                activate(conv2d(from_spatial, z), Activation::Relu) // [B, 64, 7, 7]
            }
            _ => unreachable!("DecoderConfig::init builds one head"),
        };
        let x = activate(conv_transpose2d(&self.upsample, x), Activation::Relu); // [B, 32, 14, 14]
        conv_transpose2d(&self.to_logits, x) // [B, 1, 28, 28]
    }

    /// The decoder's mean image `E[x | z] = sigmoid(l(z))`, `[B, 1, 28, 28]` in [0, 1].
    pub fn decode(&self, z: Tensor<2>) -> Tensor<4> {
        sigmoid(self.forward(z))
    }

    /// Size d of the latent vectors it decodes.
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    /// `[C, H, W]` of the code: `[d, 1, 1]` for a vector, `[C, 7, 7]` for a spatial code.
    pub fn code_shape(&self) -> [usize; 3] {
        code_shape(self.latent_dim, self.latent_channels)
    }
}

/// The decoder's mean image `sigmoid(l(z))` with `z ~ N(0, I)` drawn on the host from the seed.
impl ImageSource for Decoder {
    fn pixel_range(&self) -> PixelRange {
        PixelRange::ZeroToOne
    }

    fn describe(&self) -> String {
        format!(
            "decoder mean sigmoid(l(z)), z ~ N(0, I) in R^{}",
            self.latent_dim
        )
    }

    fn draw(&self, count: usize, seed: u64, device: &Device) -> Drawn {
        let z = seeded_normal([count, self.latent_dim], seed, device); // [count, d]
        self.decode(z).into() // [count, 1, 28, 28]
    }
}

/// Builds a [`Vae`].
#[derive(Config, Debug)]
pub struct VaeConfig {
    /// Size d of the latent space.
    #[config(default = 16)]
    pub latent_dim: usize,
    /// A variational autoencoder (sampled z, KL term) when true; a plain autoencoder
    /// (z = mu, no KL term) when false.
    #[config(default = true)]
    pub variational: bool,
    /// Channels of the two feature maps, 14x14 and 7x7, in both networks.
    #[config(default = "[32, 64]")]
    pub channels: [usize; 2],
    /// Units of the fully connected hidden layer of both networks (vector codes only).
    #[config(default = 256)]
    pub hidden: usize,
    /// `Some(C)`: a spatial code of C 7x7 maps, `latent_dim` = 49 C ([`spatial_latent_dim`]);
    /// `None`: a vector code.
    pub latent_channels: Option<usize>,
}

/// Encoder and decoder together.
#[derive(Module, Debug)]
pub struct Vae {
    pub encoder: Encoder,
    pub decoder: Decoder,
    variational: bool,
}

/// The names of `Vae` in `benches/pytorch_reference.py`: two `nn.Sequential`s, whose indices
/// count the activations and reshapes between the layers.
impl PytorchNames for Vae {
    const RENAMES: &'static [(&'static str, &'static str)] = &[
        ("encoder.downsample1", "enc.0"),
        ("encoder.downsample2", "enc.2"),
        ("encoder.hidden", "enc.5"),
        ("encoder.to_posterior", "enc.7"),
        ("decoder.hidden", "dec.0"),
        ("decoder.project", "dec.2"),
        ("decoder.upsample", "dec.5"),
        ("decoder.to_logits", "dec.7"),
    ];
}

impl VaeConfig {
    pub fn init(&self, device: &Device) -> Vae {
        Vae {
            encoder: EncoderConfig::new()
                .with_latent_dim(self.latent_dim)
                .with_channels(self.channels)
                .with_hidden(self.hidden)
                .with_latent_channels(self.latent_channels)
                .init(device),
            decoder: DecoderConfig::new()
                .with_latent_dim(self.latent_dim)
                .with_channels(self.channels)
                .with_hidden(self.hidden)
                .with_latent_channels(self.latent_channels)
                .init(device),
            variational: self.variational,
        }
    }
}

/// The two terms of the negative ELBO for each image of a batch, `[B]` each, in nats.
#[derive(Debug, Clone)]
pub struct ElboTerms {
    /// `-log p(x|z) = sum_i BCE(x_i, sigmoid(l_i))` at one z per image.
    pub reconstruction: Tensor<1>,
    /// `KL(q(z|x) || N(0, I))` in closed form; zeros for the plain autoencoder.
    pub kl: Tensor<1>,
}

impl ElboTerms {
    /// The training loss `mean_b [reconstruction_b + beta * kl_b]`, one element.
    pub fn loss(&self, beta: f64) -> Tensor<1> {
        (self.reconstruction.clone() + self.kl.clone() * beta).mean()
    }
}

/// One forward pass of [`Vae::reconstruct`].
#[derive(Debug, Clone)]
pub struct Reconstruction {
    /// Pixel logits `[B, 1, 28, 28]`.
    pub logits: Tensor<4>,
    pub posterior: Posterior,
    pub terms: ElboTerms,
}

/// How the latent code of an image is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `z = mu + sigma * eps`, eps ~ N(0, I): the reparameterised sample training uses.
    Sample,
    /// `z = mu`: the posterior mean, for reconstructions and the latent-space analysis.
    Mean,
}

impl Vae {
    /// Whether this is a VAE (true) or a plain autoencoder (false).
    pub fn is_variational(&self) -> bool {
        self.variational
    }

    /// Size d of the latent space.
    pub fn latent_dim(&self) -> usize {
        self.encoder.latent_dim()
    }

    /// `[C, H, W]` of the code: `[d, 1, 1]` for a vector, `[C, 7, 7]` for a spatial code.
    pub fn code_shape(&self) -> [usize; 3] {
        self.encoder.code_shape()
    }

    /// Encodes `images` `[B, 1, 28, 28]`, chooses z per `code` (always mu for the plain
    /// autoencoder) and returns the pixel logits `[B, 1, 28, 28]` with the posterior.
    pub fn forward(&self, images: Tensor<4>, code: Code) -> (Tensor<4>, Posterior) {
        let posterior = self.encoder.forward(images); // mu, log_var: [B, d]
        let z = match (code, self.variational) {
            (Code::Sample, true) => {
                let eps = Tensor::random_like(&posterior.mu, Distribution::Normal(0.0, 1.0));
                reparameterize(posterior.mu.clone(), posterior.log_var.clone(), eps)
            }
            _ => posterior.mu.clone(),
        }; // [B, d]
        (self.decoder.forward(z), posterior)
    }

    /// The negative-ELBO terms of each image in `images` (pixels in [0, 1]).
    pub fn elbo_terms(&self, images: Tensor<4>, code: Code) -> ElboTerms {
        self.reconstruct(images, code).terms
    }

    /// The forward pass with everything it computes: logits, posterior and ELBO terms.
    pub fn reconstruct(&self, images: Tensor<4>, code: Code) -> Reconstruction {
        let (logits, posterior) = self.forward(images.clone(), code);
        let reconstruction = bernoulli_nll(logits.clone(), images);
        let kl = if self.variational {
            kl_to_standard_normal(posterior.mu.clone(), posterior.log_var.clone())
        } else {
            reconstruction.zeros_like()
        };
        Reconstruction {
            logits,
            posterior,
            terms: ElboTerms { reconstruction, kl },
        }
    }

    /// Draws `count` latent vectors from the prior N(0, I): `[count, d]`.
    pub fn sample_prior(&self, count: usize, device: &Device) -> Tensor<2> {
        Tensor::random(
            [count, self.latent_dim()],
            Distribution::Normal(0.0, 1.0),
            device,
        )
    }
}

/// The reparameterisation trick: `z = mu + exp(log_var / 2) * eps`.
///
/// `eps ~ N(0, I)` is drawn outside, so the only random node has no parameters and the
/// gradients `dz/dmu = 1` and `dz/dlog_var = sigma * eps / 2` reach the encoder.
pub fn reparameterize(mu: Tensor<2>, log_var: Tensor<2>, eps: Tensor<2>) -> Tensor<2> {
    mu + (log_var * 0.5).exp() * eps
}

/// `KL(N(mu, diag sigma^2) || N(0, I)) = 1/2 sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)`
/// (Kingma & Welling 2014, appendix B), per row: `[B, d]` -> `[B]`, in nats.
pub fn kl_to_standard_normal(mu: Tensor<2>, log_var: Tensor<2>) -> Tensor<1> {
    let terms = mu.square() + log_var.clone().exp() - log_var - 1.0; // [B, d]
    terms.sum_dim(1).squeeze_dim(1) * 0.5 // [B]
}

/// `-log p(x|l) = sum_i [softplus(l_i) - x_i l_i]`, the binary cross-entropy of targets
/// `x_i` in [0, 1] against `sigmoid(l_i)`, summed over the pixels of each image:
/// `[B, C, H, W]` -> `[B]`, in nats. Computed from logits, so it is finite for any logit.
pub fn bernoulli_nll(logits: Tensor<4>, targets: Tensor<4>) -> Tensor<1> {
    let per_pixel = stable_softplus(logits.clone()) - logits * targets; // [B, C, H, W]
    per_pixel.flatten::<2>(1, 3).sum_dim(1).squeeze_dim(1) // [B]
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::optim::{AdamConfig, GradientsParams};
    use burn::tensor::TensorData;

    fn matrix(values: &[f32], cols: usize, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(values.to_vec(), [values.len() / cols, cols]),
            device,
        )
    }

    fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f64> {
        t.into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect()
    }

    #[test]
    fn shapes_layer_by_layer_and_parameter_count() {
        let device = Device::flex();
        let vae = VaeConfig::new().with_latent_dim(5).init(&device);
        let images = Tensor::<4>::random([3, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
        let posterior = vae.encoder.forward(images.clone());
        assert_eq!(posterior.mu.dims(), [3, 5]);
        assert_eq!(posterior.log_var.dims(), [3, 5]);
        let x = vae.encoder.downsample1.forward(images.clone());
        assert_eq!(x.dims(), [3, 32, 14, 14]);
        assert_eq!(vae.encoder.downsample2.forward(x).dims(), [3, 64, 7, 7]);
        let (logits, _) = vae.forward(images.clone(), Code::Sample);
        assert_eq!(logits.dims(), [3, 1, 28, 28]);
        let terms = vae.elbo_terms(images, Code::Sample);
        assert_eq!(terms.reconstruction.dims(), [3]);
        assert_eq!(terms.kl.dims(), [3]);
        assert_eq!(terms.loss(1.0).dims(), [1]);
        assert_eq!(
            vae.decoder.decode(vae.sample_prior(4, &device)).dims(),
            [4, 1, 28, 28]
        );

        let d = 5;
        let encoder =
            (16 * 32 + 32) + (32 * 16 * 64 + 64) + (3136 * 256 + 256) + (256 * 2 * d + 2 * d);
        let decoder = (d * 256 + 256) + (256 * 3136 + 3136) + (64 * 32 * 16 + 32) + (32 * 16 + 1);
        assert_eq!(vae.encoder.num_params(), encoder);
        assert_eq!(vae.decoder.num_params(), decoder);
        assert_eq!(vae.code_shape(), [5, 1, 1]);
    }

    #[test]
    fn a_spatial_code_is_a_stack_of_7x7_maps_each_seeing_its_neighbourhood() {
        let device = Device::flex();
        let c = 3;
        let vae = VaeConfig::new()
            .with_latent_dim(spatial_latent_dim(c))
            .with_latent_channels(Some(c))
            .init(&device);
        assert_eq!(vae.code_shape(), [3, 7, 7]);
        assert_eq!(vae.latent_dim(), 147);
        let images = Tensor::<4>::random([2, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
        let posterior = vae.encoder.forward(images.clone());
        assert_eq!(posterior.mu.dims(), [2, 147]);
        assert_eq!(posterior.log_var.dims(), [2, 147]);
        assert_eq!(
            vae.forward(images.clone(), Code::Mean).0.dims(),
            [2, 1, 28, 28]
        );
        // No dense layer: an image changed only in its top-left 4x4 pixels changes the code of
        // the top-left positions only (row i of the code sees the image rows 4i - 7 to 4i + 10).
        let patch = Tensor::<4>::ones([2, 1, 4, 4], &device);
        let changed = images.clone().slice_assign([0..2, 0..1, 0..4, 0..4], patch);
        let delta = (vae.encoder.forward(changed).mu - posterior.mu)
            .abs()
            .reshape([2, c, 7, 7]);
        let far = delta
            .clone()
            .slice([0..2, 0..c, 3..7, 3..7])
            .max()
            .into_scalar::<f32>();
        let near = delta
            .slice([0..2, 0..c, 0..1, 0..1])
            .max()
            .into_scalar::<f32>();
        assert_eq!(far, 0.0);
        assert!(near > 0.0);

        // Encoder: the two downsampling convolutions, then a 3x3 conv 64 -> 2C; decoder: a 3x3
        // conv C -> 64, then the two transposed convolutions.
        let encoder = (16 * 32 + 32) + (32 * 16 * 64 + 64) + (64 * 9 * 2 * c + 2 * c);
        let decoder = (c * 9 * 64 + 64) + (64 * 32 * 16 + 32) + (32 * 16 + 1);
        assert_eq!(vae.encoder.num_params(), encoder);
        assert_eq!(vae.decoder.num_params(), decoder);
    }

    #[test]
    fn closed_form_kl_matches_a_monte_carlo_estimate() {
        // KL(q || p) = E_q[log q(z) - log p(z)], estimated with 200k draws per row in f64.
        use rand::SeedableRng;
        use rand_distr::{Distribution as _, StandardNormal};
        let device = Device::flex();
        let mu = [0.5f32, -1.0, 0.0, 2.0, 0.3, -0.7];
        let log_var = [0.0f32, -1.5, 0.8, 0.1, -0.4, 1.2];
        let closed = to_vec(kl_to_standard_normal(
            matrix(&mu, 3, &device),
            matrix(&log_var, 3, &device),
        ));
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let draws = 200_000;
        for row in 0..2 {
            let mut sum = 0.0;
            for _ in 0..draws {
                for j in 0..3 {
                    let (m, lv) = (mu[row * 3 + j] as f64, log_var[row * 3 + j] as f64);
                    let eps: f64 = StandardNormal.sample(&mut rng);
                    let z = m + (lv / 2.0).exp() * eps;
                    // log q(z) - log p(z); the 2 pi terms cancel.
                    sum += -0.5 * lv - 0.5 * eps * eps + 0.5 * z * z;
                }
            }
            let estimate = sum / draws as f64;
            // Standard error is about 0.01 for these parameters; allow 4 of them.
            assert!(
                (closed[row] - estimate).abs() < 0.04,
                "row {row}: {} vs {estimate}",
                closed[row]
            );
        }
        // And by hand for one coordinate: mu = 0.5, log_var = 0 -> 0.5 * 0.25 = 0.125.
        let single = to_vec(kl_to_standard_normal(
            matrix(&[0.5], 1, &device),
            matrix(&[0.0], 1, &device),
        ));
        assert!((single[0] - 0.125).abs() < 1e-6);
    }

    #[test]
    fn bernoulli_nll_is_binary_cross_entropy_summed_over_pixels() {
        let device = Device::flex();
        let logits = [2.0f32, -1.0, 0.0, 30.0];
        let targets = [1.0f32, 0.25, 0.5, 0.0];
        let expected: f64 = logits
            .iter()
            .zip(targets)
            .map(|(&l, x)| {
                // log p = -ln(1 + e^-l) and log(1 - p) = -l - ln(1 + e^-l), exact in f64
                // where 1 - p itself would lose its digits (l = 30).
                let (l, x) = (l as f64, x as f64);
                let log_p = -(-l).exp().ln_1p();
                -x * log_p - (1.0 - x) * (log_p - l)
            })
            .sum();
        let as_image =
            |v: &[f32]| Tensor::<4>::from_data(TensorData::new(v.to_vec(), [1, 1, 2, 2]), &device);
        let got = to_vec(bernoulli_nll(as_image(&logits), as_image(&targets)))[0];
        assert!((got - expected).abs() < 1e-4, "{got} vs {expected}");
    }

    #[test]
    fn gradients_reach_mu_and_log_var_through_the_sample() {
        let device = Device::flex().autodiff();
        let mu = matrix(&[0.3, -0.2, 1.0, 0.5], 2, &device).require_grad();
        let log_var = matrix(&[0.1, -0.4, 0.0, 0.7], 2, &device).require_grad();
        let eps_values = [0.9f32, -1.3, 0.4, 2.0];
        let eps = matrix(&eps_values, 2, &device);
        let z = reparameterize(mu.clone(), log_var.clone(), eps);
        let grads = z.sum().backward();
        let d_mu = to_vec(mu.grad(&grads).unwrap());
        let d_log_var = to_vec(log_var.grad(&grads).unwrap());
        // d(sum z)/dmu = 1; d(sum z)/dlog_var = exp(log_var / 2) * eps / 2.
        assert!(d_mu.iter().all(|&g| (g - 1.0).abs() < 1e-6), "{d_mu:?}");
        for ((g, lv), e) in d_log_var
            .iter()
            .zip([0.1f64, -0.4, 0.0, 0.7])
            .zip(eps_values)
        {
            let expected = (lv / 2.0).exp() * e as f64 / 2.0;
            assert!(
                g.abs() > 0.1 && (g - expected).abs() < 1e-5,
                "{g} vs {expected}"
            );
        }
    }

    #[test]
    fn gradients_of_the_loss_reach_the_encoder_s_log_variance_head() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let vae = VaeConfig::new().with_latent_dim(4).init(&device);
        let images = Tensor::<4>::random([4, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
        let posterior = vae.encoder.forward(images.clone());
        let (mu, log_var) = (posterior.mu.clone(), posterior.log_var.clone());
        let eps = Tensor::random_like(&mu, Distribution::Normal(0.0, 1.0));
        let z = reparameterize(mu.clone(), log_var.clone(), eps);
        let reconstruction = bernoulli_nll(vae.decoder.forward(z), images).mean();
        // Only through the sample: without the KL term, log_var gets gradient only via sigma * eps.
        let grads = reconstruction.backward();
        let weight = vae.encoder.to_posterior.as_ref().unwrap().weight.val();
        let grad = to_vec(weight.grad(&grads).unwrap()); // [256, 2d]: columns d.. are log_var's
        let log_var_grad: f64 = grad
            .chunks(8)
            .map(|row| row[4..].iter().map(|g| g.abs()).sum::<f64>())
            .sum();
        let mu_grad: f64 = grad
            .chunks(8)
            .map(|row| row[..4].iter().map(|g| g.abs()).sum::<f64>())
            .sum();
        assert!(
            log_var_grad > 0.0 && mu_grad > 0.0,
            "mu {mu_grad}, log_var {log_var_grad}"
        );
    }

    #[test]
    fn the_loss_falls_over_a_few_adam_steps_on_a_fixed_batch() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let mut vae = VaeConfig::new().with_latent_dim(8).init(&device);
        let mut optimizer = AdamConfig::new().with_epsilon(1e-8).init();
        let images = Tensor::<4>::random([16, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
        let images = images.greater_elem(0.7).float(); // binary pixels: a learnable target
        let initial = vae
            .elbo_terms(images.clone(), Code::Mean)
            .loss(1.0)
            .into_scalar::<f32>();
        for _ in 0..40 {
            let loss = vae.elbo_terms(images.clone(), Code::Sample).loss(1.0);
            let grads = GradientsParams::from_grads(loss.backward(), &vae);
            vae = optimizer.step(5e-3, vae, grads);
        }
        let after = vae
            .elbo_terms(images, Code::Mean)
            .loss(1.0)
            .into_scalar::<f32>();
        // Predicting 1/2 for every pixel costs 784 ln 2 = 543.4 nats; the pixel marginal p = 0.3
        // alone would bring that down to 784 H(0.3) = 479.0. The starting loss depends on the
        // random weights (here 510-580 nats), so the bar is absolute: 40 nats under 543.4.
        let uninformed = 784.0 * std::f32::consts::LN_2;
        assert!(
            after < initial && after < uninformed - 40.0,
            "loss {initial} -> {after}"
        );
    }

    #[test]
    fn with_beta_zero_and_z_equal_to_mu_the_vae_is_the_plain_autoencoder() {
        let device = Device::flex();
        let vae = VaeConfig::new().with_latent_dim(6).init(&device);
        let images = Tensor::<4>::random([5, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
        let vae_terms = vae.elbo_terms(images.clone(), Code::Mean);
        // The same weights as a plain autoencoder, which samples nothing even when asked to.
        let ae = Vae {
            variational: false,
            ..vae.clone()
        };
        let ae_terms = ae.elbo_terms(images.clone(), Code::Sample);
        let vae_loss = vae_terms.loss(0.0).into_scalar::<f32>();
        let ae_loss = ae_terms.loss(1.0).into_scalar::<f32>();
        assert!((vae_loss - ae_loss).abs() < 1e-3, "{vae_loss} vs {ae_loss}");
        assert!(to_vec(ae_terms.kl).iter().all(|&k| k == 0.0));
        assert!(
            to_vec(vae_terms.kl).iter().all(|&k| k > 0.0),
            "the VAE's KL is positive here"
        );
        // The loss at beta = 0 is the mean reconstruction error alone.
        let mean_recon = to_vec(vae_terms.reconstruction).iter().sum::<f64>() / 5.0;
        assert!((vae_loss as f64 - mean_recon).abs() < 1e-3);
    }
}
