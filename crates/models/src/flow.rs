//! RealNVP (Dinh, Sohl-Dickstein & Bengio, 2017): an invertible network `f` from images to
//! Gaussian noise whose log-likelihood is exact by the change of variables,
//!
//! `log p_X(x) = log p_Z(f(x)) + log |det df/dx|`.
//!
//! - Data: 8-bit pixels `x` are dequantised, `y = (x + u) / 256` with `u ~ U[0, 1)^D`, then sent
//!   through the logit `z0 = logit(a + (1 - 2a) y)` (`a = 0.05`, [`LOGIT_ALPHA`]), whose Jacobian
//!   `log|dz0/dy| = sum_i [log(1 - 2a) - log p_i - log(1 - p_i)]` is part of the likelihood
//!   ([`logit_transform`]). With the dequantisation, `-log p(x) <= -log p_Y(y) + D log 256` in
//!   expectation over `u` (Theis et al., 2016): [`RealNvp::negative_log_likelihood`] is that
//!   bound for the discrete images, in nats, and [`bits_per_dim`] divides it by `D ln 2`.
//! - Affine coupling ([`Coupling`]): with a binary mask `b`,
//!   `y = b x + (1 - b) (x exp(s(b x)) + t(b x))`, `log|det| = sum (1 - b) s(b x)`; `s` and `t`
//!   come from one network of the unchanged half (a small ResNet, or a U-Net variant:
//!   [`CouplingNetwork`]), `s = scale * tanh(raw)` for stability. The masks alternate: a
//!   checkerboard on the pixels, and after a squeeze (each 2x2 block of pixels into 4 channels)
//!   half of the channels.
//! - ActNorm (Kingma & Dhariwal, 2018) after every coupling: `y = (x + bias) exp(log_scale)` per
//!   channel, `log|det| = H W sum log_scale`, initialised from the first batch so that its output
//!   has zero mean and unit variance ([`RealNvp::initialize_actnorm`]).
//! - Multi-scale: each scale but the last is 3 checkerboard couplings, a squeeze, 3 channel
//!   couplings, then half of the channels factored out as part of `z`; the last scale is 4
//!   checkerboard couplings. For 28x28x1 and 3 scales: 1x28x28 -> 4x14x14 (2x14x14 out) ->
//!   8x7x7 (4x7x7 out) -> 4x7x7. Every piece of `z` has the prior N(0, I).

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use genmodels_kernels::nn::conv2d;
use serde::{Deserialize, Serialize};

use crate::image_source::{Drawn, ImageSource, PixelRange};
use crate::noise::seeded_normal;
use crate::pytorch::PytorchNames;

/// The flow's name in a run folder: its Config's key in `config.json` and its record
/// `flow.bpk`.
pub const FLOW: &str = "flow";
/// `a` of the logit transform `logit(a + (1 - 2a) y)`, which keeps the logit finite at 0 and 1
/// (RealNVP's 0.05).
pub const LOGIT_ALPHA: f64 = 0.05;
/// Checkerboard couplings of each scale but the last, and of the last.
const CHECKERBOARD_COUPLINGS: [usize; 2] = [3, 4];
/// Channel couplings of each scale but the last.
const CHANNEL_COUPLINGS: usize = 3;

/// The network that gives a coupling its `s` and `t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CouplingNetwork {
    /// 3x3 conv -> residual blocks -> 3x3 conv, all at the input's resolution (the paper's).
    ResNet,
    /// 3x3 conv, a stride-2 conv to twice the channels, the residual blocks at half
    /// resolution, upsampled back and concatenated with the first conv's output, then a 3x3
    /// conv.
    UNet,
}

/// Builds a [`RealNvp`].
#[derive(Config, Debug)]
pub struct RealNvpConfig {
    /// Channels of the images.
    #[config(default = 1)]
    pub image_channels: usize,
    /// Side of the (square) images; each scale but the last halves it.
    #[config(default = 28)]
    pub image_size: usize,
    /// Scales of the multi-scale architecture.
    #[config(default = 3)]
    pub scales: usize,
    /// Channels inside each coupling network.
    #[config(default = 64)]
    pub hidden_channels: usize,
    /// Residual blocks of each coupling network.
    #[config(default = 4)]
    pub residual_blocks: usize,
    /// The coupling networks' architecture.
    #[config(default = "CouplingNetwork::ResNet")]
    pub coupling_network: CouplingNetwork,
}

