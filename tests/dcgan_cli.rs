//! The `dcgan` example end to end: a few steps on the real data, its files, its checkpoint,
//! resuming, and the errors a user sees for bad input.
//!
//! The example binary is built by `cargo test` (examples are test targets' build inputs).

mod common;

use std::path::Path;

use burn::tensor::Device;
use genmodels::dcgan::GeneratorConfig;
use genmodels_train::checkpoint::{Checkpoint, Checkpoints};

use common::{
    assert_clean_failure, assert_gan_files, example_command, latest_checkpoint, read_metrics, run,
    run_ok, stderr,
};

/// The flags of a run on the CPU in batches of 16 writing into `out`, followed by `more`.
fn flags_into(out: &Path, more: &str) -> String {
    format!(
        "--backend flex --batch-size 16 --out {} {more}",
        out.display()
    )
}

#[test]
fn a_few_steps_write_grids_and_a_loadable_checkpoint_and_resume_continues() {
    let out = tempfile::tempdir().unwrap();
    let flags = flags_into(out.path(), "--log-every 1");
    run_ok("dcgan", &format!("{flags} --max-steps 3"));

    assert_gan_files(out.path());
    let metrics = read_metrics(out.path());
    assert_eq!(
        metrics.lines().count(),
        1 + 3,
        "header and one row per step:\n{metrics}"
    );

    let checkpoint = latest_checkpoint(out.path());
    assert_eq!(checkpoint.state.step, 3);
    assert_eq!(checkpoint.state.model, "dcgan");
    let device = Device::flex();
    let fresh = GeneratorConfig::new().init(&device);
    let loaded = checkpoint.load_module("generator", fresh.clone()).unwrap();
    let z = fresh.sample_latent(2, &device);
    let (a, b) = (fresh.forward(z.clone()), loaded.forward(z));
    assert!(
        !a.all_close(b, None, None),
        "the loaded weights should differ from a fresh init"
    );

    let resumed = run_ok("dcgan", &format!("{flags} --max-steps 5 --resume"));
    assert!(resumed.contains("resumed from"), "{resumed}");
    let latest = latest_checkpoint(out.path());
    assert_eq!(latest.state.step, 5);
    let metrics = read_metrics(out.path());
    assert_eq!(
        metrics.lines().count(),
        1 + 5,
        "the resumed run appends:\n{metrics}"
    );
    Checkpoint::open(latest.dir).unwrap();
}

#[test]
fn bad_flags_get_clear_errors() {
    assert_clean_failure(
        &run("dcgan", "--batch-size 0"),
        &["--batch-size", "at least 1"],
    );
    assert_clean_failure(&run("dcgan", "--lr -1"), &["--lr", "positive"]);
    assert_clean_failure(&run("dcgan", "--backend tpu"), &["tpu", "flex"]);
    if !cfg!(feature = "cuda") {
        assert_clean_failure(
            &run("dcgan", "--backend cuda"),
            &["--features cuda", "flex"],
        );
    }
}

#[test]
fn corrupt_data_is_reported_by_file_name() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    for name in names {
        std::fs::write(data.path().join(name), b"\x00\x00\x08\x03not an idx file").unwrap();
    }
    let output = run(
        "dcgan",
        &format!(
            "--backend flex --data-dir {} --out {}",
            data.path().to_str().unwrap(),
            out.path().to_str().unwrap()
        ),
    );
    assert_clean_failure(&output, &["-idx"]);
    let checkpoints: Vec<_> = std::fs::read_dir(out.path().join("checkpoints"))
        .unwrap()
        .collect();
    assert!(checkpoints.is_empty(), "nothing is trained on bad data");
}

