//! Latent diffusion (Rombach et al., 2022) and classifier-free guidance (Ho & Salimans, 2022).
//!
//! A latent diffusion model is the DDPM of this module run on the codes of a trained
//! autoencoder instead of on pixels: with `E` and `D` the frozen encoder and decoder, the data
//! are `z0 = E(x)`, the noise predictor eps_theta(z_t, t) learns `||eps - eps_theta(z_t, t)||^2`
//! at `z_t = sqrt(alpha_bar_t) z0 + sqrt(1 - alpha_bar_t) eps` (the same
//! [`NoiseSchedule::add_noise`](super::NoiseSchedule::add_noise)), and a sample is `D(z0)` for a
//! `z0` drawn by the same samplers ([`reverse_process`]). Here `E(x)` is the VAE's posterior mean
//! mu, standardised per channel over the training split ([`LatentCodec`]) so that the codes
//! have the unit scale the schedule's `x_T ~ N(0, I)` assumes (Rombach et al. rescale by one
//! factor for the same reason).
//!
//! Two kinds of code, two denoisers ([`LatentNetwork`]):
//!
//! - the VAE's vector code (16-d by default), denoised by a residual MLP ([`LatentDenoiser`]);
//! - the `C x 7 x 7` code of a convolutional autoencoder ([`crate::vae::VaeConfig::latent_channels`]),
//!   denoised by a small U-Net of one 7x7 level ([`LatentNetworkConfig::small_unet`]), as
//!   Rombach et al.'s first-stage models and their U-Nets.
//!
//! Codes are handled as `[B, C, H, W]` throughout, a vector code as `[B, d, 1, 1]`. Both
//! denoisers can be class-conditional, for classifier-free guidance ([`super::guidance`]).

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;
use genmodels_kernels::nn::linear;
use serde::{Deserialize, Serialize};

use super::guidance::{Denoiser, Guidance, GuidanceError, denoise};
use super::sampling::{AnySampler, SamplingSettings};
use super::unet::{TimeEmbedding, UNet, UNetConfig};
use super::{DiffusionError, NoiseSchedule};
use crate::image_source::{Drawn, GridImages, ImageSource, PixelRange};
use crate::pytorch::PytorchNames;
use crate::vae::Vae;

/// The noise predictor's name in a run folder: its Config's key in `config.json` and the record
/// of the weights being trained, `denoiser.bpk` (the moving average is `ema.bpk`).
pub const DENOISER: &str = "denoiser";
/// The frozen autoencoder's name in a run folder: its `VaeConfig` in `config.json` and the
/// record `autoencoder.bpk` (the VAE with its code statistics).
pub const AUTOENCODER: &str = "autoencoder";

/// Builds a [`LatentNetwork`]. In `config.json` it is the Config of the network itself (an
/// untagged enum), so that the runs written before the U-Net option still open.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LatentNetworkConfig {
    Mlp(LatentDenoiserConfig),
    UNet(UNetConfig),
}

impl LatentNetworkConfig {
    /// A U-Net for `[C, 7, 7]` codes: one level at 7x7 of two residual blocks (`channels`
    /// wide) with self-attention, and the attention middle; no down- or upsampling.
    pub fn small_unet(code_channels: usize, channels: usize, num_classes: usize) -> UNetConfig {
        UNetConfig::new()
            .with_image_channels(code_channels)
            .with_image_size(7)
            .with_base_channels(channels)
            .with_channel_multipliers(vec![1])
            .with_attention_levels(vec![0])
            .with_num_classes((num_classes > 0).then_some(num_classes))
    }

    pub fn init(&self, device: &Device) -> LatentNetwork {
        match self {
            Self::Mlp(config) => LatentNetwork::Mlp(config.init(device)),
            Self::UNet(config) => LatentNetwork::UNet(config.init(device)),
        }
    }

    /// The same network with a sinusoidal time embedding of size `dim`.
    pub fn with_time_embedding_dim(self, dim: usize) -> Self {
        match self {
            Self::Mlp(config) => Self::Mlp(config.with_time_embedding_dim(dim)),
            Self::UNet(config) => Self::UNet(config.with_time_embedding_dim(dim)),
        }
    }

