//! The noise predictor eps_theta(x_t, t) of Ho et al. (2020), sized for 28x28 images: a U-Net
//! of residual blocks conditioned on a sinusoidal time embedding, with single-head
//! self-attention at the coarsest resolution.
//!
//! With the defaults (the `full` preset): channels 64 / 128 / 128 at 28x28 / 14x14 / 7x7, two
//! residual blocks per level on the way down and two on the way up, each up block taking the
//! matching down block's output concatenated on channels, attention at 7x7 after the down blocks,
//! in the middle (res -> attn -> res) and after the first up level; 5,198,849 parameters.
//!
//! A class-conditional U-Net ([`UNetConfig::num_classes`]) adds a learned class embedding to the
//! time embedding, with one row more for the null label of classifier-free guidance
//! ([`super::guidance`]).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use genmodels_kernels::nn::{conv2d, group_norm, linear};
use genmodels_kernels::{Activation, activate};

use super::attention::SelfAttention2d;
use super::guidance::Denoiser;
use crate::pytorch::PytorchNames;

/// Builds a [`UNet`].
#[derive(Config, Debug)]
pub struct UNetConfig {
    /// Channels of the images.
    #[config(default = 1)]
    pub image_channels: usize,
    /// Side of the (square) images; each level after the first halves it.
    #[config(default = 28)]
    pub image_size: usize,
    /// Channels of the first level; level `i` has `base_channels * channel_multipliers[i]`.
    #[config(default = 64)]
    pub base_channels: usize,
    /// One entry per resolution; each level after the first halves the side.
    #[config(default = "vec![1, 2, 2]")]
    pub channel_multipliers: Vec<usize>,
    /// Residual blocks per level, on the way down and again on the way up.
    #[config(default = 2)]
    pub blocks_per_level: usize,
    /// Levels with self-attention after their down blocks and after their up blocks.
    #[config(default = "vec![2]")]
    pub attention_levels: Vec<usize>,
    /// Self-attention between the two middle residual blocks.
    #[config(default = true)]
    pub middle_attention: bool,
    /// Size of the sinusoidal time embedding; the MLP after it is 4 times wider.
    #[config(default = 64)]
    pub time_embedding_dim: usize,
    /// Groups of every GroupNorm.
    #[config(default = 8)]
    pub groups: usize,
    /// Classes of a class-conditional network; `None` (or 0) for an unconditional one. An
    /// option, so that the configs of unconditional runs written without it still open.
    pub num_classes: Option<usize>,
}

impl UNetConfig {
    /// The architecture above: base 64, about 5.2M parameters.
    pub fn full() -> Self {
        Self::new()
    }

    /// The same architecture at half the width (base 32, about 1.3M parameters), for CPU runs.
    pub fn small() -> Self {
        Self::new()
            .with_base_channels(32)
            .with_time_embedding_dim(32)
    }

    /// Initialises the network with burn's default (PyTorch-like) initialisation; the class
    /// embedding is N(0, 1), as PyTorch's `nn.Embedding`.
    ///
    /// # Panics
    ///
    /// When a level's channel count is not a multiple of `groups`, or an attention level does
    /// not exist.
    pub fn init(&self, device: &Device) -> UNet {
        let levels = self.channel_multipliers.len();
        assert!(levels > 0, "a U-Net needs at least one level");
        assert!(
            self.attention_levels.iter().all(|&level| level < levels),
            "attention levels {:?} must be below {levels}",
            self.attention_levels
        );
        assert!(
            self.time_embedding_dim >= 4 && self.time_embedding_dim.is_multiple_of(2),
            "time embedding dim must be even, >= 4"
        );
        let channels: Vec<usize> = self
            .channel_multipliers
            .iter()
            .map(|m| m * self.base_channels)
            .collect();
        for &c in &channels {
            assert!(
                c % self.groups == 0,
                "{c} channels do not split into {} groups",
                self.groups
            );
        }
        let time_dim = 4 * self.time_embedding_dim;
        let block = |c_in: usize, c_out: usize| {
            ResidualBlock::new(c_in, c_out, time_dim, self.groups, device)
        };
        let attention = |level: usize, c: usize| {
            self.attention_levels
                .contains(&level)
                .then(|| SelfAttention2d::new(c, self.groups, device))
        };

        let mut skips = Vec::new(); // channels of every down block's output, in order
        let mut c_prev = self.base_channels;
        let mut down = Vec::new();
        for (level, &c) in channels.iter().enumerate() {
            let mut blocks = Vec::new();
            for _ in 0..self.blocks_per_level {
                blocks.push(block(c_prev, c));
                c_prev = c;
                skips.push(c);
            }
            let downsample = (level + 1 < levels).then(|| conv3x3(c, c, 2, device));
            down.push(DownLevel {
                blocks,
                attention: attention(level, c),
                downsample,
            });
        }

        let middle = Middle {
            first: block(c_prev, c_prev),
            attention: self
                .middle_attention
                .then(|| SelfAttention2d::new(c_prev, self.groups, device)),
            second: block(c_prev, c_prev),
        };

        let mut up = Vec::new();
        for (level, &c) in channels.iter().enumerate().rev() {
            let mut blocks = Vec::new();
            for _ in 0..self.blocks_per_level {
                let skip = skips.pop().expect("one skip per down block");
                blocks.push(block(c_prev + skip, c));
                c_prev = c;
            }
            let upsample = (level > 0).then(|| Upsample {
                conv: conv3x3(c, c, 1, device),
            });
            up.push(UpLevel {
                blocks,
                attention: attention(level, c),
                upsample,
            });
        }

        let num_classes = self.num_classes.unwrap_or(0);
        UNet {
            time_embedding: TimeEmbedding::new(self.time_embedding_dim, device),
            class_embedding: (num_classes > 0)
                .then(|| EmbeddingConfig::new(num_classes + 1, time_dim).init(device)),
            stem: conv3x3(self.image_channels, self.base_channels, 1, device),
            down,
            middle,
            up,
            out_norm: GroupNormConfig::new(self.groups, self.base_channels).init(device),
            out_conv: conv3x3(self.base_channels, self.image_channels, 1, device),
            image_channels: self.image_channels,
            image_size: self.image_size,
            num_classes,
        }
    }
}

