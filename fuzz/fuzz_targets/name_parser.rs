//! `PipeName` parsing: never panics; an accepted name obeys every documented rule,
//! prints back to itself, and maps to a socket path that stays inside the pipe
//! directory (no `..`, no `/`, no NUL can take it elsewhere).

#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use npipe::{Address, ErrorKind, PipeName, MAX_NAME_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let name = match PipeName::new(text) {
        Ok(name) => name,
        Err(e) => {
            assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidName, "{text:?}: {e}");
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
            assert!(e.to_string().starts_with("invalid "), "{e}");
            return;
        }
    };
    let bare = name.as_str();
    assert!(!bare.is_empty() && bare.len() <= MAX_NAME_LEN, "{bare:?}");
    if let Some(path) = name.socket_path() {
        // An explicit socket path: absolute, one spelling, nothing that climbs.
        assert_eq!(path.as_os_str(), bare);
        assert!(path.is_absolute(), "{path:?}");
        assert!(!bare.ends_with('/') && !bare.contains("//"), "{bare:?}");
        let mut parts = path.components();
        assert_eq!(parts.next(), Some(Component::RootDir), "{path:?}");
        assert!(parts.all(|c| matches!(c, Component::Normal(_))), "{path:?}");
        let file = path.file_name().and_then(|f| f.to_str()).expect("file name");
        assert!(!file.starts_with('.'), "{path:?}");
        assert!(!bare.chars().any(|c| c == '\\' || c.is_control()), "{bare:?}");
        assert_eq!(PipeName::new(&name.to_string()).expect("parses"), name);
        // Not resolved: that would walk whatever directories the input names.
        return;
    }
    assert!(!bare.starts_with('.'), "{bare:?}");
    assert!(
        !bare
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control()),
        "{bare:?}"
    );
    // Display round-trips.
    let shown = name.to_string();
    assert_eq!(PipeName::new(&shown).expect("displayed name parses"), name);
    if name.host().is_some() {
        assert_eq!(
            ErrorKind::of(&name.address().unwrap_err()),
            ErrorKind::Unsupported
        );
        return;
    }
    match name.address() {
        Ok(Address::Path(path)) => {
            // Exactly one normal component below the pipe directory (/tmp here).
            assert_eq!(path.parent(), Some(Path::new("/tmp")), "{path:?}");
            let file = path
                .file_name()
                .expect("file name")
                .to_str()
                .expect("utf-8");
            assert_eq!(file, format!("npipe-{bare}"));
            assert!(path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
        }
        Ok(Address::Abstract(abs)) => assert_eq!(abs, bare),
        Ok(other) => panic!("unexpected address {other:?}"),
        Err(e) => assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidName, "{e}"),
    }
});