impl RealNvpConfig {
    /// Initialises the flow. The last convolution of each coupling network starts at zero, so
    /// every coupling starts as the identity.
    ///
    /// # Panics
    ///
    /// When the side does not halve `scales - 1` times.
    pub fn init(&self, device: &Device) -> RealNvp {
        assert!(self.scales >= 1, "a flow needs at least one scale");
        let mut channels = self.image_channels;
        let mut side = self.image_size;
        let mut scales = Vec::new();
        for scale in 0..self.scales {
            let last = scale + 1 == self.scales;
            let net = |c_in: usize, c_out: usize| {
                CouplingNet::new(
                    c_in,
                    c_out,
                    self.hidden_channels,
                    self.residual_blocks,
                    self.coupling_network,
                    device,
                )
            };
            let checkerboard = (0..CHECKERBOARD_COUPLINGS[last as usize])
                .map(|i| {
                    Coupling::new(
                        Mask::Checkerboard,
                        i % 2,
                        channels,
                        net(channels + 1, 2 * channels),
                        device,
                    )
                })
                .collect();
            let channelwise = if last {
                Vec::new()
            } else {
                assert!(
                    side.is_multiple_of(2),
                    "side {side} at scale {scale} cannot be squeezed: choose fewer scales"
                );
                let squeezed = 4 * channels;
                (0..CHANNEL_COUPLINGS)
                    .map(|i| {
                        Coupling::new(
                            Mask::Channels,
                            i % 2,
                            squeezed,
                            net(squeezed / 2, squeezed),
                            device,
                        )
                    })
                    .collect()
            };
            scales.push(Scale {
                checkerboard,
                channelwise,
            });
            if !last {
                channels *= 2; // 4C after the squeeze, half factored out
                side /= 2;
            }
        }
        RealNvp {
            scales,
            image_channels: self.image_channels,
            image_size: self.image_size,
        }
    }
}

/// The flow f: images (after the logit transform) -> z, and back.
#[derive(Module, Debug)]
pub struct RealNvp {
    scales: Vec<Scale>,
    image_channels: usize,
    image_size: usize,
}

/// No PyTorch counterpart in `benches/pytorch_reference.py`: exported under its own paths.
impl PytorchNames for RealNvp {}

#[derive(Module, Debug)]
struct Scale {
    checkerboard: Vec<Coupling>,
    channelwise: Vec<Coupling>,
}

impl Scale {
    fn is_last(&self) -> bool {
        self.channelwise.is_empty()
    }
}

impl RealNvp {
    /// Values per image, D.
    pub fn dims(&self) -> usize {
        self.image_channels * self.image_size * self.image_size
    }

