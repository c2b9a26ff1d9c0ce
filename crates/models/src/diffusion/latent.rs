//! Latent diffusion (Rombach et al., 2022) and classifier-free guidance (Ho & Salimans, 2022).
//!
//! A latent diffusion model is the DDPM of this module run on the codes of a trained
//! autoencoder instead of on pixels: with `E` and `D` the frozen encoder and decoder, the data
//! are `z0 = E(x)`, the noise predictor eps_theta(z_t, t) learns `||eps - eps_theta(z_t, t)||^2`
//! at `z_t = sqrt(alpha_bar_t) z0 + sqrt(1 - alpha_bar_t) eps` (the same
//! [`NoiseSchedule::add_noise`](super::NoiseSchedule::add_noise)), and a sample is `D(z0)` for a
//! `z0` drawn by the same samplers ([`reverse_process`]). Here `E(x)` is the VAE's posterior mean
//! mu, standardised per dimension over the training split ([`LatentCodec`]) so that the codes
//! have the unit scale the schedule's `x_T ~ N(0, I)` assumes (Rombach et al. rescale by one
//! factor for the same reason).
//!
//! Classifier-free guidance trains one network for both `eps_theta(z_t, t, y)` and
//! `eps_theta(z_t, t, null)`, the label replaced by a learned null label with probability
//! `p_uncond` (0.1), and samples with
//!
//! `eps = (1 + w) eps_theta(z_t, t, y) - w eps_theta(z_t, t, null)`
//!
//! ([`guided_noise`]) for a guidance scale `w >= 0`: `w = 0` is the plain conditional model,
//! larger `w` trades diversity for fidelity to the class.

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;
use serde::{Deserialize, Serialize};

use super::sampling::{AnySampler, SamplingSettings, timesteps_tensor};
use super::unet::TimeEmbedding;
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

    /// Classes of a conditional model; 0 for an unconditional one.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The null label of classifier-free guidance: the index after the last class.
    pub fn null_label(&self) -> usize {
        self.num_classes
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
        let mut h = self.input.forward(z_t); // [B, h]
        for block in &self.blocks {
            h = block.forward(h, condition.clone()); // [B, h]
        }
        self.output.forward(silu(self.out_norm.forward(h))) // [B, d]
    }

    /// The noise prediction that samples with guidance scale `w`: [`guided_noise`] of the
    /// conditional and the null-label predictions, from one forward pass over both (`w = 0`
    /// needs only the conditional one). `labels: [B]` are classes, not the null label.
    pub fn guided(
        &self,
        z_t: Tensor<2>,
        t: Tensor<1>,
        labels: Tensor<1, Int>,
        w: f64,
    ) -> Tensor<2> {
        if w == 0.0 {
            return self.forward(z_t, t, Some(labels));
        }
        let [batch, _] = z_t.dims();
        let null = labels.full_like(self.null_label() as i64);
        let both = self.forward(
            Tensor::cat(vec![z_t.clone(), z_t], 0),
            Tensor::cat(vec![t.clone(), t], 0),
            Some(Tensor::cat(vec![labels, null], 0)),
        ); // [2B, d]: the conditional predictions, then the unconditional ones
        guided_noise(
            both.clone().narrow(0, 0, batch),
            both.narrow(0, batch, batch),
            w,
        )
    }
}

/// Classifier-free guidance (Ho & Salimans, 2022, Eq. 6):
/// `eps = (1 + w) eps_theta(z_t, t, y) - w eps_theta(z_t, t, null)`.
pub fn guided_noise<const D: usize>(
    conditional: Tensor<D>,
    unconditional: Tensor<D>,
    w: f64,
) -> Tensor<D> {
    conditional.mul_scalar(1.0 + w) - unconditional.mul_scalar(w)
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
        let h = self.linear1.forward(silu(self.norm1.forward(x.clone()))); // [B, h]
        let h = h + self.condition.forward(silu(condition)); // [B, h]
        let h = self.linear2.forward(silu(self.norm2.forward(h))); // [B, h]
        x + h
    }
}