    /// Classes of a conditional network; 0 for an unconditional one.
    pub fn num_classes(&self) -> usize {
        match self {
            Self::Mlp(config) => config.num_classes,
            Self::UNet(config) => config.num_classes.unwrap_or(0),
        }
    }
}

/// The noise predictor of a latent diffusion model, on codes `[B, C, H, W]`.
// One network per model, built once: the variants' sizes do not matter, and burn's Module derive
// has no Box to put the larger one in.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum LatentNetwork {
    /// A residual MLP on the code flattened to `[B, C H W]`.
    Mlp(LatentDenoiser),
    /// A U-Net on the code as it is.
    UNet(UNet),
}

/// No PyTorch counterpart in `benches/pytorch_reference.py`: exported under its own paths.
impl PytorchNames for LatentNetwork {}

impl Denoiser<4> for LatentNetwork {
    fn predict(&self, z_t: Tensor<4>, t: Tensor<1>, labels: Option<Tensor<1, Int>>) -> Tensor<4> {
        match self {
            Self::Mlp(mlp) => {
                let shape = z_t.shape();
                mlp.forward(z_t.flatten(1, 3), t, labels).reshape(shape) // [B, C, H, W]
            }
            Self::UNet(unet) => unet.predict(z_t, t, labels), // [B, C, H, W]
        }
    }

    fn num_classes(&self) -> usize {
        match self {
            Self::Mlp(mlp) => mlp.num_classes(),
            Self::UNet(unet) => unet.num_classes(),
        }
    }
}

/// Builds a [`LatentDenoiser`].
#[derive(Config, Debug)]
pub struct LatentDenoiserConfig {
    /// Size d of the codes it denoises.
    #[config(default = 16)]
    pub latent_dim: usize,
    /// Width of the residual MLP.
    #[config(default = 256)]
    pub hidden: usize,
    /// Residual blocks.
    #[config(default = 4)]
    pub blocks: usize,
    /// Size of the sinusoidal time embedding; the MLP after it is 4 times wider.
    #[config(default = 64)]
    pub time_embedding_dim: usize,
    /// Classes of a class-conditional denoiser (0: unconditional). The class embedding has one
    /// row more, the null label of classifier-free guidance.
    #[config(default = 0)]
    pub num_classes: usize,
}

impl LatentDenoiserConfig {
    /// Initialises the network with burn's default (PyTorch-like) initialisation; the class
    /// embedding is N(0, 1), as PyTorch's `nn.Embedding`.
    pub fn init(&self, device: &Device) -> LatentDenoiser {
        let condition_dim = 4 * self.time_embedding_dim;
        LatentDenoiser {
            time_embedding: TimeEmbedding::new(self.time_embedding_dim, device),
            class_embedding: (self.num_classes > 0)
                .then(|| EmbeddingConfig::new(self.num_classes + 1, condition_dim).init(device)),
            input: LinearConfig::new(self.latent_dim, self.hidden).init(device),
            blocks: (0..self.blocks)
                .map(|_| ResidualMlpBlock::new(self.hidden, condition_dim, device))
                .collect(),
            out_norm: LayerNormConfig::new(self.hidden).init(device),
            output: LinearConfig::new(self.hidden, self.latent_dim).init(device),
            latent_dim: self.latent_dim,
            num_classes: self.num_classes,
        }
    }
}

/// eps_theta(z_t, t[, y]): a noised code, its timestep and optionally a class -> the predicted
/// noise. A residual MLP: Linear(d -> h), blocks of [LayerNorm -> SiLU -> Linear, plus the
/// projected condition, -> LayerNorm -> SiLU -> Linear] added to their input, then LayerNorm ->
/// SiLU -> Linear(h -> d). The condition is the time embedding, plus the class embedding in a
/// conditional model.
#[derive(Module, Debug)]
pub struct LatentDenoiser {
    time_embedding: TimeEmbedding,
    class_embedding: Option<Embedding>,
    input: Linear,
    blocks: Vec<ResidualMlpBlock>,
    out_norm: LayerNorm,
    output: Linear,
    latent_dim: usize,
    num_classes: usize,
}

