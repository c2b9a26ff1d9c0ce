//! Adam's update (Kingma & Ba, 2015) of a parameter and its two moments in one pass over the
//! four slices, on the rayon threads. burn's Adam takes a dozen whole-tensor passes, each
//! allocating, and flex runs each of them on one thread below 4M floats: for the DCGAN
//! generator's 1.25M-weight projection that was several milliseconds of every training step on
//! one core while the other waited.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::ELEMENTWISE_CHUNK;
use super::simd::widest;
use crate::AdamStep;

/// The parameter and the two moments after one step, from the parameter `param`, its gradient
/// `grad` and its moments before the step (all of one length), as [`crate::adam_step`] defines
/// it.
///
/// # Panics
///
/// When the four slices differ in length.
pub fn step(
    param: &[f32],
    grad: &[f32],
    moment_1: &[f32],
    moment_2: &[f32],
    step: &AdamStep,
) -> [Vec<f32>; 3] {
    let len = param.len();
    assert!(
        [grad.len(), moment_1.len(), moment_2.len()] == [len; 3],
        "a parameter, its gradient and its moments differ in length"
    );
    let mut outputs: [Vec<f32>; 3] = std::array::from_fn(|_| Vec::with_capacity(len));
    let [param_out, moment_1_out, moment_2_out] = &mut outputs;
    param_out.spare_capacity_mut()[..len]
        .par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(moment_1_out.spare_capacity_mut()[..len].par_chunks_mut(ELEMENTWISE_CHUNK))
        .zip(moment_2_out.spare_capacity_mut()[..len].par_chunks_mut(ELEMENTWISE_CHUNK))
        .enumerate()
        .for_each(|(index, ((param_out, moment_1_out), moment_2_out))| {
            let start = index * ELEMENTWISE_CHUNK;
            let n = param_out.len();
            let inputs = [param, grad, moment_1, moment_2].map(|slice| &slice[start..][..n]);
            widest! { update(step, inputs, [param_out, moment_1_out, moment_2_out]) }
        });
    for output in &mut outputs {
        // SAFETY: the chunks cover `..len` and `update` wrote every value of each.
        unsafe { output.set_len(len) };
    }
    outputs
}

/// One chunk of [`step`]: `[param, grad, m, v]` in, `[param, m, v]` out.
#[inline(always)]
fn update(
    step: &AdamStep,
    [param, grad, moment_1, moment_2]: [&[f32]; 4],
    [param_out, moment_1_out, moment_2_out]: [&mut [MaybeUninit<f32>]; 3],
) {
    let (second, factor) = step.corrections();
    let (beta_1, beta_2) = (step.beta_1, step.beta_2);
    let epsilon = step.epsilon * second;
    let rate = step.learning_rate as f32 * factor;
    let penalty = step.weight_decay;
    // Slices of one length, so that the loop indexes them without bounds checks.
    let n = param.len();
    let (grad, moment_1, moment_2) = (&grad[..n], &moment_1[..n], &moment_2[..n]);
    let (param_out, moment_1_out) = (&mut param_out[..n], &mut moment_1_out[..n]);
    let moment_2_out = &mut moment_2_out[..n];
    for i in 0..n {
        let g = if penalty == 0.0 {
            grad[i]
        } else {
            grad[i] + penalty * param[i]
        };
        let m = beta_1 * moment_1[i] + (1.0 - beta_1) * g;
        let v = beta_2 * moment_2[i] + (1.0 - beta_2) * g * g;
        param_out[i] = MaybeUninit::new(param[i] - rate * m / (v.sqrt() + epsilon));
        moment_1_out[i] = MaybeUninit::new(m);
        moment_2_out[i] = MaybeUninit::new(v);
    }
}
