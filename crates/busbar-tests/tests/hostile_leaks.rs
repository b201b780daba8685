//! No descriptor or memfd mapping outlives a hostile frame: a process of
//! its own (one test in this file) so that nothing else opens or closes
//! descriptors while it counts them in `/proc/self`.

use busbar::Selector;
use busbar_tests::fuzz_support::{self, seal, FdSpec};
use busbar_tests::hostile::{self, Base, Case, HonestSpec, Mutation, Rng, REGION_MAGIC};

#[test]
fn hostile_frames_leak_no_descriptors_or_mappings() {
    // Warm up: anything opened lazily is open before the baseline.
    hostile::run_batch(&hostile::random_batch(&mut Rng::new(0))).expect("warm-up batch");
    let baseline = hostile::resources().expect("/proc/self");

    // Frames heavy with descriptors of every kind, delivered, dropped and refused.
    let spec = HonestSpec {
        selector: Selector::unicast("a"),
        format: 0,
        len: 70_000,
        objects: 100,
        regions: vec![4096; 100],
        spill: true,
    };
    let unsealed = FdSpec::Memfd {
        len: 4096,
        contents: REGION_MAGIC.to_vec(),
        seals: 0,
    };
    let good_looking = FdSpec::Memfd {
        len: 4096,
        contents: REGION_MAGIC.to_vec(),
        seals: seal::SHRINK | seal::GROW | seal::SEAL,
    };
    let heavy = vec![
        Case::hello(1),
        Case::honest(spec.clone()),
        Case {
            base: Base::Honest(spec.clone()),
            mutations: vec![Mutation::RegionFd(unsealed)],
        },
        Case {
            base: Base::Honest(spec.clone()),
            mutations: vec![Mutation::RegionFd(good_looking)],
        },
        Case {
            base: Base::Honest(spec.clone()),
            mutations: vec![Mutation::PushFd(FdSpec::Socket)],
        },
        Case {
            base: Base::Honest(spec.clone()),
            mutations: vec![Mutation::ManyFds(60)],
        },
        Case {
            base: Base::Honest(spec.clone()),
            mutations: vec![Mutation::Oversize { extra: 3 }],
        },
        Case::honest(spec),
    ];
    let tally = hostile::run_batch(&heavy).expect("heavy batch follows the rules");
    assert_eq!(tally.delivered, 3, "{tally:?}");
    assert_eq!(
        hostile::resources().expect("/proc/self"),
        baseline,
        "after the heavy batch"
    );

    // A link cut with frames still queued behind the cut, descriptors and all.
    let report = fuzz_support::feed_link(
        (0..20)
            .map(|_| fuzz_support::RawInput {
                bytes: b"junk".to_vec(),
                fds: vec![FdSpec::Pipe, FdSpec::Region(10)],
            })
            .collect(),
    )
    .expect("feed");
    assert!(report.cut);
    assert_eq!(
        hostile::resources().expect("/proc/self"),
        baseline,
        "after a cut"
    );

    // And random batches, checked one by one.
    let mut rng = Rng::new(0x1ea4);
    for i in 0..400 {
        let seed = rng.next_u64();
        let cases = hostile::random_batch(&mut Rng::new(seed));
        hostile::run_batch(&cases).unwrap_or_else(|e| panic!("batch {i} (seed {seed:#x}): {e}"));
        assert_eq!(
            hostile::resources().expect("/proc/self"),
            baseline,
            "descriptors or memfd mappings leaked by batch {i} (seed {seed:#x})"
        );
    }
}
