//! Three jobs, all driven by libtorch's library directory, which torch-sys (links = "tch") exports
//! as `DEP_TCH_LIBTORCH_LIB`:
//!
//! 1. Embed that directory as an rpath, so that `flipstream` runs without LD_LIBRARY_PATH.
//! 2. Compile `csrc/settings.cpp`: libtorch's global numerics settings that tch does not expose
//!    (TF32).
//! 3. With the `dist` feature: compile `csrc/dist_shim.cpp`, the C ABI over PyTorch's c10d process
//!    groups (src/dist). Gloo always (its headers come from Debian's `libgloo-dev`, which
//!    scripts/setup-system.sh installs; the symbols are in libtorch_cpu). NCCL too when libtorch
//!    has CUDA (libtorch_cuda) and the CUDA and NCCL headers are found: the pip wheels next to
//!    torch (`nvidia/cu13/include` with `nvidia-cuda-crt` + `nvidia-cuda-cccl`,
//!    `nvidia/nccl/include`), or `FLIPSTREAM_CUDA_INCLUDE` / `FLIPSTREAM_NCCL_INCLUDE`.
//!    `FLIPSTREAM_NCCL=0` leaves NCCL out.

#[cfg(feature = "dist")]
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    let include = std::path::Path::new(&dir).join("../include");
    println!("cargo:rerun-if-changed=csrc/settings.cpp");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .std("c++17")
        .include(&include)
        .define("_GLIBCXX_USE_CXX11_ABI", cxx11_abi().as_str())
        .file("csrc/settings.cpp")
        .compile("flipstream_torch_settings");
    #[cfg(feature = "dist")]
    build_shim(std::path::Path::new(&dir));
}

/// The C++ ABI libtorch was built with (1 for the PyTorch 2.x wheels; `LIBTORCH_CXX11_ABI`
/// overrides, as for torch-sys).
fn cxx11_abi() -> String {
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into())
}

#[cfg(feature = "dist")]
fn build_shim(lib_dir: &Path) {
    for var in [
        "FLIPSTREAM_NCCL",
        "FLIPSTREAM_CUDA_INCLUDE",
        "FLIPSTREAM_NCCL_INCLUDE",
        "GLOO_INCLUDE_DIR",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=csrc/dist_shim.cpp");
    let include = lib_dir.join("../include");
    let gloo = std::env::var("GLOO_INCLUDE_DIR")
        .map_or_else(|_| PathBuf::from("/usr/include"), PathBuf::from);
    if !gloo.join("gloo/config.h").exists() {
        panic!(
            "the dist feature needs gloo's headers ({}/gloo/config.h is missing): install Debian's \
             libgloo-dev (scripts/setup-system.sh does), set GLOO_INCLUDE_DIR, or build without the \
             dist feature (--no-default-features --features train)",
            gloo.display()
        );
    }
    let abi = cxx11_abi();
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .warnings(false)
        .std("c++17")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define("USE_C10D_GLOO", None)
        .define("GLOG_USE_GLOG_EXPORT", None)
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .file("csrc/dist_shim.cpp");
    if gloo != Path::new("/usr/include") {
        build.include(&gloo);
    }
    if let Some(dirs) = nccl_includes(lib_dir) {
        build
            .define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None)
            .includes(dirs);
        println!("cargo:rustc-link-lib=torch_cuda");
    }
    build.compile("flipstream_dist");
}

/// The CUDA and NCCL include directories, when NCCL can be compiled in.
#[cfg(feature = "dist")]
fn nccl_includes(lib_dir: &Path) -> Option<Vec<PathBuf>> {
    if std::env::var("FLIPSTREAM_NCCL").is_ok_and(|v| v == "0")
        || !lib_dir.join("libtorch_cuda.so").exists()
    {
        return None;
    }
    // lib_dir is <site-packages>/torch/lib for a pip torch.
    let nvidia = lib_dir.join("../../nvidia");
    let pick = |var: &str, default: PathBuf| std::env::var(var).map_or(default, PathBuf::from);
    let cuda = pick("FLIPSTREAM_CUDA_INCLUDE", nvidia.join("cu13/include"));
    let nccl = pick("FLIPSTREAM_NCCL_INCLUDE", nvidia.join("nccl/include"));
    let complete = cuda.join("cuda_runtime_api.h").exists()
        && cuda.join("crt/host_config.h").exists()
        && nccl.join("nccl.h").exists();
    if !complete {
        println!(
            "cargo:warning=libtorch has CUDA but the CUDA/NCCL headers are incomplete under {} and {}: \
             building the distributed backend with Gloo only (scripts/libtorch-env.sh installs the \
             header wheels)",
            cuda.display(),
            nccl.display()
        );
        return None;
    }
    Some(vec![cuda, nccl])
}
