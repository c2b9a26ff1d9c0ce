//! The schedule and both samplers against huggingface diffusers' `DDPMScheduler` and
//! `DDIMScheduler` (`add_noise`, `set_timesteps`, `step`) on the same inputs and noise.
//!
//! The numbers come from `tests/reference/diffusers_reference.py` (its output is
//! `tests/reference/diffusers_reference.json`), computed twice:
//!
//! - with the schedule in float64, the precision genmodels computes its coefficients in: every
//!   output agrees within 1e-5 (absolute; the outputs are of order 1, the inputs float32);
//! - with diffusers as shipped, its schedule in float32: within 2e-4. The extra difference is
//!   diffusers' own float32 rounding: `1 - alpha_bar_t / alpha_bar_{t-1}` at t = 1 loses about
//!   four digits, as the float32 and float64 reference runs differ by up to 8e-5 there.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use genmodels::diffusion::{
    DdimScheduler, DdpmScheduler, NoiseSchedule, PosteriorVariance, Sampler,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    diffusers_version: String,
    shape: Vec<usize>,
    float32: Cases,
    float64: Cases,
}

#[derive(Deserialize)]
struct Cases {
    x0: Vec<f32>,
    sample: Vec<f32>,
    eps: Vec<f32>,
    noise: Vec<f32>,
    add_noise: Vec<AddNoiseCase>,
    ddpm_step: Vec<DdpmCase>,
    ddim_timesteps_50: Vec<usize>,
    ddim_step: Vec<DdimCase>,
}

#[derive(Deserialize)]
struct AddNoiseCase {
    t: usize,
    output: Vec<f32>,
}

#[derive(Deserialize)]
struct DdpmCase {
    variance: String,
    clip: bool,
    inference_steps: usize,
    t: usize,
    output: Vec<f32>,
}

#[derive(Deserialize)]
struct DdimCase {
    eta: f64,
    inference_steps: usize,
    t: usize,
    output: Vec<f32>,
}

fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/reference/diffusers_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("the reference JSON parses")
}

struct Inputs {
    x0: Tensor<4>,
    sample: Tensor<4>,
    eps: Tensor<4>,
    noise: Tensor<4>,
}

impl Inputs {
    fn new(cases: &Cases, shape: &[usize]) -> Self {
        let shape: [usize; 4] = shape.try_into().expect("4-d inputs");
        let device = Device::flex();
        let tensor =
            |values: &Vec<f32>| Tensor::from_data(TensorData::new(values.clone(), shape), &device);
        Self {
            x0: tensor(&cases.x0),
            sample: tensor(&cases.sample),
            eps: tensor(&cases.eps),
            noise: tensor(&cases.noise),
        }
    }
}

fn max_difference(actual: Tensor<4>, expected: &[f32]) -> f32 {
    let actual = actual.into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(actual.len(), expected.len());
    actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0, f32::max)
}

/// Runs every case of one reference run and returns the largest difference seen.
fn compare(cases: &Cases, shape: &[usize], tolerance: f32, label: &str) -> f32 {
    let inputs = Inputs::new(cases, shape);
    let schedule = NoiseSchedule::ddpm();
    let mut worst = 0.0f32;
    let mut check = |what: String, actual: Tensor<4>, expected: &[f32]| {
        let difference = max_difference(actual, expected);
        assert!(
            difference <= tolerance,
            "{label} {what}: differs by {difference} > {tolerance}"
        );
        worst = worst.max(difference);
    };

    for case in &cases.add_noise {
        let batch = shape[0];
        let actual = schedule.add_noise(
            inputs.x0.clone(),
            inputs.noise.clone(),
            &vec![case.t; batch],
        );
        check(format!("add_noise t={}", case.t), actual, &case.output);
    }

    for case in &cases.ddpm_step {
        let variance = match case.variance.as_str() {
            "fixed_small" => PosteriorVariance::FixedSmall,
            "fixed_large" => PosteriorVariance::FixedLarge,
            other => panic!("unknown variance {other}"),
        };
        let mut scheduler = DdpmScheduler::new(schedule.clone())
            .with_variance(variance)
            .with_clip_sample(case.clip);
        scheduler.set_timesteps(case.inference_steps).unwrap();
        let noise = scheduler.needs_noise(case.t).then(|| inputs.noise.clone());
        let actual = scheduler.step(inputs.eps.clone(), case.t, inputs.sample.clone(), noise);
        let what = format!(
            "DDPM {} clip={} steps={} t={}",
            case.variance, case.clip, case.inference_steps, case.t
        );
        check(what, actual, &case.output);
    }

    let ddim = DdimScheduler::new(schedule.clone());
    assert_eq!(
        ddim.timesteps(),
        cases.ddim_timesteps_50.as_slice(),
        "{label}: DDIM timesteps"
    );
    for case in &cases.ddim_step {
        let mut scheduler = ddim.clone().with_eta(case.eta).unwrap();
        scheduler.set_timesteps(case.inference_steps).unwrap();
        let noise = scheduler.needs_noise(case.t).then(|| inputs.noise.clone());
        let actual = scheduler.step(inputs.eps.clone(), case.t, inputs.sample.clone(), noise);
        check(
            format!(
                "DDIM eta={} steps={} t={}",
                case.eta, case.inference_steps, case.t
            ),
            actual,
            &case.output,
        );
    }
    worst
}

#[test]
fn schedule_and_samplers_match_diffusers() {
    let reference = reference();
    assert!(!reference.diffusers_version.is_empty());
    let cases = reference.float64.add_noise.len()
        + reference.float64.ddpm_step.len()
        + reference.float64.ddim_step.len();
    assert_eq!(
        cases,
        5 + 24 + 15,
        "every case of the reference is compared"
    );
    let exact = compare(
        &reference.float64,
        &reference.shape,
        1e-5,
        "float64 schedule",
    );
    let shipped = compare(
        &reference.float32,
        &reference.shape,
        2e-4,
        "diffusers as shipped",
    );
    println!("largest difference: {exact:e} (float64 schedule), {shipped:e} (float32 schedule)");
}
