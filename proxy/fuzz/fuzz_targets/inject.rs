//! `conduit inject` over any manifest stream: whatever the text, it is
//! injected or refused with an error, never a panic; what inject writes
//! reads back as a manifest stream, and injecting that again changes
//! nothing (inject is idempotent).

#![no_main]

use conduit_deploy::{Format, InjectOptions, inject_documents, stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let options = InjectOptions::new("conduit");
    let Ok(mut documents) = stream::read("fuzz", text) else {
        return;
    };
    if inject_documents(&mut documents, &options).is_err() {
        return;
    }
    let once = write(&documents);
    let mut again = stream::read("injected", &once).expect("inject's output reads back");
    inject_documents(&mut again, &options).expect("injected objects inject again");
    assert_eq!(write(&again), once, "injecting twice changed the output");
});

fn write(documents: &[conduit_deploy::Document]) -> String {
    let values: Vec<_> = documents.iter().map(|d| &d.value).collect();
    stream::write(&values, Format::Yaml)
}