/// eps_theta(x_t, t[, y]): a noised image, its timestep and, in a conditional network, a class
/// -> the predicted noise, same shape.
#[derive(Module, Debug)]
pub struct UNet {
    time_embedding: TimeEmbedding,
    class_embedding: Option<Embedding>,
    stem: Conv2d,
    down: Vec<DownLevel>,
    middle: Middle,
    up: Vec<UpLevel>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    image_channels: usize,
    image_size: usize,
    num_classes: usize,
}

impl UNet {
    /// The shape `[count, C, H, W]` of `count` images this network denoises.
    pub fn image_shape(&self, count: usize) -> [usize; 4] {
        [count, self.image_channels, self.image_size, self.image_size]
    }

    /// `x_t: [B, C, H, W]`, `t: [B]` (timesteps as floats, one per sample) -> `[B, C, H, W]`;
    /// a conditional network predicts for the null label ([`Denoiser::predict`] takes labels).
    pub fn forward(&self, x: Tensor<4>, t: Tensor<1>) -> Tensor<4> {
        self.predict(x, t, None)
    }
}

impl Denoiser<4> for UNet {
    /// Shapes in the comments are those of the `full` preset on 28x28 images.
    ///
    /// # Panics
    ///
    /// When an unconditional network is given labels.
    fn predict(&self, x: Tensor<4>, t: Tensor<1>, labels: Option<Tensor<1, Int>>) -> Tensor<4> {
        let [batch, ..] = x.dims();
        let mut time = self.time_embedding.forward(t); // [B, 256]
        if let Some(classes) = &self.class_embedding {
            let labels = labels
                .unwrap_or_else(|| Tensor::full([batch], self.null_label() as i64, &x.device())); // [B]
            let embedded = classes.forward(labels.unsqueeze_dim(1)); // [B, 1, 256]
            time = time + embedded.squeeze_dim(1); // [B, 256]
        } else {
            assert!(labels.is_none(), "an unconditional U-Net takes no labels");
        }
        let mut h = conv2d(&self.stem, x); // [B, 64, 28, 28]
        let mut skips = Vec::new();
        for level in &self.down {
            for block in &level.blocks {
                h = block.forward(h, time.clone()); // [B, 64|128|128, 28|14|7, ..]
                skips.push(h.clone());
            }
            if let Some(attention) = &level.attention {
                h = attention.forward(h); // [B, 128, 7, 7]
            }
            if let Some(downsample) = &level.downsample {
                h = conv2d(downsample, h); // [B, 64|128, 14|7, ..]
            }
        }
        h = self.middle.forward(h, time.clone()); // [B, 128, 7, 7]
        for level in &self.up {
            for block in &level.blocks {
                let skip = skips.pop().expect("one skip per down block");
                h = block.forward(Tensor::cat(vec![h, skip], 1), time.clone()); // [B, 128|128|64, 7|14|28, ..]
            }
            if let Some(attention) = &level.attention {
                h = attention.forward(h); // [B, 128, 7, 7]
            }
            if let Some(upsample) = &level.upsample {
                h = upsample.forward(h); // [B, 128, 14|28, ..]
            }
        }
        let h = group_norm(&self.out_norm, h, Activation::Silu); // [B, 64, 28, 28]
        conv2d(&self.out_conv, h) // [B, 1, 28, 28]
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }
}

