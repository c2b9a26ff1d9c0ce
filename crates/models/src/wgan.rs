//! The Wasserstein GAN critic (Arjovsky, Chintala & Bottou, 2017) and the gradient penalty of
//! WGAN-GP (Gulrajani et al., 2017), for 28x28 images. The generator is DCGAN's
//! ([`crate::dcgan::Generator`]).
//!
//! The critic `f(x)` is the DCGAN discriminator without the sigmoid and without BatchNorm (a
//! batch-normalised critic makes each score depend on the whole batch, which the penalty's
//! per-sample gradient forbids). With `f` 1-Lipschitz, the Kantorovich-Rubinstein duality gives
//!
//! `W(p_data, p_g) = sup_{||f||_L <= 1} E_{x~p_data}[f(x)] - E_{x~p_g}[f(x)]`,
//!
//! so the critic minimises `E[f(G(z))] - E[f(x)]` and the generator `-E[f(G(z))]`. WGAN keeps `f`
//! Lipschitz by clipping every weight to `[-c, c]`; WGAN-GP adds
//! `lambda E_{x^}[(||grad_x f(x^)||_2 - 1)^2]` at points `x^ = e x + (1 - e) G(z)`, `e ~ U[0, 1]`.
//!
//! WGAN-CT (Wei et al., 2018) adds a consistency term on top of the penalty: with dropout after
//! each hidden layer of the critic, two passes over the same real image x give two perturbed
//! critics x' and x'', and `CT = E_x[max(0, d(f(x'), f(x'')) + 0.1 d(f_(x'), f_(x'')) - M')]`
//! ([`consistency_term`]), `f_` the last hidden layer and `d` the Euclidean distance, penalises
//! the critic's change between them: a second push towards a Lipschitz critic, near the data
//! where the penalty's interpolates rarely fall.
//!
//! burn's autodiff is first-order, so the penalty's `grad_x f` cannot come from a backward pass
//! that is then differentiated again. [`Critic::input_gradient`] writes that backward pass as
//! ordinary tensor operations instead (transposed convolutions with the critic's own weights,
//! matrix products, the LeakyReLU slope masks), so the penalty is a plain function of the weights
//! and one ordinary backward gives its exact parameter gradient.

use burn::module::{ModuleMapper, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::leaky_relu;
use burn::tensor::ops::ConvTransposeOptions;
use genmodels_kernels::conv_transpose2d;
use genmodels_kernels::nn::{conv2d, linear};
use genmodels_kernels::{Activation, activate};

use crate::layers::{conv_output_size, dcgan_downsample, dcgan_linear};

pub use crate::dcgan::GENERATOR;
/// The critic's name in a run folder: its Config's key in `config.json` and its record
/// `critic.bpk`.
pub const CRITIC: &str = "critic";

/// Side of the image; two stride-2 convolutions give 14 then 7.
const IMAGE_SIDE: usize = 28;
/// LeakyReLU slope, as in the DCGAN discriminator.
const LEAKY_SLOPE: f64 = 0.2;
/// Added under the square root of the gradient norm, so that its derivative stays finite when a
/// gradient is exactly zero; negligible against the target norm 1.
const NORM_EPSILON: f64 = 1e-12;

/// Builds a [`Critic`].
#[derive(Config, Debug)]
pub struct CriticConfig {
    /// Channels of the input image.
    #[config(default = 1)]
    pub image_channels: usize,
    /// Channels after the first convolution (14x14); the second has twice as many (7x7).
    #[config(default = 64)]
    pub base_channels: usize,
}

/// The critic `f(x)`: image -> an unbounded real score.
#[derive(Module, Debug)]
pub struct Critic {
    downsample1: Conv2d,
    downsample2: Conv2d,
    score: Linear,
    base_channels: usize,
}

/// No PyTorch counterpart in `benches/pytorch_reference.py`: exported under its own paths.
impl crate::pytorch::PytorchNames for Critic {}

impl CriticConfig {
    /// Initialises the critic with the DCGAN weight initialisation N(0, 0.02).
    pub fn init(&self, device: &Device) -> Critic {
        let double = self.base_channels * 2;
        let down = |channels| dcgan_downsample(channels, true, device);
        let side = IMAGE_SIDE / 4;
        Critic {
            downsample1: down([self.image_channels, self.base_channels]),
            downsample2: down([self.base_channels, double]),
            score: dcgan_linear(double * side * side, 1, true, device),
            base_channels: self.base_channels,
        }
    }
}

/// The LeakyReLU derivative at pre-activations `a`: 1 where `a > 0`, the slope elsewhere.
/// Built from a comparison, so it carries no gradient: exact wherever `a != 0`.
pub(crate) fn leaky_relu_slope<const D: usize>(pre_activation: Tensor<D>, slope: f64) -> Tensor<D> {
    pre_activation
        .greater_elem(0.0)
        .float()
        .mul_scalar(1.0 - slope)
        .add_scalar(slope)
}

/// The input-gradient of a convolution `y = conv(x, W)` (no dilation, one group): for an output
/// gradient `g = dL/dy`, `dL/dx = conv_transpose(g, W)` with the same stride and padding, and an
/// output padding that restores the rows and columns a strided convolution leaves unread.
fn conv2d_input_gradient(conv: &Conv2d, output_grad: Tensor<4>, input_side: usize) -> Tensor<4> {
    let [kernel, _] = conv.kernel_size;
    let [stride, _] = conv.stride;
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, ..) => top,
        _ => 0,
    };
    let output_side =
        conv_output_size(input_side, stride, padding, kernel).expect("the kernel fits the input");
    // The transposed convolution gives (O - 1) S - 2P + K; the missing rows, if any, are padding.
    let leftover = input_side + 2 * padding - kernel - (output_side - 1) * stride;
    let options = ConvTransposeOptions::new(
        [stride, stride],
        [padding, padding],
        [leftover, leftover],
        [1, 1],
        1,
    );
    conv_transpose2d(output_grad, conv.weight.val(), None, options)
}

