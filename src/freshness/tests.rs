use super::*;

fn d(n: u8) -> Digest {
    Digest::of(&[n])
}

fn bundle(n: u8, version: Option<&str>, created: &str) -> BundleId {
    BundleId {
        digest: d(100 + n),
        created: created.into(),
        platform: "c10f".into(),
        kube_version: version.map(str::to_string),
        arch: "amd64".into(),
    }
}

fn record_with(identity: &str, digest: Digest, by: &BundleId) -> TagRecord {
    let mut r = TagRecord::default();
    r.tags.insert(
        identity.into(),
        TagEntry {
            bundle_manifest: digest.clone(),
            digest,
            bundle: by.clone(),
            set_at: "2026-12-01T00:00:00Z".into(),
        },
    );
    r
}

const TAG: &str = "registry.local/c10f/pause:3.9";

fn state(current: Option<Digest>, ours: &Digest) -> TagState<'_> {
    TagState {
        identity: TAG.into(),
        current,
        bundle_manifest: ours,
    }
}

#[test]
fn older_by_version_or_by_creation_time() {
    let v27 = bundle(1, Some("v1.27.3"), "2026-12-01T00:00:00Z");
    let v26_later = bundle(2, Some("v1.26.9"), "2026-12-05T00:00:00Z");
    let v27_earlier = bundle(3, Some("v1.27.3"), "2026-11-01T00:00:00Z");
    let v27_later = bundle(4, Some("v1.27.3"), "2026-12-02T00:00:00Z");
    let v26_10 = bundle(5, Some("v1.26.10"), "2026-12-01T00:00:00Z");
    let v26_9 = bundle(6, Some("v1.26.9"), "2026-12-01T00:00:00Z");
    assert!(not_older(&v26_later, &v27).unwrap_err().contains("v1.26.9"));
    assert!(not_older(&v27_earlier, &v27)
        .unwrap_err()
        .contains("before"));
    assert!(not_older(&v27_later, &v27).is_ok());
    assert!(not_older(&v27, &v27).is_ok());
    // Numeric, not string order.
    assert!(not_older(&v26_10, &v26_9).is_ok());
    assert!(not_older(&v26_9, &v26_10).is_err());
    // A podsec archive has no date: it cannot prove it is newer, and a
    // record of one has no claim against a dated bundle.
    let podsec = bundle(7, Some("v1.27.3"), "");
    assert!(not_older(&podsec, &v27).is_err());
    assert!(not_older(&v27, &podsec).is_ok());
}

#[test]
fn a_downgrade_is_refused_with_every_tag_named_or_allowed() {
    let newer = bundle(1, Some("v1.27.3"), "2026-12-01T00:00:00Z");
    let older = bundle(2, Some("v1.27.3"), "2026-11-01T00:00:00Z");
    let record = record_with(TAG, d(1), &newer);
    let ours = d(2);
    let tags = [state(Some(d(1)), &ours)];
    let err = check(&record, &older, &tags, false).unwrap_err();
    assert!(err.is_refusal());
    let text = err.to_string();
    assert!(
        text.contains(TAG) && text.contains("--allow-downgrade"),
        "{text}"
    );
    assert!(text.contains(&d(1).to_string()) && text.contains(&ours.to_string()));
    let allowed = check(&record, &older, &tags, true).unwrap();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0].old, d(1));
    assert!(allowed[0].downgrade.is_some());
}

