//! Embeds libtorch's library directory as an rpath when the `train` feature is on, so that
//! `flipstream` runs without LD_LIBRARY_PATH. torch-sys (links = "tch") exports the directory.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
