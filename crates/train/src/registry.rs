//! The one table from a checkpoint's model name to the code that opens it, so that `eval`,
//! `sample` and `export` work on a run of any model without knowing the models.
//!
//! A new model is one row here, with an `open_source` function in its own module.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use genmodels::ImageSource;
use genmodels::checkpoint::RunFolder;
use genmodels::diffusion::{Guidance, SamplerKind, SamplingSettings};
use genmodels_data::NUM_CLASSES;
use serde::de::DeserializeOwned;

use crate::backend::select_device;
use crate::bigan::Bigan;
use crate::cgan::Cgan;
use crate::cli::{ExportArgs, ExportFormat, SampleArgs};
use crate::cyclegan::CycleGan;
use crate::dcgan::Dcgan;
use crate::ddpm::Ddpm;
use crate::grid::{PixelScale, save_class_grid, save_grid};
use crate::infogan::InfoGan;
use crate::ldm::LatentDiffusion;
use crate::run::Checkpointed;
use crate::wgan::Wgan;
use crate::{bigan, cgan, cyclegan, dcgan, ddpm, flow, infogan, ldm, vae};

/// What a run's generator is opened with, beyond its weights: the diffusion sampler, the class
/// of a conditional model, the guidance scale of a conditional diffusion model, the
/// temperature of a flow.
#[derive(Debug, Clone, Copy)]
pub struct SourceOptions {
    pub sampling: SamplingSettings,
    pub class: Option<usize>,
    pub guidance: Option<f64>,
    pub temperature: Option<f64>,
}

impl Default for SourceOptions {
    /// DDIM-50 at eta 0; every class in turn; no guidance; temperature 1.
    fn default() -> Self {
        Self {
            sampling: SamplingSettings {
                sampler: SamplerKind::Ddim,
                steps: 50,
                eta: 0.0,
            },
            class: None,
            guidance: None,
            temperature: None,
        }
    }
}

impl SourceOptions {
    /// The classifier-free guidance asked for: none when neither a class nor a scale is given;
    /// the scale is 0 when only a class is.
    pub fn guidance(&self) -> Option<Guidance> {
        match (self.guidance, self.class) {
            (None, None) => None,
            (scale, class) => Some(Guidance {
                scale: scale.unwrap_or(0.0),
                class,
            }),
        }
    }
}

/// A run's generator, ready to draw.
pub type Opened = Result<Box<dyn ImageSource>>;

/// Opens the generator of one model's run folder.
pub type OpenSource = fn(&RunFolder, &SourceOptions, &Device) -> Opened;

/// Writes every network of one model's run folder into a folder for PyTorch; returns the files.
pub type Export = fn(&RunFolder, &Path, &Device) -> Result<Vec<PathBuf>>;

/// One model whose checkpoints draw images.
pub struct Registered {
    /// The model's name, as `state.json` records it.
    pub model: &'static str,
    pub open_source: OpenSource,
    pub export: Export,
}