/// No PyTorch counterpart in `benches/pytorch_reference.py`: exported under its own paths.
impl PytorchNames for LatentDenoiser {}

impl LatentDenoiser {
    /// Size d of the codes.
    pub fn latent_dim(&self) -> usize {
        self.latent_dim
    }

    /// `z_t: [B, d]`, `t: [B]` (timesteps as floats), `labels: [B]` in `0..=num_classes` (the
    /// last the null label) -> `[B, d]`. `None` gives every sample the null label in a
    /// conditional model, and is the only choice in an unconditional one.
    ///
    /// # Panics
    ///
    /// When an unconditional model is given labels.
    pub fn forward(
        &self,
        z_t: Tensor<2>,
        t: Tensor<1>,
        labels: Option<Tensor<1, Int>>,
    ) -> Tensor<2> {
        let [batch, _] = z_t.dims();
        let mut condition = self.time_embedding.forward(t); // [B, 4 * time_dim]
        if let Some(classes) = &self.class_embedding {
            let labels = labels
                .unwrap_or_else(|| Tensor::full([batch], self.null_label() as i64, &z_t.device())); // [B]
            let embedded = classes.forward(labels.unsqueeze_dim(1)); // [B, 1, 4 * time_dim]
            condition = condition + embedded.squeeze_dim(1); // [B, 4 * time_dim]
        } else {
            assert!(
                labels.is_none(),
                "an unconditional denoiser takes no labels"
            );
        }
        let mut h = linear(&self.input, z_t); // [B, h]
        for block in &self.blocks {
            h = block.forward(h, condition.clone()); // [B, h]
        }
        linear(&self.output, silu(self.out_norm.forward(h))) // [B, d]
    }
}

impl Denoiser<2> for LatentDenoiser {
    fn predict(&self, z_t: Tensor<2>, t: Tensor<1>, labels: Option<Tensor<1, Int>>) -> Tensor<2> {
        self.forward(z_t, t, labels)
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }
}

/// LayerNorm -> SiLU -> Linear, plus the projected condition, -> LayerNorm -> SiLU -> Linear,
/// added to the input.
#[derive(Module, Debug)]
struct ResidualMlpBlock {
    norm1: LayerNorm,
    linear1: Linear,
    condition: Linear,
    norm2: LayerNorm,
    linear2: Linear,
}

impl ResidualMlpBlock {
    fn new(width: usize, condition_dim: usize, device: &Device) -> Self {
        Self {
            norm1: LayerNormConfig::new(width).init(device),
            linear1: LinearConfig::new(width, width).init(device),
            condition: LinearConfig::new(condition_dim, width).init(device),
            norm2: LayerNormConfig::new(width).init(device),
            linear2: LinearConfig::new(width, width).init(device),
        }
    }

    /// `x: [B, h]`, `condition: [B, c]` -> `[B, h]`.
    fn forward(&self, x: Tensor<2>, condition: Tensor<2>) -> Tensor<2> {
        let h = linear(&self.linear1, silu(self.norm1.forward(x.clone()))); // [B, h]
        let h = h + linear(&self.condition, silu(condition)); // [B, h]
        let h = linear(&self.linear2, silu(self.norm2.forward(h))); // [B, h]
        x + h
    }
}

/// The per-channel mean and standard deviation of a set of codes, which [`LatentCodec`]
/// standardises with: one pair per dimension of a vector code, one per map of a spatial one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeStatistics {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl CodeStatistics {
    /// The statistics of `codes`, rows of `C x H x W` values (`shape`, channel-major), per
    /// channel over every row and position, summed in f64; the standard deviation is the
    /// population one (divided by N), floored at 1e-6 so that a dead channel does not divide by
    /// zero.
    ///
    /// # Panics
    ///
    /// When `codes` is empty or not a whole number of rows.
    pub fn of(codes: &[f32], shape: [usize; 3]) -> Self {
        let [channels, height, width] = shape;
        let positions = height * width;
        let row_len = channels * positions;
        assert!(
            row_len > 0 && !codes.is_empty() && codes.len().is_multiple_of(row_len),
            "{} values are not codes of {channels}x{height}x{width}",
            codes.len()
        );
        // Values per channel: every position of every row.
        let count = (codes.len() / row_len * positions) as f64;
        let mut sum = vec![0f64; channels];
        let mut sum_sq = vec![0f64; channels];
        for row in codes.chunks(row_len) {
            for (j, map) in row.chunks(positions).enumerate() {
                for &value in map {
                    sum[j] += value as f64;
                    sum_sq[j] += (value as f64).powi(2);
                }
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let std = sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| ((sq / count - m * m).max(0.0).sqrt()).max(1e-6) as f32)
            .collect();
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }
}

