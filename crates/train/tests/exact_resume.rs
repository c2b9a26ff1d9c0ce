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
use genmodels_train::cli::{CommonArgs, DiffusionArgs, SamplerArg};
use genmodels_train::dcgan::{Dcgan, DcganArgs, DcganSettings, GeneratorLossArg};
use genmodels_train::ddpm::{Ddpm, DdpmArgs, DdpmSettings, Preset};
use genmodels_train::fit::{FitPlan, fit_on};
use genmodels_train::wgan::{Wgan, WganArgs, WganLoss, WganSettings};

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

fn common(out: &Path, flags: &str) -> CommonArgs {
    let line = format!(
        "--backend flex --batch-size 8 --log-every 1 --out {} {flags}",
        out.display()
    );
    CommonArgs::try_parse_from(line.split_whitespace()).unwrap()
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

#[test]
fn dcgan_resumed_mid_epoch_equals_the_uninterrupted_run() {
    let settings_for = |out: &Path, flags: &str| {
        DcganSettings::new(DcganArgs {
            common: common(out, flags),
            g_loss: GeneratorLossArg::NonSaturating,
        })
    };
    let train = |out: &Path, flags: &str| {
        let settings = settings_for(out, flags);
        let plan = FitPlan::new("dcgan", &settings.run, PixelRange::MinusOneToOne);
        fit_on(&plan, &settings, Some(data()), |device| {
            Ok(Dcgan::new(&settings, device))
        })
        .map(drop)
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
    let settings_for = |out: &Path, flags: &str| {
        WganSettings::new(WganArgs {
            common: common(out, flags),
            loss: WganLoss::WganGp,
            n_critic: 2,
            clip: 0.01,
            gp_lambda: 10.0,
        })
    };
    let train = |out: &Path, flags: &str| {
        let settings = settings_for(out, flags);
        let plan = FitPlan::new("wgan-gp", &settings.run, PixelRange::MinusOneToOne);
        fit_on(&plan, &settings, Some(data()), |device| {
            Ok(Wgan::new(&settings, device))
        })
        .map(drop)
    };
    let device = Device::flex();
    let settings = settings_for(Path::new("unused"), "");
    // Three generator steps an epoch (six batches, two critic steps each): stop mid-epoch 2.
    check_exact_resume(train, &["critic"], |_| settings.critic.init(&device), 4, 6);
}

#[test]
fn ddpm_resumed_mid_epoch_equals_the_uninterrupted_run() {
    let settings_for = |out: &Path, flags: &str| {
        DdpmSettings::new(DdpmArgs {
            common: common(out, flags),
            preset: Preset::Tiny,
            sampling: DiffusionArgs {
                sampler: SamplerArg::Ddim,
                sample_steps: Some(2),
                eta: 0.0,
            },
            ema_decay: 0.999,
            final_ddpm_steps: 0,
        })
    };
    let train = |out: &Path, flags: &str| {
        let settings = settings_for(out, flags);
        let plan = FitPlan::new("ddpm", &settings.run, PixelRange::MinusOneToOne);
        fit_on(&plan, &settings, Some(data()), |device| {
            Ddpm::new(&settings, device)
        })
        .map(drop)
    };
    let device = Device::flex();
    let settings = settings_for(Path::new("unused"), "");
    check_exact_resume(
        train,
        &["unet", "ema"],
        |_| settings.unet.init(&device),
        4,
        8,
    );
}

#[test]
fn latent_diffusion_resumed_mid_epoch_equals_the_uninterrupted_run() {
    use genmodels::diffusion::{
        CodeStatistics, LatentCodec, LatentDenoiserConfig, SamplerKind, SamplingSettings,
        ScheduleConfig,
    };
    use genmodels::vae::VaeConfig;
    use genmodels_train::fit::RunSettings;
    use genmodels_train::ldm::{LatentDiffusion, LdmSettings};

    let settings_for = |out: &Path, flags: &str| LdmSettings {
        run: RunSettings::new(common(out, flags), 2, 1e-3),
        optimizer: burn::optim::AdamConfig::new().with_epsilon(1e-8),
        autoencoder_checkpoint: "unused".into(),
        autoencoder: VaeConfig::new()
            .with_latent_dim(4)
            .with_channels([4, 8])
            .with_hidden(16),
        denoiser: LatentDenoiserConfig::new()
            .with_latent_dim(4)
            .with_hidden(16)
            .with_blocks(1)
            .with_time_embedding_dim(8)
            .with_num_classes(10),
        schedule: ScheduleConfig::default(),
        label_dropout: 0.5,
        ema_decay: 0.99,
        max_grad_norm: 1.0,
        epoch_sampling: SamplingSettings {
            sampler: SamplerKind::Ddim,
            steps: 2,
            eta: 0.0,
        },
        epoch_guidance: 1.0,
    };
    let statistics = CodeStatistics {
        mean: vec![0.1, -0.2, 0.3, 0.0],
        std: vec![0.5, 2.0, 1.0, 0.25],
    };
    // As `ldm::train`: a fresh run fits the codec, a resumed one takes it from the checkpoint
    // (here an unfitted one, which the checkpoint must overwrite for the runs to agree).
    let train = |out: &Path, flags: &str| {
        let settings = settings_for(out, flags);
        let plan = FitPlan::new("ldm", &settings.run, PixelRange::ZeroToOne);
        let resume = settings.run.common.resume;
        fit_on(&plan, &settings, Some(data()), |device| {
            let vae = settings.autoencoder.init(device);
            let codec = if resume {
                LatentCodec::unfitted(vae)
            } else {
                LatentCodec::new(vae, &statistics)
            };
            LatentDiffusion::new(&settings, codec, device)
        })
        .map(drop)
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
