fn main() {
    eprintln!("conduit-telemetry-store: not implemented yet");
    std::process::exit(1);
}
