//! A run stopped by `--max-steps` and resumed ends where the uninterrupted run ends: the same
//! parameters, bit for bit, and the same metrics rows after the resume, on flex, for DCGAN,
//! WGAN-GP, the tiny DDPM and a tiny conditional latent diffusion model. Everything random
//! derives from the seed and the step (the device's noise, the DDPM timesteps, the dropped
//! labels) or from the seed and the epoch (the data order). The parameters
//! include the BatchNorm running statistics.

use std::path::Path;

use anyhow::Result;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use genmodels_data::{FashionMnist, IMAGE_PIXELS, PixelRange, Split};
use genmodels_train::checkpoint::{Checkpoint, Checkpoints};
use genmodels_train::cli::parse_flags;
use genmodels_train::dcgan::{Dcgan, DcganSettings};
use genmodels_train::ddpm::{Ddpm, DdpmSettings};
use genmodels_train::fit::{FitPlan, Trainable, fit_on};
use genmodels_train::wgan::{Wgan, WganSettings};
use serde::Serialize;

/// 48 training images (6 batches of 8) of varied pixels, and 16 test images.
fn data() -> FashionMnist {
    let split = |count: usize, salt: usize| Split {
        images: (0..count * IMAGE_PIXELS)
            .map(|i| ((i * 37 + salt + i / IMAGE_PIXELS * 11) % 256) as u8)
            .collect(),
        labels: (0..count).map(|i| (i % 10) as u8).collect(),
    };
    FashionMnist {
        train: split(48, 0),
        test: split(16, 5),
    }
}

/// The flags of a run into `out`: the common ones of every run here, then `flags`.
fn flags<T: clap::Args>(out: &Path, flags: &str) -> T {
    let line = format!(
        "--backend flex --batch-size 8 --log-every 1 --out {} {flags}",
        out.display()
    );
    parse_flags(line.split_whitespace()).unwrap()
}

/// Every float parameter of a module, flattened, in visiting order.
#[derive(Default)]
struct Values(Vec<Vec<f32>>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data();
        self.0.push(data.try_to_vec::<f32>().unwrap());
    }
}

fn values(module: &impl Module) -> Vec<Vec<f32>> {
    let mut values = Values::default();
    module.visit(&mut values);
    values.0
}

/// The latest checkpoint of a run folder.
fn latest(out: &Path) -> Checkpoint {
    Checkpoints::new(out.join("checkpoints"))
        .latest()
        .unwrap()
        .unwrap()
}

/// The rows of `metrics.csv` from `from_step` on, without the clock columns.
fn rows_from(out: &Path, from_step: u64) -> Vec<String> {
    let text = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| !["images_per_sec", "elapsed_s"].contains(&header[i]))
        .collect();
    text.lines()
        .skip(1)
        .filter(|row| row.split(',').next().unwrap().parse::<f64>().unwrap() >= from_step as f64)
        .map(|row| {
            let cells: Vec<&str> = row.split(',').collect();
            keep.iter().map(|&i| cells[i]).collect::<Vec<_>>().join(",")
        })
        .collect()
}

/// The device's random numbers come from one generator per device, shared by the whole process:
/// the runs of these tests take turns.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Trains straight to `total` steps in one folder, and to `stop` then (resumed) to `total` in
/// another; checks both end with the same networks and log the same rows after `stop`.
fn check_exact_resume<N: Module>(
    train: impl Fn(&Path, &str) -> Result<()>,
    networks: &[&str],
    fresh: impl Fn(&str) -> N,
    stop: u64,
    total: u64,
) {
    let _turn = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let straight = tempfile::tempdir().unwrap();
    train(straight.path(), &format!("--max-steps {total}")).unwrap();
    let resumed = tempfile::tempdir().unwrap();
    train(resumed.path(), &format!("--max-steps {stop}")).unwrap();
    assert_eq!(latest(resumed.path()).state.step, stop);
    train(resumed.path(), &format!("--max-steps {total} --resume")).unwrap();

    let (a, b) = (latest(straight.path()), latest(resumed.path()));
    assert_eq!((a.state.step, b.state.step), (total, total));
    for name in networks {
        let (left, right) = (
            a.load_module(name, fresh(name)).unwrap(),
            b.load_module(name, fresh(name)).unwrap(),
        );
        let (l, r) = (values(&left), values(&right));
        assert!(l == r, "{name}: the resumed run's parameters differ");
        let count: usize = l.iter().map(Vec::len).sum();
        eprintln!(
            "{name}: {total} steps straight = {stop} steps + resume to {total}: {} tensors, \
             {count} values, bitwise equal",
            l.len()
        );
    }
    let (left, right) = (
        rows_from(straight.path(), stop + 1),
        rows_from(resumed.path(), stop + 1),
    );
    assert_eq!(left.len() as u64, total - stop);
    assert_eq!(left, right, "the metrics rows after the resume differ");
    eprintln!(
        "metrics rows {}..={total}: identical\n{}",
        stop + 1,
        left.join("\n")
    );
}

