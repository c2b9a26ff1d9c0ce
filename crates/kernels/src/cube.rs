//! The normalisations (with the activation after them) and Adam's step as CubeCL kernels, for
//! every GPU runtime burn reaches through CubeCL (wgpu, and CUDA or ROCm where they build).
//!
//! burn composes BatchNorm out of about ten tensor passes forward and fifteen backward, GroupNorm
//! out of a dozen, and Adam's update out of another dozen; fusion merges the element-wise ones
//! but not the reductions between them. Here each normalisation is one kernel forward (a cube per
//! row of statistics: the sum, the squared deviations, then the output) and two or three backward
//! (the sums of each row for x, which for BatchNorm's rows, its channels, are also those for γ
//! and β; GroupNorm's sums for γ and β over the channels; then the input gradient), and Adam's step
//! one element-wise kernel. Convolutions and matrix products stay burn's: CubeCL's implicit-GEMM
//! kernels are autotuned per device and use the tensor cores where the runtime exposes them.
//!
//! A normalisation's elements are addressed through *rows*: row `r` holds `count` elements, in
//! runs of `run` consecutive elements `run_stride` apart, starting at `r · row_stride`. GroupNorm's
//! rows (one per sample and group) are contiguous: `row_stride = run = count = channels / groups ·
//! spatial`. A channel's elements (BatchNorm's rows, and GroupNorm's sums for γ and β) are one run
//! of `spatial` elements per sample: `row_stride = run = spatial`, `run_stride = channels ·
//! spatial`, `count = batch · spatial`.

use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeCount, CubeDim, calculate_cube_count_elemwise};

use crate::Activation;
use crate::backend::{AdamUpdate, KernelBackend, NormKind, NormStats, Normalization};
use crate::fallback;

/// Units per cube of the row kernels: a power of two, for the tree reduction, and the length
/// of its shared memory (a literal in the kernels).
const ROW_CUBE: u32 = 256;

/// The most cubes along one axis of a launch (the limit of WebGPU and Vulkan).
const MAX_CUBES_PER_AXIS: usize = 65_535;

impl KernelBackend for CubeBackend {
    /// The CubeCL kernels for f32 tensors; burn's composition for every other dtype.
    fn kernel_norm(norm: Normalization<Self>) -> (FloatTensor<Self>, NormStats<Self>) {
        match norm.x.dtype {
            DType::F32 => Norm::new(norm).forward(),
            _ => fallback::norm::<Self>(norm),
        }
    }

    fn kernel_norm_backward(
        norm: Normalization<Self>,
        stats: NormStats<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        match norm.x.dtype {
            DType::F32 => Norm::new(norm).backward(stats, output_grad),
            _ => fallback::norm_backward::<Self>(norm, stats, output_grad),
        }
    }

    fn kernel_adam_step(
        update: AdamUpdate<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        match update.param.dtype {
            DType::F32 => adam_step(update),
            _ => fallback::adam_step::<Self>(update),
        }
    }
}

/// `act(z)`, the activation as a code and a slope (for LeakyReLU).
#[cube]
fn activate(z: f32, activation: u32, slope: f32) -> f32 {
    let mut y = z;
    if activation == ACTIVATION_RELU {
        y = f32::max(z, 0.0);
    } else if activation == ACTIVATION_LEAKY_RELU {
        if z <= 0.0 {
            y = z * slope;
        }
    } else if activation == ACTIVATION_SILU {
        y = z / (1.0 + f32::exp(-z));
    } else if activation == ACTIVATION_TANH {
        y = f32::tanh(z);
    }
    y
}

/// `act'(z)`, the left derivative at the kinks (as [`fallback::activation_backward`]).
#[cube]
fn activation_derivative(z: f32, activation: u32, slope: f32) -> f32 {
    let mut derivative = 1.0;
    if activation == ACTIVATION_RELU {
        if z <= 0.0 {
            derivative = 0.0;
        }
    } else if activation == ACTIVATION_LEAKY_RELU {
        if z <= 0.0 {
            derivative = slope;
        }
    } else if activation == ACTIVATION_SILU {
        let s = 1.0 / (1.0 + f32::exp(-z));
        derivative = s * (1.0 + z * (1.0 - s));
    } else if activation == ACTIVATION_TANH {
        let t = f32::tanh(z);
        derivative = 1.0 - t * t;
    }
    derivative
}

