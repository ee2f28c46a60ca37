//! Compiles the .proto files with protox (a pure-Rust protobuf compiler), so
//! building Triton needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/raft.proto",
        "proto/kv.proto",
        "proto/control.proto",
        "proto/admin.proto",
        "proto/surfstore.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