/// Every model whose checkpoints draw images. `export` builds the model from the run's
/// settings (its networks and optimizers), loads the checkpoint into it and writes its parts.
pub const GENERATORS: &[Registered] = &[
    Registered {
        model: dcgan::MODEL,
        open_source: dcgan::open_source,
        export: |run, dir, device| export_model(run, dir, |s| Ok(Dcgan::new(s, device))),
    },
    // A WGAN's generator is DCGAN's.
    Registered {
        model: "wgan",
        open_source: dcgan::open_source,
        export: |run, dir, device| export_model(run, dir, |s| Ok(Wgan::new(s, device))),
    },
    Registered {
        model: "wgan-gp",
        open_source: dcgan::open_source,
        export: |run, dir, device| export_model(run, dir, |s| Ok(Wgan::new(s, device))),
    },
    Registered {
        model: "wgan-ct",
        open_source: dcgan::open_source,
        export: |run, dir, device| export_model(run, dir, |s| Ok(Wgan::new(s, device))),
    },
    Registered {
        model: cgan::MODEL,
        open_source: cgan::open_source,
        export: |run, dir, device| export_model(run, dir, |s| Ok(Cgan::new(s, device))),
    },
    Registered {
        model: infogan::MODEL,
        open_source: infogan::open_source,
        export: |run, dir, device| export_model(run, dir, |s| Ok(InfoGan::new(s, device))),
    },
    Registered {
        model: bigan::MODEL,
        open_source: bigan::open_source,
        export: |run, dir, device| export_model(run, dir, |s| Ok(Bigan::new(s, device))),
    },
    Registered {
        model: cyclegan::MODEL,
        open_source: cyclegan::open_source,
        export: |run, dir, device| {
            export_model(run, dir, |s| {
                Ok(CycleGan::new(s, Default::default(), device))
            })
        },
    },
    Registered {
        model: "vae",
        open_source: vae::open_source,
        export: |run, dir, device| export_model(run, dir, |s| Ok(vae::Trainer::new(s, device))),
    },
    Registered {
        model: "ae",
        open_source: vae::open_source,
        export: |run, dir, device| export_model(run, dir, |s| Ok(vae::Trainer::new(s, device))),
    },
    Registered {
        model: ddpm::MODEL,
        open_source: ddpm::open_source,
        export: |run, dir, device| export_model(run, dir, |s| Ddpm::new(s, device)),
    },
    Registered {
        model: ldm::MODEL,
        open_source: ldm::open_source,
        export: |run, dir, device| export_model(run, dir, |s| LatentDiffusion::unfitted(s, device)),
    },
    Registered {
        model: flow::MODEL,
        open_source: flow::open_source,
        export: |run, dir, device| export_model(run, dir, |s| Ok(flow::Trainer::new(s, device))),
    },
];

/// The table's row for the run's model (named by its checkpoint).
fn registered(run: &RunFolder, what: &str) -> Result<&'static Registered> {
    let model = run.model();
    match GENERATORS.iter().find(|entry| entry.model == model) {
        Some(entry) => Ok(entry),
        None => {
            let known: Vec<&str> = GENERATORS.iter().map(|entry| entry.model).collect();
            bail!(
                "{}: cannot {what} a `{model}` checkpoint (the generators are {})",
                run.checkpoint.dir.display(),
                known.join(", ")
            )
        }
    }
}

/// The generator of the run (its model named by the checkpoint), with its trained weights.
pub fn open(
    run: &RunFolder,
    options: &SourceOptions,
    device: &Device,
) -> Result<Box<dyn ImageSource>> {
    (registered(run, "draw images from")?.open_source)(run, options, device)
}

/// A model's [`Export`]: the model built from the run's settings by `build`, its checkpoint
/// loaded, and each network written into `dir`.
fn export_model<S: DeserializeOwned, M: Checkpointed>(
    run: &RunFolder,
    dir: &Path,
    build: impl FnOnce(&S) -> Result<M>,
) -> Result<Vec<PathBuf>> {
    let mut model = build(&run.settings::<S>()?)?.load(&run.checkpoint)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    model.export(dir)
}

/// The run `--from` names (by default `runs/<first model>`), which must be one of `models`.
pub fn open_run(models: &[&str], from: Option<&Path>) -> Result<RunFolder> {
    let from = from.map_or_else(|| Path::new("runs").join(models[0]), Path::to_path_buf);
    let run = RunFolder::open(&from).with_context(|| format!("--from {}", from.display()))?;
    if !models.contains(&run.model()) {
        run.checkpoint.expect_model(models[0])?;
    }
    Ok(run)
}

/// The run of `model` that `--from` names, to analyse, and the device `backend` selects,
/// announced on standard output.
pub fn open_for_analysis(
    model: &str,
    from: &Path,
    backend: crate::backend::BackendChoice,
) -> Result<(RunFolder, Device)> {
    let run = open_run(&[model], Some(from))?;
    let selected = select_device(backend)?;
    println!(
        "{model}: analysing {} on {}",
        run.checkpoint.dir.display(),
        selected.description
    );
    Ok((run, selected.device))
}