/// The names of `UNet` in `benches/pytorch_reference.py`.
impl PytorchNames for UNet {
    const RENAMES: &'static [(&'static str, &'static str)] = &[
        ("class_embedding", "classes"),
        ("time_embedding.first", "time.0"),
        ("time_embedding.second", "time.2"),
        ("middle.first", "mid1"),
        ("middle.attention", "mid_attn"),
        ("middle.second", "mid2"),
        ("attention", "attn"),
        ("downsample", "down"),
        ("upsample.conv", "up"),
        ("query_key_value", "qkv"),
        ("output", "out"),
    ];
}

/// The sinusoidal embedding of Vaswani et al. as used by Ho et al.: for `i < d/2`,
/// `e[i] = sin(t w_i)` and `e[d/2 + i] = cos(t w_i)` with `w_i = 10000^(-i / (d/2 - 1))`.
/// `t: [B]` -> `[B, d]`.
pub fn sinusoidal_embedding(t: Tensor<1>, dim: usize) -> Tensor<2> {
    let half = dim / 2;
    let frequencies: Vec<f32> = (0..half)
        .map(|i| (-(10_000f64.ln()) * i as f64 / (half - 1) as f64).exp() as f32)
        .collect();
    let frequencies = Tensor::<1>::from_data(TensorData::new(frequencies, [half]), &t.device());
    let angles = t.unsqueeze_dim::<2>(1) * frequencies.unsqueeze::<2>(); // [B, d/2]
    Tensor::cat(vec![angles.clone().sin(), angles.cos()], 1) // [B, d]
}

/// Sinusoidal embedding -> Linear(d -> 4d) -> SiLU -> Linear(4d -> 4d): the time conditioning
/// of every noise predictor of this module.
#[derive(Module, Debug)]
pub(crate) struct TimeEmbedding {
    first: Linear,
    second: Linear,
    dim: usize,
}

impl TimeEmbedding {
    /// A sinusoidal embedding of size `dim` and an MLP of width `4 * dim`.
    pub(crate) fn new(dim: usize, device: &Device) -> Self {
        Self {
            first: LinearConfig::new(dim, 4 * dim).init(device),
            second: LinearConfig::new(4 * dim, 4 * dim).init(device),
            dim,
        }
    }

    /// `t: [B]` -> `[B, 4 * dim]`.
    pub(crate) fn forward(&self, t: Tensor<1>) -> Tensor<2> {
        let e = sinusoidal_embedding(t, self.dim); // [B, 64]
        linear(
            &self.second,
            activate(linear(&self.first, e), Activation::Silu),
        ) // [B, 256]
    }
}

/// GroupNorm -> SiLU -> Conv3x3, plus the projected time embedding per channel,
/// -> GroupNorm -> SiLU -> Conv3x3, added to the input (through a 1x1 conv when the channels
/// change).
#[derive(Module, Debug)]
struct ResidualBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResidualBlock {
    fn new(c_in: usize, c_out: usize, time_dim: usize, groups: usize, device: &Device) -> Self {
        Self {
            norm1: GroupNormConfig::new(groups, c_in).init(device),
            conv1: conv3x3(c_in, c_out, 1, device),
            time: LinearConfig::new(time_dim, c_out).init(device),
            norm2: GroupNormConfig::new(groups, c_out).init(device),
            conv2: conv3x3(c_out, c_out, 1, device),
            skip: (c_in != c_out).then(|| Conv2dConfig::new([c_in, c_out], [1, 1]).init(device)),
        }
    }

    /// `[B, C_in, H, W]`, time `[B, T]` -> `[B, C_out, H, W]`.
    fn forward(&self, x: Tensor<4>, time: Tensor<2>) -> Tensor<4> {
        let h = group_norm(&self.norm1, x.clone(), Activation::Silu); // [B, C_in, H, W]
        let h = conv2d(&self.conv1, h); // [B, C_out, H, W]
        let time = linear(&self.time, activate(time, Activation::Silu)); // [B, C_out]
        let h = h + time.unsqueeze_dims::<4>(&[2, 3]); // [B, C_out, H, W]
        let h = group_norm(&self.norm2, h, Activation::Silu); // [B, C_out, H, W]
        let h = conv2d(&self.conv2, h); // [B, C_out, H, W]
        let skip = match &self.skip {
            Some(conv) => conv2d(conv, x), // [B, C_out, H, W]
            None => x,
        };
        h + skip
    }
}