/// Inverted-dropout masks for the critic's two hidden layers, `[B, 64, 14, 14]` and
/// `[B, 128, 7, 7]`: each entry 0 with the dropout probability p, `1 / (1 - p)` otherwise, so
/// that a masked layer keeps its expected value. Drawn outside the critic so that a pass and its
/// input-gradient can share them.
#[derive(Debug, Clone)]
pub struct DropoutMasks {
    pub first: Tensor<4>,
    pub second: Tensor<4>,
}

impl DropoutMasks {
    /// Fresh masks for a batch of `batch` images through `critic`, dropping with probability
    /// `rate` in `[0, 1)`, from the device's generator.
    pub fn draw(critic: &Critic, batch: usize, rate: f64, device: &Device) -> Self {
        let (half, quarter) = (IMAGE_SIDE / 2, IMAGE_SIDE / 4);
        let channels = critic.base_channels;
        let mask = |shape: [usize; 4]| {
            Tensor::<4>::random(shape, Distribution::Bernoulli(1.0 - rate), device)
                .div_scalar(1.0 - rate)
        };
        Self {
            first: mask([batch, channels, half, half]),
            second: mask([batch, 2 * channels, quarter, quarter]),
        }
    }
}

/// One pass of the critic: the scores and the last hidden layer they are a linear map of.
#[derive(Debug, Clone)]
pub struct CriticPass {
    /// `f(x)`, `[B, 1]`.
    pub scores: Tensor<2>,
    /// The last hidden layer `f_(x)`, flattened: `[B, 128 * 7 * 7]`.
    pub features: Tensor<2>,
}