const ACTIVATION_IDENTITY: u32 = 0;
const ACTIVATION_RELU: u32 = 1;
const ACTIVATION_LEAKY_RELU: u32 = 2;
const ACTIVATION_SILU: u32 = 3;
const ACTIVATION_TANH: u32 = 4;

/// The activation as the kernels take it: a code and LeakyReLU's slope.
fn activation_code(activation: Activation) -> (u32, f32) {
    match activation {
        Activation::Identity => (ACTIVATION_IDENTITY, 0.0),
        Activation::Relu => (ACTIVATION_RELU, 0.0),
        Activation::LeakyRelu(slope) => (ACTIVATION_LEAKY_RELU, slope as f32),
        Activation::Silu => (ACTIVATION_SILU, 0.0),
        Activation::Tanh => (ACTIVATION_TANH, 0.0),
    }
}

/// The sum of every unit's `value` over the cube, returned to every unit. A tree in shared
/// memory rather than plane (warp) operations, which not every runtime has.
#[cube]
fn cube_sum(shared: &mut Shared<[f32]>, value: f32) -> f32 {
    let unit = UNIT_POS_X as usize;
    shared[unit] = value;
    sync_cube();
    let mut stride = CUBE_DIM_X as usize / 2;
    while stride > 0 {
        if unit < stride {
            shared[unit] += shared[unit + stride];
        }
        sync_cube();
        stride /= 2;
    }
    let total = shared[0];
    // Every unit reads the total before the memory is written again.
    sync_cube();
    total
}

/// How a launch over rows walks its elements (see the module's documentation), as the kernels
/// take it.
#[derive(CubeLaunch, CubeType)]
struct RowWalk {
    rows: u32,
    row_stride: u32,
    run: u32,
    run_stride: u32,
    count: u32,
}

/// The index of the `i`-th element of the row that starts at `base`.
#[cube]
fn row_element(walk: &RowWalk, base: usize, i: usize) -> usize {
    let run = walk.run as usize;
    base + (i / run) * walk.run_stride as usize + i % run
}

/// A normalisation's shape and settings, as the kernels take them.
#[derive(CubeLaunch, CubeType)]
struct NormSettings {
    /// The product of the axes after the channels.
    spatial: u32,
    channels: u32,
    /// The elements of a sample's group (GroupNorm).
    group_len: u32,
    /// The elements of a row of statistics.
    count: u32,
    epsilon: f32,
    activation: u32,
    slope: f32,
    /// 1 for BatchNorm (statistics per channel), 0 for GroupNorm.
    per_channel: u32,
}

/// The channel of element `index`.
#[cube]
fn channel_of(norm: &NormSettings, index: usize) -> usize {
    (index / norm.spatial as usize) % norm.channels as usize
}

/// What the backward pass recomputes at one element: its row of statistics, `1 / √(σ² + ε)`,
/// the normalised input `x̂`, its channel's `γ_c`, and `g = dy · act'(z)` at the pre-activation
/// `z = γ_c x̂ + β_c`.
#[derive(CubeType)]
struct GradientTerms {
    statistics_row: usize,
    inv_std: f32,
    xhat: f32,
    gamma: f32,
    g: f32,
}

#[cube]
#[allow(clippy::too_many_arguments)]
fn gradient_terms(
    index: usize,
    x: &Tensor<f32>,
    output_grad: &Tensor<f32>,
    gamma: &Tensor<f32>,
    beta: &Tensor<f32>,
    mean: &Tensor<f32>,
    spread: &Tensor<f32>,
    norm: &NormSettings,
) -> GradientTerms {
    // A channel's statistics for BatchNorm; its sample's and group's for GroupNorm, where
    // `spread` holds 1 / √(σ² + ε) itself rather than σ².
    let channel = channel_of(norm, index);
    let mut statistics_row = index / norm.group_len as usize;
    if norm.per_channel == 1 {
        statistics_row = channel;
    }
    let mut inv_std = spread[statistics_row];
    if norm.per_channel == 1 {
        inv_std = 1.0 / f32::sqrt(inv_std + norm.epsilon);
    }
    let xhat = (x[index] - mean[statistics_row]) * inv_std;
    let z = gamma[channel] * xhat + beta[channel];
    let derivative = activation_derivative(z, norm.activation, norm.slope);
    GradientTerms {
        statistics_row,
        inv_std,
        xhat,
        gamma: gamma[channel],
        g: output_grad[index] * derivative,
    }
}

