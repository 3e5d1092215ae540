//! The bigram baseline on corpora small enough to count by hand.

use approx::assert_relative_eq;
use microgpt::bigram::Bigram;
use microgpt::data::{EncodedDocs, Tokenizer, load_docs};
use microgpt::rng::Rng;

/// Vocabulary {a = 0, b = 1}, BOS = 2, V = 3. Documents "ab" and "a" are
/// [2, 0, 1, 2] and [2, 0, 2]: the pairs (2,0) ×2, (0,1), (1,2), (0,2).
fn tiny() -> (Tokenizer, EncodedDocs) {
    let tok = Tokenizer::from_chars(vec!['a', 'b']).unwrap();
    let docs = EncodedDocs::new(&tok, &["ab", "a"]).unwrap();
    (tok, docs)
}

fn slices(docs: &EncodedDocs) -> impl Iterator<Item = &[usize]> {
    (0..docs.len()).map(|i| docs.get(i))
}

#[test]
fn counts_every_adjacent_pair_of_the_wrapped_documents() {
    let (tok, docs) = tiny();
    let b = Bigram::fit(tok.vocab_size(), slices(&docs), 1.0).unwrap();
    let mut table = [[0u64; 3]; 3];
    for (ctx, row) in table.iter_mut().enumerate() {
        for (next, c) in row.iter_mut().enumerate() {
            *c = b.count(ctx, next);
        }
    }
    assert_eq!(table, [[0, 1, 1], [0, 0, 1], [2, 0, 0]]);
}

#[test]
fn add_one_smoothing_by_hand() {
    // rows: a → {b:1, BOS:1} (2 events), b → {BOS:1} (1), BOS → {a:2} (2); k = 1, V = 3:
    // P(a|BOS) = 3/5, P(b|a) = 2/5, P(BOS|a) = 2/5, P(BOS|b) = 2/4, P(a|a) = 1/5, P(b|BOS) = 1/5
    let (tok, docs) = tiny();
    let b = Bigram::fit(tok.vocab_size(), slices(&docs), Bigram::DEFAULT_SMOOTHING).unwrap();
    assert_relative_eq!(b.prob(2, 0), 3.0 / 5.0, max_relative = 1e-15);
    assert_relative_eq!(b.prob(0, 1), 2.0 / 5.0, max_relative = 1e-15);
    assert_relative_eq!(b.prob(0, 2), 2.0 / 5.0, max_relative = 1e-15);
    assert_relative_eq!(b.prob(1, 2), 2.0 / 4.0, max_relative = 1e-15);
    assert_relative_eq!(b.prob(0, 0), 1.0 / 5.0, max_relative = 1e-15);
    assert_relative_eq!(b.prob(2, 1), 1.0 / 5.0, max_relative = 1e-15);
    // each row is a distribution
    for ctx in 0..3 {
        let s: f64 = (0..3).map(|n| b.prob(ctx, n)).sum();
        assert_relative_eq!(s, 1.0, max_relative = 1e-15);
    }
    // on its own training docs: "ab" scores (BOS→a, a→b, b→BOS), "a" scores (BOS→a, a→BOS):
    // −[2 ln(3/5) + ln(2/5) + ln(1/2) + ln(2/5)] over 5 tokens
    let (sum, n) = b.nll(slices(&docs), None).unwrap();
    let want = -(2.0 * (0.6f64).ln() + 2.0 * (0.4f64).ln() + (0.5f64).ln());
    assert_eq!(n, 5);
    assert_relative_eq!(sum, want, max_relative = 1e-14);
    assert_relative_eq!(
        b.mean_nll(slices(&docs), None).unwrap(),
        want / 5.0,
        max_relative = 1e-14
    );
}

#[test]
fn maximum_likelihood_when_smoothing_is_zero() {
    // k = 0: P(a|BOS) = 1, P(b|a) = P(BOS|a) = 1/2, P(BOS|b) = 1 ⇒ sum = 2 ln 2 over 5 tokens;
    // an unseen pair (b → a) has probability 0 and an infinite loss
    let (tok, docs) = tiny();
    let b = Bigram::fit(tok.vocab_size(), slices(&docs), 0.0).unwrap();
    let (sum, n) = b.nll(slices(&docs), None).unwrap();
    assert_eq!(n, 5);
    assert_relative_eq!(sum, 2.0 * 2f64.ln(), max_relative = 1e-15);
    assert_eq!(b.prob(1, 0), 0.0);
    let unseen = EncodedDocs::new(&tok, &["ba"]).unwrap();
    assert_eq!(b.nll(slices(&unseen), None).unwrap().0, f64::INFINITY);
}