impl Critic {
    /// Maps images `[B, C, 28, 28]` to scores `f(x)`, `[B, 1]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.pass(images, None).scores
    }

    /// The scores and the last hidden layer of `images`, with dropout `masks` after each hidden
    /// layer if given.
    pub fn pass(&self, images: Tensor<4>, masks: Option<&DropoutMasks>) -> CriticPass {
        let mask = |h: Tensor<4>, mask: Option<&Tensor<4>>| match mask {
            Some(mask) => h * mask.clone(),
            None => h,
        };
        let x = activate(
            conv2d(&self.downsample1, images),
            Activation::LeakyRelu(LEAKY_SLOPE),
        ); // [B, 64, 14, 14]
        let x = mask(x, masks.map(|m| &m.first)); // [B, 64, 14, 14]
        let x = activate(
            conv2d(&self.downsample2, x),
            Activation::LeakyRelu(LEAKY_SLOPE),
        ); // [B, 128, 7, 7]
        let features = mask(x, masks.map(|m| &m.second)).flatten(1, 3); // [B, 6272]
        CriticPass {
            scores: linear(&self.score, features.clone()), // [B, 1]
            features,
        }
    }

    /// `grad_x f(x)` for every image of the batch, `[B, C, 28, 28]`, as an explicit expression of
    /// the critic's weights (the chain rule run backwards through [`Critic::forward`]):
    ///
    /// - score `s = h2 w + b`: `ds/dh2 = w^T`, the same row for every image;
    /// - LeakyReLU `h = max(a, 0.2 a)`: `ds/da = ds/dh * (1 if a > 0 else 0.2)`, the slope taken as a
    ///   constant;
    /// - convolution `a = conv(h, W)`: `ds/dh = conv_transpose(ds/da, W)`.
    ///
    /// Each image's score depends on that image only, so this is also the gradient of
    /// `sum_b f(x_b)` with respect to the batch. The result stays differentiable with respect to
    /// the weights, which the gradient penalty needs.
    pub fn input_gradient(&self, images: Tensor<4>) -> Tensor<4> {
        self.input_gradient_masked(images, None)
    }

    /// [`Critic::input_gradient`] of the critic with dropout `masks`: a mask multiplies the
    /// backward pass where it multiplied the forward one.
    pub fn input_gradient_masked(
        &self,
        images: Tensor<4>,
        masks: Option<&DropoutMasks>,
    ) -> Tensor<4> {
        self.backward_with_slopes(self.slopes(images, masks))
    }

    /// The derivatives of the two hidden layers' outputs by their pre-activations at `images`,
    /// `[B, 64, 14, 14]` and `[B, 128, 7, 7]`: the LeakyReLU slopes, times the dropout masks if
    /// given; constants (no gradient flows through them).
    fn slopes(&self, images: Tensor<4>, masks: Option<&DropoutMasks>) -> [Tensor<4>; 2] {
        let a1 = conv2d(&self.downsample1, images); // [B, 64, 14, 14]
        let mut slope1 = leaky_relu_slope(a1.clone(), LEAKY_SLOPE);
        let mut h1 = leaky_relu(a1, LEAKY_SLOPE);
        if let Some(masks) = masks {
            slope1 = slope1 * masks.first.clone();
            h1 = h1 * masks.first.clone();
        }
        let a2 = conv2d(&self.downsample2, h1); // [B, 128, 7, 7]
        let mut slope2 = leaky_relu_slope(a2, LEAKY_SLOPE);
        if let Some(masks) = masks {
            slope2 = slope2 * masks.second.clone();
        }
        [slope1, slope2]
    }

    /// The backward pass from `ds/ds = 1` to the input, through the given slope masks.
    fn backward_with_slopes(&self, [slope1, slope2]: [Tensor<4>; 2]) -> Tensor<4> {
        let [batch, double, quarter, _] = slope2.dims();
        let half = IMAGE_SIDE / 2;
        let ones = Tensor::<2>::ones([batch, 1], &slope2.device()); // [B, 1]
        let grad = ones.matmul(self.score.weight.val().transpose()); // [B, 128*7*7]
        let grad = grad.reshape([batch, double, quarter, quarter]); // [B, 128, 7, 7]
        let grad = grad * slope2; // [B, 128, 7, 7]
        let grad = conv2d_input_gradient(&self.downsample2, grad, half); // [B, 64, 14, 14]
        let grad = grad * slope1; // [B, 64, 14, 14]
        conv2d_input_gradient(&self.downsample1, grad, IMAGE_SIDE) // [B, 1, 28, 28]
    }

    /// Clips every weight and bias to `[-limit, limit]` (WGAN's Lipschitz constraint), keeping
    /// the parameters' identities so that optimizer states still find them.
    pub fn clip_weights(self, limit: f64) -> Self {
        self.map(&mut WeightClipper { limit })
    }
}