/// Ctrl-C (SIGINT) finishes the step under way, writes a checkpoint, and exits non-zero saying
/// how to resume; the checkpoint loads and the run resumes from it.
#[cfg(unix)]
#[test]
fn an_interrupted_run_saves_a_checkpoint_and_resumes() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let out = tempfile::tempdir().unwrap();
    let flags = flags_into(out.path(), "--log-every 1 --checkpoint-minutes 0");
    let child = example_command("dcgan", flags.split_whitespace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for a few logged steps, then interrupt.
    let metrics = out.path().join("metrics.csv");
    let started = Instant::now();
    while std::fs::read_to_string(&metrics).map_or(0, |text| text.lines().count()) < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no steps logged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let signal = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signal.success());
    let output = child.wait_with_output().unwrap();
    let text = stderr(&output);
    assert!(
        !output.status.success(),
        "an interrupted run exits non-zero"
    );
    assert!(
        text.contains("interrupted after step") && text.contains("--resume"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    let checkpoint = latest_checkpoint(out.path());
    assert!(checkpoint.state.step >= 3, "{:?}", checkpoint.state);
    assert_eq!(checkpoint.state.epoch, 0);
    let next = checkpoint.state.step + 1;
    let resumed = run_ok("dcgan", &format!("{flags} --resume --max-steps {next}"));
    assert!(resumed.contains("resumed from"), "{resumed}");
    assert_eq!(latest_checkpoint(out.path()).state.step, next);
}

/// A process killed in the middle of writing a checkpoint leaves the previous checkpoint whole:
/// the half-written one stays in its staging folder, `latest` still names the old one, it loads
/// and the run resumes from it.
#[test]
fn a_crash_while_saving_leaves_the_previous_checkpoint() {
    use genmodels_train::checkpoint::CRASH_WHILE_SAVING;

    let out = tempfile::tempdir().unwrap();
    let flags = flags_into(out.path(), "--checkpoint-every 2 --checkpoint-minutes 0");
    let crashed = example_command("dcgan", flags.split_whitespace())
        .args(["--max-steps", "10"])
        .env(CRASH_WHILE_SAVING, "4")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "the process should have aborted");
    let checkpoints = out.path().join("checkpoints");
    assert!(
        checkpoints
            .join(".step_000004.partial/generator.bpk")
            .exists()
    );
    let latest = latest_checkpoint(out.path());
    assert_eq!(latest.state.step, 2);
    let device = Device::flex();
    latest
        .load_module("generator", GeneratorConfig::new().init(&device))
        .unwrap();
    let resumed = run_ok("dcgan", &format!("{flags} --resume --max-steps 5"));
    assert!(resumed.contains("step 2"), "{resumed}");
    assert_eq!(latest_checkpoint(out.path()).state.step, 5);
    assert!(!checkpoints.join(".step_000004.partial").exists());
}

/// A full disk (injected) while writing a checkpoint, a grid or `metrics.csv` stops the run with
/// an error naming the file; the checkpoints and rows written before stay whole.
#[test]
fn a_full_disk_stops_the_run_and_keeps_what_was_written() {
    use genmodels_train::fsutil::FAIL_WRITES_MATCHING;

    // (the path the writes fail on, the file the error names, the checkpoint left, rows left)
    let cases = [
        ("step_000004", "generator.bpk", Some(2), 4),
        ("samples/epoch_001", "epoch_001.png", Some(4), 6),
        ("metrics.csv", "metrics.csv", None, 0),
    ];
    for (pattern, file, checkpoint, rows) in cases {
        let out = tempfile::tempdir().unwrap();
        let flags = flags_into(
            out.path(),
            "--log-every 1 --checkpoint-every 2 --checkpoint-minutes 0 --max-steps 6",
        );
        let output = example_command("dcgan", flags.split_whitespace())
            .env(FAIL_WRITES_MATCHING, pattern)
            .output()
            .unwrap();
        assert_clean_failure(&output, &[file, "No space left on device"]);
        let latest = Checkpoints::new(out.path().join("checkpoints"))
            .latest()
            .unwrap();
        assert_eq!(
            latest.as_ref().map(|c| c.state.step),
            checkpoint,
            "{pattern}"
        );
        if let Some(latest) = latest {
            let device = Device::flex();
            latest
                .load_module("generator", GeneratorConfig::new().init(&device))
                .unwrap();
        }
        let metrics = read_metrics(out.path());
        assert_eq!(metrics.lines().count(), 1 + rows, "{pattern}: {metrics}");
        assert!(metrics.ends_with('\n'), "{pattern}: a whole last row");
    }
}