#[test]
fn max_positions_scores_only_the_first_pairs_of_each_document() {
    // block size 1: only BOS→a of each document, −2 ln(3/5) over 2 tokens;
    // block size 2: "ab" scores BOS→a, a→b and "a" all of its 2 ⇒ 4 tokens
    let (tok, docs) = tiny();
    let b = Bigram::fit(tok.vocab_size(), slices(&docs), 1.0).unwrap();
    let (sum, n) = b.nll(slices(&docs), Some(1)).unwrap();
    assert_eq!(n, 2);
    assert_relative_eq!(sum, -2.0 * 0.6f64.ln(), max_relative = 1e-15);
    let (sum, n) = b.nll(slices(&docs), Some(2)).unwrap();
    assert_eq!(n, 4);
    assert_relative_eq!(
        sum,
        -(2.0 * 0.6f64.ln() + 2.0 * 0.4f64.ln()),
        max_relative = 1e-14
    );
    // a block larger than every document is the same as no limit
    assert_eq!(
        b.nll(slices(&docs), Some(100)).unwrap(),
        b.nll(slices(&docs), None).unwrap()
    );
}

#[test]
fn with_no_training_data_every_token_costs_ln_v() {
    let (tok, docs) = tiny();
    let b = Bigram::fit(tok.vocab_size(), std::iter::empty(), 1.0).unwrap();
    assert_relative_eq!(
        b.mean_nll(slices(&docs), None).unwrap(),
        3f64.ln(),
        max_relative = 1e-15
    );
}

#[test]
fn bad_arguments_are_errors() {
    let (tok, docs) = tiny();
    let v = tok.vocab_size();
    let e = Bigram::fit(v, slices(&docs), -1.0).unwrap_err().to_string();
    assert!(e.contains("smoothing"), "{e}");
    assert!(Bigram::fit(v, slices(&docs), f64::NAN).is_err());
    assert!(Bigram::fit(0, std::iter::empty(), 1.0).is_err());
    let e = Bigram::fit(2, slices(&docs), 1.0).unwrap_err().to_string();
    assert!(e.contains("token id 2"), "{e}");
    let b = Bigram::fit(v, slices(&docs), 1.0).unwrap();
    let out_of_range: &[usize] = &[2, 7, 2];
    assert!(b.nll([out_of_range], None).is_err());
    let e = b.mean_nll(slices(&docs), Some(0)).unwrap_err().to_string();
    assert!(e.contains("no token"), "{e}");
}

/// The baseline on names.txt: 90/10 split after `Rng::pcg(42)` shuffles the documents, the
/// vocabulary from all documents as in microgpt. Needs the dataset:
/// `cargo test --release --test bigram -- --ignored --nocapture`
#[test]
#[ignore]
fn names_validation_loss() {
    let path = microgpt::data::default_data_path().expect("names.txt (see README: Data)");
    let mut docs = load_docs(&path).unwrap();
    Rng::pcg(42).shuffle(&mut docs);
    let tok = Tokenizer::from_docs(&docs);
    let n_train = (0.9 * docs.len() as f64) as usize;
    let (train, val) = docs.split_at(n_train);
    let train = EncodedDocs::new(&tok, train).unwrap();
    let val = EncodedDocs::new(&tok, val).unwrap();
    let b = Bigram::fit(tok.vocab_size(), slices(&train), 1.0).unwrap();
    let (sum, n) = b.nll(slices(&val), None).unwrap();
    let (sum16, n16) = b.nll(slices(&val), Some(16)).unwrap();
    let (tsum, tn) = b.nll(slices(&train), None).unwrap();
    println!(
        "bigram (k = 1), {} train / {} val docs, V = {}: val loss {:.4} ({} tokens), val loss with block 16 {:.4} ({} tokens), train loss {:.4} ({} tokens)",
        train.len(),
        val.len(),
        tok.vocab_size(),
        sum / n as f64,
        n,
        sum16 / n16 as f64,
        n16,
        tsum / tn as f64,
        tn
    );
    assert!((2.40..2.50).contains(&(sum / n as f64)));
}