/// The frozen autoencoder of a latent diffusion model: `encode(x) = (mu(x) - m) / s` and
/// `decode(z) = sigmoid(l(s z + m))`, with `m` and `s` the per-channel mean and standard
/// deviation of mu over the training split. `m` and `s` are parameters that are never trained,
/// so that the checkpoint carries them with the VAE.
#[derive(Module, Debug)]
pub struct LatentCodec {
    pub vae: Vae,
    mean: Param<Tensor<1>>,
    std: Param<Tensor<1>>,
}

impl LatentCodec {
    /// `vae` with the code statistics `statistics`.
    ///
    /// # Panics
    ///
    /// When the statistics are not of the VAE's code channels.
    pub fn new(vae: Vae, statistics: &CodeStatistics) -> Self {
        let [dim, ..] = vae.code_shape();
        assert!(
            statistics.mean.len() == dim && statistics.std.len() == dim,
            "statistics of {} channels for a code of {dim}",
            statistics.mean.len()
        );
        let device = vae.devices()[0].clone();
        let tensor = |values: &[f32]| {
            Param::from_tensor(Tensor::from_data(
                TensorData::new(values.to_vec(), [dim]),
                &device,
            ))
            .set_require_grad(false)
        };
        Self {
            mean: tensor(&statistics.mean),
            std: tensor(&statistics.std),
            vae,
        }
    }

    /// `vae` with mean 0 and deviation 1, to be loaded from a checkpoint.
    pub fn unfitted(vae: Vae) -> Self {
        let [dim, ..] = vae.code_shape();
        Self::new(
            vae,
            &CodeStatistics {
                mean: vec![0.0; dim],
                std: vec![1.0; dim],
            },
        )
    }

    /// `[C, H, W]` of the codes: `[d, 1, 1]` for the VAE's vector code.
    pub fn code_shape(&self) -> [usize; 3] {
        self.vae.code_shape()
    }

    /// `m` and `s` as `[1, C, 1, 1]`, to broadcast over codes.
    fn statistics(&self) -> (Tensor<4>, Tensor<4>) {
        let per_channel = |values: Tensor<1>| values.unsqueeze_dims::<4>(&[0, 2, 3]);
        (per_channel(self.mean.val()), per_channel(self.std.val()))
    }

    /// Images `[B, 1, 28, 28]` in [0, 1] -> standardised codes `(mu - m) / s`, `[B, C, H, W]`.
    pub fn encode(&self, images: Tensor<4>) -> Tensor<4> {
        let [batch, ..] = images.dims();
        let [channels, height, width] = self.code_shape();
        let mu = self.vae.encoder.forward(images).mu; // [B, d]
        let mu = mu.reshape([batch, channels, height, width]); // [B, C, H, W]
        let (mean, std) = self.statistics();
        (mu - mean) / std // [B, C, H, W]
    }

    /// Standardised codes `[B, C, H, W]` -> the decoder's mean images `[B, 1, 28, 28]` in [0, 1].
    pub fn decode(&self, z: Tensor<4>) -> Tensor<4> {
        let (mean, std) = self.statistics();
        let mu = z * std + mean; // [B, C, H, W]
        self.vae.decoder.decode(mu.flatten(1, 3)) // [B, 1, 28, 28]
    }
}

