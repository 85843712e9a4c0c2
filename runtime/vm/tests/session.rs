//! Sessions: atomic steps, recovery from a process killed mid-step, refusal of another plan or
//! keys, and detection of corrupted data.

use cachemir_ir::plan::ContentHash;
use cachemir_vm::session::{Binding, CrashPoint, Session, SessionError, SessionIdentity};
use proptest::prelude::*;
use serde_json::json;
use std::fs;
use std::path::Path;

fn identity() -> SessionIdentity {
    SessionIdentity {
        plan_hash: ContentHash::of(b"plan"),
        key_hash: ContentHash::of(b"keys"),
        parameters_hash: ContentHash::of(b"parameters"),
    }
}

/// Distinct, step-dependent state blobs of uneven sizes.
fn states(step: u64, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|k| {
            (0..(37 * k + 11))
                .map(|i| (i as u64 * 31 + step * 7 + k as u64) as u8)
                .collect()
        })
        .collect()
}

/// The session's files, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn steps_commit_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut session = Session::create(&path, identity()).unwrap();
    assert_eq!(session.step(), 0);
    assert!(session.load_state().unwrap().is_empty());
    assert_eq!(files(&path), ["manifest.json"]);
    for step in 1..=3 {
        let got = session
            .commit_step(&states(step, 4), json!({ "tokens": step }))
            .unwrap();
        assert_eq!(got, step);
    }
    assert_eq!(session.load_state().unwrap(), states(3, 4));
    drop(session);
    // Only the last step's data is kept.
    assert_eq!(files(&path), ["manifest.json", "state-0000000003.bin"]);
    let session = Session::open(&path, identity()).unwrap();
    assert_eq!(session.step(), 3);
    assert_eq!(session.metadata(), &json!({ "tokens": 3 }));
    assert_eq!(session.load_state().unwrap(), states(3, 4));
    assert_eq!(
        session.blobs().iter().map(|b| b.bytes).collect::<Vec<_>>(),
        [11, 48, 85, 122]
    );
    // The manifest is plain JSON with the identity and per-blob checksums.
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(path.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["step"], 3);
    assert_eq!(manifest["version"], 1);
    assert_eq!(manifest["plan_hash"], ContentHash::of(b"plan").to_hex());
    assert_eq!(
        manifest["blobs"][1]["sha256"],
        ContentHash::of(&states(3, 4)[1]).to_hex()
    );
}

#[test]
fn create_refuses_an_existing_session_and_open_needs_one() {
    let dir = tempfile::tempdir().unwrap();
    Session::create(dir.path(), identity()).unwrap();
    assert!(matches!(
        Session::create(dir.path(), identity()),
        Err(SessionError::Exists { .. })
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        Session::open(empty.path(), identity()),
        Err(SessionError::NotFound { .. })
    ));
    let mut s = Session::open_or_create(empty.path(), identity()).unwrap();
    s.commit_step(&states(1, 2), json!(null)).unwrap();
    assert_eq!(
        Session::open_or_create(empty.path(), identity())
            .unwrap()
            .step(),
        1
    );
}

#[test]
fn another_plan_keys_or_parameters_are_refused_naming_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    Session::create(dir.path(), identity()).unwrap();
    let other = ContentHash::of(b"other");
    let cases = [
        (
            Binding::Plan,
            SessionIdentity {
                plan_hash: other,
                ..identity()
            },
            identity().plan_hash,
        ),
        (
            Binding::Keys,
            SessionIdentity {
                key_hash: other,
                ..identity()
            },
            identity().key_hash,
        ),
        (
            Binding::Parameters,
            SessionIdentity {
                parameters_hash: other,
                ..identity()
            },
            identity().parameters_hash,
        ),
    ];
    for (binding, wrong, recorded) in cases {
        let err = Session::open(dir.path(), wrong).unwrap_err();
        let text = err.to_string();
        match err {
            SessionError::Bound {
                what,
                session,
                given,
                ..
            } => assert_eq!((what, session, given), (binding, recorded, other)),
            e => panic!("expected a binding error, got {e}"),
        }
        assert!(text.contains(&recorded.to_hex()) && text.contains(&other.to_hex()));
        assert!(text.contains(&binding.to_string()));
    }
}

#[test]
fn corrupted_data_is_an_error_not_a_wrong_cache() {
    let dir = tempfile::tempdir().unwrap();
    let mut session = Session::create(dir.path(), identity()).unwrap();
    session.commit_step(&states(1, 3), json!(null)).unwrap();
    let data = dir.path().join("state-0000000001.bin");
    let mut bytes = fs::read(&data).unwrap();
    bytes[20] ^= 1; // in blob 1 (blob 0 holds 11 bytes)
    fs::write(&data, &bytes).unwrap();
    let err = Session::open(dir.path(), identity())
        .unwrap()
        .load_state()
        .unwrap_err();
    assert!(matches!(err, SessionError::Corrupt { .. }));
    assert!(
        err.to_string().contains("state ciphertext 1 of step 1"),
        "{err}"
    );
    // Truncated data is caught when opening.
    fs::write(&data, &bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(
        Session::open(dir.path(), identity()),
        Err(SessionError::Corrupt { .. })
    ));
    // So is data that vanished.
    fs::remove_file(&data).unwrap();
    assert!(matches!(
        Session::open(dir.path(), identity()),
        Err(SessionError::Corrupt { .. })
    ));
}