/// One cube per row: the mean, the biased variance (two passes, as burn takes them), then the
/// output `act(γ_c (x − μ) / √(σ² + ε) + β_c)`. Stores the mean and the spread (the variance
/// for BatchNorm, `1 / √(σ² + ε)` for GroupNorm).
#[cube(launch)]
fn norm_forward_kernel(
    x: &Tensor<f32>,
    gamma: &Tensor<f32>,
    beta: &Tensor<f32>,
    output: &mut Tensor<f32>,
    mean_out: &mut Tensor<f32>,
    spread_out: &mut Tensor<f32>,
    walk: RowWalk,
    norm: NormSettings,
) {
    let row = CUBE_POS;
    if row >= walk.rows as usize {
        terminate!();
    }
    let mut shared = Shared::<[f32]>::new_slice(256usize);
    let count = walk.count as usize;
    let base = row * walk.row_stride as usize;
    let step = CUBE_DIM_X as usize;
    let n = f32::cast_from(count);

    let mut sum = 0.0f32;
    let mut i = UNIT_POS_X as usize;
    while i < count {
        sum += x[row_element(&walk, base, i)];
        i += step;
    }
    let mean = cube_sum(&mut shared, sum) / n;

    let mut squares = 0.0f32;
    let mut i = UNIT_POS_X as usize;
    while i < count {
        let centred = x[row_element(&walk, base, i)] - mean;
        squares += centred * centred;
        i += step;
    }
    let variance = cube_sum(&mut shared, squares) / n;
    let inv_std = 1.0 / f32::sqrt(variance + norm.epsilon);
    if UNIT_POS_X == 0 {
        mean_out[row] = mean;
        if norm.per_channel == 1 {
            spread_out[row] = variance;
        } else {
            spread_out[row] = inv_std;
        }
    }

    let mut i = UNIT_POS_X as usize;
    while i < count {
        let index = row_element(&walk, base, i);
        let channel = channel_of(&norm, index);
        let z = (x[index] - mean) * inv_std * gamma[channel] + beta[channel];
        output[index] = activate(z, norm.activation, norm.slope);
        i += step;
    }
}

/// One cube per row: with `g = dy · act'(z)` at the recomputed pre-activation `z` and the
/// normalised input `x̂`, the row's `Σ g`, `Σ g x̂`, `Σ γ_c g` and `Σ γ_c g x̂`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn norm_sums_kernel(
    x: &Tensor<f32>,
    output_grad: &Tensor<f32>,
    gamma: &Tensor<f32>,
    beta: &Tensor<f32>,
    mean: &Tensor<f32>,
    spread: &Tensor<f32>,
    sum_g: &mut Tensor<f32>,
    sum_g_xhat: &mut Tensor<f32>,
    sum_h: &mut Tensor<f32>,
    sum_h_xhat: &mut Tensor<f32>,
    walk: RowWalk,
    norm: NormSettings,
) {
    let row = CUBE_POS;
    if row >= walk.rows as usize {
        terminate!();
    }
    let mut shared = Shared::<[f32]>::new_slice(256usize);
    let count = walk.count as usize;
    let base = row * walk.row_stride as usize;
    let step = CUBE_DIM_X as usize;

    let mut g_sum = 0.0f32;
    let mut g_xhat_sum = 0.0f32;
    let mut h_sum = 0.0f32;
    let mut h_xhat_sum = 0.0f32;
    let mut i = UNIT_POS_X as usize;
    while i < count {
        let index = row_element(&walk, base, i);
        let terms = gradient_terms(index, x, output_grad, gamma, beta, mean, spread, &norm);
        let h = terms.gamma * terms.g;
        g_sum += terms.g;
        g_xhat_sum += terms.g * terms.xhat;
        h_sum += h;
        h_xhat_sum += h * terms.xhat;
        i += step;
    }
    let total_g = cube_sum(&mut shared, g_sum);
    let total_g_xhat = cube_sum(&mut shared, g_xhat_sum);
    let total_h = cube_sum(&mut shared, h_sum);
    let total_h_xhat = cube_sum(&mut shared, h_xhat_sum);
    if UNIT_POS_X == 0 {
        sum_g[row] = total_g;
        sum_g_xhat[row] = total_g_xhat;
        sum_h[row] = total_h;
        sum_h_xhat[row] = total_h_xhat;
    }
}

