//! Builds the C++ shim (`csrc/*.cpp`) into a static archive against the
//! headers of the torch that is installed for the Python interpreter, and links
//! it whole (its static registrations must survive) together with `c10` and
//! `torch_cpu` from that torch.
//!
//! The interpreter is `$PYO3_PYTHON`, else `$PYTHON_SYS_EXECUTABLE`, else
//! `python3`. The shim must be built against the torch that will run it, so the
//! project is installed with `pip install --no-build-isolation .`.

use std::path::{Path, PathBuf};
use std::process::Command;

const PROBE: &str = r#"
import os, torch
import torch.utils.cpp_extension as c
print(torch.__version__)
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))
print(os.path.join(os.path.dirname(torch.__file__), "lib"))
for p in c.include_paths():
    print(p)
"#;

struct Torch {
    version: String,
    cxx11_abi: String,
    lib_dir: PathBuf,
    include_dirs: Vec<PathBuf>,
}

fn python() -> String {
    for var in ["PYO3_PYTHON", "PYTHON_SYS_EXECUTABLE"] {
        println!("cargo:rerun-if-env-changed={var}");
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                return v;
            }
        }
    }
    "python3".to_string()
}

fn probe_torch() -> Torch {
    let py = python();
    let out = Command::new(&py).arg("-c").arg(PROBE).output();
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!(
            "\n\ntorch-tpu: cannot run the Python interpreter `{py}` ({e}).\n\
             Set PYO3_PYTHON to the interpreter whose torch the shim must be built against.\n\n"
        ),
    };
    if !out.status.success() {
        panic!(
            "\n\ntorch-tpu: `{py}` cannot import torch, which the C++ shim is built against.\n\
             Install torch first, then build with `pip install --no-build-isolation .`\n\
             (or set PYO3_PYTHON to an interpreter that has torch).\n\
             Python said:\n{}\n",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let version = lines.next().unwrap_or_default().to_string();
    let cxx11_abi = lines.next().unwrap_or("1").to_string();
    let lib_dir = PathBuf::from(lines.next().expect("torch probe printed no lib dir"));
    let include_dirs: Vec<PathBuf> = lines.map(PathBuf::from).collect();
    assert!(
        !include_dirs.is_empty(),
        "torch probe printed no include dirs"
    );
    Torch {
        version,
        cxx11_abi,
        lib_dir,
        include_dirs,
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let csrc = manifest
        .join("../../csrc")
        .canonicalize()
        .expect("csrc/ not found");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", csrc.display());

    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&csrc).expect("read csrc/") {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "cpp" || ext == "h" {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        if ext == "cpp" {
            sources.push(path);
        }
    }
    sources.sort();

    // Without the `shim` feature the runtime builds alone (its services get
    // stand-ins, see services.rs): no torch, no C++.
    if std::env::var_os("CARGO_FEATURE_SHIM").is_none() {
        println!("cargo:rustc-env=TPU_TORCH_VERSION=none (built without the shim)");
        return;
    }
    let torch = probe_torch();
    println!("cargo:rustc-env=TPU_TORCH_VERSION={}", torch.version);

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .pic(true)
        .opt_level(2)
        .cargo_metadata(false)
        .define("_GLIBCXX_USE_CXX11_ABI", torch.cxx11_abi.as_str())
        .include(&csrc)
        .files(&sources);
    for dir in &torch.include_dirs {
        build.include(dir);
    }
    // torch's headers are noisy; keep real errors visible.
    build.warnings(false);
    for flag in [
        "-Wno-unused-parameter",
        "-Wno-deprecated-declarations",
        "-Wno-missing-field-initializers",
    ] {
        build.flag_if_supported(flag);
    }
    build.compile("tpu_shim");

    let out_dir = std::env::var("OUT_DIR").unwrap();
    println!("cargo:rustc-link-search=native={out_dir}");
    println!("cargo:rustc-link-lib=static:+whole-archive=tpu_shim");
    link_torch(&torch.lib_dir);
}

fn link_torch(lib_dir: &Path) {
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=stdc++");
    // Installed next to torch in site-packages: torch_tpu/_core*.so -> ../torch/lib.
    println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../torch/lib");
    // The absolute path serves in-tree builds, `cargo test` and examples.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
}