/// Trains the model `build` makes with `settings` on the test's data: what
/// `check_exact_resume` calls a run.
fn fit_here<M: Trainable>(
    plan: &FitPlan,
    settings: &impl Serialize,
    build: impl FnOnce(&Device) -> Result<M>,
) -> Result<()> {
    fit_on(plan, settings, Some(data()), build).map(drop)
}

#[test]
fn dcgan_resumed_mid_epoch_equals_the_uninterrupted_run() {
    let settings_for = |out: &Path, extra: &str| DcganSettings::new(flags(out, extra));
    let train = |out: &Path, extra: &str| {
        let settings = settings_for(out, extra);
        let plan = FitPlan::new("dcgan", &settings.run, PixelRange::MinusOneToOne);
        fit_here(&plan, &settings, |device| Ok(Dcgan::new(&settings, device)))
    };
    let device = Device::flex();
    let settings = settings_for(Path::new("unused"), "");
    let generator = || settings.generator.init(&device);
    let discriminator = || settings.discriminator.init(&device);
    check_exact_resume(train, &["generator"], |_| generator(), 4, 9);
    check_exact_resume(train, &["discriminator"], |_| discriminator(), 8, 9);
}

#[test]
fn wgan_gp_resumed_mid_epoch_equals_the_uninterrupted_run() {
    let settings_for = |out: &Path, extra: &str| {
        WganSettings::new(flags(out, &format!("--loss wgan-gp --n-critic 2 {extra}")))
    };
    let train = |out: &Path, extra: &str| {
        let settings = settings_for(out, extra);
        let plan = FitPlan::new("wgan-gp", &settings.run, PixelRange::MinusOneToOne);
        fit_here(&plan, &settings, |device| Ok(Wgan::new(&settings, device)))
    };
    let device = Device::flex();
    let settings = settings_for(Path::new("unused"), "");
    // Three generator steps an epoch (six batches, two critic steps each): stop mid-epoch 2.
    check_exact_resume(train, &["critic"], |_| settings.critic.init(&device), 4, 6);
}

#[test]
fn ddpm_resumed_mid_epoch_equals_the_uninterrupted_run() {
    let settings_for = |out: &Path, extra: &str| {
        let model = "--preset tiny --sampler ddim --sample-steps 2 --final-ddpm-steps 0";
        DdpmSettings::new(flags(out, &format!("{model} {extra}")))
    };
    let train = |out: &Path, extra: &str| {
        let settings = settings_for(out, extra);
        let plan = FitPlan::new("ddpm", &settings.run, PixelRange::MinusOneToOne);
        fit_here(&plan, &settings, |device| Ddpm::new(&settings, device))
    };
    let device = Device::flex();
    let settings = settings_for(Path::new("unused"), "");
    let unet = |_: &str| settings.unet.init(&device);
    check_exact_resume(train, &["unet", "ema"], unet, 4, 8);
}

#[test]
fn latent_diffusion_resumed_mid_epoch_equals_the_uninterrupted_run() {
    use genmodels::diffusion::{CodeStatistics, LatentCodec};
    use genmodels::vae::VaeConfig;
    use genmodels_train::ldm::{LatentDiffusion, LdmArgs, LdmSettings};

    let settings_for = |out: &Path, extra: &str| {
        let model = "--epochs 2 --lr 1e-3 --hidden 16 --blocks 1 --conditional --label-dropout 0.5 \
                     --ema-decay 0.99 --sampler ddim --sample-steps 2";
        let args: LdmArgs = flags(out, &format!("{model} {extra}"));
        let vae = VaeConfig::new().with_latent_dim(4).with_channels([4, 8]);
        let mut settings =
            LdmSettings::with_autoencoder(args, "unused".into(), vae.with_hidden(16));
        settings.denoiser = settings.denoiser.with_time_embedding_dim(8);
        settings
    };
    let statistics = CodeStatistics {
        mean: vec![0.1, -0.2, 0.3, 0.0],
        std: vec![0.5, 2.0, 1.0, 0.25],
    };
    // As `ldm::train`: a fresh run fits the codec, a resumed one takes it from the checkpoint
    // (here an unfitted one, which the checkpoint must overwrite for the runs to agree).
    let train = |out: &Path, extra: &str| {
        let settings = settings_for(out, extra);
        let build = |device: &Device| {
            let vae = settings.autoencoder.init(device);
            let codec = if settings.run.common.resume {
                LatentCodec::unfitted(vae)
            } else {
                LatentCodec::new(vae, &statistics)
            };
            LatentDiffusion::new(&settings, codec, device)
        };
        let plan = FitPlan::new("ldm", &settings.run, PixelRange::ZeroToOne);
        fit_here(&plan, &settings, build)
    };
    let device = Device::flex();
    let settings = settings_for(Path::new("unused"), "");
    check_exact_resume(
        train,
        &["denoiser", "ema"],
        |_| settings.denoiser.init(&device),
        4,
        9,
    );
}