/// Reads every tensor of a safetensors file.
fn safetensors(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    use burn::store::{ModuleStore, SafetensorsStore, bridge};
    SafetensorsStore::from_file(path)
        .map_indices_contiguous(false)
        .get_all_tensors()
        .unwrap()
        .iter()
        .map(|(name, t)| {
            (
                name.clone(),
                bridge::to_data(t).unwrap().try_to_vec().unwrap(),
            )
        })
        .collect()
}

#[test]
fn export_writes_pytorch_files_that_init_from_reads_back() {
    let first = tempfile::tempdir().unwrap();
    run_ok("dcgan", &flags_into(first.path(), "--max-steps 2"));
    let exported = run_ok(
        "dcgan",
        &format!("export --from {}", first.path().display()),
    );
    let generator_file = first.path().join("export/generator.safetensors");
    let discriminator_file = first.path().join("export/discriminator.safetensors");
    assert!(exported.contains("generator.safetensors"), "{exported}");
    let weights = safetensors(&generator_file);
    // PyTorch's names (benches/pytorch_reference.py), its [out, in] layout for linear weights.
    let names: Vec<&str> = weights.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "bn0.bias",
            "bn0.running_mean",
            "bn0.running_var",
            "bn0.weight",
            "bn1.bias",
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.weight",
            "project.weight",
            "up1.weight",
            "up2.bias",
            "up2.weight"
        ]
    );
    let device = Device::flex();
    let trained = latest_checkpoint(first.path())
        .load_module("generator", GeneratorConfig::new().init(&device))
        .unwrap();
    let read_back =
        genmodels::pytorch::load_pytorch(GeneratorConfig::new().init(&device), &generator_file)
            .unwrap();
    let z = trained.sample_latent(3, &device);
    let (a, b) = (trained.forward(z.clone()), read_back.forward(z));
    assert!(
        a.all_close(b, Some(0.0), Some(0.0)),
        "export and load change the generator"
    );

    // A new run started from the exported weights, one Adam step at lr 1e-3: Adam's first step
    // moves a parameter by lr (m / sqrt(v) = g / |g|), so every tensor's largest change is 1e-3.
    // That shows both that the weights were read (a fresh init differs by about 0.02) and that
    // they still train. BatchNorm's running statistics follow the batch instead.
    let second = tempfile::tempdir().unwrap();
    let init_from = format!(
        "--max-steps 1 --lr 1e-3 --init-from {} --init-from discriminator={}",
        generator_file.display(),
        discriminator_file.display(),
    );
    let output = run_ok("dcgan", &flags_into(second.path(), &init_from));
    assert!(output.contains("generator initialised from"), "{output}");
    assert!(
        output.contains("discriminator initialised from"),
        "{output}"
    );
    run_ok(
        "dcgan",
        &format!("export --from {}", second.path().display()),
    );
    for network in ["generator", "discriminator"] {
        let before = safetensors(&first.path().join(format!("export/{network}.safetensors")));
        let after = safetensors(&second.path().join(format!("export/{network}.safetensors")));
        for (name, values) in before.iter().filter(|(name, _)| !name.contains("running_")) {
            let change = values
                .iter()
                .zip(&after[name])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                (0.9e-3..1.1e-3).contains(&change),
                "{network}.{name} moved by {change}, not by the learning rate"
            );
        }
    }

    // A file that is not the network's: a clean error naming the flag and the file.
    let failed = run(
        "dcgan",
        &format!(
            "--backend flex --max-steps 1 --init-from {} --out {}",
            discriminator_file.display(),
            tempfile::tempdir().unwrap().path().display()
        ),
    );
    assert_clean_failure(
        &failed,
        &["--init-from", "discriminator.safetensors", "lacks"],
    );
}