/// One unit per element: `dx = (h − mean(h) − x̂ mean(h x̂)) / σ` with `h = γ_c g` and the means
/// over the element's row of statistics.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn norm_input_grad_kernel(
    x: &Tensor<f32>,
    output_grad: &Tensor<f32>,
    gamma: &Tensor<f32>,
    beta: &Tensor<f32>,
    mean: &Tensor<f32>,
    spread: &Tensor<f32>,
    sum_h: &Tensor<f32>,
    sum_h_xhat: &Tensor<f32>,
    input_grad: &mut Tensor<f32>,
    norm: NormSettings,
) {
    let index = ABSOLUTE_POS;
    if index >= input_grad.len() {
        terminate!();
    }
    let terms = gradient_terms(index, x, output_grad, gamma, beta, mean, spread, &norm);
    let n = f32::cast_from(norm.count);
    let (row, h) = (terms.statistics_row, terms.gamma * terms.g);
    input_grad[index] = (h - sum_h[row] / n - terms.xhat * sum_h_xhat[row] / n) * terms.inv_std;
}

/// One unit per element: Adam's step as [`fallback::adam_step`] takes it.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adam_kernel(
    param: &Tensor<f32>,
    grad: &Tensor<f32>,
    moment_1: &Tensor<f32>,
    moment_2: &Tensor<f32>,
    param_out: &mut Tensor<f32>,
    moment_1_out: &mut Tensor<f32>,
    moment_2_out: &mut Tensor<f32>,
    len: u32,
    learning_rate: f32,
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: f32,
    second_correction: f32,
    first_factor: f32,
) {
    let index = ABSOLUTE_POS;
    if index >= len as usize {
        terminate!();
    }
    let g = grad[index] + weight_decay * param[index];
    let m = beta_1 * moment_1[index] + (1.0 - beta_1) * g;
    let v = beta_2 * moment_2[index] + (1.0 - beta_2) * (g * g);
    let update = (m * first_factor) / (f32::sqrt(v) + epsilon * second_correction);
    param_out[index] = param[index] - update * learning_rate;
    moment_1_out[index] = m;
    moment_2_out[index] = v;
}

/// How a launch over rows walks its elements (see the module's documentation).
#[derive(Debug, Clone, Copy)]
struct Rows {
    rows: usize,
    row_stride: usize,
    run: usize,
    run_stride: usize,
    count: usize,
}

impl Rows {
    /// A channel's elements of `[batch, channels, spatial]`, for each channel.
    fn per_channel(batch: usize, channels: usize, spatial: usize) -> Self {
        Self {
            rows: channels,
            row_stride: spatial,
            run: spatial,
            run_stride: channels * spatial,
            count: batch * spatial,
        }
    }

    /// Each sample's group of `group_len` consecutive elements.
    fn per_group(batch: usize, groups: usize, group_len: usize) -> Self {
        Self {
            rows: batch * groups,
            row_stride: group_len,
            run: group_len,
            run_stride: group_len,
            count: group_len,
        }
    }

    fn walk(&self) -> RowWalkLaunch {
        let [rows, row_stride, run, run_stride, count] = [
            self.rows,
            self.row_stride,
            self.run,
            self.run_stride,
            self.count,
        ]
        .map(|v| v as u32);
        RowWalkLaunch::new(rows, row_stride, run, run_stride, count)
    }

    /// One cube per row, on a grid that keeps each axis within the runtime's limits.
    fn cube_count(&self) -> CubeCount {
        let x = self.rows.min(MAX_CUBES_PER_AXIS);
        CubeCount::Static(x as u32, self.rows.div_ceil(x) as u32, 1)
    }
}

/// The cube of a launch over `rows`: a power of two of units, about a quarter of a row's
/// elements (so that short rows, such as BatchNorm's over 128 samples, leave few units idle), from
/// 32 (a warp) to [`ROW_CUBE`], within what the runtime allows.
fn row_cube_dim(tensor: &CubeTensor, rows: &Rows) -> CubeDim {
    let most = tensor
        .client
        .properties()
        .hardware
        .max_units_per_cube
        .max(1);
    let units = (rows.count / 4)
        .next_power_of_two()
        .clamp(32, ROW_CUBE as usize) as u32;
    CubeDim::new_1d(1 << units.min(most).ilog2())
}

