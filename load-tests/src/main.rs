fn main() {
    eprintln!("conduit-load-tests: no scenario implemented yet");
    std::process::exit(1);
}
