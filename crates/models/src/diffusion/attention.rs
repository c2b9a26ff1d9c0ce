//! Scaled dot-product attention (Vaswani et al., 2017) and the single-head self-attention block
//! the U-Net applies over the positions of a feature map.

use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use genmodels_kernels::Activation;
use genmodels_kernels::nn::{group_norm, linear};

/// `softmax(scale Q K^T + M) V` over the last two axes: `[..., N_q, d]`, `[..., N_k, d]`,
/// `[..., N_k, d_v]` -> `[..., N_q, d_v]`.
///
/// With `causal`, `M` is -inf above the diagonal, so position `i` attends to positions `j <= i`
/// only. The usual scale is `1 / sqrt(d)`.
pub fn scaled_dot_product_attention<const D: usize>(
    query: Tensor<D>,
    key: Tensor<D>,
    value: Tensor<D>,
    scale: f64,
    causal: bool,
) -> Tensor<D> {
    let scores = query.matmul(key.swap_dims(D - 2, D - 1)).mul_scalar(scale); // [..., N_q, N_k]
    let scores = if causal {
        let dims = scores.dims();
        let (queries, keys) = (dims[D - 2], dims[D - 1]);
        let future = Tensor::<2, Bool>::tril_mask([queries, keys], 0, &scores.device()); // j > i
        scores.mask_fill(future.unsqueeze::<D>().expand(dims), f32::NEG_INFINITY)
    } else {
        scores
    };
    softmax(scores, D - 1).matmul(value) // [..., N_q, d_v]
}

/// Single-head self-attention over the H x W positions of a feature map, with a GroupNorm
/// before and a residual connection around it: `x + W_o attention(GN(x) W_q, GN(x) W_k, GN(x) W_v)`.
#[derive(Module, Debug)]
pub struct SelfAttention2d {
    norm: GroupNorm,
    query_key_value: Linear,
    output: Linear,
}

impl SelfAttention2d {
    pub fn new(channels: usize, groups: usize, device: &Device) -> Self {
        Self {
            norm: GroupNormConfig::new(groups, channels).init(device),
            query_key_value: LinearConfig::new(channels, 3 * channels).init(device),
            output: LinearConfig::new(channels, channels).init(device),
        }
    }

    /// `[B, C, H, W]` -> `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = x.dims();
        let h = group_norm(&self.norm, x.clone(), Activation::Identity); // [B, C, H, W]
        let h = h.reshape([batch, channels, height * width]).swap_dims(1, 2); // [B, HW, C]
        let qkv = linear(&self.query_key_value, h).chunk(3, 2); // 3 x [B, HW, C]
        let [q, k, v] = <[Tensor<3>; 3]>::try_from(qkv).expect("three chunks");
        let scale = 1.0 / (channels as f64).sqrt();
        let h = scaled_dot_product_attention(q, k, v, scale, false); // [B, HW, C]
        let h = linear(&self.output, h); // [B, HW, C]
        let h = h.swap_dims(1, 2).reshape([batch, channels, height, width]); // [B, C, H, W]
        x + h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;

    /// The worked example: X W_q, X W_k, X W_v with W_v = I, scale 1, causal.
    #[test]
    fn causal_attention_matches_the_worked_example() {
        let device = Device::flex();
        let x = Tensor::<2>::from_floats([[0.2, 0.8], [0.5, 0.5], [1.0, 0.5]], &device);
        let w_q = Tensor::<2>::from_floats([[0.5, 0.5], [0.0, 1.0]], &device);
        let w_k = Tensor::<2>::from_floats([[1.0, 0.0], [-0.5, 0.5]], &device);
        let (q, k, v) = (x.clone().matmul(w_q), x.clone().matmul(w_k), x);
        let out = scaled_dot_product_attention(q, k, v, 1.0, true)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let expected = [0.2, 0.8, 0.35, 0.65, 0.61324, 0.58666];
        for (index, (a, e)) in out.iter().zip(expected).enumerate() {
            assert!((a - e).abs() < 1e-4, "element {index}: {a} vs {e}");
        }
    }

    /// Without a mask every row of weights sums to one, so constant values come back unchanged;
    /// and both variants agree with burn's own fused attention kernel (tolerance 1e-5).
    #[test]
    fn agrees_with_burns_attention_kernel() {
        let device = Device::flex();
        device.seed(5);
        let normal =
            |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (
            normal([2, 3, 5, 4]),
            normal([2, 3, 5, 4]),
            normal([2, 3, 5, 6]),
        );
        for causal in [false, true] {
            let ours = scaled_dot_product_attention(q.clone(), k.clone(), v.clone(), 0.5, causal);
            let options = AttentionModuleOptions {
                scale: Some(0.5),
                softcap: None,
                is_causal: causal,
            };
            let theirs = attention(q.clone(), k.clone(), v.clone(), None, None, options);
            assert!(
                ours.all_close(theirs, Some(1e-5), Some(1e-5)),
                "causal = {causal}"
            );
        }
        let constant = Tensor::<4>::full([2, 3, 5, 6], 0.75, &device);
        let out = scaled_dot_product_attention(q, k, constant.clone(), 0.5, false);
        assert!(out.all_close(constant, Some(0.0), Some(1e-6)));
    }

    #[test]
    fn the_block_keeps_the_shape_and_is_residual() {
        let device = Device::flex();
        let block = SelfAttention2d::new(16, 8, &device);
        let x = Tensor::<4>::random([2, 16, 7, 7], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(block.forward(x.clone()).dims(), [2, 16, 7, 7]);
        // GroupNorm(8) 2 * 16 + qkv 16 * 48 + 48 + output 16 * 16 + 16.
        assert_eq!(block.num_params(), 32 + 816 + 272);
        // With the output projection zeroed, the block is the identity.
        let mut zeroed = block.clone();
        zeroed.output.weight = zeroed.output.weight.map(|w| w.zeros_like());
        zeroed.output.bias = zeroed.output.bias.map(|b| b.map(|b| b.zeros_like()));
        assert!(zeroed.forward(x.clone()).all_close(x, Some(0.0), Some(0.0)));
    }
}
