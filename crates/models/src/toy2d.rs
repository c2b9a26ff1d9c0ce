//! A laboratory for GAN theory on data whose density is known: one- and two-dimensional
//! Gaussian mixtures, small MLP players, the optimal discriminator and the mode-coverage metrics.
//!
//! - [`Mlp`]: `Linear -> LeakyReLU -> ... -> Linear`, used as generator (noise -> point), as
//!   discriminator (point -> logit) and as Wasserstein critic (point -> score), with the explicit
//!   input-gradient the WGAN-GP penalty needs ([`Mlp::input_gradient`]).
//! - [`EightGaussians`]: the mixture of 8 Gaussians on a circle of Gulrajani et al. (2017) and
//!   earlier mode-collapse studies; [`TwoGaussians`] and [`Gaussian`] on the line.
//! - [`optimal_discriminator`]: for a fixed generator density `p_g`, the discriminator that
//!   maximises the GAN value function is `D*(x) = p_data(x) / (p_data(x) + p_g(x))`
//!   (Goodfellow et al., 2014, Proposition 1).
//! - [`mode_coverage`]: how many mixture components a sample set reaches and how many of its
//!   points are "high quality" (near some component's centre).

use std::f64::consts::PI;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::leaky_relu;

use crate::wgan::leaky_relu_slope;

/// Builds an [`Mlp`].
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Size of the input (noise for a generator, the data dimension for a discriminator).
    pub input_dim: usize,
    /// Size of the output (the data dimension for a generator, 1 for a discriminator).
    pub output_dim: usize,
    /// Units of every hidden layer.
    #[config(default = 256)]
    pub hidden_dim: usize,
    /// Number of hidden layers.
    #[config(default = 3)]
    pub hidden_layers: usize,
    /// Slope of the LeakyReLU for negative inputs (0 gives a ReLU).
    #[config(default = 0.2)]
    pub negative_slope: f64,
}

/// A multilayer perceptron with LeakyReLU hidden layers and a linear output.
#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    negative_slope: f64,
}

impl MlpConfig {
    /// Initialises every layer with burn's default (uniform, fan-in scaled) initialisation.
    pub fn init(&self, device: &Device) -> Mlp {
        let mut sizes = vec![self.input_dim];
        sizes.extend(std::iter::repeat_n(self.hidden_dim, self.hidden_layers));
        sizes.push(self.output_dim);
        let layers = sizes
            .windows(2)
            .map(|pair| LinearConfig::new(pair[0], pair[1]).init(device))
            .collect();
        Mlp {
            layers,
            negative_slope: self.negative_slope,
        }
    }
}

impl Mlp {
    /// Maps inputs `[B, input_dim]` to outputs `[B, output_dim]`.
    pub fn forward(&self, input: Tensor<2>) -> Tensor<2> {
        let (last, hidden) = self.layers.split_last().expect("at least one layer");
        let mut x = input; // [B, input_dim]
        for layer in hidden {
            x = leaky_relu(layer.forward(x), self.negative_slope); // [B, hidden_dim]
        }
        last.forward(x) // [B, output_dim]
    }

    /// For a network with one output, `grad_x f(x)` per row, `[B, input_dim]`, as an explicit
    /// expression of the weights (see [`crate::wgan::Critic::input_gradient`]): starting from the
    /// output layer's `w^T`, each hidden layer `h = LeakyReLU(x W + b)` multiplies the gradient by
    /// the slope mask and then by `W^T`.
    pub fn input_gradient(&self, input: Tensor<2>) -> Tensor<2> {
        let [batch, _] = input.dims();
        let (last, hidden) = self.layers.split_last().expect("at least one layer");
        let mut pre_activations = Vec::with_capacity(hidden.len());
        let mut x = input; // [B, input_dim]
        for layer in hidden {
            let a = layer.forward(x); // [B, hidden_dim]
            pre_activations.push(a.clone());
            x = leaky_relu(a, self.negative_slope); // [B, hidden_dim]
        }
        let ones = Tensor::<2>::ones([batch, 1], &x.device()); // [B, 1]
        let mut grad = ones.matmul(last.weight.val().transpose()); // [B, hidden_dim]
        for (layer, a) in hidden.iter().zip(pre_activations).rev() {
            let masked = grad * leaky_relu_slope(a, self.negative_slope); // [B, hidden_dim]
            grad = masked.matmul(layer.weight.val().transpose()); // [B, d_in of the layer]
        }
        grad // [B, input_dim]
    }
}

