//! Class-conditional noise predictors and classifier-free guidance (Ho & Salimans, 2022).
//!
//! One network is trained for both `eps_theta(x_t, t, y)` and `eps_theta(x_t, t, null)`: the
//! class embedding has one row more than there are classes, the null label, which replaces the
//! training label with probability `p_uncond` (0.1). Sampling then uses
//!
//! `eps = (1 + w) eps_theta(x_t, t, y) - w eps_theta(x_t, t, null)`
//!
//! ([`guided_noise`]) for a guidance scale `w >= 0`: `w = 0` is the plain conditional model,
//! larger `w` trades diversity for fidelity to the class. The pixel U-Net and both latent
//! denoisers implement [`Denoiser`], so that one reverse process ([`denoise`]) serves them all.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::DiffusionError;
use super::sampling::{AnySampler, timesteps_tensor};
use crate::image_source::{GridImages, ImageSource};

/// A noise predictor `eps_theta(x_t, t[, y])` over data of rank `D` (`[B, ...]`).
pub trait Denoiser<const D: usize> {
    /// `x_t: [B, ...]`, `t: [B]` (timesteps as floats), `labels: [B]` in `0..=num_classes` (the
    /// last the null label) -> the predicted noise, `x_t`'s shape. `None` gives every sample the
    /// null label in a conditional network, and is the only choice in an unconditional one.
    fn predict(&self, x_t: Tensor<D>, t: Tensor<1>, labels: Option<Tensor<1, Int>>) -> Tensor<D>;

    /// Classes of a conditional network; 0 for an unconditional one.
    fn num_classes(&self) -> usize;

    /// The null label of classifier-free guidance: the index after the last class.
    fn null_label(&self) -> usize {
        self.num_classes()
    }

    /// The noise prediction that samples with guidance scale `w`: [`guided_noise`] of the
    /// conditional and the null-label predictions, from one forward pass over both (`w = 0`
    /// needs only the conditional one). `labels: [B]` are classes, not the null label.
    fn guided(&self, x_t: Tensor<D>, t: Tensor<1>, labels: Tensor<1, Int>, w: f64) -> Tensor<D> {
        if w == 0.0 {
            return self.predict(x_t, t, Some(labels));
        }
        let batch = x_t.dims()[0];
        let null = labels.full_like(self.null_label() as i64);
        let both = self.predict(
            Tensor::cat(vec![x_t.clone(), x_t], 0),
            Tensor::cat(vec![t.clone(), t], 0),
            Some(Tensor::cat(vec![labels, null], 0)),
        ); // [2B, ...]: the conditional predictions, then the unconditional ones
        guided_noise(
            both.clone().narrow(0, 0, batch),
            both.narrow(0, batch, batch),
            w,
        )
    }
}

/// Classifier-free guidance (Ho & Salimans, 2022, Eq. 6):
/// `eps = (1 + w) eps_theta(x_t, t, y) - w eps_theta(x_t, t, null)`.
pub fn guided_noise<const D: usize>(
    conditional: Tensor<D>,
    unconditional: Tensor<D>,
    w: f64,
) -> Tensor<D> {
    conditional.mul_scalar(1.0 + w) - unconditional.mul_scalar(w)
}

/// The labels of a training batch for classifier-free guidance: `labels: [B]` with the null
/// label where `dropped` says so.
pub fn drop_labels(labels: Tensor<1, Int>, dropped: &[bool], null_label: usize) -> Tensor<1, Int> {
    let mask = Tensor::<1, Bool>::from_data(
        TensorData::new(dropped.to_vec(), [dropped.len()]),
        &labels.device(),
    );
    labels.mask_fill(mask, null_label as i64) // [B]
}

/// Which classes a conditional model is asked for, and how hard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Guidance {
    /// The guidance scale w of [`guided_noise`].
    pub scale: f64,
    /// One class for every sample; `None`: the classes in turn.
    pub class: Option<usize>,
}

impl Guidance {
    /// `guidance` checked against a denoiser of `num_classes` classes (0: unconditional): refuses
    /// guidance for an unconditional denoiser, a class it does not know and a negative or
    /// non-finite scale. A conditional denoiser without guidance draws the classes in turn at
    /// w = 0.
    pub fn resolve(
        guidance: Option<Guidance>,
        num_classes: usize,
    ) -> Result<Option<Guidance>, GuidanceError> {
        match (guidance, num_classes) {
            (None, 0) => Ok(None),
            (None, _) => Ok(Some(Guidance {
                scale: 0.0,
                class: None,
            })),
            (Some(_), 0) => Err(GuidanceError::Unconditional),
            (Some(g), _) if !(g.scale.is_finite() && g.scale >= 0.0) => {
                Err(GuidanceError::Scale(g.scale))
            }
            (
                Some(Guidance {
                    class: Some(class), ..
                }),
                _,
            ) if class >= num_classes => Err(GuidanceError::Class {
                class,
                classes: num_classes,
            }),
            (Some(g), _) => Ok(Some(g)),
        }
    }

