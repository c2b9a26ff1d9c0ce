//! Every kernel against burn's own composition of the same function: forward pass and the
//! gradient of every input, on random inputs (drawn from a fixed seed), for the exact layers of
//! the project's networks and for odd sizes, on flex (the kernels) and ndarray (burn's ops
//! through the extension's routing); the normalisations and Adam's step also on wgpu (CubeCL
//! kernels), where an adapter exists (lavapipe counts; `GENMODELS_REQUIRE_WGPU=1`, set in CI,
//! makes a missing one a failure).
//!
//! Tolerance: the norm-wise relative error ‖ours − burn‖₂ / ‖burn‖₂ must stay below 1e-5 for
//! every output and gradient. Both sides are f32 sums of up to a few thousand products taken in
//! different orders; element-wise relative error is meaningless where a sum cancels to near 0.

use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::module::{conv_transpose2d, conv2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use genmodels_kernels::Activation;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TOLERANCE: f64 = 1e-5;

fn devices() -> Vec<(&'static str, Device)> {
    #[allow(deprecated)] // ndarray stays for comparisons
    let ndarray = Device::ndarray();
    vec![("flex", Device::flex()), ("ndarray", ndarray)]
}

/// [`devices`] and, where a wgpu adapter exists, wgpu: the backends with kernels of their own
/// for the normalisations and Adam's step.
fn kernel_devices() -> Vec<(&'static str, Device)> {
    use burn::tensor::wgpu::wgpu;
    let mut devices = devices();
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = wgpu::Backends::PRIMARY;
    let instance = wgpu::Instance::new(descriptor);
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    if adapters.is_empty() {
        assert!(
            std::env::var("GENMODELS_REQUIRE_WGPU").is_err(),
            "GENMODELS_REQUIRE_WGPU is set but no wgpu adapter exists"
        );
        eprintln!("skipping wgpu: no adapter on this machine");
    } else {
        devices.push((
            "wgpu",
            Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
        ));
    }
    devices
}

fn values(data: TensorData) -> Vec<f64> {
    data.convert::<f64>().try_to_vec::<f64>().expect("f64 data")
}

fn assert_close<const D: usize>(what: &str, ours: Tensor<D>, reference: Tensor<D>) {
    assert_data_close(what, ours.into_data(), reference.into_data());
}

fn assert_data_close(what: &str, ours: TensorData, reference: TensorData) {
    assert_eq!(ours.shape(), reference.shape(), "{what}: shapes");
    let (a, b) = (values(ours), values(reference));
    let diff: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    let error = diff / norm.max(1e-30);
    assert!(
        error <= TOLERANCE,
        "{what}: relative error {error:.2e} above {TOLERANCE:.0e}"
    );
}

/// An output or a gradient of a run, with its name.
type Named = (&'static str, TensorData);

/// Checks each result of the kernels (`run(true)`) against burn's (`run(false)`), in order.
fn compare_runs(what: impl Fn(&str) -> String, run: impl Fn(bool) -> Vec<Named>) {
    let (ours, reference) = (run(true), run(false));
    assert_eq!(ours.len(), reference.len(), "{}", what("number of results"));
    for ((name, ours), (_, reference)) in ours.into_iter().zip(reference) {
        assert_data_close(&what(name), ours, reference);
    }
}

thread_local! {
    /// The draws of one check, from a fixed seed ([`reseed`]): the inputs are the same on every
    /// device and at every run, so that a check on them (as [`assert_clear_of_kinks`]) holds at
    /// every run.
    static DRAWS: std::cell::RefCell<StdRng> = std::cell::RefCell::new(StdRng::seed_from_u64(SEED));
}

const SEED: u64 = 15;

/// Starts the draws of a check afresh.
fn reseed() {
    DRAWS.set(StdRng::seed_from_u64(SEED));
}

/// A tensor of standard normal values (Box–Muller), the same values on every device and at
/// every run.
fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    let count = shape.iter().product();
    let values: Vec<f32> = DRAWS.with_borrow_mut(|rng| {
        (0..count)
            .map(|_| {
                let (u, v): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect()
    });
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Asserts that no value of `pre`, what an activation with a kink at 0 (ReLU, LeakyReLU) reads,
/// lies within 1e-5 of the kink. The two sides compute these values (of magnitude up to about
/// 5) in different orders, at most about 1e-6 apart in f32; a value nearer 0 than that may fall
/// on different sides of the kink, where the gradients legitimately differ. With fixed draws
/// this holds at every run or at none.
fn assert_clear_of_kinks<const D: usize>(what: &str, pre: Tensor<D>) {
    let nearest = values(pre.into_data())
        .into_iter()
        .map(f64::abs)
        .fold(f64::INFINITY, f64::min);
    assert!(
        nearest >= 1e-5,
        "{what}: a value {nearest:.1e} from the kink; draw others"
    );
}

/// `[y, dL/dx, dL/dw, dL/db]` (the last only with a bias) for `L = Σ y · r` with a fixed random
/// `r`.
fn forward_and_grads(
    inputs: (&Tensor<4>, &Tensor<4>, Option<&Tensor<1>>),
    r: &Tensor<4>,
    op: impl Fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>) -> Tensor<4>,
) -> Vec<Named> {
    let x = inputs.0.clone().autodiff().require_grad();
    let w = inputs.1.clone().autodiff().require_grad();
    let b = inputs.2.map(|b| b.clone().autodiff().require_grad());
    let y = op(x.clone(), w.clone(), b.clone());
    let grads = (y.clone() * r.clone().autodiff()).sum().backward();
    let dx = x.grad(&grads).expect("input gradient");
    let dw = w.grad(&grads).expect("weight gradient");
    let mut results = vec![
        ("output", y.inner().into_data()),
        ("input gradient", dx.into_data()),
        ("weight gradient", dw.into_data()),
    ];
    results.extend(b.map(|b| {
        (
            "bias gradient",
            b.grad(&grads).expect("bias gradient").into_data(),
        )
    }));
    results
}

struct ConvCase {
    name: &'static str,
    batch: usize,
    channels: [usize; 2],
    image: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [(usize, usize); 2],
    bias: bool,
}

fn conv_cases() -> Vec<ConvCase> {
    let case = |name, batch, channels, image, kernel, stride, padding, bias| ConvCase {
        name,
        batch,
        channels,
        image,
        kernel,
        stride,
        padding,
        bias,
    };
    vec![
        // The DCGAN / WGAN / VAE discriminators and encoders.
        case(
            "dcgan-d1",
            4,
            [1, 64],
            [28, 28],
            [4, 4],
            [2, 2],
            [(1, 1); 2],
            true,
        ),
        case(
            "dcgan-d2",
            4,
            [64, 128],
            [14, 14],
            [4, 4],
            [2, 2],
            [(1, 1); 2],
            false,
        ),
        // The U-Net: 3x3 same convolutions (at 28x28 the shifted-GEMM form, below it the
        // channels-last patch matrix), 1x1 skips, strided downsampling.
        case(
            "unet-3x3-28",
            2,
            [32, 32],
            [28, 28],
            [3, 3],
            [1, 1],
            [(1, 1); 2],
            true,
        ),
        case(
            "unet-3x3",
            3,
            [32, 64],
            [14, 14],
            [3, 3],
            [1, 1],
            [(1, 1); 2],
            true,
        ),
        case(
            "unet-1x1",
            3,
            [64, 32],
            [7, 7],
            [1, 1],
            [1, 1],
            [(0, 0); 2],
            true,
        ),
        case(
            "unet-down",
            3,
            [32, 32],
            [28, 28],
            [3, 3],
            [2, 2],
            [(1, 1); 2],
            true,
        ),
        // Stride 1 with enough channels for the shifted-GEMM form: uneven kernel, odd sides,
        // padding that differs before and after.
        case(
            "odd-stride1",
            2,
            [17, 19],
            [9, 6],
            [3, 5],
            [1, 1],
            [(2, 0), (1, 3)],
            true,
        ),
        // The strided sums over channels-last pixels: odd sides, 4x4 at stride 2.
        case(
            "strided-odd",
            3,
            [16, 24],
            [9, 7],
            [4, 4],
            [2, 2],
            [(1, 1), (2, 0)],
            true,
        ),
        // Odd sizes: uneven kernel, stride 3, asymmetric padding, one sample.
        case(
            "odd",
            1,
            [3, 5],
            [11, 8],
            [5, 3],
            [3, 1],
            [(2, 1), (0, 2)],
            true,
        ),
    ]
}

#[test]
fn conv2d_and_its_gradients_match_burn() {
    for (device_name, device) in devices() {
        for case in conv_cases() {
            let [c_in, c_out] = case.channels;
            let [kh, kw] = case.kernel;
            let x = random([case.batch, c_in, case.image[0], case.image[1]], &device);
            let w = random([c_out, c_in, kh, kw], &device);
            let b = case.bias.then(|| random([c_out], &device));
            let options = ConvOptions::new_with_padding(case.stride, case.padding, [1, 1], 1);
            let probe = conv2d(x.clone(), w.clone(), b.clone(), options.clone());
            let r = random(probe.dims(), &device);
            let what = |t: &str| format!("conv2d {} on {device_name}: {t}", case.name);
            compare_runs(what, |ours| {
                forward_and_grads((&x, &w, b.as_ref()), &r, |x, w, b| match ours {
                    true => genmodels_kernels::conv2d(x, w, b, options.clone()),
                    false => conv2d(x, w, b, options.clone()),
                })
            });
        }
    }
}

#[test]
fn conv_transpose2d_and_its_gradients_match_burn() {
    // (name, batch, [c_in, c_out], input side, kernel, stride, padding, padding_out, bias)
    let cases = [
        ("dcgan-g1", 4, [256, 128], [7, 7], 4, 2, 1, 0, false),
        ("dcgan-g2", 4, [128, 1], [14, 14], 4, 2, 1, 0, true),
        ("vae-up", 3, [64, 32], [7, 7], 4, 2, 1, 0, true),
        ("odd", 2, [3, 5], [5, 6], 3, 3, 1, 2, true),
        ("stride1", 2, [4, 2], [6, 5], 3, 1, 0, 0, true),
        ("stride1-wide", 2, [18, 20], [6, 5], 3, 1, 1, 0, true),
        // The strided sums by phases: odd sides and an output padding no input reaches.
        ("strided-wide", 3, [16, 20], [5, 6], 4, 2, 1, 1, true),
    ];
    for (device_name, device) in devices() {
        for (name, batch, [c_in, c_out], [h, w_side], k, s, p, op, bias) in cases {
            let x = random([batch, c_in, h, w_side], &device);
            let w = random([c_in, c_out, k, k], &device);
            let b = bias.then(|| random([c_out], &device));
            let options = ConvTransposeOptions::new([s, s], [p, p], [op, op], [1, 1], 1);
            let probe = conv_transpose2d(x.clone(), w.clone(), b.clone(), options.clone());
            let r = random(probe.dims(), &device);
            let what = |t: &str| format!("conv_transpose2d {name} on {device_name}: {t}");
            compare_runs(what, |ours| {
                forward_and_grads((&x, &w, b.as_ref()), &r, |x, w, b| match ours {
                    true => genmodels_kernels::conv_transpose2d(x, w, b, options.clone()),
                    false => conv_transpose2d(x, w, b, options.clone()),
                })
            });
        }
    }
}

/// burn's composition: `batch_norm_train`, then the activation as separate ops.
fn reference_batch_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    activation: Activation,
) -> (Tensor<D>, Tensor<1>, Tensor<1>) {
    let result = burn::tensor::module::batch_norm_train(x, gamma, beta, 1e-5);
    let output = match activation {
        Activation::Identity => result.output,
        Activation::Relu => burn::tensor::activation::relu(result.output),
        Activation::LeakyRelu(slope) => burn::tensor::activation::leaky_relu(result.output, slope),
        Activation::Silu => burn::tensor::activation::silu(result.output),
        Activation::Tanh => burn::tensor::activation::tanh(result.output),
    };
    (output, result.mean, result.variance)
}

fn check_batch_norm<const D: usize>(device_name: &str, device: &Device, shape: [usize; D]) {
    reseed();
    let channels = shape[1];
    let x = random(shape, device).mul_scalar(2.0).add_scalar(0.5);
    let gamma = random([channels], device).add_scalar(1.0);
    let beta = random([channels], device);
    let r = random(shape, device);
    let (pre, ..) =
        reference_batch_norm(x.clone(), gamma.clone(), beta.clone(), Activation::Identity);
    assert_clear_of_kinks(&format!("batch norm {shape:?} on {device_name}"), pre);
    for activation in [
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu(0.2),
        Activation::Silu,
    ] {
        let run = |fused: bool| {
            let x = x.clone().autodiff().require_grad();
            let g = gamma.clone().autodiff().require_grad();
            let b = beta.clone().autodiff().require_grad();
            let (y, mean, var) = if fused {
                let out = genmodels_kernels::batch_norm_train(
                    x.clone(),
                    g.clone(),
                    b.clone(),
                    1e-5,
                    activation,
                );
                (out.output, out.mean, out.variance)
            } else {
                reference_batch_norm(x.clone(), g.clone(), b.clone(), activation)
            };
            let grads = (y.clone() * r.clone().autodiff()).sum().backward();
            vec![
                ("output", y.inner().into_data()),
                ("mean", mean.inner().into_data()),
                ("variance", var.inner().into_data()),
                ("input gradient", x.grad(&grads).unwrap().into_data()),
                ("gamma gradient", g.grad(&grads).unwrap().into_data()),
                ("beta gradient", b.grad(&grads).unwrap().into_data()),
            ]
        };
        let what = |t: &str| format!("batch norm {shape:?} {activation:?} on {device_name}: {t}");
        compare_runs(what, run);
    }
}

#[test]
fn batch_norm_and_its_gradients_match_burn() {
    for (device_name, device) in kernel_devices() {
        // After the DCGAN generator's projection (2-D, many features) and after convolutions.
        check_batch_norm(device_name, &device, [16, 784]);
        check_batch_norm(device_name, &device, [8, 128, 7, 7]);
        check_batch_norm(device_name, &device, [3, 5, 4, 6]);
        check_batch_norm(device_name, &device, [9, 3, 5]);
    }
}

#[test]
fn layers_give_the_modules_own_results() {
    use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
    use burn::nn::{BatchNormConfig, PaddingConfig2d};
    let device = Device::flex();
    let x = random([2, 3, 9, 8], &device);
    for padding in [
        PaddingConfig2d::Same,
        PaddingConfig2d::Valid,
        PaddingConfig2d::Explicit(1, 0, 2, 1),
    ] {
        let conv = Conv2dConfig::new([3, 4], [4, 3])
            .with_stride([2, 1])
            .with_padding(padding.clone())
            .init(&device);
        assert_close(
            &format!("Conv2d {padding:?}"),
            genmodels_kernels::nn::conv2d(&conv, x.clone()),
            conv.forward(x.clone()),
        );
    }
    let up = ConvTranspose2dConfig::new([3, 2], [4, 4])
        .with_stride([2, 2])
        .with_padding([1, 1])
        .init(&device);
    assert_close(
        "ConvTranspose2d",
        genmodels_kernels::nn::conv_transpose2d(&up, x.clone()),
        up.forward(x.clone()),
    );

    // BatchNorm in training: same output and the same running statistics afterwards.
    let train = device.autodiff();
    let x = x.autodiff();
    let norm = BatchNormConfig::new(3).init(&train);
    let ours = genmodels_kernels::nn::batch_norm(&norm, x.clone(), Activation::Relu);
    let ours_running = norm.running_mean.value();
    let norm = BatchNormConfig::new(3).init(&train);
    let reference = burn::tensor::activation::relu(norm.forward(x));
    assert_close("BatchNorm output", ours.inner(), reference.inner());
    assert_close(
        "BatchNorm running mean",
        ours_running.inner(),
        norm.running_mean.value().inner(),
    );
}

fn check_group_norm(device_name: &str, device: &Device, shape: [usize; 4], groups: usize) {
    reseed();
    use burn::module::Param;
    use burn::nn::GroupNormConfig;
    let channels = shape[1];
    let x = random(shape, device).mul_scalar(1.5).add_scalar(-0.3);
    let gamma = random([channels], device).add_scalar(1.0);
    let beta = random([channels], device);
    let r = random(shape, device);
    let mut reference = GroupNormConfig::new(groups, channels).init(device);
    reference.gamma = Some(Param::from_tensor(gamma.clone()));
    reference.beta = Some(Param::from_tensor(beta.clone()));
    let what = format!("group norm {shape:?}/{groups} on {device_name}");
    assert_clear_of_kinks(&what, reference.forward(x.clone()));
    for activation in [Activation::Identity, Activation::Silu, Activation::Relu] {
        let run = |fused: bool| {
            let train = device.clone().autodiff();
            let mut norm = GroupNormConfig::new(groups, channels).init(&train);
            norm.gamma = Some(Param::from_tensor(gamma.clone().autodiff()));
            norm.beta = Some(Param::from_tensor(beta.clone().autodiff()));
            let x = x.clone().autodiff().require_grad();
            let y = if fused {
                genmodels_kernels::nn::group_norm(&norm, x.clone(), activation)
            } else {
                let y = norm.forward(x.clone());
                match activation {
                    Activation::Silu => burn::tensor::activation::silu(y),
                    Activation::Relu => burn::tensor::activation::relu(y),
                    _ => y,
                }
            };
            let grads = (y.clone() * r.clone().autodiff()).sum().backward();
            let param_grad = |p: &Option<Param<Tensor<1>>>| {
                let grad = p.as_ref().unwrap().val().grad(&grads).unwrap();
                grad.into_data()
            };
            vec![
                ("output", y.inner().into_data()),
                ("input gradient", x.grad(&grads).unwrap().into_data()),
                ("gamma gradient", param_grad(&norm.gamma)),
                ("beta gradient", param_grad(&norm.beta)),
            ]
        };
        let what =
            |t: &str| format!("group norm {shape:?}/{groups} {activation:?} on {device_name}: {t}");
        compare_runs(what, run);
    }
}

#[test]
fn group_norm_and_its_gradients_match_burn() {
    for (device_name, device) in kernel_devices() {
        // The U-Net's residual blocks and attention (8 groups), and odd sizes.
        check_group_norm(device_name, &device, [4, 64, 14, 14], 8);
        check_group_norm(device_name, &device, [3, 128, 7, 7], 8);
        check_group_norm(device_name, &device, [2, 6, 5, 3], 3);
    }
}

/// `[y, dL/dx, dL/dw, dL/db]` of `L = Σ y · r` for `y = linear(x, w, b)`, through the kernels or
/// burn's `linear`.
fn linear_results<const D: usize>(
    (x, w, b): (&Tensor<D>, &Tensor<2>, &Tensor<1>),
    r: &Tensor<D>,
    ours: bool,
) -> Vec<Named> {
    let x = x.clone().autodiff().require_grad();
    let w = w.clone().autodiff().require_grad();
    let b = b.clone().autodiff().require_grad();
    let y = match ours {
        true => genmodels_kernels::linear(x.clone(), w.clone(), Some(b.clone())),
        false => burn::tensor::module::linear(x.clone(), w.clone(), Some(b.clone())),
    };
    let grads = (y.clone() * r.clone().autodiff()).sum().backward();
    vec![
        ("output", y.inner().into_data()),
        ("input gradient", x.grad(&grads).expect("input").into_data()),
        (
            "weight gradient",
            w.grad(&grads).expect("weight").into_data(),
        ),
        ("bias gradient", b.grad(&grads).expect("bias").into_data()),
    ]
}

fn check_linear<const D: usize>(
    device_name: &str,
    device: &Device,
    x_dims: [usize; D],
    d_out: usize,
) {
    reseed();
    let d_in = x_dims[D - 1];
    let x = random(x_dims, device);
    let w = random([d_in, d_out], device).mul_scalar(1.0 / (d_in as f64).sqrt());
    let b = random([d_out], device);
    let mut y_dims = x_dims;
    y_dims[D - 1] = d_out;
    let r = random(y_dims, device);
    let what = |t: &str| format!("linear {x_dims:?} -> {d_out} on {device_name}: {t}");
    compare_runs(what, |ours| linear_results((&x, &w, &b), &r, ours));
}

#[test]
fn linear_and_its_gradients_match_burn() {
    for (device_name, device) in devices() {
        // The VAE's hidden layers, the DCGAN generator's projection and discriminator head,
        // attention's projections over tokens (3-D), and odd sizes.
        check_linear(device_name, &device, [16, 3136], 256);
        check_linear(device_name, &device, [16, 256], 3136);
        check_linear(device_name, &device, [8, 100], 12544);
        check_linear(device_name, &device, [8, 6272], 1);
        check_linear(device_name, &device, [2, 49, 128], 384);
        check_linear(device_name, &device, [3, 5, 7], 11);
        check_linear(device_name, &device, [1, 1], 1);
    }
}

/// The gradients of a product whose operands are themselves transposed views: the backward pass
/// reads its operands through transpose flags, which this exercises on both sides.
#[test]
fn matmul_of_transposed_views_matches_burn() {
    for (device_name, device) in devices() {
        let a = random([7, 5], &device);
        let b = random([6, 7], &device);
        let r = random([5, 6], &device);
        let run = |ours: bool| {
            let a = a.clone().autodiff().require_grad();
            let b = b.clone().autodiff().require_grad();
            let (lhs, rhs) = (a.clone().transpose(), b.clone().transpose()); // [5, 7], [7, 6]
            let y = match ours {
                true => genmodels_kernels::matmul(lhs, rhs),
                false => lhs.matmul(rhs),
            };
            let grads = (y.clone() * r.clone().autodiff()).sum().backward();
            vec![
                ("output", y.inner().into_data()),
                ("lhs gradient", a.grad(&grads).expect("lhs").into_data()),
                ("rhs gradient", b.grad(&grads).expect("rhs").into_data()),
            ]
        };
        compare_runs(
            |t: &str| format!("matmul of transposes on {device_name}: {t}"),
            run,
        );
    }
}

#[test]
fn activations_and_their_gradients_match_burn() {
    for (device_name, device) in devices() {
        // After the DCGAN discriminator's first convolution, a hidden layer, and odd sizes.
        for shape in [[16, 64, 14, 14], [3, 256, 1, 1], [2, 3, 5, 7]] {
            let x = random(shape, &device);
            let r = random(shape, &device);
            for activation in [
                Activation::Relu,
                Activation::LeakyRelu(0.2),
                Activation::Silu,
                Activation::Tanh,
            ] {
                let run = |ours: bool| {
                    let x = x.clone().autodiff().require_grad();
                    let y = match (ours, activation) {
                        (true, _) => genmodels_kernels::activate(x.clone(), activation),
                        (false, Activation::Relu) => burn::tensor::activation::relu(x.clone()),
                        (false, Activation::LeakyRelu(slope)) => {
                            burn::tensor::activation::leaky_relu(x.clone(), slope)
                        }
                        (false, Activation::Tanh) => burn::tensor::activation::tanh(x.clone()),
                        (false, _) => burn::tensor::activation::silu(x.clone()),
                    };
                    let grads = (y.clone() * r.clone().autodiff()).sum().backward();
                    vec![
                        ("output", y.inner().into_data()),
                        ("input gradient", x.grad(&grads).expect("input").into_data()),
                    ]
                };
                let what = |t: &str| format!("{activation:?} on {shape:?} on {device_name}: {t}");
                compare_runs(what, run);
            }
        }
    }
}

/// Three Adam steps with weight decay, against the update written out in burn's tensor ops
/// (Kingma & Ba's Algorithm 1 with the bias corrections folded into the step size, as burn's Adam
/// folds them).
#[test]
fn adam_steps_match_the_update_written_out() {
    use genmodels_kernels::{AdamStep, adam_step};
    for (device_name, device) in kernel_devices() {
        reseed();
        let shape = [37, 29];
        let (mut param, mut m, mut v) = (random(shape, &device), None, None);
        let mut expected = param.clone();
        let (mut expected_m, mut expected_v) = (
            Tensor::<2>::zeros(shape, &device),
            Tensor::<2>::zeros(shape, &device),
        );
        for time in 1..=3 {
            let grad = random(shape, &device);
            let step = AdamStep {
                learning_rate: 0.01,
                beta_1: 0.5,
                beta_2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.1,
                time,
            };
            let zeros = || Tensor::<2>::zeros(shape, &device);
            let (p, m1, m2) = adam_step(
                param,
                grad.clone(),
                m.unwrap_or_else(zeros),
                v.unwrap_or_else(zeros),
                step,
            );
            (param, m, v) = (p, Some(m1), Some(m2));

            let g = grad + expected.clone().mul_scalar(0.1);
            expected_m = expected_m.mul_scalar(0.5) + g.clone().mul_scalar(0.5);
            // 1 − β₂ of the f32 β₂ the step takes (0.999 is not one).
            let one_minus_beta_2 = 1.0 - 0.999f32;
            expected_v =
                expected_v.mul_scalar(0.999) + (g.clone() * g).mul_scalar(one_minus_beta_2);
            let bias_1 = 1.0 - 0.5f64.powi(time as i32);
            let bias_2 = 1.0 - 0.999f64.powi(time as i32);
            let m_hat = expected_m.clone().div_scalar(bias_1);
            let v_hat = expected_v.clone().div_scalar(bias_2);
            // ε·√(1 − β₂ᵗ) on √v is ε on √v̂: the same step.
            expected = expected - (m_hat / (v_hat.sqrt().add_scalar(1e-8))).mul_scalar(0.01);
            let what = |t: &str| format!("Adam step {time} on {device_name}: {t}");
            assert_close(&what("parameter"), param.clone(), expected.clone());
            assert_close(
                &what("first moment"),
                m.clone().unwrap(),
                expected_m.clone(),
            );
            assert_close(
                &what("second moment"),
                v.clone().unwrap(),
                expected_v.clone(),
            );
        }
    }
}
