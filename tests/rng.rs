//! The `--rng python` stream against CPython 3.11's `random` module on this machine. Every
//! literal below was printed by `python3` with the command in the comment above it.

use microgpt::rng::Rng;

#[test]
fn getrandbits_32_matches_cpython() {
    // python3 -c "import random; random.seed(42); print([random.getrandbits(32) for _ in range(3)])"
    let mut r = Rng::python(42);
    let got: Vec<u64> = (0..3).map(|_| r.getrandbits(32)).collect();
    assert_eq!(got, [2746317213, 478163327, 107420369]);
}

#[test]
fn seeding_with_zero_and_with_a_two_word_integer_matches_cpython() {
    // python3 -c "import random; random.seed(0); print(random.getrandbits(32)); random.seed(2**40+5); print(random.getrandbits(32))"
    assert_eq!(Rng::python(0).getrandbits(32), 3626764237);
    assert_eq!(Rng::python((1 << 40) + 5).getrandbits(32), 2166296868);
}

#[test]
fn getrandbits_of_every_width_matches_cpython() {
    // python3 -c "import random; random.seed(42); print([random.getrandbits(k) for k in (1, 7, 32, 33, 64)])"
    let mut r = Rng::python(42);
    let got: Vec<u64> = [1, 7, 32, 33, 64].map(|k| r.getrandbits(k)).to_vec();
    assert_eq!(got, [1, 14, 107420369, 3184935163, 4117511471858006928]);
}

#[test]
fn random_matches_cpython_bit_for_bit() {
    // python3 -c "import random; random.seed(42); print(repr(random.random()), repr(random.random()))"
    let mut r = Rng::python(42);
    assert_eq!(r.random(), 0.6394267984578837);
    assert_eq!(r.random(), 0.025010755222666936);
}

#[test]
fn gauss_matches_cpython_including_the_cached_second_value() {
    // python3 -c "import random; random.seed(42); print(repr(random.random()), repr(random.gauss(0,1)), repr(random.gauss(0,1)))"
    let mut r = Rng::python(42);
    assert_eq!(r.random(), 0.6394267984578837);
    assert_eq!(r.gauss(0.0, 1.0), 0.7921447409497909);
    assert_eq!(r.gauss(0.0, 1.0), 0.12551827570326066);
}

#[test]
fn shuffle_matches_cpython() {
    // python3 -c "import random; random.seed(42); x=list(range(20)); random.shuffle(x); print(x)"
    let mut r = Rng::python(42);
    let mut x: Vec<usize> = (0..20).collect();
    r.shuffle(&mut x);
    assert_eq!(
        x,
        [
            19, 5, 14, 4, 9, 13, 15, 18, 6, 12, 17, 10, 1, 11, 2, 16, 7, 8, 0, 3
        ]
    );
}

#[test]
fn randbelow_rejection_matches_cpython() {
    // python3 -c "import random; random.seed(7); print([random.randrange(10**6) for _ in range(3)])"
    let mut r = Rng::python(7);
    let got: Vec<usize> = (0..3).map(|_| r.randbelow(1_000_000)).collect();
    assert_eq!(got, [339563, 993908, 158176]);
}

#[test]
fn choices_matches_cpython() {
    // python3 -c "import random; random.seed(42); print(random.choices(range(5), weights=[0.1,0.2,0.3,0.25,0.15], k=8))"
    let mut r = Rng::python(42);
    let w = [0.1, 0.2, 0.3, 0.25, 0.15];
    let got: Vec<usize> = (0..8).map(|_| r.choices(&w)).collect();
    assert_eq!(got, [3, 0, 1, 1, 3, 3, 4, 0]);
}

#[test]
fn choices_never_returns_a_zero_weight_index() {
    let mut r = Rng::pcg(1);
    let w = [0.0, 1.0, 0.0, 2.0, 0.0];
    for _ in 0..1000 {
        let i = r.choices(&w);
        assert!(i == 1 || i == 3, "drew index {i} of weight 0");
    }
}

#[test]
fn pcg_stream_is_seeded() {
    let a: Vec<u32> = {
        let mut r = Rng::pcg(42);
        (0..4).map(|_| r.next_u32()).collect()
    };
    let b: Vec<u32> = {
        let mut r = Rng::pcg(42);
        (0..4).map(|_| r.next_u32()).collect()
    };
    let c: Vec<u32> = {
        let mut r = Rng::pcg(43);
        (0..4).map(|_| r.next_u32()).collect()
    };
    assert_eq!(a, b);
    assert_ne!(a, c);
}