    /// The classes of `count` samples: the one class asked for, or `0, 1, ..` in turn.
    pub fn classes(&self, count: usize, num_classes: usize) -> Vec<usize> {
        match self.class {
            Some(class) => vec![class; count],
            None => (0..count).map(|i| i % num_classes).collect(),
        }
    }

    /// In words, for a source's description: `, class 7, guidance w = 3`.
    pub fn describe(&self) -> String {
        match self.class {
            None => format!(", classes in turn, guidance w = {}", self.scale),
            Some(class) => format!(", class {class}, guidance w = {}", self.scale),
        }
    }

    /// The figure after every epoch: with the classes in turn, one column per class and ten
    /// rows; otherwise `source`'s 64 images, 8 a row.
    pub fn grid(
        guidance: Option<Guidance>,
        num_classes: usize,
        source: &impl ImageSource,
        seed: u64,
        device: &Device,
    ) -> GridImages {
        match guidance {
            Some(Guidance { class: None, .. }) => GridImages {
                images: source.draw(10 * num_classes, seed, device).images,
                columns: num_classes,
                row_classes: None,
            },
            _ => GridImages {
                images: source.draw(64, seed, device).images,
                columns: 8,
                row_classes: None,
            },
        }
    }
}

/// Why a diffusion model was not opened with the guidance asked for.
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

/// The reverse process for `shape[0]` samples of `denoiser` with `sampler`
/// ([`AnySampler::reverse_process`]), each asked for its class of `classes` at guidance scale
/// `scale` when the denoiser is conditional (`classes: None` gives it the null label).
#[allow(clippy::too_many_arguments)]
pub fn denoise<const D: usize>(
    denoiser: &impl Denoiser<D>,
    sampler: &AnySampler,
    shape: [usize; D],
    classes: Option<&[usize]>,
    scale: f64,
    seed: u64,
    device: &Device,
    observe: impl FnMut(usize, &Tensor<D>),
) -> Tensor<D> {
    let count = shape[0];
    let labels = classes.map(|classes| {
        let values: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
        Tensor::<1, Int>::from_data(TensorData::new(values, [count]), device)
    });
    let predict_noise = |x: Tensor<D>, t: usize| {
        let t = timesteps_tensor(&vec![t; count], device); // [count]
        match &labels {
            Some(labels) => denoiser.guided(x, t, labels.clone(), scale),
            None => denoiser.predict(x, t, None),
        } // shape
    };
    sampler.reverse_process(shape, seed, device, predict_noise, observe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::to_vec;

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
    fn guidance_is_refused_where_it_cannot_apply() {
        let guidance = |scale, class| Some(Guidance { scale, class });
        assert_eq!(
            Guidance::resolve(guidance(1.0, None), 0),
            Err(GuidanceError::Unconditional)
        );
        assert_eq!(
            Guidance::resolve(guidance(-1.0, None), 10),
            Err(GuidanceError::Scale(-1.0))
        );
        assert_eq!(
            Guidance::resolve(guidance(f64::NAN, None), 10)
                .unwrap_err()
                .to_string(),
            "--guidance NaN: the guidance scale must be a finite number >= 0"
        );
        let error = Guidance::resolve(guidance(1.0, Some(10)), 10).unwrap_err();
        assert_eq!(error.to_string(), "--class 10: the classes are 0 to 9");
        assert_eq!(
            Guidance::resolve(guidance(5.0, Some(9)), 10),
            Ok(guidance(5.0, Some(9)))
        );
        assert_eq!(Guidance::resolve(None, 0), Ok(None));
        assert_eq!(Guidance::resolve(None, 10), Ok(guidance(0.0, None)));
        assert_eq!(
            guidance(1.0, None).unwrap().classes(12, 10),
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
        );
        assert_eq!(guidance(1.0, Some(3)).unwrap().classes(2, 10), [3, 3]);
    }

    #[test]
    fn dropped_labels_become_the_null_label() {
        let device = Device::flex();
        let labels = Tensor::<1, Int>::from_ints([3, 0, 9, 5], &device);
        let dropped = drop_labels(labels, &[false, true, true, false], 10);
        let values = dropped
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        assert_eq!(values, [3, 10, 10, 5]);
    }
}