#[test]
fn unreadable_manifests_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    Session::create(dir.path(), identity()).unwrap();
    let manifest = dir.path().join("manifest.json");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text.replace("\"version\": 1", "\"version\": 7")).unwrap();
    assert!(matches!(
        Session::open(dir.path(), identity()),
        Err(SessionError::Version { found: 7 })
    ));
    fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    assert!(matches!(
        Session::open(dir.path(), identity()),
        Err(SessionError::Manifest { .. })
    ));
    // A manifest whose data file does not belong to its step.
    let wrong = text.replace("\"step\": 0", "\"step\": 2");
    fs::write(&manifest, wrong).unwrap();
    assert!(matches!(
        Session::open(dir.path(), identity()),
        Err(SessionError::Manifest { .. })
    ));
    // Blob sizes whose sum overflows.
    fs::write(&manifest, &text).unwrap();
    let mut session = Session::open(dir.path(), identity()).unwrap();
    session.commit_step(&states(1, 2), json!(null)).unwrap();
    let mut value: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&manifest).unwrap()).unwrap();
    value["blobs"][0]["bytes"] = u64::MAX.into();
    fs::write(&manifest, value.to_string()).unwrap();
    let err = Session::open(dir.path(), identity()).unwrap_err();
    assert!(err.to_string().contains("blob sizes overflow"), "{err}");
}

#[test]
fn a_killed_step_resumes_from_the_last_complete_one() {
    use CrashPoint::*;
    for (point, committed) in [
        (DataPartlyWritten, false),
        (DataWritten, false),
        (DataRenamed, false),
        (ManifestPartlyWritten, false),
        (ManifestWritten, false),
        (ManifestRenamed, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut session = Session::create(dir.path(), identity()).unwrap();
        for step in 1..=4 {
            session
                .commit_step(&states(step, 3), json!({ "step": step }))
                .unwrap();
        }
        session
            .commit_step_interrupted(&states(5, 3), json!({ "step": 5 }), point)
            .unwrap();
        // Something was left behind by the interrupted step, except a crash after the commit
        // point, which leaves the previous data instead.
        assert!(files(dir.path()).len() > 2, "{point:?}");
        // A user's file in the session directory is not touched.
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let session = Session::open(dir.path(), identity()).unwrap();
        let step = if committed { 5 } else { 4 };
        assert_eq!(session.step(), step, "{point:?}");
        assert_eq!(session.load_state().unwrap(), states(step, 3), "{point:?}");
        assert_eq!(session.metadata(), &json!({ "step": step }));
        assert_eq!(
            files(dir.path()),
            [
                "manifest.json".to_string(),
                "notes.txt".into(),
                format!("state-{step:010}.bin")
            ],
            "{point:?}"
        );
    }
}

#[derive(Debug, Clone)]
enum Action {
    Commit(usize),
    Crash(usize, CrashPoint),
    Reopen,
}

fn action() -> impl Strategy<Value = Action> {
    use CrashPoint::*;
    let point = prop_oneof![
        Just(DataPartlyWritten),
        Just(DataWritten),
        Just(DataRenamed),
        Just(ManifestPartlyWritten),
        Just(ManifestWritten),
        Just(ManifestRenamed),
    ];
    prop_oneof![
        (0usize..4).prop_map(Action::Commit),
        ((0usize..4), point).prop_map(|(n, p)| Action::Crash(n, p)),
        Just(Action::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any sequence of commits, kills mid-step and reopenings: the session reopens at the last
    /// complete step with exactly its data, and no leftover file survives an open.
    #[test]
    fn any_history_reopens_at_the_last_complete_step(
        actions in proptest::collection::vec(action(), 1..12)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut session = Some(Session::create(dir.path(), identity()).unwrap());
        // (step, its states) of the last complete step.
        let mut last: (u64, Vec<Vec<u8>>) = (0, Vec::new());
        let mut attempt = 0u64;
        for action in actions {
            attempt += 1;
            let s = match session.take() {
                Some(s) => s,
                None => Session::open(dir.path(), identity()).unwrap(),
            };
            match action {
                Action::Commit(count) => {
                    let mut s = s;
                    // Blobs depend on the attempt, so a lost step cannot pass for a kept one.
                    let new = states(attempt, count);
                    let step = s.commit_step(&new, json!(attempt)).unwrap();
                    prop_assert_eq!(step, last.0 + 1);
                    last = (step, new);
                    session = Some(s);
                }
                Action::Crash(count, point) => {
                    let new = states(attempt, count);
                    s.commit_step_interrupted(&new, json!(attempt), point).unwrap();
                    if point == CrashPoint::ManifestRenamed {
                        last = (last.0 + 1, new);
                    }
                }
                Action::Reopen => drop(s),
            }
            if session.is_none() {
                let reopened = Session::open(dir.path(), identity()).unwrap();
                prop_assert_eq!(reopened.step(), last.0);
                prop_assert_eq!(&reopened.load_state().unwrap(), &last.1);
                let expected_files = if last.0 == 0 { 1 } else { 2 };
                prop_assert_eq!(files(dir.path()).len(), expected_files);
                session = Some(reopened);
            }
        }
    }
}