/// Clamps every float parameter of a module to `[-limit, limit]`.
pub struct WeightClipper {
    pub limit: f64,
}

impl ModuleMapper for WeightClipper {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let limit = self.limit;
        param.map(|tensor| {
            let require_grad = tensor.is_require_grad();
            // Clamped outside the autodiff graph, then a fresh leaf again, as an optimizer does.
            let on_autodiff = tensor.is_autodiff();
            let clipped = tensor.inner().clamp(-limit, limit);
            let clipped = if on_autodiff {
                clipped.autodiff()
            } else {
                clipped
            };
            if require_grad {
                clipped.require_grad()
            } else {
                clipped
            }
        })
    }
}

/// The critic's loss `E[f(G(z))] - E[f(x)]`, the negative of the Wasserstein estimate.
/// Both arguments are scores of shape `[B, 1]`; the result has one element.
pub fn critic_loss(real_scores: Tensor<2>, fake_scores: Tensor<2>) -> Tensor<1> {
    fake_scores.mean() - real_scores.mean()
}

/// The WGAN generator's loss `-E[f(G(z))]`, for scores of generated images `[B, 1]`.
pub fn wasserstein_generator_loss(fake_scores: Tensor<2>) -> Tensor<1> {
    fake_scores.mean().neg()
}

/// The points where WGAN-GP evaluates the penalty: `x^ = e x + (1 - e) x~`, one `e` per sample
/// (`mix`, `[B]`, drawn from U[0, 1]), on the segment between a real and a generated sample.
pub fn interpolate<const D: usize>(real: Tensor<D>, fake: Tensor<D>, mix: Tensor<1>) -> Tensor<D> {
    let [batch] = mix.dims();
    let mut shape = [1; D];
    shape[0] = batch;
    let e = mix.reshape(shape); // [B, 1, ...]
    fake.clone() + (real - fake) * e
}

/// The consistency term of WGAN-CT (Wei et al., 2018, Eq. 4 with the second-to-last layer
/// term of their Section 3): for two dropout passes over the same real images,
/// `mean_b max(0, |f(x'_b) - f(x''_b)| + 0.1 ||f_(x'_b) - f_(x''_b)||_2 - margin)`, one element.
pub fn consistency_term(first: &CriticPass, second: &CriticPass, margin: f64) -> Tensor<1> {
    let batch = first.scores.dims()[0];
    let scores = (first.scores.clone() - second.scores.clone())
        .abs()
        .reshape([batch]); // [B]
    let features = (first.features.clone() - second.features.clone())
        .square()
        .sum_dim(1)
        .add_scalar(NORM_EPSILON)
        .sqrt()
        .reshape([batch]); // [B]
    (scores + features.mul_scalar(0.1))
        .sub_scalar(margin)
        .clamp_min(0.0)
        .mean()
}

/// The gradient penalty of WGAN-GP and the gradient norms it is made of.
#[derive(Debug, Clone)]
pub struct GradientPenalty {
    /// `lambda * mean_b (||g_b||_2 - 1)^2`, one element.
    pub penalty: Tensor<1>,
    /// `||g_b||_2` per sample, `[B]`.
    pub norms: Tensor<1>,
}