/// The per-dimension mean and standard deviation of a set of codes, which [`LatentCodec`]
/// standardises with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeStatistics {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl CodeStatistics {
    /// The statistics of `codes`, rows of `dim` values, summed in f64; the standard deviation
    /// is the population one (divided by N), floored at 1e-6 so that a dead dimension does not
    /// divide by zero.
    ///
    /// # Panics
    ///
    /// When `codes` is empty or not a whole number of rows.
    pub fn of(codes: &[f32], dim: usize) -> Self {
        assert!(
            dim > 0 && !codes.is_empty() && codes.len().is_multiple_of(dim),
            "{} values are not rows of {dim}",
            codes.len()
        );
        let rows = (codes.len() / dim) as f64;
        let mut sum = vec![0f64; dim];
        let mut sum_sq = vec![0f64; dim];
        for row in codes.chunks(dim) {
            for (j, &value) in row.iter().enumerate() {
                sum[j] += value as f64;
                sum_sq[j] += (value as f64).powi(2);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / rows).collect();
        let std = sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| ((sq / rows - m * m).max(0.0).sqrt()).max(1e-6) as f32)
            .collect();
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }
}

/// The frozen autoencoder of a latent diffusion model: `encode(x) = (mu(x) - m) / s` and
/// `decode(z) = sigmoid(l(s z + m))`, with `m` and `s` the per-dimension mean and standard
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
    /// When the statistics are not of the VAE's latent size.
    pub fn new(vae: Vae, statistics: &CodeStatistics) -> Self {
        let dim = vae.latent_dim();
        assert!(
            statistics.mean.len() == dim && statistics.std.len() == dim,
            "statistics of {} dimensions for a {dim}-dimensional VAE",
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
        let dim = vae.latent_dim();
        Self::new(
            vae,
            &CodeStatistics {
                mean: vec![0.0; dim],
                std: vec![1.0; dim],
            },
        )
    }

    /// Size d of the codes.
    pub fn latent_dim(&self) -> usize {
        self.vae.latent_dim()
    }

    /// Images `[B, 1, 28, 28]` in [0, 1] -> standardised codes `(mu - m) / s`, `[B, d]`.
    pub fn encode(&self, images: Tensor<4>) -> Tensor<2> {
        let mu = self.vae.encoder.forward(images).mu; // [B, d]
        (mu - self.mean.val().unsqueeze()) / self.std.val().unsqueeze() // [B, d]
    }

    /// Standardised codes `[B, d]` -> the decoder's mean images `[B, 1, 28, 28]` in [0, 1].
    pub fn decode(&self, z: Tensor<2>) -> Tensor<4> {
        let mu = z * self.std.val().unsqueeze() + self.mean.val().unsqueeze(); // [B, d]
        self.vae.decoder.decode(mu) // [B, 1, 28, 28]
    }
}

/// Which classes a conditional latent diffusion model is asked for, and how hard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Guidance {
    /// The guidance scale w of [`guided_noise`].
    pub scale: f64,
    /// One class for every sample; `None`: the classes in turn.
    pub class: Option<usize>,
}

/// A latent diffusion model as an [`ImageSource`]: codes drawn by the reverse process with a
/// trained denoiser (a run's EMA weights), then decoded.
#[derive(Debug, Clone)]
pub struct LatentDiffusionSource {
    pub denoiser: LatentDenoiser,
    pub codec: LatentCodec,
    pub sampler: AnySampler,
    pub settings: SamplingSettings,
    /// For a conditional denoiser: the classes and the guidance scale.
    pub guidance: Option<Guidance>,
}

