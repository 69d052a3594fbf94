//! `cfg(leaky_avx512)`: the compiler supports `#[target_feature(enable = "avx512f")]`
//! (stable from Rust 1.89), so the crate's own kernels get an AVX-512 build, chosen at run
//! time on CPUs that have it. Older compilers (the crate supports 1.85) build without it.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(leaky_avx512)");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86_64" {
        return;
    }
    match autocfg::AutoCfg::new() {
        Ok(ac) if ac.probe_rustc_version(1, 89) => println!("cargo:rustc-cfg=leaky_avx512"),
        Ok(_) => {}
        Err(e) => println!("cargo:warning=leaky: could not probe the compiler ({e}); building without AVX-512 kernels"),
    }
}