/// The density of N(mean, std^2) at `x`.
pub fn normal_density(x: f64, mean: f64, std: f64) -> f64 {
    let u = (x - mean) / std;
    (-0.5 * u * u).exp() / (std * (2.0 * PI).sqrt())
}

/// The optimal discriminator for a fixed generator, `D*(x) = p_data / (p_data + p_g)`, from the
/// two densities at one point; 1/2 where both vanish (D is then arbitrary).
pub fn optimal_discriminator(p_data: f64, p_model: f64) -> f64 {
    let total = p_data + p_model;
    if total > 0.0 { p_data / total } else { 0.5 }
}

/// One Gaussian N(mean, std^2) on the line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gaussian {
    pub mean: f64,
    pub std: f64,
}

impl Gaussian {
    pub fn density(&self, x: f64) -> f64 {
        normal_density(x, self.mean, self.std)
    }

    /// `count` draws, `[count, 1]`.
    pub fn sample(&self, count: usize, device: &Device) -> Tensor<2> {
        Tensor::random(
            [count, 1],
            Distribution::Normal(self.mean, self.std),
            device,
        )
    }
}

/// An equal mixture of two Gaussians with one standard deviation on the line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TwoGaussians {
    pub means: [f64; 2],
    pub std: f64,
}

impl Default for TwoGaussians {
    /// Modes at -2 and 2, std 0.5: well separated (8 standard deviations apart).
    fn default() -> Self {
        Self {
            means: [-2.0, 2.0],
            std: 0.5,
        }
    }
}

impl TwoGaussians {
    /// `p(x) = N(x; m1, s^2) / 2 + N(x; m2, s^2) / 2`.
    pub fn density(&self, x: f64) -> f64 {
        0.5 * normal_density(x, self.means[0], self.std)
            + 0.5 * normal_density(x, self.means[1], self.std)
    }

    /// `count` draws, `[count, 1]`: each picks a component with probability 1/2.
    pub fn sample(&self, count: usize, device: &Device) -> Tensor<2> {
        let first = Tensor::<2>::random([count, 1], Distribution::Uniform(0.0, 1.0), device)
            .lower_elem(0.5)
            .float(); // [count, 1], 1 for the first component
        let centre = first
            .mul_scalar(self.means[0] - self.means[1])
            .add_scalar(self.means[1]);
        centre + Tensor::random([count, 1], Distribution::Normal(0.0, self.std), device)
    }
}

/// Eight Gaussians of standard deviation `std` centred evenly on a circle of radius `radius`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EightGaussians {
    pub radius: f64,
    pub std: f64,
}

impl Default for EightGaussians {
    /// Radius 2, std 0.02.
    fn default() -> Self {
        Self {
            radius: 2.0,
            std: 0.02,
        }
    }
}

/// Number of components of [`EightGaussians`].
pub const MODES: usize = 8;

impl EightGaussians {
    /// The centres `radius (cos 2 pi k / 8, sin 2 pi k / 8)`, k = 0..8.
    pub fn centres(&self) -> [[f64; 2]; MODES] {
        std::array::from_fn(|k| {
            let angle = 2.0 * PI * k as f64 / MODES as f64;
            [self.radius * angle.cos(), self.radius * angle.sin()]
        })
    }

