//! Every saved input (the seed corpus and the crashes found, kept under
//! `fuzz/regressions/<target>/`) runs through its target without a panic:
//! `cargo test --manifest-path fuzz/Cargo.toml` (stable, no sanitizer).

use std::path::Path;

fn replay(dir: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut n = 0;
    for (name, target) in gatehouse_fuzz::TARGETS {
        let Ok(entries) = std::fs::read_dir(root.join(name)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            eprintln!("{name}: {}", path.display());
            target(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn the_seed_corpus_runs() {
    assert!(replay("corpus") >= 7 * 3, "every target has seeds");
}

#[test]
fn the_crashes_found_stay_fixed() {
    replay("regressions");
}

/// The fuzzer starts past the signature check: the valid seeds pass it.
#[test]
fn the_valid_token_seeds_are_accepted_and_the_others_refused() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let seed = |target: &str, name: &str| std::fs::read(root.join(target).join(name)).unwrap();
    for name in ["valid.txt", "valid-models.txt", "signed-fields.bin"] {
        assert!(
            gatehouse_fuzz::gateway_accepts(&seed("gateway_token", name)),
            "{name}"
        );
    }
    for name in ["expired.txt", "unknown-kid.txt", "not-a-jwt.txt"] {
        assert!(
            !gatehouse_fuzz::gateway_accepts(&seed("gateway_token", name)),
            "{name}"
        );
    }
    for name in ["valid.txt", "signed-fields.bin"] {
        assert!(
            gatehouse_fuzz::external_accepts(&seed("external_jwt", name)),
            "{name}"
        );
    }
    // Without a kid, a token may use only a JWK set's one key: here there are three.
    for name in [
        "expired.txt",
        "valid-no-kid.txt",
        "wrong-alg-rs256.txt",
        "alg-none.txt",
        "jwks.json",
    ] {
        assert!(
            !gatehouse_fuzz::external_accepts(&seed("external_jwt", name)),
            "{name}"
        );
    }
}
