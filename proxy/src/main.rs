fn main() {
    eprintln!("conduit-proxy: not implemented yet");
    std::process::exit(1);
}