impl LatentDiffusionSource {
    /// Refuses settings the schedule cannot honour, guidance for an unconditional denoiser, a
    /// class the denoiser does not know and a negative or non-finite guidance scale. A
    /// conditional denoiser without `guidance` draws the classes in turn at w = 0.
    pub fn new(
        denoiser: LatentDenoiser,
        codec: LatentCodec,
        schedule: &NoiseSchedule,
        settings: SamplingSettings,
        guidance: Option<Guidance>,
    ) -> Result<Self, GuidanceError> {
        let classes = denoiser.num_classes();
        let guidance = match (guidance, classes) {
            (Some(_), 0) => return Err(GuidanceError::Unconditional),
            (Some(g), _) if !(g.scale.is_finite() && g.scale >= 0.0) => {
                return Err(GuidanceError::Scale(g.scale));
            }
            (
                Some(Guidance {
                    class: Some(class), ..
                }),
                _,
            ) if class >= classes => {
                return Err(GuidanceError::Class { class, classes });
            }
            (None, 0) => None,
            (None, _) => Some(Guidance {
                scale: 0.0,
                class: None,
            }),
            (Some(g), _) => Some(g),
        };
        Ok(Self {
            denoiser,
            codec,
            // Standardised codes reach well beyond [-1, 1]: x0_hat is not clipped.
            sampler: settings.build(schedule)?.with_clip_sample(false),
            settings,
            guidance,
        })
    }

    /// The classes `count` samples are asked for, when the model is conditional.
    fn classes(&self, count: usize) -> Option<Vec<usize>> {
        let guidance = self.guidance?;
        Some(match guidance.class {
            Some(class) => vec![class; count],
            None => (0..count)
                .map(|i| i % self.denoiser.num_classes())
                .collect(),
        })
    }

    /// `count` standardised codes `[count, d]` from the reverse process (for `classes`, if
    /// given), from noise drawn on the host from `seed`.
    pub fn draw_codes(
        &self,
        count: usize,
        classes: Option<&[usize]>,
        seed: u64,
        device: &Device,
    ) -> Tensor<2> {
        let denoiser = self.denoiser.valid();
        let scale = self.guidance.map_or(0.0, |g| g.scale);
        let labels = classes.map(|classes| {
            let values: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
            Tensor::<1, Int>::from_data(TensorData::new(values, [count]), device)
        });
        let predict_noise = |z: Tensor<2>, t: usize| {
            let t = timesteps_tensor(&vec![t; count], device); // [count]
            match &labels {
                Some(labels) => denoiser.guided(z, t, labels.clone(), scale),
                None => denoiser.forward(z, t, None),
            } // [count, d]
        };
        let shape = [count, denoiser.latent_dim()];
        self.sampler
            .reverse_process(shape, seed, device, predict_noise, |_, _| {})
    }
}

/// Why a latent diffusion model was not opened with the guidance asked for.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GuidanceError {
    #[error("--guidance and --class need a class-conditional model (trained with --conditional)")]
    Unconditional,
    #[error("--guidance {0}: the guidance scale must be a finite number >= 0")]
    Scale(f64),
    #[error("--class {class}: the classes are 0 to {}", classes - 1)]
    Class { class: usize, classes: usize },
    #[error(transparent)]
    Sampler(#[from] DiffusionError),
}

impl ImageSource for LatentDiffusionSource {
    fn pixel_range(&self) -> PixelRange {
        PixelRange::ZeroToOne
    }

    fn describe(&self) -> String {
        let guidance = match self.guidance {
            None => String::new(),
            Some(Guidance { scale, class: None }) => {
                format!(", classes in turn, guidance w = {scale}")
            }
            Some(Guidance {
                scale,
                class: Some(class),
            }) => format!(", class {class}, guidance w = {scale}"),
        };
        format!(
            "VAE decoder of latent codes from the EMA denoiser, {}{guidance}",
            self.settings.describe()
        )
    }

    fn draw(&self, count: usize, seed: u64, device: &Device) -> Drawn {
        let classes = self.classes(count);
        let codes = self.draw_codes(count, classes.as_deref(), seed, device); // [count, d]
        Drawn {
            images: self.codec.valid().decode(codes), // [count, 1, 28, 28]
            classes,
        }
    }