    /// `x: [B, C, H, W]` -> `z: [B, D]` (the factored-out pieces in order, then the last
    /// scale's output, each flattened) and `log|det df/dx|: [B]`.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<1>) {
        let [batch, ..] = x.dims();
        let mut log_det = Tensor::<1>::zeros([batch], &x.device());
        let mut pieces = Vec::new();
        let mut x = x;
        for scale in &self.scales {
            for coupling in &scale.checkerboard {
                let (y, ld) = coupling.forward(x);
                (x, log_det) = (y, log_det + ld);
            }
            if scale.is_last() {
                break;
            }
            x = squeeze(x); // [B, 4C, H/2, W/2]
            for coupling in &scale.channelwise {
                let (y, ld) = coupling.forward(x);
                (x, log_det) = (y, log_det + ld);
            }
            let [_, channels, ..] = x.dims();
            pieces.push(x.clone().narrow(1, 0, channels / 2).flatten(1, 3)); // factored out
            x = x.narrow(1, channels / 2, channels / 2); // [B, 2C, H/2, W/2]
        }
        pieces.push(x.flatten(1, 3));
        (Tensor::cat(pieces, 1), log_det) // [B, D], [B]
    }

    /// The inverse of [`RealNvp::forward`]: `z: [B, D]` -> `x: [B, C, H, W]`.
    pub fn inverse(&self, z: Tensor<2>) -> Tensor<4> {
        let [batch, _] = z.dims();
        let shapes = self.piece_shapes();
        let mut offset = 0;
        let mut pieces: Vec<Tensor<4>> = shapes
            .iter()
            .map(|&[c, h, w]| {
                let piece = z
                    .clone()
                    .narrow(1, offset, c * h * w)
                    .reshape([batch, c, h, w]);
                offset += c * h * w;
                piece
            })
            .collect();
        let mut x = pieces.pop().expect("the last scale's output");
        for scale in self.scales.iter().rev() {
            if !scale.is_last() {
                let factored = pieces.pop().expect("one piece per scale");
                x = Tensor::cat(vec![factored, x], 1); // [B, 4C, H/2, W/2]
                for coupling in scale.channelwise.iter().rev() {
                    x = coupling.inverse(x);
                }
                x = unsqueeze(x); // [B, C, H, W]
            }
            for coupling in scale.checkerboard.iter().rev() {
                x = coupling.inverse(x);
            }
        }
        x
    }

    /// `[C, H, W]` of each factored-out piece of z, then of the last scale's output.
    fn piece_shapes(&self) -> Vec<[usize; 3]> {
        let (mut channels, mut side) = (self.image_channels, self.image_size);
        let mut shapes = Vec::new();
        for scale in &self.scales {
            if scale.is_last() {
                shapes.push([channels, side, side]);
            } else {
                channels *= 2;
                side /= 2;
                shapes.push([channels, side, side]);
            }
        }
        shapes
    }

    /// The data-dependent initialisation of every ActNorm: `x` (a batch after the logit
    /// transform) is sent through the flow, and each ActNorm set so that its output over the
    /// batch has zero mean and unit variance per channel.
    pub fn initialize_actnorm(self, x: Tensor<4>) -> Self {
        let mut x = x;
        let mut scales = Vec::new();
        for scale in self.scales {
            let last = scale.is_last();
            let initialize = |couplings: Vec<Coupling>, x: &mut Tensor<4>| -> Vec<Coupling> {
                couplings
                    .into_iter()
                    .map(|coupling| {
                        let coupling = coupling.initialize_actnorm(x.clone());
                        *x = coupling.forward(x.clone()).0;
                        coupling
                    })
                    .collect()
            };
            let checkerboard = initialize(scale.checkerboard, &mut x);
            let mut channelwise = Vec::new();
            if !last {
                x = squeeze(x);
                channelwise = initialize(scale.channelwise, &mut x);
                let [_, channels, ..] = x.dims();
                x = x.narrow(1, channels / 2, channels / 2);
            }
            scales.push(Scale {
                checkerboard,
                channelwise,
            });
        }
        Self { scales, ..self }
    }

    /// `-log p(x)` in nats for each image of `pixels` (`[B, C, H, W]`, values 0..=255) with the
    /// dequantisation noise `uniform ~ U[0, 1)` of the same shape: every Jacobian term included,
    /// `-(log N(f(z0); 0, I) + log|det df/dz0| + log|dz0/dy|) + D log 256`. `[B]`.
    pub fn negative_log_likelihood(&self, pixels: Tensor<4>, uniform: Tensor<4>) -> Tensor<1> {
        let y = (pixels + uniform) / 256.0; // [B, C, H, W] in (0, 1)
        let (z0, logit_log_det) = logit_transform(y);
        let (z, flow_log_det) = self.forward(z0); // [B, D], [B]
        let dims = self.dims() as f64;
        let log_prior = standard_normal_log_density(z);
        -(log_prior + flow_log_det + logit_log_det) + dims * 256f64.ln()
    }

    /// Images `[count, C, H, W]` in [0, 1] from `z ~ N(0, temperature^2 I)`, z drawn on the
    /// host from `seed`.
    pub fn sample(&self, count: usize, temperature: f64, seed: u64, device: &Device) -> Tensor<4> {
        let z = seeded_normal([count, self.dims()], seed, device) * temperature; // [count, D]
        self.decode(z)
    }

    /// `z: [B, D]` -> images in [0, 1]: the inverse flow, then the inverse logit.
    pub fn decode(&self, z: Tensor<2>) -> Tensor<4> {
        inverse_logit(self.inverse(z)).clamp(0.0, 1.0)
    }

    /// Images in [0, 1] (no dequantisation noise: the centre of each pixel's bin) -> z `[B, D]`.
    pub fn encode(&self, images: Tensor<4>) -> Tensor<2> {
        let y = (images * 255.0 + 0.5) / 256.0;
        self.forward(logit_transform(y).0).0
    }
}

/// `log N(z; 0, I)` of each row of `z: [B, D]`: `-(|z|^2 + D ln 2 pi) / 2`. `[B]`.
pub fn standard_normal_log_density(z: Tensor<2>) -> Tensor<1> {
    let [_, dims] = z.dims();
    let log_two_pi = (2.0 * std::f64::consts::PI).ln();
    (z.square().sum_dim(1).squeeze_dim::<1>(1) + dims as f64 * log_two_pi) * -0.5
}