/// `[batch, channels, ...]` as `(batch, channels, product of the rest)`.
fn split_shape(shape: &Shape) -> (usize, usize, usize) {
    let (batch, channels) = (shape[0], shape[1]);
    (batch, channels, shape.num_elements() / (batch * channels))
}

/// A normalisation's tensors on one device, contiguous, and its settings: what its kernels read.
struct Norm {
    x: CubeTensor,
    gamma: CubeTensor,
    beta: CubeTensor,
    kind: NormKind,
    activation: Activation,
}

impl Norm {
    fn new(norm: Normalization<CubeBackend>) -> Self {
        Self {
            x: into_contiguous(norm.x),
            gamma: into_contiguous(norm.gamma),
            beta: into_contiguous(norm.beta),
            kind: norm.kind,
            activation: norm.activation,
        }
    }

    /// `(batch, channels, spatial)`.
    fn dims(&self) -> (usize, usize, usize) {
        split_shape(self.x.meta.shape())
    }

    /// The rows of statistics (a channel's elements for BatchNorm, a sample's group for
    /// GroupNorm), and the shape of the statistics.
    fn statistics_rows(&self) -> (Rows, Shape) {
        let (batch, channels, spatial) = self.dims();
        match self.kind {
            NormKind::Batch { .. } => (
                Rows::per_channel(batch, channels, spatial),
                Shape::new([channels]),
            ),
            NormKind::Group { groups, .. } => (
                Rows::per_group(batch, groups, channels / groups * spatial),
                Shape::new([batch, groups]),
            ),
        }
    }

    fn settings(&self) -> NormSettingsLaunch {
        let (_, channels, spatial) = self.dims();
        let (rows, _) = self.statistics_rows();
        let (activation, slope) = activation_code(self.activation);
        NormSettingsLaunch::new(
            spatial as u32,
            channels as u32,
            // A sample's group, the row of GroupNorm's statistics (unread for BatchNorm).
            rows.row_stride as u32,
            rows.count as u32,
            self.kind.epsilon() as f32,
            activation,
            slope,
            matches!(self.kind, NormKind::Batch { .. }) as u32,
        )
    }

    /// An uninitialised f32 tensor of `shape` on the normalisation's device.
    fn empty(&self, shape: Shape) -> CubeTensor {
        let x = &self.x;
        empty_device_contiguous_dtype(x.client.clone(), x.device.clone(), shape, DType::F32)
    }

    fn forward(&self) -> (CubeTensor, NormStats<CubeBackend>) {
        let (rows, stats_shape) = self.statistics_rows();
        let output = self.empty(self.x.meta.shape().clone());
        let mean = self.empty(stats_shape.clone());
        let spread = self.empty(stats_shape);
        norm_forward_kernel::launch(
            &self.x.client,
            rows.cube_count(),
            row_cube_dim(&self.x, &rows),
            self.x.clone().into_tensor_arg(),
            self.gamma.clone().into_tensor_arg(),
            self.beta.clone().into_tensor_arg(),
            output.clone().into_tensor_arg(),
            mean.clone().into_tensor_arg(),
            spread.clone().into_tensor_arg(),
            rows.walk(),
            self.settings(),
        );
        (output, NormStats { mean, spread })
    }

    /// BatchNorm's rows are its channels, so one launch of sums gives `dβ = Σ g`, `dγ = Σ g x̂`
    /// and the row sums `dx` takes; GroupNorm takes a second launch over the channels for `dγ`
    /// and `dβ`. Returns the gradients of `x`, `γ` and `β`.
    fn backward(
        &self,
        stats: NormStats<CubeBackend>,
        output_grad: CubeTensor,
    ) -> (CubeTensor, CubeTensor, CubeTensor) {
        let backward = Backward {
            output_grad: into_contiguous(output_grad),
            mean: into_contiguous(stats.mean),
            spread: into_contiguous(stats.spread),
        };
        let (rows, _) = self.statistics_rows();
        let row_sums = self.sums(&backward, rows);
        let input_grad = self.input_grad(&backward, &row_sums);
        let channel_sums = match self.kind {
            NormKind::Batch { .. } => row_sums,
            NormKind::Group { .. } => {
                let (batch, channels, spatial) = self.dims();
                self.sums(&backward, Rows::per_channel(batch, channels, spatial))
            }
        };
        (input_grad, channel_sums.g_xhat, channel_sums.g)
    }

