//! Layer arithmetic and initialisation shared by the networks.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Distribution, Tensor};

/// Spatial output size of a transposed convolution along one axis:
///
/// `O = (I - 1) * S - 2P + K + output_padding` (dilation 1),
///
/// the inverse of a convolution's `O = floor((I + 2P - K) / S) + 1`. Returns `None` when the
/// arguments give no positive size (too much padding for the kernel), instead of wrapping.
pub fn conv_transpose_output_size(
    input: usize,
    stride: usize,
    padding: usize,
    kernel: usize,
    output_padding: usize,
) -> Option<usize> {
    let grown = (input.checked_sub(1)? * stride) + kernel + output_padding;
    grown.checked_sub(2 * padding).filter(|&size| size > 0)
}

/// Spatial output size of a convolution along one axis: `O = floor((I + 2P - K) / S) + 1`.
/// Returns `None` when the kernel does not fit in the padded input.
pub fn conv_output_size(
    input: usize,
    stride: usize,
    padding: usize,
    kernel: usize,
) -> Option<usize> {
    (input + 2 * padding)
        .checked_sub(kernel)
        .map(|span| span / stride + 1)
}

/// The DCGAN paper's weight initialisation for convolutions and linear layers: N(0, 0.02).
pub fn dcgan_weight_init() -> Initializer {
    Initializer::Normal {
        mean: 0.0,
        std: 0.02,
    }
}

/// A linear layer `[inputs] -> [outputs]` with weights N(0, 0.02).
pub fn dcgan_linear(inputs: usize, outputs: usize, bias: bool, device: &Device) -> Linear {
    LinearConfig::new(inputs, outputs)
        .with_bias(bias)
        .with_initializer(dcgan_weight_init())
        .init(device)
}

/// A BatchNorm layer initialised as in DCGAN: gamma ~ N(1, 0.02), beta = 0.
pub fn dcgan_batch_norm(num_features: usize, device: &Device) -> BatchNorm {
    let mut norm = BatchNormConfig::new(num_features).init(device);
    let gamma = Tensor::<1>::random([num_features], Distribution::Normal(1.0, 0.02), device);
    norm.gamma = Param::from_tensor(gamma);
    norm
}

/// The downsampling step of the DCGAN discriminator and of the encoders: a 4x4 convolution,
/// stride 2, padding 1 (halves the side: 28 -> 14 -> 7).
pub fn downsample_config(channels: [usize; 2]) -> Conv2dConfig {
    Conv2dConfig::new(channels, [4, 4])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
}

/// The upsampling step of the DCGAN generator and of the decoders: a 4x4 transposed
/// convolution, stride 2, padding 1 (doubles the side: 7 -> 14 -> 28).
pub fn upsample_config(channels: [usize; 2]) -> ConvTranspose2dConfig {
    ConvTranspose2dConfig::new(channels, [4, 4])
        .with_stride([2, 2])
        .with_padding([1, 1])
}

/// [`downsample_config`] with weights N(0, 0.02).
pub fn dcgan_downsample(channels: [usize; 2], bias: bool, device: &Device) -> Conv2d {
    downsample_config(channels)
        .with_bias(bias)
        .with_initializer(dcgan_weight_init())
        .init(device)
}

/// [`upsample_config`] with weights N(0, 0.02).
pub fn dcgan_upsample(channels: [usize; 2], bias: bool, device: &Device) -> ConvTranspose2d {
    upsample_config(channels)
        .with_bias(bias)
        .with_initializer(dcgan_weight_init())
        .init(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_convolution_size_matches_the_formula() {
        // (7 - 1) * 3 - 2 * 2 + 5 + 0 = 19
        assert_eq!(conv_transpose_output_size(7, 3, 2, 5, 0), Some(19));
        // The DCGAN generator's two upsampling layers: 7 -> 14 -> 28.
        assert_eq!(conv_transpose_output_size(7, 2, 1, 4, 0), Some(14));
        assert_eq!(conv_transpose_output_size(14, 2, 1, 4, 0), Some(28));
        assert_eq!(conv_transpose_output_size(7, 2, 1, 4, 1), Some(15));
        // Padding larger than the grown size gives no output rather than an underflow.
        assert_eq!(conv_transpose_output_size(1, 1, 3, 2, 0), None);
        assert_eq!(conv_transpose_output_size(0, 2, 0, 4, 0), None);
    }

    #[test]
    fn convolution_size_inverts_the_transposed_one() {
        // The DCGAN discriminator: 28 -> 14 -> 7.
        assert_eq!(conv_output_size(28, 2, 1, 4), Some(14));
        assert_eq!(conv_output_size(14, 2, 1, 4), Some(7));
        assert_eq!(conv_output_size(2, 1, 0, 5), None);
        for input in 1..20 {
            let up = conv_transpose_output_size(input, 2, 1, 4, 0).unwrap();
            assert_eq!(conv_output_size(up, 2, 1, 4), Some(input));
        }
    }
}