/// Nats per image -> bits per dimension: `nll / (D ln 2)`.
pub fn bits_per_dim(nll: Tensor<1>, dims: usize) -> Tensor<1> {
    nll / (dims as f64 * std::f64::consts::LN_2)
}

/// `z0 = logit(p)`, `p = a + (1 - 2a) y`, and `log|dz0/dy| = sum_i [log(1 - 2a) - log p_i -
/// log(1 - p_i)]` per image (`[B]`), for `y: [B, C, H, W]` in [0, 1].
pub fn logit_transform(y: Tensor<4>) -> (Tensor<4>, Tensor<1>) {
    let p = y * (1.0 - 2.0 * LOGIT_ALPHA) + LOGIT_ALPHA;
    let log_p = p.clone().log();
    let log_one_minus_p = p.neg().add_scalar(1.0).log();
    let z0 = log_p.clone() - log_one_minus_p.clone();
    let per_pixel = (log_p + log_one_minus_p)
        .neg()
        .add_scalar((1.0 - 2.0 * LOGIT_ALPHA).ln());
    (z0, sum_per_image(per_pixel))
}

/// The sum over each image's values: `[B, C, H, W]` -> `[B]`.
fn sum_per_image(x: Tensor<4>) -> Tensor<1> {
    x.flatten::<2>(1, 3).sum_dim(1).squeeze_dim(1)
}

/// The inverse of the logit transform: `y = (sigmoid(z0) - a) / (1 - 2a)`.
pub fn inverse_logit(z0: Tensor<4>) -> Tensor<4> {
    (sigmoid(z0) - LOGIT_ALPHA) / (1.0 - 2.0 * LOGIT_ALPHA)
}

/// Space to depth: each 2x2 block of pixels becomes 4 channels, `[B, C, H, W]` ->
/// `[B, 4C, H/2, W/2]`.
pub fn squeeze(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h / 2, 2, w / 2, 2])
        .permute([0, 1, 3, 5, 2, 4]) // [B, C, 2, 2, H/2, W/2]
        .reshape([b, 4 * c, h / 2, w / 2])
}

/// The inverse of [`squeeze`].
pub fn unsqueeze(x: Tensor<4>) -> Tensor<4> {
    let [b, c4, h, w] = x.dims();
    let c = c4 / 4;
    x.reshape([b, c, 2, 2, h, w])
        .permute([0, 1, 4, 2, 5, 3]) // [B, C, H/2, 2, W/2, 2]
        .reshape([b, c, 2 * h, 2 * w])
}

/// Which half of its input a coupling leaves unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mask {
    /// The pixels with `(row + column + parity)` even.
    Checkerboard,
    /// The first half of the channels (parity 0) or the second (parity 1).
    Channels,
}

/// An affine coupling layer followed by ActNorm.
#[derive(Module, Debug)]
struct Coupling {
    net: CouplingNet,
    /// `s = scale * tanh(raw)`, one scale per channel, starting at 1.
    scale: Param<Tensor<1>>,
    actnorm: ActNorm,
    checkerboard: bool,
    parity: usize,
}

impl Coupling {
    fn new(mask: Mask, parity: usize, channels: usize, net: CouplingNet, device: &Device) -> Self {
        let transformed = match mask {
            Mask::Checkerboard => channels,
            Mask::Channels => channels / 2,
        };
        Self {
            net,
            scale: Initializer::Ones.init([transformed], device),
            actnorm: ActNorm::new(channels, device),
            checkerboard: mask == Mask::Checkerboard,
            parity,
        }
    }

    /// `[1, 1, H, W]`: 1 on the pixels left unchanged.
    fn checkerboard_mask(&self, height: usize, width: usize, device: &Device) -> Tensor<4> {
        let values: Vec<f32> = (0..height * width)
            .map(|i| (i / width + i % width + self.parity).is_multiple_of(2) as u8 as f32)
            .collect();
        Tensor::from_data(TensorData::new(values, [1, 1, height, width]), device)
    }

    /// `s` and `t` from the unchanged part `conditioning`, for `channels` transformed
    /// channels.
    fn scale_and_shift(&self, conditioning: Tensor<4>, channels: usize) -> (Tensor<4>, Tensor<4>) {
        let raw = self.net.forward(conditioning); // [B, 2 * channels, H, W]
        let s = raw.clone().narrow(1, 0, channels).tanh()
            * self.scale.val().reshape([1, channels, 1, 1]);
        (s, raw.narrow(1, channels, channels))
    }