/// `export`: writes every network of a run of one of `models` (`--from`, by default
/// `runs/<first model>`) into `--output` (by default `<run>/export`). Returns the files.
pub fn export(models: &[&str], args: &ExportArgs) -> Result<Vec<PathBuf>> {
    let run = open_run(models, args.from.as_deref())?;
    let model = run.model().to_string();
    let dir = args
        .output
        .clone()
        .unwrap_or_else(|| run.root.join("export"));
    let files = match args.format {
        ExportFormat::Safetensors => {
            (registered(&run, "export")?.export)(&run, &dir, &Device::flex())
        }
    }
    .with_context(|| format!("--output {}", dir.display()))?;
    for file in &files {
        println!("{model}: wrote {}", file.display());
    }
    println!(
        "{model}: the networks of {}, under the PyTorch names of benches/pytorch_reference.py",
        run.checkpoint.dir.display()
    );
    Ok(files)
}

/// `sample`: draws `args.count` images from a run of one of `models` (`--from`, by default
/// `runs/<first model>`) and writes their grid: eight a row, or for a conditional model one
/// class per column (the classes in turn) or per row (one class, named). Returns the grid's
/// path.
pub fn sample(models: &[&str], args: &SampleArgs, options: &SourceOptions) -> Result<PathBuf> {
    let run = open_run(models, args.from.as_deref())?;
    let model = run.model().to_string();
    let selected = select_device(args.backend)?;
    println!("{model}: computing on {}", selected.description);
    let source = open(&run, options, &selected.device)?;
    let drawn = source.draw(args.count, args.seed, &selected.device);
    let output = args.output.clone().unwrap_or_else(|| match options.class {
        Some(class) => run.root.join(format!("samples/class_{class}.png")),
        None => run.root.join("samples/sample.png"),
    });
    let scale = PixelScale::from(source.pixel_range());
    match (&drawn.classes, options.class) {
        (Some(_), Some(class)) => {
            let columns = 8.min(args.count);
            let rows = args.count.div_ceil(columns);
            save_class_grid(drawn.images, &vec![class; rows], columns, scale, &output)?
        }
        (Some(_), None) => save_grid(drawn.images, NUM_CLASSES, scale, &output)?,
        (None, _) => save_grid(drawn.images, 8, scale, &output)?,
    }
    println!(
        "{model}: {} images from {} ({}): {}",
        args.count,
        run.checkpoint.dir.display(),
        source.describe(),
        output.display()
    );
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Tensor, TensorData};
    use genmodels::PixelRange;
    use genmodels::diffusion::{DdimScheduler, ScheduleConfig, sample as reverse_process};
    use genmodels::noise::seeded_normal;
    use serde::Serialize;

    use crate::cli::CommonArgs;

    /// A run folder holding `config.json` and one checkpoint of `module` named `name`.
    fn fake_run(
        config: &impl Serialize,
        model: &str,
        name: &str,
        module: &impl burn::module::Module,
    ) -> (tempfile::TempDir, RunFolder) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_string(config).unwrap(),
        )
        .unwrap();
        let checkpoints = crate::checkpoint::Checkpoints::new(dir.path().join("checkpoints"));
        let writer = checkpoints.begin(7).unwrap();
        writer.module(name, module).unwrap();
        let state = crate::checkpoint::TrainingState::new(model, 7, 1, 0);
        writer.commit(&state).unwrap();
        let run = RunFolder::open(dir.path()).unwrap();
        (dir, run)
    }

    fn options() -> SourceOptions {
        SourceOptions {
            sampling: SamplingSettings {
                sampler: SamplerKind::Ddim,
                steps: 2,
                eta: 0.0,
            },
            class: None,
            guidance: None,
            temperature: None,
        }
    }

    #[test]
    fn every_generator_is_rebuilt_from_its_run_folder() {
        let device = Device::flex();
        let common = CommonArgs::default();

        let settings = vae::VaeSettings::new(vae::VaeArgs {
            common: common.clone(),
            model: vae::ModelKind::Vae,
            latent_dim: 5,
            latent_channels: None,
            beta: 1.0,
            kl_warmup_epochs: 0.0,
            analysis: vae::AnalysisFlags {
                tsne_epochs: 10,
                analysis_images: None,
            },
        });
        let network = settings.vae.init(&device);
        let (_dir, run) = fake_run(&settings, "vae", "vae", &network);
        let source = open(&run, &options(), &device).unwrap();
        assert_eq!(source.pixel_range(), PixelRange::ZeroToOne);
        let expected = network.decoder.decode(seeded_normal([3, 5], 11, &device));
        let drawn = source.draw(3, 11, &device).images;
        assert!(drawn.all_close(expected, Some(1e-6), Some(1e-6)));

        let settings = dcgan::DcganSettings::new(dcgan::DcganArgs {
            common: common.clone(),
            g_loss: dcgan::GeneratorLossArg::NonSaturating,
        });
        let generator = settings.generator.init(&device);
        let (_dir, run) = fake_run(&settings, "dcgan", "generator", &generator);
        let source = open(&run, &options(), &device).unwrap();
        assert_eq!(source.pixel_range(), PixelRange::MinusOneToOne);
        let expected = generator.forward(seeded_normal([2, 100], 5, &device));
        let drawn = source.draw(2, 5, &device);
        assert!(drawn.classes.is_none());
        assert_eq!(drawn.images.dims(), [2, 1, 28, 28]);
        assert!(
            drawn
                .images
                .all_close(expected.clone(), Some(1e-6), Some(1e-6))
        );

        // The WGAN-GP generator is the DCGAN one.
        let settings = crate::wgan::WganSettings::new(crate::wgan::WganArgs {
            common: common.clone(),
            loss: crate::wgan::WganLoss::WganGp,
            n_critic: 5,
            clip: 0.01,
            gp_lambda: 10.0,
            ct_lambda: 2.0,
            ct_margin: 0.0,
            dropout: 0.5,
        });
        let (_dir, run) = fake_run(&settings, "wgan-gp", "generator", &generator);
        let drawn = open(&run, &options(), &device).unwrap().draw(2, 5, &device);
        assert!(drawn.images.all_close(expected, Some(1e-6), Some(1e-6)));

        // The conditional generator asks for the classes in turn, or for one class.
        let settings = cgan::CganSettings::new(cgan::CganArgs {
            common: common.clone(),
            mode_seeking: 1.0,
        });
        let generator = settings.generator.init(&device);
        let (_dir, run) = fake_run(&settings, "cgan", "generator", &generator);
        let drawn = open(&run, &options(), &device)
            .unwrap()
            .draw(12, 5, &device);
        let classes = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1];
        assert_eq!(drawn.classes.as_deref(), Some(&classes[..]));
        let labels: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
        let expected = generator.forward(
            seeded_normal([12, 100], 5, &device),
            Tensor::from_data(TensorData::new(labels, [12]), &device),
        );
        assert!(drawn.images.all_close(expected, Some(1e-6), Some(1e-6)));
        let one_class = SourceOptions {
            class: Some(7),
            ..options()
        };
        let drawn = open(&run, &one_class, &device).unwrap().draw(3, 5, &device);
        assert_eq!(drawn.classes, Some(vec![7, 7, 7]));
        let too_big = SourceOptions {
            class: Some(10),
            ..options()
        };
        let error = open(&run, &too_big, &device).err().unwrap().to_string();
        assert!(error.contains("--class 10"), "{error}");

        let settings = ddpm::DdpmSettings::new(ddpm::DdpmArgs {
            common,
            preset: ddpm::Preset::Tiny,
            conditioning: Default::default(),
            sampling: crate::cli::DiffusionArgs {
                sampler: crate::cli::SamplerArg::Ddim,
                sample_steps: Some(2),
                eta: 0.0,
            },
            ema_decay: 0.999,
            final_ddpm_steps: 0,
        });
        let unet = settings.unet.init(&device);
        let (_dir, run) = fake_run(&settings, "ddpm", "ema", &unet);
        let source = open(&run, &options(), &device).unwrap();
        let schedule = ScheduleConfig::default().build().unwrap();
        let mut sampler = DdimScheduler::new(schedule);
        sampler.set_timesteps(2).unwrap();
        let expected = reverse_process(&unet, &sampler, 2, 3, &device, |_, _| {});
        let drawn = source.draw(2, 3, &device).images;
        assert!(drawn.all_close(expected, Some(1e-5), Some(1e-5)));

        // A checkpoint of a model that draws no images is refused by name.
        let (_dir, run) = fake_run(&settings, "classifier", "ema", &unet);
        let error = open(&run, &options(), &device).err().unwrap().to_string();
        assert!(error.contains("`classifier`"), "{error}");
    }
}