    /// The sums of [`norm_sums_kernel`] over `rows`.
    fn sums(&self, backward: &Backward, rows: Rows) -> RowSums {
        let sums: [CubeTensor; 4] = std::array::from_fn(|_| self.empty(Shape::new([rows.rows])));
        let arg = |i: usize| sums[i].clone().into_tensor_arg();
        norm_sums_kernel::launch(
            &self.x.client,
            rows.cube_count(),
            row_cube_dim(&self.x, &rows),
            self.x.clone().into_tensor_arg(),
            backward.output_grad.clone().into_tensor_arg(),
            self.gamma.clone().into_tensor_arg(),
            self.beta.clone().into_tensor_arg(),
            backward.mean.clone().into_tensor_arg(),
            backward.spread.clone().into_tensor_arg(),
            arg(0),
            arg(1),
            arg(2),
            arg(3),
            rows.walk(),
            self.settings(),
        );
        let [g, g_xhat, h, h_xhat] = sums;
        RowSums {
            g,
            g_xhat,
            h,
            h_xhat,
        }
    }

    fn input_grad(&self, backward: &Backward, row_sums: &RowSums) -> CubeTensor {
        let shape = self.x.meta.shape().clone();
        let len = shape.num_elements();
        let input_grad = self.empty(shape);
        let cube_dim = CubeDim::new(&self.x.client, len);
        norm_input_grad_kernel::launch(
            &self.x.client,
            calculate_cube_count_elemwise(&self.x.client, len, cube_dim),
            cube_dim,
            self.x.clone().into_tensor_arg(),
            backward.output_grad.clone().into_tensor_arg(),
            self.gamma.clone().into_tensor_arg(),
            self.beta.clone().into_tensor_arg(),
            backward.mean.clone().into_tensor_arg(),
            backward.spread.clone().into_tensor_arg(),
            row_sums.h.clone().into_tensor_arg(),
            row_sums.h_xhat.clone().into_tensor_arg(),
            input_grad.clone().into_tensor_arg(),
            self.settings(),
        );
        input_grad
    }
}

/// What a normalisation's backward pass reads besides the forward pass's tensors, contiguous.
struct Backward {
    output_grad: CubeTensor,
    mean: CubeTensor,
    spread: CubeTensor,
}

/// The sums of [`norm_sums_kernel`], one per row: `Σ g`, `Σ g x̂`, `Σ h`, `Σ h x̂`.
struct RowSums {
    g: CubeTensor,
    g_xhat: CubeTensor,
    h: CubeTensor,
    h_xhat: CubeTensor,
}

fn adam_step(update: AdamUpdate<CubeBackend>) -> (CubeTensor, CubeTensor, CubeTensor) {
    let param = into_contiguous(update.param);
    let shape = param.meta.shape().clone();
    let len = shape.num_elements();
    let (second_correction, first_factor) = update.step.corrections();
    let outputs: [CubeTensor; 3] = std::array::from_fn(|_| {
        let (client, device) = (param.client.clone(), param.device.clone());
        empty_device_contiguous_dtype(client, device, shape.clone(), DType::F32)
    });
    let cube_dim = CubeDim::new(&param.client, len);
    let cube_count = calculate_cube_count_elemwise(&param.client, len, cube_dim);
    adam_kernel::launch(
        &param.client,
        cube_count,
        cube_dim,
        param.clone().into_tensor_arg(),
        into_contiguous(update.grad).into_tensor_arg(),
        into_contiguous(update.moment_1).into_tensor_arg(),
        into_contiguous(update.moment_2).into_tensor_arg(),
        outputs[0].clone().into_tensor_arg(),
        outputs[1].clone().into_tensor_arg(),
        outputs[2].clone().into_tensor_arg(),
        len as u32,
        update.step.learning_rate as f32,
        update.step.beta_1,
        update.step.beta_2,
        update.step.epsilon,
        update.step.weight_decay,
        second_correction,
        first_factor,
    );
    let [param, moment_1, moment_2] = outputs;
    (param, moment_1, moment_2)
}