/// The residual blocks of one resolution on the way down, then attention and a stride-2 conv.
#[derive(Module, Debug)]
struct DownLevel {
    blocks: Vec<ResidualBlock>,
    attention: Option<SelfAttention2d>,
    downsample: Option<Conv2d>,
}

/// Residual block -> self-attention -> residual block at the coarsest resolution.
#[derive(Module, Debug)]
struct Middle {
    first: ResidualBlock,
    attention: Option<SelfAttention2d>,
    second: ResidualBlock,
}

impl Middle {
    fn forward(&self, x: Tensor<4>, time: Tensor<2>) -> Tensor<4> {
        let h = self.first.forward(x, time.clone());
        let h = match &self.attention {
            Some(attention) => attention.forward(h),
            None => h,
        };
        self.second.forward(h, time)
    }
}

/// The residual blocks of one resolution on the way up, then attention and a 2x upsampling.
#[derive(Module, Debug)]
struct UpLevel {
    blocks: Vec<ResidualBlock>,
    attention: Option<SelfAttention2d>,
    upsample: Option<Upsample>,
}

/// Nearest-neighbour 2x upsampling followed by a 3x3 convolution.
#[derive(Module, Debug)]
struct Upsample {
    conv: Conv2d,
}

impl Upsample {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let options =
            InterpolateOptions::new(InterpolateMode::Nearest).with_scale_factor([2.0, 2.0]);
        conv2d(&self.conv, interpolate(x, options)) // [B, C, 2H, 2W]
    }
}

/// A 3x3 convolution with padding 1: the same side at stride 1, half (rounded up) at stride 2.
fn conv3x3(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn output_shape_equals_input_shape_for_distinct_timesteps() {
        let device = Device::flex();
        let unet = UNetConfig::small().init(&device);
        let x = Tensor::<4>::random([3, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<1>::from_floats([0.0, 500.0, 999.0], &device);
        let eps = unet.forward(x, t);
        assert_eq!(eps.dims(), [3, 1, 28, 28]);
        // The timestep reaches the output: the same image at different t gives different eps.
        let same = Tensor::<4>::random([1, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device)
            .repeat_dim(0, 2);
        let eps = unet.forward(same, Tensor::<1>::from_floats([10.0, 900.0], &device));
        let difference = (eps.clone().narrow(0, 0, 1) - eps.narrow(0, 1, 1))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(difference > 1e-4, "eps does not depend on t: {difference}");
    }

    #[test]
    fn the_full_preset_has_the_counted_parameters() {
        let device = Device::flex();
        // Per residual block (c_in -> c_out, time dim 256): 2 GroupNorms, two 3x3 convs, the time
        // projection and, when the channels change, a 1x1 skip conv.
        let res = |c_in: usize, c_out: usize| {
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
        let conv3 = |c_in: usize, c_out: usize| 9 * c_in * c_out + c_out;
        let attention = |c: usize| 2 * c + (3 * c * c + 3 * c) + (c * c + c);
        let time = (64 * 256 + 256) + (256 * 256 + 256);
        let expected = time
            + conv3(1, 64)
            + 2 * res(64, 64) + conv3(64, 64)
            + res(64, 128) + res(128, 128) + conv3(128, 128)
            + 2 * res(128, 128) + attention(128)
            + 2 * res(128, 128) + attention(128) // middle
            + 2 * res(256, 128) + attention(128) + conv3(128, 128)
            + 2 * res(256, 128) + conv3(128, 128)
            + res(192, 64) + res(128, 64)
            + 2 * 64 + conv3(64, 1);
        assert_eq!(expected, 5_198_849);
        assert_eq!(UNetConfig::full().init(&device).num_params(), expected);
        let small = UNetConfig::small().init(&device).num_params();
        assert!((1_200_000..1_400_000).contains(&small), "{small}");
    }

    #[test]
    fn sinusoidal_embedding_by_hand() {
        let device = Device::flex();
        let e = sinusoidal_embedding(Tensor::<1>::from_floats([0.0, 2.0], &device), 6);
        assert_eq!(e.dims(), [2, 6]);
        let e = e.into_data().try_to_vec::<f32>().unwrap();
        // d = 6: w = 1, 10000^(-1/2) = 0.01, 10000^(-1) = 1e-4.
        let w = [1.0f64, 0.01, 1e-4];
        let expected_t2: Vec<f64> = w
            .iter()
            .map(|w| (2.0 * w).sin())
            .chain(w.iter().map(|w| (2.0 * w).cos()))
            .collect();
        assert_eq!(e[..6], [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        for (a, b) in e[6..].iter().zip(expected_t2) {
            assert!((*a as f64 - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