/// `lambda E[(||g||_2 - 1)^2]` for per-sample gradients `g` of any shape `[B, ...]`, averaged
/// over the batch.
pub fn gradient_penalty<const D: usize>(gradients: Tensor<D>, lambda: f64) -> GradientPenalty {
    let batch = gradients.dims()[0];
    let squared = gradients.square().reshape([batch as i64, -1]).sum_dim(1); // [B, 1]
    let norms = squared.add_scalar(NORM_EPSILON).sqrt().reshape([batch]); // [B]
    let penalty = norms
        .clone()
        .sub_scalar(1.0)
        .square()
        .mean()
        .mul_scalar(lambda); // [1]
    GradientPenalty { penalty, norms }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::downsample_config;
    use crate::test_util::{assert_near, to_vec};
    use burn::tensor::{Distribution, TensorData};

    /// An explicit input-gradient against autodiff's: the largest absolute difference over the
    /// largest magnitude is below 1e-5. Both are f32 sums of the same products (burn's conv
    /// backward is a transposed convolution too); 1e-5 relative leaves room for a backend that
    /// orders them otherwise.
    fn assert_matches_autodiff(explicit: Tensor<4>, autodiff: Tensor<4>, case: &str) {
        let (got, expected) = (to_vec(explicit), to_vec(autodiff));
        let scale = expected.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
        let diff = got
            .iter()
            .zip(&expected)
            .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
        let error = diff / scale.max(1e-30);
        assert!(error < 1e-5, "{case}: relative error {error}");
    }

    /// A critic with weights of a larger scale than DCGAN's, so that the input gradient has a
    /// norm near 1 and every term of the penalty matters.
    fn scaled_critic(base_channels: usize, std: f64, device: &Device) -> Critic {
        let mut critic = CriticConfig::new()
            .with_base_channels(base_channels)
            .init(device);
        let rescale = |p: Param<Tensor<4>>| {
            p.map(|w| {
                Tensor::random(w.dims(), Distribution::Normal(0.0, std), &w.device()).require_grad()
            })
        };
        critic.downsample1.weight = rescale(critic.downsample1.weight);
        critic.downsample2.weight = rescale(critic.downsample2.weight);
        critic.score.weight = critic.score.weight.map(|w| {
            Tensor::random(w.dims(), Distribution::Normal(0.0, std), &w.device()).require_grad()
        });
        critic
    }

    #[test]
    fn shapes() {
        let device = Device::flex();
        let critic = CriticConfig::new().init(&device);
        let images = Tensor::<4>::random([3, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(critic.forward(images.clone()).dims(), [3, 1]);
        assert_eq!(critic.input_gradient(images).dims(), [3, 1, 28, 28]);
    }

    #[test]
    fn explicit_input_gradient_equals_autodiff() {
        let device = Device::flex().autodiff();
        device.seed(3);
        for (base, std) in [(64, 0.02), (4, 0.3)] {
            let critic = scaled_critic(base, std, &device);
            let x = Tensor::<4>::random([4, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
            let grads = critic.forward(x.clone()).sum().backward();
            let autodiff = x.grad(&grads).unwrap();
            let explicit = critic.input_gradient(x.detach());
            assert_matches_autodiff(explicit, autodiff, &format!("base {base}"));
        }
    }

    #[test]
    fn the_masked_input_gradient_equals_autodiff_through_the_same_dropout() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let critic = scaled_critic(4, 0.3, &device);
        let x = Tensor::<4>::random([3, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let masks = DropoutMasks::draw(&critic, 3, 0.5, &device);
        let grads = critic.pass(x.clone(), Some(&masks)).scores.sum().backward();
        let explicit = critic.input_gradient_masked(x.clone().detach(), Some(&masks));
        assert_matches_autodiff(explicit.clone(), x.grad(&grads).unwrap(), "masked");
        // The masks matter: without them the gradient differs.
        let plain = critic.input_gradient(x.detach());
        assert!(!explicit.all_close(plain, Some(1e-3), Some(1e-3)));
        // Each mask entry is 0 or 1 / (1 - p) = 2, about half of them 0.
        let values = to_vec(masks.second.clone());
        assert!(values.iter().all(|&v| v == 0.0 || v == 2.0));
        let dropped = values.iter().filter(|&&v| v == 0.0).count() as f64 / values.len() as f64;
        assert!((dropped - 0.5).abs() < 0.03, "{dropped}");
    }

    #[test]
    fn the_consistency_term_by_hand() {
        let device = Device::flex();
        let pass = |scores: [f32; 2], features: [[f32; 2]; 2]| CriticPass {
            scores: Tensor::<2>::from_floats([[scores[0]], [scores[1]]], &device),
            features: Tensor::<2>::from_floats(features, &device),
        };
        // Sample 1: |1 - 0.5| + 0.1 * ||(3, 4)|| = 0.5 + 0.5 = 1.0. Sample 2: |-1 - 1| + 0 = 2.
        let first = pass([1.0, -1.0], [[3.0, 4.0], [1.0, 1.0]]);
        let second = pass([0.5, 1.0], [[0.0, 0.0], [1.0, 1.0]]);
        let ct = consistency_term(&first, &second, 0.0).into_scalar::<f32>();
        assert!((ct - 1.5).abs() < 1e-5, "{ct}");
        // A margin of 1.2 leaves only sample 2's 0.8: mean 0.4.
        let ct = consistency_term(&first, &second, 1.2).into_scalar::<f32>();
        assert!((ct - 0.4).abs() < 1e-5, "{ct}");
        // The same pass twice is perfectly consistent.
        assert!(consistency_term(&first, &first, 0.0).into_scalar::<f32>() < 1e-5);
    }

    #[test]
    fn input_gradient_of_a_strided_convolution_with_leftover_rows() {
        // k4 s2 p1 on 9 rows gives floor((9 + 2 - 4) / 2) + 1 = 4 rows, reading padded rows 0..10
        // of 11: the last row is left over and needs an output padding of 1. The explicit
        // gradient must still match autodiff.
        let device = Device::flex().autodiff();
        device.seed(5);
        let conv = downsample_config([2, 3]).init(&device);
        let x = Tensor::<4>::random([2, 2, 9, 9], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let y = conv.forward(x.clone());
        let g = Tensor::<4>::random(y.dims(), Distribution::Normal(0.0, 1.0), &device);
        let grads = (y * g.clone()).sum().backward();
        let explicit = conv2d_input_gradient(&conv, g, 9);
        assert_matches_autodiff(explicit, x.grad(&grads).unwrap(), "9 rows");
    }

    #[test]
    fn penalty_gradient_matches_central_finite_differences() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let critic = scaled_critic(2, 0.3, &device);
        let x = Tensor::<4>::random([3, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
        let lambda = 10.0;

        let penalty = gradient_penalty(critic.input_gradient(x.clone()), lambda).penalty;
        let grads = penalty.backward();
        let analytic = |w: &Param<Tensor<4>>| to_vec(w.grad(&grads).unwrap());
        let d_conv1 = analytic(&critic.downsample1.weight);
        let d_conv2 = analytic(&critic.downsample2.weight);
        let d_score = to_vec(critic.score.weight.grad(&grads).unwrap());
        // The penalty does not depend on a bias (the masks aside, grad_x f ignores it): autodiff
        // records no gradient for it at all, which is a zero gradient.
        let bias2 = critic.downsample2.bias.as_ref().unwrap();
        let d_bias2 = bias2
            .grad(&grads)
            .map(to_vec)
            .unwrap_or_else(|| vec![0.0; bias2.dims()[0]]);

        // The penalty and the slope masks at weights perturbed in one entry, in f64 on the host.
        // The penalty in f64 on the host from the f32 input-gradients, with the slope masks of
        // the unperturbed critic held fixed: that is the function autodiff differentiates (the
        // masks are constants), and it is smooth, where the penalty itself jumps wherever a
        // perturbation flips an activation's sign.
        let plain = x.clone().inner();
        let slopes = critic.valid().slopes(plain, None);
        let eval = |critic: &Critic| -> f64 {
            let g = to_vec(critic.valid().backward_with_slopes(slopes.clone()));
            let per = g.len() / 3;
            g.chunks(per)
                .map(|c| {
                    let n = c.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
                    (n - 1.0).powi(2)
                })
                .sum::<f64>()
                / 3.0
                * lambda
        };
        let eps = 5e-3f32;
        let perturbed = |which: usize, index: usize, delta: f32| -> Critic {
            let mut c = critic.clone();
            let bump4 = |p: Param<Tensor<4>>| {
                p.map(|w| {
                    let dims = w.dims();
                    let mut v = to_vec(w.clone());
                    v[index] += delta;
                    Tensor::from_data(TensorData::new(v, dims), &w.device())
                })
            };
            match which {
                0 => c.downsample1.weight = bump4(c.downsample1.weight),
                1 => c.downsample2.weight = bump4(c.downsample2.weight),
                2 => {
                    c.score.weight = c.score.weight.map(|w| {
                        let dims = w.dims();
                        let mut v = to_vec(w.clone());
                        v[index] += delta;
                        Tensor::from_data(TensorData::new(v, dims), &w.device())
                    })
                }
                _ => {
                    let bias = c.downsample2.bias.take().unwrap();
                    c.downsample2.bias = Some(bias.map(|b| {
                        let mut v = to_vec(b.clone());
                        v[index] += delta;
                        let n = v.len();
                        Tensor::from_data(TensorData::new(v, [n]), &b.device())
                    }));
                }
            }
            c
        };
        // A few entries of each tensor, spread over it.
        let analytic = [&d_conv1, &d_conv2, &d_score, &d_bias2];
        for (which, values) in analytic.iter().enumerate() {
            for index in (0..values.len()).step_by(values.len().div_ceil(3)) {
                let plus = eval(&perturbed(which, index, eps));
                let minus = eval(&perturbed(which, index, -eps));
                let numeric = (plus - minus) / (2.0 * eps as f64);
                let analytic = values[index] as f64;
                // f32 input-gradients: ~1e-6 of noise in the penalty, / 1e-2 in the quotient;
                // the two agree to about 1e-5 relative here.
                let case = format!("tensor {which}, entry {index}: finite difference vs autodiff");
                assert_near(numeric, analytic, 2e-4, &case);
            }
        }
        assert!(d_bias2.iter().all(|&v| v.abs() < 1e-6), "{d_bias2:?}");
    }

    #[test]
    fn clipping_keeps_every_weight_in_range_and_the_parameter_ids() {
        let device = Device::flex().autodiff();
        let critic = scaled_critic(4, 1.0, &device);
        let id = critic.downsample1.weight.id;
        let clipped = critic.clip_weights(0.01);
        assert_eq!(clipped.downsample1.weight.id, id);
        assert!(clipped.downsample1.weight.val().is_require_grad());
        let mut all = to_vec(clipped.downsample1.weight.val());
        all.extend(to_vec(clipped.downsample1.bias.as_ref().unwrap().val()));
        all.extend(to_vec(clipped.downsample2.weight.val()));
        all.extend(to_vec(clipped.downsample2.bias.as_ref().unwrap().val()));
        all.extend(to_vec(clipped.score.weight.val()));
        all.extend(to_vec(clipped.score.bias.as_ref().unwrap().val()));
        assert!(all.iter().all(|&w| (-0.01..=0.01).contains(&w)));
        // Weights of std 1 mostly sit outside the range: most end up on its edges.
        let on_edge = all.iter().filter(|&&w| w.abs() == 0.01).count();
        assert!(on_edge * 10 > all.len() * 9, "{on_edge} of {}", all.len());
    }

    #[test]
    fn losses_interpolation_and_penalty_by_hand() {
        let device = Device::flex();
        let col =
            |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [v.len(), 1]), &device);
        let real = col(&[1.0, 2.0, 3.0]);
        let fake = col(&[-1.0, 0.5]);
        // E[f(G(z))] - E[f(x)] = -0.25 - 2
        let loss = critic_loss(real, fake.clone()).into_scalar::<f32>();
        assert!((loss + 2.25).abs() < 1e-6, "{loss}");
        let g = wasserstein_generator_loss(fake).into_scalar::<f32>();
        assert!((g - 0.25).abs() < 1e-6, "{g}");

        let real = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 1.0, 4.0, 4.0], [2, 2]),
            &device,
        );
        let fake = Tensor::<2>::zeros([2, 2], &device);
        let mix = Tensor::<1>::from_data(TensorData::new(vec![0.25f32, 1.0], [2]), &device);
        let x_hat = to_vec(interpolate(real, fake, mix));
        assert_eq!(x_hat, vec![0.25, 0.25, 4.0, 4.0]);

        // Gradients (3, 4) and (0, 0.5): norms 5 and 0.5; lambda/2 * ((5-1)^2 + (0.5-1)^2).
        let grads = Tensor::<2>::from_data(
            TensorData::new(vec![3.0f32, 4.0, 0.0, 0.5], [2, 2]),
            &device,
        );
        let gp = gradient_penalty(grads, 10.0);
        let norms = to_vec(gp.norms);
        assert!((norms[0] - 5.0).abs() < 1e-6 && (norms[1] - 0.5).abs() < 1e-6);
        let penalty = gp.penalty.into_scalar::<f32>();
        assert!((penalty - 81.25).abs() < 1e-4, "{penalty}");
    }
}
