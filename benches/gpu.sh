#!/usr/bin/env bash
# DCGAN and U-Net `full` on a GPU through wgpu, beside PyTorch CUDA on the same GPU, in one run
# of under 8 minutes, for a machine that has a GPU but no Rust toolchain.
#
#   benches/gpu.sh prepare   on the build machine: build the training and kernel benchmarks,
#                            and the training benchmark again with `--features vulkan`; strip
#                            and compress them into .gpubin/, and download the Vulkan loader
#                            package into .gl/ (both folders are kept out of git)
#   benches/gpu.sh run       on the GPU machine, from the repository root, with .gpubin/ and .gl/
#                            copied beside it: writes machine.txt, kernels.md, wgsl-log.txt
#                            and spirv-log.txt into $OUT (default target/bench-gpu), and
#                            results.{json,md} and images_per_s.png into $OUT/wgsl and
#                            $OUT/spirv;
#                            MODELS=dcgan measures fewer networks
#
# The rows are training iterations, generation and DDIM-50 / DDPM-1000 sampling (50 reverse steps
# timed, the rest extrapolated) at batch 128 (64 images for sampling), each the median of 3 runs
# after 2 warm-up runs (wgpu compiles and autotunes its kernels in the first ones); kernels.md times
# the normalisations (the project's CubeCL kernels) against burn's composition and PyTorch CUDA,
# forward and backward, one op at a time. The first training run compiles burn's kernels to WGSL
# (wgpu's default) and measures PyTorch CUDA beside them; the second is the same benchmark built
# with burn's `vulkan` feature, whose kernels reach a Vulkan GPU as SPIR-V (with tensor-core
# matmul and convolution for f16 in its autotune lists), genmodels alone. Both are f32.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each binary is built by `cargo bench` with the cargo features after its name.
binaries=(training: kernels: training-spirv:vulkan)

prepare() {
    local entry binary features bench built executable
    mkdir -p .gpubin
    for entry in "${binaries[@]}"; do
        binary=${entry%%:*} features=${entry#*:} bench=${binary%-spirv}
        built=$(cargo bench --profile dev --features "$features" --bench "$bench" --no-run 2>&1) ||
            { echo "$built" >&2; exit 1; }
        executable=$(sed -n "s/.*Executable benches\/$bench.rs (\(.*\))/\1/p" <<<"$built" | tail -n 1)
        [ -x "$executable" ] || { echo "gpu.sh: no $bench executable was built" >&2; exit 1; }
        # xz, not gzip: three binaries must fit in the 64 MiB a device call carries.
        strip -o ".gpubin/$binary" "$executable"
        xz -T0 -9 -f ".gpubin/$binary"
    done
    # The GPU machine has the NVIDIA driver but maybe no Vulkan loader: take Debian's (amd64).
    mkdir -p .gl /tmp/amd64/partial
    local apt_options=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${apt_options[@]}" update >/dev/null
    (cd .gl && apt-get "${apt_options[@]}" download libvulkan1 >/dev/null)
    for folder in .gpubin .gl; do
        grep -qx "/$folder/" .git/info/exclude 2>/dev/null || echo "/$folder/" >>.git/info/exclude
    done
    du -sh .gpubin .gl
}

# Unpacks .gpubin/$1.xz to /tmp/genmodels-$1, with Python's lzma where xz is not installed.
unpack() {
    local packed=".gpubin/$1.xz" unpacked="/tmp/genmodels-$1"
    [ -f "$packed" ] || { echo "gpu.sh: $packed is missing: run 'benches/gpu.sh prepare' first" >&2; exit 1; }
    if command -v xz >/dev/null; then
        xz -dc "$packed" >"$unpacked"
    else
        python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
            "$packed" "$unpacked"
    fi
    chmod +x "$unpacked"
}

run() {
    local out=${OUT:-target/bench-gpu}
    mkdir -p "$out"
    local entry
    for entry in "${binaries[@]}"; do
        unpack "${entry%%:*}"
    done
    if ! ldconfig -p | grep -q libvulkan && [ -d .gl ]; then
        for package in .gl/*.deb; do dpkg -x "$package" /; done
        ldconfig
    fi
    local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
    {
        date -u
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
        python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))' || true
        grep -m1 'model name' /proc/cpuinfo
        echo "nproc $(nproc)"
    } >"$out/machine.txt" 2>&1
    # 7.5 minutes at most in all, so that one device call of 8 minutes also returns the files;
    # the training benchmark writes its tables after every row, so a cut-short run keeps them.
    timeout 40 /tmp/genmodels-kernels --backend wgpu --filter Norm --runs 5 --warmup 3 \
        --python python3 >"$out/kernels.md" 2>&1 || true
    local common=(--backends wgpu --models "${MODELS:-dcgan,unet-full}" --batches 128 --runs 3
        --warmup 2 --max-seconds 5 --max-sampling-steps 50)
    timeout 250 /tmp/genmodels-training "${common[@]}" --python python3 --out "$out/wgsl" 2>&1 |
        tee "$out/wgsl-log.txt" || true
    timeout 160 /tmp/genmodels-training-spirv "${common[@]}" --no-pytorch --out "$out/spirv" 2>&1 |
        tee "$out/spirv-log.txt" || true
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*)
    echo "usage: benches/gpu.sh prepare|run" >&2
    exit 2
    ;;
esac