    /// `x -> (y, log|det|: [B])`: the coupling, then ActNorm.
    fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<1>) {
        let (y, log_det) = self.couple(x);
        let (y, actnorm_log_det) = self.actnorm.forward(y);
        (y, log_det + actnorm_log_det)
    }

    /// The checkerboard coupling's parts of `x`: the kept pixels `b * x`, the mask `1 - b` of
    /// the changed ones, and `s`, `t` from the kept pixels with `b` as an extra channel.
    fn checkerboard_parts(&self, x: &Tensor<4>) -> [Tensor<4>; 4] {
        let [batch, channels, height, width] = x.dims();
        let b = self.checkerboard_mask(height, width, &x.device()); // [1, 1, H, W]
        let kept = x.clone() * b.clone();
        let input = Tensor::cat(
            vec![kept.clone(), b.clone().expand([batch, 1, height, width])],
            1,
        );
        let (s, t) = self.scale_and_shift(input, channels);
        let free = b.neg().add_scalar(1.0); // 1 - b
        [kept, free, s, t]
    }

    /// The channel coupling's parts of `x`: the kept half, the changed half, and `s`, `t` from
    /// the kept half.
    fn channel_parts(&self, x: Tensor<4>) -> [Tensor<4>; 4] {
        let half = x.dims()[1] / 2;
        let (first, second) = (x.clone().narrow(1, 0, half), x.narrow(1, half, half));
        let (kept, changed) = if self.parity == 0 {
            (first, second)
        } else {
            (second, first)
        };
        let (s, t) = self.scale_and_shift(kept.clone(), half);
        [kept, changed, s, t]
    }

    /// The kept and the changed half back in their places: the inverse of the split of
    /// [`Coupling::channel_parts`].
    fn join_channels(&self, kept: Tensor<4>, changed: Tensor<4>) -> Tensor<4> {
        if self.parity == 0 {
            Tensor::cat(vec![kept, changed], 1)
        } else {
            Tensor::cat(vec![changed, kept], 1)
        }
    }

    fn couple(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<1>) {
        if self.checkerboard {
            let [kept, free, s, t] = self.checkerboard_parts(&x);
            let s = s * free.clone();
            let y = kept + (x * s.clone().exp() + t) * free;
            (y, sum_per_image(s))
        } else {
            let [kept, changed, s, t] = self.channel_parts(x);
            let changed = changed * s.clone().exp() + t;
            (self.join_channels(kept, changed), sum_per_image(s))
        }
    }

    fn inverse(&self, y: Tensor<4>) -> Tensor<4> {
        let y = self.actnorm.inverse(y);
        if self.checkerboard {
            let [kept, free, s, t] = self.checkerboard_parts(&y);
            kept + ((y - t) * (s * free.clone()).neg().exp()) * free
        } else {
            let [kept, changed, s, t] = self.channel_parts(y);
            let restored = (changed - t) * s.neg().exp();
            self.join_channels(kept, restored)
        }
    }

    /// This coupling with its ActNorm set from the batch `x` of its inputs.
    fn initialize_actnorm(self, x: Tensor<4>) -> Self {
        let (y, _) = self.couple(x);
        Self {
            actnorm: self.actnorm.initialized_for(y),
            ..self
        }
    }
}

/// `y = (x + bias) exp(log_scale)`, per channel.
#[derive(Module, Debug)]
struct ActNorm {
    bias: Param<Tensor<1>>,
    log_scale: Param<Tensor<1>>,
}

impl ActNorm {
    fn new(channels: usize, device: &Device) -> Self {
        Self {
            bias: Initializer::Zeros.init([channels], device),
            log_scale: Initializer::Zeros.init([channels], device),
        }
    }

    fn parameters(&self, channels: usize) -> (Tensor<4>, Tensor<4>) {
        let shape = [1, channels, 1, 1];
        (
            self.bias.val().reshape(shape),
            self.log_scale.val().reshape(shape),
        )
    }

