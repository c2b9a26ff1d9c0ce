//! The GAN objectives of Goodfellow et al. (2014), computed from discriminator logits.
//!
//! With `D(x) = sigmoid(l(x))`, every log-probability is a softplus of the logit:
//! `-log D(x) = softplus(-l)` and `-log(1 - D(x)) = softplus(l)`. Working on logits instead of
//! probabilities keeps the losses finite when the discriminator is confident.

use burn::tensor::Tensor;

/// `softplus(x) = log(1 + e^x)`, written as `max(x, 0) + log1p(e^{-|x|})` so that the
/// exponential never overflows, for any logit.
pub fn stable_softplus<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let negative_magnitude = x.clone().abs().neg();
    x.clamp_min(0.0) + negative_magnitude.exp().log1p()
}

/// The discriminator's loss: the binary cross-entropy with real = 1 and fake = 0,
///
/// `L_D = -E_x[log D(x)] - E_z[log(1 - D(G(z)))]`,
///
/// which is minimising it is maximising the GAN value function `V(D, G)`.
/// Both arguments are logits of shape `[B, 1]`; the result has one element.
pub fn discriminator_loss(real_logits: Tensor<2>, fake_logits: Tensor<2>) -> Tensor<1> {
    let real_term = stable_softplus(real_logits.neg()).mean(); // -E[log D(x)]
    let fake_term = stable_softplus(fake_logits).mean(); // -E[log(1 - D(G(z)))]
    real_term + fake_term
}

/// Which objective the generator minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GeneratorLoss {
    /// The non-saturating loss `-E_z[log D(G(z))]`: strong gradients early in training, when
    /// the discriminator rejects every sample (the paper's practical recommendation).
    #[default]
    NonSaturating,
    /// The original minimax loss `E_z[log(1 - D(G(z)))]`, whose gradient vanishes when
    /// `D(G(z))` is near 0.
    Minimax,
}

/// The generator's loss for logits of generated images, shape `[B, 1]`.
pub fn generator_loss(fake_logits: Tensor<2>, kind: GeneratorLoss) -> Tensor<1> {
    match kind {
        // -E[log D(G(z))] = E[softplus(-l)]
        GeneratorLoss::NonSaturating => stable_softplus(fake_logits.neg()).mean(),
        // E[log(1 - D(G(z)))] = -E[softplus(l)]
        GeneratorLoss::Minimax => stable_softplus(fake_logits).mean().neg(),
    }
}

/// The mode-seeking term of Mao et al. (2019, "Mode Seeking Generative Adversarial Networks for
/// Diverse Image Synthesis"), added to a conditional generator's loss with a weight λ:
///
/// `L_ms = 1 / (d_I(G(z1, y), G(z2, y)) / d_z(z1, z2) + ε)`, with `d` the mean absolute
/// difference and ε = 1e-5.
///
/// Minimising it pushes two images of the same condition apart in proportion to how far apart
/// their noise is, so the generator cannot ignore z and draw one image per condition. `images_a`
/// `[B, C, H, W]` and `images_b` come from `z_a` and `z_b` `[B, d]` with the same conditions.
pub fn mode_seeking_loss(
    images_a: Tensor<4>,
    images_b: Tensor<4>,
    z_a: Tensor<2>,
    z_b: Tensor<2>,
) -> Tensor<1> {
    let image_distance = (images_a - images_b).abs().mean(); // [1]
    let noise_distance = (z_a - z_b).abs().mean().detach(); // [1]
    (image_distance / noise_distance + MODE_SEEKING_EPSILON).recip()
}

