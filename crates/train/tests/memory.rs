//! No leaks: the peak resident memory of DCGAN training on flex over steps 900-1,000 is that of
//! steps 100-200, within 5% or 16 MiB, whichever is larger. (The resident set swings by about
//! 10% from step to step as the allocator hands pages back, so single readings are not compared;
//! the peaks are. Between the two windows glibc's heap alone has moved the peak by up to 10 MiB,
//! 11%, in a run without a leak; a leak of 20 KiB a step, a fifth of one batch of images, adds
//! 16 MiB over the 800 steps between them.) Ignored by default (about three minutes); CI runs it
//! with `--ignored`.

use burn::tensor::{Device, Distribution, Tensor};
use genmodels_train::cli::CommonArgs;
use genmodels_train::dcgan::{Dcgan, DcganArgs, DcganSettings, GeneratorLossArg};

/// The process's resident set now (`VmRSS`), in KiB.
fn resident_kib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
#[ignore = "a thousand training steps: run with --ignored"]
fn dcgan_training_memory_stays_flat_from_step_100_to_step_1000() {
    let device = Device::flex().autodiff();
    device.seed(3);
    let settings = DcganSettings::new(DcganArgs {
        common: CommonArgs::default(),
        g_loss: GeneratorLossArg::NonSaturating,
    });
    let mut gan = Dcgan::new(&settings, &device);
    let real = Tensor::<4>::random([32, 1, 28, 28], Distribution::Uniform(-1.0, 1.0), &device);
    let (mut early, mut late) = (0f64, 0f64);
    for step in 1..=1000 {
        let metrics = gan.step(real.clone());
        // Read a value now and then, as the training loop does once per logged row.
        if step % 50 == 0 {
            let loss = metrics
                .value("loss_d")
                .unwrap()
                .clone()
                .into_scalar::<f32>();
            assert!(loss.is_finite());
        }
        if step % 10 == 0 {
            let resident = resident_kib();
            match step {
                100..=200 => early = early.max(resident),
                900..=1000 => late = late.max(resident),
                _ => {}
            }
        }
    }
    eprintln!("peak resident memory: steps 100-200 {early:.0} KiB, steps 900-1000 {late:.0} KiB");
    const SLACK_KIB: f64 = 16.0 * 1024.0;
    assert!(
        late <= (1.05 * early).max(early + SLACK_KIB),
        "peak resident memory grew from {early:.0} KiB (steps 100-200) to {late:.0} KiB (steps \
         900-1000)"
    );
}