/// A latent diffusion model as an [`ImageSource`]: codes drawn by the reverse process with a
/// trained denoiser (a run's EMA weights), then decoded.
#[derive(Debug, Clone)]
pub struct LatentDiffusionSource {
    pub denoiser: LatentNetwork,
    pub codec: LatentCodec,
    pub sampler: AnySampler,
    pub settings: SamplingSettings,
    /// For a conditional denoiser: the classes and the guidance scale.
    pub guidance: Option<Guidance>,
}

impl LatentDiffusionSource {
    /// Refuses settings the schedule cannot honour. A conditional denoiser draws the classes in
    /// turn at w = 0 unless [`LatentDiffusionSource::with_guidance`] says otherwise.
    pub fn new(
        denoiser: LatentNetwork,
        codec: LatentCodec,
        schedule: &NoiseSchedule,
        settings: SamplingSettings,
    ) -> Result<Self, DiffusionError> {
        let guidance = Guidance::resolve(None, denoiser.num_classes()).expect("no guidance asked");
        Ok(Self {
            denoiser,
            codec,
            // Standardised codes reach well beyond [-1, 1]: x0_hat is not clipped.
            sampler: settings.build(schedule)?.with_clip_sample(false),
            settings,
            guidance,
        })
    }

    /// The classes and guidance scale of a conditional denoiser; refused as
    /// [`Guidance::resolve`] says.
    pub fn with_guidance(mut self, guidance: Option<Guidance>) -> Result<Self, GuidanceError> {
        self.guidance = Guidance::resolve(guidance, self.denoiser.num_classes())?;
        Ok(self)
    }

    /// `count` standardised codes `[count, C, H, W]` from the reverse process (for `classes`,
    /// if given), from noise drawn on the host from `seed`.
    pub fn draw_codes(
        &self,
        count: usize,
        classes: Option<&[usize]>,
        seed: u64,
        device: &Device,
    ) -> Tensor<4> {
        let [channels, height, width] = self.codec.code_shape();
        let scale = self.guidance.map_or(0.0, |g| g.scale);
        denoise(
            &self.denoiser.valid(),
            &self.sampler,
            [count, channels, height, width],
            classes,
            scale,
            seed,
            device,
            |_, _| {},
        )
    }
}

impl ImageSource for LatentDiffusionSource {
    fn pixel_range(&self) -> PixelRange {
        PixelRange::ZeroToOne
    }

    fn describe(&self) -> String {
        let guidance = self.guidance.map(|g| g.describe()).unwrap_or_default();
        format!(
            "VAE decoder of latent codes from the EMA denoiser, {}{guidance}",
            self.settings.describe()
        )
    }

    fn draw(&self, count: usize, seed: u64, device: &Device) -> Drawn {
        let classes = self
            .guidance
            .map(|g| g.classes(count, self.denoiser.num_classes()));
        let codes = self.draw_codes(count, classes.as_deref(), seed, device); // [count, C, H, W]
        Drawn {
            images: self.codec.valid().decode(codes), // [count, 1, 28, 28]
            classes,
        }
    }