    /// `x -> (y, H W sum log_scale: [B])`.
    fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<1>) {
        let [batch, channels, height, width] = x.dims();
        let (bias, log_scale) = self.parameters(channels);
        let log_det = self.log_scale.val().sum() * (height * width) as f64; // [1]
        ((x + bias) * log_scale.exp(), log_det.expand([batch]))
    }

    fn inverse(&self, y: Tensor<4>) -> Tensor<4> {
        let [_, channels, ..] = y.dims();
        let (bias, log_scale) = self.parameters(channels);
        y * log_scale.neg().exp() - bias
    }

    /// Bias `-mean` and log-scale `-log std` of each channel of `x` over batch and pixels.
    fn initialized_for(self, x: Tensor<4>) -> Self {
        let [_, channels, ..] = x.dims();
        let per_channel = x.swap_dims(0, 1).flatten::<2>(1, 3).detach(); // [C, B H W]
        let mean = per_channel.clone().mean_dim(1); // [C, 1]
        let std = (per_channel - mean.clone()).square().mean_dim(1).sqrt(); // [C, 1]
        let log_scale = (std + 1e-6).log().neg().reshape([channels]);
        Self {
            bias: Param::from_tensor(mean.neg().reshape([channels])),
            log_scale: Param::from_tensor(log_scale),
        }
    }
}

/// The network of one coupling: the conditioning half in, `[raw s, t]` out.
#[derive(Module, Debug)]
struct CouplingNet {
    input: Conv2d,
    /// U-Net variant only: to half resolution and twice the channels.
    down: Option<Conv2d>,
    blocks: Vec<ResidualBlock>,
    /// U-Net variant only: back from twice the channels after upsampling, and the merge with
    /// the skip.
    up: Option<Conv2d>,
    merge: Option<Conv2d>,
    output: Conv2d,
}