    /// `count` draws, `[count, 2]`: a uniformly chosen centre plus N(0, std^2 I).
    pub fn sample(&self, count: usize, device: &Device) -> Tensor<2> {
        let k = Tensor::<2>::random([count, 1], Distribution::Uniform(0.0, MODES as f64), device)
            .floor()
            .clamp_max((MODES - 1) as f64); // [count, 1]
        let angle = k.mul_scalar(2.0 * PI / MODES as f64); // [count, 1]
        let centre = Tensor::cat(vec![angle.clone().cos(), angle.sin()], 1); // [count, 2]
        centre.mul_scalar(self.radius)
            + Tensor::random([count, 2], Distribution::Normal(0.0, self.std), device)
    }
}

/// How a sample set covers the components of a mixture.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModeCoverage {
    /// Points within `3 std` of each centre.
    pub counts: Vec<usize>,
    /// Components holding at least 1% of the points within `3 std` of their centre.
    pub modes_covered: usize,
    /// Share of points within `3 std` of any centre.
    pub high_quality: f64,
}

/// Counts, for 2-D points (`[x0, y0, x1, y1, ...]`), which lie within `3 std` of a centre, how
/// many centres hold at least 1% of the points that way ("modes covered") and the share of
/// points near any centre ("high-quality samples").
pub fn mode_coverage(points: &[f32], centres: &[[f64; 2]], std: f64) -> ModeCoverage {
    let total = points.len() / 2;
    let reach = 3.0 * std;
    let mut counts = vec![0usize; centres.len()];
    let mut near_any = 0usize;
    for point in points.chunks_exact(2) {
        let (x, y) = (point[0] as f64, point[1] as f64);
        let nearest = centres
            .iter()
            .enumerate()
            .map(|(k, c)| (k, (x - c[0]).hypot(y - c[1])))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((k, distance)) = nearest
            && distance <= reach
        {
            counts[k] += 1;
            near_any += 1;
        }
    }
    let modes_covered = counts
        .iter()
        .filter(|&&c| total > 0 && c as f64 >= 0.01 * total as f64)
        .count();
    ModeCoverage {
        counts,
        modes_covered,
        high_quality: if total > 0 {
            near_any as f64 / total as f64
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::to_vec;

    #[test]
    fn mlp_shapes_and_layer_count() {
        let device = Device::flex();
        let mlp = MlpConfig::new(2, 1).with_hidden_dim(16).init(&device);
        assert_eq!(mlp.layers.len(), 4);
        let x = Tensor::<2>::random([5, 2], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(mlp.forward(x.clone()).dims(), [5, 1]);
        assert_eq!(mlp.input_gradient(x).dims(), [5, 2]);
    }

    #[test]
    fn explicit_input_gradient_equals_autodiff() {
        let device = Device::flex().autodiff();
        device.seed(4);
        for slope in [0.2, 0.0] {
            let mlp = MlpConfig::new(2, 1)
                .with_hidden_dim(64)
                .with_negative_slope(slope)
                .init(&device);
            let x = Tensor::<2>::random([50, 2], Distribution::Normal(0.0, 2.0), &device)
                .require_grad();
            let grads = mlp.forward(x.clone()).sum().backward();
            let autodiff = to_vec(x.grad(&grads).unwrap());
            let explicit = to_vec(mlp.input_gradient(x.detach()));
            let scale = autodiff.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in explicit.iter().zip(&autodiff) {
                // f32 sums of the same products: relative 1e-5 of the largest entry.
                assert!((a - b).abs() <= 1e-5 * scale, "slope {slope}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn optimal_discriminator_on_known_densities() {
        // Equal densities: D* = 1/2 wherever they agree.
        assert_eq!(optimal_discriminator(0.3, 0.3), 0.5);
        assert_eq!(optimal_discriminator(0.0, 0.0), 0.5);
        // p_data = N(0, 1), p_g = N(1, 1): D*(x) = 1 / (1 + exp(x - 1/2)), a logistic curve.
        for x in [-3.0, -0.5, 0.0, 0.5, 2.0] {
            let got =
                optimal_discriminator(normal_density(x, 0.0, 1.0), normal_density(x, 1.0, 1.0));
            let expected = 1.0 / (1.0 + (x - 0.5f64).exp());
            assert!(
                (got - expected).abs() < 1e-12,
                "x = {x}: {got} vs {expected}"
            );
        }
        // The density of N(0, 1) at 0 is 1/sqrt(2 pi); at 1, e^(-1/2) / sqrt(2 pi).
        assert!((normal_density(0.0, 0.0, 1.0) - 0.398_942_280_401_432_7).abs() < 1e-15);
        assert!((normal_density(3.0, 2.0, 1.0) - 0.241_970_724_519_143_37).abs() < 1e-15);
        // The two-Gaussian mixture integrates to 1 (midpoint rule on [-8, 8]).
        let mix = TwoGaussians::default();
        let h = 1e-3;
        let integral: f64 = (0..16_000)
            .map(|i| mix.density(-8.0 + (i as f64 + 0.5) * h) * h)
            .sum();
        assert!((integral - 1.0).abs() < 1e-6, "{integral}");
    }

    #[test]
    fn mode_coverage_on_hand_made_sample_sets() {
        let data = EightGaussians::default();
        let centres = data.centres();
        assert!((centres[2][0]).abs() < 1e-12 && (centres[2][1] - 2.0).abs() < 1e-12);
        // 100 points: 40 on centre 0, 30 within 3 std of centre 1, 1 on centre 2 (1%: covered),
        // 29 at the origin (far from all).
        let mut points = Vec::new();
        for _ in 0..40 {
            points.extend([2.0f32, 0.0]);
        }
        let c1 = centres[1];
        for _ in 0..30 {
            points.extend([(c1[0] + 0.059) as f32, c1[1] as f32]);
        }
        points.extend([centres[2][0] as f32, centres[2][1] as f32]);
        for _ in 0..29 {
            points.extend([0.0f32, 0.0]);
        }
        let coverage = mode_coverage(&points, &centres, data.std);
        assert_eq!(coverage.counts, vec![40, 30, 1, 0, 0, 0, 0, 0]);
        assert_eq!(coverage.modes_covered, 3);
        assert!((coverage.high_quality - 0.71).abs() < 1e-12);

        // Just outside 3 std (0.061 > 0.06) does not count; 200 points, 1 per mode is 0.5%.
        let mut points = vec![(2.0 + 0.061) as f32, 0.0];
        for centre in &centres {
            points.extend([centre[0] as f32, centre[1] as f32]);
        }
        points.extend(std::iter::repeat_n(5.0f32, 2 * 191));
        let coverage = mode_coverage(&points, &centres, data.std);
        assert_eq!(coverage.counts, vec![1; MODES]);
        assert_eq!(coverage.modes_covered, 0);
        assert!((coverage.high_quality - 8.0 / 200.0).abs() < 1e-12);
    }

    #[test]
    fn samples_follow_the_mixtures() {
        let device = Device::flex();
        device.seed(9);
        let data = EightGaussians::default();
        let points = to_vec(data.sample(4000, &device));
        let coverage = mode_coverage(&points, &data.centres(), data.std);
        // Within 3 std of the own centre in 2-D: 1 - e^{-9/2} = 98.9% of the points.
        assert!((coverage.high_quality - 0.989).abs() < 0.01, "{coverage:?}");
        assert!(
            coverage.counts.iter().all(|&c| (400..600).contains(&c)),
            "{coverage:?}"
        );

        let mix = TwoGaussians::default();
        let xs = to_vec(mix.sample(4000, &device));
        let left = xs.iter().filter(|&&x| x < 0.0).count() as f64 / 4000.0;
        assert!((left - 0.5).abs() < 0.04, "{left}");
        let mean_abs = xs.iter().map(|x| x.abs() as f64).sum::<f64>() / 4000.0;
        assert!((mean_abs - 2.0).abs() < 0.05, "{mean_abs}");
    }
}