    /// A conditional model with the classes in turn: one column per class, ten rows.
    fn grid(&self, seed: u64, device: &Device) -> GridImages {
        Guidance::grid(
            self.guidance,
            self.denoiser.num_classes(),
            self,
            seed,
            device,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::to_vec;
    use crate::vae::{VaeConfig, spatial_latent_dim};
    use burn::tensor::Distribution;

    /// A denoiser of `latent_dim`-dimensional codes with hidden layers of 8 units.
    fn narrow_denoiser(latent_dim: usize) -> LatentDenoiserConfig {
        LatentDenoiserConfig::new()
            .with_latent_dim(latent_dim)
            .with_hidden(8)
    }

    /// The codec of a fresh VAE of `latent_dim` dimensions, the codes not standardised.
    fn unfitted_codec(latent_dim: usize, device: &Device) -> LatentCodec {
        LatentCodec::unfitted(VaeConfig::new().with_latent_dim(latent_dim).init(device))
    }

    /// Deterministic DDIM (eta 0) in `steps` steps.
    fn ddim(steps: usize) -> SamplingSettings {
        SamplingSettings {
            sampler: super::super::SamplerKind::Ddim,
            steps,
            eta: 0.0,
        }
    }

    #[test]
    fn the_batched_guided_pass_equals_two_separate_passes() {
        let device = Device::flex();
        let denoiser = narrow_denoiser(3)
            .with_blocks(2)
            .with_time_embedding_dim(8)
            .with_num_classes(4)
            .init(&device);
        let z = Tensor::<2>::random([5, 3], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<1>::from_floats([0.0, 10.0, 500.0, 999.0, 3.0], &device);
        let labels = Tensor::<1, Int>::from_ints([0, 1, 2, 3, 1], &device);
        let conditional = denoiser.forward(z.clone(), t.clone(), Some(labels.clone()));
        let unconditional = denoiser.forward(z.clone(), t.clone(), None);
        let by_hand = conditional.clone() * 3.0 - unconditional.clone() * 2.0;
        let guided = denoiser.guided(z.clone(), t.clone(), labels.clone(), 2.0);
        assert!(guided.all_close(by_hand, Some(1e-5), Some(1e-5)));
        // The null label is a class of its own: its prediction differs from every class's.
        assert!(!conditional.all_close(unconditional, Some(1e-3), Some(1e-3)));
        assert_eq!(denoiser.guided(z, t, labels, 0.0).dims(), [5, 3]);
    }

    #[test]
    fn code_statistics_match_a_hand_computation_and_standardise_the_codes() {
        // Two dimensions over three rows: means 2 and -1; population deviations sqrt(8/3), 0.
        let codes = [0.0, -1.0, 2.0, -1.0, 4.0, -1.0];
        let statistics = CodeStatistics::of(&codes, [2, 1, 1]);
        assert!((statistics.mean[0] - 2.0).abs() < 1e-6);
        assert!((statistics.mean[1] + 1.0).abs() < 1e-6);
        assert!((statistics.std[0] - (8.0f32 / 3.0).sqrt()).abs() < 1e-6);
        assert_eq!(statistics.std[1], 1e-6, "a constant dimension is floored");
        // Spatial codes: per channel over rows and positions. Two rows of two 1x2 maps: channel
        // 0 holds 1, 3, 5, 7 (mean 4, variance 5), channel 1 holds 0, 0, 2, 2 (mean 1, var 1).
        let maps = [1.0, 3.0, 0.0, 0.0, 5.0, 7.0, 2.0, 2.0];
        let statistics = CodeStatistics::of(&maps, [2, 1, 2]);
        assert_eq!(statistics.mean, [4.0, 1.0]);
        assert!((statistics.std[0] - 5f32.sqrt()).abs() < 1e-6);
        assert!((statistics.std[1] - 1.0).abs() < 1e-6);

        // encode then decode: the decoder sees mu itself.
        let device = Device::flex();
        let vae = VaeConfig::new()
            .with_latent_dim(2)
            .with_channels([4, 8])
            .with_hidden(8)
            .init(&device);
        let images = Tensor::<4>::random([3, 1, 28, 28], Distribution::Default, &device);
        let mu = vae.encoder.forward(images.clone()).mu;
        let statistics = CodeStatistics::of(&to_vec(mu.clone()), [2, 1, 1]);
        let codec = LatentCodec::new(vae.clone(), &statistics);
        let z = codec.encode(images);
        assert_eq!(z.dims(), [3, 2, 1, 1]);
        let mean = to_vec(z.clone().mean_dim(0));
        let var = to_vec(z.clone().square().mean_dim(0));
        for j in 0..2 {
            assert!(mean[j].abs() < 1e-4, "{mean:?}");
            assert!((var[j] - 1.0).abs() < 1e-3, "{var:?}");
        }
        let decoded = codec.decode(z);
        assert!(decoded.all_close(vae.decoder.decode(mu), Some(1e-5), Some(1e-5)));
    }

    #[test]
    fn spatial_codes_are_standardised_per_map_and_decode_to_the_vaes_images() {
        let device = Device::flex();
        let vae = VaeConfig::new()
            .with_latent_dim(spatial_latent_dim(2))
            .with_latent_channels(Some(2))
            .with_channels([4, 8])
            .init(&device);
        let images = Tensor::<4>::random([4, 1, 28, 28], Distribution::Default, &device);
        let mu = vae.encoder.forward(images.clone()).mu; // [4, 98]
        let statistics = CodeStatistics::of(&to_vec(mu.clone()), [2, 7, 7]);
        let codec = LatentCodec::new(vae.clone(), &statistics);
        let z = codec.encode(images);
        assert_eq!(z.dims(), [4, 2, 7, 7]);
        // Over the batch and the 49 positions, each map has mean 0 and variance 1.
        let per_map = |t: Tensor<4>| to_vec(t.swap_dims(0, 1).flatten::<2>(1, 3).mean_dim(1));
        for (m, v) in per_map(z.clone()).iter().zip(per_map(z.clone().square())) {
            assert!(m.abs() < 1e-4 && (v - 1.0).abs() < 1e-3, "{m} {v}");
        }
        assert!(
            codec
                .decode(z)
                .all_close(vae.decoder.decode(mu), Some(1e-5), Some(1e-5))
        );
    }

    #[test]
    fn configs_of_either_network_read_back_as_themselves() {
        let mlp = LatentNetworkConfig::Mlp(narrow_denoiser(16).with_num_classes(10));
        let unet = LatentNetworkConfig::UNet(LatentNetworkConfig::small_unet(4, 32, 0));
        for config in [mlp, unet] {
            let json = serde_json::to_string(&config).unwrap();
            let back: LatentNetworkConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&config)
            );
        }
        // A denoiser's Config as runs without the U-Net option wrote it.
        let old =
            r#"{"latent_dim":16,"hidden":256,"blocks":4,"time_embedding_dim":64,"num_classes":10}"#;
        let read: LatentNetworkConfig = serde_json::from_str(old).unwrap();
        assert!(matches!(read, LatentNetworkConfig::Mlp(_)));
        assert_eq!(read.num_classes(), 10);
    }

    #[test]
    fn guidance_is_refused_where_it_cannot_apply() {
        let device = Device::flex();
        let open = |classes, guidance| {
            let denoiser = LatentNetworkConfig::Mlp(narrow_denoiser(3).with_num_classes(classes));
            LatentDiffusionSource::new(
                denoiser.init(&device),
                unfitted_codec(3, &device),
                &NoiseSchedule::ddpm(),
                ddim(2),
            )
            .unwrap()
            .with_guidance(guidance)
            .map(|_| ())
        };
        let guidance = |scale, class| Some(Guidance { scale, class });
        assert_eq!(
            open(0, guidance(1.0, None)),
            Err(GuidanceError::Unconditional)
        );
        let error = open(10, guidance(1.0, Some(10))).unwrap_err();
        assert_eq!(error.to_string(), "--class 10: the classes are 0 to 9");
        assert!(open(10, guidance(5.0, Some(9))).is_ok());
        assert!(open(0, None).is_ok());
    }

    /// Sets every weight to zero: the denoiser then predicts eps = 0 everywhere.
    struct Zero;

    impl burn::module::ModuleMapper for Zero {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|w| w.zeros_like())
        }
    }

    #[test]
    fn the_codes_are_not_clipped_to_the_image_range() {
        use burn::module::Module;
        let device = Device::flex();
        let denoiser = LatentNetwork::Mlp(narrow_denoiser(4).init(&device).map(&mut Zero));
        let codec = unfitted_codec(4, &device);
        let source =
            LatentDiffusionSource::new(denoiser, codec, &NoiseSchedule::ddpm(), ddim(2)).unwrap();
        // With eps = 0, DDIM (eta 0) over t = 500, 0 gives z0 = sqrt(ab_0 / ab_500) x_T; a
        // clipped x0_hat would keep |z0| <= 1.
        let codes = source.draw_codes(16, None, 3, &device);
        let x_t = crate::noise::seeded_normal([16, 4], 3, &device).reshape([16, 4, 1, 1]);
        let schedule = NoiseSchedule::ddpm();
        let factor = (schedule.alpha_bar(0) / schedule.alpha_bar(500)).sqrt();
        assert!(
            codes
                .clone()
                .all_close(x_t * factor, Some(1e-4), Some(1e-4))
        );
        assert!(codes.abs().max().into_scalar::<f32>() > 2.0);
    }

    #[test]
    fn a_conditional_source_draws_the_classes_it_was_asked_for() {
        let device = Device::flex();
        let denoiser = LatentNetworkConfig::Mlp(narrow_denoiser(3).with_num_classes(10));
        let source = LatentDiffusionSource::new(
            denoiser.init(&device),
            unfitted_codec(3, &device),
            &NoiseSchedule::ddpm(),
            ddim(3),
        )
        .unwrap()
        .with_guidance(Some(Guidance {
            scale: 1.0,
            class: None,
        }))
        .unwrap();
        let drawn = source.draw(12, 4, &device);
        assert_eq!(drawn.images.dims(), [12, 1, 28, 28]);
        assert_eq!(drawn.classes.unwrap(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
        // The same seed gives the same images.
        let again = source.draw(12, 4, &device).images;
        assert!(again.all_close(source.draw(12, 4, &device).images, Some(0.0), Some(0.0)));
    }

    #[test]
    fn the_small_latent_unet_has_the_counted_parameters() {
        use burn::module::Module;
        // 4 x 7 x 7 codes, 32 channels, one residual block a side, 10 classes, time embedding
        // 64 -> 256 -> 256.
        let config = LatentNetworkConfig::small_unet(4, 32, 10).with_blocks_per_level(1);
        let residual = |c_in: usize, c_out: usize| {
            2 * c_in
                + (9 * c_in * c_out + c_out)
                + (256 * c_out + c_out)
                + 2 * c_out
                + (9 * c_out * c_out + c_out)
                + if c_in == c_out {
                    0
                } else {
                    c_in * c_out + c_out
                }
        };
        let attention = 2 * 32 + (3 * 32 * 32 + 3 * 32) + (32 * 32 + 32);
        let expected = (64 * 256 + 256) + (256 * 256 + 256) // time embedding
            + 11 * 256 // classes and the null label
            + (9 * 4 * 32 + 32) // stem
            + residual(32, 32) + attention // down
            + 2 * residual(32, 32) + attention // middle
            + residual(64, 32) + attention // up, with the skip concatenated
            + 2 * 32 + (9 * 32 * 4 + 4); // output GroupNorm and conv
        assert_eq!(expected, 219_268);
        assert_eq!(config.init(&Device::flex()).num_params(), expected);
    }

    #[test]
    fn a_conditional_unet_denoises_spatial_codes_into_images() {
        let device = Device::flex();
        let vae = VaeConfig::new()
            .with_latent_dim(spatial_latent_dim(3))
            .with_latent_channels(Some(3))
            .init(&device);
        let config = LatentNetworkConfig::small_unet(3, 16, 10)
            .with_blocks_per_level(1)
            .with_time_embedding_dim(8);
        let denoiser = LatentNetworkConfig::UNet(config).init(&device);
        let z = Tensor::<4>::random([2, 3, 7, 7], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<1>::from_floats([3.0, 700.0], &device);
        let labels = Tensor::<1, Int>::from_ints([2, 9], &device);
        let eps = denoiser.predict(z.clone(), t.clone(), Some(labels.clone()));
        assert_eq!(eps.dims(), [2, 3, 7, 7]);
        // The class reaches the output.
        let other = denoiser.predict(z, t, Some(labels.full_like(0)));
        assert!(!eps.all_close(other, Some(1e-4), Some(1e-4)));
        let source = LatentDiffusionSource::new(
            denoiser,
            LatentCodec::unfitted(vae),
            &NoiseSchedule::ddpm(),
            ddim(2),
        )
        .unwrap()
        .with_guidance(Some(Guidance {
            scale: 2.0,
            class: Some(4),
        }))
        .unwrap();
        let drawn = source.draw(3, 1, &device);
        assert_eq!(drawn.images.dims(), [3, 1, 28, 28]);
        assert_eq!(drawn.classes.unwrap(), [4, 4, 4]);
    }
}