impl CouplingNet {
    fn new(
        c_in: usize,
        c_out: usize,
        hidden: usize,
        blocks: usize,
        kind: CouplingNetwork,
        device: &Device,
    ) -> Self {
        let unet = kind == CouplingNetwork::UNet;
        let inner = if unet { 2 * hidden } else { hidden };
        Self {
            input: conv3x3(c_in, hidden, 1, device),
            down: unet.then(|| conv3x3(hidden, inner, 2, device)),
            blocks: (0..blocks)
                .map(|_| ResidualBlock::new(inner, device))
                .collect(),
            up: unet.then(|| conv3x3(inner, hidden, 1, device)),
            merge: unet.then(|| conv3x3(2 * hidden, hidden, 1, device)),
            output: Conv2dConfig::new([hidden, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = conv2d(&self.input, x); // [B, h, H, W]
        let [_, _, height, width] = h.dims();
        let mut inner = match &self.down {
            Some(down) => conv2d(down, relu(h.clone())), // [B, 2h, H/2, W/2]
            None => h.clone(),
        };
        for block in &self.blocks {
            inner = block.forward(inner);
        }
        let h = match (&self.up, &self.merge) {
            (Some(up), Some(merge)) => {
                let options = InterpolateOptions::new(InterpolateMode::Nearest)
                    .with_output_size([height, width]);
                let upsampled = interpolate(inner, options); // [B, 2h, H, W]
                let up = conv2d(up, relu(upsampled)); // [B, h, H, W]
                conv2d(merge, relu(Tensor::cat(vec![up, h], 1))) // [B, h, H, W]
            }
            _ => inner,
        };
        conv2d(&self.output, relu(h)) // [B, c_out, H, W]
    }
}

/// `x + conv(relu(conv(relu(x))))`, both 3x3.
#[derive(Module, Debug)]
struct ResidualBlock {
    first: Conv2d,
    second: Conv2d,
}

impl ResidualBlock {
    fn new(channels: usize, device: &Device) -> Self {
        Self {
            first: conv3x3(channels, channels, 1, device),
            second: conv3x3(channels, channels, 1, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = conv2d(&self.first, relu(x.clone()));
        x + conv2d(&self.second, relu(h))
    }
}

fn conv3x3(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

/// A trained flow as an [`ImageSource`]: `f^-1(z)` for `z ~ N(0, T^2 I)`.
#[derive(Debug, Clone)]
pub struct FlowSource {
    pub flow: RealNvp,
    pub temperature: f64,
}

impl ImageSource for FlowSource {
    fn pixel_range(&self) -> PixelRange {
        PixelRange::ZeroToOne
    }

    fn describe(&self) -> String {
        format!(
            "RealNVP f^-1(z), z ~ N(0, {}^2 I) in R^{}",
            self.temperature,
            self.flow.dims()
        )
    }

    fn draw(&self, count: usize, seed: u64, device: &Device) -> Drawn {
        self.flow
            .valid()
            .sample(count, self.temperature, seed, device)
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_near, to_vec};
    use burn::module::{Module, ModuleMapper};
    use burn::tensor::Distribution;

    /// Adds N(0, 0.05^2) to every weight, so that no coupling is the identity.
    struct Perturb;

    impl ModuleMapper for Perturb {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|w| {
                let noise = w.random_like(Distribution::Normal(0.0, 0.05));
                w + noise
            })
        }
    }

    /// A flow on `side`x`side` images with `scales` scales and the narrowest networks.
    fn tiny_config(side: usize, scales: usize) -> RealNvpConfig {
        RealNvpConfig::new()
            .with_image_size(side)
            .with_scales(scales)
            .with_hidden_channels(4)
            .with_residual_blocks(1)
    }

    /// A [`tiny_config`] flow with each coupling network in turn, its weights perturbed so that
    /// no coupling is the identity. Each flow is built from seed 7 when the iteration reaches
    /// it, so what the loop body draws next comes from the device's generator after it.
    fn tiny_flows(
        side: usize,
        scales: usize,
        device: &Device,
    ) -> impl Iterator<Item = (CouplingNetwork, RealNvp)> + '_ {
        [CouplingNetwork::ResNet, CouplingNetwork::UNet]
            .into_iter()
            .map(move |kind| {
                device.seed(7);
                let flow = tiny_config(side, scales)
                    .with_coupling_network(kind)
                    .init(device)
                    .map(&mut Perturb);
                (kind, flow)
            })
    }

    #[test]
    fn squeeze_moves_each_2x2_block_into_channels_and_unsqueeze_undoes_it() {
        let device = Device::flex();
        let values: Vec<f32> = (0..32).map(|v| v as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(values, [1, 2, 4, 4]), &device);
        let squeezed = squeeze(x.clone());
        assert_eq!(squeezed.dims(), [1, 8, 2, 2]);
        // Channel 0 holds the top-left pixel of each block of input channel 0: 0, 2, 8, 10.
        let first = to_vec(squeezed.clone().narrow(1, 0, 1));
        assert_eq!(first, [0.0, 2.0, 8.0, 10.0]);
        // Channel 3: the bottom-right pixels, 5, 7, 13, 15.
        let fourth = to_vec(squeezed.clone().narrow(1, 3, 1));
        assert_eq!(fourth, [5.0, 7.0, 13.0, 15.0]);
        assert!(unsqueeze(squeezed).equal(x).all().into_scalar::<bool>());
    }

    #[test]
    fn the_inverse_inverts_the_forward_pass() {
        let device = Device::flex();
        for (kind, flow) in tiny_flows(28, 3, &device) {
            let x = Tensor::<4>::random([3, 1, 28, 28], Distribution::Normal(0.0, 1.5), &device);
            let flow = flow.initialize_actnorm(x.clone());
            let (z, _) = flow.forward(x.clone());
            assert_eq!(z.dims(), [3, 784]);
            let back = flow.inverse(z);
            let error = (back - x).abs().max().into_scalar::<f32>();
            assert!(error < 1e-4, "{kind:?}: max |f^-1(f(x)) - x| = {error}");
        }
    }

    #[test]
    fn actnorm_initialisation_standardises_each_channel_of_the_batch() {
        let device = Device::flex();
        let x = Tensor::<4>::random([8, 3, 4, 4], Distribution::Normal(2.0, 3.0), &device);
        let actnorm = ActNorm::new(3, &device).initialized_for(x.clone());
        let (y, log_det) = actnorm.forward(x);
        let per_channel = y.swap_dims(0, 1).flatten::<2>(1, 3);
        let mean = to_vec(per_channel.clone().mean_dim(1));
        let var = to_vec(per_channel.square().mean_dim(1));
        for c in 0..3 {
            assert!(
                mean[c].abs() < 1e-4 && (var[c] - 1.0).abs() < 1e-3,
                "{mean:?} {var:?}"
            );
        }
        // log|det| = H W sum log_scale, the same for every sample.
        let expected = 16.0 * actnorm.log_scale.val().sum().into_scalar::<f32>();
        let values = to_vec(log_det);
        assert!(
            values.iter().all(|v| (v - expected).abs() < 1e-3),
            "{values:?}"
        );
    }

    /// log|det J| of `f` at `x` from central differences, in f64 through nalgebra's LU.
    fn finite_difference_log_det(flow: &RealNvp, x: &[f32], side: usize, device: &Device) -> f64 {
        let dims = x.len();
        let epsilon = 1e-2f32;
        let image = |values: Vec<f32>| {
            Tensor::<4>::from_data(TensorData::new(values, [1, 1, side, side]), device)
        };
        let mut jacobian = nalgebra::DMatrix::<f64>::zeros(dims, dims);
        for j in 0..dims {
            let (mut plus, mut minus) = (x.to_vec(), x.to_vec());
            plus[j] += epsilon;
            minus[j] -= epsilon;
            let z_plus = to_vec(flow.forward(image(plus)).0);
            let z_minus = to_vec(flow.forward(image(minus)).0);
            for i in 0..dims {
                jacobian[(i, j)] = (z_plus[i] as f64 - z_minus[i] as f64) / (2.0 * epsilon as f64);
            }
        }
        jacobian.lu().determinant().abs().ln()
    }

    #[test]
    fn the_log_determinant_equals_a_finite_difference_jacobian() {
        let device = Device::flex();
        // 1x4x4: scale 1 (3 checkerboard, squeeze to 4x2x2, 3 channel couplings, 2x2x2 out)
        // and the last scale (4 checkerboard couplings on 2x2x2).
        for (kind, flow) in tiny_flows(4, 2, &device) {
            let batch = Tensor::<4>::random([16, 1, 4, 4], Distribution::Normal(0.0, 1.0), &device);
            let flow = flow.initialize_actnorm(batch).map(&mut Perturb);
            let x: Vec<f32> = (0..16).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
            let input = Tensor::<4>::from_data(TensorData::new(x.clone(), [1, 1, 4, 4]), &device);
            let log_det = flow.forward(input).1.into_scalar::<f32>() as f64;
            let brute_force = finite_difference_log_det(&flow, &x, 4, &device);
            let case = format!("{kind:?}: log|det| vs finite differences");
            assert_near(log_det, brute_force, 5e-3, &case);
        }
    }

    #[test]
    fn the_logit_transform_and_its_jacobian_match_a_hand_computation() {
        let device = Device::flex();
        // y = 0.5: p = 0.5, z0 = 0, log|dz0/dy| = log(0.9) - 2 log(0.5).
        // y = 0: p = 0.05, z0 = log(0.05 / 0.95), log|dz0/dy| = log(0.9) - log(0.05) - log(0.95).
        let y = Tensor::<4>::from_data(TensorData::new(vec![0.5f32, 0.0], [1, 1, 1, 2]), &device);
        let (z0, log_det) = logit_transform(y.clone());
        let z0 = to_vec(z0.clone());
        assert!(z0[0].abs() < 1e-6);
        assert!((z0[1] as f64 - (0.05f64 / 0.95).ln()).abs() < 1e-5);
        let expected = 2.0 * 0.9f64.ln() - 2.0 * 0.5f64.ln() - 0.05f64.ln() - 0.95f64.ln();
        assert!((log_det.into_scalar::<f32>() as f64 - expected).abs() < 1e-5);
        let (z0, _) = logit_transform(y.clone());
        assert!(inverse_logit(z0).all_close(y, Some(1e-5), Some(1e-6)));
    }

    #[test]
    fn the_nll_of_an_identity_flow_is_the_gaussian_of_the_logits_plus_the_corrections() {
        let device = Device::flex();
        // Fresh couplings are the identity (zero last convs) and fresh ActNorms too, so
        // -log p(x) = -log N(z0) - log|dz0/dy| + D log 256, with z0 = logit(a + (1 - 2a) y).
        let flow = tiny_config(4, 2).init(&device);
        let pixels: Vec<f32> = (0..16).map(|i| (i * 17) as f32).collect(); // 0, 17, ..., 255
        let uniform = vec![0.5f32; 16];
        let nll = flow
            .negative_log_likelihood(
                Tensor::from_data(TensorData::new(pixels.clone(), [1, 1, 4, 4]), &device),
                Tensor::from_data(TensorData::new(uniform, [1, 1, 4, 4]), &device),
            )
            .into_scalar::<f32>() as f64;
        let mut expected = 16.0 * 256f64.ln();
        for &x in &pixels {
            let y = (x as f64 + 0.5) / 256.0;
            let p = LOGIT_ALPHA + (1.0 - 2.0 * LOGIT_ALPHA) * y;
            let z0 = (p / (1.0 - p)).ln();
            expected += 0.5 * (z0 * z0 + (2.0 * std::f64::consts::PI).ln());
            expected -= (1.0 - 2.0 * LOGIT_ALPHA).ln() - p.ln() - (1.0 - p).ln();
        }
        assert!((nll - expected).abs() < 1e-3, "{nll} against {expected}");
        let bits = bits_per_dim(Tensor::<1>::from_floats([nll as f32], &device), 16);
        let by_hand = expected / (16.0 * std::f64::consts::LN_2);
        assert!((bits.into_scalar::<f32>() as f64 - by_hand).abs() < 1e-4);
    }
}