    /// A conditional model: one column per class, ten rows.
    fn grid(&self, seed: u64, device: &Device) -> GridImages {
        match self.guidance {
            Some(Guidance { class: None, .. }) => {
                let columns = self.denoiser.num_classes();
                GridImages {
                    images: self.draw(10 * columns, seed, device).images,
                    columns,
                    row_classes: None,
                }
            }
            _ => GridImages {
                images: self.draw(64, seed, device).images,
                columns: 8,
                row_classes: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::to_vec;
    use crate::vae::VaeConfig;

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
    fn guidance_combines_the_two_predictions_as_equation_6() {
        let device = Device::flex();
        let conditional = Tensor::<1>::from_floats([1.0, -2.0, 0.5], &device);
        let unconditional = Tensor::<1>::from_floats([0.5, 1.0, 0.5], &device);
        // w = 3: 4 * c - 3 * u = [4 - 1.5, -8 - 3, 2 - 1.5].
        let guided = guided_noise(conditional.clone(), unconditional.clone(), 3.0);
        assert_eq!(to_vec(guided), [2.5, -11.0, 0.5]);
        // w = 0 is the conditional prediction itself.
        let plain = guided_noise(conditional.clone(), unconditional, 0.0);
        assert!(plain.equal(conditional).all().into_scalar::<bool>());
    }

    #[test]
    fn the_batched_guided_pass_equals_two_separate_passes() {
        let device = Device::flex();
        let denoiser = narrow_denoiser(3)
            .with_blocks(2)
            .with_time_embedding_dim(8)
            .with_num_classes(4)
            .init(&device);
        let z = Tensor::<2>::random(
            [5, 3],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
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
        let statistics = CodeStatistics::of(&codes, 2);
        assert!((statistics.mean[0] - 2.0).abs() < 1e-6);
        assert!((statistics.mean[1] + 1.0).abs() < 1e-6);
        assert!((statistics.std[0] - (8.0f32 / 3.0).sqrt()).abs() < 1e-6);
        assert_eq!(statistics.std[1], 1e-6, "a constant dimension is floored");

        // encode then decode: the decoder sees mu itself.
        let device = Device::flex();
        let vae = VaeConfig::new()
            .with_latent_dim(2)
            .with_channels([4, 8])
            .with_hidden(8)
            .init(&device);
        let images =
            Tensor::<4>::random([3, 1, 28, 28], burn::tensor::Distribution::Default, &device);
        let mu = vae.encoder.forward(images.clone()).mu;
        let statistics = CodeStatistics::of(&to_vec(mu.clone()), 2);
        let codec = LatentCodec::new(vae.clone(), &statistics);
        let z = codec.encode(images);
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
    fn guidance_is_refused_where_it_cannot_apply() {
        let device = Device::flex();
        let schedule = NoiseSchedule::ddpm();
        let config = narrow_denoiser(3);
        let guidance = |scale, class| Some(Guidance { scale, class });
        let open = |classes, guidance| {
            LatentDiffusionSource::new(
                config.clone().with_num_classes(classes).init(&device),
                unfitted_codec(3, &device),
                &schedule,
                ddim(2),
                guidance,
            )
            .map(|_| ())
        };
        assert_eq!(
            open(0, guidance(1.0, None)),
            Err(GuidanceError::Unconditional)
        );
        assert_eq!(
            open(10, guidance(-1.0, None)),
            Err(GuidanceError::Scale(-1.0))
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
        let denoiser = narrow_denoiser(4).init(&device).map(&mut Zero);
        let codec = unfitted_codec(4, &device);
        let source =
            LatentDiffusionSource::new(denoiser, codec, &NoiseSchedule::ddpm(), ddim(2), None)
                .unwrap();
        // With eps = 0, DDIM (eta 0) over t = 500, 0 gives z0 = sqrt(ab_0 / ab_500) x_T; a
        // clipped x0_hat would keep |z0| <= 1.
        let codes = source.draw_codes(16, None, 3, &device);
        let x_t = crate::noise::seeded_normal([16, 4], 3, &device);
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
        let source = LatentDiffusionSource::new(
            narrow_denoiser(3).with_num_classes(10).init(&device),
            unfitted_codec(3, &device),
            &NoiseSchedule::ddpm(),
            ddim(3),
            Some(Guidance {
                scale: 1.0,
                class: None,
            }),
        )
        .unwrap();
        let drawn = source.draw(12, 4, &device);
        assert_eq!(drawn.images.dims(), [12, 1, 28, 28]);
        assert_eq!(drawn.classes.unwrap(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
        // The same seed gives the same images.
        let again = source.draw(12, 4, &device).images;
        assert!(again.all_close(source.draw(12, 4, &device).images, Some(0.0), Some(0.0)));
    }
}