/// ε of [`mode_seeking_loss`], as in the paper's code.
const MODE_SEEKING_EPSILON: f64 = 1e-5;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::to_vec;
    use burn::tensor::{Device, TensorData};

    fn logits(values: &[f32]) -> Tensor<2> {
        let data = TensorData::new(values.to_vec(), [values.len(), 1]);
        Tensor::from_data(data, &Device::flex())
    }

    fn scalar(t: Tensor<1>) -> f64 {
        t.into_scalar::<f32>() as f64
    }

    // Reference values by hand: D = sigmoid(l), log-probabilities in f64.
    fn sigmoid(l: f64) -> f64 {
        1.0 / (1.0 + (-l).exp())
    }

    #[test]
    fn discriminator_loss_is_binary_cross_entropy() {
        let real = [2.0, -1.0, 0.5];
        let fake = [-3.0, 0.0, 1.5];
        let expected = -real.iter().map(|&l| sigmoid(l).ln()).sum::<f64>() / 3.0
            - fake.iter().map(|&l| (1.0 - sigmoid(l)).ln()).sum::<f64>() / 3.0;
        let got = scalar(discriminator_loss(
            logits(&real.map(|v| v as f32)),
            logits(&fake.map(|v| v as f32)),
        ));
        assert!(
            (got - expected).abs() < 1e-5,
            "got {got}, expected {expected}"
        );
    }

    #[test]
    fn at_d_equals_one_half_the_discriminator_loss_is_2_ln_2() {
        let got = scalar(discriminator_loss(logits(&[0.0; 4]), logits(&[0.0; 4])));
        assert!((got - 2.0 * std::f64::consts::LN_2).abs() < 1e-6);
    }

    #[test]
    fn generator_losses_match_their_definitions() {
        let fake = [-2.0, 0.25, 3.0];
        let non_saturating = -fake.iter().map(|&l| sigmoid(l).ln()).sum::<f64>() / 3.0;
        let minimax = fake.iter().map(|&l| (1.0 - sigmoid(l)).ln()).sum::<f64>() / 3.0;
        let fake32 = fake.map(|v| v as f32);
        let got_ns = scalar(generator_loss(
            logits(&fake32),
            GeneratorLoss::NonSaturating,
        ));
        let got_mm = scalar(generator_loss(logits(&fake32), GeneratorLoss::Minimax));
        assert!(
            (got_ns - non_saturating).abs() < 1e-5,
            "{got_ns} vs {non_saturating}"
        );
        assert!((got_mm - minimax).abs() < 1e-5, "{got_mm} vs {minimax}");
    }

    #[test]
    fn mode_seeking_loss_and_its_gradient_by_hand() {
        let device = Device::flex().autodiff();
        let images_b: [f32; 8] = [0.5, -0.5, 1.0, -0.1, 0.2, -0.2, 0.2, -0.2];
        let z_b: [f32; 6] = [1.0, -1.0, 2.0, 0.25, 0.5, -0.5];
        let a = Tensor::<4>::zeros([2, 1, 2, 2], &device);
        let b = Tensor::<4>::from_data(TensorData::new(images_b.to_vec(), [2, 1, 2, 2]), &device)
            .require_grad();
        let z_a = Tensor::<2>::zeros([2, 3], &device);
        let z_b_tensor = Tensor::<2>::from_data(TensorData::new(z_b.to_vec(), [2, 3]), &device);
        let loss = mode_seeking_loss(a, b.clone(), z_a, z_b_tensor);
        // d_I = mean |b| = 2.9 / 8, d_z = mean |z_b| = 5.25 / 6, L = 1 / (d_I / d_z + 1e-5).
        let d_image = 2.9 / 8.0;
        let d_noise = 5.25 / 6.0;
        let ratio = d_image / d_noise;
        let expected = 1.0 / (ratio + 1e-5);
        let got = loss.clone().into_scalar::<f32>() as f64;
        assert!(
            (got - expected).abs() < 1e-4 * expected,
            "{got} vs {expected}"
        );
        // dL/db_i = -(ratio + eps)^-2 * sign(b_i) / (8 d_z): the loss pushes b away from a.
        let grads = loss.backward();
        let gradient = to_vec(b.grad(&grads).unwrap());
        let scale = (ratio + 1e-5).powi(-2) / (8.0 * d_noise);
        for (g, &value) in gradient.iter().zip(&images_b) {
            let want = -scale * f64::from(value.signum());
            assert!((f64::from(*g) - want).abs() < 1e-4 * scale, "{g} vs {want}");
        }
    }

    #[test]
    fn losses_stay_finite_for_confident_logits() {
        // A naive log(sigmoid(l)) gives -inf at l = -200 in f32; softplus gives 200.
        let got = scalar(generator_loss(
            logits(&[-200.0]),
            GeneratorLoss::NonSaturating,
        ));
        assert!((got - 200.0).abs() < 1e-3, "{got}");
        let got = scalar(discriminator_loss(logits(&[500.0]), logits(&[-500.0])));
        assert!(got.is_finite() && got.abs() < 1e-6, "{got}");
    }
}
