//! Compiles `proto/` into Rust with tonic.
//!
//! The protos are parsed by `protox`, a pure-Rust protobuf compiler, rather
//! than `protoc`: a fresh clone then builds with nothing but cargo, on any
//! machine and in any IDE, and the generated code cannot drift with the
//! version of a system package.

#[cfg(feature = "proto")]
const PROTOS: &[&str] = &[
    "conduit/mesh/v1/mesh.proto",
    "conduit/tap/v1/tap.proto",
    "conduit/diagnostics/v1/diagnostics.proto",
    "conduit/telemetry/v1/telemetry.proto",
    "conduit/destination/v1/destination.proto",
    "conduit/identity/v1/identity.proto",
    "conduit/policy/v1/policy.proto",
    "conduit/public/v1/public.proto",
    "conduit/store/v1/store.proto",
];

// Without the `proto` feature (the wasm dashboard) there is nothing to
// generate, and the protobuf compiler is not even a dependency.
#[cfg(not(feature = "proto"))]
fn main() {}

#[cfg(feature = "proto")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: checkouts
    // of the workspace at other paths that share a target directory share
    // this script's binary, and each must compile its own protos.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());

    let descriptors = protox::compile(PROTOS, [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