#[test]
fn what_the_record_does_not_explain_is_no_downgrade() {
    let newer = bundle(1, Some("v1.27.3"), "2026-12-01T00:00:00Z");
    let older = bundle(2, Some("v1.27.3"), "2026-11-01T00:00:00Z");
    let record = record_with(TAG, d(1), &newer);
    let ours = d(2);
    // Changed by hand (or by podsec) since: no bundle to compare with.
    assert!(check(&record, &older, &[state(Some(d(3)), &ours)], false)
        .unwrap()
        .is_empty());
    // No tag yet, or already ours.
    assert!(check(&record, &older, &[state(None, &ours)], false)
        .unwrap()
        .is_empty());
    assert!(check(&record, &older, &[state(Some(d(2)), &ours)], false)
        .unwrap()
        .is_empty());
    // The same bundle image pushed compressed otherwise: not older content.
    let same = d(1);
    let mut r = record_with(TAG, d(9), &newer);
    r.tags.get_mut(TAG).unwrap().bundle_manifest = same.clone();
    assert!(check(&r, &older, &[state(Some(d(9)), &same)], false)
        .unwrap()
        .is_empty());
    // No record at all.
    assert!(check(
        &TagRecord::default(),
        &older,
        &[state(Some(d(1)), &ours)],
        false
    )
    .unwrap()
    .is_empty());
}

#[test]
fn the_record_survives_a_rewrite_and_keeps_the_newest_setter() {
    let t = tempfile::tempdir().unwrap();
    let empty = TagRecord::read(t.path()).unwrap();
    assert!(empty.tags.is_empty());
    let newer = bundle(1, Some("v1.27.3"), "2026-12-01T00:00:00Z");
    let older = bundle(2, Some("v1.27.3"), "2026-11-01T00:00:00Z");
    let mut r = record_with(TAG, d(1), &newer);
    r.format = RECORD_FORMAT.into();
    r.version = RECORD_VERSION;
    r.write(t.path()).unwrap();
    assert_eq!(TagRecord::read(t.path()).unwrap(), r);
    std::fs::write(TagRecord::path(t.path()), "{").unwrap();
    assert!(matches!(
        TagRecord::read(t.path()),
        Err(FreshnessError::Format { .. })
    ));
    // An older bundle that carries the very same image does not become its
    // setter (else a middle bundle could then move it back).
    let mut m = crate::bundle::model::tests::minimal();
    m.images[0].manifest = d(1);
    let names = crate::push::push_names(&m, false);
    let moved = after_tagging(
        &mut r,
        &older,
        &Tagged {
            registry: "registry.local",
            manifest: &m,
            names: &names,
            digests: &[d(1)],
            repointed: &[],
        },
        &[],
    );
    assert!(moved.is_empty());
    assert_eq!(r.tags[TAG].bundle, newer);
    // A tag that moves is named, with what set the old digest.
    m.images[0].manifest = d(2);
    let moved = after_tagging(
        &mut r,
        &older,
        &Tagged {
            registry: "registry.local",
            manifest: &m,
            names: &names,
            digests: &[d(2)],
            repointed: &[Repointed {
                name: 0,
                old: d(1),
                new: d(2),
            }],
        },
        &[],
    );
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].set_by.as_ref(), Some(&newer));
    assert!(moved[0].describe().contains("→"));
    assert_eq!(r.tags[TAG].bundle, older);
    assert_eq!(r.tags[TAG].digest, d(2));
}

#[test]
fn validity_and_expiry() {
    assert_eq!(parse_validity("90d").unwrap(), 90 * 86_400);
    assert_eq!(parse_validity("2w").unwrap(), 14 * 86_400);
    assert_eq!(parse_validity("36h").unwrap(), 36 * 3600);
    for bad in [
        "",
        "d",
        "90",
        "-1d",
        "0d",
        "1y",
        "9999999999999d",
        "1.5d",
        "٣d",
    ] {
        assert!(parse_validity(bad).is_err(), "{bad}");
    }
    assert_eq!(expires_at(0, 86_400), "1970-01-02T00:00:00Z");
    let mut m = crate::bundle::model::tests::minimal();
    let now = OffsetDateTime::parse("2026-06-01T00:00:00Z", &Rfc3339).unwrap();
    assert!(check_expiry(&m, now).is_ok());
    m.expires = Some("2026-06-01T00:00:01Z".into());
    assert!(check_expiry(&m, now).is_ok());
    m.expires = Some("2026-06-01T00:00:00Z".into());
    let err = check_expiry(&m, now).unwrap_err();
    assert!(
        err.is_refusal() && err.to_string().contains("expired"),
        "{err}"
    );
}
